/* dconv.c — the register-blocked direct convolution (contract in dconv.h).
 *
 * Relies on OHWI weights (model.h): a tap's weights for one output channel
 * are its in_c input channels, contiguous. Loop order: groups of output
 * rows outermost, blocks of 16 output channels inside, so the packed
 * weights of every block (kernel_h * kernel_w * in_c * 64 bytes each)
 * stream through the cache while a group's input rows stay there. */
#include "runtime/dconv.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool dconv_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool dconv_supports(const model *m, int l) {
  const model_layer *L = &m->layers[l];
  return L->op == MODEL_OP_CONV && L->groups == 1;
}

bool dconv_prefers(const model *m, int l) {
  if (!dconv_supports(m, l)) return false;
  const model_layer *L = &m->layers[l];
  int k = L->kernel_h * L->kernel_w * model_tensor_shape(m, L->inputs[0]).c;
  return k >= DCONV_MIN_K;
}

err_code dconv_create(const model *m, int l, dconv *d, err *e) {
  const model_layer *L = &m->layers[l];
  memset(d, 0, sizeof *d);
  if (!dconv_supports(m, l))
    return err_set(e, ERR_UNSUPPORTED,
                   "layer %d (%s): the direct convolution needs a dense convolution", l,
                   L->name);
  if (!dconv_available())
    return err_set(e, ERR_UNSUPPORTED, "layer %d (%s): this CPU has no AVX2 and FMA", l,
                   L->name);
  model_shape is = model_tensor_shape(m, L->inputs[0]);
  if (is.c <= 0 || is.w <= 0 || L->out_channels <= 0 || L->out.w <= 0 ||
      L->kernel_h <= 0 || L->kernel_w <= 0)
    return err_set(e, ERR_BACKEND, "layer %d (%s): empty convolution", l, L->name);
  d->kernel_h = L->kernel_h;
  d->kernel_w = L->kernel_w;
  d->stride_h = L->stride_h;
  d->stride_w = L->stride_w;
  d->pad_left = L->pad_left;
  d->in_w = is.w;
  d->in_c = is.c;
  d->out_w = L->out.w;
  d->out_c = L->out_channels;
  d->relu = L->relu;
  d->n_blocks = (d->out_c + DCONV_LANES - 1) / DCONV_LANES;
  size_t taps = (size_t)d->kernel_h * (size_t)d->kernel_w, k = taps * (size_t)d->in_c;
  size_t n = (size_t)d->n_blocks * k * DCONV_LANES;
  d->weights = aligned_alloc(32, n * sizeof(float));
  d->bias = aligned_alloc(32, (size_t)d->n_blocks * DCONV_LANES * sizeof(float));
  d->zeros = calloc((size_t)d->in_c, sizeof(float));
  if (!d->weights || !d->bias || !d->zeros) {
    dconv_destroy(d);
    return err_set(e, ERR_NOMEM, "layer %d (%s): out of memory for %zu weights", l, L->name,
                   n);
  }
  memset(d->weights, 0, n * sizeof(float));
  memset(d->bias, 0, (size_t)d->n_blocks * DCONV_LANES * sizeof(float));
  for (int o = 0; o < d->out_c; o++) {
    float *dst = d->weights + (size_t)(o / DCONV_LANES) * k * DCONV_LANES + o % DCONV_LANES;
    const float *src = L->weights + (size_t)o * k; /* OHWI: (ky, kx, ci) */
    for (size_t i = 0; i < k; i++) dst[i * DCONV_LANES] = src[i];
    if (L->bias) d->bias[o] = L->bias[o];
  }
  return ERR_OK;
}

void dconv_destroy(dconv *d) {
  if (!d) return;
  free(d->weights);
  free(d->bias);
  free(d->zeros);
  memset(d, 0, sizeof *d);
}

/* DCONV_PIXELS consecutive output pixels (in raster order, so a block may
 * run from one row into the next: small maps waste no lanes at row ends) x
 * 16 channels. iy[p], x0[p]: the top row and left column of pixel p's
 * window in the input (a column outside [0, in_w) is padding). Pixels
 * past the end repeat a real one: their lanes are computed and dropped,
 * the others do not depend on them. */
__attribute__((target("avx2,fma"))) static void block16(const dconv *d, const float *in,
                                                         size_t in_row, const int *iy,
                                                         const int *x0, const float *w,
                                                         const float *bias, float *out, int n_px,
                                                         int lanes) {
  /* Twelve named accumulators: an array would invite the compiler to keep
   * one in memory, the very spill this backend exists to avoid. */
  __m256 c00 = _mm256_load_ps(bias), c01 = _mm256_load_ps(bias + 8);
  __m256 c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01;
  __m256 c40 = c00, c41 = c01, c50 = c00, c51 = c01;
  const int c = d->in_c;
  for (int ky = 0; ky < d->kernel_h; ky++) {
    const float *row[DCONV_PIXELS];
    for (int p = 0; p < DCONV_PIXELS; p++) row[p] = in + (size_t)(iy[p] + ky) * in_row;
    for (int kx = 0; kx < d->kernel_w; kx++, w += (size_t)c * DCONV_LANES) {
      const float *a[DCONV_PIXELS];
      for (int p = 0; p < DCONV_PIXELS; p++) {
        int x = x0[p] + kx;
        a[p] = x >= 0 && x < d->in_w ? row[p] + (size_t)x * c : d->zeros;
      }
      const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
      const float *wk = w;
      for (int ci = 0; ci < c; ci++, wk += DCONV_LANES) {
        __m256 w0 = _mm256_load_ps(wk), w1 = _mm256_load_ps(wk + 8), v;
        v = _mm256_broadcast_ss(a0 + ci);
        c00 = _mm256_fmadd_ps(v, w0, c00);
        c01 = _mm256_fmadd_ps(v, w1, c01);
        v = _mm256_broadcast_ss(a1 + ci);
        c10 = _mm256_fmadd_ps(v, w0, c10);
        c11 = _mm256_fmadd_ps(v, w1, c11);
        v = _mm256_broadcast_ss(a2 + ci);
        c20 = _mm256_fmadd_ps(v, w0, c20);
        c21 = _mm256_fmadd_ps(v, w1, c21);
        v = _mm256_broadcast_ss(a3 + ci);
        c30 = _mm256_fmadd_ps(v, w0, c30);
        c31 = _mm256_fmadd_ps(v, w1, c31);
        v = _mm256_broadcast_ss(a4 + ci);
        c40 = _mm256_fmadd_ps(v, w0, c40);
        c41 = _mm256_fmadd_ps(v, w1, c41);
        v = _mm256_broadcast_ss(a5 + ci);
        c50 = _mm256_fmadd_ps(v, w0, c50);
        c51 = _mm256_fmadd_ps(v, w1, c51);
      }
    }
  }
  __m256 y[DCONV_PIXELS][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                               {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256 zero = _mm256_setzero_ps();
  for (int p = 0; p < n_px; p++) {
    __m256 y0 = y[p][0], y1 = y[p][1];
    if (d->relu) y0 = _mm256_max_ps(y0, zero), y1 = _mm256_max_ps(y1, zero);
    float *o = out + (size_t)p * d->out_c;
    if (lanes == DCONV_LANES) {
      _mm256_storeu_ps(o, y0);
      _mm256_storeu_ps(o + 8, y1);
    } else {
      float tmp[DCONV_LANES];
      _mm256_storeu_ps(tmp, y0);
      _mm256_storeu_ps(tmp + 8, y1);
      memcpy(o, tmp, (size_t)lanes * sizeof(float));
    }
  }
}

/* Input bytes a group of rows may read: about half of a core's L2, so that
 * the group's input stays there while every block of output channels
 * (their packed weights streaming through) passes over it. */
enum { GROUP_INPUT_BYTES = 256 << 10 };

typedef struct run_ctx {
  const dconv *d;
  const float *in;
  float *out;
  size_t in_row, block_w;
  int rows, group_rows;
} run_ctx;

/* The pixels of one group of rows for one block of 16 output channels. */
static void run_group(void *arg, size_t g, size_t nb) {
  const run_ctx *c = arg;
  const dconv *d = c->d;
  const float *w = d->weights + nb * c->block_w, *bias = d->bias + nb * DCONV_LANES;
  int lanes = d->out_c - (int)nb * DCONV_LANES;
  if (lanes > DCONV_LANES) lanes = DCONV_LANES;
  int r0 = (int)g * c->group_rows, r1 = r0 + c->group_rows < c->rows ? r0 + c->group_rows : c->rows;
  long q_end = (long)r1 * d->out_w;
  for (long q = (long)r0 * d->out_w; q < q_end; q += DCONV_PIXELS) {
    int n_px = q_end - q < DCONV_PIXELS ? (int)(q_end - q) : DCONV_PIXELS;
    int iy[DCONV_PIXELS], x0[DCONV_PIXELS];
    for (int p = 0; p < DCONV_PIXELS; p++) {
      long qq = q + (p < n_px ? p : n_px - 1);
      iy[p] = (int)(qq / d->out_w) * d->stride_h;
      x0[p] = (int)(qq % d->out_w) * d->stride_w - d->pad_left;
    }
    block16(d, c->in, c->in_row, iy, x0, w, bias, c->out + (size_t)q * d->out_c + nb * DCONV_LANES,
            n_px, lanes);
  }
}

void dconv_run(const dconv *d, const float *in, float *out, int rows, pthreadpool_t pool) {
  if (rows <= 0) return;
  run_ctx c = {.d = d,
               .in = in,
               .out = out,
               .in_row = (size_t)d->in_w * (size_t)d->in_c,
               .block_w = (size_t)d->kernel_h * (size_t)d->kernel_w * (size_t)d->in_c *
                          DCONV_LANES,
               .rows = rows};
  /* A group of g rows reads (g - 1) * stride_h + kernel_h input rows. */
  size_t row_bytes = c.in_row * sizeof(float);
  long fit = (long)(GROUP_INPUT_BYTES / (row_bytes > 0 ? row_bytes : 1));
  long g = (fit - d->kernel_h) / (d->stride_h > 0 ? d->stride_h : 1) + 1;
  c.group_rows = g < 1 ? 1 : g > rows ? rows : (int)g;
  size_t groups = (size_t)((rows + c.group_rows - 1) / c.group_rows);
  /* Groups outermost (pthreadpool's order without workers): a group's
   * input stays in cache while the blocks of channels pass over it. */
  pthreadpool_parallelize_2d(pool, run_group, &c, groups, (size_t)d->n_blocks, 0);
}

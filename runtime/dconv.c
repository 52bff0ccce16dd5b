/* dconv.c — the register-blocked direct convolution (contract in dconv.h).
 *
 * Relies on OHWI weights (model.h): a tap's weights for one output channel
 * are its in_c input channels, contiguous, and a kernel row's are its
 * kernel_w * in_c inputs, contiguous as they are in an NHWC row. Loop
 * order: with large weights, groups of output rows outermost, blocks of
 * 16 output channels inside, so the packed weights of every block
 * (kernel_h * kernel_w * in_c * 64 bytes each) stream through the cache
 * while a group's input rows stay there; with small ones (all blocks
 * within PIXEL_MAJOR_WEIGHT_BYTES), every block for 12 pixels before the
 * next 12, so that each pixel's output channels are written together. */
#include "runtime/dconv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/dconv_internal.h"

/* Input bytes a group of rows may read: about half of a core's L2, so that
 * the group's input stays there while every block of output channels
 * (their packed weights streaming through) passes over it. */
enum { GROUP_INPUT_BYTES = 256 << 10 }; /* at least (dconv.group_input_bytes) */

bool dconv_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool dconv_has_avx512(void) {
  __builtin_cpu_init();
  return dconv_available() && __builtin_cpu_supports("avx512f");
}

bool dconv_supports(const model *m, int l) {
  const model_layer *L = &m->layers[l];
  return L->op == MODEL_OP_CONV && L->groups == 1;
}

bool dconv_prefers(const model *m, int l) {
  if (!dconv_supports(m, l)) return false;
  const model_layer *L = &m->layers[l];
  int c = model_tensor_shape(m, L->inputs[0]).c, k = L->kernel_h * L->kernel_w * c;
  bool pointwise = L->kernel_h == 1 && L->kernel_w == 1 && L->stride_h == 1 && L->stride_w == 1;
  return k >= DCONV_MIN_K || (pointwise && c >= DCONV_MIN_POINTWISE_C);
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
  d->pointwise = L->kernel_h == 1 && L->kernel_w == 1 && L->stride_h == 1 &&
                 L->stride_w == 1 && L->pad_left == 0 && L->pad_right == 0 && is.w == L->out.w;
  d->n_blocks = (d->out_c + DCONV_LANES - 1) / DCONV_LANES;
  d->avx512 = dconv_has_avx512();
  /* Half of this core's L2 where sysconf knows one larger than Zen 3's
   * (1 MB on Zen 4/5): only the loop order depends on it, not a bit. */
  long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  d->group_input_bytes =
      l2 / 2 > GROUP_INPUT_BYTES ? (size_t)l2 / 2 : (size_t)GROUP_INPUT_BYTES;
  size_t taps = (size_t)d->kernel_h * (size_t)d->kernel_w, k = taps * (size_t)d->in_c;
  size_t n = (size_t)d->n_blocks * k * DCONV_LANES;
  d->weights = aligned_alloc(64, n * sizeof(float));
  d->bias = aligned_alloc(64, (size_t)d->n_blocks * DCONV_LANES * sizeof(float));
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

/* Packed weights of all blocks that stay in L1/L2 next to the pixels:
 * up to this much, every block runs on a group of pixels before the next
 * group (pixel-major), so each pixel's output channels are written
 * together, in order, instead of in 64-byte stripes one block at a time
 * (what wins for the narrow, wide-output layers of the compact models). */
enum { PIXEL_MAJOR_WEIGHT_BYTES = 64 << 10 };
/* A pointwise layer reads its 12 pixels' inputs once per block in one
 * contiguous run, so pixel-major pays while its weights stay in L2: a
 * 64 -> 512 1x1 on 25x25 (128 KB) went from 1.01 to 0.77-0.83 ms alone
 * (//benchmarks:conv_backends) and from 1.13-1.28 to 0.80-0.85 ms inside
 * vgg16c (//benchmarks:layer_profile). */
enum { POINT_MAJOR_WEIGHT_BYTES = 192 << 10 };

typedef struct run_ctx {
  const dconv *d;
  const float *in;
  float *out;
  size_t in_row, block_w;
  /* A unit of output channels, what one tile computes: a block of 16, or
   * two with AVX-512 (32 lanes). */
  int unit_lanes;
  size_t n_units;
  int rows, group_rows;
} run_ctx;

/* Whether a window starting at input column x0 lies inside the row. */
static bool window_inside(const dconv *d, int x0) {
  return x0 >= 0 && x0 + d->kernel_w <= d->in_w;
}

/* Output channels of unit u: unit_lanes, or fewer in the last. */
static int unit_lanes(const run_ctx *c, size_t u) {
  int lanes = c->d->out_c - (int)u * c->unit_lanes;
  return lanes < c->unit_lanes ? lanes : c->unit_lanes;
}

/* Unit u's packed weights and bias (its first block's; a two-block unit's
 * second follows block_w floats on) and where pixel q's channels of it go;
 * returns its lanes. */
static int unit_at(const run_ctx *c, size_t u, long q, const float **w, const float **bias,
                   float **out) {
  const dconv *d = c->d;
  size_t nb = u * (size_t)(c->unit_lanes / DCONV_LANES);
  *w = d->weights + nb * c->block_w;
  *bias = d->bias + nb * DCONV_LANES;
  *out = c->out + (size_t)q * d->out_c + nb * DCONV_LANES;
  return unit_lanes(c, u);
}

/* The next n pixels from (*oy, *ox) on, padded to `pixels` with copies of
 * the last; advances (*oy, *ox) past them. */
static void fill_block(const dconv *d, int *oy, int *ox, int n, int pixels, px_block *b) {
  b->n = n;
  b->interior = true;
  for (int p = 0; p < pixels; p++) {
    if (p < n) {
      b->iy[p] = *oy * d->stride_h;
      b->x0[p] = *ox * d->stride_w - d->pad_left;
      if (++*ox == d->out_w) *ox = 0, ++*oy;
    } else {
      b->iy[p] = b->iy[p - 1];
      b->x0[p] = b->x0[p - 1];
    }
    b->interior = b->interior && window_inside(d, b->x0[p]);
  }
}

static void group_bounds(const run_ctx *c, size_t g, long *q0, long *q_end) {
  int r0 = (int)g * c->group_rows, r1 = r0 + c->group_rows < c->rows ? r0 + c->group_rows : c->rows;
  *q0 = (long)r0 * c->d->out_w;
  *q_end = (long)r1 * c->d->out_w;
}

/* Up to DCONV_MAX_PIXELS pixels as the 8-lane tile takes them and as the
 * 16-lane tile does, DCONV_PIXELS at a time; split once, used by every
 * block of output channels. */
typedef struct px_group {
  px_block all;
  px_block half[DCONV_MAX_PIXELS / DCONV_PIXELS];
  int n_half;
} px_group;

static void split_group(const dconv *d, px_group *g) {
  const px_block *b = &g->all;
  g->n_half = 0;
  for (int from = 0; from < b->n; from += DCONV_PIXELS) {
    px_block *h = &g->half[g->n_half++];
    h->n = b->n - from < DCONV_PIXELS ? b->n - from : DCONV_PIXELS;
    h->interior = true;
    for (int p = 0; p < DCONV_PIXELS; p++) {
      int k = from + (p < h->n ? p : h->n - 1);
      h->iy[p] = b->iy[k];
      h->x0[p] = b->x0[k];
      h->interior = h->interior && window_inside(d, b->x0[k]);
    }
  }
}

/* Unit u of output channels (one block of 16, or two with AVX-512) for
 * the pixels of g, which start at pixel q: as one block of 8 lanes, as one
 * AVX-512 tile of 12 pixels, or as AVX2 tiles of DCONV_PIXELS pixels. */
static void run_block(const run_ctx *c, const px_group *g, long q, size_t u) {
  const dconv *d = c->d;
  const float *w, *bias;
  float *out;
  int lanes = unit_at(c, u, q, &w, &bias, &out);
  if (lanes <= 8) {
    dconv_avx2_block8(d, c->in, c->in_row, &g->all, w, bias, out, lanes);
  } else if (lanes > DCONV_LANES) {
    dconv_avx512_block32(d, c->in, c->in_row, &g->all, w, c->block_w, bias, out, lanes);
  } else if (d->avx512) {
    dconv_avx512_block16(d, c->in, c->in_row, &g->all, w, bias, out, lanes);
  } else {
    for (int k = 0; k < g->n_half; k++)
      dconv_avx2_block16(d, c->in, c->in_row, &g->half[k], w, bias,
                         out + (size_t)k * DCONV_PIXELS * d->out_c, lanes);
  }
}

/* Group-major: the pixels of group g for unit u only. */
static void run_group(void *arg, size_t g, size_t u) {
  const run_ctx *c = arg;
  const int pixels = unit_lanes(c, u) <= 8 || c->d->avx512 ? DCONV_MAX_PIXELS : DCONV_PIXELS;
  long q, q_end;
  group_bounds(c, g, &q, &q_end);
  int oy = (int)(q / c->d->out_w), ox = 0;
  for (; q < q_end; q += pixels) {
    px_group pg;
    fill_block(c->d, &oy, &ox, q_end - q < pixels ? (int)(q_end - q) : pixels, pixels, &pg.all);
    if (pixels == DCONV_PIXELS) {
      pg.half[0] = pg.all;
      pg.n_half = 1;
    }
    run_block(c, &pg, q, u);
  }
}

/* Pixel-major: every block for each DCONV_MAX_PIXELS pixels of group g. */
static void run_group_all_blocks(void *arg, size_t g) {
  const run_ctx *c = arg;
  long q, q_end;
  group_bounds(c, g, &q, &q_end);
  int oy = (int)(q / c->d->out_w), ox = 0;
  for (; q < q_end; q += DCONV_MAX_PIXELS) {
    px_group pg;
    int n = q_end - q < DCONV_MAX_PIXELS ? (int)(q_end - q) : DCONV_MAX_PIXELS;
    fill_block(c->d, &oy, &ox, n, DCONV_MAX_PIXELS, &pg.all);
    if (!c->d->avx512) split_group(c->d, &pg); /* the AVX2 16-lane tiles take halves */
    for (size_t u = 0; u < c->n_units; u++) run_block(c, &pg, q, u);
  }
}

/* Pointwise layers: pixel q's inputs are in + q * in_c, a plain GEMM;
 * every block of channels for each DCONV_MAX_PIXELS pixels of a task. */
enum { POINT_TASK_PIXELS = 16 * DCONV_MAX_PIXELS };

static void run_point_task(void *arg, size_t t) {
  const run_ctx *c = arg;
  const dconv *d = c->d;
  long q_end = (long)c->rows * d->out_w, q = (long)t * POINT_TASK_PIXELS;
  long t_end = q + POINT_TASK_PIXELS < q_end ? q + POINT_TASK_PIXELS : q_end;
  for (; q < t_end; q += DCONV_MAX_PIXELS) {
    int n = t_end - q < DCONV_MAX_PIXELS ? (int)(t_end - q) : DCONV_MAX_PIXELS;
    const float *a = c->in + (size_t)q * (size_t)d->in_c;
    for (size_t u = 0; u < c->n_units; u++) {
      const float *w, *bias;
      float *out;
      int lanes = unit_at(c, u, q, &w, &bias, &out);
      if (lanes <= 8) {
        dconv_avx2_point8(d, a, n, w, bias, out, lanes);
        continue;
      }
      if (lanes > DCONV_LANES) {
        dconv_avx512_point32(d, a, n, w, c->block_w, bias, out, lanes);
        continue;
      }
      if (d->avx512) {
        dconv_avx512_point16(d, a, n, w, bias, out, lanes);
        continue;
      }
      dconv_avx2_point16(d, a, n < DCONV_PIXELS ? n : DCONV_PIXELS, w, bias, out, lanes);
      if (n > DCONV_PIXELS)
        dconv_avx2_point16(d, a + (size_t)DCONV_PIXELS * d->in_c, n - DCONV_PIXELS, w, bias,
                           out + (size_t)DCONV_PIXELS * d->out_c, lanes);
    }
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
               .unit_lanes = d->avx512 ? 2 * DCONV_LANES : DCONV_LANES,
               .rows = rows};
  c.n_units = (size_t)((d->out_c + c.unit_lanes - 1) / c.unit_lanes);
  const size_t weights = (size_t)d->n_blocks * c.block_w * sizeof(float);
  bool small = weights <= (d->pointwise ? POINT_MAJOR_WEIGHT_BYTES : PIXEL_MAJOR_WEIGHT_BYTES);
  if (small && d->pointwise) {
    long pixels = (long)rows * d->out_w;
    pthreadpool_parallelize_1d(pool, run_point_task, &c,
                               (size_t)((pixels + POINT_TASK_PIXELS - 1) / POINT_TASK_PIXELS), 0);
    return;
  }
  if (small) {
    /* Groups of a few rows: enough of them for the pool's workers. */
    c.group_rows = rows < 4 ? rows : 4;
    size_t groups = (size_t)((rows + c.group_rows - 1) / c.group_rows);
    pthreadpool_parallelize_1d(pool, run_group_all_blocks, &c, groups, 0);
    return;
  }
  /* What a group of g output rows reads: (g - 1) * stride_h + kernel_h
   * input rows when windows overlap or touch vertically, else g * kernel_h;
   * of each, the whole row, or out_w * kernel_w pixels when windows leave
   * gaps (a 1x1 stride-2 shortcut reads a quarter of its input). Counting
   * rows it never reads would make the groups small, and every group
   * streams all the weights again (16 MB a group for a 2048 x 2048 1x1). */
  bool gaps_h = d->kernel_w < d->stride_w, gaps_v = d->kernel_h < d->stride_h;
  size_t cols = gaps_h ? (size_t)d->out_w * (size_t)d->kernel_w : (size_t)d->in_w;
  size_t row_bytes = cols * (size_t)d->in_c * sizeof(float);
  const size_t group_bytes = d->group_input_bytes;
  long fit = (long)(group_bytes / (row_bytes > 0 ? row_bytes : 1));
  long g = gaps_v ? fit / d->kernel_h : (fit - d->kernel_h) / d->stride_h + 1;
  /* Weights far larger than all the input a run reads (the last stage's
   * 1x1s on 7x7 and 13x13 maps): one group, so that they stream once, if
   * that input still fits a core's L2. */
  size_t all_in = (size_t)(gaps_v ? (long)rows * d->kernel_h
                                  : (long)(rows - 1) * d->stride_h + d->kernel_h) * row_bytes;
  if (weights >= 4 * all_in && all_in <= 2 * group_bytes) g = rows;
  c.group_rows = g < 1 ? 1 : g > rows ? rows : (int)g;
  size_t groups = (size_t)((rows + c.group_rows - 1) / c.group_rows);
  /* Groups outermost (pthreadpool's order without workers): a group's
   * input stays in cache while the blocks of channels pass over it. */
  pthreadpool_parallelize_2d(pool, run_group, &c, groups, c.n_units, 0);
}

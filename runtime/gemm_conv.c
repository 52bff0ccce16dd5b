/* gemm_conv.c — im2col + OpenBLAS sgemm convolutions (contract in
 * gemm_conv.h).
 *
 * Relies on: OHWI weights (model.h), whose rows are exactly the im2col
 * order (ky, kx, ci), and OpenBLAS's sgemm with beta = 0, which writes every
 * element of C (no need to clear the output).
 *
 * Threads: OpenBLAS keeps its thread count in a process-wide setting, so
 * every run sets it first; two executors with different counts must not run
 * at the same time in one process (xexec.h: one thread at a time already).
 */
#include "runtime/gemm_conv.h"

#include <cblas.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* OpenBLAS's own; declared here too so a netlib cblas.h (Debian's
 * alternatives may pick one) still compiles. */
void openblas_set_num_threads(int num_threads);

/* Narrower layers run as fast or faster through XNNPACK (im2col costs a
 * pass over K*pixels floats and OpenBLAS's kernels want N >= 128):
 * measurements in docs/single_device.md. */
enum { GEMM_CONV_MIN_OUT_C = 128, GEMM_CONV_MIN_K = 512 };

bool gemm_conv_supports(const model *m, int l) {
  const model_layer *L = &m->layers[l];
  return L->op == MODEL_OP_CONV && L->groups == 1;
}

bool gemm_conv_prefers(const model *m, int l) {
  if (!gemm_conv_supports(m, l)) return false;
  const model_layer *L = &m->layers[l];
  int k = L->kernel_h * L->kernel_w * model_tensor_shape(m, L->inputs[0]).c;
  return L->out_channels >= GEMM_CONV_MIN_OUT_C && k >= GEMM_CONV_MIN_K;
}

/* Pixels of a call with n * k multiply-adds per pixel: the smallest
 * multiple of align past GEMM_CONV_MIN_CALL_MACS (probe, below). */
static long chunk_pixels(int align, int k, int n) {
  long per = (long)k * n, m = (GEMM_CONV_MIN_CALL_MACS + per - 1) / per;
  return (m + align - 1) / align * align;
}

err_code gemm_conv_create(const model *m, int l, gemm_conv *g, err *e) {
  const model_layer *L = &m->layers[l];
  memset(g, 0, sizeof *g);
  if (!gemm_conv_supports(m, l))
    return err_set(e, ERR_UNSUPPORTED,
                   "layer %d (%s): GEMM convolution needs a dense convolution",
                   l, L->name);
  model_shape is = model_tensor_shape(m, L->inputs[0]);
  if (is.c <= 0 || is.w <= 0 || L->out_channels <= 0 || L->out.w <= 0 ||
      L->out.h <= 0 || L->kernel_h <= 0 || L->kernel_w <= 0)
    return err_set(e, ERR_BACKEND, "layer %d (%s): empty convolution", l,
                   L->name);
  g->kernel_h = L->kernel_h;
  g->kernel_w = L->kernel_w;
  g->stride_h = L->stride_h;
  g->stride_w = L->stride_w;
  g->pad_left = L->pad_left;
  g->in_w = is.w;
  g->in_c = is.c;
  g->out_w = L->out.w;
  g->out_c = L->out_channels;
  g->k = L->kernel_h * L->kernel_w * is.c;
  g->relu = L->relu;
  g->direct = L->kernel_h == 1 && L->kernel_w == 1 && L->stride_h == 1 &&
              L->stride_w == 1 && L->pad_left == 0 && L->pad_right == 0;
  int align = gemm_conv_align();
  if (align == 0)
    return err_set(e, ERR_BACKEND,
                   "layer %d (%s): OpenBLAS's sgemm does not reproduce a "
                   "pixel's value across call sizes here; strips would differ",
                   l, L->name);
  g->chunk = (int)chunk_pixels(align, g->k, g->out_c);
  /* Blocks of whole chunks within the budget; a direct convolution reads
   * its input in place and needs room for one chunk only. */
  long per = (long)(GEMM_CONV_SCRATCH_BYTES / ((size_t)g->k * sizeof(float)));
  long image = (long)L->out.h * g->out_w;
  if (per > image + g->chunk) per = image + g->chunk;
  g->block_pixels = (int)(per / g->chunk * g->chunk);
  if (g->block_pixels < g->chunk || g->direct) g->block_pixels = g->chunk;

  size_t n = (size_t)g->k * (size_t)g->out_c;
  g->weights = malloc(n * sizeof *g->weights);
  if (L->bias) g->bias = malloc((size_t)g->out_c * sizeof *g->bias);
  if (!g->weights || (L->bias && !g->bias)) {
    gemm_conv_destroy(g);
    return err_set(e, ERR_NOMEM, "layer %d (%s): out of memory for %zu weights",
                   l, L->name, n);
  }
  /* OHWI is [out_c][k]; the GEMM wants its transpose. */
  for (int o = 0; o < g->out_c; o++)
    for (int k = 0; k < g->k; k++)
      g->weights[(size_t)k * g->out_c + o] = L->weights[(size_t)o * g->k + k];
  if (L->bias) memcpy(g->bias, L->bias, (size_t)g->out_c * sizeof *g->bias);
  return ERR_OK;
}

void gemm_conv_destroy(gemm_conv *g) {
  if (!g) return;
  free(g->weights);
  free(g->bias);
  memset(g, 0, sizeof *g);
}

size_t gemm_conv_scratch_floats(const gemm_conv *g) {
  return (size_t)g->block_pixels * (size_t)g->k +
         (size_t)g->chunk * (size_t)g->out_c;
}

static int clamp(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- determinism probe ----------------------------------------------------
 * OpenBLAS's kernels compute the pixels of a call in chunks of a few, and a
 * pixel's value depends on its lane in the chunk and on the chunk being
 * full (measured on Zen 3: chunks of 12). On AVX-512 cores (OpenBLAS's
 * SkylakeX and Cooperlake targets) a call of fewer than about 1e6
 * multiply-adds also goes to a separate small-matrix kernel that rounds
 * differently. So every call here starts at a pixel whose absolute index is
 * a multiple of the layer's chunk (the alignment, times what lifts a call
 * past GEMM_CONV_MIN_CALL_MACS) and covers whole chunks, zero rows standing
 * in for pixels outside the strip; then a pixel's value no longer depends
 * on the strip. The smallest alignment for which calls of several sizes and
 * offsets (multiples of it), each past the floor, reproduce one big call is
 * found once per process. */

static const int probe_aligns[] = {4, 8, 12, 16, 24, 32, 48, 64};
enum { PROBE_PIXELS = 1024 };

/* Calls past the floor at the first offsets that are multiples of align,
 * of several sizes that are too, against one big call. */
static bool probe_shape(int align, int k, int n, const float *a,
                        const float *b, const float *whole, float *part) {
  long u = chunk_pixels(align, k, n);
  for (long off = 0; off <= 8L * align; off += align)
    for (long m = u; off + m <= PROBE_PIXELS && m <= u + 2L * align; m += align) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, n, k, 1.0f,
                  a + (size_t)off * k, k, b, n, 0.0f, part, n);
      if (memcmp(part, whole + (size_t)off * n, (size_t)m * n * sizeof *part))
        return false;
    }
  return true;
}

static int probe_result;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe(void) {
  /* K past OpenBLAS's K blocking, N with a ragged edge; each small enough
   * that several chunks fit the probe's pixels. */
  static const int shapes[][2] = {{144, 64}, {300, 39}, {1100, 40}};
  size_t max_k = 1100, max_n = 64;
  float *a = malloc(PROBE_PIXELS * max_k * sizeof *a);
  float *b = malloc(max_k * max_n * sizeof *b);
  float *whole = malloc(PROBE_PIXELS * max_n * sizeof *whole);
  float *part = malloc(PROBE_PIXELS * max_n * sizeof *part);
  if (!a || !b || !whole || !part) goto done;
  uint32_t r = 12345;
  for (size_t i = 0; i < PROBE_PIXELS * max_k; i++)
    a[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
  for (size_t i = 0; i < max_k * max_n; i++)
    b[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
  openblas_set_num_threads(1);
  for (size_t c = 0; c < sizeof probe_aligns / sizeof *probe_aligns; c++) {
    bool ok = true;
    for (size_t s = 0; ok && s < sizeof shapes / sizeof *shapes; s++) {
      int k = shapes[s][0], n = shapes[s][1];
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, PROBE_PIXELS, n,
                  k, 1.0f, a, k, b, n, 0.0f, whole, n);
      ok = probe_shape(probe_aligns[c], k, n, a, b, whole, part);
    }
    if (ok) {
      probe_result = probe_aligns[c];
      break;
    }
  }
done:
  free(a);
  free(b);
  free(whole);
  free(part);
}

int gemm_conv_align(void) {
  pthread_once(&probe_once, probe);
  return probe_result;
}

/* ---- running ---------------------------------------------------------- */

/* One im2col row per pixel of [q0, q0 + n) (pixel indices relative to the
 * window's first output row); pixels outside [0, valid) get zero rows. A
 * kernel row's taps are contiguous in the input: one copy per (pixel, ky)
 * plus the horizontal padding. */
static void im2col(const gemm_conv *g, const float *in, long q0, int n,
                   long valid, float *col) {
  size_t c = (size_t)g->in_c, in_row = (size_t)g->in_w * c;
  size_t tap_row = (size_t)g->kernel_w * c;
  for (long q = q0; q < q0 + n; q++) {
    if (q < 0 || q >= valid) {
      memset(col, 0, (size_t)g->k * sizeof *col);
      col += g->k;
      continue;
    }
    int oy = (int)(q / g->out_w), ox = (int)(q % g->out_w);
    /* taps [lo, hi) lie in the image; padding may exceed the kernel */
    int x0 = ox * g->stride_w - g->pad_left;
    int lo = clamp(-x0, 0, g->kernel_w);
    int hi = clamp(g->in_w - x0, lo, g->kernel_w);
    for (int ky = 0; ky < g->kernel_h; ky++) {
      const float *src = in + (size_t)(oy * g->stride_h + ky) * in_row;
      if (lo > 0) memset(col, 0, (size_t)lo * c * sizeof *col);
      if (hi > lo)
        memcpy(col + (size_t)lo * c, src + (ptrdiff_t)(x0 + lo) * (ptrdiff_t)c,
               (size_t)(hi - lo) * c * sizeof *col);
      if (hi < g->kernel_w)
        memset(col + (size_t)hi * c, 0,
               (size_t)(g->kernel_w - hi) * c * sizeof *col);
      col += tap_row;
    }
  }
}

/* C = A * W over `pixels` rows of A, then bias and ReLU while C is hot. */
static void gemm(const gemm_conv *g, const float *a, int lda, int pixels,
                 float *out) {
  int n = g->out_c;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, pixels, n, g->k, 1.0f,
              a, lda, g->weights, n, 0.0f, out, n);
  if (!g->bias && !g->relu) return;
  for (int p = 0; p < pixels; p++) {
    float *y = out + (size_t)p * n;
    if (g->bias)
      for (int o = 0; o < n; o++) y[o] += g->bias[o];
    if (g->relu)
      for (int o = 0; o < n; o++) y[o] = y[o] > 0.0f ? y[o] : 0.0f;
  }
}

/* v rounded down to a multiple of a (v >= 0). */
static long floor_to(long v, long a) { return v / a * a; }

void gemm_conv_run(const gemm_conv *g, const float *in, int in_rows,
                   int first_row, float *out, int rows, float *scratch,
                   int threads) {
  (void)in_rows; /* the caller checked the window (xexec.c) */
  openblas_set_num_threads(threads > 1 ? threads : 1);
  long u = g->chunk, n = g->out_c;
  long valid = (long)rows * g->out_w;                /* pixels to write */
  long p0 = (long)first_row * g->out_w;              /* absolute pixel 0 */
  long head = floor_to(p0, u) - p0;                  /* <= 0, window-relative */
  long body = floor_to(p0 + u - 1, u) - p0;          /* first aligned pixel */
  long end = floor_to(p0 + valid, u) - p0;           /* last aligned boundary */
  float *a = scratch, *c = scratch + (size_t)g->block_pixels * g->k;
  /* Partial chunks (at most one each side): through scratch, zero rows
   * for the pixels of other strips. */
  long partial[2] = {head, end};
  int n_partial = 0;
  if (body > end) {
    n_partial = 1; /* one chunk holds the whole range */
  } else {
    if (head < 0) partial[n_partial++] = head;
    if (end < valid) partial[n_partial++] = end;
  }
  for (int i = 0; i < n_partial; i++) {
    long q0 = partial[i];
    im2col(g, in, q0, (int)u, valid, a);
    gemm(g, a, g->k, (int)u, c);
    long lo = q0 < 0 ? 0 : q0, hi = q0 + u < valid ? q0 + u : valid;
    memcpy(out + (size_t)lo * n, c + (size_t)(lo - q0) * n,
           (size_t)(hi - lo) * n * sizeof *out);
  }
  if (body > end) return;
  /* Whole chunks straight into the output; a direct convolution in one
   * call (it needs no im2col scratch). */
  long step = g->direct ? end - body : g->block_pixels;
  for (long q = body; q < end; q += step) {
    int m = (int)(end - q < step ? end - q : step);
    if (g->direct) {
      gemm(g, in + (size_t)q * g->in_c, g->in_c, m, out + (size_t)q * n);
    } else {
      im2col(g, in, q, m, valid, a);
      gemm(g, a, g->k, m, out + (size_t)q * n);
    }
  }
}

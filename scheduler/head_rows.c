/* head_rows.c — the head's first FC row by row (head_rows.h). */
#include "scheduler/head_rows.h"

#include <immintrin.h>
#include <stdlib.h>

#include "runtime/dconv.h"

struct head_rows {
  int h, row_floats, outputs, rest;
  bool relu, avx2; /* avx2: this CPU has AVX2 and FMA */
  const float *bias; /* the model's, or NULL */
  float *w;          /* [h][outputs][row_floats]: a map row's weights, NHWC order */
};

err_code head_rows_create(const model *m, int head_first, head_rows **out, err *e) {
  *out = NULL;
  int fl = head_first, fc = head_first + 1;
  if (fc >= m->n_layers || m->layers[fl].op != MODEL_OP_FLATTEN ||
      m->layers[fl].relu || m->layers[fc].op != MODEL_OP_FC || m->layers[fc].inputs[0] != fl)
    return ERR_OK;
  for (int l = fc + 1; l < m->n_layers; l++) /* nothing after it may read the map */
    for (int i = 0; i < m->layers[l].n_inputs; i++)
      if (m->layers[l].inputs[i] < fc) return ERR_OK;
  model_shape s = model_tensor_shape(m, fl - 1);
  const model_layer *L = &m->layers[fc];
  head_rows *h = calloc(1, sizeof *h);
  size_t in = (size_t)s.h * s.w * s.c, n = (size_t)L->out_channels * in;
  if (h) h->w = malloc(n * sizeof *h->w);
  if (!h || !h->w) {
    free(h);
    return err_set(e, ERR_NOMEM, "out of memory for the head of %s", m->name);
  }
  h->h = s.h;
  h->row_floats = s.w * s.c;
  h->outputs = L->out_channels;
  h->rest = fc + 1;
  h->relu = L->relu;
  h->avx2 = dconv_available();
  h->bias = L->bias;
  /* flatten reads NHWC in C, H, W order: map value (y, x, c) is input
   * c * H * W + y * W + x of the FC */
  for (int y = 0; y < s.h; y++)
    for (int o = 0; o < h->outputs; o++) {
      float *dst = h->w + ((size_t)y * h->outputs + o) * h->row_floats;
      const float *src = L->weights + (size_t)o * in;
      for (int x = 0; x < s.w; x++)
        for (int c = 0; c < s.c; c++)
          dst[(size_t)x * s.c + c] = src[(size_t)c * s.h * s.w + (size_t)y * s.w + x];
    }
  *out = h;
  return ERR_OK;
}

void head_rows_destroy(head_rows *h) {
  if (!h) return;
  free(h->w);
  free(h);
}

int head_rows_outputs(const head_rows *h) { return h->outputs; }
int head_rows_rest(const head_rows *h) { return h->rest; }

/* w . x over n floats. Four AVX2 accumulators stream the weights at
 * memory speed (this is memory-bound: each weight is read once); the
 * compiler's plain-C loop ran at half of XNNPACK's FC. */
__attribute__((target("avx2,fma"))) static double dot_avx2(const float *w, const float *x,
                                                           int n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int k = 0;
  for (; k + 32 <= n; k += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
  }
  for (; k + 8 <= n; k += 8)
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  double s = 0;
  for (int j = 0; j < 8; j++) s += lanes[j];
  for (; k < n; k++) s += (double)w[k] * x[k];
  return s;
}

static double dot_plain(const float *w, const float *x, int n) {
  double s = 0;
  for (int k = 0; k < n; k++) s += (double)w[k] * x[k];
  return s;
}

void head_rows_add(const head_rows *h, const float *rows, int lo, int hi, double *acc) {
  double (*dot)(const float *, const float *, int) = h->avx2 ? dot_avx2 : dot_plain;
  for (int y = lo; y < hi; y++) {
    const float *x = rows + (size_t)(y - lo) * h->row_floats;
    const float *w = h->w + (size_t)y * h->outputs * h->row_floats;
    for (int o = 0; o < h->outputs; o++) acc[o] += dot(w + (size_t)o * h->row_floats, x, h->row_floats);
  }
}

void head_rows_finish(const head_rows *h, const double *acc, float *out) {
  for (int o = 0; o < h->outputs; o++) {
    float v = (float)(acc[o] + (h->bias ? h->bias[o] : 0.0));
    out[o] = h->relu && !(v > 0.0f) ? 0.0f : v;
  }
}

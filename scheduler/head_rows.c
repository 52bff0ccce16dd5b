/* head_rows.c — the head's first FC row by row (head_rows.h). */
#include "scheduler/head_rows.h"

#include <stdlib.h>

struct head_rows {
  int h, row_floats, outputs, rest;
  bool relu;
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

void head_rows_add(const head_rows *h, const float *rows, int lo, int hi, double *acc) {
  for (int y = lo; y < hi; y++) {
    const float *x = rows + (size_t)(y - lo) * h->row_floats;
    for (int o = 0; o < h->outputs; o++) {
      const float *w = h->w + ((size_t)y * h->outputs + o) * h->row_floats;
      /* eight running sums: the compiler keeps them in vector lanes */
      float s[8] = {0};
      int k = 0;
      for (; k + 8 <= h->row_floats; k += 8)
        for (int j = 0; j < 8; j++) s[j] += w[k + j] * x[k + j];
      for (; k < h->row_floats; k++) s[0] += w[k] * x[k];
      acc[o] += ((double)s[0] + s[1]) + ((double)s[2] + s[3]) + ((double)s[4] + s[5]) +
                ((double)s[6] + s[7]);
    }
  }
}

void head_rows_finish(const head_rows *h, const double *acc, float *out) {
  for (int o = 0; o < h->outputs; o++) {
    float v = (float)(acc[o] + (h->bias ? h->bias[o] : 0.0));
    out[o] = h->relu && !(v > 0.0f) ? 0.0f : v;
  }
}

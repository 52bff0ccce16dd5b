/* fe_moments.c — FE means from an earlier tensor's moments (fe_moments.h). */
#include "runtime/fe_moments.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { LINK_NONE, LINK_AFFINE, LINK_BORDER } link_kind;

/* How layer l passes moments on: every moment (1x1 convolution, batch
 * norm), the total only (3x3 stride-1 convolution padded by 1), or not at
 * all. A fused ReLU makes any of them nonlinear. */
static link_kind link_of(const model *m, int l) {
  const model_layer *L = &m->layers[l];
  if (L->relu || L->n_inputs != 1) return LINK_NONE;
  if (L->op == MODEL_OP_BN) return LINK_AFFINE;
  if (L->op != MODEL_OP_CONV || L->stride_h != 1 || L->stride_w != 1) return LINK_NONE;
  if (L->kernel_h == 1 && L->kernel_w == 1 && !L->pad_top && !L->pad_bottom && !L->pad_left &&
      !L->pad_right)
    return LINK_AFFINE;
  if (L->kernel_h == 3 && L->kernel_w == 3 && L->pad_top == 1 && L->pad_bottom == 1 &&
      L->pad_left == 1 && L->pad_right == 1)
    return LINK_BORDER;
  return LINK_NONE;
}

int fe_moments_max_chain(const model *m, int fe) {
  if (!m || fe < 1 || fe >= m->n_layers || m->layers[fe].op != MODEL_OP_FE ||
      m->layers[fe].inputs[0] != fe - 1)
    return 0;
  int c_fe = m->layers[fe - 1].out.c, chain = 0;
  bool border = false;
  for (int l = fe - 1; l >= 0; l--) {
    link_kind k = link_of(m, l);
    if (k == LINK_NONE || (k == LINK_BORDER && border) || m->layers[l].inputs[0] != l - 1 ||
        model_tensor_shape(m, l - 1).c > c_fe)
      break;
    border = border || k == LINK_BORDER;
    chain++;
  }
  return chain;
}

int fe_moments_chain(const model *m, int fe, int first) {
  int c = fe_moments_max_chain(m, fe), room = fe - first;
  return room < 0 ? 0 : c < room ? c : room;
}

size_t fe_moments_size(const model *m, int fe, int chain) {
  if (chain == 0) return (size_t)model_tensor_shape(m, fe - 1).c;
  return (size_t)FE_MOMENTS * (size_t)model_tensor_shape(m, fe_moments_source(fe, chain)).c;
}

static void add_pixel(double *to, const float *px, int c) {
  for (int k = 0; k < c; k++) to[k] += px[k];
}

void fe_moments_of(const float *rows, model_rows owned, model_shape sh, double *moments) {
  size_t c = (size_t)sh.c, row = (size_t)sh.w * c;
  memset(moments, 0, FE_MOMENTS * c * sizeof *moments);
  double *mo[FE_MOMENTS];
  for (int i = 0; i < FE_MOMENTS; i++) mo[i] = moments + (size_t)i * c;
  for (int h = owned.lo; h < owned.hi; h++) {
    const float *r = rows + (size_t)(h - owned.lo) * row;
    const float *left = r, *right = r + row - c;
    for (int w = 0; w < sh.w; w++) add_pixel(mo[FE_MOMENT_TOTAL], r + (size_t)w * c, sh.c);
    add_pixel(mo[FE_MOMENT_COL_FIRST], left, sh.c);
    add_pixel(mo[FE_MOMENT_COL_LAST], right, sh.c);
    if (h == 0) {
      for (int w = 0; w < sh.w; w++) add_pixel(mo[FE_MOMENT_ROW_FIRST], r + (size_t)w * c, sh.c);
      add_pixel(mo[FE_MOMENT_TOP_LEFT], left, sh.c);
      add_pixel(mo[FE_MOMENT_TOP_RIGHT], right, sh.c);
    }
    if (h == sh.h - 1) {
      for (int w = 0; w < sh.w; w++) add_pixel(mo[FE_MOMENT_ROW_LAST], r + (size_t)w * c, sh.c);
      add_pixel(mo[FE_MOMENT_BOTTOM_LEFT], left, sh.c);
      add_pixel(mo[FE_MOMENT_BOTTOM_RIGHT], right, sh.c);
    }
  }
}

/* Sum over the output map of what tap (ky, kx) of a 3x3 convolution padded
 * by 1 reads of channel c: the total less the row and column the tap never
 * reaches (it reads row h + ky - 1 for output row h), plus their corner. */
static double tap_sum(const double *mo, size_t nc, int c, int ky, int kx) {
  const double *at = mo + c;
  double s = at[FE_MOMENT_TOTAL * nc];
  if (ky == 0) s -= at[FE_MOMENT_ROW_LAST * nc];
  if (ky == 2) s -= at[FE_MOMENT_ROW_FIRST * nc];
  if (kx == 0) s -= at[FE_MOMENT_COL_LAST * nc];
  if (kx == 2) s -= at[FE_MOMENT_COL_FIRST * nc];
  if (ky == 0 && kx == 0) s += at[FE_MOMENT_BOTTOM_RIGHT * nc];
  if (ky == 0 && kx == 2) s += at[FE_MOMENT_BOTTOM_LEFT * nc];
  if (ky == 2 && kx == 0) s += at[FE_MOMENT_TOP_RIGHT * nc];
  if (ky == 2 && kx == 2) s += at[FE_MOMENT_TOP_LEFT * nc];
  return s;
}

/* Moments (n_mo of them: all, or the total only) of layer l's output from
 * its input's, `in` with cin channels, into `out`. */
static void push_layer(const model *m, int l, const double *in, int n_mo, double *out) {
  const model_layer *L = &m->layers[l];
  model_shape sh = L->out;
  const double count[FE_MOMENTS] = {(double)sh.h * sh.w, sh.w, sh.w, sh.h, sh.h, 1, 1, 1, 1};
  size_t cin = (size_t)model_tensor_shape(m, l - 1).c, cout = (size_t)sh.c;
  if (L->op == MODEL_OP_BN) {
    for (int k = 0; k < n_mo; k++)
      for (size_t c = 0; c < cout; c++)
        out[k * cout + c] = L->weights[c] * in[k * cin + c] + L->bias[c] * count[k];
    return;
  }
  size_t g_in = cin / (size_t)L->groups, g_out = cout / (size_t)L->groups;
  size_t taps = (size_t)L->kernel_h * (size_t)L->kernel_w;
  for (size_t o = 0; o < cout; o++) {
    const float *w = L->weights + o * taps * g_in;
    size_t base = o / g_out * g_in;
    double b = L->bias ? L->bias[o] : 0.0;
    if (taps == 1) {
      for (int k = 0; k < n_mo; k++) {
        double s = b * count[k];
        for (size_t i = 0; i < g_in; i++) s += w[i] * in[k * cin + base + i];
        out[k * cout + o] = s;
      }
      continue;
    }
    double s = b * count[FE_MOMENT_TOTAL];
    for (int ky = 0; ky < 3; ky++)
      for (int kx = 0; kx < 3; kx++, w += g_in)
        for (size_t i = 0; i < g_in; i++)
          s += w[i] * tap_sum(in, cin, (int)(base + i), ky, kx);
    out[o] = s;
  }
}

err_code fe_moments_scale(const model *m, int fe, int chain, const double *sums, float *scale,
                          err *e) {
  if (!m || fe < 0 || fe >= m->n_layers || m->layers[fe].op != MODEL_OP_FE)
    return err_set(e, ERR_RANGE, "layer %d is not a feature-enhancement layer", fe);
  if (chain < 0 || chain > fe_moments_max_chain(m, fe))
    return err_set(e, ERR_RANGE, "feature enhancement %d has no chain of %d layers", fe, chain);
  size_t n = fe_moments_size(m, fe, chain);
  for (size_t i = 0; i < n; i++)
    if (!isfinite(sums[i]))
      return err_set(e, ERR_INVALID, "feature enhancement %d: sum %zu is not finite", fe, i);
  model_shape b = model_tensor_shape(m, fe - 1);
  if (chain == 0) return model_fe_scale(m, fe, sums, (double)b.h * b.w, scale, e);
  /* Two buffers wide enough for any tensor of the chain. */
  size_t widest = n;
  for (int l = fe_moments_source(fe, chain) + 1; l < fe; l++)
    if ((size_t)FE_MOMENTS * (size_t)m->layers[l].out.c > widest)
      widest = (size_t)FE_MOMENTS * (size_t)m->layers[l].out.c;
  double *cur = malloc(widest * sizeof *cur), *next = malloc(widest * sizeof *next);
  if (!cur || !next) {
    free(cur);
    free(next);
    return err_set(e, ERR_NOMEM, "out of memory for feature enhancement %d", fe);
  }
  memcpy(cur, sums, n * sizeof *cur);
  int n_mo = FE_MOMENTS;
  for (int l = fe_moments_source(fe, chain) + 1; l < fe; l++) {
    push_layer(m, l, cur, n_mo, next);
    if (link_of(m, l) == LINK_BORDER) n_mo = 1;
    double *t = cur;
    cur = next;
    next = t;
  }
  err_code rc = model_fe_scale(m, fe, cur, (double)b.h * b.w, scale, e);
  free(cur);
  free(next);
  return rc;
}

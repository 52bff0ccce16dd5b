/* xexec_testlib.c — helpers of the executor's tests (contract in
 * xexec_testlib.h). Errors come back as err codes so that a test can say
 * which step failed; nothing here asserts by itself. */
#include "tests/xexec_testlib.h"

#include "runtime/fe_moments.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fe_moments.h"

uint64_t xt_next(xt_rng *r) {
  /* xorshift64*: deterministic across platforms, good enough for data */
  uint64_t x = r->s ? r->s : 0x9E3779B97F4A7C15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

float xt_uniform(xt_rng *r, float lo, float hi) {
  double u = (double)(xt_next(r) >> 11) / (double)(1ull << 53);
  return lo + (float)u * (hi - lo);
}

int xt_int(xt_rng *r, int lo, int hi) {
  return lo + (int)(xt_next(r) % (uint64_t)(hi - lo + 1));
}

void xt_fill(xt_rng *r, float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = xt_uniform(r, lo, hi);
}

void xt_randomize(xt_rng *r, model *m) {
  for (int l = 0; l < m->n_layers; l++) {
    model_layer *L = &m->layers[l];
    model_shape is = model_tensor_shape(m, L->inputs[0]);
    float a = 1.0f;
    switch (L->op) {
      case MODEL_OP_CONV:
        a = sqrtf(3.0f / (float)(L->kernel_h * L->kernel_w * (is.c / L->groups)));
        break;
      case MODEL_OP_FC:
      case MODEL_OP_FE:
        a = sqrtf(3.0f / (float)is.c);
        break;
      default:
        break;
    }
    if (L->op == MODEL_OP_BN) {
      xt_fill(r, L->weights, L->n_weights, 0.5f, 1.5f);
      xt_fill(r, L->bias, L->n_bias, -0.5f, 0.5f);
      continue;
    }
    if (L->weights) xt_fill(r, L->weights, L->n_weights, -a, a);
    if (L->bias) xt_fill(r, L->bias, L->n_bias, -0.5f, 0.5f);
  }
}

double xt_rel_diff(const float *a, const float *b, size_t n) {
  double big = 1e-30, diff = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (!(d <= diff)) diff = d; /* NaN counts as a difference */
    if (fabs((double)b[i]) > big) big = fabs((double)b[i]);
  }
  return diff / big;
}

int xt_random_split(xt_rng *r, int h, int max_strips, int *bounds) {
  int n = xt_int(r, 1, max_strips < h ? max_strips : h);
  /* n - 1 distinct cut rows out of 1 .. h-1, by partial shuffle */
  int *rows = malloc((size_t)(h > 1 ? h - 1 : 1) * sizeof *rows);
  for (int i = 0; i < h - 1; i++) rows[i] = i + 1;
  for (int i = 0; i < n - 1; i++) {
    int j = xt_int(r, i, h - 2);
    int t = rows[i];
    rows[i] = rows[j];
    rows[j] = t;
  }
  bounds[0] = 0;
  for (int i = 0; i < n - 1; i++) bounds[i + 1] = rows[i];
  bounds[n] = h;
  free(rows);
  for (int i = 1; i < n; i++) /* insertion sort of the cuts */
    for (int j = i; j > 1 && bounds[j] < bounds[j - 1]; j--) {
      int t = bounds[j];
      bounds[j] = bounds[j - 1];
      bounds[j - 1] = t;
    }
  return n;
}

static model_shape range_in_shape(const model *m, int first) {
  return model_tensor_shape(m, first - 1);
}

err_code xt_run_split_early(xexec *x, int first, int end, const int *bounds, int n,
                            const float *range_in, bool early, float *out, err *e) {
  const model *m = xexec_model(x);
  model_shape is = range_in_shape(m, first), os = m->layers[end - 1].out;
  size_t in_row = (size_t)is.w * is.c, out_row = (size_t)os.w * os.c;
  xexec_strip **s = calloc((size_t)n, sizeof *s);
  bool *paused = calloc((size_t)n, sizeof *paused);
  xexec_fe_sums *fe = calloc((size_t)n, sizeof *fe);
  double *total = NULL;
  float *scale = NULL;
  int *owners = NULL;
  int n_fe = 0;
  err_code rc = ERR_OK;
  if (!s || !paused || !fe) {
    rc = err_set(e, ERR_NOMEM, "test: out of memory");
    goto out;
  }
  for (int i = 0; i < n; i++) {
    model_rows rows = {bounds[i], bounds[i + 1]};
    rc = xexec_strip_create(x, first, end, rows, &s[i], e);
    if (rc != ERR_OK) goto out;
    xexec_strip_set_early_fe(s[i], early);
    model_rows in = xexec_strip_in_rows(s[i]);
    memcpy(xexec_strip_input(s[i]), range_in + (size_t)in.lo * in_row,
           (size_t)(in.hi - in.lo) * in_row * sizeof(float));
  }
  for (;;) {
    int n_paused = 0;
    for (int i = 0; i < n; i++) {
      rc = xexec_strip_run(s[i], &paused[i], &fe[i], e);
      if (rc != ERR_OK) goto out;
      n_paused += paused[i];
    }
    if (n_paused == 0) break;
    if (n_paused != n) {
      rc = err_set(e, ERR_INTERNAL, "test: only %d of %d strips paused",
                   n_paused, n);
      goto out;
    }
    int layer = fe[0].layer, c = fe[0].channels, chain = fe[0].chain;
    if (!fe[0].sums) {
      /* At the FE after early sums: the scale was held back (below). */
      for (int i = 0; i < n; i++)
        if (fe[i].sums || !fe[i].needs_scale || fe[i].layer != layer) {
          rc = err_set(e, ERR_INTERNAL, "test: strip %d did not wait at FE %d", i, layer);
          goto out;
        }
      for (int i = 0; i < n && rc == ERR_OK; i++) rc = xexec_strip_set_fe_scale(s[i], scale, e);
      if (rc != ERR_OK) goto out;
      continue;
    }
    model_shape fs = model_tensor_shape(m, m->layers[layer].inputs[0]);
    size_t n_sums = fe[0].n_sums;
    free(total);
    free(scale);
    free(owners);
    total = calloc(n_sums, sizeof *total);
    scale = calloc((size_t)c, sizeof *scale);
    owners = calloc((size_t)fs.h, sizeof *owners);
    if (!total || !scale || !owners) {
      rc = err_set(e, ERR_NOMEM, "test: out of memory");
      goto out;
    }
    for (int i = 0; i < n; i++) {
      if (fe[i].layer != layer || fe[i].channels != c || c != fs.c || fe[i].chain != chain ||
          fe[i].n_sums != n_sums || !fe[i].sums || fe[i].needs_scale != (chain == 0) ||
          (!early && chain != 0)) {
        rc = err_set(e, ERR_INTERNAL, "test: strips paused at layers %d and %d (chains %d, %d)",
                     layer, fe[i].layer, chain, fe[i].chain);
        goto out;
      }
      for (int y = fe[i].owned.lo; y < fe[i].owned.hi; y++) {
        if (y < 0 || y >= fs.h) {
          rc = err_set(e, ERR_INTERNAL, "test: owned row %d of %d", y, fs.h);
          goto out;
        }
        owners[y]++;
      }
      for (size_t k = 0; k < n_sums; k++) total[k] += fe[i].sums[k];
    }
    for (int y = 0; y < fs.h; y++)
      if (owners[y] != 1) {
        rc = err_set(e, ERR_INTERNAL,
                     "test: row %d of FE layer %d's input owned %d times", y,
                     layer, owners[y]);
        goto out;
      }
    rc = fe_moments_scale(m, layer, chain, total, scale, e);
    if (rc != ERR_OK) goto out;
    /* Early sums: every other FE gets its scale at once (the strips run
     * through it), the others only once they wait at it. */
    if (chain > 0 && n_fe++ % 2) continue;
    for (int i = 0; i < n; i++) {
      rc = xexec_strip_set_fe_scale(s[i], scale, e);
      if (rc != ERR_OK) goto out;
    }
  }
  for (int i = 0; i < n; i++)
    memcpy(out + (size_t)bounds[i] * out_row, xexec_strip_output(s[i]),
           (size_t)(bounds[i + 1] - bounds[i]) * out_row * sizeof(float));
out:
  if (s)
    for (int i = 0; i < n; i++) xexec_strip_destroy(s[i]);
  free(s);
  free(paused);
  free(fe);
  free(total);
  free(scale);
  free(owners);
  return rc;
}

err_code xt_run_split(xexec *x, int first, int end, const int *bounds, int n,
                      const float *range_in, float *out, err *e) {
  return xt_run_split_early(x, first, end, bounds, n, range_in, false, out, e);
}

err_code xt_run_range(xexec *x, int first, int end, const float *range_in,
                      float *out, err *e) {
  const model *m = xexec_model(x);
  model_shape is = range_in_shape(m, first), os = m->layers[end - 1].out;
  model_rows all = {0, os.h};
  xexec_strip *s;
  err_code rc = xexec_strip_create(x, first, end, all, &s, e);
  if (rc != ERR_OK) return rc;
  /* not always every row: a strided window may never reach the last ones */
  model_rows in = xexec_strip_in_rows(s);
  size_t in_row = (size_t)is.w * is.c;
  memcpy(xexec_strip_input(s), range_in + (size_t)in.lo * in_row,
         (size_t)(in.hi - in.lo) * in_row * sizeof(float));
  rc = xexec_strip_run_local(s, e);
  if (rc == ERR_OK)
    memcpy(out, xexec_strip_output(s), model_shape_elems(os) * sizeof(float));
  xexec_strip_destroy(s);
  return rc;
}

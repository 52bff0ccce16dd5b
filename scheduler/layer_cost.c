/* layer_cost.c — per-layer cost weights from timing cut-to-cut ranges. */
#include "scheduler/layer_cost.h"

#include <stdlib.h>
#include <time.h>

#include "runtime/xexec.h"
#include "scheduler/plan.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The fastest of `reps` runs of layers [first, end) on all rows. */
static err_code time_range(xexec *x, const model *m, int first, int end, int reps, double *ms,
                           err *e) {
  xexec_strip *s = NULL;
  model_rows out = {0, model_tensor_shape(m, end - 1).h};
  err_code rc = xexec_strip_create(x, first, end, out, &s, e);
  if (rc != ERR_OK) return rc;
  model_shape in = first == 0 ? m->input : model_tensor_shape(m, first - 1);
  model_rows rows = xexec_strip_in_rows(s);
  float *buf = xexec_strip_input(s);
  size_t n = (size_t)(rows.hi - rows.lo) * (size_t)in.w * (size_t)in.c;
  for (size_t i = 0; i < n; i++) buf[i] = 0.5f; /* XNNPACK's speed does not depend on values */
  *ms = 0;
  for (int r = 0; r < reps && rc == ERR_OK; r++) {
    double t0 = now_ms();
    rc = xexec_strip_run_local(s, e);
    double t = now_ms() - t0;
    if (r == 0 || t < *ms) *ms = t;
  }
  xexec_strip_destroy(s);
  return rc;
}

err_code layer_cost_measure(xexec *x, int reps, double *weight, err *e) {
  const model *m = xexec_model(x);
  if (reps < 1) reps = 1;
  for (int l = 0; l < m->n_layers; l++) weight[l] = 1.0;
  int hf = plan_head_first(m);
  if (hf == 0) return ERR_OK;
  err_code rc = ERR_OK;
  /* Ranges between consecutive cuts; range_ms/flops per range, indexed by
   * the range's first layer. */
  double *ms = calloc((size_t)hf, sizeof *ms), *flops = calloc((size_t)hf, sizeof *flops);
  int *first_of = malloc((size_t)hf * sizeof *first_of);
  if (!ms || !flops || !first_of) rc = err_set(e, ERR_NOMEM, "layer cost: out of memory");
  int n = 0;
  for (int a = 0, b = 1; rc == ERR_OK && b <= hf; b++) {
    if (b < hf && !model_is_cut(m, b)) continue;
    rc = time_range(x, m, a, b, reps, &ms[n], e);
    flops[n] = model_range_flops(m, a, b);
    first_of[n++] = a;
    a = b;
  }
  if (rc == ERR_OK) {
    /* A range without FLOPs lends its time to the one before (or after). */
    for (int k = 0; k < n; k++) {
      if (flops[k] > 0) continue;
      int to = k - 1;
      while (to >= 0 && flops[to] <= 0) to--;
      if (to < 0)
        for (to = k + 1; to < n && flops[to] <= 0; to++) {
        }
      if (to < n) ms[to] += ms[k];
      ms[k] = 0;
    }
    double all_ms = 0, all_flops = 0;
    for (int k = 0; k < n; k++) all_ms += ms[k], all_flops += flops[k];
    double mean = all_flops > 0 && all_ms > 0 ? all_ms / all_flops : 0;
    for (int k = 0; k < n && mean > 0; k++) {
      if (flops[k] <= 0) continue;
      double w = ms[k] / flops[k] / mean;
      int end = k + 1 < n ? first_of[k + 1] : hf;
      for (int l = first_of[k]; l < end; l++)
        if (m->layers[l].flops > 0) weight[l] = w;
    }
  } else {
    err_wrap(e, "layer cost of %s", m->name);
  }
  free(ms), free(flops), free(first_of);
  return rc;
}

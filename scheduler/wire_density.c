/* wire_density.c — measuring and refining how light each cut's rows travel. */
#include "scheduler/wire_density.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/rowcodec.h"
#include "scheduler/plan.h"

/* Uniform in [-1, 1): about the range of a normalized picture. Fixed, so
 * that a model's prior is the same on every load. */
static void fill_image(float *v, size_t n) {
  uint32_t s = 0x9e3779b9u;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    v[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
  }
}

static double clamp_density(double d) {
  return d < PLAN_MIN_WIRE_DENSITY ? PLAN_MIN_WIRE_DENSITY : d > 1.0 ? 1.0 : d;
}

err_code wire_density_measure(xexec *x, double *density, err *e) {
  const model *m = xexec_model(x);
  for (int l = 0; l < m->n_layers; l++) density[l] = 1.0;
  int hf = plan_head_first(m);
  float *prev = NULL; /* the last range's whole output */
  err_code rc = ERR_OK;
  for (int a = 0, b = 1; rc == ERR_OK && b <= hf; b++) {
    if (b < hf && !model_is_cut(m, b)) continue;
    model_shape os = model_tensor_shape(m, b - 1);
    model_rows out = {0, os.h};
    xexec_strip *s = NULL;
    rc = xexec_strip_create(x, a, b, out, &s, e);
    if (rc != ERR_OK) break;
    model_shape is = a == 0 ? m->input : model_tensor_shape(m, a - 1);
    model_rows in = xexec_strip_in_rows(s);
    size_t row = (size_t)is.w * (size_t)is.c;
    size_t n_in = (size_t)(in.hi - in.lo) * row;
    if (prev) memcpy(xexec_strip_input(s), prev + (size_t)in.lo * row, n_in * sizeof(float));
    else fill_image(xexec_strip_input(s), n_in);
    rc = xexec_strip_run_local(s, e);
    if (rc == ERR_OK) {
      size_t n_out = (size_t)os.h * (size_t)os.w * (size_t)os.c;
      const float *o = xexec_strip_output(s);
      double d = n_out ? (double)rowcodec_mask_size(o, n_out) / ((double)n_out * sizeof(float))
                       : 1.0;
      density[b - 1] = clamp_density(d);
      free(prev);
      prev = malloc(n_out * sizeof *prev);
      if (!prev) rc = err_set(e, ERR_NOMEM, "wire density: out of memory");
      else memcpy(prev, o, n_out * sizeof *prev);
    }
    xexec_strip_destroy(s);
    a = b;
  }
  free(prev);
  if (rc != ERR_OK) {
    for (int l = 0; l < m->n_layers; l++) density[l] = 1.0;
    err_wrap(e, "wire density of %s", m->name);
  }
  return rc;
}

void wire_density_note(double *density, uint64_t raw, uint64_t sent) {
  if (!density || raw == 0 || sent > raw) return;
  *density = clamp_density(*density + WIRE_DENSITY_GAIN * ((double)sent / (double)raw - *density));
}

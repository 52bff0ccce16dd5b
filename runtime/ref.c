/* ref.c — the reference executor (contract in ref.h).
 *
 * What it does: runs a finalized model whole, one layer after the other, in
 * the most direct loops that follow each operator's definition in model.h.
 * Convolutions, pools, means and fully connected layers accumulate in double
 * so that the result is as close to the exact value as float storage allows.
 *
 * What it relies on: model_finalize() has checked every shape and weight
 * size, so the loops index weights without re-checking them; layers are in
 * topological order, so a layer's inputs are computed before it runs.
 *
 * What it promises: the same numbers for the same model and input, every
 * time; errors (not crashes) for an unfinalized model, NULL buffers, pools
 * whose padding could make a window empty, and allocation failures. It never
 * prints or exits.
 */
#include "runtime/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Element (y, x, c) of an NHWC tensor of shape s. */
static size_t at(model_shape s, int y, int x, int c) {
  return ((size_t)y * (size_t)s.w + (size_t)x) * (size_t)s.c + (size_t)c;
}

static void run_conv(const model_layer *L, model_shape is, const float *in,
                     float *out) {
  model_shape os = L->out;
  int in_per_group = is.c / L->groups;
  int out_per_group = os.c / L->groups;
  for (int oy = 0; oy < os.h; oy++)
    for (int ox = 0; ox < os.w; ox++)
      for (int oc = 0; oc < os.c; oc++) {
        int g = oc / out_per_group;
        double acc = L->bias ? L->bias[oc] : 0.0;
        for (int ky = 0; ky < L->kernel_h; ky++) {
          int iy = oy * L->stride_h - L->pad_top + ky;
          if (iy < 0 || iy >= is.h) continue; /* zero padding */
          for (int kx = 0; kx < L->kernel_w; kx++) {
            int ix = ox * L->stride_w - L->pad_left + kx;
            if (ix < 0 || ix >= is.w) continue;
            const float *w =
                L->weights +
                (((size_t)oc * L->kernel_h + ky) * L->kernel_w + kx) *
                    in_per_group;
            const float *x = in + at(is, iy, ix, g * in_per_group);
            for (int ic = 0; ic < in_per_group; ic++)
              acc += (double)w[ic] * (double)x[ic];
          }
        }
        out[at(os, oy, ox, oc)] = (float)acc;
      }
}

/* Max or average over the window's real elements: padding takes part in
 * neither the max nor the average's divisor. */
static void run_pool(const model_layer *L, model_shape is, const float *in,
                     float *out) {
  model_shape os = L->out;
  bool is_max = L->op == MODEL_OP_MAXPOOL;
  for (int oy = 0; oy < os.h; oy++)
    for (int ox = 0; ox < os.w; ox++)
      for (int c = 0; c < os.c; c++) {
        double best = -INFINITY, sum = 0.0;
        int count = 0;
        for (int ky = 0; ky < L->kernel_h; ky++) {
          int iy = oy * L->stride_h - L->pad_top + ky;
          if (iy < 0 || iy >= is.h) continue;
          for (int kx = 0; kx < L->kernel_w; kx++) {
            int ix = ox * L->stride_w - L->pad_left + kx;
            if (ix < 0 || ix >= is.w) continue;
            double v = in[at(is, iy, ix, c)];
            if (v > best) best = v;
            sum += v;
            count++;
          }
        }
        /* count > 0: check_model() rejects padding that could empty a window. */
        out[at(os, oy, ox, c)] = (float)(is_max ? best : sum / count);
      }
}

/* Per-channel sums over all pixels, in double. */
static void channel_sums(model_shape s, const float *in, double *sums) {
  for (int c = 0; c < s.c; c++) sums[c] = 0.0;
  for (int y = 0; y < s.h; y++)
    for (int x = 0; x < s.w; x++)
      for (int c = 0; c < s.c; c++) sums[c] += in[at(s, y, x, c)];
}

static err_code run_gap(model_shape is, const float *in, float *out, err *e) {
  double *sums = malloc((size_t)is.c * sizeof *sums);
  if (!sums) return err_set(e, ERR_NOMEM, "out of memory for a global pool");
  channel_sums(is, in, sums);
  double count = (double)is.h * is.w;
  for (int c = 0; c < is.c; c++) out[c] = (float)(sums[c] / count);
  free(sums);
  return ERR_OK;
}

static void run_fc(const model_layer *L, model_shape is, const float *in,
                   float *out) {
  int n_in = is.c; /* finalize guarantees a 1 x 1 x C input */
  for (int o = 0; o < L->out_channels; o++) {
    double acc = L->bias ? L->bias[o] : 0.0;
    const float *w = L->weights + (size_t)o * n_in;
    for (int i = 0; i < n_in; i++) acc += (double)w[i] * (double)in[i];
    out[o] = (float)acc;
  }
}

/* x * sigmoid(W * mean(x)); the mean is over the whole tensor, which is
 * exactly what the strip executors must reproduce from partial sums, so the
 * scale comes from the same model_fe_scale() they use. */
static err_code run_fe(const model *m, int l, model_shape is, const float *in,
                       float *out, err *e) {
  double *sums = malloc((size_t)is.c * sizeof *sums);
  float *scale = malloc((size_t)is.c * sizeof *scale);
  err_code rc = ERR_OK;
  if (!sums || !scale) {
    rc = err_set(e, ERR_NOMEM, "out of memory for feature enhancement");
    goto done;
  }
  channel_sums(is, in, sums);
  rc = model_fe_scale(m, l, sums, (double)is.h * is.w, scale, e);
  if (rc != ERR_OK) goto done;
  for (int y = 0; y < is.h; y++)
    for (int x = 0; x < is.w; x++)
      for (int c = 0; c < is.c; c++)
        out[at(is, y, x, c)] = in[at(is, y, x, c)] * scale[c];
done:
  free(sums);
  free(scale);
  return rc;
}

/* PyTorch flattens NCHW, so element (y, x, c) lands at (c * H + y) * W + x. */
static void run_flatten(model_shape is, const float *in, float *out) {
  for (int y = 0; y < is.h; y++)
    for (int x = 0; x < is.w; x++)
      for (int c = 0; c < is.c; c++)
        out[((size_t)c * is.h + y) * is.w + x] = in[at(is, y, x, c)];
}

/* Runs layer l reading `ins` (its input tensors) into `out`. */
static err_code run_layer(const model *m, int l, const float *const *ins,
                          float *out, err *e) {
  const model_layer *L = &m->layers[l];
  model_shape is = model_tensor_shape(m, L->inputs[0]);
  size_t n_out = model_shape_elems(L->out);
  const float *in = ins[0];
  switch (L->op) {
    case MODEL_OP_CONV:
      run_conv(L, is, in, out);
      break;
    case MODEL_OP_BN:
      for (size_t i = 0; i < n_out; i++) {
        int c = (int)(i % (size_t)is.c);
        out[i] = in[i] * L->weights[c] + L->bias[c];
      }
      break;
    case MODEL_OP_RELU:
      for (size_t i = 0; i < n_out; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
      break;
    case MODEL_OP_MAXPOOL:
    case MODEL_OP_AVGPOOL:
      run_pool(L, is, in, out);
      break;
    case MODEL_OP_GAP: {
      err_code rc = run_gap(is, in, out, e);
      if (rc != ERR_OK) return rc;
      break;
    }
    case MODEL_OP_FC:
      run_fc(L, is, in, out);
      break;
    case MODEL_OP_FE: {
      err_code rc = run_fe(m, l, is, in, out, e);
      if (rc != ERR_OK) return rc;
      break;
    }
    case MODEL_OP_ADD:
      for (size_t i = 0; i < n_out; i++) out[i] = ins[0][i] + ins[1][i];
      break;
    case MODEL_OP_FLATTEN:
      run_flatten(is, in, out);
      break;
    default:
      return err_set(e, ERR_UNSUPPORTED, "layer %d (%s): operator %d", l,
                     L->name, (int)L->op);
  }
  if (L->relu)
    for (size_t i = 0; i < n_out; i++)
      if (!(out[i] > 0.0f)) out[i] = 0.0f;
  return ERR_OK;
}

/* The one geometry fact the pool loops need, re-checked because it is
 * cheap: model_finalize() refuses pool padding as wide as the kernel, but a
 * layer edited after finalizing could have it, and a window of nothing but
 * padding has no max and no average. */
static err_code check_model(const model *m, const float *input, err *e) {
  if (!m || !m->finalized)
    return err_set(e, ERR_INVALID, "reference run of a model that is not "
                                   "finalized");
  if (!input) return err_set(e, ERR_INVALID, "reference run without input");
  for (int l = 0; l < m->n_layers; l++) {
    const model_layer *L = &m->layers[l];
    if ((L->op == MODEL_OP_MAXPOOL || L->op == MODEL_OP_AVGPOOL) &&
        (L->pad_top >= L->kernel_h || L->pad_bottom >= L->kernel_h ||
         L->pad_left >= L->kernel_w || L->pad_right >= L->kernel_w))
      return err_set(e, ERR_UNSUPPORTED,
                     "layer %d (%s): pool padding must be smaller than its "
                     "%dx%d kernel",
                     l, L->name, L->kernel_h, L->kernel_w);
  }
  return ERR_OK;
}

void ref_free_acts(const model *m, float **acts) {
  if (!m || !acts) return;
  for (int l = 0; l < m->n_layers; l++) free(acts[l]);
  free(acts);
}

/* Runs every layer into acts[l]. With `keep_all` false a tensor is freed as
 * soon as its last reader has run (only the last layer's output survives),
 * so that ref_run of a large model needs memory for a few tensors, not all. */
static err_code run_graph(const model *m, const float *input, bool keep_all,
                          float **acts, err *e) {
  int n = m->n_layers;
  int *last_use = NULL;
  if (!keep_all) {
    last_use = malloc((size_t)n * sizeof *last_use);
    if (!last_use) return err_set(e, ERR_NOMEM, "out of memory planning a run");
    for (int l = 0; l < n; l++) last_use[l] = l == n - 1 ? n : l;
    for (int l = 0; l < n; l++)
      for (int i = 0; i < m->layers[l].n_inputs; i++)
        if (m->layers[l].inputs[i] != MODEL_INPUT)
          last_use[m->layers[l].inputs[i]] = l;
  }
  err_code rc = ERR_OK;
  for (int l = 0; l < n; l++) {
    const model_layer *L = &m->layers[l];
    const float *ins[MODEL_MAX_INPUTS] = {NULL, NULL};
    for (int i = 0; i < L->n_inputs; i++)
      ins[i] = L->inputs[i] == MODEL_INPUT ? input : acts[L->inputs[i]];
    acts[l] = malloc(model_shape_elems(L->out) * sizeof(float));
    if (!acts[l]) {
      rc = err_set(e, ERR_NOMEM, "layer %d (%s): out of memory for %zu floats",
                   l, L->name, model_shape_elems(L->out));
      break;
    }
    rc = run_layer(m, l, ins, acts[l], e);
    if (rc != ERR_OK) break;
    if (!keep_all) {
      for (int i = 0; i < L->n_inputs; i++) {
        int src = L->inputs[i];
        if (src != MODEL_INPUT && last_use[src] == l) {
          free(acts[src]); /* an add of x and x frees it once: then NULL */
          acts[src] = NULL;
        }
      }
      if (last_use[l] == l) { /* nobody reads it */
        free(acts[l]);
        acts[l] = NULL;
      }
    }
  }
  free(last_use);
  return rc;
}

err_code ref_run_all(const model *m, const float *input, float ***acts_out,
                     err *e) {
  err_code rc = check_model(m, input, e);
  if (rc != ERR_OK) return rc;
  if (!acts_out) return err_set(e, ERR_INVALID, "ref_run_all without output");
  float **acts = calloc((size_t)m->n_layers, sizeof *acts);
  if (!acts) return err_set(e, ERR_NOMEM, "out of memory for activations");
  rc = run_graph(m, input, true, acts, e);
  if (rc != ERR_OK) {
    ref_free_acts(m, acts);
    return rc;
  }
  *acts_out = acts;
  return ERR_OK;
}

err_code ref_run(const model *m, const float *input, float *output, err *e) {
  err_code rc = check_model(m, input, e);
  if (rc != ERR_OK) return rc;
  if (!output) return err_set(e, ERR_INVALID, "ref_run without output buffer");
  float **acts = calloc((size_t)m->n_layers, sizeof *acts);
  if (!acts) return err_set(e, ERR_NOMEM, "out of memory for activations");
  rc = run_graph(m, input, false, acts, e);
  if (rc == ERR_OK) {
    int last = m->n_layers - 1;
    memcpy(output, acts[last],
           model_shape_elems(m->layers[last].out) * sizeof(float));
  }
  ref_free_acts(m, acts);
  return rc;
}

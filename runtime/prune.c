/* prune.c — L1-norm filter pruning of one convolution (contract in
 * prune.h).
 *
 * trace() walks the layers after the convolution once, in topological
 * order, and gives every layer that sees the pruned channels a role: the
 * source, a channel-wise layer the channels pass through, a flatten, or a
 * sink that mixes them. Everything else that would see them (a residual
 * add, a grouped convolution, the graph output) refuses the prune. Every
 * weight array then shrinks by one primitive, select_chans(), which drops
 * channels from an [outer][channels][unit] array: a convolution's filters
 * are [1][out_c][kh*kw*in_c], its input channels [out_c*kh*kw][in_c][1],
 * an FC's inputs after a flatten [out][C][H*W].
 */
#include "runtime/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum role {
  ROLE_NONE = 0,
  ROLE_SRC,       /* the pruned convolution */
  ROLE_PASS,      /* channel-wise: the channels go through unchanged */
  ROLE_FLATTEN,   /* HxWxC -> C blocks of H*W features */
  ROLE_SINK_CONV, /* a dense convolution reading the channels */
  ROLE_SINK_FC,   /* a fully connected layer reading them (maybe flattened) */
} role;

static bool carries(role r) {
  return r == ROLE_SRC || r == ROLE_PASS || r == ROLE_FLATTEN;
}

static err_code check_conv(const model *m, int conv, err *e) {
  if (!m || !m->finalized)
    return err_set(e, ERR_INVALID, "prune: the model must be finalized");
  if (conv < 0 || conv >= m->n_layers)
    return err_set(e, ERR_RANGE, "prune: layer %d does not exist (%d layers)",
                   conv, m->n_layers);
  const model_layer *L = &m->layers[conv];
  if (L->op != MODEL_OP_CONV)
    return err_set(e, ERR_INVALID, "prune: layer %d (%s) is a %s, not a conv",
                   conv, L->name, model_op_name(L->op));
  if (L->groups != 1)
    return err_set(e, ERR_UNSUPPORTED,
                   "prune: layer %d (%s) is a grouped convolution (%d groups)",
                   conv, L->name, L->groups);
  if (L->out_channels < 2)
    return err_set(e, ERR_UNSUPPORTED,
                   "prune: layer %d (%s) has a single filter", conv, L->name);
  return ERR_OK;
}

/* Fills roles[n_layers] and block[n_layers] (for FLATTEN and SINK_FC: the
 * features each channel became, H*W of the flattened tensor). */
static err_code trace(const model *m, int conv, role *roles, int *block,
                      err *e) {
  const char *src = m->layers[conv].name;
  memset(roles, 0, (size_t)m->n_layers * sizeof *roles);
  roles[conv] = ROLE_SRC;
  block[conv] = 1;
  for (int l = conv + 1; l < m->n_layers; l++) {
    const model_layer *L = &m->layers[l];
    int from = -1;
    for (int i = 0; i < L->n_inputs; i++)
      if (L->inputs[i] >= 0 && carries(roles[L->inputs[i]])) from = L->inputs[i];
    if (from < 0) continue;
    if (roles[from] == ROLE_FLATTEN && L->op != MODEL_OP_FC)
      return err_set(e, ERR_UNSUPPORTED,
                     "prune: %s's channels, flattened by %s, reach %s (%s); "
                     "only a fully connected layer may read them",
                     src, m->layers[from].name, L->name, model_op_name(L->op));
    switch (L->op) {
      case MODEL_OP_CONV:
        if (L->groups != 1)
          return err_set(e, ERR_UNSUPPORTED,
                         "prune: %s's channels reach the grouped convolution %s",
                         src, L->name);
        roles[l] = ROLE_SINK_CONV;
        break;
      case MODEL_OP_FC:
        roles[l] = ROLE_SINK_FC;
        block[l] = roles[from] == ROLE_FLATTEN ? block[from] : 1;
        break;
      case MODEL_OP_BN:
      case MODEL_OP_RELU:
      case MODEL_OP_MAXPOOL:
      case MODEL_OP_AVGPOOL:
      case MODEL_OP_GAP:
      case MODEL_OP_FE:
        roles[l] = ROLE_PASS;
        break;
      case MODEL_OP_FLATTEN: {
        model_shape s = model_tensor_shape(m, from);
        roles[l] = ROLE_FLATTEN;
        block[l] = s.h * s.w;
        break;
      }
      case MODEL_OP_ADD:
        return err_set(e, ERR_UNSUPPORTED,
                       "prune: %s's channels reach the residual add %s, whose "
                       "other input keeps them",
                       src, L->name);
      default:
        return err_set(e, ERR_UNSUPPORTED,
                       "prune: %s's channels reach %s (%s)", src, L->name,
                       model_op_name(L->op));
    }
  }
  if (carries(roles[m->n_layers - 1]))
    return err_set(e, ERR_UNSUPPORTED,
                   "prune: %s's channels are the model's output", src);
  return ERR_OK;
}

err_code prune_check(const model *m, int conv, err *e) {
  err_code rc = check_conv(m, conv, e);
  if (rc != ERR_OK) return rc;
  role *roles = malloc((size_t)m->n_layers * sizeof *roles);
  int *block = malloc((size_t)m->n_layers * sizeof *block);
  if (!roles || !block) rc = err_set(e, ERR_NOMEM, "out of memory");
  else rc = trace(m, conv, roles, block, e);
  free(roles);
  free(block);
  return rc;
}

err_code prune_filter_l1(const model *m, int conv, double *l1, err *e) {
  err_code rc = check_conv(m, conv, e);
  if (rc != ERR_OK) return rc;
  const model_layer *L = &m->layers[conv];
  size_t per = L->n_weights / (size_t)L->out_channels;
  for (int o = 0; o < L->out_channels; o++) {
    double s = 0;
    for (size_t i = 0; i < per; i++) s += fabs(L->weights[(size_t)o * per + i]);
    l1[o] = s;
  }
  return ERR_OK;
}

err_code prune_smallest(const model *m, int conv, int n, int *filters,
                        err *e) {
  err_code rc = check_conv(m, conv, e);
  if (rc != ERR_OK) return rc;
  int c = m->layers[conv].out_channels;
  if (n < 1 || n >= c)
    return err_set(e, ERR_INVALID,
                   "prune: cannot remove %d of the %d filters of %s", n, c,
                   m->layers[conv].name);
  double *l1 = malloc((size_t)c * sizeof *l1);
  bool *taken = calloc((size_t)c, sizeof *taken);
  if (!l1 || !taken) {
    free(l1);
    free(taken);
    return err_set(e, ERR_NOMEM, "out of memory");
  }
  prune_filter_l1(m, conv, l1, e);
  /* n selection passes: c is at most a few thousand. */
  for (int k = 0; k < n; k++) {
    int best = -1;
    for (int o = 0; o < c; o++)
      if (!taken[o] && (best < 0 || l1[o] < l1[best])) best = o;
    taken[best] = true;
  }
  for (int o = 0, k = 0; o < c; o++)
    if (taken[o]) filters[k++] = o;
  free(l1);
  free(taken);
  return ERR_OK;
}

/* src is [outer][chans][unit]; returns [outer][chans - n_drop][unit]
 * without the dropped channels (NULL when out of memory or nothing left). */
static float *select_chans(const float *src, size_t outer, int chans, size_t unit,
                     const bool *drop, int n_drop) {
  size_t keep = (size_t)(chans - n_drop), total = outer * keep * unit;
  float *dst = malloc((total > 0 ? total : 1) * sizeof *dst);
  if (!dst) return NULL;
  float *d = dst;
  for (size_t o = 0; o < outer; o++)
    for (int c = 0; c < chans; c++) {
      if (drop[c]) continue;
      memcpy(d, src + (o * (size_t)chans + (size_t)c) * unit,
             unit * sizeof *d);
      d += unit;
    }
  return dst;
}

/* Replaces *arr (n values) by select_chans(...) of it. */
static err_code shrink(float **arr, size_t *n, size_t outer, int chans,
                       size_t unit, const bool *drop, int n_drop, err *e) {
  float *s = select_chans(*arr, outer, chans, unit, drop, n_drop);
  if (!s) return err_set(e, ERR_NOMEM, "out of memory pruning");
  free(*arr);
  *arr = s;
  *n = outer * (size_t)(chans - n_drop) * unit;
  return ERR_OK;
}

/* Adds delta[out] to the layer's bias, creating a zero one if it has none
 * and some delta is not zero. */
static err_code add_bias(model_layer *L, const double *delta, int out,
                         err *e) {
  bool any = false;
  for (int o = 0; o < out; o++) any |= delta[o] != 0;
  if (!any) return ERR_OK;
  if (!L->bias) {
    L->bias = calloc((size_t)out, sizeof *L->bias);
    if (!L->bias) return err_set(e, ERR_NOMEM, "out of memory pruning");
    L->n_bias = (size_t)out;
  }
  for (int o = 0; o < out; o++) L->bias[o] = (float)(L->bias[o] + delta[o]);
  return ERR_OK;
}

/* What each dropped channel j is replaced by after layer l: val[l*nd + j].
 * The source outputs act(bias); channel-wise layers map the constant; an FE
 * gate depends on the whole input, so after one the channel is dropped
 * without compensation. */
static void propagate(const model *m, const role *roles, const int *dropped,
                      int nd, double *val) {
  for (int l = 0; l < m->n_layers; l++) {
    if (!carries(roles[l])) continue;
    const model_layer *L = &m->layers[l];
    for (int j = 0; j < nd; j++) {
      int k = dropped[j];
      double v;
      if (roles[l] == ROLE_SRC) v = L->bias ? L->bias[k] : 0.0;
      else v = val[(size_t)L->inputs[0] * nd + j];
      if (L->op == MODEL_OP_BN) v = v * L->weights[k] + L->bias[k];
      if (L->op == MODEL_OP_FE) v = 0;
      if ((L->op == MODEL_OP_RELU || L->relu) && v < 0) v = 0;
      val[(size_t)l * nd + j] = v;
    }
  }
}

/* Folds the dropped channels' constants into sink l's bias, then removes
 * its input channels. */
static err_code prune_sink(model_layer *L, role r, int blk,
                           int chans, const bool *drop, const int *dropped,
                           int nd, const double *v, err *e) {
  int out = L->out_channels;
  size_t taps = r == ROLE_SINK_CONV ? (size_t)L->kernel_h * L->kernel_w : 1;
  size_t unit = r == ROLE_SINK_CONV ? 1 : (size_t)blk;
  size_t row = taps * (size_t)chans * unit; /* weights per output */
  double *delta = calloc((size_t)out, sizeof *delta);
  if (!delta) return err_set(e, ERR_NOMEM, "out of memory pruning");
  for (int o = 0; o < out; o++)
    for (int j = 0; j < nd; j++) {
      if (v[j] == 0) continue;
      for (size_t t = 0; t < taps; t++)
        for (size_t p = 0; p < unit; p++)
          delta[o] += v[j] * L->weights[(size_t)o * row +
                                        (t * (size_t)chans + (size_t)dropped[j]) * unit + p];
    }
  err_code rc = add_bias(L, delta, out, e);
  free(delta);
  if (rc != ERR_OK) return rc;
  return shrink(&L->weights, &L->n_weights, (size_t)out * taps, chans, unit,
                drop, nd, e);
}

err_code prune_filters(const model *m, int conv, const int *filters, int n,
                       model **out, err *e) {
  *out = NULL;
  err_code rc = check_conv(m, conv, e);
  if (rc != ERR_OK) return rc;
  const model_layer *S = &m->layers[conv];
  int chans = S->out_channels;
  if (n < 1 || n >= chans)
    return err_set(e, ERR_INVALID,
                   "prune: cannot remove %d of the %d filters of %s (at least "
                   "one must stay)", n, chans, S->name);
  bool *drop = calloc((size_t)chans, sizeof *drop);
  int *dropped = malloc((size_t)n * sizeof *dropped);
  role *roles = malloc((size_t)m->n_layers * sizeof *roles);
  int *block = malloc((size_t)m->n_layers * sizeof *block);
  double *val = malloc((size_t)m->n_layers * (size_t)n * sizeof *val);
  model *c = NULL;
  if (!drop || !dropped || !roles || !block || !val) {
    rc = err_set(e, ERR_NOMEM, "out of memory pruning");
    goto done;
  }
  for (int j = 0; j < n; j++) {
    int k = filters[j];
    if (k < 0 || k >= chans || drop[k]) {
      rc = err_set(e, ERR_INVALID,
                   "prune: filter %d of %s is out of range (0..%d) or named "
                   "twice", k, S->name, chans - 1);
      goto done;
    }
    drop[k] = true;
  }
  for (int k = 0, j = 0; k < chans; k++)
    if (drop[k]) dropped[j++] = k;
  if ((rc = trace(m, conv, roles, block, e)) != ERR_OK) goto done;
  propagate(m, roles, dropped, n, val);
  if (!(c = model_clone(m, e))) {
    rc = e ? e->code : ERR_NOMEM;
    goto done;
  }
  for (int l = conv; l < c->n_layers && rc == ERR_OK; l++) {
    model_layer *L = &c->layers[l];
    switch (roles[l]) {
      case ROLE_SRC: {
        size_t per = L->n_weights / (size_t)chans;
        rc = shrink(&L->weights, &L->n_weights, 1, chans, per, drop, n, e);
        if (rc == ERR_OK && L->bias)
          rc = shrink(&L->bias, &L->n_bias, 1, chans, 1, drop, n, e);
        L->out_channels = chans - n;
        break;
      }
      case ROLE_PASS:
        if (L->op == MODEL_OP_BN) {
          rc = shrink(&L->weights, &L->n_weights, 1, chans, 1, drop, n, e);
          if (rc == ERR_OK)
            rc = shrink(&L->bias, &L->n_bias, 1, chans, 1, drop, n, e);
        } else if (L->op == MODEL_OP_FE) { /* rows, then columns */
          rc = shrink(&L->weights, &L->n_weights, 1, chans, (size_t)chans,
                      drop, n, e);
          if (rc == ERR_OK)
            rc = shrink(&L->weights, &L->n_weights, (size_t)(chans - n),
                        chans, 1, drop, n, e);
        }
        break;
      case ROLE_SINK_CONV:
      case ROLE_SINK_FC:
        rc = prune_sink(L, roles[l], block[l], chans, drop, dropped, n,
                        val + (size_t)L->inputs[0] * n, e);
        break;
      default:
        break;
    }
  }
  if (rc == ERR_OK) rc = model_finalize(c, e);
  if (rc == ERR_OK) {
    *out = c;
    c = NULL;
  }
done:
  model_destroy(c);
  free(drop);
  free(dropped);
  free(roles);
  free(block);
  free(val);
  return rc;
}

/* fuse.c — graph rewriting before execution (contract in fuse.h). Works on
 * a clone: marks layers that disappear with the layer whose output now
 * stands for them, then compacts the layer array and renumbers inputs. */
#include "runtime/fuse.h"

#include <stdlib.h>
#include <string.h>

typedef struct fuse_state {
  model *m;
  int *consumers; /* readers of each layer's output; the last layer +1 */
  int *alias;     /* alias[l] == l, or the layer that replaced l */
} fuse_state;

static int resolve(const fuse_state *st, int l) {
  while (l >= 0 && st->alias[l] != l) l = st->alias[l];
  return l;
}

/* The one live layer reading `producer`, or -1 when there are more (or the
 * producer is the graph output). */
static int only_consumer(const fuse_state *st, int producer) {
  if (producer < 0 || st->consumers[producer] != 1) return -1;
  for (int j = producer + 1; j < st->m->n_layers; j++) {
    if (st->alias[j] != j) continue;
    const model_layer *L = &st->m->layers[j];
    for (int i = 0; i < L->n_inputs; i++)
      if (resolve(st, L->inputs[i]) == producer) return j;
  }
  return -1;
}

/* conv -> BN: scale the conv's filters, shift its bias. */
static bool fold_bn_into_previous(fuse_state *st, int bn) {
  model_layer *B = &st->m->layers[bn];
  int c = resolve(st, B->inputs[0]);
  if (c < 0) return false;
  model_layer *C = &st->m->layers[c];
  if (C->op != MODEL_OP_CONV || C->relu || only_consumer(st, c) != bn) return false;
  if (!C->bias) {
    C->bias = calloc((size_t)C->out_channels, sizeof(float));
    if (!C->bias) return false;
    C->n_bias = (size_t)C->out_channels;
  }
  size_t per_filter = C->n_weights / (size_t)C->out_channels;
  for (int o = 0; o < C->out_channels; o++) {
    for (size_t k = 0; k < per_filter; k++)
      C->weights[(size_t)o * per_filter + k] *= B->weights[o];
    C->bias[o] = C->bias[o] * B->weights[o] + B->bias[o];
  }
  C->relu = B->relu;
  st->alias[bn] = c;
  st->consumers[c] = st->consumers[bn];
  return true;
}

/* BN -> 1x1 unpadded dense conv: scale the conv's input channels and move
 * the shift into its bias. */
static bool fold_bn_into_next(fuse_state *st, int bn) {
  model_layer *B = &st->m->layers[bn];
  if (B->relu) return false;
  int c = only_consumer(st, bn);
  if (c < 0) return false;
  model_layer *C = &st->m->layers[c];
  if (C->op != MODEL_OP_CONV || C->kernel_h != 1 || C->kernel_w != 1 ||
      C->groups != 1 || C->pad_top || C->pad_bottom || C->pad_left ||
      C->pad_right)
    return false;
  int in_c = (int)B->n_weights;
  if (!C->bias) {
    C->bias = calloc((size_t)C->out_channels, sizeof(float));
    if (!C->bias) return false;
    C->n_bias = (size_t)C->out_channels;
  }
  for (int o = 0; o < C->out_channels; o++) {
    float *w = C->weights + (size_t)o * in_c;
    double shift = 0;
    for (int i = 0; i < in_c; i++) {
      shift += (double)w[i] * B->bias[i];
      w[i] *= B->weights[i];
    }
    C->bias[o] += (float)shift;
  }
  st->alias[bn] = resolve(st, B->inputs[0]); /* its readers: unchanged */
  return true;
}

/* BN -> max pool, every scale >= 0: max(s*a + t, s*b + t) = s*max(a, b) + t
 * exactly (rounding is monotonic), so the pool runs first and the BN on
 * the pooled tensor, a quarter of the size, where the loop may then fold
 * it into the next 1x1 convolution. The two layers trade places in the
 * array (the pool takes the BN's index), so the order stays topological
 * and the pool's readers keep their input index. */
static bool swap_bn_maxpool(fuse_state *st, int bn) {
  model *m = st->m;
  model_layer *B = &m->layers[bn];
  if (B->relu) return false;
  int p = only_consumer(st, bn);
  if (p < 0) return false;
  model_layer *P = &m->layers[p];
  if (P->op != MODEL_OP_MAXPOOL || P->relu || P->n_inputs != 1) return false;
  for (size_t i = 0; i < B->n_weights; i++)
    if (!(B->weights[i] >= 0.0f)) return false;
  model_layer bn_layer = *B, pool = *P;
  pool.inputs[0] = B->inputs[0];
  bn_layer.inputs[0] = bn;
  m->layers[bn] = pool;
  m->layers[p] = bn_layer;
  return true;
}

static bool fuse_relu(fuse_state *st, int relu) {
  int p = resolve(st, st->m->layers[relu].inputs[0]);
  if (p < 0) return false;
  model_layer *P = &st->m->layers[p];
  if (P->op != MODEL_OP_CONV && P->op != MODEL_OP_FC && P->op != MODEL_OP_ADD &&
      P->op != MODEL_OP_BN && P->op != MODEL_OP_RELU)
    return false;
  if (only_consumer(st, p) != relu) return false;
  P->relu = true;
  st->alias[relu] = p;
  st->consumers[p] = st->consumers[relu];
  return true;
}

/* A 1x1 unpadded dense conv without an activation: a linear map per pixel. */
static bool is_pointwise_linear(const model_layer *L) {
  return L->op == MODEL_OP_CONV && L->kernel_h == 1 && L->kernel_w == 1 && L->groups == 1 &&
         !L->pad_top && !L->pad_bottom && !L->pad_left && !L->pad_right;
}

/* 1x1 conv A (no ReLU) whose only reader is 1x1 conv B: B(A x) is one 1x1
 * conv with weights W_B W_A and bias W_B b_A + b_B, strides multiplied
 * (unpadded 1x1 convs only subsample). The compact ResNets' units end in
 * t -> C and the next begins C -> t with nothing between: one t -> t conv
 * instead of two through a C-wide tensor. Merged only when that does fewer
 * multiply-adds per output pixel (in * out < mid * (in + out)). */
static bool merge_pointwise_pair(fuse_state *st, int a) {
  model *m = st->m;
  model_layer *A = &m->layers[a];
  if (!is_pointwise_linear(A) || A->relu) return false;
  int b = only_consumer(st, a);
  if (b < 0 || !is_pointwise_linear(&m->layers[b])) return false;
  model_layer *B = &m->layers[b];
  int in = (int)(A->n_weights / (size_t)A->out_channels), mid = A->out_channels,
      out = B->out_channels;
  if ((double)in * out >= (double)mid * (in + out)) return false;
  float *w = malloc((size_t)out * (size_t)in * sizeof *w);
  float *bias = malloc((size_t)out * sizeof *bias);
  if (!w || !bias) {
    free(w);
    free(bias);
    return false;
  }
  for (int o = 0; o < out; o++) {
    const float *wb = B->weights + (size_t)o * mid;
    double shift = B->bias ? B->bias[o] : 0.0;
    for (int k = 0; k < mid; k++)
      if (A->bias) shift += (double)wb[k] * A->bias[k];
    bias[o] = (float)shift;
    for (int i = 0; i < in; i++) {
      double sum = 0;
      for (int k = 0; k < mid; k++) sum += (double)wb[k] * A->weights[(size_t)k * in + i];
      w[(size_t)o * in + i] = (float)sum;
    }
  }
  free(B->weights);
  free(B->bias);
  B->weights = w;
  B->n_weights = (size_t)out * (size_t)in;
  B->bias = bias;
  B->n_bias = (size_t)out;
  B->stride_h *= A->stride_h;
  B->stride_w *= A->stride_w;
  st->alias[a] = resolve(st, A->inputs[0]); /* B now reads A's input */
  return true;
}

/* Renumbers inputs through the aliases and drops the replaced layers. */
static void compact(fuse_state *st) {
  model *m = st->m;
  int *index = st->consumers; /* reused: old index -> new index */
  int kept = 0;
  for (int l = 0; l < m->n_layers; l++) {
    if (st->alias[l] != l) {
      free(m->layers[l].weights);
      free(m->layers[l].bias);
      index[l] = -1;
      continue;
    }
    model_layer L = m->layers[l];
    for (int i = 0; i < L.n_inputs; i++) {
      int src = resolve(st, L.inputs[i]);
      L.inputs[i] = src < 0 ? MODEL_INPUT : index[src];
    }
    index[l] = kept;
    m->layers[kept++] = L;
  }
  m->n_layers = kept;
}

err_code fuse_model(const model *src, model **out, err *e) {
  if (!src || !src->finalized)
    return err_set(e, ERR_INVALID, "fuse: model is not finalized");
  model *m = model_clone(src, e);
  if (!m) return e ? e->code : ERR_NOMEM;
  fuse_state st = {m, calloc((size_t)m->n_layers, sizeof(int)),
                   calloc((size_t)m->n_layers, sizeof(int))};
  if (!st.consumers || !st.alias) {
    free(st.consumers);
    free(st.alias);
    model_destroy(m);
    return err_set(e, ERR_NOMEM, "fuse: out of memory");
  }
  for (int l = 0; l < m->n_layers; l++) {
    st.alias[l] = l;
    for (int i = 0; i < m->layers[l].n_inputs; i++)
      if (m->layers[l].inputs[i] >= 0) st.consumers[m->layers[l].inputs[i]]++;
  }
  st.consumers[m->n_layers - 1]++; /* the graph output */

  /* In order, so that a ReLU fused into a conv sees BN folds before it, a
   * BN folded forward sees its ReLU already absorbed upstream, and a BN
   * moved behind a max pool comes up again at its new index. */
  for (int l = 0; l < m->n_layers; l++) {
    switch (m->layers[l].op) {
      case MODEL_OP_BN:
        if (!fold_bn_into_previous(&st, l) && !fold_bn_into_next(&st, l))
          swap_bn_maxpool(&st, l);
        break;
      case MODEL_OP_RELU:
        fuse_relu(&st, l);
        break;
      default:
        break;
    }
  }
  /* After the folds, so that A and B carry their BNs and B its ReLU. */
  for (int l = 0; l < m->n_layers; l++)
    if (st.alias[l] == l) merge_pointwise_pair(&st, l);
  compact(&st);
  free(st.consumers);
  free(st.alias);
  err_code rc = model_finalize(m, e);
  if (rc != ERR_OK) {
    model_destroy(m);
    return err_wrap(e, "fuse: rewritten graph is invalid (a bug)");
  }
  *out = m;
  return ERR_OK;
}

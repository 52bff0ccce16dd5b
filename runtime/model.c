/* model.c — building, shape inference, FLOPs and receptive fields of model
 * graphs (contract in model.h). Relies on layers being in topological
 * order; promises that every finalized model has consistent shapes and
 * weight sizes, so executors need not re-check them. */
#include "runtime/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[MODEL_OP_COUNT] = {
    [MODEL_OP_CONV] = "conv",       [MODEL_OP_BN] = "batchnorm",
    [MODEL_OP_RELU] = "relu",       [MODEL_OP_MAXPOOL] = "maxpool",
    [MODEL_OP_AVGPOOL] = "avgpool", [MODEL_OP_GAP] = "global_avgpool",
    [MODEL_OP_FC] = "fc",           [MODEL_OP_FE] = "feature_enhance",
    [MODEL_OP_ADD] = "add",         [MODEL_OP_FLATTEN] = "flatten",
};

const char *model_op_name(model_op op) {
  return (op >= 0 && op < MODEL_OP_COUNT) ? op_names[op] : "unknown";
}

model *model_create(const char *name, model_shape input) {
  model *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  snprintf(m->name, sizeof m->name, "%s", name ? name : "model");
  m->input = input;
  return m;
}

static void layer_free(model_layer *l) {
  free(l->weights);
  free(l->bias);
  l->weights = l->bias = NULL;
}

void model_destroy(model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_layers; i++) layer_free(&m->layers[i]);
  free(m->layers);
  free(m);
}

model_shape model_tensor_shape(const model *m, int layer) {
  if (layer == MODEL_INPUT) return m->input;
  return m->layers[layer].out;
}

size_t model_shape_elems(model_shape s) {
  return (size_t)s.h * (size_t)s.w * (size_t)s.c;
}

static bool shape_valid(model_shape s) { return s.h > 0 && s.w > 0 && s.c > 0; }

/* Output length of a sliding window, or <= 0 when the window does not fit. */
static int window_out(int in, int pad_a, int pad_b, int kernel, int stride) {
  int span = in + pad_a + pad_b - kernel;
  if (span < 0) return 0;
  return span / stride + 1;
}

/* The window geometry model_add_conv_ex / model_add_*pool accept, checked
 * again because layers can be edited (or imported) after they were added:
 * a zero stride would divide by zero below, and a pool padding as wide as
 * its kernel would leave windows with nothing but padding. */
static err_code check_window(const model_layer *L, int l, err *e) {
  if (L->kernel_h <= 0 || L->kernel_w <= 0 || L->stride_h <= 0 ||
      L->stride_w <= 0 || L->pad_top < 0 || L->pad_bottom < 0 ||
      L->pad_left < 0 || L->pad_right < 0)
    return err_set(e, ERR_INVALID,
                   "layer %d (%s): kernel %dx%d, stride %dx%d, padding "
                   "%d/%d/%d/%d (top/left/bottom/right): kernel and stride "
                   "must be positive and padding non-negative",
                   l, L->name, L->kernel_h, L->kernel_w, L->stride_h,
                   L->stride_w, L->pad_top, L->pad_left, L->pad_bottom,
                   L->pad_right);
  if (L->op != MODEL_OP_CONV &&
      (L->pad_top >= L->kernel_h || L->pad_bottom >= L->kernel_h ||
       L->pad_left >= L->kernel_w || L->pad_right >= L->kernel_w))
    return err_set(e, ERR_INVALID,
                   "layer %d (%s): pool padding must be smaller than its "
                   "%dx%d kernel",
                   l, L->name, L->kernel_h, L->kernel_w);
  return ERR_OK;
}

/* Infers layer l's output shape and FLOPs from its inputs; checks weights. */
static err_code infer_layer(model *m, int l, err *e) {
  model_layer *L = &m->layers[l];
  model_shape in = model_tensor_shape(m, L->inputs[0]);
  model_shape out = in;
  L->flops = 0;
  if (!shape_valid(in))
    return err_set(e, ERR_SHAPE, "layer %d (%s): input shape %dx%dx%d is empty",
                   l, L->name, in.h, in.w, in.c);
  if (L->op == MODEL_OP_CONV || L->op == MODEL_OP_MAXPOOL ||
      L->op == MODEL_OP_AVGPOOL) {
    err_code rc = check_window(L, l, e);
    if (rc != ERR_OK) return rc;
  }
  switch (L->op) {
    case MODEL_OP_CONV: {
      if (L->groups <= 0 || in.c % L->groups || L->out_channels % L->groups)
        return err_set(e, ERR_SHAPE,
                       "layer %d (%s): %d input and %d output channels do not "
                       "divide into %d groups",
                       l, L->name, in.c, L->out_channels, L->groups);
      size_t want = (size_t)L->out_channels * L->kernel_h * L->kernel_w *
                    (in.c / L->groups);
      if (L->n_weights != want || (L->bias && L->n_bias != (size_t)L->out_channels))
        return err_set(e, ERR_SHAPE,
                       "layer %d (%s): conv weights hold %zu values, %zu expected",
                       l, L->name, L->n_weights, want);
      out.h = window_out(in.h, L->pad_top, L->pad_bottom, L->kernel_h, L->stride_h);
      out.w = window_out(in.w, L->pad_left, L->pad_right, L->kernel_w, L->stride_w);
      out.c = L->out_channels;
      L->flops = 2.0 * out.h * out.w * out.c * (double)(in.c / L->groups) *
                 L->kernel_h * L->kernel_w;
      break;
    }
    case MODEL_OP_MAXPOOL:
    case MODEL_OP_AVGPOOL:
      out.h = window_out(in.h, L->pad_top, L->pad_bottom, L->kernel_h, L->stride_h);
      out.w = window_out(in.w, L->pad_left, L->pad_right, L->kernel_w, L->stride_w);
      break;
    case MODEL_OP_BN:
      if (L->n_weights != (size_t)in.c || L->n_bias != (size_t)in.c)
        return err_set(e, ERR_SHAPE,
                       "layer %d (%s): batchnorm has %zu scales for %d channels",
                       l, L->name, L->n_weights, in.c);
      break;
    case MODEL_OP_RELU:
      break;
    case MODEL_OP_GAP:
      out.h = out.w = 1;
      break;
    case MODEL_OP_FLATTEN:
      out.h = out.w = 1;
      out.c = in.h * in.w * in.c;
      break;
    case MODEL_OP_FC: {
      if (in.h != 1 || in.w != 1)
        return err_set(e, ERR_SHAPE,
                       "layer %d (%s): fully connected needs a 1x1xC input, got "
                       "%dx%dx%d (flatten or pool first)",
                       l, L->name, in.h, in.w, in.c);
      size_t want = (size_t)L->out_channels * in.c;
      if (L->n_weights != want || (L->bias && L->n_bias != (size_t)L->out_channels))
        return err_set(e, ERR_SHAPE,
                       "layer %d (%s): fc weights hold %zu values, %zu expected",
                       l, L->name, L->n_weights, want);
      out.c = L->out_channels;
      L->flops = 2.0 * in.c * L->out_channels;
      break;
    }
    case MODEL_OP_FE:
      if (L->n_weights != (size_t)in.c * in.c)
        return err_set(e, ERR_SHAPE,
                       "layer %d (%s): feature enhancement weights hold %zu "
                       "values, %d x %d expected",
                       l, L->name, L->n_weights, in.c, in.c);
      L->flops = 2.0 * in.c * in.c;
      break;
    case MODEL_OP_ADD: {
      model_shape b = model_tensor_shape(m, L->inputs[1]);
      if (b.h != in.h || b.w != in.w || b.c != in.c)
        return err_set(e, ERR_SHAPE,
                       "layer %d (%s): add of %dx%dx%d and %dx%dx%d", l, L->name,
                       in.h, in.w, in.c, b.h, b.w, b.c);
      break;
    }
    default:
      return err_set(e, ERR_INVALID, "layer %d: unknown operator %d", l, L->op);
  }
  if (!shape_valid(out))
    return err_set(e, ERR_SHAPE,
                   "layer %d (%s): a %dx%d window with stride %d does not fit "
                   "the %dx%d input",
                   l, L->name, L->kernel_h, L->kernel_w, L->stride_h, in.h, in.w);
  L->out = out;
  return ERR_OK;
}

/* Appends a layer reading `inputs`, allocates n_weights/n_bias zeros, infers
 * its shape; on failure removes it again. */
static int append(model *m, model_layer proto, size_t n_weights, size_t n_bias,
                  err *e) {
  if (!m) return err_set(e, ERR_INVALID, "no model"), MODEL_ADD_FAILED;
  if (m->n_layers == m->cap_layers) {
    int cap = m->cap_layers ? 2 * m->cap_layers : 32;
    model_layer *grown = realloc(m->layers, (size_t)cap * sizeof *grown);
    if (!grown) return err_set(e, ERR_NOMEM, "out of memory adding a layer"), MODEL_ADD_FAILED;
    m->layers = grown;
    m->cap_layers = cap;
  }
  int l = m->n_layers;
  for (int i = 0; i < proto.n_inputs; i++) {
    if (proto.inputs[i] < MODEL_INPUT || proto.inputs[i] >= l)
      return err_set(e, ERR_RANGE,
                     "layer %d (%s): input %d is not an earlier layer", l,
                     model_op_name(proto.op), proto.inputs[i]),
             MODEL_ADD_FAILED;
  }
  if (!proto.name[0])
    snprintf(proto.name, sizeof proto.name, "%s%d", model_op_name(proto.op), l);
  if (n_weights) {
    proto.weights = calloc(n_weights, sizeof(float));
    proto.n_weights = n_weights;
  }
  if (n_bias) {
    proto.bias = calloc(n_bias, sizeof(float));
    proto.n_bias = n_bias;
  }
  m->layers[l] = proto;
  if ((n_weights && !proto.weights) || (n_bias && !proto.bias)) {
    layer_free(&m->layers[l]);
    return err_set(e, ERR_NOMEM, "out of memory for %zu weights", n_weights), MODEL_ADD_FAILED;
  }
  m->n_layers++;
  m->finalized = false;
  if (infer_layer(m, l, e) != ERR_OK) {
    layer_free(&m->layers[l]);
    m->n_layers--;
    return MODEL_ADD_FAILED;
  }
  return l;
}

static model_layer proto1(model_op op, int input) {
  model_layer L;
  memset(&L, 0, sizeof L);
  L.op = op;
  L.inputs[0] = input;
  L.inputs[1] = MODEL_INPUT;
  L.n_inputs = 1;
  L.groups = 1;
  L.kernel_h = L.kernel_w = L.stride_h = L.stride_w = 1;
  return L;
}

/* The input's channel count, or -1 with *e set when `input` is not valid. */
static int input_channels(model *m, int input, err *e) {
  if (!m) return err_set(e, ERR_INVALID, "no model"), MODEL_ADD_FAILED;
  if (input < MODEL_INPUT || input >= m->n_layers)
    return err_set(e, ERR_RANGE, "input %d is not an existing layer", input), MODEL_ADD_FAILED;
  return model_tensor_shape(m, input).c;
}

int model_add_conv_ex(model *m, int input, int out_channels, int kernel_h,
                      int kernel_w, int stride_h, int stride_w, int pad_top,
                      int pad_left, int pad_bottom, int pad_right, int groups,
                      bool bias, err *e) {
  int in_c = input_channels(m, input, e);
  if (in_c < 0) return MODEL_ADD_FAILED;
  if (out_channels <= 0 || kernel_h <= 0 || kernel_w <= 0 || stride_h <= 0 ||
      stride_w <= 0 || pad_top < 0 || pad_left < 0 || pad_bottom < 0 ||
      pad_right < 0 || groups <= 0)
    return err_set(e, ERR_INVALID,
                   "conv: channels, kernel, stride and groups must be positive "
                   "and padding non-negative"),
           MODEL_ADD_FAILED;
  if (in_c % groups || out_channels % groups)
    return err_set(e, ERR_SHAPE,
                   "conv: %d input / %d output channels do not divide into %d "
                   "groups",
                   in_c, out_channels, groups),
           MODEL_ADD_FAILED;
  model_layer L = proto1(MODEL_OP_CONV, input);
  L.out_channels = out_channels;
  L.kernel_h = kernel_h;
  L.kernel_w = kernel_w;
  L.stride_h = stride_h;
  L.stride_w = stride_w;
  L.pad_top = pad_top;
  L.pad_left = pad_left;
  L.pad_bottom = pad_bottom;
  L.pad_right = pad_right;
  L.groups = groups;
  size_t nw = (size_t)out_channels * kernel_h * kernel_w * (in_c / groups);
  return append(m, L, nw, bias ? (size_t)out_channels : 0, e);
}

int model_add_conv(model *m, int input, int out_channels, int kernel,
                   int stride, int pad, int groups, bool bias, err *e) {
  return model_add_conv_ex(m, input, out_channels, kernel, kernel, stride,
                           stride, pad, pad, pad, pad, groups, bias, e);
}

int model_add_bn(model *m, int input, err *e) {
  int c = input_channels(m, input, e);
  if (c < 0) return MODEL_ADD_FAILED;
  int l = append(m, proto1(MODEL_OP_BN, input), (size_t)c, (size_t)c, e);
  if (l >= 0)
    for (int i = 0; i < c; i++) m->layers[l].weights[i] = 1.0f;
  return l;
}

int model_add_relu(model *m, int input, err *e) {
  if (input_channels(m, input, e) < 0) return MODEL_ADD_FAILED;
  return append(m, proto1(MODEL_OP_RELU, input), 0, 0, e);
}

static int add_pool(model *m, model_op op, int input, int kernel, int stride,
                    int pad, err *e) {
  if (input_channels(m, input, e) < 0) return MODEL_ADD_FAILED;
  if (kernel <= 0 || stride <= 0 || pad < 0 || pad >= kernel)
    return err_set(e, ERR_INVALID,
                   "%s: kernel %d, stride %d, padding %d (padding must be "
                   "smaller than the kernel)",
                   model_op_name(op), kernel, stride, pad),
           MODEL_ADD_FAILED;
  model_layer L = proto1(op, input);
  L.kernel_h = L.kernel_w = kernel;
  L.stride_h = L.stride_w = stride;
  L.pad_top = L.pad_bottom = L.pad_left = L.pad_right = pad;
  return append(m, L, 0, 0, e);
}

int model_add_maxpool(model *m, int input, int kernel, int stride, int pad,
                      err *e) {
  return add_pool(m, MODEL_OP_MAXPOOL, input, kernel, stride, pad, e);
}

int model_add_avgpool(model *m, int input, int kernel, int stride, int pad,
                      err *e) {
  return add_pool(m, MODEL_OP_AVGPOOL, input, kernel, stride, pad, e);
}

int model_add_gap(model *m, int input, err *e) {
  if (input_channels(m, input, e) < 0) return MODEL_ADD_FAILED;
  return append(m, proto1(MODEL_OP_GAP, input), 0, 0, e);
}

int model_add_fc(model *m, int input, int out_features, bool bias, err *e) {
  int c = input_channels(m, input, e);
  if (c < 0) return MODEL_ADD_FAILED;
  if (out_features <= 0)
    return err_set(e, ERR_INVALID, "fc: %d output features", out_features), MODEL_ADD_FAILED;
  model_layer L = proto1(MODEL_OP_FC, input);
  L.out_channels = out_features;
  return append(m, L, (size_t)out_features * c, bias ? (size_t)out_features : 0,
                e);
}

int model_add_fe(model *m, int input, err *e) {
  int c = input_channels(m, input, e);
  if (c < 0) return MODEL_ADD_FAILED;
  return append(m, proto1(MODEL_OP_FE, input), (size_t)c * c, 0, e);
}

int model_add_add(model *m, int a, int b, err *e) {
  if (input_channels(m, a, e) < 0 || input_channels(m, b, e) < 0) return MODEL_ADD_FAILED;
  model_layer L = proto1(MODEL_OP_ADD, a);
  L.inputs[1] = b;
  L.n_inputs = 2;
  return append(m, L, 0, 0, e);
}

int model_add_flatten(model *m, int input, err *e) {
  if (input_channels(m, input, e) < 0) return MODEL_ADD_FAILED;
  return append(m, proto1(MODEL_OP_FLATTEN, input), 0, 0, e);
}

err_code model_finalize(model *m, err *e) {
  if (!m) return err_set(e, ERR_INVALID, "no model");
  /* Until every layer checks out again, the model is not finalized: a failed
   * call must not leave an earlier success standing (executors trust it). */
  m->finalized = false;
  if (!shape_valid(m->input))
    return err_set(e, ERR_SHAPE, "model input %dx%dx%d is empty", m->input.h,
                   m->input.w, m->input.c);
  if (m->n_layers == 0) return err_set(e, ERR_INVALID, "model has no layers");
  for (int l = 0; l < m->n_layers; l++) {
    const model_layer *L = &m->layers[l];
    if (L->n_inputs < 1 || L->n_inputs > MODEL_MAX_INPUTS ||
        (L->op == MODEL_OP_ADD) != (L->n_inputs == 2))
      return err_set(e, ERR_INVALID, "layer %d (%s): %d inputs", l, L->name,
                     L->n_inputs);
    for (int i = 0; i < L->n_inputs; i++)
      if (L->inputs[i] < MODEL_INPUT || L->inputs[i] >= l)
        return err_set(e, ERR_RANGE,
                       "layer %d (%s): input %d is not an earlier layer", l,
                       L->name, L->inputs[i]);
    err_code rc = infer_layer(m, l, e);
    if (rc != ERR_OK) return rc;
  }
  m->finalized = true;
  return ERR_OK;
}

model *model_clone(const model *m, err *e) {
  model *c = model_create(m->name, m->input);
  if (!c) return err_set(e, ERR_NOMEM, "out of memory cloning a model"), NULL;
  c->layers = calloc((size_t)(m->n_layers ? m->n_layers : 1), sizeof *c->layers);
  if (!c->layers) goto oom;
  c->cap_layers = m->n_layers ? m->n_layers : 1;
  for (int l = 0; l < m->n_layers; l++) {
    model_layer L = m->layers[l];
    L.weights = L.bias = NULL;
    if (L.n_weights) {
      L.weights = malloc(L.n_weights * sizeof(float));
      if (!L.weights) goto oom;
      memcpy(L.weights, m->layers[l].weights, L.n_weights * sizeof(float));
    }
    c->layers[l] = L;
    c->n_layers = l + 1;
    if (L.n_bias) {
      c->layers[l].bias = malloc(L.n_bias * sizeof(float));
      if (!c->layers[l].bias) goto oom;
      memcpy(c->layers[l].bias, m->layers[l].bias, L.n_bias * sizeof(float));
    }
  }
  c->finalized = m->finalized;
  return c;
oom:
  model_destroy(c);
  err_set(e, ERR_NOMEM, "out of memory cloning a model");
  return NULL;
}

double model_range_flops(const model *m, int first, int end) {
  double f = 0;
  for (int l = first < 0 ? 0 : first; l < end && l < m->n_layers; l++)
    f += m->layers[l].flops;
  return f;
}

double model_flops(const model *m) { return model_range_flops(m, 0, m->n_layers); }

size_t model_param_count(const model *m) {
  size_t n = 0;
  for (int l = 0; l < m->n_layers; l++)
    n += m->layers[l].n_weights + m->layers[l].n_bias;
  return n;
}

int model_find_layer(const model *m, const char *name) {
  for (int l = 0; l < m->n_layers; l++)
    if (strcmp(m->layers[l].name, name) == 0) return l;
  return -1;
}

/* ---- cuts and receptive fields ------------------------------------------ */

bool model_is_cut(const model *m, int cut) {
  if (cut < 0 || cut > m->n_layers) return false;
  if (cut == 0 || cut == m->n_layers) return true;
  for (int j = cut; j < m->n_layers; j++)
    for (int i = 0; i < m->layers[j].n_inputs; i++)
      if (m->layers[j].inputs[i] < cut - 1) return false;
  return true;
}

err_code model_check_range(const model *m, int first, int end, err *e) {
  if (!m || !m->finalized)
    return err_set(e, ERR_INVALID, "model is not finalized");
  if (first < 0 || end > m->n_layers || first >= end)
    return err_set(e, ERR_RANGE,
                   "layer range [%d, %d) does not exist in %s (%d layers)",
                   first, end, m->name, m->n_layers);
  if (!model_is_cut(m, first) || !model_is_cut(m, end))
    return err_set(e, ERR_RANGE,
                   "layer range [%d, %d) of %s cuts through a branch (more than "
                   "one tensor is live at a boundary)",
                   first, end, m->name);
  return ERR_OK;
}

model_rows model_rows_hull(model_rows a, model_rows b) {
  if (a.lo >= a.hi) return b;
  if (b.lo >= b.hi) return a;
  model_rows r = {a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi};
  return r;
}

model_rows model_rows_clamp(model_rows r, int h) {
  if (r.lo < 0) r.lo = 0;
  if (r.hi > h) r.hi = h;
  if (r.lo >= r.hi) r.lo = r.hi = 0;
  return r;
}

model_rows model_layer_input_rows(const model *m, int layer, model_rows out) {
  const model_layer *L = &m->layers[layer];
  model_rows none = {0, 0};
  if (out.lo >= out.hi) return none;
  switch (L->op) {
    case MODEL_OP_CONV:
    case MODEL_OP_MAXPOOL:
    case MODEL_OP_AVGPOOL: {
      model_rows r = {out.lo * L->stride_h - L->pad_top,
                      (out.hi - 1) * L->stride_h - L->pad_top + L->kernel_h};
      return r;
    }
    case MODEL_OP_GAP:
    case MODEL_OP_FC:
    case MODEL_OP_FLATTEN: {
      model_rows all = {0, model_tensor_shape(m, L->inputs[0]).h};
      return all;
    }
    default: /* row-wise: BN, RELU, FE (its mean is handled by ownership), ADD */
      return out;
  }
}

/* Work arrays are indexed by "slot" = layer + 1, so slot 0 is the graph
 * input and slot `first` is always the range's input tensor. */
static int slot_height(const model *m, int slot) {
  return model_tensor_shape(m, slot - 1).h;
}

/* Receptive field of `out` (rows of layer end-1) over the range, hull over
 * every path. When `owned` is not NULL, a tensor read by an FE layer also
 * gets the rows owned[slot] it must own. Results are clamped. */
static void backward(const model *m, int first, int end, model_rows out,
                     const model_rows *owned, model_rows *need) {
  for (int s = first; s <= end; s++) need[s].lo = need[s].hi = 0;
  need[end] = out;
  for (int s = end; s >= first; s--) {
    if (owned) need[s] = model_rows_hull(need[s], owned[s]);
    need[s] = model_rows_clamp(need[s], slot_height(m, s));
    if (s == first) break;
    int l = s - 1;
    model_rows r = model_layer_input_rows(m, l, need[s]);
    for (int i = 0; i < m->layers[l].n_inputs; i++) {
      int src = m->layers[l].inputs[i] + 1;
      if (src < first) src = first; /* cannot happen between cuts */
      need[src] = model_rows_hull(need[src], r);
    }
  }
}

/* Fills owned[slot] for every tensor an FE layer in the range reads. The
 * boundary of strip [a, b) at a tensor is the lowest row that output rows
 * [a, end) need there: monotone in a, so strips partition every tensor. */
static void fe_ownership(const model *m, int first, int end, model_rows out,
                         model_rows *owned, model_rows *scratch) {
  int h_out = slot_height(m, end);
  for (int s = first; s <= end; s++) owned[s].lo = owned[s].hi = 0;
  bool any = false;
  for (int l = first; l < end; l++) any |= m->layers[l].op == MODEL_OP_FE;
  if (!any) return;
  for (int l = first; l < end; l++) {
    if (m->layers[l].op != MODEL_OP_FE) continue;
    int s = m->layers[l].inputs[0] + 1;
    if (s < first) s = first;
    int h = slot_height(m, s);
    int bounds[2];
    int edges[2] = {out.lo, out.hi};
    for (int k = 0; k < 2; k++) {
      if (edges[k] <= 0) {
        bounds[k] = 0;
      } else if (edges[k] >= h_out) {
        bounds[k] = h;
      } else {
        model_rows tail = {edges[k], h_out};
        backward(m, first, end, tail, NULL, scratch);
        bounds[k] = scratch[s].lo < scratch[s].hi ? scratch[s].lo : h;
      }
    }
    owned[s].lo = bounds[0];
    owned[s].hi = bounds[1] > bounds[0] ? bounds[1] : bounds[0];
  }
}

static err_code check_strip(const model *m, int first, int end, model_rows out,
                            err *e) {
  err_code rc = model_check_range(m, first, end, e);
  if (rc != ERR_OK) return rc;
  int h = m->layers[end - 1].out.h;
  if (out.lo < 0 || out.hi > h || out.lo >= out.hi)
    return err_set(e, ERR_RANGE,
                   "output rows [%d, %d) are not a non-empty part of layer %d's "
                   "%d rows",
                   out.lo, out.hi, end - 1, h);
  return ERR_OK;
}

err_code model_strip_rows(const model *m, int first, int end, model_rows out,
                          model_rows *rows, model_rows *in, err *e) {
  err_code rc = check_strip(m, first, end, out, e);
  if (rc != ERR_OK) return rc;
  size_t n = (size_t)m->n_layers + 1;
  model_rows *need = calloc(3 * n, sizeof *need);
  if (!need) return err_set(e, ERR_NOMEM, "out of memory planning a strip");
  model_rows *owned = need + n, *scratch = owned + n;
  fe_ownership(m, first, end, out, owned, scratch);
  backward(m, first, end, out, owned, need);
  for (int l = first; l < end; l++) rows[l] = need[l + 1];
  *in = need[first];
  free(need);
  return ERR_OK;
}

err_code model_fe_owned_rows(const model *m, int first, int end,
                             model_rows out, int fe, model_rows *owned_out,
                             err *e) {
  err_code rc = check_strip(m, first, end, out, e);
  if (rc != ERR_OK) return rc;
  if (fe < first || fe >= end || m->layers[fe].op != MODEL_OP_FE)
    return err_set(e, ERR_RANGE,
                   "layer %d is not a feature-enhancement layer of range [%d, "
                   "%d)",
                   fe, first, end);
  size_t n = (size_t)m->n_layers + 1;
  model_rows *owned = calloc(2 * n, sizeof *owned);
  if (!owned) return err_set(e, ERR_NOMEM, "out of memory planning a strip");
  fe_ownership(m, first, end, out, owned, owned + n);
  int s = m->layers[fe].inputs[0] + 1;
  *owned_out = owned[s < first ? first : s];
  free(owned);
  return ERR_OK;
}

err_code model_fe_scale(const model *m, int fe, const double *sums,
                        double count, float *scale, err *e) {
  if (fe < 0 || fe >= m->n_layers || m->layers[fe].op != MODEL_OP_FE)
    return err_set(e, ERR_RANGE, "layer %d is not a feature-enhancement layer",
                   fe);
  if (!(count > 0))
    return err_set(e, ERR_INVALID, "feature enhancement over %g pixels", count);
  const model_layer *L = &m->layers[fe];
  int c = model_tensor_shape(m, L->inputs[0]).c;
  for (int o = 0; o < c; o++) {
    double z = 0;
    for (int i = 0; i < c; i++) z += (double)L->weights[(size_t)o * c + i] * (sums[i] / count);
    scale[o] = (float)(1.0 / (1.0 + exp(-z)));
  }
  return ERR_OK;
}

/* onnx_import.c — the importer's frame (contract in onnx_import.h): decodes
 * the file with the protoc-c code generated from Debian's onnx.proto, checks
 * the graph's input, output and opset, walks the nodes handing each to its
 * operator (onnx_import_ops.c), and leaves a finalized graph whose last
 * layer is the output. Also the helpers the handlers share: the value table
 * and the materialization of pending patterns (see onnx_internal.h for why
 * some values wait); attributes and tensors are onnx_import_data.c's.
 *
 * Relies on protobuf-c refusing anything that is not well-formed protobuf;
 * everything after that is untrusted: every count, size and index read from
 * the file is checked before it is used, and sizes are bounded by the
 * ONNX_MAX_* limits before anything is allocated from them.
 */
#include "runtime/onnx_import.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/onnx_internal.h"

enum { ONNX_LABEL_BYTES = 160 };

/* ---- messages --------------------------------------------------------- */

static void node_label(const onnx_ctx *c, char *buf, size_t len) {
  const Onnx__NodeProto *n = c->node;
  const char *op = n->op_type ? n->op_type : "?";
  if (n->name && n->name[0])
    snprintf(buf, len, "node '%.80s' (%.40s)", n->name, op);
  else if (n->n_output && n->output[0] && n->output[0][0])
    snprintf(buf, len, "node #%d (%.40s, output '%.60s')", c->node_index, op,
             n->output[0]);
  else
    snprintf(buf, len, "node #%d (%.40s)", c->node_index, op);
}

err_code onnx_fail(onnx_ctx *c, err *e, err_code code, const char *fmt, ...) {
  char msg[ERR_MSG_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!c->node) return err_set(e, code, "%s", msg);
  char label[ONNX_LABEL_BYTES];
  node_label(c, label, sizeof label);
  return err_set(e, code, "%s: %s", label, msg);
}

const char *onnx_dims_str(const onnx_dims *d, char *buf, size_t len) {
  size_t at = 0;
  at += (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < d->rank && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? "," : "",
                           (long long)d->d[i]);
  if (at < len) snprintf(buf + at, len - at, "]");
  return buf;
}

/* Dims are kept within ONNX_MAX_TENSOR_ELEMS wherever they are made, so the
 * product cannot overflow; a negative dim never gets this far. */
int64_t onnx_dims_elems(const onnx_dims *d) {
  int64_t n = 1;
  for (int i = 0; i < d->rank; i++) n *= d->d[i];
  return n;
}

/* ---- the name table --------------------------------------------------- */

static uint64_t name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static bool names_init(onnx_names *t, size_t entries) {
  size_t cap = 16;
  while (cap < 2 * entries + 1) cap *= 2;
  t->keys = calloc(cap, sizeof *t->keys);
  t->vals = calloc(cap, sizeof *t->vals);
  t->cap = cap;
  return t->keys && t->vals;
}

static void names_free(onnx_names *t) {
  free(t->keys);
  free(t->vals);
}

/* The slot of `key`: where it is, or the empty slot where it would go. The
 * table is at most half full, so the probe ends. */
static size_t names_slot(const onnx_names *t, const char *key) {
  size_t i = (size_t)name_hash(key) & (t->cap - 1);
  while (t->keys[i] && strcmp(t->keys[i], key) != 0) i = (i + 1) & (t->cap - 1);
  return i;
}

static int *names_get(const onnx_names *t, const char *key) {
  size_t i = names_slot(t, key);
  return t->keys[i] ? &t->vals[i] : NULL;
}

static int *names_put(onnx_names *t, const char *key) {
  size_t i = names_slot(t, key);
  t->keys[i] = key;
  return &t->vals[i];
}

/* ---- values ------------------------------------------------------------- */

static bool present(const char *name) { return name && name[0]; }

static onnx_value *lookup(onnx_ctx *c, const char *name) {
  int *i = names_get(&c->defs, name);
  return i ? &c->vals[*i] : NULL;
}

static int uses_of(onnx_ctx *c, const char *name) {
  int *u = names_get(&c->uses, name);
  return u ? *u : 0;
}

/* Adds a value under `name`; the table was sized for every name. */
static err_code define_named(onnx_ctx *c, const char *name, onnx_value v,
                             err *e) {
  if (!present(name))
    return onnx_fail(c, e, ERR_INVALID, "a value without a name");
  if (lookup(c, name))
    return onnx_fail(c, e, ERR_INVALID, "value '%.80s' is defined twice",
                     name);
  if (c->n_vals == c->cap_vals)
    return onnx_fail(c, e, ERR_INTERNAL, "value table full");
  v.name = name;
  v.uses = uses_of(c, name);
  c->vals[c->n_vals] = v;
  *names_put(&c->defs, name) = c->n_vals++;
  return ERR_OK;
}

err_code onnx_define(onnx_ctx *c, onnx_value v, err *e) {
  const Onnx__NodeProto *n = c->node;
  if (n->n_output < 1 || !present(n->output[0]))
    return onnx_fail(c, e, ERR_INVALID, "the node has no output");
  return define_named(c, n->output[0], v, e);
}

onnx_value onnx_layer_value(int l, const onnx_dims *d) {
  onnx_value v;
  memset(&v, 0, sizeof v);
  v.kind = ONNX_TENSOR;
  v.layer = l;
  v.dims = *d;
  v.owner = true;
  return v;
}

bool onnx_same_dims(const onnx_dims *a, const onnx_dims *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return false;
  return true;
}

err_code onnx_define_layer(onnx_ctx *c, int l, const onnx_dims *d, err *e) {
  if (l < 0) return e->code;
  return onnx_define(c, onnx_layer_value(l, d), e);
}

onnx_value onnx_alias(const onnx_value *src, const onnx_dims *d) {
  onnx_value v = *src;
  v.dims = *d;
  v.owner = false;
  v.owns_data = false;
  v.owns_w = false;
  return v;
}

static err_code decode_const(onnx_ctx *c, onnx_value *v, err *e);

err_code onnx_in(onnx_ctx *c, int i, bool required, onnx_value **v, err *e) {
  const Onnx__NodeProto *n = c->node;
  *v = NULL;
  if (i >= (int)n->n_input || !present(n->input[i])) {
    if (!required) return ERR_OK;
    return onnx_fail(c, e, ERR_INVALID, "input %d is missing", i);
  }
  *v = lookup(c, n->input[i]);
  if (!*v)
    return onnx_fail(c, e, ERR_INVALID,
                     "input %d ('%.80s') is neither an initializer nor the "
                     "output of an earlier node",
                     i, n->input[i]);
  /* A constant's dims are trusted only once its data decoded against them. */
  return (*v)->kind == ONNX_CONST ? decode_const(c, *v, e) : ERR_OK;
}

err_code onnx_tensor_in(onnx_ctx *c, int i, onnx_value **v, err *e) {
  err_code rc = onnx_in(c, i, true, v, e);
  if (rc != ERR_OK) return rc;
  return onnx_materialize(c, *v, e);
}

static err_code decode_const(onnx_ctx *c, onnx_value *v, err *e) {
  if (v->f || v->i || !v->proto) return ERR_OK;
  char what[120];
  snprintf(what, sizeof what, "initializer '%.80s'", v->name);
  err_code rc = onnx_decode_tensor(v->proto, what, v, e);
  if (rc != ERR_OK && c->node) return onnx_fail(c, e, rc, "%s", e->msg);
  return rc;
}

static const char *elem_name(int elem) {
  return elem == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT   ? "float32"
         : elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? "int64"
                                                        : "other";
}

err_code onnx_const_in(onnx_ctx *c, int i, bool required, int elem,
                       onnx_value **v, err *e) {
  err_code rc = onnx_in(c, i, required, v, e);
  if (rc != ERR_OK || !*v) return rc;
  if ((*v)->kind != ONNX_CONST)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "input %d ('%.80s') must be a constant (an initializer), "
                     "not a tensor computed from the graph input",
                     i, (*v)->name);
  if ((*v)->elem != elem)
    return onnx_fail(c, e, ERR_INVALID, "input %d ('%.80s') is %s, %s expected",
                     i, (*v)->name, elem_name((*v)->elem), elem_name(elem));
  return ERR_OK;
}

model_shape onnx_value_shape(onnx_ctx *c, const onnx_value *v) {
  return model_tensor_shape(c->m, v->layer);
}

bool onnx_spatial_view(onnx_ctx *c, const onnx_value *v, model_shape *s) {
  if (v->kind != ONNX_TENSOR) return false;
  model_shape t = onnx_value_shape(c, v);
  if (s) *s = t;
  return v->dims.rank == 4 && v->dims.d[0] == 1 && v->dims.d[1] == t.c &&
         v->dims.d[2] == t.h && v->dims.d[3] == t.w;
}

int onnx_adopt(onnx_ctx *c, int l, err *e) {
  if (l < 0) {
    onnx_fail(c, e, e->code != ERR_OK ? e->code : ERR_INTERNAL, "%s", e->msg);
    return MODEL_ADD_FAILED;
  }
  model_layer *L = &c->m->layers[l];
  const Onnx__NodeProto *n = c->node;
  /* Named after the node (the graph output's pending mean has none). */
  const char *name = !n                    ? L->name
                     : present(n->name)    ? n->name
                     : (n->n_output && present(n->output[0])) ? n->output[0]
                                                              : L->name;
  if (name != L->name) snprintf(L->name, sizeof L->name, "%s", name);
  size_t weights = L->n_weights + L->n_bias;
  if (model_shape_elems(L->out) > (size_t)ONNX_MAX_TENSOR_ELEMS ||
      c->total_weights + weights > (size_t)ONNX_MAX_TOTAL_WEIGHTS) {
    onnx_fail(c, e, ERR_UNSUPPORTED,
              "output %dx%dx%d or weights (%zu in all) past EdgeDI's limits "
              "(%d values a tensor, %d weights)",
              L->out.h, L->out.w, L->out.c, c->total_weights + weights,
              ONNX_MAX_TENSOR_ELEMS, ONNX_MAX_TOTAL_WEIGHTS);
    return MODEL_ADD_FAILED;
  }
  c->total_weights += weights;
  return l;
}

err_code onnx_materialize(onnx_ctx *c, onnx_value *v, err *e) {
  switch (v->kind) {
    case ONNX_TENSOR:
      return ERR_OK;
    case ONNX_CONST:
      return onnx_fail(c, e, ERR_UNSUPPORTED,
                       "'%.80s' is a constant where EdgeDI needs a tensor "
                       "computed from the graph input",
                       v->name);
    case ONNX_PADDED:
      return onnx_fail(c, e, ERR_UNSUPPORTED,
                       "'%.80s' is a zero Pad, which EdgeDI merges only into "
                       "the Conv it feeds",
                       v->name);
    case ONNX_GATE:
      return onnx_fail(c, e, ERR_UNSUPPORTED,
                       "'%.80s' is a Sigmoid, which EdgeDI runs only as the "
                       "gate of a feature enhancement, x * sigmoid(W * "
                       "mean(x)), read by the Mul with x",
                       v->name);
    case ONNX_MEAN:
    case ONNX_LOGIT:
      break;
  }
  int l = onnx_adopt(c, model_add_gap(c->m, v->layer, e), e);
  if (l < 0) return e->code;
  if (v->kind == ONNX_LOGIT) {
    int in_c = model_tensor_shape(c->m, l).c;
    l = onnx_adopt(c, model_add_fc(c->m, l, in_c, false, e), e);
    if (l < 0) return e->code;
    /* W stays with its owner until the end: aliases (a reshaped W * mean,
     * its gate) may still read it. */
    memcpy(c->m->layers[l].weights, v->w, (size_t)in_c * in_c * sizeof(float));
  }
  v->kind = ONNX_TENSOR;
  v->layer = l;
  v->owner = false;
  return ERR_OK;
}

/* ---- the graph ---------------------------------------------------------------- */

static const Onnx__TensorShapeProto *tensor_shape(const Onnx__ValueInfoProto *v,
                                                  int *elem) {
  *elem = 0;
  if (!v->type || v->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
      !v->type->tensor_type)
    return NULL;
  const Onnx__TypeProto__Tensor *t = v->type->tensor_type;
  *elem = t->has_elem_type ? t->elem_type : 0;
  return t->shape;
}

/* The one graph input that is not an initializer: float32 [N,C,H,W] with N
 * 1 or symbolic. */
static err_code read_input(onnx_ctx *c, onnx_io *io, err *e) {
  const Onnx__ValueInfoProto *in = NULL;
  for (size_t k = 0; k < c->g->n_input; k++) {
    const Onnx__ValueInfoProto *v = c->g->input[k];
    if (!v || !present(v->name) || lookup(c, v->name)) continue;
    if (in)
      return err_set(e, ERR_UNSUPPORTED,
                     "the graph has inputs '%.80s' and '%.80s'; EdgeDI runs "
                     "models with one input",
                     in->name, v->name);
    in = v;
  }
  if (!in) return err_set(e, ERR_INVALID, "the graph declares no input");
  int elem;
  const Onnx__TensorShapeProto *s = tensor_shape(in, &elem);
  if (elem != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
    return err_set(e, ERR_UNSUPPORTED,
                   "graph input '%.80s' is not a float32 tensor", in->name);
  if (!s || s->n_dim != 4)
    return err_set(e, ERR_UNSUPPORTED,
                   "graph input '%.80s' must be [N,C,H,W] with known C, H, W; "
                   "it has %s%zu dimensions",
                   in->name, s ? "" : "no shape, ", s ? s->n_dim : 0);
  static const int limits[4] = {1, ONNX_MAX_CHANNELS, ONNX_MAX_INPUT_SIDE_PX,
                                ONNX_MAX_INPUT_SIDE_PX};
  int dims[4];
  for (int k = 0; k < 4; k++) {
    const Onnx__TensorShapeProto__Dimension *d = s->dim[k];
    bool known = d && d->value_case ==
                          ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    if (k == 0 && !known) {
      dims[0] = 1; /* a symbolic batch: EdgeDI runs batch 1 */
      continue;
    }
    if (!known || d->dim_value < 1 || d->dim_value > limits[k])
      return err_set(e, k == 0 ? ERR_UNSUPPORTED : ERR_SHAPE,
                     "graph input '%.80s': dimension %d is %s%lld; it must be "
                     "a number from 1 to %d",
                     in->name, k, known ? "" : "unknown, ",
                     known ? (long long)d->dim_value : 0LL, limits[k]);
    dims[k] = (int)d->dim_value;
  }
  if ((int64_t)dims[1] * dims[2] * dims[3] > ONNX_MAX_TENSOR_ELEMS)
    return err_set(e, ERR_UNSUPPORTED, "graph input '%.80s' is too large",
                   in->name);
  c->m->input = (model_shape){.h = dims[2], .w = dims[3], .c = dims[1]};
  onnx_dims d = {4, {1, dims[1], dims[2], dims[3]}};
  onnx_value v = onnx_layer_value(MODEL_INPUT, &d);
  v.owner = false;
  if (io) {
    snprintf(io->input_name, sizeof io->input_name, "%s", in->name);
    for (int k = 0; k < 4; k++) io->input_dims[k] = k ? dims[k] : 1;
  }
  return define_named(c, in->name, v, e);
}

/* Drops layers the output does not depend on, so the output is last. */
static err_code prune(onnx_ctx *c, int out, err *e) {
  model *m = c->m;
  int *index = calloc((size_t)m->n_layers, sizeof *index);
  if (!index) return err_set(e, ERR_NOMEM, "out of memory");
  index[out] = 1;
  for (int l = out; l >= 0; l--)
    if (index[l])
      for (int i = 0; i < m->layers[l].n_inputs; i++)
        if (m->layers[l].inputs[i] >= 0) index[m->layers[l].inputs[i]] = 1;
  int kept = 0;
  for (int l = 0; l < m->n_layers; l++) {
    if (!index[l]) {
      free(m->layers[l].weights);
      free(m->layers[l].bias);
      index[l] = -1;
      continue;
    }
    model_layer L = m->layers[l];
    for (int i = 0; i < L.n_inputs; i++)
      if (L.inputs[i] >= 0) L.inputs[i] = index[L.inputs[i]];
    index[l] = kept;
    m->layers[kept++] = L;
  }
  m->n_layers = kept;
  free(index);
  return ERR_OK;
}

/* Declared dims of the output, when the file gives them, must be what the
 * graph computes (a symbolic dim matches anything). */
static err_code check_output(const Onnx__ValueInfoProto *o,
                             const onnx_value *v, err *e) {
  int elem;
  const Onnx__TensorShapeProto *s = tensor_shape(o, &elem);
  if (elem && elem != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
    return err_set(e, ERR_UNSUPPORTED,
                   "graph output '%.80s' is not declared float32", o->name);
  if (!s) return ERR_OK;
  bool same = (int)s->n_dim == v->dims.rank;
  for (int k = 0; same && k < v->dims.rank; k++) {
    const Onnx__TensorShapeProto__Dimension *d = s->dim[k];
    if (d && d->value_case ==
                 ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
      same = d->dim_value == v->dims.d[k];
  }
  if (!same)
    return err_set(e, ERR_SHAPE,
                   "graph output '%.80s' is declared with %zu dimensions "
                   "that differ from the computed %s",
                   o->name, s->n_dim, onnx_dims_str(&v->dims, (char[96]){0}, 96));
  return ERR_OK;
}

static err_code read_output(onnx_ctx *c, onnx_io *io, err *e) {
  c->node = NULL;
  if (c->g->n_output != 1 || !c->g->output[0] || !present(c->g->output[0]->name))
    return err_set(e, c->g->n_output > 1 ? ERR_UNSUPPORTED : ERR_INVALID,
                   "the graph has %zu outputs; EdgeDI runs models with one",
                   c->g->n_output);
  const Onnx__ValueInfoProto *o = c->g->output[0];
  onnx_value *v = lookup(c, o->name);
  if (!v)
    return err_set(e, ERR_INVALID, "graph output '%.80s' is computed by no node",
                   o->name);
  err_code rc = onnx_materialize(c, v, e);
  if (rc != ERR_OK) return err_wrap(e, "graph output '%.80s'", o->name);
  if (v->layer == MODEL_INPUT)
    return err_set(e, ERR_UNSUPPORTED,
                   "graph output '%.80s' is the input: the graph computes "
                   "nothing", o->name);
  rc = check_output(o, v, e);
  if (rc != ERR_OK) return rc;
  model_shape s = model_tensor_shape(c->m, v->layer);
  if (io) {
    snprintf(io->output_name, sizeof io->output_name, "%s", o->name);
    io->output_rank = v->dims.rank;
    memcpy(io->output_dims, v->dims.d, sizeof io->output_dims);
    io->output_nchw = s.h * s.w > 1;
  }
  return prune(c, v->layer, e);
}

static err_code read_opset(onnx_ctx *c, const Onnx__ModelProto *mp, err *e) {
  c->opset = -1;
  for (size_t k = 0; k < mp->n_opset_import; k++) {
    const Onnx__OperatorSetIdProto *o = mp->opset_import[k];
    if (o && (!present(o->domain) || strcmp(o->domain, "ai.onnx") == 0))
      c->opset = o->has_version ? o->version : -1;
  }
  if (c->opset < ONNX_MIN_OPSET || c->opset > ONNX_MAX_OPSET)
    return err_set(e, ERR_UNSUPPORTED,
                   "ONNX operator set %lld; EdgeDI reads %d to %d (export "
                   "with opset_version=13, for example)",
                   (long long)c->opset, ONNX_MIN_OPSET, ONNX_MAX_OPSET);
  return ERR_OK;
}

/* Counts the readers of every name and sizes the value table for every
 * name that can be defined. */
static err_code prepare(onnx_ctx *c, err *e) {
  const Onnx__GraphProto *g = c->g;
  if (g->n_node > ONNX_MAX_NODES)
    return err_set(e, ERR_UNSUPPORTED, "the graph has %zu nodes, at most %d",
                   g->n_node, ONNX_MAX_NODES);
  size_t names = g->n_initializer + g->n_input + 1, reads = g->n_output;
  for (size_t k = 0; k < g->n_node; k++) {
    if (!g->node[k]) return err_set(e, ERR_CORRUPT, "node #%zu is empty", k);
    names += g->node[k]->n_output;
    reads += g->node[k]->n_input;
  }
  c->vals = calloc(names, sizeof *c->vals);
  c->cap_vals = (int)names;
  if (!c->vals || !names_init(&c->defs, names) || !names_init(&c->uses, reads))
    return err_set(e, ERR_NOMEM, "out of memory for %zu names", names);
  for (size_t k = 0; k < g->n_node; k++)
    for (size_t i = 0; i < g->node[k]->n_input; i++)
      if (present(g->node[k]->input[i])) (*names_put(&c->uses, g->node[k]->input[i]))++;
  for (size_t k = 0; k < g->n_output; k++)
    if (g->output[k] && present(g->output[k]->name))
      (*names_put(&c->uses, g->output[k]->name))++;
  for (size_t k = 0; k < g->n_initializer; k++) {
    const Onnx__TensorProto *t = g->initializer[k];
    if (!t || !present(t->name))
      return err_set(e, ERR_INVALID, "initializer #%zu has no name", k);
    onnx_value v;
    memset(&v, 0, sizeof v);
    v.kind = ONNX_CONST;
    v.proto = t;
    v.elem = t->has_data_type ? t->data_type : 0;
    v.dims.rank = t->n_dims <= ONNX_MAX_RANK ? (int)t->n_dims : 0;
    for (int d = 0; d < v.dims.rank; d++) v.dims.d[d] = t->dims[d];
    /* The dims are only trusted once decoded; decode_const checks them. */
    err_code rc = define_named(c, t->name, v, e);
    if (rc != ERR_OK) return err_wrap(e, "initializer #%zu", k);
  }
  return ERR_OK;
}

static err_code run_nodes(onnx_ctx *c, err *e) {
  for (size_t k = 0; k < c->g->n_node; k++) {
    c->node = c->g->node[k];
    c->node_index = (int)k;
    const Onnx__NodeProto *n = c->node;
    if (present(n->domain) && strcmp(n->domain, "ai.onnx") != 0)
      return onnx_fail(c, e, ERR_UNSUPPORTED, "operator domain '%.60s' is not "
                       "supported", n->domain);
    onnx_op_fn fn = onnx_op_find(n->op_type ? n->op_type : "");
    if (!fn)
      return onnx_fail(c, e, ERR_UNSUPPORTED, "unsupported operator '%.60s'",
                       n->op_type ? n->op_type : "");
    err_code rc = fn(c, e);
    if (rc != ERR_OK) return rc;
    for (size_t o = 1; o < n->n_output; o++)
      if (present(n->output[o]) && uses_of(c, n->output[o]))
        return onnx_fail(c, e, ERR_UNSUPPORTED,
                         "output %zu ('%.80s') is read by later nodes; EdgeDI "
                         "computes only a node's first output",
                         o, n->output[o]);
  }
  return ERR_OK;
}

static void ctx_free(onnx_ctx *c) {
  for (int k = 0; k < c->n_vals; k++) {
    onnx_value *v = &c->vals[k];
    if (v->owns_data) {
      free(v->f);
      free(v->i);
    }
    if (v->owns_w) free(v->w);
  }
  free(c->vals);
  names_free(&c->defs);
  names_free(&c->uses);
}

/* The walk itself; e is never NULL here, so helpers may read messages back. */
static err_code import(const void *bytes, size_t len, model **out,
                       onnx_io *io, err *e) {
  *out = NULL;
  if (!bytes && len) return err_set(e, ERR_INVALID, "onnx_import: no data");
  if (io) memset(io, 0, sizeof *io);
  Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, bytes);
  if (!mp)
    return err_set(e, ERR_CORRUPT,
                   "not an ONNX model: the %zu bytes do not decode as an ONNX "
                   "ModelProto (truncated or corrupt file?)",
                   len);
  onnx_ctx c;
  memset(&c, 0, sizeof c);
  c.g = mp->graph;
  err_code rc = ERR_OK;
  if (!c.g || c.g->n_node == 0) {
    rc = err_set(e, ERR_INVALID, "the ONNX model has no graph (or no nodes)");
    goto done;
  }
  rc = read_opset(&c, mp, e);
  if (rc != ERR_OK) goto done;
  c.m = model_create(present(c.g->name) ? c.g->name : "onnx",
                     (model_shape){1, 1, 1});
  if (!c.m) {
    rc = err_set(e, ERR_NOMEM, "out of memory");
    goto done;
  }
  rc = prepare(&c, e);
  if (rc == ERR_OK) rc = read_input(&c, io, e);
  if (rc == ERR_OK) rc = run_nodes(&c, e);
  if (rc == ERR_OK) rc = read_output(&c, io, e);
  if (rc == ERR_OK) {
    c.node = NULL;
    rc = model_finalize(c.m, e);
    if (rc != ERR_OK) err_wrap(e, "imported graph");
  }
done:
  if (rc == ERR_OK) {
    *out = c.m;
  } else {
    model_destroy(c.m);
  }
  ctx_free(&c);
  onnx__model_proto__free_unpacked(mp, NULL);
  return rc;
}

err_code onnx_import_ex(const void *bytes, size_t len, model **out,
                        onnx_io *io, err *e) {
  if (!out) return err_set(e, ERR_INVALID, "onnx_import: no place for the model");
  err local = {ERR_OK, ""};
  err_code rc = import(bytes, len, out, io, &local);
  if (rc != ERR_OK && e) *e = local;
  return rc;
}

err_code onnx_import(const void *bytes, size_t len, model **out, err *e) {
  return onnx_import_ex(bytes, len, out, NULL, e);
}

err_code onnx_import_file(const char *path, model **out, onnx_io *io, err *e) {
  if (out) *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return err_set(e, ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      size_t grown = cap ? 2 * cap : 1 << 16;
      char *p = realloc(buf, grown);
      if (!p) {
        free(buf);
        fclose(f);
        return err_set(e, ERR_NOMEM, "out of memory reading '%s'", path);
      }
      buf = p;
      cap = grown;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
  }
  bool failed = ferror(f);
  fclose(f);
  if (failed) {
    free(buf);
    return err_set(e, ERR_IO, "cannot read '%s'", path);
  }
  err_code rc = onnx_import_ex(buf, len, out, io, e);
  free(buf);
  if (rc != ERR_OK) err_wrap(e, "%s", path);
  return rc;
}

/* onnx_export.c — model graph to ONNX (contract in onnx_export.h).
 *
 * Builds the ModelProto out of the protoc-c structs generated from Debian's
 * onnx.proto and packs it with protobuf-c. Every string, array and message
 * the structs point to lives in one arena freed after packing, so the
 * builder never tracks ownership piece by piece; an allocation failure is
 * sticky and reported once at the end.
 *
 * Ranks: EdgeDI tensors are all NHWC, ONNX values are [1,C,H,W] or, after
 * Flatten and Gemm, [1,K]. Each layer's output keeps the rank its ONNX
 * operator gives it; a consumer that needs the other rank gets a Squeeze
 * (4 -> 2, only ever of a 1x1 tensor) or an Unsqueeze (2 -> 4) over axes
 * 2 and 3, made once per tensor.
 */
#include "runtime/onnx_export.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "third_party/onnx/onnx.pb-c.h"

#define T_FLOAT ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define T_INT64 ONNX__TENSOR_PROTO__DATA_TYPE__INT64

enum { EX_NAME_BYTES = MODEL_NAME_BYTES + 32, EX_MAX_INPUTS = 3 };

typedef struct ex_list {
  void **items;
  size_t n, cap;
} ex_list;

typedef struct ex {
  const model *m;
  ex_list arena;            /* every allocation, freed at the end */
  ex_list nodes;            /* Onnx__NodeProto * */
  ex_list inits;            /* Onnx__TensorProto * */
  ex_list value_names;      /* char *: values and initializers */
  ex_list node_names;       /* char * */
  bool oom;
  /* Per tensor (index l + 1; 0 is the graph input): its value's name in
   * its own rank, and the names made for the other rank. */
  char **name;
  int *rank;
  char **name4, **name2;
  char *axes_hw; /* the [2, 3] initializer of Unsqueeze, once made */
} ex;

static bool list_push(ex_list *l, void *p) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    void **grown = realloc(l->items, cap * sizeof *grown);
    if (!grown) return false;
    l->items = grown;
    l->cap = cap;
  }
  l->items[l->n++] = p;
  return true;
}

static void *ex_alloc(ex *x, size_t bytes) {
  void *p = calloc(1, bytes ? bytes : 1);
  if (!p || !list_push(&x->arena, p)) {
    free(p);
    x->oom = true;
    return NULL;
  }
  return p;
}

static char *ex_printf(ex *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *ex_printf(ex *x, const char *fmt, ...) {
  char buf[EX_NAME_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  char *s = ex_alloc(x, strlen(buf) + 1);
  if (s) strcpy(s, buf);
  return s;
}

/* `base`, or base_2, base_3 ... : the first not yet in `names`. Linear, but
 * the paper's largest model has a few hundred names. */
static char *ex_unique(ex *x, ex_list *names, const char *base) {
  for (int k = 1;; k++) {
    char *s = k == 1 ? ex_printf(x, "%s", base) : ex_printf(x, "%s_%d", base, k);
    if (!s) return NULL;
    bool taken = false;
    for (size_t i = 0; i < names->n && !taken; i++)
      taken = strcmp(names->items[i], s) == 0;
    if (!taken) {
      if (!list_push(names, s)) x->oom = true;
      return s;
    }
  }
}

/* ---- attributes, tensors, nodes ------------------------------------------ */

static Onnx__AttributeProto *attr_new(ex *x, const char *name, int type) {
  Onnx__AttributeProto *a = ex_alloc(x, sizeof *a);
  if (!a) return NULL;
  onnx__attribute_proto__init(a);
  a->name = (char *)name;
  a->has_type = true;
  a->type = type;
  return a;
}

static Onnx__AttributeProto *attr_int(ex *x, const char *name, int64_t v) {
  Onnx__AttributeProto *a =
      attr_new(x, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  if (a) {
    a->has_i = true;
    a->i = v;
  }
  return a;
}

static Onnx__AttributeProto *attr_float(ex *x, const char *name, float v) {
  Onnx__AttributeProto *a =
      attr_new(x, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  if (a) {
    a->has_f = true;
    a->f = v;
  }
  return a;
}

static Onnx__AttributeProto *attr_ints(ex *x, const char *name, int n, ...) {
  Onnx__AttributeProto *a =
      attr_new(x, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  int64_t *v = ex_alloc(x, (size_t)n * sizeof *v);
  if (!a || !v) return NULL;
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) v[i] = va_arg(ap, int);
  va_end(ap);
  a->n_ints = (size_t)n;
  a->ints = v;
  return a;
}

/* Little-endian bytes whatever the host's order. */
static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int k = 0; k < n; k++) p[k] = (uint8_t)(v >> (8 * k));
}

static Onnx__TensorProto *tensor_new(ex *x, const char *name, int type,
                                     const int64_t *dims, int rank,
                                     size_t elem_bytes, uint8_t **data) {
  Onnx__TensorProto *t = ex_alloc(x, sizeof *t);
  int64_t *d = ex_alloc(x, (size_t)rank * sizeof *d);
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
  *data = ex_alloc(x, n * elem_bytes);
  if (!t || !d || !*data) return NULL;
  onnx__tensor_proto__init(t);
  memcpy(d, dims, (size_t)rank * sizeof *d);
  t->name = (char *)name;
  t->n_dims = (size_t)rank;
  t->dims = d;
  t->has_data_type = true;
  t->data_type = type;
  t->has_raw_data = true;
  t->raw_data.len = n * elem_bytes;
  t->raw_data.data = *data;
  if (!list_push(&x->inits, t)) x->oom = true;
  return t;
}

/* A float initializer named "<owner>.<role>" holding src (or `fill` in
 * every place when src is NULL). */
static char *init_f32(ex *x, const char *owner, const char *role,
                      const int64_t *dims, int rank, const float *src,
                      float fill) {
  char base[EX_NAME_BYTES];
  snprintf(base, sizeof base, "%s.%s", owner, role);
  char *name = ex_unique(x, &x->value_names, base);
  uint8_t *data;
  if (!name || !tensor_new(x, name, T_FLOAT, dims, rank, 4, &data)) return NULL;
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
  for (size_t i = 0; i < n; i++) {
    float v = src ? src[i] : fill;
    uint32_t bits;
    memcpy(&bits, &v, 4);
    put_le(data + 4 * i, bits, 4);
  }
  return name;
}

/* A conv's OHWI weights as the OIHW initializer ONNX wants. */
static char *init_oihw(ex *x, const model_layer *L, const int64_t dims[4]) {
  size_t o = (size_t)dims[0], ipg = (size_t)dims[1], kh = (size_t)dims[2],
         kw = (size_t)dims[3];
  float *oihw = malloc(L->n_weights * sizeof *oihw);
  if (!oihw) {
    x->oom = true;
    return NULL;
  }
  for (size_t oc = 0; oc < o; oc++)
    for (size_t y = 0; y < kh; y++)
      for (size_t xx = 0; xx < kw; xx++)
        for (size_t i = 0; i < ipg; i++)
          oihw[((oc * ipg + i) * kh + y) * kw + xx] =
              L->weights[((oc * kh + y) * kw + xx) * ipg + i];
  char *name = init_f32(x, L->name, "weight", dims, 4, oihw, 0);
  free(oihw);
  return name;
}

static Onnx__NodeProto *node_new(ex *x, const char *op, const char *name,
                                 const char *const *in, int n_in,
                                 const char *out, int n_attr, ...) {
  Onnx__NodeProto *nd = ex_alloc(x, sizeof *nd);
  char **ins = ex_alloc(x, (size_t)n_in * sizeof *ins);
  char **outs = ex_alloc(x, sizeof *outs);
  Onnx__AttributeProto **attrs = ex_alloc(x, (size_t)n_attr * sizeof *attrs);
  char *node_name = ex_unique(x, &x->node_names, name);
  if (!nd || !ins || !outs || !attrs || !node_name) return NULL;
  onnx__node_proto__init(nd);
  for (int i = 0; i < n_in; i++) {
    if (!in[i]) { /* an earlier allocation failed */
      x->oom = true;
      return NULL;
    }
    ins[i] = (char *)in[i];
  }
  outs[0] = (char *)out;
  va_list ap;
  va_start(ap, n_attr);
  for (int i = 0; i < n_attr; i++) {
    attrs[i] = va_arg(ap, Onnx__AttributeProto *);
    if (!attrs[i]) x->oom = true;
  }
  va_end(ap);
  nd->op_type = (char *)op;
  nd->name = node_name;
  nd->n_input = (size_t)n_in;
  nd->input = ins;
  nd->n_output = 1;
  nd->output = outs;
  nd->n_attribute = (size_t)n_attr;
  nd->attribute = attrs;
  if (!out || !list_push(&x->nodes, nd)) x->oom = true;
  return nd;
}

static char *value_name(ex *x, const char *base) {
  return ex_unique(x, &x->value_names, base);
}

/* ---- ranks -------------------------------------------------------------- */

/* The [2, 3] initializer Squeeze and Unsqueeze take (axes are an input
 * since opset 13), made on first use. */
static const char *axes_hw(ex *x) {
  if (x->axes_hw) return x->axes_hw;
  const int64_t two = 2;
  uint8_t *data;
  char *name = value_name(x, "edgedi.axes_hw");
  if (!name || !tensor_new(x, name, T_INT64, &two, 1, 8, &data)) return NULL;
  put_le(data, 2, 8);
  put_le(data + 8, 3, 8);
  return x->axes_hw = name;
}

/* Tensor t's value (t = layer + 1, 0 the input) in rank `rank`. */
static const char *as_rank(ex *x, int t, int rank) {
  if (x->rank[t] == rank) return x->name[t];
  char **cache = rank == 4 ? &x->name4[t] : &x->name2[t];
  if (*cache) return *cache;
  const char *in[2] = {x->name[t], NULL};
  char base[EX_NAME_BYTES];
  snprintf(base, sizeof base, "%s.%s", x->name[t], rank == 4 ? "4d" : "2d");
  char *out = value_name(x, base);
  /* Squeeze, not Flatten, to [1,K]: the importer turns Flatten into a
   * flatten layer, and this conversion is no layer of the model. */
  if (!axes_hw(x)) return NULL;
  in[1] = x->axes_hw;
  node_new(x, rank == 2 ? "Squeeze" : "Unsqueeze", base, in, 2, out, 0);
  *cache = out;
  return out;
}

/* ---- layers ----------------------------------------------------------------- */

static Onnx__AttributeProto *attr_pads(ex *x, const model_layer *L) {
  return attr_ints(x, "pads", 4, L->pad_top, L->pad_left, L->pad_bottom,
                   L->pad_right);
}

/* Emits layer l's nodes, the last writing `out`; returns the output rank. */
static int export_layer(ex *x, int l, const char *out) {
  const model_layer *L = &x->m->layers[l];
  const model *m = x->m;
  int t0 = L->inputs[0] + 1;
  model_shape is = model_tensor_shape(m, L->inputs[0]);
  const char *in[EX_MAX_INPUTS] = {NULL, NULL, NULL};
  switch (L->op) {
    case MODEL_OP_CONV: {
      int64_t dims[4] = {L->out_channels, is.c / L->groups, L->kernel_h,
                         L->kernel_w};
      in[0] = as_rank(x, t0, 4);
      in[1] = init_oihw(x, L, dims);
      int64_t nb = L->out_channels;
      if (L->bias) in[2] = init_f32(x, L->name, "bias", &nb, 1, L->bias, 0);
      node_new(x, "Conv", L->name, in, L->bias ? 3 : 2, out, 5,
               attr_ints(x, "kernel_shape", 2, L->kernel_h, L->kernel_w),
               attr_ints(x, "strides", 2, L->stride_h, L->stride_w),
               attr_pads(x, L), attr_int(x, "group", L->groups),
               attr_ints(x, "dilations", 2, 1, 1));
      return 4;
    }
    case MODEL_OP_BN: {
      int64_t c = is.c;
      const char *bn[5] = {x->name[t0],
                           init_f32(x, L->name, "scale", &c, 1, L->weights, 0),
                           init_f32(x, L->name, "shift", &c, 1, L->bias, 0),
                           init_f32(x, L->name, "mean", &c, 1, NULL, 0.0f),
                           init_f32(x, L->name, "var", &c, 1, NULL, 1.0f)};
      node_new(x, "BatchNormalization", L->name, bn, 5, out, 1,
               attr_float(x, "epsilon", 0.0f));
      return x->rank[t0];
    }
    case MODEL_OP_RELU:
      in[0] = x->name[t0];
      node_new(x, "Relu", L->name, in, 1, out, 0);
      return x->rank[t0];
    case MODEL_OP_MAXPOOL:
    case MODEL_OP_AVGPOOL: {
      bool is_max = L->op == MODEL_OP_MAXPOOL;
      in[0] = as_rank(x, t0, 4);
      node_new(x, is_max ? "MaxPool" : "AveragePool", L->name, in, 1, out, 4,
               attr_ints(x, "kernel_shape", 2, L->kernel_h, L->kernel_w),
               attr_ints(x, "strides", 2, L->stride_h, L->stride_w),
               attr_pads(x, L),
               /* MaxPool ignores it; EdgeDI's average excludes padding */
               is_max ? attr_int(x, "ceil_mode", 0)
                      : attr_int(x, "count_include_pad", 0));
      return 4;
    }
    case MODEL_OP_GAP:
      in[0] = as_rank(x, t0, 4);
      node_new(x, "GlobalAveragePool", L->name, in, 1, out, 0);
      return 4;
    case MODEL_OP_FC: {
      int64_t dims[2] = {L->out_channels, is.c}, nb = L->out_channels;
      in[0] = as_rank(x, t0, 2);
      in[1] = init_f32(x, L->name, "weight", dims, 2, L->weights, 0);
      if (L->bias) in[2] = init_f32(x, L->name, "bias", &nb, 1, L->bias, 0);
      node_new(x, "Gemm", L->name, in, L->bias ? 3 : 2, out, 1,
               attr_int(x, "transB", 1));
      return 2;
    }
    case MODEL_OP_FE: {
      /* x * sigmoid(W * mean(x)), the pattern onnx_import recognizes. */
      int64_t dims[2] = {is.c, is.c};
      const char *xv = as_rank(x, t0, 4);
      char base[EX_NAME_BYTES];
      const char *step[5];
      static const char *const suffix[5] = {"mean", "flat", "logit", "gate",
                                            "gate4"};
      for (int k = 0; k < 5; k++) {
        snprintf(base, sizeof base, "%s.%s", L->name, suffix[k]);
        step[k] = value_name(x, base);
      }
      const char *a1[1] = {xv};
      node_new(x, "ReduceMean", step[0], a1, 1, step[0], 2,
               attr_ints(x, "axes", 2, 2, 3), attr_int(x, "keepdims", 1));
      node_new(x, "Flatten", step[1], &step[0], 1, step[1], 1,
               attr_int(x, "axis", 1));
      const char *g[2] = {step[1], init_f32(x, L->name, "weight", dims, 2,
                                            L->weights, 0)};
      node_new(x, "Gemm", step[2], g, 2, step[2], 1, attr_int(x, "transB", 1));
      node_new(x, "Sigmoid", step[3], &step[2], 1, step[3], 0);
      const char *u[2] = {step[3], axes_hw(x)};
      node_new(x, "Unsqueeze", step[4], u, 2, step[4], 0);
      const char *mul[2] = {xv, step[4]};
      node_new(x, "Mul", L->name, mul, 2, out, 0);
      return 4;
    }
    case MODEL_OP_ADD: {
      int t1 = L->inputs[1] + 1;
      int rank = x->rank[t0] == 4 || x->rank[t1] == 4 ? 4 : 2;
      in[0] = as_rank(x, t0, rank);
      in[1] = as_rank(x, t1, rank);
      node_new(x, "Add", L->name, in, 2, out, 0);
      return rank;
    }
    case MODEL_OP_FLATTEN:
      /* From rank 4 always: the importer makes a flatten layer only of a
       * Flatten that changes the rank. */
      in[0] = as_rank(x, t0, 4);
      node_new(x, "Flatten", L->name, in, 1, out, 1, attr_int(x, "axis", 1));
      return 2;
    default:
      x->oom = true; /* model_finalize refuses unknown ops: unreachable */
      return 4;
  }
}

/* ---- the graph ---------------------------------------------------------------- */

static Onnx__ValueInfoProto *value_info(ex *x, const char *name, int rank,
                                        const int64_t *dims) {
  Onnx__ValueInfoProto *v = ex_alloc(x, sizeof *v);
  Onnx__TypeProto *type = ex_alloc(x, sizeof *type);
  Onnx__TypeProto__Tensor *tt = ex_alloc(x, sizeof *tt);
  Onnx__TensorShapeProto *shape = ex_alloc(x, sizeof *shape);
  Onnx__TensorShapeProto__Dimension **dim =
      ex_alloc(x, (size_t)rank * sizeof *dim);
  if (!v || !type || !tt || !shape || !dim) return NULL;
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(type);
  onnx__type_proto__tensor__init(tt);
  onnx__tensor_shape_proto__init(shape);
  for (int i = 0; i < rank; i++) {
    dim[i] = ex_alloc(x, sizeof *dim[i]);
    if (!dim[i]) return NULL;
    onnx__tensor_shape_proto__dimension__init(dim[i]);
    dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    dim[i]->dim_value = dims[i];
  }
  shape->n_dim = (size_t)rank;
  shape->dim = dim;
  tt->has_elem_type = true;
  tt->elem_type = T_FLOAT;
  tt->shape = shape;
  type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  type->tensor_type = tt;
  v->name = (char *)name;
  v->type = type;
  return v;
}

static err_code build(ex *x, void **bytes, size_t *len, err *e) {
  const model *m = x->m;
  int n = m->n_layers;
  x->name = ex_alloc(x, (size_t)(n + 1) * sizeof *x->name);
  x->name4 = ex_alloc(x, (size_t)(n + 1) * sizeof *x->name4);
  x->name2 = ex_alloc(x, (size_t)(n + 1) * sizeof *x->name2);
  x->rank = ex_alloc(x, (size_t)(n + 1) * sizeof *x->rank);
  if (x->oom) return err_set(e, ERR_NOMEM, "export: out of memory");
  x->name[0] = value_name(x, "input");
  x->rank[0] = 4;
  char *logits = value_name(x, "logits");
  for (int l = 0; l < n && !x->oom; l++) {
    const model_layer *L = &m->layers[l];
    char *final = l == n - 1 ? logits : value_name(x, L->name);
    char *main = final;
    if (L->relu) {
      char base[EX_NAME_BYTES];
      snprintf(base, sizeof base, "%s.pre_relu", L->name);
      main = value_name(x, base);
    }
    x->rank[l + 1] = export_layer(x, l, main);
    if (L->relu) {
      char base[EX_NAME_BYTES];
      snprintf(base, sizeof base, "%s.relu", L->name);
      const char *in[1] = {main};
      node_new(x, "Relu", base, in, 1, final, 0);
    }
    x->name[l + 1] = final;
  }
  model_shape os = m->layers[n - 1].out;
  int out_rank = x->rank[n];
  int64_t in_dims[4] = {1, m->input.c, m->input.h, m->input.w};
  int64_t out_dims[4] = {1, os.c, os.h, os.w};
  if (out_rank == 2) out_dims[1] = (int64_t)os.c * os.h * os.w;
  Onnx__ValueInfoProto *vin = value_info(x, x->name[0], 4, in_dims);
  Onnx__ValueInfoProto *vout = value_info(x, logits, out_rank, out_dims);
  Onnx__GraphProto *g = ex_alloc(x, sizeof *g);
  Onnx__ModelProto *mp = ex_alloc(x, sizeof *mp);
  Onnx__OperatorSetIdProto *opset = ex_alloc(x, sizeof *opset);
  Onnx__OperatorSetIdProto **opsets = ex_alloc(x, sizeof *opsets);
  Onnx__ValueInfoProto **ins = ex_alloc(x, sizeof *ins);
  Onnx__ValueInfoProto **outs = ex_alloc(x, sizeof *outs);
  if (x->oom || !vin || !vout || !g || !mp || !opset || !opsets || !ins || !outs)
    return err_set(e, ERR_NOMEM, "export: out of memory");
  onnx__graph_proto__init(g);
  g->name = (char *)m->name;
  g->n_node = x->nodes.n;
  g->node = (Onnx__NodeProto **)x->nodes.items;
  g->n_initializer = x->inits.n;
  g->initializer = (Onnx__TensorProto **)x->inits.items;
  ins[0] = vin;
  outs[0] = vout;
  g->n_input = g->n_output = 1;
  g->input = ins;
  g->output = outs;
  onnx__operator_set_id_proto__init(opset);
  opset->domain = "";
  opset->has_version = true;
  opset->version = ONNX_EXPORT_OPSET;
  opsets[0] = opset;
  onnx__model_proto__init(mp);
  mp->has_ir_version = true;
  mp->ir_version = ONNX_EXPORT_IR_VERSION;
  mp->producer_name = "edgedi";
  mp->n_opset_import = 1;
  mp->opset_import = opsets;
  mp->graph = g;
  *len = onnx__model_proto__get_packed_size(mp);
  *bytes = malloc(*len ? *len : 1);
  if (!*bytes) return err_set(e, ERR_NOMEM, "export: out of memory for %zu bytes", *len);
  onnx__model_proto__pack(mp, *bytes);
  return ERR_OK;
}

err_code onnx_export(const model *m, void **bytes, size_t *len, err *e) {
  if (!m || !m->finalized || !bytes || !len)
    return err_set(e, ERR_INVALID, "export: needs a finalized model");
  *bytes = NULL;
  *len = 0;
  ex x;
  memset(&x, 0, sizeof x);
  x.m = m;
  err_code rc = build(&x, bytes, len, e);
  for (size_t i = 0; i < x.arena.n; i++) free(x.arena.items[i]);
  free(x.arena.items);
  free(x.nodes.items);
  free(x.inits.items);
  free(x.value_names.items);
  free(x.node_names.items);
  return rc;
}

err_code onnx_export_file(const model *m, const char *path, err *e) {
  void *bytes;
  size_t len;
  err_code rc = onnx_export(m, &bytes, &len, e);
  if (rc != ERR_OK) return rc;
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(bytes);
    return err_set(e, ERR_IO, "cannot create '%s': %s", path, strerror(errno));
  }
  bool ok = fwrite(bytes, 1, len, f) == len;
  ok = fclose(f) == 0 && ok;
  free(bytes);
  if (!ok) return err_set(e, ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  return ERR_OK;
}

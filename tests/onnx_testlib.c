/* onnx_testlib.c — hand-built ONNX files and the NCHW oracle (contract in
 * onnx_testlib.h). Test code: allocation failures abort. */
#include "tests/onnx_testlib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "third_party/onnx/onnx.pb-c.h"

enum { TB_MAX = 256 };

struct tb {
  void *arena[8 * TB_MAX * 4];
  int n_arena;
  Onnx__ModelProto model;
  Onnx__GraphProto graph;
  Onnx__OperatorSetIdProto opset, *opsets[1];
  Onnx__NodeProto *nodes[TB_MAX];
  Onnx__TensorProto *inits[TB_MAX];
  Onnx__ValueInfoProto *ins[1], *outs[1];
};

static void *tb_alloc(tb *b, size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (!p || b->n_arena == (int)(sizeof b->arena / sizeof b->arena[0])) abort();
  b->arena[b->n_arena++] = p;
  return p;
}

static char *tb_str(tb *b, const char *s, size_t n) {
  char *p = tb_alloc(b, n + 1);
  memcpy(p, s, n);
  return p;
}

static Onnx__ValueInfoProto *tb_value_info(tb *b, const char *name, int rank,
                                           const int64_t *dims,
                                           bool symbolic_batch) {
  Onnx__ValueInfoProto *v = tb_alloc(b, sizeof *v);
  Onnx__TypeProto *t = tb_alloc(b, sizeof *t);
  Onnx__TypeProto__Tensor *tt = tb_alloc(b, sizeof *tt);
  Onnx__TensorShapeProto *s = tb_alloc(b, sizeof *s);
  Onnx__TensorShapeProto__Dimension **d = tb_alloc(b, (size_t)rank * sizeof *d);
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(t);
  onnx__type_proto__tensor__init(tt);
  onnx__tensor_shape_proto__init(s);
  for (int i = 0; i < rank; i++) {
    d[i] = tb_alloc(b, sizeof *d[i]);
    onnx__tensor_shape_proto__dimension__init(d[i]);
    if (i == 0 && symbolic_batch) {
      d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d[i]->dim_param = tb_str(b, "batch", 5);
    } else {
      d[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d[i]->dim_value = dims[i];
    }
  }
  s->n_dim = (size_t)rank;
  s->dim = d;
  tt->has_elem_type = 1;
  tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tt->shape = s;
  t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  t->tensor_type = tt;
  v->name = tb_str(b, name, strlen(name));
  v->type = t;
  return v;
}

tb *tb_new(int opset, int c, int h, int w, bool symbolic_batch) {
  tb *b = calloc(1, sizeof *b);
  if (!b) abort();
  onnx__model_proto__init(&b->model);
  onnx__graph_proto__init(&b->graph);
  onnx__operator_set_id_proto__init(&b->opset);
  b->opset.domain = "";
  b->opset.has_version = 1;
  b->opset.version = opset;
  b->opsets[0] = &b->opset;
  b->model.has_ir_version = 1;
  b->model.ir_version = 8;
  b->model.n_opset_import = 1;
  b->model.opset_import = b->opsets;
  b->model.graph = &b->graph;
  b->graph.name = "test";
  b->graph.node = b->nodes;
  b->graph.initializer = b->inits;
  const int64_t dims[4] = {1, c, h, w};
  b->ins[0] = tb_value_info(b, "x", 4, dims, symbolic_batch);
  b->graph.input = b->ins;
  b->graph.n_input = 1;
  b->graph.output = b->outs;
  return b;
}

static Onnx__TensorProto *tb_tensor(tb *b, const char *name, int rank,
                                    const int64_t *dims, int type) {
  Onnx__TensorProto *t = tb_alloc(b, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = tb_str(b, name, strlen(name));
  t->n_dims = (size_t)rank;
  t->dims = tb_alloc(b, (size_t)rank * sizeof(int64_t));
  if (rank) memcpy(t->dims, dims, (size_t)rank * sizeof(int64_t));
  t->has_data_type = 1;
  t->data_type = type;
  if (b->graph.n_initializer == TB_MAX) abort();
  b->inits[b->graph.n_initializer++] = t;
  return t;
}

void tb_init_f(tb *b, const char *name, int rank, const int64_t *dims,
               const float *data, uint32_t seed) {
  Onnx__TensorProto *t =
      tb_tensor(b, name, rank, dims, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
  /* float_data, not raw_data: the importer must read both, and export
   * covers raw_data. */
  t->n_float_data = n;
  t->float_data = tb_alloc(b, n * sizeof(float));
  if (data) memcpy(t->float_data, data, n * sizeof(float));
  else tl_fill(t->float_data, n, seed);
}

void tb_init_i(tb *b, const char *name, int rank, const int64_t *dims,
               const int64_t *data) {
  Onnx__TensorProto *t =
      tb_tensor(b, name, rank, dims, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
  t->n_int64_data = n;
  t->int64_data = tb_alloc(b, n * sizeof(int64_t));
  memcpy(t->int64_data, data, n * sizeof(int64_t));
}

const float *tb_data(tb *b, const char *name) {
  for (size_t i = 0; i < b->graph.n_initializer; i++)
    if (strcmp(b->inits[i]->name, name) == 0) return b->inits[i]->float_data;
  return NULL;
}

void tb_node(tb *b, const char *op, const char *name, const char *inputs,
             const char *output, const tb_attr *attrs) {
  Onnx__NodeProto *n = tb_alloc(b, sizeof *n);
  onnx__node_proto__init(n);
  n->op_type = tb_str(b, op, strlen(op));
  if (name) n->name = tb_str(b, name, strlen(name));
  n->input = tb_alloc(b, 16 * sizeof(char *));
  for (const char *p = inputs; p && *p;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    n->input[n->n_input++] = tb_str(b, p, len);
    if (!comma) break;
    p = comma + 1;
    if (!*p) n->input[n->n_input++] = tb_str(b, "", 0);
  }
  n->n_output = 1;
  n->output = tb_alloc(b, sizeof(char *));
  n->output[0] = tb_str(b, output, strlen(output));
  int na = 0;
  while (attrs && attrs[na].kind) na++;
  n->attribute = tb_alloc(b, (size_t)na * sizeof *n->attribute);
  for (int i = 0; i < na; i++) {
    const tb_attr *a = &attrs[i];
    Onnx__AttributeProto *p = tb_alloc(b, sizeof *p);
    onnx__attribute_proto__init(p);
    p->name = tb_str(b, a->name, strlen(a->name));
    p->has_type = 1;
    switch (a->kind) {
      case 'i':
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        p->has_i = 1;
        p->i = a->i;
        break;
      case 'f':
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        p->has_f = 1;
        p->f = a->f;
        break;
      case 's':
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
        p->has_s = 1;
        p->s.len = strlen(a->s);
        p->s.data = (uint8_t *)tb_str(b, a->s, p->s.len);
        break;
      default:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        p->n_ints = (size_t)a->n;
        p->ints = tb_alloc(b, (size_t)a->n * sizeof(int64_t));
        memcpy(p->ints, a->ints, (size_t)a->n * sizeof(int64_t));
    }
    n->attribute[n->n_attribute++] = p;
  }
  if (b->graph.n_node == TB_MAX) abort();
  b->nodes[b->graph.n_node++] = n;
}

void tb_output(tb *b, const char *name) {
  Onnx__ValueInfoProto *v = tb_alloc(b, sizeof *v);
  onnx__value_info_proto__init(v);
  v->name = tb_str(b, name, strlen(name));
  b->outs[0] = v;
  b->graph.n_output = 1;
}

void tb_output_dims(tb *b, const char *name, int rank, const int64_t *dims) {
  b->outs[0] = tb_value_info(b, name, rank, dims, false);
  b->graph.n_output = 1;
}

void tb_input_dims(tb *b, int rank, const int64_t *dims) {
  b->ins[0] = tb_value_info(b, "x", rank, dims, false);
}

void tb_last_node_domain(tb *b, const char *domain) {
  b->nodes[b->graph.n_node - 1]->domain = tb_str(b, domain, strlen(domain));
}

void *tb_pack(tb *b, size_t *len) {
  *len = onnx__model_proto__get_packed_size(&b->model);
  void *p = malloc(*len ? *len : 1);
  if (!p) abort();
  onnx__model_proto__pack(&b->model, p);
  return p;
}

void tb_free(tb *b) {
  for (int i = 0; i < b->n_arena; i++) free(b->arena[i]);
  free(b);
}

/* ---- helpers and the oracle -------------------------------------------------- */

void tl_fill(float *x, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
}

double tl_max_rel_diff(const float *a, const float *b, size_t n) {
  double peak = 0, diff = 0;
  for (size_t i = 0; i < n; i++) {
    if (fabs(a[i]) > peak) peak = fabs(a[i]);
    if (fabs((double)a[i] - b[i]) > diff) diff = fabs((double)a[i] - b[i]);
  }
  return peak > 0 ? diff / peak : diff;
}

tl_t tl_new(int c, int h, int w) {
  tl_t t = {c, h, w, calloc((size_t)c * h * w, sizeof(float))};
  if (!t.d) abort();
  return t;
}

void tl_free(tl_t *t) {
  free(t->d);
  t->d = NULL;
}

static float at(tl_t x, int c, int y, int i) {
  if (y < 0 || y >= x.h || i < 0 || i >= x.w) return 0.0f;
  return x.d[((size_t)c * x.h + y) * x.w + i];
}

tl_t tl_conv(tl_t x, const float *w, const float *bias, int o, int kh, int kw,
             int sh, int sw, const int pads[4], int groups) {
  int oh = (x.h + pads[0] + pads[2] - kh) / sh + 1;
  int ow = (x.w + pads[1] + pads[3] - kw) / sw + 1;
  int ipg = x.c / groups, opg = o / groups;
  tl_t y = tl_new(o, oh, ow);
  for (int oc = 0; oc < o; oc++)
    for (int r = 0; r < oh; r++)
      for (int q = 0; q < ow; q++) {
        double s = bias ? bias[oc] : 0;
        int g = oc / opg;
        for (int i = 0; i < ipg; i++)
          for (int a = 0; a < kh; a++)
            for (int b = 0; b < kw; b++)
              s += (double)w[((oc * ipg + i) * kh + a) * kw + b] *
                   at(x, g * ipg + i, r * sh - pads[0] + a, q * sw - pads[1] + b);
        y.d[((size_t)oc * oh + r) * ow + q] = (float)s;
      }
  return y;
}

tl_t tl_pool(tl_t x, bool max, int kh, int kw, int sh, int sw,
             const int pads[4]) {
  int oh = (x.h + pads[0] + pads[2] - kh) / sh + 1;
  int ow = (x.w + pads[1] + pads[3] - kw) / sw + 1;
  tl_t y = tl_new(x.c, oh, ow);
  for (int c = 0; c < x.c; c++)
    for (int r = 0; r < oh; r++)
      for (int q = 0; q < ow; q++) {
        double s = max ? -INFINITY : 0;
        int count = 0;
        for (int a = 0; a < kh; a++)
          for (int b = 0; b < kw; b++) {
            int yy = r * sh - pads[0] + a, xx = q * sw - pads[1] + b;
            if (yy < 0 || yy >= x.h || xx < 0 || xx >= x.w) continue;
            double v = at(x, c, yy, xx);
            s = max ? (v > s ? v : s) : s + v;
            count++;
          }
        y.d[((size_t)c * oh + r) * ow + q] = (float)(max ? s : s / count);
      }
  return y;
}

tl_t tl_gap(tl_t x) {
  tl_t y = tl_new(x.c, 1, 1);
  for (int c = 0; c < x.c; c++) {
    double s = 0;
    for (int i = 0; i < x.h * x.w; i++) s += x.d[(size_t)c * x.h * x.w + i];
    y.d[c] = (float)(s / (x.h * x.w));
  }
  return y;
}

void tl_relu(tl_t *x) {
  for (size_t i = 0; i < (size_t)x->c * x->h * x->w; i++)
    if (!(x->d[i] > 0)) x->d[i] = 0;
}

void tl_bn(tl_t *x, const float *g, const float *b, const float *mean,
           const float *var, float eps) {
  size_t hw = (size_t)x->h * x->w;
  for (int c = 0; c < x->c; c++)
    for (size_t i = 0; i < hw; i++) {
      float *v = &x->d[c * hw + i];
      *v = (float)((*v - mean[c]) / sqrt((double)var[c] + eps) * g[c] + b[c]);
    }
}

tl_t tl_fc(tl_t x, const float *w, const float *bias, int out) {
  int n = x.c * x.h * x.w;
  tl_t y = tl_new(out, 1, 1);
  for (int o = 0; o < out; o++) {
    double s = bias ? bias[o] : 0;
    for (int i = 0; i < n; i++) s += (double)w[(size_t)o * n + i] * x.d[i];
    y.d[o] = (float)s;
  }
  return y;
}

void tl_fe(tl_t *x, const float *w) {
  tl_t m = tl_gap(*x);
  tl_t z = tl_fc(m, w, NULL, x->c);
  size_t hw = (size_t)x->h * x->w;
  for (int c = 0; c < x->c; c++) {
    float s = (float)(1.0 / (1.0 + exp(-(double)z.d[c])));
    for (size_t i = 0; i < hw; i++) x->d[c * hw + i] *= s;
  }
  tl_free(&m);
  tl_free(&z);
}

void tl_add(tl_t *x, tl_t y) {
  for (size_t i = 0; i < (size_t)x->c * x->h * x->w; i++) x->d[i] += y.d[i];
}

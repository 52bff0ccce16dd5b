/* onnx_import_ops.c — one handler per ONNX operator the importer accepts
 * (the list and the rules in onnx_import.h). A handler reads its node's
 * inputs and attributes through the helpers of onnx_import.c, checks every
 * shape and attribute against what EdgeDI runs, appends layers, and
 * defines the node's output value. It says why it refuses a node; the
 * caller adds nothing but the node's name.
 *
 * Layouts: ONNX weights are OIHW and [K][N] (MatMul) or [N][K] (Gemm,
 * transB = 1); layers take OHWI and [out][in]. Batch norm is folded to
 * y = x * scale + shift here, in double then rounded, as PyTorch's own
 * folding does in float.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/onnx_internal.h"

#define T_FLOAT ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define T_INT64 ONNX__TENSOR_PROTO__DATA_TYPE__INT64

enum { OPS_STR_BYTES = 96 };

static const char *dstr(const onnx_dims *d, char buf[OPS_STR_BYTES]) {
  return onnx_dims_str(d, buf, OPS_STR_BYTES);
}

static onnx_dims dims4(int64_t a, int64_t b, int64_t c, int64_t d) {
  onnx_dims r = {4, {a, b, c, d}};
  return r;
}

static onnx_dims layer_dims(onnx_ctx *c, int l) {
  model_shape s = model_tensor_shape(c->m, l);
  return dims4(1, s.c, s.h, s.w);
}

static err_code need_spatial(onnx_ctx *c, const onnx_value *x, model_shape *s,
                             err *e) {
  if (onnx_spatial_view(c, x, s)) return ERR_OK;
  char b[OPS_STR_BYTES];
  return onnx_fail(c, e, ERR_UNSUPPORTED,
                   "input '%.80s' has shape %s; an [N,C,H,W] tensor is needed",
                   x->name, dstr(&x->dims, b));
}

/* The 2 ints of a spatial attribute (strides, dilations, kernel_shape) or
 * `def` for both when absent; each in [lo, ONNX_MAX_WINDOW]. */
static err_code attr_pair(onnx_ctx *c, const char *name, int def, int lo,
                          int out[2], bool *given, err *e) {
  int64_t v[2];
  int n;
  err_code rc = onnx_attr_ints(c, name, v, 2, &n, e);
  if (rc != ERR_OK) return rc;
  if (given) *given = n >= 0;
  if (n < 0) {
    out[0] = out[1] = def;
    return ERR_OK;
  }
  if (n != 2)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "attribute '%s' has %d values; EdgeDI runs 2-D windows",
                     name, n);
  for (int i = 0; i < 2; i++) {
    if (v[i] < lo || v[i] > ONNX_MAX_WINDOW)
      return onnx_fail(c, e, ERR_INVALID, "attribute '%s' is [%lld,%lld]",
                       name, (long long)v[0], (long long)v[1]);
    out[i] = (int)v[i];
  }
  return ERR_OK;
}

/* Window geometry shared by Conv and the pools: strides, dilations (1
 * only), pads (top, left, bottom, right) after auto_pad, on an h x w input
 * with a kh x kw kernel. */
static err_code window_attrs(onnx_ctx *c, int h, int w, int kh, int kw,
                             int stride[2], int pad[4], err *e) {
  int dil[2];
  err_code rc = attr_pair(c, "strides", 1, 1, stride, NULL, e);
  if (rc == ERR_OK) rc = attr_pair(c, "dilations", 1, 1, dil, NULL, e);
  if (rc != ERR_OK) return rc;
  if (dil[0] != 1 || dil[1] != 1)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "dilations [%d,%d]: EdgeDI runs dilation 1 only", dil[0],
                     dil[1]);
  int64_t p[4] = {0, 0, 0, 0};
  int n;
  rc = onnx_attr_ints(c, "pads", p, 4, &n, e);
  if (rc != ERR_OK) return rc;
  if (n >= 0 && n != 4)
    return onnx_fail(c, e, ERR_UNSUPPORTED, "attribute 'pads' has %d values, "
                     "4 expected", n);
  for (int i = 0; i < 4; i++) {
    if (p[i] < 0 || p[i] > ONNX_MAX_WINDOW)
      return onnx_fail(c, e, p[i] < 0 ? ERR_UNSUPPORTED : ERR_INVALID,
                       "pads [%lld,%lld,%lld,%lld]: EdgeDI pads by 0 to %d",
                       (long long)p[0], (long long)p[1], (long long)p[2],
                       (long long)p[3], ONNX_MAX_WINDOW);
    pad[i] = (int)p[i];
  }
  char mode[32];
  rc = onnx_attr_string(c, "auto_pad", "NOTSET", mode, sizeof mode, e);
  if (rc != ERR_OK) return rc;
  if (strcmp(mode, "VALID") == 0) {
    pad[0] = pad[1] = pad[2] = pad[3] = 0;
  } else if (strcmp(mode, "SAME_UPPER") == 0 ||
             strcmp(mode, "SAME_LOWER") == 0) {
    const int in[2] = {h, w}, k[2] = {kh, kw};
    for (int a = 0; a < 2; a++) {
      int out = (in[a] + stride[a] - 1) / stride[a];
      int total = (out - 1) * stride[a] + k[a] - in[a];
      if (total < 0) total = 0;
      int small = total / 2, big = total - small;
      bool upper = mode[5] == 'U';
      pad[a] = upper ? small : big;     /* top or left */
      pad[a + 2] = upper ? big : small; /* bottom or right */
    }
  } else if (strcmp(mode, "NOTSET") != 0 && mode[0]) {
    return onnx_fail(c, e, ERR_UNSUPPORTED, "auto_pad '%s'", mode);
  }
  return ERR_OK;
}

/* ---- Conv ---------------------------------------------------------------- */

/* A 1x1 Conv without bias on a pending mean, square: the FE's W * mean(x)
 * written as a convolution (as squeeze-and-excitation code does). */
static bool conv_is_fe_logit(const onnx_value *x, const onnx_value *w,
                             const onnx_value *b, int group, const int pad[4]) {
  return x->kind == ONNX_MEAN && !b && group == 1 && w->dims.d[2] == 1 &&
         w->dims.d[3] == 1 && w->dims.d[0] == w->dims.d[1] &&
         x->dims.rank == 4 && x->dims.d[1] == w->dims.d[1] && !pad[0] &&
         !pad[1] && !pad[2] && !pad[3];
}

static err_code op_conv(onnx_ctx *c, err *e) {
  onnx_value *x, *w, *b;
  err_code rc = onnx_in(c, 0, true, &x, e);
  if (rc == ERR_OK) rc = onnx_const_in(c, 1, true, T_FLOAT, &w, e);
  if (rc == ERR_OK) rc = onnx_const_in(c, 2, false, T_FLOAT, &b, e);
  if (rc != ERR_OK) return rc;
  char buf[OPS_STR_BYTES];
  if (w->dims.rank != 4 || w->n == 0)
    return onnx_fail(c, e, ERR_INVALID,
                     "weight '%.80s' has shape %s; [O, C/group, kH, kW] "
                     "expected",
                     w->name, dstr(&w->dims, buf));
  int64_t o = w->dims.d[0], ipg = w->dims.d[1], kh = w->dims.d[2],
          kw = w->dims.d[3], group;
  rc = onnx_attr_int(c, "group", 1, &group, e);
  if (rc != ERR_OK) return rc;
  int kernel[2], stride[2], pad[4];
  bool given;
  rc = attr_pair(c, "kernel_shape", 1, 1, kernel, &given, e);
  if (rc != ERR_OK) return rc;
  if (given && (kernel[0] != kh || kernel[1] != kw))
    return onnx_fail(c, e, ERR_INVALID,
                     "kernel_shape [%d,%d] differs from weight '%.80s' %s",
                     kernel[0], kernel[1], w->name, dstr(&w->dims, buf));
  if (kh > ONNX_MAX_WINDOW || kw > ONNX_MAX_WINDOW)
    return onnx_fail(c, e, ERR_UNSUPPORTED, "kernel %lldx%lld too large",
                     (long long)kh, (long long)kw);
  /* The input's size before this conv's own padding: a pending Pad's is
   * added to it, a pending mean is 1x1. */
  int extra[4] = {0, 0, 0, 0};
  model_shape s;
  if (x->kind == ONNX_PADDED) {
    memcpy(extra, x->pad, sizeof extra);
    s = model_tensor_shape(c->m, x->layer);
  } else if (x->kind == ONNX_MEAN && x->dims.rank == 4) {
    s = (model_shape){1, 1, (int)x->dims.d[1]};
  } else if ((rc = onnx_materialize(c, x, e)) != ERR_OK ||
             (rc = need_spatial(c, x, &s, e)) != ERR_OK) {
    return rc;
  }
  int h = s.h + extra[0] + extra[2], wd = s.w + extra[1] + extra[3];
  rc = window_attrs(c, h, wd, (int)kh, (int)kw, stride, pad, e);
  if (rc != ERR_OK) return rc;
  if (b && (b->dims.rank != 1 || b->n != (size_t)o))
    return onnx_fail(c, e, ERR_INVALID, "bias '%.80s' has shape %s, [%lld] "
                     "expected", b->name, dstr(&b->dims, buf), (long long)o);

  if (conv_is_fe_logit(x, w, b, (int)group, pad)) {
    onnx_value v = onnx_alias(x, &x->dims);
    v.kind = ONNX_LOGIT;
    v.w = malloc(w->n * sizeof(float));
    if (!v.w) return onnx_fail(c, e, ERR_NOMEM, "out of memory");
    memcpy(v.w, w->f, w->n * sizeof(float));
    v.owns_w = true;
    rc = onnx_define(c, v, e);
    if (rc != ERR_OK) free(v.w);
    return rc;
  }
  if (x->kind == ONNX_MEAN && ((rc = onnx_materialize(c, x, e)) != ERR_OK ||
                               (rc = need_spatial(c, x, &s, e)) != ERR_OK))
    return rc;
  if (group < 1 || group > s.c || s.c % group || o % group ||
      ipg * group != s.c)
    return onnx_fail(c, e, ERR_SHAPE,
                     "weight '%.80s' has shape %s: with group %lld it needs "
                     "%lld input channels per group, the input has %d "
                     "channels",
                     w->name, dstr(&w->dims, buf), (long long)group,
                     group > 0 ? (long long)(s.c / group) : 0LL, s.c);
  int l = onnx_adopt(
      c,
      model_add_conv_ex(c->m, x->layer, (int)o, (int)kh, (int)kw, stride[0],
                        stride[1], pad[0] + extra[0], pad[1] + extra[1],
                        pad[2] + extra[2], pad[3] + extra[3], (int)group,
                        b != NULL, e),
      e);
  if (l < 0) return e->code;
  model_layer *L = &c->m->layers[l];
  for (int64_t oc = 0; oc < o; oc++)
    for (int64_t i = 0; i < ipg; i++)
      for (int64_t y = 0; y < kh; y++)
        for (int64_t xx = 0; xx < kw; xx++)
          L->weights[((oc * kh + y) * kw + xx) * ipg + i] =
              w->f[((oc * ipg + i) * kh + y) * kw + xx];
  if (b) memcpy(L->bias, b->f, (size_t)o * sizeof(float));
  onnx_dims d = layer_dims(c, l);
  return onnx_define_layer(c, l, &d, e);
}

/* ---- BatchNormalization, Relu -------------------------------------------- */

/* The channels of a tensor for a per-channel operator: axis 1 of a spatial
 * view or of a flat [1, C]. */
static err_code channels_of(onnx_ctx *c, const onnx_value *x, int *ch,
                            err *e) {
  model_shape s = onnx_value_shape(c, x);
  if (onnx_spatial_view(c, x, NULL) ||
      (x->dims.rank == 2 && x->dims.d[0] == 1 && x->dims.d[1] == s.c)) {
    *ch = s.c;
    return ERR_OK;
  }
  char b[OPS_STR_BYTES];
  return onnx_fail(c, e, ERR_UNSUPPORTED,
                   "input '%.80s' has shape %s; [N,C,H,W] or [N,C] expected",
                   x->name, dstr(&x->dims, b));
}

static err_code op_batchnorm(onnx_ctx *c, err *e) {
  onnx_value *x, *p[4];
  static const char *const role[4] = {"scale", "B", "mean", "var"};
  err_code rc = onnx_tensor_in(c, 0, &x, e);
  for (int k = 0; k < 4 && rc == ERR_OK; k++)
    rc = onnx_const_in(c, k + 1, true, T_FLOAT, &p[k], e);
  if (rc != ERR_OK) return rc;
  int ch = 0;
  rc = channels_of(c, x, &ch, e);
  if (rc != ERR_OK) return rc;
  for (int k = 0; k < 4; k++)
    if (p[k]->n != (size_t)ch || p[k]->dims.rank != 1)
      return onnx_fail(c, e, ERR_INVALID,
                       "%s '%.80s' holds %zu values for %d channels", role[k],
                       p[k]->name, p[k]->n, ch);
  int64_t training;
  float eps;
  rc = onnx_attr_int(c, "training_mode", 0, &training, e);
  if (rc == ERR_OK) rc = onnx_attr_float(c, "epsilon", 1e-5f, &eps, e);
  if (rc != ERR_OK) return rc;
  if (training)
    return onnx_fail(c, e, ERR_UNSUPPORTED, "training_mode is set; export the "
                     "model in eval() mode");
  int l = onnx_adopt(c, model_add_bn(c->m, x->layer, e), e);
  if (l < 0) return e->code;
  model_layer *L = &c->m->layers[l];
  for (int k = 0; k < ch; k++) {
    double var = (double)p[3]->f[k] + eps;
    if (!(var > 0) || !isfinite(var))
      return onnx_fail(c, e, ERR_INVALID,
                       "variance + epsilon of channel %d is %g; it must be "
                       "positive", k, var);
    double scale = p[0]->f[k] / sqrt(var);
    L->weights[k] = (float)scale;
    L->bias[k] = (float)(p[1]->f[k] - p[2]->f[k] * scale);
  }
  return onnx_define_layer(c, l, &x->dims, e);
}

static err_code op_relu(onnx_ctx *c, err *e) {
  onnx_value *x;
  err_code rc = onnx_tensor_in(c, 0, &x, e);
  if (rc != ERR_OK) return rc;
  int l = onnx_adopt(c, model_add_relu(c->m, x->layer, e), e);
  return onnx_define_layer(c, l, &x->dims, e);
}

/* ---- pools --------------------------------------------------------------- */

/* Output length of a pooling window the ONNX way with ceil_mode = 1: a
 * window must start inside the input or its leading padding. */
static int ceil_out(int in, int pa, int pb, int k, int s) {
  int span = in + pa + pb - k;
  if (span < 0) return 0;
  int n = (span + s - 1) / s + 1;
  if ((n - 1) * s >= in + pa) n--;
  return n;
}

static err_code op_pool(onnx_ctx *c, err *e) {
  bool is_max = strcmp(c->node->op_type, "MaxPool") == 0;
  onnx_value *x;
  model_shape s;
  err_code rc = onnx_tensor_in(c, 0, &x, e);
  if (rc == ERR_OK) rc = need_spatial(c, x, &s, e);
  if (rc != ERR_OK) return rc;
  int kernel[2], stride[2], pad[4];
  bool given;
  rc = attr_pair(c, "kernel_shape", 1, 1, kernel, &given, e);
  if (rc != ERR_OK) return rc;
  if (!given)
    return onnx_fail(c, e, ERR_INVALID, "attribute 'kernel_shape' is missing");
  rc = window_attrs(c, s.h, s.w, kernel[0], kernel[1], stride, pad, e);
  int64_t ceil_mode, storage, count_pad;
  if (rc == ERR_OK) rc = onnx_attr_int(c, "ceil_mode", 0, &ceil_mode, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "storage_order", 0, &storage, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "count_include_pad", 0, &count_pad, e);
  if (rc != ERR_OK) return rc;
  bool padded = pad[0] || pad[1] || pad[2] || pad[3];
  if (!is_max && count_pad && padded)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "count_include_pad = 1 with padding: EdgeDI's average "
                     "pool leaves the padding out of the count");
  if (storage)
    return onnx_fail(c, e, ERR_UNSUPPORTED, "storage_order = %lld",
                     (long long)storage);
  if (ceil_mode) {
    /* Only where rounding up changes nothing. */
    int fh = (s.h + pad[0] + pad[2] - kernel[0]) / stride[0] + 1;
    int fw = (s.w + pad[1] + pad[3] - kernel[1]) / stride[1] + 1;
    if (ceil_out(s.h, pad[0], pad[2], kernel[0], stride[0]) != fh ||
        ceil_out(s.w, pad[1], pad[3], kernel[1], stride[1]) != fw)
      return onnx_fail(c, e, ERR_UNSUPPORTED,
                       "ceil_mode = 1 adds a partial window on this %dx%d "
                       "input; EdgeDI pools with floor",
                       s.h, s.w);
  }
  bool square = kernel[0] == kernel[1] && stride[0] == stride[1] &&
                pad[0] == pad[1] && pad[0] == pad[2] && pad[0] == pad[3];
  int k0 = square ? kernel[0] : 1, s0 = square ? stride[0] : 1,
      p0 = square ? pad[0] : 0;
  int l = onnx_adopt(c, is_max ? model_add_maxpool(c->m, x->layer, k0, s0, p0, e)
                               : model_add_avgpool(c->m, x->layer, k0, s0, p0, e),
                     e);
  if (l < 0) return e->code;
  if (!square) {
    /* Added as 1x1 so any geometry fits; the real one is checked by
     * model_finalize, which re-infers every shape. */
    model_layer *L = &c->m->layers[l];
    L->kernel_h = kernel[0];
    L->kernel_w = kernel[1];
    L->stride_h = stride[0];
    L->stride_w = stride[1];
    L->pad_top = pad[0];
    L->pad_left = pad[1];
    L->pad_bottom = pad[2];
    L->pad_right = pad[3];
    rc = model_finalize(c->m, e);
    if (rc != ERR_OK) return onnx_fail(c, e, rc, "%s", e->msg);
  }
  onnx_dims d = layer_dims(c, l);
  return onnx_define_layer(c, l, &d, e);
}

/* GlobalAveragePool and ReduceMean over H, W: pending (see onnx_internal.h). */
static err_code define_mean(onnx_ctx *c, onnx_value *x, bool keepdims,
                            err *e) {
  onnx_dims d = keepdims ? dims4(1, x->dims.d[1], 1, 1)
                         : (onnx_dims){2, {1, x->dims.d[1]}};
  onnx_value v = onnx_alias(x, &d);
  v.kind = ONNX_MEAN;
  return onnx_define(c, v, e);
}

static err_code op_global_avgpool(onnx_ctx *c, err *e) {
  onnx_value *x;
  err_code rc = onnx_tensor_in(c, 0, &x, e);
  if (rc == ERR_OK) rc = need_spatial(c, x, NULL, e);
  if (rc != ERR_OK) return rc;
  return define_mean(c, x, true, e);
}

static err_code op_reduce_mean(onnx_ctx *c, err *e) {
  onnx_value *x;
  err_code rc = onnx_tensor_in(c, 0, &x, e);
  if (rc == ERR_OK) rc = need_spatial(c, x, NULL, e);
  int64_t axes[ONNX_MAX_RANK], keepdims;
  int n;
  if (rc == ERR_OK) rc = onnx_axes(c, 1, axes, &n, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "keepdims", 1, &keepdims, e);
  if (rc != ERR_OK) return rc;
  unsigned set;
  if (n < 0 || !onnx_axis_set(axes, n, 4, &set) || set != 0xCu)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "EdgeDI averages over H and W only (axes 2 and 3)");
  return define_mean(c, x, keepdims != 0, e);
}

/* ---- Gemm, MatMul, Sigmoid ------------------------------------------------ */

/* An fc from the [1, K] value a (pending mean, or a flat tensor) with
 * weights w [n][k] (out, in; alpha applied) and bias (n values or NULL). A
 * square bias-free fc on a pending mean stays pending: it may be FE's W. */
static err_code define_fc(onnx_ctx *c, onnx_value *a, int64_t n, float *w,
                          const float *bias, const onnx_dims *out, err *e) {
  int64_t k = onnx_dims_elems(&a->dims);
  if (a->kind == ONNX_MEAN && !bias && n == k) {
    onnx_value v = onnx_alias(a, out);
    v.kind = ONNX_LOGIT;
    v.w = w;
    v.owns_w = true;
    err_code rc = onnx_define(c, v, e);
    if (rc != ERR_OK) free(w);
    return rc;
  }
  err_code rc = onnx_materialize(c, a, e);
  int l = MODEL_ADD_FAILED;
  if (rc == ERR_OK)
    l = onnx_adopt(c, model_add_fc(c->m, a->layer, (int)n, bias != NULL, e), e);
  if (l >= 0) {
    model_layer *L = &c->m->layers[l];
    memcpy(L->weights, w, (size_t)(n * k) * sizeof(float));
    if (bias) memcpy(L->bias, bias, (size_t)n * sizeof(float));
  }
  free(w);
  if (rc != ERR_OK) return rc;
  return onnx_define_layer(c, l, out, e);
}

/* A's K for Gemm and MatMul: A is [1, K] (or [K] for MatMul) and flat. */
static err_code matmul_k(onnx_ctx *c, onnx_value *a, bool allow_1d,
                         int64_t *k, err *e) {
  if (a->kind != ONNX_MEAN) {
    err_code rc = onnx_materialize(c, a, e);
    if (rc != ERR_OK) return rc;
  }
  model_shape s = a->kind == ONNX_MEAN ? (model_shape){1, 1, 1}
                                       : onnx_value_shape(c, a);
  bool ok = s.h == 1 && s.w == 1 &&
            ((a->dims.rank == 2 && a->dims.d[0] == 1) ||
             (allow_1d && a->dims.rank == 1));
  char b[OPS_STR_BYTES];
  if (!ok)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "input A '%.80s' has shape %s; EdgeDI multiplies [1, K] "
                     "rows (flatten first)",
                     a->name, dstr(&a->dims, b));
  *k = a->dims.d[a->dims.rank - 1];
  return ERR_OK;
}

static err_code op_gemm(onnx_ctx *c, err *e) {
  onnx_value *a, *b, *bias;
  int64_t trans_a, trans_b, k;
  float alpha, beta;
  err_code rc = onnx_in(c, 0, true, &a, e);
  if (rc == ERR_OK) rc = onnx_const_in(c, 1, true, T_FLOAT, &b, e);
  if (rc == ERR_OK) rc = onnx_const_in(c, 2, false, T_FLOAT, &bias, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "transA", 0, &trans_a, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "transB", 0, &trans_b, e);
  if (rc == ERR_OK) rc = onnx_attr_float(c, "alpha", 1.0f, &alpha, e);
  if (rc == ERR_OK) rc = onnx_attr_float(c, "beta", 1.0f, &beta, e);
  if (rc == ERR_OK && trans_a)
    rc = onnx_fail(c, e, ERR_UNSUPPORTED, "transA = 1");
  if (rc == ERR_OK) rc = matmul_k(c, a, false, &k, e);
  if (rc != ERR_OK) return rc;
  char buf[OPS_STR_BYTES];
  if (b->dims.rank != 2 || b->dims.d[trans_b ? 1 : 0] != k || b->n == 0)
    return onnx_fail(c, e, ERR_SHAPE,
                     "weight B '%.80s' has shape %s; with transB = %lld it "
                     "must be %s for an input of %lld features",
                     b->name, dstr(&b->dims, buf), (long long)trans_b,
                     trans_b ? "[N, K]" : "[K, N]", (long long)k);
  int64_t n = b->dims.d[trans_b ? 0 : 1];
  if (bias && !(bias->n == (size_t)n || bias->n == 1))
    return onnx_fail(c, e, ERR_SHAPE, "bias C '%.80s' has shape %s; [%lld] "
                     "expected", bias->name, dstr(&bias->dims, buf),
                     (long long)n);
  float *w = malloc((size_t)(n * k) * sizeof(float));
  float *bv = bias ? malloc((size_t)n * sizeof(float)) : NULL;
  if (!w || (bias && !bv)) {
    free(w);
    free(bv);
    return onnx_fail(c, e, ERR_NOMEM, "out of memory");
  }
  for (int64_t o = 0; o < n; o++) {
    for (int64_t i = 0; i < k; i++)
      w[o * k + i] = alpha * b->f[trans_b ? o * k + i : i * n + o];
    if (bv) bv[o] = beta * bias->f[bias->n == 1 ? 0 : o];
  }
  onnx_dims out = {2, {1, n}};
  rc = define_fc(c, a, n, w, bv, &out, e);
  free(bv);
  return rc;
}

static err_code op_matmul(onnx_ctx *c, err *e) {
  onnx_value *a, *b;
  int64_t k;
  err_code rc = onnx_in(c, 0, true, &a, e);
  if (rc == ERR_OK) rc = onnx_const_in(c, 1, true, T_FLOAT, &b, e);
  if (rc == ERR_OK) rc = matmul_k(c, a, true, &k, e);
  if (rc != ERR_OK) return rc;
  char buf[OPS_STR_BYTES];
  if (b->dims.rank != 2 || b->dims.d[0] != k || b->n == 0)
    return onnx_fail(c, e, ERR_SHAPE, "weight '%.80s' has shape %s; [%lld, N] "
                     "expected", b->name, dstr(&b->dims, buf), (long long)k);
  int64_t n = b->dims.d[1];
  float *w = malloc((size_t)(n * k) * sizeof(float));
  if (!w) return onnx_fail(c, e, ERR_NOMEM, "out of memory");
  for (int64_t o = 0; o < n; o++)
    for (int64_t i = 0; i < k; i++) w[o * k + i] = b->f[i * n + o];
  onnx_dims out = a->dims;
  out.d[out.rank - 1] = n;
  return define_fc(c, a, n, w, NULL, &out, e);
}

static err_code op_sigmoid(onnx_ctx *c, err *e) {
  onnx_value *v;
  err_code rc = onnx_in(c, 0, true, &v, e);
  if (rc != ERR_OK) return rc;
  if (v->kind != ONNX_LOGIT)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "EdgeDI runs Sigmoid only as the gate of a feature "
                     "enhancement, x * sigmoid(W * mean(x)); its input "
                     "'%.80s' is not W * mean(x)",
                     v->name);
  onnx_value g = onnx_alias(v, &v->dims);
  g.kind = ONNX_GATE;
  return onnx_define(c, g, e);
}

/* ---- Mul, Add --------------------------------------------------------------- */

/* How a constant (or gate) of dims k broadcasts over tensor x: true with
 * *count 1 (one value for all) or the channel count (one per channel). */
static bool per_channel(onnx_ctx *c, const onnx_value *x, const onnx_dims *k,
                        int *count) {
  model_shape s = onnx_value_shape(c, x);
  int axis = -1; /* the channel axis of x's logical shape */
  if (onnx_spatial_view(c, x, NULL)) {
    axis = 1;
  } else {
    for (int a = 0; a < x->dims.rank; a++)
      if (x->dims.d[a] != 1) axis = axis < 0 && x->dims.d[a] == s.c ? a : -2;
  }
  if (k->rank > x->dims.rank) return false;
  int64_t n = 1;
  for (int j = 0; j < k->rank; j++) {
    int a = x->dims.rank - k->rank + j;
    if (k->d[j] == 1) continue;
    if (a != axis || k->d[j] != x->dims.d[a]) return false;
    n *= k->d[j];
  }
  *count = (int)n;
  return n == 1 || n == s.c;
}

static err_code broadcast_error(onnx_ctx *c, const onnx_value *x,
                                const onnx_dims *k, err *e) {
  char a[OPS_STR_BYTES], b[OPS_STR_BYTES];
  return onnx_fail(c, e, ERR_UNSUPPORTED,
                   "a %s operand over '%.80s' %s: EdgeDI broadcasts only one "
                   "value or one per channel",
                   dstr(k, a), x->name, dstr(&x->dims, b));
}

/* x * scale + shift per channel, as a batch-norm layer. Its weights come
 * from one constant broadcast over the channels, so the channel count, not
 * the file, sizes them: it is bounded on its own. */
static err_code add_affine(onnx_ctx *c, onnx_value *x, const float *scale,
                           const float *shift, int count, err *e) {
  model_shape s = onnx_value_shape(c, x);
  if (s.c > ONNX_MAX_CHANNELS)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "a per-channel constant over %d channels (at most %d)",
                     s.c, ONNX_MAX_CHANNELS);
  int l = onnx_adopt(c, model_add_bn(c->m, x->layer, e), e);
  if (l < 0) return e->code;
  model_layer *L = &c->m->layers[l];
  for (size_t k = 0; k < L->n_weights; k++) {
    L->weights[k] = scale ? scale[count == 1 ? 0 : k] : 1.0f;
    L->bias[k] = shift ? shift[count == 1 ? 0 : k] : 0.0f;
  }
  return onnx_define_layer(c, l, &x->dims, e);
}

static err_code op_mul(onnx_ctx *c, err *e) {
  onnx_value *p[2];
  err_code rc = onnx_in(c, 0, true, &p[0], e);
  if (rc == ERR_OK) rc = onnx_in(c, 1, true, &p[1], e);
  if (rc != ERR_OK) return rc;
  int gi = p[0]->kind == ONNX_GATE ? 0 : p[1]->kind == ONNX_GATE ? 1 : -1;
  int ki = p[0]->kind == ONNX_CONST ? 0 : p[1]->kind == ONNX_CONST ? 1 : -1;
  int count;
  if (gi >= 0) {
    onnx_value *g = p[gi], *x = p[1 - gi];
    if ((rc = onnx_materialize(c, x, e)) != ERR_OK) return rc;
    if (x->layer != g->layer || !onnx_spatial_view(c, x, NULL))
      return onnx_fail(c, e, ERR_UNSUPPORTED,
                       "the gate sigmoid(W * mean(x)) multiplies '%.80s', "
                       "which is not its x",
                       x->name);
    if (!per_channel(c, x, &g->dims, &count) || count != x->dims.d[1])
      return broadcast_error(c, x, &g->dims, e);
    int l = onnx_adopt(c, model_add_fe(c->m, x->layer, e), e);
    if (l < 0) return e->code;
    memcpy(c->m->layers[l].weights, g->w,
           (size_t)count * count * sizeof(float));
    return onnx_define_layer(c, l, &x->dims, e);
  }
  if (ki < 0)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "a product of two computed tensors (EdgeDI multiplies by "
                     "constants and by the feature-enhancement gate)");
  onnx_value *k = p[ki], *x = p[1 - ki];
  if (k->elem != T_FLOAT)
    return onnx_fail(c, e, ERR_INVALID, "constant '%.80s' is not float32",
                     k->name);
  if ((rc = onnx_materialize(c, x, e)) != ERR_OK) return rc;
  if (!per_channel(c, x, &k->dims, &count)) return broadcast_error(c, x, &k->dims, e);
  return add_affine(c, x, k->f, NULL, count, e);
}

/* Folds a constant added to x into x's layer when nothing else reads x and
 * the sum stays bit-exact: an fc without bias, or a scale-only batch norm
 * (what MatMul + Add and Mul + Add export to). */
static bool fold_shift(onnx_ctx *c, onnx_value *x, const float *k, int count) {
  if (!x->owner || x->uses != 1 || x->layer < 0) return false;
  model_layer *L = &c->m->layers[x->layer];
  if (L->relu) return false;
  if (L->op == MODEL_OP_BN) {
    for (size_t i = 0; i < L->n_bias; i++)
      if (L->bias[i] != 0.0f) return false;
  } else if (L->op != MODEL_OP_FC || L->bias) {
    return false;
  } else {
    L->bias = calloc((size_t)L->out_channels, sizeof(float));
    if (!L->bias) return false;
    L->n_bias = (size_t)L->out_channels;
    c->total_weights += L->n_bias;
  }
  for (size_t i = 0; i < L->n_bias; i++) L->bias[i] = k[count == 1 ? 0 : i];
  return true;
}

static err_code op_add(onnx_ctx *c, err *e) {
  onnx_value *p[2];
  err_code rc = onnx_in(c, 0, true, &p[0], e);
  if (rc == ERR_OK) rc = onnx_in(c, 1, true, &p[1], e);
  if (rc != ERR_OK) return rc;
  int ki = p[0]->kind == ONNX_CONST ? 0 : p[1]->kind == ONNX_CONST ? 1 : -1;
  char a[OPS_STR_BYTES], b[OPS_STR_BYTES];
  if (ki < 0) {
    for (int i = 0; i < 2; i++)
      if ((rc = onnx_materialize(c, p[i], e)) != ERR_OK) return rc;
    model_shape s0 = onnx_value_shape(c, p[0]), s1 = onnx_value_shape(c, p[1]);
    if (!onnx_same_dims(&p[0]->dims, &p[1]->dims) || s0.h != s1.h ||
        s0.w != s1.w || s0.c != s1.c)
      return onnx_fail(c, e, ERR_SHAPE,
                       "adding %s and %s: EdgeDI adds tensors of one shape",
                       dstr(&p[0]->dims, a), dstr(&p[1]->dims, b));
    int l = onnx_adopt(c, model_add_add(c->m, p[0]->layer, p[1]->layer, e), e);
    return onnx_define_layer(c, l, &p[0]->dims, e);
  }
  onnx_value *k = p[ki], *x = p[1 - ki];
  if (k->elem != T_FLOAT)
    return onnx_fail(c, e, ERR_INVALID, "constant '%.80s' is not float32",
                     k->name);
  if ((rc = onnx_materialize(c, x, e)) != ERR_OK) return rc;
  int count;
  if (!per_channel(c, x, &k->dims, &count)) return broadcast_error(c, x, &k->dims, e);
  if (fold_shift(c, x, k->f, count)) {
    onnx_value v = onnx_layer_value(x->layer, &x->dims);
    return onnx_define(c, v, e);
  }
  return add_affine(c, x, NULL, k->f, count, e);
}

/* ---- Pad -------------------------------------------------------------------- */

static err_code op_pad(onnx_ctx *c, err *e) {
  onnx_value *x, *pads_in, *value, *axes;
  err_code rc = onnx_in(c, 0, true, &x, e);
  if (rc == ERR_OK) rc = onnx_const_in(c, 1, false, T_INT64, &pads_in, e);
  if (rc == ERR_OK) rc = onnx_const_in(c, 2, false, T_FLOAT, &value, e);
  if (rc == ERR_OK) rc = onnx_in(c, 3, false, &axes, e);
  if (rc != ERR_OK) return rc;
  char mode[32];
  float attr_value;
  rc = onnx_attr_string(c, "mode", "constant", mode, sizeof mode, e);
  if (rc == ERR_OK) rc = onnx_attr_float(c, "value", 0.0f, &attr_value, e);
  if (rc != ERR_OK) return rc;
  if (strcmp(mode, "constant") != 0)
    return onnx_fail(c, e, ERR_UNSUPPORTED, "pad mode '%s' (EdgeDI pads with "
                     "zeros)", mode);
  if (axes)
    return onnx_fail(c, e, ERR_UNSUPPORTED, "Pad with axes");
  if (value && value->n > 1)
    return onnx_fail(c, e, ERR_INVALID, "constant_value holds %zu values",
                     value->n);
  float fill = value ? (value->n ? value->f[0] : 0.0f) : attr_value;
  if (fill != 0.0f)
    return onnx_fail(c, e, ERR_UNSUPPORTED, "padding with %g; EdgeDI pads "
                     "with zeros", fill);
  int64_t p[8];
  int n = -1;
  if (pads_in) {
    n = pads_in->n <= 8 ? (int)pads_in->n : 9;
    if (n <= 8) memcpy(p, pads_in->i, (size_t)n * sizeof(int64_t));
  } else if ((rc = onnx_attr_ints(c, "pads", p, 8, &n, e)) != ERR_OK) {
    return rc;
  }
  if (n != 8)
    return onnx_fail(c, e, ERR_UNSUPPORTED, "pads for %d dimensions; EdgeDI "
                     "pads [N,C,H,W] tensors", n < 0 ? 0 : n / 2);
  if (x->kind != ONNX_PADDED) {
    if ((rc = onnx_materialize(c, x, e)) != ERR_OK ||
        (rc = need_spatial(c, x, NULL, e)) != ERR_OK)
      return rc;
  }
  if (p[0] || p[1] || p[4] || p[5])
    return onnx_fail(c, e, ERR_UNSUPPORTED, "padding of the batch or channel "
                     "axis");
  static const int at[4] = {2, 3, 6, 7}; /* top, left, bottom, right */
  onnx_value v = onnx_alias(x, &x->dims);
  v.kind = ONNX_PADDED;
  if (x->kind != ONNX_PADDED) memset(v.pad, 0, sizeof v.pad);
  for (int k = 0; k < 4; k++) {
    if (p[at[k]] < 0 || p[at[k]] > ONNX_MAX_WINDOW ||
        v.pad[k] + p[at[k]] > ONNX_MAX_WINDOW)
      return onnx_fail(c, e, ERR_UNSUPPORTED, "pads of %lld (EdgeDI pads by 0 "
                       "to %d, and does not crop)",
                       (long long)p[at[k]], ONNX_MAX_WINDOW);
    v.pad[k] += (int)p[at[k]];
    v.dims.d[2 + (k & 1)] += p[at[k]];
  }
  /* A Pad of nothing (torch writes one before every AvgPool2d whose
   * count_include_pad is left at True) is just its input. */
  if (!v.pad[0] && !v.pad[1] && !v.pad[2] && !v.pad[3]) v.kind = ONNX_TENSOR;
  return onnx_define(c, v, e);
}

/* ---- the table ---------------------------------------------------------------- */

static const struct {
  const char *op;
  onnx_op_fn fn;
} op_table[] = {
    {"Add", op_add},
    {"AveragePool", op_pool},
    {"BatchNormalization", op_batchnorm},
    {"Cast", onnx_op_identity},
    {"Concat", onnx_op_concat},
    {"Constant", onnx_op_constant},
    {"Conv", op_conv},
    {"Dropout", onnx_op_identity},
    {"Flatten", onnx_op_flatten},
    {"Gather", onnx_op_gather},
    {"Gemm", op_gemm},
    {"GlobalAveragePool", op_global_avgpool},
    {"Identity", onnx_op_identity},
    {"MatMul", op_matmul},
    {"MaxPool", op_pool},
    {"Mul", op_mul},
    {"Pad", op_pad},
    {"ReduceMean", op_reduce_mean},
    {"Relu", op_relu},
    {"Reshape", onnx_op_reshape},
    {"Shape", onnx_op_shape},
    {"Sigmoid", op_sigmoid},
    {"Squeeze", onnx_op_squeeze},
    {"Unsqueeze", onnx_op_unsqueeze},
};

onnx_op_fn onnx_op_find(const char *op_type) {
  for (size_t k = 0; k < sizeof op_table / sizeof op_table[0]; k++)
    if (strcmp(op_table[k].op, op_type) == 0) return op_table[k].fn;
  return NULL;
}

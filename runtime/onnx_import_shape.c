/* onnx_import_shape.c — the importer's handlers that move no data: shape
 * operators (Flatten, Reshape, Squeeze, Unsqueeze), aliases (Identity,
 * Dropout, Cast to the same type), constants (Constant) and the constant
 * shape arithmetic a dynamic-batch `view` exports to (Shape, Gather,
 * Concat). The table that dispatches to them is onnx_import_ops.c's.
 *
 * What a reshape may do follows from the layouts (onnx_internal.h): flat
 * values reshape freely, [1,C,H,W] becomes [1,C*H*W] through a flatten
 * layer, and nothing else is EdgeDI's to lay out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/onnx_internal.h"

#define T_FLOAT ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define T_INT64 ONNX__TENSOR_PROTO__DATA_TYPE__INT64

enum { SHAPE_STR_BYTES = 96 };

static const char *dstr(const onnx_dims *d, char buf[SHAPE_STR_BYTES]) {
  return onnx_dims_str(d, buf, SHAPE_STR_BYTES);
}

/* Axes from input `i` (newer opsets) or the attribute "axes" (older). */
err_code onnx_axes(onnx_ctx *c, int i, int64_t *axes, int *n, err *e) {
  onnx_value *a;
  err_code rc = onnx_const_in(c, i, false, T_INT64, &a, e);
  if (rc != ERR_OK) return rc;
  if (!a) return onnx_attr_ints(c, "axes", axes, ONNX_MAX_RANK, n, e);
  if (a->n > ONNX_MAX_RANK || a->dims.rank > 1)
    return onnx_fail(c, e, ERR_INVALID, "axes '%.80s' has %zu values",
                     a->name, a->n);
  memcpy(axes, a->i, a->n * sizeof(int64_t));
  *n = (int)a->n;
  return ERR_OK;
}

/* Normalizes axes against `rank` into a bit set; false when one is out of
 * range or repeated. */
bool onnx_axis_set(const int64_t *axes, int n, int rank, unsigned *set) {
  *set = 0;
  for (int k = 0; k < n; k++) {
    int64_t a = axes[k] < 0 ? axes[k] + rank : axes[k];
    if (a < 0 || a >= rank || (*set & (1u << a))) return false;
    *set |= 1u << a;
  }
  return true;
}

/* ---- shape operators ------------------------------------------------------ */

/* Gives v the logical shape d: free between flat shapes; from [1,C,H,W] to
 * [1, C*H*W] a flatten layer. Flatten and Reshape make that layer even
 * for H = W = 1 (`flatten` set), so a graph EdgeDI exported comes back
 * layer for layer; Squeeze of [1,C,1,1] stays free. */
static err_code reshape_to(onnx_ctx *c, onnx_value *v, const onnx_dims *d,
                           bool flatten, err *e) {
  char a[SHAPE_STR_BYTES], b[SHAPE_STR_BYTES];
  if (onnx_dims_elems(d) != onnx_dims_elems(&v->dims))
    return onnx_fail(c, e, ERR_SHAPE, "cannot reshape %s (%lld values) to %s",
                     dstr(&v->dims, a), (long long)onnx_dims_elems(&v->dims),
                     dstr(d, b));
  if (v->kind == ONNX_PADDED)
    return onnx_materialize(c, v, e); /* refused, with the reason */
  if (v->kind != ONNX_TENSOR || onnx_same_dims(d, &v->dims))
    return onnx_define(c, onnx_alias(v, d), e);
  model_shape s = onnx_value_shape(c, v);
  bool to_flat = d->rank == 1 || (d->rank == 2 && d->d[0] == 1);
  bool spatial = onnx_spatial_view(c, v, NULL);
  if (to_flat && spatial && (flatten || s.h * s.w > 1)) {
    int l = onnx_adopt(c, model_add_flatten(c->m, v->layer, e), e);
    return onnx_define_layer(c, l, d, e);
  }
  if (s.h == 1 && s.w == 1) return onnx_define(c, onnx_alias(v, d), e);
  return onnx_fail(c, e, ERR_UNSUPPORTED,
                   "reshaping %s to %s: EdgeDI flattens an [N,C,H,W] tensor "
                   "only to [N, C*H*W]",
                   dstr(&v->dims, a), dstr(d, b));
}

err_code onnx_op_flatten(onnx_ctx *c, err *e) {
  onnx_value *v;
  int64_t axis;
  err_code rc = onnx_in(c, 0, true, &v, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "axis", 1, &axis, e);
  if (rc != ERR_OK) return rc;
  int r = v->dims.rank;
  if (axis < -r || axis > r)
    return onnx_fail(c, e, ERR_INVALID, "axis %lld of a rank-%d tensor",
                     (long long)axis, r);
  if (axis < 0) axis += r;
  onnx_dims d = {2, {1, 1}};
  for (int k = 0; k < r; k++) d.d[k < axis ? 0 : 1] *= v->dims.d[k];
  return reshape_to(c, v, &d, true, e);
}

err_code onnx_op_reshape(onnx_ctx *c, err *e) {
  onnx_value *v, *shape;
  int64_t allowzero;
  err_code rc = onnx_in(c, 0, true, &v, e);
  if (rc == ERR_OK) rc = onnx_const_in(c, 1, true, T_INT64, &shape, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "allowzero", 0, &allowzero, e);
  if (rc != ERR_OK) return rc;
  if (shape->n > ONNX_MAX_RANK || shape->dims.rank != 1)
    return onnx_fail(c, e, ERR_UNSUPPORTED, "shape '%.80s' has %zu values",
                     shape->name, shape->n);
  onnx_dims d = {(int)shape->n, {0}};
  int infer = -1;
  int64_t known = 1;
  for (int k = 0; k < d.rank; k++) {
    int64_t x = shape->i[k];
    if (x == 0 && !allowzero) {
      if (k >= v->dims.rank)
        return onnx_fail(c, e, ERR_SHAPE, "shape entry %d is 0 (copy) past "
                         "the input's rank %d", k, v->dims.rank);
      x = v->dims.d[k];
    }
    if (x == -1 && infer < 0) {
      infer = k;
      continue;
    }
    if (x < 1 || x > ONNX_MAX_TENSOR_ELEMS)
      return onnx_fail(c, e, ERR_SHAPE, "shape entry %d is %lld", k,
                       (long long)shape->i[k]);
    d.d[k] = x;
    known *= x;
    if (known > ONNX_MAX_TENSOR_ELEMS)
      return onnx_fail(c, e, ERR_SHAPE, "the shape holds too many values");
  }
  if (infer >= 0) d.d[infer] = onnx_dims_elems(&v->dims) / known;
  return reshape_to(c, v, &d, true, e);
}

err_code onnx_op_squeeze(onnx_ctx *c, err *e) {
  onnx_value *v;
  int64_t axes[ONNX_MAX_RANK];
  int n;
  err_code rc = onnx_in(c, 0, true, &v, e);
  if (rc == ERR_OK) rc = onnx_axes(c, 1, axes, &n, e);
  if (rc != ERR_OK) return rc;
  unsigned set = 0;
  if (n >= 0 && !onnx_axis_set(axes, n, v->dims.rank, &set))
    return onnx_fail(c, e, ERR_INVALID, "axes out of range or repeated");
  onnx_dims d = {0, {0}};
  for (int k = 0; k < v->dims.rank; k++) {
    bool drop = n < 0 ? v->dims.d[k] == 1 : (set >> k) & 1u;
    if (drop && v->dims.d[k] != 1)
      return onnx_fail(c, e, ERR_SHAPE, "axis %d has size %lld, not 1", k,
                       (long long)v->dims.d[k]);
    if (!drop) d.d[d.rank++] = v->dims.d[k];
  }
  return reshape_to(c, v, &d, false, e);
}

err_code onnx_op_unsqueeze(onnx_ctx *c, err *e) {
  onnx_value *v;
  int64_t axes[ONNX_MAX_RANK];
  int n;
  err_code rc = onnx_in(c, 0, true, &v, e);
  if (rc == ERR_OK) rc = onnx_axes(c, 1, axes, &n, e);
  if (rc != ERR_OK) return rc;
  int rank = v->dims.rank + (n > 0 ? n : 0);
  unsigned set;
  if (n < 1 || rank > ONNX_MAX_RANK || !onnx_axis_set(axes, n, rank, &set))
    return onnx_fail(c, e, ERR_INVALID, "axes missing, out of range or "
                     "repeated (output rank %d)", rank);
  onnx_dims d = {rank, {0}};
  for (int k = 0, from = 0; k < rank; k++)
    d.d[k] = (set >> k) & 1u ? 1 : v->dims.d[from++];
  return reshape_to(c, v, &d, false, e);
}

err_code onnx_op_identity(onnx_ctx *c, err *e) {
  onnx_value *v;
  err_code rc = onnx_in(c, 0, true, &v, e);
  if (rc != ERR_OK) return rc;
  if (strcmp(c->node->op_type, "Cast") == 0) {
    int64_t to;
    rc = onnx_attr_int(c, "to", 0, &to, e);
    if (rc != ERR_OK) return rc;
    int have = v->kind == ONNX_CONST ? v->elem : T_FLOAT;
    if (to != have)
      return onnx_fail(c, e, ERR_UNSUPPORTED,
                       "a Cast to data type %lld; EdgeDI computes in float32",
                       (long long)to);
  }
  return onnx_define(c, onnx_alias(v, &v->dims), e);
}

/* ---- constants and shape arithmetic ----------------------------------------- */

err_code onnx_op_constant(onnx_ctx *c, err *e) {
  const Onnx__AttributeProto *a = c->node->n_attribute == 1
                                      ? c->node->attribute[0] : NULL;
  if (!a || !a->name)
    return onnx_fail(c, e, ERR_INVALID, "a Constant needs exactly one "
                     "attribute");
  onnx_value v;
  memset(&v, 0, sizeof v);
  err_code rc;
  if (strcmp(a->name, "value") == 0 && a->t) {
    rc = onnx_decode_tensor(a->t, "its value", &v, e);
    if (rc != ERR_OK) return onnx_fail(c, e, rc, "%s", e->msg);
  } else if (strcmp(a->name, "value_int") == 0 ||
             strcmp(a->name, "value_ints") == 0) {
    bool one = a->name[9] == 0;
    onnx_dims d = {one ? 0 : 1, {(int64_t)a->n_ints}};
    if (!one && a->n_ints > ONNX_MAX_TENSOR_ELEMS)
      return onnx_fail(c, e, ERR_UNSUPPORTED, "too many values");
    rc = onnx_const_i64(c, one ? &a->i : a->ints, one ? 1 : a->n_ints, &d, &v, e);
    if (rc != ERR_OK) return rc;
  } else if (strcmp(a->name, "value_float") == 0 ||
             strcmp(a->name, "value_floats") == 0) {
    bool one = a->name[11] == 0;
    size_t n = one ? 1 : a->n_floats;
    if (n > ONNX_MAX_TENSOR_ELEMS)
      return onnx_fail(c, e, ERR_UNSUPPORTED, "too many values");
    v.f = malloc(n ? n * sizeof(float) : 1);
    if (!v.f) return onnx_fail(c, e, ERR_NOMEM, "out of memory");
    if (n) memcpy(v.f, one ? &a->f : a->floats, n * sizeof(float));
    v.kind = ONNX_CONST;
    v.elem = T_FLOAT;
    v.n = n;
    v.dims = (onnx_dims){one ? 0 : 1, {(int64_t)n}};
    v.owns_data = true;
  } else {
    return onnx_fail(c, e, ERR_UNSUPPORTED, "a Constant's '%.40s'", a->name);
  }
  rc = onnx_define(c, v, e);
  if (rc != ERR_OK) {
    free(v.f);
    free(v.i);
  }
  return rc;
}

/* Defines an int64 constant output. */
static err_code define_i64(onnx_ctx *c, const int64_t *vals, size_t n,
                           int rank, err *e) {
  onnx_dims d = {rank, {(int64_t)n}};
  onnx_value v;
  err_code rc = onnx_const_i64(c, vals, n, &d, &v, e);
  if (rc != ERR_OK) return rc;
  rc = onnx_define(c, v, e);
  if (rc != ERR_OK) free(v.i);
  return rc;
}

err_code onnx_op_shape(onnx_ctx *c, err *e) {
  onnx_value *v;
  int64_t start, end;
  err_code rc = onnx_in(c, 0, true, &v, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "start", 0, &start, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "end", ONNX_MAX_RANK, &end, e);
  if (rc != ERR_OK) return rc;
  int r = v->dims.rank;
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = start < 0 ? 0 : start > r ? r : start;
  end = end < start ? start : end > r ? r : end;
  return define_i64(c, v->dims.d + start, (size_t)(end - start), 1, e);
}

err_code onnx_op_gather(onnx_ctx *c, err *e) {
  onnx_value *data, *idx;
  int64_t axis;
  err_code rc = onnx_const_in(c, 0, true, T_INT64, &data, e);
  if (rc == ERR_OK) rc = onnx_const_in(c, 1, true, T_INT64, &idx, e);
  if (rc == ERR_OK) rc = onnx_attr_int(c, "axis", 0, &axis, e);
  if (rc != ERR_OK) return rc;
  if (data->dims.rank != 1 || axis != 0 || idx->dims.rank > 1 ||
      idx->n > ONNX_MAX_RANK)
    return onnx_fail(c, e, ERR_UNSUPPORTED,
                     "EdgeDI gathers only from 1-D shape constants");
  int64_t out[ONNX_MAX_RANK];
  for (size_t k = 0; k < idx->n; k++) {
    int64_t i = idx->i[k] < 0 ? idx->i[k] + (int64_t)data->n : idx->i[k];
    if (i < 0 || i >= (int64_t)data->n)
      return onnx_fail(c, e, ERR_INVALID, "index %lld out of range",
                       (long long)idx->i[k]);
    out[k] = data->i[i];
  }
  return define_i64(c, out, idx->n, idx->dims.rank, e);
}

err_code onnx_op_concat(onnx_ctx *c, err *e) {
  int64_t out[ONNX_MAX_RANK];
  size_t n = 0;
  for (size_t k = 0; k < c->node->n_input; k++) {
    onnx_value *v;
    err_code rc = onnx_const_in(c, (int)k, true, T_INT64, &v, e);
    if (rc != ERR_OK) return rc;
    if (v->dims.rank != 1 || n + v->n > ONNX_MAX_RANK)
      return onnx_fail(c, e, ERR_UNSUPPORTED,
                       "EdgeDI concatenates only short 1-D shape constants");
    memcpy(out + n, v->i, v->n * sizeof(int64_t));
    n += v->n;
  }
  return define_i64(c, out, n, 1, e);
}


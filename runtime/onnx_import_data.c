/* onnx_import_data.c — the data a node carries, read for the importer:
 * attributes (typed, with defaults, lists bounded), tensors (float32 and
 * int64, from raw_data little-endian or the typed fields, sizes checked
 * against dims before anything is allocated, float values finite), and
 * the NCHW <-> NHWC conversions of onnx_import.h. Contract in
 * onnx_internal.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/onnx_internal.h"

/* ---- attributes --------------------------------------------------------- */

const Onnx__AttributeProto *onnx_attr(const Onnx__NodeProto *n,
                                      const char *name) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (n->attribute[i] && n->attribute[i]->name &&
        strcmp(n->attribute[i]->name, name) == 0)
      return n->attribute[i];
  return NULL;
}

/* An attribute's type: the declared one, or (older writers leave it out)
 * the one its filled field implies. */
static int attr_type(const Onnx__AttributeProto *a) {
  if (a->has_type) return a->type;
  if (a->n_ints) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
  if (a->n_floats) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
  if (a->t) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
  if (a->has_s) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
  if (a->has_f) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
  if (a->has_i) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
  return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

static err_code wrong_type(onnx_ctx *c, const char *name, const char *want,
                           err *e) {
  return onnx_fail(c, e, ERR_INVALID, "attribute '%s' is not %s", name, want);
}

err_code onnx_attr_int(onnx_ctx *c, const char *name, int64_t def,
                       int64_t *out, err *e) {
  const Onnx__AttributeProto *a = onnx_attr(c->node, name);
  *out = def;
  if (!a) return ERR_OK;
  if (attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)
    return wrong_type(c, name, "an integer", e);
  *out = a->i;
  return ERR_OK;
}

err_code onnx_attr_float(onnx_ctx *c, const char *name, float def,
                         float *out, err *e) {
  const Onnx__AttributeProto *a = onnx_attr(c->node, name);
  *out = def;
  if (!a) return ERR_OK;
  if (attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
    return wrong_type(c, name, "a float", e);
  *out = a->f;
  return ERR_OK;
}

err_code onnx_attr_ints(onnx_ctx *c, const char *name, int64_t *out,
                        int max, int *n, err *e) {
  const Onnx__AttributeProto *a = onnx_attr(c->node, name);
  *n = -1;
  if (!a) return ERR_OK;
  if (attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)
    return wrong_type(c, name, "a list of integers", e);
  if (a->n_ints > (size_t)max)
    return onnx_fail(c, e, ERR_INVALID, "attribute '%s' has %zu values, at "
                     "most %d expected", name, a->n_ints, max);
  for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
  *n = (int)a->n_ints;
  return ERR_OK;
}

err_code onnx_attr_string(onnx_ctx *c, const char *name, const char *def,
                          char *out, size_t len, err *e) {
  const Onnx__AttributeProto *a = onnx_attr(c->node, name);
  snprintf(out, len, "%s", def);
  if (!a) return ERR_OK;
  if (attr_type(a) != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)
    return wrong_type(c, name, "a string", e);
  size_t n = a->s.len < len - 1 ? a->s.len : len - 1;
  if (n) memcpy(out, a->s.data, n);
  out[n] = 0;
  return ERR_OK;
}

/* ---- tensors -------------------------------------------------------------- */

/* Little-endian bytes, read one at a time: no alignment or host byte-order
 * assumption. */
static uint64_t le_bytes(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int k = n - 1; k >= 0; k--) v = (v << 8) | p[k];
  return v;
}

err_code onnx_decode_tensor(const Onnx__TensorProto *t, const char *what,
                            onnx_value *v, err *e) {
  if (t->has_data_location &&
      t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return err_set(e, ERR_UNSUPPORTED,
                   "%s is stored outside the file (external data); save the "
                   "model with its weights inside",
                   what);
  if (t->segment)
    return err_set(e, ERR_UNSUPPORTED, "%s is a segment of a tensor", what);
  int elem = t->has_data_type ? t->data_type : 0;
  if (elem != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT &&
      elem != ONNX__TENSOR_PROTO__DATA_TYPE__INT64)
    return err_set(e, ERR_UNSUPPORTED,
                   "%s has data type %d; EdgeDI reads float32 and int64",
                   what, elem);
  if (t->n_dims > ONNX_MAX_RANK)
    return err_set(e, ERR_UNSUPPORTED, "%s has %zu dimensions, at most %d",
                   what, t->n_dims, ONNX_MAX_RANK);
  onnx_dims d = {(int)t->n_dims, {0}};
  int64_t n = 1;
  for (size_t k = 0; k < t->n_dims; k++) {
    if (t->dims[k] < 0 || t->dims[k] > ONNX_MAX_TENSOR_ELEMS)
      return err_set(e, ERR_INVALID, "%s has dimension %lld", what,
                     (long long)t->dims[k]);
    d.d[k] = t->dims[k];
    n *= t->dims[k];
    if (n > ONNX_MAX_TENSOR_ELEMS)
      return err_set(e, ERR_UNSUPPORTED, "%s holds more than %d values", what,
                     ONNX_MAX_TENSOR_ELEMS);
  }
  bool is_f = elem == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  size_t width = is_f ? 4 : 8;
  size_t typed = is_f ? t->n_float_data : t->n_int64_data;
  size_t have = t->has_raw_data ? t->raw_data.len / width : typed;
  if (have != (size_t)n || (t->has_raw_data && t->raw_data.len % width))
    return err_set(e, ERR_INVALID,
                   "%s holds %zu bytes of data, its shape %s needs %lld values "
                   "of %zu bytes",
                   what, t->has_raw_data ? t->raw_data.len : typed * width,
                   onnx_dims_str(&d, (char[96]){0}, 96), (long long)n, width);
  void *data = malloc((size_t)(n ? n : 1) * width);
  if (!data) return err_set(e, ERR_NOMEM, "out of memory decoding %s", what);
  for (int64_t k = 0; k < n; k++) {
    if (is_f) {
      float *f = data;
      if (t->has_raw_data) {
        uint32_t bits = (uint32_t)le_bytes(t->raw_data.data + 4 * k, 4);
        memcpy(&f[k], &bits, 4);
      } else {
        f[k] = t->float_data[k];
      }
      if (!isfinite(f[k])) { /* a weight that is not a number spoils every output */
        err_code rc = err_set(e, ERR_INVALID, "%s: value %lld is %s, not a finite number", what,
                              (long long)k, isnan(f[k]) ? "NaN" : "infinite");
        free(data);
        return rc;
      }
    } else {
      int64_t *i = data;
      i[k] = t->has_raw_data ? (int64_t)le_bytes(t->raw_data.data + 8 * k, 8)
                             : t->int64_data[k];
    }
  }
  v->kind = ONNX_CONST;
  v->elem = elem;
  v->dims = d;
  v->n = (size_t)n;
  v->f = is_f ? data : NULL;
  v->i = is_f ? NULL : data;
  v->owns_data = true;
  return ERR_OK;
}

err_code onnx_const_i64(onnx_ctx *c, const int64_t *vals, size_t n,
                        const onnx_dims *d, onnx_value *out, err *e) {
  memset(out, 0, sizeof *out);
  out->i = malloc((n ? n : 1) * sizeof(int64_t));
  if (!out->i) return onnx_fail(c, e, ERR_NOMEM, "out of memory");
  if (n) memcpy(out->i, vals, n * sizeof(int64_t));
  out->kind = ONNX_CONST;
  out->elem = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
  out->n = n;
  out->dims = *d;
  out->owns_data = true;
  return ERR_OK;
}

/* ---- layout ----------------------------------------------------------------- */

void onnx_nchw_to_nhwc(const float *nchw, model_shape s, float *nhwc) {
  for (int ch = 0; ch < s.c; ch++)
    for (int y = 0; y < s.h; y++)
      for (int x = 0; x < s.w; x++)
        nhwc[((size_t)y * s.w + x) * s.c + ch] =
            nchw[((size_t)ch * s.h + y) * s.w + x];
}

void onnx_nhwc_to_nchw(const float *nhwc, model_shape s, float *nchw) {
  for (int ch = 0; ch < s.c; ch++)
    for (int y = 0; y < s.h; y++)
      for (int x = 0; x < s.w; x++)
        nchw[((size_t)ch * s.h + y) * s.w + x] =
            nhwc[((size_t)y * s.w + x) * s.c + ch];
}


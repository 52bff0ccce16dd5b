/* onnx_internal.h — what onnx_import.c (the graph walk, values, tensors,
 * attributes) shares with onnx_import_ops.c (one handler per operator); not
 * part of the importer's API.
 *
 * The importer walks the nodes in their (topological) order and gives every
 * ONNX value a description. Most values are the output of one EdgeDI layer
 * (ONNX_TENSOR); constants are kept as data; and a few are deliberately
 * left pending, because EdgeDI has no layer for them alone but does for the
 * pattern they start: a zero Pad waits for the convolution it feeds, and
 * mean(x) -> W * mean(x) -> sigmoid(...) wait for the Mul that makes them a
 * feature-enhancement layer. A pending mean or W * mean that turns out to
 * feed something else becomes real layers then (global pool, fc).
 *
 * A computed tensor's logical ONNX shape (`dims`, batch 1) relates to its
 * layer's NHWC shape (h, w, c) in one of two ways, an invariant every
 * handler keeps: [1, c, h, w] ("spatial view"), or h = w = 1 and any shape
 * of c elements ("flat view": NHWC order is then the NCHW order).
 */
#ifndef EDGEDI_ONNX_INTERNAL_H
#define EDGEDI_ONNX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/err.h"
#include "runtime/model.h"
#include "runtime/onnx_import.h"
#include "third_party/onnx/onnx.pb-c.h"

typedef enum onnx_kind {
  ONNX_CONST,   /* data known at import time (initializer, Constant, Shape) */
  ONNX_TENSOR,  /* a layer's output, or the graph input */
  ONNX_PADDED,  /* a tensor with a zero Pad still to merge into a Conv */
  ONNX_MEAN,    /* mean over H, W of a tensor (FE's pool, or a GAP head) */
  ONNX_LOGIT,   /* W * mean(x) */
  ONNX_GATE,    /* sigmoid(W * mean(x)): only FE's Mul may read it */
} onnx_kind;

typedef struct onnx_dims {
  int rank;
  int64_t d[ONNX_MAX_RANK];
} onnx_dims;

typedef struct onnx_value {
  const char *name;
  onnx_kind kind;
  onnx_dims dims;
  int uses;    /* node inputs and graph outputs that read this name */
  bool owner;  /* produced by the node that created `layer` (folds allowed) */
  /* TENSOR, PADDED: the layer (MODEL_INPUT for the graph input);
   * MEAN, LOGIT, GATE: the layer of the x they are computed from. */
  int layer;
  int pad[4]; /* PADDED: top, left, bottom, right */
  /* CONST: elem is ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT (data in f) or
   * __INT64 (in i), n elements; an initializer is decoded on first use. */
  int elem;
  const Onnx__TensorProto *proto;
  float *f;
  int64_t *i;
  size_t n;
  bool owns_data;
  /* LOGIT, GATE: W, [c][c] (out, in); shared by aliases, freed by owner. */
  float *w;
  bool owns_w;
} onnx_value;

/* A name -> int table (open addressing; keys point into the decoded file). */
typedef struct onnx_names {
  const char **keys;
  int *vals;
  size_t cap; /* a power of two */
} onnx_names;

typedef struct onnx_ctx {
  const Onnx__GraphProto *g;
  int64_t opset;
  model *m;
  onnx_value *vals; /* preallocated for every name: pointers stay valid */
  int n_vals, cap_vals;
  onnx_names defs;  /* name -> index in vals */
  onnx_names uses;  /* name -> readers */
  size_t total_weights;
  const Onnx__NodeProto *node; /* the node being imported */
  int node_index;
} onnx_ctx;

/* ---- onnx_import.c: messages ------------------------------------------- */

/* Fills *e with "node 'NAME' (OP): <message>" for the current node. */
err_code onnx_fail(onnx_ctx *c, err *e, err_code code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "[1,64,50,50]" into buf. */
const char *onnx_dims_str(const onnx_dims *d, char *buf, size_t len);
int64_t onnx_dims_elems(const onnx_dims *d);

/* ---- values ------------------------------------------------------------- */

/* Input i of the current node: *v is NULL for an absent optional input;
 * a required one that is absent or undefined is an error. */
err_code onnx_in(onnx_ctx *c, int i, bool required, onnx_value **v, err *e);
/* Input i as a computed tensor: pending means and W * means become layers
 * first; constants, gates and pending pads are refused. */
err_code onnx_tensor_in(onnx_ctx *c, int i, onnx_value **v, err *e);
/* Input i as a constant of type `elem`, decoded (NULL when optional and
 * absent). */
err_code onnx_const_in(onnx_ctx *c, int i, bool required, int elem,
                       onnx_value **v, err *e);
/* Turns a pending mean or W * mean into layers (in place). */
err_code onnx_materialize(onnx_ctx *c, onnx_value *v, err *e);
/* Defines output 0 of the current node as *v (name and uses are filled). */
err_code onnx_define(onnx_ctx *c, onnx_value v, err *e);
/* A tensor value for layer l with logical dims d, owned by this node. */
onnx_value onnx_layer_value(int l, const onnx_dims *d);
/* An alias of src (same data or layer, not owner) with new dims. */
onnx_value onnx_alias(const onnx_value *src, const onnx_dims *d);
/* Defines the output as layer l's tensor (l < 0: the add failed, *e says
 * why and is returned). */
err_code onnx_define_layer(onnx_ctx *c, int l, const onnx_dims *d, err *e);
bool onnx_same_dims(const onnx_dims *a, const onnx_dims *b);

/* Checks a model_add_* result, names the layer after the node, enforces the
 * tensor and weight limits. Returns l, or MODEL_ADD_FAILED with *e set. */
int onnx_adopt(onnx_ctx *c, int l, err *e);
/* Spatial view: v's dims are [1, c, h, w] of its layer; fills *s. */
bool onnx_spatial_view(onnx_ctx *c, const onnx_value *v, model_shape *s);
model_shape onnx_value_shape(onnx_ctx *c, const onnx_value *v);

/* ---- onnx_import_data.c: attributes ------------------------------------- */

const Onnx__AttributeProto *onnx_attr(const Onnx__NodeProto *n,
                                      const char *name);
err_code onnx_attr_int(onnx_ctx *c, const char *name, int64_t def,
                       int64_t *out, err *e);
err_code onnx_attr_float(onnx_ctx *c, const char *name, float def,
                         float *out, err *e);
/* Ints attribute; *n = -1 when absent. At most `max` values. */
err_code onnx_attr_ints(onnx_ctx *c, const char *name, int64_t *out,
                        int max, int *n, err *e);
/* String attribute, or def when absent. */
err_code onnx_attr_string(onnx_ctx *c, const char *name, const char *def,
                          char *out, size_t len, err *e);

/* ---- onnx_import_data.c: constants -------------------------------------- */

/* Decodes a TensorProto (float32 or int64) into v's data; `what` names it
 * in messages ("initializer 'w'"). */
err_code onnx_decode_tensor(const Onnx__TensorProto *t, const char *what,
                            onnx_value *v, err *e);
/* A freshly allocated int64 constant of n values and dims d. */
err_code onnx_const_i64(onnx_ctx *c, const int64_t *vals, size_t n,
                        const onnx_dims *d, onnx_value *out, err *e);

/* ---- onnx_import_ops.c -------------------------------------------------- */

typedef err_code (*onnx_op_fn)(onnx_ctx *c, err *e);
/* The handler of an operator type, or NULL when EdgeDI does not run it. */
onnx_op_fn onnx_op_find(const char *op_type);

/* ---- onnx_import_shape.c ------------------------------------------------ */

/* Axes from input i (newer opsets) or the attribute "axes" (older); *n is
 * -1 when neither is given. */
err_code onnx_axes(onnx_ctx *c, int i, int64_t *axes, int *n, err *e);
/* The axes, normalized against `rank`, as a bit set; false when one is out
 * of range or repeated. */
bool onnx_axis_set(const int64_t *axes, int n, int rank, unsigned *set);

err_code onnx_op_flatten(onnx_ctx *c, err *e);
err_code onnx_op_reshape(onnx_ctx *c, err *e);
err_code onnx_op_squeeze(onnx_ctx *c, err *e);
err_code onnx_op_unsqueeze(onnx_ctx *c, err *e);
err_code onnx_op_identity(onnx_ctx *c, err *e); /* also Dropout, Cast */
err_code onnx_op_constant(onnx_ctx *c, err *e);
err_code onnx_op_shape(onnx_ctx *c, err *e);
err_code onnx_op_gather(onnx_ctx *c, err *e);
err_code onnx_op_concat(onnx_ctx *c, err *e);

#endif

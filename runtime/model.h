/* model.h — the model graph: layers, shapes, FLOPs and receptive fields.
 *
 * A model is a DAG of layers kept in topological order: a layer's inputs are
 * earlier layers (or MODEL_INPUT, the graph input). Every tensor is NHWC
 * float32 with batch 1; a layer produces exactly one tensor, described by
 * `out` once model_finalize() has run. Layers own their weights.
 *
 * Strips. A contiguous layer range [first, end) whose boundaries are "cuts"
 * (only one tensor is live across each) can run on a horizontal strip: the
 * caller names the rows of the range's last layer it wants, and
 * model_strip_rows() says which rows of every layer, and of the range's
 * input, that strip must compute (receptive field with stride and padding,
 * the hull over every path of the DAG). Row numbers are absolute image rows,
 * so a strip touches the top border exactly when it needs rows < 0 of a
 * padded layer.
 *
 * Feature enhancement (MODEL_OP_FE) needs a global mean. On strips each
 * strip "owns" a row interval of the FE's input such that the strips of a
 * partition of the range's output rows own a partition of the FE input's
 * rows; a strip adds only the rows it owns, the sums are combined and
 * model_fe_scale() turns them into the per-channel scale. The rows a strip
 * owns are always among the rows it computes.
 */
#ifndef EDGEDI_MODEL_H
#define EDGEDI_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/err.h"

enum {
  MODEL_INPUT = -1,       /* the graph input, as a layer's input index */
  MODEL_ADD_FAILED = -2,  /* what model_add_* return on failure: distinct
                             from MODEL_INPUT, so an unchecked chain of adds
                             fails instead of wiring to the graph input */
  MODEL_MAX_INPUTS = 2,   /* residual add has two */
  MODEL_NAME_BYTES = 64,
};

typedef enum model_op {
  MODEL_OP_CONV,      /* 2-D convolution, any kernel/stride/padding/groups */
  MODEL_OP_BN,        /* batch norm at inference: y = x * scale + shift */
  MODEL_OP_RELU,
  MODEL_OP_MAXPOOL,
  MODEL_OP_AVGPOOL,   /* padding excluded from the count (ONNX default) */
  MODEL_OP_GAP,       /* global average pool -> 1 x 1 x C */
  MODEL_OP_FC,        /* fully connected on a 1 x 1 x C tensor */
  MODEL_OP_FE,        /* feature enhancement: x * sigmoid(W * mean(x)) */
  MODEL_OP_ADD,       /* element-wise sum of two equal-shaped tensors */
  MODEL_OP_FLATTEN,   /* H x W x C -> 1 x 1 x (C*H*W) in C,H,W order */
  MODEL_OP_COUNT
} model_op;

typedef struct model_shape {
  int h, w, c;
} model_shape;

/* A half-open interval of rows [lo, hi). */
typedef struct model_rows {
  int lo, hi;
} model_rows;

/* The smallest interval holding both (an empty one adds nothing). */
model_rows model_rows_hull(model_rows a, model_rows b);
/* r cut to [0, h); empty results are {0, 0}. */
model_rows model_rows_clamp(model_rows r, int h);

typedef struct model_layer {
  model_op op;
  char name[MODEL_NAME_BYTES];
  int inputs[MODEL_MAX_INPUTS];
  int n_inputs;

  /* CONV, MAXPOOL, AVGPOOL geometry. */
  int kernel_h, kernel_w;
  int stride_h, stride_w;
  int pad_top, pad_bottom, pad_left, pad_right;
  int groups;        /* CONV only; 1 for a dense convolution */
  int out_channels;  /* CONV and FC */

  /* Output clamped at 0 (a ReLU fused into this layer, see fuse.h). */
  bool relu;

  /* Weights, owned by the layer:
   *  CONV: [out_c][kernel_h][kernel_w][in_c / groups] (OHWI, as XNNPACK),
   *        bias [out_c] or NULL;
   *  FC:   [out][in], bias [out] or NULL;
   *  BN:   weights = scale [C], bias = shift [C];
   *  FE:   weights = [C][C] (out, in), no bias. */
  float *weights;
  size_t n_weights;
  float *bias;
  size_t n_bias;

  /* Filled by model_finalize(). */
  model_shape out;
  double flops; /* 2 per multiply-add, CONV and FC (FE's FC included) only */
} model_layer;

typedef struct model {
  char name[MODEL_NAME_BYTES];
  model_shape input;
  model_layer *layers;
  int n_layers;
  int cap_layers;
  bool finalized;
} model;

/* ---- building ------------------------------------------------------------
 * Each model_add_* appends a layer, zero-fills its weights and returns its
 * index, or MODEL_ADD_FAILED (with *e filled) on a bad argument or
 * allocation failure.
 * model_finalize() then checks shapes and computes FLOPs; every other
 * function requires a finalized model. */

model *model_create(const char *name, model_shape input);
void model_destroy(model *m);

int model_add_conv(model *m, int input, int out_channels, int kernel,
                   int stride, int pad, int groups, bool bias, err *e);
/* Full control over a convolution's geometry (asymmetric kernels/padding). */
int model_add_conv_ex(model *m, int input, int out_channels, int kernel_h,
                      int kernel_w, int stride_h, int stride_w, int pad_top,
                      int pad_left, int pad_bottom, int pad_right, int groups,
                      bool bias, err *e);
int model_add_bn(model *m, int input, err *e);
int model_add_relu(model *m, int input, err *e);
int model_add_maxpool(model *m, int input, int kernel, int stride, int pad,
                      err *e);
int model_add_avgpool(model *m, int input, int kernel, int stride, int pad,
                      err *e);
int model_add_gap(model *m, int input, err *e);
int model_add_fc(model *m, int input, int out_features, bool bias, err *e);
int model_add_fe(model *m, int input, err *e);
int model_add_add(model *m, int a, int b, err *e);
int model_add_flatten(model *m, int input, err *e);

/* Shape inference and validation (channels, weight sizes, FE/FC inputs,
 * positive spatial sizes). Safe to call again after weights changed. */
err_code model_finalize(model *m, err *e);

/* A deep copy (weights included), finalized like the original. */
model *model_clone(const model *m, err *e);

/* ---- queries ------------------------------------------------------------- */

/* Shape of a layer's output, or of the graph input for MODEL_INPUT. */
model_shape model_tensor_shape(const model *m, int layer);
size_t model_shape_elems(model_shape s);
const char *model_op_name(model_op op);

double model_flops(const model *m);                  /* whole model */
double model_range_flops(const model *m, int first, int end);
size_t model_param_count(const model *m);            /* weights + biases */

/* Index of the layer named `name`, or -1. */
int model_find_layer(const model *m, const char *name);

/* True when exactly one tensor is live between layers cut-1 and cut: every
 * layer at or after `cut` reads only layer cut-1 or later ones. 0 and
 * n_layers are always cuts. */
bool model_is_cut(const model *m, int cut);

/* ERR_OK when [first, end) is a non-empty range between two cuts. */
err_code model_check_range(const model *m, int first, int end, err *e);

/* Input rows of `layer` (one of its `input`-th tensor) needed to produce its
 * output rows `out`, unclamped: may be < 0 or past the end where the layer
 * pads. Layers that need the whole input (GAP, FC, FE's mean is handled
 * separately, FLATTEN) return all rows. */
model_rows model_layer_input_rows(const model *m, int layer, model_rows out);

/* For the range [first, end) and output rows `out` of layer end-1: fills
 * rows[l] for every l in [first, end) with the rows that layer must compute
 * (clamped to the tensor), and *in with the rows of the range's input
 * tensor (layer first-1, or the graph input) that must be supplied
 * (clamped: rows outside the image are the padding's zeros). FE inputs get
 * at least the rows they own (see model_fe_owned_rows). `rows` has
 * m->n_layers entries; others are left untouched. */
err_code model_strip_rows(const model *m, int first, int end, model_rows out,
                          model_rows *rows, model_rows *in, err *e);

/* Rows of the FE layer `fe`'s input tensor that the strip with output rows
 * `out` of range [first, end) owns (the FE layer must lie in the range). */
err_code model_fe_owned_rows(const model *m, int first, int end,
                             model_rows out, int fe, model_rows *owned,
                             err *e);

/* The per-channel FE scale sigmoid(W * (sums / count)) from the sums over
 * all rows of the FE input; count = h * w of that tensor. */
err_code model_fe_scale(const model *m, int fe, const double *sums,
                        double count, float *scale, err *e);

#endif

/* onnx_import.h — loads an ONNX file into an EdgeDI model graph.
 *
 * What it reads: the graphs torch.onnx.export writes (opsets 11 to 17 are
 * the target; 9 to 18 are accepted, the attribute-or-input variants of
 * Pad, Squeeze, Unsqueeze and ReduceMean are both understood) for the
 * paper's VGG and ResNet models and their compact versions, and what
 * onnx_export.h writes. One float32 input [N,C,H,W] with N = 1 or symbolic,
 * one output. Operators:
 *   Conv (any group; dilations 1; auto_pad NOTSET, VALID or SAME_*),
 *   BatchNormalization (inference; folded at load into a scale and shift),
 *   Relu, MaxPool, AveragePool (padding excluded from the count, or no
 *   padding), GlobalAveragePool, ReduceMean over H and W, Gemm, MatMul
 *   (+ Add of a bias), Add (residual, or a constant), Mul (by a constant, or
 *   the feature-enhancement gate), Sigmoid (only as that gate), Pad (zero,
 *   H and W only, merged into the convolution it feeds; a Pad of nothing,
 *   as torch writes before AvgPool2d, is dropped), Flatten, Reshape,
 *   Squeeze, Unsqueeze, Identity, Dropout (inference), Constant, and Shape,
 *   Gather, Concat over constant shapes (what a dynamic `view` exports to).
 * Feature enhancement, x * sigmoid(W * mean(x)), is recognized as a pattern:
 * GlobalAveragePool or ReduceMean of x -> (Flatten | Reshape | Squeeze)* ->
 * Gemm or MatMul without bias (or a 1x1 Conv) -> Sigmoid -> (Reshape |
 * Unsqueeze)* -> Mul with x, and becomes one MODEL_OP_FE layer.
 *
 * Layout: ONNX tensors are NCHW and weights OIHW; the model is NHWC with
 * OHWI weights (model.h). A [1,C,H,W] value maps to an h x w x c tensor; a
 * value with H = W = 1, or a flattened one, maps to 1 x 1 x K, whose NHWC
 * order is the NCHW order, so Flatten/Reshape/Squeeze/Unsqueeze between such
 * shapes cost nothing. Layers are named after their ONNX nodes.
 *
 * Errors: every failure names the node (or the graph input, output or
 * initializer) and says why: ERR_CORRUPT for a file that does not decode as
 * ONNX, ERR_UNSUPPORTED for an operator, attribute or pattern EdgeDI does
 * not run, ERR_SHAPE for shapes that do not fit, ERR_INVALID for a wrong,
 * missing or badly sized initializer or attribute, or a float value in one
 * that is NaN or infinite. Nothing is printed.
 *
 * The returned model is finalized and not fused (see fuse.h): dead nodes are
 * dropped, and the graph output is the last layer.
 */
#ifndef EDGEDI_ONNX_IMPORT_H
#define EDGEDI_ONNX_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/err.h"
#include "runtime/model.h"

/* Limits that keep a hostile file from making the importer allocate or
 * compute without bound; they are far above the paper's models. */
enum {
  ONNX_MIN_OPSET = 9,
  ONNX_MAX_OPSET = 18,
  ONNX_MAX_NODES = 100000,
  ONNX_MAX_RANK = 8,
  ONNX_MAX_INPUT_SIDE_PX = 16384,
  ONNX_MAX_CHANNELS = 1 << 20,
  ONNX_MAX_TENSOR_ELEMS = 1 << 28,   /* any tensor or activation, floats */
  ONNX_MAX_TOTAL_WEIGHTS = 1 << 28,  /* all layers' weights together */
  ONNX_MAX_WINDOW = 1 << 16,         /* kernel, stride or padding */
};

/* The graph's input and output as the ONNX file declares them, for callers
 * that feed and read raw tensors in the file's own layout. */
typedef struct onnx_io {
  char input_name[MODEL_NAME_BYTES];
  char output_name[MODEL_NAME_BYTES];
  int input_dims[4];               /* 1, C, H, W */
  int output_rank;
  int64_t output_dims[ONNX_MAX_RANK]; /* batch 1 */
  /* The output is [1,C,H,W] with H*W > 1: the model's NHWC output must be
   * transposed (onnx_nhwc_to_nchw) to be the ONNX output. */
  bool output_nchw;
} onnx_io;

/* Imports the ONNX file held in bytes[0..len) into *out (finalized, not
 * fused; free with model_destroy). *out is NULL on failure. io may be NULL. */
err_code onnx_import_ex(const void *bytes, size_t len, model **out,
                        onnx_io *io, err *e);
err_code onnx_import(const void *bytes, size_t len, model **out, err *e);

/* Reads and imports a file (ERR_IO when it cannot be read). */
err_code onnx_import_file(const char *path, model **out, onnx_io *io, err *e);

/* Layout conversions of one batch-1 tensor of shape s (h, w, c). */
void onnx_nchw_to_nhwc(const float *nchw, model_shape s, float *nhwc);
void onnx_nhwc_to_nchw(const float *nhwc, model_shape s, float *nchw);

#endif

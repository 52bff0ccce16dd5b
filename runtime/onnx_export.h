/* onnx_export.h — writes an EdgeDI model graph as an ONNX file, so that
 * other runtimes (ONNX Runtime, PyTorch through onnx2torch, ...) run the
 * very same model and weights.
 *
 * Any finalized model, fused or not: opset 13, one input "input"
 * [1,C,H,W] float32 and one output "logits" ([1,K] after a flatten or fully
 * connected layer, else [1,C,H,W]). Layers map to Conv (OHWI weights back
 * to OIHW, conv bias as B), BatchNormalization (mean 0, variance 1,
 * epsilon 0, so scale and shift are stored exactly), Relu (also for every
 * fused `relu` flag), MaxPool, AveragePool (count_include_pad 0),
 * GlobalAveragePool, Gemm (transB 1), Flatten, Add, and feature
 * enhancement as ReduceMean -> Flatten -> Gemm (no bias) -> Sigmoid ->
 * Unsqueeze -> Mul. Nodes are named after the layers. onnx_import() of the
 * result gives back the same layers, weights bit for bit (onnx_test holds
 * it to that).
 */
#ifndef EDGEDI_ONNX_EXPORT_H
#define EDGEDI_ONNX_EXPORT_H

#include <stddef.h>

#include "runtime/err.h"
#include "runtime/model.h"

enum {
  ONNX_EXPORT_OPSET = 13,
  ONNX_EXPORT_IR_VERSION = 7, /* the IR version of opset 13 */
};

/* Serializes m into a malloc'ed buffer *bytes of *len bytes (the caller
 * frees it). */
err_code onnx_export(const model *m, void **bytes, size_t *len, err *e);

/* Writes the file at `path` (ERR_IO when it cannot). */
err_code onnx_export_file(const model *m, const char *path, err *e);

#endif

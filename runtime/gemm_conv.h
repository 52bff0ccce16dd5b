/* gemm_conv.h — a dense convolution as im2col + OpenBLAS sgemm: the
 * executor's second convolution backend (runtime/xexec_ops.c picks it per
 * layer), for the wide layers where Debian's OpenBLAS GEMM is about twice
 * as fast as Debian's XNNPACK.
 *
 * Contract, the same as the XNNPACK convolution it replaces: NHWC input and
 * output, groups == 1, any kernel, stride and horizontal padding, no
 * vertical padding (the caller passes a window of input rows that already
 * holds the explicit zero rows, see xexec_ops.h), bias and a fused ReLU.
 *
 * Life cycle: gemm_conv_create() packs the weights once as the GEMM's
 * [K = kh*kw*Cin][N = Cout] matrix; gemm_conv_run() computes any number of
 * output rows. A 1x1 stride-1 convolution without horizontal padding reads
 * its input rows directly as the GEMM's left matrix; any other goes through
 * im2col in blocks of pixels, in a caller-owned scratch of
 * gemm_conv_scratch_floats() floats (about GEMM_CONV_SCRATCH_BYTES).
 *
 * Determinism: OpenBLAS does NOT give a pixel the same value whatever the
 * call (its kernels work on chunks of pixels, and a pixel's lane in its
 * chunk changes the rounding, and on AVX-512 cores a small call takes
 * another kernel). So every sgemm call starts at an absolute pixel index
 * that is a multiple of the layer's chunk (gemm_conv_align() pixels, times
 * what lifts a call past GEMM_CONV_MIN_CALL_MACS) and covers whole
 * chunks, with zero rows for pixels outside the strip: with one OpenBLAS
 * thread, a pixel's value then depends on the image alone, and strips
 * reproduce a whole-image run bit for bit, as the cluster needs
 * (tests/xexec_backend_test). With more threads OpenBLAS splits each call its
 * own way and that no longer holds; xexec's AUTO policy therefore uses this
 * backend with one thread only.
 */
#ifndef EDGEDI_GEMM_CONV_H
#define EDGEDI_GEMM_CONV_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/err.h"
#include "runtime/model.h"

/* Multiply-adds a call makes at least: OpenBLAS sends smaller calls to a
 * small-matrix kernel on AVX-512 cores, whose rounding differs (below). */
enum { GEMM_CONV_MIN_CALL_MACS = 1 << 21 };

/* im2col block budget: big enough that each sgemm call has a few hundred
 * pixels (OpenBLAS repacks the weights per call), small enough to stay in
 * the last-level cache. */
enum { GEMM_CONV_SCRATCH_BYTES = 4 << 20 };

typedef struct gemm_conv {
  int kernel_h, kernel_w, stride_h, stride_w, pad_left;
  int in_w, in_c, out_w, out_c;
  int k;          /* kernel_h * kernel_w * in_c */
  bool direct;    /* 1x1, stride 1, no horizontal padding: no im2col */
  bool relu;
  int chunk;        /* pixels per call at least, a multiple of gemm_conv_align() */
  int block_pixels; /* pixels per im2col block, a multiple of chunk */
  float *weights; /* [k][out_c] */
  float *bias;    /* [out_c], NULL for none */
} gemm_conv;

/* The pixel alignment under which OpenBLAS's sgemm reproduces a pixel's
 * value across calls, probed once per process (a few small GEMMs); 0 when
 * no candidate works, and then gemm_conv_create refuses. */
int gemm_conv_align(void);

/* Whether layer l is a convolution this backend can run (dense). */
bool gemm_conv_supports(const model *m, int l);

/* Whether layer l runs faster here than through XNNPACK on this machine:
 * the shape rule measured in docs/single_device.md. Depends on the layer's
 * shape only, never on a strip, so every executor of a model agrees. */
bool gemm_conv_prefers(const model *m, int l);

err_code gemm_conv_create(const model *m, int l, gemm_conv *g, err *e);
void gemm_conv_destroy(gemm_conv *g);

/* Floats of scratch gemm_conv_run needs. */
size_t gemm_conv_scratch_floats(const gemm_conv *g);

/* `rows` output rows, the first being absolute row `first_row` of the
 * layer's output, from the `in_rows` input rows at `in` (W*C floats each,
 * vertical padding included); `out` gets rows * out_w * out_c floats.
 * threads <= 1: OpenBLAS runs on the calling thread only. */
void gemm_conv_run(const gemm_conv *g, const float *in, int in_rows,
                   int first_row, float *out, int rows, float *scratch,
                   int threads);

#endif

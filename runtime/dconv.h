/* dconv.h — a dense convolution computed in registers: the executor's third
 * convolution backend (runtime/xexec_ops.c picks it per layer).
 *
 * Why: Debian's XNNPACK (the 2022 snapshot) runs its 5x16 FMA3 GEMM kernel
 * with an accumulator spilled to the stack in the inner loop, which caps
 * every convolution at about 33 GFLOP/s on a core that does 80 or more;
 * OpenBLAS needs im2col and wide layers to win. This backend is the
 * classic register-blocked kernel: 6 output pixels (consecutive in raster
 * order, so small maps waste no lanes at row ends) x 16 output channels in
 * 12 AVX2 accumulators, or 12 pixels x 8 channels for a block of at most 8
 * channels, fed by the input pixels in place (no im2col): one run per
 * kernel row when a block's windows lie inside the rows (kernel_w * in_c
 * contiguous inputs), one per tap otherwise, and for 1x1 stride-1 layers
 * a plain GEMM over the pixels. The weights are packed per block of 16
 * output channels. It needs AVX2 and FMA at run time (dconv_available);
 * with AVX-512F it uses tiles of 12 pixels x 16 or 32 channels in zmm
 * registers instead (dconv_avx512.c), which give the same bits.
 *
 * Contract, the same as gemm_conv.h's: NHWC input and output, groups == 1,
 * any kernel, stride and horizontal padding, no vertical padding (the
 * caller passes a window of input rows holding the explicit zero rows,
 * xexec_ops.h), bias and a fused ReLU.
 *
 * Determinism: every output value is accumulated in the same order (bias,
 * then taps in (ky, kx) order, then input channels) in its own lane,
 * whatever block of pixels, tile or loop order it falls in; a strip
 * therefore reproduces a whole-image run bit for bit, with any number of
 * rows, and so do the row chunks of xexec.c. */
#ifndef EDGEDI_DCONV_H
#define EDGEDI_DCONV_H

#include <stdbool.h>
#include <stddef.h>

#include <pthreadpool.h>

#include "runtime/err.h"
#include "runtime/model.h"

enum { DCONV_PIXELS = 6, DCONV_MAX_PIXELS = 12, DCONV_LANES = 16, DCONV_MIN_K = 27,
       DCONV_MIN_POINTWISE_C = 8 };

typedef struct dconv {
  int kernel_h, kernel_w, stride_h, stride_w, pad_left;
  int in_w, in_c, out_w, out_c;
  int n_blocks; /* ceil(out_c / DCONV_LANES) */
  bool relu;
  /* 12-pixel tiles of 16 or 32 lanes in AVX-512 registers (dconv_avx512.c)
   * instead of AVX2's 6 x 16: set where the CPU has AVX-512F; the bits are
   * the same. */
  bool avx512;
  size_t group_input_bytes; /* input a group of rows reads: half this core's L2 */
  bool pointwise; /* 1x1, stride 1, no padding: input pixel q feeds output pixel q */
  float *weights; /* [n_blocks][kernel_h][kernel_w][in_c][DCONV_LANES], zero-padded */
  float *bias;    /* [n_blocks * DCONV_LANES], zeros where none */
  float *zeros;   /* [in_c]: what a tap in the horizontal padding reads */
} dconv;

/* Whether this CPU runs the kernel (AVX2 and FMA). */
bool dconv_available(void);
/* Whether it also has AVX-512F, for which dconv_create picks wider tiles. */
bool dconv_has_avx512(void);
/* Whether layer l is a convolution this backend can run (dense). */
bool dconv_supports(const model *m, int l);
/* Whether it runs layer l faster than XNNPACK and OpenBLAS here: dense,
 * with at least DCONV_MIN_K multiply-adds per output value (kernel_h *
 * kernel_w * in_c: the first 3x3 over 3 channels is in), or a 1x1 stride-1
 * convolution over at least DCONV_MIN_POINTWISE_C channels (so that it can
 * run in row chunks with its neighbours, xexec.c). Below that (a 1x1 over
 * 3 channels) the few FMAs per pixel do not pay for the kernel's loads and
 * stores and XNNPACK is faster. Measured per layer by
 * //benchmarks:conv_backends (docs/single_device.md). Depends on the
 * layer's shape only, so every executor of a model agrees. */
bool dconv_prefers(const model *m, int l);

err_code dconv_create(const model *m, int l, dconv *d, err *e);
void dconv_destroy(dconv *d);

/* `rows` output rows from the input window `in` (W*C floats per row,
 * vertical padding included; output row r reads rows r*stride_h ..
 * r*stride_h + kernel_h - 1); `out` gets rows * out_w * out_c floats.
 * pool: pthreadpool's workers share the (block of 16 channels, row) pairs;
 * NULL runs on the calling thread. The values are the same either way. */
void dconv_run(const dconv *d, const float *in, float *out, int rows, pthreadpool_t pool);

#endif

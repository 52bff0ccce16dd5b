/* xexec_ops.h — the per-layer operators of the XNNPACK executor; internal to
 * runtime/xexec.c, which plans strips and drives runs.
 *
 * Each layer of a model gets one xexec_op, created once with its weights
 * packed by XNNPACK. A strip describes what the layer reads and writes as an
 * xexec_step (pointers into the strip's buffers, row counts); running a step
 * binds the operator to those buffers (xnn_setup_*) unless it is still bound
 * to the same strip from its previous run, then runs it.
 *
 * Vertical padding: convolutions are created with no top/bottom padding and
 * read explicit zero rows the strip keeps around their input, so one
 * operator serves every strip shape. Pools must not see zero rows (a max
 * over zeros or an average counting them would be wrong), so they get an
 * operator per (pad_top, pad_bottom) the strips actually see, created on
 * demand by xexec_op_variant(); pooling operators hold no weights.
 *
 * Convolutions have two more backends, im2col + OpenBLAS sgemm
 * (gemm_conv.h) and a register-blocked direct kernel (dconv.h), chosen
 * per layer at creation: same buffers, same explicit
 * zero rows, nothing to bind.
 *
 * What XNNPACK does not do here is plain C: feature enhancement's sums and
 * channel scaling, FLATTEN's transpose, and 1x1 pools (XNNPACK refuses them).
 * So are max pools of disjoint windows without padding (VGG's 2x2, stride
 * 2) unless the executor runs XNNPACK alone: they may then run row chunk
 * by row chunk in a chain (xexec.c) without an operator to set up per
 * chunk, and every strip pools the same way.
 */
#ifndef EDGEDI_XEXEC_OPS_H
#define EDGEDI_XEXEC_OPS_H

#include <pthreadpool.h>
#include <stddef.h>
#include <stdint.h>
#include <xnnpack.h>

#include "runtime/err.h"
#include "runtime/dconv.h"
#include "runtime/gemm_conv.h"
#include "runtime/model.h"
#include "runtime/xexec.h"

/* A pooling operator for one vertical padding. `bound` as in xexec_op. */
typedef struct xexec_variant {
  int pad_top, pad_bottom;
  xnn_operator_t op;
  uint64_t bound;
} xexec_variant;

/* An XNNPACK convolution's packed weights above this many bytes are split
 * into operators over blocks of output channels (one thread only). XNNPACK
 * runs a convolution group of pixels by group of pixels, each against all
 * its weights: a block that fits half of an L2 cache is read from memory
 * once per run instead of once per few pixels, which is what a thin strip
 * of a 512-channel layer otherwise pays (docs/single_device.md). Each
 * output value is still the same kernel's sum in the same order. */
enum { XEXEC_CONV_BLOCK_BYTES = 256 * 1024, XEXEC_CONV_BLOCK_ALIGN = 16 };

typedef struct xexec_op {
  xnn_operator_t op; /* NULL for pools (see variants), plain-C layers,
                        GEMM, direct and blocked convolutions */
  xnn_operator_t *blocks; /* a blocked convolution's operators, output
                             channels [k * block_c, (k + 1) * block_c) */
  int n_blocks, block_c;
  bool use_gemm;     /* a convolution run by `gemm` */
  gemm_conv gemm;
  bool use_dconv;    /* a convolution run by `dconv` */
  dconv dconv;
  bool plain_pool;   /* a max pool of disjoint windows, no padding, in plain C */
  uint64_t bound;    /* id of the strip `op` is set up for; 0 = none */
  xexec_variant *variants;
  int n_variants, cap_variants;
} xexec_op;

/* What every run shares: XNNPACK's threads, the count OpenBLAS gets, the
 * executor's im2col scratch (sized by xexec_op_scratch_floats). */
typedef struct xexec_env {
  pthreadpool_t pool; /* NULL: the calling thread only */
  int threads;
  float *scratch;
} xexec_env;

/* One layer's work in one strip. Pointers address the first row read or
 * written; rows of a tensor are contiguous (NHWC, W*C floats each). */
typedef struct xexec_step {
  int layer;
  int rows;            /* output rows to compute; 0: nothing to do */
  int row0;            /* the first one's absolute row number */
  const float *in[MODEL_MAX_INPUTS];
  int in_rows;         /* rows read from in[0] by windows (conv, pools) */
  float *out;
  int variant;         /* pools through XNNPACK: index into op->variants */
  /* FE: the input rows this strip owns, for the partial sums. */
  model_rows owned;
  const float *owned_in;
  int owned_rows;
  /* Row chunking (xexec.c): at the first step of a chain, the number of
   * steps that run chunk by chunk and how many output rows of the last one
   * a chunk has (0 elsewhere); in every step of a chain, its output rows
   * per output row of the last (a max pool halves them). */
  int chain, chain_rows, chain_mult;
  /* In a chain: when only the next step reads this step's output, a
   * chunk-sized buffer that stands for it (else NULL). */
  float *chain_out;
} xexec_step;

/* Creates layer l's operator (none for plain-C layers); `conv` and
 * `threads` pick the backend of a dense convolution. ERR_UNSUPPORTED for
 * geometry EdgeDI does not run, ERR_BACKEND when XNNPACK refuses. */
err_code xexec_op_create(const model *m, int l, xexec_conv conv, int threads,
                         xexec_op *op, err *e);
/* Floats of im2col scratch the operator needs while it runs (0: none). */
size_t xexec_op_scratch_floats(const xexec_op *op);
void xexec_op_destroy(xexec_op *op);

/* Index of pool layer l's operator for this vertical padding, creating it
 * on first use; -1 (with *e) on failure. */
int xexec_op_variant(const model *m, int l, xexec_op *op, int pad_top,
                     int pad_bottom, err *e);

/* Runs step `st` of the strip `strip_id` (set up first when the operator
 * is bound elsewhere). FE steps take `fe_scale` (channels floats). */
err_code xexec_op_run(const model *m, xexec_op *op, const xexec_step *st,
                      uint64_t strip_id, const float *fe_scale,
                      const xexec_env *env, err *e);

/* Binds the step's operator to its buffers without running it (strip
 * creation uses it to surface XNNPACK's objections early). */
err_code xexec_op_setup(const model *m, xexec_op *op, const xexec_step *st,
                        uint64_t strip_id, const xexec_env *env, err *e);

/* Per-channel sums, in double, of `pixels` NHWC pixels of `c` channels. */
void xexec_channel_sums(const float *in, size_t pixels, int c, double *sums);

#endif

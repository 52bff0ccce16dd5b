/* fe_moments.h — a feature enhancement's mean from an earlier tensor, so
 * that strips can send their FE sums before computing the layers between.
 *
 * FE needs the mean of its input B over the whole map, which on strips is a
 * barrier: every device sends its sums and waits for the scale. When B is
 * computed from an earlier tensor A by layers that are affine in A — 1x1
 * convolutions, batch norms, and at most one 3x3 stride-1 convolution
 * padded by 1 — B's sum is an affine function of nine per-channel sums of
 * A, its "moments": the total, the first and last rows, the first and last
 * columns and the four corners (what the 3x3 taps at the border read as
 * the padding's zeros instead). A strip can send A's moments over the rows
 * it owns as soon as A is computed and compute the layers up to the FE
 * while they travel; the scheduler adds them up and pushes them through
 * those layers' weights. The result agrees with summing B to double
 * rounding (not bit for bit; DESIGN.md's tolerance is 1e-4).
 *
 * The chain of FE layer `fe`: the layers between A and B, fe-1-chain+1 ..
 * fe-1, so that A is layer fe-1-chain's output (MODEL_INPUT: the graph
 * input) and chain 0 means B itself (the plain sums). It is walked back
 * from B's producer over such layers while A has no more channels than B:
 * moments of a wider tensor cost more to sum than the layers they hide
 * (a compact VGG unit's 1x1 input has 8x the channels of its 3x3).
 */
#ifndef EDGEDI_FE_MOMENTS_H
#define EDGEDI_FE_MOMENTS_H

#include <stddef.h>

#include "runtime/err.h"
#include "runtime/model.h"

/* Moments per channel, in this order, each a block of `channels` doubles. */
enum {
  FE_MOMENT_TOTAL,
  FE_MOMENT_ROW_FIRST,
  FE_MOMENT_ROW_LAST,
  FE_MOMENT_COL_FIRST,
  FE_MOMENT_COL_LAST,
  FE_MOMENT_TOP_LEFT,
  FE_MOMENT_TOP_RIGHT,
  FE_MOMENT_BOTTOM_LEFT,
  FE_MOMENT_BOTTOM_RIGHT,
  FE_MOMENTS
};

/* The longest chain of FE layer `fe` (0 when its input's producer is not a
 * chain layer, or when `fe` is not an FE layer). */
int fe_moments_max_chain(const model *m, int fe);

/* The chain a strip of the range starting at layer `first` uses: the
 * longest whose A it computes (layer fe-1-chain >= first-1). */
int fe_moments_chain(const model *m, int fe, int first);

/* Layer whose output is A for that chain (MODEL_INPUT for the graph input). */
static inline int fe_moments_source(int fe, int chain) { return fe - 1 - chain; }

/* Doubles a device sends: B's channels for chain 0, else FE_MOMENTS * A's. */
size_t fe_moments_size(const model *m, int fe, int chain);

/* The moments of rows owned.lo .. owned.hi-1 of a tensor of shape sh (NHWC,
 * `rows` pointing at row owned.lo), into FE_MOMENTS * sh.c doubles: rows
 * and corners the strip does not own add nothing. */
void fe_moments_of(const float *rows, model_rows owned, model_shape sh, double *moments);

/* FE layer fe's scale from the sums of every device added up: plain sums of
 * B for chain 0, A's moments otherwise. ERR_RANGE for a chain the layer
 * does not have, ERR_INVALID for non-finite sums. */
err_code fe_moments_scale(const model *m, int fe, int chain, const double *sums, float *scale,
                          err *e);

#endif

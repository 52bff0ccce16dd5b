/* xexec_testlib.h — what the executor's tests share: a seeded generator,
 * random weights, tolerance checks, and a cluster in miniature that runs a
 * layer range as strips and exchanges feature-enhancement sums the way the
 * agents do (sum every strip's partial sums, model_fe_scale, hand the same
 * scale to every strip, continue).
 */
#ifndef EDGEDI_TESTS_XEXEC_TESTLIB_H
#define EDGEDI_TESTS_XEXEC_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/err.h"
#include "runtime/model.h"
#include "runtime/xexec.h"

typedef struct xt_rng {
  uint64_t s;
} xt_rng;

uint64_t xt_next(xt_rng *r);
/* Uniform in [lo, hi). */
float xt_uniform(xt_rng *r, float lo, float hi);
/* Uniform integer in [lo, hi]. */
int xt_int(xt_rng *r, int lo, int hi);
void xt_fill(xt_rng *r, float *x, size_t n, float lo, float hi);
/* Random weights and biases for every layer (BN scales near 1); weights
 * scaled by 1/sqrt(fan-in) so values keep their size through a model. */
void xt_randomize(xt_rng *r, model *m);

/* max |a - b| / max(max |b|, tiny). */
double xt_rel_diff(const float *a, const float *b, size_t n);

/* A random partition of `h` rows into 1..max_strips strips: fills
 * bounds[0] = 0 < ... < bounds[n] = h and returns n. bounds needs
 * max_strips + 1 entries. */
int xt_random_split(xt_rng *r, int h, int max_strips, int *bounds);

/* Runs range [first, end) of x as n strips with output rows [bounds[i],
 * bounds[i+1]) of layer end-1, each fed its rows of `range_in` (the whole
 * input tensor of the range), FE sums exchanged across strips. Checks that
 * the strips own a partition of every FE input and pause at the same
 * layers. Writes the stitched output tensor to `out`. */
err_code xt_run_split(xexec *x, int first, int end, const int *bounds, int n,
                      const float *range_in, float *out, err *e);
/* The same with early FE sums on (xexec_strip_set_early_fe): checks that
 * each FE with a chain pauses first with the moments and then, when its
 * scale is held back, waits at the FE; sums combined with
 * fe_moments_scale(). */
err_code xt_run_split_early(xexec *x, int first, int end, const int *bounds, int n,
                            const float *range_in, bool early, float *out, err *e);

/* The whole output tensor of range [first, end) for its whole input tensor,
 * as one strip resolved locally (exact: it covers the image). */
err_code xt_run_range(xexec *x, int first, int end, const float *range_in,
                      float *out, err *e);

#endif

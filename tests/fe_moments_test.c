/* fe_moments_test.c — early FE sums (runtime/fe_moments.h).
 *
 *  - Random chains (batch norm, grouped 1x1 convolutions with and without
 *    bias, one 3x3 stride-1 convolution padded by 1, 1x1s after it) on maps
 *    down to 1 x 1: the scale from the moments of the chain's first tensor,
 *    summed over a random partition of its rows, equals the scale from
 *    summing the FE input itself (1e-6), for every chain length the layer
 *    has.
 *  - Where chains stop: a ReLU, a stride, a second 3x3, a wider tensor, the
 *    range's first layer.
 *  - Nonsense refused: a chain the layer does not have, non-finite sums, a
 *    layer that is not an FE.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fe_moments.h"
#include "runtime/model.h"
#include "runtime/ref.h"
#include "tests/xexec_testlib.h"

enum { RANDOM_CHAINS = 60 };

static void check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s: %s", err_name(rc), e->msg);
}

static int must(int l, const err *e) {
  if (l < 0) fail_msg("building: %s", e->msg);
  return l;
}

/* input -> [bn] -> 1x1 (groups g) -> [bn] -> 3x3 -> [1x1] -> FE. */
static model *random_chain(xt_rng *r, int *fe) {
  err e = {0};
  int c = xt_int(r, 1, 3) * 2, g = xt_int(r, 0, 1) ? 2 : 1;
  model_shape in = {xt_int(r, 1, 9), xt_int(r, 1, 9), c};
  model *m = model_create("chain", in);
  int l = MODEL_INPUT;
  if (xt_int(r, 0, 1)) l = must(model_add_bn(m, l, &e), &e);
  l = must(model_add_conv(m, l, c, 1, 1, 0, g, xt_int(r, 0, 1), &e), &e);
  if (xt_int(r, 0, 1)) l = must(model_add_bn(m, l, &e), &e);
  l = must(model_add_conv(m, l, c, 3, 1, 1, xt_int(r, 0, 1) ? g : 1, xt_int(r, 0, 1), &e), &e);
  if (xt_int(r, 0, 1)) l = must(model_add_conv(m, l, c, 1, 1, 0, 1, true, &e), &e);
  *fe = must(model_add_fe(m, l, &e), &e);
  check_ok(model_finalize(m, &e), &e);
  xt_randomize(r, m);
  return m;
}

static void test_random_chains(void **state) {
  (void)state;
  xt_rng r = {7};
  for (int t = 0; t < RANDOM_CHAINS; t++) {
    int fe;
    model *m = random_chain(&r, &fe);
    err e = {0};
    assert_int_equal(fe_moments_max_chain(m, fe), fe); /* back to the graph input */
    float *in = malloc(model_shape_elems(m->input) * sizeof *in);
    assert_non_null(in);
    xt_fill(&r, in, model_shape_elems(m->input), -1.0f, 1.0f);
    float **acts = NULL;
    check_ok(ref_run_all(m, in, &acts, &e), &e);
    /* the FE input summed, as strips without early sums do */
    model_shape b = m->layers[fe - 1].out;
    double *sums = calloc((size_t)b.c, sizeof *sums);
    float *want = malloc((size_t)b.c * sizeof *want), *got = malloc((size_t)b.c * sizeof *got);
    assert_non_null(sums);
    assert_non_null(want);
    assert_non_null(got);
    for (size_t p = 0; p < (size_t)b.h * b.w; p++)
      for (int k = 0; k < b.c; k++) sums[k] += acts[fe - 1][p * b.c + k];
    check_ok(model_fe_scale(m, fe, sums, (double)b.h * b.w, want, &e), &e);
    for (int chain = 0; chain <= fe; chain++) {
      int src = fe_moments_source(fe, chain);
      model_shape a = model_tensor_shape(m, src);
      const float *t = src == MODEL_INPUT ? in : acts[src];
      size_t n = fe_moments_size(m, fe, chain);
      double *total = calloc(n, sizeof *total), *part = calloc(n, sizeof *part);
      assert_non_null(total);
      assert_non_null(part);
      int bounds[9];
      int strips = xt_random_split(&r, a.h, 8, bounds);
      for (int i = 0; i < strips; i++) {
        model_rows own = {bounds[i], bounds[i + 1]};
        if (chain == 0) {
          for (size_t k = 0; k < n; k++) part[k] = 0;
          for (int y = own.lo; y < own.hi; y++)
            for (size_t p = (size_t)y * a.w; p < (size_t)(y + 1) * a.w; p++)
              for (int k = 0; k < a.c; k++) part[k] += t[p * a.c + k];
        } else {
          fe_moments_of(t + (size_t)own.lo * a.w * a.c, own, a, part);
        }
        for (size_t k = 0; k < n; k++) total[k] += part[k];
      }
      check_ok(fe_moments_scale(m, fe, chain, total, got, &e), &e);
      for (int k = 0; k < b.c; k++)
        if (fabs((double)got[k] - want[k]) > 1e-6)
          fail_msg("chain %d of %d (%dx%dx%d): channel %d scale %.9g, summed %.9g", chain, fe,
                   a.h, a.w, a.c, k, got[k], want[k]);
      free(total);
      free(part);
    }
    ref_free_acts(m, acts);
    free(in);
    free(sums);
    free(want);
    free(got);
    model_destroy(m);
  }
}

/* One graph with a stop of every kind, and the range limit. */
static void test_where_chains_stop(void **state) {
  (void)state;
  err e = {0};
  model_shape in = {8, 8, 16};
  model *m = model_create("stops", in);
  int l = must(model_add_conv(m, MODEL_INPUT, 4, 1, 1, 0, 1, false, &e), &e); /* 0: 16 -> 4 */
  l = must(model_add_conv(m, l, 4, 3, 1, 1, 1, false, &e), &e);                /* 1 */
  int fe_a = must(model_add_fe(m, l, &e), &e);                                 /* 2: from 0 */
  l = must(model_add_relu(m, fe_a, &e), &e);                                   /* 3 */
  l = must(model_add_conv(m, l, 4, 3, 1, 1, 1, false, &e), &e);                /* 4 */
  l = must(model_add_conv(m, l, 4, 3, 1, 1, 1, false, &e), &e);                /* 5 */
  int fe_b = must(model_add_fe(m, l, &e), &e);                                 /* 6: second 3x3 */
  l = must(model_add_conv(m, fe_b, 4, 3, 2, 1, 1, false, &e), &e);             /* 7: stride 2 */
  int fe_c = must(model_add_fe(m, l, &e), &e);                                 /* 8 */
  l = must(model_add_relu(m, fe_c, &e), &e);                                   /* 9 */
  int fe_d = must(model_add_fe(m, l, &e), &e);                                 /* 10: a ReLU */
  check_ok(model_finalize(m, &e), &e);
  assert_int_equal(fe_moments_max_chain(m, fe_a), 1); /* the 16-channel input is wider */
  assert_int_equal(fe_moments_max_chain(m, fe_b), 1);
  assert_int_equal(fe_moments_max_chain(m, fe_c), 0);
  assert_int_equal(fe_moments_max_chain(m, fe_d), 0);
  assert_int_equal(fe_moments_max_chain(m, 1), 0); /* not an FE */
  assert_int_equal(fe_moments_chain(m, fe_a, 0), 1);
  assert_int_equal(fe_moments_chain(m, fe_a, 1), 1); /* A is the range's input */
  assert_int_equal(fe_moments_chain(m, fe_a, 2), 0); /* the range starts at the FE */
  assert_int_equal(fe_moments_size(m, fe_a, 0), 4);
  assert_int_equal(fe_moments_size(m, fe_a, 1), FE_MOMENTS * 4);
  model_destroy(m);
}

static void test_nonsense_refused(void **state) {
  (void)state;
  xt_rng r = {11};
  int fe;
  model *m = random_chain(&r, &fe);
  err e = {0};
  size_t n = fe_moments_size(m, fe, 1);
  double *sums = calloc(n, sizeof *sums);
  float *scale = malloc((size_t)m->layers[fe].out.c * sizeof *scale);
  assert_non_null(sums);
  assert_non_null(scale);
  assert_int_equal(fe_moments_scale(m, fe, fe + 1, sums, scale, &e), ERR_RANGE);
  assert_int_equal(fe_moments_scale(m, fe, -1, sums, scale, &e), ERR_RANGE);
  assert_int_equal(fe_moments_scale(m, fe - 1, 0, sums, scale, &e), ERR_RANGE);
  sums[n - 1] = NAN;
  assert_int_equal(fe_moments_scale(m, fe, 1, sums, scale, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "not finite"));
  sums[n - 1] = INFINITY;
  assert_int_equal(fe_moments_scale(m, fe, 1, sums, scale, &e), ERR_INVALID);
  sums[n - 1] = 0;
  check_ok(fe_moments_scale(m, fe, 1, sums, scale, &e), &e);
  free(sums);
  free(scale);
  model_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_chains),
      cmocka_unit_test(test_where_chains_stop),
      cmocka_unit_test(test_nonsense_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

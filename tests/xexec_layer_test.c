/* xexec_layer_test.c — every layer type of the XNNPACK executor, alone or in
 * the smallest graph that needs it, against the reference executor (ref.c):
 * max |diff| <= 1e-4 relative to the largest output. Then the same graphs
 * as random horizontal strips (1..8 of them, FE sums exchanged as a cluster
 * would) against the executor's own whole run: <= 1e-5 relative.
 * Odd input sizes (13 x 11) put windows at uneven borders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "runtime/model.h"
#include "runtime/ref.h"
#include "runtime/xexec.h"
#include "tests/xexec_testlib.h"

enum { SPLITS_PER_CASE = 8, MAX_STRIPS = 8 };
static const double REF_TOL = 1e-4, STRIP_TOL = 1e-5;

static void check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s: %s", err_name(rc), e->msg);
}

/* Whole run vs ref_run, then random strips vs the whole run. Takes m. */
static void check_model(model *m, uint64_t seed) {
  err e = {0};
  xt_rng r = {seed};
  xt_randomize(&r, m);
  check_ok(model_finalize(m, &e), &e);
  size_t n_in = model_shape_elems(m->input);
  model_shape os = m->layers[m->n_layers - 1].out;
  size_t n_out = model_shape_elems(os);
  float *in = malloc(n_in * sizeof *in), *want = malloc(n_out * sizeof *want);
  float *got = malloc(n_out * sizeof *got), *split = malloc(n_out * sizeof *split);
  assert_non_null(in);
  assert_non_null(want);
  assert_non_null(got);
  assert_non_null(split);
  xt_fill(&r, in, n_in, -1.0f, 1.0f);

  check_ok(ref_run(m, in, want, &e), &e);
  xexec *x;
  check_ok(xexec_create(m, 1, &x, &e), &e);
  check_ok(xexec_run(x, in, got, &e), &e);
  double d = xt_rel_diff(got, want, n_out);
  if (d > REF_TOL) fail_msg("%s: executor vs reference %g", m->name, d);
  /* a second run reuses bound operators and must give the same numbers */
  check_ok(xexec_run(x, in, split, &e), &e);
  assert_true(xt_rel_diff(split, got, n_out) == 0.0);

  for (int t = 0; t < SPLITS_PER_CASE; t++) {
    int bounds[MAX_STRIPS + 1];
    int n = xt_random_split(&r, os.h, MAX_STRIPS, bounds);
    check_ok(xt_run_split(x, 0, m->n_layers, bounds, n, in, split, &e), &e);
    d = xt_rel_diff(split, got, n_out);
    if (d > STRIP_TOL) fail_msg("%s: %d strips vs whole %g", m->name, n, d);
  }
  xexec_destroy(x);
  model_destroy(m);
  free(in);
  free(want);
  free(got);
  free(split);
}

static model *new_model(const char *name, int h, int w, int c) {
  model_shape s = {h, w, c};
  model *m = model_create(name, s);
  assert_non_null(m);
  return m;
}

static int must(int l, const err *e) {
  if (l < 0) fail_msg("building: %s", e->msg);
  return l;
}

/* ---- convolutions ---------------------------------------------------------- */

static void test_conv_kernels(void **state) {
  (void)state;
  static const int kernels[] = {1, 3, 5, 7};
  uint64_t seed = 1;
  for (int k = 0; k < 4; k++)
    for (int stride = 1; stride <= 2; stride++)
      for (int padded = 0; padded <= 1; padded++) {
        err e = {0};
        int kern = kernels[k];
        char name[64];
        snprintf(name, sizeof name, "conv k%d s%d p%d", kern, stride, padded);
        model *m = new_model(name, 13, 11, 5);
        bool bias = (seed & 1) != 0, relu = (seed & 2) != 0;
        int l = must(model_add_conv(m, MODEL_INPUT, 8, kern, stride,
                                    padded ? kern / 2 : 0, 1, bias, &e), &e);
        m->layers[l].relu = relu;
        check_model(m, seed++);
      }
}

static void test_conv_asymmetric(void **state) {
  (void)state;
  err e = {0};
  model *m = new_model("conv 3x5 asymmetric", 13, 11, 4);
  must(model_add_conv_ex(m, MODEL_INPUT, 6, 3, 5, 2, 1, 2, 0, 1, 3, 1, true,
                         &e), &e);
  check_model(m, 11);
  m = new_model("conv 5x3 asymmetric", 13, 11, 4);
  must(model_add_conv_ex(m, MODEL_INPUT, 6, 5, 3, 1, 2, 0, 2, 3, 1, 1, false,
                         &e), &e);
  check_model(m, 12);
  /* padding as large as the kernel: border rows see only padding */
  m = new_model("conv 3x3 pad 3", 9, 7, 3);
  must(model_add_conv(m, MODEL_INPUT, 4, 3, 2, 3, 1, true, &e), &e);
  check_model(m, 13);
}

static void test_conv_groups(void **state) {
  (void)state;
  err e = {0};
  model *m = new_model("conv groups 2", 13, 11, 6);
  int l = must(model_add_conv(m, MODEL_INPUT, 8, 3, 1, 1, 2, true, &e), &e);
  m->layers[l].relu = true;
  check_model(m, 21);
  for (int k = 3; k <= 7; k += 2)
    for (int stride = 1; stride <= 2; stride++) {
      char name[64];
      snprintf(name, sizeof name, "depthwise k%d s%d", k, stride);
      m = new_model(name, 13, 11, 6);
      must(model_add_conv(m, MODEL_INPUT, 6, k, stride, k / 2, 6, true, &e), &e);
      check_model(m, 22 + (uint64_t)k * 2 + stride);
    }
  m = new_model("depth multiplier 2", 13, 11, 4);
  must(model_add_conv(m, MODEL_INPUT, 8, 3, 1, 1, 4, false, &e), &e);
  check_model(m, 40);
}

/* ---- element-wise ------------------------------------------------------------ */

static void test_bn_relu(void **state) {
  (void)state;
  err e = {0};
  model *m = new_model("bn", 13, 11, 5);
  must(model_add_bn(m, MODEL_INPUT, &e), &e);
  check_model(m, 50);
  m = new_model("bn relu", 13, 11, 5);
  int l = must(model_add_bn(m, MODEL_INPUT, &e), &e);
  m->layers[l].relu = true;
  check_model(m, 51);
  m = new_model("relu", 13, 11, 5);
  must(model_add_relu(m, MODEL_INPUT, &e), &e);
  check_model(m, 52);
  /* element-wise after a padded conv: its zero rows must not leak */
  m = new_model("conv bn relu conv", 13, 11, 3);
  int c = must(model_add_conv(m, MODEL_INPUT, 4, 3, 1, 1, 1, true, &e), &e);
  c = must(model_add_bn(m, c, &e), &e);
  c = must(model_add_relu(m, c, &e), &e);
  must(model_add_conv(m, c, 4, 3, 1, 1, 1, true, &e), &e);
  check_model(m, 53);
}

static void test_add(void **state) {
  (void)state;
  err e = {0};
  model *m = new_model("add", 13, 11, 4);
  int c = must(model_add_conv(m, MODEL_INPUT, 4, 3, 1, 1, 1, true, &e), &e);
  must(model_add_add(m, c, MODEL_INPUT, &e), &e);
  check_model(m, 60);
  /* a strided block with a projection shortcut, relu fused into the add */
  m = new_model("add strided relu", 13, 11, 4);
  int a = must(model_add_conv(m, MODEL_INPUT, 6, 3, 2, 1, 1, false, &e), &e);
  a = must(model_add_conv(m, a, 6, 3, 1, 1, 1, false, &e), &e);
  int b = must(model_add_conv(m, MODEL_INPUT, 6, 1, 2, 0, 1, false, &e), &e);
  int l = must(model_add_add(m, a, b, &e), &e);
  m->layers[l].relu = true;
  check_model(m, 61);
  /* one tensor read by two element-wise layers: neither may write over it */
  m = new_model("two readers", 13, 11, 4);
  c = must(model_add_conv(m, MODEL_INPUT, 4, 3, 1, 1, 1, true, &e), &e);
  a = must(model_add_relu(m, c, &e), &e);
  b = must(model_add_bn(m, c, &e), &e);
  c = must(model_add_add(m, a, b, &e), &e);
  c = must(model_add_add(m, c, c, &e), &e);
  must(model_add_conv(m, c, 4, 3, 1, 1, 1, true, &e), &e);
  check_model(m, 62);
  /* in place up to the range's output, an FE last */
  m = new_model("in place to the end", 13, 11, 4);
  c = must(model_add_conv(m, MODEL_INPUT, 4, 3, 2, 1, 1, true, &e), &e);
  c = must(model_add_relu(m, c, &e), &e);
  c = must(model_add_bn(m, c, &e), &e);
  must(model_add_fe(m, c, &e), &e);
  check_model(m, 63);
}

/* ---- pools ------------------------------------------------------------------- */

static void test_pools(void **state) {
  (void)state;
  static const int geo[][3] = {/* kernel, stride, pad */
                               {2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {3, 3, 0},
                               {1, 2, 0}, {2, 1, 1}, {5, 2, 2}};
  uint64_t seed = 70;
  for (int op = 0; op < 2; op++)
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++)
      for (int h = 12; h <= 13; h++) {
        err e = {0};
        char name[64];
        snprintf(name, sizeof name, "%s k%d s%d p%d h%d", op ? "avg" : "max",
                 geo[g][0], geo[g][1], geo[g][2], h);
        model *m = new_model(name, h, 11, 5);
        int l = op ? model_add_avgpool(m, MODEL_INPUT, geo[g][0], geo[g][1],
                                       geo[g][2], &e)
                   : model_add_maxpool(m, MODEL_INPUT, geo[g][0], geo[g][1],
                                       geo[g][2], &e);
        must(l, &e);
        m->layers[l].relu = (seed % 3) == 0;
        check_model(m, seed++);
      }
  /* a pool after a padded conv reads real rows only, never zero rows */
  err e = {0};
  model *m = new_model("conv avgpool conv", 13, 11, 3);
  int c = must(model_add_conv(m, MODEL_INPUT, 4, 3, 1, 1, 1, true, &e), &e);
  c = must(model_add_avgpool(m, c, 3, 2, 1, &e), &e);
  must(model_add_conv(m, c, 4, 3, 1, 1, 1, true, &e), &e);
  check_model(m, 90);
}

/* ---- global layers ------------------------------------------------------------ */

static void test_global(void **state) {
  (void)state;
  err e = {0};
  model *m = new_model("gap", 13, 11, 5);
  must(model_add_gap(m, MODEL_INPUT, &e), &e);
  check_model(m, 100);
  m = new_model("gap fc", 13, 11, 5);
  int l = must(model_add_gap(m, MODEL_INPUT, &e), &e);
  l = must(model_add_fc(m, l, 7, true, &e), &e);
  m->layers[l].relu = true;
  check_model(m, 101);
  m = new_model("flatten", 5, 3, 4);
  must(model_add_flatten(m, MODEL_INPUT, &e), &e);
  check_model(m, 102);
  m = new_model("conv flatten fc fc", 9, 7, 3);
  l = must(model_add_conv(m, MODEL_INPUT, 4, 3, 2, 1, 1, false, &e), &e);
  l = must(model_add_flatten(m, l, &e), &e);
  l = must(model_add_fc(m, l, 10, true, &e), &e);
  must(model_add_fc(m, l, 3, false, &e), &e);
  check_model(m, 103);
}

static void test_fe(void **state) {
  (void)state;
  err e = {0};
  model *m = new_model("fe", 13, 11, 6);
  must(model_add_fe(m, MODEL_INPUT, &e), &e);
  check_model(m, 110);
  m = new_model("fe relu", 13, 11, 6);
  int l = must(model_add_fe(m, MODEL_INPUT, &e), &e);
  m->layers[l].relu = true;
  check_model(m, 111);
  /* the compact unit: its FE input is computed with halos around the rows
   * each strip owns, and two FEs in one range pause twice */
  m = new_model("compact unit", 13, 11, 4);
  l = must(model_add_conv(m, MODEL_INPUT, 3, 1, 1, 0, 1, false, &e), &e);
  l = must(model_add_conv(m, l, 3, 3, 2, 1, 1, false, &e), &e);
  l = must(model_add_fe(m, l, &e), &e);
  l = must(model_add_conv(m, l, 3, 3, 1, 1, 1, false, &e), &e);
  l = must(model_add_fe(m, l, &e), &e);
  must(model_add_conv(m, l, 8, 1, 1, 0, 1, false, &e), &e);
  check_model(m, 112);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv_kernels), cmocka_unit_test(test_conv_asymmetric),
      cmocka_unit_test(test_conv_groups),  cmocka_unit_test(test_bn_relu),
      cmocka_unit_test(test_add),          cmocka_unit_test(test_pools),
      cmocka_unit_test(test_global),       cmocka_unit_test(test_fe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* fuse_test.c — fuse_model() keeps the function and removes what it claims:
 * every zoo model computes the same outputs fused and unfused (reference
 * executor on both), BN is folded only where that is exact. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fuse.h"
#include "runtime/ref.h"
#include "runtime/zoo.h"

static void fill_random(float *x, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
}

static int count_op(const model *m, model_op op) {
  int n = 0;
  for (int l = 0; l < m->n_layers; l++) n += m->layers[l].op == op;
  return n;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
  double peak = 0, diff = 0;
  for (size_t i = 0; i < n; i++) {
    if (fabs(a[i]) > peak) peak = fabs(a[i]);
    if (fabs(a[i] - b[i]) > diff) diff = fabs(a[i] - b[i]);
  }
  return peak > 0 ? diff / peak : diff;
}

static void check_same_function(const model *orig, const model *fused) {
  size_t in_n = model_shape_elems(orig->input);
  size_t out_n = model_shape_elems(orig->layers[orig->n_layers - 1].out);
  assert_int_equal(out_n, model_shape_elems(fused->layers[fused->n_layers - 1].out));
  float *in = malloc(in_n * sizeof *in);
  float *a = malloc(out_n * sizeof *a), *b = malloc(out_n * sizeof *b);
  fill_random(in, in_n, 7);
  err e = {0};
  assert_int_equal(ref_run(orig, in, a, &e), ERR_OK);
  assert_int_equal(ref_run(fused, in, b, &e), ERR_OK);
  double d = max_rel_diff(a, b, out_n);
  if (d > 1e-5) fail_msg("%s: fused differs by %g relative", orig->name, d);
  free(in);
  free(a);
  free(b);
}

static void test_zoo_models_keep_their_function(void **state) {
  (void)state;
  zoo_options o = zoo_defaults();
  o.in_h = o.in_w = 64;
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = NULL, *f = NULL;
    err e = {0};
    assert_int_equal(zoo_build(*name, &o, &m, &e), ERR_OK);
    assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
    assert_true(f->n_layers < m->n_layers);
    assert_int_equal(count_op(f, MODEL_OP_RELU), 0);
    check_same_function(m, f);
    model_destroy(m);
    model_destroy(f);
  }
}

static void test_bn_folds_only_where_exact(void **state) {
  (void)state;
  zoo_options o = zoo_defaults();
  o.in_h = o.in_w = 64;
  err e = {0};
  model *m = NULL, *f = NULL;
  /* ResNet: every BN follows a conv -> all fold. */
  assert_int_equal(zoo_build("resnet18", &o, &m, &e), ERR_OK);
  assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
  assert_int_equal(count_op(f, MODEL_OP_BN), 0);
  model_destroy(m);
  model_destroy(f);
  /* VGG original: conv, ReLU, BN, then a padded 3x3 conv or a pool: the
   * BN must stay (13 conv units). */
  assert_int_equal(zoo_build("vgg16", &o, &m, &e), ERR_OK);
  assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
  assert_int_equal(count_op(f, MODEL_OP_BN), 13);
  model_destroy(m);
  model_destroy(f);
}

/* Random weights and biases (seeds from `seed` on), BN scales in [0.5, 1.5]. */
static void fill_layers(model *m, uint32_t seed) {
  for (int l = 0; l < m->n_layers; l++) {
    model_layer *L = &m->layers[l];
    fill_random(L->weights, L->n_weights, seed + (uint32_t)l);
    if (L->bias) fill_random(L->bias, L->n_bias, seed + 100 + (uint32_t)l);
    if (L->op == MODEL_OP_BN)
      for (size_t i = 0; i < L->n_weights; i++) L->weights[i] = 0.5f + fabsf(L->weights[i]);
  }
}

/* A BN read by two layers, and one before a padded conv, stay; a BN before
 * an unpadded 1x1 conv folds. */
static void test_hand_built_cases(void **state) {
  (void)state;
  err e = {0};
  model_shape in = {9, 7, 4};
  model *m = model_create("hand", in);
  int c0 = model_add_conv(m, MODEL_INPUT, 8, 3, 1, 1, 1, false, &e);
  int r0 = model_add_relu(m, c0, &e);
  int b0 = model_add_bn(m, r0, &e);                        /* before padded conv */
  int c1 = model_add_conv(m, b0, 8, 3, 1, 1, 1, false, &e);
  int b1 = model_add_bn(m, c1, &e);                        /* folds back */
  int r2 = model_add_relu(m, b1, &e);
  int b2 = model_add_bn(m, r2, &e);                        /* read twice */
  int c2 = model_add_conv(m, b2, 8, 1, 1, 0, 1, true, &e);
  int c3 = model_add_conv(m, b2, 8, 1, 2, 0, 1, false, &e);
  int c4 = model_add_conv(m, c3, 8, 1, 1, 0, 1, false, &e);
  (void)c4;
  int r1 = model_add_relu(m, c2, &e);
  int b3 = model_add_bn(m, r1, &e);                        /* folds forward */
  int c5 = model_add_conv(m, b3, 8, 1, 1, 0, 1, false, &e);
  assert_true(c5 > 0);
  fill_layers(m, 100);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  model *f = NULL;
  assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
  /* b0 (padded consumer) and b2 (two readers) stay; b1, b3 fold. */
  assert_int_equal(count_op(f, MODEL_OP_BN), 2);
  assert_true(f->layers[model_find_layer(f, m->layers[c0].name)].relu);
  check_same_function(m, f);
  model_destroy(m);
  model_destroy(f);
}

/* conv, ReLU, BN, 2x2 max pool, 1x1 conv: with every BN scale >= 0 the BN
 * moves behind the pool and folds into the 1x1 conv; one negative scale
 * (max does not commute with it) keeps it where it is. */
static model *bn_before_pool(float first_scale, err *e) {
  model_shape in = {8, 6, 3};
  model *m = model_create("bn_pool", in);
  int c0 = model_add_conv(m, MODEL_INPUT, 4, 3, 1, 1, 1, false, e);
  int r0 = model_add_relu(m, c0, e);
  int b0 = model_add_bn(m, r0, e);
  int p0 = model_add_maxpool(m, b0, 2, 2, 0, e);
  int c1 = model_add_conv(m, p0, 5, 1, 1, 0, 1, true, e);
  assert_true(c1 > 0);
  fill_layers(m, 300);
  m->layers[b0].weights[0] = first_scale;
  assert_int_equal(model_finalize(m, e), ERR_OK);
  return m;
}

static void test_bn_moves_behind_maxpool(void **state) {
  (void)state;
  err e = {0};
  const float scales[] = {0.0f, 0.75f, -0.75f};
  for (int i = 0; i < 3; i++) {
    model *m = bn_before_pool(scales[i], &e), *f = NULL;
    assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
    assert_int_equal(count_op(f, MODEL_OP_BN), scales[i] < 0 ? 1 : 0);
    assert_int_equal(count_op(f, MODEL_OP_MAXPOOL), 1);
    check_same_function(m, f);
    model_destroy(m);
    model_destroy(f);
  }
}

/* Two 1x1 convs in a row, nothing between: 4 -> 16 -> 5 (stride 2 on the
 * second) merges into one 4 -> 5 conv of stride 2; 4 -> 2 -> 16 (cheaper
 * as two), one with a ReLU, and one whose output has two readers stay. */
static model *pointwise_chain(bool relu_between, int mid, bool second_reader, err *e) {
  model_shape in = {7, 9, 4};
  model *m = model_create("pointwise", in);
  int c0 = model_add_conv(m, MODEL_INPUT, mid, 1, 1, 0, 1, true, e);
  int r0 = relu_between ? model_add_relu(m, c0, e) : c0;
  int c1 = model_add_conv(m, r0, mid == 16 ? 5 : 16, 1, 2, 0, 1, true, e);
  if (second_reader) {
    int c2 = model_add_conv(m, c0, c1 >= 0 ? m->layers[c1].out_channels : 1, 1, 2, 0, 1,
                            false, e);
    model_add_add(m, c1, c2, e);
  }
  fill_layers(m, 500);
  assert_int_equal(model_finalize(m, e), ERR_OK);
  return m;
}

static void test_pointwise_pairs_merge(void **state) {
  (void)state;
  err e = {0};
  struct { bool relu; int mid; bool second; int convs; } cases[] = {
      {false, 16, false, 1}, {true, 16, false, 2}, {false, 2, false, 2}, {false, 16, true, 3}};
  for (int i = 0; i < 4; i++) {
    model *m = pointwise_chain(cases[i].relu, cases[i].mid, cases[i].second, &e), *f = NULL;
    assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
    assert_int_equal(count_op(f, MODEL_OP_CONV), cases[i].convs);
    if (cases[i].convs == 1) assert_int_equal(f->layers[0].stride_h, 2);
    check_same_function(m, f);
    model_destroy(m);
    model_destroy(f);
  }
  /* resnet18c: every unit's t -> C and C -> t convs become one (8 units). */
  zoo_options o = zoo_defaults();
  o.in_h = o.in_w = 64;
  model *m = NULL, *f = NULL;
  assert_int_equal(zoo_build("resnet18c", &o, &m, &e), ERR_OK);
  assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
  assert_int_equal(count_op(f, MODEL_OP_CONV), count_op(m, MODEL_OP_CONV) - 8);
  double before = 0, after = 0;
  for (int l = 0; l < m->n_layers; l++) before += m->layers[l].flops;
  for (int l = 0; l < f->n_layers; l++) after += f->layers[l].flops;
  assert_true(after < 0.9 * before); /* 0.0316 -> 0.0277 GFLOP */
  model_destroy(m);
  model_destroy(f);
}

static void test_rejects_unfinalized(void **state) {
  (void)state;
  err e = {0};
  model *f = NULL;
  assert_int_not_equal(fuse_model(NULL, &f, &e), ERR_OK);
  assert_true(strlen(e.msg) > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zoo_models_keep_their_function),
      cmocka_unit_test(test_bn_folds_only_where_exact),
      cmocka_unit_test(test_hand_built_cases),
      cmocka_unit_test(test_bn_moves_behind_maxpool),
      cmocka_unit_test(test_pointwise_pairs_merge),
      cmocka_unit_test(test_rejects_unfinalized),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

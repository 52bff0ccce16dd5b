/* ref_test.c — the reference executor against hand-computed answers.
 *
 * Every expected value below was worked out by hand from the operator's
 * definition (model.h), not by running code, so a wrong loop in ref.c cannot
 * agree with itself here. Inputs are chosen so that transposed weights,
 * flipped kernels, padding counted in a divisor or a wrong flatten order
 * each give a different answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model.h"
#include "runtime/ref.h"

/* ---- helpers ------------------------------------------------------------- */

static model *mk(int h, int w, int c) {
  model_shape s = {h, w, c};
  model *m = model_create("t", s);
  assert_non_null(m);
  return m;
}

static void set_floats(float *dst, size_t n_dst, const float *src, size_t n) {
  assert_int_equal(n_dst, n);
  memcpy(dst, src, n * sizeof *dst);
}

#define SET_W(m, l, ...)                                               \
  do {                                                                 \
    const float v_[] = {__VA_ARGS__};                                  \
    set_floats((m)->layers[l].weights, (m)->layers[l].n_weights, v_,   \
               sizeof v_ / sizeof v_[0]);                              \
  } while (0)
#define SET_B(m, l, ...)                                               \
  do {                                                                 \
    const float v_[] = {__VA_ARGS__};                                  \
    set_floats((m)->layers[l].bias, (m)->layers[l].n_bias, v_,         \
               sizeof v_ / sizeof v_[0]);                              \
  } while (0)

/* Finalizes m, runs it on `in` and checks the last layer's output against
 * `want` (n values, NHWC), to float precision. */
static void expect_run(model *m, const float *in, const float *want,
                       size_t n) {
  err e = {0};
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  size_t n_out = model_shape_elems(m->layers[m->n_layers - 1].out);
  assert_int_equal(n_out, n);
  float *out = malloc(n * sizeof *out);
  assert_non_null(out);
  assert_int_equal(ref_run(m, in, out, &e), ERR_OK);
  for (size_t i = 0; i < n; i++) {
    double tol = 1e-5 * (1.0 + fabs(want[i]));
    if (fabs(out[i] - want[i]) > tol)
      fail_msg("output %zu: got %.9g, want %.9g", i, out[i], want[i]);
  }
  free(out);
}

static const float k_one_to_nine[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

/* ---- convolution --------------------------------------------------------- */

/* 3x3 ones with "same" padding: each output is its 3x3 neighbourhood's sum. */
static void test_conv_3x3_same(void **state) {
  (void)state;
  model *m = mk(3, 3, 1);
  int l = model_add_conv(m, MODEL_INPUT, 1, 3, 1, 1, 1, true, NULL);
  assert_int_equal(l, 0);
  for (int i = 0; i < 9; i++) m->layers[l].weights[i] = 1;
  SET_B(m, l, 0.5f);
  const float want[9] = {12.5f, 21.5f, 16.5f, 27.5f, 45.5f,
                         33.5f, 24.5f, 39.5f, 28.5f};
  expect_run(m, k_one_to_nine, want, 9);
  model_destroy(m);
}

/* A single 1 at kernel (ky=0, kx=2): a correlation (not a flipped
 * convolution) reads in[y-1][x+1]; the padding reads as zero. */
static void test_conv_not_flipped(void **state) {
  (void)state;
  model *m = mk(3, 3, 1);
  int l = model_add_conv(m, MODEL_INPUT, 1, 3, 1, 1, 1, false, NULL);
  SET_W(m, l, 0, 0, 1, 0, 0, 0, 0, 0, 0);
  const float want[9] = {0, 0, 0, 2, 3, 0, 5, 6, 0};
  expect_run(m, k_one_to_nine, want, 9);
  model_destroy(m);
}

/* Kernel 1..9 over input 1..9 without padding: sum of squares 285. */
static void test_conv_valid_dot(void **state) {
  (void)state;
  model *m = mk(3, 3, 1);
  int l = model_add_conv(m, MODEL_INPUT, 1, 3, 1, 0, 1, false, NULL);
  set_floats(m->layers[l].weights, m->layers[l].n_weights, k_one_to_nine, 9);
  const float want[1] = {285};
  expect_run(m, k_one_to_nine, want, 1);
  model_destroy(m);
}

/* 2x3 kernel of ones, stride 2x1, padding top 1, left 0, bottom 0, right 2
 * over v(y, x) = 10y + x, 4 x 3. Output 2 x 3: row 0 sees image row 0
 * only (row -1 is padding), row 1 sees rows 1 and 2; row 3 is never read. */
static void test_conv_stride_asymmetric_padding(void **state) {
  (void)state;
  model *m = mk(4, 3, 1);
  int l = model_add_conv_ex(m, MODEL_INPUT, 1, 2, 3, 2, 1, /*top*/ 1,
                            /*left*/ 0, /*bottom*/ 0, /*right*/ 2, 1, false,
                            NULL);
  assert_int_equal(l, 0);
  for (int i = 0; i < 6; i++) m->layers[l].weights[i] = 1;
  float in[12];
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 3; x++) in[y * 3 + x] = (float)(10 * y + x);
  const float want[6] = {3, 3, 2, 96, 66, 34};
  expect_run(m, in, want, 6);
  model_destroy(m);
}

/* 1x1, 2 -> 2 channels: OHWI weights [o][i], so out = W x + b. */
static void test_conv_channels_ohwi(void **state) {
  (void)state;
  model *m = mk(1, 2, 2);
  int l = model_add_conv(m, MODEL_INPUT, 2, 1, 1, 0, 1, true, NULL);
  SET_W(m, l, 1, 10, 100, 1000);
  SET_B(m, l, 0.5f, -1);
  const float in[4] = {1, 2, 3, 4}; /* pixel 0 = (1, 2), pixel 1 = (3, 4) */
  const float want[4] = {21.5f, 2099, 43.5f, 4299};
  expect_run(m, in, want, 4);
  model_destroy(m);
}

/* A 2x2 kernel over 2 input channels: weight [o][ky][kx][i]. */
static void test_conv_ohwi_spatial(void **state) {
  (void)state;
  model *m = mk(2, 2, 2);
  int l = model_add_conv(m, MODEL_INPUT, 1, 2, 1, 0, 1, false, NULL);
  /* (ky,kx,i): (0,0,0)=1 (0,0,1)=2 (0,1,0)=3 (0,1,1)=4 (1,0,0)=5 ... */
  SET_W(m, l, 1, 2, 3, 4, 5, 6, 7, 8);
  /* pixel (y,x) channel c = 100*y + 10*x + c */
  const float in[8] = {0, 1, 10, 11, 100, 101, 110, 111};
  /* 1*0+2*1 + 3*10+4*11 + 5*100+6*101 + 7*110+8*111 */
  const float want[1] = {2 + 74 + 1106 + 1658};
  expect_run(m, in, want, 1);
  model_destroy(m);
}

/* Two groups of 2 -> 1 channels with a fused ReLU: out0 = x0 + x1,
 * out1 = x2 - x3 clamped at 0. */
static void test_conv_grouped_relu(void **state) {
  (void)state;
  model *m = mk(1, 1, 4);
  int l = model_add_conv(m, MODEL_INPUT, 2, 1, 1, 0, 2, false, NULL);
  SET_W(m, l, 1, 1, 1, -1);
  m->layers[l].relu = true;
  const float in[4] = {1, 2, 3, 4};
  const float want[2] = {3, 0};
  expect_run(m, in, want, 2);
  /* Without the flag the negative value passes. */
  m->layers[l].relu = false;
  const float want_raw[2] = {3, -1};
  expect_run(m, in, want_raw, 2);
  model_destroy(m);
}

/* Depthwise 3x3 "same": channel 0 sums its neighbourhood, channel 1 doubles
 * the centre; channels never mix. */
static void test_conv_depthwise(void **state) {
  (void)state;
  model *m = mk(3, 3, 2);
  int l = model_add_conv(m, MODEL_INPUT, 2, 3, 1, 1, 2, false, NULL);
  float *w = m->layers[l].weights; /* [2][3][3][1] */
  for (int i = 0; i < 9; i++) w[i] = 1;
  w[9 + 4] = 2;
  float in[18];
  for (int p = 0; p < 9; p++) {
    in[2 * p] = k_one_to_nine[p];
    in[2 * p + 1] = -k_one_to_nine[p];
  }
  const float sums[9] = {12, 21, 16, 27, 45, 33, 24, 39, 28};
  float want[18];
  for (int p = 0; p < 9; p++) {
    want[2 * p] = sums[p];
    want[2 * p + 1] = -2 * k_one_to_nine[p];
  }
  expect_run(m, in, want, 18);
  model_destroy(m);
}

/* Depthwise with multiplier 2: output channel oc reads input channel oc/2. */
static void test_conv_depth_multiplier(void **state) {
  (void)state;
  model *m = mk(1, 1, 2);
  int l = model_add_conv(m, MODEL_INPUT, 4, 1, 1, 0, 2, false, NULL);
  SET_W(m, l, 1, 2, 3, 4);
  const float in[2] = {1, 2};
  const float want[4] = {1, 2, 6, 8};
  expect_run(m, in, want, 4);
  model_destroy(m);
}

/* ---- element-wise -------------------------------------------------------- */

static void test_bn(void **state) {
  (void)state;
  model *m = mk(1, 2, 2);
  int l = model_add_bn(m, MODEL_INPUT, NULL);
  SET_W(m, l, 2, -1);   /* scale */
  SET_B(m, l, 0.5f, 3); /* shift */
  const float in[4] = {1, 2, 3, 4};
  const float want[4] = {2.5f, 1, 6.5f, -1};
  expect_run(m, in, want, 4);
  m->layers[l].relu = true;
  const float want_relu[4] = {2.5f, 1, 6.5f, 0};
  expect_run(m, in, want_relu, 4);
  model_destroy(m);
}

static void test_relu(void **state) {
  (void)state;
  model *m = mk(1, 1, 4);
  model_add_relu(m, MODEL_INPUT, NULL);
  const float in[4] = {-2, 0, 0.25f, 7};
  const float want[4] = {0, 0, 0.25f, 7};
  expect_run(m, in, want, 4);
  model_destroy(m);
}

/* Residual: conv(x) + x, and the ReLU fused into the add. */
static void test_add(void **state) {
  (void)state;
  model *m = mk(1, 2, 1);
  int c = model_add_conv(m, MODEL_INPUT, 1, 1, 1, 0, 1, false, NULL);
  SET_W(m, c, -3);
  int a = model_add_add(m, c, MODEL_INPUT, NULL);
  const float in[2] = {1, -2};
  const float want[2] = {-2, 4};
  expect_run(m, in, want, 2);
  m->layers[a].relu = true;
  const float want_relu[2] = {0, 4};
  expect_run(m, in, want_relu, 2);
  model_destroy(m);
}

/* ---- pools --------------------------------------------------------------- */

/* All-negative input: a zero from the padding would win if it counted. */
static void test_maxpool_padding_never_wins(void **state) {
  (void)state;
  model *m = mk(3, 3, 1);
  model_add_maxpool(m, MODEL_INPUT, 3, 2, 1, NULL);
  float in[9];
  for (int i = 0; i < 9; i++) in[i] = -k_one_to_nine[i];
  const float want[4] = {-1, -2, -4, -5};
  expect_run(m, in, want, 4);
  model_destroy(m);
}

static void test_maxpool_channels(void **state) {
  (void)state;
  model *m = mk(2, 2, 2);
  model_add_maxpool(m, MODEL_INPUT, 2, 2, 0, NULL);
  const float in[8] = {1, 8, 5, 2, 3, 6, 4, 7};
  const float want[2] = {5, 8};
  expect_run(m, in, want, 2);
  model_destroy(m);
}

/* The divisor counts only real pixels: corner windows of 3x3/pad 1 hold 4. */
static void test_avgpool_padding_excluded(void **state) {
  (void)state;
  model *m = mk(3, 3, 1);
  model_add_avgpool(m, MODEL_INPUT, 3, 2, 1, NULL);
  const float want[4] = {3, 4, 6, 7};
  expect_run(m, k_one_to_nine, want, 4);
  model_destroy(m);

  m = mk(3, 3, 1);
  model_add_avgpool(m, MODEL_INPUT, 3, 1, 1, NULL);
  /* edge windows hold 6 pixels, the centre 9 */
  const float want_s1[9] = {3, 3.5f, 4, 4.5f, 5, 5.5f, 6, 6.5f, 7};
  expect_run(m, k_one_to_nine, want_s1, 9);
  model_destroy(m);
}

static void test_gap(void **state) {
  (void)state;
  model *m = mk(2, 2, 2);
  model_add_gap(m, MODEL_INPUT, NULL);
  const float in[8] = {1, -1, 2, -2, 3, -3, 10, 0};
  const float want[2] = {4, -1.5f};
  expect_run(m, in, want, 2);
  model_destroy(m);
}

/* ---- fully connected, flatten, feature enhancement ----------------------- */

static void test_fc(void **state) {
  (void)state;
  model *m = mk(1, 1, 3);
  int l = model_add_fc(m, MODEL_INPUT, 2, true, NULL);
  SET_W(m, l, 1, 2, 3, 4, 5, 6); /* [out][in] */
  SET_B(m, l, 0.5f, -0.5f);
  const float in[3] = {1, 1, 2};
  const float want[2] = {9.5f, 20.5f};
  expect_run(m, in, want, 2);
  model_destroy(m);
}

/* GAP then FC without bias, ReLU fused into the FC. */
static void test_gap_fc_relu(void **state) {
  (void)state;
  model *m = mk(2, 1, 2);
  int g = model_add_gap(m, MODEL_INPUT, NULL);
  int l = model_add_fc(m, g, 2, false, NULL);
  SET_W(m, l, 1, 1, 1, -1);
  m->layers[l].relu = true;
  const float in[4] = {1, 2, 3, 6}; /* means (2, 4) */
  const float want[2] = {6, 0};
  expect_run(m, in, want, 2);
  model_destroy(m);
}

/* NHWC (y, x, c) at (y*W + x)*C + c goes to (c*H + y)*W + x. */
static void test_flatten_order(void **state) {
  (void)state;
  model *m = mk(2, 2, 3);
  model_add_flatten(m, MODEL_INPUT, NULL);
  float in[12];
  for (int i = 0; i < 12; i++) in[i] = (float)i;
  const float want[12] = {0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11};
  expect_run(m, in, want, 12);
  model_destroy(m);
}

/* Flatten then FC: the classifier sees the PyTorch order. */
static void test_flatten_fc(void **state) {
  (void)state;
  model *m = mk(1, 2, 2);
  int f = model_add_flatten(m, MODEL_INPUT, NULL);
  int l = model_add_fc(m, f, 1, false, NULL);
  SET_W(m, l, 1, 10, 100, 1000); /* order c0x0, c0x1, c1x0, c1x1 */
  const float in[4] = {1, 2, 3, 4}; /* x0 = (1, 2), x1 = (3, 4) */
  const float want[1] = {1 + 30 + 200 + 4000};
  expect_run(m, in, want, 1);
  model_destroy(m);
}

/* Means (2.5, 1); W = [[0.4, 0], [1, -3.5]] (out-major) gives z = (1, -1),
 * scale = (sigmoid(1), sigmoid(-1)) = (0.7310585786, 0.2689414214). A
 * transposed W would give z0 = 2. */
static void test_fe(void **state) {
  (void)state;
  model *m = mk(2, 2, 2);
  int l = model_add_fe(m, MODEL_INPUT, NULL);
  SET_W(m, l, 0.4f, 0, 1, -3.5f);
  const float in[8] = {1, 0, 2, 0, 3, 0, 4, 4};
  const double s0 = 0.7310585786300049, s1 = 0.2689414213699951;
  const float want[8] = {(float)(1 * s0), 0, (float)(2 * s0), 0,
                         (float)(3 * s0), 0, (float)(4 * s0), (float)(4 * s1)};
  expect_run(m, in, want, 8);
  model_destroy(m);
}

/* FE with fused ReLU: negative inputs scaled then clamped. */
static void test_fe_relu(void **state) {
  (void)state;
  model *m = mk(1, 2, 1);
  int l = model_add_fe(m, MODEL_INPUT, NULL);
  SET_W(m, l, 0); /* scale sigmoid(0) = 0.5 whatever the mean */
  m->layers[l].relu = true;
  const float in[2] = {-4, 6};
  const float want[2] = {0, 3};
  expect_run(m, in, want, 2);
  model_destroy(m);
}

/* ---- whole graphs and errors --------------------------------------------- */

/* ref_run (which frees tensors early) agrees with ref_run_all on a graph
 * with a residual branch, a dead branch and layers read twice. */
static void test_run_matches_run_all(void **state) {
  (void)state;
  model *m = mk(6, 5, 3);
  err e = {0};
  int c1 = model_add_conv(m, MODEL_INPUT, 4, 3, 1, 1, 1, true, &e);
  int c2 = model_add_conv(m, c1, 4, 3, 1, 1, 2, false, &e);
  model_add_relu(m, c1, &e); /* dead: nobody reads it */
  int a = model_add_add(m, c2, c1, &e);
  int b = model_add_add(m, a, a, &e);
  int p = model_add_maxpool(m, b, 2, 2, 0, &e);
  int fe = model_add_fe(m, p, &e);
  int g = model_add_gap(m, fe, &e);
  int fc = model_add_fc(m, g, 3, true, &e);
  assert_true(fc >= 0);
  unsigned seed = 7;
  for (int l = 0; l < m->n_layers; l++) {
    for (size_t i = 0; i < m->layers[l].n_weights; i++) {
      seed = seed * 1103515245u + 12345u;
      m->layers[l].weights[i] = (float)((seed >> 16) % 200) / 100.0f - 1.0f;
    }
    for (size_t i = 0; i < m->layers[l].n_bias; i++)
      m->layers[l].bias[i] = 0.1f * (float)i;
  }
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  float in[6 * 5 * 3];
  for (int i = 0; i < 90; i++) in[i] = (float)((i * 37) % 11) - 5.0f;
  float **acts = NULL;
  assert_int_equal(ref_run_all(m, in, &acts, &e), ERR_OK);
  float out[3];
  assert_int_equal(ref_run(m, in, out, &e), ERR_OK);
  for (int i = 0; i < 3; i++) assert_true(out[i] == acts[fc][i]);
  /* The add of a tensor with itself doubles it. */
  for (size_t i = 0; i < model_shape_elems(m->layers[b].out); i++)
    assert_true(acts[b][i] == 2 * acts[a][i]);
  ref_free_acts(m, acts);
  model_destroy(m);
}

static void test_errors(void **state) {
  (void)state;
  model *m = mk(3, 3, 1);
  int l = model_add_maxpool(m, MODEL_INPUT, 3, 1, 1, NULL);
  float in[9] = {0}, out[9];
  float **acts = NULL;
  err e = {0};
  /* model_add_* leaves the model unfinalized until model_finalize(). */
  assert_int_equal(ref_run(m, in, out, &e), ERR_INVALID);
  assert_true(strlen(e.msg) > 0);
  assert_int_equal(ref_run_all(m, in, &acts, &e), ERR_INVALID);
  assert_null(acts);
  assert_int_equal(ref_run(NULL, in, out, &e), ERR_INVALID);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  assert_int_equal(ref_run(m, NULL, out, &e), ERR_INVALID);
  assert_int_equal(ref_run(m, in, NULL, &e), ERR_INVALID);
  assert_int_equal(ref_run_all(m, in, NULL, &e), ERR_INVALID);
  /* Padding as wide as the kernel could leave a window with nothing but
   * padding. model_finalize refuses it; set by hand after finalizing, the
   * reference executor still refuses rather than make a value up. */
  m->layers[l].pad_top = 3;
  m->layers[l].pad_bottom = 3;
  e.msg[0] = 0;
  assert_int_equal(ref_run(m, in, out, &e), ERR_UNSUPPORTED);
  assert_true(strlen(e.msg) > 0);
  /* A NULL err is allowed. */
  assert_int_equal(ref_run(m, in, out, NULL), ERR_UNSUPPORTED);
  model_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv_3x3_same),
      cmocka_unit_test(test_conv_not_flipped),
      cmocka_unit_test(test_conv_valid_dot),
      cmocka_unit_test(test_conv_stride_asymmetric_padding),
      cmocka_unit_test(test_conv_channels_ohwi),
      cmocka_unit_test(test_conv_ohwi_spatial),
      cmocka_unit_test(test_conv_grouped_relu),
      cmocka_unit_test(test_conv_depthwise),
      cmocka_unit_test(test_conv_depth_multiplier),
      cmocka_unit_test(test_bn),
      cmocka_unit_test(test_relu),
      cmocka_unit_test(test_add),
      cmocka_unit_test(test_maxpool_padding_never_wins),
      cmocka_unit_test(test_maxpool_channels),
      cmocka_unit_test(test_avgpool_padding_excluded),
      cmocka_unit_test(test_gap),
      cmocka_unit_test(test_fc),
      cmocka_unit_test(test_gap_fc_relu),
      cmocka_unit_test(test_flatten_order),
      cmocka_unit_test(test_flatten_fc),
      cmocka_unit_test(test_fe),
      cmocka_unit_test(test_fe_relu),
      cmocka_unit_test(test_run_matches_run_all),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

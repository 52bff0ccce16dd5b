/* model_test.c — the model graph (runtime/model.c): shapes, FLOPs,
 * parameter counts, every way bad input must fail (with a code and a
 * message, never a crash), cuts, receptive fields and FE ownership worked
 * out by hand. model_random_test.c holds receptive fields and FE ownership
 * of random graphs against brute force. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "runtime/model.h"

static model *mk(int h, int w, int c) {
  model_shape s = {h, w, c};
  model *m = model_create("t", s);
  assert_non_null(m);
  return m;
}

static void expect_shape(const model *m, int l, int h, int w, int c) {
  model_shape s = model_tensor_shape(m, l);
  if (s.h != h || s.w != w || s.c != c)
    fail_msg("layer %d: %dx%dx%d, want %dx%dx%d", l, s.h, s.w, s.c, h, w, c);
}

/* A failing call, with `e` cleared first so that the message checked is
 * the one this call wrote. ADD_FAILS for model_add_* (which return MODEL_ADD_FAILED),
 * CALL_FAILS for functions that return the err_code. */
#define ADD_FAILS(call, want)            \
  do {                                   \
    memset(&e, 0, sizeof e);             \
    assert_int_equal((call), MODEL_ADD_FAILED); \
    assert_int_equal(e.code, (want));    \
    assert_true(strlen(e.msg) > 0);      \
  } while (0)
#define CALL_FAILS(call, want)           \
  do {                                   \
    memset(&e, 0, sizeof e);             \
    assert_int_equal((call), (want));    \
    assert_int_equal(e.code, (want));    \
    assert_true(strlen(e.msg) > 0);      \
  } while (0)

static bool rows_equal(model_rows a, model_rows b) {
  if (a.lo >= a.hi && b.lo >= b.hi) return true; /* both empty */
  return a.lo == b.lo && a.hi == b.hi;
}

/* ---- shapes, FLOPs, parameters ------------------------------------------- */

static void test_shapes_and_flops(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(7, 9, 3);
  /* kernel 3x2, stride 2x3, padding top 1 left 0 bottom 2 right 1 */
  int c = model_add_conv_ex(m, MODEL_INPUT, 4, 3, 2, 2, 3, 1, 0, 2, 1, 1,
                            true, &e);
  expect_shape(m, c, 4, 3, 4); /* (7+3-3)/2+1, (9+1-2)/3+1 */
  assert_true(m->layers[c].flops == 2.0 * 4 * 3 * 4 * 3 * 3 * 2);
  int g = model_add_conv(m, c, 2, 3, 1, 1, 2, false, &e); /* 2 groups */
  expect_shape(m, g, 4, 3, 2);
  assert_true(m->layers[g].flops == 2.0 * 4 * 3 * 2 * 2 * 3 * 3);
  int bn = model_add_bn(m, g, &e);
  int r = model_add_relu(m, bn, &e);
  expect_shape(m, bn, 4, 3, 2);
  expect_shape(m, r, 4, 3, 2);
  int mp = model_add_maxpool(m, r, 3, 2, 1, &e);
  expect_shape(m, mp, 2, 2, 2); /* (4+2-3)/2+1, (3+2-3)/2+1 */
  int ap = model_add_avgpool(m, r, 2, 2, 0, &e);
  expect_shape(m, ap, 2, 1, 2);
  int fe = model_add_fe(m, mp, &e);
  expect_shape(m, fe, 2, 2, 2);
  assert_true(m->layers[fe].flops == 2.0 * 2 * 2);
  int ad = model_add_add(m, fe, mp, &e);
  expect_shape(m, ad, 2, 2, 2);
  int fl = model_add_flatten(m, ad, &e);
  expect_shape(m, fl, 1, 1, 8);
  int fc = model_add_fc(m, fl, 5, true, &e);
  expect_shape(m, fc, 1, 1, 5);
  assert_true(m->layers[fc].flops == 2.0 * 8 * 5);
  int gp = model_add_gap(m, ad, &e);
  expect_shape(m, gp, 1, 1, 2);
  expect_shape(m, MODEL_INPUT, 7, 9, 3);
  assert_int_equal(model_finalize(m, &e), ERR_OK);

  double total = 2.0 * 4 * 3 * 4 * 3 * 3 * 2 + 2.0 * 4 * 3 * 2 * 2 * 3 * 3 +
                 8.0 + 80.0;
  assert_true(model_flops(m) == total);
  assert_true(model_range_flops(m, c, c + 1) == m->layers[c].flops);
  assert_true(model_range_flops(m, g, m->n_layers) == total - m->layers[c].flops);
  /* conv 4*3*2*3 + 4, conv 2*3*3*2, bn 2+2, fe 2*2, fc 8*5 + 5 */
  assert_int_equal(model_param_count(m), 72 + 4 + 36 + 4 + 4 + 45);
  assert_int_equal(model_shape_elems(m->layers[c].out), 48);
  assert_int_equal(model_find_layer(m, m->layers[fc].name), fc);
  assert_int_equal(model_find_layer(m, "no such layer"), -1);
  assert_string_equal(model_op_name(MODEL_OP_FE), "feature_enhance");
  assert_string_equal(model_op_name(MODEL_OP_COUNT), "unknown");
  model_destroy(m);
}

/* BN starts as identity (scale 1, shift 0); weights are zero-filled. */
static void test_initial_weights_and_clone(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(4, 4, 2);
  int c = model_add_conv(m, MODEL_INPUT, 2, 3, 1, 1, 1, true, &e);
  int bn = model_add_bn(m, c, &e);
  for (size_t i = 0; i < m->layers[c].n_weights; i++)
    assert_true(m->layers[c].weights[i] == 0.0f);
  assert_true(m->layers[bn].weights[0] == 1.0f && m->layers[bn].bias[1] == 0);
  m->layers[c].weights[5] = 3.0f;
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  model *k = model_clone(m, &e);
  assert_non_null(k);
  assert_true(k->finalized);
  assert_int_equal(k->n_layers, 2);
  assert_true(k->layers[c].weights != m->layers[c].weights);
  assert_true(k->layers[c].weights[5] == 3.0f);
  k->layers[c].weights[5] = 4.0f; /* deep: the original is unchanged */
  assert_true(m->layers[c].weights[5] == 3.0f);
  assert_int_equal(model_param_count(k), model_param_count(m));
  model_destroy(k);
  model_destroy(m);
}

/* ---- bad input ----------------------------------------------------------- */

static void test_impossible_shapes(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(3, 3, 4);
  /* kernel bigger than the input; with padding it fits */
  ADD_FAILS(model_add_conv(m, MODEL_INPUT, 2, 5, 1, 0, 1, false, &e), ERR_SHAPE);
  assert_int_equal(model_add_conv(m, MODEL_INPUT, 2, 5, 1, 1, 1, false, &e), 0);
  ADD_FAILS(model_add_maxpool(m, 0, 2, 1, 0, &e), ERR_SHAPE); /* 1x1 input */
  ADD_FAILS(model_add_avgpool(m, MODEL_INPUT, 4, 1, 0, &e), ERR_SHAPE);
  /* groups that do not divide the input or the output channels */
  ADD_FAILS(model_add_conv(m, MODEL_INPUT, 3, 1, 1, 0, 3, false, &e), ERR_SHAPE);
  ADD_FAILS(model_add_conv(m, MODEL_INPUT, 3, 1, 1, 0, 2, false, &e), ERR_SHAPE);
  /* add of mismatched shapes: channels and size, then size only */
  ADD_FAILS(model_add_add(m, 0, MODEL_INPUT, &e), ERR_SHAPE);
  int p = model_add_conv(m, MODEL_INPUT, 4, 2, 1, 0, 1, false, &e);
  assert_int_equal(p, 1);
  ADD_FAILS(model_add_add(m, p, MODEL_INPUT, &e), ERR_SHAPE);
  /* FC on a 3x3 tensor */
  ADD_FAILS(model_add_fc(m, MODEL_INPUT, 2, false, &e), ERR_SHAPE);
  /* nonsense arguments */
  ADD_FAILS(model_add_conv(m, MODEL_INPUT, 0, 1, 1, 0, 1, false, &e),
            ERR_INVALID);
  ADD_FAILS(model_add_conv(m, MODEL_INPUT, 2, 1, 0, 0, 1, false, &e),
            ERR_INVALID);
  ADD_FAILS(model_add_conv(m, MODEL_INPUT, 2, 1, 1, -1, 1, false, &e),
            ERR_INVALID);
  ADD_FAILS(model_add_conv(m, MODEL_INPUT, 2, 0, 1, 0, 1, false, &e),
            ERR_INVALID);
  ADD_FAILS(model_add_conv(m, MODEL_INPUT, 2, 1, 1, 0, 0, false, &e),
            ERR_INVALID);
  ADD_FAILS(model_add_maxpool(m, MODEL_INPUT, 2, 1, 2, &e), ERR_INVALID);
  ADD_FAILS(model_add_avgpool(m, MODEL_INPUT, 0, 1, 0, &e), ERR_INVALID);
  ADD_FAILS(model_add_maxpool(m, MODEL_INPUT, 2, 0, 0, &e), ERR_INVALID);
  ADD_FAILS(model_add_fc(m, MODEL_INPUT, 0, false, &e), ERR_INVALID);
  /* Failures left the model as it was. */
  assert_int_equal(m->n_layers, 2);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  model_destroy(m);

  /* An empty input, a model without layers, no model */
  m = mk(0, 3, 1);
  CALL_FAILS(model_finalize(m, &e), ERR_SHAPE);
  model_destroy(m);
  m = mk(2, 2, 1);
  CALL_FAILS(model_finalize(m, &e), ERR_INVALID);
  CALL_FAILS(model_finalize(NULL, &e), ERR_INVALID);
  model_destroy(m);
}

static void test_missing_inputs(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(4, 4, 1);
  ADD_FAILS(model_add_relu(m, 0, &e), ERR_RANGE); /* no layer 0 yet */
  int r = model_add_relu(m, MODEL_INPUT, &e);
  assert_int_equal(r, 0);
  ADD_FAILS(model_add_conv(m, 5, 1, 1, 1, 0, 1, false, &e), ERR_RANGE);
  ADD_FAILS(model_add_conv_ex(m, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, false, &e),
            ERR_RANGE);
  ADD_FAILS(model_add_bn(m, -2, &e), ERR_RANGE);
  ADD_FAILS(model_add_add(m, r, 1, &e), ERR_RANGE);
  ADD_FAILS(model_add_add(m, 2, r, &e), ERR_RANGE);
  ADD_FAILS(model_add_fe(m, 3, &e), ERR_RANGE);
  ADD_FAILS(model_add_gap(m, 7, &e), ERR_RANGE);
  ADD_FAILS(model_add_flatten(m, -5, &e), ERR_RANGE);
  ADD_FAILS(model_add_maxpool(m, 1, 1, 1, 0, &e), ERR_RANGE);
  ADD_FAILS(model_add_avgpool(m, 1, 1, 1, 0, &e), ERR_RANGE);
  ADD_FAILS(model_add_fc(m, 9, 1, false, &e), ERR_RANGE);
  ADD_FAILS(model_add_conv(NULL, MODEL_INPUT, 1, 1, 1, 0, 1, false, &e),
            ERR_INVALID);
  assert_int_equal(m->n_layers, 1);

  /* Inputs edited by hand: a forward reference, a wrong input count, an
   * index below MODEL_INPUT, an unknown operator. */
  int a = model_add_add(m, r, MODEL_INPUT, &e);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  m->layers[r].inputs[0] = a;
  CALL_FAILS(model_finalize(m, &e), ERR_RANGE);
  assert_false(m->finalized);
  m->layers[r].inputs[0] = MODEL_INPUT;
  m->layers[a].n_inputs = 1;
  CALL_FAILS(model_finalize(m, &e), ERR_INVALID);
  m->layers[a].n_inputs = 2;
  m->layers[a].inputs[1] = -3;
  CALL_FAILS(model_finalize(m, &e), ERR_RANGE);
  m->layers[a].inputs[1] = MODEL_INPUT;
  m->layers[a].op = (model_op)99;
  m->layers[a].n_inputs = 1;
  CALL_FAILS(model_finalize(m, &e), ERR_INVALID);
  m->layers[a].op = MODEL_OP_ADD;
  m->layers[a].n_inputs = 2;
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  model_destroy(m);
}

/* Weights resized by hand are caught by model_finalize, for every op that
 * has weights; restoring the size makes the model valid again. */
static void test_wrong_weight_sizes(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(4, 4, 3);
  int c = model_add_conv(m, MODEL_INPUT, 6, 3, 1, 1, 3, true, &e);
  int bn = model_add_bn(m, c, &e);
  int fe = model_add_fe(m, bn, &e);
  int g = model_add_gap(m, fe, &e);
  int fc = model_add_fc(m, g, 2, true, &e);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  const int layers[] = {c, bn, fe, fc};
  for (int i = 0; i < 4; i++) {
    model_layer *L = &m->layers[layers[i]];
    L->n_weights--;
    CALL_FAILS(model_finalize(m, &e), ERR_SHAPE);
    /* A model that failed to finalize must not pass for finalized: the
     * executors index weights without re-checking their sizes. */
    assert_false(m->finalized);
    CALL_FAILS(model_check_range(m, 0, m->n_layers, &e), ERR_INVALID);
    L->n_weights++;
    assert_int_equal(model_finalize(m, &e), ERR_OK);
    if (L->bias) {
      L->n_bias++;
      CALL_FAILS(model_finalize(m, &e), ERR_SHAPE);
      L->n_bias--;
    }
  }
  /* Changing the geometry changes the weight count the conv needs. */
  m->layers[c].kernel_h = 1;
  m->layers[c].pad_top = m->layers[c].pad_bottom = 0;
  CALL_FAILS(model_finalize(m, &e), ERR_SHAPE);
  m->layers[c].kernel_h = 3;
  m->layers[c].groups = 2;
  CALL_FAILS(model_finalize(m, &e), ERR_SHAPE);
  m->layers[c].groups = 0;
  CALL_FAILS(model_finalize(m, &e), ERR_SHAPE);
  m->layers[c].groups = 3;
  m->layers[c].pad_top = m->layers[c].pad_bottom = 1;
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  model_destroy(m);
}

/* Geometry edited by hand must give an error, not a division by zero. */
static void test_bad_geometry_in_finalize(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(6, 6, 2);
  int c = model_add_conv(m, MODEL_INPUT, 2, 3, 1, 1, 1, false, &e);
  int p = model_add_maxpool(m, c, 2, 2, 0, &e);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  int *fields[] = {&m->layers[c].stride_h, &m->layers[c].stride_w,
                   &m->layers[p].stride_h, &m->layers[p].stride_w};
  for (int i = 0; i < 4; i++) {
    int keep = *fields[i];
    *fields[i] = 0;
    CALL_FAILS(model_finalize(m, &e), ERR_INVALID);
    assert_false(m->finalized);
    *fields[i] = keep;
  }
  m->layers[c].pad_top = -1;
  CALL_FAILS(model_finalize(m, &e), ERR_INVALID);
  m->layers[c].pad_top = 1;
  m->layers[p].pad_left = 2; /* a window of nothing but padding */
  CALL_FAILS(model_finalize(m, &e), ERR_INVALID);
  m->layers[p].pad_left = 0;
  m->layers[p].kernel_h = 0;
  CALL_FAILS(model_finalize(m, &e), ERR_INVALID);
  m->layers[p].kernel_h = 2;
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  model_destroy(m);
}

/* ---- cuts and ranges ----------------------------------------------------- */

/* 0 conv(in), 1 conv(0), 2 conv(1), 3 add(2, 0), 4 relu(3), 5 add(4, 4) */
static model *small_residual(void) {
  err e = {0};
  model *m = mk(8, 4, 2);
  int c0 = model_add_conv(m, MODEL_INPUT, 2, 3, 1, 1, 1, false, &e);
  int c1 = model_add_conv(m, c0, 2, 3, 1, 1, 1, false, &e);
  int c2 = model_add_conv(m, c1, 2, 1, 1, 0, 1, false, &e);
  int a = model_add_add(m, c2, c0, &e);
  int r = model_add_relu(m, a, &e);
  assert_int_equal(model_add_add(m, r, r, &e), 5);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  return m;
}

static void test_is_cut(void **state) {
  (void)state;
  model *m = small_residual();
  const bool want[7] = {true, true, false, false, true, true, true};
  for (int c = 0; c <= 6; c++)
    if (model_is_cut(m, c) != want[c]) fail_msg("cut %d", c);
  assert_false(model_is_cut(m, -1));
  assert_false(model_is_cut(m, 7));
  model_destroy(m);

  /* A later layer reading the graph input: 1 is not a cut. */
  err e = {0};
  m = mk(4, 4, 1);
  int c = model_add_conv(m, MODEL_INPUT, 1, 3, 1, 1, 1, false, &e);
  model_add_add(m, c, MODEL_INPUT, &e);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  assert_true(model_is_cut(m, 0));
  assert_false(model_is_cut(m, 1));
  assert_true(model_is_cut(m, 2));
  model_destroy(m);
}

static void test_check_range(void **state) {
  (void)state;
  err e = {0};
  model *m = small_residual();
  assert_int_equal(model_check_range(m, 0, 6, &e), ERR_OK);
  assert_int_equal(model_check_range(m, 1, 4, &e), ERR_OK);
  assert_int_equal(model_check_range(m, 4, 5, &e), ERR_OK);
  CALL_FAILS(model_check_range(m, 3, 3, &e), ERR_RANGE);
  CALL_FAILS(model_check_range(m, 4, 2, &e), ERR_RANGE);
  CALL_FAILS(model_check_range(m, 0, 7, &e), ERR_RANGE);
  CALL_FAILS(model_check_range(m, -1, 2, &e), ERR_RANGE);
  CALL_FAILS(model_check_range(m, 0, 2, &e), ERR_RANGE); /* end in branch */
  CALL_FAILS(model_check_range(m, 2, 4, &e), ERR_RANGE); /* first in it */
  CALL_FAILS(model_check_range(m, 3, 6, &e), ERR_RANGE);
  model_rows rows[6], in;
  model_rows out = {0, 8};
  CALL_FAILS(model_strip_rows(m, 0, 2, out, rows, &in, &e), ERR_RANGE);
  CALL_FAILS(model_strip_rows(m, 0, 9, out, rows, &in, &e), ERR_RANGE);
  /* output rows out of range */
  const model_rows bad[] = {{-1, 3}, {0, 9}, {4, 4}, {5, 2}, {8, 9}};
  for (int i = 0; i < 5; i++) {
    CALL_FAILS(model_strip_rows(m, 0, 6, bad[i], rows, &in, &e), ERR_RANGE);
    model_rows owned;
    CALL_FAILS(model_fe_owned_rows(m, 0, 6, bad[i], 1, &owned, &e),
               ERR_RANGE);
  }
  model_rows owned;
  CALL_FAILS(model_fe_owned_rows(m, 0, 6, out, 1, &owned, &e), ERR_RANGE);
  /* Unfinalized: every range query refuses. */
  m->finalized = false;
  CALL_FAILS(model_check_range(m, 0, 6, &e), ERR_INVALID);
  CALL_FAILS(model_strip_rows(m, 0, 6, out, rows, &in, &e), ERR_INVALID);
  CALL_FAILS(model_check_range(NULL, 0, 6, &e), ERR_INVALID);
  model_destroy(m);
}

/* ---- receptive fields by hand -------------------------------------------- */

static void test_layer_input_rows(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(16, 3, 1);
  int c = model_add_conv_ex(m, MODEL_INPUT, 1, 5, 1, 2, 1, 2, 0, 1, 0, 1,
                            false, &e);
  int r = model_add_relu(m, c, &e);
  int g = model_add_gap(m, r, &e);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  model_rows o = {0, 3}, got = model_layer_input_rows(m, c, o);
  assert_int_equal(got.lo, -2); /* 0*2 - 2 */
  assert_int_equal(got.hi, 7);  /* 2*2 - 2 + 5 */
  o = (model_rows){4, 5};
  got = model_layer_input_rows(m, r, o);
  assert_int_equal(got.lo, 4);
  assert_int_equal(got.hi, 5);
  o = (model_rows){0, 1};
  got = model_layer_input_rows(m, g, o);
  assert_int_equal(got.lo, 0);
  assert_int_equal(got.hi, m->layers[r].out.h);
  model_destroy(m);
}

/* conv3/pad1 then conv3/stride2/pad1 on 8 rows: output row 1 needs rows
 * [1, 4) of the first conv and [0, 5) of the input; row 0 touches the top
 * padding (input rows [-2, 3) clamp to [0, 3)). */
static void test_strip_rows_by_hand(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(8, 2, 1);
  int a = model_add_conv(m, MODEL_INPUT, 1, 3, 1, 1, 1, false, &e);
  int b = model_add_conv(m, a, 1, 3, 2, 1, 1, false, &e);
  int r = model_add_relu(m, b, &e);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  model_rows rows[3], in;
  rows[r] = (model_rows){-7, -7}; /* outside the range: left untouched */
  assert_int_equal(model_strip_rows(m, 0, 2, (model_rows){1, 2}, rows, &in, &e),
                   ERR_OK);
  assert_int_equal(rows[b].lo, 1);
  assert_int_equal(rows[b].hi, 2);
  assert_int_equal(rows[a].lo, 1);
  assert_int_equal(rows[a].hi, 4);
  assert_int_equal(in.lo, 0);
  assert_int_equal(in.hi, 5);
  assert_int_equal(rows[r].lo, -7);
  assert_int_equal(model_strip_rows(m, 0, 3, (model_rows){0, 1}, rows, &in, &e),
                   ERR_OK);
  assert_int_equal(rows[a].lo, 0);
  assert_int_equal(rows[a].hi, 2);
  assert_int_equal(in.lo, 0);
  assert_int_equal(in.hi, 3);
  /* The range [1, 3) starts at layer a's output. */
  assert_int_equal(model_strip_rows(m, 1, 3, (model_rows){3, 4}, rows, &in, &e),
                   ERR_OK);
  assert_int_equal(in.lo, 5);
  assert_int_equal(in.hi, 8);
  model_destroy(m);
}

/* conv3/pad1 -> FE -> conv3/pad1 on 8 rows, strips [0,2) [2,5) [5,8).
 * Strip [a, b) owns the FE input rows from the lowest row that output rows
 * [a, 8) need there (a - 1) up to the lowest row that [b, 8) need (b - 1):
 * [0,1) [1,4) [4,8). Each lies inside the strip's receptive field, so
 * owning costs no extra rows here; a strip that owned more than its share
 * (say all of them) would compute more than its receptive field. */
static void test_fe_owned_rows_by_hand(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(8, 1, 1);
  int a = model_add_conv(m, MODEL_INPUT, 1, 3, 1, 1, 1, false, &e);
  int fe = model_add_fe(m, a, &e);
  int b = model_add_conv(m, fe, 1, 3, 1, 1, 1, false, &e);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  const model_rows strips[3] = {{0, 2}, {2, 5}, {5, 8}};
  const model_rows owned_want[3] = {{0, 1}, {1, 4}, {4, 8}};
  const model_rows conv_a_want[3] = {{0, 3}, {1, 6}, {4, 8}};
  const model_rows in_want[3] = {{0, 4}, {0, 7}, {3, 8}};
  model_rows rows[3], in, owned;
  for (int s = 0; s < 3; s++) {
    assert_int_equal(model_fe_owned_rows(m, 0, 3, strips[s], fe, &owned, &e),
                     ERR_OK);
    assert_true(rows_equal(owned, owned_want[s]));
    assert_int_equal(model_strip_rows(m, 0, 3, strips[s], rows, &in, &e),
                     ERR_OK);
    assert_true(rows_equal(rows[b], strips[s]));
    assert_true(rows_equal(rows[a], conv_a_want[s]));
    assert_true(rows_equal(in, in_want[s]));
    /* The range [1, 3) starts at the FE's input: the ownership shows in
     * the range's input rows. */
    assert_int_equal(model_fe_owned_rows(m, 1, 3, strips[s], fe, &owned, &e),
                     ERR_OK);
    assert_true(rows_equal(owned, owned_want[s]));
    assert_int_equal(model_strip_rows(m, 1, 3, strips[s], rows, &in, &e),
                     ERR_OK);
    assert_true(rows_equal(in, conv_a_want[s]));
  }
  model_destroy(m);
}

/* ---- feature enhancement scale ------------------------------------------- */

/* W = [[1, 2], [-1, 0.5]], sums (4, -2) over 4 pixels: means (1, -0.5),
 * z = (0, -1.25), scale = (0.5, 1 / (1 + e^1.25) = 0.2227001388). */
static void test_fe_scale(void **state) {
  (void)state;
  err e = {0};
  model *m = mk(2, 2, 2);
  int r = model_add_relu(m, MODEL_INPUT, &e);
  int fe = model_add_fe(m, r, &e);
  const float w[4] = {1, 2, -1, 0.5f};
  memcpy(m->layers[fe].weights, w, sizeof w);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  const double sums[2] = {4, -2};
  float scale[2];
  assert_int_equal(model_fe_scale(m, fe, sums, 4, scale, &e), ERR_OK);
  assert_float_equal(scale[0], 0.5, 1e-7);
  assert_float_equal(scale[1], 0.22270013882530884, 1e-7);
  CALL_FAILS(model_fe_scale(m, r, sums, 4, scale, &e), ERR_RANGE);
  CALL_FAILS(model_fe_scale(m, 5, sums, 4, scale, &e), ERR_RANGE);
  CALL_FAILS(model_fe_scale(m, -1, sums, 4, scale, &e), ERR_RANGE);
  CALL_FAILS(model_fe_scale(m, fe, sums, 0, scale, &e), ERR_INVALID);
  /* A whole-image strip owns every row of the FE input. */
  model_rows owned;
  assert_int_equal(
      model_fe_owned_rows(m, 0, 2, (model_rows){0, 2}, fe, &owned, &e), ERR_OK);
  assert_int_equal(owned.lo, 0);
  assert_int_equal(owned.hi, 2);
  CALL_FAILS(model_fe_owned_rows(m, 0, 2, (model_rows){0, 2}, r, &owned, &e),
             ERR_RANGE);
  CALL_FAILS(model_fe_owned_rows(m, 0, 1, (model_rows){0, 2}, fe, &owned, &e),
             ERR_RANGE);
  model_destroy(m);
}

/* Row intervals: an empty one never widens a hull; clamping empties to {0, 0}. */
static void test_rows_hull_and_clamp(void **state) {
  (void)state;
  model_rows a = {2, 5}, b = {7, 9}, none = {4, 4};
  model_rows h = model_rows_hull(a, b);
  assert_int_equal(h.lo, 2);
  assert_int_equal(h.hi, 9);
  h = model_rows_hull(none, b);
  assert_int_equal(h.lo, 7);
  assert_int_equal(h.hi, 9);
  h = model_rows_hull(a, none);
  assert_int_equal(h.lo, 2);
  assert_int_equal(h.hi, 5);
  model_rows c = model_rows_clamp((model_rows){-2, 12}, 10);
  assert_int_equal(c.lo, 0);
  assert_int_equal(c.hi, 10);
  c = model_rows_clamp((model_rows){11, 14}, 10);
  assert_int_equal(c.lo, 0);
  assert_int_equal(c.hi, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shapes_and_flops),
      cmocka_unit_test(test_rows_hull_and_clamp),
      cmocka_unit_test(test_initial_weights_and_clone),
      cmocka_unit_test(test_impossible_shapes),
      cmocka_unit_test(test_missing_inputs),
      cmocka_unit_test(test_wrong_weight_sizes),
      cmocka_unit_test(test_bad_geometry_in_finalize),
      cmocka_unit_test(test_is_cut),
      cmocka_unit_test(test_check_range),
      cmocka_unit_test(test_layer_input_rows),
      cmocka_unit_test(test_strip_rows_by_hand),
      cmocka_unit_test(test_fe_owned_rows_by_hand),
      cmocka_unit_test(test_fe_scale),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

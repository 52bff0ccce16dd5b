/* prune_test.c — L1-norm filter pruning (runtime/prune.h) and the pruning
 * loop (runtime/prune_search.h).
 *
 * A small hand-built graph passes the pruned channels through every role
 * prune.c knows: conv -> ReLU -> BN -> 1x1 conv (a sink with no padding),
 * conv -> FE -> padded conv, conv -> max pool -> flatten -> FC. On it:
 * removing a filter whose output is exactly zero changes no output bit;
 * a zero-weight filter with a bias is compensated in the sink's bias;
 * parameters and FLOPs drop by exactly what the removed weights held; the
 * pruned graph survives ONNX export and import bit for bit. A real zoo
 * model (resnet18c, fused) is pruned at every prunable layer, exported,
 * imported and run on XNNPACK against the reference executor. Bad
 * arguments are refused with messages that say why. The loop is driven by
 * a fake accuracy that falls with every removed filter, so its choices can
 * be predicted exactly.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/onnx_export.h"
#include "runtime/onnx_import.h"
#include "runtime/prune.h"
#include "runtime/prune_search.h"
#include "runtime/ref.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"

static uint64_t rng_state;

static float rnd(void) { /* uniform in [-1, 1) */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng_state >> 40) / (double)(1u << 24)) * 2 - 1;
}

static void fill(float *v, size_t n, float scale) {
  for (size_t i = 0; i < n; i++) v[i] = rnd() * scale;
}

/* The layers of the test graph. */
enum { C1, RELU1, BN1, C2, FE2, C3, POOL3, FLAT3, FC, N_LAYERS };

/* input 10x10x3
 *  c1  conv 3x3 pad 1, 3 -> 8, bias   (sink: c2 through relu and bn)
 *  c2  conv 1x1, 8 -> 6, no bias      (sink: c3 through fe)
 *  c3  conv 3x3 pad 1, 6 -> 5, bias   (sink: fc through pool, flatten)
 *  fc  5*5*5 -> 4, bias */
static model *build_net(void) {
  err e = {0};
  model *m = model_create("prune_net", (model_shape){10, 10, 3});
  int c1 = model_add_conv(m, MODEL_INPUT, 8, 3, 1, 1, 1, true, &e);
  int r1 = model_add_relu(m, c1, &e);
  int b1 = model_add_bn(m, r1, &e);
  int c2 = model_add_conv(m, b1, 6, 1, 1, 0, 1, false, &e);
  int f2 = model_add_fe(m, c2, &e);
  int c3 = model_add_conv(m, f2, 5, 3, 1, 1, 1, true, &e);
  int p3 = model_add_maxpool(m, c3, 2, 2, 0, &e);
  int fl = model_add_flatten(m, p3, &e);
  int fc = model_add_fc(m, fl, 4, true, &e);
  if (fc != FC || model_finalize(m, &e) != ERR_OK) fail_msg("build: %s", e.msg);
  rng_state = 42;
  for (int l = 0; l < m->n_layers; l++) {
    model_layer *L = &m->layers[l];
    if (L->weights) fill(L->weights, L->n_weights, 0.5f);
    if (L->bias) fill(L->bias, L->n_bias, 0.2f);
    if (L->op == MODEL_OP_BN)
      for (size_t i = 0; i < L->n_weights; i++) L->weights[i] += 1.5f;
  }
  return m;
}

static void zero_filter(model *m, int conv, int k, float bias) {
  model_layer *L = &m->layers[conv];
  size_t per = L->n_weights / (size_t)L->out_channels;
  memset(L->weights + (size_t)k * per, 0, per * sizeof(float));
  if (L->bias) L->bias[k] = bias;
}

static float *run_ref(const model *m, const float *in) {
  size_t n = model_shape_elems(m->layers[m->n_layers - 1].out);
  float *out = malloc(n * sizeof *out);
  err e = {0};
  if (ref_run(m, in, out, &e) != ERR_OK) fail_msg("ref_run: %s", e.msg);
  return out;
}

static float *input_for(const model *m) {
  size_t n = model_shape_elems(m->input);
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = (rnd() + 1) / 2;
  return x;
}

static model *prune1(const model *m, int conv, const int *f, int n) {
  model *p = NULL;
  err e = {0};
  if (prune_filters(m, conv, f, n, &p, &e) != ERR_OK) fail_msg("prune: %s", e.msg);
  return p;
}

static void assert_outputs_equal(const model *a, const model *b,
                                 double rel_tol) {
  float *x = input_for(a);
  float *ya = run_ref(a, x), *yb = run_ref(b, x);
  size_t n = model_shape_elems(a->layers[a->n_layers - 1].out);
  double scale = 0, diff = 0;
  for (size_t i = 0; i < n; i++) {
    scale = fmax(scale, fabs(ya[i]));
    diff = fmax(diff, fabs((double)ya[i] - yb[i]));
    if (rel_tol == 0 && ya[i] != yb[i])
      fail_msg("output %zu: %.9g before, %.9g after pruning", i, ya[i], yb[i]);
  }
  assert_true(scale > 1e-3); /* the outputs are not trivially zero */
  if (diff > rel_tol * scale)
    fail_msg("outputs differ by %g of %g", diff, scale);
  free(x);
  free(ya);
  free(yb);
}

/* A filter with zero weights, and an output that is zero after the
 * channel-wise layers, contributes nothing: removing it changes no bit. */
static void test_zero_filter_exact(void **state) {
  (void)state;
  model *m = build_net();
  /* c1 filter 5: zero weights, bias 0; BN shift 0 keeps the channel 0. */
  zero_filter(m, C1, 5, 0);
  m->layers[BN1].bias[5] = 0;
  /* c1 filter 2: zero weights, negative bias, killed by the ReLU: the BN
   * then maps it to its shift; make that 0 too. */
  zero_filter(m, C1, 2, -0.3f);
  m->layers[BN1].bias[2] = 0;
  zero_filter(m, C2, 4, 0);   /* through FE into a padded conv */
  zero_filter(m, C3, 1, 0);   /* through pool and flatten into the FC */
  model *p1 = prune1(m, C1, (int[]){2, 5}, 2);
  assert_int_equal(p1->layers[C1].out_channels, 6);
  assert_int_equal(p1->layers[BN1].out.c, 6);
  assert_int_equal(p1->layers[C2].n_weights, 6u * 6);
  assert_null(p1->layers[C2].bias); /* nothing to compensate */
  assert_outputs_equal(m, p1, 0);
  model *p2 = prune1(p1, C2, (int[]){4}, 1);
  assert_int_equal(p2->layers[FE2].n_weights, 5u * 5);
  assert_outputs_equal(m, p2, 0);
  model *p3 = prune1(p2, C3, (int[]){1}, 1);
  assert_int_equal(p3->layers[FLAT3].out.c, 4 * 5 * 5);
  assert_int_equal(p3->layers[FC].n_weights, 4u * 100);
  assert_outputs_equal(m, p3, 0);
  /* The input model is untouched. */
  assert_int_equal(m->layers[C1].out_channels, 8);
  model_destroy(p3);
  model_destroy(p2);
  model_destroy(p1);
  model_destroy(m);
}

/* A zero-weight filter with a bias outputs a constant; it is folded into
 * the sink's bias (created there if missing), exact up to rounding where
 * the sink has no padding. */
static void test_constant_filter_compensated(void **state) {
  (void)state;
  model *m = build_net();
  zero_filter(m, C1, 3, 0.7f); /* relu(0.7) * bn scale + bn shift */
  model *p = prune1(m, C1, (int[]){3}, 1);
  assert_non_null(p->layers[C2].bias);
  assert_int_equal(p->layers[C2].n_bias, 6);
  assert_outputs_equal(m, p, 1e-5);
  model_destroy(p);
  model_destroy(m);
}

/* Pruning a filter of normal weights changes the outputs: the check above
 * is not vacuous. */
static void test_real_filter_changes_outputs(void **state) {
  (void)state;
  model *m = build_net();
  model *p = prune1(m, C1, (int[]){0}, 1);
  float *x = input_for(m);
  float *a = run_ref(m, x), *b = run_ref(p, x);
  bool differ = false;
  for (int i = 0; i < 4; i++) differ |= fabsf(a[i] - b[i]) > 1e-4f;
  assert_true(differ);
  free(x);
  free(a);
  free(b);
  model_destroy(p);
  model_destroy(m);
}

static void test_params_and_flops(void **state) {
  (void)state;
  model *m = build_net();
  zero_filter(m, C1, 1, 0); /* no compensation: counts are plain */
  zero_filter(m, C1, 6, 0);
  m->layers[BN1].bias[1] = m->layers[BN1].bias[6] = 0;
  size_t params = model_param_count(m);
  double flops = model_flops(m);
  model *p = prune1(m, C1, (int[]){1, 6}, 2);
  /* c1: 2 filters of 3*3*3 weights + bias; bn: 2 scales + 2 shifts;
   * c2: 6 outputs x 2 inputs. */
  assert_int_equal(params - model_param_count(p), 2 * (27 + 1) + 2 * 2 + 6 * 2);
  /* c1 FLOPs scale with its outputs, c2's with its inputs. */
  double c1 = 2.0 * 10 * 10 * 8 * 27, c2 = 2.0 * 10 * 10 * 6 * 8;
  assert_true(fabs((flops - model_flops(p)) - (c1 + c2) * 2 / 8) < 1e-6);
  assert_true(model_flops(p) < flops);
  /* c3 -> fc: one channel is 5*5 flattened inputs of each of 4 outputs. */
  zero_filter(m, C3, 0, 0);
  model *q = prune1(m, C3, (int[]){0}, 1);
  assert_int_equal(params - model_param_count(q), 6 * 9 + 1 + 4 * 25);
  model_destroy(q);
  model_destroy(p);
  model_destroy(m);
}

static void test_smallest_l1(void **state) {
  (void)state;
  model *m = build_net();
  model_layer *L = &m->layers[C1];
  size_t per = L->n_weights / 8;
  for (int o = 0; o < 8; o++) /* filter o has sum |W| = 27 * (8 - o) */
    for (size_t i = 0; i < per; i++)
      L->weights[o * per + i] = (i % 2 ? -1.0f : 1.0f) * (float)(8 - o);
  double l1[8];
  assert_int_equal(prune_filter_l1(m, C1, l1, NULL), ERR_OK);
  assert_true(fabs(l1[0] - 27 * 8) < 1e-9 && fabs(l1[7] - 27) < 1e-9);
  int f[3];
  assert_int_equal(prune_smallest(m, C1, 3, f, NULL), ERR_OK);
  assert_int_equal(f[0], 5);
  assert_int_equal(f[1], 6);
  assert_int_equal(f[2], 7);
  model_destroy(m);
}

/* The pruned graph writes as ONNX and reads back with the same outputs. */
static void test_export_import_pruned(void **state) {
  (void)state;
  model *m = build_net();
  model *p1 = prune1(m, C1, (int[]){0, 3, 7}, 3);
  model *p2 = prune1(p1, C3, (int[]){2, 4}, 2);
  void *bytes = NULL;
  size_t len = 0;
  model *back = NULL;
  err e = {0};
  if (onnx_export(p2, &bytes, &len, &e) != ERR_OK ||
      onnx_import(bytes, len, &back, &e) != ERR_OK)
    fail_msg("round trip: %s", e.msg);
  assert_int_equal(model_param_count(back), model_param_count(p2));
  assert_outputs_equal(p2, back, 0);
  free(bytes);
  model_destroy(back);
  model_destroy(p2);
  model_destroy(p1);
  model_destroy(m);
}

/* resnet18c (small input, fused as `edgedi prune` sees it): every
 * prunable layer loses a quarter of its filters; the result exports,
 * imports and runs on XNNPACK like the reference executor runs it; the
 * convolutions that feed residual adds are refused. */
static void test_zoo_resnet18c(void **state) {
  (void)state;
  zoo_options zo = zoo_defaults();
  zo.in_h = zo.in_w = 40;
  model *z = NULL, *f = NULL;
  err e = {0};
  if (zoo_build("resnet18c", &zo, &z, &e) != ERR_OK ||
      fuse_model(z, &f, &e) != ERR_OK)
    fail_msg("zoo: %s", e.msg);
  int prunable = 0, adds = 0;
  model *cur = model_clone(f, &e);
  for (int l = 0; l < f->n_layers; l++) {
    if (f->layers[l].op != MODEL_OP_CONV) continue;
    err ce = {0};
    if (prune_check(f, l, &ce) != ERR_OK) {
      assert_int_equal(ce.code, ERR_UNSUPPORTED);
      adds += strstr(ce.msg, "residual add") != NULL;
      continue;
    }
    prunable++;
    int c = cur->layers[l].out_channels, n = c / 4 ? c / 4 : 1;
    int *drop = malloc((size_t)n * sizeof *drop);
    model *next = NULL;
    assert_int_equal(prune_smallest(cur, l, n, drop, &e), ERR_OK);
    if (prune_filters(cur, l, drop, n, &next, &e) != ERR_OK)
      fail_msg("layer %s: %s", f->layers[l].name, e.msg);
    free(drop);
    model_destroy(cur);
    cur = next;
    assert_int_equal(cur->layers[l].out_channels, c - n);
  }
  print_message("resnet18c: %d prunable convs, %d refused at adds; params "
                "%zu -> %zu, GFLOP %.4f -> %.4f\n", prunable, adds,
                model_param_count(f), model_param_count(cur),
                model_flops(f) / 1e9, model_flops(cur) / 1e9);
  assert_true(prunable >= 20);
  assert_true(adds >= 8);
  assert_true(model_param_count(cur) < model_param_count(f));
  assert_true(model_flops(cur) < model_flops(f));

  void *bytes = NULL;
  size_t len = 0;
  model *back = NULL, *bf = NULL;
  if (onnx_export(cur, &bytes, &len, &e) != ERR_OK ||
      onnx_import(bytes, len, &back, &e) != ERR_OK ||
      fuse_model(back, &bf, &e) != ERR_OK)
    fail_msg("round trip: %s", e.msg);
  float *x = input_for(bf);
  float *want = run_ref(cur, x);
  size_t n = model_shape_elems(bf->layers[bf->n_layers - 1].out);
  float *got = malloc(n * sizeof *got);
  xexec *xe = NULL;
  if (xexec_create(bf, 1, &xe, &e) != ERR_OK || xexec_run(xe, x, got, &e) != ERR_OK)
    fail_msg("xexec: %s", e.msg);
  double scale = 0, diff = 0;
  for (size_t i = 0; i < n; i++) {
    scale = fmax(scale, fabs(want[i]));
    diff = fmax(diff, fabs((double)want[i] - got[i]));
  }
  assert_true(scale > 0);
  assert_true(diff <= 1e-4 * scale);
  xexec_destroy(xe);
  free(x);
  free(want);
  free(got);
  free(bytes);
  model_destroy(bf);
  model_destroy(back);
  model_destroy(cur);
  model_destroy(f);
  model_destroy(z);
}

static void expect_error(err_code rc, err_code want, const err *e,
                         const char *needle) {
  if (rc != want || !strstr(e->msg, needle))
    fail_msg("expected %s containing '%s', got %s: %s", err_name(want),
             needle, err_name(rc), e->msg);
}

static void test_bad_arguments(void **state) {
  (void)state;
  model *m = build_net();
  model *p = (model *)&p; /* must be reset to NULL on failure */
  err e = {0};
  expect_error(prune_check(m, 99, &e), ERR_RANGE, &e, "does not exist");
  expect_error(prune_check(m, -1, &e), ERR_RANGE, &e, "does not exist");
  expect_error(prune_check(m, BN1, &e), ERR_INVALID, &e, "not a conv");
  expect_error(prune_filters(m, C1, (int[]){0}, 0, &p, &e), ERR_INVALID, &e,
               "cannot remove 0 of the 8");
  assert_null(p);
  int all[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  expect_error(prune_filters(m, C1, all, 8, &p, &e), ERR_INVALID, &e,
               "at least one must stay");
  expect_error(prune_filters(m, C1, (int[]){3, 3}, 2, &p, &e), ERR_INVALID,
               &e, "named twice");
  expect_error(prune_filters(m, C1, (int[]){8}, 1, &p, &e), ERR_INVALID, &e,
               "out of range");
  expect_error(prune_smallest(m, C1, 8, all, &e), ERR_INVALID, &e,
               "cannot remove 8");
  assert_null(p);

  /* A conv whose channels reach a residual add, one that is the output. */
  model *r = model_create("res", (model_shape){6, 6, 4});
  int a = model_add_conv(r, MODEL_INPUT, 4, 3, 1, 1, 1, false, &e);
  int b = model_add_conv(r, a, 4, 3, 1, 1, 1, false, &e);
  int s = model_add_add(r, a, b, &e);
  int g = model_add_conv(r, s, 4, 1, 1, 0, 2, false, &e);
  int o = model_add_conv(r, g, 3, 1, 1, 0, 1, false, &e);
  assert_int_equal(model_finalize(r, &e), ERR_OK);
  expect_error(prune_check(r, b, &e), ERR_UNSUPPORTED, &e, "residual add");
  expect_error(prune_check(r, a, &e), ERR_UNSUPPORTED, &e, "residual add");
  expect_error(prune_check(r, g, &e), ERR_UNSUPPORTED, &e, "grouped");
  expect_error(prune_check(r, o, &e), ERR_UNSUPPORTED, &e, "model's output");
  (void)s;

  /* Not finalized. */
  model *u = model_create("u", (model_shape){4, 4, 1});
  model_add_conv(u, MODEL_INPUT, 2, 1, 1, 0, 1, false, &e);
  expect_error(prune_check(u, 0, &e), ERR_INVALID, &e, "finalized");

  model_destroy(u);
  model_destroy(r);
  model_destroy(m);
}

/* ---- the loop ------------------------------------------------------------ */

typedef struct fake {
  const model *orig;
  int calls;
  double floor_seen;
} fake;

/* Accuracy 1 - 0.01 per removed filter, over the whole model. */
static err_code fake_eval(void *ctx, const model *m, double floor,
                          double *acc, err *e) {
  (void)e;
  fake *f = ctx;
  int removed = 0;
  for (int l = 0; l < m->n_layers; l++)
    if (m->layers[l].op == MODEL_OP_CONV)
      removed += f->orig->layers[l].out_channels - m->layers[l].out_channels;
  *acc = 1 - 0.01 * removed;
  f->calls++;
  f->floor_seen = floor;
  return ERR_OK;
}

static void test_search_follows_floor(void **state) {
  (void)state;
  model *m = build_net();
  fake f = {.orig = m};
  prune_search_opts o = prune_search_defaults();
  o.floor = 0.955; /* at most 4 filters may go */
  o.step = 0.25;
  prune_search_result r;
  err e = {0};
  if (prune_search(m, &o, fake_eval, NULL, &f, &r, &e) != ERR_OK)
    fail_msg("%s", e.msg);
  /* c1 (8, steps of 2): 2 kept, 2 kept, 2 undone. c2 (6, steps of 2):
   * undone. c3 (5, steps of 1): undone. */
  assert_int_equal(r.layers_prunable, 3);
  assert_int_equal(r.pruned->layers[C1].out_channels, 4);
  assert_int_equal(r.pruned->layers[C2].out_channels, 6);
  assert_int_equal(r.pruned->layers[C3].out_channels, 5);
  assert_int_equal(r.filters_removed, 4);
  assert_int_equal(r.steps_kept, 2);
  assert_int_equal(r.steps_tried, 5);
  assert_int_equal(r.evals, 6); /* the baseline too */
  assert_int_equal(f.calls, 6);
  assert_true(fabs(r.accuracy_before - 1) < 1e-12);
  assert_true(fabs(r.accuracy_after - 0.96) < 1e-12);
  assert_true(fabs(f.floor_seen - 0.955) < 1e-12);
  assert_int_equal(r.layers_pruned, 1);
  model_destroy(r.pruned);

  /* A known baseline is not measured again; min_filters holds. */
  f.calls = 0;
  o.floor = 0;
  o.known_accuracy = 1;
  o.min_filters = 3;
  if (prune_search(m, &o, fake_eval, NULL, &f, &r, &e) != ERR_OK)
    fail_msg("%s", e.msg);
  assert_int_equal(r.pruned->layers[C1].out_channels, 3);
  assert_int_equal(r.pruned->layers[C2].out_channels, 3);
  assert_int_equal(r.pruned->layers[C3].out_channels, 3);
  assert_int_equal(f.calls, r.evals);
  assert_int_equal(r.evals, 3 + 2 + 2); /* 8-2-2-1, 6-2-1, 5-1-1 */
  model_destroy(r.pruned);

  /* multiple 4: every count left is a multiple of 4 (8 -> 4, 6 -> 4,
   * 5 -> 4), one step each. */
  o.min_filters = 1;
  o.multiple = 4;
  if (prune_search(m, &o, fake_eval, NULL, &f, &r, &e) != ERR_OK)
    fail_msg("%s", e.msg);
  assert_int_equal(r.pruned->layers[C1].out_channels, 4);
  assert_int_equal(r.pruned->layers[C2].out_channels, 4);
  assert_int_equal(r.pruned->layers[C3].out_channels, 4);
  assert_int_equal(r.evals, 3);
  model_destroy(r.pruned);
  o.multiple = 1;
  o.min_filters = 3;

  /* max_evals stops the loop with what was kept so far. */
  o.max_evals = 2;
  if (prune_search(m, &o, fake_eval, NULL, &f, &r, &e) != ERR_OK)
    fail_msg("%s", e.msg);
  assert_true(r.hit_max_evals);
  assert_int_equal(r.evals, 2);
  assert_int_equal(r.pruned->layers[C1].out_channels, 4);
  model_destroy(r.pruned);
  model_destroy(m);
}

static void test_search_bad_options(void **state) {
  (void)state;
  model *m = build_net();
  fake f = {.orig = m};
  prune_search_result r;
  err e = {0};
  prune_search_opts o = prune_search_defaults();
  o.floor = 1.5;
  expect_error(prune_search(m, &o, fake_eval, NULL, &f, &r, &e), ERR_INVALID,
               &e, "floor 1.5");
  o = prune_search_defaults();
  o.step = 0;
  expect_error(prune_search(m, &o, fake_eval, NULL, &f, &r, &e), ERR_INVALID,
               &e, "step");
  o = prune_search_defaults();
  o.min_filters = 0;
  expect_error(prune_search(m, &o, fake_eval, NULL, &f, &r, &e), ERR_INVALID,
               &e, "at least one filter");
  o = prune_search_defaults();
  o.multiple = 0;
  expect_error(prune_search(m, &o, fake_eval, NULL, &f, &r, &e), ERR_INVALID,
               &e, "multiple must be at least 1");
  o = prune_search_defaults();
  o.floor = 0.99;
  o.known_accuracy = 0.9;
  expect_error(prune_search(m, &o, fake_eval, NULL, &f, &r, &e), ERR_INVALID,
               &e, "already below the floor");
  assert_null(r.pruned);
  model_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zero_filter_exact),
      cmocka_unit_test(test_constant_filter_compensated),
      cmocka_unit_test(test_real_filter_changes_outputs),
      cmocka_unit_test(test_params_and_flops),
      cmocka_unit_test(test_smallest_l1),
      cmocka_unit_test(test_export_import_pruned),
      cmocka_unit_test(test_zoo_resnet18c),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_search_follows_floor),
      cmocka_unit_test(test_search_bad_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* xexec_strip_test.c — whole models and layer ranges on strips.
 *
 * For hand-built graphs (a VGG-like chain with a compact unit, a ResNet-like
 * block with a strided projection shortcut, both with FE) and for every zoo
 * model on a 3 x 64 x 64 input:
 *  - the executor's whole run against ref_run: <= 1e-4 relative;
 *  - layer ranges between random cuts, each fed the range input from a whole
 *    run of [0, first), split into 1..8 random strips that exchange FE sums
 *    as a cluster does (plain sums at each FE, then early sums,
 *    fe_moments.h), stitched and compared with the whole run of the range:
 *    <= 1e-5 relative.
 * Fused zoo models (ReLU flags) the same way.
 * Then the ways a caller can get it wrong: bad ranges and rows, unfinalized
 * models, the FE protocol out of order, NULL arguments.
 */
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
#include "runtime/ref.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"
#include "tests/xexec_testlib.h"

enum {
  ZOO_SIDE = 64,       /* input rows and columns of the zoo models */
  RANGES_PER_MODEL = 4,
  SPLITS_PER_RANGE = 3,
  MAX_STRIPS = 8,
};
static const double REF_TOL = 1e-4, STRIP_TOL = 1e-5;

static void check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s: %s", err_name(rc), e->msg);
}

static int must(int l, const err *e) {
  if (l < 0) fail_msg("building: %s", e->msg);
  return l;
}

/* ---- hand-built graphs ------------------------------------------------------ */

/* conv-relu-bn, pool, a compact unit (1x1, 3x3, FE, 1x1, relu, bn), pool,
 * flatten, fc. */
static model *vggish(void) {
  err e = {0};
  model_shape in = {32, 30, 3};
  model *m = model_create("vggish", in);
  int l = must(model_add_conv(m, MODEL_INPUT, 8, 3, 1, 1, 1, false, &e), &e);
  l = must(model_add_relu(m, l, &e), &e);
  l = must(model_add_bn(m, l, &e), &e);
  l = must(model_add_maxpool(m, l, 2, 2, 0, &e), &e);
  l = must(model_add_conv(m, l, 4, 1, 1, 0, 1, false, &e), &e);
  l = must(model_add_conv(m, l, 4, 3, 1, 1, 1, false, &e), &e);
  l = must(model_add_fe(m, l, &e), &e);
  l = must(model_add_conv(m, l, 16, 1, 1, 0, 1, false, &e), &e);
  l = must(model_add_relu(m, l, &e), &e);
  l = must(model_add_bn(m, l, &e), &e);
  l = must(model_add_maxpool(m, l, 2, 2, 0, &e), &e);
  l = must(model_add_flatten(m, l, &e), &e);
  must(model_add_fc(m, l, 6, true, &e), &e);
  return m;
}

/* stem without padding, a strided block whose main path has an FE and whose
 * shortcut is a strided 1x1 conv, relu fused in the add, avg pool head. */
static model *resish(void) {
  err e = {0};
  model_shape in = {33, 31, 3};
  model *m = model_create("resish", in);
  int s = must(model_add_conv(m, MODEL_INPUT, 8, 3, 2, 0, 1, false, &e), &e);
  s = must(model_add_bn(m, s, &e), &e);
  s = must(model_add_relu(m, s, &e), &e);
  int a = must(model_add_conv(m, s, 4, 1, 1, 0, 1, false, &e), &e);
  a = must(model_add_conv(m, a, 4, 3, 2, 1, 1, false, &e), &e);
  a = must(model_add_fe(m, a, &e), &e);
  a = must(model_add_conv(m, a, 16, 1, 1, 0, 1, false, &e), &e);
  a = must(model_add_bn(m, a, &e), &e);
  int b = must(model_add_conv(m, s, 16, 1, 2, 0, 1, false, &e), &e);
  b = must(model_add_bn(m, b, &e), &e);
  int r = must(model_add_add(m, a, b, &e), &e);
  m->layers[r].relu = true;
  a = must(model_add_conv(m, r, 4, 3, 1, 1, 1, false, &e), &e);
  a = must(model_add_fe(m, a, &e), &e);
  a = must(model_add_conv(m, a, 16, 3, 1, 1, 1, false, &e), &e);
  r = must(model_add_add(m, a, r, &e), &e);
  r = must(model_add_avgpool(m, r, 2, 2, 0, &e), &e);
  r = must(model_add_flatten(m, r, &e), &e);
  must(model_add_fc(m, r, 6, true, &e), &e);
  return m;
}

static model *finalized(model *m, uint64_t seed) {
  err e = {0};
  xt_rng r = {seed};
  xt_randomize(&r, m);
  check_ok(model_finalize(m, &e), &e);
  return m;
}

static model *zoo_model(const char *name) {
  err e = {0};
  zoo_options o = zoo_defaults();
  o.in_h = o.in_w = ZOO_SIDE;
  model *m = NULL;
  check_ok(zoo_build(name, &o, &m, &e), &e);
  return m;
}

/* ---- the checks -------------------------------------------------------------- */

static void check_whole(xexec *x, const float *in) {
  err e = {0};
  const model *m = xexec_model(x);
  size_t n = model_shape_elems(m->layers[m->n_layers - 1].out);
  float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
  assert_non_null(got);
  assert_non_null(want);
  check_ok(xexec_run(x, in, got, &e), &e);
  check_ok(ref_run(m, in, want, &e), &e);
  double d = xt_rel_diff(got, want, n);
  if (d > REF_TOL) fail_msg("%s: executor vs reference %g", m->name, d);
  free(got);
  free(want);
}

/* A random range [first, end) between cuts; prefers ranges whose output
 * still has rows to split. */
static void random_range(xt_rng *r, const model *m, int *first, int *end) {
  int *cuts = malloc(((size_t)m->n_layers + 1) * sizeof *cuts), n = 0;
  assert_non_null(cuts);
  for (int c = 0; c <= m->n_layers; c++)
    if (model_is_cut(m, c)) cuts[n++] = c;
  for (int tries = 0;; tries++) {
    int i = xt_int(r, 0, n - 2), j = xt_int(r, i + 1, n - 1);
    *first = cuts[i];
    *end = cuts[j];
    if (m->layers[*end - 1].out.h > 1 || tries > 20) break;
  }
  free(cuts);
}

static void check_range(xexec *x, const float *in, int first, int end,
                        xt_rng *r) {
  err e = {0};
  const model *m = xexec_model(x);
  model_shape is = model_tensor_shape(m, first - 1);
  model_shape os = m->layers[end - 1].out;
  float *range_in = malloc(model_shape_elems(is) * sizeof(float));
  float *want = malloc(model_shape_elems(os) * sizeof(float));
  float *got = malloc(model_shape_elems(os) * sizeof(float));
  assert_non_null(range_in);
  assert_non_null(want);
  assert_non_null(got);
  if (first == 0)
    memcpy(range_in, in, model_shape_elems(is) * sizeof(float));
  else
    check_ok(xt_run_range(x, 0, first, in, range_in, &e), &e);
  check_ok(xt_run_range(x, first, end, range_in, want, &e), &e);
  for (int t = 0; t < SPLITS_PER_RANGE; t++) {
    int bounds[MAX_STRIPS + 1];
    int n = xt_random_split(r, os.h, MAX_STRIPS, bounds);
    for (int early = 0; early < 2; early++) {
      check_ok(xt_run_split_early(x, first, end, bounds, n, range_in, early, got, &e), &e);
      double d = xt_rel_diff(got, want, model_shape_elems(os));
      if (d > STRIP_TOL)
        fail_msg("%s [%d, %d) in %d strips%s: %g", m->name, first, end, n,
                 early ? ", early FE sums" : "", d);
    }
  }
  free(range_in);
  free(want);
  free(got);
}

/* Whole vs ref, the whole range as strips, then random ranges. Takes m. */
static void check_model(model *m, uint64_t seed) {
  err e = {0};
  xt_rng r = {seed};
  size_t n_in = model_shape_elems(m->input);
  float *in = malloc(n_in * sizeof *in);
  assert_non_null(in);
  xt_fill(&r, in, n_in, -1.0f, 1.0f);
  xexec *x;
  check_ok(xexec_create(m, 1, &x, &e), &e);
  check_whole(x, in);
  /* the last spatial layer before the head, as one range from the input */
  int end = m->n_layers;
  while (end > 1 && (m->layers[end - 1].out.h == 1 || !model_is_cut(m, end)))
    end--;
  check_range(x, in, 0, end, &r);
  for (int t = 0; t < RANGES_PER_MODEL; t++) {
    int first, last;
    random_range(&r, m, &first, &last);
    check_range(x, in, first, last, &r);
  }
  xexec_destroy(x);
  model_destroy(m);
  free(in);
}

static void test_vggish(void **state) {
  (void)state;
  check_model(finalized(vggish(), 1), 101);
}

static void test_resish(void **state) {
  (void)state;
  check_model(finalized(resish(), 2), 202);
}

static void test_zoo(void **state) {
  (void)state;
  uint64_t seed = 300;
  for (const char *const *name = zoo_names(); *name; name++)
    check_model(zoo_model(*name), seed++);
}

/* What the agents run: fused graphs, ReLU flags on conv, add and bn. */
static void test_zoo_fused(void **state) {
  (void)state;
  static const char *const names[] = {"vgg16c", "resnet18c", "resnet18"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    err e = {0};
    model *m = zoo_model(names[i]), *f = NULL;
    check_ok(fuse_model(m, &f, &e), &e);
    model_destroy(m);
    check_model(f, 400 + i);
  }
}

/* Two threads give what one gives, up to XNNPACK's work split. */
static void test_threads(void **state) {
  (void)state;
  err e = {0};
  model *m = finalized(resish(), 3);
  size_t n_in = model_shape_elems(m->input), n_out = 6;
  float in[33 * 31 * 3], one[6], two[6];
  xt_rng r = {9};
  xt_fill(&r, in, n_in, -1.0f, 1.0f);
  xexec *x1, *x2;
  check_ok(xexec_create(m, 1, &x1, &e), &e);
  check_ok(xexec_create(m, 2, &x2, &e), &e);
  check_ok(xexec_run(x1, in, one, &e), &e);
  check_ok(xexec_run(x2, in, two, &e), &e);
  assert_true(xt_rel_diff(two, one, n_out) <= STRIP_TOL);
  xexec_destroy(x1);
  xexec_destroy(x2);
  model_destroy(m);
}

/* A conv-ReLU-BN unit computes in one buffer: element-wise layers that are
 * their input's only reader write over it. */
static void test_in_place_bytes(void **state) {
  (void)state;
  err e = {0};
  model_shape in = {16, 16, 3};
  model *m = model_create("unit", in);
  int l = must(model_add_conv(m, MODEL_INPUT, 8, 3, 1, 1, 1, false, &e), &e);
  l = must(model_add_relu(m, l, &e), &e);
  must(model_add_bn(m, l, &e), &e);
  finalized(m, 8);
  xexec *x;
  check_ok(xexec_create(m, 1, &x, &e), &e);
  model_rows rows = {0, 16};
  xexec_strip *s;
  check_ok(xexec_strip_create(x, 0, 3, rows, &s, &e), &e);
  size_t in_bytes = 18 * 16 * 3 * sizeof(float), out_bytes = 16 * 16 * 8 * sizeof(float);
  assert_true(xexec_strip_bytes(s) >= in_bytes + out_bytes);
  assert_true(xexec_strip_bytes(s) < in_bytes + 2 * out_bytes);
  xexec_strip_destroy(s);
  xexec_destroy(x);
  model_destroy(m);
}

/* Buffer reuse (xexec.c): a chain of 3x3 convolutions, each tensor read
 * only by the next, holds the input, the output and two buffers taking
 * turns rather than one per tensor; the turns leave another tensor's values
 * in the zero rows, so a second and third run must still equal the first
 * and the reference. */
static void test_buffer_reuse(void **state) {
  (void)state;
  err e = {0};
  enum { H = 20, W = 12, C = 16, CONVS = 6 };
  model_shape in = {H, W, C};
  model *m = model_create("reuse", in);
  int l = MODEL_INPUT;
  for (int i = 0; i < CONVS; i++) {
    l = must(model_add_conv(m, l, C, 3, 1, 1, 1, true, &e), &e);
    m->layers[l].relu = true;
  }
  finalized(m, 12);
  xexec *x;
  check_ok(xexec_create(m, 1, &x, &e), &e);
  size_t n = (size_t)H * W * C;
  float *input = malloc(n * sizeof *input), *want = malloc(n * sizeof *want);
  float *got = malloc(n * sizeof *got);
  assert_non_null(input);
  assert_non_null(want);
  assert_non_null(got);
  xt_rng r = {5};
  xt_fill(&r, input, n, -1.0f, 1.0f);
  check_ok(ref_run(m, input, want, &e), &e);
  for (int run = 0; run < 3; run++) {
    check_ok(xexec_run(x, input, got, &e), &e);
    if (xt_rel_diff(got, want, n) > REF_TOL) fail_msg("run %d vs reference", run);
  }
  model_rows rows = {0, H};
  xexec_strip *s;
  check_ok(xexec_strip_create(x, 0, CONVS, rows, &s, &e), &e);
  size_t padded = (size_t)(H + 2) * W * C * sizeof(float);
  assert_true(xexec_strip_bytes(s) < 5 * padded); /* 7 tensors without reuse */
  xexec_strip_destroy(s);
  xexec_destroy(x);
  model_destroy(m);
  free(input);
  free(want);
  free(got);
}

/* The kept strip: the same one while asked for the same range and rows,
 * its runs equal to a fresh strip's; another range replaces it. */
static void test_kept_strip(void **state) {
  (void)state;
  err e = {0};
  model *m = zoo_model("vgg16c");
  xexec *x;
  check_ok(xexec_create(m, 1, &x, &e), &e);
  int end = m->n_layers, first = end - 1;
  while (first > 0 && m->layers[first - 1].out.h == m->layers[end - 1].out.h) first--;
  model_rows all = {0, m->layers[end - 1].out.h};
  xexec_strip *k1, *k2, *fresh;
  check_ok(xexec_strip_kept(x, first, end, all, &k1, &e), &e);
  check_ok(xexec_strip_kept(x, first, end, all, &k2, &e), &e);
  assert_ptr_equal(k1, k2);
  check_ok(xexec_strip_create(x, first, end, all, &fresh, &e), &e);
  model_rows in = xexec_strip_in_rows(fresh);
  const model_layer *prev = &m->layers[first - 1];
  size_t n_in = (size_t)(in.hi - in.lo) * (size_t)prev->out.w * (size_t)prev->out.c;
  size_t n_out = model_shape_elems(m->layers[end - 1].out);
  for (int run = 0; run < 3; run++) {
    xt_rng r = {77u + (unsigned)run};
    float *input = xexec_strip_input(k1);
    for (size_t i = 0; i < n_in; i++) input[i] = xt_uniform(&r, -0.5f, 0.5f);
    memcpy(xexec_strip_input(fresh), input, n_in * sizeof(float));
    check_ok(xexec_strip_run_local(k1, &e), &e);
    check_ok(xexec_strip_run_local(fresh, &e), &e);
    assert_memory_equal(xexec_strip_output(k1), xexec_strip_output(fresh), n_out * sizeof(float));
  }
  model_rows top = {0, all.hi > 1 ? all.hi - 1 : 1};
  check_ok(xexec_strip_kept(x, first, end, top, &k2, &e), &e);
  assert_int_equal(xexec_strip_out_rows(k2).hi, top.hi);
  assert_int_equal(xexec_strip_kept(NULL, first, end, all, &k2, &e), ERR_INVALID);
  assert_null(k2);
  assert_int_equal(xexec_strip_kept(x, first, end, all, NULL, &e), ERR_INVALID);
  xexec_strip_destroy(fresh);
  xexec_destroy(x); /* frees the kept strip */
  model_destroy(m);
}

/* ---- bad input ----------------------------------------------------------------- */

static void test_bad_models(void **state) {
  (void)state;
  err e = {0};
  xexec *x = (xexec *)1;
  assert_int_equal(xexec_create(NULL, 1, &x, &e), ERR_INVALID);
  assert_null(x);
  model *m = vggish(); /* not finalized */
  assert_int_equal(xexec_create(m, 1, &x, &e), ERR_INVALID);
  assert_null(x);
  assert_int_equal(xexec_create(m, 1, NULL, &e), ERR_INVALID);
  finalized(m, 4);
  /* a pool edited by hand so that a window could be all padding */
  model *bad = model_clone(m, &e);
  assert_non_null(bad);
  bad->layers[3].pad_top = bad->layers[3].kernel_h; /* finalize would refuse */
  assert_int_equal(xexec_create(bad, 1, &x, &e), ERR_UNSUPPORTED);
  assert_null(x);
  model_destroy(bad);
  /* a conv corrupted after finalize: XNNPACK refuses, the error names it */
  bad = model_clone(m, &e);
  assert_non_null(bad);
  bad->layers[0].kernel_w = 0;
  assert_int_equal(xexec_create(bad, 1, &x, &e), ERR_BACKEND);
  assert_null(x);
  assert_non_null(strstr(e.msg, bad->layers[0].name));
  model_destroy(bad);
  model_destroy(m);
  /* NULL everywhere the API takes a pointer: errors, not crashes */
  assert_int_equal(xexec_run(NULL, NULL, NULL, &e), ERR_INVALID);
  assert_int_equal(xexec_strip_run_local(NULL, &e), ERR_INVALID);
  assert_int_equal(xexec_strip_set_fe_scale(NULL, NULL, &e), ERR_INVALID);
  bool paused;
  xexec_fe_sums fe;
  assert_int_equal(xexec_strip_run(NULL, &paused, &fe, &e), ERR_INVALID);
  assert_null(xexec_strip_input(NULL));
  assert_null(xexec_strip_output(NULL));
  assert_int_equal(xexec_strip_bytes(NULL), 0);
  xexec_destroy(NULL);
  xexec_strip_destroy(NULL);
}

static void test_bad_strips(void **state) {
  (void)state;
  err e = {0};
  model *m = finalized(resish(), 5);
  xexec *x;
  check_ok(xexec_create(m, 1, &x, &e), &e);
  xexec_strip *s = (xexec_strip *)1;
  int n = m->n_layers, h = m->layers[10].out.h;
  model_rows ok = {0, 2}, none = {3, 3}, neg = {-1, 2}, past = {h - 1, h + 1};
  assert_true(model_is_cut(m, 11));
  assert_int_equal(xexec_strip_create(x, 0, 11, ok, NULL, &e), ERR_INVALID);
  assert_int_equal(xexec_strip_create(NULL, 0, 11, ok, &s, &e), ERR_INVALID);
  assert_null(s);
  assert_int_equal(xexec_strip_create(x, 0, 11, none, &s, &e), ERR_RANGE);
  assert_int_equal(xexec_strip_create(x, 0, 11, neg, &s, &e), ERR_RANGE);
  assert_int_equal(xexec_strip_create(x, 0, 11, past, &s, &e), ERR_RANGE);
  check_ok(xexec_strip_create(x, 0, 11, ok, &s, &e), &e);
  xexec_strip_destroy(s);
  s = (xexec_strip *)1;
  assert_int_equal(xexec_strip_create(x, 5, 5, ok, &s, &e), ERR_RANGE);
  assert_int_equal(xexec_strip_create(x, -1, 10, ok, &s, &e), ERR_RANGE);
  assert_int_equal(xexec_strip_create(x, 0, n + 1, ok, &s, &e), ERR_RANGE);
  /* 4 and 10 are inside the block: the shortcut's input is live across 4,
   * both branches across 10 */
  assert_false(model_is_cut(m, 4));
  assert_false(model_is_cut(m, 10));
  assert_int_equal(xexec_strip_create(x, 0, 10, ok, &s, &e), ERR_RANGE);
  assert_int_equal(xexec_strip_create(x, 0, 4, ok, &s, &e), ERR_RANGE);
  assert_int_equal(xexec_strip_create(x, 4, 11, ok, &s, &e), ERR_RANGE);
  assert_null(s);
  xexec_destroy(x);
  model_destroy(m);
}

/* The FE protocol out of order: errors that keep the strip usable. */
static void test_fe_protocol(void **state) {
  (void)state;
  err e = {0};
  model *m = finalized(resish(), 6);
  xexec *x;
  check_ok(xexec_create(m, 1, &x, &e), &e);
  int end = 11; /* through the first block: one FE */
  model_rows rows = {0, m->layers[end - 1].out.h};
  xexec_strip *s;
  check_ok(xexec_strip_create(x, 0, end, rows, &s, &e), &e);
  size_t n_in = model_shape_elems(m->input);
  xt_rng r = {10};
  xt_fill(&r, xexec_strip_input(s), n_in, -1.0f, 1.0f);
  float scale[16];
  assert_int_equal(xexec_strip_set_fe_scale(s, scale, &e), ERR_INVALID);
  bool paused;
  xexec_fe_sums fe;
  assert_int_equal(xexec_strip_run(s, &paused, NULL, &e), ERR_INVALID);
  check_ok(xexec_strip_run(s, &paused, &fe, &e), &e);
  assert_true(paused);
  assert_int_equal(fe.layer, 5);
  assert_int_equal(fe.channels, 4);
  assert_int_equal(fe.owned.lo, 0);
  assert_int_equal(fe.owned.hi, m->layers[4].out.h);
  /* running on without the scale is refused and keeps the pause */
  assert_int_equal(xexec_strip_run(s, &paused, &fe, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "scale"));
  assert_int_equal(xexec_strip_set_fe_scale(s, NULL, &e), ERR_INVALID);
  model_shape fs = m->layers[4].out;
  double sums[4];
  memcpy(sums, fe.sums, sizeof sums);
  check_ok(model_fe_scale(m, fe.layer, sums, (double)fs.h * fs.w, scale, &e), &e);
  check_ok(xexec_strip_set_fe_scale(s, scale, &e), &e);
  assert_int_equal(xexec_strip_set_fe_scale(s, scale, &e), ERR_INVALID);
  check_ok(xexec_strip_run(s, &paused, &fe, &e), &e);
  assert_false(paused);
  size_t n_out = model_shape_elems(m->layers[end - 1].out);
  float *dist = malloc(n_out * sizeof *dist);
  assert_non_null(dist);
  memcpy(dist, xexec_strip_output(s), n_out * sizeof *dist);
  /* a whole-image strip resolved locally is the same computation */
  check_ok(xexec_strip_run_local(s, &e), &e);
  assert_true(xt_rel_diff(xexec_strip_output(s), dist, n_out) == 0.0);
  /* run_local abandons a pause; a later run starts from the top again */
  check_ok(xexec_strip_run(s, &paused, &fe, &e), &e);
  assert_true(paused);
  check_ok(xexec_strip_run_local(s, &e), &e);
  assert_true(xt_rel_diff(xexec_strip_output(s), dist, n_out) == 0.0);
  assert_int_equal(xexec_strip_set_fe_scale(s, scale, &e), ERR_INVALID);
  check_ok(xexec_strip_run(s, &paused, &fe, &e), &e);
  assert_true(paused);
  assert_int_equal(fe.layer, 5);
  assert_true(xexec_strip_bytes(s) > n_in * sizeof(float));
  xexec_strip_destroy(s);
  free(dist);
  xexec_destroy(x);
  model_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vggish),      cmocka_unit_test(test_resish),
      cmocka_unit_test(test_threads),     cmocka_unit_test(test_in_place_bytes),
      cmocka_unit_test(test_buffer_reuse), cmocka_unit_test(test_bad_models),  cmocka_unit_test(test_kept_strip),
      cmocka_unit_test(test_bad_strips),  cmocka_unit_test(test_fe_protocol),
      cmocka_unit_test(test_zoo),         cmocka_unit_test(test_zoo_fused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

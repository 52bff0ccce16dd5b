/* wire_density_test.c — how light each cut's rows travel
 * (scheduler/wire_density.h) and the planners priced with it: ReLU outputs
 * measure about half, other layers 1; requests refine a layer's value
 * within bounds; plans price rows at their densities, the exact planner
 * stays the cheapest, and nonsense densities are refused. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/model.h"
#include "runtime/xexec.h"
#include "scheduler/plan.h"
#include "scheduler/wire_density.h"
#include "tests/plan_testlib.h"

static double *measure(const model *m) {
  xexec *x = NULL;
  err e = {0};
  assert_int_equal(xexec_create(m, 1, &x, &e), ERR_OK);
  double *d = malloc((size_t)m->n_layers * sizeof *d);
  assert_non_null(d);
  if (wire_density_measure(x, d, &e) != ERR_OK) fail_msg("%s", e.msg);
  xexec_destroy(x);
  return d;
}

static void test_measured_densities(void **state) {
  (void)state;
  const char *names[] = {"vgg16", "vgg16c", "resnet18c"};
  for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
    model *m = pt_build_fused(names[k], 64);
    double *d = measure(m), *again = measure(m);
    int head = plan_head_first(m), relu_cuts = 0;
    for (int l = 0; l < m->n_layers; l++) {
      assert_true(d[l] == again[l]); /* a fixed image: the same prior on every load */
      assert_true(d[l] >= PLAN_MIN_WIRE_DENSITY && d[l] <= 1.0);
      bool cut = l + 1 < head ? model_is_cut(m, l + 1) : l + 1 == head;
      if (!cut) {
        assert_true(d[l] == 1.0);
        continue;
      }
      if (m->layers[l].relu) {
        /* Random weights: about half of a ReLU's outputs are zero. */
        if (!(d[l] > 0.3 && d[l] < 0.85))
          fail_msg("%s layer %d (%s): density %g", names[k], l, m->layers[l].name, d[l]);
        relu_cuts++;
      }
    }
    assert_true(relu_cuts > 0);
    free(d), free(again);
    model_destroy(m);
  }
}

static void test_requests_refine(void **state) {
  (void)state;
  double d = 1.0;
  for (int i = 0; i < 30; i++) wire_density_note(&d, 1000, 400);
  assert_true(fabs(d - 0.4) < 1e-3);
  wire_density_note(&d, 1000, 1001); /* more sent than raw: not a density */
  assert_true(fabs(d - 0.4) < 1e-3);
  wire_density_note(&d, 0, 0);
  assert_true(fabs(d - 0.4) < 1e-3);
  for (int i = 0; i < 60; i++) wire_density_note(&d, 1000, 0); /* never below the mask */
  assert_true(d == PLAN_MIN_WIRE_DENSITY);
  wire_density_note(NULL, 10, 5);
}

/* Plans priced at densities move that share of the rows' bytes. */
static void test_plans_price_rows_at_their_densities(void **state) {
  (void)state;
  model *m = pt_build_fused("vgg16", 64);
  plan_device dev[PLAN_MAX_DEVICES];
  int n = pt_demo_cluster(dev);
  double *half = malloc((size_t)m->n_layers * sizeof *half);
  assert_non_null(half);
  for (int l = 0; l < m->n_layers; l++) half[l] = 0.5;
  plan_options raw = plan_default_options(), light = raw;
  light.wire_density = half;
  err e = {0};
  plan a, b;
  assert_int_equal(plan_find("proportional")(m, dev, n, &raw, &a, &e), ERR_OK);
  b = a;
  b.segments = malloc((size_t)a.n_segments * sizeof *b.segments);
  assert_non_null(b.segments);
  memcpy(b.segments, a.segments, (size_t)a.n_segments * sizeof *b.segments);
  assert_int_equal(plan_evaluate(m, dev, n, &light, &b, &e), ERR_OK);
  assert_true(a.n_segments > 1);
  for (int si = 1; si < a.n_segments; si++)
    for (int k = 0; k < a.segments[si].n_parts; k++) {
      const plan_part *x = &a.segments[si].parts[k], *y = &b.segments[si].parts[k];
      /* Every row of an even width: exactly half. */
      assert_true(2 * y->bytes_in == x->bytes_in);
      assert_true(2 * y->bytes_out == x->bytes_out);
      assert_true(y->transfer_ms <= x->transfer_ms);
    }
  assert_true(b.predicted_ms < a.predicted_ms);
  plan_free(&a);
  plan_free(&b);

  /* Nonsense densities never reach a planner. */
  double bad[] = {NAN, 0.0, -0.5, 1.5, INFINITY};
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    half[3] = bad[k];
    assert_int_equal(plan_exact(m, dev, n, &light, &a, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "wire density"));
  }
  free(half);
  model_destroy(m);
}

/* On random clusters with random densities the exact planner is never
 * above the others, and its draft prices are plan_evaluate's. */
static void test_exact_never_worse_with_densities(void **state) {
  (void)state;
  pt_rng r = {77};
  const char *names[] = {"vgg16", "vgg16c", "resnet18"};
  for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
    model *m = pt_build_fused(names[k], 0);
    plan_tables *t = NULL;
    err e = {0};
    assert_int_equal(plan_prepare(m, &t, &e), ERR_OK);
    double *d = malloc((size_t)m->n_layers * sizeof *d);
    assert_non_null(d);
    for (int trial = 0; trial < 6; trial++) {
      for (int l = 0; l < m->n_layers; l++) d[l] = pt_uniform(&r, PLAN_MIN_WIRE_DENSITY, 1.0);
      plan_device dev[PLAN_MAX_DEVICES];
      int n = pt_int(&r, 2, 12);
      pt_random_cluster(&r, dev, n, 5, 500, 5, 10, 1000, 3);
      plan_options o = plan_default_options();
      o.tables = t;
      o.wire_density = d;
      plan ex, other;
      assert_int_equal(plan_exact(m, dev, n, &o, &ex, &e), ERR_OK);
      pt_check_partition(m, &ex, n);
      plan again = ex;
      again.segments = malloc((size_t)ex.n_segments * sizeof *again.segments);
      assert_non_null(again.segments);
      memcpy(again.segments, ex.segments, (size_t)ex.n_segments * sizeof *again.segments);
      assert_int_equal(plan_evaluate(m, dev, n, &o, &again, &e), ERR_OK);
      assert_true(fabs(again.predicted_ms - ex.predicted_ms) <= 1e-9 * ex.predicted_ms);
      const char *others[] = {"heuristic", "proportional", "equal"};
      for (int q = 0; q < 3; q++) {
        assert_int_equal(plan_find(others[q])(m, dev, n, &o, &other, &e), ERR_OK);
        if (!(ex.predicted_ms <= other.predicted_ms))
          fail_msg("%s, %d devices: exact %.6f ms, %s %.6f ms", names[k], n, ex.predicted_ms,
                   others[q], other.predicted_ms);
        plan_free(&other);
      }
      plan_free(&ex);
      plan_free(&again);
    }
    free(d);
    plan_tables_destroy(t);
    model_destroy(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_measured_densities),
      cmocka_unit_test(test_requests_refine),
      cmocka_unit_test(test_plans_price_rows_at_their_densities),
      cmocka_unit_test(test_exact_never_worse_with_densities),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

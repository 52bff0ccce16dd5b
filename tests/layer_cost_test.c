/* layer_cost_test.c — measured per-layer costs and the planners that price
 * with them.
 *
 *  - layer_cost_measure() on real zoo models (small inputs): every weight
 *    finite and positive, head layers and layers without FLOPs at 1, and
 *    the weighted FLOPs of the spatial part equal its FLOPs (the weights
 *    redistribute cost between layers, they do not change the total, so a
 *    device's ms per GFLOP keeps its meaning).
 *  - plan_prepare_weighted() refuses NaN, infinite and negative weights.
 *  - Tables with (random) weights: a whole-picture strip costs the
 *    weighted FLOPs; the draft's exact price is plan_evaluate's to the bit;
 *    the exact planner is never priced above the other planners on random
 *    clusters; weights of 1 plan exactly as no weights.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/xexec.h"
#include "runtime/zoo.h"
#include "scheduler/layer_cost.h"
#include "scheduler/plan.h"
#include "scheduler/plan_internal.h"
#include "tests/plan_testlib.h"

static double spatial_flops(const model *m, const double *w) {
  double f = 0;
  for (int l = 0; l < plan_head_first(m); l++) f += m->layers[l].flops * (w ? w[l] : 1.0);
  return f;
}

static void test_measured_weights(void **state) {
  (void)state;
  const char *names[] = {"vgg16c", "resnet18c", "vgg13"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    model *m = pt_build_fused(names[k], 64);
    xexec *x = NULL;
    err e = {0};
    assert_int_equal(xexec_create(m, 1, &x, &e), ERR_OK);
    double *w = malloc((size_t)m->n_layers * sizeof *w);
    assert_non_null(w);
    assert_int_equal(layer_cost_measure(x, 2, w, &e), ERR_OK);
    int hf = plan_head_first(m), varied = 0;
    for (int l = 0; l < m->n_layers; l++) {
      assert_true(isfinite(w[l]) && w[l] > 0);
      if (l >= hf || m->layers[l].flops <= 0) assert_true(w[l] == 1.0);
      if (fabs(w[l] - 1.0) > 0.05) varied++;
    }
    double f = spatial_flops(m, NULL), fw = spatial_flops(m, w);
    if (fabs(fw - f) > 1e-9 * f) fail_msg("%s: weighted %.6g FLOPs, plain %.6g", names[k], fw, f);
    assert_true(varied > 0); /* layers of one model do not all run at one rate */
    plan_tables *t = NULL;
    assert_int_equal(plan_prepare_weighted(m, w, &t, &e), ERR_OK);
    plan_tables_destroy(t);
    free(w);
    xexec_destroy(x);
    model_destroy(m);
  }
}

static void test_nonsense_weights_refused(void **state) {
  (void)state;
  model *m = pt_build_fused("vgg16c", 64);
  double *w = malloc((size_t)m->n_layers * sizeof *w);
  assert_non_null(w);
  const double bad[] = {NAN, INFINITY, -1.0};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    for (int l = 0; l < m->n_layers; l++) w[l] = 1.0;
    w[3] = bad[k];
    plan_tables *t = NULL;
    err e = {0};
    assert_int_equal(plan_prepare_weighted(m, w, &t, &e), ERR_INVALID);
    assert_null(t);
    assert_non_null(strstr(e.msg, "layer 3"));
  }
  free(w);
  model_destroy(m);
}

static double *random_weights(const model *m, pt_rng *r) {
  double *w = malloc((size_t)m->n_layers * sizeof *w);
  assert_non_null(w);
  for (int l = 0; l < m->n_layers; l++) w[l] = pt_log_uniform(r, 0.3, 3.0);
  return w;
}

/* One device: each segment's work is the weighted FLOPs of the rows
 * model_strip_rows says it computes (all of them, but for rows a floor-
 * rounding pool never reads). */
static void test_whole_strip_costs_weighted_flops(void **state) {
  (void)state;
  pt_rng r = {31};
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = pt_build_fused(*name, 0);
    double *w = random_weights(m, &r);
    plan_tables *t = NULL;
    err e = {0};
    assert_int_equal(plan_prepare_weighted(m, w, &t, &e), ERR_OK);
    plan_device d[1];
    pt_random_cluster(&r, d, 1, 5, 500, 5, 10, 1000, 3);
    plan_options o = plan_default_options();
    o.tables = t;
    plan p;
    assert_int_equal(plan_find("equal")(m, d, 1, &o, &p, &e), ERR_OK);
    double gflop = 0, want = 0;
    model_rows *rows = malloc((size_t)m->n_layers * sizeof *rows), in;
    assert_non_null(rows);
    for (int si = 0; si < p.n_segments; si++) {
      const plan_segment *sg = &p.segments[si];
      gflop += sg->parts[0].gflop;
      assert_int_equal(model_strip_rows(m, sg->first, sg->end, sg->parts[0].out, rows, &in, &e),
                       ERR_OK);
      for (int l = sg->first; l < sg->end; l++)
        want += m->layers[l].flops * w[l] * (rows[l].hi - rows[l].lo) / m->layers[l].out.h / 1e9;
    }
    free(rows);
    assert_true(want <= spatial_flops(m, w) / 1e9 * (1 + 1e-12));
    if (fabs(gflop - want) > 1e-9 * want) fail_msg("%s: %.9f GFLOP, want %.9f", *name, gflop, want);
    plan_free(&p);
    plan_tables_destroy(t);
    free(w);
    model_destroy(m);
  }
}

static void test_planners_with_weights(void **state) {
  (void)state;
  pt_rng r = {77};
  const char *names[] = {"vgg16c", "resnet18c", "vgg16", "resnet50c"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    model *m = pt_build_fused(names[k], 0);
    double *w = random_weights(m, &r);
    double *ones = malloc((size_t)m->n_layers * sizeof *ones);
    assert_non_null(ones);
    for (int l = 0; l < m->n_layers; l++) ones[l] = 1.0;
    plan_tables *t = NULL, *t1 = NULL, *t0 = NULL;
    err e = {0};
    assert_int_equal(plan_prepare_weighted(m, w, &t, &e), ERR_OK);
    assert_int_equal(plan_prepare_weighted(m, ones, &t1, &e), ERR_OK);
    assert_int_equal(plan_prepare(m, &t0, &e), ERR_OK);
    for (int trial = 0; trial < 6; trial++) {
      plan_device d[PLAN_MAX_DEVICES];
      int n = pt_int(&r, 2, 12);
      pt_random_cluster(&r, d, n, 5, 500, 5, 10, 1000, 3);
      plan_options o = plan_default_options();
      o.tables = t;
      plan ex;
      assert_int_equal(plan_exact(m, d, n, &o, &ex, &e), ERR_OK);
      pt_check_partition(m, &ex, n);
      plan_ctx c;
      plan_ctx_init(&c, m, t, d, n, &o);
      plan_dseg segs[256];
      int ns = 0;
      assert_true(plan_draft_from_plan(&c, &ex, segs, &ns));
      assert_true(plan_draft_time_exact(&c, segs, ns) == ex.predicted_ms);
      const char *others[] = {"heuristic", "proportional", "equal"};
      for (int q = 0; q < 3; q++) {
        plan p;
        assert_int_equal(plan_find(others[q])(m, d, n, &o, &p, &e), ERR_OK);
        if (!(ex.predicted_ms <= p.predicted_ms))
          fail_msg("%s, %d devices, weighted: exact %.6f ms, %s %.6f ms", names[k], n,
                   ex.predicted_ms, others[q], p.predicted_ms);
        plan_free(&p);
      }
      /* Weights of 1 are no weights. */
      plan a, b;
      o.tables = t1;
      assert_int_equal(plan_exact(m, d, n, &o, &a, &e), ERR_OK);
      o.tables = t0;
      assert_int_equal(plan_exact(m, d, n, &o, &b, &e), ERR_OK);
      assert_true(a.predicted_ms == b.predicted_ms && a.n_segments == b.n_segments);
      plan_free(&a);
      plan_free(&b);
      plan_free(&ex);
    }
    plan_tables_destroy(t);
    plan_tables_destroy(t1);
    plan_tables_destroy(t0);
    free(w);
    free(ones);
    model_destroy(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_measured_weights),
      cmocka_unit_test(test_nonsense_weights_refused),
      cmocka_unit_test(test_whole_strip_costs_weighted_flops),
      cmocka_unit_test(test_planners_with_weights),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* plan_test.c — the planner interface and the simple planners: strips
 * partition every segment's rows, faster devices get more rows, the cost
 * model prices what really moves, nonsense cost models never plan, the
 * registry lists the four planners with the exact one as the default.
 * (The exact planner's own tests are in plan_exact_test.c.) */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/zoo.h"
#include "scheduler/plan.h"
#include "tests/plan_testlib.h"

#define build_fused(name) pt_build_fused(name, 0)
#define demo_cluster pt_demo_cluster

static void test_every_model_every_planner(void **state) {
  (void)state;
  plan_device d[4];
  int n = demo_cluster(d);
  plan_options o = plan_default_options();
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = build_fused(*name);
    for (const char *const *pn = plan_names(); *pn; pn++) {
      plan p;
      err e = {0};
      assert_int_equal(plan_find(*pn)(m, d, n, &o, &p, &e), ERR_OK);
      pt_check_partition(m, &p, n);
      /* Strips stay resident: moving halos is cheaper than gathering, and
       * never dearer (a plan of one segment on one device moves the same:
       * the image in, the output back). */
      assert_true(p.bytes_moved <= p.bytes_gather_all);
      if (p.n_segments > 1 && p.segments[0].n_parts > 1)
        assert_true(p.bytes_moved < p.bytes_gather_all);
      plan_free(&p);
    }
    model_destroy(m);
  }
}

static void test_faster_device_gets_more_rows(void **state) {
  (void)state;
  plan_device d[4];
  int n = demo_cluster(d);
  plan_options o = plan_default_options();
  model *m = build_fused("vgg16c");
  plan p;
  err e = {0};
  assert_int_equal(plan_proportional(m, d, n, &o, &p, &e), ERR_OK);
  const plan_segment *s = &p.segments[0];
  int slow = s->parts[0].out.hi - s->parts[0].out.lo;
  int fast = s->parts[3].out.hi - s->parts[3].out.lo;
  assert_true(fast > slow);
  plan_free(&p);
  assert_int_equal(plan_equal(m, d, n, &o, &p, &e), ERR_OK);
  s = &p.segments[0];
  assert_int_equal(s->parts[0].out.hi - s->parts[0].out.lo,
                   s->parts[3].out.hi - s->parts[3].out.lo);
  plan_free(&p);
  model_destroy(m);
}

/* A segment's only job makes its FE scales itself (TileJob.fe_local): it
 * pays one round trip, not one per FE. With a long round trip, resnet18c
 * (16 FEs) on the demo's boards runs whole on one device, priced so: its
 * transfer time is its bytes plus a single round trip. */
static void test_one_device_pays_no_fe_trips(void **state) {
  (void)state;
  plan_device d[4];
  int n = demo_cluster(d);
  for (int i = 0; i < n; i++) d[i].rtt_ms = 40;
  plan_options o = plan_default_options();
  model *m = build_fused("resnet18c");
  plan p;
  err e = {0};
  assert_int_equal(plan_exact(m, d, n, &o, &p, &e), ERR_OK);
  int fe = 0;
  for (int si = 0; si < p.n_segments; si++) {
    const plan_segment *s = &p.segments[si];
    fe += s->fe_exchanges + s->fe_early;
    assert_int_equal(s->n_parts, 1);
    const plan_part *pt = &s->parts[0];
    double bytes_ms = (double)(pt->bytes_in + pt->bytes_out) * 8.0 /
                      (d[pt->device].bandwidth_mbps * 1e3);
    assert_true(fabs(pt->transfer_ms - (bytes_ms + d[pt->device].rtt_ms)) < 1e-6);
  }
  assert_true(fe >= 16);
  plan_free(&p);
  model_destroy(m);
}

/* Every job's transfer time is its bytes, its round trip and, in a shared
 * segment, one FE round trip per FE (plan_fe_rtt); returns the FE
 * exchanges of shared segments. */
static int check_fe_pricing(const plan *p, const plan_device *d) {
  int shared_fe = 0;
  for (int si = 0; si < p->n_segments; si++) {
    const plan_segment *s = &p->segments[si];
    for (int k = 0; k < s->n_parts; k++) {
      const plan_part *pt = &s->parts[k];
      const plan_device *dv = &d[pt->device];
      double bytes_ms = (double)(pt->bytes_in + pt->bytes_out) * 8.0 / (dv->bandwidth_mbps * 1e3);
      double fe_rtt = dv->fe_rtt_ms > 0 ? dv->fe_rtt_ms : dv->rtt_ms;
      double fe_ms = s->n_parts > 1 ? s->fe_exchanges * fe_rtt : 0;
      assert_true(fabs(pt->transfer_ms - (bytes_ms + dv->rtt_ms + fe_ms)) < 1e-6);
    }
    if (s->n_parts > 1) shared_fe += s->fe_exchanges;
  }
  return shared_fe;
}

/* Early FE sums (fe_moments.h) are not waited for, so not priced: a
 * segment waits only for FEs whose chain it does not hold (plan_fe_waited),
 * the others count as early. vgg16c on the demo's boards shares segments
 * with early sums and is predicted faster for them; resnet18c, which runs
 * on one board there, never slower. */
static void test_early_fe_sums_not_priced(void **state) {
  (void)state;
  plan_device d[4];
  int n = demo_cluster(d);
  const char *names[] = {"vgg16c", "resnet18c"};
  for (int k = 0; k < 2; k++) {
    model *m = build_fused(names[k]);
    plan_options o = plan_default_options();
    plan early, late;
    err e = {0};
    assert_int_equal(plan_exact(m, d, n, &o, &early, &e), ERR_OK);
    assert_false(early.fe_late);
    int n_early = 0;
    for (int si = 0; si < early.n_segments; si++) {
      const plan_segment *s = &early.segments[si];
      int all = 0;
      for (int l = s->first; l < s->end; l++) all += m->layers[l].op == MODEL_OP_FE;
      assert_int_equal(s->fe_exchanges, plan_fe_waited(m, s->first, s->end, false));
      assert_int_equal(s->fe_exchanges + s->fe_early, all);
      n_early += s->n_parts > 1 ? s->fe_early : 0;
    }
    if (k == 0 && n_early == 0) fail_msg("%s: no early FE sums in shared segments", names[k]);
    check_fe_pricing(&early, d);
    o.fe_late = true;
    assert_int_equal(plan_exact(m, d, n, &o, &late, &e), ERR_OK);
    assert_true(late.fe_late);
    for (int si = 0; si < late.n_segments; si++) assert_int_equal(late.segments[si].fe_early, 0);
    check_fe_pricing(&late, d);
    if (k == 0 ? !(early.predicted_ms < late.predicted_ms)
               : !(early.predicted_ms <= late.predicted_ms))
      fail_msg("%s: early sums %.3f ms, late %.3f", names[k], early.predicted_ms,
               late.predicted_ms);
    plan_free(&early);
    plan_free(&late);
    model_destroy(m);
  }
}

/* An FE exchange costs the device's fe_rtt_ms, its job's own transfers
 * rtt_ms; with FE exchanges that cheap vgg16c still splits over the boards
 * although each job's round trip is long. fe_rtt_ms 0 prices as before. */
static void test_fe_exchanges_priced_apart(void **state) {
  (void)state;
  plan_device d[4];
  int n = demo_cluster(d);
  for (int i = 0; i < n; i++) {
    d[i].rtt_ms = 8;
    d[i].fe_rtt_ms = 0.25 * (i + 1);
  }
  plan_options o = plan_default_options();
  o.fe_late = true; /* every FE waited for */
  model *m = build_fused("vgg16c");
  plan p;
  err e = {0};
  assert_int_equal(plan_exact(m, d, n, &o, &p, &e), ERR_OK);
  assert_true(check_fe_pricing(&p, d) > 0);
  plan_free(&p);
  for (int i = 0; i < n; i++) d[i].fe_rtt_ms = 0;
  assert_int_equal(plan_exact(m, d, n, &o, &p, &e), ERR_OK);
  check_fe_pricing(&p, d);
  plan_free(&p);
  model_destroy(m);
}

/* Every planner refuses nonsense before any arithmetic sees it. */
static void test_nonsense_cost_models_are_rejected(void **state) {
  (void)state;
  plan_device d[PLAN_MAX_DEVICES + 1];
  plan_options o = plan_default_options();
  model *m = build_fused("resnet18c");
  const double bad[] = {-1, 0, NAN, INFINITY, -INFINITY};
  for (const char *const *pn = plan_names(); *pn; pn++) {
    plan_fn fn = plan_find(*pn);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
      for (int field = 0; field < 5; field++) {
        int n = demo_cluster(d);
        double *x[5] = {&d[2].ms_per_gflop, &d[2].fixed_ms, &d[2].bandwidth_mbps, &d[2].rtt_ms,
                        &d[2].fe_rtt_ms};
        *x[field] = bad[i];
        /* A zero fixed cost or round trip is fine; zero speed or bandwidth is not. */
        bool fine = bad[i] == 0 && (field == 1 || field >= 3);
        plan p;
        err e = {0};
        err_code rc = fn(m, d, n, &o, &p, &e);
        if (fine) {
          assert_int_equal(rc, ERR_OK);
          plan_free(&p);
          continue;
        }
        assert_int_equal(rc, ERR_INVALID);
        assert_non_null(strstr(e.msg, "board2"));
      }
    plan p;
    err e = {0};
    int n = demo_cluster(d);
    assert_int_equal(fn(m, d, 0, &o, &p, &e), ERR_UNAVAILABLE);
    for (int i = 0; i <= PLAN_MAX_DEVICES; i++) d[i] = d[i % 4];
    assert_int_equal(fn(m, d, PLAN_MAX_DEVICES + 1, &o, &p, &e), ERR_INVALID);
    plan_options bad_o = o;
    bad_o.input_channels = 0;
    assert_int_equal(fn(m, d, n, &bad_o, &p, &e), ERR_INVALID);
    bad_o = o;
    bad_o.input_bytes_per_pixel = -4;
    assert_int_equal(fn(m, d, n, &bad_o, &p, &e), ERR_INVALID);
    assert_int_equal(fn(m, d, n, NULL, &p, &e), ERR_INVALID);
  }
  model_destroy(m);
}

/* Four planners by name, the exact one first and the default. */
static void test_registry(void **state) {
  (void)state;
  const char *const want[] = {"exact", "heuristic", "proportional", "equal"};
  const char *const *names = plan_names();
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    assert_non_null(names[i]);
    assert_string_equal(names[i], want[i]);
    assert_non_null(plan_find(want[i]));
  }
  assert_null(names[4]);
  assert_string_equal(plan_default_name(), "exact");
  assert_true(plan_find("exact") == plan_exact);
  assert_true(plan_find("heuristic") == plan_heuristic);
  assert_null(plan_find("nonsense"));
  assert_null(plan_find(NULL));
  assert_null(plan_find(""));
}

static void test_head_is_the_classifier(void **state) {
  (void)state;
  model *m = build_fused("vgg16");
  int h = plan_head_first(m);
  assert_int_equal(m->layers[h].op, MODEL_OP_FLATTEN);
  model_destroy(m);
  m = build_fused("resnet50c");
  h = plan_head_first(m);
  assert_true(h < m->n_layers);
  for (int l = h; l < m->n_layers; l++) {
    assert_int_not_equal(m->layers[l].op, MODEL_OP_CONV);
    assert_int_not_equal(m->layers[l].op, MODEL_OP_FE);
  }
  model_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_model_every_planner),
      cmocka_unit_test(test_faster_device_gets_more_rows),
      cmocka_unit_test(test_one_device_pays_no_fe_trips),
      cmocka_unit_test(test_fe_exchanges_priced_apart),
      cmocka_unit_test(test_early_fe_sums_not_priced),
      cmocka_unit_test(test_nonsense_cost_models_are_rejected),
      cmocka_unit_test(test_head_is_the_classifier),
      cmocka_unit_test(test_registry),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

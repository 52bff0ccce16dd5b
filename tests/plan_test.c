/* plan_test.c — the planner interface and the simple planners: strips
 * partition every segment's rows, faster devices get more rows, the cost
 * model prices what really moves, nonsense cost models never plan. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fuse.h"
#include "runtime/zoo.h"
#include "scheduler/plan.h"

static model *build_fused(const char *name) {
  zoo_options o = zoo_defaults();
  model *m = NULL, *f = NULL;
  err e = {0};
  assert_int_equal(zoo_build(name, &o, &m, &e), ERR_OK);
  assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
  model_destroy(m);
  return f;
}

/* Two Pi 3B+-like and two Pi 4B-like boards behind 100 Mbit/s. */
static int demo_cluster(plan_device *d) {
  const double a[4] = {100, 100, 66.7, 66.7};
  for (int i = 0; i < 4; i++) {
    memset(&d[i], 0, sizeof d[i]);
    snprintf(d[i].name, sizeof d[i].name, "board%d", i);
    d[i].ms_per_gflop = a[i];
    d[i].fixed_ms = 1;
    d[i].bandwidth_mbps = 100;
    d[i].rtt_ms = 1;
  }
  return 4;
}

static void check_partition(const model *m, const plan *p) {
  assert_true(p->n_segments >= 1);
  assert_int_equal(p->segments[0].first, 0);
  assert_int_equal(p->segments[p->n_segments - 1].end, p->head_first);
  for (int si = 0; si < p->n_segments; si++) {
    const plan_segment *s = &p->segments[si];
    if (si > 0) assert_int_equal(s->first, p->segments[si - 1].end);
    assert_true(model_is_cut(m, s->first) && model_is_cut(m, s->end));
    int next = 0;
    for (int k = 0; k < s->n_parts; k++) {
      assert_int_equal(s->parts[k].out.lo, next);
      assert_true(s->parts[k].out.hi > s->parts[k].out.lo);
      assert_true(s->parts[k].in.lo <= s->parts[k].in.hi);
      next = s->parts[k].out.hi;
    }
    assert_int_equal(next, m->layers[s->end - 1].out.h);
    assert_true(s->predicted_ms > 0);
  }
}

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
      check_partition(m, &p);
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

static void test_nonsense_cost_models_are_rejected(void **state) {
  (void)state;
  plan_device d[4];
  plan_options o = plan_default_options();
  model *m = build_fused("resnet18c");
  const double bad[] = {-1, 0, NAN, INFINITY};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int n = demo_cluster(d);
    d[2].ms_per_gflop = bad[i];
    plan p;
    err e = {0};
    assert_int_equal(plan_proportional(m, d, n, &o, &p, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "board2"));
  }
  int n = demo_cluster(d);
  d[1].bandwidth_mbps = NAN;
  plan p;
  err e = {0};
  assert_int_equal(plan_proportional(m, d, n, &o, &p, &e), ERR_INVALID);
  assert_int_equal(plan_proportional(m, d, 0, &o, &p, &e), ERR_UNAVAILABLE);
  model_destroy(m);
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
      cmocka_unit_test(test_nonsense_cost_models_are_rejected),
      cmocka_unit_test(test_head_is_the_classifier),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

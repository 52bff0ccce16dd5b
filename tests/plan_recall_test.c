/* plan_recall_test.c — recent plans offered again: re-priced with today's
 * cost models, replacing a fresh plan only within the gain, only over the
 * devices it was planned over, kept per model and planner, least recent
 * first to go. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/plan.h"
#include "scheduler/plan_recall.h"
#include "tests/plan_testlib.h"

static plan planned(plan_fn fn, const model *m, const plan_device *d, int n) {
  plan p;
  err e = {0};
  plan_options o = plan_default_options();
  assert_int_equal(fn(m, d, n, &o, &p, &e), ERR_OK);
  return p;
}

/* p's split priced with devs. */
static plan repriced(const model *m, const plan_device *devs, int n, const plan *p) {
  plan q = *p;
  q.segments = malloc((size_t)p->n_segments * sizeof *q.segments);
  assert_non_null(q.segments);
  memcpy(q.segments, p->segments, (size_t)p->n_segments * sizeof *q.segments);
  plan_options o = plan_default_options();
  err e = {0};
  assert_int_equal(plan_evaluate(m, devs, n, &o, &q, &e), ERR_OK);
  return q;
}

static void test_recalled_within_the_gain(void **state) {
  (void)state;
  model *m = pt_build_fused("vgg16c", 0);
  plan_device d[4];
  int n = pt_demo_cluster(d);
  plan_recall *r = NULL;
  err e = {0};
  assert_int_equal(plan_recall_create(0.10, &r, &e), ERR_OK);
  plan_options o = plan_default_options();

  /* Nothing remembered: nothing offered. */
  plan fresh = planned(plan_exact, m, d, n);
  assert_false(plan_recall_offer(r, "digest", "exact", m, d, NULL, n, &o, &fresh));

  /* The exact plan remembered as what ran; the cost models move a little
   * (device 0 5 % slower): it is offered instead of the fresh plan,
   * re-priced with the new models. */
  plan ran = planned(plan_exact, m, d, n);
  plan_recall_remember(r, "digest", "exact", d, NULL, n, &ran, true);
  plan_device moved[4];
  memcpy(moved, d, sizeof moved);
  moved[0].ms_per_gflop *= 1.05;
  plan fresh2 = planned(plan_exact, m, moved, n);
  plan reprice = repriced(m, moved, n, &ran);
  assert_true(reprice.predicted_ms <= fresh2.predicted_ms * 1.10);
  assert_true(plan_recall_offer(r, "digest", "exact", m, moved, NULL, n, &o, &fresh2));
  assert_true(pt_same_split(&fresh2, &ran));
  assert_true(fresh2.predicted_ms == reprice.predicted_ms); /* today's prices */
  plan_free(&fresh2);
  plan_free(&reprice);

  /* A remembered plan priced beyond the gain is not offered: the
   * proportional split is far behind the exact one on this cluster. */
  plan_recall *rp = NULL;
  assert_int_equal(plan_recall_create(0.10, &rp, &e), ERR_OK);
  plan prop = planned(plan_proportional, m, d, n);
  plan_recall_remember(rp, "digest", "exact", d, NULL, n, &prop, true);
  plan fresh4 = planned(plan_exact, m, d, n);
  assert_true(prop.predicted_ms > fresh4.predicted_ms * 1.10);
  assert_false(plan_recall_offer(rp, "digest", "exact", m, d, NULL, n, &o, &fresh4));
  assert_false(pt_same_split(&fresh4, &prop));
  plan_free(&fresh4);
  plan_free(&prop);
  plan_recall_destroy(rp);

  /* Gain 0 with the plan that ran as the fresh one: it is its own equal. */
  plan_recall *r0 = NULL;
  assert_int_equal(plan_recall_create(0.0, &r0, &e), ERR_OK);
  plan_recall_remember(r0, "digest", "exact", d, NULL, n, &fresh, true);
  plan again = planned(plan_exact, m, d, n);
  assert_true(plan_recall_offer(r0, "digest", "exact", m, d, NULL, n, &o, &again));
  assert_true(pt_same_split(&again, &fresh));
  plan_free(&again);

  /* One device three times slower: the remembered split, re-priced, is
   * dearer than the fresh one, and with gain 0 it is not offered. */
  plan_device slow[4];
  memcpy(slow, d, sizeof slow);
  slow[2].ms_per_gflop *= 3;
  plan fresh3 = planned(plan_exact, m, slow, n);
  plan old = repriced(m, slow, n, &fresh);
  assert_true(old.predicted_ms > fresh3.predicted_ms);
  assert_false(plan_recall_offer(r0, "digest", "exact", m, slow, NULL, n, &o, &fresh3));
  assert_false(pt_same_split(&fresh3, &fresh));
  plan_free(&old);
  plan_free(&fresh3);

  plan_free(&fresh);
  plan_free(&ran);
  plan_recall_destroy(r);
  plan_recall_destroy(r0);
  model_destroy(m);
}

static void test_only_over_the_same_devices(void **state) {
  (void)state;
  model *m = pt_build_fused("vgg16c", 0);
  plan_device d[4];
  int n = pt_demo_cluster(d);
  plan_recall *r = NULL;
  err e = {0};
  assert_int_equal(plan_recall_create(10.0, &r, &e), ERR_OK); /* accepts anything priced */
  plan_options o = plan_default_options();
  plan ran = planned(plan_equal, m, d, n); /* every device has rows */
  plan_recall_remember(r, "digest", "exact", d, NULL, n, &ran, true);

  /* Device 1 is gone. */
  plan_device three[3] = {d[0], d[2], d[3]};
  plan fresh = planned(plan_exact, m, three, 3);
  assert_false(plan_recall_offer(r, "digest", "exact", m, three, NULL, 3, &o, &fresh));
  plan_free(&fresh);

  /* A fifth device joined: plan afresh, whatever the price. */
  plan_device five[5] = {d[0], d[1], d[2], d[3], d[3]};
  snprintf(five[4].name, sizeof five[4].name, "newcomer");
  fresh = planned(plan_exact, m, five, 5);
  assert_false(plan_recall_offer(r, "digest", "exact", m, five, NULL, 5, &o, &fresh));
  plan_free(&fresh);

  /* The same devices in another order: offered, mapped by name. */
  plan_device shuffled[4] = {d[3], d[1], d[0], d[2]};
  fresh = planned(plan_exact, m, shuffled, n);
  assert_true(plan_recall_offer(r, "digest", "exact", m, shuffled, NULL, n, &o, &fresh));
  for (int s = 0; s < fresh.n_segments; s++)
    for (int k = 0; k < fresh.segments[s].n_parts; k++) {
      const plan_part *got = &fresh.segments[s].parts[k], *want = &ran.segments[s].parts[k];
      assert_string_equal(shuffled[got->device].name, d[want->device].name);
      assert_int_equal(got->out.lo, want->out.lo);
      assert_int_equal(got->out.hi, want->out.hi);
    }
  plan_free(&fresh);

  /* Device 2 restarted: same name, a new session, nothing prepared. */
  plan_recall *rs = NULL;
  assert_int_equal(plan_recall_create(10.0, &rs, &e), ERR_OK);
  uint64_t before[4] = {1, 2, 3, 4}, after[4] = {1, 2, 5, 4};
  plan_recall_remember(rs, "digest", "exact", d, before, n, &ran, true);
  fresh = planned(plan_exact, m, d, n);
  assert_false(plan_recall_offer(rs, "digest", "exact", m, d, after, n, &o, &fresh));
  assert_true(plan_recall_offer(rs, "digest", "exact", m, d, before, n, &o, &fresh));
  plan_free(&fresh);
  plan_recall_destroy(rs);

  /* Another model digest or planner: nothing to offer. */
  fresh = planned(plan_exact, m, d, n);
  assert_false(plan_recall_offer(r, "other", "exact", m, d, NULL, n, &o, &fresh));
  assert_false(plan_recall_offer(r, "digest", "heuristic", m, d, NULL, n, &o, &fresh));
  plan_free(&fresh);
  plan_free(&ran);
  plan_recall_destroy(r);
  model_destroy(m);
}

static void test_least_recent_goes_first(void **state) {
  (void)state;
  model *m = pt_build_fused("vgg16c", 0);
  plan_device d[4];
  int n = pt_demo_cluster(d);
  plan_recall *r = NULL;
  err e = {0};
  assert_int_equal(plan_recall_create(10.0, &r, &e), ERR_OK);
  plan_options o = plan_default_options();
  /* The first remembered plan is the only one on a lone device 0; then
   * PLAN_RECALL_PER_KEY plans that all use device 3 push it out. */
  plan lone = planned(plan_exact, m, d, 1);
  plan_recall_remember(r, "digest", "exact", d, NULL, 1, &lone, true);
  plan fresh = planned(plan_exact, m, d, 1);
  assert_true(plan_recall_offer(r, "digest", "exact", m, d, NULL, 1, &o, &fresh));
  plan_free(&fresh);
  for (int i = 0; i < PLAN_RECALL_PER_KEY; i++) {
    plan_device pair[2] = {d[3], d[i % 3]};
    snprintf(pair[1].name, sizeof pair[1].name, "board-%d", i); /* a distinct plan each */
    plan p = planned(plan_equal, m, pair, 2);
    plan_recall_remember(r, "digest", "exact", pair, NULL, 2, &p, true);
    plan_free(&p);
  }
  fresh = planned(plan_exact, m, d, 1);
  assert_false(plan_recall_offer(r, "digest", "exact", m, d, NULL, 1, &o, &fresh));
  plan_free(&fresh);

  plan_recall_destroy(r);

  /* Nonsense gains; NULL recalls do nothing. */
  plan_recall *bad = NULL;
  assert_int_equal(plan_recall_create(-0.1, &bad, &e), ERR_INVALID);
  assert_int_equal(plan_recall_create(NAN, &bad, &e), ERR_INVALID);
  assert_null(bad);
  plan_recall_remember(NULL, "digest", "exact", d, NULL, n, &lone, true);
  assert_false(plan_recall_offer(NULL, "digest", "exact", m, d, NULL, n, &o, &lone));
  plan_free(&lone);
  model_destroy(m);
}

/* Plans that ran late are kept only after PLAN_RECALL_SETTLE_RUNS of
 * them; one that ran on time is kept at once. */
static void test_late_plans_kept_once_settled(void **state) {
  (void)state;
  model *m = pt_build_fused("vgg16c", 0);
  plan_device d[4];
  int n = pt_demo_cluster(d);
  plan_recall *r = NULL;
  err e = {0};
  assert_int_equal(plan_recall_create(10.0, &r, &e), ERR_OK);
  plan_options o = plan_default_options();
  plan ran = planned(plan_exact, m, d, n);
  for (int i = 0; i <= PLAN_RECALL_SETTLE_RUNS; i++) {
    plan_recall_remember(r, "digest", "exact", d, NULL, n, &ran, false);
    plan fresh = planned(plan_exact, m, d, n);
    bool offered = plan_recall_offer(r, "digest", "exact", m, d, NULL, n, &o, &fresh);
    assert_true(offered == (i == PLAN_RECALL_SETTLE_RUNS));
    plan_free(&fresh);
  }
  /* Another planner's key has not settled, but an on-time run keeps. */
  plan_recall_remember(r, "digest", "heuristic", d, NULL, n, &ran, false);
  plan fresh = planned(plan_exact, m, d, n);
  assert_false(plan_recall_offer(r, "digest", "heuristic", m, d, NULL, n, &o, &fresh));
  plan_recall_remember(r, "digest", "heuristic", d, NULL, n, &ran, true);
  assert_true(plan_recall_offer(r, "digest", "heuristic", m, d, NULL, n, &o, &fresh));
  plan_free(&fresh);
  plan_free(&ran);
  plan_recall_destroy(r);
  model_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recalled_within_the_gain),
      cmocka_unit_test(test_late_plans_kept_once_settled),
      cmocka_unit_test(test_only_over_the_same_devices),
      cmocka_unit_test(test_least_recent_goes_first),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* plan_testlib.c — helpers of the planner tests (see plan_testlib.h). */
#include "tests/plan_testlib.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fuse.h"
#include "runtime/zoo.h"

model *pt_build_fused(const char *name, int side) {
  zoo_options o = zoo_defaults();
  if (side > 0) o.in_h = o.in_w = side;
  model *m = NULL, *f = NULL;
  err e = {0};
  if (zoo_build(name, &o, &m, &e) != ERR_OK) fail_msg("zoo_build %s: %s", name, e.msg);
  if (fuse_model(m, &f, &e) != ERR_OK) fail_msg("fuse %s: %s", name, e.msg);
  model_destroy(m);
  return f;
}

int pt_demo_cluster(plan_device *d) {
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

static uint64_t next(pt_rng *r) {
  uint64_t x = r->s ? r->s : 0x9e3779b97f4a7c15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 2685821657736338717ull;
}

double pt_uniform(pt_rng *r, double lo, double hi) {
  return lo + (hi - lo) * (double)(next(r) >> 11) / 9007199254740992.0;
}

double pt_log_uniform(pt_rng *r, double lo, double hi) {
  return exp(pt_uniform(r, log(lo), log(hi)));
}

int pt_int(pt_rng *r, int lo, int hi) {
  return lo + (int)(next(r) % (uint64_t)(hi - lo + 1));
}

void pt_random_cluster(pt_rng *r, plan_device *d, int n, double a_lo, double a_hi,
                       double b_hi, double bw_lo, double bw_hi, double rtt_hi) {
  for (int i = 0; i < n; i++) {
    memset(&d[i], 0, sizeof d[i]);
    snprintf(d[i].name, sizeof d[i].name, "dev%d", i);
    d[i].ms_per_gflop = pt_log_uniform(r, a_lo, a_hi);
    d[i].fixed_ms = pt_uniform(r, 0, b_hi);
    d[i].bandwidth_mbps = pt_log_uniform(r, bw_lo, bw_hi);
    d[i].rtt_ms = pt_uniform(r, 0, rtt_hi);
    /* Half of them with FE exchanges cheaper than their jobs' round trip. */
    if (next(r) & 1) d[i].fe_rtt_ms = pt_uniform(r, 0, d[i].rtt_ms);
  }
}

void pt_check_partition(const model *m, const plan *p, int n_devs) {
  assert_true(p->n_segments >= 1);
  assert_int_equal(p->segments[0].first, 0);
  assert_int_equal(p->segments[p->n_segments - 1].end, p->head_first);
  assert_int_equal(p->head_first, plan_head_first(m));
  double total = 0;
  for (int si = 0; si < p->n_segments; si++) {
    const plan_segment *s = &p->segments[si];
    if (si > 0) assert_int_equal(s->first, p->segments[si - 1].end);
    assert_true(s->first < s->end);
    assert_true(model_is_cut(m, s->first) && model_is_cut(m, s->end));
    assert_true(s->n_parts >= 1 && s->n_parts <= n_devs);
    int next = 0;
    bool seen[PLAN_MAX_DEVICES] = {false};
    for (int k = 0; k < s->n_parts; k++) {
      const plan_part *pt = &s->parts[k];
      assert_true(pt->device >= 0 && pt->device < n_devs);
      assert_false(seen[pt->device]);
      seen[pt->device] = true;
      assert_int_equal(pt->out.lo, next);
      assert_true(pt->out.hi > pt->out.lo);
      assert_true(pt->in.lo <= pt->in.hi);
      next = pt->out.hi;
    }
    assert_int_equal(next, m->layers[s->end - 1].out.h);
    assert_true(s->predicted_ms > 0);
    total += s->predicted_ms;
  }
  assert_true(fabs(total - p->predicted_ms) <= 1e-9 * p->predicted_ms);
}

bool pt_same_split(const plan *a, const plan *b) {
  if (a->n_segments != b->n_segments) return false;
  for (int s = 0; s < a->n_segments; s++) {
    const plan_segment *x = &a->segments[s], *y = &b->segments[s];
    if (x->first != y->first || x->end != y->end || x->n_parts != y->n_parts) return false;
    for (int k = 0; k < x->n_parts; k++)
      if (x->parts[k].device != y->parts[k].device || x->parts[k].out.lo != y->parts[k].out.lo ||
          x->parts[k].out.hi != y->parts[k].out.hi)
        return false;
  }
  return true;
}

/* plan_exact_test.c — the exact planner and what it stands on.
 *
 *  - The planning tables say what model_strip_rows says, for every zoo
 *    model, every candidate segment and edges across each one; and
 *    plan_evaluate prices a plan the same (to the bit) with them or without.
 *  - On randomized clusters (2 to 16 devices, speeds, fixed costs,
 *    bandwidths, round trips drawn at random, seeded) for every zoo model
 *    at 3x200x200, fused: every planner's plan is a valid partition, the
 *    exact planner's plan_evaluate price is never above any other
 *    planner's, the heuristic's never above the proportional start.
 *  - On small cases (conv chains with a feature enhancement at 3x12x12, 2
 *    and 3 devices) the exact planner's plan costs what the best plan
 *    costs: an exhaustive branch and bound over every segmentation at the
 *    cuts and every split of every segment among every ordered subset of
 *    the devices, priced with plan_evaluate (without the tables).
 *  - A device 100x slower than the others and behind a slow link gets no
 *    rows; planning with the tables and without gives the same plan;
 *    tables of another model are refused.
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

#include "runtime/zoo.h"
#include "scheduler/plan.h"
#include "scheduler/plan_internal.h"
#include "tests/plan_testlib.h"

/* ---- the tables ------------------------------------------------------------ */

static void check_strip(const model *m, const plan_tables *t, int first, int end, model_rows out,
                        model_rows *want, model_rows *got) {
  model_rows in_want, in_got;
  err e = {0};
  if (model_strip_rows(m, first, end, out, want, &in_want, &e) != ERR_OK)
    fail_msg("model_strip_rows [%d,%d) rows [%d,%d): %s", first, end, out.lo, out.hi, e.msg);
  assert_true(plan_tables_strip_rows(t, first, end, out, got, &in_got));
  for (int l = first; l < end; l++)
    if (want[l].lo != got[l].lo || want[l].hi != got[l].hi)
      fail_msg("%s [%d,%d) rows [%d,%d): layer %d computes [%d,%d), the tables say [%d,%d)",
               m->name, first, end, out.lo, out.hi, l, want[l].lo, want[l].hi, got[l].lo,
               got[l].hi);
  if (in_want.lo != in_got.lo || in_want.hi != in_got.hi)
    fail_msg("%s [%d,%d) rows [%d,%d): input [%d,%d), the tables say [%d,%d)", m->name, first,
             end, out.lo, out.hi, in_want.lo, in_want.hi, in_got.lo, in_got.hi);
}

/* Every segment (i, j) of every zoo model: strips from the top, to the
 * bottom and in between, at a stride of edges (all of them in the last
 * rows, where strides and padding meet). */
static void test_tables_match_model_strip_rows(void **state) {
  (void)state;
  pt_rng r = {11};
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = pt_build_fused(*name, 0);
    plan_tables *t = NULL;
    err e = {0};
    assert_int_equal(plan_prepare(m, &t, &e), ERR_OK);
    assert_true(plan_tables_bytes(t) > 0);
    model_rows *want = malloc((size_t)m->n_layers * sizeof *want);
    model_rows *got = malloc((size_t)m->n_layers * sizeof *got);
    assert_non_null(want);
    assert_non_null(got);
    for (int j = 1; j < t->n_cuts; j++)
      for (int i = 0; i < j; i++) {
        int H = t->h[j], stride = H > 40 ? 13 : 3;
        for (int x = 0; x < H; x++) {
          if (x % stride && x > 2 && x < H - 3) continue;
          model_rows down = {x, H}, up = {0, x + 1};
          check_strip(m, t, t->cut[i], t->cut[j], down, want, got);
          check_strip(m, t, t->cut[i], t->cut[j], up, want, got);
          int lo = pt_int(&r, 0, H - 1), hi = pt_int(&r, lo + 1, H);
          model_rows mid = {lo, hi};
          check_strip(m, t, t->cut[i], t->cut[j], mid, want, got);
        }
      }
    /* Rows the tables do not hold are left to model_strip_rows. */
    model_rows none = {3, 3}, past = {0, t->h[1] + 1};
    assert_false(plan_tables_strip_rows(t, 0, t->cut[1], none, got, want));
    assert_false(plan_tables_strip_rows(t, 0, t->cut[1], past, got, want));
    free(want);
    free(got);
    plan_tables_destroy(t);
    model_destroy(m);
  }
}

/* A random plan: segments at random cuts, random strips on a random
 * subset of the devices in random order. */
static void random_plan(const model *m, int n_devs, pt_rng *r, plan *p) {
  memset(p, 0, sizeof *p);
  p->head_first = plan_head_first(m);
  int ends[256], n = 0;
  for (int c = 1; c < p->head_first && n < 255; c++)
    if (model_is_cut(m, c) && pt_int(r, 0, 3) == 0) ends[n++] = c;
  ends[n++] = p->head_first;
  p->segments = calloc((size_t)n, sizeof *p->segments);
  assert_non_null(p->segments);
  p->n_segments = n;
  for (int si = 0, first = 0; si < n; first = ends[si++]) {
    plan_segment *s = &p->segments[si];
    s->first = first;
    s->end = ends[si];
    int H = m->layers[s->end - 1].out.h, perm[PLAN_MAX_DEVICES];
    for (int d = 0; d < n_devs; d++) perm[d] = d;
    for (int d = n_devs - 1; d > 0; d--) {
      int k = pt_int(r, 0, d), x = perm[d];
      perm[d] = perm[k];
      perm[k] = x;
    }
    int parts = pt_int(r, 1, n_devs < H ? n_devs : H), lo = 0;
    for (int k = 0; k < parts; k++) {
      int hi = k + 1 == parts ? H : pt_int(r, lo + 1, H - (parts - k - 1));
      s->parts[s->n_parts].device = perm[k];
      s->parts[s->n_parts].out.lo = lo;
      s->parts[s->n_parts].out.hi = hi;
      s->n_parts++;
      lo = hi;
    }
  }
}

/* plan_evaluate with the tables prices like plan_evaluate without them,
 * to the bit, and the search's own exact price agrees. */
static void test_pricing_with_tables_is_plan_evaluate(void **state) {
  (void)state;
  pt_rng r = {5};
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = pt_build_fused(*name, 0);
    plan_tables *t = NULL;
    err e = {0};
    assert_int_equal(plan_prepare(m, &t, &e), ERR_OK);
    for (int trial = 0; trial < 6; trial++) {
      plan_device d[PLAN_MAX_DEVICES];
      int n = pt_int(&r, 1, 12);
      pt_random_cluster(&r, d, n, 5, 500, 5, 10, 1000, 3);
      plan_options with = plan_default_options(), without = with;
      with.tables = t;
      plan a, b;
      random_plan(m, n, &r, &a);
      b = a;
      b.segments = malloc((size_t)a.n_segments * sizeof *b.segments);
      assert_non_null(b.segments);
      memcpy(b.segments, a.segments, (size_t)a.n_segments * sizeof *b.segments);
      assert_int_equal(plan_evaluate(m, d, n, &with, &a, &e), ERR_OK);
      assert_int_equal(plan_evaluate(m, d, n, &without, &b, &e), ERR_OK);
      assert_true(a.predicted_ms == b.predicted_ms);
      assert_true(a.bytes_moved == b.bytes_moved && a.bytes_gather_all == b.bytes_gather_all);
      for (int si = 0; si < a.n_segments; si++)
        for (int k = 0; k < a.segments[si].n_parts; k++) {
          const plan_part *x = &a.segments[si].parts[k], *y = &b.segments[si].parts[k];
          assert_true(x->gflop == y->gflop && x->in.lo == y->in.lo && x->in.hi == y->in.hi);
          assert_true(x->bytes_in == y->bytes_in && x->bytes_out == y->bytes_out);
        }
      plan_ctx c;
      plan_ctx_init(&c, m, t, d, n, &with);
      plan_dseg segs[256];
      int ns = 0;
      assert_true(plan_draft_from_plan(&c, &a, segs, &ns));
      assert_true(plan_draft_time_exact(&c, segs, ns) == a.predicted_ms);
      assert_true(fabs(plan_draft_time(&c, segs, ns) - a.predicted_ms) <= 1e-9 * a.predicted_ms);
      plan_free(&a);
      plan_free(&b);
    }
    plan_tables_destroy(t);
    model_destroy(m);
  }
}

/* ---- never worse ------------------------------------------------------------- */

static void test_exact_never_worse_on_random_clusters(void **state) {
  (void)state;
  pt_rng r = {2024};
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = pt_build_fused(*name, 0);
    plan_tables *t = NULL;
    err e = {0};
    assert_int_equal(plan_prepare(m, &t, &e), ERR_OK);
    plan_options o = plan_default_options();
    o.tables = t;
    for (int trial = 0; trial < 10; trial++) {
      plan_device d[PLAN_MAX_DEVICES];
      int n = pt_int(&r, 2, 16);
      /* From Pi-class boards on slow Wi-Fi to fast ones on Ethernet. */
      pt_random_cluster(&r, d, n, 5, 500, 5, 10, 1000, 3);
      plan ex, other[3];
      const char *names[3] = {"heuristic", "proportional", "equal"};
      assert_int_equal(plan_exact(m, d, n, &o, &ex, &e), ERR_OK);
      pt_check_partition(m, &ex, n);
      for (int k = 0; k < 3; k++) {
        assert_int_equal(plan_find(names[k])(m, d, n, &o, &other[k], &e), ERR_OK);
        pt_check_partition(m, &other[k], n);
        if (!(ex.predicted_ms <= other[k].predicted_ms))
          fail_msg("%s, %d devices: exact %.6f ms, %s %.6f ms", *name, n, ex.predicted_ms,
                   names[k], other[k].predicted_ms);
      }
      assert_true(other[0].predicted_ms <= other[1].predicted_ms); /* from its start */
      plan_free(&ex);
      for (int k = 0; k < 3; k++) plan_free(&other[k]);
    }
    plan_tables_destroy(t);
    model_destroy(m);
  }
}

/* ---- small cases against brute force ---------------------------------------- */

enum { BF_MAX_DEVS = 3, BF_MAX_SPLITS = 512, BF_MAX_SEGS = 8 };

typedef struct bf_split {
  int n, dev[BF_MAX_DEVS], b[BF_MAX_DEVS + 1];
} bf_split;

/* Every split of H rows: every ordered subset of the devices, every way to
 * give each of them at least one row. */
static int all_splits(int H, int nd, bf_split *out) {
  int count = 0;
  for (int mask = 1; mask < (1 << nd); mask++) {
    int ds[BF_MAX_DEVS], k = 0;
    for (int d = 0; d < nd; d++)
      if (mask >> d & 1) ds[k++] = d;
    if (k > H) continue;
    int perm[BF_MAX_DEVS] = {0, 1, 2};
    for (int p = 0; p < (k == 3 ? 6 : k == 2 ? 2 : 1); p++) {
      if (k == 3) { /* the six orders of three */
        static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                         {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
        memcpy(perm, orders[p], sizeof perm);
      } else if (k == 2) {
        perm[0] = p, perm[1] = 1 - p;
      }
      /* Edges 0 < e_1 < ... < e_{k-1} < H. */
      int e[BF_MAX_DEVS + 1] = {0};
      for (int q = 1; q < k; q++) e[q] = q;
      e[k] = H;
      for (;;) {
        bf_split *s = &out[count++];
        assert_true(count <= BF_MAX_SPLITS);
        s->n = k;
        for (int q = 0; q < k; q++) s->dev[q] = ds[perm[q]];
        memcpy(s->b, e, sizeof s->b);
        int q = k - 1;
        while (q >= 1 && e[q] == H - (k - q)) q--;
        if (q < 1) break;
        e[q]++;
        for (int x = q + 1; x < k; x++) e[x] = e[x - 1] + 1;
      }
    }
  }
  return count;
}

typedef struct brute {
  const model *m;
  const plan_device *devs;
  int nd;
  plan_options o; /* without tables: plan_evaluate walks the model */
  bf_split *splits[64];
  int n_splits[64];
  plan p;
  double rest[BF_MAX_SEGS + 1]; /* no plan's segments from s on cost less */
  double best;
  plan best_plan;
  long nodes;
} brute;

static void bf_set(plan_segment *s, const bf_split *x) {
  s->n_parts = x->n;
  for (int k = 0; k < x->n; k++) {
    s->parts[k].device = x->dev[k];
    s->parts[k].out.lo = x->b[k];
    s->parts[k].out.hi = x->b[k + 1];
  }
}

/* Depth first over the segments' splits. After segment s is chosen, the
 * plan of segments 0 .. s prices segments 0 .. s-1 exactly, and segment s
 * at least its compute, what it receives and its round trips: a bound. */
static void bf_search(brute *B, int s, int n_segs) {
  plan_segment *seg = &B->p.segments[s];
  int H = B->m->layers[seg->end - 1].out.h;
  for (int q = 0; q < B->n_splits[H]; q++) {
    bf_set(seg, &B->splits[H][q]);
    B->nodes++;
    B->p.n_segments = s + 1;
    err e = {0};
    if (plan_evaluate(B->m, B->devs, B->nd, &B->o, &B->p, &e) != ERR_OK) fail_msg("%s", e.msg);
    if (s + 1 == n_segs) {
      if (B->p.predicted_ms < B->best) {
        B->best = B->p.predicted_ms;
        B->best_plan.n_segments = n_segs;
        memcpy(B->best_plan.segments, B->p.segments, (size_t)n_segs * sizeof *B->p.segments);
      }
      continue;
    }
    double bound = B->rest[s + 1];
    for (int x = 0; x < s; x++) bound += B->p.segments[x].predicted_ms;
    double own = 0;
    for (int k = 0; k < seg->n_parts; k++) {
      const plan_part *pt = &seg->parts[k];
      const plan_device *d = &B->devs[pt->device];
      double t = pt->compute_ms + (double)pt->bytes_in * 8.0 / (d->bandwidth_mbps * 1e3) +
                 plan_trips_ms(d, seg->fe_exchanges, seg->n_parts);
      if (t > own) own = t;
    }
    if (bound + own < B->best) bf_search(B, s + 1, n_segs);
  }
}

/* The least plan_evaluate price of any plan of m on devs: every
 * segmentation at the cuts, every split. `known`: a plan's price, so the
 * search need only prove nothing beats it (or find what does). */
static double brute_force(const model *m, const plan_device *devs, int nd, double known,
                          plan *best_plan, long *nodes) {
  brute B = {.m = m, .devs = devs, .nd = nd, .o = plan_default_options()};
  B.o.input_channels = m->input.c;
  int hf = plan_head_first(m), cuts[BF_MAX_SEGS + 1], n_cuts = 0;
  for (int c = 0; c <= hf; c++)
    if (model_is_cut(m, c)) cuts[n_cuts++] = c;
  assert_true(n_cuts <= BF_MAX_SEGS + 1);
  for (int l = 0; l < m->n_layers; l++) {
    int H = m->layers[l].out.h;
    if (H < 64 && !B.splits[H]) {
      B.splits[H] = malloc(BF_MAX_SPLITS * sizeof *B.splits[H]);
      assert_non_null(B.splits[H]);
      B.n_splits[H] = all_splits(H, nd, B.splits[H]);
    }
  }
  B.p.segments = calloc(BF_MAX_SEGS, sizeof *B.p.segments);
  B.best_plan = (plan){.head_first = hf, .segments = calloc(BF_MAX_SEGS, sizeof(plan_segment))};
  assert_non_null(B.p.segments);
  assert_non_null(B.best_plan.segments);
  B.p.head_first = hf;
  B.best = known * (1 + 1e-9);
  for (int mask = 0; mask < 1 << (n_cuts - 2); mask++) {
    int n = 0, first = 0;
    for (int c = 1; c + 1 < n_cuts; c++)
      if (mask >> (c - 1) & 1) {
        B.p.segments[n].first = first;
        B.p.segments[n++].end = first = cuts[c];
      }
    B.p.segments[n].first = first;
    B.p.segments[n++].end = hf;
    /* Every later segment costs at least some device's fixed cost and
     * round trips plus its FLOPs at the whole cluster's speed. */
    B.rest[n] = 0;
    for (int x = n - 1; x >= 0; x--) {
      const plan_segment *g = &B.p.segments[x];
      double c_min = INFINITY, speed = 0;
      for (int d = 0; d < nd; d++) {
        /* a device alone pays no FE exchange */
        c_min = fmin(c_min, devs[d].fixed_ms + devs[d].rtt_ms);
        speed += 1 / devs[d].ms_per_gflop;
      }
      B.rest[x] = B.rest[x + 1] + c_min + model_range_flops(m, g->first, g->end) / 1e9 / speed;
    }
    bf_search(&B, 0, n);
  }
  for (int h = 0; h < 64; h++) free(B.splits[h]);
  free(B.p.segments);
  *best_plan = B.best_plan;
  *nodes = B.nodes;
  return B.best;
}

/* 3x12x12: conv 3x3 (ReLU), a narrow 1x1, conv 3x3, FE, a wide 1x1. */
static model *chain_a(void) {
  model *m = model_create("chain_a", (model_shape){12, 12, 3});
  err e = {0};
  int l = model_add_conv(m, MODEL_INPUT, 4, 3, 1, 1, 1, false, &e);
  m->layers[l].relu = true;
  l = model_add_conv(m, l, 2, 1, 1, 0, 1, false, &e);
  l = model_add_conv(m, l, 2, 3, 1, 1, 1, false, &e);
  l = model_add_fe(m, l, &e);
  l = model_add_conv(m, l, 8, 1, 1, 0, 1, false, &e);
  assert_true(l >= 0);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  return m;
}

/* 3x12x12: conv 3x3 stride 2 (to 6 rows: top and bottom differ), conv
 * 3x3, FE, conv 3x3. */
static model *chain_b(void) {
  model *m = model_create("chain_b", (model_shape){12, 12, 3});
  err e = {0};
  int l = model_add_conv(m, MODEL_INPUT, 4, 3, 2, 1, 1, false, &e);
  l = model_add_conv(m, l, 4, 3, 1, 1, 1, false, &e);
  l = model_add_fe(m, l, &e);
  l = model_add_conv(m, l, 8, 3, 1, 1, 1, false, &e);
  assert_true(l >= 0);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  return m;
}

static void print_plan(const char *what, const plan *p) {
  print_message("  %s %.6f ms:", what, p->predicted_ms);
  for (int s = 0; s < p->n_segments; s++) {
    print_message(" [%d,%d)", p->segments[s].first, p->segments[s].end);
    for (int k = 0; k < p->segments[s].n_parts; k++)
      print_message(" d%d[%d,%d)", p->segments[s].parts[k].device,
                    p->segments[s].parts[k].out.lo, p->segments[s].parts[k].out.hi);
  }
  print_message("\n");
}

static void brute_cases(model *m, int nd, int cases, uint64_t seed) {
  pt_rng r = {seed};
  plan_options o = plan_default_options();
  o.input_channels = m->input.c;
  for (int c = 0; c < cases; c++) {
    plan_device d[BF_MAX_DEVS];
    /* Compute and transfers of the same order, so that every shape of
     * plan (one device, several, one segment, several) comes up. */
    pt_random_cluster(&r, d, nd, 3e4, 3e6, 1, 0.5, 50, 0.3);
    plan p, best;
    err e = {0};
    assert_int_equal(plan_exact(m, d, nd, &o, &p, &e), ERR_OK);
    pt_check_partition(m, &p, nd);
    long nodes = 0;
    double opt = brute_force(m, d, nd, p.predicted_ms, &best, &nodes);
    if (opt < p.predicted_ms * (1 - 1e-9)) {
      print_message("%s, %d devices, case %d:\n", m->name, nd, c);
      best.predicted_ms = opt;
      print_plan("brute force", &best);
      print_plan("exact      ", &p);
      fail_msg("the exact planner missed the optimum");
    }
    plan_free(&best);
    plan_free(&p);
  }
}

static void test_exact_matches_brute_force(void **state) {
  (void)state;
  model *a = chain_a(), *b = chain_b();
  brute_cases(a, 2, 16, 77);
  brute_cases(b, 2, 16, 78);
  brute_cases(b, 3, 4, 79);
  model_destroy(a);
  model_destroy(b);
}

/* ---- who gets rows ------------------------------------------------------------ */

static void test_slow_device_behind_slow_link_is_left_out(void **state) {
  (void)state;
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = pt_build_fused(*name, 0);
    plan_device d[5];
    int n = pt_demo_cluster(d);
    d[n] = d[0];
    snprintf(d[n].name, sizeof d[n].name, "snail");
    d[n].ms_per_gflop = 100 * d[0].ms_per_gflop;
    d[n].bandwidth_mbps = 1;
    d[n].rtt_ms = 20;
    n++;
    plan_options o = plan_default_options();
    plan p;
    err e = {0};
    assert_int_equal(plan_exact(m, d, n, &o, &p, &e), ERR_OK);
    pt_check_partition(m, &p, n);
    for (int s = 0; s < p.n_segments; s++)
      for (int k = 0; k < p.segments[s].n_parts; k++)
        if (p.segments[s].parts[k].device == n - 1)
          fail_msg("%s: the snail got rows [%d,%d) of segment %d", *name,
                   p.segments[s].parts[k].out.lo, p.segments[s].parts[k].out.hi, s);
    plan_free(&p);
    model_destroy(m);
  }
}

/* ---- tables as an option ------------------------------------------------------- */

static void test_tables_are_an_option(void **state) {
  (void)state;
  model *m = pt_build_fused("vgg16c", 0), *other = pt_build_fused("resnet18c", 0);
  plan_tables *t = NULL, *t_other = NULL;
  err e = {0};
  assert_int_equal(plan_prepare(m, &t, &e), ERR_OK);
  assert_int_equal(plan_prepare(other, &t_other, &e), ERR_OK);
  plan_device d[PLAN_MAX_DEVICES];
  pt_rng r = {9};
  for (int trial = 0; trial < 3; trial++) {
    int n = pt_int(&r, 2, 8);
    pt_random_cluster(&r, d, n, 5, 500, 5, 10, 1000, 3);
    for (const char *const *pn = plan_names(); *pn; pn++) {
      plan_options with = plan_default_options(), without = with;
      with.tables = t;
      plan a, b;
      assert_int_equal(plan_find(*pn)(m, d, n, &with, &a, &e), ERR_OK);
      assert_int_equal(plan_find(*pn)(m, d, n, &without, &b, &e), ERR_OK);
      assert_true(a.predicted_ms == b.predicted_ms && pt_same_split(&a, &b));
      plan_free(&a);
      plan_free(&b);
    }
  }
  /* Another model's tables: refused by every planner; plan_evaluate does
   * not trust them either (it prices with the model then). */
  plan_options wrong = plan_default_options();
  wrong.tables = t_other;
  for (const char *const *pn = plan_names(); *pn; pn++) {
    plan p;
    assert_int_equal(plan_find(*pn)(m, d, 4, &wrong, &p, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "tables"));
  }
  plan p, q;
  plan_options none = plan_default_options();
  assert_int_equal(plan_proportional(m, d, 4, &none, &p, &e), ERR_OK);
  q = p;
  q.segments = malloc((size_t)p.n_segments * sizeof *q.segments);
  assert_non_null(q.segments);
  memcpy(q.segments, p.segments, (size_t)p.n_segments * sizeof *q.segments);
  assert_int_equal(plan_evaluate(m, d, 4, &wrong, &q, &e), ERR_OK);
  assert_true(p.predicted_ms == q.predicted_ms);
  plan_free(&p);
  plan_free(&q);
  /* Nothing to split. */
  model *flat = model_create("flat", (model_shape){4, 4, 2});
  assert_true(model_add_gap(flat, MODEL_INPUT, &e) >= 0);
  assert_int_equal(model_finalize(flat, &e), ERR_OK);
  plan_tables *none_t = NULL;
  assert_int_equal(plan_prepare(flat, &none_t, &e), ERR_UNSUPPORTED);
  assert_null(none_t);
  model_destroy(flat);
  plan_tables_destroy(t);
  plan_tables_destroy(t_other);
  model_destroy(m);
  model_destroy(other);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tables_match_model_strip_rows),
      cmocka_unit_test(test_pricing_with_tables_is_plan_evaluate),
      cmocka_unit_test(test_exact_never_worse_on_random_clusters),
      cmocka_unit_test(test_exact_matches_brute_force),
      cmocka_unit_test(test_slow_device_behind_slow_link_is_left_out),
      cmocka_unit_test(test_tables_are_an_option),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* plan_exact.c — the exact planner (contract in plan.h): where to cut the
 * model into segments, who computes which rows of each, priced with the
 * same cost model as every other planner.
 *
 * 1. Segment boundaries by dynamic programming over the cuts of
 *    [0, head_first): best[j] = min over i < j of best[i] + cost(i, j),
 *    cost(i, j) an estimate of segment (i, j)'s makespan on its own
 *    (plan_fluid_cost: the continuous relaxation of its split, each
 *    internal edge charged its halo rows both ways; the image for the first
 *    segment, the gather for the last, one round trip per segment start and
 *    per FE exchange, the fixed cost per job; a device whose start-up does
 *    not pay gets no rows). That is the separable approximation: what
 *    really moves between two segments depends on both splits. A candidate
 *    is priced only when an O(1) lower bound on its cost, added to the best
 *    prefix, can still beat the best path to its end; cuts right after a
 *    row-wise layer are left to the search (they cost what the cut before
 *    that layer costs).
 * 2. The DP's segments get exact splits, top down (plan_solve_exact, each
 *    given the split before it).
 * 3. plan_refine polishes the plan with plan_evaluate's prices (a local
 *    search with a fixed work budget), and searches again from a few other
 *    starts (below); the cheapest wins.
 * 4. The result competes with the equal, proportional and heuristic plans
 *    for the same input, priced with plan_evaluate's arithmetic; the
 *    cheapest wins, so the exact planner is never worse than those.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/plan_internal.h"

/* Policy: the local search's work budget from the DP's plan (plan_refine's
 * units: strips priced, devices' steps in split searches; the other starts
 * get fractions of it). It bounds the planner's time on large models
 * (benchmarks/planners: a few hundred us for 8 devices); small
 * problems converge before they spend it. */
enum { EXACT_SEARCH_BUDGET = 3000 };

/* First splits of segments whose boundaries are set, top down: each exact
 * given the one before (what it receives), the next one not known yet;
 * the fastest devices on top. */
static void first_splits(const plan_ctx *c, plan_dseg *out, int n) {
  int ord[PLAN_MAX_DEVICES];
  for (int d = 0; d < c->n_devs; d++) ord[d] = d;
  for (int i = 1; i < c->n_devs; i++)
    for (int k = i; k > 0 && c->devs[ord[k]].ms_per_gflop < c->devs[ord[k - 1]].ms_per_gflop; k--) {
      int x = ord[k];
      ord[k] = ord[k - 1];
      ord[k - 1] = x;
    }
  for (int s = 0; s < n; s++)
    plan_solve_exact(c, s > 0 ? &out[s - 1] : NULL, &out[s], NULL, ord, c->n_devs, INFINITY,
                     NULL);
}

/* A segment the DP priced. */
typedef struct dp_edge {
  int i, j;
  double cost;
} dp_edge;

/* The cheapest path with exactly m segments over the segments the DP
 * priced (edges[], by ascending end), with first splits; 0 when there is
 * none. */
static int dp_with_count(const plan_ctx *c, const dp_edge *edges, int n_edges, int m,
                         plan_dseg *out) {
  int K = c->t->n_cuts - 1;
  size_t k1 = (size_t)K + 1, cells = k1 * (size_t)(m + 1);
  double *cost = malloc(cells * sizeof *cost);
  int *from = malloc(cells * sizeof *from), n = 0;
  if (cost && from) {
    for (size_t x = 0; x < cells; x++) cost[x] = INFINITY;
    cost[0] = 0; /* [q * k1 + j]: q segments ending at cut j */
    for (int q = 1; q <= m; q++)
      for (int x = 0; x < n_edges; x++) {
        const dp_edge *g = &edges[x];
        double v = cost[(size_t)(q - 1) * k1 + g->i] + g->cost;
        if (v < cost[(size_t)q * k1 + g->j]) {
          cost[(size_t)q * k1 + g->j] = v;
          from[(size_t)q * k1 + g->j] = g->i;
        }
      }
    if (isfinite(cost[(size_t)m * k1 + K])) {
      n = m;
      for (int q = m, j = K; q > 0; q--) {
        out[q - 1].i = from[(size_t)q * k1 + j];
        out[q - 1].j = j;
        j = out[q - 1].i;
      }
      first_splits(c, out, n);
    }
  }
  free(cost), free(from);
  return n;
}

/* The DP's segmentation, with first splits; returns its segment count.
 * Every candidate segment is priced by the proxy's continuous relaxation,
 * O(devices), unless a bound shows that it cannot improve the best path to
 * its end (the relaxation's own terms at the cluster's best values:
 * O(1)). */
static int dp_draft(const plan_ctx *c, dp_edge *edges, int *n_edges, plan_dseg *out) {
  const plan_tables *t = c->t;
  int K = t->n_cuts - 1, n_fe = t->fe_before[t->head_first];
  size_t k1 = (size_t)K + 1;
  double *best = malloc(k1 * sizeof *best);
  double *fixed_min = malloc(((size_t)n_fe + 1) * sizeof *fixed_min);
  int *from = malloc(k1 * sizeof *from), *cand = malloc(k1 * sizeof *cand);
  int n = 0, n_cand = 0;
  if (!best || !from || !fixed_min || !cand) goto done;
  for (int k = 0; k <= K; k++) /* equivalent cuts: the search tries them */
    if (!t->after_row_op[k]) cand[n_cand++] = k;
  double speed = 0, link = 0, a_min = INFINITY, k_min = INFINITY;
  for (int d = 0; d < c->n_devs; d++) {
    speed += 1 / c->devs[d].ms_per_gflop;
    link += 1 / c->ms_per_byte[d];
    if (c->devs[d].ms_per_gflop < a_min) a_min = c->devs[d].ms_per_gflop;
    if (c->ms_per_byte[d] < k_min) k_min = c->ms_per_byte[d];
  }
  for (int f = 0; f <= n_fe; f++) {
    fixed_min[f] = INFINITY;
    for (int d = 0; d < c->n_devs; d++) {
      double x = c->devs[d].fixed_ms + c->devs[d].rtt_ms * (1 + f);
      if (x < fixed_min[f]) fixed_min[f] = x;
    }
  }
  best[0] = 0;
  for (int jj = 1; jj < n_cand; jj++) {
    int j = cand[jj];
    best[j] = INFINITY;
    from[j] = -1;
    const int H = t->h[j];
    const bool last = j == K;
    for (int ii = jj - 1; ii >= 0; ii--) {
      int i = cand[ii];
      if (!(best[i] < best[j])) continue;
      const plan_seg_info *f = &t->info[plan_seg_index(t->n_cuts, i, j)];
      double work = f->work;
      double bytes = (i == 0 ? f->in_rows * plan_row_bytes(c, 0) : 0) +
                     (last ? H * plan_row_bytes(c, j) : 0);
      double halo_g = f->halo_mean > 0 ? f->halo_mean : 0;
      double halo_b = (f->halo_rows_mean > 0 ? f->halo_rows_mean : 0) * plan_row_bytes(c, i) *
                      (i == 0 ? 1 : 2);
      double c0 = fixed_min[plan_fe_count(c, i, j)];
      double one = c0 + a_min * work + k_min * bytes;
      double many = c0 + a_min * halo_g + k_min * halo_b + fmax(work / speed, bytes / link);
      if (best[i] + (one < many ? one : many) >= best[j]) continue;
      double seg = plan_fluid_cost(c, i, j), cost = best[i] + seg;
      edges[(*n_edges)++] = (dp_edge){i, j, seg};
      if (cost < best[j]) {
        best[j] = cost;
        from[j] = i;
      }
    }
  }
  for (int j = K; j > 0; j = from[j]) n++;
  for (int j = K, s = n; j > 0; j = from[j]) {
    s--;
    out[s].i = from[j];
    out[s].j = j;
  }
  first_splits(c, out, n);
done:
  free(best), free(from), free(fixed_min), free(cand);
  return n;
}

err_code plan_exact(const model *m, const plan_device *devs, int n_devs,
                    const plan_options *o, plan *p, err *e) {
  plan_ctx c;
  plan_tables *owned;
  err_code rc = plan_ctx_begin(&c, m, devs, n_devs, o, &owned, e);
  if (rc != ERR_OK) return rc;
  const plan_tables *t = c.t;
  size_t cap = (size_t)t->n_cuts;
  plan_dseg *best = malloc(cap * sizeof *best), *cand = malloc(cap * sizeof *cand);
  if (!best || !cand) {
    free(best), free(cand);
    plan_tables_destroy(owned);
    return err_set(e, ERR_NOMEM, "plan: out of memory");
  }
  /* Starts, each searched by plan_refine, the cheapest kept:
   *  0. the DP's plan, with the full budget;
   *  1. the result of that, upside down (the image's top and bottom rows
   *     differ: padding, strides; which way is better may show only after
   *     segment boundaries moved, which the search does a step at a time);
   *  2. the whole model as one segment (the DP's proxy misjudges plans
   *     with few devices);
   *  3, 4. the DP's best plans with one and two segments more (two cuts
   *     may pay where either alone does not).
   * The later ones get smaller budgets. */
  size_t k1 = (size_t)t->n_cuts;
  dp_edge *edges = malloc(k1 * k1 * sizeof *edges);
  int n_best = 0, n_edges = 0;
  if (edges) n_best = dp_draft(&c, edges, &n_edges, best);
  int m_dp = n_best;
  double t_best = INFINITY;
  if (n_best > 0) t_best = plan_refine(&c, best, &n_best, EXACT_SEARCH_BUDGET);
  static const int budget_div[5] = {1, 4, 8, 8, 16};
  for (int start = 1; start < 5; start++) {
    int n = 0;
    if (start == 1 && n_best > 0) {
      n = n_best;
      memcpy(cand, best, (size_t)n * sizeof *cand);
      plan_draft_mirror(&c, cand, n);
    } else if (start == 2) {
      int ord[PLAN_MAX_DEVICES];
      for (int d = 0; d < n_devs; d++) ord[d] = d;
      cand[0].i = 0;
      cand[0].j = t->n_cuts - 1;
      plan_solve_exact(&c, NULL, &cand[0], NULL, ord, n_devs, INFINITY, NULL);
      n = 1;
    } else if (start > 2 && edges && m_dp > 0) {
      n = dp_with_count(&c, edges, n_edges, m_dp + start - 2, cand);
    }
    if (n == 0) continue;
    double tc = plan_refine(&c, cand, &n, EXACT_SEARCH_BUDGET / budget_div[start]);
    if (tc < t_best) {
      t_best = tc;
      n_best = n;
      memcpy(best, cand, (size_t)n * sizeof *best);
    }
  }
  free(edges);
  if (n_best > 0) t_best = plan_draft_time(&c, best, n_best);

  /* The simple planners' plans, exactly as they would return them. Which
   * is cheaper is decided by the fast price, and in a near tie by
   * plan_evaluate's own arithmetic (plan_draft_time_exact), so the result
   * is never priced above any of them. */
  double w_prop[PLAN_MAX_DEVICES], w_equal[PLAN_MAX_DEVICES];
  for (int d = 0; d < n_devs; d++) w_prop[d] = 1.0 / devs[d].ms_per_gflop, w_equal[d] = 1;
  for (int which = 0; which < 3; which++) {
    int nc = plan_weighted_draft(&c, which == 1 ? w_equal : w_prop, cand);
    if (which == 2) plan_heuristic_draft(&c, cand, nc);
    double tc = plan_draft_time(&c, cand, nc);
    bool take = n_best == 0 || tc < t_best * (1 - 1e-9);
    if (!take && tc <= t_best * (1 + 1e-9))
      take = plan_draft_time_exact(&c, cand, nc) < plan_draft_time_exact(&c, best, n_best);
    if (take) {
      t_best = tc;
      n_best = nc;
      memcpy(best, cand, (size_t)nc * sizeof *best);
    }
  }
  rc = plan_draft_to_plan(&c, best, n_best, "exact", p, e);
  free(best), free(cand);
  plan_tables_destroy(owned);
  return rc;
}

/* plan_exact.c — the exact planner (contract in plan.h): where to cut the
 * model into segments, who computes which rows of each, priced with the
 * same cost model as every other planner.
 *
 * 1. Segments by dynamic programming over the cuts of [0, head_first):
 *    best[j] = min over i < j of best[i] + cost(i, j), cost(i, j) the
 *    minimal makespan of segment (i, j) on its own (plan_solve_proxy: each
 *    internal edge charged its halo rows both ways; the image for the first
 *    segment, the gather for the last, one round trip per segment start and
 *    per FE exchange, the fixed cost per job; a device that does not pay for
 *    these gets no rows). That is the separable approximation: what really
 *    moves between two segments depends on both splits. Pruned with lower
 *    bounds (plan_segment_lb): a segment is solved only when its bound, plus
 *    the best prefix, plus a bound on the rest, can beat both the best
 *    known path to its end and a complete upper bound (the simple
 *    planners' segmentation under the same proxy).
 * 2. The DP's plan is polished by plan_refine (plan_search.c), which prices
 *    everything exactly: each segment re-solved given its neighbours, device
 *    orders, single-row edges, segment boundaries moved, merged, split.
 * 3. The result competes with the equal, proportional and heuristic plans
 *    for the same input, priced with plan_evaluate's arithmetic; the
 *    cheapest wins, so the exact planner is never worse than those.
 *
 * Device order for the DP: fastest first (the greedy then fills the top
 * strips with the fastest devices; the search tries other orders).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/plan_internal.h"

/* Policy: the local search's work budget (plan_refine's units: strips
 * priced, devices' steps in split searches). It bounds the worst case
 * (about 150 us on a 2024 desktop core for every zoo model and 8 devices);
 * small problems converge long before. */
enum { EXACT_SEARCH_BUDGET = 4000 };

/* The DP's segmentation, with first splits; returns its segment count.
 * Every candidate segment is priced by the proxy's continuous relaxation,
 * O(devices), unless a bound shows that it cannot improve the best path to
 * its end (the relaxation's own terms at the cluster's best values:
 * O(1)). */
static int dp_draft(const plan_ctx *c, plan_dseg *out) {
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
      double c0 = fixed_min[plan_fe_count(t, i, j)];
      double one = c0 + a_min * work + k_min * bytes;
      double many = c0 + a_min * halo_g + k_min * halo_b + fmax(work / speed, bytes / link);
      if (best[i] + (one < many ? one : many) >= best[j]) continue;
      double cost = best[i] + plan_fluid_cost(c, i, j);
      if (cost < best[j]) {
        best[j] = cost;
        from[j] = i;
      }
    }
  }
  int ord[PLAN_MAX_DEVICES];
  for (int d = 0; d < c->n_devs; d++) ord[d] = d;
  for (int i = 1; i < c->n_devs; i++)
    for (int k = i; k > 0 && c->devs[ord[k]].ms_per_gflop < c->devs[ord[k - 1]].ms_per_gflop; k--) {
      int x = ord[k];
      ord[k] = ord[k - 1];
      ord[k - 1] = x;
    }
  for (int j = K; j > 0; j = from[j]) n++;
  for (int j = K, s = n; j > 0; j = from[j]) {
    s--;
    out[s].i = from[j];
    out[s].j = j;
  }
  /* First splits, top down: each exact given the one before (what it
   * receives), the next one not known yet. */
  for (int s = 0; s < n; s++)
    plan_solve_exact(c, s > 0 ? &out[s - 1] : NULL, &out[s], NULL, ord, c->n_devs, INFINITY,
                     NULL);
done:
  free(best), free(from), free(fixed_min), free(cand);
  return n;
}

err_code plan_exact(const model *m, const plan_device *devs, int n_devs,
                    const plan_options *o, plan *p, err *e) {
  err_code rc = plan_check_inputs(m, devs, n_devs, o, e);
  if (rc != ERR_OK) return rc;
  const plan_tables *t;
  plan_tables *owned;
  rc = plan_tables_get(m, o, &t, &owned, e);
  if (rc != ERR_OK) return rc;
  plan_ctx c;
  plan_ctx_init(&c, m, t, devs, n_devs, o);
  size_t cap = (size_t)t->n_cuts;
  plan_dseg *best = malloc(cap * sizeof *best), *cand = malloc(cap * sizeof *cand);
  if (!best || !cand) {
    free(best), free(cand);
    plan_tables_destroy(owned);
    return err_set(e, ERR_NOMEM, "plan: out of memory");
  }
  /* Three starts: the DP's plan; the result of searching from it, upside
   * down (the image's top and bottom rows differ: padding, strides; which
   * way is better often shows only once segment boundaries moved, which
   * the search does one step at a time); the whole model as one segment.
   * The later ones get smaller budgets. */
  int n_best = dp_draft(&c, best), n = 0;
  double t_best = INFINITY;
  if (n_best > 0) {
    plan_refine(&c, best, &n_best, EXACT_SEARCH_BUDGET);
    t_best = plan_draft_time_exact(&c, best, n_best);
  }
  for (int start = 0; start < 2; start++) {
    if (start == 0) {
      if (n_best == 0) continue;
      n = n_best;
      memcpy(cand, best, (size_t)n * sizeof *cand);
      plan_draft_mirror(&c, cand, n);
    } else {
      int ord[PLAN_MAX_DEVICES];
      for (int d = 0; d < n_devs; d++) ord[d] = d;
      cand[0].i = 0;
      cand[0].j = t->n_cuts - 1;
      plan_solve_exact(&c, NULL, &cand[0], NULL, ord, n_devs, INFINITY, NULL);
      n = 1;
    }
    plan_refine(&c, cand, &n, EXACT_SEARCH_BUDGET / 4);
    double tc = plan_draft_time_exact(&c, cand, n);
    if (tc < t_best) {
      t_best = tc;
      n_best = n;
      memcpy(best, cand, (size_t)n * sizeof *best);
    }
  }

  /* The simple planners' plans, exactly as they would return them. */
  double w_prop[PLAN_MAX_DEVICES], w_equal[PLAN_MAX_DEVICES];
  for (int d = 0; d < n_devs; d++) w_prop[d] = 1.0 / devs[d].ms_per_gflop, w_equal[d] = 1;
  for (int which = 0; which < 3; which++) {
    int n = plan_weighted_draft(&c, which == 1 ? w_equal : w_prop, cand);
    if (which == 2) plan_heuristic_draft(&c, cand, n);
    double tc = plan_draft_time_exact(&c, cand, n);
    if (tc < t_best) {
      t_best = tc;
      n_best = n;
      memcpy(best, cand, (size_t)n * sizeof *best);
    }
  }
  rc = plan_draft_to_plan(&c, best, n_best, "exact", p, e);
  free(best), free(cand);
  plan_tables_destroy(owned);
  return rc;
}

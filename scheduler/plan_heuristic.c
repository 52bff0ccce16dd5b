/* plan_heuristic.c — the paper's partitioning heuristic (contract in
 * plan.h): the capacity-proportional plan, then, segment by segment, one row
 * at a time moves from the device predicted slowest to the one predicted
 * fastest, while the request's predicted latency keeps shrinking.
 *
 * Why the whole latency and not the segment's gap: a row that changes
 * owner also changes what the neighbouring segments move, so a move that
 * narrows one segment's gap can cost more elsewhere; judging by the total
 * is what makes the heuristic never worse than its proportional start.
 * Prices come from the planning tables (plan_seg_time), O(strips^2) per
 * move; the final plan is priced by plan_evaluate.
 */
#include <math.h>
#include <stdlib.h>

#include "scheduler/plan_internal.h"

/* Policy: rounds over all segments (a move in one changes its neighbours'
 * best moves). */
enum { HEURISTIC_MAX_PASSES = 8 };

static double local_time(const plan_ctx *c, const plan_dseg *segs, int n, int s) {
  double t = 0;
  for (int q = s > 0 ? s - 1 : 0; q <= s + 1 && q < n; q++)
    t += plan_seg_time(c, q > 0 ? &segs[q - 1] : NULL, &segs[q], q + 1 < n ? &segs[q + 1] : NULL,
                       NULL);
  return t;
}

/* One row from strip `from` to strip `to`; the strips between shift. */
static void move_row(plan_dseg *s, int from, int to) {
  if (from < to)
    for (int k = from + 1; k <= to; k++) s->b[k]--;
  else
    for (int k = to + 1; k <= from; k++) s->b[k]++;
  if (s->b[from + 1] > s->b[from]) return;
  for (int k = from; k + 1 < s->n; k++) s->dev[k] = s->dev[k + 1];
  for (int k = from + 1; k < s->n; k++) s->b[k] = s->b[k + 1];
  s->n--;
}

void plan_heuristic_draft(const plan_ctx *c, plan_dseg *segs, int n) {
  for (int pass = 0; pass < HEURISTIC_MAX_PASSES; pass++) {
    bool changed = false;
    for (int s = 0; s < n; s++) {
      int H = c->t->h[segs[s].j];
      double before = local_time(c, segs, n, s);
      for (int moves = 0; moves < H * c->n_devs; moves++) {
        double t_part[PLAN_MAX_DEVICES];
        plan_seg_time(c, s > 0 ? &segs[s - 1] : NULL, &segs[s], s + 1 < n ? &segs[s + 1] : NULL,
                      t_part);
        int slow = 0, fast = 0;
        for (int k = 1; k < segs[s].n; k++) {
          if (t_part[k] > t_part[slow]) slow = k;
          if (t_part[k] < t_part[fast]) fast = k;
        }
        if (slow == fast) break;
        plan_dseg keep = segs[s];
        move_row(&segs[s], slow, fast);
        double after = local_time(c, segs, n, s);
        if (after < before) {
          before = after;
          changed = true;
          continue;
        }
        segs[s] = keep;
        break;
      }
    }
    if (!changed) break;
  }
}

err_code plan_heuristic(const model *m, const plan_device *devs, int n_devs,
                        const plan_options *o, plan *p, err *e) {
  plan_ctx c;
  plan_tables *owned;
  err_code rc = plan_ctx_begin(&c, m, devs, n_devs, o, &owned, e);
  if (rc != ERR_OK) return rc;
  const plan_tables *t = c.t;
  plan_dseg *segs = malloc((size_t)t->n_cuts * sizeof *segs);
  if (!segs) {
    plan_tables_destroy(owned);
    return err_set(e, ERR_NOMEM, "plan: out of memory");
  }
  double w[PLAN_MAX_DEVICES];
  for (int d = 0; d < n_devs; d++) w[d] = 1.0 / devs[d].ms_per_gflop;
  int n = plan_weighted_draft(&c, w, segs);
  plan_heuristic_draft(&c, segs, n);
  rc = plan_draft_to_plan(&c, segs, n, "heuristic", p, e);
  free(segs);
  plan_tables_destroy(owned);
  return rc;
}

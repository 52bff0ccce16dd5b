/* plan_refine.c — local search over a draft with exact prices (contract in
 * plan_internal.h).
 *
 * Why it is needed: the dynamic program prices segments one at a time, as
 * if their neighbours split the same way; what really moves between two
 * segments depends on both splits (rows that change owner travel twice),
 * and so does each segment's best split. Here every move is priced with
 * plan_seg_time (plan_evaluate's cost model) and kept only when the whole
 * draft gets cheaper, so the search never makes a draft worse.
 *
 * Moves, in passes until none pays or the work budget is spent:
 *  - local: each segment re-solved exactly given its neighbours
 *    (plan_solve_exact: minimal makespan over its splits in the current
 *    device order, idle devices offered below, in the first pass also
 *    above); moves of each edge (pattern search: one row, then twice as
 *    far while that pays), which find among the splits the re-solve leaves
 *    open the one that suits the neighbours; two devices adjacent in a
 *    segment swapped with their strip sizes;
 *  - structure, once the local moves settled: every run of up to
 *    REFINE_WINDOW consecutive segments replaced by one segment or by two
 *    meeting at any cut inside it (merges, splits, cuts moved any
 *    distance), and each segment cut in three at pairs of its best split
 *    cuts. Near candidates (merges of two, a cut moved by one) are all
 *    tried; the others are screened by pricing the old splits carried over
 *    and the best few tried: re-solved with their neighbours, polished
 *    (local and coupled moves) when they come close, then judged;
 *  - coupled: an edge moved by a row with both neighbouring segments
 *    re-solved for it (two changes that pay only together);
 *  - order: the device order changed in every segment at once (mirrored;
 *    two devices adjacent in it swapped, every segment re-solved), because
 *    a segment's order must agree with its neighbours' for strips to stay
 *    resident.
 * Prices are cached per strip; a move re-prices only the strips whose time
 * can change (plan_strip_time_in). The budget counts strips priced and the
 * split searches' steps; what is spent beyond a move's own strips is small
 * and bounded by the moves tried.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/plan_internal.h"

/* Policy: how hard the search tries. */
enum {
  REFINE_MAX_PASSES = 12,
  REFINE_MAX_NUDGES = 32,  /* tries per edge, direction and call */
  REFINE_MAX_POLISH = 3,   /* rounds of local moves on a candidate */
  REFINE_WINDOW = 3,       /* segments a structure move may replace */
  REFINE_TRIES = 6,        /* screened structure candidates solved per pass */
  RECUT_MAX = 3,           /* segments a structure candidate may have */
};
/* A candidate this close (relative to what it replaces) is worth polishing. */
static const double refine_close = 1.03;

typedef double strip_times[PLAN_MAX_DEVICES];

typedef struct search {
  const plan_ctx *c;
  plan_dseg *segs, *work; /* the draft and a candidate; capacity n_cuts - 1 */
  double *t, *work_t;     /* their segments' times */
  strip_times *st, *work_st; /* and their strips' */
  uint64_t *solved;       /* per segment: its neighbourhood when last re-solved */
  uint64_t *settled;      /* ... when last left alone by the other local moves */
  int n;
  double total;
  long effort, budget;         /* spent and allowed (plan_refine's units) */
  int canon[PLAN_MAX_DEVICES]; /* every device, fastest first */
} search;

static bool spent(const search *S) { return S->effort >= S->budget; }

static uint64_t hash_seg(uint64_t h, const plan_dseg *s) {
  if (!s) return h * 31 + 7;
  h = (h ^ (uint64_t)(s->i * 131 + s->j)) * 1099511628211ull;
  for (int k = 0; k < s->n; k++)
    h = (h ^ (uint64_t)(s->dev[k] * 4099 + s->b[k + 1])) * 1099511628211ull;
  return h;
}

/* What segment s's exact split depends on: itself and its neighbours. */
static uint64_t neighbourhood(const plan_dseg *segs, int n, int s) {
  uint64_t h = 1469598103934665603ull;
  h = hash_seg(h, s > 0 ? &segs[s - 1] : NULL);
  h = hash_seg(h, &segs[s]);
  return hash_seg(h, s + 1 < n ? &segs[s + 1] : NULL);
}

/* Improvements below this are noise, not worth a move (and could cycle). */
static double tol(const search *S) { return 1e-9 * S->total; }

static double max_of(const double *x, int n) {
  double m = 0;
  for (int k = 0; k < n; k++) m = x[k] > m ? x[k] : m;
  return m;
}

/* segs[s] = *cand when that makes the draft cheaper. Only the strips
 * whose price can change are re-priced: cand's strips that differ from
 * s's (device or rows), next's strips of devices whose strip in s changed
 * (what they hold), prev's strips holding rows that a changed strip's
 * input covers, before or after (what they send). */
static bool try_seg(search *S, int s, const plan_dseg *cand) {
  const plan_ctx *c = S->c;
  const plan_dseg *old = &S->segs[s];
  const plan_dseg *prev = s > 0 ? &S->segs[s - 1] : NULL;
  const plan_dseg *next = s + 1 < S->n ? &S->segs[s + 1] : NULL;
  S->effort += 2; /* what a try costs beyond its strips, in strips */
  /* device -> its strip in old (-1: none, -2: unchanged in cand), in prev
   * (what it holds for cand), in cand (what it holds for next). */
  int was[PLAN_MAX_DEVICES], held[PLAN_MAX_DEVICES], now[PLAN_MAX_DEVICES];
  bool changed[PLAN_MAX_DEVICES] = {false};
  for (int d = 0; d < c->n_devs; d++) was[d] = held[d] = now[d] = -1;
  for (int k = 0; k < old->n; k++) was[old->dev[k]] = k;
  if (prev)
    for (int q = 0; q < prev->n; q++) held[prev->dev[q]] = q;
  const plan_edge *E = plan_edges(c->t, old->i, old->j);
  plan_seg_view v = plan_view(c, cand, next);
  int u_lo = INT32_MAX, u_hi = INT32_MIN; /* hull of changed strips' inputs */
  double ts[PLAN_MAX_DEVICES], tp[PLAN_MAX_DEVICES], tn[PLAN_MAX_DEVICES];
  int q0 = 0;
  for (int k = 0; k < cand->n; k++) {
    int d = cand->dev[k], w = was[d];
    now[d] = k;
    if (w >= 0 && old->b[w] == cand->b[k] && old->b[w + 1] == cand->b[k + 1]) {
      ts[k] = S->st[s][w];
      was[d] = -2;
      continue;
    }
    int h = held[d];
    ts[k] = plan_strip_time_in(c, &v, h >= 0 ? prev->b[h] : 0, h >= 0 ? prev->b[h + 1] : 0, cand,
                               k, next, &q0);
    S->effort++;
    changed[d] = true;
    if (E[cand->b[k]].in_lo < u_lo) u_lo = E[cand->b[k]].in_lo;
    if (E[cand->b[k + 1]].in_hi > u_hi) u_hi = E[cand->b[k + 1]].in_hi;
  }
  for (int k = 0; k < old->n; k++) /* old strips gone or moved */
    if (was[old->dev[k]] != -2) {
      changed[old->dev[k]] = true;
      if (E[old->b[k]].in_lo < u_lo) u_lo = E[old->b[k]].in_lo;
      if (E[old->b[k + 1]].in_hi > u_hi) u_hi = E[old->b[k + 1]].in_hi;
    }
  double before = S->t[s], after = max_of(ts, cand->n);
  if (prev) { /* what prev's strips send to cand */
    const plan_dseg *pp = s > 1 ? &S->segs[s - 2] : NULL;
    int pheld[PLAN_MAX_DEVICES];
    if (pp) {
      for (int d = 0; d < c->n_devs; d++) pheld[d] = -1;
      for (int q = 0; q < pp->n; q++) pheld[pp->dev[q]] = q;
    }
    plan_seg_view pv = plan_view(c, prev, cand);
    int p0 = 0;
    for (int q = 0; q < prev->n; q++) {
      if (prev->b[q + 1] > u_lo && prev->b[q] < u_hi) {
        int h = pp ? pheld[prev->dev[q]] : -1;
        tp[q] = plan_strip_time_in(c, &pv, h >= 0 ? pp->b[h] : 0, h >= 0 ? pp->b[h + 1] : 0, prev,
                                   q, cand, &p0);
        S->effort++;
      } else {
        tp[q] = S->st[s - 1][q];
      }
    }
    before += S->t[s - 1];
    after += max_of(tp, prev->n);
  }
  if (next) { /* what next's strips find held in cand */
    const plan_dseg *nn = s + 2 < S->n ? &S->segs[s + 2] : NULL;
    plan_seg_view nv = plan_view(c, next, nn);
    for (int q = 0; q < next->n; q++) {
      int d = next->dev[q];
      if (changed[d]) {
        int h = now[d], n0 = 0;
        tn[q] = plan_strip_time_in(c, &nv, h >= 0 ? cand->b[h] : 0, h >= 0 ? cand->b[h + 1] : 0,
                                   next, q, nn, &n0);
        S->effort++;
      } else {
        tn[q] = S->st[s + 1][q];
      }
    }
    before += S->t[s + 1];
    after += max_of(tn, next->n);
  }
  if (!(after < before - tol(S))) return false;
  S->segs[s] = *cand;
  memcpy(S->st[s], ts, (size_t)cand->n * sizeof *ts);
  S->t[s] = max_of(ts, cand->n);
  if (prev) {
    memcpy(S->st[s - 1], tp, (size_t)prev->n * sizeof *tp);
    S->t[s - 1] = max_of(tp, prev->n);
  }
  if (next) {
    memcpy(S->st[s + 1], tn, (size_t)next->n * sizeof *tn);
    S->t[s + 1] = max_of(tn, next->n);
  }
  S->total += after - before;
  return true;
}

/* s's devices in row order, the idle ones (fastest first) after them, or
 * before them when `idle_first`. */
static int full_order(const search *S, const plan_dseg *s, bool idle_first, int *ord) {
  bool used[PLAN_MAX_DEVICES] = {false};
  int n = 0;
  for (int k = 0; k < s->n; k++) used[s->dev[k]] = true;
  if (idle_first)
    for (int k = 0; k < S->c->n_devs; k++)
      if (!used[S->canon[k]]) ord[n++] = S->canon[k];
  for (int k = 0; k < s->n; k++) ord[n++] = s->dev[k];
  if (!idle_first)
    for (int k = 0; k < S->c->n_devs; k++)
      if (!used[S->canon[k]]) ord[n++] = S->canon[k];
  return n;
}

/* The exact split of rep given its neighbours, in rep's own order. */
static void solve_seg(search *S, const plan_dseg *prev, plan_dseg *rep,
                      const plan_dseg *next, bool idle_first, double hint) {
  int ord[PLAN_MAX_DEVICES];
  int m = full_order(S, rep, idle_first, ord);
  plan_dseg cand = *rep;
  if (isfinite(plan_solve_exact(S->c, prev, &cand, next, ord, m, hint, &S->effort))) *rep = cand;
}

/* Re-solves segment s exactly, idle devices offered below (and above,
 * when `both`); keeps the result if the draft gets cheaper. */
static bool resolve(search *S, int s, bool both) {
  bool any = false;
  for (int idle_first = 0; idle_first < 2; idle_first++) {
    if (idle_first && (!both || S->segs[s].n == S->c->n_devs)) break;
    plan_dseg cand = S->segs[s];
    /* In its own order the current split is one the greedy can match. */
    solve_seg(S, s > 0 ? &S->segs[s - 1] : NULL, &cand, s + 1 < S->n ? &S->segs[s + 1] : NULL,
              idle_first, idle_first ? INFINITY : S->t[s]);
    if (try_seg(S, s, &cand)) any = true;
  }
  return any;
}

/* s with edge k moved by `by` rows, or false when that leaves the
 * segment (an emptied strip leaves the split). */
static bool moved_edge(const plan_dseg *cur, int k, int by, plan_dseg *cand) {
  *cand = *cur;
  cand->b[k] += by;
  if (cand->b[k] < cand->b[k - 1] || cand->b[k] > cand->b[k + 1]) return false;
  int drop = cand->b[k] == cand->b[k - 1] ? k - 1 : cand->b[k] == cand->b[k + 1] ? k : -1;
  if (drop >= 0) {
    memmove(&cand->dev[drop], &cand->dev[drop + 1], (size_t)(cand->n - drop - 1) * sizeof cand->dev[0]);
    memmove(&cand->b[drop + 1], &cand->b[drop + 2], (size_t)(cand->n - drop - 1) * sizeof cand->b[0]);
    cand->n--;
  }
  return true;
}

/* Moves of s's internal edges: for each edge and direction a pattern
 * search (one row, then twice as far while that keeps paying, back to one
 * row when it stops), so a long way costs O(log rows) prices. */
static bool nudge(search *S, int s) {
  bool any = false;
  for (int k = 1; k < S->segs[s].n && !spent(S); k++)
    for (int dir = -1; dir <= 1; dir += 2)
      for (int step = 1, moves = 0; step > 0 && moves < REFINE_MAX_NUDGES && k < S->segs[s].n; moves++) {
        plan_dseg cand;
        if (moved_edge(&S->segs[s], k, dir * step, &cand) && try_seg(S, s, &cand)) {
          any = true;
          step *= 2;
        } else {
          step /= 2;
        }
      }
  return any;
}

/* Exchanges devices u and v in s; when they hold adjacent strips, each
 * keeps its strip's size. */
static void swap_in(plan_dseg *s, int u, int v) {
  int pu = -1, pv = -1;
  for (int k = 0; k < s->n; k++) {
    if (s->dev[k] == u) pu = k;
    if (s->dev[k] == v) pv = k;
  }
  if (pu >= 0) s->dev[pu] = v;
  if (pv >= 0) s->dev[pv] = u;
  if (pu >= 0 && pv >= 0 && (pu - pv == 1 || pv - pu == 1)) {
    int k = pu < pv ? pu : pv; /* strips k, k + 1 trade sizes */
    s->b[k + 1] = s->b[k] + (s->b[k + 2] - s->b[k + 1]);
  }
}

static void reprice_all(const plan_ctx *c, const plan_dseg *segs, int n, double *t,
                        strip_times *st, double *total);
static double splice_delta(search *S, int s, int n_old, const plan_dseg *rep, int n_rep,
                           double *before);

/* Coupled moves on segments lo .. hi: an edge of segment s moved by a row
 * even when that alone costs more, with both neighbours re-solved for it;
 * kept when the three together got cheaper. A segment's best split
 * depends on its neighbours', so two changes may pay where neither does
 * alone. */
static bool coupled(search *S, int from, int to) {
  bool any = false;
  for (int s = from < 0 ? 0 : from; s <= to && s < S->n && !spent(S); s++)
    for (int k = 1; k < S->segs[s].n; k++)
      for (int dir = -1; dir <= 1; dir += 2) {
        int lo = s > 0 ? s - 1 : s, hi = s + 1 < S->n ? s + 1 : s;
        if (lo == hi) continue;
        plan_dseg rep[3];
        for (int q = lo; q <= hi; q++) rep[q - lo] = S->segs[q];
        if (!moved_edge(&S->segs[s], k, dir, &rep[s - lo])) continue;
        const plan_dseg *above = lo > 0 ? &S->segs[lo - 1] : NULL;
        const plan_dseg *below = hi + 1 < S->n ? &S->segs[hi + 1] : NULL;
        if (hi > s) solve_seg(S, &rep[s - lo], &rep[hi - lo], below, false, INFINITY);
        if (lo < s) solve_seg(S, above, &rep[0], &rep[s - lo], false, INFINITY);
        double before, delta = splice_delta(S, lo, hi - lo + 1, rep, hi - lo + 1, &before);
        if (!(delta < -tol(S))) continue;
        memcpy(&S->segs[lo], rep, (size_t)(hi - lo + 1) * sizeof *rep);
        reprice_all(S->c, S->segs, S->n, S->t, S->st, &S->total);
        any = true;
      }
  return any;
}

/* Local moves on segments lo .. hi until they stop paying (at most
 * `rounds` rounds); re-solves skip segments whose neighbourhood is as when
 * they were last re-solved. */
static bool local_moves(search *S, int lo, int hi, int rounds, bool first) {
  bool any = false;
  for (int r = 0; r < rounds; r++) {
    bool changed = false;
    for (int s = lo < 0 ? 0 : lo; s <= hi && s < S->n && !spent(S); s++) {
      uint64_t h = neighbourhood(S->segs, S->n, s);
      if (S->solved[s] != h) {
        if (resolve(S, s, first)) changed = true;
        S->solved[s] = neighbourhood(S->segs, S->n, s);
      }
      if (S->settled[s] == neighbourhood(S->segs, S->n, s)) continue;
      if (nudge(S, s)) changed = true;
      for (int k = 0; k + 1 < S->segs[s].n; k++) {
        plan_dseg cand = S->segs[s];
        swap_in(&cand, cand.dev[k], cand.dev[k + 1]);
        if (try_seg(S, s, &cand)) changed = true;
      }
      S->settled[s] = neighbourhood(S->segs, S->n, s);
    }
    if (!changed) break;
    any = true;
  }
  return any;
}

static void reprice_all(const plan_ctx *c, const plan_dseg *segs, int n, double *t,
                        strip_times *st, double *total) {
  *total = 0;
  for (int s = 0; s < n; s++)
    *total += t[s] = plan_seg_time(c, s > 0 ? &segs[s - 1] : NULL, &segs[s],
                                   s + 1 < n ? &segs[s + 1] : NULL, st[s]);
}

/* Takes the candidate in S->work[0 .. n) when it is cheaper, polishing its
 * segments lo .. hi first when it comes within `close` of what it
 * replaces (`before`, the draft's segments whose times it changes). */
static bool try_draft(search *S, int n, int lo, int hi, double before, double after) {
  if (after >= before * refine_close) return false;
  double old_total = S->total;
  int old_n = S->n;
  plan_dseg *keep = S->segs;
  double *keep_t = S->t;
  strip_times *keep_st = S->st;
  S->segs = S->work, S->t = S->work_t, S->st = S->work_st, S->n = n;
  reprice_all(S->c, S->segs, n, S->t, S->st, &S->total);
  if (S->total >= old_total - tol(S)) {
    memset(S->solved, 0, (size_t)S->c->t->n_cuts * sizeof *S->solved);
    memset(S->settled, 0, (size_t)S->c->t->n_cuts * sizeof *S->settled);
    for (int round = 0; round < REFINE_MAX_POLISH; round++)
      if (!local_moves(S, lo, hi, REFINE_MAX_POLISH, false) && !coupled(S, lo, hi)) break;
  }
  if (S->total < old_total - 1e-12 * old_total) {
    S->work = keep, S->work_t = keep_t, S->work_st = keep_st;
    return true;
  }
  S->work = S->segs, S->work_t = S->t, S->work_st = S->st; /* put the old draft back */
  S->segs = keep, S->t = keep_t, S->st = keep_st, S->n = old_n, S->total = old_total;
  memset(S->solved, 0, (size_t)S->c->t->n_cuts * sizeof *S->solved);
  memset(S->settled, 0, (size_t)S->c->t->n_cuts * sizeof *S->settled);
  return false;
}

/* The order of the segment with the most strips: the draft's device order. */
static int global_order(const search *S, int *ord) {
  int best = 0;
  for (int s = 1; s < S->n; s++)
    if (S->segs[s].n > S->segs[best].n) best = s;
  memcpy(ord, S->segs[best].dev, (size_t)S->segs[best].n * sizeof *ord);
  return S->segs[best].n;
}

static bool reorder(search *S) {
  bool any = false;
  const plan_ctx *c = S->c;
  /* Mirrored: the image's top and bottom borders differ (padding, stride). */
  for (int s = 0; s < S->n; s++) {
    const plan_dseg *o = &S->segs[s];
    plan_dseg *m = &S->work[s];
    *m = *o;
    int H = c->t->h[o->j];
    for (int k = 0; k < o->n; k++) {
      m->dev[k] = o->dev[o->n - 1 - k];
      m->b[k + 1] = H - o->b[o->n - 1 - k];
    }
  }
  if (try_draft(S, S->n, 0, S->n - 1, S->total, plan_draft_time(c, S->work, S->n))) any = true;
  int ord[PLAN_MAX_DEVICES];
  int m = global_order(S, ord);
  for (int k = 0; k + 1 < m && !spent(S); k++) {
    memcpy(S->work, S->segs, (size_t)S->n * sizeof *S->work);
    for (int s = 0; s < S->n; s++) swap_in(&S->work[s], ord[k], ord[k + 1]);
    /* Judged with splits of its own: each segment re-solved in the new
     * order, top down. */
    for (int s = 0; s < S->n; s++)
      solve_seg(S, s > 0 ? &S->work[s - 1] : NULL, &S->work[s], s + 1 < S->n ? &S->work[s + 1] : NULL,
                false, INFINITY);
    if (try_draft(S, S->n, 0, S->n - 1, S->total, plan_draft_time(c, S->work, S->n))) {
      any = true;
      m = global_order(S, ord);
    }
  }
  return any;
}

/* s's split carried over to a segment of another height (same devices). */
static void rescale(const plan_ctx *c, const plan_dseg *from, int i, int j, plan_dseg *to) {
  int H0 = c->t->h[from->j], H = c->t->h[j];
  to->i = i;
  to->j = j;
  to->n = 0;
  to->b[0] = 0;
  for (int k = 0; k < from->n; k++) {
    int e = k + 1 == from->n ? H : (int)((long long)from->b[k + 1] * H / H0);
    if (e <= to->b[to->n]) continue;
    to->dev[to->n] = from->dev[k];
    to->b[++to->n] = e;
  }
  to->b[to->n] = H;
}

/* The draft's time change when n_old segments from s make way for rep[0 ..
 * n_rep): the replaced segments and their two neighbours are priced, from
 * a window with one more segment each side; *before: what they cost now. */
static double splice_delta(search *S, int s, int n_old, const plan_dseg *rep, int n_rep,
                           double *before) {
  plan_dseg win[REFINE_WINDOW + RECUT_MAX + 6];
  int lo = s >= 2 ? s - 2 : 0, hi = s + n_old + 1 < S->n ? s + n_old + 1 : S->n - 1, m = 0;
  for (int q = lo; q < s; q++) win[m++] = S->segs[q];
  int first = s > 0 ? m - 1 : m; /* the first segment whose price changes */
  for (int r = 0; r < n_rep; r++) win[m++] = rep[r];
  int last = s + n_old < S->n ? m : m - 1;
  for (int q = s + n_old; q <= hi; q++) win[m++] = S->segs[q];
  double was = 0, after = 0;
  for (int q = s > 0 ? s - 1 : 0; q <= s + n_old && q < S->n; q++) was += S->t[q];
  /* win[0] stands for the draft's first segment only when lo is 0. */
  for (int q = first; q <= last; q++) {
    after += plan_seg_time(S->c, q > 0 ? &win[q - 1] : NULL, &win[q], q + 1 < m ? &win[q + 1] : NULL,
                           NULL);
    S->effort += win[q].n;
  }
  *before = was;
  return after - was;
}

/* A structure candidate: segments [s, s + n_old) become one, or two that
 * meet at cut k (k < 0: one). */
typedef struct recut {
  int s, n_old, k, k2; /* k2 > k: a third segment from k2 (else -1) */
  double delta;
} recut;

/* rep[] of candidate r, its splits carried over from the segments it replaces. */
static int recut_segs(const search *S, const recut *r, plan_dseg *rep) {
  const plan_dseg *a = &S->segs[r->s], *z = &S->segs[r->s + r->n_old - 1];
  if (r->k < 0) {
    rescale(S->c, z, a->i, z->j, &rep[0]);
    return 1;
  }
  /* Each part takes the split of the old segment holding its end. */
  const plan_dseg *at_k = a;
  for (int q = r->s; q < r->s + r->n_old; q++)
    if (S->segs[q].i < r->k && r->k <= S->segs[q].j) at_k = &S->segs[q];
  rescale(S->c, at_k, a->i, r->k, &rep[0]);
  if (r->k2 < 0) {
    rescale(S->c, z, r->k, z->j, &rep[1]);
    return 2;
  }
  rescale(S->c, z, r->k, r->k2, &rep[1]);
  rescale(S->c, z, r->k2, z->j, &rep[2]);
  return 3;
}

/* Re-solves the candidate's segments, each given its neighbours (bottom
 * up, then the top one again), and tries it. */
/* S->work = the draft with the candidate's segments rep[] in; its size. */
static int splice_into_work(search *S, const recut *r, const plan_dseg *rep, int n_rep) {
  int s = r->s;
  memcpy(S->work, S->segs, (size_t)s * sizeof *S->work);
  memcpy(S->work + s, rep, (size_t)n_rep * sizeof *rep);
  memcpy(S->work + s + n_rep, S->segs + s + r->n_old, (size_t)(S->n - s - r->n_old) * sizeof *S->work);
  return S->n - r->n_old + n_rep;
}

static bool try_recut(search *S, const recut *r) {
  plan_dseg rep[RECUT_MAX];
  int n_rep = recut_segs(S, r, rep);
  double before, delta = splice_delta(S, r->s, r->n_old, rep, n_rep, &before);
  /* The splits carried over may already be the better ones. */
  if (delta < -tol(S) && try_draft(S, splice_into_work(S, r, rep, n_rep), r->s - 1, r->s + n_rep,
                                   before, before + delta))
    return true;
  /* Else judge the structure with its own splits: its segments and their
   * neighbours re-solved (bottom up, then top down), each given the
   * latest of the others. */
  recut w = *r;
  plan_dseg win[RECUT_MAX + 2];
  int m = 0;
  if (w.s > 0) win[m++] = S->segs[w.s - 1], w.s--, w.n_old++;
  for (int x = 0; x < n_rep; x++) win[m++] = rep[x];
  if (r->s + r->n_old < S->n) win[m++] = S->segs[r->s + r->n_old], w.n_old++;
  const plan_dseg *above = w.s > 0 ? &S->segs[w.s - 1] : NULL;
  const plan_dseg *below = w.s + w.n_old < S->n ? &S->segs[w.s + w.n_old] : NULL;
  for (int x = m - 1; x >= 0; x--)
    solve_seg(S, x > 0 ? &win[x - 1] : above, &win[x], x + 1 < m ? &win[x + 1] : below, false,
              INFINITY);
  for (int x = 1; x < m; x++)
    solve_seg(S, &win[x - 1], &win[x], x + 1 < m ? &win[x + 1] : below, false, INFINITY);
  delta = splice_delta(S, w.s, w.n_old, win, m, &before);
  return try_draft(S, splice_into_work(S, &w, win, m), w.s - 1, w.s + m, before, before + delta);
}

/* The near candidates (two segments merged, the cut between two moved to a
 * neighbouring cut) are all tried; of the others (splits, longer moves,
 * windows of three) the REFINE_TRIES best by their carried-over splits. */
/* Adds candidate r to the REFINE_TRIES best (least delta) in best[]. */
static void keep_best(recut *best, int *n_best, const recut *r) {
  if (*n_best == REFINE_TRIES && r->delta >= best[*n_best - 1].delta) return;
  int q = *n_best < REFINE_TRIES ? (*n_best)++ : *n_best - 1;
  for (; q > 0 && best[q - 1].delta > r->delta; q--) best[q] = best[q - 1];
  best[q] = *r;
}

static bool restructure(search *S) {
  recut best[REFINE_TRIES];
  int n_best = 0;
  for (int s = 0; s < S->n && !spent(S); s++)
    for (int n_old = 1; n_old <= REFINE_WINDOW && s + n_old <= S->n; n_old++) {
      int i = S->segs[s].i, j = S->segs[s + n_old - 1].j;
      int top[3] = {-1, -1, -1}; /* a segment's best split cuts, for splits in three */
      double top_d[3] = {INFINITY, INFINITY, INFINITY};
      for (int k = n_old > 1 ? -1 : i + 1; k < j && !spent(S); k = k < 0 ? i + 1 : k + 1) {
        if (n_old == 2 && k == S->segs[s].j) continue; /* what the draft is */
        recut r = {s, n_old, k, -1, 0};
        bool near = n_old == 2 && (k < 0 || k == S->segs[s].j - 1 || k == S->segs[s].j + 1);
        if (near) {
          if (try_recut(S, &r)) return true;
          continue;
        }
        plan_dseg rep[RECUT_MAX];
        double before;
        int n_rep = recut_segs(S, &r, rep);
        r.delta = splice_delta(S, s, n_old, rep, n_rep, &before) / before;
        keep_best(best, &n_best, &r);
        if (n_old == 1)
          for (int q = 0; q < 3; q++)
            if (r.delta < top_d[q]) {
              for (int x = 2; x > q; x--) top[x] = top[x - 1], top_d[x] = top_d[x - 1];
              top[q] = k, top_d[q] = r.delta;
              break;
            }
      }
      /* A segment in three, at pairs of its best split cuts: two splits
       * may pay where either alone does not. */
      for (int a = 0; a < 3 && top[a] >= 0; a++)
        for (int b = a + 1; b < 3 && top[b] >= 0; b++) {
          recut r = {s, 1, top[a] < top[b] ? top[a] : top[b], top[a] < top[b] ? top[b] : top[a], 0};
          plan_dseg rep[RECUT_MAX];
          double before;
          int n_rep = recut_segs(S, &r, rep);
          r.delta = splice_delta(S, s, 1, rep, n_rep, &before) / before;
          keep_best(best, &n_best, &r);
        }
    }
  for (int q = 0; q < n_best && !spent(S); q++)
    if (try_recut(S, &best[q])) return true;
  return false;
}

double plan_refine(const plan_ctx *c, plan_dseg *segs, int *n, long budget) {
  size_t cap = (size_t)c->t->n_cuts;
  search S = {.c = c, .n = *n, .budget = budget};
  S.segs = malloc(cap * sizeof *S.segs);
  S.work = malloc(cap * sizeof *S.work);
  S.t = malloc(cap * sizeof *S.t);
  S.work_t = malloc(cap * sizeof *S.work_t);
  S.st = malloc(cap * sizeof *S.st);
  S.work_st = malloc(cap * sizeof *S.work_st);
  S.solved = calloc(cap, sizeof *S.solved);
  S.settled = calloc(cap, sizeof *S.settled);
  if (!S.segs || !S.work || !S.t || !S.work_t || !S.st || !S.work_st || !S.solved ||
      !S.settled) { /* keep the draft as it is */
    free(S.segs), free(S.work), free(S.t), free(S.work_t), free(S.st), free(S.work_st);
    free(S.solved), free(S.settled);
    return plan_draft_time(c, segs, *n);
  }
  memcpy(S.segs, segs, (size_t)*n * sizeof *segs);
  for (int d = 0; d < c->n_devs; d++) S.canon[d] = d;
  for (int i = 1; i < c->n_devs; i++)
    for (int k = i; k > 0 && c->devs[S.canon[k]].ms_per_gflop < c->devs[S.canon[k - 1]].ms_per_gflop; k--) {
      int x = S.canon[k];
      S.canon[k] = S.canon[k - 1];
      S.canon[k - 1] = x;
    }
  reprice_all(c, S.segs, S.n, S.t, S.st, &S.total);
  for (int pass = 0; pass < REFINE_MAX_PASSES && !spent(&S); pass++) {
    /* Splits first; boundaries, coupled moves and orders only once those
     * settled, in that order (each next one only when the last found
     * nothing: a draft's best structure may need its order as it is). */
    if (local_moves(&S, 0, S.n - 1, 1, pass == 0)) continue;
    if (!restructure(&S) && !coupled(&S, 0, S.n - 1) && !reorder(&S)) break;
  }
  memcpy(segs, S.segs, (size_t)S.n * sizeof *segs);
  *n = S.n;
  double total = S.total;
  free(S.segs), free(S.work), free(S.t), free(S.work_t), free(S.st), free(S.work_st);
  free(S.solved), free(S.settled);
  return total;
}

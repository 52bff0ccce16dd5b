/* plan_search.c — the split of one segment with minimal predicted time
 * (contract in plan_internal.h).
 *
 * The split solver. Devices are taken in a given row order; each may take
 * zero rows. For a makespan T, the greedy "each device in turn takes the
 * most rows it can finish within T" covers the segment iff some split
 * does, provided a strip's time never grows when its start moves down or
 * its end moves up. plan_evaluate's costs have that property once the
 * neighbouring segments are fixed: compute grows with the strip; the rows
 * a strip must receive are its input rows minus what the device held, which
 * only grow with the strip; the rows it sends are its rows the next
 * segment's other devices need, same. So the minimal T is found exactly by
 * searching T: a feasible probe gives a split and its actual makespan (an
 * upper bound that is one of the finitely many strip times), an infeasible
 * one gives the smallest strip time it saw above T (a lower bound: below
 * it every choice of the greedy is the same). The two meet at the optimum
 * in a few dozen probes of O(devices * log rows).
 *
 * The dynamic program (plan_exact.c) prices candidate segments with
 * plan_fluid_cost: the continuous relaxation of a proxy of a segment on
 * its own (its neighbours unknown, each internal edge charged its halo
 * rows both ways, as if the neighbours split the same way), O(devices).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/plan_internal.h"

/* Policy: probes per split solve before settling for the best seen. */
enum { SEARCH_MAX_PROBES = 96 };
static const double search_rel_gap = 1e-12; /* probe the lower bound itself below this */

/* ---- one segment's split problem ----------------------------------------- */

typedef struct split_problem {
  int H, n;
  bool first, last;
  const plan_edge *E;
  int dev[PLAN_MAX_DEVICES];
  double a[PLAN_MAX_DEVICES];    /* ms per FLOP */
  double c0[PLAN_MAX_DEVICES];   /* fixed cost and round trips, ms */
  double fe_rtt[PLAN_MAX_DEVICES]; /* of those, the FE exchanges' (none alone) */
  double kin[PLAN_MAX_DEVICES];  /* ms per input row received */
  double kout[PLAN_MAX_DEVICES]; /* ms per output row sent */
  int held_lo[PLAN_MAX_DEVICES], held_hi[PLAN_MAX_DEVICES]; /* from prev */
  int own_lo[PLAN_MAX_DEVICES], own_hi[PLAN_MAX_DEVICES];   /* its next input */
  int32_t *need; /* [H + 1]: rows [0, x) the next segment's strips read, counted per strip */
  double lb;     /* no split is faster */
} split_problem;

static inline int ov(int a_lo, int a_hi, int b_lo, int b_hi) {
  int lo = a_lo > b_lo ? a_lo : b_lo, hi = a_hi < b_hi ? a_hi : b_hi;
  return hi > lo ? hi - lo : 0;
}

static inline double strip_cost(const split_problem *p, int k, int lo, int hi) {
  const plan_edge *L = &p->E[lo], *R = &p->E[hi];
  int in_rows, out_rows;
  in_rows = R->in_hi - L->in_lo;
  if (!p->first) in_rows -= ov(L->in_lo, R->in_hi, p->held_lo[k], p->held_hi[k]);
  if (p->last) out_rows = hi - lo;
  else if (p->need) out_rows = p->need[hi] - p->need[lo] - ov(lo, hi, p->own_lo[k], p->own_hi[k]);
  else out_rows = 0;
  return p->a[k] * (R->ghi - L->glo) + p->c0[k] + p->kin[k] * in_rows + p->kout[k] * out_rows;
}

/* The farthest end device k can reach from `pos` within T (pos: none).
 * Strip times grow almost linearly with the end row, so the search
 * interpolates, halving instead whenever that did not halve the bracket. */
static int reach(const split_problem *p, int k, int pos, double T, double *bp,
                 double *act) {
  int H = p->H;
  if (pos >= H) return H;
  double c_hi = strip_cost(p, k, pos, H);
  if (c_hi <= T) {
    if (c_hi > *act) *act = c_hi;
    return H;
  }
  if (c_hi < *bp) *bp = c_hi;
  double c_lo = strip_cost(p, k, pos, pos + 1);
  if (c_lo > T) {
    if (c_lo < *bp) *bp = c_lo;
    return pos;
  }
  int lo = pos + 1, hi = H; /* cost(lo) <= T < cost(hi) */
  bool halve = false;
  while (hi - lo > 1) {
    int width = hi - lo, mid;
    if (halve || !(c_hi > c_lo)) {
      mid = lo + width / 2;
    } else {
      mid = lo + (int)((T - c_lo) / (c_hi - c_lo) * width);
      if (mid <= lo) mid = lo + 1;
      if (mid >= hi) mid = hi - 1;
    }
    double c = strip_cost(p, k, pos, mid);
    if (c <= T) {
      lo = mid;
      c_lo = c;
    } else {
      hi = mid;
      c_hi = c;
      if (c < *bp) *bp = c;
    }
    halve = !halve && 2 * (hi - lo) > width;
  }
  if (c_lo > *act) *act = c_lo;
  return lo;
}

/* The greedy at T: fills edges b (zero-row devices have b[k] == b[k+1]),
 * returns the row reached; *bp the least strip time seen above T, *act the
 * makespan of the strips taken. */
static int probe(const split_problem *p, double T, int *b, double *bp, double *act) {
  int pos = 0;
  *bp = INFINITY;
  *act = 0;
  b[0] = 0;
  for (int k = 0; k < p->n; k++) b[k + 1] = pos = reach(p, k, pos, T, bp, act);
  return pos;
}

/* Minimal makespan over splits in p's order; the split's edges in best_b;
 * *probes counts the probes made. */
static double solve(const split_problem *p, double hint, int *best_b, int *probes) {
  int b[PLAN_MAX_DEVICES + 1];
  double lo_t = p->lb, hi_t = INFINITY, bp, act;
  if (isfinite(hint)) {
    (*probes)++;
    if (probe(p, hint, b, &bp, &act) == p->H) {
      hi_t = act;
      memcpy(best_b, b, (size_t)(p->n + 1) * sizeof *b);
    }
  }
  /* Up from the lower bound in small steps: it is usually within 20 %. */
  double T = lo_t > 0 ? lo_t * 1.05 : 1.0;
  for (int i = 0; !isfinite(hi_t) && i < SEARCH_MAX_PROBES; i++) {
    (*probes)++;
    if (probe(p, T, b, &bp, &act) == p->H) {
      hi_t = act;
      memcpy(best_b, b, (size_t)(p->n + 1) * sizeof *b);
    } else {
      if (bp > lo_t) lo_t = bp;
      T = fmax(T * (i < 3 ? 1.1 : 2), bp);
    }
  }
  for (int i = 0; i < SEARCH_MAX_PROBES && hi_t > lo_t; i++) {
    T = hi_t - lo_t <= search_rel_gap * hi_t ? lo_t : 0.5 * (lo_t + hi_t);
    (*probes)++;
    if (probe(p, T, b, &bp, &act) == p->H) {
      if (act < hi_t) {
        hi_t = act;
        memcpy(best_b, b, (size_t)(p->n + 1) * sizeof *b);
      }
      if (T == lo_t) break;
    } else if (bp > lo_t && isfinite(bp)) {
      lo_t = bp;
    } else {
      break; /* nothing left to try: hi_t is the best seen */
    }
  }
  return hi_t;
}

/* Lower bound on any split of segment (i, j): every strip's device spends
 * at least the least fixed cost and round trips; over the strips, the work
 * is one strip's plus the least halo per extra strip, the image and the
 * gather are moved whole (what the neighbours move is not known here), and
 * at best the n fastest devices (links) share that, for some n. */
static double segment_lb(const plan_ctx *c, int i, int j, bool last) {
  const plan_tables *t = c->t;
  const plan_seg_info *f = &t->info[plan_seg_index(t->n_cuts, i, j)];
  int fe = plan_fe_count(c, i, j), H = t->h[j];
  double c_min = INFINITY, c_alone = INFINITY;
  for (int d = 0; d < c->n_devs; d++) {
    c_min = fmin(c_min, c->fixed_ms[d] + c->rtt_ms[d] + c->fe_rtt_ms[d] * fe);
    c_alone = fmin(c_alone, c->fixed_ms[d] + c->rtt_ms[d]);
  }
  double rb_in = plan_row_bytes(c, i), rb_out = plan_row_bytes(c, j);
  double best = INFINITY, speed = 0, link = 0;
  for (int n = 1; n <= c->n_devs; n++) {
    speed += c->speed_sorted[n - 1];
    link += c->link_sorted[n - 1];
    double rows_in = i == 0 ? f->in_rows + (n - 1) * (double)f->halo_rows : 0;
    double bytes = fmax(rows_in, 0) * rb_in + (last ? H * rb_out : 0);
    double w = fmax(f->work + (n - 1) * f->halo, 0);
    double x = (n == 1 ? c_alone : c_min) +
               fmax((w + c->gflop_per_byte * bytes) / speed, bytes / link);
    if (x < best) best = x;
  }
  return best;
}

/* Fills the per-device constants of p for segment (i, j) and order ord. */
static void setup(const plan_ctx *c, split_problem *p, int i, int j, const int *ord,
                  int n_ord) {
  const plan_tables *t = c->t;
  p->H = t->h[j];
  p->n = n_ord;
  p->E = plan_edges(t, i, j);
  int fe = plan_fe_count(c, i, j);
  double rb_in = plan_row_bytes(c, i), rb_out = plan_row_bytes(c, j);
  for (int k = 0; k < n_ord; k++) {
    const plan_device *d = &c->devs[ord[k]];
    p->dev[k] = ord[k];
    p->a[k] = d->ms_per_gflop * 1e-9;
    p->fe_rtt[k] = plan_fe_rtt(d) * fe;
    p->c0[k] = d->fixed_ms + d->rtt_ms + p->fe_rtt[k];
    p->kin[k] = c->ms_per_byte[ord[k]] * rb_in;
    p->kout[k] = c->ms_per_byte[ord[k]] * rb_out;
    p->held_lo[k] = p->held_hi[k] = p->own_lo[k] = p->own_hi[k] = 0;
  }
}

/* The draft segment of a solved split: only devices with rows. */
static void take_split(const split_problem *p, const int *b, plan_dseg *s) {
  s->n = 0;
  s->b[0] = 0;
  for (int k = 0; k < p->n; k++) {
    if (b[k + 1] <= b[k]) continue;
    s->dev[s->n] = p->dev[k];
    s->b[s->n + 1] = b[k + 1];
    s->n++;
  }
}

double plan_solve_exact(const plan_ctx *c, const plan_dseg *prev, plan_dseg *s,
                        const plan_dseg *next, const int *ord, int n_ord,
                        double hint_ms, long *work) {
  const plan_tables *t = c->t;
  split_problem p;
  setup(c, &p, s->i, s->j, ord, n_ord);
  p.first = s->i == 0;
  p.last = s->j == t->n_cuts - 1;
  p.lb = segment_lb(c, s->i, s->j, p.last);
  int32_t need_buf[p.H + 2];
  p.need = next ? need_buf : NULL;
  if (next) {
    /* need[x]: sum over next's strips of their input rows below x. */
    const plan_edge *En = plan_edges(t, next->i, next->j);
    memset(need_buf, 0, sizeof need_buf);
    for (int q = 0; q < next->n; q++) {
      need_buf[En[next->b[q]].in_lo]++;
      need_buf[En[next->b[q + 1]].in_hi]--;
    }
    int32_t run = 0, acc = 0; /* strips covering row x; rows below x */
    for (int x = 0; x <= p.H; x++) {
      int32_t starts = need_buf[x];
      need_buf[x] = acc;
      run += starts;
      acc += run;
    }
  }
  for (int k = 0; k < n_ord; k++) {
    int d = ord[k];
    if (prev)
      for (int q = 0; q < prev->n; q++)
        if (prev->dev[q] == d) p.held_lo[k] = prev->b[q], p.held_hi[k] = prev->b[q + 1];
    if (next) {
      const plan_edge *En = plan_edges(t, next->i, next->j);
      for (int q = 0; q < next->n; q++)
        if (next->dev[q] == d)
          p.own_lo[k] = En[next->b[q]].in_lo, p.own_hi[k] = En[next->b[q + 1]].in_hi;
    }
  }
  int b[PLAN_MAX_DEVICES + 1], probes = 0;
  double best = solve(&p, hint_ms, b, &probes);
  /* A device alone makes its FE scales itself (TileJob.fe_local): its
   * strip costs no FE round trips, which the search priced in. */
  for (int k = 0; k < n_ord; k++) {
    double alone = strip_cost(&p, k, 0, p.H) - p.fe_rtt[k];
    if (alone < best) {
      best = alone;
      for (int q = 0; q <= n_ord; q++) b[q] = q <= k ? 0 : p.H;
    }
  }
  if (isfinite(best)) take_split(&p, b, s);
  if (work) *work += (long)probes * n_ord;
  return best;
}

/* The continuous relaxation of the proxy: each device's time linear in its
 * rows (the segment's mean work and transfer per row, the mean halo work
 * and halo rows of a strip as a fixed cost); water-filling gives the
 * makespan at which the devices' rows add up to H; one device alone when
 * that is faster. O(devices). One device is priced with the FE round trips
 * a shared segment pays although alone it pays none (plan_fe_trips): the proxy
 * cannot see what moving every row onto one device and off again costs the
 * neighbouring segments, and pricing it cheaper made the DP choose such
 * segments where the exact splits then lost (vgg16c at 5 ms round trip: 453
 * ms against 360). plan_solve_exact prices a device alone exactly. */
double plan_fluid_cost(const plan_ctx *c, int i, int j) {
  const plan_tables *t = c->t;
  const plan_seg_info *f = &t->info[plan_seg_index(t->n_cuts, i, j)];
  int H = t->h[j], n = c->n_devs;
  int fe = plan_fe_count(c, i, j);
  bool first = i == 0, last = j == t->n_cuts - 1;
  double work = f->work, work_row = work / H;
  double halo_g = f->halo_mean > 0 ? f->halo_mean : 0;
  double halo_r = f->halo_rows_mean > 0 ? f->halo_rows_mean : 0;
  /* Bytes every strip moves per row of it (the image, the gather) and per
   * strip (its halos, both ways but at the image). */
  double bytes_all = (first ? f->in_rows * plan_row_bytes(c, 0) : 0) +
                     (last ? H * plan_row_bytes(c, j) : 0);
  double bytes_row = bytes_all / H;
  double bytes_strip = plan_row_bytes(c, i) * halo_r * (first ? 1 : 2);
  double alpha[PLAN_MAX_DEVICES], w[PLAN_MAX_DEVICES], single = INFINITY;
  double num = H, den = 0;
  /* Device d busy until T does (T - alpha) w rows, w its rows per ms.
   * Without bytes per row (inner segments) w is its speed over the work
   * per row: no division per device. */
  double inv_row = bytes_row > 0 ? 0 : 1 / work_row;
  for (int d = 0; d < n; d++) {
    double c0 = c->fixed_ms[d] + c->rtt_ms[d] + c->fe_rtt_ms[d] * fe;
    double one = c0 + c->ms_per_gflop[d] * work + c->ms_per_byte[d] * bytes_all;
    single = one < single ? one : single;
    double al = c0 + c->ms_per_gflop[d] * halo_g + c->ms_per_byte[d] * bytes_strip;
    double wd = bytes_row > 0 ? 1 / (c->ms_per_gflop[d] * work_row + c->ms_per_byte[d] * bytes_row)
                              : c->gflop_per_ms[d] * inv_row;
    alpha[d] = al;
    w[d] = wd;
    num += al * wd;
    den += wd;
  }
  /* Water filling: the devices busy until T are those that start before
   * T, and sum (T - alpha) w over them is H. Dropping the others only
   * lowers T, so a few rounds settle it. */
  double T = num / den;
  for (int round = 0; round < n; round++) {
    bool dropped = false;
    for (int d = 0; d < n; d++)
      if (w[d] > 0 && alpha[d] >= T) {
        num -= alpha[d] * w[d];
        den -= w[d];
        w[d] = 0;
        dropped = true;
      }
    if (!dropped || !(den > 0)) break;
    T = num / den;
  }
  return den > 0 && T < single ? T : single;
}

/* plan_internal.h — what the planner's files share; not for callers.
 *
 * plan.c (interface, plan_evaluate, the simple planners), plan_tables.c
 * (per-model tables, fast pricing of drafts), plan_heuristic.c (the paper's
 * row-moving planner), plan_exact.c (the exact planner: segment DP and
 * starts), plan_search.c (one segment's exact split, the DP's estimate)
 * and plan_refine.c (local search) work on "drafts": plans whose
 * segment boundaries are indices into the tables' list of cuts, priced from
 * the tables in O(1) per strip instead of a receptive-field walk. A draft
 * becomes a plan through plan_draft_to_plan(), which prices it with
 * plan_evaluate(): that price is the one callers see.
 *
 * Separability, which the tables rely on: for a segment [first, end) and a
 * strip of output rows [lo, hi), the rows every layer computes are
 * [LO_l(lo), HI_l(hi)) — the low edge depends only on lo, the high edge only
 * on hi, FE ownership included — and they do not depend on `first` (a
 * tensor's rows are decided by the layers after it). tests/plan_exact_test.c
 * checks the tables against model_strip_rows() on every zoo model.
 */
#ifndef EDGEDI_PLAN_INTERNAL_H
#define EDGEDI_PLAN_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/plan.h"

/* ---- shared by the planners (plan.c) ------------------------------------- */

/* The cost-model and shape checks every planner runs first. */
err_code plan_check_inputs(const model *m, const plan_device *devs, int n_devs,
                           const plan_options *o, err *e);
/* Segment ends of the simple planners: the first cut after each layer that
 * shrinks the height; returns their count (the last is head_first). */
int plan_default_segments(const model *m, int head_first, int *ends);
/* Splits `h` rows in proportion to `weight` (largest remainder). */
void plan_split_rows(int h, const double *weight, int n, int *rows);

/* ---- tables (plan_tables.c) ---------------------------------------------- */

/* One output-row edge x of a segment (i, j): what a strip whose lo (or hi)
 * is x computes. */
typedef struct plan_edge {
  double glo, ghi;     /* sum over layers of flops/h * LO_l(x) (HI_l(x)) */
  int32_t in_lo, in_hi; /* rows of the segment's input tensor */
} plan_edge;

/* What the dynamic program and the bounds need of a segment (i, j), kept
 * together so that scanning candidate segments stays in cache. */
typedef struct plan_seg_info {
  double work;      /* GFLOP of one strip of all rows */
  double halo;      /* GFLOP recomputed at an internal edge: min over edges */
  double halo_mean; /* the same, mean over edges */
  float halo_rows, halo_rows_mean; /* input rows two strips share at an edge */
  int32_t in_rows;  /* input rows one strip of all rows needs */
} plan_seg_info;

static inline size_t plan_seg_index(int n_cuts, int i, int j) {
  return (size_t)j * n_cuts + i;
}

struct plan_tables {
  uint64_t fingerprint; /* of the geometry the tables describe */
  int n_layers, head_first;
  int n_cuts;           /* cut[0] = 0 < ... < cut[n_cuts - 1] = head_first */
  int *cut;             /* layer index of each cut */
  int *h;               /* rows of the tensor at each cut (the input at 0) */
  int *row_floats;      /* floats in one of its rows (w * c); 0 at cut 0 */
  int *fe_before;       /* [head_first + 1]: FE layers in [0, l) */
  /* The same for FE layers whose sums can never go out early
   * (fe_moments_max_chain 0), and per layer: an FE whose can, except in a
   * segment that starts at it (plan_fe_waited). */
  int *fe_waits_before;
  bool *fe_early_ok;
  /* Per cut: it comes right after a layer that only changes values row by
   * row (batch norm, ReLU, FE: same shape, no halo), so cutting here costs
   * what cutting before that layer costs, up to where its few FLOPs and its
   * FE exchange fall. Searches may skip such cuts. */
  bool *after_row_op;
  /* Per end cut j >= 1, per x in [0, h[j]], the rows of every slot
   * 0 .. cut[j] (slot s = layer s-1's output, slot 0 the input):
   * lo_map[map_off[j] + x * (cut[j] + 1) + s]. */
  size_t *map_off;
  int32_t *lo_map, *hi_map;
  /* Per segment (i, j), i < j, per x in [0, h[j]]:
   * edge[edge_off[i * n_cuts + j] + x]. */
  size_t *edge_off;
  plan_edge *edge;
  plan_seg_info *info; /* [j * n_cuts + i]: the DP reads them in that order */
  /* Per layer: its cost per FLOP relative to the model's mean (1 when the
   * tables were prepared without measured costs, plan_prepare_weighted). */
  double *layer_w;
  size_t bytes;     /* what all of this takes */
};

/* What layer l of m costs for `rows` of its h output rows, in FLOP
 * equivalents: its FLOPs weighted by the tables' measured cost (t may be
 * NULL: plain FLOPs). plan_evaluate and the tables both price with this
 * one expression, so their sums agree to the bit. */
static inline double plan_layer_work(const plan_tables *t, const model *m, int l, int rows) {
  int h = m->layers[l].out.h;
  return m->layers[l].flops * (t ? t->layer_w[l] : 1.0) * rows / (h > 0 ? h : 1);
}

/* The tables for m: o->tables when given (ERR_INVALID when they describe
 * another geometry), else freshly built into *owned (free it after). */
err_code plan_tables_get(const model *m, const plan_options *o,
                         const plan_tables **t, plan_tables **owned, err *e);

/* Whether t describes m's geometry (O(layers)). */
bool plan_tables_fit(const plan_tables *t, const model *m);
/* model_strip_rows() from the tables: the rows of every layer of [first,
 * end) and of its input for output rows `out`; false when the tables do
 * not hold that range or those rows (ask model_strip_rows then). */
bool plan_tables_strip_rows(const plan_tables *t, int first, int end, model_rows out,
                            model_rows *rows, model_rows *in);

static inline const plan_edge *plan_edges(const plan_tables *t, int i, int j) {
  return t->edge + t->edge_off[(size_t)i * t->n_cuts + j];
}

/* ---- drafts and their prices (plan_tables.c) ----------------------------- */

/* A segment of a draft: layers [cut[i], cut[j]), n strips top to bottom,
 * strip k = rows [b[k], b[k+1]) on device dev[k] (b[0] = 0, b[n] = H). */
typedef struct plan_dseg {
  int i, j, n;
  int dev[PLAN_MAX_DEVICES];
  int b[PLAN_MAX_DEVICES + 1];
} plan_dseg;

/* Everything pricing needs for one request. */
typedef struct plan_ctx {
  const model *m;
  const plan_tables *t;
  const plan_device *devs;
  int n_devs;
  const plan_options *o;
  double image_row_bytes;
  /* The devices' cost models as arrays, for the inner loops. */
  double ms_per_gflop[PLAN_MAX_DEVICES], gflop_per_ms[PLAN_MAX_DEVICES];
  double fixed_ms[PLAN_MAX_DEVICES], rtt_ms[PLAN_MAX_DEVICES], fe_rtt_ms[PLAN_MAX_DEVICES];
  double ms_per_byte[PLAN_MAX_DEVICES];
  double speed_sorted[PLAN_MAX_DEVICES]; /* 1 / a, largest first */
  double link_sorted[PLAN_MAX_DEVICES];  /* 1 / ms_per_byte, largest first */
  double gflop_per_byte; /* min over devices of ms_per_byte / ms_per_gflop */
} plan_ctx;

void plan_ctx_init(plan_ctx *c, const model *m, const plan_tables *t,
                   const plan_device *devs, int n_devs, const plan_options *o);
/* What a drafting planner starts with: the inputs checked, the tables
 * (*owned: made here, destroy them after; NULL when o gave them) and the
 * context. */
err_code plan_ctx_begin(plan_ctx *c, const model *m, const plan_device *devs, int n_devs,
                        const plan_options *o, plan_tables **owned, err *e);

/* Bytes one row of layer `layer`'s output (row_floats floats) takes on the
 * wire (plan_options.wire_density); an integer, as plan_evaluate counts. */
static inline uint64_t plan_out_row_bytes(const plan_options *o, int layer, int row_floats) {
  uint64_t raw = (uint64_t)row_floats * sizeof(float);
  if (!o->wire_density) return raw;
  return (uint64_t)llround((double)raw * o->wire_density[layer]);
}

/* Bytes of one row of the tensor at cut k, as plan_evaluate counts them. */
static inline double plan_row_bytes(const plan_ctx *c, int k) {
  return k == 0 ? c->image_row_bytes
                : (double)plan_out_row_bytes(c->o, c->t->cut[k] - 1, c->t->row_floats[k]);
}

/* FE exchanges segment (i, j)'s jobs wait for: plan_fe_waited() from the
 * tables. */
static inline int plan_fe_count(const plan_ctx *c, int i, int j) {
  const plan_tables *t = c->t;
  int a = t->cut[i], b = t->cut[j];
  if (c->o->fe_late) return t->fe_before[b] - t->fe_before[a];
  return t->fe_waits_before[b] - t->fe_waits_before[a] + (a < b && t->fe_early_ok[a]);
}

/* Predicted time of segment s between prev and next (either NULL at the
 * ends), plan_evaluate's cost model from the tables; fills per-strip times
 * into t_part when not NULL. */
double plan_seg_time(const plan_ctx *c, const plan_dseg *prev,
                     const plan_dseg *s, const plan_dseg *next, double *t_part);

static inline int plan_overlap(int a_lo, int a_hi, int b_lo, int b_hi) {
  int lo = a_lo > b_lo ? a_lo : b_lo, hi = a_hi < b_hi ? a_hi : b_hi;
  return hi > lo ? hi - lo : 0;
}

/* What pricing the strips of one segment shares. */
typedef struct plan_seg_view {
  const plan_edge *E, *En; /* the segment's edges, next's (NULL: none) */
  double fe_trips, rb_in, rb_out;
} plan_seg_view;

static inline plan_seg_view plan_view(const plan_ctx *c, const plan_dseg *s,
                                      const plan_dseg *next) {
  const plan_tables *t = c->t;
  plan_seg_view v = {plan_edges(t, s->i, s->j), next ? plan_edges(t, next->i, next->j) : NULL,
                     plan_fe_trips(plan_fe_count(c, s->i, s->j), s->n), plan_row_bytes(c, s->i),
                     plan_row_bytes(c, s->j)};
  return v;
}

/* The time of strip k of s, as plan_seg_time prices it. held: the rows of
 * s's input its device computed in the segment before (empty: none);
 * *q0: next's first strip whose input may reach down to this strip (start
 * at 0; strips visited top down may share it). */
static inline double plan_strip_time_in(const plan_ctx *c, const plan_seg_view *v, int held_lo,
                                        int held_hi, const plan_dseg *s, int k,
                                        const plan_dseg *next, int *q0) {
  int d = s->dev[k], lo = s->b[k], hi = s->b[k + 1];
  const plan_edge *E = v->E;
  int in_lo = E[lo].in_lo, in_hi = E[hi].in_hi;
  int rows_in = (in_hi > in_lo ? in_hi - in_lo : 0) - plan_overlap(in_lo, in_hi, held_lo, held_hi);
  int rows_out = 0;
  if (next) {
    /* next's inputs are ordered like its strips: skip those ending above
     * this strip, stop at the first starting below it. */
    const plan_edge *En = v->En;
    while (*q0 < next->n && En[next->b[*q0 + 1]].in_hi <= lo) (*q0)++;
    for (int q = *q0; q < next->n; q++) {
      int nlo = En[next->b[q]].in_lo;
      if (nlo >= hi) break;
      if (next->dev[q] != d) rows_out += plan_overlap(nlo, En[next->b[q + 1]].in_hi, lo, hi);
    }
  } else {
    rows_out = hi - lo;
  }
  return c->ms_per_gflop[d] * (E[hi].ghi - E[lo].glo) * 1e-9 + c->fixed_ms[d] +
         c->rtt_ms[d] + c->fe_rtt_ms[d] * v->fe_trips +
         c->ms_per_byte[d] * (rows_in * v->rb_in + rows_out * v->rb_out);
}

/* The whole draft. */
double plan_draft_time(const plan_ctx *c, const plan_dseg *segs, int n);
/* The same, with plan_evaluate's arithmetic step for step (per-layer
 * flops, integer bytes): bit-identical to what plan_evaluate would give, so
 * candidates compare exactly as callers will see them. */
double plan_draft_time_exact(const plan_ctx *c, const plan_dseg *segs, int n);

/* Turns the draft upside down: every split's devices and rows mirrored. */
void plan_draft_mirror(const plan_ctx *c, plan_dseg *segs, int n);
/* Turns a draft into a plan named `name` and prices it with plan_evaluate. */
err_code plan_draft_to_plan(const plan_ctx *c, const plan_dseg *segs, int n,
                            const char *name, plan *p, err *e);
/* The draft of a plan whose segments start and end at cuts; false when a
 * segment boundary is not among the tables' cuts. */
bool plan_draft_from_plan(const plan_ctx *c, const plan *p, plan_dseg *segs,
                          int *n);

/* ---- planners' internals ------------------------------------------------- */

/* The paper's heuristic on a draft (plan_heuristic.c): improves *segs in
 * place, never making plan_draft_time worse. */
void plan_heuristic_draft(const plan_ctx *c, plan_dseg *segs, int n);
/* The draft of the proportional and equal planners (plan_tables.c). */
int plan_weighted_draft(const plan_ctx *c, const double *weight,
                        plan_dseg *segs);

/* The exact split of segment s given its neighbours (plan_search.c). The
 * devices that may take rows, in row order, are ord[0 .. n_ord); fills
 * s->n, s->dev, s->b with the split of minimal predicted time of s and
 * returns that time. prev is NULL for the first segment; next NULL for the
 * last, or when it is not known yet (then nothing is sent on). hint_ms: a
 * time known to be feasible (or INFINITY). *work (when not NULL) grows by
 * the device-steps the search took (probes times devices). */
double plan_solve_exact(const plan_ctx *c, const plan_dseg *prev,
                        plan_dseg *s, const plan_dseg *next, const int *ord,
                        int n_ord, double hint_ms, long *work);
/* An estimate of segment (i, j)'s makespan on its own, for the dynamic
 * program: the continuous relaxation of its split under a proxy that
 * charges each internal edge its halo rows both ways (plan_search.c),
 * O(devices). */
double plan_fluid_cost(const plan_ctx *c, int i, int j);
/* Local search with exact prices over splits, device orders and segment
 * boundaries; never makes the draft worse; stops when no move pays or
 * after `budget` units of work (a strip priced, a device's step in a split
 * search). Returns the draft's predicted time. */
double plan_refine(const plan_ctx *c, plan_dseg *segs, int *n, long budget);

#endif

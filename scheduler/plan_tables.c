/* plan_tables.c — per-model planning tables, and pricing drafts with them
 * (contracts in plan.h and plan_internal.h).
 *
 * What the tables hold: for every end cut, every output-row edge x and
 * every tensor before it, the low edge LO(x) and the high edge HI(x) of the
 * rows a strip starting (ending) at x computes there; for every candidate
 * segment (i, j) and edge x, the strip's input rows and its FLOPs as
 * glo(x), ghi(x): a strip [lo, hi) of (i, j) costs ghi(hi) - glo(lo).
 *
 * How: model.c's backward walk (hull over every path, clamping, FE
 * ownership) replayed once per edge: the low edges with the strip
 * [x, H), the high edges with [0, x). That this equals model_strip_rows()
 * for every strip rests on separability (plan_internal.h); the test suite
 * compares the two on every zoo model. Cost: one walk per edge and end cut,
 * O(sum over end cuts of H * layers); a few hundred kB to a few MB.
 *
 * Pricing: plan_seg_time() is plan_evaluate()'s cost model in O(strips^2)
 * per segment; plan_draft_time_exact() repeats plan_evaluate()'s
 * arithmetic operation for operation, so equal drafts get equal doubles.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fe_moments.h"
#include "scheduler/plan_internal.h"

static uint64_t mix(uint64_t h, uint64_t v) {
  return (h ^ v) * 1099511628211ull + (h >> 29);
}

/* Everything the tables depend on: graph, windows, shapes, FLOPs, ReLUs. */
static uint64_t geometry_fingerprint(const model *m) {
  uint64_t h = 1469598103934665603ull;
  h = mix(h, (uint64_t)m->n_layers);
  h = mix(h, (uint64_t)m->input.h);
  h = mix(h, (uint64_t)m->input.w);
  h = mix(h, (uint64_t)m->input.c);
  for (int l = 0; l < m->n_layers; l++) {
    const model_layer *L = &m->layers[l];
    uint64_t f;
    memcpy(&f, &L->flops, sizeof f);
    /* the rest of the window and relu: whether an FE's sums go early */
    const int v[] = {L->op,         L->n_inputs,  L->inputs[0], L->inputs[1],
                     L->kernel_h,   L->stride_h,  L->pad_top,   L->pad_bottom,
                     L->out.h,      L->out.w,     L->out.c,     L->kernel_w,
                     L->stride_w,   L->pad_left,  L->pad_right, L->relu};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) h = mix(h, (uint64_t)(uint32_t)v[i]);
    h = mix(h, f);
  }
  return h;
}

void plan_tables_destroy(plan_tables *t) {
  if (!t) return;
  free(t->cut);
  free(t->h);
  free(t->row_floats);
  free(t->fe_before);
  free(t->fe_waits_before);
  free(t->fe_early_ok);
  free(t->after_row_op);
  free(t->map_off);
  free(t->layer_w);
  free(t->lo_map);
  free(t->hi_map);
  free(t->edge_off);
  free(t->edge);
  free(t->info);
  free(t);
}

size_t plan_tables_bytes(const plan_tables *t) { return t ? t->bytes : 0; }

static int slot_h(const model *m, int slot) { return model_tensor_shape(m, slot - 1).h; }

/* model.c's backward() for the range [0, e) and output rows `out`: need[s]
 * for every slot s <= e. When `bound` is given, every slot read by an FE
 * layer before e owns [0, bound[s]) (the strip [0, x) owns that much). */
static void walk(const model *m, const int *fe_reader, int e, model_rows out,
                 const int32_t *bound, model_rows *need) {
  for (int s = 0; s < e; s++) need[s].lo = need[s].hi = 0;
  need[e] = out;
  for (int s = e; s >= 0; s--) {
    if (bound && fe_reader[s] < e) {
      model_rows owned = {0, bound[s]};
      need[s] = model_rows_hull(need[s], owned);
    }
    need[s] = model_rows_clamp(need[s], slot_h(m, s));
    if (s == 0) break;
    int l = s - 1;
    model_rows r = model_layer_input_rows(m, l, need[s]);
    for (int i = 0; i < m->layers[l].n_inputs; i++) {
      int src = m->layers[l].inputs[i] + 1;
      need[src] = model_rows_hull(need[src], r);
    }
  }
}

static err_code oom(plan_tables *t, err *e) {
  plan_tables_destroy(t);
  return err_set(e, ERR_NOMEM, "plan: out of memory for the planning tables");
}

/* Cuts, shapes and per-layer sums; sizes of the big arrays. */
static err_code build_small(const model *m, plan_tables *t, err *e) {
  int hf = t->head_first;
  t->cut = malloc((size_t)(hf + 1) * sizeof *t->cut);
  t->fe_before = malloc((size_t)(hf + 1) * sizeof *t->fe_before);
  t->fe_waits_before = malloc((size_t)(hf + 1) * sizeof *t->fe_waits_before);
  t->fe_early_ok = calloc((size_t)hf + 1, sizeof *t->fe_early_ok);
  if (!t->cut || !t->fe_before || !t->fe_waits_before || !t->fe_early_ok) return ERR_NOMEM;
  t->n_cuts = 0;
  for (int c = 0; c <= hf; c++)
    if (c == 0 || c == hf || model_is_cut(m, c)) t->cut[t->n_cuts++] = c;
  t->fe_before[0] = t->fe_waits_before[0] = 0;
  for (int l = 0; l < hf; l++) {
    bool fe = m->layers[l].op == MODEL_OP_FE;
    t->fe_early_ok[l] = fe && fe_moments_max_chain(m, l) > 0;
    t->fe_before[l + 1] = t->fe_before[l] + fe;
    t->fe_waits_before[l + 1] = t->fe_waits_before[l] + (fe && !t->fe_early_ok[l]);
  }
  int k = t->n_cuts;
  t->after_row_op = calloc((size_t)k, sizeof *t->after_row_op);
  if (!t->after_row_op) return ERR_NOMEM;
  for (int c = 1; c + 1 < k; c++) {
    int l = t->cut[c] - 1;
    model_op op = m->layers[l].op;
    t->after_row_op[c] = t->cut[c - 1] == l &&
                         (op == MODEL_OP_BN || op == MODEL_OP_RELU || op == MODEL_OP_FE);
  }
  t->h = malloc((size_t)k * sizeof *t->h);
  t->row_floats = malloc((size_t)k * sizeof *t->row_floats);
  t->map_off = calloc((size_t)k + 1, sizeof *t->map_off);
  t->edge_off = calloc((size_t)k * k, sizeof *t->edge_off);
  t->info = calloc((size_t)k * k, sizeof *t->info);
  if (!t->h || !t->row_floats || !t->map_off || !t->edge_off || !t->info) return ERR_NOMEM;
  size_t maps = 0, edges = 0;
  for (int j = 0; j < k; j++) {
    model_shape s = model_tensor_shape(m, t->cut[j] - 1);
    t->h[j] = s.h;
    t->row_floats[j] = j == 0 ? 0 : s.w * s.c;
    t->map_off[j] = maps;
    if (j == 0) continue;
    maps += (size_t)(s.h + 1) * (size_t)(t->cut[j] + 1);
    for (int i = 0; i < j; i++) {
      t->edge_off[(size_t)i * k + j] = edges;
      edges += (size_t)s.h + 1;
    }
  }
  t->map_off[k] = maps;
  t->lo_map = malloc((maps ? maps : 1) * sizeof *t->lo_map);
  t->hi_map = malloc((maps ? maps : 1) * sizeof *t->hi_map);
  t->edge = malloc((edges ? edges : 1) * sizeof *t->edge);
  if (!t->lo_map || !t->hi_map || !t->edge) return ERR_NOMEM;
  t->bytes = sizeof *t + maps * 2 * sizeof *t->lo_map + edges * sizeof *t->edge +
             (size_t)k * k * (sizeof *t->edge_off + sizeof *t->info) +
             (size_t)(hf + 1) * (sizeof *t->cut + sizeof *t->fe_before +
                                 sizeof *t->fe_waits_before + sizeof *t->fe_early_ok);
  (void)e;
  return ERR_OK;
}

/* The row maps and segment edges of end cut j. */
static void build_end(const model *m, plan_tables *t, int j, const int *fe_reader,
                      const int *cut_index, const double *w, model_rows *need,
                      int32_t *bound) {
  int e = t->cut[j], H = t->h[j], ns = e + 1;
  int32_t *lo = t->lo_map + t->map_off[j], *hi = t->hi_map + t->map_off[j];
  for (int x = 0; x < H; x++) {
    model_rows out = {x, H};
    walk(m, fe_reader, e, out, NULL, need);
    for (int s = 0; s < ns; s++) lo[(size_t)x * ns + s] = need[s].lo;
  }
  for (int s = 0; s < ns; s++) {
    lo[(size_t)H * ns + s] = slot_h(m, s); /* a strip from H owns nothing */
    hi[s] = 0;
  }
  for (int x = 1; x <= H; x++) {
    /* The strip [0, x) owns, at an FE's input, the rows below the first
     * one [x, H) needs. */
    for (int s = 0; s < ns; s++) bound[s] = x >= H ? slot_h(m, s) : lo[(size_t)x * ns + s];
    model_rows out = {0, x};
    walk(m, fe_reader, e, out, bound, need);
    for (int s = 0; s < ns; s++) hi[(size_t)x * ns + s] = need[s].hi;
  }
  int k = t->n_cuts;
  for (int x = 0; x <= H; x++) {
    const int32_t *lx = lo + (size_t)x * ns, *hx = hi + (size_t)x * ns;
    double glo = 0, ghi = 0;
    for (int s = e; s >= 1; s--) {
      glo += w[s - 1] * lx[s];
      ghi += w[s - 1] * hx[s];
      int i = cut_index[s - 1];
      if (i < 0) continue;
      plan_edge *E = &t->edge[t->edge_off[(size_t)i * k + j] + x];
      E->glo = glo;
      E->ghi = ghi;
      E->in_lo = lx[s - 1];
      E->in_hi = hx[s - 1];
    }
  }
  for (int i = 0; i < j; i++) {
    const plan_edge *E = plan_edges(t, i, j);
    double m_halo = INFINITY, sum_halo = 0, sum_rows = 0;
    int32_t m_rows = INT32_MAX;
    for (int x = 1; x < H; x++) {
      if (E[x].ghi - E[x].glo < m_halo) m_halo = E[x].ghi - E[x].glo;
      if (E[x].in_hi - E[x].in_lo < m_rows) m_rows = E[x].in_hi - E[x].in_lo;
      sum_halo += E[x].ghi - E[x].glo;
      sum_rows += E[x].in_hi - E[x].in_lo;
    }
    plan_seg_info *f = &t->info[plan_seg_index(k, i, j)];
    f->work = (E[H].ghi - E[0].glo) * 1e-9;
    f->in_rows = E[H].in_hi - E[0].in_lo;
    f->halo = isfinite(m_halo) ? m_halo * 1e-9 : 0;
    f->halo_rows = m_rows == INT32_MAX ? 0 : (float)m_rows;
    f->halo_mean = H > 1 ? sum_halo / (H - 1) * 1e-9 : 0;
    f->halo_rows_mean = H > 1 ? (float)(sum_rows / (H - 1)) : 0;
  }
}

err_code plan_prepare(const model *m, plan_tables **out, err *e) {
  return plan_prepare_weighted(m, NULL, out, e);
}

err_code plan_prepare_weighted(const model *m, const double *layer_cost, plan_tables **out,
                               err *e) {
  *out = NULL;
  if (!m || !m->finalized) return err_set(e, ERR_INVALID, "plan: model is not finalized");
  for (int l = 0; layer_cost && l < m->n_layers; l++)
    if (!isfinite(layer_cost[l]) || layer_cost[l] < 0)
      return err_set(e, ERR_INVALID, "plan: layer %d of %s: cost weight %g", l, m->name,
                     layer_cost[l]);
  plan_tables *t = calloc(1, sizeof *t);
  if (!t) return oom(t, e);
  t->layer_w = malloc((size_t)(m->n_layers > 0 ? m->n_layers : 1) * sizeof *t->layer_w);
  if (!t->layer_w) return oom(t, e);
  for (int l = 0; l < m->n_layers; l++) t->layer_w[l] = layer_cost ? layer_cost[l] : 1.0;
  t->n_layers = m->n_layers;
  t->head_first = plan_head_first(m);
  t->fingerprint = geometry_fingerprint(m);
  if (t->head_first == 0) {
    plan_tables_destroy(t);
    return err_set(e, ERR_UNSUPPORTED, "plan: %s has no spatial layers to split", m->name);
  }
  if (build_small(m, t, e) != ERR_OK) return oom(t, e);
  int hf = t->head_first;
  /* fe_reader[s]: the first FE layer reading slot s (n_layers: none), so a
   * walk ending at e applies ownership exactly for the FEs before e. */
  int *fe_reader = malloc((size_t)(hf + 1) * sizeof *fe_reader);
  int *cut_index = malloc((size_t)(hf + 1) * sizeof *cut_index);
  double *w = malloc((size_t)(hf + 1) * sizeof *w);
  model_rows *need = malloc((size_t)(hf + 1) * sizeof *need);
  int32_t *bound = malloc((size_t)(hf + 1) * sizeof *bound);
  if (!fe_reader || !cut_index || !w || !need || !bound) {
    free(fe_reader), free(cut_index), free(w), free(need), free(bound);
    return oom(t, e);
  }
  for (int s = 0; s <= hf; s++) fe_reader[s] = m->n_layers, cut_index[s] = -1;
  for (int l = hf - 1; l >= 0; l--)
    if (m->layers[l].op == MODEL_OP_FE) fe_reader[m->layers[l].inputs[0] + 1] = l;
  for (int i = 0; i < t->n_cuts; i++) cut_index[t->cut[i]] = i;
  for (int l = 0; l < hf; l++) w[l] = plan_layer_work(t, m, l, 1);
  for (int j = 1; j < t->n_cuts; j++) build_end(m, t, j, fe_reader, cut_index, w, need, bound);
  free(fe_reader), free(cut_index), free(w), free(need), free(bound);
  *out = t;
  return ERR_OK;
}

bool plan_tables_fit(const plan_tables *t, const model *m) {
  return t && t->n_layers == m->n_layers && t->fingerprint == geometry_fingerprint(m);
}

static int cut_index_of(const plan_tables *t, int layer);

bool plan_tables_strip_rows(const plan_tables *t, int first, int end, model_rows out,
                            model_rows *rows, model_rows *in) {
  int i = cut_index_of(t, first), j = cut_index_of(t, end);
  if (i < 0 || j <= i || out.lo < 0 || out.hi > t->h[j] || out.lo >= out.hi) return false;
  int ns = end + 1;
  const int32_t *lo = t->lo_map + t->map_off[j] + (size_t)out.lo * ns;
  const int32_t *hi = t->hi_map + t->map_off[j] + (size_t)out.hi * ns;
  for (int l = first; l < end; l++) {
    rows[l].lo = lo[l + 1];
    rows[l].hi = hi[l + 1];
  }
  in->lo = lo[first];
  in->hi = hi[first];
  return true;
}

err_code plan_tables_get(const model *m, const plan_options *o,
                         const plan_tables **t, plan_tables **owned, err *e) {
  *owned = NULL;
  if (o && o->tables) {
    if (!plan_tables_fit(o->tables, m))
      return err_set(e, ERR_INVALID,
                     "plan: the planning tables were prepared for another model "
                     "than %s",
                     m->name);
    *t = o->tables;
    return ERR_OK;
  }
  err_code rc = plan_prepare(m, owned, e);
  *t = *owned;
  return rc;
}

err_code plan_ctx_begin(plan_ctx *c, const model *m, const plan_device *devs, int n_devs,
                        const plan_options *o, plan_tables **owned, err *e) {
  *owned = NULL;
  err_code rc = plan_check_inputs(m, devs, n_devs, o, e);
  const plan_tables *t;
  if (rc == ERR_OK) rc = plan_tables_get(m, o, &t, owned, e);
  if (rc == ERR_OK) plan_ctx_init(c, m, t, devs, n_devs, o);
  return rc;
}

/* ---- pricing drafts -------------------------------------------------------- */

void plan_ctx_init(plan_ctx *c, const model *m, const plan_tables *t,
                   const plan_device *devs, int n_devs, const plan_options *o) {
  memset(c, 0, sizeof *c);
  c->m = m;
  c->t = t;
  c->devs = devs;
  c->n_devs = n_devs;
  c->o = o;
  c->image_row_bytes = (double)m->input.w * o->input_channels * o->input_bytes_per_pixel;
  c->gflop_per_byte = INFINITY;
  for (int d = 0; d < n_devs; d++) {
    c->ms_per_gflop[d] = devs[d].ms_per_gflop;
    c->gflop_per_ms[d] = 1.0 / devs[d].ms_per_gflop;
    c->fixed_ms[d] = devs[d].fixed_ms;
    c->rtt_ms[d] = devs[d].rtt_ms;
    c->fe_rtt_ms[d] = plan_fe_rtt(&devs[d]);
    c->ms_per_byte[d] = 8.0 / (devs[d].bandwidth_mbps * 1e3);
    c->speed_sorted[d] = 1.0 / devs[d].ms_per_gflop;
    c->link_sorted[d] = 1.0 / c->ms_per_byte[d];
    c->gflop_per_byte = fmin(c->gflop_per_byte, c->ms_per_byte[d] / devs[d].ms_per_gflop);
  }
  /* Insertion sorts, largest first: n is at most PLAN_MAX_DEVICES. */
  double *arr[2] = {c->speed_sorted, c->link_sorted};
  for (int a = 0; a < 2; a++)
    for (int i = 1; i < n_devs; i++)
      for (int k = i; k > 0 && arr[a][k] > arr[a][k - 1]; k--) {
        double x = arr[a][k];
        arr[a][k] = arr[a][k - 1];
        arr[a][k - 1] = x;
      }
}


/* The strip of device d in s, or -1. */
static int strip_of(const plan_dseg *s, int d) {
  for (int k = 0; k < s->n; k++)
    if (s->dev[k] == d) return k;
  return -1;
}

static int overlap(int a_lo, int a_hi, int b_lo, int b_hi) {
  return plan_overlap(a_lo, a_hi, b_lo, b_hi);
}

double plan_seg_time(const plan_ctx *c, const plan_dseg *prev,
                     const plan_dseg *s, const plan_dseg *next, double *t_part) {
  plan_seg_view v = plan_view(c, s, next);
  /* Where each device's strip of prev is (-1: none). */
  int held[PLAN_MAX_DEVICES];
  if (prev) {
    for (int d = 0; d < c->n_devs; d++) held[d] = -1;
    for (int q = 0; q < prev->n; q++) held[prev->dev[q]] = q;
  }
  double worst = 0;
  int q0 = 0;
  for (int k = 0; k < s->n; k++) {
    int h = prev ? held[s->dev[k]] : -1;
    double tk = plan_strip_time_in(c, &v, h >= 0 ? prev->b[h] : 0, h >= 0 ? prev->b[h + 1] : 0, s,
                                   k, next, &q0);
    if (t_part) t_part[k] = tk;
    if (tk > worst) worst = tk;
  }
  return worst;
}

double plan_draft_time(const plan_ctx *c, const plan_dseg *segs, int n) {
  double total = 0;
  for (int s = 0; s < n; s++)
    total += plan_seg_time(c, s > 0 ? &segs[s - 1] : NULL, &segs[s],
                           s + 1 < n ? &segs[s + 1] : NULL, NULL);
  return total;
}

/* Rows of the input tensor of segment s a strip [lo, hi) needs. */
static model_rows strip_in(const plan_tables *t, const plan_dseg *s, int lo, int hi) {
  const plan_edge *E = plan_edges(t, s->i, s->j);
  model_rows r = {E[lo].in_lo, E[hi].in_hi};
  return r;
}

static uint64_t count_rows(model_rows r) { return r.hi > r.lo ? (uint64_t)(r.hi - r.lo) : 0; }

double plan_draft_time_exact(const plan_ctx *c, const plan_dseg *segs, int n) {
  const plan_tables *t = c->t;
  const model *m = c->m;
  double total = 0;
  for (int si = 0; si < n; si++) {
    const plan_dseg *s = &segs[si];
    const plan_dseg *prev = si > 0 ? &segs[si - 1] : NULL;
    const plan_dseg *next = si + 1 < n ? &segs[si + 1] : NULL;
    int first = t->cut[s->i], end = t->cut[s->j], ns = end + 1;
    const int32_t *lo_map = t->lo_map + t->map_off[s->j];
    const int32_t *hi_map = t->hi_map + t->map_off[s->j];
    uint64_t in_row = s->i == 0 ? (uint64_t)m->input.w * c->o->input_channels *
                                      c->o->input_bytes_per_pixel
                                : plan_out_row_bytes(c->o, first - 1, t->row_floats[s->i]);
    uint64_t out_row = plan_out_row_bytes(c->o, end - 1, t->row_floats[s->j]);
    int fe = plan_fe_count(c, s->i, s->j);
    double seg = 0;
    for (int k = 0; k < s->n; k++) {
      int d = s->dev[k], lo = s->b[k], hi = s->b[k + 1];
      double flops = 0;
      for (int l = first; l < end; l++) {
        model_rows r = {lo_map[(size_t)lo * ns + l + 1], hi_map[(size_t)hi * ns + l + 1]};
        flops += plan_layer_work(t, m, l, (int)count_rows(r));
      }
      double gflop = flops / 1e9;
      model_rows in = strip_in(t, s, lo, hi);
      int own = 0;
      if (prev) {
        int q = strip_of(prev, d);
        if (q >= 0) own = overlap(in.lo, in.hi, prev->b[q], prev->b[q + 1]);
      }
      uint64_t bytes_in = (uint64_t)((int)count_rows(in) - own) * in_row, bytes_out = 0;
      if (next) {
        for (int q = 0; q < next->n; q++)
          if (next->dev[q] != d) {
            model_rows nin = strip_in(t, next, next->b[q], next->b[q + 1]);
            bytes_out += (uint64_t)overlap(nin.lo, nin.hi, lo, hi) * out_row;
          }
      } else {
        bytes_out = (uint64_t)(hi - lo) * out_row;
      }
      const plan_device *dv = &c->devs[d];
      double bits_per_ms = dv->bandwidth_mbps * 1e3;
      double compute_ms = dv->ms_per_gflop * gflop + dv->fixed_ms;
      double transfer_ms = (double)(bytes_in + bytes_out) * 8.0 / bits_per_ms +
                           plan_trips_ms(dv, fe, s->n);
      double tk = compute_ms + transfer_ms;
      if (tk > seg) seg = tk;
    }
    total += seg;
  }
  return total;
}

err_code plan_draft_to_plan(const plan_ctx *c, const plan_dseg *segs, int n,
                            const char *name, plan *p, err *e) {
  memset(p, 0, sizeof *p);
  snprintf(p->planner, sizeof p->planner, "%s", name);
  p->head_first = c->t->head_first;
  p->segments = calloc((size_t)n, sizeof *p->segments);
  if (!p->segments) return err_set(e, ERR_NOMEM, "plan: out of memory");
  p->n_segments = n;
  for (int si = 0; si < n; si++) {
    plan_segment *s = &p->segments[si];
    s->first = c->t->cut[segs[si].i];
    s->end = c->t->cut[segs[si].j];
    s->n_parts = segs[si].n;
    for (int k = 0; k < segs[si].n; k++) {
      s->parts[k].device = segs[si].dev[k];
      s->parts[k].out.lo = segs[si].b[k];
      s->parts[k].out.hi = segs[si].b[k + 1];
    }
  }
  /* Priced by plan_evaluate, from the tables already at hand. */
  plan_options o = *c->o;
  o.tables = c->t;
  err_code rc = plan_evaluate(c->m, c->devs, c->n_devs, &o, p, e);
  if (rc != ERR_OK) plan_free(p);
  return rc;
}

static int cut_index_of(const plan_tables *t, int layer) {
  int lo = 0, hi = t->n_cuts - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (t->cut[mid] == layer) return mid;
    if (t->cut[mid] < layer) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

bool plan_draft_from_plan(const plan_ctx *c, const plan *p, plan_dseg *segs, int *n) {
  for (int si = 0; si < p->n_segments; si++) {
    const plan_segment *s = &p->segments[si];
    plan_dseg *d = &segs[si];
    d->i = cut_index_of(c->t, s->first);
    d->j = cut_index_of(c->t, s->end);
    if (d->i < 0 || d->j <= d->i) return false;
    d->n = s->n_parts;
    d->b[0] = 0;
    for (int k = 0; k < s->n_parts; k++) {
      d->dev[k] = s->parts[k].device;
      d->b[k + 1] = s->parts[k].out.hi;
    }
  }
  *n = p->n_segments;
  return true;
}

int plan_weighted_draft(const plan_ctx *c, const double *weight, plan_dseg *segs) {
  const plan_tables *t = c->t;
  int ends[t->n_cuts];
  int n = plan_default_segments(c->m, t->head_first, ends);
  for (int si = 0, first = 0; si < n; first = ends[si++]) {
    plan_dseg *s = &segs[si];
    s->i = cut_index_of(t, first);
    s->j = cut_index_of(t, ends[si]);
    int rows[PLAN_MAX_DEVICES];
    plan_split_rows(t->h[s->j], weight, c->n_devs, rows);
    s->n = 0;
    s->b[0] = 0;
    for (int d = 0; d < c->n_devs; d++) {
      if (rows[d] == 0) continue;
      s->dev[s->n] = d;
      s->b[s->n + 1] = s->b[s->n] + rows[d];
      s->n++;
    }
  }
  return n;
}

void plan_draft_mirror(const plan_ctx *c, plan_dseg *segs, int n) {
  for (int s = 0; s < n; s++) {
    plan_dseg o = segs[s];
    int H = c->t->h[o.j];
    for (int k = 0; k < o.n; k++) {
      segs[s].dev[k] = o.dev[o.n - 1 - k];
      segs[s].b[k + 1] = H - o.b[o.n - 1 - k];
    }
  }
}

/* plan.c — pricing plans with the cost model, the simple planners and the
 * planner registry (contract in plan.h). Relies on model_strip_rows for
 * every row interval, so what it prices is exactly what the executor
 * computes and the dispatcher moves. The other planners live in
 * plan_heuristic.c and plan_exact.c; what they share is plan_internal.h. */
#include "scheduler/plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fe_moments.h"
#include "scheduler/plan_internal.h"

plan_options plan_default_options(void) {
  plan_options o = {.input_bytes_per_pixel = 1, .input_channels = 1, .tables = NULL};
  return o;
}

void plan_free(plan *p) {
  if (!p) return;
  free(p->segments);
  p->segments = NULL;
  p->n_segments = 0;
}

static bool is_head_op(model_op op) {
  return op == MODEL_OP_GAP || op == MODEL_OP_FC || op == MODEL_OP_FLATTEN;
}

int plan_head_first(const model *m) {
  int first_head = m->n_layers;
  for (int l = 0; l < m->n_layers; l++)
    if (is_head_op(m->layers[l].op)) {
      first_head = l;
      break;
    }
  while (first_head > 0 && !model_is_cut(m, first_head)) first_head--;
  return first_head;
}

static int rows_count(model_rows r) { return r.hi > r.lo ? r.hi - r.lo : 0; }

static int rows_overlap(model_rows a, model_rows b) {
  int lo = a.lo > b.lo ? a.lo : b.lo, hi = a.hi < b.hi ? a.hi : b.hi;
  return hi > lo ? hi - lo : 0;
}

/* Bytes of one row of the tensor layer `l` produces (the graph input as the
 * image travels for l == MODEL_INPUT). */
static uint64_t row_bytes(const model *m, int l, const plan_options *o) {
  model_shape s = model_tensor_shape(m, l);
  if (l == MODEL_INPUT)
    return (uint64_t)s.w * o->input_channels * o->input_bytes_per_pixel;
  return plan_out_row_bytes(o, l, s.w * s.c);
}

static int count_fe(const model *m, int first, int end) {
  int n = 0;
  for (int l = first; l < end; l++) n += m->layers[l].op == MODEL_OP_FE;
  return n;
}

int plan_fe_waited(const model *m, int first, int end, bool late) {
  int n = 0;
  for (int l = first; l < end; l++)
    n += m->layers[l].op == MODEL_OP_FE && (late || fe_moments_chain(m, l, first) == 0);
  return n;
}

/* The part of segment `s` computed by device `d`, or NULL. */
static const plan_part *part_of(const plan_segment *s, int d) {
  for (int i = 0; i < s->n_parts; i++)
    if (s->parts[i].device == d) return &s->parts[i];
  return NULL;
}

err_code plan_evaluate(const model *m, const plan_device *devs, int n_devs,
                       const plan_options *o, plan *p, err *e) {
  model_rows *rows = malloc((size_t)m->n_layers * sizeof *rows);
  if (!rows) return err_set(e, ERR_NOMEM, "plan: out of memory");
  /* The model's tables, when given, say what model_strip_rows would (the
   * tests hold them to it) without walking the graph for every strip. */
  const plan_tables *t = o && o->tables && plan_tables_fit(o->tables, m) ? o->tables : NULL;
  p->predicted_ms = 0;
  p->fe_late = o->fe_late;
  p->bytes_moved = p->bytes_gather_all = 0;
  for (int si = 0; si < p->n_segments; si++) {
    plan_segment *s = &p->segments[si];
    s->fe_exchanges = plan_fe_waited(m, s->first, s->end, o->fe_late);
    s->fe_early = count_fe(m, s->first, s->end) - s->fe_exchanges;
    s->predicted_ms = 0;
    for (int k = 0; k < s->n_parts; k++) {
      plan_part *pt = &s->parts[k];
      if (pt->device < 0 || pt->device >= n_devs) {
        free(rows);
        return err_set(e, ERR_RANGE, "plan: segment %d names device %d of %d",
                       si, pt->device, n_devs);
      }
      err_code rc = ERR_OK;
      if (!t || !plan_tables_strip_rows(t, s->first, s->end, pt->out, rows, &pt->in))
        rc = model_strip_rows(m, s->first, s->end, pt->out, rows, &pt->in, e);
      if (rc != ERR_OK) {
        free(rows);
        return err_wrap(e, "plan: segment %d, device %s", si, devs[pt->device].name);
      }
      double flops = 0;
      for (int l = s->first; l < s->end; l++)
        flops += plan_layer_work(t, m, l, rows_count(rows[l]));
      pt->gflop = flops / 1e9;
    }
  }
  /* Bytes: an input row comes from the device's own previous strip when it
   * holds it, otherwise over its link (relayed by the scheduler). */
  for (int si = 0; si < p->n_segments; si++) {
    plan_segment *s = &p->segments[si];
    const plan_segment *prev = si > 0 ? &p->segments[si - 1] : NULL;
    const plan_segment *next = si + 1 < p->n_segments ? &p->segments[si + 1] : NULL;
    uint64_t in_row = row_bytes(m, s->first - 1, o);
    uint64_t out_row = row_bytes(m, s->end - 1, o);
    for (int k = 0; k < s->n_parts; k++) {
      plan_part *pt = &s->parts[k];
      const plan_device *d = &devs[pt->device];
      const plan_part *held = prev ? part_of(prev, pt->device) : NULL;
      int own = held ? rows_overlap(pt->in, held->out) : 0;
      pt->bytes_in = (uint64_t)(rows_count(pt->in) - own) * in_row;
      pt->bytes_out = 0;
      if (next) {
        for (int j = 0; j < next->n_parts; j++)
          if (next->parts[j].device != pt->device)
            pt->bytes_out += (uint64_t)rows_overlap(next->parts[j].in, pt->out) * out_row;
      } else {
        pt->bytes_out = (uint64_t)rows_count(pt->out) * out_row;
      }
      double bits_per_ms = d->bandwidth_mbps * 1e3;
      pt->compute_ms = d->ms_per_gflop * pt->gflop + d->fixed_ms;
      pt->transfer_ms = (double)(pt->bytes_in + pt->bytes_out) * 8.0 / bits_per_ms +
                        plan_trips_ms(d, s->fe_exchanges, s->n_parts);
      double t = pt->compute_ms + pt->transfer_ms;
      if (t > s->predicted_ms) s->predicted_ms = t;
      p->bytes_moved += pt->bytes_in + pt->bytes_out;
      p->bytes_gather_all += (uint64_t)rows_count(pt->in) * in_row +
                             (uint64_t)rows_count(pt->out) * out_row;
    }
    p->predicted_ms += s->predicted_ms;
  }
  free(rows);
  return ERR_OK;
}

int plan_default_segments(const model *m, int head_first, int *ends) {
  int n = 0, first = 0;
  bool shrunk = false;
  /* No segment of layers without arithmetic (a batch norm between the last
   * pool and the head): it would cost an exchange and do nothing. */
  int last_work = -1;
  for (int l = 0; l < head_first; l++)
    if (m->layers[l].flops > 0) last_work = l;
  for (int l = 0; l < head_first; l++) {
    int in_h = model_tensor_shape(m, m->layers[l].inputs[0]).h;
    if (m->layers[l].out.h < in_h) shrunk = true;
    if (shrunk && l + 1 > first && model_is_cut(m, l + 1) && l + 1 <= last_work) {
      ends[n++] = l + 1;
      first = l + 1;
      shrunk = false;
    }
  }
  ends[n++] = head_first;
  return n;
}

void plan_split_rows(int h, const double *weight, int n, int *rows) {
  double total = 0;
  for (int i = 0; i < n; i++) total += weight[i];
  int given = 0;
  double frac[PLAN_MAX_DEVICES];
  for (int i = 0; i < n; i++) {
    double exact = h * weight[i] / total;
    rows[i] = (int)floor(exact);
    frac[i] = exact - rows[i];
    given += rows[i];
  }
  while (given < h) {
    int best = 0;
    for (int i = 1; i < n; i++)
      if (frac[i] > frac[best]) best = i;
    rows[best]++;
    frac[best] = -1;
    given++;
  }
}

/* Policy: what an image row may weigh as sent (float32 at most, a few
 * channels), so that nonsense options never reach the byte counts. */
enum { PLAN_MAX_INPUT_BYTES_PER_PIXEL = 8, PLAN_MAX_INPUT_CHANNELS = 64 };

err_code plan_check_inputs(const model *m, const plan_device *devs, int n_devs,
                           const plan_options *o, err *e) {
  if (!m || !m->finalized) return err_set(e, ERR_INVALID, "plan: model is not finalized");
  if (!o) return err_set(e, ERR_INVALID, "plan: no options");
  if (o->input_bytes_per_pixel < 1 ||
      o->input_bytes_per_pixel > PLAN_MAX_INPUT_BYTES_PER_PIXEL ||
      o->input_channels < 1 || o->input_channels > PLAN_MAX_INPUT_CHANNELS)
    return err_set(e, ERR_INVALID,
                   "plan: the image as sent has %d bytes per sample and %d "
                   "channels",
                   o->input_bytes_per_pixel, o->input_channels);
  if (o->wire_density)
    for (int l = 0; l < m->n_layers; l++)
      if (!(o->wire_density[l] >= PLAN_MIN_WIRE_DENSITY && o->wire_density[l] <= 1.0))
        return err_set(e, ERR_INVALID, "plan: wire density %g of layer %d is not in [%g, 1]",
                       o->wire_density[l], l, PLAN_MIN_WIRE_DENSITY);
  if (n_devs < 1) return err_set(e, ERR_UNAVAILABLE, "plan: no device is up");
  if (n_devs > PLAN_MAX_DEVICES)
    return err_set(e, ERR_INVALID, "plan: %d devices, at most %d", n_devs,
                   PLAN_MAX_DEVICES);
  for (int i = 0; i < n_devs; i++) {
    const plan_device *d = &devs[i];
    if (!(d->ms_per_gflop > 0) || !isfinite(d->ms_per_gflop) ||
        !(d->fixed_ms >= 0) || !isfinite(d->fixed_ms) ||
        !(d->bandwidth_mbps > 0) || !isfinite(d->bandwidth_mbps) ||
        !(d->rtt_ms >= 0) || !isfinite(d->rtt_ms) || !(d->fe_rtt_ms >= 0) ||
        !isfinite(d->fe_rtt_ms))
      return err_set(e, ERR_INVALID,
                     "plan: device %s has a nonsense cost model (a=%g b=%g "
                     "bw=%g rtt=%g fe_rtt=%g)",
                     d->name, d->ms_per_gflop, d->fixed_ms, d->bandwidth_mbps,
                     d->rtt_ms, d->fe_rtt_ms);
  }
  if (plan_head_first(m) == 0)
    return err_set(e, ERR_UNSUPPORTED, "plan: %s has no spatial layers to split",
                   m->name);
  if (o->tables && !plan_tables_fit(o->tables, m))
    return err_set(e, ERR_INVALID,
                   "plan: the planning tables were prepared for another model than %s",
                   m->name);
  return ERR_OK;
}

/* Fills the default segments with rows split by `weight`. */
static err_code plan_weighted(const model *m, const plan_device *devs,
                              int n_devs, const plan_options *o,
                              const double *weight, const char *name, plan *p,
                              err *e) {
  err_code rc = plan_check_inputs(m, devs, n_devs, o, e);
  if (rc != ERR_OK) return rc;
  memset(p, 0, sizeof *p);
  snprintf(p->planner, sizeof p->planner, "%s", name);
  p->head_first = plan_head_first(m);
  int *ends = malloc((size_t)(m->n_layers + 1) * sizeof *ends);
  if (!ends) return err_set(e, ERR_NOMEM, "plan: out of memory");
  int n = plan_default_segments(m, p->head_first, ends);
  p->segments = calloc((size_t)n, sizeof *p->segments);
  if (!p->segments) {
    free(ends);
    return err_set(e, ERR_NOMEM, "plan: out of memory");
  }
  p->n_segments = n;
  for (int si = 0, first = 0; si < n; first = ends[si++]) {
    plan_segment *s = &p->segments[si];
    s->first = first;
    s->end = ends[si];
    int h = m->layers[s->end - 1].out.h, rows[PLAN_MAX_DEVICES];
    plan_split_rows(h, weight, n_devs, rows);
    int lo = 0;
    for (int d = 0; d < n_devs; d++) {
      if (rows[d] == 0) continue;
      plan_part *pt = &s->parts[s->n_parts++];
      pt->device = d;
      pt->out.lo = lo;
      pt->out.hi = lo + rows[d];
      lo += rows[d];
    }
  }
  free(ends);
  rc = plan_evaluate(m, devs, n_devs, o, p, e);
  if (rc != ERR_OK) plan_free(p);
  return rc;
}

err_code plan_proportional(const model *m, const plan_device *devs, int n_devs,
                           const plan_options *o, plan *p, err *e) {
  double w[PLAN_MAX_DEVICES];
  for (int i = 0; i < n_devs && i < PLAN_MAX_DEVICES; i++)
    w[i] = devs[i].ms_per_gflop > 0 ? 1.0 / devs[i].ms_per_gflop : 0;
  return plan_weighted(m, devs, n_devs, o, w, "proportional", p, e);
}

err_code plan_equal(const model *m, const plan_device *devs, int n_devs,
                    const plan_options *o, plan *p, err *e) {
  double w[PLAN_MAX_DEVICES];
  for (int i = 0; i < PLAN_MAX_DEVICES; i++) w[i] = 1;
  return plan_weighted(m, devs, n_devs, o, w, "equal", p, e);
}

/* The default first: callers list them in this order. */
static const struct {
  const char *name;
  plan_fn fn;
} planners[] = {
    {"exact", plan_exact},
    {"heuristic", plan_heuristic},
    {"proportional", plan_proportional},
    {"equal", plan_equal},
};

static const char *const names[] = {"exact", "heuristic", "proportional", "equal", NULL};

plan_fn plan_find(const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < sizeof planners / sizeof planners[0]; i++)
    if (strcmp(planners[i].name, name) == 0) return planners[i].fn;
  return NULL;
}

const char *const *plan_names(void) { return names; }

const char *plan_default_name(void) { return names[0]; }

int plan_round_trips(const plan *p) {
  int n = 0;
  for (int s = 0; p && s < p->n_segments; s++)
    n += 1 + plan_fe_trips(p->segments[s].fe_exchanges, p->segments[s].n_parts);
  return n;
}

/* dispatch.c — one distributed inference on the scheduler's side (contract
 * in dispatch.h): the jobs a plan makes, relaying rows, combining
 * feature-enhancement sums, gathering the output, running the head.
 *
 * Relies on model_strip_rows() for each job's input rows (the agents
 * compute the same intervals and refuse a job that disagrees) and on
 * model_fe_owned_rows() to check that the FE sums of a segment cover each FE
 * input exactly once. Everything an agent sends is compared with what the
 * plan asked of it before it is used: a mismatch fails the request rather
 * than corrupting the logits.
 */
#include "scheduler/dispatch.h"
#include "scheduler/dispatch_internal.h"

#include <grpc/status.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/fe_moments.h"
#include "runtime/rowcodec.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int rows_count(model_rows r) { return r.hi > r.lo ? r.hi - r.lo : 0; }

static model_rows rows_meet(model_rows a, model_rows b) {
  model_rows r = {a.lo > b.lo ? a.lo : b.lo, a.hi < b.hi ? a.hi : b.hi};
  if (r.lo >= r.hi) r.lo = r.hi = 0;
  return r;
}

/* ---- outbox --------------------------------------------------------------- */

void dispatch_outbox_clear(dispatch_outbox *o) {
  if (!o) return;
  for (int i = 0; i < o->n; i++) free(o->msgs[i].data);
  o->n = 0;
}

void dispatch_outbox_free(dispatch_outbox *o) {
  if (!o) return;
  dispatch_outbox_clear(o);
  free(o->msgs);
  o->msgs = NULL;
  o->cap = 0;
}

err_code dispatch__outbox_add(dispatch_outbox *o, int device, uint8_t *data, size_t len,
                              err *e) {
  if (o->n == o->cap) {
    int cap = o->cap ? 2 * o->cap : 16;
    dispatch_msg *msgs = realloc(o->msgs, (size_t)cap * sizeof *msgs);
    if (!msgs) {
      free(data);
      return err_set(e, ERR_NOMEM, "dispatch: out of memory for the outbox");
    }
    o->msgs = msgs;
    o->cap = cap;
  }
  o->msgs[o->n++] = (dispatch_msg){.device = device, .data = data, .len = len};
  return ERR_OK;
}

uint8_t *dispatch__pack_in(const Edgedi__V1__ExecuteIn *m, size_t *len) {
  *len = edgedi__v1__execute_in__get_packed_size(m);
  uint8_t *data = malloc(*len ? *len : 1);
  if (data) edgedi__v1__execute_in__pack(m, data);
  return data;
}

/* ---- failing -------------------------------------------------------------- */

static void fail(dispatch *d, uint32_t status, const char *msg, dispatch_outbox *out) {
  if (d->state != DISPATCH_RUNNING) return;
  d->state = DISPATCH_FAILED;
  d->status = status == GRPC_STATUS_OK ? GRPC_STATUS_UNKNOWN : status;
  snprintf(d->message, sizeof d->message, "%s", msg);
  if (d->started && out) dispatch__release(d, out, true);
}

/* An agent said something the plan did not ask for. */
static dispatch_state agent_bug(dispatch *d, dispatch_outbox *out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static dispatch_state agent_bug(dispatch *d, dispatch_outbox *out, const char *fmt, ...) {
  char msg[ERR_MSG_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fail(d, GRPC_STATUS_INTERNAL, msg, out);
  return d->state;
}

void dispatch_fail(dispatch *d, uint32_t status, const char *message,
                   dispatch_outbox *out) {
  if (d) fail(d, status, message ? message : "request failed", out);
}

/* ---- building ------------------------------------------------------------- */

void dispatch_destroy(dispatch *d) {
  if (!d) return;
  if (d->packed)
    for (int i = 0; i < d->n_jobs; i++) free(d->packed[i].data);
  free(d->packed);
  free(d->jobs);
  free(d->segs);
  free(d->wire);
  free(d->relays);
  for (int i = 0; i < d->n_fes; i++) {
    free(d->fes[i].sums);
    free(d->fes[i].got);
    free(d->fes[i].scale);
    free(d->fes[i].waiting);
  }
  for (int i = 0; i < d->n_devices; i++) dispatch_outbox_free(&d->log[i]);
  free(d->fes);
  free(d->gathered);
  free(d->got_row);
  free(d->hr_acc);
  free(d->logits);
  free(d);
}

err_code dispatch_set_head_rows(dispatch *d, const head_rows *h, err *e) {
  if (!d || !h || d->started || d->n_got_rows > 0 || d->hr ||
      head_rows_rest(h) != d->head_first + 2)
    return err_set(e, ERR_INVALID, "dispatch: head rows for another head, or too late");
  d->hr_acc = calloc((size_t)head_rows_outputs(h), sizeof *d->hr_acc);
  if (!d->hr_acc) return err_set(e, ERR_NOMEM, "dispatch: out of memory");
  d->hr = h;
  return ERR_OK;
}

static const plan_part *part_of(const plan_segment *s, int device) {
  for (int k = 0; k < s->n_parts; k++)
    if (s->parts[k].device == device) return &s->parts[k];
  return NULL;
}

/* The plan must cut [0, head_first) into ranges between cuts, each split
 * into contiguous strips, top to bottom, one per distinct device. */
static err_code check_plan(const model *m, const plan *p, int n_devices, err *e) {
  if (!p || p->n_segments < 1 || !p->segments)
    return err_set(e, ERR_INVALID, "dispatch: the plan has no segments");
  if (p->head_first < 1 || p->head_first > m->n_layers || !model_is_cut(m, p->head_first))
    return err_set(e, ERR_RANGE, "dispatch: the plan's head starts at layer %d, not a cut of %s",
                   p->head_first, m->name);
  int next = 0;
  for (int si = 0; si < p->n_segments; si++) {
    const plan_segment *s = &p->segments[si];
    if (s->first != next)
      return err_set(e, ERR_RANGE, "dispatch: segment %d starts at layer %d, not %d", si,
                     s->first, next);
    err_code rc = model_check_range(m, s->first, s->end, e);
    if (rc != ERR_OK) return err_wrap(e, "dispatch: segment %d", si);
    next = s->end;
    if (s->n_parts < 1 || s->n_parts > PLAN_MAX_DEVICES)
      return err_set(e, ERR_INVALID, "dispatch: segment %d has %d parts", si, s->n_parts);
    int row = 0;
    for (int k = 0; k < s->n_parts; k++) {
      const plan_part *pt = &s->parts[k];
      if (pt->device < 0 || pt->device >= n_devices)
        return err_set(e, ERR_RANGE, "dispatch: segment %d names device %d of %d", si,
                       pt->device, n_devices);
      if (part_of(s, pt->device) != pt)
        return err_set(e, ERR_INVALID, "dispatch: segment %d gives device %d two strips", si,
                       pt->device);
      if (pt->out.lo != row || pt->out.hi <= pt->out.lo)
        return err_set(e, ERR_RANGE,
                       "dispatch: segment %d, part %d has rows [%d, %d), expected a "
                       "non-empty strip from row %d",
                       si, k, pt->out.lo, pt->out.hi, row);
      row = pt->out.hi;
    }
    if (row != m->layers[s->end - 1].out.h)
      return err_set(e, ERR_RANGE, "dispatch: segment %d covers %d of %d rows", si, row,
                     m->layers[s->end - 1].out.h);
  }
  if (next != p->head_first)
    return err_set(e, ERR_RANGE, "dispatch: segments end at layer %d, the head starts at %d",
                   next, p->head_first);
  return ERR_OK;
}

/* The FE layers of every segment, with room for each part's sums. */
static err_code make_fes(dispatch *d, err *e) {
  const model *m = d->m;
  for (int si = 0; si < d->n_segments; si++)
    for (int l = d->segs[si].first; l < d->segs[si].end; l++) d->n_fes += m->layers[l].op == MODEL_OP_FE;
  d->fes = calloc((size_t)d->n_fes + 1, sizeof *d->fes);
  if (!d->fes) return err_set(e, ERR_NOMEM, "dispatch: out of memory");
  int i = 0;
  for (int si = 0; si < d->n_segments; si++)
    for (int l = d->segs[si].first; l < d->segs[si].end; l++) {
      if (m->layers[l].op != MODEL_OP_FE) continue;
      dispatch_fe *f = &d->fes[i++];
      bool alone = d->segs[si].n_parts == 1; /* it sends none: TileJob.fe_local */
      f->layer = l;
      f->segment = si;
      f->channels = model_tensor_shape(m, m->layers[l].inputs[0]).c;
      f->chain = d->fe_late || alone ? 0 : fe_moments_chain(m, l, d->segs[si].first);
      f->n_sums = fe_moments_size(m, l, f->chain);
      f->sums = calloc((size_t)d->segs[si].n_parts * f->n_sums, sizeof *f->sums);
      f->got = calloc((size_t)d->segs[si].n_parts, sizeof *f->got);
      f->waiting = malloc((size_t)(d->segs[si].n_parts + DISPATCH_MAX_STANDINS) *
                          sizeof *f->waiting);
      if (!f->sums || !f->got || !f->waiting)
        return err_set(e, ERR_NOMEM, "dispatch: out of memory");
    }
  return ERR_OK;
}

/* Packs the job of part k of segment si; records its exports as relays. */
static err_code make_job(dispatch *d, int si, int k, const preprocess_image *img,
                         const char *digest, err *e) {
  const plan_segment *s = &d->segs[si], *nx = si + 1 < d->n_segments ? &d->segs[si + 1] : NULL;
  const plan_part *pt = &s->parts[k];
  int dev = pt->device;
  Edgedi__V1__RowRange out_rows = EDGEDI__V1__ROW_RANGE__INIT, in_rows = EDGEDI__V1__ROW_RANGE__INIT;
  out_rows.lo = (uint32_t)pt->out.lo;
  out_rows.hi = (uint32_t)pt->out.hi;
  in_rows.lo = (uint32_t)pt->in.lo;
  in_rows.hi = (uint32_t)pt->in.hi;
  Edgedi__V1__TileJob job = EDGEDI__V1__TILE_JOB__INIT;
  job.request_id = d->id;
  job.segment = (uint32_t)si;
  job.model_digest = (char *)digest;
  job.first_layer = (uint32_t)s->first;
  job.end_layer = (uint32_t)s->end;
  job.out_rows = &out_rows;
  job.in_rows = &in_rows;
  Edgedi__V1__RowExport xs[PLAN_MAX_DEVICES], *xp[PLAN_MAX_DEVICES];
  Edgedi__V1__RowRange xr[PLAN_MAX_DEVICES];
  for (int j = 0; nx && j < nx->n_parts; j++) {
    const plan_part *np = &nx->parts[j];
    model_rows r = rows_meet(np->in, pt->out);
    if (rows_count(r) == 0) continue;
    if (np->device == dev) {
      job.keep_output = true; /* its own rows stay where they are */
      continue;
    }
    size_t n = job.n_exports++;
    xr[n] = (Edgedi__V1__RowRange)EDGEDI__V1__ROW_RANGE__INIT;
    xr[n].lo = (uint32_t)r.lo;
    xr[n].hi = (uint32_t)r.hi;
    xs[n] = (Edgedi__V1__RowExport)EDGEDI__V1__ROW_EXPORT__INIT;
    xs[n].dest = np->device;
    xs[n].rows = &xr[n];
    xp[n] = &xs[n];
    d->relays[d->n_relays++] = (dispatch_relay){
        .segment = (uint32_t)si, .from = dev, .dest = np->device, .rows = r};
  }
  job.exports = xp;
  job.send_output = nx == NULL;
  job.fe_local = s->n_parts == 1; /* it sends no FE sums: none are waited for */
  job.fe_late = d->fe_late;
  job.last_job = true;
  for (int sj = si + 1; sj < d->n_segments; sj++)
    if (part_of(&d->segs[sj], dev)) job.last_job = false;
  Edgedi__V1__Image im = EDGEDI__V1__IMAGE__INIT;
  if (s->first == 0) {
    size_t sb = preprocess_sample_bytes(img->format);
    size_t row_bytes = (size_t)img->width * (size_t)img->channels * sb;
    ProtobufCBinaryData rows = {
        .len = (size_t)rows_count(pt->in) * row_bytes,
        .data = (uint8_t *)img->data + (size_t)pt->in.lo * row_bytes};
    im.height = (uint32_t)rows_count(pt->in);
    im.width = (uint32_t)img->width;
    im.channels = (uint32_t)img->channels;
    im.row_lo = (uint32_t)pt->in.lo;
    im.full_height = (uint32_t)img->full_height;
    if (img->format == PREPROCESS_U8) im.u8 = rows;
    else im.f32 = rows;
    job.image = &im;
    d->bytes_image += rows.len;
    d->devices[dev].bytes_in += rows.len;
  }
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_JOB;
  in.job = &job;
  dispatch_msg *pm = &d->packed[d->n_jobs];
  pm->device = dev;
  pm->data = dispatch__pack_in(&in, &pm->len);
  if (!pm->data) return err_set(e, ERR_NOMEM, "dispatch: out of memory packing a job");
  d->jobs[d->n_jobs++] = (dispatch_job){.device = dev, .segment = (uint32_t)si};
  d->devices[dev].jobs++;
  d->devices[dev].predicted_ms += pt->compute_ms + pt->transfer_ms;
  if (!nx) d->devices[dev].rows = rows_count(pt->out);
  return ERR_OK;
}

/* Input rows of every part, and what gathering whole maps would move. */
static err_code strip_inputs(dispatch *d, const preprocess_image *img, err *e) {
  const model *m = d->m;
  model_rows *rows = malloc((size_t)m->n_layers * sizeof *rows);
  if (!rows) return err_set(e, ERR_NOMEM, "dispatch: out of memory");
  err_code rc = ERR_OK;
  for (int si = 0; si < d->n_segments && rc == ERR_OK; si++) {
    plan_segment *s = &d->segs[si];
    model_shape is = model_tensor_shape(m, s->first - 1), os = m->layers[s->end - 1].out;
    uint64_t in_row = s->first == 0 ? (uint64_t)img->width * (uint64_t)img->channels *
                                          preprocess_sample_bytes(img->format)
                                    : (uint64_t)is.w * (uint64_t)is.c * sizeof(float);
    uint64_t out_row = (uint64_t)os.w * (uint64_t)os.c * sizeof(float);
    for (int k = 0; k < s->n_parts && rc == ERR_OK; k++) {
      plan_part *pt = &s->parts[k];
      rc = model_strip_rows(m, s->first, s->end, pt->out, rows, &pt->in, e);
      d->bytes_gather_all += (uint64_t)rows_count(pt->in) * in_row +
                             (uint64_t)rows_count(pt->out) * out_row;
    }
  }
  free(rows);
  return rc;
}

err_code dispatch_create(const model *m, const char *digest, const plan *p,
                         int n_devices, const preprocess_image *img,
                         uint64_t request_id, xexec *head, dispatch **out,
                         err *e) {
  if (!out) return err_set(e, ERR_INVALID, "dispatch_create without output");
  *out = NULL;
  if (!m || !m->finalized) return err_set(e, ERR_INVALID, "dispatch: model is not finalized");
  if (!digest || !*digest) return err_set(e, ERR_INVALID, "dispatch: no model digest");
  if (n_devices < 1 || n_devices > PLAN_MAX_DEVICES)
    return err_set(e, ERR_INVALID, "dispatch: %d devices, 1 to %d", n_devices, PLAN_MAX_DEVICES);
  err_code rc = check_plan(m, p, n_devices, e);
  if (rc != ERR_OK) return rc;
  if (!img || img->row_lo != 0 || img->rows != img->full_height)
    return err_set(e, ERR_INVALID, "dispatch: the image must be the whole picture");
  rc = preprocess_check(img, m->input, e);
  if (rc != ERR_OK) return err_wrap(e, "dispatch");
  const model *hm = xexec_model(head);
  if (p->head_first < m->n_layers &&
      (!hm || hm->n_layers != m->n_layers ||
       memcmp(&hm->layers[m->n_layers - 1].out, &m->layers[m->n_layers - 1].out,
              sizeof(model_shape)) != 0))
    return err_set(e, ERR_INVALID, "dispatch: the head needs an executor of %s", m->name);
  dispatch *d = calloc(1, sizeof *d);
  if (!d) return err_set(e, ERR_NOMEM, "dispatch: out of memory");
  d->m = m;
  d->head = head;
  d->id = request_id;
  d->n_devices = n_devices;
  d->head_first = p->head_first;
  d->fe_late = p->fe_late;
  d->n_segments = p->n_segments;
  d->state = DISPATCH_RUNNING;
  d->status = GRPC_STATUS_OK;
  d->segs = malloc((size_t)p->n_segments * sizeof *d->segs);
  d->wire = calloc((size_t)p->n_segments, sizeof *d->wire);
  int max_jobs = 0, max_relays = 0;
  for (int si = 0; si < p->n_segments; si++) {
    max_jobs += p->segments[si].n_parts;
    if (si + 1 < p->n_segments) max_relays += p->segments[si].n_parts * p->segments[si + 1].n_parts;
  }
  d->packed = calloc((size_t)max_jobs, sizeof *d->packed);
  d->jobs = calloc((size_t)max_jobs, sizeof *d->jobs);
  d->relays = calloc((size_t)max_relays + 1, sizeof *d->relays);
  d->last = m->layers[p->head_first - 1].out;
  size_t last_elems = model_shape_elems(d->last);
  d->gathered = malloc(last_elems * sizeof *d->gathered);
  d->got_row = calloc((size_t)d->last.h, sizeof *d->got_row);
  if (!d->segs || !d->wire || !d->packed || !d->jobs || !d->relays || !d->gathered || !d->got_row) {
    dispatch_destroy(d);
    return err_set(e, ERR_NOMEM, "dispatch: out of memory");
  }
  memcpy(d->segs, p->segments, (size_t)p->n_segments * sizeof *d->segs);
  rc = strip_inputs(d, img, e);
  if (rc == ERR_OK) rc = make_fes(d, e);
  for (int si = 0; si < d->n_segments && rc == ERR_OK; si++)
    for (int k = 0; k < d->segs[si].n_parts && rc == ERR_OK; k++)
      rc = make_job(d, si, k, img, digest, e);
  if (rc != ERR_OK) {
    dispatch_destroy(d);
    return rc;
  }
  *out = d;
  return ERR_OK;
}

err_code dispatch_start(dispatch *d, dispatch_outbox *out, err *e) {
  if (!d || !out) return err_set(e, ERR_INVALID, "dispatch_start needs a dispatch and an outbox");
  if (d->started) return err_set(e, ERR_INVALID, "dispatch: request %llu already started",
                                 (unsigned long long)d->id);
  d->started = true;
  d->t_start_ms = now_ms();
  for (int i = 0; i < d->n_jobs; i++) {
    dispatch_msg *pm = &d->packed[i];
    err_code rc = dispatch__log(d, pm->device, pm->data, pm->len, e);
    if (rc == ERR_OK) rc = dispatch__outbox_add(out, pm->device, pm->data, pm->len, e);
    else free(pm->data);
    pm->data = NULL; /* the outbox owns it now, or it is freed */
    if (rc != ERR_OK) {
      fail(d, GRPC_STATUS_RESOURCE_EXHAUSTED, e ? e->msg : "out of memory", out);
      return rc;
    }
  }
  free(d->packed);
  d->packed = NULL;
  return ERR_OK;
}

/* ---- what the agents send --------------------------------------------------- */

static int part_index(const plan_segment *s, int device) {
  for (int k = 0; k < s->n_parts; k++)
    if (s->parts[k].device == device) return k;
  return -1;
}

/* The head on the gathered output: logits and the top class. */
/* t0: when the last output rows were in (head_ms counts from there). */
static void run_head(dispatch *d, dispatch_outbox *out, double t0) {
  const model *m = d->m;
  bool whole = d->head_first == m->n_layers;
  model_shape ls = m->layers[m->n_layers - 1].out;
  size_t n = model_shape_elems(whole ? d->last : ls);
  d->logits = malloc(n * sizeof *d->logits);
  if (!d->logits) {
    fail(d, GRPC_STATUS_RESOURCE_EXHAUSTED, "dispatch: out of memory for the logits", out);
    return;
  }
  err e = {0};
  if (whole) {
    memcpy(d->logits, d->gathered, n * sizeof *d->logits);
  } else if (d->hr && head_rows_rest(d->hr) == m->n_layers) {
    head_rows_finish(d->hr, d->hr_acc, d->logits);
  } else {
    xexec_strip *s = NULL;
    model_rows all = {0, ls.h};
    /* With the first FC summed by rows, the executor runs what follows it. */
    int first = d->hr ? head_rows_rest(d->hr) : d->head_first;
    model_shape is = model_tensor_shape(m, first - 1);
    /* The head's one strip stays prepared from request to request (the
     * caller holds the head's lock). */
    err_code rc = xexec_strip_kept(d->head, first, m->n_layers, all, &s, &e);
    if (rc == ERR_OK) {
      model_rows in = xexec_strip_in_rows(s);
      if (in.lo != 0 || in.hi != is.h)
        rc = err_set(&e, ERR_INTERNAL, "the head reads rows [%d, %d) of %d", in.lo, in.hi,
                     is.h);
    }
    if (rc == ERR_OK) {
      if (d->hr) head_rows_finish(d->hr, d->hr_acc, xexec_strip_input(s));
      else memcpy(xexec_strip_input(s), d->gathered, model_shape_elems(d->last) * sizeof(float));
      rc = xexec_strip_run_local(s, &e);
    }
    if (rc == ERR_OK) memcpy(d->logits, xexec_strip_output(s), n * sizeof *d->logits);
    if (rc != ERR_OK) {
      char msg[ERR_MSG_BYTES];
      snprintf(msg, sizeof msg, "dispatch: head: %.400s", e.msg);
      fail(d, GRPC_STATUS_INTERNAL, msg, out);
      return;
    }
  }
  /* Inputs and weights are finite (preprocess.h, onnx_import.h): a logit
   * that is not came from rows an agent got wrong, and no answer is better
   * than that one. */
  for (size_t i = 0; i < n; i++)
    if (!isfinite(d->logits[i])) {
      char msg[ERR_MSG_BYTES];
      snprintf(msg, sizeof msg,
               "dispatch: logit %zu is %s, not a finite number: rows an agent sent held "
               "values that are not numbers", i, isnan(d->logits[i]) ? "NaN" : "infinite");
      fail(d, GRPC_STATUS_INTERNAL, msg, out);
      return;
    }
  d->n_logits = (int)n;
  d->top_class = 0;
  for (int i = 1; i < d->n_logits; i++)
    if (d->logits[i] > d->logits[d->top_class]) d->top_class = i;
  d->head_ms = now_ms() - t0;
}

/* Rows from `from`, doing device `role`'s work. With `doubled` (the role
 * has a stand-in) rows already relayed or gathered from the other copy are
 * dropped: the first of two copies wins. */
static dispatch_state on_rows(dispatch *d, int role, bool doubled, const Edgedi__V1__RowsData *rd,
                              dispatch_outbox *out) {
  int from = role;
  if (rd->segment >= (uint32_t)d->n_segments)
    return agent_bug(d, out, "device %d sent rows of segment %u of %d", from, rd->segment,
                     d->n_segments);
  const plan_segment *s = &d->segs[rd->segment];
  const plan_part *pt = part_of(s, from);
  if (!pt)
    return agent_bug(d, out, "device %d sent rows of segment %u, which it has no part in",
                     from, rd->segment);
  model_shape os = d->m->layers[s->end - 1].out;
  if (rd->rows == 0 || rd->row_lo < (uint32_t)pt->out.lo || rd->row_lo >= (uint32_t)pt->out.hi ||
      rd->rows > (uint32_t)pt->out.hi - rd->row_lo)
    return agent_bug(d, out, "device %d sent rows [%u, +%u) of segment %u; its strip is [%d, %d)",
                     from, rd->row_lo, rd->rows, rd->segment, pt->out.lo, pt->out.hi);
  model_rows r = {(int)rd->row_lo, (int)(rd->row_lo + rd->rows)};
  size_t n = (size_t)rows_count(r) * (size_t)os.w * (size_t)os.c;
  if (rd->width != (uint32_t)os.w || rd->channels != (uint32_t)os.c)
    return agent_bug(d, out, "device %d sent rows of segment %u as %u x %u; the tensor is "
                     "%d x %d",
                     from, rd->segment, rd->width, rd->channels, os.w, os.c);
  err ce = {0};
  if (rowcodec_check((int)rd->encoding, rd->data.data, rd->data.len, n, &ce) != ERR_OK)
    return agent_bug(d, out, "device %d sent rows of segment %u: %s", from, rd->segment,
                     ce.msg);
  size_t len = rd->data.len; /* as it crosses the links */
  if (rd->dest >= 0) {
    dispatch_relay *rel = NULL;
    for (int i = 0; i < d->n_relays && !rel; i++) {
      dispatch_relay *x = &d->relays[i];
      if (x->segment == rd->segment && x->from == from && x->dest == rd->dest &&
          x->rows.lo == r.lo && x->rows.hi == r.hi && (!x->done || doubled))
        rel = x;
    }
    if (!rel)
      return agent_bug(d, out, "device %d sent rows [%d, %d) of segment %u for device %d, "
                       "which were not asked for",
                       from, r.lo, r.hi, rd->segment, rd->dest);
    if (rel->done) return d->state; /* the other copy's came first */
    rel->done = true;
    d->wire[rd->segment].raw += n * sizeof(float);
    d->wire[rd->segment].sent += len;
    Edgedi__V1__RowsData fwd = *rd; /* as it came, under each recipient's id */
    Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
    in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_ROWS;
    in.rows = &fwd;
    if (dispatch__send(d, out, rel->dest, &in, true, NULL) != ERR_OK) {
      fail(d, GRPC_STATUS_RESOURCE_EXHAUSTED, "dispatch: out of memory relaying rows", out);
      return d->state;
    }
    d->bytes_relayed += len;
    d->floats_relayed += n * sizeof(float);
    d->devices[from].bytes_out += len;
    d->devices[rel->dest].bytes_in += len;
    return d->state;
  }
  if (rd->dest != -1 || rd->segment + 1 != (uint32_t)d->n_segments)
    return agent_bug(d, out, "device %d sent rows of segment %u to %d, not the scheduler's "
                     "last segment",
                     from, rd->segment, rd->dest);
  int got = 0;
  for (int y = r.lo; y < r.hi; y++) got += d->got_row[y];
  if (doubled && got == rows_count(r)) return d->state; /* the other copy's came first */
  if (got) return agent_bug(d, out, "device %d sent output rows [%d, %d) twice", from, r.lo, r.hi);
  d->wire[rd->segment].raw += n * sizeof(float);
  d->wire[rd->segment].sent += len;
  size_t row_floats = (size_t)os.w * (size_t)os.c;
  if (rowcodec_unpack((int)rd->encoding, rd->data.data, len,
                      d->gathered + (size_t)r.lo * row_floats, n, &ce) != ERR_OK)
    return agent_bug(d, out, "device %d sent output rows: %s", from, ce.msg); /* checked above */
  memset(d->got_row + r.lo, 1, (size_t)rows_count(r));
  double t_rows = now_ms();
  if (d->hr) /* while the other strips are still on their way */
    head_rows_add(d->hr, d->gathered + (size_t)r.lo * row_floats, r.lo, r.hi, d->hr_acc);
  d->n_got_rows += rows_count(r);
  d->bytes_output += len;
  d->floats_output += n * sizeof(float);
  d->devices[from].bytes_out += len;
  if (d->n_got_rows == d->last.h) run_head(d, out, t_rows);
  return d->state;
}

/* The scale of f to sender `to` (a device or a tag). */
static err_code send_scale(dispatch *d, const dispatch_fe *f, int to, dispatch_outbox *out,
                           err *e) {
  Edgedi__V1__FeScale sc = EDGEDI__V1__FE_SCALE__INIT;
  sc.segment = (uint32_t)f->segment;
  sc.layer = (uint32_t)f->layer;
  sc.n_scale = (size_t)f->channels;
  sc.scale = f->scale;
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_FE_SCALE;
  in.fe_scale = &sc;
  return dispatch__send(d, out, to, &in, false, e);
}

/* Sums from `from` (a device or a tag) doing device `role`'s work. Each
 * part's first sums count; every sender gets the scale once it is known
 * (a stand-in that reaches an FE later gets it at once). */
static dispatch_state on_fe_sums(dispatch *d, int from, int role, bool doubled,
                                 const Edgedi__V1__FeSums *fs, dispatch_outbox *out) {
  dispatch_fe *f = NULL;
  for (int i = 0; i < d->n_fes && !f; i++)
    if ((uint32_t)d->fes[i].layer == fs->layer && (uint32_t)d->fes[i].segment == fs->segment)
      f = &d->fes[i];
  if (!f)
    return agent_bug(d, out, "device %d sent sums of layer %u in segment %u, not an FE layer "
                     "of it",
                     role, fs->layer, fs->segment);
  const plan_segment *s = &d->segs[f->segment];
  int k = part_index(s, role);
  if (k < 0 || (f->got[k] && !doubled) || fs->chain != (uint32_t)f->chain ||
      fs->n_sums != f->n_sums || !fs->owned)
    return agent_bug(d, out, "device %d sent unexpected sums (%zu over a chain of %u, not %zu "
                     "over %d) for layer %d",
                     role, fs->n_sums, fs->chain, f->n_sums, f->chain, f->layer);
  model_rows owned;
  err e = {0};
  if (model_fe_owned_rows(d->m, s->first, s->end, s->parts[k].out, f->layer, &owned, &e) !=
          ERR_OK ||
      (rows_count(owned) > 0 &&
       (fs->owned->lo != (uint32_t)owned.lo || fs->owned->hi != (uint32_t)owned.hi)))
    return agent_bug(d, out, "device %d summed rows [%u, %u) of layer %d's input, not its own "
                     "[%d, %d)",
                     role, fs->owned->lo, fs->owned->hi, f->layer, owned.lo, owned.hi);
  for (int j = 0; j < f->n_waiting; j++)
    if (f->waiting[j] == from)
      return agent_bug(d, out, "device %d sent the sums of layer %d twice", from, f->layer);
  err_code rc = ERR_OK;
  if (f->scale) { /* a late copy: the scale is known */
    rc = send_scale(d, f, from, out, &e);
  } else {
    f->waiting[f->n_waiting++] = from; /* room for every part and stand-in */
    if (!f->got[k]) {
      memcpy(f->sums + (size_t)k * f->n_sums, fs->sums, f->n_sums * sizeof(double));
      f->got[k] = true;
      f->n_got++;
    }
    if (f->n_got < s->n_parts) return d->state;
    double *total = calloc(f->n_sums, sizeof *total);
    f->scale = malloc((size_t)f->channels * sizeof *f->scale);
    rc = total && f->scale ? ERR_OK : err_set(&e, ERR_NOMEM, "out of memory");
    for (int j = 0; rc == ERR_OK && j < s->n_parts; j++)
      for (size_t c = 0; c < f->n_sums; c++) total[c] += f->sums[(size_t)j * f->n_sums + c];
    if (rc == ERR_OK) rc = fe_moments_scale(d->m, f->layer, f->chain, total, f->scale, &e);
    for (int j = 0; rc == ERR_OK && j < f->n_waiting; j++)
      rc = send_scale(d, f, f->waiting[j], out, &e);
    free(total);
  }
  if (rc != ERR_OK) {
    char msg[ERR_MSG_BYTES];
    snprintf(msg, sizeof msg, "dispatch: feature enhancement of layer %d: %.400s", f->layer,
             e.msg);
    fail(d, rc == ERR_NOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL, msg, out);
  }
  return d->state;
}

static dispatch_state on_result(dispatch *d, int role, bool doubled,
                                const Edgedi__V1__TileResult *tr, dispatch_outbox *out) {
  dispatch_job *job = NULL, *done = NULL;
  for (int i = 0; i < d->n_jobs && !job; i++)
    if (d->jobs[i].device == role && d->jobs[i].segment == tr->segment) {
      if (!d->jobs[i].reported) job = &d->jobs[i];
      else done = &d->jobs[i];
    }
  if (!job && doubled && done) return d->state; /* the other copy's came first */
  if (!job)
    return agent_bug(d, out, "device %d reported a result for segment %u it was not given",
                     role, tr->segment);
  job->reported = true;
  dispatch_device *dv = &d->devices[role];
  dv->results++;
  dv->compute_ms += tr->compute_ms;
  dv->cpu_ms += tr->cpu_ms;
  dv->wait_ms += tr->wait_ms;
  dv->gflop += tr->gflop;
  dv->busy_until_ms = now_ms() - d->t_start_ms;
  return d->state;
}

dispatch_state dispatch_on_message(dispatch *d, int from,
                                   const Edgedi__V1__ExecuteOut *msg,
                                   dispatch_outbox *out) {
  if (!d) return DISPATCH_FAILED;
  if (d->state != DISPATCH_RUNNING || !msg) return d->state;
  int role = dispatch__role_of(d, from);
  if (!d->started || role < 0)
    return agent_bug(d, out, "a message from device %d of %d before or outside the request",
                     from, d->n_devices);
  bool doubled = dispatch__doubled(d, role);
  uint64_t id, want = from < d->n_devices ? d->id : d->standins[from - d->n_devices].id;
  if (dispatch_request_of(msg, &id) && id != want)
    return agent_bug(d, out, "a message of request %llu routed to request %llu",
                     (unsigned long long)id, (unsigned long long)want);
  switch (msg->msg_case) {
    case EDGEDI__V1__EXECUTE_OUT__MSG_ROWS:
      on_rows(d, role, doubled, msg->rows, out);
      break;
    case EDGEDI__V1__EXECUTE_OUT__MSG_FE_SUMS:
      on_fe_sums(d, from, role, doubled, msg->fe_sums, out);
      break;
    case EDGEDI__V1__EXECUTE_OUT__MSG_RESULT:
      on_result(d, role, doubled, msg->result, out);
      break;
    case EDGEDI__V1__EXECUTE_OUT__MSG_ERROR: {
      char text[ERR_MSG_BYTES];
      snprintf(text, sizeof text, "device %d, segment %u: %.400s", from, msg->error->segment,
               msg->error->message ? msg->error->message : "");
      fail(d, msg->error->code, text, out);
      break;
    }
    default: /* Hello, Pong: the stream's business */
      break;
  }
  if (d->state == DISPATCH_RUNNING && d->logits) {
    bool all = true;
    for (int i = 0; i < d->n_jobs; i++) all &= d->jobs[i].reported;
    if (all) {
      d->state = DISPATCH_DONE;
      /* Whichever copy is still at work stops. */
      if (d->n_standins) dispatch__release(d, out, false);
    }
  }
  return d->state;
}

void dispatch_get_result(const dispatch *d, dispatch_result *r) {
  if (!r) return;
  memset(r, 0, sizeof *r);
  r->message = "";
  if (!d) {
    r->state = DISPATCH_FAILED;
    return;
  }
  r->state = d->state;
  r->status = d->status;
  r->message = d->message;
  r->logits = d->logits;
  r->n_logits = d->n_logits;
  r->top_class = d->top_class;
  r->head_ms = d->head_ms;
  r->bytes_image = d->bytes_image;
  r->bytes_relayed = d->bytes_relayed;
  r->bytes_output = d->bytes_output;
  r->bytes_moved = d->bytes_image + 2 * d->bytes_relayed + d->bytes_output + d->bytes_standins;
  r->bytes_gather_all = d->bytes_gather_all;
  r->bytes_moved_raw =
      d->bytes_image + 2 * d->floats_relayed + d->floats_output + d->bytes_standins;
  r->n_devices = d->n_devices;
  r->devices = d->devices;
  r->n_segments = d->n_segments;
  r->wire = d->wire;
}

bool dispatch_request_of(const Edgedi__V1__ExecuteOut *msg, uint64_t *request_id) {
  uint64_t id = 0;
  if (!msg) return false;
  switch (msg->msg_case) {
    case EDGEDI__V1__EXECUTE_OUT__MSG_RESULT: id = msg->result->request_id; break;
    case EDGEDI__V1__EXECUTE_OUT__MSG_ROWS: id = msg->rows->request_id; break;
    case EDGEDI__V1__EXECUTE_OUT__MSG_FE_SUMS: id = msg->fe_sums->request_id; break;
    case EDGEDI__V1__EXECUTE_OUT__MSG_ERROR: id = msg->error->request_id; break;
    default: return false;
  }
  if (request_id) *request_id = id;
  return true;
}

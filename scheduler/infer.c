/* infer.c — running one inference over the cluster (contract in infer.h).
 *
 * A request's life on its own thread: check -> plan -> record begin ->
 * attempts { models on the agents -> dispatcher -> mailbox -> jobs ->
 * events until done or failed (infer_attempt.c) -> record its tiles ->
 * refit its agents -> if an agent was lost or straggled, re-plan without
 * it and go again } -> record the outcome -> reply.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/protocol.h"
#include "scheduler/infer_internal.h"
#include "scheduler/refit_run.h"

/* ---- records and reply -------------------------------------------------------- */

static void record_tiles(infer_req *r) {
  store_tile *v = calloc((size_t)(r->n_tiles ? r->n_tiles : 1), sizeof *v);
  if (!v) return;
  size_t n = 0;
  for (int i = 0; i < r->n_tiles; i++) {
    const infer_tile *t = &r->tiles[i];
    if (!t->reported) continue;
    const plan_segment *s = &r->ip.p.segments[t->segment];
    const plan_part *pt = &s->parts[t->part];
    v[n++] = (store_tile){
        .request_id = r->id,
        .device_id = infer__member_of(r, t->by)->device_id,
        .segment = (uint32_t)t->segment,
        .first_layer = (uint32_t)s->first,
        .end_layer = (uint32_t)s->end,
        .row_lo = (uint32_t)pt->out.lo,
        .row_hi = (uint32_t)pt->out.hi,
        .gflop = t->r.gflop > 0 ? t->r.gflop : pt->gflop,
        .bytes_in = t->r.bytes_in, /* as the agent counted them */
        .bytes_out = t->r.bytes_out,
        .predicted_compute_ms = pt->compute_ms,
        .measured_compute_ms = t->r.compute_ms,
        .predicted_transfer_ms = pt->transfer_ms,
        .measured_transfer_ms = t->transfer_ms,
        .cpu_ms = t->r.cpu_ms,
        .wait_ms = t->r.wait_ms,
        .fresh_strip = t->r.fresh_strip,
        .spans = t->spans,
        .n_spans = t->n_spans};
  }
  /* The reply does not depend on history; a failed write loses only it. */
  if (n) store_tiles_add(r->c->st, v, n, NULL);
  free(v);
}

/* Every agent that reported a tile of the attempt, refitted from its
 * history. Best effort: a refit that fails keeps the model it had. */
static void refit_agents(infer_req *r) {
  double beta = refit_shared_beta(r->c->cl);
  for (int by = 0; by < r->ip.n_members + r->n_standins; by++) {
    bool ran = false;
    for (int i = 0; i < r->n_tiles && !ran; i++) ran = r->tiles[i].by == by && r->tiles[i].reported;
    if (ran)
      refit_device(r->c->st, infer__agent_of(r, by), r->ip.model->name, r->ip.model->m, beta,
                   NULL, NULL);
  }
}

/* Device i's stretches into the reply's buffers at *used (tiles are in
 * segment order): DeviceTiming.spans, span_segments. */
static void fill_spans(const infer_req *r, int i, infer_reply *out, size_t *used,
                       Edgedi__V1__DeviceTiming *t) {
  if (!out->spans) return;
  t->spans = out->spans + 2 * *used;
  t->span_segments = out->span_segments + *used;
  size_t n = 0;
  for (int k = 0; k < r->n_tiles; k++) {
    const infer_tile *tl = &r->tiles[k];
    if (tl->device != i || !tl->reported) continue;
    for (size_t q = 0; q < tl->n_spans; q++, n++) {
      t->spans[2 * n] = (float)tl->spans[2 * q];
      t->spans[2 * n + 1] = (float)tl->spans[2 * q + 1];
      t->span_segments[n] = (uint32_t)tl->segment;
    }
  }
  t->n_spans = 2 * n;
  t->n_span_segments = n;
  *used += n;
}

static err_code fill_reply(infer_req *r, const dispatch_result *res, infer_reply *out,
                           err *e) {
  Edgedi__V1__InferReply *m = &out->msg;
  out->logits = malloc((size_t)(res->n_logits ? res->n_logits : 1) * sizeof *out->logits);
  if (!out->logits) return err_set(e, ERR_NOMEM, "out of memory for the reply");
  memcpy(out->logits, res->logits, (size_t)res->n_logits * sizeof *out->logits);
  m->logits = out->logits;
  m->n_logits = (size_t)res->n_logits;
  m->top_class = (uint32_t)res->top_class;
  m->request_id = (uint64_t)r->id;
  m->plan_id = r->ip.plan_id;
  m->latency_ms = inflight_now_ms() - r->t0_ms;
  m->predicted_ms = r->ip.p.predicted_ms;
  m->bytes_moved = r->bytes_moved; /* every attempt's */
  m->bytes_gather_all = res->bytes_gather_all;
  m->head_ms = res->head_ms;
  snprintf(out->planner, sizeof out->planner, "%s", r->ip.planner);
  m->planner = out->planner;
  size_t pairs = 0, used = 0;
  for (int k = 0; k < r->n_tiles; k++) pairs += r->tiles[k].reported ? r->tiles[k].n_spans : 0;
  if (pairs) { /* without memory the reply goes without them */
    out->spans = malloc(2 * pairs * sizeof *out->spans);
    out->span_segments = malloc(pairs * sizeof *out->span_segments);
    if (!out->spans || !out->span_segments) {
      free(out->spans);
      free(out->span_segments);
      out->spans = NULL;
      out->span_segments = NULL;
    }
  }
  for (int i = 0; i < res->n_devices && i < PLAN_MAX_DEVICES; i++) {
    const dispatch_device *dv = &res->devices[i];
    if (dv->jobs == 0) continue; /* planned out: it took no part */
    Edgedi__V1__DeviceTiming *t = &out->timings[m->n_devices];
    edgedi__v1__device_timing__init(t);
    int by = i; /* named after who ran its work: a stand-in when it ran any */
    for (int k = 0; k < r->n_tiles; k++)
      if (r->tiles[k].device == i && r->tiles[k].reported && r->tiles[k].by != i)
        by = r->tiles[k].by;
    snprintf(out->names[m->n_devices], sizeof out->names[0], "%s", infer__dev_name(r, by));
    t->device = out->names[m->n_devices];
    t->rows = (uint32_t)dv->rows;
    t->compute_ms = dv->compute_ms;
    t->cpu_ms = dv->cpu_ms;
    for (int k = 0; k < r->n_tiles; k++)
      if (r->tiles[k].device == i) t->transfer_ms += r->tiles[k].transfer_ms;
    t->predicted_ms = dv->predicted_ms;
    t->bytes_in = dv->bytes_in;
    t->bytes_out = dv->bytes_out;
    t->busy_until_ms = dv->busy_until_ms;
    fill_spans(r, i, out, &used, t);
    out->timing_ptrs[m->n_devices++] = t;
  }
  m->devices = out->timing_ptrs;
  snprintf(out->recovery, sizeof out->recovery, "%s", r->recovery);
  m->recovery = out->recovery;
  return ERR_OK;
}

void infer_reply_free(infer_reply *r) {
  if (!r) return;
  free(r->logits);
  free(r->spans);
  free(r->span_segments);
  r->logits = NULL;
  r->spans = NULL;
  r->span_segments = NULL;
}

/* Comma-separated device names, for the requests table. */
static void device_list(const infer_plan *ip, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < ip->n_members && used < len; i++) {
    int w = snprintf(buf + used, len - used, "%s%s", i ? "," : "", ip->members[i].dev.name);
    if (w < 0) break;
    used += (size_t)w;
  }
}

/* ---- the request ---------------------------------------------------------------- */

/* Validation, before anything is recorded. */
static grpc_status_code check_request(infer_req *r, const Edgedi__V1__InferRequest *req,
                                      plan_options *po, err *e) {
  if (req->protocol_version && req->protocol_version != EDGEDI_PROTOCOL_VERSION) {
    err_set(e, ERR_UNSUPPORTED,
            "the client speaks EdgeDI protocol version %u; this scheduler speaks version %d",
            req->protocol_version, EDGEDI_PROTOCOL_VERSION);
    return GRPC_STATUS_FAILED_PRECONDITION;
  }
  const models_entry *en = models_find(r->c->ms, req->model ? req->model : "");
  if (en) { /* an unknown model is infer_make_plan's NOT_FOUND */
    err_code rc = infer_image(req->image, &r->img, e);
    if (rc == ERR_OK) rc = preprocess_check(&r->img, en->m->input, e);
    if (rc != ERR_OK) {
      err_wrap(e, "model '%s'", en->name);
      return GRPC_STATUS_INVALID_ARGUMENT;
    }
    po->input_bytes_per_pixel = (int)preprocess_sample_bytes(r->img.format);
    po->input_channels = r->img.channels;
  }
  int ms = req->deadline_ms > (uint32_t)INFER_MAX_DEADLINE_MS ? INFER_MAX_DEADLINE_MS
                                                               : (int)req->deadline_ms;
  if (ms <= 0) ms = r->c->default_deadline_ms > 0 ? r->c->default_deadline_ms
                                                  : INFER_DEFAULT_DEADLINE_MS;
  r->deadline_ms = ms;
  r->deadline_at_ms = r->t0_ms + ms;
  return GRPC_STATUS_OK;
}

/* Remembers the agent that ended the attempt, with a reference. */
static void exclude(infer_req *r) {
  if (r->end_device < 0 || r->end_device >= r->ip.n_members ||
      r->n_excluded >= INFER_MAX_ATTEMPTS)
    return;
  cluster_agent *a = r->ip.members[r->end_device].agent;
  cluster_retain(a);
  r->excluded_slow[r->n_excluded] = r->end == INFER_END_STRAGGLER;
  r->excluded[r->n_excluded++] = a;
}

/* The next attempt's plan over the agents left: without every excluded
 * agent, or when that leaves none, without the lost ones only (a
 * straggler is better than nothing). */
static grpc_status_code replan(infer_req *r, err *e) {
  infer_plan next;
  grpc_status_code st =
      infer_make_plan_excluding(r->c, r->model_name, r->planner_name, &r->po, r->excluded,
                                r->n_excluded, r->deadline_at_ms, &next, e);
  if (st == GRPC_STATUS_UNAVAILABLE) {
    cluster_agent *lost[INFER_MAX_ATTEMPTS];
    int n = 0;
    for (int i = 0; i < r->n_excluded; i++)
      if (!r->excluded_slow[i]) lost[n++] = r->excluded[i];
    if (n < r->n_excluded)
      st = infer_make_plan_excluding(r->c, r->model_name, r->planner_name, &r->po, lost, n,
                                     r->deadline_at_ms, &next, e);
  }
  if (st != GRPC_STATUS_OK) {
    char why[ERR_MSG_BYTES];
    snprintf(why, sizeof why, "%s", e ? e->msg : "");
    if (st == GRPC_STATUS_UNAVAILABLE)
      err_set(e, ERR_UNAVAILABLE, "no agent is up to finish it after %.200s (%.200s)",
              r->losses[0] ? r->losses : "a straggler", why);
    return st;
  }
  infer_plan_free(r->c, &r->ip);
  r->ip = next;
  infer_plan_hold(&r->ip);
  r->attempt++;
  return GRPC_STATUS_OK;
}

/* Whether the request had the cluster to itself: nothing else in flight
 * when it came or when it ended (inflight counts this one), no agent lost
 * or replaced. Only then does its latency say what its plans cost. */
static bool ran_alone(const infer_req *r) {
  return r->alone && inflight_count(r->c->inf) <= 1 && r->n_excluded == 0;
}

/* Whether an agent made a strip for this attempt rather than finding it
 * cached: the attempt then paid for preparing it (a first run costs
 * about twice a later one), which is neither the plan's price nor an
 * exchange's cost. */
static bool ran_fresh_strips(const infer_req *r) {
  for (int i = 0; i < r->n_tiles; i++)
    if (r->tiles[i].reported && r->tiles[i].r.fresh_strip) return true;
  return false;
}

/* A plan that ran to the end has its strips prepared on its agents. It is
 * on time (plan_recall.h) unless the request ran alone (nothing else in
 * flight, no agent lost) and took more than INFER_REMEMBER_TOLERANCE away
 * from its prediction: a model's first requests are planned from the boot
 * profiles, before any refit or learned overhead per round trip, and the
 * recall used to keep such a plan for good after the cost models had
 * moved on (vgg16: a 12-segment plan re-priced at 2110 ms where a fresh
 * one would have cost at most 2065, docs/planners.md). A plan's first
 * run, preparing its strips, often misses too; it is kept when chosen
 * again and on time. */
static void remember_plan(const infer_req *r, double measured_ms) {
  if (!r->c->recall) return;
  double predicted = r->ip.p.predicted_ms;
  bool on_time = !(ran_alone(r) && r->attempt == 0) ||
                 fabs(measured_ms - predicted) <= INFER_REMEMBER_TOLERANCE * predicted;
  plan_device devs[PLAN_MAX_DEVICES];
  uint64_t sessions[PLAN_MAX_DEVICES];
  infer_plan_devices(&r->ip, devs, sessions);
  plan_recall_remember(r->c->recall, r->ip.model->digest, r->ip.planner, devs, sessions,
                       r->ip.n_members, &r->ip.p, on_time);
}

/* How light each segment's rows travelled, for the next plans
 * (wire_density.h). */
static void note_wire(infer_req *r, const dispatch_result *res) {
  for (int s = 0; s < res->n_segments && s < r->ip.p.n_segments; s++)
    models_note_wire(r->ip.model, r->ip.p.segments[s].end - 1, res->wire[s].raw,
                     res->wire[s].sent);
}

/* Attempts until one is done, one fails for good, no agent is left or
 * INFER_MAX_ATTEMPTS were made. */
static grpc_status_code execute(infer_req *r, infer_reply *out, err *e) {
  for (;;) {
    grpc_status_code st = infer__attempt(r, e);
    double measured_ms = inflight_now_ms() - r->t0_ms;
    /* Its agents are free for the next request while this one is recorded. */
    infer_plan_done(r->c, &r->ip);
    dispatch_result res;
    dispatch_get_result(r->d, &res);
    if (r->d) r->bytes_moved += res.bytes_moved;
    /* The reply first: its latency is the inference's, not the records'. */
    if (st == GRPC_STATUS_OK && fill_reply(r, &res, out, e) != ERR_OK)
      st = GRPC_STATUS_RESOURCE_EXHAUSTED;
    record_tiles(r);
    refit_agents(r);
    note_wire(r, &res);
    if (st == GRPC_STATUS_OK) remember_plan(r, measured_ms);
    if (st == GRPC_STATUS_OK || r->end == INFER_END_NONE) return st;
    exclude(r);
    infer__note(r, "started over without '%s'", infer__dev_name(r, r->end_device));
    if (r->attempt + 1 >= INFER_MAX_ATTEMPTS) {
      err_set(e, ERR_UNAVAILABLE, "gave up after %d plans: %.400s", r->attempt + 1,
              r->losses[0] ? r->losses : "stragglers");
      return GRPC_STATUS_UNAVAILABLE;
    }
    infer__attempt_clear(r);
    st = replan(r, e);
    if (st != GRPC_STATUS_OK) return st;
  }
}

grpc_status_code infer_run(const infer_ctx *c, const Edgedi__V1__InferRequest *req,
                           infer_reply *out, err *e) {
  err local = {0};
  if (!e) e = &local; /* the outcome's message is recorded either way */
  memset(out, 0, sizeof *out);
  edgedi__v1__infer_reply__init(&out->msg);
  infer_req r = {.c = c, .t0_ms = inflight_now_ms(), .error_device = -1,
                 .model_name = req->model, .planner_name = req->planner,
                 .alone = inflight_count(c->inf) == 0};
  r.po = plan_default_options();
  grpc_status_code st = check_request(&r, req, &r.po, e);
  if (st != GRPC_STATUS_OK) return st;
  admit_begin(c->adm);
  st = infer_make_plan(c, req->model, req->planner, &r.po, r.deadline_at_ms, &r.ip, e);
  if (st != GRPC_STATUS_OK) {
    admit_end(c->adm);
    return st;
  }
  infer_plan_hold(&r.ip);

  char devices[PLAN_MAX_DEVICES * PLAN_NAME_BYTES];
  device_list(&r.ip, devices, sizeof devices);
  char *json = infer_plan_json(&r.ip);
  store_request_new rn = {.model = r.ip.model->name, .planner = r.ip.planner,
                          .devices = devices, .plan = json, .predicted_ms = r.ip.p.predicted_ms};
  err_code rc = json ? store_request_begin(c->st, &rn, &r.id, e)
                     : err_set(e, ERR_NOMEM, "out of memory for the plan record");
  free(json);
  if (rc != ERR_OK) {
    err_wrap(e, "recording the request");
    infer_plan_free(c, &r.ip);
    admit_end(c->adm);
    return rpc_status_from_err(rc);
  }

  st = execute(&r, out, e);
  admit_end(c->adm); /* what is left is bookkeeping */
  if (st != GRPC_STATUS_OK) err_wrap(e, "request %lld", (long long)r.id);
  store_request_result fin = {.ok = st == GRPC_STATUS_OK,
                              .measured_ms = inflight_now_ms() - r.t0_ms,
                              .bytes_moved = r.bytes_moved,
                              .error = st == GRPC_STATUS_OK ? NULL : e->msg,
                              .recovery = r.recovery};
  store_request_finish(c->st, r.id, &fin, NULL);
  /* Only what the plan alone explains: the cluster to itself, and no strip
   * being prepared. */
  if (st == GRPC_STATUS_OK && ran_alone(&r) && !ran_fresh_strips(&r))
    cluster_note_request(c->cl, r.ip.model->name, r.ip.p.predicted_ms, fin.measured_ms,
                         plan_round_trips(&r.ip.p));

  infer__attempt_clear(&r);
  dispatch_outbox_free(&r.ob);
  for (int i = 0; i < r.n_excluded; i++) cluster_release(r.excluded[i]);
  infer_plan_free(c, &r.ip);
  if (st != GRPC_STATUS_OK) infer_reply_free(out);
  return st;
}

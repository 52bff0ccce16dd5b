/* infer.c — running one inference over the cluster (contract in infer.h).
 *
 * A request's life on its own thread: check -> plan -> record begin ->
 * models on the agents -> dispatch_create -> open its mailbox -> write
 * every job -> loop { next event (agent message, agent down, shutdown) or
 * deadline -> dispatcher -> write what it produced } -> record tiles and
 * outcome -> reply. Only this thread touches the request's dispatcher;
 * the model's head_mu is held around dispatcher calls because the head
 * executor (run inside dispatch_on_message) is shared by every request of
 * the model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/protocol.h"
#include "scheduler/dispatch.h"
#include "scheduler/infer.h"
#include "scheduler/profile.h"

/* What the scheduler saw of one tile (one part of one segment). */
typedef struct tile_rec {
  int device, segment, part;
  double sent_ms;       /* its job was written to the agent's stream */
  bool reported;        /* its TileResult came */
  double at_ms;         /* ... and was read then */
  Edgedi__V1__TileResult r;
  double transfer_ms;   /* estimated, see infer.h */
} tile_rec;

typedef struct run {
  const infer_ctx *c;
  infer_plan ip;
  preprocess_image img;
  int64_t id;
  double t0_ms, deadline_at_ms;
  int deadline_ms;
  dispatch *d;
  inflight_req *mb;
  dispatch_outbox ob;
  tile_rec *tiles;
  int n_tiles;
  bool write_failed[PLAN_MAX_DEVICES]; /* do not write to it again */
  int error_device;                    /* the agent whose TileError failed it */
} run;

static const char *dev_name(const run *r, int device) {
  return device >= 0 && device < r->ip.n_members ? r->ip.members[device].dev.name : "?";
}

static tile_rec *tile_of(run *r, int device, int segment) {
  for (int i = 0; i < r->n_tiles; i++)
    if (r->tiles[i].device == device && r->tiles[i].segment == segment) return &r->tiles[i];
  return NULL;
}

static err_code make_tiles(run *r, err *e) {
  const plan *p = &r->ip.p;
  int n = 0;
  for (int si = 0; si < p->n_segments; si++) n += p->segments[si].n_parts;
  r->tiles = calloc((size_t)(n ? n : 1), sizeof *r->tiles);
  if (!r->tiles) return err_set(e, ERR_NOMEM, "out of memory");
  for (int si = 0; si < p->n_segments; si++)
    for (int k = 0; k < p->segments[si].n_parts; k++)
      r->tiles[r->n_tiles++] = (tile_rec){
          .device = p->segments[si].parts[k].device, .segment = si, .part = k};
  return ERR_OK;
}

/* ---- talking to the agents -------------------------------------------------- */

static void fail_request(run *r, grpc_status_code st, const char *msg) {
  models_head_lock(r->ip.model);
  dispatch_fail(r->d, (uint32_t)st, msg, &r->ob);
  models_head_unlock(r->ip.model);
}

/* A packed ExecuteIn holds exactly one field of its oneof, so its first
 * byte is that field's tag: (field number << 3) | 2 (length-delimited). */
static bool is_packed_job(const dispatch_msg *m) {
  return m->len > 0 && m->data[0] == ((EDGEDI__V1__EXECUTE_IN__MSG_JOB << 3) | 2);
}

/* Notes when the job in `m` goes out: its tile's transfer is timed from
 * here. Only jobs are decoded (to learn their segment); relayed rows, the
 * bulk of the bytes, are written as the dispatcher packed them. */
static err_code note_job_sent(run *r, const dispatch_msg *m, err *e) {
  Edgedi__V1__ExecuteIn *in = edgedi__v1__execute_in__unpack(NULL, m->len, m->data);
  if (!in || in->msg_case != EDGEDI__V1__EXECUTE_IN__MSG_JOB) {
    if (in) protobuf_c_message_free_unpacked(&in->base, NULL);
    return err_set(e, ERR_INTERNAL, "a job of the dispatcher does not decode");
  }
  tile_rec *t = tile_of(r, m->device, (int)in->job->segment);
  if (t) t->sent_ms = inflight_now_ms();
  protobuf_c_message_free_unpacked(&in->base, NULL);
  return ERR_OK;
}

/* Writes the outbox. A write that fails means the agent's stream is gone:
 * the request fails (which queues Releases, written in the same pass). */
static void send_outbox(run *r) {
  for (int i = 0; i < r->ob.n; i++) {
    dispatch_msg m = r->ob.msgs[i]; /* by value: failing may grow the outbox */
    if (m.device < 0 || m.device >= r->ip.n_members || r->write_failed[m.device]) continue;
    err e = {0};
    err_code rc = is_packed_job(&m) ? note_job_sent(r, &m, &e) : ERR_OK;
    if (rc == ERR_OK)
      rc = cluster_agent_send_packed(r->ip.members[m.device].agent, m.data, m.len, &e);
    if (rc != ERR_OK) {
      r->write_failed[m.device] = true;
      char msg[ERR_MSG_BYTES], why[ERR_MSG_BYTES / 2];
      grpc_status_code st = GRPC_STATUS_UNAVAILABLE;
      if (!cluster_agent_alive(r->ip.members[m.device].agent, why, sizeof why)) {
        snprintf(msg, sizeof msg, "agent '%s' went down: %s", dev_name(r, m.device), why);
      } else if (rc == ERR_UNAVAILABLE || rc == ERR_DEADLINE) {
        /* The stream has ended; its reader has not said so yet. */
        snprintf(msg, sizeof msg, "agent '%s' went down: %.400s", dev_name(r, m.device), e.msg);
      } else { /* the message itself: over the size limit, out of memory, a bug */
        snprintf(msg, sizeof msg, "cannot send to agent '%s': %.400s", dev_name(r, m.device),
                 e.msg);
        st = rc == ERR_INTERNAL ? GRPC_STATUS_INTERNAL : GRPC_STATUS_RESOURCE_EXHAUSTED;
      }
      fail_request(r, st, msg);
    }
  }
  dispatch_outbox_clear(&r->ob);
}

/* Tiles still owed, for a deadline message: "b (segments 1, 2); c (segments 2)". */
static void owed(const run *r, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int dev = 0; dev < r->ip.n_members; dev++) {
    bool first = true;
    for (int i = 0; i < r->n_tiles && used < len; i++) {
      const tile_rec *t = &r->tiles[i];
      if (t->device != dev || t->reported) continue;
      int w = first ? snprintf(buf + used, len - used, "%s%s (segments %d", used ? "; " : "",
                               dev_name(r, dev), t->segment)
                    : snprintf(buf + used, len - used, ", %d", t->segment);
      if (w < 0) return;
      used += (size_t)w;
      first = false;
    }
    if (!first && used < len) used += (size_t)snprintf(buf + used, len - used, ")");
  }
}

/* A tile's transfer time, as infer.h defines it ("What transfer time
 * means"). The latest the agent can have taken up the job: its result
 * minus compute and wait, minus the result's own way up (half a round
 * trip, its exports and output at the link's bandwidth). Messages of the
 * agent that arrived before that, less their own half round trip, show
 * how long it was busy before it got to this job. */
static double tile_transfer_ms(const run *r, const tile_rec *t) {
  const plan_device *dv = &r->ip.members[t->device].dev;
  double one_way_ms = dv->rtt_ms / 2;
  double up_ms = one_way_ms + (double)t->r.bytes_out * 8.0 / (dv->bandwidth_mbps * 1e3);
  double taken_up_by = t->at_ms - t->r.compute_ms - t->r.wait_ms - up_ms;
  double busy_ms, last_ms;
  cluster_agent_activity(r->ip.members[t->device].agent, t->sent_ms, taken_up_by, &busy_ms,
                         &last_ms);
  double queued_ms = fmax(busy_ms, last_ms - one_way_ms - t->sent_ms);
  return profile_tile_transfer_ms(t->sent_ms, t->at_ms, t->r.compute_ms, t->r.wait_ms,
                                  queued_ms);
}

static void on_event(run *r, inflight_event *ev) {
  char msg[ERR_MSG_BYTES];
  switch (ev->kind) {
    case INFLIGHT_MESSAGE: {
      Edgedi__V1__ExecuteOut *m = ev->msg;
      if (m->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT) {
        tile_rec *t = tile_of(r, ev->device, (int)m->result->segment);
        if (t && !t->reported) {
          t->reported = true;
          t->at_ms = ev->at_ms;
          t->r = *m->result;
          t->transfer_ms = tile_transfer_ms(r, t);
        }
      } else if (m->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_ERROR && r->error_device < 0) {
        r->error_device = ev->device;
      }
      models_head_lock(r->ip.model);
      dispatch_on_message(r->d, ev->device, m, &r->ob);
      models_head_unlock(r->ip.model);
      rpc_free(&m->base);
      break;
    }
    case INFLIGHT_AGENT_DOWN:
      r->write_failed[ev->device] = true;
      fail_request(r, GRPC_STATUS_UNAVAILABLE, ev->reason);
      break;
    case INFLIGHT_SHUTDOWN:
      snprintf(msg, sizeof msg, "%s",
               ev->reason[0] ? ev->reason : "the scheduler is shutting down");
      fail_request(r, GRPC_STATUS_UNAVAILABLE, msg);
      break;
  }
  send_outbox(r);
}

/* Events until the dispatcher is done or failed, or the deadline. */
static void wait_loop(run *r) {
  dispatch_result res;
  for (dispatch_get_result(r->d, &res); res.state == DISPATCH_RUNNING;
       dispatch_get_result(r->d, &res)) {
    double left = r->deadline_at_ms - inflight_now_ms();
    inflight_event ev;
    if (left > 0 && inflight_wait(r->mb, left < 1 ? 1 : (int)left, &ev)) {
      on_event(r, &ev);
      continue;
    }
    if (r->deadline_at_ms - inflight_now_ms() > 0) continue;
    char still[ERR_MSG_BYTES / 2], msg[ERR_MSG_BYTES];
    owed(r, still, sizeof still);
    snprintf(msg, sizeof msg, "no result within the deadline of %d ms; still owed by: %s",
             r->deadline_ms, still[0] ? still : "the head");
    fail_request(r, GRPC_STATUS_DEADLINE_EXCEEDED, msg);
    send_outbox(r);
  }
}

/* ---- records and reply -------------------------------------------------------- */

static void record_tiles(run *r) {
  store_tile *v = calloc((size_t)(r->n_tiles ? r->n_tiles : 1), sizeof *v);
  if (!v) return;
  size_t n = 0;
  for (int i = 0; i < r->n_tiles; i++) {
    const tile_rec *t = &r->tiles[i];
    if (!t->reported) continue;
    const plan_segment *s = &r->ip.p.segments[t->segment];
    const plan_part *pt = &s->parts[t->part];
    v[n++] = (store_tile){
        .request_id = r->id,
        .device_id = r->ip.members[t->device].device_id,
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
        .wait_ms = t->r.wait_ms};
  }
  /* The reply does not depend on history; a failed write loses only it. */
  if (n) store_tiles_add(r->c->st, v, n, NULL);
  free(v);
}

static err_code fill_reply(run *r, const dispatch_result *res, infer_reply *out, err *e) {
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
  m->bytes_moved = res->bytes_moved;
  m->bytes_gather_all = res->bytes_gather_all;
  m->head_ms = res->head_ms;
  snprintf(out->planner, sizeof out->planner, "%s", r->ip.planner);
  m->planner = out->planner;
  for (int i = 0; i < res->n_devices && i < PLAN_MAX_DEVICES; i++) {
    const dispatch_device *dv = &res->devices[i];
    if (dv->jobs == 0) continue; /* planned out: it took no part */
    Edgedi__V1__DeviceTiming *t = &out->timings[m->n_devices];
    edgedi__v1__device_timing__init(t);
    snprintf(out->names[m->n_devices], sizeof out->names[0], "%s", dev_name(r, i));
    t->device = out->names[m->n_devices];
    t->rows = (uint32_t)dv->rows;
    t->compute_ms = dv->compute_ms;
    for (int k = 0; k < r->n_tiles; k++)
      if (r->tiles[k].device == i) t->transfer_ms += r->tiles[k].transfer_ms;
    t->predicted_ms = dv->predicted_ms;
    t->bytes_in = dv->bytes_in;
    t->bytes_out = dv->bytes_out;
    t->busy_until_ms = dv->busy_until_ms;
    out->timing_ptrs[m->n_devices++] = t;
  }
  m->devices = out->timing_ptrs;
  return ERR_OK;
}

void infer_reply_free(infer_reply *r) {
  if (!r) return;
  free(r->logits);
  r->logits = NULL;
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
static grpc_status_code check_request(run *r, const Edgedi__V1__InferRequest *req,
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

/* From a recorded request to a finished dispatcher. */
static grpc_status_code execute(run *r, err *e) {
  const models_entry *en = r->ip.model;
  for (int i = 0; i < r->ip.n_members; i++) {
    double left = r->deadline_at_ms - inflight_now_ms();
    int ms = left < CLUSTER_LOAD_MODEL_DEADLINE_MS ? (int)left : CLUSTER_LOAD_MODEL_DEADLINE_MS;
    if (ms <= 0) {
      err_set(e, ERR_DEADLINE, "the deadline of %d ms passed while loading the model",
              r->deadline_ms);
      return GRPC_STATUS_DEADLINE_EXCEEDED;
    }
    err_code rc = cluster_agent_ensure_model(r->ip.members[i].agent, en, ms, e);
    if (rc != ERR_OK)
      return rc == ERR_DEADLINE ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_UNAVAILABLE;
  }
  err_code rc = make_tiles(r, e);
  if (rc == ERR_OK)
    rc = dispatch_create(en->m, en->digest, &r->ip.p, r->ip.n_members, &r->img,
                         (uint64_t)r->id, en->head, &r->d, e);
  if (rc != ERR_OK) return rc == ERR_NOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL;
  const void *keys[PLAN_MAX_DEVICES];
  for (int i = 0; i < r->ip.n_members; i++) keys[i] = r->ip.members[i].agent;
  rc = inflight_open(r->c->inf, (uint64_t)r->id, keys, r->ip.n_members, &r->mb, e);
  if (rc != ERR_OK) return rpc_status_from_err(rc);
  /* An agent that went down after planning posted to no mailbox yet. */
  for (int i = 0; i < r->ip.n_members; i++) {
    char why[ERR_MSG_BYTES / 2];
    if (!cluster_agent_alive(r->ip.members[i].agent, why, sizeof why)) {
      err_set(e, ERR_UNAVAILABLE, "agent '%s' went down: %s", dev_name(r, i), why);
      return GRPC_STATUS_UNAVAILABLE;
    }
  }
  rc = dispatch_start(r->d, &r->ob, e);
  if (rc != ERR_OK) return GRPC_STATUS_RESOURCE_EXHAUSTED;
  send_outbox(r);
  wait_loop(r);
  dispatch_result res;
  dispatch_get_result(r->d, &res);
  if (res.state == DISPATCH_DONE) return GRPC_STATUS_OK;
  grpc_status_code st = (grpc_status_code)res.status;
  if (r->error_device >= 0) { /* the agent refused or failed its tile */
    err_set(e, ERR_UNAVAILABLE, "agent '%s' failed its tile (%s): %s",
            dev_name(r, r->error_device), rpc_status_name(st), res.message);
    return GRPC_STATUS_UNAVAILABLE;
  }
  err_set(e, rpc_err_from_status(st), "%s", res.message);
  return st;
}

grpc_status_code infer_run(const infer_ctx *c, const Edgedi__V1__InferRequest *req,
                           infer_reply *out, err *e) {
  err local = {0};
  if (!e) e = &local; /* the outcome's message is recorded either way */
  memset(out, 0, sizeof *out);
  edgedi__v1__infer_reply__init(&out->msg);
  run r = {.c = c, .t0_ms = inflight_now_ms(), .error_device = -1};
  plan_options po = plan_default_options();
  grpc_status_code st = check_request(&r, req, &po, e);
  if (st != GRPC_STATUS_OK) return st;
  st = infer_make_plan(c, req->model, req->planner, &po, &r.ip, e);
  if (st != GRPC_STATUS_OK) return st;

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
    infer_plan_free(&r.ip);
    return rpc_status_from_err(rc);
  }

  st = execute(&r, e);
  dispatch_result res;
  dispatch_get_result(r.d, &res);
  if (st == GRPC_STATUS_OK && fill_reply(&r, &res, out, e) != ERR_OK)
    st = GRPC_STATUS_RESOURCE_EXHAUSTED;
  if (st != GRPC_STATUS_OK) err_wrap(e, "request %lld", (long long)r.id);
  record_tiles(&r);
  store_request_result fin = {.ok = st == GRPC_STATUS_OK,
                              .measured_ms = inflight_now_ms() - r.t0_ms,
                              .bytes_moved = r.d ? res.bytes_moved : 0,
                              .error = st == GRPC_STATUS_OK ? NULL : e->msg};
  store_request_finish(c->st, r.id, &fin, NULL);

  if (r.mb) inflight_close(c->inf, r.mb);
  dispatch_outbox_free(&r.ob);
  dispatch_destroy(r.d);
  free(r.tiles);
  infer_plan_free(&r.ip);
  if (st != GRPC_STATUS_OK) infer_reply_free(out);
  return st;
}

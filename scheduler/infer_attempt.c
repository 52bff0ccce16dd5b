/* infer_attempt.c — one attempt of a request: models on the agents, the
 * dispatcher, its mailbox, the event loop, and the watch that notices
 * stuck agents and stragglers (contract in infer.h, "Agent loss" and
 * "Stragglers").
 *
 * An attempt runs until its dispatcher is done or failed. It fails for
 * good (an agent's TileError, a message that contradicts the plan, the
 * deadline, shutdown) or it ends with r->end saying that another attempt
 * may follow: an agent lost (its stream ended or cannot be written, or it
 * was found stuck) or a straggler. Either way the dispatcher's Releases go
 * out to the agents still there before the attempt returns, so they drop
 * what is left of it. Only this thread touches the attempt; the model's
 * head_mu is held around dispatcher calls because the head executor (run
 * inside dispatch_on_message) is shared by every request of the model.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/infer_internal.h"
#include "scheduler/profile.h"

uint64_t infer__wire_id(const infer_req *r) {
  return (uint64_t)r->id | ((uint64_t)r->attempt << INFER_ATTEMPT_SHIFT);
}

static infer_tile *tile_of(infer_req *r, int device, int segment) {
  for (int i = 0; i < r->n_tiles; i++)
    if (r->tiles[i].device == device && r->tiles[i].segment == segment) return &r->tiles[i];
  return NULL;
}

static err_code make_tiles(infer_req *r, err *e) {
  r->n_tiles = 0;
  const plan *p = &r->ip.p;
  int n = 0;
  for (int si = 0; si < p->n_segments; si++) n += p->segments[si].n_parts;
  r->tiles = calloc((size_t)(n ? n : 1), sizeof *r->tiles);
  if (!r->tiles) return err_set(e, ERR_NOMEM, "out of memory");
  for (int si = 0; si < p->n_segments; si++)
    for (int k = 0; k < p->segments[si].n_parts; k++)
      r->tiles[r->n_tiles++] = (infer_tile){.device = p->segments[si].parts[k].device,
                                            .by = p->segments[si].parts[k].device,
                                            .segment = si, .part = k};
  return ERR_OK;
}

void infer__attempt_clear(infer_req *r) {
  if (r->mb) inflight_close(r->c->inf, r->mb);
  r->mb = NULL;
  dispatch_outbox_clear(&r->ob);
  dispatch_destroy(r->d);
  r->d = NULL;
  infer__standins_clear(r);
  for (int i = 0; i < r->n_tiles; i++) free(r->tiles[i].spans);
  free(r->tiles);
  r->tiles = NULL;
  r->n_tiles = 0;
}

/* ---- ending an attempt ---------------------------------------------------------- */

static void fail_attempt(infer_req *r, grpc_status_code st, const char *msg) {
  models_head_lock(r->ip.model);
  dispatch_fail(r->d, (uint32_t)st, msg, &r->ob);
  models_head_unlock(r->ip.model);
}

static bool running(const infer_req *r) {
  dispatch_result res;
  dispatch_get_result(r->d, &res);
  return !r->d || res.state == DISPATCH_RUNNING;
}

static bool owes(const infer_req *r, int device) {
  for (int i = 0; i < r->n_tiles; i++)
    if (r->tiles[i].device == device && !r->tiles[i].reported) return true;
  return false;
}

/* The live copies of device role's work: senders, at most 1 + stand-ins. */
static int live_copies(const infer_req *r, int role, int *out) {
  int n = 0;
  if (!r->write_failed[role]) out[n++] = role;
  for (int k = 0; k < r->n_standins; k++)
    if (r->standins[k].role == role && !r->standins[k].gone) out[n++] = r->standins[k].tag;
  return n;
}

/* Whether a copy of device role's work (its own or a stand-in) is not
 * gone. */
static bool covered(const infer_req *r, int role) {
  int live[1 + DISPATCH_MAX_STANDINS];
  return live_copies(r, role, live) > 0;
}

/* Sender `sender` (a device or a stand-in) is lost (`why`, which names
 * it). Its work goes on where another copy of it does, or is not owed; a
 * stand-in takes it over when infer__stand_in says so; otherwise the
 * attempt ends and the next one plans without the device. The first cause
 * of an end wins. */
static void lose(infer_req *r, int sender, const char *why) {
  if (r->end != INFER_END_NONE || !running(r)) return;
  int role = infer__role_of(r, sender);
  infer__set_gone(r, sender);
  size_t used = strlen(r->losses);
  if (used + 1 < sizeof r->losses)
    snprintf(r->losses + used, sizeof r->losses - used, "%s%s", used ? "; " : "", why);
  if (role >= 0 && r->started &&
      (covered(r, role) || !owes(r, role) || infer__stand_in(r, role, false, why)))
    return;
  r->end = INFER_END_LOST;
  r->end_device = role;
  infer__note(r, "%s", why);
  fail_attempt(r, GRPC_STATUS_UNAVAILABLE, why);
}

/* ---- talking to the agents -------------------------------------------------------- */

/* A packed ExecuteIn holds exactly one field of its oneof, so its first
 * byte is that field's tag: (field number << 3) | 2 (length-delimited). */
static bool is_packed_job(const dispatch_msg *m) {
  return m->len > 0 && m->data[0] == ((EDGEDI__V1__EXECUTE_IN__MSG_JOB << 3) | 2);
}

/* Notes when the job in `m` goes out: its tile's transfer is timed from
 * here (a stand-in's copy from when its own copy went). Only jobs are
 * decoded (to learn their segment); relayed rows, the bulk of the bytes,
 * are written as the dispatcher packed them. */
static err_code note_job_sent(infer_req *r, const dispatch_msg *m, err *e) {
  Edgedi__V1__ExecuteIn *in = edgedi__v1__execute_in__unpack(NULL, m->len, m->data);
  if (!in || in->msg_case != EDGEDI__V1__EXECUTE_IN__MSG_JOB) {
    if (in) protobuf_c_message_free_unpacked(&in->base, NULL);
    return err_set(e, ERR_INTERNAL, "a job of the dispatcher does not decode");
  }
  infer_tile *t = tile_of(r, infer__role_of(r, m->device), (int)in->job->segment);
  if (t && m->device < r->ip.n_members) t->sent_ms = inflight_now_ms();
  else if (t) t->standin_sent_ms = inflight_now_ms();
  protobuf_c_message_free_unpacked(&in->base, NULL);
  return ERR_OK;
}

/* Writes the outbox. A write that fails because the agent's stream is
 * gone loses the agent; one that fails because of the message itself
 * fails the request. Either queues Releases, written in the same pass. */
static void send_outbox(infer_req *r) {
  for (int i = 0; i < r->ob.n; i++) {
    dispatch_msg m = r->ob.msgs[i]; /* by value: failing may grow the outbox */
    cluster_agent *a = infer__agent_of(r, m.device);
    if (!a || infer__gone(r, m.device)) continue;
    err e = {0};
    err_code rc = is_packed_job(&m) ? note_job_sent(r, &m, &e) : ERR_OK;
    if (rc == ERR_OK) rc = cluster_agent_send_packed(a, m.data, m.len, &e);
    if (rc == ERR_OK) continue;
    infer__set_gone(r, m.device);
    char msg[ERR_MSG_BYTES], why[ERR_MSG_BYTES / 2];
    if (!cluster_agent_alive(a, why, sizeof why)) {
      snprintf(msg, sizeof msg, "agent '%s' went down: %s", infer__dev_name(r, m.device), why);
      lose(r, m.device, msg);
    } else if (rc == ERR_UNAVAILABLE || rc == ERR_DEADLINE) {
      /* The stream has ended; its reader has not said so yet. */
      snprintf(msg, sizeof msg, "agent '%s' went down: %.400s", infer__dev_name(r, m.device),
               e.msg);
      lose(r, m.device, msg);
    } else { /* the message itself: over the size limit, out of memory, a bug */
      snprintf(msg, sizeof msg, "cannot send to agent '%s': %.400s",
               infer__dev_name(r, m.device), e.msg);
      fail_attempt(r, rc == ERR_INTERNAL ? GRPC_STATUS_INTERNAL : GRPC_STATUS_RESOURCE_EXHAUSTED,
                   msg);
    }
    /* Losing may have queued a stand-in's messages: sent in this pass. */
  }
  dispatch_outbox_clear(&r->ob);
}

/* Tiles still owed, for a deadline message: "b (segments 1, 2); c (segments 2)". */
static void owed(const infer_req *r, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int dev = 0; dev < r->ip.n_members; dev++) {
    bool first = true;
    for (int i = 0; i < r->n_tiles && used < len; i++) {
      const infer_tile *t = &r->tiles[i];
      if (t->device != dev || t->reported) continue;
      int w = first ? snprintf(buf + used, len - used, "%s%s (segments %d", used ? "; " : "",
                               infer__dev_name(r, dev), t->segment)
                    : snprintf(buf + used, len - used, ", %d", t->segment);
      if (w < 0) return;
      used += (size_t)w;
      first = false;
    }
    if (!first && used < len) used += (size_t)snprintf(buf + used, len - used, ")");
  }
}

/* When the job of t was written to whoever ran it: the device, or its
 * latest stand-in. */
static double job_sent_ms(const infer_tile *t) {
  return t->by == t->device ? t->sent_ms : t->standin_sent_ms;
}

/* A tile's transfer time, as infer.h defines it ("What transfer time
 * means"). The latest the agent can have taken up the job: its result
 * minus compute and wait, minus the result's own way up (half a round
 * trip, its exports and output at the link's bandwidth). Messages of the
 * agent that arrived before that, less their own half round trip, show
 * how long it was busy before it got to this job. */
static double tile_transfer_ms(const infer_req *r, const infer_tile *t) {
  const plan_device *dv = &infer__member_of(r, t->by)->dev; /* who ran it */
  double one_way_ms = dv->rtt_ms / 2;
  double up_ms = one_way_ms + (double)t->r.bytes_out * 8.0 / (dv->bandwidth_mbps * 1e3);
  double taken_up_by = t->at_ms - t->r.compute_ms - t->r.wait_ms - up_ms;
  double busy_ms, last_ms;
  double sent_ms = job_sent_ms(t);
  cluster_agent_activity(infer__agent_of(r, t->by), sent_ms, taken_up_by, &busy_ms, &last_ms);
  /* The agent's own count wins where it has one: a model without FE sends
   * nothing while it computes, and its last result comes up behind its
   * exports, so the bound above misses a whole segment's compute. */
  double queued_ms = fmax(fmax(busy_ms, last_ms - one_way_ms - sent_ms), t->r.queued_ms);
  return profile_tile_transfer_ms(sent_ms, t->at_ms, t->r.compute_ms, t->r.wait_ms,
                                  queued_ms);
}

/* The result's compute stretches in ms from the request's start
 * (infer_tile.spans).
 * Its job reached the agent after half of what the round trip from our
 * sending the job to the result's arrival took beyond the agent's done_ms
 * (the ways down and up taken as equal: each is a half round trip and the
 * bytes queued before the message). Pairs out of the promised order (an
 * agent's bug) are left out. */
static void take_spans(infer_req *r, infer_tile *t, const Edgedi__V1__TileResult *res) {
  size_t n = isfinite(res->done_ms) && res->done_ms >= 0 ? res->n_spans / 2 : 0;
  free(t->spans);
  t->spans = n ? malloc(n * 2 * sizeof *t->spans) : NULL;
  t->n_spans = 0;
  if (!t->spans) return; /* a record only: the request goes on without it */
  double sent = job_sent_ms(t);
  double ways = fmax(t->at_ms - sent - res->done_ms, 0);
  double arrived = sent + ways / 2 - r->t0_ms;
  for (size_t i = 0; i < n; i++) {
    double a = res->spans[2 * i], b = res->spans[2 * i + 1];
    if (!(a >= 0 && b >= a && b <= res->done_ms + 1)) continue;
    t->spans[2 * t->n_spans] = fmax(arrived + a, 0);
    t->spans[2 * t->n_spans + 1] = fmax(arrived + b, 0);
    t->n_spans++;
  }
}

/* An agent's own account of a tile (times, work) is a record, not the
 * answer: a figure that is not a finite number >= 0 (an agent's bug) is
 * taken as unknown, 0, before anything sums or stores it, so that one bad
 * figure neither loses the request's history (the store refuses it) nor
 * reaches a reply or a cost model (which skip tiles without a time). The
 * tile's GFLOP then comes from the plan (record_tiles). */
static void sane_result_figures(Edgedi__V1__TileResult *res) {
  double *v[] = {&res->compute_ms, &res->cpu_ms, &res->wait_ms, &res->queued_ms, &res->gflop};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
    if (!(*v[i] >= 0 && isfinite(*v[i]))) *v[i] = 0;
  if (res->bytes_in > INT64_MAX) res->bytes_in = 0; /* SQLite's integers are signed */
  if (res->bytes_out > INT64_MAX) res->bytes_out = 0;
}

static void on_event(infer_req *r, inflight_event *ev) {
  char msg[ERR_MSG_BYTES];
  int role = infer__role_of(r, ev->device);
  switch (ev->kind) {
    case INFLIGHT_MESSAGE: {
      Edgedi__V1__ExecuteOut *m = ev->msg;
      if (role >= 0) {
        r->last_heard_ms[role] = ev->at_ms;
        r->last_any_ms = fmax(r->last_any_ms, ev->at_ms);
      }
      if (m->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT) {
        sane_result_figures(m->result);
        infer_tile *t = tile_of(r, role, (int)m->result->segment);
        if (t && !t->reported) { /* the first copy's counts (dispatch.h) */
          t->reported = true;
          t->by = ev->device;
          t->at_ms = ev->at_ms;
          t->r = *m->result;
          t->r.spans = NULL; /* freed with m below */
          t->r.n_spans = 0;
          t->transfer_ms = tile_transfer_ms(r, t);
          take_spans(r, t, m->result);
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
      /* A copy whose work is all reported (exports go before results) is
       * not needed to finish. */
      if (role >= 0 && owes(r, role)) lose(r, ev->device, ev->reason);
      else infer__set_gone(r, ev->device);
      break;
    case INFLIGHT_SHUTDOWN:
      snprintf(msg, sizeof msg, "%s",
               ev->reason[0] ? ev->reason : "the scheduler is shutting down");
      fail_attempt(r, GRPC_STATUS_UNAVAILABLE, msg);
      break;
  }
  send_outbox(r);
}

/* ---- the watch ---------------------------------------------------------------- */

/* The agent everybody else waits for: the one owing the earliest
 * unfinished segment, the one silent longest among several; -1 when no
 * tile is owed. *segment gets the segment. */
static int culprit(const infer_req *r, int *segment) {
  int best = -1, seg = INT_MAX;
  double heard = INFINITY;
  for (int i = 0; i < r->n_tiles; i++) {
    const infer_tile *t = &r->tiles[i];
    if (t->reported) continue;
    double h = r->last_heard_ms[t->device];
    if (t->segment < seg || (t->segment == seg && h < heard)) {
      best = t->device;
      seg = t->segment;
      heard = h;
    }
  }
  *segment = seg;
  return best;
}

/* Another agent that a re-plan without `device` could use. */
static bool another_agent_up(const infer_req *r, int device) {
  cluster_member up[PLAN_MAX_DEVICES];
  int n = cluster_acquire_up(r->c->cl, NULL, up, PLAN_MAX_DEVICES);
  bool other = false;
  for (int i = 0; i < n; i++) {
    bool excluded = up[i].agent == r->ip.members[device].agent;
    for (int j = 0; j < r->n_excluded && !excluded; j++) excluded = up[i].agent == r->excluded[j];
    other |= !excluded;
    cluster_release(up[i].agent);
  }
  return other;
}

/* The straggler's live model for this model, scaled by how late it is
 * (`factor` >= 1), so that the next plans give it less until a refit of
 * its own tiles says otherwise. */
static void penalize(infer_req *r, int device, double factor) {
  cluster_agent *a = r->ip.members[device].agent;
  plan_device d;
  if (!cluster_agent_get_cost(a, r->ip.model->name, &d)) return;
  d.ms_per_gflop *= factor;
  d.fixed_ms *= factor;
  cluster_agent_set_cost(a, r->ip.model->name, &d, NULL);
}

/* Stuck agents and stragglers (infer.h). */
static void watch(infer_req *r) {
  if (r->end != INFER_END_NONE || !running(r)) return;
  double now = inflight_now_ms();
  int seg;
  int dev = culprit(r, &seg);
  if (dev < 0) return;
  int floor_ms = r->c->stuck_floor_ms > 0 ? r->c->stuck_floor_ms : INFER_STUCK_FLOOR_MS;
  double stuck_ms = fmax(INFER_STUCK_FACTOR * r->ip.p.predicted_ms, floor_ms);
  char msg[ERR_MSG_BYTES];
  int live[1 + DISPATCH_MAX_STANDINS];
  int n_live = live_copies(r, dev, live);
  bool silent = now - r->last_any_ms > stuck_ms;
  /* Silent to this request but talking for others: busy (requests
   * pipeline behind each other on an agent), not stuck. */
  for (int i = 0; i < n_live && silent; i++) {
    double busy_ms = 0, last_ms = now;
    cluster_agent_activity(infer__agent_of(r, live[i]), now - stuck_ms, now, &busy_ms, &last_ms);
    silent = last_ms <= now - stuck_ms;
  }
  if (silent) {
    snprintf(msg, sizeof msg,
             "agent '%s' is stuck: nothing of request %lld for %.0f ms while owing segment %d "
             "(the plan predicted %.1f ms for the whole request)",
             infer__dev_name(r, n_live ? live[n_live - 1] : dev), (long long)r->id,
             now - r->last_any_ms, seg, r->ip.p.predicted_ms);
    for (int i = 0; i < n_live; i++) cluster_agent_fail(infer__agent_of(r, live[i]), msg);
    for (int i = 0; i < n_live; i++) lose(r, live[i], msg);
    return;
  }
  double f = r->c->straggler_factor;
  /* While a stand-in races for work still owed, the others may be waiting
   * for it (halos, FE sums) and the plan's times no longer apply: no new
   * straggler until it is done. */
  bool racing = false;
  for (int k = 0; k < r->n_standins && !racing; k++)
    racing = !r->standins[k].gone && owes(r, r->standins[k].role);
  if (!(f > 0) || r->straggler_replans >= INFER_MAX_STRAGGLER_REPLANS || racing ||
      n_live != 1 || live[0] != dev)
    return;
  double until_ms = 0; /* the plan's end of segment seg, from the attempt's start */
  for (int s = 0; s <= seg && s < r->ip.p.n_segments; s++)
    until_ms += r->ip.p.segments[s].predicted_ms;
  double late = now - r->attempt_t0_ms;
  if (late <= f * until_ms + INFER_STRAGGLER_SLACK_MS || !another_agent_up(r, dev)) return;
  snprintf(msg, sizeof msg,
           "agent '%s' straggled: segment %d not done after %.0f ms, %.1f times the %.1f ms "
           "predicted",
           infer__dev_name(r, dev), seg, late, until_ms > 0 ? late / until_ms : INFINITY,
           until_ms);
  penalize(r, dev, until_ms > 0 ? fmax(late / until_ms, 1.0) : f);
  if (infer__stand_in(r, dev, true, msg)) return;
  infer__note(r, "%s", msg);
  r->straggler_replans++;
  r->end = INFER_END_STRAGGLER;
  r->end_device = dev;
  fail_attempt(r, GRPC_STATUS_UNAVAILABLE, msg);
}

/* Events until the dispatcher is done or failed, or the deadline. */
static void wait_loop(infer_req *r) {
  dispatch_result res;
  for (dispatch_get_result(r->d, &res); res.state == DISPATCH_RUNNING;
       dispatch_get_result(r->d, &res)) {
    double left = r->deadline_at_ms - inflight_now_ms();
    if (left > 0) {
      int ms = left < INFER_WATCH_TICK_MS ? (int)ceil(left) : INFER_WATCH_TICK_MS;
      inflight_event ev;
      if (inflight_wait(r->mb, ms, &ev)) on_event(r, &ev);
      watch(r);
      send_outbox(r);
      continue;
    }
    char still[ERR_MSG_BYTES / 2], msg[ERR_MSG_BYTES];
    owed(r, still, sizeof still);
    snprintf(msg, sizeof msg, "no result within the deadline of %d ms; still owed by: %s",
             r->deadline_ms, still[0] ? still : "the head");
    fail_attempt(r, GRPC_STATUS_DEADLINE_EXCEEDED, msg);
    send_outbox(r);
  }
}

/* ---- the attempt ----------------------------------------------------------------- */

/* An agent that cannot be used before the attempt started: lost when it
 * went down (another attempt may follow), a failure otherwise. */
static grpc_status_code unusable(infer_req *r, int device, err_code rc, err *e) {
  char why[ERR_MSG_BYTES / 2];
  if (cluster_agent_alive(r->ip.members[device].agent, why, sizeof why))
    return rc == ERR_DEADLINE ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_UNAVAILABLE;
  char msg[ERR_MSG_BYTES];
  snprintf(msg, sizeof msg, "agent '%s' went down: %s", infer__dev_name(r, device), why);
  lose(r, device, msg);
  err_set(e, ERR_UNAVAILABLE, "%s", msg);
  return GRPC_STATUS_UNAVAILABLE;
}

grpc_status_code infer__attempt(infer_req *r, err *e) {
  r->end = INFER_END_NONE;
  r->end_device = -1;
  r->error_device = -1;
  memset(r->write_failed, 0, sizeof r->write_failed);
  r->n_standins = 0;
  r->started = false;
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
    if (rc != ERR_OK) return unusable(r, i, rc, e);
  }
  err_code rc = make_tiles(r, e);
  if (rc == ERR_OK)
    rc = dispatch_create(en->m, en->digest, &r->ip.p, r->ip.n_members, &r->img, infer__wire_id(r),
                         en->head, &r->d, e);
  if (rc == ERR_OK && en->head_rows) rc = dispatch_set_head_rows(r->d, en->head_rows, e);
  if (rc == ERR_OK && infer__standins_on(r)) rc = dispatch_keep_log(r->d, e);
  if (rc != ERR_OK) return rc == ERR_NOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL;
  const void *keys[PLAN_MAX_DEVICES];
  for (int i = 0; i < r->ip.n_members; i++) keys[i] = r->ip.members[i].agent;
  rc = inflight_open(r->c->inf, infer__wire_id(r), keys, r->ip.n_members, &r->mb, e);
  if (rc != ERR_OK) return rpc_status_from_err(rc);
  /* An agent that went down after planning posted to no mailbox yet. */
  for (int i = 0; i < r->ip.n_members; i++)
    if (!cluster_agent_alive(r->ip.members[i].agent, NULL, 0)) return unusable(r, i, ERR_OK, e);
  rc = dispatch_start(r->d, &r->ob, e);
  if (rc != ERR_OK) return GRPC_STATUS_RESOURCE_EXHAUSTED;
  r->started = true;
  r->attempt_t0_ms = r->last_any_ms = inflight_now_ms();
  for (int i = 0; i < r->ip.n_members; i++) r->last_heard_ms[i] = r->attempt_t0_ms;
  send_outbox(r);
  wait_loop(r);
  dispatch_result res;
  dispatch_get_result(r->d, &res);
  if (res.state == DISPATCH_DONE) return GRPC_STATUS_OK;
  grpc_status_code st = (grpc_status_code)res.status;
  if (r->end == INFER_END_NONE && r->error_device >= 0) { /* it refused or failed its tile */
    err_set(e, ERR_UNAVAILABLE, "agent '%s' failed its tile (%s): %s",
            infer__dev_name(r, r->error_device), rpc_status_name(st), res.message);
    return GRPC_STATUS_UNAVAILABLE;
  }
  err_set(e, rpc_err_from_status(st), "%s", res.message);
  return st;
}

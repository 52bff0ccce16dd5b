/* cluster.c — sessions with the agents: registration, the Execute stream
 * handshake, the reader that routes what agents send, going down
 * (contract in cluster.h, locking in cluster_internal.h).
 *
 * Why a session is never reused: a request holds references to the
 * sessions it sent jobs on, and the reader posts "down" keyed by session.
 * A new connection is a new session, so a down event of the old one cannot
 * fail a request running on the new one, and the old stream stays valid
 * for whoever still holds it (writes just fail).
 */
#include "scheduler/cluster_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/protocol.h"
#include "scheduler/dispatch.h"
#include "scheduler/refit.h"

#define CLUSTER_HELLO_NAME "edgedi-scheduler"
/* Heartbeat Pings carry this bit, probe Pings never do. */
#define CLUSTER_HEARTBEAT_SEQ_BIT (1ull << 63)

void cluster__log(cluster *c, const char *fmt, ...) {
  if (!c->o.log) return;
  char msg[ERR_MSG_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->o.log(c->o.log_ctx, msg);
}

/* ---- sessions --------------------------------------------------------- */

static void session_free(cluster_agent *a) {
  if (a->stream) rpc_stream_destroy(a->stream);
  if (a->ch) rpc_channel_destroy(a->ch);
  free(a->loaded);
  pthread_mutex_destroy(&a->mu);
  pthread_mutex_destroy(&a->load_mu);
  pthread_cond_destroy(&a->cv);
  free(a);
}

/* Session serials: a restarted agent is a new session, its name the same. */
static _Atomic uint64_t session_serial;

static cluster_agent *session_new(cluster *c, const char *name, const char *address,
                                  int64_t device_id) {
  cluster_agent *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->session = ++session_serial;
  a->c = c;
  snprintf(a->name, sizeof a->name, "%s", name);
  snprintf(a->address, sizeof a->address, "%s", address);
  a->device_id = device_id;
  a->refs = 1;
  a->state = STORE_DEVICE_PROFILING;
  pthread_mutex_init(&a->mu, NULL);
  pthread_mutex_init(&a->load_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&a->cv, &ca);
  pthread_condattr_destroy(&ca);
  return a;
}

void cluster_retain(cluster_agent *a) {
  pthread_mutex_lock(&a->mu);
  a->refs++;
  pthread_mutex_unlock(&a->mu);
}

void cluster_release(cluster_agent *a) {
  if (!a) return;
  pthread_mutex_lock(&a->mu);
  int left = --a->refs;
  pthread_mutex_unlock(&a->mu);
  if (left == 0) session_free(a);
}

const char *cluster_agent_name(const cluster_agent *a) { return a->name; }
int64_t cluster_agent_device_id(const cluster_agent *a) { return a->device_id; }

void cluster_agent_busy_add(cluster_agent *a, int delta, bool single) {
  pthread_mutex_lock(&a->mu);
  a->busy += delta;
  if (single) a->singles += delta;
  pthread_mutex_unlock(&a->mu);
}

int cluster_agent_busy(cluster_agent *a, int *singles) {
  pthread_mutex_lock(&a->mu);
  int n = a->busy;
  if (singles) *singles = a->singles;
  pthread_mutex_unlock(&a->mu);
  return n;
}

bool cluster_agent_alive(cluster_agent *a, char *reason, size_t len) {
  pthread_mutex_lock(&a->mu);
  bool alive = a->state != STORE_DEVICE_DOWN;
  if (!alive && reason && len) snprintf(reason, len, "%s", a->down_reason);
  pthread_mutex_unlock(&a->mu);
  return alive;
}

void cluster_agent_fail(cluster_agent *a, const char *reason) {
  cluster__log(a->c, "marking agent '%s' down: %s", a->name, reason);
  cluster__fail(a, reason);
}

void cluster__fail(cluster_agent *a, const char *reason) {
  pthread_mutex_lock(&a->mu);
  if (!a->down_reason[0]) snprintf(a->down_reason, sizeof a->down_reason, "%s", reason);
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
  rpc_stream_cancel(a->stream, GRPC_STATUS_UNAVAILABLE, reason);
}

/* The reader saw the stream end: the session is down for good. */
static void session_down(cluster_agent *a, const char *why) {
  char reason[ERR_MSG_BYTES];
  pthread_mutex_lock(&a->mu);
  a->state = STORE_DEVICE_DOWN;
  if (!a->down_reason[0]) snprintf(a->down_reason, sizeof a->down_reason, "%s", why);
  /* Names and addresses are short in practice; the reason is what matters. */
  snprintf(reason, sizeof reason, "agent '%.64s' (%.64s) went down: %.300s", a->name,
           a->address, a->down_reason);
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
  /* Best effort: a failing database must not keep the requests waiting. */
  store_device_set_state(a->c->st, a->device_id, STORE_DEVICE_DOWN, NULL);
  inflight_agent_down(a->c->inf, a, reason);
  cluster__log(a->c, "%s", reason);
}

/* ---- the reader ---------------------------------------------------------- */

static void note_seen(cluster_agent *a, double at_ms, double compute_ms) {
  pthread_mutex_lock(&a->mu);
  a->seen[a->seen_next] = (cluster_seen){.at_ms = at_ms, .compute_ms = compute_ms};
  a->seen_next = (a->seen_next + 1) % CLUSTER_ACTIVITY_HISTORY;
  if (a->seen_n < CLUSTER_ACTIVITY_HISTORY) a->seen_n++;
  pthread_mutex_unlock(&a->mu);
}

void cluster_agent_activity(cluster_agent *a, double from_ms, double to_ms, double *busy_ms,
                            double *last_ms) {
  double busy = 0, last = from_ms;
  pthread_mutex_lock(&a->mu);
  for (int i = 0; i < a->seen_n; i++) {
    const cluster_seen *s = &a->seen[i];
    if (s->at_ms <= from_ms || s->at_ms > to_ms) continue;
    if (s->at_ms > last) last = s->at_ms;
    double since = s->at_ms - from_ms;
    busy += s->compute_ms < since ? s->compute_ms : since;
  }
  pthread_mutex_unlock(&a->mu);
  *busy_ms = busy;
  *last_ms = last;
}

static void on_pong(cluster_agent *a, const Edgedi__V1__Ping *pong, double at_ms) {
  if (pong->seq & CLUSTER_HEARTBEAT_SEQ_BIT) return; /* it answered: enough */
  pthread_mutex_lock(&a->mu);
  if (pong->seq == a->want_seq && !a->pong_got) {
    a->pong_got = true;
    a->pong_at_ms = at_ms;
    pthread_cond_broadcast(&a->cv);
  }
  pthread_mutex_unlock(&a->mu);
}

static void heartbeat(cluster_agent *a, uint64_t n) {
  Edgedi__V1__Ping ping = EDGEDI__V1__PING__INIT;
  ping.seq = CLUSTER_HEARTBEAT_SEQ_BIT | n;
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_PING;
  in.ping = &ping;
  rpc_stream_write(a->stream, &in.base, NULL); /* a failure ends the stream: the read sees it */
}

static void *reader_main(void *arg) {
  cluster_agent *a = arg;
  double last_heard = inflight_now_ms(), last_touch = last_heard, last_ping = last_heard;
  uint64_t beats = 0;
  char why[ERR_MSG_BYTES] = "the agent ended the stream";
  for (;;) {
    ProtobufCMessage *pm = NULL;
    err e = {0};
    err_code rc = rpc_stream_read(a->stream, &edgedi__v1__execute_out__descriptor,
                                  CLUSTER_READ_POLL_MS, &pm, &e);
    double now = inflight_now_ms();
    if (rc == ERR_DEADLINE || rc == ERR_CORRUPT) {
      /* ERR_CORRUPT: an agent bug we cannot route; its request ends at its
       * deadline. The stream itself is fine. */
      if (now - last_heard >= CLUSTER_HEARTBEAT_MS && now - last_ping >= CLUSTER_HEARTBEAT_MS) {
        last_ping = now;
        heartbeat(a, ++beats);
      }
      continue;
    }
    if (rc != ERR_OK) {
      snprintf(why, sizeof why, "%s", e.msg);
      break;
    }
    if (!pm) break; /* clean end */
    last_heard = now;
    if (now - last_touch >= CLUSTER_HEARTBEAT_MS) {
      last_touch = now;
      store_device_touch(a->c->st, a->device_id, NULL);
    }
    Edgedi__V1__ExecuteOut *msg = (Edgedi__V1__ExecuteOut *)pm;
    uint64_t id;
    if (msg->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_PONG) {
      on_pong(a, msg->pong, now);
    } else if (dispatch_request_of(msg, &id)) {
      note_seen(a, now, msg->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT
                            ? msg->result->compute_ms
                            : 0);
      inflight_deliver(a->c->inf, id, a, msg, now); /* takes msg */
      continue;
    }
    rpc_free(pm); /* a Pong, a second Hello */
  }
  session_down(a, why);
  return NULL;
}

/* ---- handshake ------------------------------------------------------------ */

/* Opens the channel and the Execute stream and exchanges Hellos. */
static grpc_status_code handshake(cluster *c, cluster_agent *a, err *e) {
  err_code rc = rpc_channel_create(a->address, &c->o.rpc, &a->ch, e);
  if (rc == ERR_OK) rc = rpc_stream_open(a->ch, CLUSTER_EXECUTE_METHOD, 0, &a->stream, e);
  if (rc != ERR_OK) {
    err_wrap(e, "agent '%s' at %s", a->name, a->address);
    return rpc_status_from_err(rc);
  }
  Edgedi__V1__Hello hello = EDGEDI__V1__HELLO__INIT;
  hello.protocol_version = EDGEDI_PROTOCOL_VERSION;
  hello.name = CLUSTER_HELLO_NAME;
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_HELLO;
  in.hello = &hello;
  rc = rpc_stream_write(a->stream, &in.base, e);
  ProtobufCMessage *pm = NULL;
  if (rc == ERR_OK)
    rc = rpc_stream_read(a->stream, &edgedi__v1__execute_out__descriptor,
                         CLUSTER_HANDSHAKE_TIMEOUT_MS, &pm, e);
  if (rc == ERR_OK && !pm)
    rc = err_set(e, ERR_UNAVAILABLE, "it ended the Execute stream without a Hello");
  if (rc != ERR_OK) {
    const char *details = NULL;
    grpc_status_code st = rpc_stream_status(a->stream, &details);
    err_wrap(e, "agent '%s' at %s does not answer the Execute handshake", a->name,
             a->address);
    return st == GRPC_STATUS_FAILED_PRECONDITION ? st : GRPC_STATUS_UNAVAILABLE;
  }
  Edgedi__V1__ExecuteOut *out = (Edgedi__V1__ExecuteOut *)pm;
  grpc_status_code st = GRPC_STATUS_OK;
  if (out->msg_case != EDGEDI__V1__EXECUTE_OUT__MSG_HELLO) {
    err_set(e, ERR_UNAVAILABLE, "agent '%s' at %s answered the Hello with message %d",
            a->name, a->address, (int)out->msg_case);
    st = GRPC_STATUS_UNAVAILABLE;
  } else if (out->hello->protocol_version != EDGEDI_PROTOCOL_VERSION) {
    err_set(e, ERR_UNSUPPORTED,
            "agent '%s' at %s speaks EdgeDI protocol version %u on its Execute stream; "
            "this scheduler speaks version %d",
            a->name, a->address, out->hello->protocol_version, EDGEDI_PROTOCOL_VERSION);
    st = GRPC_STATUS_FAILED_PRECONDITION;
  }
  rpc_free(pm);
  return st;
}

/* ---- the cluster -------------------------------------------------------- */

err_code cluster_create(store *st, models *ms, inflight *inf, const cluster_options *o,
                        cluster **out, err *e) {
  *out = NULL;
  if (!st || !ms || !inf) return err_set(e, ERR_INVALID, "cluster: missing store, models or table");
  store_device *devs = NULL;
  size_t n = 0;
  err_code rc = store_device_list(st, &devs, &n, e);
  for (size_t i = 0; rc == ERR_OK && i < n; i++)
    if (devs[i].state != STORE_DEVICE_DOWN)
      rc = store_device_set_state(st, devs[i].id, STORE_DEVICE_DOWN, e);
  store_free(devs);
  if (rc != ERR_OK) return err_wrap(e, "cluster: marking the stored devices down");
  cluster *c = calloc(1, sizeof *c);
  if (!c) return err_set(e, ERR_NOMEM, "cluster: out of memory");
  c->st = st;
  c->ms = ms;
  c->inf = inf;
  if (o) c->o = *o;
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->register_mu, NULL);
  *out = c;
  return ERR_OK;
}

void cluster_stop(cluster *c) {
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  c->stopped = true;
  for (int i = 0; i < c->n; i++) {
    cluster_agent *a = c->v[i];
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_mutex_unlock(&a->mu);
    cluster__fail(a, "the scheduler is shutting down");
  }
  pthread_mutex_unlock(&c->mu);
}

/* Ends a session that is no longer in the list and drops the list's
 * reference. Its reader marks it down before it returns. */
static void session_end(cluster_agent *a, const char *why) {
  pthread_mutex_lock(&a->mu);
  a->stopping = true;
  pthread_mutex_unlock(&a->mu);
  cluster__fail(a, why);
  if (a->profiler_started) pthread_join(a->profiler, NULL);
  if (a->reader_started) pthread_join(a->reader, NULL);
  cluster_release(a);
}

void cluster_destroy(cluster *c) {
  if (!c) return;
  cluster_stop(c);
  pthread_mutex_lock(&c->register_mu); /* a registration in progress finishes */
  pthread_mutex_lock(&c->mu);
  cluster_agent **v = c->v;
  int n = c->n;
  c->v = NULL;
  c->n = c->cap = 0;
  pthread_mutex_unlock(&c->mu);
  pthread_mutex_unlock(&c->register_mu);
  for (int i = 0; i < n; i++) session_end(v[i], "the scheduler is shutting down");
  free(v);
  pthread_mutex_destroy(&c->mu);
  pthread_mutex_destroy(&c->register_mu);
  free(c);
}

static int find_locked(cluster *c, const char *name) {
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->v[i]->name, name) == 0) return i;
  return -1;
}

/* Takes the old session of `name` out of the list when it may be replaced:
 * NULL and OK when there is none; ALREADY_EXISTS when it is live elsewhere. */
static grpc_status_code take_old(cluster *c, const char *name, const char *address,
                                 cluster_agent **old, err *e) {
  *old = NULL;
  grpc_status_code st = GRPC_STATUS_OK;
  pthread_mutex_lock(&c->mu);
  int i = find_locked(c, name);
  if (i >= 0) {
    cluster_agent *a = c->v[i];
    pthread_mutex_lock(&a->mu);
    bool live = a->state != STORE_DEVICE_DOWN;
    const char *state = store_device_state_name(a->state);
    if (live && strcmp(a->address, address) != 0) {
      err_set(e, ERR_INVALID,
              "device name '%s' is taken by the live agent at %s (%s); stop that agent "
              "or choose another name",
              name, a->address, state);
      st = GRPC_STATUS_ALREADY_EXISTS;
    }
    pthread_mutex_unlock(&a->mu);
    if (st == GRPC_STATUS_OK) {
      *old = a;
      c->v[i] = c->v[--c->n];
    }
  }
  pthread_mutex_unlock(&c->mu);
  return st;
}

static err_code add_locked(cluster *c, cluster_agent *a, err *e) {
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 8;
    cluster_agent **v = realloc(c->v, (size_t)cap * sizeof *v);
    if (!v) return err_set(e, ERR_NOMEM, "cluster: out of memory");
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n++] = a;
  return ERR_OK;
}

/* Registration once the name is free: database, handshake, threads. */
static grpc_status_code connect_agent(cluster *c, const Edgedi__V1__RegisterAgentRequest *req,
                                      int64_t *device_id, err *e) {
  store_device_reg reg = {.name = req->name, .address = req->address, .cores = req->cores,
                          .arch = req->arch, .threads = req->threads};
  int64_t id = 0;
  err_code rc = store_device_register(c->st, &reg, false, &id, NULL, e);
  if (rc != ERR_OK) {
    if (rc == ERR_INVALID && strstr(e->msg, "is taken by")) return GRPC_STATUS_ALREADY_EXISTS;
    return rpc_status_from_err(rc);
  }
  rc = store_device_set_state(c->st, id, STORE_DEVICE_PROFILING, e);
  if (rc != ERR_OK) return rpc_status_from_err(rc);
  cluster_agent *a = session_new(c, req->name, req->address, id);
  if (!a) {
    store_device_set_state(c->st, id, STORE_DEVICE_DOWN, NULL);
    err_set(e, ERR_NOMEM, "cluster: out of memory");
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  grpc_status_code st = handshake(c, a, e);
  pthread_mutex_lock(&c->mu);
  if (st == GRPC_STATUS_OK && c->stopped) {
    err_set(e, ERR_UNAVAILABLE, "the scheduler is shutting down");
    st = GRPC_STATUS_UNAVAILABLE;
  }
  if (st == GRPC_STATUS_OK) {
    a->reader_started = pthread_create(&a->reader, NULL, reader_main, a) == 0;
    if (a->reader_started) {
      a->profiler_started = pthread_create(&a->profiler, NULL, cluster__profile_main, a) == 0;
      if (!a->profiler_started) cluster__fail(a, "cannot start its profiling thread");
      if (add_locked(c, a, e) != ERR_OK) cluster__fail(a, "out of memory");
    } else {
      err_set(e, ERR_NOMEM, "cluster: cannot start a reader thread");
      st = GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
  }
  bool listed = st == GRPC_STATUS_OK && find_locked(c, a->name) >= 0;
  pthread_mutex_unlock(&c->mu);
  if (!listed) {
    if (st == GRPC_STATUS_OK) { /* threads run but the list had no room */
      session_end(a, "out of memory");
      err_set(e, ERR_NOMEM, "cluster: out of memory");
      return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    store_device_set_state(c->st, id, STORE_DEVICE_DOWN, NULL);
    cluster_release(a);
    return st;
  }
  *device_id = id;
  cluster__log(c, "agent '%s' (%s) registered as device %lld; profiling it", a->name,
               a->address, (long long)id);
  return GRPC_STATUS_OK;
}

static grpc_status_code register_agent(cluster *c, const Edgedi__V1__RegisterAgentRequest *req,
                                       int64_t *device_id, err *e) {
  if (req->protocol_version != EDGEDI_PROTOCOL_VERSION) {
    err_set(e, ERR_UNSUPPORTED,
            "agent '%s' speaks EdgeDI protocol version %u; this scheduler speaks version "
            "%d: upgrade the %s",
            req->name ? req->name : "", req->protocol_version, EDGEDI_PROTOCOL_VERSION,
            req->protocol_version < EDGEDI_PROTOCOL_VERSION ? "agent" : "scheduler");
    return GRPC_STATUS_FAILED_PRECONDITION;
  }
  const char *name = req->name ? req->name : "", *address = req->address ? req->address : "";
  if (!name[0]) {
    err_set(e, ERR_INVALID, "RegisterAgent: no agent name");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  if (!address[0]) {
    err_set(e, ERR_INVALID, "RegisterAgent: agent '%s' gave no address", name);
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  pthread_mutex_lock(&c->register_mu);
  grpc_status_code st = GRPC_STATUS_OK;
  pthread_mutex_lock(&c->mu);
  if (c->stopped) {
    err_set(e, ERR_UNAVAILABLE, "the scheduler is shutting down");
    st = GRPC_STATUS_UNAVAILABLE;
  }
  pthread_mutex_unlock(&c->mu);
  cluster_agent *old = NULL;
  if (st == GRPC_STATUS_OK) st = take_old(c, name, address, &old, e);
  if (old) session_end(old, "replaced by a new registration of the same agent");
  if (st == GRPC_STATUS_OK) st = connect_agent(c, req, device_id, e);
  pthread_mutex_unlock(&c->register_mu);
  return st;
}

grpc_status_code cluster_register(cluster *c, const Edgedi__V1__RegisterAgentRequest *req,
                                  int64_t *device_id, err *e) {
  err local = {0};
  if (!e) e = &local;
  int64_t id = 0;
  grpc_status_code st = register_agent(c, req, &id, e);
  if (st != GRPC_STATUS_OK)
    cluster__log(c, "refused agent '%.64s' (%.64s): %s: %.300s", req->name ? req->name : "",
                 req->address ? req->address : "", rpc_status_name(st), e->msg);
  else if (device_id)
    *device_id = id;
  return st;
}

/* ---- using agents ----------------------------------------------------------- */

static int by_name(const void *x, const void *y) {
  return strcmp(((const cluster_member *)x)->dev.name, ((const cluster_member *)y)->dev.name);
}

/* The slot of `model` among the session's per-model costs, or -1 (caller
 * holds a->mu). */
static int model_cost_locked(const cluster_agent *a, const char *model) {
  for (int i = 0; model && i < a->n_model_costs; i++)
    if (strcmp(a->model_costs[i].model, model) == 0) return i;
  return -1;
}

int cluster_acquire_up(cluster *c, const char *model, cluster_member *out, int max) {
  int n = 0;
  pthread_mutex_lock(&c->mu);
  double extra = handoff_ms(&c->handoff, model);
  for (int i = 0; i < c->n && n < max; i++) {
    cluster_agent *a = c->v[i];
    pthread_mutex_lock(&a->mu);
    if (a->state == STORE_DEVICE_UP && a->has_cost) {
      a->refs++;
      int k = model_cost_locked(a, model);
      cluster_member m = {.agent = a, .device_id = a->device_id, .session = a->session,
                          .dev = k >= 0 ? a->model_costs[k].cost : a->cost};
      /* An FE exchange costs the link's round trip as probed (plan.h): the
       * refitted one, kept within [probe, probe + slack]. */
      double probe = a->profiled.rtt_ms;
      m.dev.fe_rtt_ms = probe > 0 ? fmax(probe, fmin(m.dev.rtt_ms, probe + REFIT_LINK_RTT_SLACK_MS))
                                  : m.dev.rtt_ms;
      /* What the model's exchanges were seen to cost beyond (handoff.h). */
      m.dev.rtt_ms += extra;
      m.dev.fe_rtt_ms += extra;
      out[n++] = m;
    }
    pthread_mutex_unlock(&a->mu);
  }
  pthread_mutex_unlock(&c->mu);
  qsort(out, (size_t)n, sizeof *out, by_name);
  return n;
}

cluster_agent *cluster_find(cluster *c, const char *name) {
  cluster_agent *a = NULL;
  pthread_mutex_lock(&c->mu);
  int i = name ? find_locked(c, name) : -1;
  if (i >= 0) {
    a = c->v[i];
    pthread_mutex_lock(&a->mu);
    a->refs++;
    pthread_mutex_unlock(&a->mu);
  }
  pthread_mutex_unlock(&c->mu);
  return a;
}

bool cluster_agent_get_cost(cluster_agent *a, const char *model, plan_device *out) {
  pthread_mutex_lock(&a->mu);
  bool has = a->has_cost;
  if (has) {
    int k = model_cost_locked(a, model);
    *out = k >= 0 ? a->model_costs[k].cost : a->cost;
  }
  pthread_mutex_unlock(&a->mu);
  return has;
}

bool cluster_agent_profiled(cluster_agent *a, plan_device *out) {
  pthread_mutex_lock(&a->mu);
  bool has = a->has_cost;
  if (has) *out = a->profiled;
  pthread_mutex_unlock(&a->mu);
  return has;
}

bool cluster_agent_model_cost(cluster_agent *a, const char *model, plan_device *out) {
  pthread_mutex_lock(&a->mu);
  int k = a->has_cost ? model_cost_locked(a, model) : -1;
  if (k >= 0) *out = a->model_costs[k].cost;
  pthread_mutex_unlock(&a->mu);
  return k >= 0;
}

err_code cluster_agent_set_cost(cluster_agent *a, const char *model, const plan_device *cost,
                                err *e) {
  if (!cost) return err_set(e, ERR_INVALID, "agent '%s': no cost model", a->name);
  plan_device d = *cost;
  snprintf(d.name, sizeof d.name, "%s", a->name);
  err_code rc = refit_check_device(&d, e);
  if (rc != ERR_OK) {
    cluster__log(a->c, "refused a cost model for agent '%s'%s%s: %s", a->name,
                 model ? " and model " : "", model ? model : "", e ? e->msg : "");
    return rc;
  }
  if (model && strlen(model) >= STORE_NAME_BYTES)
    return err_set(e, ERR_INVALID, "agent '%s': model name '%.64s...' is too long", a->name,
                   model);
  pthread_mutex_lock(&a->mu);
  if (!a->has_cost) {
    rc = err_set(e, ERR_UNAVAILABLE, "agent '%s' has no cost model yet (still profiling)",
                 a->name);
  } else if (!model) {
    a->cost = d;
  } else {
    int k = model_cost_locked(a, model);
    if (k < 0 && a->n_model_costs < CLUSTER_MAX_MODEL_COSTS) {
      k = a->n_model_costs++;
    } else if (k < 0) {
      k = a->next_model_cost;
      a->next_model_cost = (a->next_model_cost + 1) % CLUSTER_MAX_MODEL_COSTS;
    }
    snprintf(a->model_costs[k].model, sizeof a->model_costs[k].model, "%s", model);
    a->model_costs[k].cost = d;
  }
  pthread_mutex_unlock(&a->mu);
  return rc;
}

void cluster_describe(cluster *c, char *buf, size_t len) {
  if (!len) return;
  pthread_mutex_lock(&c->mu);
  int used = snprintf(buf, len, "%d agent%s registered", c->n, c->n == 1 ? "" : "s");
  for (int i = 0; i < c->n && used >= 0 && (size_t)used < len; i++) {
    cluster_agent *a = c->v[i];
    pthread_mutex_lock(&a->mu);
    used += snprintf(buf + used, len - (size_t)used, "%s%s %s", i ? ", " : ": ", a->name,
                     store_device_state_name(a->state));
    pthread_mutex_unlock(&a->mu);
  }
  pthread_mutex_unlock(&c->mu);
}

err_code cluster_agent_send(cluster_agent *a, const Edgedi__V1__ExecuteIn *msg, err *e) {
  err_code rc = rpc_stream_write(a->stream, &msg->base, e);
  if (rc != ERR_OK) err_wrap(e, "agent '%s'", a->name);
  return rc;
}

err_code cluster_agent_send_packed(cluster_agent *a, const uint8_t *data, size_t len,
                                   err *e) {
  err_code rc = rpc_stream_write_packed(a->stream, data, len, "ExecuteIn", e);
  if (rc != ERR_OK) err_wrap(e, "agent '%s'", a->name);
  return rc;
}

static bool has_model_locked(const cluster_agent *a, const char *digest) {
  for (int i = 0; i < a->n_loaded; i++)
    if (strcmp(a->loaded[i], digest) == 0) return true;
  return false;
}

err_code cluster_agent_ensure_model(cluster_agent *a, const models_entry *en, int deadline_ms,
                                    err *e) {
  err_code rc = ERR_OK;
  pthread_mutex_lock(&a->load_mu);
  if (has_model_locked(a, en->digest)) goto done;
  Edgedi__V1__LoadModelRequest req = EDGEDI__V1__LOAD_MODEL_REQUEST__INIT;
  req.spec = en->spec;
  ProtobufCMessage *reply = NULL;
  rc = rpc_call_unary(a->ch, CLUSTER_LOAD_MODEL_METHOD, &req.base,
                      &edgedi__v1__load_model_reply__descriptor, deadline_ms, &reply, NULL, e);
  if (rc != ERR_OK) {
    err_wrap(e, "agent '%s': loading model '%s'", a->name, en->name);
    goto done;
  }
  const Edgedi__V1__LoadModelReply *r = (const Edgedi__V1__LoadModelReply *)reply;
  if (r->digest && r->digest[0] && strcmp(r->digest, en->digest) != 0)
    rc = err_set(e, ERR_UNAVAILABLE,
                 "agent '%s' built model '%s' as digest %s; the scheduler's is %s", a->name,
                 en->name, r->digest, en->digest);
  rpc_free(reply);
  if (rc != ERR_OK) goto done;
  if (a->n_loaded == a->cap_loaded) {
    int cap = a->cap_loaded ? 2 * a->cap_loaded : 8;
    void *v = realloc(a->loaded, (size_t)cap * sizeof *a->loaded);
    if (!v) {
      rc = err_set(e, ERR_NOMEM, "cluster: out of memory");
      goto done;
    }
    a->loaded = v;
    a->cap_loaded = cap;
  }
  snprintf(a->loaded[a->n_loaded++], MODELSPEC_DIGEST_BYTES, "%s", en->digest);
done:
  pthread_mutex_unlock(&a->load_mu);
  return rc;
}

double cluster__ping(cluster_agent *a, uint64_t seq, size_t payload, size_t reply,
                     int timeout_ms, err *e) {
  uint8_t *buf = payload ? calloc(1, payload) : NULL;
  if (payload && !buf) return err_set(e, ERR_NOMEM, "cluster: out of memory for a probe"), -1;
  Edgedi__V1__Ping ping = EDGEDI__V1__PING__INIT;
  ping.seq = seq;
  ping.payload.data = buf;
  ping.payload.len = payload;
  ping.reply_bytes = (uint32_t)reply;
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_PING;
  in.ping = &ping;
  pthread_mutex_lock(&a->mu);
  a->want_seq = seq;
  a->pong_got = false;
  pthread_mutex_unlock(&a->mu);
  double t0 = inflight_now_ms();
  err_code rc = cluster_agent_send(a, &in, e);
  free(buf);
  if (rc != ERR_OK) return -1;
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += timeout_ms / 1000;
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  double rtt = -1;
  pthread_mutex_lock(&a->mu);
  while (!a->pong_got && !a->stopping && a->state != STORE_DEVICE_DOWN && !a->down_reason[0])
    if (pthread_cond_timedwait(&a->cv, &a->mu, &until) != 0) break;
  if (a->pong_got) rtt = a->pong_at_ms - t0;
  pthread_mutex_unlock(&a->mu);
  if (rtt < 0) err_set(e, ERR_DEADLINE, "agent '%s' did not answer a %zu-byte Ping within %d ms",
                       a->name, payload, timeout_ms);
  return rtt;
}

void cluster_note_request(cluster *c, const char *model, double predicted_ms,
                          double measured_ms, int round_trips) {
  if (!c) return;
  pthread_mutex_lock(&c->mu);
  handoff_note(&c->handoff, model, predicted_ms, measured_ms, round_trips);
  pthread_mutex_unlock(&c->mu);
}

/* agent.c — the Agent service's Execute and LoadModel, the model registry,
 * the agent's life (contract in agent.h).
 *
 * One Execute stream is a session with three threads:
 *   reader (the call's own thread): stream -> incoming link -> inbox;
 *   engine: inbox, each message released at its emulated arrival time ->
 *           tile engine -> outgoing link -> outbox;
 *   writer: outbox, each message released when it would have arrived at
 *           the scheduler -> stream.
 * Splitting them is what makes the link emulation honest: a message is
 * "on the wire" while the device computes, and a slow link delays only
 * what crosses it. Without emulation the queues just hand messages on.
 *
 * Ending: any thread that fails sets `stop` and cancels the stream, which
 * wakes a reader blocked in gRPC; the others see `stop` at their next
 * wait. A client half-close instead lets the engine drain the inbox and
 * the writer the outbox before the call ends OK.
 */
#include "runtime/agent.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/agent_internal.h"
#include "runtime/link.h"
#include "runtime/protocol.h"

/* ---- small helpers -------------------------------------------------------- */

void agent_log(agent *a, agent_log_level level, const char *fmt, ...) {
  if (!a->o.log) return;
  char msg[ERR_MSG_BYTES + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  a->o.log(a->o.log_ctx, level, msg);
}

err_code agent_cond_init(pthread_cond_t *cv, err *e) {
  pthread_condattr_t at;
  pthread_condattr_init(&at);
  /* The link clock is CLOCK_MONOTONIC; waits must not jump with the date. */
  pthread_condattr_setclock(&at, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(cv, &at);
  pthread_condattr_destroy(&at);
  return rc ? err_set(e, ERR_NOMEM, "agent: cannot create a condition") : ERR_OK;
}

void agent_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                           double t_ms) {
  struct timespec ts;
  if (!(t_ms > 0)) t_ms = 0;
  ts.tv_sec = (time_t)(t_ms / 1e3);
  ts.tv_nsec = (long)((t_ms - (double)ts.tv_sec * 1e3) * 1e6);
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  pthread_cond_timedwait(cv, mu, &ts);
}

agent_options agent_default_options(void) {
  agent_options o = {.name = "agent", .threads = 1, .speed = 1.0};
  return o;
}

/* ---- the model registry --------------------------------------------------- */

static const model *registry_find_locked(agent *a, const char *digest) {
  for (int i = 0; i < a->n_models; i++)
    if (strcmp(a->models[i].digest, digest) == 0) return a->models[i].m;
  return NULL;
}

/* tile_options.find_model: models stay for the agent's life, so the
 * pointer outlives any engine. */
static const model *find_model(void *ctx, const char *digest) {
  agent *a = ctx;
  pthread_mutex_lock(&a->mu);
  const model *m = registry_find_locked(a, digest);
  pthread_mutex_unlock(&a->mu);
  return m;
}

static grpc_status_code reply_model(const char *name, const char *digest,
                                    const model *m, rpc_reply *reply,
                                    char *details, size_t details_len) {
  Edgedi__V1__LoadModelReply r = EDGEDI__V1__LOAD_MODEL_REPLY__INIT;
  r.name = (char *)(name && *name ? name : m->name);
  r.digest = (char *)digest;
  r.gflop = model_flops(m) / 1e9;
  r.params = model_param_count(m);
  r.layers = (uint32_t)m->n_layers;
  err e = {0};
  if (rpc_reply_set(reply, &r.base, &e) != ERR_OK) {
    snprintf(details, details_len, "%s", e.msg);
    return GRPC_STATUS_INTERNAL;
  }
  return GRPC_STATUS_OK;
}

static grpc_status_code on_load_model(void *ctx, const ProtobufCMessage *req,
                                      rpc_reply *reply, char *details,
                                      size_t details_len) {
  agent *a = ctx;
  const Edgedi__V1__LoadModelRequest *r = (const Edgedi__V1__LoadModelRequest *)req;
  const Edgedi__V1__ModelSpec *spec = r->spec;
  if (!spec) {
    snprintf(details, details_len, "LoadModel without a model spec");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  const char *want = spec->digest && spec->digest[0] ? spec->digest : NULL;
  if (want) {
    /* Building a big model takes seconds: a known digest is enough. */
    pthread_mutex_lock(&a->mu);
    const model *m = registry_find_locked(a, want);
    pthread_mutex_unlock(&a->mu);
    if (m) return reply_model(spec->name, want, m, reply, details, details_len);
  }
  model *m = NULL;
  char digest[MODELSPEC_DIGEST_BYTES];
  err e = {0};
  err_code rc = modelspec_build(spec, &m, digest, &e);
  if (rc != ERR_OK) {
    snprintf(details, details_len, "%s", e.msg);
    return rpc_status_from_err(rc);
  }
  if (want && strcmp(want, digest) != 0) {
    snprintf(details, details_len,
             "model '%s' builds to digest %s on agent %s, the scheduler's is "
             "%.32s: the two run different code or weights",
             spec->name ? spec->name : "", digest, a->name, want);
    model_destroy(m);
    return GRPC_STATUS_FAILED_PRECONDITION;
  }
  pthread_mutex_lock(&a->mu);
  const model *have = registry_find_locked(a, digest);
  bool full = !have && a->n_models == AGENT_MAX_MODELS;
  if (!have && !full) {
    agent_model *am = &a->models[a->n_models++];
    memcpy(am->digest, digest, sizeof digest);
    am->m = m;
    have = m;
    m = NULL;
  }
  pthread_mutex_unlock(&a->mu);
  model_destroy(m); /* built twice by concurrent calls, or refused */
  if (full) {
    snprintf(details, details_len, "agent %s holds %d models, its limit",
             a->name, AGENT_MAX_MODELS);
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  agent_log(a, AGENT_LOG_INFO, "model '%s' loaded: digest %s, %.2f GFLOP",
            spec->name ? spec->name : "", digest, model_flops(have) / 1e9);
  return reply_model(spec->name, digest, have, reply, details, details_len);
}

/* ---- a session's queues ----------------------------------------------------- */

typedef struct in_item {
  struct in_item *next;
  Edgedi__V1__ExecuteIn *msg;
  size_t bytes;
  double at_ms; /* emulated arrival */
} in_item;

typedef struct out_item {
  struct out_item *next;
  uint8_t *data; /* a packed ExecuteOut */
  size_t len;
  double at_ms; /* emulated arrival at the scheduler */
} out_item;

struct agent_session {
  agent *a;
  rpc_stream *s;
  uint64_t seq;
  tile_engine *eng;
  pthread_mutex_t mu; /* everything below */
  pthread_cond_t cv;  /* CLOCK_MONOTONIC; any change */
  in_item *in_head, *in_tail;
  size_t in_bytes;
  out_item *out_head, *out_tail;
  bool in_closed;   /* the client half-closed */
  bool engine_done; /* no more output will come */
  bool stop;        /* end now */
  bool cancelled;   /* replaced: its stream was cancelled from outside */
  link_dir link_in, link_out;
  grpc_status_code status; /* the first failure */
  char details[RPC_DETAILS_BYTES];
};

/* Records the first failure and ends the stream (caller holds s->mu). */
static void session_fail_locked(agent_session *s, grpc_status_code code,
                                const char *msg) {
  if (!s->stop) {
    s->stop = true;
    s->status = code;
    snprintf(s->details, sizeof s->details, "%.*s", (int)sizeof s->details - 1, msg);
    rpc_stream_cancel(s->s, code, s->details);
  }
  pthread_cond_broadcast(&s->cv);
}

/* Queues packed bytes for the writer through the outgoing link (caller
 * holds s->mu; data is taken). */
static void outbox_push_locked(agent_session *s, uint8_t *data, size_t len,
                               out_item *it) {
  it->next = NULL;
  it->data = data;
  it->len = len;
  it->at_ms = link_dir_book(&s->link_out, link_now_ms(), len);
  if (s->out_tail) s->out_tail->next = it;
  else s->out_head = it;
  s->out_tail = it;
  pthread_cond_broadcast(&s->cv);
}

/* Packs and queues a message the shell itself sends (Hello, errors). */
static err_code send_own(agent_session *s, const Edgedi__V1__ExecuteOut *m,
                         err *e) {
  size_t len = edgedi__v1__execute_out__get_packed_size(m);
  uint8_t *data = malloc(len ? len : 1);
  out_item *it = malloc(sizeof *it);
  if (!data || !it) {
    free(data);
    free(it);
    return err_set(e, ERR_NOMEM, "agent: out of memory for a message");
  }
  edgedi__v1__execute_out__pack(m, data);
  pthread_mutex_lock(&s->mu);
  outbox_push_locked(s, data, len, it);
  pthread_mutex_unlock(&s->mu);
  return ERR_OK;
}

static err_code send_tile_error(agent_session *s, uint32_t code,
                                const char *msg, err *e) {
  Edgedi__V1__TileError te = EDGEDI__V1__TILE_ERROR__INIT;
  te.code = code;
  te.message = (char *)msg;
  Edgedi__V1__ExecuteOut o = EDGEDI__V1__EXECUTE_OUT__INIT;
  o.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_ERROR;
  o.error = &te;
  return send_own(s, &o, e);
}

/* ---- engine and writer threads -------------------------------------------- */

/* Appends it to the input queue (caller holds s->mu). */
static void inbox_append_locked(agent_session *s, in_item *it) {
  if (s->in_tail) s->in_tail->next = it;
  else s->in_head = it;
  s->in_tail = it;
  s->in_bytes += it->bytes;
}

/* The engine's messages to itself (tile_outbox.loop) join the input queue
 * behind what is already waiting, with no emulated link (they never leave
 * the agent) and past the inbox limit (this thread is the queue's only
 * reader: waiting for room would wait for itself). */
static void loop_back_locked(agent_session *s, const tile_outbox *box) {
  for (int i = 0; i < box->n_loop; i++) {
    Edgedi__V1__ExecuteIn *m =
        edgedi__v1__execute_in__unpack(NULL, box->loop[i].len, box->loop[i].data);
    in_item *it = m ? malloc(sizeof *it) : NULL;
    if (!it) {
      rpc_free(m ? &m->base : NULL);
      session_fail_locked(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "agent: out of memory for input");
      return;
    }
    it->next = NULL;
    it->msg = m;
    it->bytes = box->loop[i].len;
    it->at_ms = link_now_ms();
    inbox_append_locked(s, it);
  }
}

static void *engine_main(void *arg) {
  agent_session *s = arg;
  agent *a = s->a;
  tile_outbox box = {0};
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->stop) break;
    in_item *it = s->in_head;
    if (!it) {
      if (s->in_closed) break;
      pthread_cond_wait(&s->cv, &s->mu);
      continue;
    }
    if (it->at_ms > link_now_ms()) {
      agent_cond_wait_until(&s->cv, &s->mu, it->at_ms);
      continue;
    }
    s->in_head = it->next;
    if (!s->in_head) s->in_tail = NULL;
    s->in_bytes -= it->bytes;
    pthread_cond_broadcast(&s->cv); /* room for the reader */
    pthread_mutex_unlock(&s->mu);

    err e = {0};
    double speed = agent_speed(a);
    pthread_mutex_lock(&a->compute_mu);
    err_code rc = tile_engine_set_speed(s->eng, speed, &e); /* valid: agent_set_speed checked it */
    /* at_ms: link_now_ms's clock, CLOCK_MONOTONIC like tile_now_ms's. */
    if (rc == ERR_OK) rc = tile_engine_handle_at(s->eng, it->msg, it->at_ms, &box, &e);
    pthread_mutex_unlock(&a->compute_mu);
    rpc_free(&it->msg->base);
    free(it);
    /* Queue items before taking the lock: allocation needs none. */
    out_item **items = box.n ? calloc((size_t)box.n, sizeof *items) : NULL;
    bool nomem = box.n && !items;
    for (int i = 0; i < box.n && !nomem; i++)
      nomem = !(items[i] = malloc(sizeof **items));

    pthread_mutex_lock(&s->mu);
    if (rc == ERR_OK && nomem) rc = err_set(&e, ERR_NOMEM, "agent: out of memory for output");
    if (rc != ERR_OK) {
      /* The engine's own trouble: its state is no longer trustworthy. */
      agent_log(a, AGENT_LOG_ERROR, "execute: %s", e.msg);
      session_fail_locked(s, GRPC_STATUS_INTERNAL, e.msg);
    } else {
      for (int i = 0; i < box.n; i++) {
        outbox_push_locked(s, box.msgs[i].data, box.msgs[i].len, items[i]);
        box.msgs[i].data = NULL; /* taken */
        items[i] = NULL;
      }
    }
    for (int i = 0; items && i < box.n; i++) free(items[i]);
    free(items);
    if (rc == ERR_OK) loop_back_locked(s, &box);
    tile_outbox_clear(&box);
  }
  s->engine_done = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  tile_outbox_free(&box);
  return NULL;
}

/* A TileError in place of a message that is over the size limit. */
static err_code write_too_big(agent_session *s, const Edgedi__V1__ExecuteOut *m,
                              const char *why, err *e) {
  Edgedi__V1__TileError te = EDGEDI__V1__TILE_ERROR__INIT;
  switch (m->msg_case) {
    case EDGEDI__V1__EXECUTE_OUT__MSG_ROWS:
      te.request_id = m->rows->request_id;
      te.segment = m->rows->segment;
      break;
    case EDGEDI__V1__EXECUTE_OUT__MSG_RESULT:
      te.request_id = m->result->request_id;
      te.segment = m->result->segment;
      break;
    case EDGEDI__V1__EXECUTE_OUT__MSG_FE_SUMS:
      te.request_id = m->fe_sums->request_id;
      te.segment = m->fe_sums->segment;
      break;
    default:
      break;
  }
  te.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
  te.message = (char *)why;
  Edgedi__V1__ExecuteOut o = EDGEDI__V1__EXECUTE_OUT__INIT;
  o.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_ERROR;
  o.error = &te;
  return rpc_stream_write(s->s, &o.base, e);
}

static void *writer_main(void *arg) {
  agent_session *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    if (s->stop) break;
    out_item *it = s->out_head;
    if (!it) {
      if (s->engine_done) break;
      pthread_cond_wait(&s->cv, &s->mu);
      continue;
    }
    if (it->at_ms > link_now_ms()) {
      agent_cond_wait_until(&s->cv, &s->mu, it->at_ms);
      continue;
    }
    s->out_head = it->next;
    if (!s->out_head) s->out_tail = NULL;
    pthread_mutex_unlock(&s->mu);

    err e = {0};
    err_code rc = rpc_stream_write_packed(s->s, it->data, it->len,
                                          "edgedi.v1.ExecuteOut", &e);
    if (rc == ERR_INVALID) {
      /* Over the message size limit: the stream is unharmed, and the
       * scheduler learns why this request's output will never come. */
      agent_log(s->a, AGENT_LOG_WARN, "execute: %s", e.msg);
      Edgedi__V1__ExecuteOut *m = edgedi__v1__execute_out__unpack(NULL, it->len, it->data);
      if (!m) rc = err_set(&e, ERR_INTERNAL, "agent: an ExecuteOut of its own does not decode");
      else rc = write_too_big(s, m, e.msg, &e);
      if (m) edgedi__v1__execute_out__free_unpacked(m, NULL);
    }
    free(it->data);
    free(it);

    pthread_mutex_lock(&s->mu);
    if (rc != ERR_OK) {
      agent_log(s->a, AGENT_LOG_WARN, "execute: %s", e.msg);
      session_fail_locked(s, GRPC_STATUS_UNAVAILABLE, e.msg);
    }
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- Execute ----------------------------------------------------------------- */

/* Reads and checks the Hello; fills details and returns non-OK to end the
 * call. */
static grpc_status_code read_hello(agent_session *s, char *details,
                                   size_t details_len) {
  ProtobufCMessage *pm = NULL;
  err e = {0};
  err_code rc = rpc_stream_read(s->s, &edgedi__v1__execute_in__descriptor,
                                AGENT_HELLO_TIMEOUT_MS, &pm, &e);
  if (rc == ERR_DEADLINE) {
    snprintf(details, details_len, "no Hello within %d ms", AGENT_HELLO_TIMEOUT_MS);
    return GRPC_STATUS_DEADLINE_EXCEEDED;
  }
  if (rc == ERR_CORRUPT) {
    snprintf(details, details_len, "the first message does not decode as an ExecuteIn");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  if (rc != ERR_OK || !pm) {
    snprintf(details, details_len, "the stream ended before its Hello");
    return rc == ERR_OK ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_CANCELLED;
  }
  Edgedi__V1__ExecuteIn *in = (Edgedi__V1__ExecuteIn *)pm;
  link_sleep_until_ms(link_dir_book(&s->link_in, link_now_ms(),
                                    edgedi__v1__execute_in__get_packed_size(in)));
  grpc_status_code st = GRPC_STATUS_OK;
  if (in->msg_case != EDGEDI__V1__EXECUTE_IN__MSG_HELLO) {
    snprintf(details, details_len,
             "the first message of an Execute stream must be a Hello (field %d)",
             (int)in->msg_case);
    st = GRPC_STATUS_INVALID_ARGUMENT;
  } else if (in->hello->protocol_version != EDGEDI_PROTOCOL_VERSION) {
    snprintf(details, details_len, "agent %s speaks protocol v%d, scheduler v%u",
             s->a->name, EDGEDI_PROTOCOL_VERSION, in->hello->protocol_version);
    st = GRPC_STATUS_FAILED_PRECONDITION;
  }
  rpc_free(pm);
  return st;
}

/* Sends this agent's Hello straight from the call's thread (the writer is
 * not running yet), through the outgoing link like everything else. */
static err_code write_hello(agent_session *s, err *e) {
  Edgedi__V1__Hello hello = EDGEDI__V1__HELLO__INIT;
  hello.protocol_version = EDGEDI_PROTOCOL_VERSION;
  hello.name = s->a->name;
  Edgedi__V1__ExecuteOut ho = EDGEDI__V1__EXECUTE_OUT__INIT;
  ho.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_HELLO;
  ho.hello = &hello;
  link_sleep_until_ms(link_dir_book(&s->link_out, link_now_ms(),
                                    edgedi__v1__execute_out__get_packed_size(&ho)));
  return rpc_stream_write(s->s, &ho.base, e);
}

/* Cancels the live session's stream (caller holds a->mu); true when this
 * call did it. */
static bool cancel_live_locked(agent *a, grpc_status_code code, const char *why) {
  agent_session *old = a->live;
  if (!old) return false;
  pthread_mutex_lock(&old->mu);
  bool first = !old->cancelled;
  if (first) {
    old->cancelled = true;
    session_fail_locked(old, code, why);
  }
  pthread_mutex_unlock(&old->mu);
  return first;
}

/* Makes s the live session, replacing (and waiting out) the one before.
 * false: a still newer stream came meanwhile, and s gives way to it, or
 * the agent is shutting down. */
static bool session_take_over(agent_session *s) {
  agent *a = s->a;
  pthread_mutex_lock(&a->mu);
  s->seq = ++a->session_seq;
  while (a->live && a->session_seq == s->seq && !a->closing) {
    if (cancel_live_locked(a, GRPC_STATUS_ABORTED, "replaced by a newer Execute stream"))
      agent_log(a, AGENT_LOG_INFO, "execute: a new stream replaces the live one");
    pthread_cond_wait(&a->cv, &a->mu);
  }
  bool won = a->session_seq == s->seq && !a->closing;
  if (won) {
    a->live = s;
    a->streams++;
  }
  pthread_mutex_unlock(&a->mu);
  return won;
}

static void session_free_queues(agent_session *s) {
  while (s->in_head) {
    in_item *it = s->in_head;
    s->in_head = it->next;
    rpc_free(&it->msg->base);
    free(it);
  }
  while (s->out_head) {
    out_item *it = s->out_head;
    s->out_head = it->next;
    free(it->data);
    free(it);
  }
}

/* The reader loop: stream -> incoming link -> inbox, until the end. */
static void session_read(agent_session *s) {
  for (;;) {
    ProtobufCMessage *pm = NULL;
    err e = {0};
    err_code rc = rpc_stream_read(s->s, &edgedi__v1__execute_in__descriptor, -1, &pm, &e);
    if (rc == ERR_CORRUPT) {
      char msg[ERR_MSG_BYTES + 32];
      snprintf(msg, sizeof msg, "malformed ExecuteIn: %s", e.msg);
      agent_log(s->a, AGENT_LOG_WARN, "execute: %s", msg);
      if (send_tile_error(s, GRPC_STATUS_INVALID_ARGUMENT, msg, &e) == ERR_OK) continue;
      rc = e.code;
    }
    pthread_mutex_lock(&s->mu);
    if (rc != ERR_OK) {
      /* Cancelled, replaced, shut down or gone: nothing more to send to. */
      if (!s->stop) {
        s->stop = true;
        s->status = GRPC_STATUS_CANCELLED;
        snprintf(s->details, sizeof s->details, "%.*s", (int)sizeof s->details - 1, e.msg);
      }
      pthread_cond_broadcast(&s->cv);
      pthread_mutex_unlock(&s->mu);
      return;
    }
    if (!pm) {
      s->in_closed = true;
      pthread_cond_broadcast(&s->cv);
      pthread_mutex_unlock(&s->mu);
      return;
    }
    in_item *it = malloc(sizeof *it);
    if (!it) {
      rpc_free(pm);
      session_fail_locked(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "agent: out of memory for input");
      pthread_mutex_unlock(&s->mu);
      return;
    }
    it->next = NULL;
    it->msg = (Edgedi__V1__ExecuteIn *)pm;
    it->bytes = protobuf_c_message_get_packed_size(pm);
    it->at_ms = link_dir_book(&s->link_in, link_now_ms(), it->bytes);
    while (!s->stop && s->in_head && s->in_bytes + it->bytes > (size_t)AGENT_INBOX_MAX_BYTES)
      pthread_cond_wait(&s->cv, &s->mu);
    if (s->stop) {
      pthread_mutex_unlock(&s->mu);
      rpc_free(pm);
      free(it);
      return;
    }
    inbox_append_locked(s, it);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
  }
}

static grpc_status_code on_execute(void *ctx, rpc_stream *stream, char *details,
                                   size_t details_len) {
  agent *a = ctx;
  agent_session *s = calloc(1, sizeof *s);
  err e = {0};
  if (!s || pthread_mutex_init(&s->mu, NULL) != 0) {
    free(s);
    snprintf(details, details_len, "agent: out of memory for a stream");
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  if (agent_cond_init(&s->cv, &e) != ERR_OK) {
    pthread_mutex_destroy(&s->mu);
    free(s);
    snprintf(details, details_len, "%s", e.msg);
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  s->a = a;
  s->s = stream;
  link_dir_init(&s->link_in, a->o.link_mbps, a->o.link_rtt_ms);
  link_dir_init(&s->link_out, a->o.link_mbps, a->o.link_rtt_ms);

  grpc_status_code st = read_hello(s, details, details_len);
  if (st != GRPC_STATUS_OK) {
    agent_log(a, AGENT_LOG_WARN, "execute: refused a stream: %s", details);
    goto out_unlive;
  }
  /* Answered before the stream it replaces has wound down (whose engine
   * may be in the middle of a long tile): a scheduler's handshake has a
   * deadline, and the messages that follow wait in gRPC meanwhile. */
  pthread_mutex_lock(&a->mu);
  bool closing = a->closing;
  pthread_mutex_unlock(&a->mu);
  if (!closing && write_hello(s, &e) != ERR_OK) {
    snprintf(details, details_len, "%s", e.msg);
    st = GRPC_STATUS_UNAVAILABLE;
    goto out_unlive;
  }
  if (closing || !session_take_over(s)) {
    pthread_mutex_lock(&a->mu);
    closing = a->closing;
    pthread_mutex_unlock(&a->mu);
    if (closing) {
      snprintf(details, details_len, "agent %s is shutting down", a->name);
      st = GRPC_STATUS_UNAVAILABLE;
    } else {
      snprintf(details, details_len, "replaced by a newer Execute stream");
      st = GRPC_STATUS_ABORTED;
    }
    goto out_unlive;
  }
  tile_options to = tile_default_options();
  to.speed = a->o.speed;
  to.threads = a->o.threads;
  to.gate = a->o.gate;
  to.whole_strips = a->o.whole_strips;
  to.find_model = find_model;
  to.find_model_ctx = a;
  if (tile_engine_create(&to, &s->eng, &e) != ERR_OK) {
    snprintf(details, details_len, "%s", e.msg);
    st = GRPC_STATUS_INTERNAL;
    goto out;
  }
  agent_log(a, AGENT_LOG_INFO, "execute: stream %llu is live",
            (unsigned long long)s->seq);

  pthread_t engine, writer;
  bool have_engine = pthread_create(&engine, NULL, engine_main, s) == 0;
  bool have_writer = have_engine && pthread_create(&writer, NULL, writer_main, s) == 0;
  if (have_writer) {
    session_read(s);
  } else {
    pthread_mutex_lock(&s->mu);
    session_fail_locked(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "agent: cannot start a thread");
    pthread_mutex_unlock(&s->mu);
  }
  if (have_engine) pthread_join(engine, NULL);
  if (have_writer) pthread_join(writer, NULL);
  pthread_mutex_lock(&s->mu);
  st = s->stop ? s->status : GRPC_STATUS_OK;
  snprintf(details, details_len, "%s", s->stop ? s->details : "");
  pthread_mutex_unlock(&s->mu);
  agent_log(a, AGENT_LOG_INFO, "execute: stream %llu ended: %s%s%s",
            (unsigned long long)s->seq, rpc_status_name(st), *details ? ": " : "",
            details);

out:
  pthread_mutex_lock(&a->mu);
  if (a->live == s) {
    a->live = NULL;
    a->last_stream_end_ms = link_now_ms();
  }
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
out_unlive:
  session_free_queues(s);
  tile_engine_destroy(s->eng);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
  return st;
}

/* ---- the agent ------------------------------------------------------------------ */

err_code agent_create(const agent_options *o, agent **out, err *e) {
  if (!out) return err_set(e, ERR_INVALID, "agent_create without output");
  *out = NULL;
  agent_options opt = o ? *o : agent_default_options();
  if (!opt.name || !opt.name[0] || strlen(opt.name) >= AGENT_NAME_BYTES)
    return err_set(e, ERR_INVALID, "agent name must have 1 to %d characters",
                   AGENT_NAME_BYTES - 1);
  if (opt.threads < 1 || opt.threads > AGENT_MAX_THREADS)
    return err_set(e, ERR_INVALID, "threads %d is not in [1, %d]", opt.threads,
                   AGENT_MAX_THREADS);
  if (!(opt.speed > 0 && opt.speed <= 1e6))
    return err_set(e, ERR_INVALID, "speed %g is not a positive factor", opt.speed);
  err_code rc = link_check(opt.link_mbps, opt.link_rtt_ms, e);
  if (rc != ERR_OK) return rc;
  agent *a = calloc(1, sizeof *a);
  if (!a) return err_set(e, ERR_NOMEM, "agent: out of memory");
  a->o = opt;
  a->speed = opt.speed;
  snprintf(a->name, sizeof a->name, "%s", opt.name);
  a->o.name = a->name;
  a->last_stream_end_ms = -INFINITY;
  pthread_mutex_init(&a->compute_mu, NULL);
  pthread_mutex_init(&a->mu, NULL);
  pthread_mutex_init(&a->profile_mu, NULL);
  rc = agent_cond_init(&a->cv, e);
  if (rc == ERR_OK) rc = agent_profile_init(a, e);
  if (rc != ERR_OK) {
    agent_destroy(a);
    return rc;
  }
  *out = a;
  return ERR_OK;
}

err_code agent_serve(agent *a, rpc_server *srv, err *e) {
  if (!a || !srv) return err_set(e, ERR_INVALID, "agent_serve needs an agent and a server");
  err_code rc = rpc_server_add_stream(srv, AGENT_EXECUTE_METHOD, on_execute, a, e);
  if (rc == ERR_OK)
    rc = rpc_server_add_unary(srv, AGENT_LOAD_MODEL_METHOD,
                              &edgedi__v1__load_model_request__descriptor,
                              on_load_model, a, e);
  if (rc == ERR_OK)
    rc = rpc_server_add_unary(srv, AGENT_PROFILE_METHOD,
                              &edgedi__v1__profile_request__descriptor,
                              agent_on_profile, a, e);
  return rc;
}

void agent_get_status(agent *a, agent_status *s) {
  memset(s, 0, sizeof *s);
  pthread_mutex_lock(&a->mu);
  s->stream_live = a->live != NULL;
  s->streams = a->streams;
  s->registrations = a->registrations;
  s->device_id = a->device_id;
  s->refused = a->refused;
  s->gave_up = a->gave_up;
  snprintf(s->refusal, sizeof s->refusal, "%s", a->refusal);
  s->models = a->n_models;
  pthread_mutex_unlock(&a->mu);
}

err_code agent_set_speed(agent *a, double speed, err *e) {
  if (!a) return err_set(e, ERR_INVALID, "agent_set_speed without an agent");
  if (!(speed > 0 && speed <= 1e6))
    return err_set(e, ERR_INVALID, "speed %g is not a positive factor", speed);
  pthread_mutex_lock(&a->mu);
  double was = a->speed;
  a->speed = speed;
  pthread_mutex_unlock(&a->mu);
  if (was != speed) agent_log(a, AGENT_LOG_INFO, "speed %g -> %g", was, speed);
  return ERR_OK;
}

double agent_speed(agent *a) {
  pthread_mutex_lock(&a->mu);
  double s = a->speed;
  pthread_mutex_unlock(&a->mu);
  return s;
}

void agent_shutdown(agent *a) {
  if (!a) return;
  char why[AGENT_NAME_BYTES + 32];
  snprintf(why, sizeof why, "agent %s is shutting down", a->name);
  pthread_mutex_lock(&a->mu);
  a->closing = true;
  cancel_live_locked(a, GRPC_STATUS_UNAVAILABLE, why);
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

void agent_destroy(agent *a) {
  if (!a) return;
  agent_register_stop(a);
  agent_profile_free(a);
  for (int i = 0; i < a->n_models; i++) model_destroy(a->models[i].m);
  pthread_cond_destroy(&a->cv);
  pthread_mutex_destroy(&a->profile_mu);
  pthread_mutex_destroy(&a->mu);
  pthread_mutex_destroy(&a->compute_mu);
  free(a);
}

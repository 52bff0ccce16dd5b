/* rpc_server.c — the server side: method registry, call dispatch, unary
 * calls, health, shutdown (streams themselves live in rpc_stream.c).
 *
 * Threads:
 *  - one dispatcher thread waits on the server's notification queue
 *    (cq_new). Each registered method, and one catch-all for unregistered
 *    methods, always has exactly one call requested ("armed" slot), each
 *    with a fresh pluck queue that the call will be bound to;
 *  - when a call arrives the dispatcher hands the slot's call and queue to
 *    a new joinable thread and re-arms the slot, so a slow handler never
 *    delays the next call. Finished threads are joined by the dispatcher as
 *    new calls come, and all of them by rpc_server_destroy.
 * The catch-all slot matters: gRPC core leaves a call to an unregistered
 * method waiting, silently, until someone requests a generic call; we
 * answer UNIMPLEMENTED.
 *
 * Shutdown: grpc_server_shutdown_and_notify fails the armed requests and,
 * once every call is over, posts the shutdown tag. After grace_ms we cancel
 * the calls still running, which ends their reads and writes so their
 * handlers return. The dispatcher then shuts cq_new down and drains it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc_security.h>
#include <grpc/slice.h>

#include "proto/health.pb-c.h"
#include "runtime/rpc.h"
#include "runtime/rpc_internal.h"

typedef enum { KIND_UNARY, KIND_STREAM, KIND_UNKNOWN } method_kind;

/* What gRPC fills in when a requested call arrives. */
typedef struct incoming {
  grpc_call *call;
  grpc_completion_queue *cq; /* the call's own pluck queue */
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload; /* unary: the request */
  grpc_call_details details; /* unregistered methods: the name */
} incoming;

typedef struct method {
  char *name;
  method_kind kind;
  const ProtobufCMessageDescriptor *req_desc;
  rpc_unary_fn unary;
  rpc_stream_fn stream;
  void *ctx;
  void *handle; /* grpc_server_register_method's; NULL for the catch-all */
  rpc_server *server;
  incoming slot; /* the armed request; its address is the tag */
} method;

typedef struct call_thread {
  struct call_thread *next;
  rpc_server *server;
  method *m;
  incoming in;
  pthread_t thread;
  int done; /* under server->mu */
} call_thread;

struct rpc_reply {
  const char *method;
  int max_message_bytes;
  grpc_byte_buffer *bb;
  grpc_status_code fail; /* a failed rpc_reply_set overrides OK */
  char fail_msg[ERR_MSG_BYTES];
};

struct rpc_server {
  grpc_server *server;
  grpc_completion_queue *cq_new;
  rpc_options opt;
  int port;
  int started;
  atomic_int health;

  method **methods;
  size_t n_methods;
  method unknown; /* the catch-all */

  pthread_t dispatcher;
  pthread_mutex_t mu;
  pthread_cond_t cv;   /* signalled when shutdown_done becomes 1 */
  int stopping;        /* no more re-arming */
  int shutdown_done;   /* the shutdown tag arrived */
  call_thread *calls;  /* running and finished, not yet joined */
  char shutdown_tag;   /* its address is the tag */
};

static const char HEALTH_CHECK_METHOD[] = "/grpc.health.v1.Health/Check";

static grpc_status_code health_check(void *ctx, const ProtobufCMessage *req,
                                     rpc_reply *reply, char *details,
                                     size_t details_len);

/* ---- creation and registration ------------------------------------------- */

err_code rpc_server_create(const char *address, const rpc_options *opt,
                           rpc_server **out, int *port, err *e) {
  *out = NULL;
  if (port) *port = 0;
  if (!address || !address[0])
    return err_set(e, ERR_INVALID, "rpc_server_create: empty address");
  rpc_options o;
  err_code rc = rpc__options(opt, &o, e);
  if (rc) return rc;
  rpc_server *s = calloc(1, sizeof *s);
  if (!s) return err_set(e, ERR_NOMEM, "server: out of memory");
  s->opt = o;
  atomic_init(&s->health,
              GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv, &ca);
  pthread_condattr_destroy(&ca);
  s->unknown.kind = KIND_UNKNOWN;
  s->unknown.server = s;

  rpc__lib_ref();
  rpc_args a;
  rpc__args(&o, 1, &a);
  s->server = grpc_server_create(&a.set, NULL);
  s->cq_new = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(s->server, s->cq_new, NULL);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  s->port = grpc_server_add_http2_port(s->server, address, creds);
  grpc_server_credentials_release(creds);
  if (s->port <= 0) {
    rpc_server_destroy(s, 0);
    return err_set(e, ERR_IO,
                   "cannot listen on %s: address in use or not valid",
                   address);
  }
  rc = rpc_server_add_unary(s, HEALTH_CHECK_METHOD,
                            &grpc__health__v1__health_check_request__descriptor,
                            health_check, s, e);
  if (rc) {
    rpc_server_destroy(s, 0);
    return rc;
  }
  if (port) *port = s->port;
  *out = s;
  return ERR_OK;
}

int rpc_server_port(const rpc_server *s) { return s->port; }

static err_code add_method(rpc_server *s, const char *name, method_kind kind,
                           const ProtobufCMessageDescriptor *req_desc,
                           rpc_unary_fn unary, rpc_stream_fn stream, void *ctx,
                           err *e) {
  if (s->started)
    return err_set(e, ERR_INVALID, "%s: register methods before start", name);
  if (!name || name[0] != '/' || !strchr(name + 1, '/'))
    return err_set(e, ERR_INVALID,
                   "method %s: want \"/package.Service/Method\"",
                   name ? name : "(null)");
  for (size_t i = 0; i < s->n_methods; i++)
    if (strcmp(s->methods[i]->name, name) == 0)
      return err_set(e, ERR_INVALID, "method %s registered twice", name);
  method **grown = realloc(s->methods, (s->n_methods + 1) * sizeof *grown);
  if (!grown) return err_set(e, ERR_NOMEM, "%s: out of memory", name);
  s->methods = grown;
  method *m = calloc(1, sizeof *m);
  if (m) m->name = strdup(name);
  if (!m || !m->name) {
    free(m);
    return err_set(e, ERR_NOMEM, "%s: out of memory", name);
  }
  m->kind = kind;
  m->req_desc = req_desc;
  m->unary = unary;
  m->stream = stream;
  m->ctx = ctx;
  m->server = s;
  /* Unary requests arrive with the call: one less round trip through the
   * queue, and a malformed one is refused before a thread is made. */
  m->handle = grpc_server_register_method(
      s->server, name, NULL,
      kind == KIND_UNARY ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
                         : GRPC_SRM_PAYLOAD_NONE,
      0);
  if (!m->handle) {
    free(m->name);
    free(m);
    return err_set(e, ERR_INVALID, "gRPC refused to register method %s",
                   name);
  }
  s->methods[s->n_methods++] = m;
  return ERR_OK;
}

err_code rpc_server_add_unary(rpc_server *s, const char *method,
                              const ProtobufCMessageDescriptor *req_desc,
                              rpc_unary_fn fn, void *ctx, err *e) {
  if (!fn || !req_desc)
    return err_set(e, ERR_INVALID, "%s: no handler or request type",
                   method ? method : "(null)");
  return add_method(s, method, KIND_UNARY, req_desc, fn, NULL, ctx, e);
}

err_code rpc_server_add_stream(rpc_server *s, const char *method,
                               rpc_stream_fn fn, void *ctx, err *e) {
  if (!fn)
    return err_set(e, ERR_INVALID, "%s: no handler",
                   method ? method : "(null)");
  return add_method(s, method, KIND_STREAM, NULL, NULL, fn, ctx, e);
}

void rpc_server_set_health(rpc_server *s, rpc_health status) {
  atomic_store(&s->health, (int)status);
}

/* ---- arming and dispatch ------------------------------------------------- */

static void incoming_clear(incoming *in) {
  memset(in, 0, sizeof *in);
  grpc_metadata_array_init(&in->md);
  grpc_call_details_init(&in->details);
}

/* Frees what an incoming holds; the call must be over (or never was). */
static void incoming_release(incoming *in) {
  if (in->call) grpc_call_unref(in->call);
  rpc__cq_destroy(in->cq);
  if (in->payload) grpc_byte_buffer_destroy(in->payload);
  grpc_metadata_array_destroy(&in->md);
  grpc_call_details_destroy(&in->details);
  memset(in, 0, sizeof *in);
}

/* Requests the next call for m, bound to a fresh queue. */
static int arm(rpc_server *s, method *m) {
  incoming *in = &m->slot;
  incoming_clear(in);
  in->cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_call_error ce;
  if (m->kind == KIND_UNKNOWN) {
    ce = grpc_server_request_call(s->server, &in->call, &in->details,
                                  &in->md, in->cq, s->cq_new, in);
  } else {
    ce = grpc_server_request_registered_call(
        s->server, m->handle, &in->call, &in->deadline, &in->md,
        m->kind == KIND_UNARY ? &in->payload : NULL, in->cq, s->cq_new, in);
  }
  if (ce != GRPC_CALL_OK) {
    incoming_release(in);
    return 0;
  }
  return 1;
}

static void *call_main(void *arg);

/* Joins threads whose call is over. Caller holds s->mu. */
static void reap_locked(rpc_server *s) {
  for (call_thread **p = &s->calls; *p;) {
    call_thread *t = *p;
    if (t->done) {
      *p = t->next;
      pthread_join(t->thread, NULL);
      free(t);
    } else {
      p = &t->next;
    }
  }
}

/* A call arrived for m: give it a thread. */
static void launch(rpc_server *s, method *m) {
  call_thread *t = calloc(1, sizeof *t);
  if (t) {
    t->server = s;
    t->m = m;
    t->in = m->slot;
    pthread_mutex_lock(&s->mu);
    reap_locked(s);
    if (pthread_create(&t->thread, NULL, call_main, t) == 0) {
      t->next = s->calls;
      s->calls = t;
      pthread_mutex_unlock(&s->mu);
      return;
    }
    pthread_mutex_unlock(&s->mu);
    free(t);
  }
  /* No memory or no thread: refuse the call rather than block dispatch.
   * Cancelling posts nothing to the call's queue, so it can go at once. */
  grpc_call_cancel_with_status(m->slot.call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                               "server out of threads", NULL);
  incoming_release(&m->slot);
}

static void *dispatch_main(void *arg) {
  rpc_server *s = arg;
  size_t armed = 0;
  for (size_t i = 0; i < s->n_methods; i++) armed += arm(s, s->methods[i]);
  armed += arm(s, &s->unknown);
  int shutdown_seen = 0;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(
        s->cq_new, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    if (ev.tag == &s->shutdown_tag) {
      shutdown_seen = 1;
      pthread_mutex_lock(&s->mu);
      s->shutdown_done = 1;
      pthread_cond_broadcast(&s->cv);
      pthread_mutex_unlock(&s->mu);
    } else {
      method *m = (method *)((char *)ev.tag - offsetof(method, slot));
      armed--;
      if (ev.success)
        launch(s, m);
      else
        incoming_release(&m->slot); /* request failed: server shutting down */
      pthread_mutex_lock(&s->mu);
      int stopping = s->stopping;
      pthread_mutex_unlock(&s->mu);
      /* Re-arming after shutdown began is harmless (gRPC fails the request
       * at once), but there is no point. */
      if (!stopping) armed += arm(s, m);
    }
    if (shutdown_seen && armed == 0) grpc_completion_queue_shutdown(s->cq_new);
  }
  return NULL;
}

err_code rpc_server_start(rpc_server *s, err *e) {
  if (s->started) return err_set(e, ERR_INVALID, "server already started");
  grpc_server_start(s->server);
  s->started = 1;
  if (pthread_create(&s->dispatcher, NULL, dispatch_main, s) != 0) {
    s->started = 0;
    return err_set(e, ERR_NOMEM, "server: cannot start the dispatcher");
  }
  return ERR_OK;
}

/* ---- serving one call ---------------------------------------------------- */

/* Copies src into dst[n], cut short if need be. */
static void copy_str(char *dst, size_t n, const char *src) {
  size_t len = strlen(src);
  if (len >= n) len = n - 1;
  memcpy(dst, src, len);
  dst[len] = '\0';
}

err_code rpc_reply_set(rpc_reply *r, const ProtobufCMessage *msg, err *e) {
  if (r->bb) {
    grpc_byte_buffer_destroy(r->bb);
    r->bb = NULL;
  }
  r->fail = GRPC_STATUS_OK; /* the last reply set is the one that counts */
  err local;
  err_code rc = rpc_pack(msg, &r->bb, &local);
  if (rc) {
    r->fail = GRPC_STATUS_INTERNAL;
  } else if (grpc_byte_buffer_length(r->bb) > (size_t)r->max_message_bytes) {
    /* Refused here with a clear message; gRPC would fail the call with a
     * vaguer one. */
    rc = err_set(&local, ERR_INVALID,
                 "reply %s of %zu bytes exceeds max_message_bytes %d",
                 msg->descriptor->name, grpc_byte_buffer_length(r->bb),
                 r->max_message_bytes);
    r->fail = GRPC_STATUS_RESOURCE_EXHAUSTED;
    grpc_byte_buffer_destroy(r->bb);
    r->bb = NULL;
  }
  if (rc) {
    copy_str(r->fail_msg, sizeof r->fail_msg, local.msg);
    if (e) *e = local;
  }
  return rc;
}

/* Sends the answer of a unary call (or any call answered without reading
 * it) and waits until the call is over. */
static void answer(incoming *in, const rpc_options *opt,
                   grpc_byte_buffer *reply, grpc_status_code code,
                   const char *details) {
  grpc_slice d = grpc_slice_from_copied_string(details ? details : "");
  int cancelled = 0;
  grpc_op ops[4];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (reply && code == GRPC_STATUS_OK) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = reply;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n++].data.send_status_from_server.status_details = &d;
  ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[n++].data.recv_close_on_server.cancelled = &cancelled;
  if (grpc_call_start_batch(in->call, ops, n, RPC_TAG_UNARY, NULL) ==
      GRPC_CALL_OK) {
    rpc__pluck_or_cancel(in->call, in->cq, RPC_TAG_UNARY,
                         opt->write_timeout_ms, "sending the reply timed out");
  } else {
    grpc_call_cancel_with_status(in->call, code, details, NULL);
  }
  grpc_slice_unref(d);
}

static void serve_unary(rpc_server *s, method *m, incoming *in) {
  char details[RPC_DETAILS_BYTES] = "";
  rpc_reply reply = {.method = m->name,
                     .max_message_bytes = s->opt.max_message_bytes,
                     .fail = GRPC_STATUS_OK};
  grpc_status_code code;
  ProtobufCMessage *req = NULL;
  err e;
  if (!in->payload) {
    code = GRPC_STATUS_INVALID_ARGUMENT;
    copy_str(details, sizeof details, "no request message");
  } else if (rpc_unpack(in->payload, m->req_desc, &req, &e) != ERR_OK) {
    code = GRPC_STATUS_INVALID_ARGUMENT;
    copy_str(details, sizeof details, e.msg);
  } else {
    code = m->unary(m->ctx, req, &reply, details, sizeof details);
    details[sizeof details - 1] = '\0';
    if (code == GRPC_STATUS_OK && reply.fail != GRPC_STATUS_OK) {
      code = reply.fail;
      copy_str(details, sizeof details, reply.fail_msg);
    }
  }
  if (code == GRPC_STATUS_OK && !reply.bb) {
    /* No reply set: the empty message, which decodes as any type's
     * default. */
    grpc_slice empty = grpc_empty_slice();
    reply.bb = grpc_raw_byte_buffer_create(&empty, 1);
  }
  answer(in, &s->opt, reply.bb, code, details);
  if (reply.bb) grpc_byte_buffer_destroy(reply.bb);
  rpc_free(req);
}

static void serve_stream(rpc_server *s, method *m, incoming *in) {
  err e;
  rpc_stream *st = rpc__stream_server(in->call, in->cq, m->name, &s->opt, &e);
  if (!st) {
    answer(in, &s->opt, NULL, GRPC_STATUS_INTERNAL, e.msg);
    return;
  }
  char details[RPC_DETAILS_BYTES] = "";
  grpc_status_code code = m->stream(m->ctx, st, details, sizeof details);
  details[sizeof details - 1] = '\0';
  rpc__stream_server_finish(st, code, details);
}

static void serve_unknown(incoming *in, const rpc_options *opt) {
  char details[RPC_DETAILS_BYTES];
  char *name = rpc__slice_str(in->details.method);
  snprintf(details, sizeof details, "unknown method %s",
           name ? name : "(out of memory)");
  free(name);
  answer(in, opt, NULL, GRPC_STATUS_UNIMPLEMENTED, details);
}

static void *call_main(void *arg) {
  call_thread *t = arg;
  rpc_server *s = t->server;
  switch (t->m->kind) {
    case KIND_UNARY: serve_unary(s, t->m, &t->in); break;
    case KIND_STREAM: serve_stream(s, t->m, &t->in); break;
    case KIND_UNKNOWN: serve_unknown(&t->in, &s->opt); break;
  }
  incoming_release(&t->in);
  pthread_mutex_lock(&s->mu);
  t->done = 1;
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- health -------------------------------------------------------------- */

/* Is `service` ("package.Service") one this server has methods of? */
static int knows_service(const rpc_server *s, const char *service) {
  size_t n = strlen(service);
  for (size_t i = 0; i < s->n_methods; i++) {
    const char *name = s->methods[i]->name; /* "/package.Service/Method" */
    if (strncmp(name + 1, service, n) == 0 && name[1 + n] == '/') return 1;
  }
  return 0;
}

static grpc_status_code health_check(void *ctx, const ProtobufCMessage *req,
                                     rpc_reply *reply, char *details,
                                     size_t details_len) {
  const rpc_server *s = ctx;
  const Grpc__Health__V1__HealthCheckRequest *r =
      (const Grpc__Health__V1__HealthCheckRequest *)req;
  const char *service = r->service ? r->service : "";
  /* The health protocol: an unknown service is NOT_FOUND, not a status. */
  if (service[0] && !knows_service(s, service)) {
    snprintf(details, details_len, "unknown service %s", service);
    return GRPC_STATUS_NOT_FOUND;
  }
  Grpc__Health__V1__HealthCheckResponse resp =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = (rpc_health)atomic_load(&s->health);
  if (rpc_reply_set(reply, &resp.base, NULL)) return GRPC_STATUS_INTERNAL;
  return GRPC_STATUS_OK;
}

/* ---- shutdown ------------------------------------------------------------ */

void rpc_server_destroy(rpc_server *s, int grace_ms) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  pthread_mutex_unlock(&s->mu);
  grpc_server_shutdown_and_notify(s->server, s->cq_new, &s->shutdown_tag);
  if (s->started) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (grace_ms < 0) grace_ms = 0;
    until.tv_sec += grace_ms / 1000;
    until.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->shutdown_done &&
           pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0) {
    }
    int done = s->shutdown_done;
    pthread_mutex_unlock(&s->mu);
    /* Ends every read and write still in progress, so handlers return. */
    if (!done) grpc_server_cancel_all_calls(s->server);
    pthread_join(s->dispatcher, NULL);
  } else {
    /* Never started: nothing but the shutdown tag can arrive. */
    grpc_completion_queue_next(s->cq_new, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                               NULL);
    grpc_completion_queue_shutdown(s->cq_new);
    while (grpc_completion_queue_next(s->cq_new,
                                      gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                      NULL)
               .type != GRPC_QUEUE_SHUTDOWN) {
    }
  }
  /* Every call is over once the shutdown tag came; their threads are at
   * most finishing their cleanup. */
  pthread_mutex_lock(&s->mu);
  call_thread *calls = s->calls;
  s->calls = NULL;
  pthread_mutex_unlock(&s->mu);
  while (calls) {
    call_thread *t = calls;
    calls = t->next;
    pthread_join(t->thread, NULL);
    free(t);
  }
  grpc_server_destroy(s->server);
  grpc_completion_queue_destroy(s->cq_new);
  for (size_t i = 0; i < s->n_methods; i++) {
    free(s->methods[i]->name);
    free(s->methods[i]);
  }
  free(s->methods);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
  rpc__lib_unref();
}

/* rpc_stream.c — bidirectional streams, the same rpc_stream on both sides
 * (see rpc.h for the promise).
 *
 * How: each stream owns (client) or borrows (server) one call and one pluck
 * completion queue. gRPC allows send batches and receive batches to be
 * started concurrently as long as each kind is serialized, so:
 *  - the send side (SEND_INITIAL_METADATA, SEND_MESSAGE, half-close, server
 *    status) is serialized by send_mu, one batch in flight at a time, and
 *    the writer plucks its own completion;
 *  - the receive side (RECV_MESSAGE) belongs to the single reader thread;
 *    a read that times out leaves its batch pending and the next read
 *    plucks it, since a started batch cannot be withdrawn;
 *  - the final batch (RECV_STATUS_ON_CLIENT / RECV_CLOSE_ON_SERVER) starts
 *    with the stream and is plucked once the reader sees the end (client)
 *    or when the stream is torn down.
 * So at most two threads pluck one queue at a time (the reader, and the
 * writer that holds send_mu), well under gRPC's limit of six.
 *
 * Nothing waits unbounded on the peer: writes are bounded by
 * write_timeout_ms (then the call is cancelled so the write completes),
 * reads by the caller's timeout, and a dead connection fails every
 * pending batch (keepalive finds silent deaths).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/slice.h>

#include "runtime/rpc.h"
#include "runtime/rpc_internal.h"

struct rpc_stream {
  int is_server;
  rpc_channel *channel; /* client: a reference, so the channel outlives us */
  grpc_call *call;
  grpc_completion_queue *cq;
  char *method;
  rpc_options opt;

  /* Send side, under send_mu. */
  pthread_mutex_t send_mu;
  int init_pending; /* SEND_INITIAL_METADATA started, not yet plucked */
  int send_closed;  /* half-closed (client) or closed for writes (server) */
  int send_failed;  /* a send batch failed: the call is over */

  /* Receive side: the reader thread only. */
  int recv_pending;      /* RECV_MESSAGE started, not yet plucked */
  int recv_md_asked;     /* client: RECV_INITIAL_METADATA requested */
  grpc_byte_buffer *recv_buf;
  grpc_metadata_array recv_md;
  int ended;             /* the reader has seen the end */
  err end_err;           /* what a read after the end reports */

  /* The final batch. */
  int final_pending;
  grpc_status_code status; /* client: the server's; server: stream_ended's */
  grpc_slice status_slice;
  grpc_metadata_array trailing_md;
  int cancelled;           /* server: RECV_CLOSE_ON_SERVER's (unused) */
  int status_known;
  char *status_details;
};

static rpc_stream *stream_new(grpc_call *call, grpc_completion_queue *cq,
                              const char *method, const rpc_options *opt,
                              int is_server, err *e) {
  rpc_stream *s = calloc(1, sizeof *s);
  if (s) s->method = strdup(method);
  if (!s || !s->method) {
    free(s);
    err_set(e, ERR_NOMEM, "%s: out of memory for a stream", method);
    return NULL;
  }
  s->is_server = is_server;
  s->call = call;
  s->cq = cq;
  s->opt = *opt;
  s->status = GRPC_STATUS_UNKNOWN;
  s->status_slice = grpc_empty_slice();
  pthread_mutex_init(&s->send_mu, NULL);
  grpc_metadata_array_init(&s->recv_md);
  grpc_metadata_array_init(&s->trailing_md);
  return s;
}

static void stream_free(rpc_stream *s) {
  grpc_metadata_array_destroy(&s->recv_md);
  grpc_metadata_array_destroy(&s->trailing_md);
  grpc_slice_unref(s->status_slice);
  pthread_mutex_destroy(&s->send_mu);
  free(s->status_details);
  free(s->method);
  free(s);
}

/* Starts the batches every stream begins with: initial metadata out (plucked
 * by the first send, so opening never waits for a connection) and the final
 * batch. */
static err_code stream_begin(rpc_stream *s, err *e) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_INITIAL_METADATA;
  grpc_call_error ce = grpc_call_start_batch(s->call, &op, 1, RPC_TAG_INIT,
                                             NULL);
  if (ce != GRPC_CALL_OK)
    return err_set(e, ERR_INTERNAL, "%s: start: %s", s->method,
                   grpc_call_error_to_string(ce));
  s->init_pending = 1;

  memset(&op, 0, sizeof op);
  if (s->is_server) {
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &s->cancelled;
  } else {
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    op.data.recv_status_on_client.status = &s->status;
    op.data.recv_status_on_client.status_details = &s->status_slice;
  }
  ce = grpc_call_start_batch(s->call, &op, 1, RPC_TAG_FINAL, NULL);
  if (ce != GRPC_CALL_OK) {
    grpc_call_cancel(s->call, NULL);
    rpc__pluck(s->cq, RPC_TAG_INIT, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    s->init_pending = 0;
    return err_set(e, ERR_INTERNAL, "%s: start: %s", s->method,
                   grpc_call_error_to_string(ce));
  }
  s->final_pending = 1;
  return ERR_OK;
}

/* ---- client side --------------------------------------------------------- */

err_code rpc_stream_open(rpc_channel *ch, const char *method, int deadline_ms,
                         rpc_stream **out, err *e) {
  *out = NULL;
  if (!ch || !method || method[0] != '/')
    return err_set(e, ERR_INVALID, "rpc_stream_open: bad method %s",
                   method ? method : "(null)");
  rpc_options opt;
  grpc_channel *gch = rpc__channel_ref(ch, &opt);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_slice m = grpc_slice_from_copied_string(method);
  grpc_call *call = grpc_channel_create_call(
      gch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
      rpc__deadline(deadline_ms > 0 ? deadline_ms : -1), NULL);
  grpc_slice_unref(m);
  rpc_stream *s = NULL;
  err_code rc;
  if (!call)
    rc = err_set(e, ERR_INTERNAL, "%s: cannot create the call", method);
  else if (!(s = stream_new(call, cq, method, &opt, 0, e)))
    rc = ERR_NOMEM;
  else
    rc = stream_begin(s, e);
  if (rc) {
    if (call) grpc_call_unref(call);
    rpc__cq_destroy(cq);
    if (s) stream_free(s);
    rpc__channel_unref(ch);
    return rc;
  }
  s->channel = ch;
  *out = s;
  return ERR_OK;
}

/* Collects every completion still owed, then frees. The call must be over
 * or cancelled, or this waits for it. */
static void stream_drain(rpc_stream *s) {
  gpr_timespec forever = gpr_inf_future(GPR_CLOCK_MONOTONIC);
  if (s->init_pending) rpc__pluck(s->cq, RPC_TAG_INIT, forever);
  if (s->recv_pending) rpc__pluck(s->cq, RPC_TAG_RECV, forever);
  if (s->final_pending) rpc__pluck(s->cq, RPC_TAG_FINAL, forever);
  s->init_pending = s->recv_pending = s->final_pending = 0;
  if (s->recv_buf) grpc_byte_buffer_destroy(s->recv_buf);
  s->recv_buf = NULL;
}

void rpc_stream_destroy(rpc_stream *s) {
  if (!s || s->is_server) return;
  /* Harmless when the call already ended; otherwise it makes every pending
   * batch complete, so the drain below cannot wait on the peer. */
  grpc_call_cancel_with_status(s->call, GRPC_STATUS_CANCELLED,
                               "stream closed by the client", NULL);
  stream_drain(s);
  grpc_call_unref(s->call);
  rpc__cq_destroy(s->cq);
  rpc__channel_unref(s->channel);
  stream_free(s);
}

/* ---- server side --------------------------------------------------------- */

rpc_stream *rpc__stream_server(grpc_call *call, grpc_completion_queue *cq,
                               const char *method, const rpc_options *opt,
                               err *e) {
  rpc_stream *s = stream_new(call, cq, method, opt, 1, e);
  if (!s) return NULL;
  if (stream_begin(s, e)) {
    stream_free(s);
    return NULL;
  }
  return s;
}

void rpc__stream_server_finish(rpc_stream *s, grpc_status_code code,
                               const char *details) {
  pthread_mutex_lock(&s->send_mu);
  if (s->init_pending) {
    rpc__pluck_or_cancel(s->call, s->cq, RPC_TAG_INIT, s->opt.write_timeout_ms,
                         "sending initial metadata timed out");
    s->init_pending = 0;
  }
  if (!s->send_failed) {
    grpc_slice d = grpc_slice_from_copied_string(details ? details : "");
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op.data.send_status_from_server.status = code;
    op.data.send_status_from_server.status_details = &d;
    if (grpc_call_start_batch(s->call, &op, 1, RPC_TAG_SEND, NULL) ==
        GRPC_CALL_OK)
      rpc__pluck_or_cancel(s->call, s->cq, RPC_TAG_SEND,
                           s->opt.write_timeout_ms,
                           "sending the status timed out");
    else
      grpc_call_cancel_with_status(s->call, code, details, NULL);
    grpc_slice_unref(d);
  } else {
    grpc_call_cancel(s->call, NULL);
  }
  s->send_closed = 1;
  pthread_mutex_unlock(&s->send_mu);
  /* With the status out, gRPC ends the receive side too: a read left
   * pending by a timeout and the final batch both complete now. */
  if (s->recv_pending)
    rpc__pluck_or_cancel(s->call, s->cq, RPC_TAG_RECV, RPC_DRAIN_WAIT_MS,
                         "stream teardown");
  if (s->final_pending)
    rpc__pluck_or_cancel(s->call, s->cq, RPC_TAG_FINAL, RPC_DRAIN_WAIT_MS,
                         "stream teardown");
  s->recv_pending = s->final_pending = 0;
  if (s->recv_buf) grpc_byte_buffer_destroy(s->recv_buf);
  s->recv_buf = NULL;
  stream_free(s);
}

/* ---- both sides ---------------------------------------------------------- */

const char *rpc_stream_method(const rpc_stream *s) { return s->method; }

/* Waits for a send-side batch (caller holds send_mu), bounded by
 * write_timeout_ms: a peer that stops reading, or an address that never
 * answers, must not hold a writer forever. A started batch cannot be
 * withdrawn, so on timeout the stream is cancelled. */
static err_code wait_send(rpc_stream *s, void *tag, const char *what,
                          err *e) {
  grpc_event ev = rpc__pluck(s->cq, tag,
                             rpc__deadline(s->opt.write_timeout_ms));
  if (ev.type != GRPC_OP_COMPLETE) {
    grpc_call_cancel_with_status(s->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                 "stream write timed out", NULL);
    rpc__pluck(s->cq, tag, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    s->send_failed = 1;
    return err_set(e, ERR_DEADLINE,
                   "%s: %s blocked for %d ms (peer not answering or not "
                   "reading); stream cancelled",
                   s->method, what, s->opt.write_timeout_ms);
  }
  if (!ev.success) {
    s->send_failed = 1;
    return err_set(e, ERR_UNAVAILABLE,
                   "%s: %s failed: the stream has ended (peer gone, "
                   "cancelled or shut down)",
                   s->method, what);
  }
  return ERR_OK;
}

/* Runs one send batch under send_mu and waits for it. */
static err_code send_batch(rpc_stream *s, const grpc_op *ops, size_t n,
                           const char *what, err *e) {
  if (s->init_pending) {
    s->init_pending = 0;
    err_code rc = wait_send(s, RPC_TAG_INIT, what, e);
    if (rc) return rc;
  }
  if (s->send_failed)
    return err_set(e, ERR_UNAVAILABLE,
                   "%s: %s: the stream has ended (peer gone, cancelled or "
                   "shut down)",
                   s->method, what);
  grpc_call_error ce = grpc_call_start_batch(s->call, ops, n, RPC_TAG_SEND,
                                             NULL);
  if (ce != GRPC_CALL_OK)
    return err_set(e, ERR_INVALID, "%s: %s: %s", s->method, what,
                   grpc_call_error_to_string(ce));
  return wait_send(s, RPC_TAG_SEND, what, e);
}

/* Sends one packed message; takes ownership of bb. */
static err_code write_buffer(rpc_stream *s, grpc_byte_buffer *bb,
                             const char *what, err *e) {
  /* Checked here so an oversized message fails alone; gRPC would kill the
   * whole stream for it. */
  err_code rc = rpc__check_size(grpc_byte_buffer_length(bb),
                                s->opt.max_message_bytes, what, s->method, e);
  if (rc) {
    grpc_byte_buffer_destroy(bb);
    return rc;
  }
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_MESSAGE;
  op.data.send_message.send_message = bb;
  pthread_mutex_lock(&s->send_mu);
  if (s->send_closed)
    rc = err_set(e, ERR_INVALID, "%s: write after close", s->method);
  else
    rc = send_batch(s, &op, 1, "write", e);
  pthread_mutex_unlock(&s->send_mu);
  grpc_byte_buffer_destroy(bb);
  return rc;
}

err_code rpc_stream_write(rpc_stream *s, const ProtobufCMessage *msg, err *e) {
  grpc_byte_buffer *bb;
  err_code rc = rpc_pack(msg, &bb, e);
  if (rc) return rc;
  return write_buffer(s, bb, msg->descriptor->name, e);
}

err_code rpc_stream_write_packed(rpc_stream *s, const uint8_t *data, size_t len,
                                 const char *what, err *e) {
  grpc_slice slice = grpc_slice_from_copied_buffer((const char *)data, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  if (!bb) return err_set(e, ERR_NOMEM, "%s: out of memory", s->method);
  return write_buffer(s, bb, what, e);
}

err_code rpc_stream_close(rpc_stream *s, err *e) {
  err_code rc = ERR_OK;
  pthread_mutex_lock(&s->send_mu);
  if (!s->send_closed) {
    s->send_closed = 1;
    if (!s->is_server) {
      grpc_op op;
      memset(&op, 0, sizeof op);
      op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
      rc = send_batch(s, &op, 1, "close", e);
    }
  }
  pthread_mutex_unlock(&s->send_mu);
  return rc;
}

void rpc_stream_cancel(rpc_stream *s, grpc_status_code code,
                       const char *details) {
  if (code == GRPC_STATUS_OK) code = GRPC_STATUS_CANCELLED;
  grpc_call_cancel_with_status(s->call, code, details ? details : "cancelled",
                               NULL);
}

grpc_status_code rpc_stream_status(const rpc_stream *s, const char **details) {
  if (details) *details = s->status_details ? s->status_details : "";
  return s->status_known ? s->status : GRPC_STATUS_UNKNOWN;
}

/* The reader saw the end of the stream: learn how it ended and remember
 * what every later read reports. */
static err_code stream_ended(rpc_stream *s, int recv_ok, err *e) {
  s->ended = 1;
  if (s->is_server) {
    /* A client that half-closed leaves RECV_MESSAGE successful and empty;
     * one that cancelled or vanished fails it. The final batch completes
     * only when the whole call is over, so it cannot be asked here. */
    int failed = !recv_ok || grpc_call_failed_before_recv_message(s->call);
    s->status = failed ? GRPC_STATUS_CANCELLED : GRPC_STATUS_OK;
    s->status_details = strdup(
        failed ? "the client cancelled the stream or went away" : "");
  } else {
    /* After the last message the status is either here or on its way:
     * gRPC delivers trailers (or the error that replaced them) with the
     * end of the messages. */
    rpc__pluck_or_cancel(s->call, s->cq, RPC_TAG_FINAL, RPC_DRAIN_WAIT_MS,
                         "no status after the end of the stream");
    s->final_pending = 0;
    s->status_details = rpc__slice_str(s->status_slice);
  }
  s->status_known = 1;
  if (s->status == GRPC_STATUS_OK) {
    memset(&s->end_err, 0, sizeof s->end_err);
  } else {
    rpc__status_err(&s->end_err, s->method, s->status,
                    s->status_details ? s->status_details : "");
  }
  if (e && s->end_err.code) *e = s->end_err;
  return s->end_err.code;
}

err_code rpc_stream_read(rpc_stream *s, const ProtobufCMessageDescriptor *desc,
                         int timeout_ms, ProtobufCMessage **msg, err *e) {
  *msg = NULL;
  if (s->ended) {
    if (e && s->end_err.code) *e = s->end_err;
    return s->end_err.code;
  }
  if (!s->recv_pending) {
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!s->is_server && !s->recv_md_asked) {
      ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
      ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->recv_md;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->recv_buf;
    grpc_call_error ce = grpc_call_start_batch(s->call, ops, n, RPC_TAG_RECV,
                                               NULL);
    if (ce != GRPC_CALL_OK)
      return err_set(e, ERR_INTERNAL, "%s: read: %s", s->method,
                     grpc_call_error_to_string(ce));
    s->recv_md_asked = 1;
    s->recv_pending = 1;
  }
  grpc_event ev = rpc__pluck(s->cq, RPC_TAG_RECV, rpc__deadline(timeout_ms));
  if (ev.type != GRPC_OP_COMPLETE)
    return err_set(e, ERR_DEADLINE, "%s: no message within %d ms", s->method,
                   timeout_ms);
  s->recv_pending = 0;
  if (!s->recv_buf) return stream_ended(s, ev.success, e);
  err_code rc = rpc_unpack(s->recv_buf, desc, msg, e);
  grpc_byte_buffer_destroy(s->recv_buf);
  s->recv_buf = NULL;
  if (rc) err_wrap(e, "%s", s->method);
  return rc;
}

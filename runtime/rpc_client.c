/* rpc_client.c — channels, unary calls and the health check, client side
 * (see rpc.h for the promise).
 *
 * How: a unary call is one batch of all six operations on its own pluck
 * completion queue, so any number of threads can call through one channel
 * without sharing a queue. gRPC enforces the call's deadline; our own wait
 * is bounded as well (deadline + RPC_CALL_GRACE_MS, then we cancel), so a
 * call never outlives its deadline by more than the grace even if gRPC
 * misbehaves. Calls are fail-fast (gRPC's default, not wait-for-ready):
 * an address that refuses connections gives UNAVAILABLE at once, one that
 * swallows them DEADLINE_EXCEEDED at the deadline.
 */
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/slice.h>

#include "proto/health.pb-c.h"
#include "runtime/rpc.h"
#include "runtime/rpc_internal.h"

/* Reference-counted so that a stream (or a call on another thread) keeps
 * the grpc channel alive: grpc_channel_destroy would cancel every call
 * still running on it. */
struct rpc_channel {
  atomic_int refs;
  grpc_channel *ch;
  rpc_options opt;
};

static const char HEALTH_CHECK_METHOD[] = "/grpc.health.v1.Health/Check";

err_code rpc_channel_create(const char *target, const rpc_options *opt,
                            rpc_channel **out, err *e) {
  *out = NULL;
  if (!target || !target[0])
    return err_set(e, ERR_INVALID, "rpc_channel_create: empty target");
  rpc_options o;
  err_code rc = rpc__options(opt, &o, e);
  if (rc) return rc;
  rpc_channel *c = calloc(1, sizeof *c);
  if (!c) return err_set(e, ERR_NOMEM, "channel to %s: out of memory", target);
  c->opt = o;
  atomic_init(&c->refs, 1);
  rpc__lib_ref();
  rpc_args a;
  rpc__args(&o, 0, &a);
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  /* Never NULL: a target gRPC cannot parse gives a channel whose calls all
   * fail, which is reported by the first call. */
  c->ch = grpc_channel_create(target, creds, &a.set);
  grpc_channel_credentials_release(creds);
  *out = c;
  return ERR_OK;
}

grpc_channel *rpc__channel_ref(rpc_channel *ch, rpc_options *opt) {
  atomic_fetch_add(&ch->refs, 1);
  if (opt) *opt = ch->opt;
  return ch->ch;
}

void rpc__channel_unref(rpc_channel *ch) {
  if (atomic_fetch_sub(&ch->refs, 1) != 1) return;
  grpc_channel_destroy(ch->ch);
  free(ch);
  rpc__lib_unref();
}

void rpc_channel_destroy(rpc_channel *ch) {
  if (ch) rpc__channel_unref(ch);
}

err_code rpc_call_bytes(rpc_channel *ch, const char *method,
                        grpc_byte_buffer *req, int deadline_ms,
                        grpc_byte_buffer **reply, grpc_status_code *status,
                        err *e) {
  grpc_status_code st_dummy;
  if (!status) status = &st_dummy;
  *reply = NULL;
  *status = GRPC_STATUS_INVALID_ARGUMENT;
  if (!ch || !method || method[0] != '/' || !req)
    return err_set(e, ERR_INVALID, "rpc_call: bad method %s or no request",
                   method ? method : "(null)");
  if (deadline_ms <= 0)
    return err_set(e, ERR_INVALID, "%s: deadline_ms must be > 0", method);
  err_code rc = rpc__check_size(grpc_byte_buffer_length(req),
                                ch->opt.max_message_bytes, "request", method,
                                e);
  if (rc) {
    *status = GRPC_STATUS_RESOURCE_EXHAUSTED;
    return rc;
  }

  grpc_channel *gch = rpc__channel_ref(ch, NULL);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_slice m = grpc_slice_from_copied_string(method);
  grpc_call *call =
      grpc_channel_create_call(gch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m,
                               NULL, rpc__deadline(deadline_ms), NULL);
  grpc_slice_unref(m);
  if (!call) {
    rpc__cq_destroy(cq);
    rpc__channel_unref(ch);
    *status = GRPC_STATUS_INTERNAL;
    return err_set(e, ERR_INTERNAL, "%s: cannot create the call", method);
  }

  grpc_metadata_array md_initial, md_trailing;
  grpc_metadata_array_init(&md_initial);
  grpc_metadata_array_init(&md_trailing);
  grpc_byte_buffer *rbuf = NULL;
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = req;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_initial;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &rbuf;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &md_trailing;
  ops[5].data.recv_status_on_client.status = &st;
  ops[5].data.recv_status_on_client.status_details = &details;
  grpc_call_error ce = grpc_call_start_batch(call, ops, 6, RPC_TAG_UNARY,
                                             NULL);
  if (ce == GRPC_CALL_OK) {
    int wait_ms = deadline_ms > INT_MAX - RPC_CALL_GRACE_MS
                      ? -1
                      : deadline_ms + RPC_CALL_GRACE_MS;
    rpc__pluck_or_cancel(call, cq, RPC_TAG_UNARY, wait_ms,
                         "deadline passed and gRPC did not end the call");
    char *d = rpc__slice_str(details);
    if (st == GRPC_STATUS_OK && !rbuf) {
      st = GRPC_STATUS_INTERNAL;
      rc = err_set(e, ERR_INTERNAL, "%s: INTERNAL: status OK but no reply",
                   method);
    } else {
      rc = rpc__status_err(e, method, st, d);
    }
    free(d);
  } else {
    st = GRPC_STATUS_INTERNAL;
    rc = err_set(e, ERR_INTERNAL, "%s: start: %s", method,
                 grpc_call_error_to_string(ce));
  }
  *status = st;
  if (rc == ERR_OK) {
    *reply = rbuf;
  } else if (rbuf) {
    grpc_byte_buffer_destroy(rbuf);
  }
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&md_initial);
  grpc_metadata_array_destroy(&md_trailing);
  grpc_call_unref(call);
  rpc__cq_destroy(cq);
  rpc__channel_unref(ch);
  return rc;
}

err_code rpc_call_unary(rpc_channel *ch, const char *method,
                        const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *reply_desc,
                        int deadline_ms, ProtobufCMessage **reply,
                        grpc_status_code *status, err *e) {
  grpc_status_code st_dummy;
  if (!status) status = &st_dummy;
  *reply = NULL;
  *status = GRPC_STATUS_INVALID_ARGUMENT;
  grpc_byte_buffer *out, *in = NULL;
  err_code rc = rpc_pack(req, &out, e);
  if (rc) return rc;
  rc = rpc_call_bytes(ch, method, out, deadline_ms, &in, status, e);
  grpc_byte_buffer_destroy(out);
  if (rc) return rc;
  rc = rpc_unpack(in, reply_desc, reply, e);
  grpc_byte_buffer_destroy(in);
  if (rc) {
    /* The call went through but its answer is garbage: to our caller that
     * is a failed call. */
    *status = GRPC_STATUS_INTERNAL;
    err_wrap(e, "%s: reply", method);
  }
  return rc;
}

err_code rpc_health_check(rpc_channel *ch, const char *service,
                          int deadline_ms, rpc_health *status, err *e) {
  *status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__UNKNOWN;
  Grpc__Health__V1__HealthCheckRequest req =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = (char *)(service ? service : "");
  ProtobufCMessage *reply;
  err_code rc = rpc_call_unary(
      ch, HEALTH_CHECK_METHOD, &req.base,
      &grpc__health__v1__health_check_response__descriptor, deadline_ms,
      &reply, NULL, e);
  if (rc) return rc;
  *status = ((Grpc__Health__V1__HealthCheckResponse *)reply)->status;
  rpc_free(reply);
  return ERR_OK;
}

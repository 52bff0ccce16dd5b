/* rpc.c — messages, statuses, options and the gRPC library reference: the
 * pieces of the rpc module that both sides use (see rpc.h).
 *
 * Packing writes the message straight into the one slice the byte buffer
 * holds; unpacking reads a single-slice buffer in place and flattens only
 * buffers that arrived in several slices.
 */
#include "runtime/rpc.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "runtime/rpc_internal.h"

/* ---- messages ------------------------------------------------------------ */

err_code rpc_pack(const ProtobufCMessage *msg, grpc_byte_buffer **out,
                  err *e) {
  *out = NULL;
  if (!msg) return err_set(e, ERR_INVALID, "rpc_pack: no message");
  size_t n = protobuf_c_message_get_packed_size(msg);
  grpc_slice slice = grpc_slice_malloc(n);
  size_t written = protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
  if (written != n) {
    grpc_slice_unref(slice);
    return err_set(e, ERR_INTERNAL, "packing %s wrote %zu of %zu bytes",
                   msg->descriptor->name, written, n);
  }
  /* The buffer takes its own reference to the slice. */
  *out = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  return ERR_OK;
}

err_code rpc_unpack(grpc_byte_buffer *bb,
                    const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **out, err *e) {
  *out = NULL;
  if (!bb || !desc) return err_set(e, ERR_INVALID, "rpc_unpack: no input");
  ProtobufCMessage *m = NULL;
  if (bb->type == GRPC_BB_RAW &&
      bb->data.raw.compression == GRPC_COMPRESS_NONE &&
      bb->data.raw.slice_buffer.count <= 1) {
    const uint8_t *p = NULL;
    size_t n = 0;
    if (bb->data.raw.slice_buffer.count == 1) {
      /* Through a pointer: a small slice keeps its bytes inside the
       * grpc_slice itself, so a copy of it would be read out of scope. */
      const grpc_slice *s = &bb->data.raw.slice_buffer.slices[0];
      p = GRPC_SLICE_START_PTR(*s);
      n = GRPC_SLICE_LENGTH(*s);
    }
    m = protobuf_c_message_unpack(desc, NULL, n, n ? p : (const uint8_t *)"");
  } else {
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
      return err_set(e, ERR_CORRUPT, "malformed %s: cannot read the buffer",
                     desc->name);
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    m = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all),
                                  GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
  }
  if (!m) return err_set(e, ERR_CORRUPT, "malformed %s", desc->name);
  *out = m;
  return ERR_OK;
}

void rpc_free(ProtobufCMessage *msg) {
  if (msg) protobuf_c_message_free_unpacked(msg, NULL);
}

/* ---- statuses ------------------------------------------------------------ */

const char *rpc_status_name(grpc_status_code code) {
  switch (code) {
    case GRPC_STATUS_OK: return "OK";
    case GRPC_STATUS_CANCELLED: return "CANCELLED";
    case GRPC_STATUS_UNKNOWN: return "UNKNOWN";
    case GRPC_STATUS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case GRPC_STATUS_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case GRPC_STATUS_NOT_FOUND: return "NOT_FOUND";
    case GRPC_STATUS_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case GRPC_STATUS_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case GRPC_STATUS_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case GRPC_STATUS_ABORTED: return "ABORTED";
    case GRPC_STATUS_OUT_OF_RANGE: return "OUT_OF_RANGE";
    case GRPC_STATUS_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case GRPC_STATUS_INTERNAL: return "INTERNAL";
    case GRPC_STATUS_UNAVAILABLE: return "UNAVAILABLE";
    case GRPC_STATUS_DATA_LOSS: return "DATA_LOSS";
    case GRPC_STATUS_UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "INVALID_STATUS";
  }
}

err_code rpc_err_from_status(grpc_status_code code) {
  switch (code) {
    case GRPC_STATUS_OK: return ERR_OK;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_ALREADY_EXISTS:
    /* Here RESOURCE_EXHAUSTED means a message over the size limit: a bad
     * argument of the caller, not a failed allocation. */
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return ERR_INVALID;
    case GRPC_STATUS_OUT_OF_RANGE: return ERR_RANGE;
    case GRPC_STATUS_NOT_FOUND: return ERR_NOT_FOUND;
    case GRPC_STATUS_UNIMPLEMENTED: return ERR_UNSUPPORTED;
    case GRPC_STATUS_DEADLINE_EXCEEDED: return ERR_DEADLINE;
    case GRPC_STATUS_CANCELLED:
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_ABORTED: return ERR_UNAVAILABLE;
    case GRPC_STATUS_DATA_LOSS: return ERR_CORRUPT;
    default: return ERR_INTERNAL;
  }
}

grpc_status_code rpc_status_from_err(err_code code) {
  switch (code) {
    case ERR_OK: return GRPC_STATUS_OK;
    case ERR_INVALID:
    case ERR_SHAPE:
    case ERR_CORRUPT: return GRPC_STATUS_INVALID_ARGUMENT;
    case ERR_RANGE: return GRPC_STATUS_OUT_OF_RANGE;
    case ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case ERR_NOT_FOUND: return GRPC_STATUS_NOT_FOUND;
    case ERR_UNSUPPORTED: return GRPC_STATUS_UNIMPLEMENTED;
    case ERR_UNAVAILABLE: return GRPC_STATUS_UNAVAILABLE;
    case ERR_DEADLINE: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case ERR_IO:
    case ERR_BACKEND:
    case ERR_INTERNAL: return GRPC_STATUS_INTERNAL;
  }
  return GRPC_STATUS_UNKNOWN;
}

err_code rpc__status_err(err *e, const char *method, grpc_status_code status,
                         const char *details) {
  err_code code = rpc_err_from_status(status);
  if (code == ERR_OK) return ERR_OK;
  return err_set(e, code, "%s: %s: %s", method, rpc_status_name(status),
                 details && details[0] ? details : "(no details)");
}

err_code rpc__check_size(size_t bytes, int max_bytes, const char *what,
                         const char *method, err *e) {
  if (bytes <= (size_t)max_bytes) return ERR_OK;
  return err_set(e, ERR_INVALID,
                 "%s: RESOURCE_EXHAUSTED: %s of %zu bytes exceeds "
                 "max_message_bytes %d",
                 method, what, bytes, max_bytes);
}

char *rpc__slice_str(grpc_slice s) {
  size_t n = GRPC_SLICE_LENGTH(s);
  char *p = malloc(n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, GRPC_SLICE_START_PTR(s), n);
  p[n] = '\0';
  return p;
}

/* ---- options ------------------------------------------------------------- */

static err_code fill(int *v, int dflt, const char *name, err *e) {
  if (*v < 0) return err_set(e, ERR_INVALID, "rpc option %s < 0", name);
  if (*v == 0) *v = dflt;
  return ERR_OK;
}

err_code rpc__options(const rpc_options *in, rpc_options *out, err *e) {
  rpc_options o = {0};
  if (in) o = *in;
  err_code rc;
  if ((rc = fill(&o.max_message_bytes, RPC_DEFAULT_MAX_MESSAGE_BYTES,
                 "max_message_bytes", e)) ||
      (rc = fill(&o.keepalive_time_ms, RPC_DEFAULT_KEEPALIVE_TIME_MS,
                 "keepalive_time_ms", e)) ||
      (rc = fill(&o.keepalive_timeout_ms, RPC_DEFAULT_KEEPALIVE_TIMEOUT_MS,
                 "keepalive_timeout_ms", e)) ||
      (rc = fill(&o.write_timeout_ms, RPC_DEFAULT_WRITE_TIMEOUT_MS,
                 "write_timeout_ms", e)))
    return rc;
  *out = o;
  return ERR_OK;
}

static void put(rpc_args *a, const char *key, int value) {
  grpc_arg *g = &a->arg[a->set.num_args++];
  g->type = GRPC_ARG_INTEGER;
  g->key = (char *)key; /* gRPC copies the args; it never writes the key */
  g->value.integer = value;
}

void rpc__args(const rpc_options *o, int server, rpc_args *a) {
  memset(a, 0, sizeof *a);
  a->set.args = a->arg;
  put(a, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, o->max_message_bytes);
  put(a, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, o->max_message_bytes);
  put(a, GRPC_ARG_KEEPALIVE_TIME_MS, o->keepalive_time_ms);
  put(a, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, o->keepalive_timeout_ms);
  /* By default gRPC stops pinging after two pings without data, which would
   * leave an idle Execute stream to a dead agent unnoticed. */
  put(a, GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  if (server) {
    /* Clients ping every keepalive_time_ms even without data; do not count
     * that as abuse. */
    put(a, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
        RPC_MIN_RECV_PING_INTERVAL_MS);
    put(a, GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    put(a, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    /* gRPC sets SO_REUSEPORT by default: two agents started on one port
     * would both "bind" and share connections. Refuse instead. */
    put(a, GRPC_ARG_ALLOW_REUSEPORT, 0);
  } else {
    put(a, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, RPC_MAX_RECONNECT_BACKOFF_MS);
  }
}

/* ---- library reference and completion queues ----------------------------- */

/* grpc_init/grpc_shutdown count references themselves; every object of
 * this module holds one, so the library lives exactly as long as needed. */
void rpc__lib_ref(void) { grpc_init(); }
void rpc__lib_unref(void) { grpc_shutdown(); }

gpr_timespec rpc__deadline(int ms) {
  if (ms < 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(ms, GPR_TIMESPAN));
}

grpc_event rpc__pluck(grpc_completion_queue *cq, void *tag,
                      gpr_timespec deadline) {
  return grpc_completion_queue_pluck(cq, tag, deadline, NULL);
}

grpc_event rpc__pluck_or_cancel(grpc_call *call, grpc_completion_queue *cq,
                                void *tag, int wait_ms, const char *why) {
  grpc_event ev = rpc__pluck(cq, tag, rpc__deadline(wait_ms));
  if (ev.type == GRPC_OP_COMPLETE) return ev;
  grpc_call_cancel_with_status(call, GRPC_STATUS_DEADLINE_EXCEEDED, why,
                               NULL);
  return rpc__pluck(cq, tag, gpr_inf_future(GPR_CLOCK_MONOTONIC));
}

void rpc__cq_destroy(grpc_completion_queue *cq) {
  if (!cq) return;
  grpc_completion_queue_shutdown(cq);
  /* A pluck for a tag never used returns GRPC_QUEUE_SHUTDOWN once the queue
   * has finished shutting down. */
  static const char drain_tag;
  while (rpc__pluck(cq, (void *)&drain_tag,
                    gpr_inf_future(GPR_CLOCK_MONOTONIC)).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
}

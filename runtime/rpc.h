/* rpc.h — the gRPC (C core) layer every EdgeDI program is built on.
 *
 * What it promises:
 *  - protobuf-c messages travel as gRPC byte buffers (rpc_pack/rpc_unpack);
 *    bytes that do not decode give ERR_CORRUPT "malformed <message>".
 *  - A server (rpc_server_*) answers unary and bidirectional-streaming
 *    methods registered by full name ("/edgedi.v1.Scheduler/Infer"). Each
 *    incoming call runs on its own thread, so a slow or stuck call never
 *    holds up another. Malformed requests are answered INVALID_ARGUMENT
 *    before a handler sees them, unknown methods UNIMPLEMENTED, and the
 *    standard grpc.health.v1.Health/Check is built in.
 *  - A client (rpc_channel_*, rpc_call_unary) never waits past its deadline:
 *    an address that does not answer gives UNAVAILABLE or DEADLINE_EXCEEDED.
 *  - A stream (rpc_stream_*) is the same type on both sides: one reader
 *    thread, any number of writer threads (writes are serialized, one in
 *    flight at a time). A peer that dies or a server that shuts down ends
 *    a blocked read or write promptly with an error; nothing blocks forever
 *    (keepalive notices a silent peer, a write has a timeout).
 *  - Message size limits apply to both directions; an oversized message is
 *    refused with RESOURCE_EXHAUSTED and a message naming both sizes.
 *  - grpc_init/grpc_shutdown are taken care of: every server and channel
 *    holds one reference to the gRPC library, and every client stream one
 *    to its channel.
 *
 * Statuses and errors: every call returns an err_code and fills `err *e`
 * (see err.h). Where a gRPC status is involved it is also returned, and
 * e->msg reads "<method>: <STATUS_NAME>: <details>", ready to be passed on.
 */
#ifndef EDGEDI_RPC_H
#define EDGEDI_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include "proto/health.pb-c.h"
#include "runtime/err.h"

/* Policy defaults, used where an rpc_options field is 0. */
enum {
  /* A 64 x 200 x 200 float32 feature map is 10 MB; leave room for several. */
  RPC_DEFAULT_MAX_MESSAGE_BYTES = 64 << 20,
  /* Ping the peer this often while a call is open on the connection... */
  RPC_DEFAULT_KEEPALIVE_TIME_MS = 10000,
  /* ...and drop it when the ping goes unanswered this long: a dead agent
   * is noticed within about 15 s even when no bytes are flowing. */
  RPC_DEFAULT_KEEPALIVE_TIMEOUT_MS = 5000,
  /* A stream write that cannot complete this long (peer not reading) gives
   * up and cancels the stream: a SEND cannot be abandoned half-way. */
  RPC_DEFAULT_WRITE_TIMEOUT_MS = 30000,
  /* Room a handler has for the details of the status it returns. */
  RPC_DETAILS_BYTES = 256,
};

typedef struct rpc_options {
  int max_message_bytes;    /* send and receive limit; 0: default */
  int keepalive_time_ms;    /* 0: default */
  int keepalive_timeout_ms; /* 0: default */
  int write_timeout_ms;     /* stream writes; 0: default */
} rpc_options;

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus rpc_health;

/* ---- messages and statuses ---------------------------------------------- */

/* Packs msg into a new byte buffer (one slice, no further copy). The caller
 * destroys it with grpc_byte_buffer_destroy. */
err_code rpc_pack(const ProtobufCMessage *msg, grpc_byte_buffer **out,
                  err *e);

/* Decodes bb as a `desc` message. ERR_CORRUPT "malformed <name>" when the
 * bytes do not decode. Free the result with rpc_free. */
err_code rpc_unpack(grpc_byte_buffer *bb,
                    const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **out, err *e);

/* Frees a message returned by this module (NULL is fine). */
void rpc_free(ProtobufCMessage *msg);

const char *rpc_status_name(grpc_status_code code); /* "UNAVAILABLE", ... */
err_code rpc_err_from_status(grpc_status_code code);
grpc_status_code rpc_status_from_err(err_code code);

/* ---- server --------------------------------------------------------------
 *
 * Life: rpc_server_create (binds the port) -> rpc_server_add_* ->
 * rpc_server_start -> ... -> rpc_server_destroy. Handlers run on the call's
 * own thread and may block; they must return once their stream reports an
 * error, since rpc_server_destroy waits for them. */

typedef struct rpc_server rpc_server;
typedef struct rpc_reply rpc_reply;
typedef struct rpc_stream rpc_stream;

/* A unary handler. req is the decoded request (owned by the layer). The
 * handler answers by calling rpc_reply_set once (or not at all: an empty
 * reply, i.e. the default message) and returning GRPC_STATUS_OK; or returns
 * another status with a message in details (details_len bytes of room). */
typedef grpc_status_code (*rpc_unary_fn)(void *ctx, const ProtobufCMessage *req,
                                         rpc_reply *reply, char *details,
                                         size_t details_len);

/* A bidirectional streaming handler: reads and writes s until done, then
 * returns the status that ends the call. s is valid until it returns; any
 * other thread it gave s to must be done with it by then. */
typedef grpc_status_code (*rpc_stream_fn)(void *ctx, rpc_stream *s,
                                          char *details, size_t details_len);

/* address: "127.0.0.1:0" (any free port), "0.0.0.0:7000", ... opt may be
 * NULL. *port (may be NULL) gets the bound port. A port another process
 * holds is refused (no SO_REUSEPORT sharing). */
err_code rpc_server_create(const char *address, const rpc_options *opt,
                           rpc_server **out, int *port, err *e);
int rpc_server_port(const rpc_server *s);

/* method: "/package.Service/Method". req_desc: the request type; a request
 * that does not decode is answered INVALID_ARGUMENT "malformed <name>". */
err_code rpc_server_add_unary(rpc_server *s, const char *method,
                              const ProtobufCMessageDescriptor *req_desc,
                              rpc_unary_fn fn, void *ctx, err *e);
err_code rpc_server_add_stream(rpc_server *s, const char *method,
                               rpc_stream_fn fn, void *ctx, err *e);
err_code rpc_server_start(rpc_server *s, err *e);

/* What Health/Check answers (SERVING from the start). Thread-safe. */
void rpc_server_set_health(rpc_server *s, rpc_health status);

/* Stops accepting calls, gives running calls up to grace_ms to finish,
 * cancels the rest, waits for their handlers to return and frees s. */
void rpc_server_destroy(rpc_server *s, int grace_ms);

/* Sets a unary reply; it is packed now, so msg may be freed right after.
 * A reply over the size limit fails here, and then the call ends
 * RESOURCE_EXHAUSTED with a message even if the handler returns OK, so a
 * handler need not check. */
err_code rpc_reply_set(rpc_reply *r, const ProtobufCMessage *msg, err *e);

/* ---- client -------------------------------------------------------------- */

typedef struct rpc_channel rpc_channel;

/* target: "127.0.0.1:7000", "dns:///agent1:7000", ... opt may be NULL.
 * Connecting is lazy: a bad address shows up in the first call. A channel
 * is thread-safe, and streams (or calls on other threads) keep it alive:
 * rpc_channel_destroy cancels nothing. */
err_code rpc_channel_create(const char *target, const rpc_options *opt,
                            rpc_channel **out, err *e);
void rpc_channel_destroy(rpc_channel *ch);

/* One unary call. deadline_ms > 0 bounds the whole call. On GRPC_STATUS_OK
 * *reply is the decoded reply (free with rpc_free); otherwise *reply is NULL,
 * *status (may be NULL) says why and e->msg carries the details. */
err_code rpc_call_unary(rpc_channel *ch, const char *method,
                        const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *reply_desc,
                        int deadline_ms, ProtobufCMessage **reply,
                        grpc_status_code *status, err *e);

/* The same at the byte level: req is sent as is (the caller keeps it); on
 * GRPC_STATUS_OK *reply gets the reply bytes (destroy with
 * grpc_byte_buffer_destroy). */
err_code rpc_call_bytes(rpc_channel *ch, const char *method,
                        grpc_byte_buffer *req, int deadline_ms,
                        grpc_byte_buffer **reply, grpc_status_code *status,
                        err *e);

/* grpc.health.v1.Health/Check of `service` ("" for the whole server). */
err_code rpc_health_check(rpc_channel *ch, const char *service,
                          int deadline_ms, rpc_health *status, err *e);

/* ---- bidirectional streams ------------------------------------------------
 *
 * Threads: one reader at a time; writes from any number of threads (they
 * are serialized); rpc_stream_cancel from anywhere. rpc_stream_destroy
 * only when no other thread uses the stream. */

/* Opens a stream on ch (client side). deadline_ms > 0 bounds the whole
 * stream; 0: none (keepalive still notices a dead peer). */
err_code rpc_stream_open(rpc_channel *ch, const char *method, int deadline_ms,
                         rpc_stream **out, err *e);

/* Sends msg; returns once gRPC has taken it. Fails (never blocks forever)
 * when the stream has ended, the peer is gone, or the write stays blocked
 * for write_timeout_ms (then the stream is cancelled). An oversized msg is
 * refused without harming the stream. */
err_code rpc_stream_write(rpc_stream *s, const ProtobufCMessage *msg, err *e);
/* The same for a message already packed (`what` names it in errors): one
 * copy, no decode and re-encode. */
err_code rpc_stream_write_packed(rpc_stream *s, const uint8_t *data, size_t len,
                                 const char *what, err *e);

/* Waits up to timeout_ms (< 0: no limit) for the next message.
 *  ERR_OK, *msg set:  a message (free with rpc_free).
 *  ERR_OK, *msg NULL: the peer ended the stream cleanly (the server returned
 *                     OK / the client closed its side).
 *  ERR_DEADLINE:      nothing arrived in time; the stream is still usable.
 *  ERR_CORRUPT:       a message that does not decode; still usable.
 *  anything else:     the stream ended in error (e->msg says how; see
 *                     rpc_stream_status). Later reads repeat the end. */
err_code rpc_stream_read(rpc_stream *s, const ProtobufCMessageDescriptor *desc,
                         int timeout_ms, ProtobufCMessage **msg, err *e);

/* No more writes from this side: the client half-closes (the server then
 * finishes and the reader sees the end); on the server it only refuses
 * further writes, the status goes out when the handler returns. */
err_code rpc_stream_close(rpc_stream *s, err *e);

/* Ends the stream now, from any thread: blocked reads and writes return. */
void rpc_stream_cancel(rpc_stream *s, grpc_status_code code,
                       const char *details);

/* The final status, once a read has reported the end (GRPC_STATUS_UNKNOWN
 * before). On the server: OK after a clean close by the client, CANCELLED
 * when the client cancelled or went away. *details (may be NULL) stays
 * valid until the stream is destroyed. */
grpc_status_code rpc_stream_status(const rpc_stream *s, const char **details);

/* The method the stream was opened for. */
const char *rpc_stream_method(const rpc_stream *s);

/* Client side: cancels the stream if it is still running and frees it.
 * Server streams belong to the layer and must not be destroyed. */
void rpc_stream_destroy(rpc_stream *s);

#endif

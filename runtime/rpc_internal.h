/* rpc_internal.h — what rpc.c, rpc_server.c, rpc_client.c and rpc_stream.c
 * share. Not part of the module's promise; no other module includes it.
 *
 * The one rule every file here follows: each batch started on a call is
 * plucked exactly once, because a pluck completion queue may only be
 * destroyed empty. Waits that could in principle last forever are bounded;
 * when the bound passes, the call is cancelled, which makes gRPC complete
 * every pending batch, and the wait then finishes unbounded.
 */
#ifndef EDGEDI_RPC_INTERNAL_H
#define EDGEDI_RPC_INTERNAL_H

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "runtime/rpc.h"

enum {
  /* Once a status has been sent or a call cancelled, gRPC completes what is
   * pending at once; waiting longer than this means something is wrong, and
   * the call is cancelled to force the completions. */
  RPC_DRAIN_WAIT_MS = 5000,
  /* A unary call normally ends at its deadline inside gRPC; past deadline +
   * this grace we cancel it ourselves rather than trust that. */
  RPC_CALL_GRACE_MS = 2000,
  /* A restarted agent is found again within this, not gRPC's 120 s. */
  RPC_MAX_RECONNECT_BACKOFF_MS = 5000,
  /* Accept client pings this often: must stay below any client's
   * keepalive time, or the server answers pings with GOAWAY. */
  RPC_MIN_RECV_PING_INTERVAL_MS = 1000,
  RPC_ARGS_MAX = 12,
};

/* Tags of the batches on one call's own completion queue. */
#define RPC_TAG_INIT ((void *)1)   /* SEND_INITIAL_METADATA */
#define RPC_TAG_SEND ((void *)2)   /* SEND_MESSAGE, close, status */
#define RPC_TAG_RECV ((void *)3)   /* RECV_MESSAGE */
#define RPC_TAG_FINAL ((void *)4)  /* RECV_STATUS_ON_CLIENT / CLOSE_ON_SERVER */
#define RPC_TAG_UNARY ((void *)5)  /* the one batch of a unary call */

typedef struct rpc_args {
  grpc_arg arg[RPC_ARGS_MAX];
  grpc_channel_args set;
} rpc_args;

/* Fills defaults into a copy of *in (NULL: all defaults); rejects negative
 * values. */
err_code rpc__options(const rpc_options *in, rpc_options *out, err *e);

/* Channel arguments for a client channel (server 0) or a server (1). */
void rpc__args(const rpc_options *o, int server, rpc_args *a);

/* One grpc_init reference per server and per channel. */
void rpc__lib_ref(void);
void rpc__lib_unref(void);

/* now + ms; ms < 0: never. */
gpr_timespec rpc__deadline(int ms);

/* Waits for `tag` until the deadline (GRPC_QUEUE_TIMEOUT after). */
grpc_event rpc__pluck(grpc_completion_queue *cq, void *tag,
                      gpr_timespec deadline);

/* Waits for `tag` up to wait_ms; then cancels the call with
 * DEADLINE_EXCEEDED `why` and waits for good. Always GRPC_OP_COMPLETE. */
grpc_event rpc__pluck_or_cancel(grpc_call *call, grpc_completion_queue *cq,
                                void *tag, int wait_ms, const char *why);

/* Shuts down a pluck queue whose batches have all been plucked, and
 * destroys it. */
void rpc__cq_destroy(grpc_completion_queue *cq);

/* Fills e with "<method>: <STATUS>: <details>" and returns the err_code
 * of status. */
err_code rpc__status_err(err *e, const char *method, grpc_status_code status,
                         const char *details);

/* ERR_INVALID "...: RESOURCE_EXHAUSTED: ..." when bytes > max_bytes. */
err_code rpc__check_size(size_t bytes, int max_bytes, const char *what,
                         const char *method, err *e);

/* Copies a slice into a new NUL-terminated string (NULL when out of
 * memory). */
char *rpc__slice_str(grpc_slice s);

/* Takes a reference to ch and returns its grpc channel and (opt not NULL)
 * resolved options; rpc__channel_unref gives it back (rpc_client.c). */
grpc_channel *rpc__channel_ref(rpc_channel *ch, rpc_options *opt);
void rpc__channel_unref(rpc_channel *ch);

/* Server streams (rpc_stream.c), made by rpc_server.c for a streaming call.
 * The stream borrows call and cq; finish sends the handler's status,
 * collects every pending completion and frees the stream, after which
 * the caller unrefs the call and destroys the queue. */
rpc_stream *rpc__stream_server(grpc_call *call, grpc_completion_queue *cq,
                               const char *method, const rpc_options *opt,
                               err *e);
void rpc__stream_server_finish(rpc_stream *s, grpc_status_code code,
                               const char *details);

#endif

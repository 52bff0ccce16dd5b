/* client.h — the Scheduler service as a C client sees it: one typed call
 * per RPC of proto/edgedi.proto, over runtime/rpc.h.
 *
 * Every call is bounded by a deadline and returns the gRPC status; on
 * anything but OK, e->msg reads "STATUS_NAME: what the server said" (the
 * scheduler's messages already say what was wrong), ready for a command
 * to print. Replies are protobuf-c messages the caller frees with
 * rpc_free(). Nothing here prints.
 */
#ifndef EDGEDI_CLI_CLIENT_H
#define EDGEDI_CLI_CLIENT_H

#include <stdbool.h>

#include <grpc/status.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"
#include "runtime/rpc.h"

#define CLIENT_DEFAULT_SCHEDULER "127.0.0.1:7000"
/* Set by `edgedi cluster` for the command it runs. */
#define CLIENT_SCHEDULER_ENV "EDGEDI_SCHEDULER"

enum {
  /* Infer: the scheduler's own request deadline (30 s) plus the way. */
  CLIENT_INFER_DEADLINE_MS = 35000,
  /* ListDevices, Plan: answered from memory and the database. */
  CLIENT_QUERY_DEADLINE_MS = 10000,
  /* LoadModel builds the model on the scheduler and pushes it to agents. */
  CLIENT_LOAD_DEADLINE_MS = 120000,
  /* Waiting for devices: how often ListDevices is asked. */
  CLIENT_WAIT_POLL_MS = 200,
  /* Message size limit: a 64 MB float image and its logits come through. */
  CLIENT_MAX_MESSAGE_BYTES = 256 << 20,
};

/* $EDGEDI_SCHEDULER when set, else CLIENT_DEFAULT_SCHEDULER: what
 * --scheduler defaults to. */
const char *client_default_address(void);

/* A channel to the scheduler (lazy: a dead address shows in the first
 * call). Free with rpc_channel_destroy(). */
err_code client_connect(const char *address, rpc_channel **out, err *e);

grpc_status_code client_infer(rpc_channel *ch, const Edgedi__V1__InferRequest *req,
                              Edgedi__V1__InferReply **out, err *e);
grpc_status_code client_list_devices(rpc_channel *ch, Edgedi__V1__ListDevicesReply **out,
                                     err *e);
grpc_status_code client_plan(rpc_channel *ch, const char *model, const char *planner,
                             Edgedi__V1__PlanReply **out, err *e);
grpc_status_code client_load_model(rpc_channel *ch, const Edgedi__V1__ModelSpec *spec,
                                   Edgedi__V1__LoadModelReply **out, err *e);
grpc_status_code client_register_agent(rpc_channel *ch,
                                       const Edgedi__V1__RegisterAgentRequest *req,
                                       Edgedi__V1__RegisterAgentReply **out, err *e);

/* The device of that name in a ListDevices reply, or NULL. */
const Edgedi__V1__Device *client_device_named(const Edgedi__V1__ListDevicesReply *l,
                                              const char *name);

/* Polls ListDevices until every named device is 'up' with a cost model
 * (registered and profiled), at most timeout_ms. ERR_DEADLINE naming the
 * devices still missing and their states. `stop` (may be NULL) is asked
 * between polls; when it says true the wait ends ERR_UNAVAILABLE. */
err_code client_wait_up(rpc_channel *ch, const char *const *names, int n, int timeout_ms,
                        bool (*stop)(void *ctx), void *stop_ctx, err *e);

#endif

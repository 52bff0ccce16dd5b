/* lossrun.h — one request that loses an agent on the way, on a local
 * cluster: the request goes out on its own thread and connection, agent i
 * is killed at_ms later (SIGKILL, as a board losing power), and the reply
 * is awaited. What the demo and //benchmarks:recovery show of agent loss
 * (scheduler/infer.h, "Agent loss").
 */
#ifndef EDGEDI_CLI_LOSSRUN_H
#define EDGEDI_CLI_LOSSRUN_H

#include <grpc/status.h>
#include <stddef.h>

#include "cli/localcluster.h"
#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"

typedef struct lossrun_result {
  grpc_status_code st; /* the request's status */
  err why;             /* its message when not OK */
  double latency_ms;   /* client side, send to reply */
  double rel_diff;     /* of its logits from `want` (stats_max_rel_diff) */
  char recovery[512];  /* InferReply.recovery: what the scheduler did */
} lossrun_result;

/* Sends req to c's scheduler, kills agent `agent` at_ms later, waits for
 * the reply. ERR_OK when the run took place (whatever the request's
 * status, in out->st); ERR_INTERNAL when no thread could be started. The
 * agent stays dead: localcluster_restart_agent brings it back. */
err_code lossrun_once(localcluster *c, int agent, const Edgedi__V1__InferRequest *req,
                      double at_ms, const float *want, size_t n_want, lossrun_result *out,
                      err *e);

#endif

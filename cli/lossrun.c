/* lossrun.c — one request that loses an agent (contract in lossrun.h). */
#include "cli/lossrun.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cli/client.h"
#include "cli/procs.h"
#include "runtime/rpc.h"
#include "runtime/stats.h"

typedef struct shot {
  const char *address;
  const Edgedi__V1__InferRequest *req;
  const float *want;
  size_t n_want;
  lossrun_result *out;
} shot;

static void *shoot(void *arg) {
  shot *s = arg;
  lossrun_result *o = s->out;
  rpc_channel *ch = NULL;
  if (client_connect(s->address, &ch, &o->why) != ERR_OK) return NULL;
  Edgedi__V1__InferReply *r = NULL;
  double t0 = stats_now_ms();
  o->st = client_infer(ch, s->req, &r, &o->why);
  o->latency_ms = stats_now_ms() - t0;
  if (o->st == GRPC_STATUS_OK) {
    o->rel_diff = r->n_logits == s->n_want ? stats_max_rel_diff(r->logits, s->want, s->n_want)
                                           : INFINITY;
    snprintf(o->recovery, sizeof o->recovery, "%s", r->recovery ? r->recovery : "");
    rpc_free((ProtobufCMessage *)r);
  }
  rpc_channel_destroy(ch);
  return NULL;
}

err_code lossrun_once(localcluster *c, int agent, const Edgedi__V1__InferRequest *req,
                      double at_ms, const float *want, size_t n_want, lossrun_result *out,
                      err *e) {
  memset(out, 0, sizeof *out);
  out->st = GRPC_STATUS_UNAVAILABLE; /* until the reply says otherwise */
  shot s = {.address = localcluster_address(c), .req = req, .want = want, .n_want = n_want,
            .out = out};
  pthread_t th;
  if (pthread_create(&th, NULL, shoot, &s) != 0)
    return err_set(e, ERR_INTERNAL, "pthread_create failed");
  procs_sleep_ms((int)(at_ms + 0.5));
  localcluster_kill_agent(c, agent);
  pthread_join(th, NULL);
  return ERR_OK;
}

/* client.c — typed calls to the Scheduler service (contract in client.h).
 *
 * rpc.h words a failed call "<method>: <STATUS>: <details>"; a person at a
 * terminal asked for one thing, so the method is dropped and the rest kept
 * as it is. A failure that is not a server status (no memory, a reply that
 * does not decode) keeps its whole message and gets a status from its
 * err code.
 */
#include "cli/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCHEDULER_METHOD(m) "/edgedi.v1.Scheduler/" m

const char *client_default_address(void) {
  const char *v = getenv(CLIENT_SCHEDULER_ENV);
  return v && *v ? v : CLIENT_DEFAULT_SCHEDULER;
}

err_code client_connect(const char *address, rpc_channel **out, err *e) {
  rpc_options o = {.max_message_bytes = CLIENT_MAX_MESSAGE_BYTES};
  return rpc_channel_create(address, &o, out, e);
}

/* One call; on failure e->msg loses its "<method>: " prefix. */
static grpc_status_code call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *desc, int deadline_ms,
                             ProtobufCMessage **out, err *e) {
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  *out = NULL;
  err_code rc = rpc_call_unary(ch, method, req, desc, deadline_ms, out, &st, e);
  if (rc == ERR_OK) return GRPC_STATUS_OK;
  if (st == GRPC_STATUS_OK) st = rpc_status_from_err(rc);
  if (e) {
    size_t n = strlen(method);
    if (strncmp(e->msg, method, n) == 0 && strncmp(e->msg + n, ": ", 2) == 0)
      memmove(e->msg, e->msg + n + 2, strlen(e->msg + n + 2) + 1);
  }
  return st;
}

grpc_status_code client_infer(rpc_channel *ch, const Edgedi__V1__InferRequest *req,
                              Edgedi__V1__InferReply **out, err *e) {
  int deadline = CLIENT_INFER_DEADLINE_MS;
  if (req->deadline_ms > 0 && req->deadline_ms < (uint32_t)(1 << 30))
    deadline = (int)req->deadline_ms + CLIENT_QUERY_DEADLINE_MS;
  return call(ch, SCHEDULER_METHOD("Infer"), &req->base, &edgedi__v1__infer_reply__descriptor,
              deadline, (ProtobufCMessage **)out, e);
}

grpc_status_code client_list_devices(rpc_channel *ch, Edgedi__V1__ListDevicesReply **out,
                                     err *e) {
  Edgedi__V1__ListDevicesRequest req = EDGEDI__V1__LIST_DEVICES_REQUEST__INIT;
  return call(ch, SCHEDULER_METHOD("ListDevices"), &req.base,
              &edgedi__v1__list_devices_reply__descriptor, CLIENT_QUERY_DEADLINE_MS,
              (ProtobufCMessage **)out, e);
}

grpc_status_code client_plan(rpc_channel *ch, const char *model, const char *planner,
                             Edgedi__V1__PlanReply **out, err *e) {
  Edgedi__V1__PlanRequest req = EDGEDI__V1__PLAN_REQUEST__INIT;
  req.model = (char *)model;
  req.planner = (char *)(planner ? planner : "");
  return call(ch, SCHEDULER_METHOD("Plan"), &req.base, &edgedi__v1__plan_reply__descriptor,
              CLIENT_QUERY_DEADLINE_MS, (ProtobufCMessage **)out, e);
}

grpc_status_code client_load_model(rpc_channel *ch, const Edgedi__V1__ModelSpec *spec,
                                   Edgedi__V1__LoadModelReply **out, err *e) {
  Edgedi__V1__LoadModelRequest req = EDGEDI__V1__LOAD_MODEL_REQUEST__INIT;
  req.spec = (Edgedi__V1__ModelSpec *)spec;
  return call(ch, SCHEDULER_METHOD("LoadModel"), &req.base,
              &edgedi__v1__load_model_reply__descriptor, CLIENT_LOAD_DEADLINE_MS,
              (ProtobufCMessage **)out, e);
}

grpc_status_code client_register_agent(rpc_channel *ch,
                                       const Edgedi__V1__RegisterAgentRequest *req,
                                       Edgedi__V1__RegisterAgentReply **out, err *e) {
  return call(ch, SCHEDULER_METHOD("RegisterAgent"), &req->base,
              &edgedi__v1__register_agent_reply__descriptor, CLIENT_QUERY_DEADLINE_MS,
              (ProtobufCMessage **)out, e);
}

const Edgedi__V1__Device *client_device_named(const Edgedi__V1__ListDevicesReply *l,
                                              const char *name) {
  for (size_t i = 0; l && i < l->n_devices; i++)
    if (strcmp(l->devices[i]->name, name) == 0) return l->devices[i];
  return NULL;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool is_up(const Edgedi__V1__Device *d) {
  return d && strcmp(d->state, "up") == 0 && d->cost && d->cost->samples > 0;
}

err_code client_wait_up(rpc_channel *ch, const char *const *names, int n, int timeout_ms,
                        bool (*stop)(void *ctx), void *stop_ctx, err *e) {
  double deadline = now_ms() + timeout_ms;
  char missing[ERR_MSG_BYTES] = "";
  char last_error[ERR_MSG_BYTES] = "";
  for (;;) {
    Edgedi__V1__ListDevicesReply *l = NULL;
    err ce = {0};
    grpc_status_code st = client_list_devices(ch, &l, &ce);
    missing[0] = 0;
    int up = 0;
    if (st == GRPC_STATUS_OK) {
      for (int i = 0; i < n; i++) {
        const Edgedi__V1__Device *d = client_device_named(l, names[i]);
        if (is_up(d)) {
          up++;
          continue;
        }
        size_t len = strlen(missing);
        snprintf(missing + len, sizeof missing - len, "%s%s (%s)", len ? ", " : "", names[i],
                 d ? d->state : "not registered");
      }
    } else {
      snprintf(last_error, sizeof last_error, "%s", ce.msg);
    }
    rpc_free((ProtobufCMessage *)l);
    if (st == GRPC_STATUS_OK && up == n) return ERR_OK;
    if (stop && stop(stop_ctx)) return err_set(e, ERR_UNAVAILABLE, "stopped while waiting");
    if (now_ms() >= deadline) {
      if (st != GRPC_STATUS_OK)
        return err_set(e, ERR_DEADLINE, "the scheduler did not answer ListDevices in %d ms: %s",
                       timeout_ms, last_error);
      return err_set(e, ERR_DEADLINE, "after %d ms, %d of %d devices up; waiting for %s",
                     timeout_ms, up, n, missing);
    }
    struct timespec ts = {0, CLIENT_WAIT_POLL_MS * 1000000L};
    nanosleep(&ts, NULL);
  }
}

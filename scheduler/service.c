/* service.c — the Scheduler service: start-up, the handlers, shutdown
 * (contract in service.h). Handlers translate between messages and the
 * modules below them (infer, cluster, models, store) and nothing else.
 */
#include "scheduler/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/protocol.h"
#include "runtime/rpc.h"
#include "runtime/zoo.h"
#include "scheduler/cluster.h"
#include "scheduler/infer.h"
#include "scheduler/inflight.h"
#include "scheduler/models.h"
#include "storage/store.h"

#define SERVICE_METHOD(m) "/edgedi.v1.Scheduler/" m
#define SERVICE_SHUTDOWN_REASON "the scheduler is shutting down"

struct service {
  store *st;
  models *ms;
  inflight *inf;
  cluster *cl;
  plan_recall *recall;
  admit *adm;
  rpc_server *srv;
  infer_ctx ictx;
  char planner[PLAN_NAME_BYTES];
  int port;
  char note[ERR_MSG_BYTES];
};

static grpc_status_code fail(err *e, grpc_status_code st, char *details, size_t len) {
  snprintf(details, len, "%s", e->msg);
  return st;
}

/* ---- handlers -------------------------------------------------------------- */

static grpc_status_code on_infer(void *ctx, const ProtobufCMessage *req, rpc_reply *reply,
                                 char *details, size_t len) {
  service *s = ctx;
  infer_reply out;
  err e = {0};
  grpc_status_code st = infer_run(&s->ictx, (const Edgedi__V1__InferRequest *)req, &out, &e);
  if (st != GRPC_STATUS_OK) return fail(&e, st, details, len);
  rpc_reply_set(reply, &out.msg.base, NULL); /* too big: the layer answers RESOURCE_EXHAUSTED */
  infer_reply_free(&out);
  return GRPC_STATUS_OK;
}

static grpc_status_code on_register(void *ctx, const ProtobufCMessage *req, rpc_reply *reply,
                                    char *details, size_t len) {
  service *s = ctx;
  err e = {0};
  int64_t id = 0;
  grpc_status_code st =
      cluster_register(s->cl, (const Edgedi__V1__RegisterAgentRequest *)req, &id, &e);
  if (st != GRPC_STATUS_OK) return fail(&e, st, details, len);
  Edgedi__V1__RegisterAgentReply r = EDGEDI__V1__REGISTER_AGENT_REPLY__INIT;
  r.protocol_version = EDGEDI_PROTOCOL_VERSION;
  r.device_id = (uint64_t)id;
  rpc_reply_set(reply, &r.base, NULL);
  return GRPC_STATUS_OK;
}

static grpc_status_code on_list_devices(void *ctx, const ProtobufCMessage *req,
                                        rpc_reply *reply, char *details, size_t len) {
  (void)req;
  service *s = ctx;
  err e = {0};
  store_device *v = NULL;
  size_t n = 0;
  if (store_device_list(s->st, &v, &n, &e) != ERR_OK) {
    err_wrap(&e, "listing devices");
    return fail(&e, GRPC_STATUS_UNAVAILABLE, details, len);
  }
  Edgedi__V1__Device *d = calloc(n ? n : 1, sizeof *d);
  Edgedi__V1__Device **dp = calloc(n ? n : 1, sizeof *dp);
  Edgedi__V1__CostModel *cm = calloc(n ? n : 1, sizeof *cm);
  grpc_status_code st = GRPC_STATUS_OK;
  if (!d || !dp || !cm) {
    snprintf(details, len, "out of memory listing %zu devices", n);
    st = GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  for (size_t i = 0; st == GRPC_STATUS_OK && i < n; i++) {
    edgedi__v1__device__init(&d[i]);
    d[i].name = v[i].name;
    d[i].address = v[i].address;
    d[i].cores = v[i].cores;
    d[i].arch = v[i].arch;
    d[i].threads = v[i].threads;
    d[i].state = (char *)store_device_state_name(v[i].state);
    d[i].first_seen = v[i].first_seen;
    d[i].last_seen = v[i].last_seen;
    if (v[i].has_cost) {
      edgedi__v1__cost_model__init(&cm[i]);
      cm[i].ms_per_gflop = v[i].cost.ms_per_gflop;
      cm[i].fixed_ms = v[i].cost.fixed_ms;
      cm[i].bandwidth_mbps = v[i].cost.bandwidth_mbps;
      cm[i].rtt_ms = v[i].cost.rtt_ms;
      cm[i].samples = v[i].cost.samples;
      cm[i].fit_error = v[i].cost.fit_error;
      cm[i].updated_at = v[i].cost.updated_at;
      d[i].cost = &cm[i];
    }
    dp[i] = &d[i];
  }
  if (st == GRPC_STATUS_OK) {
    Edgedi__V1__ListDevicesReply r = EDGEDI__V1__LIST_DEVICES_REPLY__INIT;
    r.n_devices = n;
    r.devices = dp;
    rpc_reply_set(reply, &r.base, NULL);
  }
  free(d);
  free(dp);
  free(cm);
  store_free(v);
  return st;
}

static grpc_status_code on_plan(void *ctx, const ProtobufCMessage *req, rpc_reply *reply,
                                char *details, size_t len) {
  service *s = ctx;
  const Edgedi__V1__PlanRequest *pr = (const Edgedi__V1__PlanRequest *)req;
  err e = {0};
  infer_plan ip;
  grpc_status_code st = infer_make_plan(&s->ictx, pr->model, pr->planner, NULL, 0, &ip, &e);
  if (st != GRPC_STATUS_OK) return fail(&e, st, details, len);
  const plan *p = &ip.p;
  int n_parts = 0;
  for (int si = 0; si < p->n_segments; si++) n_parts += p->segments[si].n_parts;
  /* +1: calloc(0) may be NULL, which is not running out of memory. */
  Edgedi__V1__Segment *segs = calloc((size_t)p->n_segments + 1, sizeof *segs);
  Edgedi__V1__Segment **segp = calloc((size_t)p->n_segments + 1, sizeof *segp);
  Edgedi__V1__Assignment *as = calloc((size_t)n_parts + 1, sizeof *as);
  Edgedi__V1__Assignment **asp = calloc((size_t)n_parts + 1, sizeof *asp);
  Edgedi__V1__RowRange *rr = calloc(2 * (size_t)n_parts + 1, sizeof *rr);
  if (!segs || !segp || !as || !asp || !rr) {
    snprintf(details, len, "out of memory for the plan");
    st = GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  for (int si = 0, a = 0; st == GRPC_STATUS_OK && si < p->n_segments; si++) {
    const plan_segment *ps = &p->segments[si];
    edgedi__v1__segment__init(&segs[si]);
    segs[si].first_layer = (uint32_t)ps->first;
    segs[si].end_layer = (uint32_t)ps->end;
    segs[si].predicted_ms = ps->predicted_ms;
    segs[si].fe_exchanges = (uint32_t)ps->fe_exchanges;
    segs[si].fe_early = (uint32_t)ps->fe_early;
    segs[si].parts = &asp[a];
    segs[si].n_parts = (size_t)ps->n_parts;
    segp[si] = &segs[si];
    for (int k = 0; k < ps->n_parts; k++, a++) {
      const plan_part *pt = &ps->parts[k];
      edgedi__v1__assignment__init(&as[a]);
      edgedi__v1__row_range__init(&rr[2 * a]);
      edgedi__v1__row_range__init(&rr[2 * a + 1]);
      rr[2 * a].lo = (uint32_t)pt->out.lo;
      rr[2 * a].hi = (uint32_t)pt->out.hi;
      rr[2 * a + 1].lo = (uint32_t)pt->in.lo;
      rr[2 * a + 1].hi = (uint32_t)pt->in.hi;
      as[a].device = ip.members[pt->device].dev.name;
      as[a].out_rows = &rr[2 * a];
      as[a].in_rows = &rr[2 * a + 1];
      as[a].predicted_compute_ms = pt->compute_ms;
      as[a].predicted_transfer_ms = pt->transfer_ms;
      as[a].bytes_in = pt->bytes_in;
      as[a].bytes_out = pt->bytes_out;
      as[a].gflop = pt->gflop;
      asp[a] = &as[a];
    }
  }
  if (st == GRPC_STATUS_OK) {
    double single = -1, gflop = ip.model->gflop;
    for (int i = 0; i < ip.n_members; i++) {
      double t = ip.members[i].dev.ms_per_gflop * gflop + ip.members[i].dev.fixed_ms;
      if (single < 0 || t < single) single = t;
    }
    Edgedi__V1__PlanReply r = EDGEDI__V1__PLAN_REPLY__INIT;
    r.plan_id = ip.plan_id;
    r.planner = ip.planner;
    r.model = (char *)ip.model->name;
    r.segments = segp;
    r.n_segments = (size_t)p->n_segments;
    r.head_first_layer = (uint32_t)p->head_first;
    r.predicted_ms = p->predicted_ms;
    r.single_device_ms = single;
    rpc_reply_set(reply, &r.base, NULL);
  }
  free(segs);
  free(segp);
  free(as);
  free(asp);
  free(rr);
  infer_plan_free(&s->ictx, &ip);
  return st;
}

static grpc_status_code on_load_model(void *ctx, const ProtobufCMessage *req, rpc_reply *reply,
                                      char *details, size_t len) {
  service *s = ctx;
  const Edgedi__V1__LoadModelRequest *lr = (const Edgedi__V1__LoadModelRequest *)req;
  err e = {0};
  const models_entry *en = NULL;
  err_code rc = models_load(s->ms, lr->spec, &en, NULL, &e);
  if (rc != ERR_OK) {
    /* An unknown architecture is the client's mistake like any bad spec. */
    grpc_status_code st = rc == ERR_NOT_FOUND || rc == ERR_SHAPE ? GRPC_STATUS_INVALID_ARGUMENT
                                                                 : rpc_status_from_err(rc);
    return fail(&e, st, details, len);
  }
  /* Best effort: the first request would load it anyway. */
  cluster_member up[PLAN_MAX_DEVICES];
  int n = cluster_acquire_up(s->cl, NULL, up, PLAN_MAX_DEVICES);
  for (int i = 0; i < n; i++) {
    cluster_agent_ensure_model(up[i].agent, en, CLUSTER_LOAD_MODEL_DEADLINE_MS, NULL);
    cluster_release(up[i].agent);
  }
  Edgedi__V1__LoadModelReply r = EDGEDI__V1__LOAD_MODEL_REPLY__INIT;
  r.name = (char *)en->name;
  r.digest = (char *)en->digest;
  r.gflop = en->gflop;
  r.params = en->params;
  r.layers = (uint32_t)en->layers;
  rpc_reply_set(reply, &r.base, NULL);
  return GRPC_STATUS_OK;
}

/* ---- life -------------------------------------------------------------------- */

/* The --models preload: each zoo name with its default options. */
static err_code preload(service *s, const char *list, err *e) {
  char *copy = strdup(list ? list : "");
  if (!copy) return err_set(e, ERR_NOMEM, "out of memory");
  err_code rc = ERR_OK;
  char *save = NULL;
  for (char *name = strtok_r(copy, ",", &save); name && rc == ERR_OK;
       name = strtok_r(NULL, ",", &save)) {
    while (*name == ' ') name++;
    if (!*name || models_find(s->ms, name)) continue; /* restored: keep it */
    if (zoo_default_ratio(name) < 0) {
      rc = err_set(e, ERR_INVALID, "--models: '%s' is not a zoo model", name);
      break;
    }
    Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
    spec.name = name;
    spec.zoo = name;
    rc = models_load(s->ms, &spec, NULL, NULL, e);
  }
  free(copy);
  return rc;
}

static err_code serve(service *s, const service_config *cfg, err *e) {
  rpc_options ro = {.max_message_bytes = cfg->max_message_bytes};
  err_code rc = rpc_server_create(cfg->listen ? cfg->listen : SERVICE_DEFAULT_LISTEN, &ro,
                                  &s->srv, &s->port, e);
  static const struct {
    const char *method;
    const ProtobufCMessageDescriptor *desc;
    rpc_unary_fn fn;
  } h[] = {
      {SERVICE_METHOD("Infer"), &edgedi__v1__infer_request__descriptor, on_infer},
      {SERVICE_METHOD("RegisterAgent"), &edgedi__v1__register_agent_request__descriptor,
       on_register},
      {SERVICE_METHOD("ListDevices"), &edgedi__v1__list_devices_request__descriptor,
       on_list_devices},
      {SERVICE_METHOD("Plan"), &edgedi__v1__plan_request__descriptor, on_plan},
      {SERVICE_METHOD("LoadModel"), &edgedi__v1__load_model_request__descriptor, on_load_model},
  };
  for (size_t i = 0; rc == ERR_OK && i < sizeof h / sizeof h[0]; i++)
    rc = rpc_server_add_unary(s->srv, h[i].method, h[i].desc, h[i].fn, s, e);
  if (rc == ERR_OK) rc = rpc_server_start(s->srv, e);
  return rc;
}

err_code service_create(const service_config *cfg, service **out, err *e) {
  *out = NULL;
  service_config none = {0};
  if (!cfg) cfg = &none;
  const char *planner = cfg->planner ? cfg->planner : INFER_DEFAULT_PLANNER;
  if (!plan_find(planner)) return err_set(e, ERR_INVALID, "unknown planner '%s'", planner);
  if (!(cfg->straggler_factor >= 0) || cfg->straggler_factor > 1e6)
    return err_set(e, ERR_INVALID, "straggler factor %g is not >= 0 (0: off)",
                   cfg->straggler_factor);
  service *s = calloc(1, sizeof *s);
  if (!s) return err_set(e, ERR_NOMEM, "out of memory");
  snprintf(s->planner, sizeof s->planner, "%s", planner);
  const char *path = cfg->db_path ? cfg->db_path : STORE_DEFAULT_PATH;
  err_code rc = store_open(path, &s->st, e);
  if (rc != ERR_OK) err_wrap(e, "database %s", path);
  if (rc == ERR_OK) rc = models_create(s->st, cfg->head_threads, !cfg->flops_only, &s->ms, e);
  if (rc == ERR_OK) rc = inflight_create(&s->inf, e);
  int restored = 0, skipped = 0;
  err problem = {0};
  if (rc == ERR_OK) rc = models_restore(s->ms, &restored, &skipped, &problem, e);
  if (rc == ERR_OK) rc = preload(s, cfg->models, e);
  char names[ERR_MSG_BYTES / 4] = "", skip[ERR_MSG_BYTES / 2] = "";
  if (s->ms) models_names(s->ms, names, sizeof names);
  if (skipped) snprintf(skip, sizeof skip, "; %d skipped (%.200s)", skipped, problem.msg);
  snprintf(s->note, sizeof s->note, "%d model%s restored from the database%s; serving: %s",
           restored, restored == 1 ? "" : "s", skip, names);
  cluster_options co = {.rpc = {.max_message_bytes = cfg->max_message_bytes},
                        .log = cfg->log,
                        .log_ctx = cfg->log_ctx};
  if (rc == ERR_OK) rc = cluster_create(s->st, s->ms, s->inf, &co, &s->cl, e);
  if (rc == ERR_OK && !cfg->no_reuse)
    rc = plan_recall_create(cfg->reuse_gain > 0 ? cfg->reuse_gain : PLAN_RECALL_DEFAULT_GAIN,
                            &s->recall, e);
  if (rc == ERR_OK) rc = admit_create(&s->adm, e);
  s->ictx = (infer_ctx){.st = s->st, .ms = s->ms, .cl = s->cl, .inf = s->inf,
                        .default_planner = s->planner, .default_deadline_ms = cfg->deadline_ms,
                        .straggler_factor = cfg->straggler_factor,
                        .on_loss = (int)cfg->on_loss,
                        .stuck_floor_ms = cfg->stuck_floor_ms,
                        .split_always = cfg->split_always,
                        .fe_late = cfg->fe_late,
                        .recall = s->recall,
                        .adm = s->adm};
  if (rc == ERR_OK) rc = serve(s, cfg, e);
  if (rc != ERR_OK) {
    service_destroy(s);
    return rc;
  }
  *out = s;
  return ERR_OK;
}

int service_port(const service *s) { return s->port; }

const char *service_start_note(const service *s) { return s->note; }

void service_set_on_loss(service *s, infer_on_loss p) { s->ictx.on_loss = (int)p; }

cluster *service_cluster(const service *s) { return s->cl; }

store *service_store(const service *s) { return s->st; }

void service_destroy(service *s) {
  if (!s) return;
  if (s->srv)
    rpc_server_set_health(s->srv,
                          GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  /* Requests first (they return at once), then the agents' streams, then
   * the handlers; the database last, after every thread that writes it. */
  if (s->inf) inflight_shutdown(s->inf, SERVICE_SHUTDOWN_REASON);
  admit_shutdown(s->adm);
  if (s->cl) cluster_stop(s->cl);
  if (s->srv) rpc_server_destroy(s->srv, SERVICE_SHUTDOWN_GRACE_MS);
  cluster_destroy(s->cl);
  models_destroy(s->ms);
  plan_recall_destroy(s->recall);
  admit_destroy(s->adm);
  inflight_destroy(s->inf);
  store_close(s->st);
  free(s);
}

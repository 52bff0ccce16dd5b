/* cluster_profile.c — profiling a newly connected agent before its first
 * request (contract in cluster.h, locking in cluster_internal.h).
 *
 * Order matters: models first (a device that cannot load the models is of
 * no use, and loading them now keeps the first request fast), then the
 * compute calibration (Agent.Profile: the agent runs jobs of several sizes
 * with the same engine and speed emulation as real tiles), then the link
 * (Pings over the very Execute stream tiles will use, so the emulated link
 * and gRPC's own costs are both in the measurement). The cost model is
 * stored before the agent is marked up, so the planner never sees an up
 * device without one. The device's per-model fits of earlier sessions
 * (refit.h) come back from the database with it: they describe the models
 * as they ran, which the calibration does not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/cluster_internal.h"
#include "scheduler/profile.h"
#include "scheduler/refit.h"

static bool stopping(cluster_agent *a) {
  pthread_mutex_lock(&a->mu);
  bool s = a->stopping || a->state == STORE_DEVICE_DOWN || a->down_reason[0];
  pthread_mutex_unlock(&a->mu);
  return s;
}

static err_code load_models(cluster_agent *a, err *e) {
  int n = models_list(a->c->ms, NULL, 0);
  if (n == 0) return ERR_OK;
  const models_entry **v = calloc((size_t)n, sizeof *v);
  if (!v) return err_set(e, ERR_NOMEM, "out of memory");
  int now = models_list(a->c->ms, v, n); /* entries are never removed */
  if (now < n) n = now;
  err_code rc = ERR_OK;
  for (int i = 0; i < n && rc == ERR_OK && !stopping(a); i++)
    rc = cluster_agent_ensure_model(a, v[i], CLUSTER_LOAD_MODEL_DEADLINE_MS, e);
  free(v);
  return rc;
}

/* Agent.Profile, the samples stored, the fit. */
static err_code calibrate(cluster_agent *a, profile_fit *fit, err *e) {
  Edgedi__V1__ProfileRequest req = EDGEDI__V1__PROFILE_REQUEST__INIT;
  req.repeats = CLUSTER_PROFILE_REPEATS; /* sizes: the agent's default set */
  ProtobufCMessage *pm = NULL;
  err_code rc = rpc_call_unary(a->ch, CLUSTER_PROFILE_METHOD, &req.base,
                               &edgedi__v1__profile_reply__descriptor,
                               CLUSTER_PROFILE_DEADLINE_MS, &pm, NULL, e);
  if (rc != ERR_OK) return err_wrap(e, "Agent.Profile");
  const Edgedi__V1__ProfileReply *r = (const Edgedi__V1__ProfileReply *)pm;
  size_t n = r->n_samples;
  store_profile_sample *ss = calloc(n ? n : 1, sizeof *ss);
  profile_point *pts = calloc(n ? n : 1, sizeof *pts);
  if (!ss || !pts) rc = err_set(e, ERR_NOMEM, "out of memory");
  for (size_t i = 0; rc == ERR_OK && i < n; i++) {
    const Edgedi__V1__ProfileSample *s = r->samples[i];
    ss[i] = (store_profile_sample){.gflop = s->gflop, .ms = s->ms, .cpu_ms = s->cpu_ms};
    pts[i] = (profile_point){.gflop = s->gflop, .ms = s->ms};
  }
  if (rc == ERR_OK && n == 0)
    rc = err_set(e, ERR_INVALID, "Agent.Profile returned no samples");
  if (rc == ERR_OK) rc = profile_fit_linear(pts, n, fit, e);
  /* Samples are kept even when they are nonsense: they show what went wrong. */
  if (n) {
    err se = {0};
    err_code src = store_profile_add(a->c->st, a->device_id, ss, n, &se);
    if (rc == ERR_OK && src != ERR_OK) {
      *e = se;
      rc = err_wrap(e, "storing calibration samples");
    }
  }
  free(ss);
  free(pts);
  rpc_free(pm);
  return rc;
}

/* Median round trips of small and large Pings -> rtt and bandwidth. */
static err_code probe_link(cluster_agent *a, double *rtt_ms, double *mbps, err *e) {
  double small[CLUSTER_LINK_SMALL_PINGS], large[CLUSTER_LINK_LARGE_PINGS];
  uint64_t seq = 0;
  for (int i = 0; i < CLUSTER_LINK_SMALL_PINGS; i++) {
    small[i] = cluster__ping(a, ++seq, 0, 0, CLUSTER_PING_TIMEOUT_MS, e);
    if (small[i] < 0) return e->code ? e->code : ERR_UNAVAILABLE;
  }
  for (int i = 0; i < CLUSTER_LINK_LARGE_PINGS; i++) {
    large[i] = cluster__ping(a, ++seq, CLUSTER_LINK_PROBE_BYTES, CLUSTER_LINK_PROBE_BYTES,
                             CLUSTER_PING_TIMEOUT_MS, e);
    if (large[i] < 0) return e->code ? e->code : ERR_UNAVAILABLE;
  }
  return profile_link(profile_median(small, CLUSTER_LINK_SMALL_PINGS),
                      profile_median(large, CLUSTER_LINK_LARGE_PINGS),
                      CLUSTER_LINK_PROBE_BYTES, rtt_ms, mbps, e);
}

/* The device's stored per-model fits that pass refit_check_device(), into
 * the session with the link just probed (caller holds a->mu and has set
 * a->cost; v was read before taking the lock). */
static void restore_model_costs_locked(cluster_agent *a, const store_cost_model *v, size_t n) {
  size_t plen = strlen(STORE_KIND_MODEL_PREFIX);
  for (size_t i = 0; i < n && a->n_model_costs < CLUSTER_MAX_MODEL_COSTS; i++) {
    if (strncmp(v[i].kind, STORE_KIND_MODEL_PREFIX, plen) != 0) continue;
    const char *model = v[i].kind + plen;
    if (!*model || strlen(model) >= STORE_NAME_BYTES) continue;
    plan_device d = {.ms_per_gflop = v[i].ms_per_gflop, .fixed_ms = v[i].fixed_ms,
                     .bandwidth_mbps = a->cost.bandwidth_mbps, .rtt_ms = a->cost.rtt_ms};
    snprintf(d.name, sizeof d.name, "%s", a->name);
    if (refit_check_device(&d, NULL) != ERR_OK) continue;
    cluster_model_cost *mc = &a->model_costs[a->n_model_costs++];
    snprintf(mc->model, sizeof mc->model, "%s", model);
    mc->cost = d;
  }
}

void *cluster__profile_main(void *arg) {
  cluster_agent *a = arg;
  err e = {0};
  const char *step = "loading models";
  err_code rc = load_models(a, &e);
  profile_fit fit = {0};
  double rtt_ms = 0, mbps = 0;
  if (rc == ERR_OK && !stopping(a)) {
    step = "calibrating compute";
    rc = calibrate(a, &fit, &e);
  }
  if (rc == ERR_OK && !stopping(a)) {
    step = "probing the link";
    rc = probe_link(a, &rtt_ms, &mbps, &e);
  }
  if (rc == ERR_OK && !stopping(a)) {
    step = "storing the cost model";
    store_cost_model cm = {.ms_per_gflop = fit.ms_per_gflop, .fixed_ms = fit.fixed_ms,
                           .bandwidth_mbps = mbps, .rtt_ms = rtt_ms,
                           .samples = (uint32_t)fit.samples, .fit_error = fit.fit_error};
    snprintf(cm.kind, sizeof cm.kind, "%s", STORE_KIND_ALL);
    rc = store_cost_model_save(a->c->st, a->device_id, &cm, &e);
  }
  if (stopping(a)) return NULL; /* the session is ending anyway */
  if (rc != ERR_OK) {
    char why[ERR_MSG_BYTES];
    snprintf(why, sizeof why, "profiling failed while %s: %.400s", step, e.msg);
    cluster__fail(a, why);
    return NULL;
  }
  /* Best effort: without them the general model serves until a refit. */
  store_cost_model *kept = NULL;
  size_t n_kept = 0;
  store_cost_model_list(a->c->st, a->device_id, &kept, &n_kept, NULL);
  /* Under the session's lock, so a reader marking it down cannot be
   * overtaken by this 'up' in the database. */
  pthread_mutex_lock(&a->mu);
  if (a->state == STORE_DEVICE_PROFILING && !a->down_reason[0]) {
    a->cost = (plan_device){.ms_per_gflop = fit.ms_per_gflop, .fixed_ms = fit.fixed_ms,
                            .bandwidth_mbps = mbps, .rtt_ms = rtt_ms};
    snprintf(a->cost.name, sizeof a->cost.name, "%s", a->name);
    a->profiled = a->cost;
    a->has_cost = true;
    restore_model_costs_locked(a, kept, n_kept);
    if (store_device_set_state(a->c->st, a->device_id, STORE_DEVICE_UP, &e) == ERR_OK)
      a->state = STORE_DEVICE_UP;
  }
  bool up = a->state == STORE_DEVICE_UP;
  pthread_mutex_unlock(&a->mu);
  store_free(kept);
  if (up)
    cluster__log(a->c,
                 "agent '%s' is up: %.2f ms/GFLOP + %.2f ms (fit error %.1f%%, %zu samples), "
                 "link %.1f Mbit/s, round trip %.2f ms",
                 a->name, fit.ms_per_gflop, fit.fixed_ms, 100 * fit.fit_error, fit.samples, mbps,
                 rtt_ms);
  if (!up && !stopping(a)) {
    char why[ERR_MSG_BYTES];
    snprintf(why, sizeof why, "profiling failed while marking it up: %.400s", e.msg);
    cluster__fail(a, why);
  }
  return NULL;
}

/* refit_run.c — reading a device's tile window, fitting, storing and
 * pushing its cost models (contract in refit_run.h). */
#include "scheduler/refit_run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/stats.h"

/* The window's distinct layer ranges and their GFLOP over the whole
 * picture (from the model's graph); each sample gets its range's index,
 * -1 for a range the graph does not have. */
typedef struct ranges {
  uint32_t (*span)[2];
  double *gflop;
  size_t n;
} ranges;

static refit_sample *samples_of(const store_tile *t, size_t n, const model *m, ranges *rg) {
  refit_sample *s = calloc(n ? n : 1, sizeof *s);
  if (rg) {
    rg->n = 0;
    rg->span = calloc(n ? n : 1, sizeof *rg->span);
    rg->gflop = calloc(n ? n : 1, sizeof *rg->gflop);
    if (!rg->span || !rg->gflop) {
      free(s);
      return NULL;
    }
  }
  for (size_t i = 0; s && i < n; i++) {
    int range = -1;
    if (rg && m && t[i].first_layer < t[i].end_layer && t[i].end_layer <= (uint32_t)m->n_layers) {
      size_t k = 0;
      while (k < rg->n && (rg->span[k][0] != t[i].first_layer || rg->span[k][1] != t[i].end_layer))
        k++;
      if (k == rg->n) {
        rg->span[k][0] = t[i].first_layer;
        rg->span[k][1] = t[i].end_layer;
        double flops = 0;
        for (uint32_t l = t[i].first_layer; l < t[i].end_layer; l++) flops += m->layers[l].flops;
        rg->gflop[rg->n++] = flops / 1e9;
      }
      range = (int)k;
    }
    s[i] = (refit_sample){.range = range,
                          .gflop = t[i].gflop,
                          .compute_ms = t[i].measured_compute_ms,
                          .bytes = (double)t[i].bytes_in + (double)t[i].bytes_out,
                          .transfer_ms = t[i].measured_transfer_ms,
                          .first_run = t[i].fresh_strip};
  }
  return s;
}

/* The window of the device (model NULL) or of one model on it. */
static err_code read_window(store *st, int64_t device_id, const char *model_name, const model *m,
                            ranges *rg, refit_sample **out, size_t *n, err *e) {
  store_tile *t = NULL;
  err_code rc = model_name ? store_tiles_recent_of_model(st, device_id, model_name,
                                                         REFIT_WINDOW_TILES, REFIT_SCAN_TILES,
                                                         &t, n, e)
                      : store_tiles_recent(st, device_id, REFIT_WINDOW_TILES, &t, n, e);
  if (rc != ERR_OK) return rc;
  *out = samples_of(t, *n, m, rg);
  store_free(t);
  return *out ? ERR_OK : err_set(e, ERR_NOMEM, "refit: out of memory");
}

/* Stores `d` as the current model of `kind`. */
static err_code save(store *st, int64_t device_id, const char *kind, const plan_device *d,
                     uint32_t samples, double fit_error, int *saved, err *e) {
  store_cost_model m = {.ms_per_gflop = d->ms_per_gflop, .fixed_ms = d->fixed_ms,
                        .bandwidth_mbps = d->bandwidth_mbps, .rtt_ms = d->rtt_ms,
                        .samples = samples, .fit_error = fit_error};
  snprintf(m.kind, sizeof m.kind, "%s", kind);
  err_code rc = store_cost_model_save(st, device_id, &m, e);
  if (rc == ERR_OK) (*saved)++;
  return rc;
}

static void note(refit_report *rep, const char *what, const err *why) {
  snprintf(rep->why, sizeof rep->why, "%s: %.400s", what, why->msg);
}

double refit_shared_beta(cluster *c) {
  cluster_member up[PLAN_MAX_DEVICES];
  int n = c ? cluster_acquire_up(c, NULL, up, PLAN_MAX_DEVICES) : 0;
  double beta[PLAN_MAX_DEVICES];
  int k = 0;
  for (int i = 0; i < n; i++) {
    plan_device d;
    if (cluster_agent_profiled(up[i].agent, &d) && d.ms_per_gflop > 0 && d.fixed_ms >= 0 &&
        isfinite(d.fixed_ms / d.ms_per_gflop))
      beta[k++] = d.fixed_ms / d.ms_per_gflop;
    cluster_release(up[i].agent);
  }
  return k ? stats_median(beta, k) : -1;
}

err_code refit_device(store *st, cluster_agent *a, const char *model_name, const model *m,
                      double beta_gflop, refit_report *rep, err *e) {
  refit_report local;
  if (!rep) rep = &local;
  memset(rep, 0, sizeof *rep);
  if (!st || !a) return err_set(e, ERR_INVALID, "refit_device needs a store and an agent");
  plan_device general;
  if (!cluster_agent_get_cost(a, NULL, &general))
    return err_set(e, ERR_UNAVAILABLE, "agent '%s' has no cost model yet",
                   cluster_agent_name(a));
  int64_t id = cluster_agent_device_id(a);
  char kind[STORE_KIND_BYTES];
  if (model_name && snprintf(kind, sizeof kind, "%s%s", STORE_KIND_MODEL_PREFIX, model_name) >=
                        (int)sizeof kind)
    model_name = NULL; /* cannot be stored under its name: the general model serves it */

  refit_sample *s = NULL;
  size_t n = 0;
  err_code rc = read_window(st, id, NULL, NULL, NULL, &s, &n, e);
  if (rc != ERR_OK) return err_wrap(e, "refit of '%s'", cluster_agent_name(a));
  plan_device next = general;
  err why = {0};
  refit_link_fit lf;
  plan_device profiled;
  if (!cluster_agent_profiled(a, &profiled)) profiled = general;
  /* The prior's b, from the shared b / a and this device's own a. */
  double prior_b = beta_gflop >= 0 ? beta_gflop * profiled.ms_per_gflop : profiled.fixed_ms;
  if (refit_link(s, n, general.bandwidth_mbps, &lf, &why) == ERR_OK) {
    refit_link_bound(&lf, profiled.bandwidth_mbps, profiled.rtt_ms);
    next.bandwidth_mbps = lf.bandwidth_mbps;
    next.rtt_ms = lf.rtt_ms;
    rep->link_fitted = true;
    rep->bandwidth_fitted = lf.bandwidth_fitted;
  } else {
    note(rep, "link", &why);
  }
  refit_compute_fit cf = {.fit_error = 0};
  /* The prior b / a is the cluster's (refit_run.h). */
  if (refit_compute(s, n, profiled.ms_per_gflop, prior_b, &cf, &why) == ERR_OK) {
    next.ms_per_gflop = cf.ms_per_gflop;
    next.fixed_ms = cf.fixed_ms;
    rep->compute_fitted = true;
  } else {
    note(rep, "compute", &why);
  }
  free(s);
  if ((rep->link_fitted || rep->compute_fitted) &&
      refit_change(&general, &next) > REFIT_PUSH_CHANGE) {
    rc = cluster_agent_set_cost(a, NULL, &next, &why);
    if (rc == ERR_OK)
      rc = save(st, id, STORE_KIND_ALL, &next, (uint32_t)(rep->compute_fitted ? cf.samples : n),
                cf.fit_error, &rep->saved, e);
    else
      note(rep, "general model", &why);
  }
  cluster_agent_get_cost(a, NULL, &rep->general);
  rep->per_model = rep->general;
  if (rc != ERR_OK && rc != ERR_INVALID && rc != ERR_UNAVAILABLE) return rc;
  rc = ERR_OK;
  if (!model_name) return ERR_OK;

  ranges rg = {0};
  rc = read_window(st, id, model_name, m, &rg, &s, &n, e);
  if (rc != ERR_OK) {
    free(rg.span);
    free(rg.gflop);
    return err_wrap(e, "refit of '%s' for %s", cluster_agent_name(a), model_name);
  }
  plan_device cur;
  bool own = cluster_agent_model_cost(a, model_name, &cur);
  if (!own) cur = rep->general;
  refit_compute_fit mf;
  if (refit_compute_ranges(s, n, profiled.ms_per_gflop, prior_b, rg.gflop, rg.n, &mf,
                           &why) == ERR_OK) {
    plan_device pm = rep->general; /* the link is the device's, whatever runs */
    pm.ms_per_gflop = mf.ms_per_gflop;
    pm.fixed_ms = mf.fixed_ms;
    if (own && refit_change(&cur, &pm) <= REFIT_PUSH_CHANGE) {
      rep->model_fitted = true; /* fitted, close to the live one: kept */
    } else if (cluster_agent_set_cost(a, model_name, &pm, &why) == ERR_OK) {
      rep->model_fitted = true;
      rc = save(st, id, kind, &pm, (uint32_t)mf.samples, mf.fit_error, &rep->saved, e);
    } else {
      note(rep, model_name, &why);
    }
  } else {
    note(rep, model_name, &why);
  }
  free(s);
  free(rg.span);
  free(rg.gflop);
  cluster_agent_get_cost(a, model_name, &rep->per_model);
  return rc;
}

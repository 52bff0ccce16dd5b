/* workload.c — N requests in a row and their summary (contract in
 * workload.h).
 *
 * Per-device numbers are medians, not means: one request that waited for
 * a model load or a scheduling hiccup should not move what a device
 * typically does.
 */
#include "cli/workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "cli/sample.h"
#include "runtime/stats.h"

/* The device's slot, added on first sight; NULL when the table is full. */
static workload_device *device_slot(workload_result *r, const char *name) {
  for (int i = 0; i < r->n_devices; i++)
    if (strcmp(r->devices[i].name, name) == 0) return &r->devices[i];
  if (r->n_devices == WORKLOAD_MAX_DEVICES) return NULL;
  workload_device *d = &r->devices[r->n_devices++];
  snprintf(d->name, sizeof d->name, "%s", name);
  return d;
}

/* One request's timed replies so far, in the buffer of its run. */
typedef struct series {
  double *lat, *pred, *cpu, *dev; /* n each; dev: three per-device series */
  double *probe, *probe_per, *cpu_per; /* n each, with a probe */
  uint64_t first_plan;
} series;

/* Books reply r as timed reply k of out. */
static void record(workload_result *out, series *s, int per, int k, Edgedi__V1__InferReply *r) {
  s->lat[k] = r->latency_ms;
  s->pred[k] = r->predicted_ms;
  s->cpu[k] = 0;
  if (k == 0) s->first_plan = r->plan_id;
  else if (r->plan_id != s->first_plan) out->one_plan = false;
  for (size_t j = 0; j < r->n_devices; j++) {
    const Edgedi__V1__DeviceTiming *t = r->devices[j];
    s->cpu[k] += t->cpu_ms;
    workload_device *d = device_slot(out, t->device);
    if (!d) continue;
    double *dev = s->dev + (size_t)(d - out->devices) * 3 * (size_t)per;
    dev[d->replies] = t->compute_ms;
    dev[per + d->replies] = t->transfer_ms;
    dev[2 * per + d->replies] = t->predicted_ms;
    d->replies++;
    d->rows = t->rows;
    d->bytes_in = t->bytes_in;
    d->bytes_out = t->bytes_out;
  }
  out->bytes_moved = r->bytes_moved;
  out->bytes_gather_all = r->bytes_gather_all;
  rpc_free((ProtobufCMessage *)out->last);
  out->last = r;
  out->n = k + 1;
}

static void summarize(workload_result *out, series *s, int n) {
  out->median_ms = stats_median(s->lat, n); /* sorted: the ends are min and max */
  out->min_ms = s->lat[0];
  out->max_ms = s->lat[n - 1];
  out->predicted_ms = stats_median(s->pred, n);
  out->cpu_ms = stats_median(s->cpu, n);
  if (s->probe) {
    out->probe_ms = stats_median(s->probe, n);
    out->probe_per_ms = stats_median(s->probe_per, n);
    out->cpu_per_probe = stats_median(s->cpu_per, n);
  }
  for (int i = 0; i < out->n_devices; i++) {
    workload_device *d = &out->devices[i];
    double *dev = s->dev + (size_t)i * 3 * (size_t)n;
    d->compute_ms = stats_median(dev, d->replies);
    d->transfer_ms = stats_median(dev + n, d->replies);
    d->predicted_ms = stats_median(dev + 2 * n, d->replies);
  }
}

/* The probe beside timed reply k of s (just recorded). */
static err_code probe_after(const workload_probe *probe, series *s, int k, err *e) {
  double v = 0;
  err_code rc = probe->run(probe->ctx, &v, e);
  if (rc != ERR_OK) return err_wrap(e, "probe after request %d", k + 1);
  if (!(v > 0) || !(s->lat[k] > 0))
    return err_set(e, ERR_INTERNAL, "probe %g after a request of %g ms", v, s->lat[k]);
  s->probe[k] = v;
  s->probe_per[k] = v / s->lat[k];
  s->cpu_per[k] = s->cpu[k] / v;
  return ERR_OK;
}

err_code workload_run_each(rpc_channel *ch, const Edgedi__V1__InferRequest *const *reqs,
                           int n_reqs, int warmup, int n, bool (*stop)(void),
                           workload_result *out, err *e) {
  return workload_run_paired(ch, reqs, n_reqs, warmup, n, stop, NULL, out, e);
}

err_code workload_run_paired(rpc_channel *ch, const Edgedi__V1__InferRequest *const *reqs,
                             int n_reqs, int warmup, int n, bool (*stop)(void),
                             const workload_probe *probe, workload_result *out, err *e) {
  if (n_reqs < 1 || n_reqs > WORKLOAD_MAX_KINDS)
    return err_set(e, ERR_INVALID, "%d kinds of request: out of range", n_reqs);
  for (int q = 0; q < n_reqs; q++) memset(&out[q], 0, sizeof out[q]);
  if (n < 1 || n > WORKLOAD_MAX_REQUESTS || warmup < 0 || warmup > WORKLOAD_MAX_REQUESTS)
    return err_set(e, ERR_INVALID, "%d requests after %d warm-up: out of range", n, warmup);
  /* Per kind: lat, pred, cpu, probe, probe_per, cpu_per, then three
   * per-device series of n values each. */
  size_t per = (size_t)n, stride = per * (6 + 3 * WORKLOAD_MAX_DEVICES);
  double *buf = calloc(stride * (size_t)n_reqs, sizeof *buf);
  if (!buf) return err_set(e, ERR_NOMEM, "out of memory");
  series s[WORKLOAD_MAX_KINDS];
  for (int q = 0; q < n_reqs; q++) {
    double *b = buf + stride * (size_t)q;
    s[q] = (series){.lat = b, .pred = b + per, .cpu = b + 2 * per, .dev = b + 6 * per};
    if (probe) s[q].probe = b + 3 * per, s[q].probe_per = b + 4 * per, s[q].cpu_per = b + 5 * per;
    out[q].one_plan = true;
  }
  err_code rc = ERR_OK;
  for (int i = 0; i < warmup + n && rc == ERR_OK; i++) {
    for (int q = 0; q < n_reqs && rc == ERR_OK; q++) {
      if (stop && stop()) {
        rc = err_set(e, ERR_UNAVAILABLE, "interrupted");
        break;
      }
      Edgedi__V1__InferReply *r = NULL;
      err ce = {0};
      if (client_infer(ch, reqs[q], &r, &ce) != GRPC_STATUS_OK) {
        rc = err_set(e, ce.code ? ce.code : ERR_UNAVAILABLE, "request %d of %d%s%s: %s", i + 1,
                     warmup + n, reqs[q]->planner && reqs[q]->planner[0] ? ", planner " : "",
                     reqs[q]->planner ? reqs[q]->planner : "", ce.msg);
        break;
      }
      if (i < warmup) {
        rpc_free((ProtobufCMessage *)r);
        continue;
      }
      record(&out[q], &s[q], n, i - warmup, r);
      if (probe) rc = probe_after(probe, &s[q], i - warmup, e);
    }
  }
  for (int q = 0; q < n_reqs; q++) {
    if (rc == ERR_OK) summarize(&out[q], &s[q], n);
    else workload_free(&out[q]);
  }
  free(buf);
  return rc;
}

err_code workload_run(rpc_channel *ch, const Edgedi__V1__InferRequest *req, int warmup, int n,
                      bool (*stop)(void), workload_result *out, err *e) {
  return workload_run_each(ch, &req, 1, warmup, n, stop, out, e);
}

void workload_free(workload_result *r) {
  rpc_free((ProtobufCMessage *)r->last);
  r->last = NULL;
}

err_code workload_sample_image(int h, int w, Edgedi__V1__Image *msg, uint8_t **pixels, err *e) {
  *pixels = NULL;
  if (h <= 0 || w <= 0 || h > 1 << 14 || w > 1 << 14)
    return err_set(e, ERR_INVALID, "sample image %dx%d: bad size", h, w);
  uint8_t *px = malloc((size_t)h * (size_t)w);
  if (!px) return err_set(e, ERR_NOMEM, "out of memory for the sample image");
  err_code rc = sample_steel_surface(h, w, 1, px, e);
  if (rc != ERR_OK) {
    free(px);
    return rc;
  }
  edgedi__v1__image__init(msg);
  msg->height = (uint32_t)h;
  msg->width = (uint32_t)w;
  msg->channels = 1;
  msg->u8.data = px;
  msg->u8.len = (size_t)h * (size_t)w;
  *pixels = px;
  return ERR_OK;
}

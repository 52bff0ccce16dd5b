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

err_code workload_run(rpc_channel *ch, const Edgedi__V1__InferRequest *req, int warmup, int n,
                      bool (*stop)(void), workload_result *out, err *e) {
  memset(out, 0, sizeof *out);
  if (n < 1 || n > WORKLOAD_MAX_REQUESTS || warmup < 0 || warmup > WORKLOAD_MAX_REQUESTS)
    return err_set(e, ERR_INVALID, "%d requests after %d warm-up: out of range", n, warmup);
  /* lat, pred, then three per-device series of n values each. */
  size_t per = (size_t)n;
  double *buf = calloc(per * (2 + 3 * WORKLOAD_MAX_DEVICES), sizeof *buf);
  if (!buf) return err_set(e, ERR_NOMEM, "out of memory");
  double *lat = buf, *pred = buf + per, *dev = buf + 2 * per;
  err_code rc = ERR_OK;
  uint64_t first_plan = 0;
  out->one_plan = true;
  for (int i = 0; i < warmup + n && rc == ERR_OK; i++) {
    if (stop && stop()) {
      rc = err_set(e, ERR_UNAVAILABLE, "interrupted");
      break;
    }
    Edgedi__V1__InferReply *r = NULL;
    err ce = {0};
    if (client_infer(ch, req, &r, &ce) != GRPC_STATUS_OK) {
      rc = err_set(e, ce.code ? ce.code : ERR_UNAVAILABLE, "request %d of %d: %s", i + 1,
                   warmup + n, ce.msg);
      break;
    }
    if (i < warmup) {
      rpc_free((ProtobufCMessage *)r);
      continue;
    }
    int k = i - warmup;
    lat[k] = r->latency_ms;
    pred[k] = r->predicted_ms;
    if (k == 0) first_plan = r->plan_id;
    else if (r->plan_id != first_plan) out->one_plan = false;
    for (size_t j = 0; j < r->n_devices; j++) {
      const Edgedi__V1__DeviceTiming *t = r->devices[j];
      workload_device *d = device_slot(out, t->device);
      if (!d) continue;
      double *series = dev + (size_t)(d - out->devices) * 3 * per;
      series[d->replies] = t->compute_ms;
      series[per + (size_t)d->replies] = t->transfer_ms;
      series[2 * per + (size_t)d->replies] = t->predicted_ms;
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
  if (rc == ERR_OK) {
    out->median_ms = stats_median(lat, n); /* sorted: the ends are min and max */
    out->min_ms = lat[0];
    out->max_ms = lat[n - 1];
    out->predicted_ms = stats_median(pred, n);
    for (int i = 0; i < out->n_devices; i++) {
      workload_device *d = &out->devices[i];
      double *series = dev + (size_t)i * 3 * per;
      d->compute_ms = stats_median(series, d->replies);
      d->transfer_ms = stats_median(series + per, d->replies);
      d->predicted_ms = stats_median(series + 2 * per, d->replies);
    }
  } else {
    workload_free(out);
  }
  free(buf);
  return rc;
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

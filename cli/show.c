/* show.c — tables and JSON of the scheduler's answers (contract in show.h).
 *
 * Column widths follow the longest device name, so a table stays a table
 * whatever agents are called.
 */
#include "cli/show.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/timeline.h"
#include "storage/store.h"

enum { MAX_COLS = 32, BYTES_TEXT = 32, SHOW_TIMELINE_WIDTH = 64 };

static int name_width(const char *const *names, size_t n, int min) {
  int w = min;
  for (size_t i = 0; i < n; i++) {
    int l = (int)strlen(names[i]);
    if (l > w) w = l;
  }
  return w;
}

/* ---- plans ------------------------------------------------------------------ */

size_t show_plan_devices(const Edgedi__V1__PlanReply *p, const char **names, size_t max) {
  size_t n = 0;
  for (size_t s = 0; s < p->n_segments; s++)
    for (size_t k = 0; k < p->segments[s]->n_parts; k++) {
      const char *d = p->segments[s]->parts[k]->device;
      size_t i = 0;
      while (i < n && strcmp(names[i], d) != 0) i++;
      if (i == n && n < max) names[n++] = d;
    }
  return n;
}

static uint32_t rows_of(const Edgedi__V1__RowRange *r) {
  return r && r->hi > r->lo ? r->hi - r->lo : 0;
}

void show_plan(FILE *f, const Edgedi__V1__PlanReply *p, bool detail) {
  const char *names[MAX_COLS];
  size_t nd = show_plan_devices(p, names, MAX_COLS);
  int w = name_width(names, nd, 7);
  fprintf(f, "plan %016llx of %s (planner %s): %zu segments, head from layer %u\n",
          (unsigned long long)p->plan_id, p->model, p->planner, p->n_segments,
          p->head_first_layer);
  fprintf(f, "  output rows per device and segment:\n  %-4s %-9s %10s", "seg", "layers",
          "pred_ms");
  for (size_t i = 0; i < nd; i++) fprintf(f, " %*s", w, names[i]);
  fprintf(f, "\n");
  for (size_t s = 0; s < p->n_segments; s++) {
    const Edgedi__V1__Segment *sg = p->segments[s];
    char layers[24];
    snprintf(layers, sizeof layers, "%u-%u", sg->first_layer, sg->end_layer);
    fprintf(f, "  %-4zu %-9s %10.2f", s, layers, sg->predicted_ms);
    for (size_t i = 0; i < nd; i++) {
      uint32_t rows = 0;
      for (size_t k = 0; k < sg->n_parts; k++)
        if (strcmp(sg->parts[k]->device, names[i]) == 0) rows += rows_of(sg->parts[k]->out_rows);
      fprintf(f, " %*u", w, rows);
    }
    fprintf(f, "\n");
  }
  fprintf(f, "  predicted %.2f ms over the cluster; %.2f ms on the fastest device alone\n",
          p->predicted_ms, p->single_device_ms);
  if (!detail) return;
  fprintf(f, "\n  %-4s %-*s %-11s %-11s %8s %11s %12s %10s %10s\n", "seg", w, "device",
          "out_rows", "in_rows", "GFLOP", "compute_ms", "transfer_ms", "bytes_in",
          "bytes_out");
  for (size_t s = 0; s < p->n_segments; s++) {
    const Edgedi__V1__Segment *sg = p->segments[s];
    for (size_t k = 0; k < sg->n_parts; k++) {
      const Edgedi__V1__Assignment *a = sg->parts[k];
      char out[24], in[24], bi[BYTES_TEXT], bo[BYTES_TEXT];
      snprintf(out, sizeof out, "[%u,%u)", a->out_rows ? a->out_rows->lo : 0,
               a->out_rows ? a->out_rows->hi : 0);
      snprintf(in, sizeof in, "[%u,%u)", a->in_rows ? a->in_rows->lo : 0,
               a->in_rows ? a->in_rows->hi : 0);
      fprintf(f, "  %-4zu %-*s %-11s %-11s %8.4f %11.2f %12.2f %10s %10s\n", s, w, a->device,
              out, in, a->gflop, a->predicted_compute_ms, a->predicted_transfer_ms,
              cli_bytes(a->bytes_in, bi, sizeof bi), cli_bytes(a->bytes_out, bo, sizeof bo));
    }
    if (sg->fe_exchanges || sg->fe_early)
      fprintf(f, "  %-4zu %u feature-enhancement sum exchanges waited for, %u sent early\n", s,
              sg->fe_exchanges, sg->fe_early);
  }
}

void show_plan_json(FILE *f, const Edgedi__V1__PlanReply *p) {
  fprintf(f, "{\"plan_id\":\"%016llx\",\"model\":", (unsigned long long)p->plan_id);
  cli_json_string(f, p->model);
  fprintf(f, ",\"planner\":");
  cli_json_string(f, p->planner);
  fprintf(f, ",\"head_first_layer\":%u,\"predicted_ms\":%.3f,\"single_device_ms\":%.3f,"
             "\"segments\":[",
          p->head_first_layer, p->predicted_ms, p->single_device_ms);
  for (size_t s = 0; s < p->n_segments; s++) {
    const Edgedi__V1__Segment *sg = p->segments[s];
    fprintf(f, "%s{\"first_layer\":%u,\"end_layer\":%u,\"predicted_ms\":%.3f,"
               "\"fe_exchanges\":%u,\"fe_early\":%u,\"parts\":[",
            s ? "," : "", sg->first_layer, sg->end_layer, sg->predicted_ms, sg->fe_exchanges,
            sg->fe_early);
    for (size_t k = 0; k < sg->n_parts; k++) {
      const Edgedi__V1__Assignment *a = sg->parts[k];
      fprintf(f, "%s{\"device\":", k ? "," : "");
      cli_json_string(f, a->device);
      fprintf(f, ",\"out_rows\":[%u,%u],\"in_rows\":[%u,%u],\"gflop\":%.6f,"
                 "\"predicted_compute_ms\":%.3f,\"predicted_transfer_ms\":%.3f,"
                 "\"bytes_in\":%llu,\"bytes_out\":%llu}",
              a->out_rows ? a->out_rows->lo : 0, a->out_rows ? a->out_rows->hi : 0,
              a->in_rows ? a->in_rows->lo : 0, a->in_rows ? a->in_rows->hi : 0, a->gflop,
              a->predicted_compute_ms, a->predicted_transfer_ms,
              (unsigned long long)a->bytes_in, (unsigned long long)a->bytes_out);
    }
    fprintf(f, "]}");
  }
  fprintf(f, "]}\n");
}

/* ---- devices ---------------------------------------------------------------- */

static void age(int64_t then, char *buf, size_t len) {
  if (then <= 0) {
    snprintf(buf, len, "never");
    return;
  }
  long long s = (long long)(time(NULL) - then);
  if (s < 0) s = 0;
  if (s < 120) snprintf(buf, len, "%llds ago", s);
  else if (s < 7200) snprintf(buf, len, "%lldm ago", s / 60);
  else if (s < 172800) snprintf(buf, len, "%lldh ago", s / 3600);
  else snprintf(buf, len, "%lldd ago", s / 86400);
}

void show_devices(FILE *f, const Edgedi__V1__ListDevicesReply *l) {
  if (l->n_devices == 0) {
    fprintf(f, "no devices have registered with this scheduler\n");
    return;
  }
  const char *names[MAX_COLS * 8];
  size_t n = l->n_devices < MAX_COLS * 8 ? l->n_devices : MAX_COLS * 8;
  for (size_t i = 0; i < n; i++) names[i] = l->devices[i]->name;
  int w = name_width(names, n, 6);
  fprintf(f, "%-*s %-9s %-21s %5s %9s %8s %8s %9s %7s %7s %7s %10s\n", w, "device", "state",
          "address", "thr", "ms/GFLOP", "GFLOP/s", "fixed_ms", "link_Mbps", "rtt_ms",
          "samples", "fit_err", "last_seen");
  for (size_t i = 0; i < l->n_devices; i++) {
    const Edgedi__V1__Device *d = l->devices[i];
    char seen[24];
    age(d->last_seen, seen, sizeof seen);
    fprintf(f, "%-*s %-9s %-21s %5u", w, d->name, d->state, d->address, d->threads);
    const Edgedi__V1__CostModel *c = d->cost;
    if (c && c->samples > 0)
      fprintf(f, " %9.2f %8.2f %8.2f %9.1f %7.2f %7u %6.1f%%", c->ms_per_gflop,
              c->ms_per_gflop > 0 ? 1e3 / c->ms_per_gflop : 0.0, c->fixed_ms,
              c->bandwidth_mbps, c->rtt_ms, c->samples, 100.0 * c->fit_error);
    else
      fprintf(f, " %9s %8s %8s %9s %7s %7s %7s", "-", "-", "-", "-", "-", "-", "-");
    fprintf(f, " %10s\n", seen);
  }
}

void show_devices_json(FILE *f, const Edgedi__V1__ListDevicesReply *l) {
  fprintf(f, "{\"devices\":[");
  for (size_t i = 0; i < l->n_devices; i++) {
    const Edgedi__V1__Device *d = l->devices[i];
    fprintf(f, "%s{\"name\":", i ? "," : "");
    cli_json_string(f, d->name);
    fprintf(f, ",\"state\":");
    cli_json_string(f, d->state);
    fprintf(f, ",\"address\":");
    cli_json_string(f, d->address);
    fprintf(f, ",\"arch\":");
    cli_json_string(f, d->arch);
    fprintf(f, ",\"cores\":%u,\"threads\":%u,\"first_seen\":%lld,\"last_seen\":%lld", d->cores,
            d->threads, (long long)d->first_seen, (long long)d->last_seen);
    const Edgedi__V1__CostModel *c = d->cost;
    if (c && c->samples > 0)
      fprintf(f, ",\"cost\":{\"ms_per_gflop\":%.6g,\"fixed_ms\":%.6g,\"bandwidth_mbps\":%.6g,"
                 "\"rtt_ms\":%.6g,\"samples\":%u,\"fit_error\":%.6g,\"updated_at\":%lld}",
              c->ms_per_gflop, c->fixed_ms, c->bandwidth_mbps, c->rtt_ms, c->samples,
              c->fit_error, (long long)c->updated_at);
    fprintf(f, "}");
  }
  fprintf(f, "]}\n");
}

/* ---- inferences ------------------------------------------------------------- */

static size_t top_of(const Edgedi__V1__InferReply *r) {
  size_t top = 0;
  for (size_t i = 1; i < r->n_logits; i++)
    if (r->logits[i] > r->logits[top]) top = i;
  return top;
}

void show_timings(FILE *f, const Edgedi__V1__InferReply *r) {
  const char *names[MAX_COLS];
  size_t n = r->n_devices < MAX_COLS ? r->n_devices : MAX_COLS;
  for (size_t i = 0; i < n; i++) names[i] = r->devices[i]->device;
  int w = name_width(names, n, 6);
  fprintf(f, "  %-*s %5s %11s %8s %12s %13s %10s %10s %14s\n", w, "device", "rows",
          "compute_ms", "cpu_ms", "transfer_ms", "predicted_ms", "bytes_in", "bytes_out",
          "busy_until_ms");
  for (size_t i = 0; i < r->n_devices; i++) {
    const Edgedi__V1__DeviceTiming *d = r->devices[i];
    char bi[BYTES_TEXT], bo[BYTES_TEXT];
    fprintf(f, "  %-*s %5u %11.2f %8.2f %12.2f %13.2f %10s %10s %14.2f\n", w, d->device,
            d->rows, d->compute_ms, d->cpu_ms, d->transfer_ms, d->predicted_ms,
            cli_bytes(d->bytes_in, bi, sizeof bi), cli_bytes(d->bytes_out, bo, sizeof bo),
            d->busy_until_ms);
  }
}

/* The reply's timeline (DeviceTiming.spans), drawn as `edgedi timeline`
 * draws one from the database; nothing when the reply has none. */
static void show_reply_timeline(FILE *f, const Edgedi__V1__InferReply *r) {
  size_t pairs = 0;
  for (size_t i = 0; i < r->n_devices; i++) pairs += r->devices[i]->n_span_segments;
  store_span *p = pairs ? malloc(pairs * sizeof *p) : NULL;
  store_device *devs = pairs ? calloc(r->n_devices, sizeof *devs) : NULL;
  size_t m = 0;
  for (size_t i = 0; p && devs && i < r->n_devices; i++) {
    const Edgedi__V1__DeviceTiming *d = r->devices[i];
    devs[i].id = (int64_t)i + 1;
    snprintf(devs[i].name, sizeof devs[i].name, "%s", d->device);
    for (size_t k = 0; k < d->n_span_segments && 2 * k + 1 < d->n_spans; k++) {
      p[m++] = (store_span){.device_id = devs[i].id, .segment = d->span_segments[k],
                            .start_ms = d->spans[2 * k], .end_ms = d->spans[2 * k + 1]};
    }
  }
  err e = {0};
  if (m) {
    fprintf(f, "when each device computed (digits: segment, '.': waiting):\n");
    double len = timeline_extent(p, m, r->latency_ms);
    if (timeline_write(p, m, devs, r->n_devices, len, SHOW_TIMELINE_WIDTH, "  ", f, &e) !=
        ERR_OK)
      fprintf(f, "  (%s)\n", e.msg);
  }
  free(p);
  free(devs);
}

void show_infer(FILE *f, const Edgedi__V1__InferReply *r) {
  int n = (int)r->n_logits;
  char buf[32];
  if (n > 0) {
    size_t top = top_of(r);
    fprintf(f, "top class: %zu %s (logit %.5g)\n", top,
            cli_class_name((int)top, n, buf, sizeof buf), r->logits[top]);
  }
  fprintf(f, "logits:");
  for (int i = 0; i < n; i++) {
    if (n > 16 && i == 8) {
      fprintf(f, " ... (%d more)", n - 16);
      i = n - 8;
    }
    fprintf(f, " %s=%.5g", cli_class_name(i, n, buf, sizeof buf), r->logits[i]);
  }
  fprintf(f, "\nlatency %.2f ms (predicted %.2f ms; head on the scheduler %.2f ms)\n",
          r->latency_ms, r->predicted_ms, r->head_ms);
  fprintf(f, "request %llu, plan %016llx (planner %s), %zu devices:\n",
          (unsigned long long)r->request_id, (unsigned long long)r->plan_id, r->planner,
          r->n_devices);
  show_timings(f, r);
  show_reply_timeline(f, r);
  char moved[BYTES_TEXT], all[BYTES_TEXT];
  fprintf(f, "bytes moved %s; gathering whole maps at every segment would move %s",
          cli_bytes(r->bytes_moved, moved, sizeof moved),
          cli_bytes(r->bytes_gather_all, all, sizeof all));
  if (r->bytes_moved > 0)
    fprintf(f, " (%.1fx more)", (double)r->bytes_gather_all / (double)r->bytes_moved);
  fprintf(f, "\n");
  if (r->recovery && r->recovery[0]) fprintf(f, "recovered: %s\n", r->recovery);
}

void show_infer_json(FILE *f, const Edgedi__V1__InferReply *r) {
  size_t top = r->n_logits ? top_of(r) : 0;
  char buf[32];
  fprintf(f, "{\"request_id\":%llu,\"plan_id\":\"%016llx\",\"planner\":",
          (unsigned long long)r->request_id, (unsigned long long)r->plan_id);
  cli_json_string(f, r->planner);
  fprintf(f, ",\"recovery\":");
  cli_json_string(f, r->recovery ? r->recovery : "");
  fprintf(f, ",\"top_class\":%zu,\"top_class_name\":", top);
  cli_json_string(f, cli_class_name((int)top, (int)r->n_logits, buf, sizeof buf));
  fprintf(f, ",\"logits\":[");
  for (size_t i = 0; i < r->n_logits; i++) fprintf(f, "%s%.9g", i ? "," : "", r->logits[i]);
  fprintf(f, "],\"latency_ms\":%.3f,\"predicted_ms\":%.3f,\"head_ms\":%.3f,"
             "\"bytes_moved\":%llu,\"bytes_gather_all\":%llu,\"devices\":[",
          r->latency_ms, r->predicted_ms, r->head_ms, (unsigned long long)r->bytes_moved,
          (unsigned long long)r->bytes_gather_all);
  for (size_t i = 0; i < r->n_devices; i++) {
    const Edgedi__V1__DeviceTiming *d = r->devices[i];
    fprintf(f, "%s{\"device\":", i ? "," : "");
    cli_json_string(f, d->device);
    fprintf(f, ",\"rows\":%u,\"compute_ms\":%.3f,\"cpu_ms\":%.3f,\"transfer_ms\":%.3f,"
               "\"predicted_ms\":%.3f,\"bytes_in\":%llu,\"bytes_out\":%llu,"
               "\"busy_until_ms\":%.3f,\"spans\":[",
            d->rows, d->compute_ms, d->cpu_ms, d->transfer_ms, d->predicted_ms,
            (unsigned long long)d->bytes_in, (unsigned long long)d->bytes_out,
            d->busy_until_ms);
    for (size_t k = 0; k < d->n_span_segments && 2 * k + 1 < d->n_spans; k++)
      fprintf(f, "%s[%u,%.3f,%.3f]", k ? "," : "", d->span_segments[k], d->spans[2 * k],
              d->spans[2 * k + 1]);
    fprintf(f, "]}");
  }
  fprintf(f, "]}\n");
}

/* timeline.c — a request's measured timeline as text (contract in
 * timeline.h). */
#include "cli/timeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char k_segment_chars[] = "0123456789abcdefghijklmnopqrstuvwxyz";

/* The spans of device `id`: [*first, *first + returned count). */
static size_t spans_of(const store_span *spans, size_t n, int64_t id, size_t *first) {
  size_t k = 0;
  while (k < n && spans[k].device_id != id) k++;
  *first = k;
  size_t m = 0;
  while (k + m < n && spans[k + m].device_id == id) m++;
  return m;
}

static double busy_ms(const store_span *p, size_t m) {
  double busy = 0;
  for (size_t i = 0; i < m; i++) busy += p[i].end_ms - p[i].start_ms;
  return busy;
}

/* One device's row: per column the segment computed most of, if it took a
 * quarter of the column. */
static void fill_row(const store_span *p, size_t m, double total_ms, int width, char *row) {
  double dt = total_ms / width;
  double share[sizeof k_segment_chars];
  for (int c = 0; c < width; c++) {
    double lo = c * dt, hi = lo + dt;
    memset(share, 0, sizeof share);
    for (size_t i = 0; i < m; i++) {
      double o = fmin(hi, p[i].end_ms) - fmax(lo, p[i].start_ms);
      if (o > 0) share[p[i].segment % (sizeof k_segment_chars - 1)] += o;
    }
    int best = 0;
    for (size_t s = 1; s < sizeof k_segment_chars - 1; s++)
      if (share[s] > share[best]) best = (int)s;
    row[c] = share[best] >= dt / 4 ? k_segment_chars[best] : '.';
  }
  row[width] = '\0';
}

/* Ticks every 10 columns, each labelled with its ms under its column. */
static void write_axis(double total_ms, int width, int name_w, const char *indent, FILE *f) {
  char line[TIMELINE_MAX_WIDTH + 16];
  memset(line, ' ', sizeof line);
  int end = 0;
  for (int c = 0; c <= width; c += 10) {
    char label[16];
    int len = snprintf(label, sizeof label, "%.0f", total_ms * c / width);
    if (c + len > width + 8) break;
    memcpy(line + c, label, (size_t)len);
    end = c + len;
  }
  line[end] = '\0';
  fprintf(f, "%s%*s  %s ms\n", indent, name_w, "", line);
}

err_code timeline_write(const store_span *spans, size_t n, const store_device *devs,
                        size_t n_devs, double total_ms, int width, const char *indent,
                        FILE *f, err *e) {
  if (width < TIMELINE_MIN_WIDTH || width > TIMELINE_MAX_WIDTH)
    return err_set(e, ERR_INVALID, "width %d is outside [%d, %d]", width, TIMELINE_MIN_WIDTH,
                   TIMELINE_MAX_WIDTH);
  if (!(total_ms > 0) || !isfinite(total_ms))
    return err_set(e, ERR_INVALID, "a timeline needs a positive length, not %g ms", total_ms);
  int name_w = 6;
  for (size_t d = 0; d < n_devs; d++) {
    int len = (int)strlen(devs[d].name);
    if (len > name_w) name_w = len;
  }
  char row[TIMELINE_MAX_WIDTH + 1];
  for (size_t d = 0; d < n_devs; d++) {
    size_t first, m = spans_of(spans, n, devs[d].id, &first);
    if (!m) continue;
    fill_row(spans + first, m, total_ms, width, row);
    double busy = busy_ms(spans + first, m);
    fprintf(f, "%s%-*s |%s| %5.1f ms busy, %3.0f %%\n", indent, name_w, devs[d].name, row,
            busy, 100 * busy / total_ms);
  }
  write_axis(total_ms, width, name_w, indent, f);
  return ERR_OK;
}

void timeline_write_json(const store_span *spans, size_t n, const store_device *devs,
                         size_t n_devs, double total_ms, FILE *f) {
  for (size_t d = 0; d < n_devs; d++) {
    size_t first, m = spans_of(spans, n, devs[d].id, &first);
    if (!m) continue;
    const store_span *p = spans + first;
    double busy = busy_ms(p, m);
    fprintf(f, "{\"device\":");
    cli_json_string(f, devs[d].name);
    fprintf(f, ",\"busy_ms\":%.3f,\"busy_fraction\":%.4f,\"spans\":[", busy,
            total_ms > 0 ? busy / total_ms : 0);
    for (size_t i = 0; i < m; i++)
      fprintf(f, "%s[%u,%.3f,%.3f]", i ? "," : "", p[i].segment, p[i].start_ms, p[i].end_ms);
    fprintf(f, "]}\n");
  }
}

double timeline_extent(const store_span *spans, size_t n, double total_ms) {
  for (size_t i = 0; i < n; i++)
    if (spans[i].end_ms > total_ms) total_ms = spans[i].end_ms;
  return total_ms;
}

err_code timeline_load(store *st, int64_t id, timeline_request *out, err *e) {
  memset(out, 0, sizeof *out);
  err_code rc = store_request_get(st, id, &out->row, e);
  if (rc == ERR_OK) rc = store_request_spans(st, id, &out->spans, &out->n, e);
  if (rc == ERR_OK) rc = store_device_list(st, &out->devs, &out->n_devs, e);
  if (rc == ERR_OK) out->total_ms = timeline_extent(out->spans, out->n, out->row.measured_ms);
  return rc;
}

void timeline_request_free(timeline_request *t) {
  if (!t) return;
  store_free(t->spans);
  store_free(t->devs);
  t->spans = NULL;
  t->devs = NULL;
}

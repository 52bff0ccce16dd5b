/* gantt.c — one request's rebuilt timeline (contract in gantt.h). */
#include "benchmarks/gantt.h"

#include <stdlib.h>
#include <string.h>

#include "storage/store.h"

/* Tiles a device keeps in the window read: one request of the newest
 * has at most one tile per segment (a zoo model has < 64 segments). */
enum { GANTT_TILES_PER_DEVICE = 4096 };

static int by_segment(const void *a, const void *b) {
  const store_tile *x = a, *y = b;
  return (x->segment > y->segment) - (x->segment < y->segment);
}

static const char *device_name(const store_device *devs, size_t n, int64_t id) {
  for (size_t i = 0; i < n; i++)
    if (devs[i].id == id) return devs[i].name;
  return "?";
}

/* The measured timeline: every compute stretch the agents reported. */
static int write_spans(const store_span *p, size_t n, const store_device *devs, size_t n_devs,
                       int64_t request_id, FILE *f) {
  fprintf(f, "# request %lld: device segment phase start_ms end_ms (measured compute "
          "stretches, tile_spans; the gaps are waits)\n", (long long)request_id);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s\t%u\tcompute\t%.3f\t%.3f\n", device_name(devs, n_devs, p[i].device_id),
            p[i].segment, p[i].start_ms, p[i].end_ms);
  return (int)n;
}

err_code gantt_write(const char *db_path, int64_t request_id, FILE *f, err *e) {
  store *s = NULL;
  store_device *devs = NULL;
  size_t n_devs = 0;
  store_span *spans = NULL;
  size_t n_spans = 0;
  err_code rc = store_open(db_path, &s, e);
  if (rc == ERR_OK) rc = store_device_list(s, &devs, &n_devs, e);
  if (rc == ERR_OK) rc = store_request_spans(s, request_id, &spans, &n_spans, e);
  int rows = 0;
  if (rc == ERR_OK && n_spans) {
    rows = write_spans(spans, n_spans, devs, n_devs, request_id, f);
    n_devs = 0; /* done: no rebuilt timeline */
  } else if (rc == ERR_OK)
    fprintf(f, "# request %lld: device segment phase start_ms end_ms (rebuilt from "
            "tile_history)\n", (long long)request_id);
  for (size_t d = 0; d < n_devs && rc == ERR_OK; d++) {
    store_tile *t = NULL;
    size_t n = 0;
    rc = store_tiles_recent(s, devs[d].id, GANTT_TILES_PER_DEVICE, &t, &n, e);
    if (rc != ERR_OK) break;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
      if (t[i].request_id == request_id) t[k++] = t[i];
    qsort(t, k, sizeof *t, by_segment);
    double busy_until = 0;
    for (size_t i = 0; i < k; i++) {
      double start = t[i].measured_transfer_ms + t[i].wait_ms;
      if (start < busy_until) start = busy_until;
      double end = start + t[i].measured_compute_ms;
      double xfer = t[i].measured_transfer_ms;
      if (xfer > 0) {
        fprintf(f, "%s\t%u\ttransfer\t%.3f\t%.3f\n", devs[d].name, t[i].segment,
                start - xfer > 0 ? start - xfer : 0, start);
        rows++;
      }
      fprintf(f, "%s\t%u\tcompute\t%.3f\t%.3f\n", devs[d].name, t[i].segment, start, end);
      rows++;
      busy_until = end;
    }
    store_free(t);
  }
  store_free(spans);
  store_free(devs);
  store_close(s);
  if (rc == ERR_OK && rows == 0)
    rc = err_set(e, ERR_NOT_FOUND, "request %lld has no tiles in %s", (long long)request_id,
                 db_path);
  return rc;
}

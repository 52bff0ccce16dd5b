/* timeline.h — one request's measured timeline as text: when each device
 * computed (tile_spans, storage/store.h) and how much of the request it
 * was busy, for `edgedi timeline`.
 *
 * A device is one row of `width` columns over [0, total_ms]. A column in
 * which the device computed for at least a quarter of its time shows the
 * segment it computed most of (0-9, then a-z, wrapping); any other shows
 * '.', a wait (for rows, FE scales, or the other devices). Below the rows,
 * an axis in ms. Pure formatting: no I/O but the FILE given. */
#ifndef EDGEDI_CLI_TIMELINE_H
#define EDGEDI_CLI_TIMELINE_H

#include <stdio.h>

#include "runtime/err.h"
#include "storage/store.h"

enum {
  TIMELINE_MIN_WIDTH = 10,
  TIMELINE_MAX_WIDTH = 1000,
  TIMELINE_DEFAULT_WIDTH = 72,
};

/* One request's timeline as the database holds it. */
typedef struct timeline_request {
  store_request_row row;
  store_span *spans; /* store_request_spans' order */
  size_t n;
  store_device *devs;
  size_t n_devs;
  double total_ms; /* the request's time, or its last stretch's end if later */
} timeline_request;

/* Reads request `id`, its stretches and the devices from st (ERR_NOT_FOUND:
 * no such request). Free with timeline_request_free, also after a failure. */
err_code timeline_load(store *st, int64_t id, timeline_request *out, err *e);
void timeline_request_free(timeline_request *t);

/* The length a timeline of `spans` is drawn over: total_ms, or the last
 * stretch's end where that is later (a stretch is placed by halving the
 * link's ways there and back, so it may end a little after the reply). */
double timeline_extent(const store_span *spans, size_t n, double total_ms);

/* Writes the rows of the devices in `devs` that have spans (spans ordered
 * by device then start, as store_request_spans gives them), then the axis,
 * each line after `indent`. ERR_INVALID for a width outside
 * [TIMELINE_MIN_WIDTH, TIMELINE_MAX_WIDTH] or a total_ms that is not a
 * positive number. */
err_code timeline_write(const store_span *spans, size_t n, const store_device *devs,
                        size_t n_devs, double total_ms, int width, const char *indent,
                        FILE *f, err *e);

/* The same as JSON lines: one object per device with its busy time and
 * its spans as [segment, start_ms, end_ms]. */
void timeline_write_json(const store_span *spans, size_t n, const store_device *devs,
                         size_t n_devs, double total_ms, FILE *f);

#endif

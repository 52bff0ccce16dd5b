/* gantt.h — the timeline of one request across the devices, from the
 * scheduler's database (tile_history), as rows a plot can draw.
 *
 * tile_history keeps, per tile, the measured transfer, wait and compute
 * times, not when each began; so the timeline is rebuilt. The scheduler
 * streams a device all its jobs of a request at once, and an agent counts
 * a job's wait from its arrival to the start of its compute (inputs, halo
 * rows, the jobs before it). So a tile's compute is drawn from
 * transfer + wait (its way down, then its wait) to that plus compute, never
 * before the device's previous compute ended, and its transfer as the bar
 * just before its compute. The end of a device's last compute is about
 * what it was busy for; the reply's busy_until_ms is the
 * measured check of that. Read after the scheduler stopped (the file is
 * then closed and whole). Nothing prints.
 */
#ifndef EDGEDI_BENCH_GANTT_H
#define EDGEDI_BENCH_GANTT_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/err.h"

/* Writes "device<TAB>segment<TAB>phase<TAB>start_ms<TAB>end_ms" lines
 * (phase: transfer or compute) for request_id of the database at
 * db_path to f, after a "# ..." header line. ERR_NOT_FOUND when the
 * request has no tiles. */
err_code gantt_write(const char *db_path, int64_t request_id, FILE *f, err *e);

#endif

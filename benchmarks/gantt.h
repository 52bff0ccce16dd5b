/* gantt.h — the timeline of one request across the devices, from the
 * scheduler's database, as rows a plot can draw.
 *
 * Agents report when they computed each tile (TileResult.spans), and the
 * scheduler records those stretches in tile_spans: the timeline is then
 * measured, one "compute" row per stretch, and its gaps are the waits for
 * rows and FE scales. For a request recorded before tile_spans (or by
 * agents that send no spans) it is rebuilt from tile_history, which keeps
 * per tile only the summed transfer, wait and compute times: a tile's
 * compute is drawn from transfer + wait (the scheduler streams a device
 * all its jobs at once and an agent counts a job's wait from its arrival)
 * to that plus compute, never before the device's previous compute ended,
 * and its transfer as the bar just before it. Read after the scheduler
 * stopped (the file is then closed and whole). Nothing prints.
 */
#ifndef EDGEDI_BENCH_GANTT_H
#define EDGEDI_BENCH_GANTT_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/err.h"

/* Writes "device<TAB>segment<TAB>phase<TAB>start_ms<TAB>end_ms" lines
 * (phase: compute, and transfer when rebuilt) for request_id of the database at
 * db_path to f, after a "# ..." header line. ERR_NOT_FOUND when the
 * request has no tiles. */
err_code gantt_write(const char *db_path, int64_t request_id, FILE *f, err *e);

#endif

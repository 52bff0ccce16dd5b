/* baseline_pool.h — the model whole, timed beside each request.
 *
 * Why: a cluster figure divides the model whole on the slowest board by a
 * request's latency, and every emulated board's time is this host's
 * thread CPU time stretched (tile.h). The host's speed is not steady: on
 * the device machine lent on 2026-11-27 one request's tiles took 252 to
 * 630 ms of CPU for the same work, and vgg16 whole 3195 ms before a point
 * and 5596 after it. A baseline measured before and after the requests
 * divides them by a speed the host had tens of seconds away. A pool runs
 * the model whole once right after each request instead, so the two see
 * the same host, and the speedup is the median of the per-request ratios.
 *
 * Processes: one process's speed depends on where its memory landed
 * (baseline.h), so the pool keeps BASELINE_PROCESSES forked copies, each
 * holding the model built once, and asks them in turn. Copies block on a
 * socket between runs and use no CPU; they exit when the pool closes or
 * its process dies (their socket's other end closes). They may be forked
 * from a process with threads (gRPC's): they only compute and answer.
 */
#ifndef EDGEDI_CLI_BASELINE_POOL_H
#define EDGEDI_CLI_BASELINE_POOL_H

#include <stdbool.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"

typedef struct baseline_pool baseline_pool;

/* Forks `processes` (1 .. BASELINE_PROCESSES) copies, each building
 * `model` and running it once to warm up; returns when all are ready.
 * img must stay valid until close (the children have their copy; the
 * parent does not read it). */
err_code baseline_pool_open(const char *model, const Edgedi__V1__Image *img, bool emulated,
                            int processes, baseline_pool **out, err *e);

/* One whole run in the next copy: its thread CPU ms. ERR_UNAVAILABLE when
 * that copy died (the others are still asked next time). */
err_code baseline_pool_run(baseline_pool *p, double *cpu_ms, err *e);

/* baseline_pool_run on pool (a baseline_pool *): a workload_probe's run
 * (workload.h), the model whole timed beside each request. */
err_code baseline_pool_probe(void *pool, double *cpu_ms, err *e);

/* Ends the copies and waits for them. NULL: nothing. */
void baseline_pool_close(baseline_pool *p);

#endif

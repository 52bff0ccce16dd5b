/* stats.h — the few measurements every program and test of EdgeDI makes the
 * same way: a monotonic clock, medians, and the exactness metric of
 * DESIGN.md (max |difference| relative to the largest reference value). */
#ifndef EDGEDI_STATS_H
#define EDGEDI_STATS_H

#include <stddef.h>

/* Milliseconds on the monotonic clock. */
double stats_now_ms(void);
/* CPU time of the calling thread, ms: what an emulated device's speed
 * divides (tile.h) and what single-device baselines compare with. */
double stats_thread_cpu_ms(void);

/* Median of v[0..n) (sorts v in place); 0 for n <= 0. */
double stats_median(double *v, int n);

/* max_i |got[i] - want[i]| / max_i |want[i]| (the absolute difference when
 * want is all zero). */
double stats_max_rel_diff(const float *got, const float *want, size_t n);

#endif

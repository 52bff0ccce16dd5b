/* profile.h — the arithmetic of measuring a device: fitting its compute
 * model from calibration samples, its link from ping round trips, and
 * estimating how much of a tile's time was spent on the wire.
 *
 * Pure functions on numbers the caller measured (no I/O, no threads), so
 * every formula is unit-tested on its own; cluster.c does the measuring.
 *
 * Compute model: ms = a * GFLOP + b, fitted by least squares over the
 * samples. The store (and the planner) need a > 0 and b >= 0, so a fit
 * with b < 0 (noise at the small end) is redone through the origin
 * (b = 0), and a fit with a <= 0 (time that does not grow with work) is
 * refused: such a device cannot be planned on. fit_error is the relative
 * RMS error sqrt(mean(((a*g + b - ms) / ms)^2)) of the fit kept.
 *
 * Link model: a ping with no payload measures the round trip; a ping that
 * carries `bytes` each way takes 2 * bytes * 8 / bandwidth longer. Medians
 * of repeated pings keep one scheduling hiccup from deciding the result.
 * A round-trip difference at or below the clock's resolution (loopback,
 * an unlimited emulated link) gives PROFILE_MAX_BANDWIDTH_MBPS rather than
 * a division by almost nothing.
 */
#ifndef EDGEDI_PROFILE_H
#define EDGEDI_PROFILE_H

#include <stddef.h>

#include "runtime/err.h"

/* Reported for links faster than the probe can tell apart (100 Gbit/s). */
#define PROFILE_MAX_BANDWIDTH_MBPS 100000.0

typedef struct profile_point {
  double gflop;
  double ms;
} profile_point;

typedef struct profile_fit {
  double ms_per_gflop; /* a > 0 */
  double fixed_ms;     /* b >= 0 */
  double fit_error;    /* relative RMS, >= 0 */
  size_t samples;
} profile_fit;

/* Least-squares fit of ms = a * gflop + b over n points. ERR_INVALID when
 * there is no usable point (gflop and ms must be finite and > 0), or when
 * the fit cannot give a > 0; the message says what the samples looked
 * like. One distinct size is fitted through the origin. */
err_code profile_fit_linear(const profile_point *pts, size_t n, profile_fit *out,
                            err *e);

/* The median of n values (n >= 1); v is reordered. */
double profile_median(double *v, size_t n);

/* Link from median round trips: `small_rtt_ms` with no payload,
 * `large_rtt_ms` with `bytes` out and `bytes` back. *rtt_ms is the small
 * round trip, *bandwidth_mbps the bandwidth the difference implies (capped
 * at PROFILE_MAX_BANDWIDTH_MBPS). ERR_INVALID for negative or non-finite
 * input. */
err_code profile_link(double small_rtt_ms, double large_rtt_ms, size_t bytes,
                      double *rtt_ms, double *bandwidth_mbps, err *e);

/* One tile's measured transfer time, in ms (see the contract in
 * scheduler/infer.c, "What transfer time means"):
 *   elapsed = result_ms - sent_ms (scheduler clock: job written to its
 *             stream -> its TileResult read),
 *   transfer = elapsed - compute_ms - wait_ms - queued_ms, at least 0,
 * where queued_ms is the agent's time on other work before it took up
 * this job (estimated by the caller, see scheduler/infer.h). */
double profile_tile_transfer_ms(double sent_ms, double result_ms,
                                double compute_ms, double wait_ms,
                                double queued_ms);

#endif

/* refit.h — online cost models: a device's compute model (ms = a * GFLOP +
 * b per tile) and its link (transfer = round trip + bytes / bandwidth)
 * refitted from the tiles it ran most recently. Pure arithmetic on numbers
 * the caller read from the tile history (no I/O, no threads), so every rule
 * is unit-tested on its own; refit_run.c reads the history, stores the fits
 * and pushes them into the live cluster.
 *
 * Why weighted least squares over a window, not recursive least squares:
 * the window is re-read from SQLite after every request, so a fit is a
 * function of the stored history alone. It survives scheduler restarts,
 * needs no state of its own that one bad sample could corrupt for good,
 * and a test can recompute it exactly. RLS with forgetting gives the same
 * exponential recency in O(1) per sample, which would matter only for
 * windows far larger than REFIT_WINDOW_TILES.
 *
 * The compute fit, on samples given newest first:
 *  0. first runs of a strip (made for the tile: XNNPACK operators set up,
 *     weights packed, buffers touched for the first time) are left out
 *     when at least REFIT_MIN_TILES repeat runs are in the window. A first
 *     run costs ten times a repeat one and more on a small tile (5-10 %
 *     more CPU per GFLOP on the zoo models at 200x200, whose strip memory
 *     stays resident), and a plan change makes them on every device it
 *     moves rows to: in the fit they looked like a slowdown of whichever
 *     device the last plan changed most (two equal agents were once
 *     fitted at 3011 and 1110 ms per GFLOP and split 0.24 / 0.76). The
 *     rate a plan is priced at is that of its repeat runs; only a device
 *     with too few of them is fitted on all;
 *  1. weights halve every REFIT_HALF_LIFE_TILES samples (recency);
 *  2. a weighted least-squares line through all of them, with a prior:
 *     REFIT_B_PRIOR_WEIGHT (b - beta a)^2 added to the squared error,
 *     beta = the prior's b / a, its fixed cost in GFLOP of work. The
 *     tiles of a request span a few times in size, so with tile times
 *     scattering by tens of percent the slope and intercept of their
 *     line trade off wildly (a halved and b tripled fits as well); the
 *     prior keeps b in proportion to a unless the tiles insist, while a
 *     follows them. A ratio, not b itself, because a change of speed
 *     stretches a and b alike and leaves it as it was;
 *  3. change detection: when the window is told better (by
 *     REFIT_CHANGE_GAIN) as two lines, its newest m samples (at least
 *     REFIT_CHANGE_MIN_TILES) on one and the older ones on another, and
 *     the two lines' total time over those m samples differs by more
 *     than REFIT_CHANGE_REL (the device slowed down or recovered), only
 *     the newest m are kept — so a speed change is followed within about
 *     a request's tiles instead of being averaged away over the window.
 *     Fewer than REFIT_CHANGE_REFIT_TILES cannot carry a line of their own
 *     (a and b from four tiles swing wildly); a change of speed stretches
 *     every job alike (the emulated speed, throttling, a competing
 *     process), so the line is then the old one (fitted on the samples
 *     before the change) scaled by the new samples' total time over what
 *     it predicts for them;
 *  4. (unless the line was scaled) outliers (first use of a strip, which pays its preparation; a
 *     hiccup; the first one or two samples after a change, before there
 *     are enough to call it one) whose relative residual exceeds
 *     REFIT_OUTLIER_FACTOR times the median one are dropped and the line
 *     refitted, up to REFIT_OUTLIER_ROUNDS times;
 *  5. b < 0 is refitted through the origin (b = 0), as profile.h does;
 *     samples of one size cannot separate a from b, so b is then the
 *     prior's and only a is fitted.
 * A fit that still gives a <= 0, or anything not finite, is refused
 * (ERR_INVALID): the caller keeps the model it had; so is one whose tiles,
 * on their own, show time falling with work beyond REFIT_COMPUTE_MIN_T
 * standard errors. Tiles whose own slope is within that many standard
 * errors of 0 (their time is mostly b: tiny strips of a tiny model) cannot
 * tell a: with a prior, only their total is fitted, y = a (x + beta)
 * (total_only); without one, the fit is refused. Either way a slope lost
 * in noise never makes a device look nearly infinitely fast, and every
 * device of a cluster is refitted alike (a device left on its calibration
 * next to refitted ones would be compared in different units).
 *
 * Ranges (refit_compute_ranges), the per-segment correction. One model's
 * layer ranges run at very different rates on the same device: a first
 * segment of 3-channel and narrow 8-channel convolutions runs at a
 * fraction of the GFLOP rate of a later one of wide 3x3 convolutions (2 to
 * 4 times on vgg16c). One line through tiles of all ranges then mixes
 * their rates in whatever proportion the last plans happened to give the
 * device, and two equal devices with different strips get different
 * slopes. So before the steps above, each tile's GFLOP is scaled by its
 * range's cost factor: the weighted median of (ms - b) / GFLOP over the
 * range's tiles, relative to the average of those slopes weighted by each
 * range's GFLOP over the whole picture (range_gflop). A speed change
 * scales every range alike and leaves the factors as they were; the fitted
 * a is then the device's rate on the model as a whole: a * the model's
 * GFLOP + b per part predicts a whole request, for any split. The planner
 * has one line per device, so the factors themselves cannot reach it.
 *
 * The link fit: transfer_ms = c0 + c1 * bytes by the same weights.
 * Measured transfer times are estimates with noise of a few ms (infer.h,
 * "What transfer time means"), and on a fast link the bytes explain little
 * of them; so the bandwidth 8 / (1e3 * c1) is taken only when c1 is
 * positive and at least REFIT_LINK_MIN_T standard errors from zero (the
 * data supports it); otherwise the prior bandwidth stays. The round trip is
 * the intercept (what a transfer costs beyond its bytes), at least 0.
 *
 * Transfer estimates are estimates (infer.h), while the session's Ping
 * probe (cluster.h) measures the link itself. So refit_link_bound() keeps
 * a refitted link within REFIT_LINK_MAX_DRIFT of the probe: a link that degrades by more
 * than that needs the agent to register again (and be probed again).
 *
 * What may reach the planner: refit_check_device() — every coefficient
 * finite, a > 0, b >= 0, bandwidth > 0, round trip >= 0. The cluster
 * applies the same rule to anything pushed into a live session.
 */
#ifndef EDGEDI_REFIT_H
#define EDGEDI_REFIT_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/err.h"
#include "scheduler/plan.h"

/* Policy, in one place. */
enum {
  REFIT_WINDOW_TILES = 50,    /* newest tiles a fit reads */
  REFIT_MIN_TILES = 4,        /* fewer usable samples: no fit */
  REFIT_CHANGE_MIN_TILES = 4, /* newest samples that can show a change */
  REFIT_CHANGE_REFIT_TILES = 12, /* after a change, a line of their own from this many */
};
#define REFIT_B_PRIOR_WEIGHT 4.0 /* the prior's b / a counts as 4 newest tiles */
#define REFIT_HALF_LIFE_TILES 16.0 /* a few requests: change detection follows changes */
#define REFIT_CHANGE_REL 0.25     /* the new line's total 25 % off the old one's */
#define REFIT_CHANGE_GAIN 0.5     /* two lines leave half the squared error */
#define REFIT_OUTLIER_FACTOR 4.0  /* times the median relative residual */
#define REFIT_OUTLIER_MIN_REL 0.2 /* never drop a sample closer than 20 % */
#define REFIT_OUTLIER_ROUNDS 3
#define REFIT_RANGE_ROUNDS 3 /* range factors and b, found in turn */
#define REFIT_LINK_MIN_T 2.0      /* bytes must explain transfer this surely */
#define REFIT_COMPUTE_MIN_T 2.0   /* and work compute time */
#define REFIT_LINK_OUTLIER_MIN_MS 2.0 /* link residuals below this are noise */
#define REFIT_LINK_MAX_DRIFT 4.0      /* a refit link stays this close to the probe */
#define REFIT_LINK_RTT_SLACK_MS 0.5   /* ... and its round trip within this of it */

/* One tile as the fit sees it. */
typedef struct refit_sample {
  int range;          /* refit_compute_ranges: index of its layer range */
  double gflop;       /* work, halo recomputation included */
  double compute_ms;  /* measured */
  double bytes;       /* payload in + out */
  double transfer_ms; /* measured (estimated) transfer */
  bool first_run;     /* its strip was made for it (TileResult.fresh_strip) */
} refit_sample;

typedef struct refit_compute_fit {
  double ms_per_gflop; /* a > 0 */
  double fixed_ms;     /* b >= 0 */
  double fit_error;    /* weighted relative RMS over the samples kept (range factors applied) */
  size_t samples;      /* samples kept */
  size_t dropped;      /* outliers and samples before a detected change */
  size_t first_runs;   /* first runs of their strips left out (step 0) */
  int changed;         /* 1: a change was detected and older samples cut */
  size_t ranges;       /* ranges whose cost factor was used (0: none) */
  int total_only;      /* 1: the tiles could not tell a from b; b = beta a */
} refit_compute_fit;

/* Fits a and b from n samples, newest first. The prior (the model the
 * device has now; prior_ms_per_gflop <= 0: none) gives beta (step 2);
 * prior_fixed_ms (< 0: none) is also b when the samples have one size and
 * no prior a is given. ERR_INVALID with what the samples looked like when
 * there are fewer than REFIT_MIN_TILES usable ones (gflop and compute_ms
 * finite and > 0) or no sensible fit. */
err_code refit_compute(const refit_sample *s, size_t n, double prior_ms_per_gflop,
                       double prior_fixed_ms, refit_compute_fit *out, err *e);

/* The same with the per-range correction: sample i belongs to range
 * s[i].range, 0 .. n_ranges - 1, whose GFLOP over the whole picture is
 * range_gflop[range] (> 0; other ranges and samples are not corrected).
 * Fewer than two ranges with a factor: exactly refit_compute. */
err_code refit_compute_ranges(const refit_sample *s, size_t n, double prior_ms_per_gflop,
                              double prior_fixed_ms, const double *range_gflop,
                              size_t n_ranges, refit_compute_fit *out, err *e);

typedef struct refit_link_fit {
  double bandwidth_mbps; /* > 0: fitted, or the prior's */
  double rtt_ms;         /* >= 0 */
  int bandwidth_fitted;  /* 0: the data did not support a bandwidth */
  size_t samples;
} refit_link_fit;

/* Fits the link from n samples, newest first; prior_mbps (> 0) is kept
 * when the data do not support a bandwidth. ERR_INVALID for too few usable
 * samples (bytes and transfer_ms finite and >= 0) or a bad prior. */
err_code refit_link(const refit_sample *s, size_t n, double prior_mbps,
                    refit_link_fit *out, err *e);

/* Keeps f within REFIT_LINK_MAX_DRIFT of the probed link: bandwidth in
 * [probe / drift, probe * drift], round trip in [probe / drift,
 * max(probe * drift, probe + REFIT_LINK_RTT_SLACK_MS)] (a transfer takes
 * at least a round trip: an intercept near 0 is the fit's, not the
 * link's). A probe <= 0 bounds nothing. */
void refit_link_bound(refit_link_fit *f, double probe_mbps, double probe_rtt_ms);

/* ERR_INVALID, naming the coefficient, for a cost model the planner must
 * not see. */
err_code refit_check_device(const plan_device *d, err *e);

/* Relative change of the compute or link coefficients between two models:
 * the largest of |x' / x - 1| (round trips compared in ms when tiny). */
double refit_change(const plan_device *from, const plan_device *to);

#endif

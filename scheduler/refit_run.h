/* refit_run.h — the online refit of one device after a request: read its
 * recent tiles from the database, fit (refit.h), store the fits, and push
 * them into its live session so that the next plan uses them.
 *
 * Two models per device and request:
 *  - the general one (kind STORE_KIND_ALL): compute from the device's
 *    REFIT_WINDOW_TILES newest tiles of any model, link from the same;
 *  - one for the request's model (kind STORE_KIND_MODEL_PREFIX + name):
 *    compute from that model's newest tiles only, each scaled by the cost
 *    factor of its layer range (refit.h, "Ranges"), link as above. Models
 *    and their segments differ in how well their layers use a device (a
 *    narrow 1x1 or 8-channel convolution runs far below a 3x3's GFLOP
 *    rate), so a per-model a and b predict that model better than a
 *    blend. The planner's cost model is one line per device, so the
 *    per-range factors themselves cannot reach it; they make the line
 *    the same for equal devices whatever strips they ran.
 * The prior of every compute fit (refit.h, step 2: its b / a, the fixed
 * cost in GFLOP of work) is the cluster's: the median of the up agents'
 * calibrations from profiling (refit_shared_beta), each measured over sizes
 * far apart. One agent's own b / a scatters too much to tell equal devices
 * apart from unequal ones: two agents of one speed on one host calibrated
 * at 0.0026 and 0.0118 GFLOP, and on small tiles their fits then split a
 * and b differently (518 + 0.3 against 271 + 3.5 ms) and the rows 0.34 /
 * 0.66. A slower device stretches a and b alike, so one ratio serves a
 * cluster of unequal speeds too. The link's bound is its own probe.
 *
 * A fit that fails (too few tiles, nonsense) leaves the previous model in
 * place for that part (compute or link); the rest is still updated.
 *
 * Hysteresis: a fit is pushed into the session only when it differs from
 * the live model by more than REFIT_PUSH_CHANGE (relative, refit_change),
 * or when the model has none of its own yet. Tile times on a shared
 * machine scatter by tens of percent, and every new split makes the agents
 * prepare new strips, whose preparation counts as compute and scatters the
 * next tiles more; a split that stays put while nothing really changed
 * keeps the agents' strips cached and the measurements clean. A device
 * that halves its speed moves its model by 100 %.
 *
 * What is stored: each fit pushed, with its fit error and sample count
 * (the history shows every real change without a row per request for
 * noise).
 *
 * Threads: any; concurrent refits of one device each read, fit and push a
 * valid model (the last one pushed wins).
 */
#ifndef EDGEDI_REFIT_RUN_H
#define EDGEDI_REFIT_RUN_H

#include <stdbool.h>

#include "runtime/err.h"
#include "runtime/model.h"
#include "scheduler/cluster.h"
#include "scheduler/plan.h"
#include "scheduler/refit.h"
#include "storage/store.h"

/* How far back a model's tiles are looked for among a device's newest. */
#define REFIT_SCAN_TILES (20 * REFIT_WINDOW_TILES)
#define REFIT_PUSH_CHANGE 0.15

typedef struct refit_report {
  bool compute_fitted;  /* the general a, b were refitted */
  bool link_fitted;     /* the link was refitted (bandwidth_fitted says whether its bandwidth) */
  bool bandwidth_fitted;
  bool model_fitted;    /* the per-model a, b were refitted */
  int saved;            /* fits written to the database */
  plan_device general;  /* the session's models now */
  plan_device per_model;
  char why[ERR_MSG_BYTES]; /* the last fit refused, and why ("" when none) */
} refit_report;

/* The median b / a (GFLOP) of the calibrations of the agents up in c;
 * -1 when none has one. */
double refit_shared_beta(cluster *c);

/* Refits agent `a` (its tiles are in st) for the model named `model`
 * (NULL: the general model only), whose graph `m` (may be NULL: no range
 * correction) gives its layer ranges' GFLOP. beta_gflop is the prior's
 * b / a (refit_shared_beta; < 0: the agent's own calibration).
 * ERR_UNAVAILABLE when the agent has no model to start from (still
 * profiling); store errors as they come. rep may be NULL. */
err_code refit_device(store *st, cluster_agent *a, const char *model_name, const model *m,
                      double beta_gflop, refit_report *rep, err *e);

#endif

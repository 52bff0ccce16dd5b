/* baseline.h — one device running a zoo model whole: the reference every
 * cluster figure is divided by.
 *
 * The model is the very graph the scheduler serves (modelspec_build of
 * the zoo spec), run with the XNNPACK executor on one thread on the
 * camera image (preprocessing included, as the agents do it). What is
 * kept is the median thread CPU time: an agent with --speed S stretches
 * each job to its thread CPU time / S, so cpu_ms / S is what an emulated
 * board of speed S takes for the whole model. The logits are the
 * single-device answer that a distributed run must match (DESIGN.md).
 * Nothing prints. (edgedi demo and the cluster benchmarks.)
 *
 * Processes: one process's speed on a shared VM depends on where its
 * memory landed (the same model whole: 57 to 68 ms of thread CPU in six
 * consecutive processes here), and so would every ratio divided by it.
 * cpu_ms is therefore the median over BASELINE_PROCESSES processes (this
 * one and forked copies, each the median of its runs), as the cluster's
 * latency already spreads over several agent processes. The logits and
 * wall_ms are this process's.
 */
#ifndef EDGEDI_CLI_BASELINE_H
#define EDGEDI_CLI_BASELINE_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"

enum { BASELINE_PROCESSES = 3 };

typedef struct baseline {
  double cpu_ms;  /* median thread CPU time of a whole run here (see above) */
  int processes;  /* how many processes it is the median of */
  double wall_ms; /* median wall time of the same runs */
  double gflop;
  float *logits;  /* free with baseline_free */
  size_t n_logits;
} baseline;

/* runs timed runs after one warm-up. emulated: the baseline of emulated
 * agents (--speed < 1), which run every convolution on XNNPACK (tile.h),
 * so it does too; otherwise the executor chooses as a full-speed agent's. */
err_code baseline_measure(const char *model, const Edgedi__V1__Image *img, int runs,
                          bool emulated, baseline *b, err *e);
void baseline_free(baseline *b);

/* One model built and ready to run whole, for measuring it again and again
 * (baseline_pool.h). */
typedef struct baseline_runner baseline_runner;
err_code baseline_runner_open(const char *model, const Edgedi__V1__Image *img, bool emulated,
                              baseline_runner **out, err *e);
/* One whole run on this thread; its thread CPU and wall ms (either may be
 * NULL), which are set even when the run fails. */
err_code baseline_runner_run(baseline_runner *r, double *cpu_ms, double *wall_ms, err *e);
void baseline_runner_close(baseline_runner *r); /* NULL: nothing */

/* baseline_measure's cpu_ms alone, into *cpu_ms, which keeps its value
 * when the measurement fails: the benchmarks measure again around each
 * point to follow this VM's drift, and keep the last figure otherwise. */
err_code baseline_measure_cpu(const char *model, const Edgedi__V1__Image *img, int runs,
                              bool emulated, double *cpu_ms, err *e);

#endif

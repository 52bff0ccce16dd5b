/* benchcluster.h — a local cluster (cli/localcluster.h) set up the way the
 * cluster and throughput benchmarks describe one: N agents named dev-0 ..
 * dev-(N-1), given speeds, one link for all, one planner, the models to
 * preload; started one by one (each agent is profiled alone, see
 * localcluster_options.one_by_one), waited for and connected to.
 *
 * A speed of 0 means no emulation (the agent runs at its core's own pace:
 * the many-core mode, where each agent has a real core of its own), and a
 * link of 0 Mbit/s no link emulation. Nothing prints.
 */
#ifndef EDGEDI_BENCH_BENCHCLUSTER_H
#define EDGEDI_BENCH_BENCHCLUSTER_H

#include <stdbool.h>

#include "cli/localcluster.h"
#include "runtime/err.h"
#include "runtime/rpc.h"

typedef struct benchcluster_config {
  int n_agents;
  double speeds[LOCALCLUSTER_MAX_AGENTS];
  double link_mbps, link_rtt_ms;
  const char *planner;                 /* scheduler --planner; NULL: its default */
  const char *on_loss;                 /* scheduler --on-loss; NULL: its default */
  const char *models;                  /* scheduler --models */
  const char *dir;                     /* database and logs go here */
  const char *scheduler_bin, *agent_bin; /* NULL: found next to this program */
  bool agents_release_memory;          /* localcluster.h */
} benchcluster_config;

typedef struct benchcluster {
  localcluster *lc;
  rpc_channel *ch;
  char db_path[LOCALCLUSTER_PATH_BYTES + 32];
} benchcluster;

/* The flags every cluster benchmark takes: --link-mbps M, --link-rtt-ms R,
 * --dir DIR, --scheduler-bin P, --agent-bin P. */
typedef struct benchcluster_flags {
  double link_mbps, link_rtt_ms;
  const char *dir, *scheduler_bin, *agent_bin;
} benchcluster_flags;

/* Whether flag `a` is one of those; if so, *ok says whether its value `v`
 * was good, and f has it. */
bool benchcluster_flag(const char *a, const char *v, benchcluster_flags *f, bool *ok);

/* Starts it and waits until every agent is up with a cost model. On
 * failure nothing is left running and bc is zeroed. */
err_code benchcluster_start(const benchcluster_config *cfg, benchcluster *bc, err *e);

/* Stops agents, then the scheduler; frees. Safe on a zeroed bc. */
void benchcluster_stop(benchcluster *bc);

#endif

/* localcluster.h — an EdgeDI cluster on this machine: one edgedi-scheduler
 * and N edgedi-agent processes on loopback, each agent emulating a device
 * (--speed) behind a link (--link-mbps, --link-rtt-ms). `edgedi cluster`,
 * `edgedi demo` and the multi-process tests start clusters through it.
 *
 * Life: localcluster_start (scheduler first, its bound port read from its
 * first stdout line; then the agents, told to register there) ->
 * localcluster_wait_up (ListDevices until every agent is up and profiled)
 * -> requests through client.h at localcluster_address() -> ...
 * -> localcluster_destroy (agents stopped, then the scheduler: no child
 * outlives it, see procs.h).
 *
 * The scheduler can be restarted alone on the same port and database
 * (localcluster_restart_scheduler): the agents keep running and register
 * again on their own, as with a real scheduler restart.
 *
 * Programs: given paths are used as they are; otherwise
 * localcluster_find_program looks where Bazel puts them (see there).
 */
#ifndef EDGEDI_CLI_LOCALCLUSTER_H
#define EDGEDI_CLI_LOCALCLUSTER_H

#include <limits.h>
#include <stdbool.h>

#include "cli/procs.h"
#include "runtime/err.h"

enum {
  LOCALCLUSTER_MAX_AGENTS = 32,
  LOCALCLUSTER_NAME_BYTES = 64,
  LOCALCLUSTER_PATH_BYTES = PATH_MAX,
  /* A program prints its address once it serves: building the preloaded
   * models takes the scheduler a second or two (more under ASan). */
  LOCALCLUSTER_ANNOUNCE_TIMEOUT_MS = 60000,
  /* Registration, model loading and profiling of emulated slow boards. */
  LOCALCLUSTER_DEFAULT_UP_TIMEOUT_MS = 120000,
};

typedef struct localcluster_agent {
  char name[LOCALCLUSTER_NAME_BYTES];
  double speed;       /* --speed; 1: one core of this machine */
  double link_mbps;   /* 0: not emulated */
  double link_rtt_ms; /* 0: not emulated */
  int threads;        /* 0: 1 */
} localcluster_agent;

typedef struct localcluster_options {
  const char *scheduler_bin; /* NULL: localcluster_find_program */
  const char *agent_bin;     /* NULL: localcluster_find_program */
  const char *db_path;       /* NULL: the scheduler's default (./edgedi.db) */
  int port;                  /* scheduler port on 127.0.0.1; 0: any free */
  const char *models;        /* scheduler --models; NULL: its default */
  const char *planner;       /* scheduler --planner; NULL: its default */
  const char *on_loss;       /* scheduler --on-loss; NULL: its default */
  int deadline_ms;           /* scheduler --deadline-ms; 0: its default */
  const char *log_dir;       /* children's stderr to DIR/<name>.log; NULL: ours */
  /* Start each agent once the one before is up: on one machine, agents
   * calibrated at the same time share its cores, and each would measure
   * itself slower than its --speed says (a real board has its own CPU). */
  bool one_by_one;
  int up_timeout_ms;         /* one_by_one: per agent; 0: the default */
  /* Agents emulating a slower board (speed < 1) share this host's cores
   * (edgedi-agent --share-cores): 0 gives them every online core, a
   * negative value lets them time-slice (no sharing). */
  int share_cores;
  /* Agents run with --resident-mb 0 (glibc's defaults: freed memory goes
   * back to the system), so that their peak RSS shows what the models
   * need rather than the resident heap. */
  bool agents_release_memory;
  int n_agents;
  localcluster_agent agents[LOCALCLUSTER_MAX_AGENTS];
} localcluster_options;

typedef struct localcluster localcluster;

/* Finds program `name` of Bazel package `pkg` ("scheduler",
 * "edgedi-scheduler"): next to this executable in bazel-bin
 * (/proc/self/exe/../../pkg/name, which covers bazel-bin/cli/edgedi,
 * `bazel run` and tests), in this executable's runfiles, under
 * $RUNFILES_DIR or $TEST_SRCDIR, in $BUILD_WORKSPACE_DIRECTORY/bazel-bin,
 * then ./bazel-bin and ./pkg. ERR_NOT_FOUND naming the places tried. */
err_code localcluster_find_program(const char *pkg, const char *name, char *out,
                                   size_t len, err *e);

/* Starts the scheduler and the agents (not waiting for the last one to be
 * up; with one_by_one, for each one before it). On failure everything
 * started is stopped again and *out is NULL. */
err_code localcluster_start(const localcluster_options *o, localcluster **out, err *e);

/* "127.0.0.1:PORT": where the scheduler listens. */
const char *localcluster_address(const localcluster *c);
int localcluster_n_agents(const localcluster *c);
const localcluster_agent *localcluster_agent_at(const localcluster *c, int i);
/* The children, for procs_* (the scheduler; agent i). */
procs_child *localcluster_scheduler(localcluster *c);
procs_child *localcluster_agent_process(localcluster *c, int i);

/* Until every agent is up with a cost model, at most timeout_ms. Ends
 * early with ERR_UNAVAILABLE when a child dies or a stop is requested
 * (procs_stop_requested). */
err_code localcluster_wait_up(localcluster *c, int timeout_ms, err *e);

/* ERR_OK while every child runs; ERR_UNAVAILABLE naming the first that
 * does not, and how it ended. */
err_code localcluster_check_alive(localcluster *c, err *e);

/* Stops the scheduler (SIGTERM, as an operator would) and starts it again
 * on the same port with the same database and flags. */
err_code localcluster_restart_scheduler(localcluster *c, err *e);

/* Agent i dies as a board losing power does (SIGKILL, then reaped). */
void localcluster_kill_agent(localcluster *c, int i);
/* Starts agent i again with its flags (after it died or was killed); it
 * registers with the scheduler on its own (localcluster_wait_up waits). */
err_code localcluster_restart_agent(localcluster *c, int i, err *e);

/* Starts one more agent that the cluster does not own (the caller stops
 * it with procs_stop_one), registering with this scheduler; `extra` are
 * more flags (NULL-terminated, may be NULL), e.g. --advertise ADDR. The
 * announce line is read before it returns. */
err_code localcluster_spawn_agent(localcluster *c, const localcluster_agent *a,
                                  const char *const *extra, procs_child *out, err *e);

/* Stops agents, then the scheduler; true when each exited cleanly (status
 * 0 or our SIGTERM). Safe to call twice. */
bool localcluster_stop(localcluster *c);
/* Stops (when not yet stopped) and frees; NULL is fine. */
void localcluster_destroy(localcluster *c);

#endif

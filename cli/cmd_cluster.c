/* cmd_cluster.c — `edgedi cluster`: a scheduler and N agents on this
 * machine (localcluster.h), each agent emulating a device of a given speed
 * behind a given link; then a workload, a command, or waiting for Ctrl-C.
 *
 * While it waits it supervises: a child that dies (an agent killed, a
 * crash) is started again, as a service manager would, at most
 * CLUSTER_MAX_RESTARTS times each. A restarted agent registers and is
 * profiled anew; requests it was part of recover without it (the
 * scheduler's --on-loss); a restarted scheduler is found again by the
 * agents (runtime/agent.h). --no-restart stops everything instead.
 *
 * Ctrl-C and SIGTERM never kill this process outright (procs.h catches
 * them): the children sit in their own process groups, so the terminal's
 * signal reaches only us, and we stop agents then scheduler in order.
 * Should this process die anyway, PR_SET_PDEATHSIG takes the children
 * with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/boards.h"
#include "cli/flags.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "cli/localcluster.h"
#include "cli/procs.h"
#include "cli/show.h"
#include "cli/workload.h"
#include "runtime/protocol.h"
#include "storage/store.h"

enum {
  CLUSTER_DEFAULT_AGENTS = 4,
  CLUSTER_DEFAULT_PORT = 7000,
  CLUSTER_WATCH_MS = 500, /* how often a waiting cluster checks its children */
  CLUSTER_MAX_RESTARTS = 5, /* per child: then something is wrong with it */
  CLUSTER_MAX_WORKLOADS = 8,
  CLUSTER_SAMPLE_SIDE_PX = 200, /* the zoo's default input */
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: edgedi cluster [flags]\n"
          "  Starts edgedi-scheduler and N edgedi-agent processes on loopback, waits\n"
          "  until every agent is registered and profiled, then runs --workload or\n"
          "  --run, or waits for Ctrl-C; stops every child cleanly either way.\n"
          "  Agents start one by one, each once the one before is profiled, so that\n"
          "  their calibrations do not share this machine's cores.\n"
          "  --agents N           agents (default %d, or as many as --speeds lists)\n"
          "  --speeds LIST        each agent's --speed, comma-separated, or one for all\n"
          "                       (default 1: one core here), or a board: %s, at\n"
          "                       the speed that takes the board's own time on this\n"
          "                       core (measured at start: cli/boards.h)\n"
          "  --names LIST         agent names (default agent-1, agent-2, ...)\n"
          "  --link-mbps M        every agent's emulated link (default 0: none)\n"
          "  --link-rtt-ms R      its round trip (default 0)\n"
          "  --threads N          executor threads per agent (default 1)\n"
          "  --share-cores N      emulated agents (speed < 1) take turns on N cores\n"
          "                       (default 0: this machine's; -1: they time-slice)\n"
          "  --db PATH            the scheduler's database (default ./%s)\n"
          "  --port P             scheduler port on 127.0.0.1 (default %d; 0: any free)\n"
          "  --models LIST        models the scheduler loads at start (its default:\n"
          "                       vgg16c,resnet18c)\n"
          "  --planner NAME       the scheduler's default planner\n"
          "  --on-loss P          when a request loses an agent: auto (default),\n"
          "                       stand-in or restart (edgedi-scheduler --help)\n"
          "  --logs DIR           children's logs to DIR/<name>.log (default: stderr)\n"
          "  --scheduler-bin P    edgedi-scheduler (default: found next to this program)\n"
          "  --agent-bin P        edgedi-agent (default: found next to this program)\n"
          "  --up-timeout-ms N    how long agents may take to come up (default %d)\n"
          "  --no-restart         a child that dies stops the cluster (default: it is\n"
          "                       started again, up to %d times)\n"
          "  --workload M:N,...   then run N inferences of model M on a synthetic\n"
          "                       200x200 gray image, for each pair, and stop\n"
          "  --run CMD            then run the shell command CMD (with %s set\n"
          "                       to the scheduler's address), stop, exit with its status\n",
          CLUSTER_DEFAULT_AGENTS, boards_names(), STORE_DEFAULT_PATH, CLUSTER_DEFAULT_PORT,
          LOCALCLUSTER_DEFAULT_UP_TIMEOUT_MS, CLUSTER_MAX_RESTARTS, CLIENT_SCHEDULER_ENV);
}

typedef struct workload_spec {
  char model[WORKLOAD_NAME_BYTES];
  int n;
} workload_spec;

typedef struct cluster_opts {
  localcluster_options lc;
  const char *speeds, *names, *workloads, *run;
  int agents, threads, up_timeout_ms;
  bool no_restart;
  double link_mbps, link_rtt_ms;
  workload_spec work[CLUSTER_MAX_WORKLOADS];
  int n_work;
} cluster_opts;

/* Splits a comma-separated list into at most max items of item_len bytes. */
static int split_list(const char *s, char *items, size_t item_len, int max) {
  int n = 0;
  const char *p = s;
  while (*p && n < max) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == 0 || len >= item_len) return -1;
    memcpy(items + (size_t)n * item_len, p, len);
    items[(size_t)n * item_len + len] = 0;
    n++;
    if (!end) return n;
    p = end + 1;
  }
  return *p ? -1 : n;
}

static int usage_error(const char *fmt, const char *what) {
  fprintf(stderr, "edgedi cluster: ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, "\n");
  return CLI_EXIT_USAGE;
}

/* This core's time for the boards' reference model, said on stdout. */
static int measure_core(double *core_ms) {
  err e = {0};
  if (boards_measure_core(BOARDS_CORE_RUNS, core_ms, &e) != ERR_OK) {
    fprintf(stderr, "edgedi cluster: timing this core for the boards: %s\n", e.msg);
    return -1;
  }
  printf("boards: %s whole takes %.1f ms of thread CPU on one core here; a board is an agent "
         "at the speed that takes its own time (cli/boards.h)\n",
         BOARDS_REFERENCE_MODEL, *core_ms);
  return 0;
}

/* Fills the agents of o->lc from --agents, --speeds, --names and links. */
static int build_agents(cluster_opts *o) {
  char speeds[LOCALCLUSTER_MAX_AGENTS][32], names[LOCALCLUSTER_MAX_AGENTS][LOCALCLUSTER_NAME_BYTES];
  int ns = o->speeds ? split_list(o->speeds, speeds[0], sizeof speeds[0], LOCALCLUSTER_MAX_AGENTS)
                     : 0;
  int nn = o->names ? split_list(o->names, names[0], sizeof names[0], LOCALCLUSTER_MAX_AGENTS)
                    : 0;
  if (ns < 0) return usage_error("--speeds '%s' is not a list of speeds or boards", o->speeds);
  if (nn < 0) return usage_error("--names '%s' is not a list of names", o->names);
  int n = o->agents ? o->agents : ns > 1 ? ns : nn > 1 ? nn : CLUSTER_DEFAULT_AGENTS;
  if (ns > 1 && ns != n) return usage_error("--speeds lists %s speeds for another agent count",
                                            o->speeds);
  if (nn > 0 && nn != n) return usage_error("--names lists %s names for another agent count",
                                            o->names);
  o->lc.n_agents = n;
  double core_ms = 0; /* this core's time for the boards' reference, once needed */
  for (int i = 0; i < n; i++) {
    localcluster_agent *a = &o->lc.agents[i];
    if (nn > 0) snprintf(a->name, sizeof a->name, "%s", names[i]);
    else snprintf(a->name, sizeof a->name, "agent-%d", i + 1);
    const char *sp = ns > 0 ? speeds[ns > 1 ? i : 0] : NULL;
    const board *b = boards_find(sp);
    a->speed = 1.0;
    if (b) {
      if (core_ms == 0 && measure_core(&core_ms) != 0) return CLI_EXIT_FAIL;
      a->speed = boards_speed(b, core_ms);
      printf("boards: %s is a %s (%s whole in %.0f ms): speed %.4f\n", a->name, b->name,
             BOARDS_REFERENCE_MODEL, b->reference_ms, a->speed);
    } else if (sp && !flags_parse_double(sp, 1e-6, 1e6, &a->speed)) {
      return usage_error("--speeds: '%s' is neither a positive factor nor a board", sp);
    }
    a->link_mbps = o->link_mbps;
    a->link_rtt_ms = o->link_rtt_ms;
    a->threads = o->threads;
  }
  return 0;
}

static int parse_workloads(cluster_opts *o) {
  char items[CLUSTER_MAX_WORKLOADS][WORKLOAD_NAME_BYTES + 16];
  int n = split_list(o->workloads, items[0], sizeof items[0], CLUSTER_MAX_WORKLOADS);
  if (n <= 0) return usage_error("--workload '%s' is not a list of MODEL:N", o->workloads);
  for (int i = 0; i < n; i++) {
    char *colon = strrchr(items[i], ':');
    if (!colon || colon == items[i] || !flags_parse_int(colon + 1, 1, WORKLOAD_MAX_REQUESTS,
                                                      &o->work[i].n))
      return usage_error("--workload: '%s' is not MODEL:N", items[i]);
    *colon = 0;
    size_t len = strlen(items[i]);
    if (len >= sizeof o->work[i].model)
      return usage_error("--workload: model name '%s' is too long", items[i]);
    memcpy(o->work[i].model, items[i], len + 1);
  }
  o->n_work = n;
  return 0;
}

static int parse(int argc, char **argv, cluster_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (cli_is_help(a)) {
      usage(stdout);
      return -1;
    }
    if (strcmp(a, "--no-restart") == 0) {
      o->no_restart = true;
      continue;
    }
    if (!v) return usage_error("unknown flag or missing value: %s", a);
    bool ok = true;
    if (strcmp(a, "--agents") == 0) ok = flags_parse_int(v, 1, LOCALCLUSTER_MAX_AGENTS, &o->agents);
    else if (strcmp(a, "--speeds") == 0) o->speeds = v;
    else if (strcmp(a, "--names") == 0) o->names = v;
    else if (strcmp(a, "--link-mbps") == 0) ok = flags_parse_double(v, 0, 1e6, &o->link_mbps);
    else if (strcmp(a, "--link-rtt-ms") == 0) ok = flags_parse_double(v, 0, 1e5, &o->link_rtt_ms);
    else if (strcmp(a, "--threads") == 0) ok = flags_parse_int(v, 1, 256, &o->threads);
    else if (strcmp(a, "--share-cores") == 0) ok = flags_parse_int(v, -1, 256, &o->lc.share_cores);
    else if (strcmp(a, "--db") == 0) o->lc.db_path = v;
    else if (strcmp(a, "--port") == 0) ok = flags_parse_int(v, 0, 65535, &o->lc.port);
    else if (strcmp(a, "--models") == 0) o->lc.models = v;
    else if (strcmp(a, "--planner") == 0) o->lc.planner = v;
    else if (strcmp(a, "--on-loss") == 0) o->lc.on_loss = v;
    else if (strcmp(a, "--logs") == 0) o->lc.log_dir = v;
    else if (strcmp(a, "--scheduler-bin") == 0) o->lc.scheduler_bin = v;
    else if (strcmp(a, "--agent-bin") == 0) o->lc.agent_bin = v;
    else if (strcmp(a, "--up-timeout-ms") == 0)
      ok = flags_parse_int(v, 1, 3600 * 1000, &o->up_timeout_ms);
    else if (strcmp(a, "--workload") == 0) o->workloads = v;
    else if (strcmp(a, "--run") == 0) o->run = v;
    else return usage_error("unknown flag: %s", a);
    if (!ok) return usage_error("bad value for %s", a);
    i++;
  }
  if (o->workloads && o->run) return usage_error("%s: --workload or --run, not both", "");
  if (o->workloads) {
    int rc = parse_workloads(o);
    if (rc) return rc;
  }
  return build_agents(o);
}

static int run_workloads(const cluster_opts *o, const char *address) {
  err e = {0};
  rpc_channel *ch = NULL;
  Edgedi__V1__Image img;
  uint8_t *px = NULL;
  if (client_connect(address, &ch, &e) != ERR_OK ||
      workload_sample_image(CLUSTER_SAMPLE_SIDE_PX, CLUSTER_SAMPLE_SIDE_PX, &img, &px, &e) !=
          ERR_OK) {
    fprintf(stderr, "edgedi cluster: %s\n", e.msg);
    rpc_channel_destroy(ch);
    return CLI_EXIT_FAIL;
  }
  int status = CLI_EXIT_OK;
  for (int i = 0; i < o->n_work && status == CLI_EXIT_OK; i++) {
    Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
    req.protocol_version = EDGEDI_PROTOCOL_VERSION;
    req.model = (char *)o->work[i].model;
    req.image = &img;
    workload_result r;
    if (workload_run(ch, &req, 0, o->work[i].n, procs_stop_requested, &r, &e) != ERR_OK) {
      fprintf(stderr, "edgedi cluster: %s: %s\n", o->work[i].model, e.msg);
      status = CLI_EXIT_FAIL;
      break;
    }
    printf("\n%s: %d requests, latency median %.2f ms (min %.2f, max %.2f; predicted %.2f)\n",
           o->work[i].model, r.n, r.median_ms, r.min_ms, r.max_ms, r.predicted_ms);
    printf("last reply:\n");
    show_infer(stdout, r.last);
    workload_free(&r);
  }
  free(px);
  rpc_channel_destroy(ch);
  return status;
}

static int run_command(const char *cmd, const char *address) {
  setenv(CLIENT_SCHEDULER_ENV, address, 1);
  const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
  procs_spec spec = {.name = "command", .path = "/bin/sh", .argv = argv, .inherit_stdout = true};
  procs_child c;
  err e = {0};
  if (procs_spawn(&spec, &c, &e) != ERR_OK) {
    fprintf(stderr, "edgedi cluster: %s\n", e.msg);
    return CLI_EXIT_FAIL;
  }
  while (procs_alive(&c) && !procs_stop_requested()) procs_sleep_ms(CLUSTER_WATCH_MS);
  if (procs_alive(&c)) procs_stop_one(&c, PROCS_DEFAULT_GRACE_MS);
  char how[64];
  procs_describe_exit(&c, how, sizeof how);
  fprintf(stderr, "edgedi cluster: command ended (%s)\n", how);
  return procs_exited_cleanly(&c) && !procs_stop_requested() ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* Until Ctrl-C: children that die are started again (the file's comment),
 * or, with no_restart or past CLUSTER_MAX_RESTARTS, everything stops. */
static int watch(localcluster *c, bool no_restart) {
  int restarts[LOCALCLUSTER_MAX_AGENTS + 1] = {0}; /* agents, then the scheduler */
  int n = localcluster_n_agents(c);
  while (!procs_stop_requested()) {
    for (int i = 0; i <= n; i++) {
      procs_child *p = i < n ? localcluster_agent_process(c, i) : localcluster_scheduler(c);
      if (procs_alive(p)) continue;
      char how[64];
      procs_describe_exit(p, how, sizeof how);
      if (no_restart || restarts[i] >= CLUSTER_MAX_RESTARTS) {
        fprintf(stderr, "edgedi cluster: %s stopped (%s)%s; stopping the rest\n", p->name, how,
                no_restart ? "" : ", too many times");
        return CLI_EXIT_FAIL;
      }
      restarts[i]++;
      fprintf(stderr, "edgedi cluster: %s stopped (%s); starting it again (%d of %d)\n",
              p->name, how, restarts[i], CLUSTER_MAX_RESTARTS);
      err e = {0};
      err_code rc = i < n ? localcluster_restart_agent(c, i, &e)
                          : localcluster_restart_scheduler(c, &e);
      if (rc != ERR_OK) {
        fprintf(stderr, "edgedi cluster: %s; stopping the rest\n", e.msg);
        return CLI_EXIT_FAIL;
      }
    }
    procs_sleep_ms(CLUSTER_WATCH_MS);
  }
  return CLI_EXIT_OK;
}

static void print_devices(const char *address) {
  rpc_channel *ch = NULL;
  err e = {0};
  Edgedi__V1__ListDevicesReply *l = NULL;
  if (client_connect(address, &ch, &e) == ERR_OK &&
      client_list_devices(ch, &l, &e) == GRPC_STATUS_OK)
    show_devices(stdout, l);
  rpc_free((ProtobufCMessage *)l);
  rpc_channel_destroy(ch);
}

int cmd_cluster(int argc, char **argv) {
  cluster_opts o = {.lc = {.port = CLUSTER_DEFAULT_PORT, .one_by_one = true},
                    .up_timeout_ms = LOCALCLUSTER_DEFAULT_UP_TIMEOUT_MS};
  int prc = parse(argc, argv, &o);
  if (prc) return prc < 0 ? CLI_EXIT_OK : prc;
  procs_catch_stop_signals();
  o.lc.up_timeout_ms = o.up_timeout_ms;

  err e = {0};
  localcluster *c = NULL;
  fprintf(stderr, "edgedi cluster: starting a scheduler and %d agents\n", o.lc.n_agents);
  if (localcluster_start(&o.lc, &c, &e) != ERR_OK) {
    fprintf(stderr, "edgedi cluster: %s\n", e.msg);
    return CLI_EXIT_FAIL;
  }
  const char *address = localcluster_address(c);
  fprintf(stderr, "edgedi cluster: scheduler at %s (database %s); waiting for the agents\n",
          address, o.lc.db_path ? o.lc.db_path : STORE_DEFAULT_PATH);
  int status = CLI_EXIT_OK;
  if (localcluster_wait_up(c, o.up_timeout_ms, &e) != ERR_OK) {
    fprintf(stderr, "edgedi cluster: %s\n", e.msg);
    status = CLI_EXIT_FAIL;
  } else {
    printf("cluster up: scheduler at %s, %d agents\n", address, o.lc.n_agents);
    print_devices(address);
    fflush(stdout);
    if (o.n_work) status = run_workloads(&o, address);
    else if (o.run) status = run_command(o.run, address);
    else {
      fprintf(stderr, "edgedi cluster: ready; try `edgedi devices --scheduler %s`. "
                      "Ctrl-C stops it.\n", address);
      status = watch(c, o.no_restart);
    }
  }
  fprintf(stderr, "edgedi cluster: stopping\n");
  bool clean = localcluster_stop(c);
  if (!clean) {
    fprintf(stderr, "edgedi cluster: not every child stopped cleanly:");
    procs_child *all[LOCALCLUSTER_MAX_AGENTS + 1];
    int n = 0;
    all[n++] = localcluster_scheduler(c);
    for (int i = 0; i < localcluster_n_agents(c); i++) all[n++] = localcluster_agent_process(c, i);
    for (int i = 0; i < n; i++) {
      char how[64];
      procs_describe_exit(all[i], how, sizeof how);
      fprintf(stderr, " %s %s;", all[i]->name, how);
    }
    fprintf(stderr, "\n");
  }
  localcluster_destroy(c);
  return status;
}

/* cmd_demo_cluster.c — `edgedi demo`: the paper's setting on loopback.
 *
 * Four agents emulate the paper's boards: two Raspberry Pi 3B+ and two Pi
 * 4B (the paper's 1 : 1.5), each behind a 100 Mbit/s link with a 1 ms round
 * trip (DESIGN.md), each at the --speed that takes the board's own time on
 * this machine's core (cli/boards.h: DESIGN.md's 0.1 and 0.15 of the core
 * it was written on; --core-speeds: 0.1 and 0.15 of this one). The demo
 * serves REQUESTS inferences of each model on the synthetic steel surface
 * (sample.h), one after the other, and prints the plan, each device's
 * compute and transfer times, the median end-to-end latency, and the
 * speedup over one emulated Pi 3B+.
 * With several planners (--planners; default exact, heuristic and
 * proportional) each model's requests alternate between them, request by
 * request, on the same cluster, and the table compares their measured
 * latencies.
 *
 * The baseline is measured by the same rule the agents emulate by: the
 * model (the very graph the scheduler serves: modelspec_build of the same
 * spec) runs whole here with the XNNPACK executor on one thread, and its
 * thread CPU time divided by the Pi 3B+'s speed is what the board would take.
 * It is timed right after each request, in three forked copies in turn
 * (baseline_pool.h), so that each request is compared with the model whole
 * on the host as it found it (this VM's speed drifts by tens of percent
 * within a minute); the speedup is the median of the per-request ratios.
 * The bound is sum(speeds) / slowest speed; the ratio speedup / bound says
 * how much of it partitioning keeps.
 *
 * The cluster's logits are checked against the baseline's, the exactness
 * contract: the demo fails if they differ by more than 1e-4 relative.
 *
 * Last, a board is lost: pi3b-1 is killed (SIGKILL, as a power loss) 40 %
 * into a request of the first model, which must still answer with the
 * single device's logits (scheduler/infer.h, "Agent loss"; the reply says
 * how it recovered); then the board is started again and is profiled anew.
 *
 * `edgedi demo --local` is the single-device demo (cmd_demo.c) instead.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/flags.h"
#include "cli/cli.h"
#include "cli/baseline.h"
#include "cli/baseline_pool.h"
#include "cli/boards.h"
#include "cli/client.h"
#include "cli/localcluster.h"
#include "cli/lossrun.h"
#include "cli/procs.h"
#include "cli/show.h"
#include "cli/timeline.h"
#include "cli/workload.h"
#include "proto/edgedi.pb-c.h"
#include "runtime/protocol.h"
#include "runtime/stats.h"
#include "scheduler/plan.h"
#include "storage/store.h"

enum {
  DEMO_REQUESTS = 20,
  DEMO_WARMUP_REQUESTS = 2, /* first use of a strip shape prepares it on the agent */
  DEMO_BASELINE_RUNS = 10,
  DEMO_MAX_MODELS = 4,
  DEMO_MAX_PLANNERS = 4,
  DEMO_SETTLE_REQUESTS = 3, /* more untimed rounds when comparing planners */
  DEMO_MAX_REQUESTS = 10000,
  DEMO_SIDE_PX = 200, /* the zoo's default input, as NEU-CLS */
  DEMO_TIMELINE_WIDTH = 64,
};

#define FACTORY_WIFI_MBPS 100.0
#define FACTORY_WIFI_RTT_MS 1.0
#define EXACT_REL_TOLERANCE 1e-4
/* The lost board dies this far into a request (of the median latency). */
#define DEMO_LOSS_AT 0.4

/* The boards of the paper, as agents; the slowest first. */
static const struct {
  const char *name, *board;
} demo_boards[] = {
    {"pi3b-1", "pi3b+"},
    {"pi3b-2", "pi3b+"},
    {"pi4b-1", "pi4b"},
    {"pi4b-2", "pi4b"},
};
enum { DEMO_BOARDS = sizeof demo_boards / sizeof demo_boards[0] };

/* Each board's --speed, set once at start (set_speeds). */
static double demo_speed[DEMO_BOARDS];

static void usage(FILE *f) {
  fprintf(f,
          "usage: edgedi demo [flags]        (edgedi demo --local [...]: one device)\n"
          "  Starts a scheduler and four agents on loopback emulating two Raspberry\n"
          "  Pi 3B+ and two Pi 4B, each behind a %.0f Mbit/s link with %.0f ms round\n"
          "  trip, at the speed that takes each board's own time on this core\n"
          "  (cli/boards.h); serves %d inferences of each model and prints\n"
          "  the plan, per-device times, the median latency, the speedup over one\n"
          "  emulated Pi 3B+, the bound sum(speeds)/slowest and bytes moved.\n"
          "  --models LIST       default vgg16c,resnet18c\n"
          "  --planners LIST     planners to compare, each serving every model\n"
          "                      (default exact,heuristic,proportional)\n"
          "  --requests N        timed requests per model (default %d)\n"
          "  --baseline-runs N   single-device runs for the baseline (default %d)\n"
          "  --core-speeds       the boards at 0.1 and 0.15 of one core here instead\n"
          "                      (DESIGN.md's fractions of the core it was written on)\n"
          "  --dir DIR           database and logs (default: a new /tmp/edgedi-demo-*)\n"
          "  --scheduler-bin P, --agent-bin P   the programs (default: found next to\n"
          "                      this one)\n",
          FACTORY_WIFI_MBPS, FACTORY_WIFI_RTT_MS, DEMO_REQUESTS, DEMO_REQUESTS,
          DEMO_BASELINE_RUNS);
}

typedef struct demo_opts {
  char models_buf[256];
  const char *models[DEMO_MAX_MODELS];
  int n_models, requests, baseline_runs;
  char planners_buf[128];
  const char *planners[DEMO_MAX_PLANNERS];
  int n_planners;
  bool core_speeds;
  const char *dir, *scheduler_bin, *agent_bin;
  const char *db; /* the scheduler's database, set once it is known */
} demo_opts;


/* What the model whole takes on one emulated Pi 3B+: the baseline's thread
 * CPU time stretched as the agents stretch theirs. */
static double board_ms(const baseline *b) { return b->cpu_ms / demo_speed[0]; }

/* Fills demo_speed: each board's speed from this core's time for the
 * boards' reference model (*core_ms), or DESIGN.md's with --core-speeds. */
static err_code set_speeds(const demo_opts *o, double *core_ms, err *e) {
  *core_ms = 0;
  err_code rc = o->core_speeds ? ERR_OK : boards_measure_core(BOARDS_CORE_RUNS, core_ms, e);
  if (rc != ERR_OK) return rc;
  for (int i = 0; i < DEMO_BOARDS; i++) {
    const board *b = boards_find(demo_boards[i].board);
    demo_speed[i] = o->core_speeds ? b->design_speed : boards_speed(b, *core_ms);
  }
  return ERR_OK;
}

/* One planner serving one model. */
typedef struct served {
  workload_result w;
  double whole_ms; /* one Pi 3B+ running the model whole, timed after each request (median) */
  double speedup, rel_diff; /* speedup: median over the requests of whole / latency */
  bool ok;
} served;

typedef struct outcome {
  baseline base;
  baseline_pool *pool; /* the model whole, timed after each request (baseline_pool.h) */
  served by[DEMO_MAX_PLANNERS]; /* per planner, in opts order */
} outcome;

static void print_devices(const Edgedi__V1__InferReply *last) {
  printf("  per device (the last request; rows: output rows of the last segment):\n");
  printf("  %-8s %6s %5s %11s %12s %13s %10s %10s\n", "device", "speed", "rows", "compute_ms",
         "transfer_ms", "predicted_ms", "bytes_in", "bytes_out");
  for (size_t i = 0; i < last->n_devices; i++) {
    const Edgedi__V1__DeviceTiming *d = last->devices[i];
    double speed = 0;
    for (int k = 0; k < DEMO_BOARDS; k++)
      if (strcmp(demo_boards[k].name, d->device) == 0) speed = demo_speed[k];
    char bi[32], bo[32];
    printf("  %-8s %6.3g %5u %11.1f %12.1f %13.1f %10s %10s\n", d->device, speed, d->rows,
           d->compute_ms, d->transfer_ms, d->predicted_ms, cli_bytes(d->bytes_in, bi, sizeof bi),
           cli_bytes(d->bytes_out, bo, sizeof bo));
  }
}

/* When each board computed during request `id` (tile_spans), from the
 * scheduler's database: the waits show where the time goes. A demo goes
 * on without it. */
static void print_timeline(const char *db, uint64_t id) {
  err e = {0};
  store *st = NULL;
  timeline_request t = {0};
  err_code rc = store_open(db, &st, &e);
  if (rc == ERR_OK) rc = timeline_load(st, (int64_t)id, &t, &e);
  store_close(st);
  if (rc == ERR_OK && t.n) {
    printf("  when each board computed (the last request; digits: segment, '.': waiting):\n");
    rc = timeline_write(t.spans, t.n, t.devs, t.n_devs, t.total_ms, DEMO_TIMELINE_WIDTH, "  ",
                        stdout, &e);
  }
  if (rc != ERR_OK) printf("  (no timeline: %s)\n", e.msg);
  timeline_request_free(&t);
}

/* What one planner's timed requests came to (out->w, with the model whole
 * timed after each), printed. */
static void report(const char *name, const char *planner, double bound, const baseline *base,
                   const char *db, served *out) {
  workload_result *w = &out->w;
  const Edgedi__V1__InferReply *last = w->last;
  printf("\n== %s, planner %s ==\n", name, planner);
  print_devices(last);
  print_timeline(db, last->request_id);
  out->speedup = w->probe_per_ms / demo_speed[0];
  out->whole_ms = w->probe_ms / demo_speed[0];
  out->rel_diff = last->n_logits == base->n_logits
                      ? stats_max_rel_diff(last->logits, base->logits, last->n_logits)
                      : INFINITY;
  out->ok = out->rel_diff <= EXACT_REL_TOLERANCE;
  char moved[32], all[32], cls[32];
  printf("  end-to-end latency: median %.1f ms over %d requests (min %.1f, max %.1f; "
         "predicted %.1f)%s\n",
         w->median_ms, w->n, w->min_ms, w->max_ms, w->predicted_ms,
         w->one_plan ? "" : " [the plan changed between requests]");
  printf("  one emulated Pi 3B+ running it whole: %.1f ms (%.2f GFLOP; thread CPU here / %.3g, "
         "timed right after each request; %.1f ms run back to back before the cluster "
         "started)\n",
         out->whole_ms, base->gflop, demo_speed[0], board_ms(base));
  printf("  speedup %.2fx (median of whole / latency per request), bound %.2fx, "
         "speedup/bound %.2f\n",
         out->speedup, bound, out->speedup / bound);
  printf("  bytes moved per request %s; gathering whole maps at every segment: %s "
         "(%.1fx more)\n",
         cli_bytes(w->bytes_moved, moved, sizeof moved),
         cli_bytes(w->bytes_gather_all, all, sizeof all),
         w->bytes_moved ? (double)w->bytes_gather_all / (double)w->bytes_moved : 0.0);
  printf("  top class %u %s; logits equal the single-device run's within %.1e relative "
         "(limit %.0e): %s\n",
         last->top_class,
         cli_class_name((int)last->top_class, (int)last->n_logits, cls, sizeof cls),
         out->rel_diff, EXACT_REL_TOLERANCE, out->ok ? "yes" : "NO");
  fflush(stdout);
}

/* Every planner on one model, request by request in turn: the devices'
 * cost models are refitted from every request (per device and model), so
 * planners served one after the other would plan with differently fitted
 * models and meet the machine's load at different times; alternating gives
 * each the same. The first rounds are untimed (each strip shape is
 * prepared on its agent at first use). */
static err_code demo_model(rpc_channel *ch, const char *name, const Edgedi__V1__Image *img,
                           const demo_opts *o, double bound, outcome *out, err *e) {
  printf("\n== %s: the plans now ==\n", name);
  for (int k = 0; k < o->n_planners; k++) {
    Edgedi__V1__PlanReply *p = NULL;
    if (client_plan(ch, name, o->planners[k], &p, e) != GRPC_STATUS_OK)
      return err_wrap(e, "Plan %s", name);
    show_plan(stdout, p, false);
    rpc_free((ProtobufCMessage *)p);
  }
  fflush(stdout);
  Edgedi__V1__InferRequest req[DEMO_MAX_PLANNERS];
  const Edgedi__V1__InferRequest *reqs[DEMO_MAX_PLANNERS];
  for (int k = 0; k < o->n_planners; k++) {
    edgedi__v1__infer_request__init(&req[k]);
    req[k].protocol_version = EDGEDI_PROTOCOL_VERSION;
    req[k].model = (char *)name;
    req[k].planner = (char *)o->planners[k];
    req[k].image = (Edgedi__V1__Image *)img;
    reqs[k] = &req[k];
  }
  /* The model whole right after each request, on the host as it found it. */
  const workload_probe probe = {.run = baseline_pool_probe, .ctx = out->pool};
  workload_result w[DEMO_MAX_PLANNERS];
  int warm = DEMO_WARMUP_REQUESTS + (o->n_planners > 1 ? DEMO_SETTLE_REQUESTS : 0);
  err_code rc = workload_run_paired(ch, reqs, o->n_planners, warm, o->requests,
                                    procs_stop_requested, &probe, w, e);
  if (rc != ERR_OK) return err_wrap(e, "%s", name);
  for (int k = 0; k < o->n_planners; k++) {
    out->by[k].w = w[k];
    report(name, o->planners[k], bound, &out->base, o->db, &out->by[k]);
  }
  return ERR_OK;
}

/* Splits a comma-separated list in place; false when it has more than max. */
static bool split_list(char *buf, const char **items, int max, int *n) {
  *n = 0;
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    if (*n == max) return false;
    items[(*n)++] = tok;
  }
  return true;
}

static int parse(int argc, char **argv, demo_opts *o) {
  snprintf(o->models_buf, sizeof o->models_buf, "vgg16c,resnet18c");
  snprintf(o->planners_buf, sizeof o->planners_buf, "exact,heuristic,proportional");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (cli_is_help(a)) {
      usage(stdout);
      return -1;
    }
    if (strcmp(a, "--core-speeds") == 0) {
      o->core_speeds = true;
      continue;
    }
    bool ok = v != NULL;
    if (ok && strcmp(a, "--models") == 0)
      ok = snprintf(o->models_buf, sizeof o->models_buf, "%s", v) < (int)sizeof o->models_buf;
    else if (ok && strcmp(a, "--planners") == 0)
      ok = snprintf(o->planners_buf, sizeof o->planners_buf, "%s", v) <
           (int)sizeof o->planners_buf;
    else if (ok && strcmp(a, "--requests") == 0) ok = flags_parse_int(v, 1, DEMO_MAX_REQUESTS, &o->requests);
    else if (ok && strcmp(a, "--baseline-runs") == 0)
      ok = flags_parse_int(v, 1, 1000, &o->baseline_runs);
    else if (ok && strcmp(a, "--dir") == 0) o->dir = v;
    else if (ok && strcmp(a, "--scheduler-bin") == 0) o->scheduler_bin = v;
    else if (ok && strcmp(a, "--agent-bin") == 0) o->agent_bin = v;
    else ok = false;
    if (!ok) {
      fprintf(stderr, "edgedi demo: unknown flag, missing or bad value: %s\n", a);
      usage(stderr);
      return CLI_EXIT_USAGE;
    }
    i++;
  }
  if (!split_list(o->models_buf, o->models, DEMO_MAX_MODELS, &o->n_models) ||
      !split_list(o->planners_buf, o->planners, DEMO_MAX_PLANNERS, &o->n_planners)) {
    fprintf(stderr, "edgedi demo: at most %d models and %d planners\n", DEMO_MAX_MODELS,
            DEMO_MAX_PLANNERS);
    return CLI_EXIT_USAGE;
  }
  for (int k = 0; k < o->n_planners; k++)
    if (!plan_find(o->planners[k])) {
      fprintf(stderr, "edgedi demo: unknown planner '%s'\n", o->planners[k]);
      return CLI_EXIT_USAGE;
    }
  return o->n_models && o->n_planners ? 0 : CLI_EXIT_USAGE;
}

static void print_summary(const demo_opts *o, const outcome *out, int n, double bound) {
  printf("\n== summary (emulated boards on one machine; latency = median of %d) ==\n",
         o->requests);
  printf("%-10s %-13s %12s %11s %12s %8s %6s %6s %10s %11s %6s\n", "model", "planner",
         "1xPi3B+_ms", "cluster_ms", "predicted_ms", "speedup", "bound", "ratio", "moved/req",
         "gather_all", "exact");
  for (int i = 0; i < n; i++)
    for (int k = 0; k < o->n_planners; k++) {
      const served *sv = &out[i].by[k];
      char moved[32], all[32];
      printf("%-10s %-13s %12.1f %11.1f %12.1f %7.2fx %5.1fx %6.2f %10s %11s %6s\n",
             o->models[i], o->planners[k], sv->whole_ms, sv->w.median_ms,
             sv->w.predicted_ms, sv->speedup, bound, sv->speedup / bound,
             cli_bytes(sv->w.bytes_moved, moved, sizeof moved),
             cli_bytes(sv->w.bytes_gather_all, all, sizeof all), sv->ok ? "yes" : "NO");
    }
}

/* A board lost mid-request, and back (the file's comment). */
static int demo_loss(localcluster *c, const demo_opts *o, const Edgedi__V1__Image *img,
                     const outcome *first) {
  const int victim = 0;
  double median = first->by[0].w.median_ms, at = DEMO_LOSS_AT * median;
  printf("\n== losing a board: %s killed %.0f ms into a %s request (planner %s) ==\n",
         demo_boards[victim].name, at, o->models[0], o->planners[0]);
  fflush(stdout);
  Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
  req.protocol_version = EDGEDI_PROTOCOL_VERSION;
  req.model = (char *)o->models[0];
  req.planner = (char *)o->planners[0];
  req.image = (Edgedi__V1__Image *)img;
  lossrun_result lr;
  err e = {0};
  if (lossrun_once(c, victim, &req, at, first->base.logits, (size_t)first->base.n_logits, &lr,
                   &e) != ERR_OK || lr.st != GRPC_STATUS_OK) {
    fprintf(stderr, "edgedi demo: the request that lost %s: %s\n", demo_boards[victim].name,
            lr.st != GRPC_STATUS_OK ? lr.why.msg : e.msg);
    return CLI_EXIT_FAIL;
  }
  bool exact = lr.rel_diff <= EXACT_REL_TOLERANCE;
  printf("  answered in %.1f ms (median without loss %.1f ms)\n  recovery: %s\n"
         "  logits equal the single-device run's within %.1e relative (limit %.0e): %s\n",
         lr.latency_ms, median, lr.recovery[0] ? lr.recovery : "none needed (its work was in)",
         lr.rel_diff, EXACT_REL_TOLERANCE, exact ? "yes" : "NO");
  double t0 = cli_now_ms();
  if (localcluster_restart_agent(c, victim, &e) != ERR_OK ||
      localcluster_wait_up(c, LOCALCLUSTER_DEFAULT_UP_TIMEOUT_MS, &e) != ERR_OK) {
    fprintf(stderr, "edgedi demo: starting %s again: %s\n", demo_boards[victim].name, e.msg);
    return CLI_EXIT_FAIL;
  }
  printf("  %s started again: registered and profiled anew in %.1f s\n",
         demo_boards[victim].name, (cli_now_ms() - t0) / 1e3);
  fflush(stdout);
  return exact ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

static int demo_cluster(demo_opts *o) {
  procs_catch_stop_signals();
  double t0 = cli_now_ms();
  char dir[LOCALCLUSTER_PATH_BYTES], db[LOCALCLUSTER_PATH_BYTES + 16];
  if (o->dir) {
    snprintf(dir, sizeof dir, "%s", o->dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
      fprintf(stderr, "edgedi demo: --dir %s: %s\n", dir, strerror(errno));
      return CLI_EXIT_FAIL;
    }
  } else {
    snprintf(dir, sizeof dir, "/tmp/edgedi-demo-XXXXXX");
    if (!mkdtemp(dir)) {
      perror("edgedi demo: mkdtemp");
      return CLI_EXIT_FAIL;
    }
  }
  snprintf(db, sizeof db, "%s/edgedi.db", dir);
  o->db = db;

  err e = {0};
  Edgedi__V1__Image img;
  uint8_t *px = NULL;
  if (workload_sample_image(DEMO_SIDE_PX, DEMO_SIDE_PX, &img, &px, &e) != ERR_OK) {
    fprintf(stderr, "edgedi demo: %s\n", e.msg);
    return CLI_EXIT_FAIL;
  }
  double core_ms = 0;
  if (set_speeds(o, &core_ms, &e) != ERR_OK) {
    fprintf(stderr, "edgedi demo: timing this core for the boards: %s\n", e.msg);
    free(px);
    return CLI_EXIT_FAIL;
  }
  double sum_speed = 0, slowest = INFINITY;
  localcluster_options lo = {.scheduler_bin = o->scheduler_bin, .agent_bin = o->agent_bin,
                             .db_path = db, .port = 0, .models = o->models_buf,
                             .log_dir = dir, .one_by_one = true,
                             .n_agents = DEMO_BOARDS};
  for (int i = 0; i < DEMO_BOARDS; i++) {
    localcluster_agent *a = &lo.agents[i];
    snprintf(a->name, sizeof a->name, "%s", demo_boards[i].name);
    a->speed = demo_speed[i];
    a->link_mbps = FACTORY_WIFI_MBPS;
    a->link_rtt_ms = FACTORY_WIFI_RTT_MS;
    a->threads = 1; /* --speed counts one thread's CPU time */
    sum_speed += a->speed;
    slowest = fmin(slowest, a->speed);
  }
  double bound = sum_speed / slowest;
  char speeds_said[160];
  if (o->core_speeds)
    snprintf(speeds_said, sizeof speeds_said,
             "speeds: DESIGN.md's fractions of one core, of this one (--core-speeds)");
  else
    snprintf(speeds_said, sizeof speeds_said,
             "speeds: each board's own time here (%s whole: %.0f / %.0f ms on the boards, %.1f "
             "ms of thread CPU on one core here; cli/boards.h)",
             BOARDS_REFERENCE_MODEL, boards_find(demo_boards[0].board)->reference_ms,
             boards_find(demo_boards[DEMO_BOARDS - 1].board)->reference_ms, core_ms);
  /* models_buf was cut into tokens by parse(): rebuild the list. */
  char models[256] = "";
  for (int i = 0; i < o->n_models; i++) {
    size_t len = strlen(models);
    snprintf(models + len, sizeof models - len, "%s%s", i ? "," : "", o->models[i]);
  }
  lo.models = models;

  printf("EdgeDI demo: one inference split over 4 emulated IIoT boards on loopback\n"
         "  2 x Raspberry Pi 3B+ (speed %.3g) + 2 x Pi 4B (speed %.3g), each behind a %.0f "
         "Mbit/s link, %.0f ms round trip\n"
         "  %s\n"
         "  input: synthetic %dx%d gray steel surface (uint8, as a camera sends it); %d "
         "requests per model after %d warm-up\n"
         "  bound = sum(speeds) / slowest = %.3g / %.3g = %.1f\n",
         demo_speed[0], demo_speed[DEMO_BOARDS - 1], FACTORY_WIFI_MBPS, FACTORY_WIFI_RTT_MS,
         speeds_said, DEMO_SIDE_PX,
         DEMO_SIDE_PX, o->requests, DEMO_WARMUP_REQUESTS, sum_speed, slowest, bound);
  printf("  database and logs: %s\n", dir);
  fflush(stdout);

  outcome out[DEMO_MAX_MODELS];
  memset(out, 0, sizeof out);
  int status = CLI_EXIT_OK;
  printf("\nmeasuring the baseline: each model whole on one thread here, %d runs in each of %d "
         "processes, and %d copies that run it again after each request\n",
         o->baseline_runs, BASELINE_PROCESSES, BASELINE_PROCESSES);
  for (int i = 0; i < o->n_models && status == CLI_EXIT_OK; i++) {
    if (baseline_measure(o->models[i], &img, o->baseline_runs, true, &out[i].base, &e) != ERR_OK ||
        baseline_pool_open(o->models[i], &img, true, BASELINE_PROCESSES, &out[i].pool, &e) !=
            ERR_OK) {
      fprintf(stderr, "edgedi demo: baseline of %s: %s\n", o->models[i], e.msg);
      status = CLI_EXIT_FAIL;
    }
  }

  localcluster *c = NULL;
  rpc_channel *ch = NULL;
  if (status == CLI_EXIT_OK) {
    printf("starting the scheduler and 4 agents; they register and are profiled\n");
    fflush(stdout);
    double s0 = cli_now_ms();
    if (localcluster_start(&lo, &c, &e) != ERR_OK ||
        localcluster_wait_up(c, LOCALCLUSTER_DEFAULT_UP_TIMEOUT_MS, &e) != ERR_OK ||
        client_connect(localcluster_address(c), &ch, &e) != ERR_OK) {
      fprintf(stderr, "edgedi demo: %s\n", e.msg);
      status = CLI_EXIT_FAIL;
    } else {
      printf("cluster up in %.1f s, scheduler at %s:\n", (cli_now_ms() - s0) / 1e3,
             localcluster_address(c));
      Edgedi__V1__ListDevicesReply *l = NULL;
      if (client_list_devices(ch, &l, &e) == GRPC_STATUS_OK) show_devices(stdout, l);
      rpc_free((ProtobufCMessage *)l);
    }
  }
  int done = 0;
  for (int i = 0; i < o->n_models && status == CLI_EXIT_OK; i++, done++) {
    if (demo_model(ch, o->models[i], &img, o, bound, &out[i], &e) != ERR_OK) {
      fprintf(stderr, "edgedi demo: %s: %s\n", o->models[i], e.msg);
      status = CLI_EXIT_FAIL;
    }
    for (int k = 0; k < o->n_planners; k++)
      if (status == CLI_EXIT_OK && !out[i].by[k].ok) status = CLI_EXIT_FAIL;
  }
  if (status == CLI_EXIT_OK) status = demo_loss(c, o, &img, &out[0]);
  rpc_channel_destroy(ch);
  if (c && !localcluster_stop(c)) fprintf(stderr, "edgedi demo: a child did not stop cleanly\n");
  localcluster_destroy(c);
  if (done == o->n_models) print_summary(o, out, done, bound);
  for (int i = 0; i < o->n_models; i++) {
    for (int k = 0; k < o->n_planners; k++) workload_free(&out[i].by[k].w);
    baseline_free(&out[i].base);
    baseline_pool_close(out[i].pool);
  }
  free(px);
  printf("\ndemo %s in %.0f s. History: edgedi history --db %s (timelines: edgedi timeline "
         "ID --db ...)\n",
         status == CLI_EXIT_OK ? "done" : "FAILED", (cli_now_ms() - t0) / 1e3, db);
  return status;
}

int cmd_demo_cluster(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--local") == 0) {
      /* The single-device demo, with the rest of the flags. */
      memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof *argv);
      return cmd_demo(argc - 1, argv);
    }
  demo_opts o = {.requests = DEMO_REQUESTS, .baseline_runs = DEMO_BASELINE_RUNS};
  int prc = parse(argc, argv, &o);
  if (prc) return prc < 0 ? CLI_EXIT_OK : prc;
  return demo_cluster(&o);
}

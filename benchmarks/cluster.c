/* cluster.c — one inference split over a local cluster: latency, speedup
 * and how close it comes to the bound, as devices, heterogeneity and the
 * link change.
 *
 * Sweeps, each around the base point (4 devices at 1 : 1.5, the demo's
 * boards; 100 Mbit/s, 1 ms round trip):
 *   devices  1 .. --max-devices (--quick: 1, 2, 4, 8)
 *   hetero   equal, 1 : 1.5, 1 : 4
 *   link     10, 100, 1000 Mbit/s
 *   rtt      0.2, 1, 5 ms
 *   base     the base point alone (e.g. every planner on vgg16 and vgg16c)
 * The slowest device is a Pi 3B+ at its own speed (cli/boards.h: the
 * --speed that takes it the board's time for vgg16c whole, 610 ms, as
 * timed on this core at start; --core-speeds: DESIGN.md's 0.1 of this
 * core; --slowest-speed S: S); half the devices (the larger half when odd)
 * are slow, the others faster by the ratio; when the sum passes
 * --max-sum-speed (1.6: two cores) every speed is scaled down.
 * Each point is a fresh cluster (database, cost models) serving --models;
 * each model is asked --requests times (after 2 warm-up requests) with
 * each planner of --planners, named in the request, the planners taken in
 * turn (at most WORKLOAD_MAX_KINDS of them). --base-models are
 * measured at the base point only (vgg16 takes 6-8 s whole on one
 * emulated Pi 3B+).
 *
 * Per point and model: median end-to-end latency (and min, max), the
 * scheduler's predicted makespan, the speedup over the slowest device
 * running the model whole (baseline.h: thread CPU time here / its speed),
 * the bound sum(speeds) / slowest and their ratio. The model whole is
 * timed right after each request (baseline_pool.h: three forked copies in
 * turn) and the speedup is the median of the per-request ratios, so that
 * both sides of each saw the same host; the older figure, the mean of
 * measurements just before and just after the point's requests, is kept
 * beside it (bracket_speedup, whole_before_ms, whole_after_ms). cpu_x, the
 * devices' thread CPU time for a request over the model's whole timed
 * after it (median of the ratios): what splitting it cost in work before any wait (halo
 * rows computed twice, smaller strips, weights each device reads for
 * itself; benchmarks/strip_cost.c measures the part a device alone
 * pays); for a compact model also the speedup over its original model
 * whole on the slowest device (compression x partitioning). The logits of
 * the last reply are checked against the single-device run's.
 *
 * --real-cores: no speed emulation (each agent its own core: run it with
 * scripts/bench_manycore.sh, which pins agents with taskset); only the
 * device sweep, equal devices, links as given (default not emulated).
 * --gantt FILE: the measured timeline (gantt.h) of the last request of the
 * first model at the base point, first planner.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/flags.h"
#include "cli/baseline.h"
#include "cli/baseline_pool.h"
#include "cli/boards.h"
#include "benchmarks/benchcluster.h"
#include "benchmarks/benchutil.h"
#include "benchmarks/gantt.h"
#include "cli/procs.h"
#include "cli/workload.h"
#include "runtime/protocol.h"
#include "runtime/stats.h"

enum {
  DEFAULT_REQUESTS = 20,
  WARMUP_REQUESTS = 2,
  SETTLE_REQUESTS = 3, /* per planner, before any timed one: see run_point */
  DEFAULT_MAX_DEVICES = 8,
  DEFAULT_BASELINE_RUNS = 5,
  BASE_DEVICES = 4,
  SIDE_PX = 200,
  MAX_POINTS = 64,
};
#define PI3B_BOARD "pi3b+" /* the slowest device (cli/boards.h) */
#define BASE_RATIO 1.5    /* Pi 4B : Pi 3B+ */
#define BASE_LINK_MBPS 100.0
#define BASE_RTT_MS 1.0
#define DEFAULT_MAX_SUM_SPEED 1.6
#define EXACT_REL_TOLERANCE 1e-4

typedef struct opts {
  bench_list models, base_models, planners, sweeps;
  int requests, max_devices, baseline_runs;
  double max_sum_speed, slowest_speed; /* slowest_speed 0: the board's, measured */
  double core_ms; /* this core's time for the boards' reference model, when measured */
  bool quick, real_cores, json;
  benchcluster_flags cf; /* with --real-cores, its link is every point's */
  const char *gantt;
} opts;

typedef struct point {
  const char *sweep;
  int n;
  double ratio, mbps, rtt_ms;
  double speeds[LOCALCLUSTER_MAX_AGENTS];
  double sum, slowest;
} point;

static void usage(FILE *f) {
  fprintf(f,
          "usage: cluster [flags]\n"
          "  Latency, speedup and bound of one inference over a local cluster, swept over\n"
          "  devices, heterogeneity, link bandwidth and round trip.\n"
          "  --models LIST        models of every point (default vgg16c)\n"
          "  --base-models LIST   models of the base point only (default vgg16; 'none')\n"
          "  --planners LIST      planners named in the requests (default: the scheduler's)\n"
          "  --sweeps LIST        devices,hetero,link,rtt (default all); base: the base\n"
          "                       point alone\n"
          "  --requests N         timed requests per point, model and planner (default %d)\n"
          "  --max-devices N      device sweep 1..N (default %d)\n"
          "  --max-sum-speed S    cap of the sum of speeds (default %.1f)\n"
          "  --core-speeds        slowest speed 0.1 of this core (default: a Pi 3B+'s\n"
          "                       own time, cli/boards.h)\n"
          "  --slowest-speed S    slowest speed S of this core\n"
          "  --quick              devices 1, 2, 4, 8 only\n"
          "  --real-cores         no --speed: one real core per agent (bench_manycore.sh)\n"
          "  --link-mbps M --link-rtt-ms R   with --real-cores (default: not emulated)\n"
          "  --baseline-runs N    whole-model runs for the baselines (default %d)\n"
          "  --gantt FILE         timeline of one request at the base point\n"
          "  --dir DIR            databases and logs (default: a new /tmp/edgedi-cluster-*)\n"
          "  --scheduler-bin P --agent-bin P   the programs (default: found)\n"
          "  --json               JSON lines instead of the table\n",
          DEFAULT_REQUESTS, DEFAULT_MAX_DEVICES, DEFAULT_MAX_SUM_SPEED, DEFAULT_BASELINE_RUNS);
}

static int parse(int argc, char **argv, opts *o) {
  err e = {0};
  *o = (opts){.requests = DEFAULT_REQUESTS, .max_devices = DEFAULT_MAX_DEVICES,
              .baseline_runs = DEFAULT_BASELINE_RUNS, .max_sum_speed = DEFAULT_MAX_SUM_SPEED};
  bench_parse_list("vgg16c", &o->models, &e);
  bench_parse_list("vgg16", &o->base_models, &e);
  bench_parse_list("devices,hetero,link,rtt", &o->sweeps, &e);
  bench_parse_list("default", &o->planners, &e);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return -1;
    }
    if (strcmp(a, "--core-speeds") == 0) {
      o->slowest_speed = boards_find(PI3B_BOARD)->design_speed;
      continue;
    }
    bool *flag = strcmp(a, "--json") == 0         ? &o->json
                 : strcmp(a, "--quick") == 0      ? &o->quick
                 : strcmp(a, "--real-cores") == 0 ? &o->real_cores
                                                  : NULL;
    if (flag) {
      *flag = true;
      continue;
    }
    bool ok = v != NULL;
    if (!ok) {
    } else if (strcmp(a, "--models") == 0) {
      ok = bench_parse_list(v, &o->models, &e) == ERR_OK &&
           bench_check_models(&o->models, &e) == ERR_OK;
    } else if (strcmp(a, "--base-models") == 0) {
      if (strcmp(v, "none") == 0) o->base_models.n = 0;
      else ok = bench_parse_list(v, &o->base_models, &e) == ERR_OK &&
                bench_check_models(&o->base_models, &e) == ERR_OK;
    } else if (strcmp(a, "--planners") == 0) {
      ok = bench_parse_list(v, &o->planners, &e) == ERR_OK;
      if (ok && o->planners.n > WORKLOAD_MAX_KINDS) {
        err_set(&e, ERR_INVALID, "at most %d planners", WORKLOAD_MAX_KINDS);
        ok = false;
      }
    } else if (strcmp(a, "--sweeps") == 0) {
      ok = bench_parse_list(v, &o->sweeps, &e) == ERR_OK;
    } else if (strcmp(a, "--requests") == 0) {
      ok = flags_parse_int(v, 1, WORKLOAD_MAX_REQUESTS, &o->requests);
    } else if (strcmp(a, "--max-devices") == 0) {
      ok = flags_parse_int(v, 1, LOCALCLUSTER_MAX_AGENTS, &o->max_devices);
    } else if (strcmp(a, "--max-sum-speed") == 0) {
      ok = flags_parse_double(v, 0.01, 1024, &o->max_sum_speed);
    } else if (strcmp(a, "--slowest-speed") == 0) {
      ok = flags_parse_double(v, 0.001, 1, &o->slowest_speed);
    } else if (strcmp(a, "--baseline-runs") == 0) {
      ok = flags_parse_int(v, 1, 1000, &o->baseline_runs);
    } else if (benchcluster_flag(a, v, &o->cf, &ok)) {
    } else if (strcmp(a, "--gantt") == 0) {
      o->gantt = v;
    } else {
      ok = false;
    }
    if (!ok) return bench_bad_flag("cluster", a, &e, usage);
    i++;
  }
  for (int i = 0; i < o->sweeps.n; i++) {
    const char *s = o->sweeps.item[i];
    if (strcmp(s, "devices") && strcmp(s, "hetero") && strcmp(s, "link") && strcmp(s, "rtt") &&
        strcmp(s, "base")) {
      fprintf(stderr, "cluster: unknown sweep '%s' (devices, hetero, link, rtt, base)\n", s);
      return BENCH_EXIT_USAGE;
    }
  }
  if (o->real_cores) bench_parse_list("devices", &o->sweeps, &e);
  return 0;
}

/* The slowest speed, when no flag set it: a Pi 3B+'s own (cli/boards.h). */
static err_code board_speed(opts *o, err *e) {
  if (o->real_cores || o->slowest_speed > 0) return ERR_OK;
  err_code rc = boards_measure_core(o->baseline_runs, &o->core_ms, e);
  if (rc != ERR_OK) return err_wrap(e, "timing this core for the boards");
  o->slowest_speed = boards_speed(boards_find(PI3B_BOARD), o->core_ms);
  return ERR_OK;
}

/* ---- points -------------------------------------------------------------------- */

static point make_point(const opts *o, const char *sweep, int n, double ratio, double mbps,
                        double rtt) {
  point p = {.sweep = sweep, .n = n, .ratio = ratio, .mbps = mbps, .rtt_ms = rtt};
  if (o->real_cores) {
    for (int i = 0; i < n; i++) p.speeds[i] = 0; /* not emulated */
    p.sum = n, p.slowest = 1;
    return p;
  }
  int slow = (n + 1) / 2;
  double sum = 0;
  for (int i = 0; i < n; i++) sum += o->slowest_speed * (i < slow ? 1 : ratio);
  double scale = sum > o->max_sum_speed ? o->max_sum_speed / sum : 1;
  for (int i = 0; i < n; i++) p.speeds[i] = o->slowest_speed * (i < slow ? 1 : ratio) * scale;
  p.sum = sum * scale;
  p.slowest = o->slowest_speed * scale;
  return p;
}

static bool is_base(const point *p) {
  return p->n == BASE_DEVICES && p->ratio == BASE_RATIO && p->mbps == BASE_LINK_MBPS &&
         p->rtt_ms == BASE_RTT_MS;
}

static int make_points(const opts *o, point *pts) {
  int n = 0;
  for (int s = 0; s < o->sweeps.n; s++) {
    const char *sw = o->sweeps.item[s];
    if (strcmp(sw, "devices") == 0) {
      static const int quick[] = {1, 2, 4, 8};
      for (int d = 1; d <= o->max_devices; d++) {
        bool in_quick = false;
        for (int q = 0; q < 4; q++) in_quick |= quick[q] == d;
        if (o->quick && !in_quick) continue;
        if (o->real_cores) pts[n++] = make_point(o, sw, d, 1, o->cf.link_mbps, o->cf.link_rtt_ms);
        else pts[n++] = make_point(o, sw, d, BASE_RATIO, BASE_LINK_MBPS, BASE_RTT_MS);
      }
    } else if (strcmp(sw, "base") == 0) {
      pts[n++] = make_point(o, sw, BASE_DEVICES, BASE_RATIO, BASE_LINK_MBPS, BASE_RTT_MS);
    } else if (strcmp(sw, "hetero") == 0) {
      static const double r[] = {1, BASE_RATIO, 4};
      for (int k = 0; k < 3; k++)
        pts[n++] = make_point(o, sw, BASE_DEVICES, r[k], BASE_LINK_MBPS, BASE_RTT_MS);
    } else if (strcmp(sw, "link") == 0) {
      static const double m[] = {10, BASE_LINK_MBPS, 1000};
      for (int k = 0; k < 3; k++)
        pts[n++] = make_point(o, sw, BASE_DEVICES, BASE_RATIO, m[k], BASE_RTT_MS);
    } else {
      static const double r[] = {0.2, BASE_RTT_MS, 5};
      for (int k = 0; k < 3; k++)
        pts[n++] = make_point(o, sw, BASE_DEVICES, BASE_RATIO, BASE_LINK_MBPS, r[k]);
    }
  }
  return n;
}

/* ---- baselines ------------------------------------------------------------------ */

typedef struct model_base {
  char name[BENCH_ITEM_BYTES];
  baseline whole;
  double original_cpu_ms; /* compact: its original whole; else 0 */
  double last_cpu_ms;     /* the latest whole-model measurement (see run_point) */
  baseline_pool *pool;    /* the model whole, timed after each request */
} model_base;

static err_code measure_bases(const opts *o, const bench_list *models,
                              const Edgedi__V1__Image *img, model_base *mb, err *e) {
  for (int i = 0; i < models->n; i++) {
    snprintf(mb[i].name, sizeof mb[i].name, "%s", models->item[i]);
    err_code rc =
        baseline_measure(mb[i].name, img, o->baseline_runs, !o->real_cores, &mb[i].whole, e);
    if (rc == ERR_OK)
      rc = baseline_pool_open(mb[i].name, img, !o->real_cores, BASELINE_PROCESSES, &mb[i].pool, e);
    if (rc != ERR_OK) return rc;
    mb[i].last_cpu_ms = mb[i].whole.cpu_ms;
    if (!bench_is_compact(mb[i].name)) continue;
    char orig[BENCH_ITEM_BYTES];
    snprintf(orig, sizeof orig, "%s", mb[i].name);
    orig[strlen(orig) - 1] = 0; /* vgg16c -> vgg16 */
    bool known = false;
    for (int k = 0; k < i; k++)
      if (strcmp(mb[k].name, orig) == 0) mb[i].original_cpu_ms = mb[k].whole.cpu_ms, known = true;
    if (known) continue;
    baseline b;
    /* The original is slow (vgg16: ~1 s): fewer runs do. */
    rc = baseline_measure(orig, img, o->baseline_runs < 3 ? o->baseline_runs : 3, !o->real_cores,
                          &b, e);
    if (rc != ERR_OK) return rc;
    mb[i].original_cpu_ms = b.cpu_ms;
    baseline_free(&b);
  }
  return ERR_OK;
}

/* ---- one point -------------------------------------------------------------------- */

typedef struct row {
  const point *p;
  const model_base *mb;
  char planner[BENCH_ITEM_BYTES];
  workload_result w;
  double slowest_whole_ms, speedup, bound, speedup_vs_original, rel_diff;
  double cpu_x;           /* the request's tile CPU over the model whole after it */
  double whole_cpu_ms;    /* the model whole: thread CPU ms here, after the requests */
  double whole_before_ms, whole_after_ms; /* on the slowest, around the point */
  double bracket_speedup; /* over the mean of that bracket */
  int64_t last_request;
} row;

static void print_row(const opts *o, const row *r) {
  const point *p = r->p;
  const workload_result *w = &r->w;
  bool exact = r->rel_diff <= EXACT_REL_TOLERANCE;
  if (o->json) {
    printf("{\"bench\":\"cluster\",\"sweep\":\"%s\",\"model\":\"%s\",\"planner\":\"%s\","
           "\"devices\":%d,\"ratio\":%.2f,\"sum_speed\":%.3f,\"slowest_speed\":%.3f,"
           "\"link_mbps\":%.1f,\"rtt_ms\":%.2f,\"requests\":%d,\"median_ms\":%.2f,"
           "\"min_ms\":%.2f,\"max_ms\":%.2f,\"predicted_ms\":%.2f,\"slowest_whole_ms\":%.2f,"
           "\"whole_before_ms\":%.2f,\"whole_after_ms\":%.2f,\"bracket_speedup\":%.3f,"
           "\"speedup\":%.3f,\"bound\":%.3f,\"ratio_to_bound\":%.3f,"
           "\"tile_cpu_ms\":%.2f,\"whole_cpu_ms\":%.2f,\"cpu_over_whole\":%.3f,",
           p->sweep, r->mb->name, r->planner, p->n, p->ratio, p->sum, p->slowest, p->mbps,
           p->rtt_ms, w->n, w->median_ms, w->min_ms, w->max_ms, w->predicted_ms,
           r->slowest_whole_ms, r->whole_before_ms, r->whole_after_ms, r->bracket_speedup,
           r->speedup, r->bound, r->speedup / r->bound, w->cpu_ms, r->whole_cpu_ms, r->cpu_x);
    if (r->speedup_vs_original > 0)
      printf("\"speedup_vs_original\":%.3f,", r->speedup_vs_original);
    printf("\"bytes_moved\":%llu,\"max_rel_diff\":%.3e,\"exact\":%s,\"real_cores\":%s}\n",
           (unsigned long long)w->bytes_moved, r->rel_diff, exact ? "true" : "false",
           o->real_cores ? "true" : "false");
  } else {
    char spread[40], vs[16] = "-";
    snprintf(spread, sizeof spread, "(%.0f..%.0f)", w->min_ms, w->max_ms);
    if (r->speedup_vs_original > 0) snprintf(vs, sizeof vs, "%.1fx", r->speedup_vs_original);
    printf("%-7s %-8s %-12s %3d %5.2f %5.2f %6.0f %5.1f %9.1f %13s %9.1f %9.0f %7.2fx %6.2fx "
           "%5.2f %5.2f %8s %5s\n",
           p->sweep, r->mb->name, r->planner, p->n, p->ratio, p->sum, p->mbps, p->rtt_ms,
           w->median_ms, spread, w->predicted_ms, r->slowest_whole_ms, r->speedup, r->bound,
           r->speedup / r->bound, r->cpu_x, vs, exact ? "yes" : "NO");
  }
  fflush(stdout);
}

static void print_header(void) {
  printf("%-7s %-8s %-12s %3s %5s %5s %6s %5s %9s %13s %9s %9s %8s %7s %5s %5s %8s %5s\n",
         "sweep", "model", "planner", "dev", "ratio", "sum", "mbps", "rtt", "median_ms",
         "(min..max)", "pred_ms", "slow_ms", "speedup", "bound", "s/b", "cpu_x", "vs_orig",
         "exact");
}

/* The model's rows of one point, priced against the slowest board running
 * it whole as timed after each request (the headline), and as measured
 * before and after the point (the bracket, kept for comparison: it is
 * what the figures were divided by until 2026-11-27; the host's speed moves
 * by up to 1.75x between its two ends, baseline_pool.h). */
static err_code finish_rows(const opts *o, model_base *b, row *rows, int n, int *failures,
                            const Edgedi__V1__Image *img, err *e) {
  double before_ms = b->last_cpu_ms, after_ms = before_ms;
  err_code rc =
      baseline_measure_cpu(b->name, img, o->baseline_runs, !o->real_cores, &after_ms, e);
  b->last_cpu_ms = after_ms;
  for (int k = 0; k < n; k++) {
    row *r = &rows[k];
    const point *p = r->p;
    r->whole_before_ms = before_ms / p->slowest;
    r->whole_after_ms = after_ms / p->slowest;
    r->bracket_speedup = (before_ms + after_ms) / 2 / p->slowest / r->w.median_ms;
    r->whole_cpu_ms = r->w.probe_ms;
    r->slowest_whole_ms = r->w.probe_ms / p->slowest;
    r->speedup = r->w.probe_per_ms / p->slowest;
    r->cpu_x = r->w.cpu_per_probe;
    r->bound = p->sum / p->slowest;
    if (b->original_cpu_ms > 0)
      r->speedup_vs_original = b->original_cpu_ms / p->slowest / r->w.median_ms;
    const Edgedi__V1__InferReply *last = r->w.last;
    r->rel_diff = last->n_logits == b->whole.n_logits
                      ? stats_max_rel_diff(last->logits, b->whole.logits, last->n_logits)
                      : INFINITY;
    if (r->rel_diff > EXACT_REL_TOLERANCE) (*failures)++;
    print_row(o, r);
    workload_free(&r->w);
  }
  return rc;
}

/* A fresh cluster for p, every model and planner asked; rows printed. */
static err_code run_point(const opts *o, const point *p, int idx, const char *dir,
                          model_base *mb, int n_models, const Edgedi__V1__Image *img,
                          bool gantt_here, int *failures, err *e) {
  char pdir[600], models[1024] = "";
  snprintf(pdir, sizeof pdir, "%s/p%02d-%s-%d", dir, idx, p->sweep, p->n);
  mkdir(pdir, 0755);
  for (int i = 0; i < n_models; i++) {
    size_t len = strlen(models);
    snprintf(models + len, sizeof models - len, "%s%s", i ? "," : "", mb[i].name);
  }
  benchcluster_config cfg = {.n_agents = p->n, .link_mbps = p->mbps, .link_rtt_ms = p->rtt_ms,
                             .models = models, .dir = pdir, .scheduler_bin = o->cf.scheduler_bin,
                             .agent_bin = o->cf.agent_bin};
  memcpy(cfg.speeds, p->speeds, sizeof cfg.speeds);
  benchcluster bc;
  err_code rc = benchcluster_start(&cfg, &bc, e);
  int64_t gantt_request = 0;
  for (int m = 0; m < n_models && rc == ERR_OK; m++) {
    Edgedi__V1__InferRequest reqs[BENCH_MAX_LIST];
    const Edgedi__V1__InferRequest *req_of[BENCH_MAX_LIST];
    workload_result w[BENCH_MAX_LIST];
    const int n_pl = o->planners.n; /* <= WORKLOAD_MAX_KINDS (parse) */
    for (int k = 0; k < n_pl; k++) {
      const char *pl = strcmp(o->planners.item[k], "default") == 0 ? "" : o->planners.item[k];
      edgedi__v1__infer_request__init(&reqs[k]);
      reqs[k].protocol_version = EDGEDI_PROTOCOL_VERSION;
      reqs[k].model = (char *)mb[m].name;
      reqs[k].image = (Edgedi__V1__Image *)img;
      reqs[k].planner = (char *)pl;
      req_of[k] = &reqs[k];
    }
    /* The cost models are refitted from every request, so a planner timed
     * later would plan with models better fitted than the first one did:
     * with several planners, each first sends a few untimed requests, and
     * every timed run starts from models that have seen all their plans. */
    for (int k = 0; n_pl > 1 && k < n_pl && rc == ERR_OK; k++) {
      if (workload_run(bc.ch, req_of[k], 0, SETTLE_REQUESTS, procs_stop_requested, &w[k], e) !=
          ERR_OK)
        rc = localcluster_check_alive(bc.lc, e); /* the timed run below reports it */
      workload_free(&w[k]);
    }
    row rows[BENCH_MAX_LIST];
    int n_rows = 0;
    if (rc == ERR_OK) {
      /* The timed requests take the planners in turn, so that this VM's
       * drift (a board's CPU time for the same tile moved by half within
       * a minute) falls on each planner alike. */
      const workload_probe probe = {.run = baseline_pool_probe, .ctx = mb[m].pool};
      rc = workload_run_paired(bc.ch, req_of, n_pl, WARMUP_REQUESTS, o->requests,
                               procs_stop_requested, &probe, w, e);
      if (rc != ERR_OK) {
        /* A failing planner or model is rows missing, not a sweep lost. */
        fprintf(stderr, "cluster: %s, %d devices, %s: %s\n", p->sweep, p->n, mb[m].name, e->msg);
        (*failures) += n_pl;
        rc = localcluster_check_alive(bc.lc, e);
        continue;
      }
    }
    for (int k = 0; k < n_pl && rc == ERR_OK; k++) {
      const char *pl = reqs[k].planner;
      row r = {.p = p, .mb = &mb[m], .w = w[k]};
      const Edgedi__V1__InferReply *last = r.w.last;
      snprintf(r.planner, sizeof r.planner, "%s", last->planner && last->planner[0]
                                                      ? last->planner : (pl[0] ? pl : "default"));
      if (gantt_here && m == 0 && k == 0) gantt_request = (int64_t)last->request_id;
      rows[n_rows++] = r;
    }
    if (n_rows > 0) {
      err_code frc = finish_rows(o, &mb[m], rows, n_rows, failures, img, e);
      if (rc == ERR_OK) rc = frc;
    }
  }
  benchcluster_stop(&bc);
  if (rc == ERR_OK && gantt_request > 0) {
    FILE *f = fopen(o->gantt, "w");
    if (!f) return err_set(e, ERR_IO, "cannot create %s", o->gantt);
    rc = gantt_write(bc.db_path, gantt_request, f, e);
    if (fclose(f) != 0 && rc == ERR_OK) rc = err_set(e, ERR_IO, "cannot write %s", o->gantt);
  }
  return rc;
}

int main(int argc, char **argv) {
  opts o;
  int prc = parse(argc, argv, &o);
  if (prc) return prc < 0 ? 0 : prc;
  procs_catch_stop_signals();
  err e = {0};
  char dir[512];
  Edgedi__V1__Image img;
  uint8_t *px = NULL;
  bench_list all = o.models; /* sweep models, then base-only ones */
  for (int i = 0; i < o.base_models.n && all.n < BENCH_MAX_LIST; i++)
    memcpy(all.item[all.n++], o.base_models.item[i], BENCH_ITEM_BYTES);
  model_base *mb = calloc((size_t)all.n, sizeof *mb);
  if (!mb || bench_work_dir(o.cf.dir, "cluster", dir, sizeof dir, &e) != ERR_OK ||
      workload_sample_image(SIDE_PX, SIDE_PX, &img, &px, &e) != ERR_OK ||
      board_speed(&o, &e) != ERR_OK || measure_bases(&o, &all, &img, mb, &e) != ERR_OK) {
    fprintf(stderr, "cluster: %s\n", mb ? e.msg : "out of memory");
    for (int i = 0; mb && i < all.n; i++) baseline_pool_close(mb[i].pool);
    free(mb);
    return 1;
  }
  point pts[MAX_POINTS];
  int n_pts = make_points(&o, pts);
  if (!o.json) {
    char said[160];
    snprintf(said, sizeof said, "emulated devices on this machine (slowest speed %.4f%s)",
             o.slowest_speed, o.core_ms > 0 ? ": a Pi 3B+'s own time" : "");
    printf("cluster: %s; %d requests per point after %d warm-up; logs in %s\n",
           o.real_cores ? "one real core per agent (no speed emulation)" : said, o.requests,
           WARMUP_REQUESTS, dir);
    if (o.core_ms > 0)
      printf("  %s whole: %.2f ms of thread CPU on one core here, %.0f ms on a Pi 3B+ "
             "(cli/boards.h)\n",
             BOARDS_REFERENCE_MODEL, o.core_ms, boards_find(PI3B_BOARD)->reference_ms);
    for (int i = 0; i < all.n; i++)
      printf("  %s whole: %.2f ms thread CPU here (%.2f GFLOP)%s\n", mb[i].name,
             mb[i].whole.cpu_ms, mb[i].whole.gflop, i >= o.models.n ? " [base point only]" : "");
    print_header();
  }
  int failures = 0, status = 0;
  bool gantt_done = false, base_models_done = false;
  for (int i = 0; i < n_pts && !procs_stop_requested(); i++) {
    /* The base point recurs in every sweep: measure it once, with the
     * base-only models too. */
    bool base = is_base(&pts[i]) && !o.real_cores;
    if (base && base_models_done) continue;
    int n_models = base ? all.n : o.models.n;
    bool gantt_here = o.gantt && !gantt_done && (base || o.real_cores);
    if (run_point(&o, &pts[i], i, dir, mb, n_models, &img, gantt_here, &failures, &e) != ERR_OK) {
      fprintf(stderr, "cluster: %s, %d devices: %s\n", pts[i].sweep, pts[i].n, e.msg);
      status = 1;
    }
    gantt_done |= gantt_here;
    base_models_done |= base;
  }
  for (int i = 0; i < all.n; i++) {
    baseline_free(&mb[i].whole);
    baseline_pool_close(mb[i].pool);
  }
  free(mb);
  free(px);
  return status || failures ? 1 : 0;
}

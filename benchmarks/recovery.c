/* recovery.c — what losing a board mid-request costs, and what each way of
 * recovering does about it (scheduler/infer.h, "Agent loss").
 *
 * The cluster is the demo's at `edgedi demo --core-speeds` (two Pi 3B+ at
 * speed 0.1, two Pi 4B at 0.15 of this core, faster boards than the
 * demo's own: cli/boards.h; 100 Mbit/s, 1 ms round trip, emulated here),
 * started once per loss
 * policy of --policies (edgedi-scheduler --on-loss). For each model, after
 * warm-up, the median latency of --base requests without loss is T. Then
 * for each point f of --at, --requests requests each lose agent dev-V
 * (--victim; dev-0 is a Pi 3B+): it is killed with SIGKILL, as a board
 * losing power, f x T after its request was sent. After each loss the
 * agent is started again and --rewarm requests run before the next one,
 * so that every loss meets the plan the cluster settles on with all its
 * boards, on prepared strips. Per point: the median latency of the
 * requests that lost the board and its ratio to T; what the replies say
 * was done (stand-ins, restarts, neither: the board's work was all in when
 * it died); the largest difference of their logits from the no-loss reply's
 * (the contract: 1e-4 of the largest logit); requests that failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchmarks/benchcluster.h"
#include "benchmarks/benchutil.h"
#include "cli/client.h"
#include "cli/flags.h"
#include "cli/lossrun.h"
#include "cli/procs.h"
#include "cli/workload.h"
#include "runtime/protocol.h"
#include "runtime/stats.h"

enum {
  SIDE_PX = 200,
  WARMUP_REQUESTS = 8, /* a model's first requests refit the models and change the plan */
  DEFAULT_BASE = 9,
  DEFAULT_REQUESTS = 3,
  DEFAULT_REWARM = 3,
  MAX_REQUESTS = 50,
  UP_TIMEOUT_MS = 120000,
};

static const double EXACT = 1e-4; /* DESIGN.md's contract, relative to the largest logit */

typedef struct opts {
  bench_list models, policies;
  double at[BENCH_MAX_LIST];
  int n_at, base, requests, rewarm, victim;
  double speeds[LOCALCLUSTER_MAX_AGENTS];
  int n_speeds;
  benchcluster_flags cf;
  bool json;
} opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: recovery [flags]\n"
          "  Kills an agent of the demo's emulated cluster mid-request, once per loss\n"
          "  policy of the scheduler: the latency of requests that lose a board against\n"
          "  those that do not, how they recovered, and whether the answer stayed exact.\n"
          "  --models LIST        (default vgg16c,vgg16)\n"
          "  --policies LIST      edgedi-scheduler --on-loss values (default\n"
          "                       restart,stand-in,auto)\n"
          "  --at LIST            kill points, fractions of the no-loss latency\n"
          "                       (default 0.25,0.5,0.75)\n"
          "  --requests N         requests per point (default %d)\n"
          "  --base N             no-loss requests, for the median T (default %d)\n"
          "  --rewarm N           requests after each restart of the agent (default %d)\n"
          "  --victim I           the agent killed, dev-I (default 0)\n"
          "  --speeds LIST        agent speeds (default 0.1,0.1,0.15,0.15)\n"
          "  --link-mbps M --link-rtt-ms R   (default 100 and 1)\n"
          "  --dir DIR            databases and logs (default: a new /tmp/edgedi-recovery-*)\n"
          "  --scheduler-bin P --agent-bin P   the programs (default: found)\n"
          "  --json               JSON lines instead of the table\n",
          DEFAULT_REQUESTS, DEFAULT_BASE, DEFAULT_REWARM);
}

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.base = DEFAULT_BASE, .requests = DEFAULT_REQUESTS, .rewarm = DEFAULT_REWARM,
              .at = {0.25, 0.5, 0.75}, .n_at = 3, .speeds = {0.1, 0.1, 0.15, 0.15},
              .n_speeds = 4, .cf = {.link_mbps = 100, .link_rtt_ms = 1}};
  err e = {0};
  bench_parse_list("vgg16c,vgg16", &o->models, &e);
  bench_parse_list("restart,stand-in,auto", &o->policies, &e);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bench_flag common = bench_common_flag(a, &o->json, usage);
    if (common == BENCH_FLAG_HELP) return -1;
    if (common == BENCH_FLAG_TAKEN) continue;
    bool ok = v != NULL;
    if (!ok) {
    } else if (strcmp(a, "--models") == 0) {
      ok = bench_parse_list(v, &o->models, &e) == ERR_OK &&
           bench_check_models(&o->models, &e) == ERR_OK;
    } else if (strcmp(a, "--policies") == 0) {
      ok = bench_parse_list(v, &o->policies, &e) == ERR_OK;
    } else if (strcmp(a, "--at") == 0) {
      ok = bench_parse_doubles(v, 0, 10, o->at, BENCH_MAX_LIST, &o->n_at, &e) == ERR_OK;
    } else if (strcmp(a, "--requests") == 0) {
      ok = flags_parse_int(v, 1, MAX_REQUESTS, &o->requests);
    } else if (strcmp(a, "--base") == 0) {
      ok = flags_parse_int(v, 1, MAX_REQUESTS, &o->base);
    } else if (strcmp(a, "--rewarm") == 0) {
      ok = flags_parse_int(v, 0, MAX_REQUESTS, &o->rewarm);
    } else if (strcmp(a, "--victim") == 0) {
      ok = flags_parse_int(v, 0, LOCALCLUSTER_MAX_AGENTS - 1, &o->victim);
    } else if (strcmp(a, "--speeds") == 0) {
      ok = bench_parse_doubles(v, 0.001, 64, o->speeds, LOCALCLUSTER_MAX_AGENTS, &o->n_speeds,
                               &e) == ERR_OK;
    } else if (benchcluster_flag(a, v, &o->cf, &ok)) {
    } else {
      ok = false;
    }
    if (!ok) return bench_bad_flag("recovery", a, &e, usage);
    i++;
  }
  if (o->victim >= o->n_speeds)
    return bench_bad_flag("recovery", "--victim", &(err){ERR_RANGE, "no such agent"}, usage);
  return 0;
}

/* ---- one request that loses a board ----------------------------------------- */

typedef struct point {
  const char *policy, *model;
  double at, at_ms, base_ms;
  double lat[MAX_REQUESTS];
  int n, standins, restarts, neither, failed;
  double max_diff;
} point;

/* One request with dev-victim killed at_ms after it was sent; then the
 * agent again, and the cluster warm again. */
static err_code lose_one(benchcluster *bc, const opts *o, const Edgedi__V1__InferRequest *req,
                         const float *want, size_t n_want, point *pt, err *e) {
  lossrun_result lr;
  err_code rc = lossrun_once(bc->lc, o->victim, req, pt->at_ms, want, n_want, &lr, e);
  if (rc != ERR_OK) return rc;
  if (lr.st != GRPC_STATUS_OK) {
    pt->failed++;
    fprintf(stderr, "recovery: %s, %s, at %.2f: %s\n", pt->policy, pt->model, pt->at, lr.why.msg);
  } else {
    pt->lat[pt->n++] = lr.latency_ms;
    if (lr.rel_diff > pt->max_diff) pt->max_diff = lr.rel_diff;
    if (strstr(lr.recovery, "stood in")) pt->standins++;
    else if (strstr(lr.recovery, "started over")) pt->restarts++;
    else pt->neither++;
  }
  rc = localcluster_restart_agent(bc->lc, o->victim, e);
  if (rc == ERR_OK) rc = localcluster_wait_up(bc->lc, UP_TIMEOUT_MS, e);
  workload_result w;
  if (rc == ERR_OK && o->rewarm > 0 &&
      (rc = workload_run(bc->ch, req, 0, o->rewarm, procs_stop_requested, &w, e)) == ERR_OK)
    workload_free(&w);
  return rc;
}

static void print_point(const opts *o, point *pt) {
  double lat[MAX_REQUESTS];
  memcpy(lat, pt->lat, sizeof lat);
  double med = pt->n ? stats_median(lat, pt->n) : 0, lo = 0, hi = 0;
  bench_min_max(pt->lat, pt->n, &lo, &hi);
  bool exact = pt->failed == 0 && pt->max_diff <= EXACT;
  if (o->json) {
    printf("{\"bench\":\"recovery\",\"policy\":\"%s\",\"model\":\"%s\",\"at\":%.3f,"
           "\"at_ms\":%.1f,\"base_ms\":%.2f,\"n\":%d,\"median_ms\":%.2f,\"min_ms\":%.2f,"
           "\"max_ms\":%.2f,\"vs_base\":%.3f,\"standins\":%d,\"restarts\":%d,\"neither\":%d,"
           "\"failed\":%d,\"max_rel_diff\":%.3g,\"exact\":%s}\n",
           pt->policy, pt->model, pt->at, pt->at_ms, pt->base_ms, pt->n, med, lo, hi,
           pt->base_ms > 0 ? med / pt->base_ms : 0, pt->standins, pt->restarts, pt->neither,
           pt->failed, pt->max_diff, exact ? "true" : "false");
  } else {
    char range[40];
    snprintf(range, sizeof range, "(%.1f..%.1f)", lo, hi);
    printf("%-9s %-9s %5.2f %8.1f %8.1f %9.1f %-17s %7.2f %8d %8d %7d %6d %9.1e %5s\n",
           pt->policy, pt->model, pt->at, pt->at_ms, pt->base_ms, med, range,
           pt->base_ms > 0 ? med / pt->base_ms : 0, pt->standins, pt->restarts, pt->neither,
           pt->failed, pt->max_diff, exact ? "yes" : "NO");
  }
  fflush(stdout);
}

/* One policy's cluster: every model, every point. */
static int run_policy(const opts *o, const char *dir, const char *policy,
                      Edgedi__V1__Image *img) {
  char sub[600];
  snprintf(sub, sizeof sub, "%s/%s", dir, policy);
  err e = {0};
  char made[600];
  if (bench_work_dir(sub, "recovery", made, sizeof made, &e) != ERR_OK) {
    fprintf(stderr, "recovery: %s\n", e.msg);
    return 1;
  }
  char models[BENCH_MAX_LIST * BENCH_ITEM_BYTES] = "";
  for (int i = 0; i < o->models.n; i++)
    snprintf(models + strlen(models), sizeof models - strlen(models), "%s%s", i ? "," : "",
             o->models.item[i]);
  benchcluster_config cfg = {.n_agents = o->n_speeds, .link_mbps = o->cf.link_mbps,
                             .link_rtt_ms = o->cf.link_rtt_ms, .models = models, .dir = made,
                             .on_loss = policy, .scheduler_bin = o->cf.scheduler_bin,
                             .agent_bin = o->cf.agent_bin};
  memcpy(cfg.speeds, o->speeds, sizeof cfg.speeds);
  benchcluster bc;
  if (benchcluster_start(&cfg, &bc, &e) != ERR_OK) {
    fprintf(stderr, "recovery: --on-loss %s: %s\n", policy, e.msg);
    return 1;
  }
  int status = 0;
  for (int mi = 0; mi < o->models.n && status == 0; mi++) {
    Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
    req.protocol_version = EDGEDI_PROTOCOL_VERSION;
    req.model = (char *)o->models.item[mi];
    req.image = img;
    workload_result base;
    if (workload_run(bc.ch, &req, WARMUP_REQUESTS, o->base, procs_stop_requested, &base, &e) !=
        ERR_OK) {
      fprintf(stderr, "recovery: %s, %s: %s\n", policy, req.model, e.msg);
      status = 1;
      break;
    }
    size_t n_want = base.last->n_logits;
    float *want = malloc((n_want ? n_want : 1) * sizeof *want);
    if (want) memcpy(want, base.last->logits, n_want * sizeof *want);
    double base_ms = base.median_ms;
    workload_free(&base);
    for (int ai = 0; ai < o->n_at && status == 0 && want; ai++) {
      point pt = {.policy = policy, .model = req.model, .at = o->at[ai],
                  .at_ms = o->at[ai] * base_ms, .base_ms = base_ms};
      for (int k = 0; k < o->requests && status == 0; k++)
        if (lose_one(&bc, o, &req, want, n_want, &pt, &e) != ERR_OK) {
          fprintf(stderr, "recovery: %s, %s: %s\n", policy, req.model, e.msg);
          status = 1;
        }
      if (status == 0) print_point(o, &pt);
    }
    if (!want) status = 1;
    free(want);
  }
  benchcluster_stop(&bc);
  return status;
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
  if (bench_work_dir(o.cf.dir, "recovery", dir, sizeof dir, &e) != ERR_OK ||
      workload_sample_image(SIDE_PX, SIDE_PX, &img, &px, &e) != ERR_OK) {
    fprintf(stderr, "recovery: %s\n", e.msg);
    return 1;
  }
  if (!o.json) {
    printf("recovery: dev-%d (speed %.2f) killed mid-request on %d emulated agents, %.0f "
           "Mbit/s, %.1f ms; %d requests per point; T: median of %d without loss\n",
           o.victim, o.speeds[o.victim], o.n_speeds, o.cf.link_mbps, o.cf.link_rtt_ms, o.requests,
           o.base);
    printf("%-9s %-9s %5s %8s %8s %9s %-17s %7s %8s %8s %7s %6s %9s %5s\n", "policy", "model",
           "at", "at_ms", "T_ms", "median_ms", "(min..max)", "vs_T", "stand-in", "restart",
           "neither", "failed", "rel_diff", "exact");
  }
  int status = 0;
  for (int i = 0; i < o.policies.n && status == 0 && !procs_stop_requested(); i++)
    status = run_policy(&o, dir, o.policies.item[i], &img);
  free(px);
  return status;
}

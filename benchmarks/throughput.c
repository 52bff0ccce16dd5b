/* throughput.c — how many requests a 4-agent cluster serves per second
 * when several clients send at once, against what its devices could do.
 *
 * The cluster is the demo's at `edgedi demo --core-speeds` (two Pi 3B+ at
 * speed 0.1, two Pi 4B at 0.15 of this core, faster boards than the
 * demo's own: cli/boards.h; 100 Mbit/s, 1 ms: emulated on this machine). For each client count in
 * --clients, that many threads, each with its own channel, send
 * --per-client requests of --model back to back; the phase's wall time
 * gives requests/s, the client-side latencies p50 and p99. An agent's busy
 * fraction is the compute time the replies report for it (its jobs'
 * stretched wall time) over the phase's wall time.
 *
 * The capacity bound: one request is work the whole model costs, so the
 * devices together serve at most sum(speed_i) / (cpu_ms of the model whole
 * on one thread here, measured before and after each phase and averaged)
 * requests per ms; partitioning only adds to the work (halo rows,
 * transfers), so the ratio rps / capacity says how much of the devices'
 * time goes to useful work.
 *
 * Agent memory: for each model of --rss-models, a cluster that serves only
 * it answers --rss-requests requests, then the peak resident set (VmHWM)
 * of each agent process is read; the largest and the scheduler's are shown.
 * Those agents run with --resident-mb 0, so that the figure is what the
 * model needs, not the heap an agent keeps resident by default.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "cli/baseline.h"
#include "benchmarks/benchcluster.h"
#include "benchmarks/benchutil.h"
#include "cli/client.h"
#include "cli/procs.h"
#include "cli/workload.h"
#include "runtime/protocol.h"
#include "runtime/stats.h"

enum {
  DEFAULT_PER_CLIENT = 6,
  DEFAULT_RSS_REQUESTS = 2,
  WARMUP_REQUESTS = 2,
  BASELINE_RUNS = 5,
  MAX_CLIENTS = 64,
  SIDE_PX = 200,
};

typedef struct opts {
  const char *model, *planner;
  benchcluster_flags cf;
  int clients[BENCH_MAX_LIST], n_clients;
  int per_client, rss_requests;
  double speeds[LOCALCLUSTER_MAX_AGENTS];
  int n_speeds;
  bench_list rss_models;
  bool json;
} opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: throughput [flags]\n"
          "  Concurrent clients against a 4-agent emulated cluster: requests/s, p50/p99\n"
          "  latency, agents' busy fraction, against the devices' capacity; then the\n"
          "  peak RSS of an agent serving each zoo model.\n"
          "  --model M            model of the throughput phases (default vgg16c)\n"
          "  --clients LIST       concurrent clients per phase (default 1,4,16)\n"
          "  --per-client N       requests each client sends (default %d)\n"
          "  --planner P          scheduler --planner (default: its own)\n"
          "  --speeds LIST        agent speeds (default 0.1,0.1,0.15,0.15)\n"
          "  --link-mbps M --link-rtt-ms R   (default 100 and 1)\n"
          "  --rss-models LIST    models for the memory table (default: all eight;\n"
          "                       'none' skips it)\n"
          "  --rss-requests N     requests before reading VmHWM (default %d)\n"
          "  --dir DIR            databases and logs (default: a new /tmp/edgedi-throughput-*)\n"
          "  --scheduler-bin P --agent-bin P   the programs (default: found)\n"
          "  --json               JSON lines instead of tables\n",
          DEFAULT_PER_CLIENT, DEFAULT_RSS_REQUESTS);
}

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.model = "vgg16c", .per_client = DEFAULT_PER_CLIENT,
              .rss_requests = DEFAULT_RSS_REQUESTS,
              .cf = {.link_mbps = 100, .link_rtt_ms = 1},
              .clients = {1, 4, 16}, .n_clients = 3,
              .speeds = {0.1, 0.1, 0.15, 0.15}, .n_speeds = 4};
  bench_all_models(&o->rss_models);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bench_flag common = bench_common_flag(a, &o->json, usage);
    if (common == BENCH_FLAG_HELP) return -1;
    if (common == BENCH_FLAG_TAKEN) continue;
    bool ok = v != NULL;
    err e = {0};
    if (!ok) {
    } else if (strcmp(a, "--model") == 0) {
      bench_list l;
      ok = bench_parse_list(v, &l, &e) == ERR_OK && l.n == 1 &&
           bench_check_models(&l, &e) == ERR_OK;
      o->model = v;
    } else if (strcmp(a, "--clients") == 0) {
      double c[BENCH_MAX_LIST];
      ok = bench_parse_doubles(v, 1, MAX_CLIENTS, c, BENCH_MAX_LIST, &o->n_clients, &e) ==
           ERR_OK;
      for (int k = 0; ok && k < o->n_clients; k++) o->clients[k] = (int)c[k];
    } else if (strcmp(a, "--per-client") == 0) {
      ok = flags_parse_int(v, 1, 10000, &o->per_client);
    } else if (strcmp(a, "--rss-requests") == 0) {
      ok = flags_parse_int(v, 1, 1000, &o->rss_requests);
    } else if (strcmp(a, "--planner") == 0) {
      o->planner = v;
    } else if (strcmp(a, "--speeds") == 0) {
      ok = bench_parse_doubles(v, 0.001, 64, o->speeds, LOCALCLUSTER_MAX_AGENTS, &o->n_speeds,
                               &e) == ERR_OK;
    } else if (benchcluster_flag(a, v, &o->cf, &ok)) {
    } else if (strcmp(a, "--rss-models") == 0) {
      if (strcmp(v, "none") == 0) o->rss_models.n = 0;
      else ok = bench_parse_list(v, &o->rss_models, &e) == ERR_OK &&
                bench_check_models(&o->rss_models, &e) == ERR_OK;
    } else {
      ok = false;
    }
    if (!ok) return bench_bad_flag("throughput", a, &e, usage);
    i++;
  }
  return 0;
}

/* ---- one phase: C clients at once ----------------------------------------- */

typedef struct client_job {
  const char *address;
  const Edgedi__V1__InferRequest *req;
  int n;
  double *latency_ms;                        /* n, client-side */
  double compute_ms[LOCALCLUSTER_MAX_AGENTS]; /* summed over the replies, per dev-i */
  err e;
  err_code rc;
} client_job;

static void *client_main(void *arg) {
  client_job *j = arg;
  rpc_channel *ch = NULL;
  j->rc = client_connect(j->address, &ch, &j->e);
  for (int i = 0; i < j->n && j->rc == ERR_OK; i++) {
    Edgedi__V1__InferReply *r = NULL;
    double t0 = stats_now_ms();
    if (client_infer(ch, j->req, &r, &j->e) != GRPC_STATUS_OK) {
      j->rc = j->e.code ? j->e.code : ERR_UNAVAILABLE;
      break;
    }
    j->latency_ms[i] = stats_now_ms() - t0;
    for (size_t d = 0; d < r->n_devices; d++) {
      int k;
      if (sscanf(r->devices[d]->device, "dev-%d", &k) == 1 && k >= 0 &&
          k < LOCALCLUSTER_MAX_AGENTS)
        j->compute_ms[k] += r->devices[d]->compute_ms;
    }
    rpc_free((ProtobufCMessage *)r);
  }
  rpc_channel_destroy(ch);
  return NULL;
}

typedef struct phase {
  int clients, requests;
  double wall_ms, rps, p50_ms, p99_ms;
  double busy[LOCALCLUSTER_MAX_AGENTS];
  double busy_mean, busy_min, busy_max;
} phase;

static err_code run_phase(benchcluster *bc, const Edgedi__V1__InferRequest *req, int clients,
                          int per_client, int n_agents, phase *ph, err *e) {
  *ph = (phase){.clients = clients, .requests = clients * per_client};
  client_job jobs[MAX_CLIENTS];
  pthread_t th[MAX_CLIENTS];
  double *lat = calloc((size_t)ph->requests, sizeof *lat);
  if (!lat) return err_set(e, ERR_NOMEM, "out of memory");
  double t0 = stats_now_ms();
  int started = 0;
  for (int c = 0; c < clients; c++) {
    jobs[c] = (client_job){.address = localcluster_address(bc->lc), .req = req,
                           .n = per_client, .latency_ms = lat + (size_t)c * per_client};
    if (pthread_create(&th[c], NULL, client_main, &jobs[c]) != 0) break;
    started++;
  }
  for (int c = 0; c < started; c++) pthread_join(th[c], NULL);
  ph->wall_ms = stats_now_ms() - t0;
  err_code rc = started == clients ? ERR_OK : err_set(e, ERR_INTERNAL, "pthread_create failed");
  for (int c = 0; c < started && rc == ERR_OK; c++)
    if (jobs[c].rc != ERR_OK) rc = err_set(e, jobs[c].rc, "client %d: %s", c, jobs[c].e.msg);
  if (rc == ERR_OK) {
    ph->rps = ph->requests / (ph->wall_ms / 1e3);
    ph->p99_ms = bench_percentile(lat, ph->requests, 99);
    ph->p50_ms = bench_percentile(lat, ph->requests, 50);
    double sum = 0;
    for (int k = 0; k < n_agents; k++) {
      double busy = 0;
      for (int c = 0; c < clients; c++) busy += jobs[c].compute_ms[k];
      ph->busy[k] = busy / ph->wall_ms;
      sum += ph->busy[k];
    }
    bench_min_max(ph->busy, n_agents, &ph->busy_min, &ph->busy_max);
    ph->busy_mean = sum / n_agents;
  }
  free(lat);
  return rc;
}

/* ---- memory: one cluster per model ------------------------------------------ */

typedef struct rss_row {
  const char *model;
  double agent_max_mb, agent_min_mb, scheduler_mb;
} rss_row;

static err_code measure_rss(const opts *o, const char *dir, const char *model,
                            const Edgedi__V1__Image *img, rss_row *row, err *e) {
  *row = (rss_row){.model = model};
  benchcluster_config cfg = {.n_agents = o->n_speeds, .link_mbps = o->cf.link_mbps,
                             .link_rtt_ms = o->cf.link_rtt_ms, .planner = o->planner,
                             .models = model, .dir = dir, .scheduler_bin = o->cf.scheduler_bin,
                             .agent_bin = o->cf.agent_bin, .agents_release_memory = true};
  memcpy(cfg.speeds, o->speeds, sizeof cfg.speeds);
  benchcluster bc;
  err_code rc = benchcluster_start(&cfg, &bc, e);
  if (rc != ERR_OK) return rc;
  Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
  req.protocol_version = EDGEDI_PROTOCOL_VERSION;
  req.model = (char *)model;
  req.image = (Edgedi__V1__Image *)img;
  workload_result w;
  rc = workload_run(bc.ch, &req, 0, o->rss_requests, procs_stop_requested, &w, e);
  if (rc == ERR_OK) {
    workload_free(&w);
    row->agent_min_mb = INFINITY;
    for (int i = 0; i < o->n_speeds; i++) {
      double mb = bench_peak_rss_mb(localcluster_agent_process(bc.lc, i)->pid);
      row->agent_max_mb = fmax(row->agent_max_mb, mb);
      row->agent_min_mb = fmin(row->agent_min_mb, mb);
    }
    row->scheduler_mb = bench_peak_rss_mb(localcluster_scheduler(bc.lc)->pid);
  }
  benchcluster_stop(&bc);
  return rc == ERR_OK ? ERR_OK : err_wrap(e, "memory of %s", model);
}

/* ---- main -------------------------------------------------------------------- */

int main(int argc, char **argv) {
  opts o;
  int prc = parse(argc, argv, &o);
  if (prc) return prc < 0 ? 0 : prc;
  procs_catch_stop_signals();
  err e = {0};
  char dir[512];
  Edgedi__V1__Image img;
  uint8_t *px = NULL;
  baseline base = {0};
  if (bench_work_dir(o.cf.dir, "throughput", dir, sizeof dir, &e) != ERR_OK ||
      workload_sample_image(SIDE_PX, SIDE_PX, &img, &px, &e) != ERR_OK ||
      baseline_measure(o.model, &img, BASELINE_RUNS, true, &base, &e) != ERR_OK) {
    fprintf(stderr, "throughput: %s\n", e.msg);
    free(px);
    return 1;
  }
  double sum_speed = 0;
  for (int i = 0; i < o.n_speeds; i++) sum_speed += o.speeds[i];
  double capacity_rps = sum_speed / base.cpu_ms * 1e3;
  if (!o.json)
    printf("throughput: %s on %d emulated agents (sum of speeds %.2f), %.0f Mbit/s, %.1f ms; "
           "%s whole here: %.2f ms thread CPU, so capacity %.2f requests/s\n",
           o.model, o.n_speeds, sum_speed, o.cf.link_mbps, o.cf.link_rtt_ms, o.model, base.cpu_ms,
           capacity_rps);

  benchcluster_config cfg = {.n_agents = o.n_speeds, .link_mbps = o.cf.link_mbps,
                             .link_rtt_ms = o.cf.link_rtt_ms, .planner = o.planner,
                             .models = o.model, .dir = dir, .scheduler_bin = o.cf.scheduler_bin,
                             .agent_bin = o.cf.agent_bin};
  memcpy(cfg.speeds, o.speeds, sizeof cfg.speeds);
  benchcluster bc;
  int status = 0;
  if (benchcluster_start(&cfg, &bc, &e) != ERR_OK) {
    fprintf(stderr, "throughput: %s\n", e.msg);
    status = 1;
  }
  Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
  req.protocol_version = EDGEDI_PROTOCOL_VERSION;
  req.model = (char *)o.model;
  req.image = &img;
  req.planner = (char *)(o.planner ? o.planner : "");
  workload_result warm;
  if (status == 0) {
    if (workload_run(bc.ch, &req, 0, WARMUP_REQUESTS, procs_stop_requested, &warm, &e) != ERR_OK) {
      fprintf(stderr, "throughput: warm-up: %s\n", e.msg);
      status = 1;
    } else {
      workload_free(&warm);
    }
  }
  if (status == 0 && !o.json)
    printf("%7s %8s %9s %9s %10s %10s %9s %10s %14s %8s\n", "clients", "requests", "wall_s",
           "req/s", "p50_ms", "p99_ms", "busy", "(min..max)", "capacity_rps", "ratio");
  double before_ms = base.cpu_ms;
  for (int i = 0; status == 0 && i < o.n_clients; i++) {
    phase ph;
    if (run_phase(&bc, &req, o.clients[i], o.per_client, o.n_speeds, &ph, &e) != ERR_OK) {
      fprintf(stderr, "throughput: %d clients: %s\n", o.clients[i], e.msg);
      status = 1;
      break;
    }
    /* The capacity of each phase from the model's whole-run CPU measured
     * just before and just after it: this VM's speed drifts over minutes,
     * and a process's by where its memory landed (cli/baseline.h). */
    double after_ms = before_ms;
    err ignored = {0}; /* keeps the last figure */
    baseline_measure_cpu(o.model, &img, BASELINE_RUNS, true, &after_ms, &ignored);
    double model_cpu_ms = (before_ms + after_ms) / 2;
    capacity_rps = sum_speed / model_cpu_ms * 1e3;
    before_ms = after_ms;
    if (o.json) {
      printf("{\"bench\":\"throughput\",\"model\":\"%s\",\"clients\":%d,\"requests\":%d,"
             "\"wall_s\":%.3f,\"rps\":%.3f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"busy_mean\":%.3f,"
             "\"busy_min\":%.3f,\"busy_max\":%.3f,\"capacity_rps\":%.3f,\"ratio\":%.3f,"
             "\"sum_speed\":%.3f,\"model_cpu_ms\":%.3f}\n",
             o.model, ph.clients, ph.requests, ph.wall_ms / 1e3, ph.rps, ph.p50_ms, ph.p99_ms,
             ph.busy_mean, ph.busy_min, ph.busy_max, capacity_rps, ph.rps / capacity_rps,
             sum_speed, model_cpu_ms);
    } else {
      char spread[32];
      snprintf(spread, sizeof spread, "(%.2f..%.2f)", ph.busy_min, ph.busy_max);
      printf("%7d %8d %9.2f %9.2f %10.1f %10.1f %9.2f %10s %14.2f %8.2f\n", ph.clients,
             ph.requests, ph.wall_ms / 1e3, ph.rps, ph.p50_ms, ph.p99_ms, ph.busy_mean, spread,
             capacity_rps, ph.rps / capacity_rps);
    }
    fflush(stdout);
  }
  benchcluster_stop(&bc);

  if (status == 0 && o.rss_models.n > 0 && !o.json)
    printf("\nagent memory: peak RSS (VmHWM) after %d requests, one cluster per model\n"
           "%-10s %14s %14s %14s\n", o.rss_requests, "model", "agent_max_MB", "agent_min_MB",
           "scheduler_MB");
  for (int i = 0; status == 0 && i < o.rss_models.n; i++) {
    rss_row row;
    if (measure_rss(&o, dir, o.rss_models.item[i], &img, &row, &e) != ERR_OK) {
      fprintf(stderr, "throughput: %s\n", e.msg);
      status = 1;
      break;
    }
    if (o.json)
      printf("{\"bench\":\"agent_rss\",\"model\":\"%s\",\"agent_max_mb\":%.1f,"
             "\"agent_min_mb\":%.1f,\"scheduler_mb\":%.1f}\n",
             row.model, row.agent_max_mb, row.agent_min_mb, row.scheduler_mb);
    else
      printf("%-10s %14.1f %14.1f %14.1f\n", row.model, row.agent_max_mb, row.agent_min_mb,
             row.scheduler_mb);
    fflush(stdout);
  }
  baseline_free(&base);
  free(px);
  return status;
}

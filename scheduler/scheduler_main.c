/* scheduler_main.c — edgedi-scheduler: flags around the Scheduler service
 * (service.h). The only file of the scheduler that prints or exits.
 *
 * stdout's first line is "edgedi-scheduler listening on HOST:PORT" (the
 * bound port, so --listen 127.0.0.1:0 can be used by scripts and tests);
 * everything else goes to stderr. SIGINT or SIGTERM stop it cleanly:
 * requests in flight fail with a status, agents' streams end, devices are
 * left down in the database, exit 0. A start-up failure (a file that is
 * not a database, a port in use, a bad flag) prints why and exits 1.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler/infer.h"
#include "scheduler/plan.h"
#include "scheduler/service.h"
#include "storage/store.h"

enum {
  MAX_MESSAGE_MB = 2047, /* gRPC's limits are ints of bytes */
  MAX_HEAD_THREADS = 256,
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: edgedi-scheduler [flags]\n"
          "  --listen ADDR        serve here (default %s; port 0: any free port)\n"
          "  --db PATH            SQLite database (default ./%s)\n"
          "  --planner NAME       default planner (default %s; known:",
          SERVICE_DEFAULT_LISTEN, STORE_DEFAULT_PATH, INFER_DEFAULT_PLANNER);
  for (const char *const *n = plan_names(); *n; n++) fprintf(f, " %s", *n);
  fprintf(f,
          ")\n"
          "  --deadline-ms N      per-request deadline when a request names none "
          "(default %d)\n"
          "  --max-message-mb N   largest message either way (default 64)\n"
          "  --models LIST        zoo models to load at start, comma-separated, or "
          "'none' (default %s)\n"
          "  --threads N          threads of the head executor (default 1)\n"
          "  --flops-only         price work by FLOPs alone, not by each layer's\n"
          "                       cost measured when a model loads\n"
          "  --split-always       split every request, even when as many are in\n"
          "                       flight as agents are up (default: then a request\n"
          "                       naming no planner runs whole on one agent)\n"
          "  --reuse-gain G       a request reuses a recent plan (its strips are\n"
          "                       prepared on the agents) unless a fresh one is\n"
          "                       predicted faster by more than G (default %.2f)\n"
          "  --no-reuse           every request runs its fresh plan\n"
          "  --fe-sums WHEN       'early' (default): agents send each feature\n"
          "                       enhancement's sums as soon as they are known and\n"
          "                       compute on while they travel; 'late': at the FE\n"
          "  --straggler-factor F re-issue an agent's work to another agent (or\n"
          "                       re-plan without it) when it is F times later than\n"
          "                       predicted (default 0: off)\n"
          "  --on-loss P          when a request loses an agent: 'stand-in' (another\n"
          "                       agent takes over its work, the rest goes on),\n"
          "                       'restart' (a new plan without it), 'auto' (default:\n"
          "                       a stand-in when predicted to finish sooner)\n"
          "  --stuck-floor-ms N   an agent silent this long (and %d x the predicted\n"
          "                       time) is marked down (default %d)\n",
          INFER_DEFAULT_DEADLINE_MS, SERVICE_DEFAULT_MODELS, PLAN_RECALL_DEFAULT_GAIN,
          INFER_STUCK_FACTOR,
          INFER_STUCK_FLOOR_MS);
}

/* Agent events, one line each on stderr with the time of day. */
static void log_line(void *ctx, const char *msg) {
  (void)ctx;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  localtime_r(&ts.tv_sec, &tm);
  fprintf(stderr, "%02d:%02d:%02d.%03ld edgedi-scheduler: %s\n", tm.tm_hour, tm.tm_min,
          tm.tm_sec, ts.tv_nsec / 1000000, msg);
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
  char *end = NULL;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || x < lo || x > hi) {
    fprintf(stderr, "edgedi-scheduler: %s needs a number from %d to %d, got '%s'\n", flag, lo,
            hi, v ? v : "");
    return -1;
  }
  *out = (int)x;
  return 0;
}

static int parse_factor(const char *flag, const char *v, double *out) {
  char *end = NULL;
  errno = 0;
  double x = v ? strtod(v, &end) : 0;
  if (!v || !*v || *end || errno || !(x >= 0) || x > 1e6) {
    fprintf(stderr, "edgedi-scheduler: %s needs a number >= 0, got '%s'\n", flag, v ? v : "");
    return -1;
  }
  *out = x;
  return 0;
}

static int parse_flags(int argc, char **argv, service_config *cfg) {
  int mb = 0;
  cfg->models = SERVICE_DEFAULT_MODELS;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    bool *flag = strcmp(a, "--flops-only") == 0     ? &cfg->flops_only
                 : strcmp(a, "--split-always") == 0 ? &cfg->split_always
                 : strcmp(a, "--no-reuse") == 0     ? &cfg->no_reuse
                                                    : NULL;
    if (flag) { /* the flags without a value */
      *flag = true;
      continue;
    }
    int rc = 0;
    if (strcmp(a, "--listen") == 0) cfg->listen = v;
    else if (strcmp(a, "--db") == 0) cfg->db_path = v;
    else if (strcmp(a, "--planner") == 0) cfg->planner = v;
    else if (strcmp(a, "--fe-sums") == 0) {
      if (v && (strcmp(v, "early") == 0 || strcmp(v, "late") == 0))
        cfg->fe_late = strcmp(v, "late") == 0;
      else {
        fprintf(stderr, "edgedi-scheduler: --fe-sums needs 'early' or 'late', got '%s'\n",
                v ? v : "");
        rc = -1;
      }
    }
    else if (strcmp(a, "--models") == 0) cfg->models = v && strcmp(v, "none") == 0 ? "" : v;
    else if (strcmp(a, "--deadline-ms") == 0)
      rc = parse_int(a, v, 1, INFER_MAX_DEADLINE_MS, &cfg->deadline_ms);
    else if (strcmp(a, "--max-message-mb") == 0) rc = parse_int(a, v, 1, MAX_MESSAGE_MB, &mb);
    else if (strcmp(a, "--threads") == 0)
      rc = parse_int(a, v, 1, MAX_HEAD_THREADS, &cfg->head_threads);
    else if (strcmp(a, "--straggler-factor") == 0)
      rc = parse_factor(a, v, &cfg->straggler_factor);
    else if (strcmp(a, "--on-loss") == 0) {
      if (!v || !infer_on_loss_parse(v, &cfg->on_loss)) {
        fprintf(stderr, "edgedi-scheduler: --on-loss takes auto, restart or stand-in, not '%s'\n",
                v ? v : "");
        rc = -1;
      }
    }
    else if (strcmp(a, "--reuse-gain") == 0) {
      rc = parse_factor(a, v, &cfg->reuse_gain);
      if (!rc && cfg->reuse_gain == 0) cfg->reuse_gain = 1e-12; /* 0 in the config: default */
    }
    else if (strcmp(a, "--stuck-floor-ms") == 0)
      rc = parse_int(a, v, 1, INFER_MAX_DEADLINE_MS, &cfg->stuck_floor_ms);
    else {
      fprintf(stderr, "edgedi-scheduler: unknown flag '%s'\n", a);
      usage(stderr);
      return -1;
    }
    if (rc) return -1;
    if (!v) {
      fprintf(stderr, "edgedi-scheduler: %s needs a value\n", a);
      return -1;
    }
    i++;
  }
  if (mb) cfg->max_message_bytes = mb << 20;
  return 0;
}

int main(int argc, char **argv) {
  service_config cfg = {.log = log_line};
  if (parse_flags(argc, argv, &cfg) != 0) return 1;
  /* Every thread the service starts inherits this mask, so the signals
   * reach only sigwait() below. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);

  service *s = NULL;
  err e = {0};
  if (service_create(&cfg, &s, &e) != ERR_OK) {
    fprintf(stderr, "edgedi-scheduler: %s\n", e.msg);
    return 1;
  }
  const char *listen = cfg.listen ? cfg.listen : SERVICE_DEFAULT_LISTEN;
  const char *colon = strrchr(listen, ':');
  int host_len = colon ? (int)(colon - listen) : (int)strlen(listen);
  printf("edgedi-scheduler listening on %.*s:%d\n", host_len, listen, service_port(s));
  fflush(stdout);
  fprintf(stderr, "edgedi-scheduler: database %s; %s; planner %s\n",
          cfg.db_path ? cfg.db_path : STORE_DEFAULT_PATH, service_start_note(s),
          cfg.planner ? cfg.planner : INFER_DEFAULT_PLANNER);

  int sig = 0;
  sigwait(&stop, &sig);
  fprintf(stderr, "edgedi-scheduler: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  service_destroy(s);
  return 0;
}

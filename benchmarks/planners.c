/* planners.c — the four planners side by side without running anything:
 * how long each takes to plan one request, and the makespan it predicts.
 * (Their measured latencies on the same cluster points come from
 * //benchmarks:cluster --planners exact,heuristic,proportional,equal;
 * scripts/bench.sh runs both.)
 *
 * For every zoo model (fused, 3x200x200) and 2 to 16 devices, the median
 * wall time of each planner's call, with the model's planning tables
 * cached (plan_prepare once, passed in plan_options: what a scheduler that
 * keeps them next to the model pays per request) and without (the planner
 * builds them for the call). One line per point, or JSON lines with
 * --json. The cluster: the demo's boards (Pi 3B+ and Pi 4B alternating,
 * 100 and 66.7 ms per GFLOP, 1 ms per job, 100 Mbit/s, 1 ms round trip).
 *
 *   bazel run -c opt //benchmarks:planners -- [--json] [--reps N]
 *       [--models a,b,...] [--max-devices N]
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/err.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/stats.h"
#include "runtime/zoo.h"
#include "scheduler/plan.h"

enum {
  DEFAULT_REPS = 21,       /* calls per point with cached tables */
  UNCACHED_REPS = 5,       /* and without (each builds the tables) */
  DEFAULT_MAX_DEVICES = 16,
  MIN_DEVICES = 2,
};

static double now_us(void) { return stats_now_ms() * 1e3; }

static void demo_boards(plan_device *d, int n) {
  for (int i = 0; i < n; i++) {
    memset(&d[i], 0, sizeof d[i]);
    snprintf(d[i].name, sizeof d[i].name, "board%d", i);
    d[i].ms_per_gflop = i % 2 ? 66.7 : 100;
    d[i].fixed_ms = 1;
    d[i].bandwidth_mbps = 100;
    d[i].rtt_ms = 1;
  }
}

static bool wanted(const char *list, const char *name) {
  if (!list) return true;
  size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)); p += n)
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
  return false;
}

/* Median microseconds of `reps` calls; the last plan's prediction. */
static int time_planner(plan_fn fn, const model *m, const plan_device *d, int n,
                        const plan_options *o, int reps, double *us, double *predicted,
                        err *e) {
  double t[DEFAULT_REPS * 4];
  if (reps > (int)(sizeof t / sizeof t[0])) reps = (int)(sizeof t / sizeof t[0]);
  for (int r = 0; r < reps; r++) {
    plan p;
    double a = now_us();
    err_code rc = fn(m, d, n, o, &p, e);
    t[r] = now_us() - a;
    if (rc != ERR_OK) return rc;
    *predicted = p.predicted_ms;
    plan_free(&p);
  }
  *us = stats_median(t, reps);
  return ERR_OK;
}

int main(int argc, char **argv) {
  bool json = false;
  int reps = DEFAULT_REPS, max_devices = DEFAULT_MAX_DEVICES;
  const char *models = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--models") == 0 && i + 1 < argc) {
      models = argv[++i];
    } else if (strcmp(argv[i], "--max-devices") == 0 && i + 1 < argc) {
      max_devices = atoi(argv[++i]);
    } else {
      fprintf(stderr,
              "usage: planners [--json] [--reps N] [--models a,b,...] "
              "[--max-devices N]\n");
      return 2;
    }
  }
  if (reps < 1 || reps > DEFAULT_REPS * 4 || max_devices < MIN_DEVICES ||
      max_devices > PLAN_MAX_DEVICES) {
    fprintf(stderr, "planners: --reps 1..%d, --max-devices %d..%d\n", DEFAULT_REPS * 4,
            MIN_DEVICES, PLAN_MAX_DEVICES);
    return 2;
  }
  if (!json)
    printf("# median solve time per planner call; cluster: demo boards (100/66.7 ms/GFLOP, "
           "1 ms/job, 100 Mbit/s, 1 ms RTT); models fused at 3x200x200\n");
  for (const char *const *name = zoo_names(); *name; name++) {
    if (!wanted(models, *name)) continue;
    zoo_options zo = zoo_defaults();
    model *raw = NULL, *m = NULL;
    plan_tables *tables = NULL;
    err e = {0};
    if (zoo_build(*name, &zo, &raw, &e) != ERR_OK || fuse_model(raw, &m, &e) != ERR_OK) {
      fprintf(stderr, "planners: %s: %s\n", *name, e.msg);
      return 1;
    }
    model_destroy(raw);
    double prep[UNCACHED_REPS];
    for (int r = 0; r < UNCACHED_REPS; r++) {
      plan_tables_destroy(tables);
      double a = now_us();
      if (plan_prepare(m, &tables, &e) != ERR_OK) {
        fprintf(stderr, "planners: %s: %s\n", *name, e.msg);
        return 1;
      }
      prep[r] = now_us() - a;
    }
    double prep_us = stats_median(prep, UNCACHED_REPS);
    if (json)
      printf("{\"model\":\"%s\",\"tables_prepare_us\":%.1f,\"tables_bytes\":%zu}\n", *name,
             prep_us, plan_tables_bytes(tables));
    else
      printf("%-10s plan_prepare %8.1f us, tables %zu kB\n", *name, prep_us,
             plan_tables_bytes(tables) / 1024);
    for (int n = MIN_DEVICES; n <= max_devices; n++) {
      plan_device d[PLAN_MAX_DEVICES];
      demo_boards(d, n);
      for (const char *const *pn = plan_names(); *pn; pn++)
        for (int cached = 1; cached >= 0; cached--) {
          plan_options o = plan_default_options();
          o.tables = cached ? tables : NULL;
          double us = 0, predicted = 0;
          if (time_planner(plan_find(*pn), m, d, n, &o, cached ? reps : UNCACHED_REPS, &us,
                           &predicted, &e) != ERR_OK) {
            fprintf(stderr, "planners: %s with %s: %s\n", *name, *pn, e.msg);
            return 1;
          }
          if (json)
            printf("{\"model\":\"%s\",\"devices\":%d,\"planner\":\"%s\",\"tables\":\"%s\","
                   "\"median_us\":%.1f,\"predicted_ms\":%.3f}\n",
                   *name, n, *pn, cached ? "cached" : "built", us, predicted);
          else
            printf("%-10s %2d devices %-12s tables %-6s median %8.1f us  predicted %9.3f ms\n",
                   *name, n, *pn, cached ? "cached" : "built", us, predicted);
        }
      fflush(stdout);
    }
    plan_tables_destroy(tables);
    model_destroy(m);
  }
  return 0;
}

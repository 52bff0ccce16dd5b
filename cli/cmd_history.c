/* cmd_history.c — `edgedi history`: the newest requests, from the
 * scheduler's SQLite database (storage/store.h; no SQL here).
 *
 * It reads the file directly, not through the scheduler: history is there
 * whether or not a scheduler runs, and WAL lets it read while one writes.
 * A path with no file is an error rather than a new empty database.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/flags.h"
#include "cli/cli.h"
#include "storage/store.h"
#include "runtime/stats.h"

enum {
  HISTORY_DEFAULT_LIMIT = 20,
  HISTORY_MAX_LIMIT = 1000000,
  HISTORY_MAX_MODELS = 32, /* summarized per model */
};

static void usage(FILE *f) {
  fprintf(f,
          "usage: edgedi history [--db PATH] [--limit N] [--json]\n"
          "  The newest requests in the scheduler's database, newest first: model,\n"
          "  planner, status (and why a request failed), measured against predicted\n"
          "  latency, and bytes moved over the links against what gathering whole\n"
          "  feature maps at every segment would have moved; then a summary per model.\n"
          "  --db PATH    the database (default ./%s, the scheduler's default)\n"
          "  --limit N    how many requests (default %d)\n"
          "  --json       one JSON object per request\n",
          STORE_DEFAULT_PATH, HISTORY_DEFAULT_LIMIT);
}

static const char *status_word(store_request_status s) {
  return s == STORE_REQUEST_OK ? "ok" : s == STORE_REQUEST_ERROR ? "error" : "running";
}

static void print_json(const store_request_row *r) {
  printf("{\"id\":%lld,\"model\":", (long long)r->id);
  cli_json_string(stdout, r->model);
  printf(",\"planner\":");
  cli_json_string(stdout, r->planner);
  printf(",\"devices\":");
  cli_json_string(stdout, r->devices);
  printf(",\"status\":\"%s\",\"created_at\":%lld,\"finished_at\":%lld",
         status_word(r->status), (long long)r->created_at, (long long)r->finished_at);
  if (r->has_plan)
    printf(",\"predicted_ms\":%.3f,\"bytes_gather_all\":%llu", r->predicted_ms,
           (unsigned long long)r->bytes_gather_all);
  printf(",\"measured_ms\":%.3f,\"bytes_moved\":%llu,\"error\":", r->measured_ms,
         (unsigned long long)r->bytes_moved);
  cli_json_string(stdout, r->error);
  printf(",\"recovery\":");
  cli_json_string(stdout, r->recovery);
  printf("}\n");
}

static void print_row(const store_request_row *r) {
  char when[32] = "?", moved[24] = "-", all[24] = "-", pred[24] = "-", ratio[16] = "-";
  time_t t = (time_t)r->created_at;
  struct tm tm;
  if (localtime_r(&t, &tm)) strftime(when, sizeof when, "%m-%d %H:%M:%S", &tm);
  if (r->status != STORE_REQUEST_RUNNING) cli_bytes(r->bytes_moved, moved, sizeof moved);
  if (r->has_plan) {
    snprintf(pred, sizeof pred, "%.1f", r->predicted_ms);
    if (r->bytes_gather_all) cli_bytes(r->bytes_gather_all, all, sizeof all);
    if (r->bytes_gather_all && r->bytes_moved)
      snprintf(ratio, sizeof ratio, "%.1fx",
               (double)r->bytes_gather_all / (double)r->bytes_moved);
  }
  printf("%6lld  %-14s  %-12s %-12s %-7s %10.1f %10s %10s %10s %6s  %s\n", (long long)r->id,
         when, r->model, r->planner, status_word(r->status), r->measured_ms, pred, moved, all,
         ratio, r->status == STORE_REQUEST_ERROR ? r->error : r->devices);
  if (r->recovery[0]) printf("%6s  recovered: %s\n", "", r->recovery);
}

typedef struct model_sum {
  const char *model;
  int ok, failed;
  double *lat;
  unsigned long long moved, gather;
} model_sum;

static void print_summary(const store_request_row *v, size_t n) {
  model_sum sums[HISTORY_MAX_MODELS];
  int ns = 0;
  double *lat = calloc(n ? n : 1, sizeof *lat);
  if (!lat) return;
  for (size_t i = 0; i < n; i++) {
    int k = 0;
    while (k < ns && strcmp(sums[k].model, v[i].model) != 0) k++;
    if (k == ns) {
      if (ns == HISTORY_MAX_MODELS) continue;
      sums[ns++] = (model_sum){.model = v[i].model};
    }
    model_sum *s = &sums[k];
    if (v[i].status == STORE_REQUEST_ERROR) s->failed++;
    if (v[i].status != STORE_REQUEST_OK) continue;
    s->ok++;
    s->moved += v[i].bytes_moved;
    s->gather += v[i].bytes_gather_all;
  }
  /* Each model's latencies in a slice of its own, for its median. */
  size_t used = 0;
  for (int k = 0; k < ns; k++) {
    sums[k].lat = lat + used;
    int m = 0;
    for (size_t i = 0; i < n && m < sums[k].ok; i++)
      if (v[i].status == STORE_REQUEST_OK && strcmp(v[i].model, sums[k].model) == 0)
        sums[k].lat[m++] = v[i].measured_ms;
    used += (size_t)m;
  }
  printf("\n%-12s %4s %6s %10s %14s %14s %8s\n", "model", "ok", "failed", "median_ms",
         "moved/request", "gather_all/req", "ratio");
  for (int k = 0; k < ns; k++) {
    model_sum *s = &sums[k];
    char med[16] = "-", mv[24] = "-", ga[24] = "-", ratio[16] = "-";
    if (s->ok) {
      snprintf(med, sizeof med, "%.1f", stats_median(s->lat, s->ok));
      cli_bytes(s->moved / (unsigned long long)s->ok, mv, sizeof mv);
      if (s->gather) cli_bytes(s->gather / (unsigned long long)s->ok, ga, sizeof ga);
      if (s->gather && s->moved)
        snprintf(ratio, sizeof ratio, "%.1fx", (double)s->gather / (double)s->moved);
    }
    printf("%-12s %4d %6d %10s %14s %14s %8s\n", s->model, s->ok, s->failed, med, mv, ga,
           ratio);
  }
  free(lat);
}

int cmd_history(int argc, char **argv) {
  const char *db = STORE_DEFAULT_PATH;
  int limit = HISTORY_DEFAULT_LIMIT;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (cli_is_help(a)) {
      usage(stdout);
      return CLI_EXIT_OK;
    }
    if (strcmp(a, "--db") == 0 && v) db = argv[++i];
    else if (strcmp(a, "--limit") == 0 && v) {
      if (!flags_parse_int(v, 1, HISTORY_MAX_LIMIT, &limit)) {
        fprintf(stderr, "edgedi history: --limit needs 1 to %d, not '%s'\n", HISTORY_MAX_LIMIT,
                v);
        return CLI_EXIT_USAGE;
      }
      i++;
    } else if (strcmp(a, "--json") == 0) json = true;
    else {
      fprintf(stderr, "edgedi history: unknown flag or missing value: %s\n", a);
      usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  err e = {0};
  store *st = NULL;
  store_request_row *rows = NULL;
  size_t n = 0;
  if (store_open_existing(db, &st, &e) != ERR_OK ||
      store_request_recent(st, (size_t)limit, &rows, &n, &e) != ERR_OK) {
    fprintf(stderr, "edgedi history: %s (the scheduler's --db)\n", e.msg);
    store_close(st);
    return CLI_EXIT_FAIL;
  }
  store_close(st);
  if (json) {
    for (size_t i = 0; i < n; i++) print_json(&rows[i]);
  } else if (n == 0) {
    printf("no requests in %s yet\n", db);
  } else {
    printf("%6s  %-14s  %-12s %-12s %-7s %10s %10s %10s %10s %6s  %s\n", "id", "started",
           "model", "planner", "status", "ms", "pred_ms", "moved", "gather_all", "ratio",
           "devices / error");
    for (size_t i = 0; i < n; i++) print_row(&rows[i]);
    print_summary(rows, n);
  }
  store_free(rows);
  return CLI_EXIT_OK;
}

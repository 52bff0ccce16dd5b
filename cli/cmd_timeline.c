/* cmd_timeline.c — `edgedi timeline`: when each device computed during one
 * request and how much of it each was busy, from the scheduler's database
 * (tile_spans; storage/store.h, cli/timeline.h). Like `edgedi history` it
 * reads the file, not the scheduler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/flags.h"
#include "cli/timeline.h"
#include "storage/store.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: edgedi timeline [REQUEST_ID] [--db PATH] [--width N] [--json]\n"
          "  When each device computed during a request, as its agent measured it, and\n"
          "  how much of the request each was busy: one row per device, a column per\n"
          "  slice of the request's time showing the segment computed (0-9, a-z) or\n"
          "  '.' for waiting (for rows, feature-enhancement scales, other devices).\n"
          "  Without REQUEST_ID: the newest request that has a timeline.\n"
          "  --db PATH    the database (default ./%s, the scheduler's default)\n"
          "  --width N    columns of the time axis (default %d)\n"
          "  --json       one JSON object per device: busy time and its stretches\n",
          STORE_DEFAULT_PATH, TIMELINE_DEFAULT_WIDTH);
}

static int show(store *st, int64_t id, int width, bool json, const char *db) {
  err e = {0};
  timeline_request t;
  int status = CLI_EXIT_FAIL;
  if (timeline_load(st, id, &t, &e) != ERR_OK) {
    fprintf(stderr, "edgedi timeline: %s: %s\n", db, e.msg);
  } else if (t.n == 0) {
    fprintf(stderr, "edgedi timeline: request %lld has no timeline in %s (%s)\n", (long long)id,
            db, t.row.status == STORE_REQUEST_RUNNING ? "still running, or cut off"
                                                      : "recorded before tile_spans, or no tiles");
  } else if (json) {
    timeline_write_json(t.spans, t.n, t.devs, t.n_devs, t.total_ms, stdout);
    status = CLI_EXIT_OK;
  } else {
    const store_request_row *r = &t.row;
    printf("request %lld: %s, planner %s, %s, %.1f ms (predicted %.1f)\n", (long long)id,
           r->model, r->planner, r->status == STORE_REQUEST_OK ? "ok" : "error", r->measured_ms,
           r->predicted_ms);
    if (r->recovery[0]) printf("recovered: %s\n", r->recovery);
    if (timeline_write(t.spans, t.n, t.devs, t.n_devs, t.total_ms, width, "", stdout, &e) !=
        ERR_OK) {
      fprintf(stderr, "edgedi timeline: %s\n", e.msg);
    } else {
      printf("digits: the segment computed; '.': waiting\n");
      status = CLI_EXIT_OK;
    }
  }
  timeline_request_free(&t);
  return status;
}

int cmd_timeline(int argc, char **argv) {
  const char *db = STORE_DEFAULT_PATH;
  int width = TIMELINE_DEFAULT_WIDTH;
  long long id = 0;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (cli_is_help(a)) {
      usage(stdout);
      return CLI_EXIT_OK;
    }
    if (strcmp(a, "--db") == 0 && v) {
      db = argv[++i];
    } else if (strcmp(a, "--width") == 0 && v) {
      if (!flags_parse_int(v, TIMELINE_MIN_WIDTH, TIMELINE_MAX_WIDTH, &width)) {
        fprintf(stderr, "edgedi timeline: --width needs %d to %d, not '%s'\n",
                TIMELINE_MIN_WIDTH, TIMELINE_MAX_WIDTH, v);
        return CLI_EXIT_USAGE;
      }
      i++;
    } else if (strcmp(a, "--json") == 0) {
      json = true;
    } else if (a[0] != '-' && id == 0) {
      char *end = NULL;
      id = strtoll(a, &end, 10);
      if (!end || *end || id <= 0) {
        fprintf(stderr, "edgedi timeline: a request id is a positive number, not '%s'\n", a);
        return CLI_EXIT_USAGE;
      }
    } else {
      fprintf(stderr, "edgedi timeline: unknown flag or missing value: %s\n", a);
      usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  err e = {0};
  store *st = NULL;
  if (store_open_existing(db, &st, &e) != ERR_OK) {
    fprintf(stderr, "edgedi timeline: %s (the scheduler's --db)\n", e.msg);
    return CLI_EXIT_FAIL;
  }
  int status;
  if (id == 0) {
    int64_t newest = 0;
    err_code rc = store_request_newest_with_spans(st, &newest, &e);
    if (rc != ERR_OK || newest == 0) {
      if (rc != ERR_OK) fprintf(stderr, "edgedi timeline: %s: %s\n", db, e.msg);
      else fprintf(stderr, "edgedi timeline: no request in %s has a timeline yet\n", db);
      store_close(st);
      return CLI_EXIT_FAIL;
    }
    id = newest;
  }
  status = show(st, (int64_t)id, width, json, db);
  store_close(st);
  return status;
}

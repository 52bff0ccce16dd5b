/* benchutil.c — helpers of the benchmark programs (contract in benchutil.h). */
#include "cli/flags.h"
#include "benchmarks/benchutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "runtime/stats.h"
#include "runtime/zoo.h"

err_code bench_parse_list(const char *s, bench_list *l, err *e) {
  l->n = 0;
  const char *p = s ? s : "";
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == 0) return err_set(e, ERR_INVALID, "'%s': an empty item", s ? s : "");
    if (len >= BENCH_ITEM_BYTES) return err_set(e, ERR_INVALID, "'%.*s': too long", (int)len, p);
    if (l->n == BENCH_MAX_LIST)
      return err_set(e, ERR_INVALID, "'%s': more than %d items", s, BENCH_MAX_LIST);
    memcpy(l->item[l->n], p, len);
    l->item[l->n++][len] = 0;
    if (!comma) return ERR_OK;
    p = comma + 1;
  }
}

err_code bench_parse_doubles(const char *s, double lo, double hi, double *v, int max, int *n,
                             err *e) {
  bench_list l;
  err_code rc = bench_parse_list(s, &l, e);
  if (rc != ERR_OK) return rc;
  if (l.n > max) return err_set(e, ERR_INVALID, "'%s': more than %d values", s, max);
  for (int i = 0; i < l.n; i++)
    if (!flags_parse_double(l.item[i], lo, hi, &v[i]))
      return err_set(e, ERR_INVALID, "'%s': %g to %g, not '%s'", s, lo, hi, l.item[i]);
  *n = l.n;
  return ERR_OK;
}

err_code bench_check_models(const bench_list *l, err *e) {
  for (int i = 0; i < l->n; i++) {
    bool known = false;
    for (const char *const *z = zoo_names(); *z && !known; z++) known = strcmp(*z, l->item[i]) == 0;
    if (!known) return err_set(e, ERR_NOT_FOUND, "'%s' is not a zoo model", l->item[i]);
  }
  return ERR_OK;
}

void bench_all_models(bench_list *l) {
  l->n = 0;
  for (const char *const *z = zoo_names(); *z && l->n < BENCH_MAX_LIST; z++)
    snprintf(l->item[l->n++], BENCH_ITEM_BYTES, "%s", *z);
}

bool bench_is_compact(const char *model) { return zoo_default_ratio(model) > 0; }

double bench_percentile(double *v, int n, double p) {
  if (n <= 0) return 0;
  stats_median(v, n); /* sorts v */
  int rank = (int)ceil(p / 100.0 * n);
  rank = rank < 1 ? 1 : rank > n ? n : rank;
  return v[rank - 1];
}

void bench_min_max(const double *v, int n, double *min, double *max) {
  *min = n > 0 ? v[0] : 0;
  *max = *min;
  for (int i = 1; i < n; i++) {
    *min = fmin(*min, v[i]);
    *max = fmax(*max, v[i]);
  }
}

err_code bench_work_dir(const char *given, const char *what, char *out, size_t len, err *e) {
  if (given) {
    if (mkdir(given, 0755) != 0 && errno != EEXIST)
      return err_set(e, ERR_IO, "mkdir %s: %s", given, strerror(errno));
    snprintf(out, len, "%s", given);
    return ERR_OK;
  }
  snprintf(out, len, "/tmp/edgedi-%s-XXXXXX", what);
  if (!mkdtemp(out)) return err_set(e, ERR_IO, "mkdtemp %s: %s", out, strerror(errno));
  return ERR_OK;
}

double bench_peak_rss_mb(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  double mb = -1;
  while (fgets(line, sizeof line, f)) {
    long kb;
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) {
      mb = (double)kb / 1024.0;
      break;
    }
  }
  fclose(f);
  return mb;
}

bench_flag bench_common_flag(const char *a, bool *json, void (*usage)(FILE *)) {
  if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
    usage(stdout);
    return BENCH_FLAG_HELP;
  }
  if (strcmp(a, "--json") != 0) return BENCH_FLAG_OTHER;
  *json = true;
  return BENCH_FLAG_TAKEN;
}

int bench_bad_flag(const char *prog, const char *flag, const err *why, void (*usage)(FILE *)) {
  fprintf(stderr, "%s: unknown flag, missing or bad value: %s%s%s\n", prog, flag,
          why && why->msg[0] ? ": " : "", why ? why->msg : "");
  usage(stderr);
  return BENCH_EXIT_USAGE;
}

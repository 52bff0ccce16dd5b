/* benchutil.h — what the benchmark programs share and EdgeDI's libraries do
 * not offer: flag values, name lists, percentiles, thread CPU time, a work
 * directory. Medians, the clock and the exactness metric are runtime/stats.h.
 * Nothing prints.
 */
#ifndef EDGEDI_BENCH_BENCHUTIL_H
#define EDGEDI_BENCH_BENCHUTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>

#include "runtime/err.h"

enum {
  BENCH_MAX_LIST = 32,     /* items of a comma-separated flag value */
  BENCH_ITEM_BYTES = 64,
  BENCH_EXIT_USAGE = 2,
};

/* A comma-separated flag value, cut into items. */
typedef struct bench_list {
  int n;
  char item[BENCH_MAX_LIST][BENCH_ITEM_BYTES];
} bench_list;

/* The flags every benchmark takes: --help or -h prints the usage on stdout
 * (BENCH_FLAG_HELP: the caller returns), --json sets *json
 * (BENCH_FLAG_TAKEN); BENCH_FLAG_OTHER for any other flag. */
typedef enum { BENCH_FLAG_OTHER, BENCH_FLAG_TAKEN, BENCH_FLAG_HELP } bench_flag;
bench_flag bench_common_flag(const char *a, bool *json, void (*usage)(FILE *));

/* Prints "PROG: unknown flag, missing or bad value: FLAG[: why]" and the
 * usage on stderr; returns BENCH_EXIT_USAGE. */
int bench_bad_flag(const char *prog, const char *flag, const err *why, void (*usage)(FILE *));
/* "a,b,c" into l; ERR_INVALID for an empty item, too many or too long. */
err_code bench_parse_list(const char *s, bench_list *l, err *e);
/* The same, each item a number in [lo, hi]. */
err_code bench_parse_doubles(const char *s, double lo, double hi, double *v, int max, int *n,
                             err *e);
/* Every item of l is a zoo model name; ERR_NOT_FOUND naming the first that
 * is not. */
err_code bench_check_models(const bench_list *l, err *e);
/* Every zoo model, in the zoo's order. */
void bench_all_models(bench_list *l);
bool bench_is_compact(const char *model);

/* The p-th percentile (0..100, nearest rank) of v[0..n); sorts v. 0 for n <= 0. */
double bench_percentile(double *v, int n, double p);
/* min and max of v[0..n). */
void bench_min_max(const double *v, int n, double *min, double *max);

/* dir if given (created if missing), else a new /tmp/edgedi-<what>-XXXXXX. */
err_code bench_work_dir(const char *given, const char *what, char *out, size_t len, err *e);

/* VmHWM of a running process in MB (its peak resident set); < 0 when it
 * cannot be read. */
double bench_peak_rss_mb(int pid);

#endif

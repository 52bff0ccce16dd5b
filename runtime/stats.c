/* stats.c — see stats.h. */
#include "runtime/stats.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

double stats_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

double stats_thread_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double stats_median(double *v, int n) {
  if (n <= 0) return 0;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double stats_max_rel_diff(const float *got, const float *want, size_t n) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < n; i++) {
    max_diff = fmax(max_diff, fabs((double)got[i] - (double)want[i]));
    max_ref = fmax(max_ref, fabs((double)want[i]));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

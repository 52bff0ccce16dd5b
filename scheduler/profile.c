/* profile.c — fitting compute and link models, tile transfer estimates
 * (contract in profile.h). */
#include "scheduler/profile.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double profile_median(double *v, size_t n) {
  if (n == 0) return 0;
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static bool usable(const profile_point *p) {
  return isfinite(p->gflop) && isfinite(p->ms) && p->gflop > 0 && p->ms > 0;
}

static double rel_rms(const profile_point *pts, size_t n, double a, double b) {
  double sum = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!usable(&pts[i])) continue;
    double r = (a * pts[i].gflop + b - pts[i].ms) / pts[i].ms;
    sum += r * r;
    k++;
  }
  return k ? sqrt(sum / (double)k) : 0;
}

err_code profile_fit_linear(const profile_point *pts, size_t n, profile_fit *out,
                            err *e) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0, gmin = INFINITY, gmax = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!usable(&pts[i])) continue;
    double x = pts[i].gflop, y = pts[i].ms;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
    gmin = fmin(gmin, x);
    gmax = fmax(gmax, x);
    k++;
  }
  if (k == 0)
    return err_set(e, ERR_INVALID,
                   "profile: none of the %zu samples has a positive size and time", n);
  double a, b;
  double denom = (double)k * sxx - sx * sx;
  /* Sizes that barely differ cannot separate a from b. */
  bool one_size = gmax - gmin <= 1e-9 * gmax || !(fabs(denom) > 0);
  if (one_size) {
    a = sxy / sxx;
    b = 0;
  } else {
    a = ((double)k * sxy - sx * sy) / denom;
    b = (sy - a * sx) / (double)k;
    if (b < 0) { /* noise at the small end: refit through the origin */
      a = sxy / sxx;
      b = 0;
    }
  }
  if (!(a > 0) || !isfinite(a) || !isfinite(b))
    return err_set(e, ERR_INVALID,
                   "profile: %zu samples from %.4g to %.4g GFLOP give %.4g ms/GFLOP "
                   "(time does not grow with work); cannot model this device",
                   k, gmin, gmax, a);
  out->ms_per_gflop = a;
  out->fixed_ms = b;
  out->fit_error = rel_rms(pts, n, a, b);
  out->samples = k;
  return ERR_OK;
}

err_code profile_link(double small_rtt_ms, double large_rtt_ms, size_t bytes,
                      double *rtt_ms, double *bandwidth_mbps, err *e) {
  if (!isfinite(small_rtt_ms) || !isfinite(large_rtt_ms) || small_rtt_ms < 0 ||
      large_rtt_ms < 0 || bytes == 0)
    return err_set(e, ERR_INVALID, "profile: link round trips %g and %g ms for %zu bytes",
                   small_rtt_ms, large_rtt_ms, bytes);
  double bits = 2.0 * 8.0 * (double)bytes; /* out and back */
  double delta_ms = large_rtt_ms - small_rtt_ms;
  double mbps = PROFILE_MAX_BANDWIDTH_MBPS;
  if (delta_ms > 0) mbps = fmin(mbps, bits / (delta_ms * 1e3)); /* bits/ms = kbit/s */
  *rtt_ms = small_rtt_ms;
  *bandwidth_mbps = mbps;
  return ERR_OK;
}

double profile_tile_transfer_ms(double sent_ms, double result_ms,
                                double compute_ms, double wait_ms,
                                double queued_ms) {
  double t = (result_ms - sent_ms) - compute_ms - wait_ms - queued_ms;
  return t > 0 && isfinite(t) ? t : 0;
}

/* refit.c — weighted least squares with recency, change detection and
 * outlier trimming for compute models; a supported-or-kept bandwidth fit
 * for links (contract in refit.h). */
#include "scheduler/refit.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/profile.h"

/* Floors of refit_change's denominators: below them a difference is
 * measured in absolute units (ms), not as a ratio of almost nothing (a
 * loopback round trip that goes from 0.2 to 0.4 ms has not doubled in any
 * sense that matters to a plan). */
#define REFIT_CHANGE_FLOOR_MS 1.0

static double weight_of(size_t age) { return exp2(-(double)age / REFIT_HALF_LIFE_TILES); }

/* A weighted line y = a x + b through the kept points. `origin_if_negative`:
 * b < 0 is refitted with b = 0. Points of one x cannot give a slope and an
 * intercept: b is then `fixed_b` and only a is fitted. Returns false when
 * the weights are all zero. */
static bool wls(const double *x, const double *y, const double *w, const bool *keep,
                size_t n, bool origin_if_negative, double fixed_b, double *a, double *b) {
  double sw = 0, sx = 0, sy = 0, sxx0 = 0;
  for (size_t i = 0; i < n; i++) {
    if (!keep[i]) continue;
    sw += w[i];
    sx += w[i] * x[i];
    sy += w[i] * y[i];
    sxx0 += w[i] * x[i] * x[i];
  }
  if (!(sw > 0)) return false;
  double xm = sx / sw, ym = sy / sw, sxx = 0, sxy = 0;
  for (size_t i = 0; i < n; i++) {
    if (!keep[i]) continue;
    sxx += w[i] * (x[i] - xm) * (x[i] - xm);
    sxy += w[i] * (x[i] - xm) * (y[i] - ym);
  }
  /* Sizes that barely differ cannot separate a from b. */
  if (!(sxx > 1e-12 * sxx0)) {
    double bb = fixed_b > 0 ? fixed_b : 0, num = 0;
    for (size_t i = 0; i < n; i++)
      if (keep[i]) num += w[i] * x[i] * (y[i] - bb);
    *a = sxx0 > 0 ? num / sxx0 : NAN;
    *b = bb;
    return true;
  }
  *a = sxy / sxx;
  *b = ym - *a * xm;
  if (origin_if_negative && *b < 0) {
    double num = 0;
    for (size_t i = 0; i < n; i++)
      if (keep[i]) num += w[i] * x[i] * y[i];
    *a = num / sxx0;
    *b = 0;
  }
  return true;
}

/* The compute line (refit.h, step 2): least squares plus
 * REFIT_B_PRIOR_WEIGHT (b - beta a)^2, i.e. the prior's fixed cost in
 * GFLOP of work, beta = b / a, which a change of speed leaves as it is.
 * The normal equations:
 *   [Sxx + K beta^2   Sx - K beta] [a]   [Sxy]
 *   [Sx - K beta      S + K      ] [b] = [Sy ]
 * beta < 0: no prior, plain least squares (with fixed_b for one size). */
static bool compute_line(const double *x, const double *y, const double *w, const bool *keep,
                         size_t n, double beta, double fixed_b, double *a, double *b) {
  if (!(beta >= 0) || !isfinite(beta))
    return wls(x, y, w, keep, n, true, fixed_b, a, b);
  double s = 0, sx = 0, sxx = 0, sy = 0, sxy = 0, k = REFIT_B_PRIOR_WEIGHT;
  for (size_t i = 0; i < n; i++) {
    if (!keep[i]) continue;
    s += w[i];
    sx += w[i] * x[i];
    sxx += w[i] * x[i] * x[i];
    sy += w[i] * y[i];
    sxy += w[i] * x[i] * y[i];
  }
  if (!(s > 0)) return false;
  double m00 = sxx + k * beta * beta, m01 = sx - k * beta, m11 = s + k;
  double det = m00 * m11 - m01 * m01;
  if (!(det > 1e-12 * m00 * m11)) return wls(x, y, w, keep, n, true, fixed_b, a, b);
  *a = (sxy * m11 - m01 * sy) / det;
  *b = (m00 * sy - m01 * sxy) / det;
  if (*b < 0) {
    *a = sxx > 0 ? sxy / sxx : NAN;
    *b = 0;
  }
  return true;
}

static int cmp_double(const void *p, const void *q) {
  double x = *(const double *)p, y = *(const double *)q;
  return (x > y) - (x < y);
}

/* The median of the kept |r[i]|; scratch has room for n. */
static double median_abs(const double *r, const bool *keep, size_t n, double *scratch) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (keep[i]) scratch[k++] = fabs(r[i]);
  if (k == 0) return 0;
  qsort(scratch, k, sizeof *scratch, cmp_double);
  return k % 2 ? scratch[k / 2] : 0.5 * (scratch[k / 2 - 1] + scratch[k / 2]);
}

static size_t count_kept(const bool *keep, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += keep[i];
  return k;
}

/* Scratch of one fit: the points, their weights, what is kept, residuals. */
typedef struct fit_buf {
  double *x, *y, *w, *r, *tmp;
  bool *keep;
} fit_buf;

static bool buf_alloc(fit_buf *f, size_t n) {
  size_t m = n ? n : 1;
  f->x = malloc(m * sizeof *f->x);
  f->y = malloc(m * sizeof *f->y);
  f->w = malloc(m * sizeof *f->w);
  f->r = malloc(m * sizeof *f->r);
  f->tmp = malloc(m * sizeof *f->tmp);
  f->keep = calloc(m, sizeof *f->keep);
  return f->x && f->y && f->w && f->r && f->tmp && f->keep;
}

static void buf_free(fit_buf *f) {
  free(f->x);
  free(f->y);
  free(f->w);
  free(f->r);
  free(f->tmp);
  free(f->keep);
}

/* Relative residuals (y - line) / line of the kept points. */
static void rel_residuals(fit_buf *f, size_t n, double a, double b) {
  for (size_t i = 0; i < n; i++) {
    double p = a * f->x[i] + b;
    f->r[i] = p > 0 ? (f->y[i] - p) / p : INFINITY;
  }
}

/* Sum of squared relative residuals of the kept points `mask` under their
 * own unweighted line (the shape of the data, not its recency). */
static double split_cost(const fit_buf *f, const bool *mask, size_t n, double prior_b,
                         double *ones, double *pa, double *pb) {
  for (size_t i = 0; i < n; i++) ones[i] = 1;
  double a, b;
  if (!wls(f->x, f->y, ones, mask, n, true, prior_b, &a, &b)) return INFINITY;
  double c = 0;
  for (size_t i = 0; i < n; i++) {
    if (!mask[i]) continue;
    double r = (f->y[i] - (a * f->x[i] + b)) / f->y[i];
    c += r * r;
  }
  *pa = a;
  *pb = b;
  return c;
}

/* The number m of newest kept samples after a change of speed, or 0: the
 * split of the window into its newest m (at least REFIT_CHANGE_MIN_TILES)
 * and the rest (at least 2) with the least total squared relative
 * residual, when it explains the data better than one line by
 * REFIT_CHANGE_GAIN and the two lines' totals over the newest m differ by
 * more than REFIT_CHANGE_REL (totals, because a small tile's time is
 * mostly b and hardly moves with the speed). */
static size_t change_at(const fit_buf *f, size_t n, double prior_b) {
  bool *mask = calloc(n ? n : 1, sizeof *mask);
  double *ones = malloc((n ? n : 1) * sizeof *ones);
  size_t best_m = 0;
  if (!mask || !ones) goto done;
  double a1, b1;
  memcpy(mask, f->keep, n * sizeof *mask);
  double single = split_cost(f, mask, n, prior_b, ones, &a1, &b1);
  size_t usable = count_kept(f->keep, n);
  double best = INFINITY, best_new_a = 0, best_new_b = 0, best_old_a = 0, best_old_b = 0;
  for (size_t m = REFIT_CHANGE_MIN_TILES; m + 2 <= usable; m++) {
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) mask[i] = f->keep[i] && ++seen <= m;
    double an, bn, ao, bo;
    double c = split_cost(f, mask, n, prior_b, ones, &an, &bn);
    for (size_t i = 0; i < n; i++) mask[i] = f->keep[i] && !mask[i];
    c += split_cost(f, mask, n, prior_b, ones, &ao, &bo);
    if (c < best) {
      best = c;
      best_m = m;
      best_new_a = an, best_new_b = bn, best_old_a = ao, best_old_b = bo;
    }
  }
  if (best_m && best < REFIT_CHANGE_GAIN * single) {
    double sum_new = 0, sum_old = 0;
    size_t seen = 0;
    for (size_t i = 0; i < n && seen < best_m; i++) {
      if (!f->keep[i]) continue;
      seen++;
      sum_new += best_new_a * f->x[i] + best_new_b;
      sum_old += best_old_a * f->x[i] + best_old_b;
    }
    if (!(sum_old > 0) || !(fabs(sum_new / sum_old - 1) > REFIT_CHANGE_REL)) best_m = 0;
  } else {
    best_m = 0;
  }
done:
  free(mask);
  free(ones);
  return best_m;
}

/* Weighted median of v[0..k) with weights w (both reordered). */
static double weighted_median(double *v, double *w, size_t k) {
  for (size_t i = 1; i < k; i++) /* insertion sort: k is a window's share */
    for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
      double t = v[j]; v[j] = v[j - 1]; v[j - 1] = t;
      t = w[j]; w[j] = w[j - 1]; w[j - 1] = t;
    }
  double total = 0, run = 0;
  for (size_t i = 0; i < k; i++) total += w[i];
  for (size_t i = 0; i < k; i++) {
    run += w[i];
    if (run >= total / 2) return v[i];
  }
  return k ? v[k - 1] : NAN;
}

/* Sets each usable point's GFLOP to x0 times its range's cost factor c_k
 * (refit.h, "Ranges"): the weighted median of (ms - b) / GFLOP over the
 * range's points in `est`, relative to their average over the ranges
 * weighted by range_gflop. With no prior b, b and the factors depend on
 * each other (one line through unscaled points of different rates has a
 * meaningless intercept), so they are found in turn REFIT_RANGE_ROUNDS
 * times from b = 0. Ranges without a point in `est`, or that give no
 * positive slope, keep factor 1. Returns the number of ranges with a
 * factor (0, and every x left at x0, when fewer than two). */
static size_t scale_by_range(fit_buf *f, const double *x0, const bool *est,
                             const refit_sample *s, size_t n, double prior_b,
                             const double *range_gflop, size_t n_ranges) {
  double *slope = calloc(n_ranges ? n_ranges : 1, sizeof *slope),
         *v = malloc((n ? n : 1) * sizeof *v), *w = malloc((n ? n : 1) * sizeof *w);
  size_t found = 0;
  memcpy(f->x, x0, n * sizeof *x0);
  if (!slope || !v || !w) goto done;
  double b = prior_b > 0 ? prior_b : 0;
  int rounds = prior_b >= 0 ? 1 : REFIT_RANGE_ROUNDS;
  for (int round = 0; round < rounds; round++) {
    double num = 0, den = 0;
    found = 0;
    for (size_t k = 0; k < n_ranges; k++) {
      size_t m = 0;
      for (size_t i = 0; i < n; i++)
        if (est[i] && s[i].range == (int)k) {
          v[m] = (f->y[i] - b) / x0[i];
          w[m++] = f->w[i];
        }
      slope[k] = m ? weighted_median(v, w, m) : NAN;
      if (!(slope[k] > 0) || !isfinite(slope[k]) || !(range_gflop[k] > 0)) {
        slope[k] = NAN;
        continue;
      }
      num += range_gflop[k] * slope[k];
      den += range_gflop[k];
      found++;
    }
    if (found < 2 || !(num > 0)) { /* one range is no structure to correct */
      found = 0;
      memcpy(f->x, x0, n * sizeof *x0);
      goto done;
    }
    for (size_t i = 0; i < n; i++) {
      int k = s[i].range;
      bool scaled = f->keep[i] && k >= 0 && (size_t)k < n_ranges && isfinite(slope[k]);
      f->x[i] = scaled ? x0[i] * slope[k] / (num / den) : x0[i];
    }
    double a1, b1;
    if (!wls(f->x, f->y, f->w, est, n, true, prior_b, &a1, &b1)) break;
    b = b1;
  }
done:
  free(slope);
  free(v);
  free(w);
  return found;
}

static double slope_se(const fit_buf *f, size_t n, double c0, double c1);

/* Whether the kept points have sizes that differ (wls's test). */
static bool has_spread(const fit_buf *f, size_t n) {
  double sw = 0, sx = 0, sxx0 = 0, sxx = 0;
  for (size_t i = 0; i < n; i++)
    if (f->keep[i]) {
      sw += f->w[i];
      sx += f->w[i] * f->x[i];
      sxx0 += f->w[i] * f->x[i] * f->x[i];
    }
  if (!(sw > 0)) return false;
  for (size_t i = 0; i < n; i++)
    if (f->keep[i]) sxx += f->w[i] * (f->x[i] - sx / sw) * (f->x[i] - sx / sw);
  return sxx > 1e-12 * sxx0;
}

err_code refit_compute(const refit_sample *s, size_t n, double prior_ms_per_gflop,
                       double prior_fixed_ms, refit_compute_fit *out, err *e) {
  return refit_compute_ranges(s, n, prior_ms_per_gflop, prior_fixed_ms, NULL, 0, out, e);
}

err_code refit_compute_ranges(const refit_sample *s, size_t n, double prior_ms_per_gflop,
                              double prior_fixed_ms,
                              const double *range_gflop, size_t n_ranges,
                              refit_compute_fit *out, err *e) {
  if (!out || (!s && n) || (n_ranges && !range_gflop))
    return err_set(e, ERR_INVALID, "refit: no samples or output");
  fit_buf f;
  if (!buf_alloc(&f, n)) {
    buf_free(&f);
    return err_set(e, ERR_NOMEM, "refit: out of memory");
  }
  size_t usable = 0, repeats = 0, first_runs = 0;
  for (size_t i = 0; i < n; i++) {
    f.x[i] = s[i].gflop;
    f.y[i] = s[i].compute_ms;
    f.w[i] = weight_of(i); /* age counts every tile, usable or not */
    f.keep[i] = isfinite(f.x[i]) && isfinite(f.y[i]) && f.x[i] > 0 && f.y[i] > 0;
    repeats += f.keep[i] && !s[i].first_run;
  }
  /* Step 0: first runs out when the repeat runs can carry the fit. */
  double gmin = INFINITY, gmax = 0;
  for (size_t i = 0; i < n; i++) {
    if (f.keep[i] && s[i].first_run && repeats >= REFIT_MIN_TILES) {
      f.keep[i] = false;
      first_runs++;
    }
    if (f.keep[i]) {
      usable++;
      gmin = fmin(gmin, f.x[i]);
      gmax = fmax(gmax, f.x[i]);
    }
  }
  err_code rc = ERR_OK;
  double a = NAN, b = NAN;
  size_t dropped = 0;
  int changed = 0, total_only = 0;
  if (usable < REFIT_MIN_TILES) {
    rc = err_set(e, ERR_INVALID, "refit: %zu usable tiles of %zu, %d needed", usable, n,
                 REFIT_MIN_TILES);
    goto done;
  }
  bool *est = calloc(n ? n : 1, sizeof *est), *fresh = calloc(n ? n : 1, sizeof *fresh);
  double *x0 = malloc((n ? n : 1) * sizeof *x0);
  if (!est || !fresh || !x0) {
    free(est);
    free(fresh);
    free(x0);
    rc = err_set(e, ERR_NOMEM, "refit: out of memory");
    goto done;
  }
  memcpy(x0, f.x, n * sizeof *x0);
  size_t ranges = 0;
  /* The prior's fixed cost in GFLOP of work: a change of speed keeps it. */
  double beta = prior_ms_per_gflop > 0 && prior_fixed_ms >= 0
                    ? prior_fixed_ms / prior_ms_per_gflop
                    : -1;
  if (n_ranges)
    ranges = scale_by_range(&f, x0, f.keep, s, n, prior_fixed_ms, range_gflop, n_ranges);
  compute_line(f.x, f.y, f.w, f.keep, n, beta, prior_fixed_ms, &a, &b);
  /* A change: the window is better told as two lines, the newest m
   * samples on one and the older on another, than as one (change_at). */
  size_t m = change_at(&f, n, prior_fixed_ms);
  bool scaled = false;
  if (m) {
    /* fresh: the newest m kept samples; est: the older ones. */
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
      fresh[i] = f.keep[i] && ++seen <= m;
      est[i] = f.keep[i] && !fresh[i];
    }
    /* Range factors are the model's, not the speed's: from the larger
     * regime alone, not a mixture of two speeds. */
    if (ranges)
      ranges = scale_by_range(&f, x0, m * 2 > usable ? fresh : est, s, n, prior_fixed_ms,
                              range_gflop, n_ranges);
    double ao = a, bo = b, sum_y = 0, sum_p = 0;
    compute_line(f.x, f.y, f.w, est, n, beta, prior_fixed_ms, &ao, &bo);
    for (size_t i = 0; i < n; i++) {
      if (!fresh[i]) continue;
      sum_y += f.y[i];
      sum_p += ao * f.x[i] + bo;
    }
    for (size_t i = 0; i < n; i++) {
      dropped += est[i];
      f.keep[i] = fresh[i];
    }
    changed = 1;
    if (m < REFIT_CHANGE_REFIT_TILES && sum_p > 0 && ao > 0 && bo >= 0) {
      /* Too few for a line of their own: a change of speed stretches
       * every job alike, so the old line, scaled. */
      a = ao * sum_y / sum_p;
      b = bo * sum_y / sum_p;
      scaled = true;
    } else {
      compute_line(f.x, f.y, f.w, f.keep, n, beta, prior_fixed_ms, &a, &b);
    }
  }
  free(est);
  free(fresh);
  free(x0);
  /* Outliers: a few rounds, since the first line leans towards them. */
  for (int round = 0; !scaled && round < REFIT_OUTLIER_ROUNDS; round++) {
    rel_residuals(&f, n, a, b);
    double med = median_abs(f.r, f.keep, n, f.tmp);
    double limit = fmax(REFIT_OUTLIER_FACTOR * med, REFIT_OUTLIER_MIN_REL);
    size_t would_drop = 0;
    for (size_t i = 0; i < n; i++) would_drop += f.keep[i] && !(fabs(f.r[i]) <= limit);
    if (!would_drop || count_kept(f.keep, n) - would_drop < REFIT_MIN_TILES) break;
    for (size_t i = 0; i < n; i++)
      if (f.keep[i] && !(fabs(f.r[i]) <= limit)) f.keep[i] = false;
    dropped += would_drop;
    compute_line(f.x, f.y, f.w, f.keep, n, beta, prior_fixed_ms, &a, &b);
  }
  /* What the tiles say on their own, without the prior: a slope that
   * falls beyond noise is nonsense; one within noise of 0 (tiles that are
   * mostly b: tiny strips of a tiny model) tells nothing about a, and
   * would make the device look nearly infinitely fast. Then, with a prior,
   * only the total is fitted: y = a (x + beta). (A scaled line was checked
   * before the change; one size fits a with b given.) */
  if (!scaled && has_spread(&f, n)) {
    double pa, pb;
    wls(f.x, f.y, f.w, f.keep, n, false, prior_fixed_ms, &pa, &pb);
    double se = slope_se(&f, n, pb, pa);
    if (!(pa > -REFIT_COMPUTE_MIN_T * se)) {
      a = pa; /* reported below */
      b = pb;
    } else if (!(pa >= REFIT_COMPUTE_MIN_T * se)) {
      if (!(beta >= 0)) {
        rc = err_set(e, ERR_INVALID,
                     "refit: %zu tiles from %.4g to %.4g GFLOP give %.4g +- %.2g ms/GFLOP: "
                     "their work explains too little of their time to tell a",
                     count_kept(f.keep, n), gmin, gmax, pa, se);
        goto done;
      }
      double num = 0, den = 0;
      for (size_t i = 0; i < n; i++)
        if (f.keep[i]) {
          num += f.w[i] * (f.x[i] + beta) * f.y[i];
          den += f.w[i] * (f.x[i] + beta) * (f.x[i] + beta);
        }
      a = den > 0 ? num / den : NAN;
      b = beta * a;
      total_only = 1;
    }
  }
  if (!(a > 0) || !isfinite(a) || !(b >= 0) || !isfinite(b)) {
    rc = err_set(e, ERR_INVALID,
                 "refit: %zu tiles from %.4g to %.4g GFLOP give %.4g ms/GFLOP + %.4g ms "
                 "(time does not grow with work)",
                 usable, gmin, gmax, a, b);
    goto done;
  }
  rel_residuals(&f, n, a, b);
  double sw = 0, sr = 0;
  for (size_t i = 0; i < n; i++) {
    if (!f.keep[i]) continue;
    sw += f.w[i];
    sr += f.w[i] * f.r[i] * f.r[i];
  }
  *out = (refit_compute_fit){.ms_per_gflop = a,
                             .fixed_ms = b,
                             .fit_error = sw > 0 ? sqrt(sr / sw) : 0,
                             .samples = count_kept(f.keep, n),
                             .dropped = dropped,
                             .first_runs = first_runs,
                             .changed = changed,
                             .ranges = ranges,
                             .total_only = total_only};
done:
  buf_free(&f);
  return rc;
}

/* The slope's standard error of a weighted line (weights as importance,
 * not inverse variances): Var(c1) = s2 * sum w^2 (x - xm)^2 / Sxx^2, with
 * s2 the weighted residual variance corrected to the effective sample
 * size. INFINITY when there are too few effective samples to tell. */
static double slope_se(const fit_buf *f, size_t n, double c0, double c1) {
  double sw = 0, sw2 = 0, sx = 0;
  for (size_t i = 0; i < n; i++) {
    if (!f->keep[i]) continue;
    sw += f->w[i];
    sw2 += f->w[i] * f->w[i];
    sx += f->w[i] * f->x[i];
  }
  if (!(sw > 0)) return INFINITY;
  double xm = sx / sw, n_eff = sw * sw / sw2, sxx = 0, sxx2 = 0, srr = 0;
  for (size_t i = 0; i < n; i++) {
    if (!f->keep[i]) continue;
    double dx = f->x[i] - xm, r = f->y[i] - (c0 + c1 * f->x[i]);
    sxx += f->w[i] * dx * dx;
    sxx2 += f->w[i] * f->w[i] * dx * dx;
    srr += f->w[i] * r * r;
  }
  if (!(n_eff > 2) || !(sxx > 0)) return INFINITY;
  double s2 = srr / sw * n_eff / (n_eff - 2);
  return sqrt(s2 * sxx2) / sxx;
}

err_code refit_link(const refit_sample *s, size_t n, double prior_mbps, refit_link_fit *out,
                    err *e) {
  if (!out || (!s && n)) return err_set(e, ERR_INVALID, "refit: no samples or output");
  if (!(prior_mbps > 0) || !isfinite(prior_mbps))
    return err_set(e, ERR_INVALID, "refit: prior bandwidth %g Mbit/s", prior_mbps);
  fit_buf f;
  if (!buf_alloc(&f, n)) {
    buf_free(&f);
    return err_set(e, ERR_NOMEM, "refit: out of memory");
  }
  size_t usable = 0;
  for (size_t i = 0; i < n; i++) {
    f.x[i] = s[i].bytes;
    f.y[i] = s[i].transfer_ms;
    f.w[i] = weight_of(i);
    f.keep[i] = isfinite(f.x[i]) && isfinite(f.y[i]) && f.x[i] >= 0 && f.y[i] >= 0;
    usable += f.keep[i];
  }
  err_code rc = ERR_OK;
  if (usable < REFIT_MIN_TILES) {
    rc = err_set(e, ERR_INVALID, "refit: %zu usable transfers of %zu, %d needed", usable, n,
                 REFIT_MIN_TILES);
    goto done;
  }
  double c0, c1;
  wls(f.x, f.y, f.w, f.keep, n, false, 0, &c1, &c0);
  /* Outliers (a first tile paying its executor's preparation), once. */
  for (size_t i = 0; i < n; i++) f.r[i] = f.y[i] - (c0 + c1 * f.x[i]);
  double limit = fmax(REFIT_OUTLIER_FACTOR * median_abs(f.r, f.keep, n, f.tmp),
                      REFIT_LINK_OUTLIER_MIN_MS);
  size_t would_drop = 0;
  for (size_t i = 0; i < n; i++) would_drop += f.keep[i] && !(fabs(f.r[i]) <= limit);
  if (would_drop && usable - would_drop >= REFIT_MIN_TILES) {
    for (size_t i = 0; i < n; i++)
      if (f.keep[i] && !(fabs(f.r[i]) <= limit)) f.keep[i] = false;
    wls(f.x, f.y, f.w, f.keep, n, false, 0, &c1, &c0);
  }
  double se = slope_se(&f, n, c0, c1);
  bool fitted = c1 > 0 && isfinite(c1) && c1 >= REFIT_LINK_MIN_T * se;
  double mbps = prior_mbps, rtt;
  if (fitted) {
    /* ms per byte = 8 bits / (Mbit/s * 1e3 bits per ms) */
    mbps = fmin(8.0 / (1e3 * c1), PROFILE_MAX_BANDWIDTH_MBPS);
    rtt = c0;
  } else {
    double sw = 0, sr = 0, per_byte = 8.0 / (1e3 * prior_mbps);
    for (size_t i = 0; i < n; i++) {
      if (!f.keep[i]) continue;
      sw += f.w[i];
      sr += f.w[i] * (f.y[i] - per_byte * f.x[i]);
    }
    rtt = sw > 0 ? sr / sw : 0;
  }
  if (!isfinite(rtt) || rtt < 0) rtt = 0; /* a negative intercept: no measurable round trip */
  *out = (refit_link_fit){.bandwidth_mbps = mbps,
                          .rtt_ms = rtt,
                          .bandwidth_fitted = fitted,
                          .samples = count_kept(f.keep, n)};
done:
  buf_free(&f);
  return rc;
}

void refit_link_bound(refit_link_fit *f, double probe_mbps, double probe_rtt_ms) {
  if (probe_mbps > 0 && isfinite(probe_mbps))
    f->bandwidth_mbps = fmin(fmax(f->bandwidth_mbps, probe_mbps / REFIT_LINK_MAX_DRIFT),
                             probe_mbps * REFIT_LINK_MAX_DRIFT);
  if (probe_rtt_ms >= 0 && isfinite(probe_rtt_ms))
    f->rtt_ms = fmin(fmax(f->rtt_ms, probe_rtt_ms / REFIT_LINK_MAX_DRIFT),
                     fmax(probe_rtt_ms * REFIT_LINK_MAX_DRIFT,
                          probe_rtt_ms + REFIT_LINK_RTT_SLACK_MS));
}

err_code refit_check_device(const plan_device *d, err *e) {
  if (!d) return err_set(e, ERR_INVALID, "no cost model");
  if (!isfinite(d->ms_per_gflop) || !(d->ms_per_gflop > 0))
    return err_set(e, ERR_INVALID, "cost model of '%.64s': %g ms/GFLOP is not a positive number",
                   d->name, d->ms_per_gflop);
  if (!isfinite(d->fixed_ms) || !(d->fixed_ms >= 0))
    return err_set(e, ERR_INVALID, "cost model of '%.64s': fixed cost %g ms is not >= 0",
                   d->name, d->fixed_ms);
  if (!isfinite(d->bandwidth_mbps) || !(d->bandwidth_mbps > 0))
    return err_set(e, ERR_INVALID,
                   "cost model of '%.64s': bandwidth %g Mbit/s is not a positive number", d->name,
                   d->bandwidth_mbps);
  if (!isfinite(d->rtt_ms) || !(d->rtt_ms >= 0))
    return err_set(e, ERR_INVALID, "cost model of '%.64s': round trip %g ms is not >= 0",
                   d->name, d->rtt_ms);
  if (!isfinite(d->fe_rtt_ms) || !(d->fe_rtt_ms >= 0))
    return err_set(e, ERR_INVALID, "cost model of '%.64s': FE round trip %g ms is not >= 0",
                   d->name, d->fe_rtt_ms);
  return ERR_OK;
}

static double rel(double from, double to, double floor) {
  return fabs(to - from) / fmax(fabs(from), floor);
}

double refit_change(const plan_device *from, const plan_device *to) {
  double c = rel(from->ms_per_gflop, to->ms_per_gflop, 1e-12);
  c = fmax(c, rel(from->fixed_ms, to->fixed_ms, REFIT_CHANGE_FLOOR_MS));
  c = fmax(c, rel(from->bandwidth_mbps, to->bandwidth_mbps, 1e-12));
  c = fmax(c, rel(from->rtt_ms, to->rtt_ms, REFIT_CHANGE_FLOOR_MS));
  return c;
}

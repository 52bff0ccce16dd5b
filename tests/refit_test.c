/* refit_test.c — the arithmetic of scheduler/refit.h: the weighted compute
 * fit (exact data, noise, recency, a speed change followed within a few
 * samples and a recovery, outliers, one size, a negative intercept,
 * samples that cannot be modelled, first runs of new strips), the link fit (a real bandwidth, bytes
 * that explain nothing, nonsense), the check that keeps nonsense from the
 * planner, and the change measure that decides what is stored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/refit.h"

enum { WINDOW = REFIT_WINDOW_TILES };

/* Deterministic noise in [-1, 1]. */
static double noise(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return ((*seed >> 8) & 0xffff) / 32767.5 - 1.0;
}

/* Tile sizes as a request's segments give them: several distinct ones. */
static double size_of(size_t i) {
  static const double g[] = {0.02, 0.05, 0.11, 0.07, 0.16, 0.03};
  return g[i % (sizeof g / sizeof g[0])];
}

/* n samples, newest first: the rest at (a_old, b), the newest `n_new` on a
 * device a_new / a_old times slower (a change of speed stretches every
 * job, b included), each time times (1 + rel_noise * noise). */
static void fill(refit_sample *s, size_t n, size_t n_new, double a_new, double a_old, double b,
                 double rel_noise, unsigned seed) {
  for (size_t i = 0; i < n; i++) {
    double slower = i < n_new ? a_new / a_old : 1, g = size_of(i);
    s[i] = (refit_sample){.gflop = g,
                          .compute_ms = slower * (a_old * g + b) * (1 + rel_noise * noise(&seed)),
                          .bytes = 1000.0 * (double)(i % 7 + 1),
                          .transfer_ms = 1.0};
  }
}

static void test_exact_line(void **state) {
  (void)state;
  refit_sample s[WINDOW];
  fill(s, WINDOW, 0, 0, 20, 1.5, 0, 1);
  refit_compute_fit f;
  err e = {0};
  assert_int_equal(refit_compute(s, WINDOW, 0, -1, &f, &e), ERR_OK);
  assert_true(fabs(f.ms_per_gflop - 20) < 1e-9 && fabs(f.fixed_ms - 1.5) < 1e-9);
  assert_true(f.fit_error < 1e-12);
  assert_int_equal(f.samples, WINDOW);
  assert_int_equal(f.changed, 0);
}

static void test_noise(void **state) {
  (void)state;
  refit_sample s[WINDOW];
  fill(s, WINDOW, 0, 0, 20, 1.5, 0.05, 7);
  refit_compute_fit f;
  assert_int_equal(refit_compute(s, WINDOW, 0, -1, &f, NULL), ERR_OK);
  assert_true(fabs(f.ms_per_gflop / 20 - 1) < 0.05);
  assert_true(f.fit_error > 0.005 && f.fit_error < 0.06);
}

/* The device halves its speed: from REFIT_CHANGE_MIN_TILES new samples on
 * (about a request's worth of tiles) the fit is the new speed. */
static void test_follows_a_slowdown(void **state) {
  (void)state;
  refit_sample s[WINDOW];
  refit_compute_fit f;
  for (size_t k = 0; k <= 12; k++) {
    fill(s, WINDOW, k, 40, 20, 1, 0.03, 11);
    assert_int_equal(refit_compute(s, WINDOW, 20, 1, &f, NULL), ERR_OK);
    if (k == 0) assert_true(fabs(f.ms_per_gflop / 20 - 1) < 0.05);
    /* Fewer new samples than a change needs are outliers, not news. */
    if (k >= 1 && k < REFIT_CHANGE_MIN_TILES) assert_true(f.ms_per_gflop > 20 * 0.97);
    if (k >= REFIT_CHANGE_MIN_TILES) {
      if (fabs(f.ms_per_gflop / 40 - 1) > 0.1)
        fail_msg("%zu new samples: %g ms/GFLOP, want about 40", k, f.ms_per_gflop);
      assert_int_equal(f.changed, 1);
    }
  }
}

static void test_follows_a_recovery(void **state) {
  (void)state;
  refit_sample s[WINDOW];
  refit_compute_fit f;
  fill(s, WINDOW, REFIT_CHANGE_MIN_TILES, 20, 40, 1, 0.03, 13);
  assert_int_equal(refit_compute(s, WINDOW, 40, 1, &f, NULL), ERR_OK);
  assert_true(fabs(f.ms_per_gflop / 20 - 1) < 0.1);
  assert_true(f.dropped >= WINDOW - REFIT_CHANGE_MIN_TILES);
}

/* Noise is not a change: 10 % noise never cuts the window. */
static void test_noise_is_not_a_change(void **state) {
  (void)state;
  refit_sample s[WINDOW];
  for (unsigned seed = 1; seed <= 50; seed++) {
    fill(s, WINDOW, 0, 0, 20, 1, 0.1, seed);
    refit_compute_fit f;
    assert_int_equal(refit_compute(s, WINDOW, 20, 1, &f, NULL), ERR_OK);
    assert_int_equal(f.changed, 0);
    assert_true(fabs(f.ms_per_gflop / 20 - 1) < 0.15);
  }
}

/* Without a change, old samples still count, less: recency weights. */
static void test_recency_weights(void **state) {
  (void)state;
  /* Newest half at 22, oldest at 18: within the change threshold, so a
   * weighted blend leaning to the new. */
  refit_sample s[WINDOW];
  fill(s, WINDOW, WINDOW / 2, 22, 18, 0, 0, 1);
  refit_compute_fit f;
  assert_int_equal(refit_compute(s, WINDOW, 0, 0, &f, NULL), ERR_OK);
  assert_int_equal(f.changed, 0);
  /* The newest half holds 1 - 2^(-25 / half-life) of the weight. */
  double w_new = (1 - exp2(-(WINDOW / 2) / REFIT_HALF_LIFE_TILES)) /
                 (1 - exp2(-WINDOW / REFIT_HALF_LIFE_TILES));
  double want = w_new * 22 + (1 - w_new) * 18;
  assert_true(w_new > 0.5 && fabs(f.ms_per_gflop - want) < 0.1);
}

/* A strip's first use pays its preparation: one sample 10 times slower
 * does not move the fit. */
static void test_outlier_dropped(void **state) {
  (void)state;
  refit_sample s[WINDOW];
  fill(s, WINDOW, 0, 0, 20, 1, 0.02, 17);
  s[3].compute_ms *= 10;
  refit_compute_fit f;
  assert_int_equal(refit_compute(s, WINDOW, 0, -1, &f, NULL), ERR_OK);
  assert_true(fabs(f.ms_per_gflop / 20 - 1) < 0.03);
  assert_true(f.dropped >= 1);
}

/* A plan change makes new strips on the devices it moves rows to; their
 * first runs pay the preparation (three times a repeat run here). Flagged,
 * they are left out: the fit stays the device's rate. Unflagged, the same
 * times read as a slowdown (the contrast shows what the flag changes). A
 * device with fewer repeat runs than a fit needs is fitted on all. */
static void test_first_runs_left_out(void **state) {
  (void)state;
  enum { NEW_STRIPS = 8 };
  refit_sample s[WINDOW];
  fill(s, WINDOW, NEW_STRIPS, 60, 20, 1, 0.03, 19);
  refit_compute_fit f;
  assert_int_equal(refit_compute(s, WINDOW, 20, 1, &f, NULL), ERR_OK);
  assert_true(f.changed == 1 && f.ms_per_gflop > 40); /* unflagged: a slowdown */
  for (size_t i = 0; i < NEW_STRIPS; i++) s[i].first_run = true;
  assert_int_equal(refit_compute(s, WINDOW, 20, 1, &f, NULL), ERR_OK);
  if (fabs(f.ms_per_gflop / 20 - 1) > 0.05) fail_msg("%g ms/GFLOP, want about 20", f.ms_per_gflop);
  assert_int_equal(f.changed, 0);
  assert_int_equal(f.first_runs, NEW_STRIPS);
  assert_int_equal(f.samples + f.dropped, WINDOW - NEW_STRIPS);

  /* Only REFIT_MIN_TILES - 1 repeat runs: all samples count. */
  size_t n = NEW_STRIPS + REFIT_MIN_TILES - 1;
  assert_int_equal(refit_compute(s, n, 20, 1, &f, NULL), ERR_OK);
  assert_int_equal(f.first_runs, 0);
  assert_true(f.samples + f.dropped == n && f.ms_per_gflop > 30);
}

/* Tiles of one request span a few times in size; with 30 % scatter their
 * own line trades a against b wildly. With the prior's b / a, a holds. */
static void test_prior_b_steadies_a(void **state) {
  (void)state;
  double worst_free = 0, worst_anchored = 0;
  for (unsigned seed = 1; seed <= 30; seed++) {
    refit_sample s[12];
    unsigned sd = seed;
    for (size_t i = 0; i < 12; i++) {
      double g = 0.01 + 0.002 * (double)(i % 10);
      s[i] = (refit_sample){.gflop = g, .compute_ms = (1000 * g + 5) * (1 + 0.3 * noise(&sd))};
    }
    refit_compute_fit f;
    if (refit_compute(s, 12, 0, -1, &f, NULL) == ERR_OK)
      worst_free = fmax(worst_free, fabs(f.ms_per_gflop / 1000 - 1));
    else
      worst_free = INFINITY; /* refused: no slope at all */
    assert_int_equal(refit_compute(s, 12, 1000, 5, &f, NULL), ERR_OK);
    worst_anchored = fmax(worst_anchored, fabs(f.ms_per_gflop / 1000 - 1));
    /* A prior of another speed (the device changed since): b / a is the
     * same, so it steadies a just as well without pulling it back. */
    assert_int_equal(refit_compute(s, 12, 2000, 10, &f, NULL), ERR_OK);
    worst_anchored = fmax(worst_anchored, fabs(f.ms_per_gflop / 1000 - 1));
  }
  if (!(worst_anchored < 0.5 && worst_anchored < worst_free))
    fail_msg("a off by up to %.0f %% anchored, %.0f %% free", 100 * worst_anchored,
             100 * worst_free);
}

static void test_one_size_uses_prior_b(void **state) {
  (void)state;
  refit_sample s[6];
  for (int i = 0; i < 6; i++) s[i] = (refit_sample){.gflop = 0.1, .compute_ms = 3.0};
  refit_compute_fit f;
  assert_int_equal(refit_compute(s, 6, 0, 1.0, &f, NULL), ERR_OK);
  assert_true(fabs(f.fixed_ms - 1.0) < 1e-12 && fabs(f.ms_per_gflop - 20) < 1e-9);
  assert_int_equal(refit_compute(s, 6, 0, -1, &f, NULL), ERR_OK); /* no prior: through 0 */
  assert_true(f.fixed_ms == 0 && fabs(f.ms_per_gflop - 30) < 1e-9);
}

static void test_negative_intercept_through_origin(void **state) {
  (void)state;
  refit_sample s[] = {{.gflop = 0.1, .compute_ms = 0.5}, {.gflop = 0.2, .compute_ms = 2.0},
                      {.gflop = 0.3, .compute_ms = 3.5}, {.gflop = 0.4, .compute_ms = 5.0}};
  refit_compute_fit f;
  assert_int_equal(refit_compute(s, 4, 0, -1, &f, NULL), ERR_OK);
  assert_true(f.fixed_ms == 0 && f.ms_per_gflop > 0);
}

static void test_refuses_nonsense(void **state) {
  (void)state;
  refit_compute_fit f = {.ms_per_gflop = 123};
  err e = {0};
  /* Time that falls with work. */
  refit_sample falling[] = {{.gflop = 0.1, .compute_ms = 10}, {.gflop = 0.2, .compute_ms = 7},
                            {.gflop = 0.3, .compute_ms = 4}, {.gflop = 0.4, .compute_ms = 1}};
  assert_int_equal(refit_compute(falling, 4, 0, -1, &f, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "does not grow"));
  assert_true(f.ms_per_gflop == 123); /* untouched */
  /* NaN, infinite, zero and negative samples are not samples. */
  refit_sample junk[] = {{.gflop = NAN, .compute_ms = 1},  {.gflop = 0.1, .compute_ms = INFINITY},
                         {.gflop = 0, .compute_ms = 1},    {.gflop = -1, .compute_ms = 2},
                         {.gflop = 0.1, .compute_ms = -3}, {.gflop = 0.2, .compute_ms = 4}};
  assert_int_equal(refit_compute(junk, 6, 0, -1, &f, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "1 usable tiles of 6"));
  assert_int_equal(refit_compute(NULL, 0, 0, -1, &f, &e), ERR_INVALID);
  /* Time that is nearly all b: the work explains too little to tell a. */
  refit_sample flat[WINDOW];
  unsigned seed = 3;
  for (size_t i = 0; i < WINDOW; i++)
    flat[i] = (refit_sample){.gflop = 0.001 * (double)(i % 3 + 1),
                             .compute_ms = (5 + 20 * 0.001 * (double)(i % 3 + 1)) *
                                           (1 + 0.2 * noise(&seed))};
  assert_int_equal(refit_compute(flat, WINDOW, 0, -1, &f, &e), ERR_INVALID);
  if (!strstr(e.msg, "explains too little")) fail_msg("%s", e.msg);
  /* With a prior, only the total: b / a as the prior's, times right. */
  assert_int_equal(refit_compute(flat, WINDOW, 20, 5, &f, &e), ERR_OK);
  assert_int_equal(f.total_only, 1);
  assert_true(fabs(f.fixed_ms / f.ms_per_gflop - 5.0 / 20) < 1e-9);
  assert_true(fabs(f.ms_per_gflop * (0.002 + 0.25) / (5 + 20 * 0.002) - 1) < 0.1);
  /* Usable samples among junk still fit. */
  refit_sample mixed[WINDOW];
  fill(mixed, WINDOW, 0, 0, 20, 1, 0, 3);
  mixed[0].compute_ms = NAN;
  mixed[5].gflop = -1;
  assert_int_equal(refit_compute(mixed, WINDOW, 0, -1, &f, &e), ERR_OK);
  assert_true(fabs(f.ms_per_gflop - 20) < 1e-9);
}

/* Three layer ranges at 60, 20 and 10 ms/GFLOP (their GFLOP over the
 * whole picture 0.2, 0.5, 0.3), b = 1: the effective rate is 25. */
static const double RANGE_SLOPE[3] = {60, 20, 10}, RANGE_GFLOP[3] = {0.2, 0.5, 0.3};

/* n samples of a device `slow` times slower than RANGE_SLOPE whose strip
 * in range k is `share[k]` of the picture (with some variation). */
static void fill_ranges(refit_sample *s, size_t n, double slow, const double *share,
                        unsigned seed) {
  for (size_t i = 0; i < n; i++) {
    int k = (int)(i % 3);
    double g = RANGE_GFLOP[k] * share[k] * (1 + 0.2 * noise(&seed));
    s[i] = (refit_sample){.range = k, .gflop = g,
                          .compute_ms = (slow * RANGE_SLOPE[k] * g + 1) * (1 + 0.02 * noise(&seed))};
  }
}

static void test_ranges_give_the_whole_model_rate(void **state) {
  (void)state;
  refit_sample s[WINDOW];
  const double share[3] = {0.5, 0.5, 0.5};
  fill_ranges(s, WINDOW, 1, share, 21);
  refit_compute_fit f;
  assert_int_equal(refit_compute_ranges(s, WINDOW, 0, 1, RANGE_GFLOP, 3, &f, NULL), ERR_OK);
  assert_int_equal(f.ranges, 3);
  if (fabs(f.ms_per_gflop / 25 - 1) > 0.05) fail_msg("a = %g, want 25", f.ms_per_gflop);
  assert_true(fabs(f.fixed_ms - 1) < 0.3);
  assert_true(f.fit_error < 0.05); /* the ranges explain the tiles */
}

/* Two devices, one twice as slow, with different strips in each range:
 * their lines without ranges are not 1 : 2; with ranges they are. */
static void test_ranges_make_equal_devices_equal(void **state) {
  (void)state;
  const double share_a[3] = {0.7, 0.3, 0.5}, share_b[3] = {0.3, 0.7, 0.5};
  refit_sample a[WINDOW], b[WINDOW];
  fill_ranges(a, WINDOW, 1, share_a, 31);
  fill_ranges(b, WINDOW, 2, share_b, 37);
  refit_compute_fit fa, fb, la, lb;
  assert_int_equal(refit_compute_ranges(a, WINDOW, 0, 1, RANGE_GFLOP, 3, &fa, NULL), ERR_OK);
  assert_int_equal(refit_compute_ranges(b, WINDOW, 0, 1, RANGE_GFLOP, 3, &fb, NULL), ERR_OK);
  double with = fb.ms_per_gflop / fa.ms_per_gflop;
  if (fabs(with / 2 - 1) > 0.08) fail_msg("with ranges: %g times slower, want 2", with);
  /* One line each is refused (time seems not to grow with work) or off. */
  if (refit_compute(a, WINDOW, 0, 1, &la, NULL) == ERR_OK &&
      refit_compute(b, WINDOW, 0, 1, &lb, NULL) == ERR_OK)
    assert_true(fabs(lb.ms_per_gflop / la.ms_per_gflop / 2 - 1) > fabs(with / 2 - 1));
  /* A speed change keeps the range factors: still followed. */
  fill_ranges(b, REFIT_CHANGE_MIN_TILES * 2, 4, share_b, 41);
  assert_int_equal(refit_compute_ranges(b, WINDOW, 0, 1, RANGE_GFLOP, 3, &fb, NULL), ERR_OK);
  if (fabs(fb.ms_per_gflop / (4 * 25) - 1) > 0.1)
    fail_msg("after slowing down: %g, want 100", fb.ms_per_gflop);
}

static void test_link_fit(void **state) {
  (void)state;
  /* 100 Mbit/s, 1.5 ms round trip: 80 us per kB... exactly. */
  refit_sample s[WINDOW];
  unsigned seed = 5;
  for (size_t i = 0; i < WINDOW; i++) {
    double bytes = 20000.0 * (double)(i % 9 + 1);
    s[i] = (refit_sample){.bytes = bytes,
                          .transfer_ms = 1.5 + bytes * 8 / 100e3 + 0.05 * noise(&seed)};
  }
  refit_link_fit f;
  err e = {0};
  assert_int_equal(refit_link(s, WINDOW, 1000, &f, &e), ERR_OK);
  assert_int_equal(f.bandwidth_fitted, 1);
  assert_true(fabs(f.bandwidth_mbps / 100 - 1) < 0.02);
  assert_true(fabs(f.rtt_ms - 1.5) < 0.1);
}

/* Loopback: a few KB and milliseconds of noise; the bytes explain nothing,
 * so the prior bandwidth stays and the round trip is the mean overhead. */
static void test_link_noise_keeps_bandwidth(void **state) {
  (void)state;
  refit_sample s[WINDOW];
  unsigned seed = 9;
  for (size_t i = 0; i < WINDOW; i++)
    s[i] = (refit_sample){.bytes = 1000.0 * (double)(i % 5 + 1),
                          .transfer_ms = 2.0 + 1.0 * noise(&seed)};
  refit_link_fit f;
  assert_int_equal(refit_link(s, WINDOW, 5000, &f, NULL), ERR_OK);
  assert_int_equal(f.bandwidth_fitted, 0);
  assert_true(f.bandwidth_mbps == 5000);
  assert_true(f.rtt_ms > 1.5 && f.rtt_ms < 2.5);
  /* Time falling with bytes: the same. */
  for (size_t i = 0; i < WINDOW; i++)
    s[i] = (refit_sample){.bytes = 1000.0 * (double)(i + 1), .transfer_ms = 100.0 - (double)i};
  assert_int_equal(refit_link(s, WINDOW, 5000, &f, NULL), ERR_OK);
  assert_int_equal(f.bandwidth_fitted, 0);
  assert_true(f.bandwidth_mbps == 5000 && f.rtt_ms >= 0);
}

static void test_link_bound(void **state) {
  (void)state;
  refit_link_fit f = {.bandwidth_mbps = 10, .rtt_ms = 9};
  refit_link_bound(&f, 100, 1);
  assert_true(f.bandwidth_mbps == 100 / REFIT_LINK_MAX_DRIFT);
  assert_true(f.rtt_ms == REFIT_LINK_MAX_DRIFT * 1);
  f = (refit_link_fit){.bandwidth_mbps = 1e6, .rtt_ms = 0.3};
  refit_link_bound(&f, 100, 0.05); /* loopback: a small slack in ms */
  assert_true(f.bandwidth_mbps == 100 * REFIT_LINK_MAX_DRIFT);
  assert_true(fabs(f.rtt_ms - 0.3) < 1e-12);
  f = (refit_link_fit){.bandwidth_mbps = 80, .rtt_ms = 1.2};
  refit_link_bound(&f, 100, 1); /* within: untouched */
  assert_true(f.bandwidth_mbps == 80 && f.rtt_ms == 1.2);
  f = (refit_link_fit){.bandwidth_mbps = 80, .rtt_ms = 0.05};
  refit_link_bound(&f, 100, 1.5); /* an intercept near 0: the probe's quarter */
  assert_true(fabs(f.rtt_ms - 1.5 / REFIT_LINK_MAX_DRIFT) < 1e-12);
}

static void test_link_refuses_nonsense(void **state) {
  (void)state;
  refit_link_fit f;
  err e = {0};
  refit_sample s[WINDOW];
  fill(s, WINDOW, 0, 0, 20, 1, 0, 1);
  assert_int_equal(refit_link(s, WINDOW, 0, &f, &e), ERR_INVALID);
  assert_int_equal(refit_link(s, WINDOW, NAN, &f, &e), ERR_INVALID);
  refit_sample bad[] = {{.bytes = -1, .transfer_ms = 1}, {.bytes = 1, .transfer_ms = NAN},
                        {.bytes = 5, .transfer_ms = -2}};
  assert_int_equal(refit_link(bad, 3, 100, &f, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "usable"));
}

static void test_check_device(void **state) {
  (void)state;
  plan_device ok = {.name = "a", .ms_per_gflop = 10, .fixed_ms = 0, .bandwidth_mbps = 100,
                    .rtt_ms = 0};
  err e = {0};
  assert_int_equal(refit_check_device(&ok, &e), ERR_OK);
  plan_device bad[] = {ok, ok, ok, ok, ok, ok, ok, ok, ok, ok};
  bad[0].ms_per_gflop = NAN;
  bad[1].ms_per_gflop = -1;
  bad[2].ms_per_gflop = 0;
  bad[3].fixed_ms = -0.5;
  bad[4].bandwidth_mbps = 0;
  bad[5].bandwidth_mbps = INFINITY;
  bad[6].rtt_ms = -1;
  bad[7].fixed_ms = NAN;
  bad[8].fe_rtt_ms = NAN;
  bad[9].fe_rtt_ms = -2;
  const char *words[] = {"ms/GFLOP", "ms/GFLOP", "ms/GFLOP", "fixed",     "bandwidth",
                         "bandwidth", "round trip", "fixed",  "FE round", "FE round"};
  for (int i = 0; i < 10; i++) {
    assert_int_equal(refit_check_device(&bad[i], &e), ERR_INVALID);
    if (!strstr(e.msg, words[i])) fail_msg("case %d: %s", i, e.msg);
  }
  assert_int_equal(refit_check_device(NULL, &e), ERR_INVALID);
}

static void test_change(void **state) {
  (void)state;
  plan_device a = {.ms_per_gflop = 10, .fixed_ms = 1, .bandwidth_mbps = 100, .rtt_ms = 1};
  plan_device b = a;
  assert_true(refit_change(&a, &b) == 0);
  b.ms_per_gflop = 11;
  assert_true(fabs(refit_change(&a, &b) - 0.1) < 1e-12);
  b = a;
  b.bandwidth_mbps = 50;
  assert_true(fabs(refit_change(&a, &b) - 0.5) < 1e-12);
  b = a;
  a.rtt_ms = 0;
  b.rtt_ms = 0.01; /* tiny round trips compare in ms */
  assert_true(refit_change(&a, &b) < 0.2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_line),
      cmocka_unit_test(test_noise),
      cmocka_unit_test(test_follows_a_slowdown),
      cmocka_unit_test(test_follows_a_recovery),
      cmocka_unit_test(test_noise_is_not_a_change),
      cmocka_unit_test(test_recency_weights),
      cmocka_unit_test(test_outlier_dropped),
      cmocka_unit_test(test_first_runs_left_out),
      cmocka_unit_test(test_prior_b_steadies_a),
      cmocka_unit_test(test_one_size_uses_prior_b),
      cmocka_unit_test(test_negative_intercept_through_origin),
      cmocka_unit_test(test_refuses_nonsense),
      cmocka_unit_test(test_ranges_give_the_whole_model_rate),
      cmocka_unit_test(test_ranges_make_equal_devices_equal),
      cmocka_unit_test(test_link_fit),
      cmocka_unit_test(test_link_noise_keeps_bandwidth),
      cmocka_unit_test(test_link_bound),
      cmocka_unit_test(test_link_refuses_nonsense),
      cmocka_unit_test(test_check_device),
      cmocka_unit_test(test_change),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

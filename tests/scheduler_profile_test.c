/* scheduler_profile_test.c — the arithmetic of scheduler/profile.h: the
 * compute fit (exact data, noise, a negative intercept, one size, samples
 * that cannot be modelled), medians, the link estimate, transfer times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "scheduler/profile.h"

static void test_fit_exact_line(void **state) {
  (void)state;
  profile_point p[] = {{0.01, 1.2}, {0.03, 1.6}, {0.1, 3.0}, {0.3, 7.0}};
  profile_fit f;
  err e = {0};
  assert_int_equal(profile_fit_linear(p, 4, &f, &e), ERR_OK);
  assert_true(fabs(f.ms_per_gflop - 20) < 1e-9 && fabs(f.fixed_ms - 1) < 1e-9);
  assert_true(f.fit_error < 1e-12);
  assert_int_equal(f.samples, 4);
}

static void test_fit_noise_gives_error(void **state) {
  (void)state;
  profile_point p[] = {{0.1, 11}, {0.1, 9}, {0.2, 21}, {0.2, 19}};
  profile_fit f;
  assert_int_equal(profile_fit_linear(p, 4, &f, NULL), ERR_OK);
  assert_true(fabs(f.ms_per_gflop - 100) < 1e-9 && fabs(f.fixed_ms) < 1e-9);
  assert_true(f.fit_error > 0.05 && f.fit_error < 0.2);
}

static void test_fit_negative_intercept_goes_through_origin(void **state) {
  (void)state;
  profile_point p[] = {{0.1, 0.5}, {0.2, 2.0}, {0.3, 3.5}}; /* b would be -1 */
  profile_fit f;
  assert_int_equal(profile_fit_linear(p, 3, &f, NULL), ERR_OK);
  assert_true(f.fixed_ms == 0 && f.ms_per_gflop > 0);
  assert_true(fabs(f.ms_per_gflop - (0.05 + 0.4 + 1.05) / (0.01 + 0.04 + 0.09)) < 1e-9);
}

static void test_fit_one_size(void **state) {
  (void)state;
  profile_point p[] = {{0.5, 10}, {0.5, 12}};
  profile_fit f;
  assert_int_equal(profile_fit_linear(p, 2, &f, NULL), ERR_OK);
  assert_true(fabs(f.ms_per_gflop - 22) < 1e-9 && f.fixed_ms == 0);
}

static void test_fit_refuses_nonsense(void **state) {
  (void)state;
  profile_fit f;
  err e = {0};
  profile_point bad[] = {{0, 1}, {-1, 2}, {NAN, 3}, {0.1, INFINITY}, {0.1, 0}};
  assert_int_equal(profile_fit_linear(bad, 5, &f, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "none of the 5"));
  profile_point falling[] = {{0.1, 10}, {0.2, 5}, {0.3, 1}};
  assert_int_equal(profile_fit_linear(falling, 3, &f, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "does not grow"));
  assert_int_equal(profile_fit_linear(NULL, 0, &f, &e), ERR_INVALID);
}

static void test_median(void **state) {
  (void)state;
  double odd[] = {5, 1, 3}, even[] = {4, 1, 3, 2};
  assert_true(profile_median(odd, 3) == 3);
  assert_true(profile_median(even, 4) == 2.5);
}

static void test_link(void **state) {
  (void)state;
  double rtt, mbps;
  /* 256 KiB each way over 100 Mbit/s: 2 x 20.97 ms more than an empty ping. */
  size_t bytes = 256 << 10;
  double extra = 2.0 * bytes * 8 / 100e3;
  assert_int_equal(profile_link(1.0, 1.0 + extra, bytes, &rtt, &mbps, NULL), ERR_OK);
  assert_true(rtt == 1.0 && fabs(mbps - 100) < 1e-9);
  /* Loopback: no measurable difference. */
  assert_int_equal(profile_link(0.2, 0.19, bytes, &rtt, &mbps, NULL), ERR_OK);
  assert_true(mbps == PROFILE_MAX_BANDWIDTH_MBPS);
  assert_int_equal(profile_link(-1, 2, bytes, &rtt, &mbps, NULL), ERR_INVALID);
  assert_int_equal(profile_link(NAN, 2, bytes, &rtt, &mbps, NULL), ERR_INVALID);
}

static void test_tile_transfer(void **state) {
  (void)state;
  /* 100 ms from send to result: 40 compute, 20 waiting, 15 queued. */
  assert_true(fabs(profile_tile_transfer_ms(1000, 1100, 40, 20, 15) - 25) < 1e-9);
  assert_true(profile_tile_transfer_ms(1000, 1050, 40, 20, 15) == 0); /* never negative */
  assert_true(profile_tile_transfer_ms(1000, 1100, NAN, 0, 0) == 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fit_exact_line),
      cmocka_unit_test(test_fit_noise_gives_error),
      cmocka_unit_test(test_fit_negative_intercept_goes_through_origin),
      cmocka_unit_test(test_fit_one_size),
      cmocka_unit_test(test_fit_refuses_nonsense),
      cmocka_unit_test(test_median),
      cmocka_unit_test(test_link),
      cmocka_unit_test(test_tile_transfer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

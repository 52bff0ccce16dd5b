/* rowcodec_test.c — the zero-mask packing of rows (runtime/rowcodec.h):
 * every float comes back bit for bit, a ReLU-like row takes about half its
 * bytes, and malformed packings are refused with the reason. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/rowcodec.h"

static uint32_t next(uint32_t *s) {
  *s ^= *s << 13, *s ^= *s >> 17, *s ^= *s << 5;
  return *s;
}

/* Rows like a ReLU's output: zeros with probability p_zero, with -0.0,
 * a NaN and an infinity among the rest. */
static void fill(float *v, size_t n, double p_zero, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u = next(&seed);
    v[i] = (double)(u % 1000) / 1000.0 < p_zero ? 0.0f : (float)(u % 977) / 97.0f - 3.0f;
  }
  if (n > 3) v[1] = -0.0f, v[2] = NAN, v[3] = INFINITY;
}

static void round_trip(size_t n, double p_zero) {
  float *src = malloc((n ? n : 1) * sizeof *src), *back = malloc((n ? n : 1) * sizeof *back);
  assert_non_null(src);
  assert_non_null(back);
  fill(src, n, p_zero, (uint32_t)(n * 7 + 1));
  size_t len = rowcodec_mask_size(src, n);
  uint8_t *packed = malloc(len ? len : 1);
  assert_non_null(packed);
  rowcodec_mask_pack(src, n, packed);
  err e = {0};
  memset(back, 0xff, (n ? n : 1) * sizeof *back);
  assert_int_equal(rowcodec_unpack(ROWCODEC_ZERO_MASK, packed, len, back, n, &e), ERR_OK);
  assert_memory_equal(src, back, n * sizeof *src); /* bits, not values: NaN and -0.0 too */
  free(src), free(back), free(packed);
}

static void test_round_trips_bit_for_bit(void **state) {
  (void)state;
  size_t sizes[] = {0, 1, 7, 8, 9, 63, 64, 65, 1000, 200 * 64};
  double zeros[] = {0.0, 0.5, 0.9, 1.0};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
    for (size_t k = 0; k < sizeof zeros / sizeof *zeros; k++) round_trip(sizes[i], zeros[k]);
}

static void test_sizes(void **state) {
  (void)state;
  enum { N = 64 * 200 };
  float *v = malloc(N * sizeof *v);
  assert_non_null(v);
  memset(v, 0, N * sizeof *v);
  assert_int_equal(rowcodec_mask_size(v, N), N / 8); /* all zeros: the mask alone */
  v[5] = -0.0f;                                       /* not +0.0: carried */
  assert_int_equal(rowcodec_mask_size(v, N), N / 8 + 4);
  fill(v, N, 0.5, 3);
  size_t len = rowcodec_mask_size(v, N);
  /* Half zeros: about 0.53 of the raw bytes. */
  assert_true(len > 0.45 * N * 4 && len < 0.6 * N * 4);
  free(v);
}

static void test_raw_is_checked_too(void **state) {
  (void)state;
  float v[3] = {1, 0, 2}, back[3];
  err e = {0};
  assert_int_equal(rowcodec_unpack(ROWCODEC_RAW, (const uint8_t *)v, sizeof v, back, 3, &e),
                   ERR_OK);
  assert_memory_equal(v, back, sizeof v);
  assert_int_equal(rowcodec_check(ROWCODEC_RAW, (const uint8_t *)v, sizeof v - 1, 3, &e),
                   ERR_SHAPE);
  assert_non_null(strstr(e.msg, "raw rows of 11 bytes"));
}

static void test_malformed_packings_are_refused(void **state) {
  (void)state;
  float v[10] = {1, 0, 2, 0, 0, 3, 0, 0, 0, 4};
  uint8_t p[64];
  size_t len = rowcodec_mask_size(v, 10);
  assert_int_equal(len, 2 + 4 * 4);
  rowcodec_mask_pack(v, 10, p);
  float back[10];
  err e = {0};
  assert_int_equal(rowcodec_check(ROWCODEC_ZERO_MASK, p, len, 10, &e), ERR_OK);
  /* A float missing, one too many, a length that is no whole float. */
  assert_int_equal(rowcodec_unpack(ROWCODEC_ZERO_MASK, p, len - 4, back, 10, &e), ERR_SHAPE);
  assert_non_null(strstr(e.msg, "mark 4 floats and carry 3"));
  assert_int_equal(rowcodec_check(ROWCODEC_ZERO_MASK, p, len + 4, 10, &e), ERR_SHAPE);
  assert_int_equal(rowcodec_check(ROWCODEC_ZERO_MASK, p, len - 1, 10, &e), ERR_SHAPE);
  /* Shorter than the mask; no data at all. */
  assert_int_equal(rowcodec_check(ROWCODEC_ZERO_MASK, p, 1, 10, &e), ERR_SHAPE);
  assert_int_equal(rowcodec_check(ROWCODEC_ZERO_MASK, NULL, 0, 10, &e), ERR_SHAPE);
  /* A bit set past the 10 floats. */
  p[1] |= 0x80;
  assert_int_equal(rowcodec_check(ROWCODEC_ZERO_MASK, p, len + 4, 10, &e), ERR_SHAPE);
  assert_non_null(strstr(e.msg, "past"));
  p[1] &= 0x7f;
  /* An encoding nobody knows. */
  assert_int_equal(rowcodec_check(9, p, len, 10, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "encoding 9"));
  /* Absurd sizes do not overflow. */
  assert_int_equal(rowcodec_check(ROWCODEC_RAW, p, 16, SIZE_MAX / 2, &e), ERR_SHAPE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trips_bit_for_bit),
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_raw_is_checked_too),
      cmocka_unit_test(test_malformed_packings_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

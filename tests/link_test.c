/* link_test.c — the link emulator's delay arithmetic (runtime/link.h):
 * serialization time, one-way latency, queueing behind earlier messages
 * of the same direction, zero as "not emulated", flag checks, the sleep.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/link.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-9)

static void test_serialization(void **state) {
  (void)state;
  /* 100 Mbit/s: 1 250 000 bytes take 100 ms; 10 MB (a 64x200x200 map)
   * 0.8 s, as DESIGN.md says. */
  NEAR(link_serialize_ms(100, 1250000), 100.0);
  NEAR(link_serialize_ms(100, 10000000), 800.0);
  NEAR(link_serialize_ms(1, 125), 1.0);
  NEAR(link_serialize_ms(0, 123456), 0.0); /* unlimited */
  NEAR(link_serialize_ms(100, 0), 0.0);
}

static void test_rtt_only(void **state) {
  (void)state;
  link_dir d;
  link_dir_init(&d, 0, 10);
  assert_true(link_dir_emulated(&d));
  /* No bandwidth limit: every message arrives half a round trip later,
   * however many there are and however big. */
  NEAR(link_dir_book(&d, 1000, 1 << 30), 1005);
  NEAR(link_dir_book(&d, 1000, 1 << 30), 1005);
  NEAR(link_dir_book(&d, 1001, 10), 1006);
}

static void test_bandwidth_and_rtt(void **state) {
  (void)state;
  link_dir d;
  link_dir_init(&d, 100, 2); /* 100 Mbit/s, 2 ms round trip */
  /* 125 000 bytes: 10 ms of serialization, + 1 ms one way. */
  NEAR(link_dir_book(&d, 0, 125000), 11);
}

static void test_queueing(void **state) {
  (void)state;
  link_dir d;
  link_dir_init(&d, 8, 0); /* 8 Mbit/s: 1 byte per microsecond, 1000 per ms */
  /* Three messages handed over at once queue: each waits for the one
   * before to finish serializing. */
  NEAR(link_dir_book(&d, 0, 1000), 1);
  NEAR(link_dir_book(&d, 0, 2000), 3);
  NEAR(link_dir_book(&d, 0, 1000), 4);
  /* Handed over while the link is still busy (at 3.5, busy until 4). */
  NEAR(link_dir_book(&d, 3.5, 500), 4.5);
  /* After the link went idle there is no queueing. */
  NEAR(link_dir_book(&d, 100, 1000), 101);
  /* A clock reading earlier than the last one just queues. */
  NEAR(link_dir_book(&d, 50, 1000), 102);
}

static void test_queueing_with_rtt(void **state) {
  (void)state;
  link_dir d;
  link_dir_init(&d, 8, 4); /* 1000 bytes per ms, 2 ms one way */
  /* Latency does not occupy the link: the second message serializes right
   * after the first one's last bit, not after it arrived. */
  NEAR(link_dir_book(&d, 0, 1000), 1 + 2);
  NEAR(link_dir_book(&d, 0, 1000), 2 + 2);
}

static void test_directions_independent(void **state) {
  (void)state;
  link_dir up, down;
  link_dir_init(&up, 8, 0);
  link_dir_init(&down, 8, 0);
  NEAR(link_dir_book(&up, 0, 5000), 5);
  /* Full duplex: the other direction is free. */
  NEAR(link_dir_book(&down, 0, 1000), 1);
}

static void test_zero_is_no_delay(void **state) {
  (void)state;
  link_dir d;
  link_dir_init(&d, 0, 0);
  assert_false(link_dir_emulated(&d));
  for (int i = 0; i < 5; i++) NEAR(link_dir_book(&d, 42.5, (size_t)1 << 40), 42.5);
}

static void test_check(void **state) {
  (void)state;
  err e = {0};
  assert_int_equal(link_check(0, 0, &e), ERR_OK);
  assert_int_equal(link_check(100, 1, &e), ERR_OK);
  assert_int_equal(link_check(LINK_MAX_MBPS, LINK_MAX_RTT_MS, &e), ERR_OK);
  assert_int_equal(link_check(-1, 0, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "Mbit/s"));
  assert_int_equal(link_check(0, -1, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "round trip"));
  assert_int_equal(link_check(NAN, 0, &e), ERR_INVALID);
  assert_int_equal(link_check(0, NAN, &e), ERR_INVALID);
  assert_int_equal(link_check(INFINITY, 0, &e), ERR_INVALID);
  assert_int_equal(link_check(LINK_MAX_MBPS * 2, 0, NULL), ERR_INVALID);
}

static void test_sleep(void **state) {
  (void)state;
  double t0 = link_now_ms();
  link_sleep_until_ms(t0 + 20);
  double t1 = link_now_ms();
  assert_true(t1 >= t0 + 20);
  assert_true(t1 < t0 + 1000);
  /* A time in the past returns at once. */
  link_sleep_until_ms(t0 - 1000);
  assert_true(link_now_ms() - t1 < 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_serialization),
      cmocka_unit_test(test_rtt_only),
      cmocka_unit_test(test_bandwidth_and_rtt),
      cmocka_unit_test(test_queueing),
      cmocka_unit_test(test_queueing_with_rtt),
      cmocka_unit_test(test_directions_independent),
      cmocka_unit_test(test_zero_is_no_delay),
      cmocka_unit_test(test_check),
      cmocka_unit_test(test_sleep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* boards_test.c — the paper's boards at their own speed (cli/boards.h). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cli/boards.h"

/* DESIGN.md's speeds come back on the core DESIGN.md was written on (61
 * ms for vgg16c whole), and a core twice as fast halves them. */
static void test_design_speeds_on_the_design_core(void **state) {
  (void)state;
  const board *pi3 = boards_find("pi3b+"), *pi4 = boards_find("pi4b");
  assert_non_null(pi3);
  assert_non_null(pi4);
  assert_true(fabs(pi3->reference_ms - 610.0) < 1e-9);
  assert_true(fabs(boards_speed(pi3, 61.0) - pi3->design_speed) < 1e-12);
  assert_true(fabs(boards_speed(pi4, 61.0) - pi4->design_speed) < 1e-12);
  assert_true(fabs(pi4->design_speed / pi3->design_speed - 1.5) < 1e-12); /* the paper's 1 : 1.5 */
  assert_true(fabs(boards_speed(pi3, 30.5) - pi3->design_speed / 2) < 1e-12);
}

static void test_unknown_boards(void **state) {
  (void)state;
  assert_null(boards_find("pi5"));
  assert_null(boards_find(""));
  assert_null(boards_find(NULL));
  assert_null(boards_find("0.1"));
}

/* The core's time is measured: positive, finite, and a Pi 3B+ emulated
 * here is slower than the core itself. */
static void test_core_measured(void **state) {
  (void)state;
  double core_ms = -1;
  err e = {0};
  assert_int_equal(boards_measure_core(1, &core_ms, &e), ERR_OK);
  assert_true(isfinite(core_ms) && core_ms > 0);
  double s = boards_speed(boards_find("pi3b+"), core_ms);
  assert_true(s > 0 && s < 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_design_speeds_on_the_design_core),
      cmocka_unit_test(test_unknown_boards),
      cmocka_unit_test(test_core_measured),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* handoff_test.c — the learned overhead per round trip (scheduler/handoff.h):
 * it closes a steady gap between measured and predicted, stays within its
 * bounds, keeps models apart, and ignores nonsense. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/handoff.h"

/* A cluster whose every round trip costs `true_ms` more than the planner's
 * base price: each request is predicted base + the learned overhead. */
static double run(handoff *h, const char *model, double base_ms, double true_ms, int trips,
                  int requests) {
  for (int i = 0; i < requests; i++) {
    double predicted = base_ms + handoff_ms(h, model) * trips;
    double measured = base_ms + true_ms * trips;
    handoff_note(h, model, predicted, measured, trips);
  }
  return handoff_ms(h, model);
}

static void test_learns_a_steady_gap(void **state) {
  (void)state;
  handoff h = {0};
  assert_true(handoff_ms(&h, "vgg16c") == 0);
  double ms = run(&h, "vgg16c", 200, 2.0, 17, 30);
  assert_true(fabs(ms - 2.0) < 0.01);
  /* The gap shrinks: back toward a smaller overhead. */
  ms = run(&h, "vgg16c", 200, 0.5, 17, 30);
  assert_true(fabs(ms - 0.5) < 0.01);
  /* Over-predicted: never below 0. */
  ms = run(&h, "vgg16c", 200, -3.0, 17, 30);
  assert_true(ms == 0);
  /* A gap no exchange explains: capped. */
  ms = run(&h, "vgg16c", 200, 1000, 1, 30);
  assert_true(ms == HANDOFF_MAX_MS);
}

static void test_models_apart_and_full_table(void **state) {
  (void)state;
  handoff h = {0};
  run(&h, "a", 100, 3.0, 10, 40);
  run(&h, "b", 100, 1.0, 10, 40);
  assert_true(fabs(handoff_ms(&h, "a") - 3.0) < 0.01);
  assert_true(fabs(handoff_ms(&h, "b") - 1.0) < 0.01);
  /* More models than entries: the oldest make room, nothing overflows. */
  char name[16];
  for (int i = 0; i < HANDOFF_MODELS + 5; i++) {
    snprintf(name, sizeof name, "m%d", i);
    handoff_note(&h, name, 10, 12, 2);
  }
  assert_int_equal(h.n, HANDOFF_MODELS);
  assert_true(handoff_ms(&h, name) > 0);
}

static void test_ignores_nonsense(void **state) {
  (void)state;
  handoff h = {0};
  handoff_note(&h, "m", NAN, 10, 3);
  handoff_note(&h, "m", 10, INFINITY, 3);
  handoff_note(&h, "m", -1, 10, 3);
  handoff_note(&h, "m", 10, 20, 0);
  handoff_note(&h, "", 10, 20, 3);
  handoff_note(&h, NULL, 10, 20, 3);
  handoff_note(NULL, "m", 10, 20, 3);
  assert_int_equal(h.n, 0);
  assert_true(handoff_ms(&h, "m") == 0 && handoff_ms(NULL, "m") == 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_learns_a_steady_gap),
      cmocka_unit_test(test_models_apart_and_full_table),
      cmocka_unit_test(test_ignores_nonsense),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

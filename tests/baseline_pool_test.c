/* baseline_pool_test.c — the model whole, timed on request in forked
 * copies (cli/baseline_pool.h). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "cli/baseline.h"
#include "cli/baseline_pool.h"
#include "cli/workload.h"

static Edgedi__V1__Image img;
static uint8_t *pixels;

static int setup(void **state) {
  (void)state;
  return workload_sample_image(200, 200, &img, &pixels, NULL) == ERR_OK ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  free(pixels);
  return 0;
}

/* No copy outlives its pool. */
static void assert_no_children(void) {
  errno = 0;
  assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
  assert_int_equal(errno, ECHILD);
}

/* Each run is the model whole: about what baseline_measure times in this
 * process (a factor of three either way allows for a loaded host), never
 * zero or a failure, the copies asked in turn and still there after. */
static void test_runs_time_the_model(void **state) {
  (void)state;
  err e = {0};
  double here_ms = 0;
  assert_int_equal(baseline_measure_cpu("resnet18c", &img, 3, true, &here_ms, &e), ERR_OK);
  baseline_pool *p = NULL;
  assert_int_equal(baseline_pool_open("resnet18c", &img, true, 2, &p, &e), ERR_OK);
  assert_non_null(p);
  for (int i = 0; i < 5; i++) {
    double ms = -1;
    assert_int_equal(baseline_pool_run(p, &ms, &e), ERR_OK);
    assert_true(isfinite(ms) && ms > 0);
    assert_true(ms > here_ms / 3 && ms < here_ms * 3);
  }
  baseline_pool_close(p);
  assert_no_children();
}

/* A model that does not build: the error names it, no copy is left. */
static void test_unknown_model(void **state) {
  (void)state;
  err e = {0};
  baseline_pool *p = (baseline_pool *)&e; /* must be reset */
  assert_int_not_equal(baseline_pool_open("nosuchnet", &img, true, 3, &p, &e), ERR_OK);
  assert_null(p);
  assert_non_null(strstr(e.msg, "nosuchnet"));
  assert_no_children();
}

static void test_process_count_checked(void **state) {
  (void)state;
  err e = {0};
  baseline_pool *p = NULL;
  assert_int_equal(baseline_pool_open("resnet18c", &img, true, 0, &p, &e), ERR_INVALID);
  assert_int_equal(baseline_pool_open("resnet18c", &img, true, BASELINE_PROCESSES + 1, &p, &e),
                   ERR_INVALID);
  assert_null(p);
  baseline_pool_close(NULL);
  assert_no_children();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runs_time_the_model),
      cmocka_unit_test(test_unknown_model),
      cmocka_unit_test(test_process_count_checked),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

/* cpu_gate_test.c — emulated agents take turns on a host's cores: no more
 * holders than slots, across gates and processes; a dead holder's slot
 * frees itself; bad arguments are refused. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/cpu_gate.h"
#include "runtime/stats.h"

static char dir[256];

static int make_dir(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "%s/cpu_gate_XXXXXX", cpu_gate_default_dir());
  return mkdtemp(dir) ? 0 : -1;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

typedef struct holder {
  cpu_gate *g;
  atomic_int inside; /* holders inside now, shared by every holder */
  atomic_int most;   /* most inside at once */
  int rounds;
} holder;

static holder shared;

static void *hold_rounds(void *arg) {
  cpu_gate *g = arg;
  for (int i = 0; i < shared.rounds; i++) {
    cpu_gate_enter(g);
    int now = atomic_fetch_add(&shared.inside, 1) + 1;
    int most = atomic_load(&shared.most);
    while (now > most && !atomic_compare_exchange_weak(&shared.most, &most, now)) {
    }
    sleep_ms(1);
    atomic_fetch_sub(&shared.inside, 1);
    cpu_gate_leave(g);
  }
  return NULL;
}

/* Four threads, each through its own gate (its own lock files, as four
 * agents would have), never more inside than slots. */
static void run_holders(int slots, int *most) {
  cpu_gate *g[4] = {0};
  err e = {0};
  for (int i = 0; i < 4; i++) assert_int_equal(cpu_gate_open(dir, slots, &g[i], &e), ERR_OK);
  atomic_store(&shared.inside, 0);
  atomic_store(&shared.most, 0);
  shared.rounds = 20;
  pthread_t t[4];
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, hold_rounds, g[i]), 0);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 4; i++) cpu_gate_close(g[i]);
  *most = atomic_load(&shared.most);
}

static void test_no_more_holders_than_slots(void **state) {
  (void)state;
  int most = 0;
  run_holders(1, &most);
  assert_int_equal(most, 1);
  run_holders(2, &most);
  assert_true(most >= 1 && most <= 2);
}

static void test_a_dead_holder_frees_its_slot(void **state) {
  (void)state;
  int ready[2];
  assert_int_equal(pipe(ready), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) { /* holds the only slot, then is killed holding it */
    cpu_gate *g = NULL;
    err e = {0};
    if (cpu_gate_open(dir, 1, &g, &e) != ERR_OK) _exit(1);
    cpu_gate_enter(g);
    char c = 1;
    if (write(ready[1], &c, 1) != 1) _exit(1);
    for (;;) pause();
  }
  char c;
  assert_int_equal(read(ready[0], &c, 1), 1);
  cpu_gate *g = NULL;
  err e = {0};
  assert_int_equal(cpu_gate_open(dir, 1, &g, &e), ERR_OK);
  /* Taken by the child: a waiter really waits. */
  pthread_t t;
  atomic_store(&shared.inside, 0);
  atomic_store(&shared.most, 0);
  shared.rounds = 1;
  assert_int_equal(pthread_create(&t, NULL, hold_rounds, g), 0);
  sleep_ms(50);
  assert_int_equal(atomic_load(&shared.most), 0);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  pthread_join(t, NULL); /* the slot came free with the child */
  assert_int_equal(atomic_load(&shared.most), 1);
  cpu_gate_close(g);
  close(ready[0]);
  close(ready[1]);
}

static void test_bad_arguments_and_no_gate(void **state) {
  (void)state;
  cpu_gate *g = NULL;
  err e = {0};
  assert_int_equal(cpu_gate_open(dir, 0, &g, &e), ERR_INVALID);
  assert_int_equal(cpu_gate_open(dir, CPU_GATE_MAX_SLOTS + 1, &g, &e), ERR_INVALID);
  assert_int_equal(cpu_gate_open("", 1, &g, &e), ERR_INVALID);
  assert_int_equal(cpu_gate_open("/nonexistent/edgedi", 1, &g, &e), ERR_IO);
  assert_non_null(strstr(e.msg, "/nonexistent/edgedi"));
  assert_null(g);
  /* No gate: entering and leaving do nothing and never wait. */
  assert_true(cpu_gate_enter(NULL) == 0);
  cpu_gate_leave(NULL);
  cpu_gate_close(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_more_holders_than_slots),
      cmocka_unit_test(test_a_dead_holder_frees_its_slot),
      cmocka_unit_test(test_bad_arguments_and_no_gate),
  };
  return cmocka_run_group_tests(tests, make_dir, NULL);
}

/* admit_test.c — the queue of requests waiting for an agent
 * (scheduler/admit.h): first come first served, only the head takes, a
 * caller whose deadline passes leaves without holding up the rest,
 * shutdown releases everyone. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "scheduler/admit.h"

enum { WAITERS = 6 };

/* Free slots, taken by whoever admit lets try; who took, in order. */
typedef struct pool {
  pthread_mutex_t mu;
  int free_slots;
  int order[WAITERS], n_order;
} pool;

typedef struct waiter_arg {
  admit *g;
  pool *p;
  int id;
  double until_ms;
  int got;
} waiter_arg;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(double ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1e3),
                        .tv_nsec = (long)((ms - (double)(time_t)(ms / 1e3) * 1e3) * 1e6)};
  nanosleep(&ts, NULL);
}

static __thread int my_id;

static int take(void *ctx) {
  pool *p = ctx;
  pthread_mutex_lock(&p->mu);
  int got = -1;
  if (p->free_slots > 0) {
    p->free_slots--;
    p->order[p->n_order++] = my_id;
    got = my_id;
  }
  pthread_mutex_unlock(&p->mu);
  return got;
}

static void *waiter_main(void *arg) {
  waiter_arg *w = arg;
  my_id = w->id;
  w->got = admit_wait(w->g, take, w->p, w->until_ms);
  return NULL;
}

/* Starts waiters 0..n-1 in that order (each queued before the next). */
static void start_in_order(admit *g, pool *p, waiter_arg *w, pthread_t *t, int n,
                           const double *until) {
  for (int i = 0; i < n; i++) {
    w[i] = (waiter_arg){.g = g, .p = p, .id = i, .until_ms = until[i]};
    assert_int_equal(pthread_create(&t[i], NULL, waiter_main, &w[i]), 0);
    while (admit_waiting(g) < i + 1) sleep_ms(0.2);
  }
}

static void free_slot(admit *g, pool *p) {
  pthread_mutex_lock(&p->mu);
  p->free_slots++;
  pthread_mutex_unlock(&p->mu);
  admit_wake(g);
}

static int make_queue(void **state) {
  admit *g = NULL;
  err e = {0};
  if (admit_create(&g, &e) != ERR_OK) return -1;
  *state = g;
  return 0;
}

static int free_queue(void **state) {
  admit_destroy(*state);
  return 0;
}

/* n deadlines a minute away. */
static void far_deadlines(double *until, int n) {
  for (int i = 0; i < n; i++) until[i] = now_ms() + 60000;
}

static void test_first_come_first_served(void **state) {
  admit *g = *state;
  pool p = {.mu = PTHREAD_MUTEX_INITIALIZER};
  waiter_arg w[WAITERS];
  pthread_t t[WAITERS];
  double until[WAITERS];
  far_deadlines(until, WAITERS);
  start_in_order(g, &p, w, t, WAITERS, until);
  sleep_ms(2 * ADMIT_POLL_MS); /* polls find no slot: nobody passes */
  assert_int_equal(p.n_order, 0);
  for (int i = 0; i < WAITERS; i++) {
    free_slot(g, &p);
    while (admit_waiting(g) > WAITERS - i - 1) sleep_ms(0.2);
  }
  for (int i = 0; i < WAITERS; i++) pthread_join(t[i], NULL);
  assert_int_equal(p.n_order, WAITERS);
  for (int i = 0; i < WAITERS; i++) {
    assert_int_equal(p.order[i], i);
    assert_int_equal(w[i].got, i);
  }
}

/* The head's deadline passes: it leaves with ADMIT_TIMEOUT, and the next
 * takes the slot that comes later; one freed at once is taken at once. */
static void test_deadline_leaves_the_queue(void **state) {
  admit *g = *state;
  pool p = {.mu = PTHREAD_MUTEX_INITIALIZER};
  waiter_arg w[3];
  pthread_t t[3];
  double t0 = now_ms();
  double until[3] = {t0 + 1000, t0 + 60000, t0 + 60000}; /* queued well before it passes */
  start_in_order(g, &p, w, t, 3, until);
  pthread_join(t[0], NULL);
  assert_int_equal(w[0].got, ADMIT_TIMEOUT);
  assert_true(now_ms() >= until[0]);
  assert_int_equal(admit_waiting(g), 2);
  free_slot(g, &p);
  pthread_join(t[1], NULL);
  assert_int_equal(w[1].got, 1);
  free_slot(g, &p);
  pthread_join(t[2], NULL);
  assert_int_equal(w[2].got, 2);
  /* Nobody waiting, a slot free, no time left: one try still takes it. */
  free_slot(g, &p);
  my_id = 9;
  assert_int_equal(admit_wait(g, take, &p, now_ms() - 1), 9);
  assert_int_equal(admit_wait(g, take, &p, now_ms() - 1), ADMIT_TIMEOUT);
}

static int give_up(void *ctx) {
  (void)ctx;
  return ADMIT_GIVE_UP;
}

/* try_take saying no slot will ever come ends the wait at once, long
 * before the deadline. */
static void test_give_up_ends_the_wait(void **state) {
  admit *g = *state;
  double t0 = now_ms();
  assert_int_equal(admit_wait(g, give_up, NULL, t0 + 60000), ADMIT_GIVE_UP);
  assert_true(now_ms() - t0 < 30000);
  assert_int_equal(admit_waiting(g), 0);
}

static void test_shutdown_releases_everyone(void **state) {
  admit *g = *state;
  pool p = {.mu = PTHREAD_MUTEX_INITIALIZER};
  waiter_arg w[3];
  pthread_t t[3];
  double until[3];
  far_deadlines(until, 3);
  start_in_order(g, &p, w, t, 3, until);
  admit_shutdown(g);
  for (int i = 0; i < 3; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].got, ADMIT_SHUT);
  }
  free_slot(g, &p);
  assert_int_equal(admit_wait(g, take, &p, now_ms() + 60000), ADMIT_SHUT);
  assert_int_equal(p.free_slots, 1); /* nothing taken after shutdown */
}

static int count_waiting(void *ctx, int waiting) {
  (void)ctx;
  return waiting;
}

static void test_counts(void **state) {
  admit *g = *state;
  assert_int_equal(admit_in_system(g), 0);
  admit_begin(g);
  admit_begin(g);
  assert_int_equal(admit_in_system(g), 2);
  admit_end(g);
  assert_int_equal(admit_in_system(g), 1);
  admit_end(g);
  pool p = {.mu = PTHREAD_MUTEX_INITIALIZER};
  waiter_arg w[2];
  pthread_t t[2];
  double until[2];
  far_deadlines(until, 2);
  start_in_order(g, &p, w, t, 2, until);
  assert_int_equal(admit_locked(g, count_waiting, NULL), 2);
  free_slot(g, &p);
  free_slot(g, &p);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  assert_int_equal(admit_locked(g, count_waiting, NULL), 0);
  /* A NULL queue counts nothing and wakes no one. */
  admit_begin(NULL);
  assert_int_equal(admit_in_system(NULL), 0);
  assert_int_equal(admit_waiting(NULL), 0);
  admit_wake(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_first_come_first_served, make_queue, free_queue),
      cmocka_unit_test_setup_teardown(test_deadline_leaves_the_queue, make_queue, free_queue),
      cmocka_unit_test_setup_teardown(test_give_up_ends_the_wait, make_queue, free_queue),
      cmocka_unit_test_setup_teardown(test_shutdown_releases_everyone, make_queue, free_queue),
      cmocka_unit_test_setup_teardown(test_counts, make_queue, free_queue),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

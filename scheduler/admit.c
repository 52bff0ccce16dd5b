/* admit.c — the first-come-first-served wait for an agent (contract in
 * admit.h).
 *
 * Each waiter is a node on its own stack, linked into the queue while it
 * waits; one condition variable (on the monotonic clock) wakes them all,
 * and only the head tries. A waiter that times out unlinks itself, so no
 * turn is ever owed to someone who left.
 */
#include "scheduler/admit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/stats.h"

typedef struct waiter {
  struct waiter *next;
} waiter;

struct admit {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  waiter *head, *tail;
  int n;
  int in_system;
  bool shut;
};

err_code admit_create(admit **out, err *e) {
  admit *g = calloc(1, sizeof *g);
  if (!g) return err_set(e, ERR_NOMEM, "out of memory for the admission queue");
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&g->mu, NULL);
  *out = g;
  return ERR_OK;
}

void admit_destroy(admit *g) {
  if (!g) return;
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g);
}

static void unlink_waiter(admit *g, waiter *w) {
  waiter **p = &g->head, *prev = NULL;
  while (*p && *p != w) prev = *p, p = &(*p)->next;
  if (!*p) return;
  *p = w->next;
  if (g->tail == w) g->tail = prev;
  g->n--;
}

static void wait_until(admit *g, double t_ms) {
  struct timespec ts = {.tv_sec = (time_t)(t_ms / 1e3)};
  ts.tv_nsec = (long)((t_ms - (double)ts.tv_sec * 1e3) * 1e6);
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  if (ts.tv_nsec > 999999999L) ts.tv_nsec = 999999999L;
  pthread_cond_timedwait(&g->cv, &g->mu, &ts);
}

int admit_wait(admit *g, admit_try_fn try_take, void *ctx, double until_ms) {
  waiter me = {0};
  pthread_mutex_lock(&g->mu);
  if (g->tail) g->tail->next = &me;
  else g->head = &me;
  g->tail = &me;
  g->n++;
  int got = ADMIT_TIMEOUT;
  for (;;) {
    if (g->shut) {
      got = ADMIT_SHUT;
      break;
    }
    if (g->head == &me && ((got = try_take(ctx)) >= 0 || got == ADMIT_GIVE_UP)) break;
    got = ADMIT_TIMEOUT;
    double now = stats_now_ms();
    if (now >= until_ms) break;
    wait_until(g, now + ADMIT_POLL_MS < until_ms ? now + ADMIT_POLL_MS : until_ms);
  }
  unlink_waiter(g, &me);
  /* The next in line may take a slot now, or leave on its own deadline. */
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  return got;
}

void admit_shutdown(admit *g) {
  if (!g) return;
  pthread_mutex_lock(&g->mu);
  g->shut = true;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

int admit_locked(admit *g, int (*fn)(void *ctx, int waiting), void *ctx) {
  pthread_mutex_lock(&g->mu);
  int v = fn(ctx, g->n);
  pthread_mutex_unlock(&g->mu);
  return v;
}

void admit_wake(admit *g) {
  if (!g) return;
  pthread_mutex_lock(&g->mu);
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

int admit_waiting(admit *g) {
  if (!g) return 0;
  pthread_mutex_lock(&g->mu);
  int n = g->n;
  pthread_mutex_unlock(&g->mu);
  return n;
}

void admit_begin(admit *g) {
  if (!g) return;
  pthread_mutex_lock(&g->mu);
  g->in_system++;
  pthread_mutex_unlock(&g->mu);
}

void admit_end(admit *g) {
  if (!g) return;
  pthread_mutex_lock(&g->mu);
  g->in_system--;
  pthread_mutex_unlock(&g->mu);
}

int admit_in_system(admit *g) {
  if (!g) return 0;
  pthread_mutex_lock(&g->mu);
  int n = g->in_system;
  pthread_mutex_unlock(&g->mu);
  return n;
}

/* admit.h — the queue of requests waiting for an agent to run them whole.
 *
 * Why: when the cluster is saturated a request runs whole on one agent
 * (load-aware planning, infer.h). Choosing that agent when the request
 * arrives binds it to a queue there; an agent whose queue drains sits idle
 * while others still hold several requests (at the end of a burst one
 * agent was left with four), and a split request whose agents hold queued
 * whole runs waits behind one of them at every exchange. So requests wait
 * here instead, first come first served, and only the one at the head may
 * take an agent, and only once one can take it (the caller decides what
 * that means: infer_plan.c gives an agent at most one running and one
 * queued request, none while a split request uses it).
 *
 * Nothing here knows about agents: `try_take` is the caller's, called
 * under this queue's lock, and returns the index it took or -1. Whoever
 * frees what try_take looks at calls admit_wake().
 *
 * Threads: every function is thread-safe; admit_wait blocks its caller. */
#ifndef EDGEDI_SCHEDULER_ADMIT_H
#define EDGEDI_SCHEDULER_ADMIT_H

#include "runtime/err.h"

typedef struct admit admit;

/* A free slot's index (>= 0), taken and counted by the callee; -1: none
 * free now; ADMIT_GIVE_UP: none ever will (the waiter leaves at once). */
typedef int (*admit_try_fn)(void *ctx);

/* The head of the queue looks again at least this often without a wake
 * (an agent that went down frees nothing: its requests fail). */
#define ADMIT_POLL_MS 50.0

err_code admit_create(admit **out, err *e);
/* No waiter may be left. */
void admit_destroy(admit *g);

enum { ADMIT_TIMEOUT = -1, ADMIT_SHUT = -2, ADMIT_GIVE_UP = -3 };

/* Joins the end of the queue and waits until this caller is at its head
 * and try_take(ctx) returns an index, which it returns; ADMIT_TIMEOUT once
 * CLOCK_MONOTONIC (in ms) passes until_ms, the caller's deadline (it leaves
 * the queue, the ones behind move up; until_ms <= now: one try, only when
 * nobody waits ahead); ADMIT_SHUT after admit_shutdown(); ADMIT_GIVE_UP
 * when try_take said so. */
int admit_wait(admit *g, admit_try_fn try_take, void *ctx, double until_ms);

/* Every waiter returns ADMIT_SHUT now, and every later admit_wait at once
 * (the service is stopping; admit_destroy must wait for the waiters'
 * threads to end). */
void admit_shutdown(admit *g);

/* Runs fn(ctx, waiting) under the queue's lock, `waiting` the callers
 * queued now, and returns its value: a decision about the agents that
 * try_take must not see half made (a request split over agents counting
 * itself on them while a whole run is admitted to one). */
int admit_locked(admit *g, int (*fn)(void *ctx, int waiting), void *ctx);

/* Something try_take looks at was freed: the head tries again now. */
void admit_wake(admit *g);

/* Callers waiting now. */
int admit_waiting(admit *g);

/* Requests the scheduler is working on, counted from the moment each
 * arrives (admit_begin) to its end (admit_end), planning included: a burst
 * planned at once sees itself whole, where requests in flight (opened
 * after planning) would each see only the few before it. */
void admit_begin(admit *g);
void admit_end(admit *g);
int admit_in_system(admit *g);

#endif

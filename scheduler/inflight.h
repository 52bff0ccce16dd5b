/* inflight.h — the requests in flight, each with a mailbox.
 *
 * Agents' messages arrive on per-agent reader threads (cluster.c); a
 * request is worked on by its own Infer handler thread (infer.c). This
 * table connects the two without either calling into the other: a reader
 * drops each message into the mailbox of the request it belongs to, with
 * the index the sending agent has in that request and the time it was
 * read; the request's thread takes events out, one at a time, in arrival
 * order. So all of one request's dispatcher calls happen on one thread.
 *
 * Events: an agent's message; "an agent of yours went down" (posted to
 * every open request that uses that agent, so nobody waits for a dead
 * peer); "the scheduler is shutting down" (to every open request, after
 * which opening fails).
 *
 * Agents are opaque keys here (the cluster's session pointers); a message
 * from an agent the request does not use, or for a request that is not
 * open (finished, failed, never existed), is dropped and freed.
 *
 * Threads: every function is thread-safe. inflight_wait() is for the
 * request's own thread only, and never waits past its timeout.
 */
#ifndef EDGEDI_INFLIGHT_H
#define EDGEDI_INFLIGHT_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"

typedef struct inflight inflight;
typedef struct inflight_req inflight_req;

typedef enum inflight_kind {
  INFLIGHT_MESSAGE,    /* msg from agent `device` */
  INFLIGHT_AGENT_DOWN, /* agent `device` is gone: reason */
  INFLIGHT_SHUTDOWN,   /* the scheduler is stopping: reason */
} inflight_kind;

typedef struct inflight_event {
  inflight_kind kind;
  int device;                  /* index among the request's agents */
  Edgedi__V1__ExecuteOut *msg; /* MESSAGE: the receiver frees it (rpc_free) */
  double at_ms;                /* when it was read or posted (monotonic ms) */
  char reason[ERR_MSG_BYTES];  /* AGENT_DOWN, SHUTDOWN */
} inflight_event;

err_code inflight_create(inflight **out, err *e);
/* Every request must have been closed. */
void inflight_destroy(inflight *t);

/* Opens the mailbox of request `id`, whose device i is agents[i].
 * ERR_UNAVAILABLE after inflight_shutdown(); ERR_INVALID for an id that is
 * already open. */
err_code inflight_open(inflight *t, uint64_t id, const void *const *agents,
                       int n_agents, inflight_req **out, err *e);

/* Messages of request id `alias` from `agent` go to r's mailbox as from
 * device `device`, and so does "agent down" for that agent: a stand-in,
 * another agent doing one of the request's devices' work under an id of
 * its own (scheduler/dispatch.h). ERR_INVALID for an id in flight,
 * ERR_RANGE past INFLIGHT_MAX_ALIASES. */
enum { INFLIGHT_MAX_ALIASES = 8 };
err_code inflight_alias(inflight *t, inflight_req *r, uint64_t alias, const void *agent,
                        int device, err *e);

/* Closes and frees the mailbox, with any events still in it. Later
 * messages of the request are dropped. */
void inflight_close(inflight *t, inflight_req *r);

/* A reader's message `msg` (ownership taken) of request `id` from `agent`,
 * read at at_ms. Returns whether a mailbox took it. */
bool inflight_deliver(inflight *t, uint64_t id, const void *agent,
                      Edgedi__V1__ExecuteOut *msg, double at_ms);

/* Tells every open request that uses `agent` that it is gone. */
void inflight_agent_down(inflight *t, const void *agent, const char *reason);

/* Tells every open request to stop; opening fails from now on. */
void inflight_shutdown(inflight *t, const char *reason);

/* Takes the next event, waiting up to timeout_ms (<= 0: do not wait).
 * false when none came in time. */
bool inflight_wait(inflight_req *r, int timeout_ms, inflight_event *ev);

/* Requests open now. */
int inflight_count(inflight *t);

/* Monotonic clock, ms: the one clock of event times. */
double inflight_now_ms(void);

#endif

/* infer_internal.h — what infer.c (a request's life: attempts, records,
 * reply) and infer_attempt.c (one attempt: dispatch, events, the watch for
 * stuck agents and stragglers) share. Not part of the module's promise.
 *
 * Everything here belongs to the request's own thread: no locks.
 */
#ifndef EDGEDI_INFER_INTERNAL_H
#define EDGEDI_INFER_INTERNAL_H

#include <stdbool.h>

#include "scheduler/dispatch.h"
#include "scheduler/infer.h"

/* What the scheduler saw of one tile (one part of one segment). */
typedef struct infer_tile {
  int device, segment, part;
  int by;               /* who ran it: `device`, or a stand-in's tag */
  double sent_ms;       /* its job was written to the agent's stream */
  double standin_sent_ms; /* ... and to its latest stand-in's */
  bool reported;        /* its TileResult came */
  double at_ms;         /* ... and was read then */
  Edgedi__V1__TileResult r; /* its repeated fields not kept */
  double transfer_ms;   /* estimated, see infer.h */
  double *spans;        /* TileResult.spans, ms from the request's t0_ms (owned) */
  size_t n_spans;       /* pairs */
} infer_tile;

/* How an attempt ended, when not done. */
typedef enum infer_end {
  INFER_END_NONE,      /* done, or failed for good (status in the dispatcher) */
  INFER_END_LOST,      /* an agent was lost: re-plan without it */
  INFER_END_STRAGGLER, /* an agent straggled: re-plan without it */
} infer_end;

/* Another agent doing device `role`'s work in this attempt (dispatch.h,
 * "Stand-ins"; infer.h, "Agent loss"). */
typedef struct infer_standin {
  cluster_member host; /* a reference, given back when the attempt is cleared */
  int role, tag;       /* tag: its device index in the dispatcher and mailbox */
  uint64_t id;         /* its wire id */
  bool gone;           /* lost, or its stream cannot be written */
  bool counted;        /* in its host's busy count (cluster_agent_busy_add) */
} infer_standin;

typedef struct infer_req {
  const infer_ctx *c;
  preprocess_image img;
  plan_options po;
  const char *model_name, *planner_name; /* as the client asked */
  int64_t id;
  double t0_ms, deadline_at_ms;
  int deadline_ms;
  uint64_t bytes_moved; /* over every attempt */
  bool alone;           /* nothing else was in flight when it came */

  /* Agents not to plan on again in this request, each with a reference
   * (so that a new session cannot take its address): lost ones, and
   * stragglers (slow: used again when nobody else is left). */
  cluster_agent *excluded[INFER_MAX_ATTEMPTS];
  bool excluded_slow[INFER_MAX_ATTEMPTS];
  int n_excluded;
  int straggler_replans;
  char losses[ERR_MSG_BYTES / 2]; /* "agent 'c' went down: ...; ..." for messages */

  /* The attempt running now. */
  int attempt;
  infer_plan ip;
  dispatch *d;
  bool started;         /* its jobs are out: stand-ins may follow */
  inflight_req *mb;
  dispatch_outbox ob;
  infer_tile *tiles;
  int n_tiles;
  bool write_failed[PLAN_MAX_DEVICES]; /* do not write to it again */
  int error_device;                    /* the agent whose TileError failed it */
  infer_end end;
  int end_device;                      /* the agent lost or straggling */
  double attempt_t0_ms;                /* its jobs were written */
  double last_heard_ms[PLAN_MAX_DEVICES]; /* per device: a message of its work came */
  double last_any_ms;                  /* from any of its agents */
  infer_standin standins[DISPATCH_MAX_STANDINS];
  int n_standins;
  char recovery[ERR_MSG_BYTES / 2]; /* stand-ins, for the reply: "'f1' for 'v'" */
} infer_req;

/* The wire id of the attempt running now. */
uint64_t infer__wire_id(const infer_req *r);

/* Name of the agent of device or stand-in tag `sender` ("?" out of
 * range). */
const char *infer__dev_name(const infer_req *r, int sender);

/* Senders: the attempt's devices 0 .. n_members - 1 and its stand-ins'
 * tags after them. The device whose work `sender` does (-1: none), its
 * agent as a member (NULL: none), whether it is gone. */
int infer__role_of(const infer_req *r, int sender);
const cluster_member *infer__member_of(const infer_req *r, int sender); /* NULL: none */
cluster_agent *infer__agent_of(const infer_req *r, int sender);
bool infer__gone(const infer_req *r, int sender);
void infer__set_gone(infer_req *r, int sender);

/* Whether the stand-in mechanism is on for this request: loss policy
 * other than restart, or stragglers watched. */
bool infer__standins_on(const infer_req *r);

/* Starts a stand-in for device `role` (infer.h, "Agent loss",
 * "Stragglers"): for a loss (straggler false), when the policy says so
 * (infer_ctx.on_loss: always, or when it is predicted to finish sooner
 * than starting over); for a straggler, whenever another agent can. `why`
 * says what happened, for the reply. Whether one was started. */
bool infer__stand_in(infer_req *r, int role, bool straggler, const char *why);

/* Appends to what the reply says of losses and stragglers ("; " between). */
void infer__note(infer_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Gives back the stand-ins' references. */
void infer__standins_clear(infer_req *r);

/* Runs the attempt whose plan is r->ip, from models on the agents to a
 * finished or failed dispatcher. OK when done; otherwise the status, with
 * r->end saying whether another attempt may follow. */
grpc_status_code infer__attempt(infer_req *r, err *e);

/* Frees what the attempt holds (mailbox, dispatcher, tiles), not its
 * plan. */
void infer__attempt_clear(infer_req *r);

#endif

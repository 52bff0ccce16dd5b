/* infer.h — one inference, end to end on the scheduler: validate, plan,
 * record, dispatch over the agents' streams, wait, answer.
 *
 * infer_run() is the Infer RPC without the RPC: it runs on the caller's
 * thread (each Infer call has its own), so many requests are in flight at
 * once. Their jobs are written to the agents' streams as soon as they are
 * planned; an agent runs them in arrival order, so one request's tiles
 * queue behind the previous one's and requests pipeline.
 *
 * Agent loss (DESIGN.md: a request survives a dead board). An agent whose
 * stream ends, whose stream cannot be written, or that a request finds
 * stuck is lost to the request. Stuck: the request has heard nothing of
 * any of its agents for max(INFER_STUCK_FACTOR x the plan's predicted
 * time, the stuck floor), this agent owes the earliest unfinished segment
 * (the one everybody else waits for; among several, the one silent
 * longest), and it sent nothing for any other request in that time either
 * (requests queue behind each other on an agent: busy is not stuck): it
 * is marked down (cluster_agent_fail). What follows is one of two
 * recoveries (infer_ctx.on_loss):
 *  - a stand-in: another up agent takes over the lost agent's work within
 *    the running attempt (scheduler/dispatch.h, "Stand-ins"). It gets the
 *    lost agent's jobs from the first and every row relayed to it so far,
 *    under a wire id of its own (the attempt's | (k + 1) <<
 *    INFER_STANDIN_SHIFT), so it may be an agent with work of its own in
 *    the same request; the other agents go on where they are, their
 *    resident strips and finished segments kept, and what the lost agent
 *    had already sent counts (its second copy is dropped). The host is
 *    the up agent predicted to finish the lost work first: that work at
 *    its cost model, after its own unfinished tiles of this request,
 *    stretched by the other requests it is busy with; a stand-in counts in
 *    its host's busy count (cluster_agent_busy) until the attempt ends;
 *  - a restart: a new plan over the agents still up (the lost one left
 *    out), every job sent again from segment 0 with the image, under a
 *    new wire id (request id | attempt << INFER_ATTEMPT_SHIFT) so that the
 *    agents drop what is left of the old attempt (Release) and its late
 *    messages reach no mailbox. The work before the loss is thrown away,
 *    but the rest is spread over every agent left.
 * INFER_ON_LOSS_AUTO, the default, stands in when that is predicted to end
 * sooner: max(the plan's time left, the host's time for the lost work)
 * against the plan's time over the speeds left (predicted x sum of
 * speeds / the same without the lost agent's), so a loss late in a
 * request, or of a small share, is stood in for and an early loss of a
 * large share starts over. Either way the logits are exact: a stand-in
 * computes what the lost agent would have, a restart is an ordinary
 * distributed run. A stand-in that is lost in turn is replaced the same
 * way. A request fails only when no agent is left (UNAVAILABLE "no agent
 * is up ..."), when its deadline passes, or after INFER_MAX_ATTEMPTS
 * plans. A lost agent that registers again is profiled anew and planned
 * on by the next request.
 *
 * Stragglers (infer_ctx.straggler_factor F > 0; 0, the default, is off):
 * when the agent owing the earliest unfinished segment s has not finished
 * it F times later than the plan predicts the end of s (from the
 * attempt's start, plus INFER_STRAGGLER_SLACK_MS), its work is re-issued
 * to another up agent as a stand-in (unless on_loss is RESTART) and the
 * first copy of each result wins: the straggler goes on, and whichever of
 * the two is ahead decides. While a stand-in races for work still owed no
 * other straggler is called (the others may be waiting for its rows), and
 * an agent stood in for never hosts a stand-in. When no other agent can
 * take it (or with
 * RESTART), the attempt is abandoned and the request re-planned without
 * the straggler, at most INFER_MAX_STRAGGLER_REPLANS times. Either way its
 * live cost model is scaled by how late it was so that the next requests
 * give it less work until its refit says otherwise. Lateness is counted
 * from the attempt's start, so with requests pipelined on the agents (a
 * request's tiles queued behind earlier ones) the factor must exceed the
 * depth of the pipeline.
 *
 * Online cost models: after each attempt, every agent that reported a
 * tile is refitted from its history (refit_run.h), so the next plan reads
 * its current speed.
 *
 * Statuses (each with a message saying what was wrong):
 *   FAILED_PRECONDITION  the request states another protocol version
 *                        (0, not stated, is accepted);
 *   NOT_FOUND            unknown model;
 *   INVALID_ARGUMENT     no image, an image whose size, channels, type or
 *                        byte count does not fit the model, unknown planner;
 *   UNAVAILABLE          no agent up (also: none left after losses, naming
 *                        the agents lost), an agent that cannot load the
 *                        model or fails its tile (named, with why);
 *   DEADLINE_EXCEEDED    no answer within the request's deadline
 *                        (deadline_ms, or the scheduler's default), naming
 *                        the agents and segments still owed;
 *   INTERNAL             an agent that answers what was not asked (a bug).
 * No request waits past its deadline for the agents (a write to a stuck
 * agent is bounded separately by the rpc layer's write timeout).
 *
 * Records: from planning on, every request is a row of `requests` (begun
 * with its plan, finished with its outcome and, in `recovery`, what it did
 * about agents lost or straggling, whatever happens), and every tile that
 * reported a result a row of `tile_history` with predicted and measured
 * times (a stand-in's under its host, its transfer timed from its own
 * job). Requests refused before planning (bad input) are not recorded:
 * they never reached the cluster.
 *
 * What transfer time means. An agent reports, per tile, its compute time
 * (the run, emulated slowdown and strip preparation included) and its
 * wait (from taking up the job to starting it, plus feature-enhancement
 * pauses: waiting for neighbours' rows and for the global FE scale). The
 * scheduler knows when it wrote the job (sent) and when the TileResult
 * was read (result). So
 *     result - sent = downlink + queued + wait + compute + uplink,
 * where `queued` is the time the job's message sat at the agent before the
 * agent took it up, busy with other work (an earlier request's tiles, an
 * earlier segment of this one). The scheduler bounds `queued` from below
 * with what it saw of the agent before the latest moment the job can have
 * been taken up (result - compute - wait - the result's own way up at the
 * agent's measured link): the compute of tiles whose results arrived in
 * between, and the arrival of its last message of any kind (less half a
 * round trip), whichever says longer, or by what the agent itself reports
 * (TileResult.queued_ms: from the job message's arrival to its take-up),
 * when that is longer still. It records
 *     transfer = result - sent - compute - wait - queued  (at least 0):
 * the job's bytes down, its exports, output and result up, and per-message
 * overheads. FE exchanges and halo waits count as wait, not transfer.
 * Agent work that is neither compute nor wait and shows in no message
 * (a model's first use on an agent preparing its executor) lands in the
 * first such tile's transfer. It is the number to compare with the
 * planner's predicted transfer_ms (and to refit links from), not an exact
 * link measurement.
 */
#ifndef EDGEDI_INFER_H
#define EDGEDI_INFER_H

#include <stdbool.h>
#include <stdint.h>

#include <grpc/status.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"
#include "runtime/preprocess.h"
#include "scheduler/admit.h"
#include "scheduler/cluster.h"
#include "scheduler/inflight.h"
#include "scheduler/models.h"
#include "scheduler/plan.h"
#include "scheduler/plan_recall.h"
#include "storage/store.h"

enum {
  INFER_DEFAULT_DEADLINE_MS = 30000,
  INFER_MAX_DEADLINE_MS = 3600 * 1000, /* a larger deadline_ms is this */
  /* Silence that marks an agent stuck: this many times the plan's
   * predicted time, and never less than the floor (infer_ctx). */
  INFER_STUCK_FACTOR = 10,
  INFER_STUCK_FLOOR_MS = 3000,
  INFER_MAX_ATTEMPTS = 8,          /* plans per request, losses included */
  INFER_MAX_STRAGGLER_REPLANS = 2, /* of those, for stragglers */
  /* added to a straggler's allowance: a busy host delays any thread by
   * tens of ms now and then (a 37 ms hiccup of a 3.7 ms tile made a fast
   * agent a "straggler" under CI's load at 20 ms), and re-issuing work
   * costs far more than waiting that out */
  INFER_STRAGGLER_SLACK_MS = 50,
  INFER_WATCH_TICK_MS = 20,        /* how often a request checks its agents */
  INFER_ATTEMPT_SHIFT = 48,        /* wire id = id | attempt << this */
  INFER_STANDIN_SHIFT = 40,        /* a stand-in's: wire id | (k + 1) << this */
};

/* What a request does when it loses an agent (above, "Agent loss"). */
typedef enum infer_on_loss {
  INFER_ON_LOSS_AUTO,    /* a stand-in when predicted sooner, else a restart */
  INFER_ON_LOSS_RESTART, /* always a new plan over the agents left */
  INFER_ON_LOSS_STANDIN, /* always a stand-in while another agent is up */
} infer_on_loss;

/* "auto", "restart", "stand-in" (NULL for anything else), and back. */
const char *infer_on_loss_name(infer_on_loss p);
bool infer_on_loss_parse(const char *name, infer_on_loss *out);

#define INFER_DEFAULT_PLANNER "exact"
/* A lone request's plan is remembered for reuse (plan_recall.h) only when
 * it ran within this fraction of its prediction (infer.c, remember_plan). */
#define INFER_REMEMBER_TOLERANCE 0.10

/* What a request runs against; all outlive every call. */
typedef struct infer_ctx {
  store *st;
  models *ms;
  cluster *cl;
  inflight *inf;
  const char *default_planner; /* NULL: INFER_DEFAULT_PLANNER */
  int default_deadline_ms;     /* <= 0: INFER_DEFAULT_DEADLINE_MS */
  double straggler_factor;     /* > 0: stand in for stragglers; 0: off */
  /* An infer_on_loss; atomic so that a running service can be switched
   * (service_set_on_loss). */
  _Atomic int on_loss;
  int stuck_floor_ms;          /* <= 0: INFER_STUCK_FLOOR_MS */
  /* Load-aware planning (below) off: every request split by its planner
   * whatever else is in flight. */
  bool split_always;
  /* Every FE's sums sent at the FE, not early (plan_options.fe_late). */
  bool fe_late;
  /* Recent plans offered again while nearly as good (plan_recall.h);
   * NULL: every request runs its fresh plan. */
  plan_recall *recall;
  /* Where requests to run whole wait for an agent (admit.h); it also
   * counts the requests the scheduler holds. Never NULL. */
  admit *adm;
} infer_ctx;

/* Load-aware planning. Splitting a request over every agent is what makes
 * one request fast, and it costs work (halo rows recomputed, strips too
 * thin to run at full rate) and waiting (exchanges, the slowest strip).
 * When the requests the scheduler holds (from arrival, admit.h), this one
 * included, are at least as many as the agents up, every agent has work
 * anyway and those costs buy nothing: a request that names no planner then
 * runs whole on the one agent that would finish it first, counting the
 * requests it already has (whole-model time x (busy + 1)), so a saturated
 * cluster serves at its capacity. A request that names a planner is always
 * split by it; so is every request with infer_ctx.split_always. The plan
 * says "single" as its planner. */
#define INFER_SINGLE_PLANNER "single"
/* Such requests wait at the scheduler, first come first served
 * (infer_ctx.adm), until an agent has fewer than this many requests
 * (one running, one whose image is already on its way) and no split
 * request: late binding, so that no agent idles while another holds a
 * queue, and a split request does not wait behind whole runs at every
 * exchange. While any run whole or wait to, a request is not split. */
#define INFER_SINGLE_DEPTH 2

/* The split the scheduler would use now for a model. */
typedef struct infer_plan {
  const models_entry *model;
  cluster_member members[PLAN_MAX_DEVICES]; /* plan device i = members[i] */
  int n_members;
  char planner[PLAN_NAME_BYTES];
  plan p;
  uint64_t plan_id; /* a hash of the split: equal ids, equal splits */
  bool held;        /* counted in its agents' busy (infer_plan_hold) */
  bool single;      /* runs whole on members[0], counted as such */
  uint32_t counted; /* members counted busy: bit i for members[i] */
} infer_plan;

/* Plans `model_name` with `planner_name` (NULL or "": the default) over
 * the agents up now. The image format decides the bytes segment 0 moves
 * (o NULL: uint8 gray, as a camera sends). A request to run whole waits
 * for its agent until admit_until_ms (inflight_now_ms clock;
 * DEADLINE_EXCEEDED after); 0: no wait, the agent is chosen at once (a
 * plan only shown). NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE as for
 * infer_run. On OK free with infer_plan_free(). */
grpc_status_code infer_make_plan(const infer_ctx *c, const char *model_name,
                                 const char *planner_name,
                                 const plan_options *o, double admit_until_ms,
                                 infer_plan *out, err *e);
/* The same without the agents in `exclude` (sessions: a re-registered
 * agent is a new session and is not excluded). */
grpc_status_code infer_make_plan_excluding(const infer_ctx *c, const char *model_name,
                                           const char *planner_name,
                                           const plan_options *o,
                                           cluster_agent *const *exclude,
                                           int n_exclude, double admit_until_ms,
                                           infer_plan *out, err *e);
/* Counts the plan in the busy count of every agent it gives rows, until
 * infer_plan_free(): a request about to run holds its plan. */
void infer_plan_hold(infer_plan *ip);
/* Its agents are done with it (the attempt ended): counted busy no more,
 * the admission queue told. Again, or on a plan not held: nothing. */
void infer_plan_done(const infer_ctx *c, infer_plan *ip);
/* infer_plan_done, then the references given back. */
void infer_plan_free(const infer_ctx *c, infer_plan *ip);
/* The plan's devices as the planner and plan_recall see them: devs[i] and
 * sessions[i] of members[i] (PLAN_MAX_DEVICES each). */
void infer_plan_devices(const infer_plan *ip, plan_device *devs, uint64_t *sessions);

/* A finished request's reply; `msg` points into the rest. */
typedef struct infer_reply {
  Edgedi__V1__InferReply msg;
  float *logits;
  Edgedi__V1__DeviceTiming timings[PLAN_MAX_DEVICES];
  Edgedi__V1__DeviceTiming *timing_ptrs[PLAN_MAX_DEVICES];
  char names[PLAN_MAX_DEVICES][PLAN_NAME_BYTES];
  char planner[PLAN_NAME_BYTES];
  char recovery[ERR_MSG_BYTES]; /* InferReply.recovery */
  float *spans;              /* every DeviceTiming's spans, one after another */
  uint32_t *span_segments;   /* ... and their segments */
} infer_reply;

/* Runs one request. On GRPC_STATUS_OK out->msg is the reply (free with
 * infer_reply_free); otherwise e says why. */
grpc_status_code infer_run(const infer_ctx *c,
                           const Edgedi__V1__InferRequest *req,
                           infer_reply *out, err *e);
void infer_reply_free(infer_reply *r);

/* The wire image as a whole picture for preprocess (pointing into img).
 * ERR_INVALID / ERR_SHAPE with a message for a malformed one. */
err_code infer_image(const Edgedi__V1__Image *img, preprocess_image *out,
                     err *e);

/* The plan as JSON, as the requests table keeps it; free() it. */
char *infer_plan_json(const infer_plan *ip);

#endif

/* cluster.h — the live agents: registration, one Execute stream per agent,
 * routing what agents send, profiling, and noticing agents that die.
 *
 * Each registration makes a session (cluster_agent): a channel to the
 * agent's address and ONE long-lived Agent/Execute stream, opened with a
 * Hello each way carrying EDGEDI_PROTOCOL_VERSION. A session's life:
 *
 *   RegisterAgent -> handshake -> PROFILING -> UP -> DOWN
 *
 *  - PROFILING: a thread of its own sends the agent every loaded model
 *    (Agent.LoadModel), asks for calibration samples (Agent.Profile), fits
 *    ms = a * GFLOP + b (profile.h), probes the link with Pings of two
 *    sizes over the Execute stream, and stores samples and the cost model
 *    with its fit error. Only then is the agent UP and planned on.
 *  - UP: its reader thread routes every ExecuteOut to the request it
 *    belongs to (inflight.h) and keeps the times its results came in
 *    (cluster_agent_activity). Its cost models are live data: the general
 *    one from profiling, one per model restored from the database (kind
 *    STORE_KIND_MODEL_PREFIX + name), and every refit after a request
 *    (refit.h) replaces them through cluster_agent_set_cost(), which
 *    refuses nonsense so that the planner never sees it.
 *  - DOWN: the stream ended (agent died, network gone, profiling failed,
 *    a newer registration, scheduler shutdown, or a request found it
 *    stuck: cluster_agent_fail). Its requests in flight are told at once
 *    (they re-plan on the agents left, infer.h), and the database says
 *    'down'. A session never comes back: the agent registers again and
 *    gets a new session, profiled anew.
 *
 * Registration rules: a protocol version other than ours is refused
 * FAILED_PRECONDITION naming both versions; a name held by a live session
 * at another address is refused ALREADY_EXISTS naming the holder; the same
 * name at the same address (an agent that restarted), or a name whose
 * session is down, replaces the old session. An address that does not
 * answer the handshake is refused UNAVAILABLE. The database keeps every
 * device; at start they are all down until their agents register again
 * (agents re-register on their own when their stream ends).
 *
 * Threads: every function is thread-safe. Sessions are reference counted:
 * cluster_acquire_up() hands out references that keep a session (and its
 * stream) usable for writing until cluster_release(), even after it went
 * down.
 */
#ifndef EDGEDI_CLUSTER_H
#define EDGEDI_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include <grpc/status.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"
#include "runtime/rpc.h"
#include "scheduler/inflight.h"
#include "scheduler/models.h"
#include "scheduler/plan.h"
#include "storage/store.h"

#define CLUSTER_EXECUTE_METHOD "/edgedi.v1.Agent/Execute"
#define CLUSTER_LOAD_MODEL_METHOD "/edgedi.v1.Agent/LoadModel"
#define CLUSTER_PROFILE_METHOD "/edgedi.v1.Agent/Profile"

/* Policy, in one place. */
enum {
  /* An agent must answer the stream's Hello this fast. */
  CLUSTER_HANDSHAKE_TIMEOUT_MS = 3000, /* inside an agent's 5 s RegisterAgent deadline */
  /* Agent.LoadModel: the agent builds the model (seconds for a big one). */
  CLUSTER_LOAD_MODEL_DEADLINE_MS = 30000,
  /* Agent.Profile: calibration jobs on an emulated slow board. */
  CLUSTER_PROFILE_DEADLINE_MS = 60000,
  CLUSTER_PROFILE_REPEATS = 3,      /* timed runs per calibration size */
  CLUSTER_PING_TIMEOUT_MS = 5000,   /* one link probe */
  CLUSTER_LINK_SMALL_PINGS = 5,     /* round trips without payload */
  CLUSTER_LINK_LARGE_PINGS = 3,     /* with CLUSTER_LINK_PROBE_BYTES each way */
  /* 2 x 21 ms on a 100 Mbit/s link: well above timer noise. */
  CLUSTER_LINK_PROBE_BYTES = 256 << 10,
  /* How often a reader looks up from an idle stream. */
  CLUSTER_READ_POLL_MS = 200,
  /* An idle agent is pinged this often; its answer refreshes last_seen. */
  CLUSTER_HEARTBEAT_MS = 10000,
  /* Messages remembered per agent for cluster_agent_activity: several
   * requests' worth (each FE layer and relay is a message). */
  CLUSTER_ACTIVITY_HISTORY = 1024,
  /* Per-model cost models a session keeps; past this the oldest goes (it
   * is still in the database and comes back at the next registration). */
  CLUSTER_MAX_MODEL_COSTS = 32,
};

typedef struct cluster cluster;
typedef struct cluster_agent cluster_agent;

/* Told of every agent event (registered, up with its cost model, refused,
 * down and why), from any thread; must be thread-safe. */
typedef void (*cluster_log_fn)(void *ctx, const char *msg);

typedef struct cluster_options {
  rpc_options rpc;    /* channels to the agents: message size limit */
  cluster_log_fn log; /* may be NULL: silent */
  void *log_ctx;
} cluster_options;

/* Marks every stored device down (none is connected yet). st, ms and inf
 * outlive the cluster. */
err_code cluster_create(store *st, models *ms, inflight *inf,
                        const cluster_options *o, cluster **out, err *e);

/* Refuses new registrations and ends every stream: readers, profilers and
 * writers return promptly. */
void cluster_stop(cluster *c);

/* Stops, waits for every session's threads, leaves the devices 'down' and
 * frees. References still held by others stay valid until released. */
void cluster_destroy(cluster *c);

/* RegisterAgent. On GRPC_STATUS_OK, *device_id is the device's id; the
 * agent is then PROFILING (profiled in the background). Otherwise e says
 * why, and the status is the one to answer with. */
grpc_status_code cluster_register(cluster *c,
                                  const Edgedi__V1__RegisterAgentRequest *req,
                                  int64_t *device_id, err *e);

/* An agent a request may use: a reference and what the planner needs. */
typedef struct cluster_member {
  cluster_agent *agent;
  int64_t device_id;
  uint64_t session; /* unique per registration (an agent restarted: a new one) */
  plan_device dev;  /* name and cost model */
} cluster_member;

/* The agents UP with a cost model, ordered by name, at most `max`; each
 * with a reference the caller gives back with cluster_release(). dev is
 * the agent's cost model for `model` when it has one of its own, else its
 * general one (model NULL: always the general one). */
int cluster_acquire_up(cluster *c, const char *model, cluster_member *out, int max);

/* A request of `model` that ran alone on the cluster: its plan's price,
 * its measured latency and plan_round_trips, for the overhead per round
 * trip that cluster_acquire_up adds to the members' round trips
 * (handoff.h). */
void cluster_note_request(cluster *c, const char *model, double predicted_ms,
                          double measured_ms, int round_trips);
void cluster_release(cluster_agent *a);
/* One more reference to a session already held (given back with
 * cluster_release), e.g. to remember it after a plan is freed. */
void cluster_retain(cluster_agent *a);

/* The current session of `name` (live or down) with a reference, or NULL. */
cluster_agent *cluster_find(cluster *c, const char *name);

/* "2 registered: a profiling, b down" — for "no agent is up" messages. */
void cluster_describe(cluster *c, char *buf, size_t len);

/* Requests in flight that give the agent rows: infer.c counts them up
 * when a request's plan is held and down when its agents are done; the
 * load-aware policy (infer.h) reads them. `single`: the request runs whole
 * on this agent (counted in *singles too). */
void cluster_agent_busy_add(cluster_agent *a, int delta, bool single);
/* All requests counted; *singles (may be NULL) gets the whole runs. */
int cluster_agent_busy(cluster_agent *a, int *singles);

const char *cluster_agent_name(const cluster_agent *a);
int64_t cluster_agent_device_id(const cluster_agent *a);

/* false once the session is down; *reason (may be NULL) gets why. */
bool cluster_agent_alive(cluster_agent *a, char *reason, size_t len);

/* Marks the agent down with `reason` (a request found it stuck): its
 * stream is ended, every request using it is told, and it must register
 * again to be used. */
void cluster_agent_fail(cluster_agent *a, const char *reason);

/* The live cost model the planner reads for `model` (NULL: the general
 * one; a model without its own gets the general one). false before
 * profiling gave the agent one. */
bool cluster_agent_get_cost(cluster_agent *a, const char *model, plan_device *out);
/* The same, true only when the agent has a model of its own for `model`. */
bool cluster_agent_model_cost(cluster_agent *a, const char *model, plan_device *out);

/* The cost model as the session's profiling measured it (calibration jobs,
 * Pings over the Execute stream), whatever refits made of it since; false
 * before profiling. */
bool cluster_agent_profiled(cluster_agent *a, plan_device *out);

/* Replaces the live cost model of `model` (NULL: the general one) after
 * refit_check_device(): ERR_INVALID, naming the coefficient, for a model
 * with a NaN, infinite, negative or zero coefficient where that makes no
 * sense, and the previous model stays. ERR_UNAVAILABLE before profiling
 * gave the agent a general model. cost->name is ignored. */
err_code cluster_agent_set_cost(cluster_agent *a, const char *model, const plan_device *cost,
                                err *e);

/* Makes sure the agent has the model (Agent.LoadModel once per session and
 * model; concurrent callers wait for one load). deadline_ms bounds the
 * call. */
err_code cluster_agent_ensure_model(cluster_agent *a, const models_entry *en,
                                    int deadline_ms, err *e);

/* Writes one message on the agent's Execute stream (any thread). */
err_code cluster_agent_send(cluster_agent *a, const Edgedi__V1__ExecuteIn *msg,
                            err *e);
/* The same for an ExecuteIn already packed (the dispatcher's outbox): relayed
 * rows go on as they are, without a decode and re-encode. */
err_code cluster_agent_send_packed(cluster_agent *a, const uint8_t *data, size_t len,
                                   err *e);

/* What the agent was seen doing between from_ms and to_ms (monotonic ms,
 * inflight_now_ms), for transfer estimates: *busy_ms is the compute time
 * of tiles whose TileResults arrived in (from_ms, to_ms], each counted from
 * no earlier than from_ms; *last_ms the arrival of the latest message of
 * any kind in (from_ms, to_ms], or from_ms when none came. */
void cluster_agent_activity(cluster_agent *a, double from_ms, double to_ms,
                            double *busy_ms, double *last_ms);

#endif

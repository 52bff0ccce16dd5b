/* cluster_internal.h — what cluster.c (sessions, registration, routing) and
 * cluster_profile.c (calibration and link probes) share. Not part of the
 * module's promise; no other module includes it.
 *
 * Locking: cluster.mu guards the session list and `stopped`;
 * cluster.register_mu serializes registrations (rare, each bounded by the
 * handshake timeout); a session's mu guards its state, cost model, down
 * reason, pong slot and message history; its load_mu serializes its model
 * loads. Order: register_mu, then cluster.mu, then a session's mu; never
 * the other way. No lock is held across a network call except load_mu
 * (whose holder is that call).
 */
#ifndef EDGEDI_CLUSTER_INTERNAL_H
#define EDGEDI_CLUSTER_INTERNAL_H

#include <pthread.h>

#include "runtime/modelspec.h"
#include "scheduler/cluster.h"
#include "scheduler/handoff.h"

/* A per-model cost model of a session. */
typedef struct cluster_model_cost {
  char model[STORE_NAME_BYTES];
  plan_device cost;
} cluster_model_cost;

typedef struct cluster_seen {
  double at_ms;      /* when a message was read */
  double compute_ms; /* a TileResult's compute time; 0 for other messages */
} cluster_seen;

struct cluster_agent {
  cluster *c;
  char name[STORE_NAME_BYTES];
  char address[STORE_ADDRESS_BYTES];
  int64_t device_id;
  uint64_t session; /* cluster_member.session */
  rpc_channel *ch;
  rpc_stream *stream;
  pthread_t reader, profiler;
  bool reader_started, profiler_started;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* pongs, going down */
  int refs;
  store_device_state state;
  bool stopping;      /* cluster_stop or a replacement: not the agent's fault */
  bool has_cost;
  plan_device cost; /* the general one */
  plan_device profiled; /* the general one as profiling measured it */
  cluster_model_cost model_costs[CLUSTER_MAX_MODEL_COSTS];
  int n_model_costs, next_model_cost; /* next_model_cost: the slot to reuse when full */
  char down_reason[ERR_MSG_BYTES];
  uint64_t want_seq;  /* the probe Ping waited for */
  bool pong_got;
  double pong_at_ms;
  double last_heard_ms;
  cluster_seen seen[CLUSTER_ACTIVITY_HISTORY]; /* a ring */
  int seen_n, seen_next;

  int busy;    /* requests in flight whose plan gives it rows (under mu) */
  int singles; /* of those, the ones that run whole on it (under mu) */

  pthread_mutex_t load_mu;
  char (*loaded)[MODELSPEC_DIGEST_BYTES];
  int n_loaded, cap_loaded;
};

struct cluster {
  store *st;
  models *ms;
  inflight *inf;
  cluster_options o;
  pthread_mutex_t register_mu;
  pthread_mutex_t mu;
  bool stopped;
  cluster_agent **v; /* the current session of each name, live or down */
  int n, cap;
  handoff handoff; /* under mu */
};

/* Tells the log callback, if any (printf-style). */
void cluster__log(cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The profiling thread's body (cluster_profile.c): models, calibration,
 * link, cost model; then UP, or the session is failed with the reason. */
void *cluster__profile_main(void *arg);

/* Ends a session's stream with `reason` as why it went down (kept when a
 * reason is already known). The reader then does the rest. */
void cluster__fail(cluster_agent *a, const char *reason);

/* Writes a Ping of `payload` bytes asking `reply` bytes back and waits for
 * its Pong: the round trip in ms, or < 0 with e filled. */
double cluster__ping(cluster_agent *a, uint64_t seq, size_t payload,
                     size_t reply, int timeout_ms, err *e);

#endif

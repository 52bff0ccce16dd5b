/* agent.h — the node agent: the Agent gRPC service (Execute, LoadModel,
 * Profile) over the tile engine, and its registration with the scheduler.
 * edgedi-agent (agent_main.c) is flags around this module; tests run it
 * in-process.
 *
 * Execute (bidirectional stream, one per scheduler):
 *  - the first message must be a Hello carrying EDGEDI_PROTOCOL_VERSION;
 *    the agent answers with its own Hello (version, name). Another version
 *    ends the stream FAILED_PRECONDITION "agent speaks protocol v1,
 *    scheduler v2"; another first message ends it INVALID_ARGUMENT; no
 *    Hello within AGENT_HELLO_TIMEOUT_MS ends it DEADLINE_EXCEEDED.
 *  - then every ExecuteIn goes through the link emulator's incoming
 *    direction, into a fresh tile engine (tile.h), and each ExecuteOut it
 *    produces through the outgoing direction onto the stream, in order.
 *    Receiving, computing and sending run on three threads, so an emulated
 *    link carries messages while the device computes, as a real one would.
 *  - bytes that do not decode as an ExecuteIn get a TileError (request 0,
 *    INVALID_ARGUMENT "malformed ExecuteIn ...") and the stream goes on;
 *    bad jobs, rows and scales get the engine's TileErrors.
 *  - one stream is live at a time: a stream whose Hello is accepted
 *    replaces the live one (a restarted scheduler), which ends ABORTED
 *    "replaced by a newer Execute stream"; its requests are dropped. The
 *    Hello is answered at once; what follows it is handled once the old
 *    stream has wound down (its tile in progress finished).
 *  - a client half-close ends the stream OK once everything already
 *    received has been handled and its output sent.
 *  - agent_shutdown() ends the live stream UNAVAILABLE "agent NAME is
 *    shutting down" and refuses new ones so.
 *
 * LoadModel builds the spec with modelspec_build() (the scheduler's own
 * function) and keeps the fused model for the agent's life, by digest; a
 * known digest is answered without building again. A spec whose digest
 * field is set must build to that digest, or the call fails
 * FAILED_PRECONDITION naming both. TileJobs find models here.
 *
 * Profile runs calibration jobs (a strip of a small 3x3-convolution model,
 * rows chosen to come closest to each asked GFLOP) through a tile engine of
 * its own with the same speed emulation as real tiles, so profile and tiles
 * agree. Each size gets one untimed warm-up and `repeats` timed runs; the
 * reply has one sample per timed run (gflop as run, halo included; ms as
 * TileResult.compute_ms; cpu_ms), sizes in the order asked.
 *
 * Compute (tile runs, calibration runs) is serialized agent-wide: an
 * emulated device has one budget of CPU, and a profile must not be timed
 * against a concurrent tile.
 *
 * Registration (agent_register_start): see agent_register.c.
 *
 * Library code: nothing here prints; messages go to the log callback.
 */
#ifndef EDGEDI_AGENT_H
#define EDGEDI_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/cpu_gate.h"
#include "runtime/err.h"
#include "runtime/rpc.h"

#define AGENT_EXECUTE_METHOD "/edgedi.v1.Agent/Execute"
#define AGENT_LOAD_MODEL_METHOD "/edgedi.v1.Agent/LoadModel"
#define AGENT_PROFILE_METHOD "/edgedi.v1.Agent/Profile"
#define AGENT_REGISTER_METHOD "/edgedi.v1.Scheduler/RegisterAgent"

enum {
  AGENT_HELLO_TIMEOUT_MS = 10000, /* a stream that says nothing is dropped */
  AGENT_MAX_MODELS = 64,          /* distinct digests kept (models live on) */
  AGENT_MAX_THREADS = 256,
  AGENT_NAME_BYTES = 128,
  /* Received messages waiting for the engine: past this the reader stops
   * reading, and gRPC's flow control pushes back on the scheduler. */
  AGENT_INBOX_MAX_BYTES = 256 << 20,
};

typedef enum agent_log_level {
  AGENT_LOG_ERROR,
  AGENT_LOG_WARN,
  AGENT_LOG_INFO,
  AGENT_LOG_DEBUG
} agent_log_level;

/* Called from any of the agent's threads; must be thread-safe. */
typedef void (*agent_log_fn)(void *ctx, agent_log_level level,
                             const char *msg);

typedef struct agent_options {
  const char *name;   /* in Hello and RegisterAgent; required */
  int threads;        /* executor threads, 1 .. AGENT_MAX_THREADS */
  double speed;       /* 0 < speed; < 1 emulates a slower device */
  double link_mbps;   /* 0: unlimited (link.h) */
  double link_rtt_ms; /* 0: none */
  cpu_gate *gate;     /* shared host cores (cpu_gate.h); NULL: none; outlives the agent */
  bool whole_strips;  /* every strip in one pass, exports after it (tile.h) */
  agent_log_fn log;   /* may be NULL: silent */
  void *log_ctx;
} agent_options;

agent_options agent_default_options(void); /* threads 1, speed 1, no link */

typedef struct agent agent;

err_code agent_create(const agent_options *o, agent **out, err *e);

/* Adds Execute, LoadModel and Profile to srv (before rpc_server_start). */
err_code agent_serve(agent *a, rpc_server *srv, err *e);

/* Ends the live Execute stream (UNAVAILABLE "agent NAME is shutting
 * down") and refuses new ones the same way, so that a server destroyed
 * next need not wait out its grace period. */
void agent_shutdown(agent *a);

/* Frees the agent, registration stopped first. Destroy the server that
 * serves it before (its handlers use the agent until they return). */
void agent_destroy(agent *a);

/* ---- Profile (agent_profile.c) -------------------------------------------- */

/* The calibration model: AGENT_CAL_CONV_LAYERS 3x3 convolutions (64 -> 64
 * channels, padding 1, ReLU) on a tall, narrow input, so that a strip of
 * n output rows (centred, halo included) costs about 4.7 MFLOP per row:
 * from 0.0094 GFLOP (one row) up to AGENT_PROFILE_MAX_GFLOP. */
enum {
  AGENT_CAL_WIDTH_PX = 32,
  AGENT_CAL_HEIGHT_PX = 1024,
  AGENT_CAL_CHANNELS = 64,
  AGENT_CAL_CONV_LAYERS = 2,
  AGENT_PROFILE_DEFAULT_REPEATS = 3, /* when the request says 0 */
  AGENT_PROFILE_MAX_REPEATS = 100,
  AGENT_PROFILE_MAX_SIZES = 32,
};
#define AGENT_PROFILE_DEFAULT_GFLOP {0.01, 0.03, 0.1, 0.3}
#define AGENT_PROFILE_MAX_GFLOP 4.8        /* one calibration job */
#define AGENT_PROFILE_MAX_TOTAL_GFLOP 200.0 /* one Profile call, warm-ups included */

/* ---- registration (agent_register.c) ------------------------------------- */

/* Policy, in one place. */
enum {
  AGENT_REGISTER_RETRY_MS = 1000,     /* scheduler not answering: try again */
  AGENT_REFUSED_RETRY_MS = 10000,     /* refused: try again, slowly */
  /* One RegisterAgent call: the scheduler opens the Execute stream and
   * exchanges Hellos before it answers, so this outlasts its handshake. */
  AGENT_REGISTER_DEADLINE_MS = 10000,
  /* No live Execute stream this long after an accepted registration, or
   * after the last stream ended: register again (scheduler restarted). */
  AGENT_STREAM_WAIT_MS = 3000,
  AGENT_REGISTER_TICK_MS = 100,       /* how often the loop looks */
};

typedef struct agent_register_options {
  const char *scheduler; /* its address */
  const char *address;   /* where this agent's service is reachable */
  bool exit_on_refusal;  /* stop trying after a refusal (agent_status) */
  rpc_options rpc;       /* for the channel to the scheduler */
} agent_register_options;

/* Starts the registration thread (once). */
err_code agent_register_start(agent *a, const agent_register_options *o,
                              err *e);
/* Stops it (waits for a call in flight, at most its deadline). Idempotent;
 * agent_destroy calls it. */
void agent_register_stop(agent *a);

typedef struct agent_status {
  bool stream_live;        /* an Execute stream past its Hello */
  uint64_t streams;        /* accepted Execute streams since start */
  uint64_t registrations;  /* accepted RegisterAgent calls */
  uint64_t device_id;      /* from the last accepted registration */
  bool refused;            /* the last RegisterAgent was refused */
  bool gave_up;            /* refused with exit_on_refusal: no more tries */
  char refusal[ERR_MSG_BYTES]; /* why, when refused */
  int models;              /* loaded */
} agent_status;

void agent_get_status(agent *a, agent_status *s);

/* Changes the emulated speed (agent_options.speed) from the next job on,
 * for tiles and calibration alike: a board that throttles or recovers,
 * at run time. ERR_INVALID for a speed that is not a positive factor
 * (the old one stays). edgedi-agent's --speed-file drives it. */
err_code agent_set_speed(agent *a, double speed, err *e);
double agent_speed(agent *a);

#endif

/* agent_internal.h — the agent's state, shared by agent.c (Execute,
 * LoadModel, the model registry), agent_profile.c (Profile) and
 * agent_register.c (registration). Internal to the agent module.
 *
 * Locks, always taken in this order when nested: profile_mu, then
 * compute_mu; mu is never held while computing or calling out.
 */
#ifndef EDGEDI_AGENT_INTERNAL_H
#define EDGEDI_AGENT_INTERNAL_H

#include <pthread.h>

#include "runtime/agent.h"
#include "runtime/model.h"
#include "runtime/modelspec.h"
#include "runtime/tile.h"

typedef struct agent_session agent_session;

typedef struct agent_model {
  char digest[MODELSPEC_DIGEST_BYTES];
  model *m;
} agent_model;

struct agent {
  agent_options o;
  char name[AGENT_NAME_BYTES];

  /* Serializes everything that computes: one emulated CPU budget. */
  pthread_mutex_t compute_mu;

  /* mu guards everything below it in this block; cv (CLOCK_MONOTONIC)
   * is broadcast when the live session changes or registration stops. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  agent_model models[AGENT_MAX_MODELS];
  int n_models;
  double speed;            /* emulated, for the next job (agent_set_speed) */
  agent_session *live;     /* the Execute stream past its Hello, or NULL */
  uint64_t session_seq;    /* last ticket given to an accepted Hello */
  uint64_t streams;
  bool closing;            /* agent_shutdown: no more streams */
  double last_stream_end_ms; /* -inf before the first */
  /* registration */
  bool reg_started, reg_stop;
  pthread_t reg_thread;
  agent_register_options reg;
  char *reg_scheduler, *reg_address;
  rpc_channel *reg_ch;
  uint64_t registrations, device_id;
  bool refused, gave_up;
  char refusal[ERR_MSG_BYTES];

  /* Profile: its own engine over the calibration model; profile_mu keeps
   * one Profile call at a time on it. */
  pthread_mutex_t profile_mu;
  model *cal_model;
  tile_engine *cal_engine;
  double *cal_gflop; /* [n] GFLOP of a strip of n output rows, 1 .. height */
  unsigned char *cal_pixels;
  uint64_t cal_request;
};

/* printf-style message to the log callback. */
void agent_log(agent *a, agent_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* pthread_cond_timedwait on a CLOCK_MONOTONIC cv until t_ms (link clock). */
void agent_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                           double t_ms);
err_code agent_cond_init(pthread_cond_t *cv, err *e);

/* ---- agent_profile.c ------------------------------------------------------ */

err_code agent_profile_init(agent *a, err *e);
void agent_profile_free(agent *a);
grpc_status_code agent_on_profile(void *ctx, const ProtobufCMessage *req,
                                  rpc_reply *reply, char *details,
                                  size_t details_len);

#endif

/* tile_internal.h — the tile engine's state, shared by tile.c (messages,
 * requests, input assembly) and tile_run.c (the strip cache, running jobs,
 * what a finished job sends). Internal to the engine.
 */
#ifndef EDGEDI_TILE_INTERNAL_H
#define EDGEDI_TILE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/tile.h"
#include "runtime/xexec.h"

typedef struct tile_model {
  char *digest;
  const model *m;
  xexec *x;
  int max_h;             /* tallest tensor */
  size_t max_row_floats; /* widest row (W * C) of any tensor */
} tile_model;

/* A prepared strip, cached by (model, range, output rows). `busy` while a
 * job runs in it or is paused in it. */
typedef struct tile_slot {
  const tile_model *model;
  int first, end;
  model_rows out;
  xexec_strip *strip;
  bool busy;
  uint64_t last_used;
  size_t bytes;
} tile_slot;

/* Rows of segment `segment`'s output waiting for the job of segment + 1. */
typedef struct tile_block {
  uint32_t segment;
  bool own; /* this agent's kept output: only its overlap with the job is used */
  model_rows rows;
  int width, channels;
  float *data;
  size_t wire_bytes; /* as they crossed the link (rowcodec.h); 0 for own rows */
} tile_block;

typedef struct tile_export {
  int dest;
  model_rows rows;
} tile_export;

typedef enum tile_job_state {
  TILE_JOB_WAITING, /* for input rows */
  TILE_JOB_PAUSED,  /* at an FE layer, for its scale */
  TILE_JOB_SUMS_OUT, /* sent early FE sums; goes on at its Resume */
  TILE_JOB_PARTS,    /* ran a part of its strip; the next goes on at its Resume */
  TILE_JOB_DONE
} tile_job_state;

typedef struct tile_job {
  uint32_t segment;
  int first, end;
  model_rows out, in;
  int in_w, in_c;      /* of the range's input tensor */
  int out_w, out_c;    /* of the range's output tensor */
  float *input;        /* in rows, assembled before the run */
  uint8_t *have;       /* per input row: arrived */
  int n_have;
  tile_export *exports;
  int n_exports;
  uint64_t exports_sent; /* bit i: export i is out */
  /* Exports first (tile.h): the strip's output rows as parts run in order,
   * those others need first, and the output they fill (NULL: one part). */
  model_rows parts[3];
  int n_parts, part;
  float *output;
  bool send_output, keep_output, last_job;
  bool fe_local;       /* alone in its segment: FE scales from its own sums */
  bool fe_late;        /* FE sums at the FE, not early (TileJob.fe_late) */
  tile_job_state state;
  tile_slot *slot;     /* while running or paused */
  int fe_layer;        /* paused at, or whose early sums are out */
  int fe_channels;
  double t_arrive_ms, t_pause_ms;
  double queued_ms; /* its message waited for the engine this long */
  bool fresh_strip; /* its strip was made for it, not taken from the cache */
  double wait_ms, compute_ms, cpu_ms, gflop;
  uint64_t bytes_in, bytes_out;
  /* Its compute stretches, (start, end) pairs on tile_now_ms's clock: the
   * TileResult's spans. */
  double *spans;
  int n_spans, cap_spans;
} tile_job;

typedef struct tile_request {
  uint64_t id;
  const tile_model *model;
  tile_job *jobs;
  int n_jobs, cap_jobs;
  tile_block *blocks;
  int n_blocks, cap_blocks;
  size_t pending_bytes;
} tile_request;

struct tile_engine {
  tile_options o;
  tile_model **models; /* each allocated alone: requests and strips point at theirs */
  int n_models, cap_models;
  tile_request **reqs; /* in arrival order */
  int n_reqs, cap_reqs;
  tile_slot **slots; /* each allocated alone: jobs point at theirs */
  int n_slots, cap_slots;
  uint64_t tick;
  uint64_t dropped[TILE_DROPPED_MEMORY];
  int n_dropped, next_dropped;
  tile_stats stats;
};

/* ---- tile.c --------------------------------------------------------------- */

double tile_cpu_ms(void);

/* Packs `m` and appends it to the outbox. */
err_code tile_push(tile_outbox *o, const Edgedi__V1__ExecuteOut *m, err *e);

/* Sends a TileError for (request, segment) and drops the request's state. */
err_code tile_fail(tile_engine *t, uint64_t request, uint32_t segment,
                   err_code code, const char *msg, tile_outbox *out, err *e);

/* Puts rows of segment `segment`'s output where the request needs them: into
 * the waiting job of segment + 1, or aside until it comes. ERR_OK or a
 * protocol error in *pe (to be sent as a TileError); `b` is consumed. */
err_code tile_deliver(tile_engine *t, tile_request *r, tile_block *b, err *pe);

/* Frees a request whose jobs are all done and whose last job ran. */
void tile_maybe_finish(tile_engine *t, tile_request *r);

/* ---- tile_run.c ----------------------------------------------------------- */

/* Splits a job's strip into parts, its exports first (tile.h): fills
 * job->parts and n_parts (1: the strip whole). */
void tile_plan_parts(const model *m, tile_job *job, bool whole_strips);

/* Runs or continues job `j` of request `r` until it pauses or ends; sends
 * what that produces. Protocol or executor errors become a TileError (the
 * request is then gone); only the engine's own errors return non-OK. */
err_code tile_run_job(tile_engine *t, tile_request *r, int j, tile_outbox *out,
                      err *e);

/* Gives a job's strip back to the cache (destroying it when it is paused
 * mid-run), or takes a cached or new one. */
void tile_slot_release(tile_engine *t, tile_job *job);
void tile_slots_destroy(tile_engine *t);

/* Queues a packed ExecuteIn for this same engine (tile_outbox.loop). */
err_code tile_push_loop(tile_outbox *o, const Edgedi__V1__ExecuteIn *m, err *e);
/* Queues the Resume of (request, segment) the same way: what the outbox
 * holds leaves before that job goes on (early sums sent, a part run, or
 * ready while another job's output waits). */
err_code tile_push_resume(tile_outbox *o, uint64_t request, uint32_t segment, err *e);

#endif

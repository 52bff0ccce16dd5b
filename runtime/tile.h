/* tile.h — the tile engine: the agent's side of a distributed inference, as
 * a state machine that eats ExecuteIn messages and produces ExecuteOut
 * messages. No I/O and no threads: the gRPC shell (or a test) unpacks what
 * arrives on an Execute stream, hands it to tile_engine_handle() and sends
 * what lands in the outbox, already packed.
 *
 * What it keeps, per request: the jobs (one per segment this agent takes
 * part in, all sent at the request's start, run in whatever order their
 * inputs complete), each job's input being assembled, rows that arrived
 * before their job, the strip a job is paused in at a feature-enhancement
 * layer. A job's input rows come from
 *  - the job's Image (segment 0: camera rows through preprocess_rows(), the
 *    same code the single-device path uses);
 *  - this agent's own output of the previous segment, when that job had
 *    keep_output (it never travels);
 *  - RowsData relayed by the scheduler, before or after the job arrives.
 * When every input row is there the job runs with xexec (strips are cached
 * per model, layer range and output rows, so a repeated plan reuses them),
 * sends each FE layer's FeSums and continues on the FeScale (early, unless
 * the job says fe_late: the sums go out where the FE's chain starts,
 * runtime/fe_moments.h, and the job goes on computing at its Resume; a job
 * with fe_local, alone in its segment, makes each scale from its own
 * plain sums and runs on through its FEs in one go instead), and
 * at its end sends its exports (RowsData to device `dest`), its output to
 * the scheduler (dest -1) when send_output, and a TileResult. A request's
 * state is freed when its last_job and every other job of it are done, or
 * on Release.
 *
 * Ordering it relies on: a request becomes known with its first TileJob
 * (the scheduler sends all of a request's jobs before anything else on the
 * stream, so this holds on an ordered stream). After that, jobs, rows and
 * scales of the request may come in any order.
 *
 * Errors. A bad message (unknown model digest, malformed job, rows that do
 * not fit their tensor or job, rows or a scale for an unknown request, an
 * executor failure) never stops the engine: it produces a TileError with a
 * gRPC status code and a message, and drops that request's state; later
 * messages of a dropped request are ignored until its Release. Only the
 * engine's own trouble (out of memory, a NULL argument) comes back as an
 * err_code from tile_engine_handle(); the outbox may then be partial and
 * the stream is best closed.
 *
 * Exports first. A job whose neighbours need rows at its strip's edges
 * (TileJob.exports touching its top or bottom row) and that has no FE
 * layer computes its strip in parts: the edge rows others need, each sent
 * as soon as it is computed, then the rest. The neighbours' next jobs then
 * wait for those rows' transfer only while this one computes its middle,
 * not after it ends. A part is its own strip (cached like any), so only a
 * multi-layer segment pays for it: the rows between its layers that two
 * parts both need, computed twice. The engine returns between parts
 * (Resume) so that the shell sends the rows. A job with one part runs as
 * before; so does every job with tile_options.whole_strips.
 *
 * Speed emulation (DESIGN.md, "one machine emulates a cluster honestly"):
 * with speed S < 1, each stretch of running (job start to FE pause, resume
 * to pause or end) sleeps until its wall time is its thread CPU time / S;
 * the reported compute_ms includes the sleep. CPU time is the calling
 * thread's: emulate with threads == 1 (XNNPACK's workers are not counted).
 * An engine created emulating (S < 1) runs every convolution on XNNPACK,
 * the kernels the emulated boards run, never on this host's OpenBLAS
 * (xexec.h); one at full speed lets the executor choose. With a gate, a
 * stretch first waits for a free core of the host (cpu_gate.h); the wait
 * counts in its wall time, not its CPU time.
 *
 * Threads: one engine is driven by one thread at a time. Models given to it
 * must outlive it.
 */
#ifndef EDGEDI_TILE_H
#define EDGEDI_TILE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/cpu_gate.h"
#include "runtime/err.h"
#include "runtime/model.h"

typedef struct tile_engine tile_engine;

/* Policy defaults (tile_default_options). */
#define TILE_DEFAULT_STRIP_CACHE_BYTES ((size_t)128 << 20)
#define TILE_DEFAULT_PENDING_BYTES ((size_t)256 << 20)
enum {
  TILE_MAX_PONG_BYTES = 16 << 20, /* largest Pong payload a Ping may ask for */
  TILE_DROPPED_MEMORY = 64,       /* dropped request ids remembered */
  TILE_MIN_PART_ROWS = 3,         /* rows of a part of a strip, at least */
  TILE_MAX_SPANS = 256,           /* compute stretches a TileResult lists */
};

/* Looks up a model the engine does not know yet: the model for `digest`,
 * or NULL when there is none. Called on the engine's thread. */
typedef const model *(*tile_model_fn)(void *ctx, const char *digest);

typedef struct tile_options {
  double speed;   /* 0 < speed; below 1 emulates a slower device */
  int threads;    /* executor threads for models found through find_model */
  size_t strip_cache_bytes; /* idle cached strips are evicted beyond this */
  size_t pending_bytes;     /* per request: rows waiting for their job */
  tile_model_fn find_model; /* may be NULL */
  void *find_model_ctx;
  cpu_gate *gate; /* emulating on shared cores: taken per stretch (cpu_gate.h); may be NULL */
  /* Every strip in one pass, its exports after it (false: exports first,
   * below). */
  bool whole_strips;
} tile_options;

tile_options tile_default_options(void);

/* The messages produced, each a packed ExecuteOut. The caller sends and
 * then clears them; it may take a buffer (set data to NULL) to send it
 * without a copy, and then frees it with free(). */
typedef struct tile_msg {
  uint8_t *data;
  size_t len;
} tile_msg;

typedef struct tile_outbox {
  tile_msg *msgs;
  int n, cap;
  /* Packed ExecuteIns for this same engine, to be handled after the
   * messages already waiting for it, like any other (a Resume: a job that
   * sent early sums or a part goes on once the shell has sent them). Freed
   * by clear and free like msgs. */
  tile_msg *loop;
  int n_loop, cap_loop;
} tile_outbox;

void tile_outbox_clear(tile_outbox *o); /* frees the messages, keeps capacity */
void tile_outbox_free(tile_outbox *o);  /* and the array */

/* o NULL: the defaults. */
err_code tile_engine_create(const tile_options *o, tile_engine **out, err *e);
void tile_engine_destroy(tile_engine *t);

/* Changes the emulated speed from the next stretch of running on (a
 * device that throttles, or recovers). ERR_INVALID for a speed that is not
 * a positive factor; the old one stays. */
err_code tile_engine_set_speed(tile_engine *t, double speed, err *e);
double tile_engine_speed(const tile_engine *t);

/* Registers the finalized (fused) model `m` under `digest` and prepares its
 * executor with `threads` threads. The same pair again is a no-op; another
 * model under a known digest is ERR_INVALID. */
err_code tile_engine_add_model(tile_engine *t, const char *digest,
                               const model *m, int threads, err *e);

/* Processes one incoming message, then runs every job that became ready;
 * appends what it produces to `out`. Hello is the shell's business and is
 * ignored; Ping is answered with a Pong of ping.reply_bytes bytes. */
err_code tile_engine_handle(tile_engine *t, const Edgedi__V1__ExecuteIn *in,
                            tile_outbox *out, err *e);
/* CLOCK_MONOTONIC in ms: the clock of tile_engine_handle_at. */
double tile_now_ms(void);
/* The same for a message that arrived at arrived_ms (tile_now_ms's clock)
 * and waited for the engine since: a job reports that wait as its
 * TileResult.queued_ms, which the scheduler cannot see (infer.h). */
err_code tile_engine_handle_at(tile_engine *t, const Edgedi__V1__ExecuteIn *in,
                               double arrived_ms, tile_outbox *out, err *e);

/* What the engine holds, for status pages and tests. */
typedef struct tile_stats {
  int requests;            /* with state */
  int jobs_waiting;        /* for input or an FE scale */
  int cached_strips;
  size_t cached_strip_bytes;
  uint64_t strips_created; /* since creation */
  uint64_t strips_reused;
  uint64_t jobs_run;
  uint64_t rows_before_job; /* RowsData that waited for their job */
  uint64_t errors_sent;    /* TileErrors */
} tile_stats;

void tile_engine_stats(const tile_engine *t, tile_stats *s);

/* The gRPC status code (grpc_status_code) for an err_code. */
uint32_t tile_grpc_status(err_code code);

#endif

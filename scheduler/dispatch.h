/* dispatch.h — the scheduler's side of one distributed inference, as a state
 * machine that turns a plan into TileJobs and eats the agents' ExecuteOut
 * messages. No I/O and no threads: the scheduler program routes messages
 * between it and the agents' Execute streams; devices are the indices the
 * plan was made for (plan_part.device), 0 .. n_devices - 1.
 *
 * Life: dispatch_create() checks the plan and image and packs every job of
 * every device (all segments at once: an agent runs them as their inputs
 * arrive); dispatch_start() hands them to the outbox; then each message an
 * agent sends goes through dispatch_on_message():
 *  - RowsData to a device (dest >= 0): relayed to it as they are;
 *  - RowsData to the scheduler (dest -1): the last segment's output,
 *    gathered (with dispatch_set_head_rows, each strip's share of the
 *    head's first FC added as it comes); once every row is in, the head
 *    (layers [head_first, n), or those after that FC) runs on the caller's
 *    executor and gives the logits;
 *  - FeSums: added up per FE layer (in device order, so results do not
 *    depend on arrival order), each over the chain the plan implies (plain
 *    sums with plan.fe_late, else fe_moments_chain() from the segment's
 *    first layer); when every device of the segment has sent its sums,
 *    fe_moments_scale() gives the scale, sent to each of them;
 *  - TileResult: timings recorded per device;
 *  - TileError: the request fails with the agent's status and message.
 * The request is DONE when the logits are there and every job reported its
 * result; it FAILS on a TileError, on a message that contradicts the plan
 * (rows nobody asked for, sums of the wrong size: an agent bug, status
 * INTERNAL), on logits that are not all finite numbers (inputs and weights
 * are: rows an agent got wrong, INTERNAL) or on dispatch_fail() (a dead
 * agent, the deadline). A failing request sends Release to every device it
 * gave jobs; later messages of it are ignored.
 *
 * What moves (DESIGN.md, "Data movement"): the image rows each segment-0
 * job reads, as sent (uint8 or float); the rows a device of the next
 * segment needs from another device's strip (its halo, or rows that change
 * owner), relayed, so they cross two links; the last segment's output, once.
 * Each device keeps its own strip for its next job (keep_output). Rows
 * travel zero-masked where that is smaller (runtime/rowcodec.h): relayed
 * as they came, unpacked when gathered. The result counts these bytes as
 * sent, and as raw floats (as plan_evaluate() prices them without wire
 * densities), and what gathering and re-scattering whole maps at every
 * segment would move.
 *
 * Threads: none inside; the caller serializes calls on one dispatch, and on
 * all dispatches that share a head executor (the head runs inside
 * dispatch_on_message()).
 */
#ifndef EDGEDI_DISPATCH_H
#define EDGEDI_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"
#include "runtime/model.h"
#include "runtime/preprocess.h"
#include "runtime/xexec.h"
#include "scheduler/head_rows.h"
#include "scheduler/plan.h"

typedef struct dispatch dispatch;

/* Messages for the agents, each a packed ExecuteIn for device `device`.
 * The caller sends and then clears them; it may take a buffer (set data to
 * NULL) to send it without a copy, and then frees it with free(). */
typedef struct dispatch_msg {
  int device;
  uint8_t *data;
  size_t len;
} dispatch_msg;

typedef struct dispatch_outbox {
  dispatch_msg *msgs;
  int n, cap;
} dispatch_outbox;

void dispatch_outbox_clear(dispatch_outbox *o); /* frees the messages */
void dispatch_outbox_free(dispatch_outbox *o);  /* and the array */

typedef enum dispatch_state {
  DISPATCH_RUNNING,
  DISPATCH_DONE,
  DISPATCH_FAILED
} dispatch_state;

/* One device's share, as measured (the agents' TileResults) and planned. */
typedef struct dispatch_device {
  int jobs, results;
  int rows;             /* output rows of the last segment it computed */
  double compute_ms;    /* sums over its TileResults */
  double cpu_ms, wait_ms, gflop;
  uint64_t bytes_in;    /* payload sent to it: image rows, relayed rows */
  uint64_t bytes_out;   /* payload it sent: rows for others, output */
  double predicted_ms;  /* the plan's compute + transfer over its parts */
  double busy_until_ms; /* its last TileResult, from dispatch_start() */
} dispatch_device;

/* One segment's output rows that agents sent (relayed and gathered): as
 * floats and as they crossed the links (runtime/rowcodec.h). */
typedef struct dispatch_wire {
  uint64_t raw, sent;
} dispatch_wire;

typedef struct dispatch_result {
  dispatch_state state;
  uint32_t status;     /* a grpc_status_code: OK unless FAILED */
  const char *message; /* why it failed, "" otherwise */
  const float *logits; /* once the head ran (NULL before) */
  int n_logits;
  int top_class;
  double head_ms; /* from the last output rows to the logits (head_rows.h included) */
  uint64_t bytes_image;   /* image rows sent */
  uint64_t bytes_relayed; /* rows relayed between devices (each crosses two links) */
  uint64_t bytes_output;  /* last segment's output gathered */
  uint64_t bytes_moved;   /* image + 2 * relayed + output */
  uint64_t bytes_moved_raw; /* the same with every row as raw floats */
  uint64_t bytes_gather_all; /* what gathering whole maps at every segment would move */
  int n_devices;
  const dispatch_device *devices;
  int n_segments;
  const dispatch_wire *wire; /* per segment of the plan */
} dispatch_result;

/* Builds one request: `m` the finalized fused model (it and `head` outlive
 * the dispatch), `digest` the name agents know it by, `p` a plan of m for
 * n_devices devices (copied), `img` the whole picture (copied into the
 * jobs), `head` an executor of m for the head (may be NULL only when the
 * plan leaves no head). ERR_INVALID / ERR_RANGE / ERR_SHAPE say what in the
 * plan or image is wrong; nothing is sent. */
err_code dispatch_create(const model *m, const char *digest, const plan *p,
                         int n_devices, const preprocess_image *img,
                         uint64_t request_id, xexec *head, dispatch **out,
                         err *e);
void dispatch_destroy(dispatch *d);

/* The head's first FC summed row by row as the output arrives (head_rows.h;
 * h outlives d), before dispatch_start. ERR_INVALID when h is for another
 * head or the request has started. */
err_code dispatch_set_head_rows(dispatch *d, const head_rows *h, err *e);

/* Queues every job for sending (once). */
err_code dispatch_start(dispatch *d, dispatch_outbox *out, err *e);

/* Handles one message from device `from` (or a stand-in's tag, below);
 * returns the request's state. */
dispatch_state dispatch_on_message(dispatch *d, int from,
                                   const Edgedi__V1__ExecuteOut *msg,
                                   dispatch_outbox *out);

/* Fails a running request (a dead agent, the deadline) with `status` (a
 * grpc_status_code) and `message`; Releases its devices. No-op once the
 * request is over. */
void dispatch_fail(dispatch *d, uint32_t status, const char *message,
                   dispatch_outbox *out);

/* The request's state, logits and accounting; pointers valid until the
 * next call on d. */
void dispatch_get_result(const dispatch *d, dispatch_result *r);

/* Stand-ins (scheduler/infer.h, "Agent loss" and "Stragglers"): another
 * agent repeats device `role`'s work from its first job, while the request
 * runs on, because the device died or is far behind. The caller gives the
 * stand-in a request id of its own (so that one agent may hold a device's
 * work and a stand-in's at once) and gets a tag, n_devices + k: messages
 * for the stand-in come out of the outbox with device == tag, and the
 * caller passes the stand-in's messages in with from == tag. At once the
 * outbox gets the device's jobs and every row relayed to it so far, under
 * the stand-in's id; from then on, jobs' rows relayed to the device go to
 * its stand-ins too, and each FE scale goes to every copy once that copy
 * has sent its sums. Of what the device and its stand-ins send, the first
 * copy of each relayed or gathered rows, FE sums and TileResult counts
 * and later copies are dropped (so the logits are the plan's, whoever
 * computed them); once the request is DONE, the device and its stand-ins
 * get a Release so that the copy still at work stops. Needs
 * dispatch_keep_log() before dispatch_start (a copy of every job and
 * relayed row, kept until the dispatch is destroyed). ERR_INVALID (no log,
 * not started, over, an id in use), ERR_RANGE (a device without work, more
 * than DISPATCH_MAX_STANDINS), ERR_NOMEM: then the request is best failed. */
enum { DISPATCH_MAX_STANDINS = 8 };
err_code dispatch_keep_log(dispatch *d, err *e);
err_code dispatch_add_standin(dispatch *d, int role, uint64_t id, int *tag,
                              dispatch_outbox *out, err *e);

/* The request an agent's message belongs to, for routing: false for Hello
 * and Pong. */
bool dispatch_request_of(const Edgedi__V1__ExecuteOut *msg, uint64_t *request_id);

#endif

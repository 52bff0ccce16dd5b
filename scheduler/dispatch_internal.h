/* dispatch_internal.h — what dispatch.c (jobs, relays, FE sums, the head)
 * and dispatch_standin.c (another agent repeating a device's work) share.
 * Not part of the module's promise.
 */
#ifndef EDGEDI_DISPATCH_INTERNAL_H
#define EDGEDI_DISPATCH_INTERNAL_H

#include "scheduler/dispatch.h"

/* Rows one device sends another between segments `segment` and + 1. */
typedef struct dispatch_relay {
  uint32_t segment;
  int from, dest;
  model_rows rows;
  bool done;
} dispatch_relay;

/* A job as the dispatcher tracks it. */
typedef struct dispatch_job {
  int device;
  uint32_t segment;
  bool reported; /* its TileResult came */
} dispatch_job;

/* The sums of one FE layer, one slot of n_sums per part of its segment
 * (in part order, so the total does not depend on arrival order): plain
 * sums of its input, or early ones (chain > 0, fe_moments.h). The scale
 * goes to each sender (device or stand-in tag) that waits for it: an
 * agent takes a scale only once it has sent its sums (runtime/tile.h). */
typedef struct dispatch_fe {
  int layer, segment, channels, chain;
  size_t n_sums;
  double *sums;
  bool *got;
  int n_got;
  float *scale;  /* once every part's sums are in */
  int *waiting;  /* senders owed the scale */
  int n_waiting;
} dispatch_fe;

/* Another agent repeating device `role`'s work under its own request id
 * (dispatch_add_standin). */
typedef struct dispatch_standin {
  int role;
  uint64_t id;
} dispatch_standin;

struct dispatch {
  const model *m;
  xexec *head;
  uint64_t id;
  int n_devices;
  int head_first;
  bool fe_late;       /* the plan's: every FE's sums at the FE */
  int n_segments;
  plan_segment *segs; /* parts' `in` recomputed */
  dispatch_msg *packed; /* the jobs, until dispatch_start */
  dispatch_job *jobs;
  int n_jobs;
  bool started;
  dispatch_relay *relays;
  int n_relays;
  dispatch_fe *fes;
  int n_fes;
  model_shape last;   /* the gathered tensor */
  const head_rows *hr; /* the head's first FC by rows, or NULL */
  double *hr_acc;      /* its sums so far */
  float *gathered;
  bool *got_row;
  int n_got_rows;
  float *logits;
  int n_logits, top_class;
  double head_ms, t_start_ms;
  dispatch_state state;
  uint32_t status;
  char message[ERR_MSG_BYTES];
  uint64_t bytes_image, bytes_relayed, bytes_output, bytes_gather_all;
  uint64_t floats_relayed, floats_output; /* the same rows as raw floats */
  uint64_t bytes_standins; /* replayed and copied to stand-ins */
  dispatch_wire *wire; /* per segment: its output rows as floats and as sent */
  dispatch_device devices[PLAN_MAX_DEVICES];
  /* Stand-ins: with keep_log, every job and relayed rows each device was
   * sent, packed, in order, so that a stand-in can be given them again. */
  bool keep_log;
  dispatch_outbox log[PLAN_MAX_DEVICES];
  dispatch_standin standins[DISPATCH_MAX_STANDINS];
  int n_standins;
};

err_code dispatch__outbox_add(dispatch_outbox *o, int device, uint8_t *data, size_t len,
                              err *e);
uint8_t *dispatch__pack_in(const Edgedi__V1__ExecuteIn *m, size_t *len);

/* With keep_log, a copy of `len` packed bytes sent to `device` into its
 * log (for stand-ins); nothing otherwise. */
err_code dispatch__log(dispatch *d, int device, const uint8_t *data, size_t len, err *e);

/* Queues `m` for device `device` (a device or a stand-in's tag) under the
 * request id that recipient knows. With copy_to_standins (jobs and relayed
 * rows, for a device), it also goes to the device's stand-ins and into its
 * log. */
err_code dispatch__send(dispatch *d, dispatch_outbox *o, int device,
                        Edgedi__V1__ExecuteIn *m, bool copy_to_standins, err *e);

/* The device whose work sender `from` (a device or a tag) does; -1 for
 * neither. */
int dispatch__role_of(const dispatch *d, int from);
/* Whether device `role` has a stand-in: its messages may then come twice. */
bool dispatch__doubled(const dispatch *d, int role);
/* Release to every device given jobs and every stand-in (all: true), or
 * only to the doubled devices and their stand-ins (all: false). */
void dispatch__release(dispatch *d, dispatch_outbox *out, bool all);

#endif

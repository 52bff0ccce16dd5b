/* workload.h — the same inference request sent N times in a row, and what
 * the replies say together: latency spread, per-device medians, bytes.
 *
 * Requests go one after the other (never overlapping), so each latency is
 * that of one request on an otherwise idle cluster. A request that fails
 * ends the run with its status. Nothing prints.
 */
#ifndef EDGEDI_CLI_WORKLOAD_H
#define EDGEDI_CLI_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"
#include "runtime/rpc.h"

enum {
  WORKLOAD_MAX_REQUESTS = 100000,
  WORKLOAD_MAX_DEVICES = 32,
  WORKLOAD_NAME_BYTES = 64,
  WORKLOAD_MAX_KINDS = 16, /* requests interleaved by workload_run_each */
};

typedef struct workload_device {
  char name[WORKLOAD_NAME_BYTES];
  int replies;         /* replies it took part in */
  uint32_t rows;       /* output rows of the last segment, last reply */
  double compute_ms;   /* medians over the replies */
  double transfer_ms;
  double predicted_ms;
  uint64_t bytes_in, bytes_out; /* last reply */
} workload_device;

typedef struct workload_result {
  int n;                       /* timed requests */
  double median_ms, min_ms, max_ms;
  double predicted_ms;         /* median of the scheduler's predictions */
  double cpu_ms;               /* median of the devices' thread CPU time, summed per reply */
  uint64_t bytes_moved;        /* last reply: per request */
  uint64_t bytes_gather_all;   /* last reply */
  bool one_plan;               /* every timed reply had the same plan */
  /* With a probe (workload_run_paired), medians over the timed requests: */
  double probe_ms;             /* the probe's figure */
  double probe_per_ms;         /* probe / the request's latency */
  double cpu_per_probe;        /* the request's cpu_ms / probe */
  int n_devices;
  workload_device devices[WORKLOAD_MAX_DEVICES];
  Edgedi__V1__InferReply *last; /* the last reply (rpc_free'd by workload_free) */
} workload_result;

/* Sends req warmup + n times (warm-up replies are not counted). `stop`
 * (may be NULL) is asked between requests; when it says true the run ends
 * ERR_UNAVAILABLE "interrupted". A failed request ends it with the status
 * ("request 3 of 20: UNAVAILABLE: ..."). */
err_code workload_run(rpc_channel *ch, const Edgedi__V1__InferRequest *req, int warmup, int n,
                      bool (*stop)(void), workload_result *out, err *e);
/* The same for n_reqs requests taken in turn (reqs[0], reqs[1], ...,
 * then again), each warmup + n times, out[q] summing reqs[q]'s replies:
 * what compares them (planners, say) on a machine whose speed drifts
 * affects each alike. A failed request ends the run (every out[q] empty). */
err_code workload_run_each(rpc_channel *ch, const Edgedi__V1__InferRequest *const *reqs,
                           int n_reqs, int warmup, int n, bool (*stop)(void),
                           workload_result *out, err *e);

/* A reference measured right after each timed request, so that what it is
 * compared with saw the same host (baseline_pool.h: the model whole on one
 * core, whose speed drifts): `run` gives a figure > 0 or fails the run. */
typedef struct workload_probe {
  err_code (*run)(void *ctx, double *out, err *e);
  void *ctx;
} workload_probe;

/* workload_run_each with probe (NULL: none) run after every timed reply;
 * out[q].probe_* are the medians of its figures and ratios. */
err_code workload_run_paired(rpc_channel *ch, const Edgedi__V1__InferRequest *const *reqs,
                             int n_reqs, int warmup, int n, bool (*stop)(void),
                             const workload_probe *probe, workload_result *out, err *e);
void workload_free(workload_result *r);

/* The synthetic steel surface of sample.h as a camera would send it:
 * h x w gray uint8 pixels (seed 1), in a new buffer *pixels (free() it)
 * that msg points into. */
err_code workload_sample_image(int h, int w, Edgedi__V1__Image *msg, uint8_t **pixels, err *e);

#endif

/* cluster_sim.h — a cluster in one process, for the distributed-execution
 * tests: N tile engines (the agents) and dispatchers (the scheduler) that
 * exchange packed Execute messages through one queue, plus the models,
 * images, plans and bad-message helpers those tests share.
 *
 * Delivery orders (cs_mode): FIFO over the whole queue; STREAMS keeps each
 * link's order (as gRPC streams do) and interleaves links at random;
 * SCRAMBLED keeps only what the engine relies on (a request reaches a
 * device with a job first; a device's jobs keep their order) and holds
 * later jobs back, so rows overtake the jobs they are for and results
 * overtake rows. Everything asserts through cmocka.
 */
#ifndef EDGEDI_TESTS_CLUSTER_SIM_H
#define EDGEDI_TESTS_CLUSTER_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"
#include "runtime/model.h"
#include "runtime/preprocess.h"
#include "runtime/tile.h"
#include "runtime/xexec.h"
#include "scheduler/dispatch.h"
#include "scheduler/plan.h"
#include "tests/xexec_testlib.h"

enum {
  CS_MAX_DEVICES = 6,
  CS_SIDE_PX = 64,       /* input side of the models the tests build */
  CS_MAX_DISPATCHES = 4, /* requests in flight at once */
  CS_MAX_KNOWN = 4096,   /* (device, request) pairs a run may see */
  CS_MAX_STANDINS = 8,   /* stand-ins a run may add (dispatch.h) */
};
#define CS_LOGIT_TOL 1e-4 /* DESIGN.md's exactness contract */

typedef enum { CS_FIFO, CS_STREAMS, CS_SCRAMBLED, CS_MODES } cs_mode;

typedef struct cs_msg {
  int from, to; /* device index; -1: the scheduler */
  uint8_t *data;
  size_t len;
  int kind; /* ExecuteIn or ExecuteOut message case */
  uint64_t request;
} cs_msg;

typedef struct cs_sim {
  int n;
  tile_engine *eng[CS_MAX_DEVICES];
  cs_msg *q;
  int nq, cap;
  cs_mode mode;
  xt_rng rng;
  struct {
    int dev;
    uint64_t req;
  } known[CS_MAX_KNOWN]; /* devices that got a job of the request */
  int n_known;
  /* Jobs are handed over as if they had arrived this long before (an
   * agent busy elsewhere); the queued_ms its TileResults report, range. */
  double job_queued_ms, result_queued_min, result_queued_max;
  int results_seen, results_fresh; /* TileResults; of them, fresh_strip */
  dispatch *ds[CS_MAX_DISPATCHES];
  uint64_t ds_id[CS_MAX_DISPATCHES];
  int n_ds;
  /* Stand-ins: dispatch d's tag runs on engine `engine` under id. */
  struct {
    dispatch *d;
    uint64_t id;
    int tag, engine;
  } standin[CS_MAX_STANDINS];
  int n_standins;
  bool dead[CS_MAX_DEVICES]; /* killed engines: nothing to or from them */
  int tile_errors; /* TileErrors the engines sent */
  int fe_sums;     /* FeSums the engines sent */
  char first_tile_error[ERR_MSG_BYTES];
  uint32_t first_tile_error_code;
} cs_sim;

void cs_check_ok(err_code rc, const err *e); /* fails the test unless ERR_OK */
/* A result's spans (TileResult.spans): pairs in order, none before its
 * job came or after it left. */
void cs_check_spans(const Edgedi__V1__TileResult *r);

/* ---- the network ---------------------------------------------------------- */

/* n engines with options o (NULL: defaults), delivery randomness from seed. */
void cs_init(cs_sim *s, int n, const tile_options *o, uint64_t seed);
void cs_add_model(cs_sim *s, const char *digest, const model *m); /* to every engine */
void cs_free(cs_sim *s);
/* Queues a packed message (ownership passes to the queue). */
void cs_push(cs_sim *s, int from, int to, uint8_t *data, size_t len);
void cs_take_dispatch(cs_sim *s, dispatch_outbox *o);
/* Registers d (request id) for routing and queues its jobs. */
void cs_start(cs_sim *s, dispatch *d, uint64_t id);
void cs_step(cs_sim *s); /* delivers one message */
/* Engine `engine` dies: what it sent and what waits for it are dropped,
 * and nothing reaches it from now on. */
void cs_kill(cs_sim *s, int engine);
/* dispatch_add_standin(d, role, id) run on engine `engine`; its replay
 * queued. */
void cs_add_standin(cs_sim *s, dispatch *d, int role, uint64_t id, int engine);
void cs_run(cs_sim *s);  /* until the queue is empty */
/* No engine holds anything of any request. */
void cs_check_idle(const cs_sim *s);

/* ---- models, images, plans, requests --------------------------------------- */

typedef struct cs_image {
  preprocess_image img;
  void *data;
} cs_image;

model *cs_build_fused(const char *name, int side);
/* kind 0: gray uint8, 1: 3-channel uint8, 2: 3-channel float. */
cs_image cs_make_image(int kind, int h, int w, xt_rng *r);
plan_options cs_plan_options(const preprocess_image *img); /* as the image is sent */
/* Logits of the single device: preprocess_rows + xexec_run. */
float *cs_single_device(xexec *x, const preprocess_image *img);
void cs_random_devices(plan_device *d, int n, xt_rng *r);
/* Segments at a random subset of the cuts (none when one_segment), each
 * split into random strips given to random devices in a random order. */
void cs_random_plan(const model *m, const plan_device *devs, int n_devs,
                    const plan_options *o, bool one_segment, xt_rng *r, plan *p);
uint64_t cs_new_request_id(void);
/* Runs p on the cluster: DONE, logits within CS_LOGIT_TOL of `want`, bytes
 * as the planner priced them, engines idle afterwards. */
void cs_check_request(cs_sim *s, const model *m, xexec *x, const plan *p, int n_devs,
                      const preprocess_image *img, const float *want, cs_mode mode);

/* ---- failures ------------------------------------------------------------- */

/* A model, its executor, a gray image and an equal plan over 3 devices. */
typedef struct cs_fixture {
  model *m;
  xexec *x;
  cs_image t;
  plan p;
  plan_device devs[3];
} cs_fixture;

void cs_fixture_init(cs_fixture *f, const char *name);
void cs_fixture_free(cs_fixture *f);
/* Runs the fixture's request under `digest`; it must fail. Returns its
 * status; *dp is the dispatch (the caller destroys it). */
/* Runs f's plan under digest "digest"; it must end DISPATCH_DONE. */
void cs_run_ok(cs_sim *s, cs_fixture *f);
uint32_t cs_run_failing(cs_sim *s, cs_fixture *f, const char *digest, dispatch_result *res,
                        dispatch **dp);
/* The jobs a dispatch of the fixture sends, unpacked. */
Edgedi__V1__ExecuteIn **cs_jobs_of(cs_fixture *f, uint64_t id, int *n);
void cs_free_jobs(Edgedi__V1__ExecuteIn **jobs, int n);
/* The k-th job of `segment` among them. */
Edgedi__V1__TileJob *cs_job_at(Edgedi__V1__ExecuteIn **jobs, int n, int segment, int k);
Edgedi__V1__ExecuteIn cs_wrap_job(Edgedi__V1__TileJob *j);
Edgedi__V1__ExecuteIn cs_wrap_rows(Edgedi__V1__RowsData *rd);
/* Feeds `in` to t: exactly one TileError with `code` whose message has `what`. */
void cs_expect_tile_error(tile_engine *t, const Edgedi__V1__ExecuteIn *in, uint32_t code,
                          const char *what);
/* Feeds `in` to t: no TileError. */
void cs_expect_quiet(tile_engine *t, const Edgedi__V1__ExecuteIn *in);

#endif

/* scheduler_test.c — the Scheduler service in-process, on loopback, with a
 * temporary database and agents: three fake agents (tests/fake_agent.h:
 * the real tile engine, a Profile that reports a known cost model, and
 * knobs to make a device stick or die), then two real agents
 * (runtime/agent.h) registering on their own.
 *
 * What must hold: a registered agent is profiled and shows its cost model;
 * Infer equals the single-device run (preprocess + xexec of the same
 * fused model) within 1e-4 of the largest logit, for uint8, gray and
 * float images and concurrent requests; Plan covers every row and gives a
 * faster device more; each bad input (unknown model, wrong size or type,
 * unknown planner, old protocol, a taken name, an address that does not
 * answer, an oversized message, a file that is not a database) ends in
 * its status with a message; a stuck agent makes a request miss its
 * deadline and a request whose agent dies mid-request completes on the
 * others with the same logits (tests/adaptive_test.c tries every phase); requests and tiles are
 * recorded and the database passes its integrity check; a restarted
 * service has its devices, cost models and models back. The program
 * itself (edgedi-scheduler) prints its address, refuses a non-database
 * and stops cleanly on SIGTERM.
 *
 * The tests of the group run in order and share one cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <time.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/agent.h"
#include "runtime/modelspec.h"
#include "runtime/protocol.h"
#include "runtime/rpc.h"
#include "runtime/xexec.h"
#include "scheduler/cluster.h"
#include "scheduler/infer.h"
#include "scheduler/plan.h"
#include "scheduler/service.h"
#include "storage/store.h"
#include "tests/fake_agent.h"
#include "tests/scheduler_testlib.h"

enum {
  N_FAKES = 3,
  SIDE_PX = 64,          /* models at 3 x 64 x 64: small and quick */
  CONCURRENT = 6,
  SHORT_DEADLINE_MS = 500,
  PROMPT_MS = 10000,     /* "promptly": far below the default deadline */
};

static const double TOLERANCE = 1e-4; /* relative to the largest logit */

typedef struct model_case {
  const char *name, *zoo;
  model *m; /* the single-device reference */
  xexec *x;
  char digest[MODELSPEC_DIGEST_BYTES];
} model_case;

static model_case cases[] = {
    {.name = "resnet18c-64", .zoo = "resnet18c"},
    {.name = "vgg16c-64", .zoo = "vgg16c"},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* Fakes: a twice as fast as b, four times as fast as c — in what their
 * Profile reports and in how fast their tiles run (the scheduler refits
 * its cost models from the tiles, scheduler/refit.h). */
static const fake_agent_options fake_opts[N_FAKES] = {
    {.name = "a", .ms_per_gflop = 10, .fixed_ms = 1, .speed = 0.5},
    {.name = "b", .ms_per_gflop = 20, .fixed_ms = 2, .speed = 0.25},
    {.name = "c", .ms_per_gflop = 40, .fixed_ms = 4, .speed = 0.125},
};

static struct {
  char dir[256], db[300], addr[64];
  service *svc;
  rpc_channel *ch;
  fake_agent *fakes[N_FAKES];
} g;

static grpc_status_code infer(const char *model, const st_image *im, const char *planner,
                              uint32_t deadline_ms, Edgedi__V1__InferReply **reply, char *details,
                              size_t len) {
  Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
  req.protocol_version = EDGEDI_PROTOCOL_VERSION;
  req.model = (char *)model;
  req.image = (Edgedi__V1__Image *)&im->msg;
  req.planner = (char *)(planner ? planner : "");
  req.deadline_ms = deadline_ms;
  ProtobufCMessage *r = NULL;
  grpc_status_code st = st_call(g.ch, ST_METHOD("Infer"), &req.base,
                             &edgedi__v1__infer_reply__descriptor, &r, details, len);
  *reply = (Edgedi__V1__InferReply *)r;
  return st;
}

/* The devices of the last infer_and_compare reply, comma-separated. */
static char last_devices[512];

/* What fake agent a garbles now (FAKE_GARBLE_*): with its spans or its
 * figures nonsense, its spans no longer add up to its compute time, and
 * with its figures its CPU time is unknown. */
static unsigned garbled;

/* Infer equals the single device; returns the number of devices used. */
static int infer_and_compare(model_case *mc, const st_image *im, const char *planner) {
  Edgedi__V1__InferReply *r = NULL;
  char d[ERR_MSG_BYTES];
  grpc_status_code st = infer(mc->name, im, planner, 0, &r, d, sizeof d);
  if (st != GRPC_STATUS_OK) fail_msg("Infer %s: %s: %s", mc->name, rpc_status_name(st), d);
  int n = 0;
  float *want = st_reference_logits(mc->x, im, &n);
  assert_int_equal(r->n_logits, n);
  double diff = st_rel_diff(r->logits, want, n);
  if (diff > TOLERANCE) fail_msg("%s: logits differ by %g of the largest", mc->name, diff);
  int top = 0;
  for (int i = 1; i < n; i++)
    if (want[i] > want[top]) top = i;
  assert_int_equal(r->top_class, top);
  assert_true(r->request_id > 0);
  assert_true(r->plan_id > 0);
  assert_true(r->latency_ms > 0 && r->predicted_ms > 0);
  assert_true(r->bytes_moved > 0 && r->bytes_moved < r->bytes_gather_all);
  assert_true(r->n_devices >= 1);
  for (size_t i = 0; i < r->n_devices; i++) {
    const Edgedi__V1__DeviceTiming *d = r->devices[i];
    assert_true(d->compute_ms >= 0 && d->transfer_ms >= 0);
    assert_true(d->predicted_ms > 0);
    /* Its tiles' thread CPU time: some, and no more than their wall time
     * (unknown, 0, for an agent whose figures are nonsense). */
    assert_true(isfinite(d->compute_ms) && isfinite(d->cpu_ms) && isfinite(d->transfer_ms));
    if (!(garbled & FAKE_GARBLE_FIGURES))
      assert_true(d->cpu_ms > 0 && d->cpu_ms <= d->compute_ms * 1.01 + 0.1);
    /* When it computed: pairs with their segments, within the request. */
    assert_true(d->n_span_segments >= 1 && d->n_spans == 2 * d->n_span_segments);
    double busy = 0;
    for (size_t k = 0; k < d->n_span_segments; k++) {
      assert_true(d->spans[2 * k] >= 0 && d->spans[2 * k + 1] >= d->spans[2 * k]);
      assert_true(d->spans[2 * k + 1] <= r->latency_ms + 5);
      busy += d->spans[2 * k + 1] - d->spans[2 * k];
    }
    if (!(garbled & (FAKE_GARBLE_SPANS | FAKE_GARBLE_FIGURES)))
      assert_true(fabs(busy - d->compute_ms) <= 0.01 + 1e-3 * d->compute_ms);
  }
  int used = (int)r->n_devices;
  last_devices[0] = '\0';
  for (size_t i = 0; i < r->n_devices; i++) {
    size_t len = strlen(last_devices);
    snprintf(last_devices + len, sizeof last_devices - len, "%s,", r->devices[i]->device);
  }
  free(want);
  rpc_free(&r->base);
  return used;
}

/* ---- setup ------------------------------------------------------------------- */

/* The tests here are about the service's mechanics (relays, gathers,
 * history, failures), which need every fake agent to take rows: on these
 * small 64x64 models the default (exact) planner rightly keeps most work on
 * the fastest agent, so the service plans proportionally unless a request
 * names a planner. test_plan_covers_rows asks every planner by name. */
static service *start_service(const char *db, int max_message_bytes) {
  service_config cfg = {.listen = "127.0.0.1:0", .db_path = db, .models = "",
                        .planner = "proportional", .max_message_bytes = max_message_bytes};
  service *s = NULL;
  err e = {0};
  st_check_ok(service_create(&cfg, &s, &e), &e);
  return s;
}

static void connect_service(void) {
  snprintf(g.addr, sizeof g.addr, "127.0.0.1:%d", service_port(g.svc));
  err e = {0};
  if (g.ch) rpc_channel_destroy(g.ch);
  st_check_ok(rpc_channel_create(g.addr, NULL, &g.ch, &e), &e);
}

static grpc_status_code load_model(const char *name, const char *zoo, uint64_t seed,
                                   Edgedi__V1__LoadModelReply **reply, char *d, size_t len) {
  Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
  spec.name = (char *)name;
  spec.zoo = (char *)zoo;
  spec.height = SIDE_PX;
  spec.width = SIDE_PX;
  spec.seed = seed;
  Edgedi__V1__LoadModelRequest req = EDGEDI__V1__LOAD_MODEL_REQUEST__INIT;
  req.spec = &spec;
  ProtobufCMessage *r = NULL;
  grpc_status_code st = st_call(g.ch, ST_METHOD("LoadModel"), &req.base,
                             &edgedi__v1__load_model_reply__descriptor, &r, d, len);
  *reply = (Edgedi__V1__LoadModelReply *)r;
  return st;
}

static int group_setup(void **state) {
  (void)state;
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(g.dir, sizeof g.dir, "%s/schedXXXXXX", tmp ? tmp : "/tmp");
  if (!mkdtemp(g.dir)) return -1;
  snprintf(g.db, sizeof g.db, "%s/edgedi.db", g.dir);
  for (int i = 0; i < N_CASES; i++) {
    Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
    spec.name = (char *)cases[i].name;
    spec.zoo = (char *)cases[i].zoo;
    spec.height = spec.width = SIDE_PX;
    err e = {0};
    st_check_ok(modelspec_build(&spec, &cases[i].m, cases[i].digest, &e), &e);
    st_check_ok(xexec_create(cases[i].m, 1, &cases[i].x, &e), &e);
  }
  g.svc = start_service(g.db, 0);
  connect_service();
  for (int i = 0; i < N_FAKES; i++) {
    err e = {0};
    st_check_ok(fake_agent_start(&fake_opts[i], &g.fakes[i], &e), &e);
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  service_destroy(g.svc);
  rpc_channel_destroy(g.ch);
  for (int i = 0; i < N_FAKES; i++) fake_agent_destroy(g.fakes[i]);
  for (int i = 0; i < N_CASES; i++) {
    xexec_destroy(cases[i].x);
    model_destroy(cases[i].m);
  }
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g.dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- models and agents ---------------------------------------------------------- */

static void test_load_model(void **state) {
  (void)state;
  char d[ERR_MSG_BYTES];
  Edgedi__V1__LoadModelReply *r = NULL;
  for (int i = 0; i < N_CASES; i++) {
    for (int again = 0; again < 2; again++) { /* the same spec twice: a no-op */
      grpc_status_code st = load_model(cases[i].name, cases[i].zoo, 0, &r, d, sizeof d);
      if (st != GRPC_STATUS_OK) fail_msg("LoadModel %s: %s", cases[i].name, d);
      assert_string_equal(r->digest, cases[i].digest);
      assert_true(r->gflop > 0 && r->params > 0 && r->layers > 0);
      rpc_free(&r->base);
    }
  }
  /* A name always means one model. */
  assert_int_equal(load_model(cases[0].name, cases[0].zoo, 2, &r, d, sizeof d),
                   GRPC_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(d, "already loaded"));
  assert_int_equal(load_model("nonsense", "alexnet", 0, &r, d, sizeof d),
                   GRPC_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(d, "alexnet"));
}

static void test_register_profiles_agents(void **state) {
  (void)state;
  const char *names[N_FAKES];
  for (int i = 0; i < N_FAKES; i++) {
    char d[ERR_MSG_BYTES];
    uint64_t id = 0;
    grpc_status_code st = fake_agent_register(g.fakes[i], g.addr, NULL, 0, &id, d, sizeof d);
    if (st != GRPC_STATUS_OK) fail_msg("register %s: %s", fake_opts[i].name, d);
    assert_true(id > 0);
    names[i] = fake_opts[i].name;
  }
  st_wait_up(g.ch, names, N_FAKES);
  Edgedi__V1__ListDevicesReply *l = st_list_devices(g.ch);
  for (int i = 0; i < N_FAKES; i++) {
    const Edgedi__V1__Device *d = st_device_named(l, names[i]);
    assert_non_null(d);
    assert_string_equal(d->address, fake_agent_address(g.fakes[i]));
    /* The fake reports exactly ms = a * GFLOP + b: the fit must find it. */
    assert_true(fabs(d->cost->ms_per_gflop - fake_opts[i].ms_per_gflop) <
                1e-6 * fake_opts[i].ms_per_gflop);
    assert_true(fabs(d->cost->fixed_ms - fake_opts[i].fixed_ms) < 1e-6);
    assert_true(d->cost->fit_error < 1e-6);
    assert_true(d->cost->samples >= 4);
    assert_true(d->cost->bandwidth_mbps > 0 && d->cost->rtt_ms >= 0);
    assert_true(d->first_seen > 0 && d->last_seen >= d->first_seen);
    assert_int_equal(fake_agent_streams(g.fakes[i]), 1); /* ONE stream per agent */
  }
  rpc_free(&l->base);
}

/* ---- inference ------------------------------------------------------------------ */

static void test_infer_equals_single_device(void **state) {
  (void)state;
  for (int i = 0; i < N_CASES; i++) {
    st_image rgb = st_make_image(SIDE_PX, SIDE_PX, 3, false, 11u + (unsigned)i);
    st_image gray = st_make_image(SIDE_PX, SIDE_PX, 1, false, 21u + (unsigned)i);
    st_image flt = st_make_image(SIDE_PX, SIDE_PX, 3, true, 31u + (unsigned)i);
    assert_int_equal(infer_and_compare(&cases[i], &rgb, NULL), N_FAKES);
    assert_int_equal(infer_and_compare(&cases[i], &gray, "equal"), N_FAKES);
    assert_int_equal(infer_and_compare(&cases[i], &flt, "proportional"), N_FAKES);
    free(rgb.data);
    free(gray.data);
    free(flt.data);
  }
}

typedef struct worker {
  model_case *mc;
  st_image im;
  const char *planner; /* named in the request, or NULL */
  grpc_status_code st;
  char details[ERR_MSG_BYTES];
  float *logits;
  int n, devices;
  char planned_by[32];
} worker;

static void *infer_worker(void *arg) {
  worker *w = arg;
  Edgedi__V1__InferReply *r = NULL;
  w->st = infer(w->mc->name, &w->im, w->planner, 0, &r, w->details, sizeof w->details);
  if (r) {
    w->devices = (int)r->n_devices;
    snprintf(w->planned_by, sizeof w->planned_by, "%s", r->planner ? r->planner : "");
    w->n = (int)r->n_logits;
    w->logits = malloc(r->n_logits * sizeof *w->logits);
    memcpy(w->logits, r->logits, r->n_logits * sizeof *w->logits);
    rpc_free(&r->base);
  }
  return NULL;
}

/* The worker's request succeeded with the single-device logits; its
 * buffers are freed. */
static void check_worker_exact(worker *w, int i) {
  if (w->st != GRPC_STATUS_OK) fail_msg("request %d: %s", i, w->details);
  int n = 0;
  float *want = st_reference_logits(w->mc->x, &w->im, &n);
  assert_int_equal(w->n, n);
  assert_true(st_rel_diff(w->logits, want, n) <= TOLERANCE);
  free(want);
  free(w->logits);
  free(w->im.data);
}

/* CONCURRENT requests at once, twice the agents: every one exact. Those
 * naming no planner find the cluster saturated (load-aware planning,
 * infer.h) when the others are still in flight, and run whole on a single
 * agent; those naming a planner are always split by it. Rounds until a
 * request ran single (the first is planned before any other is in flight,
 * and a quick request may finish before the next is planned). */
static int concurrent_round(void) {
  worker w[CONCURRENT];
  pthread_t t[CONCURRENT];
  for (int i = 0; i < CONCURRENT; i++) {
    w[i] = (worker){.mc = &cases[i % N_CASES], .planner = i % 2 ? "proportional" : NULL};
    w[i].im = st_make_image(SIDE_PX, SIDE_PX, 3, false, 100u + (unsigned)i);
    assert_int_equal(pthread_create(&t[i], NULL, infer_worker, &w[i]), 0);
  }
  for (int i = 0; i < CONCURRENT; i++) pthread_join(t[i], NULL);
  int single = 0;
  for (int i = 0; i < CONCURRENT; i++) {
    check_worker_exact(&w[i], i);
    if (w[i].planner) {
      assert_string_equal(w[i].planned_by, w[i].planner);
      assert_int_equal(w[i].devices, N_FAKES);
    } else if (strcmp(w[i].planned_by, INFER_SINGLE_PLANNER) == 0) {
      assert_int_equal(w[i].devices, 1);
      single++;
    }
  }
  return single;
}

static void test_concurrent_requests_pipeline(void **state) {
  (void)state;
  int single = 0;
  for (int round = 0; round < 8 && single == 0; round++) single = concurrent_round();
  assert_true(single >= 1);
  /* Every request gave its agents back: none counts busy any more. */
  const char *names[N_FAKES] = {"a", "b", "c"};
  for (int i = 0; i < N_FAKES; i++) {
    cluster_agent *a = cluster_find(service_cluster(g.svc), names[i]);
    assert_non_null(a);
    assert_int_equal(cluster_agent_busy(a, NULL), 0);
    cluster_release(a);
  }
}

/* Samples the agents' busy counts while a burst runs. */
typedef struct sampler {
  cluster_agent *agents[N_FAKES];
  volatile bool stop;
  int max_busy, max_singles;
  bool mixed; /* a whole run and a split request on one agent at once */
} sampler;

static void *sampler_main(void *arg) {
  sampler *sm = arg;
  while (!sm->stop) {
    for (int i = 0; i < N_FAKES; i++) {
      int singles = 0, busy = cluster_agent_busy(sm->agents[i], &singles);
      if (busy > sm->max_busy) sm->max_busy = busy;
      if (singles > sm->max_singles) sm->max_singles = singles;
      if (singles > 0 && busy > singles) sm->mixed = true;
    }
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

/* BURST requests naming no planner at once, four times the agents: they
 * wait at the scheduler (infer.h, INFER_SINGLE_DEPTH) instead of queueing
 * on the agent chosen when they came, so no agent ever holds more than
 * one running and one queued, none holds a whole run next to a split
 * request, and every answer is exact. */
static void test_burst_waits_at_the_scheduler(void **state) {
  (void)state;
  enum { BURST = 4 * N_FAKES };
  sampler sm = {0};
  const char *names[N_FAKES] = {"a", "b", "c"};
  for (int i = 0; i < N_FAKES; i++) {
    sm.agents[i] = cluster_find(service_cluster(g.svc), names[i]);
    assert_non_null(sm.agents[i]);
  }
  pthread_t ts;
  assert_int_equal(pthread_create(&ts, NULL, sampler_main, &sm), 0);
  worker w[BURST];
  pthread_t t[BURST];
  for (int i = 0; i < BURST; i++) {
    w[i] = (worker){.mc = &cases[1]}; /* vgg16c-64: FE exchanges when split */
    w[i].im = st_make_image(SIDE_PX, SIDE_PX, 3, false, 300u + (unsigned)i);
    assert_int_equal(pthread_create(&t[i], NULL, infer_worker, &w[i]), 0);
  }
  for (int i = 0; i < BURST; i++) pthread_join(t[i], NULL);
  sm.stop = true;
  pthread_join(ts, NULL);
  int single = 0;
  for (int i = 0; i < BURST; i++) {
    check_worker_exact(&w[i], i);
    single += strcmp(w[i].planned_by, INFER_SINGLE_PLANNER) == 0;
  }
  assert_true(single >= BURST / 2);
  assert_true(sm.max_singles >= 1);
  if (sm.max_busy > INFER_SINGLE_DEPTH || sm.mixed)
    fail_msg("an agent held %d requests (%d whole runs)%s", sm.max_busy, sm.max_singles,
             sm.mixed ? ", a whole run next to a split one" : "");
  for (int i = 0; i < N_FAKES; i++) {
    assert_int_equal(cluster_agent_busy(sm.agents[i], NULL), 0);
    cluster_release(sm.agents[i]);
  }
}

static Edgedi__V1__PlanReply *plan_of(const char *model, const char *planner,
                                      grpc_status_code *st, char *d, size_t len) {
  Edgedi__V1__PlanRequest req = EDGEDI__V1__PLAN_REQUEST__INIT;
  req.model = (char *)model;
  req.planner = (char *)(planner ? planner : "");
  ProtobufCMessage *r = NULL;
  *st = st_call(g.ch, ST_METHOD("Plan"), &req.base, &edgedi__v1__plan_reply__descriptor, &r, d,
                len);
  return (Edgedi__V1__PlanReply *)r;
}

static void test_plan_covers_rows(void **state) {
  (void)state;
  char d[ERR_MSG_BYTES];
  grpc_status_code st;
  const char *const *names = plan_names();
  assert_string_equal(names[0], "exact"); /* the default of a scheduler not told */
  assert_string_equal(INFER_DEFAULT_PLANNER, names[0]);
  for (int n = -1; n < 0 || names[n]; n++)
  for (int i = 0; i < N_CASES; i++) {
    /* n = -1: the planner the service was configured with */
    const char *want = n < 0 ? "proportional" : names[n];
    Edgedi__V1__PlanReply *p = plan_of(cases[i].name, n < 0 ? NULL : names[n], &st, d, sizeof d);
    if (st != GRPC_STATUS_OK) fail_msg("Plan %s with %s: %s", cases[i].name, want, d);
    assert_string_equal(p->planner, want);
    assert_true(p->n_segments >= 1 && p->predicted_ms > 0 && p->single_device_ms > 0);
    uint32_t next_layer = 0;
    for (size_t s = 0; s < p->n_segments; s++) {
      const Edgedi__V1__Segment *seg = p->segments[s];
      assert_int_equal(seg->first_layer, next_layer);
      next_layer = seg->end_layer;
      const model_layer *last = &cases[i].m->layers[seg->end_layer - 1];
      uint32_t row = 0, rows_a = 0, rows_c = 0;
      for (size_t k = 0; k < seg->n_parts; k++) {
        const Edgedi__V1__Assignment *a = seg->parts[k];
        assert_int_equal(a->out_rows->lo, row); /* contiguous, top to bottom */
        row = a->out_rows->hi;
        assert_true(a->predicted_compute_ms > 0 && a->gflop > 0);
        if (strcmp(a->device, "a") == 0) rows_a = a->out_rows->hi - a->out_rows->lo;
        if (strcmp(a->device, "c") == 0) rows_c = a->out_rows->hi - a->out_rows->lo;
      }
      assert_int_equal(row, (uint32_t)last->out.h); /* every row covered */
      /* The proportional split gives the faster device more. The others
       * may not: the exact planner and the heuristic give rows where they
       * pay (on these tiny models transfers and fixed costs weigh most),
       * the equal split gives all the same. */
      bool by_speed = strcmp(want, "proportional") == 0;
      /* Rates are refitted from this suite's tiny (64x64, sub-ms) tiles and
       * come closer than the fakes' 4 : 1 under load: never fewer rows. */
      if (s == 0 && by_speed && rows_a < rows_c)
        fail_msg("%s, planner %s, segment 0: a has %u rows, c %u", cases[i].name, want, rows_a,
                 rows_c);
    }
    assert_int_equal(next_layer, p->head_first_layer);
    rpc_free(&p->base);
  }
  Edgedi__V1__PlanReply *p = plan_of(cases[0].name, "nonsense", &st, d, sizeof d);
  assert_null(p);
  assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(d, "nonsense"));
  p = plan_of("no-such-model", NULL, &st, d, sizeof d);
  assert_int_equal(st, GRPC_STATUS_NOT_FOUND);
  assert_non_null(strstr(d, "no-such-model"));
}

/* ---- bad input ---------------------------------------------------------------------- */

static void expect_infer(const char *model, const st_image *im, const char *planner,
                         uint32_t version, grpc_status_code want, const char *needle) {
  Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
  req.protocol_version = version;
  req.model = (char *)model;
  req.image = im ? (Edgedi__V1__Image *)&im->msg : NULL;
  req.planner = (char *)(planner ? planner : "");
  ProtobufCMessage *r = NULL;
  char d[ERR_MSG_BYTES];
  grpc_status_code st = st_call(g.ch, ST_METHOD("Infer"), &req.base,
                             &edgedi__v1__infer_reply__descriptor, &r, d, sizeof d);
  rpc_free(r);
  if (st != want || !strstr(d, needle))
    fail_msg("Infer %s: got %s '%s', want %s with '%s'", model, rpc_status_name(st), d,
             rpc_status_name(want), needle);
}

static grpc_status_code register_raw(const char *name, const char *address, uint32_t version,
                                     char *d, size_t len) {
  Edgedi__V1__RegisterAgentRequest req = EDGEDI__V1__REGISTER_AGENT_REQUEST__INIT;
  req.protocol_version = version;
  req.name = (char *)name;
  req.address = (char *)address;
  ProtobufCMessage *r = NULL;
  grpc_status_code st = st_call(g.ch, ST_METHOD("RegisterAgent"), &req.base,
                             &edgedi__v1__register_agent_reply__descriptor, &r, d, len);
  rpc_free(r);
  return st;
}

/* A loopback port nobody listens on (bound, then closed). */
static int dead_port(void) {
  rpc_server *s = NULL;
  int port = 0;
  err e = {0};
  st_check_ok(rpc_server_create("127.0.0.1:0", NULL, &s, &port, &e), &e);
  st_check_ok(rpc_server_start(s, &e), &e);
  rpc_server_destroy(s, 0);
  return port;
}

static void test_bad_infer_requests(void **state) {
  (void)state;
  const char *m = cases[0].name;
  st_image ok = st_make_image(SIDE_PX, SIDE_PX, 3, false, 5);
  st_image small = st_make_image(SIDE_PX / 2, SIDE_PX / 2, 3, false, 5);
  st_image two = st_make_image(SIDE_PX, SIDE_PX, 2, false, 5);
  expect_infer("no-such-model", &ok, NULL, 0, GRPC_STATUS_NOT_FOUND, "unknown model");
  expect_infer(m, &small, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "image is 32 x 32");
  expect_infer(m, &two, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "2 channels");
  expect_infer(m, NULL, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "no image");
  expect_infer(m, &ok, "nonsense", 0, GRPC_STATUS_INVALID_ARGUMENT, "unknown planner");
  expect_infer(m, &ok, NULL, EDGEDI_PROTOCOL_VERSION + 1, GRPC_STATUS_FAILED_PRECONDITION,
               "protocol version");
  st_image both = ok;
  both.msg.f32 = ok.msg.u8;
  expect_infer(m, &both, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "exactly one");
  st_image cut = ok;
  cut.msg.u8.len -= 7; /* truncated pixels */
  expect_infer(m, &cut, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "bytes");
  st_image flt = ok;
  flt.msg.f32 = ok.msg.u8; /* uint8 bytes declared float: a quarter of what is needed */
  flt.msg.u8 = (ProtobufCBinaryData){0};
  expect_infer(m, &flt, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT, "float32");
  /* A float image with a sample that is not a number: refused, the sample
   * named, before any agent sees it. */
  st_image nan_img = st_make_image(SIDE_PX, SIDE_PX, 3, true, 5);
  float bad = NAN;
  memcpy(nan_img.msg.f32.data + ((size_t)(3 * SIDE_PX + 7) * 3 + 2) * sizeof bad, &bad,
         sizeof bad);
  expect_infer(m, &nan_img, NULL, 0, GRPC_STATUS_INVALID_ARGUMENT,
               "row 3, column 7, channel 2 is NaN");
  free(nan_img.data);
  /* Garbage on the wire never reaches a handler. */
  grpc_slice junk = grpc_slice_from_copied_string("\xff\xff\xff garbage");
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&junk, 1);
  grpc_byte_buffer *reply = NULL;
  grpc_status_code st = GRPC_STATUS_OK;
  err e = {0};
  rpc_call_bytes(g.ch, ST_METHOD("Infer"), bb, ST_CALL_DEADLINE_MS, &reply, &st, &e);
  assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
  grpc_byte_buffer_destroy(bb);
  grpc_slice_unref(junk);
  free(ok.data);
  free(small.data);
  free(two.data);
  /* The service still serves. */
  st_image again = st_make_image(SIDE_PX, SIDE_PX, 3, false, 6);
  assert_int_equal(infer_and_compare(&cases[0], &again, NULL), N_FAKES);
  free(again.data);
}

static void test_bad_registrations(void **state) {
  (void)state;
  char d[ERR_MSG_BYTES];
  /* An old agent: refused, both versions named. */
  assert_int_equal(register_raw("old", "127.0.0.1:1", 0, d, sizeof d),
                   GRPC_STATUS_FAILED_PRECONDITION);
  assert_non_null(strstr(d, "version 0"));
  char ours[32];
  snprintf(ours, sizeof ours, "version %d", EDGEDI_PROTOCOL_VERSION);
  assert_non_null(strstr(d, ours));
  /* A live name at another address: refused, the holder named. */
  grpc_status_code st = fake_agent_register(g.fakes[1], g.addr, "a", 0, NULL, d, sizeof d);
  assert_int_equal(st, GRPC_STATUS_ALREADY_EXISTS);
  assert_non_null(strstr(d, fake_agent_address(g.fakes[0])));
  /* An address that does not answer: refused promptly, left down. */
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", dead_port());
  double t0 = st_now_ms();
  assert_int_equal(register_raw("ghost", addr, EDGEDI_PROTOCOL_VERSION, d, sizeof d),
                   GRPC_STATUS_UNAVAILABLE);
  assert_true(st_now_ms() - t0 < PROMPT_MS);
  assert_non_null(strstr(d, addr));
  st_wait_state(g.ch, "ghost", "down");
  assert_int_equal(register_raw("", addr, EDGEDI_PROTOCOL_VERSION, d, sizeof d),
                   GRPC_STATUS_INVALID_ARGUMENT);
  /* Nothing above disturbed the live agents. */
  const char *names[] = {"a", "b", "c"};
  st_wait_up(g.ch, names, 3);
  for (int i = 0; i < N_FAKES; i++) assert_int_equal(fake_agent_streams(g.fakes[i]), 1);
}

/* ---- failing agents ---------------------------------------------------------------- */

static void test_stuck_agent_misses_deadline(void **state) {
  (void)state;
  st_image im = st_make_image(SIDE_PX, SIDE_PX, 3, false, 41);
  fake_agent_hold(g.fakes[1], true);
  Edgedi__V1__InferReply *r = NULL;
  char d[ERR_MSG_BYTES];
  double t0 = st_now_ms();
  grpc_status_code st = infer(cases[1].name, &im, NULL, SHORT_DEADLINE_MS, &r, d, sizeof d);
  double took = st_now_ms() - t0;
  fake_agent_hold(g.fakes[1], false);
  assert_null(r);
  if (st != GRPC_STATUS_DEADLINE_EXCEEDED) fail_msg("%s: %s", rpc_status_name(st), d);
  assert_non_null(strstr(d, "b (segments"));
  assert_true(took >= SHORT_DEADLINE_MS && took < PROMPT_MS);
  assert_int_equal(infer_and_compare(&cases[1], &im, NULL), N_FAKES);
  free(im.data);
}

typedef struct bg_infer {
  model_case *mc;
  st_image im;
  grpc_status_code st;
  char d[ERR_MSG_BYTES];
  double ended_ms;
  float *logits;
  int n;
} bg_infer;

static void *bg_infer_main(void *arg) {
  bg_infer *b = arg;
  Edgedi__V1__InferReply *r = NULL;
  b->st = infer(b->mc->name, &b->im, NULL, 0, &r, b->d, sizeof b->d);
  b->ended_ms = st_now_ms();
  if (r) {
    b->n = (int)r->n_logits;
    b->logits = malloc(r->n_logits * sizeof *b->logits);
    memcpy(b->logits, r->logits, r->n_logits * sizeof *b->logits);
  }
  rpc_free(r ? &r->base : NULL);
  return NULL;
}

static void test_agent_dies_mid_request(void **state) {
  (void)state;
  fake_agent *c = g.fakes[2];
  int seen = fake_agent_jobs_seen(c);
  fake_agent_hold(c, true);
  bg_infer b = {.mc = &cases[0], .im = st_make_image(SIDE_PX, SIDE_PX, 3, false, 51)};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, bg_infer_main, &b), 0);
  double until = st_now_ms() + PROMPT_MS;
  while (fake_agent_jobs_seen(c) == seen && st_now_ms() < until) st_sleep_ms(5);
  assert_true(fake_agent_jobs_seen(c) > seen); /* c holds its job: mid-request */
  double killed = st_now_ms();
  fake_agent_kill(c);
  pthread_join(t, NULL);
  /* The request is re-planned on a and b and still exact. */
  if (b.st != GRPC_STATUS_OK) fail_msg("%s: %s", rpc_status_name(b.st), b.d);
  int n = 0;
  float *want = st_reference_logits(b.mc->x, &b.im, &n);
  assert_int_equal(b.n, n);
  assert_true(st_rel_diff(b.logits, want, n) <= TOLERANCE);
  free(want);
  free(b.logits);
  assert_true(b.ended_ms - killed < PROMPT_MS);
  st_wait_state(g.ch, "c", "down");
  /* The others carry on. */
  assert_int_equal(infer_and_compare(&cases[0], &b.im, NULL), N_FAKES - 1);
  assert_int_equal(infer_and_compare(&cases[1], &b.im, NULL), N_FAKES - 1);
  free(b.im.data);
}

static long long count(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    fail_msg("%s: %s", sql, sqlite3_errmsg(db));
  long long n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  return n;
}

static void check_database(void) {
  store *s = NULL;
  err e = {0};
  st_check_ok(store_open(g.db, &s, &e), &e);
  st_check_ok(store_integrity_check(s, &e), &e);
  store_close(s);
}

static void test_history_recorded(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(g.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_true(count(db, "SELECT count(*) FROM requests WHERE status = 'ok'") >= 10);
  assert_int_equal(count(db, "SELECT count(*) FROM requests WHERE status = 'running'"), 0);
  /* c died mid-request: its request was finished by the others. */
  assert_int_equal(count(db, "SELECT count(*) FROM requests WHERE status = 'error' AND "
                             "error LIKE '%went down%'"), 0);
  assert_true(count(db, "SELECT count(*) FROM requests WHERE status = 'error' AND "
                        "error LIKE '%deadline%'") == 1);
  assert_true(count(db, "SELECT count(*) FROM requests WHERE plan LIKE '{\"planner\":%'") >= 10);
  /* Every tile of an ok request, with predicted and measured times. */
  assert_true(count(db, "SELECT count(*) FROM tile_history") >= 30);
  assert_int_equal(count(db, "SELECT count(*) FROM tile_history WHERE measured_compute_ms < 0 "
                             "OR measured_transfer_ms < 0 OR predicted_compute_ms <= 0"), 0);
  assert_int_equal(count(db, "SELECT count(*) FROM requests r WHERE status = 'ok' AND NOT "
                             "EXISTS (SELECT 1 FROM tile_history t WHERE t.request_id = r.id)"),
                   0);
  /* ... and when its device computed it (tile_spans): every such tile, each
   * stretch within its request's time (a stretch is placed by halving the
   * link's ways to it and back: a little slack at either end). */
  assert_int_equal(count(db, "SELECT count(*) FROM tile_history t JOIN requests r ON "
                             "r.id = t.request_id WHERE r.status = 'ok' AND NOT EXISTS "
                             "(SELECT 1 FROM tile_spans p WHERE p.tile_id = t.id)"), 0);
  assert_int_equal(count(db, "SELECT count(*) FROM tile_spans p JOIN tile_history t ON "
                             "t.id = p.tile_id JOIN requests r ON r.id = t.request_id WHERE "
                             "r.status = 'ok' AND (p.end_ms < p.start_ms OR p.end_ms > "
                             "r.measured_ms + 5)"), 0);
  /* The compute stretches sum to the tile's compute time. */
  assert_int_equal(count(db, "SELECT count(*) FROM (SELECT t.measured_compute_ms AS c, "
                             "sum(p.end_ms - p.start_ms) AS s FROM tile_history t JOIN "
                             "tile_spans p ON p.tile_id = t.id GROUP BY t.id) "
                             "WHERE abs(s - c) > 0.01 + 1e-3 * c"), 0);
  assert_true(count(db, "SELECT count(*) FROM profile_samples") >= 3 * 4);
  /* Cost models refitted from the tiles, per device and per model (where
   * a model's tiles are big enough to tell a: scheduler/refit.h). */
  assert_true(count(db, "SELECT count(DISTINCT device_id) FROM cost_models "
                        "WHERE kind LIKE 'model:%'") >= 1);
  assert_int_equal(count(db, "SELECT count(*) FROM cost_models WHERE NOT "
                             "(ms_per_gflop > 0 AND fixed_ms >= 0 AND bandwidth_mbps > 0)"), 0);
  sqlite3_close(db);
  check_database();
}

/* One exact request with fake agent a garbling `what` (FAKE_GARBLE_*);
 * devices used. */
static int infer_with_a_garbling(unsigned what, unsigned seed) {
  fake_agent_garble(g.fakes[0], what);
  garbled = what;
  st_image im = st_make_image(SIDE_PX, SIDE_PX, 3, false, seed);
  int used = infer_and_compare(&cases[1], &im, "equal");
  fake_agent_garble(g.fakes[0], 0);
  garbled = 0;
  free(im.data);
  return used;
}

/* Tiles of the newest answered request meeting `cond` (SQL over tile_history
 * t and devices d). */
static long long newest_tiles(sqlite3 *db, const char *cond) {
  char sql[800];
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM tile_history t JOIN devices d ON d.id = t.device_id WHERE "
           "t.request_id = (SELECT max(id) FROM requests WHERE status = 'ok') AND %s", cond);
  return count(db, sql);
}

/* An agent whose TileResults say nonsense about when it computed: the
 * request is answered exactly, its tiles are recorded, and of their spans
 * only the one that makes sense. */
static void test_nonsense_spans_left_out(void **state) {
  (void)state;
  assert_true(infer_with_a_garbling(FAKE_GARBLE_SPANS, 77u) >= 2);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(g.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  long long tiles = newest_tiles(db, "d.name = 'a'");
  assert_true(tiles >= 1);
  /* One span a tile of a, half a millisecond long. */
  const char *one =
      "d.name = 'a' AND (SELECT count(*) FROM tile_spans p WHERE p.tile_id = t.id) = 1";
  assert_int_equal(newest_tiles(db, one), tiles);
  assert_int_equal(newest_tiles(db, "d.name = 'a' AND (SELECT min(abs(p.end_ms - p.start_ms - "
                                    "0.5)) FROM tile_spans p WHERE p.tile_id = t.id) < 1e-3"),
                   tiles);
  sqlite3_close(db);
  check_database();
}

/* An agent whose TileResults give nonsense figures (not numbers, negative,
 * infinite, bytes past SQLite's integers): the request is answered
 * exactly with finite figures, and every tile is recorded, the agent's
 * with its times unknown (0) and its GFLOP from the plan. Before, one
 * such figure made the store refuse the request's whole history. */
static void test_nonsense_figures_taken_as_unknown(void **state) {
  (void)state;
  assert_true(infer_with_a_garbling(FAKE_GARBLE_FIGURES, 78u) >= 2);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(g.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  long long tiles = newest_tiles(db, "d.name = 'a'");
  assert_true(tiles >= 1);
  assert_int_equal(newest_tiles(db, "d.name = 'a' AND t.measured_compute_ms = 0 AND "
                                    "t.cpu_ms = 0 AND t.wait_ms = 0 AND t.bytes_out = 0 AND "
                                    "t.gflop > 0"),
                   tiles);
  /* The other devices' tiles are there too, with their times. */
  assert_true(newest_tiles(db, "d.name <> 'a' AND t.measured_compute_ms > 0") >= 1);
  sqlite3_close(db);
  check_database();
}

/* Agents whose output rows hold a value that is not a number (a bug, or
 * memory gone bad): the request ends INTERNAL, saying so, rather than
 * answering with logits that are not numbers; then the service serves. */
static void test_output_not_finite_refused(void **state) {
  (void)state;
  /* resnet18c's head (global average, then one FC) carries an infinite
   * value into every logit; a ReLU between FCs could zero it. */
  for (int i = 0; i < N_FAKES; i++) fake_agent_garble(g.fakes[i], FAKE_GARBLE_OUTPUT);
  st_image im = st_make_image(SIDE_PX, SIDE_PX, 3, false, 79u);
  Edgedi__V1__InferReply *r = NULL;
  char d[ERR_MSG_BYTES];
  grpc_status_code st = infer(cases[0].name, &im, "equal", 0, &r, d, sizeof d);
  for (int i = 0; i < N_FAKES; i++) fake_agent_garble(g.fakes[i], 0);
  rpc_free(r ? &r->base : NULL);
  assert_int_equal(st, GRPC_STATUS_INTERNAL);
  if (!strstr(d, "not a finite number")) fail_msg("status message: %s", d);
  assert_true(infer_and_compare(&cases[0], &im, "equal") >= 2);
  free(im.data);
  check_database();
}

/* ---- real agents ------------------------------------------------------------------ */

typedef struct real_agent {
  agent *a;
  rpc_server *srv;
} real_agent;

static void real_agent_start(real_agent *r, const char *name) {
  agent_options o = agent_default_options();
  o.name = name;
  err e = {0};
  int port = 0;
  st_check_ok(agent_create(&o, &r->a, &e), &e);
  st_check_ok(rpc_server_create("127.0.0.1:0", NULL, &r->srv, &port, &e), &e);
  st_check_ok(agent_serve(r->a, r->srv, &e), &e);
  st_check_ok(rpc_server_start(r->srv, &e), &e);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  agent_register_options ro = {.scheduler = g.addr, .address = addr};
  st_check_ok(agent_register_start(r->a, &ro, &e), &e);
}

static void real_agent_stop(real_agent *r) {
  rpc_server_destroy(r->srv, 0);
  agent_destroy(r->a);
}

static void test_real_agents_join(void **state) {
  (void)state;
  real_agent r[2];
  real_agent_start(&r[0], "real-1");
  real_agent_start(&r[1], "real-2");
  const char *names[] = {"real-1", "real-2"};
  st_wait_up(g.ch, names, 2);
  /* Both real agents (unemulated, the fastest) take rows, and the answer
   * is the single device's. The two live fakes may or may not: the exact
   * planner leaves out a device whose rows do not pay for its transfers
   * and fixed cost, which depends on how fast the real agents' kernels are
   * on this machine and build. */
  for (int i = 0; i < N_CASES; i++) {
    st_image im = st_make_image(SIDE_PX, SIDE_PX, 3, false, 61u + (unsigned)i);
    int used = infer_and_compare(&cases[i], &im, NULL);
    if (used < 2 || used > N_FAKES - 1 + 2 || !strstr(last_devices, "real-1,") ||
        !strstr(last_devices, "real-2,"))
      fail_msg("%s ran on %d devices: %s", cases[i].name, used, last_devices);
    free(im.data);
  }
  real_agent_stop(&r[0]);
  real_agent_stop(&r[1]);
  st_wait_state(g.ch, "real-1", "down");
  st_wait_state(g.ch, "real-2", "down");
}

/* ---- restart ------------------------------------------------------------------- */

static void test_restart_restores_state(void **state) {
  (void)state;
  double before[N_FAKES];
  Edgedi__V1__ListDevicesReply *l0 = st_list_devices(g.ch);
  for (int i = 0; i < N_FAKES; i++) {
    const Edgedi__V1__Device *d = st_device_named(l0, fake_opts[i].name);
    assert_non_null(d);
    assert_non_null(d->cost);
    before[i] = d->cost->ms_per_gflop; /* refitted from the tiles by now */
  }
  rpc_free(&l0->base);
  service_destroy(g.svc);
  check_database();
  g.svc = start_service(g.db, 0);
  connect_service();
  if (!strstr(service_start_note(g.svc), "2 models restored"))
    fail_msg("start note: %s", service_start_note(g.svc));
  /* Every device is back, down until it registers, with its cost model. */
  Edgedi__V1__ListDevicesReply *l = st_list_devices(g.ch);
  for (int i = 0; i < N_FAKES; i++) {
    const Edgedi__V1__Device *d = st_device_named(l, fake_opts[i].name);
    assert_non_null(d);
    assert_string_equal(d->state, "down");
    assert_non_null(d->cost);
    assert_true(fabs(d->cost->ms_per_gflop - before[i]) <= 1e-9 * before[i]);
  }
  assert_non_null(st_device_named(l, "real-1"));
  rpc_free(&l->base);
  char d[ERR_MSG_BYTES];
  grpc_status_code st;
  Edgedi__V1__PlanReply *p = plan_of(cases[0].name, NULL, &st, d, sizeof d);
  assert_null(p);
  assert_int_equal(st, GRPC_STATUS_UNAVAILABLE);
  assert_non_null(strstr(d, "no agent is up"));
  /* The models came back as they were. */
  Edgedi__V1__LoadModelReply *r = NULL;
  assert_int_equal(load_model(cases[1].name, cases[1].zoo, 0, &r, d, sizeof d), GRPC_STATUS_OK);
  assert_string_equal(r->digest, cases[1].digest);
  rpc_free(&r->base);
  /* Agents register again (a real one does so by itself) and serve. */
  for (int i = 0; i < 2; i++)
    assert_int_equal(fake_agent_register(g.fakes[i], g.addr, NULL, 0, NULL, d, sizeof d),
                     GRPC_STATUS_OK);
  const char *names[] = {"a", "b"};
  st_wait_up(g.ch, names, 2);
  assert_int_equal(fake_agent_streams(g.fakes[0]), 2);
  st_image im = st_make_image(SIDE_PX, SIDE_PX, 1, false, 71);
  assert_int_equal(infer_and_compare(&cases[0], &im, NULL), 2);
  assert_int_equal(infer_and_compare(&cases[1], &im, NULL), 2);
  free(im.data);
  /* The same agent registering again gets a new stream and is profiled anew. */
  assert_int_equal(fake_agent_register(g.fakes[0], g.addr, NULL, 0, NULL, d, sizeof d),
                   GRPC_STATUS_OK);
  st_wait_up(g.ch, names, 2);
  assert_int_equal(fake_agent_streams(g.fakes[0]), 3);
  check_database();
}

/* ---- limits and the program ------------------------------------------------------ */

static void test_oversized_message_refused(void **state) {
  (void)state;
  char db[400];
  snprintf(db, sizeof db, "%s/small.db", g.dir);
  service *s = start_service(db, 1 << 20);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", service_port(s));
  rpc_channel *ch = NULL;
  err e = {0};
  st_check_ok(rpc_channel_create(addr, NULL, &ch, &e), &e);
  st_image big = st_make_image(400, 400, 3, true, 81); /* 1.9 MB of floats */
  Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
  req.model = "vgg16c";
  req.image = &big.msg;
  ProtobufCMessage *r = NULL;
  char d[ERR_MSG_BYTES];
  grpc_status_code st = st_call(ch, ST_METHOD("Infer"), &req.base,
                                &edgedi__v1__infer_reply__descriptor, &r, d, sizeof d);
  assert_int_equal(st, GRPC_STATUS_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(d, "RESOURCE_EXHAUSTED"));
  /* Still serving. */
  Edgedi__V1__ListDevicesReply *l = st_list_devices(ch);
  rpc_free(&l->base);
  free(big.data);
  rpc_channel_destroy(ch);
  service_destroy(s);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_not_a_database_refused(void **state) {
  (void)state;
  char path[400];
  snprintf(path, sizeof path, "%s/notes.txt", g.dir);
  write_file(path, "this is not a database, it is a shopping list\n");
  service_config cfg = {.listen = "127.0.0.1:0", .db_path = path, .models = ""};
  service *s = NULL;
  err e = {0};
  assert_int_equal(service_create(&cfg, &s, &e), ERR_CORRUPT);
  assert_null(s);
  assert_non_null(strstr(e.msg, path));
  FILE *f = fopen(path, "rb");
  char back[128] = "";
  assert_non_null(fgets(back, sizeof back, f));
  fclose(f);
  assert_string_equal(back, "this is not a database, it is a shopping list\n");
}

#define PROGRAM "scheduler/edgedi-scheduler"

/* Starts the program; *out_fd reads its stdout. */
static pid_t spawn(char *const argv[], int *out_fd) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  pid_t pid = 0;
  extern char **environ;
  assert_int_equal(posix_spawn(&pid, PROGRAM, &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  *out_fd = fds[0];
  return pid;
}

static int wait_exit(pid_t pid) {
  double until = st_now_ms() + PROMPT_MS;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (st_now_ms() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail_msg("edgedi-scheduler did not exit in time");
    }
    st_sleep_ms(20);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_program_starts_and_stops(void **state) {
  (void)state;
  char db[400];
  snprintf(db, sizeof db, "%s/program.db", g.dir);
  char *argv[] = {PROGRAM, "--listen", "127.0.0.1:0", "--db", db, "--models", "none", NULL};
  int fd;
  pid_t pid = spawn(argv, &fd);
  FILE *out = fdopen(fd, "r");
  char line[256] = "";
  assert_non_null(fgets(line, sizeof line, out));
  int port = 0;
  if (sscanf(line, "edgedi-scheduler listening on 127.0.0.1:%d", &port) != 1 || port <= 0)
    fail_msg("first line: %s", line);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  rpc_channel *ch = NULL;
  err e = {0};
  st_check_ok(rpc_channel_create(addr, NULL, &ch, &e), &e);
  rpc_health h;
  st_check_ok(rpc_health_check(ch, "", ST_CALL_DEADLINE_MS, &h, &e), &e);
  assert_int_equal(h, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  rpc_channel_destroy(ch);
  kill(pid, SIGTERM);
  assert_int_equal(wait_exit(pid), 0);
  fclose(out);

  char bad[400];
  snprintf(bad, sizeof bad, "%s/garbage.db", g.dir);
  write_file(bad, "garbage garbage garbage garbage garbage garbage garbage garbage\n");
  char *argv2[] = {PROGRAM, "--listen", "127.0.0.1:0", "--db", bad, "--models", "none", NULL};
  pid = spawn(argv2, &fd);
  assert_int_equal(wait_exit(pid), 1);
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_model),
      cmocka_unit_test(test_register_profiles_agents),
      cmocka_unit_test(test_infer_equals_single_device),
      cmocka_unit_test(test_plan_covers_rows),
      cmocka_unit_test(test_concurrent_requests_pipeline),
      cmocka_unit_test(test_burst_waits_at_the_scheduler),
      cmocka_unit_test(test_bad_infer_requests),
      cmocka_unit_test(test_bad_registrations),
      cmocka_unit_test(test_stuck_agent_misses_deadline),
      cmocka_unit_test(test_agent_dies_mid_request),
      cmocka_unit_test(test_history_recorded),
      cmocka_unit_test(test_nonsense_spans_left_out),
      cmocka_unit_test(test_nonsense_figures_taken_as_unknown),
      cmocka_unit_test(test_output_not_finite_refused),
      cmocka_unit_test(test_real_agents_join),
      cmocka_unit_test(test_restart_restores_state),
      cmocka_unit_test(test_oversized_message_refused),
      cmocka_unit_test(test_not_a_database_refused),
      cmocka_unit_test(test_program_starts_and_stops),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

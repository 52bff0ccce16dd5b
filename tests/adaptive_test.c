/* adaptive_test.c — the adaptive side of the scheduler, in-process on
 * loopback with real tile engines: online cost models, agent loss and
 * stragglers (scheduler/infer.h, scheduler/refit.h).
 *
 * What must hold:
 *  - two real agents (runtime/agent.h) of one speed, computing in turn
 *    (one cpu_gate slot, as emulated boards on a shared host do), share
 *    the rows about evenly, and the prior of their fits is the median of
 *    their calibrations (refit_shared_beta); when one's speed is halved at
 *    run time (agent_set_speed, what edgedi-agent --speed-file does) its
 *    share of the rows falls within 10 requests, and rises again within
 *    10 after it is restored;
 *  - an agent killed in each phase of a request — when its job arrives,
 *    after its tile ran but before it said anything, when relayed halo
 *    rows arrive, when a feature-enhancement scale arrives — and an agent
 *    that is stuck (answers nothing) leave the request completing with
 *    the single-device logits (1e-4 of the largest); the dead agent is
 *    marked down, and restarted it is planned on again;
 *  - a cluster whose only agent dies answers UNAVAILABLE "no agent is up";
 *  - each death recovered both ways (scheduler/infer.h, "Agent loss"):
 *    another agent stands in for the dead one within the request, or the
 *    request starts over without it; the reply says which;
 *  - with --straggler-factor, a request whose agent slows down mid-way has
 *    its work re-issued to the other agent, whose copy wins (or, with
 *    on-loss restart, is re-planned without it) and is still exact;
 *  - a cost model with nonsense values (NaN, negative, zero bandwidth)
 *    pushed into a live session, or fitted from tiles whose time falls
 *    with their work, is refused and never reaches the planner.
 * Fake agents (tests/fake_agent.h) are the real tile engine behind a test
 * double of the Agent service, with switches to die in a chosen phase.
 *
 * The tests of the group run in order and share one service.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/agent.h"
#include "runtime/modelspec.h"
#include "runtime/protocol.h"
#include "runtime/rpc.h"
#include "runtime/xexec.h"
#include "scheduler/cluster.h"
#include "scheduler/refit_run.h"
#include "scheduler/service.h"
#include "storage/store.h"
#include "tests/fake_agent.h"
#include "tests/scheduler_testlib.h"

enum {
  SIDE_PX = 64,          /* models at 3 x 64 x 64: small and quick */
  STUCK_FLOOR_MS = 400,  /* a held agent is given up on this soon */
  ADAPT_REQUESTS = 10,   /* the speed change must show within this many */
  MEAN_OF = 3,           /* requests whose shares are averaged */
  EVEN_OF = 5,           /* last warm requests whose shares are the even level */
  WARM_REQUESTS = 10,    /* first runs are out of the fits: these give repeat runs */
  PROMPT_MS = 15000,
};

static const double TOLERANCE = 1e-4; /* relative to the largest logit */
/* Emulated speeds: slow enough that the stretch (wall = CPU / speed)
 * dominates other load on the machine (the test's own threads, builds
 * beside it: 20 times covers a load of 10 on 2 cores). */
static const double REAL_SPEED = 0.05;
static const double FAKE_SPEED = 0.25;
/* Far past what a busy host does to a fast agent's few-ms tile: under
 * CI's load p's 3.2-3.7 ms tiles took 37 and 80 ms, which at 4 made p the
 * "straggler" (CI failed so twice, 2026-11-27). */
static const double STRAGGLER_FACTOR = 20;
/* The straggler's tile must outlast STRAGGLER_FACTOR times its segment's
 * prediction plus INFER_STRAGGLER_SLACK_MS (50 ms): its CPU time / speed.
 * A core that computes q's few rows in 0.05 ms (an AVX-512 one does) needs
 * a slowdown past the 100 that missed it (CI failed so once, 2026-11-27),
 * and past 250 since the slack went from 20 to 50 ms. */
static const double STRAGGLER_SLOWDOWN = 1000;
enum { STRAGGLE_TRIES = 3 }; /* q slowed this often while a host stall makes p late first */
/* Shares of r2's rows: 0.5 at one speed, 1/3 at half speed. "Fewer rows"
 * and "more again" mean a move of at least this much in the mean share.
 * Not a fixed line between 0.33 and 0.5: the fits of two equal agents on
 * this small model scatter by 15 % (a share of 0.45 to 0.55), which put a
 * line at 0.42 within the noise of either end. */
static const double SHARE_MOVE = 0.07;

#define MODEL "vgg16c-64" /* FE exchanges and halos in every segment */

static struct {
  char dir[256], db[300], addr[64];
  service *svc;
  rpc_channel *ch;
  model *m;
  xexec *x;
  agent *real[2];
  rpc_server *real_srv[2];
  cpu_gate *gate; /* the real agents compute in turn */
  fake_agent *f[2]; /* steady fakes */
  fake_agent *victim;
  int victims;
  char recovery[ERR_MSG_BYTES]; /* the last reply's InferReply.recovery */
} g;

/* ---- helpers ------------------------------------------------------------------ */

/* Every request planned afresh (no plan recall): this file tests what the
 * refitted cost models do to a split. With recall on (the default,
 * plan_recall.h, tested in plan_recall_test.c) a device that recovers gets
 * its rows back only once a fresh split is predicted more than 10 %
 * faster than the one the agents have prepared; on this test's small
 * models, where fixed costs weigh most, it may not be. */
static service *start_service(const char *db, double straggler_factor) {
  service_config cfg = {.listen = "127.0.0.1:0", .db_path = db, .models = "",
                        .planner = "proportional", .stuck_floor_ms = STUCK_FLOOR_MS,
                        .straggler_factor = straggler_factor, .no_reuse = true};
  service *s = NULL;
  err e = {0};
  st_check_ok(service_create(&cfg, &s, &e), &e);
  return s;
}

static rpc_channel *connect_to(service *s, char *addr, size_t len) {
  snprintf(addr, len, "127.0.0.1:%d", service_port(s));
  rpc_channel *ch = NULL;
  err e = {0};
  st_check_ok(rpc_channel_create(addr, NULL, &ch, &e), &e);
  return ch;
}

static void load_model(rpc_channel *ch) {
  Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
  spec.name = MODEL;
  spec.zoo = "vgg16c";
  spec.height = spec.width = SIDE_PX;
  Edgedi__V1__LoadModelRequest req = EDGEDI__V1__LOAD_MODEL_REQUEST__INIT;
  req.spec = &spec;
  ProtobufCMessage *r = NULL;
  char d[ERR_MSG_BYTES];
  grpc_status_code st = st_call(ch, ST_METHOD("LoadModel"), &req.base,
                                &edgedi__v1__load_model_reply__descriptor, &r, d, sizeof d);
  if (st != GRPC_STATUS_OK) fail_msg("LoadModel: %s", d);
  rpc_free(r);
}

/* deadline_ms 0: the scheduler's default. */
static grpc_status_code infer_within(rpc_channel *ch, const st_image *im, uint32_t deadline_ms,
                                     Edgedi__V1__InferReply **reply, char *d, size_t len) {
  Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
  req.protocol_version = EDGEDI_PROTOCOL_VERSION;
  req.model = MODEL;
  req.image = (Edgedi__V1__Image *)&im->msg;
  req.deadline_ms = deadline_ms;
  ProtobufCMessage *r = NULL;
  grpc_status_code st =
      st_call(ch, ST_METHOD("Infer"), &req.base, &edgedi__v1__infer_reply__descriptor, &r, d, len);
  *reply = (Edgedi__V1__InferReply *)r;
  return st;
}

static grpc_status_code infer(rpc_channel *ch, const st_image *im, Edgedi__V1__InferReply **reply,
                              char *d, size_t len) {
  return infer_within(ch, im, 0, reply, d, len);
}

/* One request that must succeed with the single-device logits; whether
 * device `name` (may be NULL) took part. */
static bool infer_exact_on(rpc_channel *ch, unsigned seed, const char *name) {
  st_image im = st_make_image(SIDE_PX, SIDE_PX, 3, false, seed);
  Edgedi__V1__InferReply *r = NULL;
  char d[ERR_MSG_BYTES];
  grpc_status_code st = infer(ch, &im, &r, d, sizeof d);
  if (st != GRPC_STATUS_OK) fail_msg("Infer: %s: %s", rpc_status_name(st), d);
  int n = 0;
  float *want = st_reference_logits(g.x, &im, &n);
  assert_int_equal((int)r->n_logits, n);
  double diff = st_rel_diff(r->logits, want, n);
  if (diff > TOLERANCE) fail_msg("logits differ by %g of the largest", diff);
  bool used = false;
  for (size_t i = 0; name && i < r->n_devices; i++) used |= strcmp(r->devices[i]->device, name) == 0;
  snprintf(g.recovery, sizeof g.recovery, "%s", r->recovery ? r->recovery : "");
  free(want);
  free(im.data);
  rpc_free(&r->base);
  return used;
}

/* Share of the rows (over every segment) the plan gives `name` now. */
static double row_share(const char *name) {
  Edgedi__V1__PlanRequest req = EDGEDI__V1__PLAN_REQUEST__INIT;
  req.model = MODEL;
  req.planner = "proportional";
  ProtobufCMessage *pm = NULL;
  char d[ERR_MSG_BYTES];
  grpc_status_code st = st_call(g.ch, ST_METHOD("Plan"), &req.base,
                                &edgedi__v1__plan_reply__descriptor, &pm, d, sizeof d);
  if (st != GRPC_STATUS_OK) fail_msg("Plan: %s", d);
  const Edgedi__V1__PlanReply *p = (const Edgedi__V1__PlanReply *)pm;
  double mine = 0, all = 0;
  for (size_t s = 0; s < p->n_segments; s++)
    for (size_t k = 0; k < p->segments[s]->n_parts; k++) {
      const Edgedi__V1__Assignment *a = p->segments[s]->parts[k];
      double rows = a->out_rows->hi - a->out_rows->lo;
      all += rows;
      if (strcmp(a->device, name) == 0) mine += rows;
    }
  assert_true(all > 0 && isfinite(p->predicted_ms) && p->predicted_ms > 0);
  rpc_free(pm);
  return mine / all;
}

static double plan_predicted_ms(void) {
  Edgedi__V1__PlanRequest req = EDGEDI__V1__PLAN_REQUEST__INIT;
  req.model = MODEL;
  ProtobufCMessage *pm = NULL;
  char d[ERR_MSG_BYTES];
  grpc_status_code st = st_call(g.ch, ST_METHOD("Plan"), &req.base,
                                &edgedi__v1__plan_reply__descriptor, &pm, d, sizeof d);
  if (st != GRPC_STATUS_OK) fail_msg("Plan: %s", d);
  double ms = ((const Edgedi__V1__PlanReply *)pm)->predicted_ms;
  rpc_free(pm);
  return ms;
}

static fake_agent *start_fake(const char *name, const char *scheduler, rpc_channel *ch) {
  fake_agent_options o = {.name = name, .ms_per_gflop = 5, .fixed_ms = 0.5, .speed = FAKE_SPEED};
  fake_agent *f = NULL;
  err e = {0};
  st_check_ok(fake_agent_start(&o, &f, &e), &e);
  char d[ERR_MSG_BYTES];
  if (fake_agent_register(f, scheduler, NULL, 0, NULL, d, sizeof d) != GRPC_STATUS_OK)
    fail_msg("register %s: %s", name, d);
  const char *names[] = {name};
  st_wait_up(ch, names, 1);
  return f;
}

/* ---- setup ------------------------------------------------------------------------ */

static int group_setup(void **state) {
  (void)state;
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(g.dir, sizeof g.dir, "%s/adaptXXXXXX", tmp ? tmp : "/tmp");
  if (!mkdtemp(g.dir)) return -1;
  snprintf(g.db, sizeof g.db, "%s/edgedi.db", g.dir);
  Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
  spec.name = MODEL;
  spec.zoo = "vgg16c";
  spec.height = spec.width = SIDE_PX;
  char digest[MODELSPEC_DIGEST_BYTES];
  err e = {0};
  st_check_ok(modelspec_build(&spec, &g.m, digest, &e), &e);
  st_check_ok(xexec_create(g.m, 1, &g.x, &e), &e);
  st_check_ok(cpu_gate_open(g.dir, 1, &g.gate, &e), &e);
  g.svc = start_service(g.db, 0);
  g.ch = connect_to(g.svc, g.addr, sizeof g.addr);
  load_model(g.ch);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  service_destroy(g.svc);
  rpc_channel_destroy(g.ch);
  for (int i = 0; i < 2; i++) {
    if (g.real_srv[i]) rpc_server_destroy(g.real_srv[i], 0);
    agent_destroy(g.real[i]);
    fake_agent_destroy(g.f[i]);
  }
  fake_agent_destroy(g.victim);
  cpu_gate_close(g.gate);
  xexec_destroy(g.x);
  model_destroy(g.m);
  char cmd[400];
  if (getenv("ADAPT_KEEP")) return 0; /* the databases, to read after a failure */
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g.dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- online cost models ------------------------------------------------------------- */

static void start_real(int i, const char *name) {
  agent_options o = agent_default_options();
  o.name = name;
  o.speed = REAL_SPEED;
  /* One at a time: two bursts on the two cores at once (and the test's
   * own threads) inflate each other's CPU time, which the speed divides.
   * An agent halved in speed then overlapped less with the other, and its
   * tiles took 0.7x the other's CPU: it looked 1.4x slower, not 2x. */
  o.gate = g.gate;
  err e = {0};
  int port = 0;
  st_check_ok(agent_create(&o, &g.real[i], &e), &e);
  st_check_ok(rpc_server_create("127.0.0.1:0", NULL, &g.real_srv[i], &port, &e), &e);
  st_check_ok(agent_serve(g.real[i], g.real_srv[i], &e), &e);
  st_check_ok(rpc_server_start(g.real_srv[i], &e), &e);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  agent_register_options ro = {.scheduler = g.addr, .address = addr};
  st_check_ok(agent_register_start(g.real[i], &ro, &e), &e);
}

/* What the requests did to the models, printed when the test fails. */
static char trace[4096];

static void trace_costs(double share) {
  const char *names[] = {"r1", "r2"};
  size_t used = strlen(trace);
  for (int i = 0; i < 2 && used < sizeof trace; i++) {
    cluster_agent *a = cluster_find(service_cluster(g.svc), names[i]);
    plan_device m = {0};
    if (a) cluster_agent_get_cost(a, MODEL, &m);
    used += (size_t)snprintf(trace + used, sizeof trace - used, "%s %.0f+%.1f  ", names[i],
                             m.ms_per_gflop, m.fixed_ms);
    if (a) cluster_release(a);
  }
  if (used < sizeof trace)
    snprintf(trace + used, sizeof trace - used, "share %.2f\n", share);
}

/* Requests until the mean of r2's last MEAN_OF shares of the rows has
 * moved by SHARE_MOVE in `direction` (-1 fewer, +1 more) from where it
 * stood: *from, or a mean seen since that lies further the other way (the
 * previous change may still be settling: after a restore the share can
 * first fall on), which *from then gets. At most ADAPT_REQUESTS: the
 * number of requests, or -1; *share gets the last mean. One share
 * scatters (tile times on a loaded machine do), a few in a row tell.
 * With `settle`, all ADAPT_REQUESTS run, so that *share is where the
 * split settled (the level the next change is measured from), not where
 * it first passed the mark. */
static int requests_until(double *from, int direction, bool settle, double *share,
                          unsigned seed) {
  int moved = -1;
  double last[MEAN_OF];
  for (int i = 1; i <= ADAPT_REQUESTS; i++) {
    infer_exact_on(g.ch, seed + (unsigned)i, NULL);
    last[(i - 1) % MEAN_OF] = row_share("r2");
    trace_costs(last[(i - 1) % MEAN_OF]);
    int k = i < MEAN_OF ? i : MEAN_OF;
    *share = 0;
    for (int j = 0; j < k; j++) *share += last[j] / k;
    if (i < MEAN_OF) continue;
    if (direction * (*from - *share) > 0) *from = *share;
    if (moved < 0 && direction * (*share - *from) > SHARE_MOVE) moved = i;
    if (moved >= 0 && !settle) break;
  }
  return moved;
}

static void test_slowed_agent_gets_fewer_rows_then_more(void **state) {
  (void)state;
  start_real(0, "r1");
  start_real(1, "r2");
  const char *names[] = {"r1", "r2"};
  st_wait_up(g.ch, names, 2);
  /* The prior b / a of every fit is the median of the calibrations. */
  cluster_member up[PLAN_MAX_DEVICES];
  int n_up = cluster_acquire_up(service_cluster(g.svc), NULL, up, PLAN_MAX_DEVICES);
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < n_up; i++) {
    plan_device d;
    assert_true(cluster_agent_profiled(up[i].agent, &d));
    lo = fmin(lo, d.fixed_ms / d.ms_per_gflop);
    hi = fmax(hi, d.fixed_ms / d.ms_per_gflop);
    cluster_release(up[i].agent);
  }
  double beta = refit_shared_beta(service_cluster(g.svc));
  assert_true(n_up >= 2 && beta >= lo && beta <= hi);

  double even = 0;
  for (int i = 0; i < WARM_REQUESTS; i++) {
    infer_exact_on(g.ch, 100u + (unsigned)i, "r2");
    double share = row_share("r2");
    trace_costs(share);
    if (i >= WARM_REQUESTS - EVEN_OF) even += share / EVEN_OF;
  }
  /* On this model's small tiles (3 to 30 MFLOP) the fixed cost b weighs,
   * and with each fit's b / a leaning on the device's own calibration
   * (0.003 against 0.012 GFLOP for these two, once) equal agents were
   * split 0.34 / 0.66; with the cluster's median b / a, 0.45 to 0.59. */
  if (even < 0.35 || even > 0.65)
    fail_msg("two agents of one speed: r2 has %.2f of the rows:\n%s", even, trace);

  err e = {0};
  st_check_ok(agent_set_speed(g.real[1], REAL_SPEED / 2, &e), &e); /* throttled */
  double slow = 0;
  int n = requests_until(&even, -1, true, &slow, 200);
  if (n < 0)
    fail_msg("r2 at half speed still has %.2f of the rows (was %.2f):\n%s", slow, even, trace);
  print_message("halved speed: r2's share %.2f moved within %d requests, settled at %.2f (mean "
                "of %d)\n", even, n, slow, MEAN_OF);

  st_check_ok(agent_set_speed(g.real[1], REAL_SPEED, &e), &e); /* recovered */
  double back = 0;
  n = requests_until(&slow, +1, false, &back, 300);
  if (n < 0)
    fail_msg("r2 restored still has %.2f of the rows (slowed: %.2f):\n%s", back, slow, trace);
  print_message("restored: r2's share %.2f -> %.2f (mean of %d) within %d requests\n", slow, back,
                MEAN_OF, n);
  if (getenv("ADAPT_TRACE")) print_message("%s", trace);

  /* The fits are in the database, per device and per model, with errors. */
  store_cost_model m;
  store_device dev;
  store *st = service_store(g.svc);
  st_check_ok(store_device_find(st, "r2", &dev, &e), &e);
  st_check_ok(store_cost_model_get(st, dev.id, STORE_KIND_MODEL_PREFIX MODEL, &m, &e), &e);
  assert_true(m.ms_per_gflop > 0 && m.samples >= REFIT_MIN_TILES && m.fit_error >= 0);

  /* Done with the real agents: the rest uses fakes with death switches. */
  for (int i = 0; i < 2; i++) {
    agent_register_stop(g.real[i]);
    agent_shutdown(g.real[i]);
    rpc_server_destroy(g.real_srv[i], 0);
    g.real_srv[i] = NULL;
  }
  st_wait_state(g.ch, "r1", "down");
  st_wait_state(g.ch, "r2", "down");
}

/* ---- agent loss --------------------------------------------------------------------- */

static void steady_fakes(void) {
  if (g.f[0]) return;
  g.f[0] = start_fake("f1", g.addr, g.ch);
  g.f[1] = start_fake("f2", g.addr, g.ch);
}

/* A (re)started victim "v", used by a request before it is armed: a
 * killed agent restarted is planned on again. */
static void fresh_victim(void) {
  steady_fakes();
  if (g.victim) {
    st_wait_state(g.ch, "v", "down");
    fake_agent_destroy(g.victim);
  }
  g.victim = start_fake("v", g.addr, g.ch);
  g.victims++;
  if (!infer_exact_on(g.ch, 400u + (unsigned)g.victims, "v"))
    fail_msg("the (re)started agent v took no part in a request");
}

/* v dies in `phase` of a request; the request recovers by `policy`. */
static void dies_in(fake_agent_phase phase, infer_on_loss policy, const char *what) {
  service_set_on_loss(g.svc, policy);
  fresh_victim();
  fake_agent_die_at(g.victim, phase, 1);
  double t0 = st_now_ms();
  infer_exact_on(g.ch, 500u + (unsigned)phase, NULL);
  if (!fake_agent_dead(g.victim)) fail_msg("v did not die %s", what);
  assert_true(st_now_ms() - t0 < PROMPT_MS);
  /* Another agent took over v's work within the request, or the request
   * started over without v: the reply says which. */
  const char *want = policy == INFER_ON_LOSS_STANDIN ? "stood in for 'v'"
                                                     : "started over without 'v'";
  if (!strstr(g.recovery, want) || !strstr(g.recovery, "'v'"))
    fail_msg("v died %s, on-loss %s: the reply's recovery is '%s'", what,
             infer_on_loss_name(policy), g.recovery);
  print_message("v died %s, on-loss %s: %s\n", what, infer_on_loss_name(policy), g.recovery);
  /* The history keeps it (requests.recovery). */
  store_request_row *rows = NULL;
  size_t n = 0;
  err e = {0};
  st_check_ok(store_request_recent(service_store(g.svc), 1, &rows, &n, &e), &e);
  assert_int_equal(n, 1);
  assert_string_equal(rows[0].recovery, g.recovery);
  store_free(rows);
  /* Nothing is left counted on the agents (a stand-in's host included):
   * the load-aware planner reads these counts. */
  const char *const steady[] = {"f1", "f2"};
  for (int i = 0; i < 2; i++) {
    cluster_agent *a = cluster_find(service_cluster(g.svc), steady[i]);
    assert_non_null(a);
    assert_int_equal(cluster_agent_busy(a, NULL), 0);
    cluster_release(a);
  }
  st_wait_state(g.ch, "v", "down");
  /* And the next request runs on the others. */
  assert_false(infer_exact_on(g.ch, 600u + (unsigned)phase, "v"));
  assert_string_equal(g.recovery, "");
  service_set_on_loss(g.svc, INFER_ON_LOSS_AUTO);
}

static void test_dies_before_its_tile(void **state) {
  (void)state;
  dies_in(FAKE_DIE_ON_JOB, INFER_ON_LOSS_RESTART, "when its job arrived");
  dies_in(FAKE_DIE_ON_JOB, INFER_ON_LOSS_STANDIN, "when its job arrived");
}

static void test_dies_during_its_tile(void **state) {
  (void)state;
  dies_in(FAKE_DIE_IN_TILE, INFER_ON_LOSS_RESTART, "after running its tile");
  dies_in(FAKE_DIE_IN_TILE, INFER_ON_LOSS_STANDIN, "after running its tile");
}

static void test_dies_in_halo_exchange(void **state) {
  (void)state;
  dies_in(FAKE_DIE_ON_ROWS, INFER_ON_LOSS_RESTART, "when halo rows arrived");
  dies_in(FAKE_DIE_ON_ROWS, INFER_ON_LOSS_STANDIN, "when halo rows arrived");
}

static void test_dies_in_fe_exchange(void **state) {
  (void)state;
  dies_in(FAKE_DIE_ON_FE_SCALE, INFER_ON_LOSS_RESTART, "when an FE scale arrived");
  dies_in(FAKE_DIE_ON_FE_SCALE, INFER_ON_LOSS_STANDIN, "when an FE scale arrived");
}

/* Held: it swallows everything, answers nothing, its stream stays open.
 * After max(10 x predicted, the floor) of silence it is marked down. */
static void test_stuck_agent_is_marked_down(void **state) {
  (void)state;
  fresh_victim();
  fake_agent_hold(g.victim, true);
  double t0 = st_now_ms();
  infer_exact_on(g.ch, 700, NULL);
  double took = st_now_ms() - t0;
  assert_true(took >= STUCK_FLOOR_MS && took < PROMPT_MS);
  st_wait_state(g.ch, "v", "down");
  /* It comes back (registers again), is profiled and used. */
  fake_agent_hold(g.victim, false);
  char d[ERR_MSG_BYTES];
  assert_int_equal(fake_agent_register(g.victim, g.addr, NULL, 0, NULL, d, sizeof d),
                   GRPC_STATUS_OK);
  const char *names[] = {"v"};
  st_wait_up(g.ch, names, 1);
  assert_true(infer_exact_on(g.ch, 701, "v"));
}

static void test_only_agent_dies(void **state) {
  (void)state;
  char db[400], addr[64];
  snprintf(db, sizeof db, "%s/solo.db", g.dir);
  service *s = start_service(db, 0);
  rpc_channel *ch = connect_to(s, addr, sizeof addr);
  load_model(ch);
  fake_agent *only = start_fake("only", addr, ch);
  fake_agent_die_at(only, FAKE_DIE_ON_JOB, 1);
  st_image im = st_make_image(SIDE_PX, SIDE_PX, 3, false, 800);
  Edgedi__V1__InferReply *r = NULL;
  char d[ERR_MSG_BYTES];
  double t0 = st_now_ms();
  grpc_status_code st = infer(ch, &im, &r, d, sizeof d);
  assert_null(r);
  if (st != GRPC_STATUS_UNAVAILABLE || !strstr(d, "no agent is up") || !strstr(d, "'only'"))
    fail_msg("%s: %s", rpc_status_name(st), d);
  assert_true(st_now_ms() - t0 < PROMPT_MS);
  st = infer(ch, &im, &r, d, sizeof d); /* and the next one says so at once */
  assert_int_equal(st, GRPC_STATUS_UNAVAILABLE);
  assert_non_null(strstr(d, "no agent is up"));
  free(im.data);
  rpc_channel_destroy(ch);
  service_destroy(s);
  fake_agent_destroy(only);
}

typedef struct infer_job {
  rpc_channel *ch;
  st_image im;
  uint32_t deadline_ms; /* 0: the default */
  grpc_status_code st;
  char d[ERR_MSG_BYTES];
  double took_ms;
} infer_job;

static void *infer_main(void *arg) {
  infer_job *j = arg;
  Edgedi__V1__InferReply *r = NULL;
  double t0 = st_now_ms();
  j->st = infer_within(j->ch, &j->im, j->deadline_ms, &r, j->d, sizeof j->d);
  j->took_ms = st_now_ms() - t0;
  rpc_free(r ? &r->base : NULL);
  return NULL;
}

/* Two agents p and q that hold everything they get (a request on them
 * stalls), a first request split over both, stalled, and a second one,
 * which with two in comes to run whole and waits at the scheduler for an
 * agent (infer.h, admit.h); its deadline deadline_ms (0: the default).
 * Each on its own service and database `name`. */
typedef struct stalled_pair {
  service *s;
  rpc_channel *ch;
  fake_agent *p, *q;
  infer_job j[2];
  pthread_t t[2];
} stalled_pair;

static void stalled_pair_start(stalled_pair *sp, const char *name, uint32_t deadline_ms,
                               unsigned seed) {
  char db[400], addr[64];
  snprintf(db, sizeof db, "%s/%s.db", g.dir, name);
  sp->s = start_service(db, 0);
  sp->ch = connect_to(sp->s, addr, sizeof addr);
  load_model(sp->ch);
  sp->p = start_fake("p", addr, sp->ch);
  sp->q = start_fake("q", addr, sp->ch);
  fake_agent_hold(sp->p, true);
  fake_agent_hold(sp->q, true);
  for (int i = 0; i < 2; i++) {
    sp->j[i] = (infer_job){.ch = sp->ch, .deadline_ms = i ? deadline_ms : 0};
    sp->j[i].im = st_make_image(SIDE_PX, SIDE_PX, 3, false, seed + (unsigned)i);
    assert_int_equal(pthread_create(&sp->t[i], NULL, infer_main, &sp->j[i]), 0);
    while (i == 0 && fake_agent_jobs_seen(sp->p) + fake_agent_jobs_seen(sp->q) == 0)
      st_sleep_ms(5);
  }
}

/* After both requests' threads are joined. */
static void stalled_pair_free(stalled_pair *sp) {
  for (int i = 0; i < 2; i++) free(sp->j[i].im.data);
  rpc_channel_destroy(sp->ch);
  service_destroy(sp->s);
  fake_agent_destroy(sp->p);
  fake_agent_destroy(sp->q);
}

/* The waiting request's agents all die: it ends UNAVAILABLE at once, not
 * at its deadline, as does the split request it waited behind. (The
 * agents die one after the other: the waiting request may take the second
 * in between, freed by the split request's lost attempt, and then lose it;
 * either way it says no agent is up.) */
static void test_waiting_request_when_all_agents_die(void **state) {
  (void)state;
  stalled_pair sp;
  stalled_pair_start(&sp, "waiting", 0, 1200);
  st_sleep_ms(300);
  fake_agent_kill(sp.p);
  fake_agent_kill(sp.q);
  for (int i = 0; i < 2; i++) {
    pthread_join(sp.t[i], NULL);
    if (sp.j[i].st != GRPC_STATUS_UNAVAILABLE || !strstr(sp.j[i].d, "no agent is up"))
      fail_msg("request %d: %s: %s", i, rpc_status_name(sp.j[i].st), sp.j[i].d);
    assert_true(sp.j[i].took_ms < PROMPT_MS);
  }
  stalled_pair_free(&sp);
}

/* The waiting request's deadline passes while it waits: DEADLINE_EXCEEDED;
 * the stalled one ends as a stuck agent's request does. */
static void test_waiting_request_misses_its_deadline(void **state) {
  (void)state;
  enum { SHORT_MS = 150 }; /* under the stuck floor: no agent is given up yet */
  stalled_pair sp;
  stalled_pair_start(&sp, "deadline", SHORT_MS, 1300);
  pthread_join(sp.t[1], NULL);
  if (sp.j[1].st != GRPC_STATUS_DEADLINE_EXCEEDED || !strstr(sp.j[1].d, "within its deadline"))
    fail_msg("waiting request: %s: %s", rpc_status_name(sp.j[1].st), sp.j[1].d);
  assert_true(sp.j[1].took_ms >= SHORT_MS && sp.j[1].took_ms < PROMPT_MS);
  pthread_join(sp.t[0], NULL);
  assert_int_not_equal(sp.j[0].st, GRPC_STATUS_OK);
  stalled_pair_free(&sp);
}

/* ---- stragglers ---------------------------------------------------------------------- */

/* q slows down far past its model mid-way: its work is re-issued to p as
 * a stand-in and p's copy wins, or (on-loss restart) the request is
 * re-planned without q; exact either way. */
static void test_straggler_is_stood_in_for(void **state) {
  (void)state;
  char db[400], addr[64];
  snprintf(db, sizeof db, "%s/straggler.db", g.dir);
  service *s = start_service(db, STRAGGLER_FACTOR);
  rpc_channel *ch = connect_to(s, addr, sizeof addr);
  load_model(ch);
  fake_agent *p = start_fake("p", addr, ch), *q = start_fake("q", addr, ch);
  for (int i = 0; i < WARM_REQUESTS; i++) infer_exact_on(ch, 900u + (unsigned)i, "q");
  /* A straggler's model is scaled by how late it was (infer.h): each
   * policy starts from the warm model, so that q has rows to be late with
   * (and p's is restored after a stall made it the straggler, below). */
  cluster_agent *qa = cluster_find(service_cluster(s), "q");
  cluster_agent *pa = cluster_find(service_cluster(s), "p");
  assert_non_null(qa);
  assert_non_null(pa);
  plan_device warm_q, warm_p;
  assert_true(cluster_agent_get_cost(qa, MODEL, &warm_q));
  assert_true(cluster_agent_get_cost(pa, MODEL, &warm_p));
  const infer_on_loss policies[] = {INFER_ON_LOSS_AUTO, INFER_ON_LOSS_RESTART};
  for (int i = 0; i < 2; i++) {
    /* A host stall can make p the straggler before q (under ASan with
     * other tests beside it one of p's 3.5 ms tiles took 199 ms, 28 times
     * its prediction, CI 2026-11-27): the scheduler then rightly stands in
     * for p, which is not the case under test. q straggles again then, at
     * most STRAGGLE_TRIES times; what the reply must say does not change. */
    for (int attempt = 0;; attempt++) {
      /* q back at its speed and in the plans again (after a straggle it
       * may be down until it registers anew and is profiled: on a loaded
       * machine that took over 20 requests, 2026-11-27), before it
       * straggles. */
      fake_agent_set_speed(q, FAKE_SPEED);
      unsigned seed = 960u + 20u * (unsigned)i + 100u * (unsigned)attempt;
      double t0 = st_now_ms();
      for (int tries = 0; !infer_exact_on(ch, seed + (unsigned)tries, "q"); tries++) {
        if (st_now_ms() - t0 > PROMPT_MS)
          fail_msg("q took no part in %d requests (%d ms) after policy %d", tries + 1,
                   PROMPT_MS, i);
        st_sleep_ms(100);
      }
      err e = {0};
      st_check_ok(cluster_agent_set_cost(qa, MODEL, &warm_q, &e), &e);
      service_set_on_loss(s, policies[i]);
      fake_agent_set_speed(q, FAKE_SPEED / STRAGGLER_SLOWDOWN); /* far slower than its model says */
      /* q's work done by p (each device named after who ran its work), or
       * q left out of the new plan; q's late results ignored. */
      assert_false(infer_exact_on(ch, 950u + 10u * (unsigned)attempt + (unsigned)i, "q"));
      if (strstr(g.recovery, "'q' straggled") || !strstr(g.recovery, "'p' straggled") ||
          attempt + 1 == STRAGGLE_TRIES)
        break;
      print_message("p straggled first (try %d): %s\n", attempt + 1, g.recovery);
      st_check_ok(cluster_agent_set_cost(pa, MODEL, &warm_p, &e), &e); /* scaled as late */
    }
    const char *want = i == 0 ? "'p' stood in for 'q'" : "started over without 'q'";
    if (!strstr(g.recovery, "'q' straggled") || !strstr(g.recovery, want))
      fail_msg("on-loss %s: the reply's recovery is '%s'", infer_on_loss_name(policies[i]),
               g.recovery);
    print_message("q straggled, on-loss %s: %s\n", infer_on_loss_name(policies[i]), g.recovery);
  }
  cluster_release(pa);
  cluster_release(qa);
  rpc_channel_destroy(ch);
  service_destroy(s);
  fake_agent_destroy(p);
  fake_agent_destroy(q);
}

/* ---- nonsense ------------------------------------------------------------------------ */

static void test_nonsense_cost_never_reaches_planner(void **state) {
  (void)state;
  steady_fakes();
  cluster *cl = service_cluster(g.svc);
  cluster_agent *a = cluster_find(cl, "f1");
  assert_non_null(a);
  plan_device before, now;
  assert_true(cluster_agent_get_cost(a, MODEL, &before));
  double predicted = plan_predicted_ms();
  plan_device bad[4] = {before, before, before, before};
  bad[0].ms_per_gflop = NAN;
  bad[1].ms_per_gflop = -3;
  bad[2].fixed_ms = -1;
  bad[3].bandwidth_mbps = 0;
  for (int i = 0; i < 4; i++) {
    err e = {0};
    assert_int_equal(cluster_agent_set_cost(a, MODEL, &bad[i], &e), ERR_INVALID);
    assert_int_equal(cluster_agent_set_cost(a, NULL, &bad[i], &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "f1"));
  }
  assert_true(cluster_agent_get_cost(a, MODEL, &now));
  assert_memory_equal(&now, &before, sizeof now);
  assert_true(plan_predicted_ms() == predicted);

  /* Tiles whose time falls with their work: the refit refuses them and
   * the model the planner reads stays. */
  store *st = service_store(g.svc);
  store_request_new rn = {.model = "nonsense", .planner = "proportional"};
  int64_t rid = 0;
  err e = {0};
  st_check_ok(store_request_begin(st, &rn, &rid, &e), &e);
  store_tile t[REFIT_WINDOW_TILES];
  for (int i = 0; i < REFIT_WINDOW_TILES; i++)
    t[i] = (store_tile){.request_id = rid, .device_id = cluster_agent_device_id(a),
                        .end_layer = 1, .row_hi = 1, .gflop = 0.01 * (i % 10 + 1),
                        .measured_compute_ms = 100.0 - 9.0 * (i % 10), .predicted_compute_ms = 1};
  st_check_ok(store_tiles_add(st, t, REFIT_WINDOW_TILES, &e), &e);
  plan_device general;
  assert_true(cluster_agent_get_cost(a, NULL, &general));
  refit_report rep;
  st_check_ok(refit_device(st, a, "nonsense", NULL, -1, &rep, &e), &e);
  assert_false(rep.compute_fitted);
  assert_false(rep.model_fitted);
  if (!strstr(rep.why, "does not grow") && !strstr(rep.why, "explains too little"))
    fail_msg("refit of nonsense: %s", rep.why);
  assert_true(cluster_agent_get_cost(a, NULL, &now));
  assert_true(now.ms_per_gflop == general.ms_per_gflop && now.fixed_ms == general.fixed_ms);
  assert_true(cluster_agent_get_cost(a, "nonsense", &now)); /* no model of its own: general */
  assert_true(now.ms_per_gflop == general.ms_per_gflop);
  cluster_release(a);
  /* Nothing nonsensical was stored either, and requests still run. */
  store_device dev;
  st_check_ok(store_device_find(st, "f1", &dev, &e), &e);
  assert_true(dev.cost.ms_per_gflop > 0 && isfinite(dev.cost.ms_per_gflop));
  assert_int_equal(store_cost_model_get(st, dev.id, STORE_KIND_MODEL_PREFIX "nonsense", &dev.cost,
                                        &e),
                   ERR_NOT_FOUND);
  infer_exact_on(g.ch, 1000, NULL);
  st_check_ok(store_integrity_check(st, &e), &e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slowed_agent_gets_fewer_rows_then_more),
      cmocka_unit_test(test_dies_before_its_tile),
      cmocka_unit_test(test_dies_during_its_tile),
      cmocka_unit_test(test_dies_in_halo_exchange),
      cmocka_unit_test(test_dies_in_fe_exchange),
      cmocka_unit_test(test_stuck_agent_is_marked_down),
      cmocka_unit_test(test_only_agent_dies),
      cmocka_unit_test(test_waiting_request_when_all_agents_die),
      cmocka_unit_test(test_waiting_request_misses_its_deadline),
      cmocka_unit_test(test_straggler_is_stood_in_for),
      cmocka_unit_test(test_nonsense_cost_never_reaches_planner),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

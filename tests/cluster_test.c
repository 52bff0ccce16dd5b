/* cluster_test.c — the real programs as a cluster on loopback: one
 * edgedi-scheduler and four edgedi-agent processes of different speeds,
 * started, restarted and stopped as an operator would (cli/localcluster.h).
 *
 * What must hold:
 *  - every zoo model, loaded at a small input through LoadModel, answers
 *    20 requests each (gray and color uint8, float32) with the logits of
 *    the single-device run (modelspec_build + preprocess + xexec_run of the
 *    same spec) within 1e-4 of the largest logit;
 *  - faster agents get more rows than slower ones (Plan);
 *  - requests, tiles, calibration samples and cost models are in the
 *    database (read through storage/ while the scheduler runs);
 *  - after the scheduler process restarts on the same database, devices
 *    and their fitted cost models are back before any agent reconnects,
 *    the agents register again on their own and requests work again;
 *  - an agent address that does not answer is refused UNAVAILABLE with a
 *    message (a direct RegisterAgent, and an agent process advertising a
 *    dead address never comes up), and a second agent under a taken name
 *    is refused (it exits with its refusal status); the cluster keeps
 *    serving throughout;
 *  - every process exits cleanly on SIGTERM, and the database passes
 *    PRAGMA integrity_check at the end.
 *
 * The tests run in order on one cluster. Children die with this process
 * (PR_SET_PDEATHSIG) and are stopped in the group teardown, so a failed
 * assertion leaves nothing running. Children's logs go to
 * $TEST_UNDECLARED_OUTPUTS_DIR (bazel-testlogs/.../test.outputs).
 *
 * Speeds are well below 1 so that every device's time is emulated
 * (CPU time / speed) even when other tests share the cores: a fast agent's
 * wall time depends on contention only past 4x, and the 5 : 1 ratio keeps
 * the fast ones clearly faster. Agents start one by one, so that their
 * calibrations do not share the cores either.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/localcluster.h"
#include "cli/procs.h"
#include "proto/edgedi.pb-c.h"
#include "runtime/modelspec.h"
#include "runtime/preprocess.h"
#include "runtime/protocol.h"
#include "runtime/stats.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"
#include "scheduler/plan_recall.h"
#include "storage/store.h"

enum {
  SIDE_PX = 48, /* every model at 3 x 48 x 48: small, and each still spatial */
  REQUESTS = 20,
  IMAGES = 4,   /* distinct inputs, cycled over the requests */
  MAX_MODELS = 8,
  UP_TIMEOUT_MS = 120000,
  REFUSAL_EXIT_MS = 20000, /* an agent refused: it exits within this */
  GHOST_WATCH_MS = 4000,   /* an agent at a dead address stays out this long */
  AGENT_EXIT_REFUSED = 3,  /* edgedi-agent's status after --exit-on-refusal */
};

static const double TOLERANCE = 1e-4; /* relative to the largest logit */

static const localcluster_agent agents[] = {
    {.name = "fast-1", .speed = 0.25},
    {.name = "fast-2", .speed = 0.25},
    {.name = "slow-1", .speed = 0.05},
    {.name = "slow-2", .speed = 0.05},
};
#define N_AGENTS ((int)(sizeof agents / sizeof agents[0]))

typedef struct image {
  Edgedi__V1__Image msg;
  void *data;
  float *ref_logits[MAX_MODELS]; /* the single-device answer per model */
} image;

typedef struct model_case {
  char name[64];
  const char *zoo;
  char digest[MODELSPEC_DIGEST_BYTES];
  size_t n_logits;
} model_case;

static struct {
  char dir[512], db[600], logs[512];
  localcluster *lc;
  rpc_channel *ch;
  model_case models[MAX_MODELS];
  int n_models;
  image images[IMAGES];
  bool stopped_cleanly;
} g;

/* ---- helpers --------------------------------------------------------------- */

static void check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s", e->msg);
}

/* A pseudo-random picture: gray or RGB uint8, or RGB float32. */
static void make_image(image *im, int c, bool f32, unsigned seed) {
  size_t n = (size_t)SIDE_PX * SIDE_PX * (size_t)c;
  im->data = malloc(n * (f32 ? 4 : 1));
  assert_non_null(im->data);
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    if (f32) ((float *)im->data)[i] = (float)(s >> 8) / (float)(1u << 24) * 2.0f - 0.5f;
    else ((uint8_t *)im->data)[i] = (uint8_t)(s >> 24);
  }
  edgedi__v1__image__init(&im->msg);
  im->msg.height = im->msg.width = SIDE_PX;
  im->msg.channels = (uint32_t)c;
  ProtobufCBinaryData d = {.len = n * (f32 ? 4 : 1), .data = im->data};
  if (f32) im->msg.f32 = d;
  else im->msg.u8 = d;
}

static Edgedi__V1__ModelSpec spec_of(const model_case *mc) {
  Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
  spec.name = (char *)mc->name;
  spec.zoo = (char *)mc->zoo;
  spec.height = spec.width = SIDE_PX;
  return spec;
}

/* The single-device logits of model k for every image. */
static void reference(int k) {
  model_case *mc = &g.models[k];
  Edgedi__V1__ModelSpec spec = spec_of(mc);
  model *m = NULL;
  xexec *x = NULL;
  err e = {0};
  check_ok(modelspec_build(&spec, &m, mc->digest, &e), &e);
  check_ok(xexec_create(m, 1, &x, &e), &e);
  mc->n_logits = model_shape_elems(model_tensor_shape(m, m->n_layers - 1));
  float *input = malloc(model_shape_elems(m->input) * sizeof *input);
  assert_non_null(input);
  for (int i = 0; i < IMAGES; i++) {
    const Edgedi__V1__Image *im = &g.images[i].msg;
    bool f32 = im->f32.len > 0;
    preprocess_image pi = preprocess_whole(f32 ? PREPROCESS_F32 : PREPROCESS_U8,
                                           f32 ? im->f32.data : im->u8.data, SIDE_PX, SIDE_PX,
                                           (int)im->channels);
    check_ok(preprocess_rows(&pi, m->input, (model_rows){0, SIDE_PX}, input, &e), &e);
    float *out = malloc(mc->n_logits * sizeof *out);
    assert_non_null(out);
    check_ok(xexec_run(x, input, out, &e), &e);
    g.images[i].ref_logits[k] = out;
  }
  free(input);
  xexec_destroy(x);
  model_destroy(m);
}

static Edgedi__V1__InferReply *infer(const char *model, const Edgedi__V1__Image *im) {
  Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
  req.protocol_version = EDGEDI_PROTOCOL_VERSION;
  req.model = (char *)model;
  req.image = (Edgedi__V1__Image *)im;
  Edgedi__V1__InferReply *r = NULL;
  err e = {0};
  grpc_status_code st = client_infer(g.ch, &req, &r, &e);
  if (st != GRPC_STATUS_OK) fail_msg("Infer %s: %s", model, e.msg);
  return r;
}

/* One request of model k on image i, checked against the reference. */
static void infer_exact(int k, int i) {
  Edgedi__V1__InferReply *r = infer(g.models[k].name, &g.images[i].msg);
  assert_int_equal(r->n_logits, g.models[k].n_logits);
  double d = stats_max_rel_diff(r->logits, g.images[i].ref_logits[k], r->n_logits);
  if (d > TOLERANCE)
    fail_msg("%s, image %d: logits differ by %.3g relative (plan %016llx)", g.models[k].name, i,
             d, (unsigned long long)r->plan_id);
  assert_true(r->n_devices >= 1);
  rpc_free((ProtobufCMessage *)r);
}

static Edgedi__V1__ListDevicesReply *list_devices(void) {
  Edgedi__V1__ListDevicesReply *l = NULL;
  err e = {0};
  if (client_list_devices(g.ch, &l, &e) != GRPC_STATUS_OK) fail_msg("ListDevices: %s", e.msg);
  return l;
}

/* A TCP port on loopback that nobody listens on (bound, then released). */
static int dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* true when the child's log (DIR/<name>.log, see localcluster.h) says it. */
static bool log_says(const char *name, const char *needle) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s.log", g.logs, name);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  char line[2048];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

static void wait_up(void) {
  err e = {0};
  check_ok(localcluster_wait_up(g.lc, UP_TIMEOUT_MS, &e), &e);
}

/* ---- setup ---------------------------------------------------------------- */

static int setup(void **state) {
  (void)state;
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(g.dir, sizeof g.dir, "%s", tmp && *tmp ? tmp : "/tmp");
  snprintf(g.db, sizeof g.db, "%s/cluster_test.db", g.dir);
  unlink(g.db);
  const char *out = getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  snprintf(g.logs, sizeof g.logs, "%s", out && *out ? out : g.dir);
  /* Gray and color camera pixels, and a float tensor. */
  static const struct {
    int channels;
    bool f32;
  } kinds[IMAGES] = {{1, false}, {3, false}, {1, false}, {3, true}};
  for (int i = 0; i < IMAGES; i++)
    make_image(&g.images[i], kinds[i].channels, kinds[i].f32, 11u + (unsigned)i);

  localcluster_options o = {.db_path = g.db, .models = "none", .log_dir = g.logs,
                            .one_by_one = true, .n_agents = N_AGENTS};
  for (int i = 0; i < N_AGENTS; i++) o.agents[i] = agents[i];
  err e = {0};
  if (localcluster_start(&o, &g.lc, &e) != ERR_OK) {
    fprintf(stderr, "cluster_test: %s\n", e.msg);
    return -1;
  }
  fprintf(stderr, "cluster_test: scheduler at %s, logs in %s\n", localcluster_address(g.lc),
          g.logs);
  if (client_connect(localcluster_address(g.lc), &g.ch, &e) != ERR_OK) {
    fprintf(stderr, "cluster_test: %s\n", e.msg);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  rpc_channel_destroy(g.ch);
  localcluster_destroy(g.lc); /* stops whatever still runs */
  for (int i = 0; i < IMAGES; i++) {
    for (int k = 0; k < MAX_MODELS; k++) free(g.images[i].ref_logits[k]);
    free(g.images[i].data);
  }
  return 0;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_agents_come_up_profiled(void **state) {
  (void)state;
  wait_up();
  Edgedi__V1__ListDevicesReply *l = list_devices();
  for (int i = 0; i < N_AGENTS; i++) {
    const Edgedi__V1__Device *d = client_device_named(l, agents[i].name);
    assert_non_null(d);
    assert_string_equal(d->state, "up");
    assert_non_null(d->cost);
    assert_true(d->cost->ms_per_gflop > 0);
    assert_true(d->cost->samples > 0);
  }
  rpc_free((ProtobufCMessage *)l);
}

static void test_every_zoo_model_loads(void **state) {
  (void)state;
  err e = {0};
  for (const char *const *z = zoo_names(); *z; z++) {
    assert_true(g.n_models < MAX_MODELS);
    model_case *mc = &g.models[g.n_models];
    snprintf(mc->name, sizeof mc->name, "%s-%d", *z, SIDE_PX);
    mc->zoo = *z;
    reference(g.n_models);
    Edgedi__V1__ModelSpec spec = spec_of(mc);
    Edgedi__V1__LoadModelReply *r = NULL;
    if (client_load_model(g.ch, &spec, &r, &e) != GRPC_STATUS_OK)
      fail_msg("LoadModel %s: %s", mc->name, e.msg);
    assert_string_equal(r->name, mc->name);
    assert_string_equal(r->digest, mc->digest); /* the very graph the reference ran */
    rpc_free((ProtobufCMessage *)r);
    g.n_models++;
  }
  assert_int_equal(g.n_models, 8);
}

static void test_every_model_exact_20_requests(void **state) {
  (void)state;
  for (int k = 0; k < g.n_models; k++)
    for (int r = 0; r < REQUESTS; r++) infer_exact(k, r % IMAGES);
}

/* Rows summed over every segment of the proportional plan, per speed
 * class: the fast agents together compute more rows than the slow ones,
 * for every model, by the cost models the requests taught the scheduler.
 * The default (exact) planner gives rows where they pay, which on a small
 * model can be one agent whose model-specific fit happens to look best;
 * what holds for it is that its plan is never predicted slower than the
 * proportional one, from the same cost models, but for the reuse gain of
 * a recalled plan. */
static void test_faster_agents_get_more_rows(void **state) {
  (void)state;
  for (int k = 0; k < g.n_models; k++) {
    Edgedi__V1__PlanReply *p = NULL, *ex = NULL;
    err e = {0};
    if (client_plan(g.ch, g.models[k].name, "proportional", &p, &e) != GRPC_STATUS_OK ||
        client_plan(g.ch, g.models[k].name, NULL, &ex, &e) != GRPC_STATUS_OK)
      fail_msg("Plan %s: %s", g.models[k].name, e.msg);
    assert_string_equal(ex->planner, "exact");
    /* The plan shown may be a recalled one, kept while within the reuse
     * gain of a fresh exact plan (scheduler/plan_recall.h), which is never
     * predicted slower than the proportional one. */
    if (!(ex->predicted_ms <= p->predicted_ms * (1 + PLAN_RECALL_DEFAULT_GAIN) * (1 + 1e-9)))
      fail_msg("%s: exact predicts %.3f ms, proportional %.3f ms", g.models[k].name,
               ex->predicted_ms, p->predicted_ms);
    rpc_free((ProtobufCMessage *)ex);
    assert_true(p->n_segments >= 1);
    unsigned fast = 0, slow = 0;
    for (size_t s = 0; s < p->n_segments; s++)
      for (size_t j = 0; j < p->segments[s]->n_parts; j++) {
        const Edgedi__V1__Assignment *a = p->segments[s]->parts[j];
        unsigned rows = a->out_rows->hi - a->out_rows->lo;
        if (strncmp(a->device, "fast", 4) == 0) fast += rows;
        else slow += rows;
      }
    if (!(fast > slow)) {
      Edgedi__V1__ListDevicesReply *l = list_devices();
      for (size_t i = 0; i < l->n_devices; i++)
        if (l->devices[i]->cost)
          print_message("%s: %.1f ms/GFLOP + %.2f ms\n", l->devices[i]->name,
                        l->devices[i]->cost->ms_per_gflop, l->devices[i]->cost->fixed_ms);
      rpc_free((ProtobufCMessage *)l);
      print_message("%s (planner %s): the fast agents got %u rows, the slow ones %u\n",
                    g.models[k].name, p->planner, fast, slow);
      rpc_free((ProtobufCMessage *)p);
      fail();
    }
    rpc_free((ProtobufCMessage *)p);
  }
}

static void test_database_has_history_and_cost_models(void **state) {
  (void)state;
  err e = {0};
  store *st = NULL;
  check_ok(store_open(g.db, &st, &e), &e); /* WAL: alongside the running scheduler */
  store_request_row *reqs = NULL;
  size_t n = 0;
  check_ok(store_request_recent(st, 10000, &reqs, &n, &e), &e);
  size_t ok = 0;
  for (size_t i = 0; i < n; i++)
    if (reqs[i].status == STORE_REQUEST_OK) {
      ok++;
      assert_true(reqs[i].has_plan);
      assert_true(reqs[i].measured_ms > 0);
      assert_true(reqs[i].bytes_moved > 0);
      assert_true(reqs[i].bytes_gather_all > 0);
    }
  assert_true(ok >= (size_t)(g.n_models * REQUESTS));
  store_free(reqs);

  store_device *devs = NULL;
  check_ok(store_device_list(st, &devs, &n, &e), &e);
  assert_int_equal(n, N_AGENTS);
  size_t tiles_seen = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(devs[i].has_cost);
    assert_true(devs[i].cost.samples > 0);
    store_tile *tiles = NULL;
    size_t nt = 0;
    check_ok(store_tiles_recent(st, devs[i].id, 5, &tiles, &nt, &e), &e);
    /* The exact planner may leave a 0.05 agent out of every small model
     * (it does not pay for its transfers); the fast ones always compute. */
    if (nt == 0 && strncmp(devs[i].name, "fast", 4) == 0)
      fail_msg("device %s has no tiles in the history", devs[i].name);
    tiles_seen += nt;
    store_free(tiles);
    store_profile_sample *ps = NULL;
    check_ok(store_profile_recent(st, devs[i].id, 5, &ps, &nt, &e), &e);
    assert_true(nt > 0);
    store_free(ps);
  }
  assert_true(tiles_seen >= 2 * 5); /* both fast agents, 5 recent tiles each */
  store_free(devs);
  store_close(st);
}

static void test_scheduler_restart_restores_state(void **state) {
  (void)state;
  err e = {0};
  check_ok(localcluster_restart_scheduler(g.lc, &e), &e);
  /* Agents notice the lost stream and register again some seconds later:
   * what shows right away came from the database. */
  Edgedi__V1__ListDevicesReply *l = list_devices();
  for (int i = 0; i < N_AGENTS; i++) {
    const Edgedi__V1__Device *d = client_device_named(l, agents[i].name);
    if (!d) fail_msg("device %s did not come back from the database", agents[i].name);
    assert_non_null(d->cost);
    assert_true(d->cost->samples > 0);
    assert_true(d->cost->ms_per_gflop > 0);
  }
  rpc_free((ProtobufCMessage *)l);
  wait_up(); /* they re-register on their own */
  for (int k = 0; k < g.n_models; k++) infer_exact(k, k % IMAGES); /* models came back too */
}

static void test_agent_address_that_does_not_answer(void **state) {
  (void)state;
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", dead_port());
  Edgedi__V1__RegisterAgentRequest req = EDGEDI__V1__REGISTER_AGENT_REQUEST__INIT;
  req.protocol_version = EDGEDI_PROTOCOL_VERSION;
  req.name = "ghost";
  req.address = addr;
  req.cores = 1;
  req.threads = 1;
  Edgedi__V1__RegisterAgentReply *r = NULL;
  err e = {0};
  grpc_status_code st = client_register_agent(g.ch, &req, &r, &e);
  assert_int_equal(st, GRPC_STATUS_UNAVAILABLE);
  assert_non_null(strstr(e.msg, "UNAVAILABLE"));
  assert_true(strlen(e.msg) > strlen("UNAVAILABLE: "));

  /* An agent process advertising that address: it keeps trying, the
   * scheduler keeps refusing, it never comes up, nothing else suffers. */
  char advertise[80];
  snprintf(advertise, sizeof advertise, "%s", addr);
  const char *extra[] = {"--advertise", advertise, NULL};
  localcluster_agent ghost = {.name = "ghost-agent", .speed = 0.5};
  procs_child c;
  check_ok(localcluster_spawn_agent(g.lc, &ghost, extra, &c, &e), &e);
  usleep(GHOST_WATCH_MS * 1000);
  bool alive = procs_alive(&c);
  Edgedi__V1__ListDevicesReply *l = list_devices();
  const Edgedi__V1__Device *d = client_device_named(l, "ghost-agent");
  bool up = d && strcmp(d->state, "up") == 0;
  rpc_free((ProtobufCMessage *)l);
  procs_stop_one(&c, PROCS_DEFAULT_GRACE_MS);
  assert_true(alive);
  assert_false(up);
  assert_true(log_says("ghost-agent", "UNAVAILABLE"));
  infer_exact(0, 0);
  check_ok(localcluster_check_alive(g.lc, &e), &e);
}

static void test_second_agent_under_taken_name(void **state) {
  (void)state;
  const char *extra[] = {"--exit-on-refusal", NULL};
  localcluster_agent twin = agents[0]; /* "fast-1", live at another address */
  procs_child c;
  err e = {0};
  check_ok(localcluster_spawn_agent(g.lc, &twin, extra, &c, &e), &e);
  err_code rc = procs_wait(&c, REFUSAL_EXIT_MS, &e);
  if (rc != ERR_OK) procs_stop_one(&c, PROCS_DEFAULT_GRACE_MS);
  check_ok(rc, &e);
  assert_true(WIFEXITED(c.exit_status));
  assert_int_equal(WEXITSTATUS(c.exit_status), AGENT_EXIT_REFUSED);
  procs_stop_one(&c, 0); /* closes its pipe */
  assert_true(log_says(twin.name, "ALREADY_EXISTS")); /* the twin logs to the same file */

  Edgedi__V1__ListDevicesReply *l = list_devices();
  const Edgedi__V1__Device *d = client_device_named(l, agents[0].name);
  assert_non_null(d);
  assert_string_equal(d->state, "up"); /* the original keeps its name */
  rpc_free((ProtobufCMessage *)l);
  infer_exact(1, 1);
  check_ok(localcluster_check_alive(g.lc, &e), &e);
}

static void test_clean_stop_and_database_integrity(void **state) {
  (void)state;
  bool clean = localcluster_stop(g.lc);
  if (!clean) {
    char how[128];
    procs_describe_exit(localcluster_scheduler(g.lc), how, sizeof how);
    fail_msg("not every process exited cleanly (scheduler: %s)", how);
  }
  err e = {0};
  store *st = NULL;
  check_ok(store_open(g.db, &st, &e), &e);
  check_ok(store_integrity_check(st, &e), &e);
  store_device *devs = NULL;
  size_t n = 0;
  check_ok(store_device_list(st, &devs, &n, &e), &e);
  for (size_t i = 0; i < n; i++) assert_int_equal(devs[i].state, STORE_DEVICE_DOWN);
  store_free(devs);
  store_close(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_agents_come_up_profiled),
      cmocka_unit_test(test_every_zoo_model_loads),
      cmocka_unit_test(test_every_model_exact_20_requests),
      cmocka_unit_test(test_faster_agents_get_more_rows),
      cmocka_unit_test(test_database_has_history_and_cost_models),
      cmocka_unit_test(test_scheduler_restart_restores_state),
      cmocka_unit_test(test_agent_address_that_does_not_answer),
      cmocka_unit_test(test_second_agent_under_taken_name),
      cmocka_unit_test(test_clean_stop_and_database_integrity),
  };
  return cmocka_run_group_tests_name("cluster", tests, setup, teardown);
}

/* agent_test.c — the node agent (runtime/agent.h) driven as the scheduler
 * drives it: over a real gRPC server on loopback, in-process.
 *
 * Execute: the Hello exchange and a refused protocol version, a first
 * message that is not a Hello, a whole one-device inference through the
 * scheduler's own dispatcher whose logits equal the single-device run,
 * malformed jobs and undecodable bytes that leave the stream usable, a
 * second stream replacing the first, a half-close that still delivers, the
 * link emulation's delays. LoadModel: build, the known-digest shortcut, a
 * digest mismatch, bad specs. Profile: more GFLOP takes longer, bad sizes.
 * Registration: fields sent, a scheduler that comes up late, a refusal
 * with exit_on_refusal, registering again after the stream ended.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/agent.h"
#include "runtime/link.h"
#include "runtime/model.h"
#include "runtime/modelspec.h"
#include "runtime/preprocess.h"
#include "runtime/protocol.h"
#include "runtime/rpc.h"
#include "runtime/xexec.h"
#include "scheduler/dispatch.h"
#include "scheduler/plan.h"

enum {
  READ_TIMEOUT_MS = 20000, /* generous: ASan and a loaded machine */
  QUIET_MS = 300,          /* "nothing more comes" */
  CALL_DEADLINE_MS = 20000,
  GRACE_MS = 1000,
  IMAGE_SIDE_PX = 64,
};

#define AGENT_NAME "test-agent"

static void check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s", e->msg);
}

/* ---- fixture: an agent served on loopback, a channel to it ---------------- */

typedef struct fixture {
  agent *a;
  rpc_server *srv;
  rpc_channel *ch;
  int port;
} fixture;

static void fixture_start(fixture *f, const agent_options *o) {
  err e = {0};
  memset(f, 0, sizeof *f);
  agent_options ao = o ? *o : agent_default_options();
  if (!o) ao.name = AGENT_NAME;
  check_ok(agent_create(&ao, &f->a, &e), &e);
  check_ok(rpc_server_create("127.0.0.1:0", NULL, &f->srv, &f->port, &e), &e);
  check_ok(agent_serve(f->a, f->srv, &e), &e);
  check_ok(rpc_server_start(f->srv, &e), &e);
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", f->port);
  check_ok(rpc_channel_create(target, NULL, &f->ch, &e), &e);
}

static void fixture_stop(fixture *f) {
  rpc_channel_destroy(f->ch);
  rpc_server_destroy(f->srv, GRACE_MS);
  agent_destroy(f->a);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  fixture_start(f, NULL);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_stop(*state);
  free(*state);
  return 0;
}

/* ---- stream helpers ------------------------------------------------------- */

static rpc_stream *open_stream(rpc_channel *ch) {
  rpc_stream *s = NULL;
  err e = {0};
  check_ok(rpc_stream_open(ch, AGENT_EXECUTE_METHOD, 0, &s, &e), &e);
  return s;
}

static void write_in(rpc_stream *s, const Edgedi__V1__ExecuteIn *in) {
  err e = {0};
  check_ok(rpc_stream_write(s, &in->base, &e), &e);
}

static Edgedi__V1__ExecuteOut *read_out(rpc_stream *s, int timeout_ms) {
  ProtobufCMessage *m = NULL;
  err e = {0};
  err_code rc = rpc_stream_read(s, &edgedi__v1__execute_out__descriptor, timeout_ms, &m, &e);
  if (rc != ERR_OK) fail_msg("read: %s", e.msg);
  if (!m) fail_msg("read: the stream ended");
  return (Edgedi__V1__ExecuteOut *)m;
}

static void send_hello(rpc_stream *s, uint32_t version) {
  Edgedi__V1__Hello h = EDGEDI__V1__HELLO__INIT;
  h.protocol_version = version;
  h.name = "test-scheduler";
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_HELLO;
  in.hello = &h;
  write_in(s, &in);
}

/* Opens a stream and completes the Hello exchange. */
static rpc_stream *open_live(rpc_channel *ch) {
  rpc_stream *s = open_stream(ch);
  send_hello(s, EDGEDI_PROTOCOL_VERSION);
  Edgedi__V1__ExecuteOut *o = read_out(s, READ_TIMEOUT_MS);
  assert_int_equal(o->msg_case, EDGEDI__V1__EXECUTE_OUT__MSG_HELLO);
  assert_int_equal(o->hello->protocol_version, EDGEDI_PROTOCOL_VERSION);
  assert_string_equal(o->hello->name, AGENT_NAME);
  rpc_free(&o->base);
  return s;
}

static void send_ping(rpc_stream *s, uint64_t seq, size_t payload, uint32_t reply_bytes) {
  uint8_t *bytes = calloc(payload + 1, 1);
  Edgedi__V1__Ping p = EDGEDI__V1__PING__INIT;
  p.seq = seq;
  p.payload.data = bytes;
  p.payload.len = payload;
  p.reply_bytes = reply_bytes;
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_PING;
  in.ping = &p;
  write_in(s, &in);
  free(bytes);
}

static void expect_pong(rpc_stream *s, uint64_t seq) {
  Edgedi__V1__ExecuteOut *o = read_out(s, READ_TIMEOUT_MS);
  assert_int_equal(o->msg_case, EDGEDI__V1__EXECUTE_OUT__MSG_PONG);
  assert_int_equal(o->pong->seq, seq);
  rpc_free(&o->base);
}

static void expect_tile_error(rpc_stream *s, uint32_t code, const char *words) {
  Edgedi__V1__ExecuteOut *o = read_out(s, READ_TIMEOUT_MS);
  if (o->msg_case != EDGEDI__V1__EXECUTE_OUT__MSG_ERROR)
    fail_msg("expected a TileError, got message case %d", (int)o->msg_case);
  if (o->error->code != code || !strstr(o->error->message, words))
    fail_msg("TileError %u '%s', expected %u with '%s'", o->error->code,
             o->error->message, code, words);
  rpc_free(&o->base);
}

/* Reads until the stream ends; returns its status (details in *details). */
static grpc_status_code expect_end(rpc_stream *s, const char **details) {
  for (;;) {
    ProtobufCMessage *m = NULL;
    err e = {0};
    err_code rc = rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                  READ_TIMEOUT_MS, &m, &e);
    if (rc == ERR_DEADLINE) fail_msg("the stream did not end");
    if (rc == ERR_OK && m) {
      rpc_free(m);
      continue;
    }
    return rpc_stream_status(s, details);
  }
}

static double now_ms(void) { return link_now_ms(); }

/* ---- LoadModel -------------------------------------------------------------- */

static Edgedi__V1__ModelSpec small_spec(void) {
  Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
  spec.name = "r18c-small";
  spec.zoo = "resnet18c";
  spec.height = IMAGE_SIDE_PX;
  spec.width = IMAGE_SIDE_PX;
  spec.channels = 3;
  spec.classes = 6;
  return spec;
}

static grpc_status_code load_model(rpc_channel *ch, Edgedi__V1__ModelSpec *spec,
                                   Edgedi__V1__LoadModelReply **reply, err *e) {
  Edgedi__V1__LoadModelRequest req = EDGEDI__V1__LOAD_MODEL_REQUEST__INIT;
  req.spec = spec;
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  ProtobufCMessage *rep = NULL;
  rpc_call_unary(ch, AGENT_LOAD_MODEL_METHOD, &req.base,
                 &edgedi__v1__load_model_reply__descriptor, CALL_DEADLINE_MS,
                 &rep, &st, e);
  *reply = (Edgedi__V1__LoadModelReply *)rep;
  return st;
}

static void test_load_model(void **state) {
  fixture *f = *state;
  err e = {0};
  Edgedi__V1__ModelSpec spec = small_spec();
  Edgedi__V1__LoadModelReply *r = NULL;
  assert_int_equal(load_model(f->ch, &spec, &r, &e), GRPC_STATUS_OK);
  model *m = NULL;
  char digest[MODELSPEC_DIGEST_BYTES];
  check_ok(modelspec_build(&spec, &m, digest, &e), &e);
  assert_string_equal(r->digest, digest); /* the scheduler builds the same */
  assert_string_equal(r->name, "r18c-small");
  assert_int_equal(r->layers, (uint32_t)m->n_layers);
  assert_true(fabs(r->gflop - model_flops(m) / 1e9) < 1e-9);
  assert_int_equal(r->params, model_param_count(m));
  rpc_free(&r->base);

  /* A known digest is answered without building again. */
  spec.digest = digest;
  double t0 = now_ms();
  assert_int_equal(load_model(f->ch, &spec, &r, &e), GRPC_STATUS_OK);
  assert_string_equal(r->digest, digest);
  rpc_free(&r->base);
  assert_true(now_ms() - t0 < 5000);
  agent_status st;
  agent_get_status(f->a, &st);
  assert_int_equal(st.models, 1);

  /* The scheduler's digest disagrees with what this agent builds. */
  spec.digest = "00000000deadbeef";
  spec.seed = 7;
  assert_int_equal(load_model(f->ch, &spec, &r, &e), GRPC_STATUS_FAILED_PRECONDITION);
  assert_null(r);
  assert_non_null(strstr(e.msg, "deadbeef"));
  assert_non_null(strstr(e.msg, "digest"));

  /* Bad specs: each a status with a message; the agent stays up. */
  Edgedi__V1__ModelSpec bad = small_spec();
  bad.zoo = "alexnet";
  assert_int_equal(load_model(f->ch, &bad, &r, &e), GRPC_STATUS_NOT_FOUND);
  assert_non_null(strstr(e.msg, "alexnet"));
  bad = small_spec();
  bad.height = 3;
  assert_int_not_equal(load_model(f->ch, &bad, &r, &e), GRPC_STATUS_OK);
  assert_int_equal(load_model(f->ch, NULL, &r, &e), GRPC_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(e.msg, "spec"));
  agent_get_status(f->a, &st);
  assert_int_equal(st.models, 1);
  model_destroy(m);
}

/* ---- Execute: Hello -------------------------------------------------------- */

static void test_hello(void **state) {
  fixture *f = *state;
  rpc_stream *s = open_live(f->ch);
  send_ping(s, 5, 10, 10);
  expect_pong(s, 5);
  /* The Hello is answered first; a Pong means the stream is live. */
  agent_status st;
  agent_get_status(f->a, &st);
  assert_true(st.stream_live);
  assert_int_equal(st.streams, 1);
  rpc_stream_destroy(s);
}

static void test_version_mismatch(void **state) {
  fixture *f = *state;
  rpc_stream *s = open_stream(f->ch);
  send_hello(s, EDGEDI_PROTOCOL_VERSION + 1);
  const char *details = NULL;
  assert_int_equal(expect_end(s, &details), GRPC_STATUS_FAILED_PRECONDITION);
  char want[128];
  snprintf(want, sizeof want, "agent " AGENT_NAME " speaks protocol v%d, scheduler v%d",
           EDGEDI_PROTOCOL_VERSION, EDGEDI_PROTOCOL_VERSION + 1);
  if (!strstr(details, want)) fail_msg("details '%s'", details);
  rpc_stream_destroy(s);
  /* A refused stream never became live. */
  agent_status st;
  agent_get_status(f->a, &st);
  assert_false(st.stream_live);
  assert_int_equal(st.streams, 0);
}

static void test_first_not_hello(void **state) {
  fixture *f = *state;
  rpc_stream *s = open_stream(f->ch);
  send_ping(s, 1, 0, 0);
  const char *details = NULL;
  assert_int_equal(expect_end(s, &details), GRPC_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(details, "Hello"));
  rpc_stream_destroy(s);
}

/* ---- Execute: a whole inference -------------------------------------------- */

static void send_dispatch(rpc_stream *s, dispatch_outbox *o) {
  for (int i = 0; i < o->n; i++) {
    assert_int_equal(o->msgs[i].device, 0);
    Edgedi__V1__ExecuteIn *in =
        edgedi__v1__execute_in__unpack(NULL, o->msgs[i].len, o->msgs[i].data);
    assert_non_null(in);
    write_in(s, in);
    edgedi__v1__execute_in__free_unpacked(in, NULL);
  }
  dispatch_outbox_clear(o);
}

/* One request on one device through the scheduler's dispatcher; returns
 * the largest |difference| to the single-device logits, relative. */
static double run_one_device(rpc_stream *s, const model *m, const char *digest,
                             uint64_t request_id, dispatch_result *res_out) {
  err e = {0};
  plan_device dev = {.ms_per_gflop = 10, .fixed_ms = 1, .bandwidth_mbps = 1000, .rtt_ms = 1};
  snprintf(dev.name, sizeof dev.name, "%s", AGENT_NAME);
  plan_options po = plan_default_options();
  po.input_channels = 3;
  plan p = {0};
  check_ok(plan_proportional(m, &dev, 1, &po, &p, &e), &e);
  size_t n_px = (size_t)IMAGE_SIDE_PX * IMAGE_SIDE_PX * 3;
  uint8_t *pixels = malloc(n_px);
  for (size_t i = 0; i < n_px; i++) pixels[i] = (uint8_t)((i * 2654435761u) >> 13);
  preprocess_image img = preprocess_whole(PREPROCESS_U8, pixels, IMAGE_SIDE_PX, IMAGE_SIDE_PX, 3);

  /* The single device: the whole model on the same preprocessed input. */
  xexec *x = NULL;
  check_ok(xexec_create(m, 1, &x, &e), &e);
  float *input = malloc(model_shape_elems(m->input) * sizeof(float));
  model_shape os = m->layers[m->n_layers - 1].out;
  float *want = malloc(model_shape_elems(os) * sizeof(float));
  model_rows all = {0, IMAGE_SIDE_PX};
  check_ok(preprocess_rows(&img, m->input, all, input, &e), &e);
  check_ok(xexec_run(x, input, want, &e), &e);

  dispatch *d = NULL;
  check_ok(dispatch_create(m, digest, &p, 1, &img, request_id, x, &d, &e), &e);
  dispatch_outbox out = {0};
  check_ok(dispatch_start(d, &out, &e), &e);
  send_dispatch(s, &out);
  dispatch_state state = DISPATCH_RUNNING;
  while (state == DISPATCH_RUNNING) {
    Edgedi__V1__ExecuteOut *o = read_out(s, READ_TIMEOUT_MS);
    state = dispatch_on_message(d, 0, o, &out);
    rpc_free(&o->base);
    send_dispatch(s, &out);
  }
  dispatch_result r;
  dispatch_get_result(d, &r);
  if (r.state != DISPATCH_DONE) fail_msg("request failed: %u %s", r.status, r.message);
  assert_int_equal(r.n_logits, (int)model_shape_elems(os));
  double max_ref = 0, max_diff = 0;
  for (int i = 0; i < r.n_logits; i++) {
    max_ref = fmax(max_ref, fabs(want[i]));
    max_diff = fmax(max_diff, fabs(want[i] - r.logits[i]));
  }
  *res_out = r;
  res_out->logits = NULL;
  res_out->devices = NULL;
  assert_int_equal(r.n_devices, 1);
  assert_true(r.devices[0].compute_ms > 0);
  assert_int_equal(r.devices[0].results, r.devices[0].jobs);
  dispatch_outbox_free(&out);
  dispatch_destroy(d);
  xexec_destroy(x);
  free(want);
  free(input);
  free(pixels);
  plan_free(&p);
  return max_diff / (max_ref > 0 ? max_ref : 1);
}

static void test_one_device_inference(void **state) {
  fixture *f = *state;
  err e = {0};
  Edgedi__V1__ModelSpec spec = small_spec();
  Edgedi__V1__LoadModelReply *r = NULL;
  assert_int_equal(load_model(f->ch, &spec, &r, &e), GRPC_STATUS_OK);
  model *m = NULL;
  char digest[MODELSPEC_DIGEST_BYTES];
  check_ok(modelspec_build(&spec, &m, digest, &e), &e);
  assert_string_equal(r->digest, digest);
  rpc_free(&r->base);

  rpc_stream *s = open_live(f->ch);
  dispatch_result res;
  /* Twice: the second request finds the strips cached. */
  for (uint64_t id = 1; id <= 2; id++) {
    double rel = run_one_device(s, m, digest, id, &res);
    if (rel > 1e-4) fail_msg("request %llu: logits differ by %g (relative)",
                             (unsigned long long)id, rel);
  }
  /* The stream is still fine. */
  send_ping(s, 9, 0, 0);
  expect_pong(s, 9);
  rpc_stream_destroy(s);
  model_destroy(m);
}

/* ---- Execute: bad input -------------------------------------------------------- */

static void test_malformed_job(void **state) {
  fixture *f = *state;
  err e = {0};
  Edgedi__V1__ModelSpec spec = small_spec();
  Edgedi__V1__LoadModelReply *r = NULL;
  assert_int_equal(load_model(f->ch, &spec, &r, &e), GRPC_STATUS_OK);
  char digest[MODELSPEC_DIGEST_BYTES];
  snprintf(digest, sizeof digest, "%s", r->digest);
  rpc_free(&r->base);
  rpc_stream *s = open_live(f->ch);

  /* A job for a model the agent never loaded. */
  Edgedi__V1__RowRange out = EDGEDI__V1__ROW_RANGE__INIT, in = EDGEDI__V1__ROW_RANGE__INIT;
  out.lo = 0;
  out.hi = 4;
  in.lo = 0;
  in.hi = 4;
  Edgedi__V1__TileJob job = EDGEDI__V1__TILE_JOB__INIT;
  job.request_id = 77;
  job.model_digest = "0123456789abcdef";
  job.first_layer = 0;
  job.end_layer = 1;
  job.out_rows = &out;
  job.in_rows = &in;
  Edgedi__V1__ExecuteIn msg = EDGEDI__V1__EXECUTE_IN__INIT;
  msg.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_JOB;
  msg.job = &job;
  write_in(s, &msg);
  expect_tile_error(s, GRPC_STATUS_NOT_FOUND, "unknown model digest");

  /* A known model, rows past the tensor. */
  job.request_id = 78;
  job.model_digest = digest;
  out.hi = 100000;
  write_in(s, &msg);
  expect_tile_error(s, GRPC_STATUS_OUT_OF_RANGE, "output rows");

  /* Layers that do not exist. */
  job.request_id = 79;
  out.hi = 4;
  job.end_layer = 100000;
  write_in(s, &msg);
  expect_tile_error(s, GRPC_STATUS_OUT_OF_RANGE, "layers");

  /* Bytes that do not decode as an ExecuteIn (field 1 as a varint where a
   * Hello message belongs). */
  Edgedi__V1__RowRange garbage = EDGEDI__V1__ROW_RANGE__INIT;
  garbage.lo = 5;
  garbage.hi = 7;
  check_ok(rpc_stream_write(s, &garbage.base, &e), &e);
  expect_tile_error(s, GRPC_STATUS_INVALID_ARGUMENT, "malformed ExecuteIn");

  /* Rows for a request the agent has no job of. */
  Edgedi__V1__RowsData rows = EDGEDI__V1__ROWS_DATA__INIT;
  rows.request_id = 1234;
  rows.rows = 1;
  rows.width = 1;
  rows.channels = 1;
  float one = 1;
  rows.data.data = (uint8_t *)&one;
  rows.data.len = sizeof one;
  Edgedi__V1__ExecuteIn rmsg = EDGEDI__V1__EXECUTE_IN__INIT;
  rmsg.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_ROWS;
  rmsg.rows = &rows;
  write_in(s, &rmsg);
  expect_tile_error(s, GRPC_STATUS_NOT_FOUND, "no job");

  /* Still usable. */
  send_ping(s, 11, 100, 100);
  expect_pong(s, 11);
  agent_status st;
  agent_get_status(f->a, &st);
  assert_true(st.stream_live);
  rpc_stream_destroy(s);
}

/* ---- Execute: replacement and ending ----------------------------------------- */

static void test_second_stream_replaces(void **state) {
  fixture *f = *state;
  rpc_stream *a = open_live(f->ch);
  send_ping(a, 1, 0, 0);
  expect_pong(a, 1);
  rpc_stream *b = open_live(f->ch); /* a restarted scheduler */
  const char *details = NULL;
  assert_int_equal(expect_end(a, &details), GRPC_STATUS_ABORTED);
  assert_non_null(strstr(details, "replaced"));
  send_ping(b, 2, 0, 0);
  expect_pong(b, 2);
  agent_status st;
  agent_get_status(f->a, &st);
  assert_true(st.stream_live);
  assert_int_equal(st.streams, 2);
  rpc_stream_destroy(a);
  rpc_stream_destroy(b);
}

static void test_half_close_delivers(void **state) {
  fixture *f = *state;
  rpc_stream *s = open_live(f->ch);
  for (uint64_t i = 1; i <= 5; i++) send_ping(s, i, 0, 1000);
  err e = {0};
  check_ok(rpc_stream_close(s, &e), &e);
  for (uint64_t i = 1; i <= 5; i++) expect_pong(s, i);
  assert_int_equal(expect_end(s, NULL), GRPC_STATUS_OK);
  rpc_stream_destroy(s);
  /* The agent noticed the stream is gone. */
  double t0 = now_ms();
  agent_status st;
  do agent_get_status(f->a, &st);
  while (st.stream_live && now_ms() - t0 < READ_TIMEOUT_MS);
  assert_false(st.stream_live);
}

static void test_shutdown(void **state) {
  fixture *f = *state;
  rpc_stream *s = open_live(f->ch);
  double t0 = now_ms();
  agent_shutdown(f->a);
  const char *details = NULL;
  assert_int_equal(expect_end(s, &details), GRPC_STATUS_UNAVAILABLE);
  assert_non_null(strstr(details, AGENT_NAME " is shutting down"));
  assert_true(now_ms() - t0 < GRACE_MS);
  rpc_stream_destroy(s);
  /* No new stream either, with the same clear reason. */
  s = open_stream(f->ch);
  send_hello(s, EDGEDI_PROTOCOL_VERSION);
  assert_int_equal(expect_end(s, &details), GRPC_STATUS_UNAVAILABLE);
  assert_non_null(strstr(details, "shutting down"));
  rpc_stream_destroy(s);
}

/* ---- the link emulation ---------------------------------------------------------- */

/* Ping of `bytes` each way: the time until its Pong. */
static double ping_ms(rpc_stream *s, uint64_t seq, size_t bytes) {
  double t0 = now_ms();
  send_ping(s, seq, bytes, (uint32_t)bytes);
  expect_pong(s, seq);
  return now_ms() - t0;
}

static void test_link_emulation(void **state) {
  (void)state;
  fixture slow;
  agent_options o = agent_default_options();
  o.name = AGENT_NAME;
  o.link_mbps = 8;     /* 1000 bytes per ms */
  o.link_rtt_ms = 40;  /* 20 ms each way */
  fixture_start(&slow, &o);
  rpc_stream *s = open_live(slow.ch);
  /* 50 kB each way: 50 ms + 20 ms in, 50 ms + 20 ms out. */
  double ms = ping_ms(s, 1, 50000);
  if (ms < 135 || ms > 5000) fail_msg("a 50 kB ping took %.1f ms, expected about 140", ms);
  /* Small messages still pay the round trip. */
  ms = ping_ms(s, 2, 0);
  if (ms < 38) fail_msg("an empty ping took %.1f ms, expected about 40", ms);
  /* Messages queue: three pings of 20 kB sent together; the last pong
   * leaves after 60 ms of input serialization and 20 ms of its own. */
  double t0 = now_ms();
  for (uint64_t i = 3; i <= 5; i++) send_ping(s, i, 20000, 20000);
  for (uint64_t i = 3; i <= 5; i++) expect_pong(s, i);
  ms = now_ms() - t0;
  if (ms < 115) fail_msg("three queued pings took %.1f ms, expected at least 120", ms);
  rpc_stream_destroy(s);
  fixture_stop(&slow);
}

/* ---- Profile ------------------------------------------------------------------------ */

static grpc_status_code profile(rpc_channel *ch, const double *gflop, size_t n,
                                uint32_t repeats, Edgedi__V1__ProfileReply **reply,
                                err *e) {
  Edgedi__V1__ProfileRequest req = EDGEDI__V1__PROFILE_REQUEST__INIT;
  req.gflop = (double *)gflop;
  req.n_gflop = n;
  req.repeats = repeats;
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  ProtobufCMessage *rep = NULL;
  rpc_call_unary(ch, AGENT_PROFILE_METHOD, &req.base,
                 &edgedi__v1__profile_reply__descriptor, CALL_DEADLINE_MS, &rep,
                 &st, e);
  *reply = (Edgedi__V1__ProfileReply *)rep;
  return st;
}

static void test_profile(void **state) {
  fixture *f = *state;
  err e = {0};
  Edgedi__V1__ProfileReply *r = NULL;
  /* The default set: 0.01, 0.03, 0.1, 0.3 GFLOP. */
  assert_int_equal(profile(f->ch, NULL, 0, 3, &r, &e), GRPC_STATUS_OK);
  assert_int_equal(r->n_samples, 4 * 3);
  assert_int_equal(r->threads, 1);
  static const double want[] = AGENT_PROFILE_DEFAULT_GFLOP;
  double prev_ms = 0, prev_gflop = 0;
  for (size_t i = 0; i < 4; i++) {
    double best = INFINITY;
    for (size_t k = 0; k < 3; k++) {
      const Edgedi__V1__ProfileSample *p = r->samples[i * 3 + k];
      /* The strip closest to the size asked: within one row (~5 MFLOP). */
      if (fabs(p->gflop - want[i]) > 0.005) fail_msg("sample of %g GFLOP for %g", p->gflop, want[i]);
      assert_true(p->ms > 0);
      assert_true(p->cpu_ms > 0);
      best = fmin(best, p->ms);
    }
    print_message("profile: %.4f GFLOP in %.3f ms (fastest of 3)\n",
                  r->samples[i * 3]->gflop, best);
    assert_true(r->samples[i * 3]->gflop > prev_gflop);
    /* Fastest run of each size: more work, more time. */
    if (!(best > prev_ms)) fail_msg("%g GFLOP took %.3f ms, less than the smaller size's %.3f",
                                    want[i], best, prev_ms);
    prev_ms = best;
    prev_gflop = r->samples[i * 3]->gflop;
  }
  rpc_free(&r->base);

  /* Sizes of its own. */
  const double sizes[] = {0.05, 0.2};
  assert_int_equal(profile(f->ch, sizes, 2, 1, &r, &e), GRPC_STATUS_OK);
  assert_int_equal(r->n_samples, 2);
  rpc_free(&r->base);

  /* Bad sizes. */
  const double neg[] = {-1}, huge[] = {1000}, nan_[] = {NAN};
  assert_int_equal(profile(f->ch, neg, 1, 1, &r, &e), GRPC_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(e.msg, "GFLOP"));
  assert_int_equal(profile(f->ch, huge, 1, 1, &r, &e), GRPC_STATUS_INVALID_ARGUMENT);
  assert_int_equal(profile(f->ch, nan_, 1, 1, &r, &e), GRPC_STATUS_INVALID_ARGUMENT);
  assert_int_equal(profile(f->ch, sizes, 2, 100000, &r, &e), GRPC_STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(e.msg, "repeats"));
}

/* The speed emulation stretches profile runs as it stretches tiles. */
static void test_profile_speed(void **state) {
  (void)state;
  fixture slow;
  agent_options o = agent_default_options();
  o.name = AGENT_NAME;
  o.speed = 0.25;
  fixture_start(&slow, &o);
  err e = {0};
  Edgedi__V1__ProfileReply *r = NULL;
  const double sizes[] = {0.1};
  assert_int_equal(profile(slow.ch, sizes, 1, 3, &r, &e), GRPC_STATUS_OK);
  for (size_t k = 0; k < r->n_samples; k++) {
    const Edgedi__V1__ProfileSample *p = r->samples[k];
    /* wall = cpu / speed (the sleep tops it up; never below). */
    if (p->ms < 0.95 * p->cpu_ms / 0.25)
      fail_msg("at speed 0.25 a run of %.3f ms CPU took %.3f ms", p->cpu_ms, p->ms);
  }
  rpc_free(&r->base);
  fixture_stop(&slow);
}

/* ---- registration ---------------------------------------------------------------- */

typedef struct fake_scheduler {
  pthread_mutex_t mu;
  int calls;
  bool refuse;
  uint32_t version, cores, threads;
  char name[128], address[128], arch[64];
} fake_scheduler;

static grpc_status_code on_register(void *ctx, const ProtobufCMessage *req,
                                    rpc_reply *reply, char *details, size_t n) {
  fake_scheduler *fs = ctx;
  const Edgedi__V1__RegisterAgentRequest *r = (const Edgedi__V1__RegisterAgentRequest *)req;
  pthread_mutex_lock(&fs->mu);
  fs->calls++;
  fs->version = r->protocol_version;
  fs->cores = r->cores;
  fs->threads = r->threads;
  snprintf(fs->name, sizeof fs->name, "%s", r->name);
  snprintf(fs->address, sizeof fs->address, "%s", r->address);
  snprintf(fs->arch, sizeof fs->arch, "%s", r->arch);
  bool refuse = fs->refuse;
  pthread_mutex_unlock(&fs->mu);
  if (refuse) {
    snprintf(details, n, "device name '%s' is taken by another agent", r->name);
    return GRPC_STATUS_ALREADY_EXISTS;
  }
  Edgedi__V1__RegisterAgentReply rep = EDGEDI__V1__REGISTER_AGENT_REPLY__INIT;
  rep.protocol_version = EDGEDI_PROTOCOL_VERSION;
  rep.device_id = 42;
  rpc_reply_set(reply, &rep.base, NULL);
  return GRPC_STATUS_OK;
}

static rpc_server *fake_start(fake_scheduler *fs, const char *addr, int *port) {
  err e = {0};
  rpc_server *srv = NULL;
  check_ok(rpc_server_create(addr, NULL, &srv, port, &e), &e);
  check_ok(rpc_server_add_unary(srv, AGENT_REGISTER_METHOD,
                                &edgedi__v1__register_agent_request__descriptor,
                                on_register, fs, &e), &e);
  check_ok(rpc_server_start(srv, &e), &e);
  return srv;
}

static int fake_calls(fake_scheduler *fs) {
  pthread_mutex_lock(&fs->mu);
  int n = fs->calls;
  pthread_mutex_unlock(&fs->mu);
  return n;
}

/* Waits until the agent has `n` accepted registrations. */
static void wait_registrations(agent *a, uint64_t n, int timeout_ms) {
  double t0 = now_ms();
  agent_status st;
  for (;;) {
    agent_get_status(a, &st);
    if (st.registrations >= n) return;
    if (now_ms() - t0 > timeout_ms)
      fail_msg("%llu registrations after %d ms, expected %llu",
               (unsigned long long)st.registrations, timeout_ms, (unsigned long long)n);
    link_sleep_until_ms(now_ms() + 20);
  }
}

static void test_register(void **state) {
  fixture *f = *state;
  /* A scheduler that is not up yet: find a free port, then leave it. */
  fake_scheduler fs = {.mu = PTHREAD_MUTEX_INITIALIZER};
  int port = 0;
  rpc_server_destroy(fake_start(&fs, "127.0.0.1:0", &port), 0);
  char sched[64], me[64];
  snprintf(sched, sizeof sched, "127.0.0.1:%d", port);
  snprintf(me, sizeof me, "127.0.0.1:%d", f->port);
  agent_register_options ro = {.scheduler = sched, .address = me};
  err e = {0};
  check_ok(agent_register_start(f->a, &ro, &e), &e);
  assert_int_equal(agent_register_start(f->a, &ro, &e), ERR_INVALID); /* once */
  link_sleep_until_ms(now_ms() + 1500);
  agent_status st;
  agent_get_status(f->a, &st);
  assert_int_equal(st.registrations, 0);

  /* It comes up: the agent registers within its retry period. */
  rpc_server *srv = fake_start(&fs, sched, NULL);
  wait_registrations(f->a, 1, 3 * AGENT_REGISTER_RETRY_MS + 2000);
  pthread_mutex_lock(&fs.mu);
  assert_int_equal(fs.version, EDGEDI_PROTOCOL_VERSION);
  assert_string_equal(fs.name, AGENT_NAME);
  assert_string_equal(fs.address, me);
  assert_int_equal(fs.threads, 1);
  assert_true(fs.cores >= 1);
  assert_true(fs.arch[0] != 0);
  pthread_mutex_unlock(&fs.mu);
  agent_get_status(f->a, &st);
  assert_int_equal(st.device_id, 42);
  assert_false(st.refused);

  /* The scheduler opens its stream: no more registrations while it lives. */
  rpc_stream *s = open_live(f->ch);
  send_ping(s, 1, 0, 0);
  expect_pong(s, 1);
  int calls = fake_calls(&fs);
  link_sleep_until_ms(now_ms() + AGENT_STREAM_WAIT_MS + 500);
  assert_int_equal(fake_calls(&fs), calls);

  /* The stream ends (the scheduler restarted): the agent registers again. */
  rpc_stream_cancel(s, GRPC_STATUS_CANCELLED, "scheduler going away");
  rpc_stream_destroy(s);
  wait_registrations(f->a, 2, AGENT_STREAM_WAIT_MS + 3000);

  agent_register_stop(f->a);
  rpc_server_destroy(srv, 0);
}

static void test_register_refused(void **state) {
  fixture *f = *state;
  fake_scheduler fs = {.mu = PTHREAD_MUTEX_INITIALIZER, .refuse = true};
  int port = 0;
  rpc_server *srv = fake_start(&fs, "127.0.0.1:0", &port);
  char sched[64];
  snprintf(sched, sizeof sched, "127.0.0.1:%d", port);
  agent_register_options ro = {.scheduler = sched, .address = "127.0.0.1:1",
                               .exit_on_refusal = true};
  err e = {0};
  check_ok(agent_register_start(f->a, &ro, &e), &e);
  double t0 = now_ms();
  agent_status st;
  do {
    link_sleep_until_ms(now_ms() + 20);
    agent_get_status(f->a, &st);
  } while (!st.gave_up && now_ms() - t0 < 5000);
  assert_true(st.gave_up);
  assert_true(st.refused);
  assert_non_null(strstr(st.refusal, "taken"));
  assert_non_null(strstr(st.refusal, "ALREADY_EXISTS"));
  assert_int_equal(st.registrations, 0);
  /* Given up: no more calls. */
  int calls = fake_calls(&fs);
  assert_int_equal(calls, 1);
  link_sleep_until_ms(now_ms() + 300);
  assert_int_equal(fake_calls(&fs), calls);
  agent_register_stop(f->a);
  rpc_server_destroy(srv, 0);
}

static void test_bad_options(void **state) {
  (void)state;
  err e = {0};
  agent *a = NULL;
  agent_options o = agent_default_options();
  o.name = "";
  assert_int_equal(agent_create(&o, &a, &e), ERR_INVALID);
  o = agent_default_options();
  o.threads = 0;
  assert_int_equal(agent_create(&o, &a, &e), ERR_INVALID);
  o = agent_default_options();
  o.speed = 0;
  assert_int_equal(agent_create(&o, &a, &e), ERR_INVALID);
  o = agent_default_options();
  o.link_mbps = -5;
  assert_int_equal(agent_create(&o, &a, &e), ERR_INVALID);
  assert_null(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test_setup_teardown(test_load_model, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hello, setup, teardown),
      cmocka_unit_test_setup_teardown(test_version_mismatch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_first_not_hello, setup, teardown),
      cmocka_unit_test_setup_teardown(test_one_device_inference, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_job, setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_stream_replaces, setup, teardown),
      cmocka_unit_test_setup_teardown(test_half_close_delivers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
      cmocka_unit_test(test_link_emulation),
      cmocka_unit_test_setup_teardown(test_profile, setup, teardown),
      cmocka_unit_test(test_profile_speed),
      cmocka_unit_test_setup_teardown(test_register, setup, teardown),
      cmocka_unit_test_setup_teardown(test_register_refused, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

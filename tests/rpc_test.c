/* rpc_test.c — the rpc layer (runtime/rpc.h) on loopback.
 *
 * Every test runs a real gRPC server on 127.0.0.1 (port 0) and talks to it
 * through a real channel, so what is checked is what the scheduler and the
 * agents will see: statuses, messages, and how long failures take. Each way
 * a peer can fail — garbage bytes, unknown method, oversized message, no
 * listener, a listener that never answers, server shutdown mid-stream, a
 * peer process killed with SIGKILL — must end in an error promptly, never
 * in a hang. Timing bounds are loose (ASan builds are slow) but far below
 * any gRPC default timeout, so a hang cannot pass.
 *
 * The "killed peer" test runs this same binary as a child process
 * (`rpc_test --child-server`), which serves the echo stream and prints its
 * port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "proto/edgedi.pb-c.h"
#include "proto/health.pb-c.h"
#include "runtime/rpc.h"

/* Test policy: deadlines and how late an answer may be. */
enum {
  CALL_DEADLINE_MS = 5000,   /* calls expected to succeed */
  DEAD_DEADLINE_MS = 300,    /* calls to addresses that do not answer */
  PROMPT_MS = 2000,          /* "promptly": well under any gRPC default */
  STREAM_MESSAGES = 100,     /* echo test: messages, over two writers */
  SEQUENTIAL_CALLS = 200,
  SMALL_MAX_BYTES = 1024,    /* a tight message limit */
  BIG_BYTES = 4000,          /* comfortably over it */
  GRACE_MS = 200,            /* server shutdown grace in tests */
};

#define LIST_DEVICES "/edgedi.v1.Scheduler/ListDevices"
#define REGISTER_AGENT "/edgedi.v1.Scheduler/RegisterAgent"
#define EXECUTE "/edgedi.v1.Agent/Execute"
#define SLOW "/edgedi.v1.Test/Slow"
#define BIG "/edgedi.v1.Test/Big"
#define FANOUT "/edgedi.v1.Test/Fanout"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void sleep_ms(int ms) {
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

/* ---- the test server ----------------------------------------------------- */

/* What the server side saw; handlers run on their own threads, so the
 * tests read it under mu. */
typedef struct server_state {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int slow_entered;  /* Slow handler is running */
  int slow_release;  /* let it return */
  int stream_ends;   /* stream handlers that saw their stream end */
  err_code last_end; /* how the last one ended (read's return) */
  grpc_status_code last_status;
  int ended_clean;   /* ends with ERR_OK and no message */
} server_state;

static server_state *state_new(void) {
  server_state *st = calloc(1, sizeof *st);
  assert_non_null(st);
  pthread_mutex_init(&st->mu, NULL);
  pthread_cond_init(&st->cv, NULL);
  return st;
}

static void state_free(server_state *st) {
  pthread_mutex_destroy(&st->mu);
  pthread_cond_destroy(&st->cv);
  free(st);
}

static void record_end(server_state *st, rpc_stream *s, err_code rc) {
  pthread_mutex_lock(&st->mu);
  st->stream_ends++;
  st->last_end = rc;
  st->last_status = rpc_stream_status(s, NULL);
  if (rc == ERR_OK) st->ended_clean++;
  pthread_cond_broadcast(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

/* Waits until st->stream_ends reaches n, up to ms. */
static int wait_ends(server_state *st, int n, int ms) {
  double until = now_ms() + ms;
  pthread_mutex_lock(&st->mu);
  while (st->stream_ends < n && now_ms() < until) {
    pthread_mutex_unlock(&st->mu);
    sleep_ms(5);
    pthread_mutex_lock(&st->mu);
  }
  int ok = st->stream_ends >= n;
  pthread_mutex_unlock(&st->mu);
  return ok;
}

static grpc_status_code list_devices(void *ctx, const ProtobufCMessage *req,
                                     rpc_reply *reply, char *details,
                                     size_t details_len) {
  (void)ctx, (void)req, (void)details, (void)details_len;
  Edgedi__V1__CostModel cost = EDGEDI__V1__COST_MODEL__INIT;
  cost.ms_per_gflop = 41.5;
  cost.fixed_ms = 2.25;
  cost.samples = 12;
  Edgedi__V1__Device d[3];
  Edgedi__V1__Device *dp[3];
  static char *names[3] = {"pi3-a", "pi4-b", "pi4-c"};
  static char *addrs[3] = {"10.0.0.3:7000", "10.0.0.4:7000", "10.0.0.5:7000"};
  for (int i = 0; i < 3; i++) {
    edgedi__v1__device__init(&d[i]);
    d[i].name = names[i];
    d[i].address = addrs[i];
    d[i].cores = 4;
    d[i].arch = "aarch64";
    d[i].state = "up";
    d[i].cost = i == 1 ? &cost : NULL;
    d[i].last_seen = 1700000000 + i;
    dp[i] = &d[i];
  }
  Edgedi__V1__ListDevicesReply r = EDGEDI__V1__LIST_DEVICES_REPLY__INIT;
  r.n_devices = 3;
  r.devices = dp;
  /* Packed now: the stack message may go right after. */
  if (rpc_reply_set(reply, &r.base, NULL)) return GRPC_STATUS_INTERNAL;
  return GRPC_STATUS_OK;
}

/* Echoes the name's length as device_id; version 9 is refused, as a real
 * version mismatch would be. */
static grpc_status_code register_agent(void *ctx, const ProtobufCMessage *req,
                                       rpc_reply *reply, char *details,
                                       size_t details_len) {
  (void)ctx;
  const Edgedi__V1__RegisterAgentRequest *r =
      (const Edgedi__V1__RegisterAgentRequest *)req;
  if (r->protocol_version == 9) {
    snprintf(details, details_len, "protocol version 9, server speaks 1");
    return GRPC_STATUS_FAILED_PRECONDITION;
  }
  Edgedi__V1__RegisterAgentReply out = EDGEDI__V1__REGISTER_AGENT_REPLY__INIT;
  out.protocol_version = 1;
  out.device_id = strlen(r->name);
  rpc_reply_set(reply, &out.base, NULL);
  return GRPC_STATUS_OK;
}

/* Blocks until released (or 5 s), to show it blocks nobody else. */
static grpc_status_code slow(void *ctx, const ProtobufCMessage *req,
                             rpc_reply *reply, char *details,
                             size_t details_len) {
  (void)req, (void)reply, (void)details, (void)details_len;
  server_state *st = ctx;
  pthread_mutex_lock(&st->mu);
  st->slow_entered = 1;
  pthread_cond_broadcast(&st->cv);
  double until = now_ms() + 5000;
  while (!st->slow_release && now_ms() < until) {
    pthread_mutex_unlock(&st->mu);
    sleep_ms(5);
    pthread_mutex_lock(&st->mu);
  }
  pthread_mutex_unlock(&st->mu);
  return GRPC_STATUS_OK; /* no reply set: the default message */
}

/* Answers a Ping with reply_bytes of payload. */
static grpc_status_code big(void *ctx, const ProtobufCMessage *req,
                            rpc_reply *reply, char *details,
                            size_t details_len) {
  (void)ctx;
  const Edgedi__V1__Ping *p = (const Edgedi__V1__Ping *)req;
  Edgedi__V1__Ping out = EDGEDI__V1__PING__INIT;
  out.seq = p->seq;
  out.payload.len = p->reply_bytes;
  out.payload.data = calloc(1, p->reply_bytes + 1);
  (void)details, (void)details_len;
  /* A reply over the limit fails here, and the layer ends the call
   * RESOURCE_EXHAUSTED: the handler need not check. */
  rpc_reply_set(reply, &out.base, NULL);
  free(out.payload.data);
  return GRPC_STATUS_OK;
}

static void pong_of(Edgedi__V1__ExecuteOut *out, Edgedi__V1__Ping *pong,
                    uint64_t seq) {
  edgedi__v1__execute_out__init(out);
  edgedi__v1__ping__init(pong);
  pong->seq = seq;
  out->msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_PONG;
  out->pong = pong;
}

/* Execute: answers each Ping with a Pong of the same seq until the client
 * closes; a Hello named "refuse" ends the stream FAILED_PRECONDITION. */
static grpc_status_code echo(void *ctx, rpc_stream *s, char *details,
                             size_t details_len) {
  server_state *st = ctx;
  for (;;) {
    ProtobufCMessage *m;
    err e = {0};
    err_code rc = rpc_stream_read(s, &edgedi__v1__execute_in__descriptor, -1,
                                  &m, &e);
    if (rc || !m) {
      if (st) record_end(st, s, rc);
      return rc ? GRPC_STATUS_CANCELLED : GRPC_STATUS_OK;
    }
    Edgedi__V1__ExecuteIn *in = (Edgedi__V1__ExecuteIn *)m;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_HELLO &&
        strcmp(in->hello->name, "refuse") == 0) {
      snprintf(details, details_len, "protocol version %u, agent speaks 1",
               in->hello->protocol_version);
      rpc_free(m);
      return GRPC_STATUS_FAILED_PRECONDITION;
    }
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_PING) {
      Edgedi__V1__ExecuteOut out;
      Edgedi__V1__Ping pong;
      pong_of(&out, &pong, in->ping->seq);
      rc = rpc_stream_write(s, &out.base, &e);
      if (rc) {
        rpc_free(m);
        snprintf(details, details_len, "%s", e.msg);
        return GRPC_STATUS_UNAVAILABLE;
      }
    }
    rpc_free(m);
  }
}

typedef struct fanout_writer {
  rpc_stream *s;
  int base;
  int failures;
} fanout_writer;

static void *fanout_write(void *arg) {
  fanout_writer *w = arg;
  for (int i = 0; i < STREAM_MESSAGES / 2; i++) {
    Edgedi__V1__ExecuteOut out;
    Edgedi__V1__Ping pong;
    pong_of(&out, &pong, (uint64_t)(w->base + i));
    if (rpc_stream_write(w->s, &out.base, NULL)) w->failures++;
  }
  return NULL;
}

/* Fanout: two threads write STREAM_MESSAGES pongs while the handler thread
 * reads the client's messages, as an agent's workers and reader do. */
static grpc_status_code fanout(void *ctx, rpc_stream *s, char *details,
                               size_t details_len) {
  server_state *st = ctx;
  fanout_writer w[2] = {{s, 0, 0}, {s, 1000, 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, fanout_write, &w[i]);
  err_code rc;
  ProtobufCMessage *m;
  int got = 0;
  while ((rc = rpc_stream_read(s, &edgedi__v1__execute_in__descriptor, -1, &m,
                               NULL)) == ERR_OK &&
         m) {
    got++;
    rpc_free(m);
  }
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  record_end(st, s, rc);
  if (w[0].failures || w[1].failures) {
    snprintf(details, details_len, "%d writes failed",
             w[0].failures + w[1].failures);
    return GRPC_STATUS_INTERNAL;
  }
  snprintf(details, details_len, "read %d", got);
  return GRPC_STATUS_OK;
}

typedef struct fixture {
  server_state *st;
  rpc_server *srv;
  rpc_channel *ch;
  int port;
} fixture;

static rpc_server *make_server(server_state *st, const rpc_options *opt,
                               int *port) {
  err e = {0};
  rpc_server *srv;
  assert_int_equal(rpc_server_create("127.0.0.1:0", opt, &srv, port, &e),
                   ERR_OK);
  assert_true(*port > 0);
  assert_int_equal(rpc_server_port(srv), *port);
  assert_int_equal(rpc_server_add_unary(srv, LIST_DEVICES,
                       &edgedi__v1__list_devices_request__descriptor,
                       list_devices, st, &e), ERR_OK);
  assert_int_equal(rpc_server_add_unary(srv, REGISTER_AGENT,
                       &edgedi__v1__register_agent_request__descriptor,
                       register_agent, st, &e), ERR_OK);
  assert_int_equal(rpc_server_add_unary(srv, SLOW,
                       &edgedi__v1__ping__descriptor, slow, st, &e), ERR_OK);
  assert_int_equal(rpc_server_add_unary(srv, BIG,
                       &edgedi__v1__ping__descriptor, big, st, &e), ERR_OK);
  assert_int_equal(rpc_server_add_stream(srv, EXECUTE, echo, st, &e), ERR_OK);
  assert_int_equal(rpc_server_add_stream(srv, FANOUT, fanout, st, &e),
                   ERR_OK);
  assert_int_equal(rpc_server_start(srv, &e), ERR_OK);
  return srv;
}

static rpc_channel *make_channel(int port, const rpc_options *opt) {
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", port);
  rpc_channel *ch;
  err e = {0};
  assert_int_equal(rpc_channel_create(target, opt, &ch, &e), ERR_OK);
  return ch;
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  f->st = state_new();
  f->srv = make_server(f->st, NULL, &f->port);
  f->ch = make_channel(f->port, NULL);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  rpc_channel_destroy(f->ch);
  rpc_server_destroy(f->srv, GRACE_MS); /* NULL after the shutdown test */
  state_free(f->st);
  free(f);
  return 0;
}

/* ---- helpers on the client side ------------------------------------------ */

static grpc_status_code call_register(rpc_channel *ch, const char *name,
                                      uint32_t version, uint64_t *device_id,
                                      err *e) {
  Edgedi__V1__RegisterAgentRequest req =
      EDGEDI__V1__REGISTER_AGENT_REQUEST__INIT;
  req.protocol_version = version;
  req.name = (char *)name;
  ProtobufCMessage *reply;
  grpc_status_code status;
  rpc_call_unary(ch, REGISTER_AGENT, &req.base,
                 &edgedi__v1__register_agent_reply__descriptor,
                 CALL_DEADLINE_MS, &reply, &status, e);
  if (status == GRPC_STATUS_OK) {
    if (device_id)
      *device_id = ((Edgedi__V1__RegisterAgentReply *)reply)->device_id;
    rpc_free(reply);
  } else {
    assert_null(reply);
  }
  return status;
}

static char *long_name(size_t n) {
  char *s = malloc(n + 1);
  memset(s, 'x', n);
  s[n] = '\0';
  return s;
}

static void write_ping(rpc_stream *s, uint64_t seq) {
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  Edgedi__V1__Ping ping = EDGEDI__V1__PING__INIT;
  ping.seq = seq;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_PING;
  in.ping = &ping;
  err e = {0};
  assert_int_equal(rpc_stream_write(s, &in.base, &e), ERR_OK);
}

/* Reads one message that must be a pong of seq. */
static void expect_pong(rpc_stream *s, uint64_t seq) {
  ProtobufCMessage *m;
  err e = {0};
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                   CALL_DEADLINE_MS, &m, &e), ERR_OK);
  assert_non_null(m);
  Edgedi__V1__ExecuteOut *out = (Edgedi__V1__ExecuteOut *)m;
  assert_int_equal(out->msg_case, EDGEDI__V1__EXECUTE_OUT__MSG_PONG);
  assert_int_equal(out->pong->seq, seq);
  rpc_free(m);
}

/* A port on 127.0.0.1 with nothing listening. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t n = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &n);
  close(fd);
  return ntohs(a.sin_port);
}

/* A listening socket that never accepts: connections complete in the
 * kernel and then nothing ever answers. */
static int black_hole(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 16), 0);
  socklen_t n = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &n);
  *port = ntohs(a.sin_port);
  return fd;
}

/* ---- messages and statuses ----------------------------------------------- */

static void test_pack_unpack(void **state) {
  (void)state;
  Edgedi__V1__Device d = EDGEDI__V1__DEVICE__INIT;
  d.name = "pi4";
  d.cores = 4;
  Edgedi__V1__Device *dp = &d;
  Edgedi__V1__ListDevicesReply r = EDGEDI__V1__LIST_DEVICES_REPLY__INIT;
  r.n_devices = 1;
  r.devices = &dp;
  grpc_byte_buffer *bb;
  err e = {0};
  assert_int_equal(rpc_pack(&r.base, &bb, &e), ERR_OK);
  ProtobufCMessage *m;
  assert_int_equal(rpc_unpack(bb, &edgedi__v1__list_devices_reply__descriptor,
                              &m, &e), ERR_OK);
  Edgedi__V1__ListDevicesReply *back = (Edgedi__V1__ListDevicesReply *)m;
  assert_int_equal(back->n_devices, 1);
  assert_string_equal(back->devices[0]->name, "pi4");
  assert_int_equal(back->devices[0]->cores, 4);
  rpc_free(m);

  /* The same bytes split over two slices, as gRPC may deliver them. */
  grpc_byte_buffer_reader rd;
  assert_true(grpc_byte_buffer_reader_init(&rd, bb));
  grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  size_t n = GRPC_SLICE_LENGTH(all);
  grpc_slice parts[2] = {grpc_slice_sub(all, 0, n / 2),
                         grpc_slice_sub(all, n / 2, n)};
  grpc_byte_buffer *split = grpc_raw_byte_buffer_create(parts, 2);
  assert_int_equal(rpc_unpack(split,
                              &edgedi__v1__list_devices_reply__descriptor, &m,
                              &e), ERR_OK);
  back = (Edgedi__V1__ListDevicesReply *)m;
  assert_string_equal(back->devices[0]->name, "pi4");
  rpc_free(m);
  grpc_byte_buffer_destroy(split);
  grpc_slice_unref(parts[0]);
  grpc_slice_unref(parts[1]);
  grpc_slice_unref(all);
  grpc_byte_buffer_destroy(bb);

  /* Field 1 (devices) claims 100 bytes that are not there. */
  grpc_slice bad = grpc_slice_from_static_buffer("\x0a\x64\x01", 3);
  bb = grpc_raw_byte_buffer_create(&bad, 1);
  assert_int_equal(rpc_unpack(bb, &edgedi__v1__list_devices_reply__descriptor,
                              &m, &e), ERR_CORRUPT);
  assert_null(m);
  assert_string_equal(e.msg, "malformed edgedi.v1.ListDevicesReply");
  grpc_byte_buffer_destroy(bb);

  /* No bytes at all is the default message, not an error. */
  grpc_slice none = grpc_empty_slice();
  bb = grpc_raw_byte_buffer_create(&none, 1);
  assert_int_equal(rpc_unpack(bb, &edgedi__v1__list_devices_reply__descriptor,
                              &m, &e), ERR_OK);
  assert_int_equal(((Edgedi__V1__ListDevicesReply *)m)->n_devices, 0);
  rpc_free(m);
  grpc_byte_buffer_destroy(bb);
}

static void test_status_mapping(void **state) {
  (void)state;
  assert_string_equal(rpc_status_name(GRPC_STATUS_UNAVAILABLE),
                      "UNAVAILABLE");
  assert_int_equal(rpc_err_from_status(GRPC_STATUS_OK), ERR_OK);
  assert_int_equal(rpc_err_from_status(GRPC_STATUS_DEADLINE_EXCEEDED),
                   ERR_DEADLINE);
  assert_int_equal(rpc_err_from_status(GRPC_STATUS_UNAVAILABLE),
                   ERR_UNAVAILABLE);
  assert_int_equal(rpc_err_from_status(GRPC_STATUS_UNIMPLEMENTED),
                   ERR_UNSUPPORTED);
  /* RESOURCE_EXHAUSTED is an oversized message to us, a bad argument. */
  assert_int_equal(rpc_err_from_status(GRPC_STATUS_RESOURCE_EXHAUSTED),
                   ERR_INVALID);
  /* Every other err_code survives a round trip through a status, up to
   * the codes that share one. */
  for (int c = ERR_OK; c <= ERR_INTERNAL; c++) {
    if (c == ERR_NOMEM) continue;
    grpc_status_code s = rpc_status_from_err((err_code)c);
    assert_int_equal(rpc_status_from_err(rpc_err_from_status(s)), s);
  }
}

static void test_bad_arguments(void **state) {
  fixture *f = *state;
  err e = {0};
  rpc_server *srv;
  rpc_options neg = {.max_message_bytes = -1};
  assert_int_equal(rpc_server_create("127.0.0.1:0", &neg, &srv, NULL, &e),
                   ERR_INVALID);
  assert_int_equal(rpc_server_add_unary(f->srv, "/late/Method",
                       &edgedi__v1__ping__descriptor, big, NULL, &e),
                   ERR_INVALID);
  ProtobufCMessage *m;
  Edgedi__V1__ListDevicesRequest req = EDGEDI__V1__LIST_DEVICES_REQUEST__INIT;
  assert_int_equal(rpc_call_unary(f->ch, "no-slash", &req.base,
                       &edgedi__v1__list_devices_reply__descriptor,
                       CALL_DEADLINE_MS, &m, NULL, &e), ERR_INVALID);
  assert_int_equal(rpc_call_unary(f->ch, LIST_DEVICES, &req.base,
                       &edgedi__v1__list_devices_reply__descriptor, 0, &m,
                       NULL, &e), ERR_INVALID);
}

static void test_port_in_use(void **state) {
  fixture *f = *state;
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", f->port);
  rpc_server *srv;
  err e = {0};
  assert_int_equal(rpc_server_create(addr, NULL, &srv, NULL, &e), ERR_IO);
  assert_non_null(strstr(e.msg, addr));
}

/* ---- unary --------------------------------------------------------------- */

static void test_unary_round_trip(void **state) {
  fixture *f = *state;
  Edgedi__V1__ListDevicesRequest req = EDGEDI__V1__LIST_DEVICES_REQUEST__INIT;
  ProtobufCMessage *m;
  grpc_status_code status;
  err e = {0};
  assert_int_equal(rpc_call_unary(f->ch, LIST_DEVICES, &req.base,
                       &edgedi__v1__list_devices_reply__descriptor,
                       CALL_DEADLINE_MS, &m, &status, &e), ERR_OK);
  assert_int_equal(status, GRPC_STATUS_OK);
  Edgedi__V1__ListDevicesReply *r = (Edgedi__V1__ListDevicesReply *)m;
  assert_int_equal(r->n_devices, 3);
  assert_string_equal(r->devices[0]->name, "pi3-a");
  assert_string_equal(r->devices[2]->address, "10.0.0.5:7000");
  assert_string_equal(r->devices[1]->arch, "aarch64");
  assert_null(r->devices[0]->cost);
  assert_non_null(r->devices[1]->cost);
  assert_true(r->devices[1]->cost->ms_per_gflop == 41.5);
  assert_int_equal(r->devices[1]->cost->samples, 12);
  assert_int_equal(r->devices[2]->last_seen, 1700000002);
  rpc_free(m);

  uint64_t id = 0;
  assert_int_equal(call_register(f->ch, "agent-seven", 1, &id, &e),
                   GRPC_STATUS_OK);
  assert_int_equal(id, strlen("agent-seven"));
}

static void test_handler_status(void **state) {
  fixture *f = *state;
  err e = {0};
  assert_int_equal(call_register(f->ch, "old", 9, NULL, &e),
                   GRPC_STATUS_FAILED_PRECONDITION);
  assert_int_equal(e.code, ERR_INVALID);
  assert_string_equal(e.msg, REGISTER_AGENT
                      ": FAILED_PRECONDITION: protocol version 9, server "
                      "speaks 1");
}

static void test_malformed_request(void **state) {
  fixture *f = *state;
  /* Field 2 (name) claims 100 bytes; 3 follow. */
  grpc_slice bad = grpc_slice_from_static_buffer("\x12\x64\x61\x62\x63", 5);
  grpc_byte_buffer *req = grpc_raw_byte_buffer_create(&bad, 1);
  grpc_byte_buffer *reply;
  grpc_status_code status;
  err e = {0};
  assert_int_equal(rpc_call_bytes(f->ch, REGISTER_AGENT, req,
                                  CALL_DEADLINE_MS, &reply, &status, &e),
                   ERR_INVALID);
  grpc_byte_buffer_destroy(req);
  assert_int_equal(status, GRPC_STATUS_INVALID_ARGUMENT);
  assert_null(reply);
  assert_non_null(strstr(e.msg, "malformed edgedi.v1.RegisterAgentRequest"));
  /* The server carries on. */
  assert_int_equal(call_register(f->ch, "next", 1, NULL, &e),
                   GRPC_STATUS_OK);
}

static void test_unknown_method(void **state) {
  fixture *f = *state;
  Edgedi__V1__ListDevicesRequest req = EDGEDI__V1__LIST_DEVICES_REQUEST__INIT;
  ProtobufCMessage *m;
  grpc_status_code status;
  err e = {0};
  double t0 = now_ms();
  assert_int_equal(rpc_call_unary(f->ch, "/edgedi.v1.Scheduler/Nope",
                       &req.base, &edgedi__v1__list_devices_reply__descriptor,
                       CALL_DEADLINE_MS, &m, &status, &e), ERR_UNSUPPORTED);
  assert_true(now_ms() - t0 < PROMPT_MS);
  assert_int_equal(status, GRPC_STATUS_UNIMPLEMENTED);
  assert_non_null(strstr(e.msg, "unknown method /edgedi.v1.Scheduler/Nope"));
  /* Twice: the catch-all is re-armed. */
  assert_int_equal(rpc_call_unary(f->ch, "/other.Service/X", &req.base,
                       &edgedi__v1__list_devices_reply__descriptor,
                       CALL_DEADLINE_MS, &m, &status, &e), ERR_UNSUPPORTED);
  assert_int_equal(status, GRPC_STATUS_UNIMPLEMENTED);
  /* A unary call to a streaming method still gets an answer. */
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  assert_int_not_equal(rpc_call_unary(f->ch, EXECUTE, &in.base,
                           &edgedi__v1__execute_out__descriptor,
                           CALL_DEADLINE_MS, &m, &status, &e), ERR_OK);
}

typedef struct slow_call {
  rpc_channel *ch;
  grpc_status_code status;
} slow_call;

static void *run_slow(void *arg) {
  slow_call *c = arg;
  Edgedi__V1__Ping req = EDGEDI__V1__PING__INIT;
  ProtobufCMessage *m = NULL;
  rpc_call_unary(c->ch, SLOW, &req.base, &edgedi__v1__ping__descriptor,
                 CALL_DEADLINE_MS, &m, &c->status, NULL);
  rpc_free(m);
  return NULL;
}

static void test_stuck_call_blocks_nobody(void **state) {
  fixture *f = *state;
  slow_call c = {f->ch, GRPC_STATUS_UNKNOWN};
  pthread_t t;
  pthread_create(&t, NULL, run_slow, &c);
  double until = now_ms() + PROMPT_MS;
  pthread_mutex_lock(&f->st->mu);
  while (!f->st->slow_entered && now_ms() < until) {
    pthread_mutex_unlock(&f->st->mu);
    sleep_ms(2);
    pthread_mutex_lock(&f->st->mu);
  }
  int entered = f->st->slow_entered;
  pthread_mutex_unlock(&f->st->mu);
  assert_true(entered);
  /* While Slow sits in its handler, other calls go through. */
  err e = {0};
  double t0 = now_ms();
  for (int i = 0; i < 5; i++)
    assert_int_equal(call_register(f->ch, "meanwhile", 1, NULL, &e),
                     GRPC_STATUS_OK);
  assert_true(now_ms() - t0 < PROMPT_MS);
  pthread_mutex_lock(&f->st->mu);
  f->st->slow_release = 1;
  pthread_mutex_unlock(&f->st->mu);
  pthread_join(t, NULL);
  assert_int_equal(c.status, GRPC_STATUS_OK);
}

static void *release_slow_later(void *arg) {
  server_state *st = arg;
  sleep_ms(100);
  pthread_mutex_lock(&st->mu);
  st->slow_release = 1;
  pthread_mutex_unlock(&st->mu);
  return NULL;
}

/* Shutdown with a grace period lets a running call finish. */
static void test_shutdown_grace(void **state) {
  fixture *f = *state;
  slow_call c = {f->ch, GRPC_STATUS_UNKNOWN};
  pthread_t t, releaser;
  pthread_create(&t, NULL, run_slow, &c);
  double until = now_ms() + PROMPT_MS;
  pthread_mutex_lock(&f->st->mu);
  while (!f->st->slow_entered && now_ms() < until) {
    pthread_mutex_unlock(&f->st->mu);
    sleep_ms(2);
    pthread_mutex_lock(&f->st->mu);
  }
  pthread_mutex_unlock(&f->st->mu);
  pthread_create(&releaser, NULL, release_slow_later, f->st);
  double t0 = now_ms();
  rpc_server_destroy(f->srv, CALL_DEADLINE_MS);
  f->srv = NULL;
  assert_true(now_ms() - t0 < PROMPT_MS);
  pthread_join(t, NULL);
  pthread_join(releaser, NULL);
  assert_int_equal(c.status, GRPC_STATUS_OK);
}

static const rpc_health SERVING =
    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
static const rpc_health NOT_SERVING =
    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;

static void test_health(void **state) {
  fixture *f = *state;
  rpc_health h;
  err e = {0};
  assert_int_equal(rpc_health_check(f->ch, "", CALL_DEADLINE_MS, &h, &e),
                   ERR_OK);
  assert_int_equal(h, SERVING);
  /* A service with registered methods has the server's status... */
  assert_int_equal(rpc_health_check(f->ch, "edgedi.v1.Agent",
                                    CALL_DEADLINE_MS, &h, &e), ERR_OK);
  assert_int_equal(h, SERVING);
  /* ...any other is NOT_FOUND, as the health protocol wants. */
  assert_int_equal(rpc_health_check(f->ch, "edgedi.v1.Nope",
                                    CALL_DEADLINE_MS, &h, &e), ERR_NOT_FOUND);
  rpc_server_set_health(f->srv, NOT_SERVING);
  assert_int_equal(rpc_health_check(f->ch, NULL, CALL_DEADLINE_MS, &h, &e),
                   ERR_OK);
  assert_int_equal(h, NOT_SERVING);
}

static void test_oversized(void **state) {
  (void)state;
  err e = {0};
  char *name = long_name(BIG_BYTES);
  rpc_options small = {.max_message_bytes = SMALL_MAX_BYTES};
  server_state *st = state_new();
  int port_small, port_big;
  rpc_server *srv_small = make_server(st, &small, &port_small);
  rpc_server *srv_big = make_server(st, NULL, &port_big);
  rpc_channel *ch_big = make_channel(port_small, NULL);
  rpc_channel *ch_small = make_channel(port_big, &small);

  /* The server's receive limit, enforced by gRPC. */
  assert_int_equal(call_register(ch_big, name, 1, NULL, &e),
                   GRPC_STATUS_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(e.msg, "RESOURCE_EXHAUSTED"));
  /* ...and it keeps serving. */
  assert_int_equal(call_register(ch_big, "short", 1, NULL, &e),
                   GRPC_STATUS_OK);

  /* A reply over the server's limit, refused by rpc_reply_set. */
  Edgedi__V1__Ping ping = EDGEDI__V1__PING__INIT;
  ping.reply_bytes = BIG_BYTES;
  ProtobufCMessage *m;
  grpc_status_code status;
  assert_int_equal(rpc_call_unary(ch_big, BIG, &ping.base,
                                  &edgedi__v1__ping__descriptor,
                                  CALL_DEADLINE_MS, &m, &status, &e),
                   ERR_INVALID);
  assert_int_equal(status, GRPC_STATUS_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(e.msg, "exceeds max_message_bytes 1024"));

  /* The client's receive limit, enforced by gRPC. */
  assert_int_equal(rpc_call_unary(ch_small, BIG, &ping.base,
                                  &edgedi__v1__ping__descriptor,
                                  CALL_DEADLINE_MS, &m, &status, &e),
                   ERR_INVALID);
  assert_int_equal(status, GRPC_STATUS_RESOURCE_EXHAUSTED);
  assert_null(m);

  /* The client's send limit: refused before anything is sent. */
  assert_int_equal(call_register(ch_small, name, 1, NULL, &e),
                   GRPC_STATUS_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(e.msg, "exceeds max_message_bytes 1024"));

  /* Streams: an oversized write fails alone, the stream goes on. */
  rpc_stream *s;
  assert_int_equal(rpc_stream_open(ch_small, EXECUTE, 0, &s, &e), ERR_OK);
  write_ping(s, 1);
  expect_pong(s, 1);
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  Edgedi__V1__Hello hello = EDGEDI__V1__HELLO__INIT;
  hello.name = name;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_HELLO;
  in.hello = &hello;
  assert_int_equal(rpc_stream_write(s, &in.base, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "RESOURCE_EXHAUSTED"));
  write_ping(s, 2);
  expect_pong(s, 2);
  rpc_stream_destroy(s);

  /* A stream message over the server's receive limit ends that stream
   * with RESOURCE_EXHAUSTED. */
  assert_int_equal(rpc_stream_open(ch_big, EXECUTE, 0, &s, &e), ERR_OK);
  assert_int_equal(rpc_stream_write(s, &in.base, &e), ERR_OK);
  assert_int_not_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                       PROMPT_MS, &m, &e), ERR_OK);
  assert_null(m);
  assert_int_equal(rpc_stream_status(s, NULL),
                   GRPC_STATUS_RESOURCE_EXHAUSTED);
  rpc_stream_destroy(s);

  rpc_channel_destroy(ch_big);
  rpc_channel_destroy(ch_small);
  rpc_server_destroy(srv_small, GRACE_MS);
  rpc_server_destroy(srv_big, GRACE_MS);
  state_free(st);
  free(name);
}

static void test_no_answer(void **state) {
  (void)state;
  err e = {0};
  Edgedi__V1__ListDevicesRequest req = EDGEDI__V1__LIST_DEVICES_REQUEST__INIT;
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  ProtobufCMessage *m;
  grpc_status_code status;
  rpc_stream *s;

  /* Nothing listening: refused at once (calls are fail-fast). */
  rpc_channel *ch = make_channel(closed_port(), NULL);
  double t0 = now_ms();
  assert_int_equal(rpc_call_unary(ch, LIST_DEVICES, &req.base,
                       &edgedi__v1__list_devices_reply__descriptor,
                       DEAD_DEADLINE_MS, &m, &status, &e), ERR_UNAVAILABLE);
  assert_true(now_ms() - t0 < PROMPT_MS);
  assert_int_equal(status, GRPC_STATUS_UNAVAILABLE);
  assert_non_null(strstr(e.msg, LIST_DEVICES ": UNAVAILABLE: "));
  rpc_health h;
  assert_int_equal(rpc_health_check(ch, "", DEAD_DEADLINE_MS, &h, &e),
                   ERR_UNAVAILABLE);
  /* A stream to it: the first write fails, and so does the read. */
  assert_int_equal(rpc_stream_open(ch, EXECUTE, 0, &s, &e), ERR_OK);
  t0 = now_ms();
  assert_int_equal(rpc_stream_write(s, &in.base, &e), ERR_UNAVAILABLE);
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                   -1, &m, &e), ERR_UNAVAILABLE);
  assert_true(now_ms() - t0 < PROMPT_MS);
  assert_int_equal(rpc_stream_status(s, NULL), GRPC_STATUS_UNAVAILABLE);
  rpc_stream_destroy(s);
  rpc_channel_destroy(ch);

  /* Connections the kernel accepts and nobody answers: gRPC waits for the
   * server's HTTP/2 SETTINGS, so the call ends at its deadline. */
  int port;
  int fd = black_hole(&port);
  ch = make_channel(port, NULL);
  t0 = now_ms();
  assert_int_equal(rpc_call_unary(ch, LIST_DEVICES, &req.base,
                       &edgedi__v1__list_devices_reply__descriptor,
                       DEAD_DEADLINE_MS, &m, &status, &e), ERR_DEADLINE);
  assert_true(now_ms() - t0 < DEAD_DEADLINE_MS + PROMPT_MS);
  assert_int_equal(status, GRPC_STATUS_DEADLINE_EXCEEDED);
  /* A stream with a deadline ends at it. */
  assert_int_equal(rpc_stream_open(ch, EXECUTE, DEAD_DEADLINE_MS, &s, &e),
                   ERR_OK);
  t0 = now_ms();
  assert_int_not_equal(rpc_stream_write(s, &in.base, &e), ERR_OK);
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                   -1, &m, &e), ERR_DEADLINE);
  assert_true(now_ms() - t0 < DEAD_DEADLINE_MS + PROMPT_MS);
  assert_int_equal(rpc_stream_status(s, NULL), GRPC_STATUS_DEADLINE_EXCEEDED);
  rpc_stream_destroy(s);
  rpc_channel_destroy(ch);

  /* Without a deadline, a blocked write gives up after write_timeout_ms
   * and takes the stream down with it, so the reader is not left
   * hanging either. */
  rpc_options quick = {.write_timeout_ms = DEAD_DEADLINE_MS};
  ch = make_channel(port, &quick);
  assert_int_equal(rpc_stream_open(ch, EXECUTE, 0, &s, &e), ERR_OK);
  t0 = now_ms();
  assert_int_equal(rpc_stream_write(s, &in.base, &e), ERR_DEADLINE);
  assert_true(now_ms() - t0 < DEAD_DEADLINE_MS + PROMPT_MS);
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                   -1, &m, &e), ERR_DEADLINE);
  assert_int_equal(rpc_stream_status(s, NULL), GRPC_STATUS_DEADLINE_EXCEEDED);
  rpc_stream_destroy(s);
  rpc_channel_destroy(ch);
  close(fd);
}

static void test_many_sequential_calls(void **state) {
  fixture *f = *state;
  Edgedi__V1__ListDevicesRequest req = EDGEDI__V1__LIST_DEVICES_REQUEST__INIT;
  err e = {0};
  for (int i = 0; i < SEQUENTIAL_CALLS; i++) {
    ProtobufCMessage *m;
    grpc_status_code status;
    assert_int_equal(rpc_call_unary(f->ch, LIST_DEVICES, &req.base,
                         &edgedi__v1__list_devices_reply__descriptor,
                         CALL_DEADLINE_MS, &m, &status, &e), ERR_OK);
    assert_int_equal(((Edgedi__V1__ListDevicesReply *)m)->n_devices, 3);
    rpc_free(m);
  }
  /* Streams too: each opened, used, closed. */
  for (int i = 0; i < 20; i++) {
    rpc_stream *s;
    assert_int_equal(rpc_stream_open(f->ch, EXECUTE, 0, &s, &e), ERR_OK);
    write_ping(s, (uint64_t)i);
    expect_pong(s, (uint64_t)i);
    assert_int_equal(rpc_stream_close(s, &e), ERR_OK);
    ProtobufCMessage *m;
    assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                     CALL_DEADLINE_MS, &m, &e), ERR_OK);
    assert_null(m);
    rpc_stream_destroy(s);
  }
}

/* ---- streams ------------------------------------------------------------- */

typedef struct pinger {
  rpc_stream *s;
  uint64_t first;
  int failures;
} pinger;

static void *ping_writer(void *arg) {
  pinger *p = arg;
  for (int i = 0; i < STREAM_MESSAGES / 2; i++) {
    Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
    Edgedi__V1__Ping ping = EDGEDI__V1__PING__INIT;
    ping.seq = p->first + (uint64_t)i;
    in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_PING;
    in.ping = &ping;
    if (rpc_stream_write(p->s, &in.base, NULL)) p->failures++;
  }
  return NULL;
}

static void test_stream_echo(void **state) {
  fixture *f = *state;
  rpc_stream *s;
  err e = {0};
  assert_int_equal(rpc_stream_open(f->ch, EXECUTE, 0, &s, &e), ERR_OK);
  assert_string_equal(rpc_stream_method(s), EXECUTE);
  /* Two writers at once while this thread reads. */
  pinger p[2] = {{s, 0, 0}, {s, 1000, 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, ping_writer, &p[i]);
  int seen[2][STREAM_MESSAGES / 2] = {{0}};
  int64_t last[2] = {-1, -1};
  int in_order = 1;
  for (int n = 0; n < STREAM_MESSAGES; n++) {
    ProtobufCMessage *m;
    assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                     CALL_DEADLINE_MS, &m, &e), ERR_OK);
    assert_non_null(m);
    uint64_t seq = ((Edgedi__V1__ExecuteOut *)m)->pong->seq;
    int w = seq >= 1000;
    uint64_t i = seq - p[w].first;
    assert_true(i < STREAM_MESSAGES / 2);
    seen[w][i]++;
    /* Each writer's messages keep their order. */
    if ((int64_t)i <= last[w]) in_order = 0;
    last[w] = (int64_t)i;
    rpc_free(m);
  }
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  assert_int_equal(p[0].failures + p[1].failures, 0);
  for (int w = 0; w < 2; w++)
    for (int i = 0; i < STREAM_MESSAGES / 2; i++)
      assert_int_equal(seen[w][i], 1);
  assert_true(in_order);

  /* Close, then the server ends the stream OK. */
  assert_int_equal(rpc_stream_close(s, &e), ERR_OK);
  assert_int_equal(rpc_stream_write(s, &(Edgedi__V1__ExecuteIn)
                                    EDGEDI__V1__EXECUTE_IN__INIT.base, &e),
                   ERR_INVALID);
  ProtobufCMessage *m;
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                   CALL_DEADLINE_MS, &m, &e), ERR_OK);
  assert_null(m);
  assert_int_equal(rpc_stream_status(s, NULL), GRPC_STATUS_OK);
  /* Reading again repeats the end. */
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                   CALL_DEADLINE_MS, &m, &e), ERR_OK);
  assert_null(m);
  rpc_stream_destroy(s);
  assert_true(wait_ends(f->st, 1, PROMPT_MS));
  assert_int_equal(f->st->ended_clean, 1);
  assert_int_equal(f->st->last_status, GRPC_STATUS_OK);
}

static void test_stream_server_writers(void **state) {
  fixture *f = *state;
  rpc_stream *s;
  err e = {0};
  assert_int_equal(rpc_stream_open(f->ch, FANOUT, 0, &s, &e), ERR_OK);
  for (int i = 0; i < 10; i++) write_ping(s, (uint64_t)i);
  assert_int_equal(rpc_stream_close(s, &e), ERR_OK);
  int seen[2][STREAM_MESSAGES / 2] = {{0}};
  int got = 0;
  ProtobufCMessage *m;
  while (rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                         CALL_DEADLINE_MS, &m, &e) == ERR_OK && m) {
    uint64_t seq = ((Edgedi__V1__ExecuteOut *)m)->pong->seq;
    int w = seq >= 1000;
    uint64_t i = seq - (w ? 1000 : 0);
    assert_true(i < STREAM_MESSAGES / 2);
    seen[w][i]++;
    got++;
    rpc_free(m);
  }
  assert_int_equal(e.code, ERR_OK);
  assert_int_equal(got, STREAM_MESSAGES);
  for (int w = 0; w < 2; w++)
    for (int i = 0; i < STREAM_MESSAGES / 2; i++)
      assert_int_equal(seen[w][i], 1);
  const char *details;
  assert_int_equal(rpc_stream_status(s, &details), GRPC_STATUS_OK);
  assert_string_equal(details, "read 10");
  rpc_stream_destroy(s);
}

static void test_stream_read_timeout(void **state) {
  fixture *f = *state;
  rpc_stream *s;
  err e = {0};
  assert_int_equal(rpc_stream_open(f->ch, EXECUTE, 0, &s, &e), ERR_OK);
  ProtobufCMessage *m;
  /* Nothing sent, nothing to read: a timeout, and the stream lives on. */
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor, 50,
                                   &m, &e), ERR_DEADLINE);
  assert_null(m);
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor, 0,
                                   &m, &e), ERR_DEADLINE);
  write_ping(s, 7);
  expect_pong(s, 7);
  /* A timed-out read leaves its receive pending; destroy collects it. */
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor, 10,
                                   &m, &e), ERR_DEADLINE);
  rpc_stream_destroy(s);
  /* The server sees the client's cancel as an error, not a clean end. */
  assert_true(wait_ends(f->st, 1, PROMPT_MS));
  assert_int_not_equal(f->st->last_end, ERR_OK);
  assert_int_equal(f->st->last_status, GRPC_STATUS_CANCELLED);
}

static void test_stream_server_error(void **state) {
  fixture *f = *state;
  rpc_stream *s;
  err e = {0};
  assert_int_equal(rpc_stream_open(f->ch, EXECUTE, 0, &s, &e), ERR_OK);
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  Edgedi__V1__Hello hello = EDGEDI__V1__HELLO__INIT;
  hello.name = "refuse";
  hello.protocol_version = 2;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_HELLO;
  in.hello = &hello;
  assert_int_equal(rpc_stream_write(s, &in.base, &e), ERR_OK);
  ProtobufCMessage *m;
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                   CALL_DEADLINE_MS, &m, &e), ERR_INVALID);
  assert_null(m);
  assert_string_equal(e.msg, EXECUTE ": FAILED_PRECONDITION: protocol "
                             "version 2, agent speaks 1");
  const char *details;
  assert_int_equal(rpc_stream_status(s, &details),
                   GRPC_STATUS_FAILED_PRECONDITION);
  assert_string_equal(details, "protocol version 2, agent speaks 1");
  /* The call is over: a write fails at once. */
  double t0 = now_ms();
  assert_int_not_equal(rpc_stream_write(s, &in.base, &e), ERR_OK);
  assert_true(now_ms() - t0 < PROMPT_MS);
  rpc_stream_destroy(s);
}

static void test_stream_cancel(void **state) {
  fixture *f = *state;
  rpc_stream *s;
  err e = {0};
  assert_int_equal(rpc_stream_open(f->ch, EXECUTE, 0, &s, &e), ERR_OK);
  write_ping(s, 1);
  expect_pong(s, 1);
  rpc_stream_cancel(s, GRPC_STATUS_CANCELLED, "scheduler gave up");
  ProtobufCMessage *m;
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                   PROMPT_MS, &m, &e), ERR_UNAVAILABLE);
  assert_int_equal(rpc_stream_status(s, NULL), GRPC_STATUS_CANCELLED);
  assert_int_not_equal(rpc_stream_write(s, &(Edgedi__V1__ExecuteIn)
                                        EDGEDI__V1__EXECUTE_IN__INIT.base, &e),
                       ERR_OK);
  rpc_stream_destroy(s);
  assert_true(wait_ends(f->st, 1, PROMPT_MS));
  assert_int_equal(f->st->last_status, GRPC_STATUS_CANCELLED);
}

typedef struct reader {
  rpc_stream *s;
  err_code rc;
  int got_msg;
  double done_ms;
} reader;

static void *read_until_end(void *arg) {
  reader *r = arg;
  ProtobufCMessage *m;
  err e = {0};
  r->rc = rpc_stream_read(r->s, &edgedi__v1__execute_out__descriptor, -1, &m,
                          &e);
  r->got_msg = m != NULL;
  rpc_free(m);
  r->done_ms = now_ms();
  return NULL;
}

static void test_server_shutdown_mid_stream(void **state) {
  fixture *f = *state;
  rpc_stream *s;
  err e = {0};
  assert_int_equal(rpc_stream_open(f->ch, EXECUTE, 0, &s, &e), ERR_OK);
  write_ping(s, 1);
  expect_pong(s, 1);
  reader r = {s, ERR_OK, 0, 0};
  pthread_t t;
  pthread_create(&t, NULL, read_until_end, &r);
  sleep_ms(50); /* let the reader block */
  double t0 = now_ms();
  rpc_server_destroy(f->srv, 0);
  f->srv = NULL;
  assert_true(now_ms() - t0 < PROMPT_MS);
  pthread_join(t, NULL);
  assert_int_not_equal(r.rc, ERR_OK);
  assert_false(r.got_msg);
  assert_true(r.done_ms - t0 < PROMPT_MS);
  assert_int_not_equal(rpc_stream_status(s, NULL), GRPC_STATUS_OK);
  /* Writing to the dead stream fails at once. */
  t0 = now_ms();
  assert_int_not_equal(rpc_stream_write(s, &(Edgedi__V1__ExecuteIn)
                                        EDGEDI__V1__EXECUTE_IN__INIT.base, &e),
                       ERR_OK);
  assert_true(now_ms() - t0 < PROMPT_MS);
  rpc_stream_destroy(s);
  /* The handler saw its stream end in error and returned. */
  assert_int_equal(f->st->stream_ends, 1);
  assert_int_not_equal(f->st->last_end, ERR_OK);
  /* New calls find nobody. */
  rpc_health h;
  assert_int_not_equal(rpc_health_check(f->ch, "", DEAD_DEADLINE_MS, &h, &e),
                       ERR_OK);
}

/* ---- a peer process killed mid-stream ------------------------------------ */

static int child_server(void) {
  rpc_server *srv;
  int port;
  err e = {0};
  if (rpc_server_create("127.0.0.1:0", NULL, &srv, &port, &e) ||
      rpc_server_add_stream(srv, EXECUTE, echo, NULL, &e) ||
      rpc_server_start(srv, &e)) {
    fprintf(stderr, "child server: %s\n", e.msg);
    return 1;
  }
  printf("%d\n", port);
  fflush(stdout);
  /* Until the parent kills us (or goes away: stdin closes). */
  char buf[16];
  while (read(0, buf, sizeof buf) > 0) {
  }
  rpc_server_destroy(srv, 0);
  return 0;
}

/* A server process: this binary with --child-server. */
typedef struct child {
  pid_t pid;
  int port;
  int to_child; /* its stdin: closing it asks it to quit */
} child;

static child spawn_child(void) {
  int out[2], in[2];
  assert_int_equal(pipe(out), 0);
  assert_int_equal(pipe(in), 0);
  /* posix_spawn, not fork: no fork handlers run in this threaded parent. */
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  posix_spawn_file_actions_addclose(&fa, in[1]);
  char *args[] = {"rpc_test", "--child-server", NULL};
  extern char **environ;
  child c = {0, 0, in[1]};
  assert_int_equal(posix_spawn(&c.pid, "/proc/self/exe", &fa, NULL, args,
                               environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  close(in[0]);
  char line[32] = "";
  ssize_t n = 0, k;
  while (n < (ssize_t)sizeof line - 1 &&
         (k = read(out[0], line + n, sizeof line - 1 - (size_t)n)) > 0) {
    n += k;
    if (memchr(line, '\n', (size_t)n)) break;
  }
  close(out[0]);
  c.port = atoi(line);
  assert_true(c.port > 0);
  return c;
}

static void reap_child(child *c) {
  kill(c->pid, SIGKILL);
  kill(c->pid, SIGCONT);
  int wstatus;
  waitpid(c->pid, &wstatus, 0);
  close(c->to_child);
}

/* Opens an Execute stream to the child, checks it works, and starts a
 * reader blocked on it. */
static rpc_stream *stream_with_reader(rpc_channel *ch, reader *r,
                                      pthread_t *t) {
  rpc_stream *s;
  err e = {0};
  assert_int_equal(rpc_stream_open(ch, EXECUTE, 0, &s, &e), ERR_OK);
  write_ping(s, 1);
  expect_pong(s, 1);
  *r = (reader){s, ERR_OK, 0, 0};
  pthread_create(t, NULL, read_until_end, r);
  sleep_ms(50); /* let it block */
  return s;
}

/* The reader and a later write both fail, and the write promptly. */
static void expect_dead(rpc_stream *s, const reader *r) {
  err e = {0};
  assert_int_not_equal(r->rc, ERR_OK);
  assert_false(r->got_msg);
  assert_int_equal(rpc_stream_status(s, NULL), GRPC_STATUS_UNAVAILABLE);
  double t0 = now_ms();
  assert_int_not_equal(rpc_stream_write(s, &(Edgedi__V1__ExecuteIn)
                                        EDGEDI__V1__EXECUTE_IN__INIT.base, &e),
                       ERR_OK);
  assert_true(now_ms() - t0 < PROMPT_MS);
}

static void test_peer_killed_mid_stream(void **state) {
  (void)state;
  child c = spawn_child();
  rpc_channel *ch = make_channel(c.port, NULL);
  reader r;
  pthread_t t;
  rpc_stream *s = stream_with_reader(ch, &r, &t);
  double t0 = now_ms();
  kill(c.pid, SIGKILL); /* the kernel closes its sockets */
  pthread_join(t, NULL);
  assert_true(r.done_ms - t0 < PROMPT_MS);
  expect_dead(s, &r);
  rpc_stream_destroy(s);
  rpc_channel_destroy(ch);
  reap_child(&c);
}

/* A frozen peer (SIGSTOP) keeps its connection open and says nothing, like
 * a board that lost power behind a switch: only keepalive can tell. */
static void test_peer_frozen_mid_stream(void **state) {
  (void)state;
  enum { KEEPALIVE_TIME_MS = 200, KEEPALIVE_TIMEOUT_MS = 300 };
  rpc_options opt = {.keepalive_time_ms = KEEPALIVE_TIME_MS,
                     .keepalive_timeout_ms = KEEPALIVE_TIMEOUT_MS};
  child c = spawn_child();
  rpc_channel *ch = make_channel(c.port, &opt);
  reader r;
  pthread_t t;
  rpc_stream *s = stream_with_reader(ch, &r, &t);
  double t0 = now_ms();
  kill(c.pid, SIGSTOP);
  pthread_join(t, NULL);
  assert_true(r.done_ms - t0 <
              KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS + PROMPT_MS);
  expect_dead(s, &r);
  rpc_stream_destroy(s);
  rpc_channel_destroy(ch);
  reap_child(&c);
}

/* Calls and streams hold the channel: destroying it first is allowed. */
static void test_stream_outlives_channel(void **state) {
  fixture *f = *state;
  rpc_stream *s;
  err e = {0};
  assert_int_equal(rpc_stream_open(f->ch, EXECUTE, 0, &s, &e), ERR_OK);
  rpc_channel_destroy(f->ch);
  f->ch = NULL;
  write_ping(s, 3);
  expect_pong(s, 3);
  assert_int_equal(rpc_stream_close(s, &e), ERR_OK);
  ProtobufCMessage *m;
  assert_int_equal(rpc_stream_read(s, &edgedi__v1__execute_out__descriptor,
                                   CALL_DEADLINE_MS, &m, &e), ERR_OK);
  assert_null(m);
  rpc_stream_destroy(s);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--child-server") == 0)
    return child_server();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pack_unpack),
      cmocka_unit_test(test_status_mapping),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(test_port_in_use, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unary_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_handler_status, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_request, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_method, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stuck_call_blocks_nobody, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_shutdown_grace, setup, teardown),
      cmocka_unit_test_setup_teardown(test_health, setup, teardown),
      cmocka_unit_test(test_oversized),
      cmocka_unit_test(test_no_answer),
      cmocka_unit_test_setup_teardown(test_many_sequential_calls, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_stream_echo, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stream_server_writers, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_stream_read_timeout, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_stream_server_error, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_stream_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_server_shutdown_mid_stream, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_stream_outlives_channel, setup,
                                      teardown),
      cmocka_unit_test(test_peer_killed_mid_stream),
      cmocka_unit_test(test_peer_frozen_mid_stream),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* fake_agent.c — the test double of the node agent (contract in
 * fake_agent.h). */
#include "tests/fake_agent.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/modelspec.h"
#include "runtime/protocol.h"
#include "runtime/rpc.h"
#include "runtime/tile.h"

enum {
  FAKE_MAX_MODELS = 16,
  FAKE_HELLO_TIMEOUT_MS = 5000,
  FAKE_READ_POLL_MS = 100,
  FAKE_REGISTER_DEADLINE_MS = 10000,
};

static const double default_gflop[] = {0.01, 0.03, 0.1, 0.3};

struct fake_agent {
  fake_agent_options o;
  char name[64];
  char address[64];
  rpc_server *srv;
  pthread_mutex_t mu; /* guards everything below */
  bool killed;
  bool hold;
  unsigned garble; /* FAKE_GARBLE_* */
  double speed;
  bool die_armed, dying;
  fake_agent_phase die_phase;
  int die_left;
  pthread_t killer;
  bool killer_started;
  int jobs_seen, streams;
  int n_models;
  model *models[FAKE_MAX_MODELS];
  char digests[FAKE_MAX_MODELS][MODELSPEC_DIGEST_BYTES];
};

static const model *find_model(void *ctx, const char *digest) {
  fake_agent *f = ctx;
  const model *m = NULL;
  pthread_mutex_lock(&f->mu);
  for (int i = 0; i < f->n_models && !m; i++)
    if (strcmp(f->digests[i], digest) == 0) m = f->models[i];
  pthread_mutex_unlock(&f->mu);
  return m;
}

static grpc_status_code on_load_model(void *ctx, const ProtobufCMessage *req, rpc_reply *reply,
                                      char *details, size_t len) {
  fake_agent *f = ctx;
  const Edgedi__V1__LoadModelRequest *lr = (const Edgedi__V1__LoadModelRequest *)req;
  model *m = NULL;
  char digest[MODELSPEC_DIGEST_BYTES];
  err e = {0};
  if (modelspec_build(lr->spec, &m, digest, &e) != ERR_OK) {
    snprintf(details, len, "%s", e.msg);
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  if (lr->spec->digest && lr->spec->digest[0] && strcmp(lr->spec->digest, digest) != 0) {
    snprintf(details, len, "the spec says digest %s, it builds %s", lr->spec->digest, digest);
    model_destroy(m);
    return GRPC_STATUS_FAILED_PRECONDITION;
  }
  Edgedi__V1__LoadModelReply r = EDGEDI__V1__LOAD_MODEL_REPLY__INIT;
  r.name = lr->spec->name;
  r.digest = digest;
  r.gflop = model_flops(m) / 1e9;
  r.params = model_param_count(m);
  r.layers = (uint32_t)m->n_layers;
  rpc_reply_set(reply, &r.base, NULL);
  pthread_mutex_lock(&f->mu);
  bool known = false;
  for (int i = 0; i < f->n_models; i++) known |= strcmp(f->digests[i], digest) == 0;
  if (!known && f->n_models < FAKE_MAX_MODELS) {
    f->models[f->n_models] = m;
    snprintf(f->digests[f->n_models++], MODELSPEC_DIGEST_BYTES, "%s", digest);
    m = NULL;
  }
  pthread_mutex_unlock(&f->mu);
  model_destroy(m);
  return GRPC_STATUS_OK;
}

static grpc_status_code on_profile(void *ctx, const ProtobufCMessage *req, rpc_reply *reply,
                                   char *details, size_t len) {
  (void)details, (void)len;
  fake_agent *f = ctx;
  const Edgedi__V1__ProfileRequest *pr = (const Edgedi__V1__ProfileRequest *)req;
  size_t n_sizes = pr->n_gflop ? pr->n_gflop : sizeof default_gflop / sizeof default_gflop[0];
  size_t repeats = pr->repeats ? pr->repeats : 3, n = n_sizes * repeats;
  Edgedi__V1__ProfileSample *s = calloc(n, sizeof *s);
  Edgedi__V1__ProfileSample **sp = calloc(n, sizeof *sp);
  for (size_t i = 0; i < n; i++) {
    double g = pr->n_gflop ? pr->gflop[i / repeats] : default_gflop[i / repeats];
    edgedi__v1__profile_sample__init(&s[i]);
    s[i].gflop = g;
    s[i].ms = f->o.ms_per_gflop * g + f->o.fixed_ms;
    s[i].cpu_ms = s[i].ms;
    sp[i] = &s[i];
  }
  Edgedi__V1__ProfileReply r = EDGEDI__V1__PROFILE_REPLY__INIT;
  r.n_samples = n;
  r.samples = sp;
  r.threads = 1;
  rpc_reply_set(reply, &r.base, NULL);
  free(s);
  free(sp);
  return GRPC_STATUS_OK;
}

static void *killer_main(void *arg) {
  fake_agent_kill(arg);
  return NULL;
}

/* An event of `phase` happened (caller holds f->mu): true when it is the
 * armed death; the server is then destroyed from a thread of its own (a
 * handler cannot wait for itself). */
static bool event_locked(fake_agent *f, fake_agent_phase phase) {
  if (!f->die_armed || f->die_phase != phase || --f->die_left > 0) return false;
  f->die_armed = false;
  f->dying = true;
  f->killer_started = pthread_create(&f->killer, NULL, killer_main, f) == 0;
  return true;
}

static bool has_result(const tile_outbox *ob) {
  for (int i = 0; i < ob->n; i++) {
    Edgedi__V1__ExecuteOut *o =
        edgedi__v1__execute_out__unpack(NULL, ob->msgs[i].len, ob->msgs[i].data);
    bool r = o && o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT;
    if (o) edgedi__v1__execute_out__free_unpacked(o, NULL);
    if (r) return true;
  }
  return false;
}

/* Writes the outbox's messages to the stream; the engine's messages to
 * itself (tile_outbox.loop: a lone job's own FE scales) are handled at
 * once, and what they produce written in turn. */
static err_code write_outbox(fake_agent *f, rpc_stream *s, tile_engine *eng, tile_outbox *ob,
                             err *e) {
  static float nonsense[] = {NAN, 1.0f, 5.0f, 2.0f, 0.5f, 1.0f};
  pthread_mutex_lock(&f->mu);
  unsigned garble = f->garble;
  pthread_mutex_unlock(&f->mu);
  err_code rc = ERR_OK;
  while (rc == ERR_OK && (ob->n || ob->n_loop)) {
    for (int i = 0; i < ob->n && rc == ERR_OK; i++) {
      Edgedi__V1__ExecuteOut *o =
          edgedi__v1__execute_out__unpack(NULL, ob->msgs[i].len, ob->msgs[i].data);
      if (!o) return err_set(e, ERR_INTERNAL, "the engine produced bytes that do not decode");
      float *kept = NULL;
      size_t n_kept = 0;
      if ((garble & FAKE_GARBLE_SPANS) && o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT) {
        kept = o->result->spans, n_kept = o->result->n_spans;
        o->result->spans = nonsense;
        o->result->n_spans = sizeof nonsense / sizeof nonsense[0];
      }
      if ((garble & FAKE_GARBLE_FIGURES) && o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT) {
        Edgedi__V1__TileResult *tr = o->result;
        tr->compute_ms = NAN, tr->queued_ms = NAN, tr->cpu_ms = -1, tr->gflop = -2;
        tr->wait_ms = INFINITY, tr->bytes_out = UINT64_MAX;
      }
      if ((garble & FAKE_GARBLE_OUTPUT) && o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_ROWS &&
          o->rows->dest == -1 && o->rows->data.len >= sizeof(float)) {
        /* Raw or zero-masked, the last 4 bytes are a float of the rows. */
        float inf = INFINITY;
        memcpy(o->rows->data.data + o->rows->data.len - sizeof inf, &inf, sizeof inf);
      }
      rc = rpc_stream_write(s, &o->base, e);
      if (kept) o->result->spans = kept, o->result->n_spans = n_kept; /* freed as unpacked */
      edgedi__v1__execute_out__free_unpacked(o, NULL);
    }
    int n_loop = ob->n_loop;
    tile_msg *loop = n_loop ? malloc((size_t)n_loop * sizeof *loop) : NULL;
    if (n_loop && !loop) return err_set(e, ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_loop; i++) loop[i] = ob->loop[i], ob->loop[i].data = NULL;
    tile_outbox_clear(ob);
    for (int i = 0; i < n_loop; i++) {
      Edgedi__V1__ExecuteIn *in = edgedi__v1__execute_in__unpack(NULL, loop[i].len, loop[i].data);
      if (!in) rc = err_set(e, ERR_INTERNAL, "the engine looped back bytes that do not decode");
      if (rc == ERR_OK) rc = tile_engine_handle(eng, in, ob, e);
      if (in) edgedi__v1__execute_in__free_unpacked(in, NULL);
      free(loop[i].data);
    }
    free(loop);
  }
  tile_outbox_clear(ob);
  return rc;
}

static grpc_status_code on_execute(void *ctx, rpc_stream *s, char *details, size_t len) {
  fake_agent *f = ctx;
  ProtobufCMessage *pm = NULL;
  err e = {0};
  if (rpc_stream_read(s, &edgedi__v1__execute_in__descriptor, FAKE_HELLO_TIMEOUT_MS, &pm, &e) !=
          ERR_OK ||
      !pm) {
    snprintf(details, len, "no Hello: %s", e.msg);
    rpc_free(pm);
    return GRPC_STATUS_DEADLINE_EXCEEDED;
  }
  Edgedi__V1__ExecuteIn *in = (Edgedi__V1__ExecuteIn *)pm;
  if (in->msg_case != EDGEDI__V1__EXECUTE_IN__MSG_HELLO ||
      in->hello->protocol_version != EDGEDI_PROTOCOL_VERSION) {
    snprintf(details, len, "agent speaks protocol v%d, scheduler v%u", EDGEDI_PROTOCOL_VERSION,
             in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_HELLO ? in->hello->protocol_version : 0);
    rpc_free(pm);
    return GRPC_STATUS_FAILED_PRECONDITION;
  }
  rpc_free(pm);
  Edgedi__V1__Hello hello = EDGEDI__V1__HELLO__INIT;
  hello.protocol_version = f->o.protocol_version ? f->o.protocol_version : EDGEDI_PROTOCOL_VERSION;
  hello.name = f->name;
  Edgedi__V1__ExecuteOut out = EDGEDI__V1__EXECUTE_OUT__INIT;
  out.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_HELLO;
  out.hello = &hello;
  if (rpc_stream_write(s, &out.base, &e) != ERR_OK) return GRPC_STATUS_UNAVAILABLE;
  pthread_mutex_lock(&f->mu);
  f->streams++;
  pthread_mutex_unlock(&f->mu);

  tile_options to = tile_default_options();
  to.find_model = find_model;
  to.find_model_ctx = f;
  to.threads = 1;
  tile_engine *eng = NULL;
  if (tile_engine_create(&to, &eng, &e) != ERR_OK) {
    snprintf(details, len, "%s", e.msg);
    return GRPC_STATUS_INTERNAL;
  }
  tile_outbox ob = {0};
  grpc_status_code st = GRPC_STATUS_OK;
  for (;;) {
    err_code rc =
        rpc_stream_read(s, &edgedi__v1__execute_in__descriptor, FAKE_READ_POLL_MS, &pm, &e);
    if (rc == ERR_DEADLINE || rc == ERR_CORRUPT) continue;
    if (rc != ERR_OK || !pm) break; /* ended: cancelled, killed, or closed */
    in = (Edgedi__V1__ExecuteIn *)pm;
    /* Held: everything of a request vanishes, as into a stuck device. */
    bool of_request = in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_JOB ||
                      in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_ROWS ||
                      in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_FE_SCALE;
    pthread_mutex_lock(&f->mu);
    f->jobs_seen += in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_JOB;
    bool drop = (f->hold && of_request) || f->dying;
    if (!drop && in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_JOB)
      drop = event_locked(f, FAKE_DIE_ON_JOB);
    if (!drop && in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_ROWS)
      drop = event_locked(f, FAKE_DIE_ON_ROWS);
    if (!drop && in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_FE_SCALE)
      drop = event_locked(f, FAKE_DIE_ON_FE_SCALE);
    double speed = f->speed;
    pthread_mutex_unlock(&f->mu);
    if (!drop) {
      rc = tile_engine_set_speed(eng, speed, &e);
      if (rc == ERR_OK) rc = tile_engine_handle(eng, in, &ob, &e);
    }
    rpc_free(pm);
    if (rc == ERR_OK && ob.n && has_result(&ob)) {
      pthread_mutex_lock(&f->mu);
      if (event_locked(f, FAKE_DIE_IN_TILE)) tile_outbox_clear(&ob); /* dies before sending */
      pthread_mutex_unlock(&f->mu);
    }
    if (rc == ERR_OK) rc = write_outbox(f, s, eng, &ob, &e);
    if (rc != ERR_OK) {
      snprintf(details, len, "%s", e.msg);
      st = GRPC_STATUS_INTERNAL;
      break;
    }
  }
  tile_outbox_free(&ob);
  tile_engine_destroy(eng);
  return st;
}

err_code fake_agent_start(const fake_agent_options *o, fake_agent **out, err *e) {
  fake_agent *f = calloc(1, sizeof *f);
  if (!f) return err_set(e, ERR_NOMEM, "out of memory");
  f->o = *o;
  f->speed = o->speed > 0 ? o->speed : 1.0;
  snprintf(f->name, sizeof f->name, "%s", o->name);
  pthread_mutex_init(&f->mu, NULL);
  int port = 0;
  err_code rc = rpc_server_create("127.0.0.1:0", NULL, &f->srv, &port, e);
  if (rc == ERR_OK)
    rc = rpc_server_add_stream(f->srv, "/edgedi.v1.Agent/Execute", on_execute, f, e);
  if (rc == ERR_OK)
    rc = rpc_server_add_unary(f->srv, "/edgedi.v1.Agent/LoadModel",
                              &edgedi__v1__load_model_request__descriptor, on_load_model, f, e);
  if (rc == ERR_OK)
    rc = rpc_server_add_unary(f->srv, "/edgedi.v1.Agent/Profile",
                              &edgedi__v1__profile_request__descriptor, on_profile, f, e);
  if (rc == ERR_OK) rc = rpc_server_start(f->srv, e);
  if (rc != ERR_OK) {
    fake_agent_destroy(f);
    return rc;
  }
  snprintf(f->address, sizeof f->address, "127.0.0.1:%d", port);
  *out = f;
  return ERR_OK;
}

const char *fake_agent_address(const fake_agent *f) { return f->address; }
const char *fake_agent_name(const fake_agent *f) { return f->name; }

grpc_status_code fake_agent_register(fake_agent *f, const char *scheduler, const char *name,
                                     uint32_t version, uint64_t *device_id, char *details,
                                     size_t len) {
  rpc_channel *ch = NULL;
  err e = {0};
  if (rpc_channel_create(scheduler, NULL, &ch, &e) != ERR_OK) {
    snprintf(details, len, "%s", e.msg);
    return GRPC_STATUS_INTERNAL;
  }
  Edgedi__V1__RegisterAgentRequest req = EDGEDI__V1__REGISTER_AGENT_REQUEST__INIT;
  req.protocol_version = version ? version : EDGEDI_PROTOCOL_VERSION;
  req.name = (char *)(name ? name : f->name);
  req.address = f->address;
  req.cores = 1;
  req.arch = "test";
  req.threads = 1;
  ProtobufCMessage *reply = NULL;
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  rpc_call_unary(ch, "/edgedi.v1.Scheduler/RegisterAgent", &req.base,
                 &edgedi__v1__register_agent_reply__descriptor, FAKE_REGISTER_DEADLINE_MS, &reply,
                 &st, &e);
  snprintf(details, len, "%s", st == GRPC_STATUS_OK ? "" : e.msg);
  if (reply && device_id) *device_id = ((Edgedi__V1__RegisterAgentReply *)reply)->device_id;
  rpc_free(reply);
  rpc_channel_destroy(ch);
  return st;
}

void fake_agent_hold(fake_agent *f, bool hold) {
  pthread_mutex_lock(&f->mu);
  f->hold = hold;
  pthread_mutex_unlock(&f->mu);
}

void fake_agent_garble(fake_agent *f, unsigned what) {
  pthread_mutex_lock(&f->mu);
  f->garble = what;
  pthread_mutex_unlock(&f->mu);
}

void fake_agent_set_speed(fake_agent *f, double speed) {
  pthread_mutex_lock(&f->mu);
  f->speed = speed > 0 ? speed : 1.0;
  pthread_mutex_unlock(&f->mu);
}

void fake_agent_die_at(fake_agent *f, fake_agent_phase phase, int nth) {
  pthread_mutex_lock(&f->mu);
  f->die_armed = nth > 0;
  f->die_phase = phase;
  f->die_left = nth;
  pthread_mutex_unlock(&f->mu);
}

bool fake_agent_dead(fake_agent *f) {
  pthread_mutex_lock(&f->mu);
  bool dead = f->killed || f->dying;
  pthread_mutex_unlock(&f->mu);
  return dead;
}

int fake_agent_jobs_seen(fake_agent *f) {
  pthread_mutex_lock(&f->mu);
  int n = f->jobs_seen;
  pthread_mutex_unlock(&f->mu);
  return n;
}

int fake_agent_streams(fake_agent *f) {
  pthread_mutex_lock(&f->mu);
  int n = f->streams;
  pthread_mutex_unlock(&f->mu);
  return n;
}

void fake_agent_kill(fake_agent *f) {
  pthread_mutex_lock(&f->mu);
  bool was = f->killed;
  f->killed = true;
  pthread_mutex_unlock(&f->mu);
  if (!was && f->srv) rpc_server_destroy(f->srv, 0);
}

void fake_agent_destroy(fake_agent *f) {
  if (!f) return;
  pthread_mutex_lock(&f->mu);
  bool joined = f->killer_started;
  f->killer_started = false;
  pthread_mutex_unlock(&f->mu);
  if (joined) pthread_join(f->killer, NULL);
  fake_agent_kill(f);
  for (int i = 0; i < f->n_models; i++) model_destroy(f->models[i]);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

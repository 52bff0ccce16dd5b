/* agent_profile.c — the Agent service's Profile: calibration jobs for the
 * scheduler's per-device cost model (contract in agent.h).
 *
 * The calibration jobs are real TileJobs run by a tile engine of their own,
 * not a separate timing loop: the engine's speed emulation, strip cache and
 * compute_ms are exactly what a request's tiles get, so a cost model
 * fitted from a profile predicts tiles. Each size is run once untimed
 * first, because a request's repeated plan finds its strip prepared too.
 *
 * The jobs feed a gray uint8 strip (replicated to the model's channels by
 * preprocess_rows(), before the timed part of a job) of fixed pseudo-random
 * pixels; the weights are fixed pseudo-random too, so no run meets zeros or
 * denormals that would make it faster or slower than real data.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/agent_internal.h"
#include "runtime/fuse.h"

#define CAL_DIGEST "calibration"

/* A fixed generator: the same model on every agent and every start. */
static uint32_t lcg(uint32_t *state) {
  *state = *state * 1664525u + 1013904223u;
  return *state >> 8;
}

static err_code build_model(model **out, err *e) {
  model_shape in = {AGENT_CAL_HEIGHT_PX, AGENT_CAL_WIDTH_PX, AGENT_CAL_CHANNELS};
  model *m = model_create("calibration", in);
  if (!m) return err_set(e, ERR_NOMEM, "agent: out of memory for the calibration model");
  uint32_t seed = 12345;
  int l = MODEL_INPUT;
  for (int i = 0; i < AGENT_CAL_CONV_LAYERS && l != MODEL_ADD_FAILED; i++) {
    l = model_add_conv(m, l, AGENT_CAL_CHANNELS, 3, 1, 1, 1, false, e);
    if (l == MODEL_ADD_FAILED) break;
    model_layer *L = &m->layers[l];
    /* He-like scale: activations keep their magnitude through the layers. */
    float scale = sqrtf(6.0f / (9.0f * AGENT_CAL_CHANNELS));
    for (size_t k = 0; k < L->n_weights; k++)
      L->weights[k] = scale * ((float)(lcg(&seed) & 0xffff) / 32768.0f - 1.0f);
    l = model_add_relu(m, l, e);
  }
  err_code rc = l == MODEL_ADD_FAILED ? e->code : model_finalize(m, e);
  if (rc == ERR_OK) rc = fuse_model(m, out, e);
  model_destroy(m);
  return rc;
}

/* GFLOP of a strip of n output rows, centred (a middle strip computes a
 * halo on both sides, as most of a request's strips do). */
static model_rows strip_rows(int n) {
  model_rows r = {(AGENT_CAL_HEIGHT_PX - n) / 2, 0};
  r.hi = r.lo + n;
  return r;
}

static err_code fill_gflop_table(agent *a, err *e) {
  const model *m = a->cal_model;
  a->cal_gflop = calloc(AGENT_CAL_HEIGHT_PX + 1, sizeof *a->cal_gflop);
  model_rows *rows = calloc((size_t)m->n_layers, sizeof *rows);
  if (!a->cal_gflop || !rows) {
    free(rows);
    return err_set(e, ERR_NOMEM, "agent: out of memory for the calibration table");
  }
  err_code rc = ERR_OK;
  for (int n = 1; n <= AGENT_CAL_HEIGHT_PX && rc == ERR_OK; n++) {
    model_rows in;
    rc = model_strip_rows(m, 0, m->n_layers, strip_rows(n), rows, &in, e);
    double flops = 0;
    for (int l = 0; l < m->n_layers; l++)
      flops += m->layers[l].flops * (rows[l].hi - rows[l].lo) / m->layers[l].out.h;
    a->cal_gflop[n] = flops / 1e9;
  }
  free(rows);
  return rc;
}

err_code agent_profile_init(agent *a, err *e) {
  err_code rc = build_model(&a->cal_model, e);
  if (rc == ERR_OK) rc = fill_gflop_table(a, e);
  if (rc == ERR_OK) {
    size_t n = (size_t)AGENT_CAL_HEIGHT_PX * AGENT_CAL_WIDTH_PX;
    a->cal_pixels = malloc(n);
    if (!a->cal_pixels) return err_set(e, ERR_NOMEM, "agent: out of memory for pixels");
    uint32_t seed = 777;
    for (size_t i = 0; i < n; i++) a->cal_pixels[i] = (unsigned char)lcg(&seed);
  }
  tile_options to = tile_default_options();
  to.speed = a->o.speed;
  to.gate = a->o.gate;
  to.threads = a->o.threads;
  if (rc == ERR_OK) rc = tile_engine_create(&to, &a->cal_engine, e);
  if (rc == ERR_OK)
    rc = tile_engine_add_model(a->cal_engine, CAL_DIGEST, a->cal_model, a->o.threads, e);
  if (rc != ERR_OK) err_wrap(e, "calibration model");
  return rc;
}

void agent_profile_free(agent *a) {
  tile_engine_destroy(a->cal_engine); /* before the model it runs */
  model_destroy(a->cal_model);
  free(a->cal_gflop);
  free(a->cal_pixels);
  a->cal_engine = NULL;
  a->cal_model = NULL;
}

/* The row count whose strip comes closest to `gflop`. */
static int rows_for(const agent *a, double gflop) {
  int lo = 1, hi = AGENT_CAL_HEIGHT_PX;
  while (lo < hi) { /* first n with cal_gflop[n] >= gflop */
    int mid = lo + (hi - lo) / 2;
    if (a->cal_gflop[mid] >= gflop) hi = mid;
    else lo = mid + 1;
  }
  if (lo > 1 && gflop - a->cal_gflop[lo - 1] < a->cal_gflop[lo] - gflop) lo--;
  return lo;
}

/* Runs one calibration job of n output rows; fills *sample. */
static err_code run_job(agent *a, int n, Edgedi__V1__ProfileSample *sample,
                        err *e) {
  const model *m = a->cal_model;
  model_rows out = strip_rows(n), in;
  model_rows *rows = calloc((size_t)m->n_layers, sizeof *rows);
  if (!rows) return err_set(e, ERR_NOMEM, "agent: out of memory for a calibration job");
  err_code rc = model_strip_rows(m, 0, m->n_layers, out, rows, &in, e);
  free(rows);
  if (rc != ERR_OK) return rc;

  Edgedi__V1__RowRange ro = EDGEDI__V1__ROW_RANGE__INIT, ri = EDGEDI__V1__ROW_RANGE__INIT;
  ro.lo = (uint32_t)out.lo;
  ro.hi = (uint32_t)out.hi;
  ri.lo = (uint32_t)in.lo;
  ri.hi = (uint32_t)in.hi;
  Edgedi__V1__Image img = EDGEDI__V1__IMAGE__INIT;
  img.height = (uint32_t)(in.hi - in.lo);
  img.width = AGENT_CAL_WIDTH_PX;
  img.channels = 1;
  img.row_lo = (uint32_t)in.lo;
  img.full_height = AGENT_CAL_HEIGHT_PX;
  img.u8.data = a->cal_pixels + (size_t)in.lo * AGENT_CAL_WIDTH_PX;
  img.u8.len = (size_t)img.height * AGENT_CAL_WIDTH_PX;
  Edgedi__V1__TileJob job = EDGEDI__V1__TILE_JOB__INIT;
  job.request_id = ++a->cal_request;
  job.model_digest = CAL_DIGEST;
  job.first_layer = 0;
  job.end_layer = (uint32_t)m->n_layers;
  job.out_rows = &ro;
  job.in_rows = &ri;
  job.image = &img;
  job.last_job = true;
  Edgedi__V1__ExecuteIn msg = EDGEDI__V1__EXECUTE_IN__INIT;
  msg.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_JOB;
  msg.job = &job;

  tile_outbox box = {0};
  double speed = agent_speed(a);
  pthread_mutex_lock(&a->compute_mu);
  rc = tile_engine_set_speed(a->cal_engine, speed, e);
  if (rc == ERR_OK) rc = tile_engine_handle(a->cal_engine, &msg, &box, e);
  pthread_mutex_unlock(&a->compute_mu);
  bool got = false;
  for (int i = 0; rc == ERR_OK && i < box.n; i++) {
    Edgedi__V1__ExecuteOut *o =
        edgedi__v1__execute_out__unpack(NULL, box.msgs[i].len, box.msgs[i].data);
    if (!o) {
      rc = err_set(e, ERR_INTERNAL, "a calibration job's output does not decode");
    } else if (o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_ERROR) {
      rc = err_set(e, ERR_INTERNAL, "calibration job of %d rows failed: %s", n,
                   o->error->message);
    } else if (o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT) {
      sample->gflop = o->result->gflop;
      sample->ms = o->result->compute_ms;
      sample->cpu_ms = o->result->cpu_ms;
      got = true;
    }
    if (o) edgedi__v1__execute_out__free_unpacked(o, NULL);
  }
  tile_outbox_free(&box);
  if (rc == ERR_OK && !got)
    rc = err_set(e, ERR_INTERNAL, "calibration job of %d rows gave no result", n);
  return rc;
}

/* Checks the request; fills sizes (n_sizes) and repeats. */
static grpc_status_code check_request(const Edgedi__V1__ProfileRequest *r,
                                      double *sizes, size_t *n_sizes,
                                      uint32_t *repeats, char *details,
                                      size_t details_len) {
  static const double defaults[] = AGENT_PROFILE_DEFAULT_GFLOP;
  if (r->n_gflop > AGENT_PROFILE_MAX_SIZES) {
    snprintf(details, details_len, "Profile asks for %zu sizes, at most %d",
             r->n_gflop, AGENT_PROFILE_MAX_SIZES);
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  *n_sizes = r->n_gflop ? r->n_gflop : sizeof defaults / sizeof defaults[0];
  for (size_t i = 0; i < *n_sizes; i++) {
    sizes[i] = r->n_gflop ? r->gflop[i] : defaults[i];
    if (!(sizes[i] > 0 && sizes[i] <= AGENT_PROFILE_MAX_GFLOP)) {
      snprintf(details, details_len,
               "Profile size %g GFLOP is not in (0, %g]", sizes[i],
               AGENT_PROFILE_MAX_GFLOP);
      return GRPC_STATUS_INVALID_ARGUMENT;
    }
  }
  *repeats = r->repeats ? r->repeats : AGENT_PROFILE_DEFAULT_REPEATS;
  if (*repeats > AGENT_PROFILE_MAX_REPEATS) {
    snprintf(details, details_len, "Profile asks for %u repeats, at most %d",
             *repeats, AGENT_PROFILE_MAX_REPEATS);
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  double total = 0;
  for (size_t i = 0; i < *n_sizes; i++) total += sizes[i] * (*repeats + 1);
  if (total > AGENT_PROFILE_MAX_TOTAL_GFLOP) {
    snprintf(details, details_len,
             "Profile would compute %.1f GFLOP (warm-ups included), more "
             "than the %g GFLOP limit",
             total, AGENT_PROFILE_MAX_TOTAL_GFLOP);
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  return GRPC_STATUS_OK;
}

grpc_status_code agent_on_profile(void *ctx, const ProtobufCMessage *req,
                                  rpc_reply *reply, char *details,
                                  size_t details_len) {
  agent *a = ctx;
  const Edgedi__V1__ProfileRequest *r = (const Edgedi__V1__ProfileRequest *)req;
  double sizes[AGENT_PROFILE_MAX_SIZES];
  size_t n_sizes = 0;
  uint32_t repeats = 0;
  grpc_status_code st = check_request(r, sizes, &n_sizes, &repeats, details, details_len);
  if (st != GRPC_STATUS_OK) return st;

  size_t n_samples = n_sizes * repeats;
  Edgedi__V1__ProfileSample *samples = calloc(n_samples, sizeof *samples);
  Edgedi__V1__ProfileSample **ptrs = calloc(n_samples, sizeof *ptrs);
  err e = {0};
  err_code rc = samples && ptrs ? ERR_OK
                                : err_set(&e, ERR_NOMEM, "agent: out of memory for samples");
  pthread_mutex_lock(&a->profile_mu);
  for (size_t i = 0; i < n_sizes && rc == ERR_OK; i++) {
    int n = rows_for(a, sizes[i]);
    Edgedi__V1__ProfileSample warm = EDGEDI__V1__PROFILE_SAMPLE__INIT;
    rc = run_job(a, n, &warm, &e);
    for (uint32_t k = 0; k < repeats && rc == ERR_OK; k++) {
      size_t j = i * repeats + k;
      edgedi__v1__profile_sample__init(&samples[j]);
      ptrs[j] = &samples[j];
      rc = run_job(a, n, &samples[j], &e);
    }
  }
  pthread_mutex_unlock(&a->profile_mu);
  if (rc == ERR_OK) {
    Edgedi__V1__ProfileReply pr = EDGEDI__V1__PROFILE_REPLY__INIT;
    pr.n_samples = n_samples;
    pr.samples = ptrs;
    pr.threads = (uint32_t)a->o.threads;
    rc = rpc_reply_set(reply, &pr.base, &e);
  }
  free(samples);
  free(ptrs);
  if (rc != ERR_OK) {
    agent_log(a, AGENT_LOG_ERROR, "profile: %s", e.msg);
    snprintf(details, details_len, "%s", e.msg);
    return rpc_status_from_err(rc);
  }
  agent_log(a, AGENT_LOG_INFO, "profile: %zu sizes x %u runs done", n_sizes, repeats);
  return GRPC_STATUS_OK;
}

/* tile.c — the tile engine's message side (contract in tile.h): the model
 * registry, requests and their jobs, assembling each job's input from the
 * image, relayed rows and the agent's own kept rows. Running a job and what
 * it sends live in tile_run.c.
 *
 * Every message is checked against the model before it touches memory:
 * row numbers, widths, channels and byte counts come from the network, so
 * each is compared with the tensor it claims to belong to, and an oversized
 * number fails as a TileError, never as an allocation or a copy.
 */
#include <grpc/status.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/preprocess.h"
#include "runtime/rowcodec.h"
#include "runtime/stats.h"
#include "runtime/tile_internal.h"

tile_options tile_default_options(void) {
  tile_options o = {
      .speed = 1.0,
      .threads = 1,
      .strip_cache_bytes = TILE_DEFAULT_STRIP_CACHE_BYTES,
      .pending_bytes = TILE_DEFAULT_PENDING_BYTES,
  };
  return o;
}

uint32_t tile_grpc_status(err_code code) {
  switch (code) {
    case ERR_OK: return GRPC_STATUS_OK;
    case ERR_INVALID:
    case ERR_SHAPE: return GRPC_STATUS_INVALID_ARGUMENT;
    case ERR_RANGE: return GRPC_STATUS_OUT_OF_RANGE;
    case ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case ERR_CORRUPT: return GRPC_STATUS_DATA_LOSS;
    case ERR_UNSUPPORTED: return GRPC_STATUS_UNIMPLEMENTED;
    case ERR_NOT_FOUND: return GRPC_STATUS_NOT_FOUND;
    case ERR_UNAVAILABLE:
    case ERR_IO: return GRPC_STATUS_UNAVAILABLE;
    case ERR_DEADLINE: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case ERR_BACKEND:
    case ERR_INTERNAL: return GRPC_STATUS_INTERNAL;
  }
  return GRPC_STATUS_UNKNOWN;
}

double tile_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double tile_cpu_ms(void) { return stats_thread_cpu_ms(); }

/* ---- outbox --------------------------------------------------------------- */

void tile_outbox_clear(tile_outbox *o) {
  if (!o) return;
  for (int i = 0; i < o->n; i++) free(o->msgs[i].data);
  for (int i = 0; i < o->n_loop; i++) free(o->loop[i].data);
  o->n = o->n_loop = 0;
}

void tile_outbox_free(tile_outbox *o) {
  if (!o) return;
  tile_outbox_clear(o);
  free(o->msgs);
  free(o->loop);
  o->msgs = o->loop = NULL;
  o->cap = o->cap_loop = 0;
}

/* Packs m onto the end of msgs[0..*n), growing it (capacity *cap). */
static err_code outbox_append(tile_msg **msgs, int *n, int *cap, const ProtobufCMessage *m,
                              err *e) {
  if (*n == *cap) {
    int grown = *cap ? 2 * *cap : 16;
    tile_msg *g = realloc(*msgs, (size_t)grown * sizeof *g);
    if (!g) return err_set(e, ERR_NOMEM, "tile: out of memory for the outbox");
    *msgs = g;
    *cap = grown;
  }
  size_t len = protobuf_c_message_get_packed_size(m);
  uint8_t *data = malloc(len ? len : 1);
  if (!data) return err_set(e, ERR_NOMEM, "tile: out of memory for a %zu-byte message", len);
  protobuf_c_message_pack(m, data);
  (*msgs)[*n] = (tile_msg){.data = data, .len = len};
  ++*n;
  return ERR_OK;
}

err_code tile_push(tile_outbox *o, const Edgedi__V1__ExecuteOut *m, err *e) {
  return outbox_append(&o->msgs, &o->n, &o->cap, &m->base, e);
}

err_code tile_push_loop(tile_outbox *o, const Edgedi__V1__ExecuteIn *m, err *e) {
  return outbox_append(&o->loop, &o->n_loop, &o->cap_loop, &m->base, e);
}

err_code tile_push_resume(tile_outbox *o, uint64_t request, uint32_t segment, err *e) {
  Edgedi__V1__Resume rs = EDGEDI__V1__RESUME__INIT;
  rs.request_id = request;
  rs.segment = segment;
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_RESUME;
  in.resume = &rs;
  return tile_push_loop(o, &in, e);
}

/* ---- engine and models ---------------------------------------------------- */

err_code tile_engine_create(const tile_options *o, tile_engine **out, err *e) {
  if (!out) return err_set(e, ERR_INVALID, "tile_engine_create without output");
  *out = NULL;
  tile_options opt = o ? *o : tile_default_options();
  if (!(opt.speed > 0) || opt.speed > 1e9)
    return err_set(e, ERR_INVALID, "tile: speed %g is not a positive factor", opt.speed);
  tile_engine *t = calloc(1, sizeof *t);
  if (!t) return err_set(e, ERR_NOMEM, "tile: out of memory for an engine");
  t->o = opt;
  *out = t;
  return ERR_OK;
}

err_code tile_engine_set_speed(tile_engine *t, double speed, err *e) {
  if (!t) return err_set(e, ERR_INVALID, "tile_engine_set_speed without an engine");
  if (!(speed > 0) || speed > 1e9)
    return err_set(e, ERR_INVALID, "tile: speed %g is not a positive factor", speed);
  t->o.speed = speed;
  return ERR_OK;
}

double tile_engine_speed(const tile_engine *t) { return t ? t->o.speed : 0; }

static void job_free(tile_job *job) {
  free(job->output);
  free(job->input);
  free(job->have);
  free(job->exports);
  free(job->spans);
}

static void request_free(tile_engine *t, tile_request *r) {
  for (int j = 0; j < r->n_jobs; j++) {
    tile_slot_release(t, &r->jobs[j]);
    job_free(&r->jobs[j]);
  }
  for (int b = 0; b < r->n_blocks; b++) free(r->blocks[b].data);
  free(r->jobs);
  free(r->blocks);
  free(r);
}

void tile_engine_destroy(tile_engine *t) {
  if (!t) return;
  for (int i = 0; i < t->n_reqs; i++) request_free(t, t->reqs[i]);
  free(t->reqs);
  tile_slots_destroy(t); /* strips before their executors */
  for (int i = 0; i < t->n_models; i++) {
    xexec_destroy(t->models[i]->x);
    free(t->models[i]->digest);
    free(t->models[i]);
  }
  free(t->models);
  free(t);
}

static tile_model *model_find(tile_engine *t, const char *digest) {
  for (int i = 0; i < t->n_models; i++)
    if (strcmp(t->models[i]->digest, digest) == 0) return t->models[i];
  return NULL;
}

err_code tile_engine_add_model(tile_engine *t, const char *digest,
                               const model *m, int threads, err *e) {
  if (!t || !digest || !*digest || !m)
    return err_set(e, ERR_INVALID, "tile_engine_add_model needs an engine, a digest and a model");
  tile_model *have = model_find(t, digest);
  if (have) {
    if (have->m == m) return ERR_OK;
    return err_set(e, ERR_INVALID, "tile: digest %s already names another model", digest);
  }
  if (t->n_models == t->cap_models) {
    int cap = t->cap_models ? 2 * t->cap_models : 4;
    tile_model **ms = realloc(t->models, (size_t)cap * sizeof *ms);
    if (!ms) return err_set(e, ERR_NOMEM, "tile: out of memory for a model");
    t->models = ms;
    t->cap_models = cap;
  }
  tile_model *tm = calloc(1, sizeof *tm);
  if (tm) tm->digest = strdup(digest);
  if (!tm || !tm->digest) {
    free(tm);
    return err_set(e, ERR_NOMEM, "tile: out of memory for a model");
  }
  tm->m = m;
  /* Bounds of any real tensor, to refuse absurd rows before allocating. */
  tm->max_h = m->input.h;
  tm->max_row_floats = (size_t)m->input.w * (size_t)m->input.c;
  for (int l = 0; l < m->n_layers; l++) {
    model_shape s = m->layers[l].out;
    if (s.h > tm->max_h) tm->max_h = s.h;
    if ((size_t)s.w * (size_t)s.c > tm->max_row_floats)
      tm->max_row_floats = (size_t)s.w * (size_t)s.c;
  }
  /* An emulated board runs the kernels a board has: XNNPACK (NEON on the
   * Pis), not this host's OpenBLAS, so that speed S means S times this
   * core running what the board would run. */
  xexec_conv conv = t->o.speed < 1.0 ? XEXEC_CONV_XNNPACK : XEXEC_CONV_AUTO;
  err_code rc = conv == XEXEC_CONV_AUTO ? xexec_create(m, threads, &tm->x, e)
                                        : xexec_create_ex(m, threads, conv, &tm->x, e);
  if (rc != ERR_OK) {
    free(tm->digest);
    free(tm);
    return err_wrap(e, "tile: model %s", digest);
  }
  t->models[t->n_models] = tm;
  t->n_models++;
  return ERR_OK;
}

/* ---- requests -------------------------------------------------------------- */

static tile_request *request_find(tile_engine *t, uint64_t id) {
  for (int i = 0; i < t->n_reqs; i++)
    if (t->reqs[i]->id == id) return t->reqs[i];
  return NULL;
}

static tile_request *request_new(tile_engine *t, uint64_t id, const tile_model *tm) {
  if (t->n_reqs == t->cap_reqs) {
    int cap = t->cap_reqs ? 2 * t->cap_reqs : 8;
    tile_request **rs = realloc(t->reqs, (size_t)cap * sizeof *rs);
    if (!rs) return NULL;
    t->reqs = rs;
    t->cap_reqs = cap;
  }
  tile_request *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->id = id;
  r->model = tm;
  t->reqs[t->n_reqs++] = r;
  return r;
}

static bool request_dropped(const tile_engine *t, uint64_t id) {
  for (int i = 0; i < t->n_dropped; i++)
    if (t->dropped[i] == id) return true;
  return false;
}

static void remember_dropped(tile_engine *t, uint64_t id) {
  if (request_dropped(t, id)) return;
  t->dropped[t->next_dropped] = id;
  t->next_dropped = (t->next_dropped + 1) % TILE_DROPPED_MEMORY;
  if (t->n_dropped < TILE_DROPPED_MEMORY) t->n_dropped++;
}

static void request_drop(tile_engine *t, tile_request *r) {
  for (int i = 0; i < t->n_reqs; i++)
    if (t->reqs[i] == r) {
      memmove(&t->reqs[i], &t->reqs[i + 1], (size_t)(t->n_reqs - i - 1) * sizeof *t->reqs);
      t->n_reqs--;
      break;
    }
  request_free(t, r);
}

void tile_maybe_finish(tile_engine *t, tile_request *r) {
  bool last = false;
  for (int j = 0; j < r->n_jobs; j++) {
    if (r->jobs[j].state != TILE_JOB_DONE) return;
    last |= r->jobs[j].last_job;
  }
  if (last) request_drop(t, r);
}

static err_code send_error(tile_engine *t, uint64_t request, uint32_t segment,
                           err_code code, const char *msg, tile_outbox *out, err *e) {
  Edgedi__V1__TileError te = EDGEDI__V1__TILE_ERROR__INIT;
  te.request_id = request;
  te.segment = segment;
  te.code = tile_grpc_status(code == ERR_OK ? ERR_INTERNAL : code);
  te.message = (char *)msg;
  Edgedi__V1__ExecuteOut o = EDGEDI__V1__EXECUTE_OUT__INIT;
  o.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_ERROR;
  o.error = &te;
  t->stats.errors_sent++;
  return tile_push(out, &o, e);
}

err_code tile_fail(tile_engine *t, uint64_t request, uint32_t segment,
                   err_code code, const char *msg, tile_outbox *out, err *e) {
  tile_request *r = request_find(t, request);
  if (r) request_drop(t, r);
  /* The scheduler fails the whole request on this error; whatever of it is
   * still in flight is then noise, not news. */
  remember_dropped(t, request);
  return send_error(t, request, segment, code, msg, out, e);
}

static int rows_count(model_rows r) { return r.hi > r.lo ? r.hi - r.lo : 0; }

/* A wire number as an int, or -1 when it cannot be one. */
static int wire_int(uint32_t v) { return v > INT_MAX ? -1 : (int)v; }

/* ---- input assembly --------------------------------------------------------- */

/* Copies the rows of b the job needs into its input. */
static err_code deposit(tile_job *job, const tile_block *b, err *pe) {
  if (b->width != job->in_w || b->channels != job->in_c)
    return err_set(pe, ERR_SHAPE,
                   "rows of segment %u are %d wide with %d channels; segment "
                   "%u's input is %d wide with %d",
                   b->segment, b->width, b->channels, job->segment, job->in_w,
                   job->in_c);
  model_rows r = b->rows;
  if (b->own) {
    /* The kept strip covers this agent's old rows; the new strip may need
     * only some of them. */
    if (r.lo < job->in.lo) r.lo = job->in.lo;
    if (r.hi > job->in.hi) r.hi = job->in.hi;
    if (r.lo >= r.hi) return ERR_OK;
  } else if (r.lo < job->in.lo || r.hi > job->in.hi) {
    return err_set(pe, ERR_RANGE,
                   "rows [%d, %d) of segment %u's output are not input rows "
                   "[%d, %d) of the job of segment %u",
                   r.lo, r.hi, b->segment, job->in.lo, job->in.hi, job->segment);
  }
  for (int y = r.lo; y < r.hi; y++)
    if (job->have[y - job->in.lo])
      return err_set(pe, ERR_INVALID, "row %d of segment %u's output arrived twice",
                     y, b->segment);
  size_t row_floats = (size_t)job->in_w * (size_t)job->in_c;
  memcpy(job->input + (size_t)(r.lo - job->in.lo) * row_floats,
         b->data + (size_t)(r.lo - b->rows.lo) * row_floats,
         (size_t)rows_count(r) * row_floats * sizeof(float));
  memset(job->have + (r.lo - job->in.lo), 1, (size_t)rows_count(r));
  job->n_have += rows_count(r);
  if (!b->own) job->bytes_in += b->wire_bytes; /* what the link carried */
  return ERR_OK;
}

static tile_job *job_of_segment(tile_request *r, uint32_t segment) {
  for (int j = 0; j < r->n_jobs; j++)
    if (r->jobs[j].segment == segment) return &r->jobs[j];
  return NULL;
}

err_code tile_deliver(tile_engine *t, tile_request *r, tile_block *b, err *pe) {
  tile_job *job = b->segment < UINT32_MAX ? job_of_segment(r, b->segment + 1) : NULL;
  err_code rc = ERR_OK;
  if (job) {
    if (job->state != TILE_JOB_WAITING)
      rc = err_set(pe, ERR_INVALID,
                   "rows of segment %u arrived after the job of segment %u ran",
                   b->segment, job->segment);
    else
      rc = deposit(job, b, pe);
    free(b->data);
    b->data = NULL;
    return rc;
  }
  size_t bytes = (size_t)rows_count(b->rows) * (size_t)b->width *
                 (size_t)b->channels * sizeof(float);
  if (!b->own && r->pending_bytes + bytes > t->o.pending_bytes)
    rc = err_set(pe, ERR_NOMEM,
                 "more than %zu bytes of rows arrived before their jobs",
                 t->o.pending_bytes);
  if (rc == ERR_OK && r->n_blocks == r->cap_blocks) {
    int cap = r->cap_blocks ? 2 * r->cap_blocks : 8;
    tile_block *bs = realloc(r->blocks, (size_t)cap * sizeof *bs);
    if (!bs) rc = err_set(pe, ERR_NOMEM, "tile: out of memory for waiting rows");
    else {
      r->blocks = bs;
      r->cap_blocks = cap;
    }
  }
  if (rc != ERR_OK) {
    free(b->data);
    b->data = NULL;
    return rc;
  }
  r->blocks[r->n_blocks++] = *b;
  if (!b->own) {
    r->pending_bytes += bytes;
    t->stats.rows_before_job++;
  }
  b->data = NULL;
  return ERR_OK;
}

/* Moves the rows that waited for `job` into it. */
static err_code take_blocks(tile_request *r, tile_job *job, err *pe) {
  if (job->segment == 0) return ERR_OK;
  err_code rc = ERR_OK;
  int k = 0;
  for (int b = 0; b < r->n_blocks; b++) {
    tile_block *blk = &r->blocks[b];
    if (blk->segment != job->segment - 1) {
      r->blocks[k++] = *blk;
      continue;
    }
    if (rc == ERR_OK) rc = deposit(job, blk, pe);
    size_t bytes = (size_t)rows_count(blk->rows) * (size_t)blk->width *
                   (size_t)blk->channels * sizeof(float);
    if (!blk->own) r->pending_bytes -= bytes;
    free(blk->data);
  }
  r->n_blocks = k;
  return rc;
}

/* ---- jobs -------------------------------------------------------------------- */

static err_code image_of(const Edgedi__V1__Image *im, preprocess_image *pi, err *pe) {
  bool u8 = im->u8.len > 0, f32 = im->f32.len > 0;
  if (u8 == f32)
    return err_set(pe, ERR_INVALID, "the image must carry exactly one of u8 and f32");
  memset(pi, 0, sizeof *pi);
  pi->format = u8 ? PREPROCESS_U8 : PREPROCESS_F32;
  pi->data = u8 ? im->u8.data : im->f32.data;
  pi->bytes = u8 ? im->u8.len : im->f32.len;
  pi->width = wire_int(im->width);
  pi->channels = wire_int(im->channels);
  pi->row_lo = wire_int(im->row_lo);
  pi->rows = wire_int(im->height);
  pi->full_height = wire_int(im->full_height ? im->full_height : im->height);
  return ERR_OK;
}

/* Checks a TileJob against the model and fills what the job needs to run
 * (not its buffers). */
static err_code job_check(const model *m, const Edgedi__V1__TileJob *jm,
                          tile_job *job, err *pe) {
  if (!jm->out_rows || !jm->in_rows)
    return err_set(pe, ERR_INVALID, "job of segment %u without out_rows or in_rows",
                   jm->segment);
  int first = wire_int(jm->first_layer), end = wire_int(jm->end_layer);
  if (first < 0 || end < 0 || end > m->n_layers)
    return err_set(pe, ERR_RANGE, "job layers [%u, %u) are not layers of %s (%d)",
                   jm->first_layer, jm->end_layer, m->name, m->n_layers);
  err_code rc = model_check_range(m, first, end, pe);
  if (rc != ERR_OK) return rc;
  if (jm->segment >= (uint32_t)m->n_layers)
    return err_set(pe, ERR_RANGE, "segment %u of a %d-layer model", jm->segment,
                   m->n_layers);
  if (first > 0 && jm->segment == 0)
    return err_set(pe, ERR_INVALID, "segment 0 starts at layer %d, not at the input", first);
  model_shape os = m->layers[end - 1].out, is = model_tensor_shape(m, first - 1);
  model_rows out = {wire_int(jm->out_rows->lo), wire_int(jm->out_rows->hi)};
  if (out.lo < 0 || out.hi > os.h || out.lo >= out.hi)
    return err_set(pe, ERR_RANGE, "output rows [%u, %u) of layer %d, which has %d",
                   jm->out_rows->lo, jm->out_rows->hi, end - 1, os.h);
  model_rows *rows = malloc((size_t)m->n_layers * sizeof *rows);
  if (!rows) return err_set(pe, ERR_NOMEM, "tile: out of memory checking a job");
  model_rows in;
  rc = model_strip_rows(m, first, end, out, rows, &in, pe);
  double flops = 0;
  for (int l = first; rc == ERR_OK && l < end; l++) {
    int h = m->layers[l].out.h;
    flops += m->layers[l].flops * rows_count(rows[l]) / (h > 0 ? h : 1);
  }
  free(rows);
  if (rc != ERR_OK) return rc;
  if (jm->in_rows->lo != (uint32_t)in.lo || jm->in_rows->hi != (uint32_t)in.hi)
    return err_set(pe, ERR_INVALID,
                   "job of segment %u names input rows [%u, %u); output rows "
                   "[%d, %d) of layers [%d, %d) need [%d, %d)",
                   jm->segment, jm->in_rows->lo, jm->in_rows->hi, out.lo,
                   out.hi, first, end, in.lo, in.hi);
  if ((first == 0) != (jm->image != NULL))
    return err_set(pe, ERR_INVALID,
                   first == 0 ? "job of segment %u reads the image but carries none"
                              : "job of segment %u carries an image it does not read",
                   jm->segment);
  for (size_t i = 0; i < jm->n_exports; i++) {
    const Edgedi__V1__RowExport *x = jm->exports[i];
    if (!x->rows || x->dest < 0 || wire_int(x->rows->lo) < out.lo ||
        wire_int(x->rows->hi) > out.hi || x->rows->lo >= x->rows->hi)
      return err_set(pe, ERR_RANGE,
                     "export %zu of segment %u is not a part of output rows "
                     "[%d, %d) for a device",
                     i, jm->segment, out.lo, out.hi);
  }
  memset(job, 0, sizeof *job);
  job->segment = jm->segment;
  job->first = first;
  job->end = end;
  job->out = out;
  job->in = in;
  job->in_w = is.w;
  job->in_c = is.c;
  job->out_w = os.w;
  job->out_c = os.c;
  job->send_output = jm->send_output;
  job->keep_output = jm->keep_output;
  job->last_job = jm->last_job;
  job->fe_local = jm->fe_local;
  job->fe_late = jm->fe_late;
  job->gflop = flops / 1e9;
  job->state = TILE_JOB_WAITING;
  return ERR_OK;
}

/* Allocates the job's buffers and fills what it already has. */
static err_code job_prepare(const model *m, const Edgedi__V1__TileJob *jm, bool whole_strips,
                            tile_job *job, err *pe) {
  size_t n_rows = (size_t)rows_count(job->in);
  job->input = malloc(n_rows * (size_t)job->in_w * (size_t)job->in_c * sizeof(float));
  job->have = calloc(n_rows, 1);
  job->exports = calloc(jm->n_exports + 1, sizeof *job->exports);
  if (!job->input || !job->have || !job->exports)
    return err_set(pe, ERR_NOMEM, "tile: out of memory for the input of segment %u",
                   job->segment);
  for (size_t i = 0; i < jm->n_exports; i++) {
    job->exports[i].dest = jm->exports[i]->dest;
    job->exports[i].rows.lo = (int)jm->exports[i]->rows->lo;
    job->exports[i].rows.hi = (int)jm->exports[i]->rows->hi;
  }
  job->n_exports = (int)jm->n_exports;
  tile_plan_parts(m, job, whole_strips);
  if (job->n_parts > 1) {
    job->output = malloc((size_t)rows_count(job->out) * (size_t)job->out_w *
                         (size_t)job->out_c * sizeof(float));
    if (!job->output)
      return err_set(pe, ERR_NOMEM, "tile: out of memory for the output of segment %u",
                     job->segment);
  }
  if (!jm->image) return ERR_OK;
  preprocess_image pi;
  err_code rc = image_of(jm->image, &pi, pe);
  if (rc == ERR_OK) rc = preprocess_rows(&pi, m->input, job->in, job->input, pe);
  if (rc != ERR_OK) return err_wrap(pe, "image of segment %u", job->segment);
  memset(job->have, 1, n_rows);
  job->n_have = (int)n_rows;
  job->bytes_in = pi.bytes;
  return ERR_OK;
}

static err_code handle_job(tile_engine *t, const Edgedi__V1__TileJob *jm,
                           double queued_ms, tile_outbox *out, err *e) {
  uint64_t id = jm->request_id;
  if (request_dropped(t, id)) return ERR_OK;
  err pe = {0};
  tile_request *r = request_find(t, id);
  const char *digest = jm->model_digest ? jm->model_digest : "";
  const tile_model *tm = r ? r->model : model_find(t, digest);
  if (!tm && t->o.find_model) {
    const model *m = t->o.find_model(t->o.find_model_ctx, digest);
    if (m && tile_engine_add_model(t, digest, m, t->o.threads, &pe) != ERR_OK)
      return tile_fail(t, id, jm->segment, pe.code, pe.msg, out, e);
    tm = model_find(t, digest);
  }
  if (!tm) {
    err_set(&pe, ERR_NOT_FOUND, "unknown model digest '%.64s'", digest);
    return tile_fail(t, id, jm->segment, pe.code, pe.msg, out, e);
  }
  if (strcmp(tm->digest, digest) != 0) {
    err_set(&pe, ERR_INVALID, "job of segment %u names model %.64s, the request's is %.64s",
            jm->segment, digest, tm->digest);
    return tile_fail(t, id, jm->segment, pe.code, pe.msg, out, e);
  }
  tile_job job = {0};
  err_code rc = job_check(tm->m, jm, &job, &pe);
  if (rc == ERR_OK && r && job_of_segment(r, jm->segment))
    rc = err_set(&pe, ERR_INVALID, "a second job for segment %u", jm->segment);
  if (rc == ERR_OK) rc = job_prepare(tm->m, jm, t->o.whole_strips, &job, &pe);
  if (rc == ERR_OK && !r && !(r = request_new(t, id, tm)))
    rc = err_set(&pe, ERR_NOMEM, "tile: out of memory for a request");
  if (rc == ERR_OK && r->n_jobs == r->cap_jobs) {
    int cap = r->cap_jobs ? 2 * r->cap_jobs : 4;
    tile_job *js = realloc(r->jobs, (size_t)cap * sizeof *js);
    if (!js) rc = err_set(&pe, ERR_NOMEM, "tile: out of memory for a job");
    else {
      r->jobs = js;
      r->cap_jobs = cap;
    }
  }
  if (rc != ERR_OK) {
    job_free(&job);
    return tile_fail(t, id, jm->segment, rc, pe.msg, out, e);
  }
  job.t_arrive_ms = tile_now_ms();
  job.queued_ms = queued_ms;
  r->jobs[r->n_jobs++] = job;
  rc = take_blocks(r, &r->jobs[r->n_jobs - 1], &pe);
  if (rc != ERR_OK) return tile_fail(t, id, jm->segment, rc, pe.msg, out, e);
  return ERR_OK;
}

/* ---- rows, scales, the rest ----------------------------------------------- */

static err_code handle_rows(tile_engine *t, const Edgedi__V1__RowsData *rd,
                            tile_outbox *out, err *e) {
  uint64_t id = rd->request_id;
  if (request_dropped(t, id)) return ERR_OK;
  err pe = {0};
  uint32_t next = rd->segment + 1;
  tile_request *r = request_find(t, id);
  if (!r) {
    err_set(&pe, ERR_NOT_FOUND, "rows of segment %u for request %llu, which this agent "
            "has no job of", rd->segment, (unsigned long long)id);
    return tile_fail(t, id, next, pe.code, pe.msg, out, e);
  }
  /* Bounds first: every later product of these numbers then fits. */
  const tile_model *tm = r->model;
  if (rd->row_lo > (uint32_t)tm->max_h || rd->rows == 0 ||
      rd->rows > (uint32_t)tm->max_h || rd->width == 0 || rd->channels == 0 ||
      (uint64_t)rd->width * rd->channels > (uint64_t)tm->max_row_floats)
    return tile_fail(t, id, next, ERR_RANGE,
                     "rows data of a shape no tensor of the model has", out, e);
  size_t n = (size_t)rd->rows * rd->width * rd->channels; /* bounded just above */
  tile_block b = {.segment = rd->segment,
                  .rows = {(int)rd->row_lo, (int)(rd->row_lo + rd->rows)},
                  .width = (int)rd->width,
                  .channels = (int)rd->channels,
                  .wire_bytes = rd->data.len};
  b.data = malloc(n * sizeof(float));
  if (!b.data) return tile_fail(t, id, next, ERR_NOMEM, "tile: out of memory for rows", out, e);
  /* Unpacking checks the packing first (rowcodec.h). */
  err_code rc = rowcodec_unpack((int)rd->encoding, rd->data.data, rd->data.len, b.data, n, &pe);
  if (rc != ERR_OK) {
    free(b.data);
    err_wrap(&pe, "rows data for %u rows of %u x %u floats", rd->rows, rd->width, rd->channels);
    return tile_fail(t, id, next, rc, pe.msg, out, e);
  }
  rc = tile_deliver(t, r, &b, &pe);
  if (rc != ERR_OK) return tile_fail(t, id, next, rc, pe.msg, out, e);
  return ERR_OK;
}

static err_code handle_fe_scale(tile_engine *t, const Edgedi__V1__FeScale *fs,
                                tile_outbox *out, err *e) {
  uint64_t id = fs->request_id;
  if (request_dropped(t, id)) return ERR_OK;
  err pe = {0};
  tile_request *r = request_find(t, id);
  tile_job *job = r ? job_of_segment(r, fs->segment) : NULL;
  bool paused = job && job->state == TILE_JOB_PAUSED;
  if (!job || !(paused || job->state == TILE_JOB_SUMS_OUT) ||
      (uint32_t)job->fe_layer != fs->layer) {
    err_set(&pe, ERR_INVALID,
            "a scale for layer %u of segment %u of request %llu, which is not "
            "waiting for one",
            fs->layer, fs->segment, (unsigned long long)id);
    return tile_fail(t, id, fs->segment, pe.code, pe.msg, out, e);
  }
  if (fs->n_scale != (size_t)job->fe_channels) {
    err_set(&pe, ERR_SHAPE, "a scale of %zu channels for layer %u, which has %d",
            fs->n_scale, fs->layer, job->fe_channels);
    return tile_fail(t, id, fs->segment, pe.code, pe.msg, out, e);
  }
  err_code rc = xexec_strip_set_fe_scale(job->slot->strip, fs->scale, &pe);
  if (rc != ERR_OK) return tile_fail(t, id, fs->segment, rc, pe.msg, out, e);
  /* Early sums: the job goes on at its Resume, scale in hand. */
  return paused ? tile_run_job(t, r, (int)(job - r->jobs), out, e) : ERR_OK;
}

/* A job that sent its early sums or ran a part goes on; any other just gets run_ready's
 * turn (it may have run since the Resume was queued: nothing to do). */
static err_code handle_resume(tile_engine *t, const Edgedi__V1__Resume *rs, tile_outbox *out,
                              err *e) {
  tile_request *r = request_find(t, rs->request_id);
  tile_job *job = r ? job_of_segment(r, rs->segment) : NULL;
  if (!job || (job->state != TILE_JOB_SUMS_OUT && job->state != TILE_JOB_PARTS)) return ERR_OK;
  return tile_run_job(t, r, (int)(job - r->jobs), out, e);
}

static err_code handle_ping(const Edgedi__V1__Ping *p, tile_outbox *out, err *e) {
  Edgedi__V1__Ping pong = EDGEDI__V1__PING__INIT;
  pong.seq = p->seq;
  size_t n = p->reply_bytes < TILE_MAX_PONG_BYTES ? p->reply_bytes : TILE_MAX_PONG_BYTES;
  uint8_t *payload = n ? calloc(n, 1) : NULL;
  if (n && !payload) return err_set(e, ERR_NOMEM, "tile: out of memory for a pong");
  pong.payload.data = payload;
  pong.payload.len = n;
  Edgedi__V1__ExecuteOut o = EDGEDI__V1__EXECUTE_OUT__INIT;
  o.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_PONG;
  o.pong = &pong;
  err_code rc = tile_push(out, &o, e);
  free(payload);
  return rc;
}

/* Runs a job whose input is complete. When the outbox already holds
 * messages (another job's rows, sums, result), a second ready job is not
 * run here but resumed (tile_outbox.loop): the shell sends what waits
 * first, so that a neighbour does not wait for this agent's next job to
 * end before it gets the rows it needs now (a job whose input is all its
 * own is ready the moment the one before it ends). A run may finish or drop
 * its request, so the scan starts over after each. */
static err_code run_ready(tile_engine *t, tile_outbox *out, err *e) {
  for (bool ran = true; ran;) {
    ran = false;
    for (int i = 0; i < t->n_reqs && !ran; i++) {
      tile_request *r = t->reqs[i];
      for (int j = 0; j < r->n_jobs; j++) {
        tile_job *job = &r->jobs[j];
        if (job->state != TILE_JOB_WAITING || job->n_have < rows_count(job->in)) continue;
        if (out->n > 0) return tile_push_resume(out, r->id, job->segment, e);
        err_code rc = tile_run_job(t, r, j, out, e);
        if (rc != ERR_OK) return rc;
        ran = true;
        break;
      }
    }
  }
  return ERR_OK;
}

err_code tile_engine_handle(tile_engine *t, const Edgedi__V1__ExecuteIn *in,
                            tile_outbox *out, err *e) {
  return tile_engine_handle_at(t, in, tile_now_ms(), out, e);
}

err_code tile_engine_handle_at(tile_engine *t, const Edgedi__V1__ExecuteIn *in,
                               double arrived_ms, tile_outbox *out, err *e) {
  if (!t || !in || !out)
    return err_set(e, ERR_INVALID, "tile_engine_handle needs an engine, a message and an outbox");
  double taken_ms = tile_now_ms();
  err_code rc = ERR_OK;
  switch (in->msg_case) {
    case EDGEDI__V1__EXECUTE_IN__MSG_HELLO:
      return ERR_OK;
    case EDGEDI__V1__EXECUTE_IN__MSG_PING:
      return handle_ping(in->ping, out, e);
    case EDGEDI__V1__EXECUTE_IN__MSG_JOB:
      rc = handle_job(t, in->job, taken_ms > arrived_ms ? taken_ms - arrived_ms : 0, out, e);
      break;
    case EDGEDI__V1__EXECUTE_IN__MSG_ROWS:
      rc = handle_rows(t, in->rows, out, e);
      break;
    case EDGEDI__V1__EXECUTE_IN__MSG_FE_SCALE:
      rc = handle_fe_scale(t, in->fe_scale, out, e);
      break;
    case EDGEDI__V1__EXECUTE_IN__MSG_RESUME:
      rc = handle_resume(t, in->resume, out, e);
      break;
    case EDGEDI__V1__EXECUTE_IN__MSG_RELEASE: {
      tile_request *r = request_find(t, in->release->request_id);
      if (r) request_drop(t, r);
      remember_dropped(t, in->release->request_id);
      return ERR_OK;
    }
    default:
      /* Belongs to no request: nothing to drop or remember. */
      return send_error(t, 0, 0, ERR_INVALID, "an ExecuteIn with no message", out, e);
  }
  if (rc != ERR_OK) return rc;
  return run_ready(t, out, e);
}

void tile_engine_stats(const tile_engine *t, tile_stats *s) {
  if (!s) return;
  memset(s, 0, sizeof *s);
  if (!t) return;
  *s = t->stats;
  s->requests = t->n_reqs;
  s->jobs_waiting = 0;
  for (int i = 0; i < t->n_reqs; i++)
    for (int j = 0; j < t->reqs[i]->n_jobs; j++)
      s->jobs_waiting += t->reqs[i]->jobs[j].state != TILE_JOB_DONE;
  s->cached_strips = t->n_slots;
  s->cached_strip_bytes = 0;
  for (int i = 0; i < t->n_slots; i++) s->cached_strip_bytes += t->slots[i]->bytes;
}

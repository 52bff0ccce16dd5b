/* tile_run.c — running the tile engine's jobs (contract in tile.h): the
 * strip cache, one stretch of a run between feature-enhancement pauses, the
 * speed emulation, and what a finished job sends.
 *
 * Strips are cached because preparing one (planning its rows, allocating
 * its buffers, binding XNNPACK operators) costs far more than a small
 * strip's run, and a cluster serving a stream of images repeats the same
 * plan. A strip is busy from the start of its job's run until the job ends:
 * a paused strip holds its place in the layer range, so a second request
 * with the same plan gets a strip of its own. Idle strips are evicted least
 * recently used first once the cache passes its byte budget.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/rowcodec.h"
#include "runtime/tile_internal.h"

/* Output rows travel as little-endian float32, sent straight from the
 * strip's buffer. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tile_run.c sends float32 rows in host order, which must be little-endian"
#endif

/* ---- the strip cache ------------------------------------------------------ */

static void slot_remove(tile_engine *t, int i) {
  xexec_strip_destroy(t->slots[i]->strip);
  free(t->slots[i]);
  memmove(&t->slots[i], &t->slots[i + 1], (size_t)(t->n_slots - i - 1) * sizeof *t->slots);
  t->n_slots--;
}

static void slots_trim(tile_engine *t) {
  size_t total = 0;
  for (int i = 0; i < t->n_slots; i++) total += t->slots[i]->bytes;
  while (total > t->o.strip_cache_bytes) {
    int lru = -1;
    for (int i = 0; i < t->n_slots; i++)
      if (!t->slots[i]->busy && (lru < 0 || t->slots[i]->last_used < t->slots[lru]->last_used))
        lru = i;
    if (lru < 0) return; /* everything left is in use */
    total -= t->slots[lru]->bytes;
    slot_remove(t, lru);
  }
}

/* A strip of the job's layers for output rows `rows` (the job's, or a
 * part's). */
static tile_slot *slot_acquire(tile_engine *t, const tile_model *tm,
                               tile_job *job, model_rows rows, err *pe) {
  for (int i = 0; i < t->n_slots; i++) {
    tile_slot *s = t->slots[i];
    if (!s->busy && s->model == tm && s->first == job->first && s->end == job->end &&
        s->out.lo == rows.lo && s->out.hi == rows.hi) {
      s->busy = true;
      t->stats.strips_reused++;
      return s;
    }
  }
  if (t->n_slots == t->cap_slots) {
    int cap = t->cap_slots ? 2 * t->cap_slots : 16;
    tile_slot **ss = realloc(t->slots, (size_t)cap * sizeof *ss);
    if (!ss) return err_set(pe, ERR_NOMEM, "tile: out of memory for a strip"), NULL;
    t->slots = ss;
    t->cap_slots = cap;
  }
  tile_slot *s = calloc(1, sizeof *s);
  if (!s) return err_set(pe, ERR_NOMEM, "tile: out of memory for a strip"), NULL;
  if (xexec_strip_create(tm->x, job->first, job->end, rows, &s->strip, pe) != ERR_OK) {
    free(s);
    return NULL;
  }
  s->model = tm;
  s->first = job->first;
  s->end = job->end;
  s->out = rows;
  s->busy = true;
  s->bytes = xexec_strip_bytes(s->strip);
  t->slots[t->n_slots++] = s;
  t->stats.strips_created++;
  job->fresh_strip = true;
  return s;
}

void tile_slot_release(tile_engine *t, tile_job *job) {
  tile_slot *s = job->slot;
  if (!s) return;
  job->slot = NULL;
  for (int i = 0; i < t->n_slots; i++) {
    if (t->slots[i] != s) continue;
    if (job->state == TILE_JOB_PAUSED || job->state == TILE_JOB_SUMS_OUT) {
      /* Abandoned mid-run: the strip would refuse to run again until it got
       * the scale it waits for. */
      slot_remove(t, i);
      return;
    }
    s->busy = false;
    s->last_used = ++t->tick;
    break;
  }
  slots_trim(t);
}

void tile_slots_destroy(tile_engine *t) {
  while (t->n_slots > 0) slot_remove(t, t->n_slots - 1);
  free(t->slots);
  t->slots = NULL;
  t->cap_slots = 0;
}

/* ---- running ------------------------------------------------------------- */

static void sleep_ms(double ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1e3),
                        .tv_nsec = (long)((ms - (double)(time_t)(ms / 1e3) * 1e3) * 1e6)};
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Books a compute stretch [t0, t1] on the job for its TileResult. Past
 * TILE_MAX_SPANS the last one grows to cover the rest; without memory the
 * stretch goes unlisted (the spans are a record, the run does not need
 * them). */
static void add_span(tile_job *job, double t0, double t1) {
  if (job->n_spans == TILE_MAX_SPANS) {
    job->spans[2 * job->n_spans - 1] = t1;
    return;
  }
  if (job->n_spans == job->cap_spans) {
    int cap = job->cap_spans ? 2 * job->cap_spans : 16;
    if (cap > TILE_MAX_SPANS) cap = TILE_MAX_SPANS;
    double *v = realloc(job->spans, (size_t)cap * 2 * sizeof *v);
    if (!v) return;
    job->spans = v;
    job->cap_spans = cap;
  }
  job->spans[2 * job->n_spans] = t0;
  job->spans[2 * job->n_spans + 1] = t1;
  job->n_spans++;
}

/* Ends one stretch of running: stretches it to cpu / speed when emulating a
 * slower device, and books its times on the job. */
static void stretch_end(const tile_engine *t, double wall0, double cpu0, tile_job *job) {
  double cpu = tile_cpu_ms() - cpu0;
  double wall = tile_now_ms() - wall0;
  if (t->o.speed < 1.0) {
    double target = cpu / t->o.speed;
    if (target > wall) {
      sleep_ms(target - wall);
      wall = tile_now_ms() - wall0;
    }
  }
  job->compute_ms += wall;
  job->cpu_ms += cpu;
  add_span(job, wall0, wall0 + wall);
}

/* Sends rows [rows.lo, rows.hi) of the job's output, zero-masked when that
 * is smaller (rowcodec.h). Packing is the device's work: stretched like a
 * burst, so a slower board packs slower. */
static err_code send_rows(const tile_engine *t, tile_job *job, uint64_t id, int dest,
                          model_rows rows, const float *output, tile_outbox *out, err *e) {
  size_t row_floats = (size_t)job->out_w * (size_t)job->out_c;
  const float *src = output + (size_t)(rows.lo - job->out.lo) * row_floats;
  size_t n = (size_t)(rows.hi - rows.lo) * row_floats;
  double wall0 = tile_now_ms(), cpu0 = tile_cpu_ms();
  uint8_t *packed = NULL;
  size_t packed_len = rowcodec_mask_size(src, n);
  if (packed_len < n * sizeof(float)) {
    packed = malloc(packed_len);
    if (packed) rowcodec_mask_pack(src, n, packed); /* no memory: sent raw */
  }
  stretch_end(t, wall0, cpu0, job);
  Edgedi__V1__RowsData rd = EDGEDI__V1__ROWS_DATA__INIT;
  rd.request_id = id;
  rd.segment = job->segment;
  rd.dest = dest;
  rd.row_lo = (uint32_t)rows.lo;
  rd.rows = (uint32_t)(rows.hi - rows.lo);
  rd.width = (uint32_t)job->out_w;
  rd.channels = (uint32_t)job->out_c;
  if (packed) {
    rd.encoding = EDGEDI__V1__ROWS_ENCODING__ROWS_ZERO_MASK;
    rd.data.data = packed;
    rd.data.len = packed_len;
  } else {
    rd.data.data = (uint8_t *)src;
    rd.data.len = n * sizeof(float);
  }
  Edgedi__V1__ExecuteOut o = EDGEDI__V1__EXECUTE_OUT__INIT;
  o.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_ROWS;
  o.rows = &rd;
  job->bytes_out += rd.data.len;
  err_code rc = tile_push(out, &o, e);
  free(packed);
  return rc;
}

static err_code send_fe_sums(const tile_job *job, uint64_t id, const xexec_fe_sums *fe,
                             tile_outbox *out, err *e) {
  Edgedi__V1__RowRange owned = EDGEDI__V1__ROW_RANGE__INIT;
  owned.lo = (uint32_t)fe->owned.lo;
  owned.hi = (uint32_t)fe->owned.hi;
  Edgedi__V1__FeSums fs = EDGEDI__V1__FE_SUMS__INIT;
  fs.request_id = id;
  fs.segment = job->segment;
  fs.layer = (uint32_t)fe->layer;
  fs.n_sums = fe->n_sums;
  fs.sums = (double *)fe->sums;
  fs.owned = &owned;
  fs.chain = (uint32_t)fe->chain;
  Edgedi__V1__ExecuteOut o = EDGEDI__V1__EXECUTE_OUT__INIT;
  o.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_FE_SUMS;
  o.fe_sums = &fs;
  return tile_push(out, &o, e);
}

/* Whether the job makes every FE scale of its strip itself, running it
 * through them in one go (xexec_strip_run_local): the scheduler said it is
 * alone in its segment (and so waits for no sums of it), and its strip owns
 * every row of each FE input, so its sums are the totals and the scales
 * bit for bit the scheduler's (model_fe_scale). Nothing leaves the board
 * at such an FE, so nothing waits for the emulated clock there. (Each FE
 * used to end a stretch, which an emulated board sleeps out and then
 * resumes with caches that other agents of this host had filled: vgg16c
 * whole on one board cost 68 ms of CPU in 14 stretches against 60 in
 * one.) A job that is told it is alone but owns less sends its sums. */
static bool runs_local(const model *m, const tile_job *job) {
  if (!job->fe_local || job->n_parts != 1) return false;
  for (int l = job->first; l < job->end; l++) {
    if (m->layers[l].op != MODEL_OP_FE) continue;
    model_rows owned;
    err e = {0};
    if (model_fe_owned_rows(m, job->first, job->end, job->out, l, &owned, &e) != ERR_OK)
      return false;
    if (owned.lo != 0 || owned.hi != model_tensor_shape(m, m->layers[l].inputs[0]).h)
      return false;
  }
  return true;
}

static err_code send_result(const tile_job *job, uint64_t id, tile_outbox *out, err *e) {
  Edgedi__V1__TileResult tr = EDGEDI__V1__TILE_RESULT__INIT;
  tr.request_id = id;
  tr.segment = job->segment;
  tr.compute_ms = job->compute_ms;
  tr.cpu_ms = job->cpu_ms;
  tr.wait_ms = job->wait_ms;
  tr.queued_ms = job->queued_ms;
  tr.fresh_strip = job->fresh_strip;
  tr.gflop = job->gflop;
  tr.bytes_in = job->bytes_in;
  tr.bytes_out = job->bytes_out;
  /* From the job's arrival (its message waited queued_ms for the engine):
   * the scheduler places them on its own clock between its sending the job
   * and this result's arrival. */
  float spans[2 * TILE_MAX_SPANS];
  double arrived = job->t_arrive_ms - job->queued_ms;
  for (int i = 0; i < 2 * job->n_spans; i++) spans[i] = (float)fmax(job->spans[i] - arrived, 0);
  tr.spans = spans;
  tr.n_spans = (size_t)(2 * job->n_spans);
  tr.done_ms = fmax(tile_now_ms() - arrived, 0);
  Edgedi__V1__ExecuteOut o = EDGEDI__V1__EXECUTE_OUT__INIT;
  o.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_RESULT;
  o.result = &tr;
  return tile_push(out, &o, e);
}

/* Sends the exports whose rows are all computed (rows [lo, hi) of the
 * job's output, which `output` holds from row job->out.lo) and not sent. */
static err_code send_exports(const tile_engine *t, tile_job *job, uint64_t id, model_rows done,
                             const float *output, tile_outbox *out, err *e) {
  for (int i = 0; i < job->n_exports; i++) {
    model_rows x = job->exports[i].rows;
    if ((job->exports_sent >> i & 1) || x.lo < done.lo || x.hi > done.hi) continue;
    err_code rc = send_rows(t, job, id, job->exports[i].dest, x, output, out, e);
    if (rc != ERR_OK) return rc;
    job->exports_sent |= (uint64_t)1 << i;
  }
  return ERR_OK;
}

/* What a finished job sends: exports first (neighbours wait on them), its
 * output to the scheduler, its kept rows to its own next job, the result. */
static err_code finish_job(tile_engine *t, tile_request *r, tile_job *job, const float *output,
                           tile_outbox *out, err *e) {
  err_code rc = send_exports(t, job, r->id, job->out, output, out, e);
  if (rc != ERR_OK) return rc;
  if (job->send_output) {
    rc = send_rows(t, job, r->id, -1, job->out, output, out, e);
    if (rc != ERR_OK) return rc;
  }
  if (job->keep_output) {
    size_t n = (size_t)(job->out.hi - job->out.lo) * (size_t)job->out_w *
               (size_t)job->out_c;
    tile_block b = {.segment = job->segment,
                    .own = true,
                    .rows = job->out,
                    .width = job->out_w,
                    .channels = job->out_c,
                    .data = malloc(n * sizeof(float))};
    err pe = {0};
    if (!b.data) return tile_fail(t, r->id, job->segment, ERR_NOMEM,
                                  "tile: out of memory keeping a strip", out, e);
    memcpy(b.data, output, n * sizeof(float));
    if (tile_deliver(t, r, &b, &pe) != ERR_OK)
      return tile_fail(t, r->id, job->segment, pe.code, pe.msg, out, e);
  }
  job->state = TILE_JOB_DONE;
  tile_slot_release(t, job);
  free(job->output); /* parts' output: what needed it has it */
  job->output = NULL;
  t->stats.jobs_run++;
  rc = send_result(job, r->id, out, e);
  tile_maybe_finish(t, r);
  return rc;
}

void tile_plan_parts(const model *m, tile_job *job, bool whole_strips) {
  job->parts[0] = job->out;
  job->n_parts = 1;
  if (whole_strips || job->n_exports == 0 || job->send_output || job->n_exports > 64) return;
  for (int l = job->first; l < job->end; l++)
    if (m->layers[l].op == MODEL_OP_FE) return; /* a part would stop at it for sums */
  int top = job->out.lo, bottom = job->out.hi; /* the edge parts end, start here */
  for (int i = 0; i < job->n_exports; i++) {
    model_rows x = job->exports[i].rows;
    if (x.lo == job->out.lo && x.hi > top) top = x.hi;
    if (x.hi == job->out.hi && x.lo < bottom) bottom = x.lo;
  }
  bool up = top > job->out.lo, down = bottom < job->out.hi;
  if (!up && !down) return; /* no export at an edge */
  /* Parts of a few rows at least: thinner ones run well below the
   * strip's rate (XNNPACK's GEMMs get a row of pixels). */
  if (up && top - job->out.lo < TILE_MIN_PART_ROWS) top = job->out.lo + TILE_MIN_PART_ROWS;
  if (down && job->out.hi - bottom < TILE_MIN_PART_ROWS) bottom = job->out.hi - TILE_MIN_PART_ROWS;
  if (bottom - top < TILE_MIN_PART_ROWS) return; /* no middle worth waiting for */
  int n = 0;
  if (up) job->parts[n++] = (model_rows){job->out.lo, top};
  if (down) job->parts[n++] = (model_rows){bottom, job->out.hi};
  job->parts[n++] = (model_rows){top, bottom};
  job->n_parts = n;
}

err_code tile_run_job(tile_engine *t, tile_request *r, int j, tile_outbox *out,
                      err *e) {
  tile_job *job = &r->jobs[j];
  err pe = {0};
  /* Strip preparation counts as compute: a slower device prepares slower.
   * Waiting for a core of a shared host does not (cpu0 after the gate). */
  double now = tile_now_ms();
  cpu_gate_enter(t->o.gate);
  double cpu0 = tile_cpu_ms();
  if (job->state == TILE_JOB_WAITING || job->state == TILE_JOB_PARTS) {
    model_rows part = job->parts[job->part];
    job->slot = slot_acquire(t, r->model, job, part, &pe);
    if (!job->slot) {
      cpu_gate_leave(t->o.gate);
      return tile_fail(t, r->id, job->segment, pe.code, pe.msg, out, e);
    }
    model_rows in = xexec_strip_in_rows(job->slot->strip);
    if (job->n_parts == 1 ? in.lo != job->in.lo || in.hi != job->in.hi
                          : in.lo < job->in.lo || in.hi > job->in.hi) {
      /* model_strip_rows() and the executor disagree: a bug, not input. */
      cpu_gate_leave(t->o.gate);
      err_set(&pe, ERR_INTERNAL, "strip of segment %u reads rows [%d, %d), the job has [%d, %d)",
              job->segment, in.lo, in.hi, job->in.lo, job->in.hi);
      return tile_fail(t, r->id, job->segment, pe.code, pe.msg, out, e);
    }
    size_t row = (size_t)job->in_w * (size_t)job->in_c;
    memcpy(xexec_strip_input(job->slot->strip), job->input + (size_t)(in.lo - job->in.lo) * row,
           (size_t)(in.hi - in.lo) * row * sizeof(float));
    /* A job alone makes its scales itself, from plain sums. */
    xexec_strip_set_early_fe(job->slot->strip, !job->fe_late && !job->fe_local);
    if (job->part == job->n_parts - 1) {
      free(job->input);
      free(job->have);
      job->input = NULL;
      job->have = NULL;
    }
    job->wait_ms += now - (job->state == TILE_JOB_WAITING ? job->t_arrive_ms : job->t_pause_ms);
  } else {
    job->wait_ms += now - job->t_pause_ms;
  }
  bool paused = false;
  xexec_fe_sums fe;
  err_code rc = job->state == TILE_JOB_WAITING && runs_local(r->model->m, job)
                    ? xexec_strip_run_local(job->slot->strip, &pe)
                    : xexec_strip_run(job->slot->strip, &paused, &fe, &pe);
  cpu_gate_leave(t->o.gate);
  stretch_end(t, now, cpu0, job);
  if (rc != ERR_OK) {
    job->state = TILE_JOB_WAITING; /* a failed strip starts over: cacheable */
    return tile_fail(t, r->id, job->segment, rc, pe.msg, out, e);
  }
  if (paused) {
    job->state = fe.needs_scale ? TILE_JOB_PAUSED : TILE_JOB_SUMS_OUT;
    job->fe_layer = fe.layer;
    job->fe_channels = fe.channels;
    job->t_pause_ms = tile_now_ms();
    if (!fe.sums) return ERR_OK; /* its early sums are out: waits for the scale */
    err_code rc = send_fe_sums(job, r->id, &fe, out, e);
    if (rc == ERR_OK && !fe.needs_scale) rc = tile_push_resume(out, r->id, job->segment, e);
    return rc;
  }
  const float *result = xexec_strip_output(job->slot->strip);
  if (job->n_parts == 1) return finish_job(t, r, job, result, out, e);
  /* A part: into the job's output; what it completes leaves now. */
  model_rows part = job->parts[job->part];
  size_t row = (size_t)job->out_w * (size_t)job->out_c;
  memcpy(job->output + (size_t)(part.lo - job->out.lo) * row, result,
         (size_t)(part.hi - part.lo) * row * sizeof(float));
  tile_slot_release(t, job);
  if (++job->part == job->n_parts) return finish_job(t, r, job, job->output, out, e);
  job->state = TILE_JOB_PARTS;
  job->t_pause_ms = tile_now_ms();
  rc = send_exports(t, job, r->id, part, job->output, out, e);
  return rc == ERR_OK ? tile_push_resume(out, r->id, job->segment, e) : rc;
}

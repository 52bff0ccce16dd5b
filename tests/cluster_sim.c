/* cluster_sim.c — the in-process cluster and the helpers of the
 * distributed-execution tests (contract in cluster_sim.h). */
#include "tests/cluster_sim.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fuse.h"
#include "runtime/zoo.h"

void cs_check_spans(const Edgedi__V1__TileResult *r) {
  assert_true(r->n_spans >= 2 && r->n_spans % 2 == 0);
  double last_end = 0;
  for (size_t i = 0; i < r->n_spans; i += 2) {
    assert_true(r->spans[i] >= 0 && r->spans[i] >= last_end - 1e-3);
    assert_true(r->spans[i + 1] >= r->spans[i]);
    last_end = r->spans[i + 1];
  }
  assert_true(last_end <= r->done_ms + 1e-3);
}

void cs_check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s: %s", err_name(rc), e->msg);
}

/* ---- the simulated network -------------------------------------------------- */

void cs_push(cs_sim *s, int from, int to, uint8_t *data, size_t len) {
  if (s->nq == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->q = realloc(s->q, (size_t)s->cap * sizeof *s->q);
    assert_non_null(s->q);
  }
  cs_msg m = {.from = from, .to = to, .data = data, .len = len};
  if (to >= 0) {
    Edgedi__V1__ExecuteIn *in = edgedi__v1__execute_in__unpack(NULL, len, data);
    assert_non_null(in);
    m.kind = in->msg_case;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_JOB) m.request = in->job->request_id;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_ROWS) m.request = in->rows->request_id;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_FE_SCALE) m.request = in->fe_scale->request_id;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_RELEASE) m.request = in->release->request_id;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_RESUME)
      m.request = in->resume->request_id;
    edgedi__v1__execute_in__free_unpacked(in, NULL);
  } else {
    Edgedi__V1__ExecuteOut *o = edgedi__v1__execute_out__unpack(NULL, len, data);
    assert_non_null(o);
    m.kind = o->msg_case;
    dispatch_request_of(o, &m.request);
    s->fe_sums += o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_FE_SUMS;
    if (o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_ERROR) {
      if (s->tile_errors++ == 0) {
        snprintf(s->first_tile_error, sizeof s->first_tile_error, "%s", o->error->message);
        s->first_tile_error_code = o->error->code;
      }
    }
    edgedi__v1__execute_out__free_unpacked(o, NULL);
  }
  s->q[s->nq++] = m;
}

static void take_tile(cs_sim *s, int dev, tile_outbox *o) {
  for (int i = 0; i < o->n; i++) {
    cs_push(s, dev, -1, o->msgs[i].data, o->msgs[i].len);
    o->msgs[i].data = NULL;
  }
  /* An engine's messages to itself travel like the scheduler's to it. */
  for (int i = 0; i < o->n_loop; i++) {
    cs_push(s, -1, dev, o->loop[i].data, o->loop[i].len);
    o->loop[i].data = NULL;
  }
  tile_outbox_clear(o);
}

/* The engine of dispatch d's device or stand-in tag `to`. */
static int engine_of(const cs_sim *s, const dispatch *d, int to) {
  for (int k = 0; k < s->n_standins; k++)
    if (s->standin[k].d == d && s->standin[k].tag == to) return s->standin[k].engine;
  return to;
}

static void take_dispatch_of(cs_sim *s, const dispatch *d, dispatch_outbox *o) {
  for (int i = 0; i < o->n; i++) {
    int to = engine_of(s, d, o->msgs[i].device);
    assert_true(to >= 0 && to < s->n);
    if (s->dead[to]) free(o->msgs[i].data);
    else cs_push(s, -1, to, o->msgs[i].data, o->msgs[i].len);
    o->msgs[i].data = NULL;
  }
  dispatch_outbox_clear(o);
}

void cs_take_dispatch(cs_sim *s, dispatch_outbox *o) { take_dispatch_of(s, NULL, o); }

static bool knows(const cs_sim *s, int dev, uint64_t req) {
  for (int i = 0; i < s->n_known; i++)
    if (s->known[i].dev == dev && s->known[i].req == req) return true;
  return false;
}

/* Whether q[i] may go now: streams keep their order; scrambled delivery
 * only keeps what the engine relies on (a request starts with a job, a
 * device's jobs come in the order they were sent). */
static bool deliverable(const cs_sim *s, int i) {
  const cs_msg *m = &s->q[i];
  if (s->mode == CS_FIFO) return i == 0;
  if (s->mode == CS_STREAMS) {
    for (int j = 0; j < i; j++)
      if (s->q[j].from == m->from && s->q[j].to == m->to) return false;
    return true;
  }
  if (m->to < 0) return true;
  if (m->kind == EDGEDI__V1__EXECUTE_IN__MSG_JOB) {
    for (int j = 0; j < i; j++)
      if (s->q[j].to == m->to && s->q[j].kind == m->kind && s->q[j].request == m->request)
        return false;
    return true;
  }
  return m->kind == EDGEDI__V1__EXECUTE_IN__MSG_RELEASE || knows(s, m->to, m->request);
}

static int pick(cs_sim *s) {
  if (s->mode == CS_FIFO) return 0;
  int start = xt_int(&s->rng, 0, s->nq - 1);
  /* Scrambled: hold back a device's later jobs, so that rows overtake them. */
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < s->nq; k++) {
      int i = (start + k) % s->nq;
      const cs_msg *m = &s->q[i];
      if (pass == 0 && s->mode == CS_SCRAMBLED && m->to >= 0 &&
          m->kind == EDGEDI__V1__EXECUTE_IN__MSG_JOB && knows(s, m->to, m->request) &&
          xt_int(&s->rng, 0, 3) != 0)
        continue;
      if (deliverable(s, i)) return i;
    }
  fail_msg("no message can be delivered");
  return -1;
}

/* The dispatch of request id `req` from engine `from`, and the sender's
 * device index or stand-in tag in it. */
static dispatch *route(cs_sim *s, uint64_t req, int from, int *as) {
  *as = from;
  for (int k = 0; k < s->n_standins; k++)
    if (s->standin[k].id == req && s->standin[k].engine == from) {
      *as = s->standin[k].tag;
      return s->standin[k].d;
    }
  for (int i = 0; i < s->n_ds; i++)
    if (s->ds_id[i] == req) return s->ds[i];
  return NULL;
}

void cs_step(cs_sim *s) {
  int i = pick(s);
  cs_msg m = s->q[i];
  memmove(&s->q[i], &s->q[i + 1], (size_t)(s->nq - i - 1) * sizeof *s->q);
  s->nq--;
  if (m.to < 0) {
    Edgedi__V1__ExecuteOut *o = edgedi__v1__execute_out__unpack(NULL, m.len, m.data);
    assert_non_null(o);
    if (o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT) {
      double q = o->result->queued_ms;
      if (s->results_seen == 0 || q < s->result_queued_min) s->result_queued_min = q;
      if (s->results_seen == 0 || q > s->result_queued_max) s->result_queued_max = q;
      s->results_seen++;
      s->results_fresh += o->result->fresh_strip;
      cs_check_spans(o->result); /* every result says when its device computed */
    }
    int as;
    dispatch *d = route(s, m.request, m.from, &as);
    if (d) {
      dispatch_outbox dout = {0};
      dispatch_on_message(d, as, o, &dout);
      take_dispatch_of(s, d, &dout);
      dispatch_outbox_free(&dout);
    }
    edgedi__v1__execute_out__free_unpacked(o, NULL);
  } else {
    Edgedi__V1__ExecuteIn *in = edgedi__v1__execute_in__unpack(NULL, m.len, m.data);
    assert_non_null(in);
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_JOB && !knows(s, m.to, m.request)) {
      assert_true(s->n_known < (int)(sizeof s->known / sizeof s->known[0]));
      s->known[s->n_known].dev = m.to;
      s->known[s->n_known++].req = m.request;
    }
    tile_outbox tout = {0};
    err e = {0};
    double arrived = tile_now_ms();
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_JOB) arrived -= s->job_queued_ms;
    cs_check_ok(tile_engine_handle_at(s->eng[m.to], in, arrived, &tout, &e), &e);
    take_tile(s, m.to, &tout);
    tile_outbox_free(&tout);
    edgedi__v1__execute_in__free_unpacked(in, NULL);
  }
  free(m.data);
}

void cs_run(cs_sim *s) {
  while (s->nq > 0) cs_step(s);
  s->n_known = 0;
}

void cs_start(cs_sim *s, dispatch *d, uint64_t id) {
  assert_true(s->n_ds < CS_MAX_DISPATCHES);
  s->ds[s->n_ds] = d;
  s->ds_id[s->n_ds++] = id;
  dispatch_outbox out = {0};
  err e = {0};
  cs_check_ok(dispatch_start(d, &out, &e), &e);
  take_dispatch_of(s, d, &out);
  dispatch_outbox_free(&out);
}

void cs_kill(cs_sim *s, int engine) {
  s->dead[engine] = true;
  int kept = 0;
  for (int i = 0; i < s->nq; i++) {
    if (s->q[i].from == engine || s->q[i].to == engine) free(s->q[i].data);
    else s->q[kept++] = s->q[i];
  }
  s->nq = kept;
}

void cs_add_standin(cs_sim *s, dispatch *d, int role, uint64_t id, int engine) {
  assert_true(s->n_standins < CS_MAX_STANDINS && !s->dead[engine]);
  dispatch_outbox out = {0};
  err e = {0};
  int tag = -1;
  cs_check_ok(dispatch_add_standin(d, role, id, &tag, &out, &e), &e);
  int k = s->n_standins++;
  s->standin[k].d = d;
  s->standin[k].id = id;
  s->standin[k].tag = tag;
  s->standin[k].engine = engine;
  take_dispatch_of(s, d, &out);
  dispatch_outbox_free(&out);
}

void cs_init(cs_sim *s, int n, const tile_options *o, uint64_t seed) {
  memset(s, 0, sizeof *s);
  s->n = n;
  s->rng.s = seed;
  for (int i = 0; i < n; i++) {
    err e = {0};
    cs_check_ok(tile_engine_create(o, &s->eng[i], &e), &e);
  }
}

void cs_add_model(cs_sim *s, const char *digest, const model *m) {
  for (int i = 0; i < s->n; i++) {
    err e = {0};
    cs_check_ok(tile_engine_add_model(s->eng[i], digest, m, 1, &e), &e);
  }
}

/* No engine holds anything of a request that is over. */
void cs_check_idle(const cs_sim *s) {
  for (int i = 0; i < s->n; i++) {
    if (s->dead[i]) continue; /* what it held died with it */
    tile_stats st;
    tile_engine_stats(s->eng[i], &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.jobs_waiting, 0);
  }
}

void cs_free(cs_sim *s) {
  for (int i = 0; i < s->nq; i++) free(s->q[i].data);
  free(s->q);
  for (int i = 0; i < s->n; i++) tile_engine_destroy(s->eng[i]);
  memset(s, 0, sizeof *s);
}

/* ---- models, images, plans ---------------------------------------------------- */

model *cs_build_fused(const char *name, int side) {
  zoo_options o = zoo_defaults();
  o.in_h = o.in_w = side;
  model *m = NULL, *f = NULL;
  err e = {0};
  cs_check_ok(zoo_build(name, &o, &m, &e), &e);
  cs_check_ok(fuse_model(m, &f, &e), &e);
  model_destroy(m);
  return f;
}

/* kind 0: gray uint8, 1: 3-channel uint8, 2: 3-channel float. */
cs_image cs_make_image(int kind, int h, int w, xt_rng *r) {
  cs_image t;
  int c = kind == 0 ? 1 : 3;
  size_t n = (size_t)h * w * c;
  if (kind == 2) {
    float *f = malloc(n * sizeof *f);
    assert_non_null(f);
    xt_fill(r, f, n, 0.0f, 1.0f);
    t.data = f;
    t.img = preprocess_whole(PREPROCESS_F32, f, h, w, c);
  } else {
    uint8_t *u = malloc(n);
    assert_non_null(u);
    for (size_t i = 0; i < n; i++) u[i] = (uint8_t)(xt_next(r) >> 56);
    t.data = u;
    t.img = preprocess_whole(PREPROCESS_U8, u, h, w, c);
  }
  return t;
}

plan_options cs_plan_options(const preprocess_image *img) {
  plan_options o = plan_default_options();
  o.input_channels = img->channels;
  o.input_bytes_per_pixel = (int)preprocess_sample_bytes(img->format);
  return o;
}

/* The single device: the same preprocessing, the whole fused model. */
float *cs_single_device(xexec *x, const preprocess_image *img) {
  const model *m = xexec_model(x);
  float *in = malloc(model_shape_elems(m->input) * sizeof *in);
  float *out = malloc(model_shape_elems(m->layers[m->n_layers - 1].out) * sizeof *out);
  assert_non_null(in);
  assert_non_null(out);
  err e = {0};
  model_rows all = {0, m->input.h};
  cs_check_ok(preprocess_rows(img, m->input, all, in, &e), &e);
  cs_check_ok(xexec_run(x, in, out, &e), &e);
  free(in);
  return out;
}

void cs_random_devices(plan_device *d, int n, xt_rng *r) {
  for (int i = 0; i < n; i++) {
    memset(&d[i], 0, sizeof d[i]);
    snprintf(d[i].name, sizeof d[i].name, "dev%d", i);
    d[i].ms_per_gflop = xt_uniform(r, 40, 160);
    d[i].fixed_ms = 1;
    d[i].bandwidth_mbps = 100;
    d[i].rtt_ms = 1;
  }
}

/* Segments at a random subset of the cuts (none when one_segment), each
 * split into random strips given to a random subset of the devices in a
 * random order. */
void cs_random_plan(const model *m, const plan_device *devs, int n_devs,
                    const plan_options *o, bool one_segment, xt_rng *r, plan *p) {
  memset(p, 0, sizeof *p);
  snprintf(p->planner, sizeof p->planner, "random");
  p->head_first = plan_head_first(m);
  int *ends = malloc((size_t)(p->head_first + 1) * sizeof *ends), n = 0;
  assert_non_null(ends);
  for (int c = 1; c < p->head_first; c++)
    if (!one_segment && model_is_cut(m, c) && xt_int(r, 0, 3) == 0) ends[n++] = c;
  ends[n++] = p->head_first;
  p->segments = calloc((size_t)n, sizeof *p->segments);
  assert_non_null(p->segments);
  p->n_segments = n;
  for (int si = 0, first = 0; si < n; first = ends[si++]) {
    plan_segment *s = &p->segments[si];
    s->first = first;
    s->end = ends[si];
    int h = m->layers[s->end - 1].out.h, bounds[CS_MAX_DEVICES + 1], perm[CS_MAX_DEVICES];
    for (int i = 0; i < n_devs; i++) perm[i] = i;
    for (int i = n_devs - 1; i > 0; i--) {
      int j = xt_int(r, 0, i), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    s->n_parts = xt_random_split(r, h, n_devs, bounds);
    for (int k = 0; k < s->n_parts; k++) {
      s->parts[k].device = perm[k];
      s->parts[k].out.lo = bounds[k];
      s->parts[k].out.hi = bounds[k + 1];
    }
  }
  free(ends);
  err e = {0};
  cs_check_ok(plan_evaluate(m, devs, n_devs, o, p, &e), &e);
}

/* ---- one request through the cluster -------------------------------------------- */

static uint64_t next_request_id = 1;

uint64_t cs_new_request_id(void) { return next_request_id++; }

/* Runs `p` on the cluster and checks it against the single device's logits. */
void cs_check_request(cs_sim *s, const model *m, xexec *x, const plan *p, int n_devs,
                      const preprocess_image *img, const float *want, cs_mode mode) {
  err e = {0};
  dispatch *d = NULL;
  uint64_t id = cs_new_request_id();
  cs_check_ok(dispatch_create(m, "digest", p, n_devs, img, id, x, &d, &e), &e);
  /* Every other request sums a VGG head's first FC by rows (head_rows.h),
   * the output rows arriving in the delivery's order. */
  head_rows *hr = NULL;
  if (id % 2) cs_check_ok(head_rows_create(m, p->head_first, &hr, &e), &e);
  if (hr) cs_check_ok(dispatch_set_head_rows(d, hr, &e), &e);
  s->mode = mode;
  s->n_ds = 0;
  s->fe_sums = 0;
  cs_start(s, d, id);
  cs_run(s);
  dispatch_result r;
  dispatch_get_result(d, &r);
  if (r.state != DISPATCH_DONE)
    fail_msg("%s, %s plan, %d devices: state %d: %s", m->name, p->planner, n_devs, r.state,
             r.message);
  size_t n = model_shape_elems(m->layers[m->n_layers - 1].out);
  assert_int_equal(r.n_logits, (int)n);
  double diff = xt_rel_diff(r.logits, want, n);
  if (!(diff <= CS_LOGIT_TOL))
    fail_msg("%s, %s plan, %d devices, %d segments, delivery %d: logits differ by %g",
             m->name, p->planner, n_devs, p->n_segments, mode, diff);
  /* Sums travel only for the FEs of segments shared by several devices: a
   * device alone in its segment makes its own scales (TileJob.fe_local). */
  int want_sums = 0;
  for (int si = 0; si < p->n_segments; si++)
    if (p->segments[si].n_parts > 1)
      for (int l = p->segments[si].first; l < p->segments[si].end; l++)
        want_sums += m->layers[l].op == MODEL_OP_FE ? p->segments[si].n_parts : 0;
  if (s->fe_sums != want_sums)
    fail_msg("%s, %s plan, %d devices: %d FE sums sent, %d expected", m->name, p->planner,
             n_devs, s->fe_sums, want_sums);
  /* What moved is what the planner priced (as raw floats, no densities
   * given), zero-masked rows no more, and less than whole maps. */
  assert_int_equal(r.bytes_moved_raw, p->bytes_moved);
  assert_true(r.bytes_moved <= r.bytes_moved_raw);
  assert_int_equal(r.bytes_gather_all, p->bytes_gather_all);
  /* Strips that stay put move less than whole maps; a random plan that
   * reshuffles every row between devices at every cut need not. */
  if (p->n_segments > 1 && strcmp(p->planner, "random") != 0 &&
      !(r.bytes_moved < r.bytes_gather_all))
    fail_msg("%s, %s plan, %d devices: %llu bytes moved, gathering moves %llu", m->name,
             p->planner, n_devs, (unsigned long long)r.bytes_moved,
             (unsigned long long)r.bytes_gather_all);
  for (int dev = 0; dev < n_devs; dev++) {
    assert_int_equal(r.devices[dev].results, r.devices[dev].jobs);
    /* Work where the plan gave the device arithmetic (a random plan may give
     * one only a segment without any, a lone batch norm). */
    double planned = 0;
    for (int si = 0; si < p->n_segments; si++)
      for (int k = 0; k < p->segments[si].n_parts; k++)
        if (p->segments[si].parts[k].device == dev) planned += p->segments[si].parts[k].gflop;
    if (r.devices[dev].jobs && planned > 0) assert_true(r.devices[dev].gflop > 0);
  }
  dispatch_destroy(d);
  head_rows_destroy(hr);
  s->n_ds = 0;
  cs_check_idle(s);
}

void cs_fixture_init(cs_fixture *f, const char *name) {
  xt_rng r = {11};
  memset(f, 0, sizeof *f);
  f->m = cs_build_fused(name, CS_SIDE_PX);
  err e = {0};
  cs_check_ok(xexec_create(f->m, 1, &f->x, &e), &e);
  f->t = cs_make_image(0, CS_SIDE_PX, CS_SIDE_PX, &r);
  cs_random_devices(f->devs, 3, &r);
  plan_options po = cs_plan_options(&f->t.img);
  cs_check_ok(plan_equal(f->m, f->devs, 3, &po, &f->p, &e), &e);
}

void cs_fixture_free(cs_fixture *f) {
  plan_free(&f->p);
  free(f->t.data);
  xexec_destroy(f->x);
  model_destroy(f->m);
}

/* Runs the fixture's plan as a request that must succeed. */
void cs_run_ok(cs_sim *s, cs_fixture *f) {
  err e = {0};
  uint64_t id = cs_new_request_id();
  dispatch *d = NULL;
  cs_check_ok(dispatch_create(f->m, "digest", &f->p, 3, &f->t.img, id, f->x, &d, &e), &e);
  cs_start(s, d, id);
  cs_run(s);
  dispatch_result res;
  dispatch_get_result(d, &res);
  assert_int_equal(res.state, DISPATCH_DONE);
  dispatch_destroy(d);
}

/* Runs a request that must fail; returns its result's status. */
uint32_t cs_run_failing(cs_sim *s, cs_fixture *f, const char *digest, dispatch_result *res,
                        dispatch **dp) {
  err e = {0};
  uint64_t id = cs_new_request_id();
  cs_check_ok(dispatch_create(f->m, digest, &f->p, 3, &f->t.img, id, f->x, dp, &e), &e);
  s->n_ds = 0;
  cs_start(s, *dp, id);
  cs_run(s);
  dispatch_get_result(*dp, res);
  assert_int_equal(res->state, DISPATCH_FAILED);
  cs_check_idle(s);
  return res->status;
}

Edgedi__V1__ExecuteIn **cs_jobs_of(cs_fixture *f, uint64_t id, int *n) {
  err e = {0};
  dispatch *d = NULL;
  cs_check_ok(dispatch_create(f->m, "digest", &f->p, 3, &f->t.img, id, f->x, &d, &e), &e);
  dispatch_outbox out = {0};
  cs_check_ok(dispatch_start(d, &out, &e), &e);
  Edgedi__V1__ExecuteIn **jobs = calloc((size_t)out.n, sizeof *jobs);
  assert_non_null(jobs);
  for (int i = 0; i < out.n; i++) {
    jobs[i] = edgedi__v1__execute_in__unpack(NULL, out.msgs[i].len, out.msgs[i].data);
    assert_non_null(jobs[i]);
  }
  *n = out.n;
  dispatch_outbox_free(&out);
  dispatch_destroy(d);
  return jobs;
}

void cs_free_jobs(Edgedi__V1__ExecuteIn **jobs, int n) {
  for (int i = 0; i < n; i++) edgedi__v1__execute_in__free_unpacked(jobs[i], NULL);
  free(jobs);
}

/* Feeds one message to an engine; expects exactly one TileError with
 * `code` whose message contains `what`. */
void cs_expect_tile_error(tile_engine *t, const Edgedi__V1__ExecuteIn *in, uint32_t code,
                          const char *what) {
  tile_outbox out = {0};
  err e = {0};
  cs_check_ok(tile_engine_handle(t, in, &out, &e), &e);
  int errors = 0;
  for (int i = 0; i < out.n; i++) {
    Edgedi__V1__ExecuteOut *o = edgedi__v1__execute_out__unpack(NULL, out.msgs[i].len, out.msgs[i].data);
    assert_non_null(o);
    if (o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_ERROR) {
      errors++;
      if (o->error->code != code || !strstr(o->error->message, what))
        fail_msg("TileError %u '%s', expected %u with '%s'", o->error->code, o->error->message,
                 code, what);
    }
    edgedi__v1__execute_out__free_unpacked(o, NULL);
  }
  if (errors != 1) fail_msg("%d TileErrors, expected one with '%s'", errors, what);
  tile_outbox_free(&out);
}

/* Feeds `in`; no TileError may come back. */
void cs_expect_quiet(tile_engine *t, const Edgedi__V1__ExecuteIn *in) {
  tile_outbox out = {0};
  err e = {0};
  cs_check_ok(tile_engine_handle(t, in, &out, &e), &e);
  for (int i = 0; i < out.n; i++) {
    Edgedi__V1__ExecuteOut *o = edgedi__v1__execute_out__unpack(NULL, out.msgs[i].len, out.msgs[i].data);
    assert_non_null(o);
    if (o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_ERROR) fail_msg("TileError: %s", o->error->message);
    edgedi__v1__execute_out__free_unpacked(o, NULL);
  }
  tile_outbox_free(&out);
}

/* The k-th job of `segment`. */
Edgedi__V1__TileJob *cs_job_at(Edgedi__V1__ExecuteIn **jobs, int n, int segment, int k) {
  int seen = 0;
  for (int i = 0; i < n; i++)
    if (jobs[i]->job->segment == (uint32_t)segment && seen++ == k) return jobs[i]->job;
  fail_msg("no job %d of segment %d", k, segment);
  return NULL;
}

Edgedi__V1__ExecuteIn cs_wrap_job(Edgedi__V1__TileJob *j) {
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_JOB;
  in.job = j;
  return in;
}

Edgedi__V1__ExecuteIn cs_wrap_rows(Edgedi__V1__RowsData *rd) {
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_ROWS;
  in.rows = rd;
  return in;
}

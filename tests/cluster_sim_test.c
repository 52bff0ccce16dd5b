/* cluster_sim_test.c — a cluster in one process: N tile engines (the
 * agents) and the dispatcher (the scheduler) exchanging packed Execute
 * messages through a queue, delivered in order, stream by stream in random
 * interleavings, or scrambled (rows before their job, results before their
 * rows). For every zoo model and many plans (the planners with random
 * device speeds, random segmentations with unequal strips in any device
 * order, devices absent from segments) the logits must equal the single
 * device's (preprocess_rows + xexec_run on the whole fused model) within
 * 1e-4 of the largest logit, the bytes moved must be what the planner
 * priced and less than gathering whole maps, and no engine may keep any
 * state once a request is over. Then every way a request can go wrong:
 * unknown digest, an engine's TileError, agents sending what was not asked,
 * garbage and out-of-range rows, malformed jobs, mutated messages.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <grpc/status.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/fuse.h"
#include "runtime/preprocess.h"
#include "runtime/tile.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"
#include "scheduler/dispatch.h"
#include "scheduler/plan.h"
#include "tests/xexec_testlib.h"

enum { MAX_DEV = 6, SIDE_PX = 64, MAX_QUEUE_DISPATCHES = 4 };
static const double LOGIT_TOL = 1e-4;

static void check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s: %s", err_name(rc), e->msg);
}

/* ---- the simulated network -------------------------------------------------- */

typedef enum { DELIVER_FIFO, DELIVER_STREAMS, DELIVER_SCRAMBLED, DELIVER_MODES } deliver_mode;

typedef struct sim_msg {
  int from, to; /* -1: the scheduler */
  uint8_t *data;
  size_t len;
  int kind;     /* ExecuteIn or ExecuteOut message case */
  uint64_t request;
} sim_msg;

typedef struct sim {
  int n;
  tile_engine *eng[MAX_DEV];
  sim_msg *q;
  int nq, cap;
  deliver_mode mode;
  xt_rng rng;
  struct {
    int dev;
    uint64_t req;
  } known[4096];
  int n_known;
  dispatch *ds[MAX_QUEUE_DISPATCHES];
  uint64_t ds_id[MAX_QUEUE_DISPATCHES];
  int n_ds;
  int tile_errors;
  char first_tile_error[ERR_MSG_BYTES];
  uint32_t first_tile_error_code;
} sim;

static void sim_push(sim *s, int from, int to, uint8_t *data, size_t len) {
  if (s->nq == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->q = realloc(s->q, (size_t)s->cap * sizeof *s->q);
    assert_non_null(s->q);
  }
  sim_msg m = {.from = from, .to = to, .data = data, .len = len};
  if (to >= 0) {
    Edgedi__V1__ExecuteIn *in = edgedi__v1__execute_in__unpack(NULL, len, data);
    assert_non_null(in);
    m.kind = in->msg_case;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_JOB) m.request = in->job->request_id;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_ROWS) m.request = in->rows->request_id;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_FE_SCALE) m.request = in->fe_scale->request_id;
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_RELEASE) m.request = in->release->request_id;
    edgedi__v1__execute_in__free_unpacked(in, NULL);
  } else {
    Edgedi__V1__ExecuteOut *o = edgedi__v1__execute_out__unpack(NULL, len, data);
    assert_non_null(o);
    m.kind = o->msg_case;
    dispatch_request_of(o, &m.request);
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

static void sim_take_tile(sim *s, int dev, tile_outbox *o) {
  for (int i = 0; i < o->n; i++) {
    sim_push(s, dev, -1, o->msgs[i].data, o->msgs[i].len);
    o->msgs[i].data = NULL;
  }
  tile_outbox_clear(o);
}

static void sim_take_dispatch(sim *s, dispatch_outbox *o) {
  for (int i = 0; i < o->n; i++) {
    assert_true(o->msgs[i].device >= 0 && o->msgs[i].device < s->n);
    sim_push(s, -1, o->msgs[i].device, o->msgs[i].data, o->msgs[i].len);
    o->msgs[i].data = NULL;
  }
  dispatch_outbox_clear(o);
}

static bool sim_knows(const sim *s, int dev, uint64_t req) {
  for (int i = 0; i < s->n_known; i++)
    if (s->known[i].dev == dev && s->known[i].req == req) return true;
  return false;
}

/* Whether q[i] may go now: streams keep their order; scrambled delivery
 * only keeps what the engine relies on (a request starts with a job, a
 * device's jobs come in the order they were sent). */
static bool deliverable(const sim *s, int i) {
  const sim_msg *m = &s->q[i];
  if (s->mode == DELIVER_FIFO) return i == 0;
  if (s->mode == DELIVER_STREAMS) {
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
  return m->kind == EDGEDI__V1__EXECUTE_IN__MSG_RELEASE || sim_knows(s, m->to, m->request);
}

static int sim_pick(sim *s) {
  if (s->mode == DELIVER_FIFO) return 0;
  int start = xt_int(&s->rng, 0, s->nq - 1);
  /* Scrambled: hold back a device's later jobs, so that rows overtake them. */
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < s->nq; k++) {
      int i = (start + k) % s->nq;
      const sim_msg *m = &s->q[i];
      if (pass == 0 && s->mode == DELIVER_SCRAMBLED && m->to >= 0 &&
          m->kind == EDGEDI__V1__EXECUTE_IN__MSG_JOB && sim_knows(s, m->to, m->request) &&
          xt_int(&s->rng, 0, 3) != 0)
        continue;
      if (deliverable(s, i)) return i;
    }
  fail_msg("no message can be delivered");
  return -1;
}

static dispatch *sim_route(sim *s, uint64_t req) {
  for (int i = 0; i < s->n_ds; i++)
    if (s->ds_id[i] == req) return s->ds[i];
  return NULL;
}

static void sim_step(sim *s) {
  int i = sim_pick(s);
  sim_msg m = s->q[i];
  memmove(&s->q[i], &s->q[i + 1], (size_t)(s->nq - i - 1) * sizeof *s->q);
  s->nq--;
  if (m.to < 0) {
    Edgedi__V1__ExecuteOut *o = edgedi__v1__execute_out__unpack(NULL, m.len, m.data);
    assert_non_null(o);
    dispatch *d = sim_route(s, m.request);
    if (d) {
      dispatch_outbox dout = {0};
      dispatch_on_message(d, m.from, o, &dout);
      sim_take_dispatch(s, &dout);
      dispatch_outbox_free(&dout);
    }
    edgedi__v1__execute_out__free_unpacked(o, NULL);
  } else {
    Edgedi__V1__ExecuteIn *in = edgedi__v1__execute_in__unpack(NULL, m.len, m.data);
    assert_non_null(in);
    if (in->msg_case == EDGEDI__V1__EXECUTE_IN__MSG_JOB && !sim_knows(s, m.to, m.request)) {
      assert_true(s->n_known < (int)(sizeof s->known / sizeof s->known[0]));
      s->known[s->n_known].dev = m.to;
      s->known[s->n_known++].req = m.request;
    }
    tile_outbox tout = {0};
    err e = {0};
    check_ok(tile_engine_handle(s->eng[m.to], in, &tout, &e), &e);
    sim_take_tile(s, m.to, &tout);
    tile_outbox_free(&tout);
    edgedi__v1__execute_in__free_unpacked(in, NULL);
  }
  free(m.data);
}

static void sim_run(sim *s) {
  while (s->nq > 0) sim_step(s);
  s->n_known = 0;
}

static void sim_start(sim *s, dispatch *d, uint64_t id) {
  assert_true(s->n_ds < MAX_QUEUE_DISPATCHES);
  s->ds[s->n_ds] = d;
  s->ds_id[s->n_ds++] = id;
  dispatch_outbox out = {0};
  err e = {0};
  check_ok(dispatch_start(d, &out, &e), &e);
  sim_take_dispatch(s, &out);
  dispatch_outbox_free(&out);
}

static void sim_init(sim *s, int n, const tile_options *o, uint64_t seed) {
  memset(s, 0, sizeof *s);
  s->n = n;
  s->rng.s = seed;
  for (int i = 0; i < n; i++) {
    err e = {0};
    check_ok(tile_engine_create(o, &s->eng[i], &e), &e);
  }
}

static void sim_add_model(sim *s, const char *digest, const model *m) {
  for (int i = 0; i < s->n; i++) {
    err e = {0};
    check_ok(tile_engine_add_model(s->eng[i], digest, m, 1, &e), &e);
  }
}

/* No engine holds anything of a request that is over. */
static void sim_check_idle(const sim *s) {
  for (int i = 0; i < s->n; i++) {
    tile_stats st;
    tile_engine_stats(s->eng[i], &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.jobs_waiting, 0);
  }
}

static void sim_free(sim *s) {
  for (int i = 0; i < s->nq; i++) free(s->q[i].data);
  free(s->q);
  for (int i = 0; i < s->n; i++) tile_engine_destroy(s->eng[i]);
  memset(s, 0, sizeof *s);
}

/* ---- models, images, plans ---------------------------------------------------- */

static model *build_fused(const char *name, int side) {
  zoo_options o = zoo_defaults();
  o.in_h = o.in_w = side;
  model *m = NULL, *f = NULL;
  err e = {0};
  check_ok(zoo_build(name, &o, &m, &e), &e);
  check_ok(fuse_model(m, &f, &e), &e);
  model_destroy(m);
  return f;
}

typedef struct test_image {
  preprocess_image img;
  void *data;
} test_image;

/* kind 0: gray uint8, 1: 3-channel uint8, 2: 3-channel float. */
static test_image make_image(int kind, int h, int w, xt_rng *r) {
  test_image t;
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

static plan_options options_for(const preprocess_image *img) {
  plan_options o = plan_default_options();
  o.input_channels = img->channels;
  o.input_bytes_per_pixel = (int)preprocess_sample_bytes(img->format);
  return o;
}

/* The single device: the same preprocessing, the whole fused model. */
static float *single_device(xexec *x, const preprocess_image *img) {
  const model *m = xexec_model(x);
  float *in = malloc(model_shape_elems(m->input) * sizeof *in);
  float *out = malloc(model_shape_elems(m->layers[m->n_layers - 1].out) * sizeof *out);
  assert_non_null(in);
  assert_non_null(out);
  err e = {0};
  model_rows all = {0, m->input.h};
  check_ok(preprocess_rows(img, m->input, all, in, &e), &e);
  check_ok(xexec_run(x, in, out, &e), &e);
  free(in);
  return out;
}

static void random_devices(plan_device *d, int n, xt_rng *r) {
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
static void random_plan(const model *m, const plan_device *devs, int n_devs,
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
    int h = m->layers[s->end - 1].out.h, bounds[MAX_DEV + 1], perm[MAX_DEV];
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
  check_ok(plan_evaluate(m, devs, n_devs, o, p, &e), &e);
}

/* ---- one request through the cluster -------------------------------------------- */

static uint64_t next_request_id = 1;

/* Runs `p` on the cluster and checks it against the single device's logits. */
static void check_request(sim *s, const model *m, xexec *x, const plan *p, int n_devs,
                          const preprocess_image *img, const float *want, deliver_mode mode) {
  err e = {0};
  dispatch *d = NULL;
  uint64_t id = next_request_id++;
  check_ok(dispatch_create(m, "digest", p, n_devs, img, id, x, &d, &e), &e);
  s->mode = mode;
  s->n_ds = 0;
  sim_start(s, d, id);
  sim_run(s);
  dispatch_result r;
  dispatch_get_result(d, &r);
  if (r.state != DISPATCH_DONE)
    fail_msg("%s, %s plan, %d devices: state %d: %s", m->name, p->planner, n_devs, r.state,
             r.message);
  size_t n = model_shape_elems(m->layers[m->n_layers - 1].out);
  assert_int_equal(r.n_logits, (int)n);
  double diff = xt_rel_diff(r.logits, want, n);
  if (!(diff <= LOGIT_TOL))
    fail_msg("%s, %s plan, %d devices, %d segments, delivery %d: logits differ by %g",
             m->name, p->planner, n_devs, p->n_segments, mode, diff);
  /* What moved is what the planner priced, and less than whole maps. */
  assert_int_equal(r.bytes_moved, p->bytes_moved);
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
    if (r.devices[dev].jobs) assert_true(r.devices[dev].gflop > 0);
  }
  dispatch_destroy(d);
  s->n_ds = 0;
  sim_check_idle(s);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_preprocess_strips_equal_whole(void **state) {
  (void)state;
  xt_rng r = {7};
  model_shape in = {.h = 9, .w = 5, .c = 3};
  for (int kind = 0; kind < 3; kind++) {
    test_image t = make_image(kind, in.h, in.w, &r);
    float whole[9 * 5 * 3], part[9 * 5 * 3];
    err e = {0};
    model_rows all = {0, in.h};
    check_ok(preprocess_rows(&t.img, in, all, whole, &e), &e);
    if (kind == 0) {
      const uint8_t *u = t.data;
      assert_true(whole[0] == (float)u[0] / 255.0f && whole[1] == whole[0] && whole[2] == whole[0]);
    }
    /* A strip of the image, as an agent gets it, gives the same bits. */
    size_t row_bytes = (size_t)in.w * t.img.channels * preprocess_sample_bytes(t.img.format);
    preprocess_image strip = t.img;
    strip.row_lo = 3;
    strip.rows = 4;
    strip.data = (const uint8_t *)t.data + 3 * row_bytes;
    strip.bytes = 4 * row_bytes;
    model_rows some = {4, 6};
    check_ok(preprocess_rows(&strip, in, some, part, &e), &e);
    assert_memory_equal(part, whole + 4 * in.w * in.c, 2 * in.w * in.c * sizeof(float));
    model_rows outside = {2, 5};
    assert_int_equal(preprocess_rows(&strip, in, outside, part, &e), ERR_RANGE);
    free(t.data);
  }
  uint8_t px[9 * 5 * 2] = {0};
  preprocess_image two = preprocess_whole(PREPROCESS_U8, px, 9, 5, 2);
  err e = {0};
  assert_int_equal(preprocess_check(&two, in, &e), ERR_SHAPE);
  assert_non_null(strstr(e.msg, "2 channels"));
  preprocess_image short_img = preprocess_whole(PREPROCESS_U8, px, 9, 5, 1);
  short_img.bytes--;
  assert_int_equal(preprocess_check(&short_img, in, &e), ERR_SHAPE);
  preprocess_image tall = preprocess_whole(PREPROCESS_U8, px, 8, 5, 1);
  assert_int_equal(preprocess_check(&tall, in, &e), ERR_SHAPE);
}

/* Every zoo model, planners and random plans, every delivery order. */
static void test_every_model_matches_single_device(void **state) {
  (void)state;
  xt_rng r = {2024};
  int config = 0;
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = build_fused(*name, SIDE_PX);
    xexec *x = NULL;
    err e = {0};
    check_ok(xexec_create(m, 1, &x, &e), &e);
    sim s;
    sim_init(&s, MAX_DEV, NULL, xt_next(&r));
    sim_add_model(&s, "digest", m);
    test_image t = make_image((int)(name - zoo_names()) % 3, SIDE_PX, SIDE_PX, &r);
    plan_options po = options_for(&t.img);
    float *want = single_device(x, &t.img);
    plan_device devs[MAX_DEV];
    for (int n = 1; n <= MAX_DEV; n++) {
      random_devices(devs, n, &r);
      plan p;
      check_ok(plan_proportional(m, devs, n, &po, &p, &e), &e);
      check_request(&s, m, x, &p, n, &t.img, want, (deliver_mode)(config++ % DELIVER_MODES));
      plan_free(&p);
    }
    random_devices(devs, MAX_DEV, &r);
    for (int n = 3; n <= MAX_DEV; n += 3) {
      plan p;
      check_ok(plan_equal(m, devs, n, &po, &p, &e), &e);
      check_request(&s, m, x, &p, n, &t.img, want, (deliver_mode)(config++ % DELIVER_MODES));
      plan_free(&p);
    }
    for (int k = 0; k < 4; k++) {
      int n = xt_int(&r, 2, MAX_DEV);
      plan p;
      random_plan(m, devs, n, &po, k == 0, &r, &p);
      check_request(&s, m, x, &p, n, &t.img, want, (deliver_mode)(config++ % DELIVER_MODES));
      plan_free(&p);
    }
    free(want);
    free(t.data);
    sim_free(&s);
    xexec_destroy(x);
    model_destroy(m);
  }
}

/* The same plan again reuses every prepared strip; two requests at once on
 * the same engines (same plan, so two strips per key) both come out right;
 * scrambled delivery really made rows wait for their jobs. */
static void test_repeats_and_concurrent_requests(void **state) {
  (void)state;
  xt_rng r = {99};
  model *m = build_fused("resnet18c", SIDE_PX);
  xexec *x = NULL;
  err e = {0};
  check_ok(xexec_create(m, 1, &x, &e), &e);
  sim s;
  sim_init(&s, 4, NULL, 5);
  sim_add_model(&s, "digest", m);
  plan_device devs[4];
  random_devices(devs, 4, &r);
  test_image a = make_image(0, SIDE_PX, SIDE_PX, &r), b = make_image(0, SIDE_PX, SIDE_PX, &r);
  plan_options po = options_for(&a.img);
  plan p;
  check_ok(plan_proportional(m, devs, 4, &po, &p, &e), &e);
  float *want_a = single_device(x, &a.img), *want_b = single_device(x, &b.img);
  check_request(&s, m, x, &p, 4, &a.img, want_a, DELIVER_STREAMS);
  tile_stats before[4], after;
  for (int i = 0; i < 4; i++) tile_engine_stats(s.eng[i], &before[i]);
  check_request(&s, m, x, &p, 4, &b.img, want_b, DELIVER_SCRAMBLED);
  for (int i = 0; i < 4; i++) {
    tile_engine_stats(s.eng[i], &after);
    assert_int_equal(after.strips_created, before[i].strips_created);
    assert_true(after.strips_reused > before[i].strips_reused);
  }
  uint64_t early = 0;
  for (int rep = 0; rep < 3; rep++) {
    dispatch *da = NULL, *db = NULL;
    uint64_t ia = next_request_id++, ib = next_request_id++;
    check_ok(dispatch_create(m, "digest", &p, 4, &a.img, ia, x, &da, &e), &e);
    check_ok(dispatch_create(m, "digest", &p, 4, &b.img, ib, x, &db, &e), &e);
    s.mode = DELIVER_SCRAMBLED;
    s.n_ds = 0;
    sim_start(&s, da, ia);
    sim_start(&s, db, ib);
    sim_run(&s);
    dispatch_result ra, rb;
    dispatch_get_result(da, &ra);
    dispatch_get_result(db, &rb);
    assert_int_equal(ra.state, DISPATCH_DONE);
    assert_int_equal(rb.state, DISPATCH_DONE);
    size_t n = (size_t)ra.n_logits;
    assert_true(xt_rel_diff(ra.logits, want_a, n) <= LOGIT_TOL);
    assert_true(xt_rel_diff(rb.logits, want_b, n) <= LOGIT_TOL);
    dispatch_destroy(da);
    dispatch_destroy(db);
    s.n_ds = 0;
    sim_check_idle(&s);
  }
  for (int i = 0; i < 4; i++) {
    tile_engine_stats(s.eng[i], &after);
    early += after.rows_before_job;
  }
  assert_true(early > 0);
  plan_free(&p);
  free(want_a);
  free(want_b);
  free(a.data);
  free(b.data);
  sim_free(&s);
  xexec_destroy(x);
  model_destroy(m);
}

/* A slower device is emulated by stretching wall time to CPU time / speed. */
static void test_speed_emulation(void **state) {
  (void)state;
  xt_rng r = {3};
  model *m = build_fused("vgg16c", SIDE_PX);
  xexec *x = NULL;
  err e = {0};
  check_ok(xexec_create(m, 1, &x, &e), &e);
  tile_options o = tile_default_options();
  o.speed = 0.25;
  sim s;
  sim_init(&s, 2, &o, 1);
  sim_add_model(&s, "digest", m);
  plan_device devs[2];
  random_devices(devs, 2, &r);
  test_image t = make_image(1, SIDE_PX, SIDE_PX, &r);
  plan_options po = options_for(&t.img);
  plan p;
  check_ok(plan_equal(m, devs, 2, &po, &p, &e), &e);
  dispatch *d = NULL;
  check_ok(dispatch_create(m, "digest", &p, 2, &t.img, 77, x, &d, &e), &e);
  s.mode = DELIVER_FIFO;
  sim_start(&s, d, 77);
  sim_run(&s);
  dispatch_result res;
  dispatch_get_result(d, &res);
  assert_int_equal(res.state, DISPATCH_DONE);
  for (int i = 0; i < 2; i++) {
    const dispatch_device *dv = &res.devices[i];
    assert_true(dv->cpu_ms > 0);
    assert_true(dv->compute_ms >= dv->cpu_ms / o.speed * 0.99);
  }
  dispatch_destroy(d);
  plan_free(&p);
  free(t.data);
  sim_free(&s);
  xexec_destroy(x);
  model_destroy(m);
}

/* ---- failures --------------------------------------------------------------------- */

typedef struct fixture {
  model *m;
  xexec *x;
  test_image t;
  plan p;
  plan_device devs[3];
} fixture;

static void fixture_init(fixture *f, const char *name) {
  xt_rng r = {11};
  memset(f, 0, sizeof *f);
  f->m = build_fused(name, SIDE_PX);
  err e = {0};
  check_ok(xexec_create(f->m, 1, &f->x, &e), &e);
  f->t = make_image(0, SIDE_PX, SIDE_PX, &r);
  random_devices(f->devs, 3, &r);
  plan_options po = options_for(&f->t.img);
  check_ok(plan_equal(f->m, f->devs, 3, &po, &f->p, &e), &e);
}

static void fixture_free(fixture *f) {
  plan_free(&f->p);
  free(f->t.data);
  xexec_destroy(f->x);
  model_destroy(f->m);
}

/* Runs a request that must fail; returns its result's status. */
static uint32_t run_failing(sim *s, fixture *f, const char *digest, dispatch_result *res,
                            dispatch **dp) {
  err e = {0};
  uint64_t id = next_request_id++;
  check_ok(dispatch_create(f->m, digest, &f->p, 3, &f->t.img, id, f->x, dp, &e), &e);
  s->n_ds = 0;
  sim_start(s, *dp, id);
  sim_run(s);
  dispatch_get_result(*dp, res);
  assert_int_equal(res->state, DISPATCH_FAILED);
  sim_check_idle(s);
  return res->status;
}

static void test_unknown_digest(void **state) {
  (void)state;
  fixture f;
  fixture_init(&f, "resnet18c");
  sim s;
  sim_init(&s, 3, NULL, 1);
  sim_add_model(&s, "digest", f.m);
  dispatch *d = NULL;
  dispatch_result res;
  assert_int_equal(run_failing(&s, &f, "no-such-digest", &res, &d), GRPC_STATUS_NOT_FOUND);
  assert_non_null(strstr(res.message, "unknown model digest"));
  assert_non_null(strstr(res.message, "no-such-digest"));
  dispatch_destroy(d);
  sim_free(&s);
  fixture_free(&f);
}

static const model *provide(void *ctx, const char *digest) {
  return strcmp(digest, "digest") == 0 ? ctx : NULL;
}

/* Engines that learn models on first use, through the provider. */
static void test_model_provider(void **state) {
  (void)state;
  fixture f;
  fixture_init(&f, "resnet18c");
  tile_options o = tile_default_options();
  o.find_model = provide;
  o.find_model_ctx = f.m;
  sim s;
  sim_init(&s, 3, &o, 4);
  float *want = single_device(f.x, &f.t.img);
  check_request(&s, f.m, f.x, &f.p, 3, &f.t.img, want, DELIVER_SCRAMBLED);
  dispatch *d = NULL;
  dispatch_result res;
  assert_int_equal(run_failing(&s, &f, "digest2", &res, &d), GRPC_STATUS_NOT_FOUND);
  dispatch_destroy(d);
  free(want);
  sim_free(&s);
  fixture_free(&f);
}

/* One engine knows the digest as another model: its TileError fails the
 * request with its message; Release clears every engine. */
static void test_engine_error_fails_request(void **state) {
  (void)state;
  fixture f;
  fixture_init(&f, "resnet18c");
  model *other = build_fused("resnet18c", SIDE_PX + 8);
  for (deliver_mode mode = 0; mode < DELIVER_MODES; mode++) {
    sim s;
    sim_init(&s, 3, NULL, 3 + mode);
    s.mode = mode;
    err e = {0};
    check_ok(tile_engine_add_model(s.eng[0], "digest", f.m, 1, &e), &e);
    check_ok(tile_engine_add_model(s.eng[1], "digest", other, 1, &e), &e);
    check_ok(tile_engine_add_model(s.eng[2], "digest", f.m, 1, &e), &e);
    dispatch *d = NULL;
    dispatch_result res;
    uint32_t status = run_failing(&s, &f, "digest", &res, &d);
    assert_true(s.tile_errors >= 1);
    assert_int_equal(status, s.first_tile_error_code);
    assert_non_null(strstr(res.message, s.first_tile_error));
    assert_non_null(strstr(res.message, "device 1"));
    dispatch_destroy(d);
    sim_free(&s);
  }
  model_destroy(other);
  fixture_free(&f);
}

/* A dead agent: dispatch_fail releases every device's state. */
static void test_dispatch_fail_releases(void **state) {
  (void)state;
  fixture f;
  fixture_init(&f, "vgg13c");
  sim s;
  sim_init(&s, 3, NULL, 1);
  sim_add_model(&s, "digest", f.m);
  err e = {0};
  dispatch *d = NULL;
  check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 500, f.x, &d, &e), &e);
  s.mode = DELIVER_STREAMS;
  sim_start(&s, d, 500);
  for (int i = 0; i < 5 && s.nq > 0; i++) sim_step(&s);
  dispatch_outbox out = {0};
  dispatch_fail(d, GRPC_STATUS_UNAVAILABLE, "agent dev2 stopped answering", &out);
  int releases = out.n;
  sim_take_dispatch(&s, &out);
  dispatch_outbox_free(&out);
  assert_int_equal(releases, 3);
  sim_run(&s);
  dispatch_result res;
  dispatch_get_result(d, &res);
  assert_int_equal(res.state, DISPATCH_FAILED);
  assert_int_equal(res.status, GRPC_STATUS_UNAVAILABLE);
  assert_string_equal(res.message, "agent dev2 stopped answering");
  sim_check_idle(&s);
  dispatch_destroy(d);
  sim_free(&s);
  fixture_free(&f);
}

/* The packed jobs a dispatch sends, for building bad messages from. */
static Edgedi__V1__ExecuteIn **jobs_of(fixture *f, uint64_t id, int *n) {
  err e = {0};
  dispatch *d = NULL;
  check_ok(dispatch_create(f->m, "digest", &f->p, 3, &f->t.img, id, f->x, &d, &e), &e);
  dispatch_outbox out = {0};
  check_ok(dispatch_start(d, &out, &e), &e);
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

static void free_jobs(Edgedi__V1__ExecuteIn **jobs, int n) {
  for (int i = 0; i < n; i++) edgedi__v1__execute_in__free_unpacked(jobs[i], NULL);
  free(jobs);
}

/* Feeds one message to an engine; expects exactly one TileError with
 * `code` whose message contains `what`. */
static void expect_tile_error(tile_engine *t, const Edgedi__V1__ExecuteIn *in, uint32_t code,
                              const char *what) {
  tile_outbox out = {0};
  err e = {0};
  check_ok(tile_engine_handle(t, in, &out, &e), &e);
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

/* Sends `in` (a job) and expects no error. */
static void expect_quiet(tile_engine *t, const Edgedi__V1__ExecuteIn *in) {
  tile_outbox out = {0};
  err e = {0};
  check_ok(tile_engine_handle(t, in, &out, &e), &e);
  for (int i = 0; i < out.n; i++) {
    Edgedi__V1__ExecuteOut *o = edgedi__v1__execute_out__unpack(NULL, out.msgs[i].len, out.msgs[i].data);
    assert_non_null(o);
    if (o->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_ERROR) fail_msg("TileError: %s", o->error->message);
    edgedi__v1__execute_out__free_unpacked(o, NULL);
  }
  tile_outbox_free(&out);
}

/* The job of `segment` among a device's jobs (device index `dev`). */
static Edgedi__V1__TileJob *job_at(fixture *f, Edgedi__V1__ExecuteIn **jobs, int n, int segment,
                                   int k) {
  (void)f;
  int seen = 0;
  for (int i = 0; i < n; i++)
    if (jobs[i]->job->segment == (uint32_t)segment && seen++ == k) return jobs[i]->job;
  fail_msg("no job %d of segment %d", k, segment);
  return NULL;
}

static Edgedi__V1__ExecuteIn wrap_job(Edgedi__V1__TileJob *j) {
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_JOB;
  in.job = j;
  return in;
}

static void test_malformed_jobs(void **state) {
  (void)state;
  fixture f;
  fixture_init(&f, "resnet18c");
  int n;
  Edgedi__V1__ExecuteIn **jobs = jobs_of(&f, 900, &n);
  tile_engine *t = NULL;
  err e = {0};
  check_ok(tile_engine_create(NULL, &t, &e), &e);
  check_ok(tile_engine_add_model(t, "digest", f.m, 1, &e), &e);
  Edgedi__V1__TileJob *j0 = job_at(&f, jobs, n, 0, 0), *j1 = job_at(&f, jobs, n, 1, 1);
  Edgedi__V1__ExecuteIn in;
  uint64_t id = 1000;
  /* Each case on a fresh request id: a failed request is dropped. */
#define BAD_JOB(job, mutate, undo, code, what) \
  do {                                           \
    (job)->request_id = id++;                    \
    mutate;                                      \
    in = wrap_job(job);                          \
    expect_tile_error(t, &in, code, what);       \
    undo;                                        \
  } while (0)
  Edgedi__V1__RowRange *saved = j1->in_rows;
  BAD_JOB(j1, j1->in_rows = NULL, j1->in_rows = saved, GRPC_STATUS_INVALID_ARGUMENT, "in_rows");
  uint32_t lo = j1->in_rows->lo;
  BAD_JOB(j1, j1->in_rows->lo = lo + 1, j1->in_rows->lo = lo, GRPC_STATUS_INVALID_ARGUMENT,
          "input rows");
  uint32_t end = j1->end_layer;
  BAD_JOB(j1, j1->end_layer = 100000, j1->end_layer = end, GRPC_STATUS_OUT_OF_RANGE, "layers");
  BAD_JOB(j1, j1->end_layer = j1->first_layer, j1->end_layer = end, GRPC_STATUS_OUT_OF_RANGE,
          "range");
  uint32_t hi = j1->out_rows->hi;
  BAD_JOB(j1, j1->out_rows->hi = 4000000000u, j1->out_rows->hi = hi, GRPC_STATUS_OUT_OF_RANGE,
          "output rows");
  char *dg = j1->model_digest;
  BAD_JOB(j1, j1->model_digest = "other", j1->model_digest = dg, GRPC_STATUS_NOT_FOUND,
          "unknown model digest");
  Edgedi__V1__Image *im = j0->image;
  BAD_JOB(j0, j0->image = NULL, j0->image = im, GRPC_STATUS_INVALID_ARGUMENT, "carries none");
  uint32_t ch = im->channels;
  BAD_JOB(j0, im->channels = 2, im->channels = ch, GRPC_STATUS_INVALID_ARGUMENT, "channels");
  size_t len = im->u8.len;
  BAD_JOB(j0, im->u8.len = len - 1, im->u8.len = len, GRPC_STATUS_INVALID_ARGUMENT, "bytes");
  uint32_t rlo = im->row_lo;
  BAD_JOB(j0, im->row_lo = rlo + 1, im->row_lo = rlo, GRPC_STATUS_OUT_OF_RANGE, "rows");
  ProtobufCBinaryData f32 = im->f32;
  BAD_JOB(j0, im->f32 = im->u8, im->f32 = f32, GRPC_STATUS_INVALID_ARGUMENT, "exactly one");
  if (j1->n_exports > 0) {
    uint32_t xhi = j1->exports[0]->rows->hi;
    BAD_JOB(j1, j1->exports[0]->rows->hi = j1->out_rows->hi + 1,
            j1->exports[0]->rows->hi = xhi, GRPC_STATUS_OUT_OF_RANGE, "export");
  }
  /* The same segment twice. */
  j1->request_id = id;
  in = wrap_job(j1);
  expect_quiet(t, &in);
  expect_tile_error(t, &in, GRPC_STATUS_INVALID_ARGUMENT, "second job");
  /* Nothing of the failed requests is left. */
  tile_stats st;
  tile_engine_stats(t, &st);
  assert_int_equal(st.requests, 0);
  /* An empty message, a Ping. */
  Edgedi__V1__ExecuteIn empty = EDGEDI__V1__EXECUTE_IN__INIT;
  expect_tile_error(t, &empty, GRPC_STATUS_INVALID_ARGUMENT, "no message");
  Edgedi__V1__Ping ping = EDGEDI__V1__PING__INIT;
  ping.seq = 42;
  ping.reply_bytes = 1000;
  Edgedi__V1__ExecuteIn pin = EDGEDI__V1__EXECUTE_IN__INIT;
  pin.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_PING;
  pin.ping = &ping;
  tile_outbox out = {0};
  check_ok(tile_engine_handle(t, &pin, &out, &e), &e);
  assert_int_equal(out.n, 1);
  Edgedi__V1__ExecuteOut *pong = edgedi__v1__execute_out__unpack(NULL, out.msgs[0].len, out.msgs[0].data);
  assert_int_equal(pong->msg_case, EDGEDI__V1__EXECUTE_OUT__MSG_PONG);
  assert_int_equal(pong->pong->seq, 42);
  assert_int_equal(pong->pong->payload.len, 1000);
  edgedi__v1__execute_out__free_unpacked(pong, NULL);
  tile_outbox_free(&out);
#undef BAD_JOB
  tile_engine_destroy(t);
  free_jobs(jobs, n);
  fixture_free(&f);
}

static Edgedi__V1__ExecuteIn wrap_rows(Edgedi__V1__RowsData *rd) {
  Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
  in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_ROWS;
  in.rows = rd;
  return in;
}

/* Rows that do not fit: unknown request, outside the tensor or the job,
 * wrong shape or length, twice, after the job ran; scales nobody waits
 * for. Each a TileError, never a crash. */
static void test_bad_rows_and_scales(void **state) {
  (void)state;
  fixture f;
  fixture_init(&f, "resnet18c");
  int n;
  Edgedi__V1__ExecuteIn **jobs = jobs_of(&f, 1, &n);
  tile_engine *t = NULL;
  err e = {0};
  check_ok(tile_engine_create(NULL, &t, &e), &e);
  check_ok(tile_engine_add_model(t, "digest", f.m, 1, &e), &e);
  Edgedi__V1__TileJob *j1 = job_at(&f, jobs, n, 1, 1);
  const model *m = f.m;
  model_shape is = model_tensor_shape(m, (int)j1->first_layer - 1);
  size_t row_bytes = (size_t)is.w * is.c * sizeof(float);
  uint8_t *buf = calloc(4, row_bytes);
  assert_non_null(buf);
  Edgedi__V1__RowsData rd = EDGEDI__V1__ROWS_DATA__INIT;
  rd.segment = 0;
  rd.row_lo = j1->in_rows->lo;
  rd.rows = 1;
  rd.width = (uint32_t)is.w;
  rd.channels = (uint32_t)is.c;
  rd.data.data = buf;
  rd.data.len = row_bytes;
  Edgedi__V1__ExecuteIn in = wrap_rows(&rd);
  rd.request_id = 5000;
  expect_tile_error(t, &in, GRPC_STATUS_NOT_FOUND, "no job");
  uint64_t id = 6000;
  /* Each case: the job, then a bad RowsData. */
#define BAD_ROWS(mutate, undo, code, what)  \
  do {                                       \
    j1->request_id = rd.request_id = id++;   \
    Edgedi__V1__ExecuteIn jin = wrap_job(j1); \
    expect_quiet(t, &jin);                   \
    mutate;                                  \
    expect_tile_error(t, &in, code, what);   \
    undo;                                    \
  } while (0)
  BAD_ROWS(rd.row_lo = 4000000000u, rd.row_lo = j1->in_rows->lo, GRPC_STATUS_OUT_OF_RANGE,
           "shape");
  BAD_ROWS(rd.row_lo = j1->in_rows->hi, rd.row_lo = j1->in_rows->lo, GRPC_STATUS_OUT_OF_RANGE,
           "not input rows");
  BAD_ROWS(rd.width = 1u << 30, rd.width = (uint32_t)is.w, GRPC_STATUS_OUT_OF_RANGE, "shape");
  BAD_ROWS((rd.width = (uint32_t)is.c, rd.channels = (uint32_t)is.w),
           (rd.width = (uint32_t)is.w, rd.channels = (uint32_t)is.c), GRPC_STATUS_INVALID_ARGUMENT,
           "wide");
  BAD_ROWS(rd.data.len = row_bytes - 3, rd.data.len = row_bytes, GRPC_STATUS_INVALID_ARGUMENT,
           "bytes");
  BAD_ROWS(rd.rows = 0, rd.rows = 1, GRPC_STATUS_OUT_OF_RANGE, "shape");
  /* Twice the same row. */
  BAD_ROWS(expect_quiet(t, &in), (void)0, GRPC_STATUS_INVALID_ARGUMENT, "twice");
  /* A scale for a job that is not paused, one for an unknown request. */
  Edgedi__V1__FeScale fs = EDGEDI__V1__FE_SCALE__INIT;
  float scale[4] = {1, 1, 1, 1};
  fs.scale = scale;
  fs.n_scale = 4;
  fs.segment = 1;
  Edgedi__V1__ExecuteIn sin = EDGEDI__V1__EXECUTE_IN__INIT;
  sin.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_FE_SCALE;
  sin.fe_scale = &fs;
  fs.request_id = 7000;
  expect_tile_error(t, &sin, GRPC_STATUS_INVALID_ARGUMENT, "not waiting");
  j1->request_id = fs.request_id = 7001;
  Edgedi__V1__ExecuteIn jin = wrap_job(j1);
  expect_quiet(t, &jin);
  expect_tile_error(t, &sin, GRPC_STATUS_INVALID_ARGUMENT, "not waiting");
  /* Messages of a dropped or released request are ignored. */
  tile_outbox out = {0};
  check_ok(tile_engine_handle(t, &sin, &out, &e), &e);
  assert_int_equal(out.n, 0);
  rd.request_id = 7001;
  check_ok(tile_engine_handle(t, &in, &out, &e), &e);
  assert_int_equal(out.n, 0);
  j1->request_id = 7002;
  expect_quiet(t, &jin);
  Edgedi__V1__Release rel = EDGEDI__V1__RELEASE__INIT;
  rel.request_id = 7002;
  Edgedi__V1__ExecuteIn rin = EDGEDI__V1__EXECUTE_IN__INIT;
  rin.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_RELEASE;
  rin.release = &rel;
  check_ok(tile_engine_handle(t, &rin, &out, &e), &e);
  rd.request_id = 7002;
  check_ok(tile_engine_handle(t, &in, &out, &e), &e);
  assert_int_equal(out.n, 0);
  tile_outbox_free(&out);
  tile_stats st;
  tile_engine_stats(t, &st);
  assert_int_equal(st.requests, 0);
  /* Rows for a later job are kept, up to the engine's budget. */
  tile_engine *tight = NULL;
  tile_options o = tile_default_options();
  o.pending_bytes = row_bytes;
  check_ok(tile_engine_create(&o, &tight, &e), &e);
  check_ok(tile_engine_add_model(tight, "digest", f.m, 1, &e), &e);
  j1->request_id = rd.request_id = 8000;
  expect_quiet(tight, &jin);
  rd.segment = 5;
  expect_quiet(tight, &in);
  rd.row_lo++;
  expect_tile_error(tight, &in, GRPC_STATUS_RESOURCE_EXHAUSTED, "before their jobs");
  tile_engine_destroy(tight);
#undef BAD_ROWS
  free(buf);
  tile_engine_destroy(t);
  free_jobs(jobs, n);
  fixture_free(&f);
}

/* The dispatcher refuses bad plans and images up front, and fails a request
 * whose agents send what it did not ask for. */
static void test_dispatch_checks(void **state) {
  (void)state;
  fixture f;
  fixture_init(&f, "vgg16c");
  err e = {0};
  dispatch *d = NULL;
  plan_segment saved = f.p.segments[0];
  f.p.segments[0].parts[1].out.lo++;
  assert_int_equal(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 1, f.x, &d, &e), ERR_RANGE);
  f.p.segments[0] = saved;
  f.p.segments[0].parts[1].device = 0;
  assert_int_equal(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 1, f.x, &d, &e), ERR_INVALID);
  f.p.segments[0] = saved;
  assert_int_equal(dispatch_create(f.m, "digest", &f.p, 2, &f.t.img, 1, f.x, &d, &e), ERR_RANGE);
  assert_int_equal(dispatch_create(f.m, "", &f.p, 3, &f.t.img, 1, f.x, &d, &e), ERR_INVALID);
  preprocess_image small = f.t.img;
  small.full_height = small.rows = SIDE_PX - 1;
  small.bytes -= (size_t)small.width;
  assert_int_equal(dispatch_create(f.m, "digest", &f.p, 3, &small, 1, f.x, &d, &e), ERR_SHAPE);
  assert_null(d);

  /* An agent bug: rows nobody asked for. */
  check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 2, f.x, &d, &e), &e);
  dispatch_outbox out = {0};
  check_ok(dispatch_start(d, &out, &e), &e);
  dispatch_outbox_clear(&out);
  model_shape os = f.m->layers[f.p.segments[0].end - 1].out;
  size_t len = (size_t)os.w * os.c * sizeof(float);
  uint8_t *buf = calloc(1, len);
  Edgedi__V1__RowsData rd = EDGEDI__V1__ROWS_DATA__INIT;
  rd.request_id = 2;
  rd.segment = 0;
  rd.dest = 2;
  rd.row_lo = (uint32_t)f.p.segments[0].parts[0].out.lo; /* device 0's top row: nobody's halo */
  rd.rows = 1;
  rd.width = (uint32_t)os.w;
  rd.channels = (uint32_t)os.c;
  rd.data.data = buf;
  rd.data.len = len;
  Edgedi__V1__ExecuteOut o = EDGEDI__V1__EXECUTE_OUT__INIT;
  o.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_ROWS;
  o.rows = &rd;
  assert_int_equal(dispatch_on_message(d, 0, &o, &out), DISPATCH_FAILED);
  dispatch_result res;
  dispatch_get_result(d, &res);
  assert_int_equal(res.status, GRPC_STATUS_INTERNAL);
  assert_non_null(strstr(res.message, "not asked for"));
  assert_int_equal(out.n, 3); /* Release to each device */
  dispatch_outbox_clear(&out);
  /* Once failed, messages are ignored. */
  assert_int_equal(dispatch_on_message(d, 0, &o, &out), DISPATCH_FAILED);
  assert_int_equal(out.n, 0);
  dispatch_destroy(d);

  /* FE sums of the wrong size; a message from a device outside the plan. */
  check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 3, f.x, &d, &e), &e);
  check_ok(dispatch_start(d, &out, &e), &e);
  dispatch_outbox_clear(&out);
  int fe = -1;
  for (int l = 0; l < f.p.segments[0].end && fe < 0; l++)
    if (f.m->layers[l].op == MODEL_OP_FE) fe = l;
  assert_true(fe >= 0);
  double sums[3] = {0};
  Edgedi__V1__RowRange owned = EDGEDI__V1__ROW_RANGE__INIT;
  Edgedi__V1__FeSums fs = EDGEDI__V1__FE_SUMS__INIT;
  fs.request_id = 3;
  fs.segment = 0;
  fs.layer = (uint32_t)fe;
  fs.sums = sums;
  fs.n_sums = 3;
  fs.owned = &owned;
  o.msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_FE_SUMS;
  o.fe_sums = &fs;
  assert_int_equal(dispatch_on_message(d, 7, &o, &out), DISPATCH_FAILED);
  dispatch_destroy(d);
  dispatch_outbox_clear(&out);
  check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 3, f.x, &d, &e), &e);
  check_ok(dispatch_start(d, &out, &e), &e);
  dispatch_outbox_clear(&out);
  assert_int_equal(dispatch_on_message(d, 1, &o, &out), DISPATCH_FAILED);
  dispatch_get_result(d, &res);
  assert_non_null(strstr(res.message, "unexpected sums"));
  dispatch_destroy(d);
  dispatch_outbox_free(&out);
  free(buf);
  fixture_free(&f);
}

/* Mutated packed messages (bit flips, truncation) into an engine and the
 * dispatcher: whatever still decodes is refused or run, never a crash. */
static void test_mutated_messages(void **state) {
  (void)state;
  fixture f;
  fixture_init(&f, "resnet18c");
  xt_rng r = {1234};
  err e = {0};
  dispatch *d = NULL;
  check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 1, f.x, &d, &e), &e);
  dispatch_outbox jobs = {0};
  check_ok(dispatch_start(d, &jobs, &e), &e);
  /* A real run's agent messages, to mutate for the dispatcher. */
  sim s;
  sim_init(&s, 3, NULL, 9);
  sim_add_model(&s, "digest", f.m);
  for (int i = 0; i < jobs.n; i++) {
    uint8_t *copy = malloc(jobs.msgs[i].len ? jobs.msgs[i].len : 1);
    memcpy(copy, jobs.msgs[i].data, jobs.msgs[i].len);
    sim_push(&s, -1, jobs.msgs[i].device, copy, jobs.msgs[i].len);
  }
  s.ds[0] = d;
  s.ds_id[0] = 1;
  s.n_ds = 1;
  s.mode = DELIVER_FIFO;
  /* Collect what the agents send before delivering it. */
  sim_msg agent_msgs[256];
  int n_agent = 0;
  while (s.nq > 0) {
    if (s.q[0].to < 0 && n_agent < 256) {
      agent_msgs[n_agent] = s.q[0];
      agent_msgs[n_agent].data = malloc(s.q[0].len ? s.q[0].len : 1);
      memcpy(agent_msgs[n_agent].data, s.q[0].data, s.q[0].len);
      n_agent++;
    }
    sim_step(&s);
  }
  sim_free(&s);
  dispatch_destroy(d);
  tile_engine *t = NULL;
  check_ok(tile_engine_create(NULL, &t, &e), &e);
  check_ok(tile_engine_add_model(t, "digest", f.m, 1, &e), &e);
  for (int iter = 0; iter < 300; iter++) {
    bool to_agent = iter % 2 == 0;
    const uint8_t *src;
    size_t len;
    if (to_agent) {
      const dispatch_msg *jm = &jobs.msgs[xt_int(&r, 0, jobs.n - 1)];
      src = jm->data;
      len = jm->len;
    } else {
      const sim_msg *am = &agent_msgs[xt_int(&r, 0, n_agent - 1)];
      src = am->data;
      len = am->len;
    }
    uint8_t *buf = malloc(len + 1);
    memcpy(buf, src, len);
    int flips = xt_int(&r, 1, 4);
    for (int k = 0; k < flips; k++) buf[xt_int(&r, 0, (int)len - 1)] ^= (uint8_t)(1u << xt_int(&r, 0, 7));
    if (xt_int(&r, 0, 3) == 0) len = (size_t)xt_int(&r, 0, (int)len);
    if (to_agent) {
      Edgedi__V1__ExecuteIn *in = edgedi__v1__execute_in__unpack(NULL, len, buf);
      if (in) {
        tile_outbox out = {0};
        check_ok(tile_engine_handle(t, in, &out, &e), &e);
        tile_outbox_free(&out);
        edgedi__v1__execute_in__free_unpacked(in, NULL);
      }
    } else {
      Edgedi__V1__ExecuteOut *o = edgedi__v1__execute_out__unpack(NULL, len, buf);
      if (o) {
        dispatch *dd = NULL;
        check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 1, f.x, &dd, &e), &e);
        dispatch_outbox out = {0};
        check_ok(dispatch_start(dd, &out, &e), &e);
        dispatch_on_message(dd, xt_int(&r, -1, 3), o, &out);
        dispatch_outbox_free(&out);
        dispatch_destroy(dd);
        edgedi__v1__execute_out__free_unpacked(o, NULL);
      }
    }
    free(buf);
  }
  /* Release whatever the mutated jobs left behind. */
  for (uint64_t id = 0; id < 4; id++) {
    Edgedi__V1__Release rel = EDGEDI__V1__RELEASE__INIT;
    rel.request_id = id;
    Edgedi__V1__ExecuteIn rin = EDGEDI__V1__EXECUTE_IN__INIT;
    rin.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_RELEASE;
    rin.release = &rel;
    tile_outbox out = {0};
    check_ok(tile_engine_handle(t, &rin, &out, &e), &e);
    tile_outbox_free(&out);
  }
  tile_engine_destroy(t);
  for (int i = 0; i < n_agent; i++) free(agent_msgs[i].data);
  dispatch_outbox_free(&jobs);
  fixture_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_preprocess_strips_equal_whole),
      cmocka_unit_test(test_every_model_matches_single_device),
      cmocka_unit_test(test_repeats_and_concurrent_requests),
      cmocka_unit_test(test_speed_emulation),
      cmocka_unit_test(test_unknown_digest),
      cmocka_unit_test(test_model_provider),
      cmocka_unit_test(test_engine_error_fails_request),
      cmocka_unit_test(test_dispatch_fail_releases),
      cmocka_unit_test(test_malformed_jobs),
      cmocka_unit_test(test_bad_rows_and_scales),
      cmocka_unit_test(test_dispatch_checks),
      cmocka_unit_test(test_mutated_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

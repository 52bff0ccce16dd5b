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
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <grpc/status.h>

#include "runtime/fe_moments.h"
#include "runtime/zoo.h"
#include "tests/cluster_sim.h"

static void test_preprocess_strips_equal_whole(void **state) {
  (void)state;
  xt_rng r = {7};
  model_shape in = {.h = 9, .w = 5, .c = 3};
  for (int kind = 0; kind < 3; kind++) {
    cs_image t = cs_make_image(kind, in.h, in.w, &r);
    float whole[9 * 5 * 3], part[9 * 5 * 3];
    err e = {0};
    model_rows all = {0, in.h};
    cs_check_ok(preprocess_rows(&t.img, in, all, whole, &e), &e);
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
    cs_check_ok(preprocess_rows(&strip, in, some, part, &e), &e);
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
  /* Float samples must be numbers: the one that is not is named. */
  float fl[9 * 5 * 3];
  for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) fl[i] = 0.25f;
  preprocess_image flt = preprocess_whole(PREPROCESS_F32, fl, 9, 5, 3);
  cs_check_ok(preprocess_check(&flt, in, &e), &e);
  fl[(2 * 5 + 4) * 3 + 1] = NAN; /* row 2, column 4, channel 1 */
  assert_int_equal(preprocess_check(&flt, in, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "row 2, column 4, channel 1 is NaN"));
  fl[(2 * 5 + 4) * 3 + 1] = -INFINITY;
  assert_int_equal(preprocess_check(&flt, in, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "is infinite"));
  /* ... in a strip too, by the picture's row. */
  preprocess_image rows = flt;
  rows.row_lo = 1;
  rows.rows = 3;
  rows.data = fl + 5 * 3;
  rows.bytes = 3 * 5 * 3 * sizeof(float);
  assert_int_equal(preprocess_check(&rows, in, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "row 2, column 4"));
  float part_out[2 * 5 * 3];
  assert_int_equal(preprocess_rows(&rows, in, (model_rows){1, 2}, part_out, &e), ERR_INVALID);
}

/* Every zoo model, planners and random plans, every delivery order. */
static void test_every_model_matches_single_device(void **state) {
  (void)state;
  xt_rng r = {2024};
  int config = 0;
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = cs_build_fused(*name, CS_SIDE_PX);
    xexec *x = NULL;
    err e = {0};
    cs_check_ok(xexec_create(m, 1, &x, &e), &e);
    cs_sim s;
    cs_init(&s, CS_MAX_DEVICES, NULL, xt_next(&r));
    cs_add_model(&s, "digest", m);
    cs_image t = cs_make_image((int)(name - zoo_names()) % 3, CS_SIDE_PX, CS_SIDE_PX, &r);
    plan_options po = cs_plan_options(&t.img);
    float *want = cs_single_device(x, &t.img);
    plan_device devs[CS_MAX_DEVICES];
    for (int n = 1; n <= CS_MAX_DEVICES; n++) {
      cs_random_devices(devs, n, &r);
      plan p;
      po.fe_late = n % 2 == 0; /* FE sums at the FE, or early (fe_moments.h) */
      cs_check_ok(plan_proportional(m, devs, n, &po, &p, &e), &e);
      assert_true(p.fe_late == po.fe_late);
      cs_check_request(&s, m, x, &p, n, &t.img, want, (cs_mode)(config++ % CS_MODES));
      plan_free(&p);
    }
    cs_random_devices(devs, CS_MAX_DEVICES, &r);
    for (int n = 3; n <= CS_MAX_DEVICES; n += 3) {
      plan p;
      cs_check_ok(plan_equal(m, devs, n, &po, &p, &e), &e);
      cs_check_request(&s, m, x, &p, n, &t.img, want, (cs_mode)(config++ % CS_MODES));
      plan_free(&p);
    }
    for (int k = 0; k < 4; k++) {
      int n = xt_int(&r, 2, CS_MAX_DEVICES);
      plan p;
      cs_random_plan(m, devs, n, &po, k == 0, &r, &p);
      cs_check_request(&s, m, x, &p, n, &t.img, want, (cs_mode)(config++ % CS_MODES));
      plan_free(&p);
    }
    free(want);
    free(t.data);
    cs_free(&s);
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
  model *m = cs_build_fused("resnet18c", CS_SIDE_PX);
  xexec *x = NULL;
  err e = {0};
  cs_check_ok(xexec_create(m, 1, &x, &e), &e);
  cs_sim s;
  cs_init(&s, 4, NULL, 5);
  cs_add_model(&s, "digest", m);
  plan_device devs[4];
  cs_random_devices(devs, 4, &r);
  cs_image a = cs_make_image(0, CS_SIDE_PX, CS_SIDE_PX, &r), b = cs_make_image(0, CS_SIDE_PX, CS_SIDE_PX, &r);
  plan_options po = cs_plan_options(&a.img);
  plan p;
  cs_check_ok(plan_proportional(m, devs, 4, &po, &p, &e), &e);
  float *want_a = cs_single_device(x, &a.img), *want_b = cs_single_device(x, &b.img);
  cs_check_request(&s, m, x, &p, 4, &a.img, want_a, CS_STREAMS);
  tile_stats before[4], after;
  for (int i = 0; i < 4; i++) tile_engine_stats(s.eng[i], &before[i]);
  cs_check_request(&s, m, x, &p, 4, &b.img, want_b, CS_SCRAMBLED);
  for (int i = 0; i < 4; i++) {
    tile_engine_stats(s.eng[i], &after);
    assert_int_equal(after.strips_created, before[i].strips_created);
    assert_true(after.strips_reused > before[i].strips_reused);
  }
  uint64_t early = 0;
  for (int rep = 0; rep < 3; rep++) {
    dispatch *da = NULL, *db = NULL;
    uint64_t ia = cs_new_request_id(), ib = cs_new_request_id();
    cs_check_ok(dispatch_create(m, "digest", &p, 4, &a.img, ia, x, &da, &e), &e);
    cs_check_ok(dispatch_create(m, "digest", &p, 4, &b.img, ib, x, &db, &e), &e);
    s.mode = CS_SCRAMBLED;
    s.n_ds = 0;
    cs_start(&s, da, ia);
    cs_start(&s, db, ib);
    cs_run(&s);
    dispatch_result ra, rb;
    dispatch_get_result(da, &ra);
    dispatch_get_result(db, &rb);
    assert_int_equal(ra.state, DISPATCH_DONE);
    assert_int_equal(rb.state, DISPATCH_DONE);
    size_t n = (size_t)ra.n_logits;
    assert_true(xt_rel_diff(ra.logits, want_a, n) <= CS_LOGIT_TOL);
    assert_true(xt_rel_diff(rb.logits, want_b, n) <= CS_LOGIT_TOL);
    dispatch_destroy(da);
    dispatch_destroy(db);
    s.n_ds = 0;
    cs_check_idle(&s);
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
  cs_free(&s);
  xexec_destroy(x);
  model_destroy(m);
}

/* A slower device is emulated by stretching wall time to CPU time / speed. */
static void test_speed_emulation(void **state) {
  (void)state;
  xt_rng r = {3};
  model *m = cs_build_fused("vgg16c", CS_SIDE_PX);
  xexec *x = NULL;
  err e = {0};
  cs_check_ok(xexec_create(m, 1, &x, &e), &e);
  tile_options o = tile_default_options();
  o.speed = 0.25;
  cs_sim s;
  cs_init(&s, 2, &o, 1);
  cs_add_model(&s, "digest", m);
  plan_device devs[2];
  cs_random_devices(devs, 2, &r);
  cs_image t = cs_make_image(1, CS_SIDE_PX, CS_SIDE_PX, &r);
  plan_options po = cs_plan_options(&t.img);
  plan p;
  cs_check_ok(plan_equal(m, devs, 2, &po, &p, &e), &e);
  dispatch *d = NULL;
  cs_check_ok(dispatch_create(m, "digest", &p, 2, &t.img, 77, x, &d, &e), &e);
  s.mode = CS_FIFO;
  cs_start(&s, d, 77);
  cs_run(&s);
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
  cs_free(&s);
  xexec_destroy(x);
  model_destroy(m);
}

/* A job's TileResult says how long its message waited for the engine: about
 * nothing when handed over on arrival, at least the wait when it sat
 * (what the scheduler cannot see, scheduler/infer.h). */
static void test_results_report_queued_time(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "resnet18c");
  tile_options o = tile_default_options();
  const double waits[] = {0, 40};
  for (int k = 0; k < 2; k++) {
    cs_sim s;
    cs_init(&s, 3, &o, 5);
    cs_add_model(&s, "digest", f.m);
    s.job_queued_ms = waits[k];
    cs_run_ok(&s, &f);
    assert_true(s.results_seen > 0);
    assert_true(s.result_queued_min >= waits[k]);
    /* Handled at once: only the clock between two calls in one thread. */
    if (waits[k] == 0) assert_true(s.result_queued_max < 5);
    else assert_true(s.result_queued_max < waits[k] + 5000);
    cs_free(&s);
  }
  cs_fixture_free(&f);
}

/* Frees `prev`; for segment >= 0, the outbox's one loop message, which
 * must be the Resume of that segment (the caller frees it next time). */
static Edgedi__V1__ExecuteIn *next_resume(const tile_outbox *out, Edgedi__V1__ExecuteIn *prev,
                                          int segment) {
  if (prev) edgedi__v1__execute_in__free_unpacked(prev, NULL);
  if (segment < 0) return NULL;
  Edgedi__V1__ExecuteIn *r =
      edgedi__v1__execute_in__unpack(NULL, out->loop[0].len, out->loop[0].data);
  assert_non_null(r);
  assert_int_equal(r->msg_case, EDGEDI__V1__EXECUTE_IN__MSG_RESUME);
  assert_int_equal(r->resume->segment, (uint32_t)segment);
  return r;
}

/* A job that becomes ready while the engine still holds what another job
 * produced is resumed, not run in the same call: the shell sends the
 * first job's rows and result before the second computes (a neighbour may
 * be waiting for them). One device runs every segment; its later jobs are
 * waiting when the first runs, each ready the moment the one before ends. */
static void test_ready_jobs_wait_for_the_outbox(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "resnet18"); /* no FE: each run ends its job */
  plan_free(&f.p);
  plan_options po = cs_plan_options(&f.t.img);
  err e = {0};
  cs_check_ok(plan_equal(f.m, f.devs, 1, &po, &f.p, &e), &e);
  assert_true(f.p.n_segments >= 3);
  int n;
  Edgedi__V1__ExecuteIn **jobs = cs_jobs_of(&f, 1, &n);
  assert_int_equal(n, f.p.n_segments);
  tile_engine *t = NULL;
  cs_check_ok(tile_engine_create(NULL, &t, &e), &e);
  cs_check_ok(tile_engine_add_model(t, "digest", f.m, 1, &e), &e);
  for (int k = 1; k < n; k++) {
    assert_int_equal(jobs[k]->job->segment, (uint32_t)k);
    cs_expect_quiet(t, jobs[k]);
  }
  tile_outbox out = {0};
  const Edgedi__V1__ExecuteIn *next = jobs[0];
  Edgedi__V1__ExecuteIn *resume = NULL;
  for (int k = 0; k < n; k++) {
    cs_check_ok(tile_engine_handle(t, next, &out, &e), &e);
    tile_stats st;
    tile_engine_stats(t, &st);
    assert_int_equal(st.jobs_run, (uint64_t)k + 1); /* one job per call */
    assert_true(out.n >= 1);                        /* its result, at least */
    assert_int_equal(out.n_loop, k + 1 < n ? 1 : 0);
    resume = next_resume(&out, resume, k + 1 < n ? k + 1 : -1);
    if (resume) next = resume;
    tile_outbox_clear(&out);
  }
  tile_outbox_free(&out);
  tile_stats st;
  tile_engine_stats(t, &st);
  assert_int_equal(st.requests, 0);
  tile_engine_destroy(t);
  cs_free_jobs(jobs, n);
  cs_fixture_free(&f);
}

/* A result's spans (cs_check_spans), at most TILE_MAX_SPANS pairs, and
 * together its compute time. */
static void check_spans(const Edgedi__V1__TileResult *r) {
  cs_check_spans(r);
  assert_true(r->n_spans <= 2 * TILE_MAX_SPANS);
  double sum = 0;
  for (size_t i = 0; i < r->n_spans; i += 2) sum += r->spans[i + 1] - r->spans[i];
  assert_true(fabs(sum - r->compute_ms) <= 1e-3 * r->compute_ms + 0.01);
}

/* A job alone in its segment (TileJob.fe_local) goes through every FE of
 * its strip in the same call and stretch: no FeSums leave, nothing but the
 * next job's Resume loops back (a scale queued to itself ended a stretch
 * per FE, each slept out on an emulated board); its result reports the
 * emulated time of the whole run (speed 0.25: at least 4 x its CPU). */
static void test_lone_job_runs_through_its_fes(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "vgg16c"); /* FE layers in every segment */
  plan_free(&f.p);
  plan_options po = cs_plan_options(&f.t.img);
  err e = {0};
  cs_check_ok(plan_equal(f.m, f.devs, 1, &po, &f.p, &e), &e);
  tile_options o = tile_default_options();
  o.speed = 0.25;
  tile_engine *t = NULL;
  cs_check_ok(tile_engine_create(&o, &t, &e), &e);
  cs_check_ok(tile_engine_add_model(t, "digest", f.m, 1, &e), &e);
  int n;
  Edgedi__V1__ExecuteIn **jobs = cs_jobs_of(&f, 1, &n);
  for (int k = 0; k < n; k++) assert_true(jobs[k]->job->fe_local);
  for (int k = 1; k < n; k++) cs_expect_quiet(t, jobs[k]);
  tile_outbox out = {0};
  const Edgedi__V1__ExecuteIn *next = jobs[0];
  Edgedi__V1__ExecuteIn *resume = NULL;
  for (int k = 0; k < n; k++) {
    cs_check_ok(tile_engine_handle(t, next, &out, &e), &e);
    assert_int_equal(out.n_loop, k + 1 < n ? 1 : 0);
    int results = 0;
    for (int i = 0; i < out.n; i++) {
      Edgedi__V1__ExecuteOut *m =
          edgedi__v1__execute_out__unpack(NULL, out.msgs[i].len, out.msgs[i].data);
      assert_non_null(m);
      assert_int_not_equal(m->msg_case, EDGEDI__V1__EXECUTE_OUT__MSG_FE_SUMS);
      if (m->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT) {
        results++;
        assert_true(m->result->cpu_ms > 0);
        assert_true(m->result->compute_ms >= m->result->cpu_ms / o.speed * 0.99);
        check_spans(m->result);
      }
      edgedi__v1__execute_out__free_unpacked(m, NULL);
    }
    assert_int_equal(results, 1);
    resume = next_resume(&out, resume, k + 1 < n ? k + 1 : -1);
    if (resume) next = resume;
    tile_outbox_clear(&out);
  }
  tile_outbox_free(&out);
  tile_stats st;
  tile_engine_stats(t, &st);
  assert_int_equal(st.requests, 0);
  cs_free_jobs(jobs, n);
  tile_engine_destroy(t);
  cs_fixture_free(&f);
}

/* The kinds of the messages in an outbox, as a string: R rows (with the
 * destination after it), S sums, T result; then one L per loop message. */
static void outbox_kinds(const tile_outbox *o, char *buf, size_t len) {
  size_t k = 0;
  for (int i = 0; i < o->n && k + 3 < len; i++) {
    Edgedi__V1__ExecuteOut *m = edgedi__v1__execute_out__unpack(NULL, o->msgs[i].len, o->msgs[i].data);
    assert_non_null(m);
    if (m->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_ROWS) {
      buf[k++] = 'R';
      buf[k++] = (char)('0' + m->rows->dest);
    } else {
      buf[k++] = m->msg_case == EDGEDI__V1__EXECUTE_OUT__MSG_RESULT ? 'T' : '?';
    }
    edgedi__v1__execute_out__free_unpacked(m, NULL);
  }
  for (int i = 0; i < o->n_loop && k + 1 < len; i++) buf[k++] = 'L';
  buf[k] = 0;
}

/* Exports first (tile.h): the middle board's first job computes its top
 * rows and sends what board 0 needs, then its bottom rows for board 2
 * (each time handing back to the shell with a Resume), then the rest; the
 * rows are those a whole-strip run sends, bit for bit. */
static void test_exports_first(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "vgg16"); /* no FE; 64 rows: strips of 10 and more */
  int n;
  Edgedi__V1__ExecuteIn **jobs = cs_jobs_of(&f, 1, &n);
  Edgedi__V1__TileJob *j = cs_job_at(jobs, n, 0, 1);
  assert_int_equal(j->n_exports, 2);
  Edgedi__V1__ExecuteIn jin = cs_wrap_job(j);
  tile_outbox whole = {0}, out = {0};
  err e = {0};
  tile_options o = tile_default_options();
  o.whole_strips = true;
  tile_engine *tw = NULL, *tp = NULL;
  cs_check_ok(tile_engine_create(&o, &tw, &e), &e);
  cs_check_ok(tile_engine_create(NULL, &tp, &e), &e);
  cs_check_ok(tile_engine_add_model(tw, "digest", f.m, 1, &e), &e);
  cs_check_ok(tile_engine_add_model(tp, "digest", f.m, 1, &e), &e);
  char kinds[32];
  cs_check_ok(tile_engine_handle(tw, &jin, &whole, &e), &e);
  outbox_kinds(&whole, kinds, sizeof kinds);
  assert_string_equal(kinds, "R0R2T");
  const char *want[] = {"R0L", "R2L", "T"};
  for (int part = 0; part < 3; part++) {
    Edgedi__V1__ExecuteIn *resume = NULL;
    if (part == 0) {
      cs_check_ok(tile_engine_handle(tp, &jin, &out, &e), &e);
    } else {
      resume = edgedi__v1__execute_in__unpack(NULL, out.loop[0].len, out.loop[0].data);
      assert_non_null(resume);
      tile_outbox_clear(&out);
      cs_check_ok(tile_engine_handle(tp, resume, &out, &e), &e);
      edgedi__v1__execute_in__free_unpacked(resume, NULL);
    }
    outbox_kinds(&out, kinds, sizeof kinds);
    assert_string_equal(kinds, want[part]);
    if (part < 2) { /* the same packed rows as the whole run's */
      assert_int_equal(out.msgs[0].len, whole.msgs[part].len);
      assert_memory_equal(out.msgs[0].data, whole.msgs[part].data, out.msgs[0].len);
    }
  }
  tile_outbox_free(&out);
  tile_outbox_free(&whole);
  tile_engine_destroy(tw);
  tile_engine_destroy(tp);
  cs_free_jobs(jobs, n);
  cs_fixture_free(&f);
}

/* A job whose strip the agent made for it says so; the same plan again
 * finds every strip cached. */
static void test_results_say_fresh_strips(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "vgg16c");
  cs_sim s;
  cs_init(&s, 3, NULL, 7);
  cs_add_model(&s, "digest", f.m);
  for (int round = 0; round < 2; round++) {
    s.results_seen = s.results_fresh = 0;
    cs_run_ok(&s, &f);
    assert_true(s.results_seen > 0);
    assert_int_equal(s.results_fresh, round == 0 ? s.results_seen : 0);
  }
  cs_free(&s);
  cs_fixture_free(&f);
}

/* ---- failures --------------------------------------------------------------------- */

static void test_unknown_digest(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "resnet18c");
  cs_sim s;
  cs_init(&s, 3, NULL, 1);
  cs_add_model(&s, "digest", f.m);
  dispatch *d = NULL;
  dispatch_result res;
  assert_int_equal(cs_run_failing(&s, &f, "no-such-digest", &res, &d), GRPC_STATUS_NOT_FOUND);
  assert_non_null(strstr(res.message, "unknown model digest"));
  assert_non_null(strstr(res.message, "no-such-digest"));
  dispatch_destroy(d);
  cs_free(&s);
  cs_fixture_free(&f);
}

static const model *provide(void *ctx, const char *digest) {
  return strcmp(digest, "digest") == 0 ? ctx : NULL;
}

/* Engines that learn models on first use, through the provider. */
static void test_model_provider(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "resnet18c");
  tile_options o = tile_default_options();
  o.find_model = provide;
  o.find_model_ctx = f.m;
  cs_sim s;
  cs_init(&s, 3, &o, 4);
  float *want = cs_single_device(f.x, &f.t.img);
  cs_check_request(&s, f.m, f.x, &f.p, 3, &f.t.img, want, CS_SCRAMBLED);
  dispatch *d = NULL;
  dispatch_result res;
  assert_int_equal(cs_run_failing(&s, &f, "digest2", &res, &d), GRPC_STATUS_NOT_FOUND);
  dispatch_destroy(d);
  free(want);
  cs_free(&s);
  cs_fixture_free(&f);
}

/* One engine knows the digest as another model: its TileError fails the
 * request with its message; Release clears every engine. */
static void test_engine_error_fails_request(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "resnet18c");
  model *other = cs_build_fused("resnet18c", CS_SIDE_PX + 8);
  for (cs_mode mode = 0; mode < CS_MODES; mode++) {
    cs_sim s;
    cs_init(&s, 3, NULL, 3 + mode);
    s.mode = mode;
    err e = {0};
    cs_check_ok(tile_engine_add_model(s.eng[0], "digest", f.m, 1, &e), &e);
    cs_check_ok(tile_engine_add_model(s.eng[1], "digest", other, 1, &e), &e);
    cs_check_ok(tile_engine_add_model(s.eng[2], "digest", f.m, 1, &e), &e);
    dispatch *d = NULL;
    dispatch_result res;
    uint32_t status = cs_run_failing(&s, &f, "digest", &res, &d);
    assert_true(s.tile_errors >= 1);
    assert_int_equal(status, s.first_tile_error_code);
    assert_non_null(strstr(res.message, s.first_tile_error));
    assert_non_null(strstr(res.message, "device 1"));
    dispatch_destroy(d);
    cs_free(&s);
  }
  model_destroy(other);
  cs_fixture_free(&f);
}

/* A dead agent: dispatch_fail releases every device's state. */
static void test_dispatch_fail_releases(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "vgg13c");
  cs_sim s;
  cs_init(&s, 3, NULL, 1);
  cs_add_model(&s, "digest", f.m);
  err e = {0};
  dispatch *d = NULL;
  cs_check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 500, f.x, &d, &e), &e);
  s.mode = CS_STREAMS;
  cs_start(&s, d, 500);
  for (int i = 0; i < 5 && s.nq > 0; i++) cs_step(&s);
  dispatch_outbox out = {0};
  dispatch_fail(d, GRPC_STATUS_UNAVAILABLE, "agent dev2 stopped answering", &out);
  int releases = out.n;
  cs_take_dispatch(&s, &out);
  dispatch_outbox_free(&out);
  assert_int_equal(releases, 3);
  cs_run(&s);
  dispatch_result res;
  dispatch_get_result(d, &res);
  assert_int_equal(res.state, DISPATCH_FAILED);
  assert_int_equal(res.status, GRPC_STATUS_UNAVAILABLE);
  assert_string_equal(res.message, "agent dev2 stopped answering");
  cs_check_idle(&s);
  dispatch_destroy(d);
  cs_free(&s);
  cs_fixture_free(&f);
}

/* The packed jobs a dispatch sends, for building bad messages from. */

static void test_malformed_jobs(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "resnet18c");
  int n;
  Edgedi__V1__ExecuteIn **jobs = cs_jobs_of(&f, 900, &n);
  tile_engine *t = NULL;
  err e = {0};
  cs_check_ok(tile_engine_create(NULL, &t, &e), &e);
  cs_check_ok(tile_engine_add_model(t, "digest", f.m, 1, &e), &e);
  Edgedi__V1__TileJob *j0 = cs_job_at(jobs, n, 0, 0), *j1 = cs_job_at(jobs, n, 1, 1);
  Edgedi__V1__ExecuteIn in;
  uint64_t id = 1000;
  /* Each case on a fresh request id: a failed request is dropped. */
#define BAD_JOB(job, mutate, undo, code, what) \
  do {                                           \
    (job)->request_id = id++;                    \
    mutate;                                      \
    in = cs_wrap_job(job);                          \
    cs_expect_tile_error(t, &in, code, what);       \
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
  in = cs_wrap_job(j1);
  cs_expect_quiet(t, &in);
  cs_expect_tile_error(t, &in, GRPC_STATUS_INVALID_ARGUMENT, "second job");
  /* Nothing of the failed requests is left. */
  tile_stats st;
  tile_engine_stats(t, &st);
  assert_int_equal(st.requests, 0);
  /* An empty message, a Ping. */
  Edgedi__V1__ExecuteIn empty = EDGEDI__V1__EXECUTE_IN__INIT;
  cs_expect_tile_error(t, &empty, GRPC_STATUS_INVALID_ARGUMENT, "no message");
  Edgedi__V1__Ping ping = EDGEDI__V1__PING__INIT;
  ping.seq = 42;
  ping.reply_bytes = 1000;
  Edgedi__V1__ExecuteIn pin = EDGEDI__V1__EXECUTE_IN__INIT;
  pin.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_PING;
  pin.ping = &ping;
  tile_outbox out = {0};
  cs_check_ok(tile_engine_handle(t, &pin, &out, &e), &e);
  assert_int_equal(out.n, 1);
  Edgedi__V1__ExecuteOut *pong = edgedi__v1__execute_out__unpack(NULL, out.msgs[0].len, out.msgs[0].data);
  assert_int_equal(pong->msg_case, EDGEDI__V1__EXECUTE_OUT__MSG_PONG);
  assert_int_equal(pong->pong->seq, 42);
  assert_int_equal(pong->pong->payload.len, 1000);
  edgedi__v1__execute_out__free_unpacked(pong, NULL);
  tile_outbox_free(&out);
#undef BAD_JOB
  tile_engine_destroy(t);
  cs_free_jobs(jobs, n);
  cs_fixture_free(&f);
}

/* Rows that do not fit: unknown request, outside the tensor or the job,
 * wrong shape or length, twice, after the job ran; scales nobody waits
 * for. Each a TileError, never a crash. */
static void test_bad_rows_and_scales(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "resnet18c");
  int n;
  Edgedi__V1__ExecuteIn **jobs = cs_jobs_of(&f, 1, &n);
  tile_engine *t = NULL;
  err e = {0};
  cs_check_ok(tile_engine_create(NULL, &t, &e), &e);
  cs_check_ok(tile_engine_add_model(t, "digest", f.m, 1, &e), &e);
  Edgedi__V1__TileJob *j1 = cs_job_at(jobs, n, 1, 1);
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
  Edgedi__V1__ExecuteIn in = cs_wrap_rows(&rd);
  rd.request_id = 5000;
  cs_expect_tile_error(t, &in, GRPC_STATUS_NOT_FOUND, "no job");
  uint64_t id = 6000;
  /* Each case: the job, then a bad RowsData. */
#define BAD_ROWS(mutate, undo, code, what)  \
  do {                                       \
    j1->request_id = rd.request_id = id++;   \
    Edgedi__V1__ExecuteIn jin = cs_wrap_job(j1); \
    cs_expect_quiet(t, &jin);                   \
    mutate;                                  \
    cs_expect_tile_error(t, &in, code, what);   \
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
  /* Zero-masked rows (runtime/rowcodec.h) whose mask marks none of the
   * floats they carry, and an encoding nobody knows. */
  BAD_ROWS(rd.encoding = EDGEDI__V1__ROWS_ENCODING__ROWS_ZERO_MASK, rd.encoding = 0,
           GRPC_STATUS_INVALID_ARGUMENT, "carry");
  BAD_ROWS(rd.encoding = 7, rd.encoding = 0, GRPC_STATUS_INVALID_ARGUMENT, "encoding");
  /* Twice the same row. */
  BAD_ROWS(cs_expect_quiet(t, &in), (void)0, GRPC_STATUS_INVALID_ARGUMENT, "twice");
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
  cs_expect_tile_error(t, &sin, GRPC_STATUS_INVALID_ARGUMENT, "not waiting");
  j1->request_id = fs.request_id = 7001;
  Edgedi__V1__ExecuteIn jin = cs_wrap_job(j1);
  cs_expect_quiet(t, &jin);
  cs_expect_tile_error(t, &sin, GRPC_STATUS_INVALID_ARGUMENT, "not waiting");
  /* A Resume (the engine's own message) for a request the agent has no
   * job of, or for a job still waiting for its input, changes nothing. */
  Edgedi__V1__Resume rs = EDGEDI__V1__RESUME__INIT;
  rs.segment = 1;
  Edgedi__V1__ExecuteIn rsin = EDGEDI__V1__EXECUTE_IN__INIT;
  rsin.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_RESUME;
  rsin.resume = &rs;
  j1->request_id = rs.request_id = 7101;
  cs_expect_quiet(t, &jin);
  tile_stats before, after;
  tile_engine_stats(t, &before);
  for (int k = 0; k < 2; k++) {
    rs.request_id = k ? 7101 : 7100;
    tile_outbox quiet = {0};
    cs_check_ok(tile_engine_handle(t, &rsin, &quiet, &e), &e);
    assert_int_equal(quiet.n + quiet.n_loop, 0);
    tile_outbox_free(&quiet);
  }
  tile_engine_stats(t, &after);
  assert_int_equal(after.jobs_waiting, before.jobs_waiting);
  assert_int_equal(after.jobs_run, before.jobs_run);
  Edgedi__V1__Release rs_rel = EDGEDI__V1__RELEASE__INIT;
  rs_rel.request_id = 7101;
  Edgedi__V1__ExecuteIn rs_relin = EDGEDI__V1__EXECUTE_IN__INIT;
  rs_relin.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_RELEASE;
  rs_relin.release = &rs_rel;
  cs_expect_quiet(t, &rs_relin);
  j1->request_id = fs.request_id = 7001;
  /* Messages of a dropped or released request are ignored. */
  tile_outbox out = {0};
  cs_check_ok(tile_engine_handle(t, &sin, &out, &e), &e);
  assert_int_equal(out.n, 0);
  rd.request_id = 7001;
  cs_check_ok(tile_engine_handle(t, &in, &out, &e), &e);
  assert_int_equal(out.n, 0);
  j1->request_id = 7002;
  cs_expect_quiet(t, &jin);
  Edgedi__V1__Release rel = EDGEDI__V1__RELEASE__INIT;
  rel.request_id = 7002;
  Edgedi__V1__ExecuteIn rin = EDGEDI__V1__EXECUTE_IN__INIT;
  rin.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_RELEASE;
  rin.release = &rel;
  cs_check_ok(tile_engine_handle(t, &rin, &out, &e), &e);
  rd.request_id = 7002;
  cs_check_ok(tile_engine_handle(t, &in, &out, &e), &e);
  assert_int_equal(out.n, 0);
  tile_outbox_free(&out);
  tile_stats st;
  tile_engine_stats(t, &st);
  assert_int_equal(st.requests, 0);
  /* Rows for a later job are kept, up to the engine's budget. */
  tile_engine *tight = NULL;
  tile_options o = tile_default_options();
  o.pending_bytes = row_bytes;
  cs_check_ok(tile_engine_create(&o, &tight, &e), &e);
  cs_check_ok(tile_engine_add_model(tight, "digest", f.m, 1, &e), &e);
  j1->request_id = rd.request_id = 8000;
  cs_expect_quiet(tight, &jin);
  rd.segment = 5;
  cs_expect_quiet(tight, &in);
  rd.row_lo++;
  cs_expect_tile_error(tight, &in, GRPC_STATUS_RESOURCE_EXHAUSTED, "before their jobs");
  tile_engine_destroy(tight);
#undef BAD_ROWS
  free(buf);
  tile_engine_destroy(t);
  cs_free_jobs(jobs, n);
  cs_fixture_free(&f);
}

/* The dispatcher refuses bad plans and images up front, and fails a request
 * whose agents send what it did not ask for. */
static void test_dispatch_checks(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "vgg16c");
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
  small.full_height = small.rows = CS_SIDE_PX - 1;
  small.bytes -= (size_t)small.width;
  assert_int_equal(dispatch_create(f.m, "digest", &f.p, 3, &small, 1, f.x, &d, &e), ERR_SHAPE);
  assert_null(d);

  /* An agent bug: rows nobody asked for. */
  cs_check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 2, f.x, &d, &e), &e);
  dispatch_outbox out = {0};
  cs_check_ok(dispatch_start(d, &out, &e), &e);
  head_rows *hr = NULL; /* the head by rows: before the start only */
  cs_check_ok(head_rows_create(f.m, f.p.head_first, &hr, &e), &e);
  assert_non_null(hr);
  assert_int_equal(dispatch_set_head_rows(d, hr, &e), ERR_INVALID);
  head_rows_destroy(hr);
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
  cs_check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 3, f.x, &d, &e), &e);
  cs_check_ok(dispatch_start(d, &out, &e), &e);
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
  cs_check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 3, f.x, &d, &e), &e);
  cs_check_ok(dispatch_start(d, &out, &e), &e);
  dispatch_outbox_clear(&out);
  assert_int_equal(dispatch_on_message(d, 1, &o, &out), DISPATCH_FAILED);
  dispatch_get_result(d, &res);
  assert_non_null(strstr(res.message, "unexpected sums"));
  dispatch_destroy(d);
  /* Sums of the right size over the wrong chain (fe_moments.h): the plan
   * has vgg16c's early sums, which are FE_MOMENTS per channel. */
  assert_false(f.p.fe_late);
  int chain = fe_moments_chain(f.m, fe, f.p.segments[0].first);
  assert_true(chain > 0);
  size_t n_sums = fe_moments_size(f.m, fe, chain);
  double *moments = calloc(n_sums, sizeof *moments);
  assert_non_null(moments);
  fs.sums = moments;
  fs.n_sums = n_sums;
  fs.chain = (uint32_t)chain + 1;
  cs_check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 3, f.x, &d, &e), &e);
  cs_check_ok(dispatch_start(d, &out, &e), &e);
  dispatch_outbox_clear(&out);
  assert_int_equal(dispatch_on_message(d, 1, &o, &out), DISPATCH_FAILED);
  dispatch_get_result(d, &res);
  assert_int_equal(res.status, GRPC_STATUS_INTERNAL);
  assert_non_null(strstr(res.message, "chain"));
  dispatch_destroy(d);
  free(moments);
  dispatch_outbox_free(&out);
  free(buf);
  cs_fixture_free(&f);
}

/* Mutated packed messages (bit flips, truncation) into an engine and the
 * dispatcher: whatever still decodes is refused or run, never a crash. */
static void test_mutated_messages(void **state) {
  (void)state;
  cs_fixture f;
  cs_fixture_init(&f, "resnet18c");
  xt_rng r = {1234};
  err e = {0};
  dispatch *d = NULL;
  cs_check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 1, f.x, &d, &e), &e);
  dispatch_outbox jobs = {0};
  cs_check_ok(dispatch_start(d, &jobs, &e), &e);
  /* A real run's agent messages, to mutate for the dispatcher. */
  cs_sim s;
  cs_init(&s, 3, NULL, 9);
  cs_add_model(&s, "digest", f.m);
  for (int i = 0; i < jobs.n; i++) {
    uint8_t *copy = malloc(jobs.msgs[i].len ? jobs.msgs[i].len : 1);
    memcpy(copy, jobs.msgs[i].data, jobs.msgs[i].len);
    cs_push(&s, -1, jobs.msgs[i].device, copy, jobs.msgs[i].len);
  }
  s.ds[0] = d;
  s.ds_id[0] = 1;
  s.n_ds = 1;
  s.mode = CS_FIFO;
  /* Collect what the agents send before delivering it. */
  cs_msg agent_msgs[256];
  int n_agent = 0;
  while (s.nq > 0) {
    if (s.q[0].to < 0 && n_agent < 256) {
      agent_msgs[n_agent] = s.q[0];
      agent_msgs[n_agent].data = malloc(s.q[0].len ? s.q[0].len : 1);
      memcpy(agent_msgs[n_agent].data, s.q[0].data, s.q[0].len);
      n_agent++;
    }
    cs_step(&s);
  }
  cs_free(&s);
  dispatch_destroy(d);
  tile_engine *t = NULL;
  cs_check_ok(tile_engine_create(NULL, &t, &e), &e);
  cs_check_ok(tile_engine_add_model(t, "digest", f.m, 1, &e), &e);
  for (int iter = 0; iter < 300; iter++) {
    bool to_agent = iter % 2 == 0;
    const uint8_t *src;
    size_t len;
    if (to_agent) {
      const dispatch_msg *jm = &jobs.msgs[xt_int(&r, 0, jobs.n - 1)];
      src = jm->data;
      len = jm->len;
    } else {
      const cs_msg *am = &agent_msgs[xt_int(&r, 0, n_agent - 1)];
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
        cs_check_ok(tile_engine_handle(t, in, &out, &e), &e);
        tile_outbox_free(&out);
        edgedi__v1__execute_in__free_unpacked(in, NULL);
      }
    } else {
      Edgedi__V1__ExecuteOut *o = edgedi__v1__execute_out__unpack(NULL, len, buf);
      if (o) {
        dispatch *dd = NULL;
        cs_check_ok(dispatch_create(f.m, "digest", &f.p, 3, &f.t.img, 1, f.x, &dd, &e), &e);
        dispatch_outbox out = {0};
        cs_check_ok(dispatch_start(dd, &out, &e), &e);
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
    cs_check_ok(tile_engine_handle(t, &rin, &out, &e), &e);
    tile_outbox_free(&out);
  }
  tile_engine_destroy(t);
  for (int i = 0; i < n_agent; i++) free(agent_msgs[i].data);
  dispatch_outbox_free(&jobs);
  cs_fixture_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_preprocess_strips_equal_whole),
      cmocka_unit_test(test_every_model_matches_single_device),
      cmocka_unit_test(test_repeats_and_concurrent_requests),
      cmocka_unit_test(test_speed_emulation),
      cmocka_unit_test(test_results_report_queued_time),
      cmocka_unit_test(test_results_say_fresh_strips),
      cmocka_unit_test(test_ready_jobs_wait_for_the_outbox),
    cmocka_unit_test(test_lone_job_runs_through_its_fes),
      cmocka_unit_test(test_exports_first),
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

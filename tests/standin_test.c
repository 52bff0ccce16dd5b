/* standin_test.c — stand-ins (scheduler/dispatch.h): another agent repeats
 * a device's work within a running request, on the in-process cluster
 * (tests/cluster_sim.h: real tile engines, the dispatcher, packed messages
 * in random delivery orders).
 *
 * What must hold, for every zoo model and random plans over 3 devices:
 *  - a device killed at a random point of the request (whatever it had
 *    sent or been sent is lost with it) and replaced by a stand-in, on a
 *    spare engine or on an engine that has work of its own in the same
 *    request, leaves the request DONE with the single device's logits;
 *    so does a stand-in that is killed in turn and replaced again;
 *  - a stand-in that races a live device (a straggler's) changes nothing
 *    in the logits: the first copy of everything counts, and when the
 *    request is over every engine, the slower copy's too, holds nothing;
 *  - the dispatcher refuses a stand-in it cannot serve: no log kept, not
 *    started, a device without work, an id in use.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/zoo.h"
#include "tests/cluster_sim.h"

enum {
  DEVICES = 3,  /* in the plan: engines 0 .. 2 */
  SPARE = 3,    /* an engine outside the plan */
  ENGINES = 4,
  TRIALS = 3,   /* random plans per model and case */
  MAX_KILL_STEP = 60,
};

typedef struct trial {
  model *m;
  xexec *x;
  cs_image t;
  float *want;
  plan p;
  plan_device devs[DEVICES];
} trial;

static void trial_init(trial *tr, const char *name, xt_rng *r) {
  memset(tr, 0, sizeof *tr);
  tr->m = cs_build_fused(name, CS_SIDE_PX);
  err e = {0};
  cs_check_ok(xexec_create(tr->m, 1, &tr->x, &e), &e);
  tr->t = cs_make_image(xt_int(r, 0, 2), CS_SIDE_PX, CS_SIDE_PX, r);
  tr->want = cs_single_device(tr->x, &tr->t.img);
  cs_random_devices(tr->devs, DEVICES, r);
  plan_options po = cs_plan_options(&tr->t.img);
  cs_random_plan(tr->m, tr->devs, DEVICES, &po, false, r, &tr->p);
}

static void trial_free(trial *tr) {
  plan_free(&tr->p);
  free(tr->want);
  free(tr->t.data);
  xexec_destroy(tr->x);
  model_destroy(tr->m);
}

/* A device with work in the plan, at random. */
static int device_with_work(const plan *p, xt_rng *r) {
  for (;;) {
    int dev = xt_int(r, 0, DEVICES - 1);
    for (int si = 0; si < p->n_segments; si++)
      for (int k = 0; k < p->segments[si].n_parts; k++)
        if (p->segments[si].parts[k].device == dev) return dev;
  }
}

static dispatch *start(cs_sim *s, trial *tr, uint64_t id, cs_mode mode) {
  dispatch *d = NULL;
  err e = {0};
  cs_check_ok(dispatch_create(tr->m, "digest", &tr->p, DEVICES, &tr->t.img, id, tr->x, &d, &e),
              &e);
  cs_check_ok(dispatch_keep_log(d, &e), &e);
  s->mode = mode;
  cs_start(s, d, id);
  return d;
}

/* Delivers up to `steps` messages; whether the request is still running. */
static bool run_for(cs_sim *s, dispatch *d, int steps) {
  for (int i = 0; i < steps && s->nq > 0; i++) cs_step(s);
  dispatch_result res;
  dispatch_get_result(d, &res);
  return res.state == DISPATCH_RUNNING;
}

static void check_done(cs_sim *s, dispatch *d, const trial *tr, const char *what) {
  cs_run(s);
  dispatch_result res;
  dispatch_get_result(d, &res);
  if (res.state != DISPATCH_DONE)
    fail_msg("%s, %s: state %d: %s", tr->m->name, what, res.state, res.message);
  size_t n = model_shape_elems(tr->m->layers[tr->m->n_layers - 1].out);
  assert_int_equal(res.n_logits, (int)n);
  double diff = xt_rel_diff(res.logits, tr->want, n);
  if (!(diff <= CS_LOGIT_TOL))
    fail_msg("%s, %s, %d segments: logits differ by %g", tr->m->name, what, tr->p.n_segments,
             diff);
  for (int dev = 0; dev < DEVICES; dev++)
    assert_int_equal(res.devices[dev].results, res.devices[dev].jobs);
  cs_check_idle(s);
}

static void new_sim(cs_sim *s, const model *m, xt_rng *r) {
  cs_init(s, ENGINES, NULL, xt_next(r));
  cs_add_model(s, "digest", m);
}

/* Trial i of model `name`: a random plan; at a random point of the
 * request a device's work gets a stand-in, on the spare engine (odd i) or
 * on another device's; with `kill` the device dies there first. Whether
 * that point came before the request was over. */
static bool trial_run(const char *name, int i, bool kill, xt_rng *r) {
  trial tr;
  trial_init(&tr, name, r);
  cs_sim s;
  new_sim(&s, tr.m, r);
  uint64_t id = cs_new_request_id();
  dispatch *d = start(&s, &tr, id, (cs_mode)(i % CS_MODES));
  int dev = device_with_work(&tr.p, r);
  int host = i % 2 ? SPARE : (dev + 1 + xt_int(r, 0, DEVICES - 2)) % DEVICES;
  bool running = run_for(&s, d, xt_int(r, 0, MAX_KILL_STEP));
  if (running) {
    if (kill) cs_kill(&s, dev);
    cs_add_standin(&s, d, dev, id | (1ull << 40), host);
  }
  /* Both copies of a live device run to the end or to their Release. */
  check_done(&s, d, &tr,
             kill ? "a device killed and stood in for" : "a stand-in racing the device");
  dispatch_destroy(d);
  cs_free(&s);
  trial_free(&tr);
  return running;
}

static void test_dead_device_replaced(void **state) {
  (void)state;
  xt_rng r = {101};
  int killed = 0, runs = 0;
  for (const char *const *name = zoo_names(); *name; name++)
    for (int i = 0; i < TRIALS; i++, runs++) killed += trial_run(*name, i, true, &r);
  /* Most kills land while the request runs. */
  assert_true(killed * 2 > runs);
}

static void test_stand_in_replaced_again(void **state) {
  (void)state;
  xt_rng r = {202};
  for (const char *const *name = zoo_names(); *name; name++) {
    trial tr;
    trial_init(&tr, *name, &r);
    cs_sim s;
    new_sim(&s, tr.m, &r);
    uint64_t id = cs_new_request_id();
    dispatch *d = start(&s, &tr, id, CS_STREAMS);
    int victim = device_with_work(&tr.p, &r);
    cs_kill(&s, victim); /* before anything of it arrived */
    cs_add_standin(&s, d, victim, id | (1ull << 40), SPARE);
    if (run_for(&s, d, xt_int(&r, 0, MAX_KILL_STEP))) {
      cs_kill(&s, SPARE);
      cs_add_standin(&s, d, victim, id | (2ull << 40), (victim + 1) % DEVICES);
    }
    check_done(&s, d, &tr, "a stand-in killed and stood in for");
    dispatch_destroy(d);
    cs_free(&s);
    trial_free(&tr);
  }
}

static void test_stand_in_races_live_device(void **state) {
  (void)state;
  xt_rng r = {303};
  for (const char *const *name = zoo_names(); *name; name++)
    for (int i = 0; i < TRIALS; i++) trial_run(*name, i, false, &r);
}

static void test_stand_ins_refused(void **state) {
  (void)state;
  xt_rng r = {404};
  trial tr;
  trial_init(&tr, "vgg16c", &r);
  cs_sim s;
  new_sim(&s, tr.m, &r);
  err e = {0};
  dispatch_outbox out = {0};
  int tag = -1;
  uint64_t id = cs_new_request_id();
  dispatch *d = NULL;
  cs_check_ok(dispatch_create(tr.m, "digest", &tr.p, DEVICES, &tr.t.img, id, tr.x, &d, &e), &e);
  int dev = device_with_work(&tr.p, &r);
  /* No log; then not started. */
  assert_int_equal(dispatch_add_standin(d, dev, id + 1, &tag, &out, &e), ERR_INVALID);
  cs_start(&s, d, id);
  assert_int_equal(dispatch_add_standin(d, dev, id + 1, &tag, &out, &e), ERR_INVALID);
  assert_int_equal(dispatch_keep_log(d, &e), ERR_INVALID); /* too late */
  cs_run(&s);
  dispatch_destroy(d);

  id = cs_new_request_id();
  d = start(&s, &tr, id, CS_FIFO);
  assert_int_equal(dispatch_add_standin(d, DEVICES, id + 1, &tag, &out, &e), ERR_RANGE);
  assert_int_equal(dispatch_add_standin(d, -1, id + 1, &tag, &out, &e), ERR_RANGE);
  assert_int_equal(dispatch_add_standin(d, dev, id, &tag, &out, &e), ERR_INVALID);
  assert_int_equal(out.n, 0);
  cs_add_standin(&s, d, dev, id + 1, SPARE);
  assert_int_equal(s.standin[0].tag, DEVICES);
  assert_int_equal(dispatch_add_standin(d, dev, id + 1, &tag, &out, &e), ERR_INVALID);
  assert_int_equal(out.n, 0);
  cs_run(&s);
  dispatch_result res;
  dispatch_get_result(d, &res);
  assert_int_equal(res.state, DISPATCH_DONE);
  assert_int_equal(dispatch_add_standin(d, dev, id + 2, &tag, &out, &e), ERR_INVALID); /* over */
  dispatch_destroy(d);
  cs_free(&s);
  trial_free(&tr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dead_device_replaced),
      cmocka_unit_test(test_stand_in_replaced_again),
      cmocka_unit_test(test_stand_in_races_live_device),
      cmocka_unit_test(test_stand_ins_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

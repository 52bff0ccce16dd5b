/* head_rows_test.c — the head's first FC summed by rows (scheduler/head_rows.h).
 *
 * On fused zoo models (their heads start flatten -> FC: the VGGs', and the
 * ResNets' after the average pool, which runs on the agents) at 64 x 64
 * and vgg16c at the zoo's 200 x 200: the rows of the gathered map added in
 * a random order of random strips, finished, and the rest of the head run
 * on the executor, give the whole head's logits within 1e-5 of the
 * largest. Asked for at any other layer: none.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"
#include "scheduler/head_rows.h"
#include "scheduler/plan.h"
#include "tests/xexec_testlib.h"

static void check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s: %s", err_name(rc), e->msg);
}

static model *fused(const char *name, int side) {
  zoo_options o = zoo_defaults();
  if (side) o.in_h = o.in_w = side;
  model *m = NULL, *f = NULL;
  err e = {0};
  check_ok(zoo_build(name, &o, &m, &e), &e);
  check_ok(fuse_model(m, &f, &e), &e);
  model_destroy(m);
  return f;
}

/* Runs layers [first, n) of x's model on `in` (the tensor before first). */
static float *run_from(xexec *x, int first, const float *in) {
  const model *m = xexec_model(x);
  model_shape os = m->layers[m->n_layers - 1].out;
  float *out = malloc(model_shape_elems(os) * sizeof *out);
  assert_non_null(out);
  err e = {0};
  check_ok(xt_run_range(x, first, m->n_layers, in, out, &e), &e);
  return out;
}

static void check_model(const char *name, int side, xt_rng *r) {
  model *m = fused(name, side);
  err e = {0};
  int hf = plan_head_first(m);
  head_rows *h = NULL;
  check_ok(head_rows_create(m, hf, &h, &e), &e);
  assert_non_null(h);
  assert_int_equal(head_rows_rest(h), hf + 2);
  xexec *x = NULL;
  check_ok(xexec_create(m, 1, &x, &e), &e);
  model_shape ms = model_tensor_shape(m, hf - 1);
  size_t n_map = model_shape_elems(ms), row = (size_t)ms.w * ms.c;
  float *map = malloc(n_map * sizeof *map);
  assert_non_null(map);
  xt_fill(r, map, n_map, 0.0f, 1.0f);
  float *want = run_from(x, hf, map);
  for (int t = 0; t < 4; t++) {
    int bounds[9];
    int n = xt_random_split(r, ms.h, 8, bounds);
    double *acc = calloc((size_t)head_rows_outputs(h), sizeof *acc);
    float *fc = malloc((size_t)head_rows_outputs(h) * sizeof *fc);
    assert_non_null(acc);
    assert_non_null(fc);
    int first = xt_int(r, 0, n - 1); /* strips arrive from a random one on */
    for (int k = 0; k < n; k++) {
      int i = (first + k) % n;
      head_rows_add(h, map + (size_t)bounds[i] * row, bounds[i], bounds[i + 1], acc);
    }
    head_rows_finish(h, acc, fc);
    float *got = head_rows_rest(h) == m->n_layers ? fc : run_from(x, head_rows_rest(h), fc);
    size_t n_out = model_shape_elems(m->layers[m->n_layers - 1].out);
    double d = xt_rel_diff(got, want, n_out);
    if (!(d <= 1e-5)) fail_msg("%s at %d px, %d strips: logits differ by %g", name, ms.h, n, d);
    if (got != fc) free(got);
    free(fc);
    free(acc);
  }
  free(want);
  free(map);
  xexec_destroy(x);
  head_rows_destroy(h);
  model_destroy(m);
}

static void test_heads(void **state) {
  (void)state;
  xt_rng r = {5};
  const char *names[] = {"vgg16", "vgg16c", "vgg13c", "resnet18c", "resnet50"};
  for (int i = 0; i < 5; i++) check_model(names[i], 64, &r);
  check_model("vgg16c", 0, &r); /* 6 x 6 x 512 -> 512, as the cluster runs it */
}

/* Asked for at a layer that is not a flatten read by an FC: none. */
static void test_other_layers_get_none(void **state) {
  (void)state;
  model *v = fused("vgg16c", 64);
  err e = {0};
  int hf = plan_head_first(v);
  for (int l = hf - 2; l <= hf + 1; l++) {
    if (l == hf) continue;
    head_rows *h = (head_rows *)1;
    check_ok(head_rows_create(v, l, &h, &e), &e);
    assert_null(h);
  }
  model_destroy(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_heads),
      cmocka_unit_test(test_other_layers_get_none),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

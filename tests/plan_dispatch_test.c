/* plan_dispatch_test.c — the exact and heuristic planners' plans run as
 * they are: on the in-process cluster (tests/cluster_sim.h: tile engines
 * and the dispatcher exchanging packed messages, in order, stream by
 * stream or scrambled), every zoo model (fused, 64x64) and randomized
 * clusters of 2 to 6 devices, each plan gives the single device's logits
 * (DESIGN.md's tolerance) and moves exactly the bytes plan_evaluate
 * priced. The plans of these planners reorder devices, leave some out and
 * change who holds which rows between segments: what the dispatcher must
 * relay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/zoo.h"
#include "scheduler/plan.h"
#include "tests/cluster_sim.h"
#include "tests/plan_testlib.h"

static void test_plans_run_exactly(void **state) {
  (void)state;
  xt_rng r = {31};
  pt_rng pr = {32};
  int config = 0;
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = cs_build_fused(*name, CS_SIDE_PX);
    xexec *x = NULL;
    plan_tables *tables = NULL;
    err e = {0};
    cs_check_ok(xexec_create(m, 1, &x, &e), &e);
    cs_check_ok(plan_prepare(m, &tables, &e), &e);
    cs_sim s;
    cs_init(&s, CS_MAX_DEVICES, NULL, xt_next(&r));
    cs_add_model(&s, "digest", m);
    cs_image t = cs_make_image((int)(name - zoo_names()) % 3, CS_SIDE_PX, CS_SIDE_PX, &r);
    plan_options po = cs_plan_options(&t.img);
    po.tables = tables;
    float *want = cs_single_device(x, &t.img);
    for (int trial = 0; trial < 3; trial++) {
      plan_device devs[CS_MAX_DEVICES];
      int n = pt_int(&pr, 2, CS_MAX_DEVICES);
      /* Slow links and fast ones, fast devices and slow ones: plans with
       * one device, several, one segment and many. */
      pt_random_cluster(&pr, devs, n, 2, 2000, 2, 1, 1000, 2);
      for (int k = 0; k < 2; k++) {
        plan p;
        cs_check_ok((k ? plan_heuristic : plan_exact)(m, devs, n, &po, &p, &e), &e);
        pt_check_partition(m, &p, n);
        cs_check_request(&s, m, x, &p, n, &t.img, want, (cs_mode)(config++ % CS_MODES));
        plan_free(&p);
      }
    }
    free(want);
    free(t.data);
    cs_free(&s);
    plan_tables_destroy(tables);
    xexec_destroy(x);
    model_destroy(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plans_run_exactly),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

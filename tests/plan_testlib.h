/* plan_testlib.h — what the planner tests share: zoo models as the
 * planners see them (fused), clusters, and the checks every plan must
 * pass (strips partition each segment's rows, segments tile the spatial
 * layers at cuts). */
#ifndef EDGEDI_TESTS_PLAN_TESTLIB_H
#define EDGEDI_TESTS_PLAN_TESTLIB_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/model.h"
#include "scheduler/plan.h"

/* The zoo model `name` at 3 x side x side (0: the default), fused. */
model *pt_build_fused(const char *name, int side);

/* Two Pi 3B+-like and two Pi 4B-like boards behind 100 Mbit/s; returns 4. */
int pt_demo_cluster(plan_device *d);

/* A seeded generator (xorshift64*): the same seed, the same clusters. */
typedef struct pt_rng {
  uint64_t s;
} pt_rng;
double pt_uniform(pt_rng *r, double lo, double hi);
double pt_log_uniform(pt_rng *r, double lo, double hi);
int pt_int(pt_rng *r, int lo, int hi); /* inclusive */

/* n devices with cost models drawn from the given ranges (log-uniform for
 * ms per GFLOP and bandwidth, uniform for the fixed cost and round trip). */
void pt_random_cluster(pt_rng *r, plan_device *d, int n, double a_lo, double a_hi,
                       double b_hi, double bw_lo, double bw_hi, double rtt_hi);

/* cmocka assertions: p is a valid plan of m (segments tile [0,
 * head_first) at cuts, strips partition each segment's output rows top
 * to bottom, every device at most once per segment, predicted times
 * positive and summing to the plan's). */
void pt_check_partition(const model *m, const plan *p, int n_devs);

/* Whether a and b split alike: the same segments, and in each the same
 * devices on the same rows, in the same order (prices not compared). */
bool pt_same_split(const plan *a, const plan *b);

#endif

/* plan_recall.h — the plans the cluster ran last, offered again while they
 * are nearly as good as a fresh one.
 *
 * Why: every request is planned from the cost models refitted after the
 * one before, and two consecutive optima often differ by a row or two. A
 * plan the agents ran before finds its strips prepared (executor
 * operators bound, buffers allocated and touched, tile.h's strip cache);
 * a new split makes every agent prepare new strips, and a new strip's
 * first run costs about twice its later runs (vgg16c, measured:
 * docs/planners.md). So a request reuses a recent plan, re-priced with the
 * current cost models, unless the fresh plan is predicted faster by more
 * than a set gain; a device that slows down or drops out changes the
 * prices (or the members) enough to switch at once.
 *
 * Plans are kept per model digest and planner name, with the names of
 * the devices they were planned over: a plan is offered only over the
 * same devices (in any order), so a device that joins or leaves makes
 * the next request plan afresh. Thread-safe. */
#ifndef EDGEDI_PLAN_RECALL_H
#define EDGEDI_PLAN_RECALL_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/err.h"
#include "runtime/model.h"
#include "scheduler/plan.h"

typedef struct plan_recall plan_recall;

enum {
  PLAN_RECALL_PER_KEY = 4, /* plans kept per model and planner */
  PLAN_RECALL_KEYS = 32,   /* models x planners kept, least recent dropped */
  PLAN_RECALL_SETTLE_RUNS = 5, /* late runs not kept before this many */
};

/* A fresh plan replaces the recalled ones when predicted faster by more
 * than this fraction. */
#define PLAN_RECALL_DEFAULT_GAIN 0.10

err_code plan_recall_create(double gain, plan_recall **out, err *e);
void plan_recall_destroy(plan_recall *r);

/* Remembers `p` (planned over devs, which name its parts' devices) as run
 * for (digest, planner). sessions[i] tells devs[i]'s incarnation (a
 * restarted agent keeps its name, not its prepared strips); NULL: names
 * alone. A plan that did not run on time (on_time false: its request took
 * longer or shorter than predicted, the cost models not yet settled) is
 * kept only after PLAN_RECALL_SETTLE_RUNS such runs of the key, so that a
 * plan made from boot profiles is not kept for good, and the recall still
 * settles where predictions stay off. Out of memory only forgets. */
void plan_recall_remember(plan_recall *r, const char *digest, const char *planner,
                          const plan_device *devs, const uint64_t *sessions, int n_devs,
                          const plan *p, bool on_time);

/* With `fresh` planned just now over devs: the cheapest remembered plan
 * for (digest, planner) planned over the same devices (names and
 * sessions), re-priced by
 * plan_evaluate with devs and o, replaces *fresh when its prediction is
 * within the gain of fresh's (fresh is freed). True when it did. */
bool plan_recall_offer(plan_recall *r, const char *digest, const char *planner,
                       const model *m, const plan_device *devs, const uint64_t *sessions,
                       int n_devs, const plan_options *o, plan *fresh);

#endif

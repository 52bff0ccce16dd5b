/* plan_recall.c — a small LRU of run plans (contract in plan_recall.h). */
#include "scheduler/plan_recall.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct recalled {
  plan p; /* parts' device indices point into names */
  char names[PLAN_MAX_DEVICES][PLAN_NAME_BYTES];
  uint64_t sessions[PLAN_MAX_DEVICES];
  int n_names;
} recalled;

typedef struct recall_key {
  char digest[80];
  char planner[PLAN_NAME_BYTES];
  recalled plans[PLAN_RECALL_PER_KEY]; /* most recent first */
  int n_plans;
  int runs;                /* plans run, kept or not */
  unsigned long long used; /* LRU clock of the last remember */
} recall_key;

struct plan_recall {
  pthread_mutex_t mu;
  double gain;
  recall_key keys[PLAN_RECALL_KEYS];
  int n_keys;
  unsigned long long clock;
};

err_code plan_recall_create(double gain, plan_recall **out, err *e) {
  *out = NULL;
  if (!(gain >= 0 && gain <= 10))
    return err_set(e, ERR_INVALID, "plan recall: gain %g is not a fraction from 0 to 10", gain);
  plan_recall *r = calloc(1, sizeof *r);
  if (!r) return err_set(e, ERR_NOMEM, "plan recall: out of memory");
  pthread_mutex_init(&r->mu, NULL);
  r->gain = gain;
  *out = r;
  return ERR_OK;
}

static void key_clear(recall_key *k) {
  for (int i = 0; i < k->n_plans; i++) plan_free(&k->plans[i].p);
  k->n_plans = 0;
}

void plan_recall_destroy(plan_recall *r) {
  if (!r) return;
  for (int i = 0; i < r->n_keys; i++) key_clear(&r->keys[i]);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static bool plan_copy(const plan *src, plan *dst) {
  *dst = *src;
  dst->segments = malloc((size_t)(src->n_segments > 0 ? src->n_segments : 1) *
                         sizeof *dst->segments);
  if (!dst->segments) return false;
  memcpy(dst->segments, src->segments, (size_t)src->n_segments * sizeof *dst->segments);
  return true;
}

static uint64_t session_of(const uint64_t *sessions, int i) { return sessions ? sessions[i] : 0; }

static bool same_plan(const recalled *ra, const plan *b, const plan_device *bd,
                      const uint64_t *bs, int n_devs) {
  const plan *a = &ra->p;
  if (ra->n_names != n_devs) return false;
  for (int i = 0; i < n_devs; i++)
    if (strcmp(ra->names[i], bd[i].name) != 0 || ra->sessions[i] != session_of(bs, i))
      return false;
  if (a->n_segments != b->n_segments || a->head_first != b->head_first) return false;
  for (int s = 0; s < a->n_segments; s++) {
    const plan_segment *x = &a->segments[s], *y = &b->segments[s];
    if (x->first != y->first || x->end != y->end || x->n_parts != y->n_parts) return false;
    for (int k = 0; k < x->n_parts; k++)
      if (x->parts[k].out.lo != y->parts[k].out.lo || x->parts[k].out.hi != y->parts[k].out.hi ||
          x->parts[k].device != y->parts[k].device)
        return false;
  }
  return true;
}

static recall_key *find_key(plan_recall *r, const char *digest, const char *planner) {
  for (int i = 0; i < r->n_keys; i++)
    if (strcmp(r->keys[i].digest, digest) == 0 && strcmp(r->keys[i].planner, planner) == 0)
      return &r->keys[i];
  return NULL;
}

void plan_recall_remember(plan_recall *r, const char *digest, const char *planner,
                          const plan_device *devs, const uint64_t *sessions, int n_devs,
                          const plan *p, bool on_time) {
  if (!r || !digest || !planner || !p || n_devs > PLAN_MAX_DEVICES) return;
  pthread_mutex_lock(&r->mu);
  recall_key *k = find_key(r, digest, planner);
  if (!k) {
    if (r->n_keys < PLAN_RECALL_KEYS) {
      k = &r->keys[r->n_keys++];
    } else { /* the least recently used key goes */
      k = &r->keys[0];
      for (int i = 1; i < r->n_keys; i++)
        if (r->keys[i].used < k->used) k = &r->keys[i];
      key_clear(k);
    }
    memset(k, 0, sizeof *k);
    snprintf(k->digest, sizeof k->digest, "%s", digest);
    snprintf(k->planner, sizeof k->planner, "%s", planner);
  }
  k->used = ++r->clock;
  if (!on_time && ++k->runs <= PLAN_RECALL_SETTLE_RUNS) {
    pthread_mutex_unlock(&r->mu);
    return;
  }
  int at = -1; /* already kept: moves to the front */
  for (int i = 0; i < k->n_plans && at < 0; i++)
    if (same_plan(&k->plans[i], p, devs, sessions, n_devs)) at = i;
  recalled keep;
  if (at >= 0) {
    keep = k->plans[at];
    memmove(&k->plans[1], &k->plans[0], (size_t)at * sizeof keep);
  } else {
    if (!plan_copy(p, &keep.p)) {
      pthread_mutex_unlock(&r->mu);
      return;
    }
    keep.n_names = n_devs;
    for (int i = 0; i < n_devs; i++) {
      snprintf(keep.names[i], PLAN_NAME_BYTES, "%s", devs[i].name);
      keep.sessions[i] = session_of(sessions, i);
    }
    if (k->n_plans == PLAN_RECALL_PER_KEY) plan_free(&k->plans[--k->n_plans].p);
    memmove(&k->plans[1], &k->plans[0], (size_t)k->n_plans * sizeof keep);
    k->n_plans++;
  }
  k->plans[0] = keep;
  pthread_mutex_unlock(&r->mu);
}

/* A copy of rp with its device indices mapped onto devs; false when devs
 * are not the devices rp was planned over (or out of memory). */
static bool remap(const recalled *rp, const plan_device *devs, const uint64_t *sessions,
                  int n_devs, plan *out) {
  if (rp->n_names != n_devs) return false; /* a device came or went: plan afresh */
  int map[PLAN_MAX_DEVICES];
  for (int i = 0; i < rp->n_names; i++) {
    map[i] = -1;
    for (int j = 0; j < n_devs && map[i] < 0; j++)
      if (strcmp(rp->names[i], devs[j].name) == 0 && rp->sessions[i] == session_of(sessions, j))
        map[i] = j;
    if (map[i] < 0) return false;
  }
  for (int s = 0; s < rp->p.n_segments; s++)
    for (int k = 0; k < rp->p.segments[s].n_parts; k++) {
      int d = rp->p.segments[s].parts[k].device;
      if (d < 0 || d >= rp->n_names || map[d] < 0) return false;
    }
  if (!plan_copy(&rp->p, out)) return false;
  for (int s = 0; s < out->n_segments; s++)
    for (int k = 0; k < out->segments[s].n_parts; k++)
      out->segments[s].parts[k].device = map[out->segments[s].parts[k].device];
  return true;
}

bool plan_recall_offer(plan_recall *r, const char *digest, const char *planner,
                       const model *m, const plan_device *devs, const uint64_t *sessions,
                       int n_devs, const plan_options *o, plan *fresh) {
  if (!r || !digest || !planner || !fresh || !(fresh->predicted_ms > 0)) return false;
  plan best = {0};
  bool have = false;
  pthread_mutex_lock(&r->mu);
  recall_key *k = find_key(r, digest, planner);
  for (int i = 0; k && i < k->n_plans; i++) {
    plan cand;
    if (!remap(&k->plans[i], devs, sessions, n_devs, &cand)) continue;
    err pe = {0};
    if (plan_evaluate(m, devs, n_devs, o, &cand, &pe) != ERR_OK ||
        !isfinite(cand.predicted_ms) || (have && cand.predicted_ms >= best.predicted_ms)) {
      plan_free(&cand);
      continue;
    }
    plan_free(&best);
    best = cand;
    have = true;
  }
  double gain = r->gain;
  pthread_mutex_unlock(&r->mu);
  if (!have) return false;
  if (best.predicted_ms > fresh->predicted_ms * (1.0 + gain)) {
    plan_free(&best);
    return false;
  }
  plan_free(fresh);
  *fresh = best;
  return true;
}

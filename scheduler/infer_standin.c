/* infer_standin.c — stand-ins within an attempt: who a message's sender
 * is, whether to stand in for a lost or straggling agent, on which agent,
 * and starting it (contract in infer.h, "Agent loss" and "Stragglers").
 *
 * Senders are the attempt's devices 0 .. n_members - 1 and, after them,
 * its stand-ins' tags, the same numbers the dispatcher and the mailbox
 * use. Only the request's own thread touches any of this.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "scheduler/infer_internal.h"

static const char *const ON_LOSS_NAMES[] = {"auto", "restart", "stand-in"};

const char *infer_on_loss_name(infer_on_loss p) {
  return p >= INFER_ON_LOSS_AUTO && p <= INFER_ON_LOSS_STANDIN ? ON_LOSS_NAMES[p] : NULL;
}

bool infer_on_loss_parse(const char *name, infer_on_loss *out) {
  for (int p = INFER_ON_LOSS_AUTO; p <= INFER_ON_LOSS_STANDIN; p++)
    if (name && strcmp(name, ON_LOSS_NAMES[p]) == 0) {
      *out = (infer_on_loss)p;
      return true;
    }
  return false;
}

static const infer_standin *standin_of(const infer_req *r, int sender) {
  int k = sender - r->ip.n_members;
  return k >= 0 && k < r->n_standins ? &r->standins[k] : NULL;
}

int infer__role_of(const infer_req *r, int sender) {
  if (sender >= 0 && sender < r->ip.n_members) return sender;
  const infer_standin *s = standin_of(r, sender);
  return s ? s->role : -1;
}

const cluster_member *infer__member_of(const infer_req *r, int sender) {
  if (sender >= 0 && sender < r->ip.n_members) return &r->ip.members[sender];
  const infer_standin *s = standin_of(r, sender);
  return s ? &s->host : NULL;
}

cluster_agent *infer__agent_of(const infer_req *r, int sender) {
  const cluster_member *m = infer__member_of(r, sender);
  return m ? m->agent : NULL;
}

const char *infer__dev_name(const infer_req *r, int sender) {
  const cluster_member *m = infer__member_of(r, sender);
  return m ? m->dev.name : "?";
}

bool infer__gone(const infer_req *r, int sender) {
  if (sender >= 0 && sender < r->ip.n_members) return r->write_failed[sender];
  const infer_standin *s = standin_of(r, sender);
  return !s || s->gone;
}

void infer__set_gone(infer_req *r, int sender) {
  if (sender >= 0 && sender < r->ip.n_members) r->write_failed[sender] = true;
  int k = sender - r->ip.n_members;
  if (k >= 0 && k < r->n_standins) r->standins[k].gone = true;
}

bool infer__standins_on(const infer_req *r) {
  return r->c->on_loss != INFER_ON_LOSS_RESTART || r->c->straggler_factor > 0;
}

void infer__standins_clear(infer_req *r) {
  bool counted = false;
  for (int k = 0; k < r->n_standins; k++) {
    if (r->standins[k].counted) cluster_agent_busy_add(r->standins[k].host.agent, -1, false);
    counted |= r->standins[k].counted;
    cluster_release(r->standins[k].host.agent);
  }
  r->n_standins = 0;
  if (counted) admit_wake(r->c->adm); /* a host may take whole runs again */
}

/* ---- the choice ------------------------------------------------------------------ */

/* Whether agent `a` does, or did, any copy of this attempt's work that is
 * now gone or stood in for (a straggler's), or is excluded from the
 * request. */
static bool cannot_host(const infer_req *r, const cluster_agent *a) {
  for (int i = 0; i < r->ip.n_members; i++)
    if (r->ip.members[i].agent == a && r->write_failed[i]) return true;
  for (int k = 0; k < r->n_standins; k++)
    if ((r->standins[k].host.agent == a && r->standins[k].gone) ||
        r->ip.members[r->standins[k].role].agent == a)
      return true;
  for (int j = 0; j < r->n_excluded; j++)
    if (r->excluded[j] == a) return true;
  return false;
}

/* Whether `a` already does device role's work (its own or a stand-in). */
static bool copies(const infer_req *r, int role, const cluster_agent *a) {
  if (r->ip.members[role].agent == a) return true;
  for (int k = 0; k < r->n_standins; k++)
    if (r->standins[k].role == role && r->standins[k].host.agent == a) return true;
  return false;
}

/* Predicted ms, from now, for an agent of cost model `dev` to do device
 * role's whole work (its parts at dev's rate, their transfers as planned)
 * after its own unreported tiles of this attempt (member: its device
 * index, -1 when it has none). */
static double host_ms(const infer_req *r, int role, const plan_device *dev, int member) {
  double ms = 0;
  const plan *p = &r->ip.p;
  for (int si = 0; si < p->n_segments; si++)
    for (int k = 0; k < p->segments[si].n_parts; k++) {
      const plan_part *pt = &p->segments[si].parts[k];
      if (pt->device == role)
        ms += pt->gflop * dev->ms_per_gflop + dev->fixed_ms + pt->transfer_ms;
    }
  for (int i = 0; i < r->n_tiles && member >= 0; i++) {
    const infer_tile *t = &r->tiles[i];
    if (t->device == member && !t->reported)
      ms += p->segments[t->segment].parts[t->part].compute_ms;
  }
  return ms;
}

/* The plan's time if it started over without device `role` (and without
 * the devices already gone): predicted x speeds / speeds left, a speed
 * being 1 / ms_per_gflop. INFINITY when nobody is left. */
static double restart_ms(const infer_req *r, int role) {
  double all = 0, left = 0;
  for (int i = 0; i < r->ip.n_members; i++) {
    const plan_device *d = &r->ip.members[i].dev;
    if (!(d->ms_per_gflop > 0)) continue;
    double speed = 1.0 / d->ms_per_gflop;
    all += speed;
    if (i != role && !r->write_failed[i]) left += speed;
  }
  return left > 0 ? r->ip.p.predicted_ms * all / left : INFINITY;
}

/* The up agent predicted to finish device role's work first; false when
 * there is none. *host gets a reference. Other requests an agent is busy
 * with (cluster_agent_busy) stretch its time: their work queues with the
 * stand-in's, so requests that lose the same agent at once spread their
 * stand-ins. */
static bool pick_host(infer_req *r, int role, cluster_member *host, double *ms) {
  cluster_member up[PLAN_MAX_DEVICES];
  int n = cluster_acquire_up(r->c->cl, r->ip.model->name, up, PLAN_MAX_DEVICES);
  int best = -1;
  for (int i = 0; i < n; i++) {
    if (cannot_host(r, up[i].agent) || copies(r, role, up[i].agent)) continue;
    int member = -1;
    for (int j = 0; j < r->ip.n_members; j++)
      if (r->ip.members[j].agent == up[i].agent) member = j;
    bool here = member >= 0 && (r->ip.counted & (1u << member)) != 0; /* this request */
    int others = cluster_agent_busy(up[i].agent, NULL) - (here ? 1 : 0);
    double t = host_ms(r, role, &up[i].dev, member) * (1 + (others > 0 ? others : 0));
    if (best < 0 || t < *ms) {
      best = i;
      *ms = t;
    }
  }
  for (int i = 0; i < n; i++)
    if (i != best) cluster_release(up[i].agent);
  if (best >= 0) *host = up[best];
  return best >= 0;
}

void infer__note(infer_req *r, const char *fmt, ...) {
  size_t used = strlen(r->recovery);
  if (used + 3 >= sizeof r->recovery) return;
  if (used) used += (size_t)snprintf(r->recovery + used, sizeof r->recovery - used, "; ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->recovery + used, sizeof r->recovery - used, fmt, ap);
  va_end(ap);
}

bool infer__stand_in(infer_req *r, int role, bool straggler, const char *why) {
  infer_on_loss policy = (infer_on_loss)r->c->on_loss;
  if (policy == INFER_ON_LOSS_RESTART || !r->d || r->n_standins >= DISPATCH_MAX_STANDINS ||
      role < 0 || role >= r->ip.n_members || (uint64_t)r->id >> INFER_STANDIN_SHIFT)
    return false;
  cluster_member host;
  double ms = 0;
  if (!pick_host(r, role, &host, &ms)) return false;
  double now = inflight_now_ms();
  double left_ms = fmax(r->ip.p.predicted_ms - (now - r->attempt_t0_ms), 0);
  if (!straggler && policy == INFER_ON_LOSS_AUTO && !(fmax(left_ms, ms) < restart_ms(r, role))) {
    cluster_release(host.agent);
    return false;
  }
  err e = {0};
  double budget = r->deadline_at_ms - now;
  int load_ms = budget < CLUSTER_LOAD_MODEL_DEADLINE_MS ? (int)budget
                                                        : CLUSTER_LOAD_MODEL_DEADLINE_MS;
  int k = r->n_standins;
  infer_standin *s = &r->standins[k];
  *s = (infer_standin){.host = host, .role = role, .tag = r->ip.n_members + k,
                       .id = infer__wire_id(r) | ((uint64_t)(k + 1) << INFER_STANDIN_SHIFT)};
  err_code rc = load_ms > 0 ? cluster_agent_ensure_model(host.agent, r->ip.model, load_ms, &e)
                            : err_set(&e, ERR_DEADLINE, "no time left to load the model");
  if (rc == ERR_OK) rc = inflight_alias(r->c->inf, r->mb, s->id, host.agent, s->tag, &e);
  if (rc != ERR_OK) {
    cluster_release(host.agent);
    return false;
  }
  r->n_standins++; /* from here on its tag is a sender, its reference released with it */
  int tag = -1;
  models_head_lock(r->ip.model);
  rc = dispatch_add_standin(r->d, role, s->id, &tag, &r->ob, &e);
  models_head_unlock(r->ip.model);
  if (rc != ERR_OK || tag != s->tag) {
    s->gone = true;
    return false;
  }
  cluster_agent_busy_add(host.agent, 1, false); /* load-aware planning sees it */
  s->counted = true;
  r->last_heard_ms[role] = r->last_any_ms = now; /* silence counts from here */
  infer__note(r, "%s", why);
  infer__note(r, "'%s' stood in for '%s'", host.dev.name, r->ip.members[role].dev.name);
  return true;
}

/* inflight.c — the table of requests in flight and their mailboxes
 * (contract in inflight.h).
 *
 * One mutex guards the table and every mailbox: a delivery is a list
 * append, so contention is short, and posting "agent down" to many
 * requests at once needs no lock ordering. Each mailbox has its own
 * condition variable (on the monotonic clock) so a delivery wakes only
 * the request it concerns.
 */
#include "scheduler/inflight.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/rpc.h"

typedef struct node {
  struct node *next;
  inflight_event ev;
} node;

struct inflight_req {
  inflight *t;               /* whose mutex guards the mailbox */
  inflight_req *prev, *next; /* in the table */
  uint64_t id;
  int n_agents;
  const void **agents;
  struct {
    uint64_t id;
    const void *agent;
    int device;
  } alias[INFLIGHT_MAX_ALIASES];
  int n_alias;
  pthread_cond_t cv;
  node *head, *tail;
};

struct inflight {
  pthread_mutex_t mu;
  inflight_req *open;
  int n_open;
  bool shut;
  char shut_reason[ERR_MSG_BYTES];
};

double inflight_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

err_code inflight_create(inflight **out, err *e) {
  inflight *t = calloc(1, sizeof *t);
  if (!t) return err_set(e, ERR_NOMEM, "inflight: out of memory");
  pthread_mutex_init(&t->mu, NULL);
  *out = t;
  return ERR_OK;
}

void inflight_destroy(inflight *t) {
  if (!t) return;
  while (t->open) inflight_close(t, t->open); /* a caller's bug; do not leak */
  pthread_mutex_destroy(&t->mu);
  free(t);
}

/* Whether a mailbox takes messages of `id` (under t->mu). */
static bool in_flight_locked(const inflight *t, uint64_t id) {
  for (const inflight_req *x = t->open; x; x = x->next) {
    if (x->id == id) return true;
    for (int k = 0; k < x->n_alias; k++)
      if (x->alias[k].id == id) return true;
  }
  return false;
}

err_code inflight_open(inflight *t, uint64_t id, const void *const *agents,
                       int n_agents, inflight_req **out, err *e) {
  *out = NULL;
  inflight_req *r = calloc(1, sizeof *r);
  if (r) r->agents = calloc((size_t)(n_agents > 0 ? n_agents : 1), sizeof *r->agents);
  if (!r || !r->agents) {
    if (r) free(r);
    return err_set(e, ERR_NOMEM, "inflight: out of memory");
  }
  r->t = t;
  r->id = id;
  r->n_agents = n_agents;
  for (int i = 0; i < n_agents; i++) r->agents[i] = agents[i];
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  err_code rc = ERR_OK;
  pthread_mutex_lock(&t->mu);
  if (t->shut) {
    rc = err_set(e, ERR_UNAVAILABLE, "%s", t->shut_reason);
  } else if (in_flight_locked(t, id)) {
    rc = err_set(e, ERR_INVALID, "request %llu is already in flight", (unsigned long long)id);
  }
  if (rc == ERR_OK) {
    r->next = t->open;
    if (t->open) t->open->prev = r;
    t->open = r;
    t->n_open++;
  }
  pthread_mutex_unlock(&t->mu);
  if (rc != ERR_OK) {
    pthread_cond_destroy(&r->cv);
    free(r->agents);
    free(r);
    return rc;
  }
  *out = r;
  return ERR_OK;
}

err_code inflight_alias(inflight *t, inflight_req *r, uint64_t alias, const void *agent,
                        int device, err *e) {
  err_code rc = ERR_OK;
  pthread_mutex_lock(&t->mu);
  if (r->n_alias >= INFLIGHT_MAX_ALIASES)
    rc = err_set(e, ERR_RANGE, "inflight: request %llu has %d aliases already",
                 (unsigned long long)r->id, r->n_alias);
  else if (in_flight_locked(t, alias))
    rc = err_set(e, ERR_INVALID, "inflight: request %llu is already in flight",
                 (unsigned long long)alias);
  else {
    int k = r->n_alias++;
    r->alias[k].id = alias;
    r->alias[k].agent = agent;
    r->alias[k].device = device;
  }
  pthread_mutex_unlock(&t->mu);
  return rc;
}

void inflight_close(inflight *t, inflight_req *r) {
  if (!r) return;
  pthread_mutex_lock(&t->mu);
  if (r->prev) r->prev->next = r->next;
  else t->open = r->next;
  if (r->next) r->next->prev = r->prev;
  t->n_open--;
  pthread_mutex_unlock(&t->mu);
  for (node *n = r->head, *nx; n; n = nx) {
    nx = n->next;
    rpc_free(n->ev.msg ? &n->ev.msg->base : NULL);
    free(n);
  }
  pthread_cond_destroy(&r->cv);
  free(r->agents);
  free(r);
}

static int index_of(const inflight_req *r, const void *agent) {
  for (int i = 0; i < r->n_agents; i++)
    if (r->agents[i] == agent) return i;
  return -1;
}

/* Appends under t->mu. */
static void post_locked(inflight_req *r, node *n) {
  if (r->tail) r->tail->next = n;
  else r->head = n;
  r->tail = n;
  pthread_cond_signal(&r->cv);
}

bool inflight_deliver(inflight *t, uint64_t id, const void *agent,
                      Edgedi__V1__ExecuteOut *msg, double at_ms) {
  node *n = calloc(1, sizeof *n);
  bool taken = false;
  pthread_mutex_lock(&t->mu);
  for (inflight_req *r = t->open; r && n; r = r->next) {
    int dev = -1;
    if (r->id == id) dev = index_of(r, agent);
    for (int k = 0; k < r->n_alias; k++)
      if (r->alias[k].id == id && r->alias[k].agent == agent) dev = r->alias[k].device;
    if (dev < 0) continue; /* not its id, or not one of its agents (an agent's bug) */
    n->ev = (inflight_event){.kind = INFLIGHT_MESSAGE, .device = dev, .msg = msg,
                             .at_ms = at_ms};
    post_locked(r, n);
    taken = true;
    break;
  }
  pthread_mutex_unlock(&t->mu);
  if (!taken) {
    free(n);
    rpc_free(msg ? &msg->base : NULL);
  }
  return taken;
}

/* Posts a reason event to every open request `agent` is in (any, when
 * agent is NULL). Nodes are allocated under the lock: this is rare. */
static void post(inflight_req *r, inflight_kind kind, int dev, double now, const char *reason) {
  node *n = calloc(1, sizeof *n);
  if (!n) return; /* the request still ends at its deadline */
  n->ev.kind = kind;
  n->ev.device = dev;
  n->ev.at_ms = now;
  snprintf(n->ev.reason, sizeof n->ev.reason, "%s", reason ? reason : "");
  post_locked(r, n);
}

/* Posts a reason event to every open request `agent` is in (any, when
 * agent is NULL), once as each device it is there. Nodes are allocated
 * under the lock: this is rare. */
static void post_all(inflight *t, inflight_kind kind, const void *agent,
                     const char *reason) {
  double now = inflight_now_ms();
  pthread_mutex_lock(&t->mu);
  for (inflight_req *r = t->open; r; r = r->next) {
    if (!agent) {
      post(r, kind, -1, now, reason);
      continue;
    }
    int dev = index_of(r, agent);
    if (dev >= 0) post(r, kind, dev, now, reason);
    for (int k = 0; k < r->n_alias; k++)
      if (r->alias[k].agent == agent) post(r, kind, r->alias[k].device, now, reason);
  }
  pthread_mutex_unlock(&t->mu);
}

void inflight_agent_down(inflight *t, const void *agent, const char *reason) {
  if (agent) post_all(t, INFLIGHT_AGENT_DOWN, agent, reason);
}

void inflight_shutdown(inflight *t, const char *reason) {
  pthread_mutex_lock(&t->mu);
  t->shut = true;
  snprintf(t->shut_reason, sizeof t->shut_reason, "%s", reason ? reason : "shutting down");
  pthread_mutex_unlock(&t->mu);
  post_all(t, INFLIGHT_SHUTDOWN, NULL, reason);
}

bool inflight_wait(inflight_req *r, int timeout_ms, inflight_event *ev) {
  inflight *t = r->t;
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  if (timeout_ms > 0) {
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&t->mu);
  while (!r->head && timeout_ms > 0)
    if (pthread_cond_timedwait(&r->cv, &t->mu, &until) != 0) break;
  node *n = r->head;
  if (n) {
    r->head = n->next;
    if (!r->head) r->tail = NULL;
  }
  pthread_mutex_unlock(&t->mu);
  if (!n) return false;
  *ev = n->ev;
  free(n);
  return true;
}

int inflight_count(inflight *t) {
  pthread_mutex_lock(&t->mu);
  int n = t->n_open;
  pthread_mutex_unlock(&t->mu);
  return n;
}

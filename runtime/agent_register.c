/* agent_register.c — the agent announcing itself to the scheduler
 * (contract in agent.h).
 *
 * The scheduler learns of an agent only through RegisterAgent, and opens
 * the Execute stream to the address given there (its Hello exchange done
 * before it answers). So one thread keeps the agent known: whenever the
 * agent has no live Execute stream "for a while" it calls RegisterAgent
 * again, which covers the three cases that matter:
 *  - start: register at once, retry every AGENT_REGISTER_RETRY_MS while
 *    the scheduler is not up (UNAVAILABLE, DEADLINE_EXCEEDED, ...);
 *  - accepted, but no stream came within AGENT_STREAM_WAIT_MS: the
 *    scheduler lost it (crashed right after): register again;
 *  - a live stream ended (a restarted or failed scheduler): register again
 *    AGENT_STREAM_WAIT_MS after the end, unless a new stream came first.
 * A refusal (a name taken by another agent, an old protocol, a request
 * the scheduler calls invalid) is no transient trouble: it is logged as an
 * error and retried every AGENT_REFUSED_RETRY_MS (an operator may free
 * the name meanwhile), or not at all with exit_on_refusal, which the
 * program then sees in agent_status.gave_up.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/agent_internal.h"
#include "runtime/link.h"
#include "runtime/protocol.h"

/* Log every this many failed tries in a row (the first always). */
enum { REGISTER_LOG_EVERY = 30 };

/* Statuses that say "no" rather than "not now". */
static bool is_refusal(grpc_status_code st) {
  switch (st) {
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_PERMISSION_DENIED:
    case GRPC_STATUS_UNAUTHENTICATED:
    case GRPC_STATUS_UNIMPLEMENTED: /* not a scheduler at that address */
    case GRPC_STATUS_OUT_OF_RANGE:
    case GRPC_STATUS_NOT_FOUND:
      return true;
    default:
      return false;
  }
}

typedef enum { REG_OK, REG_RETRY, REG_REFUSED } reg_outcome;

/* One RegisterAgent call (no lock held). */
static reg_outcome register_once(agent *a, uint64_t *device_id, err *e) {
  struct utsname u;
  char arch[sizeof u.machine] = "unknown";
  if (uname(&u) == 0) memcpy(arch, u.machine, sizeof arch);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  Edgedi__V1__RegisterAgentRequest req = EDGEDI__V1__REGISTER_AGENT_REQUEST__INIT;
  req.protocol_version = EDGEDI_PROTOCOL_VERSION;
  req.name = a->name;
  req.address = a->reg_address;
  req.cores = cores > 0 ? (uint32_t)cores : 1;
  req.arch = arch;
  req.threads = (uint32_t)a->o.threads;
  ProtobufCMessage *rep = NULL;
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  err_code rc = rpc_call_unary(a->reg_ch, AGENT_REGISTER_METHOD, &req.base,
                               &edgedi__v1__register_agent_reply__descriptor,
                               AGENT_REGISTER_DEADLINE_MS, &rep, &st, e);
  if (rc != ERR_OK) {
    rpc_free(rep);
    return st != GRPC_STATUS_OK && is_refusal(st) ? REG_REFUSED : REG_RETRY;
  }
  const Edgedi__V1__RegisterAgentReply *r = (const Edgedi__V1__RegisterAgentReply *)rep;
  reg_outcome out = REG_OK;
  if (r->protocol_version && r->protocol_version != EDGEDI_PROTOCOL_VERSION) {
    err_set(e, ERR_UNSUPPORTED,
            "the scheduler answered in protocol v%u; agent %s speaks v%d",
            r->protocol_version, a->name, EDGEDI_PROTOCOL_VERSION);
    out = REG_REFUSED;
  }
  *device_id = r->device_id;
  rpc_free(rep);
  return out;
}

static void *register_main(void *arg) {
  agent *a = arg;
  double next_try_ms = link_now_ms(), last_accept_ms = -INFINITY;
  unsigned failures = 0;
  pthread_mutex_lock(&a->mu);
  while (!a->reg_stop) {
    double now = link_now_ms();
    double due = fmax(next_try_ms, fmax(last_accept_ms, a->last_stream_end_ms) +
                                       AGENT_STREAM_WAIT_MS);
    if (a->live || now < due) {
      double until = a->live ? now + AGENT_REGISTER_TICK_MS
                             : fmin(due, now + AGENT_REGISTER_TICK_MS);
      agent_cond_wait_until(&a->cv, &a->mu, until);
      continue;
    }
    pthread_mutex_unlock(&a->mu);
    err e = {0};
    uint64_t id = 0;
    reg_outcome r = register_once(a, &id, &e);
    now = link_now_ms();
    pthread_mutex_lock(&a->mu);
    if (r == REG_OK) {
      last_accept_ms = now;
      a->registrations++;
      a->device_id = id;
      a->refused = false;
      failures = 0;
      agent_log(a, AGENT_LOG_INFO,
                "registered with the scheduler at %s as %s (device %llu, "
                "reachable at %s)",
                a->reg_scheduler, a->name, (unsigned long long)id, a->reg_address);
    } else if (r == REG_REFUSED) {
      a->refused = true;
      snprintf(a->refusal, sizeof a->refusal, "%s", e.msg);
      if (a->reg.exit_on_refusal) {
        a->gave_up = true;
        agent_log(a, AGENT_LOG_ERROR,
                  "the scheduler at %s refused agent %s: %s; giving up "
                  "(exit on refusal)",
                  a->reg_scheduler, a->name, e.msg);
        pthread_cond_broadcast(&a->cv);
        break;
      }
      agent_log(a, AGENT_LOG_ERROR,
                "the scheduler at %s refused agent %s: %s; trying again in "
                "%d s",
                a->reg_scheduler, a->name, e.msg, AGENT_REFUSED_RETRY_MS / 1000);
      next_try_ms = now + AGENT_REFUSED_RETRY_MS;
    } else {
      if (failures++ % REGISTER_LOG_EVERY == 0)
        agent_log(a, AGENT_LOG_WARN,
                  "cannot register with the scheduler at %s (try %u): %s; "
                  "trying again every %d ms",
                  a->reg_scheduler, failures, e.msg, AGENT_REGISTER_RETRY_MS);
      next_try_ms = now + AGENT_REGISTER_RETRY_MS;
    }
  }
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

err_code agent_register_start(agent *a, const agent_register_options *o,
                              err *e) {
  if (!a || !o || !o->scheduler || !o->scheduler[0] || !o->address || !o->address[0])
    return err_set(e, ERR_INVALID,
                   "registration needs the scheduler's address and this agent's");
  pthread_mutex_lock(&a->mu);
  bool started = a->reg_started;
  pthread_mutex_unlock(&a->mu);
  if (started) return err_set(e, ERR_INVALID, "registration already started");
  a->reg = *o;
  a->reg_scheduler = strdup(o->scheduler);
  a->reg_address = strdup(o->address);
  if (!a->reg_scheduler || !a->reg_address)
    return err_set(e, ERR_NOMEM, "agent: out of memory");
  a->reg.scheduler = a->reg_scheduler;
  a->reg.address = a->reg_address;
  err_code rc = rpc_channel_create(a->reg_scheduler, &a->reg.rpc, &a->reg_ch, e);
  if (rc != ERR_OK) return err_wrap(e, "scheduler %s", a->reg_scheduler);
  pthread_mutex_lock(&a->mu);
  a->reg_stop = false;
  if (pthread_create(&a->reg_thread, NULL, register_main, a) != 0)
    rc = err_set(e, ERR_NOMEM, "agent: cannot start the registration thread");
  else
    a->reg_started = true;
  pthread_mutex_unlock(&a->mu);
  return rc;
}

void agent_register_stop(agent *a) {
  if (!a) return;
  pthread_mutex_lock(&a->mu);
  bool started = a->reg_started;
  a->reg_started = false;
  a->reg_stop = true;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
  if (started) pthread_join(a->reg_thread, NULL);
  if (a->reg_ch) rpc_channel_destroy(a->reg_ch);
  a->reg_ch = NULL;
  free(a->reg_scheduler);
  free(a->reg_address);
  a->reg_scheduler = a->reg_address = NULL;
}

/* dispatch_standin.c — stand-ins: another agent repeating one device's
 * work within the same request (contract in dispatch.h, "Stand-ins").
 *
 * A stand-in is the device's work again from its first job: its jobs and
 * every row relayed to the device so far (the log), under the stand-in's
 * own request id so that an agent may hold a device's work and a stand-in
 * at once. From then on what goes to the device goes to the stand-in too,
 * and what either sends is taken once: dispatch.c drops the second copy of
 * rows, sums and results.
 */
#include <grpc/status.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/dispatch_internal.h"

static uint64_t id_of(const dispatch *d, int to) {
  return to < d->n_devices ? d->id : d->standins[to - d->n_devices].id;
}

/* Sets the request id of whatever m holds. */
static void set_id(Edgedi__V1__ExecuteIn *m, uint64_t id) {
  switch (m->msg_case) {
    case EDGEDI__V1__EXECUTE_IN__MSG_JOB: m->job->request_id = id; break;
    case EDGEDI__V1__EXECUTE_IN__MSG_ROWS: m->rows->request_id = id; break;
    case EDGEDI__V1__EXECUTE_IN__MSG_FE_SCALE: m->fe_scale->request_id = id; break;
    case EDGEDI__V1__EXECUTE_IN__MSG_RELEASE: m->release->request_id = id; break;
    case EDGEDI__V1__EXECUTE_IN__MSG_RESUME: m->resume->request_id = id; break;
    default: break;
  }
}

static err_code add_packed(dispatch_outbox *o, int to, Edgedi__V1__ExecuteIn *m, size_t *len,
                           err *e) {
  uint8_t *data = dispatch__pack_in(m, len);
  if (!data) return err_set(e, ERR_NOMEM, "dispatch: out of memory for a message");
  return dispatch__outbox_add(o, to, data, *len, e);
}

err_code dispatch__log(dispatch *d, int device, const uint8_t *data, size_t len, err *e) {
  if (!d->keep_log) return ERR_OK;
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) return err_set(e, ERR_NOMEM, "dispatch: out of memory for the log");
  memcpy(copy, data, len);
  return dispatch__outbox_add(&d->log[device], device, copy, len, e);
}

err_code dispatch__send(dispatch *d, dispatch_outbox *o, int device, Edgedi__V1__ExecuteIn *m,
                        bool copy_to_standins, err *e) {
  size_t len;
  set_id(m, id_of(d, device));
  err_code rc = add_packed(o, device, m, &len, e);
  if (rc != ERR_OK || !copy_to_standins || device >= d->n_devices) return rc;
  rc = dispatch__log(d, device, o->msgs[o->n - 1].data, len, e); /* the bytes just packed */
  for (int k = 0; k < d->n_standins && rc == ERR_OK; k++) {
    if (d->standins[k].role != device) continue;
    set_id(m, d->standins[k].id);
    rc = add_packed(o, d->n_devices + k, m, &len, e);
    d->bytes_standins += len;
  }
  set_id(m, d->id);
  return rc;
}

int dispatch__role_of(const dispatch *d, int from) {
  if (from >= 0 && from < d->n_devices) return from;
  int k = from - d->n_devices;
  return k >= 0 && k < d->n_standins ? d->standins[k].role : -1;
}

bool dispatch__doubled(const dispatch *d, int role) {
  for (int k = 0; k < d->n_standins; k++)
    if (d->standins[k].role == role) return true;
  return false;
}

void dispatch__release(dispatch *d, dispatch_outbox *out, bool all) {
  for (int to = 0; to < d->n_devices + d->n_standins; to++) {
    int role = dispatch__role_of(d, to);
    if (d->devices[role].jobs == 0 || (!all && !dispatch__doubled(d, role))) continue;
    Edgedi__V1__Release rel = EDGEDI__V1__RELEASE__INIT;
    Edgedi__V1__ExecuteIn in = EDGEDI__V1__EXECUTE_IN__INIT;
    in.msg_case = EDGEDI__V1__EXECUTE_IN__MSG_RELEASE;
    in.release = &rel;
    if (dispatch__send(d, out, to, &in, false, NULL) != ERR_OK) return; /* agents time out */
  }
}

err_code dispatch_keep_log(dispatch *d, err *e) {
  if (!d || d->started)
    return err_set(e, ERR_INVALID, "dispatch_keep_log: no dispatch, or it has started");
  d->keep_log = true;
  return ERR_OK;
}

err_code dispatch_add_standin(dispatch *d, int role, uint64_t id, int *tag, dispatch_outbox *out,
                              err *e) {
  if (!d || !tag || !out) return err_set(e, ERR_INVALID, "dispatch_add_standin: NULL argument");
  if (!d->keep_log || !d->started || d->state != DISPATCH_RUNNING)
    return err_set(e, ERR_INVALID,
                   "dispatch: request %llu keeps no log, has not started or is over",
                   (unsigned long long)d->id);
  if (role < 0 || role >= d->n_devices || d->devices[role].jobs == 0)
    return err_set(e, ERR_RANGE, "dispatch: device %d has no work in request %llu", role,
                   (unsigned long long)d->id);
  if (d->n_standins >= DISPATCH_MAX_STANDINS)
    return err_set(e, ERR_RANGE, "dispatch: request %llu has %d stand-ins already",
                   (unsigned long long)d->id, d->n_standins);
  if (id == d->id || id == 0)
    return err_set(e, ERR_INVALID, "dispatch: a stand-in needs its own id");
  for (int k = 0; k < d->n_standins; k++)
    if (d->standins[k].id == id)
      return err_set(e, ERR_INVALID, "dispatch: id %llu is another stand-in's",
                     (unsigned long long)id);
  int k = d->n_standins++;
  d->standins[k] = (dispatch_standin){.role = role, .id = id};
  *tag = d->n_devices + k;
  /* The log again, in its order (jobs first, as an agent needs). */
  const dispatch_outbox *lg = &d->log[role];
  for (int i = 0; i < lg->n; i++) {
    Edgedi__V1__ExecuteIn *in = edgedi__v1__execute_in__unpack(NULL, lg->msgs[i].len,
                                                               lg->msgs[i].data);
    if (!in) return err_set(e, ERR_NOMEM, "dispatch: a logged message does not decode");
    set_id(in, id);
    size_t len;
    err_code rc = add_packed(out, *tag, in, &len, e);
    edgedi__v1__execute_in__free_unpacked(in, NULL);
    if (rc != ERR_OK) return rc;
    d->bytes_standins += len;
  }
  return ERR_OK;
}

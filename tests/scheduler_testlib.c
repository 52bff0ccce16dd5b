/* scheduler_testlib.c — helpers of the scheduler's service tests
 * (see scheduler_testlib.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/preprocess.h"
#include "tests/scheduler_testlib.h"

double st_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

void st_sleep_ms(int ms) {
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

void st_check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s: %s", err_name(rc), e->msg);
}

grpc_status_code st_call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply,
                         char *details, size_t len) {
  grpc_status_code st = GRPC_STATUS_UNKNOWN;
  err e = {0};
  *reply = NULL;
  rpc_call_unary(ch, method, req, desc, ST_CALL_DEADLINE_MS, reply, &st, &e);
  if (details) snprintf(details, len, "%s", e.msg);
  return st;
}

Edgedi__V1__ListDevicesReply *st_list_devices(rpc_channel *ch) {
  Edgedi__V1__ListDevicesRequest req = EDGEDI__V1__LIST_DEVICES_REQUEST__INIT;
  ProtobufCMessage *r = NULL;
  char d[ERR_MSG_BYTES];
  grpc_status_code st = st_call(ch, ST_METHOD("ListDevices"), &req.base,
                                &edgedi__v1__list_devices_reply__descriptor, &r, d, sizeof d);
  if (st != GRPC_STATUS_OK) fail_msg("ListDevices: %s", d);
  return (Edgedi__V1__ListDevicesReply *)r;
}

const Edgedi__V1__Device *st_device_named(const Edgedi__V1__ListDevicesReply *l,
                                          const char *name) {
  for (size_t i = 0; i < l->n_devices; i++)
    if (strcmp(l->devices[i]->name, name) == 0) return l->devices[i];
  return NULL;
}

void st_wait_up(rpc_channel *ch, const char *const *names, int n) {
  double until = st_now_ms() + ST_WAIT_MS;
  for (;;) {
    Edgedi__V1__ListDevicesReply *l = st_list_devices(ch);
    int up = 0;
    for (int i = 0; i < n; i++) {
      const Edgedi__V1__Device *d = st_device_named(l, names[i]);
      up += d && strcmp(d->state, "up") == 0 && d->cost;
    }
    rpc_free(&l->base);
    if (up == n) return;
    if (st_now_ms() > until) fail_msg("only %d of %d agents came up", up, n);
    st_sleep_ms(50);
  }
}

void st_wait_state(rpc_channel *ch, const char *name, const char *state) {
  double until = st_now_ms() + ST_WAIT_MS;
  for (;;) {
    Edgedi__V1__ListDevicesReply *l = st_list_devices(ch);
    const Edgedi__V1__Device *d = st_device_named(l, name);
    bool ok = d && strcmp(d->state, state) == 0;
    rpc_free(&l->base);
    if (ok) return;
    if (st_now_ms() > until) fail_msg("device %s never became %s", name, state);
    st_sleep_ms(50);
  }
}

st_image st_make_image(int h, int w, int c, bool f32, unsigned seed) {
  st_image im;
  edgedi__v1__image__init(&im.msg);
  im.msg.height = (uint32_t)h;
  im.msg.width = (uint32_t)w;
  im.msg.channels = (uint32_t)c;
  size_t n = (size_t)h * w * c;
  im.data = malloc(n * (f32 ? 4 : 1));
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    if (f32) ((float *)im.data)[i] = (float)((seed >> 16) & 0x7fff) / 32768.0f;
    else ((uint8_t *)im.data)[i] = (uint8_t)(seed >> 16);
  }
  ProtobufCBinaryData b = {.len = n * (f32 ? 4 : 1), .data = im.data};
  if (f32) im.msg.f32 = b;
  else im.msg.u8 = b;
  return im;
}

float *st_reference_logits(xexec *x, const st_image *im, int *n) {
  const model *m = xexec_model(x);
  preprocess_image pi = preprocess_whole(im->msg.u8.len ? PREPROCESS_U8 : PREPROCESS_F32,
                                         im->data, (int)im->msg.height, (int)im->msg.width,
                                         (int)im->msg.channels);
  model_shape in = m->input, out = m->layers[m->n_layers - 1].out;
  float *xin = malloc(model_shape_elems(in) * sizeof *xin);
  float *y = malloc(model_shape_elems(out) * sizeof *y);
  err e = {0};
  model_rows all = {0, in.h};
  st_check_ok(preprocess_rows(&pi, in, all, xin, &e), &e);
  st_check_ok(xexec_run(x, xin, y, &e), &e);
  free(xin);
  *n = (int)model_shape_elems(out);
  return y;
}

double st_rel_diff(const float *a, const float *b, int n) {
  double scale = 0, worst = 0;
  for (int i = 0; i < n; i++) {
    scale = fmax(scale, fabs(b[i]));
    worst = fmax(worst, fabs(a[i] - b[i]));
  }
  return scale > 0 ? worst / scale : worst;
}

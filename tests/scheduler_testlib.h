/* scheduler_testlib.h — helpers of the scheduler's service tests: calls to
 * a Scheduler on loopback, waiting for devices to reach a state, images,
 * and the single-device reference a distributed result must equal.
 * Failures end the running cmocka test with a message.
 */
#ifndef EDGEDI_TESTS_SCHEDULER_TESTLIB_H
#define EDGEDI_TESTS_SCHEDULER_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>

#include <grpc/status.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"
#include "runtime/rpc.h"
#include "runtime/xexec.h"

enum {
  ST_CALL_DEADLINE_MS = 30000,
  ST_WAIT_MS = 30000, /* agents registered and profiled (ASan builds are slow) */
};

#define ST_METHOD(m) "/edgedi.v1.Scheduler/" m

double st_now_ms(void);
void st_sleep_ms(int ms);
void st_check_ok(err_code rc, const err *e); /* fails the test unless ERR_OK */

/* One unary call; *reply (NULL unless OK) must be rpc_free'd. details
 * (may be NULL) gets the status message. */
grpc_status_code st_call(rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply,
                         char *details, size_t len);

Edgedi__V1__ListDevicesReply *st_list_devices(rpc_channel *ch);
const Edgedi__V1__Device *st_device_named(const Edgedi__V1__ListDevicesReply *l,
                                          const char *name);
/* Until every name is 'up' with a cost model, at most ST_WAIT_MS. */
void st_wait_up(rpc_channel *ch, const char *const *names, int n);
/* Until the device is in `state` ("down", ...), at most ST_WAIT_MS. */
void st_wait_state(rpc_channel *ch, const char *name, const char *state);

/* A pseudo-random picture, HWC, uint8 or float32; free(im.data). */
typedef struct st_image {
  Edgedi__V1__Image msg;
  void *data;
} st_image;

st_image st_make_image(int h, int w, int c, bool f32, unsigned seed);

/* The single-device logits of x's model for im (preprocess + xexec_run);
 * *n gets their count; free() them. */
float *st_reference_logits(xexec *x, const st_image *im, int *n);

/* max |a - b| / max |b|: the exactness measure. */
double st_rel_diff(const float *a, const float *b, int n);

#endif

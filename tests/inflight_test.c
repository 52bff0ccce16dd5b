/* inflight_test.c — the table of requests in flight (scheduler/inflight.h):
 * messages reach the mailbox of their request as from the sending agent's
 * index; a stand-in's id (an alias) reaches the same mailbox as its tag,
 * from its own agent only; "agent down" reaches every request the agent is
 * in, once as each index it has there; ids in flight, aliases included,
 * cannot be opened or aliased twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>

#include "runtime/rpc.h"
#include "scheduler/inflight.h"

static Edgedi__V1__ExecuteOut *result_msg(uint64_t id) {
  Edgedi__V1__ExecuteOut *m = calloc(1, sizeof *m);
  Edgedi__V1__TileResult *r = calloc(1, sizeof *r);
  assert_non_null(m);
  assert_non_null(r);
  edgedi__v1__execute_out__init(m);
  edgedi__v1__tile_result__init(r);
  r->request_id = id;
  m->msg_case = EDGEDI__V1__EXECUTE_OUT__MSG_RESULT;
  m->result = r;
  return m;
}

/* The next event, which must be there. */
static inflight_event next(inflight_req *r) {
  inflight_event ev;
  assert_true(inflight_wait(r, 0, &ev));
  if (ev.kind == INFLIGHT_MESSAGE) rpc_free(&ev.msg->base);
  return ev;
}

static void test_aliases(void **state) {
  (void)state;
  int a, b, c, host; /* agents are opaque keys */
  inflight *t = NULL;
  err e = {0};
  assert_int_equal(inflight_create(&t, &e), ERR_OK);
  const void *agents[] = {&a, &b, &c};
  inflight_req *r = NULL, *other = NULL;
  assert_int_equal(inflight_open(t, 7, agents, 3, &r, &e), ERR_OK);

  /* b's message of request 7: device 1. */
  assert_true(inflight_deliver(t, 7, &b, result_msg(7), 1.0));
  inflight_event ev = next(r);
  assert_int_equal(ev.kind, INFLIGHT_MESSAGE);
  assert_int_equal(ev.device, 1);

  /* A stand-in for device 1 on agent `host` (outside the request) under
   * id 7 | 1 << 40, and one on agent c (inside it) under 7 | 2 << 40. */
  uint64_t s1 = 7 | 1ull << 40, s2 = 7 | 2ull << 40;
  assert_int_equal(inflight_alias(t, r, s1, &host, 3, &e), ERR_OK);
  assert_int_equal(inflight_alias(t, r, s2, &c, 4, &e), ERR_OK);
  assert_true(inflight_deliver(t, s1, &host, result_msg(s1), 2.0));
  assert_int_equal(next(r).device, 3);
  assert_true(inflight_deliver(t, s2, &c, result_msg(s2), 2.0));
  assert_int_equal(next(r).device, 4);
  /* An alias's id from another agent, or the request's id from the host
   * outside it: nobody's. */
  assert_false(inflight_deliver(t, s1, &a, result_msg(s1), 3.0));
  assert_false(inflight_deliver(t, 7, &host, result_msg(7), 3.0));
  assert_false(inflight_wait(r, 0, &ev));

  /* c is down: device 2 and tag 4. host is down: tag 3. */
  inflight_agent_down(t, &c, "gone");
  ev = next(r);
  assert_int_equal(ev.kind, INFLIGHT_AGENT_DOWN);
  assert_int_equal(ev.device, 2);
  assert_string_equal(ev.reason, "gone");
  assert_int_equal(next(r).device, 4);
  assert_false(inflight_wait(r, 0, &ev));
  inflight_agent_down(t, &host, "gone too");
  assert_int_equal(next(r).device, 3);

  /* Ids in flight, aliases included, are taken. */
  assert_int_equal(inflight_alias(t, r, 7, &host, 5, &e), ERR_INVALID);
  assert_int_equal(inflight_alias(t, r, s1, &host, 5, &e), ERR_INVALID);
  assert_int_equal(inflight_open(t, s2, agents, 3, &other, &e), ERR_INVALID);
  assert_null(other);
  for (int k = 2; k < INFLIGHT_MAX_ALIASES; k++)
    assert_int_equal(inflight_alias(t, r, 7 | (uint64_t)(k + 1) << 40, &host, 3 + k, &e),
                     ERR_OK);
  assert_int_equal(inflight_alias(t, r, 7 | 20ull << 40, &host, 20, &e), ERR_RANGE);

  /* Closed: its aliases go with it. */
  inflight_close(t, r);
  assert_false(inflight_deliver(t, s1, &host, result_msg(s1), 4.0));
  assert_int_equal(inflight_open(t, s1, agents, 3, &other, &e), ERR_OK);
  inflight_close(t, other);
  assert_int_equal(inflight_count(t), 0);
  inflight_destroy(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_aliases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

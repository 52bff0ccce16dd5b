/* resident_test.c — the executor's memory cache (runtime/xexec_mem.h) and
 * the agent's resident heap (runtime/resident.h):
 *  - a block given back is handed out again for a size it fits (at most
 *    four times the size asked), the smallest that fits first;
 *  - a size no cached block fits gets a new block; the cache never holds
 *    more than XMEM_MAX_CACHED_BYTES, dropping the blocks given back
 *    longest ago first;
 *  - under AddressSanitizer, a cached block is poisoned and a block handed
 *    out is addressable only up to the size asked for;
 *  - resident_keep: a size past its limit is refused with a message; 0
 *    changes nothing; 32 MB grows the resident set by about that much
 *    (with glibc's allocator; under AddressSanitizer it does nothing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/resident.h"
#include "runtime/xexec_mem.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Whether any byte of [p, p + n) is poisoned. */
static bool poisoned(const void *p, size_t n) {
  return __asan_region_is_poisoned((void *)p, n) != NULL;
}
#endif

static void test_blocks_come_back(void **state) {
  (void)state;
  xmem_cache *c = xmem_create();
  assert_non_null(c);
  char *a = xmem_get(c, 1000), *b = xmem_get(c, 4000);
  assert_non_null(a);
  assert_non_null(b);
  memset(a, 1, 1000); /* usable */
  memset(b, 2, 4000);
  assert_true(((uintptr_t)a & 15) == 0);
#if defined(__SANITIZE_ADDRESS__)
  assert_false(poisoned(a, 1000));
  assert_true(poisoned(a + 1000, 1)); /* the spare room is not the caller's */
#endif
  xmem_put(c, a);
  xmem_put(c, b);
  assert_true(xmem_cached_bytes(c) >= 5000);
#if defined(__SANITIZE_ADDRESS__)
  assert_true(poisoned(a, 1) && poisoned(b + 3999, 1)); /* given back */
#endif
  /* the smallest block that fits: a (1250 bytes with its spare room) */
  assert_ptr_equal(xmem_get(c, 1100), a);
#if defined(__SANITIZE_ADDRESS__)
  assert_false(poisoned(a, 1100));
  assert_true(poisoned(a + 1100, 1));
#endif
  /* b is more than four times 1000: a new block */
  char *d = xmem_get(c, 1000);
  assert_true(d != b && d != a);
  assert_ptr_equal(xmem_get(c, 3000), b);
  xmem_put(c, a);
  xmem_put(c, b);
  xmem_put(c, d);
  xmem_put(c, NULL);
  xmem_destroy(c);
}

static void test_cache_is_bounded(void **state) {
  (void)state;
  xmem_cache *c = xmem_create();
  assert_non_null(c);
  /* untouched: these cost address space, not memory */
  size_t big = XMEM_MAX_CACHED_BYTES / 3;
  void *p[4];
  for (int i = 0; i < 4; i++) assert_non_null(p[i] = xmem_get(c, big));
  for (int i = 0; i < 4; i++) {
    xmem_put(c, p[i]);
    assert_true(xmem_cached_bytes(c) <= XMEM_MAX_CACHED_BYTES);
  }
  /* the first two went to make room; the last two came back */
  void *x = xmem_get(c, big), *y = xmem_get(c, big);
  assert_true((x == p[2] && y == p[3]) || (x == p[3] && y == p[2]));
  xmem_put(c, x);
  xmem_put(c, y);
  xmem_destroy(c);
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  assert_non_null(f);
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

static void test_resident_keep(void **state) {
  (void)state;
  err e = {0};
  assert_int_equal(resident_keep((size_t)1 << 50, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "at most"));
  assert_int_equal(resident_keep(0, &e), ERR_OK);
  long before = rss_kb();
  assert_int_equal(resident_keep((size_t)32 << 20, &e), ERR_OK);
  long after = rss_kb();
#if !defined(__SANITIZE_ADDRESS__)
  if (after - before < 30 * 1024) fail_msg("RSS grew by %ld kB, not 32 MB", after - before);
  /* and stays: a block freed now is not given back to the system */
  void *p = malloc(8 << 20);
  assert_non_null(p);
  memset(p, 3, 8 << 20);
  free(p);
  assert_true(rss_kb() >= after - 1024);
#else
  (void)before;
  (void)after;
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_blocks_come_back),
      cmocka_unit_test(test_cache_is_bounded),
      cmocka_unit_test(test_resident_keep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

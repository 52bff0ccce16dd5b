/* xexec_mem.c — the executor's cache of buffer memory (xexec_mem.h).
 *
 * Each block carries its capacity in a 16-byte header in front of what
 * the caller gets, so that xmem_put needs only the pointer. The cache is a
 * list, oldest first, searched for the best fit (a block at most four
 * times the size asked: a few blocks serve the sizes of every plan).
 * New blocks get a quarter more than asked, so that a strip of a few more
 * rows finds its blocks again.
 *
 * Under AddressSanitizer a block is poisoned while it is in the cache, and
 * out of it only the bytes asked for are addressable: a strip that reads a
 * block after giving it back, or past the end it asked for, is reported as
 * it would be with one malloc per buffer. (Not caching under ASan, as this
 * did first, made every strip fault in fresh pages: tile times then
 * scattered twofold and adaptive_test's fits with them.) */
#include "runtime/xexec_mem.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define XMEM_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define XMEM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define XMEM_POISON(p, n) ((void)(p), (void)(n))
#define XMEM_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

enum { HEADER = 16, MAX_BLOCKS = 512 };

struct xmem_cache {
  pthread_mutex_t mu;
  unsigned char *blocks[MAX_BLOCKS]; /* each at its header, oldest first */
  int n;
  size_t bytes;
};

static size_t cap_of(const unsigned char *h) {
  size_t cap;
  memcpy(&cap, h, sizeof cap);
  return cap;
}

xmem_cache *xmem_create(void) {
  xmem_cache *c = calloc(1, sizeof *c);
  if (c) pthread_mutex_init(&c->mu, NULL);
  return c;
}

/* Frees a block at its header, cached (poisoned) or not. */
static void block_free(unsigned char *h) {
  XMEM_UNPOISON(h + HEADER, cap_of(h));
  free(h);
}

void xmem_destroy(xmem_cache *c) {
  if (!c) return;
  for (int i = 0; i < c->n; i++) block_free(c->blocks[i]);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

void *xmem_get(xmem_cache *c, size_t bytes) {
  unsigned char *h = NULL;
  pthread_mutex_lock(&c->mu);
  int best = -1;
  for (int i = 0; i < c->n; i++) {
    size_t cap = cap_of(c->blocks[i]);
    if (cap >= bytes && cap / 4 <= bytes && (best < 0 || cap < cap_of(c->blocks[best])))
      best = i;
  }
  if (best >= 0) {
    h = c->blocks[best];
    memmove(&c->blocks[best], &c->blocks[best + 1], (size_t)(c->n - best - 1) * sizeof *c->blocks);
    c->n--;
    c->bytes -= cap_of(h);
  }
  pthread_mutex_unlock(&c->mu);
  if (h) {
    XMEM_UNPOISON(h + HEADER, bytes);
    return h + HEADER;
  }
  /* Room to spare, so that the next plan's strip, a few rows taller, still
   * fits this block. */
  size_t cap = bytes + bytes / 4;
  h = malloc(HEADER + cap);
  if (!h) return NULL;
  memcpy(h, &cap, sizeof cap);
  XMEM_POISON(h + HEADER + bytes, cap - bytes);
  return h + HEADER;
}

void xmem_put(xmem_cache *c, void *p) {
  if (!p) return;
  unsigned char *h = (unsigned char *)p - HEADER;
  size_t cap = cap_of(h);
  if (cap > XMEM_MAX_CACHED_BYTES) { /* never kept: no reason to empty the cache for it */
    block_free(h);
    return;
  }
  XMEM_POISON(h + HEADER, cap);
  unsigned char *evicted[MAX_BLOCKS];
  int n_evicted = 0;
  pthread_mutex_lock(&c->mu);
  /* The oldest blocks make room: sizes that plans asked for long ago are
   * the least likely to be asked for again. */
  while (c->n > 0 && (c->n == MAX_BLOCKS || c->bytes + cap > XMEM_MAX_CACHED_BYTES)) {
    evicted[n_evicted++] = c->blocks[0];
    c->bytes -= cap_of(c->blocks[0]);
    memmove(&c->blocks[0], &c->blocks[1], (size_t)(c->n - 1) * sizeof *c->blocks);
    c->n--;
  }
  c->blocks[c->n++] = h;
  c->bytes += cap;
  pthread_mutex_unlock(&c->mu);
  for (int i = 0; i < n_evicted; i++) block_free(evicted[i]);
}

size_t xmem_cached_bytes(xmem_cache *c) {
  pthread_mutex_lock(&c->mu);
  size_t n = c->bytes;
  pthread_mutex_unlock(&c->mu);
  return n;
}

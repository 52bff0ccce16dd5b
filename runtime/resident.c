/* resident.c — a process's heap kept resident (resident.h). */
#include "runtime/resident.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define RESIDENT_WITH_GLIBC 0
#else
#define RESIDENT_WITH_GLIBC 1
#endif

enum { PIECE = 16 << 20, PAGE = 4096, MAX_PIECES = 1024 };

err_code resident_keep(size_t bytes, err *e) {
  if (bytes > (size_t)MAX_PIECES * PIECE)
    return err_set(e, ERR_INVALID, "%zu MB to keep resident: at most %d", bytes >> 20,
                   (MAX_PIECES * (PIECE >> 20)));
  /* Nothing to do without glibc's allocator (a sanitizer's replaces it). */
  if (bytes == 0 || !RESIDENT_WITH_GLIBC) return ERR_OK;
  /* One arena: the pages touched below serve every thread's blocks. */
  if (!mallopt(M_ARENA_MAX, 1) || !mallopt(M_MMAP_THRESHOLD, (int)RESIDENT_MAX_BLOCK) ||
      !mallopt(M_TRIM_THRESHOLD, INT32_MAX))
    return err_set(e, ERR_BACKEND, "glibc refused the malloc settings (mallopt)");
  static void *pieces[MAX_PIECES];
  int n = 0;
  for (size_t got = 0; got < bytes; got += PIECE) {
    pieces[n] = malloc(PIECE);
    if (!pieces[n]) break;
    /* volatile: a store the compiler may not drop along with the free */
    for (size_t o = 0; o < PIECE; o += PAGE) ((volatile char *)pieces[n])[o] = 0;
    n++;
  }
  for (int i = n - 1; i >= 0; i--) free(pieces[i]);
  if ((size_t)n * PIECE < bytes)
    return err_set(e, ERR_NOMEM, "out of memory keeping %zu MB resident", bytes >> 20);
  return ERR_OK;
}

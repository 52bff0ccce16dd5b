/* xexec_mem.h — the executor's cache of buffer memory.
 *
 * Why: a strip's buffers are large (44 MB for vgg16c whole at 200x200) and
 * an agent makes a new strip whenever the plan moves a row. Memory fresh
 * from the kernel costs a page fault per 4 KB page on first touch, and in a
 * virtual machine a fault costs microseconds: on the 2-core development VM
 * a new strip of vgg16c's first ten layers cost 13 ms of CPU in faults
 * against 2 ms of arithmetic. Blocks a destroyed strip gives back are kept
 * here, resident, for the next strip of the same executor.
 *
 * Blocks come as they were left, not zeroed: zeroing a whole block would
 * touch the pages of buffers that a strip never writes (xexec.c clears the
 * rows that must read as zeros). Thread-safe. Under AddressSanitizer a
 * cached block is poisoned, and a block handed out is addressable only up
 * to the size asked for, so that a use after xmem_put or an overrun is
 * reported. */
#ifndef EDGEDI_XEXEC_MEM_H
#define EDGEDI_XEXEC_MEM_H

#include <stdbool.h>
#include <stddef.h>

/* Most bytes the cache keeps; past it, the blocks given back longest ago
 * are freed. */
enum { XMEM_MAX_CACHED_BYTES = 128 << 20 };

typedef struct xmem_cache xmem_cache;

/* NULL when out of memory. */
xmem_cache *xmem_create(void);
/* Frees the cached blocks; blocks still out must have been given back. */
void xmem_destroy(xmem_cache *c);
/* At least `bytes` bytes (16-byte aligned, contents undefined): the
 * smallest cached block of at least that size and at most four times it,
 * or a new one. NULL when out of memory. */
void *xmem_get(xmem_cache *c, size_t bytes);
/* Gives back a block from xmem_get (NULL is ignored). */
void xmem_put(xmem_cache *c, void *p);
/* Bytes the cache holds now (for tests). */
size_t xmem_cached_bytes(xmem_cache *c);

#endif

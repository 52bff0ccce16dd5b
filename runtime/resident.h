/* resident.h — a process's heap kept resident: touched once at start and
 * never given back to the system.
 *
 * Why: on a virtual machine a page the process touches for the first time
 * costs a fault in the guest and often one in the host; on the 2-core
 * development VM (PVM under Firecracker, free-page reporting on) that is
 * 1 to 7 microseconds a page. glibc gives large blocks back when they are
 * freed (mmap'd blocks, a trimmed heap), so an agent whose plans change
 * allocated fresh pages again and again: vgg16c's tiles at the demo's base
 * point spent most of their CPU time in faults (25 ms for a tile that runs
 * in 2 ms once its pages are there), which an emulated board then
 * stretched tenfold. An inference server keeps its working memory instead.
 *
 * resident_keep(bytes) makes glibc use one arena for every thread, serve
 * blocks up to RESIDENT_MAX_BLOCK from the heap, never trim it, and then
 * grows the heap by `bytes` and touches every page. Call it before any
 * thread starts. bytes == 0 changes nothing (glibc's defaults: memory goes
 * back to the system, what a peak-RSS measurement wants), nor does a build
 * under AddressSanitizer (whose allocator replaces glibc's). */
#ifndef EDGEDI_RESIDENT_H
#define EDGEDI_RESIDENT_H

#include <stddef.h>

#include "runtime/err.h"

/* glibc's largest mmap threshold (32 MiB on 64-bit): larger blocks are
 * always mapped afresh. */
#define RESIDENT_MAX_BLOCK ((size_t)32 << 20)

err_code resident_keep(size_t bytes, err *e);

#endif

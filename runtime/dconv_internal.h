/* dconv_internal.h — what dconv.c shares with its tiles: a block of output
 * pixels, the walk over its inputs, and the tile kernels of each
 * instruction set (dconv_avx2.c, dconv_avx512.c). Every tile accumulates
 * each output value in the same order in its own lane (bias, then taps in
 * (ky, kx) order, then input channels, one fused multiply-add each), so
 * the tiles of both instruction sets give the same bits (dconv.h). */
#ifndef EDGEDI_DCONV_INTERNAL_H
#define EDGEDI_DCONV_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/dconv.h"

/* A block of output pixels, consecutive in raster order (a block may run
 * from one row into the next: small maps waste no lanes at row ends).
 * iy[p], x0[p]: the top row and left column of pixel p's window in the
 * input (a column outside [0, in_w) is padding). Pixels past n repeat the
 * last real one: their lanes are computed and dropped, the others do not
 * depend on them. interior: every window lies inside the row, so a kernel
 * row's kernel_w * in_c inputs are one contiguous run (as are its OHWI
 * weights) and are read as one loop, in the same (kx, ci) order. */
typedef struct px_block {
  int n;
  bool interior;
  int iy[DCONV_MAX_PIXELS], x0[DCONV_MAX_PIXELS];
} px_block;

/* Pixel p's inputs for kernel row ky and column kx (interior blocks: the
 * start of the row's contiguous run, kx = 0). */
static inline const float *dconv_tap(const dconv *d, const float *in, size_t in_row,
                                     const px_block *b, int p, int ky, int kx) {
  int x = b->x0[p] + kx;
  if (x < 0 || x >= d->in_w) return d->zeros;
  return in + (size_t)(b->iy[p] + ky) * in_row + (size_t)x * (size_t)d->in_c;
}

/* Calls BODY(n) once per run of n inputs after setting the pointers
 * a_[0..P) (P = pixels) and wk (the run's weights, DCONV_LANES floats
 * per input): one run per kernel row for interior blocks (each pixel's
 * window start found once, a row below for each kernel row), one per tap
 * otherwise. */
#define DCONV_FOR_EACH_RUN(P, BODY)                                                     \
  do {                                                                                  \
    const int c_ = d->in_c, kw_ = d->kernel_w;                                          \
    const float *a_[DCONV_MAX_PIXELS];                                                  \
    if (b->interior) {                                                                  \
      for (int p = 0; p < (P); p++) a_[p] = dconv_tap(d, in, in_row, b, p, 0, 0);       \
      for (int ky = 0; ky < d->kernel_h; ky++) {                                        \
        const float *wk = w;                                                            \
        BODY(kw_ * c_);                                                                 \
        w += (size_t)kw_ * c_ * DCONV_LANES;                                            \
        for (int p = 0; p < (P); p++) a_[p] += in_row;                                  \
      }                                                                                 \
      break;                                                                            \
    }                                                                                   \
    for (int ky = 0; ky < d->kernel_h; ky++)                                            \
      for (int kx = 0; kx < kw_; kx++, w += (size_t)c_ * DCONV_LANES) {                 \
        for (int p = 0; p < (P); p++) a_[p] = dconv_tap(d, in, in_row, b, p, ky, kx);   \
        const float *wk = w;                                                            \
        BODY(c_);                                                                       \
      }                                                                                 \
  } while (0)

/* A tile: the output channels of one block of 16 (lanes of them real)
 * for the pixels of b (block) or for n pixels whose inputs are a + p *
 * in_c (point: pointwise layers), written to out + p * out_c. */
typedef void dconv_block_fn(const dconv *d, const float *in, size_t in_row, const px_block *b,
                            const float *w, const float *bias, float *out, int lanes);
typedef void dconv_point_fn(const dconv *d, const float *a, int n, const float *w,
                            const float *bias, float *out, int lanes);

/* AVX2: 6 pixels x 16 lanes, and 12 pixels x 8 lanes for a block of at
 * most 8 channels. */
dconv_block_fn dconv_avx2_block16, dconv_avx2_block8;
dconv_point_fn dconv_avx2_point16, dconv_avx2_point8;
/* AVX-512: 12 pixels x 16 lanes (one zmm register per pixel), and 12
 * pixels x two blocks (16 < lanes <= 32; the second block's weights
 * block_w floats after the first's). */
dconv_block_fn dconv_avx512_block16;
dconv_point_fn dconv_avx512_point16;
void dconv_avx512_block32(const dconv *d, const float *in, size_t in_row, const px_block *b,
                          const float *w, size_t block_w, const float *bias, float *out,
                          int lanes);
void dconv_avx512_point32(const dconv *d, const float *a, int n, const float *w,
                          size_t block_w, const float *bias, float *out, int lanes);

#endif

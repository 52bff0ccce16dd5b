/* dconv_avx2.c — the direct convolution's AVX2/FMA tiles (dconv_internal.h). */
#include <immintrin.h>
#include <string.h>

#include "runtime/dconv_internal.h"

__attribute__((target("avx2,fma"))) static inline void store_lanes(float *o, __m256 y0, __m256 y1, int lanes, bool relu) {
  const __m256 zero = _mm256_setzero_ps();
  if (relu) y0 = _mm256_max_ps(y0, zero), y1 = _mm256_max_ps(y1, zero);
  if (lanes == DCONV_LANES) {
    _mm256_storeu_ps(o, y0);
    _mm256_storeu_ps(o + 8, y1);
  } else if (lanes == 8) {
    _mm256_storeu_ps(o, y0);
  } else {
    float tmp[DCONV_LANES];
    _mm256_storeu_ps(tmp, y0);
    _mm256_storeu_ps(tmp + 8, y1);
    memcpy(o, tmp, (size_t)lanes * sizeof(float));
  }
}

#define FMA16(k)                                  \
  v = _mm256_broadcast_ss(a##k + i);              \
  c##k##0 = _mm256_fmadd_ps(v, w0, c##k##0);      \
  c##k##1 = _mm256_fmadd_ps(v, w1, c##k##1)

/* The 6 x 16 tile: twelve named accumulators (an array would invite the
 * compiler to keep one in memory, the very spill this backend exists to
 * avoid), a loop over n inputs from a_[0..6) and wk, the stores. */
#define INIT16                                                          \
  __m256 c00 = _mm256_load_ps(bias), c01 = _mm256_load_ps(bias + 8);   \
  __m256 c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01; \
  __m256 c40 = c00, c41 = c01, c50 = c00, c51 = c01
#define BODY16(n)                                                                   \
  const float *a0 = a_[0], *a1 = a_[1], *a2 = a_[2], *a3 = a_[3], *a4 = a_[4],     \
              *a5 = a_[5];                                                          \
  for (int i = 0; i < (n); i++, wk += DCONV_LANES) {                               \
    __m256 w0 = _mm256_load_ps(wk), w1 = _mm256_load_ps(wk + 8), v;                \
    FMA16(0);                                                                       \
    FMA16(1);                                                                       \
    FMA16(2);                                                                       \
    FMA16(3);                                                                       \
    FMA16(4);                                                                       \
    FMA16(5);                                                                       \
  }
#define STORE16(n_px)                                                                      \
  do {                                                                                     \
    __m256 y_[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}}; \
    for (int p = 0; p < (n_px); p++)                                                       \
      store_lanes(out + (size_t)p * d->out_c, y_[p][0], y_[p][1], lanes, d->relu);          \
  } while (0)

/* 6 pixels x 16 output channels, any window. */
__attribute__((target("avx2,fma"))) void dconv_avx2_block16(const dconv *d, const float *in,
                                                         size_t in_row, const px_block *b,
                                                         const float *w, const float *bias,
                                                         float *out, int lanes) {
  INIT16;
  DCONV_FOR_EACH_RUN(6, BODY16);
  STORE16(b->n);
}

/* 6 pixels x 16 output channels of a pointwise layer: pixel p's inputs
 * are a + p * in_c (pixels past n repeat the last). */
__attribute__((target("avx2,fma"))) void dconv_avx2_point16(const dconv *d, const float *a, int n,
                                                        const float *w, const float *bias,
                                                        float *out, int lanes) {
  INIT16;
  const float *a_[6];
  for (int p = 0; p < 6; p++) a_[p] = a + (size_t)(p < n ? p : n - 1) * (size_t)d->in_c;
  const float *wk = w;
  BODY16(d->in_c);
  STORE16(n);
}

#define FMA8(k) c##k = _mm256_fmadd_ps(_mm256_broadcast_ss(a##k + i), w0, c##k)
#define INIT8                                                                        \
  __m256 c0 = _mm256_load_ps(bias), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;     \
  __m256 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0
#define BODY8(n)                                                                    \
  const float *a0 = a_[0], *a1 = a_[1], *a2 = a_[2], *a3 = a_[3], *a4 = a_[4],     \
              *a5 = a_[5], *a6 = a_[6], *a7 = a_[7], *a8 = a_[8], *a9 = a_[9],     \
              *a10 = a_[10], *a11 = a_[11];                                         \
  for (int i = 0; i < (n); i++, wk += DCONV_LANES) {                               \
    __m256 w0 = _mm256_load_ps(wk);                                                 \
    FMA8(0);                                                                        \
    FMA8(1);                                                                        \
    FMA8(2);                                                                        \
    FMA8(3);                                                                        \
    FMA8(4);                                                                        \
    FMA8(5);                                                                        \
    FMA8(6);                                                                        \
    FMA8(7);                                                                        \
    FMA8(8);                                                                        \
    FMA8(9);                                                                        \
    FMA8(10);                                                                       \
    FMA8(11);                                                                       \
  }
#define STORE8(n_px)                                                                  \
  do {                                                                                \
    __m256 y_[12] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};               \
    for (int p = 0; p < (n_px); p++)                                                  \
      store_lanes(out + (size_t)p * d->out_c, y_[p], _mm256_setzero_ps(), lanes, d->relu); \
  } while (0)

/* 12 pixels x 8 output channels, for a block with at most 8 channels left
 * (layers of 8 or 24 channels): the 16-lane block would compute half its
 * lanes for nothing. The weights keep the 16-lane packing; lanes 8..15 are
 * not read. */
__attribute__((target("avx2,fma"))) void dconv_avx2_block8(const dconv *d, const float *in,
                                                        size_t in_row, const px_block *b,
                                                        const float *w, const float *bias,
                                                        float *out, int lanes) {
  INIT8;
  DCONV_FOR_EACH_RUN(12, BODY8);
  STORE8(b->n);
}

__attribute__((target("avx2,fma"))) void dconv_avx2_point8(const dconv *d, const float *a, int n,
                                                       const float *w, const float *bias,
                                                       float *out, int lanes) {
  INIT8;
  const float *a_[12];
  for (int p = 0; p < 12; p++) a_[p] = a + (size_t)(p < n ? p : n - 1) * (size_t)d->in_c;
  const float *wk = w;
  BODY8(d->in_c);
  STORE8(n);
}

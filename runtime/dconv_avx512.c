/* dconv_avx512.c — the direct convolution's AVX-512 tiles (dconv_internal.h).
 *
 * Why: on a core with AVX-512 (Zen 4/5, recent Xeons) XNNPACK's and ONNX
 * Runtime's 16-lane kernels run 1.5 times faster than the AVX2 tile. One
 * zmm register holds a whole block of 16 output channels, so a tile of
 * 12 pixels keeps 12 independent accumulators (enough to cover the FMA
 * latency) and reads one weight vector per 12 broadcast-FMAs. Each lane
 * adds the same products in the same order as the AVX2 tile does: the bits
 * are the same, so agents on either kind of core give identical strips. */
#include <immintrin.h>

#include "runtime/dconv_internal.h"

#define ZFMA(k) c##k = _mm512_fmadd_ps(_mm512_set1_ps(a##k[i]), w0, c##k)
#define ZINIT                                                                         \
  __m512 c0 = _mm512_load_ps(bias), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;     \
  __m512 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0
#define ZBODY(n)                                                                    \
  const float *a0 = a_[0], *a1 = a_[1], *a2 = a_[2], *a3 = a_[3], *a4 = a_[4],     \
              *a5 = a_[5], *a6 = a_[6], *a7 = a_[7], *a8 = a_[8], *a9 = a_[9],     \
              *a10 = a_[10], *a11 = a_[11];                                         \
  for (int i = 0; i < (n); i++, wk += DCONV_LANES) {                               \
    __m512 w0 = _mm512_load_ps(wk);                                                 \
    ZFMA(0);                                                                        \
    ZFMA(1);                                                                        \
    ZFMA(2);                                                                        \
    ZFMA(3);                                                                        \
    ZFMA(4);                                                                        \
    ZFMA(5);                                                                        \
    ZFMA(6);                                                                        \
    ZFMA(7);                                                                        \
    ZFMA(8);                                                                        \
    ZFMA(9);                                                                        \
    ZFMA(10);                                                                       \
    ZFMA(11);                                                                       \
  }
#define ZSTORE(n_px)                                                                   \
  do {                                                                                 \
    __m512 y_[12] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};                \
    const __mmask16 m_ = (__mmask16)((1u << lanes) - 1u);                              \
    for (int p = 0; p < (n_px); p++) {                                                 \
      __m512 y = d->relu ? _mm512_max_ps(y_[p], _mm512_setzero_ps()) : y_[p];         \
      _mm512_mask_storeu_ps(out + (size_t)p * d->out_c, m_, y);                        \
    }                                                                                  \
  } while (0)

/* 12 pixels x 16 output channels, any window. */
__attribute__((target("avx512f"))) void dconv_avx512_block16(const dconv *d, const float *in,
                                                             size_t in_row, const px_block *b,
                                                             const float *w, const float *bias,
                                                             float *out, int lanes) {
  ZINIT;
  DCONV_FOR_EACH_RUN(12, ZBODY);
  ZSTORE(b->n);
}

/* 12 pixels x 16 output channels of a pointwise layer (pixels past n
 * repeat the last). */
__attribute__((target("avx512f"))) void dconv_avx512_point16(const dconv *d, const float *a,
                                                             int n, const float *w,
                                                             const float *bias, float *out,
                                                             int lanes) {
  ZINIT;
  const float *a_[12];
  for (int p = 0; p < 12; p++) a_[p] = a + (size_t)(p < n ? p : n - 1) * (size_t)d->in_c;
  const float *wk = w;
  ZBODY(d->in_c);
  ZSTORE(n);
}

/* Two blocks at once: 12 pixels x 32 output channels, 24 accumulators and
 * two weight vectors (the second block's, w2, follows after block_w
 * floats) per 12 broadcasts, half the loads per FMA of the 16-lane tile. */
#define ZFMA2(k)                                \
  v = _mm512_set1_ps(a##k[i]);                  \
  c##k = _mm512_fmadd_ps(v, w0, c##k);          \
  e##k = _mm512_fmadd_ps(v, w1, e##k)
#define ZINIT2                                                                        \
  ZINIT;                                                                              \
  __m512 e0 = _mm512_load_ps(bias + DCONV_LANES), e1 = e0, e2 = e0, e3 = e0, e4 = e0; \
  __m512 e5 = e0, e6 = e0, e7 = e0, e8 = e0, e9 = e0, e10 = e0, e11 = e0
#define ZBODY2(n)                                                                   \
  const float *a0 = a_[0], *a1 = a_[1], *a2 = a_[2], *a3 = a_[3], *a4 = a_[4],     \
              *a5 = a_[5], *a6 = a_[6], *a7 = a_[7], *a8 = a_[8], *a9 = a_[9],     \
              *a10 = a_[10], *a11 = a_[11];                                         \
  for (int i = 0; i < (n); i++, wk += DCONV_LANES) {                               \
    __m512 w0 = _mm512_load_ps(wk), w1 = _mm512_load_ps(wk + block_w), v;          \
    ZFMA2(0);                                                                       \
    ZFMA2(1);                                                                       \
    ZFMA2(2);                                                                       \
    ZFMA2(3);                                                                       \
    ZFMA2(4);                                                                       \
    ZFMA2(5);                                                                       \
    ZFMA2(6);                                                                       \
    ZFMA2(7);                                                                       \
    ZFMA2(8);                                                                       \
    ZFMA2(9);                                                                       \
    ZFMA2(10);                                                                      \
    ZFMA2(11);                                                                      \
  }
#define ZSTORE2(n_px)                                                                  \
  do {                                                                                 \
    __m512 y_[12][2] = {{c0, e0}, {c1, e1}, {c2, e2},   {c3, e3},   {c4, e4},   {c5, e5}, \
                        {c6, e6}, {c7, e7}, {c8, e8}, {c9, e9}, {c10, e10}, {c11, e11}}; \
    const __mmask16 m_ = (__mmask16)((1u << (lanes - DCONV_LANES)) - 1u);              \
    const __m512 z_ = _mm512_setzero_ps();                                             \
    for (int p = 0; p < (n_px); p++) {                                                 \
      float *o_ = out + (size_t)p * d->out_c;                                          \
      _mm512_storeu_ps(o_, d->relu ? _mm512_max_ps(y_[p][0], z_) : y_[p][0]);          \
      _mm512_mask_storeu_ps(o_ + DCONV_LANES, m_,                                      \
                            d->relu ? _mm512_max_ps(y_[p][1], z_) : y_[p][1]);         \
    }                                                                                  \
  } while (0)

/* 12 pixels x (16 < lanes <= 32) output channels, any window. */
__attribute__((target("avx512f"))) void dconv_avx512_block32(const dconv *d, const float *in,
                                                             size_t in_row, const px_block *b,
                                                             const float *w, size_t block_w,
                                                             const float *bias, float *out,
                                                             int lanes) {
  ZINIT2;
  DCONV_FOR_EACH_RUN(12, ZBODY2);
  ZSTORE2(b->n);
}

__attribute__((target("avx512f"))) void dconv_avx512_point32(const dconv *d, const float *a,
                                                             int n, const float *w,
                                                             size_t block_w, const float *bias,
                                                             float *out, int lanes) {
  ZINIT2;
  const float *a_[12];
  for (int p = 0; p < 12; p++) a_[p] = a + (size_t)(p < n ? p : n - 1) * (size_t)d->in_c;
  const float *wk = w;
  ZBODY2(d->in_c);
  ZSTORE2(n);
}

/* rowcodec.c — the zero-mask packing of rowcodec.h. */
#include "runtime/rowcodec.h"

#include <string.h>

static size_t mask_bytes(size_t n) { return (n + 7) / 8; }

/* The zero test is on bits, so that unpacking gives back every float
 * exactly (-0.0 is not +0.0 to a later division or a printed logit). */
static int is_zero(const float *f) {
  uint32_t u;
  memcpy(&u, f, sizeof u);
  return u == 0;
}

size_t rowcodec_mask_size(const float *src, size_t n) {
  size_t set = 0;
  for (size_t i = 0; i < n; i++) set += !is_zero(&src[i]);
  return mask_bytes(n) + set * sizeof(float);
}

void rowcodec_mask_pack(const float *src, size_t n, uint8_t *dst) {
  size_t nm = mask_bytes(n);
  uint8_t *vals = dst + nm;
  memset(dst, 0, nm);
  for (size_t i = 0; i < n; i++) {
    if (is_zero(&src[i])) continue;
    dst[i >> 3] |= (uint8_t)(1u << (i & 7));
    memcpy(vals, &src[i], sizeof(float)); /* x86-64 and the boards are little endian */
    vals += sizeof(float);
  }
}

static size_t mask_popcount(const uint8_t *mask, size_t n) {
  size_t set = 0, full = n / 8;
  for (size_t i = 0; i < full; i++) set += (size_t)__builtin_popcount(mask[i]);
  if (n % 8) set += (size_t)__builtin_popcount(mask[full] & ((1u << (n % 8)) - 1));
  return set;
}

err_code rowcodec_check(int encoding, const uint8_t *data, size_t len, size_t n, err *e) {
  if (n > SIZE_MAX / sizeof(float))
    return err_set(e, ERR_SHAPE, "rows of %zu floats do not fit in memory", n);
  if (encoding == ROWCODEC_RAW) {
    if (len != n * sizeof(float))
      return err_set(e, ERR_SHAPE, "raw rows of %zu bytes for %zu floats", len, n);
    return ERR_OK;
  }
  if (encoding != ROWCODEC_ZERO_MASK)
    return err_set(e, ERR_INVALID, "rows in encoding %d, which is not raw (0) or zero mask (1)",
                   encoding);
  size_t nm = mask_bytes(n);
  if (len < nm || (len - nm) % sizeof(float) != 0 || (len > 0 && !data))
    return err_set(e, ERR_SHAPE, "zero-mask rows of %zu bytes for %zu floats (mask %zu bytes)",
                   len, n, nm);
  if (n % 8 && (data[nm - 1] >> (n % 8)) != 0)
    return err_set(e, ERR_SHAPE, "zero-mask rows mark floats past the %zu they hold", n);
  size_t set = mask_popcount(data, n);
  if ((len - nm) / sizeof(float) != set)
    return err_set(e, ERR_SHAPE, "zero-mask rows mark %zu floats and carry %zu", set,
                   (len - nm) / sizeof(float));
  return ERR_OK;
}

err_code rowcodec_unpack(int encoding, const uint8_t *data, size_t len, float *dst,
                         size_t n, err *e) {
  err_code rc = rowcodec_check(encoding, data, len, n, e);
  if (rc != ERR_OK) return rc;
  if (encoding == ROWCODEC_RAW) {
    if (n) memcpy(dst, data, len);
    return ERR_OK;
  }
  const uint8_t *vals = data + mask_bytes(n);
  for (size_t i = 0; i < n; i++) {
    if (data[i >> 3] & (1u << (i & 7))) {
      memcpy(&dst[i], vals, sizeof(float));
      vals += sizeof(float);
    } else {
      dst[i] = 0.0f;
    }
  }
  return ERR_OK;
}

/* rowcodec.h — lossless packing of the float rows that cross links.
 *
 * Why: the rows a hand-off moves are mostly a ReLU's output, and about half
 * of a ReLU's outputs are exactly zero. On a 100 Mbit/s board link every
 * byte of a halo is 80 ns of waiting, so a zero mask (one bit a float) plus
 * the nonzero floats moves about half the bytes, and the receiver gets the
 * same bits back: results stay identical to the single device's.
 *
 * ROWCODEC_ZERO_MASK, for n floats: ceil(n / 8) mask bytes, bit i (LSB
 * first) set when float i is not +0.0 (its bit pattern is not all zeros, so
 * -0.0 and NaNs travel as they are), then the set floats in order, little
 * endian. ROWCODEC_RAW is the n floats as they are. The values match
 * edgedi.proto's RowsEncoding.
 */
#ifndef EDGEDI_ROWCODEC_H
#define EDGEDI_ROWCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/err.h"

typedef enum rowcodec_encoding {
  ROWCODEC_RAW = 0,
  ROWCODEC_ZERO_MASK = 1
} rowcodec_encoding;

/* Bytes the zero-mask form of src[0, n) takes. */
size_t rowcodec_mask_size(const float *src, size_t n);

/* Writes the zero-mask form of src[0, n) to dst, which holds
 * rowcodec_mask_size(src, n) bytes. */
void rowcodec_mask_pack(const float *src, size_t n, uint8_t *dst);

/* Checks that `len` bytes are a well-formed `encoding` of n floats, without
 * reading more than the mask. ERR_SHAPE (or ERR_INVALID for an unknown
 * encoding) with the reason otherwise. */
err_code rowcodec_check(int encoding, const uint8_t *data, size_t len, size_t n, err *e);

/* Checks, then writes the n floats `data` encodes to dst. */
err_code rowcodec_unpack(int encoding, const uint8_t *data, size_t len, float *dst,
                         size_t n, err *e);

#endif

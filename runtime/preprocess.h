/* preprocess.h — the one model-input preprocessing of EdgeDI: camera pixels
 * (or raw floats) to the model's float input rows.
 *
 * Exactness across devices depends on every path turning the image into the
 * model input the same way, bit for bit: the single-device run (whole
 * image) and the agents (each its strip's rows) both call preprocess_rows().
 *
 * The rule: uint8 samples become x / 255 (float division, correctly
 * rounded); float32 samples are taken as they are. A gray image (1 channel)
 * is replicated to every channel of the model input; otherwise the image's
 * channels must equal the model's. Float samples are little-endian float32
 * (as they travel on the wire), read without any alignment assumption.
 *
 * An image may hold only some rows of the whole picture (a strip): rows
 * [row_lo, row_lo + rows) of a full_height x width picture.
 */
#ifndef EDGEDI_PREPROCESS_H
#define EDGEDI_PREPROCESS_H

#include <stddef.h>

#include "runtime/err.h"
#include "runtime/model.h"

typedef enum preprocess_format {
  PREPROCESS_U8 = 1, /* camera pixels, 1 byte per sample */
  PREPROCESS_F32 = 2 /* little-endian float32, 4 bytes per sample */
} preprocess_format;

typedef struct preprocess_image {
  preprocess_format format;
  const void *data; /* rows * width * channels samples, HWC */
  size_t bytes;     /* of data */
  int width, channels;
  int row_lo, rows;  /* the rows data holds */
  int full_height;   /* of the whole picture */
} preprocess_image;

/* A whole picture held in `data` (row_lo 0, rows = full_height). */
preprocess_image preprocess_whole(preprocess_format format, const void *data,
                                  int height, int width, int channels);

/* Bytes of one sample of `format` (0 for an unknown format). */
size_t preprocess_sample_bytes(preprocess_format format);

/* ERR_OK when img is a well-formed (part of a) picture for a model whose
 * input is `in`: known format, height and width equal to the model's,
 * channels 1 or in.c, rows inside the picture, `bytes` exactly what the
 * rows need and every float32 sample a finite number. ERR_SHAPE /
 * ERR_INVALID otherwise, saying what is wrong (and which sample). */
err_code preprocess_check(const preprocess_image *img, model_shape in, err *e);

/* Writes rows [rows.lo, rows.hi) of the model input, NHWC float32
 * ((rows.hi - rows.lo) * in.w * in.c floats), to `out`. The rows must lie
 * among those img holds (ERR_RANGE otherwise). */
err_code preprocess_rows(const preprocess_image *img, model_shape in,
                         model_rows rows, float *out, err *e);

#endif

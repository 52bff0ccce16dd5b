/* preprocess.c — camera pixels to model input rows (contract in
 * preprocess.h). Each output value depends only on its own sample, so a
 * strip's rows are bit-identical to the same rows of the whole image. */
#include "runtime/preprocess.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Float samples travel little-endian; reading them with memcpy is only
 * right on a little-endian host (every target EdgeDI runs on). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "preprocess.c reads little-endian float32 with memcpy"
#endif

preprocess_image preprocess_whole(preprocess_format format, const void *data,
                                  int height, int width, int channels) {
  preprocess_image img = {
      .format = format,
      .data = data,
      .width = width,
      .channels = channels,
      .row_lo = 0,
      .rows = height,
      .full_height = height,
  };
  size_t sb = preprocess_sample_bytes(format);
  if (height > 0 && width > 0 && channels > 0)
    img.bytes = (size_t)height * (size_t)width * (size_t)channels * sb;
  return img;
}

size_t preprocess_sample_bytes(preprocess_format format) {
  switch (format) {
    case PREPROCESS_U8: return 1;
    case PREPROCESS_F32: return 4;
  }
  return 0;
}

err_code preprocess_check(const preprocess_image *img, model_shape in, err *e) {
  if (!img) return err_set(e, ERR_INVALID, "no image");
  size_t sb = preprocess_sample_bytes(img->format);
  if (sb == 0)
    return err_set(e, ERR_INVALID, "image format %d is neither uint8 nor float32",
                   (int)img->format);
  if (img->full_height != in.h || img->width != in.w)
    return err_set(e, ERR_SHAPE, "image is %d x %d, the model takes %d x %d",
                   img->full_height, img->width, in.h, in.w);
  if (img->channels != 1 && img->channels != in.c)
    return err_set(e, ERR_SHAPE,
                   "image has %d channels, the model takes %d (or 1, gray)",
                   img->channels, in.c);
  if (img->rows < 0 || img->row_lo < 0 || img->row_lo > in.h - img->rows)
    return err_set(e, ERR_RANGE,
                   "image rows [%d, %d) are not rows of a %d-row picture",
                   img->row_lo, img->row_lo + img->rows, in.h);
  /* Sizes are bounded by the model's input, so this product fits. */
  size_t want = (size_t)img->rows * (size_t)img->width * (size_t)img->channels * sb;
  if (img->bytes != want)
    return err_set(e, ERR_SHAPE,
                   "image rows hold %zu bytes, %d rows of %d x %d %s need %zu",
                   img->bytes, img->rows, img->width, img->channels,
                   sb == 1 ? "uint8" : "float32", want);
  if (want > 0 && !img->data) return err_set(e, ERR_INVALID, "image without data");
  /* A NaN or infinite sample would flow into every logit: refused here,
   * where the request can still be told which sample it was. */
  if (img->format == PREPROCESS_F32) {
    const uint8_t *src = img->data;
    size_t n = want / sizeof(float), per_row = (size_t)img->width * (size_t)img->channels;
    for (size_t i = 0; i < n; i++) {
      float v;
      memcpy(&v, src + i * sizeof v, sizeof v);
      if (!isfinite(v))
        return err_set(e, ERR_INVALID,
                       "float32 sample at row %zu, column %zu, channel %zu is %s, not a "
                       "finite number",
                       (size_t)img->row_lo + i / per_row, i % per_row / (size_t)img->channels,
                       i % (size_t)img->channels, isnan(v) ? "NaN" : "infinite");
    }
  }
  return ERR_OK;
}

err_code preprocess_rows(const preprocess_image *img, model_shape in,
                         model_rows rows, float *out, err *e) {
  err_code rc = preprocess_check(img, in, e);
  if (rc != ERR_OK) return rc;
  if (rows.lo < img->row_lo || rows.hi > img->row_lo + img->rows ||
      rows.lo > rows.hi)
    return err_set(e, ERR_RANGE, "rows [%d, %d) are not among the image's [%d, %d)",
                   rows.lo, rows.hi, img->row_lo, img->row_lo + img->rows);
  const int ci = img->channels, co = in.c;
  const size_t pixels = (size_t)(rows.hi - rows.lo) * (size_t)in.w;
  const size_t first = (size_t)(rows.lo - img->row_lo) * (size_t)in.w * (size_t)ci;
  if (img->format == PREPROCESS_U8) {
    const uint8_t *src = (const uint8_t *)img->data + first;
    for (size_t p = 0; p < pixels; p++)
      for (int c = 0; c < co; c++)
        out[p * co + c] = (float)src[p * ci + (ci == 1 ? 0 : c)] / 255.0f;
  } else {
    const uint8_t *src = (const uint8_t *)img->data + first * sizeof(float);
    for (size_t p = 0; p < pixels; p++)
      for (int c = 0; c < co; c++)
        memcpy(&out[p * co + c], src + (p * ci + (ci == 1 ? 0 : c)) * sizeof(float),
               sizeof(float));
  }
  return ERR_OK;
}

/* imagefile.c — image files and raw tensors for `edgedi infer` (contract
 * in imagefile.h).
 *
 * stb_image comes compiled in Debian's libstb, so the header is included
 * without STB_IMAGE_IMPLEMENTATION. Its failure reason is a global: fine
 * for a one-shot command, and only read right after the failing call.
 */
#include "cli/imagefile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image.h>

#include "cli/files.h"

err_code imagefile_load(const char *path, imagefile *out, err *e) {
  *out = (imagefile){0};
  uint8_t *file = NULL;
  size_t len = 0;
  err_code rc = files_read_all(path, IMAGEFILE_MAX_BYTES, &file, &len, e);
  if (rc != ERR_OK) return rc;
  /* len fits an int: files_read_all stops at IMAGEFILE_MAX_BYTES. */
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(file, (int)len, &w, &h, &n)) {
    rc = err_set(e, ERR_CORRUPT, "%s: not an image stb_image can read (%s)", path,
                 stbi_failure_reason());
  } else if (w <= 0 || h <= 0 || w > IMAGEFILE_MAX_SIDE_PX || h > IMAGEFILE_MAX_SIDE_PX) {
    rc = err_set(e, ERR_UNSUPPORTED, "%s: %dx%d pixels, at most %d a side", path, w, h,
                 IMAGEFILE_MAX_SIDE_PX);
  }
  /* Gray (with or without alpha) stays gray; anything else becomes RGB. */
  int want = n <= 2 ? 1 : 3;
  unsigned char *px = NULL;
  if (rc == ERR_OK) {
    px = stbi_load_from_memory(file, (int)len, &w, &h, &n, want);
    if (!px) rc = err_set(e, ERR_CORRUPT, "%s: %s", path, stbi_failure_reason());
  }
  free(file);
  if (rc != ERR_OK) return rc;
  size_t bytes = (size_t)w * (size_t)h * (size_t)want;
  /* Copied into our own buffer, so imagefile_free is always free(). */
  out->data = malloc(bytes);
  if (!out->data) {
    stbi_image_free(px);
    return err_set(e, ERR_NOMEM, "out of memory for %s", path);
  }
  memcpy(out->data, px, bytes);
  stbi_image_free(px);
  out->height = h, out->width = w, out->channels = want, out->bytes = bytes;
  return ERR_OK;
}

static bool parse_dim(const char *s, const char **end, int max, int *out) {
  char *stop;
  errno = 0;
  long v = strtol(s, &stop, 10);
  if (stop == s || errno || v < 1 || v > max) return false;
  *end = stop;
  *out = (int)v;
  return true;
}

err_code imagefile_parse_shape(const char *s, int *h, int *w, int *c, err *e) {
  const char *p = s ? s : "";
  *c = 1;
  if (parse_dim(p, &p, IMAGEFILE_MAX_SIDE_PX, h) && *p == 'x' &&
      parse_dim(p + 1, &p, IMAGEFILE_MAX_SIDE_PX, w) &&
      (*p == 0 || (*p == 'x' && parse_dim(p + 1, &p, IMAGEFILE_MAX_CHANNELS, c) && *p == 0)))
    return ERR_OK;
  return err_set(e, ERR_INVALID,
                 "raw shape '%s' is not HxWxC (e.g. 200x200x1; sides up to %d, channels up "
                 "to %d)",
                 s ? s : "", IMAGEFILE_MAX_SIDE_PX, IMAGEFILE_MAX_CHANNELS);
}

err_code imagefile_load_raw(const char *path, int h, int w, int c, bool f32, imagefile *out,
                            err *e) {
  *out = (imagefile){0};
  uint8_t *file = NULL;
  size_t len = 0;
  err_code rc = files_read_all(path, IMAGEFILE_MAX_BYTES, &file, &len, e);
  if (rc != ERR_OK) return rc;
  size_t want = (size_t)h * (size_t)w * (size_t)c * (f32 ? 4 : 1);
  if (len != want) {
    free(file);
    return err_set(e, ERR_SHAPE, "%s has %zu bytes; a %dx%dx%d %s tensor has %zu", path, len, h,
                   w, c, f32 ? "float32" : "uint8", want);
  }
  *out = (imagefile){.height = h, .width = w, .channels = c, .f32 = f32, .data = file,
                     .bytes = len};
  return ERR_OK;
}

void imagefile_to_msg(const imagefile *im, Edgedi__V1__Image *msg) {
  edgedi__v1__image__init(msg);
  msg->height = (uint32_t)im->height;
  msg->width = (uint32_t)im->width;
  msg->channels = (uint32_t)im->channels;
  ProtobufCBinaryData d = {.len = im->bytes, .data = im->data};
  if (im->f32) msg->f32 = d;
  else msg->u8 = d;
}

void imagefile_free(imagefile *im) {
  free(im->data);
  *im = (imagefile){0};
}

/* imagefile.h — what `edgedi infer` sends: an image file decoded to camera
 * pixels, or a raw tensor read as it is.
 *
 * Image files (PGM/PPM, PNG, BMP, and whatever else stb_image reads) are
 * decoded with stb_image (Debian's libstb) to 8-bit samples: gray stays one
 * channel (the scheduler replicates it to the model's channels, as for a
 * camera frame), color becomes three; an alpha channel is dropped. A raw
 * tensor is a file of exactly H*W*C samples, HWC, uint8 or little-endian
 * float32. Either way the pixels travel unchanged: the scheduler checks
 * them against the model (runtime/preprocess.h) and says what does not fit.
 */
#ifndef EDGEDI_CLI_IMAGEFILE_H
#define EDGEDI_CLI_IMAGEFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"

enum {
  /* The largest image or tensor read: far above any model input, far
   * below the client's message limit. */
  IMAGEFILE_MAX_BYTES = 128 << 20,
  IMAGEFILE_MAX_SIDE_PX = 16384,
  IMAGEFILE_MAX_CHANNELS = 64,
};

typedef struct imagefile {
  int height, width, channels;
  bool f32;    /* samples are float32 (raw tensors only) */
  void *data;  /* height * width * channels samples, HWC */
  size_t bytes;
} imagefile;

/* Decodes an image file. ERR_IO when it cannot be read, ERR_CORRUPT
 * (with stb_image's reason) when it is no image stb_image knows. */
err_code imagefile_load(const char *path, imagefile *out, err *e);

/* Parses "HxWxC" (or "HxW": one channel). */
err_code imagefile_parse_shape(const char *s, int *h, int *w, int *c, err *e);

/* Reads a raw HWC tensor; ERR_SHAPE when the file's size is not exactly
 * h*w*c samples. */
err_code imagefile_load_raw(const char *path, int h, int w, int c, bool f32, imagefile *out,
                            err *e);

/* The wire message for the image (pointing into im). */
void imagefile_to_msg(const imagefile *im, Edgedi__V1__Image *msg);

void imagefile_free(imagefile *im);

#endif

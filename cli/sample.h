/* sample.h — a deterministic stand-in for a NEU-CLS camera frame.
 *
 * The image is what the cluster receives: 8-bit gray pixels (DESIGN.md,
 * "Data movement"); runtime/preprocess.h turns it into a model input, as
 * for any camera image. A steel surface is mid-gray with a slow shading, fine
 * grain noise and, here, one bright scratch; everything follows from the
 * seed, so the same seed gives the same pixels on every machine.
 */
#ifndef EDGEDI_SAMPLE_H
#define EDGEDI_SAMPLE_H

#include <stdint.h>

#include "runtime/err.h"

/* Fills gray[h * w] (row-major) with a synthetic steel surface. */
err_code sample_steel_surface(int h, int w, uint64_t seed, uint8_t *gray,
                              err *e);

#endif

/* sample.c — synthetic steel-surface images (contract in sample.h).
 * A seeded splitmix64 stream rather than rand(), so the pixels depend only
 * on the seed (and libm's sin/cos, correctly rounded on glibc). */
#include "cli/sample.h"

#include <math.h>
#include <stddef.h>

#define SURFACE_LEVEL 120.0   /* mean gray of the steel */
#define SHADING_AMPLITUDE 18.0
#define GRAIN_SIGMA 14.0      /* std-dev of the pixel noise */
#define SCRATCH_BRIGHTNESS 80.0
#define SCRATCH_HALF_WIDTH 1.5 /* pixels */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) {
  return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

/* Irwin-Hall with 4 terms: close enough to a gaussian for grain. */
static double grain(uint64_t *s) {
  double sum = 0;
  for (int i = 0; i < 4; i++) sum += uniform01(s);
  return (sum - 2.0) * sqrt(3.0); /* unit variance */
}

err_code sample_steel_surface(int h, int w, uint64_t seed, uint8_t *gray,
                              err *e) {
  if (h <= 0 || w <= 0 || !gray)
    return err_set(e, ERR_INVALID, "bad sample image size %dx%d", h, w);
  uint64_t s = seed;
  /* The scratch: a segment across most of the image, from the seed. */
  double x0 = w * (0.05 + 0.3 * uniform01(&s));
  double y0 = h * (0.05 + 0.9 * uniform01(&s));
  double x1 = w * (0.65 + 0.3 * uniform01(&s));
  double y1 = h * (0.05 + 0.9 * uniform01(&s));
  double phase = 6.283185307179586 * uniform01(&s);
  double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;

  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      double v = SURFACE_LEVEL +
                 SHADING_AMPLITUDE * sin(phase + 3.0 * x / w) *
                     cos(2.0 * y / h) +
                 GRAIN_SIGMA * grain(&s);
      /* Distance from the pixel to the segment. */
      double t = ((x - x0) * dx + (y - y0) * dy) / len2;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      double px = x0 + t * dx - x, py = y0 + t * dy - y;
      double d = sqrt(px * px + py * py);
      if (d < SCRATCH_HALF_WIDTH + 1.0)
        v += SCRATCH_BRIGHTNESS *
             (d < SCRATCH_HALF_WIDTH ? 1.0 : SCRATCH_HALF_WIDTH + 1.0 - d);
      v = v < 0 ? 0 : v > 255 ? 255 : v;
      gray[(size_t)y * w + x] = (uint8_t)lround(v);
    }
  return ERR_OK;
}

/* zoo.h — the paper's eight models, built in C with deterministic weights.
 *
 * vgg13, vgg16, resnet18, resnet50 and their compact versions vgg13c,
 * vgg16c, resnet18c, resnet50c, layer by layer as ../shared/MODELS.md
 * defines them (original BN after ReLU in the VGG units, no conv bias,
 * ResNet stem without padding, projection shortcuts on every block).
 * Weights come from a seeded generator scaled so activations keep their
 * magnitude through the depth (He-style), BN as scale/shift near 1/0, so the
 * same name, options and seed always give bit-identical weights.
 */
#ifndef EDGEDI_ZOO_H
#define EDGEDI_ZOO_H

#include <stdint.h>

#include "runtime/err.h"
#include "runtime/model.h"

typedef struct zoo_options {
  int in_c, in_h, in_w; /* input, default 3 x 200 x 200 */
  int classes;          /* default 6 */
  int ratio;            /* compact models' r; 0 = the model's default */
  uint64_t seed;        /* weight generator seed, default 1 */
} zoo_options;

zoo_options zoo_defaults(void);

/* Builds and finalizes the model `name`; ERR_NOT_FOUND for unknown names,
 * ERR_SHAPE when the input is too small for the architecture. */
err_code zoo_build(const char *name, const zoo_options *opt, model **out,
                   err *e);

/* The known names, NULL-terminated. */
const char *const *zoo_names(void);
/* The default compression ratio of a compact model (0 for the originals). */
int zoo_default_ratio(const char *name);

#endif

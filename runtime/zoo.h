/* zoo.h — the paper's eight models, built in C with deterministic weights.
 *
 * vgg13, vgg16, resnet18, resnet50 and their compact versions vgg13c,
 * vgg16c, resnet18c, resnet50c, layer by layer as ../shared/MODELS.md
 * defines them (original BN after ReLU in the VGG units, no conv bias,
 * ResNet stem without padding, projection shortcuts on every block).
 * Weights come from a seeded generator scaled so activations keep their
 * magnitude through the depth (He-style), BN as scale/shift near 1/0, so the
 * same name, options and seed always give bit-identical weights.
 *
 * Layers are named by their place: "features.3.conv3x3", "features.2.pool",
 * "classifier.fc1" (VGG); "stem.conv", "layer2.0.conv1",
 * "layer2.0.shortcut.bn", "layer2.0.add", "head.fc" (ResNet); a compact
 * unit's layers are "reduce", "conv3x3", "fe", "expand" under the unit's
 * prefix ("features.3.fe", "layer1.0.unit2.fe").
 */
#ifndef EDGEDI_ZOO_H
#define EDGEDI_ZOO_H

#include <stdint.h>

#include "runtime/err.h"
#include "runtime/model.h"

/* Limits on what zoo_build accepts: they keep every shape product inside an
 * int and refuse, before allocating, a layer whose weights would not fit in
 * a device's memory (a VGG classifier grows with the input's area). */
enum {
  ZOO_MAX_INPUT_SIDE_PX = 4096,
  ZOO_MAX_INPUT_CHANNELS = 64,
  ZOO_MAX_CLASSES = 100000,
  ZOO_MAX_LAYER_WEIGHTS = 1 << 28, /* floats: 1 GiB */
};

typedef struct zoo_options {
  int in_c, in_h, in_w; /* input, default 3 x 200 x 200 */
  int classes;          /* default 6 */
  int ratio;            /* compact models' r; 0 = the model's default */
  uint64_t seed;        /* weight generator seed, default 1 */
} zoo_options;

zoo_options zoo_defaults(void);

/* Builds and finalizes the model `name` (opt NULL = zoo_defaults()) into
 * *out, which the caller frees with model_destroy(); *out is NULL on failure.
 * ERR_NOT_FOUND for unknown names, ERR_SHAPE when the input is too small for
 * the architecture, ERR_INVALID for non-positive sizes or classes, a
 * negative ratio, a ratio on an original model or one that does not divide
 * every channel count, ERR_UNSUPPORTED past the ZOO_MAX_* limits. */
err_code zoo_build(const char *name, const zoo_options *opt, model **out,
                   err *e);

/* The known names, NULL-terminated. */
const char *const *zoo_names(void);
/* The default compression ratio of a compact model (0 for the originals, -1
 * for unknown names). */
int zoo_default_ratio(const char *name);
/* Cuts a comma-separated flag value into zoo model names, in place (the
 * commas become NULs; names point into list). ERR_NOT_FOUND names the first
 * unknown one; ERR_INVALID for no name at all or more than `max`. */
err_code zoo_split_names(char *list, const char **names, int max, int *n, err *e);

#endif

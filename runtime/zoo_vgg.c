/* zoo_vgg.c — VGG13 and VGG16, original and compact, as MODELS.md defines
 * them: conv units (3x3 conv, ReLU, BN — BN after the ReLU, as the paper's
 * code has it) or compact units (1x1, 3x3, FE, 1x1, ReLU, BN), 2x2 max pools,
 * and the classifier flatten -> FC 512, ReLU -> FC 256, ReLU -> FC classes.
 *
 * Layers are named after their place in the feature list, as PyTorch's
 * `features` indexes it by entry: "features.<i>.conv3x3", "features.<i>.pool";
 * the classifier's are "classifier.fc1" ... The classifier's input size
 * follows from the input (512 x 6 x 6 on 200 x 200).
 */
#include "runtime/zoo_internal.h"

enum {
  VGG_POOL = 0, /* an 'M' in the feature list */
  VGG_FC1_FEATURES = 512,
  VGG_FC2_FEATURES = 256,
};

static const int vgg13_features[] = {64,  64,  VGG_POOL, 128, 128, VGG_POOL,
                                     256, 256, VGG_POOL, 512, 512, VGG_POOL,
                                     512, 512, VGG_POOL};
static const int vgg16_features[] = {
    64,  64,  VGG_POOL, 128, 128, VGG_POOL, 256, 256, 256, VGG_POOL,
    512, 512, 512,      VGG_POOL, 512, 512, 512, VGG_POOL};

err_code zoo_build_vgg(zoo_builder *b, int depth, int ratio, int classes) {
  const int *features = depth == 13 ? vgg13_features : vgg16_features;
  int n = depth == 13 ? (int)(sizeof vgg13_features / sizeof(int))
                      : (int)(sizeof vgg16_features / sizeof(int));
  for (int i = 0; ratio && i < n; i++)
    if (features[i] != VGG_POOL && features[i] % ratio)
      return b->rc = err_set(b->e, ERR_INVALID,
                             "%s: compression ratio %d does not divide the %d "
                             "channels of features.%d",
                             b->m->name, ratio, features[i], i);

  int x = MODEL_INPUT;
  for (int i = 0; i < n; i++) {
    int v = features[i];
    zoo_scope(b, "features.%d", i);
    if (v == VGG_POOL) {
      x = zoo_maxpool(b, x, 2, 2, "pool");
      continue;
    }
    if (ratio)
      x = zoo_compact(b, x, v / ratio, v, 1, ZOO_GAIN_RELU);
    else
      x = zoo_conv(b, x, v, 3, 1, 1, ZOO_GAIN_RELU, "conv3x3");
    x = zoo_relu(b, x, "relu");
    x = zoo_bn(b, x, "bn");
  }

  zoo_scope(b, "classifier");
  x = zoo_flatten(b, x, "flatten");
  x = zoo_fc(b, x, VGG_FC1_FEATURES, ZOO_GAIN_RELU, "fc1");
  x = zoo_relu(b, x, "relu1");
  x = zoo_fc(b, x, VGG_FC2_FEATURES, ZOO_GAIN_RELU, "fc2");
  x = zoo_relu(b, x, "relu2");
  zoo_fc(b, x, classes, ZOO_GAIN_LINEAR, "fc3");
  return b->rc;
}

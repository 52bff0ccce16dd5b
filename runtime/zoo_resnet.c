/* zoo_resnet.c — ResNet18 and ResNet50, original and compact, as MODELS.md
 * defines them: a 3x3 stride-2 stem without padding (200 -> 99), blocks that
 * all have a projection shortcut (1x1 conv with the block's stride, BN) and
 * end in ReLU(main + shortcut), and a head 2x2 avgpool stride 2 -> flatten
 * -> FC with bias.
 *
 * The strides are the paper's code's, not torchvision's: ResNet18 halves in
 * the first block of every stage, ResNet50 in the second. Layers are named
 * "stem.conv", "layer<stage>.<block>.conv1", "layer2.0.shortcut.bn",
 * "layer1.0.unit1.fe", "head.fc"; the main path precedes the shortcut.
 */
#include <stdio.h>

#include "runtime/zoo_internal.h"

enum {
  RESNET_STEM_CHANNELS = 64,
  RESNET_MAX_BLOCKS = 16,
  RESNET_STAGES = 4,
  RESNET50_BOTTLENECK = 4, /* original ResNet50's t = C_out / 4 */
};

typedef struct resnet_arch {
  int n_blocks;
  int per_stage[RESNET_STAGES];
  int channels[RESNET_MAX_BLOCKS];
  int strides[RESNET_MAX_BLOCKS];
} resnet_arch;

static const resnet_arch resnet18_arch = {
    8,
    {2, 2, 2, 2},
    {64, 64, 128, 128, 256, 256, 512, 512},
    {2, 1, 2, 1, 2, 1, 2, 1},
};

static const resnet_arch resnet50_arch = {
    16,
    {3, 4, 6, 3},
    {256, 256, 256, 512, 512, 512, 512, 1024, 1024, 1024, 1024, 1024, 1024,
     2048, 2048, 2048},
    {1, 2, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 2, 1},
};

/* The main path of one block, from `x` (c_out channels, stride s); returns
 * its last layer. The scope is the block's ("layer2.0"). */
static int main_path(zoo_builder *b, int depth, int ratio, int x, int c_out,
                     int s, const char *block) {
  if (depth == 18 && !ratio) {
    x = zoo_conv(b, x, c_out, 3, s, 1, ZOO_GAIN_RELU, "conv1");
    x = zoo_bn(b, x, "bn1");
    x = zoo_relu(b, x, "relu1");
    x = zoo_conv(b, x, c_out, 3, 1, 1, ZOO_GAIN_RELU * ZOO_RESIDUAL_SHARE,
                 "conv2");
    x = zoo_bn(b, x, "bn2");
    return zoo_relu(b, x, "relu2");
  }
  if (depth == 50 && !ratio) {
    int t = c_out / RESNET50_BOTTLENECK;
    x = zoo_conv(b, x, t, 1, 1, 0, ZOO_GAIN_RELU, "conv1");
    x = zoo_relu(b, x, "relu1");
    x = zoo_conv(b, x, t, 3, s, 1, ZOO_GAIN_RELU, "conv2");
    x = zoo_relu(b, x, "relu2");
    x = zoo_conv(b, x, c_out, 1, 1, 0, ZOO_GAIN_RELU * ZOO_RESIDUAL_SHARE,
                 "conv3");
    x = zoo_bn(b, x, "bn3");
    return zoo_relu(b, x, "relu3");
  }
  int t = c_out / ratio;
  zoo_scope(b, "%s.unit1", block);
  if (depth == 18) {
    /* Two compact units; only the second ends in BN, ReLU, so the first's
     * expansion feeds the second's reduction linearly. */
    x = zoo_compact(b, x, t, c_out, s, ZOO_GAIN_LINEAR);
    zoo_scope(b, "%s.unit2", block);
    s = 1;
  }
  x = zoo_compact(b, x, t, c_out, s, ZOO_GAIN_RELU * ZOO_RESIDUAL_SHARE);
  x = zoo_bn(b, x, "bn");
  return zoo_relu(b, x, "relu");
}

err_code zoo_build_resnet(zoo_builder *b, int depth, int ratio, int classes) {
  const resnet_arch *a = depth == 18 ? &resnet18_arch : &resnet50_arch;
  for (int i = 0; ratio && i < a->n_blocks; i++)
    if (a->channels[i] % ratio)
      return b->rc = err_set(b->e, ERR_INVALID,
                             "%s: compression ratio %d does not divide the %d "
                             "channels of block %d",
                             b->m->name, ratio, a->channels[i], i);

  zoo_scope(b, "stem");
  int x = zoo_conv(b, MODEL_INPUT, RESNET_STEM_CHANNELS, 3, 2, 0,
                   ZOO_GAIN_RELU, "conv");
  x = zoo_bn(b, x, "bn");
  x = zoo_relu(b, x, "relu");

  int i = 0;
  for (int stage = 0; stage < RESNET_STAGES; stage++) {
    for (int k = 0; k < a->per_stage[stage]; k++, i++) {
      int c_out = a->channels[i], s = a->strides[i];
      char block[MODEL_NAME_BYTES];
      snprintf(block, sizeof block, "layer%d.%d", stage + 1, k);
      zoo_scope(b, "%s", block);
      int trunk = main_path(b, depth, ratio, x, c_out, s, block);
      zoo_scope(b, "%s.shortcut", block);
      int sc = zoo_conv(b, x, c_out, 1, s, 0,
                        ZOO_GAIN_LINEAR * ZOO_RESIDUAL_SHARE, "conv");
      sc = zoo_bn(b, sc, "bn");
      zoo_scope(b, "%s", block);
      x = zoo_add(b, trunk, sc, "add");
      x = zoo_relu(b, x, "relu");
    }
  }

  zoo_scope(b, "head");
  x = zoo_avgpool(b, x, 2, 2, "avgpool");
  x = zoo_flatten(b, x, "flatten");
  zoo_fc(b, x, classes, ZOO_GAIN_LINEAR, "fc");
  return b->rc;
}

/* zoo_internal.h — what zoo.c shares with the family builders zoo_vgg.c and
 * zoo_resnet.c; not part of the zoo's public API.
 *
 * A zoo_builder appends named, initialized layers to one model. Its error is
 * sticky: once a step fails every later step returns -1 without touching the
 * model, so a family builder can chain steps and check once at the end.
 * (Sticky matters because -1 is also MODEL_INPUT: feeding a failed step's
 * result to the next model_add_* would silently read the graph input.)
 *
 * Every weight-bearing step draws its values from its own stream, seeded by
 * the build seed and the layer's full name, so a layer's weights depend on
 * nothing else (the same "features.3.conv3x3" gets the same weights at any
 * input size or class count).
 */
#ifndef EDGEDI_ZOO_INTERNAL_H
#define EDGEDI_ZOO_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/err.h"
#include "runtime/model.h"
#include "runtime/zoo.h"

/* Variance gains (weight variance = gain / fan_in) of the layers' roles.
 * Together they keep the root-mean-square of every BN and residual-sum
 * output within about 0.25x..3x of the input's through all eight models on
 * 200x200 (measured with the reference executor; resnet18c, the weakest,
 * loses about 15 % a block), so the BN shifts never dominate and no value
 * nears float's limits. zoo_test checks a looser band on 64x64. */
#define ZOO_GAIN_RELU 2.0   /* He: a ReLU (maybe after a BN) follows */
#define ZOO_GAIN_LINEAR 1.0 /* nothing halves the signal before the next one */
/* A feature enhancement multiplies by sigmoid(z), z spread around 0: the
 * mean square of that factor is about 0.3, so the convolution right after
 * gets 1/0.3 times the variance back. */
#define ZOO_FE_COMPENSATION 3.3
/* A residual block adds two paths: each one's last convolution gets this
 * share of its usual variance so the block's output, ReLU(main + shortcut),
 * stays about as large as its input (1 lets ResNet50 grow 40x, 0.5 shrinks
 * it 8x). */
#define ZOO_RESIDUAL_SHARE 0.65

typedef struct zoo_builder {
  model *m;
  uint64_t seed;
  err *e;
  err_code rc;                 /* first failure, ERR_OK while all is well */
  char scope[MODEL_NAME_BYTES]; /* prefix of the next layers' names */
} zoo_builder;

/* Sets the prefix of the following layers' names (printf-style). */
void zoo_scope(zoo_builder *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The steps. Each appends one layer named "<scope>.<leaf>" reading `in`,
 * fills its weights, and returns its index, or -1 once the builder failed. */
int zoo_conv(zoo_builder *b, int in, int out_c, int kernel, int stride,
             int pad, double gain, const char *leaf);
int zoo_bn(zoo_builder *b, int in, const char *leaf);
int zoo_relu(zoo_builder *b, int in, const char *leaf);
int zoo_maxpool(zoo_builder *b, int in, int kernel, int stride,
                const char *leaf);
int zoo_avgpool(zoo_builder *b, int in, int kernel, int stride,
                const char *leaf);
int zoo_fe(zoo_builder *b, int in, const char *leaf);
int zoo_fc(zoo_builder *b, int in, int out_features, double gain,
           const char *leaf);
int zoo_flatten(zoo_builder *b, int in, const char *leaf);
int zoo_add(zoo_builder *b, int a, int c, const char *leaf);

/* The compact unit's convolutions, 1x1 (in -> t), 3x3 (t -> t, stride s),
 * FE(t), 1x1 (t -> out_c), named reduce, conv3x3, fe, expand. The first
 * three are linear; `expand_gain` says what follows the expansion. */
int zoo_compact(zoo_builder *b, int in, int t, int out_c, int stride,
                double expand_gain);

/* The family builders: append every layer of the model (not finalized).
 * `ratio` is 0 for the original architecture. They return b->rc, or
 * ERR_INVALID when `ratio` does not divide the model's channel counts. */
err_code zoo_build_vgg(zoo_builder *b, int depth, int ratio, int classes);
err_code zoo_build_resnet(zoo_builder *b, int depth, int ratio, int classes);

#endif

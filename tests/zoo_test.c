/* zoo_test.c — the eight models of the zoo against ../shared/MODELS.md.
 *
 * Costs are checked twice: within 1 % of the paper's table, and exactly
 * against counts worked out independently from MODELS.md's layer lists (a
 * missing BN or shortcut moves a total by far less than 1 %). Architecture
 * checks walk the graphs (unit order, strides, spatial sizes, names);
 * weight checks cover determinism and the promised distributions; the
 * reference executor shows that activations keep their magnitude. Every
 * bad option must come back as the promised error with *out left NULL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model.h"
#include "runtime/ref.h"
#include "runtime/zoo.h"

enum { N_MODELS = 8 };

/* fingerprint() of two models on 3x64x64, seed 1 (see test_weights_pinned). */
#define PINNED_RESNET18C 0x967befce8af3eec5ull
#define PINNED_VGG13C 0x981eaf2d2e197af8ull

typedef struct expected_cost {
  const char *name;
  double table_params; /* MODELS.md's table */
  double table_gflop;
  size_t params;       /* exact, counted by hand from the layer lists */
  double flops;
} expected_cost;

/* The exact counts follow MODELS.md layer by layer on 3x200x200, 6 classes;
 * e.g. vgg16's 24 314 211 328 FLOPs are 2 * sum(H*W*C_out*C_in*9) over its
 * 13 convs plus 2 * (18432*512 + 512*256 + 256*6) for the classifier. */
static const expected_cost costs[N_MODELS] = {
    {"vgg13", 18.98e6, 17.74, 18978502, 17736494080.0},
    {"vgg16", 24.29e6, 24.31, 24289478, 24314211328.0},
    {"resnet18", 11.55e6, 3.067, 11550790, 3066769792.0},
    {"resnet50", 38.17e6, 16.99, 38167366, 16990960000.0},
    {"vgg13c", 10.91e6, 2.764, 10905654, 2764044288.0},
    {"vgg16c", 10.29e6, 1.287, 10292510, 1287189760.0},
    {"resnet18c", 1.106e6, 0.331, 1105734, 330878848.0},
    {"resnet50c", 18.86e6, 7.317, 18857158, 7317434752.0},
};

/* ---- helpers ------------------------------------------------------------- */

static model *build_ok(const char *name, const zoo_options *o) {
  model *m = NULL;
  err e = {0};
  err_code rc = zoo_build(name, o, &m, &e);
  if (rc != ERR_OK) fail_msg("%s: %s: %s", name, err_name(rc), e.msg);
  assert_non_null(m);
  assert_true(m->finalized);
  return m;
}

static zoo_options sized(int c, int h, int w) {
  zoo_options o = zoo_defaults();
  o.in_c = c;
  o.in_h = h;
  o.in_w = w;
  return o;
}

/* Builds `name` with `o`, expects `code`, a message and no model. */
static void expect_error(const char *name, const zoo_options *o,
                         err_code code) {
  model *m = (model *)&m; /* not NULL: zoo_build must clear it */
  err e = {0};
  err_code rc = zoo_build(name, o, &m, &e);
  if (rc != code)
    fail_msg("%s: got %s (%s), wanted %s", name ? name : "(null)",
             err_name(rc), e.msg, err_name(code));
  assert_int_equal(e.code, code);
  assert_true(strlen(e.msg) > 0);
  assert_null(m);
}

static const model_layer *layer(const model *m, const char *name) {
  int l = model_find_layer(m, name);
  if (l < 0) fail_msg("%s has no layer %s", m->name, name);
  return &m->layers[l];
}

static double mean_sq(const float *w, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)w[i] * w[i];
  return s / (double)n;
}

static bool same_weights(const model_layer *a, const model_layer *b) {
  return a->n_weights == b->n_weights && a->n_bias == b->n_bias &&
         (!a->n_weights ||
          memcmp(a->weights, b->weights, a->n_weights * sizeof(float)) == 0) &&
         (!a->n_bias ||
          memcmp(a->bias, b->bias, a->n_bias * sizeof(float)) == 0);
}

/* ---- names and defaults -------------------------------------------------- */

static void test_names(void **state) {
  (void)state;
  const char *const *names = zoo_names();
  for (int i = 0; i < N_MODELS; i++) {
    assert_non_null(names[i]);
    assert_string_equal(names[i], costs[i].name);
  }
  assert_null(names[N_MODELS]);
  assert_int_equal(zoo_default_ratio("vgg13"), 0);
  assert_int_equal(zoo_default_ratio("resnet50"), 0);
  assert_int_equal(zoo_default_ratio("vgg13c"), 4);
  assert_int_equal(zoo_default_ratio("vgg16c"), 8);
  assert_int_equal(zoo_default_ratio("resnet18c"), 8);
  assert_int_equal(zoo_default_ratio("resnet50c"), 32);
  assert_int_equal(zoo_default_ratio("vgg19"), -1);
  assert_int_equal(zoo_default_ratio(NULL), -1);

  zoo_options d = zoo_defaults();
  assert_int_equal(d.in_c, 3);
  assert_int_equal(d.in_h, 200);
  assert_int_equal(d.in_w, 200);
  assert_int_equal(d.classes, 6);
  assert_int_equal(d.ratio, 0);
  assert_int_equal(d.seed, 1);
}

/* ---- costs --------------------------------------------------------------- */

static void test_costs_match_table(void **state) {
  (void)state;
  for (int i = 0; i < N_MODELS; i++) {
    const expected_cost *c = &costs[i];
    model *m = build_ok(c->name, NULL);
    double gflop = model_flops(m) / 1e9;
    double params = (double)model_param_count(m);
    if (fabs(gflop / c->table_gflop - 1) > 0.01)
      fail_msg("%s: %.4f GFLOP, table %.4f", c->name, gflop, c->table_gflop);
    if (fabs(params / c->table_params - 1) > 0.01)
      fail_msg("%s: %.0f parameters, table %.0f", c->name, params,
               c->table_params);
    if (model_param_count(m) != c->params || model_flops(m) != c->flops)
      fail_msg("%s: %zu parameters and %.0f FLOPs, counted %zu and %.0f",
               c->name, model_param_count(m), model_flops(m), c->params,
               c->flops);
    assert_string_equal(m->name, c->name);
    model_destroy(m);
  }
}

static void test_output_shapes(void **state) {
  (void)state;
  for (int i = 0; i < N_MODELS; i++) {
    model *m = build_ok(costs[i].name, NULL);
    model_shape out = m->layers[m->n_layers - 1].out;
    assert_int_equal(out.h, 1);
    assert_int_equal(out.w, 1);
    assert_int_equal(out.c, 6);
    assert_int_equal(m->layers[m->n_layers - 1].op, MODEL_OP_FC);
    model_destroy(m);
  }
}

/* Non-square, one channel, another class count: everything still fits and
 * the classifier's input follows the feature map. */
static void test_small_inputs_build(void **state) {
  (void)state;
  for (int i = 0; i < N_MODELS; i++) {
    zoo_options o = sized(3, 64, 64);
    model *m = build_ok(costs[i].name, &o);
    assert_int_equal(m->layers[m->n_layers - 1].out.c, 6);
    model_destroy(m);

    o = sized(1, 64, 96);
    o.classes = 10;
    m = build_ok(costs[i].name, &o);
    model_shape out = m->layers[m->n_layers - 1].out;
    assert_int_equal(out.h * out.w, 1);
    assert_int_equal(out.c, 10);
    model_destroy(m);
  }
}

static void test_classifier_follows_input(void **state) {
  (void)state;
  model *m = build_ok("vgg16", NULL);
  assert_int_equal(layer(m, "classifier.flatten")->out.c, 512 * 6 * 6);
  assert_int_equal(layer(m, "classifier.fc1")->n_weights, 18432 * 512);
  model_destroy(m);

  zoo_options o = sized(3, 64, 96); /* 64 -> 2, 96 -> 3 after five pools */
  m = build_ok("vgg13c", &o);
  assert_int_equal(layer(m, "classifier.flatten")->out.c, 512 * 2 * 3);
  assert_int_equal(layer(m, "classifier.fc1")->n_weights, 512 * 2 * 3 * 512);
  model_destroy(m);

  o = sized(3, 200, 200); /* ResNet head: 7 -> 3 */
  m = build_ok("resnet50", &o);
  assert_int_equal(layer(m, "head.avgpool")->out.h, 3);
  assert_int_equal(layer(m, "head.fc")->n_weights, 2048 * 9 * 6);
  model_destroy(m);
}

/* ---- architecture -------------------------------------------------------- */

static void expect_op(const model *m, const char *name, model_op op,
                      int kernel, int stride, int pad, int out_c) {
  const model_layer *L = layer(m, name);
  if (L->op != op)
    fail_msg("%s: %s is a %s, not a %s", m->name, name, model_op_name(L->op),
             model_op_name(op));
  if (op == MODEL_OP_CONV) {
    assert_int_equal(L->kernel_h, kernel);
    assert_int_equal(L->stride_h, stride);
    assert_int_equal(L->pad_top, pad);
    assert_int_equal(L->out_channels, out_c);
    assert_int_equal(L->groups, 1);
    assert_null(L->bias); /* no convolution has a bias */
  }
}

/* The layer right after `name` reads it and is `next`. */
static void expect_next(const model *m, const char *name, const char *next) {
  int l = model_find_layer(m, name), n = model_find_layer(m, next);
  if (l < 0 || n < 0) fail_msg("%s: no %s or %s", m->name, name, next);
  assert_int_equal(m->layers[n].inputs[0], l);
}

static void test_vgg_units(void **state) {
  (void)state;
  model *m = build_ok("vgg16", NULL);
  expect_op(m, "features.0.conv3x3", MODEL_OP_CONV, 3, 1, 1, 64);
  expect_op(m, "features.0.relu", MODEL_OP_RELU, 0, 0, 0, 0);
  expect_op(m, "features.0.bn", MODEL_OP_BN, 0, 0, 0, 0);
  /* BN after ReLU, as the paper's code has it */
  expect_next(m, "features.0.conv3x3", "features.0.relu");
  expect_next(m, "features.0.relu", "features.0.bn");
  expect_op(m, "features.2.pool", MODEL_OP_MAXPOOL, 0, 0, 0, 0);
  assert_int_equal(layer(m, "features.2.pool")->out.h, 100);
  assert_int_equal(layer(m, "features.12.bn")->out.h, 25);
  assert_int_equal(layer(m, "features.14.bn")->out.h, 12);
  assert_int_equal(layer(m, "features.17.pool")->out.h, 6);
  expect_op(m, "classifier.fc3", MODEL_OP_FC, 0, 0, 0, 0);
  assert_int_equal(layer(m, "classifier.fc3")->n_bias, 6);
  int convs = 0;
  for (int l = 0; l < m->n_layers; l++)
    convs += m->layers[l].op == MODEL_OP_CONV;
  assert_int_equal(convs, 13);
  model_destroy(m);

  m = build_ok("vgg16c", NULL); /* t = v / 8 */
  expect_op(m, "features.3.reduce", MODEL_OP_CONV, 1, 1, 0, 16);
  expect_op(m, "features.3.conv3x3", MODEL_OP_CONV, 3, 1, 1, 16);
  expect_op(m, "features.3.fe", MODEL_OP_FE, 0, 0, 0, 0);
  expect_op(m, "features.3.expand", MODEL_OP_CONV, 1, 1, 0, 128);
  expect_next(m, "features.3.reduce", "features.3.conv3x3");
  expect_next(m, "features.3.conv3x3", "features.3.fe");
  expect_next(m, "features.3.fe", "features.3.expand");
  expect_next(m, "features.3.expand", "features.3.relu");
  expect_next(m, "features.3.relu", "features.3.bn");
  assert_int_equal(layer(m, "features.3.fe")->n_weights, 16 * 16);
  model_destroy(m);

  m = build_ok("vgg13c", NULL); /* t = v / 4 */
  expect_op(m, "features.0.reduce", MODEL_OP_CONV, 1, 1, 0, 16);
  expect_op(m, "features.13.expand", MODEL_OP_CONV, 1, 1, 0, 512);
  assert_int_equal(layer(m, "features.13.conv3x3")->out_channels, 128);
  model_destroy(m);
}

/* Spatial size after each block, from MODELS.md. */
static const int resnet18_sizes[] = {50, 50, 25, 25, 13, 13, 7, 7};
static const int resnet50_sizes[] = {99, 50, 50, 50, 25, 25, 25, 25,
                                     13, 13, 13, 13, 13, 13, 7,  7};
static const int resnet18_stages[] = {2, 2, 2, 2};
static const int resnet50_stages[] = {3, 4, 6, 3};

static void check_resnet_blocks(const model *m, const int *sizes,
                                const int *stages) {
  expect_op(m, "stem.conv", MODEL_OP_CONV, 3, 2, 0, 64);
  assert_int_equal(layer(m, "stem.conv")->out.h, 99);
  expect_next(m, "stem.conv", "stem.bn");
  expect_next(m, "stem.bn", "stem.relu");
  int i = 0, in_h = 99, adds = 0;
  for (int s = 0; s < 4; s++) {
    for (int k = 0; k < stages[s]; k++, i++) {
      char name[MODEL_NAME_BYTES];
      snprintf(name, sizeof name, "layer%d.%d.shortcut.conv", s + 1, k);
      const model_layer *sc = layer(m, name);
      int stride = in_h == sizes[i] ? 1 : 2;
      expect_op(m, name, MODEL_OP_CONV, 1, stride, 0, sc->out_channels);
      assert_int_equal(sc->out.h, sizes[i]);
      snprintf(name, sizeof name, "layer%d.%d.add", s + 1, k);
      const model_layer *add = layer(m, name);
      assert_int_equal(add->op, MODEL_OP_ADD);
      assert_int_equal(add->out.h, sizes[i]);
      /* ReLU(main + shortcut): main ends in ReLU, the shortcut in BN */
      assert_int_equal(m->layers[add->inputs[0]].op, MODEL_OP_RELU);
      assert_int_equal(m->layers[add->inputs[1]].op, MODEL_OP_BN);
      char next[MODEL_NAME_BYTES];
      snprintf(next, sizeof next, "layer%d.%d.relu", s + 1, k);
      expect_next(m, name, next);
      in_h = sizes[i];
    }
  }
  for (int l = 0; l < m->n_layers; l++) adds += m->layers[l].op == MODEL_OP_ADD;
  assert_int_equal(adds, i);
  expect_op(m, "head.avgpool", MODEL_OP_AVGPOOL, 0, 0, 0, 0);
  assert_int_equal(layer(m, "head.avgpool")->kernel_h, 2);
  assert_int_equal(layer(m, "head.avgpool")->stride_h, 2);
  assert_int_equal(layer(m, "head.avgpool")->out.h, 3);
  assert_int_equal(layer(m, "head.fc")->n_bias, 6);
}

static void test_resnet_blocks(void **state) {
  (void)state;
  model *m = build_ok("resnet18", NULL);
  check_resnet_blocks(m, resnet18_sizes, resnet18_stages);
  expect_op(m, "layer2.0.conv1", MODEL_OP_CONV, 3, 2, 1, 128);
  expect_next(m, "layer2.0.conv1", "layer2.0.bn1");
  expect_next(m, "layer2.0.bn1", "layer2.0.relu1");
  expect_op(m, "layer2.0.conv2", MODEL_OP_CONV, 3, 1, 1, 128);
  model_destroy(m);

  m = build_ok("resnet50", NULL);
  check_resnet_blocks(m, resnet50_sizes, resnet50_stages);
  expect_op(m, "layer1.1.conv1", MODEL_OP_CONV, 1, 1, 0, 64);
  expect_next(m, "layer1.1.conv1", "layer1.1.relu1");
  expect_op(m, "layer1.1.conv2", MODEL_OP_CONV, 3, 2, 1, 64);
  expect_op(m, "layer1.1.conv3", MODEL_OP_CONV, 1, 1, 0, 256);
  expect_next(m, "layer1.1.conv3", "layer1.1.bn3");
  model_destroy(m);

  m = build_ok("resnet18c", NULL); /* two compact units, t = C_out / 8 */
  check_resnet_blocks(m, resnet18_sizes, resnet18_stages);
  expect_op(m, "layer3.0.unit1.reduce", MODEL_OP_CONV, 1, 1, 0, 32);
  expect_op(m, "layer3.0.unit1.conv3x3", MODEL_OP_CONV, 3, 2, 1, 32);
  expect_op(m, "layer3.0.unit1.fe", MODEL_OP_FE, 0, 0, 0, 0);
  expect_op(m, "layer3.0.unit1.expand", MODEL_OP_CONV, 1, 1, 0, 256);
  expect_next(m, "layer3.0.unit1.expand", "layer3.0.unit2.reduce");
  expect_op(m, "layer3.0.unit2.conv3x3", MODEL_OP_CONV, 3, 1, 1, 32);
  expect_next(m, "layer3.0.unit2.expand", "layer3.0.unit2.bn");
  expect_next(m, "layer3.0.unit2.bn", "layer3.0.unit2.relu");
  model_destroy(m);

  m = build_ok("resnet50c", NULL); /* one compact unit, t = C_out / 32 */
  check_resnet_blocks(m, resnet50_sizes, resnet50_stages);
  expect_op(m, "layer4.1.unit1.reduce", MODEL_OP_CONV, 1, 1, 0, 64);
  expect_op(m, "layer4.1.unit1.conv3x3", MODEL_OP_CONV, 3, 2, 1, 64);
  expect_op(m, "layer4.1.unit1.expand", MODEL_OP_CONV, 1, 1, 0, 2048);
  expect_next(m, "layer4.1.unit1.expand", "layer4.1.unit1.bn");
  assert_int_equal(model_find_layer(m, "layer4.1.unit2.reduce"), -1);
  model_destroy(m);
}

static void test_names_unique_and_readable(void **state) {
  (void)state;
  zoo_options o = sized(3, 64, 64);
  for (int i = 0; i < N_MODELS; i++) {
    model *m = build_ok(costs[i].name, &o);
    for (int l = 0; l < m->n_layers; l++) {
      const char *n = m->layers[l].name;
      if (!strchr(n, '.')) fail_msg("%s: layer %d named '%s'", m->name, l, n);
      if (model_find_layer(m, n) != l)
        fail_msg("%s: name %s used twice", m->name, n);
    }
    model_destroy(m);
  }
}

/* ---- weights ------------------------------------------------------------- */

static void test_deterministic(void **state) {
  (void)state;
  zoo_options o = sized(3, 64, 64);
  for (int i = 0; i < N_MODELS; i++) {
    model *a = build_ok(costs[i].name, &o), *b = build_ok(costs[i].name, &o);
    o.seed = 2;
    model *c = build_ok(costs[i].name, &o);
    o.seed = 1;
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->n_layers, c->n_layers);
    for (int l = 0; l < a->n_layers; l++) {
      assert_string_equal(a->layers[l].name, b->layers[l].name);
      assert_true(same_weights(&a->layers[l], &b->layers[l]));
      /* a new seed changes every weight-bearing layer */
      if (a->layers[l].n_weights &&
          same_weights(&a->layers[l], &c->layers[l]))
        fail_msg("%s: %s unchanged by the seed", a->name, a->layers[l].name);
    }
    model_destroy(a);
    model_destroy(b);
    model_destroy(c);
  }
}

/* A layer's weights depend on its name, not on where the input size or
 * class count put the rest of the model. */
static void test_weights_independent_of_size(void **state) {
  (void)state;
  zoo_options small = sized(3, 64, 64);
  small.classes = 3;
  model *a = build_ok("resnet18c", NULL), *b = build_ok("resnet18c", &small);
  for (int l = 0; l < a->n_layers; l++)
    if (strcmp(a->layers[l].name, "head.fc") != 0)
      assert_true(same_weights(&a->layers[l], &b->layers[l]));
  model_destroy(a);
  model_destroy(b);
}

/* FNV-1a over the bit patterns of every weight and bias, in layer order. */
static uint64_t fingerprint(const model *m) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (int l = 0; l < m->n_layers; l++) {
    const model_layer *L = &m->layers[l];
    for (int part = 0; part < 2; part++) {
      const float *v = part ? L->bias : L->weights;
      size_t n = part ? L->n_bias : L->n_weights;
      for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        h = (h ^ bits) * 0x100000001B3ull;
      }
    }
  }
  return h;
}

/* The exact weights are part of the contract: agents and the scheduler
 * build the same model independently, on different machines, and results
 * stored under (name, seed) must stay comparable. A deliberate change of
 * the generator or of the gains updates these values. */
static void test_weights_pinned(void **state) {
  (void)state;
  zoo_options o = sized(3, 64, 64);
  model *m = build_ok("resnet18c", &o);
  assert_int_equal(fingerprint(m), PINNED_RESNET18C);
  model_destroy(m);
  m = build_ok("vgg13c", &o);
  assert_int_equal(fingerprint(m), PINNED_VGG13C);
  model_destroy(m);
}

static void expect_variance(const model *m, const char *name, double want) {
  const model_layer *L = layer(m, name);
  double got = mean_sq(L->weights, L->n_weights);
  if (fabs(got / want - 1) > 0.05)
    fail_msg("%s: %s weights have variance %g, wanted %g", m->name, name, got,
             want);
}

static void test_weight_distributions(void **state) {
  (void)state;
  zoo_options o = sized(3, 64, 64);
  model *m = build_ok("vgg16c", &o);
  for (int l = 0; l < m->n_layers; l++) {
    const model_layer *L = &m->layers[l];
    if (L->op == MODEL_OP_BN) {
      for (size_t i = 0; i < L->n_weights; i++) {
        assert_true(L->weights[i] >= 0.8f && L->weights[i] <= 1.2f);
        assert_true(L->bias[i] >= -0.1f && L->bias[i] <= 0.1f);
      }
    }
    if (L->op == MODEL_OP_FC)
      for (size_t i = 0; i < L->n_bias; i++)
        assert_true(fabsf(L->bias[i]) <= 0.01f);
  }
  /* He before a ReLU, 1/fan_in where nothing halves the signal, 1/t for FE */
  expect_variance(m, "classifier.fc1", 2.0 / 2048);
  expect_variance(m, "features.12.reduce", 1.0 / 512);
  expect_variance(m, "features.12.conv3x3", 1.0 / (64 * 9));
  assert_true(mean_sq(layer(m, "features.12.fe")->weights, 64 * 64) > 0.5 / 64);
  assert_true(mean_sq(layer(m, "features.12.fe")->weights, 64 * 64) < 2.0 / 64);
  model_destroy(m);

  m = build_ok("vgg16", &o);
  expect_variance(m, "features.10.conv3x3", 2.0 / (256 * 9));
  model_destroy(m);
}

/* Run on a smooth-ish input, every BN and residual sum stays within a
 * factor 20 of the input's root-mean-square, and the logits differ. */
static void test_activations_keep_magnitude(void **state) {
  (void)state;
  zoo_options o = sized(3, 64, 64);
  size_t n_in = 3 * 64 * 64;
  float *in = malloc(n_in * sizeof *in);
  assert_non_null(in);
  for (size_t i = 0; i < n_in; i++) in[i] = (float)sin(0.37 * (double)i) * 1.5f;
  double in_rms = sqrt(mean_sq(in, n_in));
  for (int i = 0; i < N_MODELS; i++) {
    model *m = build_ok(costs[i].name, &o);
    float **acts = NULL;
    err e = {0};
    if (ref_run_all(m, in, &acts, &e) != ERR_OK) fail_msg("%s", e.msg);
    for (int l = 0; l < m->n_layers; l++) {
      const model_layer *L = &m->layers[l];
      if (L->op != MODEL_OP_BN && L->op != MODEL_OP_ADD) continue;
      double r = sqrt(mean_sq(acts[l], model_shape_elems(L->out))) / in_rms;
      if (!(r > 0.05 && r < 20))
        fail_msg("%s: %s has %g times the input's magnitude", m->name,
                 L->name, r);
    }
    const float *logits = acts[m->n_layers - 1];
    assert_true(isfinite(logits[0]));
    assert_true(logits[0] != logits[1]);
    ref_free_acts(m, acts);
    model_destroy(m);
  }
  free(in);
}

/* ---- options ------------------------------------------------------------- */

static void test_ratio_option(void **state) {
  (void)state;
  zoo_options o = sized(3, 64, 64);
  o.ratio = 8; /* the default, spelled out: the same model */
  model *a = build_ok("vgg16c", &o), *b = build_ok("vgg16c", NULL);
  assert_int_equal(model_param_count(a),
                   model_param_count(b) - (18432 - 2048) * 512);
  model_destroy(b);
  o.ratio = 0;
  b = build_ok("vgg16c", &o);
  for (int l = 0; l < a->n_layers; l++)
    assert_true(same_weights(&a->layers[l], &b->layers[l]));
  model_destroy(a);
  model_destroy(b);

  o.ratio = 4;
  a = build_ok("vgg16c", &o);
  assert_int_equal(layer(a, "features.0.reduce")->out_channels, 16);
  model_destroy(a);
  o.ratio = 64; /* t = 1 at the first unit, still a model */
  a = build_ok("vgg13c", &o);
  assert_int_equal(layer(a, "features.0.reduce")->out_channels, 1);
  model_destroy(a);
  o.ratio = 8;
  a = build_ok("resnet50c", &o);
  assert_int_equal(layer(a, "layer1.0.unit1.reduce")->out_channels, 32);
  model_destroy(a);
}

static void test_unknown_name(void **state) {
  (void)state;
  model *m = (model *)&m;
  err e = {0};
  assert_int_equal(zoo_build("vgg19", NULL, &m, &e), ERR_NOT_FOUND);
  assert_null(m);
  assert_non_null(strstr(e.msg, "vgg19"));
  assert_non_null(strstr(e.msg, "resnet50c")); /* says what is known */
  expect_error("", NULL, ERR_NOT_FOUND);
  expect_error("VGG16", NULL, ERR_NOT_FOUND);
  expect_error(NULL, NULL, ERR_NOT_FOUND);
  /* no err to fill, no place for the model: still no crash */
  assert_int_equal(zoo_build("nope", NULL, &m, NULL), ERR_NOT_FOUND);
  assert_int_equal(zoo_build("vgg16", NULL, NULL, &e), ERR_INVALID);
}

/* The --models flag of the demo and the benchmarks. */
static void test_split_names(void **state) {
  (void)state;
  const char *names[3];
  int n = -1;
  err e = {0};
  char ok[] = "vgg16c,resnet18c";
  assert_int_equal(zoo_split_names(ok, names, 3, &n, &e), ERR_OK);
  assert_int_equal(n, 2);
  assert_string_equal(names[0], "vgg16c");
  assert_string_equal(names[1], "resnet18c");
  char unknown[] = "vgg16,vgg19";
  assert_int_equal(zoo_split_names(unknown, names, 3, &n, &e), ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "'vgg19'"));
  char many[] = "vgg13,vgg16,resnet18,resnet50";
  assert_int_equal(zoo_split_names(many, names, 3, &n, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "more than 3"));
  char none[] = ",";
  assert_int_equal(zoo_split_names(none, names, 3, &n, &e), ERR_INVALID);
  assert_int_equal(n, 0);
}

static void test_input_too_small(void **state) {
  (void)state;
  for (int i = 0; i < N_MODELS; i++) {
    zoo_options o = sized(3, 16, 16);
    expect_error(costs[i].name, &o, ERR_SHAPE);
    o = sized(3, 200, 16); /* one side is enough */
    expect_error(costs[i].name, &o, ERR_SHAPE);
    o = sized(3, 1, 1);
    expect_error(costs[i].name, &o, ERR_SHAPE);
  }
  model *m = NULL;
  err e = {0};
  zoo_options o = sized(3, 16, 16);
  assert_int_equal(zoo_build("vgg16", &o, &m, &e), ERR_SHAPE);
  assert_non_null(strstr(e.msg, "too small"));
  assert_non_null(strstr(e.msg, "3x16x16"));
  assert_int_equal(zoo_build("resnet50c", &o, &m, NULL), ERR_SHAPE);
}

static void test_bad_sizes_and_classes(void **state) {
  (void)state;
  for (int i = 0; i < N_MODELS; i++) {
    const char *n = costs[i].name;
    zoo_options o = zoo_defaults();
    o.classes = 0;
    expect_error(n, &o, ERR_INVALID);
    o.classes = -6;
    expect_error(n, &o, ERR_INVALID);
    o = sized(0, 200, 200);
    expect_error(n, &o, ERR_INVALID);
    o = sized(3, -200, 200);
    expect_error(n, &o, ERR_INVALID);
    o = sized(3, 200, 0);
    expect_error(n, &o, ERR_INVALID);
    o = zoo_defaults();
    o.ratio = -8;
    expect_error(n, &o, ERR_INVALID);
  }
}

static void test_bad_ratios(void **state) {
  (void)state;
  zoo_options o = zoo_defaults();
  o.ratio = 3; /* divides no channel count */
  expect_error("vgg16c", &o, ERR_INVALID);
  expect_error("resnet18c", &o, ERR_INVALID);
  o.ratio = 128; /* divides 512 but not the first units' 64 */
  expect_error("vgg13c", &o, ERR_INVALID);
  expect_error("resnet18c", &o, ERR_INVALID);
  o.ratio = 512; /* divides 512 .. 2048 but not the first blocks' 256 */
  expect_error("resnet50c", &o, ERR_INVALID);
  o.ratio = 4; /* an original has no ratio */
  expect_error("vgg16", &o, ERR_INVALID);
  expect_error("resnet50", &o, ERR_INVALID);
}

static void test_too_large(void **state) {
  (void)state;
  /* The VGG classifier's first FC would need 512 * 128 * 128 * 512
   * weights: refused before anything that size is allocated. */
  zoo_options o = sized(3, ZOO_MAX_INPUT_SIDE_PX, ZOO_MAX_INPUT_SIDE_PX);
  expect_error("vgg16", &o, ERR_UNSUPPORTED);
  o = sized(3, ZOO_MAX_INPUT_SIDE_PX + 1, 200);
  expect_error("resnet18", &o, ERR_UNSUPPORTED);
  o = sized(ZOO_MAX_INPUT_CHANNELS + 1, 200, 200);
  expect_error("vgg13c", &o, ERR_UNSUPPORTED);
  o = zoo_defaults();
  o.classes = ZOO_MAX_CLASSES + 1;
  expect_error("resnet50c", &o, ERR_UNSUPPORTED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_split_names),
      cmocka_unit_test(test_costs_match_table),
      cmocka_unit_test(test_output_shapes),
      cmocka_unit_test(test_small_inputs_build),
      cmocka_unit_test(test_classifier_follows_input),
      cmocka_unit_test(test_vgg_units),
      cmocka_unit_test(test_resnet_blocks),
      cmocka_unit_test(test_names_unique_and_readable),
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_weights_independent_of_size),
      cmocka_unit_test(test_weights_pinned),
      cmocka_unit_test(test_weight_distributions),
      cmocka_unit_test(test_activations_keep_magnitude),
      cmocka_unit_test(test_ratio_option),
      cmocka_unit_test(test_unknown_name),
      cmocka_unit_test(test_input_too_small),
      cmocka_unit_test(test_bad_sizes_and_classes),
      cmocka_unit_test(test_bad_ratios),
      cmocka_unit_test(test_too_large),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

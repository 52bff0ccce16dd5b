/* zoo.c — the model zoo's front door (contract in zoo.h): the name table,
 * option checks, the seeded weight generator and the layer steps the family
 * builders (zoo_vgg.c, zoo_resnet.c) are written in (zoo_internal.h).
 *
 * Relies on model.c for shapes and FLOPs: a family builder only says which
 * layers follow which, model_finalize() proves they fit. Promises that a
 * model it returns is finalized, named "<scope>.<leaf>" layer by layer, and
 * that its weights are a pure function of (name, options, seed): the
 * generator is splitmix64 and the arithmetic turning its bits into floats is
 * exact or correctly rounded, so the bits do not depend on the platform.
 */
#include "runtime/zoo.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/zoo_internal.h"

/* Spreads of the non-convolution parameters: BN close to the identity so it
 * neither grows nor shrinks the signal much, FC biases small beside the
 * activations they are added to. */
#define ZOO_BN_SCALE_SPREAD 0.2 /* scale in 1 +- this */
#define ZOO_BN_SHIFT_SPREAD 0.1 /* shift in 0 +- this */
#define ZOO_FC_BIAS_SPREAD 0.01

typedef enum { ZOO_VGG, ZOO_RESNET } zoo_family;

typedef struct zoo_entry {
  const char *name;
  zoo_family family;
  int depth;
  int ratio; /* default r; 0 for an original */
} zoo_entry;

static const zoo_entry zoo_table[] = {
    {"vgg13", ZOO_VGG, 13, 0},         {"vgg16", ZOO_VGG, 16, 0},
    {"resnet18", ZOO_RESNET, 18, 0},   {"resnet50", ZOO_RESNET, 50, 0},
    {"vgg13c", ZOO_VGG, 13, 4},        {"vgg16c", ZOO_VGG, 16, 8},
    {"resnet18c", ZOO_RESNET, 18, 8},  {"resnet50c", ZOO_RESNET, 50, 32},
};
enum { ZOO_N_MODELS = sizeof zoo_table / sizeof zoo_table[0] };

static const char *const zoo_name_list[ZOO_N_MODELS + 1] = {
    "vgg13", "vgg16", "resnet18", "resnet50",
    "vgg13c", "vgg16c", "resnet18c", "resnet50c", NULL,
};

static const zoo_entry *zoo_find(const char *name) {
  for (int i = 0; name && i < ZOO_N_MODELS; i++)
    if (strcmp(zoo_table[i].name, name) == 0) return &zoo_table[i];
  return NULL;
}

const char *const *zoo_names(void) { return zoo_name_list; }

int zoo_default_ratio(const char *name) {
  const zoo_entry *z = zoo_find(name);
  return z ? z->ratio : -1;
}

err_code zoo_split_names(char *list, const char **names, int max, int *n, err *e) {
  *n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (!zoo_find(tok)) return err_set(e, ERR_NOT_FOUND, "unknown model '%s'", tok);
    if (*n == max) return err_set(e, ERR_INVALID, "more than %d models", max);
    names[(*n)++] = tok;
  }
  return *n ? ERR_OK : err_set(e, ERR_INVALID, "--models needs a list");
}

zoo_options zoo_defaults(void) {
  zoo_options o = {.in_c = 3, .in_h = 200, .in_w = 200, .classes = 6,
                   .ratio = 0, .seed = 1};
  return o;
}

/* ---- the weight generator ------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* FNV-1a: mixes the layer name into its stream's seed. */
static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
  return h;
}

static uint64_t stream_for(uint64_t seed, const char *layer_name) {
  uint64_t s = seed;
  return splitmix64(&s) ^ fnv1a(layer_name);
}

/* Uniform in (-1, 1), symmetric (mean 0, variance 1/3): 24 random bits, the
 * half-step offset keeps 0 and the ends out. Every step is exact in double
 * (the scale is a power of two), fused or not. */
static double uniform_pm1(uint64_t *state) {
  return ((double)(splitmix64(state) >> 40) + 0.5) * (2.0 / 16777216.0) - 1.0;
}

/* center + spread * u, rounded so that no compiler can fuse a multiply-add
 * (contraction would change the last bit on some machines): the product is
 * rounded to float first, and the sum is a float add of two floats. */
static void fill(float *w, size_t n, double center, double spread,
                 uint64_t *state) {
  for (size_t i = 0; i < n; i++)
    w[i] = (float)center + (float)(spread * uniform_pm1(state));
}

/* Uniform weights with variance gain / fan_in (U(-a, a) has variance a^2/3). */
static void fill_scaled(float *w, size_t n, size_t fan_in, double gain,
                        uint64_t *state) {
  fill(w, n, 0.0, sqrt(3.0 * gain / (double)fan_in), state);
}

/* ---- the steps ----------------------------------------------------------- */

void zoo_scope(zoo_builder *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->scope, sizeof b->scope, fmt, ap);
  va_end(ap);
  if ((n < 0 || (size_t)n >= sizeof b->scope) && b->rc == ERR_OK)
    b->rc = err_set(b->e, ERR_INTERNAL, "layer name prefix '%s' too long",
                    b->scope);
}

/* Names a freshly appended layer and returns the stream for its weights;
 * records a failure (l < 0, or a name too long) in the builder. */
static bool adopt(zoo_builder *b, int l, const char *leaf, uint64_t *stream) {
  if (l < 0) {
    b->rc = b->e->code != ERR_OK ? b->e->code : ERR_INTERNAL;
    err_wrap(b->e, "at %s.%s", b->scope, leaf);
    return false;
  }
  char *name = b->m->layers[l].name;
  int n = snprintf(name, MODEL_NAME_BYTES, "%s.%s", b->scope, leaf);
  if (n < 0 || n >= MODEL_NAME_BYTES) {
    b->rc = err_set(b->e, ERR_INTERNAL, "layer name '%s.%s' too long",
                    b->scope, leaf);
    return false;
  }
  *stream = stream_for(b->seed, name);
  return true;
}

/* Refuses, before allocating, a layer whose weights pass the limit. */
static bool weights_fit(zoo_builder *b, double n_weights, const char *leaf) {
  if (n_weights <= (double)ZOO_MAX_LAYER_WEIGHTS) return true;
  b->rc = err_set(b->e, ERR_UNSUPPORTED,
                  "layer %s.%s would hold %.0f weights, more than the %d "
                  "allowed (input too large)",
                  b->scope, leaf, n_weights, ZOO_MAX_LAYER_WEIGHTS);
  return false;
}

static int channels_of(const zoo_builder *b, int in) {
  return model_tensor_shape(b->m, in).c;
}

int zoo_conv(zoo_builder *b, int in, int out_c, int kernel, int stride,
             int pad, double gain, const char *leaf) {
  if (b->rc != ERR_OK) return -1;
  int in_c = channels_of(b, in);
  size_t fan_in = (size_t)in_c * kernel * kernel;
  if (!weights_fit(b, (double)fan_in * out_c, leaf)) return -1;
  int l = model_add_conv(b->m, in, out_c, kernel, stride, pad, 1, false, b->e);
  uint64_t s;
  if (!adopt(b, l, leaf, &s)) return -1;
  model_layer *L = &b->m->layers[l];
  fill_scaled(L->weights, L->n_weights, fan_in, gain, &s);
  return l;
}

int zoo_bn(zoo_builder *b, int in, const char *leaf) {
  if (b->rc != ERR_OK) return -1;
  int l = model_add_bn(b->m, in, b->e);
  uint64_t s;
  if (!adopt(b, l, leaf, &s)) return -1;
  model_layer *L = &b->m->layers[l];
  fill(L->weights, L->n_weights, 1.0, ZOO_BN_SCALE_SPREAD, &s);
  fill(L->bias, L->n_bias, 0.0, ZOO_BN_SHIFT_SPREAD, &s);
  return l;
}

int zoo_fe(zoo_builder *b, int in, const char *leaf) {
  if (b->rc != ERR_OK) return -1;
  int l = model_add_fe(b->m, in, b->e);
  uint64_t s;
  if (!adopt(b, l, leaf, &s)) return -1;
  /* Variance 1/t: the logits W * mean stay about as large as the means, so
   * the sigmoids stay near 1/2 and differ between channels. */
  model_layer *L = &b->m->layers[l];
  fill_scaled(L->weights, L->n_weights, (size_t)channels_of(b, in), 1.0, &s);
  return l;
}

int zoo_fc(zoo_builder *b, int in, int out_features, double gain,
           const char *leaf) {
  if (b->rc != ERR_OK) return -1;
  size_t fan_in = (size_t)channels_of(b, in);
  if (!weights_fit(b, (double)fan_in * out_features, leaf)) return -1;
  int l = model_add_fc(b->m, in, out_features, true, b->e);
  uint64_t s;
  if (!adopt(b, l, leaf, &s)) return -1;
  model_layer *L = &b->m->layers[l];
  fill_scaled(L->weights, L->n_weights, fan_in, gain, &s);
  fill(L->bias, L->n_bias, 0.0, ZOO_FC_BIAS_SPREAD, &s);
  return l;
}

/* The weightless steps differ only in the model_add_* they call. */
#define ZOO_PLAIN_STEP(call)                 \
  do {                                       \
    if (b->rc != ERR_OK) return -1;          \
    int l_ = (call);                         \
    uint64_t unused_;                        \
    return adopt(b, l_, leaf, &unused_) ? l_ : -1; \
  } while (0)

int zoo_relu(zoo_builder *b, int in, const char *leaf) {
  ZOO_PLAIN_STEP(model_add_relu(b->m, in, b->e));
}

int zoo_maxpool(zoo_builder *b, int in, int kernel, int stride,
                const char *leaf) {
  ZOO_PLAIN_STEP(model_add_maxpool(b->m, in, kernel, stride, 0, b->e));
}

int zoo_avgpool(zoo_builder *b, int in, int kernel, int stride,
                const char *leaf) {
  ZOO_PLAIN_STEP(model_add_avgpool(b->m, in, kernel, stride, 0, b->e));
}

int zoo_flatten(zoo_builder *b, int in, const char *leaf) {
  ZOO_PLAIN_STEP(model_add_flatten(b->m, in, b->e));
}

int zoo_add(zoo_builder *b, int a, int c, const char *leaf) {
  ZOO_PLAIN_STEP(model_add_add(b->m, a, c, b->e));
}

int zoo_compact(zoo_builder *b, int in, int t, int out_c, int stride,
                double expand_gain) {
  int x = zoo_conv(b, in, t, 1, 1, 0, ZOO_GAIN_LINEAR, "reduce");
  x = zoo_conv(b, x, t, 3, stride, 1, ZOO_GAIN_LINEAR, "conv3x3");
  x = zoo_fe(b, x, "fe");
  return zoo_conv(b, x, out_c, 1, 1, 0, expand_gain * ZOO_FE_COMPENSATION,
                  "expand");
}

/* ---- zoo_build ----------------------------------------------------------- */

static err_code check_options(const zoo_entry *z, const zoo_options *o,
                              err *e) {
  if (o->in_c <= 0 || o->in_h <= 0 || o->in_w <= 0)
    return err_set(e, ERR_INVALID,
                   "%s: input %dx%dx%d (CxHxW) must be positive", z->name,
                   o->in_c, o->in_h, o->in_w);
  if (o->in_c > ZOO_MAX_INPUT_CHANNELS || o->in_h > ZOO_MAX_INPUT_SIDE_PX ||
      o->in_w > ZOO_MAX_INPUT_SIDE_PX)
    return err_set(e, ERR_UNSUPPORTED,
                   "%s: input %dx%dx%d (CxHxW) exceeds %d channels or %d "
                   "pixels a side",
                   z->name, o->in_c, o->in_h, o->in_w, ZOO_MAX_INPUT_CHANNELS,
                   ZOO_MAX_INPUT_SIDE_PX);
  if (o->classes <= 0)
    return err_set(e, ERR_INVALID, "%s: %d classes (must be at least 1)",
                   z->name, o->classes);
  if (o->classes > ZOO_MAX_CLASSES)
    return err_set(e, ERR_UNSUPPORTED, "%s: %d classes, at most %d supported",
                   z->name, o->classes, ZOO_MAX_CLASSES);
  if (o->ratio < 0)
    return err_set(e, ERR_INVALID, "%s: compression ratio %d is negative",
                   z->name, o->ratio);
  if (o->ratio > 0 && z->ratio == 0)
    return err_set(e, ERR_INVALID,
                   "%s is an original model: a compression ratio (%d) applies "
                   "only to the compact ones (%sc)",
                   z->name, o->ratio, z->name);
  return ERR_OK;
}

err_code zoo_build(const char *name, const zoo_options *opt, model **out,
                   err *e) {
  if (!out) return err_set(e, ERR_INVALID, "zoo_build: no place for the model");
  *out = NULL;
  const zoo_entry *z = zoo_find(name);
  if (!z) {
    char known[256] = "";
    for (int i = 0; i < ZOO_N_MODELS; i++)
      snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
               i ? ", " : "", zoo_name_list[i]);
    return err_set(e, ERR_NOT_FOUND, "unknown model '%.64s' (known: %s)",
                   name ? name : "(null)", known);
  }
  zoo_options o = opt ? *opt : zoo_defaults();
  err_code rc = check_options(z, &o, e);
  if (rc != ERR_OK) return rc;

  model_shape in = {.h = o.in_h, .w = o.in_w, .c = o.in_c};
  model *m = model_create(z->name, in);
  if (!m) return err_set(e, ERR_NOMEM, "out of memory creating %s", z->name);
  /* The steps need an err to read codes back from, whatever the caller
   * passed. */
  err local = {ERR_OK, ""};
  zoo_builder b = {.m = m, .seed = o.seed, .e = &local, .rc = ERR_OK};
  int ratio = z->ratio ? (o.ratio ? o.ratio : z->ratio) : 0;
  rc = z->family == ZOO_VGG ? zoo_build_vgg(&b, z->depth, ratio, o.classes)
                            : zoo_build_resnet(&b, z->depth, ratio, o.classes);
  if (rc == ERR_OK) rc = model_finalize(m, &local);
  if (rc != ERR_OK) {
    model_destroy(m);
    if (rc == ERR_SHAPE)
      err_wrap(&local, "input %dx%dx%d (CxHxW) is too small for %s", o.in_c,
               o.in_h, o.in_w, z->name);
    else if (rc != ERR_INVALID && rc != ERR_UNSUPPORTED)
      err_wrap(&local, "building %s", z->name);
    if (e) *e = local;
    return rc;
  }
  *out = m;
  return ERR_OK;
}

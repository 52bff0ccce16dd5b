/* modelspec.c — building the fused model a ModelSpec names, and digests
 * (contract in modelspec.h). */
#include "runtime/modelspec.h"

#include <stdio.h>
#include <string.h>

#include "runtime/fuse.h"
#include "runtime/onnx_import.h"
#include "runtime/zoo.h"

static const uint64_t fnv_offset = 1469598103934665603ull;
static const uint64_t fnv_prime = 1099511628211ull;

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * fnv_prime;
  return h;
}

static uint64_t fnv_int(uint64_t h, int v) {
  int32_t x = v;
  return fnv(h, &x, sizeof x);
}

void modelspec_digest(const model *m, char digest[MODELSPEC_DIGEST_BYTES]) {
  uint64_t h = fnv_offset;
  h = fnv_int(h, m->input.h);
  h = fnv_int(h, m->input.w);
  h = fnv_int(h, m->input.c);
  for (int l = 0; l < m->n_layers; l++) {
    const model_layer *L = &m->layers[l];
    const int geometry[] = {L->op, L->n_inputs, L->inputs[0], L->inputs[1],
                            L->kernel_h, L->kernel_w, L->stride_h, L->stride_w,
                            L->pad_top, L->pad_bottom, L->pad_left, L->pad_right,
                            L->groups, L->out_channels, L->relu};
    for (size_t i = 0; i < sizeof geometry / sizeof geometry[0]; i++)
      h = fnv_int(h, geometry[i]);
    if (L->n_weights) h = fnv(h, L->weights, L->n_weights * sizeof(float));
    if (L->n_bias) h = fnv(h, L->bias, L->n_bias * sizeof(float));
  }
  snprintf(digest, MODELSPEC_DIGEST_BYTES, "%016llx", (unsigned long long)h);
}

/* Fuses m (consumed), names it after the spec, digests it. */
static err_code fuse_named(const Edgedi__V1__ModelSpec *spec, model *m,
                           model **fused, char digest[MODELSPEC_DIGEST_BYTES],
                           err *e) {
  err_code rc = fuse_model(m, fused, e);
  model_destroy(m);
  if (rc != ERR_OK) return rc;
  if (spec->name && spec->name[0])
    snprintf((*fused)->name, sizeof (*fused)->name, "%s", spec->name);
  modelspec_digest(*fused, digest);
  return ERR_OK;
}

err_code modelspec_build(const Edgedi__V1__ModelSpec *spec, model **fused,
                         char digest[MODELSPEC_DIGEST_BYTES], err *e) {
  if (!spec) return err_set(e, ERR_INVALID, "no model spec");
  const char *name = spec->name ? spec->name : "";
  bool has_zoo = spec->zoo && spec->zoo[0];
  if (has_zoo && spec->onnx.len)
    return err_set(e, ERR_INVALID,
                   "model '%s': the spec names both a zoo architecture and "
                   "an ONNX file", name);
  model *m = NULL;
  err_code rc;
  if (spec->onnx.len) {
    /* The file alone defines the model: the zoo options do not apply. */
    rc = onnx_import(spec->onnx.data, spec->onnx.len, &m, e);
    if (rc != ERR_OK) return err_wrap(e, "ONNX file");
    return fuse_named(spec, m, fused, digest, e);
  }
  if (!has_zoo)
    return err_set(e, ERR_INVALID, "model '%s': the spec names no architecture",
                   name);
  zoo_options o = zoo_defaults();
  if (spec->height) o.in_h = (int)spec->height;
  if (spec->width) o.in_w = (int)spec->width;
  if (spec->channels) o.in_c = (int)spec->channels;
  if (spec->classes) o.classes = (int)spec->classes;
  if (spec->ratio) o.ratio = (int)spec->ratio;
  if (spec->seed) o.seed = spec->seed;
  rc = zoo_build(spec->zoo, &o, &m, e);
  if (rc != ERR_OK) return rc;
  return fuse_named(spec, m, fused, digest, e);
}

/* onnx_seeds.c — writes the fuzzer's seed corpus into the directory
 * argv[1]: small ONNX files that reach every operator handler and pattern
 * of the importer, and damaged copies of them.
 *
 *  - exports (onnx_export) of miniature VGG- and ResNet-shaped graphs with
 *    the zoo's layer mix (conv units, compact units with feature
 *    enhancement, BN, pools, residual adds, classifier), unfused and fused,
 *    a few channels wide so that a seed is kilobytes, not megabytes;
 *  - with `--zoo`, exports of the real zoo models at a small input (large
 *    files: the fuzzer truncates them to its -max_len);
 *  - hand-built graphs (onnx_testlib) written the way PyTorch writes them:
 *    MatMul/Unsqueeze feature enhancement, a dynamic-batch view through
 *    Shape/Gather/Concat/Reshape, Pad before Conv, constants, pools;
 *  - truncated and byte-flipped variants of each.
 * Built and run by scripts/fuzz_onnx.sh; prints what it wrote.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fuse.h"
#include "runtime/onnx_export.h"
#include "runtime/zoo.h"
#include "tests/onnx_testlib.h"

static const char *dir;
static int written;

static void put(const char *name, const void *bytes, size_t len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
    fprintf(stderr, "onnx_seeds: cannot write %s\n", path);
    exit(1);
  }
  written++;
}

/* The file, two truncations and two byte flips. */
static void put_with_variants(const char *name, const void *bytes, size_t len) {
  char n[256];
  put(name, bytes, len);
  uint8_t *copy = malloc(len);
  memcpy(copy, bytes, len);
  snprintf(n, sizeof n, "%s.cut-half", name);
  put(n, bytes, len / 2);
  snprintf(n, sizeof n, "%s.cut-last", name);
  put(n, bytes, len ? len - 1 : 0);
  for (int k = 0; k < 2 && len; k++) {
    size_t at = (len * (k + 1)) / 3;
    copy[at] ^= (uint8_t)(0x5a + k);
    snprintf(n, sizeof n, "%s.flip%d", name, k);
    put(n, copy, len);
    copy[at] ^= (uint8_t)(0x5a + k);
  }
  free(copy);
}

static void fill_weights(model *m) {
  uint32_t seed = 1;
  for (int l = 0; l < m->n_layers; l++) {
    model_layer *L = &m->layers[l];
    if (L->n_weights) tl_fill(L->weights, L->n_weights, seed++);
    if (L->n_bias) tl_fill(L->bias, L->n_bias, seed++);
  }
}

static void put_model(const char *name, model *m) {
  err e;
  if (model_finalize(m, &e) != ERR_OK) {
    fprintf(stderr, "onnx_seeds: %s: %s\n", name, e.msg);
    exit(1);
  }
  fill_weights(m);
  for (int fused = 0; fused < 2; fused++) {
    model *f = m;
    if (fused && fuse_model(m, &f, &e) != ERR_OK) exit(1);
    void *bytes;
    size_t len;
    if (onnx_export(f, &bytes, &len, &e) != ERR_OK) {
      fprintf(stderr, "onnx_seeds: %s: %s\n", name, e.msg);
      exit(1);
    }
    char n[128];
    snprintf(n, sizeof n, "%s%s.onnx", name, fused ? "-fused" : "");
    put_with_variants(n, bytes, len);
    free(bytes);
    if (fused) model_destroy(f);
  }
}

/* conv unit, compact unit with FE, pool, classifier: VGG in miniature. */
static void mini_vgg(void) {
  model *m = model_create("mini_vgg", (model_shape){12, 12, 3});
  err e;
  int x = model_add_conv(m, MODEL_INPUT, 4, 3, 1, 1, 1, false, &e);
  x = model_add_relu(m, x, &e);
  x = model_add_bn(m, x, &e);
  x = model_add_conv(m, x, 2, 1, 1, 0, 1, false, &e);
  x = model_add_conv(m, x, 2, 3, 1, 1, 1, false, &e);
  x = model_add_fe(m, x, &e);
  x = model_add_conv(m, x, 4, 1, 1, 0, 1, false, &e);
  x = model_add_relu(m, x, &e);
  x = model_add_bn(m, x, &e);
  x = model_add_maxpool(m, x, 2, 2, 0, &e);
  x = model_add_flatten(m, x, &e);
  x = model_add_fc(m, x, 5, true, &e);
  x = model_add_relu(m, x, &e);
  model_add_fc(m, x, 3, true, &e);
  put_model("mini_vgg", m);
  model_destroy(m);
}

/* Unpadded stride-2 stem, a block with projection shortcut, a compact
 * block, 2x2 average pool head: ResNet in miniature. */
static void mini_resnet(void) {
  model *m = model_create("mini_resnet", (model_shape){13, 13, 3});
  err e;
  int x = model_add_conv(m, MODEL_INPUT, 4, 3, 2, 0, 1, false, &e);
  x = model_add_bn(m, x, &e);
  x = model_add_relu(m, x, &e);
  int a = model_add_conv(m, x, 8, 3, 2, 1, 1, false, &e);
  a = model_add_bn(m, a, &e);
  a = model_add_relu(m, a, &e);
  a = model_add_conv(m, a, 8, 3, 1, 1, 1, false, &e);
  a = model_add_bn(m, a, &e);
  int s = model_add_conv(m, x, 8, 1, 2, 0, 1, false, &e);
  s = model_add_bn(m, s, &e);
  x = model_add_add(m, a, s, &e);
  x = model_add_relu(m, x, &e);
  a = model_add_conv(m, x, 2, 1, 1, 0, 1, false, &e);
  a = model_add_conv(m, a, 2, 3, 1, 1, 1, false, &e);
  a = model_add_fe(m, a, &e);
  a = model_add_conv(m, a, 8, 1, 1, 0, 1, false, &e);
  a = model_add_bn(m, a, &e);
  x = model_add_add(m, a, x, &e);
  x = model_add_relu(m, x, &e);
  x = model_add_avgpool(m, x, 2, 2, 0, &e);
  x = model_add_flatten(m, x, &e);
  model_add_fc(m, x, 3, true, &e);
  put_model("mini_resnet", m);
  model_destroy(m);
}

/* Grouped conv, padded pools, global pool head. */
static void mini_misc(void) {
  model *m = model_create("mini_misc", (model_shape){9, 8, 4});
  err e;
  int x = model_add_conv_ex(m, MODEL_INPUT, 6, 3, 2, 2, 1, 1, 0, 2, 1, 2,
                            true, &e);
  x = model_add_maxpool(m, x, 3, 1, 1, &e);
  x = model_add_avgpool(m, x, 3, 2, 1, &e);
  x = model_add_gap(m, x, &e);
  model_add_fc(m, x, 2, false, &e);
  put_model("mini_misc", m);
  model_destroy(m);
}

static void put_graph(const char *name, tb *b) {
  size_t len;
  void *bytes = tb_pack(b, &len);
  put_with_variants(name, bytes, len);
  free(bytes);
  tb_free(b);
}

/* What torch.onnx.export writes for the compact unit and a view() head. */
static void torch_style(void) {
  tb *b = tb_new(13, 4, 6, 6, true);
  const int64_t w1[4] = {2, 4, 1, 1}, w3[4] = {2, 2, 3, 3}, fe[2] = {2, 2},
                we[4] = {4, 2, 1, 1}, c4[1] = {4}, two = 2, ax23[2] = {2, 3},
                eight = 8, pads[8] = {0, 0, 1, 1, 0, 0, 1, 1}, one = 1,
                zero = 0, m1 = -1, fc[2] = {144, 3}, b3[1] = {3};
  tb_init_f(b, "w1", 4, w1, NULL, 1);
  tb_init_f(b, "w3", 4, w3, NULL, 2);
  tb_init_f(b, "fe", 2, fe, NULL, 3);
  tb_init_f(b, "we", 4, we, NULL, 4);
  tb_init_f(b, "g", 1, c4, NULL, 5);
  tb_init_f(b, "beta", 1, c4, NULL, 6);
  tb_init_f(b, "mu", 1, c4, NULL, 7);
  tb_init_f(b, "var", 1, c4, (const float[]){1, 2, 3, 4}, 0);
  tb_init_i(b, "ax23", 1, &two, ax23);
  tb_init_i(b, "pads", 1, &eight, pads);
  tb_init_i(b, "zero", 0, &one, &zero);
  tb_init_i(b, "ax0", 1, &one, &zero);
  tb_init_i(b, "m1", 1, &one, &m1);
  tb_init_f(b, "fcw", 2, fc, NULL, 8);
  tb_init_f(b, "fcb", 1, b3, NULL, 9);
  tb_node(b, "Conv", "reduce", "x,w1", "r", NULL);
  tb_node(b, "Pad", "pad", "r,pads", "p", NULL);
  tb_node(b, "Conv", "conv3x3", "p,w3", "c", NULL);
  tb_node(b, "ReduceMean", "mean", "c", "m",
          (tb_attr[]){TB_INTS("axes", 2, 2, 3), TB_I("keepdims", 0), TB_END});
  tb_node(b, "MatMul", "fc", "m,fe", "z", NULL);
  tb_node(b, "Sigmoid", "sig", "z", "s", NULL);
  tb_node(b, "Unsqueeze", "unsq", "s,ax23", "s4", NULL);
  tb_node(b, "Mul", "fe_mul", "c,s4", "f", NULL);
  tb_node(b, "Conv", "expand", "f,we", "ex", NULL);
  tb_node(b, "Relu", "relu", "ex", "rl", NULL);
  tb_node(b, "BatchNormalization", "bn", "rl,g,beta,mu,var", "bn", NULL);
  tb_node(b, "Shape", "shape", "bn", "sh", NULL);
  tb_node(b, "Gather", "gather", "sh,zero", "n", NULL);
  tb_node(b, "Unsqueeze", "unsq0", "n,ax0", "n1", NULL);
  tb_node(b, "Concat", "cat", "n1,m1", "vs", (tb_attr[]){TB_I("axis", 0), TB_END});
  tb_node(b, "Reshape", "view", "bn,vs", "v", NULL);
  tb_node(b, "Gemm", "classifier", "v,fcw,fcb", "y", NULL);
  tb_output(b, "y");
  put_graph("torch_style.onnx", b);

  /* Older opset: Squeeze/Unsqueeze axes as attributes, Pad's pads too,
   * Constant nodes, Dropout, SAME padding, scalar Mul/Add. */
  b = tb_new(11, 3, 7, 7, false);
  const int64_t w[4] = {3, 3, 3, 3};
  tb_init_f(b, "w", 4, w, NULL, 10);
  tb_node(b, "Constant", "k", "", "half", (tb_attr[]){TB_F("value_float", 0.5f), TB_END});
  tb_node(b, "Pad", "pad", "x", "p",
          (tb_attr[]){TB_INTS("pads", 8, 0, 0, 1, 0, 0, 0, 0, 1), TB_END});
  tb_node(b, "Conv", "conv", "p,w", "c",
          (tb_attr[]){TB_S("auto_pad", "SAME_LOWER"), TB_END});
  tb_node(b, "Mul", "scale", "c,half", "h", NULL);
  tb_node(b, "Add", "shift", "h,half", "a", NULL);
  tb_node(b, "Dropout", "drop", "a", "d", NULL);
  tb_node(b, "GlobalAveragePool", "gap", "d", "g", NULL);
  tb_node(b, "Squeeze", "sq", "g", "sq", (tb_attr[]){TB_INTS("axes", 2, 2, 3), TB_END});
  tb_node(b, "Identity", "id", "sq", "y", NULL);
  tb_output(b, "y");
  put_graph("opset11.onnx", b);
}

static void zoo_exports(void) {
  for (const char *const *name = zoo_names(); *name; name++) {
    zoo_options o = zoo_defaults();
    o.in_h = o.in_w = 48;
    model *m;
    err e;
    if (zoo_build(*name, &o, &m, &e) != ERR_OK) exit(1);
    void *bytes;
    size_t len;
    if (onnx_export(m, &bytes, &len, &e) != ERR_OK) exit(1);
    char n[64];
    snprintf(n, sizeof n, "zoo-%s-48.onnx", *name);
    put(n, bytes, len);
    free(bytes);
    model_destroy(m);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: onnx_seeds DIR [--zoo]\n");
    return 2;
  }
  dir = argv[1];
  mini_vgg();
  mini_resnet();
  mini_misc();
  torch_style();
  if (argc > 2 && strcmp(argv[2], "--zoo") == 0) zoo_exports();
  printf("onnx_seeds: %d files in %s\n", written, dir);
  return 0;
}

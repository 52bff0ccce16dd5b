/* onnx_test.c — ONNX import and export compute what they claim.
 *
 *  - Round trip: every zoo model, exported and imported again, is the same
 *    graph with the same weights bit for bit (equal fused digests) and gives
 *    bit-identical outputs on the XNNPACK executor; fused models too.
 *  - modelspec_build() of a spec carrying the exported file builds the
 *    very graph (same digest) as the zoo spec it came from.
 *  - Hand-built graphs, one per supported operator and for each way
 *    PyTorch writes feature enhancement, match the naive NCHW oracle of
 *    onnx_testlib.c when imported and run on the reference executor.
 * The error paths are onnx_errors_test.c's.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fuse.h"
#include "runtime/modelspec.h"
#include "runtime/onnx_export.h"
#include "runtime/onnx_import.h"
#include "runtime/ref.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"
#include "tests/onnx_testlib.h"

enum { SIDE = 48 };

static model *zoo(const char *name, int side) {
  zoo_options o = zoo_defaults();
  o.in_h = o.in_w = side;
  model *m = NULL;
  err e = {0};
  if (zoo_build(name, &o, &m, &e) != ERR_OK) fail_msg("%s: %s", name, e.msg);
  return m;
}

static model *fused(const model *m) {
  model *f = NULL;
  err e = {0};
  if (fuse_model(m, &f, &e) != ERR_OK) fail_msg("fuse %s: %s", m->name, e.msg);
  return f;
}

static model *round_trip(const model *m, onnx_io *io) {
  void *bytes;
  size_t len;
  err e = {0};
  if (onnx_export(m, &bytes, &len, &e) != ERR_OK)
    fail_msg("export %s: %s", m->name, e.msg);
  model *back = NULL;
  if (onnx_import_ex(bytes, len, &back, io, &e) != ERR_OK)
    fail_msg("import of exported %s: %s", m->name, e.msg);
  free(bytes);
  return back;
}

static float *xrun(const model *m, const float *in) {
  xexec *x = NULL;
  err e = {0};
  size_t n = model_shape_elems(m->layers[m->n_layers - 1].out);
  float *out = malloc(n * sizeof *out);
  if (xexec_create(m, 1, &x, &e) != ERR_OK || xexec_run(x, in, out, &e) != ERR_OK)
    fail_msg("%s: %s", m->name, e.msg);
  xexec_destroy(x);
  return out;
}

/* What modelspec_digest() hashes, compared directly (hashing 70 M weights
 * unoptimized four times a model would dominate the test). */
static void assert_same_graph(const model *a, const model *b) {
  assert_int_equal(a->n_layers, b->n_layers);
  assert_memory_equal(&a->input, &b->input, sizeof a->input);
  for (int l = 0; l < a->n_layers; l++) {
    const model_layer *x = &a->layers[l], *y = &b->layers[l];
    const int gx[] = {x->op, x->n_inputs, x->inputs[0], x->inputs[1],
                      x->kernel_h, x->kernel_w, x->stride_h, x->stride_w,
                      x->pad_top, x->pad_bottom, x->pad_left, x->pad_right,
                      x->groups, x->out_channels, x->relu};
    const int gy[] = {y->op, y->n_inputs, y->inputs[0], y->inputs[1],
                      y->kernel_h, y->kernel_w, y->stride_h, y->stride_w,
                      y->pad_top, y->pad_bottom, y->pad_left, y->pad_right,
                      y->groups, y->out_channels, y->relu};
    if (memcmp(gx, gy, sizeof gx) != 0)
      fail_msg("%s: layer %d (%s) changed its geometry", a->name, l, x->name);
    assert_int_equal(x->n_weights, y->n_weights);
    assert_int_equal(x->n_bias, y->n_bias);
    if ((x->n_weights &&
         memcmp(x->weights, y->weights, x->n_weights * sizeof(float))) ||
        (x->n_bias && memcmp(x->bias, y->bias, x->n_bias * sizeof(float))))
      fail_msg("%s: layer %d (%s) changed its weights", a->name, l, x->name);
  }
}

static void test_round_trip_every_zoo_model(void **state) {
  (void)state;
  for (const char *const *name = zoo_names(); *name; name++) {
    model *m = zoo(*name, SIDE);
    onnx_io io;
    model *back = round_trip(m, &io);
    assert_int_equal(back->n_layers, m->n_layers);
    for (int l = 0; l < m->n_layers; l++)
      assert_string_equal(back->layers[l].name, m->layers[l].name);
    assert_string_equal(io.input_name, "input");
    assert_string_equal(io.output_name, "logits");
    assert_int_equal(io.output_rank, 2);
    assert_int_equal(io.output_dims[1], 6);
    assert_false(io.output_nchw);

    model *f = fused(m), *fb = fused(back);
    assert_same_graph(f, fb);
    size_t in_n = model_shape_elems(m->input), out_n = 6;
    float *in = malloc(in_n * sizeof *in);
    tl_fill(in, in_n, 11);
    float *a = xrun(f, in), *b = xrun(fb, in);
    if (memcmp(a, b, out_n * sizeof *a) != 0)
      fail_msg("%s: outputs differ after the round trip", *name);

    /* A fused graph exports too (conv bias, relu flags) and comes back the
     * same once fused again. The three largest originals add nothing the
     * others do not cover but time. */
    if (strcmp(*name, "vgg13") && strcmp(*name, "vgg16") &&
        strcmp(*name, "resnet50")) {
      model *f2 = round_trip(f, NULL), *f2f = fused(f2);
      assert_same_graph(f, f2f);
      model_destroy(f2f);
      model_destroy(f2);
    }
    free(in);
    free(a);
    free(b);
    model_destroy(fb);
    model_destroy(f);
    model_destroy(back);
    model_destroy(m);
  }
}

static void test_modelspec_builds_onnx_specs(void **state) {
  (void)state;
  Edgedi__V1__ModelSpec zspec = EDGEDI__V1__MODEL_SPEC__INIT;
  zspec.name = "r18c";
  zspec.zoo = "resnet18c";
  zspec.height = zspec.width = SIDE;
  model *zf = NULL, *of = NULL;
  char zd[MODELSPEC_DIGEST_BYTES], od[MODELSPEC_DIGEST_BYTES];
  err e = {0};
  assert_int_equal(modelspec_build(&zspec, &zf, zd, &e), ERR_OK);

  model *m = zoo("resnet18c", SIDE);
  void *bytes;
  size_t len;
  assert_int_equal(onnx_export(m, &bytes, &len, &e), ERR_OK);
  Edgedi__V1__ModelSpec ospec = EDGEDI__V1__MODEL_SPEC__INIT;
  ospec.name = "from-onnx";
  ospec.onnx.data = bytes;
  ospec.onnx.len = len;
  assert_int_equal(modelspec_build(&ospec, &of, od, &e), ERR_OK);
  assert_string_equal(zd, od);
  assert_string_equal(of->name, "from-onnx");

  /* A corrupt file is a clear error, not a model. */
  model *bad = NULL;
  ospec.onnx.len = len / 3;
  assert_int_not_equal(modelspec_build(&ospec, &bad, od, &e), ERR_OK);
  assert_null(bad);
  assert_non_null(strstr(e.msg, "ONNX file: not an ONNX model"));

  /* Both a zoo name and a file: ambiguous, refused. */
  ospec.zoo = "resnet18c";
  ospec.onnx.len = len;
  assert_int_equal(modelspec_build(&ospec, &bad, od, &e), ERR_INVALID);
  free(bytes);
  model_destroy(m);
  model_destroy(zf);
  model_destroy(of);
}

/* ---- hand-built graphs against the NCHW oracle --------------------------------- */

/* Imports the graph, runs it on x (NCHW) with the reference executor and
 * compares with want (NCHW). Returns the imported model for more checks. */
static model *check_graph(tb *b, tl_t x, tl_t want, const char *what) {
  size_t len;
  void *bytes = tb_pack(b, &len);
  model *m = NULL;
  onnx_io io;
  err e = {0};
  if (onnx_import_ex(bytes, len, &m, &io, &e) != ERR_OK)
    fail_msg("%s: %s", what, e.msg);
  free(bytes);
  model_shape is = m->input, os = m->layers[m->n_layers - 1].out;
  assert_int_equal(is.c, x.c);
  assert_int_equal(is.h, x.h);
  assert_int_equal(is.w, x.w);
  size_t n = model_shape_elems(os);
  assert_int_equal(n, (size_t)want.c * want.h * want.w);
  float *in = malloc(model_shape_elems(is) * sizeof *in);
  float *out = malloc(n * sizeof *out), *nchw = malloc(n * sizeof *nchw);
  onnx_nchw_to_nhwc(x.d, is, in);
  if (ref_run(m, in, out, &e) != ERR_OK) fail_msg("%s: %s", what, e.msg);
  if (io.output_nchw) onnx_nhwc_to_nchw(out, os, nchw);
  else memcpy(nchw, out, n * sizeof *out);
  double d = tl_max_rel_diff(want.d, nchw, n);
  if (d > 1e-5) fail_msg("%s: differs from the oracle by %g", what, d);
  free(in);
  free(out);
  free(nchw);
  return m;
}

static int count_op(const model *m, model_op op) {
  int n = 0;
  for (int l = 0; l < m->n_layers; l++) n += m->layers[l].op == op;
  return n;
}

static tl_t input(int c, int h, int w) {
  tl_t x = tl_new(c, h, w);
  tl_fill(x.d, (size_t)c * h * w, 5);
  return x;
}

static void test_conv(void **state) {
  (void)state;
  /* Grouped, strided, asymmetric kernel and padding, with bias. */
  tb *b = tb_new(13, 4, 9, 8, false);
  const int64_t wd[4] = {6, 2, 3, 2}, bd[1] = {6};
  tb_init_f(b, "W", 4, wd, NULL, 1);
  tb_init_f(b, "B", 1, bd, NULL, 2);
  tb_node(b, "Conv", "conv", "x,W,B", "y",
          (tb_attr[]){TB_I("group", 2), TB_INTS("strides", 2, 2, 1),
                      TB_INTS("pads", 4, 1, 0, 2, 1),
                      TB_INTS("kernel_shape", 2, 3, 2), TB_END});
  tb_output(b, "y");
  tl_t x = input(4, 9, 8);
  const int pads[4] = {1, 0, 2, 1};
  tl_t want = tl_conv(x, tb_data(b, "W"), tb_data(b, "B"), 6, 3, 2, 2, 1, pads, 2);
  model *m = check_graph(b, x, want, "grouped conv");
  assert_string_equal(m->layers[0].name, "conv");
  model_destroy(m);
  tb_free(b);
  tl_free(&want);

  /* auto_pad SAME_UPPER on an even input with stride 2. */
  b = tb_new(11, 4, 9, 8, true);
  const int64_t wd2[4] = {3, 4, 3, 3};
  tb_init_f(b, "W", 4, wd2, NULL, 3);
  tb_node(b, "Conv", "same", "x,W", "y",
          (tb_attr[]){TB_S("auto_pad", "SAME_UPPER"), TB_INTS("strides", 2, 2, 2), TB_END});
  tb_output(b, "y");
  const int same[4] = {1, 0, 1, 1}; /* h: 9 -> 5 needs 2 (1, 1); w: 8 -> 4 needs 1 (0, 1) */
  want = tl_conv(x, tb_data(b, "W"), NULL, 3, 3, 3, 2, 2, same, 1);
  model_destroy(check_graph(b, x, want, "SAME_UPPER conv"));
  tb_free(b);
  tl_free(&want);
  tl_free(&x);
}

static void test_batchnorm_relu_pad(void **state) {
  (void)state;
  tb *b = tb_new(17, 3, 7, 7, false);
  const int64_t cd[1] = {3}, wd[4] = {5, 3, 3, 3}, pd[1] = {8};
  const float var[3] = {0.5f, 1.5f, 2.0f};
  tb_init_f(b, "g", 1, cd, NULL, 1);
  tb_init_f(b, "beta", 1, cd, NULL, 2);
  tb_init_f(b, "mu", 1, cd, NULL, 3);
  tb_init_f(b, "var", 1, cd, var, 0);
  tb_init_f(b, "W", 4, wd, NULL, 4);
  const int64_t pads[8] = {0, 0, 2, 1, 0, 0, 0, 1};
  tb_init_i(b, "pads", 1, pd, pads);
  tb_node(b, "BatchNormalization", "bn", "x,g,beta,mu,var", "b",
          (tb_attr[]){TB_F("epsilon", 1e-3f), TB_END});
  tb_node(b, "Relu", "relu", "b", "r", NULL);
  tb_node(b, "Pad", "pad", "r,pads", "p", NULL);
  tb_node(b, "Conv", "conv", "p,W", "y", NULL);
  tb_output(b, "y");
  tl_t x = input(3, 7, 7), t = input(3, 7, 7);
  tl_bn(&t, tb_data(b, "g"), tb_data(b, "beta"), tb_data(b, "mu"), var, 1e-3f);
  tl_relu(&t);
  const int cp[4] = {2, 1, 0, 1};
  tl_t want = tl_conv(t, tb_data(b, "W"), NULL, 5, 3, 3, 1, 1, cp, 1);
  model *m = check_graph(b, x, want, "bn relu pad conv");
  /* The pad is the convolution's now. */
  assert_int_equal(m->n_layers, 3);
  assert_int_equal(m->layers[2].pad_top, 2);
  assert_int_equal(m->layers[2].pad_right, 1);
  model_destroy(m);
  tb_free(b);
  tl_free(&x);
  tl_free(&t);
  tl_free(&want);
}

static void test_pools(void **state) {
  (void)state;
  tl_t x = input(3, 9, 10);
  const int p1[4] = {1, 1, 1, 1}, p0[4] = {0, 0, 0, 0};
  for (int k = 0; k < 3; k++) {
    tb *b = tb_new(13, 3, 9, 10, false);
    const char *op = k == 1 ? "AveragePool" : "MaxPool";
    const int *p = k == 2 ? p0 : p1;
    tb_node(b, op, "pool", "x", "y",
            (tb_attr[]){TB_INTS("kernel_shape", 2, 3, 2),
                        TB_INTS("strides", 2, 2, 2),
                        TB_INTS("pads", 4, p[0], p[1], p[2], p[3]), TB_END});
    tb_output(b, "y");
    tl_t want = tl_pool(x, k != 1, 3, 2, 2, 2, p);
    model_destroy(check_graph(b, x, want, op));
    tb_free(b);
    tl_free(&want);
  }
  tl_free(&x);
}

/* GlobalAveragePool -> Flatten -> Gemm (bias), the classic head; and
 * Reshape through a dynamic-batch shape computation -> MatMul + Add. */
static void test_heads(void **state) {
  (void)state;
  tl_t x = input(8, 5, 5);
  tb *b = tb_new(13, 8, 5, 5, true);
  const int64_t wd[2] = {4, 8}, bd[1] = {4};
  tb_init_f(b, "W", 2, wd, NULL, 1);
  tb_init_f(b, "B", 1, bd, NULL, 2);
  tb_node(b, "GlobalAveragePool", "gap", "x", "g", NULL);
  tb_node(b, "Flatten", "flat", "g", "f", NULL);
  tb_node(b, "Gemm", "fc", "f,W,B", "y",
          (tb_attr[]){TB_I("transB", 1), TB_END});
  tb_output(b, "y");
  tl_t g = tl_gap(x), want = tl_fc(g, tb_data(b, "W"), tb_data(b, "B"), 4);
  model *m = check_graph(b, x, want, "gap flatten gemm");
  assert_int_equal(m->n_layers, 2);
  model_destroy(m);
  tb_free(b);
  tl_free(&want);

  /* x.view(x.size(0), -1) @ W + B, as torch writes it with a dynamic batch. */
  b = tb_new(13, 8, 5, 5, true);
  const int64_t wt[2] = {200, 3}, bb[1] = {3}, one[1] = {1}, zero = 0, m1 = -1;
  tb_init_f(b, "Wt", 2, wt, NULL, 3);
  tb_init_f(b, "B", 1, bb, NULL, 4);
  tb_init_i(b, "zero", 0, NULL, &zero);
  tb_init_i(b, "minus1", 1, one, &m1);
  tb_init_i(b, "ax0", 1, one, &zero);
  tb_node(b, "Shape", "shape", "x", "s", NULL);
  tb_node(b, "Gather", "gather", "s,zero", "n", NULL);
  tb_node(b, "Unsqueeze", "unsq", "n,ax0", "n1", NULL);
  tb_node(b, "Concat", "cat", "n1,minus1", "shape2", (tb_attr[]){TB_I("axis", 0), TB_END});
  tb_node(b, "Reshape", "view", "x,shape2", "v", NULL);
  tb_node(b, "MatMul", "mm", "v,Wt", "z", NULL);
  tb_node(b, "Add", "bias", "z,B", "y", NULL);
  tb_output(b, "y");
  float w[3 * 200];
  const float *wtd = tb_data(b, "Wt");
  for (int o = 0; o < 3; o++)
    for (int i = 0; i < 200; i++) w[o * 200 + i] = wtd[i * 3 + o];
  want = tl_fc(x, w, tb_data(b, "B"), 3);
  m = check_graph(b, x, want, "dynamic view matmul add");
  assert_int_equal(m->n_layers, 2); /* flatten, fc with the bias folded in */
  assert_int_equal(m->layers[1].op, MODEL_OP_FC);
  assert_non_null(m->layers[1].bias);
  model_destroy(m);
  tb_free(b);
  tl_free(&want);
  tl_free(&g);
  tl_free(&x);
}

/* The three ways feature enhancement reaches ONNX from PyTorch code. */
static void test_feature_enhancement_patterns(void **state) {
  (void)state;
  enum { C = 6 };
  tl_t x = input(C, 5, 4);
  for (int k = 0; k < 3; k++) {
    tb *b = tb_new(k == 0 ? 13 : 11, C, 5, 4, false);
    const int64_t wd[2] = {C, C}, cd[4] = {C, C, 1, 1}, ax23[2] = {2, 3},
                  two = 2, shape[4] = {1, C, 1, 1}, four = 4;
    float w[C * C]; /* [out][in] */
    tl_fill(w, C * C, 9);
    if (k == 0) {
      /* x.mean((2, 3)) -> Linear(bias=False) as MatMul -> sigmoid ->
       * s[:, :, None, None] -> x * s (opset 13: axes as inputs). */
      float wt[C * C];
      for (int o = 0; o < C; o++)
        for (int i = 0; i < C; i++) wt[i * C + o] = w[o * C + i];
      tb_init_f(b, "Wt", 2, wd, wt, 0);
      tb_init_i(b, "ax23", 1, &two, ax23);
      tb_node(b, "ReduceMean", "mean", "x", "m",
              (tb_attr[]){TB_INTS("axes", 2, 2, 3), TB_I("keepdims", 0), TB_END});
      tb_node(b, "MatMul", "fc", "m,Wt", "z", NULL);
      tb_node(b, "Sigmoid", "sig", "z", "s", NULL);
      tb_node(b, "Unsqueeze", "unsq", "s,ax23", "s4", NULL);
      tb_node(b, "Mul", "fe", "x,s4", "y", NULL);
    } else if (k == 1) {
      /* AdaptiveAvgPool2d(1) -> flatten -> Linear as Gemm -> view(1,C,1,1). */
      tb_init_f(b, "W", 2, wd, w, 0);
      tb_init_i(b, "shape", 1, &four, shape);
      tb_node(b, "GlobalAveragePool", "gap", "x", "g", NULL);
      tb_node(b, "Flatten", "flat", "g", "f", NULL);
      tb_node(b, "Gemm", "fc", "f,W", "z", (tb_attr[]){TB_I("transB", 1), TB_END});
      tb_node(b, "Sigmoid", "sig", "z", "s", NULL);
      tb_node(b, "Reshape", "view", "s,shape", "s4", NULL);
      tb_node(b, "Mul", "fe", "s4,x", "y", NULL);
    } else {
      /* Squeeze-and-excitation style: a 1x1 Conv on the pooled map. */
      tb_init_f(b, "W", 4, cd, w, 0);
      tb_node(b, "GlobalAveragePool", "gap", "x", "g", NULL);
      tb_node(b, "Conv", "fc", "g,W", "z", NULL);
      tb_node(b, "Sigmoid", "sig", "z", "s", NULL);
      tb_node(b, "Mul", "fe", "x,s", "y", NULL);
    }
    tb_output(b, "y");
    tl_t want = input(C, 5, 4);
    tl_fe(&want, w);
    model *m = check_graph(b, x, want, "feature enhancement");
    assert_int_equal(m->n_layers, 1);
    assert_int_equal(m->layers[0].op, MODEL_OP_FE);
    assert_string_equal(m->layers[0].name, "fe");
    model_destroy(m);
    tb_free(b);
    tl_free(&want);
  }
  tl_free(&x);
}

/* W * mean(x) read twice: once as a plain fc (it becomes layers), once
 * through a reshaped alias as FE's gate, which must still see W. */
static void test_logit_read_twice(void **state) {
  (void)state;
  enum { C = 4 };
  tl_t x = input(C, 3, 5);
  tb *b = tb_new(13, C, 3, 5, false);
  const int64_t wd[2] = {C, C}, four = 4, shape[4] = {1, C, 1, 1};
  float w[C * C];
  tl_fill(w, C * C, 3);
  tb_init_f(b, "W", 2, wd, w, 0);
  tb_init_i(b, "shape", 1, &four, shape);
  tb_node(b, "GlobalAveragePool", "gap", "x", "g", NULL);
  tb_node(b, "Flatten", "flat", "g", "f", NULL);
  tb_node(b, "Gemm", "fc", "f,W", "z", (tb_attr[]){TB_I("transB", 1), TB_END});
  tb_node(b, "Reshape", "view", "z,shape", "z4", NULL);
  tb_node(b, "Relu", "relu", "z", "r", NULL); /* dead, but imported first */
  tb_node(b, "Sigmoid", "sig", "z4", "s", NULL);
  tb_node(b, "Mul", "fe", "x,s", "y", NULL);
  tb_output(b, "y");
  tl_t want = input(C, 3, 5);
  tl_fe(&want, w);
  model *m = check_graph(b, x, want, "W * mean read twice");
  assert_int_equal(m->n_layers, 1);
  model_destroy(m);
  tb_free(b);
  tl_free(&want);
  tl_free(&x);
}

/* Residual Add, constant Mul and Add per channel (BN written by hand),
 * Identity, Dropout, Constant, Squeeze. */
static void test_residual_and_constants(void **state) {
  (void)state;
  tl_t x = input(4, 6, 6);
  tb *b = tb_new(12, 4, 6, 6, false);
  const int64_t wd[4] = {4, 4, 3, 3}, sd[4] = {1, 4, 1, 1}, one[1] = {1};
  const float scale[4] = {0.5f, -1, 2, 0.25f}, shift[4] = {0.1f, 0.2f, -0.3f, 0};
  const float half = 0.5f;
  tb_init_f(b, "W1", 4, wd, NULL, 1);
  tb_init_f(b, "W2", 4, wd, NULL, 2);
  tb_init_f(b, "scale", 4, sd, scale, 0);
  tb_init_f(b, "shift", 4, sd, shift, 0);
  tb_init_f(b, "half", 1, one, &half, 0);
  tb_node(b, "Conv", "c1", "x,W1", "a", (tb_attr[]){TB_INTS("pads", 4, 1, 1, 1, 1), TB_END});
  tb_node(b, "Identity", "id", "x", "xi", NULL);
  tb_node(b, "Conv", "c2", "xi,W2", "c", (tb_attr[]){TB_INTS("pads", 4, 1, 1, 1, 1), TB_END});
  tb_node(b, "Add", "res", "a,c", "s", NULL);
  tb_node(b, "Mul", "scale", "scale,s", "t", NULL);
  tb_node(b, "Add", "shift", "t,shift", "u", NULL);
  tb_node(b, "Dropout", "drop", "u", "v", NULL);
  tb_node(b, "Mul", "halve", "v,half", "y", NULL);
  tb_output(b, "y");
  const int p1[4] = {1, 1, 1, 1};
  tl_t a = tl_conv(x, tb_data(b, "W1"), NULL, 4, 3, 3, 1, 1, p1, 1);
  tl_t c = tl_conv(x, tb_data(b, "W2"), NULL, 4, 3, 3, 1, 1, p1, 1);
  tl_add(&a, c);
  for (int ch = 0; ch < 4; ch++)
    for (int i = 0; i < 36; i++) {
      float *v = &a.d[ch * 36 + i];
      *v = (*v * scale[ch] + shift[ch]) * half;
    }
  model *m = check_graph(b, x, a, "residual and constants");
  /* conv, conv, add, one BN (scale and shift folded), one BN (halve). */
  assert_int_equal(m->n_layers, 5);
  assert_int_equal(count_op(m, MODEL_OP_BN), 2);
  model_destroy(m);
  tb_free(b);
  tl_free(&a);
  tl_free(&c);
  tl_free(&x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_every_zoo_model),
      cmocka_unit_test(test_modelspec_builds_onnx_specs),
      cmocka_unit_test(test_conv),
      cmocka_unit_test(test_batchnorm_relu_pad),
      cmocka_unit_test(test_pools),
      cmocka_unit_test(test_heads),
      cmocka_unit_test(test_feature_enhancement_patterns),
      cmocka_unit_test(test_logit_read_twice),
      cmocka_unit_test(test_residual_and_constants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

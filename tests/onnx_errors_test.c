/* onnx_errors_test.c — every way an ONNX file can be wrong gets its own
 * error code and a message that names the node (or the input, output or
 * initializer) and the reason: unsupported operators and attributes,
 * missing or badly sized initializers, shapes that do not fit, truncated
 * files and garbage. Nothing is leaked or left half-built (*out stays NULL;
 * the ASan run checks the rest).
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

#include "runtime/onnx_export.h"
#include "runtime/onnx_import.h"
#include "runtime/zoo.h"
#include "tests/onnx_testlib.h"

/* Imports b and expects code with every one of the NULL-terminated
 * fragments in the message. */
static void expect_error(tb *b, err_code code, ...) {
  size_t len;
  void *bytes = tb_pack(b, &len);
  model *m = (model *)&len; /* must be reset to NULL */
  err e = {0};
  err_code rc = onnx_import(bytes, len, &m, &e);
  free(bytes);
  tb_free(b);
  if (rc != code)
    fail_msg("expected %s, got %s: %s", err_name(code), err_name(rc), e.msg);
  assert_null(m);
  va_list ap;
  va_start(ap, code);
  for (const char *frag; (frag = va_arg(ap, const char *));)
    if (!strstr(e.msg, frag)) fail_msg("'%s' is not in: %s", frag, e.msg);
  va_end(ap);
}

/* A graph x -> Conv "conv" (W [4,3,3,3]: `w`, or seeded values when
 * NULL) -> y, opset 13, ready for one more defect. */
static tb *conv_graph_w(const tb_attr *attrs, const float *w) {
  tb *b = tb_new(13, 3, 8, 8, false);
  const int64_t wd[4] = {4, 3, 3, 3};
  tb_init_f(b, "W", 4, wd, w, 1);
  tb_node(b, "Conv", "conv", "x,W", "y", attrs);
  tb_output(b, "y");
  return b;
}

static tb *conv_graph(const tb_attr *attrs) { return conv_graph_w(attrs, NULL); }

static void test_unsupported_operator(void **state) {
  (void)state;
  tb *b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Relu", "relu", "x", "r", NULL);
  tb_node(b, "LeakyRelu", "leaky", "r", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'leaky'", "LeakyRelu", NULL);

  /* A node without a name is named by its output. */
  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Softmax", NULL, "x", "probs", NULL);
  tb_output(b, "probs");
  expect_error(b, ERR_UNSUPPORTED, "node #0", "probs", "Softmax", NULL);

  /* Sigmoid outside the feature-enhancement pattern. */
  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Sigmoid", "sig", "x", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'sig'", "feature enhancement", NULL);

  /* A product of two computed tensors. */
  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Relu", "relu", "x", "r", NULL);
  tb_node(b, "Mul", "square", "r,r", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'square'", NULL);

  /* An operator from another domain, even with a familiar name. */
  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Relu", "custom", "x", "y", NULL);
  tb_last_node_domain(b, "com.example");
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'custom'", "com.example", NULL);
}

static void test_missing_initializer(void **state) {
  (void)state;
  tb *b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Conv", "conv1", "x,nowhere", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_INVALID, "node 'conv1'", "nowhere", NULL);

  /* A required input left out. */
  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Conv", "conv2", "x", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_INVALID, "node 'conv2'", "input 1 is missing", NULL);

  /* A weight that is computed, not stored. */
  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Relu", "relu", "x", "r", NULL);
  tb_node(b, "Conv", "conv3", "x,r", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'conv3'", "constant", NULL);
}

static void test_wrong_initializer_size(void **state) {
  (void)state;
  /* A batch norm scale of 10 values for 4 channels. */
  tb *b = tb_new(13, 3, 8, 8, false);
  const int64_t ten[1] = {10}, wd[4] = {4, 3, 3, 3};
  tb_init_f(b, "short", 1, ten, NULL, 1);
  tb_init_f(b, "W", 4, wd, NULL, 2);
  const int64_t cd[1] = {3};
  const int64_t c4[1] = {4};
  tb_init_f(b, "g", 1, c4, NULL, 3);
  tb_init_f(b, "m", 1, c4, NULL, 4);
  tb_init_f(b, "v", 1, c4, NULL, 5);
  tb_node(b, "Conv", "conv", "x,W", "c", NULL);
  tb_node(b, "BatchNormalization", "bn", "c,short,g,m,v", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_INVALID, "node 'bn'", "short", "10 values", NULL);

  /* Conv bias of the wrong length. */
  b = tb_new(13, 3, 8, 8, false);
  tb_init_f(b, "W", 4, wd, NULL, 2);
  tb_init_f(b, "B", 1, cd, NULL, 6);
  tb_node(b, "Conv", "conv", "x,W,B", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_INVALID, "node 'conv'", "bias 'B'", NULL);
}

/* A weight that is not a number: refused, naming the initializer and the
 * value, whether stored as float_data or (in an exported file) raw_data. */
static void test_initializer_not_finite(void **state) {
  (void)state;
  float w[4 * 3 * 3 * 3];
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) w[i] = 0.01f * (float)i;
  w[17] = NAN;
  expect_error(conv_graph_w(NULL, w), ERR_INVALID, "initializer 'W'", "value 17 is NaN", NULL);
  w[17] = 1.0f;
  w[40] = -INFINITY;
  expect_error(conv_graph_w(NULL, w), ERR_INVALID, "initializer 'W'", "value 40 is infinite",
               NULL);
}

/* The data of an initializer disagrees with its own dims: the file is
 * patched after packing, where the builder cannot go wrong on purpose. */
static void test_initializer_data_shorter_than_dims(void **state) {
  (void)state;
  tb *b = tb_new(13, 3, 8, 8, false);
  const int64_t wd[4] = {4, 3, 3, 3};
  tb_init_f(b, "W", 4, wd, NULL, 1);
  tb_node(b, "Conv", "conv", "x,W", "y", NULL);
  tb_output(b, "y");
  size_t len;
  void *bytes = tb_pack(b, &len);
  tb_free(b);
  /* W's dims are field 1, unpacked (proto2): 08 04 08 03 08 03 08 03;
   * make the first 5 so the 108 floats no longer fill them. */
  static const uint8_t dims[8] = {8, 4, 8, 3, 8, 3, 8, 3};
  uint8_t *p = bytes;
  bool patched = false;
  for (size_t i = 0; i + sizeof dims <= len && !patched; i++)
    if (memcmp(p + i, dims, sizeof dims) == 0) {
      p[i + 1] = 5;
      patched = true;
    }
  assert_true(patched);
  model *m = NULL;
  err e = {0};
  assert_int_equal(onnx_import(bytes, len, &m, &e), ERR_INVALID);
  assert_null(m);
  assert_non_null(strstr(e.msg, "node 'conv'"));
  assert_non_null(strstr(e.msg, "initializer 'W'"));
  free(bytes);
}

static void test_shape_mismatch(void **state) {
  (void)state;
  /* A conv expecting 5 input channels on a 3-channel input. */
  tb *b = tb_new(13, 3, 8, 8, false);
  const int64_t wd[4] = {4, 5, 3, 3};
  tb_init_f(b, "W", 4, wd, NULL, 1);
  tb_node(b, "Conv", "conv", "x,W", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_SHAPE, "node 'conv'", "3 channels", NULL);

  /* A residual add of different shapes. */
  b = tb_new(13, 3, 8, 8, false);
  const int64_t w2[4] = {3, 3, 3, 3};
  tb_init_f(b, "W", 4, w2, NULL, 1);
  tb_node(b, "Conv", "conv", "x,W", "c", NULL);
  tb_node(b, "Add", "residual", "x,c", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_SHAPE, "node 'residual'", "[1,3,8,8]", "[1,3,6,6]", NULL);

  /* A classifier whose weight does not match the flattened features. */
  b = tb_new(13, 3, 8, 8, false);
  const int64_t fd[2] = {6, 100};
  tb_init_f(b, "W", 2, fd, NULL, 1);
  tb_node(b, "Flatten", "flat", "x", "f", NULL);
  tb_node(b, "Gemm", "fc", "f,W", "y", (tb_attr[]){TB_I("transB", 1), TB_END});
  tb_output(b, "y");
  expect_error(b, ERR_SHAPE, "node 'fc'", "192 features", NULL);

  /* A window larger than the input. */
  b = tb_new(13, 3, 2, 2, false);
  tb_init_f(b, "W", 4, w2, NULL, 1);
  tb_node(b, "Conv", "conv", "x,W", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_SHAPE, "node 'conv'", NULL);

  /* The declared output shape differs from the computed one. */
  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Relu", "relu", "x", "y", NULL);
  tb_output_dims(b, "y", 4, (const int64_t[]){1, 3, 8, 9});
  expect_error(b, ERR_SHAPE, "graph output 'y'", "[1,3,8,8]", NULL);
}

static void test_truncated_and_garbage(void **state) {
  (void)state;
  zoo_options o = zoo_defaults();
  o.in_h = o.in_w = 48;
  model *m = NULL;
  err e = {0};
  assert_int_equal(zoo_build("resnet18c", &o, &m, &e), ERR_OK);
  void *bytes;
  size_t len;
  assert_int_equal(onnx_export(m, &bytes, &len, &e), ERR_OK);
  model_destroy(m);
  /* Cut anywhere: never a model, never a crash; the ends of the file cut
   * mid-field are caught by protobuf itself. */
  for (size_t cut = 0; cut < len; cut += len / 97 + 1) {
    model *t = NULL;
    err_code rc = onnx_import(bytes, cut, &t, &e);
    assert_int_not_equal(rc, ERR_OK);
    assert_null(t);
  }
  model *t = NULL;
  assert_int_equal(onnx_import(bytes, len / 2, &t, &e), ERR_CORRUPT);
  assert_non_null(strstr(e.msg, "not an ONNX model"));
  free(bytes);

  uint8_t garbage[4096];
  tl_fill((float *)garbage, sizeof garbage / 4, 77);
  assert_int_not_equal(onnx_import(garbage, sizeof garbage, &t, &e), ERR_OK);
  assert_null(t);
  const char text[] = "this is not an ONNX file at all\n";
  assert_int_equal(onnx_import(text, sizeof text, &t, &e), ERR_CORRUPT);
  assert_int_equal(onnx_import(NULL, 0, &t, &e), ERR_INVALID); /* no graph */
  assert_int_equal(onnx_import_file("/nonexistent/model.onnx", &t, NULL, &e),
                   ERR_IO);
  assert_non_null(strstr(e.msg, "/nonexistent/model.onnx"));
}

static void test_unsupported_attributes(void **state) {
  (void)state;
  expect_error(conv_graph((tb_attr[]){TB_INTS("dilations", 2, 2, 2), TB_END}),
               ERR_UNSUPPORTED, "node 'conv'", "dilation", NULL);
  expect_error(conv_graph((tb_attr[]){TB_S("auto_pad", "WHATEVER"), TB_END}),
               ERR_UNSUPPORTED, "node 'conv'", "auto_pad", NULL);
  expect_error(conv_graph((tb_attr[]){TB_INTS("pads", 4, -1, 0, 0, 0), TB_END}),
               ERR_UNSUPPORTED, "node 'conv'", "pads", NULL);
  expect_error(conv_graph((tb_attr[]){TB_INTS("kernel_shape", 2, 5, 5), TB_END}),
               ERR_INVALID, "node 'conv'", "kernel_shape", NULL);
  expect_error(conv_graph((tb_attr[]){TB_S("group", "two"), TB_END}),
               ERR_INVALID, "node 'conv'", "'group'", NULL);

  tb *b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "AveragePool", "avg", "x", "y",
          (tb_attr[]){TB_INTS("kernel_shape", 2, 3, 3),
                      TB_INTS("pads", 4, 1, 1, 1, 1),
                      TB_I("count_include_pad", 1), TB_END});
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'avg'", "count_include_pad", NULL);

  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "MaxPool", "pool", "x", "y",
          (tb_attr[]){TB_INTS("kernel_shape", 2, 3, 3),
                      TB_INTS("strides", 2, 2, 2), TB_I("ceil_mode", 1),
                      TB_END});
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'pool'", "ceil_mode", NULL);

  b = tb_new(13, 3, 8, 8, false);
  const int64_t eight[1] = {8}, pads[8] = {0, 0, 1, 1, 0, 0, 1, 1};
  tb_init_i(b, "pads", 1, eight, pads);
  tb_node(b, "Pad", "pad", "x,pads", "p", (tb_attr[]){TB_S("mode", "reflect"), TB_END});
  tb_node(b, "Relu", "relu", "p", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'pad'", "reflect", NULL);

  /* A zero pad that feeds something other than a conv. */
  b = tb_new(13, 3, 8, 8, false);
  tb_init_i(b, "pads", 1, eight, pads);
  tb_node(b, "Pad", "pad", "x,pads", "p", NULL);
  tb_node(b, "MaxPool", "pool", "p", "y",
          (tb_attr[]){TB_INTS("kernel_shape", 2, 2, 2), TB_END});
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'pool'", "Pad", NULL);

  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "ReduceMean", "mean", "x", "y",
          (tb_attr[]){TB_INTS("axes", 1, 1), TB_END});
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "node 'mean'", "axes 2 and 3", NULL);
}

static void test_graph_level_errors(void **state) {
  (void)state;
  tb *b = tb_new(7, 3, 8, 8, false);
  tb_node(b, "Relu", "relu", "x", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "operator set 7", NULL);

  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Relu", "relu", "x", "y", NULL);
  tb_output(b, "nothing");
  expect_error(b, ERR_INVALID, "graph output 'nothing'", NULL);

  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Identity", "id", "x", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "computes nothing", NULL);

  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Relu", "relu", "x", "y", NULL);
  tb_node(b, "Relu", "again", "x", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_INVALID, "node 'again'", "defined twice", NULL);

  /* A node that reads a value defined only later (not topological). */
  b = tb_new(13, 3, 8, 8, false);
  tb_node(b, "Relu", "first", "later", "y", NULL);
  tb_node(b, "Relu", "second", "x", "later", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_INVALID, "node 'first'", "later", NULL);

  /* Batch 2, and an input of the wrong rank. */
  b = tb_new(13, 3, 8, 8, false);
  tb_input_dims(b, 4, (const int64_t[]){2, 3, 8, 8});
  tb_node(b, "Relu", "relu", "x", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "graph input 'x'", "dimension 0", NULL);
  b = tb_new(13, 3, 8, 8, false);
  tb_input_dims(b, 2, (const int64_t[]){1, 3});
  tb_node(b, "Relu", "relu", "x", "y", NULL);
  tb_output(b, "y");
  expect_error(b, ERR_UNSUPPORTED, "graph input 'x'", "[N,C,H,W]", NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unsupported_operator),
      cmocka_unit_test(test_missing_initializer),
      cmocka_unit_test(test_wrong_initializer_size),
      cmocka_unit_test(test_initializer_data_shorter_than_dims),
      cmocka_unit_test(test_initializer_not_finite),
      cmocka_unit_test(test_shape_mismatch),
      cmocka_unit_test(test_truncated_and_garbage),
      cmocka_unit_test(test_unsupported_attributes),
      cmocka_unit_test(test_graph_level_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

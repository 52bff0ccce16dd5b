/* onnx_torch_test.c — ONNX files written by torch.onnx.export (PyTorch
 * 1.13, opset 13, in tests/data/onnx) import and compute what PyTorch
 * computed: the paper's eight architectures, channel widths divided so each
 * file stays under 1 MB (tools/train/export_testnets.py --mini; its
 * MANIFEST.txt says how each was made), BN with random scales and running
 * statistics measured on random inputs (so the logits depend on the input).
 * The input is shared per size, input_1x3xHxW.f32 (NCHW); NAME.logits.f32 is
 * the torch model's output and NAME.onnx_logits.f32 the ONNX graph's run
 * with PyTorch's operators (BN folded by the exporter). The imported, fused
 * model on the XNNPACK executor must agree with both to 1e-4 relative to the
 * largest logit (DESIGN.md's exactness bound), and the compact models'
 * feature enhancement must be recognized as FE layers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/fuse.h"
#include "runtime/onnx_import.h"
#include "runtime/xexec.h"
#include "tests/onnx_testlib.h"

#define TORCH_MAX_REL_DIFF 1e-4

static const char *const nets[] = {
    "vgg13_mini",    "vgg16_mini",    "resnet18_mini",  "resnet50_mini",
    "vgg13c_mini",   "vgg16c_mini",   "resnet18c_mini", "resnet50c_mini",
};

static void data_path(char *buf, size_t len, const char *name,
                      const char *ext) {
  const char *root = getenv("TEST_SRCDIR");
  snprintf(buf, len, "%s/edgedi/tests/data/onnx/%s%s", root ? root : ".",
           name, ext);
}

/* A little-endian float32 file of exactly n values. */
static float *read_f32_path(const char *path, size_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("missing %s", path);
  float *v = malloc((n + 1) * sizeof *v);
  size_t got = fread(v, sizeof *v, n + 1, f);
  fclose(f);
  if (got != n) fail_msg("%s holds %zu floats, %zu expected", path, got, n);
  return v;
}

static float *read_f32(const char *name, const char *ext, size_t n) {
  char path[1024];
  data_path(path, sizeof path, name, ext);
  return read_f32_path(path, n);
}

static int count_op(const model *m, model_op op) {
  int n = 0;
  for (int l = 0; l < m->n_layers; l++) n += m->layers[l].op == op;
  return n;
}

static void test_torch_exports_match_torch(void **state) {
  (void)state;
  for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++) {
    const char *name = nets[k];
    char path[1024];
    data_path(path, sizeof path, name, ".onnx");
    model *m = NULL, *f = NULL;
    onnx_io io;
    err e = {0};
    if (onnx_import_file(path, &m, &io, &e) != ERR_OK) fail_msg("%s", e.msg);
    bool compact = strstr(name, "c_mini") != NULL;
    if (compact != (count_op(m, MODEL_OP_FE) > 0))
      fail_msg("%s: %d feature-enhancement layers", name, count_op(m, MODEL_OP_FE));
    assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
    size_t n_in = model_shape_elems(f->input);
    size_t n_out = model_shape_elems(f->layers[f->n_layers - 1].out);
    char in_name[64];
    snprintf(in_name, sizeof in_name, "input_1x3x%dx%d", f->input.h,
             f->input.w);
    float *nchw = read_f32(in_name, ".f32", n_in);
    float *want = read_f32(name, ".logits.f32", n_out);
    float *want_onnx = read_f32(name, ".onnx_logits.f32", n_out);
    float *in = malloc(n_in * sizeof *in), *out = malloc(n_out * sizeof *out);
    onnx_nchw_to_nhwc(nchw, f->input, in);
    xexec *x = NULL;
    if (xexec_create(f, 1, &x, &e) != ERR_OK || xexec_run(x, in, out, &e) != ERR_OK)
      fail_msg("%s: %s", name, e.msg);
    double d = tl_max_rel_diff(want, out, n_out);
    double d_onnx = tl_max_rel_diff(want_onnx, out, n_out);
    print_message("%-15s %3d layers, %2d FE, %zu outputs: max rel diff %.2e "
                  "(torch), %.2e (onnx graph)\n",
                  name, m->n_layers, count_op(m, MODEL_OP_FE), n_out, d,
                  d_onnx);
    if (d > TORCH_MAX_REL_DIFF)
      fail_msg("%s: EdgeDI differs from PyTorch by %g relative", name, d);
    if (d_onnx > TORCH_MAX_REL_DIFF)
      fail_msg("%s: EdgeDI differs from the ONNX graph run by PyTorch by %g "
               "relative", name, d_onnx);
    xexec_destroy(x);
    free(nchw);
    free(want);
    free(want_onnx);
    free(in);
    free(out);
    model_destroy(f);
    model_destroy(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_torch_exports_match_torch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

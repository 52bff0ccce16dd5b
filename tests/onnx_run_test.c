/* onnx_run_test.c — `edgedi export` and `edgedi run`, the real binary
 * (argv[1]), end to end: a zoo model exported by the command and run on a
 * raw NCHW tensor and on a PGM image writes exactly the outputs the XNNPACK
 * executor gives for the zoo model itself; a corrupt file or a wrong-sized
 * input fails with exit status 1 and a message that says why.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/fuse.h"
#include "runtime/onnx_import.h"
#include "runtime/preprocess.h"
#include "runtime/stats.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"

enum { SIDE = 48, CLASSES = 6 };

static const char *edgedi;
static char dir[512];

static const char *path(const char *name) {
  static char buf[8][768];
  static int next;
  char *p = buf[next++ % 8];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

/* Runs edgedi with the arguments (NULL-terminated), stdout and stderr into
 * files; returns the exit status. */
static int run(const char *arg, ...) {
  const char *argv[16] = {edgedi};
  int n = 1;
  va_list ap;
  va_start(ap, arg);
  for (const char *a = arg; a && n < 15; a = va_arg(ap, const char *)) argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  /* Not path(): its ring of buffers holds the arguments. */
  char out[768], errs[768];
  snprintf(out, sizeof out, "%s/stdout", dir);
  snprintf(errs, sizeof errs, "%s/stderr", dir);
  pid_t pid = fork();
  if (pid == 0) {
    if (!freopen(out, "w", stdout) || !freopen(errs, "w", stderr)) _exit(127);
    execv(edgedi, (char *const *)argv);
    _exit(127);
  }
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *slurp(const char *p, size_t *len) {
  FILE *f = fopen(p, "rb");
  assert_non_null(f);
  static char buf[1 << 16];
  *len = fread(buf, 1, sizeof buf - 1, f);
  buf[*len] = 0;
  fclose(f);
  return buf;
}

/* The zoo model's logits on an NHWC input, on the executor directly. */
static void expected(const float *nhwc, float *logits) {
  zoo_options o = zoo_defaults();
  o.in_h = o.in_w = SIDE;
  model *m = NULL, *f = NULL;
  xexec *x = NULL;
  err e = {0};
  assert_int_equal(zoo_build("resnet18c", &o, &m, &e), ERR_OK);
  assert_int_equal(fuse_model(m, &f, &e), ERR_OK);
  assert_int_equal(xexec_create(f, 1, &x, &e), ERR_OK);
  assert_int_equal(xexec_run(x, nhwc, logits, &e), ERR_OK);
  xexec_destroy(x);
  model_destroy(f);
  model_destroy(m);
}

/* What edgedi run wrote against the executor run here. Not to the bit:
 * the wide convolutions run on OpenBLAS (runtime/gemm_conv.h), whose
 * kernels may round differently for buffers at other addresses, and the
 * two processes lay theirs out differently; a wrong layout, layer or
 * preprocessing would be off by far more than this. */
static void check_output_file(const float *want) {
  size_t len;
  const char *got = slurp(path("out.bin"), &len);
  assert_int_equal(len, CLASSES * sizeof(float));
  float g[CLASSES];
  memcpy(g, got, sizeof g); /* little-endian float32, as this test machine is */
  double diff = stats_max_rel_diff(g, want, CLASSES);
  if (diff > 1e-6)
    fail_msg("edgedi run wrote %g %g ..., the executor gives %g %g ... (%.2g relative)", g[0],
             g[1], want[0], want[1], diff);
}

static void test_export_then_run_raw_tensor(void **state) {
  (void)state;
  assert_int_equal(run("export", "resnet18c", path("m.onnx"), "--height", "48",
                       "--width", "48", NULL), 0);
  size_t len;
  assert_non_null(strstr(slurp(path("stdout"), &len), "wrote"));

  model_shape in = {SIDE, SIDE, 3};
  size_t n = model_shape_elems(in);
  float *nchw = malloc(n * sizeof *nchw), *nhwc = malloc(n * sizeof *nhwc);
  for (size_t i = 0; i < n; i++) nchw[i] = (float)((i * 7919) % 1000) / 500.0f - 1;
  FILE *f = fopen(path("in.bin"), "wb");
  assert_int_equal(fwrite(nchw, sizeof *nchw, n, f), n);
  fclose(f);
  onnx_nchw_to_nhwc(nchw, in, nhwc);
  float want[CLASSES];
  expected(nhwc, want);

  assert_int_equal(run("run", path("m.onnx"), "--input", path("in.bin"),
                       "--output", path("out.bin"), "--runs", "3", NULL), 0);
  const char *out = slurp(path("stdout"), &len);
  assert_non_null(strstr(out, "top"));
  assert_non_null(strstr(out, "median of 3 runs"));
  check_output_file(want);
  free(nchw);
  free(nhwc);
}

static void test_run_image(void **state) {
  (void)state;
  /* A gray PGM: replicated to the three channels, / 255. */
  uint8_t px[SIDE * SIDE];
  for (int i = 0; i < SIDE * SIDE; i++) px[i] = (uint8_t)(i * 13 + i / SIDE);
  FILE *f = fopen(path("img.pgm"), "wb");
  fprintf(f, "P5\n%d %d\n255\n", SIDE, SIDE);
  fwrite(px, 1, sizeof px, f);
  fclose(f);
  model_shape in = {SIDE, SIDE, 3};
  float nhwc[SIDE * SIDE * 3], want[CLASSES];
  preprocess_image img = preprocess_whole(PREPROCESS_U8, px, SIDE, SIDE, 1);
  err e = {0};
  assert_int_equal(preprocess_rows(&img, in, (model_rows){0, SIDE}, nhwc, &e), ERR_OK);
  expected(nhwc, want);
  assert_int_equal(run("run", path("m.onnx"), "--input", path("img.pgm"),
                       "--output", path("out.bin"), "--threads", "2", NULL), 0);
  check_output_file(want);
}

static void test_run_errors(void **state) {
  (void)state;
  size_t len;
  FILE *f = fopen(path("bad.onnx"), "wb");
  fputs("not an onnx file", f);
  fclose(f);
  assert_int_equal(run("run", path("bad.onnx"), "--input", path("in.bin"), NULL), 1);
  assert_non_null(strstr(slurp(path("stderr"), &len), "not an ONNX model"));

  f = fopen(path("short.bin"), "wb");
  fputs("0123456789", f);
  fclose(f);
  assert_int_equal(run("run", path("m.onnx"), "--input", path("short.bin"), NULL), 1);
  assert_non_null(strstr(slurp(path("stderr"), &len), "1x3x48x48 float32"));

  assert_int_equal(run("run", path("m.onnx"), NULL), 2); /* no --input */
  assert_int_equal(run("export", "nosuchnet", path("x.onnx"), NULL), 1);
  assert_non_null(strstr(slurp(path("stderr"), &len), "nosuchnet"));
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: onnx_run_test PATH_TO_EDGEDI\n");
    return 2;
  }
  edgedi = argv[1];
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(dir, sizeof dir, "%s", tmp ? tmp : "/tmp");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_export_then_run_raw_tensor),
      cmocka_unit_test(test_run_image),
      cmocka_unit_test(test_run_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

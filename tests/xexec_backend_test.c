/* xexec_backend_test.c — the executor's own convolution backends, each
 * forced on every dense convolution: OpenBLAS (runtime/gemm_conv.h) and
 * the direct register-blocked kernel (runtime/dconv.h; skipped, and said
 * so, only on a CPU without AVX2 and FMA):
 *  - random shapes (kernels 1..5 and non-square, stride 1..3, asymmetric
 *    padding up to the kernel's size, 1x1 direct, bias, fused ReLU) against
 *    the reference executor: <= 1e-4 relative;
 *  - the XNNPACK backend on the same model: <= 1e-5 relative;
 *  - strips at the top, middle and bottom, and random partitions: equal to
 *    the whole run bit for bit (what the cluster needs; it holds because an
 *    output pixel's GEMM row never depends on the rows around it);
 *  - wide layers whose K spans several OpenBLAS blocks and whose rows span
 *    several im2col blocks, the same;
 *  - OpenBLAS threads: with threads = 1 the process gains no thread; with
 *    2 the numbers stay within 1e-5 (not bit for bit: see gemm_conv.h);
 *  - AUTO: the direct kernel where it pays, the same checks;
 *  - chains of a direct-kernel convolution, 1x1 ones and a max pool run in
 *    row chunks (xexec.c): formed, and the same checks;
 *  - XNNPACK convolutions split into blocks of output channels: the same
 *    checks, and equal bit for bit to the unsplit operator;
 *  - the direct kernel's AVX-512 tiles equal to its AVX2 tiles bit for bit
 *    (agents on either kind of core must give the same strips), on every
 *    path: narrow and wide blocks, pointwise, small and large weights.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/dconv.h"
#include "runtime/model.h"
#include "runtime/ref.h"
#include "runtime/xexec.h"
#include "tests/xexec_testlib.h"

enum { RANDOM_CASES = 60, SPLITS_PER_CASE = 4, MAX_STRIPS = 6 };
static const double REF_TOL = 1e-4, BACKEND_TOL = 1e-5;

static void check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s: %s", err_name(rc), e->msg);
}

static int must(int l, const err *e) {
  if (l < 0) fail_msg("building a model: %s", e->msg);
  return l;
}

static int count_threads(void) {
  DIR *d = opendir("/proc/self/task");
  assert_non_null(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (de->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* Output rows [lo, hi) of x's single range as one strip, into `out` (the
 * whole output tensor, rows lo..hi-1 written). */
static void run_strip(xexec *x, const float *in, int lo, int hi, float *out) {
  err e = {0};
  const model *m = xexec_model(x);
  model_rows want = {lo, hi};
  xexec_strip *s;
  check_ok(xexec_strip_create(x, 0, m->n_layers, want, &s, &e), &e);
  model_rows ir = xexec_strip_in_rows(s);
  size_t in_row = (size_t)m->input.w * (size_t)m->input.c;
  if (ir.hi > ir.lo)
    memcpy(xexec_strip_input(s), in + (size_t)ir.lo * in_row,
           (size_t)(ir.hi - ir.lo) * in_row * sizeof *in);
  check_ok(xexec_strip_run_local(s, &e), &e);
  model_shape os = m->layers[m->n_layers - 1].out;
  size_t out_row = (size_t)os.w * (size_t)os.c;
  memcpy(out + (size_t)lo * out_row, xexec_strip_output(s),
         (size_t)(hi - lo) * out_row * sizeof *out);
  xexec_strip_destroy(s);
}

static bool same_bits(const float *a, const float *b, size_t n) {
  return memcmp(a, b, n * sizeof *a) == 0;
}

static xexec_conv backend = XEXEC_CONV_GEMM; /* the one under test */

/* All the checks of the file header on model m (taken). */
static void check_model(model *m, xt_rng *r, bool reference) {
  err e = {0};
  xt_randomize(r, m);
  check_ok(model_finalize(m, &e), &e);
  size_t n_in = model_shape_elems(m->input);
  model_shape os = m->layers[m->n_layers - 1].out;
  size_t n_out = model_shape_elems(os);
  float *in = malloc(n_in * sizeof *in), *got = malloc(n_out * sizeof *got);
  float *other = malloc(n_out * sizeof *other);
  assert_non_null(in);
  assert_non_null(got);
  assert_non_null(other);
  xt_fill(r, in, n_in, -1.0f, 1.0f);

  xexec *x;
  check_ok(xexec_create_ex(m, 1, backend, &x, &e), &e);
  check_ok(xexec_run(x, in, got, &e), &e);
  if (reference) {
    check_ok(ref_run(m, in, other, &e), &e);
    double d = xt_rel_diff(got, other, n_out);
    if (d > REF_TOL) fail_msg("%s: backend %d vs reference %g", m->name, (int)backend, d);
  }
  xexec *xx;
  check_ok(xexec_create_ex(m, 1, XEXEC_CONV_XNNPACK, &xx, &e), &e);
  check_ok(xexec_run(xx, in, other, &e), &e);
  double d = xt_rel_diff(got, other, n_out);
  if (d > BACKEND_TOL) fail_msg("%s: backend %d vs XNNPACK %g", m->name, (int)backend, d);
  xexec_destroy(xx);

  /* one strip at the top, one in the middle, one at the bottom */
  int h = os.h;
  int cuts[3][2] = {{0, (h + 2) / 3}, {h / 3, h / 3 + (h + 2) / 3}, {h - (h + 2) / 3, h}};
  for (int i = 0; i < 3; i++) {
    memcpy(other, got, n_out * sizeof *got);
    run_strip(x, in, cuts[i][0], cuts[i][1], other);
    if (!same_bits(other, got, n_out))
      fail_msg("%s: strip [%d, %d) differs from the whole run", m->name,
               cuts[i][0], cuts[i][1]);
  }
  for (int t = 0; t < SPLITS_PER_CASE; t++) {
    int bounds[MAX_STRIPS + 1];
    int n = xt_random_split(r, h, MAX_STRIPS, bounds);
    check_ok(xt_run_split(x, 0, m->n_layers, bounds, n, in, other, &e), &e);
    if (!same_bits(other, got, n_out))
      fail_msg("%s: %d strips differ from the whole run", m->name, n);
  }
  xexec_destroy(x);
  model_destroy(m);
  free(in);
  free(got);
  free(other);
}

static model *new_model(const char *name, int h, int w, int c) {
  model_shape s = {h, w, c};
  model *m = model_create(name, s);
  assert_non_null(m);
  return m;
}

/* Runs first: no executor has asked OpenBLAS for threads yet. */
static void test_one_thread_spawns_none(void **state) {
  (void)state;
  err e = {0};
  xt_rng r = {7};
  model *m = new_model("threads", 20, 20, 64);
  must(model_add_conv(m, MODEL_INPUT, 128, 3, 1, 1, 1, true, &e), &e);
  xt_randomize(&r, m);
  check_ok(model_finalize(m, &e), &e);
  int before = count_threads();
  xexec *x;
  check_ok(xexec_create_ex(m, 1, XEXEC_CONV_GEMM, &x, &e), &e);
  size_t n_in = model_shape_elems(m->input);
  size_t n_out = model_shape_elems(m->layers[0].out);
  float *in = malloc(n_in * sizeof *in), *a = malloc(n_out * sizeof *a);
  float *b = malloc(n_out * sizeof *b);
  assert_non_null(in);
  assert_non_null(a);
  assert_non_null(b);
  xt_fill(&r, in, n_in, -1.0f, 1.0f);
  check_ok(xexec_run(x, in, a, &e), &e);
  assert_int_equal(count_threads(), before);
  xexec_destroy(x);
  check_ok(xexec_create_ex(m, 2, XEXEC_CONV_GEMM, &x, &e), &e);
  check_ok(xexec_run(x, in, b, &e), &e);
  /* OpenBLAS splits a call among threads its own way: close, not equal */
  double d = xt_rel_diff(b, a, n_out);
  if (d > BACKEND_TOL) fail_msg("2 threads vs 1: %g", d);
  xexec_destroy(x);
  model_destroy(m);
  free(in);
  free(a);
  free(b);
}

static void random_shapes(void) {
  xt_rng r = {2024};
  for (int t = 0; t < RANDOM_CASES; t++) {
    err e = {0};
    int kh = xt_int(&r, 1, 5), kw = t % 4 == 0 ? kh : xt_int(&r, 1, 5);
    int sh = xt_int(&r, 1, 3), sw = t % 3 == 0 ? sh : xt_int(&r, 1, 3);
    int pt = xt_int(&r, 0, kh), pb = xt_int(&r, 0, kh);
    int pl = xt_int(&r, 0, kw), pr = xt_int(&r, 0, kw);
    if (t % 5 == 0) kh = kw = sh = sw = 1, pt = pb = pl = pr = 0; /* direct */
    int h = xt_int(&r, kh, 17), w = xt_int(&r, kw, 15);
    int cin = xt_int(&r, 1, 24), cout = xt_int(&r, 1, 40);
    char name[96];
    snprintf(name, sizeof name, "conv %dx%d s%dx%d pad %d,%d,%d,%d %dx%dx%d->%d",
             kh, kw, sh, sw, pt, pl, pb, pr, h, w, cin, cout);
    model *m = new_model(name, h, w, cin);
    int l = must(model_add_conv_ex(m, MODEL_INPUT, cout, kh, kw, sh, sw, pt, pl,
                                   pb, pr, 1, t % 2 == 0, &e),
                 &e);
    m->layers[l].relu = t % 3 != 1;
    /* a second convolution, so that strips carry halos between two */
    if (t % 4 == 1)
      m->layers[must(model_add_conv(m, l, xt_int(&r, 1, 16), 3, 1, 1, 1, true,
                                    &e),
                     &e)]
          .relu = true;
    check_model(m, &r, true);
  }
}

/* Wide enough that K spans several OpenBLAS K blocks and a 3x3 layer's rows
 * several im2col blocks of the scratch budget; no reference (too slow). */
static void wide_layers(void) {
  xt_rng r = {99};
  err e = {0};
  model *m = new_model("wide 3x3 s1 and s2", 40, 60, 256);
  int l = must(model_add_conv(m, MODEL_INPUT, 256, 3, 1, 1, 1, true, &e), &e);
  m->layers[l].relu = true;
  must(model_add_conv(m, l, 160, 3, 2, 1, 1, false, &e), &e);
  check_model(m, &r, false);
  m = new_model("wide 1x1", 23, 31, 1100);
  must(model_add_conv(m, MODEL_INPUT, 144, 1, 1, 0, 1, true, &e), &e);
  check_model(m, &r, false);
  /* weights past the direct kernel's 64 KB, within its pointwise 192 KB */
  m = new_model("1x1 64->504, pixel-major", 13, 25, 64);
  must(model_add_conv(m, MODEL_INPUT, 504, 1, 1, 0, 1, true, &e), &e);
  check_model(m, &r, true);
}

/* Chains (xexec.c): a direct-kernel 3x3 convolution, then 1x1 ones and a
 * 2x2 max pool that run in row chunks with it, the tensors between them in
 * chunk buffers or, when a later add reads one too, in its own. The direct
 * and AUTO backends must form the chain; the values are the same as
 * without (the XNNPACK comparison and the bit-for-bit strips of
 * check_model, whose strips start at odd rows too, where a pool cannot
 * chain). */
static model *chain_model(bool shared, bool pool, int stride) {
  err e = {0};
  char name[64];
  snprintf(name, sizeof name, "chain%s%s, stride %d", shared ? ", tensor read twice" : "",
           pool ? ", pool" : "", stride);
  model *m = new_model(name, 36, 29, 5);
  int c0 = must(model_add_conv(m, MODEL_INPUT, 8, 3, stride, 1, 1, true, &e), &e);
  int c1 = must(model_add_conv(m, c0, 40, 1, 1, 0, 1, true, &e), &e);
  m->layers[c1].relu = true;
  int last = must(model_add_conv(m, c1, 40, 1, 1, 0, 1, true, &e), &e);
  if (shared) last = must(model_add_add(m, last, c1, &e), &e);
  if (pool) last = must(model_add_maxpool(m, last, 2, 2, 0, &e), &e);
  must(model_add_conv(m, last, 7, 3, 1, 1, 1, true, &e), &e);
  return m;
}

static int chained_layers(model *m, xt_rng *r) {
  err e = {0};
  xt_randomize(r, m);
  check_ok(model_finalize(m, &e), &e);
  xexec *x;
  check_ok(xexec_create_ex(m, 1, backend, &x, &e), &e);
  xexec_strip *s;
  model_rows all = {0, m->layers[m->n_layers - 1].out.h};
  check_ok(xexec_strip_create(x, 0, m->n_layers, all, &s, &e), &e);
  int n = xexec_strip_chained(s);
  xexec_strip_destroy(s);
  xexec_destroy(x);
  return n;
}

static void chains(void) {
  xt_rng r = {77};
  for (int stride = 1; stride <= 2; stride++)
    for (int shared = 0; shared <= 1; shared++)
      for (int pool = 0; pool <= 1; pool++) {
        model *m = chain_model(shared, pool, stride);
        if (dconv_available())
          assert_int_equal(chained_layers(m, &r), pool && !shared ? 4 : 3);
        check_model(m, &r, true);
      }
}

/* XNNPACK convolutions whose packed weights pass XEXEC_CONV_BLOCK_BYTES run
 * as operators over blocks of output channels with one thread
 * (xexec_ops.h): the usual checks (strips and partitions bit for bit), one
 * layer whose channels are not a multiple of the block, and the blocked
 * run equal bit for bit to the one-operator run that two threads get. */
static void blocked_layers(void) {
  xt_rng r = {31};
  err e = {0};
  model *m = new_model("blocked 3x3 128->200 and 1x1 200->600", 19, 11, 128);
  int l = must(model_add_conv(m, MODEL_INPUT, 200, 3, 1, 1, 1, true, &e), &e);
  m->layers[l].relu = true;
  must(model_add_conv(m, l, 600, 1, 1, 0, 1, true, &e), &e);
  xt_randomize(&r, m);
  check_ok(model_finalize(m, &e), &e);
  size_t n_in = model_shape_elems(m->input);
  size_t n_out = model_shape_elems(m->layers[m->n_layers - 1].out);
  float *in = malloc(n_in * sizeof *in), *one = malloc(n_out * sizeof *one);
  float *two = malloc(n_out * sizeof *two);
  assert_non_null(in);
  assert_non_null(one);
  assert_non_null(two);
  xt_fill(&r, in, n_in, -1.0f, 1.0f);
  xexec *x;
  check_ok(xexec_create_ex(m, 1, XEXEC_CONV_XNNPACK, &x, &e), &e);
  check_ok(xexec_run(x, in, one, &e), &e);
  xexec_destroy(x);
  check_ok(xexec_create_ex(m, 2, XEXEC_CONV_XNNPACK, &x, &e), &e);
  check_ok(xexec_run(x, in, two, &e), &e);
  xexec_destroy(x);
  if (!same_bits(one, two, n_out)) fail_msg("blocked and one-operator runs differ");
  free(in);
  free(one);
  free(two);
  check_model(m, &r, true); /* randomizes again: same checks, new weights */
}

static void test_xnnpack_blocks(void **state) {
  (void)state;
  backend = XEXEC_CONV_XNNPACK;
  blocked_layers();
  wide_layers();
}

static void test_gemm(void **state) {
  (void)state;
  backend = XEXEC_CONV_GEMM;
  random_shapes();
  wide_layers();
}

static void test_direct(void **state) {
  (void)state;
  if (!dconv_available()) {
    print_message("this CPU has no AVX2 and FMA: the direct backend falls back to XNNPACK\n");
    return;
  }
  backend = XEXEC_CONV_DIRECT;
  random_shapes();
  wide_layers();
  chains();
}

static void test_auto(void **state) {
  (void)state;
  backend = XEXEC_CONV_AUTO;
  random_shapes();
  wide_layers();
  chains();
}

/* One convolution (no vertical padding: dconv_run takes the window as
 * given) through the direct kernel with its AVX-512 tiles and with its
 * AVX2 ones: the same bits. */
static void isas_agree_on(xt_rng *r, int h, int w, int cin, int cout, int k, int stride,
                          int pad_w) {
  err e = {0};
  model *m = new_model("isa", h, w, cin);
  int l = must(model_add_conv_ex(m, MODEL_INPUT, cout, k, k, stride, stride, 0, pad_w, 0,
                                 pad_w, 1, true, &e),
               &e);
  m->layers[l].relu = cout % 2 == 0;
  xt_randomize(r, m);
  check_ok(model_finalize(m, &e), &e);
  dconv d;
  check_ok(dconv_create(m, l, &d, &e), &e);
  assert_true(d.avx512);
  model_shape os = m->layers[l].out;
  size_t n_in = model_shape_elems(m->input), n_out = model_shape_elems(os);
  float *in = malloc(n_in * sizeof *in), *wide = malloc(n_out * sizeof *wide);
  float *narrow = malloc(n_out * sizeof *narrow);
  assert_non_null(in);
  assert_non_null(wide);
  assert_non_null(narrow);
  xt_fill(r, in, n_in, -1.0f, 1.0f);
  dconv_run(&d, in, wide, os.h, NULL);
  d.avx512 = false;
  dconv_run(&d, in, narrow, os.h, NULL);
  if (!same_bits(wide, narrow, n_out))
    fail_msg("%dx%dx%d -> %d, %dx%d/%d: AVX-512 and AVX2 tiles differ", h, w, cin, cout, k, k,
             stride);
  dconv_destroy(&d);
  model_destroy(m);
  free(in);
  free(wide);
  free(narrow);
}

static void test_direct_isas_agree(void **state) {
  (void)state;
  if (!dconv_has_avx512()) {
    /* dconv_create must not pick tiles this CPU cannot run */
    print_message("this CPU has no AVX-512F: only its AVX2 tiles can run here\n");
    if (!dconv_available()) return;
    err e = {0};
    model *m = new_model("isa", 4, 4, 8);
    int l = must(model_add_conv(m, MODEL_INPUT, 16, 1, 1, 0, 1, true, &e), &e);
    check_ok(model_finalize(m, &e), &e);
    dconv d;
    check_ok(dconv_create(m, l, &d, &e), &e);
    assert_false(d.avx512);
    dconv_destroy(&d);
    model_destroy(m);
    return;
  }
  xt_rng r = {512};
  /* output channels on each side of 8, 16 and 32 lanes; 1x1 and 3x3 at
   * strides 1 and 2, padded and not; 3x3 over 256 -> 96 passes the 64 KB
   * of weights that switch to groups of rows outermost */
  static const int couts[] = {5, 8, 13, 16, 24, 31, 32, 40, 64, 72};
  for (size_t i = 0; i < sizeof couts / sizeof couts[0]; i++) {
    isas_agree_on(&r, 9, 17, 24, couts[i], 1, 1, 0);
    isas_agree_on(&r, 11, 13, 7, couts[i], 3, 1, 1);
    isas_agree_on(&r, 11, 14, 16, couts[i], 3, 2, 1);
    isas_agree_on(&r, 8, 9, 32, couts[i], 1, 2, 0);
  }
  isas_agree_on(&r, 10, 12, 256, 96, 3, 1, 1);
  isas_agree_on(&r, 7, 7, 512, 200, 1, 1, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_thread_spawns_none),
      cmocka_unit_test(test_gemm),
      cmocka_unit_test(test_xnnpack_blocks),
      cmocka_unit_test(test_direct),
      cmocka_unit_test(test_auto),
      cmocka_unit_test(test_direct_isas_agree),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

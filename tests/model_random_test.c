/* model_random_test.c — receptive fields and FE ownership of random graphs
 * (model_strip_rows, model_fe_owned_rows in runtime/model.c) against brute
 * force; model_test.c has the hand-worked cases.
 *
 * The brute force shares nothing with model.c's interval arithmetic: it
 * marks, row by row, which rows of every tensor the wanted output rows
 * depend on (walking each layer's window over real rows only) and compares
 * the hull of the marks with model_strip_rows() on many random graphs and
 * random output intervals. A second, independent oracle perturbs one input
 * row at a time, runs the reference executor and watches which output
 * rows change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model.h"
#include "runtime/ref.h"

enum {
  RANDOM_GRAPHS = 1000,    /* per receptive-field test */
  PERTURB_GRAPHS = 100,    /* graphs checked against ref_run_all */
  INTERVALS_PER_RANGE = 60 /* random output intervals per range */
};

static model *mk(int h, int w, int c) {
  model_shape s = {h, w, c};
  model *m = model_create("random", s);
  assert_non_null(m);
  return m;
}

static bool rows_equal(model_rows a, model_rows b) {
  if (a.lo >= a.hi && b.lo >= b.hi) return true; /* both empty */
  return a.lo == b.lo && a.hi == b.hi;
}

/* ---- random graphs ------------------------------------------------------- */

typedef struct rng {
  uint64_t s;
} rng;

static uint32_t rnd(rng *r) {
  r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(r->s >> 33);
}

static int rint_in(rng *r, int lo, int hi) { /* inclusive */
  return lo + (int)(rnd(r) % (uint32_t)(hi - lo + 1));
}

/* Nonzero, so that no dependency vanishes: +-[0.5, 1.5) * scale. */
static float rweight(rng *r, double scale) {
  double v = 0.5 + (rnd(r) % 1000) / 1000.0;
  return (float)((rnd(r) & 1 ? v : -v) * scale);
}

typedef struct gen_opts {
  bool fe;        /* feature-enhancement layers */
  bool nonlinear; /* maxpool and ReLU, which can hide a perturbation */
  bool head;      /* GAP/FLATTEN + FC at the end */
  bool wide_pad;  /* conv padding up to kernel + 1: windows of pure padding */
} gen_opts;

/* A conv keeping rows (stride 1, total padding kernel-1, split at random),
 * or downsampling by `stride` with the shape of a 1x1 conv of that stride. */
static int rand_shape_conv(model *m, rng *r, int in, int c, int stride,
                           err *e) {
  int kh = stride == 1 ? rint_in(r, 1, 5) : 2 * rint_in(r, 0, 2) + 1;
  int pt = rint_in(r, 0, kh - 1);
  int kw = 2 * rint_in(r, 0, 1) + 1;
  bool depthwise = c > 1 && model_tensor_shape(m, in).c == c && rnd(r) % 3 == 0;
  int g = depthwise ? c : 1;
  return model_add_conv_ex(m, in, c, kh, kw, stride, stride, pt, kw / 2,
                           kh - 1 - pt, kw / 2, g, rnd(r) & 1, e);
}

/* One random block on `cur`; returns the new tensor or -1 when the shapes
 * ran out (the generator then stops). */
static int rand_block(model *m, rng *r, int cur, const gen_opts *o, err *e) {
  model_shape s = model_tensor_shape(m, cur);
  switch (rnd(r) % 6) {
    case 0: { /* any convolution; one draw per statement, so that a seed
               * gives the same graph whatever order a compiler evaluates
               * arguments in */
      int kh = rint_in(r, 1, 5), kw = rint_in(r, 1, 3);
      int c = rint_in(r, 1, 4), max_pad = o->wide_pad ? kh + 1 : kh - 1;
      int g = (c == s.c && c > 1 && rnd(r) & 1) ? c : 1;
      int sh = rint_in(r, 1, 3), sw = rint_in(r, 1, 2);
      int pt = rint_in(r, 0, max_pad), pb = rint_in(r, 0, max_pad);
      int pl = rint_in(r, 0, kw - 1), pr = rint_in(r, 0, kw - 1);
      int l = model_add_conv_ex(m, cur, c, kh, kw, sh, sw, pt, pl, pb, pr, g,
                                rnd(r) & 1, e);
      if (l >= 0 && o->nonlinear) m->layers[l].relu = rnd(r) & 1;
      return l;
    }
    case 1: { /* pool */
      int k = rint_in(r, 1, 3);
      int st = rint_in(r, 1, 3), p = rint_in(r, 0, k - 1);
      return (o->nonlinear && rnd(r) & 1) ? model_add_maxpool(m, cur, k, st, p, e)
                                          : model_add_avgpool(m, cur, k, st, p, e);
    }
    case 2:
      return (o->nonlinear && rnd(r) & 1) ? model_add_relu(m, cur, e)
                                          : model_add_bn(m, cur, e);
    case 3: { /* residual, same shape, optionally with FE in the branch */
      int b = rand_shape_conv(m, r, cur, s.c, 1, e);
      if (b >= 0 && rnd(r) & 1) b = rand_shape_conv(m, r, b, s.c, 1, e);
      if (b >= 0 && o->fe && rnd(r) & 1) b = model_add_fe(m, b, e);
      return b < 0 ? -1 : model_add_add(m, b, cur, e);
    }
    case 4: { /* residual downsampling: two paths with different fields */
      int st = rint_in(r, 2, 3), c = rint_in(r, 1, 3);
      int a = rand_shape_conv(m, r, cur, c, st, e);
      if (a >= 0 && rnd(r) & 1) a = rand_shape_conv(m, r, a, c, 1, e);
      int b = a < 0 ? -1
                    : model_add_conv(m, cur, c, 1, st, 0, 1, rnd(r) & 1, e);
      return b < 0 ? -1 : model_add_add(m, a, b, e);
    }
    default:
      return o->fe ? model_add_fe(m, cur, e) : model_add_bn(m, cur, e);
  }
}

static model *rand_graph(rng *r, const gen_opts *o) {
  for (;;) {
    err e = {0};
    int h = rint_in(r, 6, 40), w = rint_in(r, 1, 3);
    model *m = mk(h, w, rint_in(r, 1, 3));
    int cur = MODEL_INPUT, blocks = rint_in(r, 1, 7);
    for (int b = 0; b < blocks; b++) {
      int next = rand_block(m, r, cur, o, &e);
      if (next < 0) break;
      cur = next;
    }
    if (o->head && m->n_layers > 0 && rnd(r) & 1) {
      int flat = (rnd(r) & 1) ? model_add_gap(m, cur, &e)
                              : model_add_flatten(m, cur, &e);
      model_add_fc(m, flat, 2, true, &e);
    }
    if (m->n_layers == 0) {
      model_destroy(m);
      continue;
    }
    for (int l = 0; l < m->n_layers; l++) {
      model_layer *L = &m->layers[l];
      int fan = L->op == MODEL_OP_CONV
                    ? L->kernel_h * L->kernel_w *
                          model_tensor_shape(m, L->inputs[0]).c / L->groups
                    : model_tensor_shape(m, L->inputs[0]).c;
      for (size_t i = 0; i < L->n_weights; i++)
        L->weights[i] = rweight(r, 1.0 / sqrt((double)fan));
      for (size_t i = 0; i < L->n_bias; i++) L->bias[i] = rweight(r, 0.1);
    }
    assert_int_equal(model_finalize(m, &e), ERR_OK);
    return m;
  }
}

/* A random range between two cuts. */
static void rand_range(const model *m, rng *r, int *first, int *end) {
  int cuts[256], n = 0;
  for (int c = 0; c <= m->n_layers && n < 256; c++)
    if (model_is_cut(m, c)) cuts[n++] = c;
  int i = rint_in(r, 0, n - 2), j = rint_in(r, i + 1, n - 1);
  *first = cuts[i];
  *end = cuts[j];
}

static int slot_h(const model *m, int slot) {
  return model_tensor_shape(m, slot - 1).h;
}

/* The brute force: mark[s][row] for slot s = layer + 1 (slot `first` is the
 * range's input). Starts from the output rows, adds `extra[s]` (rows an FE
 * must own, or NULL) and walks every layer's window over real rows. */
static void brute_marks(const model *m, int first, int end, model_rows out,
                        const model_rows *extra, unsigned char **mark) {
  for (int s = first; s <= end; s++) memset(mark[s], 0, (size_t)slot_h(m, s));
  for (int y = out.lo; y < out.hi; y++) mark[end][y] = 1;
  for (int s = end; s > first; s--) {
    if (extra)
      for (int y = extra[s].lo; y < extra[s].hi; y++) mark[s][y] = 1;
    const model_layer *L = &m->layers[s - 1];
    for (int i = 0; i < L->n_inputs; i++) {
      int src = L->inputs[i] + 1, h = slot_h(m, src);
      assert_true(src >= first);
      for (int y = 0; y < slot_h(m, s); y++) {
        if (!mark[s][y]) continue;
        switch (L->op) {
          case MODEL_OP_CONV:
          case MODEL_OP_MAXPOOL:
          case MODEL_OP_AVGPOOL:
            for (int k = 0; k < L->kernel_h; k++) {
              int iy = y * L->stride_h - L->pad_top + k;
              if (iy >= 0 && iy < h) mark[src][iy] = 1;
            }
            break;
          case MODEL_OP_GAP:
          case MODEL_OP_FC:
          case MODEL_OP_FLATTEN:
            memset(mark[src], 1, (size_t)h);
            break;
          default: /* row-wise; FE's mean is the ownership's business */
            mark[src][y] = 1;
        }
      }
    }
  }
  if (extra)
    for (int y = extra[first].lo; y < extra[first].hi; y++) mark[first][y] = 1;
}

static model_rows hull_of(const unsigned char *mark, int h) {
  model_rows r = {0, 0};
  int lo = 0, hi = h;
  while (lo < h && !mark[lo]) lo++;
  while (hi > lo && !mark[hi - 1]) hi--;
  if (lo < hi) r = (model_rows){lo, hi};
  return r;
}

static unsigned char **alloc_marks(const model *m) {
  unsigned char **mark = calloc((size_t)m->n_layers + 1, sizeof *mark);
  assert_non_null(mark);
  for (int s = 0; s <= m->n_layers; s++) {
    mark[s] = calloc((size_t)slot_h(m, s), 1);
    assert_non_null(mark[s]);
  }
  return mark;
}

static void free_marks(const model *m, unsigned char **mark) {
  for (int s = 0; s <= m->n_layers; s++) free(mark[s]);
  free(mark);
}

static model_rows rand_rows(rng *r, int h) {
  int lo = rint_in(r, 0, h - 1);
  return (model_rows){lo, rint_in(r, lo + 1, h)};
}

/* Whether `got` is what the brute force says: the same hull when `exact`,
 * else (padding as wide as a kernel) at least it, inside the tensor. */
static bool rows_ok(model_rows got, model_rows want, int h, bool exact) {
  if (exact) return rows_equal(got, want);
  if (want.lo >= want.hi) return got.lo >= 0 && got.hi <= h;
  return got.lo >= 0 && got.lo <= want.lo && want.hi <= got.hi && got.hi <= h;
}

/* Compares model_strip_rows with the brute force for `out`; with FE layers
 * the brute force also marks the rows model_fe_owned_rows says each FE
 * input owns. */
static void check_strip(const model *m, int first, int end, model_rows out,
                        bool exact, unsigned char **mark) {
  err e = {0};
  int n = m->n_layers;
  model_rows *rows = calloc((size_t)n, sizeof *rows);
  model_rows *extra = calloc((size_t)n + 1, sizeof *extra);
  assert_non_null(rows);
  assert_non_null(extra);
  model_rows in;
  assert_int_equal(model_strip_rows(m, first, end, out, rows, &in, &e), ERR_OK);
  bool any_fe = false;
  for (int l = first; l < end; l++) {
    if (m->layers[l].op != MODEL_OP_FE) continue;
    model_rows owned;
    assert_int_equal(model_fe_owned_rows(m, first, end, out, l, &owned, &e),
                     ERR_OK);
    extra[m->layers[l].inputs[0] + 1] = owned;
    any_fe = true;
  }
  brute_marks(m, first, end, out, any_fe ? extra : NULL, mark);
  for (int l = first; l < end; l++) {
    model_rows want = hull_of(mark[l + 1], slot_h(m, l + 1));
    if (!rows_ok(rows[l], want, slot_h(m, l + 1), exact))
      fail_msg("range [%d,%d) out [%d,%d): layer %d (%s) rows [%d,%d), brute "
               "force [%d,%d)",
               first, end, out.lo, out.hi, l, model_op_name(m->layers[l].op),
               rows[l].lo, rows[l].hi, want.lo, want.hi);
  }
  model_rows want = hull_of(mark[first], slot_h(m, first));
  if (!rows_ok(in, want, slot_h(m, first), exact))
    fail_msg("range [%d,%d) out [%d,%d): input rows [%d,%d), brute force "
             "[%d,%d)",
             first, end, out.lo, out.hi, in.lo, in.hi, want.lo, want.hi);
  free(rows);
  free(extra);
}

static void check_random_graphs(uint64_t seed, const gen_opts *o) {
  bool exact = !o->wide_pad;
  rng r = {seed};
  for (int g = 0; g < RANDOM_GRAPHS; g++) {
    model *m = rand_graph(&r, o);
    unsigned char **mark = alloc_marks(m);
    for (int k = 0; k < 3; k++) {
      int first, end;
      rand_range(m, &r, &first, &end);
      int h = m->layers[end - 1].out.h;
      for (int i = 0; i < INTERVALS_PER_RANGE; i++)
        check_strip(m, first, end, rand_rows(&r, h), exact, mark);
      check_strip(m, first, end, (model_rows){0, h}, exact, mark);
    }
    free_marks(m, mark);
    model_destroy(m);
  }
}

static void test_receptive_field_random(void **state) {
  (void)state;
  const gen_opts o = {.fe = false, .nonlinear = true, .head = true};
  check_random_graphs(1, &o);
}

/* With FE: the strip computes the receptive field plus the rows it owns,
 * and nothing more. */
static void test_receptive_field_random_fe(void **state) {
  (void)state;
  const gen_opts o = {.fe = true, .nonlinear = true, .head = false};
  check_random_graphs(2, &o);
}

/* Padding as wide as the kernel makes windows of nothing but padding. The
 * interval arithmetic then keeps rows that only feed such windows (a conv
 * with kernel 2, stride 3, top padding 2 has output row 0 reading rows -2
 * and -1 only, yet rows [0, 6) clamp from [-2, 6) where [1, 6) would do):
 * harmless extra work, so only "never less than needed" is held here. */
static void test_receptive_field_random_wide_pad(void **state) {
  (void)state;
  const gen_opts o = {.fe = true, .nonlinear = true, .head = true,
                      .wide_pad = true};
  check_random_graphs(5, &o);
}

/* Strips of a random partition of the output rows own a partition of every
 * FE input's rows, and compute the rows they own. */
static void test_fe_ownership_partition(void **state) {
  (void)state;
  rng r = {3};
  const gen_opts o = {.fe = true, .nonlinear = true, .wide_pad = true};
  err e = {0};
  int checked = 0;
  for (int g = 0; g < RANDOM_GRAPHS; g++) {
    model *m = rand_graph(&r, &o);
    model_rows *rows = calloc((size_t)m->n_layers, sizeof *rows);
    assert_non_null(rows);
    for (int k = 0; k < 3; k++) {
      int first, end;
      rand_range(m, &r, &first, &end);
      int h = m->layers[end - 1].out.h;
      int n_strips = rint_in(&r, 1, h < 6 ? h : 6);
      int edges[8] = {0};
      /* distinct sorted inner edges */
      for (int s = 1; s < n_strips; s++) {
        edges[s] = rint_in(&r, edges[s - 1] + 1, h - (n_strips - s));
      }
      edges[n_strips] = h;
      for (int l = first; l < end; l++) {
        if (m->layers[l].op != MODEL_OP_FE) continue;
        int src = m->layers[l].inputs[0];
        int next = 0, fe_h = model_tensor_shape(m, src).h;
        for (int s = 0; s < n_strips; s++) {
          model_rows out = {edges[s], edges[s + 1]}, owned, in;
          assert_int_equal(
              model_fe_owned_rows(m, first, end, out, l, &owned, &e), ERR_OK);
          if (owned.lo != next || owned.hi < owned.lo)
            fail_msg("strip %d of %d: owns [%d,%d), expected to start at %d",
                     s, n_strips, owned.lo, owned.hi, next);
          next = owned.hi;
          assert_int_equal(model_strip_rows(m, first, end, out, rows, &in, &e),
                           ERR_OK);
          model_rows comp = src == first - 1 ? in : rows[src];
          if (owned.lo < owned.hi)
            assert_true(comp.lo <= owned.lo && owned.hi <= comp.hi);
          checked++;
        }
        assert_int_equal(next, fe_h);
      }
    }
    free(rows);
    model_destroy(m);
  }
  assert_true(checked > 100);
}

/* The second oracle: perturb input row y, run the reference executor and
 * see which output rows move. Linear-ish graphs only (no max or ReLU, which
 * can swallow a change); ranges starting at the graph input. */
static void test_receptive_field_perturbation(void **state) {
  (void)state;
  rng r = {4};
  const gen_opts o = {.fe = false, .nonlinear = false, .head = false};
  err e = {0};
  for (int g = 0; g < PERTURB_GRAPHS; g++) {
    model *m = rand_graph(&r, &o);
    int end = m->n_layers;
    for (int c = 1; c < m->n_layers; c++)
      if (model_is_cut(m, c) && rnd(&r) % 3 == 0) end = c;
    model_shape is = m->input, os = m->layers[end - 1].out;
    size_t n_in = model_shape_elems(is), row_out = (size_t)os.w * os.c;
    float *in = malloc(n_in * sizeof *in);
    assert_non_null(in);
    for (size_t i = 0; i < n_in; i++) in[i] = rweight(&r, 1.0);
    float **base = NULL;
    assert_int_equal(ref_run_all(m, in, &base, &e), ERR_OK);
    /* dep[y * os.h + o]: output row o moved when input row y changed */
    unsigned char *dep = calloc((size_t)is.h * os.h, 1);
    assert_non_null(dep);
    for (int y = 0; y < is.h; y++) {
      size_t row_in = (size_t)is.w * is.c;
      float *keep = malloc(row_in * sizeof *keep);
      assert_non_null(keep);
      memcpy(keep, in + y * row_in, row_in * sizeof *keep);
      for (size_t i = 0; i < row_in; i++) in[y * row_in + i] += rweight(&r, 1.0);
      float **acts = NULL;
      assert_int_equal(ref_run_all(m, in, &acts, &e), ERR_OK);
      for (int oy = 0; oy < os.h; oy++)
        dep[y * os.h + oy] = memcmp(acts[end - 1] + oy * row_out,
                                    base[end - 1] + oy * row_out,
                                    row_out * sizeof(float)) != 0;
      ref_free_acts(m, acts);
      memcpy(in + y * row_in, keep, row_in * sizeof *keep);
      free(keep);
    }
    model_rows *rows = calloc((size_t)m->n_layers, sizeof *rows);
    assert_non_null(rows);
    for (int i = 0; i < INTERVALS_PER_RANGE; i++) {
      model_rows out = i == 0 ? (model_rows){0, os.h} : rand_rows(&r, os.h);
      model_rows got, want = {0, 0};
      assert_int_equal(model_strip_rows(m, 0, end, out, rows, &got, &e), ERR_OK);
      for (int y = 0; y < is.h; y++) {
        bool needed = false;
        for (int oy = out.lo; oy < out.hi; oy++) needed |= dep[y * os.h + oy];
        if (!needed) continue;
        if (want.lo >= want.hi) want.lo = y;
        want.hi = y + 1;
      }
      if (!rows_equal(got, want))
        fail_msg("graph %d, [0,%d) out [%d,%d): input rows [%d,%d), "
                 "perturbation says [%d,%d)",
                 g, end, out.lo, out.hi, got.lo, got.hi, want.lo, want.hi);
    }
    free(rows);
    free(dep);
    ref_free_acts(m, base);
    free(in);
    model_destroy(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_receptive_field_random),
      cmocka_unit_test(test_receptive_field_random_fe),
      cmocka_unit_test(test_receptive_field_random_wide_pad),
      cmocka_unit_test(test_fe_ownership_partition),
      cmocka_unit_test(test_receptive_field_perturbation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

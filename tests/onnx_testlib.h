/* onnx_testlib.h — what the ONNX tests share: a small builder of ONNX files
 * by hand (through the same protoc-c structs the importer reads, so a test
 * can write exactly the graph, attribute or defect it means), and a naive
 * NCHW evaluator of the operators those graphs use, written from the ONNX
 * specification and independent of EdgeDI's NHWC layers: the oracle the
 * imported graphs are held to.
 *
 * Builder: tb_new() starts a graph with input "x" [1,C,H,W] (batch
 * symbolic when asked); tensors, nodes and the output are added by name;
 * tb_pack() serializes. Attributes are given as a NULL-terminated list of
 * tb_attr values. Everything is freed by tb_free(). Failures abort the test.
 */
#ifndef EDGEDI_TESTS_ONNX_TESTLIB_H
#define EDGEDI_TESTS_ONNX_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tb tb;

typedef struct tb_attr {
  const char *name;
  char kind; /* 'i' int, 'f' float, 's' string, 'I' ints, 0 end */
  int64_t i;
  float f;
  const char *s;
  int n;
  int64_t ints[8];
} tb_attr;

#define TB_I(nm, v) ((tb_attr){.name = (nm), .kind = 'i', .i = (v)})
#define TB_F(nm, v) ((tb_attr){.name = (nm), .kind = 'f', .f = (v)})
#define TB_S(nm, v) ((tb_attr){.name = (nm), .kind = 's', .s = (v)})
#define TB_INTS(nm, cnt, ...) \
  ((tb_attr){.name = (nm), .kind = 'I', .n = (cnt), .ints = {__VA_ARGS__}})
#define TB_END ((tb_attr){.kind = 0})

tb *tb_new(int opset, int c, int h, int w, bool symbolic_batch);
/* A float initializer; data NULL fills a deterministic pattern seeded by
 * `seed`. dims has `rank` entries. */
void tb_init_f(tb *b, const char *name, int rank, const int64_t *dims,
               const float *data, uint32_t seed);
void tb_init_i(tb *b, const char *name, int rank, const int64_t *dims,
               const int64_t *data);
/* inputs: comma-separated names ("" between commas for an absent one). */
void tb_node(tb *b, const char *op, const char *name, const char *inputs,
             const char *output, const tb_attr *attrs);
void tb_output(tb *b, const char *name);
/* The output declared with a shape; the input redeclared. */
void tb_output_dims(tb *b, const char *name, int rank, const int64_t *dims);
void tb_input_dims(tb *b, int rank, const int64_t *dims);
/* Puts the last node in another operator domain. */
void tb_last_node_domain(tb *b, const char *domain);
/* The packed file (malloc'ed). */
void *tb_pack(tb *b, size_t *len);
void tb_free(tb *b);
/* The float data of initializer `name` (NULL if none). */
const float *tb_data(tb *b, const char *name);

/* Deterministic values in [-1, 1). */
void tl_fill(float *x, size_t n, uint32_t seed);
double tl_max_rel_diff(const float *a, const float *b, size_t n);

/* ---- the NCHW oracle (batch 1) ---------------------------------------------- */

typedef struct tl_t {
  int c, h, w;
  float *d; /* c*h*w, NCHW */
} tl_t;

tl_t tl_new(int c, int h, int w);
void tl_free(tl_t *t);
/* w: [o][c/g][kh][kw]; pads top, left, bottom, right. */
tl_t tl_conv(tl_t x, const float *w, const float *bias, int o, int kh, int kw,
             int sh, int sw, const int pads[4], int groups);
tl_t tl_pool(tl_t x, bool max, int kh, int kw, int sh, int sw,
             const int pads[4]);
tl_t tl_gap(tl_t x);
void tl_relu(tl_t *x);
/* y = (x - mean) / sqrt(var + eps) * g + b, per channel. */
void tl_bn(tl_t *x, const float *g, const float *b, const float *mean,
           const float *var, float eps);
/* y[o] = sum_i w[o][i] x[i] + b[o] over the flattened x. */
tl_t tl_fc(tl_t x, const float *w, const float *bias, int out);
/* x * sigmoid(w * mean(x)), w [c][c]. */
void tl_fe(tl_t *x, const float *w);
void tl_add(tl_t *x, tl_t y);

#endif

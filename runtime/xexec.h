/* xexec.h — the XNNPACK executor: runs a model whole, or a layer range of it
 * on a horizontal strip of rows. Dense convolutions may run on the direct
 * register-blocked kernel (dconv.h) or on im2col + OpenBLAS sgemm
 * (gemm_conv.h), chosen per layer at creation (xexec_conv below);
 * everything else is XNNPACK.
 *
 * Life cycle (as XNNPACK's own operators): xexec_create() validates the
 * model and creates one XNNPACK operator per layer, packing weights once;
 * xexec_strip_create() plans one strip (its row intervals per layer, its
 * buffers); xexec_strip_run() binds the operators to the strip's buffers
 * and runs them. A strip is run any number of times; many strips may exist
 * for one executor but only one runs at a time (operators are shared).
 *
 * Strips. The caller names the range [first, end) (both cuts, see model.h)
 * and the output rows of layer end-1 it wants; xexec_strip_in_rows() says
 * which rows of the range's input the caller must put into
 * xexec_strip_input() (halo included, rows outside the image are the
 * padding and are never asked for). Borders follow from the absolute row
 * numbers: a strip at the top or bottom of the image gets the model's zero
 * padding there; any other strip computes on real halo rows.
 *
 * Feature enhancement stays exact on strips: xexec_strip_run() stops before
 * each FE layer and hands out the per-channel sums over the rows of the FE
 * input that this strip owns; the caller adds the sums of all strips, turns
 * them into a scale with model_fe_scale(), gives it back with
 * xexec_strip_set_fe_scale() and calls xexec_strip_run() again to continue.
 * xexec_strip_run_local() resolves every FE with the strip's own sums:
 * exact for a strip that covers the whole image, an approximation (the
 * paper's tile-local variant) otherwise.
 */
#ifndef EDGEDI_XEXEC_H
#define EDGEDI_XEXEC_H

#include <stdbool.h>

#include "runtime/err.h"
#include "runtime/model.h"

typedef struct xexec xexec;
typedef struct xexec_strip xexec_strip;

/* Which backend runs a dense (groups == 1) convolution: AUTO lets the
 * measured shape rules decide per layer (dconv.h: the direct kernel
 * wherever a value takes >= 27 multiply-adds, and for 1x1 stride-1
 * convolutions over >= 8 channels; on a CPU without AVX2 and
 * FMA, gemm_conv.h: OpenBLAS for wide layers with one thread; XNNPACK for
 * the rest); the others force one backend on every dense convolution
 * (grouped ones always run on XNNPACK). */
typedef enum xexec_conv {
  XEXEC_CONV_AUTO,
  XEXEC_CONV_XNNPACK,
  XEXEC_CONV_GEMM,
  XEXEC_CONV_DIRECT, /* dconv.h; XNNPACK on a CPU without AVX2 and FMA */
} xexec_conv;

/* The environment variable that overrides xexec_create's AUTO, for A/B
 * measurements: "auto", "xnnpack", "gemm" or "direct". Every executor that must agree
 * bit for bit with another (a cluster and its single device) needs the same
 * setting. */
#define XEXEC_CONV_ENV "EDGEDI_CONV_BACKEND"

/* `m` must be finalized and outlive the executor. threads <= 1 runs on the
 * calling thread only (XNNPACK and OpenBLAS alike). Convolution backend:
 * AUTO unless XEXEC_CONV_ENV says otherwise. */
err_code xexec_create(const model *m, int threads, xexec **out, err *e);
err_code xexec_create_ex(const model *m, int threads, xexec_conv conv,
                         xexec **out, err *e);
void xexec_destroy(xexec *x);
const model *xexec_model(const xexec *x);

/* Per-layer timing, for profiling: while `ms` is set (m->n_layers
 * doubles, or NULL to stop), every run of every strip of this executor adds
 * each layer's wall time in milliseconds to ms[layer]. */
void xexec_set_layer_ms(xexec *x, double *ms);

/* Whole model: input NHWC m->input, output the last layer's tensor. */
err_code xexec_run(xexec *x, const float *input, float *output, err *e);

err_code xexec_strip_create(xexec *x, int first, int end, model_rows out,
                            xexec_strip **strip, err *e);
void xexec_strip_destroy(xexec_strip *s);

/* The executor's own strip of [first, end) for `out`, made on first use
 * and kept, prepared, until a call asks for another range or rows (or
 * xexec_destroy): for a caller that runs the same strip request after
 * request (the scheduler's head). Never destroy it; one caller at a time. */
err_code xexec_strip_kept(xexec *x, int first, int end, model_rows out, xexec_strip **strip,
                          err *e);

model_rows xexec_strip_in_rows(const xexec_strip *s);
model_rows xexec_strip_out_rows(const xexec_strip *s);
/* Rows in_rows.lo .. in_rows.hi-1 of the range's input, W*C floats each. */
float *xexec_strip_input(xexec_strip *s);
/* Rows out_rows of layer end-1, W*C floats each; valid after a run. */
const float *xexec_strip_output(const xexec_strip *s);
/* How many of the strip's layers run in row chunks, a chain at a time
 * (xexec.c: 1x1 convolutions after a direct-kernel convolution or an FE);
 * for profiling and tests. */
int xexec_strip_chained(const xexec_strip *s);
/* Bytes of buffers this strip holds. */
size_t xexec_strip_bytes(const xexec_strip *s);

/* Why a run paused at a feature enhancement, and what it hands out. `sums`
 * (n_sums doubles, over the `owned` rows; NULL when there are none to send)
 * are the FE input's channel sums (chain 0) or, with early sums, the
 * moments of the tensor its chain starts from (fe_moments.h). needs_scale:
 * the run stands at the FE and goes on only once it has the scale;
 * otherwise call xexec_strip_run again at once, and give the scale
 * whenever it comes. Valid until the next call on the strip. */
typedef struct xexec_fe_sums {
  int layer;    /* the FE layer */
  int channels; /* of its input: the scale's length */
  int chain;
  size_t n_sums;
  model_rows owned;
  const double *sums;
  bool needs_scale;
} xexec_fe_sums;

/* Runs (or continues) the strip. On return *paused tells whether it stopped
 * at an FE (then *fe says why) or finished the range. */
err_code xexec_strip_run(xexec_strip *s, bool *paused, xexec_fe_sums *fe,
                         err *e);
/* Early FE sums for the strip's runs from now on (off when made): each FE
 * whose chain the strip computes (fe_moments_chain from its first layer)
 * gets a pause right after the chain's first tensor, with its moments,
 * instead of plain sums at the FE. */
void xexec_strip_set_early_fe(xexec_strip *s, bool on);
/* The global scale of the FE the strip's sums were for (channels floats):
 * while it stands at that FE, or from the early sums' pause on. */
err_code xexec_strip_set_fe_scale(xexec_strip *s, const float *scale, err *e);
/* Runs the strip to the end, each FE from the strip's own sums. */
err_code xexec_strip_run_local(xexec_strip *s, err *e);

#endif

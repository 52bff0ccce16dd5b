/* xexec_ops.c — creating, binding and running the executor's per-layer
 * operators (contract in xexec_ops.h).
 *
 * Relies on: a finalized model (shapes and weight sizes checked), layer
 * weights in XNNPACK's own layouts (model.h: OHWI convolutions, [out][in]
 * fully connected), and steps planned by xexec.c whose pointers and row
 * counts fit the buffers (it checks every window before any step runs).
 *
 * Promises: every XNNPACK refusal becomes ERR_BACKEND naming the layer;
 * nothing here allocates or fails for lack of memory while a strip runs,
 * except what XNNPACK's own setup allocates on a shape change.
 */
#include "runtime/xexec_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float out_min(const model_layer *L) { return L->relu ? 0.0f : -INFINITY; }

static err_code backend(err *e, const model_layer *L, int l, const char *what,
                        enum xnn_status st) {
  return err_set(e, ERR_BACKEND, "layer %d (%s): XNNPACK %s failed (status %d)",
                 l, L->name, what, (int)st);
}

/* Whether layer l's convolution goes to the direct kernel under `conv`.
 * Its values do not depend on the thread count (dconv.h), so AUTO uses it
 * with any. */
static bool wants_dconv(const model *m, int l, xexec_conv conv) {
  switch (conv) {
    case XEXEC_CONV_DIRECT:
      return dconv_supports(m, l) && dconv_available();
    case XEXEC_CONV_AUTO:
      return dconv_prefers(m, l) && dconv_available();
    default:
      return false;
  }
}

/* Whether layer l's convolution goes to OpenBLAS under policy `conv` (asked
 * after wants_dconv: under AUTO it gets the wide layers only on a CPU
 * without the direct kernel). AUTO keeps XNNPACK when threads > 1:
 * multi-threaded OpenBLAS would break strips' bit-exactness (gemm_conv.h),
 * and on two cores two XNNPACK threads match one OpenBLAS thread anyway. */
static bool wants_gemm(const model *m, int l, xexec_conv conv, int threads) {
  switch (conv) {
    case XEXEC_CONV_GEMM:
      return gemm_conv_supports(m, l);
    case XEXEC_CONV_AUTO:
      return threads <= 1 && gemm_conv_prefers(m, l) && gemm_conv_align() > 0;
    default:
      return false;
  }
}

/* A dense convolution on XNNPACK as operators over blocks of output
 * channels, each block's weights at most XEXEC_CONV_BLOCK_BYTES (see .h);
 * one block when they all fit. Blocks are equal, in multiples of XNNPACK's
 * 16-channel tiles, the last one shorter. */
static err_code conv_blocks_create(const model *m, int l, xexec_op *op, err *e) {
  const model_layer *L = &m->layers[l];
  model_shape is = model_tensor_shape(m, L->inputs[0]);
  const int out_c = L->out_channels, align = XEXEC_CONV_BLOCK_ALIGN;
  const size_t k = (size_t)L->kernel_h * (size_t)L->kernel_w * (size_t)is.c;
  const size_t bytes = k * (size_t)out_c * sizeof(float);
  int n = (int)((bytes + XEXEC_CONV_BLOCK_BYTES - 1) / XEXEC_CONV_BLOCK_BYTES);
  if (n < 1) n = 1; /* no weights: XNNPACK will refuse the geometry */
  int block = (out_c + n - 1) / n;
  block = (block + align - 1) / align * align;
  if (block >= out_c) block = out_c;
  n = block > 0 ? (out_c + block - 1) / block : 1; /* no outputs: refused below */
  op->blocks = calloc((size_t)n, sizeof *op->blocks);
  if (!op->blocks) return err_set(e, ERR_NOMEM, "layer %d (%s): out of memory", l, L->name);
  op->n_blocks = n;
  op->block_c = block;
  for (int b = 0; b < n; b++) {
    int c0 = b * block, c = out_c - c0 < block ? out_c - c0 : block;
    enum xnn_status st = xnn_create_convolution2d_nhwc_f32(
        0, (uint32_t)L->pad_right, 0, (uint32_t)L->pad_left, (uint32_t)L->kernel_h,
        (uint32_t)L->kernel_w, (uint32_t)L->stride_h, (uint32_t)L->stride_w, 1, 1, 1,
        (size_t)is.c, (size_t)c, (size_t)is.c, (size_t)out_c, L->weights + (size_t)c0 * k,
        L->bias ? L->bias + c0 : NULL, out_min(L), INFINITY, 0, &op->blocks[b]);
    if (st != xnn_status_success) return backend(e, L, l, "convolution create", st);
  }
  return ERR_OK;
}

err_code xexec_op_create(const model *m, int l, xexec_conv conv, int threads,
                         xexec_op *op, err *e) {
  const model_layer *L = &m->layers[l];
  model_shape is = model_tensor_shape(m, L->inputs[0]);
  float lo = out_min(L), hi = INFINITY;
  enum xnn_status st = xnn_status_success;
  memset(op, 0, sizeof *op);
  switch (L->op) {
    case MODEL_OP_CONV: {
      if (wants_dconv(m, l, conv)) {
        op->use_dconv = true;
        return dconv_create(m, l, &op->dconv, e);
      }
      if (wants_gemm(m, l, conv, threads)) {
        op->use_gemm = true;
        return gemm_conv_create(m, l, &op->gemm, e);
      }
      if (L->groups == 1 && threads <= 1) return conv_blocks_create(m, l, op, e);
      /* No top/bottom padding: strips supply zero rows instead (see .h). */
      size_t gin = (size_t)(is.c / L->groups);
      size_t gout = (size_t)(L->out_channels / L->groups);
      st = xnn_create_convolution2d_nhwc_f32(
          0, (uint32_t)L->pad_right, 0, (uint32_t)L->pad_left,
          (uint32_t)L->kernel_h, (uint32_t)L->kernel_w, (uint32_t)L->stride_h,
          (uint32_t)L->stride_w, 1, 1, (uint32_t)L->groups, gin, gout,
          (size_t)is.c, (size_t)L->out_channels, L->weights, L->bias, lo, hi,
          0, &op->op);
      if (st != xnn_status_success)
        return backend(e, L, l, "convolution create", st);
      return ERR_OK;
    }
    case MODEL_OP_BN:
      /* A 1x1 depthwise convolution is XNNPACK's channel-wise multiply-add
       * (its vmulcaddc kernels): scale as weights, shift as bias. */
      st = xnn_create_convolution2d_nhwc_f32(
          0, 0, 0, 0, 1, 1, 1, 1, 1, 1, (uint32_t)is.c, 1, 1, (size_t)is.c,
          (size_t)is.c, L->weights, L->bias, lo, hi, 0, &op->op);
      if (st != xnn_status_success)
        return backend(e, L, l, "batch-norm create", st);
      return ERR_OK;
    case MODEL_OP_RELU:
      st = xnn_create_clamp_nc_f32((size_t)is.c, (size_t)is.c, (size_t)is.c,
                                   0.0f, hi, 0, &op->op);
      if (st != xnn_status_success) return backend(e, L, l, "clamp create", st);
      return ERR_OK;
    case MODEL_OP_MAXPOOL:
    case MODEL_OP_AVGPOOL:
      /* A window of padding only has no max and no average (ref.c agrees). */
      if (L->pad_top >= L->kernel_h || L->pad_bottom >= L->kernel_h ||
          L->pad_left >= L->kernel_w || L->pad_right >= L->kernel_w)
        return err_set(e, ERR_UNSUPPORTED,
                       "layer %d (%s): pool padding must be smaller than its "
                       "%dx%d kernel",
                       l, L->name, L->kernel_h, L->kernel_w);
      op->plain_pool = conv != XEXEC_CONV_XNNPACK && L->op == MODEL_OP_MAXPOOL &&
                       L->kernel_h == L->stride_h && L->kernel_w == L->stride_w &&
                       !L->pad_top && !L->pad_bottom && !L->pad_left && !L->pad_right;
      return ERR_OK; /* operators per vertical padding, on demand */
    case MODEL_OP_GAP:
      st = xnn_create_global_average_pooling_nwc_f32(
          (size_t)is.c, (size_t)is.c, (size_t)is.c, lo, hi, 0, &op->op);
      if (st != xnn_status_success)
        return backend(e, L, l, "global average pooling create", st);
      return ERR_OK;
    case MODEL_OP_FC:
      st = xnn_create_fully_connected_nc_f32(
          (size_t)is.c, (size_t)L->out_channels, (size_t)is.c,
          (size_t)L->out_channels, L->weights, L->bias, lo, hi, 0, &op->op);
      if (st != xnn_status_success)
        return backend(e, L, l, "fully connected create", st);
      return ERR_OK;
    case MODEL_OP_ADD:
      st = xnn_create_add_nd_f32(lo, hi, 0, &op->op);
      if (st != xnn_status_success) return backend(e, L, l, "add create", st);
      return ERR_OK;
    case MODEL_OP_FE:
    case MODEL_OP_FLATTEN:
      return ERR_OK; /* plain C */
    default:
      return err_set(e, ERR_UNSUPPORTED, "layer %d (%s): operator %d", l,
                     L->name, (int)L->op);
  }
}

size_t xexec_op_scratch_floats(const xexec_op *op) {
  return op->use_gemm ? gemm_conv_scratch_floats(&op->gemm) : 0;
}

void xexec_op_destroy(xexec_op *op) {
  if (!op) return;
  if (op->use_gemm) gemm_conv_destroy(&op->gemm);
  if (op->use_dconv) dconv_destroy(&op->dconv);
  if (op->op) xnn_delete_operator(op->op);
  for (int b = 0; b < op->n_blocks; b++)
    if (op->blocks[b]) xnn_delete_operator(op->blocks[b]);
  free(op->blocks);
  for (int i = 0; i < op->n_variants; i++)
    if (op->variants[i].op) xnn_delete_operator(op->variants[i].op);
  free(op->variants);
  memset(op, 0, sizeof *op);
}

/* XNNPACK has no 1x1 pools; those are a strided copy done in plain C. */
static bool pool_in_c(const model_layer *L) {
  return L->kernel_h == 1 && L->kernel_w == 1;
}

int xexec_op_variant(const model *m, int l, xexec_op *op, int pad_top,
                     int pad_bottom, err *e) {
  const model_layer *L = &m->layers[l];
  if (pool_in_c(L) || op->plain_pool) return -1;
  for (int i = 0; i < op->n_variants; i++)
    if (op->variants[i].pad_top == pad_top &&
        op->variants[i].pad_bottom == pad_bottom)
      return i;
  if (op->n_variants == op->cap_variants) {
    int cap = op->cap_variants ? 2 * op->cap_variants : 4;
    xexec_variant *grown = realloc(op->variants, (size_t)cap * sizeof *grown);
    if (!grown) return err_set(e, ERR_NOMEM, "out of memory for a pool"), -1;
    op->variants = grown;
    op->cap_variants = cap;
  }
  size_t c = (size_t)model_tensor_shape(m, L->inputs[0]).c;
  xexec_variant v = {pad_top, pad_bottom, NULL, 0};
  enum xnn_status st;
  if (L->op == MODEL_OP_MAXPOOL)
    st = xnn_create_max_pooling2d_nhwc_f32(
        (uint32_t)pad_top, (uint32_t)L->pad_right, (uint32_t)pad_bottom,
        (uint32_t)L->pad_left, (uint32_t)L->kernel_h, (uint32_t)L->kernel_w,
        (uint32_t)L->stride_h, (uint32_t)L->stride_w, 1, 1, c, c, c,
        out_min(L), INFINITY, 0, &v.op);
  else /* XNNPACK leaves padding out of the divisor, as model.h wants */
    st = xnn_create_average_pooling2d_nhwc_f32(
        (uint32_t)pad_top, (uint32_t)L->pad_right, (uint32_t)pad_bottom,
        (uint32_t)L->pad_left, (uint32_t)L->kernel_h, (uint32_t)L->kernel_w,
        (uint32_t)L->stride_h, (uint32_t)L->stride_w, c, c, c, out_min(L),
        INFINITY, 0, &v.op);
  if (st != xnn_status_success)
    return backend(e, L, l, "pooling create", st), -1;
  op->variants[op->n_variants] = v;
  return op->n_variants++;
}

/* The XNNPACK operator a step runs and its binding, or NULL for plain C. */
static xnn_operator_t step_op(xexec_op *op, const xexec_step *st,
                              uint64_t **bound) {
  if (st->variant >= 0) {
    *bound = &op->variants[st->variant].bound;
    return op->variants[st->variant].op;
  }
  *bound = &op->bound;
  return op->op;
}

err_code xexec_op_setup(const model *m, xexec_op *op, const xexec_step *st,
                        uint64_t strip_id, const xexec_env *env, err *e) {
  const model_layer *L = &m->layers[st->layer];
  pthreadpool_t pool = env->pool;
  model_shape is = model_tensor_shape(m, L->inputs[0]);
  if (op->n_blocks && st->rows) {
    for (int b = 0; b < op->n_blocks; b++) {
      enum xnn_status s = xnn_setup_convolution2d_nhwc_f32(
          op->blocks[b], 1, (size_t)st->in_rows, (size_t)is.w, st->in[0],
          st->out + (size_t)b * (size_t)op->block_c, pool);
      if (s != xnn_status_success) {
        op->bound = 0;
        return backend(e, L, st->layer, "setup", s);
      }
    }
    op->bound = strip_id;
    return ERR_OK;
  }
  uint64_t *bound;
  xnn_operator_t x = step_op(op, st, &bound);
  if (!x || st->rows == 0) return ERR_OK;
  enum xnn_status s;
  switch (L->op) {
    case MODEL_OP_CONV:
      s = xnn_setup_convolution2d_nhwc_f32(x, 1, (size_t)st->in_rows,
                                           (size_t)is.w, st->in[0], st->out,
                                           pool);
      break;
    case MODEL_OP_BN:
      s = xnn_setup_convolution2d_nhwc_f32(x, 1, (size_t)st->rows,
                                           (size_t)is.w, st->in[0], st->out,
                                           pool);
      break;
    case MODEL_OP_RELU:
      s = xnn_setup_clamp_nc_f32(x, (size_t)st->rows * (size_t)is.w,
                                 st->in[0], st->out, pool);
      break;
    case MODEL_OP_MAXPOOL:
      s = xnn_setup_max_pooling2d_nhwc_f32(x, 1, (size_t)st->in_rows,
                                           (size_t)is.w, st->in[0], st->out,
                                           pool);
      break;
    case MODEL_OP_AVGPOOL:
      s = xnn_setup_average_pooling2d_nhwc_f32(x, 1, (size_t)st->in_rows,
                                               (size_t)is.w, st->in[0],
                                               st->out, pool);
      break;
    case MODEL_OP_GAP:
      s = xnn_setup_global_average_pooling_nwc_f32(
          x, 1, (size_t)is.h * (size_t)is.w, st->in[0], st->out, pool);
      break;
    case MODEL_OP_FC:
      s = xnn_setup_fully_connected_nc_f32(x, 1, st->in[0], st->out, pool);
      break;
    case MODEL_OP_ADD: {
      size_t shape[2] = {(size_t)st->rows * (size_t)is.w, (size_t)is.c};
      s = xnn_setup_add_nd_f32(x, 2, shape, 2, shape, st->in[0], st->in[1],
                               st->out, pool);
      break;
    }
    default:
      return err_set(e, ERR_INTERNAL, "layer %d (%s): no XNNPACK operator",
                     st->layer, L->name);
  }
  if (s != xnn_status_success) {
    *bound = 0;
    return backend(e, L, st->layer, "setup", s);
  }
  *bound = strip_id;
  return ERR_OK;
}

void xexec_channel_sums(const float *in, size_t pixels, int c, double *sums) {
  for (int k = 0; k < c; k++) sums[k] = 0.0;
  for (size_t p = 0; p < pixels; p++) {
    const float *px = in + p * (size_t)c;
    for (int k = 0; k < c; k++) sums[k] += px[k];
  }
}

static void fe_apply(const float *in, size_t pixels, int c, const float *scale,
                     bool relu, float *out) {
  for (size_t p = 0; p < pixels; p++) {
    const float *x = in + p * (size_t)c;
    float *y = out + p * (size_t)c;
    for (int k = 0; k < c; k++) y[k] = x[k] * scale[k];
    if (relu)
      for (int k = 0; k < c; k++) y[k] = y[k] > 0.0f ? y[k] : 0.0f;
  }
}

/* NHWC -> the C,H,W order PyTorch's flatten gives. */
static void flatten(const float *in, model_shape is, bool relu, float *out) {
  size_t hw = (size_t)is.h * (size_t)is.w;
  for (size_t p = 0; p < hw; p++)
    for (int k = 0; k < is.c; k++) {
      float v = in[p * (size_t)is.c + (size_t)k];
      out[(size_t)k * hw + p] = relu && !(v > 0.0f) ? 0.0f : v;
    }
}

/* dst = max(dst, src), elementwise. Blocks of 8 with a fixed trip count:
 * what GCC vectorizes at -O2 (its cheap cost model leaves loops of unknown
 * length scalar). */
static void max_into(float *restrict dst, const float *restrict src, size_t n) {
  size_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int i = 0; i < 8; i++) dst[k + i] = src[k + i] > dst[k + i] ? src[k + i] : dst[k + i];
  for (; k < n; k++) dst[k] = src[k] > dst[k] ? src[k] : dst[k];
}

/* A max pool of disjoint kernel_h x kernel_w windows without padding: each
 * output pixel is the maximum over its window (exact, like XNNPACK's). */
static void maxpool_disjoint(const model_layer *L, model_shape is, const float *in, int rows,
                             float *out) {
  const size_t c = (size_t)is.c, in_row = (size_t)is.w * c;
  for (int y = 0; y < rows; y++)
    for (int x = 0; x < L->out.w; x++) {
      const float *win = in + (size_t)y * L->kernel_h * in_row + (size_t)x * L->kernel_w * c;
      float *dst = out + ((size_t)y * L->out.w + x) * c;
      memcpy(dst, win, c * sizeof *dst);
      for (int dy = 0; dy < L->kernel_h; dy++)
        for (int dx = dy ? 0 : 1; dx < L->kernel_w; dx++)
          max_into(dst, win + (size_t)dy * in_row + (size_t)dx * c, c);
      if (L->relu)
        for (size_t k = 0; k < c; k++) dst[k] = dst[k] > 0.0f ? dst[k] : 0.0f;
    }
}

/* A 1x1 pool, max or average alike: every output picks one input pixel. */
static void pool_1x1(const model_layer *L, model_shape is, const float *in,
                     int rows, float *out) {
  size_t c = (size_t)is.c;
  for (int y = 0; y < rows; y++)
    for (int x = 0; x < L->out.w; x++) {
      const float *src =
          in + ((size_t)y * L->stride_h * is.w + (size_t)x * L->stride_w) * c;
      float *dst = out + ((size_t)y * L->out.w + x) * c;
      for (size_t k = 0; k < c; k++)
        dst[k] = L->relu && !(src[k] > 0.0f) ? 0.0f : src[k];
    }
}

err_code xexec_op_run(const model *m, xexec_op *op, const xexec_step *st,
                      uint64_t strip_id, const float *fe_scale,
                      const xexec_env *env, err *e) {
  const model_layer *L = &m->layers[st->layer];
  model_shape is = model_tensor_shape(m, L->inputs[0]);
  if (st->rows == 0) return ERR_OK;
  switch (L->op) {
    case MODEL_OP_FE:
      fe_apply(st->in[0], (size_t)st->rows * (size_t)is.w, is.c, fe_scale,
               L->relu, st->out);
      return ERR_OK;
    case MODEL_OP_FLATTEN:
      flatten(st->in[0], is, L->relu, st->out);
      return ERR_OK;
    case MODEL_OP_CONV:
      if (op->use_gemm) {
        gemm_conv_run(&op->gemm, st->in[0], st->in_rows, st->row0, st->out,
                      st->rows, env->scratch, env->threads);
        return ERR_OK;
      }
      if (op->use_dconv) {
        dconv_run(&op->dconv, st->in[0], st->out, st->rows, env->pool);
        return ERR_OK;
      }
      if (op->n_blocks) {
        if (op->bound != strip_id) {
          err_code rc = xexec_op_setup(m, op, st, strip_id, env, e);
          if (rc != ERR_OK) return rc;
        }
        for (int b = 0; b < op->n_blocks; b++) {
          enum xnn_status s = xnn_run_operator(op->blocks[b], env->pool);
          if (s != xnn_status_success) return backend(e, L, st->layer, "run", s);
        }
        return ERR_OK;
      }
      break;
    case MODEL_OP_MAXPOOL:
    case MODEL_OP_AVGPOOL:
      if (op->plain_pool) {
        maxpool_disjoint(L, is, st->in[0], st->rows, st->out);
        return ERR_OK;
      }
      if (st->variant < 0) {
        pool_1x1(L, is, st->in[0], st->rows, st->out);
        return ERR_OK;
      }
      break;
    default:
      break;
  }
  uint64_t *bound;
  xnn_operator_t x = step_op(op, st, &bound);
  if (*bound != strip_id) {
    err_code rc = xexec_op_setup(m, op, st, strip_id, env, e);
    if (rc != ERR_OK) return rc;
  }
  enum xnn_status s = xnn_run_operator(x, env->pool);
  if (s != xnn_status_success) return backend(e, L, st->layer, "run", s);
  return ERR_OK;
}

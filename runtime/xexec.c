/* xexec.c — the XNNPACK executor: strip planning and the run loop (contract
 * in xexec.h; the per-layer operators live in xexec_ops.c).
 *
 * How a strip is laid out. model_strip_rows() says which rows of every
 * tensor of the range the strip computes. Each tensor gets one buffer of
 * whole NHWC rows: the rows computed (for the range input: the rows the
 * caller supplies) plus, where a convolution reading it needs rows outside
 * the image, explicit zero rows. Buffers never live at once share memory
 * ("buffer reuse" below). Memory comes from the executor's cache, as the
 * last strip left it (xexec_mem.h), so each buffer's zero rows are cleared
 * each run before it is first written (the range input's before the first
 * step). A consumer
 * reads a window of its producer's buffer by pointer offset: no copies
 * between layers. Pools read only real rows and use the operator variant for
 * the padding they see at this strip's borders. An element-wise layer that
 * is the only reader of its input writes over it in place (a conv-ReLU-BN
 * unit uses one buffer); the range input is never written, so a strip can
 * run again on the same input.
 *
 * What it relies on: model_strip_rows() and model_fe_owned_rows() (model.c)
 * for the row intervals; it re-checks that every window it is given lies in
 * the rows its producer computes and that every output row count follows
 * from its window, and answers ERR_INTERNAL otherwise, before anything runs.
 *
 * Feature enhancement. A run stops in front of each FE layer with the sums
 * over the rows the strip owns (xexec_strip_run) or turns them into a scale
 * itself (xexec_strip_run_local). A strip at a pause keeps its place until
 * xexec_strip_set_fe_scale() and the next xexec_strip_run(); calling
 * xexec_strip_run() while the scale is still missing is an error that keeps
 * the pause; xexec_strip_run_local() always runs the strip from its first
 * layer, abandoning a pause; a failed run starts over next time.
 *
 * Threads: an executor and its strips are used from one thread at a time.
 * Strips must be destroyed before their executor. XNNPACK runs on the
 * executor's pthreadpool, OpenBLAS (GEMM convolutions) on as many threads
 * as `threads`, one at a time, never both at once; the im2col scratch is
 * one per executor, sized for its widest GEMM layer.
 */
#include "runtime/xexec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/fe_moments.h"
#include "runtime/xexec_mem.h"
#include "runtime/xexec_ops.h"

struct xexec {
  const model *m;
  xexec_env env;      /* threads, OpenBLAS's count, the im2col scratch */
  xexec_op *ops;      /* one per layer */
  uint64_t next_id;   /* strip ids, so operators know whom they are bound to */
  xexec_strip *whole; /* xexec_run's strip, made on first use */
  xexec_strip *kept;  /* xexec_strip_kept's */
  double *layer_ms;   /* xexec_set_layer_ms's, or NULL */
  xmem_cache *mem;    /* strips' buffer memory, kept resident between strips */
};

/* One tensor's buffer in a strip: rows [lo, hi), of which `comp` are
 * computed (or supplied) and the others are zeros outside the image.
 * Tensors written in place share one buffer (and lo, hi). */
typedef struct xexec_buf {
  float *base;
  int lo, hi;
  model_rows comp;
  size_t row_floats;
  int root;  /* the slot whose memory it shares (itself when none) */
  int block; /* a root's block of reused memory (-1: its own allocation) */
} xexec_buf;

/* Rows of a reused buffer that must read as zeros, cleared before step
 * `step` (or the chain it heads) runs: see "buffer reuse". */
typedef struct xexec_zero {
  int step;
  float *at;
  size_t floats;
} xexec_zero;

/* Where the run stands with the FE `fe_layer`: no sums out (IDLE), early
 * sums out and no scale yet (SUMS_OUT), at the FE without its scale
 * (WAITING), scale given (READY). */
typedef enum { FE_IDLE, FE_SUMS_OUT, FE_WAITING, FE_READY } fe_state;

struct xexec_strip {
  xexec *x;
  uint64_t id;
  int first, end;
  model_rows out, in;
  xexec_buf *bufs;    /* slot k: the tensor of layer first - 1 + k */
  xexec_step *steps;  /* step i: layer first + i */
  size_t bytes;       /* of all buffers (XNNPACK may read XNN_EXTRA_BYTES
                         past an input: each buffer has them) */
  float **blocks;     /* memory shared by buffers that are never live at once */
  int n_blocks;
  xexec_zero *zeros;  /* in step order */
  int n_zeros;
  int *zero_from;     /* step i's zeros: [zero_from[i], zero_from[i + 1]) */
  int next;           /* the layer the run continues with */
  fe_state fe;
  int fe_layer;       /* the FE the sums out or the scale are for */
  bool early_fe;      /* xexec_strip_set_early_fe */
  int *mom_fe;        /* per slot: the FE whose early sums are its moments, or -1 */
  double *sums;       /* FE: partial sums handed out */
  float *scale;       /* FE: the scale applied */
};

/* ---- executor ------------------------------------------------------------ */

err_code xexec_create(const model *m, int threads, xexec **out, err *e) {
  xexec_conv conv = XEXEC_CONV_AUTO;
  const char *v = getenv(XEXEC_CONV_ENV);
  if (v && *v && strcmp(v, "auto") != 0) {
    if (strcmp(v, "xnnpack") == 0)
      conv = XEXEC_CONV_XNNPACK;
    else if (strcmp(v, "gemm") == 0)
      conv = XEXEC_CONV_GEMM;
    else if (strcmp(v, "direct") == 0)
      conv = XEXEC_CONV_DIRECT;
    else {
      if (out) *out = NULL;
      return err_set(e, ERR_INVALID,
                     "%s=%s: expected auto, xnnpack, gemm or direct", XEXEC_CONV_ENV, v);
    }
  }
  return xexec_create_ex(m, threads, conv, out, e);
}

err_code xexec_create_ex(const model *m, int threads, xexec_conv conv,
                         xexec **out, err *e) {
  if (!out) return err_set(e, ERR_INVALID, "xexec_create without output");
  *out = NULL;
  if (!m || !m->finalized)
    return err_set(e, ERR_INVALID, "executor for a model that is not finalized");
  enum xnn_status st = xnn_initialize(NULL);
  if (st != xnn_status_success)
    return err_set(e, ERR_BACKEND,
                   "XNNPACK did not initialize (status %d): unsupported CPU?",
                   (int)st);
  xexec *x = calloc(1, sizeof *x);
  if (!x) {
    xnn_deinitialize();
    return err_set(e, ERR_NOMEM, "out of memory for an executor");
  }
  x->m = m;
  x->next_id = 1;
  x->ops = calloc((size_t)m->n_layers, sizeof *x->ops);
  x->mem = xmem_create();
  if (!x->ops || !x->mem) {
    xexec_destroy(x);
    return err_set(e, ERR_NOMEM, "out of memory for %d operators", m->n_layers);
  }
  if (conv != XEXEC_CONV_AUTO && conv != XEXEC_CONV_XNNPACK &&
      conv != XEXEC_CONV_GEMM && conv != XEXEC_CONV_DIRECT) {
    xexec_destroy(x);
    return err_set(e, ERR_INVALID, "unknown convolution backend %d", (int)conv);
  }
  x->env.threads = threads > 1 ? threads : 1;
  if (threads > 1) {
    x->env.pool = pthreadpool_create((size_t)threads);
    if (!x->env.pool) {
      xexec_destroy(x);
      return err_set(e, ERR_BACKEND, "could not start %d threads", threads);
    }
  }
  size_t scratch = 0;
  for (int l = 0; l < m->n_layers; l++) {
    err_code rc = xexec_op_create(m, l, conv, threads, &x->ops[l], e);
    if (rc != ERR_OK) {
      xexec_destroy(x);
      return err_wrap(e, "model %s", m->name);
    }
    size_t n = xexec_op_scratch_floats(&x->ops[l]);
    if (n > scratch) scratch = n;
  }
  /* One im2col scratch for all layers: only one layer runs at a time. */
  if (scratch > 0 && !(x->env.scratch = malloc(scratch * sizeof(float)))) {
    xexec_destroy(x);
    return err_set(e, ERR_NOMEM, "out of memory for %zu floats of im2col scratch",
                   scratch);
  }
  *out = x;
  return ERR_OK;
}

void xexec_destroy(xexec *x) {
  if (!x) return;
  xexec_strip_destroy(x->whole);
  xexec_strip_destroy(x->kept);
  if (x->ops)
    for (int l = 0; l < x->m->n_layers; l++) xexec_op_destroy(&x->ops[l]);
  free(x->ops);
  if (x->env.pool) pthreadpool_destroy(x->env.pool);
  free(x->env.scratch);
  xmem_destroy(x->mem);
  free(x);
  xnn_deinitialize();
}

const model *xexec_model(const xexec *x) { return x ? x->m : NULL; }

/* ---- strip planning ------------------------------------------------------- */

static bool rows_empty(model_rows r) { return r.lo >= r.hi; }

static bool rows_within(model_rows inner, model_rows outer) {
  return rows_empty(inner) || (inner.lo >= outer.lo && inner.hi <= outer.hi);
}

static float *buf_row(const xexec_buf *b, int row) {
  return b->base + (size_t)(row - b->lo) * b->row_floats;
}

/* The buffer row window [r.lo, r.hi) lies in, or false. */
static bool buf_holds(const xexec_buf *b, model_rows r) {
  return rows_empty(r) || (r.lo >= b->lo && r.hi <= b->hi);
}

static err_code broken(err *e, int l, const char *what) {
  return err_set(e, ERR_INTERNAL, "strip plan broken at layer %d: %s", l, what);
}

/* Slot of the tensor `input` (a layer index or MODEL_INPUT) in strip s. */
static int slot_of(const xexec_strip *s, int input) {
  return input + 1 - s->first;
}

/* Layers whose output row r depends only on input row r, element by
 * element, so that they may write over their input. */
static bool elementwise(const model_layer *L) {
  return L->op == MODEL_OP_BN || L->op == MODEL_OP_RELU ||
         L->op == MODEL_OP_FE || L->op == MODEL_OP_ADD;
}

/* Sizes each tensor's buffer: computed rows plus the zero rows convolutions
 * read beyond the image. An element-wise layer that is the only reader of a
 * tensor and computes exactly its rows writes over it in place: fewer and
 * hotter buffers (a VGG conv-ReLU-BN unit uses one), and no pass writes
 * into memory that has gone cold. The range input is the caller's and is
 * never written. */
static err_code plan_buffers(xexec_strip *s, const model_rows *rows, err *e) {
  const model *m = s->x->m;
  int n_slots = s->end - s->first + 1;
  int *readers = calloc((size_t)n_slots, sizeof *readers);
  if (!readers) return err_set(e, ERR_NOMEM, "out of memory planning a strip");
  for (int k = 0; k < n_slots; k++) {
    xexec_buf *b = &s->bufs[k];
    b->comp = k == 0 ? s->in : rows[s->first + k - 1];
    if (rows_empty(b->comp)) b->comp.lo = b->comp.hi = 0;
    b->lo = b->comp.lo;
    b->hi = b->comp.hi;
    b->root = k;
    b->block = -1;
    model_shape sh = model_tensor_shape(m, s->first + k - 1);
    b->row_floats = (size_t)sh.w * (size_t)sh.c;
  }
  for (int l = s->first; l < s->end; l++) {
    const model_layer *L = &m->layers[l];
    for (int i = 0; i < L->n_inputs; i++) {
      int k = slot_of(s, L->inputs[i]);
      if (k < 0 || k >= l - s->first + 1) {
        free(readers);
        return broken(e, l, "it reads a tensor outside its range");
      }
      readers[k]++;
      if (L->op != MODEL_OP_CONV || rows_empty(rows[l])) continue;
      model_rows need = model_layer_input_rows(m, l, rows[l]);
      model_rows have = {s->bufs[k].lo, s->bufs[k].hi};
      model_rows held = model_rows_hull(have, need);
      s->bufs[k].lo = held.lo;
      s->bufs[k].hi = held.hi;
    }
  }
  for (int l = s->first; l < s->end; l++) {
    xexec_buf *ob = &s->bufs[l - s->first + 1];
    if (!elementwise(&m->layers[l]) || rows_empty(ob->comp)) continue;
    for (int i = 0; i < m->layers[l].n_inputs; i++) {
      xexec_buf *ib = &s->bufs[slot_of(s, m->layers[l].inputs[i])];
      if (ib == &s->bufs[0] || readers[ib - s->bufs] != 1 ||
          ib->comp.lo != ob->comp.lo || ib->comp.hi != ob->comp.hi ||
          ib->row_floats != ob->row_floats)
        continue;
      ob->root = ib->root;
      break;
    }
  }
  free(readers);
  /* A shared buffer spans what each of its tensors needs; all of them
   * compute the same rows, so the rows around are padding for each. */
  for (int k = 0; k < n_slots; k++) {
    xexec_buf *b = &s->bufs[k], *r = &s->bufs[b->root];
    model_rows rr = {r->lo, r->hi}, bb = {b->lo, b->hi}, held = model_rows_hull(rr, bb);
    r->lo = held.lo;
    r->hi = held.hi;
  }
  for (int k = 0; k < n_slots; k++) {
    xexec_buf *b = &s->bufs[k];
    const xexec_buf *r = &s->bufs[b->root];
    b->lo = r->lo;
    b->hi = r->hi;
    int h = model_tensor_shape(m, s->first + k - 1).h;
    model_rows held = {b->lo, b->hi};
    /* Rows beyond the computed ones must be padding, or a consumer would
     * read zeros where the image has values. */
    if (!rows_within(model_rows_clamp(held, h), b->comp))
      return broken(e, s->first + k - 1, "its buffer needs uncomputed rows");
    if (b->root != k) continue;
    /* Memory for planning, not yet touched (place_buffers gives most of it
     * back); from the executor's cache, which would otherwise pass over to
     * glibc's heap the fresh blocks that cost a page fault per page. */
    size_t bytes = (size_t)(b->hi - b->lo) * b->row_floats * sizeof(float) +
                   XNN_EXTRA_BYTES;
    b->base = xmem_get(s->x->mem, bytes);
    if (!b->base)
      return err_set(e, ERR_NOMEM, "out of memory for a %zu-byte buffer", bytes);
    s->bytes += bytes;
  }
  for (int k = 0; k < n_slots; k++)
    s->bufs[k].base = s->bufs[s->bufs[k].root].base;
  return ERR_OK;
}

/* Window of a convolution or pool: where it reads and how many rows. */
static err_code plan_window(xexec_strip *s, xexec_step *st, model_rows rows,
                            err *e) {
  const model *m = s->x->m;
  int l = st->layer;
  const model_layer *L = &m->layers[l];
  const xexec_buf *ib = &s->bufs[slot_of(s, L->inputs[0])];
  int h = model_tensor_shape(m, L->inputs[0]).h;
  model_rows need = model_layer_input_rows(m, l, rows);
  if (L->op == MODEL_OP_CONV) {
    if (!buf_holds(ib, need)) return broken(e, l, "window outside its buffer");
    st->in[0] = buf_row(ib, need.lo);
    st->in_rows = need.hi - need.lo;
    if (st->in_rows < L->kernel_h ||
        (st->in_rows - L->kernel_h) / L->stride_h + 1 != st->rows)
      return broken(e, l, "window and output rows disagree");
    return ERR_OK;
  }
  model_rows real = model_rows_clamp(need, h);
  int pad_top = real.lo - need.lo, pad_bottom = need.hi - real.hi;
  if (rows_empty(real) || !rows_within(real, ib->comp) ||
      pad_top > L->pad_top || pad_bottom > L->pad_bottom)
    return broken(e, l, "pool window outside its input");
  st->in[0] = buf_row(ib, real.lo);
  st->in_rows = real.hi - real.lo;
  if ((st->in_rows + pad_top + pad_bottom - L->kernel_h) / L->stride_h + 1 !=
      st->rows)
    return broken(e, l, "pool window and output rows disagree");
  st->variant = xexec_op_variant(m, l, &s->x->ops[l], pad_top, pad_bottom, e);
  if (st->variant < 0 && !s->x->ops[l].plain_pool && (L->kernel_h != 1 || L->kernel_w != 1))
    return err_wrap(e, "strip of %s", m->name);
  return ERR_OK;
}

static err_code plan_steps(xexec_strip *s, const model_rows *rows, err *e) {
  const model *m = s->x->m;
  for (int l = s->first; l < s->end; l++) {
    const model_layer *L = &m->layers[l];
    xexec_step *st = &s->steps[l - s->first];
    model_shape is = model_tensor_shape(m, L->inputs[0]);
    const xexec_buf *ob = &s->bufs[l - s->first + 1];
    const xexec_buf *ib = &s->bufs[slot_of(s, L->inputs[0])];
    st->layer = l;
    st->variant = -1;
    st->rows = rows_empty(rows[l]) ? 0 : rows[l].hi - rows[l].lo;
    st->row0 = st->rows ? rows[l].lo : 0;
    st->out = st->rows ? buf_row(ob, rows[l].lo) : NULL;
    if (L->op == MODEL_OP_FE) {
      model_rows owned;
      err_code rc = model_fe_owned_rows(m, s->first, s->end, s->out, l, &owned, e);
      if (rc != ERR_OK) return rc;
      if (!rows_within(owned, ib->comp))
        return broken(e, l, "it owns rows it does not compute");
      for (int k = 0; k <= s->end - s->first; k++)
        if (s->mom_fe[k] == l && !rows_within(owned, s->bufs[k].comp))
          return broken(e, l, "its early sums' tensor lacks rows it owns");
      if (rows_empty(owned)) owned.lo = owned.hi = 0;
      st->owned = owned;
      st->owned_rows = owned.hi - owned.lo;
      st->owned_in = st->owned_rows ? buf_row(ib, owned.lo) : NULL;
    }
    if (st->rows == 0) continue;
    switch (L->op) {
      case MODEL_OP_CONV:
      case MODEL_OP_MAXPOOL:
      case MODEL_OP_AVGPOOL: {
        err_code rc = plan_window(s, st, rows[l], e);
        if (rc != ERR_OK) return rc;
        break;
      }
      case MODEL_OP_GAP:
      case MODEL_OP_FC:
      case MODEL_OP_FLATTEN:
        if (ib->comp.lo != 0 || ib->comp.hi != is.h || rows[l].lo != 0 ||
            rows[l].hi != 1)
          return broken(e, l, "a global layer without its whole input");
        st->in[0] = buf_row(ib, 0);
        break;
      default: /* row-wise: BN, RELU, FE, ADD */
        for (int i = 0; i < L->n_inputs; i++) {
          const xexec_buf *b = &s->bufs[slot_of(s, L->inputs[i])];
          if (!rows_within(rows[l], b->comp))
            return broken(e, l, "it reads rows its input does not compute");
          st->in[i] = buf_row(b, rows[l].lo);
        }
        break;
    }
  }
  return ERR_OK;
}

/* ---- row chunking ---------------------------------------------------------
 *
 * A wide tensor between two 1x1 convolutions (a compact unit's C_out
 * channels at full resolution: 10 MB at 200x200x64), or between a
 * convolution and its max pool, does not stay in cache from the layer that
 * writes it to the one that reads it, and both become bound by memory. A
 * chain of steps in which each reads exactly the rows the step before it
 * computes — a direct-kernel convolution or an FE's scaling, then 1x1
 * stride-1 direct-kernel convolutions and plain-C max pools of disjoint
 * windows — therefore runs a few rows at a time through the whole chain,
 * so the rows in between are still in L2 when they are read. A tensor
 * inside the chain that only the next step reads never reaches its
 * full-size buffer at all: each chunk of it goes to a small buffer of one
 * chunk's rows (xexec_step.chain_out), so the wide tensor costs no memory
 * traffic (its full-size buffer is allocated but its pages are never
 * touched). Every value is computed by the same code in the same order as
 * without chunks (dconv.h), so results do not change by a bit. */

/* Bytes a chunk touches (its rows of all the chain's tensors and the
 * chain's weights), aimed at a core's L2 (512 KB here) with room to spare. */
enum { CHAIN_CHUNK_BYTES = 384 << 10, CHAIN_MIN_ROWS = 2 };

static bool chain_head(const xexec_op *op, const model_layer *L) {
  return L->op == MODEL_OP_FE || (L->op == MODEL_OP_CONV && op->use_dconv);
}

/* Whether step `next` can follow step `prev` in a chain: its output rows
 * per row of `prev`'s in *ratio (1, or a pool's 1 / kernel). */
static bool chain_link(const model *m, const xexec_op *op, const xexec_step *prev,
                       const xexec_step *next, int *ratio) {
  const model_layer *L = &m->layers[next->layer];
  if (L->n_inputs != 1 || L->inputs[0] != prev->layer || next->rows == 0) return false;
  if (op->plain_pool) {
    *ratio = L->kernel_h;
    return prev->rows == next->rows * L->kernel_h && prev->row0 == next->row0 * L->kernel_h &&
           next->in_rows == prev->rows;
  }
  *ratio = 1;
  return L->op == MODEL_OP_CONV && op->use_dconv && L->kernel_h == 1 && L->kernel_w == 1 &&
         L->stride_h == 1 && L->stride_w == 1 && next->rows == prev->rows &&
         next->row0 == prev->row0 && next->in_rows == next->rows;
}

static size_t row_bytes(const model *m, int tensor) {
  model_shape sh = model_tensor_shape(m, tensor);
  return (size_t)sh.w * (size_t)sh.c * sizeof(float);
}

/* Readers of layer l's output within the strip, plus one if the strip
 * hands it out (the range's last layer). */
static int strip_readers(const xexec_strip *s, int l) {
  const model *m = s->x->m;
  int r = l == s->end - 1;
  for (int j = l + 1; j < s->end; j++)
    for (int i = 0; i < m->layers[j].n_inputs; i++) r += m->layers[j].inputs[i] == l;
  return r;
}

/* What a chunk of the chain of steps st[0..k) touches: *weights, every
 * step's, and *per_row bytes per output row of the last step, its rows of
 * every tensor (scaled to each step's rows) and of the head's input.
 * Fills each step's chain_mult. */
static void chain_cost(const model *m, xexec_step *st, int k, const int *ratio,
                       size_t *weights, size_t *per_row) {
  st[k - 1].chain_mult = 1;
  for (int j = k - 2; j >= 0; j--) st[j].chain_mult = st[j + 1].chain_mult * ratio[j + 1];
  *weights = 0;
  *per_row = st[0].chain_mult * row_bytes(m, m->layers[st[0].layer].inputs[0]);
  for (int j = 0; j < k; j++) {
    *weights += m->layers[st[j].layer].n_weights * sizeof(float);
    *per_row += st[j].chain_mult * row_bytes(m, st[j].layer);
  }
}

static err_code plan_chains(xexec_strip *s, err *e) {
  const model *m = s->x->m;
  int n = s->end - s->first;
  for (int i = 0; i < n;) {
    xexec_step *head = &s->steps[i];
    int k = 1, ratio[64];
    if (head->rows > 0 && chain_head(&s->x->ops[head->layer], &m->layers[head->layer]))
      /* a tensor whose moments go out early ends its chain: the run pauses there */
      while (i + k < n && k < 64 && s->mom_fe[i + k] < 0 &&
             chain_link(m, &s->x->ops[s->steps[i + k].layer], &s->steps[i + k - 1],
                        &s->steps[i + k], &ratio[k]))
        k++;
    /* A chain whose weights and smallest chunk do not fit the budget would
     * evict its own weights between chunks: shorter, or none. */
    size_t weights = 0, per_row = 0;
    for (; k > 1; k--) {
      chain_cost(m, head, k, ratio, &weights, &per_row);
      if (weights + CHAIN_MIN_ROWS * per_row <= CHAIN_CHUNK_BYTES) break;
    }
    if (k > 1) {
      int r = (int)((CHAIN_CHUNK_BYTES - weights) / per_row);
      int last_rows = s->steps[i + k - 1].rows;
      head->chain = k;
      head->chain_rows = r < last_rows ? r : last_rows;
      for (int j = 0; j + 1 < k; j++) {
        xexec_step *st = &s->steps[i + j];
        if (strip_readers(s, st->layer) != 1) continue;
        size_t bytes = (size_t)head->chain_rows * st->chain_mult * row_bytes(m, st->layer) +
                       XNN_EXTRA_BYTES;
        st->chain_out = xmem_get(s->x->mem, bytes);
        if (!st->chain_out)
          return err_set(e, ERR_NOMEM, "out of memory for a %zu-byte chunk buffer", bytes);
        memset(st->chain_out, 0, bytes);
        s->bytes += bytes;
      }
    }
    i += k;
  }
  return ERR_OK;
}

/* ---- buffer reuse ------------------------------------------------------------
 *
 * A tensor's buffer is live from the step that first writes it to the last
 * step that reads it; a chain counts as one step from its head to its last
 * link, since its steps interleave chunk by chunk. Buffers never live at
 * once share a block of memory (the smallest free block that fits, else the
 * largest free one, grown), so that a layer mostly writes memory that a
 * layer just before it used, still in cache, and a strip holds a few
 * tensors' worth instead of all of them. Kept apart: the range input (the
 * caller writes it), the output (read after the run) and the tensors only a
 * chain's chunk buffers stand for (never touched). A shared buffer's zero
 * rows may hold another tensor's values from the last run, so they are
 * cleared before the step that first writes the buffer, every run: a few
 * rows per tensor. Planned after the chains (they change lives), so the
 * steps are planned again on the new addresses. */

/* Steps [*lo, *hi] that run together with step i: its chain, or itself. */
static void step_span(const xexec_strip *s, int i, int *lo, int *hi) {
  *lo = *hi = i;
  for (int h = 0; h < s->end - s->first; h++)
    if (s->steps[h].chain > 1 && h <= i && i < h + s->steps[h].chain) {
      *lo = h;
      *hi = h + s->steps[h].chain - 1;
      return;
    }
}

/* Whether every tensor of root r's group lives in chunk buffers, so that
 * its own allocation is never touched. */
static bool lives_in_chunks(const xexec_strip *s, int r) {
  int n = s->end - s->first;
  for (int k = 1; k <= n; k++)
    if (s->bufs[k].root == r && !s->steps[k - 1].chain_out) return false;
  return true;
}

static size_t buffer_bytes(const xexec_buf *b) {
  return (size_t)(b->hi - b->lo) * b->row_floats * sizeof(float) + XNN_EXTRA_BYTES;
}

/* Records the rows of root r's buffer outside its computed ones. */
static void note_zero_rows(xexec_strip *s, int r, int step) {
  const xexec_buf *b = &s->bufs[r];
  model_rows pad[2] = {{b->lo, b->comp.hi > b->comp.lo ? b->comp.lo : b->hi},
                       {b->comp.hi > b->comp.lo ? b->comp.hi : b->hi, b->hi}};
  for (int i = 0; i < 2; i++)
    if (pad[i].hi > pad[i].lo)
      s->zeros[s->n_zeros++] = (xexec_zero){
          step, buf_row(b, pad[i].lo), (size_t)(pad[i].hi - pad[i].lo) * b->row_floats};
}

static err_code place_buffers(xexec_strip *s, err *e) {
  const model *m = s->x->m;
  const int n = s->end - s->first;
  int *def = malloc((size_t)(n + 1) * sizeof *def), *last = malloc((size_t)(n + 1) * sizeof *last);
  int *free_after = malloc((size_t)(n + 1) * sizeof *free_after);
  size_t *cap = calloc((size_t)(n + 1), sizeof *cap);
  s->blocks = calloc((size_t)(n + 1), sizeof *s->blocks);
  s->zeros = calloc((size_t)(2 * n + 2), sizeof *s->zeros);
  s->zero_from = calloc((size_t)(n + 1), sizeof *s->zero_from);
  err_code rc = ERR_OK;
  if (!def || !last || !free_after || !cap || !s->blocks || !s->zeros ||
      !s->zero_from) {
    rc = err_set(e, ERR_NOMEM, "out of memory planning a strip");
    goto done;
  }
  for (int k = 0; k <= n; k++) def[k] = n, last[k] = -1;
  for (int i = 0; i < n; i++) {
    int lo, hi;
    step_span(s, i, &lo, &hi);
    int r = s->bufs[i + 1].root;
    if (lo < def[r]) def[r] = lo;
    if (hi > last[r]) last[r] = hi;
    const model_layer *L = &m->layers[s->first + i];
    for (int j = 0; j < L->n_inputs; j++) {
      int q = s->bufs[slot_of(s, L->inputs[j])].root;
      if (hi > last[q]) last[q] = hi;
    }
  }
  /* Roots in slot order are in order of first write (a group's root is its
   * earliest tensor). The range input and the output group get a block of
   * their own; a group living in chunk buffers keeps its untouched
   * allocation. */
  const int output_root = s->bufs[n].root;
  for (int r = 0; r <= n; r++) {
    xexec_buf *b = &s->bufs[r];
    if (b->root != r) continue;
    size_t bytes = buffer_bytes(b);
    if (r == 0 || r == output_root) {
      b->block = s->n_blocks++;
      cap[b->block] = bytes;
      free_after[b->block] = n + 1; /* never shared */
      continue;
    }
    if (lives_in_chunks(s, r)) continue;
    int pick = -1;
    for (int k = 0; k < s->n_blocks; k++) {
      if (free_after[k] >= def[r]) continue;
      bool fits = cap[k] >= bytes, pick_fits = pick >= 0 && cap[pick] >= bytes;
      if (pick < 0 || (fits && (!pick_fits || cap[k] < cap[pick])) ||
          (!fits && !pick_fits && cap[k] > cap[pick]))
        pick = k;
    }
    if (pick < 0) pick = s->n_blocks++;
    if (cap[pick] < bytes) cap[pick] = bytes;
    free_after[pick] = last[r];
    b->block = pick;
  }
  /* The planning memory of placed roots goes back first, so that their
   * blocks can be made of it. */
  for (int r = 0; r <= n; r++) {
    xexec_buf *b = &s->bufs[r];
    if (b->root != r || b->block < 0) continue;
    xmem_put(s->x->mem, b->base);
    b->base = NULL;
    s->bytes -= buffer_bytes(b);
  }
  for (int k = 0; k < s->n_blocks; k++) {
    s->blocks[k] = xmem_get(s->x->mem, cap[k]);
    if (!s->blocks[k]) {
      rc = err_set(e, ERR_NOMEM, "out of memory for a %zu-byte buffer", cap[k]);
      goto done;
    }
  }
  /* Blocks come from the cache as their last strip left them, so every
   * placed root's zero rows are cleared each run before its first step (the
   * range input's before the first); a root's first step (its chain's
   * head) never decreases with the slot, so they are noted in step order. */
  for (int r = 0; r <= n; r++) {
    xexec_buf *b = &s->bufs[r];
    if (b->root != r || b->block < 0) continue;
    b->base = s->blocks[b->block];
    note_zero_rows(s, r, r == 0 ? 0 : def[r]);
  }
  for (int k = 0; k < s->n_blocks; k++) s->bytes += cap[k];
  for (int k = 0; k <= n; k++) s->bufs[k].base = s->bufs[s->bufs[k].root].base;
  int z = 0;
  for (int i = 0; i <= n; i++) {
    s->zero_from[i] = z;
    while (z < s->n_zeros && s->zeros[z].step == i) z++;
  }
  if (z != s->n_zeros) rc = err_set(e, ERR_INTERNAL, "strip: zero rows out of step order");
done:
  free(def);
  free(last);
  free(free_after);
  free(cap);
  return rc;
}

static void clear_zero_rows(xexec_strip *s, int step) {
  for (int i = s->zero_from[step]; i < s->zero_from[step + 1]; i++)
    memset(s->zeros[i].at, 0, s->zeros[i].floats * sizeof(float));
}

static double elapsed_ms(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-6;
}

/* Runs one step, adding its time to the executor's layer times if asked. */
static err_code run_step(xexec_strip *s, const xexec_step *st, err *e) {
  xexec *x = s->x;
  struct timespec t0;
  if (x->layer_ms) clock_gettime(CLOCK_MONOTONIC, &t0);
  err_code rc = xexec_op_run(x->m, &x->ops[st->layer], st, s->id, s->scale, &x->env, e);
  if (x->layer_ms) x->layer_ms[st->layer] += elapsed_ms(&t0);
  return rc;
}

/* The steps of the chain that starts at `head`, chunk by chunk: o and n
 * count output rows of the chain's last step, chain_mult scales them to
 * each step's. */
static err_code run_chain(xexec_strip *s, const xexec_step *head, err *e) {
  const model *m = s->x->m;
  const int last_rows = head[head->chain - 1].rows;
  for (int o = 0; o < last_rows; o += head->chain_rows) {
    int n = last_rows - o < head->chain_rows ? last_rows - o : head->chain_rows;
    for (int j = 0; j < head->chain; j++) {
      xexec_step c = head[j];
      const model_layer *L = &m->layers[c.layer];
      size_t in_row = row_bytes(m, L->inputs[0]) / sizeof(float);
      size_t out_row = row_bytes(m, c.layer) / sizeof(float);
      int off = o * c.chain_mult, rows = n * c.chain_mult;
      if (j > 0) { /* a link reads exactly the rows the step before computed */
        const xexec_step *prev = &head[j - 1];
        c.in[0] = prev->chain_out ? prev->chain_out
                                  : c.in[0] + (size_t)o * prev->chain_mult * in_row;
        c.in_rows = n * prev->chain_mult;
      } else if (L->op == MODEL_OP_CONV) {
        c.in[0] += (size_t)off * (size_t)L->stride_h * in_row;
        c.in_rows = (rows - 1) * L->stride_h + L->kernel_h;
      } else {
        c.in[0] += (size_t)off * in_row;
      }
      c.out = c.chain_out ? c.chain_out : c.out + (size_t)off * out_row;
      c.row0 += off;
      c.rows = rows;
      err_code rc = run_step(s, &c, e);
      if (rc != ERR_OK) return rc;
    }
  }
  return ERR_OK;
}

/* Doubles of the largest FE sums the range hands out, plain or early, and
 * floats of its widest scale (0 when it has no FE). */
static void fe_sizes(const model *m, int first, int end, size_t *sums, size_t *scale) {
  *sums = *scale = 0;
  for (int l = first; l < end; l++)
    if (m->layers[l].op == MODEL_OP_FE) {
      size_t c = (size_t)model_tensor_shape(m, m->layers[l].inputs[0]).c;
      size_t k = fe_moments_size(m, l, fe_moments_chain(m, l, first));
      if (c > *scale) *scale = c;
      if (c > *sums) *sums = c;
      if (k > *sums) *sums = k;
    }
}

/* Which tensor of the strip each FE's early sums are the moments of
 * (mom_fe, by slot): the start of its chain within the range. */
static void plan_moments(xexec_strip *s) {
  const model *m = s->x->m;
  for (int l = s->first; l < s->end; l++) {
    int chain = m->layers[l].op == MODEL_OP_FE ? fe_moments_chain(m, l, s->first) : 0;
    if (chain > 0) s->mom_fe[fe_moments_source(l, chain) - s->first + 1] = l;
  }
}

/* moments: plan early FE sums (mom_fe); the whole model's strip, which
 * only ever runs locally, does not, so its chains stay whole. */
static err_code strip_create(xexec *x, int first, int end, model_rows out, bool moments,
                             xexec_strip **strip, err *e) {
  if (!strip) return err_set(e, ERR_INVALID, "xexec_strip_create without output");
  *strip = NULL;
  if (!x) return err_set(e, ERR_INVALID, "strip of no executor");
  const model *m = x->m;
  err_code rc = model_check_range(m, first, end, e);
  if (rc != ERR_OK) return rc;
  if (end <= first) return err_set(e, ERR_INTERNAL, "empty range passed its check"); /* for gcc */
  model_rows *rows = calloc((size_t)m->n_layers, sizeof *rows);
  xexec_strip *s = calloc(1, sizeof *s);
  if (!rows || !s) {
    free(rows);
    free(s);
    return err_set(e, ERR_NOMEM, "out of memory planning a strip");
  }
  s->x = x;
  s->id = x->next_id++;
  s->first = s->next = first;
  s->end = end;
  s->out = out;
  rc = model_strip_rows(m, first, end, out, rows, &s->in, e);
  if (rc != ERR_OK) goto fail;
  size_t n_sums, n_scale;
  fe_sizes(m, first, end, &n_sums, &n_scale);
  s->bufs = calloc((size_t)(end - first + 1), sizeof *s->bufs);
  s->steps = calloc((size_t)(end - first), sizeof *s->steps);
  s->mom_fe = calloc((size_t)(end - first + 1), sizeof *s->mom_fe);
  s->sums = calloc(n_sums + 1, sizeof *s->sums);
  s->scale = calloc(n_scale + 1, sizeof *s->scale);
  if (!s->bufs || !s->steps || !s->mom_fe || !s->sums || !s->scale) {
    rc = err_set(e, ERR_NOMEM, "out of memory planning a strip");
    goto fail;
  }
  for (int k = 0; k <= end - first; k++) s->mom_fe[k] = -1;
  if (moments) plan_moments(s);
  if ((rc = plan_buffers(s, rows, e)) != ERR_OK ||
      (rc = plan_steps(s, rows, e)) != ERR_OK)
    goto fail;
  if ((rc = plan_chains(s, e)) != ERR_OK || (rc = place_buffers(s, e)) != ERR_OK ||
      (rc = plan_steps(s, rows, e)) != ERR_OK)
    goto fail;
  /* Binding every operator now surfaces XNNPACK's objections here rather
   * than in the middle of a run. */
  for (int i = 0; i < end - first; i++) {
    rc = xexec_op_setup(m, &x->ops[first + i], &s->steps[i], s->id, &x->env, e);
    if (rc != ERR_OK) goto fail;
  }
  free(rows);
  *strip = s;
  return ERR_OK;
fail:
  free(rows);
  xexec_strip_destroy(s);
  return rc;
}

err_code xexec_strip_create(xexec *x, int first, int end, model_rows out,
                            xexec_strip **strip, err *e) {
  return strip_create(x, first, end, out, true, strip, e);
}

void xexec_strip_destroy(xexec_strip *s) {
  if (!s) return;
  if (s->bufs)
    for (int k = 0; k <= s->end - s->first; k++)
      if (s->bufs[k].root == k && s->bufs[k].block < 0) xmem_put(s->x->mem, s->bufs[k].base);
  free(s->bufs);
  for (int b = 0; b < s->n_blocks; b++) xmem_put(s->x->mem, s->blocks[b]);
  free(s->blocks);
  free(s->zeros);
  free(s->zero_from);
  if (s->steps)
    for (int i = 0; i < s->end - s->first; i++) xmem_put(s->x->mem, s->steps[i].chain_out);
  free(s->steps);
  free(s->mom_fe);
  free(s->sums);
  free(s->scale);
  free(s);
}

model_rows xexec_strip_in_rows(const xexec_strip *s) {
  model_rows none = {0, 0};
  return s ? s->in : none;
}

model_rows xexec_strip_out_rows(const xexec_strip *s) {
  model_rows none = {0, 0};
  return s ? s->out : none;
}

float *xexec_strip_input(xexec_strip *s) {
  if (!s) return NULL;
  /* a strip may read no input row at all (a window of padding only) */
  return rows_empty(s->in) ? s->bufs[0].base : buf_row(&s->bufs[0], s->in.lo);
}

const float *xexec_strip_output(const xexec_strip *s) {
  if (!s) return NULL;
  const xexec_buf *b = &s->bufs[s->end - s->first];
  return buf_row(b, s->out.lo);
}

int xexec_strip_chained(const xexec_strip *s) {
  int n = 0;
  for (int i = 0; s && i < s->end - s->first; i++) n += s->steps[i].chain;
  return n;
}

size_t xexec_strip_bytes(const xexec_strip *s) { return s ? s->bytes : 0; }

/* ---- running -------------------------------------------------------------- */

/* Scale of FE step st from the strip's own sums (the tile-local variant):
 * over the rows it owns, or the rows it reads when it owns none. */
static err_code local_scale(xexec_strip *s, const xexec_step *st, err *e) {
  const model *m = s->x->m;
  model_shape is = model_tensor_shape(m, m->layers[st->layer].inputs[0]);
  if (st->rows == 0) return ERR_OK; /* nothing to scale */
  int rows = st->owned_rows;
  if (rows == 0) {
    rows = st->rows;
    xexec_channel_sums(st->in[0], (size_t)rows * (size_t)is.w, is.c, s->sums);
  }
  return model_fe_scale(m, st->layer, s->sums, (double)rows * is.w, s->scale, e);
}

/* Pauses the run with FE layer fe's early sums: the moments of slot k's
 * tensor over the rows the strip owns of fe's input. */
static void hand_out_moments(xexec_strip *s, int k, bool *paused, xexec_fe_sums *fe) {
  const model *m = s->x->m;
  int f = s->mom_fe[k], chain = fe_moments_chain(m, f, s->first);
  const xexec_step *fst = &s->steps[f - s->first];
  const xexec_buf *b = &s->bufs[k];
  model_shape sh = model_tensor_shape(m, fe_moments_source(f, chain));
  fe_moments_of(fst->owned_rows ? buf_row(b, fst->owned.lo) : NULL, fst->owned, sh, s->sums);
  s->fe = FE_SUMS_OUT;
  s->fe_layer = f;
  *fe = (xexec_fe_sums){.layer = f,
                        .channels = model_tensor_shape(m, f - 1).c,
                        .chain = chain,
                        .n_sums = fe_moments_size(m, f, chain),
                        .owned = fst->owned,
                        .sums = s->sums,
                        .needs_scale = false};
  *paused = true;
}

static err_code strip_run(xexec_strip *s, bool local, bool *paused,
                          xexec_fe_sums *fe, err *e) {
  const model *m = s->x->m;
  bool early = s->early_fe && !local;
  *paused = false;
  if (early && s->next == s->first && s->fe == FE_IDLE && s->mom_fe[0] >= 0) {
    hand_out_moments(s, 0, paused, fe);
    return ERR_OK;
  }
  while (s->next < s->end) {
    int l = s->next;
    const model_layer *L = &m->layers[l];
    xexec_step *st = &s->steps[l - s->first];
    err_code rc = ERR_OK;
    if (L->op == MODEL_OP_FE && s->fe != FE_READY) {
      model_shape is = model_tensor_shape(m, L->inputs[0]);
      *fe = (xexec_fe_sums){.layer = l, .channels = is.c, .owned = st->owned, .needs_scale = true};
      if (s->fe == FE_SUMS_OUT) { /* the early sums are out; the scale is not in */
        s->fe = FE_WAITING;
        *paused = true;
        return ERR_OK;
      }
      xexec_channel_sums(st->owned_in, (size_t)st->owned_rows * (size_t)is.w,
                         is.c, s->sums);
      if (!local) {
        s->fe = FE_WAITING;
        s->fe_layer = l;
        fe->n_sums = (size_t)is.c;
        fe->sums = s->sums;
        *paused = true;
        return ERR_OK;
      }
      rc = local_scale(s, st, e);
    }
    if (rc == ERR_OK) {
      clear_zero_rows(s, l - s->first);
      rc = st->chain > 1 ? run_chain(s, st, e) : run_step(s, st, e);
    }
    if (L->op == MODEL_OP_FE) s->fe = FE_IDLE;
    if (rc != ERR_OK) {
      s->next = s->first;
      s->fe = FE_IDLE;
      return err_wrap(e, "%s layer %d", m->name, l);
    }
    s->next += st->chain > 1 ? st->chain : 1;
    int k = s->next - s->first; /* the slot the step (or chain) wrote last */
    if (early && s->next < s->end && s->mom_fe[k] >= 0) {
      hand_out_moments(s, k, paused, fe);
      return ERR_OK;
    }
  }
  s->next = s->first;
  return ERR_OK;
}

err_code xexec_strip_run(xexec_strip *s, bool *paused, xexec_fe_sums *fe,
                         err *e) {
  if (!s || !paused || !fe)
    return err_set(e, ERR_INVALID, "xexec_strip_run needs a strip, paused and fe");
  if (s->fe == FE_WAITING)
    return err_set(e, ERR_INVALID,
                   "strip is paused at feature enhancement layer %d: give it "
                   "the scale first",
                   s->next);
  return strip_run(s, false, paused, fe, e);
}

void xexec_strip_set_early_fe(xexec_strip *s, bool on) {
  if (s) s->early_fe = on;
}

err_code xexec_strip_set_fe_scale(xexec_strip *s, const float *scale, err *e) {
  if (!s || !scale)
    return err_set(e, ERR_INVALID, "xexec_strip_set_fe_scale needs a strip and a scale");
  if (s->fe != FE_WAITING && s->fe != FE_SUMS_OUT)
    return err_set(e, ERR_INVALID,
                   "strip has no feature enhancement sums out: no scale is due");
  const model *m = s->x->m;
  int c = model_tensor_shape(m, m->layers[s->fe_layer].inputs[0]).c;
  memcpy(s->scale, scale, (size_t)c * sizeof *scale);
  s->fe = FE_READY;
  return ERR_OK;
}

err_code xexec_strip_run_local(xexec_strip *s, err *e) {
  if (!s) return err_set(e, ERR_INVALID, "xexec_strip_run_local without a strip");
  bool paused;
  xexec_fe_sums fe;
  s->next = s->first;
  s->fe = FE_IDLE;
  return strip_run(s, true, &paused, &fe, e);
}

err_code xexec_strip_kept(xexec *x, int first, int end, model_rows out, xexec_strip **strip,
                          err *e) {
  if (!strip) return err_set(e, ERR_INVALID, "xexec_strip_kept without output");
  *strip = NULL;
  if (!x) return err_set(e, ERR_INVALID, "strip of no executor");
  xexec_strip *k = x->kept;
  if (k && k->first == first && k->end == end && k->out.lo == out.lo && k->out.hi == out.hi) {
    *strip = k;
    return ERR_OK;
  }
  xexec_strip_destroy(k);
  x->kept = NULL;
  err_code rc = xexec_strip_create(x, first, end, out, &x->kept, e);
  *strip = x->kept;
  return rc;
}

void xexec_set_layer_ms(xexec *x, double *ms) {
  if (x) x->layer_ms = ms;
}

err_code xexec_run(xexec *x, const float *input, float *output, err *e) {
  if (!x || !input || !output)
    return err_set(e, ERR_INVALID, "xexec_run needs an executor, input and output");
  const model *m = x->m;
  const model_layer *last = &m->layers[m->n_layers - 1];
  if (!x->whole) {
    model_rows all = {0, last->out.h};
    err_code rc = strip_create(x, 0, m->n_layers, all, false, &x->whole, e);
    if (rc != ERR_OK) return rc;
  }
  /* Only the rows the strip reads: a strided first window may never reach
   * the last rows, and the buffer does not hold them. */
  model_rows in = x->whole->in;
  size_t row = (size_t)m->input.w * (size_t)m->input.c;
  memcpy(xexec_strip_input(x->whole), input + (size_t)in.lo * row,
         (size_t)(in.hi - in.lo) * row * sizeof(float));
  err_code rc = xexec_strip_run_local(x->whole, e);
  if (rc != ERR_OK) return rc;
  memcpy(output, xexec_strip_output(x->whole),
         model_shape_elems(last->out) * sizeof(float));
  return ERR_OK;
}

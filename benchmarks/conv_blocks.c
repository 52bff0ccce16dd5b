/* conv_blocks.c — why xexec splits an XNNPACK convolution with large weights
 * into operators over blocks of output channels (XEXEC_CONV_BLOCK_BYTES,
 * runtime/xexec_ops.h).
 *
 *   bazel run -c opt //benchmarks:conv_blocks -- [--widths 25,12]
 *       [--channels 512] [--blocks 512,64,16] [--rows 1,2,3,5] [--runs 5] [--json]
 *
 * A 3x3 stride-1 convolution of C -> C channels over a W-wide map (VGG's
 * 25x25 and 12x12 layers at 200x200), run by XNNPACK as a strip of R output
 * rows (what a device of a partitioned request computes; R = W is the whole
 * map), either as one operator (block = C) or as C / block operators that
 * each compute `block` output channels. Per point: thread CPU milliseconds
 * per GFLOP, best of --runs, "cold" right after 64 MB of other memory was
 * written (as after a request's other layers) and "hot" right after a run. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xnnpack.h>

#include "benchmarks/benchutil.h"
#include "cli/flags.h"
#include "runtime/stats.h"

enum { MAX_VALUES = 16, EVICT_BYTES = 64 << 20, KERNEL = 3 };

typedef struct opts {
  double widths[MAX_VALUES], blocks[MAX_VALUES], rows[MAX_VALUES];
  int n_widths, n_blocks, n_rows, channels, runs;
  bool json;
} opts;

static void usage(FILE *f) {
  fprintf(f,
          "usage: conv_blocks [flags]\n"
          "  A 3x3 C->C convolution on XNNPACK, run as a strip of R rows of a W-wide map, as\n"
          "  one operator or as operators over blocks of output channels: ms per GFLOP.\n"
          "  --widths LIST    map widths (default 25,12)\n"
          "  --channels C     input and output channels (default 512)\n"
          "  --blocks LIST    output channels per operator (default 512,64,16)\n"
          "  --rows LIST      strip heights; the whole map is always added (default 1,2,3,5)\n"
          "  --runs N         best of N (default 5)\n"
          "  --json           JSON lines instead of the table\n");
}

static int parse(int argc, char **argv, opts *o) {
  err e = {0};
  *o = (opts){.channels = 512, .runs = 5};
  bench_parse_doubles("25,12", 1, 1024, o->widths, MAX_VALUES, &o->n_widths, &e);
  bench_parse_doubles("512,64,16", 1, 4096, o->blocks, MAX_VALUES, &o->n_blocks, &e);
  bench_parse_doubles("1,2,3,5", 1, 1024, o->rows, MAX_VALUES - 1, &o->n_rows, &e);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    bool ok = v != NULL;
    if (strcmp(a, "--json") == 0) {
      o->json = true;
      continue;
    } else if (strcmp(a, "--widths") == 0) {
      ok = ok && bench_parse_doubles(v, 1, 1024, o->widths, MAX_VALUES, &o->n_widths, &e) == ERR_OK;
    } else if (strcmp(a, "--blocks") == 0) {
      ok = ok && bench_parse_doubles(v, 1, 4096, o->blocks, MAX_VALUES, &o->n_blocks, &e) == ERR_OK;
    } else if (strcmp(a, "--rows") == 0) {
      ok = ok && bench_parse_doubles(v, 1, 1024, o->rows, MAX_VALUES - 1, &o->n_rows, &e) == ERR_OK;
    } else if (strcmp(a, "--channels") == 0) {
      ok = ok && flags_parse_int(v, 1, 4096, &o->channels);
    } else if (strcmp(a, "--runs") == 0) {
      ok = ok && flags_parse_int(v, 1, 1000, &o->runs);
    } else {
      ok = false;
    }
    if (!ok) return bench_bad_flag("conv_blocks", a, &e, usage);
    i++;
  }
  return 0;
}

/* Writes every cache line of `junk`, so that the weights are not cached. */
static void evict(volatile char *junk) {
  for (size_t i = 0; i < EVICT_BYTES; i += 64) junk[i]++;
}

/* One block size: creates the operators in ops, returns how many; 0 (none
 * left behind) when XNNPACK refuses one. */
static int create_ops(int c, int block, const float *w, const float *bias, xnn_operator_t *ops) {
  int n = 0;
  for (int c0 = 0; c0 < c; c0 += block) {
    int oc = c - c0 < block ? c - c0 : block;
    if (xnn_create_convolution2d_nhwc_f32(0, 1, 0, 1, KERNEL, KERNEL, 1, 1, 1, 1, 1, (size_t)c,
                                          (size_t)oc, (size_t)c, (size_t)c,
                                          w + (size_t)c0 * KERNEL * KERNEL * c, bias + c0,
                                          -INFINITY, INFINITY, 0, &ops[n]) != xnn_status_success) {
      while (n > 0) xnn_delete_operator(ops[--n]);
      return 0;
    }
    n++;
  }
  return n;
}

static int run_width(const opts *o, int width, volatile char *junk) {
  const int c = o->channels;
  const size_t nw = (size_t)c * KERNEL * KERNEL * c;
  float *w = malloc(nw * sizeof *w), *bias = calloc((size_t)c, sizeof *bias);
  /* the strip's input: its rows plus one zero row above and below */
  float *in = calloc((size_t)(width + 2) * width * c + 16, sizeof *in);
  float *out = calloc((size_t)width * width * c, sizeof *out);
  xnn_operator_t *ops = calloc((size_t)c, sizeof *ops);
  if (!w || !bias || !in || !out || !ops) {
    fprintf(stderr, "conv_blocks: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < nw; i++) w[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
  for (size_t i = (size_t)width * c; i < (size_t)(width + 1) * width * c; i++)
    in[i] = (float)(i % 97) / 97.0f;
  double rows[MAX_VALUES];
  int n_rows = 0;
  for (int r = 0; r < o->n_rows; r++)
    if ((int)o->rows[r] < width) rows[n_rows++] = o->rows[r];
  rows[n_rows++] = width;
  int rc = 0;
  for (int b = 0; b < o->n_blocks && !rc; b++) {
    int block = (int)o->blocks[b] < c ? (int)o->blocks[b] : c;
    int n = create_ops(c, block, w, bias, ops);
    if (!n) {
      fprintf(stderr, "conv_blocks: XNNPACK refused a %d-channel block\n", block);
      rc = 1;
      break;
    }
    for (int r = 0; r < n_rows; r++) {
      int h = (int)rows[r];
      for (int k = 0; k < n; k++)
        xnn_setup_convolution2d_nhwc_f32(ops[k], 1, (size_t)h + 2, (size_t)width, in,
                                         out + (size_t)k * block, NULL);
      double gflop = 2.0 * h * width * (double)c * KERNEL * KERNEL * c / 1e9;
      double cold = 1e30, hot = 1e30;
      for (int run = 0; run < o->runs; run++) {
        evict(junk);
        double t0 = stats_thread_cpu_ms();
        for (int k = 0; k < n; k++) xnn_run_operator(ops[k], NULL);
        double t1 = stats_thread_cpu_ms();
        for (int k = 0; k < n; k++) xnn_run_operator(ops[k], NULL);
        double t2 = stats_thread_cpu_ms();
        cold = t1 - t0 < cold ? t1 - t0 : cold;
        hot = t2 - t1 < hot ? t2 - t1 : hot;
      }
      if (o->json)
        printf("{\"bench\":\"conv_blocks\",\"width\":%d,\"channels\":%d,\"block\":%d,"
               "\"operators\":%d,\"rows\":%d,\"gflop\":%.4f,\"cold_ms_per_gflop\":%.2f,"
               "\"hot_ms_per_gflop\":%.2f}\n",
               width, c, block, n, h, gflop, cold / gflop, hot / gflop);
      else
        printf("%5d %8d %6d %9d %5d %9.1f %9.1f\n", width, c, block, n, h, cold / gflop,
               hot / gflop);
    }
    for (int k = 0; k < n; k++) xnn_delete_operator(ops[k]);
  }
  free(ops);
  free(out);
  free(in);
  free(bias);
  free(w);
  return rc;
}

int main(int argc, char **argv) {
  opts o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc;
  if (xnn_initialize(NULL) != xnn_status_success) {
    fprintf(stderr, "conv_blocks: XNNPACK does not run on this CPU\n");
    return 1;
  }
  char *junk = calloc(EVICT_BYTES, 1);
  if (!junk) {
    fprintf(stderr, "conv_blocks: out of memory\n");
    return 1;
  }
  if (!o.json)
    printf("3x3 convolution on XNNPACK, one thread, best of %d: thread CPU ms per GFLOP\n"
           "width channels  block operators  rows      cold       hot\n",
           o.runs);
  for (int i = 0; i < o.n_widths && !rc; i++) rc = run_width(&o, (int)o.widths[i], junk);
  free(junk);
  return rc;
}

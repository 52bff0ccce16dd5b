/* cmd_run.c — `edgedi run MODEL.onnx --input IN`: any supported ONNX model
 * on this device; `edgedi export ZOO_NAME OUT.onnx`: a zoo model as ONNX.
 *
 * run is how a user checks EdgeDI against another runtime: the same file
 * and the same input bytes go to both, and the outputs are compared. So
 * the input is taken in the layout the ONNX file declares (raw
 * little-endian float32, [1,C,H,W] NCHW), or as an image file decoded like
 * a camera frame (runtime/preprocess.h: x / 255, gray replicated to the
 * channels), and the outputs are written back in the ONNX layout. The
 * model is imported (onnx_import.h), fused and prepared once on the XNNPACK
 * executor, then run --runs times; the median time is reported.
 *
 * export writes what run (or ONNX Runtime, or PyTorch) reads, with the
 * zoo's options and seeded weights.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "cli/cli.h"
#include "cli/imagefile.h"
#include "cli/files.h"
#include "runtime/err.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/onnx_export.h"
#include "runtime/onnx_import.h"
#include "runtime/preprocess.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"
#include "runtime/stats.h"

enum {
  RUN_MAX_RUNS = 100000,
  RUN_MAX_THREADS = 256,
  RUN_MAX_INPUT_BYTES = 1 << 30, /* a raw tensor or an image file */
  RUN_WARMUP_RUNS = 1, /* first run pays for page faults and caches */
};

static void run_usage(FILE *f) {
  fprintf(f,
          "usage: edgedi run MODEL.onnx --input IN [--output OUT] [flags]\n"
          "  Runs an ONNX model on this device (XNNPACK) and prints the top class\n"
          "  and the time. IN is raw little-endian float32 in the layout the file\n"
          "  declares ([1,C,H,W], NCHW: C*H*W*4 bytes), or an image file (PGM/PPM,\n"
          "  PNG, BMP: samples / 255, gray replicated to the model's channels).\n"
          "  --output OUT   write the raw float32 outputs, in the ONNX layout\n"
          "  --threads N    XNNPACK threads (default 1)\n"
          "  --runs N       time N runs and report the median (default 1)\n");
}

static void export_usage(FILE *f) {
  fprintf(f,
          "usage: edgedi export ZOO_NAME OUT.onnx [flags]\n"
          "  Writes a zoo model (seeded weights) as an ONNX file (opset %d) that\n"
          "  `edgedi run`, ONNX Runtime or PyTorch can run.\n"
          "  --height H --width W --channels C   input (default 200 x 200 x 3)\n"
          "  --ratio R      compact models' ratio (default: the model's)\n"
          "  --classes K    classes (default 6)\n"
          "  --seed S       weight seed (default 1)\n"
          "  --fused        export the fused graph (BN folded, ReLUs fused)\n",
          ONNX_EXPORT_OPSET);
}

typedef struct run_opts {
  const char *model, *input, *output;
  int threads, runs;
} run_opts;

static int run_parse(int argc, char **argv, run_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (cli_is_help(a)) {
      run_usage(stdout);
      return -1;
    }
    if (strcmp(a, "--input") == 0 && v) o->input = v, i++;
    else if (strcmp(a, "--output") == 0 && v) o->output = v, i++;
    else if (strcmp(a, "--threads") == 0 && v) {
      if (!flags_parse_int(v, 1, RUN_MAX_THREADS, &o->threads)) {
        fprintf(stderr, "edgedi run: --threads needs 1 to %d, not '%s'\n",
                RUN_MAX_THREADS, v);
        return CLI_EXIT_USAGE;
      }
      i++;
    } else if (strcmp(a, "--runs") == 0 && v) {
      if (!flags_parse_int(v, 1, RUN_MAX_RUNS, &o->runs)) {
        fprintf(stderr, "edgedi run: --runs needs 1 to %d, not '%s'\n",
                RUN_MAX_RUNS, v);
        return CLI_EXIT_USAGE;
      }
      i++;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "edgedi run: unknown flag or missing value: %s\n", a);
      run_usage(stderr);
      return CLI_EXIT_USAGE;
    } else if (!o->model) {
      o->model = a;
    } else {
      fprintf(stderr, "edgedi run: unexpected argument '%s'\n", a);
      return CLI_EXIT_USAGE;
    }
  }
  if (!o->model || !o->input) {
    run_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  return 0;
}

/* The model input (NHWC) from IN: raw NCHW float32 of exactly the input's
 * size, else an image file. */
static err_code load_input(const char *path, model_shape in, float *nhwc,
                           err *e) {
  size_t want = model_shape_elems(in) * sizeof(float), len = 0;
  uint8_t *raw = NULL;
  err_code rc = files_read_all(path, RUN_MAX_INPUT_BYTES, &raw, &len, e);
  if (rc != ERR_OK) return rc;
  if (len == want) {
    float *nchw = malloc(want);
    if (!nchw) {
      free(raw);
      return err_set(e, ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < want / 4; i++) {
      uint32_t bits = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 |
                      (uint32_t)raw[4 * i + 2] << 16 |
                      (uint32_t)raw[4 * i + 3] << 24;
      memcpy(&nchw[i], &bits, 4);
      if (!isfinite(nchw[i])) {
        size_t plane = (size_t)in.h * (size_t)in.w;
        rc = err_set(e, ERR_INVALID,
                     "'%s': sample at channel %zu, row %zu, column %zu is %s, not a finite "
                     "number", path, i / plane, i % plane / (size_t)in.w, i % (size_t)in.w,
                     isnan(nchw[i]) ? "NaN" : "infinite");
        free(nchw);
        free(raw);
        return rc;
      }
    }
    onnx_nchw_to_nhwc(nchw, in, nhwc);
    free(nchw);
    free(raw);
    return ERR_OK;
  }
  free(raw);
  imagefile im;
  err ie;
  if (imagefile_load(path, &im, &ie) != ERR_OK)
    return err_set(e, ERR_SHAPE,
                   "'%s' holds %zu bytes: neither the model's raw input "
                   "(1x%dx%dx%d float32 = %zu bytes) nor an image (%s)",
                   path, len, in.c, in.h, in.w, want, ie.msg);
  preprocess_image img = preprocess_whole(PREPROCESS_U8, im.data, im.height,
                                          im.width, im.channels);
  rc = preprocess_check(&img, in, e);
  if (rc == ERR_OK) rc = preprocess_rows(&img, in, (model_rows){0, in.h}, nhwc, e);
  imagefile_free(&im);
  if (rc != ERR_OK) err_wrap(e, "image '%s'", path);
  return rc;
}

typedef struct run_result {
  int layers;
  double gflop, median_ms;
  size_t n_out;
  float *out; /* ONNX layout */
  onnx_io io;
  model_shape in;
} run_result;

/* Everything but the printing. */
static err_code run_model(const run_opts *o, run_result *r, err *e) {
  model *m = NULL, *f = NULL;
  xexec *x = NULL;
  float *in = NULL, *out = NULL;
  double *ms = NULL;
  err_code rc = onnx_import_file(o->model, &m, &r->io, e);
  if (rc == ERR_OK) rc = fuse_model(m, &f, e);
  if (rc != ERR_OK) goto done;
  r->layers = f->n_layers;
  r->gflop = model_flops(f) / 1e9;
  r->in = f->input;
  model_shape os = f->layers[f->n_layers - 1].out;
  r->n_out = model_shape_elems(os);
  in = malloc(model_shape_elems(f->input) * sizeof *in);
  out = malloc(r->n_out * sizeof *out);
  r->out = malloc(r->n_out * sizeof *r->out);
  ms = malloc((size_t)o->runs * sizeof *ms);
  if (!in || !out || !r->out || !ms) {
    rc = err_set(e, ERR_NOMEM, "out of memory");
    goto done;
  }
  rc = load_input(o->input, f->input, in, e);
  if (rc == ERR_OK) rc = xexec_create(f, o->threads, &x, e);
  for (int i = 0; rc == ERR_OK && i < RUN_WARMUP_RUNS + o->runs; i++) {
    double t0 = cli_now_ms();
    rc = xexec_run(x, in, out, e);
    if (i >= RUN_WARMUP_RUNS) ms[i - RUN_WARMUP_RUNS] = cli_now_ms() - t0;
  }
  if (rc != ERR_OK) goto done;
  r->median_ms = stats_median(ms, o->runs);
  if (r->io.output_nchw) onnx_nhwc_to_nchw(out, os, r->out);
  else memcpy(r->out, out, r->n_out * sizeof *out);
  if (o->output) rc = files_write_f32(o->output, r->out, r->n_out, e);
done:
  xexec_destroy(x);
  model_destroy(f);
  model_destroy(m);
  free(in);
  free(out);
  free(ms);
  return rc;
}

int cmd_run(int argc, char **argv) {
  run_opts o = {.threads = 1, .runs = 1};
  int rc = run_parse(argc, argv, &o);
  if (rc) return rc < 0 ? CLI_EXIT_OK : rc;
  run_result r;
  memset(&r, 0, sizeof r);
  err e = {0};
  if (run_model(&o, &r, &e) != ERR_OK) {
    fprintf(stderr, "edgedi run: %s\n", e.msg);
    free(r.out);
    return CLI_EXIT_FAIL;
  }
  size_t top = 0;
  for (size_t i = 1; i < r.n_out; i++)
    if (r.out[i] > r.out[top]) top = i;
  char name[32];
  printf("model   %s: %d layers fused, %.3f GFLOP, input %s [1,%d,%d,%d]\n",
         o.model, r.layers, r.gflop, r.io.input_name, r.in.c, r.in.h, r.in.w);
  printf("output  %s: %zu values%s%s\n", r.io.output_name, r.n_out,
         o.output ? " written to " : "", o.output ? o.output : "");
  printf("top     %zu (%s), %.6g\n", top,
         cli_class_name((int)top, (int)r.n_out, name, sizeof name), r.out[top]);
  printf("time    %.3f ms (median of %d run%s, %d thread%s)\n", r.median_ms,
         o.runs, o.runs == 1 ? "" : "s", o.threads, o.threads == 1 ? "" : "s");
  free(r.out);
  return CLI_EXIT_OK;
}

/* ---- export ----------------------------------------------------------------- */

int cmd_export(int argc, char **argv) {
  zoo_options zo = zoo_defaults();
  const char *name = NULL, *path = NULL;
  bool fused = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int *target = NULL, lo = 1, hi = ZOO_MAX_INPUT_SIDE_PX;
    if (cli_is_help(a)) {
      export_usage(stdout);
      return CLI_EXIT_OK;
    }
    if (strcmp(a, "--height") == 0) target = &zo.in_h;
    else if (strcmp(a, "--width") == 0) target = &zo.in_w;
    else if (strcmp(a, "--channels") == 0) target = &zo.in_c, hi = ZOO_MAX_INPUT_CHANNELS;
    else if (strcmp(a, "--ratio") == 0) target = &zo.ratio, lo = 0, hi = 1 << 16;
    else if (strcmp(a, "--classes") == 0) target = &zo.classes, hi = ZOO_MAX_CLASSES;
    else if (strcmp(a, "--seed") == 0) {
      int seed;
      if (!v || !flags_parse_int(v, 0, 1 << 30, &seed)) {
        fprintf(stderr, "edgedi export: --seed needs 0 to %d\n", 1 << 30);
        return CLI_EXIT_USAGE;
      }
      zo.seed = (uint64_t)seed;
      i++;
      continue;
    } else if (strcmp(a, "--fused") == 0) {
      fused = true;
      continue;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "edgedi export: unknown flag: %s\n", a);
      export_usage(stderr);
      return CLI_EXIT_USAGE;
    } else if (!name) {
      name = a;
      continue;
    } else if (!path) {
      path = a;
      continue;
    } else {
      fprintf(stderr, "edgedi export: unexpected argument '%s'\n", a);
      return CLI_EXIT_USAGE;
    }
    if (!v || !flags_parse_int(v, lo, hi, target)) {
      fprintf(stderr, "edgedi export: %s needs %d to %d\n", a, lo, hi);
      return CLI_EXIT_USAGE;
    }
    i++;
  }
  if (!name || !path) {
    export_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  model *m = NULL, *f = NULL;
  err e = {0};
  err_code rc = zoo_build(name, &zo, &m, &e);
  if (rc == ERR_OK && fused) rc = fuse_model(m, &f, &e);
  const model *out = f ? f : m;
  if (rc == ERR_OK) rc = onnx_export_file(out, path, &e);
  if (rc != ERR_OK) {
    fprintf(stderr, "edgedi export: %s\n", e.msg);
  } else {
    printf("wrote %s: %s%s, input [1,%d,%d,%d], %d layers, %zu parameters, "
           "%.3f GFLOP\n",
           path, name, fused ? " (fused)" : "", zo.in_c, zo.in_h, zo.in_w,
           out->n_layers, model_param_count(out), model_flops(out) / 1e9);
  }
  model_destroy(f);
  model_destroy(m);
  return rc == ERR_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

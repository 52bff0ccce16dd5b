/* vs_ort.c — EdgeDI's XNNPACK executor against ONNX Runtime's CPU build on
 * the same ONNX file, the same input and the same thread count.
 *
 * Per model: the zoo model is exported with EdgeDI's exporter (unfused, as
 * a user would hand it to either runtime), then EdgeDI imports, fuses and
 * prepares it (what `edgedi run` does) and run_ort.js (ortproc.h) loads it
 * in ONNX Runtime. Both run once untimed, then --rounds rounds alternate
 * between them, ABBA order (A first in even rounds) so that a drift of the
 * machine's load falls on both alike; each round times K runs of each (K:
 * --runs-original or --runs-compact). Reported: the median of all timed
 * runs of each, their spread (min, max), the ratio EdgeDI/ORT, and the
 * largest difference of the outputs relative to ORT's largest |logit|.
 * EdgeDI's time is wall time around xexec_run; ORT's is node's wall time
 * around session.run (the same boundary: tensors in, tensors out).
 *
 * Originals are measured at the thread counts in --threads-originals only
 * (default 1: vgg16 takes about a second a run), compact models at every
 * count in --threads. Figures are this machine's (no emulation).
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/flags.h"
#include "benchmarks/benchutil.h"
#include "benchmarks/ortproc.h"
#include "runtime/err.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/onnx_export.h"
#include "runtime/onnx_import.h"
#include "runtime/stats.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"

enum {
  DEFAULT_ROUNDS = 5,
  DEFAULT_RUNS_ORIGINAL = 1, /* per round: 5 timed runs of vgg16 each side */
  DEFAULT_RUNS_COMPACT = 4,  /* per round: 20 */
  MAX_THREADS = 64,
  MAX_ROUNDS = 1000,
};
static const uint64_t INPUT_SEED = 11;
#define EXACT_REL_TOLERANCE 1e-4

typedef struct opts {
  bench_list models;
  int threads[BENCH_MAX_LIST], n_threads;
  int threads_orig[BENCH_MAX_LIST], n_threads_orig;
  int rounds, runs_original, runs_compact;
  bool json;
  const char *dir, *node, *ort_script;
} opts;

typedef struct result {
  const char *model;
  int threads, runs;
  double gflop;
  double edgedi_ms, edgedi_min, edgedi_max;
  double ort_ms, ort_min, ort_max;
  double rel_diff;
} result;

static void usage(FILE *f) {
  fprintf(f,
          "usage: vs_ort [flags]\n"
          "  EdgeDI (XNNPACK) against ONNX Runtime (CPU, onnxruntime-node) on the same\n"
          "  ONNX export of each zoo model, same input, same threads, alternating rounds.\n"
          "  --models LIST            zoo models (default: all eight)\n"
          "  --threads LIST           thread counts for compact models (default 1,2)\n"
          "  --threads-originals LIST thread counts for the originals (default 1)\n"
          "  --rounds N               A/B rounds (default %d)\n"
          "  --runs-original K        timed runs per round and side, originals (default %d)\n"
          "  --runs-compact K         the same, compact models (default %d)\n"
          "  --dir DIR                ONNX files, inputs, outputs, node's log\n"
          "                           (default: a new /tmp/edgedi-vs-ort-*)\n"
          "  --node PATH              node program (default: node on $PATH)\n"
          "  --ort-script PATH        run_ort.js (default: found in the runfiles)\n"
          "  --json                   one JSON object per line instead of the table\n",
          DEFAULT_ROUNDS, DEFAULT_RUNS_ORIGINAL, DEFAULT_RUNS_COMPACT);
}

static bool parse_ints(const char *s, int *v, int *n) {
  bench_list l;
  err e;
  if (bench_parse_list(s, &l, &e) != ERR_OK) return false;
  for (int i = 0; i < l.n; i++)
    if (!flags_parse_int(l.item[i], 1, MAX_THREADS, &v[i])) return false;
  *n = l.n;
  return true;
}

static int parse(int argc, char **argv, opts *o) {
  bench_all_models(&o->models);
  o->threads[0] = 1, o->threads[1] = 2, o->n_threads = 2;
  o->threads_orig[0] = 1, o->n_threads_orig = 1;
  o->rounds = DEFAULT_ROUNDS;
  o->runs_original = DEFAULT_RUNS_ORIGINAL;
  o->runs_compact = DEFAULT_RUNS_COMPACT;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bench_flag common = bench_common_flag(a, &o->json, usage);
    if (common == BENCH_FLAG_HELP) return -1;
    if (common == BENCH_FLAG_TAKEN) continue;
    bool ok = v != NULL;
    err e = {0};
    if (!ok) {
    } else if (strcmp(a, "--models") == 0) {
      ok = bench_parse_list(v, &o->models, &e) == ERR_OK &&
           bench_check_models(&o->models, &e) == ERR_OK;
    } else if (strcmp(a, "--threads") == 0) {
      ok = parse_ints(v, o->threads, &o->n_threads);
    } else if (strcmp(a, "--threads-originals") == 0) {
      ok = parse_ints(v, o->threads_orig, &o->n_threads_orig);
    } else if (strcmp(a, "--rounds") == 0) {
      ok = flags_parse_int(v, 1, MAX_ROUNDS, &o->rounds);
    } else if (strcmp(a, "--runs-original") == 0) {
      ok = flags_parse_int(v, 1, ORTPROC_MAX_RUNS_PER_COMMAND, &o->runs_original);
    } else if (strcmp(a, "--runs-compact") == 0) {
      ok = flags_parse_int(v, 1, ORTPROC_MAX_RUNS_PER_COMMAND, &o->runs_compact);
    } else if (strcmp(a, "--dir") == 0) {
      o->dir = v;
    } else if (strcmp(a, "--node") == 0) {
      o->node = v;
    } else if (strcmp(a, "--ort-script") == 0) {
      o->ort_script = v;
    } else {
      ok = false;
    }
    if (!ok) return bench_bad_flag("vs_ort", a, &e, usage);
    i++;
  }
  return 0;
}

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* An input like a normalized image, in [0, 1); both runtimes read the file. */
static err_code write_input(const char *path, float *nchw, size_t n, err *e) {
  uint64_t s = INPUT_SEED;
  for (size_t i = 0; i < n; i++) nchw[i] = (float)((double)(splitmix64(&s) >> 11) * 0x1.0p-53);
  FILE *f = fopen(path, "wb");
  if (!f) return err_set(e, ERR_IO, "cannot create %s", path);
  bool ok = fwrite(nchw, sizeof *nchw, n, f) == n; /* x86: little-endian already */
  ok = fclose(f) == 0 && ok;
  return ok ? ERR_OK : err_set(e, ERR_IO, "cannot write %s", path);
}

static err_code read_floats(const char *path, float *v, size_t n, err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) return err_set(e, ERR_IO, "cannot open %s", path);
  size_t got = fread(v, sizeof *v, n, f);
  bool extra = fgetc(f) != EOF;
  fclose(f);
  if (got != n || extra)
    return err_set(e, ERR_SHAPE, "%s: not %zu float32 values (ONNX Runtime's output)", path, n);
  return ERR_OK;
}

/* The ONNX file of one zoo model, exported once per program run. */
static err_code export_model(const char *name, const char *path, err *e) {
  if (access(path, R_OK) == 0) return ERR_OK;
  zoo_options zo = zoo_defaults();
  model *m = NULL;
  err_code rc = zoo_build(name, &zo, &m, e);
  if (rc == ERR_OK) rc = onnx_export_file(m, path, e);
  model_destroy(m);
  return rc;
}

/* One model at one thread count. */
static err_code measure(const opts *o, const char *dir, const char *script, const char *name,
                        int threads, result *r, err *e) {
  char onnx[1024], in_path[1024], out_path[1024], log_path[1024];
  snprintf(onnx, sizeof onnx, "%s/%s.onnx", dir, name);
  snprintf(in_path, sizeof in_path, "%s/%s.input.f32", dir, name);
  snprintf(out_path, sizeof out_path, "%s/%s.ort-t%d.output.f32", dir, name, threads);
  snprintf(log_path, sizeof log_path, "%s/node.log", dir);
  int k = bench_is_compact(name) ? o->runs_compact : o->runs_original;
  int total = k * o->rounds;
  *r = (result){.model = name, .threads = threads, .runs = total};

  model *m = NULL, *f = NULL;
  onnx_io io;
  xexec *x = NULL;
  ortproc *ort = NULL;
  float *nchw = NULL, *nhwc = NULL, *out = NULL, *out_onnx = NULL, *ort_out = NULL;
  double *ta = calloc((size_t)total, sizeof *ta), *tb = calloc((size_t)total, sizeof *tb);
  err_code rc = ta && tb ? export_model(name, onnx, e) : err_set(e, ERR_NOMEM, "out of memory");
  if (rc == ERR_OK) rc = onnx_import_file(onnx, &m, &io, e);
  if (rc == ERR_OK) rc = fuse_model(m, &f, e);
  if (rc != ERR_OK) goto done;
  r->gflop = model_flops(f) / 1e9;
  size_t n_in = model_shape_elems(f->input);
  model_shape os = f->layers[f->n_layers - 1].out;
  size_t n_out = model_shape_elems(os);
  nchw = malloc(n_in * sizeof *nchw);
  nhwc = malloc(n_in * sizeof *nhwc);
  out = malloc(n_out * sizeof *out);
  out_onnx = malloc(n_out * sizeof *out_onnx);
  ort_out = malloc(n_out * sizeof *ort_out);
  if (!nchw || !nhwc || !out || !out_onnx || !ort_out) {
    rc = err_set(e, ERR_NOMEM, "out of memory");
    goto done;
  }
  rc = write_input(in_path, nchw, n_in, e);
  if (rc != ERR_OK) goto done;
  onnx_nchw_to_nhwc(nchw, f->input, nhwc);
  rc = xexec_create(f, threads, &x, e);
  if (rc == ERR_OK) rc = xexec_run(x, nhwc, out, e); /* warm-up, as ORT's first run */
  if (rc != ERR_OK) goto done;

  ortproc_spec spec = {.node = o->node, .script = script, .model = onnx, .input = in_path,
                       .shape = {io.input_dims[0], io.input_dims[1], io.input_dims[2],
                                 io.input_dims[3]},
                       .threads = threads, .output = out_path, .work_dir = dir,
                       .log_path = log_path};
  rc = ortproc_start(&spec, &ort, e);
  if (rc == ERR_OK) rc = read_floats(out_path, ort_out, n_out, e);
  if (rc != ERR_OK) goto done;
  if (io.output_nchw) onnx_nhwc_to_nchw(out, os, out_onnx);
  else memcpy(out_onnx, out, n_out * sizeof *out);
  r->rel_diff = stats_max_rel_diff(out_onnx, ort_out, n_out);

  for (int round = 0; round < o->rounds && rc == ERR_OK; round++) {
    for (int side = 0; side < 2 && rc == ERR_OK; side++) {
      bool edgedi = (side == 0) == (round % 2 == 0);
      double *t = (edgedi ? ta : tb) + (size_t)round * k;
      if (!edgedi) {
        rc = ortproc_run(ort, k, t, e);
        continue;
      }
      for (int i = 0; i < k && rc == ERR_OK; i++) {
        double t0 = stats_now_ms();
        rc = xexec_run(x, nhwc, out, e);
        t[i] = stats_now_ms() - t0;
      }
    }
  }
  if (rc == ERR_OK) {
    bench_min_max(ta, total, &r->edgedi_min, &r->edgedi_max);
    bench_min_max(tb, total, &r->ort_min, &r->ort_max);
    r->edgedi_ms = stats_median(ta, total);
    r->ort_ms = stats_median(tb, total);
  }
done:
  ortproc_destroy(ort);
  xexec_destroy(x);
  model_destroy(f);
  model_destroy(m);
  free(nchw);
  free(nhwc);
  free(out);
  free(out_onnx);
  free(ort_out);
  free(ta);
  free(tb);
  if (rc != ERR_OK) err_wrap(e, "%s, %d thread%s", name, threads, threads == 1 ? "" : "s");
  return rc;
}

static void print_header(void) {
  printf("%-10s %3s %5s %8s %11s %19s %11s %19s %7s %9s %6s\n", "model", "thr", "runs", "GFLOP",
         "edgedi_ms", "(min..max)", "ort_ms", "(min..max)", "ratio", "rel_diff", "exact");
}

static void print_row(const result *r, bool json) {
  double ratio = r->edgedi_ms / r->ort_ms;
  bool exact = r->rel_diff <= EXACT_REL_TOLERANCE;
  if (json) {
    printf("{\"bench\":\"vs_ort\",\"model\":\"%s\",\"threads\":%d,\"runs\":%d,\"gflop\":%.4f,"
           "\"edgedi_ms\":%.3f,\"edgedi_min_ms\":%.3f,\"edgedi_max_ms\":%.3f,"
           "\"ort_ms\":%.3f,\"ort_min_ms\":%.3f,\"ort_max_ms\":%.3f,\"ratio\":%.4f,"
           "\"max_rel_diff\":%.3e,\"exact\":%s}\n",
           r->model, r->threads, r->runs, r->gflop, r->edgedi_ms, r->edgedi_min, r->edgedi_max,
           r->ort_ms, r->ort_min, r->ort_max, ratio, r->rel_diff, exact ? "true" : "false");
  } else {
    char sa[32], sb[32];
    snprintf(sa, sizeof sa, "(%.1f..%.1f)", r->edgedi_min, r->edgedi_max);
    snprintf(sb, sizeof sb, "(%.1f..%.1f)", r->ort_min, r->ort_max);
    printf("%-10s %3d %5d %8.3f %11.2f %19s %11.2f %19s %6.3fx %9.1e %6s\n", r->model,
           r->threads, r->runs, r->gflop, r->edgedi_ms, sa, r->ort_ms, sb, ratio, r->rel_diff,
           exact ? "yes" : "NO");
  }
  fflush(stdout);
}

static bool has(const int *v, int n, int x) {
  for (int i = 0; i < n; i++)
    if (v[i] == x) return true;
  return false;
}

int main(int argc, char **argv) {
  opts o = {0};
  int prc = parse(argc, argv, &o);
  if (prc) return prc < 0 ? 0 : prc;
  err e = {0};
  char dir[512], script[1024];
  if (bench_work_dir(o.dir, "vs-ort", dir, sizeof dir, &e) != ERR_OK ||
      ortproc_find_script(o.ort_script, script, sizeof script, &e) != ERR_OK) {
    fprintf(stderr, "vs_ort: %s\n", e.msg);
    return 1;
  }
  /* Every thread count, in order: all models at one count, then the next. */
  int counts[2 * BENCH_MAX_LIST], n_counts = 0;
  for (int i = 0; i < o.n_threads; i++)
    if (!has(counts, n_counts, o.threads[i])) counts[n_counts++] = o.threads[i];
  for (int i = 0; i < o.n_threads_orig; i++)
    if (!has(counts, n_counts, o.threads_orig[i])) counts[n_counts++] = o.threads_orig[i];
  if (!o.json) {
    printf("vs_ort: EdgeDI (XNNPACK) vs ONNX Runtime %s (CPU) on EdgeDI's ONNX exports; "
           "%d A/B rounds; files in %s\n", "(onnxruntime-node)", o.rounds, dir);
    print_header();
  }
  int status = 0;
  for (int c = 0; c < n_counts; c++) {
    for (int i = 0; i < o.models.n; i++) {
      const char *name = o.models.item[i];
      bool compact = bench_is_compact(name);
      if (compact ? !has(o.threads, o.n_threads, counts[c])
                  : !has(o.threads_orig, o.n_threads_orig, counts[c]))
        continue;
      result r;
      if (measure(&o, dir, script, name, counts[c], &r, &e) != ERR_OK) {
        fprintf(stderr, "vs_ort: %s\n", e.msg);
        status = 1;
        continue;
      }
      print_row(&r, o.json);
      if (r.rel_diff > EXACT_REL_TOLERANCE) status = 1;
    }
  }
  return status;
}

/* single_device.c — how fast one device runs each zoo model whole, and how
 * close that is to what its core can do.
 *
 * For every selected model it builds the model (zoo), fuses it (fuse.h) and
 * times the XNNPACK executor on the fused model: the median of --runs runs
 * after --warmup untimed ones. It runs the reference executor on the
 * original, unfused model, both to hold the executor's answer to it and to
 * show what XNNPACK buys. As the core's practical peak it times one large
 * 3x3 convolution through the same executor, right before each model, so
 * that pct_of_peak compares like with like even when other work shares the
 * machine. Peak memory is the VmHWM of a fresh process (this program
 * re-executed with the hidden --rss-probe MODEL), reported back through a
 * pipe: ru_maxrss of a child would not do, since Linux carries the maximum
 * across exec and a forked child starts out with every page this process
 * holds.
 *
 * Output: an aligned table, or with --json one JSON object per model per
 * line. Figures are this machine's, not an emulated device's.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/flags.h"
#include "runtime/err.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/ref.h"
#include "runtime/stats.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"

enum {
  EXIT_USAGE = 2,
  MAX_MODELS = 32,
  MAX_THREADS = 256,
  MAX_RUNS = 100000,
  DEFAULT_RUNS = 20,
  DEFAULT_WARMUP_RUNS = 3,
  DEFAULT_REF_RUNS = 1,
  /* The peak probe: a 3x3 convolution large enough that XNNPACK's GEMM
   * micro-kernels dominate (2.95 GFLOP), small enough to time quickly. */
  PEAK_CHANNELS = 256,
  PEAK_SIZE = 50,
};

static const uint64_t INPUT_SEED = 7;
static const char *const RSS_PROBE_FLAG = "--rss-probe";

typedef struct bench_opts {
  int threads;
  int runs;
  int warmup_runs;
  int ref_runs;
  bool json;
  bool reference;
  bool rss;
  const char *models[MAX_MODELS];
  int n_models;
  char models_buf[1024];
} bench_opts;

/* One model's measurements; a field that was not measured is NAN. */
typedef struct bench_result {
  char model[MODEL_NAME_BYTES];
  double gflop;
  size_t params;
  int layers, fused_layers;
  double xnnpack_ms, xnnpack_min_ms;
  double reference_ms;
  double max_rel_diff;
  double rss_mb;
  double peak_gflops_per_s; /* measured right before this model */
} bench_result;

/* The peak probe: a one-layer model, prepared once, timed per model. */
typedef struct bench_peak {
  model *m;
  xexec *x;
  float *in, *out;
  double gflop;
} bench_peak;

/* ---- small helpers ------------------------------------------------------- */


/* Sorts v. */
static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [-1, 1): timing does not depend on the values, and the
 * executor comparison is as good on noise as on an image. */
static void fill_uniform(float *v, size_t n, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++)
    v[i] = (float)((double)(splitmix64(&s) >> 11) * 0x1.0p-52 - 1.0);
}

/* ---- measuring ----------------------------------------------------------- */

/* Times `runs` runs of x (after `warmup` untimed ones). */
static err_code time_xexec(xexec *x, const float *in, float *out, int warmup,
                           int runs, double *median_ms, double *min_ms,
                           err *e) {
  double *t = malloc((size_t)runs * sizeof *t);
  if (!t) return err_set(e, ERR_NOMEM, "no memory for %d timings", runs);
  err_code rc = ERR_OK;
  for (int i = 0; i < warmup && rc == ERR_OK; i++)
    rc = xexec_run(x, in, out, e);
  for (int i = 0; i < runs && rc == ERR_OK; i++) {
    double t0 = stats_now_ms();
    rc = xexec_run(x, in, out, e);
    t[i] = stats_now_ms() - t0;
  }
  if (rc == ERR_OK) {
    *median_ms = stats_median(t, runs);
    *min_ms = t[0];
  }
  free(t);
  return rc;
}

static void peak_destroy(bench_peak *p) {
  free(p->in);
  free(p->out);
  xexec_destroy(p->x);
  model_destroy(p->m);
  *p = (bench_peak){0};
}

/* The core's practical peak: one PEAK_CHANNELS -> PEAK_CHANNELS 3x3
 * convolution (stride 1, pad 1) on PEAK_SIZE x PEAK_SIZE, as a one-layer
 * model through the executor. */
static err_code peak_create(int threads, bench_peak *p, err *e) {
  *p = (bench_peak){0};
  model_shape s = {PEAK_SIZE, PEAK_SIZE, PEAK_CHANNELS};
  p->m = model_create("peak_conv3x3", s);
  if (!p->m) return err_set(e, ERR_NOMEM, "no memory for the peak model");
  err_code rc = ERR_OK;
  if (model_add_conv(p->m, MODEL_INPUT, PEAK_CHANNELS, 3, 1, 1, 1, false,
                     e) < 0)
    rc = e ? e->code : ERR_INVALID;
  if (rc == ERR_OK) {
    model_layer *l = &p->m->layers[0];
    fill_uniform(l->weights, l->n_weights, 1);
    for (size_t i = 0; i < l->n_weights; i++)
      l->weights[i] *= 0.02f; /* ~ He scale for 2304 inputs */
    rc = model_finalize(p->m, e);
  }
  if (rc == ERR_OK) rc = xexec_create(p->m, threads, &p->x, e);
  if (rc == ERR_OK) {
    p->in = malloc(model_shape_elems(s) * sizeof *p->in);
    p->out = malloc(model_shape_elems(p->m->layers[0].out) * sizeof *p->out);
    if (!p->in || !p->out)
      rc = err_set(e, ERR_NOMEM, "no memory for peak tensors");
  }
  if (rc == ERR_OK) {
    fill_uniform(p->in, model_shape_elems(s), INPUT_SEED);
    p->gflop = model_flops(p->m) / 1e9;
  }
  if (rc != ERR_OK) {
    err_wrap(e, "peak convolution");
    peak_destroy(p);
  }
  return rc;
}

static err_code peak_time(bench_peak *p, const bench_opts *o,
                          double *gflops_per_s, err *e) {
  double ms, min_ms;
  err_code rc =
      time_xexec(p->x, p->in, p->out, o->warmup_runs, o->runs, &ms, &min_ms, e);
  if (rc != ERR_OK) return err_wrap(e, "peak convolution");
  *gflops_per_s = p->gflop / (ms / 1e3);
  return ERR_OK;
}

static err_code measure_model(const char *name, const bench_opts *o,
                              bench_result *r, err *e) {
  zoo_options zo = zoo_defaults();
  model *m = NULL, *fused = NULL;
  xexec *x = NULL;
  float *in = NULL, *out = NULL, *ref_out = NULL;
  double *ref_t = NULL;

  err_code rc = zoo_build(name, &zo, &m, e);
  if (rc == ERR_OK) rc = fuse_model(m, &fused, e);
  if (rc == ERR_OK) rc = xexec_create(fused, o->threads, &x, e);
  size_t n_in = 0, n_out = 0;
  if (rc == ERR_OK) {
    r->gflop = model_flops(m) / 1e9;
    r->params = model_param_count(m);
    r->layers = m->n_layers;
    r->fused_layers = fused->n_layers;
    n_in = model_shape_elems(m->input);
    n_out = model_shape_elems(model_tensor_shape(m, m->n_layers - 1));
    in = malloc(n_in * sizeof *in);
    out = malloc(n_out * sizeof *out);
    ref_out = malloc(n_out * sizeof *ref_out);
    ref_t = malloc((size_t)o->ref_runs * sizeof *ref_t);
    if (!in || !out || !ref_out || !ref_t)
      rc = err_set(e, ERR_NOMEM, "no memory for tensors");
  }
  if (rc == ERR_OK) {
    fill_uniform(in, n_in, INPUT_SEED);
    rc = time_xexec(x, in, out, o->warmup_runs, o->runs, &r->xnnpack_ms,
                    &r->xnnpack_min_ms, e);
  }
  if (rc == ERR_OK && o->reference) {
    for (int i = 0; i < o->ref_runs && rc == ERR_OK; i++) {
      double t0 = stats_now_ms();
      rc = ref_run(m, in, ref_out, e);
      ref_t[i] = stats_now_ms() - t0;
    }
    if (rc == ERR_OK) {
      r->reference_ms = stats_median(ref_t, o->ref_runs);
      r->max_rel_diff = stats_max_rel_diff(out, ref_out, n_out);
    }
  }
  free(ref_t);
  free(ref_out);
  free(out);
  free(in);
  xexec_destroy(x);
  model_destroy(fused);
  model_destroy(m);
  return rc;
}

/* What an agent holding `name` costs in memory: build, fuse, drop the
 * original, prepare the executor and run once. Runs in the probe process. */
static err_code rss_probe(const char *name, int threads, err *e) {
  zoo_options zo = zoo_defaults();
  model *m = NULL, *fused = NULL;
  xexec *x = NULL;
  float *in = NULL, *out = NULL;
  err_code rc = zoo_build(name, &zo, &m, e);
  if (rc == ERR_OK) rc = fuse_model(m, &fused, e);
  model_destroy(m);
  if (rc == ERR_OK) rc = xexec_create(fused, threads, &x, e);
  if (rc == ERR_OK) {
    size_t n_in = model_shape_elems(fused->input);
    in = malloc(n_in * sizeof *in);
    out = malloc(model_shape_elems(model_tensor_shape(
                     fused, fused->n_layers - 1)) * sizeof *out);
    if (!in || !out) rc = err_set(e, ERR_NOMEM, "no memory for tensors");
    else fill_uniform(in, n_in, INPUT_SEED);
  }
  if (rc == ERR_OK) rc = xexec_run(x, in, out, e);
  free(in);
  free(out);
  xexec_destroy(x);
  model_destroy(fused);
  return rc;
}

/* The probe's own answer: VmHWM, the high-water mark of this process's
 * resident memory since its exec, in KiB. */
static err_code read_vmhwm_kb(long *kb, err *e) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return err_set(e, ERR_IO, "/proc/self/status: %s", strerror(errno));
  char line[256];
  bool found = false;
  while (!found && fgets(line, sizeof line, f))
    found = sscanf(line, "VmHWM: %ld kB", kb) == 1;
  fclose(f);
  return found ? ERR_OK
               : err_set(e, ERR_CORRUPT, "no VmHWM in /proc/self/status");
}

/* Peak RSS in MiB of a fresh process running rss_probe(name). */
static err_code measure_rss(const char *name, int threads, double *rss_mb,
                            err *e) {
  char threads_arg[16];
  snprintf(threads_arg, sizeof threads_arg, "%d", threads);
  char *const argv[] = {"single_device", (char *)RSS_PROBE_FLAG, (char *)name,
                        "--threads", threads_arg, NULL};
  int fds[2];
  if (pipe(fds) != 0)
    return err_set(e, ERR_INTERNAL, "pipe: %s", strerror(errno));
  fflush(NULL); /* the child must not repeat our buffered output */
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return err_set(e, ERR_INTERNAL, "fork: %s", strerror(errno));
  }
  if (pid == 0) {
    if (dup2(fds[1], STDOUT_FILENO) < 0) _exit(127);
    close(fds[0]);
    close(fds[1]);
    execv("/proc/self/exe", argv);
    _exit(127);
  }
  close(fds[1]);
  char buf[64];
  size_t len = 0;
  ssize_t got;
  while (len < sizeof buf - 1 &&
         ((got = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0 ||
          (got < 0 && errno == EINTR)))
    if (got > 0) len += (size_t)got;
  buf[len] = 0;
  close(fds[0]);
  int status;
  pid_t w;
  do {
    w = waitpid(pid, &status, 0);
  } while (w < 0 && errno == EINTR);
  if (w < 0) return err_set(e, ERR_INTERNAL, "waitpid: %s", strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return err_set(e, ERR_INTERNAL, "memory probe for %s failed (status %d)",
                   name, status);
  long kb;
  if (sscanf(buf, "%ld", &kb) != 1)
    return err_set(e, ERR_CORRUPT, "memory probe for %s said '%s'", name, buf);
  *rss_mb = (double)kb / 1024.0;
  return ERR_OK;
}

/* ---- output -------------------------------------------------------------- */

static void json_num(const char *key, double v, const char *fmt) {
  printf(",\"%s\":", key);
  if (isnan(v)) printf("null");
  else printf(fmt, v);
}

static void print_json(const bench_result *r, const bench_opts *o) {
  double gflops = r->gflop / (r->xnnpack_ms / 1e3);
  double peak = r->peak_gflops_per_s;
  printf("{\"model\":\"%s\"", r->model);
  json_num("gflop", r->gflop, "%.4f");
  printf(",\"params\":%zu,\"layers\":%d,\"fused_layers\":%d", r->params,
         r->layers, r->fused_layers);
  printf(",\"threads\":%d,\"runs\":%d", o->threads, o->runs);
  json_num("xnnpack_ms", r->xnnpack_ms, "%.3f");
  json_num("xnnpack_min_ms", r->xnnpack_min_ms, "%.3f");
  json_num("reference_ms", r->reference_ms, "%.1f");
  json_num("gflops_per_s", gflops, "%.2f");
  json_num("peak_gflops_per_s", peak, "%.2f");
  json_num("pct_of_peak", 100.0 * gflops / peak, "%.1f");
  json_num("max_rel_diff", r->max_rel_diff, "%.3g");
  json_num("rss_mb", r->rss_mb, "%.1f");
  printf("}\n");
  fflush(stdout);
}

static void print_table_header(const bench_opts *o, const bench_peak *p) {
  printf("single device, %d thread%s, median of %d runs after %d warm-up; "
         "reference: %s\n",
         o->threads, o->threads == 1 ? "" : "s", o->runs, o->warmup_runs,
         o->reference ? "median of --ref-runs on the unfused model" : "off");
  printf("peak: %d->%d 3x3 conv on %dx%d (%.3f GFLOP) through the same "
         "executor, timed right before each model\n",
         PEAK_CHANNELS, PEAK_CHANNELS, PEAK_SIZE, PEAK_SIZE, p->gflop);
  printf("rss: peak resident memory of a fresh process that builds, fuses "
         "and runs the model once\n\n");
  printf("%-10s %7s %8s %9s %9s %9s %9s %7s %6s %6s %12s %8s\n", "model",
         "GFLOP", "params_M", "layers", "xnn_ms", "xnn_min", "ref_ms",
         "GFLOP/s", "peak", "%peak", "max_rel_diff", "rss_MiB");
  fflush(stdout);
}

static void print_table_row(const bench_result *r) {
  double gflops = r->gflop / (r->xnnpack_ms / 1e3);
  double peak = r->peak_gflops_per_s;
  char layers[24], ref[16], diff[16], rss[16];
  snprintf(layers, sizeof layers, "%d->%d", r->layers, r->fused_layers);
  if (isnan(r->reference_ms)) snprintf(ref, sizeof ref, "-");
  else snprintf(ref, sizeof ref, "%.0f", r->reference_ms);
  if (isnan(r->max_rel_diff)) snprintf(diff, sizeof diff, "-");
  else snprintf(diff, sizeof diff, "%.2e", r->max_rel_diff);
  if (isnan(r->rss_mb)) snprintf(rss, sizeof rss, "-");
  else snprintf(rss, sizeof rss, "%.1f", r->rss_mb);
  printf("%-10s %7.3f %8.3f %9s %9.2f %9.2f %9s %7.1f %6.1f %6.1f %12s %8s\n",
         r->model, r->gflop, (double)r->params / 1e6, layers, r->xnnpack_ms,
         r->xnnpack_min_ms, ref, gflops, peak, 100.0 * gflops / peak, diff,
         rss);
  fflush(stdout);
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: single_device [--threads N] [--models a,b,...] [--runs N]\n"
          "                     [--warmup N] [--ref-runs N] [--no-reference]\n"
          "                     [--no-rss] [--json]\n"
          "  --threads N     XNNPACK threads (default 1)\n"
          "  --models LIST   comma-separated zoo models (default: all)\n"
          "  --runs N        timed XNNPACK runs per model (default %d)\n"
          "  --warmup N      untimed runs before timing (default %d)\n"
          "  --ref-runs N    reference executor runs per model (default %d)\n"
          "  --no-reference  skip the reference executor (and max_rel_diff)\n"
          "  --no-rss        skip the fresh-process peak-memory probe\n"
          "  --json          one JSON object per model per line\n"
          "models:",
          DEFAULT_RUNS, DEFAULT_WARMUP_RUNS, DEFAULT_REF_RUNS);
  for (const char *const *n = zoo_names(); *n; n++) fprintf(f, " %s", *n);
  fprintf(f, "\n");
}

/* Fills *o from argv; ERR_INVALID or ERR_NOT_FOUND on a bad flag. */
static err_code parse_args(int argc, char **argv, bench_opts *o, err *e) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int *num = NULL, lo = 1, hi = MAX_RUNS;
    if (strcmp(a, "--json") == 0) {
      o->json = true;
    } else if (strcmp(a, "--no-reference") == 0) {
      o->reference = false;
    } else if (strcmp(a, "--no-rss") == 0) {
      o->rss = false;
    } else if (strcmp(a, "--threads") == 0) {
      num = &o->threads, hi = MAX_THREADS;
    } else if (strcmp(a, "--runs") == 0) {
      num = &o->runs;
    } else if (strcmp(a, "--warmup") == 0) {
      num = &o->warmup_runs, lo = 0;
    } else if (strcmp(a, "--ref-runs") == 0) {
      num = &o->ref_runs;
    } else if (strcmp(a, "--models") == 0) {
      if (!v) return err_set(e, ERR_INVALID, "--models needs a list");
      i++;
      snprintf(o->models_buf, sizeof o->models_buf, "%s", v);
      err_code rc = zoo_split_names(o->models_buf, o->models, MAX_MODELS, &o->n_models, e);
      if (rc != ERR_OK) return rc;
    } else {
      return err_set(e, ERR_INVALID, "unknown flag '%s'", a);
    }
    if (num) {
      if (!flags_parse_int(v, lo, hi, num))
        return err_set(e, ERR_INVALID, "%s needs an integer in [%d, %d]", a,
                       lo, hi);
      i++;
    }
  }
  return ERR_OK;
}

static int probe_main(int argc, char **argv) {
  int threads = 1;
  if (argc != 5 || strcmp(argv[3], "--threads") != 0 ||
      !flags_parse_int(argv[4], 1, MAX_THREADS, &threads)) {
    fprintf(stderr, "single_device: bad memory probe arguments\n");
    return EXIT_USAGE;
  }
  err e = {0};
  long kb;
  if (rss_probe(argv[2], threads, &e) != ERR_OK ||
      read_vmhwm_kb(&kb, &e) != ERR_OK) {
    fprintf(stderr, "single_device: memory probe %s: %s\n", argv[2], e.msg);
    return 1;
  }
  printf("%ld\n", kb);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], RSS_PROBE_FLAG) == 0)
    return probe_main(argc, argv);
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }

  bench_opts o = {
      .threads = 1,
      .runs = DEFAULT_RUNS,
      .warmup_runs = DEFAULT_WARMUP_RUNS,
      .ref_runs = DEFAULT_REF_RUNS,
      .reference = true,
      .rss = true,
  };
  for (const char *const *n = zoo_names(); *n && o.n_models < MAX_MODELS; n++)
    o.models[o.n_models++] = *n;
  err e = {0};
  if (parse_args(argc, argv, &o, &e) != ERR_OK) {
    fprintf(stderr, "single_device: %s\n", e.msg);
    usage(stderr);
    return EXIT_USAGE;
  }

  bench_peak peak;
  if (peak_create(o.threads, &peak, &e) != ERR_OK) {
    fprintf(stderr, "single_device: %s\n", e.msg);
    return 1;
  }
  if (!o.json) print_table_header(&o, &peak);

  int failed = 0;
  for (int i = 0; i < o.n_models; i++) {
    bench_result r = {.reference_ms = NAN, .max_rel_diff = NAN, .rss_mb = NAN};
    snprintf(r.model, sizeof r.model, "%s", o.models[i]);
    err_code rc = peak_time(&peak, &o, &r.peak_gflops_per_s, &e);
    if (rc == ERR_OK) rc = measure_model(o.models[i], &o, &r, &e);
    if (rc == ERR_OK && o.rss) rc = measure_rss(o.models[i], o.threads,
                                                &r.rss_mb, &e);
    if (rc != ERR_OK) {
      fprintf(stderr, "single_device: %s: %s: %s\n", o.models[i],
              err_name(rc), e.msg);
      failed++;
      continue;
    }
    if (o.json) print_json(&r, &o);
    else print_table_row(&r);
  }
  peak_destroy(&peak);
  return failed ? 1 : 0;
}

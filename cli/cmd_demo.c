/* cmd_demo.c — `edgedi demo --local`: the compact models on one synthetic
 * image, on this machine alone (`edgedi demo` without --local is the
 * cluster demo, cmd_demo_cluster.c, which hands --local runs here).
 *
 * Shows, what an agent does per request: each
 * model is built (zoo), fused (fuse.h) and prepared once on the XNNPACK
 * executor, then run --runs times on the same sample image, turned into
 * the model input by runtime/preprocess.h like any camera frame. The
 * weights are seeded, not trained, so the top class is arbitrary but the
 * same on every run and machine. demo_model() measures and returns; only
 * cmd_demo() prints.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "cli/cli.h"
#include "cli/sample.h"
#include "runtime/err.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/preprocess.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"
#include "runtime/stats.h"

enum {
  DEMO_DEFAULT_RUNS = 20,
  DEMO_WARMUP_RUNS = 2,
  DEMO_MAX_RUNS = 10000,
  DEMO_MAX_THREADS = 256,
  DEMO_MAX_MODELS = 8,
  DEMO_DEFAULT_SEED = 1,
};

static const char *const demo_default_models[] = {"vgg13c", "vgg16c",
                                                  "resnet18c", "resnet50c"};

enum { NEU_CLS_CLASSES = CLI_NEU_CLS_CLASSES };

typedef struct demo_opts {
  int runs;
  int threads;
  int seed;
  const char *models[DEMO_MAX_MODELS];
  int n_models;
  char models_buf[256];
} demo_opts;

typedef struct demo_result {
  int layers, fused_layers;
  double gflop;
  int top_class;
  float top_logit;
  double median_ms, min_ms;
} demo_result;

/* Builds, fuses, prepares and times one model on `input` (3x200x200). */
static err_code demo_model(const char *name, const demo_opts *o,
                           const float *input, demo_result *r, err *e) {
  zoo_options zo = zoo_defaults();
  zo.classes = NEU_CLS_CLASSES;
  model *m = NULL, *fused = NULL;
  xexec *x = NULL;
  float *logits = NULL;
  double *t = NULL;

  err_code rc = zoo_build(name, &zo, &m, e);
  if (rc == ERR_OK) rc = fuse_model(m, &fused, e);
  if (rc == ERR_OK) {
    r->layers = m->n_layers;
    r->fused_layers = fused->n_layers;
    r->gflop = model_flops(m) / 1e9;
    model_destroy(m); /* the executor runs the fused copy only */
    m = NULL;
    rc = xexec_create(fused, o->threads, &x, e);
  }
  size_t n_out = 0;
  if (rc == ERR_OK) {
    n_out = model_shape_elems(model_tensor_shape(fused, fused->n_layers - 1));
    logits = malloc(n_out * sizeof *logits);
    t = malloc((size_t)o->runs * sizeof *t);
    if (!logits || !t) rc = err_set(e, ERR_NOMEM, "no memory for outputs");
  }
  for (int i = 0; i < DEMO_WARMUP_RUNS && rc == ERR_OK; i++)
    rc = xexec_run(x, input, logits, e);
  for (int i = 0; i < o->runs && rc == ERR_OK; i++) {
    double t0 = cli_now_ms();
    rc = xexec_run(x, input, logits, e);
    t[i] = cli_now_ms() - t0;
  }
  if (rc == ERR_OK) {
    r->median_ms = stats_median(t, o->runs);
    r->min_ms = t[0];
    r->top_class = 0;
    for (size_t i = 1; i < n_out; i++)
      if (logits[i] > logits[r->top_class]) r->top_class = (int)i;
    r->top_logit = logits[r->top_class];
  }
  free(t);
  free(logits);
  xexec_destroy(x);
  model_destroy(fused);
  model_destroy(m);
  return rc;
}

static void demo_usage(FILE *f) {
  fprintf(f,
          "usage: edgedi demo --local [--runs N] [--threads N] "
          "[--models a,b,...] [--seed N]\n"
          "  Runs each model on a synthetic 200x200 steel-surface image with\n"
          "  the XNNPACK executor and prints its top class and latency.\n"
          "  --runs N       timed runs per model (default %d)\n"
          "  --threads N    XNNPACK threads (default 1)\n"
          "  --models LIST  comma-separated zoo models (default:",
          DEMO_DEFAULT_RUNS);
  for (size_t i = 0;
       i < sizeof demo_default_models / sizeof demo_default_models[0]; i++)
    fprintf(f, "%s%s", i ? "," : " ", demo_default_models[i]);
  fprintf(f, ")\n  --seed N       sample image seed (default %d)\nmodels:",
          DEMO_DEFAULT_SEED);
  for (const char *const *n = zoo_names(); *n; n++) fprintf(f, " %s", *n);
  fprintf(f, "\n");
}

static err_code demo_parse(int argc, char **argv, demo_opts *o, err *e) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int *num = NULL, lo = 1, hi = DEMO_MAX_RUNS;
    if (strcmp(a, "--runs") == 0) {
      num = &o->runs;
    } else if (strcmp(a, "--threads") == 0) {
      num = &o->threads, hi = DEMO_MAX_THREADS;
    } else if (strcmp(a, "--seed") == 0) {
      num = &o->seed, lo = 0, hi = INT32_MAX;
    } else if (strcmp(a, "--models") == 0) {
      if (!v) return err_set(e, ERR_INVALID, "--models needs a list");
      i++;
      snprintf(o->models_buf, sizeof o->models_buf, "%s", v);
      err_code rc = zoo_split_names(o->models_buf, o->models, DEMO_MAX_MODELS, &o->n_models, e);
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

int cmd_demo(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      demo_usage(stdout);
      return CLI_EXIT_OK;
    }
  demo_opts o = {.runs = DEMO_DEFAULT_RUNS, .threads = 1,
                 .seed = DEMO_DEFAULT_SEED};
  for (size_t i = 0;
       i < sizeof demo_default_models / sizeof demo_default_models[0]; i++)
    o.models[o.n_models++] = demo_default_models[i];
  err e = {0};
  if (demo_parse(argc, argv, &o, &e) != ERR_OK) {
    fprintf(stderr, "edgedi demo: %s\n", e.msg);
    demo_usage(stderr);
    return CLI_EXIT_USAGE;
  }

  zoo_options zo = zoo_defaults();
  int h = zo.in_h, w = zo.in_w;
  model_shape in_shape = {zo.in_h, zo.in_w, zo.in_c};
  uint8_t *gray = malloc((size_t)h * w);
  float *input = malloc(model_shape_elems(in_shape) * sizeof *input);
  err_code rc = (gray && input) ? ERR_OK
                                : err_set(&e, ERR_NOMEM, "no memory for image");
  if (rc == ERR_OK)
    rc = sample_steel_surface(h, w, (uint64_t)o.seed, gray, &e);
  if (rc == ERR_OK) {
    preprocess_image img = preprocess_whole(PREPROCESS_U8, gray, h, w, 1);
    model_rows all = {0, h};
    rc = preprocess_rows(&img, in_shape, all, input, &e);
  }
  free(gray);
  if (rc != ERR_OK) {
    fprintf(stderr, "edgedi demo: sample image: %s\n", e.msg);
    free(input);
    return CLI_EXIT_FAIL;
  }

  printf("EdgeDI demo: synthetic %dx%d gray steel surface with a scratch "
         "(seed %d) as %dx%dx%d,\n"
         "XNNPACK executor on the fused models, %d thread%s, median of %d "
         "runs after %d warm-up.\n"
         "The weights are seeded, not trained: the class is arbitrary but "
         "deterministic.\n\n",
         h, w, o.seed, in_shape.c, h, w, o.threads,
         o.threads == 1 ? "" : "s", o.runs, DEMO_WARMUP_RUNS);
  printf("%-10s %8s %8s  %-20s %10s %10s %8s\n", "model", "layers", "GFLOP",
         "top class", "median_ms", "min_ms", "GFLOP/s");
  fflush(stdout);

  int failed = 0;
  for (int i = 0; i < o.n_models; i++) {
    demo_result r = {0};
    rc = demo_model(o.models[i], &o, input, &r, &e);
    if (rc != ERR_OK) {
      fprintf(stderr, "edgedi demo: %s: %s: %s\n", o.models[i], err_name(rc),
              e.msg);
      failed++;
      continue;
    }
    char layers[24], cls[32];
    snprintf(layers, sizeof layers, "%d->%d", r.layers, r.fused_layers);
    snprintf(cls, sizeof cls, "%d %s", r.top_class,
             r.top_class < NEU_CLS_CLASSES ? cli_neu_cls_classes[r.top_class]
                                           : "?");
    printf("%-10s %8s %8.3f  %-20s %10.2f %10.2f %8.1f\n", o.models[i],
           layers, r.gflop, cls, r.median_ms, r.min_ms,
           r.gflop / (r.median_ms / 1e3));
    fflush(stdout);
  }
  free(input);
  return failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

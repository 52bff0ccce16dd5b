/* cmd_eval.c — `edgedi eval MODEL.onnx --data DIR`: a model's top-1
 * accuracy on a labelled image folder (cli/evalset.h), its size and cost,
 * its single-device latency, and, given another runtime's logits for the
 * same images (tools/train/evaluate.py writes PyTorch's), how closely
 * EdgeDI reproduces them.
 *
 * The comparison is DESIGN.md's exactness contract applied to a whole
 * data set: the share of images whose top-1 class equals the other
 * runtime's, and the largest logit difference relative to the image's
 * largest |logit| (the reference's). It fails (exit 1) under --min-agree or
 * over --tol, so scripts can hold EdgeDI to it.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "cli/files.h"
#include "cli/cli.h"
#include "cli/eval_cluster.h"
#include "cli/evalset.h"
#include "runtime/err.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/onnx_import.h"

enum { EVAL_MAX_THREADS = 256 };
#define EVAL_DEFAULT_MIN_AGREE 0.999
#define EVAL_DEFAULT_TOL 1e-4

static void eval_usage(FILE *f) {
  fprintf(f,
          "usage: edgedi eval MODEL.onnx --data DIR [flags]\n"
          "  Top-1 accuracy of an ONNX model on a labelled image folder\n"
          "  (DIR/labels.csv: file,class,label,split; 8-bit images), its\n"
          "  parameters and GFLOPs, and the median latency of one image on\n"
          "  this device (XNNPACK, batch 1).\n"
          "  --split S          heldout (default), train or all\n"
          "  --threads N        XNNPACK threads (default 1)\n"
          "  --compare F        another runtime's logits: N x K float32 LE\n"
          "  --compare-order C  the CSV (a `file` column) giving F's row\n"
          "                     order (default: labels.csv's order)\n"
          "  --min-agree P      equal predictions needed (default %g)\n"
          "  --tol T            largest relative logit difference (default "
          "%g)\n"
          "  --logits-out F     write EdgeDI's logits (N x K float32 LE)\n"
          "  --scheduler ADDR   also run every image through the cluster there\n"
          "                     (the model loaded from MODEL.onnx) and hold its\n"
          "                     answers to this device's: every prediction\n"
          "                     equal, logits within --tol\n"
          "  --name NAME        the model's name on the scheduler (default: the\n"
          "                     file's name without .onnx)\n"
          "  --planner NAME     the cluster's planner for these requests\n"
          "                     (default: the scheduler's; `equal` uses every\n"
          "                     device)\n",
          EVAL_DEFAULT_MIN_AGREE, EVAL_DEFAULT_TOL);
}

typedef struct eval_opts {
  const char *model, *data, *split, *compare, *order, *logits_out;
  const char *scheduler, *name, *planner;
  int threads;
  double min_agree, tol;
} eval_opts;

static int eval_parse(int argc, char **argv, eval_opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (cli_is_help(a)) {
      eval_usage(stdout);
      return -1;
    }
    const char **str = NULL;
    if (strcmp(a, "--data") == 0) str = &o->data;
    else if (strcmp(a, "--split") == 0) str = &o->split;
    else if (strcmp(a, "--compare") == 0) str = &o->compare;
    else if (strcmp(a, "--compare-order") == 0) str = &o->order;
    else if (strcmp(a, "--logits-out") == 0) str = &o->logits_out;
    else if (strcmp(a, "--scheduler") == 0) str = &o->scheduler;
    else if (strcmp(a, "--name") == 0) str = &o->name;
    else if (strcmp(a, "--planner") == 0) str = &o->planner;
    if (str && v) {
      *str = v, i++;
    } else if (strcmp(a, "--threads") == 0 && v) {
      if (!flags_parse_int(v, 1, EVAL_MAX_THREADS, &o->threads)) {
        fprintf(stderr, "edgedi eval: --threads needs 1 to %d, not '%s'\n",
                EVAL_MAX_THREADS, v);
        return CLI_EXIT_USAGE;
      }
      i++;
    } else if ((strcmp(a, "--min-agree") == 0 || strcmp(a, "--tol") == 0) &&
               v) {
      double *d = a[2] == 'm' ? &o->min_agree : &o->tol;
      if (!flags_parse_double(v, 0, 1, d)) {
        fprintf(stderr, "edgedi eval: %s needs a number in [0, 1], not "
                "'%s'\n", a, v);
        return CLI_EXIT_USAGE;
      }
      i++;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "edgedi eval: unknown flag or missing value: %s\n", a);
      eval_usage(stderr);
      return CLI_EXIT_USAGE;
    } else if (!o->model) {
      o->model = a;
    } else {
      fprintf(stderr, "edgedi eval: unexpected argument '%s'\n", a);
      return CLI_EXIT_USAGE;
    }
  }
  if (!o->model || !o->data) {
    fprintf(stderr, "edgedi eval: %s\n",
            o->model ? "--data DIR is required" : "MODEL.onnx is required");
    eval_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  if ((o->name || o->planner) && !o->scheduler) {
    fprintf(stderr, "edgedi eval: --name and --planner go with --scheduler\n");
    return CLI_EXIT_USAGE;
  }
  if (o->order && !o->compare) {
    fprintf(stderr, "edgedi eval: --compare-order needs --compare\n");
    return CLI_EXIT_USAGE;
  }
  return 0;
}

/* Exactly n little-endian float32 values from path into v. */
static err_code read_f32(const char *path, float *v, size_t n, err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) return err_set(e, ERR_IO, "cannot open %s: %s", path, strerror(errno));
  uint8_t b[4];
  size_t got = 0;
  while (got <= n && fread(b, 1, 4, f) == 4) {
    uint32_t bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 |
                    (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    if (got < n) memcpy(&v[got], &bits, 4);
    got++;
  }
  fclose(f);
  if (got != n)
    return err_set(e, ERR_SHAPE, "%s holds %s%zu float32 values, %zu "
                   "expected", path, got > n ? "more than " : "",
                   got > n ? n : got, n);
  return ERR_OK;
}

typedef struct eval_compare {
  int equal;          /* images whose top-1 equals the reference's */
  double max_rel;     /* largest |ours - ref| / max |ref| over images */
  int worst;          /* the image with max_rel */
} eval_compare;

/* Our logits (item order) against the reference file's rows. */
static err_code compare(const eval_opts *o, const evalset *s,
                        const float *ours, int k, eval_compare *c, err *e) {
  int *row_of = malloc((size_t)s->n * sizeof *row_of);
  int rows = s->n;
  err_code rc = row_of ? ERR_OK : err_set(e, ERR_NOMEM, "out of memory");
  if (rc == ERR_OK && o->order)
    rc = evalset_csv_order(s, o->order, row_of, &rows, e);
  else if (rc == ERR_OK)
    for (int i = 0; i < s->n; i++) row_of[i] = i;
  float *ref = rc == ERR_OK ? malloc((size_t)rows * k * sizeof *ref) : NULL;
  if (rc == ERR_OK && !ref) rc = err_set(e, ERR_NOMEM, "out of memory");
  if (rc == ERR_OK) rc = read_f32(o->compare, ref, (size_t)rows * k, e);
  *c = (eval_compare){0};
  for (int i = 0; rc == ERR_OK && i < s->n; i++) {
    const float *r = ref + (size_t)row_of[i] * k, *y = ours + (size_t)i * k;
    int tr = 0, ty = 0;
    double scale = 0, diff = 0;
    for (int j = 0; j < k; j++) {
      if (r[j] > r[tr]) tr = j;
      if (y[j] > y[ty]) ty = j;
      scale = fmax(scale, fabs(r[j]));
      diff = fmax(diff, fabs((double)r[j] - y[j]));
    }
    c->equal += tr == ty;
    double rel = diff / fmax(scale, 1e-12);
    if (rel > c->max_rel || i == 0) c->max_rel = rel, c->worst = i;
  }
  free(row_of);
  free(ref);
  return rc;
}

/* --name, or the file's name without directory and .onnx. */
static void model_name(const eval_opts *o, char *buf, size_t len) {
  if (o->name) {
    snprintf(buf, len, "%s", o->name);
    return;
  }
  const char *base = strrchr(o->model, '/');
  snprintf(buf, len, "%s", base ? base + 1 : o->model);
  char *dot = strstr(buf, ".onnx");
  if (dot && dot != buf && dot[5] == 0) *dot = 0;
}

/* The folder through the cluster, against this device's logits. */
static err_code run_cluster(const eval_opts *o, const evalset *s,
                            const float *logits, int k, bool *pass, err *e) {
  char name[128];
  model_name(o, name, sizeof name);
  eval_cluster_result c;
  err_code rc = eval_cluster_run(o->scheduler, o->model, name, o->planner, s,
                                 logits, k, &c, e);
  if (rc != ERR_OK) return rc;
  *pass = c.equal == s->n && c.max_rel <= o->tol;
  printf("cluster  %s: model '%s' (digest %.16s), planner %s; %d of %d "
         "requests split over 2 or more devices (up to %d), median %.2f "
         "ms\n",
         o->scheduler, name, c.digest, o->planner ? o->planner : "default",
         c.split, s->n, c.max_devices, c.median_ms);
  printf("         vs this device: %.2f %% equal predictions (%d/%d), max "
         "logit difference %.2e of the largest (%s) -> %s\n",
         100.0 * c.equal / s->n, c.equal, s->n, c.max_rel, s->files[c.worst],
         *pass ? "PASS" : "FAIL");
  return ERR_OK;
}

/* Per-class accuracy: one line. */
static void print_classes(const evalset *s, const int *pred) {
  int max = 0;
  for (int i = 0; i < s->n; i++) max = s->labels[i] > max ? s->labels[i] : max;
  printf("classes ");
  for (int c = 0; c <= max; c++) {
    int n = 0, ok = 0;
    const char *name = "";
    for (int i = 0; i < s->n; i++)
      if (s->labels[i] == c) n++, ok += pred[i] == c, name = s->classes[i];
    if (n) printf("%s%s %d/%d", c ? ", " : "", name[0] ? name : "?", ok, n);
  }
  printf("\n");
}

int cmd_eval(int argc, char **argv) {
  eval_opts o = {.split = "heldout", .threads = 1,
                 .min_agree = EVAL_DEFAULT_MIN_AGREE, .tol = EVAL_DEFAULT_TOL};
  int prc = eval_parse(argc, argv, &o);
  if (prc) return prc < 0 ? CLI_EXIT_OK : prc;
  model *m = NULL, *f = NULL;
  evalset *s = NULL;
  float *logits = NULL;
  int *pred = NULL;
  err e = {0};
  evalset_result r;
  err_code rc = onnx_import_file(o.model, &m, NULL, &e);
  if (rc == ERR_OK) rc = fuse_model(m, &f, &e);
  if (rc == ERR_OK) rc = evalset_load(o.data, o.split, &s, &e);
  if (rc == ERR_OK) {
    size_t k = model_shape_elems(f->layers[f->n_layers - 1].out);
    logits = malloc((size_t)s->n * k * sizeof *logits);
    pred = malloc((size_t)s->n * sizeof *pred);
    if (!logits || !pred) rc = err_set(&e, ERR_NOMEM, "out of memory");
  }
  if (rc == ERR_OK)
    rc = evalset_run(s, f, &(evalset_run_opts){.threads = o.threads,
                                               .stop_below = -1,
                                               .logits = logits,
                                               .predictions = pred},
                     &r, &e);
  if (rc == ERR_OK && o.logits_out)
    rc = files_write_f32(o.logits_out, logits, (size_t)s->n * r.outputs, &e);
  int status = CLI_EXIT_OK;
  if (rc == ERR_OK) {
    printf("model    %s: %zu parameters, %.3f GFLOP, %d layers fused\n",
           o.model, model_param_count(f), model_flops(f) / 1e9, f->n_layers);
    printf("data     %s, split %s: %d images %dx%dx%d\n", o.data, o.split,
           s->n, s->height, s->width, s->channels);
    printf("top-1    %.4f (%d/%d)\n", r.accuracy, r.correct, s->n);
    print_classes(s, pred);
    printf("latency  %.2f ms median per image (%d thread%s, batch 1); "
           "%.2f ms of this thread's CPU time\n",
           r.median_ms, o.threads, o.threads == 1 ? "" : "s",
           r.median_cpu_ms);
    if (o.logits_out) printf("logits   written to %s\n", o.logits_out);
  }
  if (rc == ERR_OK && o.compare) {
    eval_compare c;
    rc = compare(&o, s, logits, r.outputs, &c, &e);
    if (rc == ERR_OK) {
      double agree = (double)c.equal / s->n;
      bool pass = agree >= o.min_agree && c.max_rel <= o.tol;
      printf("compare  %s: %.2f %% equal predictions (%d/%d), max logit "
             "difference %.2e of the largest (%s) -> %s\n",
             o.compare, 100 * agree, c.equal, s->n, c.max_rel,
             s->files[c.worst], pass ? "PASS" : "FAIL");
      if (!pass) status = CLI_EXIT_FAIL;
    }
  }
  if (rc == ERR_OK && o.scheduler) {
    bool pass = false;
    fflush(stdout);
    rc = run_cluster(&o, s, logits, r.outputs, &pass, &e);
    if (rc == ERR_OK && !pass) status = CLI_EXIT_FAIL;
  }
  if (rc != ERR_OK) {
    fprintf(stderr, "edgedi eval: %s\n", e.msg);
    status = CLI_EXIT_FAIL;
  }
  evalset_destroy(s);
  free(logits);
  free(pred);
  model_destroy(f);
  model_destroy(m);
  return status;
}

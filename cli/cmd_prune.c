/* cmd_prune.c — `edgedi prune MODEL.onnx --data DIR --floor ACC --out
 * PRUNED.onnx`: the paper's L1-norm filter pruning with an accuracy guard.
 *
 * The model is imported and fused (BN folded, so sum |W| is each filter's
 * real magnitude), then runtime/prune_search.h walks its prunable
 * convolutions in graph order, removing a --step fraction of a layer's
 * filters at a time while top-1 accuracy on the labelled folder's split
 * stays >= the floor (cli/evalset.h measures it; a run that cannot reach
 * the floor any more stops early, which keeps rejected steps cheap). The
 * result is written as ONNX (the fused graph) and read back: the reported
 * "after" numbers are those of the written file, so a user gets exactly
 * what was measured.
 *
 * The floor is checked on the same images that choose the steps; with no
 * separate validation split the "after" accuracy is optimistic, which is
 * why the held-out split of the synthetic set is the default only for
 * lack of a third split (docs/accuracy.md says so).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "cli/cli.h"
#include "cli/evalset.h"
#include "runtime/err.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/onnx_export.h"
#include "runtime/onnx_import.h"
#include "runtime/prune_search.h"

enum { PRUNE_CLI_MAX_THREADS = 256, PRUNE_CLI_MAX_EVALS = 100000 };

static void prune_usage(FILE *f) {
  prune_search_opts d = prune_search_defaults();
  fprintf(f,
          "usage: edgedi prune MODEL.onnx --data DIR (--floor ACC | "
          "--floor-drop D) --out PRUNED.onnx [flags]\n"
          "  L1-norm filter pruning: layer by layer, remove the filters with\n"
          "  the smallest sum |W| (and the matching input channels of the\n"
          "  layers they feed), a step at a time, keeping a step only while\n"
          "  top-1 accuracy on DIR's split stays >= the floor. Prints\n"
          "  parameters, FLOPs, accuracy and latency before and after and\n"
          "  writes the pruned (fused) model as ONNX.\n"
          "  --floor ACC       accuracy floor in [0, 1]\n"
          "  --floor-drop D    floor = the model's accuracy - D (0.01 = 1 "
          "point)\n"
          "  --step F          fraction of a layer's filters per step "
          "(default %g)\n"
          "  --min-filters N   filters every layer keeps (default %d)\n"
          "  --multiple M      leave a multiple of M filters (default %d; 4 or 8\n"
          "                    suit SIMD kernels better than odd counts)\n"
          "  --max-evals N     accuracy evaluations at most (default %d)\n"
          "  --split S         heldout (default), train or all\n"
          "  --threads N       XNNPACK threads (default 1)\n"
          "  --quiet           no line per step\n",
          d.step, d.min_filters, d.multiple, d.max_evals);
}

typedef struct prune_cli {
  const char *model, *data, *out, *split;
  double floor, floor_drop;
  bool has_floor, has_drop, quiet;
  int threads;
  prune_search_opts so;
  const evalset *set; /* for the callbacks */
} prune_cli;

static int parse_num(const char *a, const char *v, double lo, double hi,
                     double *out) {
  if (!flags_parse_double(v, lo, hi, out)) {
    fprintf(stderr, "edgedi prune: %s needs a number in [%g, %g], not '%s'\n",
            a, lo, hi, v);
    return CLI_EXIT_USAGE;
  }
  return 0;
}

static int parse_count(const char *a, const char *v, int lo, int hi,
                       int *out) {
  if (!flags_parse_int(v, lo, hi, out)) {
    fprintf(stderr, "edgedi prune: %s needs %d to %d, not '%s'\n", a, lo, hi,
            v);
    return CLI_EXIT_USAGE;
  }
  return 0;
}

static int prune_parse(int argc, char **argv, prune_cli *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int rc = 0;
    if (cli_is_help(a)) {
      prune_usage(stdout);
      return -1;
    }
    if (strcmp(a, "--quiet") == 0) {
      o->quiet = true;
      continue;
    }
    static const char *const valued[] = {
        "--data", "--out", "--split", "--floor", "--floor-drop", "--step",
        "--min-filters", "--multiple", "--max-evals", "--threads"};
    bool known = false;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
      known |= strcmp(a, valued[k]) == 0;
    if (known && !v) {
      fprintf(stderr, "edgedi prune: %s needs a value\n", a);
      return CLI_EXIT_USAGE;
    }
    if (strcmp(a, "--data") == 0) o->data = v;
    else if (strcmp(a, "--out") == 0) o->out = v;
    else if (strcmp(a, "--split") == 0) o->split = v;
    else if (strcmp(a, "--floor") == 0)
      rc = parse_num(a, v, 0, 1, &o->floor), o->has_floor = true;
    else if (strcmp(a, "--floor-drop") == 0)
      rc = parse_num(a, v, 0, 1, &o->floor_drop), o->has_drop = true;
    else if (strcmp(a, "--step") == 0) {
      rc = parse_num(a, v, 0, 1, &o->so.step);
      if (!rc && o->so.step <= 0) {
        fprintf(stderr, "edgedi prune: --step must be above 0\n");
        rc = CLI_EXIT_USAGE;
      }
    } else if (strcmp(a, "--min-filters") == 0)
      rc = parse_count(a, v, 1, 1 << 20, &o->so.min_filters);
    else if (strcmp(a, "--multiple") == 0)
      rc = parse_count(a, v, 1, 1 << 16, &o->so.multiple);
    else if (strcmp(a, "--max-evals") == 0)
      rc = parse_count(a, v, 1, PRUNE_CLI_MAX_EVALS, &o->so.max_evals);
    else if (strcmp(a, "--threads") == 0)
      rc = parse_count(a, v, 1, PRUNE_CLI_MAX_THREADS, &o->threads);
    else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "edgedi prune: unknown flag: %s\n", a);
      prune_usage(stderr);
      return CLI_EXIT_USAGE;
    } else if (!o->model) {
      o->model = a;
      continue;
    } else {
      fprintf(stderr, "edgedi prune: unexpected argument '%s'\n", a);
      return CLI_EXIT_USAGE;
    }
    if (rc) return rc;
    i++;
  }
  const char *missing = !o->model ? "MODEL.onnx"
                        : !o->data ? "--data DIR"
                        : !o->out ? "--out PRUNED.onnx"
                        : !o->has_floor && !o->has_drop ? "--floor ACC or --floor-drop D"
                        : NULL;
  if (missing) {
    fprintf(stderr, "edgedi prune: %s is required\n", missing);
    prune_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  if (o->has_floor && o->has_drop) {
    fprintf(stderr, "edgedi prune: give --floor or --floor-drop, not both\n");
    return CLI_EXIT_USAGE;
  }
  return 0;
}

static err_code eval_cb(void *ctx, const model *m, double floor,
                        double *accuracy, err *e) {
  const prune_cli *o = ctx;
  evalset_result r;
  err_code rc = evalset_run(o->set, m,
                            &(evalset_run_opts){.threads = o->threads,
                                                .stop_below = floor},
                            &r, e);
  *accuracy = r.accuracy;
  return rc;
}

static void progress_cb(void *ctx, const prune_step *s) {
  const prune_cli *o = ctx;
  if (o->quiet) return;
  const model_layer *L = &s->current->layers[s->layer];
  printf("  %-44s %4d -> %4d filters: accuracy %s%.4f  %s\n", L->name,
         s->filters_before, s->filters_after, s->kept ? "" : "<", s->accuracy,
         s->kept ? "kept" : "undone");
  fflush(stdout);
}

typedef struct summary {
  size_t params;
  double gflop, accuracy, median_ms, median_cpu_ms;
} summary;

/* Accuracy and latency of m, evaluated in full. */
static err_code measure(const prune_cli *o, const model *m, summary *s,
                        err *e) {
  evalset_result r;
  err_code rc = evalset_run(o->set, m,
                            &(evalset_run_opts){.threads = o->threads,
                                                .stop_below = -1},
                            &r, e);
  *s = (summary){model_param_count(m), model_flops(m) / 1e9, r.accuracy,
                 r.median_ms, r.median_cpu_ms};
  return rc;
}

/* The layers whose filter count changed, one line each. */
static void print_layers(const model *before, const model *after) {
  for (int l = 0; l < after->n_layers; l++) {
    const model_layer *a = &before->layers[l], *b = &after->layers[l];
    if (a->op == MODEL_OP_CONV && a->out_channels != b->out_channels)
      printf("  %-44s %4d -> %4d filters\n", a->name, a->out_channels,
             b->out_channels);
  }
}

/* Writes the pruned model, reads it back, fused again as a user would. */
static err_code write_and_reload(const char *path, const model *p,
                                 model **reloaded, err *e) {
  model *m = NULL;
  err_code rc = onnx_export_file(p, path, e);
  if (rc == ERR_OK) rc = onnx_import_file(path, &m, NULL, e);
  if (rc == ERR_OK) rc = fuse_model(m, reloaded, e);
  model_destroy(m);
  if (rc != ERR_OK) err_wrap(e, "writing %s", path);
  return rc;
}

int cmd_prune(int argc, char **argv) {
  prune_cli o = {.split = "heldout", .threads = 1,
                 .so = prune_search_defaults()};
  int prc = prune_parse(argc, argv, &o);
  if (prc) return prc < 0 ? CLI_EXIT_OK : prc;
  model *m = NULL, *f = NULL, *reloaded = NULL;
  evalset *set = NULL;
  prune_search_result r = {0};
  summary before = {0}, after = {0};
  err e = {0};
  err_code rc = onnx_import_file(o.model, &m, NULL, &e);
  if (rc == ERR_OK) rc = fuse_model(m, &f, &e);
  if (rc == ERR_OK) rc = evalset_load(o.data, o.split, &set, &e);
  o.set = set;
  if (rc == ERR_OK) rc = measure(&o, f, &before, &e);
  if (rc == ERR_OK) {
    o.so.floor = o.has_floor ? o.floor : before.accuracy - o.floor_drop;
    if (o.so.floor < 0) o.so.floor = 0;
    o.so.known_accuracy = before.accuracy;
    printf("model     %s: %zu parameters, %.3f GFLOP, top-1 %.4f on %d "
           "images (%s), %.2f ms\n",
           o.model, before.params, before.gflop, before.accuracy, set->n,
           o.split, before.median_ms);
    printf("pruning   floor %.4f, step %g, at least %d filter%s a layer, "
           "counts multiple of %d\n",
           o.so.floor, o.so.step, o.so.min_filters,
           o.so.min_filters == 1 ? "" : "s", o.so.multiple);
    fflush(stdout);
    rc = prune_search(f, &o.so, eval_cb, progress_cb, &o, &r, &e);
  }
  if (rc == ERR_OK) rc = write_and_reload(o.out, r.pruned, &reloaded, &e);
  if (rc == ERR_OK) rc = measure(&o, reloaded, &after, &e);
  if (rc == ERR_OK) {
    printf("pruned    %d of %d prunable layers, %d filters removed, %d "
           "evaluations (%d steps tried, %d kept)%s\n",
           r.layers_pruned, r.layers_prunable, r.filters_removed, r.evals,
           r.steps_tried, r.steps_kept,
           r.hit_max_evals ? ", stopped at --max-evals" : "");
    print_layers(f, r.pruned);
    printf("\n%-10s %12s %10s %10s %12s %12s\n", "", "parameters", "GFLOP",
           "top-1", "latency ms", "cpu ms");
    printf("%-10s %12zu %10.4f %10.4f %12.2f %12.2f\n", "before",
           before.params, before.gflop, before.accuracy, before.median_ms,
           before.median_cpu_ms);
    printf("%-10s %12zu %10.4f %10.4f %12.2f %12.2f\n", "after", after.params,
           after.gflop, after.accuracy, after.median_ms, after.median_cpu_ms);
    printf("%-10s %11.1f%% %9.1f%% %+10.4f %11.1f%% %11.1f%%\n", "change",
           100.0 * ((double)after.params / before.params - 1),
           100.0 * (after.gflop / before.gflop - 1),
           after.accuracy - before.accuracy,
           100.0 * (after.median_ms / before.median_ms - 1),
           100.0 * (after.median_cpu_ms / before.median_cpu_ms - 1));
    printf("wrote     %s (read back: top-1 %.4f%s)\n", o.out, after.accuracy,
           after.accuracy == r.accuracy_after ? ", as measured while pruning"
                                              : ", DIFFERS from the search");
    if (after.accuracy != r.accuracy_after)
      rc = err_set(&e, ERR_INTERNAL, "the written model's accuracy %.4f is "
                   "not the %.4f measured while pruning", after.accuracy,
                   r.accuracy_after);
  }
  if (rc != ERR_OK) fprintf(stderr, "edgedi prune: %s\n", e.msg);
  model_destroy(r.pruned);
  model_destroy(reloaded);
  evalset_destroy(set);
  model_destroy(f);
  model_destroy(m);
  return rc == ERR_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

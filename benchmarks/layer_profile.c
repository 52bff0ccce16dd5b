/* layer_profile.c — where a model's single-device time goes: every layer
 * of the fused model, run whole on one device, timed by the executor
 * (xexec_set_layer_ms), with the totals per operator kind.
 *
 *   bazel run -c opt //benchmarks:layer_profile -- [--models a,b] [--runs N]
 *       [--threads T] [--top K]
 *
 * Per model: the K slowest layers (shape, MFLOP, mean ms, GFLOP/s) and the
 * time per operator kind (convolutions split by kernel size), so the gaps
 * to another runtime can be traced to layers rather than guessed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/stats.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"

enum { MAX_LAYERS = 4096, N_KINDS = MODEL_OP_COUNT + 2 };

/* Kind index: the model op, with dense 1x1 and grouped convolutions apart. */
static int kind_of(const model_layer *L) {
  if (L->op == MODEL_OP_CONV && L->groups != 1) return MODEL_OP_COUNT + 1;
  if (L->op == MODEL_OP_CONV && L->kernel_h * L->kernel_w == 1) return MODEL_OP_COUNT;
  return (int)L->op;
}

static const char *kind_name(int k) {
  if (k == MODEL_OP_COUNT) return "conv 1x1";
  if (k == MODEL_OP_COUNT + 1) return "conv grouped";
  return k == MODEL_OP_CONV ? "conv kxk" : model_op_name((model_op)k);
}

static int by_ms_desc(const void *a, const void *b, void *ms) {
  double x = ((double *)ms)[*(const int *)a], y = ((double *)ms)[*(const int *)b];
  return (x < y) - (x > y);
}

static int profile(const char *name, int runs, int threads, int top) {
  err e = {0};
  model *z = NULL, *m = NULL;
  xexec *x = NULL;
  if (zoo_build(name, NULL, &z, &e) != ERR_OK || fuse_model(z, &m, &e) != ERR_OK ||
      xexec_create(m, threads, &x, &e) != ERR_OK) {
    fprintf(stderr, "layer_profile: %s: %s\n", name, e.msg);
    model_destroy(z), model_destroy(m);
    return 1;
  }
  model_destroy(z);
  int n = m->n_layers;
  size_t in_n = model_shape_elems(m->input), out_n = model_shape_elems(m->layers[n - 1].out);
  float *input = malloc(in_n * sizeof *input), *output = malloc(out_n * sizeof *output);
  double *ms = calloc((size_t)n, sizeof *ms);
  int *order = malloc((size_t)n * sizeof *order);
  int status = 0;
  if (!input || !output || !ms || !order || n > MAX_LAYERS) {
    fprintf(stderr, "layer_profile: out of memory\n");
    status = 1;
    goto done;
  }
  for (size_t i = 0; i < in_n; i++) input[i] = (float)(i % 251) / 251.0f;
  double total = 0;
  for (int r = -1; r < runs && status == 0; r++) {
    xexec_set_layer_ms(x, r >= 0 ? ms : NULL);  /* run -1 warms up */
    double t0 = stats_now_ms();
    if (xexec_run(x, input, output, &e) != ERR_OK) {
      fprintf(stderr, "layer_profile: %s: %s\n", name, e.msg);
      status = 1;
    }
    if (r >= 0) total += stats_now_ms() - t0;
  }
  if (status) goto done;
  double kind_ms[N_KINDS] = {0}, kind_flops[N_KINDS] = {0}, sum = 0;
  int kind_n[N_KINDS] = {0};
  for (int l = 0; l < n; l++) {
    ms[l] /= runs;
    order[l] = l;
    int k = kind_of(&m->layers[l]);
    kind_ms[k] += ms[l], kind_flops[k] += m->layers[l].flops, kind_n[k]++;
    sum += ms[l];
  }
  qsort_r(order, (size_t)n, sizeof *order, by_ms_desc, ms);
  printf("\n%s: %d layers, %d thread(s), mean of %d runs: %.2f ms a run, %.2f ms in layers\n",
         name, n, threads, runs, total / runs, sum);
  printf("%-5s %-12s %-22s %-14s %8s %8s %7s %6s\n", "layer", "op", "input HxWxC",
         "k/s -> C", "MFLOP", "ms", "GFLOP/s", "share");
  for (int i = 0; i < top && i < n; i++) {
    int l = order[i];
    const model_layer *L = &m->layers[l];
    model_shape is = model_tensor_shape(m, L->inputs[0]);
    char in[32], geo[32] = "";
    snprintf(in, sizeof in, "%dx%dx%d", is.h, is.w, is.c);
    if (L->op == MODEL_OP_CONV)
      snprintf(geo, sizeof geo, "%dx%d/%d -> %d%s", L->kernel_h, L->kernel_w, L->stride_h,
               L->out_channels, L->groups != 1 ? " g" : "");
    printf("%-5d %-12s %-22s %-14s %8.1f %8.3f %7.1f %5.1f%%\n", l, kind_name(kind_of(L)), in,
           geo, L->flops / 1e6, ms[l], ms[l] > 0 ? L->flops / ms[l] / 1e6 : 0,
           100 * ms[l] / sum);
  }
  printf("per kind:\n");
  for (int k = 0; k < N_KINDS; k++)
    if (kind_n[k])
      printf("  %-13s %3d layers %8.3f ms %5.1f%% %7.1f GFLOP/s\n", kind_name(k), kind_n[k],
             kind_ms[k], 100 * kind_ms[k] / sum,
             kind_ms[k] > 0 ? kind_flops[k] / kind_ms[k] / 1e6 : 0);
done:
  free(input), free(output), free(ms), free(order);
  xexec_destroy(x);
  model_destroy(m);
  return status;
}

int main(int argc, char **argv) {
  char models_buf[256] = "vgg16c,resnet18c";
  int runs = 20, threads = 1, top = 15;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = v != NULL;
    if (ok && strcmp(a, "--models") == 0)
      ok = snprintf(models_buf, sizeof models_buf, "%s", v) < (int)sizeof models_buf;
    else if (ok && strcmp(a, "--runs") == 0)
      ok = flags_parse_int(v, 1, 100000, &runs);
    else if (ok && strcmp(a, "--threads") == 0)
      ok = flags_parse_int(v, 1, 256, &threads);
    else if (ok && strcmp(a, "--top") == 0)
      ok = flags_parse_int(v, 1, MAX_LAYERS, &top);
    else
      ok = false;
    if (!ok) {
      fprintf(stderr, "usage: layer_profile [--models a,b,...] [--runs N] [--threads T] "
                      "[--top K]\n");
      return 2;
    }
    i++;
  }
  int status = 0;
  for (char *name = strtok(models_buf, ","); name; name = strtok(NULL, ","))
    status |= profile(name, runs, threads, top);
  return status;
}

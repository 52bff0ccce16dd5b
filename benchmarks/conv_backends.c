/* conv_backends.c — every dense convolution of the chosen zoo models,
 * alone, on each of the executor's convolution backends (XNNPACK, the
 * direct register-blocked kernel, im2col + OpenBLAS), one thread: the
 * measurements behind xexec's AUTO rule (xexec_ops.c, docs/single_device.md).
 *
 *   bazel run -c opt //benchmarks:conv_backends -- [--models a,b] [--runs N] [--json]
 *
 * Per layer: shape, MFLOP, median thread CPU ms of each backend over N runs
 * (after one warm-up), and which one AUTO picks. Totals per model at the end. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/stats.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"

enum { MAX_RUNS = 1000, N_BACKENDS = 4 };

static const xexec_conv backends[N_BACKENDS] = {XEXEC_CONV_XNNPACK, XEXEC_CONV_DIRECT,
                                                XEXEC_CONV_GEMM, XEXEC_CONV_AUTO};
static const char *const backend_names[N_BACKENDS] = {"xnnpack", "direct", "gemm", "auto"};

/* Layer l of m alone: a model of one convolution with its input shape and
 * geometry, seeded weights. NULL on failure (message in e). */
static model *one_conv(const model *m, int l, err *e) {
  const model_layer *L = &m->layers[l];
  model_shape in = model_tensor_shape(m, L->inputs[0]);
  model *c = model_create("conv", in);
  if (!c) {
    err_set(e, ERR_NOMEM, "out of memory");
    return NULL;
  }
  int k = model_add_conv_ex(c, MODEL_INPUT, L->out_channels, L->kernel_h, L->kernel_w,
                            L->stride_h, L->stride_w, L->pad_top, L->pad_left, L->pad_bottom,
                            L->pad_right, 1, L->bias != NULL, e);
  if (k < 0 || model_finalize(c, e) != ERR_OK) {
    model_destroy(c);
    return NULL;
  }
  model_layer *C = &c->layers[k];
  C->relu = L->relu;
  unsigned r = 12345u + (unsigned)l;
  for (size_t i = 0; i < C->n_weights; i++)
    C->weights[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
  if (C->bias)
    for (int o = 0; o < C->out_channels; o++) C->bias[o] = 0.01f * (float)(o % 7);
  return c;
}

static int time_backend(const model *c, xexec_conv conv, int runs, const float *input,
                        float *output, double *ms, err *e) {
  xexec *x = NULL;
  if (xexec_create_ex(c, 1, conv, &x, e) != ERR_OK) return -1;
  double t[MAX_RUNS];
  for (int i = -1; i < runs; i++) {
    double c0 = stats_thread_cpu_ms();
    if (xexec_run(x, input, output, e) != ERR_OK) {
      xexec_destroy(x);
      return -1;
    }
    if (i >= 0) t[i] = stats_thread_cpu_ms() - c0;
  }
  *ms = stats_median(t, runs);
  xexec_destroy(x);
  return 0;
}

int main(int argc, char **argv) {
  char models_buf[256] = "vgg16c,resnet18c,vgg16,resnet18";
  int runs = 5;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--json") == 0) {
      json = true;
      continue;
    }
    bool ok = v != NULL;
    if (ok && strcmp(a, "--models") == 0)
      ok = snprintf(models_buf, sizeof models_buf, "%s", v) < (int)sizeof models_buf;
    else if (ok && strcmp(a, "--runs") == 0)
      ok = flags_parse_int(v, 1, MAX_RUNS, &runs);
    else
      ok = false;
    if (!ok) {
      fprintf(stderr, "usage: conv_backends [--models a,b,...] [--runs N] [--json]\n");
      return 2;
    }
    i++;
  }
  int status = 0;
  for (char *name = strtok(models_buf, ","); name; name = strtok(NULL, ",")) {
    err e = {0};
    model *z = NULL, *m = NULL;
    if (zoo_build(name, NULL, &z, &e) != ERR_OK || fuse_model(z, &m, &e) != ERR_OK) {
      fprintf(stderr, "conv_backends: %s: %s\n", name, e.msg);
      model_destroy(z);
      return 1;
    }
    model_destroy(z);
    double total[N_BACKENDS] = {0}, best_total = 0, gflop = 0;
    if (!json)
      printf("\n%s: dense convolutions alone, 1 thread, median of %d (thread CPU ms)\n"
             "%-5s %-26s %8s %9s %9s %9s %9s  %s\n",
             name, runs, "layer", "shape (HxWxC k/s -> C)", "MFLOP", backend_names[0],
             backend_names[1], backend_names[2], backend_names[3], "fastest");
    for (int l = 0; l < m->n_layers; l++) {
      const model_layer *L = &m->layers[l];
      if (L->op != MODEL_OP_CONV || L->groups != 1) continue;
      model *c = one_conv(m, l, &e);
      if (!c) {
        fprintf(stderr, "conv_backends: %s layer %d: %s\n", name, l, e.msg);
        status = 1;
        break;
      }
      model_shape in = c->input, out = c->layers[c->n_layers - 1].out;
      float *input = malloc(model_shape_elems(in) * sizeof *input);
      float *output = malloc(model_shape_elems(out) * sizeof *output);
      if (!input || !output) {
        free(input), free(output), model_destroy(c);
        fprintf(stderr, "conv_backends: out of memory\n");
        return 1;
      }
      for (size_t i = 0; i < model_shape_elems(in); i++) input[i] = (float)(i % 13) * 0.05f;
      double ms[N_BACKENDS];
      int fastest = 0;
      for (int b = 0; b < N_BACKENDS && status == 0; b++) {
        if (time_backend(c, backends[b], runs, input, output, &ms[b], &e) != 0) {
          fprintf(stderr, "conv_backends: %s layer %d, %s: %s\n", name, l, backend_names[b],
                  e.msg);
          status = 1;
        }
        total[b] += ms[b];
        if (b < N_BACKENDS - 1 && ms[b] < ms[fastest]) fastest = b;
      }
      double mflop = model_flops(c) / 1e6;
      gflop += mflop / 1e3;
      best_total += ms[fastest];
      char shape[64];
      snprintf(shape, sizeof shape, "%dx%dx%d %dx%d/%d -> %d", in.h, in.w, in.c, L->kernel_h,
               L->kernel_w, L->stride_h, L->out_channels);
      if (json)
        printf("{\"model\":\"%s\",\"layer\":%d,\"in_h\":%d,\"in_w\":%d,\"in_c\":%d,\"kernel\":%d,"
               "\"stride\":%d,\"out_c\":%d,\"mflop\":%.3f,\"xnnpack_ms\":%.4f,\"direct_ms\":%.4f,"
               "\"gemm_ms\":%.4f,\"auto_ms\":%.4f,\"fastest\":\"%s\"}\n",
               name, l, in.h, in.w, in.c, L->kernel_h, L->stride_h, L->out_channels, mflop,
               ms[0], ms[1], ms[2], ms[3], backend_names[fastest]);
      else
        printf("%-5d %-26s %8.1f %9.3f %9.3f %9.3f %9.3f  %s\n", l, shape, mflop, ms[0], ms[1],
               ms[2], ms[3], backend_names[fastest]);
      free(input);
      free(output);
      model_destroy(c);
    }
    if (!json && status == 0)
      printf("%-5s %-26s %8.1f %9.2f %9.2f %9.2f %9.2f  best per layer %.2f\n", "total", "",
             gflop * 1e3, total[0], total[1], total[2], total[3], best_total);
    model_destroy(m);
    if (status) break;
  }
  return status;
}

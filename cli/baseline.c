/* baseline.c — a zoo model whole on one thread (contract in baseline.h). */
#include "cli/baseline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/model.h"
#include "runtime/modelspec.h"
#include "runtime/preprocess.h"
#include "runtime/stats.h"
#include "runtime/xexec.h"

struct baseline_runner {
  model *m;
  xexec *x;
  const Edgedi__V1__Image *img;
  float *input, *logits;
  size_t n_logits;
  double gflop;
};

void baseline_runner_close(baseline_runner *r) {
  if (!r) return;
  xexec_destroy(r->x);
  model_destroy(r->m);
  free(r->input);
  free(r->logits);
  free(r);
}

err_code baseline_runner_open(const char *name, const Edgedi__V1__Image *img, bool emulated,
                              baseline_runner **out, err *e) {
  *out = NULL;
  baseline_runner *r = calloc(1, sizeof *r);
  if (!r) return err_set(e, ERR_NOMEM, "out of memory");
  r->img = img;
  Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
  spec.name = (char *)name;
  spec.zoo = (char *)name; /* what the scheduler's --models preload builds */
  char digest[MODELSPEC_DIGEST_BYTES];
  err_code rc = modelspec_build(&spec, &r->m, digest, e);
  if (rc == ERR_OK)
    rc = emulated ? xexec_create_ex(r->m, 1, XEXEC_CONV_XNNPACK, &r->x, e)
                  : xexec_create(r->m, 1, &r->x, e);
  if (rc == ERR_OK) {
    r->gflop = model_flops(r->m) / 1e9;
    r->n_logits = model_shape_elems(model_tensor_shape(r->m, r->m->n_layers - 1));
    r->input = malloc(model_shape_elems(r->m->input) * sizeof *r->input);
    r->logits = malloc(r->n_logits * sizeof *r->logits);
    if (!r->input || !r->logits) rc = err_set(e, ERR_NOMEM, "out of memory");
  }
  if (rc != ERR_OK) {
    baseline_runner_close(r);
    return err_wrap(e, "baseline of %s", name);
  }
  *out = r;
  return ERR_OK;
}

err_code baseline_runner_run(baseline_runner *r, double *cpu_ms, double *wall_ms, err *e) {
  double c0 = stats_thread_cpu_ms(), w0 = stats_now_ms();
  const Edgedi__V1__Image *img = r->img;
  preprocess_image pi = preprocess_whole(PREPROCESS_U8, img->u8.data, (int)img->height,
                                         (int)img->width, (int)img->channels);
  err_code rc = preprocess_rows(&pi, r->m->input, (model_rows){0, r->m->input.h}, r->input, e);
  if (rc == ERR_OK) rc = xexec_run(r->x, r->input, r->logits, e);
  if (cpu_ms) *cpu_ms = stats_thread_cpu_ms() - c0;
  if (wall_ms) *wall_ms = stats_now_ms() - w0;
  return rc;
}

/* The runs in this process: medians of thread CPU and wall time, logits. */
static err_code measure_here(const char *name, const Edgedi__V1__Image *img, int runs,
                             bool emulated, baseline *b, err *e) {
  memset(b, 0, sizeof *b);
  if (runs < 1) return err_set(e, ERR_INVALID, "%d baseline runs", runs);
  baseline_runner *r = NULL;
  double *cpu = calloc((size_t)runs, sizeof *cpu), *wall = calloc((size_t)runs, sizeof *wall);
  err_code rc = cpu && wall ? baseline_runner_open(name, img, emulated, &r, e)
                            : err_set(e, ERR_NOMEM, "out of memory");
  for (int i = -1; i < runs && rc == ERR_OK; i++) { /* run -1: warm-up */
    rc = baseline_runner_run(r, i >= 0 ? &cpu[i] : NULL, i >= 0 ? &wall[i] : NULL, e);
    if (rc != ERR_OK) err_wrap(e, "baseline of %s", name);
  }
  if (rc == ERR_OK) {
    b->cpu_ms = stats_median(cpu, runs);
    b->wall_ms = stats_median(wall, runs);
    b->gflop = r->gflop;
    b->n_logits = r->n_logits;
    b->logits = r->logits; /* the runner's, handed over */
    r->logits = NULL;
  }
  free(cpu);
  free(wall);
  baseline_runner_close(r);
  return rc;
}

/* The median thread CPU time of `runs` runs in a forked copy of this
 * process, or NAN when it could not tell. Reads the pipe before reaping:
 * a caller's SIGCHLD handling may reap the child first. */
static double measure_in_child(const char *name, const Edgedi__V1__Image *img, int runs,
                               bool emulated) {
  int fd[2];
  if (pipe(fd) != 0) return NAN;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]);
    close(fd[1]);
    return NAN;
  }
  if (pid == 0) {
    close(fd[0]);
    baseline b;
    err e = {0};
    double ms = measure_here(name, img, runs, emulated, &b, &e) == ERR_OK ? b.cpu_ms : NAN;
    ssize_t w = write(fd[1], &ms, sizeof ms);
    _exit(w == (ssize_t)sizeof ms ? 0 : 1);
  }
  close(fd[1]);
  double ms = NAN;
  ssize_t got;
  do got = read(fd[0], &ms, sizeof ms);
  while (got < 0 && errno == EINTR);
  close(fd[0]);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  return got == (ssize_t)sizeof ms ? ms : NAN;
}

err_code baseline_measure(const char *name, const Edgedi__V1__Image *img, int runs,
                          bool emulated, baseline *b, err *e) {
  err_code rc = measure_here(name, img, runs, emulated, b, e);
  if (rc != ERR_OK) return rc;
  double cpu[BASELINE_PROCESSES];
  int n = 0;
  cpu[n++] = b->cpu_ms;
  for (int i = 1; i < BASELINE_PROCESSES; i++) {
    double ms = measure_in_child(name, img, runs, emulated);
    if (isfinite(ms) && ms > 0) cpu[n++] = ms;
  }
  b->cpu_ms = stats_median(cpu, n);
  b->processes = n;
  return ERR_OK;
}

void baseline_free(baseline *b) {
  free(b->logits);
  b->logits = NULL;
}

err_code baseline_measure_cpu(const char *model, const Edgedi__V1__Image *img, int runs,
                              bool emulated, double *cpu_ms, err *e) {
  baseline b;
  err_code rc = baseline_measure(model, img, runs, emulated, &b, e);
  if (rc != ERR_OK) return rc;
  *cpu_ms = b.cpu_ms;
  baseline_free(&b);
  return ERR_OK;
}

/* ortproc.h — ONNX Runtime (CPU, the npm package onnxruntime-node) as a
 * child process that stays warm: benchmarks/ort/run_ort.js, driven by
 * commands over a FIFO so a benchmark can alternate rounds between EdgeDI
 * and ORT without reloading either.
 *
 * Life: ortproc_start (node loads the model, runs it once on the input,
 * writes that output, answers "ready") -> ortproc_run (K timed runs, their
 * wall times in ms as node measures them around session.run) ... ->
 * ortproc_destroy ("quit", then stopped and reaped like any procs child).
 * Nothing prints; node's stderr goes to the log file given.
 */
#ifndef EDGEDI_BENCH_ORTPROC_H
#define EDGEDI_BENCH_ORTPROC_H

#include <stddef.h>

#include "runtime/err.h"

enum {
  /* Runs per command: the reply ("ms T1 ... TK") must fit one procs line. */
  ORTPROC_MAX_RUNS_PER_COMMAND = 32,
  /* Loading vgg16 (0.5 GB of weights) and its first run. */
  ORTPROC_READY_TIMEOUT_MS = 300000,
  /* Per timed run, on a loaded machine. */
  ORTPROC_RUN_TIMEOUT_MS = 60000,
};

typedef struct ortproc_spec {
  const char *node;     /* the node program; NULL: "node" on PATH */
  const char *script;   /* run_ort.js (ortproc_find_script) */
  const char *model;    /* the .onnx file */
  const char *input;    /* raw little-endian float32, NCHW */
  int shape[4];         /* 1, C, H, W */
  int threads;          /* ORT intra-op threads */
  const char *output;   /* the first run's output, raw float32 */
  const char *work_dir; /* where the command FIFO is made */
  const char *log_path; /* node's stderr (appended); NULL: ours */
} ortproc_spec;

typedef struct ortproc ortproc;

/* Where run_ort.js is, resolved to its real path so that node finds the
 * node_modules beside it: `given` if not NULL, else this program's
 * runfiles, $BUILD_WORKSPACE_DIRECTORY/benchmarks/ort, ./benchmarks/ort.
 * ERR_NOT_FOUND naming what was tried, or when onnxruntime-node is not
 * installed beside it (scripts/setup.sh --bench installs it). */
err_code ortproc_find_script(const char *given, char *out, size_t len, err *e);

err_code ortproc_start(const ortproc_spec *s, ortproc **out, err *e);

/* k timed runs (1 <= k <= ORTPROC_MAX_RUNS_PER_COMMAND) into ms[0..k). */
err_code ortproc_run(ortproc *p, int k, double *ms, err *e);

/* Asks node to quit, stops it if it does not, frees. NULL is fine. */
void ortproc_destroy(ortproc *p);

#endif

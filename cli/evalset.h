/* evalset.h — a labelled image folder, and a model's accuracy on it.
 *
 * The folder holds labels.csv (columns file,class,label,split, a header
 * row first; `file` relative to the folder) as tools/train/dataset.py
 * writes it for the synthetic NEU-like set, and the images it names
 * (8-bit PGM, or anything stb_image reads; all of one size). Images are
 * decoded once and kept as pixels; every run preprocesses them exactly as
 * every other EdgeDI path does (runtime/preprocess.h: x / 255, gray
 * replicated to the model's channels) and runs each one alone (batch 1) on
 * the XNNPACK executor, as a device serves a request.
 *
 * Items keep labels.csv's order (the order tools/train/evaluate.py writes
 * its predictions and logits in for the same split).
 */
#ifndef EDGEDI_CLI_EVALSET_H
#define EDGEDI_CLI_EVALSET_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/err.h"
#include "runtime/model.h"

enum {
  EVALSET_MAX_ITEMS = 1 << 20,
  EVALSET_PATH_BYTES = 256,
  EVALSET_CLASS_BYTES = 64,
  EVALSET_MAX_LINE_BYTES = 4096,
  EVALSET_MAX_LABEL = 1 << 16,
};

typedef struct evalset {
  int n;
  int height, width, channels;   /* of every image */
  char (*files)[EVALSET_PATH_BYTES];  /* as labels.csv names them */
  char (*classes)[EVALSET_CLASS_BYTES];
  int *labels;
  uint8_t *pixels;               /* n images, HWC */
} evalset;

/* Loads the items of `split` ("heldout", "train", or "all") of the folder
 * `dir`. ERR_IO / ERR_CORRUPT / ERR_INVALID name the file and line that is
 * wrong; ERR_NOT_FOUND when the split is empty. */
err_code evalset_load(const char *dir, const char *split, evalset **out,
                      err *e);
void evalset_destroy(evalset *s);

typedef struct evalset_run_opts {
  int threads;     /* XNNPACK threads; 1 = the calling thread only */
  /* >= 0: stop as soon as the accuracy cannot reach this any more. */
  double stop_below;
  float *logits;   /* NULL, or n * (model outputs) floats, item order */
  int *predictions; /* NULL, or n top-1 classes */
} evalset_run_opts;

typedef struct evalset_result {
  int correct, evaluated;
  double accuracy;     /* correct / n; when stopped early, an upper bound
                          below stop_below */
  bool stopped_early;
  double median_ms;    /* of one image's xexec_run, over the images run */
  /* The same in CPU time of the calling thread: with threads = 1 it is the
   * run's own work, much less disturbed by other processes on a shared
   * machine than the wall time. */
  double median_cpu_ms;
  int outputs;         /* values per image (the model's classes) */
} evalset_result;

/* Runs the finalized (fused) model m on every item. ERR_SHAPE when the
 * images do not fit the model's input or a label is not one of its
 * outputs. */
err_code evalset_run(const evalset *s, const model *m,
                     const evalset_run_opts *o, evalset_result *r, err *e);

/* For a CSV file whose header has a `file` column (tools/train/evaluate.py's
 * predictions.csv): row_of[i] = the data row (from 0) naming item i.
 * ERR_NOT_FOUND when an item is missing from it; *rows = its data rows. */
err_code evalset_csv_order(const evalset *s, const char *csv_path,
                           int *row_of, int *rows, err *e);

#endif

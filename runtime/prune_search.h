/* prune_search.h — the paper's pruning loop: layer by layer, remove the
 * filters with the smallest sum |W| a step at a time, keeping each step only
 * while accuracy on a validation set stays at or above a floor.
 *
 * The loop knows nothing about data: the caller measures accuracy through
 * prune_eval_fn (EdgeDI's CLI runs a labelled image folder on the XNNPACK
 * executor). Layers are visited in graph order, each once; for a layer
 * with C filters at the start, a step removes max(1, round(step * C)) of
 * them (never the last min_filters; more, to leave a multiple of
 * `multiple`), and the layer is left at the first step that misses the
 * floor. prune.h says which layers can be pruned and
 * how.
 */
#ifndef EDGEDI_PRUNE_SEARCH_H
#define EDGEDI_PRUNE_SEARCH_H

#include <stdbool.h>

#include "runtime/err.h"
#include "runtime/model.h"

enum {
  PRUNE_MAX_EVALS_DEFAULT = 1000,
};

typedef struct prune_search_opts {
  double floor;     /* accuracy floor, in [0, 1] */
  double step;      /* fraction of a layer's filters per step, in (0, 1] */
  int min_filters;  /* filters every layer keeps, >= 1 */
  /* > 1: a step leaves a multiple of this many filters (rounding the
   * step up), since SIMD kernels run a 6-channel layer as slowly as an
   * 8-channel one; 1: the paper's plain count. */
  int multiple;
  int max_evals;    /* accuracy evaluations at most, the baseline included */
  double known_accuracy; /* the input model's, if measured already; < 0
                            (the default): evaluate it first */
} prune_search_opts;

prune_search_opts prune_search_defaults(void);

/* Accuracy of m in [0, 1]. It may stop early and return any value below
 * `floor` once it knows the floor is missed (floor < 0: never stop). */
typedef err_code (*prune_eval_fn)(void *ctx, const model *m, double floor,
                                  double *accuracy, err *e);

/* One tried step, for progress reports. */
typedef struct prune_step {
  int layer;                      /* the convolution */
  int filters_before, filters_after;
  double accuracy;                /* of the model with the step applied */
  bool kept;
  const model *current;           /* the model after this step's decision */
} prune_step;

typedef void (*prune_progress_fn)(void *ctx, const prune_step *s);

typedef struct prune_search_result {
  model *pruned;          /* finalized; the caller frees it */
  double accuracy_before; /* of the input model */
  double accuracy_after;  /* of `pruned` (a kept step's full evaluation) */
  int evals, steps_tried, steps_kept;
  int layers_prunable, layers_pruned;
  int filters_removed;
  bool hit_max_evals;
} prune_search_result;

/* Runs the loop on m (finalized; not changed). ERR_INVALID for options out
 * of range, and when m's own accuracy is already below the floor. progress
 * may be NULL. */
err_code prune_search(const model *m, const prune_search_opts *o,
                      prune_eval_fn eval, prune_progress_fn progress,
                      void *ctx, prune_search_result *r, err *e);

#endif

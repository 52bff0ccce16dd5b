/* prune_search.c — the greedy layer-by-layer pruning loop (contract in
 * prune_search.h).
 *
 * The prunable layers are found once, on the input model: pruning changes
 * channel counts, never which layers feed which. Every step builds a new
 * model from the current one (prune_filters never changes its input), so
 * a step that misses the floor is undone by dropping the new model.
 */
#include "runtime/prune_search.h"

#include <math.h>
#include <stdlib.h>

#include "runtime/prune.h"

prune_search_opts prune_search_defaults(void) {
  return (prune_search_opts){
      .floor = 0, .step = 0.25, .min_filters = 1, .multiple = 1,
      .max_evals = PRUNE_MAX_EVALS_DEFAULT, .known_accuracy = -1};
}

static err_code check_opts(const prune_search_opts *o, err *e) {
  if (!(o->floor >= 0 && o->floor <= 1))
    return err_set(e, ERR_INVALID, "prune: the accuracy floor %g is not in "
                   "[0, 1]", o->floor);
  if (!(o->step > 0 && o->step <= 1))
    return err_set(e, ERR_INVALID, "prune: the step %g is not in (0, 1]",
                   o->step);
  if (o->min_filters < 1)
    return err_set(e, ERR_INVALID, "prune: every layer keeps at least one "
                   "filter, not %d", o->min_filters);
  if (o->multiple < 1)
    return err_set(e, ERR_INVALID, "prune: multiple must be at least 1, "
                   "not %d", o->multiple);
  if (o->max_evals < 1)
    return err_set(e, ERR_INVALID, "prune: max_evals must be at least 1");
  return ERR_OK;
}

/* Tries steps on layer l of *cur until one misses the floor; *cur becomes
 * the model with the kept steps. */
static err_code prune_layer(model **cur, int l, const prune_search_opts *o,
                            prune_eval_fn eval, prune_progress_fn progress,
                            void *ctx, prune_search_result *r, err *e) {
  int c0 = (*cur)->layers[l].out_channels;
  int chunk = (int)lround(o->step * c0);
  if (chunk < 1) chunk = 1;
  int *filters = malloc((size_t)c0 * sizeof *filters);
  if (!filters) return err_set(e, ERR_NOMEM, "out of memory");
  err_code rc = ERR_OK;
  bool pruned = false;
  for (;;) {
    int c = (*cur)->layers[l].out_channels;
    int left = c - chunk, least = o->min_filters;
    if (o->multiple > 1) {
      left -= left % o->multiple;
      least += (o->multiple - least % o->multiple) % o->multiple;
    }
    if (left < least) left = least;
    int n = c - left;
    if (n < 1) break;
    if (r->evals >= o->max_evals) {
      r->hit_max_evals = true;
      break;
    }
    model *next = NULL;
    double acc = 0;
    rc = prune_smallest(*cur, l, n, filters, e);
    if (rc == ERR_OK) rc = prune_filters(*cur, l, filters, n, &next, e);
    if (rc == ERR_OK) rc = eval(ctx, next, o->floor, &acc, e);
    if (rc != ERR_OK) {
      model_destroy(next);
      break;
    }
    r->evals++;
    r->steps_tried++;
    bool keep = acc >= o->floor;
    if (keep) {
      model_destroy(*cur);
      *cur = next;
      r->steps_kept++;
      r->filters_removed += n;
      r->accuracy_after = acc;
      pruned = true;
    } else {
      model_destroy(next);
    }
    if (progress)
      progress(ctx, &(prune_step){.layer = l, .filters_before = c,
                                  .filters_after = c - n, .accuracy = acc,
                                  .kept = keep, .current = *cur});
    if (!keep) break;
  }
  r->layers_pruned += pruned;
  free(filters);
  return rc;
}

err_code prune_search(const model *m, const prune_search_opts *o,
                      prune_eval_fn eval, prune_progress_fn progress,
                      void *ctx, prune_search_result *r, err *e) {
  *r = (prune_search_result){0};
  err_code rc = check_opts(o, e);
  if (rc != ERR_OK) return rc;
  if (!m || !m->finalized)
    return err_set(e, ERR_INVALID, "prune: the model must be finalized");
  bool *prunable = calloc((size_t)m->n_layers, sizeof *prunable);
  if (!prunable) return err_set(e, ERR_NOMEM, "out of memory");
  for (int l = 0; l < m->n_layers; l++) {
    prunable[l] = prune_check(m, l, NULL) == ERR_OK;
    r->layers_prunable += prunable[l];
  }
  model *cur = NULL;
  if (o->known_accuracy >= 0) {
    r->accuracy_before = o->known_accuracy;
  } else {
    rc = eval(ctx, m, -1, &r->accuracy_before, e);
    r->evals = 1;
  }
  if (rc == ERR_OK) {
    r->accuracy_after = r->accuracy_before;
    if (r->accuracy_before < o->floor)
      rc = err_set(e, ERR_INVALID,
                   "prune: the model's accuracy %.4f is already below the "
                   "floor %.4f", r->accuracy_before, o->floor);
  }
  if (rc == ERR_OK && !(cur = model_clone(m, e))) rc = e ? e->code : ERR_NOMEM;
  for (int l = 0; rc == ERR_OK && l < m->n_layers && !r->hit_max_evals; l++)
    if (prunable[l]) rc = prune_layer(&cur, l, o, eval, progress, ctx, r, e);
  free(prunable);
  if (rc != ERR_OK) {
    model_destroy(cur);
    return rc;
  }
  r->pruned = cur;
  return ERR_OK;
}

/* models.h — the models the scheduler serves: name -> fused graph, digest,
 * the spec agents build it from, and the executor that runs its head.
 *
 * A model enters by models_load() (the LoadModel RPC, the --models preload)
 * or comes back from the database at start (models_restore()). Either way
 * it is built with modelspec_build(), the very function the agents use, so
 * the digest names the same graph everywhere.
 *
 * Promises.
 *  - A name always means one model: loading a name again with a spec that
 *    builds the same digest is a no-op (the entry is returned, added
 *    false); another digest is ERR_INVALID naming both digests, and
 *    nothing changes. The database enforces the same rule across restarts.
 *  - What is in memory is in the database: an entry is added only after
 *    store_model_add() succeeded.
 *  - Entries are never removed while the registry lives: a models_entry
 *    pointer stays valid, and its fields other than `head` never change,
 *    until models_destroy().
 *  - `tables` are the model's planning tables (plan_prepare), built once at
 *    load and read-only after: pass them in plan_options so that planning a
 *    request does not rebuild them. NULL when they could not be built (the
 *    planners then build their own, or say why the model cannot be split).
 *  - `head` runs the layers after the spatial part (pooling + classifier).
 *    An xexec runs one strip at a time, so whoever uses it — directly or
 *    through dispatch_on_message(), which runs the head — holds head_mu.
 *
 * Threads: every function may be called from any thread. Building a model
 * (seconds for a large one) happens outside the registry's lock.
 */
#ifndef EDGEDI_MODELS_H
#define EDGEDI_MODELS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"
#include "runtime/model.h"
#include "runtime/modelspec.h"
#include "runtime/xexec.h"
#include "scheduler/head_rows.h"
#include "scheduler/plan.h"
#include "storage/store.h"

typedef struct models_entry {
  char name[STORE_NAME_BYTES];
  char digest[MODELSPEC_DIGEST_BYTES];
  model *m;                     /* fused, finalized */
  Edgedi__V1__ModelSpec *spec;  /* name and digest set: what agents load */
  double gflop;
  uint64_t params;
  int layers;
  plan_tables *tables;          /* planning tables of m, or NULL */
  pthread_mutex_t head_mu;      /* guards head */
  xexec *head;
  head_rows *head_rows;         /* the head's first FC by rows (head_rows.h), or NULL */
  pthread_mutex_t wire_mu;      /* guards wire_density */
  double *wire_density;         /* per layer (wire_density.h), or NULL */
} models_entry;

typedef struct models models;

/* An empty registry writing to `st` (which outlives it). Head executors
 * get `head_threads` threads (<= 1: the caller's thread only). With
 * measure_layer_costs each model's layers are timed once as it is built
 * (layer_cost.h; about two single-device runs of it) and the planning
 * tables price strips by those costs; without, by FLOPs. */
err_code models_create(store *st, int head_threads, bool measure_layer_costs, models **out,
                       err *e);
void models_destroy(models *ms);

/* The model's wire densities (wire_density.h) into out[0 .. layers):
 * false, and out untouched, when it has none. */
bool models_wire_density(const models_entry *en, double *out);
/* What a request saw layer `layer`'s output rows take: raw bytes as
 * floats, sent as they crossed the links. */
void models_note_wire(const models_entry *en, int layer, uint64_t raw, uint64_t sent);

/* Rebuilds every model the database holds. A model that no longer builds,
 * or builds to another digest than the one stored (the zoo changed), is
 * skipped: *restored counts the others, *skipped (may be NULL) the skipped,
 * and `problem` (may be NULL) describes the first one skipped. Fails only
 * when the database cannot be read. */
err_code models_restore(models *ms, int *restored, int *skipped, err *problem,
                        err *e);

/* Builds and adds the model `spec` describes under spec->name. When the
 * spec carries a digest it must be the one it builds. *out (may be NULL)
 * gets the entry, *added (may be NULL) whether it is new. */
err_code models_load(models *ms, const Edgedi__V1__ModelSpec *spec,
                     const models_entry **out, bool *added, err *e);

/* The model called `name`, or NULL. */
const models_entry *models_find(models *ms, const char *name);

/* A snapshot of the entries, in load order: up to `max` pointers into
 * `out`; returns how many there are in all. */
int models_list(models *ms, const models_entry **out, int max);

/* Take and give back the entry's head executor (head_mu): around every
 * use of en->head, and every dispatcher call that may run the head. */
void models_head_lock(const models_entry *en);
void models_head_unlock(const models_entry *en);

/* "a, b, c" (or "none"), for messages that say what is loaded. */
void models_names(models *ms, char *buf, size_t len);

#endif

/* models.c — the scheduler's model registry (contract in models.h).
 *
 * Entries sit in a growing array of pointers under one mutex; an entry is
 * complete (model built, head executor prepared, database row written)
 * before it is published, so readers never see half an entry and need no
 * lock beyond the array's. A spec is compared as its packed bytes with the
 * digest cleared: the same spec again skips the build entirely.
 */
#include "scheduler/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/layer_cost.h"
#include "scheduler/wire_density.h"

enum { MODELS_INITIAL_CAP = 8 };

struct models {
  store *st;
  int head_threads;
  bool measure_layer_costs;
  pthread_mutex_t mu; /* guards the array and serializes adds */
  models_entry **v;
  int n, cap;
};

err_code models_create(store *st, int head_threads, bool measure_layer_costs, models **out,
                       err *e) {
  *out = NULL;
  if (!st) return err_set(e, ERR_INVALID, "models: no store");
  models *ms = calloc(1, sizeof *ms);
  if (!ms) return err_set(e, ERR_NOMEM, "models: out of memory");
  ms->st = st;
  ms->head_threads = head_threads;
  ms->measure_layer_costs = measure_layer_costs;
  pthread_mutex_init(&ms->mu, NULL);
  *out = ms;
  return ERR_OK;
}

static void entry_free(models_entry *en) {
  if (!en) return;
  xexec_destroy(en->head);
  head_rows_destroy(en->head_rows);
  plan_tables_destroy(en->tables);
  model_destroy(en->m);
  if (en->spec) protobuf_c_message_free_unpacked(&en->spec->base, NULL);
  pthread_mutex_destroy(&en->head_mu);
  pthread_mutex_destroy(&en->wire_mu);
  free(en->wire_density);
  free(en);
}

void models_destroy(models *ms) {
  if (!ms) return;
  for (int i = 0; i < ms->n; i++) entry_free(ms->v[i]);
  free(ms->v);
  pthread_mutex_destroy(&ms->mu);
  free(ms);
}

/* The spec packed with `digest` (NULL: cleared) and `name`; free() it. */
static uint8_t *pack_spec(const Edgedi__V1__ModelSpec *spec, const char *name,
                          const char *digest, size_t *len) {
  Edgedi__V1__ModelSpec s = *spec;
  s.name = (char *)name;
  s.digest = (char *)(digest ? digest : "");
  *len = edgedi__v1__model_spec__get_packed_size(&s);
  uint8_t *buf = malloc(*len ? *len : 1);
  if (buf) edgedi__v1__model_spec__pack(&s, buf);
  return buf;
}

static models_entry *find_locked(models *ms, const char *name) {
  for (int i = 0; i < ms->n; i++)
    if (strcmp(ms->v[i]->name, name) == 0) return ms->v[i];
  return NULL;
}

const models_entry *models_find(models *ms, const char *name) {
  if (!ms || !name) return NULL;
  pthread_mutex_lock(&ms->mu);
  models_entry *en = find_locked(ms, name);
  pthread_mutex_unlock(&ms->mu);
  return en;
}

int models_list(models *ms, const models_entry **out, int max) {
  pthread_mutex_lock(&ms->mu);
  int n = ms->n;
  for (int i = 0; i < n && i < max; i++) out[i] = ms->v[i];
  pthread_mutex_unlock(&ms->mu);
  return n;
}

/* The mutex is the one field of an entry that changes; entries are handed
 * out const so that nothing else can. */
void models_head_lock(const models_entry *en) {
  pthread_mutex_lock((pthread_mutex_t *)&en->head_mu);
}

void models_head_unlock(const models_entry *en) {
  pthread_mutex_unlock((pthread_mutex_t *)&en->head_mu);
}

void models_names(models *ms, char *buf, size_t len) {
  if (!len) return;
  buf[0] = '\0';
  pthread_mutex_lock(&ms->mu);
  size_t used = 0;
  for (int i = 0; i < ms->n && used < len; i++) {
    int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", ms->v[i]->name);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (ms->n == 0) snprintf(buf, len, "none");
  pthread_mutex_unlock(&ms->mu);
}

/* Builds a complete entry (model, digest, owned spec, head executor) from
 * a spec; nothing is published. */
static err_code build_entry(models *ms, const Edgedi__V1__ModelSpec *spec,
                            const char *name, models_entry **out, err *e) {
  *out = NULL;
  models_entry *en = calloc(1, sizeof *en);
  if (!en) return err_set(e, ERR_NOMEM, "models: out of memory");
  pthread_mutex_init(&en->head_mu, NULL);
  pthread_mutex_init(&en->wire_mu, NULL);
  snprintf(en->name, sizeof en->name, "%s", name);
  err_code rc = modelspec_build(spec, &en->m, en->digest, e);
  if (rc != ERR_OK) {
    entry_free(en);
    return err_wrap(e, "model '%s'", name);
  }
  size_t len;
  uint8_t *packed = pack_spec(spec, name, en->digest, &len);
  if (packed)
    en->spec = edgedi__v1__model_spec__unpack(NULL, len, packed);
  free(packed);
  if (!en->spec) {
    entry_free(en);
    return err_set(e, ERR_NOMEM, "model '%s': out of memory for its spec", name);
  }
  /* XNNPACK for every layer: the head's layers (pooling, classifier) run on
   * it anyway, and the layer costs below are measured with it, the kernels
   * boards run (an emulated agent too, tile.h). */
  rc = xexec_create_ex(en->m, ms->head_threads, XEXEC_CONV_XNNPACK, &en->head, e);
  if (rc != ERR_OK) {
    entry_free(en);
    return err_wrap(e, "model '%s': head executor", name);
  }
  /* Once per model rather than on every request; a model the planners
   * cannot split has none, and they say why when asked. The layers' costs
   * are measured with the head's executor (layer_cost.h), or left at their
   * FLOPs when that fails or is turned off. */
  double *cost = NULL;
  if (ms->measure_layer_costs) {
    cost = malloc((size_t)en->m->n_layers * sizeof *cost);
    err ignored = {0};
    if (cost && layer_cost_measure(en->head, LAYER_COST_DEFAULT_REPS, cost, &ignored) != ERR_OK) {
      free(cost);
      cost = NULL;
    }
  }
  err ignored = {0};
  if (plan_prepare_weighted(en->m, cost, &en->tables, &ignored) != ERR_OK) en->tables = NULL;
  free(cost);
  /* The prior of how light each cut's rows travel; without it the
   * planner prices raw floats (wire_density.h). */
  if (en->tables) {
    en->wire_density = malloc((size_t)en->m->n_layers * sizeof *en->wire_density);
    if (en->wire_density && wire_density_measure(en->head, en->wire_density, &ignored) != ERR_OK) {
      free(en->wire_density);
      en->wire_density = NULL;
    }
  }
  /* The head's first FC by rows, where the head starts with one (VGG);
   * without memory for it the head runs whole, as it may. */
  head_rows_create(en->m, plan_head_first(en->m), &en->head_rows, &ignored);
  en->gflop = model_flops(en->m) / 1e9;
  en->params = model_param_count(en->m);
  en->layers = en->m->n_layers;
  *out = en;
  return ERR_OK;
}

static err_code publish_locked(models *ms, models_entry *en, err *e) {
  if (ms->n == ms->cap) {
    int cap = ms->cap ? 2 * ms->cap : MODELS_INITIAL_CAP;
    models_entry **v = realloc(ms->v, (size_t)cap * sizeof *v);
    if (!v) return err_set(e, ERR_NOMEM, "models: out of memory");
    ms->v = v;
    ms->cap = cap;
  }
  ms->v[ms->n++] = en;
  return ERR_OK;
}

/* The same spec as an entry's, digest aside: no need to build again. */
static bool same_spec(const models_entry *en, const Edgedi__V1__ModelSpec *spec) {
  size_t a_len, b_len;
  uint8_t *a = pack_spec(en->spec, en->name, NULL, &a_len);
  uint8_t *b = pack_spec(spec, en->name, NULL, &b_len);
  bool same = a && b && a_len == b_len && memcmp(a, b, a_len) == 0;
  free(a);
  free(b);
  return same;
}

err_code models_load(models *ms, const Edgedi__V1__ModelSpec *spec,
                     const models_entry **out, bool *added, err *e) {
  if (out) *out = NULL;
  if (added) *added = false;
  if (!ms || !spec) return err_set(e, ERR_INVALID, "LoadModel: no model spec");
  const char *name = spec->name ? spec->name : "";
  if (!name[0]) return err_set(e, ERR_INVALID, "LoadModel: the spec has no name");
  if (strlen(name) >= STORE_NAME_BYTES)
    return err_set(e, ERR_INVALID, "LoadModel: model name of %zu bytes, at most %d",
                   strlen(name), STORE_NAME_BYTES - 1);
  const models_entry *known = models_find(ms, name);
  if (known && same_spec(known, spec) &&
      (!spec->digest || !spec->digest[0] || strcmp(spec->digest, known->digest) == 0)) {
    if (out) *out = known;
    return ERR_OK;
  }
  models_entry *en;
  err_code rc = build_entry(ms, spec, name, &en, e);
  if (rc != ERR_OK) return rc;
  if (spec->digest && spec->digest[0] && strcmp(spec->digest, en->digest) != 0) {
    rc = err_set(e, ERR_INVALID, "model '%s': the spec says digest %s, it builds %s",
                 name, spec->digest, en->digest);
    entry_free(en);
    return rc;
  }
  pthread_mutex_lock(&ms->mu);
  models_entry *old = find_locked(ms, name);
  if (old) {
    if (strcmp(old->digest, en->digest) != 0)
      rc = err_set(e, ERR_INVALID,
                   "model '%s' is already loaded with digest %s; this spec builds %s "
                   "(a name always means one model: choose another name)",
                   name, old->digest, en->digest);
    else if (out)
      *out = old;
    pthread_mutex_unlock(&ms->mu);
    entry_free(en);
    return rc;
  }
  size_t len;
  uint8_t *packed = pack_spec(spec, name, en->digest, &len);
  store_model row = {.gflop = en->gflop, .params = en->params, .layers = (uint32_t)en->layers};
  snprintf(row.name, sizeof row.name, "%s", name);
  snprintf(row.digest, sizeof row.digest, "%s", en->digest);
  bool is_new = false;
  rc = packed ? store_model_add(ms->st, &row, packed, len, &is_new, e)
              : err_set(e, ERR_NOMEM, "models: out of memory");
  free(packed);
  if (rc == ERR_OK) rc = publish_locked(ms, en, e);
  pthread_mutex_unlock(&ms->mu);
  if (rc != ERR_OK) {
    entry_free(en);
    return rc;
  }
  if (out) *out = en;
  if (added) *added = true;
  return ERR_OK;
}

err_code models_restore(models *ms, int *restored, int *skipped, err *problem,
                        err *e) {
  *restored = 0;
  if (skipped) *skipped = 0;
  store_model *rows = NULL;
  size_t n = 0;
  err_code rc = store_model_list(ms->st, &rows, &n, e);
  if (rc != ERR_OK) return err_wrap(e, "restoring models");
  for (size_t i = 0; i < n; i++) {
    err pe = {0};
    void *blob = NULL;
    size_t blob_len = 0;
    models_entry *en = NULL;
    Edgedi__V1__ModelSpec *spec = NULL;
    store_model row;
    err_code prc = store_model_get(ms->st, rows[i].name, &row, &blob, &blob_len, &pe);
    if (prc == ERR_OK) {
      spec = edgedi__v1__model_spec__unpack(NULL, blob_len, blob);
      if (!spec) prc = err_set(&pe, ERR_CORRUPT, "its stored spec does not decode");
    }
    if (prc == ERR_OK) prc = build_entry(ms, spec, rows[i].name, &en, &pe);
    if (prc == ERR_OK && strcmp(en->digest, rows[i].digest) != 0)
      prc = err_set(&pe, ERR_CORRUPT,
                    "it now builds digest %s, the database says %s (the model "
                    "code changed)", en->digest, rows[i].digest);
    if (prc == ERR_OK) {
      pthread_mutex_lock(&ms->mu);
      models_entry *there = find_locked(ms, en->name); /* a preload raced us */
      if (!there) prc = publish_locked(ms, en, &pe);
      pthread_mutex_unlock(&ms->mu);
      if (there || prc != ERR_OK) entry_free(en);
      en = NULL;
      if (prc == ERR_OK) (*restored)++;
    }
    if (prc != ERR_OK) {
      if (skipped) (*skipped)++;
      if (problem && problem->code == ERR_OK)
        err_set(problem, prc, "model '%s' not restored: %.400s", rows[i].name, pe.msg);
      entry_free(en);
    }
    if (spec) protobuf_c_message_free_unpacked(&spec->base, NULL);
    store_free(blob);
  }
  store_free(rows);
  return ERR_OK;
}

/* The densities change after load, under their own lock (as the head's). */
bool models_wire_density(const models_entry *en, double *out) {
  if (!en) return false;
  pthread_mutex_lock((pthread_mutex_t *)&en->wire_mu);
  bool have = en->wire_density != NULL;
  if (have) memcpy(out, en->wire_density, (size_t)en->m->n_layers * sizeof *out);
  pthread_mutex_unlock((pthread_mutex_t *)&en->wire_mu);
  return have;
}

void models_note_wire(const models_entry *en, int layer, uint64_t raw, uint64_t sent) {
  if (!en || layer < 0 || layer >= en->m->n_layers) return;
  pthread_mutex_lock((pthread_mutex_t *)&en->wire_mu);
  if (en->wire_density) wire_density_note(&en->wire_density[layer], raw, sent);
  pthread_mutex_unlock((pthread_mutex_t *)&en->wire_mu);
}

/* store_models.c — the models clients loaded, by name.
 *
 * A name always means the same model: plans, tiles and requests refer to a
 * model by name, so letting a name point at another graph later would make
 * the history lie. The digest (of the fused graph) is the identity: adding
 * a name again with the same digest is a no-op (a scheduler restart reloads
 * its models), with another digest is refused. The spec is kept as the
 * bytes the client sent, so the scheduler can rebuild the model and send it
 * to agents after a restart.
 */
#include "storage/store_internal.h"

#include <stdlib.h>
#include <string.h>

static const char k_model_insert[] =
    "INSERT INTO models(name, digest, spec, gflop, params, layers, "
    "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
    "ON CONFLICT(name) DO NOTHING";
static const char k_model_digest[] =
    "SELECT digest FROM models WHERE name = ?1";
static const char k_model_get[] =
    "SELECT name, digest, gflop, params, layers, created_at, spec "
    "FROM models WHERE name = ?1";
static const char k_model_all[] =
    "SELECT name, digest, gflop, params, layers, created_at "
    "FROM models ORDER BY name";

static void read_model_row(sqlite3_stmt *st, void *dst) {
  store_model *m = dst;
  memset(m, 0, sizeof *m);
  store_column_text(st, 0, m->name, sizeof m->name);
  store_column_text(st, 1, m->digest, sizeof m->digest);
  m->gflop = sqlite3_column_double(st, 2);
  m->params = (uint64_t)sqlite3_column_int64(st, 3);
  m->layers = (uint32_t)sqlite3_column_int64(st, 4);
  m->created_at = sqlite3_column_int64(st, 5);
}

/* Inside the transaction: insert, or compare with the name's digest. */
static err_code add_tx(store *s, const store_model *m, const void *spec,
                       size_t spec_bytes, bool *added, err *e) {
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_model_insert, &st, e);
  if (code != ERR_OK) return code;
  sqlite3_bind_text(st, 1, m->name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, m->digest, -1, SQLITE_STATIC);
  sqlite3_bind_blob64(st, 3, spec, spec_bytes, SQLITE_STATIC);
  sqlite3_bind_double(st, 4, m->gflop);
  sqlite3_bind_int64(st, 5, (int64_t)m->params);
  sqlite3_bind_int64(st, 6, m->layers);
  sqlite3_bind_int64(st, 7, store_now());
  code = store_step_done(s, st, e, "adding a model");
  if (code != ERR_OK) return code;
  *added = sqlite3_changes(s->db) > 0;
  if (*added) return ERR_OK;

  code = store_stmt(s, k_model_digest, &st, e);
  if (code != ERR_OK) return code;
  sqlite3_bind_text(st, 1, m->name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  char digest[STORE_DIGEST_BYTES] = "";
  if (rc == SQLITE_ROW)
    store_column_text(st, 0, digest, sizeof digest);
  else
    code = store_sqlite_error(s, rc, e, "reading a model's digest");
  store_stmt_done(st);
  if (code != ERR_OK) return code;
  if (strcmp(digest, m->digest) != 0)
    return err_set(e, ERR_INVALID,
                   "model name '%s' already means another model (digest "
                   "%.16s..., this one %.16s...); load it under a new name",
                   m->name, digest, m->digest);
  return ERR_OK;
}

err_code store_model_add(store *s, const store_model *m, const void *spec,
                         size_t spec_bytes, bool *added_out, err *e) {
  if (!s || !m)
    return err_set(e, ERR_INVALID, "store_model_add: no store or model");
  err_code code;
  if ((code = store_check_text("model name", m->name, STORE_NAME_BYTES, true,
                               e)) ||
      (code = store_check_text("model digest", m->digest, STORE_DIGEST_BYTES,
                               true, e)) ||
      (code = store_check_number("model gflop", m->gflop, false, e)))
    return code;
  /* A model without its spec could not be rebuilt after a restart. */
  if (!spec || spec_bytes == 0)
    return err_set(e, ERR_INVALID, "model '%s' has an empty spec", m->name);
  if (m->params > (uint64_t)INT64_MAX)
    return err_set(e, ERR_INVALID, "model '%s': params %llu is too large",
                   m->name, (unsigned long long)m->params);
  bool added = false;
  store_lock(s);
  code = store_begin(s, e);
  if (code == ERR_OK) {
    code = add_tx(s, m, spec, spec_bytes, &added, e);
    if (code == ERR_OK)
      code = store_commit(s, e);
    else
      store_rollback(s);
  }
  store_unlock(s);
  if (code == ERR_OK && added_out) *added_out = added;
  return code;
}

/* Copies the spec column into a new buffer (column 6 of k_model_get). */
static err_code read_spec(sqlite3_stmt *st, void **spec, size_t *spec_bytes,
                          err *e) {
  const void *blob = sqlite3_column_blob(st, 6);
  size_t bytes = (size_t)sqlite3_column_bytes(st, 6);
  void *copy = malloc(bytes ? bytes : 1);
  if (!copy)
    return err_set(e, ERR_NOMEM, "out of memory for a %zu-byte model spec",
                   bytes);
  if (bytes) memcpy(copy, blob, bytes);
  *spec = copy;
  if (spec_bytes) *spec_bytes = bytes;
  return ERR_OK;
}

err_code store_model_get(store *s, const char *name, store_model *out,
                         void **spec, size_t *spec_bytes, err *e) {
  if (!s || !name || !out)
    return err_set(e, ERR_INVALID, "store_model_get: no store, name or output");
  if (spec) *spec = NULL;
  if (spec_bytes) *spec_bytes = 0;
  store_lock(s);
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_model_get, &st, e);
  if (code == ERR_OK) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      read_model_row(st, out);
      if (spec) code = read_spec(st, spec, spec_bytes, e);
    } else if (rc == SQLITE_DONE) {
      code = err_set(e, ERR_NOT_FOUND, "no model is named '%s'", name);
    } else {
      code = store_sqlite_error(s, rc, e, "reading a model");
    }
    store_stmt_done(st);
  }
  store_unlock(s);
  return code;
}

err_code store_model_list(store *s, store_model **out, size_t *n, err *e) {
  if (!s || !out || !n)
    return err_set(e, ERR_INVALID, "store_model_list: no store or output");
  *out = NULL;
  *n = 0;
  store_lock(s);
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_model_all, &st, e);
  if (code == ERR_OK)
    code = store_collect(s, st, sizeof **out, read_model_row, (void **)out, n,
                         e, "listing models");
  store_unlock(s);
  return code;
}

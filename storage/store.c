/* store.c — opening and closing a store, and the plumbing every store_*.c
 * file uses: the mutex, the statement cache, transactions, the mapping of
 * SQLite results to err codes, value checks.
 *
 * Open order matters and is chosen so that a file we refuse is never
 * written: the schema module first reads the header (is it SQLite? EdgeDI's?
 * which version?) and only then migrates; the journal is switched to WAL
 * after that (switching is itself a write); foreign keys are enforced last,
 * because a future migration that rebuilds a table must run with them off
 * (PRAGMA foreign_keys cannot change inside a transaction).
 */
#include "storage/store_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- plumbing ------------------------------------------------------------ */

void store_lock(store *s) { pthread_mutex_lock(&s->mu); }
void store_unlock(store *s) { pthread_mutex_unlock(&s->mu); }

static err_code code_of(int rc) {
  /* A row naming a device or request that does not exist. */
  if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return ERR_NOT_FOUND;
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return ERR_CORRUPT;
    case SQLITE_NOMEM:
      return ERR_NOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ERR_UNAVAILABLE;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
      return ERR_INVALID;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL:
      return ERR_IO;
    default:
      return ERR_BACKEND;
  }
}

err_code store_sqlite_error(store *s, int rc, err *e, const char *what) {
  const char *msg = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
  err_code code = code_of(rc);
  if ((rc & 0xff) == SQLITE_BUSY)
    return err_set(e, code,
                   "%s: database '%s' stayed locked by another process for "
                   "%d ms (%s)",
                   what, s ? s->path : "?", STORE_BUSY_TIMEOUT_MS, msg);
  return err_set(e, code, "%s: %s", what, msg);
}

err_code store_stmt(store *s, const char *sql, sqlite3_stmt **out, err *e) {
  for (int i = 0; i < s->n_stmts; i++) {
    if (s->stmts[i].sql == sql) {
      *out = s->stmts[i].stmt;
      return ERR_OK;
    }
  }
  if (s->n_stmts == STORE_STMT_CACHE)
    return err_set(e, ERR_INTERNAL,
                   "store: more than %d distinct statements; raise "
                   "STORE_STMT_CACHE",
                   STORE_STMT_CACHE);
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                              NULL);
  if (rc != SQLITE_OK) {
    /* Our SQL is fixed, so this is a damaged or hand-edited schema (a
     * missing table) or a bug; either way SQLite's words say which. */
    return store_sqlite_error(s, rc, e, "store: preparing a statement");
  }
  s->stmts[s->n_stmts].sql = sql;
  s->stmts[s->n_stmts].stmt = st;
  s->n_stmts++;
  *out = st;
  return ERR_OK;
}

void store_stmt_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

err_code store_step_done(store *s, sqlite3_stmt *st, err *e,
                         const char *what) {
  int rc = sqlite3_step(st);
  err_code code = ERR_OK;
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    code = store_sqlite_error(s, rc, e, what);
  store_stmt_done(st);
  return code;
}

err_code store_exec(store *s, const char *sql, err *e, const char *what) {
  char *msg = NULL;
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
  if (rc == SQLITE_OK) return ERR_OK;
  err_code code = err_set(e, code_of(rc), "%s: %s", what,
                          msg ? msg : sqlite3_errstr(rc));
  sqlite3_free(msg);
  return code;
}

static const char k_begin[] = "BEGIN IMMEDIATE";
static const char k_commit[] = "COMMIT";
static const char k_rollback[] = "ROLLBACK";

err_code store_begin(store *s, err *e) {
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_begin, &st, e);
  if (code != ERR_OK) return code;
  return store_step_done(s, st, e, "starting a transaction");
}

err_code store_commit(store *s, err *e) {
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_commit, &st, e);
  if (code == ERR_OK) code = store_step_done(s, st, e, "committing");
  /* A failed COMMIT may leave the transaction open; never leave it so. */
  if (code != ERR_OK) store_rollback(s);
  return code;
}

void store_rollback(store *s) {
  if (sqlite3_get_autocommit(s->db)) return; /* SQLite already rolled back */
  sqlite3_stmt *st;
  if (store_stmt(s, k_rollback, &st, NULL) == ERR_OK) {
    sqlite3_step(st);
    store_stmt_done(st);
  }
}

int64_t store_now(void) { return (int64_t)time(NULL); }

int64_t store_limit(size_t n) {
  return n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n;
}

err_code store_check_text(const char *field, const char *v, size_t cap,
                          bool required, err *e) {
  /* memchr, not strlen: a fixed array the caller filled to the brim has no
   * NUL to stop at. */
  if (v && !memchr(v, '\0', cap))
    return err_set(e, ERR_INVALID, "%s is longer than %zu bytes", field,
                   cap - 1);
  if (required && (!v || !*v))
    return err_set(e, ERR_INVALID, "%s is empty", field);
  return ERR_OK;
}

err_code store_check_number(const char *field, double v, bool positive,
                            err *e) {
  if (!isfinite(v))
    return err_set(e, ERR_INVALID, "%s is not a finite number (%g)", field, v);
  if (v < 0)
    return err_set(e, ERR_INVALID, "%s is negative (%g)", field, v);
  if (positive && v == 0)
    return err_set(e, ERR_INVALID, "%s must be greater than 0", field);
  return ERR_OK;
}

void store_column_text(sqlite3_stmt *st, int col, char *dst, size_t cap) {
  const unsigned char *t = sqlite3_column_text(st, col);
  snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

err_code store_collect(store *s, sqlite3_stmt *st, size_t elem,
                       store_row_reader read, void **out, size_t *n, err *e,
                       const char *what) {
  char *v = NULL;
  size_t count = 0, cap = 0;
  err_code code = ERR_OK;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (count == cap) {
      size_t want = cap ? cap * 2 : 16;
      char *p = realloc(v, want * elem);
      if (!p) {
        code = err_set(e, ERR_NOMEM, "%s: out of memory for %zu rows", what,
                       want);
        break;
      }
      v = p;
      cap = want;
    }
    read(st, v + count * elem);
    count++;
  }
  if (code == ERR_OK && rc != SQLITE_DONE)
    code = store_sqlite_error(s, rc, e, what);
  store_stmt_done(st);
  if (code != ERR_OK) {
    free(v);
    v = NULL;
    count = 0;
  }
  *out = v;
  *n = count;
  return code;
}

err_code store_collect_query(store *s, const char *sql, const int64_t *args, int n_args,
                             size_t elem, store_row_reader read, void **out, size_t *n,
                             err *e, const char *what) {
  *out = NULL;
  *n = 0;
  store_lock(s);
  sqlite3_stmt *st;
  err_code code = store_stmt(s, sql, &st, e);
  if (code == ERR_OK) {
    for (int i = 0; i < n_args; i++) sqlite3_bind_int64(st, i + 1, args[i]);
    code = store_collect(s, st, elem, read, out, n, e, what);
  }
  store_unlock(s);
  return code;
}

void store_free(void *p) { free(p); }

/* ---- life ---------------------------------------------------------------- */

/* Switches to WAL so that readers (the sqlite3 CLI, a second scheduler
 * thread's connection) never block the writer. synchronous=NORMAL is the
 * usual WAL pairing: a power cut may lose the last commits, never the
 * file's consistency, and a commit costs no fsync. */
static err_code set_journal(store *s, err *e) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (rc != SQLITE_OK)
    return store_sqlite_error(s, rc, e, "switching to the WAL journal");
  rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    err_code code = store_sqlite_error(s, rc, e, "switching to the WAL journal");
    sqlite3_finalize(st);
    return code;
  }
  char mode[16];
  store_column_text(st, 0, mode, sizeof mode);
  sqlite3_finalize(st);
  /* An in-memory database has no journal file; anything else refusing WAL
   * (a network file system) would silently lose the concurrency promised. */
  if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
    return err_set(e, ERR_UNSUPPORTED,
                   "database '%s': cannot use the WAL journal (got '%s'); is "
                   "it on a network file system?",
                   s->path, mode);
  return store_exec(s, "PRAGMA synchronous=NORMAL", e, "setting synchronous");
}

err_code store_open_existing(const char *path, store **out, err *e) {
  if (out) *out = NULL;
  if (path && *path && access(path, F_OK) != 0)
    return err_set(e, ERR_NOT_FOUND, "no database at %s", path);
  return store_open(path, out, e);
}

err_code store_open(const char *path, store **out, err *e) {
  if (!out) return err_set(e, ERR_INVALID, "store_open: out is NULL");
  *out = NULL;
  if (!path || !*path)
    return err_set(e, ERR_INVALID, "store_open: empty database path");
  store *s = calloc(1, sizeof *s);
  if (!s) return err_set(e, ERR_NOMEM, "store_open: out of memory");
  snprintf(s->path, sizeof s->path, "%s", path);
  pthread_mutex_init(&s->mu, NULL);

  /* NOMUTEX: the store's own mutex already serializes every use of the
   * connection, SQLite's would only be taken twice. */
  int rc = sqlite3_open_v2(path, &s->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_NOMUTEX,
                           NULL);
  err_code code;
  if (rc != SQLITE_OK) {
    char what[STORE_PATH_BYTES + 32];
    snprintf(what, sizeof what, "cannot open database '%s'", s->path);
    code = store_sqlite_error(s, rc, e, what);
    goto fail;
  }
  sqlite3_extended_result_codes(s->db, 1);
  sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
  /* SQLite quietly opens a write-protected file read-only; the scheduler
   * would then fail at its first write, far from the cause. */
  if (sqlite3_db_readonly(s->db, "main") == 1) {
    code = err_set(e, ERR_IO, "database '%s' is read-only (file permissions)",
                   s->path);
    goto fail;
  }

  code = store_schema_migrate(s, e);
  if (code == ERR_OK) code = set_journal(s, e);
  if (code == ERR_OK)
    code = store_exec(s, "PRAGMA foreign_keys=ON", e, "enabling foreign keys");
  if (code != ERR_OK) goto fail;
  *out = s;
  return ERR_OK;

fail:
  store_close(s);
  return code;
}

void store_close(store *s) {
  if (!s) return;
  for (int i = 0; i < s->n_stmts; i++) sqlite3_finalize(s->stmts[i].stmt);
  /* Every statement is finalized, so close cannot be refused as busy; the
   * last connection to close also checkpoints and removes the WAL. */
  sqlite3_close(s->db);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int store_schema_version(store *s) { return s ? s->schema_version : 0; }

/* ---- integrity ----------------------------------------------------------- */

enum { STORE_INTEGRITY_MAX_PROBLEMS = 5 }; /* listed in the message */

static const char *text_or(sqlite3_stmt *st, int col) {
  const char *t = (const char *)sqlite3_column_text(st, col);
  return t ? t : "?";
}

static err_code integrity_locked(store *s, err *e) {
  char problems[ERR_MSG_BYTES] = "";
  size_t used = 0;
  int n_bad = 0;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const char *line = text_or(st, 0);
      if (strcmp(line, "ok") == 0) continue;
      if (++n_bad <= STORE_INTEGRITY_MAX_PROBLEMS && used < sizeof problems)
        used += (size_t)snprintf(problems + used, sizeof problems - used,
                                 "%s%s", used ? "; " : "", line);
    }
  }
  if (rc != SQLITE_DONE) {
    err_code code = store_sqlite_error(s, rc, e, "integrity check");
    sqlite3_finalize(st);
    return code;
  }
  sqlite3_finalize(st);

  /* integrity_check does not look at foreign keys; a row pointing at a
   * device someone deleted by hand would break the views silently. */
  st = NULL;
  rc = sqlite3_prepare_v2(s->db, "PRAGMA foreign_key_check", -1, &st, NULL);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (++n_bad <= STORE_INTEGRITY_MAX_PROBLEMS && used < sizeof problems)
        used += (size_t)snprintf(
            problems + used, sizeof problems - used,
            "%s%s row %lld refers to a missing %s row", used ? "; " : "",
            text_or(st, 0), (long long)sqlite3_column_int64(st, 1),
            text_or(st, 2));
    }
  }
  if (rc != SQLITE_DONE) {
    err_code code = store_sqlite_error(s, rc, e, "foreign key check");
    sqlite3_finalize(st);
    return code;
  }
  sqlite3_finalize(st);

  if (n_bad)
    return err_set(e, ERR_CORRUPT, "database '%s' failed its integrity check "
                   "(%d problems): %s", s->path, n_bad, problems);
  return ERR_OK;
}

err_code store_integrity_check(store *s, err *e) {
  if (!s) return err_set(e, ERR_INVALID, "store_integrity_check: no store");
  store_lock(s);
  err_code code = integrity_locked(s, e);
  store_unlock(s);
  return code;
}

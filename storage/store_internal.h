/* store_internal.h — what the store_*.c files share and nobody else sees.
 *
 * A store is one SQLite connection and one mutex. Every public function
 * takes the mutex for its whole duration (a multi-statement transaction must
 * not interleave with another thread's statements on the same connection),
 * then calls helpers from this header, which all assume the mutex is held.
 *
 * Prepared statements are cached by the address of their SQL text: each file
 * keeps its statements as `static const char k_x[]` next to the code that
 * runs them, and store_stmt() prepares one the first time it is asked for.
 */
#ifndef EDGEDI_STORE_INTERNAL_H
#define EDGEDI_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "storage/store.h"

enum {
  /* More distinct statements than the store has; running out is a bug
   * (ERR_INTERNAL), fixed by raising this. */
  STORE_STMT_CACHE = 64,
  STORE_PATH_BYTES = 256, /* kept for messages; longer paths are cut */
};

typedef struct store_stmt_slot {
  const char *sql; /* the key: address of a static SQL string */
  sqlite3_stmt *stmt;
} store_stmt_slot;

struct store {
  sqlite3 *db;
  pthread_mutex_t mu;
  int schema_version;
  char path[STORE_PATH_BYTES];
  int n_stmts;
  store_stmt_slot stmts[STORE_STMT_CACHE];
};

void store_lock(store *s);
void store_unlock(store *s);

/* The cached statement for `sql`, reset and with no bindings. */
err_code store_stmt(store *s, const char *sql, sqlite3_stmt **out, err *e);

/* Ready `st` for its next use (reset, clear bindings). */
void store_stmt_done(sqlite3_stmt *st);

/* Turns SQLite result `rc` into an err code with message "what: <sqlite's
 * words>". Call before resetting the statement that failed, which would
 * replace SQLite's message. */
err_code store_sqlite_error(store *s, int rc, err *e, const char *what);

/* Runs a statement that returns no rows to its end. */
err_code store_step_done(store *s, sqlite3_stmt *st, err *e,
                         const char *what);

/* One or more statements without caching (schema, pragmas). */
err_code store_exec(store *s, const char *sql, err *e, const char *what);

/* BEGIN IMMEDIATE: takes the write lock now, so that a transaction never
 * fails halfway on a lock another process holds. */
err_code store_begin(store *s, err *e);
err_code store_commit(store *s, err *e);
void store_rollback(store *s);

int64_t store_now(void);

/* A row count for LIMIT: SQLite's integers are signed. */
int64_t store_limit(size_t n);

/* Checks that `v` fits a field of `cap` bytes (NUL included), reading at
 * most `cap` bytes of it; NULL counts as "" and "" is refused when
 * `required`. */
err_code store_check_text(const char *field, const char *v, size_t cap,
                          bool required, err *e);

/* Checks that `v` is finite and >= 0 (> 0 when `positive`). */
err_code store_check_number(const char *field, double v, bool positive,
                            err *e);

/* Copies text column `col` into dst[cap], cutting what an administrator may
 * have written longer by hand. */
void store_column_text(sqlite3_stmt *st, int col, char *dst, size_t cap);

/* Steps the bound statement `st` to its end, turning each row into one
 * element (of `elem` bytes, filled by `read`) of a new array for the
 * caller; resets `st`. On failure *out is NULL and *n 0. */
typedef void (*store_row_reader)(sqlite3_stmt *st, void *dst);
err_code store_collect(store *s, sqlite3_stmt *st, size_t elem,
                       store_row_reader read, void **out, size_t *n, err *e,
                       const char *what);

/* store_collect of statement `sql` with int64 parameters 1..n_args bound
 * to args, under the store's lock. */
err_code store_collect_query(store *s, const char *sql, const int64_t *args, int n_args,
                             size_t elem, store_row_reader read, void **out, size_t *n,
                             err *e, const char *what);

/* store_schema.c: brings the open database to STORE_SCHEMA_VERSION.
 * Refuses files that are not EdgeDI databases or are newer. */
err_code store_schema_migrate(store *s, err *e);

#endif

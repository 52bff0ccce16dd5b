/* store_history.c — what happened: requests and the tiles devices ran for
 * them.
 *
 * A request row is written when the request starts (its id is the
 * request_id the client gets back) and updated once when it ends, so a
 * request that crashed the scheduler still shows as 'running'. Tiles are
 * written in batches, one transaction per batch: a scheduler records a whole
 * request's tiles with one commit instead of one per tile. Every value is
 * checked before the transaction starts, so a bad tile writes nothing and
 * the message names it.
 *
 * Tiles are the cost model's training data (store_tiles_recent is the refit
 * window) and the device_speed view's evidence, so measured and predicted
 * times must be real non-negative numbers.
 */
#include "storage/store_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- requests ------------------------------------------------------------ */

static const char k_request_insert[] =
    "INSERT INTO requests(model, planner, devices, plan, predicted_ms, "
    "status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)";
static const char k_request_finish[] =
    "UPDATE requests SET status = ?2, measured_ms = ?3, bytes_moved = ?4, "
    "error = ?5, finished_at = ?6, recovery = ?7 WHERE id = ?1 AND status = 'running'";
static const char k_request_status[] =
    "SELECT status FROM requests WHERE id = ?1";

err_code store_request_begin(store *s, const store_request_new *r,
                             int64_t *id_out, err *e) {
  if (!s || !r || !id_out)
    return err_set(e, ERR_INVALID, "store_request_begin: no store or request");
  err_code code;
  if ((code = store_check_text("request model", r->model, STORE_NAME_BYTES,
                               true, e)) ||
      (code = store_check_text("request planner", r->planner,
                               STORE_PLANNER_BYTES, false, e)) ||
      (r->plan && (code = store_check_number("request predicted_ms",
                                             r->predicted_ms, false, e))))
    return code;
  store_lock(s);
  sqlite3_stmt *st;
  code = store_stmt(s, k_request_insert, &st, e);
  if (code == ERR_OK) {
    sqlite3_bind_text(st, 1, r->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->planner ? r->planner : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->devices ? r->devices : "", -1, SQLITE_STATIC);
    if (r->plan) {
      sqlite3_bind_text(st, 4, r->plan, -1, SQLITE_STATIC);
      sqlite3_bind_double(st, 5, r->predicted_ms);
    } /* else both stay NULL: no plan, no prediction */
    sqlite3_bind_int64(st, 6, store_now());
    code = store_step_done(s, st, e, "recording a request");
    if (code == ERR_OK) *id_out = sqlite3_last_insert_rowid(s->db);
  }
  store_unlock(s);
  return code;
}

/* Says why a finish changed no row: no such request, or finished. */
static err_code explain_unfinished(store *s, int64_t id, err *e) {
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_request_status, &st, e);
  if (code != ERR_OK) return code;
  sqlite3_bind_int64(st, 1, id);
  int rc = sqlite3_step(st);
  char status[16] = "";
  if (rc == SQLITE_ROW)
    store_column_text(st, 0, status, sizeof status);
  else if (rc != SQLITE_DONE)
    code = store_sqlite_error(s, rc, e, "reading a request");
  store_stmt_done(st);
  if (code != ERR_OK) return code;
  if (rc == SQLITE_DONE)
    return err_set(e, ERR_NOT_FOUND, "no request has id %lld", (long long)id);
  return err_set(e, ERR_INVALID, "request %lld is already finished (%s)",
                 (long long)id, status);
}

err_code store_request_finish(store *s, int64_t request_id,
                              const store_request_result *r, err *e) {
  if (!s || !r)
    return err_set(e, ERR_INVALID, "store_request_finish: no store or result");
  err_code code = store_check_number("request measured_ms", r->measured_ms,
                                     false, e);
  if (code != ERR_OK) return code;
  if (r->bytes_moved > (uint64_t)INT64_MAX)
    return err_set(e, ERR_INVALID, "request bytes_moved %llu is too large",
                   (unsigned long long)r->bytes_moved);
  if (!r->ok && (!r->error || !*r->error))
    return err_set(e, ERR_INVALID,
                   "request %lld failed but no error message says why",
                   (long long)request_id);
  store_lock(s);
  sqlite3_stmt *st;
  code = store_stmt(s, k_request_finish, &st, e);
  if (code == ERR_OK) {
    sqlite3_bind_int64(st, 1, request_id);
    sqlite3_bind_text(st, 2, r->ok ? "ok" : "error", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, r->measured_ms);
    sqlite3_bind_int64(st, 4, (int64_t)r->bytes_moved);
    if (!r->ok) sqlite3_bind_text(st, 5, r->error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, store_now());
    sqlite3_bind_text(st, 7, r->recovery ? r->recovery : "", -1, SQLITE_STATIC);
    code = store_step_done(s, st, e, "finishing a request");
    if (code == ERR_OK && sqlite3_changes(s->db) == 0)
      code = explain_unfinished(s, request_id, e);
  }
  store_unlock(s);
  return code;
}

/* The plan is JSON (scheduler/infer_plan.c); SQLite's JSON functions read
 * the one number history needs from it without a column of its own. */
#define REQUEST_ROW_COLUMNS                                              \
  "SELECT id, model, planner, devices, status, plan IS NOT NULL, "       \
  "coalesce(predicted_ms, 0), coalesce(measured_ms, 0), bytes_moved, "   \
  "CASE WHEN json_valid(plan) THEN "                                     \
  "coalesce(json_extract(plan, '$.bytes_gather_all'), 0) ELSE 0 END, "   \
  "coalesce(error, ''), created_at, coalesce(finished_at, 0), recovery " \
  "FROM requests "
static const char k_request_recent[] = REQUEST_ROW_COLUMNS "ORDER BY id DESC LIMIT ?1";
static const char k_request_get[] = REQUEST_ROW_COLUMNS "WHERE id = ?1";

static store_request_status status_from_text(const char *t) {
  if (strcmp(t, "ok") == 0) return STORE_REQUEST_OK;
  if (strcmp(t, "error") == 0) return STORE_REQUEST_ERROR;
  return STORE_REQUEST_RUNNING;
}

static void read_request_row(sqlite3_stmt *st, void *dst) {
  store_request_row *r = dst;
  char status[16];
  r->id = sqlite3_column_int64(st, 0);
  store_column_text(st, 1, r->model, sizeof r->model);
  store_column_text(st, 2, r->planner, sizeof r->planner);
  store_column_text(st, 3, r->devices, sizeof r->devices);
  store_column_text(st, 4, status, sizeof status);
  r->status = status_from_text(status);
  r->has_plan = sqlite3_column_int(st, 5) != 0;
  r->predicted_ms = sqlite3_column_double(st, 6);
  r->measured_ms = sqlite3_column_double(st, 7);
  r->bytes_moved = (uint64_t)sqlite3_column_int64(st, 8);
  int64_t gather = sqlite3_column_int64(st, 9);
  r->bytes_gather_all = gather > 0 ? (uint64_t)gather : 0;
  store_column_text(st, 10, r->error, sizeof r->error);
  r->created_at = sqlite3_column_int64(st, 11);
  r->finished_at = sqlite3_column_int64(st, 12);
  store_column_text(st, 13, r->recovery, sizeof r->recovery);
}

err_code store_request_recent(store *s, size_t limit, store_request_row **out,
                              size_t *n, err *e) {
  if (!s || !out || !n)
    return err_set(e, ERR_INVALID, "store_request_recent: no store or output");
  const int64_t args[] = {store_limit(limit)};
  return store_collect_query(s, k_request_recent, args, 1, sizeof **out, read_request_row,
                             (void **)out, n, e, "reading recent requests");
}

err_code store_request_get(store *s, int64_t id, store_request_row *out, err *e) {
  if (!s || !out) return err_set(e, ERR_INVALID, "store_request_get: no store or output");
  store_request_row *v = NULL;
  size_t n = 0;
  const int64_t args[] = {id};
  err_code rc = store_collect_query(s, k_request_get, args, 1, sizeof *v, read_request_row,
                                    (void **)&v, &n, e, "reading a request");
  if (rc == ERR_OK && n == 0) rc = err_set(e, ERR_NOT_FOUND, "no request %lld", (long long)id);
  if (rc == ERR_OK) *out = v[0];
  store_free(v);
  return rc;
}

/* ---- tiles --------------------------------------------------------------- */

static const char k_tile_insert[] =
    "INSERT INTO tile_history(request_id, device_id, segment, first_layer, "
    "end_layer, row_lo, row_hi, gflop, bytes_in, bytes_out, "
    "predicted_compute_ms, measured_compute_ms, predicted_transfer_ms, "
    "measured_transfer_ms, cpu_ms, wait_ms, created_at, fresh_strip) VALUES "
    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
    "?17, ?18)";
static const char k_span_insert[] =
    "INSERT INTO tile_spans(tile_id, start_ms, end_ms) VALUES (?1, ?2, ?3)";
static const char k_request_spans[] =
    "SELECT t.device_id, t.segment, p.start_ms, p.end_ms FROM tile_history AS t "
    "JOIN tile_spans AS p ON p.tile_id = t.id WHERE t.request_id = ?1 "
    "ORDER BY t.device_id, p.start_ms";
/* Newest tile first along the primary key, stopping at the first with
 * spans: reads no more than the tiles recorded since. */
static const char k_newest_with_spans[] =
    "SELECT t.request_id FROM tile_history AS t JOIN requests AS r ON r.id = t.request_id "
    "WHERE r.status != 'running' AND EXISTS (SELECT 1 FROM tile_spans AS p "
    "WHERE p.tile_id = t.id) ORDER BY t.id DESC LIMIT 1";
static const char k_tile_recent[] =
    "SELECT id, request_id, device_id, segment, first_layer, end_layer, "
    "row_lo, row_hi, gflop, bytes_in, bytes_out, predicted_compute_ms, "
    "measured_compute_ms, predicted_transfer_ms, measured_transfer_ms, "
    "cpu_ms, wait_ms, created_at, fresh_strip FROM tile_history WHERE device_id = ?1 "
    "ORDER BY id DESC LIMIT ?2";
/* The scan bound is the id of the device's scan-th newest tile, found on
 * tile_history_by_device; the join reads each candidate's request by its
 * primary key. */
static const char k_tile_recent_model[] =
    "SELECT t.id, t.request_id, t.device_id, t.segment, t.first_layer, "
    "t.end_layer, t.row_lo, t.row_hi, t.gflop, t.bytes_in, t.bytes_out, "
    "t.predicted_compute_ms, t.measured_compute_ms, t.predicted_transfer_ms, "
    "t.measured_transfer_ms, t.cpu_ms, t.wait_ms, t.created_at, t.fresh_strip "
    "FROM tile_history AS t JOIN requests AS r ON r.id = t.request_id "
    "WHERE t.device_id = ?1 AND r.model = ?2 "
    "AND t.id >= coalesce((SELECT id FROM tile_history WHERE device_id = ?1 "
    "ORDER BY id DESC LIMIT 1 OFFSET ?4), 0) "
    "ORDER BY t.id DESC LIMIT ?3";

static err_code check_tile(const store_tile *t, size_t i, err *e) {
  if (t->end_layer < t->first_layer)
    return err_set(e, ERR_INVALID, "tile %zu: layers [%u, %u) are reversed", i,
                   t->first_layer, t->end_layer);
  if (t->row_hi < t->row_lo)
    return err_set(e, ERR_INVALID, "tile %zu: rows [%u, %u) are reversed", i,
                   t->row_lo, t->row_hi);
  if (t->bytes_in > (uint64_t)INT64_MAX || t->bytes_out > (uint64_t)INT64_MAX)
    return err_set(e, ERR_INVALID, "tile %zu: byte count too large", i);
  const struct {
    const char *name;
    double v;
  } nums[] = {
      {"gflop", t->gflop},
      {"predicted_compute_ms", t->predicted_compute_ms},
      {"measured_compute_ms", t->measured_compute_ms},
      {"predicted_transfer_ms", t->predicted_transfer_ms},
      {"measured_transfer_ms", t->measured_transfer_ms},
      {"cpu_ms", t->cpu_ms},
      {"wait_ms", t->wait_ms},
  };
  for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
    char field[64];
    snprintf(field, sizeof field, "tile %zu: %s", i, nums[k].name);
    err_code code = store_check_number(field, nums[k].v, false, e);
    if (code != ERR_OK) return code;
  }
  if (t->n_spans && !t->spans) return err_set(e, ERR_INVALID, "tile %zu: spans missing", i);
  for (size_t k = 0; k < t->n_spans; k++) {
    double a = t->spans[2 * k], b = t->spans[2 * k + 1];
    if (!(a >= 0 && b >= a && isfinite(b)))
      return err_set(e, ERR_INVALID, "tile %zu: span %zu [%g, %g] is not 0 <= start <= end",
                     i, k, a, b);
  }
  return ERR_OK;
}

static err_code spans_tx(store *s, int64_t tile_id, const store_tile *t, err *e) {
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_span_insert, &st, e);
  for (size_t k = 0; code == ERR_OK && k < t->n_spans; k++) {
    sqlite3_bind_int64(st, 1, tile_id);
    sqlite3_bind_double(st, 2, t->spans[2 * k]);
    sqlite3_bind_double(st, 3, t->spans[2 * k + 1]);
    code = store_step_done(s, st, e, "recording a tile's spans");
  }
  return code;
}

static err_code tiles_tx(store *s, const store_tile *v, size_t n, err *e) {
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_tile_insert, &st, e);
  int64_t now = store_now();
  for (size_t i = 0; code == ERR_OK && i < n; i++) {
    const store_tile *t = &v[i];
    sqlite3_bind_int64(st, 1, t->request_id);
    sqlite3_bind_int64(st, 2, t->device_id);
    sqlite3_bind_int64(st, 3, t->segment);
    sqlite3_bind_int64(st, 4, t->first_layer);
    sqlite3_bind_int64(st, 5, t->end_layer);
    sqlite3_bind_int64(st, 6, t->row_lo);
    sqlite3_bind_int64(st, 7, t->row_hi);
    sqlite3_bind_double(st, 8, t->gflop);
    sqlite3_bind_int64(st, 9, (int64_t)t->bytes_in);
    sqlite3_bind_int64(st, 10, (int64_t)t->bytes_out);
    sqlite3_bind_double(st, 11, t->predicted_compute_ms);
    sqlite3_bind_double(st, 12, t->measured_compute_ms);
    sqlite3_bind_double(st, 13, t->predicted_transfer_ms);
    sqlite3_bind_double(st, 14, t->measured_transfer_ms);
    sqlite3_bind_double(st, 15, t->cpu_ms);
    sqlite3_bind_double(st, 16, t->wait_ms);
    sqlite3_bind_int64(st, 17, now);
    sqlite3_bind_int(st, 18, t->fresh_strip);
    code = store_step_done(s, st, e, "recording a tile");
    if (code == ERR_NOT_FOUND)
      err_set(e, code, "tile %zu: request %lld or device %lld does not exist",
              i, (long long)t->request_id, (long long)t->device_id);
    if (code == ERR_OK && t->n_spans) code = spans_tx(s, sqlite3_last_insert_rowid(s->db), t, e);
  }
  return code;
}

err_code store_tiles_add(store *s, const store_tile *tiles, size_t n, err *e) {
  if (!s || (!tiles && n))
    return err_set(e, ERR_INVALID, "store_tiles_add: no store or tiles");
  for (size_t i = 0; i < n; i++) {
    err_code code = check_tile(&tiles[i], i, e);
    if (code != ERR_OK) return code;
  }
  if (n == 0) return ERR_OK;
  store_lock(s);
  err_code code = store_begin(s, e);
  if (code == ERR_OK) {
    code = tiles_tx(s, tiles, n, e);
    if (code == ERR_OK)
      code = store_commit(s, e);
    else
      store_rollback(s);
  }
  store_unlock(s);
  return code;
}

static void read_tile_row(sqlite3_stmt *st, void *dst) {
  store_tile *t = dst;
  t->id = sqlite3_column_int64(st, 0);
  t->request_id = sqlite3_column_int64(st, 1);
  t->device_id = sqlite3_column_int64(st, 2);
  t->segment = (uint32_t)sqlite3_column_int64(st, 3);
  t->first_layer = (uint32_t)sqlite3_column_int64(st, 4);
  t->end_layer = (uint32_t)sqlite3_column_int64(st, 5);
  t->row_lo = (uint32_t)sqlite3_column_int64(st, 6);
  t->row_hi = (uint32_t)sqlite3_column_int64(st, 7);
  t->gflop = sqlite3_column_double(st, 8);
  t->bytes_in = (uint64_t)sqlite3_column_int64(st, 9);
  t->bytes_out = (uint64_t)sqlite3_column_int64(st, 10);
  t->predicted_compute_ms = sqlite3_column_double(st, 11);
  t->measured_compute_ms = sqlite3_column_double(st, 12);
  t->predicted_transfer_ms = sqlite3_column_double(st, 13);
  t->measured_transfer_ms = sqlite3_column_double(st, 14);
  t->cpu_ms = sqlite3_column_double(st, 15);
  t->wait_ms = sqlite3_column_double(st, 16);
  t->created_at = sqlite3_column_int64(st, 17);
  t->fresh_strip = sqlite3_column_int(st, 18) != 0;
}

static void read_span_row(sqlite3_stmt *st, void *dst) {
  store_span *p = dst;
  p->device_id = sqlite3_column_int64(st, 0);
  p->segment = (uint32_t)sqlite3_column_int64(st, 1);
  p->start_ms = sqlite3_column_double(st, 2);
  p->end_ms = sqlite3_column_double(st, 3);
}

err_code store_request_spans(store *s, int64_t request_id, store_span **out, size_t *n,
                             err *e) {
  if (!s || !out || !n) return err_set(e, ERR_INVALID, "store_request_spans: no store or output");
  const int64_t args[] = {request_id};
  return store_collect_query(s, k_request_spans, args, 1, sizeof **out, read_span_row,
                             (void **)out, n, e, "reading a request's spans");
}

static void read_id_row(sqlite3_stmt *st, void *dst) {
  *(int64_t *)dst = sqlite3_column_int64(st, 0);
}

err_code store_request_newest_with_spans(store *s, int64_t *id, err *e) {
  if (!s || !id)
    return err_set(e, ERR_INVALID, "store_request_newest_with_spans: no store or output");
  int64_t *v = NULL;
  size_t n = 0;
  err_code rc = store_collect_query(s, k_newest_with_spans, NULL, 0, sizeof *v, read_id_row,
                                    (void **)&v, &n, e, "finding the newest timeline");
  *id = rc == ERR_OK && n ? v[0] : 0;
  store_free(v);
  return rc;
}

err_code store_tiles_recent(store *s, int64_t device_id, size_t limit,
                            store_tile **out, size_t *n, err *e) {
  if (!s || !out || !n)
    return err_set(e, ERR_INVALID, "store_tiles_recent: no store or output");
  const int64_t args[] = {device_id, store_limit(limit)};
  return store_collect_query(s, k_tile_recent, args, 2, sizeof **out, read_tile_row,
                             (void **)out, n, e, "reading recent tiles");
}

err_code store_tiles_recent_of_model(store *s, int64_t device_id,
                                     const char *model, size_t limit,
                                     size_t scan, store_tile **out, size_t *n,
                                     err *e) {
  if (!s || !out || !n || !model)
    return err_set(e, ERR_INVALID,
                   "store_tiles_recent_of_model: no store, model or output");
  *out = NULL;
  *n = 0;
  if (scan < limit) scan = limit;
  store_lock(s);
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_tile_recent_model, &st, e);
  if (code == ERR_OK) {
    sqlite3_bind_int64(st, 1, device_id);
    sqlite3_bind_text(st, 2, model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, store_limit(limit));
    sqlite3_bind_int64(st, 4, scan ? store_limit(scan - 1) : 0);
    code = store_collect(s, st, sizeof **out, read_tile_row, (void **)out, n,
                         e, "reading a model's recent tiles");
  }
  store_unlock(s);
  return code;
}

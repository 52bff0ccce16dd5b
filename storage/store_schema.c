/* store_schema.c — the schema, as a list of migration steps.
 *
 * PRAGMA user_version is the number of steps applied. Opening runs the
 * missing ones in order, each in its own transaction together with the
 * user_version it reaches, so a crash leaves the file at some whole version
 * and the next open carries on. To change the schema, append a step; never
 * edit a released one (databases in the field were built by it). A step
 * that rebuilds a table runs with foreign keys off (store.c enables them
 * only after migrating).
 *
 * Before anything is written the header is read, so that a file that is not
 * SQLite (ERR_CORRUPT), a SQLite file of another program, or an EdgeDI file
 * newer than this build (ERR_UNSUPPORTED) is refused untouched. EdgeDI files
 * carry PRAGMA application_id STORE_APPLICATION_ID from step 1 on.
 *
 * Units in column names: _ms milliseconds, _mbps megabits per second,
 * gflop 1e9 floating-point operations, *_at / *_seen unix seconds.
 */
#include "storage/store_internal.h"

#include <stdio.h>

/* 0x45444749, "EDGI" in ASCII; decimal because it is spliced into SQL. */
#define STORE_APPLICATION_ID 1162102601
#define STORE_STR(x) STORE_STR_(x)
#define STORE_STR_(x) #x

/* The device_speed view (step 2); REPEATS_ONLY narrows the tiles its error
 * columns read (step 4). */
#define DEVICE_SPEED_VIEW(REPEATS_ONLY) \
    "CREATE VIEW device_speed AS\n" \
    "WITH recent AS (\n" \
    "  SELECT t.device_id,\n" \
    "         t.measured_compute_ms / t.predicted_compute_ms - 1.0 AS rel_err\n" \
    "  FROM devices AS d CROSS JOIN tile_history AS t\n" \
    "    ON t.device_id = d.id\n" \
    "   AND t.id >= coalesce((SELECT id FROM tile_history\n" \
    "                         WHERE device_id = d.id\n" \
    "                         ORDER BY id DESC LIMIT 1 OFFSET 99), 0)\n" \
    "  WHERE t.predicted_compute_ms > 0" REPEATS_ONLY "\n" \
    "), win AS (\n" \
    "  SELECT device_id, rel_err,\n" \
    "         row_number() OVER (PARTITION BY device_id ORDER BY rel_err) AS k,\n" \
    "         count(*) OVER (PARTITION BY device_id) AS n\n" \
    "  FROM recent\n" \
    "), errs AS (\n" \
    "  SELECT device_id, max(n) AS recent_tiles,\n" \
    "         avg(rel_err) FILTER (WHERE k IN ((n + 1) / 2, (n + 2) / 2))\n" \
    "           AS median_err,\n" \
    "         avg(rel_err) AS mean_err, avg(abs(rel_err)) AS mean_abs_err\n" \
    "  FROM win GROUP BY device_id\n" \
    ")\n" \
    "SELECT d.id AS device_id, d.name AS device, d.state,\n" \
    "       c.ms_per_gflop, c.fixed_ms,\n" \
    "       round(1000.0 / c.ms_per_gflop, 3) AS gflop_per_s,\n" \
    "       c.bandwidth_mbps, c.rtt_ms, c.samples, c.fit_error,\n" \
    "       datetime(c.updated_at, 'unixepoch') AS fitted,\n" \
    "       (SELECT count(*) FROM tile_history AS t WHERE t.device_id = d.id)\n" \
    "         AS tiles,\n" \
    "       coalesce(e.recent_tiles, 0) AS recent_tiles,\n" \
    "       round(100.0 * e.median_err, 1) AS median_err_pct,\n" \
    "       round(100.0 * e.mean_err, 1) AS mean_err_pct,\n" \
    "       round(100.0 * e.mean_abs_err, 1) AS mean_abs_err_pct\n" \
    "FROM devices AS d\n" \
    "LEFT JOIN current_cost_models AS c\n" \
    "  ON c.device_id = d.id AND c.kind = 'all'\n" \
    "LEFT JOIN errs AS e ON e.device_id = d.id\n" \
    "ORDER BY d.name;\n"

/* Step 1: the first release. Devices, one cost model per device, models,
 * requests and their tiles. */
static const char k_step1[] =
    "PRAGMA application_id = " STORE_STR(STORE_APPLICATION_ID) ";\n"
    "CREATE TABLE devices (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  name TEXT NOT NULL UNIQUE,\n"
    "  address TEXT NOT NULL,\n"
    "  cores INTEGER NOT NULL DEFAULT 0 CHECK (cores >= 0),\n"
    "  arch TEXT NOT NULL DEFAULT '',\n"
    "  threads INTEGER NOT NULL DEFAULT 0 CHECK (threads >= 0),\n"
    "  first_seen INTEGER NOT NULL,\n"
    "  last_seen INTEGER NOT NULL,\n"
    "  state TEXT NOT NULL DEFAULT 'down'\n"
    "    CHECK (state IN ('up', 'down', 'profiling'))\n"
    ");\n"
    /* One row per fit: the history shows how a device's speed drifted. */
    "CREATE TABLE cost_models (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,\n"
    "  ms_per_gflop REAL NOT NULL CHECK (ms_per_gflop > 0),\n"
    "  fixed_ms REAL NOT NULL CHECK (fixed_ms >= 0),\n"
    "  bandwidth_mbps REAL NOT NULL CHECK (bandwidth_mbps > 0),\n"
    "  rtt_ms REAL NOT NULL CHECK (rtt_ms >= 0),\n"
    "  samples INTEGER NOT NULL CHECK (samples >= 0),\n"
    "  fit_error REAL NOT NULL CHECK (fit_error >= 0),\n"
    "  updated_at INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX cost_models_by_device ON cost_models(device_id, id);\n"
    "CREATE TABLE models (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  name TEXT NOT NULL UNIQUE,\n"
    "  digest TEXT NOT NULL,\n"
    "  spec BLOB NOT NULL,\n"
    "  gflop REAL NOT NULL CHECK (gflop >= 0),\n"
    "  params INTEGER NOT NULL CHECK (params >= 0),\n"
    "  layers INTEGER NOT NULL CHECK (layers >= 0),\n"
    "  created_at INTEGER NOT NULL\n"
    ");\n"
    /* AUTOINCREMENT: ids are the request_id clients keep; one must never
     * come back after the newest rows were deleted. model is a plain name,
     * not a reference: a request for an unknown model is still recorded. */
    "CREATE TABLE requests (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  model TEXT NOT NULL,\n"
    "  planner TEXT NOT NULL DEFAULT '',\n"
    "  devices TEXT NOT NULL DEFAULT '',\n"
    "  plan TEXT,\n"
    "  predicted_ms REAL CHECK (predicted_ms >= 0),\n"
    "  measured_ms REAL CHECK (measured_ms >= 0),\n"
    "  status TEXT NOT NULL DEFAULT 'running'\n"
    "    CHECK (status IN ('running', 'ok', 'error')),\n"
    "  error TEXT,\n"
    "  bytes_moved INTEGER NOT NULL DEFAULT 0 CHECK (bytes_moved >= 0),\n"
    "  created_at INTEGER NOT NULL,\n"
    "  finished_at INTEGER\n"
    ");\n"
    "CREATE INDEX requests_by_status ON requests(status, id);\n"
    "CREATE TABLE tile_history (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  request_id INTEGER NOT NULL REFERENCES requests(id) ON DELETE CASCADE,\n"
    "  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,\n"
    "  segment INTEGER NOT NULL CHECK (segment >= 0),\n"
    "  first_layer INTEGER NOT NULL CHECK (first_layer >= 0),\n"
    "  end_layer INTEGER NOT NULL CHECK (end_layer >= first_layer),\n"
    "  row_lo INTEGER NOT NULL CHECK (row_lo >= 0),\n"
    "  row_hi INTEGER NOT NULL CHECK (row_hi >= row_lo),\n"
    "  gflop REAL NOT NULL CHECK (gflop >= 0),\n"
    "  bytes_in INTEGER NOT NULL CHECK (bytes_in >= 0),\n"
    "  bytes_out INTEGER NOT NULL CHECK (bytes_out >= 0),\n"
    "  predicted_compute_ms REAL NOT NULL CHECK (predicted_compute_ms >= 0),\n"
    "  measured_compute_ms REAL NOT NULL CHECK (measured_compute_ms >= 0),\n"
    "  predicted_transfer_ms REAL NOT NULL CHECK (predicted_transfer_ms >= 0),\n"
    "  measured_transfer_ms REAL NOT NULL CHECK (measured_transfer_ms >= 0),\n"
    "  cpu_ms REAL NOT NULL CHECK (cpu_ms >= 0),\n"
    "  wait_ms REAL NOT NULL CHECK (wait_ms >= 0),\n"
    "  created_at INTEGER NOT NULL\n"
    ");\n"
    /* The refit window (newest tiles of a device) and the per-request
     * views each read one of these. */
    "CREATE INDEX tile_history_by_device ON tile_history(device_id, id);\n"
    "CREATE INDEX tile_history_by_request\n"
    "  ON tile_history(request_id, device_id);\n";

/* Step 2: cost models per layer kind (the existing fits become 'all'),
 * calibration samples, and the administrator's views. */
static const char k_step2[] =
    "ALTER TABLE cost_models ADD COLUMN kind TEXT NOT NULL DEFAULT 'all';\n"
    "DROP INDEX cost_models_by_device;\n"
    "CREATE INDEX cost_models_by_device ON cost_models(device_id, kind, id);\n"
    "CREATE TABLE profile_samples (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,\n"
    "  gflop REAL NOT NULL CHECK (gflop >= 0),\n"
    "  ms REAL NOT NULL CHECK (ms >= 0),\n"
    "  cpu_ms REAL NOT NULL CHECK (cpu_ms >= 0),\n"
    "  created_at INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX profile_samples_by_device ON profile_samples(device_id, id);\n"
    /* The newest fit per (device, kind): ids grow with time, and unlike
     * updated_at they never tie. */
    "CREATE VIEW current_cost_models AS\n"
    "SELECT c.* FROM cost_models AS c\n"
    "WHERE c.id = (SELECT max(n.id) FROM cost_models AS n\n"
    "              WHERE n.device_id = c.device_id AND n.kind = c.kind);\n"
    /* Per device: its current 'all' model and how well that model predicted
     * the compute time of its 100 newest tiles. err_pct is
     * 100 * (measured / predicted - 1): positive means slower than
     * predicted. The window starts at the device's 100th newest tile id,
     * found on the tile_history_by_device index, so the view costs the
     * same on a year of history (CROSS JOIN keeps devices the outer loop;
     * the other order evaluated that lookup once per tile: 5 s on 1e6
     * tiles instead of 0.1 s). The median is the middle row(s) of the
     * sorted window (SQLite 3.40 has no median()). */
    DEVICE_SPEED_VIEW("")

    /* Among the 1000 newest successful requests, slowest first. */
    "CREATE VIEW slowest_requests AS\n"
    "SELECT id, datetime(created_at, 'unixepoch') AS created, model, planner,\n"
    "       devices, round(measured_ms, 1) AS measured_ms,\n"
    "       round(predicted_ms, 1) AS predicted_ms,\n"
    "       round(100.0 * (measured_ms / predicted_ms - 1.0), 1) AS err_pct,\n"
    "       bytes_moved\n"
    "FROM (SELECT * FROM requests WHERE status = 'ok'\n"
    "      ORDER BY id DESC LIMIT 1000)\n"
    "ORDER BY measured_ms DESC;\n"
    "CREATE VIEW failed_requests AS\n"
    "SELECT id, datetime(created_at, 'unixepoch') AS created, model, planner,\n"
    "       devices, round(measured_ms, 1) AS failed_after_ms, error\n"
    "FROM requests WHERE status = 'error'\n"
    "ORDER BY id DESC;\n"
    /* What each device did for each request, newest request first. The
     * grouping and order follow tile_history_by_request backwards, so
     * "SELECT ... LIMIT 20" reads 20 groups, not the whole history. */
    "CREATE VIEW device_history AS\n"
    "SELECT t.request_id, d.name AS device, r.model, count(*) AS tiles,\n"
    "       round(sum(t.gflop), 3) AS gflop,\n"
    "       round(sum(t.predicted_compute_ms), 1) AS predicted_compute_ms,\n"
    "       round(sum(t.measured_compute_ms), 1) AS measured_compute_ms,\n"
    "       round(sum(t.predicted_transfer_ms), 1) AS predicted_transfer_ms,\n"
    "       round(sum(t.measured_transfer_ms), 1) AS measured_transfer_ms,\n"
    "       round(sum(t.wait_ms), 1) AS wait_ms,\n"
    "       sum(t.bytes_in) AS bytes_in, sum(t.bytes_out) AS bytes_out,\n"
    "       datetime(min(t.created_at), 'unixepoch') AS created\n"
    "FROM tile_history AS t\n"
    "JOIN devices AS d ON d.id = t.device_id\n"
    "JOIN requests AS r ON r.id = t.request_id\n"
    "GROUP BY t.request_id, t.device_id\n"
    "ORDER BY t.request_id DESC, t.device_id DESC;\n";

/* Step 3: whether a tile's strip was made for it (its run paid for the
 * strip's preparation and first touches, which later runs do not): the
 * refit tells a device's rate from its repeat runs (scheduler/refit.h). */
static const char k_step3[] =
    "ALTER TABLE tile_history ADD COLUMN fresh_strip INTEGER NOT NULL DEFAULT 0\n"
    "  CHECK (fresh_strip IN (0, 1));\n";

/* Step 4: device_speed's error columns read repeat runs only: a first
 * run's time includes preparing its strip, which the cost model does not
 * price (refit.h, step 0), so counting it showed a device slower than
 * its model when it was not. */
static const char k_step4[] =
    "DROP VIEW device_speed;\n"
    DEVICE_SPEED_VIEW(" AND t.fresh_strip = 0");

/* Step 5: what a request did about agents it lost or that straggled
 * (InferReply.recovery: "agent 'x' went down: ...; 'y' stood in for 'x'";
 * '' for none), so that an operator finds such requests in the history. */
static const char k_step5[] =
    "ALTER TABLE requests ADD COLUMN recovery TEXT NOT NULL DEFAULT '';\n";

/* Step 6: when each device worked on each tile, as measured (TileResult.
 * spans): the request's real timeline, its gaps the waits for rows and FE
 * scales, which a tile's summed times cannot show. ms from the request's
 * start on the scheduler's clock. */
static const char k_step6[] =
    "CREATE TABLE tile_spans (\n"
    "  tile_id INTEGER NOT NULL REFERENCES tile_history(id) ON DELETE CASCADE,\n"
    "  start_ms REAL NOT NULL CHECK (start_ms >= 0),\n"
    "  end_ms REAL NOT NULL CHECK (end_ms >= start_ms)\n"
    ");\n"
    "CREATE INDEX tile_spans_by_tile ON tile_spans(tile_id);\n";

/* Step i+1 of the schema is k_steps[i]. */
static const char *const k_steps[] = {k_step1, k_step2, k_step3, k_step4, k_step5, k_step6};

_Static_assert(sizeof k_steps / sizeof k_steps[0] == STORE_SCHEMA_VERSION,
               "STORE_SCHEMA_VERSION must equal the number of steps");

/* Reads one integer PRAGMA. The first read of a file is where SQLite finds
 * out it is not a database, hence the special message. */
static err_code read_pragma(store *s, const char *pragma, int64_t *out,
                            err *e) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, pragma, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    }
  }
  err_code code = ERR_OK;
  if ((rc & 0xff) == SQLITE_NOTADB)
    code = err_set(e, ERR_CORRUPT,
                   "'%s' is not a SQLite database (damaged, encrypted or "
                   "another kind of file)",
                   s->path);
  else if (rc != SQLITE_OK)
    code = store_sqlite_error(s, rc, e, "reading the database header");
  sqlite3_finalize(st);
  return code;
}

/* Refuses, before any write, what this build must not touch. */
static err_code check_header(store *s, err *e) {
  int64_t app = 0, version = 0, objects = 0;
  err_code code = read_pragma(s, "PRAGMA application_id", &app, e);
  if (code == ERR_OK) code = read_pragma(s, "PRAGMA user_version", &version, e);
  if (code == ERR_OK)
    code = read_pragma(s, "SELECT count(*) FROM sqlite_schema", &objects, e);
  if (code != ERR_OK) return code;
  bool fresh = app == 0 && version == 0 && objects == 0;
  if (!fresh && app != STORE_APPLICATION_ID)
    return err_set(e, ERR_UNSUPPORTED,
                   "'%s' is a SQLite database of another program "
                   "(application_id %lld, user_version %lld), not EdgeDI's",
                   s->path, (long long)app, (long long)version);
  if (version > STORE_SCHEMA_VERSION)
    return err_set(e, ERR_UNSUPPORTED,
                   "database '%s' has schema version %lld, newer than the %d "
                   "this build knows: use a newer EdgeDI",
                   s->path, (long long)version, STORE_SCHEMA_VERSION);
  if (version < 0)
    return err_set(e, ERR_CORRUPT, "database '%s' has schema version %lld",
                   s->path, (long long)version);
  s->schema_version = (int)version;
  return ERR_OK;
}

/* Applies step `to` (1-based) unless another process got there first. */
static err_code apply_step(store *s, int to, err *e) {
  err_code code = store_begin(s, e);
  if (code != ERR_OK) return code;
  /* Re-read under the write lock: two schedulers may open a new file at
   * once; the second must not run a step the first committed. */
  int64_t version = 0;
  code = read_pragma(s, "PRAGMA user_version", &version, e);
  if (code == ERR_OK && version < to) {
    char what[64], set[64];
    snprintf(what, sizeof what, "schema migration to version %d", to);
    code = store_exec(s, k_steps[to - 1], e, what);
    snprintf(set, sizeof set, "PRAGMA user_version = %d", to);
    if (code == ERR_OK) code = store_exec(s, set, e, what);
  }
  if (code != ERR_OK) {
    store_rollback(s);
    return code;
  }
  return store_commit(s, e);
}

err_code store_schema_migrate(store *s, err *e) {
  err_code code = check_header(s, e);
  for (int to = s->schema_version + 1;
       code == ERR_OK && to <= STORE_SCHEMA_VERSION; to++) {
    code = apply_step(s, to, e);
    if (code == ERR_OK) s->schema_version = to;
  }
  return code;
}

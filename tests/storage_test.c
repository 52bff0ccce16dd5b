/* storage_test.c — the store (storage/store.h) against every promise of its
 * contract: schema creation and migration, refusal of files it must not
 * touch, value checks that keep nonsense out, all-or-nothing batches, the
 * administrator's views, and use from several threads and connections.
 *
 * Each test gets a fresh directory under $TEST_TMPDIR. The test inspects
 * the database through the sqlite3 API directly (a second connection), so
 * that what is checked is what is on disk, not what the store says; the old
 * (version 1) schema is written here by hand for the same reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/store.h"

/* ---- fixture: a fresh directory and database path per test --------------- */

typedef struct fixture {
  char dir[512];
  char path[600];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%s/storeXXXXXX", tmp ? tmp : "/tmp");
  if (!f->dir[0] || !mkdtemp(f->dir)) return -1;
  snprintf(f->path, sizeof f->path, "%s/edgedi.db", f->dir);
  *state = f;
  return 0;
}

static void remove_db(const char *path) {
  char p[700];
  const char *suffix[] = {"", "-wal", "-shm", "-journal"};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
}

static int teardown(void **state) {
  fixture *f = *state;
  remove_db(f->path);
  rmdir(f->dir);
  free(f);
  return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static store *open_ok(const char *path) {
  store *s = NULL;
  err e = {0};
  err_code c = store_open(path, &s, &e);
  if (c != ERR_OK) fail_msg("store_open(%s): %s", path, e.msg);
  return s;
}

#define ASSERT_OK(call)                                          \
  do {                                                           \
    err e_ = {0};                                                \
    err_code c_ = (call);                                        \
    if (c_ != ERR_OK) fail_msg("%s: %s", #call, e_.msg);          \
  } while (0)
/* The calls below pass &e_ as their err, so the macro can print it. */

#define ASSERT_ERR(code, needle, call)                                     \
  do {                                                                     \
    err e_ = {0};                                                          \
    err_code c_ = (call);                                                  \
    if (c_ != (code))                                                      \
      fail_msg("%s: got %s (%s), want %s", #call, err_name(c_), e_.msg,    \
               err_name(code));                                            \
    if (!strstr(e_.msg, (needle)))                                         \
      fail_msg("%s: message '%s' lacks '%s'", #call, e_.msg, (needle));    \
  } while (0)

static sqlite3 *raw_open(const char *path) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  return db;
}

static void raw_exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
    fail_msg("raw_exec(%s): %s", sql, msg);
}

/* The first column of the first row, as a double (NAN when no row or
 * NULL), so one helper serves counts and measurements. */
static double raw_num(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    fail_msg("raw_num(%s): %s", sql, sqlite3_errmsg(db));
  double v = NAN;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    v = sqlite3_column_double(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void raw_text(sqlite3 *db, const char *sql, char *out, size_t cap) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    fail_msg("raw_text(%s): %s", sql, sqlite3_errmsg(db));
  out[0] = '\0';
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
}

static double file_num(const char *path, const char *sql) {
  sqlite3 *db = raw_open(path);
  double v = raw_num(db, sql);
  sqlite3_close(db);
  return v;
}

static int64_t add_device(store *s, const char *name, const char *address) {
  store_device_reg r = {.name = name, .address = address, .cores = 4,
                        .arch = "aarch64", .threads = 4};
  int64_t id = 0;
  ASSERT_OK(store_device_register(s, &r, false, &id, NULL, &e_));
  return id;
}

static store_cost_model cost(double a, double b) {
  store_cost_model m = {.ms_per_gflop = a, .fixed_ms = b,
                        .bandwidth_mbps = 100, .rtt_ms = 1, .samples = 12,
                        .fit_error = 0.05};
  return m;
}

static int64_t begin_request(store *s, const char *model) {
  store_request_new r = {.model = model, .planner = "balanced",
                         .devices = "pi1,pi2", .plan = "{\"segments\":[]}",
                         .predicted_ms = 100};
  int64_t id = 0;
  ASSERT_OK(store_request_begin(s, &r, &id, &e_));
  return id;
}

static store_tile tile(int64_t request, int64_t device, double predicted,
                       double measured) {
  store_tile t = {.request_id = request, .device_id = device, .segment = 0,
                  .first_layer = 0, .end_layer = 4, .row_lo = 0,
                  .row_hi = 50, .gflop = 0.5, .bytes_in = 1000,
                  .bytes_out = 2000, .predicted_compute_ms = predicted,
                  .measured_compute_ms = measured,
                  .predicted_transfer_ms = 1, .measured_transfer_ms = 1.5,
                  .cpu_ms = measured * 0.9, .wait_ms = 0.2};
  return t;
}

static void write_file(const char *path, const void *bytes, size_t n) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(bytes, 1, n, fp), n);
  fclose(fp);
}

static size_t read_file(const char *path, void *bytes, size_t cap) {
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  size_t n = fread(bytes, 1, cap, fp);
  fclose(fp);
  return n;
}

/* ---- opening ------------------------------------------------------------- */

static void test_fresh_open_creates_schema(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  ASSERT_OK(store_integrity_check(s, &e_));

  sqlite3 *db = raw_open(f->path);
  assert_int_equal((int)raw_num(db, "PRAGMA user_version"),
                   STORE_SCHEMA_VERSION);
  assert_int_equal((int)raw_num(db, "PRAGMA application_id"), 0x45444749);
  char mode[16];
  raw_text(db, "PRAGMA journal_mode", mode, sizeof mode);
  assert_string_equal(mode, "wal");
  const char *objects[] = {
      "devices", "cost_models", "tile_history", "tile_spans", "models", "requests",
      "profile_samples", "current_cost_models", "device_speed",
      "slowest_requests", "failed_requests", "device_history"};
  for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) {
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM sqlite_schema WHERE name = '%s'",
             objects[i]);
    if (raw_num(db, sql) != 1) fail_msg("missing %s", objects[i]);
    /* Every view and table must also run on an empty database. */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", objects[i]);
    assert_true(raw_num(db, sql) == 0);
  }
  sqlite3_close(db);
  store_close(s);

  /* Opening again migrates nothing and changes nothing. */
  s = open_ok(f->path);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  store_close(s);
  assert_string_equal(STORE_DEFAULT_PATH, "edgedi.db");
}

static void test_reopen_keeps_data(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  int64_t pi1 = add_device(s, "pi1", "10.0.0.1:7000");
  int64_t pi2 = add_device(s, "pi2", "10.0.0.2:7000");
  store_cost_model m = cost(80, 3);
  ASSERT_OK(store_cost_model_save(s, pi1, &m, &e_));
  snprintf(m.kind, sizeof m.kind, "conv3x3");
  m.ms_per_gflop = 70;
  ASSERT_OK(store_cost_model_save(s, pi1, &m, &e_));
  store_model model = {.name = "vgg16c", .digest = "abc123", .gflop = 1.29,
                       .params = 1000000, .layers = 40};
  const char spec[] = "zoo:vgg16 ratio:8";
  ASSERT_OK(store_model_add(s, &model, spec, sizeof spec, NULL, &e_));
  int64_t req = begin_request(s, "vgg16c");
  store_tile t = tile(req, pi2, 10, 11);
  ASSERT_OK(store_tiles_add(s, &t, 1, &e_));
  store_close(s); /* "restart" */

  s = open_ok(f->path);
  store_device *v = NULL;
  size_t n = 0;
  ASSERT_OK(store_device_list(s, &v, &n, &e_));
  assert_int_equal(n, 2);
  assert_string_equal(v[0].name, "pi1");
  assert_int_equal(v[0].id, pi1);
  assert_string_equal(v[0].address, "10.0.0.1:7000");
  assert_string_equal(v[0].arch, "aarch64");
  assert_int_equal(v[0].cores, 4);
  assert_int_equal(v[0].state, STORE_DEVICE_UP);
  assert_true(v[0].first_seen > 0 && v[0].last_seen >= v[0].first_seen);
  assert_true(v[0].has_cost); /* the 'all' model, not the conv3x3 one */
  assert_string_equal(v[0].cost.kind, "all");
  assert_true(v[0].cost.ms_per_gflop == 80 && v[0].cost.fixed_ms == 3);
  assert_true(v[0].cost.bandwidth_mbps == 100 && v[0].cost.samples == 12);
  assert_string_equal(v[1].name, "pi2");
  assert_false(v[1].has_cost);
  store_free(v);

  store_cost_model c;
  ASSERT_OK(store_cost_model_get(s, pi1, "conv3x3", &c, &e_));
  assert_true(c.ms_per_gflop == 70);
  void *got = NULL;
  size_t got_bytes = 0;
  store_model gm;
  ASSERT_OK(store_model_get(s, "vgg16c", &gm, &got, &got_bytes, &e_));
  assert_int_equal(got_bytes, sizeof spec);
  assert_memory_equal(got, spec, sizeof spec);
  assert_string_equal(gm.digest, "abc123");
  store_free(got);
  store_tile *tiles = NULL;
  ASSERT_OK(store_tiles_recent(s, pi2, 10, &tiles, &n, &e_));
  assert_int_equal(n, 1);
  assert_int_equal(tiles[0].request_id, req);
  store_free(tiles);

  /* A new request after the restart never reuses an id. */
  assert_true(begin_request(s, "vgg16c") > req);
  store_close(s);
}

/* The version-1 schema exactly as the first release created it. Frozen:
 * it is the input a real upgrade sees. */
static const char k_v1_schema[] =
    "PRAGMA application_id = 1162102601;" /* 0x45444749 */
    "CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " address TEXT NOT NULL, cores INTEGER NOT NULL DEFAULT 0 CHECK (cores >= 0),"
    " arch TEXT NOT NULL DEFAULT '', threads INTEGER NOT NULL DEFAULT 0"
    " CHECK (threads >= 0), first_seen INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'down'"
    " CHECK (state IN ('up', 'down', 'profiling')));"
    "CREATE TABLE cost_models (id INTEGER PRIMARY KEY, device_id INTEGER NOT"
    " NULL REFERENCES devices(id) ON DELETE CASCADE, ms_per_gflop REAL NOT"
    " NULL CHECK (ms_per_gflop > 0), fixed_ms REAL NOT NULL CHECK (fixed_ms"
    " >= 0), bandwidth_mbps REAL NOT NULL CHECK (bandwidth_mbps > 0), rtt_ms"
    " REAL NOT NULL CHECK (rtt_ms >= 0), samples INTEGER NOT NULL CHECK"
    " (samples >= 0), fit_error REAL NOT NULL CHECK (fit_error >= 0),"
    " updated_at INTEGER NOT NULL);"
    "CREATE INDEX cost_models_by_device ON cost_models(device_id, id);"
    "CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " digest TEXT NOT NULL, spec BLOB NOT NULL, gflop REAL NOT NULL CHECK"
    " (gflop >= 0), params INTEGER NOT NULL CHECK (params >= 0), layers"
    " INTEGER NOT NULL CHECK (layers >= 0), created_at INTEGER NOT NULL);"
    "CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT"
    " NOT NULL, planner TEXT NOT NULL DEFAULT '', devices TEXT NOT NULL"
    " DEFAULT '', plan TEXT, predicted_ms REAL CHECK (predicted_ms >= 0),"
    " measured_ms REAL CHECK (measured_ms >= 0), status TEXT NOT NULL DEFAULT"
    " 'running' CHECK (status IN ('running', 'ok', 'error')), error TEXT,"
    " bytes_moved INTEGER NOT NULL DEFAULT 0 CHECK (bytes_moved >= 0),"
    " created_at INTEGER NOT NULL, finished_at INTEGER);"
    "CREATE INDEX requests_by_status ON requests(status, id);"
    "CREATE TABLE tile_history (id INTEGER PRIMARY KEY, request_id INTEGER"
    " NOT NULL REFERENCES requests(id) ON DELETE CASCADE, device_id INTEGER"
    " NOT NULL REFERENCES devices(id) ON DELETE CASCADE, segment INTEGER NOT"
    " NULL, first_layer INTEGER NOT NULL, end_layer INTEGER NOT NULL, row_lo"
    " INTEGER NOT NULL, row_hi INTEGER NOT NULL, gflop REAL NOT NULL,"
    " bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL,"
    " predicted_compute_ms REAL NOT NULL, measured_compute_ms REAL NOT NULL,"
    " predicted_transfer_ms REAL NOT NULL, measured_transfer_ms REAL NOT"
    " NULL, cpu_ms REAL NOT NULL, wait_ms REAL NOT NULL, created_at INTEGER"
    " NOT NULL);"
    "CREATE INDEX tile_history_by_device ON tile_history(device_id, id);"
    "CREATE INDEX tile_history_by_request ON tile_history(request_id,"
    " device_id);"
    "PRAGMA user_version = 1;";

static void test_migrates_version_1(void **state) {
  fixture *f = *state;
  sqlite3 *db = raw_open(f->path);
  raw_exec(db, k_v1_schema);
  raw_exec(db,
           "INSERT INTO devices VALUES (7, 'old-pi', '10.0.0.9:7000', 4, "
           "'armv7', 4, 1000, 2000, 'down');"
           "INSERT INTO cost_models(device_id, ms_per_gflop, fixed_ms, "
           "bandwidth_mbps, rtt_ms, samples, fit_error, updated_at) "
           "VALUES (7, 120, 4, 90, 1.2, 30, 0.08, 1500), "
           "(7, 110, 5, 95, 1.1, 40, 0.06, 1600);"
           "INSERT INTO requests(id, model, status, measured_ms, predicted_ms, "
           "created_at) VALUES (3, 'vgg16c', 'ok', 500, 450, 1700);"
           "INSERT INTO tile_history VALUES (1, 3, 7, 0, 0, 4, 0, 200, 1.3, "
           "40000, 0, 450, 500, 0, 0, 480, 0, 1700);");
  sqlite3_close(db);

  store *s = open_ok(f->path);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  ASSERT_OK(store_integrity_check(s, &e_));
  /* The old fits became kind 'all', the newest one current. */
  store_cost_model c;
  ASSERT_OK(store_cost_model_get(s, 7, NULL, &c, &e_));
  assert_string_equal(c.kind, "all");
  assert_true(c.ms_per_gflop == 110 && c.samples == 40 && c.updated_at == 1600);
  store_device d;
  ASSERT_OK(store_device_find(s, "old-pi", &d, &e_));
  assert_int_equal(d.id, 7);
  assert_int_equal(d.state, STORE_DEVICE_DOWN);
  assert_true(d.has_cost && d.cost.ms_per_gflop == 110);
  /* What step 2 added works on the upgraded file. */
  store_profile_sample p = {.gflop = 1, .ms = 100, .cpu_ms = 95};
  ASSERT_OK(store_profile_add(s, 7, &p, 1, &e_));
  store_cost_model k = cost(60, 1);
  snprintf(k.kind, sizeof k.kind, "conv1x1");
  ASSERT_OK(store_cost_model_save(s, 7, &k, &e_));
  /* A new request continues after the old ids. */
  assert_true(begin_request(s, "vgg16c") > 3);
  /* Step 5: the old request recovered from nothing. */
  store_request_row *rr = NULL;
  size_t nr = 0;
  ASSERT_OK(store_request_recent(s, 10, &rr, &nr, &e_));
  assert_true(nr == 2 && rr[1].id == 3);
  assert_string_equal(rr[1].recovery, "");
  store_free(rr);
  /* Step 3: the old tile reads as a repeat run (nothing said otherwise). */
  store_tile *w = NULL;
  size_t n = 0;
  ASSERT_OK(store_tiles_recent(s, 7, 10, &w, &n, &e_));
  assert_int_equal(n, 1);
  assert_true(w[0].measured_compute_ms == 500 && !w[0].fresh_strip);
  store_free(w);
  /* Step 6: the old tile has no spans; a new one gets them. */
  store_span *sp = NULL;
  ASSERT_OK(store_request_spans(s, 3, &sp, &n, &e_));
  assert_int_equal(n, 0);
  store_free(sp);
  const double pair[] = {1.5, 2.5};
  store_tile nt = tile(3, 7, 10, 20);
  nt.spans = pair;
  nt.n_spans = 1;
  ASSERT_OK(store_tiles_add(s, &nt, 1, &e_));
  ASSERT_OK(store_request_spans(s, 3, &sp, &n, &e_));
  assert_true(n == 1 && sp[0].device_id == 7 && sp[0].start_ms == 1.5 && sp[0].end_ms == 2.5);
  store_free(sp);
  store_close(s);

  db = raw_open(f->path);
  assert_int_equal((int)raw_num(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  assert_true(raw_num(db, "SELECT count(*) FROM current_cost_models") == 2);
  assert_true(raw_num(db, "SELECT ms_per_gflop FROM device_speed") == 110);
  assert_true(raw_num(db, "SELECT tiles FROM device_speed") == 2);
  assert_true(raw_num(db, "SELECT count(*) FROM slowest_requests") == 1);
  assert_true(raw_num(db, "SELECT count(*) FROM device_history") == 1);
  sqlite3_close(db);
}

static void test_garbage_file_is_refused_untouched(void **state) {
  fixture *f = *state;
  unsigned char junk[8192];
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof junk; i++) {
    x = x * 1664525u + 1013904223u;
    junk[i] = (unsigned char)(x >> 24);
  }
  const size_t sizes[] = {sizeof junk, 4096, 100, 10};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    remove_db(f->path);
    write_file(f->path, junk, sizes[k]);
    store *s = (store *)1;
    ASSERT_ERR(ERR_CORRUPT, "not a SQLite database",
               store_open(f->path, &s, &e_));
    assert_null(s);
    unsigned char back[sizeof junk + 1];
    assert_int_equal(read_file(f->path, back, sizeof back), sizes[k]);
    assert_memory_equal(back, junk, sizes[k]);
  }
  /* A text file, the typical wrong --db argument. */
  remove_db(f->path);
  const char text[] = "model: vgg16c\nratio: 8\n... not a database at all ...\n"
                      "padding padding padding padding padding padding pad\n"
                      "padding padding padding padding padding padding pad\n";
  write_file(f->path, text, sizeof text - 1);
  store *s = NULL;
  ASSERT_ERR(ERR_CORRUPT, f->path, store_open(f->path, &s, &e_));
}

static void test_newer_schema_is_refused_untouched(void **state) {
  fixture *f = *state;
  store_close(open_ok(f->path));
  sqlite3 *db = raw_open(f->path);
  raw_exec(db, "PRAGMA user_version = 99");
  sqlite3_close(db);
  store *s = NULL;
  ASSERT_ERR(ERR_UNSUPPORTED, "schema version 99",
             store_open(f->path, &s, &e_));
  assert_null(s);
  assert_true(file_num(f->path, "PRAGMA user_version") == 99);
}

static void test_other_programs_database_is_refused(void **state) {
  fixture *f = *state;
  sqlite3 *db = raw_open(f->path);
  raw_exec(db, "CREATE TABLE photos (id INTEGER PRIMARY KEY, jpeg BLOB)");
  sqlite3_close(db);
  store *s = NULL;
  ASSERT_ERR(ERR_UNSUPPORTED, "another program", store_open(f->path, &s, &e_));
  assert_true(file_num(f->path,
                       "SELECT count(*) FROM sqlite_schema") == 1);

  remove_db(f->path);
  db = raw_open(f->path);
  raw_exec(db, "PRAGMA application_id = 42");
  sqlite3_close(db);
  ASSERT_ERR(ERR_UNSUPPORTED, "another program", store_open(f->path, &s, &e_));
}

static void test_open_argument_and_io_errors(void **state) {
  fixture *f = *state;
  store *s = NULL;
  ASSERT_ERR(ERR_INVALID, "empty", store_open(NULL, &s, &e_));
  ASSERT_ERR(ERR_INVALID, "empty", store_open("", &s, &e_));
  ASSERT_ERR(ERR_INVALID, "out", store_open(f->path, NULL, &e_));
  char bad[700];
  snprintf(bad, sizeof bad, "%s/no/such/dir/edgedi.db", f->dir);
  ASSERT_ERR(ERR_IO, "cannot open", store_open(bad, &s, &e_));
  assert_null(s);
  ASSERT_ERR(ERR_IO, "cannot open", store_open(f->dir, &s, &e_));
  /* An err pointer is optional. */
  assert_int_equal(store_open(bad, &s, NULL), ERR_IO);
  /* A reader's open: no file there is an error, and none is made. */
  ASSERT_ERR(ERR_NOT_FOUND, "no database at", store_open_existing(f->path, &s, &e_));
  assert_null(s);
  assert_int_equal(access(f->path, F_OK), -1);
  store_close(open_ok(f->path));
  ASSERT_OK(store_open_existing(f->path, &s, &e_));
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  store_close(s);
  /* An in-memory database works (no WAL there), e.g. for other tests. */
  s = open_ok(":memory:");
  assert_true(add_device(s, "m", "x:1") > 0);
  store_close(s);
  store_close(NULL);
}

/* ---- devices ------------------------------------------------------------- */

static void test_device_registration(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  store_device_reg r = {.name = "pi1", .address = "10.0.0.1:7000",
                        .cores = 4, .arch = "aarch64", .threads = 4};
  int64_t id = 0, id2 = 0;
  bool created = false;
  ASSERT_OK(store_device_register(s, &r, false, &id, &created, &e_));
  assert_true(created && id > 0);

  /* Same name, another address, while up: refused, naming the holder. */
  r.address = "10.0.0.2:7000";
  ASSERT_ERR(ERR_INVALID, "taken by 10.0.0.1:7000",
             store_device_register(s, &r, false, &id2, &created, &e_));
  store_device d;
  ASSERT_OK(store_device_get(s, id, &d, &e_));
  assert_string_equal(d.address, "10.0.0.1:7000");
  /* Profiling counts as live too. */
  ASSERT_OK(store_device_set_state(s, id, STORE_DEVICE_PROFILING, &e_));
  ASSERT_ERR(ERR_INVALID, "taken",
             store_device_register(s, &r, false, &id2, &created, &e_));

  /* The same agent coming back (same address) keeps its id. */
  r.address = "10.0.0.1:7000";
  r.cores = 8;
  ASSERT_OK(store_device_register(s, &r, false, &id2, &created, &e_));
  assert_int_equal(id2, id);
  assert_false(created);
  ASSERT_OK(store_device_get(s, id, &d, &e_));
  assert_int_equal(d.cores, 8);
  assert_int_equal(d.state, STORE_DEVICE_UP);

  /* force: an operator replaced the board. */
  r.address = "10.0.0.3:7000";
  ASSERT_OK(store_device_register(s, &r, true, &id2, NULL, &e_));
  assert_int_equal(id2, id);
  ASSERT_OK(store_device_find(s, "pi1", &d, &e_));
  assert_string_equal(d.address, "10.0.0.3:7000");

  /* A device that is down may come back from anywhere. */
  ASSERT_OK(store_device_set_state(s, id, STORE_DEVICE_DOWN, &e_));
  r.address = "10.0.0.4:7000";
  ASSERT_OK(store_device_register(s, &r, false, &id2, NULL, &e_));
  assert_int_equal(id2, id);

  /* Bad input. */
  r.name = "";
  ASSERT_ERR(ERR_INVALID, "device name is empty",
             store_device_register(s, &r, false, &id2, NULL, &e_));
  char longname[STORE_NAME_BYTES + 10];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  r.name = longname;
  ASSERT_ERR(ERR_INVALID, "device name is longer than 63 bytes",
             store_device_register(s, &r, false, &id2, NULL, &e_));
  r.name = "pi2";
  r.address = NULL;
  ASSERT_ERR(ERR_INVALID, "address is empty",
             store_device_register(s, &r, false, &id2, NULL, &e_));
  ASSERT_ERR(ERR_INVALID, "no store",
             store_device_register(s, NULL, false, &id2, NULL, &e_));
  ASSERT_ERR(ERR_NOT_FOUND, "no device has id 999",
             store_device_set_state(s, 999, STORE_DEVICE_UP, &e_));
  ASSERT_ERR(ERR_INVALID, "state 9",
             store_device_set_state(s, id, (store_device_state)9, &e_));
  ASSERT_ERR(ERR_NOT_FOUND, "999", store_device_touch(s, 999, &e_));
  ASSERT_ERR(ERR_NOT_FOUND, "no device is named 'nope'",
             store_device_find(s, "nope", &d, &e_));
  ASSERT_ERR(ERR_NOT_FOUND, "999", store_device_get(s, 999, &d, &e_));
  ASSERT_OK(store_device_touch(s, id, &e_));

  store_close(s);
  assert_true(file_num(f->path, "SELECT count(*) FROM devices") == 1);
  assert_string_equal(store_device_state_name(STORE_DEVICE_PROFILING),
                      "profiling");
  assert_string_equal(store_device_state_name((store_device_state)9), "?");
}

/* ---- cost models --------------------------------------------------------- */

static void test_cost_model_validation_and_history(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  int64_t id = add_device(s, "pi1", "a:1");

  struct {
    store_cost_model m;
    const char *why;
  } bad[] = {
      {cost(NAN, 1), "ms_per_gflop is not a finite number"},
      {cost(INFINITY, 1), "ms_per_gflop is not a finite number"},
      {cost(-80, 1), "ms_per_gflop is negative"},
      {cost(0, 1), "ms_per_gflop must be greater than 0"},
      {cost(80, -1), "fixed_ms is negative"},
      {cost(80, NAN), "fixed_ms is not a finite"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ASSERT_ERR(ERR_INVALID, bad[i].why,
               store_cost_model_save(s, id, &bad[i].m, &e_));
  store_cost_model m = cost(80, 1);
  m.bandwidth_mbps = 0;
  ASSERT_ERR(ERR_INVALID, "bandwidth_mbps must be greater than 0",
             store_cost_model_save(s, id, &m, &e_));
  m = cost(80, 1);
  m.rtt_ms = -INFINITY;
  ASSERT_ERR(ERR_INVALID, "rtt_ms", store_cost_model_save(s, id, &m, &e_));
  m = cost(80, 1);
  m.fit_error = NAN;
  ASSERT_ERR(ERR_INVALID, "fit_error", store_cost_model_save(s, id, &m, &e_));
  m = cost(80, 1);
  ASSERT_ERR(ERR_NOT_FOUND, "no device has id 999",
             store_cost_model_save(s, 999, &m, &e_));
  store_cost_model got;
  ASSERT_ERR(ERR_NOT_FOUND, "no 'all' cost model",
             store_cost_model_get(s, id, NULL, &got, &e_));
  assert_true(file_num(f->path, "SELECT count(*) FROM cost_models") == 0);

  /* History: every fit is kept, the newest is current. */
  for (int i = 1; i <= 3; i++) {
    m = cost(100.0 - i, i);
    ASSERT_OK(store_cost_model_save(s, id, &m, &e_));
  }
  snprintf(m.kind, sizeof m.kind, "conv3x3");
  m.ms_per_gflop = 50;
  ASSERT_OK(store_cost_model_save(s, id, &m, &e_));
  ASSERT_OK(store_cost_model_get(s, id, "", &got, &e_));
  assert_true(got.ms_per_gflop == 97 && got.fixed_ms == 3);
  assert_true(got.updated_at > 0);
  ASSERT_OK(store_cost_model_get(s, id, "conv3x3", &got, &e_));
  assert_true(got.ms_per_gflop == 50);
  store_cost_model *v = NULL;
  size_t n = 0;
  ASSERT_OK(store_cost_model_list(s, id, &v, &n, &e_));
  assert_int_equal(n, 2);
  assert_string_equal(v[0].kind, "all");
  assert_true(v[0].ms_per_gflop == 97);
  assert_string_equal(v[1].kind, "conv3x3");
  store_free(v);
  ASSERT_OK(store_cost_model_list(s, 999, &v, &n, &e_));
  assert_int_equal(n, 0);
  store_free(v);
  store_close(s);

  sqlite3 *db = raw_open(f->path);
  assert_true(raw_num(db, "SELECT count(*) FROM cost_models") == 4);
  assert_true(raw_num(db, "SELECT count(*) FROM current_cost_models") == 2);
  /* The table refuses nonsense written by hand too. */
  assert_int_not_equal(
      sqlite3_exec(db,
                   "INSERT INTO cost_models(device_id, ms_per_gflop, fixed_ms,"
                   " bandwidth_mbps, rtt_ms, samples, fit_error, updated_at)"
                   " VALUES (1, -5, 0, 100, 1, 1, 0, 0)",
                   NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
}

static void test_profile_samples(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  int64_t id = add_device(s, "pi1", "a:1");
  store_profile_sample v[5];
  for (int i = 0; i < 5; i++)
    v[i] = (store_profile_sample){.gflop = i + 1, .ms = 80.0 * (i + 1),
                                  .cpu_ms = 75.0 * (i + 1)};
  ASSERT_OK(store_profile_add(s, id, v, 5, &e_));
  ASSERT_OK(store_profile_add(s, id, v, 0, &e_));
  v[3].ms = NAN;
  ASSERT_ERR(ERR_INVALID, "profile sample 3: ms",
             store_profile_add(s, id, v, 5, &e_));
  v[3].ms = 1;
  ASSERT_ERR(ERR_NOT_FOUND, "no device has id 999",
             store_profile_add(s, 999, v, 5, &e_));
  store_profile_sample *got = NULL;
  size_t n = 0;
  ASSERT_OK(store_profile_recent(s, id, 3, &got, &n, &e_));
  assert_int_equal(n, 3);
  assert_true(got[0].gflop == 5 && got[0].ms == 400 && got[2].gflop == 3);
  assert_true(got[0].created_at > 0);
  store_free(got);
  store_close(s);
  assert_true(file_num(f->path, "SELECT count(*) FROM profile_samples") == 5);
}

/* ---- tiles and requests -------------------------------------------------- */

static void test_tiles_batch_and_window(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  int64_t a = add_device(s, "a", "a:1"), b = add_device(s, "b", "b:1");
  int64_t req = begin_request(s, "m");
  enum { N = 250 };
  store_tile *v = calloc(N, sizeof *v);
  for (int i = 0; i < N; i++) {
    v[i] = tile(req, i % 5 == 0 ? b : a, 10, 10 + i);
    v[i].segment = (uint32_t)i;
    v[i].fresh_strip = i % 3 == 0;
  }
  ASSERT_OK(store_tiles_add(s, v, N, &e_));
  ASSERT_OK(store_tiles_add(s, v, 0, &e_));

  store_tile *w = NULL;
  size_t n = 0;
  ASSERT_OK(store_tiles_recent(s, a, 100, &w, &n, &e_));
  assert_int_equal(n, 100);
  /* Newest first: the last tiles of a are segments 249, 248, 247, 246,
   * then 244 (245 went to b). */
  assert_int_equal(w[0].segment, 249);
  assert_int_equal(w[4].segment, 244);
  for (size_t i = 1; i < n; i++) assert_true(w[i].id < w[i - 1].id);
  assert_int_equal(w[0].device_id, a);
  assert_int_equal(w[0].request_id, req);
  assert_true(w[0].measured_compute_ms == 259 && w[0].gflop == 0.5);
  assert_true(w[0].bytes_in == 1000 && w[0].bytes_out == 2000);
  assert_true(w[0].row_hi == 50 && w[0].end_layer == 4);
  assert_true(w[0].fresh_strip && !w[4].fresh_strip); /* segments 249 and 244 */
  store_free(w);
  ASSERT_OK(store_tiles_recent(s, b, 1000, &w, &n, &e_));
  assert_int_equal(n, N / 5);
  store_free(w);
  ASSERT_OK(store_tiles_recent(s, 999, 10, &w, &n, &e_));
  assert_int_equal(n, 0);
  store_free(w);

  /* A bad tile anywhere in a batch writes none of it. */
  v[120].measured_compute_ms = NAN;
  ASSERT_ERR(ERR_INVALID, "tile 120: measured_compute_ms",
             store_tiles_add(s, v, N, &e_));
  v[120].measured_compute_ms = 1;
  v[7].row_lo = 60;
  ASSERT_ERR(ERR_INVALID, "tile 7: rows [60, 50) are reversed",
             store_tiles_add(s, v, N, &e_));
  v[7].row_lo = 0;
  v[8].end_layer = 0;
  v[8].first_layer = 3;
  ASSERT_ERR(ERR_INVALID, "tile 8: layers",
             store_tiles_add(s, v, N, &e_));
  v[8].first_layer = 0;
  v[9].wait_ms = -1;
  ASSERT_ERR(ERR_INVALID, "tile 9: wait_ms is negative",
             store_tiles_add(s, v, N, &e_));
  v[9].wait_ms = 0;
  v[10].bytes_in = UINT64_MAX;
  ASSERT_ERR(ERR_INVALID, "tile 10: byte count",
             store_tiles_add(s, v, N, &e_));
  v[10].bytes_in = 0;
  /* Checked only by the database: a tile of an unknown request, after 200
   * good ones in the same batch. */
  v[200].request_id = 999;
  ASSERT_ERR(ERR_NOT_FOUND, "tile 200: request 999",
             store_tiles_add(s, v, N, &e_));
  v[200].request_id = req;
  v[201].device_id = 999;
  ASSERT_ERR(ERR_NOT_FOUND, "device 999", store_tiles_add(s, v, N, &e_));
  ASSERT_ERR(ERR_INVALID, "no store", store_tiles_add(s, NULL, 3, &e_));
  free(v);
  ASSERT_OK(store_integrity_check(s, &e_));
  store_close(s);
  assert_true(file_num(f->path, "SELECT count(*) FROM tile_history") == N);
}

/* A tile's compute stretches: written with it, read back per request by
 * device then start, refused when out of order, gone with their tile. */
static void test_tile_spans(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  int64_t a = add_device(s, "a", "a:1"), b = add_device(s, "b", "b:1");
  int64_t r1 = begin_request(s, "m"), r2 = begin_request(s, "m");
  const double sa0[] = {0, 2, 5, 7.5}, sb0[] = {1, 4}, sa1[] = {9, 9, 10, 12}, s2[] = {0, 1};
  store_tile v[4] = {tile(r1, a, 10, 10), tile(r1, b, 10, 10), tile(r1, a, 10, 10),
                     tile(r2, a, 10, 10)};
  v[0].spans = sa0, v[0].n_spans = 2;
  v[1].spans = sb0, v[1].n_spans = 1;
  v[2].segment = 1, v[2].spans = sa1, v[2].n_spans = 2;
  v[3].spans = s2, v[3].n_spans = 1;
  ASSERT_OK(store_tiles_add(s, v, 4, &e_));

  store_span *p = NULL;
  size_t n = 0;
  ASSERT_OK(store_request_spans(s, r1, &p, &n, &e_));
  assert_int_equal(n, 5);
  const double want[][3] = {{0, 0, 2}, {0, 5, 7.5}, {1, 9, 9}, {1, 10, 12}, {0, 1, 4}};
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(p[i].device_id, i < 4 ? a : b);
    assert_int_equal(p[i].segment, (uint32_t)want[i][0]);
    assert_true(p[i].start_ms == want[i][1] && p[i].end_ms == want[i][2]);
  }
  store_free(p);
  ASSERT_OK(store_request_spans(s, 999, &p, &n, &e_));
  assert_int_equal(n, 0);
  store_free(p);
  /* The newest finished request with spans: none while both run. */
  int64_t newest = -1;
  ASSERT_OK(store_request_newest_with_spans(s, &newest, &e_));
  assert_int_equal(newest, 0);
  const store_request_result done = {.ok = true, .measured_ms = 12};
  ASSERT_OK(store_request_finish(s, r1, &done, &e_));
  ASSERT_OK(store_request_newest_with_spans(s, &newest, &e_));
  assert_int_equal(newest, r1);
  ASSERT_OK(store_request_finish(s, r2, &done, &e_));
  ASSERT_OK(store_request_newest_with_spans(s, &newest, &e_));
  assert_int_equal(newest, r2);
  ASSERT_ERR(ERR_INVALID, "no store", store_request_newest_with_spans(NULL, &newest, &e_));

  /* Out of order, negative or not a number: the batch writes nothing. */
  const double bad[][2] = {{3, 2}, {-1, 2}, {NAN, 1}, {1, INFINITY}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    store_tile t = tile(r2, b, 10, 10);
    t.spans = bad[i];
    t.n_spans = 1;
    store_tile two[2] = {tile(r2, b, 10, 10), t};
    ASSERT_ERR(ERR_INVALID, "tile 1: span 0", store_tiles_add(s, two, 2, &e_));
  }
  store_tile t = tile(r2, b, 10, 10);
  t.n_spans = 3; /* and no array */
  ASSERT_ERR(ERR_INVALID, "spans missing", store_tiles_add(s, &t, 1, &e_));
  ASSERT_OK(store_request_spans(s, r2, &p, &n, &e_));
  assert_int_equal(n, 1);
  store_free(p);
  ASSERT_ERR(ERR_INVALID, "no store", store_request_spans(NULL, r1, &p, &n, &e_));
  store_close(s);
  assert_true(file_num(f->path, "SELECT count(*) FROM tile_history") == 4);
  assert_true(file_num(f->path, "SELECT count(*) FROM tile_spans") == 6);
}

static void test_requests_and_views(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  int64_t a = add_device(s, "a", "a:1"), b = add_device(s, "b", "b:1");
  store_cost_model m = cost(100, 2);
  ASSERT_OK(store_cost_model_save(s, a, &m, &e_));

  /* Three good requests of 300, 900 and 600 ms, one failed. */
  const double ms[] = {300, 900, 600};
  int64_t ids[3];
  for (int i = 0; i < 3; i++) {
    ids[i] = begin_request(s, "vgg16c");
    store_request_result r = {.ok = true, .measured_ms = ms[i],
                              .bytes_moved = 1000u * (unsigned)(i + 1)};
    ASSERT_OK(store_request_finish(s, ids[i], &r, &e_));
  }
  store_request_new nr = {.model = "nosuch"}; /* failed before planning */
  int64_t bad_id = 0;
  ASSERT_OK(store_request_begin(s, &nr, &bad_id, &e_));
  store_request_result fail = {.ok = false, .measured_ms = 0.5,
                               .error = "unknown model 'nosuch'"};
  ASSERT_OK(store_request_finish(s, bad_id, &fail, &e_));
  int64_t running = begin_request(s, "vgg16c");

  /* A request ends once, and a failure says why. */
  ASSERT_ERR(ERR_INVALID, "already finished (ok)",
             store_request_finish(s, ids[0], &fail, &e_));
  ASSERT_ERR(ERR_NOT_FOUND, "no request has id 999",
             store_request_finish(s, 999, &fail, &e_));
  store_request_result why = {.ok = false, .measured_ms = 1};
  ASSERT_ERR(ERR_INVALID, "no error message",
             store_request_finish(s, running, &why, &e_));
  why = (store_request_result){.ok = true, .measured_ms = -1};
  ASSERT_ERR(ERR_INVALID, "measured_ms is negative",
             store_request_finish(s, running, &why, &e_));
  why = (store_request_result){.ok = true, .bytes_moved = UINT64_MAX};
  ASSERT_ERR(ERR_INVALID, "too large",
             store_request_finish(s, running, &why, &e_));
  nr = (store_request_new){.model = "m", .plan = "{}", .predicted_ms = NAN};
  ASSERT_ERR(ERR_INVALID, "predicted_ms",
             store_request_begin(s, &nr, &bad_id, &e_));
  nr = (store_request_new){.model = NULL};
  ASSERT_ERR(ERR_INVALID, "request model is empty",
             store_request_begin(s, &nr, &bad_id, &e_));

  /* Device a: 5 tiles of relative error -10, 0, 10, 20, 50 %, and a first
   * run of a strip (+900 %: it prepared the strip), which the error
   * columns leave out. Device b: 150 tiles, the 50 oldest 3x slower than
   * predicted, the newest 100 exact, so its window (100 newest) shows no
   * error. */
  const double measured[] = {9, 10, 11, 12, 15};
  store_tile t[5 + 150 + 1];
  for (int i = 0; i < 5; i++) t[i] = tile(ids[0], a, 10, measured[i]);
  for (int i = 0; i < 150; i++)
    t[5 + i] = tile(ids[1], b, 10, i < 50 ? 30 : 10);
  t[4].request_id = ids[1]; /* a also worked on request 2 */
  t[155] = tile(ids[1], a, 10, 100);
  t[155].fresh_strip = true;
  ASSERT_OK(store_tiles_add(s, t, 156, &e_));
  store_close(s);

  sqlite3 *db = raw_open(f->path);
  char text[200];
  /* device_speed */
  assert_true(raw_num(db, "SELECT count(*) FROM device_speed") == 2);
  assert_true(raw_num(db, "SELECT ms_per_gflop FROM device_speed "
                          "WHERE device = 'a'") == 100);
  assert_true(raw_num(db, "SELECT gflop_per_s FROM device_speed "
                          "WHERE device = 'a'") == 10);
  assert_true(raw_num(db, "SELECT tiles FROM device_speed "
                          "WHERE device = 'a'") == 6);
  assert_true(raw_num(db, "SELECT recent_tiles FROM device_speed "
                          "WHERE device = 'a'") == 5);
  assert_true(raw_num(db, "SELECT median_err_pct FROM device_speed "
                          "WHERE device = 'a'") == 10);
  assert_true(raw_num(db, "SELECT mean_err_pct FROM device_speed "
                          "WHERE device = 'a'") == 14);
  assert_true(raw_num(db, "SELECT mean_abs_err_pct FROM device_speed "
                          "WHERE device = 'a'") == 18);
  assert_true(raw_num(db, "SELECT tiles FROM device_speed "
                          "WHERE device = 'b'") == 150);
  assert_true(raw_num(db, "SELECT recent_tiles FROM device_speed "
                          "WHERE device = 'b'") == 100);
  assert_true(raw_num(db, "SELECT median_err_pct FROM device_speed "
                          "WHERE device = 'b'") == 0);
  assert_true(isnan(raw_num(db, "SELECT ms_per_gflop FROM device_speed "
                                "WHERE device = 'b'"))); /* not fitted */
  /* slowest_requests: only finished ok ones, slowest first. */
  assert_true(raw_num(db, "SELECT count(*) FROM slowest_requests") == 3);
  assert_true(raw_num(db, "SELECT measured_ms FROM slowest_requests") == 900);
  assert_true(raw_num(db, "SELECT err_pct FROM slowest_requests") == 800);
  assert_true(raw_num(db, "SELECT bytes_moved FROM slowest_requests") == 2000);
  /* failed_requests says why. */
  assert_true(raw_num(db, "SELECT count(*) FROM failed_requests") == 1);
  raw_text(db, "SELECT error FROM failed_requests", text, sizeof text);
  assert_string_equal(text, "unknown model 'nosuch'");
  raw_text(db, "SELECT model FROM failed_requests", text, sizeof text);
  assert_string_equal(text, "nosuch");
  assert_true(isnan(raw_num(db, "SELECT predicted_ms FROM requests "
                                "WHERE model = 'nosuch'")));
  /* The running one is neither. */
  raw_text(db, "SELECT status FROM requests ORDER BY id DESC", text,
           sizeof text);
  assert_string_equal(text, "running");
  /* device_history: (request 2, b), (request 2, a), (request 1, a). */
  assert_true(raw_num(db, "SELECT count(*) FROM device_history") == 3);
  raw_text(db, "SELECT device FROM device_history", text, sizeof text);
  assert_string_equal(text, "b");
  raw_text(db, "SELECT device FROM device_history LIMIT 1 OFFSET 2", text,
           sizeof text);
  assert_string_equal(text, "a");
  assert_true(raw_num(db, "SELECT tiles FROM device_history "
                          "WHERE device = 'b'") == 150);
  assert_true(raw_num(db, "SELECT bytes_in FROM device_history "
                          "WHERE device = 'b'") == 150000);
  assert_true(raw_num(db, "SELECT tiles FROM device_history WHERE device = "
                          "'a' ORDER BY request_id LIMIT 1") == 4);
  /* Even median of 4 values: the mean of the middle two (this removes
   * a's tile of request 2). */
  raw_exec(db, "DELETE FROM tile_history WHERE measured_compute_ms = 15 "
               "AND device_id = (SELECT id FROM devices WHERE name = 'a')");
  assert_true(raw_num(db, "SELECT median_err_pct FROM device_speed "
                          "WHERE device = 'a'") == 5);

  sqlite3_close(db);
}

/* History as `edgedi history` reads it: newest first, the outcome of each,
 * and gather-all bytes from the stored plan (0 when the plan does not say,
 * or there is no plan, or the plan is not JSON). */
static void test_request_recent(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  int64_t ids[4];
  store_request_new with_gather = {.model = "vgg16c", .planner = "proportional",
                                   .devices = "pi1,pi2",
                                   .plan = "{\"bytes_gather_all\":12345,\"segments\":[]}",
                                   .predicted_ms = 80};
  ASSERT_OK(store_request_begin(s, &with_gather, &ids[0], &e_));
  store_request_result ok = {.ok = true, .measured_ms = 90, .bytes_moved = 4000,
                             .recovery = "agent 'pi3' went down; 'pi1' stood in for 'pi3'"};
  ASSERT_OK(store_request_finish(s, ids[0], &ok, &e_));
  ids[1] = begin_request(s, "resnet18c"); /* a plan without the number */
  store_request_result bad = {.ok = false, .measured_ms = 3, .error = "agent pi2 died"};
  ASSERT_OK(store_request_finish(s, ids[1], &bad, &e_));
  store_request_new no_plan = {.model = "nosuch"};
  ASSERT_OK(store_request_begin(s, &no_plan, &ids[2], &e_));
  store_request_new not_json = {.model = "vgg16c", .plan = "not json", .predicted_ms = 1};
  ASSERT_OK(store_request_begin(s, &not_json, &ids[3], &e_));

  store_request_row *v = NULL;
  size_t n = 0;
  ASSERT_OK(store_request_recent(s, 10, &v, &n, &e_));
  assert_int_equal(n, 4);
  assert_true(v[0].id == ids[3] && v[3].id == ids[0]); /* newest first */
  assert_int_equal(v[0].status, STORE_REQUEST_RUNNING);
  assert_int_equal(v[0].bytes_gather_all, 0);
  assert_int_equal(v[0].finished_at, 0);
  assert_false(v[1].has_plan);
  assert_int_equal(v[2].status, STORE_REQUEST_ERROR);
  assert_string_equal(v[2].error, "agent pi2 died");
  assert_int_equal(v[2].bytes_gather_all, 0);
  assert_string_equal(v[2].recovery, ""); /* none said */
  assert_string_equal(v[3].recovery, "agent 'pi3' went down; 'pi1' stood in for 'pi3'");
  assert_int_equal(v[3].status, STORE_REQUEST_OK);
  assert_true(v[3].has_plan);
  assert_string_equal(v[3].model, "vgg16c");
  assert_string_equal(v[3].planner, "proportional");
  assert_string_equal(v[3].devices, "pi1,pi2");
  assert_true(v[3].predicted_ms == 80 && v[3].measured_ms == 90);
  assert_int_equal(v[3].bytes_moved, 4000);
  assert_int_equal(v[3].bytes_gather_all, 12345);
  assert_true(v[3].finished_at >= v[3].created_at && v[3].created_at > 0);
  store_free(v);

  ASSERT_OK(store_request_recent(s, 1, &v, &n, &e_));
  assert_int_equal(n, 1);
  assert_true(v[0].id == ids[3]);
  store_free(v);
  ASSERT_ERR(ERR_INVALID, "no store", store_request_recent(NULL, 1, &v, &n, &e_));
  store_close(s);
}

/* ---- models -------------------------------------------------------------- */

static void test_models(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  store_model m = {.name = "vgg16c", .digest = "d1d1d1d1d1d1d1d1d1",
                   .gflop = 1.29, .params = 123456, .layers = 40};
  const unsigned char spec[] = {0x0a, 0x06, 'v', 'g', 'g', 0x00, 0xff};
  bool added = false;
  ASSERT_OK(store_model_add(s, &m, spec, sizeof spec, &added, &e_));
  assert_true(added);
  /* Same name, same digest: nothing changes. */
  ASSERT_OK(store_model_add(s, &m, spec, sizeof spec, &added, &e_));
  assert_false(added);
  /* Same name, another model. */
  store_model other = m;
  snprintf(other.digest, sizeof other.digest, "e2e2e2e2e2e2e2e2e2");
  ASSERT_ERR(ERR_INVALID, "already means another model",
             store_model_add(s, &other, spec, sizeof spec, &added, &e_));
  snprintf(other.name, sizeof other.name, "vgg16c-v2");
  other.gflop = 1.3;
  ASSERT_OK(store_model_add(s, &other, spec, 3, &added, &e_));
  assert_true(added);

  store_model bad = m;
  bad.gflop = NAN;
  ASSERT_ERR(ERR_INVALID, "model gflop",
             store_model_add(s, &bad, spec, sizeof spec, NULL, &e_));
  bad = m;
  bad.digest[0] = '\0';
  ASSERT_ERR(ERR_INVALID, "model digest is empty",
             store_model_add(s, &bad, spec, sizeof spec, NULL, &e_));
  ASSERT_ERR(ERR_INVALID, "empty spec",
             store_model_add(s, &m, NULL, 0, NULL, &e_));
  bad = m;
  memset(bad.name, 'n', sizeof bad.name); /* no NUL anywhere: refused */
  ASSERT_ERR(ERR_INVALID, "model name is longer than 63 bytes",
             store_model_add(s, &bad, spec, sizeof spec, NULL, &e_));
  bad = m;
  bad.params = UINT64_MAX;
  ASSERT_ERR(ERR_INVALID, "params",
             store_model_add(s, &bad, spec, sizeof spec, NULL, &e_));

  store_model got;
  void *blob = NULL;
  size_t bytes = 0;
  ASSERT_OK(store_model_get(s, "vgg16c", &got, &blob, &bytes, &e_));
  assert_int_equal(bytes, sizeof spec);
  assert_memory_equal(blob, spec, sizeof spec);
  assert_true(got.gflop == 1.29 && got.params == 123456 && got.layers == 40);
  assert_true(got.created_at > 0);
  store_free(blob);
  ASSERT_OK(store_model_get(s, "vgg16c-v2", &got, NULL, NULL, &e_));
  assert_string_equal(got.digest, "e2e2e2e2e2e2e2e2e2");
  ASSERT_ERR(ERR_NOT_FOUND, "no model is named 'resnet'",
             store_model_get(s, "resnet", &got, &blob, &bytes, &e_));
  assert_null(blob);

  store_model *v = NULL;
  size_t n = 0;
  ASSERT_OK(store_model_list(s, &v, &n, &e_));
  assert_int_equal(n, 2);
  assert_string_equal(v[0].name, "vgg16c");
  assert_string_equal(v[1].name, "vgg16c-v2");
  store_free(v);
  store_close(s);
}

/* ---- integrity ----------------------------------------------------------- */

static void test_integrity_check(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  int64_t id = add_device(s, "a", "a:1");
  ASSERT_OK(store_integrity_check(s, &e_));
  ASSERT_ERR(ERR_INVALID, "no store", store_integrity_check(NULL, &e_));
  /* A row written by hand with foreign keys off (the sqlite3 CLI's
   * default) that points at a device nobody has. */
  sqlite3 *db = raw_open(f->path);
  raw_exec(db, "INSERT INTO profile_samples(device_id, gflop, ms, cpu_ms, "
               "created_at) VALUES (42, 1, 1, 1, 0)");
  sqlite3_close(db);
  ASSERT_ERR(ERR_CORRUPT, "profile_samples row 1 refers to a missing devices",
             store_integrity_check(s, &e_));
  (void)id;
  store_close(s);
}

/* Overwrites every page but the first of a closed database: whatever the
 * store does next it must report, not crash. */
static void test_damaged_pages_are_reported(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  int64_t a = add_device(s, "a", "a:1");
  int64_t req = begin_request(s, "m");
  store_tile t[300];
  for (int i = 0; i < 300; i++) t[i] = tile(req, a, 10, 11);
  ASSERT_OK(store_tiles_add(s, t, 300, &e_));
  store_close(s); /* checkpoints the WAL into the file */

  struct stat sb;
  assert_int_equal(stat(f->path, &sb), 0);
  int page = (int)file_num(f->path, "PRAGMA page_size");
  assert_true(sb.st_size > 4 * page);
  FILE *fp = fopen(f->path, "r+b");
  assert_non_null(fp);
  fseek(fp, page, SEEK_SET);
  for (long i = page; i < sb.st_size; i++) fputc((int)((i * 131) & 0xff), fp);
  fclose(fp);

  err e = {0};
  err_code c = store_open(f->path, &s, &e);
  if (c == ERR_OK) {
    c = store_integrity_check(s, &e);
    store_close(s);
  }
  if (c != ERR_CORRUPT) fail_msg("got %s: %s", err_name(c), e.msg);
}

/* ---- threads and processes ----------------------------------------------- */

enum { THREADS = 4, BATCHES = 50, PER_BATCH = 20 };

typedef struct worker {
  store *s;
  int64_t device, request;
  int failures;
  err e;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  store_tile batch[PER_BATCH];
  for (int b = 0; b < BATCHES; b++) {
    for (int i = 0; i < PER_BATCH; i++) {
      batch[i] = tile(w->request, w->device, 10, 10 + b);
      batch[i].segment = (uint32_t)(b * PER_BATCH + i);
    }
    if (store_tiles_add(w->s, batch, PER_BATCH, &w->e) != ERR_OK) w->failures++;
    /* Interleave the other kinds of calls a scheduler makes. */
    if (store_device_touch(w->s, w->device, &w->e) != ERR_OK) w->failures++;
    store_tile *v = NULL;
    size_t n = 0;
    if (store_tiles_recent(w->s, w->device, 30, &v, &n, &w->e) != ERR_OK ||
        n < PER_BATCH || v[0].device_id != w->device)
      w->failures++;
    store_free(v);
    if (b % 10 == 0) {
      store_cost_model m = cost(100 + b, 1);
      if (store_cost_model_save(w->s, w->device, &m, &w->e) != ERR_OK)
        w->failures++;
      store_device *d = NULL;
      if (store_device_list(w->s, &d, &n, &w->e) != ERR_OK) w->failures++;
      store_free(d);
    }
  }
  return NULL;
}

/* Runs THREADS workers, worker i on stores[i % n_stores]. */
static void run_workers(store **stores, int n_stores, const char *path) {
  worker w[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    char name[16];
    snprintf(name, sizeof name, "dev%d", i);
    w[i] = (worker){.s = stores[i % n_stores]};
    w[i].device = add_device(w[i].s, name, name);
    w[i].request = begin_request(w[i].s, "m");
  }
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < THREADS; i++)
    if (w[i].failures) fail_msg("worker %d: %d failures, last: %s", i,
                                w[i].failures, w[i].e.msg);
  ASSERT_OK(store_integrity_check(stores[0], &e_));
  sqlite3 *db = raw_open(path);
  assert_true(raw_num(db, "SELECT count(*) FROM tile_history") ==
              THREADS * BATCHES * PER_BATCH);
  /* No tile was lost or duplicated within any worker's sequence. */
  assert_true(raw_num(db, "SELECT count(DISTINCT device_id || '/' || segment)"
                          " FROM tile_history") ==
              THREADS * BATCHES * PER_BATCH);
  assert_true(raw_num(db, "SELECT count(*) FROM cost_models") ==
              THREADS * BATCHES / 10);
  sqlite3_close(db);
}

static void test_threads_share_one_store(void **state) {
  fixture *f = *state;
  store *s = open_ok(f->path);
  run_workers(&s, 1, f->path);
  store_close(s);
}

/* Two stores on one file, as two scheduler processes would be: the second
 * writer waits for the first (busy timeout) instead of failing. */
static void test_two_connections_share_one_file(void **state) {
  fixture *f = *state;
  store *s[2] = {open_ok(f->path), open_ok(f->path)};
  run_workers(s, 2, f->path);
  store_close(s[0]);
  store_close(s[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_fresh_open_creates_schema, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migrates_version_1, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_garbage_file_is_refused_untouched,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_newer_schema_is_refused_untouched,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_other_programs_database_is_refused,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_argument_and_io_errors, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_device_registration, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_cost_model_validation_and_history,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_profile_samples, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tiles_batch_and_window, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tile_spans, setup, teardown),
      cmocka_unit_test_setup_teardown(test_requests_and_views, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_request_recent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_models, setup, teardown),
      cmocka_unit_test_setup_teardown(test_integrity_check, setup, teardown),
      cmocka_unit_test_setup_teardown(test_damaged_pages_are_reported, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_threads_share_one_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_two_connections_share_one_file,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* store_devices.c — what the store knows about each device: its
 * registration and state, the history of its cost model fits, and its
 * calibration samples.
 *
 * Registration is a read-then-write (is the name taken, and by whom?), done
 * inside one BEGIN IMMEDIATE transaction so that neither another thread nor
 * another process can register the same name in between.
 *
 * The checks on cost models are the planner's safety net: it divides by
 * ms_per_gflop (capacity is its inverse) and by bandwidth, so both must be
 * positive; a NaN would otherwise reach SQLite as NULL and a negative time
 * would make a device look faster than free.
 */
#include "storage/store_internal.h"

#include <stdio.h>
#include <string.h>

/* ---- values -------------------------------------------------------------- */

static const char *const k_state_names[] = {
    [STORE_DEVICE_DOWN] = "down",
    [STORE_DEVICE_UP] = "up",
    [STORE_DEVICE_PROFILING] = "profiling",
};

const char *store_device_state_name(store_device_state st) {
  if ((unsigned)st >= sizeof k_state_names / sizeof k_state_names[0])
    return "?";
  return k_state_names[st];
}

static store_device_state state_parse(const char *text) {
  for (unsigned i = 0; i < sizeof k_state_names / sizeof k_state_names[0]; i++)
    if (strcmp(text, k_state_names[i]) == 0) return (store_device_state)i;
  return STORE_DEVICE_DOWN; /* the CHECK constraint allows nothing else */
}

static const char *kind_or_all(const char *kind) {
  return kind && *kind ? kind : STORE_KIND_ALL;
}

static err_code check_cost(const store_cost_model *m, err *e) {
  err_code code;
  if ((code = store_check_text("cost model kind", kind_or_all(m->kind),
                               STORE_KIND_BYTES, true, e)) ||
      (code = store_check_number("cost model ms_per_gflop", m->ms_per_gflop,
                                 true, e)) ||
      (code = store_check_number("cost model fixed_ms", m->fixed_ms, false,
                                 e)) ||
      (code = store_check_number("cost model bandwidth_mbps",
                                 m->bandwidth_mbps, true, e)) ||
      (code = store_check_number("cost model rtt_ms", m->rtt_ms, false, e)) ||
      (code = store_check_number("cost model fit_error", m->fit_error, false,
                                 e)))
    return code;
  return ERR_OK;
}

/* Columns: kind, ms_per_gflop, fixed_ms, bandwidth_mbps, rtt_ms, samples,
 * fit_error, updated_at from `col` on. */
#define COST_COLUMNS(t)                                                  \
  t ".kind, " t ".ms_per_gflop, " t ".fixed_ms, " t ".bandwidth_mbps, " t \
  ".rtt_ms, " t ".samples, " t ".fit_error, " t ".updated_at"

static void read_cost(sqlite3_stmt *st, int col, store_cost_model *out) {
  memset(out, 0, sizeof *out);
  store_column_text(st, col, out->kind, sizeof out->kind);
  out->ms_per_gflop = sqlite3_column_double(st, col + 1);
  out->fixed_ms = sqlite3_column_double(st, col + 2);
  out->bandwidth_mbps = sqlite3_column_double(st, col + 3);
  out->rtt_ms = sqlite3_column_double(st, col + 4);
  out->samples = (uint32_t)sqlite3_column_int64(st, col + 5);
  out->fit_error = sqlite3_column_double(st, col + 6);
  out->updated_at = sqlite3_column_int64(st, col + 7);
}

/* ---- devices ------------------------------------------------------------- */

/* A device with its newest 'all' fit, found through the
 * cost_models_by_device index rather than the current_cost_models view. */
#define DEVICE_SELECT                                                       \
  "SELECT d.id, d.name, d.address, d.arch, d.cores, d.threads, d.state, "  \
  "d.first_seen, d.last_seen, c.id, " COST_COLUMNS("c")                     \
  " FROM devices AS d LEFT JOIN cost_models AS c ON c.id = "                \
  "(SELECT max(id) FROM cost_models WHERE device_id = d.id AND kind = "     \
  "'" STORE_KIND_ALL "') "

static const char k_device_by_id[] = DEVICE_SELECT "WHERE d.id = ?1";
static const char k_device_by_name[] = DEVICE_SELECT "WHERE d.name = ?1";
static const char k_device_all[] = DEVICE_SELECT "ORDER BY d.name";

static void read_device(sqlite3_stmt *st, store_device *out) {
  memset(out, 0, sizeof *out);
  out->id = sqlite3_column_int64(st, 0);
  store_column_text(st, 1, out->name, sizeof out->name);
  store_column_text(st, 2, out->address, sizeof out->address);
  store_column_text(st, 3, out->arch, sizeof out->arch);
  out->cores = (uint32_t)sqlite3_column_int64(st, 4);
  out->threads = (uint32_t)sqlite3_column_int64(st, 5);
  out->state = state_parse((const char *)sqlite3_column_text(st, 6));
  out->first_seen = sqlite3_column_int64(st, 7);
  out->last_seen = sqlite3_column_int64(st, 8);
  out->has_cost = sqlite3_column_type(st, 9) != SQLITE_NULL;
  if (out->has_cost) read_cost(st, 10, &out->cost);
}

static const char k_find_name[] =
    "SELECT id, address, state FROM devices WHERE name = ?1";
static const char k_insert_device[] =
    "INSERT INTO devices(name, address, cores, arch, threads, first_seen, "
    "last_seen, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 'up')";
static const char k_update_device[] =
    "UPDATE devices SET address = ?2, cores = ?3, arch = ?4, threads = ?5, "
    "last_seen = ?6, state = 'up' WHERE id = ?1";

/* Inside the transaction: finds the name, refuses a live one elsewhere,
 * then inserts or updates. */
static err_code register_tx(store *s, const store_device_reg *reg, bool force,
                            int64_t *id, bool *created, err *e) {
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_find_name, &st, e);
  if (code != ERR_OK) return code;
  sqlite3_bind_text(st, 1, reg->name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  bool known = rc == SQLITE_ROW;
  char address[STORE_ADDRESS_BYTES] = "", state[16] = "";
  if (known) {
    *id = sqlite3_column_int64(st, 0);
    store_column_text(st, 1, address, sizeof address);
    store_column_text(st, 2, state, sizeof state);
  } else if (rc != SQLITE_DONE) {
    code = store_sqlite_error(s, rc, e, "looking up a device");
  }
  store_stmt_done(st);
  if (code != ERR_OK) return code;

  if (known && strcmp(state, "down") != 0 &&
      strcmp(address, reg->address) != 0 && !force)
    return err_set(e, ERR_INVALID,
                   "device name '%s' is taken by %s (%s); stop that agent, "
                   "choose another name, or re-register with force",
                   reg->name, address, state);

  code = store_stmt(s, known ? k_update_device : k_insert_device, &st, e);
  if (code != ERR_OK) return code;
  if (known)
    sqlite3_bind_int64(st, 1, *id);
  else
    sqlite3_bind_text(st, 1, reg->name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, reg->address, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, reg->cores);
  sqlite3_bind_text(st, 4, reg->arch ? reg->arch : "", -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, reg->threads);
  sqlite3_bind_int64(st, 6, store_now());
  code = store_step_done(s, st, e, "registering a device");
  if (code == ERR_OK && !known) *id = sqlite3_last_insert_rowid(s->db);
  *created = !known;
  return code;
}

err_code store_device_register(store *s, const store_device_reg *reg,
                               bool force, int64_t *id_out, bool *created_out,
                               err *e) {
  if (!s || !reg)
    return err_set(e, ERR_INVALID, "store_device_register: no store or device");
  err_code code;
  if ((code = store_check_text("device name", reg->name, STORE_NAME_BYTES,
                               true, e)) ||
      (code = store_check_text("device address", reg->address,
                               STORE_ADDRESS_BYTES, true, e)) ||
      (code = store_check_text("device arch", reg->arch, STORE_ARCH_BYTES,
                               false, e)))
    return code;
  int64_t id = 0;
  bool created = false;
  store_lock(s);
  code = store_begin(s, e);
  if (code == ERR_OK) {
    code = register_tx(s, reg, force, &id, &created, e);
    if (code == ERR_OK)
      code = store_commit(s, e);
    else
      store_rollback(s);
  }
  store_unlock(s);
  if (code != ERR_OK) return code;
  if (id_out) *id_out = id;
  if (created_out) *created_out = created;
  return ERR_OK;
}

/* Runs an UPDATE of one device by id (?1); no row changed: not found. */
static err_code update_device(store *s, const char *sql, int64_t device_id,
                              const char *text2, int64_t int2, err *e,
                              const char *what) {
  store_lock(s);
  sqlite3_stmt *st;
  err_code code = store_stmt(s, sql, &st, e);
  if (code == ERR_OK) {
    sqlite3_bind_int64(st, 1, device_id);
    if (text2)
      sqlite3_bind_text(st, 2, text2, -1, SQLITE_STATIC);
    else
      sqlite3_bind_int64(st, 2, int2);
    code = store_step_done(s, st, e, what);
    if (code == ERR_OK && sqlite3_changes(s->db) == 0)
      code = err_set(e, ERR_NOT_FOUND, "%s: no device has id %lld", what,
                     (long long)device_id);
  }
  store_unlock(s);
  return code;
}

static const char k_set_state[] = "UPDATE devices SET state = ?2 WHERE id = ?1";
static const char k_touch[] = "UPDATE devices SET last_seen = ?2 WHERE id = ?1";

err_code store_device_set_state(store *s, int64_t device_id,
                                store_device_state st, err *e) {
  if (!s) return err_set(e, ERR_INVALID, "store_device_set_state: no store");
  if ((unsigned)st >= sizeof k_state_names / sizeof k_state_names[0])
    return err_set(e, ERR_INVALID, "device state %d does not exist", (int)st);
  return update_device(s, k_set_state, device_id, k_state_names[st], 0, e,
                       "setting a device's state");
}

err_code store_device_touch(store *s, int64_t device_id, err *e) {
  if (!s) return err_set(e, ERR_INVALID, "store_device_touch: no store");
  return update_device(s, k_touch, device_id, NULL, store_now(), e,
                       "touching a device");
}

/* One device by id (key_text NULL) or by name. */
static err_code device_one(store *s, int64_t id, const char *name,
                           store_device *out, err *e) {
  store_lock(s);
  sqlite3_stmt *st;
  err_code code = store_stmt(s, name ? k_device_by_name : k_device_by_id, &st, e);
  if (code == ERR_OK) {
    if (name)
      sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    else
      sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
      read_device(st, out);
    else if (rc != SQLITE_DONE)
      code = store_sqlite_error(s, rc, e, "reading a device");
    else if (name)
      code = err_set(e, ERR_NOT_FOUND, "no device is named '%s'", name);
    else
      code = err_set(e, ERR_NOT_FOUND, "no device has id %lld", (long long)id);
    store_stmt_done(st);
  }
  store_unlock(s);
  return code;
}

err_code store_device_get(store *s, int64_t device_id, store_device *out,
                          err *e) {
  if (!s || !out) return err_set(e, ERR_INVALID, "store_device_get: no store");
  return device_one(s, device_id, NULL, out, e);
}

err_code store_device_find(store *s, const char *name, store_device *out,
                           err *e) {
  if (!s || !out || !name)
    return err_set(e, ERR_INVALID, "store_device_find: no store or name");
  return device_one(s, 0, name, out, e);
}

static void read_device_row(sqlite3_stmt *st, void *dst) {
  read_device(st, dst);
}

err_code store_device_list(store *s, store_device **out, size_t *n, err *e) {
  if (!s || !out || !n)
    return err_set(e, ERR_INVALID, "store_device_list: no store or output");
  *out = NULL;
  *n = 0;
  store_lock(s);
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_device_all, &st, e);
  if (code == ERR_OK)
    code = store_collect(s, st, sizeof **out, read_device_row, (void **)out,
                         n, e, "listing devices");
  store_unlock(s);
  return code;
}

/* ---- cost models --------------------------------------------------------- */

static const char k_cost_insert[] =
    "INSERT INTO cost_models(device_id, kind, ms_per_gflop, fixed_ms, "
    "bandwidth_mbps, rtt_ms, samples, fit_error, updated_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
static const char k_cost_current[] =
    "SELECT " COST_COLUMNS("c") " FROM cost_models AS c "
    "WHERE device_id = ?1 AND kind = ?2 ORDER BY id DESC LIMIT 1";
static const char k_cost_all_kinds[] =
    "SELECT " COST_COLUMNS("c") " FROM current_cost_models AS c "
    "WHERE device_id = ?1 ORDER BY kind";

err_code store_cost_model_save(store *s, int64_t device_id,
                               const store_cost_model *m, err *e) {
  if (!s || !m)
    return err_set(e, ERR_INVALID, "store_cost_model_save: no store or model");
  err_code code = check_cost(m, e);
  if (code != ERR_OK) {
    if (e) err_wrap(e, "device %lld", (long long)device_id);
    return code;
  }
  store_lock(s);
  sqlite3_stmt *st;
  code = store_stmt(s, k_cost_insert, &st, e);
  if (code == ERR_OK) {
    sqlite3_bind_int64(st, 1, device_id);
    sqlite3_bind_text(st, 2, kind_or_all(m->kind), -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, m->ms_per_gflop);
    sqlite3_bind_double(st, 4, m->fixed_ms);
    sqlite3_bind_double(st, 5, m->bandwidth_mbps);
    sqlite3_bind_double(st, 6, m->rtt_ms);
    sqlite3_bind_int64(st, 7, m->samples);
    sqlite3_bind_double(st, 8, m->fit_error);
    sqlite3_bind_int64(st, 9, store_now());
    code = store_step_done(s, st, e, "saving a cost model");
    if (code == ERR_NOT_FOUND)
      err_set(e, code, "saving a cost model: no device has id %lld",
              (long long)device_id);
  }
  store_unlock(s);
  return code;
}

err_code store_cost_model_get(store *s, int64_t device_id, const char *kind,
                              store_cost_model *out, err *e) {
  if (!s || !out)
    return err_set(e, ERR_INVALID, "store_cost_model_get: no store or output");
  kind = kind_or_all(kind);
  store_lock(s);
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_cost_current, &st, e);
  if (code == ERR_OK) {
    sqlite3_bind_int64(st, 1, device_id);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
      read_cost(st, 0, out);
    else if (rc == SQLITE_DONE)
      code = err_set(e, ERR_NOT_FOUND,
                     "device %lld has no '%s' cost model yet",
                     (long long)device_id, kind);
    else
      code = store_sqlite_error(s, rc, e, "reading a cost model");
    store_stmt_done(st);
  }
  store_unlock(s);
  return code;
}

static void read_cost_row(sqlite3_stmt *st, void *dst) {
  read_cost(st, 0, dst);
}

err_code store_cost_model_list(store *s, int64_t device_id,
                               store_cost_model **out, size_t *n, err *e) {
  if (!s || !out || !n)
    return err_set(e, ERR_INVALID, "store_cost_model_list: no store or output");
  return store_collect_query(s, k_cost_all_kinds, &device_id, 1, sizeof **out, read_cost_row,
                             (void **)out, n, e, "listing cost models");
}

/* ---- calibration samples ------------------------------------------------- */

static const char k_sample_insert[] =
    "INSERT INTO profile_samples(device_id, gflop, ms, cpu_ms, created_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5)";
static const char k_sample_recent[] =
    "SELECT gflop, ms, cpu_ms, created_at FROM profile_samples "
    "WHERE device_id = ?1 ORDER BY id DESC LIMIT ?2";

static err_code check_sample(const store_profile_sample *p, size_t i,
                             err *e) {
  char field[64];
  const double vals[] = {p->gflop, p->ms, p->cpu_ms};
  const char *names[] = {"gflop", "ms", "cpu_ms"};
  for (int k = 0; k < 3; k++) {
    snprintf(field, sizeof field, "profile sample %zu: %s", i, names[k]);
    err_code code = store_check_number(field, vals[k], false, e);
    if (code != ERR_OK) return code;
  }
  return ERR_OK;
}

static err_code samples_tx(store *s, int64_t device_id,
                           const store_profile_sample *v, size_t n, err *e) {
  sqlite3_stmt *st;
  err_code code = store_stmt(s, k_sample_insert, &st, e);
  int64_t now = store_now();
  for (size_t i = 0; code == ERR_OK && i < n; i++) {
    sqlite3_bind_int64(st, 1, device_id);
    sqlite3_bind_double(st, 2, v[i].gflop);
    sqlite3_bind_double(st, 3, v[i].ms);
    sqlite3_bind_double(st, 4, v[i].cpu_ms);
    sqlite3_bind_int64(st, 5, now);
    code = store_step_done(s, st, e, "saving a profile sample");
    if (code == ERR_NOT_FOUND)
      err_set(e, code, "saving profile samples: no device has id %lld",
              (long long)device_id);
  }
  return code;
}

err_code store_profile_add(store *s, int64_t device_id,
                           const store_profile_sample *v, size_t n, err *e) {
  if (!s || (!v && n))
    return err_set(e, ERR_INVALID, "store_profile_add: no store or samples");
  for (size_t i = 0; i < n; i++) {
    err_code code = check_sample(&v[i], i, e);
    if (code != ERR_OK) return code;
  }
  if (n == 0) return ERR_OK;
  store_lock(s);
  err_code code = store_begin(s, e);
  if (code == ERR_OK) {
    code = samples_tx(s, device_id, v, n, e);
    if (code == ERR_OK)
      code = store_commit(s, e);
    else
      store_rollback(s);
  }
  store_unlock(s);
  return code;
}

static void read_sample_row(sqlite3_stmt *st, void *dst) {
  store_profile_sample *p = dst;
  p->gflop = sqlite3_column_double(st, 0);
  p->ms = sqlite3_column_double(st, 1);
  p->cpu_ms = sqlite3_column_double(st, 2);
  p->created_at = sqlite3_column_int64(st, 3);
}

err_code store_profile_recent(store *s, int64_t device_id, size_t limit,
                              store_profile_sample **out, size_t *n, err *e) {
  if (!s || !out || !n)
    return err_set(e, ERR_INVALID, "store_profile_recent: no store or output");
  const int64_t args[] = {device_id, store_limit(limit)};
  return store_collect_query(s, k_sample_recent, args, 2, sizeof **out, read_sample_row,
                             (void **)out, n, e, "reading profile samples");
}

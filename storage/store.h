/* store.h — EdgeDI's persistent state: one SQLite database.
 *
 * What it keeps. Devices (agents that registered) and their cost models
 * (one row per fit, the newest per device and layer kind is "current"),
 * calibration samples, every tile a device ran (predicted against measured
 * times, the data the cost models are refitted from), every request, and
 * the models clients loaded. Every SQL statement of EdgeDI lives in
 * storage/; the rest of the project sees only the C API below.
 *
 * Promises.
 *  - store_open() creates or upgrades the schema (PRAGMA user_version names
 *    its version, STORE_SCHEMA_VERSION is the newest this build knows).
 *    A file that is not a SQLite database gives ERR_CORRUPT, a database of a
 *    newer schema or of another program gives ERR_UNSUPPORTED; neither is
 *    modified.
 *  - Every function is safe to call from several threads on one store: a
 *    store is one connection behind one mutex, so calls run one at a time.
 *    Several processes may share the file (WAL journal): a writer waits up
 *    to STORE_BUSY_TIMEOUT_MS for another process's write lock, and the
 *    store's other callers wait with it. An administrator can read the file
 *    with the sqlite3 CLI while the scheduler runs (docs/admin.md).
 *  - Values are checked before they are written: a NaN, infinite or
 *    negative number, an over-long name, an unknown id are ERR_INVALID or
 *    ERR_NOT_FOUND with a message naming the field, and nothing is written.
 *    Batch writes (tiles, samples) are all or nothing.
 *  - Failures are err codes with a message (runtime/err.h); nothing prints.
 *    ERR_IO: the file cannot be read or written; ERR_UNAVAILABLE: another
 *    process held the database locked longer than STORE_BUSY_TIMEOUT_MS;
 *    ERR_CORRUPT: SQLite found the file damaged.
 *  - Timestamps are unix seconds, set by the store when a row is written.
 *  - Arrays returned through `**out` belong to the caller, who releases them
 *    with store_free(). Strings in returned structs are fixed arrays, so a
 *    struct is a plain value.
 */
#ifndef EDGEDI_STORE_H
#define EDGEDI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/err.h"

/* The file callers use when nobody names one (in the working directory). */
#define STORE_DEFAULT_PATH "edgedi.db"

/* The cost model kind that covers every layer. */
#define STORE_KIND_ALL "all"
/* The kind of a device's cost model for one model: this prefix and the
 * model's name ("model:vgg16c"), refitted from that model's tiles. */
#define STORE_KIND_MODEL_PREFIX "model:"

enum {
  STORE_SCHEMA_VERSION = 6,
  STORE_BUSY_TIMEOUT_MS = 5000, /* wait this long for another writer */
  /* Sizes of the string fields, terminating NUL included. Longer input is
   * refused rather than cut, so what is read back is what was written. */
  STORE_NAME_BYTES = 64,     /* device and model names */
  STORE_ADDRESS_BYTES = 256, /* host:port */
  STORE_ARCH_BYTES = 32,
  /* cost model kind: "all", "conv3x3", STORE_KIND_MODEL_PREFIX + a name */
  STORE_KIND_BYTES = 72,
  STORE_DIGEST_BYTES = 132,  /* hex of up to 512 bits */
  STORE_PLANNER_BYTES = 32,
};

typedef struct store store;

/* ---- life ---------------------------------------------------------------- */

/* Opens (creating when absent) the database at `path` and brings its schema
 * to STORE_SCHEMA_VERSION, each migration step in its own transaction. */
err_code store_open(const char *path, store **out, err *e);
/* The same for a database that must exist already (readers such as `edgedi
 * history`): ERR_NOT_FOUND, creating nothing, when `path` has no file. */
err_code store_open_existing(const char *path, store **out, err *e);

/* Closes the database; NULL is ignored. No call may be running on it. */
void store_close(store *s);

/* Releases an array returned by a store_* function; NULL is ignored. */
void store_free(void *p);

/* The schema version of the open database (STORE_SCHEMA_VERSION). */
int store_schema_version(store *s);

/* PRAGMA integrity_check and foreign_key_check over the whole file:
 * ERR_CORRUPT naming the first problems when the answer is not "ok". */
err_code store_integrity_check(store *s, err *e);

/* ---- devices ------------------------------------------------------------- */

typedef enum store_device_state {
  STORE_DEVICE_DOWN,
  STORE_DEVICE_UP,
  STORE_DEVICE_PROFILING, /* up, being calibrated: not planned on yet */
} store_device_state;

/* "down", "up", "profiling" — the words stored in devices.state. */
const char *store_device_state_name(store_device_state st);

/* One fit of a device's latency model t = a * GFLOP + b (+ transfers). */
typedef struct store_cost_model {
  char kind[STORE_KIND_BYTES]; /* "" is read as STORE_KIND_ALL */
  double ms_per_gflop;         /* a, > 0 */
  double fixed_ms;             /* b, >= 0 */
  double bandwidth_mbps;       /* link bandwidth, > 0 */
  double rtt_ms;               /* link round trip, >= 0 */
  uint32_t samples;            /* measurements the fit used */
  double fit_error;            /* relative RMS error of the fit, >= 0 */
  int64_t updated_at;          /* set by the store */
} store_cost_model;

/* What an agent says about itself when it registers. */
typedef struct store_device_reg {
  const char *name;    /* unique, 1..STORE_NAME_BYTES-1 bytes */
  const char *address; /* where its Agent service listens */
  uint32_t cores;
  const char *arch;    /* NULL: "" */
  uint32_t threads;
} store_device_reg;

typedef struct store_device {
  int64_t id;
  char name[STORE_NAME_BYTES];
  char address[STORE_ADDRESS_BYTES];
  char arch[STORE_ARCH_BYTES];
  uint32_t cores;
  uint32_t threads;
  store_device_state state;
  int64_t first_seen;
  int64_t last_seen;
  bool has_cost;         /* a STORE_KIND_ALL cost model exists */
  store_cost_model cost; /* the current STORE_KIND_ALL one when has_cost */
} store_device;

/* Registers an agent: a new name gets a new id; a known name keeps its id,
 * first_seen and cost models and takes the new address, cores, arch and
 * threads. Either way the device ends 'up' with last_seen now.
 * Two live agents must not share a name, so a name whose device is up or
 * profiling at another address is refused (ERR_INVALID "... taken by
 * <address> ...") unless `force` (an operator replacing the board).
 * *id_out and *created_out (each may be NULL) say which id and whether the
 * name was new. */
err_code store_device_register(store *s, const store_device_reg *reg,
                               bool force, int64_t *id_out, bool *created_out,
                               err *e);

/* ERR_NOT_FOUND when no device has that id. */
err_code store_device_set_state(store *s, int64_t device_id,
                                store_device_state st, err *e);

/* last_seen = now (a heartbeat). ERR_NOT_FOUND for an unknown id. */
err_code store_device_touch(store *s, int64_t device_id, err *e);

/* One device with its current cost model; ERR_NOT_FOUND when absent. */
err_code store_device_get(store *s, int64_t device_id, store_device *out,
                          err *e);
err_code store_device_find(store *s, const char *name, store_device *out,
                           err *e);

/* Every device, ordered by name, each with its current cost model. */
err_code store_device_list(store *s, store_device **out, size_t *n, err *e);

/* ---- cost models and calibration ----------------------------------------- */

/* Appends a fit to the device's history; it becomes the current model of
 * its kind. Coefficients are checked first (see store_cost_model). */
err_code store_cost_model_save(store *s, int64_t device_id,
                               const store_cost_model *m, err *e);

/* The current model of one kind ("" or NULL: STORE_KIND_ALL);
 * ERR_NOT_FOUND when the device has none of that kind. */
err_code store_cost_model_get(store *s, int64_t device_id, const char *kind,
                              store_cost_model *out, err *e);

/* The current model of every kind of a device, ordered by kind. */
err_code store_cost_model_list(store *s, int64_t device_id,
                               store_cost_model **out, size_t *n, err *e);

/* One calibration measurement: a job of `gflop` took `ms` wall, `cpu_ms`
 * thread CPU time. */
typedef struct store_profile_sample {
  double gflop;
  double ms;
  double cpu_ms;
  int64_t created_at; /* set by the store */
} store_profile_sample;

/* Appends n samples of one device in one transaction. */
err_code store_profile_add(store *s, int64_t device_id,
                           const store_profile_sample *v, size_t n, err *e);

/* The `limit` newest samples of a device, newest first. */
err_code store_profile_recent(store *s, int64_t device_id, size_t limit,
                              store_profile_sample **out, size_t *n, err *e);

/* ---- requests and tiles ------------------------------------------------- */

typedef enum store_request_status {
  STORE_REQUEST_RUNNING, /* begun, not finished */
  STORE_REQUEST_OK,
  STORE_REQUEST_ERROR,
} store_request_status;

/* What is known when a request starts (after planning, or after planning
 * failed: then plan is NULL). */
typedef struct store_request_new {
  const char *model;   /* the name the client asked for */
  const char *planner; /* NULL: "" */
  const char *devices; /* device names, comma-separated; NULL: "" */
  const char *plan;    /* the plan (JSON); NULL: no plan was made */
  double predicted_ms; /* >= 0; stored only with a plan */
} store_request_new;

typedef struct store_request_result {
  bool ok;
  double measured_ms;   /* >= 0: end to end, or until it failed */
  uint64_t bytes_moved; /* everything that crossed a link */
  const char *error;    /* why it failed: required when !ok, else ignored */
  const char *recovery; /* agents lost or straggling and what was done; NULL: none */
} store_request_result;

/* Records a request as running; *id_out is its id, never reused, the
 * request_id clients see. */
err_code store_request_begin(store *s, const store_request_new *r,
                             int64_t *id_out, err *e);

/* Records the outcome. A request is finished once: ERR_INVALID after. */
err_code store_request_finish(store *s, int64_t request_id,
                              const store_request_result *r, err *e);

/* A request as `edgedi history` shows it. */
typedef struct store_request_row {
  int64_t id;
  char model[STORE_NAME_BYTES];
  char planner[STORE_PLANNER_BYTES];
  char devices[STORE_ADDRESS_BYTES]; /* comma-separated, cut to fit */
  store_request_status status;
  bool has_plan;        /* planned: predicted_ms and bytes_gather_all mean something */
  double predicted_ms;
  double measured_ms;   /* 0 while running */
  uint64_t bytes_moved; /* measured, everything over the links */
  /* What the plan would move gathering and re-scattering whole feature
   * maps at every segment (from the stored plan; 0 when it does not say). */
  uint64_t bytes_gather_all;
  char error[ERR_MSG_BYTES];
  char recovery[ERR_MSG_BYTES]; /* agents lost or straggling, what was done; "" */
  int64_t created_at, finished_at; /* finished_at 0 while running */
} store_request_row;

/* The `limit` newest requests, newest first. */
err_code store_request_recent(store *s, size_t limit, store_request_row **out,
                              size_t *n, err *e);
/* Request `id`; ERR_NOT_FOUND when there is none. */
err_code store_request_get(store *s, int64_t id, store_request_row *out, err *e);

/* One tile: one device's part of one segment of one request. */
typedef struct store_tile {
  int64_t id; /* set by the store; ignored on insert */
  int64_t request_id;
  int64_t device_id;
  uint32_t segment;
  uint32_t first_layer, end_layer; /* [first, end) */
  uint32_t row_lo, row_hi;         /* output rows [lo, hi) */
  double gflop;                    /* halo recomputation included */
  uint64_t bytes_in, bytes_out;
  double predicted_compute_ms, measured_compute_ms;
  double predicted_transfer_ms, measured_transfer_ms;
  double cpu_ms;  /* thread CPU time of the run */
  double wait_ms; /* waiting for inputs */
  bool fresh_strip;   /* its strip was made for it: the run paid for preparing it */
  int64_t created_at; /* set by the store */
  /* On insert only (reads leave them NULL, 0): n_spans (start, end) pairs
   * of when the device computed it, ms from the request's start, each
   * 0 <= start <= end (table tile_spans). */
  const double *spans;
  size_t n_spans;
} store_tile;

/* Appends n tiles (of any requests and devices) in one transaction: all are
 * checked before any is written; the request and device must exist. */
err_code store_tiles_add(store *s, const store_tile *tiles, size_t n, err *e);

/* One compute stretch of a tile (tile_spans joined to its tile). */
typedef struct store_span {
  int64_t device_id;
  uint32_t segment;
  double start_ms, end_ms; /* from the request's start */
} store_span;

/* Every recorded stretch of a request's tiles, by device, then start. */
err_code store_request_spans(store *s, int64_t request_id, store_span **out, size_t *n,
                             err *e);
/* The newest finished request (ok or error) that has recorded stretches;
 * *id 0 when none has. */
err_code store_request_newest_with_spans(store *s, int64_t *id, err *e);

/* The `limit` newest tiles of a device, newest first: the window a cost
 * model is refitted from. */
err_code store_tiles_recent(store *s, int64_t device_id, size_t limit,
                            store_tile **out, size_t *n, err *e);

/* The same for the tiles of requests for `model` (the name a request
 * asked for), looking no further back than the device's `scan` newest
 * tiles (scan < limit: limit), so a model that ran long ago costs no more
 * than one that just ran. */
err_code store_tiles_recent_of_model(store *s, int64_t device_id,
                                     const char *model, size_t limit,
                                     size_t scan, store_tile **out, size_t *n,
                                     err *e);

/* ---- models -------------------------------------------------------------- */

typedef struct store_model {
  char name[STORE_NAME_BYTES];
  char digest[STORE_DIGEST_BYTES]; /* hex digest of the fused graph */
  double gflop;
  uint64_t params;
  uint32_t layers;
  int64_t created_at; /* set by the store */
} store_model;

/* Adds a model with its spec (the serialized ModelSpec, any bytes). A name
 * always means one model: re-adding it with the same digest changes nothing
 * (*added_out false), with another digest is ERR_INVALID. */
err_code store_model_add(store *s, const store_model *m, const void *spec,
                         size_t spec_bytes, bool *added_out, err *e);

/* A model by name; ERR_NOT_FOUND when unknown. When `spec` is not NULL the
 * spec is returned in a new buffer (release with store_free) and its size
 * in *spec_bytes. */
err_code store_model_get(store *s, const char *name, store_model *out,
                         void **spec, size_t *spec_bytes, err *e);

/* Every model (without specs), ordered by name. */
err_code store_model_list(store *s, store_model **out, size_t *n, err *e);

#endif

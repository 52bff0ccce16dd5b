/* localcluster.c — a scheduler and its agents as child processes (contract
 * in localcluster.h).
 *
 * Agents are told the scheduler's address once, on their command line, so
 * a restarted scheduler must come back on the same port: the first start
 * may ask for any free port, every later one asks for the port it got.
 * Agents are stopped before the scheduler so that it sees their streams
 * end and leaves them 'down' in the database, as an operator's shutdown
 * would.
 */
#include "cli/localcluster.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client.h"

enum { FLAG_BYTES = 64 };

struct localcluster {
  localcluster_options o; /* strings below, not the caller's */
  char scheduler_bin[LOCALCLUSTER_PATH_BYTES];
  char agent_bin[LOCALCLUSTER_PATH_BYTES];
  char db_path[LOCALCLUSTER_PATH_BYTES];
  char models[1024];
  char planner[LOCALCLUSTER_NAME_BYTES];
  char on_loss[LOCALCLUSTER_NAME_BYTES];
  char log_dir[LOCALCLUSTER_PATH_BYTES];
  char address[64];
  int port;
  procs_child scheduler;
  procs_child agents[LOCALCLUSTER_MAX_AGENTS];
  bool stopped;
};

/* ---- finding the programs ------------------------------------------------- */

static bool executable(const char *path) { return access(path, X_OK) == 0; }

err_code localcluster_find_program(const char *pkg, const char *name, char *out, size_t len,
                                   err *e) {
  char exe[LOCALCLUSTER_PATH_BYTES] = "";
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  char exe_dir[LOCALCLUSTER_PATH_BYTES];
  snprintf(exe_dir, sizeof exe_dir, "%s", exe);
  char *slash = strrchr(exe_dir, '/');
  if (slash) *slash = 0;

  char cand[8][LOCALCLUSTER_PATH_BYTES + 128];
  int nc = 0;
  if (*exe) {
    /* bazel-bin/<this pkg>/<this program> -> bazel-bin/<pkg>/<name> */
    snprintf(cand[nc++], sizeof cand[0], "%s/../%s/%s", exe_dir, pkg, name);
    snprintf(cand[nc++], sizeof cand[0], "%s.runfiles/edgedi/%s/%s", exe, pkg, name);
  }
  static const char *const envs[] = {"RUNFILES_DIR", "TEST_SRCDIR"};
  for (int i = 0; i < 2; i++) {
    const char *v = getenv(envs[i]);
    if (v && *v) snprintf(cand[nc++], sizeof cand[0], "%s/edgedi/%s/%s", v, pkg, name);
  }
  const char *ws = getenv("BUILD_WORKSPACE_DIRECTORY"); /* set by `bazel run` */
  if (ws && *ws) snprintf(cand[nc++], sizeof cand[0], "%s/bazel-bin/%s/%s", ws, pkg, name);
  snprintf(cand[nc++], sizeof cand[0], "bazel-bin/%s/%s", pkg, name);
  snprintf(cand[nc++], sizeof cand[0], "%s/%s", pkg, name);

  for (int i = 0; i < nc; i++) {
    if (!executable(cand[i])) continue;
    /* An absolute path: children and messages must not depend on the cwd. */
    char *abs = realpath(cand[i], NULL);
    int w = snprintf(out, len, "%s", abs ? abs : cand[i]);
    free(abs);
    if (w < 0 || (size_t)w >= len) return err_set(e, ERR_INVALID, "path of %s too long", name);
    return ERR_OK;
  }
  return err_set(e, ERR_NOT_FOUND,
                 "cannot find %s: looked next to %s, in its runfiles, $RUNFILES_DIR, "
                 "$TEST_SRCDIR, $BUILD_WORKSPACE_DIRECTORY/bazel-bin, ./bazel-bin and "
                 "./%s; build it (bazel build -c opt //%s:%s) or name it with a flag",
                 name, *exe ? exe : "this program", pkg, pkg, name);
}

/* ---- starting --------------------------------------------------------------- */

/* DIR/<name>.log with anything but [A-Za-z0-9._-] as '_'; NULL without a
 * log directory. */
static const char *log_path(const localcluster *c, const char *name, char *buf, size_t len) {
  if (!c->log_dir[0]) return NULL;
  char safe[LOCALCLUSTER_NAME_BYTES];
  size_t i = 0;
  for (; name[i] && i + 1 < sizeof safe; i++) {
    char ch = name[i];
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    safe[i] = ok ? ch : '_';
  }
  safe[i] = 0;
  snprintf(buf, len, "%s/%s.log", c->log_dir, safe);
  return buf;
}

/* The port after the last ':' of a "... listening on HOST:PORT" line. */
static int announced_port(const char *line) {
  const char *colon = strrchr(line, ':');
  if (!colon || !strstr(line, "listening on")) return -1;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  return (*end || p <= 0 || p > 65535) ? -1 : (int)p;
}

/* Spawns a child and reads its announce line. */
static err_code spawn_announced(const localcluster *c, const char *name, const char *path,
                                const char *const *argv, procs_child *out, int *port,
                                err *e) {
  char logbuf[LOCALCLUSTER_PATH_BYTES + LOCALCLUSTER_NAME_BYTES + 8];
  procs_spec spec = {.name = name, .path = path, .argv = argv,
                     .stderr_path = log_path(c, name, logbuf, sizeof logbuf)};
  err_code rc = procs_spawn(&spec, out, e);
  if (rc != ERR_OK) return rc;
  char line[PROCS_LINE_BYTES];
  rc = procs_read_line(out, line, sizeof line, LOCALCLUSTER_ANNOUNCE_TIMEOUT_MS, e);
  int p = rc == ERR_OK ? announced_port(line) : -1;
  if (rc == ERR_OK && p < 0)
    rc = err_set(e, ERR_INVALID, "%s announced '%s', not its address", name, line);
  if (rc != ERR_OK) {
    procs_stop_one(out, PROCS_DEFAULT_GRACE_MS);
    if (spec.stderr_path) err_wrap(e, "see %s", spec.stderr_path);
    return rc;
  }
  if (port) *port = p;
  return ERR_OK;
}

static err_code start_scheduler(localcluster *c, err *e) {
  char listen[64], deadline[FLAG_BYTES];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", c->port);
  const char *argv[16];
  int n = 0;
  argv[n++] = c->scheduler_bin;
  argv[n++] = "--listen";
  argv[n++] = listen;
  if (c->db_path[0]) argv[n++] = "--db", argv[n++] = c->db_path;
  if (c->o.models) argv[n++] = "--models", argv[n++] = c->models;
  if (c->planner[0]) argv[n++] = "--planner", argv[n++] = c->planner;
  if (c->on_loss[0]) argv[n++] = "--on-loss", argv[n++] = c->on_loss;
  if (c->o.deadline_ms > 0) {
    snprintf(deadline, sizeof deadline, "%d", c->o.deadline_ms);
    argv[n++] = "--deadline-ms", argv[n++] = deadline;
  }
  argv[n] = NULL;
  int port = 0;
  err_code rc = spawn_announced(c, "scheduler", c->scheduler_bin, argv, &c->scheduler, &port, e);
  if (rc != ERR_OK) return rc;
  c->port = port;
  snprintf(c->address, sizeof c->address, "127.0.0.1:%d", port);
  return ERR_OK;
}

err_code localcluster_spawn_agent(localcluster *c, const localcluster_agent *a,
                                  const char *const *extra, procs_child *out, err *e) {
  char speed[FLAG_BYTES], mbps[FLAG_BYTES], rtt[FLAG_BYTES], threads[FLAG_BYTES],
      cores[FLAG_BYTES];
  snprintf(speed, sizeof speed, "%.9g", a->speed > 0 ? a->speed : 1.0);
  snprintf(mbps, sizeof mbps, "%.9g", a->link_mbps);
  snprintf(rtt, sizeof rtt, "%.9g", a->link_rtt_ms);
  snprintf(threads, sizeof threads, "%d", a->threads > 0 ? a->threads : 1);
  const char *argv[PROCS_MAX_ARGS];
  int n = 0;
  argv[n++] = c->agent_bin;
  argv[n++] = "--listen", argv[n++] = "127.0.0.1:0";
  argv[n++] = "--scheduler", argv[n++] = c->address;
  argv[n++] = "--name", argv[n++] = a->name;
  argv[n++] = "--threads", argv[n++] = threads;
  argv[n++] = "--speed", argv[n++] = speed;
  argv[n++] = "--link-mbps", argv[n++] = mbps;
  argv[n++] = "--link-rtt-ms", argv[n++] = rtt;
  if (a->speed > 0 && a->speed < 1 && c->o.share_cores >= 0) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(cores, sizeof cores, "%ld",
             c->o.share_cores > 0 ? (long)c->o.share_cores : online > 0 ? online : 1);
    argv[n++] = "--share-cores", argv[n++] = cores;
  }
  if (c->o.agents_release_memory) argv[n++] = "--resident-mb", argv[n++] = "0";
  for (int i = 0; extra && extra[i]; i++) {
    if (n + 1 >= PROCS_MAX_ARGS) return err_set(e, ERR_INVALID, "too many agent flags");
    argv[n++] = extra[i];
  }
  argv[n] = NULL;
  return spawn_announced(c, a->name, c->agent_bin, argv, out, NULL, e);
}

static err_code copy_str(char *dst, size_t len, const char *src, const char *what, err *e) {
  if (!src) {
    dst[0] = 0;
    return ERR_OK;
  }
  int w = snprintf(dst, len, "%s", src);
  if (w < 0 || (size_t)w >= len) return err_set(e, ERR_INVALID, "%s is too long", what);
  return ERR_OK;
}

static err_code wait_up_first(localcluster *c, int n, err *e);

err_code localcluster_start(const localcluster_options *o, localcluster **out, err *e) {
  *out = NULL;
  if (o->n_agents < 0 || o->n_agents > LOCALCLUSTER_MAX_AGENTS)
    return err_set(e, ERR_INVALID, "%d agents: from 0 to %d", o->n_agents,
                   LOCALCLUSTER_MAX_AGENTS);
  if (o->port < 0 || o->port > 65535)
    return err_set(e, ERR_INVALID, "port %d is not a TCP port", o->port);
  for (int i = 0; i < o->n_agents; i++) {
    if (!o->agents[i].name[0]) return err_set(e, ERR_INVALID, "agent %d has no name", i + 1);
    for (int j = 0; j < i; j++)
      if (strcmp(o->agents[i].name, o->agents[j].name) == 0)
        return err_set(e, ERR_INVALID, "two agents named '%s'", o->agents[i].name);
  }
  localcluster *c = calloc(1, sizeof *c);
  if (!c) return err_set(e, ERR_NOMEM, "out of memory");
  c->o = *o;
  c->port = o->port;
  c->scheduler.stdout_fd = -1;
  for (int i = 0; i < LOCALCLUSTER_MAX_AGENTS; i++) c->agents[i].stdout_fd = -1;
  c->stopped = true; /* nothing to stop yet */
  err_code rc = ERR_OK;
  if ((rc = copy_str(c->db_path, sizeof c->db_path, o->db_path, "--db", e)) ||
      (rc = copy_str(c->models, sizeof c->models, o->models, "--models", e)) ||
      (rc = copy_str(c->planner, sizeof c->planner, o->planner, "--planner", e)) ||
      (rc = copy_str(c->on_loss, sizeof c->on_loss, o->on_loss, "--on-loss", e)) ||
      (rc = copy_str(c->log_dir, sizeof c->log_dir, o->log_dir, "log directory", e)))
    goto fail;
  if (o->scheduler_bin)
    rc = copy_str(c->scheduler_bin, sizeof c->scheduler_bin, o->scheduler_bin, "scheduler", e);
  else
    rc = localcluster_find_program("scheduler", "edgedi-scheduler", c->scheduler_bin,
                                   sizeof c->scheduler_bin, e);
  if (rc) goto fail;
  if (o->agent_bin)
    rc = copy_str(c->agent_bin, sizeof c->agent_bin, o->agent_bin, "agent", e);
  else
    rc = localcluster_find_program("runtime", "edgedi-agent", c->agent_bin,
                                   sizeof c->agent_bin, e);
  if (rc) goto fail;

  c->stopped = false;
  if ((rc = start_scheduler(c, e)) != ERR_OK) goto fail;
  for (int i = 0; i < o->n_agents; i++) {
    if (o->one_by_one && i > 0 && (rc = wait_up_first(c, i, e)) != ERR_OK) goto fail;
    if ((rc = localcluster_spawn_agent(c, &o->agents[i], NULL, &c->agents[i], e)) != ERR_OK)
      goto fail;
  }
  *out = c;
  return ERR_OK;

fail:
  localcluster_destroy(c);
  return rc;
}

/* ---- running ------------------------------------------------------------------ */

const char *localcluster_address(const localcluster *c) { return c->address; }
int localcluster_n_agents(const localcluster *c) { return c->o.n_agents; }
const localcluster_agent *localcluster_agent_at(const localcluster *c, int i) {
  return &c->o.agents[i];
}
procs_child *localcluster_scheduler(localcluster *c) { return &c->scheduler; }
procs_child *localcluster_agent_process(localcluster *c, int i) { return &c->agents[i]; }

/* The first `n_agents` agents and the scheduler. */
static err_code check_alive_n(localcluster *c, int n_agents, err *e) {
  procs_child *all[LOCALCLUSTER_MAX_AGENTS + 1];
  int n = 0;
  all[n++] = &c->scheduler;
  for (int i = 0; i < n_agents; i++) all[n++] = &c->agents[i];
  for (int i = 0; i < n; i++) {
    if (procs_alive(all[i])) continue;
    char how[128];
    procs_describe_exit(all[i], how, sizeof how);
    char logbuf[LOCALCLUSTER_PATH_BYTES + LOCALCLUSTER_NAME_BYTES + 8];
    const char *log = log_path(c, all[i]->name, logbuf, sizeof logbuf);
    return err_set(e, ERR_UNAVAILABLE, "%s stopped (%s)%s%s", all[i]->name, how,
                   log ? "; its log: " : "", log ? log : "");
  }
  return ERR_OK;
}

err_code localcluster_check_alive(localcluster *c, err *e) {
  return check_alive_n(c, c->o.n_agents, e);
}

typedef struct wait_ctx {
  localcluster *c;
  int n_agents; /* started so far */
  err why;
} wait_ctx;

static bool wait_should_stop(void *ctx) {
  wait_ctx *w = ctx;
  if (procs_stop_requested()) {
    err_set(&w->why, ERR_UNAVAILABLE, "stop requested");
    return true;
  }
  return check_alive_n(w->c, w->n_agents, &w->why) != ERR_OK;
}

/* Until agents [0, n) are up. */
static err_code wait_up_n(localcluster *c, int n, int timeout_ms, err *e) {
  const char *names[LOCALCLUSTER_MAX_AGENTS];
  for (int i = 0; i < n; i++) names[i] = c->o.agents[i].name;
  rpc_channel *ch = NULL;
  err_code rc = client_connect(c->address, &ch, e);
  if (rc != ERR_OK) return rc;
  wait_ctx w = {.c = c, .n_agents = n};
  rc = client_wait_up(ch, names, n, timeout_ms, wait_should_stop, &w, e);
  rpc_channel_destroy(ch);
  if (rc != ERR_OK && w.why.code != ERR_OK) {
    if (e) *e = w.why;
    rc = w.why.code;
  }
  return rc;
}

static err_code wait_up_first(localcluster *c, int n, err *e) {
  int timeout = c->o.up_timeout_ms > 0 ? c->o.up_timeout_ms : LOCALCLUSTER_DEFAULT_UP_TIMEOUT_MS;
  return wait_up_n(c, n, timeout, e);
}

err_code localcluster_wait_up(localcluster *c, int timeout_ms, err *e) {
  return wait_up_n(c, c->o.n_agents, timeout_ms, e);
}

err_code localcluster_restart_scheduler(localcluster *c, err *e) {
  procs_stop_one(&c->scheduler, PROCS_DEFAULT_GRACE_MS);
  return start_scheduler(c, e);
}

void localcluster_kill_agent(localcluster *c, int i) {
  procs_child *a = &c->agents[i];
  if (a->pid > 0 && !a->reaped) kill(a->pid, SIGKILL);
  procs_stop_one(a, 0); /* reaps it */
}

err_code localcluster_restart_agent(localcluster *c, int i, err *e) {
  if (i < 0 || i >= c->o.n_agents) return err_set(e, ERR_RANGE, "no agent %d", i);
  procs_stop_one(&c->agents[i], PROCS_DEFAULT_GRACE_MS);
  return localcluster_spawn_agent(c, &c->o.agents[i], NULL, &c->agents[i], e);
}

bool localcluster_stop(localcluster *c) {
  if (!c || c->stopped) return true;
  c->stopped = true;
  procs_child *agents[LOCALCLUSTER_MAX_AGENTS];
  for (int i = 0; i < c->o.n_agents; i++) agents[i] = &c->agents[i];
  procs_stop(agents, c->o.n_agents, PROCS_DEFAULT_GRACE_MS);
  procs_stop_one(&c->scheduler, PROCS_DEFAULT_GRACE_MS);
  bool clean = procs_exited_cleanly(&c->scheduler);
  for (int i = 0; i < c->o.n_agents; i++) clean = clean && procs_exited_cleanly(&c->agents[i]);
  return clean;
}

void localcluster_destroy(localcluster *c) {
  if (!c) return;
  localcluster_stop(c);
  free(c);
}

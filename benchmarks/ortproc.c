/* ortproc.c — run_ort.js as a warm child (contract in ortproc.h).
 *
 * Commands go over a FIFO rather than the child's stdin because procs.h
 * gives every child /dev/null as stdin (and a pipe for stdout, which is
 * how the replies come back). We open the FIFO O_RDWR: on Linux that never
 * blocks, so a node that died before opening its end cannot hang us; the
 * reply read has a deadline instead.
 */
#include "benchmarks/ortproc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/procs.h"

/* What node gets to quit on its own before procs_stop signals it. */
enum { ORTPROC_QUIT_GRACE_MS = 3000 };

struct ortproc {
  procs_child child;
  int cmd_fd;
  char fifo[PATH_MAX];
};

static bool is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

err_code ortproc_find_script(const char *given, char *out, size_t len, err *e) {
  char cand[5][PATH_MAX + 64];
  int nc = 0;
  if (given) {
    snprintf(cand[nc++], sizeof cand[0], "%s", given);
  } else {
    char exe[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    if (*exe)
      snprintf(cand[nc++], sizeof cand[0], "%s.runfiles/edgedi/benchmarks/ort/run_ort.js",
               exe);
    const char *ws = getenv("BUILD_WORKSPACE_DIRECTORY"); /* set by `bazel run` */
    if (ws && *ws) snprintf(cand[nc++], sizeof cand[0], "%s/benchmarks/ort/run_ort.js", ws);
    snprintf(cand[nc++], sizeof cand[0], "benchmarks/ort/run_ort.js");
  }
  for (int i = 0; i < nc; i++) {
    if (!is_file(cand[i])) continue;
    /* The runfiles entry is a link into the source tree, where npm put
     * node_modules: node must see the real path to find them. */
    char *real = realpath(cand[i], NULL);
    if (!real) continue;
    char mod[PATH_MAX + 64];
    snprintf(mod, sizeof mod, "%s", real);
    char *slash = strrchr(mod, '/');
    if (slash) *slash = 0;
    size_t used = strlen(mod);
    snprintf(mod + used, sizeof mod - used, "/node_modules/onnxruntime-node/package.json");
    bool installed = is_file(mod);
    int w = snprintf(out, len, "%s", real);
    free(real);
    if (!installed)
      return err_set(e, ERR_NOT_FOUND,
                     "%s: onnxruntime-node is not installed beside it (run "
                     "scripts/setup.sh --bench, which runs npm ci in benchmarks/ort)",
                     out);
    if (w < 0 || (size_t)w >= len) return err_set(e, ERR_INVALID, "path too long: %s", cand[i]);
    return ERR_OK;
  }
  return err_set(e, ERR_NOT_FOUND,
                 "cannot find run_ort.js (%s); pass --ort-script PATH",
                 given ? given : "looked in the runfiles, $BUILD_WORKSPACE_DIRECTORY/"
                                 "benchmarks/ort and ./benchmarks/ort");
}

/* name if it holds a slash, else the first executable `name` on $PATH. */
static err_code find_on_path(const char *name, char *out, size_t len, err *e) {
  if (strchr(name, '/')) {
    snprintf(out, len, "%s", name);
    return ERR_OK;
  }
  const char *path = getenv("PATH");
  char dirs[4096];
  snprintf(dirs, sizeof dirs, "%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    snprintf(out, len, "%s/%s", d, name);
    if (access(out, X_OK) == 0) return ERR_OK;
  }
  return err_set(e, ERR_NOT_FOUND, "'%s' is not on $PATH (install nodejs: scripts/setup.sh "
                 "--bench)", name);
}

err_code ortproc_start(const ortproc_spec *s, ortproc **out, err *e) {
  *out = NULL;
  char node[PATH_MAX];
  err_code rc = find_on_path(s->node ? s->node : "node", node, sizeof node, e);
  if (rc != ERR_OK) return rc;
  ortproc *p = calloc(1, sizeof *p);
  if (!p) return err_set(e, ERR_NOMEM, "out of memory");
  p->cmd_fd = -1;
  p->child.stdout_fd = -1; /* never started: nothing to close */
  snprintf(p->fifo, sizeof p->fifo, "%s/ort-%d.cmd", s->work_dir, (int)getpid());
  unlink(p->fifo);
  if (mkfifo(p->fifo, 0600) != 0) {
    rc = err_set(e, ERR_IO, "mkfifo %s: %s", p->fifo, strerror(errno));
    free(p);
    return rc;
  }
  p->cmd_fd = open(p->fifo, O_RDWR | O_CLOEXEC);
  if (p->cmd_fd < 0) {
    rc = err_set(e, ERR_IO, "open %s: %s", p->fifo, strerror(errno));
    ortproc_destroy(p);
    return rc;
  }
  char shape[64], threads[16];
  snprintf(shape, sizeof shape, "%d,%d,%d,%d", s->shape[0], s->shape[1], s->shape[2],
           s->shape[3]);
  snprintf(threads, sizeof threads, "%d", s->threads);
  const char *argv[] = {node,      s->script, s->model,   "--input",  s->input, "--shape",
                        shape,     "--threads", threads,  "--commands", p->fifo,
                        "--output", s->output, NULL};
  if (!s->output) argv[11] = NULL;
  procs_spec ps = {.name = "onnxruntime (node)", .path = node, .argv = argv,
                   .stderr_path = s->log_path};
  rc = procs_spawn(&ps, &p->child, e);
  char line[PROCS_LINE_BYTES];
  if (rc == ERR_OK) rc = procs_read_line(&p->child, line, sizeof line, ORTPROC_READY_TIMEOUT_MS, e);
  if (rc == ERR_OK && strcmp(line, "ready") != 0)
    rc = err_set(e, ERR_BACKEND, "onnxruntime on %s: %s", s->model, line);
  if (rc != ERR_OK) {
    ortproc_destroy(p);
    return rc;
  }
  *out = p;
  return ERR_OK;
}

err_code ortproc_run(ortproc *p, int k, double *ms, err *e) {
  if (k < 1 || k > ORTPROC_MAX_RUNS_PER_COMMAND)
    return err_set(e, ERR_INVALID, "%d runs per command: 1 to %d", k,
                   ORTPROC_MAX_RUNS_PER_COMMAND);
  char cmd[32];
  int n = snprintf(cmd, sizeof cmd, "run %d\n", k);
  if (write(p->cmd_fd, cmd, (size_t)n) != n)
    return err_set(e, ERR_IO, "writing to %s: %s", p->fifo, strerror(errno));
  char line[PROCS_LINE_BYTES];
  err_code rc = procs_read_line(&p->child, line, sizeof line, k * ORTPROC_RUN_TIMEOUT_MS, e);
  if (rc != ERR_OK) return rc;
  if (strncmp(line, "ms ", 3) != 0) return err_set(e, ERR_BACKEND, "onnxruntime: %s", line);
  char *cur = line + 3;
  for (int i = 0; i < k; i++) {
    char *end;
    ms[i] = strtod(cur, &end);
    if (end == cur) return err_set(e, ERR_CORRUPT, "onnxruntime replied '%s'", line);
    cur = end;
  }
  return ERR_OK;
}

void ortproc_destroy(ortproc *p) {
  if (!p) return;
  if (p->cmd_fd >= 0) {
    static const char quit[] = "quit\n";
    if (p->child.pid > 0 && write(p->cmd_fd, quit, sizeof quit - 1) == sizeof quit - 1)
      procs_wait(&p->child, ORTPROC_QUIT_GRACE_MS, NULL);
    close(p->cmd_fd);
  }
  procs_stop_one(&p->child, PROCS_DEFAULT_GRACE_MS);
  unlink(p->fifo);
  free(p);
}

/* baseline_pool.c — copies of this process that run a model whole on
 * request (contract in baseline_pool.h).
 *
 * Protocol on one socket pair per copy (send with MSG_NOSIGNAL: a peer
 * gone is an error, not a SIGPIPE): the parent sends one byte to ask for a
 * run; the copy answers with a reply (the run's thread CPU ms, or NAN and
 * what went wrong). The first reply, unasked, says the model is built and
 * warm. The parent's end closed ends the copy.
 */
#include "cli/baseline_pool.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/baseline.h"

typedef struct reply {
  double cpu_ms; /* NAN: failed, msg says why */
  char msg[ERR_MSG_BYTES];
} reply;

typedef struct copy {
  pid_t pid; /* 0: gone */
  int fd;    /* the parent's end */
} copy;

struct baseline_pool {
  copy c[BASELINE_PROCESSES];
  int n, next;
};

/* Whole-buffer I/O across signals. */
static bool write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w, n -= (size_t)w;
  }
  return true;
}

static bool read_all(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r, n -= (size_t)r;
  }
  return true;
}

/* The copy's life: build, warm up, then one run per byte asked. */
static void serve(int fd, const char *model, const Edgedi__V1__Image *img,
                  bool emulated) {
  baseline_runner *r = NULL;
  err e = {0};
  reply out = {.cpu_ms = 0};
  if (baseline_runner_open(model, img, emulated, &r, &e) != ERR_OK ||
      baseline_runner_run(r, NULL, NULL, &e) != ERR_OK) {
    out.cpu_ms = NAN;
    snprintf(out.msg, sizeof out.msg, "%s", e.msg);
  }
  bool ok = write_all(fd, &out, sizeof out) && isfinite(out.cpu_ms);
  char byte;
  while (ok && read_all(fd, &byte, 1)) {
    memset(&out, 0, sizeof out);
    if (baseline_runner_run(r, &out.cpu_ms, NULL, &e) != ERR_OK) {
      out.cpu_ms = NAN;
      snprintf(out.msg, sizeof out.msg, "%s", e.msg);
    }
    ok = write_all(fd, &out, sizeof out);
  }
  baseline_runner_close(r);
}

static void end_copy(copy *c) {
  if (c->pid <= 0) return;
  /* shutdown, not just close: copies forked later hold this end too, and
   * the copy must read EOF now. */
  shutdown(c->fd, SHUT_RDWR);
  close(c->fd);
  while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR) {
  }
  c->pid = 0;
}

/* Forks copy c; its first reply is read by the caller. */
static err_code start_copy(copy *c, const char *model, const Edgedi__V1__Image *img,
                           bool emulated, err *e) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return err_set(e, ERR_IO, "socketpair: %s", strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]), close(sv[1]);
    return err_set(e, ERR_IO, "fork: %s", strerror(errno));
  }
  if (pid == 0) {
    close(sv[0]);
    serve(sv[1], model, img, emulated);
    _exit(0);
  }
  close(sv[1]);
  *c = (copy){.pid = pid, .fd = sv[0]};
  return ERR_OK;
}

err_code baseline_pool_open(const char *model, const Edgedi__V1__Image *img, bool emulated,
                            int processes, baseline_pool **out, err *e) {
  *out = NULL;
  if (processes < 1 || processes > BASELINE_PROCESSES)
    return err_set(e, ERR_INVALID, "%d baseline processes: 1 to %d", processes,
                   BASELINE_PROCESSES);
  baseline_pool *p = calloc(1, sizeof *p);
  if (!p) return err_set(e, ERR_NOMEM, "out of memory");
  err_code rc = ERR_OK;
  for (int i = 0; i < processes && rc == ERR_OK; i++) {
    rc = start_copy(&p->c[i], model, img, emulated, e);
    if (rc == ERR_OK) p->n++;
  }
  /* All build at once; then each says it is ready or why not. */
  for (int i = 0; i < p->n && rc == ERR_OK; i++) {
    reply r;
    if (!read_all(p->c[i].fd, &r, sizeof r))
      rc = err_set(e, ERR_UNAVAILABLE, "baseline of %s: copy %d ended before it was ready",
                   model, i);
    else if (!isfinite(r.cpu_ms))
      rc = err_set(e, ERR_UNAVAILABLE, "%s", r.msg);
  }
  if (rc != ERR_OK) {
    baseline_pool_close(p);
    return rc;
  }
  *out = p;
  return ERR_OK;
}

err_code baseline_pool_run(baseline_pool *p, double *cpu_ms, err *e) {
  for (int tries = 0; tries < p->n; tries++) {
    copy *c = &p->c[p->next];
    int k = p->next;
    p->next = (p->next + 1) % p->n;
    if (c->pid <= 0) continue;
    reply r;
    const char byte = 'r';
    if (!write_all(c->fd, &byte, 1) || !read_all(c->fd, &r, sizeof r)) {
      end_copy(c);
      return err_set(e, ERR_UNAVAILABLE, "baseline copy %d ended", k);
    }
    if (!isfinite(r.cpu_ms)) return err_set(e, ERR_UNAVAILABLE, "%s", r.msg);
    *cpu_ms = r.cpu_ms;
    return ERR_OK;
  }
  return err_set(e, ERR_UNAVAILABLE, "no baseline copy is left");
}

err_code baseline_pool_probe(void *pool, double *cpu_ms, err *e) {
  return baseline_pool_run(pool, cpu_ms, e);
}

void baseline_pool_close(baseline_pool *p) {
  if (!p) return;
  for (int i = 0; i < p->n; i++) end_copy(&p->c[i]);
  free(p);
}

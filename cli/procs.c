/* procs.c — child processes that cannot outlive their parent (contract in
 * procs.h).
 *
 * fork + execv rather than posix_spawn, because only a forked child can
 * ask for PR_SET_PDEATHSIG before it becomes the program. Between fork and
 * exec the child calls async-signal-safe functions only (the parent may
 * have gRPC threads holding locks). An exec failure is reported back over
 * a close-on-exec pipe, so the parent learns "no such program" from
 * procs_spawn instead of from a child that exits 127.
 */
#include "cli/procs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
  WAIT_POLL_MS = 10,  /* how often a wait looks at its children */
  SLEEP_SLICE_MS = 50 /* procs_sleep_ms notices a stop at least this often */
};

static volatile sig_atomic_t stop_flag;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* The child's side, from fork to exec: async-signal-safe calls only. */
static void child_exec(const procs_spec *spec, pid_t parent, int out_w, int err_fd,
                       int report_w) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) goto fail;
  /* The parent may have died between fork and prctl: then nobody would
   * ever send the signal. */
  if (getppid() != parent) _exit(127);
  setpgid(0, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, 0) < 0) goto fail;
  if (out_w >= 0 && dup2(out_w, 1) < 0) goto fail;
  if (err_fd >= 0 && dup2(err_fd, 2) < 0) goto fail;
  execv(spec->path, (char *const *)spec->argv);
fail:;
  int code = errno;
  ssize_t w = write(report_w, &code, sizeof code);
  (void)w;
  _exit(127);
}

err_code procs_spawn(const procs_spec *spec, procs_child *out, err *e) {
  *out = (procs_child){.stdout_fd = -1};
  snprintf(out->name, sizeof out->name, "%s", spec->name ? spec->name : spec->path);
  if (!spec->path || !spec->argv || !spec->argv[0])
    return err_set(e, ERR_INVALID, "%s: no program or argv", out->name);
  if (access(spec->path, X_OK) != 0)
    return err_set(e, ERR_NOT_FOUND, "%s: %s is not an executable file: %s", out->name,
                   spec->path, strerror(errno));
  int out_pipe[2] = {-1, -1}, report[2] = {-1, -1}, err_fd = -1;
  if ((!spec->inherit_stdout && pipe2(out_pipe, O_CLOEXEC) != 0) ||
      pipe2(report, O_CLOEXEC) != 0) {
    err_set(e, ERR_IO, "%s: pipe: %s", out->name, strerror(errno));
    goto fail;
  }
  if (spec->stderr_path) {
    err_fd = open(spec->stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (err_fd < 0) {
      err_set(e, ERR_IO, "%s: cannot open log %s: %s", out->name, spec->stderr_path,
              strerror(errno));
      goto fail;
    }
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    err_set(e, ERR_IO, "%s: fork: %s", out->name, strerror(errno));
    goto fail;
  }
  if (pid == 0) child_exec(spec, parent, out_pipe[1], err_fd, report[1]);

  if (out_pipe[1] >= 0) close(out_pipe[1]);
  close(report[1]);
  if (err_fd >= 0) close(err_fd);
  int code = 0;
  ssize_t got;
  do got = read(report[0], &code, sizeof code);
  while (got < 0 && errno == EINTR);
  close(report[0]);
  out->pid = pid;
  out->stdout_fd = out_pipe[0];
  if (got > 0) { /* the exec failed: the child is exiting 127 */
    procs_wait(out, -1, NULL);
    if (out->stdout_fd >= 0) close(out->stdout_fd);
    out->stdout_fd = -1;
    return err_set(e, ERR_IO, "%s: cannot run %s: %s", out->name, spec->path, strerror(code));
  }
  return ERR_OK;

fail:
  for (int i = 0; i < 2; i++) {
    if (out_pipe[i] >= 0) close(out_pipe[i]);
    if (report[i] >= 0) close(report[i]);
  }
  if (err_fd >= 0) close(err_fd);
  return e ? e->code : ERR_IO;
}

bool procs_alive(procs_child *c) {
  if (c->pid <= 0 || c->reaped) return false;
  int status = 0;
  pid_t r = waitpid(c->pid, &status, WNOHANG);
  if (r == c->pid || (r < 0 && errno == ECHILD)) {
    c->exit_status = r == c->pid ? status : 0;
    c->reaped = true;
    return false;
  }
  return true;
}

err_code procs_read_line(procs_child *c, char *line, size_t len, int timeout_ms, err *e) {
  if (c->stdout_fd < 0 || len == 0)
    return err_set(e, ERR_INVALID, "%s: no stdout to read", c->name);
  double deadline = now_ms() + timeout_ms;
  size_t n = 0;
  for (;;) {
    int left = (int)(deadline - now_ms());
    if (left <= 0) {
      line[n] = 0;
      return err_set(e, ERR_DEADLINE, "%s printed no full line in %d ms (got '%s')", c->name,
                     timeout_ms, line);
    }
    struct pollfd p = {.fd = c->stdout_fd, .events = POLLIN};
    int r = poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char ch;
    ssize_t got = read(c->stdout_fd, &ch, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      line[n] = 0;
      char how[64] = "still running";
      if (procs_wait(c, 1000, NULL) == ERR_OK) procs_describe_exit(c, how, sizeof how);
      return err_set(e, ERR_UNAVAILABLE, "%s closed its stdout before a full line (%s)",
                     c->name, how);
    }
    if (ch == '\n') break;
    if (n + 1 < len) line[n++] = ch;
  }
  line[n] = 0;
  return ERR_OK;
}

err_code procs_wait(procs_child *c, int timeout_ms, err *e) {
  double deadline = now_ms() + timeout_ms;
  while (procs_alive(c)) {
    if (timeout_ms >= 0 && now_ms() >= deadline)
      return err_set(e, ERR_DEADLINE, "%s still runs after %d ms", c->name, timeout_ms);
    nap_ms(WAIT_POLL_MS);
  }
  return ERR_OK;
}

void procs_stop(procs_child *const *children, int n, int grace_ms) {
  for (int i = 0; i < n; i++)
    if (procs_alive(children[i])) kill(children[i]->pid, SIGTERM);
  double deadline = now_ms() + grace_ms;
  for (;;) {
    bool any = false;
    for (int i = 0; i < n; i++) any |= procs_alive(children[i]);
    if (!any || now_ms() >= deadline) break;
    nap_ms(WAIT_POLL_MS);
  }
  for (int i = 0; i < n; i++) {
    procs_child *c = children[i];
    if (procs_alive(c)) {
      kill(c->pid, SIGKILL);
      procs_wait(c, -1, NULL);
    }
    if (c->stdout_fd >= 0) close(c->stdout_fd);
    c->stdout_fd = -1;
  }
}

void procs_stop_one(procs_child *c, int grace_ms) {
  procs_child *one[] = {c};
  procs_stop(one, 1, grace_ms);
}

void procs_describe_exit(const procs_child *c, char *buf, size_t len) {
  if (!c->reaped) snprintf(buf, len, c->pid > 0 ? "running" : "not started");
  else if (WIFEXITED(c->exit_status)) snprintf(buf, len, "exit %d", WEXITSTATUS(c->exit_status));
  else if (WIFSIGNALED(c->exit_status))
    snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(c->exit_status),
             strsignal(WTERMSIG(c->exit_status)));
  else snprintf(buf, len, "status %d", c->exit_status);
}

bool procs_exited_cleanly(const procs_child *c) {
  if (!c->reaped) return false;
  if (WIFEXITED(c->exit_status)) return WEXITSTATUS(c->exit_status) == 0;
  return WIFSIGNALED(c->exit_status) && WTERMSIG(c->exit_status) == SIGTERM;
}

static void on_stop_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

void procs_catch_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: a sleeping wait wakes up */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

bool procs_stop_requested(void) { return stop_flag != 0; }

void procs_sleep_ms(int ms) {
  double deadline = now_ms() + ms;
  while (!stop_flag) {
    int left = (int)(deadline - now_ms());
    if (left <= 0) break;
    nap_ms(left < SLEEP_SLICE_MS ? left : SLEEP_SLICE_MS);
  }
}

/* procs.h — child processes that cannot outlive their parent: start a
 * program, read the line it announces itself with, stop it, reap it.
 *
 * What it promises:
 *  - A child started here dies with the thread that started it
 *    (PR_SET_PDEATHSIG, SIGKILL): a parent killed with SIGKILL, or a test
 *    whose assertion longjmps past its cleanup, leaves no orphan. Start
 *    children from the thread that lives as long as they should (main).
 *  - A child runs in a process group of its own, so a terminal's Ctrl-C
 *    reaches only the parent, which then stops the children in order
 *    (procs_stop) instead of having them all die at once under it.
 *  - The child's signal mask and dispositions are the defaults, whatever
 *    the parent blocked or ignored.
 *  - Nothing waits forever: reading the announce line, waiting for an exit
 *    and stopping all take a limit in milliseconds; procs_stop escalates
 *    from SIGTERM to SIGKILL and always reaps.
 *  - Library code: failures are err codes with a message, nothing prints.
 *
 * Stop requests: procs_catch_stop_signals() makes SIGINT and SIGTERM set a
 * flag (procs_stop_requested) instead of killing the parent, so a program
 * that holds children can wind them down before it exits.
 */
#ifndef EDGEDI_CLI_PROCS_H
#define EDGEDI_CLI_PROCS_H

#include <stdbool.h>
#include <sys/types.h>

#include "runtime/err.h"

enum {
  PROCS_NAME_BYTES = 64,
  PROCS_MAX_ARGS = 64,
  PROCS_LINE_BYTES = 512,
  /* What procs_stop gives a child between SIGTERM and SIGKILL: an agent
   * or scheduler takes up to its 2 s shutdown grace. */
  PROCS_DEFAULT_GRACE_MS = 5000,
};

typedef struct procs_child {
  char name[PROCS_NAME_BYTES]; /* for messages: "agent pi3b-1" */
  pid_t pid;                   /* 0 once reaped (or never started) */
  int stdout_fd;               /* read end of the child's stdout, -1: none */
  int exit_status;             /* waitpid status, once reaped */
  bool reaped;
} procs_child;

typedef struct procs_spec {
  const char *name;          /* for messages */
  const char *path;          /* the program */
  const char *const *argv;   /* NULL-terminated, argv[0] included */
  const char *stderr_path;   /* NULL: the parent's stderr; else appended to */
  bool inherit_stdout;       /* the child writes to our stdout: no pipe */
} procs_spec;

/* Starts the program with stdout on a pipe (procs_read_line reads it),
 * unless inherit_stdout, and stdin on /dev/null. ERR_NOT_FOUND when the program is not an executable
 * file, ERR_IO when it cannot be started. */
err_code procs_spawn(const procs_spec *spec, procs_child *out, err *e);

/* Reads one line of the child's stdout (without the newline) into line.
 * ERR_DEADLINE after timeout_ms, ERR_UNAVAILABLE when the child closed its
 * stdout or exited first (its exit status in the message). */
err_code procs_read_line(procs_child *c, char *line, size_t len, int timeout_ms,
                         err *e);

/* true while the child runs; reaps it (and records its status) once it has
 * exited. */
bool procs_alive(procs_child *c);

/* Waits up to timeout_ms (< 0: no limit) for the child to exit on its own.
 * ERR_DEADLINE when it is still running. */
err_code procs_wait(procs_child *c, int timeout_ms, err *e);

/* Stops children: SIGTERM to all at once, then up to grace_ms for all of
 * them to exit, then SIGKILL to whoever is left; reaps every one and closes
 * their pipes. Safe on children already reaped or never started. */
void procs_stop(procs_child *const *children, int n, int grace_ms);
void procs_stop_one(procs_child *c, int grace_ms);

/* "exit 0", "exit 3", "killed by SIGKILL": how a reaped child ended. */
void procs_describe_exit(const procs_child *c, char *buf, size_t len);

/* true when the child exited by itself with status 0 or was stopped by the
 * SIGTERM procs_stop sent. */
bool procs_exited_cleanly(const procs_child *c);

/* SIGINT and SIGTERM set the stop flag from now on (idempotent). */
void procs_catch_stop_signals(void);
bool procs_stop_requested(void);

/* Sleeps ms milliseconds, returning early when a stop was requested. */
void procs_sleep_ms(int ms);

#endif

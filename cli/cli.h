/* cli.h — what the edgedi subcommands share: the command table's entry
 * type, the exit statuses and a few argument and timing helpers.
 *
 * A subcommand is `int cmd_x(int argc, char **argv)` with argv[0] its own
 * name; it is the program's front end for its task, so it (and only it,
 * never the libraries it calls) prints results and errors, and returns an
 * exit status. One file per group of subcommands: cmd_demo.c, ...
 */
#ifndef EDGEDI_CLI_H
#define EDGEDI_CLI_H

#include <stdbool.h>

enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAIL = 1,  /* the command ran and something went wrong */
  CLI_EXIT_USAGE = 2, /* bad flags or arguments */
};

typedef int (*cli_fn)(int argc, char **argv);

typedef struct cli_command {
  const char *name;
  cli_fn fn;
  const char *summary; /* one line for `edgedi help` */
} cli_command;

/* The subcommands. */
int cmd_demo(int argc, char **argv);

/* An integer in [lo, hi], the whole string; false otherwise. */
bool cli_parse_int(const char *s, int lo, int hi, int *out);
/* Monotonic wall time in milliseconds. */
double cli_now_ms(void);
/* Median of v[0..n), n > 0; sorts v in place. */
double cli_median(double *v, int n);

#endif

/* cli.h — what the edgedi subcommands share: the command table's entry
 * type, the exit statuses and a few argument and timing helpers.
 *
 * A subcommand is `int cmd_x(int argc, char **argv)` with argv[0] its own
 * name; it is the program's front end for its task, so it (and only it,
 * never the libraries it calls) prints results and errors, and returns an
 * exit status. One file per group of subcommands (cmd_infer.c, ...); the
 * modules they share (client.h: the gRPC calls, localcluster.h: local
 * clusters, show.h: tables, imagefile.h, sample.h) never print or exit on
 * their own, except show.h, whose whole job is printing.
 */
#ifndef EDGEDI_CLI_H
#define EDGEDI_CLI_H

#include <stdbool.h>
#include <stdio.h>

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
int cmd_cluster(int argc, char **argv);  /* cmd_cluster.c */
int cmd_demo(int argc, char **argv);     /* cmd_demo.c: `demo --local` */
int cmd_demo_cluster(int argc, char **argv); /* cmd_demo_cluster.c: `demo` */
int cmd_devices(int argc, char **argv);  /* cmd_devices.c */
int cmd_history(int argc, char **argv);  /* cmd_history.c */
int cmd_timeline(int argc, char **argv); /* cmd_timeline.c */
int cmd_infer(int argc, char **argv);    /* cmd_infer.c */
int cmd_model(int argc, char **argv);    /* cmd_models.c: `model add` */
int cmd_models(int argc, char **argv);   /* cmd_models.c */
int cmd_plan(int argc, char **argv);     /* cmd_plan.c */
int cmd_run(int argc, char **argv);      /* cmd_run.c: `run MODEL.onnx` */
int cmd_export(int argc, char **argv);   /* cmd_run.c: `export ZOO OUT.onnx` */
int cmd_eval(int argc, char **argv);     /* cmd_eval.c: accuracy on a folder */
int cmd_prune(int argc, char **argv);    /* cmd_prune.c: L1 filter pruning */

/* The NEU-CLS class names, in the dataset's (alphabetical) order: what the
 * six logits of every zoo model stand for. */
enum { CLI_NEU_CLS_CLASSES = 6 };
extern const char *const cli_neu_cls_classes[CLI_NEU_CLS_CLASSES];
/* The class name of logit i of a model with n classes: a NEU-CLS name for
 * six classes, "class i" otherwise (buf holds it). */
const char *cli_class_name(int i, int n, char *buf, int len);

/* Monotonic wall time in milliseconds. */
double cli_now_ms(void);
/* true for --help and -h. */
bool cli_is_help(const char *arg);
/* "12.3 kB", "4.56 MB": bytes for people (powers of 1000). */
const char *cli_bytes(unsigned long long bytes, char *buf, int len);
/* s as a JSON string literal, quotes included. */
void cli_json_string(FILE *f, const char *s);

#endif

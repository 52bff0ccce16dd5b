/* edgedi.c — the edgedi command: main and the subcommand table.
 *
 * `edgedi <command> [flags]` looks the command up in `commands` and hands
 * it the rest of argv (argv[0] = the command's name); the command returns
 * the exit status. Adding a subcommand is one row here, one declaration in
 * cli.h and its file.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static int cmd_help(int argc, char **argv);

static const cli_command commands[] = {
    {"demo", cmd_demo_cluster,
     "4 emulated Raspberry Pis on loopback: plan, latency, speedup "
     "(--local: one device)"},
    {"cluster", cmd_cluster,
     "start a scheduler and N local agents; run a workload or wait"},
    {"infer", cmd_infer, "one inference of an image file or raw tensor"},
    {"devices", cmd_devices, "the devices, their state and cost models"},
    {"plan", cmd_plan, "how a model would be split over the devices now"},
    {"history", cmd_history, "recent requests, from the database"},
    {"timeline", cmd_timeline, "when each device computed during a request"},
    {"models", cmd_models, "the zoo and the models the scheduler serves"},
    {"model", cmd_model, "`model add NAME ...`: load a zoo model"},
    {"run", cmd_run, "run an ONNX model on this device (raw tensor or image)"},
    {"export", cmd_export, "write a zoo model as an ONNX file"},
    {"eval", cmd_eval,
     "accuracy, size and latency of an ONNX model on a labelled folder"},
    {"prune", cmd_prune,
     "L1-norm filter pruning of an ONNX model under an accuracy floor"},
    {"help", cmd_help, "this list, or `edgedi help <command>`"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static const cli_command *find_command(const char *name) {
  for (int i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

static void usage(FILE *f) {
  fprintf(f, "usage: edgedi <command> [flags]\n\ncommands:\n");
  for (int i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n`edgedi <command> --help` describes a command's flags.\n");
}

static int cmd_help(int argc, char **argv) {
  if (argc < 2) {
    usage(stdout);
    return CLI_EXIT_OK;
  }
  const cli_command *c = find_command(argv[1]);
  if (!c || c->fn == cmd_help) {
    if (!c) fprintf(stderr, "edgedi: unknown command '%s'\n", argv[1]);
    usage(c ? stdout : stderr);
    return c ? CLI_EXIT_OK : CLI_EXIT_USAGE;
  }
  char *help_argv[] = {argv[1], "--help", NULL};
  return c->fn(2, help_argv);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
    return cmd_help(1, argv + 1);
  const cli_command *c = find_command(argv[1]);
  if (!c) {
    fprintf(stderr, "edgedi: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  return c->fn(argc - 1, argv + 1);
}

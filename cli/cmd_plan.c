/* cmd_plan.c — `edgedi plan MODEL`: the split the scheduler would use now,
 * with predicted times, without running anything (Plan).
 *
 * The scheduler plans for a uint8 gray image, as a camera sends, over the
 * devices up at this moment; the same model and devices give the same plan
 * id as a real request would get.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "cli/show.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: edgedi plan MODEL [--planner NAME] [--scheduler ADDR] [--brief] [--json]\n"
          "  Shows how the scheduler would split MODEL over the devices up now:\n"
          "  segments (layer ranges), output rows per device in each, input rows with\n"
          "  their halo, GFLOP, predicted compute and transfer times and bytes.\n"
          "  --planner NAME     a planner other than the scheduler's default\n"
          "  --scheduler ADDR   the scheduler (default %s)\n"
          "  --brief            rows per device and segment only\n"
          "  --json             one JSON object\n",
          client_default_address());
}

int cmd_plan(int argc, char **argv) {
  const char *scheduler = client_default_address(), *planner = NULL, *model = NULL;
  bool json = false, brief = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      usage(stdout);
      return CLI_EXIT_OK;
    }
    if (strcmp(a, "--scheduler") == 0 && i + 1 < argc) scheduler = argv[++i];
    else if (strcmp(a, "--planner") == 0 && i + 1 < argc) planner = argv[++i];
    else if (strcmp(a, "--json") == 0) json = true;
    else if (strcmp(a, "--brief") == 0) brief = true;
    else if (a[0] != '-' && !model) model = a;
    else {
      fprintf(stderr, "edgedi plan: unexpected argument, unknown flag or missing value: %s\n",
              a);
      usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  if (!model) {
    fprintf(stderr, "edgedi plan: needs MODEL\n");
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  err e = {0};
  rpc_channel *ch = NULL;
  if (client_connect(scheduler, &ch, &e) != ERR_OK) {
    fprintf(stderr, "edgedi plan: %s\n", e.msg);
    return CLI_EXIT_FAIL;
  }
  Edgedi__V1__PlanReply *p = NULL;
  grpc_status_code st = client_plan(ch, model, planner, &p, &e);
  rpc_channel_destroy(ch);
  if (st != GRPC_STATUS_OK) {
    fprintf(stderr, "edgedi plan: %s\n", e.msg);
    return CLI_EXIT_FAIL;
  }
  if (json) show_plan_json(stdout, p);
  else show_plan(stdout, p, !brief);
  rpc_free((ProtobufCMessage *)p);
  return CLI_EXIT_OK;
}

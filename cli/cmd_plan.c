/* cmd_plan.c — `edgedi plan MODEL`: how each planner would split MODEL over
 * the devices up now, side by side, or one planner's split in detail
 * (--planner), with predicted times, without running anything (Plan).
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
#include "scheduler/plan.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: edgedi plan MODEL [--planner NAME] [--scheduler ADDR] [--brief] [--json]\n"
          "  Shows how the scheduler would split MODEL over the devices up now.\n"
          "  Without --planner: every planner side by side (predicted makespan,\n"
          "  segments, devices used, rows per device and segment).\n"
          "  --planner NAME     one planner's split in detail: segments (layer ranges),\n"
          "                     output rows per device, input rows with their halo,\n"
          "                     GFLOP, predicted compute and transfer times and bytes\n"
          "                     (NAME: exact, heuristic, proportional, equal; 'default':\n"
          "                     the scheduler's default)\n"
          "  --scheduler ADDR   the scheduler (default %s)\n"
          "  --brief            rows per device and segment only\n"
          "  --json             one JSON object per plan\n",
          client_default_address());
}

/* Every planner's plan of `model`: a summary table, then each one's rows. */
static int compare_planners(rpc_channel *ch, const char *model, bool json) {
  const char *const *names = plan_names();
  Edgedi__V1__PlanReply *plans[16] = {0};
  int n = 0, rc = CLI_EXIT_OK;
  for (; names[n] && n < 16; n++) {
    err e = {0};
    if (client_plan(ch, model, names[n], &plans[n], &e) != GRPC_STATUS_OK) {
      fprintf(stderr, "edgedi plan: %s\n", e.msg);
      rc = CLI_EXIT_FAIL;
      break;
    }
  }
  if (rc == CLI_EXIT_OK && json) {
    for (int i = 0; i < n; i++) show_plan_json(stdout, plans[i]);
  } else if (rc == CLI_EXIT_OK) {
    double best = plans[0]->predicted_ms;
    for (int i = 1; i < n; i++)
      if (plans[i]->predicted_ms < best) best = plans[i]->predicted_ms;
    printf("%s: every planner over the devices up now (predicted; the fastest device alone: "
           "%.2f ms)\n",
           model, plans[0]->single_device_ms);
    printf("  %-13s %10s %9s %9s %8s\n", "planner", "pred_ms", "vs_best", "segments",
           "devices");
    const char *used[PLAN_MAX_DEVICES];
    for (int i = 0; i < n; i++)
      printf("  %-13s %10.2f %8.2fx %9zu %8zu\n", plans[i]->planner, plans[i]->predicted_ms,
             plans[i]->predicted_ms / best, plans[i]->n_segments,
             show_plan_devices(plans[i], used, PLAN_MAX_DEVICES));
    for (int i = 0; i < n; i++) {
      printf("\n");
      show_plan(stdout, plans[i], false);
    }
  }
  for (int i = 0; i < n; i++) rpc_free((ProtobufCMessage *)plans[i]);
  return rc;
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
  if (!planner) {
    int rc = compare_planners(ch, model, json);
    rpc_channel_destroy(ch);
    return rc;
  }
  if (strcmp(planner, "default") == 0) planner = NULL;
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

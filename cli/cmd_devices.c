/* cmd_devices.c — `edgedi devices`: every device the scheduler knows, its
 * state and its current cost model (ListDevices).
 *
 * The cost model is what the planner reads: ms per GFLOP (a) and fixed ms
 * per job (b) fitted from calibration and tiles, the link's bandwidth and
 * round trip as probed, and the fit's relative error.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "cli/show.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: edgedi devices [--scheduler ADDR] [--json]\n"
          "  Lists the devices registered with the scheduler: state (up, profiling,\n"
          "  down), address, threads and the cost model t = a * GFLOP + b plus its\n"
          "  link (bandwidth, round trip), with the number of samples and fit error.\n"
          "  --scheduler ADDR   the scheduler (default %s)\n"
          "  --json             one JSON object\n",
          client_default_address());
}

int cmd_devices(int argc, char **argv) {
  const char *scheduler = client_default_address();
  bool json = false;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      usage(stdout);
      return CLI_EXIT_OK;
    }
    if (strcmp(argv[i], "--scheduler") == 0 && i + 1 < argc) scheduler = argv[++i];
    else if (strcmp(argv[i], "--json") == 0) json = true;
    else {
      fprintf(stderr, "edgedi devices: unknown flag or missing value: %s\n", argv[i]);
      usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  err e = {0};
  rpc_channel *ch = NULL;
  if (client_connect(scheduler, &ch, &e) != ERR_OK) {
    fprintf(stderr, "edgedi devices: %s\n", e.msg);
    return CLI_EXIT_FAIL;
  }
  Edgedi__V1__ListDevicesReply *l = NULL;
  grpc_status_code st = client_list_devices(ch, &l, &e);
  rpc_channel_destroy(ch);
  if (st != GRPC_STATUS_OK) {
    fprintf(stderr, "edgedi devices: %s\n", e.msg);
    return CLI_EXIT_FAIL;
  }
  if (json) show_devices_json(stdout, l);
  else show_devices(stdout, l);
  rpc_free((ProtobufCMessage *)l);
  return CLI_EXIT_OK;
}

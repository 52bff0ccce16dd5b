/* cmd_infer.c — `edgedi infer MODEL IMAGE`: one inference over the cluster.
 *
 * The image goes as it is (camera pixels stay uint8: DESIGN.md, "Data
 * movement"); the scheduler checks it against the model and answers a
 * wrong size or type INVALID_ARGUMENT, which is printed with its status
 * name like any server error. --repeat sends the same request several
 * times in a row and reports the latency spread, for quick timing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "cli/imagefile.h"
#include "cli/show.h"
#include "runtime/protocol.h"
#include "runtime/stats.h"

enum { INFER_MAX_REPEAT = 100000 };

static void usage(FILE *f) {
  fprintf(f,
          "usage: edgedi infer MODEL IMAGE [flags]\n"
          "  Runs one inference of MODEL on IMAGE over the cluster and prints the top\n"
          "  class, the logits, the latency, the plan, each device's compute and\n"
          "  transfer times, when each device computed (its timeline: the segment, or\n"
          "  '.' while it waited) and the bytes moved against gathering whole maps.\n"
          "  IMAGE is a PGM/PPM, PNG or BMP file (decoded with stb_image: gray stays\n"
          "  gray, color is RGB), or with --raw a file of raw HWC samples.\n"
          "  --scheduler ADDR   the scheduler (default %s)\n"
          "  --raw HxWxC        IMAGE is a raw tensor of that shape, uint8 samples\n"
          "  --f32              ... of little-endian float32 samples (with --raw)\n"
          "  --planner NAME     planner for this request (default: the scheduler's)\n"
          "  --deadline-ms N    request deadline (default: the scheduler's)\n"
          "  --repeat N         send it N times, print the last reply and the spread\n"
          "  --json             one JSON object per reply instead of tables\n",
          client_default_address());
}

typedef struct infer_opts {
  const char *scheduler, *model, *image, *raw, *planner;
  bool f32, json;
  int deadline_ms, repeat;
} infer_opts;

static int parse(int argc, char **argv, infer_opts *o) {
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (cli_is_help(a)) {
      usage(stdout);
      return -1;
    }
    bool takes = true;
    if (strcmp(a, "--scheduler") == 0 && v) o->scheduler = v;
    else if (strcmp(a, "--raw") == 0 && v) o->raw = v;
    else if (strcmp(a, "--planner") == 0 && v) o->planner = v;
    else if (strcmp(a, "--deadline-ms") == 0 && v) {
      if (!flags_parse_int(v, 1, 3600 * 1000, &o->deadline_ms)) {
        fprintf(stderr, "edgedi infer: --deadline-ms needs 1 to 3600000, not '%s'\n", v);
        return CLI_EXIT_USAGE;
      }
    } else if (strcmp(a, "--repeat") == 0 && v) {
      if (!flags_parse_int(v, 1, INFER_MAX_REPEAT, &o->repeat)) {
        fprintf(stderr, "edgedi infer: --repeat needs 1 to %d, not '%s'\n", INFER_MAX_REPEAT, v);
        return CLI_EXIT_USAGE;
      }
    } else {
      takes = false;
      if (strcmp(a, "--f32") == 0) o->f32 = true;
      else if (strcmp(a, "--json") == 0) o->json = true;
      else if (a[0] == '-' && a[1]) {
        fprintf(stderr, "edgedi infer: unknown flag or missing value: %s\n", a);
        usage(stderr);
        return CLI_EXIT_USAGE;
      } else if (npos == 0) o->model = a, npos++;
      else if (npos == 1) o->image = a, npos++;
      else {
        fprintf(stderr, "edgedi infer: unexpected argument '%s'\n", a);
        return CLI_EXIT_USAGE;
      }
    }
    if (takes) i++;
  }
  if (npos != 2) {
    fprintf(stderr, "edgedi infer: needs MODEL and IMAGE\n");
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  if (o->f32 && !o->raw) {
    fprintf(stderr, "edgedi infer: --f32 goes with --raw HxWxC\n");
    return CLI_EXIT_USAGE;
  }
  return 0;
}

int cmd_infer(int argc, char **argv) {
  infer_opts o = {.scheduler = client_default_address(), .repeat = 1};
  int prc = parse(argc, argv, &o);
  if (prc) return prc < 0 ? CLI_EXIT_OK : prc;

  err e = {0};
  imagefile im;
  err_code rc;
  if (o.raw) {
    int h, w, c;
    rc = imagefile_parse_shape(o.raw, &h, &w, &c, &e);
    if (rc != ERR_OK) {
      fprintf(stderr, "edgedi infer: %s\n", e.msg);
      return CLI_EXIT_USAGE;
    }
    rc = imagefile_load_raw(o.image, h, w, c, o.f32, &im, &e);
  } else {
    rc = imagefile_load(o.image, &im, &e);
  }
  if (rc != ERR_OK) {
    fprintf(stderr, "edgedi infer: %s\n", e.msg);
    return CLI_EXIT_FAIL;
  }

  rpc_channel *ch = NULL;
  if (client_connect(o.scheduler, &ch, &e) != ERR_OK) {
    fprintf(stderr, "edgedi infer: %s\n", e.msg);
    imagefile_free(&im);
    return CLI_EXIT_FAIL;
  }
  Edgedi__V1__Image img;
  imagefile_to_msg(&im, &img);
  Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
  req.protocol_version = EDGEDI_PROTOCOL_VERSION;
  req.model = (char *)o.model;
  req.image = &img;
  req.deadline_ms = (uint32_t)o.deadline_ms;
  req.planner = (char *)(o.planner ? o.planner : "");

  double *lat = calloc((size_t)o.repeat, sizeof *lat);
  Edgedi__V1__InferReply *r = NULL;
  int status = lat ? CLI_EXIT_OK : CLI_EXIT_FAIL;
  for (int i = 0; lat && i < o.repeat; i++) {
    rpc_free((ProtobufCMessage *)r);
    r = NULL;
    grpc_status_code st = client_infer(ch, &req, &r, &e);
    if (st != GRPC_STATUS_OK) {
      fprintf(stderr, "edgedi infer: %s\n", e.msg);
      status = CLI_EXIT_FAIL;
      break;
    }
    lat[i] = r->latency_ms;
    if (o.json) show_infer_json(stdout, r);
  }
  if (status == CLI_EXIT_OK && r && !o.json) {
    printf("model %s, image %s (%dx%dx%d %s)\n", o.model, o.image, im.height, im.width,
           im.channels, im.f32 ? "float32" : "uint8");
    show_infer(stdout, r);
    if (o.repeat > 1) {
      double median = stats_median(lat, o.repeat); /* sorts: lat[0] is the minimum */
      printf("%d requests: median %.2f ms, min %.2f ms, max %.2f ms\n", o.repeat, median,
             lat[0], lat[o.repeat - 1]);
    }
  }
  rpc_free((ProtobufCMessage *)r);
  free(lat);
  rpc_channel_destroy(ch);
  imagefile_free(&im);
  return status;
}

/* cmd_models.c — `edgedi models` (what can be served and what is) and
 * `edgedi model add` (LoadModel of a zoo architecture under a name).
 *
 * There is no ListModels RPC: the scheduler keeps every model it loaded in
 * its database and rebuilds them at start, so the database is the list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/flags.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "runtime/zoo.h"
#include "storage/store.h"
#include "cli/files.h"

enum { MODEL_MAX_SIDE_PX = ZOO_MAX_INPUT_SIDE_PX, MODEL_MAX_RATIO = 1024 };

static void models_usage(FILE *f) {
  fprintf(f,
          "usage: edgedi models [--db PATH]\n"
          "  The zoo's architectures (what `edgedi model add` can load), then the\n"
          "  models the scheduler serves, from its database: name, digest of the fused\n"
          "  graph, GFLOP, parameters, layers.\n"
          "  --db PATH   the scheduler's database (default ./%s)\n",
          STORE_DEFAULT_PATH);
}

int cmd_models(int argc, char **argv) {
  const char *db = STORE_DEFAULT_PATH;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      models_usage(stdout);
      return CLI_EXIT_OK;
    }
    if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) db = argv[++i];
    else {
      fprintf(stderr, "edgedi models: unknown flag or missing value: %s\n", argv[i]);
      models_usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  printf("zoo architectures (compact ones with their default ratio r):\n ");
  for (const char *const *n = zoo_names(); *n; n++) {
    int r = zoo_default_ratio(*n);
    if (r > 0) printf(" %s (r=%d)", *n, r);
    else printf(" %s", *n);
  }
  printf("\n\n");
  if (access(db, F_OK) != 0) {
    printf("no database at %s: no models loaded there yet\n", db);
    return CLI_EXIT_OK;
  }
  err e = {0};
  store *st = NULL;
  store_model *v = NULL;
  size_t n = 0;
  if (store_open(db, &st, &e) != ERR_OK || store_model_list(st, &v, &n, &e) != ERR_OK) {
    fprintf(stderr, "edgedi models: %s: %s\n", db, e.msg);
    store_close(st);
    return CLI_EXIT_FAIL;
  }
  store_close(st);
  printf("models served (database %s):\n", db);
  printf("  %-20s %-17s %9s %11s %7s  %s\n", "name", "digest", "GFLOP", "params", "layers",
         "loaded");
  for (size_t i = 0; i < n; i++) {
    char when[32] = "?";
    time_t t = (time_t)v[i].created_at;
    struct tm tm;
    if (localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
    printf("  %-20s %-17s %9.3f %11llu %7u  %s\n", v[i].name, v[i].digest, v[i].gflop,
           (unsigned long long)v[i].params, v[i].layers, when);
  }
  if (n == 0) printf("  (none)\n");
  store_free(v);
  return CLI_EXIT_OK;
}

static void add_usage(FILE *f) {
  fprintf(f,
          "usage: edgedi model add NAME [--zoo ARCH] [--height H] [--width W]\n"
          "                        [--channels C] [--ratio R] [--classes K] [--seed S]\n"
          "                        [--scheduler ADDR]\n"
          "       edgedi model add FILE.onnx [--name NAME] [--scheduler ADDR]\n"
          "  Loads zoo architecture ARCH (default: NAME) under NAME on the scheduler,\n"
          "  which builds it, keeps it in its database and pushes it to the agents.\n"
          "  Defaults: 200 x 200 x 3 input, 6 classes, the architecture's ratio, seed 1.\n"
          "  Or loads an ONNX file (its weights, its input size) under NAME (default:\n"
          "  the file's name without .onnx). A name keeps its model: loading another\n"
          "  one under it is refused.\n"
          "  --scheduler ADDR   the scheduler (default %s)\n",
          client_default_address());
}

enum { MODEL_ADD_MAX_ONNX_BYTES = 1 << 30 };

static bool is_onnx_path(const char *s) {
  size_t n = strlen(s);
  return n > 5 && strcmp(s + n - 5, ".onnx") == 0;
}

/* NAME from FILE.onnx: its base name without the extension. */
static void name_of_file(const char *path, char *buf, size_t len) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  snprintf(buf, len, "%.*s", (int)(strlen(base) - 5), base);
}

static int model_add(int argc, char **argv) {
  const char *scheduler = client_default_address(), *name = NULL, *zoo = NULL, *onnx = NULL;
  char file_name[128];
  int height = 0, width = 0, channels = 0, ratio = 0, classes = 0, seed = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (cli_is_help(a)) {
      add_usage(stdout);
      return CLI_EXIT_OK;
    }
    int *num = NULL, hi = MODEL_MAX_SIDE_PX;
    if (strcmp(a, "--scheduler") == 0 && v) scheduler = v, i++;
    else if (strcmp(a, "--zoo") == 0 && v) zoo = v, i++;
    else if (strcmp(a, "--name") == 0 && v) name = v, i++;
    else if (a[0] != '-' && !onnx && is_onnx_path(a)) onnx = a;
    else if (strcmp(a, "--height") == 0) num = &height;
    else if (strcmp(a, "--width") == 0) num = &width;
    else if (strcmp(a, "--channels") == 0) num = &channels, hi = ZOO_MAX_INPUT_CHANNELS;
    else if (strcmp(a, "--ratio") == 0) num = &ratio, hi = MODEL_MAX_RATIO;
    else if (strcmp(a, "--classes") == 0) num = &classes, hi = ZOO_MAX_CLASSES;
    else if (strcmp(a, "--seed") == 0) num = &seed, hi = 0x7fffffff;
    else if (a[0] != '-' && !name) name = a;
    else {
      fprintf(stderr, "edgedi model add: unexpected argument, unknown flag or missing value: %s\n",
              a);
      add_usage(stderr);
      return CLI_EXIT_USAGE;
    }
    if (num) {
      if (!flags_parse_int(v, 1, hi, num)) {
        fprintf(stderr, "edgedi model add: %s needs 1 to %d\n", a, hi);
        return CLI_EXIT_USAGE;
      }
      i++;
    }
  }
  if (onnx && (zoo || height || width || channels || ratio || classes || seed)) {
    fprintf(stderr, "edgedi model add: an ONNX file brings its own architecture and input size\n");
    return CLI_EXIT_USAGE;
  }
  if (onnx && !name) {
    name_of_file(onnx, file_name, sizeof file_name);
    name = file_name;
  }
  if (!name || !name[0]) {
    fprintf(stderr, "edgedi model add: needs NAME or FILE.onnx\n");
    add_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  err e = {0};
  Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
  spec.name = (char *)name;
  uint8_t *bytes = NULL;
  size_t len = 0;
  if (onnx) {
    if (files_read_all(onnx, MODEL_ADD_MAX_ONNX_BYTES, &bytes, &len, &e) != ERR_OK) {
      fprintf(stderr, "edgedi model add: %s\n", e.msg);
      return CLI_EXIT_FAIL;
    }
    spec.zoo = "";
    spec.onnx = (ProtobufCBinaryData){.len = len, .data = bytes};
  } else {
    spec.zoo = (char *)(zoo ? zoo : name);
  }
  spec.height = (uint32_t)height;
  spec.width = (uint32_t)width;
  spec.channels = (uint32_t)channels;
  spec.ratio = (uint32_t)ratio;
  spec.classes = (uint32_t)classes;
  spec.seed = (uint64_t)seed;
  rpc_channel *ch = NULL;
  if (client_connect(scheduler, &ch, &e) != ERR_OK) {
    fprintf(stderr, "edgedi model add: %s\n", e.msg);
    free(bytes);
    return CLI_EXIT_FAIL;
  }
  Edgedi__V1__LoadModelReply *r = NULL;
  grpc_status_code st = client_load_model(ch, &spec, &r, &e);
  rpc_channel_destroy(ch);
  free(bytes);
  if (st != GRPC_STATUS_OK) {
    fprintf(stderr, "edgedi model add: %s\n", e.msg);
    return CLI_EXIT_FAIL;
  }
  printf("loaded %s (%s): digest %s, %.3f GFLOP, %llu parameters, %u layers fused\n", r->name,
         onnx ? onnx : spec.zoo, r->digest, r->gflop, (unsigned long long)r->params, r->layers);
  rpc_free((ProtobufCMessage *)r);
  return CLI_EXIT_OK;
}

int cmd_model(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "add") == 0) return model_add(argc - 1, argv + 1);
  if (argc >= 2 && cli_is_help(argv[1])) {
    add_usage(stdout);
    return CLI_EXIT_OK;
  }
  fprintf(stderr, "edgedi model: the only subcommand is `add`\n");
  add_usage(stderr);
  return CLI_EXIT_USAGE;
}

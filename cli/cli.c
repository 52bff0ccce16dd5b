/* cli.c — helpers shared by the edgedi subcommands (see cli.h). */
#include "cli/cli.h"

#include "runtime/stats.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

double cli_now_ms(void) { return stats_now_ms(); }


const char *const cli_neu_cls_classes[CLI_NEU_CLS_CLASSES] = {
    "crazing",         "inclusion", "patches", "pitted_surface",
    "rolled-in_scale", "scratches",
};

const char *cli_class_name(int i, int n, char *buf, int len) {
  if (n == CLI_NEU_CLS_CLASSES && i >= 0 && i < n) return cli_neu_cls_classes[i];
  snprintf(buf, (size_t)len, "class %d", i);
  return buf;
}

bool cli_is_help(const char *arg) {
  return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

const char *cli_bytes(unsigned long long bytes, char *buf, int len) {
  static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1000 && u < 4) v /= 1000, u++;
  if (u == 0) snprintf(buf, (size_t)len, "%llu B", bytes);
  else snprintf(buf, (size_t)len, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, units[u]);
  return buf;
}

void cli_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

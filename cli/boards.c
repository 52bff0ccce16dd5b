/* boards.c — the paper's boards at their own speed (boards.h). */
#include "cli/boards.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/baseline.h"
#include "cli/workload.h"

enum { BOARDS_IMAGE_SIDE_PX = 200 }; /* the zoo's input, as NEU-CLS */

/* DESIGN.md's machine ran the reference model whole in about 61 ms. */
#define DESIGN_CORE_REFERENCE_MS 61.0

static const board known[] = {
    {"pi3b+", DESIGN_CORE_REFERENCE_MS / 0.1, 0.1},
    {"pi4b", DESIGN_CORE_REFERENCE_MS / 0.15, 0.15},
};

const board *boards_find(const char *name) {
  for (size_t i = 0; name && i < sizeof known / sizeof known[0]; i++)
    if (strcmp(known[i].name, name) == 0) return &known[i];
  return NULL;
}

const char *boards_names(void) { return "pi3b+, pi4b"; }

err_code boards_measure_core(int runs, double *core_ms, err *e) {
  Edgedi__V1__Image img;
  uint8_t *px = NULL;
  err_code rc = workload_sample_image(BOARDS_IMAGE_SIDE_PX, BOARDS_IMAGE_SIDE_PX, &img, &px, e);
  if (rc != ERR_OK) return rc;
  rc = baseline_measure_cpu(BOARDS_REFERENCE_MODEL, &img, runs, true, core_ms, e);
  free(px);
  return rc;
}

double boards_speed(const board *b, double core_ms) { return core_ms / b->reference_ms; }

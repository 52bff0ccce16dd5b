/* handoff.c — the learned overhead per round trip (contract in handoff.h). */
#include "scheduler/handoff.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int find(const handoff *h, const char *model) {
  for (int i = 0; i < h->n; i++)
    if (strcmp(h->v[i].model, model) == 0) return i;
  return -1;
}

double handoff_ms(const handoff *h, const char *model) {
  if (!h || !model) return 0;
  int i = find(h, model);
  return i < 0 ? 0 : h->v[i].ms;
}

void handoff_note(handoff *h, const char *model, double predicted_ms, double measured_ms,
                  int round_trips) {
  if (!h || !model || !model[0] || round_trips < 1 || !isfinite(predicted_ms) ||
      !isfinite(measured_ms) || predicted_ms < 0 || measured_ms < 0)
    return;
  int i = find(h, model);
  if (i < 0) {
    if (h->n < HANDOFF_MODELS) i = h->n++;
    else i = h->next, h->next = (h->next + 1) % HANDOFF_MODELS;
    memset(&h->v[i], 0, sizeof h->v[i]);
    snprintf(h->v[i].model, sizeof h->v[i].model, "%s", model);
  }
  handoff_entry *x = &h->v[i];
  double step = HANDOFF_GAIN * (measured_ms - predicted_ms) / round_trips;
  x->ms = fmin(fmax(x->ms + step, 0.0), HANDOFF_MAX_MS);
}

/* handoff.h — what an exchange costs beyond the link the planner prices,
 * learned per model from the requests themselves.
 *
 * Why: the planner prices a job's round trip (its link, refitted) and an
 * FE exchange's (the probe), but an exchange is a barrier: the boards
 * reach it apart (their bursts' times spread, and an emulated board's
 * spread is its CPU's stretched), and the scheduler relays it in
 * software. On the demo's boards that left every multi-board plan
 * predicted 1-15 % under its measured latency (docs/adaptive.md), so the
 * exact planner split models that run faster on one board. Each finished
 * request that ran alone on the cluster moves its model's overhead per
 * round trip a step toward what would have closed its gap:
 *     ms += HANDOFF_GAIN * (measured - predicted) / round_trips,
 * kept in [0, HANDOFF_MAX_MS]; the cluster adds it to every member's job
 * and FE round trips when it hands devices to the planner (cluster.h), so
 * a plan's price grows by ms * plan_round_trips and a plan with fewer
 * exchanges gains. A request sharing the cluster with others waits for
 * them, and one whose agents prepared a strip pays for that
 * (TileResult.fresh_strip); neither is an exchange's cost: callers note
 * only lone requests that ran on prepared strips.
 *
 * Plain data; the caller locks. */
#ifndef EDGEDI_SCHEDULER_HANDOFF_H
#define EDGEDI_SCHEDULER_HANDOFF_H

enum { HANDOFF_MODELS = 32, HANDOFF_NAME_BYTES = 64 };
#define HANDOFF_GAIN 0.3    /* a few requests to settle, one outlier moves it little */
#define HANDOFF_MAX_MS 20.0 /* no exchange costs more: beyond is something else */

typedef struct handoff_entry {
  char model[HANDOFF_NAME_BYTES];
  double ms; /* per round trip, added to the priced one */
} handoff_entry;

typedef struct handoff {
  handoff_entry v[HANDOFF_MODELS];
  int n, next; /* next: the entry to reuse when full */
} handoff;

/* The model's overhead per round trip (0: none learned). */
double handoff_ms(const handoff *h, const char *model);

/* One lone request of `model`, planned at predicted_ms with the current
 * overhead priced in, measured end to end at measured_ms, with
 * round_trips round trips on its priced path (plan_round_trips). Non-finite
 * or negative times, or no round trips, change nothing. */
void handoff_note(handoff *h, const char *model, double predicted_ms, double measured_ms,
                  int round_trips);

#endif

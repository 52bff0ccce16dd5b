/* plan.h — the planner interface: how one request's model is split over the
 * cluster.
 *
 * A plan cuts the spatial part of a model (layers [0, head_first)) into
 * segments at cuts (model_is_cut) and gives each segment's output rows to
 * devices as contiguous strips, top to bottom in device order. Layers from
 * head_first on (pooling + classifier) run on the scheduler. Each device
 * keeps its strip between segments: only halo rows and rows that change
 * owner move, relayed by the scheduler, and only the last segment's output
 * travels to the scheduler whole (DESIGN.md, "Data movement").
 *
 * Every planner fills the same plan; plan_evaluate() prices any plan with
 * the same cost model, so planners are compared on equal terms:
 *   device time in a segment = a * GFLOP (halo recomputation included)
 *     + b (fixed cost per job)
 *     + bytes over its link / bandwidth + one round trip per exchange
 *       (the segment's start, each feature-enhancement sum exchange whose
 *       sums cannot go out early: fe_moments.h; the others travel while
 *       the device computes the layers between, and cost nothing here).
 * A segment ends when its slowest device ends; the request's predicted
 * latency is the sum over segments plus sending the image and gathering the
 * output.
 *
 * Four planners, selectable by name (plan_find): "exact" (the default,
 * plan_default_name()), "heuristic" (the paper's), "proportional", "equal".
 * The exact planner's plan is never priced worse than the other three's for
 * the same input. Planning is cheap when the caller keeps the model's
 * plan_tables (plan_prepare, once per model) and passes them in
 * plan_options; without them each call builds its own.
 */
#ifndef EDGEDI_PLAN_H
#define EDGEDI_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/err.h"
#include "runtime/model.h"

enum {
  PLAN_MAX_DEVICES = 32,
  PLAN_NAME_BYTES = 64,
};

/* What the planner knows of a device: its cost model. */
typedef struct plan_device {
  char name[PLAN_NAME_BYTES];
  double ms_per_gflop;   /* a */
  double fixed_ms;       /* b, per job */
  double bandwidth_mbps; /* its link */
  double rtt_ms;         /* its link's round trip, per job */
  /* The round trip of one FE exchange (0: rtt_ms). Apart from rtt_ms, which
   * is refitted from a job's transfers: an FE exchange is a ping through
   * the scheduler, so it gets the probed round trip (cluster.c). */
  double fe_rtt_ms;
} plan_device;

typedef struct plan_part {
  int device;       /* index into the devices given to the planner */
  model_rows out;   /* rows of the segment's last layer */
  model_rows in;    /* rows of the segment's input tensor it computes from */
  double gflop;      /* FLOP equivalents when the tables carry layer costs */
  uint64_t bytes_in, bytes_out;
  double compute_ms, transfer_ms; /* predicted */
} plan_part;

typedef struct plan_segment {
  int first, end;   /* layer range */
  int n_parts;      /* devices with at least one row, in row order */
  plan_part parts[PLAN_MAX_DEVICES];
  int fe_exchanges; /* FE sum exchanges its jobs wait for */
  int fe_early;     /* FE sum exchanges sent early (not waited for) */
  double predicted_ms;
} plan_segment;

typedef struct plan {
  char planner[16];
  bool fe_late; /* priced (and to be run) with every FE's sums at the FE */
  int head_first;
  int n_segments;
  plan_segment *segments;
  double predicted_ms;
  uint64_t bytes_moved;      /* predicted: everything over the links */
  uint64_t bytes_gather_all; /* the same plan if every segment gathered and re-scattered whole maps */
} plan;

/* Per-model tables that make planning cheap (receptive fields and FLOPs of
 * every candidate segment as functions of a strip's edges). Immutable once
 * built: one may serve any number of threads. */
typedef struct plan_tables plan_tables;

typedef struct plan_options {
  int input_bytes_per_pixel; /* the image as sent: 1 for uint8 camera pixels */
  int input_channels;        /* channels of the image as sent (1 gray, 3) */
  /* plan_prepare() of the model being planned (or of any model with the
   * same geometry), or NULL: the planner then builds them for the call. */
  const plan_tables *tables;
  /* Bytes on the wire per byte of each layer's output, by layer index
   * (rows travel zero-masked, runtime/rowcodec.h, so a ReLU's output moves
   * about half its floats' bytes), each in [PLAN_MIN_WIRE_DENSITY, 1]; NULL:
   * 1 each (raw floats). The graph input travels as the image is sent. */
  const double *wire_density;
  /* Every FE's sums at the FE itself (false: early where the segment holds
   * the FE's chain, fe_moments.h, the default). */
  bool fe_late;
} plan_options;

#define PLAN_MIN_WIRE_DENSITY (1.0 / 32) /* the zero mask alone */

plan_options plan_default_options(void);

/* Builds the tables of m (finalized, with spatial layers). ERR_UNSUPPORTED
 * when m has nothing to split, ERR_NOMEM. Free with plan_tables_destroy. */
err_code plan_prepare(const model *m, plan_tables **out, err *e);
/* The same, with what each layer costs per FLOP on real hardware relative
 * to the model's mean (layer_cost: m->n_layers finite values >= 0, e.g.
 * from layer_cost_measure; NULL: 1 each). Every planner given these tables
 * prices work in FLOP equivalents: a strip's "gflop" is then its FLOPs
 * weighted by its layers' costs, and a device's ms_per_gflop is per such
 * GFLOP. ERR_INVALID for a nonsense weight. */
err_code plan_prepare_weighted(const model *m, const double *layer_cost, plan_tables **out,
                               err *e);
void plan_tables_destroy(plan_tables *t);
/* Bytes the tables take. */
size_t plan_tables_bytes(const plan_tables *t);

/* The first layer of the head: the earliest cut after which no layer is
 * spatial (FC, GAP, FLATTEN and what follows them run on the scheduler). */
int plan_head_first(const model *m);

/* FE layers of [first, end) whose sums a job waits for (all with late,
 * else those that cannot go out early: fe_moments_chain() is 0). */
int plan_fe_waited(const model *m, int first, int end, bool late);

/* FE exchanges a job of a segment with n_parts jobs waits for: one per
 * waited-for FE layer, none when it is the only one (it makes its FE scales
 * itself, TileJob.fe_local). Each costs the device's plan_fe_rtt, and every
 * job its own rtt_ms besides. */
static inline int plan_fe_trips(int fe_exchanges, int n_parts) {
  return n_parts > 1 ? fe_exchanges : 0;
}
static inline double plan_fe_rtt(const plan_device *d) {
  return d->fe_rtt_ms > 0 ? d->fe_rtt_ms : d->rtt_ms;
}
/* The round trips of such a job, ms: its own and its FE exchanges'. */
static inline double plan_trips_ms(const plan_device *d, int fe_exchanges, int n_parts) {
  return d->rtt_ms + plan_fe_rtt(d) * plan_fe_trips(fe_exchanges, n_parts);
}

/* Round trips on a priced plan's path: per segment, a job's own and its FE
 * exchanges' (what plan_trips_ms prices; handoff.h adds to each). */
int plan_round_trips(const plan *p);

/* Prices `p` (segments and parts filled, numbers not) with the cost model:
 * fills rows in, GFLOP, bytes, predicted times. With o->tables of m's
 * geometry it reads the receptive fields from them (the same rows, to the
 * bit, as model_strip_rows gives: the tests hold them to it); tables of
 * another model are ignored here. */
err_code plan_evaluate(const model *m, const plan_device *devs, int n_devs,
                       const plan_options *o, plan *p, err *e);

/* Planners. Each fills *p (free with plan_free). Every one first rejects
 * what cannot be planned: a cost model with a negative, zero (speed,
 * bandwidth), NaN or infinite value (ERR_INVALID, naming the device), no
 * device (ERR_UNAVAILABLE), more than PLAN_MAX_DEVICES, nonsense options or
 * tables of another model (ERR_INVALID), a model with nothing to split
 * (ERR_UNSUPPORTED). */
typedef err_code (*plan_fn)(const model *m, const plan_device *devs,
                            int n_devs, const plan_options *o, plan *p,
                            err *e);

/* Segments end at every pooling layer; rows split in proportion to each
 * device's speed 1/a (the capacity-proportional split of EdgeLD/MoDNN). */
err_code plan_proportional(const model *m, const plan_device *devs, int n_devs,
                           const plan_options *o, plan *p, err *e);
/* Same segments, equal rows per device. */
err_code plan_equal(const model *m, const plan_device *devs, int n_devs,
                    const plan_options *o, plan *p, err *e);
/* The paper's: the proportional plan, then one row at a time moves from the
 * slowest device of a segment to its fastest (by predicted time) while the
 * predicted latency keeps shrinking. Never worse than plan_proportional. */
err_code plan_heuristic(const model *m, const plan_device *devs, int n_devs,
                        const plan_options *o, plan *p, err *e);
/* Segment boundaries by dynamic programming over the cuts, each segment's
 * row split of minimal predicted time given its neighbours (devices, their
 * order, who is left out), then a local search with plan_evaluate's prices
 * (a bounded amount of work: a few hundred microseconds for 8 devices with
 * cached tables); never priced worse than the three planners above for the
 * same input. */
err_code plan_exact(const model *m, const plan_device *devs, int n_devs,
                    const plan_options *o, plan *p, err *e);

/* The planner registered under `name` (see plan_names), or NULL. */
plan_fn plan_find(const char *name);
/* The registered names, NULL-terminated, the default first. */
const char *const *plan_names(void);
/* The default planner's name: "exact". */
const char *plan_default_name(void);

void plan_free(plan *p);

#endif

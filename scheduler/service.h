/* service.h — the Scheduler gRPC service: the database, the models, the
 * cluster of agents and the five handlers, as one object a program (or a
 * test) starts and stops.
 *
 * Handlers (proto/edgedi.proto, service Scheduler), each call on its own
 * thread (rpc.h), so requests run concurrently:
 *   Infer          one inference over the cluster (infer.h);
 *   RegisterAgent  an agent joins, is profiled, then used (cluster.h);
 *   ListDevices    every device ever registered, its state and current
 *                  cost model, as the database has them;
 *   Plan           the split Infer would use now (uint8 gray input, as a
 *                  camera sends), with predicted times, without running;
 *                  single_device_ms is the fastest up device's predicted
 *                  compute for the whole model (a * GFLOP + b);
 *   LoadModel      build and keep a model (models.h), then push it to the
 *                  agents that are up (best effort: a request loads it
 *                  anyway before using an agent).
 * Malformed requests are answered INVALID_ARGUMENT by the rpc layer,
 * oversized ones RESOURCE_EXHAUSTED. No handler error stops the service.
 *
 * Start: the database is opened (created when absent; a file that is not
 * an EdgeDI database is refused), devices come back down, cost models
 * stay, models are rebuilt, then the --models preload (names already known
 * are kept as they are), then the port is bound and served.
 * Stop (service_destroy): requests in flight fail UNAVAILABLE "the
 * scheduler is shutting down", agents' streams end, handlers return, every
 * device is left down, the database is closed.
 */
#ifndef EDGEDI_SERVICE_H
#define EDGEDI_SERVICE_H

#include <stdbool.h>

#include "runtime/err.h"
#include "scheduler/infer.h"

#define SERVICE_DEFAULT_LISTEN "127.0.0.1:7000"
#define SERVICE_DEFAULT_MODELS "vgg16c,resnet18c"

enum {
  /* Handlers in flight get this long to finish when the service stops
   * (requests are failed first, so they return at once). */
  SERVICE_SHUTDOWN_GRACE_MS = 2000,
};

typedef struct service_config {
  const char *listen;    /* NULL: SERVICE_DEFAULT_LISTEN; port 0: any free */
  const char *db_path;   /* NULL: STORE_DEFAULT_PATH */
  const char *planner;   /* NULL: INFER_DEFAULT_PLANNER; must exist */
  int deadline_ms;       /* per request, when it names none; 0: default */
  int max_message_bytes; /* both directions, clients and agents; 0: default */
  const char *models;    /* comma-separated zoo names to preload; NULL: none */
  int head_threads;      /* head executor threads; <= 1: one */
  /* Plan by FLOPs alone instead of each layer's measured cost
   * (layer_cost.h): loads models faster, plans worse. */
  bool flops_only;
  /* Split every request, even when the cluster is saturated (infer.h,
   * "Load-aware planning"). */
  bool split_always;
  /* A request reuses a recent plan of its model unless its fresh plan is
   * predicted faster by more than this fraction (plan_recall.h); 0:
   * PLAN_RECALL_DEFAULT_GAIN. no_reuse: every request runs its fresh plan. */
  double reuse_gain;
  bool no_reuse;
  /* Every FE's sums at the FE itself, not early where they can be
   * (runtime/fe_moments.h): for comparisons. */
  bool fe_late;
  /* > 0: a request re-plans without an agent this many times later than
   * predicted (infer.h, "Stragglers"); 0: off. */
  double straggler_factor;
  /* What a request does when it loses an agent (infer.h, "Agent loss");
   * 0: INFER_ON_LOSS_AUTO. */
  infer_on_loss on_loss;
  int stuck_floor_ms;    /* least silence that marks an agent stuck; 0: default */
  void (*log)(void *ctx, const char *msg); /* agent events; NULL: silent */
  void *log_ctx;
} service_config;

typedef struct service service;

/* Builds everything and starts serving. ERR_CORRUPT / ERR_UNSUPPORTED for
 * a database file that is not one of ours, ERR_INVALID for a bad config
 * (unknown planner or preload name), ERR_IO / ERR_UNAVAILABLE for a port
 * that cannot be bound. */
err_code service_create(const service_config *cfg, service **out, err *e);

/* The bound port (useful with port 0). */
int service_port(const service *s);

/* What start-up found: "2 models restored from the database; serving:
 * a, b" (and what was skipped, why). Never NULL. */
const char *service_start_note(const service *s);

void service_destroy(service *s);

/* Switches the loss policy of the requests that start from now on. */
void service_set_on_loss(service *s, infer_on_loss p);

/* What the service runs on, for in-process tests and tools: valid until
 * service_destroy. */
struct cluster;
struct store;
struct cluster *service_cluster(const service *s);
struct store *service_store(const service *s);

#endif

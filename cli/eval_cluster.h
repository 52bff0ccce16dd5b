/* eval_cluster.h — `edgedi eval --scheduler ADDR`: the labelled folder
 * through a running EdgeDI cluster, held to the single-device results.
 *
 * DESIGN.md's exactness contract says a distributed inference returns the
 * logits one device computes for the same model, to 1e-4 of the largest.
 * This sends the ONNX file to the scheduler (LoadModel, by bytes: the same
 * name always means the same digest), then every image of the folder, as
 * a camera would send it (uint8 pixels), and compares each reply with the
 * logits computed on this device by evalset_run(). Nothing is printed.
 */
#ifndef EDGEDI_CLI_EVAL_CLUSTER_H
#define EDGEDI_CLI_EVAL_CLUSTER_H

#include "cli/evalset.h"
#include "runtime/err.h"

typedef struct eval_cluster_result {
  int equal;          /* images whose top-1 equals the single-device one */
  double max_rel;     /* largest |cluster - local| / max |local| */
  int worst;          /* the image with max_rel */
  double median_ms;   /* the scheduler's request latency */
  int max_devices;    /* most devices that computed part of one request */
  int split;          /* requests computed by two devices or more */
  char digest[72];    /* the model's digest on the scheduler */
} eval_cluster_result;

/* local: the single-device logits, s->n rows of k. The model is loaded
 * under `name`; planner NULL or "" leaves the choice to the scheduler. */
err_code eval_cluster_run(const char *address, const char *onnx_path,
                          const char *name, const char *planner,
                          const evalset *s,
                          const float *local, int k, eval_cluster_result *r,
                          err *e);

#endif

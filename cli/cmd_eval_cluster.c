/* cmd_eval_cluster.c — a labelled folder through a cluster (contract in
 * eval_cluster.h). One channel, one request at a time: the point is the
 * answers, not the throughput.
 */
#include "cli/eval_cluster.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "runtime/protocol.h"
#include "cli/files.h"
#include "runtime/stats.h"

enum { EVAL_CLUSTER_MAX_ONNX_BYTES = 64 << 20 };

static err_code load(rpc_channel *ch, const char *onnx_path, const char *name,
                     eval_cluster_result *r, err *e) {
  uint8_t *bytes = NULL;
  size_t len = 0;
  err_code rc = files_read_all(onnx_path, EVAL_CLUSTER_MAX_ONNX_BYTES, &bytes, &len, e);
  if (rc != ERR_OK) return rc;
  Edgedi__V1__ModelSpec spec = EDGEDI__V1__MODEL_SPEC__INIT;
  spec.name = (char *)name;
  spec.zoo = "";
  spec.onnx = (ProtobufCBinaryData){.len = len, .data = bytes};
  Edgedi__V1__LoadModelReply *reply = NULL;
  if (client_load_model(ch, &spec, &reply, e) != GRPC_STATUS_OK) {
    rc = e->code ? e->code : ERR_UNAVAILABLE;
    err_wrap(e, "loading %s as '%s'", onnx_path, name);
  } else {
    snprintf(r->digest, sizeof r->digest, "%s", reply->digest);
  }
  rpc_free((ProtobufCMessage *)reply);
  free(bytes);
  return rc;
}

err_code eval_cluster_run(const char *address, const char *onnx_path,
                          const char *name, const char *planner,
                          const evalset *s, const float *local, int k,
                          eval_cluster_result *r, err *e) {
  *r = (eval_cluster_result){0};
  rpc_channel *ch = NULL;
  err_code rc = client_connect(address, &ch, e);
  if (rc == ERR_OK) rc = load(ch, onnx_path, name, r, e);
  double *ms = malloc((size_t)s->n * sizeof *ms);
  if (rc == ERR_OK && !ms) rc = err_set(e, ERR_NOMEM, "out of memory");
  size_t per = (size_t)s->height * s->width * s->channels;
  for (int i = 0; rc == ERR_OK && i < s->n; i++) {
    Edgedi__V1__Image img = EDGEDI__V1__IMAGE__INIT;
    img.height = (uint32_t)s->height;
    img.width = (uint32_t)s->width;
    img.channels = (uint32_t)s->channels;
    img.u8 = (ProtobufCBinaryData){.len = per, .data = s->pixels + per * i};
    Edgedi__V1__InferRequest req = EDGEDI__V1__INFER_REQUEST__INIT;
    req.protocol_version = EDGEDI_PROTOCOL_VERSION;
    req.model = (char *)name;
    req.image = &img;
    req.planner = (char *)(planner ? planner : "");
    Edgedi__V1__InferReply *reply = NULL;
    if (client_infer(ch, &req, &reply, e) != GRPC_STATUS_OK) {
      rc = e->code ? e->code : ERR_UNAVAILABLE;
      err_wrap(e, "%s", s->files[i]);
    } else if ((int)reply->n_logits != k) {
      rc = err_set(e, ERR_SHAPE, "%s: the cluster answered %zu logits, this "
                   "device %d", s->files[i], reply->n_logits, k);
    } else {
      const float *y = local + (size_t)i * k;
      int tl = 0, tc = 0;
      double scale = 0, diff = 0;
      for (int j = 0; j < k; j++) {
        if (y[j] > y[tl]) tl = j;
        if (reply->logits[j] > reply->logits[tc]) tc = j;
        scale = fmax(scale, fabs(y[j]));
        diff = fmax(diff, fabs((double)y[j] - reply->logits[j]));
      }
      r->equal += tl == tc;
      double rel = diff / fmax(scale, 1e-12);
      if (rel > r->max_rel || i == 0) r->max_rel = rel, r->worst = i;
      ms[i] = reply->latency_ms;
      int used = 0;
      for (size_t d = 0; d < reply->n_devices; d++)
        used += reply->devices[d]->compute_ms > 0 || reply->devices[d]->rows > 0;
      if (used > r->max_devices) r->max_devices = used;
      r->split += used >= 2;
    }
    rpc_free((ProtobufCMessage *)reply);
  }
  if (rc == ERR_OK) r->median_ms = stats_median(ms, s->n);
  free(ms);
  rpc_channel_destroy(ch);
  return rc;
}

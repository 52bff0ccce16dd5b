/* infer_plan.c — what a request is checked and planned with: the wire
 * image, the planner choice, the split over the agents up now, its id and
 * its JSON record (contract in infer.h).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/infer.h"

err_code infer_image(const Edgedi__V1__Image *img, preprocess_image *out, err *e) {
  if (!img) return err_set(e, ERR_INVALID, "the request has no image");
  bool u8 = img->u8.len > 0, f32 = img->f32.len > 0;
  if (u8 == f32)
    return err_set(e, ERR_INVALID,
                   "the image must carry exactly one of u8 (camera pixels) or f32 "
                   "(floats); it has %s",
                   u8 ? "both" : "neither");
  if (img->row_lo != 0 || (img->full_height && img->full_height != img->height))
    return err_set(e, ERR_INVALID,
                   "the image holds rows [%u, %u) of %u; the scheduler needs the whole "
                   "picture",
                   img->row_lo, img->row_lo + img->height, img->full_height);
  if (img->height == 0 || img->width == 0 || img->channels == 0)
    return err_set(e, ERR_SHAPE, "the image is %u x %u with %u channels", img->height,
                   img->width, img->channels);
  const ProtobufCBinaryData *b = u8 ? &img->u8 : &img->f32;
  *out = preprocess_whole(u8 ? PREPROCESS_U8 : PREPROCESS_F32, b->data, (int)img->height,
                          (int)img->width, (int)img->channels);
  out->bytes = b->len; /* preprocess_check compares it with what the shape needs */
  return ERR_OK;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
  return h;
}

static uint64_t fnv_int(uint64_t h, int v) {
  int32_t x = v;
  return fnv(h, &x, sizeof x);
}

/* The split's identity: model, planner, segments, and who gets which rows. */
static uint64_t plan_id(const infer_plan *ip) {
  uint64_t h = 1469598103934665603ull;
  h = fnv(h, ip->model->digest, strlen(ip->model->digest));
  h = fnv(h, ip->planner, strlen(ip->planner) + 1);
  h = fnv_int(h, ip->p.head_first);
  for (int si = 0; si < ip->p.n_segments; si++) {
    const plan_segment *s = &ip->p.segments[si];
    h = fnv_int(fnv_int(h, s->first), s->end);
    for (int k = 0; k < s->n_parts; k++) {
      const char *name = ip->members[s->parts[k].device].dev.name;
      h = fnv(h, name, strlen(name) + 1);
      h = fnv_int(fnv_int(h, s->parts[k].out.lo), s->parts[k].out.hi);
    }
  }
  return h & 0x7fffffffffffffffull; /* stays positive wherever it is shown */
}

/* Whether member i has rows in some segment of the plan. */
static bool has_rows(const infer_plan *ip, int i) {
  for (int s = 0; s < ip->p.n_segments; s++)
    for (int k = 0; k < ip->p.segments[s].n_parts; k++)
      if (ip->p.segments[s].parts[k].device == i) return true;
  return false;
}

void infer_plan_hold(infer_plan *ip) {
  if (ip->held) return;
  for (int i = 0; i < ip->n_members; i++)
    if (has_rows(ip, i)) {
      cluster_agent_busy_add(ip->members[i].agent, 1, false);
      ip->counted |= 1u << i;
    }
  ip->held = true;
}

void infer_plan_done(const infer_ctx *c, infer_plan *ip) {
  if (!ip->counted) return;
  for (int i = 0; i < ip->n_members; i++)
    if (ip->counted & (1u << i)) cluster_agent_busy_add(ip->members[i].agent, -1, ip->single);
  ip->counted = 0;
  admit_wake(c->adm);
}

void infer_plan_free(const infer_ctx *c, infer_plan *ip) {
  if (!ip) return;
  infer_plan_done(c, ip);
  for (int i = 0; i < ip->n_members; i++) cluster_release(ip->members[i].agent);
  ip->held = false;
  ip->single = false;
  ip->n_members = 0;
  plan_free(&ip->p);
}

static void planner_names(char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (const char *const *n = plan_names(); *n && used < len; n++) {
    int w = snprintf(buf + used, len - used, "%s%s", n == plan_names() ? "" : ", ", *n);
    if (w < 0) break;
    used += (size_t)w;
  }
}

void infer_plan_devices(const infer_plan *ip, plan_device *devs, uint64_t *sessions) {
  for (int i = 0; i < ip->n_members; i++) {
    devs[i] = ip->members[i].dev;
    sessions[i] = ip->members[i].session;
  }
}

grpc_status_code infer_make_plan(const infer_ctx *c, const char *model_name,
                                 const char *planner_name, const plan_options *o,
                                 double admit_until_ms, infer_plan *out, err *e) {
  return infer_make_plan_excluding(c, model_name, planner_name, o, NULL, 0, admit_until_ms,
                                   out, e);
}

/* Drops the members in `exclude` (their references given back). */
static void exclude_members(infer_plan *ip, cluster_agent *const *exclude, int n_exclude) {
  int k = 0;
  for (int i = 0; i < ip->n_members; i++) {
    bool out = false;
    for (int j = 0; j < n_exclude && !out; j++) out = exclude[j] == ip->members[i].agent;
    if (out) cluster_release(ip->members[i].agent);
    else ip->members[k++] = ip->members[i];
  }
  ip->n_members = k;
}

/* admit_locked: splits the request over every member, counted busy on
 * each at once (1), unless a request runs whole on one of them or waits
 * to (0): the split would wait behind those at every exchange. */
static int count_split(void *ctx, int waiting) {
  infer_plan *ip = ctx;
  if (waiting > 0) return 0;
  for (int i = 0; i < ip->n_members; i++) {
    int singles = 0;
    cluster_agent_busy(ip->members[i].agent, &singles);
    if (singles > 0) return 0;
  }
  for (int i = 0; i < ip->n_members; i++) {
    cluster_agent_busy_add(ip->members[i].agent, 1, false);
    ip->counted |= 1u << i;
  }
  ip->held = true;
  return 1;
}

typedef struct single_pick {
  const infer_plan *ip;
  bool any_load; /* a plan only shown: every member may take it, however loaded */
} single_pick;

/* admit_try_fn: of the members that may take a whole run now, the one that
 * would finish it first (whole-model time x (requests on it + 1)), counted
 * busy at once: choosing and counting are one step, or requests planned at
 * the same moment all pick the same idle agent. */
static int take_single(void *ctx) {
  const single_pick *sp = ctx;
  const infer_plan *ip = sp->ip;
  int best = -1, alive = 0;
  double best_ms = INFINITY;
  for (int i = 0; i < ip->n_members; i++) {
    cluster_agent *a = ip->members[i].agent;
    int singles = 0, busy = cluster_agent_busy(a, &singles);
    if (!sp->any_load && !cluster_agent_alive(a, NULL, 0)) continue;
    alive++;
    if (!sp->any_load && (busy >= INFER_SINGLE_DEPTH || busy > singles)) continue;
    const plan_device *d = &ip->members[i].dev;
    double ms = (d->ms_per_gflop * ip->model->gflop + d->fixed_ms) * (busy + 1);
    if (ms < best_ms) best_ms = ms, best = i;
  }
  if (best >= 0) cluster_agent_busy_add(ip->members[best].agent, 1, true);
  return best >= 0 || alive > 0 ? best : ADMIT_GIVE_UP;
}

/* admit_locked, for a plan only shown: chosen at once among every member,
 * under the queue's lock like every other choice. */
static int take_now(void *ctx, int waiting) {
  (void)waiting;
  return take_single(ctx);
}

/* Load-aware planning (infer.h): when the cluster is saturated, keeps only
 * the member that would finish the whole model first, already counted
 * busy (the plan is held). 1 when it did, 0 when the request is split,
 * -1 (*e set) when no agent could take it before admit_until_ms. */
static int keep_one_member(const infer_ctx *c, infer_plan *ip, double admit_until_ms, err *e) {
  /* Every request since it arrived counts, this one too. */
  int others = admit_in_system(c->adm) - 1;
  if (c->split_always || ip->n_members < 2) return 0;
  if (others + 1 < ip->n_members && admit_locked(c->adm, count_split, ip)) return 0;
  int best;
  if (admit_until_ms > 0) {
    single_pick sp = {.ip = ip};
    double t0 = inflight_now_ms();
    best = admit_wait(c->adm, take_single, &sp, admit_until_ms);
    if (best == ADMIT_SHUT) {
      err_set(e, ERR_UNAVAILABLE, "the scheduler is shutting down");
      return -1;
    }
    if (best == ADMIT_GIVE_UP) {
      err_set(e, ERR_UNAVAILABLE, "no agent is up to run it: all %d went down while it waited",
              ip->n_members);
      return -1;
    }
    if (best < 0) {
      err_set(e, ERR_DEADLINE, "no agent free to run it within its deadline (waited %.0f ms)",
              inflight_now_ms() - t0);
      return -1;
    }
  } else {
    single_pick sp = {.ip = ip, .any_load = true};
    best = admit_locked(c->adm, take_now, &sp);
  }
  for (int i = 0; i < ip->n_members; i++)
    if (i != best) cluster_release(ip->members[i].agent);
  ip->members[0] = ip->members[best];
  ip->n_members = 1;
  ip->held = true;
  ip->single = true;
  ip->counted = 1u;
  return 1;
}

grpc_status_code infer_make_plan_excluding(const infer_ctx *c, const char *model_name,
                                           const char *planner_name, const plan_options *o,
                                           cluster_agent *const *exclude, int n_exclude,
                                           double admit_until_ms, infer_plan *out, err *e) {
  memset(out, 0, sizeof *out);
  if (!model_name || !model_name[0]) {
    err_set(e, ERR_INVALID, "the request names no model");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  out->model = models_find(c->ms, model_name);
  if (!out->model) {
    char names[ERR_MSG_BYTES / 2];
    models_names(c->ms, names, sizeof names);
    err_set(e, ERR_NOT_FOUND, "unknown model '%.64s'; loaded: %s", model_name, names);
    return GRPC_STATUS_NOT_FOUND;
  }
  const char *pn = planner_name && planner_name[0] ? planner_name
                   : c->default_planner        ? c->default_planner
                                               : INFER_DEFAULT_PLANNER;
  plan_fn fn = plan_find(pn);
  if (!fn) {
    char names[ERR_MSG_BYTES / 2];
    planner_names(names, sizeof names);
    err_set(e, ERR_INVALID, "unknown planner '%.64s'; known: %s", pn, names);
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  snprintf(out->planner, sizeof out->planner, "%s", pn);
  out->n_members = cluster_acquire_up(c->cl, out->model->name, out->members, PLAN_MAX_DEVICES);
  exclude_members(out, exclude, n_exclude);
  if (out->n_members == 0) {
    char who[ERR_MSG_BYTES / 2];
    cluster_describe(c->cl, who, sizeof who);
    err_set(e, ERR_UNAVAILABLE, "no agent is up to run '%s' (%s)", model_name, who);
    return GRPC_STATUS_UNAVAILABLE;
  }
  bool named = planner_name && planner_name[0];
  int one = named ? 0 : keep_one_member(c, out, admit_until_ms, e);
  if (one < 0) {
    err_wrap(e, "running '%s'", model_name);
    infer_plan_free(c, out);
    return e ? rpc_status_from_err(e->code) : GRPC_STATUS_UNAVAILABLE;
  }
  if (one) {
    /* One device: the exact planner fuses the whole model into as few
     * jobs as pay (one, as a rule), where the others cut at every pooling
     * layer; the name says why the request was not split. */
    snprintf(out->planner, sizeof out->planner, "%s", INFER_SINGLE_PLANNER);
    fn = plan_exact;
  }
  plan_device devs[PLAN_MAX_DEVICES];
  uint64_t sessions[PLAN_MAX_DEVICES];
  infer_plan_devices(out, devs, sessions);
  plan_options po = o ? *o : plan_default_options();
  po.fe_late = c->fe_late;
  /* The model's tables, built once at load: planning every request stays
   * well under a millisecond. */
  if (!po.tables) po.tables = out->model->tables;
  /* Today's densities, copied: requests refine them while others plan. */
  double *density = NULL;
  if (!po.wire_density) {
    density = malloc((size_t)out->model->m->n_layers * sizeof *density);
    if (density && models_wire_density(out->model, density)) po.wire_density = density;
  }
  err_code rc = fn(out->model->m, devs, out->n_members, &po, &out->p, e);
  if (rc != ERR_OK) {
    free(density);
    err_wrap(e, "planning '%s' with %s", model_name, pn);
    infer_plan_free(c, out);
    return rpc_status_from_err(rc);
  }
  if (c->recall)
    plan_recall_offer(c->recall, out->model->digest, out->planner, out->model->m, devs, sessions,
                      out->n_members, &po, &out->p);
  free(density);
  if (out->held && !out->single) { /* counted on every member: keep those with rows */
    for (int i = 0; i < out->n_members; i++)
      if ((out->counted & (1u << i)) && !has_rows(out, i)) {
        cluster_agent_busy_add(out->members[i].agent, -1, false);
        out->counted &= ~(1u << i);
      }
    admit_wake(c->adm);
  }
  out->plan_id = plan_id(out);
  return GRPC_STATUS_OK;
}

/* ---- JSON ----------------------------------------------------------------- */

typedef struct jbuf {
  char *s;
  size_t n, cap;
  bool failed;
} jbuf;

static void jprintf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jprintf(jbuf *b, const char *fmt, ...) {
  if (b->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (w < 0) {
      b->failed = true;
      return;
    }
    if (b->s && b->n + (size_t)w < b->cap) {
      b->n += (size_t)w;
      return;
    }
    size_t cap = (b->cap ? 2 * b->cap : 1024) + (size_t)w;
    char *s = realloc(b->s, cap);
    if (!s) {
      b->failed = true;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
}

/* A JSON string: names come from agents and may hold anything. */
static void jstr(jbuf *b, const char *s) {
  jprintf(b, "\"");
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') jprintf(b, "\\%c", ch);
    else if (ch < 0x20) jprintf(b, "\\u%04x", ch);
    else jprintf(b, "%c", ch);
  }
  jprintf(b, "\"");
}

char *infer_plan_json(const infer_plan *ip) {
  jbuf b = {0};
  jprintf(&b, "{\"planner\":");
  jstr(&b, ip->planner);
  jprintf(&b, ",\"model_digest\":\"%s\",\"plan_id\":%llu,\"head_first\":%d,"
              "\"predicted_ms\":%.3f,\"bytes_moved\":%llu,\"bytes_gather_all\":%llu,"
              "\"segments\":[",
          ip->model->digest, (unsigned long long)ip->plan_id, ip->p.head_first,
          ip->p.predicted_ms, (unsigned long long)ip->p.bytes_moved,
          (unsigned long long)ip->p.bytes_gather_all);
  for (int si = 0; si < ip->p.n_segments; si++) {
    const plan_segment *s = &ip->p.segments[si];
    jprintf(&b, "%s{\"first\":%d,\"end\":%d,\"predicted_ms\":%.3f,\"parts\":[", si ? "," : "",
            s->first, s->end, s->predicted_ms);
    for (int k = 0; k < s->n_parts; k++) {
      const plan_part *pt = &s->parts[k];
      jprintf(&b, "%s{\"device\":", k ? "," : "");
      jstr(&b, ip->members[pt->device].dev.name);
      jprintf(&b, ",\"rows\":[%d,%d],\"in_rows\":[%d,%d],\"gflop\":%.6f,"
                  "\"compute_ms\":%.3f,\"transfer_ms\":%.3f}",
              pt->out.lo, pt->out.hi, pt->in.lo, pt->in.hi, pt->gflop, pt->compute_ms,
              pt->transfer_ms);
    }
    jprintf(&b, "]}");
  }
  jprintf(&b, "]}");
  if (b.failed) {
    free(b.s);
    return NULL;
  }
  return b.s;
}

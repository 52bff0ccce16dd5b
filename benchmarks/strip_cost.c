/* strip_cost.c — what cutting a layer range into strips costs in work:
 * thread CPU time of each stage of a model run whole, against the same
 * stage run as the strips of a split (one per device, rows in proportion
 * to --shares), on one core, on XNNPACK as the emulated boards run it.
 *
 *   bazel run -c opt //benchmarks:strip_cost -- [--models a,b] [--shares LIST]
 *       [--runs N] [--idle-factor F] [--json]
 *
 * Each cut-to-cut range (one layer of a chain, one residual block) is
 * timed on its own (a range without FLOPs counts with the one before), so
 * that no halo row is computed twice: what is left is what strips cost
 * beyond their FLOPs. The figures:
 *  - shared: the strips one after the other on one executor, as one agent
 *    runs the parts of a strip that sends its edge rows first (tile.h):
 *    XNNPACK's operators are set up again for every change of size;
 *  - own: each strip on an executor of its own, as on its own device:
 *    smaller GEMMs, and the rows each strip reads beyond its own;
 *  - cold: as own, with this machine's caches swept before each strip:
 *    plus the weights each device reads for its strip alone;
 *  - idle: as own, the thread asleep after each strip for --idle-factor
 *    times its CPU time, as an emulated board sleeps out its stretch
 *    (speed 1 / (1 + factor)): what the host's idle core costs the next
 *    burst (caches and TLBs refilled, clock ramped up, a vCPU rescheduled);
 *  - spin: as idle, but waiting busy instead of asleep;
 *  - whole idle: each range whole after the same sleep;
 *    idle_vs_whole_idle is the strips' cost over it, both begun cold. (The
 *    baseline beside each cluster request, baseline_pool.h, is the model
 *    whole in one run after a sleep: it begins cold once.)
 * On the emulated cluster a board's bursts follow its sleeps, so its
 * tiles' CPU per FLOP (benchmarks/cluster.c, cpu_x) lies near the idle
 * figure. Rows show the ranges summed by the height of their output (a
 * model's stages); each time is the fastest of --runs runs after a first
 * one. A range with fewer rows than strips leaves the last
 * strips out, as the planner does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/flags.h"
#include "runtime/fuse.h"
#include "runtime/model.h"
#include "runtime/stats.h"
#include "runtime/xexec.h"
#include "runtime/zoo.h"
#include "scheduler/plan.h"

enum { MAX_STRIPS = 16, MAX_RANGES = 512, SWEEP_BYTES = 96 << 20 };

typedef enum mode {
  MODE_WHOLE, MODE_SHARED, MODE_OWN, MODE_COLD, MODE_IDLE, MODE_SPIN, MODE_WHOLE_IDLE, MODE_COUNT
} mode;

typedef struct opts {
  char models[256];
  double shares[MAX_STRIPS];
  int n_strips, runs;
  double idle_factor;
  bool json;
} opts;

/* A range, or a stage of them. */
typedef struct range_cost {
  int first, end, rows;
  double ms[MODE_COUNT];
  double gflop;
} range_cost;

/* Evicts this core's caches (and most of the shared one) before a strip. */
static void sweep_caches(void) {
  static volatile unsigned char *buf;
  if (!buf) buf = calloc(SWEEP_BYTES, 1);
  if (!buf) return;
  for (size_t i = 0; i < SWEEP_BYTES; i += 64) buf[i]++;
}

/* Waits ms milliseconds: asleep, or busy reading the clock. */
static void wait_ms(double ms, bool busy) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  long long end = (long long)t.tv_sec * 1000000000LL + t.tv_nsec + (long long)(ms * 1e6);
  if (!busy) {
    struct timespec d = {.tv_sec = (time_t)(end / 1000000000LL),
                         .tv_nsec = (long)(end % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d, NULL) == EINTR) {
    }
    return;
  }
  do clock_gettime(CLOCK_MONOTONIC, &t);
  while ((long long)t.tv_sec * 1000000000LL + t.tv_nsec < end);
}

/* Strip k's output rows of a range of `rows` rows split by the shares
 * (empty when rounding leaves it none). */
static model_rows strip_rows(const opts *o, int rows, int k) {
  double total = 0, before = 0;
  for (int i = 0; i < o->n_strips; i++) total += o->shares[i];
  for (int i = 0; i < k; i++) before += o->shares[i];
  int lo = (int)(before / total * rows + 0.5);
  int hi = k == o->n_strips - 1 ? rows : (int)((before + o->shares[k]) / total * rows + 0.5);
  return (model_rows){lo, hi > lo ? hi : lo};
}

/* Thread CPU ms of one run of s to its end, each FE from the strip's own
 * sums (the scales' values do not change what the run costs). */
static err_code run_strip(xexec_strip *s, double *ms, err *e) {
  double t0 = stats_thread_cpu_ms();
  err_code rc = xexec_strip_run_local(s, e);
  *ms = stats_thread_cpu_ms() - t0;
  return rc;
}

static err_code make_strip(xexec *x, int first, int end, model_rows out, xexec_strip **s, err *e) {
  err_code rc = xexec_strip_create(x, first, end, out, s, e);
  if (rc != ERR_OK) return rc;
  const model *m = xexec_model(x);
  model_shape in = first == 0 ? m->input : model_tensor_shape(m, first - 1);
  model_rows r = xexec_strip_in_rows(*s);
  float *buf = xexec_strip_input(*s);
  for (size_t i = 0, n = (size_t)(r.hi - r.lo) * (size_t)in.w * (size_t)in.c; i < n; i++)
    buf[i] = (float)(i % 251) / 251.0f;
  return ERR_OK;
}

/* The range in mode md: *ms the fastest total of o->runs runs (after one
 * that prepares). x[k] is strip k's executor. */
static err_code time_range(const opts *o, xexec *const *x, const range_cost *r, mode md,
                           double *ms, err *e) {
  xexec_strip *s[MAX_STRIPS] = {0};
  bool whole = md == MODE_WHOLE || md == MODE_WHOLE_IDLE;
  int n = whole ? 1 : o->n_strips;
  err_code rc = ERR_OK;
  for (int k = 0; k < n && rc == ERR_OK; k++) {
    model_rows out = whole ? (model_rows){0, r->rows} : strip_rows(o, r->rows, k);
    if (out.hi > out.lo)
      rc = make_strip(x[md == MODE_SHARED ? 0 : k], r->first, r->end, out, &s[k], e);
  }
  *ms = 0;
  for (int run = 0; run <= o->runs && rc == ERR_OK; run++) {
    double total = 0;
    for (int k = 0; k < n && rc == ERR_OK; k++) {
      double t = 0;
      if (!s[k]) continue;
      if (md == MODE_COLD) sweep_caches();
      rc = run_strip(s[k], &t, e);
      if (md == MODE_IDLE || md == MODE_SPIN || md == MODE_WHOLE_IDLE)
        wait_ms(t * o->idle_factor, md == MODE_SPIN);
      total += t;
    }
    if (run == 1 || (run > 1 && total < *ms)) *ms = total;
  }
  for (int k = 0; k < n; k++) xexec_strip_destroy(s[k]);
  return rc;
}

/* m's spatial part as cut-to-cut ranges with FLOPs (one without joins the
 * range before it, or the one after at the start); their count. */
static int find_ranges(const model *m, range_cost *r, int cap) {
  int hf = plan_head_first(m), n = 0;
  for (int a = 0, b = 1; b <= hf; b++) {
    if (b < hf && !model_is_cut(m, b)) continue;
    bool flops = model_range_flops(m, a, b) > 0;
    if (n > 0 && (!flops || model_range_flops(m, r[n - 1].first, r[n - 1].end) <= 0))
      r[n - 1].end = b;
    else if (n < cap)
      r[n++] = (range_cost){.first = a, .end = b};
    a = b;
  }
  for (int i = 0; i < n; i++) {
    r[i].rows = model_tensor_shape(m, r[i].end - 1).h;
    r[i].gflop = model_range_flops(m, r[i].first, r[i].end) / 1e9;
  }
  return n;
}

static void print_row(const opts *o, const char *name, const char *what, const range_cost *c) {
  const double *t = c->ms, w = t[MODE_WHOLE] > 0 ? t[MODE_WHOLE] : 1e-9;
  if (o->json) {
    printf("{\"bench\":\"strip_cost\",\"model\":\"%s\",\"stage\":\"%s\",\"first\":%d,"
           "\"end\":%d,\"rows\":%d,\"strips\":%d,\"gflop\":%.4f,\"whole_ms\":%.3f,"
           "\"shared_ms\":%.3f,\"own_ms\":%.3f,\"cold_ms\":%.3f,\"idle_ms\":%.3f,"
           "\"spin_ms\":%.3f,\"shared_x\":%.3f,\"own_x\":%.3f,\"cold_x\":%.3f,"
           "\"idle_x\":%.3f,\"spin_x\":%.3f,\"whole_idle_ms\":%.3f,\"whole_idle_x\":%.3f,"
           "\"idle_vs_whole_idle\":%.3f,\"idle_factor\":%g}\n",
           name, what, c->first, c->end, c->rows, o->n_strips, c->gflop, t[MODE_WHOLE],
           t[MODE_SHARED], t[MODE_OWN], t[MODE_COLD], t[MODE_IDLE], t[MODE_SPIN],
           t[MODE_SHARED] / w, t[MODE_OWN] / w, t[MODE_COLD] / w, t[MODE_IDLE] / w,
           t[MODE_SPIN] / w, t[MODE_WHOLE_IDLE], t[MODE_WHOLE_IDLE] / w,
           t[MODE_WHOLE_IDLE] > 0 ? t[MODE_IDLE] / t[MODE_WHOLE_IDLE] : 0, o->idle_factor);
  } else {
    char range[32];
    snprintf(range, sizeof range, "[%d,%d)", c->first, c->end);
    printf("%-10s %-5s %-9s %4d %7.3f %9.2f", name, what, range, c->rows, c->gflop,
           t[MODE_WHOLE]);
    for (int md = MODE_SHARED; md < MODE_COUNT; md++) printf(" %9.2f %6.2fx", t[md], t[md] / w);
    printf(" %7.2fx\n", t[MODE_WHOLE_IDLE] > 0 ? t[MODE_IDLE] / t[MODE_WHOLE_IDLE] : 0);
  }
}

/* Adds r into the total *to. */
static void add_cost(range_cost *to, const range_cost *r) {
  for (int md = 0; md < MODE_COUNT; md++) to->ms[md] += r->ms[md];
  to->gflop += r->gflop;
  to->end = r->end;
}

static int measure(const opts *o, const char *name) {
  err e = {0};
  model *z = NULL, *m = NULL;
  xexec *x[MAX_STRIPS] = {0};
  range_cost *r = calloc(MAX_RANGES, sizeof *r);
  int status = 0;
  if (!r) goto fail;
  if (zoo_build(name, NULL, &z, &e) != ERR_OK || fuse_model(z, &m, &e) != ERR_OK) goto fail;
  for (int k = 0; k < o->n_strips; k++)
    if (xexec_create_ex(m, 1, XEXEC_CONV_XNNPACK, &x[k], &e) != ERR_OK) goto fail;
  int n = find_ranges(m, r, MAX_RANGES);
  range_cost stage = {0}, all = {.rows = n ? r[0].rows : 0};
  for (int i = 0, st = 0; i < n; i++) {
    for (int md = 0; md < MODE_COUNT; md++)
      if (time_range(o, x, &r[i], (mode)md, &r[i].ms[md], &e) != ERR_OK) goto fail;
    if (i == 0 || r[i].rows != stage.rows)
      stage = (range_cost){.first = r[i].first, .rows = r[i].rows};
    add_cost(&stage, &r[i]);
    if (i == n - 1 || r[i + 1].rows != stage.rows) {
      char what[16];
      snprintf(what, sizeof what, "%d", st++);
      print_row(o, name, what, &stage);
    }
    add_cost(&all, &r[i]);
  }
  if (n) print_row(o, name, "all", &all);
  goto done;
fail:
  fprintf(stderr, "strip_cost: %s: %s\n", name, e.msg[0] ? e.msg : "out of memory");
  status = 1;
done:
  for (int k = 0; k < o->n_strips; k++) xexec_destroy(x[k]);
  free(r);
  model_destroy(z);
  model_destroy(m);
  return status;
}

static bool parse_shares(const char *v, opts *o) {
  char buf[256];
  if (snprintf(buf, sizeof buf, "%s", v) >= (int)sizeof buf) return false;
  o->n_strips = 0;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (o->n_strips == MAX_STRIPS) return false;
    char *end = NULL;
    double s = strtod(t, &end);
    if (*end || !(s > 0 && s <= 1e6)) return false;
    o->shares[o->n_strips++] = s;
  }
  return o->n_strips >= 2;
}

int main(int argc, char **argv) {
  opts o = {.models = "vgg16,vgg16c,resnet18c", .runs = 5, .idle_factor = 30};
  parse_shares("0.1,0.1,0.15,0.15", &o); /* the demo's boards */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    bool ok = true;
    if (strcmp(a, "--json") == 0) {
      o.json = true;
      continue;
    }
    if (!v) ok = false;
    else if (strcmp(a, "--models") == 0)
      ok = snprintf(o.models, sizeof o.models, "%s", v) < (int)sizeof o.models;
    else if (strcmp(a, "--shares") == 0)
      ok = parse_shares(v, &o);
    else if (strcmp(a, "--runs") == 0)
      ok = flags_parse_int(v, 1, 1000, &o.runs);
    else if (strcmp(a, "--idle-factor") == 0)
      ok = flags_parse_double(v, 0, 1000, &o.idle_factor);
    else
      ok = false;
    if (!ok) {
      fprintf(stderr, "usage: strip_cost [--models a,b,...] [--shares s1,s2,...] (2 to %d, > 0) "
                      "[--runs N] [--idle-factor F] [--json]\n", MAX_STRIPS);
      return 2;
    }
    i++;
  }
  if (!o.json) {
    printf("strip_cost: thread CPU ms of each model's ranges whole and as %d strips (rows by",
           o.n_strips);
    for (int k = 0; k < o.n_strips; k++) printf("%s%g", k ? ":" : " ", o.shares[k]);
    printf("), summed by output height; XNNPACK, 1 thread, fastest of %d runs\n", o.runs);
    printf("%-10s %-5s %-9s %4s %7s %9s %9s %7s %9s %7s %9s %7s %9s %7s %9s %7s %9s %7s %8s\n",
           "model", "stage", "layers", "rows", "GFLOP", "whole_ms", "shared_ms", "x", "own_ms",
           "x", "cold_ms", "x", "idle_ms", "x", "spin_ms", "x", "w_idle_ms", "x", "idle/w_i");
  }
  int status = 0;
  char *save = NULL;
  for (char *name = strtok_r(o.models, ",", &save); name; name = strtok_r(NULL, ",", &save))
    status |= measure(&o, name);
  return status;
}

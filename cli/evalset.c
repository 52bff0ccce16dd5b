/* evalset.c — labelled image folders and accuracy runs (contract in
 * evalset.h).
 *
 * labels.csv is plain comma-separated text as Python's csv module writes
 * it for these names (no quoting needed, none accepted): a line is split
 * in place at the commas. Images go through cli/imagefile.h (stb_image),
 * the decoder `edgedi infer` and `edgedi run` use.
 */
#include "cli/evalset.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/imagefile.h"
#include "runtime/preprocess.h"
#include "runtime/stats.h"
#include "runtime/xexec.h"

enum { CSV_MAX_FIELDS = 64 };

/* Splits line (its end of line removed) at commas: fields[0..*n). */
static err_code csv_split(char *line, char **fields, int *n, const char *path,
                          int lineno, err *e) {
  line[strcspn(line, "\r\n")] = 0;
  if (strchr(line, '"'))
    return err_set(e, ERR_UNSUPPORTED, "%s:%d: quoted CSV fields are not "
                   "supported", path, lineno);
  *n = 0;
  for (char *p = line;;) {
    if (*n == CSV_MAX_FIELDS)
      return err_set(e, ERR_INVALID, "%s:%d: more than %d fields", path,
                     lineno, CSV_MAX_FIELDS);
    fields[(*n)++] = p;
    char *c = strchr(p, ',');
    if (!c) break;
    *c = 0;
    p = c + 1;
  }
  return ERR_OK;
}

/* Reads one line into buf; false at the end of the file. ERR_INVALID in
 * *rc for a line longer than the buffer. */
static bool csv_line(FILE *f, char *buf, const char *path, int lineno,
                     err_code *rc, err *e) {
  if (!fgets(buf, EVALSET_MAX_LINE_BYTES, f)) return false;
  if (!strchr(buf, '\n') && !feof(f)) {
    *rc = err_set(e, ERR_INVALID, "%s:%d: line longer than %d bytes", path,
                  lineno, EVALSET_MAX_LINE_BYTES - 1);
    return false;
  }
  return true;
}

static int csv_column(char **fields, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(fields[i], name) == 0) return i;
  return -1;
}

void evalset_destroy(evalset *s) {
  if (!s) return;
  free(s->files);
  free(s->classes);
  free(s->labels);
  free(s->pixels);
  free(s);
}

static err_code grow(evalset *s, int *cap, err *e) {
  if (s->n < *cap) return ERR_OK;
  if (*cap >= EVALSET_MAX_ITEMS)
    return err_set(e, ERR_INVALID, "more than %d images", EVALSET_MAX_ITEMS);
  int nc = *cap ? *cap * 2 : 256;
  void *f = realloc(s->files, (size_t)nc * sizeof *s->files);
  if (f) s->files = f;
  void *c = realloc(s->classes, (size_t)nc * sizeof *s->classes);
  if (c) s->classes = c;
  void *l = realloc(s->labels, (size_t)nc * sizeof *s->labels);
  if (l) s->labels = l;
  if (!f || !c || !l) return err_set(e, ERR_NOMEM, "out of memory");
  *cap = nc;
  return ERR_OK;
}

/* Reads labels.csv's rows of `split` into s (files, classes, labels). */
static err_code read_labels(const char *path, const char *split, evalset *s,
                            err *e) {
  FILE *f = fopen(path, "r");
  if (!f)
    return err_set(e, ERR_IO, "cannot open %s: %s", path, strerror(errno));
  char *line = malloc(EVALSET_MAX_LINE_BYTES);
  char *fields[CSV_MAX_FIELDS];
  int nf = 0, cap = 0, lineno = 1;
  err_code rc = line ? ERR_OK : err_set(e, ERR_NOMEM, "out of memory");
  int cf = -1, cc = -1, cl = -1, cs = -1;
  if (rc == ERR_OK && !csv_line(f, line, path, lineno, &rc, e) && rc == ERR_OK)
    rc = err_set(e, ERR_INVALID, "%s is empty", path);
  if (rc == ERR_OK) rc = csv_split(line, fields, &nf, path, lineno, e);
  if (rc == ERR_OK) {
    cf = csv_column(fields, nf, "file");
    cc = csv_column(fields, nf, "class");
    cl = csv_column(fields, nf, "label");
    cs = csv_column(fields, nf, "split");
    if (cf < 0 || cl < 0 || cs < 0)
      rc = err_set(e, ERR_INVALID, "%s: the header needs the columns file, "
                   "label and split (and may have class)", path);
  }
  bool all = strcmp(split, "all") == 0;
  while (rc == ERR_OK && csv_line(f, line, path, ++lineno, &rc, e)) {
    if (line[strspn(line, " \t\r\n")] == 0) continue;
    if ((rc = csv_split(line, fields, &nf, path, lineno, e)) != ERR_OK) break;
    int need = cf > cl ? cf : cl;
    if (cs > need) need = cs;
    if (cc > need) need = cc;
    if (nf <= need) {
      rc = err_set(e, ERR_INVALID, "%s:%d: %d fields, the header has more",
                   path, lineno, nf);
      break;
    }
    if (!all && strcmp(fields[cs], split) != 0) continue;
    char *end;
    errno = 0;
    long label = strtol(fields[cl], &end, 10);
    if (errno || end == fields[cl] || *end || label < 0 ||
        label > EVALSET_MAX_LABEL) {
      rc = err_set(e, ERR_INVALID, "%s:%d: label '%s' is not a class index "
                   "in 0..%d", path, lineno, fields[cl], EVALSET_MAX_LABEL);
      break;
    }
    if (strlen(fields[cf]) == 0 || strlen(fields[cf]) >= EVALSET_PATH_BYTES) {
      rc = err_set(e, ERR_INVALID, "%s:%d: file name empty or longer than %d "
                   "bytes", path, lineno, EVALSET_PATH_BYTES - 1);
      break;
    }
    if ((rc = grow(s, &cap, e)) != ERR_OK) break;
    snprintf(s->files[s->n], EVALSET_PATH_BYTES, "%s", fields[cf]);
    snprintf(s->classes[s->n], EVALSET_CLASS_BYTES, "%s",
             cc >= 0 ? fields[cc] : "");
    s->labels[s->n++] = (int)label;
  }
  free(line);
  fclose(f);
  return rc;
}

/* Decodes every item's image into s->pixels; all must have one size. */
static err_code read_images(const char *dir, evalset *s, err *e) {
  char path[2 * EVALSET_PATH_BYTES + 2];
  size_t per = 0;
  for (int i = 0; i < s->n; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, s->files[i]);
    imagefile im;
    err_code rc = imagefile_load(path, &im, e);
    if (rc != ERR_OK) return rc;
    if (i == 0) {
      s->height = im.height, s->width = im.width, s->channels = im.channels;
      per = im.bytes;
      s->pixels = malloc(per * (size_t)s->n);
      if (!s->pixels) rc = err_set(e, ERR_NOMEM, "out of memory for images");
    } else if (im.height != s->height || im.width != s->width ||
               im.channels != s->channels) {
      rc = err_set(e, ERR_SHAPE, "%s is %dx%dx%d, the first image %dx%dx%d",
                   path, im.height, im.width, im.channels, s->height,
                   s->width, s->channels);
    }
    if (rc == ERR_OK) memcpy(s->pixels + per * (size_t)i, im.data, per);
    imagefile_free(&im);
    if (rc != ERR_OK) return rc;
  }
  return ERR_OK;
}

err_code evalset_load(const char *dir, const char *split, evalset **out,
                      err *e) {
  *out = NULL;
  if (strcmp(split, "heldout") && strcmp(split, "train") &&
      strcmp(split, "all"))
    return err_set(e, ERR_INVALID, "unknown split '%s' (heldout, train or "
                   "all)", split);
  evalset *s = calloc(1, sizeof *s);
  if (!s) return err_set(e, ERR_NOMEM, "out of memory");
  char path[EVALSET_PATH_BYTES + 16];
  snprintf(path, sizeof path, "%s/labels.csv", dir);
  err_code rc = read_labels(path, split, s, e);
  if (rc == ERR_OK && s->n == 0)
    rc = err_set(e, ERR_NOT_FOUND, "%s names no image of the split '%s'",
                 path, split);
  if (rc == ERR_OK) rc = read_images(dir, s, e);
  if (rc != ERR_OK) {
    evalset_destroy(s);
    return rc;
  }
  *out = s;
  return ERR_OK;
}

err_code evalset_run(const evalset *s, const model *m,
                     const evalset_run_opts *o, evalset_result *r, err *e) {
  *r = (evalset_result){0};
  model_shape in = m->input;
  model_shape os = m->layers[m->n_layers - 1].out;
  int k = (int)model_shape_elems(os);
  r->outputs = k;
  size_t per = (size_t)s->height * s->width * s->channels;
  for (int i = 0; i < s->n; i++)
    if (s->labels[i] >= k)
      return err_set(e, ERR_SHAPE, "%s has label %d, the model has %d "
                     "outputs", s->files[i], s->labels[i], k);
  preprocess_image img0 = preprocess_whole(PREPROCESS_U8, s->pixels,
                                           s->height, s->width, s->channels);
  err_code rc = preprocess_check(&img0, in, e);
  if (rc != ERR_OK) return err_wrap(e, "%s", s->files[0]);
  /* The most wrong answers that still reach stop_below. */
  int max_wrong = s->n;
  if (o->stop_below >= 0)
    max_wrong = s->n - (int)ceil(o->stop_below * s->n - 1e-9);
  float *x = malloc(model_shape_elems(in) * sizeof *x);
  float *y = malloc((size_t)k * sizeof *y);
  double *ms = malloc((size_t)s->n * sizeof *ms);
  double *cpu = malloc((size_t)s->n * sizeof *cpu);
  xexec *xe = NULL;
  if (!x || !y || !ms || !cpu) rc = err_set(e, ERR_NOMEM, "out of memory");
  if (rc == ERR_OK) rc = xexec_create(m, o->threads, &xe, e);
  int wrong = 0;
  for (int i = 0; rc == ERR_OK && i < s->n; i++) {
    preprocess_image img = preprocess_whole(
        PREPROCESS_U8, s->pixels + per * (size_t)i, s->height, s->width,
        s->channels);
    rc = preprocess_rows(&img, in, (model_rows){0, in.h}, x, e);
    double t0 = stats_now_ms(), c0 = stats_thread_cpu_ms();
    if (rc == ERR_OK) rc = xexec_run(xe, x, y, e);
    if (rc != ERR_OK) {
      err_wrap(e, "%s", s->files[i]);
      break;
    }
    cpu[r->evaluated] = stats_thread_cpu_ms() - c0;
    ms[r->evaluated++] = stats_now_ms() - t0;
    int top = 0;
    for (int c = 1; c < k; c++)
      if (y[c] > y[top]) top = c;
    if (top == s->labels[i]) r->correct++;
    else wrong++;
    if (o->logits) memcpy(o->logits + (size_t)i * k, y, (size_t)k * sizeof *y);
    if (o->predictions) o->predictions[i] = top;
    if (wrong > max_wrong) {
      r->stopped_early = i + 1 < s->n;
      break;
    }
  }
  if (rc == ERR_OK) {
    r->accuracy = (double)(s->n - wrong) / s->n;
    if (!r->stopped_early) r->accuracy = (double)r->correct / s->n;
    r->median_ms = stats_median(ms, r->evaluated);
    r->median_cpu_ms = stats_median(cpu, r->evaluated);
  }
  xexec_destroy(xe);
  free(x);
  free(y);
  free(ms);
  free(cpu);
  return rc;
}

err_code evalset_csv_order(const evalset *s, const char *csv_path,
                           int *row_of, int *rows, err *e) {
  FILE *f = fopen(csv_path, "r");
  if (!f)
    return err_set(e, ERR_IO, "cannot open %s: %s", csv_path,
                   strerror(errno));
  char *line = malloc(EVALSET_MAX_LINE_BYTES);
  char *fields[CSV_MAX_FIELDS];
  int nf = 0, lineno = 1, cf = -1;
  err_code rc = line ? ERR_OK : err_set(e, ERR_NOMEM, "out of memory");
  for (int i = 0; i < s->n; i++) row_of[i] = -1;
  if (rc == ERR_OK && !csv_line(f, line, csv_path, lineno, &rc, e) &&
      rc == ERR_OK)
    rc = err_set(e, ERR_INVALID, "%s is empty", csv_path);
  if (rc == ERR_OK) rc = csv_split(line, fields, &nf, csv_path, lineno, e);
  if (rc == ERR_OK && (cf = csv_column(fields, nf, "file")) < 0)
    rc = err_set(e, ERR_INVALID, "%s: no `file` column", csv_path);
  *rows = 0;
  /* Items in labels.csv order usually match rows in order: try the next
   * item first, fall back to a scan. */
  int next = 0;
  while (rc == ERR_OK && csv_line(f, line, csv_path, ++lineno, &rc, e)) {
    if (line[strspn(line, " \t\r\n")] == 0) continue;
    if ((rc = csv_split(line, fields, &nf, csv_path, lineno, e)) != ERR_OK)
      break;
    if (nf > cf) {
      int hit = -1;
      if (next < s->n && strcmp(s->files[next], fields[cf]) == 0) hit = next;
      for (int i = 0; hit < 0 && i < s->n; i++)
        if (strcmp(s->files[i], fields[cf]) == 0) hit = i;
      if (hit >= 0 && row_of[hit] < 0) row_of[hit] = *rows;
      next = hit + 1;
    }
    (*rows)++;
  }
  for (int i = 0; rc == ERR_OK && i < s->n; i++)
    if (row_of[i] < 0)
      rc = err_set(e, ERR_NOT_FOUND, "%s has no row for %s", csv_path,
                   s->files[i]);
  free(line);
  fclose(f);
  return rc;
}

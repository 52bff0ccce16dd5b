/* prune_evalset_test.c — labelled image folders and accuracy runs
 * (cli/evalset.h), what `edgedi eval` and `edgedi prune` measure with.
 *
 * The model is chosen so every answer is known: global average pool, then
 * an FC whose logit 0 is the mean brightness (x / 255) and logit 1 the
 * constant 0.5, so a bright image is class 0 and a dark one class 1. The
 * folder is written here, with every defect the loader must name.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "cli/evalset.h"
#include "runtime/model.h"

static char root[512];

static void write_file(const char *rel, const void *data, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  FILE *f = fopen(path, "wb");
  if (!f) fail_msg("cannot write %s", path);
  fwrite(data, 1, n, f);
  fclose(f);
}

static void write_text(const char *rel, const char *text) {
  write_file(rel, text, strlen(text));
}

static void write_pgm(const char *rel, int h, int w, uint8_t value) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "P5\n%d %d\n255\n", w, h);
  for (int i = 0; i < h * w; i++) buf[n + i] = (char)value;
  write_file(rel, buf, (size_t)(n + h * w));
}

static int setup(void **state) {
  (void)state;
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(root, sizeof root, "%s/evalset", tmp ? tmp : "/tmp");
  mkdir(root, 0755);
  char images[600];
  snprintf(images, sizeof images, "%s/images", root);
  mkdir(images, 0755);
  write_pgm("images/bright.pgm", 4, 4, 200);
  write_pgm("images/dark.pgm", 4, 4, 50);
  write_pgm("images/big.pgm", 5, 4, 50);
  return 0;
}

/* labels.csv of the folder, then load. */
static err_code load(const char *labels, const char *split, evalset **s,
                     err *e) {
  write_text("labels.csv", labels);
  return evalset_load(root, split, s, e);
}

static model *brightness_model(int classes) {
  err e = {0};
  model *m = model_create("bright", (model_shape){4, 4, 3});
  int g = model_add_gap(m, MODEL_INPUT, &e);
  int fc = model_add_fc(m, g, classes, true, &e);
  if (fc < 0 || model_finalize(m, &e) != ERR_OK) fail_msg("%s", e.msg);
  model_layer *L = &m->layers[fc];
  for (int c = 0; c < 3; c++) L->weights[c] = 1.0f / 3;
  if (classes > 1) L->bias[1] = 0.5f;
  return m;
}

static const char *const good =
    "file,class,label,split\n"
    "images/dark.pgm,bright,0,heldout\n" /* wrong: dark is class 1 */
    "images/bright.pgm,bright,0,heldout\n"
    "images/dark.pgm,dark,1,heldout\n"
    "images/bright.pgm,bright,0,train\n";

static void test_load_and_run(void **state) {
  (void)state;
  evalset *s = NULL;
  err e = {0};
  if (load(good, "heldout", &s, &e) != ERR_OK) fail_msg("%s", e.msg);
  assert_int_equal(s->n, 3);
  assert_int_equal(s->height, 4);
  assert_int_equal(s->channels, 1);
  assert_string_equal(s->files[1], "images/bright.pgm");
  assert_string_equal(s->classes[2], "dark");
  assert_int_equal(s->labels[2], 1);
  model *m = brightness_model(2);
  float logits[6];
  int pred[3];
  evalset_result r;
  evalset_run_opts o = {.threads = 1, .stop_below = -1, .logits = logits,
                        .predictions = pred};
  if (evalset_run(s, m, &o, &r, &e) != ERR_OK) fail_msg("%s", e.msg);
  assert_int_equal(r.correct, 2);
  assert_int_equal(r.evaluated, 3);
  assert_false(r.stopped_early);
  assert_true(fabs(r.accuracy - 2.0 / 3) < 1e-12);
  assert_int_equal(r.outputs, 2);
  assert_true(r.median_ms >= 0);
  assert_true(fabsf(logits[2] - 200.0f / 255) < 1e-6f);
  assert_true(fabsf(logits[3] - 0.5f) < 1e-6f);
  assert_int_equal(pred[0], 1);
  assert_int_equal(pred[1], 0);
  assert_int_equal(pred[2], 1);

  /* The first answer is wrong: a floor of 0.9 is out of reach at once. */
  o = (evalset_run_opts){.threads = 1, .stop_below = 0.9};
  if (evalset_run(s, m, &o, &r, &e) != ERR_OK) fail_msg("%s", e.msg);
  assert_true(r.stopped_early);
  assert_int_equal(r.evaluated, 1);
  assert_true(r.accuracy < 0.9);
  /* 0.6 is reachable: everything runs. */
  o.stop_below = 0.6;
  if (evalset_run(s, m, &o, &r, &e) != ERR_OK) fail_msg("%s", e.msg);
  assert_false(r.stopped_early);
  assert_int_equal(r.evaluated, 3);
  evalset_destroy(s);

  if (load(good, "all", &s, &e) != ERR_OK) fail_msg("%s", e.msg);
  assert_int_equal(s->n, 4);
  evalset_destroy(s);
  if (load(good, "train", &s, &e) != ERR_OK) fail_msg("%s", e.msg);
  assert_int_equal(s->n, 1);
  evalset_destroy(s);
  model_destroy(m);
}

static void test_csv_order(void **state) {
  (void)state;
  evalset *s = NULL;
  err e = {0};
  if (load("file,label,split\r\n"
           "images/bright.pgm,0,heldout\r\n"
           "images/dark.pgm,1,heldout\r\n", "heldout", &s, &e) != ERR_OK)
    fail_msg("%s", e.msg);
  write_text("pred.csv", "file,pred\nimages/other.pgm,0\nimages/dark.pgm,1\n"
                         "images/bright.pgm,0\n");
  char path[1024];
  snprintf(path, sizeof path, "%s/pred.csv", root);
  int row_of[2], rows = 0;
  if (evalset_csv_order(s, path, row_of, &rows, &e) != ERR_OK)
    fail_msg("%s", e.msg);
  assert_int_equal(rows, 3);
  assert_int_equal(row_of[0], 2);
  assert_int_equal(row_of[1], 1);
  write_text("pred.csv", "file,pred\nimages/dark.pgm,1\n");
  assert_int_equal(evalset_csv_order(s, path, row_of, &rows, &e),
                   ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "no row for images/bright.pgm"));
  write_text("pred.csv", "name,pred\n");
  assert_int_equal(evalset_csv_order(s, path, row_of, &rows, &e),
                   ERR_INVALID);
  assert_non_null(strstr(e.msg, "no `file` column"));
  evalset_destroy(s);
}

static void expect_load_error(const char *labels, const char *split,
                              err_code want, const char *needle) {
  evalset *s = (evalset *)&s;
  err e = {0};
  err_code rc = load(labels, split, &s, &e);
  if (rc != want || !strstr(e.msg, needle))
    fail_msg("expected %s with '%s', got %s: %s", err_name(want), needle,
             err_name(rc), e.msg);
  assert_null(s);
}

static void test_bad_folders(void **state) {
  (void)state;
  expect_load_error(good, "valid", ERR_INVALID, "unknown split 'valid'");
  expect_load_error("file,class,split\nimages/dark.pgm,dark,heldout\n",
                    "heldout", ERR_INVALID, "needs the columns");
  expect_load_error("", "heldout", ERR_INVALID, "is empty");
  expect_load_error("file,label,split\nimages/dark.pgm,x,heldout\n",
                    "heldout", ERR_INVALID, "labels.csv:2: label 'x'");
  expect_load_error("file,label,split\nimages/dark.pgm,-1,heldout\n",
                    "heldout", ERR_INVALID, "label '-1'");
  expect_load_error("file,label,split\nimages/dark.pgm,1\n", "heldout",
                    ERR_INVALID, "labels.csv:2: 2 fields");
  expect_load_error("file,label,split\n\"images/dark.pgm\",1,heldout\n",
                    "heldout", ERR_UNSUPPORTED, "quoted");
  expect_load_error("file,label,split\nimages/dark.pgm,1,train\n", "heldout",
                    ERR_NOT_FOUND, "no image of the split 'heldout'");
  expect_load_error("file,label,split\nimages/none.pgm,1,heldout\n",
                    "heldout", ERR_IO, "images/none.pgm");
  expect_load_error("file,label,split\nimages/dark.pgm,1,heldout\n"
                    "images/big.pgm,1,heldout\n",
                    "heldout", ERR_SHAPE, "is 5x4x1, the first image 4x4x1");
  write_text("images/junk.pgm", "this is no image at all");
  expect_load_error("file,label,split\nimages/junk.pgm,1,heldout\n",
                    "heldout", ERR_CORRUPT, "junk.pgm");
  /* No labels.csv at all. */
  evalset *s = NULL;
  err e = {0};
  assert_int_equal(evalset_load("/nonexistent/folder", "heldout", &s, &e),
                   ERR_IO);
  assert_non_null(strstr(e.msg, "/nonexistent/folder/labels.csv"));
}

static void test_model_mismatch(void **state) {
  (void)state;
  evalset *s = NULL;
  err e = {0};
  if (load(good, "heldout", &s, &e) != ERR_OK) fail_msg("%s", e.msg);
  evalset_result r;
  evalset_run_opts o = {.threads = 1, .stop_below = -1};
  /* A label past the model's outputs. */
  model *one = brightness_model(1);
  assert_int_equal(evalset_run(s, one, &o, &r, &e), ERR_SHAPE);
  assert_non_null(strstr(e.msg, "label 1, the model has 1 outputs"));
  /* Images of another size than the model's input. */
  model *m = model_create("big", (model_shape){8, 8, 3});
  int g = model_add_gap(m, MODEL_INPUT, &e);
  model_add_fc(m, g, 2, true, &e);
  assert_int_equal(model_finalize(m, &e), ERR_OK);
  assert_int_equal(evalset_run(s, m, &o, &r, &e), ERR_SHAPE);
  assert_non_null(strstr(e.msg, "images/dark.pgm"));
  model_destroy(m);
  model_destroy(one);
  evalset_destroy(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_and_run),
      cmocka_unit_test(test_csv_order),
      cmocka_unit_test(test_bad_folders),
      cmocka_unit_test(test_model_mismatch),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}

/* cli_test.c — the edgedi tool's libraries on their own: child processes
 * (cli/procs.h) and image files (cli/imagefile.h).
 *
 * procs: a child's announce line is read, a silent or dying child gives
 * DEADLINE / UNAVAILABLE with its exit status, a missing program is
 * NOT_FOUND, SIGTERM stops a well-behaved child cleanly and SIGKILL one
 * that ignores it, and a child dies with the process that started it
 * (PR_SET_PDEATHSIG) — the property that keeps tests and `edgedi cluster`
 * from leaving orphans.
 * imagefile: PGM, PNG and BMP decode to the pixels written (gray stays one
 * channel, color is three, alpha is dropped), raw tensors must have exactly
 * their shape's bytes, a file that is no image is ERR_CORRUPT with a reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

#include "cli/imagefile.h"
#include "cli/timeline.h"
#include "cli/procs.h"

enum { PROMPT_MS = 5000 };

static char tmpdir[512];

static void check_ok(err_code rc, const err *e) {
  if (rc != ERR_OK) fail_msg("%s", e->msg);
}

static err_code spawn_sh(const char *script, procs_child *c, err *e) {
  const char *argv[] = {"/bin/sh", "-c", script, NULL};
  procs_spec spec = {.name = "sh", .path = "/bin/sh", .argv = argv};
  return procs_spawn(&spec, c, e);
}

/* ---- procs -------------------------------------------------------------------- */

static void test_announce_line_and_clean_stop(void **state) {
  (void)state;
  procs_child c;
  err e = {0};
  check_ok(spawn_sh("echo 'edgedi-x listening on 127.0.0.1:4242'; echo more; exec sleep 30", &c,
                    &e),
           &e);
  char line[PROCS_LINE_BYTES];
  check_ok(procs_read_line(&c, line, sizeof line, PROMPT_MS, &e), &e);
  assert_string_equal(line, "edgedi-x listening on 127.0.0.1:4242");
  check_ok(procs_read_line(&c, line, sizeof line, PROMPT_MS, &e), &e);
  assert_string_equal(line, "more");
  assert_true(procs_alive(&c));
  assert_int_equal(getpgid(c.pid), c.pid); /* its own process group */
  procs_stop_one(&c, PROMPT_MS);
  assert_true(c.reaped);
  assert_true(procs_exited_cleanly(&c)); /* our SIGTERM counts as clean */
  assert_int_equal(c.stdout_fd, -1);
  procs_stop_one(&c, PROMPT_MS); /* twice is fine */
}

static void test_silent_dying_and_missing_children(void **state) {
  (void)state;
  procs_child c;
  err e = {0};
  char line[PROCS_LINE_BYTES];
  check_ok(spawn_sh("exec sleep 30", &c, &e), &e);
  assert_int_equal(procs_read_line(&c, line, sizeof line, 200, &e), ERR_DEADLINE);
  assert_non_null(strstr(e.msg, "no full line"));
  procs_stop_one(&c, PROMPT_MS);

  check_ok(spawn_sh("printf partial; exit 3", &c, &e), &e);
  assert_int_equal(procs_read_line(&c, line, sizeof line, PROMPT_MS, &e), ERR_UNAVAILABLE);
  assert_non_null(strstr(e.msg, "exit 3"));
  assert_false(procs_exited_cleanly(&c));
  procs_stop_one(&c, PROMPT_MS);

  const char *argv[] = {"/nonexistent/program", NULL};
  procs_spec spec = {.name = "ghost", .path = "/nonexistent/program", .argv = argv};
  assert_int_equal(procs_spawn(&spec, &c, &e), ERR_NOT_FOUND);
  assert_non_null(strstr(e.msg, "/nonexistent/program"));

  /* A log file that cannot be opened is refused before anything starts. */
  const char *sh[] = {"/bin/sh", "-c", "true", NULL};
  spec = (procs_spec){.name = "sh", .path = "/bin/sh", .argv = sh,
                      .stderr_path = "/nonexistent/dir/x.log"};
  assert_int_equal(procs_spawn(&spec, &c, &e), ERR_IO);
}

static void test_stubborn_child_is_killed(void **state) {
  (void)state;
  procs_child c;
  err e = {0};
  check_ok(spawn_sh("trap '' TERM; echo ready; while :; do sleep 1; done", &c, &e), &e);
  char line[PROCS_LINE_BYTES];
  check_ok(procs_read_line(&c, line, sizeof line, PROMPT_MS, &e), &e);
  procs_stop_one(&c, 200);
  assert_true(c.reaped);
  assert_true(WIFSIGNALED(c.exit_status));
  assert_int_equal(WTERMSIG(c.exit_status), SIGKILL);
  assert_false(procs_exited_cleanly(&c));
  char how[64];
  procs_describe_exit(&c, how, sizeof how);
  assert_non_null(strstr(how, "killed by signal 9"));
}

static void test_wait_and_exit_status(void **state) {
  (void)state;
  procs_child c;
  err e = {0};
  check_ok(spawn_sh("exit 0", &c, &e), &e);
  check_ok(procs_wait(&c, PROMPT_MS, &e), &e);
  assert_true(procs_exited_cleanly(&c));
  procs_stop_one(&c, 0);
  check_ok(spawn_sh("exec sleep 30", &c, &e), &e);
  assert_int_equal(procs_wait(&c, 100, &e), ERR_DEADLINE);
  procs_stop_one(&c, PROMPT_MS);
}

/* true once pid is gone or a zombie nobody reaped yet. */
static bool dead(pid_t pid) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return true;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *close_paren = strrchr(buf, ')');
  return close_paren && close_paren[1] == ' ' && (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

static void test_children_die_with_their_parent(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t middle = fork();
  assert_true(middle >= 0);
  if (middle == 0) { /* a parent that dies without stopping its child */
    close(fds[0]);
    procs_child c;
    if (spawn_sh("exec sleep 30", &c, NULL) != ERR_OK) _exit(1);
    ssize_t w = write(fds[1], &c.pid, sizeof c.pid);
    _exit(w == sizeof c.pid ? 0 : 1);
  }
  close(fds[1]);
  pid_t grandchild = 0;
  assert_int_equal(read(fds[0], &grandchild, sizeof grandchild), (ssize_t)sizeof grandchild);
  close(fds[0]);
  int status = 0;
  assert_int_equal(waitpid(middle, &status, 0), middle);
  bool gone = false;
  for (int i = 0; i < PROMPT_MS / 10 && !gone; i++) {
    gone = dead(grandchild);
    if (!gone) usleep(10000);
  }
  if (!gone) kill(grandchild, SIGKILL);
  assert_true(gone);
}

static void test_stop_signals_set_the_flag(void **state) {
  (void)state;
  procs_catch_stop_signals();
  assert_false(procs_stop_requested());
  raise(SIGTERM); /* caught: the test goes on */
  assert_true(procs_stop_requested());
  procs_sleep_ms(10000); /* returns at once once a stop was requested */
}

/* ---- imagefile -------------------------------------------------------------- */

static void path_of(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

static void test_image_files_decode_to_their_pixels(void **state) {
  (void)state;
  enum { W = 5, H = 3 };
  uint8_t gray[W * H], rgba[W * H * 4];
  for (int i = 0; i < W * H; i++) {
    gray[i] = (uint8_t)(i * 17);
    for (int c = 0; c < 4; c++) rgba[i * 4 + c] = (uint8_t)(i * 13 + c * 50);
  }
  char pgm[600], png[600], bmp[600], rgba_png[600];
  path_of(pgm, sizeof pgm, "g.pgm");
  path_of(png, sizeof png, "g.png");
  path_of(bmp, sizeof bmp, "c.bmp");
  path_of(rgba_png, sizeof rgba_png, "c.png");
  char header[32];
  int hl = snprintf(header, sizeof header, "P5\n%d %d\n255\n", W, H);
  uint8_t pgm_bytes[64 + W * H];
  memcpy(pgm_bytes, header, (size_t)hl);
  memcpy(pgm_bytes + hl, gray, sizeof gray);
  write_file(pgm, pgm_bytes, (size_t)hl + sizeof gray);
  assert_true(stbi_write_png(png, W, H, 1, gray, W));
  assert_true(stbi_write_png(rgba_png, W, H, 4, rgba, W * 4));
  uint8_t rgb[W * H * 3];
  for (int i = 0; i < W * H; i++) memcpy(rgb + i * 3, rgba + i * 4, 3);
  assert_true(stbi_write_bmp(bmp, W, H, 3, rgb));

  err e = {0};
  imagefile im;
  const char *grays[] = {pgm, png};
  for (int k = 0; k < 2; k++) {
    check_ok(imagefile_load(grays[k], &im, &e), &e);
    assert_int_equal(im.height, H);
    assert_int_equal(im.width, W);
    assert_int_equal(im.channels, 1);
    assert_false(im.f32);
    assert_int_equal(im.bytes, sizeof gray);
    assert_memory_equal(im.data, gray, sizeof gray);
    Edgedi__V1__Image msg;
    imagefile_to_msg(&im, &msg);
    assert_int_equal(msg.channels, 1);
    assert_int_equal(msg.u8.len, sizeof gray);
    assert_int_equal(msg.f32.len, 0);
    imagefile_free(&im);
  }
  const char *colors[] = {bmp, rgba_png};
  for (int k = 0; k < 2; k++) {
    check_ok(imagefile_load(colors[k], &im, &e), &e);
    assert_int_equal(im.channels, 3); /* alpha dropped */
    assert_memory_equal(im.data, rgb, sizeof rgb);
    imagefile_free(&im);
  }
}

static void test_bad_image_files(void **state) {
  (void)state;
  char garbage[600], empty[600];
  path_of(garbage, sizeof garbage, "garbage.png");
  path_of(empty, sizeof empty, "empty.pgm");
  write_file(garbage, "definitely not an image", 23);
  write_file(empty, "", 0);
  err e = {0};
  imagefile im;
  assert_int_equal(imagefile_load(garbage, &im, &e), ERR_CORRUPT);
  assert_non_null(strstr(e.msg, "garbage.png"));
  assert_int_equal(imagefile_load(empty, &im, &e), ERR_CORRUPT);
  assert_int_equal(imagefile_load("/nonexistent/x.png", &im, &e), ERR_IO);
  assert_null(im.data);
}

/* A request's timeline as text: a row per device with spans, each column
 * the segment computed for a quarter of it or more, '.' otherwise, busy
 * time and share; the axis below. */
static void test_timeline_rows(void **state) {
  (void)state;
  store_device devs[3] = {{.id = 1}, {.id = 2}, {.id = 3}};
  snprintf(devs[0].name, sizeof devs[0].name, "pi-a");
  snprintf(devs[1].name, sizeof devs[1].name, "pi-b");
  snprintf(devs[2].name, sizeof devs[2].name, "idle-one");
  /* 100 ms over 10 columns of 10 ms. */
  const store_span spans[] = {
      {.device_id = 1, .segment = 0, .start_ms = 0, .end_ms = 30},
      {.device_id = 1, .segment = 1, .start_ms = 50, .end_ms = 52}, /* a fifth of a column */
      {.device_id = 1, .segment = 11, .start_ms = 90, .end_ms = 100},
      {.device_id = 2, .segment = 0, .start_ms = 12, .end_ms = 20},
      {.device_id = 2, .segment = 2, .start_ms = 20, .end_ms = 23}, /* 0.3 of a column: shown */
      {.device_id = 2, .segment = 2, .start_ms = 40, .end_ms = 60},
  };
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  err e = {0};
  assert_int_equal(timeline_write(spans, 6, devs, 3, 100, 10, "", f, &e), ERR_OK);
  fclose(f);
  const char *want =
      "pi-a     |000......b|  42.0 ms busy,  42 %\n"
      "pi-b     |.02.22....|  31.0 ms busy,  31 %\n"
      "          0         100 ms\n";
  assert_string_equal(buf, want);
  free(buf);

  f = open_memstream(&buf, &len);
  timeline_write_json(spans, 6, devs, 3, 100, f);
  fclose(f);
  assert_non_null(strstr(buf, "{\"device\":\"pi-a\",\"busy_ms\":42.000,\"busy_fraction\":0.4200,"
                              "\"spans\":[[0,0.000,30.000],[1,50.000,52.000],"
                              "[11,90.000,100.000]]}\n"));
  assert_null(strstr(buf, "idle-one"));
  free(buf);

  f = open_memstream(&buf, &len);
  assert_int_equal(timeline_write(spans, 6, devs, 3, 100, 3, "", f, &e), ERR_INVALID);
  assert_non_null(strstr(e.msg, "width 3"));
  assert_int_equal(timeline_write(spans, 6, devs, 3, 0, 10, "", f, &e), ERR_INVALID);
  assert_int_equal(timeline_write(spans, 6, devs, 3, NAN, 10, "", f, &e), ERR_INVALID);
  fclose(f);
  assert_int_equal(len, 0);
  free(buf);
}

static void test_raw_tensors(void **state) {
  (void)state;
  int h, w, c;
  err e = {0};
  check_ok(imagefile_parse_shape("200x100x3", &h, &w, &c, &e), &e);
  assert_true(h == 200 && w == 100 && c == 3);
  check_ok(imagefile_parse_shape("7x9", &h, &w, &c, &e), &e);
  assert_true(h == 7 && w == 9 && c == 1);
  const char *bad[] = {"", "200", "200x", "x100", "0x5", "5x5x0", "5x5x5x5", "-1x5", "5y5",
                       "99999x5", "5x5x65", NULL};
  for (int i = 0; bad[i]; i++)
    if (imagefile_parse_shape(bad[i], &h, &w, &c, &e) != ERR_INVALID)
      fail_msg("shape '%s' was accepted", bad[i]);

  float v[2 * 3 * 2];
  for (int i = 0; i < 12; i++) v[i] = (float)i * 0.5f;
  char f32[600];
  path_of(f32, sizeof f32, "t.f32");
  write_file(f32, v, sizeof v);
  imagefile im;
  check_ok(imagefile_load_raw(f32, 2, 3, 2, true, &im, &e), &e);
  assert_true(im.f32 && im.bytes == sizeof v);
  assert_memory_equal(im.data, v, sizeof v);
  Edgedi__V1__Image msg;
  imagefile_to_msg(&im, &msg);
  assert_int_equal(msg.f32.len, sizeof v);
  assert_int_equal(msg.u8.len, 0);
  imagefile_free(&im);
  /* The same 48 bytes are 48 uint8 samples, not 12: the shape must say so. */
  assert_int_equal(imagefile_load_raw(f32, 2, 3, 2, false, &im, &e), ERR_SHAPE);
  assert_non_null(strstr(e.msg, "48 bytes"));
  check_ok(imagefile_load_raw(f32, 4, 4, 3, false, &im, &e), &e);
  imagefile_free(&im);
}

int main(void) {
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s", tmp && *tmp ? tmp : "/tmp");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_announce_line_and_clean_stop),
      cmocka_unit_test(test_silent_dying_and_missing_children),
      cmocka_unit_test(test_stubborn_child_is_killed),
      cmocka_unit_test(test_wait_and_exit_status),
      cmocka_unit_test(test_children_die_with_their_parent),
      cmocka_unit_test(test_image_files_decode_to_their_pixels),
      cmocka_unit_test(test_timeline_rows),
      cmocka_unit_test(test_bad_image_files),
      cmocka_unit_test(test_raw_tensors),
      /* Last: from here on SIGTERM only sets a flag. */
      cmocka_unit_test(test_stop_signals_set_the_flag),
  };
  return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}

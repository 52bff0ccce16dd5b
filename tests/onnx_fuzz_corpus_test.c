/* onnx_fuzz_corpus_test.c — replays the fuzzer's kept corpus
 * (tests/fuzz/corpus/onnx_import, grown and minimized by
 * scripts/fuzz_onnx.sh) through the same harness, without libFuzzer: every
 * input must come back as a model that keeps the importer's promises or as
 * an error, never a crash, leak or sanitizer report (CI runs this under
 * --config=asan). The fuzzer itself does not run in CI.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fewer files means the corpus went missing from the runfiles. */
enum { CORPUS_MIN_FILES = 20, CORPUS_MAX_FILE_BYTES = 1 << 20 };

static void test_corpus_replays_cleanly(void **state) {
  (void)state;
  const char *root = getenv("TEST_SRCDIR");
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/edgedi/tests/fuzz/corpus/onnx_import",
           root ? root : ".");
  DIR *d = opendir(dir);
  if (!d) fail_msg("no corpus at %s", dir);
  static uint8_t buf[CORPUS_MAX_FILE_BYTES];
  int files = 0;
  for (struct dirent *ent; (ent = readdir(d));) {
    if (ent->d_name[0] == '.') continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    files++;
  }
  closedir(d);
  if (files < CORPUS_MIN_FILES)
    fail_msg("%d corpus files in %s, at least %d expected", files, dir,
             CORPUS_MIN_FILES);
  printf("replayed %d corpus files\n", files);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_corpus_replays_cleanly),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

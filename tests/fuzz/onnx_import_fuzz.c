/* onnx_import_fuzz.c — the libFuzzer harness over the ONNX importer.
 *
 * Any byte string goes to onnx_import(). It must come back with a model or
 * an error, never crash, leak, or read out of bounds (the harness is built
 * with -fsanitize=fuzzer,address,undefined by scripts/fuzz_onnx.sh). A
 * model it accepts must keep the importer's promises, checked here so the
 * fuzzer hunts for broken ones too:
 *  - it is finalized and fuse_model() accepts it;
 *  - exported again, it imports again to as many layers;
 *  - when it is small, the reference executor runs it (model_finalize
 *    promised shapes executors need not re-check).
 * A broken promise aborts, which libFuzzer reports as a crash.
 *
 * tests/onnx_fuzz_corpus_test.c links this same file and replays the kept
 * corpus through it in CI (there without libFuzzer).
 */
#include <stdint.h>
#include <stdlib.h>

#include "runtime/fuse.h"
#include "runtime/onnx_export.h"
#include "runtime/onnx_import.h"
#include "runtime/ref.h"

/* Models this small are run; bigger ones would only slow the search. */
#define FUZZ_MAX_RUN_FLOPS 4e6
#define FUZZ_MAX_RUN_ELEMS 65536

static void check_round_trip(const model *m) {
  void *bytes = NULL;
  size_t len = 0;
  err e;
  if (onnx_export(m, &bytes, &len, &e) != ERR_OK) abort();
  model *back = NULL;
  if (onnx_import(bytes, len, &back, &e) != ERR_OK) abort();
  if (back->n_layers != m->n_layers) abort();
  model_destroy(back);
  free(bytes);
}

static void check_runs(const model *m) {
  if (model_flops(m) > FUZZ_MAX_RUN_FLOPS) return;
  if (model_shape_elems(m->input) > FUZZ_MAX_RUN_ELEMS) return;
  for (int l = 0; l < m->n_layers; l++)
    if (model_shape_elems(m->layers[l].out) > FUZZ_MAX_RUN_ELEMS) return;
  size_t n_in = model_shape_elems(m->input);
  size_t n_out = model_shape_elems(m->layers[m->n_layers - 1].out);
  float *in = calloc(n_in, sizeof *in), *out = calloc(n_out, sizeof *out);
  err e;
  if (!in || !out || ref_run(m, in, out, &e) != ERR_OK) abort();
  free(in);
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  model *m = NULL;
  onnx_io io;
  err e;
  if (onnx_import_ex(data, size, &m, &io, &e) != ERR_OK) {
    if (m) abort(); /* a failure leaves nothing behind */
    return 0;
  }
  if (!m->finalized) abort();
  model *f = NULL;
  if (fuse_model(m, &f, &e) != ERR_OK) abort();
  model_destroy(f);
  check_round_trip(m);
  check_runs(m);
  model_destroy(m);
  return 0;
}

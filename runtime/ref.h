/* ref.h — the reference executor: plain, obvious C loops over NHWC float32
 * tensors, written to be read rather than to be fast. It is the oracle the
 * tests hold the XNNPACK executor to; nothing timed depends on it.
 * Runs any finalized model (fused ReLU flags honoured) whole. */
#ifndef EDGEDI_REF_H
#define EDGEDI_REF_H

#include "runtime/err.h"
#include "runtime/model.h"

/* Runs the whole model on `input` (m->input, NHWC) and writes the last
 * layer's output (NHWC) to `output`. */
err_code ref_run(const model *m, const float *input, float *output, err *e);

/* Like ref_run, but also returns every layer's output: acts[l] for l in
 * [0, n_layers), each malloc'ed; free with ref_free_acts. */
err_code ref_run_all(const model *m, const float *input, float ***acts,
                     err *e);
void ref_free_acts(const model *m, float **acts);

#endif

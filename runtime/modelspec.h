/* modelspec.h — from a ModelSpec (the wire's description of a model) to the
 * fused model graph every device runs, and its digest.
 *
 * The scheduler and every agent build a model from the same spec with this
 * one function, so they run the very same graph: the digest (a 64-bit
 * FNV-1a hash of the fused graph's structure and weights, as 16 hex digits)
 * names it on the wire, and a mismatch is caught rather than computed
 * with. Zoo specs are built with zoo_build(), ONNX specs (the file in
 * `onnx`, the zoo options ignored) with onnx_import(); a spec naming both
 * is ERR_INVALID. The digest depends on the graph and weights only, not on
 * layer names or where the graph came from: an ONNX export of a zoo model
 * has the zoo spec's digest.
 */
#ifndef EDGEDI_MODELSPEC_H
#define EDGEDI_MODELSPEC_H

#include "proto/edgedi.pb-c.h"
#include "runtime/err.h"
#include "runtime/model.h"

enum { MODELSPEC_DIGEST_BYTES = 17 }; /* 16 hex digits and the NUL */

/* Builds and fuses the model the spec describes. */
err_code modelspec_build(const Edgedi__V1__ModelSpec *spec, model **fused,
                         char digest[MODELSPEC_DIGEST_BYTES], err *e);

/* The digest of any finalized model. */
void modelspec_digest(const model *m, char digest[MODELSPEC_DIGEST_BYTES]);

#endif

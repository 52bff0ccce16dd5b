/* wire_density.h — how much of each layer's output crosses a link, measured.
 *
 * Rows travel zero-masked (runtime/rowcodec.h): a ReLU's output, about half
 * zeros, moves about half its floats' bytes; a max pool's or an FE's
 * output, few zeros, nearly all. The planner prices a cut's rows at these
 * densities (plan_options.wire_density), so it can prefer the cuts where
 * tensors travel light. wire_density_measure() gives the prior, run once at
 * model load: the spatial part, cut to cut, on a synthetic image;
 * wire_density_note() refines a layer's value from the rows requests send.
 */
#ifndef EDGEDI_SCHEDULER_WIRE_DENSITY_H
#define EDGEDI_SCHEDULER_WIRE_DENSITY_H

#include <stdint.h>

#include "runtime/err.h"
#include "runtime/xexec.h"

#define WIRE_DENSITY_GAIN 0.3 /* a few requests to follow the images served */

/* Fills density[0 .. n_layers) of x's model: for each cut layer of the
 * spatial part, zero-masked bytes / float bytes of its output on a fixed
 * pseudo-random image; 1 for every other layer. Takes about one run of the
 * model on x. */
err_code wire_density_measure(xexec *x, double *density, err *e);

/* Moves *density a step toward sent / raw (rows of one request: bytes as
 * floats, bytes as sent), kept within [PLAN_MIN_WIRE_DENSITY, 1]. No raw
 * bytes, or more sent than raw: no change. */
void wire_density_note(double *density, uint64_t raw, uint64_t sent);

#endif

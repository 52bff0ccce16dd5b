/* layer_cost.h — what each layer of a model costs per FLOP, measured.
 *
 * FLOPs alone mispredict a strip's time by a factor of two and more on the
 * compact models: an 8-channel 3x3 convolution over 200x200 rows runs at
 * under half the FLOP rate of a 64-channel one (memory, not arithmetic,
 * bounds it), and pooling has no FLOPs at all but takes time. A planner
 * that prices segments by FLOPs then fuses the wrong layers and gives the
 * first segments too many rows. layer_cost_measure() runs the model's
 * spatial part here, one range between consecutive cuts at a time, and
 * returns each layer's time per FLOP relative to the model's mean: the
 * weights plan_prepare_weighted() prices with. The device cost models
 * (ms per weighted GFLOP) keep what differs between devices; the weights
 * keep what differs between layers, assumed alike on every device that
 * runs the same XNNPACK kernels.
 */
#ifndef EDGEDI_SCHEDULER_LAYER_COST_H
#define EDGEDI_SCHEDULER_LAYER_COST_H

#include "runtime/err.h"
#include "runtime/model.h"
#include "runtime/xexec.h"

enum { LAYER_COST_DEFAULT_REPS = 2 };

/* Fills weight[0 .. n_layers) of x's model: for every layer of the
 * spatial part, (time / FLOPs of its cut-to-cut range) / (time / FLOPs of
 * the whole spatial part), each range timed `reps` times with x (the
 * fastest run counts; x should have as many threads as a device uses); a
 * range without FLOPs (pooling) adds its time to the range before it.
 * Layers of the head, and layers without FLOPs, get 1. Takes about reps
 * times the model's run time. */
err_code layer_cost_measure(xexec *x, int reps, double *weight, err *e);

#endif

/* head_rows.h — the head's first fully connected layer computed row by row
 * as the last segment's rows arrive.
 *
 * Every zoo model's head on the scheduler starts flatten -> FC (the
 * ResNets' average pool runs on the agents), and that FC reads every value
 * of the gathered map (vgg16: 18432 x 512 weights, 38 MB: about 4 ms of
 * memory traffic here). Being linear, it is a sum over the
 * map's rows of each row's share, so the dispatcher adds a row's share as
 * soon as the row arrives (its weights laid out per row, contiguous) and,
 * once the last strip is in, has only that strip's rows left before the
 * rest of the head. The sums run in another order than the executor's FC:
 * the logits agree with one device's to float rounding (about 1e-6 of the
 * largest; DESIGN.md allows 1e-4), not bit for bit.
 *
 * Immutable once made: one serves every request of its model at once.
 */
#ifndef EDGEDI_HEAD_ROWS_H
#define EDGEDI_HEAD_ROWS_H

#include "runtime/err.h"
#include "runtime/model.h"

typedef struct head_rows head_rows;

/* For m (finalized) whose head starts at layer head_first: *out is NULL
 * (and ERR_OK) when the head does not begin with a flatten read by a
 * fully connected layer; ERR_NOMEM. */
err_code head_rows_create(const model *m, int head_first, head_rows **out, err *e);
void head_rows_destroy(head_rows *h);

/* The FC's outputs (the accumulator's length) and the first layer after
 * it, where the executor takes over (m->n_layers: none left). */
int head_rows_outputs(const head_rows *h);
int head_rows_rest(const head_rows *h);

/* Adds rows lo .. hi-1 of the gathered map (NHWC, `rows` at row lo) to
 * acc (head_rows_outputs doubles, zeroed before the first call). */
void head_rows_add(const head_rows *h, const float *rows, int lo, int hi, double *acc);

/* The FC's output from the complete sums: bias added, ReLU when fused. */
void head_rows_finish(const head_rows *h, const double *acc, float *out);

#endif

/* prune.h — L1-norm filter pruning (the paper's second compression step) as
 * a transformation of a model graph.
 *
 * Removing filter k of a convolution removes channel k of its output
 * tensor, so every layer that sees that channel must change with it. From
 * the convolution the channel flows through channel-wise layers (BN, ReLU,
 * max/avg pool, global average pool, feature enhancement, flatten) and ends
 * in "sinks" that mix channels (a dense convolution, a fully connected
 * layer). Pruning removes the filter's weights and bias, the channel's BN
 * scale and shift, row and column k of every FE matrix on the way, and the
 * input channel k of every sink (after a flatten of an HxW tensor, the H*W
 * inputs channel k became). A convolution whose channels reach a residual
 * add, a grouped convolution or the model's output cannot be pruned alone
 * (prune_check says which layer is in the way).
 *
 * What a removed channel used to contribute is approximated by a constant:
 * a filter with small weights outputs about its bias (the folded BN shift),
 * so the constant act(bias) is carried through the channel-wise layers and
 * folded into each sink's bias. For a filter whose weights are all zero
 * this is exact where the sink has no padding and where no FE lies on the
 * way (an FE gate depends on the input); with a zero constant (zero bias,
 * or a negative one before a ReLU) the pruned model computes exactly what
 * the original did, everywhere.
 *
 * Works on any finalized model, fused or not (EdgeDI prunes the fused one:
 * BN folded into the weights makes sum |W| the filter's real magnitude).
 * The input model is never changed; results are new finalized models.
 */
#ifndef EDGEDI_PRUNE_H
#define EDGEDI_PRUNE_H

#include <stdbool.h>

#include "runtime/err.h"
#include "runtime/model.h"

/* ERR_OK when `conv` is a convolution whose filters can be removed;
 * otherwise ERR_UNSUPPORTED (or ERR_RANGE / ERR_INVALID) saying why. */
err_code prune_check(const model *m, int conv, err *e);

/* sum |W| of each filter of `conv`: l1[out_channels]. */
err_code prune_filter_l1(const model *m, int conv, double *l1, err *e);

/* The n filters of `conv` with the smallest sum |W| (ties: the lower
 * index), in ascending index order, into filters[n]. */
err_code prune_smallest(const model *m, int conv, int n, int *filters,
                        err *e);

/* A copy of m without filters[0..n) of `conv` (distinct indices; at least
 * one filter must stay), *out finalized; free it with model_destroy. */
err_code prune_filters(const model *m, int conv, const int *filters, int n,
                       model **out, err *e);

#endif

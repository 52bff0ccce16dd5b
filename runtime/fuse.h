/* fuse.h — rewrites a model graph into the equivalent graph executors run.
 *
 * fuse_model() returns a new, finalized model that computes the same
 * function with fewer layers:
 *  - a batch norm right after a convolution that feeds nothing else is
 *    folded into that convolution's weights and bias;
 *  - a batch norm whose only consumer is a 1x1 convolution without padding
 *    is folded into that convolution (exact: no padded taps see it). A batch
 *    norm before a padded convolution stays, since padding after it is zero
 *    but folding would make it `shift` (the VGG units put BN after ReLU);
 *  - a batch norm (every scale >= 0) whose only consumer is a max pool moves
 *    behind it (exact: such a scale and shift commute with max), where it
 *    may fold into the next 1x1 convolution;
 *  - a ReLU whose producer (conv, fc, add, bn) feeds nothing else becomes
 *    that producer's `relu` flag;
 *  - a 1x1 unpadded convolution without ReLU whose only reader is another
 *    becomes part of it (weights multiplied), when that does fewer
 *    multiply-adds: the compact ResNets' t -> C -> t pairs become t -> t.
 * Layer names of the surviving layers are kept. Results agree with the
 * original to float rounding.
 */
#ifndef EDGEDI_FUSE_H
#define EDGEDI_FUSE_H

#include "runtime/err.h"
#include "runtime/model.h"

err_code fuse_model(const model *m, model **out, err *e);

#endif

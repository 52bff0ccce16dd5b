/* files.h — whole files in and out: the images, raw tensors and ONNX
 * files the edgedi tool reads, the float32 outputs it writes. */
#ifndef EDGEDI_CLI_FILES_H
#define EDGEDI_CLI_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/err.h"

/* Reads `path` (a regular file or a pipe) into a new buffer *data (free()
 * it; one spare byte after the end) of *len bytes. ERR_IO when it cannot
 * be opened or read, ERR_INVALID when it is larger than max_bytes,
 * ERR_NOMEM. */
err_code files_read_all(const char *path, size_t max_bytes, uint8_t **data, size_t *len, err *e);

/* Writes v[0..n) to `path` as little-endian float32 (what ONNX Runtime,
 * NumPy's '<f4' and `edgedi run --output` exchange), whatever this
 * machine's byte order. ERR_IO naming the path. */
err_code files_write_f32(const char *path, const float *v, size_t n, err *e);

#endif

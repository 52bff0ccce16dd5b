/* files.c — see files.h. Reads in growing chunks rather than by the
 * file's size, so pipes and files that change size work alike. */
#include "cli/files.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

err_code files_read_all(const char *path, size_t max_bytes, uint8_t **data, size_t *len, err *e) {
  *data = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return err_set(e, ERR_IO, "cannot open %s: %s", path, strerror(errno));
  uint8_t *buf = NULL;
  size_t n = 0, cap = 0;
  err_code rc = ERR_OK;
  for (;;) {
    if (n + 1 >= cap) { /* one spare byte: callers may terminate text */
      size_t ncap = cap ? cap * 2 : 1 << 16;
      if (ncap > max_bytes + 2) ncap = max_bytes + 2;
      if (ncap <= cap) {
        rc = err_set(e, ERR_INVALID, "%s is larger than %zu MB", path, max_bytes >> 20);
        break;
      }
      uint8_t *nb = realloc(buf, ncap);
      if (!nb) {
        rc = err_set(e, ERR_NOMEM, "out of memory reading %s", path);
        break;
      }
      buf = nb, cap = ncap;
    }
    size_t got = fread(buf + n, 1, cap - 1 - n, f);
    n += got;
    if (n > max_bytes) {
      rc = err_set(e, ERR_INVALID, "%s is larger than %zu MB", path, max_bytes >> 20);
      break;
    }
    if (got == 0) {
      if (ferror(f)) rc = err_set(e, ERR_IO, "cannot read %s", path);
      break;
    }
  }
  fclose(f);
  if (rc != ERR_OK) {
    free(buf);
    return rc;
  }
  *data = buf;
  *len = n;
  return ERR_OK;
}

err_code files_write_f32(const char *path, const float *v, size_t n, err *e) {
  FILE *f = fopen(path, "wb");
  if (!f) return err_set(e, ERR_IO, "cannot create %s: %s", path, strerror(errno));
  bool ok = true;
  for (size_t i = 0; i < n && ok; i++) {
    uint32_t bits;
    memcpy(&bits, &v[i], 4);
    const uint8_t le[4] = {(uint8_t)bits, (uint8_t)(bits >> 8), (uint8_t)(bits >> 16),
                           (uint8_t)(bits >> 24)};
    ok = fwrite(le, 1, 4, f) == 4;
  }
  ok = fclose(f) == 0 && ok;
  return ok ? ERR_OK : err_set(e, ERR_IO, "cannot write %s", path);
}

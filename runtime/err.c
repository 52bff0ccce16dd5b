/* err.c — message formatting for the err convention (see err.h). */
#include "runtime/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

err_code err_set(err *e, err_code code, const char *fmt, ...) {
  if (e) {
    va_list ap;
    va_start(ap, fmt);
    e->code = code;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

err_code err_wrap(err *e, const char *fmt, ...) {
  if (!e) return ERR_INTERNAL;
  char prefix[ERR_MSG_BYTES], old[ERR_MSG_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, e->msg, sizeof old);
  snprintf(e->msg, sizeof e->msg, "%.200s: %.300s", prefix, old);
  return e->code;
}

const char *err_name(err_code code) {
  switch (code) {
    case ERR_OK: return "ok";
    case ERR_INVALID: return "invalid";
    case ERR_SHAPE: return "shape";
    case ERR_RANGE: return "range";
    case ERR_NOMEM: return "out of memory";
    case ERR_BACKEND: return "backend";
    case ERR_IO: return "io";
    case ERR_CORRUPT: return "corrupt";
    case ERR_UNSUPPORTED: return "unsupported";
    case ERR_NOT_FOUND: return "not found";
    case ERR_UNAVAILABLE: return "unavailable";
    case ERR_DEADLINE: return "deadline";
    case ERR_INTERNAL: return "internal";
  }
  return "unknown";
}

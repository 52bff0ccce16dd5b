/* err.h — the one error convention of EdgeDI.
 *
 * Library code never prints or exits: a function that can fail returns an
 * err_code and, when the caller passed a non-NULL `err *`, fills it with a
 * message a person can act on (it is passed on verbatim in gRPC statuses).
 */
#ifndef EDGEDI_ERR_H
#define EDGEDI_ERR_H

typedef enum err_code {
  ERR_OK = 0,
  ERR_INVALID,     /* a bad argument or malformed input */
  ERR_SHAPE,       /* tensor shapes that do not fit together */
  ERR_RANGE,       /* a layer or row range that does not exist */
  ERR_NOMEM,       /* an allocation failed */
  ERR_BACKEND,     /* XNNPACK (or another library) refused */
  ERR_IO,          /* a file could not be read or written */
  ERR_CORRUPT,     /* data that does not decode */
  ERR_UNSUPPORTED, /* valid, but not something EdgeDI runs */
  ERR_NOT_FOUND,   /* an unknown name */
  ERR_UNAVAILABLE, /* a peer that does not answer */
  ERR_DEADLINE,    /* ran out of time */
  ERR_INTERNAL     /* a broken invariant: a bug */
} err_code;

enum { ERR_MSG_BYTES = 512 };

typedef struct err {
  err_code code;
  char msg[ERR_MSG_BYTES];
} err;

/* Records code and a printf-style message in *e (when e is not NULL) and
 * returns code, so that `return err_set(e, ERR_SHAPE, "...")` reads well. */
err_code err_set(err *e, err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in *e with more context ("layer 7: ..."). */
err_code err_wrap(err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A short constant name for a code ("shape", "range", ...). */
const char *err_name(err_code code);

#endif

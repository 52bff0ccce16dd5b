/* flags.h — strict parsing of command-line flag values, shared by the
 * edgedi tool and the benchmarks: the whole string must be the number,
 * and it must lie in the given range. */
#ifndef EDGEDI_CLI_FLAGS_H
#define EDGEDI_CLI_FLAGS_H

#include <stdbool.h>

/* A decimal integer in [lo, hi], the whole string; false otherwise. */
bool flags_parse_int(const char *s, int lo, int hi, int *out);
/* A finite number in [lo, hi], the whole string; false otherwise. */
bool flags_parse_double(const char *s, double lo, double hi, double *out);

#endif

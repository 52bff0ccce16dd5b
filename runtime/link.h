/* link.h — the link emulator of DESIGN.md ("one machine emulates a cluster
 * honestly"): when would a message have arrived had it crossed a link of
 * M Mbit/s with a round trip of R ms?
 *
 * The model, per direction: a message handed to the link at time t starts
 * serializing once the link is free (the previous message in the same
 * direction has finished serializing), takes bytes * 8 / (M * 1e6) s to
 * serialize, and arrives R / 2 ms after its last bit left. Messages in one
 * direction therefore queue behind each other; the two directions of a
 * link are independent (full duplex), so each gets its own link_dir.
 *
 * This is pure arithmetic on a caller-given monotonic clock in ms: no
 * sockets, no threads, so the delay math is unit-tested on its own. The
 * caller (the agent) measures "now" with link_now_ms() and waits with
 * link_sleep_until_ms() or a timed condition wait of its own.
 *
 * Zero means "not emulated": mbps 0 is an unlimited bandwidth (no
 * serialization time, no queueing), rtt 0 no latency; both 0 deliver every
 * message at the instant it is handed over.
 *
 * Threads: a link_dir is plain data; one thread at a time books messages
 * on it (the caller locks when several do).
 */
#ifndef EDGEDI_LINK_H
#define EDGEDI_LINK_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/err.h"

/* Refused above these: a typo (1e9 Mbit/s, an hour of round trip) rather
 * than a link anyone means to emulate. */
#define LINK_MAX_MBPS 1e6
#define LINK_MAX_RTT_MS 60000.0

typedef struct link_dir {
  double mbps;       /* 0: unlimited */
  double rtt_ms;     /* 0: no latency */
  double free_at_ms; /* when the last booked message finished serializing */
} link_dir;

/* ERR_INVALID, naming the flag, unless 0 <= mbps <= LINK_MAX_MBPS and
 * 0 <= rtt_ms <= LINK_MAX_RTT_MS (NaN refused). */
err_code link_check(double mbps, double rtt_ms, err *e);

/* An idle direction of a link (values as link_check accepts). */
void link_dir_init(link_dir *d, double mbps, double rtt_ms);

/* True when the direction delays anything at all. */
bool link_dir_emulated(const link_dir *d);

/* Serialization time of `bytes` at `mbps` (0 for an unlimited link). */
double link_serialize_ms(double mbps, size_t bytes);

/* Books a message of `bytes` handed to the link at now_ms and returns when
 * it arrives at the far end (>= now_ms). Times must come from one clock;
 * a now_ms earlier than a previous call's is fine (it just queues). */
double link_dir_book(link_dir *d, double now_ms, size_t bytes);

/* CLOCK_MONOTONIC in ms. */
double link_now_ms(void);

/* Sleeps until link_now_ms() >= t_ms (signals do not cut it short). */
void link_sleep_until_ms(double t_ms);

#endif

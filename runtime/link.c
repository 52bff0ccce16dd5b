/* link.c — the link emulator's arithmetic and clock (contract in link.h). */
#include "runtime/link.h"

#include <errno.h>
#include <math.h>
#include <time.h>

err_code link_check(double mbps, double rtt_ms, err *e) {
  /* Written so that NaN fails both tests. */
  if (!(mbps >= 0 && mbps <= LINK_MAX_MBPS))
    return err_set(e, ERR_INVALID,
                   "link bandwidth %g Mbit/s is not in [0, %g] (0: unlimited)",
                   mbps, LINK_MAX_MBPS);
  if (!(rtt_ms >= 0 && rtt_ms <= LINK_MAX_RTT_MS))
    return err_set(e, ERR_INVALID,
                   "link round trip %g ms is not in [0, %g] (0: none)", rtt_ms,
                   LINK_MAX_RTT_MS);
  return ERR_OK;
}

void link_dir_init(link_dir *d, double mbps, double rtt_ms) {
  d->mbps = mbps;
  d->rtt_ms = rtt_ms;
  d->free_at_ms = -INFINITY;
}

bool link_dir_emulated(const link_dir *d) {
  return d->mbps > 0 || d->rtt_ms > 0;
}

double link_serialize_ms(double mbps, size_t bytes) {
  if (!(mbps > 0)) return 0;
  /* bits / (bits per ms): M Mbit/s is M * 1e3 bits per ms. */
  return (double)bytes * 8.0 / (mbps * 1e3);
}

double link_dir_book(link_dir *d, double now_ms, size_t bytes) {
  double start = now_ms;
  if (d->mbps > 0) {
    if (d->free_at_ms > start) start = d->free_at_ms;
    d->free_at_ms = start + link_serialize_ms(d->mbps, bytes);
    start = d->free_at_ms;
  }
  return start + d->rtt_ms / 2;
}

double link_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void link_sleep_until_ms(double t_ms) {
  /* An absolute deadline: an interrupted sleep resumes without drifting. */
  if (!(t_ms > link_now_ms())) return;
  struct timespec ts;
  ts.tv_sec = (time_t)(t_ms / 1e3);
  ts.tv_nsec = (long)((t_ms - (double)ts.tv_sec * 1e3) * 1e6);
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/* cpu_gate.c — flock(2) slots shared by the emulated agents of one host. */
#include "runtime/cpu_gate.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "runtime/stats.h"

/* A waiting agent retries every POLL_US: short next to any emulated burst
 * (a slot is held for milliseconds), cheap in system calls. */
enum { POLL_US = 100 };

struct cpu_gate {
  pthread_mutex_t mu; /* flock is per open file: one holder per process too */
  int slots;
  int *fd;
  bool *held;
};

static _Thread_local int tls_slot = -1;

const char *cpu_gate_default_dir(void) {
  const char *d = getenv("TMPDIR");
  return d && d[0] ? d : "/tmp";
}

err_code cpu_gate_open(const char *dir, int slots, cpu_gate **out, err *e) {
  *out = NULL;
  if (!dir || !dir[0]) return err_set(e, ERR_INVALID, "cpu gate: no directory");
  if (slots < 1 || slots > CPU_GATE_MAX_SLOTS)
    return err_set(e, ERR_INVALID, "cpu gate: %d slots, want 1 to %d", slots,
                   CPU_GATE_MAX_SLOTS);
  cpu_gate *g = calloc(1, sizeof *g);
  if (g) g->fd = malloc((size_t)slots * sizeof *g->fd);
  if (g) g->held = calloc((size_t)slots, sizeof *g->held);
  if (!g || !g->fd || !g->held) {
    if (g) free(g->fd), free(g->held);
    free(g);
    return err_set(e, ERR_NOMEM, "cpu gate: out of memory");
  }
  pthread_mutex_init(&g->mu, NULL);
  for (int k = 0; k < slots; k++) {
    char path[4096];
    int w = snprintf(path, sizeof path, "%s/edgedi-cpu-%d.lock", dir, k);
    int fd = w > 0 && (size_t)w < sizeof path
                 ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666)
                 : -1;
    if (fd < 0) {
      int en = errno;
      g->slots = k;
      cpu_gate_close(g);
      return err_set(e, ERR_IO, "cpu gate: cannot open %s/edgedi-cpu-%d.lock: %s", dir, k,
                     w > 0 && (size_t)w < sizeof path ? strerror(en) : "path too long");
    }
    g->fd[k] = fd;
  }
  g->slots = slots;
  *out = g;
  return ERR_OK;
}

void cpu_gate_close(cpu_gate *g) {
  if (!g) return;
  for (int k = 0; k < g->slots; k++) close(g->fd[k]); /* frees held locks */
  pthread_mutex_destroy(&g->mu);
  free(g->fd);
  free(g->held);
  free(g);
}

static int try_take(cpu_gate *g) {
  int got = -1;
  pthread_mutex_lock(&g->mu);
  for (int k = 0; k < g->slots && got < 0; k++) {
    if (g->held[k]) continue;
    if (flock(g->fd[k], LOCK_EX | LOCK_NB) == 0) {
      g->held[k] = true;
      got = k;
    }
  }
  pthread_mutex_unlock(&g->mu);
  return got;
}

double cpu_gate_enter(cpu_gate *g) {
  if (!g) return 0;
  double t0 = stats_now_ms();
  int k;
  while ((k = try_take(g)) < 0) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = POLL_US * 1000L};
    nanosleep(&ts, NULL);
  }
  tls_slot = k;
  return stats_now_ms() - t0;
}

void cpu_gate_leave(cpu_gate *g) {
  if (!g || tls_slot < 0) return;
  pthread_mutex_lock(&g->mu);
  flock(g->fd[tls_slot], LOCK_UN);
  g->held[tls_slot] = false;
  pthread_mutex_unlock(&g->mu);
  tls_slot = -1;
}

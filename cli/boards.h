/* boards.h — the paper's boards at their own speed, whatever core emulates
 * them.
 *
 * An agent's --speed is a fraction of one core of the machine it runs on
 * (DESIGN.md: a job's wall time is its thread CPU time / speed). DESIGN.md
 * puts a Raspberry Pi 3B+ at 0.1 and a Pi 4B at 0.15 of one core of the
 * machine it was written on, whose one core ran vgg16c whole on XNNPACK in
 * 60-63 ms of thread CPU (benchmarks/RESULTS.md until 2026-11-27 04:00): a
 * Pi 3B+ takes 610 ms for it, a Pi 4B 407 ms. A board does not get faster
 * with the machine that emulates it, while its links and round trips stay
 * what they are; on a core four times as fast, speed 0.1 emulates a board
 * four times as fast as a Pi 3B+, against which every exchange weighs four
 * times as much. A board named here is emulated at the --speed that keeps
 * its own time on this machine: this core's thread CPU time for vgg16c
 * whole (measured, baseline.h) over the board's.
 */
#ifndef EDGEDI_CLI_BOARDS_H
#define EDGEDI_CLI_BOARDS_H

#include "runtime/err.h"

/* The model a board's speed is stated by. */
#define BOARDS_REFERENCE_MODEL "vgg16c"
/* Timed runs per process when a command times the core for its boards. */
enum { BOARDS_CORE_RUNS = 5 };

typedef struct board {
  const char *name;      /* "pi3b+", "pi4b" */
  double reference_ms;   /* BOARDS_REFERENCE_MODEL whole on the board */
  double design_speed;   /* its --speed on DESIGN.md's machine */
} board;

/* The board of that name, or NULL. */
const board *boards_find(const char *name);

/* Board names, comma-separated, for usage texts. */
const char *boards_names(void);

/* This core's thread CPU time for BOARDS_REFERENCE_MODEL whole on XNNPACK,
 * one thread (baseline.h: the median of `runs` runs in each of several
 * processes), into *core_ms. */
err_code boards_measure_core(int runs, double *core_ms, err *e);

/* The --speed at which an agent here takes the board's time. */
double boards_speed(const board *b, double core_ms);

#endif

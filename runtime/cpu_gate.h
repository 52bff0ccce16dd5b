/* cpu_gate.h — lets at most N emulated agents of one host compute at once.
 *
 * Why: one machine emulating a cluster runs several agents on fewer cores
 * than there are agents. When more of them compute than there are cores,
 * the kernel time-slices them: each burst is preempted every few ms and
 * finds its caches full of another agent's weights, so its thread CPU
 * time, which an emulated device's speed divides (tile.h), grows by tens
 * of percent. A real board has its cores to itself. The gate makes the
 * agents take turns instead: a burst waits for a free core, and the wait
 * falls inside the emulated (stretched) time as long as the agents' summed
 * speeds fit the host's cores.
 *
 * The slots are flock(2) locks on files DIR/edgedi-cpu-K.lock, so agents
 * of any process share them and a killed agent's slot frees itself. A NULL
 * gate is no gate: enter and leave do nothing. */
#ifndef EDGEDI_CPU_GATE_H
#define EDGEDI_CPU_GATE_H

#include "runtime/err.h"

typedef struct cpu_gate cpu_gate;

enum { CPU_GATE_MAX_SLOTS = 256 };

/* Opens (creating them when needed) `slots` lock files in `dir`. */
err_code cpu_gate_open(const char *dir, int slots, cpu_gate **out, err *e);
void cpu_gate_close(cpu_gate *g);

/* Waits for a free slot and holds it; returns the ms waited. */
double cpu_gate_enter(cpu_gate *g);
/* Frees the slot this thread's last enter took. */
void cpu_gate_leave(cpu_gate *g);

/* The directory agents share by default: $TMPDIR, else /tmp. */
const char *cpu_gate_default_dir(void);

#endif

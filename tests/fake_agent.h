/* fake_agent.h — a test double of the node agent: the Agent service
 * (Execute, LoadModel, Profile) on loopback over the real tile engine,
 * with knobs a real agent does not have.
 *
 *  - Execute: Hello both ways (refusing another version with
 *    FAILED_PRECONDITION, as the agent does), then every ExecuteIn goes to a
 *    tile engine (runtime/tile.h) and everything it produces goes back, on
 *    the handler's own thread. So the results are the real distributed
 *    computation: a scheduler that passes with this double computes right.
 *  - LoadModel builds with modelspec_build(), checking the spec's digest.
 *  - Profile answers ms = a * GFLOP + b exactly (a, b chosen by the test),
 *    so the scheduler's fit can be checked against the truth.
 *  - hold: TileJobs, rows and scales are swallowed (jobs counted, never
 *    run): a device that is stuck mid-request. kill: the server goes away at once, streams and all:
 *    a device that dies.
 *  - speed: the tile engine's speed emulation (tile.h), changeable while
 *    it runs (fake_agent_set_speed): a device that throttles or recovers.
 *  - die_at: a death armed for a phase of a request (a job arrives, a tile
 *    has run, relayed rows arrive, an FE scale arrives): at the nth such
 *    event the agent stops answering anything and its server is destroyed
 *    from another thread, as when the board loses power.
 *
 * Threads: every function may be called from the test's threads.
 */
#ifndef EDGEDI_TESTS_FAKE_AGENT_H
#define EDGEDI_TESTS_FAKE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "runtime/err.h"

typedef struct fake_agent_options {
  const char *name;
  double ms_per_gflop;       /* what Profile reports: ms = a * GFLOP + b */
  double fixed_ms;
  uint32_t protocol_version; /* of its answering Hello; 0: ours */
  double speed;              /* emulated tile speed (tile.h); 0: 1 */
} fake_agent_options;

typedef enum fake_agent_phase {
  FAKE_DIE_ON_JOB,      /* a TileJob arrives: dies before running it */
  FAKE_DIE_IN_TILE,     /* a tile has run: dies before sending anything of it */
  FAKE_DIE_ON_ROWS,     /* relayed rows (a halo exchange) arrive */
  FAKE_DIE_ON_FE_SCALE, /* a feature-enhancement scale arrives */
} fake_agent_phase;

typedef struct fake_agent fake_agent;

err_code fake_agent_start(const fake_agent_options *o, fake_agent **out, err *e);

/* "127.0.0.1:PORT" of its Agent service. */
const char *fake_agent_address(const fake_agent *f);
const char *fake_agent_name(const fake_agent *f);

/* RegisterAgent at `scheduler` under the agent's name and address (name
 * NULL) or another name, stating `version` (0: ours). details gets the
 * status message. */
grpc_status_code fake_agent_register(fake_agent *f, const char *scheduler,
                                     const char *name, uint32_t version,
                                     uint64_t *device_id, char *details,
                                     size_t len);

void fake_agent_hold(fake_agent *f, bool hold);
void fake_agent_set_speed(fake_agent *f, double speed);
/* What fake_agent_garble makes nonsense of the messages it sends from now
 * on, or'ed together (0: nothing). */
enum {
  /* each TileResult's spans but for their last pair: not a number,
   * reversed, then (0.5, 1.0) ms after the job came */
  FAKE_GARBLE_SPANS = 1,
  /* each TileResult's own figures: compute_ms and queued_ms not a number,
   * cpu_ms and gflop negative, wait_ms infinite, bytes_out past what
   * SQLite's integers hold; its rows stay right */
  FAKE_GARBLE_FIGURES = 2,
  /* the last float of each output sent to the scheduler (RowsData to dest
   * -1): +infinity */
  FAKE_GARBLE_OUTPUT = 4,
};
void fake_agent_garble(fake_agent *f, unsigned what);
/* Arms a death at the nth (1-based, counted from now) event of `phase`. */
void fake_agent_die_at(fake_agent *f, fake_agent_phase phase, int nth);
bool fake_agent_dead(fake_agent *f); /* killed, by die_at or fake_agent_kill */
int fake_agent_jobs_seen(fake_agent *f);
int fake_agent_streams(fake_agent *f); /* Execute streams past the Hello */

/* Destroys the server now (no grace): every stream ends in error. */
void fake_agent_kill(fake_agent *f);
void fake_agent_destroy(fake_agent *f);

#endif

/* benchcluster.c — a benchmark's local cluster (contract in benchcluster.h). */
#include "benchmarks/benchcluster.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/flags.h"

bool benchcluster_flag(const char *a, const char *v, benchcluster_flags *f, bool *ok) {
  if (strcmp(a, "--link-mbps") == 0)
    *ok = v && flags_parse_double(v, 0, 1e6, &f->link_mbps);
  else if (strcmp(a, "--link-rtt-ms") == 0)
    *ok = v && flags_parse_double(v, 0, 1e4, &f->link_rtt_ms);
  else if (strcmp(a, "--dir") == 0) *ok = (f->dir = v) != NULL;
  else if (strcmp(a, "--scheduler-bin") == 0) *ok = (f->scheduler_bin = v) != NULL;
  else if (strcmp(a, "--agent-bin") == 0) *ok = (f->agent_bin = v) != NULL;
  else return false;
  return true;
}

err_code benchcluster_start(const benchcluster_config *cfg, benchcluster *bc, err *e) {
  memset(bc, 0, sizeof *bc);
  if (cfg->n_agents < 1 || cfg->n_agents > LOCALCLUSTER_MAX_AGENTS)
    return err_set(e, ERR_INVALID, "%d agents: 1 to %d", cfg->n_agents,
                   LOCALCLUSTER_MAX_AGENTS);
  snprintf(bc->db_path, sizeof bc->db_path, "%s/edgedi.db", cfg->dir);
  /* A fresh database per cluster: cost models fitted for other speeds or
   * links must not seed this one. */
  static const char *const suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    char p[sizeof bc->db_path + 8];
    snprintf(p, sizeof p, "%s%s", bc->db_path, suffix[i]);
    unlink(p);
  }
  localcluster_options lo = {.scheduler_bin = cfg->scheduler_bin,
                             .agent_bin = cfg->agent_bin,
                             .db_path = bc->db_path,
                             .models = cfg->models,
                             .planner = cfg->planner,
                             .on_loss = cfg->on_loss,
                             .log_dir = cfg->dir,
                             .one_by_one = true,
                             .agents_release_memory = cfg->agents_release_memory,
                             .n_agents = cfg->n_agents};
  for (int i = 0; i < cfg->n_agents; i++) {
    localcluster_agent *a = &lo.agents[i];
    snprintf(a->name, sizeof a->name, "dev-%d", i);
    a->speed = cfg->speeds[i]; /* 0: localcluster passes 1, no stretching */
    a->link_mbps = cfg->link_mbps;
    a->link_rtt_ms = cfg->link_rtt_ms;
    a->threads = 1; /* --speed counts one thread's CPU time */
  }
  err_code rc = localcluster_start(&lo, &bc->lc, e);
  if (rc == ERR_OK) rc = localcluster_wait_up(bc->lc, LOCALCLUSTER_DEFAULT_UP_TIMEOUT_MS, e);
  if (rc == ERR_OK) rc = client_connect(localcluster_address(bc->lc), &bc->ch, e);
  if (rc != ERR_OK) {
    benchcluster_stop(bc);
    return err_wrap(e, "cluster of %d agents (logs in %s)", cfg->n_agents, cfg->dir);
  }
  return ERR_OK;
}

void benchcluster_stop(benchcluster *bc) {
  rpc_channel_destroy(bc->ch);
  localcluster_destroy(bc->lc);
  bc->ch = NULL;
  bc->lc = NULL;
}

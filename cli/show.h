/* show.h — the scheduler's answers as tables for people, or as JSON for
 * scripts. Printing is this module's whole job; it never exits. Device
 * names are shown as given; times in milliseconds, bytes for people
 * (cli_bytes) in tables and exact in JSON.
 */
#ifndef EDGEDI_CLI_SHOW_H
#define EDGEDI_CLI_SHOW_H

#include <stdbool.h>
#include <stdio.h>

#include "proto/edgedi.pb-c.h"

/* Rows per device per segment, one line per segment; with `detail` every
 * part's rows, input rows (halo included), GFLOP, predicted compute and
 * transfer and bytes too. */
void show_plan(FILE *f, const Edgedi__V1__PlanReply *p, bool detail);
/* The devices a plan gives rows, in order of first appearance over its
 * segments, at most max; returns their count. */
size_t show_plan_devices(const Edgedi__V1__PlanReply *p, const char **names, size_t max);
void show_plan_json(FILE *f, const Edgedi__V1__PlanReply *p);

/* State and cost model of every device. */
void show_devices(FILE *f, const Edgedi__V1__ListDevicesReply *l);
void show_devices_json(FILE *f, const Edgedi__V1__ListDevicesReply *l);

/* One inference: top class and logits, latency, plan, per-device times,
 * bytes moved against gathering whole maps. */
void show_infer(FILE *f, const Edgedi__V1__InferReply *r);
void show_infer_json(FILE *f, const Edgedi__V1__InferReply *r);

/* Per-device compute / transfer table of a reply (part of show_infer). */
void show_timings(FILE *f, const Edgedi__V1__InferReply *r);

#endif

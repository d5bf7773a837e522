/* store_bench.h — filling a hub's store with reading tasks directly, for
 * `make bench` (bench/bench_worklist.c): 100,000 queued tasks through the
 * full ingest path would take most of an hour.  Hub-private; nothing in
 * the product calls it. */
#ifndef DXHUB_STORE_BENCH_H
#define DXHUB_STORE_BENCH_H

#include <stdint.h>
#include "hub/store.h"
#include "worklist/worklist.h"

/* Add n queued tasks (and their one-instance-less study records, state
 * queued), one write transaction per 1000, as the worklist's wl_add makes
 * them when a study completes.  Study UIDs are uid_prefix.<k>; kind is
 * wl_kind, priority wl_priority.  Returns the number added, or a negative
 * code with err filled. */
int store_bench_add_tasks(store *s, int n, const char *uid_prefix, const char *modality, int kind, int priority,
                          const char *facility, int64_t now_ms, char *err, size_t errlen);

/* Offer up to n tasks to r in ONE write transaction (what a group-committed
 * offer pass would cost; the hub commits each offer on its own).  Returns
 * the number offered. */
int store_bench_offer_batch(store *s, const wl_reader *r, int n, int64_t now_ms);

#endif

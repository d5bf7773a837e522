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

/* One signed report for store_bench_add_reports: its study (one instance,
 * sop_uid) and the exact bytes a reader submitted. */
typedef struct store_bench_report {
    const char *report_id, *study_uid, *sop_uid, *patient_id, *modality, *origin, *study_date;
    const void *doc, *sig, *chain;
    size_t      doc_len, sig_len, chain_len;
    int64_t     reported_ms;
} store_bench_report;

/* Store n signed reports as a SUBMIT would leave them (study record in
 * state signed, report, signature, chain, the lookup index), each study's
 * one instance a copy of tmpl's record under its own UIDs sharing tmpl's
 * stored bytes; make(ctx, i, out) describes report i (its pointers need
 * to live until the next call).  One write transaction per 1000.
 * Returns the number added, or a negative code with err filled. */
int store_bench_add_reports(store *s, const store_instance *tmpl, int n,
                            int (*make)(void *ctx, int i, store_bench_report *out), void *ctx, char *err,
                            size_t errlen);

#endif

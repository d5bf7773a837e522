/* store_lookup.h — signed reports by patient, for cross-facility lookups
 * (检查检验结果互认), and physicians' decisions to repeat an exam.
 * Hub-private; the HTTP API and the peer link read through it.
 *
 * When the hub accepts a signed report (store_task_submit, action
 * "sign"), the same transaction writes an index record:
 *   report_pat   patient ID \0 reported time (ms, big endian) report ID
 *                → store_report_ref
 *   report_ref   report ID → the same record
 * so every report of a patient is one range scan, oldest first, and
 * "since" is where the scan starts.  The report's bytes, signature and
 * chain stay where store_task_submit put them (store_report_get).
 *
 *   repeat       study UID \0 time (ms, big endian) facility → JSON
 *                {"facility","physician","reason","note","time"}
 */
#ifndef DXHUB_STORE_LOOKUP_H
#define DXHUB_STORE_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hub/store.h"

#define STORE_REPORT_ID_MAX 64

/* What a lookup needs of a report without reading the report. */
typedef struct store_report_ref {
    uint8_t  version;                 /* of this record: 1 */
    uint8_t  kind;                    /* wl_kind of the task: imaging or ECG */
    uint8_t  quality;                 /* STORE_QUALITY_* as known when it was signed */
    uint8_t  pad;
    uint32_t report_version;          /* 1, 2.. for addenda */
    char     report_id[STORE_REPORT_ID_MAX];
    char     study_uid[STORE_UID_MAX];
    char     patient_id[STORE_UID_MAX];
    char     modality[17];            /* the study's first modality */
    char     study_date[9];
    char     origin[STORE_UID_MAX];   /* where the exam was made: "edge:clinic1", "dicom:CT1" */
    char     quality_why[160];        /* why quality failed (no patient data) */
    int64_t  reported_ms;             /* when the hub accepted the signed report */
} store_report_ref;

enum { STORE_QUALITY_UNCHECKED = 0, STORE_QUALITY_PASSED = 1, STORE_QUALITY_FAILED = 2 };

/* A read transaction's view of the store, for what a callback asks next. */
typedef struct store_view store_view;
/* The instance record of sop in the same snapshot: 0, -ENOENT. */
int store_view_instance(store_view *v, const char *sop, store_instance *out);
/* store_instance_gen as read just before the view's snapshot was taken:
 * facts about instance records seen in this view hold for as long as the
 * store's generation still equals it. */
uint64_t store_view_instance_gen(const store_view *v);
/* store_outside_gen as read just before the view's snapshot was taken:
 * what was verified of a record's bytes in an earlier view still holds
 * when this equals the generation then and this process did not rewrite
 * the record. */
uint64_t store_view_outside_gen(const store_view *v);

/* One report as a lookup sees it.  The bytes are read on demand
 * (store_report_bytes): a lookup that trusts a recent verdict of the
 * report needs only its index record.  The byte pointers point into the
 * store's memory map: valid during the callback only, never written. */
typedef struct store_report_view {
    const store_report_ref *ref;
    const void *doc, *sig, *chain; /* NULL until store_report_bytes */
    size_t      doc_len, sig_len, chain_len;
    bool        loaded;
    store_view *view;
} store_report_view;

/* Fill v's doc, sig and chain from the same snapshot (once; a missing
 * signature or chain stays NULL with length 0).  0 or a negative code. */
int store_report_bytes(store_report_view *v);

typedef int (*store_report_fn)(void *ctx, store_report_view *r); /* non-zero stops */

/* Every indexed report of patient_id reported at or after since_ms,
 * oldest first, in one read transaction.  Returns the number seen or a
 * negative code. */
int store_reports_by_patient(store *s, const char *patient_id, int64_t since_ms, store_report_fn cb, void *ctx);
/* One report by id, its bytes read: 0 after cb ran, -ENOENT. */
int store_report_by_id(store *s, const char *report_id, store_report_fn cb, void *ctx);

/* Inside store_task_submit's transaction, for a report just signed
 * (hub/store_tasks.c).  Returns 0 or an LMDB code. */
struct MDB_txn;
struct wl_task;
int store_txn_index_report(store *s, struct MDB_txn *txn, const struct wl_task *t, const char *report_id,
                           int64_t now_ms);

/* Reports signed before this index existed (a hub upgraded in place):
 * when report_ref is empty, index every stored report that has a
 * signature, as of the time its document says it was reported.  Returns
 * the number indexed, or a negative code. */
int store_index_existing_reports(store *s);

/* A physician's decision to repeat an exam (durable, audited in the same
 * transaction).  0 or a negative code. */
typedef struct store_repeat {
    const char *study_uid, *facility, *physician, *reason, *note;
} store_repeat;
int store_repeat_put(store *s, const store_repeat *r, int64_t now_ms);
/* Every recorded repeat, oldest study first: cb gets facility and reason. */
int store_repeat_walk(store *s, int (*cb)(void *ctx, const char *facility, const char *reason), void *ctx);

#endif

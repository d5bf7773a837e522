/* spool.h — the clinic edge's durable store-and-forward queue: one LMDB
 * environment under the edge's --data (DESIGN.md §4).  Hub-private.
 *
 * Invariants:
 *  - spool_put_* returns only after the item's bytes and record committed
 *    with default sync: the edge may then acknowledge its sender.
 *  - An item leaves only through spool_remove, called after the hub's ACK
 *    that it is durable there.
 *  - Several processes may open the same spool (the running edge and
 *    `dxhub push`): LMDB's lock file serialises writers.
 */
#ifndef DXHUB_SPOOL_H
#define DXHUB_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct spool spool;

enum spool_kind { SPOOL_INSTANCE = 0, SPOOL_MARKER = 1 };
enum spool_priority { PRIO_ROUTINE = 0, PRIO_URGENT = 1, PRIO_STAT = 2 };

const char *spool_priority_name(int prio);
int         spool_priority_parse(const char *name); /* -1 when unknown */

typedef struct spool_item {
    uint64_t seq;          /* assigned by the spool, increasing */
    uint8_t  kind;         /* spool_kind */
    uint8_t  priority;     /* spool_priority */
    uint8_t  referral;     /* 转诊: referred patient */
    uint8_t  failed;       /* refused by the hub for good: kept for the operator */
    char     sop_uid[65], study_uid[65], ts_uid[65];
    char     source[65];   /* "dicom:AE", "watch", "push:<account>" */
    char     note[256];    /* clinical note (travels to the hub) */
    uint8_t  digest[32];   /* SHA-256 of the data set bytes (instances) */
    uint64_t size;         /* bytes of the Part 10 file to send */
    uint64_t dataset_offset;
    uint32_t expected;     /* markers: instances in the study */
    int64_t  created_ms;
    uint32_t attempts;
    int64_t  next_try_ms;  /* backoff: not before */
    uint64_t acked_bytes;  /* progress the hub reported (resume point) */
    char     last_error[160];
} spool_item;

int  spool_open(const char *dir, uint64_t map_size, spool **out, char *err, size_t errlen);
void spool_close(spool **s);
const char *spool_dir(const spool *s);

/* Queue Part 10 files (already prepared for the link) in one durable
 * transaction.  meta[i] gives kind/priority/referral/note/source and the
 * UIDs, digest, size and dataset offset; seq is assigned.  patients[i]
 * (or NULL) is the file's Patient ID, for the audit trail's "received"
 * record, one per study, who being meta's source.  n ≥ 1.
 * -ENOBUFS when the spool's LMDB map is full; a full disk gives -ENOSPC or
 * -EIO (disk.h tells). */
int  spool_put_files(spool *s, const char *const *paths, spool_item *meta, const char *const *patients, size_t n,
                     char *err, size_t errlen);
/* Queue a study marker (count, priority, referral, note). */
int  spool_put_marker(spool *s, spool_item *marker, char *err, size_t errlen);

/* Items ready to go (not failed), best first: priority, then sequence. */
int  spool_list(spool *s, int include_failed, int (*cb)(void *ctx, const spool_item *it), void *ctx);
int  spool_get(spool *s, uint64_t seq, spool_item *out); /* 0, -ENOENT */
long spool_read(spool *s, const spool_item *it, uint64_t offset, void *buf, size_t len);
/* attempts, errors, progress; an item the hub refused for good (failed
 * set) is audited "refused" with its last_error */
int  spool_update(spool *s, const spool_item *it);
/* After the hub's ACK.  The study's last instance acknowledged is audited
 * "delivered". */
int  spool_remove(spool *s, uint64_t seq);

typedef struct spool_stats {
    uint64_t depth, bytes_pending, failed, markers;
    int64_t  oldest_ms;          /* created_ms of the oldest pending item, 0 if none */
    uint64_t by_priority[3];
    char     link_state[32];     /* as the running edge last wrote it */
    char     last_error[160];
    int64_t  link_since_ms, last_ack_ms;
    uint64_t delivered;          /* instances acknowledged by the hub, ever */
    uint64_t inbox;              /* reports and alerts received */
} spool_stats;
int  spool_get_stats(spool *s, spool_stats *out);
/* Progress toward the hub per study: instances and bytes queued, bytes
 * sent (confirmed so far, also of instances still in transfer) and
 * instances acknowledged (durable at the hub).  Studies still on their
 * way come first (most urgent, oldest), then those delivered in the last
 * week (latest first).  Returns the number of studies, or < 0. */
typedef struct spool_study {
    char     study_uid[65];
    char     patient_id[65];  /* as the study's instances named it; "" when unknown */
    uint8_t  priority, referral;
    uint32_t instances, acked, refused;
    uint64_t bytes, sent_bytes, acked_bytes;
    int64_t  first_ms, last_ack_ms;
} spool_study;
int  spool_studies(spool *s, int (*cb)(void *ctx, const spool_study *st), void *ctx);

int  spool_set_link(spool *s, const char *state, const char *last_error, int64_t now_ms);

/* Inbox: what the hub sends back (reports, critical-value alerts),
 * idempotent by id.  Returns 1 when new (audited "report-received" or
 * "alert-received"), 0 when already there. */
int  spool_inbox_put(spool *s, const char *id, const char *kind, const void *data, size_t len, int64_t now_ms);
int  spool_inbox_list(spool *s, int (*cb)(void *ctx, const char *id, const char *kind, int64_t received_ms,
                                          const void *data, size_t len), void *ctx);
/* When the gateway's on-alert command ran successfully for alert id
 * (edge_alert.c): 0 with *when_ms, -ENOENT when it has not. */
int  spool_alert_announced(spool *s, const char *id, int64_t *when_ms);
int  spool_alert_set_announced(spool *s, const char *id, int64_t now_ms); /* audited "alert-announced" */

/* A person at the clinic confirmed reading an alert (危急值 receipt:
 * `dxhub reports --ack ID --by NAME`); the link tells the hub, which keeps
 * the alert "unread" until then. */
typedef struct spool_confirmation {
    char    by[128];
    int64_t at_ms;
    bool    told_hub; /* the hub acknowledged it (READ_OK) */
} spool_confirmation;
/* by: the name the person gave; who: the account that ran the command
 * (audited "alert-read" as who, naming by).  0; -ENOENT (no such item),
 * -EINVAL (a report, not an alert), -EEXIST (confirmed already: *was says
 * by whom and when), or another -errno. */
int  spool_alert_confirm(spool *s, const char *id, const char *by, const char *who, int64_t now_ms,
                         spool_confirmation *was);
/* 0 with *out, -ENOENT when not confirmed. */
int  spool_alert_confirmation(spool *s, const char *id, spool_confirmation *out);
/* cb for each confirmation the hub has not acknowledged; returns how many. */
int  spool_alert_untold(spool *s, int (*cb)(void *ctx, const char *id, const spool_confirmation *c), void *ctx);
int  spool_alert_told(spool *s, const char *id);

/* --- the clinic's audit trail (`dxhub audit --edge-data`) -----------------
 * The gateway holds patient data too: what it received and from whom,
 * what it delivered, what came back, and who at the clinic read it.  Each
 * record is written in the transaction of what it records, in the form
 * the hub's trail has (audit_record.h), so one command reads either. */
typedef struct spool_audit_rec {
    int64_t     t_ms;
    const char *who, *what, *detail;
    const char *study_uid, *patient; /* NULL: read from inbox_id's item, then the spool's study → patient */
    const char *inbox_id;            /* a record about an item the hub sent back, or NULL */
} spool_audit_rec;
/* Appends n records in one durable transaction: all, or none and < 0. */
int spool_audit_many(spool *s, const spool_audit_rec *r, size_t n);
/* Walks records from sequence `from`; cb gets each JSON line and returns
 * non-zero to stop.  Returns how many were walked, or < 0. */
int spool_audit_walk(spool *s, uint64_t from, int (*cb)(void *ctx, uint64_t seq, const char *json, size_t len),
                     void *ctx);

#endif

/* store.h — the hub's durable store: one LMDB environment under --data
 * (DESIGN.md §4).  Hub-private.
 *
 * Invariants:
 *  - store_put_file returns only after the LMDB transaction holding the
 *    instance committed with default sync: the caller may then acknowledge.
 *    Concurrent callers are group-committed by one committer thread.
 *  - Idempotent by SOP Instance UID + digest: the same bytes twice are stored
 *    once (STORE_DUPLICATE); the same UID with other bytes is kept apart as a
 *    conflict (STORE_CONFLICT) and never overwrites the first.
 *  - Map full is an answer (STORE_FULL), not a crash; reads keep working.
 *  - The digest is SHA-256 of the data set bytes as received (after the file
 *    meta group), so the meta header the receiver writes does not matter.
 *
 * Records are small versioned C structs (host byte order: the environment
 * never leaves its host; dxhub backup copies it with LMDB's own copy).
 */
#ifndef DXHUB_STORE_H
#define DXHUB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store;

struct wl_config;

typedef struct store_config {
    const char *dir;        /* data directory, created if missing */
    uint64_t    map_size;   /* LMDB map size in bytes; 0: 16 GiB */
    unsigned    batch_max;  /* instances per group commit; 0: 64 */
    const struct wl_config *worklist; /* NULL: the worklist's defaults */
    /* Called after a commit that queued new reading tasks (any thread). */
    void      (*on_tasks)(void *ctx);
    void       *on_tasks_ctx;
    /* Opened beside the hub that owns the store (`dxhub backup`, `dxhub
     * check` while it serves): the owner's open-time cleanup is left to
     * it, or the chunks of an instance it is receiving would be deleted
     * as a crashed hub's leftovers. */
    bool        attach;
    /* Zeroed space kept written past the store's end, so that commits
     * overwrite flushed blocks instead of growing the file (whose flush
     * also commits the file system's journal); laid at open and, later,
     * while no instance has been committed for half a second
     * (hub/store_runway.c).  0: none.  Ignored with attach. */
    uint64_t    runway_bytes;
} store_config;

/* Opens (creating) the environment; starts the committer thread. */
int  store_open(const store_config *cfg, store **out, char *err, size_t errlen);
void store_close(store **s); /* NULL-safe; NULLs *s */

typedef enum store_result {
    STORE_STORED = 0,
    STORE_DUPLICATE,   /* same UID, same digest: already durable */
    STORE_CONFLICT,    /* same UID, other bytes: kept apart, flagged */
    STORE_FULL,        /* map full: refuse, the sender keeps it */
    STORE_INVALID,     /* not a DICOM instance we can index */
    STORE_FAILED,      /* I/O or LMDB failure */
} store_result;

typedef enum study_state {
    STUDY_RECEIVING = 0,
    STUDY_COMPLETE,
    STUDY_QUEUED,
    STUDY_READING,
    STUDY_REPORTED,
    STUDY_SIGNED,
    STUDY_STATE_COUNT
} study_state;

const char *study_state_name(study_state st);
int         study_state_parse(const char *name); /* -1 when unknown */

#define STORE_UID_MAX 65
#define STORE_CHUNK   (1u << 20) /* blob chunk size */

typedef struct store_instance {
    char     sop_uid[STORE_UID_MAX], sop_class[STORE_UID_MAX];
    char     study_uid[STORE_UID_MAX], series_uid[STORE_UID_MAX];
    char     ts_uid[STORE_UID_MAX];
    char     source[STORE_UID_MAX];   /* "dicom:CALLING_AE" or "edge:facility" */
    uint8_t  digest[32];
    uint64_t size;                    /* bytes of the stored Part 10 file */
    uint64_t dataset_offset;          /* where the data set starts in it */
    int64_t  received_ms;
    int32_t  instance_number;
    uint8_t  conflict;                /* this record is a conflicting copy */
    uint64_t blob_id;                 /* 0: its bytes are keyed by digest; else by
                                         this id (written while they arrived) */
} store_instance;

typedef struct store_study {
    char     study_uid[STORE_UID_MAX];
    char     patient_id[STORE_UID_MAX];
    char     patient_name[200];       /* UTF-8; never logged */
    char     patient_birth_date[9], patient_sex[17];
    char     accession[17], study_date[9], study_time[17];
    char     description[65], body_part[17];
    char     modalities[65];          /* backslash-separated, in arrival order */
    char     origin[STORE_UID_MAX];   /* source of the first instance */
    uint8_t  state;                   /* study_state */
    uint8_t  priority;                /* 0 routine, 1 urgent, 2 stat (from markers) */
    uint8_t  referral;
    char     note[256];
    uint32_t n_instances, n_series, expected, late_arrivals, conflicts;
    uint64_t bytes;
    int64_t  first_ms, last_ms, completed_ms;
    uint64_t task_id;                 /* the reading task made when it completed */
} store_study;

typedef struct store_put_result {
    store_result result;
    char         reason[256]; /* for INVALID/FULL/FAILED: what and why, no patient data */
    store_instance inst;      /* what was indexed */
} store_put_result;

/* Index and store the Part 10 file at path (mapped and read, not moved;
 * the caller owns it and deletes it: nobody may truncate it meanwhile).
 * Blocks until durable or refused. */
int store_put_file(store *s, const char *path, const char *source, int64_t now_ms, store_put_result *res);
/* The same, refusing (STORE_INVALID, "digest mismatch") unless the data
 * set's digest equals expect: what a link transfer offered. */
int store_put_file_expect(store *s, const char *path, const char *source, int64_t now_ms,
                          const uint8_t expect[32], store_put_result *res);
/* store_put_file for a file received by the hub itself, with what the
 * receiver knows already: digest and digest_from as for store_put_mem
 * below, and the chunks written early from a buffer before the rest went
 * to this file (store_blob below; NULL: none). */
typedef struct store_blob store_blob;
int store_put_file_early(store *s, const char *path, const uint8_t digest[32], uint64_t digest_from,
                         store_blob *early, const char *source, int64_t now_ms, store_put_result *res);

/* The same for a Part 10 file held in memory (len bytes, borrowed until
 * return).  digest: SHA-256 of the file's bytes from offset digest_from on,
 * when the caller already has it: used if that is where the parser finds
 * the data set (NULL: computed here).  expect as above (NULL: anything).
 * early: the handle its first chunks were written under while it arrived,
 * or NULL. */
int store_put_mem(store *s, const void *file, size_t len, const uint8_t digest[32], uint64_t digest_from,
                  const uint8_t expect[32], store_blob *early, const char *source, int64_t now_ms,
                  store_put_result *res);

/* Writing a large instance while it arrives, so that the commit that makes
 * it durable has little left to flush.  Chunk n is the file's bytes
 * [n * STORE_CHUNK, (n + 1) * STORE_CHUNK); chunks are handed over in order
 * from 0, each written in a transaction of its own under a provisional id
 * (the instance is not indexed, nothing is acknowledged) while the caller
 * goes on receiving.  store_put_mem(..., early, ...) writes the rest and
 * indexes it under that id in one commit.  A crash leaves provisional
 * chunks behind: store_open deletes them.
 *
 * store_blob_new: NULL when out of memory.  store_blob_chunk: queues chunk
 * n (p borrowed, unchanged, until store_blob_free returns) and returns at
 * once; 0 or -ENOMEM.  store_blob_free: waits for queued chunks, deletes
 * what was written unless store_put_mem made it an instance's, frees *b,
 * NULLs it; NULL-safe. */
store_blob *store_blob_new(store *s);
int         store_blob_chunk(store *s, store_blob *b, uint32_t n, const void *p);
void        store_blob_free(store *s, store_blob **b);

/* A study marker (edge → hub): how many instances the study has, and the
 * clinic's priority, referral flag and note.  Completes the study at once
 * when all have arrived.  Durable on return. */
typedef struct store_marker {
    uint32_t    expected;
    uint8_t     priority, referral;
    const char *note;
} store_marker;
int store_study_marker(store *s, const char *study_uid, const store_marker *m, int64_t now_ms);

/* Completeness by quiet time: every study still receiving whose last
 * instance came before now_ms - stable_ms becomes complete.  cb (may be
 * NULL) is called for each, inside the same transaction.  Returns the
 * number completed. */
int store_sweep_complete(store *s, int64_t now_ms, int64_t stable_ms,
                         void (*cb)(void *ctx, const store_study *st), void *ctx);

/* Retention: evict completed studies (oldest completion first) older than
 * older_than_ms, at most max_studies.  Returns the number evicted. */
int store_evict(store *s, int64_t older_than_ms, int max_studies, int64_t now_ms);

/* Reads (each in its own read transaction; safe from any thread). */
int store_get_study(store *s, const char *study_uid, store_study *out);            /* 0, -ENOENT */
int store_get_instance(store *s, const char *sop_uid, store_instance *out);        /* 0, -ENOENT */
/* Copy up to len bytes of an instance's stored file from offset; returns
 * bytes copied (0 at end) or a negative code. */
long store_read_instance(store *s, const store_instance *inst, uint64_t offset, void *buf, size_t len);
/* All inst->size bytes into buf: 0, -EIO when fewer are stored (the index
 * promised them: corruption), or another negative code. */
int  store_read_instance_all(store *s, const store_instance *inst, void *buf);

typedef struct store_study_filter {
    const char *patient_id, *accession, *modality;
    const char *patient_name;        /* a QIDO-RS pattern (pn_match.h); NULL any */
    const char *date_from, *date_to; /* YYYYMMDD inclusive; NULL open */
    int         state;               /* -1 any */
} store_study_filter;
/* Calls cb for matching studies in Study UID order, skipping offset and
 * stopping after limit; returns the number of matches (all, for paging). */
int store_list_studies(store *s, const store_study_filter *flt, size_t offset, size_t limit,
                       int (*cb)(void *ctx, const store_study *st), void *ctx);
/* Instances of a study, ordered by series then instance number. */
int store_list_instances(store *s, const char *study_uid,
                         int (*cb)(void *ctx, const store_instance *in), void *ctx);
/* Conflicting copies kept of an instance (same SOP Instance UID, other
 * bytes; the first stored stays the instance), in digest order; cb gets
 * each record (conflict set).  Returns how many. */
int store_list_conflicts(store *s, const char *sop_uid, int (*cb)(void *ctx, const store_instance *in), void *ctx);
/* Grows whenever a conflicting copy is received (after its commit). */
uint64_t store_conflict_gen(store *s);
/* Grows whenever this process adds or removes an instance record (after
 * the commit) and whenever another process's commit is seen
 * (store_outside_gen): while it is unchanged, every SOP Instance UID names
 * the same record or none. */
uint64_t store_instance_gen(store *s);
/* Grows whenever a commit to the environment by another process is seen
 * (hub/store_outside.c): while it is unchanged, every record this process
 * did not rewrite itself holds the bytes it held. */
uint64_t store_outside_gen(store *s);
/* The id of the latest committed write transaction; a snapshot taken
 * afterwards sees at least that. */
uint64_t store_last_commit(store *s);
/* The id of the latest write transaction that added to the report index,
 * marked before it commits (an aborted one may leave its mark): an answer
 * made from a snapshot taken after commit C holds while this is <= C. */
uint64_t store_report_txn(store *s);

int store_set_study_state(store *s, const char *study_uid, study_state st, int64_t now_ms);

/* Append an audit record (who, what, which study, detail) durably. */
int store_audit(store *s, int64_t now_ms, const char *who, const char *what,
                const char *study_uid, const char *detail);
/* One audit record of a batch (the strings are borrowed). */
typedef struct store_audit_rec {
    int64_t     t_ms;
    const char *who, *what, *study_uid, *detail;
    const char *patient; /* the study's patient when the caller has it; NULL: looked up in the study index */
} store_audit_rec;
/* Append n records in order in one durable transaction (one fsync for
 * all): all of them, or none and a negative code. */
int store_audit_many(store *s, const store_audit_rec *recs, size_t n);
/* Walk audit records from sequence `from`; cb gets the JSON line. */
int store_audit_walk(store *s, uint64_t from, int (*cb)(void *ctx, uint64_t seq, const char *json, size_t len),
                     void *ctx);

typedef struct store_stats {
    uint64_t map_size, map_used;
    uint64_t studies_by_state[STUDY_STATE_COUNT];
    uint64_t instances, conflicts, audit_records;
    uint64_t commits, commit_instances, put_stored, put_duplicate, put_conflict, put_full,
             put_invalid, put_failed;
    uint64_t commit_us_buckets[12]; /* histogram: ≤0.5,1,2,5,10,20,50,100,200,500,1000 ms, +Inf */
    uint64_t commit_us_sum;
    uint64_t bytes_received;
    uint64_t outside_commits; /* times another process's commits were seen (store_outside_gen) */
    uint64_t runway_ahead;    /* zeroed bytes written past the store's end (store_config.runway_bytes) */
    uint64_t disk_free, disk_size; /* the file system holding the store (disk.h); 0 when unknown */
} store_stats;
int store_get_stats(store *s, store_stats *out);
/* An instance refused for a full disk before it reached the store (the
 * DICOM listener could not spool it): counted with put_full. */
void store_count_refused_full(store *s);
extern const double store_commit_bucket_ms[11];

/* Outbox: messages for a facility's edge (reports, critical-value alerts),
 * kept until the edge acknowledges them.  Alerts are listed first. */
int store_outbox_put(store *s, const char *facility, const char *id, const char *kind,
                     const void *data, size_t len, int64_t now_ms);
int store_outbox_list(store *s, const char *facility,
                      int (*cb)(void *ctx, const char *id, const char *kind, const void *data, size_t len),
                      void *ctx);
int store_outbox_ack(store *s, const char *facility, const char *id, int64_t now_ms); /* 0, -ENOENT */
/* A person at the clinic read alert id (who and when, as the gateway
 * says): 1 when it was unread (audited "alert-read"), 0 when it was not
 * (read already, or not an alert), or a negative errno. */
int store_alert_read(store *s, const char *facility, const char *id, const char *by, int64_t at_ms, int64_t now_ms);
/* Where alert id for facility is (the reader's closed loop on a critical
 * value): STORE_ALERT_WAITING in the outbox, the gateway has not taken it
 * (*since_ms when queued); STORE_ALERT_UNREAD taken, no person there has
 * confirmed reading it (*since_ms when taken); STORE_ALERT_NONE neither
 * (read, or never an alert: the caller knows which it sent); or < 0. */
enum { STORE_ALERT_NONE = 0, STORE_ALERT_WAITING = 1, STORE_ALERT_UNREAD = 2 };
int store_alert_state(store *s, const char *facility, const char *id, int64_t *since_ms);
/* What waits in one facility's outbox: counts by kind and when the oldest
 * of each was queued (0: unknown, queued by a hub from before this was
 * recorded, or none). */
typedef struct store_outbox_waiting {
    char     facility[64];
    unsigned alerts, reports;
    int64_t  oldest_alert_ms, oldest_report_ms;
    unsigned unread_alerts;     /* taken by the gateway, no person's confirmation yet */
    int64_t  oldest_unread_ms;  /* when the oldest of those was taken */
    char     oldest_alert_id[128], oldest_unread_id[128]; /* which, for the phone call; "" when none */
} store_outbox_waiting;
/* cb once per facility with something waiting or unread, in facility
 * order; returns how many facilities, or a negative errno. */
int store_outbox_summary(store *s, int (*cb)(void *ctx, const store_outbox_waiting *w), void *ctx);

/* Walk every stored instance (and conflicting copy), recompute its digest
 * from the stored bytes and report each one to cb (ok = digest matches). */
int store_check(store *s, int (*cb)(void *ctx, const store_instance *in, int ok, const char *why), void *ctx);

/* LMDB's consistent online copy into dir (dxhub backup). */
int store_backup(store *s, const char *dir, char *err, size_t errlen);

const char *store_dir(const store *s);

#endif

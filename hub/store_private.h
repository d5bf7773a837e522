/* store_private.h — what the store's files share (LMDB handles, record
 * layouts).  Only hub/store*.c include it: lmdb.h lives behind the store. */
#ifndef DXHUB_STORE_PRIVATE_H
#define DXHUB_STORE_PRIVATE_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include "hub/store.h"
#include "worklist/worklist.h"

#define RECORD_VERSION 1
#define STORE_OWN_IDS  256 /* this process's commit ids remembered (store_outside.c) */

typedef struct put_job put_job;

struct store {
    char        *dir;
    MDB_env     *env;
    MDB_dbi      inst, blob, study, series, sinst, patient, pending, conflict, audit, meta, outbox, report, report_idx,
                 report_pat, report_ref, repeat,
                 outbox_at, /* outbox key → when it was queued (int64 ms): how long a clinic has not taken it */
                 alert_open, /* facility \0 alert id → when the gateway took it (int64 ms), until a person reads it */
                 early; /* provisional blob ids (store_blob) not yet an instance's */
    unsigned     batch_max;
    uint64_t     map_size;
    /* group commit */
    pthread_mutex_t mu;
    pthread_cond_t  wake, done;
    put_job        *queue_head, *queue_tail;
    bool            stopping;
    bool            committing; /* a put's commit is running (committer or the caller's own thread) */
    pthread_t       committer;
    /* write-ahead space (store_runway.c) */
    uint64_t        runway_bytes;
    int             runway_fd;
    bool            runway_on, runway_stop;
    pthread_t       runway_thread;
    pthread_mutex_t runway_mu;
    pthread_cond_t  runway_cv;
    /* counters (atomics: read by /metrics from other threads) */
    _Atomic uint64_t commits, commit_instances, put_stored, put_duplicate, put_conflict, put_full,
                     put_invalid, put_failed, bytes_received, commit_us_sum;
    _Atomic uint64_t commit_us_buckets[12];
    _Atomic uint64_t evicted_studies; /* after each eviction's commit (store_instance_gen) */
    _Atomic uint64_t report_txn;      /* the latest write transaction that indexed a report (store_report_txn) */
    /* Commits by other processes (store_outside.c): own_last is the id of
     * the latest commit judged (this process's, or another's already
     * counted), own_ids the ids of this process's latest commits,
     * own_flying how many of its commits of each id (modulo) are under way,
     * outside_gen how many times others' commits were seen. */
    pthread_mutex_t  outside_mu;
    _Atomic uint64_t own_last, outside_gen;
    _Atomic uint64_t own_ids[STORE_OWN_IDS];
    _Atomic unsigned own_flying[STORE_OWN_IDS];
    pthread_mutex_t  audit_mu; /* serialises audit sequence allocation */
    /* Held around every write transaction's begin (store_write_begin), and
     * by a commit of early chunks from its begin to after its commit:
     * that commit alone runs with MDB_NOMETASYNC, an environment-wide
     * flag, so no other write transaction may begin while it is set. */
    pthread_mutex_t  write_mu;
    wl              *wl;       /* the reading worklist, in this environment */
    void           (*on_tasks)(void *ctx);
    void            *on_tasks_ctx;
    /* The id of the latest write transaction that queued tasks (or put
     * them back), 0 when reported.  Set inside it; reported only by a
     * commit of that id or later — a later writer's commit must not report
     * tasks of one still open, or they would be looked for before visible. */
    _Atomic uint64_t tasks_txn;
    /* Read transactions kept reset for reuse (store_query.c): beginning one
     * takes LMDB's reader-table lock and scans it; renewing a reset one
     * (it keeps its slot) takes neither. */
    pthread_mutex_t  rpool_mu;
    MDB_txn         *rpool[32];
    unsigned         rpool_n;
};

/* inst record (value of inst and conflict dbs) */
typedef struct inst_rec {
    uint8_t  version;
    store_instance in;
} inst_rec;

typedef struct study_rec {
    uint8_t     version;
    store_study st;
} study_rec;

/* sinst key: study \0 series \0 instance-number(BE, biased) sop  → value: sop uid */

/* Key of chunk n of an instance's bytes in `blob`: digest ‖ n (36 bytes),
 * or, for bytes written while they arrived, blob id ‖ n (12 bytes); n and
 * the id big-endian.  Returns the key's length. */
static inline size_t store_blob_key(const store_instance *in, uint32_t n, uint8_t key[36])
{
    size_t at = 0;
    if (in->blob_id) {
        for (int i = 7; i >= 0; i--)
            key[at++] = (uint8_t)(in->blob_id >> (8 * i));
    } else {
        memcpy(key, in->digest, 32);
        at = 32;
    }
    key[at++] = (uint8_t)(n >> 24);
    key[at++] = (uint8_t)(n >> 16);
    key[at++] = (uint8_t)(n >> 8);
    key[at++] = (uint8_t)n;
    return at;
}

/* Helpers shared by the store's files. */
int  store_txn_audit(store *s, MDB_txn *txn, int64_t now_ms, const char *who, const char *what,
                     const char *study_uid, const char *detail);
/* The same about st, whose patient the caller holds already (ingest). */
int  store_txn_audit_of(store *s, MDB_txn *txn, int64_t now_ms, const char *who, const char *what,
                        const store_study *st, const char *detail);
int  store_txn_get_study(store *s, MDB_txn *txn, const char *uid, store_study *out);
int  store_txn_put_study(store *s, MDB_txn *txn, const store_study *st);
void store_count_commit(store *s, uint64_t us, unsigned n);
/* Studies by state (store_counts.c), a record kept inside the transactions
 * that change studies.  adjust: a study went from state `from` to `to`
 * (-1: none; absent, deleted); ensure: at the hub's open, counts by a scan
 * if the record is missing; read: the counts of txn's snapshot (by a scan
 * if missing).  0 or an LMDB code. */
int  store_counts_adjust(store *s, MDB_txn *txn, int from, int to);
int  store_counts_ensure(store *s, MDB_txn *txn);
int  store_counts_read(store *s, MDB_txn *txn, uint64_t out[STUDY_STATE_COUNT]);
/* A study just became complete inside txn: make its reading task and
 * mark it queued (same transaction: both commit or neither). */
int  store_txn_study_completed(store *s, MDB_txn *txn, store_study *st, int64_t now_ms);
/* store_outbox_put inside txn (hub/store_outbox.c): 0, an LMDB code or EINVAL. */
int  store_txn_outbox_put(store *s, MDB_txn *txn, const char *facility, const char *id, const char *kind,
                          const void *data, size_t len, int64_t now_ms);
/* After a successful commit: tell the reader side about new tasks. */
void store_tasks_changed(store *s, MDB_txn *txn);   /* inside txn: tasks to offer */
/* After committing the transaction whose mdb_txn_id was `committed`. */
void store_notify_tasks(store *s, uint64_t committed);
int  store_lmdb_err(int rc); /* MDB code → negative errno-like code */
/* Begins a write transaction: every one of the store's goes through here
 * (see write_mu).  An LMDB code, as mdb_txn_begin. */
int  store_write_begin(store *s, MDB_txn **txn);
/* Commits a transaction: every write transaction of the store's commits
 * through here, so that commits by other processes are told apart
 * (store_outside.c; a read-only one is only ended).  An LMDB code, as
 * mdb_txn_commit. */
int  store_txn_commit(store *s, MDB_txn *txn);
/* store_instance_gen with store_outside_gen already read (a view reads
 * it once for both). */
uint64_t store_instance_gen_with(store *s, uint64_t outside);
/* Once the environment is open, before any commit: the commits so far
 * are nobody's to judge (store_outside.c). */
void store_outside_init(store *s);
/* A read transaction from the pool (renewed; a new one when the pool is
 * empty), and its end (reset, back to the pool): neither takes LMDB's
 * reader-table lock once the pool is warm (store_query.c). */
int  store_read_txn(store *s, MDB_txn **txn);
void store_read_end(store *s, MDB_txn *txn);

/* Write-ahead space (store_runway.c).  start: opens data.mdb, lays the
 * space, starts the thread that keeps it laid while the store is idle;
 * 0 or -errno.  stop: safe for a store that never started it.  ahead:
 * the zeroed bytes past end (the used size, store_stats.map_used). */
int      store_runway_start(store *s, const char *dir);
void     store_runway_stop(store *s);
uint64_t store_runway_ahead(store *s, uint64_t end);

#endif

/* store_counts.c — studies by state, kept as one record of `meta` in the
 * same transactions that change a study.
 *
 * Why: /api/v1/health, /metrics and `dxhub status` show studies by state.
 * Counting them by a scan of `study` took 0.4 s of CPU at 400,000 studies,
 * on every monitoring scrape and health check, and grows with the archive.
 * The record changes with the study rows it counts (every study write goes
 * through store_txn_put_study, an eviction's delete adjusts it too), so
 * any read transaction sees counts that agree with its snapshot, after a
 * crash too.  A store written before the record existed gets it, by one
 * scan, when the hub opens it (store_counts_ensure), and so does one
 * whose studies an older version added or deleted meanwhile. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include "hub/log.h"
#include "hub/store_private.h"

#define COUNTS_KEY "study_counts"
#define COUNTS_VERSION 1

typedef struct counts_rec {
    uint32_t version;
    uint32_t states; /* STUDY_STATE_COUNT when written: another means rebuild */
    uint64_t n[STUDY_STATE_COUNT];
} counts_rec;

static MDB_val counts_key(void) { return (MDB_val){sizeof COUNTS_KEY - 1, (void *)COUNTS_KEY}; }

/* 0 with *out filled, MDB_NOTFOUND when the record is missing or of
 * another layout, or an LMDB code. */
static int counts_get(store *s, MDB_txn *txn, counts_rec *out)
{
    MDB_val k = counts_key(), v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc)
        return rc;
    if (v.mv_size != sizeof *out)
        return MDB_NOTFOUND;
    memcpy(out, v.mv_data, sizeof *out);
    if (out->version != COUNTS_VERSION || out->states != STUDY_STATE_COUNT)
        return MDB_NOTFOUND;
    return 0;
}

/* The record's total is the number of studies (one O(1) look): a
 * version before the record, run on this store in between, added or
 * deleted studies without counting them. */
static bool counts_whole(store *s, MDB_txn *txn, const counts_rec *r)
{
    MDB_stat st;
    if (mdb_stat(txn, s->study, &st))
        return false;
    uint64_t total = 0;
    for (int i = 0; i < STUDY_STATE_COUNT; i++)
        total += r->n[i];
    return total == st.ms_entries;
}

static int counts_put(store *s, MDB_txn *txn, const counts_rec *r)
{
    MDB_val k = counts_key(), v = {sizeof *r, (void *)r};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

/* By a scan of `study`: what the record must hold. */
static int counts_scan(store *s, MDB_txn *txn, counts_rec *out)
{
    memset(out, 0, sizeof *out);
    out->version = COUNTS_VERSION;
    out->states = STUDY_STATE_COUNT;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->study, &cur);
    if (rc)
        return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        study_rec r;
        memset(&r, 0, sizeof r);
        memcpy(&r, v.mv_data, v.mv_size < sizeof r ? v.mv_size : sizeof r);
        if (r.st.state < STUDY_STATE_COUNT)
            out->n[r.st.state]++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_counts_adjust(store *s, MDB_txn *txn, int from, int to)
{
    if (from == to)
        return 0;
    counts_rec r;
    int rc = counts_get(s, txn, &r);
    if (rc == MDB_NOTFOUND)
        return 0; /* none yet: the hub's next open counts by a scan */
    if (rc)
        return rc;
    if (from >= 0 && from < STUDY_STATE_COUNT) {
        if (r.n[from] == 0) {
            /* never expected: recount rather than wrap around */
            log_warn("store: study counts disagreed with the studies (state %d at 0); recounted", from);
            if ((rc = counts_scan(s, txn, &r)))
                return rc;
            return counts_put(s, txn, &r); /* the scan already sees this transaction's change */
        }
        r.n[from]--;
    }
    if (to >= 0 && to < STUDY_STATE_COUNT)
        r.n[to]++;
    return counts_put(s, txn, &r);
}

int store_counts_ensure(store *s, MDB_txn *txn)
{
    counts_rec r;
    int rc = counts_get(s, txn, &r);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (rc == 0 && counts_whole(s, txn, &r))
        return 0;
    if (rc == 0)
        log_warn("store: study counts disagreed with the number of studies; recounted");
    if ((rc = counts_scan(s, txn, &r)))
        return rc;
    return counts_put(s, txn, &r);
}

int store_counts_read(store *s, MDB_txn *txn, uint64_t out[STUDY_STATE_COUNT])
{
    counts_rec r;
    int rc = counts_get(s, txn, &r);
    if (rc == 0 && !counts_whole(s, txn, &r))
        rc = MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND) /* a store no hub of this version opened yet (read beside it) */
        rc = counts_scan(s, txn, &r);
    if (rc)
        return rc;
    memcpy(out, r.n, sizeof r.n);
    return 0;
}

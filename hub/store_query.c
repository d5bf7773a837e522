/* store_query.c — reads: studies, instances, stored bytes, audit, stats,
 * backup.  Each call runs in its own read transaction, so readers never
 * wait for the committer (LMDB's MVCC). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "hub/disk.h"
#include "hub/pn_match.h"
#include "hub/store_private.h"

int store_txn_get_study(store *s, MDB_txn *txn, const char *uid, store_study *out)
{
    MDB_val k = {strlen(uid), (void *)uid}, v;
    int rc = mdb_get(txn, s->study, &k, &v);
    if (rc)
        return store_lmdb_err(rc);
    study_rec r;
    memset(&r, 0, sizeof r);
    memcpy(&r, v.mv_data, v.mv_size < sizeof r ? v.mv_size : sizeof r);
    *out = r.st;
    return 0;
}

int store_txn_put_study(store *s, MDB_txn *txn, const store_study *st)
{
    study_rec r = {.version = RECORD_VERSION, .st = *st};
    MDB_val k = {strlen(st->study_uid), (void *)st->study_uid}, v = {sizeof r, &r}, was;
    int from = -1, rc = mdb_get(txn, s->study, &k, &was);
    if (rc == 0) {
        study_rec old;
        memset(&old, 0, sizeof old);
        memcpy(&old, was.mv_data, was.mv_size < sizeof old ? was.mv_size : sizeof old);
        from = old.st.state;
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    if ((rc = mdb_put(txn, s->study, &k, &v, 0)))
        return rc;
    return store_counts_adjust(s, txn, from, st->state);
}

/* A read transaction: a pooled one renewed, else a new one. */
int store_read_txn(store *s, MDB_txn **txn)
{
    MDB_txn *t = NULL;
    pthread_mutex_lock(&s->rpool_mu);
    if (s->rpool_n)
        t = s->rpool[--s->rpool_n];
    pthread_mutex_unlock(&s->rpool_mu);
    if (t) {
        if (mdb_txn_renew(t) == 0) {
            *txn = t;
            return 0;
        }
        mdb_txn_abort(t);
    }
    return store_lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn));
}

/* Its end: reset (no snapshot held) and back to the pool. */
void store_read_end(store *s, MDB_txn *txn)
{
    mdb_txn_reset(txn);
    pthread_mutex_lock(&s->rpool_mu);
    if (s->rpool_n < sizeof s->rpool / sizeof s->rpool[0]) {
        s->rpool[s->rpool_n++] = txn;
        txn = NULL;
    }
    pthread_mutex_unlock(&s->rpool_mu);
    if (txn)
        mdb_txn_abort(txn);
}

int store_get_study(store *s, const char *uid, store_study *out)
{
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    rc = store_txn_get_study(s, txn, uid, out);
    store_read_end(s, txn);
    return rc;
}

int store_get_instance(store *s, const char *sop_uid, store_instance *out)
{
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    MDB_val k = {strlen(sop_uid), (void *)sop_uid}, v;
    rc = mdb_get(txn, s->inst, &k, &v);
    if (rc == 0) {
        inst_rec r;
        memset(&r, 0, sizeof r);
        memcpy(&r, v.mv_data, v.mv_size < sizeof r ? v.mv_size : sizeof r);
        *out = r.in;
    }
    store_read_end(s, txn);
    return store_lmdb_err(rc);
}

long store_read_instance(store *s, const store_instance *inst, uint64_t offset, void *buf, size_t len)
{
    if (offset >= inst->size)
        return 0;
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    size_t copied = 0;
    while (copied < len && offset + copied < inst->size) {
        uint64_t pos = offset + copied;
        uint32_t chunk = (uint32_t)(pos / STORE_CHUNK);
        uint8_t key[36];
        MDB_val k = {store_blob_key(inst, chunk, key), key}, v;
        if ((rc = mdb_get(txn, s->blob, &k, &v))) {
            store_read_end(s, txn);
            return rc == MDB_NOTFOUND ? -EIO : store_lmdb_err(rc); /* a missing chunk is corruption */
        }
        size_t in_chunk = (size_t)(pos % STORE_CHUNK);
        if (in_chunk >= v.mv_size)
            break;
        size_t n = v.mv_size - in_chunk;
        if (n > len - copied)
            n = len - copied;
        memcpy((uint8_t *)buf + copied, (uint8_t *)v.mv_data + in_chunk, n);
        copied += n;
    }
    store_read_end(s, txn);
    return (long)copied;
}

int store_read_instance_all(store *s, const store_instance *inst, void *buf)
{
    long got = store_read_instance(s, inst, 0, buf, (size_t)inst->size);
    return got < 0 ? (int)got : (uint64_t)got == inst->size ? 0 : -EIO;
}

static bool match(const store_study *st, const store_study_filter *f)
{
    if (!f)
        return true;
    if (f->patient_id && strcmp(st->patient_id, f->patient_id))
        return false;
    if (f->accession && strcmp(st->accession, f->accession))
        return false;
    if (f->patient_name && !pn_match(f->patient_name, st->patient_name))
        return false;
    if (f->state >= 0 && st->state != f->state)
        return false;
    if (f->date_from && strcmp(st->study_date, f->date_from) < 0)
        return false;
    if (f->date_to && strcmp(st->study_date, f->date_to) > 0)
        return false;
    if (f->modality) {
        size_t ml = strlen(f->modality);
        bool found = false;
        for (const char *p = st->modalities; *p && !found;) {
            size_t l = strcspn(p, "\\");
            found = l == ml && !strncmp(p, f->modality, l);
            p += l + (p[l] == '\\');
        }
        if (!found)
            return false;
    }
    return true;
}

/* A filter on nothing but the state: the number of matches is in the
 * studies-by-state record, so a page needs no walk past its end. */
static bool by_state_only(const store_study_filter *f)
{
    return !f || (!f->patient_id && !f->patient_name && !f->accession && !f->modality && !f->date_from &&
                  !f->date_to && f->state < STUDY_STATE_COUNT);
}

int store_list_studies(store *s, const store_study_filter *flt, size_t offset, size_t limit,
                       int (*cb)(void *ctx, const store_study *st), void *ctx)
{
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    int matches = 0;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, s->study, &cur))) {
        store_read_end(s, txn);
        return store_lmdb_err(rc);
    }
    MDB_val k, v;
    if (flt && flt->patient_id) {
        /* Use the patient index rather than a scan. */
        MDB_cursor *pc;
        mdb_cursor_open(txn, s->patient, &pc);
        MDB_val pk = {strlen(flt->patient_id), (void *)flt->patient_id}, pv;
        for (rc = mdb_cursor_get(pc, &pk, &pv, MDB_SET_KEY); rc == 0; rc = mdb_cursor_get(pc, &pk, &pv, MDB_NEXT_DUP)) {
            store_study st;
            char uid[STORE_UID_MAX];
            snprintf(uid, sizeof uid, "%.*s", (int)pv.mv_size, (char *)pv.mv_data);
            if (store_txn_get_study(s, txn, uid, &st) || !match(&st, flt))
                continue;
            if ((size_t)matches++ >= offset && (size_t)matches <= offset + limit && cb)
                cb(ctx, &st);
        }
        mdb_cursor_close(pc);
    } else {
        uint64_t counts[STUDY_STATE_COUNT];
        int64_t total = -1; /* unknown: count by the walk */
        if (by_state_only(flt) && store_counts_read(s, txn, counts) == 0) {
            total = 0;
            for (int i = 0; i < STUDY_STATE_COUNT; i++)
                total += !flt || flt->state < 0 || flt->state == i ? (int64_t)counts[i] : 0;
        }
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (total >= 0 && (size_t)matches >= offset + limit)
                break;
            study_rec r;
            memset(&r, 0, sizeof r);
            memcpy(&r, v.mv_data, v.mv_size < sizeof r ? v.mv_size : sizeof r);
            if (!match(&r.st, flt))
                continue;
            if ((size_t)matches++ >= offset && (size_t)matches <= offset + limit && cb)
                cb(ctx, &r.st);
        }
        if (total >= 0)
            matches = total > INT_MAX ? INT_MAX : (int)total;
    }
    mdb_cursor_close(cur);
    store_read_end(s, txn);
    return matches;
}

int store_list_instances(store *s, const char *study_uid,
                         int (*cb)(void *ctx, const store_instance *in), void *ctx)
{
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    mdb_cursor_open(txn, s->sinst, &cur);
    size_t pl = strlen(study_uid) + 1; /* prefix: study \0 */
    MDB_val k = {pl, (void *)study_uid}, v;
    int n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < pl || memcmp(k.mv_data, study_uid, pl))
            break;
        MDB_val ik = v, iv;
        if (mdb_get(txn, s->inst, &ik, &iv))
            continue;
        inst_rec r;
        memset(&r, 0, sizeof r);
        memcpy(&r, iv.mv_data, iv.mv_size < sizeof r ? iv.mv_size : sizeof r);
        n++;
        if (cb && cb(ctx, &r.in))
            break;
    }
    mdb_cursor_close(cur);
    store_read_end(s, txn);
    return n;
}

int store_list_conflicts(store *s, const char *sop_uid, int (*cb)(void *ctx, const store_instance *in), void *ctx)
{
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, s->conflict, &cur))) {
        store_read_end(s, txn);
        return store_lmdb_err(rc);
    }
    char prefix[STORE_UID_MAX + 2];
    int pl = snprintf(prefix, sizeof prefix, "%s/", sop_uid); /* conflict key: sop "/" digest hex */
    MDB_val k = {(size_t)pl, prefix}, v;
    int n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < (size_t)pl || memcmp(k.mv_data, prefix, (size_t)pl))
            break;
        inst_rec r;
        memset(&r, 0, sizeof r);
        memcpy(&r, v.mv_data, v.mv_size < sizeof r ? v.mv_size : sizeof r);
        n++;
        if (cb && cb(ctx, &r.in))
            break;
    }
    mdb_cursor_close(cur);
    store_read_end(s, txn);
    return n;
}

uint64_t store_conflict_gen(store *s) { return s->put_conflict; }

/* All three grow after their commit: a reader that reads the sum before
 * its snapshot never labels a newer snapshot with an older generation. */
uint64_t store_instance_gen_with(store *s, uint64_t outside)
{
    return s->put_stored + s->evicted_studies + outside;
}

uint64_t store_instance_gen(store *s) { return store_instance_gen_with(s, store_outside_gen(s)); }
uint64_t store_report_txn(store *s) { return atomic_load(&s->report_txn); }

uint64_t store_last_commit(store *s)
{
    MDB_envinfo info;
    return mdb_env_info(s->env, &info) ? 0 : (uint64_t)info.me_last_txnid;
}

int store_get_stats(store *s, store_stats *out)
{
    memset(out, 0, sizeof *out);
    out->outside_commits = store_outside_gen(s);
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    out->map_size = info.me_mapsize;
    out->map_used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    out->runway_ahead = store_runway_ahead(s, out->map_used);
    disk_room(s->dir, &out->disk_free, &out->disk_size); /* 0 and 0 when it cannot be asked */
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    MDB_stat ds;
    if (mdb_stat(txn, s->inst, &ds) == 0)
        out->instances = ds.ms_entries;
    if (mdb_stat(txn, s->conflict, &ds) == 0)
        out->conflicts = ds.ms_entries;
    if (mdb_stat(txn, s->audit, &ds) == 0)
        out->audit_records = ds.ms_entries;
    rc = store_counts_read(s, txn, out->studies_by_state);
    store_read_end(s, txn);
    if (rc)
        return store_lmdb_err(rc);
    out->commits = s->commits;
    out->commit_instances = s->commit_instances;
    out->put_stored = s->put_stored;
    out->put_duplicate = s->put_duplicate;
    out->put_conflict = s->put_conflict;
    out->put_full = s->put_full;
    out->put_invalid = s->put_invalid;
    out->put_failed = s->put_failed;
    out->bytes_received = s->bytes_received;
    out->commit_us_sum = s->commit_us_sum;
    for (int i = 0; i < 12; i++)
        out->commit_us_buckets[i] = s->commit_us_buckets[i];
    return 0;
}

int store_backup(store *s, const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -errno;
    }
    /* MDB_CP_COMPACT: a consistent copy of a live environment, free pages
     * omitted, taken in a read transaction (writers keep going). */
    int rc = mdb_env_copy2(s->env, dir, MDB_CP_COMPACT);
    if (rc) {
        snprintf(err, errlen, "LMDB copy to %s failed: %s", dir, mdb_strerror(rc));
        return store_lmdb_err(rc);
    }
    return 0;
}

/* store_study.c — study life cycle in the store: markers, completeness by
 * quiet time, state changes and retention (the audit trail: store_audit.c).
 *
 * DICOM has no end-of-study signal: a study is complete when a marker's
 * count is reached, or when nothing arrived for the stable time.  Studies
 * still receiving sit in the small `pending` database so the sweep never
 * scans the whole index. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/store_private.h"

static int mark_complete(store *s, MDB_txn *txn, store_study *st, int64_t now_ms, const char *why)
{
    st->state = STUDY_COMPLETE;
    st->completed_ms = now_ms;
    int rc = store_txn_study_completed(s, txn, st, now_ms);
    if (!rc)
        rc = store_txn_put_study(s, txn, st);
    MDB_val k = {strlen(st->study_uid), st->study_uid};
    if (!rc) {
        rc = mdb_del(txn, s->pending, &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (!rc)
        rc = store_txn_audit_of(s, txn, now_ms, "hub", "study-complete", st, why);
    return rc;
}

int store_study_marker(store *s, const char *study_uid, const store_marker *m, int64_t now_ms)
{
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return store_lmdb_err(rc);
    store_study st;
    if (store_txn_get_study(s, txn, study_uid, &st) != 0) {
        /* Marker before any instance: remember it in a placeholder study. */
        memset(&st, 0, sizeof st);
        snprintf(st.study_uid, sizeof st.study_uid, "%s", study_uid);
        st.state = STUDY_RECEIVING;
        st.first_ms = st.last_ms = now_ms;
        MDB_val k = {strlen(st.study_uid), st.study_uid}, v = {sizeof st.last_ms, &st.last_ms};
        if ((rc = mdb_put(txn, s->pending, &k, &v, 0)))
            goto out;
    }
    st.expected = m->expected;
    if (m->priority > st.priority)
        st.priority = m->priority;
    st.referral |= m->referral;
    if (m->note)
        snprintf(st.note, sizeof st.note, "%s", m->note);
    char why[64];
    snprintf(why, sizeof why, "marker: %u of %u instances", st.n_instances, st.expected);
    if (st.state == STUDY_RECEIVING && st.expected && st.n_instances >= st.expected)
        rc = mark_complete(s, txn, &st, now_ms, why);
    else
        rc = store_txn_put_study(s, txn, &st);
    if (!rc)
        rc = store_txn_audit(s, txn, now_ms, "hub", "study-marker", study_uid, why);
out:
    if (rc) {
        mdb_txn_abort(txn);
        return store_lmdb_err(rc);
    }
    uint64_t id = mdb_txn_id(txn);
    rc = store_txn_commit(s, txn);
    if (!rc)
        store_notify_tasks(s, id);
    return store_lmdb_err(rc);
}

int store_sweep_complete(store *s, int64_t now_ms, int64_t stable_ms,
                         void (*cb)(void *ctx, const store_study *st), void *ctx)
{
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return store_lmdb_err(rc);
    MDB_cursor *cur;
    mdb_cursor_open(txn, s->pending, &cur);
    MDB_val k, v;
    int done = 0;
    /* Collect first: marking deletes from pending under the cursor. */
    char (*due)[STORE_UID_MAX] = NULL;
    size_t n_due = 0, cap = 0;
    int ahead = 0, put_rc = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        int64_t last;
        memcpy(&last, v.mv_data, sizeof last);
        if (last > now_ms + 1000 && v.mv_size == sizeof last) {
            /* Its last arrival is later than now: stamped before the wall
             * clock went back.  Its quiet time starts now, or it would wait
             * as long as the clock went back. */
            MDB_val nv = {sizeof now_ms, &now_ms};
            if ((put_rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT)))
                break;
            ahead++;
            continue;
        }
        if (now_ms - last < stable_ms || k.mv_size >= STORE_UID_MAX)
            continue;
        if (n_due == cap) {
            cap = cap ? cap * 2 : 16;
            void *p = realloc(due, cap * sizeof *due);
            if (!p)
                break;
            due = p;
        }
        memcpy(due[n_due], k.mv_data, k.mv_size);
        due[n_due++][k.mv_size] = '\0';
    }
    mdb_cursor_close(cur);
    rc = put_rc;
    for (size_t i = 0; i < n_due && !rc; i++) {
        store_study st;
        if (store_txn_get_study(s, txn, due[i], &st) != 0 || st.state != STUDY_RECEIVING || st.n_instances == 0)
            continue;
        char why[64];
        snprintf(why, sizeof why, "quiet for %lld s", (long long)(stable_ms / 1000));
        rc = mark_complete(s, txn, &st, now_ms, why);
        if (!rc) {
            done++;
            if (cb)
                cb(ctx, &st);
        }
    }
    free(due);
    if (rc || (!done && !ahead)) {
        mdb_txn_abort(txn);
        return rc ? store_lmdb_err(rc) : 0;
    }
    uint64_t id = mdb_txn_id(txn);
    rc = store_txn_commit(s, txn);
    if (!rc)
        store_notify_tasks(s, id);
    return rc ? store_lmdb_err(rc) : done;
}

int store_set_study_state(store *s, const char *study_uid, study_state state, int64_t now_ms)
{
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return store_lmdb_err(rc);
    store_study st;
    if ((rc = store_txn_get_study(s, txn, study_uid, &st)) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    st.state = (uint8_t)state;
    if ((rc = store_txn_put_study(s, txn, &st)) ||
        (rc = store_txn_audit(s, txn, now_ms, "hub", "study-state", study_uid, study_state_name(state)))) {
        mdb_txn_abort(txn);
        return store_lmdb_err(rc);
    }
    return store_lmdb_err(store_txn_commit(s, txn));
}

/* --- retention ---------------------------------------------------------- */

static int delete_blob(store *s, MDB_txn *txn, const store_instance *in)
{
    uint32_t chunks = (uint32_t)((in->size + STORE_CHUNK - 1) / STORE_CHUNK);
    if (chunks == 0)
        chunks = 1;
    for (uint32_t c = 0; c < chunks; c++) {
        uint8_t key[36];
        MDB_val k = {store_blob_key(in, c, key), key};
        int rc = mdb_del(txn, s->blob, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

/* Delete every key with prefix in dbi (and, for sinst, the instances). */
static int delete_study_rows(store *s, MDB_txn *txn, const store_study *st)
{
    size_t pl = strlen(st->study_uid) + 1;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->sinst, &cur);
    if (rc)
        return rc;
    MDB_val k = {pl, (void *)st->study_uid}, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) {
        if (k.mv_size < pl || memcmp(k.mv_data, st->study_uid, pl))
            break;
        MDB_val iv;
        MDB_val ik = v;
        if (mdb_get(txn, s->inst, &ik, &iv) == 0) {
            inst_rec r;
            memset(&r, 0, sizeof r);
            memcpy(&r, iv.mv_data, iv.mv_size < sizeof r ? iv.mv_size : sizeof r);
            if ((rc = delete_blob(s, txn, &r.in)) || (rc = mdb_del(txn, s->inst, &ik, NULL)))
                break;
        }
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        k = (MDB_val){pl, (void *)st->study_uid};
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    mdb_cursor_open(txn, s->series, &cur);
    k = (MDB_val){pl, (void *)st->study_uid};
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) {
        if (k.mv_size < pl || memcmp(k.mv_data, st->study_uid, pl))
            break;
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        k = (MDB_val){pl, (void *)st->study_uid};
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (st->patient_id[0]) {
        MDB_val pk = {strlen(st->patient_id), (void *)st->patient_id}, pv = {strlen(st->study_uid), (void *)st->study_uid};
        rc = mdb_del(txn, s->patient, &pk, &pv);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    MDB_val sk = {strlen(st->study_uid), (void *)st->study_uid};
    rc = mdb_del(txn, s->study, &sk, NULL);
    if (rc == 0)
        rc = store_counts_adjust(s, txn, st->state, -1);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    rc = mdb_del(txn, s->pending, &sk, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_evict(store *s, int64_t older_than_ms, int max_studies, int64_t now_ms)
{
    /* Pick candidates in a read pass: signed studies first, then the
     * oldest completed ones (by completion time). */
    typedef struct cand { char uid[STORE_UID_MAX]; int64_t when; int rank; } cand;
    cand *c = NULL;
    size_t n = 0, cap = 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return store_lmdb_err(rc);
    MDB_cursor *cur;
    mdb_cursor_open(txn, s->study, &cur);
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        study_rec r;
        memcpy(&r, v.mv_data, v.mv_size < sizeof r ? v.mv_size : sizeof r);
        /* Only what nobody still has to read: signed studies, or complete
         * ones that never got a reading task.  Unread studies stay. */
        bool evictable = r.st.state == STUDY_SIGNED || (r.st.state == STUDY_COMPLETE && !r.st.task_id);
        if (!evictable || r.st.completed_ms == 0 || r.st.completed_ms > older_than_ms)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            cand *p = realloc(c, cap * sizeof *c);
            if (!p)
                break;
            c = p;
        }
        memcpy(c[n].uid, r.st.study_uid, sizeof c[n].uid);
        c[n].when = r.st.completed_ms;
        c[n].rank = r.st.state == STUDY_SIGNED ? 0 : 1;
        n++;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    rc = 0;
    /* selection of the best max_studies candidates: signed first, oldest first */
    int evicted = 0;
    for (int round = 0; round < max_studies && n > 0; round++) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (c[i].rank < c[best].rank || (c[i].rank == c[best].rank && c[i].when < c[best].when))
                best = i;
        if ((rc = store_write_begin(s, &txn)))
            break;
        store_study st;
        /* its record names the patient of the study it removes */
        if (store_txn_get_study(s, txn, c[best].uid, &st) == 0 &&
            (rc = store_txn_audit_of(s, txn, now_ms, "hub", "evict", &st, "retention")) == 0)
            rc = delete_study_rows(s, txn, &st);
        if (rc) {
            mdb_txn_abort(txn);
            break;
        }
        if ((rc = store_txn_commit(s, txn)))
            break;
        s->evicted_studies++;
        evicted++;
        c[best] = c[--n];
    }
    free(c);
    return rc && !evicted ? store_lmdb_err(rc) : evicted;
}

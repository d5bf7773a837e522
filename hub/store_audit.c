/* store_audit.c — the append-only audit trail in the store: one JSON line
 * per record under a growing sequence number, written in the transaction
 * of what it records, and walked by `dxhub audit`.
 *
 * A record about a study also names the study's patient (as the study
 * index holds it when the record is written), so an auditor can ask for
 * a patient's accesses after retention has removed the study itself. */
#include <stdio.h>
#include <string.h>
#include "hub/audit_record.h"
#include "hub/store_private.h"

/* The patient of study_uid as txn sees the index, into out ("" when none);
 * the previous answer is kept in last/last_patient for a batch's records
 * about the same study. */
static void patient_of(store *s, MDB_txn *txn, const char *study_uid, char last[STORE_UID_MAX],
                       char last_patient[STORE_UID_MAX])
{
    if (!study_uid || !*study_uid) {
        last[0] = last_patient[0] = '\0';
        return;
    }
    if (strcmp(last, study_uid) == 0)
        return;
    store_study st;
    snprintf(last, STORE_UID_MAX, "%s", study_uid);
    if (store_txn_get_study(s, txn, study_uid, &st) == 0)
        memcpy(last_patient, st.patient_id, STORE_UID_MAX);
    else
        last_patient[0] = '\0';
}

/* Appends n records after the last sequence number, under one cursor. */
static int txn_audit_many(store *s, MDB_txn *txn, const store_audit_rec *recs, size_t n)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->audit, &cur);
    if (rc)
        return rc;
    size_t seq = 1;
    MDB_val k, v;
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0) {
        memcpy(&seq, k.mv_data, sizeof seq);
        seq++;
    }
    char study[STORE_UID_MAX] = "", patient[STORE_UID_MAX] = "";
    for (size_t i = 0; i < n && !rc; i++, seq++) {
        char rec[AUDIT_RECORD_MAX];
        if (!recs[i].patient)
            patient_of(s, txn, recs[i].study_uid, study, patient);
        audit_record r = {recs[i].t_ms, recs[i].who, recs[i].what, recs[i].study_uid,
                          recs[i].patient ? recs[i].patient : patient, recs[i].detail};
        int len = audit_record_json(rec, &r);
        k = (MDB_val){sizeof seq, &seq};
        v = (MDB_val){(size_t)len, rec};
        rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND);
    }
    mdb_cursor_close(cur);
    return rc;
}

int store_txn_audit(store *s, MDB_txn *txn, int64_t now_ms, const char *who, const char *what,
                    const char *study_uid, const char *detail)
{
    store_audit_rec r = {.t_ms = now_ms, .who = who, .what = what, .study_uid = study_uid, .detail = detail};
    return txn_audit_many(s, txn, &r, 1);
}

int store_txn_audit_of(store *s, MDB_txn *txn, int64_t now_ms, const char *who, const char *what,
                       const store_study *st, const char *detail)
{
    store_audit_rec r = {.t_ms = now_ms, .who = who, .what = what, .study_uid = st->study_uid, .detail = detail,
                         .patient = st->patient_id};
    return txn_audit_many(s, txn, &r, 1);
}

int store_audit_many(store *s, const store_audit_rec *recs, size_t n)
{
    if (!n)
        return 0;
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return store_lmdb_err(rc);
    if ((rc = txn_audit_many(s, txn, recs, n))) {
        mdb_txn_abort(txn);
        return store_lmdb_err(rc);
    }
    return store_lmdb_err(store_txn_commit(s, txn));
}

int store_audit(store *s, int64_t now_ms, const char *who, const char *what, const char *study_uid,
                const char *detail)
{
    store_audit_rec r = {.t_ms = now_ms, .who = who, .what = what, .study_uid = study_uid, .detail = detail};
    return store_audit_many(s, &r, 1);
}

int store_audit_walk(store *s, uint64_t from, int (*cb)(void *ctx, uint64_t seq, const char *json, size_t len),
                     void *ctx)
{
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    mdb_cursor_open(txn, s->audit, &cur);
    size_t seq_from = (size_t)from;
    MDB_val k = {sizeof seq_from, &seq_from}, v;
    int n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t seq;
        memcpy(&seq, k.mv_data, sizeof seq);
        n++;
        if (cb(ctx, seq, v.mv_data, v.mv_size))
            break;
    }
    mdb_cursor_close(cur);
    store_read_end(s, txn);
    return n;
}


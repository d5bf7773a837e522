/* store_bench.c — reading tasks straight into the store, for the worklist
 * benchmark (store_bench.h).  The same records the ingest path makes:
 * a study (state queued, its task id) and a task by wl_add, in one
 * transaction per batch. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "hub/store_bench.h"
#include "hub/store_lookup.h"
#include "hub/store_private.h"

#define BATCH 1000

int store_bench_add_tasks(store *s, int n, const char *uid_prefix, const char *modality, int kind, int priority,
                          const char *facility, int64_t now_ms, char *err, size_t errlen)
{
    int added = 0;
    while (added < n) {
        MDB_txn *txn;
        int rc = store_write_begin(s, &txn);
        if (rc) {
            snprintf(err, errlen, "begin: %s", mdb_strerror(rc));
            return store_lmdb_err(rc);
        }
        int k = 0;
        for (; k < BATCH && added + k < n; k++) {
            store_study st;
            memset(&st, 0, sizeof st);
            snprintf(st.study_uid, sizeof st.study_uid, "%s.%d", uid_prefix, added + k + 1);
            snprintf(st.patient_id, sizeof st.patient_id, "BENCH%06d", added + k + 1);
            snprintf(st.modalities, sizeof st.modalities, "%s", modality);
            snprintf(st.origin, sizeof st.origin, "edge:%s", facility);
            st.n_instances = st.n_series = st.expected = 1;
            st.priority = (uint8_t)priority;
            st.first_ms = st.last_ms = st.completed_ms = now_ms;
            wl_task_spec spec = {.study_uid = st.study_uid, .modality = modality, .body_part = "", .facility = facility,
                                 .note = "", .kind = (wl_kind)kind, .clinic_priority = (wl_priority)priority};
            wl_task t;
            if ((rc = wl_add(s->wl, txn, &spec, now_ms + added + k, &t)) != 0) {
                snprintf(err, errlen, "wl_add: %s", wl_strerror(rc));
                mdb_txn_abort(txn);
                return rc;
            }
            st.task_id = t.id;
            st.state = STUDY_QUEUED;
            if ((rc = store_txn_put_study(s, txn, &st)) != 0) {
                snprintf(err, errlen, "study record: %d", rc);
                mdb_txn_abort(txn);
                return rc < 0 ? rc : -rc;
            }
        }
        if ((rc = store_txn_commit(s, txn)) != 0) {
            snprintf(err, errlen, "commit: %s", mdb_strerror(rc));
            return store_lmdb_err(rc);
        }
        added += k;
    }
    return added;
}

int store_bench_offer_batch(store *s, const wl_reader *r, int n, int64_t now_ms)
{
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return store_lmdb_err(rc);
    int k = 0;
    for (; k < n; k++) {
        wl_task t;
        if ((rc = wl_offer(s->wl, txn, r, now_ms, &t)) != 0)
            break;
    }
    if (rc && rc != WL_EEMPTY && rc != WL_EFULL) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = store_txn_commit(s, txn);
    return rc ? store_lmdb_err(rc) : k;
}

static int put_kv(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *p, size_t n)
{
    MDB_val k = {strlen(key), (void *)key}, v = {n, (void *)p};
    return mdb_put(txn, dbi, &k, &v, 0);
}

/* One report's records inside txn: study, instance, report blobs, index. */
static int add_report(store *s, MDB_txn *txn, const store_instance *tmpl, const store_bench_report *r)
{
    store_study st;
    memset(&st, 0, sizeof st);
    snprintf(st.study_uid, sizeof st.study_uid, "%s", r->study_uid);
    snprintf(st.patient_id, sizeof st.patient_id, "%s", r->patient_id);
    snprintf(st.modalities, sizeof st.modalities, "%s", r->modality);
    snprintf(st.origin, sizeof st.origin, "%s", r->origin);
    snprintf(st.study_date, sizeof st.study_date, "%s", r->study_date);
    st.n_instances = st.n_series = st.expected = 1;
    st.state = STUDY_SIGNED;
    st.first_ms = st.last_ms = st.completed_ms = r->reported_ms;
    inst_rec ir = {.version = RECORD_VERSION, .in = *tmpl};
    snprintf(ir.in.sop_uid, sizeof ir.in.sop_uid, "%s", r->sop_uid);
    snprintf(ir.in.study_uid, sizeof ir.in.study_uid, "%s", r->study_uid);
    char key[96];
    int rc = store_txn_put_study(s, txn, &st);
    if (!rc)
        rc = put_kv(txn, s->inst, r->sop_uid, &ir, sizeof ir);
    if (!rc)
        rc = put_kv(txn, s->report, r->report_id, r->doc, r->doc_len);
    if (!rc && (snprintf(key, sizeof key, "%s.sig", r->report_id), 1))
        rc = put_kv(txn, s->report, key, r->sig, r->sig_len);
    if (!rc && (snprintf(key, sizeof key, "%s.chain", r->report_id), 1))
        rc = put_kv(txn, s->report, key, r->chain, r->chain_len);
    if (!rc) {
        wl_task t;
        memset(&t, 0, sizeof t);
        snprintf(t.study_uid, sizeof t.study_uid, "%s", r->study_uid);
        t.kind = WL_IMAGING;
        t.version = 1;
        rc = store_txn_index_report(s, txn, &t, r->report_id, r->reported_ms);
    }
    return rc;
}

int store_bench_add_reports(store *s, const store_instance *tmpl, int n,
                            int (*make)(void *ctx, int i, store_bench_report *out), void *ctx, char *err,
                            size_t errlen)
{
    int added = 0;
    while (added < n) {
        MDB_txn *txn;
        int rc = store_write_begin(s, &txn);
        if (rc) {
            snprintf(err, errlen, "begin: %s", mdb_strerror(rc));
            return store_lmdb_err(rc);
        }
        int k = 0;
        for (; k < BATCH && added + k < n; k++) {
            store_bench_report r;
            memset(&r, 0, sizeof r);
            if ((rc = make(ctx, added + k, &r)) != 0) {
                snprintf(err, errlen, "making report %d failed", added + k);
                mdb_txn_abort(txn);
                return rc < 0 ? rc : -EINVAL;
            }
            if ((rc = add_report(s, txn, tmpl, &r)) != 0) {
                snprintf(err, errlen, "report %d: %s", added + k, mdb_strerror(rc));
                mdb_txn_abort(txn);
                return store_lmdb_err(rc);
            }
        }
        if ((rc = store_txn_commit(s, txn)) != 0) {
            snprintf(err, errlen, "commit: %s", mdb_strerror(rc));
            return store_lmdb_err(rc);
        }
        added += k;
    }
    return added;
}

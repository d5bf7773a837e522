/* store_bench.c — reading tasks straight into the store, for the worklist
 * benchmark (store_bench.h).  The same records the ingest path makes:
 * a study (state queued, its task id) and a task by wl_add, in one
 * transaction per batch. */
#include <stdio.h>
#include <string.h>
#include "hub/store_bench.h"
#include "hub/store_private.h"

#define BATCH 1000

int store_bench_add_tasks(store *s, int n, const char *uid_prefix, const char *modality, int kind, int priority,
                          const char *facility, int64_t now_ms, char *err, size_t errlen)
{
    int added = 0;
    while (added < n) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
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
        if ((rc = mdb_txn_commit(txn)) != 0) {
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
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
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
    rc = mdb_txn_commit(txn);
    return rc ? store_lmdb_err(rc) : k;
}

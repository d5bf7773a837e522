/* spool_audit.c — the clinic gateway's audit trail: records appended under
 * a growing sequence number in the caller's transaction, each naming its
 * study's patient when the spool can tell (from the item the hub sent
 * back, or from the study as it was received). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "hub/audit_record.h"
#include "hub/inbox_summary.h"
#include "hub/spool_private.h"

void spool_txn_patient(spool *s, MDB_txn *txn, const char *study_uid, char out[65])
{
    out[0] = '\0';
    if (!study_uid || !*study_uid)
        return;
    MDB_val k = {strlen(study_uid), (void *)study_uid}, v;
    if (mdb_get(txn, s->patient, &k, &v) == 0)
        snprintf(out, 65, "%.*s", (int)(v.mv_size < 64 ? v.mv_size : 64), (const char *)v.mv_data);
}

/* Study and patient of the inbox item id, as the hub's text names them. */
static void inbox_item_subject(spool *s, MDB_txn *txn, const char *id, inbox_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    MDB_val k = {strlen(id), (void *)id}, v;
    inbox_hdr h;
    if (mdb_get(txn, s->inbox, &k, &v) != 0 || v.mv_size < sizeof h)
        return;
    memcpy(&h, v.mv_data, sizeof h);
    h.kind[sizeof h.kind - 1] = '\0';
    inbox_summary_read(h.kind, (const uint8_t *)v.mv_data + sizeof h, v.mv_size - sizeof h, sum);
}

int spool_txn_audit(spool *s, MDB_txn *txn, const spool_audit_rec *r)
{
    const char *study = r->study_uid, *patient = r->patient;
    inbox_summary sum;
    char known[65];
    if (r->inbox_id && (!study || !patient)) {
        inbox_item_subject(s, txn, r->inbox_id, &sum);
        if (!study)
            study = sum.study_uid;
        if (!patient && sum.patient_id[0])
            patient = sum.patient_id;
    }
    if (!patient) {
        spool_txn_patient(s, txn, study, known);
        patient = known;
    }
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->audit, &cur);
    if (rc)
        return rc;
    uint64_t seq = spool_last_seq(cur) + 1;
    MDB_val k, v;
    char line[AUDIT_RECORD_MAX];
    audit_record ar = {r->t_ms, r->who, r->what, study, patient, r->detail};
    uint8_t key[8];
    spool_seq_key(key, seq);
    k = (MDB_val){8, key};
    v = (MDB_val){(size_t)audit_record_json(line, &ar), line};
    rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND);
    mdb_cursor_close(cur);
    return rc;
}

int spool_audit_many(spool *s, const spool_audit_rec *r, size_t n)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return spool_lerr(rc);
    for (size_t i = 0; i < n && !rc; i++)
        rc = spool_txn_audit(s, txn, &r[i]);
    if (rc) {
        mdb_txn_abort(txn);
        return spool_lerr(rc);
    }
    return spool_lerr(mdb_txn_commit(txn));
}

typedef struct audit_walk {
    int (*cb)(void *ctx, uint64_t seq, const char *json, size_t len);
    void *ctx;
    int   n;
} audit_walk;

static int audit_record_of(void *ctx, const MDB_val *k, const MDB_val *v)
{
    audit_walk *w = ctx;
    if (k->mv_size != 8)
        return 0;
    w->n++;
    return w->cb(w->ctx, spool_seq_of(k), v->mv_data, v->mv_size);
}

int spool_audit_walk(spool *s, uint64_t from, int (*cb)(void *ctx, uint64_t seq, const char *json, size_t len),
                     void *ctx)
{
    uint8_t key[8];
    spool_seq_key(key, from);
    MDB_val k = {8, key};
    audit_walk w = {cb, ctx, 0};
    int rc = spool_each(s, s->audit, &k, audit_record_of, &w);
    return rc < 0 ? rc : w.n;
}

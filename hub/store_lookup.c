/* store_lookup.c — the report index by patient and the repeat records
 * (store_lookup.h). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/store_lookup.h"
#include "hub/store_private.h"
#include "hub/triage.h"

#define REF_VERSION 1

struct store_view {
    store   *s;
    MDB_txn *txn;
    uint64_t inst_gen;    /* read before the snapshot */
    uint64_t outside_gen; /* read before the snapshot */
};

uint64_t store_view_instance_gen(const store_view *v) { return v->inst_gen; }
uint64_t store_view_outside_gen(const store_view *v) { return v->outside_gen; }

/* A view's generations, read once each before its snapshot. */
static store_view view_of(store *s)
{
    uint64_t outside = store_outside_gen(s);
    return (store_view){.s = s, .outside_gen = outside, .inst_gen = store_instance_gen_with(s, outside)};
}

static void be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static uint64_t from_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* patient \0 BE(ms) id; returns its length, 0 when it does not fit. */
static size_t pat_key(uint8_t *k, size_t cap, const char *patient, int64_t ms, const char *id)
{
    size_t pl = strlen(patient), il = strlen(id);
    if (pl + 1 + 8 + il > cap)
        return 0;
    memcpy(k, patient, pl);
    k[pl] = 0;
    be64(k + pl + 1, (uint64_t)(ms < 0 ? 0 : ms));
    memcpy(k + pl + 9, id, il);
    return pl + 9 + il;
}

int store_view_instance(store_view *v, const char *sop, store_instance *out)
{
    MDB_val k = {strlen(sop), (void *)sop}, val;
    int rc = mdb_get(v->txn, v->s->inst, &k, &val);
    if (rc)
        return store_lmdb_err(rc);
    inst_rec r;
    memset(&r, 0, sizeof r);
    memcpy(&r, val.mv_data, val.mv_size < sizeof r ? val.mv_size : sizeof r);
    *out = r.in;
    return 0;
}

static int get_blob(store_view *v, const char *id, const char *suffix, const void **p, size_t *n)
{
    char key[STORE_REPORT_ID_MAX + 8];
    snprintf(key, sizeof key, "%s%s", id, suffix);
    MDB_val k = {strlen(key), key}, val;
    int rc = mdb_get(v->txn, v->s->report, &k, &val);
    *p = rc ? NULL : val.mv_data;
    *n = rc ? 0 : val.mv_size;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_report_bytes(store_report_view *rv)
{
    if (rv->loaded)
        return 0;
    const char *id = rv->ref->report_id;
    int rc = get_blob(rv->view, id, "", &rv->doc, &rv->doc_len);
    if (!rc)
        rc = get_blob(rv->view, id, ".sig", &rv->sig, &rv->sig_len);
    if (!rc)
        rc = get_blob(rv->view, id, ".chain", &rv->chain, &rv->chain_len);
    rv->loaded = rc == 0;
    return store_lmdb_err(rc);
}

/* The view of one index record (its bytes when `bytes`). */
static int visit(store_view *v, const MDB_val *val, bool bytes, store_report_fn cb, void *ctx, int *stop)
{
    store_report_ref ref;
    memset(&ref, 0, sizeof ref);
    memcpy(&ref, val->mv_data, val->mv_size < sizeof ref ? val->mv_size : sizeof ref);
    ref.report_id[sizeof ref.report_id - 1] = 0;
    store_report_view rv = {.ref = &ref, .view = v};
    int rc = bytes ? store_report_bytes(&rv) : 0;
    if (rc)
        return rc;
    *stop = cb(ctx, &rv);
    return 0;
}

int store_reports_by_patient(store *s, const char *patient_id, int64_t since_ms, store_report_fn cb, void *ctx)
{
    uint8_t start[STORE_UID_MAX + 16];
    size_t pl = strlen(patient_id);
    size_t kl = pat_key(start, sizeof start, patient_id, since_ms, "");
    if (!kl)
        return -EINVAL;
    store_view v = view_of(s);
    int rc = store_read_txn(s, &v.txn);
    if (rc)
        return rc;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(v.txn, s->report_pat, &c))) {
        store_read_end(s, v.txn);
        return store_lmdb_err(rc);
    }
    MDB_val k = {kl, start}, val;
    int n = 0, stop = 0, err = 0;
    for (rc = mdb_cursor_get(c, &k, &val, MDB_SET_RANGE); rc == 0 && !stop;
         rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
        const uint8_t *kp = k.mv_data;
        if (k.mv_size < pl + 9 || memcmp(kp, patient_id, pl) || kp[pl] != 0)
            break; /* past this patient */
        if ((int64_t)from_be64(kp + pl + 1) < since_ms)
            continue;
        if ((err = visit(&v, &val, false, cb, ctx, &stop)) < 0)
            break;
        n++;
    }
    if (!err && rc != 0 && rc != MDB_NOTFOUND)
        err = store_lmdb_err(rc);
    mdb_cursor_close(c);
    store_read_end(s, v.txn);
    return err < 0 ? err : n;
}

int store_report_by_id(store *s, const char *report_id, store_report_fn cb, void *ctx)
{
    store_view v = view_of(s);
    int rc = store_read_txn(s, &v.txn);
    if (rc)
        return rc;
    MDB_val k = {strlen(report_id), (void *)report_id}, val;
    int stop = 0;
    rc = mdb_get(v.txn, s->report_ref, &k, &val);
    rc = rc ? store_lmdb_err(rc) : visit(&v, &val, true, cb, ctx, &stop);
    store_read_end(s, v.txn);
    return rc;
}

/* ECG signal quality as the triage judged it when the study completed
 * (hub/triage.c writes these words into the task's triage text). */
static void ecg_quality(const wl_task *t, store_report_ref *r)
{
    if (strstr(t->triage, TRIAGE_REPEAT_WORDS)) {
        r->quality = STORE_QUALITY_FAILED;
        const char *p = strstr(t->triage, "poor signal:");
        snprintf(r->quality_why, sizeof r->quality_why, "ECG signal quality: %.130s",
                 p ? p + strlen("poor signal: ") : "repeat requested");
    } else if (strstr(t->triage, TRIAGE_UNANALYSED_WORDS)) {
        r->quality = STORE_QUALITY_FAILED;
        snprintf(r->quality_why, sizeof r->quality_why, "ECG signal quality not established: %s",
                 TRIAGE_UNANALYSED_WORDS);
    } else {
        r->quality = STORE_QUALITY_PASSED;
    }
}

int store_txn_index_report(store *s, MDB_txn *txn, const wl_task *t, const char *report_id, int64_t now_ms)
{
    store_study st;
    if (store_txn_get_study(s, txn, t->study_uid, &st) != 0)
        return 0; /* evicted meanwhile: nothing to look up */
    store_report_ref r;
    memset(&r, 0, sizeof r);
    r.version = REF_VERSION;
    r.kind = t->kind;
    r.report_version = t->version ? t->version : 1;
    snprintf(r.report_id, sizeof r.report_id, "%s", report_id);
    snprintf(r.study_uid, sizeof r.study_uid, "%s", st.study_uid);
    snprintf(r.patient_id, sizeof r.patient_id, "%s", st.patient_id);
    size_t ml = strcspn(st.modalities, "\\");
    snprintf(r.modality, sizeof r.modality, "%.*s", (int)(ml < 16 ? ml : 16), st.modalities);
    snprintf(r.study_date, sizeof r.study_date, "%s", st.study_date);
    snprintf(r.origin, sizeof r.origin, "%s", st.origin);
    r.reported_ms = now_ms;
    if (t->kind == WL_ECG)
        ecg_quality(t, &r);
    uint8_t key[STORE_UID_MAX + 8 + STORE_REPORT_ID_MAX + 2];
    size_t kl = pat_key(key, sizeof key, r.patient_id, now_ms, r.report_id);
    if (!kl)
        return EINVAL;
    /* Marked before the commit: a lookup answer made from an earlier
     * snapshot is known stale from now on (store_report_txn). */
    uint64_t id = mdb_txn_id(txn), seen = atomic_load(&s->report_txn);
    while (seen < id && !atomic_compare_exchange_weak(&s->report_txn, &seen, id))
        ;
    MDB_val k = {kl, key}, v = {sizeof r, &r};
    int rc = mdb_put(txn, s->report_pat, &k, &v, 0);
    if (!rc) {
        MDB_val ik = {strlen(r.report_id), r.report_id};
        rc = mdb_put(txn, s->report_ref, &ik, &v, 0);
    }
    return rc;
}

/* times.reported ("YYYY-MM-DDThh:mm:ssZ") of a report's bytes, in ms; 0
 * when it cannot be read. */
static int64_t reported_ms(const void *doc, size_t len)
{
    json_t *j = json_loadb(doc, len, 0, NULL);
    const char *s = json_string_value(json_object_get(json_object_get(j, "times"), "reported"));
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    int64_t ms = end && !*end ? (int64_t)timegm(&tm) * 1000 : 0;
    json_decref(j);
    return ms;
}

int store_index_existing_reports(store *s)
{
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return store_lmdb_err(rc);
    MDB_stat ms;
    if ((rc = mdb_stat(txn, s->report_ref, &ms)) || ms.ms_entries) {
        mdb_txn_abort(txn);
        return rc ? store_lmdb_err(rc) : 0;
    }
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, s->report_idx, &c))) {
        mdb_txn_abort(txn);
        return store_lmdb_err(rc);
    }
    MDB_val k, v;
    int n = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const char *key = k.mv_data, *nul = memchr(key, 0, k.mv_size);
        if (!nul || (size_t)(nul - key) >= STORE_UID_MAX || k.mv_size - (size_t)(nul - key) - 1 >= STORE_REPORT_ID_MAX)
            continue;
        char study[STORE_UID_MAX], id[STORE_REPORT_ID_MAX], sig[STORE_REPORT_ID_MAX + 8];
        snprintf(study, sizeof study, "%.*s", (int)(nul - key), key);
        snprintf(id, sizeof id, "%.*s", (int)(k.mv_size - (size_t)(nul - key) - 1), nul + 1);
        snprintf(sig, sizeof sig, "%s.sig", id);
        MDB_val sk = {strlen(sig), sig}, dk = {strlen(id), id}, sv, dv;
        if (mdb_get(txn, s->report, &sk, &sv) || mdb_get(txn, s->report, &dk, &dv))
            continue; /* a draft: nothing to look up */
        int64_t at = reported_ms(dv.mv_data, dv.mv_size);
        store_study st;
        wl_task t;
        memset(&t, 0, sizeof t);
        if (store_txn_get_study(s, txn, study, &st) != 0 || !at)
            continue;
        if (!st.task_id || wl_get(s->wl, txn, st.task_id, &t) != 0) {
            memset(&t, 0, sizeof t);
            snprintf(t.study_uid, sizeof t.study_uid, "%s", study);
            t.kind = !strcmp(st.modalities, "ECG") ? WL_ECG : WL_IMAGING;
        }
        if ((rc = store_txn_index_report(s, txn, &t, id, at)) != 0)
            break;
        n++;
    }
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return store_lmdb_err(rc);
    }
    rc = store_txn_commit(s, txn);
    return rc ? store_lmdb_err(rc) : n;
}

/* --- repeats ---------------------------------------------------------------------- */

int store_repeat_put(store *s, const store_repeat *r, int64_t now_ms)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:I}", "facility", r->facility, "physician", r->physician, "reason",
                          r->reason, "note", r->note ? r->note : "", "time", (json_int_t)now_ms);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return -ENOMEM;
    uint8_t key[STORE_UID_MAX + 8 + 80];
    size_t sl = strlen(r->study_uid), fl = strlen(r->facility);
    if (sl + 9 + fl > sizeof key) {
        free(text);
        return -EINVAL;
    }
    memcpy(key, r->study_uid, sl);
    key[sl] = 0;
    be64(key + sl + 1, (uint64_t)now_ms);
    memcpy(key + sl + 9, r->facility, fl);
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc) {
        free(text);
        return store_lmdb_err(rc);
    }
    MDB_val k = {sl + 9 + fl, key}, v = {strlen(text), text};
    rc = mdb_put(txn, s->repeat, &k, &v, 0);
    if (!rc) {
        char who[96], detail[160];
        snprintf(who, sizeof who, "facility:%s", r->facility);
        snprintf(detail, sizeof detail, "reason %s", r->reason);
        rc = store_txn_audit(s, txn, now_ms, who, "exam-repeat", r->study_uid, detail);
    }
    free(text);
    if (rc) {
        mdb_txn_abort(txn);
        return store_lmdb_err(rc);
    }
    return store_lmdb_err(store_txn_commit(s, txn));
}

int store_repeat_walk(store *s, int (*cb)(void *ctx, const char *facility, const char *reason), void *ctx)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return store_lmdb_err(rc);
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, s->repeat, &c))) {
        mdb_txn_abort(txn);
        return store_lmdb_err(rc);
    }
    MDB_val k, v;
    int n = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        json_t *j = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        const char *f = json_string_value(json_object_get(j, "facility"));
        const char *why = json_string_value(json_object_get(j, "reason"));
        int stop = f && why ? cb(ctx, f, why) : 0;
        json_decref(j);
        n++;
        if (stop)
            break;
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return n;
}

/* store_triage.c — the ECG triage inside the store's transaction: when an
 * ECG study completes, its reading task is triaged in the same transaction
 * that makes it (store_txn_study_completed -> triage_ecg_task), so a
 * suspected emergency is never offered as routine, not even for a moment,
 * and a repeat request reaches the clinic's outbox with the task.
 *
 * The instance bytes are read through the transaction (the blob db: key
 * digest || chunk number, big endian; hub/store.c), never through
 * store_read_instance, which would open a second transaction. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/store_private.h"
#include "hub/triage.h"

#define TRIAGE_MAX_BYTES (64u << 20) /* a larger "ECG" is not triaged (a 10 s 12-lead is ~0.1 MiB) */
#define ECG_SOP_PREFIX   "1.2.840.10008.5.1.4.1.1.9.1." /* 12-lead, General, Ambulatory ECG Waveform Storage */
#define WAVEFORM_PREFIX  "1.2.840.10008.5.1.4.1.1.9."

/* The study's first ECG waveform instance (else its first waveform). */
static int find_ecg_instance(store *s, MDB_txn *txn, const char *study_uid, store_instance *out)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->sinst, &cur);
    if (rc)
        return rc;
    size_t pl = strlen(study_uid) + 1; /* key prefix: study \0 */
    MDB_val k = {pl, (void *)study_uid}, v;
    int found = 0; /* 2: an ECG, 1: some waveform */
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && found < 2;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < pl || memcmp(k.mv_data, study_uid, pl))
            break;
        MDB_val ik = v, iv;
        if (mdb_get(txn, s->inst, &ik, &iv))
            continue;
        inst_rec r;
        memset(&r, 0, sizeof r);
        memcpy(&r, iv.mv_data, iv.mv_size < sizeof r ? iv.mv_size : sizeof r);
        int kind = !strncmp(r.in.sop_class, ECG_SOP_PREFIX, strlen(ECG_SOP_PREFIX))    ? 2
                   : !strncmp(r.in.sop_class, WAVEFORM_PREFIX, strlen(WAVEFORM_PREFIX)) ? 1
                                                                                          : 0;
        if (kind > found) {
            *out = r.in;
            found = kind;
        }
    }
    mdb_cursor_close(cur);
    return found ? 0 : MDB_NOTFOUND;
}

/* The stored file's bytes, chunk by chunk, into a malloc'd buffer. */
static int read_instance(store *s, MDB_txn *txn, const store_instance *in, uint8_t **out)
{
    *out = NULL;
    if (in->size == 0 || in->size > TRIAGE_MAX_BYTES)
        return EFBIG;
    uint8_t *buf = malloc((size_t)in->size);
    if (!buf)
        return ENOMEM;
    size_t got = 0;
    for (uint32_t chunk = 0; got < in->size; chunk++) {
        uint8_t key[36];
        MDB_val k = {store_blob_key(in, chunk, key), key}, v;
        int rc = mdb_get(txn, s->blob, &k, &v);
        if (rc || v.mv_size == 0 || v.mv_size > in->size - got) {
            free(buf);
            return rc && rc != MDB_NOTFOUND ? rc : EIO;
        }
        memcpy(buf + got, v.mv_data, v.mv_size);
        got += v.mv_size;
    }
    *out = buf;
    return 0;
}

/* Measure the instance; 0 with *m filled, else why (the task says so). */
static int measure(const uint8_t *p, size_t len, ecg_measurements *m, char *why, size_t why_len)
{
    dcm_file *f = NULL;
    ecg_record *r = NULL;
    dcm_err err = {0};
    int rc = dcm_parse(p, len, NULL, &f, &err);
    if (rc == 0)
        rc = ecg_read_dicom(f, NULL, &r, &err);
    if (rc == 0)
        rc = ecg_measure(r, NULL, m, &err);
    if (rc < 0)
        snprintf(why, why_len, "%s", err.msg[0] ? err.msg : ecg_strerror(rc));
    ecg_free(&r);
    dcm_free(&f);
    return rc < 0 ? rc : 0;
}

/* The clinic's repeat request: what, which study, why.  No patient data
 * beyond the identifiers the clinic itself sent. */
static char *repeat_alert(const store_study *st, const wl_task *t, const triage_result *tr, int64_t now_ms)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:I}", "type", "ecg-repeat-request", "study", st->study_uid,
                          "accession", st->accession, "task", (json_int_t)t->id, "reason", tr->repeat, "request",
                          "Please record this ECG again: automatic checks found a signal problem "
                          "(not a diagnosis).",
                          "triage", tr->text, "time", (json_int_t)now_ms);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return text;
}

static void flag_list(unsigned flags, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (unsigned bit = 1; bit && bit <= TRIAGE_REPEAT; bit <<= 1) {
        const char *name = (flags & bit) ? triage_flag_name(bit) : NULL;
        if (name && used + 1 < n) {
            int k = snprintf(out + used, n - used, "%s%s", used ? "," : "", name);
            used = k > 0 && used + (size_t)k < n ? used + (size_t)k : n - 1;
        }
    }
}

int triage_ecg_task(store *s, MDB_txn *txn, const store_study *st, wl_task *t, int64_t now_ms)
{
    if (t->kind != WL_ECG)
        return 0;
    store_instance in;
    memset(&in, 0, sizeof in);
    uint8_t *bytes = NULL;
    char why[256] = "";
    ecg_measurements m;
    memset(&m, 0, sizeof m);
    int rc = find_ecg_instance(s, txn, st->study_uid, &in);
    if (rc == MDB_NOTFOUND) {
        snprintf(why, sizeof why, "no ECG waveform instance in the study");
    } else if (rc) {
        return rc;
    } else if ((rc = read_instance(s, txn, &in, &bytes)) != 0) {
        if (rc != EFBIG && rc != EIO)
            return rc; /* LMDB or memory: the transaction cannot go on */
        snprintf(why, sizeof why, rc == EFBIG ? "ECG instance too large to triage" : "ECG instance bytes missing");
    } else {
        measure(bytes, (size_t)in.size, &m, why, sizeof why);
    }
    free(bytes);
    rc = 0;
    triage_result tr;
    memset(&tr, 0, sizeof tr);
    if (why[0]) {
        snprintf(tr.text, sizeof tr.text, "AUTO-TRIAGE: the ECG " TRIAGE_UNANALYSED_WORDS " (%.180s)", why);
    } else {
        triage_patient p = {.sex = st->patient_sex[0] == 'M' || st->patient_sex[0] == 'F' ? st->patient_sex[0] : 0,
                            .age = triage_age(st->patient_birth_date, st->study_date)};
        triage_ecg(&m, &p, &tr);
    }
    ecg_measure_release(&m);
    if (tr.text[0] && (rc = wl_set_triage(s->wl, txn, t->id, tr.text, now_ms)) != 0)
        return EIO;
    if (tr.flags & TRIAGE_EMERGENCY) {
        char note[96];
        flag_list(tr.flags & TRIAGE_EMERGENCY, note, sizeof note);
        char raised[128];
        snprintf(raised, sizeof raised, "ECG triage suggests: %s", note);
        if (wl_raise(s->wl, txn, t->id, WL_STAT, raised, now_ms) < 0)
            return EIO;
    }
    /* A repeat request goes to the clinic now, ahead of the reading. */
    if ((tr.flags & TRIAGE_REPEAT) && !strncmp(st->origin, "edge:", 5) && st->origin[5]) {
        char *alert = repeat_alert(st, t, &tr, now_ms);
        char id[64];
        snprintf(id, sizeof id, "ecg-repeat-%llu", (unsigned long long)t->id);
        rc = alert ? store_txn_outbox_put(s, txn, st->origin + 5, id, "alert", alert, strlen(alert), now_ms) : ENOMEM;
        free(alert);
        if (rc)
            return rc;
    }
    char detail[200], flags[160];
    flag_list(tr.flags, flags, sizeof flags);
    snprintf(detail, sizeof detail, "task %llu: %s", (unsigned long long)t->id,
             why[0] ? "not analysed" : flags[0] ? flags : "no finding");
    if ((rc = store_txn_audit(s, txn, now_ms, "hub", "ecg-triage", st->study_uid, detail)) != 0)
        return rc;
    return wl_get(s->wl, txn, t->id, t) ? EIO : 0;
}

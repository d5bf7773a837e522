/* store_tasks.c — the reading worklist inside the store's environment:
 * tasks are made in the same transaction that completes their study, and
 * every reader action changes the task, the study state, the stored
 * report and the audit trail in one transaction. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/store_lookup.h"
#include "hub/store_private.h"
#include "hub/store_tasks.h"
#include "hub/triage.h"

void store_tasks_changed(store *s, MDB_txn *txn)
{
    uint64_t id = mdb_txn_id(txn), t = atomic_load(&s->tasks_txn);
    while (t < id && !atomic_compare_exchange_weak(&s->tasks_txn, &t, id))
        ;
}

void store_notify_tasks(store *s, uint64_t committed)
{
    uint64_t t = atomic_load(&s->tasks_txn);
    while (t && t <= committed) /* ids grow with commits: that one is visible now */
        if (atomic_compare_exchange_weak(&s->tasks_txn, &t, 0)) {
            if (s->on_tasks)
                s->on_tasks(s->on_tasks_ctx);
            return;
        }
}

static const char *facility_of(const char *origin)
{
    /* "edge:clinic1" → "clinic1"; "dicom:CT_AE" → "CT_AE" */
    const char *c = strchr(origin, ':');
    return c ? c + 1 : origin;
}

static int is_ecg_study(const store_study *st)
{
    return !strcmp(st->modalities, "ECG");
}

int store_txn_study_completed(store *s, MDB_txn *txn, store_study *st, int64_t now_ms)
{
    if (st->task_id) {
        wl_task t;
        if (wl_get(s->wl, txn, st->task_id, &t) == 0 && t.state != WL_CANCELLED) {
            st->state = t.state == WL_SIGNED ? STUDY_SIGNED : STUDY_QUEUED;
            return 0; /* a late arrival completed it again: same task */
        }
    }
    const char *first_mod = st->modalities;
    char mod[17];
    size_t ml = strcspn(first_mod, "\\");
    snprintf(mod, sizeof mod, "%.*s", (int)(ml < 16 ? ml : 16), first_mod);
    wl_task_spec spec = {.study_uid = st->study_uid, .modality = mod, .body_part = st->body_part,
                         .facility = facility_of(st->origin), .note = st->note,
                         .kind = is_ecg_study(st) ? WL_ECG : WL_IMAGING,
                         .clinic_priority = (wl_priority)(st->priority <= WL_STAT ? st->priority : WL_ROUTINE),
                         .referral = st->referral};
    wl_task t;
    int rc = wl_add(s->wl, txn, &spec, now_ms, &t);
    if (rc)
        return EIO;
    if ((rc = triage_ecg_task(s, txn, st, &t, now_ms))) /* ECG: suggestions, STAT, repeat request */
        return rc;
    st->task_id = t.id;
    st->state = STUDY_QUEUED;
    store_tasks_changed(s, txn);
    char detail[64];
    snprintf(detail, sizeof detail, "task %llu %s", (unsigned long long)t.id, wl_priority_name(t.priority));
    return store_txn_audit(s, txn, now_ms, "hub", "task-queued", st->study_uid, detail);
}

/* --- reader actions, group-committed ---------------------------------------------
 * The reader link applies every request that arrived together in one write
 * transaction (a batch) and answers them after its one commit.  A refusal
 * (not yours, nothing to offer...) is decided before anything is written, so
 * it leaves the batch intact; a storage failure spoils the batch, and every
 * request in it is then refused. */

struct store_batch {
    store   *s;
    MDB_txn *txn;
    int      failed; /* a storage error: the transaction can only be aborted */
};

int store_batch_begin(store *s, store_batch **out)
{
    store_batch *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->s = s;
    int rc = store_write_begin(s, &b->txn);
    if (rc) {
        free(b);
        return store_lmdb_err(rc);
    }
    *out = b;
    return 0;
}

void store_batch_abort(store_batch **bp)
{
    if (!bp || !*bp)
        return;
    mdb_txn_abort((*bp)->txn);
    free(*bp);
    *bp = NULL;
}

int store_batch_commit(store_batch **bp)
{
    store_batch *b = *bp;
    if (b->failed) {
        store_batch_abort(bp);
        return WL_ESTORE;
    }
    store *s = b->s;
    uint64_t id = mdb_txn_id(b->txn);
    int rc = store_txn_commit(s, b->txn);
    free(b);
    *bp = NULL;
    if (rc)
        return store_lmdb_err(rc);
    store_notify_tasks(s, id);
    return 0;
}

/* Each action: refused at once when the batch already failed; a storage
 * error marks it failed. */
static int spoil(store_batch *b, int rc)
{
    if (rc == WL_ESTORE)
        b->failed = 1;
    return rc;
}

/* The study's state; the study as written in *out when out is given
 * (*has: whether there is one), which spares a claim a second read. */
static int study_state_to(store *s, MDB_txn *txn, const char *uid, study_state state, store_study *out, int *has)
{
    store_study local, *st = out ? out : &local;
    if (has)
        *has = 0;
    if (store_txn_get_study(s, txn, uid, st) != 0)
        return 0;
    st->state = (uint8_t)state;
    if (store_txn_put_study(s, txn, st))
        return WL_ESTORE;
    if (has)
        *has = 1;
    return 0;
}

static int set_study_state(store *s, MDB_txn *txn, const char *uid, study_state state)
{
    return study_state_to(s, txn, uid, state, NULL, NULL);
}

int store_batch_offer(store_batch *b, const wl_reader *r, int64_t now, wl_task *out, store_study *st, int *has_st)
{
    if (b->failed)
        return WL_ESTORE;
    int rc = wl_offer(b->s->wl, b->txn, r, now, out);
    if (!rc && st)
        *has_st = store_txn_get_study(b->s, b->txn, out->study_uid, st) == 0;
    return spoil(b, rc);
}

int store_batch_claim(store_batch *b, uint64_t id, const wl_reader *r, int64_t now, wl_task *out, store_study *st,
                      int *has_st)
{
    if (b->failed)
        return WL_ESTORE;
    store *s = b->s;
    int rc = wl_claim(s->wl, b->txn, id, r, now, out);
    if (!rc)
        rc = study_state_to(s, b->txn, out->study_uid, STUDY_READING, st, has_st);
    if (!rc) {
        char detail[64];
        snprintf(detail, sizeof detail, "task %llu", (unsigned long long)id);
        char who[96];
        snprintf(who, sizeof who, "reader:%s", r->id);
        rc = store_txn_audit(s, b->txn, now, who, "claim", out->study_uid, detail) ? WL_ESTORE : 0;
    }
    return spoil(b, rc);
}

int store_batch_heartbeat(store_batch *b, const char *reader, int64_t now)
{
    if (b->failed)
        return WL_ESTORE;
    return spoil(b, wl_heartbeat(b->s->wl, b->txn, reader, now));
}

int store_batch_release(store_batch *b, uint64_t id, const char *reader, int64_t now)
{
    if (b->failed)
        return WL_ESTORE;
    store *s = b->s;
    wl_task t;
    int rc = wl_get(s->wl, b->txn, id, &t);
    if (!rc)
        rc = wl_release(s->wl, b->txn, id, reader, now);
    if (!rc)
        rc = set_study_state(s, b->txn, t.study_uid, STUDY_QUEUED);
    return spoil(b, rc);
}

int store_batch_tick(store_batch *b, int64_t now)
{
    if (b->failed)
        return WL_ESTORE;
    int n = wl_tick(b->s->wl, b->txn, now);
    if (n > 0)
        store_tasks_changed(b->s, b->txn); /* tasks back in line: offer them */
    return spoil(b, n);
}

int store_batch_offer_task(store_batch *b, uint64_t id, const wl_reader *r, int64_t now)
{
    if (b->failed)
        return WL_ESTORE;
    return spoil(b, wl_offer_task(b->s->wl, b->txn, id, r, now, NULL));
}

/* --- offers decided on a read snapshot ---------------------------------------------- */

struct store_view {
    store   *s;
    MDB_txn *txn;
};

int store_view_begin(store *s, store_view **out)
{
    store_view *v = calloc(1, sizeof *v);
    if (!v)
        return -ENOMEM;
    v->s = s;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &v->txn);
    if (rc) {
        free(v);
        return store_lmdb_err(rc);
    }
    *out = v;
    return 0;
}

void store_view_end(store_view **vp)
{
    if (!vp || !*vp)
        return;
    mdb_txn_abort((*vp)->txn);
    free(*vp);
    *vp = NULL;
}

uint64_t store_view_commit(const store_view *v) { return (uint64_t)mdb_txn_id(v->txn); }

int store_view_held(store_view *v, const char *reader) { return wl_held_count(v->s->wl, v->txn, reader); }

int store_view_pick(store_view *v, const wl_reader *r, const wl_skip *skip, int64_t now, wl_task *out, store_study *st,
                    int *has_st)
{
    int rc = wl_pick(v->s->wl, v->txn, r, skip, now, out);
    if (!rc && st)
        *has_st = store_txn_get_study(v->s, v->txn, out->study_uid, st) == 0;
    return rc;
}

int store_view_task(store_view *v, uint64_t id, wl_task *out) { return wl_get(v->s->wl, v->txn, id, out); }

/* --- the same actions, one transaction each ---------------------------------------- */

/* Run one action in a batch of its own: its result, or the commit's failure. */
static int alone(store_batch *b, int rc)
{
    if (rc < 0 && !b->failed) {
        store_batch_abort(&b);
        return rc;
    }
    int crc = store_batch_commit(&b);
    return crc ? crc : rc;
}

int store_task_offer(store *s, const wl_reader *r, int64_t now, wl_task *out)
{
    store_batch *b;
    int rc = store_batch_begin(s, &b);
    return rc ? rc : alone(b, store_batch_offer(b, r, now, out, NULL, NULL));
}

int store_task_claim(store *s, uint64_t id, const wl_reader *r, int64_t now, wl_task *out)
{
    store_batch *b;
    int rc = store_batch_begin(s, &b);
    return rc ? rc : alone(b, store_batch_claim(b, id, r, now, out, NULL, NULL));
}

int store_task_heartbeat(store *s, const char *reader, int64_t now)
{
    store_batch *b;
    int rc = store_batch_begin(s, &b);
    return rc ? rc : alone(b, store_batch_heartbeat(b, reader, now));
}

int store_task_release(store *s, uint64_t id, const char *reader, int64_t now)
{
    store_batch *b;
    int rc = store_batch_begin(s, &b);
    return rc ? rc : alone(b, store_batch_release(b, id, reader, now));
}

int store_task_tick(store *s, int64_t now)
{
    store_batch *b;
    int rc = store_batch_begin(s, &b);
    return rc ? rc : alone(b, store_batch_tick(b, now));
}

int store_task_get(store *s, uint64_t id, wl_task *out)
{
    MDB_txn *txn;
    int rc = store_lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc)
        return rc;
    rc = wl_get(s->wl, txn, id, out);
    mdb_txn_abort(txn);
    return rc;
}

int store_task_walk(store *s, int queue_order, int (*cb)(void *ctx, const wl_task *t), void *ctx)
{
    MDB_txn *txn;
    int rc = store_lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc)
        return rc;
    rc = queue_order ? wl_list_queue(s->wl, txn, cb, ctx) : wl_list(s->wl, txn, cb, ctx);
    mdb_txn_abort(txn);
    return rc;
}

typedef struct signed_walk {
    store   *s;
    MDB_txn *txn;
    int (*cb)(void *ctx, const wl_task *t, int64_t signed_ms);
    void    *ctx;
    int64_t  signed_ms;
} signed_walk;

static int last_signed(void *ctx, const wl_event *e)
{
    if (!strcmp(e->what, "signed"))
        ((signed_walk *)ctx)->signed_ms = e->at_ms;
    return 0;
}

static int with_signed(void *ctx, const wl_task *t)
{
    signed_walk *w = ctx;
    w->signed_ms = 0;
    if (t->state == WL_SIGNED)
        wl_history(w->s->wl, w->txn, t->id, last_signed, w);
    return w->cb(w->ctx, t, w->signed_ms);
}

int store_task_walk_signed(store *s, int (*cb)(void *ctx, const wl_task *t, int64_t signed_ms), void *ctx)
{
    MDB_txn *txn;
    int rc = store_lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc)
        return rc;
    signed_walk w = {s, txn, cb, ctx, 0};
    rc = wl_list(s->wl, txn, with_signed, &w);
    mdb_txn_abort(txn);
    return rc;
}

int store_task_history(store *s, uint64_t id, int (*cb)(void *ctx, const wl_event *e), void *ctx)
{
    MDB_txn *txn;
    int rc = store_lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc)
        return rc;
    rc = wl_history(s->wl, txn, id, cb, ctx);
    mdb_txn_abort(txn);
    return rc;
}

/* --- reports: a submission is its own transaction ---------------------------- */

static int begin(store *s, MDB_txn **txn)
{
    return store_lmdb_err(store_write_begin(s, txn));
}

static int finish(store *s, MDB_txn *txn, int rc)
{
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    uint64_t id = mdb_txn_id(txn);
    rc = store_txn_commit(s, txn);
    if (!rc)
        store_notify_tasks(s, id);
    return rc ? store_lmdb_err(rc) : 0;
}

static int put_blob(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *p, size_t n)
{
    MDB_val k = {strlen(key), (void *)key}, v = {n, (void *)p};
    return mdb_put(txn, dbi, &k, &v, 0);
}

/* s cut to fit n bytes without splitting a UTF-8 character (into buf). */
static const char *utf8_cut(const char *s, char *buf, size_t n)
{
    size_t len = s ? strlen(s) : 0;
    if (len >= n) {
        len = n - 1;
        while (len && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--; /* s[len] would start the cut: back to a character's first byte */
    }
    memcpy(buf, s ? s : "", len);
    buf[len] = '\0';
    return buf;
}

/* An addendum: a new version of the signed task, claimed and signed by
 * the reader in the same transaction; the signed original is untouched. */
static int addendum(store *s, MDB_txn *txn, const store_submission *sub, int64_t now, wl_task *t)
{
    int rc = wl_addendum(s->wl, txn, sub->task, sub->reader, now, t);
    return rc ? rc : wl_sign(s->wl, txn, t->id, sub->reader, sub->report_id, now, t);
}

int store_task_submit(store *s, const store_submission *sub, int64_t now, wl_task *out, char *why, size_t why_len)
{
    if (!sub->report_id || !sub->report_id[0] || strlen(sub->report_id) > 60 || strchr(sub->report_id, '/')) {
        snprintf(why, why_len, "report_id missing or invalid");
        return WL_EINVAL;
    }
    MDB_txn *txn;
    int rc = begin(s, &txn);
    if (rc)
        return rc;
    wl_task t;
    rc = wl_get(s->wl, txn, sub->task, &t);
    if (rc) {
        snprintf(why, why_len, "no such task");
        return finish(s, txn, rc);
    }
    /* Verification hook: runs inside the transaction, before anything is
     * stored; a refusal leaves no trace but the audit record. */
    if (sub->verify && (rc = sub->verify(sub->verify_ctx, &t, sub, why, why_len)) != 0) {
        mdb_txn_abort(txn);
        char who[96];
        snprintf(who, sizeof who, "reader:%s", sub->reader->id);
        store_audit(s, now, who, "submit-refused", t.study_uid, why);
        return rc;
    }
    const char *action = sub->action;
    char reason[128]; /* what the history keeps of a return's reason */
    if (!strcmp(action, "draft"))
        rc = wl_draft(s->wl, txn, sub->task, sub->reader, sub->report_id, now, &t);
    else if (!strcmp(action, "sign"))
        rc = wl_sign(s->wl, txn, sub->task, sub->reader, sub->report_id, now, &t);
    else if (!strcmp(action, "return"))
        rc = wl_return(s->wl, txn, sub->task, sub->reader, utf8_cut(sub->reason, reason, sizeof reason), now);
    else if (!strcmp(action, "addendum"))
        rc = addendum(s, txn, sub, now, &t);
    else
        rc = WL_EINVAL;
    if (rc) {
        snprintf(why, why_len, "%s", wl_strerror(rc));
        return finish(s, txn, rc);
    }
    char key[96];
    if (sub->report && sub->report_len) {
        snprintf(key, sizeof key, "%s", sub->report_id);
        rc = put_blob(txn, s->report, key, sub->report, sub->report_len);
        if (!rc && sub->sig_len) {
            snprintf(key, sizeof key, "%s.sig", sub->report_id);
            rc = put_blob(txn, s->report, key, sub->sig, sub->sig_len);
        }
        if (!rc && sub->chain_len) {
            snprintf(key, sizeof key, "%s.chain", sub->report_id);
            rc = put_blob(txn, s->report, key, sub->chain, sub->chain_len);
        }
        if (!rc) {
            /* index: study → report ids */
            char ik[160];
            int il = snprintf(ik, sizeof ik, "%s%c%s", t.study_uid, 0, sub->report_id);
            MDB_val k = {(size_t)il, ik}, v = {0, ""};
            rc = mdb_put(txn, s->report_idx, &k, &v, 0);
        }
        /* A signed report can be looked up by patient from now on. */
        if (!rc && t.state == WL_SIGNED && sub->sig_len)
            rc = store_txn_index_report(s, txn, &t, sub->report_id, now);
        if (rc) {
            snprintf(why, why_len, "storing the report failed: %s", mdb_strerror(rc));
            return finish(s, txn, store_lmdb_err(rc));
        }
    }
    study_state st = t.state == WL_SIGNED ? STUDY_SIGNED : t.state == WL_REVIEW || t.state == WL_DRAFTED ? STUDY_REPORTED
                                                                                                    : STUDY_READING;
    if ((rc = set_study_state(s, txn, t.study_uid, st)) == 0) {
        char who[96], detail[128];
        snprintf(who, sizeof who, "reader:%s", sub->reader->id);
        snprintf(detail, sizeof detail, "task %llu %s report %s", (unsigned long long)t.id, action, sub->report_id);
        rc = store_txn_audit(s, txn, now, who, "submit", t.study_uid, detail) ? WL_ESTORE : 0;
    }
    if (out)
        *out = t;
    return finish(s, txn, rc);
}

/* --- what a reader asks about its own tasks ------------------------------------ */

typedef struct last_return {
    char why[128], by[WL_ID_MAX];
} last_return;

static int note_return(void *ctx, const wl_event *e)
{
    last_return *r = ctx;
    /* A return counts until the task is drafted, signed or cancelled again. */
    if (!strcmp(e->what, "returned")) {
        snprintf(r->why, sizeof r->why, "%s", e->note);
        snprintf(r->by, sizeof r->by, "%s", e->actor);
    } else if (!strncmp(e->what, "drafted", 7) || !strcmp(e->what, "signed") || !strcmp(e->what, "cancelled")) {
        r->why[0] = r->by[0] = '\0';
    }
    return 0;
}

static int returned_in(store *s, MDB_txn *txn, uint64_t id, last_return *r)
{
    memset(r, 0, sizeof *r);
    return wl_history(s->wl, txn, id, note_return, r);
}

int store_task_returned(store *s, uint64_t id, char *why, size_t why_len, char *by, size_t by_len)
{
    MDB_txn *txn;
    int rc = store_lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc)
        return rc;
    last_return r;
    rc = returned_in(s, txn, id, &r);
    mdb_txn_abort(txn);
    snprintf(why, why_len, "%s", r.why);
    snprintf(by, by_len, "%s", r.by);
    return rc;
}

typedef struct held_walk {
    store   *s;
    MDB_txn *txn;
    int    (*cb)(void *ctx, const wl_task *t, const char *returned, const char *returned_by);
    void    *ctx;
} held_walk;

static int held_one(void *ctx, const wl_task *t)
{
    held_walk *h = ctx;
    if (t->state != WL_CLAIMED && t->state != WL_DRAFTED)
        return 0; /* offers are not held */
    last_return r;
    returned_in(h->s, h->txn, t->id, &r);
    return h->cb(h->ctx, t, r.why, r.by);
}

int store_task_held(store *s, const char *reader,
                    int (*cb)(void *ctx, const wl_task *t, const char *returned, const char *returned_by), void *ctx)
{
    MDB_txn *txn;
    int rc = store_lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc)
        return rc;
    held_walk h = {s, txn, cb, ctx};
    rc = wl_held_by(s->wl, txn, reader, held_one, &h);
    mdb_txn_abort(txn);
    return rc;
}

long store_report_get(store *s, const char *key, void *buf, size_t len)
{
    MDB_txn *txn;
    int rc = store_lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc)
        return rc;
    MDB_val k = {strlen(key), (void *)key}, v;
    rc = mdb_get(txn, s->report, &k, &v);
    long n = rc ? store_lmdb_err(rc) : (long)v.mv_size;
    if (!rc && buf)
        memcpy(buf, v.mv_data, v.mv_size < len ? v.mv_size : len);
    mdb_txn_abort(txn);
    return n;
}

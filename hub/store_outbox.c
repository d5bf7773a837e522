/* store_outbox.c — durable messages from the hub to a clinic's edge.
 * Key: facility \0 rank \0 id (rank 0 for alerts so they sort, and are
 * delivered, ahead of everything else); value: kind \0 bytes.  The same
 * key in outbox_at holds when it was queued, so the hub can say how long
 * a clinic has not taken a critical-value alert. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/store_private.h"

static size_t outbox_key(char *k, size_t n, const char *facility, const char *kind, const char *id)
{
    int rank = !strcmp(kind, "alert") ? 0 : 1;
    return (size_t)snprintf(k, n, "%s%c%d%c%s", facility, 0, rank, 0, id);
}

static size_t open_key(char *k, size_t n, const char *facility, const char *id)
{
    return (size_t)snprintf(k, n, "%s%c%s", facility, 0, id);
}

static int mark_unread(store *s, MDB_txn *txn, const char *facility, const char *id, int64_t now_ms)
{
    char key[512];
    size_t kl = open_key(key, sizeof key, facility, id);
    if (kl >= sizeof key)
        return EINVAL;
    MDB_val k = {kl, key}, v = {sizeof now_ms, &now_ms};
    return mdb_put(txn, s->alert_open, &k, &v, 0);
}

int store_alert_read(store *s, const char *facility, const char *id, const char *by, int64_t at_ms, int64_t now_ms)
{
    char key[512];
    size_t kl = open_key(key, sizeof key, facility, id);
    if (kl >= sizeof key)
        return -EINVAL;
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return store_lmdb_err(rc);
    MDB_val k = {kl, key};
    rc = mdb_del(txn, s->alert_open, &k, NULL);
    if (rc == MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return 0;
    }
    if (!rc) {
        char who[96], detail[400], when[32] = "?";
        time_t t = (time_t)(at_ms / 1000);
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(who, sizeof who, "edge:%s", facility);
        snprintf(detail, sizeof detail, "%s read by %s at %s", id, by, when);
        rc = store_txn_audit(s, txn, now_ms, who, "alert-read", "", detail);
    }
    if (rc) {
        mdb_txn_abort(txn);
        return store_lmdb_err(rc);
    }
    rc = store_txn_commit(s, txn);
    return rc ? store_lmdb_err(rc) : 1;
}

int store_alert_state(store *s, const char *facility, const char *id, int64_t *since_ms)
{
    char key[512];
    size_t ql = outbox_key(key, sizeof key, facility, "alert", id);
    if (ql >= sizeof key)
        return -EINVAL;
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    int state = STORE_ALERT_NONE;
    MDB_val k = {ql, key}, v;
    *since_ms = 0;
    if (mdb_get(txn, s->outbox, &k, &v) == 0) {
        state = STORE_ALERT_WAITING;
        if (mdb_get(txn, s->outbox_at, &k, &v) == 0 && v.mv_size == sizeof *since_ms)
            memcpy(since_ms, v.mv_data, sizeof *since_ms);
    } else {
        k = (MDB_val){open_key(key, sizeof key, facility, id), key};
        if (mdb_get(txn, s->alert_open, &k, &v) == 0) {
            state = STORE_ALERT_UNREAD;
            if (v.mv_size == sizeof *since_ms)
                memcpy(since_ms, v.mv_data, sizeof *since_ms);
        }
    }
    store_read_end(s, txn);
    return state;
}

static int put_queued_at(store *s, MDB_txn *txn, MDB_val *key, int64_t now_ms)
{
    MDB_val v = {sizeof now_ms, &now_ms};
    return mdb_put(txn, s->outbox_at, key, &v, 0);
}

int store_outbox_put(store *s, const char *facility, const char *id, const char *kind, const void *data,
                     size_t len, int64_t now_ms)
{
    char key[512];
    size_t kl = outbox_key(key, sizeof key, facility, kind, id);
    if (kl >= sizeof key || strlen(kind) > 31)
        return -EINVAL;
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return store_lmdb_err(rc);
    size_t klen = strlen(kind) + 1;
    MDB_val k = {kl, key}, v = {klen + len, NULL};
    if ((rc = mdb_put(txn, s->outbox, &k, &v, MDB_RESERVE)) == 0) {
        memcpy(v.mv_data, kind, klen);
        memcpy((char *)v.mv_data + klen, data, len);
        rc = put_queued_at(s, txn, &k, now_ms);
        if (!rc)
            rc = store_txn_audit(s, txn, now_ms, "hub", "outbox", "", id);
    }
    if (rc) {
        mdb_txn_abort(txn);
        return store_lmdb_err(rc);
    }
    return store_lmdb_err(store_txn_commit(s, txn));
}

/* The same inside the caller's write transaction (the ECG triage queues a
 * repeat request in the transaction that makes the task).  Returns 0, an
 * LMDB code, or EINVAL for a key that does not fit. */
int store_txn_outbox_put(store *s, MDB_txn *txn, const char *facility, const char *id, const char *kind,
                         const void *data, size_t len, int64_t now_ms)
{
    char key[512];
    size_t kl = outbox_key(key, sizeof key, facility, kind, id);
    if (kl >= sizeof key || strlen(kind) > 31)
        return EINVAL;
    size_t klen = strlen(kind) + 1;
    MDB_val k = {kl, key}, v = {klen + len, NULL};
    int rc = mdb_put(txn, s->outbox, &k, &v, MDB_RESERVE);
    if (rc)
        return rc;
    memcpy(v.mv_data, kind, klen);
    memcpy((char *)v.mv_data + klen, data, len);
    if ((rc = put_queued_at(s, txn, &k, now_ms)))
        return rc;
    return store_txn_audit(s, txn, now_ms, "hub", "outbox", "", id);
}

int store_outbox_list(store *s, const char *facility,
                      int (*cb)(void *ctx, const char *id, const char *kind, const void *data, size_t len), void *ctx)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return store_lmdb_err(rc);
    MDB_cursor *c;
    mdb_cursor_open(txn, s->outbox, &c);
    size_t pl = strlen(facility) + 1;
    MDB_val k = {pl, (void *)facility}, v;
    int n = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size < pl + 2 || memcmp(k.mv_data, facility, pl))
            break;
        char id[256];
        snprintf(id, sizeof id, "%.*s", (int)(k.mv_size - pl - 2), (char *)k.mv_data + pl + 2);
        size_t kindlen = strnlen(v.mv_data, v.mv_size);
        if (kindlen >= v.mv_size)
            continue;
        n++;
        if (cb(ctx, id, v.mv_data, (char *)v.mv_data + kindlen + 1, v.mv_size - kindlen - 1))
            break;
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    return n;
}

int store_outbox_ack(store *s, const char *facility, const char *id, int64_t now_ms)
{
    MDB_txn *txn;
    int rc = store_write_begin(s, &txn);
    if (rc)
        return store_lmdb_err(rc);
    int found = 0;
    for (int rank = 0; rank < 2 && !rc; rank++) {
        char key[512];
        size_t kl = outbox_key(key, sizeof key, facility, rank ? "report" : "alert", id);
        MDB_val k = {kl, key};
        int d = mdb_del(txn, s->outbox, &k, NULL);
        if (d == 0)
            found = 1;
        else if (d != MDB_NOTFOUND)
            rc = d;
        if (d == 0 && rank == 0) /* an alert: unread until a person at the clinic says otherwise */
            rc = mark_unread(s, txn, facility, id, now_ms);
        d = mdb_del(txn, s->outbox_at, &k, NULL);
        if (d != 0 && d != MDB_NOTFOUND && !rc)
            rc = d;
    }
    if (!rc && found) {
        char who[96];
        snprintf(who, sizeof who, "edge:%s", facility);
        rc = store_txn_audit(s, txn, now_ms, who, "delivered", "", id);
    }
    if (rc || !found) {
        mdb_txn_abort(txn);
        return rc ? store_lmdb_err(rc) : -ENOENT;
    }
    return store_lmdb_err(store_txn_commit(s, txn));
}

typedef struct waiting_list {
    store_outbox_waiting *w;
    size_t                n, cap;
} waiting_list;

static store_outbox_waiting *waiting_of(waiting_list *l, const char *facility, size_t fl)
{
    if (fl >= sizeof l->w[0].facility)
        return NULL;
    if (l->n && strlen(l->w[l->n - 1].facility) == fl && !memcmp(l->w[l->n - 1].facility, facility, fl))
        return &l->w[l->n - 1]; /* keys come grouped by facility */
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->w[i].facility) == fl && !memcmp(l->w[i].facility, facility, fl))
            return &l->w[i];
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        store_outbox_waiting *p = realloc(l->w, cap * sizeof *p);
        if (!p)
            return NULL;
        l->w = p;
        l->cap = cap;
    }
    store_outbox_waiting *w = &l->w[l->n++];
    memset(w, 0, sizeof *w);
    memcpy(w->facility, facility, fl);
    return w;
}

/* Keeps the oldest time, and the id of what has it (id: key bytes, not NUL-terminated). */
static void oldest(int64_t *at, int64_t when, char *id_out, size_t id_size, const char *id, size_t id_len)
{
    if (when && (!*at || when < *at)) {
        *at = when;
        if (id_out)
            snprintf(id_out, id_size, "%.*s", (int)id_len, id);
    }
}

static int by_facility(const void *a, const void *b)
{
    return strcmp(((const store_outbox_waiting *)a)->facility, ((const store_outbox_waiting *)b)->facility);
}

int store_outbox_summary(store *s, int (*cb)(void *ctx, const store_outbox_waiting *w), void *ctx)
{
    MDB_txn *txn;
    int rc = store_read_txn(s, &txn);
    if (rc)
        return rc;
    waiting_list l = {0};
    MDB_cursor *c;
    MDB_val k, v;
    if (mdb_cursor_open(txn, s->outbox, &c) == 0) {
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            size_t fl = strnlen(k.mv_data, k.mv_size);
            store_outbox_waiting *w = fl + 2 < k.mv_size ? waiting_of(&l, k.mv_data, fl) : NULL;
            if (!w)
                continue; /* not a key this file wrote, or out of memory */
            bool alert = ((const char *)k.mv_data)[fl + 1] == '0';
            MDB_val at;
            int64_t when = 0;
            if (mdb_get(txn, s->outbox_at, &k, &at) == 0 && at.mv_size == sizeof when)
                memcpy(&when, at.mv_data, sizeof when);
            (*(alert ? &w->alerts : &w->reports))++;
            const char *id = (const char *)k.mv_data + fl + 3; /* facility \0 rank \0 id */
            size_t id_len = k.mv_size > fl + 3 ? k.mv_size - fl - 3 : 0;
            if (alert)
                oldest(&w->oldest_alert_ms, when, w->oldest_alert_id, sizeof w->oldest_alert_id, id, id_len);
            else
                oldest(&w->oldest_report_ms, when, NULL, 0, NULL, 0);
        }
        mdb_cursor_close(c);
    }
    if (mdb_cursor_open(txn, s->alert_open, &c) == 0) {
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            size_t fl = strnlen(k.mv_data, k.mv_size);
            store_outbox_waiting *w = fl + 1 < k.mv_size ? waiting_of(&l, k.mv_data, fl) : NULL;
            if (!w)
                continue;
            int64_t when = 0;
            if (v.mv_size == sizeof when)
                memcpy(&when, v.mv_data, sizeof when);
            w->unread_alerts++;
            oldest(&w->oldest_unread_ms, when, w->oldest_unread_id, sizeof w->oldest_unread_id,
                   (const char *)k.mv_data + fl + 1, k.mv_size - fl - 1); /* facility \0 id */
        }
        mdb_cursor_close(c);
    }
    store_read_end(s, txn);
    if (l.n) /* qsort of no array is undefined */
        qsort(l.w, l.n, sizeof *l.w, by_facility);
    for (size_t i = 0; i < l.n; i++)
        if (cb(ctx, &l.w[i]))
            break;
    free(l.w);
    return (int)l.n;
}

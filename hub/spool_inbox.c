/* spool_inbox.c — what the hub sends back to the clinic (reports,
 * critical-value alerts, repeat requests), kept by id, and what became of
 * each alert here: announced by the on-alert command, read by a person,
 * the hub told so. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/spool_private.h"

int spool_inbox_put(spool *s, const char *id, const char *kind, const void *data, size_t len, int64_t now_ms)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return spool_lerr(rc);
    MDB_val k = {strlen(id), (void *)id}, v;
    if (mdb_get(txn, s->inbox, &k, &v) == 0) {
        mdb_txn_abort(txn);
        return 0;
    }
    v = (MDB_val){sizeof(inbox_hdr) + len, NULL};
    if ((rc = mdb_put(txn, s->inbox, &k, &v, MDB_RESERVE))) {
        mdb_txn_abort(txn);
        return spool_lerr(rc);
    }
    inbox_hdr h = {.received_ms = now_ms};
    snprintf(h.kind, sizeof h.kind, "%s", kind);
    memcpy(v.mv_data, &h, sizeof h);
    memcpy((uint8_t *)v.mv_data + sizeof h, data, len);
    char detail[160];
    snprintf(detail, sizeof detail, "id=%s", id);
    spool_audit_rec r = {.t_ms = now_ms, .who = "hub", .detail = detail, .inbox_id = id,
                         .what = !strcmp(kind, "alert") ? "alert-received" : "report-received"};
    if ((rc = spool_txn_audit(s, txn, &r))) {
        mdb_txn_abort(txn);
        return spool_lerr(rc);
    }
    rc = mdb_txn_commit(txn);
    return rc ? spool_lerr(rc) : 1;
}

typedef struct inbox_walk {
    int (*cb)(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data, size_t len);
    void *ctx;
    int   n;
} inbox_walk;

static int inbox_item_of(void *ctx, const MDB_val *k, const MDB_val *v)
{
    inbox_walk *w = ctx;
    if (v->mv_size < sizeof(inbox_hdr))
        return 0;
    inbox_hdr h;
    memcpy(&h, v->mv_data, sizeof h);
    h.kind[sizeof h.kind - 1] = '\0';
    char id[128];
    snprintf(id, sizeof id, "%.*s", (int)k->mv_size, (const char *)k->mv_data);
    w->n++;
    return w->cb(w->ctx, id, h.kind, h.received_ms, (const uint8_t *)v->mv_data + sizeof h, v->mv_size - sizeof h);
}

int spool_inbox_list(spool *s, int (*cb)(void *ctx, const char *id, const char *kind, int64_t received_ms,
                                         const void *data, size_t len), void *ctx)
{
    inbox_walk w = {cb, ctx, 0};
    int rc = spool_each(s, s->inbox, NULL, inbox_item_of, &w);
    return rc < 0 ? rc : w.n;
}

/* --- what became of each alert at the clinic -------------------------------
 * One record per alert id in `alerts` (JSON, so a field added later reads
 * as absent): when the on-alert command announced it (edge_alert.c), and
 * who read it, when, and whether the hub has heard so. */

typedef struct alert_state {
    int64_t            announced_ms; /* 0: not yet */
    bool               confirmed;
    spool_confirmation c;
} alert_state;

static void parse_alert_state(const MDB_val *v, alert_state *a)
{
    memset(a, 0, sizeof *a);
    json_t *j = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    a->announced_ms = (int64_t)json_integer_value(json_object_get(j, "announced"));
    const char *by = json_string_value(json_object_get(j, "by"));
    a->confirmed = by != NULL;
    snprintf(a->c.by, sizeof a->c.by, "%s", by ? by : "");
    a->c.at_ms = (int64_t)json_integer_value(json_object_get(j, "at"));
    a->c.told_hub = json_is_true(json_object_get(j, "told"));
    json_decref(j);
}

/* 0 with *a (all zero when there is no record yet), or an LMDB code. */
static int get_alert_state(MDB_txn *txn, spool *s, const char *id, alert_state *a)
{
    MDB_val k = {strlen(id), (void *)id}, v;
    int rc = mdb_get(txn, s->alerts, &k, &v);
    if (rc == MDB_NOTFOUND)
        memset(a, 0, sizeof *a);
    else if (rc == 0)
        parse_alert_state(&v, a);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int put_alert_state(MDB_txn *txn, spool *s, const char *id, const alert_state *a)
{
    json_t *j = json_pack("{s:I}", "announced", (json_int_t)a->announced_ms);
    if (j && a->confirmed)
        json_object_update_new(j, json_pack("{s:s,s:I,s:b}", "by", a->c.by, "at", (json_int_t)a->c.at_ms, "told",
                                            a->c.told_hub));
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return ENOMEM;
    MDB_val k = {strlen(id), (void *)id}, v = {strlen(text), text};
    int rc = mdb_put(txn, s->alerts, &k, &v, 0);
    free(text);
    return rc;
}

/* Reads id's record in a read transaction. */
static int read_alert_state(spool *s, const char *id, alert_state *a)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return spool_lerr(rc);
    rc = get_alert_state(txn, s, id, a);
    mdb_txn_abort(txn);
    return rc ? spool_lerr(rc) : 0;
}

/* change(a, arg) on id's record in one write transaction: it returns 0 to
 * write the record, 1 to leave it as it is, or a negative errno to say.
 * A written change is audited as audit says (NULL: not audited). */
static int change_alert_state(spool *s, const char *id, int (*change)(alert_state *a, void *arg), void *arg,
                              const spool_audit_rec *audit)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return spool_lerr(rc);
    alert_state a;
    if ((rc = get_alert_state(txn, s, id, &a))) {
        mdb_txn_abort(txn);
        return spool_lerr(rc);
    }
    int verdict = change(&a, arg);
    if (verdict != 0) {
        mdb_txn_abort(txn);
        return verdict < 0 ? verdict : 0;
    }
    if ((rc = put_alert_state(txn, s, id, &a)) || (audit && (rc = spool_txn_audit(s, txn, audit)))) {
        mdb_txn_abort(txn);
        return spool_lerr(rc);
    }
    rc = mdb_txn_commit(txn); /* frees txn, committed or not */
    return rc ? spool_lerr(rc) : 0;
}

int spool_alert_announced(spool *s, const char *id, int64_t *when_ms)
{
    alert_state a;
    int rc = read_alert_state(s, id, &a);
    if (rc == 0 && !a.announced_ms)
        return -ENOENT;
    if (rc == 0)
        *when_ms = a.announced_ms;
    return rc;
}

static int set_announced(alert_state *a, void *arg)
{
    a->announced_ms = *(int64_t *)arg;
    return 0;
}

int spool_alert_set_announced(spool *s, const char *id, int64_t now_ms)
{
    char detail[160];
    snprintf(detail, sizeof detail, "id=%s", id);
    spool_audit_rec r = {.t_ms = now_ms, .who = "on-alert", .what = "alert-announced", .detail = detail,
                         .inbox_id = id};
    return change_alert_state(s, id, set_announced, &now_ms, &r);
}

/* --- a person's confirmation that an alert was read ----------------------- */

typedef struct confirm_arg {
    spool_confirmation  want, *was;
} confirm_arg;

static int confirm(alert_state *a, void *arg)
{
    confirm_arg *c = arg;
    if (a->confirmed) {
        *c->was = a->c;
        return -EEXIST;
    }
    a->confirmed = true;
    a->c = c->want;
    return 0;
}

int spool_alert_confirm(spool *s, const char *id, const char *by, const char *who, int64_t now_ms,
                        spool_confirmation *was)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return spool_lerr(rc);
    MDB_val k = {strlen(id), (void *)id}, v;
    inbox_hdr h = {0};
    rc = mdb_get(txn, s->inbox, &k, &v);
    if (rc == 0 && v.mv_size >= sizeof h)
        memcpy(&h, v.mv_data, sizeof h);
    bool alert = !strncmp(h.kind, "alert", sizeof h.kind);
    mdb_txn_abort(txn);
    if (rc && rc != MDB_NOTFOUND)
        return spool_lerr(rc);
    if (rc)
        return -ENOENT;
    if (!alert)
        return -EINVAL; /* a report: nothing to confirm */
    confirm_arg c = {.was = was, .want = {.at_ms = now_ms}};
    snprintf(c.want.by, sizeof c.want.by, "%s", by);
    char detail[320];
    snprintf(detail, sizeof detail, "id=%s by=%s", id, by);
    spool_audit_rec r = {.t_ms = now_ms, .who = who, .what = "alert-read", .detail = detail, .inbox_id = id};
    return change_alert_state(s, id, confirm, &c, &r);
}

int spool_alert_confirmation(spool *s, const char *id, spool_confirmation *out)
{
    alert_state a;
    int rc = read_alert_state(s, id, &a);
    if (rc == 0 && !a.confirmed)
        return -ENOENT;
    if (rc == 0)
        *out = a.c;
    return rc;
}

typedef struct untold_walk {
    int (*cb)(void *ctx, const char *id, const spool_confirmation *c);
    void *ctx;
    int   n;
} untold_walk;

static int untold_of(void *ctx, const MDB_val *k, const MDB_val *v)
{
    untold_walk *w = ctx;
    alert_state a;
    parse_alert_state(v, &a);
    if (!a.confirmed || a.c.told_hub)
        return 0;
    char id[256];
    snprintf(id, sizeof id, "%.*s", (int)k->mv_size, (const char *)k->mv_data);
    w->n++;
    return w->cb(w->ctx, id, &a.c);
}

int spool_alert_untold(spool *s, int (*cb)(void *ctx, const char *id, const spool_confirmation *c), void *ctx)
{
    untold_walk w = {cb, ctx, 0};
    int rc = spool_each(s, s->alerts, NULL, untold_of, &w);
    return rc < 0 ? rc : w.n;
}

static int mark_told(alert_state *a, void *arg)
{
    (void)arg;
    if (!a->confirmed)
        return -ENOENT;
    if (a->c.told_hub)
        return 1;
    a->c.told_hub = true;
    return 0;
}

int spool_alert_told(spool *s, const char *id) { return change_alert_state(s, id, mark_told, NULL, NULL); }

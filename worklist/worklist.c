/* worklist.c — the worklist over LMDB (see worklist.h for the model).
 *
 * Databases (in the caller's environment):
 *   wl_task   id (8 bytes BE)                         → wl_task record
 *   wl_queue  rank ‖ front ‖ due (BE) ‖ seq (BE)      → id      tasks waiting for a reader
 *   wl_held   reader \0 id (BE)                       → (empty) tasks offered to / held by a reader
 *   wl_bymod  modality \0 ‖ wl_queue key                → id      the same queue, per modality
 *   wl_held   reader \0 id (BE)                       → (empty) tasks offered to / held by a reader
 *   wl_until  holder_until (BE) ‖ id (BE)             → (empty) the same tasks, by offer/lease end
 *   wl_hist   id ‖ event number (BE)                  → wl_event
 *   wl_meta   "next_id", "next_seq", "index_version"  → counters
 *             "held:" reader                          → how many tasks the reader holds
 * A task is in wl_queue and wl_bymod exactly when it is QUEUED or REVIEW,
 * and in wl_held and wl_until exactly when OFFERED, CLAIMED or DRAFTED:
 * wl_put keeps every index in step with the record, so no path can forget
 * one.  The second indexes keep each call's cost to what it touches: an
 * offer looks only at the reader's modalities, the tick only at what
 * expires or nears its due time, never at the whole queue. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "worklist/wl_record.h"
#include "worklist/worklist.h"

#define INDEX_VERSION  2 /* 2: wl_bymod, wl_until and held counts */

struct wl {
    MDB_dbi   task, queue, bymod, held, until, hist, meta;
    wl_config cfg;
    wl_rule  *rules;
    size_t    n_rules;
};

static const wl_rule default_rules[] = {
    {-1, NULL, WL_STAT, 10 * 60 * 1000LL},
    {-1, NULL, WL_URGENT, 30 * 60 * 1000LL},
    {-1, NULL, WL_ROUTINE, 24 * 3600 * 1000LL},
};

static const char *const kind_names[] = {"imaging", "ecg"};
static const char *const prio_names[] = {"routine", "urgent", "stat"};
static const char *const state_names[WL_STATE_COUNT] = {"queued", "offered", "claimed", "drafted",
                                                        "review", "signed", "cancelled"};
static const char *const seniority_names[] = {"resident", "attending", "chief"};

const char *wl_kind_name(wl_kind k) { return (unsigned)k < 2 ? kind_names[k] : "?"; }
const char *wl_priority_name(wl_priority p) { return (unsigned)p < 3 ? prio_names[p] : "?"; }
const char *wl_state_name(wl_state s) { return (unsigned)s < WL_STATE_COUNT ? state_names[s] : "?"; }

int wl_priority_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, prio_names[i]))
            return i;
    return -1;
}

int wl_seniority_parse(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, seniority_names[i]))
            return i;
    return -1;
}

static const struct { int code; const char *text; } errors[] = {
    {WL_OK, "success"},
    {WL_ENOTFOUND, "no such task"},
    {WL_ESTATE, "not allowed in the task's current state"},
    {WL_ENOTYOURS, "the task is offered to or held by another reader"},
    {WL_EQUALIFY, "the reader is not qualified for this task"},
    {WL_EFULL, "the reader already holds as many tasks as allowed"},
    {WL_EEMPTY, "no task for this reader"},
    {WL_ESTORE, "worklist storage failure"},
    {WL_EINVAL, "invalid argument"},
};

const char *wl_strerror(int code)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].code == code)
            return errors[i].text;
    return "unknown worklist error";
}

static int lmdb_err(int rc)
{
    if (rc == 0)
        return 0;
    return rc == MDB_NOTFOUND ? WL_ENOTFOUND : WL_ESTORE;
}

static int upgrade_indexes(wl *w, MDB_txn *txn);

int wl_open(MDB_txn *txn, const wl_config *cfg, wl **out)
{
    wl *w = calloc(1, sizeof *w);
    if (!w)
        return WL_ESTORE;
    if (cfg)
        w->cfg = *cfg;
    if (!w->cfg.lease_ms)
        w->cfg.lease_ms = 60000;
    if (!w->cfg.offer_ms)
        w->cfg.offer_ms = 30000;
    const wl_rule *rules = cfg && cfg->rules ? cfg->rules : default_rules;
    w->n_rules = cfg && cfg->rules ? cfg->n_rules : sizeof default_rules / sizeof default_rules[0];
    w->rules = calloc(w->n_rules, sizeof *w->rules);
    if (!w->rules) {
        free(w);
        return WL_ESTORE;
    }
    memcpy(w->rules, rules, w->n_rules * sizeof *w->rules);
    int rc;
    if ((rc = mdb_dbi_open(txn, "wl_task", MDB_CREATE, &w->task)) ||
        (rc = mdb_dbi_open(txn, "wl_queue", MDB_CREATE, &w->queue)) ||
        (rc = mdb_dbi_open(txn, "wl_held", MDB_CREATE, &w->held)) ||
        (rc = mdb_dbi_open(txn, "wl_hist", MDB_CREATE, &w->hist)) ||
        (rc = mdb_dbi_open(txn, "wl_meta", MDB_CREATE, &w->meta)) ||
        (rc = mdb_dbi_open(txn, "wl_bymod", MDB_CREATE, &w->bymod)) ||
        (rc = mdb_dbi_open(txn, "wl_until", MDB_CREATE, &w->until)) || (rc = upgrade_indexes(w, txn))) {
        free(w->rules);
        free(w);
        return WL_ESTORE;
    }
    *out = w;
    return 0;
}

void wl_close(wl **w)
{
    if (!w || !*w)
        return;
    free((*w)->rules);
    free(*w);
    *w = NULL;
}

/* --- keys and records ------------------------------------------------------ */

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static size_t queue_key(uint8_t k[18], const wl_task *t)
{
    k[0] = (uint8_t)(2 - t->priority); /* STAT first */
    k[1] = t->front ? 0 : 1;
    be64(k + 2, (uint64_t)(t->due_ms < 0 ? 0 : t->due_ms));
    be64(k + 10, t->seq);
    return 18;
}

static size_t held_key(uint8_t *k, size_t n, const char *reader, uint64_t id)
{
    size_t l = strnlen(reader, WL_ID_MAX - 1);
    if (l + 9 > n)
        return 0;
    memcpy(k, reader, l);
    k[l] = 0;
    be64(k + l + 1, id);
    return l + 9;
}

static bool in_queue(uint8_t st) { return st == WL_QUEUED || st == WL_REVIEW; }
static bool is_held(uint8_t st) { return st == WL_OFFERED || st == WL_CLAIMED || st == WL_DRAFTED; }

static int counter(wl *w, MDB_txn *txn, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    uint64_t n = 1;
    if (mdb_get(txn, w->meta, &k, &v) == 0 && v.mv_size == 8)
        memcpy(&n, v.mv_data, 8);
    *out = n;
    n++;
    v = (MDB_val){8, &n};
    return lmdb_err(mdb_put(txn, w->meta, &k, &v, 0));
}

int wl_get(wl *w, MDB_txn *txn, uint64_t id, wl_task *out)
{
    uint8_t k[8];
    be64(k, id);
    MDB_val kv = {8, k}, v;
    int rc = mdb_get(txn, w->task, &kv, &v);
    if (rc)
        return lmdb_err(rc);
    return wl_task_decode(v.mv_data, v.mv_size, out) ? WL_ESTORE : 0;
}

/* The modality a reader must list to read t (as wl_qualified). */
static const char *qual_modality(const wl_task *t) { return t->modality[0] ? t->modality : "OT"; }

static size_t bymod_key(uint8_t *k, size_t n, const wl_task *t)
{
    const char *m = qual_modality(t);
    size_t ml = strnlen(m, sizeof t->modality - 1);
    if (ml + 1 + 18 > n)
        return 0;
    memcpy(k, m, ml);
    k[ml] = 0;
    return ml + 1 + queue_key(k + ml + 1, t);
}

static size_t until_key(uint8_t k[16], const wl_task *t)
{
    be64(k, (uint64_t)(t->holder_until_ms < 0 ? 0 : t->holder_until_ms));
    be64(k + 8, t->id);
    return 16;
}

static size_t held_count_key(uint8_t *k, size_t n, const char *reader)
{
    size_t l = strnlen(reader, WL_ID_MAX - 1);
    if (l + 5 > n)
        return 0;
    memcpy(k, "held:", 5);
    memcpy(k + 5, reader, l);
    return l + 5;
}

static int held_count(wl *w, MDB_txn *txn, const char *reader)
{
    uint8_t k[WL_ID_MAX + 8];
    MDB_val kv = {held_count_key(k, sizeof k, reader), k}, v;
    uint32_t n = 0;
    int rc = mdb_get(txn, w->meta, &kv, &v);
    if (rc && rc != MDB_NOTFOUND)
        return WL_ESTORE;
    if (!rc && v.mv_size == sizeof n)
        memcpy(&n, v.mv_data, sizeof n);
    return (int)n;
}

static int held_count_add(wl *w, MDB_txn *txn, const char *reader, int d)
{
    int n = held_count(w, txn, reader);
    if (n < 0)
        return n;
    uint32_t m = (uint32_t)(n + d < 0 ? 0 : n + d);
    uint8_t k[WL_ID_MAX + 8];
    MDB_val kv = {held_count_key(k, sizeof k, reader), k}, v = {sizeof m, &m};
    int rc = m ? mdb_put(txn, w->meta, &kv, &v, 0) : mdb_del(txn, w->meta, &kv, NULL);
    return rc && rc != MDB_NOTFOUND ? WL_ESTORE : 0;
}

static int index_one(MDB_txn *txn, MDB_dbi dbi, uint8_t *key, size_t kl, MDB_val *val, bool add)
{
    if (!kl)
        return WL_ESTORE;
    MDB_val kv = {kl, key};
    int rc = add ? mdb_put(txn, dbi, &kv, val, 0) : mdb_del(txn, dbi, &kv, NULL);
    return rc && !(rc == MDB_NOTFOUND && !add) ? WL_ESTORE : 0;
}

/* Put (add) or delete (!add) t's entries in the queue indexes. */
static int queue_index(wl *w, MDB_txn *txn, const wl_task *t, bool add)
{
    uint8_t k1[96], k2[96], idb[8];
    be64(idb, t->id);
    MDB_val id = {8, idb};
    int rc = index_one(txn, w->queue, k1, queue_key(k1, t), &id, add);
    return rc ? rc : index_one(txn, w->bymod, k2, bymod_key(k2, sizeof k2, t), &id, add);
}

/* The same for the held indexes; with count, the holder's count too. */
static int held_index(wl *w, MDB_txn *txn, const wl_task *t, bool add, bool count)
{
    uint8_t k1[96], k2[96];
    MDB_val none = {0, ""};
    int rc;
    if ((rc = index_one(txn, w->held, k1, held_key(k1, sizeof k1, t->holder, t->id), &none, add)) ||
        (rc = index_one(txn, w->until, k2, until_key(k2, t), &none, add)))
        return rc;
    return count ? held_count_add(w, txn, t->holder, add ? 1 : -1) : 0;
}

static bool same_queue_key(const wl_task *a, const wl_task *b)
{
    uint8_t ka[18], kb[18];
    queue_key(ka, a);
    queue_key(kb, b);
    return !memcmp(ka, kb, sizeof ka) && !strcmp(qual_modality(a), qual_modality(b));
}

/* Move t's index entries from what old's state (NULL: none) had to what
 * t's has, touching only the entries that change: an offered task claimed
 * by its reader keeps its held entry and count, and only its until entry
 * moves (each B-tree write dirties pages a commit must write and flush). */
static int reindex(wl *w, MDB_txn *txn, const wl_task *old, const wl_task *t)
{
    bool was_q = old && in_queue(old->state), is_q = in_queue(t->state);
    bool was_h = old && is_held(old->state), is_h = is_held(t->state);
    int rc;
    if (was_q && is_q && same_queue_key(old, t)) {
        /* unchanged */
    } else if ((was_q && (rc = queue_index(w, txn, old, false))) || (is_q && (rc = queue_index(w, txn, t, true)))) {
        return rc;
    }
    if (was_h && is_h && !strcmp(old->holder, t->holder)) {
        if (old->holder_until_ms == t->holder_until_ms)
            return 0;
        uint8_t k[16];
        MDB_val none = {0, ""};
        if ((rc = index_one(txn, w->until, k, until_key(k, old), &none, false)))
            return rc;
        return index_one(txn, w->until, k, until_key(k, t), &none, true);
    }
    if ((was_h && (rc = held_index(w, txn, old, false, true))) || (is_h && (rc = held_index(w, txn, t, true, true))))
        return rc;
    return 0;
}

/* Write t, moving it between the indexes as its state (and key) changed
 * from old (NULL for a new task). */
static int wl_put(wl *w, MDB_txn *txn, const wl_task *old, const wl_task *t)
{
    int rc;
    if ((rc = reindex(w, txn, old, t)))
        return rc;
    uint8_t idk[8];
    be64(idk, t->id);
    uint8_t rec[WL_TASK_REC_MAX];
    MDB_val kv = {8, idk}, v = {wl_task_encode(t, rec), rec};
    return lmdb_err(mdb_put(txn, w->task, &kv, &v, 0));
}

/* A store made before INDEX_VERSION: build the indexes it lacks from the
 * task records (once, in the opening transaction). */
static int upgrade_indexes(wl *w, MDB_txn *txn)
{
    static const char key[] = "index_version";
    MDB_val k = {sizeof key - 1, (void *)key}, v;
    uint32_t ver = 0;
    if (mdb_get(txn, w->meta, &k, &v) == 0 && v.mv_size == sizeof ver)
        memcpy(&ver, v.mv_data, sizeof ver);
    if (ver >= INDEX_VERSION)
        return 0;
    if (mdb_drop(txn, w->bymod, 0) || mdb_drop(txn, w->until, 0))
        return WL_ESTORE;
    MDB_cursor *c;
    if (mdb_cursor_open(txn, w->task, &c))
        return WL_ESTORE;
    MDB_val tk, tv;
    int rc = 0;
    for (int g = mdb_cursor_get(c, &tk, &tv, MDB_FIRST); g == 0 && !rc; g = mdb_cursor_get(c, &tk, &tv, MDB_NEXT)) {
        wl_task t;
        if (wl_task_decode(tv.mv_data, tv.mv_size, &t)) {
            rc = WL_ESTORE;
            break;
        }
        uint8_t bk[96];
        MDB_val kv, none = {0, ""};
        if (in_queue(t.state)) {
            uint8_t idb[8];
            be64(idb, t.id);
            kv = (MDB_val){bymod_key(bk, sizeof bk, &t), bk};
            MDB_val iv = {8, idb};
            rc = mdb_put(txn, w->bymod, &kv, &iv, 0) ? WL_ESTORE : 0;
        } else if (is_held(t.state)) {
            kv = (MDB_val){until_key(bk, &t), bk};
            rc = mdb_put(txn, w->until, &kv, &none, 0) ? WL_ESTORE : held_count_add(w, txn, t.holder, 1);
        }
    }
    mdb_cursor_close(c);
    if (rc)
        return rc;
    ver = INDEX_VERSION;
    v = (MDB_val){sizeof ver, &ver};
    return mdb_put(txn, w->meta, &k, &v, 0) ? WL_ESTORE : 0;
}

static int record(wl *w, MDB_txn *txn, wl_task *t, uint8_t from, const char *actor, const char *what,
                  const char *note, int64_t now)
{
    wl_event e = {.at_ms = now, .from = from, .to = t->state};
    snprintf(e.actor, sizeof e.actor, "%s", actor ? actor : "");
    snprintf(e.what, sizeof e.what, "%s", what);
    snprintf(e.note, sizeof e.note, "%s", note ? note : "");
    uint8_t k[12];
    be64(k, t->id);
    uint32_t n = t->events++;
    k[8] = (uint8_t)(n >> 24);
    k[9] = (uint8_t)(n >> 16);
    k[10] = (uint8_t)(n >> 8);
    k[11] = (uint8_t)n;
    uint8_t rec[WL_EVENT_REC_MAX];
    MDB_val kv = {12, k}, v = {wl_event_encode(&e, rec), rec};
    return lmdb_err(mdb_put(txn, w->hist, &kv, &v, 0));
}

/* Change t (whose stored form is old) and log the transition. */
static int transition(wl *w, MDB_txn *txn, const wl_task *old, wl_task *t, const char *actor, const char *what,
                      const char *note, int64_t now)
{
    int rc = record(w, txn, t, old ? old->state : WL_QUEUED, actor, what, note, now);
    return rc ? rc : wl_put(w, txn, old, t);
}

static int64_t due_for(const wl *w, int kind, const char *modality, int priority)
{
    for (size_t i = 0; i < w->n_rules; i++) {
        const wl_rule *r = &w->rules[i];
        if (r->priority != priority || (r->kind >= 0 && r->kind != kind))
            continue;
        if (r->modality && strcmp(r->modality, "*") && strcmp(r->modality, modality))
            continue;
        return r->due_ms;
    }
    for (size_t i = 0; i < sizeof default_rules / sizeof default_rules[0]; i++)
        if (default_rules[i].priority == priority)
            return default_rules[i].due_ms;
    return 24 * 3600 * 1000LL;
}

int wl_add(wl *w, MDB_txn *txn, const wl_task_spec *s, int64_t now, wl_task *out)
{
    if (!s->study_uid || strlen(s->study_uid) > 64 || (unsigned)s->clinic_priority > WL_STAT)
        return WL_EINVAL;
    wl_task t = {0};
    int rc;
    if ((rc = counter(w, txn, "next_id", &t.id)) || (rc = counter(w, txn, "next_seq", &t.seq)))
        return rc;
    snprintf(t.study_uid, sizeof t.study_uid, "%s", s->study_uid);
    snprintf(t.modality, sizeof t.modality, "%s", s->modality ? s->modality : "");
    snprintf(t.body_part, sizeof t.body_part, "%s", s->body_part ? s->body_part : "");
    snprintf(t.facility, sizeof t.facility, "%s", s->facility ? s->facility : "");
    snprintf(t.note, sizeof t.note, "%s", s->note ? s->note : "");
    t.kind = (uint8_t)s->kind;
    t.clinic_priority = (uint8_t)s->clinic_priority;
    t.referral = s->referral != 0;
    /* Referred patients (转诊) come before routine ones by consortium rule. */
    t.priority = (uint8_t)(t.referral && s->clinic_priority < WL_URGENT ? WL_URGENT : s->clinic_priority);
    t.arrival_ms = now;
    t.due_ms = now + due_for(w, t.kind, t.modality, t.priority);
    t.version = 1;
    t.state = WL_QUEUED;
    if ((rc = transition(w, txn, NULL, &t, "hub", "added", wl_priority_name(t.priority), now)))
        return rc;
    if (out)
        *out = t;
    return 0;
}

/* --- qualification and offers ----------------------------------------------- */

static bool listed(const char *list, const char *item)
{
    size_t il = strlen(item);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ",");
        if ((l == 1 && *p == '*') || (l == il && !strncmp(p, item, l)))
            return true;
        p += l + (p[l] == ',');
    }
    return false;
}

int wl_qualified(const wl_reader *r, const wl_task *t)
{
    if (!(r->kinds & (1u << t->kind)))
        return 0;
    if (!listed(r->modalities, t->modality[0] ? t->modality : "OT"))
        return 0;
    if (t->facility[0] && !listed(r->facilities, t->facility))
        return 0;
    /* 审核: a review is for an attending or chief, never the author. */
    if (t->state == WL_REVIEW && (r->seniority < WL_ATTENDING || !strcmp(r->id, t->drafted_by)))
        return 0;
    return 1;
}

/* The memo's slot for the part of dbi under prefix[0..pl), valid for
 * txn (a stale memo is emptied first); -1 when skip has no memo or the
 * key would not fit. */
static int memo_part(const wl_skip *skip, MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t pl)
{
    wl_skip_memo *m = skip ? skip->memo : NULL;
    if (!m || pl + 18 > WL_MEMO_KEY)
        return -1;
    uint64_t id = (uint64_t)mdb_txn_id(txn), gen = skip->gen ? skip->gen(skip->ctx) : 0;
    if (m->txn_id != id || m->gen != gen) {
        memset(m, 0, sizeof *m);
        m->txn_id = id;
        m->gen = gen;
    }
    int free_slot = -1;
    for (int i = 0; i < WL_MEMO_PARTS; i++) {
        if (m->part[i].kl && m->part[i].dbi == dbi && m->part[i].pl == pl &&
            (pl == 0 || !memcmp(m->part[i].key, prefix, pl))) /* prefix is NULL when pl is 0 */
            return i;
        if (!m->part[i].kl && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0)
        free_slot = 0; /* more parts than slots: reuse the first */
    m->part[free_slot].kl = 0;
    m->part[free_slot].dbi = dbi;
    m->part[free_slot].pl = (uint8_t)pl;
    return free_slot;
}

/* The first task in dbi (while the key starts with prefix[0..pl)) that r
 * may read; its queue key (without the prefix) in qkey.  Returns 1 found,
 * 0 none, or an error. */
static int first_qualified(wl *w, MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t pl,
                           const wl_reader *r, const wl_skip *skip, wl_task *t, uint8_t qkey[18])
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, dbi, &c))
        return WL_ESTORE;
    int slot = memo_part(skip, txn, dbi, prefix, pl);
    wl_skip_memo *m = slot >= 0 ? skip->memo : NULL;
    MDB_val k = {pl, (void *)prefix}, v;
    MDB_cursor_op first = pl ? MDB_SET_RANGE : MDB_FIRST;
    if (m && m->part[slot].kl) { /* every task before it is passed over */
        k = (MDB_val){m->part[slot].kl, m->part[slot].key};
        first = MDB_SET_RANGE;
    }
    bool noted = false;
    int rc, found = 0;
    for (rc = mdb_cursor_get(c, &k, &v, first); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != pl + 18 || (pl && memcmp(k.mv_data, prefix, pl)))
            break;
        if (v.mv_size != 8 || (skip && skip->fn(skip->ctx, rd64(v.mv_data))))
            continue;
        if (m && !noted) { /* the first one not passed over: the next pick starts here */
            memcpy(m->part[slot].key, k.mv_data, k.mv_size);
            m->part[slot].kl = (uint8_t)k.mv_size;
            noted = true;
        }
        if (wl_get(w, txn, rd64(v.mv_data), t) == 0 && wl_qualified(r, t)) {
            memcpy(qkey, (const uint8_t *)k.mv_data + pl, 18);
            found = 1;
            break;
        }
    }
    mdb_cursor_close(c);
    return rc && rc != MDB_NOTFOUND ? WL_ESTORE : found;
}

/* The best task for r: a reader of any modality walks the queue in offer
 * order; otherwise only each listed modality's part of it is looked at,
 * and the best of their first qualified tasks wins. */
static int best_for(wl *w, MDB_txn *txn, const wl_reader *r, const wl_skip *skip, wl_task *out)
{
    uint8_t qkey[18], best[18];
    if (listed(r->modalities, "*"))
        return first_qualified(w, txn, w->queue, NULL, 0, r, skip, out, qkey);
    int found = 0;
    for (const char *p = r->modalities; *p;) {
        size_t l = strcspn(p, ",");
        uint8_t prefix[sizeof out->modality + 1];
        if (l > 0 && l < sizeof out->modality) {
            memcpy(prefix, p, l);
            prefix[l] = 0;
            wl_task t;
            int rc = first_qualified(w, txn, w->bymod, prefix, l + 1, r, skip, &t, qkey);
            if (rc < 0)
                return rc;
            if (rc && (!found || memcmp(qkey, best, 18) < 0)) {
                memcpy(best, qkey, 18);
                *out = t;
                found = 1;
            }
        }
        p += l + (p[l] == ',');
    }
    return found;
}

int wl_held_count(wl *w, MDB_txn *txn, const char *reader) { return held_count(w, txn, reader); }

/* t as it reads once offered to r at now. */
static void as_offered(const wl *w, wl_task *t, const wl_reader *r, int64_t now)
{
    t->review = t->state == WL_REVIEW;
    t->state = WL_OFFERED;
    snprintf(t->holder, sizeof t->holder, "%s", r->id);
    t->holder_until_ms = now + w->cfg.offer_ms;
}

int wl_pick(wl *w, MDB_txn *txn, const wl_reader *r, const wl_skip *skip, int64_t now, wl_task *out)
{
    int rc = best_for(w, txn, r, skip, out);
    if (rc > 0)
        as_offered(w, out, r, now);
    return rc <= 0 ? (rc < 0 ? rc : WL_EEMPTY) : 0;
}

/* Make t (queued, qualified, r not full: checked by the caller) offered to r. */
static int offer_to(wl *w, MDB_txn *txn, wl_task t, const wl_reader *r, int64_t now, wl_task *out)
{
    wl_task old = t;
    int rc;
    as_offered(w, &t, r, now);
    if ((rc = transition(w, txn, &old, &t, r->id, "offered", NULL, now)))
        return rc;
    if (out)
        *out = t;
    return 0;
}

int wl_offer(wl *w, MDB_txn *txn, const wl_reader *r, int64_t now, wl_task *out)
{
    int held = held_count(w, txn, r->id);
    if (held < 0)
        return held;
    if (held >= r->max_tasks)
        return WL_EFULL;
    wl_task t;
    int rc = best_for(w, txn, r, NULL, &t);
    if (rc <= 0)
        return rc < 0 ? rc : WL_EEMPTY;
    return offer_to(w, txn, t, r, now, out);
}

int wl_offer_task(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, int64_t now, wl_task *out)
{
    wl_task t;
    int rc = wl_get(w, txn, id, &t);
    if (rc)
        return rc;
    if (!in_queue(t.state))
        return is_held(t.state) && strcmp(t.holder, r->id) ? WL_ENOTYOURS : WL_ESTATE;
    if (!wl_qualified(r, &t))
        return WL_EQUALIFY;
    int held = held_count(w, txn, r->id);
    if (held < 0)
        return held;
    if (held >= r->max_tasks)
        return WL_EFULL;
    return offer_to(w, txn, t, r, now, out);
}

/* A task offered elsewhere, or back to its queue state. */
static uint8_t queue_state_of(const wl_task *t) { return t->review ? WL_REVIEW : WL_QUEUED; }

int wl_claim(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, int64_t now, wl_task *out)
{
    wl_task t;
    int rc = wl_get(w, txn, id, &t);
    if (rc)
        return rc;
    wl_task old = t;
    if (t.state == WL_OFFERED) {
        if (strcmp(t.holder, r->id))
            return WL_ENOTYOURS;
    } else if (in_queue(t.state)) {
        if (!wl_qualified(r, &t))
            return WL_EQUALIFY;
        int held = held_count(w, txn, r->id);
        if (held < 0)
            return held;
        if (held >= r->max_tasks)
            return WL_EFULL;
        t.review = t.state == WL_REVIEW;
    } else if (is_held(t.state)) {
        return strcmp(t.holder, r->id) ? WL_ENOTYOURS : WL_ESTATE;
    } else {
        return WL_ESTATE;
    }
    t.state = WL_CLAIMED;
    t.front = 0;
    snprintf(t.holder, sizeof t.holder, "%s", r->id);
    t.holder_until_ms = now + w->cfg.lease_ms;
    if ((rc = transition(w, txn, &old, &t, r->id, t.review ? "claimed-review" : "claimed", NULL, now)))
        return rc;
    if (out)
        *out = t;
    return 0;
}

typedef int (*held_fn)(wl *w, MDB_txn *txn, wl_task *t, void *ctx);

/* Apply fn to every task held by reader (all readers when NULL). */
static int each_held(wl *w, MDB_txn *txn, const char *reader, held_fn fn, void *ctx)
{
    uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    MDB_cursor *c;
    if (mdb_cursor_open(txn, w->held, &c))
        return WL_ESTORE;
    uint8_t prefix[WL_ID_MAX + 1];
    size_t pl = 0;
    if (reader) {
        pl = strnlen(reader, WL_ID_MAX - 1) + 1;
        memcpy(prefix, reader, pl - 1);
        prefix[pl - 1] = 0;
    }
    MDB_val k = {pl, prefix}, v;
    int rc;
    for (rc = mdb_cursor_get(c, &k, &v, reader ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (reader && (k.mv_size != pl + 8 || memcmp(k.mv_data, prefix, pl)))
            break;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *q = realloc(ids, cap * sizeof *q);
            if (!q)
                break;
            ids = q;
        }
        ids[n++] = rd64((const uint8_t *)k.mv_data + k.mv_size - 8);
    }
    mdb_cursor_close(c);
    int changed = 0;
    for (size_t i = 0; i < n; i++) {
        wl_task t;
        if (wl_get(w, txn, ids[i], &t))
            continue;
        rc = fn(w, txn, &t, ctx);
        if (rc < 0) {
            free(ids);
            return rc;
        }
        changed += rc;
    }
    free(ids);
    return changed;
}

static int extend_one(wl *w, MDB_txn *txn, wl_task *t, void *ctx)
{
    int64_t now = *(int64_t *)ctx;
    if (t->state != WL_CLAIMED && t->state != WL_DRAFTED)
        return 0;
    wl_task old = *t;
    t->holder_until_ms = now + w->cfg.lease_ms;
    int rc = wl_put(w, txn, &old, t); /* heartbeats are not history */
    return rc ? rc : 1;
}

int wl_heartbeat(wl *w, MDB_txn *txn, const char *reader, int64_t now)
{
    return each_held(w, txn, reader, extend_one, &now);
}

static int back_to_queue(wl *w, MDB_txn *txn, wl_task *t, const char *actor, const char *what, bool front,
                         int64_t now)
{
    wl_task old = *t;
    if (t->state == WL_DRAFTED) {
        /* A draft's author lost the lease: the draft is kept with the task. */
    }
    t->state = queue_state_of(t);
    t->front = front;
    t->holder[0] = '\0';
    t->holder_until_ms = 0;
    return transition(w, txn, &old, t, actor, what, NULL, now);
}

int wl_release(wl *w, MDB_txn *txn, uint64_t id, const char *reader, int64_t now)
{
    wl_task t;
    int rc = wl_get(w, txn, id, &t);
    if (rc)
        return rc;
    if (!is_held(t.state))
        return WL_ESTATE;
    if (strcmp(t.holder, reader))
        return WL_ENOTYOURS;
    return back_to_queue(w, txn, &t, reader, "released", false, now);
}

static int held_by_check(const wl_task *t, const wl_reader *r)
{
    if (t->state != WL_CLAIMED && t->state != WL_DRAFTED)
        return WL_ESTATE;
    return strcmp(t->holder, r->id) ? WL_ENOTYOURS : 0;
}

int wl_draft(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, const char *report_id, int64_t now,
             wl_task *out)
{
    wl_task t;
    int rc = wl_get(w, txn, id, &t);
    if (rc || (rc = held_by_check(&t, r)))
        return rc;
    wl_task old = t;
    snprintf(t.report_id, sizeof t.report_id, "%s", report_id ? report_id : "");
    if (r->seniority == WL_RESIDENT && !t.review) {
        /* 初审 done: the draft waits for an attending's 审核. */
        snprintf(t.drafted_by, sizeof t.drafted_by, "%s", r->id);
        t.state = WL_REVIEW;
        t.review = 1;
        t.front = 0;
        t.holder[0] = '\0';
        t.holder_until_ms = 0;
        rc = transition(w, txn, &old, &t, r->id, "drafted-for-review", NULL, now);
    } else {
        t.state = WL_DRAFTED;
        if (!t.drafted_by[0])
            snprintf(t.drafted_by, sizeof t.drafted_by, "%s", r->id);
        rc = transition(w, txn, &old, &t, r->id, "drafted", NULL, now);
    }
    if (!rc && out)
        *out = t;
    return rc;
}

int wl_sign(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, const char *report_id, int64_t now,
            wl_task *out)
{
    wl_task t;
    int rc = wl_get(w, txn, id, &t);
    if (rc || (rc = held_by_check(&t, r)))
        return rc;
    if (r->seniority < WL_ATTENDING)
        return WL_EQUALIFY; /* a resident's reading is signed after review */
    wl_task old = t;
    t.state = WL_SIGNED;
    snprintf(t.signed_by, sizeof t.signed_by, "%s", r->id);
    if (report_id)
        snprintf(t.report_id, sizeof t.report_id, "%s", report_id);
    t.holder[0] = '\0';
    t.holder_until_ms = 0;
    if ((rc = transition(w, txn, &old, &t, r->id, "signed", t.report_id, now)))
        return rc;
    if (out)
        *out = t;
    return 0;
}

int wl_return(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, const char *why, int64_t now)
{
    wl_task t;
    int rc = wl_get(w, txn, id, &t);
    if (rc || (rc = held_by_check(&t, r)))
        return rc;
    if (!t.review || !t.drafted_by[0])
        return WL_ESTATE;
    wl_task old = t;
    /* Back to its author, claimed again, to revise. */
    t.state = WL_CLAIMED;
    t.review = 0;
    snprintf(t.holder, sizeof t.holder, "%s", t.drafted_by);
    t.holder_until_ms = now + w->cfg.lease_ms;
    return transition(w, txn, &old, &t, r->id, "returned", why, now);
}

int wl_addendum(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, int64_t now, wl_task *out)
{
    wl_task signed_task;
    int rc = wl_get(w, txn, id, &signed_task);
    if (rc)
        return rc;
    if (signed_task.state != WL_SIGNED)
        return WL_ESTATE;
    if (r->seniority < WL_ATTENDING || !wl_qualified(r, &signed_task))
        return WL_EQUALIFY;
    wl_task t = signed_task;
    if ((rc = counter(w, txn, "next_id", &t.id)) || (rc = counter(w, txn, "next_seq", &t.seq)))
        return rc;
    t.version = signed_task.version + 1;
    t.supersedes = signed_task.id;
    t.events = 0;
    t.state = WL_CLAIMED;
    t.review = 0;
    snprintf(t.holder, sizeof t.holder, "%s", r->id);
    t.holder_until_ms = now + w->cfg.lease_ms;
    t.signed_by[0] = t.report_id[0] = t.drafted_by[0] = '\0';
    char note[64];
    snprintf(note, sizeof note, "addendum to task %llu", (unsigned long long)signed_task.id);
    if ((rc = transition(w, txn, NULL, &t, r->id, "addendum", note, now)))
        return rc;
    if (out)
        *out = t;
    return 0;
}

int wl_cancel(wl *w, MDB_txn *txn, uint64_t id, const char *actor, const char *why, int64_t now)
{
    wl_task t;
    int rc = wl_get(w, txn, id, &t);
    if (rc)
        return rc;
    if (t.state == WL_SIGNED || t.state == WL_CANCELLED)
        return WL_ESTATE;
    wl_task old = t;
    t.state = WL_CANCELLED;
    t.holder[0] = '\0';
    return transition(w, txn, &old, &t, actor, "cancelled", why, now);
}

int wl_raise(wl *w, MDB_txn *txn, uint64_t id, wl_priority p, const char *why, int64_t now)
{
    wl_task t;
    int rc = wl_get(w, txn, id, &t);
    if (rc)
        return rc;
    if (p <= t.priority || t.state == WL_SIGNED || t.state == WL_CANCELLED)
        return 0;
    wl_task old = t;
    t.priority = (uint8_t)p;
    int64_t due = t.arrival_ms + due_for(w, t.kind, t.modality, p);
    if (due < t.due_ms)
        t.due_ms = due;
    rc = transition(w, txn, &old, &t, "hub", "raised", why, now);
    return rc ? rc : 1;
}

int wl_set_triage(wl *w, MDB_txn *txn, uint64_t id, const char *text, int64_t now)
{
    wl_task t;
    int rc = wl_get(w, txn, id, &t);
    if (rc)
        return rc;
    wl_task old = t;
    snprintf(t.triage, sizeof t.triage, "%s", text);
    (void)now;
    return wl_put(w, txn, &old, &t);
}

/* --- time passing -------------------------------------------------------------- */

static int expire_one(wl *w, MDB_txn *txn, wl_task *t, void *ctx)
{
    int64_t now = *(int64_t *)ctx;
    if (t->holder_until_ms > now)
        return 0;
    char holder[WL_ID_MAX];
    snprintf(holder, sizeof holder, "%s", t->holder);
    /* An unanswered offer goes back in line; a lapsed lease goes to the
     * front of its priority: somebody already judged it ready. */
    bool lease = t->state != WL_OFFERED;
    int rc = back_to_queue(w, txn, t, holder, lease ? "lease-lapsed" : "offer-expired", lease, now);
    return rc ? rc : 1;
}

/* Append the 8-byte big-endian id at idp to a growing list. */
static int push_id(uint64_t **ids, size_t *n, size_t *cap, const uint8_t *idp)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        uint64_t *q = realloc(*ids, nc * sizeof *q);
        if (!q)
            return WL_ESTORE;
        *ids = q;
        *cap = nc;
    }
    (*ids)[(*n)++] = rd64(idp);
    return 0;
}

/* The tasks whose offer or lease ends at or before `bound` (the front of
 * wl_until), or after it (from the back), collected first because the
 * callers move them in wl_until; *ids is the caller's to free. */
static int held_ending(wl *w, MDB_txn *txn, int64_t bound, bool after, uint64_t **ids, size_t *n)
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, w->until, &c))
        return WL_ESTORE;
    MDB_val k, v;
    size_t cap = 0;
    int rc = 0;
    *ids = NULL;
    *n = 0;
    MDB_cursor_op first = after ? MDB_LAST : MDB_FIRST, next = after ? MDB_PREV : MDB_NEXT;
    for (int g = mdb_cursor_get(c, &k, &v, first); g == 0 && !rc; g = mdb_cursor_get(c, &k, &v, next)) {
        if (k.mv_size != 16 || ((int64_t)rd64(k.mv_data) > bound) != after)
            break;
        rc = push_id(ids, n, &cap, (const uint8_t *)k.mv_data + 8);
    }
    mdb_cursor_close(c);
    return rc;
}

/* Offers and leases that ended by now. */
static int expire_due(wl *w, MDB_txn *txn, int64_t now)
{
    uint64_t *ids;
    size_t n;
    int rc = held_ending(w, txn, now, false, &ids, &n);
    int changed = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        wl_task t;
        if (wl_get(w, txn, ids[i], &t) || !is_held(t.state))
            continue;
        int e = expire_one(w, txn, &t, &now);
        if (e < 0)
            rc = e;
        else
            changed += e;
    }
    free(ids);
    return rc < 0 ? rc : changed;
}

/* Escalate tasks about to breach their due time.  Within a priority the
 * queue is ordered by front, then due time: per (priority, front) only the
 * entries due within the window are read. */
static int escalate_due(wl *w, MDB_txn *txn, int64_t now)
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, w->queue, &c))
        return WL_ESTORE;
    uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (int prio = WL_ROUTINE; prio < WL_STAT && !rc; prio++) { /* STAT: nothing higher */
        int64_t window = w->cfg.escalate_before ? w->cfg.escalate_before : due_for(w, -1, "*", prio) / 5;
        for (uint8_t front = 0; front < 2 && !rc; front++) {
            uint8_t from[2] = {(uint8_t)(2 - prio), front};
            MDB_val k = {2, from}, v;
            for (int g = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); g == 0 && !rc;
                 g = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                const uint8_t *kb = k.mv_data;
                if (k.mv_size != 18 || memcmp(kb, from, 2) || (int64_t)rd64(kb + 2) - now > window)
                    break;
                rc = push_id(&ids, &n, &cap, v.mv_data);
            }
        }
    }
    mdb_cursor_close(c);
    int changed = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        wl_task t;
        if (wl_get(w, txn, ids[i], &t) || t.escalated || t.priority >= WL_STAT)
            continue;
        wl_task old = t;
        t.priority++;
        t.escalated = 1;
        if (!(rc = transition(w, txn, &old, &t, "hub", "escalated", "due time near", now)))
            changed++;
    }
    free(ids);
    return rc < 0 ? rc : changed;
}

/* Offers and leases that end later than any can: set before the wall
 * clock went back (an NTP step, a corrected date), or before the hub was
 * restarted with shorter leases.  Left as they are, a
 * task offered to a reader who went away, or claimed by one whose
 * workstation died, would stay held for as long as the clock went back;
 * each gets the time it could have from now. */
static int clamp_ahead(wl *w, MDB_txn *txn, int64_t now)
{
    int64_t longest = w->cfg.lease_ms > w->cfg.offer_ms ? w->cfg.lease_ms : w->cfg.offer_ms;
    uint64_t *ids;
    size_t n;
    int rc = held_ending(w, txn, now + longest, true, &ids, &n);
    int changed = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        wl_task t;
        if (wl_get(w, txn, ids[i], &t) || !is_held(t.state))
            continue;
        int64_t most = now + (t.state == WL_OFFERED ? w->cfg.offer_ms : w->cfg.lease_ms);
        if (t.holder_until_ms <= most)
            continue;
        char note[96];
        snprintf(note, sizeof note, "it ended %lld s ahead: the clock went back, or the length was shortened",
                 (long long)((t.holder_until_ms - now) / 1000));
        wl_task old = t;
        t.holder_until_ms = most;
        if (!(rc = transition(w, txn, &old, &t, "hub", "hold-shortened", note, now)))
            changed++;
    }
    free(ids);
    return rc < 0 ? rc : changed;
}

int wl_tick(wl *w, MDB_txn *txn, int64_t now)
{
    int clamped = clamp_ahead(w, txn, now); /* not counted: nothing is freed */
    if (clamped < 0)
        return clamped;
    int expired = expire_due(w, txn, now);
    if (expired < 0)
        return expired;
    int escalated = escalate_due(w, txn, now);
    return escalated < 0 ? escalated : expired + escalated;
}

/* --- walks ---------------------------------------------------------------------- */

int wl_list(wl *w, MDB_txn *txn, int (*cb)(void *ctx, const wl_task *t), void *ctx)
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, w->task, &c))
        return WL_ESTORE;
    MDB_val k, v;
    int n = 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        wl_task t;
        if (wl_task_decode(v.mv_data, v.mv_size, &t))
            continue; /* unreadable: not listed */
        n++;
        if (cb && cb(ctx, &t))
            break;
    }
    mdb_cursor_close(c);
    return n;
}

int wl_list_queue(wl *w, MDB_txn *txn, int (*cb)(void *ctx, const wl_task *t), void *ctx)
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, w->queue, &c))
        return WL_ESTORE;
    MDB_val k, v;
    int n = 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        wl_task t;
        if (wl_get(w, txn, rd64(v.mv_data), &t))
            continue;
        n++;
        if (cb && cb(ctx, &t))
            break;
    }
    mdb_cursor_close(c);
    return n;
}

typedef struct held_walk {
    int (*cb)(void *ctx, const wl_task *t);
    void *ctx;
} held_walk;

static int held_cb(wl *w, MDB_txn *txn, wl_task *t, void *ctx)
{
    (void)w;
    (void)txn;
    held_walk *h = ctx;
    return h->cb && h->cb(h->ctx, t) ? -1 : 1; /* 1: counted */
}

int wl_held_by(wl *w, MDB_txn *txn, const char *reader, int (*cb)(void *ctx, const wl_task *t), void *ctx)
{
    held_walk h = {cb, ctx};
    int rc = each_held(w, txn, reader, held_cb, &h);
    return rc == -1 ? 0 : rc;
}

int wl_history(wl *w, MDB_txn *txn, uint64_t id, int (*cb)(void *ctx, const wl_event *e), void *ctx)
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, w->hist, &c))
        return WL_ESTORE;
    uint8_t p[8];
    be64(p, id);
    MDB_val k = {8, p}, v;
    int n = 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 12 || memcmp(k.mv_data, p, 8))
            break;
        wl_event e;
        if (wl_event_decode(v.mv_data, v.mv_size, &e))
            continue;
        n++;
        if (cb && cb(ctx, &e))
            break;
    }
    mdb_cursor_close(c);
    return n;
}

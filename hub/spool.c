/* spool.c — the edge's LMDB queue.  Databases:
 *   item   seq (8 bytes BE)          → spool_item (versioned record)
 *   data   seq ‖ chunk number (BE)   → up to STORE_CHUNK bytes of the file
 *   inbox  id                        → kind, time and bytes from the hub
 *   state  "link"                    → what the running edge last saw
 *   study  Study Instance UID        → instances and bytes queued and
 *                                      acknowledged (for `edge --status`)
 * The queue is small (a clinic's backlog), so listing scans `item`. */
#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "hub/lmdb_stamp.h"
#include "hub/spool_private.h"

#define SPOOL_CHUNK (1u << 20)
#define RECORD_VERSION 1


typedef struct item_rec {
    uint8_t    version;
    spool_item it;
} item_rec;

/* Per-study progress.  Delivered studies are forgotten after a week. */
typedef struct study_rec {
    uint8_t  version, priority, referral;
    uint32_t instances, acked;
    uint64_t bytes, acked_bytes;
    int64_t  first_ms, last_ack_ms;
} study_rec;
#define STUDY_KEEP_MS ((int64_t)7 * 86400 * 1000)

typedef struct link_rec {
    char     state[32];
    char     last_error[160];
    int64_t  since_ms, last_ack_ms;
    uint64_t delivered;
} link_rec;

static const char *const prio_names[3] = {"routine", "urgent", "stat"};

const char *spool_priority_name(int p) { return p >= 0 && p < 3 ? prio_names[p] : "routine"; }

int spool_priority_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, prio_names[i]))
            return i;
    return -1;
}

int spool_lerr(int rc)
{
    if (rc == 0)
        return 0;
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc == MDB_MAP_FULL)
        return -ENOBUFS; /* the spool's map; -ENOSPC is the disk's */
    return rc > 0 ? -rc : -EIO;
}

int spool_each(spool *s, MDB_dbi dbi, const MDB_val *from,
               int (*fn)(void *ctx, const MDB_val *k, const MDB_val *v), void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return spool_lerr(rc);
    if ((rc = mdb_cursor_open(txn, dbi, &cur))) {
        mdb_txn_abort(txn);
        return spool_lerr(rc);
    }
    MDB_val k = from ? *from : (MDB_val){0}, v;
    for (rc = mdb_cursor_get(cur, &k, &v, from ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if (fn(ctx, &k, &v))
            break;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return 0;
}

uint64_t spool_seq_of(const MDB_val *k)
{
    uint64_t seq = 0;
    for (size_t i = 0; k->mv_size == 8 && i < 8; i++)
        seq = seq << 8 | ((const uint8_t *)k->mv_data)[i];
    return seq;
}

uint64_t spool_last_seq(MDB_cursor *c)
{
    MDB_val k, v;
    return mdb_cursor_get(c, &k, &v, MDB_LAST) == 0 ? spool_seq_of(&k) : 0;
}

void spool_seq_key(uint8_t k[8], uint64_t seq)
{
    for (int i = 0; i < 8; i++)
        k[i] = (uint8_t)(seq >> (56 - 8 * i));
}

/* Commits the opening transaction, which LMDB frees even when the commit fails. */
static int commit_open(MDB_txn **txn)
{
    int rc = mdb_txn_commit(*txn);
    *txn = NULL;
    return rc;
}

int spool_open(const char *dir, uint64_t map_size, spool **out, char *err, size_t errlen)
{
    *out = NULL;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -errno;
    }
    spool *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->dir = strdup(dir);
    int rc;
    MDB_txn *txn = NULL;
    static const char *const names[] = {"item", "data", "inbox", "state", "study", "alerts", "patient", "audit", NULL};
    const size_t sizes[] = {RECORD_VERSION, sizeof(item_rec), sizeof(study_rec), sizeof(link_rec)};
    const lmdb_stamp stamp = {"edge spool", lmdb_stamp_layout(sizes, 4), names};
    if ((rc = mdb_env_create(&s->env)) || (rc = mdb_env_set_maxdbs(s->env, 12)) ||
        (rc = mdb_env_set_mapsize(s->env, map_size ? map_size : (uint64_t)8 << 30)) ||
        (rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) || (rc = mdb_txn_begin(s->env, NULL, 0, &txn)) ||
        (rc = lmdb_stamp_check(txn, &stamp, dir, err, errlen)) ||
        (rc = mdb_dbi_open(txn, "item", MDB_CREATE, &s->item)) ||
        (rc = mdb_dbi_open(txn, "data", MDB_CREATE, &s->data)) ||
        (rc = mdb_dbi_open(txn, "inbox", MDB_CREATE, &s->inbox)) ||
        (rc = mdb_dbi_open(txn, "state", MDB_CREATE, &s->state)) ||
        (rc = mdb_dbi_open(txn, "study", MDB_CREATE, &s->study)) ||
        (rc = mdb_dbi_open(txn, "alerts", MDB_CREATE, &s->alerts)) ||
        (rc = mdb_dbi_open(txn, "patient", MDB_CREATE, &s->patient)) ||
        (rc = mdb_dbi_open(txn, "audit", MDB_CREATE, &s->audit)) || (rc = commit_open(&txn))) {
        if (rc > 0) /* lmdb_stamp_check's refusals say why themselves */
            snprintf(err, errlen, "cannot open the spool in %s: %s", dir, mdb_strerror(rc));
        if (txn && rc)
            mdb_txn_abort(txn);
        if (s->env)
            mdb_env_close(s->env);
        free(s->dir);
        free(s);
        return rc < 0 ? rc : spool_lerr(rc);
    }
    *out = s;
    return 0;
}

void spool_close(spool **sp)
{
    if (!sp || !*sp)
        return;
    mdb_env_close((*sp)->env);
    free((*sp)->dir);
    free(*sp);
    *sp = NULL;
}

const char *spool_dir(const spool *s) { return s->dir; }

static uint64_t next_seq(spool *s, MDB_txn *txn)
{
    MDB_cursor *c;
    mdb_cursor_open(txn, s->item, &c);
    uint64_t seq = spool_last_seq(c) + 1;
    mdb_cursor_close(c);
    /* Sequences must never be reused while the hub may still hold a
     * half-sent item under an old number: keep a high-water mark too. */
    MDB_val hk = {3, "seq"}, hv;
    if (mdb_get(txn, s->state, &hk, &hv) == 0 && hv.mv_size == 8) {
        uint64_t hw;
        memcpy(&hw, hv.mv_data, 8);
        if (hw >= seq)
            seq = hw + 1;
    }
    hv = (MDB_val){8, &seq};
    mdb_put(txn, s->state, &hk, &hv, 0);
    return seq;
}

static int put_item(spool *s, MDB_txn *txn, const spool_item *it)
{
    uint8_t k[8];
    spool_seq_key(k, it->seq);
    item_rec r = {.version = RECORD_VERSION, .it = *it};
    MDB_val kv = {8, k}, vv = {sizeof r, &r};
    return mdb_put(txn, s->item, &kv, &vv, 0);
}

static int put_data(spool *s, MDB_txn *txn, uint64_t seq, int fd, uint64_t size)
{
    for (uint32_t c = 0; (uint64_t)c * SPOOL_CHUNK < size; c++) {
        uint8_t k[12];
        spool_seq_key(k, seq);
        k[8] = (uint8_t)(c >> 24);
        k[9] = (uint8_t)(c >> 16);
        k[10] = (uint8_t)(c >> 8);
        k[11] = (uint8_t)c;
        uint64_t off = (uint64_t)c * SPOOL_CHUNK;
        size_t n = size - off < SPOOL_CHUNK ? (size_t)(size - off) : SPOOL_CHUNK;
        MDB_val kv = {12, k}, vv = {n, NULL};
        int rc = mdb_put(txn, s->data, &kv, &vv, MDB_RESERVE);
        if (rc)
            return rc;
        for (size_t got = 0; got < n;) {
            ssize_t r = pread(fd, (uint8_t *)vv.mv_data + got, n - got, (off_t)(off + got));
            if (r <= 0)
                return r < 0 ? errno : EIO;
            got += (size_t)r;
        }
    }
    return 0;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int get_study(spool *s, MDB_txn *txn, const char *uid, study_rec *out)
{
    memset(out, 0, sizeof *out);
    MDB_val k = {strlen(uid), (void *)uid}, v;
    int rc = mdb_get(txn, s->study, &k, &v);
    if (rc == 0)
        memcpy(out, v.mv_data, v.mv_size < sizeof *out ? v.mv_size : sizeof *out);
    return rc;
}

static int put_study(spool *s, MDB_txn *txn, const char *uid, const study_rec *r)
{
    MDB_val k = {strlen(uid), (void *)uid}, v = {sizeof *r, (void *)r};
    return mdb_put(txn, s->study, &k, &v, 0);
}

/* Counts a queued instance into its study's totals. */
static int study_add(spool *s, MDB_txn *txn, const spool_item *it)
{
    if (!it->study_uid[0])
        return 0;
    study_rec r;
    if (get_study(s, txn, it->study_uid, &r) != 0 || (r.instances && r.acked == r.instances)) {
        /* new, or delivered before and now sent again: count afresh */
        r = (study_rec){.version = 1, .first_ms = it->created_ms};
    }
    r.instances++;
    r.bytes += it->size;
    if (it->priority > r.priority)
        r.priority = it->priority;
    r.referral |= it->referral;
    return put_study(s, txn, it->study_uid, &r);
}

/* Forgets studies delivered more than STUDY_KEEP_MS ago. */
static void study_prune(spool *s, MDB_txn *txn, int64_t now)
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, s->study, &c))
        return;
    MDB_val k, v;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        study_rec r = {0};
        memcpy(&r, v.mv_data, v.mv_size < sizeof r ? v.mv_size : sizeof r);
        if (r.acked >= r.instances && r.last_ack_ms && now - r.last_ack_ms > STUDY_KEEP_MS) {
            char uid[65]; /* a copy: k points into the page the deletes change */
            MDB_val pk = {k.mv_size < sizeof uid ? k.mv_size : sizeof uid, uid};
            memcpy(uid, k.mv_data, pk.mv_size);
            mdb_cursor_del(c, 0);
            mdb_del(txn, s->patient, &pk, NULL);
        }
    }
    mdb_cursor_close(c);
}

/* The study's patient, kept while the study is (audit records about it
 * name the patient even when what they are about does not). */
static int put_patient(spool *s, MDB_txn *txn, const char *study_uid, const char *patient)
{
    if (!study_uid[0] || !patient || !*patient)
        return 0;
    MDB_val k = {strlen(study_uid), (void *)study_uid}, v = {strlen(patient), (void *)patient};
    return mdb_put(txn, s->patient, &k, &v, 0);
}

/* One "received" record per study of a batch: who sent it, how many. */
static int audit_received(spool *s, MDB_txn *txn, const spool_item *meta, const char *const *patients, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t seen = 0, count = 0;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(meta[j].study_uid, meta[i].study_uid))
                continue;
            seen += j < i;
            count++;
        }
        if (seen)
            continue; /* said at the study's first instance of the batch */
        char detail[64];
        snprintf(detail, sizeof detail, "%zu instance(s) queued for the hub", count);
        spool_audit_rec r = {.t_ms = wall_ms(), .who = meta[i].source, .what = "received", .detail = detail,
                             .study_uid = meta[i].study_uid, .patient = patients ? patients[i] : NULL};
        rc = spool_txn_audit(s, txn, &r);
    }
    return rc;
}

int spool_put_files(spool *s, const char *const *paths, spool_item *meta, const char *const *patients, size_t n,
                    char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc) {
        snprintf(err, errlen, "spool: %s", mdb_strerror(rc));
        return spool_lerr(rc);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = errno;
            snprintf(err, errlen, "%s: %s", paths[i], strerror(errno));
            break;
        }
        meta[i].seq = next_seq(s, txn);
        meta[i].kind = SPOOL_INSTANCE;
        if ((rc = put_data(s, txn, meta[i].seq, fd, meta[i].size)) == 0 && (rc = put_item(s, txn, &meta[i])) == 0 &&
            (rc = study_add(s, txn, &meta[i])) == 0)
            rc = put_patient(s, txn, meta[i].study_uid, patients ? patients[i] : NULL);
        close(fd);
        if (rc)
            snprintf(err, errlen, "spool: %s", rc == MDB_MAP_FULL ? "the queue is full (its LMDB map)" : mdb_strerror(rc));
    }
    if (!rc && (rc = audit_received(s, txn, meta, patients, n)))
        snprintf(err, errlen, "spool: the audit trail: %s", rc == MDB_MAP_FULL ? "the spool's LMDB map is full" : mdb_strerror(rc));
    if (rc) {
        mdb_txn_abort(txn);
        return spool_lerr(rc);
    }
    study_prune(s, txn, wall_ms());
    if ((rc = mdb_txn_commit(txn))) {
        snprintf(err, errlen, "spool commit: %s", mdb_strerror(rc));
        return spool_lerr(rc);
    }
    return 0;
}

int spool_put_marker(spool *s, spool_item *m, char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (!rc) {
        m->seq = next_seq(s, txn);
        m->kind = SPOOL_MARKER;
        rc = put_item(s, txn, m);
        if (rc)
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn);
    }
    if (rc)
        snprintf(err, errlen, "spool: %s", mdb_strerror(rc));
    return spool_lerr(rc);
}

static int read_item(const MDB_val *v, spool_item *out)
{
    item_rec r;
    memset(&r, 0, sizeof r);
    memcpy(&r, v->mv_data, v->mv_size < sizeof r ? v->mv_size : sizeof r);
    *out = r.it;
    return r.version == RECORD_VERSION ? 0 : -EINVAL;
}

static int cmp_items(const void *a, const void *b)
{
    const spool_item *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

typedef struct item_list {
    int         include_failed;
    spool_item *items;
    size_t      n, cap;
} item_list;

static int collect_item(void *ctx, const MDB_val *k, const MDB_val *v)
{
    (void)k;
    item_list *l = ctx;
    spool_item it;
    if (read_item(v, &it) < 0 || (it.failed && !l->include_failed))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        spool_item *q = realloc(l->items, cap * sizeof *q);
        if (!q)
            return 1;
        l->items = q;
        l->cap = cap;
    }
    l->items[l->n++] = it;
    return 0;
}

int spool_list(spool *s, int include_failed, int (*cb)(void *ctx, const spool_item *it), void *ctx)
{
    item_list l = {.include_failed = include_failed};
    int rc = spool_each(s, s->item, NULL, collect_item, &l);
    if (rc < 0)
        return rc;
    spool_item *items = l.items;
    size_t n = l.n;
    if (n)
        qsort(items, n, sizeof *items, cmp_items);
    for (size_t i = 0; i < n; i++)
        if (cb(ctx, &items[i]))
            break;
    free(items);
    return (int)n;
}

int spool_get(spool *s, uint64_t seq, spool_item *out)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return spool_lerr(rc);
    uint8_t k[8];
    spool_seq_key(k, seq);
    MDB_val kv = {8, k}, v;
    rc = mdb_get(txn, s->item, &kv, &v);
    if (!rc)
        read_item(&v, out);
    mdb_txn_abort(txn);
    return spool_lerr(rc);
}

long spool_read(spool *s, const spool_item *it, uint64_t offset, void *buf, size_t len)
{
    if (offset >= it->size)
        return 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return spool_lerr(rc);
    size_t copied = 0;
    while (copied < len && offset + copied < it->size) {
        uint64_t pos = offset + copied;
        uint32_t c = (uint32_t)(pos / SPOOL_CHUNK);
        uint8_t k[12];
        spool_seq_key(k, it->seq);
        k[8] = (uint8_t)(c >> 24);
        k[9] = (uint8_t)(c >> 16);
        k[10] = (uint8_t)(c >> 8);
        k[11] = (uint8_t)c;
        MDB_val kv = {12, k}, v;
        if ((rc = mdb_get(txn, s->data, &kv, &v))) {
            mdb_txn_abort(txn);
            return rc == MDB_NOTFOUND ? -EIO : spool_lerr(rc);
        }
        size_t in = (size_t)(pos % SPOOL_CHUNK);
        if (in >= v.mv_size)
            break;
        size_t n = v.mv_size - in < len - copied ? v.mv_size - in : len - copied;
        memcpy((uint8_t *)buf + copied, (uint8_t *)v.mv_data + in, n);
        copied += n;
    }
    mdb_txn_abort(txn);
    return (long)copied;
}

int spool_update(spool *s, const spool_item *it)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return spool_lerr(rc);
    uint8_t k[8];
    spool_seq_key(k, it->seq);
    MDB_val kv = {8, k}, v;
    spool_item was;
    if ((rc = mdb_get(txn, s->item, &kv, &v)) == 0) { /* only items still queued */
        read_item(&v, &was);
        rc = put_item(s, txn, it);
        if (!rc && it->failed && !was.failed) {
            char detail[300];
            snprintf(detail, sizeof detail, "%s %s: %s", it->kind == SPOOL_MARKER ? "marker" : "instance",
                     it->kind == SPOOL_MARKER ? "" : it->sop_uid, it->last_error);
            spool_audit_rec r = {.t_ms = wall_ms(), .who = "hub", .what = "refused", .detail = detail,
                                 .study_uid = it->study_uid};
            rc = spool_txn_audit(s, txn, &r);
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        return spool_lerr(rc);
    }
    return spool_lerr(mdb_txn_commit(txn));
}

/* A record written while space is freed: in a child transaction, so that
 * a full map (the pages this transaction frees are reusable only after it
 * commits) loses the record, which the hub's own trail also holds, and
 * never the removal that makes room. */
static void audit_freeing(spool *s, MDB_txn *txn, const spool_audit_rec *r)
{
    MDB_txn *child;
    if (mdb_txn_begin(s->env, txn, 0, &child) != 0)
        return;
    if (spool_txn_audit(s, child, r) == 0)
        mdb_txn_commit(child);
    else
        mdb_txn_abort(child);
}

int spool_remove(spool *s, uint64_t seq)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return spool_lerr(rc);
    uint8_t k[8];
    spool_seq_key(k, seq);
    MDB_val kv = {8, k}, v;
    spool_item it;
    if ((rc = mdb_get(txn, s->item, &kv, &v)) == 0) {
        read_item(&v, &it);
        for (uint32_t c = 0; (uint64_t)c * SPOOL_CHUNK < it.size && !rc; c++) {
            uint8_t dk[12];
            memcpy(dk, k, 8);
            dk[8] = (uint8_t)(c >> 24);
            dk[9] = (uint8_t)(c >> 16);
            dk[10] = (uint8_t)(c >> 8);
            dk[11] = (uint8_t)c;
            MDB_val dkv = {12, dk};
            rc = mdb_del(txn, s->data, &dkv, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        }
        if (!rc)
            rc = mdb_del(txn, s->item, &kv, NULL);
        /* count deliveries for the status page */
        MDB_val lk = {4, "link"}, lv;
        link_rec lr = {0};
        if (!rc && mdb_get(txn, s->state, &lk, &lv) == 0)
            memcpy(&lr, lv.mv_data, lv.mv_size < sizeof lr ? lv.mv_size : sizeof lr);
        if (!rc && it.kind == SPOOL_INSTANCE) {
            lr.delivered++;
            lv = (MDB_val){sizeof lr, &lr};
            rc = mdb_put(txn, s->state, &lk, &lv, 0);
            study_rec sr;
            if (!rc && it.study_uid[0] && get_study(s, txn, it.study_uid, &sr) == 0 && sr.acked < sr.instances) {
                sr.acked++;
                sr.acked_bytes += it.size;
                sr.last_ack_ms = wall_ms();
                rc = put_study(s, txn, it.study_uid, &sr);
                if (!rc && sr.acked == sr.instances) { /* the study is wholly at the hub */
                    char detail[96];
                    snprintf(detail, sizeof detail, "%u instance(s), %llu bytes, durable at the hub", sr.instances,
                             (unsigned long long)sr.acked_bytes);
                    spool_audit_rec r = {.t_ms = sr.last_ack_ms, .who = "hub", .what = "delivered",
                                         .detail = detail, .study_uid = it.study_uid};
                    audit_freeing(s, txn, &r);
                }
            }
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? 0 : spool_lerr(rc); /* already gone: idempotent */
    }
    return spool_lerr(mdb_txn_commit(txn));
}

int spool_get_stats(spool *s, spool_stats *out)
{
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return spool_lerr(rc);
    MDB_cursor *c;
    mdb_cursor_open(txn, s->item, &c);
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        spool_item it;
        if (read_item(&v, &it) < 0)
            continue;
        if (it.failed) {
            out->failed++;
            continue;
        }
        if (it.kind == SPOOL_MARKER) {
            out->markers++;
            continue;
        }
        out->depth++;
        out->bytes_pending += it.size - (it.acked_bytes < it.size ? it.acked_bytes : it.size);
        out->by_priority[it.priority < 3 ? it.priority : 0]++;
        if (!out->oldest_ms || it.created_ms < out->oldest_ms)
            out->oldest_ms = it.created_ms;
    }
    mdb_cursor_close(c);
    MDB_val lk = {4, "link"}, lv;
    if (mdb_get(txn, s->state, &lk, &lv) == 0) {
        link_rec lr = {0};
        memcpy(&lr, lv.mv_data, lv.mv_size < sizeof lr ? lv.mv_size : sizeof lr);
        snprintf(out->link_state, sizeof out->link_state, "%s", lr.state);
        snprintf(out->last_error, sizeof out->last_error, "%s", lr.last_error);
        out->link_since_ms = lr.since_ms;
        out->last_ack_ms = lr.last_ack_ms;
        out->delivered = lr.delivered;
    } else {
        snprintf(out->link_state, sizeof out->link_state, "never connected");
    }
    MDB_stat st;
    if (mdb_stat(txn, s->inbox, &st) == 0)
        out->inbox = st.ms_entries;
    mdb_txn_abort(txn);
    return 0;
}

typedef struct study_list {
    spool_study *v;
    size_t       n, cap;
} study_list;

static spool_study *find_study(study_list *l, const char *uid)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].study_uid, uid))
            return &l->v[i];
    return NULL;
}

/* Unfinished first (most urgent, then oldest), then the latest delivered. */
static int cmp_studies(const void *a, const void *b)
{
    const spool_study *x = a, *y = b;
    int dx = x->acked >= x->instances, dy = y->acked >= y->instances;
    if (dx != dy)
        return dx - dy;
    if (!dx) {
        if (x->priority != y->priority)
            return x->priority > y->priority ? -1 : 1;
        return x->first_ms < y->first_ms ? -1 : x->first_ms > y->first_ms;
    }
    return x->last_ack_ms > y->last_ack_ms ? -1 : x->last_ack_ms < y->last_ack_ms;
}

int spool_studies(spool *s, int (*cb)(void *ctx, const spool_study *st), void *ctx)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return spool_lerr(rc);
    study_list l = {0};
    MDB_cursor *c;
    MDB_val k, v;
    mdb_cursor_open(txn, s->study, &c);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size >= sizeof l.v->study_uid)
            continue;
        if (l.n == l.cap) {
            size_t cap = l.cap ? l.cap * 2 : 32;
            spool_study *q = realloc(l.v, cap * sizeof *q);
            if (!q)
                break;
            l.v = q;
            l.cap = cap;
        }
        study_rec r = {0};
        memcpy(&r, v.mv_data, v.mv_size < sizeof r ? v.mv_size : sizeof r);
        spool_study *st = &l.v[l.n++];
        *st = (spool_study){.priority = r.priority, .referral = r.referral, .instances = r.instances,
                            .acked = r.acked, .bytes = r.bytes, .acked_bytes = r.acked_bytes,
                            .sent_bytes = r.acked_bytes, .first_ms = r.first_ms, .last_ack_ms = r.last_ack_ms};
        memcpy(st->study_uid, k.mv_data, k.mv_size);
        st->study_uid[k.mv_size] = '\0';
        spool_txn_patient(s, txn, st->study_uid, st->patient_id);
    }
    mdb_cursor_close(c);
    /* What is on its way: bytes the hub confirmed of items not yet acknowledged. */
    mdb_cursor_open(txn, s->item, &c);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        spool_item it;
        spool_study *st;
        if (read_item(&v, &it) < 0 || it.kind != SPOOL_INSTANCE || !(st = find_study(&l, it.study_uid)))
            continue;
        if (it.failed)
            st->refused++;
        st->sent_bytes += it.acked_bytes < it.size ? it.acked_bytes : it.size;
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    if (l.n)
        qsort(l.v, l.n, sizeof *l.v, cmp_studies);
    for (size_t i = 0; i < l.n; i++)
        if (cb(ctx, &l.v[i]))
            break;
    free(l.v);
    return (int)l.n;
}

int spool_set_link(spool *s, const char *state, const char *last_error, int64_t now_ms)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return spool_lerr(rc);
    MDB_val lk = {4, "link"}, lv;
    link_rec lr = {0};
    if (mdb_get(txn, s->state, &lk, &lv) == 0)
        memcpy(&lr, lv.mv_data, lv.mv_size < sizeof lr ? lv.mv_size : sizeof lr);
    if (state && strcmp(lr.state, state)) {
        snprintf(lr.state, sizeof lr.state, "%s", state);
        lr.since_ms = now_ms;
    }
    if (last_error)
        snprintf(lr.last_error, sizeof lr.last_error, "%s", last_error);
    if (state && !strcmp(state, "acked"))
        lr.last_ack_ms = now_ms;
    lv = (MDB_val){sizeof lr, &lr};
    if ((rc = mdb_put(txn, s->state, &lk, &lv, 0))) {
        mdb_txn_abort(txn);
        return spool_lerr(rc);
    }
    return spool_lerr(mdb_txn_commit(txn));
}

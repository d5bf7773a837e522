/* ws_cache.c — the workstation's LMDB cache (ws_cache.h): instances
 * streamed in from a file descriptor (never whole in our heap), read back
 * zero-copy, evicted by study, least recently used first; drafts and
 * signed reports beside them.
 *
 * The environment is opened MDB_NOSYNC: an instance lost to a power cut is
 * fetched again (LMDB keeps its integrity, only the last commits may be
 * undone), so instances do not pay an fsync each; drafts and signed
 * reports are flushed (mdb_env_sync) before their put returns. */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "viewer/ws_cache.h"
#include "hub/lmdb_stamp.h"
#include "codecs/banned.h"

#define PAGE          4096u
#define TOUCH_MS      60000 /* LRU time written at most this often per study */
#define MAP_EXTRA     ((uint64_t)64 << 20)

struct ws_cache {
    MDB_env *env;
    MDB_dbi  inst, imeta, study, sinst, draft, signed_, signer, held;
    uint64_t limit, bytes, studies, instances, evicted;
};

struct ws_read {
    MDB_txn *txn;
};

/* A study's record. */
typedef struct study_rec {
    uint64_t bytes, n;
    int64_t  last_used;
} study_rec;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t charge(uint64_t size) { return (size + PAGE - 1) / PAGE * PAGE + 64; }

static MDB_val sval(const char *s) { return (MDB_val){strlen(s), (void *)s}; }

int ws_cache_open(const char *dir, uint64_t limit, ws_cache **out, char *err, size_t errlen)
{
    *out = NULL;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the cache folder %.300s: %s", dir, strerror(errno));
        return -errno;
    }
    ws_cache *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->limit = limit;
    MDB_txn *txn = NULL;
    int rc;
    /* Room for the limit, plus the pages a transaction that evicts and
     * inserts needs before its frees can be reused. */
    uint64_t map = limit + limit / 2 + MAP_EXTRA;
    static const char *const names[] = {"inst", "imeta", "study", "sinst", "draft", "signed", "signer", "held", NULL};
    const size_t sizes[] = {1, sizeof(study_rec)};
    const lmdb_stamp stamp = {"workstation cache", lmdb_stamp_layout(sizes, 2), names};
    if ((rc = mdb_env_create(&c->env)) || (rc = mdb_env_set_maxdbs(c->env, 12)) ||
        (rc = mdb_env_set_mapsize(c->env, map)) || (rc = mdb_env_set_maxreaders(c->env, 256)) ||
        (rc = mdb_env_open(c->env, dir, MDB_NOTLS | MDB_NOSYNC, 0600)) || (rc = mdb_reader_check(c->env, NULL)) ||
        (rc = mdb_txn_begin(c->env, NULL, 0, &txn)) || (rc = lmdb_stamp_check(txn, &stamp, dir, err, errlen)) ||
        (rc = mdb_dbi_open(txn, "inst", MDB_CREATE, &c->inst)) ||
        (rc = mdb_dbi_open(txn, "imeta", MDB_CREATE, &c->imeta)) ||
        (rc = mdb_dbi_open(txn, "study", MDB_CREATE, &c->study)) ||
        (rc = mdb_dbi_open(txn, "sinst", MDB_CREATE | MDB_DUPSORT, &c->sinst)) ||
        (rc = mdb_dbi_open(txn, "draft", MDB_CREATE, &c->draft)) ||
        (rc = mdb_dbi_open(txn, "signed", MDB_CREATE, &c->signed_)) ||
        (rc = mdb_dbi_open(txn, "signer", MDB_CREATE, &c->signer)) ||
        (rc = mdb_dbi_open(txn, "held", MDB_CREATE, &c->held)))
        goto fail;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, c->study, &cur)))
        goto fail;
    MDB_val k, v;
    for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        study_rec r;
        if (v.mv_size != sizeof r)
            continue;
        memcpy(&r, v.mv_data, sizeof r);
        c->bytes += r.bytes;
        c->instances += r.n;
        c->studies++;
    }
    mdb_cursor_close(cur);
    if ((rc = mdb_txn_commit(txn))) {
        txn = NULL;
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (rc > 0) /* lmdb_stamp_check's refusals say why themselves */
        snprintf(err, errlen, "cache %.300s: %s", dir, mdb_strerror(rc));
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(c->env);
    free(c);
    return rc < 0 ? rc : -EIO;
}

void ws_cache_close(ws_cache **cp)
{
    if (!cp || !*cp)
        return;
    mdb_env_close((*cp)->env);
    free(*cp);
    *cp = NULL;
}

int ws_cache_has(ws_cache *c, const char *sop)
{
    MDB_txn *txn;
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
        return 0;
    MDB_val k = sval(sop), v;
    int has = mdb_get(txn, c->imeta, &k, &v) == 0;
    mdb_txn_abort(txn);
    return has;
}

size_t ws_cache_study_count(ws_cache *c, const char *study)
{
    MDB_txn *txn;
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
        return 0;
    MDB_val k = sval(study), v;
    size_t n = 0;
    if (mdb_get(txn, c->study, &k, &v) == 0 && v.mv_size == sizeof(study_rec)) {
        study_rec r;
        memcpy(&r, v.mv_data, sizeof r);
        n = (size_t)r.n;
    }
    mdb_txn_abort(txn);
    return n;
}

/* Drops every instance of the study (inside txn). */
static int drop_study(ws_cache *c, MDB_txn *txn, MDB_val *study, uint64_t *freed, uint64_t *n)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->sinst, &cur);
    if (rc)
        return rc;
    MDB_val k = *study, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
        MDB_val sop = v;
        mdb_del(txn, c->inst, &sop, NULL);
        mdb_del(txn, c->imeta, &sop, NULL);
    }
    mdb_cursor_close(cur);
    MDB_val sk = *study, sv;
    study_rec r = {0};
    if (mdb_get(txn, c->study, &sk, &sv) == 0 && sv.mv_size == sizeof r)
        memcpy(&r, sv.mv_data, sizeof r);
    *freed = r.bytes;
    *n = r.n;
    mdb_del(txn, c->sinst, &sk, NULL);
    rc = mdb_del(txn, c->study, &sk, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The least recently used study not pinned and not `except`: 1 and its
 * UID in out, or 0 when none. */
static int lru_victim(ws_cache *c, MDB_txn *txn, const char *except, ws_pinned_fn pinned, void *pctx, char out[72])
{
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, c->study, &cur))
        return 0;
    MDB_val k, v;
    int64_t best = INT64_MAX;
    int found = 0;
    for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        study_rec r;
        if (v.mv_size != sizeof r || k.mv_size >= 72)
            continue;
        memcpy(&r, v.mv_data, sizeof r);
        char uid[72];
        memcpy(uid, k.mv_data, k.mv_size);
        uid[k.mv_size] = '\0';
        if (!strcmp(uid, except) || r.last_used >= best || (pinned && pinned(pctx, uid)))
            continue;
        best = r.last_used;
        memcpy(out, uid, k.mv_size + 1);
        found = 1;
    }
    mdb_cursor_close(cur);
    return found;
}

int ws_cache_room(ws_cache *c, uint64_t size, ws_pinned_fn pinned, void *pctx)
{
    uint64_t need = charge(size), freeable = 0;
    if (c->bytes + need <= c->limit)
        return 1;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
        return 0;
    if (mdb_cursor_open(txn, c->study, &cur) == 0) {
        MDB_val k, v;
        for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
            study_rec r;
            char uid[72];
            if (v.mv_size != sizeof r || k.mv_size >= sizeof uid)
                continue;
            memcpy(&r, v.mv_data, sizeof r);
            memcpy(uid, k.mv_data, k.mv_size);
            uid[k.mv_size] = '\0';
            if (!pinned || !pinned(pctx, uid))
                freeable += r.bytes;
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return c->bytes - (freeable < c->bytes ? freeable : c->bytes) + need <= c->limit;
}

static int read_into(int fd, uint8_t *dst, uint64_t size)
{
    uint64_t got = 0;
    while (got < size) {
        ssize_t k = pread(fd, dst + got, (size_t)(size - got > (1u << 20) ? 1u << 20 : size - got), (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -EIO;
        got += (uint64_t)k;
    }
    return 0;
}

int ws_cache_put_fd(ws_cache *c, const char *study, const char *sop, int fd, uint64_t size, ws_pinned_fn pinned,
                    void *pctx, char *err, size_t errlen)
{
    if (!study[0] || strlen(study) > 64 || !sop[0] || strlen(sop) > 64) {
        snprintf(err, errlen, "a UID longer than 64 characters or empty");
        return -EINVAL;
    }
    uint64_t need = charge(size);
    if (need > c->limit) {
        snprintf(err, errlen, "an instance of %llu bytes is larger than the whole cache",
                 (unsigned long long)size);
        return -ENOSPC;
    }
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc) {
        snprintf(err, errlen, "cache: %s", mdb_strerror(rc));
        return -EIO;
    }
    MDB_val k = sval(sop), v;
    if (mdb_get(txn, c->imeta, &k, &v) == 0) { /* someone else fetched it meanwhile */
        mdb_txn_abort(txn);
        return 0;
    }
    uint64_t bytes = c->bytes, studies = c->studies, instances = c->instances, evicted = 0;
    while (bytes + need > c->limit) {
        char victim[72];
        if (!lru_victim(c, txn, study, pinned, pctx, victim)) {
            mdb_txn_abort(txn);
            snprintf(err, errlen, "cache full: %llu of %llu bytes used by studies being read",
                     (unsigned long long)bytes, (unsigned long long)c->limit);
            return -ENOSPC;
        }
        MDB_val vk = sval(victim);
        uint64_t freed = 0, n = 0;
        if ((rc = drop_study(c, txn, &vk, &freed, &n)))
            goto lmdb_fail;
        bytes -= freed < bytes ? freed : bytes;
        instances -= n < instances ? n : instances;
        studies -= studies ? 1 : 0;
        evicted++;
    }
    v.mv_size = (size_t)size;
    if ((rc = mdb_put(txn, c->inst, &k, &v, MDB_RESERVE)))
        goto lmdb_fail;
    if (read_into(fd, v.mv_data, size) < 0) {
        mdb_txn_abort(txn);
        snprintf(err, errlen, "cannot read the fetched instance back");
        return -EIO;
    }
    MDB_val sk = sval(study), sv = sval(study);
    if ((rc = mdb_put(txn, c->imeta, &k, &sv, 0)) || (rc = mdb_put(txn, c->sinst, &sk, &k, 0)))
        goto lmdb_fail;
    study_rec r = {0};
    MDB_val rv;
    int is_new = mdb_get(txn, c->study, &sk, &rv) != 0 || rv.mv_size != sizeof r;
    if (!is_new)
        memcpy(&r, rv.mv_data, sizeof r);
    r.bytes += need;
    r.n++;
    r.last_used = now_ms();
    rv = (MDB_val){sizeof r, &r};
    if ((rc = mdb_put(txn, c->study, &sk, &rv, 0)))
        goto lmdb_fail;
    if ((rc = mdb_txn_commit(txn))) {
        snprintf(err, errlen, "cache: %s", mdb_strerror(rc));
        return rc == MDB_MAP_FULL ? -ENOSPC : -EIO;
    }
    c->bytes = bytes + need;
    c->instances = instances + 1;
    c->studies = studies + (uint64_t)is_new;
    c->evicted += evicted;
    return 0;
lmdb_fail:
    mdb_txn_abort(txn);
    snprintf(err, errlen, "cache: %s", mdb_strerror(rc));
    return rc == MDB_MAP_FULL ? -ENOSPC : -EIO;
}

int ws_cache_get(ws_cache *c, const char *sop, ws_read **out, const uint8_t **p, size_t *n, char *study_out)
{
    *out = NULL;
    ws_read *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &r->txn)) {
        free(r);
        return -EIO;
    }
    MDB_val k = sval(sop), v, m;
    if (mdb_get(r->txn, c->inst, &k, &v) != 0) {
        ws_read_end(&r);
        return -ENOENT;
    }
    if (study_out) {
        study_out[0] = '\0';
        if (mdb_get(r->txn, c->imeta, &k, &m) == 0 && m.mv_size < 65) {
            memcpy(study_out, m.mv_data, m.mv_size);
            study_out[m.mv_size] = '\0';
        }
    }
    *p = v.mv_data;
    *n = v.mv_size;
    *out = r;
    return 0;
}

void ws_read_end(ws_read **rp)
{
    if (!rp || !*rp)
        return;
    mdb_txn_abort((*rp)->txn);
    free(*rp);
    *rp = NULL;
}

void ws_cache_touch(ws_cache *c, const char *study)
{
    MDB_txn *txn;
    MDB_val k = sval(study), v;
    study_rec r;
    int64_t now = now_ms();
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
        return;
    int fresh = mdb_get(txn, c->study, &k, &v) != 0 || v.mv_size != sizeof r;
    if (!fresh) {
        memcpy(&r, v.mv_data, sizeof r);
        fresh = now - r.last_used < TOUCH_MS;
    }
    mdb_txn_abort(txn);
    if (fresh || mdb_txn_begin(c->env, NULL, 0, &txn))
        return;
    if (mdb_get(txn, c->study, &k, &v) == 0 && v.mv_size == sizeof r) {
        memcpy(&r, v.mv_data, sizeof r);
        r.last_used = now;
        v = (MDB_val){sizeof r, &r};
        if (mdb_put(txn, c->study, &k, &v, 0) == 0) {
            mdb_txn_commit(txn);
            return;
        }
    }
    mdb_txn_abort(txn);
}

void ws_cache_stats_get(ws_cache *c, ws_cache_stats *out)
{
    out->bytes = c->bytes;
    out->limit = c->limit;
    out->studies = c->studies;
    out->instances = c->instances;
    out->evicted_studies = c->evicted;
}

static int kv_dbi(ws_cache *c, const char *db, MDB_dbi *out)
{
    if (!strcmp(db, "draft"))
        *out = c->draft;
    else if (!strcmp(db, "signed"))
        *out = c->signed_;
    else if (!strcmp(db, "signer"))
        *out = c->signer;
    else if (!strcmp(db, "held"))
        *out = c->held;
    else
        return -EINVAL;
    return 0;
}

int ws_cache_kv_put(ws_cache *c, const char *db, const char *key, const void *p, size_t n)
{
    MDB_dbi dbi;
    MDB_txn *txn;
    if (kv_dbi(c, db, &dbi) < 0)
        return -EINVAL;
    if (mdb_txn_begin(c->env, NULL, 0, &txn))
        return -EIO;
    MDB_val k = sval(key), v = {n, (void *)p};
    if (mdb_put(txn, dbi, &k, &v, 0)) {
        mdb_txn_abort(txn);
        return -EIO;
    }
    if (mdb_txn_commit(txn))
        return -EIO;
    return mdb_env_sync(c->env, 1) ? -EIO : 0; /* the reader's words: on disk before we answer */
}

int ws_cache_kv_get(ws_cache *c, const char *db, const char *key, char **p, size_t *n)
{
    MDB_dbi dbi;
    MDB_txn *txn;
    *p = NULL;
    *n = 0;
    if (kv_dbi(c, db, &dbi) < 0)
        return -EINVAL;
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
        return -EIO;
    MDB_val k = sval(key), v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc) {
        mdb_txn_abort(txn);
        return rc == MDB_NOTFOUND ? -ENOENT : -EIO;
    }
    char *q = malloc(v.mv_size + 1);
    if (q) {
        memcpy(q, v.mv_data, v.mv_size);
        q[v.mv_size] = '\0';
        *p = q;
        *n = v.mv_size;
    }
    mdb_txn_abort(txn);
    return q ? 0 : -ENOMEM;
}

int ws_cache_kv_del(ws_cache *c, const char *db, const char *key)
{
    MDB_dbi dbi;
    MDB_txn *txn;
    if (kv_dbi(c, db, &dbi) < 0)
        return -EINVAL;
    if (mdb_txn_begin(c->env, NULL, 0, &txn))
        return -EIO;
    MDB_val k = sval(key);
    int rc = mdb_del(txn, dbi, &k, NULL);
    if (rc && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return -EIO;
    }
    if (mdb_txn_commit(txn))
        return -EIO;
    return mdb_env_sync(c->env, 1) ? -EIO : 0;
}

int ws_cache_kv_each(ws_cache *c, const char *db, int (*cb)(void *ctx, const char *key, const char *v, size_t n),
                     void *ctx)
{
    MDB_dbi dbi;
    MDB_txn *txn;
    MDB_cursor *cur;
    if (kv_dbi(c, db, &dbi) < 0)
        return -EINVAL;
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn))
        return -EIO;
    if (mdb_cursor_open(txn, dbi, &cur)) {
        mdb_txn_abort(txn);
        return -EIO;
    }
    /* copies first: cb may write to the cache (a write waits for no reader) */
    typedef struct rec { char *k, *v; size_t n; } rec;
    rec *list = NULL;
    size_t n = 0, cap = 0;
    MDB_val k, v;
    int rc = 0;
    for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            rec *g = realloc(list, cap * sizeof *g);
            if (!g) {
                rc = -ENOMEM;
                break;
            }
            list = g;
        }
        list[n].k = strndup(k.mv_data, k.mv_size);
        list[n].v = strndup(v.mv_data, v.mv_size);
        list[n].n = v.mv_size;
        n++;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    for (size_t i = 0; i < n; i++) {
        if (!rc && list[i].k && list[i].v && cb(ctx, list[i].k, list[i].v, list[i].n))
            rc = 1;
        free(list[i].k);
        free(list[i].v);
    }
    free(list);
    return rc < 0 ? rc : 0;
}

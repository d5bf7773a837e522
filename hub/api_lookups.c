/* api_lookups.c — the local part of a lookup answer kept whole, per
 * question (patient, since, type, link prefix), so a patient asked about
 * again costs one copy into the answer instead of an index scan and a
 * recognition pass per exam.  Entries are shared bodies (api_body.c): a
 * lookup takes a reference under the slot's lock and copies outside it,
 * and a replaced entry is freed by whoever holds its last reference.
 *
 * An entry holds only while every input of its answer is unchanged: no
 * report was indexed after the commit its snapshot saw (store_report_txn,
 * marked inside the indexing transaction, so never seen too late); its
 * generation mixes the store's instance generation (instances stored or
 * evicted), the recognition generation
 * (trust list, CRL, rules, allow-list: every SIGHUP) and the day (validity
 * counts days), all read before the answer's snapshot (the instance
 * generation also grows with every commit of another process to the
 * store); and it expires when the first of its exams' verdicts would be
 * checked again against the stored bytes (recog_result.trusted_ms, at most
 * a day), so this cache never stretches the re-hash window ARCHITECTURE.md
 * promises.
 *
 * Sets of LC_WAYS slots under striped locks: a question takes a free slot
 * of its set, else the one that expires first (direct-mapped slots made
 * one question in seven evict another at 10,000 patients, each then
 * answered afresh).  Bounded by bytes: past the bound an answer is not
 * kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/api_private.h"
#include "codecs/banned.h"

#define LC_SLOTS   65536 /* power of two; ~16 MiB of slots */
#define LC_WAYS    4     /* slots per set (a power of two) */
#define LC_STRIPES 64
#define LC_KEY_MAX 192
#define LC_TEXT_MAX ((size_t)1 << 20) /* a larger answer is not kept */

typedef struct lslot {
    char     key[LC_KEY_MAX]; /* "" : free */
    uint64_t gen, snap;
    int64_t  expires_ms;      /* monotonic */
    api_body *body;           /* the exams' JSON; one reference is the slot's */
    size_t   len;             /* its length, as counted in bytes */
    unsigned n, recognised;
} lslot;

struct api_lcache {
    pthread_mutex_t  lock[LC_STRIPES];
    _Atomic size_t   bytes;
    size_t           max_bytes;
    lslot            s[LC_SLOTS];
};

int64_t api_lcache_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

api_lcache *api_lcache_new(size_t max_bytes)
{
    api_lcache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    for (int i = 0; i < LC_STRIPES; i++)
        pthread_mutex_init(&c->lock[i], NULL);
    c->max_bytes = max_bytes;
    return c;
}

void api_lcache_free(api_lcache **cp)
{
    api_lcache *c = cp ? *cp : NULL;
    if (!c)
        return;
    for (size_t i = 0; i < LC_SLOTS; i++)
        api_body_unref(c->s[i].body);
    for (int i = 0; i < LC_STRIPES; i++)
        pthread_mutex_destroy(&c->lock[i]);
    free(c);
    *cp = NULL;
}

/* The first slot of key's set. */
static size_t set_of(const char *key)
{
    uint64_t h = 14695981039346656037ULL;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    return (size_t)(h ^ (h >> 29)) & (LC_SLOTS - LC_WAYS);
}

static void clear(api_lcache *c, lslot *s)
{
    atomic_fetch_sub(&c->bytes, s->len);
    api_body_unref(s->body);
    s->body = NULL;
    s->len = 0;
    s->key[0] = '\0';
}

api_body *api_lcache_get(api_lcache *c, const char *key, uint64_t gen, uint64_t report_txn, unsigned *n,
                         unsigned *recognised)
{
    if (!c || strlen(key) >= LC_KEY_MAX)
        return NULL;
    size_t set = set_of(key);
    pthread_mutex_t *lk = &c->lock[(set / LC_WAYS) % LC_STRIPES];
    int64_t now = api_lcache_now_ms();
    api_body *hit = NULL;
    pthread_mutex_lock(lk);
    for (size_t w = 0; w < LC_WAYS; w++) {
        lslot *s = &c->s[set + w];
        if (!s->key[0] || strcmp(s->key, key))
            continue;
        if (s->gen == gen && report_txn <= s->snap && now < s->expires_ms) {
            hit = api_body_ref(s->body);
            *n = s->n;
            *recognised = s->recognised;
        } else {
            clear(c, s); /* stale: its memory back at once */
        }
        break;
    }
    pthread_mutex_unlock(lk);
    return hit;
}

void api_lcache_put(api_lcache *c, const char *key, uint64_t gen, uint64_t snap, int64_t expires_ms, api_body *body,
                    unsigned n, unsigned recognised)
{
    size_t len;
    api_body_data(body, &len);
    if (!c || strlen(key) >= LC_KEY_MAX || len > LC_TEXT_MAX || atomic_load(&c->bytes) + len > c->max_bytes)
        return;
    size_t set = set_of(key);
    pthread_mutex_t *lk = &c->lock[(set / LC_WAYS) % LC_STRIPES];
    pthread_mutex_lock(lk);
    /* the question's own slot, else a free one, else the one expiring first */
    lslot *s = NULL;
    for (size_t w = 0; w < LC_WAYS && !(s && s->key[0] && !strcmp(s->key, key)); w++) {
        lslot *t = &c->s[set + w];
        if (t->key[0] && !strcmp(t->key, key))
            s = t;
        else if (!s || (s->key[0] && (!t->key[0] || t->expires_ms < s->expires_ms)))
            s = t;
    }
    if (s->body)
        clear(c, s);
    snprintf(s->key, sizeof s->key, "%s", key);
    s->gen = gen;
    s->snap = snap;
    s->expires_ms = expires_ms;
    s->body = api_body_ref(body);
    s->len = len;
    s->n = n;
    s->recognised = recognised;
    atomic_fetch_add(&c->bytes, len);
    pthread_mutex_unlock(lk);
}

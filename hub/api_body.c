/* api_body.c — rendered study details kept whole, so a repeated lookup of
 * the same study costs one study-record read and no rendering: a body is
 * immutable and reference-counted (the cache holds one reference, each
 * response being sent holds one), and it stays valid only while the study
 * record it was rendered from is unchanged byte for byte.  Every change
 * that alters a detail (an instance or conflict added, a state change, a
 * marker, completion) rewrites that record, so no stale body is served. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "hub/api_private.h"
#include "codecs/banned.h"

#define BCACHE_ENTRIES 64

struct api_body {
    _Atomic unsigned refs;
    char            *p;
    size_t           len;
    /* the text deflated once, for gzip answers (api_body_deflated) */
    pthread_mutex_t  zmu;
    _Atomic bool     zready;
    char            *z;
    size_t           zlen;
    uint32_t         crc;
};

api_body *api_body_new(jbuf *b)
{
    api_body *body = malloc(sizeof *body);
    if (!body)
        return NULL;
    atomic_init(&body->refs, 1);
    body->p = jb_detach(b, &body->len);
    pthread_mutex_init(&body->zmu, NULL);
    atomic_init(&body->zready, false);
    body->z = NULL;
    body->zlen = 0;
    body->crc = 0;
    return body;
}

int api_body_deflated(api_body *b, const uint8_t **z, size_t *zlen, uint32_t *crc)
{
    if (!atomic_load_explicit(&b->zready, memory_order_acquire)) {
        pthread_mutex_lock(&b->zmu);
        if (!atomic_load_explicit(&b->zready, memory_order_relaxed)) {
            jbuf out = {0};
            if (api_deflate_raw(&out, b->p ? b->p : "", b->len, false) < 0 || !jb_ok(&out)) {
                jb_release(&out);
                pthread_mutex_unlock(&b->zmu);
                return -1;
            }
            jb_fit(&out);
            b->z = jb_detach(&out, &b->zlen);
            b->crc = (uint32_t)crc32(0L, (const Bytef *)(b->p ? b->p : ""), (uInt)b->len);
            atomic_store_explicit(&b->zready, true, memory_order_release);
        }
        pthread_mutex_unlock(&b->zmu);
    }
    *z = (const uint8_t *)b->z;
    *zlen = b->zlen;
    *crc = b->crc;
    return 0;
}

const char *api_body_data(const api_body *b, size_t *len)
{
    *len = b->len;
    return b->p ? b->p : "";
}

api_body *api_body_ref(api_body *b)
{
    atomic_fetch_add(&b->refs, 1);
    return b;
}

void api_body_unref(api_body *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1) {
        free(b->p);
        free(b->z);
        pthread_mutex_destroy(&b->zmu);
        free(b);
    }
}

typedef struct bentry {
    store_study st;       /* the record the body was rendered from */
    api_body   *body;     /* NULL: free entry */
    uint64_t    used;     /* tick of last use, for LRU */
    uint64_t    gen;      /* the store's conflict generation then */
} bentry;

struct api_bcache {
    pthread_mutex_t mu;
    size_t          bytes, max_bytes;
    uint64_t        tick;
    bentry          e[BCACHE_ENTRIES];
};

api_bcache *api_bcache_new(size_t max_bytes)
{
    api_bcache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->max_bytes = max_bytes;
    return c;
}

static void drop(api_bcache *c, bentry *e)
{
    c->bytes -= e->body->len;
    api_body_unref(e->body);
    e->body = NULL;
}

void api_bcache_free(api_bcache **cp)
{
    api_bcache *c = cp ? *cp : NULL;
    if (!c)
        return;
    for (size_t i = 0; i < BCACHE_ENTRIES; i++)
        if (c->e[i].body)
            drop(c, &c->e[i]);
    pthread_mutex_destroy(&c->mu);
    free(c);
    *cp = NULL;
}

static bentry *lookup(api_bcache *c, const char *study_uid)
{
    for (size_t i = 0; i < BCACHE_ENTRIES; i++)
        if (c->e[i].body && !strcmp(c->e[i].st.study_uid, study_uid))
            return &c->e[i];
    return NULL;
}

api_body *api_bcache_get(api_bcache *c, const store_study *st, uint64_t gen)
{
    api_body *b = NULL;
    pthread_mutex_lock(&c->mu);
    bentry *e = lookup(c, st->study_uid);
    if (e && e->gen == gen && !memcmp(&e->st, st, sizeof *st)) {
        e->used = ++c->tick;
        b = api_body_ref(e->body);
    }
    pthread_mutex_unlock(&c->mu);
    return b;
}

static bentry *least_recent(api_bcache *c)
{
    bentry *old = NULL;
    for (size_t i = 0; i < BCACHE_ENTRIES; i++) {
        if (!c->e[i].body)
            return &c->e[i];
        if (!old || c->e[i].used < old->used)
            old = &c->e[i];
    }
    return old;
}

void api_bcache_put(api_bcache *c, const store_study *st, uint64_t gen, api_body *b)
{
    if (b->len > c->max_bytes / 4)
        return; /* one huge study must not push every other out */
    pthread_mutex_lock(&c->mu);
    bentry *e = lookup(c, st->study_uid);
    if (e)
        drop(c, e);
    while (c->bytes + b->len > c->max_bytes && (e = least_recent(c)) && e->body)
        drop(c, e);
    e = least_recent(c);
    if (e->body)
        drop(c, e);
    e->st = *st;
    e->gen = gen;
    e->body = api_body_ref(b);
    e->used = ++c->tick;
    c->bytes += b->len;
    pthread_mutex_unlock(&c->mu);
}

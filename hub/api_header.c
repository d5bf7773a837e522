/* api_header.c — an instance's header as DICOM JSON, read from the stored
 * bytes (the first 64 KiB, more only when the header is longer; pixel
 * data never) through dcm_parse and dcm_json_write, and kept in a cache
 * keyed by content digest: a stored instance's bytes never change, so an
 * entry never goes stale. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "hub/api_private.h"
#include "codecs/banned.h"

typedef struct hslot {
    uint8_t      digest[32];
    char        *json;        /* DICOM JSON of the header; NULL: empty slot */
    size_t       len;
    api_series_attrs sa;
    bool         ref;         /* clock bit: used since the hand last passed */
} hslot;

/* Set-associative by digest (a direct-mapped table thrashes on the
 * birthday collisions of a few hundred instances). */
#define HCACHE_WAYS  8u
#define HCACHE_SETS  4096u
#define HCACHE_SLOTS (HCACHE_WAYS * HCACHE_SETS)

struct api_hcache {
    pthread_mutex_t mu;
    size_t          bytes, max_bytes, hand;
    hslot           slot[HCACHE_SLOTS];
};

api_hcache *api_hcache_new(size_t max_bytes)
{
    api_hcache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->max_bytes = max_bytes;
    return c;
}

static void slot_clear(api_hcache *c, hslot *s)
{
    c->bytes -= s->len;
    free(s->json);
    memset(s, 0, sizeof *s);
}

void api_hcache_free(api_hcache **cp)
{
    api_hcache *c = cp ? *cp : NULL;
    if (!c)
        return;
    for (size_t i = 0; i < HCACHE_SLOTS; i++)
        free(c->slot[i].json);
    pthread_mutex_destroy(&c->mu);
    free(c);
    *cp = NULL;
}

static hslot *set_of(api_hcache *c, const uint8_t digest[32])
{
    uint32_t h;
    memcpy(&h, digest, sizeof h); /* SHA-256 bytes are already uniform */
    return &c->slot[(h % HCACHE_SETS) * HCACHE_WAYS];
}

static hslot *find(api_hcache *c, const uint8_t digest[32])
{
    hslot *set = set_of(c, digest);
    for (unsigned w = 0; w < HCACHE_WAYS; w++)
        if (set[w].json && !memcmp(set[w].digest, digest, 32))
            return &set[w];
    return NULL;
}

/* Where a new entry goes in its set: a free way, else one not used since
 * the clock hand passed, else the first. */
static hslot *victim(api_hcache *c, const uint8_t digest[32])
{
    hslot *set = set_of(c, digest), *cold = NULL;
    for (unsigned w = 0; w < HCACHE_WAYS; w++) {
        if (!set[w].json)
            return &set[w];
        if (!cold && !set[w].ref)
            cold = &set[w];
    }
    return cold ? cold : &set[0];
}

/* Appends the cached JSON to b and copies the series attributes; false on a miss. */
static bool hcache_get(api_hcache *c, const uint8_t digest[32], jbuf *b, api_series_attrs *sa)
{
    if (!c)
        return false;
    pthread_mutex_lock(&c->mu);
    hslot *s = find(c, digest);
    bool hit = s != NULL;
    if (hit) {
        s->ref = true;
        jb_put(b, s->json, s->len);
        *sa = s->sa;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

static void hcache_put(api_hcache *c, const uint8_t digest[32], const char *json, size_t len,
                       const api_series_attrs *sa)
{
    if (!c || len > c->max_bytes / 16)
        return;
    char *copy = malloc(len);
    if (!copy)
        return;
    memcpy(copy, json, len);
    pthread_mutex_lock(&c->mu);
    hslot *s = find(c, digest); /* another thread may have put it meanwhile */
    if (!s)
        s = victim(c, digest);
    if (s->json)
        slot_clear(c, s);
    /* Clock: free entries not used since the hand last passed them. */
    for (size_t turns = 0; c->bytes + len > c->max_bytes && turns < 2 * HCACHE_SLOTS; turns++) {
        hslot *v = &c->slot[c->hand];
        c->hand = (c->hand + 1) % HCACHE_SLOTS;
        if (v->json && v->ref)
            v->ref = false;
        else if (v->json)
            slot_clear(c, v);
    }
    memcpy(s->digest, digest, 32);
    s->json = copy;
    s->len = len;
    s->sa = *sa;
    s->ref = true;
    c->bytes += len;
    pthread_mutex_unlock(&c->mu);
}

/* The header is read in growing prefixes of the stored file: almost every
 * header fits the first 64 KiB, and a CT slice's pixels (or a 2 GiB
 * multi-frame's) are never copied.  A header past 64 MiB is refused. */
#define HDR_FIRST ((size_t)64 << 10)
#define HDR_MAX   ((size_t)64 << 20)

static uint16_t rd16(const uint8_t *p, bool be) { return be ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]); }

/* Did a parse of a prefix of the file stop at Pixel Data (true), or did the
 * prefix merely end on an element boundary (false: read more)?  The end of
 * the last top-level element must be followed by a tag >= Pixel Data. */
static bool stopped_at_pixels(const dcm_file *f)
{
    size_t blen;
    const uint8_t *buf = dcm_buffer(f, &blen);
    const dcm_ts *ts = dcm_file_ts(f);
    int32_t last = -1;
    for (int32_t i = dcm_first(f); i >= 0; i = dcm_at(f, i)->next)
        last = i;
    if (last < 0 || !ts)
        return false;
    const dcm_elem *e = dcm_at(f, last);
    size_t end;
    if (e->value)
        end = (size_t)(e->value - buf) + e->value_len;
    else /* a sequence: header, content, and its delimiter when undefined length */
        end = e->offset + (ts->explicit_vr ? 12 : 8) + e->value_len + (e->flags & DCM_F_UNDEF_LEN ? 8 : 0);
    if (end + 4 > blen)
        return false;
    uint32_t tag = (uint32_t)rd16(buf + end, ts->big_endian) << 16 | rd16(buf + end + 2, ts->big_endian);
    return tag >= DCM_TAG_PIXEL_DATA;
}

static long read_prefix(store *st, const store_instance *in, uint8_t *buf, size_t want)
{
    size_t got = 0;
    while (got < want) {
        long n = store_read_instance(st, in, got, buf + got, want - got);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (long)got;
}

static void get_series_attrs(const dcm_file *f, api_series_attrs *sa)
{
    memset(sa, 0, sizeof *sa);
    dcm_top_str(f, DCM_TAG(0x0008, 0x0060), sa->modality, sizeof sa->modality);
    char num[16];
    if (dcm_top_str(f, DCM_TAG(0x0020, 0x0011), num, sizeof num) >= 0 && num[0]) {
        char *end;
        sa->number = strtol(num, &end, 10);
        sa->has_number = end != num;
    }
    int32_t d = dcm_find(f, -1, DCM_TAG(0x0008, 0x103E));
    char *u = NULL;
    size_t ul;
    dcm_err err;
    if (d >= 0 && dcm_get_utf8(f, dcm_at(f, d), &u, &ul, &err) >= 0) {
        while (ul && (u[ul - 1] == ' ' || u[ul - 1] == '\0')) /* LO padding */
            ul--;
        snprintf(sa->description, sizeof sa->description, "%.*s", (int)ul, u);
        free(u);
    }
}

static int sink_jbuf(void *ctx, const void *p, size_t n)
{
    jbuf *b = ctx;
    jb_put(b, p, n);
    return jb_ok(b) ? 0 : DCM_ENOMEM;
}

/* Parse the stored header (growing the prefix as needed) and write it as
 * DICOM JSON into out. */
static int render_header(store *st, const store_instance *in, jbuf *out, api_series_attrs *sa)
{
    size_t cap = in->size < HDR_MAX ? (size_t)in->size : HDR_MAX;
    const dcm_ts *ts = dcm_ts_find(in->ts_uid, strlen(in->ts_uid));
    size_t want = ts && ts->deflated ? cap : (HDR_FIRST < cap ? HDR_FIRST : cap);
    dcm_parse_opts po = {.stop_at_tag = DCM_TAG_PIXEL_DATA};
    for (;;) {
        uint8_t *buf = malloc(want ? want : 1);
        if (!buf)
            return -ENOMEM;
        long got = read_prefix(st, in, buf, want);
        if (got < 0) {
            free(buf);
            return (int)got;
        }
        dcm_file *f = NULL;
        dcm_err err = {0};
        int rc = dcm_parse(buf, (size_t)got, &po, &f, &err);
        bool partial = (size_t)got < in->size;
        bool more = partial && want < cap && (rc == DCM_ETRUNC || (rc == 0 && !stopped_at_pixels(f)));
        if (rc == 0 && !more) {
            char base[STORE_UID_MAX + 32];
            snprintf(base, sizeof base, "/api/v1/instances/%s/file", in->sop_uid);
            /* A deflated data set's offsets are into its inflated bytes,
             * not the stored file: its binary values go inline instead. */
            bool deflated = ts && ts->deflated;
            dcm_json_opts jo = {.bulk_threshold = deflated ? SIZE_MAX : 1024, .bulk_uri_base = base};
            rc = dcm_json_write(f, &jo, (dcm_sink){sink_jbuf, out}, &err);
            get_series_attrs(f, sa);
        }
        dcm_free(&f);
        free(buf);
        if (!more)
            return rc;
        want = want * 16 < cap ? want * 16 : cap;
    }
}

/* The header JSON (from the cache, else rendered and cached) into out.
 * Returns 0, or a negative code; out is left as it was on failure. */
int api_header_json(store *st, api_hcache *cache, const store_instance *in, jbuf *out, api_series_attrs *sa)
{
    if (hcache_get(cache, in->digest, out, sa))
        return 0;
    jbuf tmp = {0};
    int rc = render_header(st, in, &tmp, sa);
    if (rc == 0 && !jb_ok(&tmp))
        rc = -ENOMEM;
    if (rc == 0) {
        hcache_put(cache, in->digest, tmp.p, tmp.len, sa);
        jb_put(out, tmp.p, tmp.len);
    }
    jb_release(&tmp);
    return rc;
}

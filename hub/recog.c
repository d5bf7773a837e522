/* recog.c — evaluating the recognition rules for one stored report
 * (recog.h), with two caches so that a lookup of a recently evaluated
 * report costs a cache hit, and otherwise a hash of the report's bytes and
 * a few record reads, not a signature check and a re-read of the images:
 *   verdicts   report id → the SHA-256 of (report, signature, chain) it
 *              was verified with, the trust generation, the index record
 *              (time, version), the outcome and what the document says
 *              (instances, exam type, signer); used only while all still
 *              match.  With it, the facts its instance records gave, under
 *              the store's instance generation.  Both are trusted without
 *              reading the bytes or records while no other process
 *              committed to the store (store_outside_gen) and for
 *              REPORT_RECHECK_MS after they were last checked; bytes a
 *              caller already holds (a report being served) are hashed
 *              every time (what that bounds: ARCHITECTURE.md)
 *   instances  digest → whether the stored bytes still hash to it and
 *              one frame decodes
 * Both are chained hash tables locked by stripes, bounded: past the
 * budget, the chain an entry joins is dropped first (a direct-mapped
 * table would thrash: 100,000 reports in 131,072 slots evict each other
 * half the time, and every miss is a signature check).  An instance
 * verdict is trusted for INST_TTL_MS, then the bytes are hashed again. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "codecs/codecs.h"
#include "hub/clock.h"
#include "hub/digest.h"
#include "hub/gen_mix.h"
#include "hub/recog.h"
#include "codecs/banned.h"

#define VBUCKETS     (1u << 18)          /* report verdicts: chains */
#define IBUCKETS     (1u << 18)          /* instance verdicts: chains */
#define STRIPES      256
#define VCACHE_BYTES ((size_t)512 << 20) /* report verdicts kept at most (100,000 reports: ~210 MiB) */
#define ICACHE_MAX   (4u << 20)          /* instance verdicts kept at most */
#define INST_TTL_MS  ((int64_t)24 * 3600 * 1000)
#define REPORT_RECHECK_MS ((int64_t)24 * 3600 * 1000) /* a report's bytes are hashed again this long after the last time,
                                                        * as an instance's (INST_TTL_MS) */
#define RECOG_MEMO_MAX            ((size_t)1 << 20)
#define RECOG_MEMO_ESTIMATE(n)    (1000 + 150 * (n)) /* an exam's JSON: ~1.1 KiB + a link pair per instance */
#define DECODE_MAX   ((uint64_t)256 << 20) /* larger instances: hashed in pieces, not decoded */
#define READ_CHUNK   ((size_t)1 << 20)

const char *const recog_rule_names[RECOG_RULES] = {"images_intact", "quality", "signature",
                                                    "facility", "exam_type", "validity"};

typedef struct verdict verdict;
struct verdict {
    verdict    *next; /* in its bucket */
    _Atomic int refs;
    size_t      bytes;
    char        id[STORE_REPORT_ID_MAX];
    uint8_t     hash[32];
    uint64_t    gen;
    uint64_t    outside;    /* store_view_outside_gen when the bytes last hashed to `hash` */
    int64_t     ref_ms;     /* the index record it was made for (reported_ms, version): */
    uint32_t    ref_version; /* the hub re-signing a report under its id rewrites both */
    int64_t     hashed_ms;  /* monotonic: when the bytes last hashed to `hash` (under the stripe lock) */
    int         rc; /* report_verify's */
    char        why[200];
    bool        parsed; /* the document parses (fields below are known) */
    char        signer[128], reader_id[64], reading_facility[128], alg[16];
    char        exam_type[64], valid_until[11], reported[24];
    pthread_mutex_t lock; /* guards the memo and the image facts below */
    /* images(): what the instance records said, while the store's
     * instance generation is img_gen and for REPORT_RECHECK_MS */
    bool        img_known;
    uint64_t    img_gen;
    int64_t     img_ms;
    size_t      img_missing, img_differ, img_broken, img_undecodable;
    char        img_first_bad[160];
    /* a caller's rendering of the last result (recog_memo_*) */
    uint64_t    memo_key;
    char       *memo;
    size_t      memo_len;
    size_t      n_inst;
    recog_instance inst[];
};

typedef struct inst_verdict {
    bool    intact, decodes;
    uint8_t digest[32];
    char    why[160];
} inst_verdict;

typedef struct inst_node inst_node;
struct inst_node {
    inst_node   *next;
    int64_t      checked_ms;
    uint8_t      digest[32];
    bool         intact, decodes;
    char        *why; /* NULL when both hold */
};

struct recog {
    recog_env        env;
    pthread_mutex_t  cfg_lock;
    recog_config    *cfg;
    uint64_t         cfg_gen; /* under cfg_lock: bumped by recog_set_config */
    _Atomic uint64_t gen;
    _Atomic uint64_t changed; /* verdicts made again because stored bytes changed under the same index record */
    _Atomic size_t   vbytes, icount;
    pthread_mutex_t  vlock[STRIPES], ilock[STRIPES];
    verdict        **v;  /* VBUCKETS chains */
    inst_node      **iv; /* IBUCKETS chains */
};

static uint32_t fnv(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

int recog_new(const recog_env *env, recog_config *cfg, recog **out)
{
    recog *r = calloc(1, sizeof *r);
    if (!r || !(r->v = calloc(VBUCKETS, sizeof *r->v)) || !(r->iv = calloc(IBUCKETS, sizeof *r->iv))) {
        if (r)
            free(r->v);
        free(r);
        recog_config_free(&cfg);
        return -ENOMEM;
    }
    r->env = *env;
    r->cfg = cfg;
    pthread_mutex_init(&r->cfg_lock, NULL);
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&r->vlock[i], NULL);
        pthread_mutex_init(&r->ilock[i], NULL);
    }
    *out = r;
    return 0;
}

static void verdict_unref(verdict *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1) {
        pthread_mutex_destroy(&v->lock);
        free(v->memo);
        free(v);
    }
}

void recog_free(recog **rp)
{
    if (!rp || !*rp)
        return;
    recog *r = *rp;
    for (size_t i = 0; i < VBUCKETS; i++)
        for (verdict *v = r->v[i], *next; v; v = next) {
            next = v->next;
            verdict_unref(v);
        }
    for (size_t i = 0; i < IBUCKETS; i++)
        for (inst_node *n = r->iv[i], *next; n; n = next) {
            next = n->next;
            free(n->why);
            free(n);
        }
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_destroy(&r->vlock[i]);
        pthread_mutex_destroy(&r->ilock[i]);
    }
    pthread_mutex_destroy(&r->cfg_lock);
    recog_config_free(&r->cfg);
    free(r->v);
    free(r->iv);
    free(r);
    *rp = NULL;
}

void recog_set_config(recog *r, recog_config *cfg)
{
    pthread_mutex_lock(&r->cfg_lock);
    recog_config *old = r->cfg;
    r->cfg = cfg;
    r->cfg_gen++;
    pthread_mutex_unlock(&r->cfg_lock);
    recog_config_free(&old);
}

void recog_trust_changed(recog *r)
{
    atomic_fetch_add(&r->gen, 1);
}

uint64_t recog_generation(recog *r)
{
    pthread_mutex_lock(&r->cfg_lock);
    uint64_t g = r->cfg_gen;
    pthread_mutex_unlock(&r->cfg_lock);
    return gen_fold(gen_fold(gen_fold(0, atomic_load(&r->gen)), g), atomic_load(&r->changed));
}

void recog_names(recog *r, char *consortium, size_t cn, char *mark, size_t mn)
{
    pthread_mutex_lock(&r->cfg_lock);
    snprintf(consortium, cn, "%s", recog_consortium(r->cfg));
    snprintf(mark, mn, "%s", recog_mark(r->cfg));
    pthread_mutex_unlock(&r->cfg_lock);
}

/* --- report verdicts ------------------------------------------------------------- */

static void bytes_hash(const store_report_view *v, uint8_t out[32])
{
    digest_ctx *d = digest_new();
    if (!d) {
        memset(out, 0xFF, 32); /* never equal to a real hash: no cache hit */
        return;
    }
    uint64_t lens[3] = {v->doc_len, v->sig_len, v->chain_len};
    digest_update(d, lens, sizeof lens);
    digest_update(d, v->doc, v->doc_len);
    digest_update(d, v->sig, v->sig_len);
    digest_update(d, v->chain, v->chain_len);
    digest_final(&d, out);
}

static void copy_doc(verdict *vd, const report_doc *doc)
{
    const report_info *in = report_doc_info(doc);
    vd->parsed = true;
    snprintf(vd->exam_type, sizeof vd->exam_type, "%s", in->exam_type);
    snprintf(vd->valid_until, sizeof vd->valid_until, "%s", in->valid_until ? in->valid_until : "");
    snprintf(vd->reported, sizeof vd->reported, "%s", in->reported);
    if (!vd->signer[0])
        snprintf(vd->signer, sizeof vd->signer, "%s", in->reader_name);
    if (!vd->reader_id[0])
        snprintf(vd->reader_id, sizeof vd->reader_id, "%s", in->reader_id);
    if (!vd->reading_facility[0])
        snprintf(vd->reading_facility, sizeof vd->reading_facility, "%s", in->reading_facility);
    for (size_t i = 0; i < vd->n_inst; i++) {
        report_instance ri;
        if (report_doc_instance(doc, i, &ri) == 0) {
            snprintf(vd->inst[i].sop, sizeof vd->inst[i].sop, "%s", ri.sop);
            memcpy(vd->inst[i].digest, ri.digest, 32);
        }
    }
}

/* Verify the report from scratch: a new verdict (refs 1) or NULL. */
static verdict *verify(recog *r, const store_report_view *v, const uint8_t hash[32], uint64_t gen)
{
    /* The document is read even when the signature fails, to say what it
     * claims (never trusted for recognition then). */
    report_doc *doc = NULL;
    char perr[200] = "";
    int prc = report_parse(v->doc, v->doc_len, &doc, perr, sizeof perr);
    size_t n = prc == 0 ? report_doc_info(doc)->n_instances : 0;
    size_t bytes = sizeof(verdict) + n * sizeof(recog_instance);
    verdict *vd = calloc(1, bytes);
    if (!vd) {
        report_free(&doc);
        return NULL;
    }
    atomic_init(&vd->refs, 1);
    pthread_mutex_init(&vd->lock, NULL);
    vd->bytes = bytes + RECOG_MEMO_ESTIMATE(n); /* room for the memo it will likely hold */
    vd->n_inst = n;
    vd->gen = gen;
    memcpy(vd->hash, hash, 32);
    snprintf(vd->id, sizeof vd->id, "%s", v->ref->report_id);
    vd->ref_ms = v->ref->reported_ms;
    vd->ref_version = v->ref->report_version;
    report_verifier *verifier = r->env.verifier ? atomic_load(r->env.verifier) : NULL;
    if (!verifier) {
        vd->rc = PKI_EUNTRUSTED;
        snprintf(vd->why, sizeof vd->why, "this hub has no consortium trust list");
    } else {
        pki_identity id;
        /* As of when the hub accepted it: a certificate that expired
         * since does not undo a report signed while it was valid; a
         * revocation does (the CRL is today's). */
        time_t at = (time_t)(v->ref->reported_ms / 1000);
        vd->rc = report_verify(verifier, v->doc, v->doc_len, v->sig, v->sig_len, v->chain, v->chain_len, at,
                               &id, NULL, vd->why, sizeof vd->why);
        if (vd->rc == 0 || id.name[0]) {
            snprintf(vd->signer, sizeof vd->signer, "%.127s", id.name);
            snprintf(vd->reader_id, sizeof vd->reader_id, "%s", id.reader_id);
            snprintf(vd->reading_facility, sizeof vd->reading_facility, "%s", id.facility);
            snprintf(vd->alg, sizeof vd->alg, "%s", id.alg);
        }
        if (!v->sig_len || !v->chain_len)
            snprintf(vd->why, sizeof vd->why, "the stored report has no signature or chain");
    }
    if (vd->rc == 0 && prc < 0) { /* cannot happen: report_verify parses too */
        vd->rc = prc;
        snprintf(vd->why, sizeof vd->why, "%s", perr);
    }
    if (prc == 0)
        copy_doc(vd, doc);
    report_free(&doc);
    return vd;
}

/* Drop a whole chain (under its stripe's lock): the cache's way of
 * making room. */
static void drop_chain(recog *r, verdict **head)
{
    for (verdict *v = *head, *next; v; v = next) {
        next = v->next;
        atomic_fetch_sub(&r->vbytes, v->bytes);
        verdict_unref(v);
    }
    *head = NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool same_report(const verdict *vd, const store_report_ref *ref, uint64_t gen)
{
    return vd->gen == gen && vd->ref_ms == ref->reported_ms && vd->ref_version == ref->report_version;
}

/* The verdict for v: cached when the trust list and the report's index
 * record are unchanged and its bytes hashed to the same SHA-256, at most
 * REPORT_RECHECK_MS ago and with no other process's commit since (past
 * either they are read and hashed again; bytes already read, as when the
 * report is being served, are hashed every time), else made now (and
 * cached).  A reference, or NULL with *err. */
static verdict *verdict_for(recog *r, store_report_view *v, int *err, int64_t *hashed_ms)
{
    uint64_t gen = atomic_load(&r->gen), outside = store_view_outside_gen(v->view);
    const char *id = v->ref->report_id;
    uint32_t b = fnv(id, strlen(id)) & (VBUCKETS - 1);
    pthread_mutex_t *lk = &r->vlock[b % STRIPES];
    int64_t now = mono_ms();
    if (!v->loaded) {
        pthread_mutex_lock(lk);
        verdict *vd = r->v[b];
        while (vd && strcmp(vd->id, id))
            vd = vd->next;
        bool hit = vd && same_report(vd, v->ref, gen) && vd->outside == outside &&
                   now - vd->hashed_ms < REPORT_RECHECK_MS;
        if (hit) {
            atomic_fetch_add(&vd->refs, 1);
            *hashed_ms = vd->hashed_ms;
        }
        pthread_mutex_unlock(lk);
        if (hit)
            return vd;
    }
    *hashed_ms = now;
    if ((*err = store_report_bytes(v)) < 0)
        return NULL;
    uint8_t hash[32];
    bytes_hash(v, hash);
    pthread_mutex_lock(lk);
    verdict *vd = r->v[b];
    while (vd && strcmp(vd->id, id))
        vd = vd->next;
    bool hit = vd && same_report(vd, v->ref, gen) && !memcmp(vd->hash, hash, 32);
    if (hit) {
        vd->hashed_ms = now;
        vd->outside = outside;
        atomic_fetch_add(&vd->refs, 1);
    }
    /* the same index record with other bytes: changed behind this hub's
     * back, so answers kept with the old verdict go too */
    bool changed = !hit && vd && same_report(vd, v->ref, gen);
    pthread_mutex_unlock(lk);
    if (hit)
        return vd;
    if (changed)
        atomic_fetch_add(&r->changed, 1);
    if (!(vd = verify(r, v, hash, gen))) {
        *err = -ENOMEM;
        return NULL;
    }
    vd->hashed_ms = now;
    vd->outside = outside;
    pthread_mutex_lock(lk);
    /* the stale verdict of this report (bytes or trust changed), if any */
    for (verdict **pp = &r->v[b]; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->id, id)) {
            verdict *old = *pp;
            *pp = old->next;
            atomic_fetch_sub(&r->vbytes, old->bytes);
            verdict_unref(old);
            break;
        }
    if (atomic_load(&r->vbytes) + vd->bytes > VCACHE_BYTES)
        drop_chain(r, &r->v[b]);
    if (atomic_load(&r->vbytes) + vd->bytes <= VCACHE_BYTES) {
        atomic_fetch_add(&r->vbytes, vd->bytes);
        atomic_fetch_add(&vd->refs, 1);
        vd->next = r->v[b];
        r->v[b] = vd;
    }
    pthread_mutex_unlock(lk);
    return vd;
}

/* --- instance verdicts ----------------------------------------------------------- */

/* One frame (the middle one) decodes; 0 or a code with why. */
static int decode_one(const uint8_t *buf, size_t len, char *why, size_t whylen)
{
    dcm_file *f = NULL;
    dcm_err err;
    memset(&err, 0, sizeof err);
    cdc_image img;
    memset(&img, 0, sizeof img);
    int rc = dcm_parse(buf, len, NULL, &f, &err);
    if (rc == 0)
        rc = cdc_image_init(&img, f, &err);
    if (rc == DCM_ENOTFOUND) {
        rc = 0; /* no pixel data (a waveform, a document): nothing to decode */
    } else if (rc == 0) {
        size_t fs = cdc_frame_size(&img);
        void *out = malloc(fs ? fs : 1);
        rc = out ? cdc_decode_frame(&img, img.frames / 2, out, fs, &err) : DCM_ENOMEM;
        free(out);
    }
    if (rc < 0)
        snprintf(why, whylen, "%.60s%s%.90s", cdc_strerror(rc), err.msg[0] ? ": " : "", err.msg);
    cdc_image_release(&img);
    dcm_free(&f);
    return rc;
}

static void check_instance(store *st, const store_instance *in, bool decode, inst_verdict *out)
{
    uint8_t got[32];
    out->intact = out->decodes = false;
    out->why[0] = 0;
    if (in->size <= DECODE_MAX) {
        uint8_t *buf = malloc(in->size ? in->size : 1);
        int rc = buf ? store_read_instance_all(st, in, buf) : -ENOMEM;
        if (rc == 0 && in->dataset_offset <= in->size) {
            digest_ctx *d = digest_new();
            if (d) {
                digest_update(d, buf + in->dataset_offset, in->size - in->dataset_offset);
                digest_final(&d, got);
                out->intact = !memcmp(got, in->digest, 32);
            }
            if (!out->intact)
                snprintf(out->why, sizeof out->why, "stored bytes no longer match their digest");
            else
                out->decodes = !decode || decode_one(buf, in->size, out->why, sizeof out->why) == 0;
        } else {
            snprintf(out->why, sizeof out->why, "stored bytes unreadable");
        }
        free(buf);
        return;
    }
    /* Large: hashed in pieces; its header was parsed when it arrived. */
    digest_ctx *d = digest_new();
    uint8_t *chunk = malloc(READ_CHUNK);
    int ok = d && chunk;
    for (uint64_t off = in->dataset_offset; ok && off < in->size;) {
        long k = store_read_instance(st, in, off, chunk, READ_CHUNK);
        if (k <= 0)
            ok = 0;
        else {
            digest_update(d, chunk, (size_t)k);
            off += (uint64_t)k;
        }
    }
    if (d)
        digest_final(&d, got);
    free(chunk);
    out->intact = ok && !memcmp(got, in->digest, 32);
    out->decodes = out->intact;
    if (!out->intact)
        snprintf(out->why, sizeof out->why, "stored bytes no longer match their digest");
}

static void instance_verdict(recog *r, const store_instance *in, bool decode, inst_verdict *out)
{
    uint32_t b = fnv(in->digest, 32) & (IBUCKETS - 1);
    pthread_mutex_t *lk = &r->ilock[b % STRIPES];
    int64_t now = clock_mono_ms(); /* a cache age: an interval (clock.h) */
    pthread_mutex_lock(lk);
    inst_node *n = r->iv[b];
    while (n && memcmp(n->digest, in->digest, 32))
        n = n->next;
    bool hit = n && now - n->checked_ms < INST_TTL_MS;
    if (hit) {
        out->intact = n->intact;
        out->decodes = n->decodes;
        snprintf(out->why, sizeof out->why, "%s", n->why ? n->why : "");
    }
    pthread_mutex_unlock(lk);
    if (hit)
        return;
    check_instance(r->env.st, in, decode, out);
    inst_node *fresh = calloc(1, sizeof *fresh);
    if (!fresh)
        return; /* not remembered: checked again next time */
    memcpy(fresh->digest, in->digest, 32);
    fresh->checked_ms = now;
    fresh->intact = out->intact;
    fresh->decodes = out->decodes;
    fresh->why = out->why[0] ? strdup(out->why) : NULL;
    pthread_mutex_lock(lk);
    for (inst_node **pp = &r->iv[b]; *pp; pp = &(*pp)->next)
        if (!memcmp((*pp)->digest, in->digest, 32)) {
            inst_node *old = *pp;
            *pp = old->next;
            free(old->why);
            free(old);
            atomic_fetch_sub(&r->icount, 1);
            break;
        }
    if (atomic_load(&r->icount) >= ICACHE_MAX) { /* make room: this chain goes */
        for (inst_node *x = r->iv[b], *next; x; x = next) {
            next = x->next;
            free(x->why);
            free(x);
            atomic_fetch_sub(&r->icount, 1);
        }
        r->iv[b] = NULL;
    }
    if (atomic_load(&r->icount) >= ICACHE_MAX) {
        free(fresh->why);
        free(fresh);
    } else {
        fresh->next = r->iv[b];
        r->iv[b] = fresh;
        atomic_fetch_add(&r->icount, 1);
    }
    pthread_mutex_unlock(lk);
}

/* --- the rules -------------------------------------------------------------------- *
 * recog_evaluate decides every rule from cheap facts (counts, flags, day
 * numbers) and folds them into res->state; the sentences that explain
 * each verdict are written only by recog_explain, which a caller skips
 * when it kept a rendering made from the same state (recog_memo_*). */

/* Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil). */
static long days_from_civil(long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long)doe - 719468;
}

static void civil_from_days(long z, char out[11])
{
    z += 719468;
    long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long y = (long)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    unsigned yy = y < 0 ? 0 : (unsigned)(y % 10000);
    const unsigned v[8] = {yy / 1000, yy / 100 % 10, yy / 10 % 10, yy % 10, m / 10, m % 10, d / 10 % 10, d % 10};
    const int at[8] = {0, 1, 2, 3, 5, 6, 8, 9};
    for (int i = 0; i < 8; i++)
        out[at[i]] = (char)('0' + v[i]);
    out[4] = out[7] = '-';
    out[10] = 0;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Day number of YYYYMMDD or YYYY-MM-DD; -1 when malformed. */
static long day_of(const char *s)
{
    size_t n = strlen(s);
    int y, m, d;
    if (n == 8)
        y = digits(s, 4), m = digits(s + 4, 2), d = digits(s + 6, 2);
    else if (n == 10 && s[4] == '-' && s[7] == '-')
        y = digits(s, 4), m = digits(s + 5, 2), d = digits(s + 8, 2);
    else
        return -1;
    if (y < 1900 || m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    return days_from_civil(y, (unsigned)m, (unsigned)d);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0x100000001b3ULL;
}

/* The instances' facts kept with the verdict, when they still hold. */
static bool images_known(verdict *vd, uint64_t gen, int64_t now, recog_facts *f, int64_t *known_ms)
{
    pthread_mutex_lock(&vd->lock);
    bool hit = vd->img_known && vd->img_gen == gen && now - vd->img_ms < REPORT_RECHECK_MS;
    if (hit) {
        *known_ms = vd->img_ms;
        f->missing = vd->img_missing;
        f->differ = vd->img_differ;
        f->broken = vd->img_broken;
        f->undecodable = vd->img_undecodable;
        memcpy(f->first_bad, vd->img_first_bad, sizeof f->first_bad);
    }
    pthread_mutex_unlock(&vd->lock);
    return hit;
}

static void images_keep(verdict *vd, uint64_t gen, int64_t now, const recog_facts *f)
{
    pthread_mutex_lock(&vd->lock);
    vd->img_known = true;
    vd->img_gen = gen;
    vd->img_ms = now;
    vd->img_missing = f->missing;
    vd->img_differ = f->differ;
    vd->img_broken = f->broken;
    vd->img_undecodable = f->undecodable;
    memcpy(vd->img_first_bad, f->first_bad, sizeof vd->img_first_bad);
    pthread_mutex_unlock(&vd->lock);
}

/* Each instance the report signed: stored with that digest, its bytes
 * intact and decodable.  The instance records are read again when this
 * hub stored or evicted instances since, or REPORT_RECHECK_MS passed. */
/* Returns when the facts were last read from the store (monotonic ms). */
static int64_t images(recog *r, const store_report_view *v, verdict *vd, recog_result *o)
{
    recog_facts *f = &o->facts;
    f->imaging = v->ref->kind != 1; /* WL_ECG */
    f->quality = v->ref->quality;
    snprintf(f->quality_why, sizeof f->quality_why, "%s", v->ref->quality_why);
    if (!vd->parsed) {
        f->unreadable = true;
        return INT64_MAX; /* nothing read: the verdict alone decides */
    }
    f->n = vd->n_inst;
    uint64_t gen = store_view_instance_gen(v->view);
    int64_t now = mono_ms();
    int64_t known_ms;
    if (images_known(vd, gen, now, f, &known_ms))
        return known_ms;
    for (size_t i = 0; i < vd->n_inst; i++) {
        store_instance in;
        if (store_view_instance(v->view, vd->inst[i].sop, &in) != 0) {
            f->missing++;
            continue;
        }
        if (memcmp(in.digest, vd->inst[i].digest, 32)) {
            f->differ++;
            continue;
        }
        inst_verdict iv;
        instance_verdict(r, &in, f->imaging, &iv);
        if (!iv.intact)
            f->broken++;
        else if (!iv.decodes && f->undecodable++ == 0)
            snprintf(f->first_bad, sizeof f->first_bad, "%.150s", iv.why);
    }
    images_keep(vd, gen, now, f);
    return now;
}

static bool images_ok(const recog_facts *f)
{
    return !f->unreadable && !f->missing && !f->differ && !f->broken;
}

static bool quality_ok(const recog_facts *f)
{
    if (f->unreadable)
        return false;
    if (!f->imaging)
        return f->quality == STORE_QUALITY_PASSED;
    return !f->undecodable && images_ok(f);
}

static void facility(recog *r, const store_report_view *v, recog_result *o)
{
    const char *origin = v->ref->origin;
    const char *colon = strchr(origin, ':');
    const char *name = colon ? colon + 1 : origin;
    snprintf(o->facility, sizeof o->facility, "%.63s", name);
    if (!strncmp(origin, "dicom:", 6))
        o->facts.member = RECOG_MEMBER_HOSPITAL;
    else if (recog_is_member(r->cfg, name))
        o->facts.member = RECOG_MEMBER_LISTED;
    else if (!strncmp(origin, "edge:", 5) && r->env.has_edge && r->env.has_edge(r->env.has_edge_ctx, name))
        o->facts.member = RECOG_MEMBER_EDGE;
}

static void period(recog *r, const store_report_view *v, const verdict *vd, int64_t now_ms, recog_result *o)
{
    recog_facts *f = &o->facts;
    snprintf(f->modality, sizeof f->modality, "%s", v->ref->modality);
    f->days = recog_validity_days(r->cfg, f->modality);
    f->today = (long)(now_ms / 86400000);
    if (f->days < 0)
        return;
    long base = day_of(v->ref->study_date);
    f->from = "exam";
    if (base < 0) {
        base = (long)(v->ref->reported_ms / 86400000);
        f->from = "report";
    }
    f->until = base + f->days;
    long own = vd->parsed && vd->valid_until[0] ? day_of(vd->valid_until) : -1;
    if (own >= 0 && own < f->until)
        f->until = own, f->from = "report's own valid_until";
    civil_from_days(f->until, o->valid_until);
}

int recog_evaluate(recog *r, store_report_view *v, int64_t now_ms, recog_result *o)
{
    memset(o, 0, sizeof *o);
    int err = 0;
    int64_t hashed_ms = 0;
    verdict *vd = verdict_for(r, v, &err, &hashed_ms);
    if (!vd)
        return err;
    o->hold = vd;
    o->inst = vd->inst;
    o->n_inst = vd->parsed ? vd->n_inst : 0;
    int64_t read_ms = images(r, v, vd, o);
    if (read_ms > hashed_ms)
        read_ms = hashed_ms;
    o->trusted_ms = read_ms + REPORT_RECHECK_MS - mono_ms();
    if (o->trusted_ms < 0)
        o->trusted_ms = 0;
    pthread_mutex_lock(&r->cfg_lock);
    facility(r, v, o);
    period(r, v, vd, now_ms, o);
    uint64_t cfg_gen = r->cfg_gen;
    pthread_mutex_unlock(&r->cfg_lock);
    const recog_facts *f = &o->facts;
    o->rule[RECOG_IMAGES].ok = images_ok(f);
    o->rule[RECOG_QUALITY].ok = quality_ok(f);
    o->rule[RECOG_SIGNATURE].ok = vd->rc == 0;
    o->rule[RECOG_FACILITY].ok = f->member != RECOG_MEMBER_NONE;
    o->rule[RECOG_EXAM_TYPE].ok = f->days >= 0;
    o->rule[RECOG_VALIDITY].ok = f->days >= 0 && f->today <= f->until;
    o->recognised = true;
    uint64_t st = mix(mix(mix(14695981039346656037ULL, vd->gen), cfg_gen), (uint64_t)f->today);
    for (int k = 0; k < RECOG_RULES; k++) {
        o->recognised = o->recognised && o->rule[k].ok;
        st = mix(st, o->rule[k].ok);
    }
    st = mix(mix(mix(mix(st, f->missing), f->differ), f->broken), f->undecodable);
    st = mix(mix(mix(st, (uint64_t)f->member), (uint64_t)f->unreadable), f->quality);
    if (f->undecodable)
        st = mix(st, fnv(f->first_bad, strlen(f->first_bad)));
    o->state = st;
    return 0;
}

static void set(recog_result *o, recog_rule k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set(recog_result *o, recog_rule k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->rule[k].detail, sizeof o->rule[k].detail, fmt, ap);
    va_end(ap);
}

void recog_explain(recog_result *o)
{
    const recog_facts *f = &o->facts;
    const verdict *vd = o->hold;
    snprintf(o->exam_type, sizeof o->exam_type, "%s", vd->exam_type);
    snprintf(o->signer, sizeof o->signer, "%s", vd->signer);
    snprintf(o->reader_id, sizeof o->reader_id, "%s", vd->reader_id);
    snprintf(o->reading_facility, sizeof o->reading_facility, "%s", vd->reading_facility);
    snprintf(o->signer_alg, sizeof o->signer_alg, "%s", vd->alg);
    snprintf(o->reported, sizeof o->reported, "%s", vd->reported);
    if (f->unreadable) {
        set(o, RECOG_IMAGES, "the report's list of instances cannot be read");
        set(o, RECOG_QUALITY, "not checked: the report's list of instances cannot be read");
    } else {
        if (o->rule[RECOG_IMAGES].ok)
            set(o, RECOG_IMAGES, "all %zu instances stored with the digests the report signed, bytes intact", f->n);
        else
            set(o, RECOG_IMAGES, "%zu of %zu instances missing, %zu stored with other bytes, %zu damaged", f->missing,
                f->n, f->differ, f->broken);
        if (!f->imaging)
            set(o, RECOG_QUALITY, "%s",
                f->quality == STORE_QUALITY_FAILED   ? f->quality_why
                : f->quality == STORE_QUALITY_PASSED ? "ECG signal quality passed the hub's triage"
                                                     : "ECG signal quality was not checked");
        else if (f->undecodable)
            set(o, RECOG_QUALITY, "%zu of %zu instances do not decode: %s", f->undecodable, f->n, f->first_bad);
        else if (!o->rule[RECOG_IMAGES].ok)
            set(o, RECOG_QUALITY, "not checked: images missing or damaged");
        else
            set(o, RECOG_QUALITY, "every image decodes");
    }
    if (vd->rc == 0)
        set(o, RECOG_SIGNATURE, "signed by %s (%s), chain to the consortium trust list, not revoked", vd->reader_id,
            vd->alg);
    else
        set(o, RECOG_SIGNATURE, "%s", vd->why);
    const char *name = o->facility[0] ? o->facility : "an unknown facility";
    switch (f->member) {
    case RECOG_MEMBER_HOSPITAL: set(o, RECOG_FACILITY, "acquired at this hub's hospital (DICOM from %s)", name); break;
    case RECOG_MEMBER_LISTED: set(o, RECOG_FACILITY, "%s is a member of the consortium", name); break;
    case RECOG_MEMBER_EDGE:
        set(o, RECOG_FACILITY, "%s is a consortium clinic (its gateway's key is in the allow-list)", name);
        break;
    default: set(o, RECOG_FACILITY, "%s is not in the consortium", name); break;
    }
    const char *mod = f->modality[0] ? f->modality : "(none)";
    if (f->days < 0) {
        set(o, RECOG_EXAM_TYPE, "exam type %s is not recognised in the consortium", mod);
        set(o, RECOG_VALIDITY, "no validity period for exam type %s", mod);
    } else {
        set(o, RECOG_EXAM_TYPE, "%s exams are recognised for %d days", mod, f->days);
        set(o, RECOG_VALIDITY, "%s %s (%s date + %d days)", o->rule[RECOG_VALIDITY].ok ? "valid until" : "expired on",
            o->valid_until, f->from, f->days);
    }
}

bool recog_memo_get(const recog_result *o, uint64_t key, void (*put)(void *ctx, const void *p, size_t n), void *ctx)
{
    verdict *vd = o->hold;
    bool hit = false;
    pthread_mutex_lock(&vd->lock);
    if (vd->memo && vd->memo_key == key) {
        put(ctx, vd->memo, vd->memo_len);
        hit = true;
    }
    pthread_mutex_unlock(&vd->lock);
    return hit;
}

void recog_memo_set(recog_result *o, uint64_t key, const void *p, size_t n)
{
    verdict *vd = o->hold;
    if (n > RECOG_MEMO_MAX)
        return;
    char *copy = malloc(n);
    if (!copy)
        return;
    memcpy(copy, p, n);
    pthread_mutex_lock(&vd->lock);
    char *old = vd->memo;
    vd->memo = copy;
    vd->memo_len = n;
    vd->memo_key = key;
    pthread_mutex_unlock(&vd->lock);
    free(old);
}

void recog_result_release(recog_result *out)
{
    if (!out || !out->hold)
        return;
    verdict_unref(out->hold);
    out->hold = NULL;
    out->inst = NULL;
}

/* recog.c — evaluating the recognition rules for one stored report
 * (recog.h), with two caches so that a lookup costs a hash of the
 * report's bytes and a few record reads, not a signature check and a
 * re-read of the images:
 *   verdicts   report id → the SHA-256 of (report, signature, chain) it
 *              was verified with, the trust generation, the outcome and
 *              what the document says (instances, exam type, signer);
 *              used only while all three still match
 *   instances  digest → whether the stored bytes still hash to it and
 *              one frame decodes
 * Both are fixed-size tables (a newer entry replaces an older one in its
 * slot), locked by stripes. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "codecs/codecs.h"
#include "hub/digest.h"
#include "hub/recog.h"
#include "codecs/banned.h"

#define VSLOTS       (1u << 17)          /* report verdicts */
#define ISLOTS       (1u << 16)          /* instance verdicts */
#define STRIPES      64
#define VCACHE_BYTES ((size_t)128 << 20) /* verdicts kept at most */
#define DECODE_MAX   ((uint64_t)256 << 20) /* larger instances: hashed in pieces, not decoded */
#define READ_CHUNK   ((size_t)1 << 20)

const char *const recog_rule_names[RECOG_RULES] = {"images_intact", "quality", "signature",
                                                    "facility", "exam_type", "validity"};

typedef struct verdict {
    _Atomic int refs;
    size_t      bytes;
    char        id[STORE_REPORT_ID_MAX];
    uint8_t     hash[32];
    uint64_t    gen;
    int         rc; /* report_verify's */
    char        why[200];
    bool        parsed; /* the document parses (fields below are known) */
    char        signer[128], reader_id[64], reading_facility[128], alg[16];
    char        exam_type[64], valid_until[11], reported[24];
    size_t      n_inst;
    recog_instance inst[];
} verdict;

typedef struct inst_verdict {
    bool    used, intact, decodes;
    uint8_t digest[32];
    char    why[160];
} inst_verdict;

struct recog {
    recog_env        env;
    pthread_mutex_t  cfg_lock;
    recog_config    *cfg;
    _Atomic uint64_t gen;
    _Atomic size_t   vbytes;
    pthread_mutex_t  vlock[STRIPES], ilock[STRIPES];
    verdict        **v;
    inst_verdict    *iv;
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
    if (!r || !(r->v = calloc(VSLOTS, sizeof *r->v)) || !(r->iv = calloc(ISLOTS, sizeof *r->iv))) {
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
    if (v && atomic_fetch_sub(&v->refs, 1) == 1)
        free(v);
}

void recog_free(recog **rp)
{
    if (!rp || !*rp)
        return;
    recog *r = *rp;
    for (size_t i = 0; i < VSLOTS; i++)
        verdict_unref(r->v[i]);
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
    pthread_mutex_unlock(&r->cfg_lock);
    recog_config_free(&old);
}

void recog_trust_changed(recog *r)
{
    atomic_fetch_add(&r->gen, 1);
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
    vd->bytes = bytes;
    vd->n_inst = n;
    vd->gen = gen;
    memcpy(vd->hash, hash, 32);
    snprintf(vd->id, sizeof vd->id, "%s", v->ref->report_id);
    if (!r->env.verifier) {
        vd->rc = PKI_EUNTRUSTED;
        snprintf(vd->why, sizeof vd->why, "this hub has no consortium trust list");
    } else {
        pki_identity id;
        /* As of when the hub accepted it: a certificate that expired
         * since does not undo a report signed while it was valid; a
         * revocation does (the CRL is today's). */
        time_t at = (time_t)(v->ref->reported_ms / 1000);
        vd->rc = report_verify(r->env.verifier, v->doc, v->doc_len, v->sig, v->sig_len, v->chain, v->chain_len, at,
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

/* The verdict for v: cached when its bytes and the trust list are
 * unchanged, else made now (and cached).  A reference, or NULL (OOM). */
static verdict *verdict_for(recog *r, const store_report_view *v)
{
    uint8_t hash[32];
    bytes_hash(v, hash);
    uint64_t gen = atomic_load(&r->gen);
    uint32_t slot = fnv(v->ref->report_id, strlen(v->ref->report_id)) & (VSLOTS - 1);
    pthread_mutex_t *lk = &r->vlock[slot % STRIPES];
    pthread_mutex_lock(lk);
    verdict *vd = r->v[slot];
    if (vd && vd->gen == gen && !memcmp(vd->hash, hash, 32) && !strcmp(vd->id, v->ref->report_id))
        atomic_fetch_add(&vd->refs, 1);
    else
        vd = NULL;
    pthread_mutex_unlock(lk);
    if (vd)
        return vd;
    if (!(vd = verify(r, v, hash, gen)))
        return NULL;
    if (atomic_load(&r->vbytes) + vd->bytes <= VCACHE_BYTES) {
        atomic_fetch_add(&r->vbytes, vd->bytes);
        atomic_fetch_add(&vd->refs, 1);
        pthread_mutex_lock(lk);
        verdict *old = r->v[slot];
        r->v[slot] = vd;
        pthread_mutex_unlock(lk);
        if (old)
            atomic_fetch_sub(&r->vbytes, old->bytes);
        verdict_unref(old);
    } else {
        vd->bytes = 0; /* not counted: never cached */
    }
    return vd;
}

/* --- instance verdicts ----------------------------------------------------------- */

static int read_all(store *st, const store_instance *in, uint8_t *buf)
{
    for (uint64_t off = 0; off < in->size;) {
        long k = store_read_instance(st, in, off, buf + off, (size_t)(in->size - off));
        if (k <= 0)
            return k < 0 ? (int)k : -EIO;
        off += (uint64_t)k;
    }
    return 0;
}

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
        int rc = buf ? read_all(st, in, buf) : -ENOMEM;
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
    uint32_t slot = fnv(in->digest, 32) & (ISLOTS - 1);
    pthread_mutex_t *lk = &r->ilock[slot % STRIPES];
    pthread_mutex_lock(lk);
    inst_verdict *c = &r->iv[slot];
    bool hit = c->used && !memcmp(c->digest, in->digest, 32);
    if (hit)
        *out = *c;
    pthread_mutex_unlock(lk);
    if (hit)
        return;
    check_instance(r->env.st, in, decode, out);
    out->used = true;
    memcpy(out->digest, in->digest, 32);
    pthread_mutex_lock(lk);
    r->iv[slot] = *out;
    pthread_mutex_unlock(lk);
}

/* --- the rules -------------------------------------------------------------------- */

static void set(recog_result *o, recog_rule k, bool ok, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void set(recog_result *o, recog_rule k, bool ok, const char *fmt, ...)
{
    o->rule[k].ok = ok;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->rule[k].detail, sizeof o->rule[k].detail, fmt, ap);
    va_end(ap);
}

static void rule_images(recog *r, const store_report_view *v, const verdict *vd, recog_result *o)
{
    if (!vd->parsed) {
        set(o, RECOG_IMAGES, false, "the report's list of instances cannot be read");
        set(o, RECOG_QUALITY, false, "not checked: the report's list of instances cannot be read");
        return;
    }
    size_t missing = 0, differ = 0, broken = 0, undecodable = 0;
    char first_bad[200] = "";
    bool imaging = v->ref->kind != 1; /* WL_ECG */
    for (size_t i = 0; i < vd->n_inst; i++) {
        store_instance in;
        if (store_view_instance(v->view, vd->inst[i].sop, &in) != 0) {
            missing++;
            continue;
        }
        if (memcmp(in.digest, vd->inst[i].digest, 32)) {
            differ++;
            continue;
        }
        inst_verdict iv;
        instance_verdict(r, &in, imaging, &iv);
        if (!iv.intact)
            broken++;
        else if (!iv.decodes) {
            undecodable++;
            if (!first_bad[0])
                snprintf(first_bad, sizeof first_bad, "%.160s", iv.why);
        }
    }
    size_t n = vd->n_inst;
    if (missing || differ || broken)
        set(o, RECOG_IMAGES, false, "%zu of %zu instances missing, %zu stored with other bytes, %zu damaged", missing,
            n, differ, broken);
    else
        set(o, RECOG_IMAGES, true, "all %zu instances stored with the digests the report signed, bytes intact", n);
    if (!imaging) {
        if (v->ref->quality == STORE_QUALITY_FAILED)
            set(o, RECOG_QUALITY, false, "%s", v->ref->quality_why);
        else if (v->ref->quality == STORE_QUALITY_PASSED)
            set(o, RECOG_QUALITY, true, "ECG signal quality passed the hub's triage");
        else
            set(o, RECOG_QUALITY, false, "ECG signal quality was not checked");
    } else if (undecodable) {
        set(o, RECOG_QUALITY, false, "%zu of %zu instances do not decode: %s", undecodable, n, first_bad);
    } else if (missing || differ || broken) {
        set(o, RECOG_QUALITY, false, "not checked: images missing or damaged");
    } else {
        set(o, RECOG_QUALITY, true, "every image decodes");
    }
}

static void rule_facility(recog *r, const store_report_view *v, recog_result *o)
{
    const char *origin = v->ref->origin;
    const char *colon = strchr(origin, ':');
    const char *name = colon ? colon + 1 : origin;
    snprintf(o->facility, sizeof o->facility, "%.63s", name);
    if (!strncmp(origin, "dicom:", 6)) {
        set(o, RECOG_FACILITY, true, "acquired at this hub's hospital (DICOM from %s)", name);
        return;
    }
    pthread_mutex_lock(&r->cfg_lock);
    bool member = recog_is_member(r->cfg, name);
    pthread_mutex_unlock(&r->cfg_lock);
    if (member)
        set(o, RECOG_FACILITY, true, "%s is a member of the consortium", name);
    else if (!strncmp(origin, "edge:", 5) && r->env.has_edge && r->env.has_edge(r->env.has_edge_ctx, name))
        set(o, RECOG_FACILITY, true, "%s is a consortium clinic (its gateway's key is in the allow-list)", name);
    else
        set(o, RECOG_FACILITY, false, "%s is not in the consortium", name[0] ? name : "an unknown facility");
}

/* Days since 1970-01-01 of YYYYMMDD or YYYY-MM-DD; -1 when malformed. */
static long day_of(const char *s)
{
    int y, m, d;
    char tail;
    if (strlen(s) == 8 ? sscanf(s, "%4d%2d%2d%c", &y, &m, &d, &tail) != 3
                       : sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
        return -1;
    if (y < 1900 || m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_hour = 12};
    return (long)(timegm(&tm) / 86400);
}

static void ymd(long day, char out[11])
{
    time_t t = (time_t)day * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

static void rule_period(recog *r, const store_report_view *v, const verdict *vd, int64_t now_ms, recog_result *o)
{
    const char *mod = v->ref->modality;
    pthread_mutex_lock(&r->cfg_lock);
    int days = recog_validity_days(r->cfg, mod);
    pthread_mutex_unlock(&r->cfg_lock);
    if (days < 0) {
        set(o, RECOG_EXAM_TYPE, false, "exam type %s is not recognised in the consortium", mod[0] ? mod : "(none)");
        set(o, RECOG_VALIDITY, false, "no validity period for exam type %s", mod[0] ? mod : "(none)");
        return;
    }
    set(o, RECOG_EXAM_TYPE, true, "%s exams are recognised for %d days", mod, days);
    long base = day_of(v->ref->study_date);
    const char *from = "exam";
    if (base < 0) {
        base = (long)(v->ref->reported_ms / 86400000);
        from = "report";
    }
    long until = base + days;
    long own = vd->parsed && vd->valid_until[0] ? day_of(vd->valid_until) : -1;
    if (own >= 0 && own < until)
        until = own, from = "report's own valid_until";
    ymd(until, o->valid_until);
    long today = (long)(now_ms / 86400000);
    if (today <= until)
        set(o, RECOG_VALIDITY, true, "valid until %s (%s date + %d days)", o->valid_until, from, days);
    else
        set(o, RECOG_VALIDITY, false, "expired on %s (%s date + %d days)", o->valid_until, from, days);
}

int recog_evaluate(recog *r, const store_report_view *v, int64_t now_ms, recog_result *o)
{
    memset(o, 0, sizeof *o);
    verdict *vd = verdict_for(r, v);
    if (!vd)
        return -ENOMEM;
    o->hold = vd;
    o->inst = vd->inst;
    o->n_inst = vd->parsed ? vd->n_inst : 0;
    snprintf(o->exam_type, sizeof o->exam_type, "%s", vd->exam_type);
    snprintf(o->signer, sizeof o->signer, "%s", vd->signer);
    snprintf(o->reader_id, sizeof o->reader_id, "%s", vd->reader_id);
    snprintf(o->reading_facility, sizeof o->reading_facility, "%s", vd->reading_facility);
    snprintf(o->signer_alg, sizeof o->signer_alg, "%s", vd->alg);
    snprintf(o->reported, sizeof o->reported, "%s", vd->reported);
    rule_images(r, v, vd, o);
    if (vd->rc == 0)
        set(o, RECOG_SIGNATURE, true, "signed by %s (%s), chain to the consortium trust list, not revoked",
            vd->reader_id, vd->alg);
    else
        set(o, RECOG_SIGNATURE, false, "%s", vd->why);
    rule_facility(r, v, o);
    rule_period(r, v, vd, now_ms, o);
    o->recognised = true;
    for (int k = 0; k < RECOG_RULES; k++)
        o->recognised = o->recognised && o->rule[k].ok;
    return 0;
}

void recog_result_release(recog_result *o)
{
    if (!o || !o->hold)
        return;
    verdict_unref(o->hold);
    o->hold = NULL;
    o->inst = NULL;
}

/* report_verify.c — the checks on a signed report: offline (report_verify,
 * `dxhub verify`) and on SUBMIT (report_verify_submission, the store's
 * verification hook).  The trust list is reloadable while readers submit:
 * each check takes a reference to the list current when it starts.
 *
 * Parsed signer chains are kept, keyed by the SHA-256 of their PEM bytes:
 * a consortium's reports are signed by a few hundred readers, each report
 * carries its signer's chain, and parsing it (OpenSSL's PEM and public-key
 * decoders) was a third of the CPU of a lookup that checks ten signatures.
 * Only the parse is kept, a pure function of the bytes; the signature,
 * the chain's trust, validity and revocation are checked on every call. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/digest.h"
#include "hub/report.h"
#include "hub/errbuf.h"
#include "codecs/banned.h"

#define CHAIN_SLOTS 256 /* parsed chains kept (direct-mapped by hash) */

typedef struct chain_slot {
    uint8_t    hash[32]; /* SHA-256 of the PEM bytes */
    pki_chain *chain;    /* NULL: free */
} chain_slot;

struct report_verifier {
    report_verifier_config cfg;
    char                  *trust_dir;
    pthread_mutex_t        lock;
    pki_trust             *trust; /* under lock */
    chain_slot             chains[CHAIN_SLOTS]; /* under lock */
    size_t                 chains_parsed, chains_reused; /* under lock */
};

int report_verifier_new(const report_verifier_config *cfg, report_verifier **out, char *err, size_t errlen)
{
    if (!cfg || !cfg->trust_dir)
        return errbuf_fail(PKI_EINVAL, err, errlen, "a trust directory is required");
    report_verifier *v = calloc(1, sizeof *v);
    if (!v || !(v->trust_dir = strdup(cfg->trust_dir))) {
        free(v);
        return errbuf_fail(-ENOMEM, err, errlen, "out of memory");
    }
    v->cfg = *cfg;
    v->cfg.trust_dir = v->trust_dir;
    pthread_mutex_init(&v->lock, NULL);
    int rc = pki_trust_load(v->trust_dir, &v->trust, err, errlen);
    if (rc < 0) {
        report_verifier_free(&v);
        return rc;
    }
    *out = v;
    return 0;
}

int report_verifier_reload(report_verifier *v, char *err, size_t errlen)
{
    pki_trust *fresh = NULL, *old;
    int rc = pki_trust_load(v->trust_dir, &fresh, err, errlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&v->lock);
    old = v->trust;
    v->trust = fresh;
    pthread_mutex_unlock(&v->lock);
    pki_trust_free(&old); /* a check still running keeps its own reference */
    return 0;
}

void report_verifier_free(report_verifier **vp)
{
    if (!vp || !*vp)
        return;
    report_verifier *v = *vp;
    pki_trust_free(&v->trust);
    for (size_t i = 0; i < CHAIN_SLOTS; i++)
        pki_chain_free(&v->chains[i].chain);
    pthread_mutex_destroy(&v->lock);
    free(v->trust_dir);
    free(v);
    *vp = NULL;
}

static pki_trust *current(report_verifier *v)
{
    pthread_mutex_lock(&v->lock);
    pki_trust *t = pki_trust_ref(v->trust);
    pthread_mutex_unlock(&v->lock);
    return t;
}

void report_verifier_counts(report_verifier *v, size_t *cas, size_t *crls)
{
    pki_trust *t = current(v);
    pki_trust_counts(t, cas, crls);
    pki_trust_free(&t);
}

int report_verifier_deadline(report_verifier *v, pki_trust_deadline *out)
{
    pki_trust *t = current(v);
    int rc = pki_trust_deadline_of(t, out);
    pki_trust_free(&t);
    return rc;
}

/* The chain in pem, parsed or a copy of the one kept for the same bytes;
 * the caller's to free. */
static int chain_of(report_verifier *v, const void *pem, size_t len, pki_chain **out, char *err, size_t errlen)
{
    uint8_t h[32];
    digest_ctx *d = digest_new();
    if (!d) /* nothing to key it by: parse it, keep nothing */
        return pki_chain_parse(pem, len, out, err, errlen);
    digest_update(d, pem, len);
    digest_final(&d, h);
    chain_slot *s = &v->chains[(h[0] | (size_t)h[1] << 8) % CHAIN_SLOTS];
    pthread_mutex_lock(&v->lock);
    *out = s->chain && !memcmp(s->hash, h, sizeof h) ? pki_chain_dup(s->chain) : NULL;
    if (*out)
        v->chains_reused++;
    pthread_mutex_unlock(&v->lock);
    if (*out)
        return 0;
    int rc = pki_chain_parse(pem, len, out, err, errlen);
    if (rc < 0)
        return rc;
    pki_chain *keep = pki_chain_dup(*out), *old = NULL;
    pthread_mutex_lock(&v->lock);
    v->chains_parsed++;
    if (keep) {
        old = s->chain;
        s->chain = keep;
        memcpy(s->hash, h, sizeof h);
    }
    pthread_mutex_unlock(&v->lock);
    pki_chain_free(&old);
    return 0;
}

void report_verifier_chain_counts(report_verifier *v, size_t *parsed, size_t *reused)
{
    pthread_mutex_lock(&v->lock);
    *parsed = v->chains_parsed;
    *reused = v->chains_reused;
    pthread_mutex_unlock(&v->lock);
}

int report_verify(report_verifier *v, const void *report, size_t len, const void *sig, size_t sig_len,
                  const void *chain, size_t chain_len, time_t at, pki_identity *signer, report_doc **doc, char *why,
                  size_t whylen)
{
    pki_chain *c = NULL;
    pki_trust *t = NULL;
    report_doc *d = NULL;
    char e[256];
    int rc;
    if (doc)
        *doc = NULL;
    if (signer)
        memset(signer, 0, sizeof *signer);
    if (!report || !len)
        return errbuf_fail(REPORT_EFORMAT, why, whylen, "no report");
    if (!sig || !sig_len || !chain || !chain_len)
        return errbuf_fail(REPORT_EUNSIGNED, why, whylen,
                           "signing requires a signature and the signer's certificate chain");
    if ((rc = chain_of(v, chain, chain_len, &c, e, sizeof e)) < 0)
        return errbuf_fail(rc, why, whylen, "signer's certificate chain unreadable: %s", e);
    if (signer)
        pki_chain_identity(c, signer);
    /* The bytes first: whatever else holds, these must be what was signed. */
    if ((rc = pki_chain_verify_data(c, report, len, sig, sig_len, e, sizeof e)) < 0) {
        errbuf_fail(rc, why, whylen, "%s", rc == PKI_ESIG ? "signature does not verify" : e);
        goto out;
    }
    t = current(v);
    if ((rc = pki_trust_check(t, c, at ? at : v->cfg.at ? v->cfg.at : time(NULL), why, whylen)) < 0)
        goto out;
    if ((rc = report_parse(report, len, &d, why, whylen)) < 0)
        goto out;
    pki_identity id;
    pki_chain_identity(c, &id);
    const report_info *in = report_doc_info(d);
    if (!id.reader_id[0] || strcmp(in->reader_id, id.reader_id)) {
        rc = errbuf_fail(REPORT_ESIGNER, why, whylen, "the report names another reader than its signer");
        goto out;
    }
    if (strcmp(in->reading_facility, id.facility)) {
        rc = errbuf_fail(REPORT_ESIGNER, why, whylen, "the report names another reading facility than its signer's");
        goto out;
    }
out:
    if (!rc && doc) {
        *doc = d;
        d = NULL;
    }
    report_free(&d);
    pki_trust_free(&t);
    pki_chain_free(&c);
    return rc;
}

int report_verify_submission(void *ctx, const wl_task *t, const store_submission *sub, char *why, size_t why_len)
{
    report_verifier *v = ctx;
    if (!v || !t || !sub || !sub->action || !sub->reader)
        return errbuf_fail(PKI_EINVAL, why, why_len, "verification not configured");
    int addendum = !strcmp(sub->action, "addendum");
    int signing = !strcmp(sub->action, "sign") || addendum;
    if (!signing && sub->sig_len == 0)
        return 0; /* an unsigned draft, or a return */
    if (!sub->report || !sub->report_len)
        return errbuf_fail(REPORT_EFORMAT, why, why_len, "a signature without a report");
    if (!sub->sig_len || !sub->chain_len)
        return errbuf_fail(REPORT_EUNSIGNED, why, why_len,
                           "signing requires a signature and the signer's certificate chain");
    pki_identity signer;
    report_doc *d = NULL;
    int rc = report_verify(v, sub->report, sub->report_len, sub->sig, sub->sig_len, sub->chain, sub->chain_len, 0,
                           &signer, &d, why, why_len);
    if (rc < 0)
        return rc;
    const report_info *in = report_doc_info(d);
    if (strcmp(signer.reader_id, sub->reader->id))
        rc = errbuf_fail(REPORT_ESIGNER, why, why_len, "signer is not the reader holding the task");
    else if (sub->report_id && strcmp(in->report_id, sub->report_id))
        rc = errbuf_fail(REPORT_EFORMAT, why, why_len, "the report's id differs from the submission's");
    else if (strcmp(in->study_uid, t->study_uid))
        rc = errbuf_fail(REPORT_ESTUDY, why, why_len, "the report is for another study");
    else if (addendum && t->state != WL_SIGNED)
        rc = errbuf_fail(REPORT_ESTUDY, why, why_len, "an addendum follows a signed report: this task is not signed");
    else if (addendum && (!in->supersedes || strcmp(in->supersedes, t->report_id)))
        rc = errbuf_fail(REPORT_ESTUDY, why, why_len, "an addendum must name the report it follows (supersedes: %s)",
                  t->report_id);
    else if (addendum && in->version != t->version + 1)
        rc = errbuf_fail(REPORT_ESTUDY, why, why_len,
                         "the addendum's version (%u) must follow the signed report's (%u)",
                  in->version, (unsigned)t->version);
    else if (!addendum && t->version && in->version != t->version)
        rc = errbuf_fail(REPORT_ESTUDY, why, why_len, "the report's version (%u) is not the task's (%u)", in->version,
                  (unsigned)t->version);
    else if (t->review && t->drafted_by[0] && in->drafted_by && strcmp(in->drafted_by, t->drafted_by))
        rc = errbuf_fail(REPORT_ESIGNER, why, why_len, "the report names another resident than the one who drafted it");
    else if (v->cfg.stored_digest)
        rc = report_check_digests(d, v->cfg.stored_digest, v->cfg.stored_digest_ctx, "the stored study", why,
                                  why_len);
    report_free(&d);
    return rc;
}

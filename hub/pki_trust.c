/* pki_trust.c — the consortium's trust list: CA certificates and their
 * CRLs from a directory, and the check of a signer's chain against it
 * (path, validity at a given time, revocation). */
#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "hub/pki_private.h"
#include "codecs/banned.h"

#define TRUST_FILES_MAX 4096 /* files looked at in a trust directory */

typedef struct loader {
    pki_trust *t;
    STACK_OF(X509_CRL) *crls;
    size_t files;
} loader;

static int has_ext(const char *name)
{
    static const char *const exts[] = {".pem", ".crt", ".cer", ".crl"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (n > 4 && !strcmp(name + n - 4, exts[i]))
            return 1;
    return 0;
}

static void take_cert(loader *l, X509 *x)
{
    /* Only CAs are anchors: a reader's certificate lying in the folder
     * must not become trusted. */
    if (X509_check_ca(x) >= 1 && X509_STORE_add_cert(l->t->store, x)) {
        pki_cert_set_id(x);
        X509_up_ref(x);
        sk_X509_push(l->t->anchors, x);
    }
    ERR_clear_error();
}

static void load_file(loader *l, const char *path)
{
    char *p = NULL;
    size_t len = 0;
    if (++l->files > TRUST_FILES_MAX || pki_read_file(path, &p, &len) < 0)
        return;
    BIO *b = BIO_new_mem_buf(p, (int)len);
    STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
    int found = 0;
    for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *in = sk_X509_INFO_value(infos, i);
        if (in->x509) {
            take_cert(l, in->x509);
            found = 1;
        }
        if (in->crl) {
            X509_CRL_up_ref(in->crl);
            sk_X509_CRL_push(l->crls, in->crl);
            found = 1;
        }
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    if (!found) { /* DER: a .crl from a CA's distribution point, or a .cer */
        const unsigned char *q = (const unsigned char *)p;
        X509_CRL *crl = d2i_X509_CRL(NULL, &q, (long)len);
        if (crl)
            sk_X509_CRL_push(l->crls, crl);
        else {
            q = (const unsigned char *)p;
            X509 *x = d2i_X509(NULL, &q, (long)len);
            if (x)
                take_cert(l, x);
            X509_free(x);
        }
    }
    BIO_free(b);
    free(p);
    ERR_clear_error();
}

static void load_dir(loader *l, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    /* Sorted order is not needed: anchors and CRLs are sets. */
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4200];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        struct stat sb;
        if (stat(path, &sb) < 0)
            continue;
        if (S_ISDIR(sb.st_mode) && depth == 0)
            load_dir(l, path, 1);
        else if (S_ISREG(sb.st_mode) && has_ext(e->d_name))
            load_file(l, path);
    }
    closedir(d);
}

int pki_trust_load(const char *dir, pki_trust **out, char *err, size_t errlen)
{
    struct stat sb;
    if (!dir || stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return pki_fail(PKI_EINVAL, err, errlen, "%s: not a directory", dir ? dir : "(none)");
    pki_trust *t = calloc(1, sizeof *t);
    loader l = {.t = t};
    if (!t || !(t->store = X509_STORE_new()) || !(t->anchors = sk_X509_new_null()) ||
        !(l.crls = sk_X509_CRL_new_null())) {
        pki_trust_free(&t);
        return pki_fail(-ENOMEM, err, errlen, "out of memory");
    }
    atomic_init(&t->refs, 1);
    load_dir(&l, dir, 0);
    if (sk_X509_num(t->anchors) == 0) {
        sk_X509_CRL_pop_free(l.crls, X509_CRL_free);
        pki_trust_free(&t);
        return pki_fail(PKI_EINVAL, err, errlen, "%s: no CA certificate (*.pem, *.crt) in the trust list", dir);
    }
    /* Keep each CRL with the anchor whose key signed it; others are kept
     * unverified for issuers below an anchor (checked when used). */
    int n = sk_X509_CRL_num(l.crls);
    t->crls = calloc((size_t)(n > 0 ? n : 1), sizeof *t->crls);
    for (int i = 0; t->crls && i < n; i++) {
        X509_CRL *crl = sk_X509_CRL_value(l.crls, i);
        X509 *by = NULL;
        for (int j = 0; j < sk_X509_num(t->anchors) && !by; j++)
            if (pki_crl_signed_by(crl, sk_X509_value(t->anchors, j)))
                by = sk_X509_value(t->anchors, j);
        X509_CRL_up_ref(crl);
        t->crls[t->n_crls++] = (pki_crl_entry){crl, by};
    }
    sk_X509_CRL_pop_free(l.crls, X509_CRL_free);
    if (!t->crls) {
        pki_trust_free(&t);
        return pki_fail(-ENOMEM, err, errlen, "out of memory");
    }
    ERR_clear_error();
    *out = t;
    return 0;
}

pki_trust *pki_trust_ref(pki_trust *t)
{
    if (t)
        atomic_fetch_add(&t->refs, 1);
    return t;
}

void pki_trust_free(pki_trust **tp)
{
    if (!tp || !*tp)
        return;
    pki_trust *t = *tp;
    *tp = NULL;
    if (t->store && atomic_fetch_sub(&t->refs, 1) > 1)
        return;
    for (size_t i = 0; i < t->n_crls; i++)
        X509_CRL_free(t->crls[i].crl);
    free(t->crls);
    sk_X509_pop_free(t->anchors, X509_free);
    X509_STORE_free(t->store);
    free(t);
}

void pki_trust_counts(const pki_trust *t, size_t *cas, size_t *crls)
{
    if (cas)
        *cas = t ? (size_t)sk_X509_num(t->anchors) : 0;
    if (crls) {
        size_t k = 0;
        for (size_t i = 0; t && i < t->n_crls; i++)
            k += t->crls[i].issuer != NULL;
        *crls = k;
    }
}

/* The nextUpdate of the newest CRL that anchor ca signed; 0 when it has none
 * (a CRL without nextUpdate never goes out of date: INT64_MAX). */
static int64_t crl_due(const pki_trust *t, X509 *ca)
{
    int64_t due = 0;
    time_t newest = 0;
    bool found = false;
    for (size_t i = 0; i < t->n_crls; i++) {
        if (!t->crls[i].issuer || X509_cmp(t->crls[i].issuer, ca) != 0)
            continue;
        time_t last = pki_asn1_time(X509_CRL_get0_lastUpdate(t->crls[i].crl));
        if (found && last <= newest)
            continue;
        found = true;
        newest = last;
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(t->crls[i].crl);
        due = next ? (int64_t)pki_asn1_time(next) : INT64_MAX;
    }
    return due;
}

int pki_trust_deadline_of(const pki_trust *t, pki_trust_deadline *out)
{
    memset(out, 0, sizeof *out);
    int n = t ? sk_X509_num(t->anchors) : 0;
    bool any = false;
    for (int i = 0; i < n; i++) {
        X509 *ca = sk_X509_value(t->anchors, i);
        int64_t end = (int64_t)pki_asn1_time(X509_get0_notAfter(ca)), due = crl_due(t, ca);
        bool crl = due < end;
        int64_t at = crl ? due : end;
        if (any && at >= out->at)
            continue;
        any = true;
        out->at = at;
        out->crl = crl;
        pki_name_get(X509_get_subject_name(ca), NID_commonName, out->ca, sizeof out->ca);
    }
    return any ? 0 : -1;
}

static int map_verify_error(int e, int depth, char *why, size_t whylen)
{
    const char *who = depth == 0 ? "certificate" : "issuing CA certificate";
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return pki_fail(PKI_EEXPIRED, why, whylen, "%s expired", who);
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return pki_fail(PKI_ENOTYET, why, whylen, "%s not yet valid", who);
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return pki_fail(PKI_EUNTRUSTED, why, whylen, "issuer not in the consortium trust list");
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        return pki_fail(PKI_ECHAIN, why, whylen, "%s signature does not verify with its issuer's key", who);
    default:
        return pki_fail(PKI_ECHAIN, why, whylen, "certificate chain invalid: %s", X509_verify_cert_error_string(e));
    }
}

/* Revocation of x by issuer's CRLs in the trust list. */
static int check_revoked(const pki_trust *t, X509 *x, X509 *issuer, time_t at, int depth, char *why, size_t whylen)
{
    const X509_CRL *newest = NULL;
    time_t newest_last = 0;
    for (size_t i = 0; i < t->n_crls; i++) {
        X509_CRL *crl = t->crls[i].crl;
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0)
            continue;
        int usable = t->crls[i].issuer ? X509_cmp(t->crls[i].issuer, issuer) == 0 : pki_crl_signed_by(crl, issuer);
        if (!usable)
            continue;
        X509_REVOKED *r = NULL;
        if (X509_CRL_get0_by_cert(crl, &r, x) == 1)
            return pki_fail(PKI_EREVOKED, why, whylen, "%s revoked", depth == 0 ? "certificate" : "issuing CA certificate");
        time_t last = pki_asn1_time(X509_CRL_get0_lastUpdate(crl));
        if (!newest || last > newest_last) {
            newest = crl;
            newest_last = last;
        }
    }
    if (!newest)
        return pki_fail(PKI_ENOCRL, why, whylen, "no revocation list for the issuer in the trust list");
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(newest);
    if (next && pki_asn1_time(next) < at)
        return pki_fail(PKI_ESTALECRL, why, whylen, "the issuer's revocation list is out of date (nextUpdate passed)");
    return 0;
}

int pki_trust_check(const pki_trust *t, const pki_chain *c, time_t at, char *why, size_t whylen)
{
    if (!t || !c || !c->n)
        return pki_fail(PKI_EINVAL, why, whylen, "no trust list or no certificate");
    X509 *leaf = c->certs[0];
    uint32_t ku = X509_get_key_usage(leaf); /* UINT32_MAX when the extension is absent */
    if (!(ku & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)))
        return pki_fail(PKI_ECHAIN, why, whylen, "the certificate is not for signatures (key usage)");
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int rc = 0;
    for (size_t i = 1; untrusted && i < c->n; i++)
        sk_X509_push(untrusted, c->certs[i]);
    if (!untrusted || !ctx || !X509_STORE_CTX_init(ctx, t->store, leaf, untrusted)) {
        rc = pki_fail(PKI_ECRYPTO, why, whylen, "setting up chain verification failed");
        goto out;
    }
    X509_STORE_CTX_set_time(ctx, 0, at);
    if (X509_verify_cert(ctx) != 1) {
        rc = map_verify_error(X509_STORE_CTX_get_error(ctx), X509_STORE_CTX_get_error_depth(ctx), why, whylen);
        goto out;
    }
    STACK_OF(X509) *path = X509_STORE_CTX_get0_chain(ctx);
    int n = sk_X509_num(path);
    /* Every certificate but the anchor against its issuer's CRL. */
    for (int i = 0; i + 1 < n && !rc; i++)
        rc = check_revoked(t, sk_X509_value(path, i), sk_X509_value(path, i + 1), at, i, why, whylen);
out:
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    ERR_clear_error();
    return rc;
}

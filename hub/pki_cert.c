/* pki_cert.c — certificate chains: parsing, who a certificate names,
 * checking a report signature with its key; signing certificates and
 * CRLs with the SM2 ID rule of pki.h. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/pki_private.h"
#include "codecs/banned.h"

int pki_chain_parse(const void *pem, size_t len, pki_chain **out, char *err, size_t errlen)
{
    if (!pem || !len || len > PKI_PEM_MAX)
        return pki_fail(PKI_EFORMAT, err, errlen, "certificate chain missing or larger than %d bytes", PKI_PEM_MAX);
    pki_chain *c = calloc(1, sizeof *c);
    BIO *b = c ? BIO_new_mem_buf(pem, (int)len) : NULL;
    if (!b) {
        free(c);
        return pki_fail(-ENOMEM, err, errlen, "out of memory");
    }
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (c->n == PKI_CHAIN_MAX) {
            X509_free(x);
            BIO_free(b);
            pki_chain_free(&c);
            return pki_fail(PKI_EFORMAT, err, errlen, "certificate chain longer than %d", PKI_CHAIN_MAX);
        }
        pki_cert_set_id(x); /* for X509_verify_cert: SM2 certificates carry the GM/T ID */
        c->certs[c->n++] = x;
    }
    BIO_free(b);
    /* The loop ends on "no start line" at the end; anything else is damage. */
    unsigned long e = ERR_peek_last_error();
    int clean_end = !e || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
    if (!c->n || !clean_end) {
        pki_chain_free(&c);
        return pki_fail(PKI_EFORMAT, err, errlen, "not a PEM certificate chain");
    }
    ERR_clear_error();
    *out = c;
    return 0;
}

int pki_chain_load(const char *path, pki_chain **out, char *err, size_t errlen)
{
    char *p = NULL;
    size_t len = 0;
    int rc = pki_read_file(path, &p, &len);
    if (rc < 0)
        return pki_fail(rc == -EFBIG ? PKI_EFORMAT : rc, err, errlen, "%s: %s", path,
                        rc == -EFBIG ? "larger than a certificate chain may be" : strerror(-rc));
    char why[256];
    rc = pki_chain_parse(p, len, out, why, sizeof why);
    free(p);
    if (rc < 0)
        return pki_fail(rc, err, errlen, "%s: %s", path, why);
    return 0;
}

pki_chain *pki_chain_dup(const pki_chain *c)
{
    pki_chain *d = c ? calloc(1, sizeof *d) : NULL;
    if (!d)
        return NULL;
    for (size_t i = 0; i < c->n; i++) {
        if (!X509_up_ref(c->certs[i])) {
            pki_chain_free(&d);
            return NULL;
        }
        d->certs[d->n++] = c->certs[i];
    }
    return d;
}

void pki_chain_free(pki_chain **c)
{
    if (!c || !*c)
        return;
    for (size_t i = 0; i < (*c)->n; i++)
        X509_free((*c)->certs[i]);
    free(*c);
    *c = NULL;
}

void pki_name_get(const X509_NAME *name, int nid, char *out, size_t n)
{
    out[0] = '\0';
    int i = name ? X509_NAME_get_index_by_NID(name, nid, -1) : -1;
    if (i < 0)
        return;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *u = NULL;
    int len = ASN1_STRING_to_UTF8(&u, s);
    if (len < 0)
        return;
    /* Truncate on a UTF-8 character boundary. */
    size_t k = (size_t)len < n ? (size_t)len : n - 1;
    while (k > 0 && (size_t)len > k && (u[k] & 0xC0) == 0x80)
        k--;
    memcpy(out, u, k);
    out[k] = '\0';
    for (size_t j = 0; j < k; j++) /* one-line output: no control characters */
        if ((unsigned char)out[j] < 0x20 || out[j] == 0x7f)
            out[j] = '?';
    OPENSSL_free(u);
}

time_t pki_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return 0;
    return timegm(&tm);
}

int pki_chain_identity(const pki_chain *c, pki_identity *out)
{
    memset(out, 0, sizeof *out);
    if (!c || !c->n)
        return PKI_EINVAL;
    X509 *x = c->certs[0];
    const X509_NAME *s = X509_get_subject_name(x);
    pki_name_get(s, NID_commonName, out->name, sizeof out->name);
    pki_name_get(s, NID_userId, out->reader_id, sizeof out->reader_id);
    pki_name_get(s, NID_title, out->role, sizeof out->role);
    pki_name_get(s, NID_organizationName, out->facility, sizeof out->facility);
    pki_name_get(X509_get_issuer_name(x), NID_commonName, out->issuer, sizeof out->issuer);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(out->serial, sizeof out->serial, "%s", hex ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
    int alg = pki_alg_of(X509_get0_pubkey(x));
    snprintf(out->alg, sizeof out->alg, "%s", alg < 0 ? "unsupported" : pki_alg_name((pki_alg)alg));
    out->not_before = pki_asn1_time(X509_get0_notBefore(x));
    out->not_after = pki_asn1_time(X509_get0_notAfter(x));
    ERR_clear_error();
    return 0;
}

int pki_chain_matches_key(const pki_chain *c, const pki_key *k)
{
    if (!c || !c->n || !k)
        return 0;
    int eq = EVP_PKEY_eq(X509_get0_pubkey(c->certs[0]), k->pkey) == 1;
    ERR_clear_error();
    return eq;
}

int pki_chain_verify_data(const pki_chain *c, const void *data, size_t len, const void *sig, size_t sig_len,
                          char *err, size_t errlen)
{
    if (!c || !c->n)
        return pki_fail(PKI_EINVAL, err, errlen, "no certificate");
    EVP_PKEY *pub = X509_get0_pubkey(c->certs[0]);
    if (pki_alg_of(pub) < 0)
        return pki_fail(PKI_EALG, err, errlen, "the signer's key is neither SM2 nor Ed25519");
    if (!sig || !sig_len || sig_len > PKI_SIG_MAX)
        return pki_fail(PKI_ESIG, err, errlen, "signature does not verify (missing or %zu bytes)", sig_len);
    EVP_MD_CTX *md = pki_md_ctx(pub, 0, 1);
    if (!md)
        return pki_fail(PKI_ECRYPTO, err, errlen, "setting up signature verification failed");
    int ok = EVP_DigestVerify(md, sig, sig_len, data, len);
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    if (ok != 1)
        return pki_fail(PKI_ESIG, err, errlen, "signature does not verify");
    return 0;
}

int pki_sign_cert(X509 *x, EVP_PKEY *key, char *err, size_t errlen)
{
    EVP_MD_CTX *md = pki_md_ctx(key, 1, 1);
    int ok = md && X509_sign_ctx(x, md) > 0;
    EVP_MD_CTX_free(md);
    return ok ? 0 : pki_fail(PKI_ECRYPTO, err, errlen, "signing the certificate failed");
}

/* CRLs: the empty ID, the only one OpenSSL 3.0 can check (pki.h). */
int pki_sign_crl(X509_CRL *crl, EVP_PKEY *key, char *err, size_t errlen)
{
    EVP_MD_CTX *md = pki_md_ctx(key, 1, 0);
    int ok = md && X509_CRL_sign_ctx(crl, md) > 0;
    EVP_MD_CTX_free(md);
    return ok ? 0 : pki_fail(PKI_ECRYPTO, err, errlen, "signing the CRL failed");
}

/* X509_CRL_verify has no ID, so an SM2 CRL signed with the GM/T ID is
 * checked here over its to-be-signed bytes. */
int pki_crl_signed_by(X509_CRL *crl, X509 *issuer)
{
    EVP_PKEY *pub = X509_get0_pubkey(issuer);
    if (!pub || X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0)
        return 0;
    if (X509_CRL_verify(crl, pub) == 1) {
        ERR_clear_error();
        return 1;
    }
    ERR_clear_error();
    if (pki_alg_of(pub) != PKI_SM2 || X509_CRL_get_signature_nid(crl) != NID_SM2_with_SM3)
        return 0;
    const ASN1_BIT_STRING *sig = NULL;
    const X509_ALGOR *alg = NULL;
    X509_CRL_get0_signature(crl, &sig, &alg);
    unsigned char *tbs = NULL;
    int tbs_len = i2d_re_X509_CRL_tbs(crl, &tbs);
    EVP_MD_CTX *md = tbs_len > 0 ? pki_md_ctx(pub, 0, 1) : NULL;
    int ok = md && sig &&
             EVP_DigestVerify(md, ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig), tbs, (size_t)tbs_len) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(tbs);
    ERR_clear_error();
    return ok;
}

int pki_cert_set_id(X509 *x)
{
    if (X509_get_signature_nid(x) != NID_SM2_with_SM3)
        return 0;
    ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
    if (!id || !ASN1_OCTET_STRING_set(id, (const unsigned char *)PKI_SM2_ID, (int)strlen(PKI_SM2_ID))) {
        ASN1_OCTET_STRING_free(id);
        return PKI_ECRYPTO;
    }
    X509_set0_distinguishing_id(x, id); /* x owns id */
    return 0;
}

/* pki_private.h — what the pki*.c files share: the structs behind the
 * opaque handles and the OpenSSL helpers.  Nothing outside pki*.c
 * includes it. */
#ifndef DXHUB_PKI_PRIVATE_H
#define DXHUB_PKI_PRIVATE_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include "hub/pki.h"

struct pki_key {
    EVP_PKEY *pkey;
    pki_alg   alg;
};

struct pki_chain {
    X509  *certs[PKI_CHAIN_MAX];
    size_t n;
};

typedef struct pki_crl_entry {
    X509_CRL *crl;
    X509     *issuer; /* the anchor whose key signed it (borrowed from the store) */
} pki_crl_entry;

struct pki_trust {
    atomic_int     refs;
    X509_STORE    *store;
    STACK_OF(X509)*anchors;
    pki_crl_entry *crls;
    size_t         n_crls;
};

/* Formats the reason into err, followed by OpenSSL's first queued reason
 * (if any); empties OpenSSL's error queue.  Returns code. */
int pki_fail(int code, char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The algorithm of a key, -1 when neither SM2 nor Ed25519. */
int pki_alg_of(const EVP_PKEY *pkey);

/* A DigestSign / DigestVerify context for key's algorithm: SM3 and
 * PKI_SM2_ID for SM2 (id 0: the empty ID, for CRLs), no digest for
 * Ed25519.  NULL on failure. */
EVP_MD_CTX *pki_md_ctx(EVP_PKEY *pkey, int sign, int with_id);

/* Signs a certificate / CRL with key (the ID rule of pki.h). */
int pki_sign_cert(X509 *x, EVP_PKEY *key, char *err, size_t errlen);
int pki_sign_crl(X509_CRL *crl, EVP_PKEY *key, char *err, size_t errlen);
/* 1 when issuer's key signed crl, with the GM/T ID or the empty one. */
int pki_crl_signed_by(X509_CRL *crl, X509 *issuer);
/* Sets PKI_SM2_ID on a certificate signed with SM2 (for X509_verify_cert). */
int pki_cert_set_id(X509 *x);

/* UTF-8 of one subject/issuer attribute (NID), "" when absent. */
void pki_name_get(const X509_NAME *name, int nid, char *out, size_t n);
time_t pki_asn1_time(const ASN1_TIME *t); /* 0 when unreadable */

/* Whole small files: read (capped at PKI_PEM_MAX) and written atomically
 * (temporary file, fsync, rename) with mode; excl refuses to replace. */
int pki_read_file(const char *path, char **out, size_t *len);
int pki_write_file(const char *path, const void *p, size_t n, int mode, int excl);

#endif

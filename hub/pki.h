/* pki.h — X.509 for signed reports (DESIGN.md §6), through OpenSSL 3.
 * Hub-private.  The pki*.c files are the only ones that include OpenSSL's
 * X.509 headers or sign with EVP (hub/digest.c hashes with EVP on its own).
 *
 * Algorithms: SM2 signatures over SM3 (GB/T 32918, the default) or Ed25519.
 *
 * SM2 and its distinguishing ID, as OpenSSL 3.0 does it (measured with
 * 3.0.x, see docs/verify-with-openssl.md): an SM2 signature hashes
 * Z = SM3(ENTL || ID || curve || public key) before the message.  OpenSSL
 * 3.0 uses an *empty* ID unless one is set on the context, whereas
 * GM/T 0009 says "1234567812345678".  So:
 *   - report signatures and certificate signatures use PKI_SM2_ID, set on
 *     every signing and verifying context (EVP_PKEY_CTX_set1_id,
 *     X509_set0_distinguishing_id; `openssl verify -vfyopt distid:...`,
 *     `openssl pkeyutl -pkeyopt distid:...`);
 *   - CRLs are signed with the empty ID, because OpenSSL 3.0 verifies CRL
 *     signatures without one and offers no way to set it (X509_CRL_verify,
 *     `openssl crl -verify`, `openssl verify -crl_check`).  pki_trust
 *     accepts a CRL signed either way, so a GM/T-conformant CA's CRLs work.
 *
 * Files (pki_ca_*): a CA directory holds ca.key (mode 0600; PKCS#8,
 * AES-256 when a passphrase is given), ca.pem, crl.pem (the CRL, re-signed
 * at every change), serials.txt (one line per issued certificate) and
 * issued/SERIAL.pem.  A reader's directory gets ID.key (PKCS#8, AES-256,
 * always encrypted), ID.pem and ID.chain.pem (its certificate, then the CA).
 * A trust list is a directory of CA certificates and CRLs (pki_trust_load).
 *
 * Errors: 0 or a negative PKI_E* code (or -errno), the reason in the
 * caller's err buffer.  Messages never carry a passphrase or key bytes.
 */
#ifndef DXHUB_PKI_H
#define DXHUB_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum pki_error {
    PKI_OK         = 0,
    PKI_EINVAL     = -5001, /* bad argument */
    PKI_EFORMAT    = -5002, /* not a key / certificate / CRL we can read */
    PKI_ECRYPTO    = -5003, /* OpenSSL failed (the reason says where) */
    PKI_EPASS      = -5004, /* no passphrase, or a wrong one */
    PKI_ESIG       = -5005, /* signature does not verify */
    PKI_EUNTRUSTED = -5006, /* issuer not in the trust list */
    PKI_EREVOKED   = -5007, /* certificate revoked */
    PKI_EEXPIRED   = -5008, /* certificate expired */
    PKI_ENOTYET    = -5009, /* certificate not yet valid */
    PKI_ECHAIN     = -5010, /* chain invalid otherwise (bad CA signature, not a CA, key usage) */
    PKI_ENOCRL     = -5011, /* no usable CRL for an issuer */
    PKI_ESTALECRL  = -5012, /* the issuer's CRL is past its nextUpdate */
    PKI_EEXIST     = -5013, /* would overwrite a key or certificate */
    PKI_EALG       = -5014, /* algorithm not supported */
};
const char *pki_strerror(int code);

typedef enum pki_alg { PKI_SM2 = 0, PKI_ED25519 = 1 } pki_alg;
const char *pki_alg_name(pki_alg a);  /* "sm2-sm3", "ed25519" */
int         pki_alg_parse(const char *s); /* "sm2", "sm2-sm3", "ed25519"; -1 unknown */

#define PKI_SM2_ID     "1234567812345678" /* GM/T 0009 default distinguishing ID */
#define PKI_SIG_MAX    128                /* SM2 DER <= 72 bytes, Ed25519 64 */
#define PKI_CHAIN_MAX  8                  /* certificates in a chain */
#define PKI_PEM_MAX    (256 * 1024)       /* bytes of a chain, key or CRL file */

/* --- passphrases ------------------------------------------------------------ */

/* Where a passphrase comes from, tried in this order; asked only when a
 * key needs one.  Never stored in clear; callers OPENSSL_cleanse their
 * copies through pki_pass_wipe. */
typedef struct pki_pass_src {
    const char *literal;  /* in memory (tests, benchmarks) */
    const char *file;     /* the first line of this file */
    const char *env;      /* this environment variable (e.g. "DXHUB_PASSPHRASE") */
    const char *prompt;   /* ask on the terminal, no echo; NULL: never ask */
    int         confirm;  /* a new key: ask twice, refuse a mismatch */
} pki_pass_src;

#define PKI_PASS_MAX 1024
/* Into buf (n >= 2): returns the length, PKI_EPASS when no source gives
 * one (or it is empty), -errno on I/O. */
int  pki_pass_get(const pki_pass_src *src, char *buf, size_t n, char *err, size_t errlen);
void pki_pass_wipe(void *buf, size_t n);

/* --- keys --------------------------------------------------------------------- */

typedef struct pki_key pki_key;

int     pki_key_generate(pki_alg alg, pki_key **out, char *err, size_t errlen);
/* PKCS#8 PEM; encrypted (PBES2, AES-256-CBC, PBKDF2) when pass_len > 0.
 * Mode 0600, written to a temporary file and renamed; refuses (PKI_EEXIST)
 * to replace an existing file. */
int     pki_key_save(const pki_key *k, const char *path, const char *pass, size_t pass_len, char *err,
                     size_t errlen);
/* Reads a PEM private key; asks pass for a passphrase only if it is
 * encrypted (pass may be NULL for an unencrypted key). */
int     pki_key_load(const char *path, const pki_pass_src *pass, pki_key **out, char *err, size_t errlen);
void    pki_key_free(pki_key **k); /* NULL-safe; NULLs *k */
/* Once per process, before loading a key that stays in memory: OpenSSL's
 * secure heap (mlock'd, guard pages, never in a core dump), where it keeps
 * private key numbers.  Best effort: without it keys live on the normal heap. */
void    pki_secure_heap(void);
pki_alg pki_key_alg(const pki_key *k);

/* A detached raw signature over exactly data[0..len): SM2 with SM3 and
 * PKI_SM2_ID (DER, as `openssl pkeyutl -sign -rawin -digest sm3 -pkeyopt
 * distid:1234567812345678` writes it) or Ed25519 (64 bytes).  sig holds
 * PKI_SIG_MAX bytes; *sig_len gets the length. */
int     pki_sign(const pki_key *k, const void *data, size_t len, uint8_t sig[PKI_SIG_MAX], size_t *sig_len,
                 char *err, size_t errlen);

/* --- certificate chains ----------------------------------------------------- */

typedef struct pki_chain pki_chain;

/* A PEM chain, signer's certificate first (at most PKI_CHAIN_MAX). */
int  pki_chain_parse(const void *pem, size_t len, pki_chain **out, char *err, size_t errlen);
int  pki_chain_load(const char *path, pki_chain **out, char *err, size_t errlen);
void pki_chain_free(pki_chain **c); /* NULL-safe; NULLs *c */
/* The same certificates, shared (each one's reference count raised), for a
 * caller that keeps a parsed chain and hands out copies: no parsing.  NULL
 * when out of memory. */
pki_chain *pki_chain_dup(const pki_chain *c);

/* Who a certificate names (the first of the chain).  Strings are UTF-8. */
typedef struct pki_identity {
    char    name[256];     /* CN */
    char    reader_id[64]; /* UID (0.9.2342.19200300.100.1.1) */
    char    role[64];      /* title (2.5.4.12) */
    char    facility[128]; /* O */
    char    issuer[256];   /* the issuer's CN */
    char    serial[80];    /* hex */
    char    alg[16];       /* the subject key's signature algorithm, pki_alg_name */
    time_t  not_before, not_after;
} pki_identity;
int  pki_chain_identity(const pki_chain *c, pki_identity *out);
/* 1 when key is the private half of the chain's first certificate. */
int  pki_chain_matches_key(const pki_chain *c, const pki_key *k);
/* Checks a pki_sign signature with the first certificate's public key:
 * 0, or PKI_ESIG. */
int  pki_chain_verify_data(const pki_chain *c, const void *data, size_t len, const void *sig, size_t sig_len,
                           char *err, size_t errlen);

/* --- trust list ------------------------------------------------------------- */

typedef struct pki_trust pki_trust;

/* Loads every *.pem, *.crt, *.cer and *.crl file in dir and in its
 * immediate subdirectories: CA certificates (basicConstraints CA:TRUE)
 * become trust anchors, CRLs are kept when an anchor's key signed them
 * (other certificates and unverifiable CRLs are skipped).  Needs at least
 * one CA.  Reference counted: pki_trust_ref / pki_trust_free. */
int        pki_trust_load(const char *dir, pki_trust **out, char *err, size_t errlen);
pki_trust *pki_trust_ref(pki_trust *t);
void       pki_trust_free(pki_trust **t); /* drops a reference; NULLs *t */
void       pki_trust_counts(const pki_trust *t, size_t *cas, size_t *crls);

/* When the trust list starts refusing what it accepts now, unless someone
 * acts: the earliest of each CA's end (notAfter) and its newest CRL's
 * nextUpdate.  at: that moment (seconds since the epoch; past when it has
 * come already; 0 when a CA has no CRL at all, so nothing under it is
 * accepted).  -1 with an empty list. */
typedef struct pki_trust_deadline {
    int64_t at;
    bool    crl;       /* a CRL's nextUpdate (re-sign and publish it), else a CA's end (a new CA certificate) */
    char    ca[128];   /* the CA's common name */
} pki_trust_deadline;
int pki_trust_deadline_of(const pki_trust *t, pki_trust_deadline *out);

/* The chain's first certificate at time at: a path to an anchor
 * (PKI_EUNTRUSTED, PKI_ECHAIN), every certificate on it within its
 * validity (PKI_EEXPIRED, PKI_ENOTYET), none revoked by its issuer's CRL
 * (PKI_EREVOKED; PKI_ENOCRL when an issuer has none, PKI_ESTALECRL when
 * its newest is past nextUpdate).  why gets a one-line reason. */
int pki_trust_check(const pki_trust *t, const pki_chain *c, time_t at, char *why, size_t whylen);

/* --- a facility CA ------------------------------------------------------------ */

/* Makes dir (0700) with ca.key, ca.pem (CN "<facility> reader CA",
 * O facility; CA:TRUE, pathlen 0, keyCertSign + cRLSign) and an empty
 * crl.pem valid crl_days.  ca.key is encrypted when pass_len > 0. */
int pki_ca_init(const char *dir, pki_alg alg, const char *facility, time_t not_before, time_t not_after,
                int crl_days, const char *pass, size_t pass_len, char *err, size_t errlen);

typedef struct pki_reader_spec {
    const char *reader_id; /* [A-Za-z0-9._-], 1..63: also the file name */
    const char *name;      /* UTF-8, e.g. "王伟" */
    const char *role;      /* resident, attending, chief, ... */
    const char *facility;  /* NULL: the CA's; else must equal it */
    pki_alg     alg;
    time_t      not_before, not_after; /* not_after may be in the past (tests) */
} pki_reader_spec;
/* Issues a reader certificate from cadir's CA (its key's passphrase from
 * ca_pass when encrypted): a new key pair saved as outdir/ID.key
 * encrypted with pass (required), outdir/ID.pem, outdir/ID.chain.pem; a
 * copy in cadir/issued/.  serial (may be NULL) gets the hex serial. */
int pki_ca_issue(const char *cadir, const pki_pass_src *ca_pass, const pki_reader_spec *spec, const char *outdir,
                 const char *pass, size_t pass_len, char serial[80], char *err, size_t errlen);
/* Adds the certificate to cadir/crl.pem (it must be this CA's) and
 * re-signs it: lastUpdate now, nextUpdate now + crl_days, CRL number + 1.
 * cert_path NULL: re-sign only (publish a fresh CRL).  Returns 0, or 1
 * when the certificate was already revoked (the CRL is re-signed anyway). */
int pki_ca_revoke(const char *cadir, const pki_pass_src *ca_pass, const char *cert_path, time_t now, int crl_days,
                  char *err, size_t errlen);

/* --- the HTTP API's TLS identity --------------------------------------------------- */

typedef struct pki_tls_server {
    char   *cert_pem;  /* the certificate file as read (its chain may follow) */
    char   *key_pem;   /* the key as PKCS#8 PEM, wiped when freed */
    int64_t not_after; /* the certificate's end of validity, Unix seconds */
} pki_tls_server;
/* Reads and checks a server certificate and its unencrypted private key
 * (the HTTP API's through GnuTLS, the DICOM port's through DCMTK): the key
 * not readable by every user, of a type TLS clients accept (RSA >= 2048,
 * ECDSA P-256/384/521, Ed25519; not SM2), the certificate's own key, and
 * the certificate valid at now.  The reason names the setting (setting
 * "tls" gives tls-cert, tls-key) and the file. */
int  pki_tls_server_load(const char *setting, const char *cert_file, const char *key_file, time_t now,
                         pki_tls_server *out, char *err, size_t errlen);
void pki_tls_server_free(pki_tls_server *t); /* NULL-safe */
/* "CN=<common name>, serial <hex>" of a DER certificate (a TLS peer's),
 * for the log and the audit; "unreadable certificate" when it is not one. */
void pki_der_subject(const void *der, size_t len, char *out, size_t n);

#endif

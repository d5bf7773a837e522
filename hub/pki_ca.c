/* pki_ca.c — a facility's CA on disk: create it, issue reader
 * certificates, revoke them through its CRL (file layout in pki.h). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hub/pki_private.h"
#include "codecs/banned.h"

#define NAME_MAX_BYTES 200 /* a CN's UTF-8 bytes (X.520 allows 64 characters) */

static int mkdir_private(const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

static int path_in(char *out, size_t n, const char *dir, const char *name)
{
    return snprintf(out, n, "%s/%s", dir, name) < (int)n ? 0 : -ENAMETOOLONG;
}

static int set_time(X509 *x, time_t nb, time_t na)
{
    ASN1_TIME *a = ASN1_TIME_set(NULL, nb), *b = ASN1_TIME_set(NULL, na);
    int ok = a && b && X509_set1_notBefore(x, a) && X509_set1_notAfter(x, b);
    ASN1_TIME_free(a);
    ASN1_TIME_free(b);
    return ok;
}

/* A positive random 127-bit serial (RFC 5280 §4.1.2.2: at most 20 octets). */
static int set_serial(X509 *x)
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1)
        return 0;
    r[0] = (unsigned char)((r[0] & 0x7f) | 0x40);
    BIGNUM *bn = BN_bin2bn(r, sizeof r, NULL);
    ASN1_INTEGER *s = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    int ok = s && X509_set_serialNumber(x, s);
    ASN1_INTEGER_free(s);
    BN_free(bn);
    return ok;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = e && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok;
}

static int add_name(X509_NAME *n, int nid, const char *utf8)
{
    return X509_NAME_add_entry_by_NID(n, nid, MBSTRING_UTF8, (const unsigned char *)utf8, -1, -1, 0);
}

static char *pem_of_cert(X509 *x, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b && PEM_write_bio_X509(b, x)) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        out = malloc((size_t)n + 1);
        if (out) {
            memcpy(out, p, (size_t)n);
            out[n] = '\0';
            *len = (size_t)n;
        }
    }
    BIO_free(b);
    return out;
}

static int write_cert(const char *path, X509 *x, int excl, char *err, size_t errlen)
{
    size_t n = 0;
    char *pem = pem_of_cert(x, &n);
    if (!pem)
        return pki_fail(PKI_ECRYPTO, err, errlen, "%s: encoding the certificate failed", path);
    int rc = pki_write_file(path, pem, n, 0644, excl);
    free(pem);
    if (rc == PKI_EEXIST)
        return pki_fail(rc, err, errlen, "%s exists: refusing to replace it", path);
    return rc < 0 ? pki_fail(rc, err, errlen, "%s: %s", path, strerror(-rc)) : 0;
}

static int write_crl(const char *path, X509_CRL *crl, char *err, size_t errlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_X509_CRL(b, crl)) {
        BIO_free(b);
        return pki_fail(PKI_ECRYPTO, err, errlen, "%s: encoding the CRL failed", path);
    }
    char *p;
    long n = BIO_get_mem_data(b, &p);
    int rc = pki_write_file(path, p, (size_t)n, 0644, 0);
    BIO_free(b);
    return rc < 0 ? pki_fail(rc, err, errlen, "%s: %s", path, strerror(-rc)) : 0;
}

static int load_cert(const char *path, X509 **out, char *err, size_t errlen)
{
    pki_chain *c = NULL;
    int rc = pki_chain_load(path, &c, err, errlen);
    if (rc < 0)
        return rc;
    *out = c->certs[0];
    X509_up_ref(*out);
    pki_chain_free(&c);
    return 0;
}

static int load_crl(const char *path, X509_CRL **out, char *err, size_t errlen)
{
    char *p = NULL;
    size_t len = 0;
    int rc = pki_read_file(path, &p, &len);
    if (rc < 0)
        return pki_fail(rc, err, errlen, "%s: %s", path, strerror(-rc));
    BIO *b = BIO_new_mem_buf(p, (int)len);
    *out = b ? PEM_read_bio_X509_CRL(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    free(p);
    return *out ? 0 : pki_fail(PKI_EFORMAT, err, errlen, "%s: not a PEM CRL", path);
}

/* Sets the times, the CRL number and the issuer's key id, sorts and signs. */
static int crl_finish(X509_CRL *crl, X509 *ca, EVP_PKEY *key, long number, time_t now, int crl_days, char *err,
                      size_t errlen)
{
    ASN1_TIME *last = ASN1_TIME_set(NULL, now), *next = ASN1_TIME_set(NULL, now + (time_t)crl_days * 86400);
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    int ok = last && next && num && ASN1_INTEGER_set(num, number) && X509_CRL_set1_lastUpdate(crl, last) &&
             X509_CRL_set1_nextUpdate(crl, next);
    int i;
    while (ok && (i = X509_CRL_get_ext_by_NID(crl, NID_crl_number, -1)) >= 0)
        X509_EXTENSION_free(X509_CRL_delete_ext(crl, i));
    ok = ok && X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0);
    if (ok && X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier, -1) < 0) {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, ca, NULL, NULL, crl, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        ok = e && X509_CRL_add_ext(crl, e, -1);
        X509_EXTENSION_free(e);
    }
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    ASN1_INTEGER_free(num);
    if (!ok)
        return pki_fail(PKI_ECRYPTO, err, errlen, "building the CRL failed");
    X509_CRL_sort(crl);
    return pki_sign_crl(crl, key, err, errlen);
}

int pki_ca_init(const char *dir, pki_alg alg, const char *facility, time_t not_before, time_t not_after,
                int crl_days, const char *pass, size_t pass_len, char *err, size_t errlen)
{
    if (!dir || !facility || !facility[0] || strlen(facility) > 64)
        return pki_fail(PKI_EINVAL, err, errlen, "a facility (1..64 bytes) is required");
    if (not_after <= not_before || crl_days <= 0)
        return pki_fail(PKI_EINVAL, err, errlen, "validity must be positive");
    char kp[4200], cp[4200], lp[4200];
    if (path_in(kp, sizeof kp, dir, "ca.key") || path_in(cp, sizeof cp, dir, "ca.pem") ||
        path_in(lp, sizeof lp, dir, "crl.pem"))
        return pki_fail(-ENAMETOOLONG, err, errlen, "%s: path too long", dir);
    int rc = mkdir_private(dir);
    if (rc < 0)
        return pki_fail(rc, err, errlen, "%s: %s", dir, strerror(-rc));
    if (access(kp, F_OK) == 0 || access(cp, F_OK) == 0)
        return pki_fail(PKI_EEXIST, err, errlen, "%s already holds a CA: refusing to replace it", dir);

    pki_key *key = NULL;
    X509 *x = NULL;
    X509_CRL *crl = NULL;
    if ((rc = pki_key_generate(alg, &key, err, errlen)) < 0)
        return rc;
    char cn[128];
    snprintf(cn, sizeof cn, "%s reader CA", facility);
    x = X509_new();
    X509_NAME *name = X509_NAME_new();
    int ok = x && name && add_name(name, NID_organizationName, facility) && add_name(name, NID_commonName, cn) &&
             X509_set_version(x, X509_VERSION_3) && set_serial(x) && X509_set_subject_name(x, name) &&
             X509_set_issuer_name(x, name) && set_time(x, not_before, not_after) && X509_set_pubkey(x, key->pkey) &&
             add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
             add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(x, x, NID_subject_key_identifier, "hash") &&
             add_ext(x, x, NID_authority_key_identifier, "keyid:always");
    X509_NAME_free(name);
    if (!ok) {
        rc = pki_fail(PKI_ECRYPTO, err, errlen, "building the CA certificate failed");
        goto out;
    }
    if ((rc = pki_sign_cert(x, key->pkey, err, errlen)) < 0)
        goto out;
    crl = X509_CRL_new();
    if (!crl || !X509_CRL_set_version(crl, 1) || !X509_CRL_set_issuer_name(crl, X509_get_subject_name(x))) {
        rc = pki_fail(PKI_ECRYPTO, err, errlen, "building the CRL failed");
        goto out;
    }
    if ((rc = crl_finish(crl, x, key->pkey, 1, not_before, crl_days, err, errlen)) < 0)
        goto out;
    if ((rc = pki_key_save(key, kp, pass, pass_len, err, errlen)) < 0)
        goto out;
    if ((rc = write_cert(cp, x, 1, err, errlen)) < 0 || (rc = write_crl(lp, crl, err, errlen)) < 0) {
        unlink(kp);
        unlink(cp);
        goto out;
    }
out:
    X509_CRL_free(crl);
    X509_free(x);
    pki_key_free(&key);
    return rc;
}

static int valid_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63 || s[0] == '.' || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static int valid_text(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

/* The CA's certificate and key, checked to belong together. */
static int load_ca(const char *cadir, const pki_pass_src *ca_pass, X509 **ca, pki_key **key, char *err,
                   size_t errlen)
{
    char cp[4200], kp[4200];
    if (path_in(cp, sizeof cp, cadir, "ca.pem") || path_in(kp, sizeof kp, cadir, "ca.key"))
        return pki_fail(-ENAMETOOLONG, err, errlen, "%s: path too long", cadir);
    int rc = load_cert(cp, ca, err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = pki_key_load(kp, ca_pass, key, err, errlen)) < 0) {
        X509_free(*ca);
        *ca = NULL;
        return rc;
    }
    if (X509_check_private_key(*ca, (*key)->pkey) != 1) {
        X509_free(*ca);
        pki_key_free(key);
        *ca = NULL;
        return pki_fail(PKI_EINVAL, err, errlen, "%s: ca.key is not the key of ca.pem", cadir);
    }
    return 0;
}

static void record_issued(const char *cadir, X509 *x, const char *serial, const pki_reader_spec *spec)
{
    char dir[4200], path[4400];
    if (path_in(dir, sizeof dir, cadir, "issued") || mkdir_private(dir) < 0)
        return;
    snprintf(path, sizeof path, "%s/%s.pem", dir, serial);
    char e[64];
    write_cert(path, x, 1, e, sizeof e);
    if (path_in(path, sizeof path, cadir, "serials.txt"))
        return;
    FILE *fp = fopen(path, "a");
    if (!fp)
        return;
    char until[32] = "";
    struct tm tm;
    if (gmtime_r(&spec->not_after, &tm))
        strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(fp, "%s %s %s %s %s\n", serial, spec->reader_id, spec->role, until, spec->name);
    fclose(fp);
}

int pki_ca_issue(const char *cadir, const pki_pass_src *ca_pass, const pki_reader_spec *spec, const char *outdir,
                 const char *pass, size_t pass_len, char serial[80], char *err, size_t errlen)
{
    if (!spec || !valid_id(spec->reader_id))
        return pki_fail(PKI_EINVAL, err, errlen, "reader id must be 1..63 of A-Z a-z 0-9 . _ - (not starting with . or -)");
    if (!valid_text(spec->name, NAME_MAX_BYTES) || !valid_text(spec->role, 63))
        return pki_fail(PKI_EINVAL, err, errlen, "name (1..%d bytes) and role (1..63) are required, one line each",
                        NAME_MAX_BYTES);
    if (spec->facility && !valid_text(spec->facility, 64))
        return pki_fail(PKI_EINVAL, err, errlen, "facility must be 1..64 bytes");
    if (spec->not_after <= spec->not_before)
        return pki_fail(PKI_EINVAL, err, errlen, "notAfter must follow notBefore");
    if (!pass || !pass_len)
        return pki_fail(PKI_EPASS, err, errlen, "a reader's key is always encrypted: a passphrase is required");
    char kp[4200], cp[4200], chp[4200], fname[80];
    snprintf(fname, sizeof fname, "%s.key", spec->reader_id);
    int rc = mkdir_private(outdir);
    if (rc < 0)
        return pki_fail(rc, err, errlen, "%s: %s", outdir, strerror(-rc));
    int toolong = path_in(kp, sizeof kp, outdir, fname);
    snprintf(fname, sizeof fname, "%s.pem", spec->reader_id);
    toolong |= path_in(cp, sizeof cp, outdir, fname);
    snprintf(fname, sizeof fname, "%s.chain.pem", spec->reader_id);
    toolong |= path_in(chp, sizeof chp, outdir, fname);
    if (toolong)
        return pki_fail(-ENAMETOOLONG, err, errlen, "%s: path too long", outdir);
    if (access(kp, F_OK) == 0 || access(cp, F_OK) == 0 || access(chp, F_OK) == 0)
        return pki_fail(PKI_EEXIST, err, errlen, "%s already holds %s's key or certificate: refusing to replace them",
                        outdir, spec->reader_id);

    X509 *ca = NULL, *x = NULL;
    pki_key *cakey = NULL, *key = NULL;
    if ((rc = load_ca(cadir, ca_pass, &ca, &cakey, err, errlen)) < 0)
        return rc;
    char ca_facility[128];
    pki_name_get(X509_get_subject_name(ca), NID_organizationName, ca_facility, sizeof ca_facility);
    const char *facility = spec->facility ? spec->facility : ca_facility;
    if (spec->facility && strcmp(spec->facility, ca_facility)) {
        rc = pki_fail(PKI_EINVAL, err, errlen, "facility %s differs from the CA's (%s)", spec->facility, ca_facility);
        goto out;
    }
    if ((rc = pki_key_generate(spec->alg, &key, err, errlen)) < 0)
        goto out;
    x = X509_new();
    X509_NAME *name = X509_NAME_new();
    int ok = x && name && add_name(name, NID_organizationName, facility) && add_name(name, NID_title, spec->role) &&
             add_name(name, NID_userId, spec->reader_id) && add_name(name, NID_commonName, spec->name) &&
             X509_set_version(x, X509_VERSION_3) && set_serial(x) && X509_set_subject_name(x, name) &&
             X509_set_issuer_name(x, X509_get_subject_name(ca)) &&
             set_time(x, spec->not_before, spec->not_after) && X509_set_pubkey(x, key->pkey) &&
             add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, ca, NID_key_usage, "critical,digitalSignature,nonRepudiation") &&
             add_ext(x, ca, NID_subject_key_identifier, "hash") &&
             add_ext(x, ca, NID_authority_key_identifier, "keyid:always");
    X509_NAME_free(name);
    if (!ok) {
        rc = pki_fail(PKI_EINVAL, err, errlen, "building the reader certificate failed");
        goto out;
    }
    if ((rc = pki_sign_cert(x, cakey->pkey, err, errlen)) < 0)
        goto out;
    char sn[80];
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(sn, sizeof sn, "%s", hex ? hex : "0");
    OPENSSL_free(hex);
    BN_free(bn);

    if ((rc = pki_key_save(key, kp, pass, pass_len, err, errlen)) < 0)
        goto out;
    size_t n1 = 0, n2 = 0;
    char *p1 = pem_of_cert(x, &n1), *p2 = pem_of_cert(ca, &n2), *both = NULL;
    if (p1 && p2 && (both = malloc(n1 + n2)) != NULL) {
        memcpy(both, p1, n1);
        memcpy(both + n1, p2, n2);
    }
    rc = !both ? -ENOMEM : pki_write_file(cp, p1, n1, 0644, 1);
    if (!rc)
        rc = pki_write_file(chp, both, n1 + n2, 0644, 1);
    free(p1);
    free(p2);
    free(both);
    if (rc < 0) {
        unlink(kp);
        unlink(cp);
        rc = pki_fail(rc, err, errlen, "%s: writing the certificate failed: %s", outdir, pki_strerror(rc));
        goto out;
    }
    record_issued(cadir, x, sn, spec);
    if (serial)
        snprintf(serial, 80, "%s", sn);
out:
    X509_free(x);
    X509_free(ca);
    pki_key_free(&key);
    pki_key_free(&cakey);
    return rc;
}

int pki_ca_revoke(const char *cadir, const pki_pass_src *ca_pass, const char *cert_path, time_t now, int crl_days,
                  char *err, size_t errlen)
{
    if (crl_days <= 0)
        return pki_fail(PKI_EINVAL, err, errlen, "CRL validity must be positive");
    char lp[4200];
    if (path_in(lp, sizeof lp, cadir, "crl.pem"))
        return pki_fail(-ENAMETOOLONG, err, errlen, "%s: path too long", cadir);
    X509 *ca = NULL, *x = NULL;
    X509_CRL *crl = NULL;
    pki_key *key = NULL;
    int rc = 0, already = 0;
    /* Check the certificate before asking for the CA's passphrase. */
    if (cert_path && (rc = load_cert(cert_path, &x, err, errlen)) < 0)
        return rc;
    char cp[4200];
    if (path_in(cp, sizeof cp, cadir, "ca.pem")) {
        rc = pki_fail(-ENAMETOOLONG, err, errlen, "%s: path too long", cadir);
        goto out;
    }
    if ((rc = load_cert(cp, &ca, err, errlen)) < 0)
        goto out;
    if (x) {
        if (X509_check_issued(ca, x) != X509_V_OK || X509_verify(x, X509_get0_pubkey(ca)) != 1) {
            rc = pki_fail(PKI_EINVAL, err, errlen, "%s was not issued by %s/ca.pem", cert_path, cadir);
            goto out;
        }
    }
    if ((rc = load_crl(lp, &crl, err, errlen)) < 0)
        goto out;
    if (!pki_crl_signed_by(crl, ca)) {
        rc = pki_fail(PKI_EFORMAT, err, errlen, "%s is not signed by this CA", lp);
        goto out;
    }
    X509_free(ca);
    ca = NULL;
    if ((rc = load_ca(cadir, ca_pass, &ca, &key, err, errlen)) < 0)
        goto out;
    X509_REVOKED *prev = NULL;
    if (x && X509_CRL_get0_by_serial(crl, &prev, X509_get0_serialNumber(x)) == 1)
        already = 1;
    if (x && !already) {
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_TIME *when = ASN1_TIME_set(NULL, now);
        int ok = r && when && X509_REVOKED_set_serialNumber(r, (ASN1_INTEGER *)X509_get0_serialNumber(x)) &&
                 X509_REVOKED_set_revocationDate(r, when) && X509_CRL_add0_revoked(crl, r);
        ASN1_TIME_free(when);
        if (!ok) {
            X509_REVOKED_free(r);
            rc = pki_fail(PKI_ECRYPTO, err, errlen, "adding the certificate to the CRL failed");
            goto out;
        }
    }
    long number = 1;
    ASN1_INTEGER *cur = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    if (cur) {
        number = ASN1_INTEGER_get(cur) + 1;
        ASN1_INTEGER_free(cur);
    }
    if ((rc = crl_finish(crl, ca, key->pkey, number, now, crl_days, err, errlen)) < 0)
        goto out;
    rc = write_crl(lp, crl, err, errlen);
    if (!rc && already)
        rc = 1;
out:
    X509_CRL_free(crl);
    X509_free(x);
    X509_free(ca);
    pki_key_free(&key);
    ERR_clear_error();
    return rc;
}

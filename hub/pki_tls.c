/* pki_tls.c — a TLS server's identity (pki.h): the HTTP API's or a DICOM
 * port's certificate and unencrypted private key, checked here with
 * OpenSSL so that a wrong file stops the role with a reason before
 * libmicrohttpd's GnuTLS (or DCMTK, at the first handshake) would refuse
 * it with none. */
#include <errno.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "hub/pki_private.h"
#include "codecs/banned.h"

/* No passphrase prompt: the hub starts unattended (systemd), so an
 * encrypted key must fail to load rather than wait on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

/* GnuTLS serves RSA, ECDSA on the NIST curves and Ed25519, and so do the
 * clients that will connect; SM2 (the reports' default) is not standard
 * TLS, so it is named here, not at the first handshake. */
static int key_servable(EVP_PKEY *k, char *what, size_t n)
{
    if (EVP_PKEY_is_a(k, "SM2")) {
        snprintf(what, n, "an SM2 key, which standard TLS does not serve (SM2 is for report signatures; "
                          "use ECDSA P-256, RSA or Ed25519)");
        return 0;
    }
    if (EVP_PKEY_is_a(k, "RSA")) {
        if (EVP_PKEY_get_bits(k) < 2048) {
            snprintf(what, n, "an RSA key of %d bits (2048 at least)", EVP_PKEY_get_bits(k));
            return 0;
        }
        return 1;
    }
    if (EVP_PKEY_is_a(k, "EC")) {
        char curve[64] = "";
        size_t cl = 0;
        EVP_PKEY_get_utf8_string_param(k, "group", curve, sizeof curve, &cl);
        if (strcmp(curve, "prime256v1") && strcmp(curve, "secp384r1") && strcmp(curve, "secp521r1")) {
            snprintf(what, n, "an EC key on curve '%s' (use P-256, P-384 or P-521)", curve);
            return 0;
        }
        return 1;
    }
    if (EVP_PKEY_is_a(k, "ED25519"))
        return 1;
    snprintf(what, n, "a %s key (use ECDSA P-256, RSA or Ed25519)", EVP_PKEY_get0_type_name(k));
    return 0;
}

static int read_pem(const char *path, const char *setting, const char *what, char **out, size_t *len, char *err,
                    size_t errlen)
{
    int rc = pki_read_file(path, out, len);
    if (rc < 0)
        return pki_fail(rc == -EFBIG ? PKI_EFORMAT : rc, err, errlen, "%s-%s %s: %s", setting, what, path,
                        rc == -EFBIG ? "larger than a PEM file of this kind may be" : strerror(-rc));
    return 0;
}

int pki_tls_server_load(const char *setting, const char *cert_file, const char *key_file, time_t now,
                        pki_tls_server *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct stat ks;
    if (stat(key_file, &ks) < 0)
        return pki_fail(-errno, err, errlen, "%s-key %s: %s", setting, key_file, strerror(errno));
    /* What ssh does with a private key: anyone on the host could read it
     * and impersonate the hub.  Group read stays allowed (Debian's
     * ssl-cert group). */
    if (S_ISREG(ks.st_mode) && (ks.st_mode & 0007))
        return pki_fail(PKI_EINVAL, err, errlen, "%s-key %s is readable by every user of this machine (mode %04o): "
                        "chmod o-rwx it", setting, key_file, (unsigned)(ks.st_mode & 07777));
    char *cert_pem = NULL, *key_pem = NULL;
    size_t cert_len = 0, key_len = 0;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    BIO *b = NULL, *w = NULL;
    int rc = read_pem(cert_file, setting, "cert", &cert_pem, &cert_len, err, errlen);
    if (rc < 0 || (rc = read_pem(key_file, setting, "key", &key_pem, &key_len, err, errlen)) < 0)
        goto done;
    if (!(b = BIO_new_mem_buf(cert_pem, (int)cert_len)) || !(cert = PEM_read_bio_X509(b, NULL, no_passphrase, NULL))) {
        rc = pki_fail(PKI_EFORMAT, err, errlen, "%s-cert %s: no PEM certificate in it", setting, cert_file);
        goto done;
    }
    BIO_free(b);
    if (!(b = BIO_new_mem_buf(key_pem, (int)key_len)) || !(key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL))) {
        rc = pki_fail(PKI_EFORMAT, err, errlen,
                      "%s-key %s: not an unencrypted PEM private key (the service starts unattended: "
                      "store the key without a passphrase, readable by the service only)", setting, key_file);
        goto done;
    }
    char what[160];
    if (!key_servable(key, what, sizeof what)) {
        rc = pki_fail(PKI_EALG, err, errlen, "%s-key %s is %s", setting, key_file, what);
        goto done;
    }
    if (X509_check_private_key(cert, key) != 1) {
        ERR_clear_error();
        rc = pki_fail(PKI_EINVAL, err, errlen, "%s-key %s is not the key of the certificate in %s-cert %s",
                      setting, key_file, setting, cert_file);
        goto done;
    }
    time_t not_before = pki_asn1_time(X509_get0_notBefore(cert));
    time_t not_after = pki_asn1_time(X509_get0_notAfter(cert));
    char day[32] = "";
    if (not_after && not_after <= now) {
        strftime(day, sizeof day, "%Y-%m-%d %H:%M UTC", gmtime(&not_after));
        rc = pki_fail(PKI_EEXPIRED, err, errlen, "%s-cert %s expired on %s", setting, cert_file, day);
        goto done;
    }
    if (not_before > now) {
        strftime(day, sizeof day, "%Y-%m-%d %H:%M UTC", gmtime(&not_before));
        rc = pki_fail(PKI_ENOTYET, err, errlen, "%s-cert %s is not valid before %s", setting, cert_file, day);
        goto done;
    }
    /* The key as PKCS#8 PEM, the one form every GnuTLS reads. */
    BUF_MEM *m;
    if (!(w = BIO_new(BIO_s_secmem())) || !PEM_write_bio_PrivateKey(w, key, NULL, NULL, 0, NULL, NULL) ||
        BIO_get_mem_ptr(w, &m) <= 0 || !(out->key_pem = OPENSSL_secure_malloc(m->length + 1))) {
        rc = pki_fail(PKI_ECRYPTO, err, errlen, "%s-key %s: cannot re-encode it", setting, key_file);
        goto done;
    }
    memcpy(out->key_pem, m->data, m->length);
    out->key_pem[m->length] = 0;
    out->cert_pem = cert_pem;
    cert_pem = NULL;
    out->not_after = (int64_t)not_after;
    rc = 0;
done:
    BIO_free(b);
    BIO_free(w);
    X509_free(cert);
    EVP_PKEY_free(key);
    free(cert_pem);
    if (key_pem)
        OPENSSL_cleanse(key_pem, key_len);
    free(key_pem);
    return rc;
}

void pki_der_subject(const void *der, size_t len, char *out, size_t n)
{
    const unsigned char *p = der;
    X509 *x = len <= LONG_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;
    if (!x) {
        ERR_clear_error();
        snprintf(out, n, "unreadable certificate");
        return;
    }
    char cn[128];
    pki_name_get(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    /* The name is the peer's to choose: no control characters in a log line. */
    for (char *c = cn; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(out, n, "CN=%s, serial %s", cn[0] ? cn : "(none)", hex ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
    X509_free(x);
}

void pki_tls_server_free(pki_tls_server *t)
{
    if (!t)
        return;
    free(t->cert_pem);
    if (t->key_pem)
        OPENSSL_secure_clear_free(t->key_pem, strlen(t->key_pem));
    memset(t, 0, sizeof *t);
}

/* pki_key.c — private keys (generate, save encrypted, load), raw report
 * signatures, and the helpers every pki file shares: errors, the signing
 * context with SM2's distinguishing ID, small files. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <pthread.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hub/pki_private.h"
#include "codecs/banned.h"

static const struct {
    int         code;
    const char *text;
} errors[] = {
    {PKI_OK, "success"},
    {PKI_EINVAL, "invalid argument"},
    {PKI_EFORMAT, "not a key, certificate or CRL that can be read"},
    {PKI_ECRYPTO, "cryptographic library failure"},
    {PKI_EPASS, "passphrase missing or wrong"},
    {PKI_ESIG, "signature does not verify"},
    {PKI_EUNTRUSTED, "issuer not in the consortium trust list"},
    {PKI_EREVOKED, "certificate revoked"},
    {PKI_EEXPIRED, "certificate expired"},
    {PKI_ENOTYET, "certificate not yet valid"},
    {PKI_ECHAIN, "certificate chain invalid"},
    {PKI_ENOCRL, "no revocation list for the issuer in the trust list"},
    {PKI_ESTALECRL, "the issuer's revocation list is out of date"},
    {PKI_EEXIST, "would replace an existing key or certificate"},
    {PKI_EALG, "algorithm not supported (sm2 or ed25519)"},
};

const char *pki_strerror(int code)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].code == code)
            return errors[i].text;
    return code < 0 && code > -4096 ? strerror(-code) : "unknown pki error";
}

int pki_fail(int code, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        unsigned long e = ERR_peek_error();
        const char *why = e ? ERR_reason_error_string(e) : NULL;
        if (why && k >= 0 && (size_t)k < errlen)
            snprintf(err + k, errlen - (size_t)k, " (%s)", why);
    }
    ERR_clear_error();
    return code;
}

const char *pki_alg_name(pki_alg a)
{
    return a == PKI_ED25519 ? "ed25519" : "sm2-sm3";
}

int pki_alg_parse(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "sm2") || !strcmp(s, "sm2-sm3") || !strcmp(s, "SM2"))
        return PKI_SM2;
    if (!strcmp(s, "ed25519") || !strcmp(s, "Ed25519") || !strcmp(s, "ED25519"))
        return PKI_ED25519;
    return -1;
}

int pki_alg_of(const EVP_PKEY *pkey)
{
    if (!pkey)
        return -1;
    if (EVP_PKEY_is_a(pkey, "SM2"))
        return PKI_SM2;
    if (EVP_PKEY_is_a(pkey, "ED25519"))
        return PKI_ED25519;
    return -1;
}

EVP_MD_CTX *pki_md_ctx(EVP_PKEY *pkey, int sign, int with_id)
{
    int alg = pki_alg_of(pkey);
    EVP_MD_CTX *md = alg < 0 ? NULL : EVP_MD_CTX_new();
    if (!md)
        return NULL;
    EVP_PKEY_CTX *pctx = NULL; /* owned by md */
    const char *mdname = alg == PKI_SM2 ? "SM3" : NULL;
    int ok = sign ? EVP_DigestSignInit_ex(md, &pctx, mdname, NULL, NULL, pkey, NULL)
                  : EVP_DigestVerifyInit_ex(md, &pctx, mdname, NULL, NULL, pkey, NULL);
    /* The ID goes on after init and before any data: SM2 hashes
     * Z(ID, key) ahead of the message at the first update. */
    if (ok > 0 && alg == PKI_SM2 && with_id)
        ok = EVP_PKEY_CTX_set1_id(pctx, PKI_SM2_ID, strlen(PKI_SM2_ID));
    if (ok <= 0) {
        EVP_MD_CTX_free(md);
        return NULL;
    }
    return md;
}

/* --- files ---------------------------------------------------------------------- */

/* Whole file, at most PKI_PEM_MAX bytes.  Not only a regular file: an
 * operator may give a passphrase as --passphrase-file <(pass show reader),
 * a pipe, or /dev/stdin. */
int pki_read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > PKI_PEM_MAX) {
        close(fd);
        return -EFBIG;
    }
    char *p = malloc(PKI_PEM_MAX + 2);
    if (!p) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    int    rc = 0;
    while (got <= PKI_PEM_MAX) {
        ssize_t k = read(fd, p + got, PKI_PEM_MAX + 1 - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            rc = -errno; /* EISDIR for a folder */
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (!rc && got > PKI_PEM_MAX)
        rc = -EFBIG;
    if (rc) {
        pki_pass_wipe(p, got); /* it may have been a passphrase */
        free(p);
        return rc;
    }
    p[got] = '\0';
    *out = p;
    *len = got;
    return 0;
}

int pki_write_file(const char *path, const void *p, size_t n, int mode, int excl)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    if (excl && access(path, F_OK) == 0)
        return PKI_EEXIST;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return -errno;
    int rc = 0;
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(fd, (const char *)p + off, n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rc = k < 0 ? -errno : -EIO;
            break;
        }
        off += (size_t)k;
    }
    if (!rc && fchmod(fd, (mode_t)mode) < 0) /* umask must not widen or narrow it */
        rc = -errno;
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    /* excl: link() fails if the name appeared meanwhile; never replace a key. */
    if (!rc && excl) {
        if (link(tmp, path) == 0) {
            unlink(tmp);
            return 0;
        }
        rc = errno == EEXIST ? PKI_EEXIST : -errno;
        /* No hard links on this file system: check, then rename (a race
         * remains there, between two keygens writing the same name). */
        if ((rc == -EPERM || rc == -ENOTSUP || rc == -EOPNOTSUPP) && access(path, F_OK) < 0 && rename(tmp, path) == 0)
            return 0;
        unlink(tmp);
        return rc;
    }
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

/* --- keys ----------------------------------------------------------------------- */

int pki_key_generate(pki_alg alg, pki_key **out, char *err, size_t errlen)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, alg == PKI_ED25519 ? "ED25519" : "SM2");
    if (!pkey)
        return pki_fail(PKI_ECRYPTO, err, errlen, "generating a %s key failed", pki_alg_name(alg));
    pki_key *k = calloc(1, sizeof *k);
    if (!k) {
        EVP_PKEY_free(pkey);
        return pki_fail(-ENOMEM, err, errlen, "out of memory");
    }
    k->pkey = pkey;
    k->alg = alg;
    *out = k;
    return 0;
}

int pki_key_save(const pki_key *k, const char *path, const char *pass, size_t pass_len, char *err, size_t errlen)
{
    if (!k || !path)
        return pki_fail(PKI_EINVAL, err, errlen, "no key or path");
    if (pass_len > PKI_PASS_MAX)
        return pki_fail(PKI_EINVAL, err, errlen, "passphrase longer than %d bytes", PKI_PASS_MAX);
    /* Secure heap memory BIO: the clear key never sits in ordinary heap. */
    BIO *b = BIO_new(BIO_s_secmem());
    if (!b)
        return pki_fail(PKI_ECRYPTO, err, errlen, "%s: out of memory", path);
    int ok = pass_len ? PEM_write_bio_PKCS8PrivateKey(b, k->pkey, EVP_aes_256_cbc(), pass, (int)pass_len, NULL, NULL)
                      : PEM_write_bio_PKCS8PrivateKey(b, k->pkey, NULL, NULL, 0, NULL, NULL);
    if (!ok) {
        BIO_free(b);
        return pki_fail(PKI_ECRYPTO, err, errlen, "%s: encoding the key failed", path);
    }
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    int rc = pki_write_file(path, p, (size_t)n, 0600, 1);
    BIO_free(b);
    if (rc == PKI_EEXIST)
        return pki_fail(rc, err, errlen, "%s exists: refusing to replace a key", path);
    if (rc < 0)
        return pki_fail(rc, err, errlen, "%s: %s", path, strerror(-rc));
    return 0;
}

typedef struct pass_cb_ctx {
    const pki_pass_src *src;
    int                 asked;
    int                 rc;
    char               *err;
    size_t              errlen;
} pass_cb_ctx;

/* OpenSSL asks for the passphrase only when the PEM is encrypted. */
static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    pass_cb_ctx *c = u;
    c->asked = 1;
    if (!c->src) {
        c->rc = PKI_EPASS;
        snprintf(c->err, c->errlen, "the key is encrypted and no passphrase was given");
        return -1;
    }
    ERR_clear_error(); /* an earlier attempt's (OpenSSL may ask again) is not this one's reason */
    int n = pki_pass_get(c->src, buf, (size_t)size, c->err, c->errlen);
    if (n < 0) {
        c->rc = n;
        return -1;
    }
    return n;
}

static void secure_heap_once(void)
{
    /* 64 KiB in 32-byte blocks: a few keys' numbers; fails quietly where
     * RLIMIT_MEMLOCK is too small (the keys then use the normal heap). */
    if (!CRYPTO_secure_malloc_initialized())
        CRYPTO_secure_malloc_init(1 << 16, 32);
}

void pki_secure_heap(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, secure_heap_once);
}

int pki_key_load(const char *path, const pki_pass_src *pass, pki_key **out, char *err, size_t errlen)
{
    char *pem = NULL;
    size_t len = 0;
    int rc = pki_read_file(path, &pem, &len);
    if (rc < 0)
        return pki_fail(rc, err, errlen, "%s: %s", path, strerror(-rc));
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    char cb_err[256] = "";
    pass_cb_ctx c = {.src = pass, .err = cb_err, .errlen = sizeof cb_err};
    EVP_PKEY *pkey = b ? PEM_read_bio_PrivateKey(b, NULL, pass_cb, &c) : NULL;
    BIO_free(b);
    pki_pass_wipe(pem, len);
    free(pem);
    if (!pkey) {
        if (c.rc) { /* our own reason: not OpenSSL's "interrupted or cancelled" after it */
            ERR_clear_error();
            return pki_fail(c.rc, err, errlen, "%s: %s", path, cb_err);
        }
        if (c.asked)
            return pki_fail(PKI_EPASS, err, errlen, "%s: wrong passphrase (or not a key)", path);
        return pki_fail(PKI_EFORMAT, err, errlen, "%s: not a PEM private key", path);
    }
    int alg = pki_alg_of(pkey);
    if (alg < 0) {
        EVP_PKEY_free(pkey);
        return pki_fail(PKI_EALG, err, errlen, "%s: a %s key (sm2 or ed25519 expected)", path,
                        EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "unknown");
    }
    pki_key *k = calloc(1, sizeof *k);
    if (!k) {
        EVP_PKEY_free(pkey);
        return pki_fail(-ENOMEM, err, errlen, "out of memory");
    }
    k->pkey = pkey;
    k->alg = (pki_alg)alg;
    *out = k;
    ERR_clear_error();
    return 0;
}

void pki_key_free(pki_key **k)
{
    if (!k || !*k)
        return;
    EVP_PKEY_free((*k)->pkey); /* OpenSSL clears private key material on free */
    free(*k);
    *k = NULL;
}

pki_alg pki_key_alg(const pki_key *k)
{
    return k->alg;
}

int pki_sign(const pki_key *k, const void *data, size_t len, uint8_t sig[PKI_SIG_MAX], size_t *sig_len, char *err,
             size_t errlen)
{
    EVP_MD_CTX *md = pki_md_ctx(k->pkey, 1, 1);
    if (!md)
        return pki_fail(PKI_ECRYPTO, err, errlen, "setting up a %s signature failed", pki_alg_name(k->alg));
    size_t n = PKI_SIG_MAX;
    int ok = EVP_DigestSign(md, sig, &n, data, len);
    EVP_MD_CTX_free(md);
    if (ok <= 0)
        return pki_fail(PKI_ECRYPTO, err, errlen, "%s signature failed", pki_alg_name(k->alg));
    *sig_len = n;
    return 0;
}

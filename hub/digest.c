/* digest.c — SHA-256 through OpenSSL's EVP interface. */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hub/digest.h"

struct digest_ctx {
    EVP_MD_CTX *md;
};

/* OpenSSL 3 looks an algorithm up in its provider tables (under a global
 * lock) on every init with EVP_sha256(); fetched once, lookups that hash
 * ten reports per request stop queueing on that lock.  Set once, then
 * only read: in effect a constant. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, fetch_sha256);
    return sha256_md ? sha256_md : EVP_sha256();
}

digest_ctx *digest_new(void)
{
    digest_ctx *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->md = EVP_MD_CTX_new();
    if (!d->md || !EVP_DigestInit_ex(d->md, sha256(), NULL)) {
        EVP_MD_CTX_free(d->md);
        free(d);
        return NULL;
    }
    return d;
}

void digest_update(digest_ctx *d, const void *p, size_t n) { EVP_DigestUpdate(d->md, p, n); }

void digest_final(digest_ctx **dp, uint8_t out[32])
{
    unsigned dl = 0;
    EVP_DigestFinal_ex((*dp)->md, out, &dl);
    EVP_MD_CTX_free((*dp)->md);
    free(*dp);
    *dp = NULL;
}

static int digest_read(int fd, uint64_t offset, uint8_t out[32], bool may_map);

int digest_fd(int fd, uint64_t offset, uint8_t out[32]) { return digest_read(fd, offset, out, false); }

int digest_own_fd(int fd, uint64_t offset, uint8_t out[32]) { return digest_read(fd, offset, out, true); }

/* A file of our own is hashed through a read-only mapping: no copy into a
 * buffer (on the ingest path a 10 MB radiograph cost a copy per instance).
 * Anyone else's file is read with pread: a mapping of a file that another
 * process truncates meanwhile raises SIGBUS here. */
static int digest_read(int fd, uint64_t offset, uint8_t out[32], bool may_map)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return -ENOMEM;
    }
    int rc = 0;
    struct stat st;
    void *map = MAP_FAILED;
    if (may_map && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > offset)
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map != MAP_FAILED) {
        madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
        EVP_DigestUpdate(md, (const uint8_t *)map + offset, (size_t)st.st_size - offset);
        munmap(map, (size_t)st.st_size);
    } else {
        static const size_t bufsize = 1 << 20;
        uint8_t *buf = malloc(bufsize);
        rc = buf ? 0 : -ENOMEM;
        off_t off = (off_t)offset;
        ssize_t k;
        while (!rc && (k = pread(fd, buf, bufsize, off)) != 0) {
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                rc = -errno;
                break;
            }
            EVP_DigestUpdate(md, buf, (size_t)k);
            off += k;
        }
        free(buf);
    }
    unsigned dl = 0;
    if (!rc)
        EVP_DigestFinal_ex(md, out, &dl);
    EVP_MD_CTX_free(md);
    return rc;
}

void digest_hex(const uint8_t d[32], char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

int digest_from_hex(const char *hex, uint8_t out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return hex[64] == '\0' ? 0 : -1;
}

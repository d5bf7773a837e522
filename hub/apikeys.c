/* apikeys.c — facility API keys: issue, revoke, load, check (apikeys.h).
 * Only hashes are kept; a token is looked up by its hash (sorted array,
 * binary search), so a wrong token costs one SHA-256 and no comparison
 * with anything secret. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "hub/apikeys.h"
#include "hub/conf_lines.h"
#include "hub/digest.h"
#include "codecs/banned.h"

#define APIKEYS_MAX 100000 /* lines a file may hold */

typedef struct key_entry {
    uint8_t hash[32];
    char    facility[APIKEY_FACILITY_MAX];
} key_entry;

struct apikeys {
    pthread_rwlock_t lock;
    key_entry       *e; /* sorted by hash */
    size_t           n;
};

bool apikeys_facility_valid(const char *f) { return f && conf_name_ok(f, APIKEY_FACILITY_MAX - 1); }

apikeys *apikeys_new(void)
{
    apikeys *k = calloc(1, sizeof *k);
    if (k)
        pthread_rwlock_init(&k->lock, NULL);
    return k;
}

void apikeys_free(apikeys **kp)
{
    if (!kp || !*kp)
        return;
    pthread_rwlock_destroy(&(*kp)->lock);
    free((*kp)->e);
    free(*kp);
    *kp = NULL;
}

static int cmp_entry(const void *a, const void *b)
{
    return memcmp(((const key_entry *)a)->hash, ((const key_entry *)b)->hash, 32);
}

static void path_of(const char *dir, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", dir, APIKEYS_FILE);
}

/* One line: "FACILITY HEX [anything]"; 1 parsed, 0 blank/comment, -1 bad. */
static int parse_line(char *line, key_entry *out)
{
    char *p = line + strspn(line, " \t");
    if (*p == '#' || *p == '\n' || *p == '\r' || !*p)
        return 0;
    char fac[128], hex[128];
    if (sscanf(p, "%127s %127s", fac, hex) != 2 || !apikeys_facility_valid(fac) || digest_from_hex(hex, out->hash))
        return -1;
    snprintf(out->facility, sizeof out->facility, "%.63s", fac);
    return 1;
}

int apikeys_load(apikeys *k, const char *dir, char *err, size_t errlen)
{
    char path[4200];
    path_of(dir, path, sizeof path);
    FILE *fp = fopen(path, "r");
    key_entry *e = NULL;
    size_t n = 0, cap = 0;
    if (fp) {
        char line[512];
        int lineno = 0;
        while (fgets(line, sizeof line, fp)) {
            lineno++;
            key_entry one;
            int r = parse_line(line, &one);
            if (r == 0)
                continue;
            if (r < 0 || n >= APIKEYS_MAX) {
                snprintf(err, errlen, "%s:%d: %s", path, lineno,
                         r < 0 ? "expected \"FACILITY SHA256-HEX\"" : "too many keys");
                fclose(fp);
                free(e);
                return -EINVAL;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                key_entry *q = realloc(e, cap * sizeof *e);
                if (!q) {
                    fclose(fp);
                    free(e);
                    snprintf(err, errlen, "out of memory");
                    return -ENOMEM;
                }
                e = q;
            }
            e[n++] = one;
        }
        fclose(fp);
    } else if (errno != ENOENT) {
        int rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    if (n)
        qsort(e, n, sizeof *e, cmp_entry);
    pthread_rwlock_wrlock(&k->lock);
    free(k->e);
    k->e = e;
    k->n = n;
    pthread_rwlock_unlock(&k->lock);
    return (int)n;
}

size_t apikeys_count(apikeys *k)
{
    if (!k)
        return 0;
    pthread_rwlock_rdlock(&k->lock);
    size_t n = k->n;
    pthread_rwlock_unlock(&k->lock);
    return n;
}

static void hash_token(const char *token, size_t len, uint8_t out[32])
{
    digest_ctx *d = digest_new();
    if (!d) {
        memset(out, 0, 32); /* matches nothing: every stored hash came from a token */
        return;
    }
    digest_update(d, token, len);
    digest_final(&d, out);
}

int apikeys_check(apikeys *k, const char *token, size_t len, char facility[APIKEY_FACILITY_MAX])
{
    if (!k || len != APIKEY_TOKEN_LEN || memcmp(token, APIKEY_PREFIX, strlen(APIKEY_PREFIX)))
        return -ENOENT;
    key_entry key;
    hash_token(token, len, key.hash);
    int rc = -ENOENT;
    pthread_rwlock_rdlock(&k->lock);
    const key_entry *hit = k->n ? bsearch(&key, k->e, k->n, sizeof *k->e, cmp_entry) : NULL;
    if (hit) {
        memcpy(facility, hit->facility, APIKEY_FACILITY_MAX);
        rc = 0;
    }
    pthread_rwlock_unlock(&k->lock);
    return rc;
}

/* --- the file, edited by `dxhub keygen` ---------------------------------------- */

typedef struct text {
    char  *p;
    size_t len, cap;
} text;

static int text_add(text *t, const char *s)
{
    size_t l = strlen(s);
    if (t->len + l + 1 > t->cap) {
        size_t cap = (t->len + l + 1) * 2;
        char *q = realloc(t->p, cap);
        if (!q)
            return -ENOMEM;
        t->p = q;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, l + 1);
    t->len += l;
    return 0;
}

/* The file's lines, without those of drop_facility (NULL: keep all); *dropped
 * counts the lines left out. */
static int read_keeping(const char *path, const char *drop_facility, text *t, int *dropped)
{
    *dropped = 0;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        if (errno != ENOENT)
            return -errno;
        return text_add(t, "# dxhub API keys: FACILITY SHA256(token) ISSUED (tokens are never stored)\n");
    }
    char line[512];
    int rc = 0;
    while (!rc && fgets(line, sizeof line, fp)) {
        key_entry e;
        char copy[512];
        snprintf(copy, sizeof copy, "%s", line);
        if (drop_facility && parse_line(copy, &e) == 1 && !strcmp(e.facility, drop_facility)) {
            (*dropped)++;
            continue;
        }
        rc = text_add(t, line);
    }
    fclose(fp);
    return rc;
}

static int write_atomic(const char *path, const text *t)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = write(fd, t->p, t->len) == (ssize_t)t->len ? 0 : -EIO;
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

/* The keys folder and its parents (a hub's DATA/keys before its first start). */
static int mkdir_p(const char *dir)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0)
            continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return -errno;
        buf[i] = c;
    }
    return 0;
}

int apikeys_issue(const char *dir, const char *facility, char token[APIKEY_TOKEN_LEN + 1], char *err, size_t errlen)
{
    if (!apikeys_facility_valid(facility)) {
        snprintf(err, errlen, "facility '%s': letters, digits, '.', '_' and '-', 1 to 63", facility);
        return -EINVAL;
    }
    int rc = mkdir_p(dir);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
        return rc;
    }
    uint8_t raw[32];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        return -EIO;
    }
    char hex[65];
    digest_hex(raw, hex);
    snprintf(token, APIKEY_TOKEN_LEN + 1, "%s%s", APIKEY_PREFIX, hex);
    uint8_t h[32];
    hash_token(token, APIKEY_TOKEN_LEN, h);
    char hhex[65], when[32], line[256];
    digest_hex(h, hhex);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(line, sizeof line, "%s %s %s\n", facility, hhex, when);
    char path[4200];
    path_of(dir, path, sizeof path);
    text t = {0};
    int dropped;
    rc = read_keeping(path, NULL, &t, &dropped);
    if (!rc)
        rc = text_add(&t, line);
    if (!rc)
        rc = write_atomic(path, &t);
    free(t.p);
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
    return rc;
}

int apikeys_revoke(const char *dir, const char *facility, char *err, size_t errlen)
{
    char path[4200];
    path_of(dir, path, sizeof path);
    text t = {0};
    int dropped, rc = read_keeping(path, facility, &t, &dropped);
    if (!rc && !dropped) {
        snprintf(err, errlen, "no API key of facility '%s' in %s", facility, path);
        rc = -ENOENT;
    } else if (!rc && (rc = write_atomic(path, &t)) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
    }
    free(t.p);
    return rc < 0 ? rc : dropped;
}

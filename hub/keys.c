/* keys.c — CURVE keypairs on disk and the allow-list of public keys. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>
#include "hub/conf_lines.h"
#include "hub/keys.h"

static int write_file(const char *path, const char *text, mode_t mode, int excl)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (excl && access(path, F_OK) == 0)
        return -EEXIST;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    size_t n = strlen(text);
    int rc = write(fd, text, n) == (ssize_t)n ? 0 : -EIO;
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

static int read_z85(const char *path, char out[KEY_Z85_LEN + 1])
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -errno;
    char line[256];
    int rc = -EINVAL;
    while (fgets(line, sizeof line, fp)) {
        char *p = line + strspn(line, " \t");
        if (*p == '#' || *p == '\n' || !*p)
            continue;
        size_t n = strcspn(p, " \t\r\n");
        if (n == KEY_Z85_LEN) {
            memcpy(out, p, KEY_Z85_LEN);
            out[KEY_Z85_LEN] = '\0';
            rc = 0;
        }
        break;
    }
    fclose(fp);
    return rc;
}

static void key_paths(const char *dir, const char *name, char *sec, char *pub, size_t n)
{
    snprintf(sec, n, "%s/%s.key", dir, name);
    snprintf(pub, n, "%s/%s.pub", dir, name);
}

int keys_generate(const char *dir, const char *name, keypair *out, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -errno;
    }
    char sec[4096], pub[4096];
    key_paths(dir, name, sec, pub, sizeof sec);
    if (zmq_curve_keypair(out->pub, out->sec) != 0) {
        snprintf(err, errlen, "this libzmq has no CURVE support");
        return -ENOTSUP;
    }
    char text[128];
    snprintf(text, sizeof text, "%s\n", out->sec);
    int rc = write_file(sec, text, 0600, 1);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", sec, rc == -EEXIST ? "exists already (not overwritten)" : strerror(-rc));
        return rc;
    }
    snprintf(text, sizeof text, "%s\n", out->pub);
    if ((rc = write_file(pub, text, 0644, 0)) < 0) {
        snprintf(err, errlen, "%s: %s", pub, strerror(-rc));
        return rc;
    }
    return 0;
}

int keys_load_or_create(const char *dir, const char *name, keypair *out, char *err, size_t errlen)
{
    char sec[4096], pub[4096];
    key_paths(dir, name, sec, pub, sizeof sec);
    if (access(sec, F_OK) != 0)
        return keys_generate(dir, name, out, err, errlen);
    int rc = read_z85(sec, out->sec);
    if (rc < 0 || zmq_curve_public(out->pub, out->sec) != 0) {
        snprintf(err, errlen, "%s: not a CURVE secret key (40 Z85 characters)", sec);
        return rc < 0 ? rc : -EINVAL;
    }
    struct stat st;
    if (stat(sec, &st) == 0 && (st.st_mode & 077))
        chmod(sec, 0600); /* a secret key readable by others is repaired, not trusted blindly */
    return 0;
}

int keys_read_public(const char *path, char out[KEY_Z85_LEN + 1], char *err, size_t errlen)
{
    uint8_t bin[32];
    /* A file first: '/', '.' and '-' are Z85 characters, so a 40-character
     * path such as /var/lib/dxhub/readers/dr-wang/reader.pub also decodes
     * as a key. */
    struct stat st;
    if (stat(path, &st) < 0 && strlen(path) == KEY_Z85_LEN && zmq_z85_decode(bin, path)) {
        memcpy(out, path, KEY_Z85_LEN + 1);
        return 0;
    }
    int rc = read_z85(path, out);
    if (rc < 0 || !zmq_z85_decode(bin, out)) {
        snprintf(err, errlen, "%s: not a CURVE public key file (%s)", path,
                 rc == -ENOENT ? "no such file" : "40 Z85 characters expected");
        return rc < 0 ? rc : -EINVAL;
    }
    return 0;
}

int keys_read_hub_keys(const char *list, char now[KEY_Z85_LEN + 1], char next[KEY_Z85_LEN + 1], char *err,
                       size_t errlen)
{
    next[0] = '\0';
    const char *comma = strchr(list, ',');
    if (!comma)
        return keys_read_public(list, now, err, errlen) < 0 ? -EINVAL : 1;
    char first[4096];
    size_t len = (size_t)(comma - list);
    if (!len || !comma[1] || strchr(comma + 1, ',') || len >= sizeof first) {
        snprintf(err, errlen, "%s: the hub's key, or two (its key now and its next) separated by one comma", list);
        return -EINVAL;
    }
    memcpy(first, list, len);
    first[len] = '\0';
    if (keys_read_public(first, now, err, errlen) < 0 || keys_read_public(comma + 1, next, err, errlen) < 0)
        return -EINVAL;
    if (!strcmp(now, next)) {
        snprintf(err, errlen, "%s: the same key twice", list);
        return -EINVAL;
    }
    return 2;
}

int keys_role_valid(const char *role)
{
    static const char *const kinds[] = {"edge:", "reader:", "peer:"};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(kinds[i]);
        if (!strncmp(role, kinds[i], l))
            return conf_name_ok(role + l, 63 - l); /* the whole role under 64 */
    }
    return 0;
}

/* --- allow-list ---------------------------------------------------------- */

typedef struct allow_entry {
    unsigned char key[32];
    char          role[64];
} allow_entry;

struct allowlist {
    pthread_mutex_t mu;
    _Atomic uint64_t gen;
    allow_entry    *e;
    size_t          n;
};

allowlist *allowlist_new(void)
{
    allowlist *a = calloc(1, sizeof *a);
    if (a)
        pthread_mutex_init(&a->mu, NULL);
    return a;
}

void allowlist_free(allowlist **ap)
{
    if (!ap || !*ap)
        return;
    pthread_mutex_destroy(&(*ap)->mu);
    free((*ap)->e);
    free(*ap);
    *ap = NULL;
}

/* One line into e; NULL, or why not. */
static const char *parse_allow(char *line, allow_entry *e)
{
    char *f[2];
    if (conf_fields(line, f, 2) != 2)
        return "expected \"PUBLICKEY edge:|reader:|peer:NAME\"";
    if (strlen(f[0]) != KEY_Z85_LEN || !zmq_z85_decode(e->key, f[0]))
        return "the public key is not 40 characters of Z85 (as in a .pub file)";
    if (!keys_role_valid(f[1]))
        return "the role is edge:<facility>, reader:<id> or peer:<hub> (letters, digits, '-', '_', '.')";
    snprintf(e->role, sizeof e->role, "%s", f[1]);
    return NULL;
}

int allowlist_load(allowlist *a, const char *dir, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/allow.txt", dir);
    conf_lines cl;
    int rc = conf_lines_open(&cl, path, err, errlen);
    if (rc == -ENOENT)
        rc = 0; /* nobody allowed yet */
    else if (rc < 0)
        return rc;
    allow_entry *e = NULL;
    size_t n = 0, cap = 0;
    char *line;
    while (cl.fp && (rc = conf_lines_next(&cl, &line, err, errlen)) > 0) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            allow_entry *q = realloc(e, cap * sizeof *e);
            if (!q) {
                snprintf(err, errlen, "%s: out of memory", path);
                rc = -ENOMEM;
                break;
            }
            e = q;
        }
        const char *why = parse_allow(line, &e[n]);
        if (why) {
            snprintf(err, errlen, "%s:%d: %s", path, cl.lineno, why);
            rc = -EINVAL;
            break;
        }
        size_t i = 0;
        while (i < n && memcmp(e[i].key, e[n].key, 32))
            i++;
        if (i < n) { /* one key, two entries: which role it has would be a guess */
            snprintf(err, errlen, "%s:%d: the same key is listed twice (first on line %d, as %s)", path, cl.lineno,
                     conf_lines_line_of(&cl, i), e[i].role);
            rc = -EINVAL;
            break;
        }
        if ((rc = conf_lines_keep(&cl, err, errlen)) < 0)
            break;
        n++;
    }
    conf_lines_close(&cl);
    if (rc < 0) {
        free(e);
        return rc;
    }
    pthread_mutex_lock(&a->mu);
    free(a->e);
    a->e = e;
    a->n = n;
    atomic_fetch_add(&a->gen, 1);
    pthread_mutex_unlock(&a->mu);
    return (int)n;
}

int allowlist_role(allowlist *a, const unsigned char key[32], char *role, size_t n)
{
    int rc = -1;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n; i++)
        if (!memcmp(a->e[i].key, key, 32)) {
            snprintf(role, n, "%s", a->e[i].role);
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

uint64_t allowlist_gen(allowlist *a) { return atomic_load(&a->gen); }

bool allowlist_allows(allowlist *a, const char *key_z85, const char *role)
{
    uint8_t key[32];
    if (strlen(key_z85) != KEY_Z85_LEN || !zmq_z85_decode(key, key_z85))
        return false;
    bool found = false;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n && !found; i++)
        found = !memcmp(a->e[i].key, key, 32) && !strcmp(a->e[i].role, role);
    pthread_mutex_unlock(&a->mu);
    return found;
}

void allowlist_roles(allowlist *a, const char *prefix, void (*cb)(void *ctx, const char *role), void *ctx)
{
    size_t pl = strlen(prefix);
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n; i++)
        if (!strncmp(a->e[i].role, prefix, pl))
            cb(ctx, a->e[i].role);
    pthread_mutex_unlock(&a->mu);
}

int allowlist_has_role(allowlist *a, const char *role)
{
    int found = 0;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n && !found; i++)
        found = !strcmp(a->e[i].role, role);
    pthread_mutex_unlock(&a->mu);
    return found;
}

int allowlist_edit(const char *dir, const char *pub, const char *role, int revoke, char *err, size_t errlen)
{
    if (!revoke && !keys_role_valid(role)) {
        snprintf(err, errlen, "role '%s' must be edge:<facility>, reader:<id> or peer:<hub>", role);
        return -EINVAL;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -errno;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/allow.txt", dir);
    size_t cap = 4096, used = 0;
    char *out = malloc(cap);
    if (!out)
        return -ENOMEM;
    out[0] = '\0';
    FILE *fp = fopen(path, "r");
    int found = 0;
    if (fp) {
        char line[512];
        while (fgets(line, sizeof line, fp)) {
            if (!strncmp(line, pub, KEY_Z85_LEN)) {
                found = 1;
                if (revoke)
                    continue;
                snprintf(line, sizeof line, "%s %s\n", pub, role); /* re-assigned role */
            }
            size_t l = strlen(line);
            if (used + l + 1 > cap) {
                cap = (used + l + 1) * 2;
                char *q = realloc(out, cap);
                if (!q) {
                    free(out);
                    fclose(fp);
                    return -ENOMEM;
                }
                out = q;
            }
            memcpy(out + used, line, l + 1);
            used += l;
        }
        fclose(fp);
    } else {
        used = (size_t)snprintf(out, cap, "# dxhub allow-list: PUBLICKEY ROLE (edge:<facility>, reader:<id>, peer:<hub>)\n");
    }
    if (!found && !revoke) {
        char line[160];
        int l = snprintf(line, sizeof line, "%s %s\n", pub, role);
        if (used + (size_t)l + 1 > cap) {
            char *q = realloc(out, used + (size_t)l + 1);
            if (!q) {
                free(out);
                return -ENOMEM;
            }
            out = q;
        }
        memcpy(out + used, line, (size_t)l + 1);
    }
    if (revoke && !found) {
        free(out);
        snprintf(err, errlen, "key not in %s", path);
        return -ENOENT;
    }
    int rc = write_file(path, out, 0644, 0);
    free(out);
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
    return rc;
}

/* fuzz_conf_files.c — the files an operator edits by hand, read by the hub
 * at start and on every SIGHUP: readers.conf (readers_load), allow.txt
 * (allowlist_load), peers.conf (peer_conf_load) and recognition.conf
 * (recog_config_load), all through conf_lines.
 *
 * Input: byte 0 chooses the file (mod 4), the rest is its content,
 * written to a file in a private temporary folder.
 *
 * Invariants: a load either fails with a message naming the file, or
 * loads at most one entry a line, each one as its format allows (a
 * reader findable by its id with 1..65535 tasks, a peer with a tcp://
 * endpoint and a 40-character key, an allow-list of valid roles).
 *
 * fuzz-objects: hub/conf_lines.c hub/readers.c hub/keys.c hub/peer_conf.c hub/recog_config.c worklist/worklist.c worklist/wl_record.c */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/keys.h"
#include "hub/peer.h"
#include "hub/readers.h"
#include "hub/recog.h"

static char dir[64];

static const char *write_file(const char *name, const uint8_t *p, size_t n)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp) != 0)
        abort();
    return path;
}

static size_t lines_in(const uint8_t *p, size_t n)
{
    size_t l = 1;
    for (size_t i = 0; i < n; i++)
        l += p[i] == '\n';
    return l;
}

static void named(const char *err, const char *path)
{
    if (!strstr(err, path))
        abort(); /* an error that does not say which file */
}

static void readers_file(const uint8_t *p, size_t n)
{
    const char *path = write_file("readers.conf", p, n);
    readers    *rs = readers_new();
    char        err[512] = "";
    int         got = readers_load(rs, path, err, sizeof err);
    if (got < 0)
        named(err, path);
    else if ((size_t)got > lines_in(p, n) || readers_count(rs) != (size_t)got)
        abort();
    readers_free(&rs);
}

static void allow_file(const uint8_t *p, size_t n)
{
    const char *path = write_file("allow.txt", p, n);
    allowlist  *a = allowlist_new();
    char        err[512] = "";
    int         got = allowlist_load(a, dir, err, sizeof err);
    if (got < 0)
        named(err, path);
    else if ((size_t)got > lines_in(p, n))
        abort();
    allowlist_free(&a);
}

static void peers_file(const uint8_t *p, size_t n)
{
    const char *path = write_file("peers.conf", p, n);
    static peer_def defs[PEERS_MAX];
    size_t          got = 0;
    char            err[512] = "";
    if (peer_conf_load(path, defs, PEERS_MAX, &got, err, sizeof err) < 0) {
        named(err, path);
        return;
    }
    if (got > lines_in(p, n))
        abort();
    for (size_t i = 0; i < got; i++)
        if (!defs[i].name[0] || strncmp(defs[i].endpoint, "tcp://", 6) || strlen(defs[i].pub) != KEY_Z85_LEN)
            abort();
}

static void recognition_file(const uint8_t *p, size_t n)
{
    const char   *path = write_file("recognition.conf", p, n);
    recog_config *c = NULL;
    char          err[512] = "";
    if (recog_config_load(path, &c, err, sizeof err) < 0) {
        named(err, path);
        if (c)
            abort();
        return;
    }
    (void)recog_validity_days(c, "CT");
    (void)recog_is_member(c, "clinic1");
    if (!recog_consortium(c)[0] || !recog_mark(c)[0])
        abort();
    recog_config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/fuzz-conf-XXXXXX", P_tmpdir);
        if (!mkdtemp(dir))
            abort();
    }
    if (size < 1)
        return 0;
    switch (data[0] & 3) {
    case 0: readers_file(data + 1, size - 1); break;
    case 1: allow_file(data + 1, size - 1); break;
    case 2: peers_file(data + 1, size - 1); break;
    default: recognition_file(data + 1, size - 1); break;
    }
    return 0;
}

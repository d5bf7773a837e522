/* peer_conf.c — peers.conf, the consortium's other hubs (format in peer.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "hub/conf_lines.h"
#include "hub/peer.h"
#include "codecs/banned.h"

/* One line into d; NULL, or why not (kerr holds a key's reason). */
static const char *parse_peer(char *line, peer_def *d, char *kerr, size_t kerrlen)
{
    char *f[3];
    if (conf_fields(line, f, 3) != 3)
        return "expected \"NAME tcp://HOST:PORT PUBLIC-KEY[,NEXT-KEY]\"";
    if (!conf_name_ok(f[0], PEER_NAME_MAX - 1))
        return "the hub's name takes letters, digits, '-', '_' and '.' (at most 63)";
    if (strncmp(f[1], "tcp://", 6) || !f[1][6] || strlen(f[1]) >= sizeof d->endpoint)
        return "the endpoint is tcp://HOST:PORT (at most 255 bytes)";
    if (keys_read_hub_keys(f[2], d->pub, d->pub_next, kerr, kerrlen) < 0) /* a .pub file or the key; or two */
        return kerr;
    snprintf(d->name, sizeof d->name, "%s", f[0]);
    snprintf(d->endpoint, sizeof d->endpoint, "%s", f[1]);
    return NULL;
}

int peer_conf_load(const char *path, peer_def *defs, size_t max, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (!path)
        return 0;
    conf_lines cl;
    int rc = conf_lines_open(&cl, path, err, errlen);
    if (rc == -ENOENT)
        return 0; /* no peers: lookups answer from this hub alone */
    if (rc < 0)
        return rc;
    char *line, kerr[256];
    while ((rc = conf_lines_next(&cl, &line, err, errlen)) > 0) {
        peer_def    d;
        const char *why = parse_peer(line, &d, kerr, sizeof kerr);
        if (why) {
            snprintf(err, errlen, "%s:%d: %s", path, cl.lineno, why);
            rc = -EINVAL;
            break;
        }
        size_t i = 0;
        while (i < *n && strcmp(defs[i].name, d.name))
            i++;
        if (i < *n) {
            snprintf(err, errlen, "%s:%d: hub %s is listed twice (first on line %d)", path, cl.lineno, d.name,
                     conf_lines_line_of(&cl, i));
            rc = -EINVAL;
            break;
        }
        if (*n == max) {
            snprintf(err, errlen, "%s:%d: more than %zu peers", path, cl.lineno, max);
            rc = -E2BIG;
            break;
        }
        if ((rc = conf_lines_keep(&cl, err, errlen)) < 0)
            break;
        defs[(*n)++] = d;
    }
    conf_lines_close(&cl);
    return rc < 0 ? rc : 0;
}

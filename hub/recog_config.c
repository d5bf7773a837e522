/* recog_config.c — the consortium's recognition settings (recog.h):
 * embedded defaults, overridden line by line from a file. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/conf_lines.h"
#include "hub/recog.h"
#include "codecs/banned.h"

#define MAX_TYPES   64
#define MAX_MEMBERS 1024

typedef struct validity {
    char modality[17];
    int  days; /* -1: not recognised */
} validity;

struct recog_config {
    char     consortium[128], mark[32];
    validity v[MAX_TYPES];
    size_t   nv;
    char   (*members)[64];
    size_t   nm;
};

static const validity defaults[] = {
    {"CR", 180}, {"DX", 180}, {"MG", 180}, {"CT", 180}, {"MR", 180}, {"US", 30},
    {"ECG", 30}, {"NM", 90},  {"PT", 90},  {"RF", 90},
};

static int set_validity(recog_config *c, const char *mod, int days)
{
    for (size_t i = 0; i < c->nv; i++)
        if (!strcmp(c->v[i].modality, mod)) {
            c->v[i].days = days;
            return 0;
        }
    if (c->nv == MAX_TYPES)
        return -1;
    snprintf(c->v[c->nv].modality, sizeof c->v[0].modality, "%.16s", mod);
    c->v[c->nv++].days = days;
    return 0;
}

static bool token_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (!n || n >= max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* One line; NULL when fine, else why. */
static const char *parse_line(recog_config *c, char *line)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = 0;
    char *p = trim(line);
    if (!*p)
        return NULL;
    size_t kl = strcspn(p, " \t");
    char *rest = p[kl] ? trim(p + kl + 1) : p + kl;
    p[kl] = 0;
    if (!strcmp(p, "consortium")) {
        if (!*rest || strlen(rest) >= sizeof c->consortium)
            return "consortium takes a name (at most 127 bytes)";
        snprintf(c->consortium, sizeof c->consortium, "%s", rest);
    } else if (!strcmp(p, "mark")) {
        if (!*rest || strlen(rest) >= sizeof c->mark)
            return "mark takes a short text (at most 31 bytes)";
        snprintf(c->mark, sizeof c->mark, "%s", rest);
    } else if (!strcmp(p, "member")) {
        if (!token_ok(rest, 64))
            return "member takes a facility name: letters, digits, '.', '_', '-'";
        if (c->nm == MAX_MEMBERS)
            return "too many members";
        char(*m)[64] = realloc(c->members, (c->nm + 1) * sizeof *m);
        if (!m)
            return "out of memory";
        c->members = m;
        snprintf(c->members[c->nm++], 64, "%s", rest);
    } else if (!strcmp(p, "validity")) {
        char mod[32], days[32], extra[2];
        if (sscanf(rest, "%31s %31s %1s", mod, days, extra) != 2 || !token_ok(mod, 17))
            return "validity takes MODALITY DAYS (or MODALITY off)";
        char *end;
        long d = strtol(days, &end, 10);
        if (!strcmp(days, "off"))
            d = -1;
        else if (*end || d < 0 || d > 36500)
            return "validity days: a whole number 0..36500, or off";
        if (set_validity(c, mod, (int)d) < 0)
            return "too many exam types";
    } else {
        return "unknown setting (consortium, mark, member, validity)";
    }
    return NULL;
}

int recog_config_load(const char *path, recog_config **out, char *err, size_t errlen)
{
    recog_config *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(c->consortium, sizeof c->consortium, "dxhub consortium");
    snprintf(c->mark, sizeof c->mark, "HR");
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        c->v[c->nv++] = defaults[i];
    conf_lines cl = {0};
    int        rc = path ? conf_lines_open(&cl, path, err, errlen) : -ENOENT;
    if (rc < 0 && rc != -ENOENT) { /* missing: the defaults */
        recog_config_free(&c);
        return rc;
    }
    char *line;
    while (cl.fp && (rc = conf_lines_next(&cl, &line, err, errlen)) > 0) {
        const char *why = parse_line(c, line);
        if (why) {
            snprintf(err, errlen, "%s:%d: %s", path, cl.lineno, why);
            rc = -EINVAL;
            break;
        }
    }
    conf_lines_close(&cl);
    if (rc < 0 && rc != -ENOENT) {
        recog_config_free(&c);
        return rc;
    }
    *out = c;
    return 0;
}

void recog_config_free(recog_config **c)
{
    if (!c || !*c)
        return;
    free((*c)->members);
    free(*c);
    *c = NULL;
}

const char *recog_consortium(const recog_config *c) { return c->consortium; }
const char *recog_mark(const recog_config *c) { return c->mark; }

int recog_validity_days(const recog_config *c, const char *modality)
{
    for (size_t i = 0; i < c->nv; i++)
        if (!strcmp(c->v[i].modality, modality))
            return c->v[i].days;
    return -1;
}

bool recog_is_member(const recog_config *c, const char *facility)
{
    for (size_t i = 0; i < c->nm; i++)
        if (!strcmp(c->members[i], facility))
            return true;
    return false;
}

/* readers.c — the readers file (format in readers.h). */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/conf_lines.h"
#include "hub/readers.h"

struct readers {
    pthread_mutex_t mu;
    wl_reader      *r;
    size_t          n;
};

readers *readers_new(void)
{
    readers *r = calloc(1, sizeof *r);
    if (r)
        pthread_mutex_init(&r->mu, NULL);
    return r;
}

void readers_free(readers **rp)
{
    if (!rp || !*rp)
        return;
    pthread_mutex_destroy(&(*rp)->mu);
    free((*rp)->r);
    free(*rp);
    *rp = NULL;
}

static int parse_kinds(const char *s)
{
    int k = 0;
    for (const char *p = s; *p;) {
        size_t l = strcspn(p, ",");
        if (l == 7 && !strncmp(p, "imaging", 7))
            k |= 1 << WL_IMAGING;
        else if (l == 3 && !strncmp(p, "ecg", 3))
            k |= 1 << WL_ECG;
        else
            return -1;
        p += l + (p[l] == ',');
    }
    return k;
}

/* "*", or a comma list of items of 1..max characters each passing ok. */
static bool list_ok(const char *s, size_t max, bool (*ok)(char))
{
    if (!strcmp(s, "*"))
        return true;
    for (const char *p = s;; p++) {
        size_t l = strcspn(p, ",");
        if (l == 0 || l > max)
            return false;
        for (size_t i = 0; i < l; i++)
            if (!ok(p[i]))
                return false;
        p += l;
        if (!*p)
            return true;
    }
}

/* A modality as DICOM codes it (CS: capitals, digits, '_'); matched exactly,
 * so "ct" would never match a CT. */
static bool modality_char_ok(char ch) { return (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'; }

/* One line's fields into r; NULL, or why not. */
static const char *parse_reader(char *line, wl_reader *r)
{
    char *f[6];
    int   nf = conf_fields(line, f, 6);
    if (nf != 6)
        return "expected 6 fields: ID resident|attending|chief MODALITIES imaging|ecg FACILITIES MAX (lists without "
               "spaces: CT,MR)";
    size_t idl = strlen(f[0]);
    if (idl >= sizeof r->id)
        return "the reader id is longer than 63 bytes";
    if (!conf_name_ok(f[0], sizeof r->id - 1))
        return "the reader id takes letters, digits, '-', '_' and '.' (as in its key's role reader:ID)";
    int sen = wl_seniority_parse(f[1]);
    if (sen < 0)
        return "seniority is resident, attending or chief";
    if (strlen(f[2]) >= sizeof r->modalities)
        return "the modalities list is longer than 127 bytes";
    if (!list_ok(f[2], 16, modality_char_ok))
        return "modalities are DICOM codes in capitals, comma-separated (CT,MR,DX; ECG for ECGs), or *";
    int kinds = parse_kinds(f[3]);
    if (kinds <= 0)
        return "kinds is imaging, ecg or imaging,ecg";
    if (strlen(f[4]) >= sizeof r->facilities)
        return "the facilities list is longer than 255 bytes";
    if (!list_ok(f[4], 63, conf_name_char))
        return "facilities are names (letters, digits, '-', '_', '.'), comma-separated, or *";
    char *end;
    errno = 0;
    long max = strtol(f[5], &end, 10);
    if (errno || end == f[5] || *end || max < 1 || max > UINT16_MAX)
        return "max (tasks held at once) is a whole number 1..65535";
    memset(r, 0, sizeof *r);
    memcpy(r->id, f[0], idl + 1);
    snprintf(r->modalities, sizeof r->modalities, "%s", f[2]);
    snprintf(r->facilities, sizeof r->facilities, "%s", f[4]);
    r->kinds = (uint8_t)kinds;
    r->seniority = (uint8_t)sen;
    r->max_tasks = (uint16_t)max;
    return NULL;
}

int readers_load(readers *rs, const char *path, char *err, size_t errlen)
{
    conf_lines cl;
    int rc = conf_lines_open(&cl, path, err, errlen);
    if (rc < 0)
        return rc;
    wl_reader *list = NULL;
    size_t n = 0;
    char *line;
    while ((rc = conf_lines_next(&cl, &line, err, errlen)) > 0) {
        wl_reader r;
        const char *why = parse_reader(line, &r);
        if (why) {
            snprintf(err, errlen, "%s:%d: %s", path, cl.lineno, why);
            rc = -EINVAL;
            break;
        }
        size_t i = 0;
        while (i < n && strcmp(list[i].id, r.id))
            i++;
        if (i < n) { /* which line would win is a guess: refuse, name both */
            snprintf(err, errlen, "%s:%d: reader %s is listed twice (first on line %d)", path, cl.lineno, r.id,
                     conf_lines_line_of(&cl, i));
            rc = -EINVAL;
            break;
        }
        wl_reader *q = realloc(list, (n + 1) * sizeof *q);
        if (!q) {
            snprintf(err, errlen, "%s: out of memory", path);
            rc = -ENOMEM;
            break;
        }
        list = q;
        if ((rc = conf_lines_keep(&cl, err, errlen)) < 0)
            break;
        list[n++] = r;
    }
    conf_lines_close(&cl);
    if (rc < 0) {
        free(list);
        return rc;
    }
    pthread_mutex_lock(&rs->mu);
    free(rs->r);
    rs->r = list;
    rs->n = n;
    pthread_mutex_unlock(&rs->mu);
    return (int)n;
}

int readers_find(readers *rs, const char *id, wl_reader *out)
{
    int rc = -1;
    pthread_mutex_lock(&rs->mu);
    for (size_t i = 0; i < rs->n; i++)
        if (!strcmp(rs->r[i].id, id)) {
            *out = rs->r[i];
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&rs->mu);
    return rc;
}

size_t readers_count(readers *rs)
{
    pthread_mutex_lock(&rs->mu);
    size_t n = rs->n;
    pthread_mutex_unlock(&rs->mu);
    return n;
}

/* readers.c — the readers file (format in readers.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int readers_load(readers *rs, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    wl_reader *list = NULL;
    size_t n = 0;
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        char *p = line + strspn(line, " \t");
        if (*p == '#' || *p == '\n' || !*p)
            continue;
        char id[WL_ID_MAX], sen[32], mods[128], kinds[32], facs[256];
        int max;
        if (sscanf(p, "%63s %31s %127s %31s %255s %d", id, sen, mods, kinds, facs, &max) != 6 ||
            wl_seniority_parse(sen) < 0 || parse_kinds(kinds) <= 0 || max < 1 || max > UINT16_MAX) {
            snprintf(err, errlen, "%s:%d: expected \"ID resident|attending|chief MODALITIES imaging|ecg FACILITIES MAX\"",
                     path, lineno);
            fclose(fp);
            free(list);
            return -EINVAL;
        }
        wl_reader *q = realloc(list, (n + 1) * sizeof *q);
        if (!q) {
            fclose(fp);
            free(list);
            return -ENOMEM;
        }
        list = q;
        wl_reader *r = &list[n++];
        memset(r, 0, sizeof *r);
        snprintf(r->id, sizeof r->id, "%s", id);
        snprintf(r->modalities, sizeof r->modalities, "%s", mods);
        snprintf(r->facilities, sizeof r->facilities, "%s", facs);
        r->kinds = (uint8_t)parse_kinds(kinds);
        r->seniority = (uint8_t)wl_seniority_parse(sen);
        r->max_tasks = (uint16_t)max;
    }
    fclose(fp);
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

/* api_dicomweb_path.c — what a DICOMweb request names: the path below
 * /dicom-web (a search, metadata or retrieval, at which level, of which
 * UIDs) and the transfer syntax its Accept header asks for.  Pure
 * functions over what the client sent (tests/fuzz/fuzz_dicomweb.c). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "hub/api_private.h"
#include "codecs/banned.h"

/* "1,3,5": frame numbers from 1, at most API_DW_FRAMES_MAX. */
static bool frame_list(const char *s, size_t len, api_dw_path *p)
{
    p->what = API_DW_FRAMES;
    for (size_t i = 0; i < len;) {
        size_t l = 0;
        uint64_t v = 0;
        while (i + l < len && s[i + l] >= '0' && s[i + l] <= '9' && l < 10)
            v = v * 10 + (uint64_t)(s[i + l++] - '0');
        if (!l || v == 0 || v > UINT32_MAX || p->n_frames == API_DW_FRAMES_MAX)
            return false;
        p->frames[p->n_frames++] = (uint32_t)v;
        i += l;
        if (i < len && s[i++] != ',')
            return false;
        if (i == len && s[len - 1] == ',')
            return false;
    }
    return p->n_frames > 0;
}

/* Splits url (after "/dicom-web") into p; false when it names nothing here. */
bool api_dicomweb_path(const char *url, api_dw_path *p)
{
    memset(p, 0, sizeof *p);
    const char *seg[10]; /* the longest: studies S series SE instances I frames LIST rendered */
    size_t len[10];
    int n = 0;
    for (const char *s = url; *s && n < 10;) {
        if (*s++ != '/')
            return false;
        size_t l = strcspn(s, "/");
        if (!l)
            return false;
        seg[n] = s;
        len[n++] = l;
        s += l;
    }
    if (n == 10 || n == 0 || len[0] != 7 || strncmp(seg[0], "studies", 7))
        return false;
    const char *names[3] = {"studies", "series", "instances"};
    const char **uids[3] = {&p->study, &p->series, &p->instance};
    int i = 0, level = 0;
    for (;;) {
        if (i + 1 == n) { /* ends with a level's name: a search there */
            if (level == 0) p->what = API_DW_SEARCH_STUDIES;
            else if (level == 1) p->what = API_DW_SEARCH_SERIES;
            else p->what = API_DW_SEARCH_INSTANCES;
            return true;
        }
        if (len[i + 1] > STORE_UID_MAX) /* kept short: the UID check fails with 400 */
            len[i + 1] = STORE_UID_MAX;
        snprintf(p->buf[level], sizeof p->buf[level], "%.*s", (int)len[i + 1], seg[i + 1]);
        *uids[level] = p->buf[level];
        i += 2;
        if (i == n) {
            p->what = API_DW_RETRIEVE;
            return true;
        }
        if (len[i] == 8 && !strncmp(seg[i], "metadata", 8) && i + 1 == n) {
            p->what = API_DW_METADATA;
            return true;
        }
        if (level == 2 && len[i] == 8 && !strncmp(seg[i], "rendered", 8) && i + 1 == n) {
            p->what = API_DW_RENDERED; /* an instance rendered: its first frame */
            p->frames[p->n_frames++] = 1;
            return true;
        }
        if (level == 2 && len[i] == 6 && !strncmp(seg[i], "frames", 6) && i + 2 == n)
            return frame_list(seg[i + 1], len[i + 1], p);
        if (level == 2 && len[i] == 6 && !strncmp(seg[i], "frames", 6) && i + 3 == n && len[i + 2] == 8 &&
            !strncmp(seg[i + 2], "rendered", 8)) {
            if (!frame_list(seg[i + 1], len[i + 1], p) || p->n_frames != 1)
                return false; /* one frame is rendered at a time */
            p->what = API_DW_RENDERED;
            return true;
        }
        /* the next level's name: series after a study, instances after a
         * study or a series */
        if (level == 0 && len[i] == 9 && !strncmp(seg[i], "instances", 9) && i + 1 == n) {
            p->what = API_DW_SEARCH_INSTANCES;
            return true;
        }
        level++;
        if (level > 2 || len[i] != strlen(names[level]) || strncmp(seg[i], names[level], len[i]))
            return false;
    }
}

/* The part type of a multipart/related media range ("type=..." without
 * its quote), or NULL when it names none. */
static const char *part_type(const char *range)
{
    const char *type = strcasestr(range, "type=");
    return type ? type + 5 + (type[5] == '"') : NULL;
}

/* multipart/related of application/dicom (not application/dicom+json...), or anything. */
static bool takes_dicom(const char *range)
{
    if (!strncmp(range, "*/*", 3))
        return true;
    if (strncasecmp(range, "multipart/related", 17))
        return false;
    const char *type = part_type(range);
    return !type || (!strncasecmp(type, "application/dicom", 17) && type[17] != '+');
}

/* Bulk data: application/octet-stream or an image type, in multipart/related or alone. */
static bool takes_bulk(const char *range)
{
    if (!strncmp(range, "*/*", 3) || !strncasecmp(range, "application/octet-stream", 24))
        return true;
    if (strncasecmp(range, "multipart/related", 17))
        return false;
    const char *type = part_type(range);
    return !type || !strncasecmp(type, "application/octet-stream", 24) || !strncasecmp(type, "image/", 6);
}

/* Accept is a list of media ranges: the first that takes() accepts gives
 * its transfer-syntax parameter into buf, or "" when it names none; NULL
 * when none is accepted. */
static const char *first_taken(const char *accept, bool (*takes)(const char *range), char *buf, size_t n)
{
    for (const char *a = accept; *a;) {
        size_t l = strcspn(a, ",");
        char range[512];
        snprintf(range, sizeof range, "%.*s", (int)(l < sizeof range - 1 ? l : sizeof range - 1), a);
        a += l + (a[l] == ',');
        const char *t = range;
        while (*t == ' ')
            t++;
        if (!takes(t))
            continue;
        const char *ts = strcasestr(t, "transfer-syntax=");
        if (!ts)
            return "";
        ts += 16;
        if (*ts == '"')
            ts++;
        size_t tl = strcspn(ts, "\";, ");
        snprintf(buf, n, "%.*s", (int)(tl < n - 1 ? tl : n - 1), ts);
        return buf;
    }
    return NULL;
}

const char *api_dicomweb_accept_ts(const char *accept, char *buf, size_t n)
{
    const char *ts = accept && *accept ? first_taken(accept, takes_dicom, buf, n) : "";
    return ts && (!*ts || !strcmp(ts, "*")) ? "*" : ts; /* nothing named: as stored */
}

const char *api_dicomweb_accept_frames(const char *accept, char *buf, size_t n)
{
    const char *ts = accept && *accept ? first_taken(accept, takes_bulk, buf, n) : "";
    return ts && !strcmp(ts, "*") ? "*" : ts;
}

const char *api_dicomweb_accept_rendered(const char *accept)
{
    if (!accept || !*accept)
        return "image/jpeg";
    for (const char *a = accept; *a;) {
        size_t l = strcspn(a, ",");
        const char *t = a;
        while (t < a + l && *t == ' ')
            t++;
        size_t tl = (size_t)(a + l - t);
        if (tl >= 9 && !strncasecmp(t, "image/png", 9))
            return "image/png";
        if ((tl >= 10 && !strncasecmp(t, "image/jpeg", 10)) || (tl >= 7 && !strncasecmp(t, "image/*", 7)) ||
            (tl >= 3 && !strncmp(t, "*/*", 3)))
            return "image/jpeg";
        a += l + (a[l] == ',');
    }
    return NULL;
}

/* audit_filter.c — the rules of audit_filter.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "hub/audit_filter.h"

/* n decimal digits at s into *v. */
static bool digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

int audit_parse_time(const char *s, int64_t *ms, bool *day_only)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, off = 0;
    size_t n = strlen(s);
    if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return -EINVAL;
    const char *p = s + 10;
    *day_only = *p == '\0';
    if (!*day_only) {
        if (*p != 'T' || !digits(p + 1, 2, &h) || p[3] != ':' || !digits(p + 4, 2, &mi))
            return -EINVAL;
        p += 6;
        if (*p == ':') {
            if (!digits(p + 1, 2, &sec))
                return -EINVAL;
            p += 3;
        }
        if (*p == 'Z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh, om;
            if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 14 || om > 59)
                return -EINVAL;
            off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
            p += 6;
        }
        if (*p)
            return -EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) /* 2026-02-30 normalised to March */
        return -EINVAL;
    *ms = ((int64_t)t - off) * 1000;
    return 0;
}

bool audit_who_matches(const char *pattern, const char *who)
{
    size_t n = strlen(pattern);
    if (strncmp(pattern, who, n) != 0)
        return false;
    return who[n] == '\0' || who[n] == ':' || who[n] == '/';
}

bool audit_detail_names_patient(const char *detail, const char *id)
{
    size_t n = strlen(id);
    for (const char *p = strstr(detail, "PatientID="); p; p = strstr(p + 1, "PatientID=")) {
        const char *v = p + strlen("PatientID=");
        bool starts = p == detail || p[-1] == ' ';
        if (starts && strncmp(v, id, n) == 0 && (v[n] == '\0' || v[n] == ' '))
            return true;
    }
    return false;
}

/* what is one of the comma-separated actions of list. */
static bool in_list(const char *list, const char *what)
{
    size_t n = strlen(what);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, what, n) == 0)
            return true;
        p += len + (comma ? 1 : 0);
    }
    return false;
}

bool audit_filter_match(const audit_filter *f, const audit_entry *e, const char *study_patient)
{
    if (f->since_ms && e->t_ms < f->since_ms)
        return false;
    if (f->until_ms && e->t_ms >= f->until_ms)
        return false;
    if (f->who && !audit_who_matches(f->who, e->who))
        return false;
    if (f->what && !in_list(f->what, e->what))
        return false;
    if (f->study && strcmp(f->study, e->study) != 0)
        return false;
    if (f->patient) {
        const char *p = *e->patient ? e->patient : study_patient ? study_patient : "";
        if (strcmp(p, f->patient) != 0 && !audit_detail_names_patient(e->detail, f->patient))
            return false;
    }
    return true;
}

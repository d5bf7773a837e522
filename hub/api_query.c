/* api_query.c — the query parameters of the HTTP API: which names a path
 * takes (keywords, or tags as QIDO-RS allows), and the checks that turn
 * them into a store filter.  A parameter that is unknown, repeated or
 * malformed is refused by name: a typo ("PatientId") must not silently
 * widen a query to every patient. */
#include <stdio.h>
#include <string.h>
#include "codecs/codecs.h"
#include "hub/api_private.h"
#include "hub/pn_match.h"
#include "codecs/banned.h"

const api_param_name api_param_names[API_P_COUNT] = {
    [API_P_PATIENT_ID] = {"PatientID", "00100020"},
    [API_P_STUDY_DATE] = {"StudyDate", "00080020"},
    [API_P_MODALITY] = {"ModalitiesInStudy", "00080061"},
    [API_P_ACCESSION] = {"AccessionNumber", "00080050"},
    [API_P_STUDY_UID] = {"StudyInstanceUID", "0020000D"},
    [API_P_STATE] = {"state", NULL},
    [API_P_OFFSET] = {"offset", NULL},
    [API_P_LIMIT] = {"limit", NULL},
    [API_P_LENGTH] = {"length", NULL},
    [API_P_SINCE] = {"since", NULL},
    [API_P_TYPE] = {"type", NULL},
    [API_P_SCOPE] = {"scope", NULL},
    [API_P_INCLUDEFIELD] = {"includefield", NULL},
    [API_P_FUZZY] = {"fuzzymatching", NULL},
    [API_P_PATIENT_NAME] = {"PatientName", "00100010"},
    [API_P_WINDOW] = {"window", NULL},
    [API_P_QUALITY] = {"quality", NULL},
};

void api_params_add(api_params *p, const char *key, const char *value)
{
    if (p->bad)
        return;
    for (int i = 0; i < API_P_COUNT; i++) {
        const api_param_name *n = &api_param_names[i];
        if (strcmp(key, n->name) && (!n->tag || strcmp(key, n->tag)))
            continue;
        if (!(p->allowed & 1u << i))
            break;
        if (p->v[i] && i == API_P_INCLUDEFIELD)
            return; /* QIDO-RS lets it repeat */
        if (p->v[i]) {
            p->bad = key;
            p->bad_why = "given more than once";
            return;
        }
        p->v[i] = value ? value : "";
        p->given[i] = key;
        return;
    }
    p->bad = key;
    p->bad_why = "unknown parameter for this path";
}

bool api_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    size_t n = strlen(s);
    if (!n || n > 19 || strspn(s, "0123456789") != n)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    if (v > max)
        return false;
    *out = v;
    return true;
}

bool api_valid_uid(const char *s) { return dcm_uid_valid(s); }

static bool valid_date(const char *s, size_t n)
{
    if (n != 8 || strspn(s, "0123456789") < 8)
        return false;
    int m = (s[4] - '0') * 10 + (s[5] - '0'), d = (s[6] - '0') * 10 + (s[7] - '0');
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

/* "YYYYMMDD", "YYYYMMDD-YYYYMMDD", "YYYYMMDD-", "-YYYYMMDD" (PS3.4 C.2.2.2.5). */
static const char *parse_date_range(const char *s, char from[9], char to[9])
{
    const char *dash = strchr(s, '-');
    size_t n = strlen(s);
    size_t a = dash ? (size_t)(dash - s) : n, b = dash ? n - a - 1 : 0;
    if (dash && !a && !b)
        return "a range needs at least one date";
    if ((a && !valid_date(s, a)) || (b && !valid_date(dash + 1, b)) || (!dash && !a))
        return "dates are YYYYMMDD; a range is FROM-TO, FROM- or -TO";
    from[0] = to[0] = 0;
    if (a)
        snprintf(from, 9, "%.8s", s);
    if (b)
        snprintf(to, 9, "%.8s", dash + 1);
    else if (!dash)
        snprintf(to, 9, "%.8s", s);
    if (from[0] && to[0] && strcmp(from, to) > 0)
        return "the range ends before it starts";
    return NULL;
}

/* A DICOM string matched exactly: no wildcards, no backslash, no controls. */
static const char *check_text(const char *s, size_t max)
{
    if (!s[0])
        return "empty";
    if (strlen(s) > max)
        return "too long for its value representation";
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 || *c == '\\')
            return "control characters and backslashes are not allowed";
        if (*c == '*' || *c == '?')
            return "wildcards are not supported: give the exact value";
    }
    return NULL;
}

static const char *check_modality(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > 16 || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ ") != n)
        return "a modality code (CS: upper case letters, digits, underscore; at most 16)";
    return NULL;
}

/* One function per list parameter: check the value, set the query; the
 * reason it is unusable, or NULL. */
static const char *take_patient_id(const char *v, api_list_query *q)
{
    const char *why = check_text(v, 64); /* LO */
    if (!why)
        q->flt.patient_id = v;
    return why;
}

static const char *take_accession(const char *v, api_list_query *q)
{
    const char *why = check_text(v, 16); /* SH */
    if (!why)
        q->flt.accession = v;
    return why;
}

static const char *take_modality(const char *v, api_list_query *q)
{
    const char *why = check_modality(v);
    if (!why)
        q->flt.modality = v;
    return why;
}

static const char *take_study_date(const char *v, api_list_query *q)
{
    const char *why = parse_date_range(v, q->from, q->to);
    if (!why) {
        q->flt.date_from = q->from[0] ? q->from : NULL;
        q->flt.date_to = q->to[0] ? q->to : NULL;
    }
    return why;
}

static const char *take_study_uid(const char *v, api_list_query *q)
{
    q->study_uid = v;
    return api_valid_uid(v) ? NULL : "a UID: digits and dots, at most 64";
}

static const char *take_state(const char *v, api_list_query *q)
{
    q->flt.state = study_state_parse(v);
    return q->flt.state >= 0 ? NULL : "one of receiving, complete, queued, reading, reported, signed";
}

static const char *take_offset(const char *v, api_list_query *q)
{
    return api_parse_uint(v, INT32_MAX, &q->offset) ? NULL : "a non-negative integer";
}

static const char *take_limit(const char *v, api_list_query *q)
{
    return api_parse_uint(v, API_LIST_MAX, &q->limit) ? NULL : "an integer from 0 to 1000";
}

static const char *take_patient_name(const char *v, api_list_query *q)
{
    size_t n = strlen(v);
    if (!n || n > 200)
        return "a name or a pattern (* any run, ? one character), 1 to 200 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20)
            return "a name or a pattern without control characters";
    q->flt.patient_name = v;
    return NULL;
}

static const char *take_fuzzy(const char *v, api_list_query *q)
{
    (void)q;
    return !strcmp(v, "true") || !strcmp(v, "false") ? NULL : "true or false";
}

static const char *take_ignored(const char *v, api_list_query *q)
{
    (void)v;
    (void)q;
    return NULL;
}

static const char *(*const list_takers[API_P_COUNT])(const char *, api_list_query *) = {
    [API_P_PATIENT_ID] = take_patient_id, [API_P_STUDY_DATE] = take_study_date,
    [API_P_MODALITY] = take_modality,     [API_P_ACCESSION] = take_accession,
    [API_P_STUDY_UID] = take_study_uid,   [API_P_STATE] = take_state,
    [API_P_OFFSET] = take_offset,         [API_P_LIMIT] = take_limit,
    [API_P_INCLUDEFIELD] = take_ignored,  [API_P_FUZZY] = take_fuzzy,
    [API_P_PATIENT_NAME] = take_patient_name,
};

bool api_list_query_parse(const api_params *p, api_list_query *q, const char **name, const char **why)
{
    memset(q, 0, sizeof *q);
    q->flt.state = -1;
    q->limit = API_LIST_DEFAULT;
    for (int i = 0; i < API_P_COUNT; i++) {
        if (!p->v[i])
            continue;
        const char *w = list_takers[i] ? list_takers[i](p->v[i], q) : "not taken by this path";
        if (w) {
            *name = p->given[i];
            *why = w;
            return false;
        }
    }
    return true;
}

/* The store's filter (store_list_studies), applied to the one study a
 * StudyInstanceUID names: the same rules, so both paths agree. */
bool api_study_matches(const store_study *st, const store_study_filter *f)
{
    if ((f->patient_id && strcmp(st->patient_id, f->patient_id)) ||
        (f->accession && strcmp(st->accession, f->accession)) || (f->state >= 0 && st->state != f->state) ||
        (f->patient_name && !pn_match(f->patient_name, st->patient_name)) ||
        (f->date_from && strcmp(st->study_date, f->date_from) < 0) ||
        (f->date_to && strcmp(st->study_date, f->date_to) > 0))
        return false;
    if (!f->modality)
        return true;
    size_t ml = strlen(f->modality);
    for (const char *m = st->modalities; *m;) {
        size_t l = strcspn(m, "\\");
        if (l == ml && !strncmp(m, f->modality, l))
            return true;
        m += l + (m[l] == '\\');
    }
    return false;
}

void api_list_audit_detail(const api_params *p, size_t shown, int total, char *out, size_t n)
{
    size_t len = (size_t)snprintf(out, n, "shown=%zu total=%d", shown, total);
    for (int i = 0; i < API_P_COUNT && len < n; i++)
        if (p->v[i])
            len += (size_t)snprintf(out + len, n - len, " %s=%s", api_param_names[i].name,
                                    i == API_P_PATIENT_NAME ? "(a name: not recorded)" : p->v[i]);
}

/* report.c — the report document: built once (report_build), then only
 * read (report_parse); digests checked against a lookup. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/digest.h"
#include "hub/report.h"
#include "hub/errbuf.h"
#include "codecs/banned.h"

static const struct {
    int         code;
    const char *text;
} errors[] = {
    {REPORT_EFORMAT, "not a report document"},
    {REPORT_EUNSIGNED, "signing requires a signature and the signer's certificate chain"},
    {REPORT_ESIGNER, "signer is not the reader holding the task"},
    {REPORT_ESTUDY, "the report is for another study"},
    {REPORT_EDIGEST, "instance digests do not match the stored study"},
    {REPORT_ELOOKUP, "looking up the stored digests failed"},
};

const char *report_strerror(int code)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].code == code)
            return errors[i].text;
    return pki_strerror(code);
}

/* --- syntax of the identifiers ---------------------------------------------- */

static int is_report_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    /* It names files at the clinic and in exports: a leading letter or
     * digit keeps ".", ".." and hidden names out. */
    if (!n || n > REPORT_ID_MAX || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
                                     (s[0] >= '0' && s[0] <= '9')))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* PS3.5 §9.1: digits and dots, at most 64. */
static int is_uid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (!n || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
            return 0;
    return 1;
}

static int is_date(const char *s)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return 0;
    return 1;
}

/* "YYYY-MM-DDThh:mm:ssZ", as report_build writes times.reported. */
static int is_timestamp(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (!s || strlen(s) != sizeof shape - 1)
        return 0;
    for (size_t i = 0; i < sizeof shape - 1; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return 0;
    return 1;
}

static int is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* --- building ----------------------------------------------------------------- */

static int cmp_inst(const void *a, const void *b)
{
    return strcmp(((const report_instance *)a)->sop, ((const report_instance *)b)->sop);
}

/* A string member; jansson refuses invalid UTF-8 (NULL). */
static int put_str(json_t *o, const char *key, const char *val, int nullable)
{
    json_t *v = val ? json_string(val) : nullable ? json_null() : NULL;
    return v ? json_object_set_new(o, key, v) : -1;
}

int report_build(const report_fields *f, const report_instance *inst, size_t n, char **out, size_t *out_len,
                 char *err, size_t errlen)
{
    if (!f || !out || !out_len)
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "no fields");
    if (!is_report_id(f->report_id))
        return errbuf_fail(REPORT_EFORMAT, err, errlen,
                           "report_id must be 1..%d of A-Z a-z 0-9 . _ -, starting with a letter or digit",
                           REPORT_ID_MAX);
    if (f->supersedes && !is_report_id(f->supersedes))
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "supersedes must be a report id");
    if (!is_uid(f->study_uid))
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "study_uid is not a UID");
    if (!f->patient_id || !f->origin_facility || !f->reading_facility || !f->reader_id || !f->reader_role ||
        !f->findings || !f->impression || !f->exam_type)
        return errbuf_fail(REPORT_EFORMAT, err, errlen,
                    "patient_id, origin_facility, reading_facility, reader id and role, findings, impression and "
                    "exam_type are required");
    if (f->valid_until && !is_date(f->valid_until))
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "valid_until must be YYYY-MM-DD");
    if (!n || !inst || n > REPORT_MAX_INSTANCES)
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "a report lists 1..%d instances", REPORT_MAX_INSTANCES);
    if (f->reported <= 0)
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "the report time is required");
    if (f->drafted_by && !f->drafted_by[0])
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "drafted_by must name the resident");

    report_instance *sorted = malloc(n * sizeof *sorted);
    if (!sorted)
        return errbuf_fail(-ENOMEM, err, errlen, "out of memory");
    memcpy(sorted, inst, n * sizeof *sorted);
    for (size_t i = 0; i < n; i++)
        if (!is_uid(sorted[i].sop)) {
            free(sorted);
            return errbuf_fail(REPORT_EFORMAT, err, errlen, "instance %zu: not a SOP Instance UID", i);
        }
    qsort(sorted, n, sizeof *sorted, cmp_inst);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(sorted[i - 1].sop, sorted[i].sop)) {
            free(sorted);
            return errbuf_fail(REPORT_EFORMAT, err, errlen, "an instance is listed twice");
        }

    char when[32];
    struct tm tm;
    gmtime_r(&f->reported, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);

    json_t *doc = json_object(), *reader = json_object(), *insts = json_object(), *times = json_object(),
           *recog = json_object(), *drafted = f->drafted_by ? json_object() : NULL;
    int bad = !doc || !reader || !insts || !times || !recog;
    for (size_t i = 0; !bad && i < n; i++) {
        char hex[65];
        digest_hex(sorted[i].digest, hex);
        bad = json_object_set_new(insts, sorted[i].sop, json_string(hex)) < 0;
    }
    free(sorted);
    bad = bad || put_str(reader, "id", f->reader_id, 0) || put_str(reader, "role", f->reader_role, 0) ||
          (f->reader_name && put_str(reader, "name", f->reader_name, 0)) ||
          put_str(times, "reported", when, 0) || (f->exam_time && put_str(times, "exam", f->exam_time, 0)) ||
          put_str(recog, "exam_type", f->exam_type, 0) || put_str(recog, "scope", f->scope, 1) ||
          put_str(recog, "valid_until", f->valid_until, 1);
    bad = bad || put_str(doc, "format", REPORT_FORMAT, 0) || put_str(doc, "report_id", f->report_id, 0) ||
          json_object_set_new(doc, "version", json_integer(f->version ? f->version : 1)) ||
          put_str(doc, "supersedes", f->supersedes, 1) || put_str(doc, "study_uid", f->study_uid, 0) ||
          put_str(doc, "patient_id", f->patient_id, 0) || put_str(doc, "origin_facility", f->origin_facility, 0) ||
          put_str(doc, "reading_facility", f->reading_facility, 0) || put_str(doc, "findings", f->findings, 0) ||
          put_str(doc, "impression", f->impression, 0) ||
          json_object_set_new(doc, "critical", json_boolean(f->critical));
    bad = bad || (drafted && (put_str(drafted, "id", f->drafted_by, 0) ||
                              (f->drafted_by_name && put_str(drafted, "name", f->drafted_by_name, 0)) ||
                              json_object_set(doc, "drafted_by", drafted)));
    json_decref(drafted);
    if (!bad) {
        json_object_set(doc, "reader", reader);
        json_object_set(doc, "instances", insts);
        json_object_set(doc, "times", times);
        json_object_set(doc, "recognition", recog);
    }
    json_decref(reader);
    json_decref(insts);
    json_decref(times);
    json_decref(recog);
    if (bad) {
        json_decref(doc);
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "a text member is not valid UTF-8 (or out of memory)");
    }
    /* Sorted keys, compact, no \u escapes for UTF-8 (JSON_ENSURE_ASCII off). */
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    if (!text)
        return errbuf_fail(-ENOMEM, err, errlen, "out of memory");
    size_t len = strlen(text);
    if (len + 1 > REPORT_MAX_BYTES) {
        free(text);
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "the report exceeds %u bytes", REPORT_MAX_BYTES);
    }
    char *p = realloc(text, len + 2);
    if (!p) {
        free(text);
        return errbuf_fail(-ENOMEM, err, errlen, "out of memory");
    }
    p[len] = '\n';
    p[len + 1] = '\0';
    *out = p;
    *out_len = len + 1;
    return 0;
}

/* --- reading ------------------------------------------------------------------ */

struct report_doc {
    json_t         *root;
    report_info     info;
    const char    **sops;  /* sorted */
    const char    **hexes;
};

static const char *get_str(json_t *o, const char *key, int nullable, int *bad)
{
    json_t *v = json_object_get(o, key);
    if (nullable && (!v || json_is_null(v)))
        return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    return json_string_value(v);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int report_parse(const void *bytes, size_t len, report_doc **out, char *err, size_t errlen)
{
    if (!bytes || !len || len > REPORT_MAX_BYTES)
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "a report is 1..%u bytes", REPORT_MAX_BYTES);
    json_error_t je;
    json_t *root = json_loadb(bytes, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "report is not JSON (line %d column %d)", je.line, je.column);
    report_doc *d = calloc(1, sizeof *d);
    if (!d) {
        json_decref(root);
        return errbuf_fail(-ENOMEM, err, errlen, "out of memory");
    }
    d->root = root;
    report_info *in = &d->info;
    int bad = !json_is_object(root);
    json_t *reader = json_object_get(root, "reader"), *times = json_object_get(root, "times"),
           *recog = json_object_get(root, "recognition"), *insts = json_object_get(root, "instances"),
           *ver = json_object_get(root, "version"), *crit = json_object_get(root, "critical");
    if (bad || !json_is_object(reader) || !json_is_object(times) || !json_is_object(recog) ||
        !json_is_object(insts) || !json_is_integer(ver) || !json_is_boolean(crit)) {
        report_free(&d);
        return errbuf_fail(REPORT_EFORMAT, err, errlen,
                    "report lacks reader, times, recognition, instances, version or critical (or has the wrong type)");
    }
    in->format = get_str(root, "format", 0, &bad);
    in->report_id = get_str(root, "report_id", 0, &bad);
    in->study_uid = get_str(root, "study_uid", 0, &bad);
    in->patient_id = get_str(root, "patient_id", 0, &bad);
    in->origin_facility = get_str(root, "origin_facility", 0, &bad);
    in->reading_facility = get_str(root, "reading_facility", 0, &bad);
    in->supersedes = get_str(root, "supersedes", 1, &bad);
    in->findings = get_str(root, "findings", 0, &bad);
    in->impression = get_str(root, "impression", 0, &bad);
    in->exam_time = json_string_value(json_object_get(times, "exam")); /* free text, optional */
    in->reader_id = get_str(reader, "id", 0, &bad);
    in->reader_role = get_str(reader, "role", 0, &bad);
    in->reader_name = get_str(reader, "name", 1, &bad);
    in->reported = get_str(times, "reported", 0, &bad);
    json_t *drafted = json_object_get(root, "drafted_by");
    if (drafted && !json_is_null(drafted)) {
        if (!json_is_object(drafted))
            bad = 1;
        else {
            in->drafted_by = get_str(drafted, "id", 0, &bad);
            in->drafted_by_name = get_str(drafted, "name", 1, &bad);
            if (!in->drafted_by_name)
                in->drafted_by_name = "";
        }
    }
    in->exam_type = get_str(recog, "exam_type", 0, &bad);
    in->scope = get_str(recog, "scope", 1, &bad);
    const char *until = in->valid_until = get_str(recog, "valid_until", 1, &bad);
    if (bad) {
        report_free(&d);
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "a required text member of the report is missing or not text");
    }
    if (!in->reader_name)
        in->reader_name = "";
    if (strcmp(in->format, REPORT_FORMAT)) {
        report_free(&d);
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "report format is not %s", REPORT_FORMAT);
    }
    json_int_t v = json_integer_value(ver);
    if (!is_report_id(in->report_id) || (in->supersedes && !is_report_id(in->supersedes)) ||
        !is_uid(in->study_uid) || v < 1 || v > 1000000 || (until && !is_date(until)) ||
        !is_timestamp(in->reported)) {
        report_free(&d);
        return errbuf_fail(REPORT_EFORMAT, err, errlen,
                    "report_id, supersedes, study_uid, version, times.reported or valid_until malformed");
    }
    in->version = (unsigned)v;
    in->critical = json_is_true(crit);
    size_t n = json_object_size(insts);
    if (!n || n > REPORT_MAX_INSTANCES) {
        report_free(&d);
        return errbuf_fail(REPORT_EFORMAT, err, errlen, "a report lists 1..%d instances", REPORT_MAX_INSTANCES);
    }
    d->sops = calloc(n, sizeof *d->sops);
    d->hexes = calloc(n, sizeof *d->hexes);
    if (!d->sops || !d->hexes) {
        report_free(&d);
        return errbuf_fail(-ENOMEM, err, errlen, "out of memory");
    }
    const char *key;
    json_t *val;
    size_t k = 0;
    json_object_foreach(insts, key, val) {
        if (!is_uid(key) || !json_is_string(val) || !is_hex64(json_string_value(val))) {
            report_free(&d);
            return errbuf_fail(REPORT_EFORMAT, err, errlen, "instance %zu: not a SOP UID with a hex SHA-256 digest", k);
        }
        d->sops[k++] = key;
    }
    qsort(d->sops, n, sizeof *d->sops, cmp_str);
    for (size_t i = 0; i < n; i++)
        d->hexes[i] = json_string_value(json_object_get(insts, d->sops[i]));
    in->n_instances = n;
    *out = d;
    return 0;
}

void report_free(report_doc **d)
{
    if (!d || !*d)
        return;
    json_decref((*d)->root);
    free((*d)->sops);
    free((*d)->hexes);
    free(*d);
    *d = NULL;
}

const report_info *report_doc_info(const report_doc *d)
{
    return &d->info;
}

int report_doc_instance(const report_doc *d, size_t i, report_instance *out)
{
    if (!d || i >= d->info.n_instances)
        return REPORT_EFORMAT;
    out->sop = d->sops[i];
    return digest_from_hex(d->hexes[i], out->digest) < 0 ? REPORT_EFORMAT : 0;
}

int report_check_digests(const report_doc *d, report_digest_fn lookup, void *ctx, const char *where, char *why,
                         size_t whylen)
{
    size_t n = d->info.n_instances, differ = 0, missing = 0;
    for (size_t i = 0; i < n; i++) {
        report_instance ri;
        uint8_t got[32];
        if (report_doc_instance(d, i, &ri) < 0)
            return errbuf_fail(REPORT_EFORMAT, why, whylen, "instance %zu: malformed digest", i);
        int rc = lookup(ctx, ri.sop, got);
        if (rc == -ENOENT)
            missing++;
        else if (rc < 0)
            return errbuf_fail(REPORT_ELOOKUP, why, whylen, "looking up the stored digests failed: %s",
                        rc > -4096 ? strerror(-rc) : "store error");
        else if (memcmp(got, ri.digest, 32))
            differ++;
    }
    if (differ || missing)
        return errbuf_fail(REPORT_EDIGEST, why, whylen,
                           "instance digests do not match %s (%zu of %zu differ, %zu missing)",
                    where, differ, n, missing);
    return 0;
}

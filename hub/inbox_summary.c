/* inbox_summary.c — see inbox_summary.h. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/b64.h"
#include "hub/inbox_summary.h"
#include "hub/person_name.h"

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* "20250601" → "2025-06-01"; anything else as it is. */
static void exam_line(char *out, size_t n, const char *modalities, const char *date)
{
    char d[16];
    if (strlen(date) == 8)
        snprintf(d, sizeof d, "%.4s-%.2s-%.2s", date, date + 4, date + 6);
    else
        snprintf(d, sizeof d, "%.10s", date);
    snprintf(out, n, "%s%s%s", modalities, *modalities && *d ? " " : "", d);
    for (char *c = out; *c; c++)
        if (*c == '\\')
            *c = '/'; /* CT\SR reads as CT/SR */
}

/* The signed document inside a report bundle: its impression, and whether
 * it says critical. */
static void report_text(json_t *bundle, inbox_summary *out)
{
    const char *b64 = str(bundle, "report_b64");
    uint8_t *doc = NULL;
    size_t n = 0;
    if (!*b64 || base64_decode(b64, strlen(b64), &doc, &n) < 0)
        return;
    json_t *j = json_loadb((const char *)doc, n, 0, NULL);
    snprintf(out->text, sizeof out->text, "%s", str(j, "impression"));
    snprintf(out->supersedes, sizeof out->supersedes, "%s", str(j, "supersedes"));
    out->critical = out->critical || json_is_true(json_object_get(j, "critical"));
    out->alert = out->alert || out->critical;
    json_decref(j);
    free(doc);
}

int inbox_summary_read(const char *kind, const void *data, size_t len, inbox_summary *out)
{
    memset(out, 0, sizeof *out);
    out->alert = kind && !strcmp(kind, "alert");
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return -1;
    }
    int rc = 0;
    snprintf(out->study_uid, sizeof out->study_uid, "%s", str(j, "study"));
    if (!strcmp(str(j, "type"), "ecg-repeat-request")) {
        const char *acc = str(j, "accession");
        if (*acc)
            snprintf(out->exam, sizeof out->exam, "ECG, accession %s", acc);
        else
            snprintf(out->exam, sizeof out->exam, "ECG");
        snprintf(out->text, sizeof out->text, "%s (%s)", str(j, "request"), str(j, "reason"));
    } else if (*str(j, "report_id")) {
        json_t *exam = json_object_get(j, "exam");
        snprintf(out->patient_id, sizeof out->patient_id, "%s", str(exam, "patient_id"));
        person_name_readable(str(exam, "patient_name"), out->patient_name, sizeof out->patient_name);
        exam_line(out->exam, sizeof out->exam, str(exam, "modalities"), str(exam, "study_date"));
        out->critical = json_is_true(json_object_get(j, "critical"));
        out->alert = out->alert || out->critical;
        report_text(j, out);
    } else {
        rc = -1;
    }
    json_decref(j);
    return rc;
}

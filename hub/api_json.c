/* api_json.c — the HTTP API's JSON: a study as a DICOM JSON object
 * (PS3.18 Annex F), and a study's series/instances tree (each instance's
 * header from api_header.c plus its "dxhub" member), written into the
 * text buffer of api_jbuf.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "codecs/codecs.h"
#include "hub/api_private.h"
#include "codecs/banned.h"

int64_t api_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t api_mono_ms(void) { return api_mono_us() / 1000; }

int64_t api_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- a study as DICOM JSON ----------------------------------------- */

/* "TTTTTTTT":{"vr":"XX","Value":["a","b"]} — values split at '\\' when
 * multi, one value otherwise; no Value member when empty (F.2.5). */
/* "TTTTTTTT":{"vr":"XX" — the opening every attribute shares. */
static void attr_open(jbuf *b, const char *tag, const char *vr)
{
    char t[] = "\"TTTTTTTT\":{\"vr\":\"XX\"";
    memcpy(t + 1, tag, 8);
    memcpy(t + 18, vr, 2);
    jb_put(b, t, sizeof t - 1);
}

static void attr_str(jbuf *b, const char *tag, const char *vr, const char *v, bool multi)
{
    attr_open(b, tag, vr);
    if (v[0]) {
        jb_puts(b, ",\"Value\":[");
        for (const char *p = v;;) {
            size_t l = multi ? strcspn(p, "\\") : strlen(p);
            jb_strn(b, p, l);
            if (!p[l])
                break;
            jb_put(b, ",", 1);
            p += l + 1;
        }
        jb_put(b, "]", 1);
    }
    jb_put(b, "}", 1);
}

/* PN as an object of component groups (F.2.2): alphabetic=ideographic=phonetic. */
static void attr_pn(jbuf *b, const char *tag, const char *name)
{
    static const char *const groups[3] = {"Alphabetic", "Ideographic", "Phonetic"};
    attr_open(b, tag, "PN");
    if (name[0]) {
        jb_puts(b, ",\"Value\":[{");
        const char *p = name;
        bool any = false;
        for (int g = 0; g < 3; g++) {
            size_t l = strcspn(p, "=");
            if (l) {
                if (any)
                    jb_put(b, ",", 1);
                jb_put(b, "\"", 1);
                jb_puts(b, groups[g]);
                jb_put(b, "\":", 2);
                jb_strn(b, p, l);
                any = true;
            }
            if (!p[l])
                break;
            p += l + 1;
        }
        jb_puts(b, "}]");
    }
    jb_put(b, "}", 1);
}

static const char *priority_name(unsigned p)
{
    static const char *const names[] = {"routine", "urgent", "stat"};
    return p < 3 ? names[p] : "unknown";
}

static void study_dxhub(jbuf *b, const store_study *st)
{
    jb_puts(b, "\"dxhub\":{\"state\":");
    jb_str(b, study_state_name((study_state)st->state));
    jb_puts(b, ",\"priority\":\"");
    jb_puts(b, priority_name(st->priority));
    jb_puts(b, st->referral ? "\",\"referral\":true,\"origin\":" : "\",\"referral\":false,\"origin\":");
    jb_str(b, st->origin);
    jb_puts(b, ",\"note\":");
    jb_str(b, st->note);
    if (st->task_id) {
        jb_puts(b, ",\"task\":");
        jb_uint(b, st->task_id);
    }
    jb_puts(b, ",\"expected\":");
    jb_uint(b, st->expected);
    jb_puts(b, ",\"late_arrivals\":");
    jb_uint(b, st->late_arrivals);
    jb_puts(b, ",\"conflicts\":");
    jb_uint(b, st->conflicts);
    jb_puts(b, ",\"bytes\":");
    jb_uint(b, st->bytes);
    jb_puts(b, ",\"first_received\":");
    jb_time(b, st->first_ms);
    jb_puts(b, ",\"last_received\":");
    jb_time(b, st->last_ms);
    jb_puts(b, ",\"completed\":");
    jb_time(b, st->completed_ms);
    jb_put(b, "}", 1);
}

/* The study's attributes as DICOM JSON members, in tag order as DICOM
 * JSON producers conventionally write them; no braces. */
static void study_attrs(jbuf *b, const store_study *st)
{
    attr_str(b, "00080020", "DA", st->study_date, false);
    jb_put(b, ",", 1);
    attr_str(b, "00080030", "TM", st->study_time, false);
    jb_put(b, ",", 1);
    attr_str(b, "00080050", "SH", st->accession, false);
    jb_put(b, ",", 1);
    attr_str(b, "00080061", "CS", st->modalities, true);
    jb_put(b, ",", 1);
    attr_str(b, "00081030", "LO", st->description, false);
    jb_put(b, ",", 1);
    attr_pn(b, "00100010", st->patient_name);
    jb_put(b, ",", 1);
    attr_str(b, "00100020", "LO", st->patient_id, false);
    jb_put(b, ",", 1);
    attr_str(b, "00100030", "DA", st->patient_birth_date, false);
    jb_put(b, ",", 1);
    attr_str(b, "00100040", "CS", st->patient_sex, false);
    jb_put(b, ",", 1);
    attr_str(b, "0020000D", "UI", st->study_uid, false);
    jb_puts(b, ",\"00201206\":{\"vr\":\"IS\",\"Value\":[");
    jb_uint(b, st->n_series);
    jb_puts(b, "]},\"00201208\":{\"vr\":\"IS\",\"Value\":[");
    jb_uint(b, st->n_instances);
    jb_puts(b, "]}");
}

void api_json_study(jbuf *b, const store_study *st)
{
    jb_put(b, "{", 1);
    study_attrs(b, st);
    jb_put(b, ",", 1);
    study_dxhub(b, st);
    jb_put(b, "}", 1);
}

void api_json_study_qido(jbuf *b, const store_study *st, const char *retrieve_url)
{
    jb_put(b, "{", 1);
    study_attrs(b, st);
    if (retrieve_url) {
        jb_put(b, ",", 1);
        attr_str(b, "00081190", "UR", retrieve_url, false);
    }
    jb_put(b, "}", 1);
}

void api_json_attr(jbuf *b, const char *tag, const char *vr, const char *value)
{
    attr_str(b, tag, vr, value, false);
}

static void digest_hex(const uint8_t d[32], char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = 0;
}

/* The members every instance record has (without braces). */
static void instance_fields(jbuf *b, const store_instance *in)
{
    char dg[65];
    digest_hex(in->digest, dg);
    jb_puts(b, "\"sop_instance_uid\":");
    jb_str(b, in->sop_uid);
    jb_printf(b, ",\"size\":%llu,\"digest\":\"%s\",\"transfer_syntax\":", (unsigned long long)in->size, dg);
    jb_str(b, in->ts_uid);
    jb_puts(b, ",\"source\":");
    jb_str(b, in->source);
    jb_puts(b, ",\"received\":");
    jb_time(b, in->received_ms);
    jb_printf(b, ",\"conflict\":%s", in->conflict ? "true" : "false");
}

void api_json_instance_record(jbuf *b, const store_instance *in)
{
    jb_put(b, "{", 1);
    instance_fields(b, in);
    jb_puts(b, ",\"study_instance_uid\":");
    jb_str(b, in->study_uid);
    jb_puts(b, ",\"series_instance_uid\":");
    jb_str(b, in->series_uid);
    jb_put(b, "}", 1);
}

typedef struct conflict_out {
    jbuf *b;
    int   n;
} conflict_out;

static int conflict_digest(void *ctx, const store_instance *in)
{
    conflict_out *o = ctx;
    char dg[65];
    digest_hex(in->digest, dg);
    jb_printf(o->b, "%s{\"digest\":\"%s\",\"size\":%llu,\"source\":", o->n++ ? "," : "", dg,
              (unsigned long long)in->size);
    jb_str(o->b, in->source);
    jb_puts(o->b, ",\"received\":");
    jb_time(o->b, in->received_ms);
    jb_put(o->b, "}", 1);
    return 0;
}

/* "dxhub": what the store knows of the instance; "conflicts" (only when
 * there are any) lists the other contents received under its UID, kept
 * apart (GET /api/v1/instances/{uid}/conflicts has their full records). */
static void instance_dxhub(jbuf *b, store *st, const store_instance *in, const char *error)
{
    jb_puts(b, "\"dxhub\":{");
    instance_fields(b, in);
    size_t mark = b->len;
    jb_puts(b, ",\"conflicts\":[");
    conflict_out o = {b, 0};
    if (store_list_conflicts(st, in->sop_uid, conflict_digest, &o) > 0)
        jb_put(b, "]", 1);
    else if (!b->failed)
        b->len = mark;
    if (error) {
        jb_puts(b, ",\"error\":");
        jb_str(b, error);
    }
    jb_put(b, "}", 1);
}

/* One instance: its header object with the "dxhub" member spliced in
 * before the closing brace.  An unreadable header still lists the
 * instance, with the reason in dxhub.error (no patient data in it). */
static int instance_json(jbuf *b, store *st, api_hcache *cache, const store_instance *in, api_series_attrs *sa)
{
    size_t mark = b->len;
    int rc = api_header_json(st, cache, in, b, sa);
    if (rc == -ENOMEM || !jb_ok(b))
        return -ENOMEM;
    if (rc < 0 || b->len - mark < 2 || b->p[b->len - 1] != '}') {
        b->len = mark;
        memset(sa, 0, sizeof *sa);
        char why[96];
        snprintf(why, sizeof why, "stored header unreadable: %s",
                 rc <= -1000 ? dcm_strerror(rc) : strerror(rc < 0 ? -rc : EINVAL));
        jb_put(b, "{", 1);
        instance_dxhub(b, st, in, why);
        jb_put(b, "}", 1);
        return 0;
    }
    b->len--; /* the header's closing brace */
    if (b->len - mark > 1)
        jb_put(b, ",", 1);
    instance_dxhub(b, st, in, NULL);
    jb_put(b, "}", 1);
    return jb_ok(b) ? 0 : -ENOMEM;
}

/* ---- a study's series and instances -------------------------------- */

int api_inst_list_add(api_inst_list *l, const store_instance *in)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        store_instance *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->rc = -ENOMEM;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *in;
    return 0;
}

static int collect(void *ctx, const store_instance *in) { return api_inst_list_add(ctx, in); }

static void series_head(jbuf *b, const char *series_uid, const api_series_attrs *sa)
{
    jb_put(b, "{", 1);
    attr_str(b, "00080060", "CS", sa->modality, false);
    jb_put(b, ",", 1);
    attr_str(b, "0008103E", "LO", sa->description, false);
    jb_put(b, ",", 1);
    attr_str(b, "0020000E", "UI", series_uid, false);
    if (sa->has_number)
        jb_printf(b, ",\"00200011\":{\"vr\":\"IS\",\"Value\":[%ld]}", sa->number);
    else
        jb_puts(b, ",\"00200011\":{\"vr\":\"IS\"}");
    jb_puts(b, ",\"instances\":[");
}

/* Instances arrive ordered by series then instance number, so a series
 * is a run; its attributes come from its first instance's header. */
static int write_series(jbuf *b, store *st, api_hcache *cache, const api_inst_list *l)
{
    jbuf first = {0};
    int rc = 0;
    for (size_t i = 0; i < l->n && rc == 0; i++) {
        bool starts = i == 0 || strcmp(l->v[i].series_uid, l->v[i - 1].series_uid);
        api_series_attrs sa;
        if (!starts) {
            jb_put(b, ",", 1);
            rc = instance_json(b, st, cache, &l->v[i], &sa);
            continue;
        }
        if (i > 0)
            jb_puts(b, "]},");
        first.len = 0;
        rc = instance_json(&first, st, cache, &l->v[i], &sa);
        series_head(b, l->v[i].series_uid, &sa);
        jb_put(b, first.p, first.len);
    }
    if (l->n)
        jb_puts(b, "]}");
    jb_release(&first);
    return rc;
}

int api_json_study_detail(jbuf *b, store *st, api_hcache *cache, const store_study *study)
{
    api_inst_list l = {0};
    int n = store_list_instances(st, study->study_uid, collect, &l);
    int rc = n < 0 ? n : l.rc;
    if (rc == 0) {
        jb_puts(b, "{\"study\":");
        api_json_study(b, study);
        jb_puts(b, ",\"series\":[");
        rc = write_series(b, st, cache, &l);
        jb_puts(b, "]}");
    }
    free(l.v);
    if (rc == 0 && !jb_ok(b))
        rc = -ENOMEM;
    return rc;
}

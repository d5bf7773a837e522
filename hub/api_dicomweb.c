/* api_dicomweb.c — DICOMweb (PS3.18) over the store, so a standard viewer
 * or PACS reads the hub without knowing its own API:
 *
 *   QIDO-RS  GET /dicom-web/studies                 (PatientID, StudyDate,
 *                                                   ModalitiesInStudy,
 *                                                   AccessionNumber,
 *                                                   StudyInstanceUID, limit,
 *                                                   offset)
 *            GET /dicom-web/studies/{s}/series
 *            GET /dicom-web/studies/{s}[/series/{se}]/instances
 *   WADO-RS  GET /dicom-web/studies/{s}[/series/{se}[/instances/{i}]]/metadata
 *            GET /dicom-web/studies/{s}[/series/{se}[/instances/{i}]]
 *            GET /dicom-web/studies/{s}/series/{se}/instances/{i}/frames/{1,2,..}
 *            GET /dicom-web/studies/{s}/series/{se}/instances/{i}[/frames/{n}]/rendered
 *
 * Answers are application/dicom+json, and instances multipart/related;
 * type="application/dicom", streamed part by part from the store (a study
 * never sits in memory).  Instances go as they were received, never
 * re-encoded: each part names its transfer syntax, and a client that asks
 * for another gets 406 naming the one stored.  Frames go as stored
 * (transfer-syntax=*) or uncompressed (decoded when stored compressed),
 * for viewers that draw from bulk data.  Access and audit are the API's:
 * every answer with patient data is audited before it leaves. */
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "codecs/codecs.h"
#include "hub/api_private.h"
#include "codecs/banned.h"

#define DICOM_JSON "application/dicom+json"
#define BOUNDARY   "dxhub-dicomweb-9f6c1e4b7a2d"

static const char *bad_uid(const api_dw_path *p)
{
    if (p->study && !api_valid_uid(p->study))
        return "StudyInstanceUID";
    if (p->series && !api_valid_uid(p->series))
        return "SeriesInstanceUID";
    if (p->instance && !api_valid_uid(p->instance))
        return "SOPInstanceUID";
    return NULL;
}

/* ---- the instances a path names --------------------------------------- */

typedef struct inst_set {
    api_inst_list      l;
    const api_dw_path *p;
} inst_set;

static int collect(void *ctx, const store_instance *in)
{
    inst_set *s = ctx;
    if (in->conflict || (s->p->series && strcmp(in->series_uid, s->p->series)) ||
        (s->p->instance && strcmp(in->sop_uid, s->p->instance)))
        return 0; /* a conflicting copy is not the instance: the first stored is */
    return api_inst_list_add(&s->l, in);
}

/* The instances under p's study (and series, and instance): 0, or < 0. */
static int instances_of(store *st, const api_dw_path *p, inst_set *s)
{
    *s = (inst_set){.p = p};
    int rc = store_list_instances(st, p->study, collect, s);
    return rc < 0 ? rc : s->l.rc;
}

/* ---- answers ------------------------------------------------------------ */

/* The access's audit record, "<label>: N instance(s)", before any of them
 * leaves; < 0 (with s freed) when it cannot be queued. */
static int audit_count(api_req *r, const api_dw_path *path, const char *what, const char *label, inst_set *s)
{
    char detail[200];
    snprintf(detail, sizeof detail, "%s: %zu instance(s)", label, s->l.n);
    int rc = api_req_audit(r, what, path->study, detail);
    if (rc < 0) {
        free(s->l.v);
        s->l.v = NULL;
    }
    return rc;
}

static int send_dicom_json(api_req *r, jbuf *b) { return api_send_body(r, MHD_HTTP_OK, b, DICOM_JSON); }

/* "http(s)://host/dicom-web" from the request, for Retrieve URLs. */
static void base_url(api_req *r, char *out, size_t n)
{
    const char *host = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->c, MHD_CONNECTION_INFO_PROTOCOL);
    bool tls = ci && ci->protocol != 0;
    if (!host || !*host || strpbrk(host, "\"\\/ "))
        out[0] = '\0';
    else
        snprintf(out, n, "%s://%s/dicom-web", tls ? "https" : "http", host);
}

/* A study as QIDO-RS lists it, with its Retrieve URL under base. */
static void study_qido(jbuf *b, const store_study *st, void *base)
{
    char url[512];
    snprintf(url, sizeof url, "%s/studies/%s", (const char *)base, st->study_uid);
    api_json_study_qido(b, st, *(const char *)base ? url : NULL);
}

static int search_studies(api_req *r, const api_params *p)
{
    char base[300];
    base_url(r, base, sizeof base);
    api_list_query q;
    jbuf studies = {0};
    int total, answered;
    if (!api_list_studies(r, p, study_qido, base, &q, &studies, &total, &answered))
        return answered;
    jbuf b = {0};
    jb_put(&b, "[", 1);
    jb_put(&b, studies.p, studies.len);
    jb_put(&b, "]", 1);
    if (!jb_ok(&studies))
        b.failed = true;
    jb_release(&studies);
    return send_dicom_json(r, &b);
}

/* A series object, its attributes from its first instance's header. */
static void series_json(api_req *r, jbuf *b, const store_instance *first, size_t count)
{
    api_series_attrs sa = {0};
    jbuf scratch = {0};
    api_header_json(r->a->st, r->a->cache, first, &scratch, &sa);
    jb_release(&scratch);
    jb_put(b, "{", 1);
    api_json_attr(b, "00080060", "CS", sa.modality);
    jb_put(b, ",", 1);
    api_json_attr(b, "0008103E", "LO", sa.description);
    jb_put(b, ",", 1);
    api_json_attr(b, "0020000D", "UI", first->study_uid);
    jb_put(b, ",", 1);
    api_json_attr(b, "0020000E", "UI", first->series_uid);
    if (sa.has_number)
        jb_printf(b, ",\"00200011\":{\"vr\":\"IS\",\"Value\":[%ld]}", sa.number);
    else
        jb_puts(b, ",\"00200011\":{\"vr\":\"IS\"}");
    jb_printf(b, ",\"00201209\":{\"vr\":\"IS\",\"Value\":[%zu]}}", count);
}

static void instance_json(jbuf *b, const store_instance *in)
{
    jb_put(b, "{", 1);
    api_json_attr(b, "00080016", "UI", in->sop_class);
    jb_put(b, ",", 1);
    api_json_attr(b, "00080018", "UI", in->sop_uid);
    jb_put(b, ",", 1);
    api_json_attr(b, "00083002", "UI", in->ts_uid); /* Available Transfer Syntax UID: how it is stored */
    jb_put(b, ",", 1);
    api_json_attr(b, "0020000D", "UI", in->study_uid);
    jb_put(b, ",", 1);
    api_json_attr(b, "0020000E", "UI", in->series_uid);
    jb_printf(b, ",\"00200013\":{\"vr\":\"IS\",\"Value\":[%d]}}", (int)in->instance_number);
}

static int search_below(api_req *r, const api_dw_path *path)
{
    inst_set s;
    if (instances_of(r->a->st, path, &s) < 0) {
        free(s.l.v);
        return api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read");
    }
    if (audit_count(r, path, "read-study",
                    path->what == API_DW_SEARCH_SERIES ? "dicomweb series search" : "dicomweb instance search",
                    &s) < 0)
        return api_send_audit_failed(r, NULL);
    jbuf b = {0};
    jb_put(&b, "[", 1);
    size_t shown = 0;
    for (size_t i = 0; i < s.l.n; i++) {
        if (path->what == API_DW_SEARCH_INSTANCES) {
            if (shown++)
                jb_put(&b, ",", 1);
            instance_json(&b, &s.l.v[i]);
            continue;
        }
        size_t j = i; /* instances come ordered by series: a series is a run */
        while (j + 1 < s.l.n && !strcmp(s.l.v[j + 1].series_uid, s.l.v[i].series_uid))
            j++;
        if (shown++)
            jb_put(&b, ",", 1);
        series_json(r, &b, &s.l.v[i], j - i + 1);
        i = j;
    }
    jb_put(&b, "]", 1);
    free(s.l.v);
    return send_dicom_json(r, &b);
}

/* The instances path names into *s: true to answer from them; false
 * with *answered queued (the store unreadable, or none: audited as `what`
 * all the same, "<label>: none"). */
static bool named_instances(api_req *r, const api_dw_path *path, const char *what, const char *label, inst_set *s,
                            int *answered)
{
    if (instances_of(r->a->st, path, s) < 0) {
        free(s->l.v);
        *answered = api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read");
        return false;
    }
    if (s->l.n)
        return true;
    free(s->l.v);
    char detail[80];
    snprintf(detail, sizeof detail, "%s: none", label);
    *answered = api_req_audit(r, what, path->study, detail) < 0
                    ? api_send_audit_failed(r, NULL)
                    : api_send_error(r, MHD_HTTP_NOT_FOUND, "no such study, series or instance");
    return false;
}

static int metadata(api_req *r, const api_dw_path *path)
{
    inst_set s;
    int answered;
    if (!named_instances(r, path, "read-study", "dicomweb metadata", &s, &answered))
        return answered;
    if (audit_count(r, path, "read-study", "dicomweb metadata", &s) < 0)
        return api_send_audit_failed(r, NULL);
    jbuf b = {0};
    jb_put(&b, "[", 1);
    size_t shown = 0;
    for (size_t i = 0; i < s.l.n; i++) {
        size_t mark = b.len;
        if (shown)
            jb_put(&b, ",", 1);
        api_series_attrs sa;
        if (api_header_json(r->a->st, r->a->cache, &s.l.v[i], &b, &sa) < 0)
            b.len = mark; /* an unreadable header: left out (the API's detail names why) */
        else
            shown++;
    }
    jb_put(&b, "]", 1);
    free(s.l.v);
    return send_dicom_json(r, &b);
}

/* ---- retrieval: multipart/related, one part per instance --------------- */

typedef struct mp_stream {
    store          *st;
    store_instance *v;
    size_t          n, at;    /* the part being sent */
    char            head[512];
    size_t          head_len, head_off;
    uint64_t        body_off; /* of v[at] */
    int             stage;    /* 0 head, 1 body, 2 after the body, 3 the closing line, 4 done */
} mp_stream;

static void part_head(mp_stream *m)
{
    const store_instance *in = &m->v[m->at];
    int l = snprintf(m->head, sizeof m->head,
                     "%s--" BOUNDARY "\r\nContent-Type: application/dicom; transfer-syntax=%s\r\n"
                     "Content-Length: %llu\r\nContent-Location: /dicom-web/studies/%s/series/%s/instances/%s\r\n\r\n",
                     m->at ? "\r\n" : "", in->ts_uid, (unsigned long long)in->size, in->study_uid, in->series_uid,
                     in->sop_uid);
    m->head_len = l > 0 && (size_t)l < sizeof m->head ? (size_t)l : 0;
    m->head_off = 0;
    m->body_off = 0;
}

static ssize_t copy_text(const char *text, size_t len, size_t *off, char *buf, size_t max)
{
    size_t k = len - *off < max ? len - *off : max;
    memcpy(buf, text + *off, k);
    *off += k;
    return (ssize_t)k;
}

static ssize_t mp_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    mp_stream *m = cls;
    for (;;) {
        switch (m->stage) {
        case 0:
            if (m->head_off < m->head_len)
                return copy_text(m->head, m->head_len, &m->head_off, buf, max);
            m->stage = 1;
            continue;
        case 1: {
            const store_instance *in = &m->v[m->at];
            if (m->body_off >= in->size) {
                m->stage = 2;
                continue;
            }
            size_t want = in->size - m->body_off < max ? (size_t)(in->size - m->body_off) : max;
            long got = store_read_instance(m->st, in, m->body_off, buf, want);
            if (got <= 0) /* the index promised these bytes: a short read is corruption */
                return MHD_CONTENT_READER_END_WITH_ERROR;
            m->body_off += (uint64_t)got;
            return (ssize_t)got;
        }
        case 2:
            if (++m->at < m->n) {
                part_head(m);
                m->stage = 0;
                continue;
            }
            snprintf(m->head, sizeof m->head, "\r\n--" BOUNDARY "--\r\n");
            m->head_len = strlen(m->head);
            m->head_off = 0;
            m->stage = 3;
            continue;
        case 3:
            if (m->head_off < m->head_len)
                return copy_text(m->head, m->head_len, &m->head_off, buf, max);
            m->stage = 4;
            continue;
        default:
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
    }
}

static void mp_free(void *cls)
{
    mp_stream *m = cls;
    free(m->v);
    free(m);
}

static int retrieve(api_req *r, const api_dw_path *path)
{
    char tsbuf[80];
    const char *ts = api_dicomweb_accept_ts(MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT), tsbuf,
                               sizeof tsbuf);
    if (!ts)
        return api_send_error(r, MHD_HTTP_NOT_ACCEPTABLE,
                              "instances are sent as multipart/related; type=\"application/dicom\"");
    inst_set s;
    int answered;
    if (!named_instances(r, path, "read-instance", "dicomweb retrieve", &s, &answered))
        return answered;
    if (strcmp(ts, "*")) {
        for (size_t i = 0; i < s.l.n; i++) {
            if (strcmp(s.l.v[i].ts_uid, ts)) {
                char why[400];
                snprintf(why, sizeof why,
                         "instances are sent as they were received, never re-encoded: %s is stored in %s, not %s "
                         "(ask with transfer-syntax=*)", s.l.v[i].sop_uid, s.l.v[i].ts_uid, ts);
                free(s.l.v);
                return api_send_error(r, MHD_HTTP_NOT_ACCEPTABLE, why);
            }
        }
    }
    char label[120];
    snprintf(label, sizeof label, "dicomweb retrieve %s", path->instance ? path->instance
                                                          : path->series ? "series" : "study");
    if (audit_count(r, path, "read-instance", label, &s) < 0)
        return api_send_audit_failed(r, NULL);
    mp_stream *m = calloc(1, sizeof *m);
    if (!m) {
        free(s.l.v);
        return MHD_NO;
    }
    *m = (mp_stream){.st = r->a->st, .v = s.l.v, .n = s.l.n};
    part_head(m);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 256 << 10, mp_read, m, mp_free);
    if (!resp) {
        mp_free(m);
        return MHD_NO;
    }
    return api_queue(r, MHD_HTTP_OK, resp, "multipart/related; type=\"application/dicom\"; boundary=" BOUNDARY);
}

/* ---- frames: bulk data of one instance --------------------------------- */

#define FRAMES_INSTANCE_MAX ((uint64_t)512 << 20) /* read whole to find its frames; bigger: retrieve it */
#define EXPLICIT_LE "1.2.840.10008.1.2.1"

typedef struct frame_part {
    const uint8_t *p;
    size_t         n;
    uint8_t       *owned;
    const char    *ts;
} frame_part;

/* The bytes of frame k (0-based) of img as asked (want: "*", "", or a
 * UID): as stored, or decoded when an uncompressed frame is asked of an
 * encapsulated one.  0, or an HTTP status with why. */
static unsigned frame_of(const cdc_image *img, uint32_t k, const char *want, frame_part *out, char *why, size_t n)
{
    memset(out, 0, sizeof *out);
    dcm_err err = {0};
    const char *stored = img->ts->uid;
    bool as_stored = !strcmp(want, "*") || !strcmp(want, stored);
    bool plain = !*want || !strcmp(want, EXPLICIT_LE);
    if (!img->ts->encapsulated) {
        if (img->ts->big_endian || img->bits_allocated % 8) {
            snprintf(why, n, "frames of big endian or bit-packed pixel data are not served: retrieve the instance");
            return MHD_HTTP_NOT_ACCEPTABLE;
        }
        if (!as_stored && !plain) {
            snprintf(why, n, "the frames are stored uncompressed; ask with transfer-syntax=* or %s", EXPLICIT_LE);
            return MHD_HTTP_NOT_ACCEPTABLE;
        }
        const dcm_elem *e = dcm_at(img->file, img->pixel_elem);
        size_t bytes = (size_t)img->rows * img->cols * img->samples * (img->bits_allocated / 8);
        if (!e || !e->value || (uint64_t)(k + 1) * bytes > e->value_len) {
            snprintf(why, n, "the stored pixel data is shorter than its frames");
            return MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
        *out = (frame_part){.p = e->value + (size_t)k * bytes, .n = bytes, .ts = EXPLICIT_LE};
        return 0;
    }
    if (as_stored) {
        int rc = cdc_frame_bytes(img, k, &out->p, &out->n, &out->owned, &err);
        out->ts = stored;
        if (rc < 0) {
            snprintf(why, n, "frame %u: %s", k + 1, err.msg[0] ? err.msg : cdc_strerror(rc));
            return MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
        return 0;
    }
    if (!plain) {
        snprintf(why, n, "frames are sent as stored (%s, with transfer-syntax=*) or uncompressed, not as %s", stored,
                 want);
        return MHD_HTTP_NOT_ACCEPTABLE;
    }
    size_t bytes = cdc_frame_size(img);
    if (!(out->owned = malloc(bytes ? bytes : 1)))
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    int rc = cdc_decode_frame(img, k, out->owned, bytes, &err);
    if (rc < 0) {
        free(out->owned);
        out->owned = NULL;
        snprintf(why, n, "frame %u cannot be decoded: %s", k + 1, err.msg[0] ? err.msg : cdc_strerror(rc));
        return MHD_HTTP_UNPROCESSABLE_CONTENT;
    }
    *out = (frame_part){.p = out->owned, .n = bytes, .owned = out->owned, .ts = EXPLICIT_LE};
    return 0;
}

/* The instance a frames or rendered request names, read whole and opened
 * as an image, with every frame it asks for there. */
typedef struct instance_image {
    uint8_t  *buf;
    dcm_file *f;
    cdc_image img;
} instance_image;

static void instance_image_release(instance_image *ii)
{
    cdc_image_release(&ii->img);
    dcm_free(&ii->f);
    free(ii->buf);
}

/* 0 with ii open (release it); else -1 with the error answer sent and its
 * result in *answer.  The read is audited as read-instance with detail. */
static int open_image(api_req *r, const api_dw_path *path, const char *detail, instance_image *ii, int *answer)
{
    memset(ii, 0, sizeof *ii);
    store_instance in;
    int rc = store_get_instance(r->a->st, path->instance, &in);
    if (rc == 0 && (strcmp(in.study_uid, path->study) || strcmp(in.series_uid, path->series)))
        rc = -ENOENT;
    if (rc < 0 && rc != -ENOENT)
        return *answer = api_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "the store cannot be read"), -1;
    if (api_req_audit(r, "read-instance", rc == 0 ? in.study_uid : path->study, detail) < 0)
        return *answer = api_send_audit_failed(r, NULL), -1;
    if (rc == -ENOENT)
        return *answer = api_send_error(r, MHD_HTTP_NOT_FOUND, "no such instance in that study and series"), -1;
    if (in.size > FRAMES_INSTANCE_MAX)
        return *answer = api_send_error(r, MHD_HTTP_NOT_IMPLEMENTED,
                                        "frames of an instance over 512 MiB are not served: retrieve the instance"),
               -1;
    if (!(ii->buf = malloc(in.size ? in.size : 1)))
        return *answer = MHD_NO, -1;
    char why[300] = "";
    unsigned status = 0;
    dcm_err err = {0};
    if (store_read_instance_all(r->a->st, &in, ii->buf) < 0) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        snprintf(why, sizeof why, "stored bytes unreadable");
    } else if ((rc = dcm_parse(ii->buf, (size_t)in.size, NULL, &ii->f, &err)) < 0 ||
               (rc = cdc_image_init(&ii->img, ii->f, &err)) < 0) {
        status = rc == DCM_ENOTFOUND ? MHD_HTTP_NOT_FOUND : MHD_HTTP_UNPROCESSABLE_CONTENT;
        snprintf(why, sizeof why, "%s", rc == DCM_ENOTFOUND ? "no pixel data in this instance"
                                        : err.msg[0] ? err.msg : cdc_strerror(rc));
    }
    for (int i = 0; !status && i < path->n_frames; i++)
        if (path->frames[i] > ii->img.frames) {
            status = MHD_HTTP_NOT_FOUND;
            snprintf(why, sizeof why, "frame %u: the instance has %u", path->frames[i], ii->img.frames);
        }
    if (status) {
        instance_image_release(ii);
        return *answer = api_send_error(r, status, why), -1;
    }
    return 0;
}

static int frames(api_req *r, const api_dw_path *path)
{
    char tsbuf[80], why[300];
    const char *want = api_dicomweb_accept_frames(MHD_lookup_connection_value(r->c, MHD_HEADER_KIND,
                                                                              MHD_HTTP_HEADER_ACCEPT),
                                                  tsbuf, sizeof tsbuf);
    if (!want)
        return api_send_error(r, MHD_HTTP_NOT_ACCEPTABLE,
                              "frames are sent as multipart/related; type=\"application/octet-stream\"");
    instance_image ii;
    int answer;
    snprintf(why, sizeof why, "dicomweb frames of %s", path->instance);
    if (open_image(r, path, why, &ii, &answer) < 0)
        return answer;
    unsigned status = 0;
    jbuf b = {0};
    for (int i = 0; !status && i < path->n_frames; i++) {
        frame_part fp;
        if ((status = frame_of(&ii.img, path->frames[i] - 1, want, &fp, why, sizeof why)))
            break;
        jb_printf(&b, "--" BOUNDARY "\r\nContent-Type: application/octet-stream; transfer-syntax=%s\r\n"
                      "Content-Length: %zu\r\n\r\n", fp.ts, fp.n);
        jb_put(&b, (const char *)fp.p, fp.n);
        jb_puts(&b, "\r\n");
        free(fp.owned);
    }
    instance_image_release(&ii);
    if (status) {
        jb_release(&b);
        return api_send_error(r, status, why);
    }
    jb_puts(&b, "--" BOUNDARY "--\r\n");
    return api_send_body(r, MHD_HTTP_OK, &b,
                         "multipart/related; type=\"application/octet-stream\"; boundary=" BOUNDARY);
}

/* ---- rendered: one frame as a picture ------------------------------------ */

typedef struct jbuf_sink {
    jbuf *b;
} jbuf_sink;

static int to_jbuf(void *ctx, const void *p, size_t n)
{
    jb_put(((jbuf_sink *)ctx)->b, p, n);
    return 0;
}

/* window=center,width[,linear] (PS3.18's LINEAR; the other functions are
 * not drawn) into o; false when it is not that. */
static bool window_param(const char *s, cdc_render_opts *o)
{
    char *end;
    errno = 0;
    double c = strtod(s, &end);
    if (end == s || *end != ',' || errno)
        return false;
    const char *w0 = end + 1;
    double w = strtod(w0, &end);
    if (end == w0 || errno || !isfinite(c) || !isfinite(w) || w < 1)
        return false;
    if (*end == ',' && strcasecmp(end + 1, "linear"))
        return false;
    if (*end && *end != ',')
        return false;
    o->has_window = 1;
    o->center = c;
    o->width = w;
    return true;
}

/* WADO-RS Retrieve Rendered: the frame through the DICOM display pipeline
 * (cdc_render_8bit, as `dxhub render` and DCMTK's dcm2pnm: the window
 * given, else the file's own), as JPEG (quality 90 unless given) or PNG. */
static int rendered(api_req *r, const api_dw_path *path, const api_params *p)
{
    cdc_render_opts ro = {.frame = path->frames[0] - 1};
    uint64_t quality = 90;
    if (p->v[API_P_WINDOW] && !window_param(p->v[API_P_WINDOW], &ro))
        return api_send_bad_param(r, p->given[API_P_WINDOW], "center,width[,linear]: a width of at least 1");
    if (p->v[API_P_QUALITY] && (!api_parse_uint(p->v[API_P_QUALITY], 100, &quality) || quality < 1))
        return api_send_bad_param(r, p->given[API_P_QUALITY], "a JPEG quality from 1 to 100");
    const char *type = api_dicomweb_accept_rendered(MHD_lookup_connection_value(r->c, MHD_HEADER_KIND,
                                                                                MHD_HTTP_HEADER_ACCEPT));
    if (!type)
        return api_send_error(r, MHD_HTTP_NOT_ACCEPTABLE, "rendered frames are sent as image/jpeg or image/png");
    char why[300];
    instance_image ii;
    int answer;
    snprintf(why, sizeof why, "dicomweb rendered frame %u of %s", path->frames[0], path->instance);
    if (open_image(r, path, why, &ii, &answer) < 0)
        return answer;
    dcm_err err = {0};
    cdc_raster pic = {0};
    jbuf b = {0};
    jbuf_sink js = {&b};
    dcm_sink sink = {to_jbuf, &js};
    int rc;
    if ((rc = cdc_render_8bit(&ii.img, &ro, &pic, &err)) < 0 ||
        (rc = strcmp(type, "image/png") ? cdc_write_jpeg(&pic, (int)quality, sink, &err)
                                         : cdc_write_png(&pic, sink, &err)) < 0)
        snprintf(why, sizeof why, "frame %u cannot be rendered: %s", path->frames[0],
                 err.msg[0] ? err.msg : cdc_strerror(rc));
    cdc_raster_release(&pic);
    instance_image_release(&ii);
    if (rc < 0) {
        jb_release(&b);
        return api_send_error(r, MHD_HTTP_UNPROCESSABLE_CONTENT, why);
    }
    return api_send_body(r, MHD_HTTP_OK, &b, type);
}

int api_h_dicomweb(api_req *r, const api_params *p)
{
    api_dw_path path;
    if (!api_dicomweb_path(r->url + strlen("/dicom-web"), &path))
        return api_send_error(r, MHD_HTTP_NOT_FOUND,
                              "not a DICOMweb path here: /dicom-web/studies[/{study}[/series[/{series}"
                              "[/instances[/{instance}[/frames/{n,..}][/rendered]]]]]][/metadata]");
    const char *bad = bad_uid(&path);
    if (bad)
        return api_send_bad_param(r, bad, "a UID: digits and dots, at most 64");
    bool picture = path.what == API_DW_RENDERED; /* window and quality: a rendered picture's only */
    for (int i = API_P_WINDOW; i <= API_P_QUALITY; i++)
        if (p->v[i] && !picture)
            return api_send_bad_param(r, p->given[i], "not taken by this path");
    if (path.what != API_DW_SEARCH_STUDIES) { /* study-level filters and paging search studies only */
        for (int i = 0; i < API_P_COUNT; i++)
            if (p->v[i] && i != API_P_INCLUDEFIELD && i != API_P_FUZZY && !(picture && (i == API_P_WINDOW ||
                                                                                       i == API_P_QUALITY)))
                return api_send_bad_param(r, p->given[i], "not taken by this path");
        /* fuzzymatching is still checked, as on /studies */
        if (p->v[API_P_FUZZY] && strcmp(p->v[API_P_FUZZY], "true") && strcmp(p->v[API_P_FUZZY], "false"))
            return api_send_bad_param(r, p->given[API_P_FUZZY], "true or false");
    }
    switch (path.what) {
    case API_DW_SEARCH_STUDIES: return search_studies(r, p);
    case API_DW_SEARCH_SERIES:
    case API_DW_SEARCH_INSTANCES: return search_below(r, &path);
    case API_DW_METADATA: return metadata(r, &path);
    case API_DW_FRAMES: return frames(r, &path);
    case API_DW_RENDERED: return rendered(r, &path, p);
    default: return retrieve(r, &path);
    }
}

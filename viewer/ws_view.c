/* ws_view.c — the study as the viewer lays it out (GET /api/tasks/{id}/study),
 * read from the cached instances' headers: the patient (name as UTF-8 from
 * its Specific Character Set), the study, series by Series Number,
 * instances by position along the slice normal (Image Position · (row ×
 * column cosines)), else by Instance Number, with the pixel attributes of
 * the frames /frames sends.
 *
 * Built once per task and kept with it (a study does not change once
 * complete): the background thread builds it as soon as a study is wholly
 * cached, held tasks first, then offers, and decodes the image it opens on;
 * then it decodes the rest of a held study's images ahead of the reader
 * while the frame cache has room.  Opening a prefetched study then costs a
 * copy of this text and of a decoded frame. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "codecs/codecs.h"
#include "viewer/ws.h"
#include "codecs/banned.h"

typedef struct inst_info {
    char    sop[65], series[65];
    int     image;    /* has pixels to show (not a waveform) */
    int32_t number, series_number;
    double  pos;      /* along the normal */
    int     has_pos;
    json_t *json;
} inst_info;

static const dcm_elem *top(const dcm_file *f, uint32_t tag)
{
    int32_t i = dcm_find(f, -1, tag);
    return i < 0 ? NULL : dcm_at(f, i);
}

static json_t *utf8_str(const dcm_file *f, uint32_t tag)
{
    const dcm_elem *e = top(f, tag);
    char *s = NULL;
    size_t n = 0;
    dcm_err de = {0};
    if (!e || dcm_get_utf8(f, e, &s, &n, &de) < 0)
        return json_string("");
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\0')) /* padding (PS3.5 §6.2) */
        n--;
    json_t *j = json_stringn(s, n);
    free(s);
    return j ? j : json_string("");
}

static json_t *plain_str(const dcm_file *f, uint32_t tag)
{
    char buf[256];
    dcm_top_str(f, tag, buf, sizeof buf);
    json_t *j = json_string(buf);
    return j ? j : json_string("");
}

static int num(const dcm_file *f, uint32_t tag, size_t i, double *out)
{
    const dcm_elem *e = top(f, tag);
    return e && dcm_value_count(f, e) > i && dcm_get_f64(f, e, i, out) == 0 && isfinite(*out);
}

static long inum(const dcm_file *f, uint32_t tag, long dflt)
{
    double v;
    return num(f, tag, 0, &v) ? (long)v : dflt;
}

/* [v0, v1, ...] of a numeric attribute with exactly n values, else null. */
static json_t *vec(const dcm_file *f, uint32_t tag, size_t n, double *out)
{
    const dcm_elem *e = top(f, tag);
    if (!e || dcm_value_count(f, e) < n)
        return json_null();
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        double v;
        if (dcm_get_f64(f, e, i, &v) < 0 || !isfinite(v)) {
            json_decref(a);
            return json_null();
        }
        if (out)
            out[i] = v;
        json_array_append_new(a, json_real(v));
    }
    return a;
}

static json_t *windows(const dcm_file *f)
{
    json_t *a = json_array();
    const dcm_elem *c = top(f, DCM_TAG(0x0028, 0x1050)), *w = top(f, DCM_TAG(0x0028, 0x1051));
    if (!c || !w)
        return a;
    size_t n = dcm_value_count(f, c), m = dcm_value_count(f, w);
    for (size_t i = 0; i < n && i < m; i++) {
        double cv, wv;
        if (dcm_get_f64(f, c, i, &cv) == 0 && dcm_get_f64(f, w, i, &wv) == 0 && isfinite(cv) && isfinite(wv))
            json_array_append_new(a, json_pack("{s:f,s:f}", "center", cv, "width", wv));
    }
    return a;
}

/* The instance's entry; fills the sort keys. */
static json_t *instance_json(const dcm_file *f, inst_info *ii)
{
    char photo[32];
    dcm_top_str(f, DCM_TAG(0x0028, 0x0004), photo, sizeof photo);
    long ba = inum(f, DCM_TAG(0x0028, 0x0100), 0), bs = inum(f, DCM_TAG(0x0028, 0x0101), ba);
    long spp = inum(f, DCM_TAG(0x0028, 0x0002), 1);
    int mono = !strncmp(photo, "MONOCHROME", 10);
    /* What /frames sends: grey in an 8/16/32-bit container, colour as RGB bytes. */
    long out_bits = mono ? (ba <= 8 ? 8 : ba <= 16 ? 16 : 32) : 8;
    long out_samples = mono ? 1 : 3;
    int has_pixels = dcm_find(f, -1, DCM_TAG_PIXEL_DATA) >= 0 || ba > 0;
    double ipp[3], iop[6];
    json_t *pos = vec(f, DCM_TAG(0x0020, 0x0032), 3, ipp);
    json_t *ori = vec(f, DCM_TAG(0x0020, 0x0037), 6, iop);
    if (!json_is_null(pos) && !json_is_null(ori)) {
        double nx = iop[1] * iop[5] - iop[2] * iop[4], ny = iop[2] * iop[3] - iop[0] * iop[5],
               nz = iop[0] * iop[4] - iop[1] * iop[3];
        ii->pos = ipp[0] * nx + ipp[1] * ny + ipp[2] * nz;
        ii->has_pos = 1;
    }
    json_decref(ori);
    json_t *spacing = vec(f, DCM_TAG(0x0028, 0x0030), 2, NULL);
    if (json_is_null(spacing))
        spacing = vec(f, DCM_TAG(0x0018, 0x1164), 2, NULL); /* Imager Pixel Spacing (projection radiography) */
    double sl, slope = 1, icpt = 0;
    json_t *slice = num(f, DCM_TAG(0x0020, 0x1041), 0, &sl) ? json_real(sl) : json_null();
    num(f, DCM_TAG(0x0028, 0x1053), 0, &slope);
    num(f, DCM_TAG(0x0028, 0x1052), 0, &icpt);
    ii->number = (int32_t)inum(f, DCM_TAG(0x0020, 0x0013), 0);
    ii->image = dcm_find(f, -1, DCM_TAG(0x5400, 0x0100)) < 0; /* what the viewer scrolls through */
    return json_pack("{s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:b,s:s,s:i,s:o,s:o,s:o,s:o,s:{s:f,s:f},s:b,s:b}", "sop",
                     ii->sop, "number", (int)ii->number, "frames",
                     (int)(has_pixels ? inum(f, DCM_TAG(0x0028, 0x0008), 1) : 0), "rows",
                     (int)inum(f, DCM_TAG(0x0028, 0x0010), 0), "columns", (int)inum(f, DCM_TAG(0x0028, 0x0011), 0),
                     "bits_allocated", (int)(has_pixels ? out_bits : 0), "bits_stored", (int)bs, "stored_bits_allocated",
                     (int)ba, "signed", mono && inum(f, DCM_TAG(0x0028, 0x0103), 0) == 1, "photometric", photo,
                     "samples", (int)(has_pixels ? out_samples : spp), "pixel_spacing", spacing, "slice_location",
                     slice, "image_position", pos, "windows", windows(f), "rescale", "slope", slope, "intercept",
                     icpt, "waveform", dcm_find(f, -1, DCM_TAG(0x5400, 0x0100)) >= 0, "pixels", has_pixels);
}

static int by_series_then_position(const void *a, const void *b)
{
    const inst_info *x = a, *y = b;
    if (x->series_number != y->series_number)
        return x->series_number < y->series_number ? -1 : 1;
    int c = strcmp(x->series, y->series);
    if (c)
        return c;
    if (x->has_pos && y->has_pos && x->pos != y->pos)
        return x->pos < y->pos ? -1 : 1;
    if (x->number != y->number)
        return x->number < y->number ? -1 : 1;
    return strcmp(x->sop, y->sop);
}


typedef struct view {
    char  *json;
    size_t len;
    char (*images)[65]; /* frame 1 of each image, in the order the viewer shows them */
    size_t n_images;
    int    complete;    /* every listed instance was read */
} view;

static void view_release(view *v)
{
    free(v->json);
    free(v->images);
    *v = (view){0};
}

/* The view of study from the cached instances of its listing (of task
 * id's study, or of a prior it compares with); 0, or an HTTP status with
 * the reason in err. */
static int build_from(ws *w, uint64_t id, const char *study, const hub_instance *list, size_t n, view *out,
                      char *err, size_t errlen)
{
    *out = (view){0};
    inst_info *ii = calloc(n ? n : 1, sizeof *ii);
    json_t *patient = NULL, *st = NULL, *series_meta = json_object();
    size_t k = 0;
    for (size_t j = 0; ii && j < n; j++) {
        ws_read *rd;
        const uint8_t *p;
        size_t len;
        if (ws_cache_get(w->cache, list[j].sop_uid, &rd, &p, &len, NULL) < 0)
            continue; /* evicted meanwhile: not in this answer */
        dcm_file *f = NULL;
        dcm_err de = {0};
        dcm_parse_opts po = {.stop_at_tag = DCM_TAG_PIXEL_DATA};
        if (dcm_parse(p, len, &po, &f, &de) < 0) {
            ws_read_end(&rd);
            continue;
        }
        inst_info *x = &ii[k];
        snprintf(x->sop, sizeof x->sop, "%s", list[j].sop_uid);
        dcm_top_str(f, DCM_TAG(0x0020, 0x000E), x->series, sizeof x->series);
        x->series_number = (int32_t)inum(f, DCM_TAG(0x0020, 0x0011), 0);
        x->json = instance_json(f, x);
        if (!json_object_get(series_meta, x->series)) {
            json_t *sm = json_object();
            json_object_set_new(sm, "uid", json_string(x->series));
            json_object_set_new(sm, "number", json_integer(x->series_number));
            json_object_set_new(sm, "modality", plain_str(f, DCM_TAG(0x0008, 0x0060)));
            json_object_set_new(sm, "description", utf8_str(f, DCM_TAG(0x0008, 0x103E)));
            json_object_set_new(series_meta, x->series, sm);
        }
        if (!patient) {
            patient = json_object();
            json_object_set_new(patient, "name", utf8_str(f, DCM_TAG(0x0010, 0x0010)));
            json_object_set_new(patient, "id", plain_str(f, DCM_TAG(0x0010, 0x0020)));
            json_object_set_new(patient, "sex", plain_str(f, DCM_TAG(0x0010, 0x0040)));
            json_object_set_new(patient, "birth_date", plain_str(f, DCM_TAG(0x0010, 0x0030)));
            json_object_set_new(patient, "age", plain_str(f, DCM_TAG(0x0010, 0x1010)));
            st = json_object();
            json_object_set_new(st, "date", plain_str(f, DCM_TAG(0x0008, 0x0020)));
            json_object_set_new(st, "time", plain_str(f, DCM_TAG(0x0008, 0x0030)));
            json_object_set_new(st, "description", utf8_str(f, DCM_TAG(0x0008, 0x1030)));
            json_object_set_new(st, "accession", plain_str(f, DCM_TAG(0x0008, 0x0050)));
        }
        dcm_free(&f);
        ws_read_end(&rd);
        k++;
    }
    if (!ii || !patient) {
        free(ii);
        json_decref(series_meta);
        json_decref(patient);
        json_decref(st);
        snprintf(err, errlen, "%s", ii ? "no instance of the study could be read" : "out of memory");
        return ii ? 502 : 500;
    }
    qsort(ii, k, sizeof *ii, by_series_then_position);
    out->images = malloc((k ? k : 1) * sizeof *out->images);
    json_t *series = json_array(), *mods = json_array(), *cur = NULL;
    for (size_t j = 0; j < k; j++) {
        const char *cur_uid = json_string_value(json_object_get(cur, "uid"));
        if (!cur || !cur_uid || strcmp(cur_uid, ii[j].series)) {
            /* NULL when the series could not be a JSON key (not UTF-8;
             * the hub refuses such UIDs, a cache may hold older files) */
            cur = json_deep_copy(json_object_get(series_meta, ii[j].series));
            if (!cur) {
                json_decref(ii[j].json);
                continue;
            }
            json_object_set_new(cur, "instances", json_array());
            json_array_append_new(series, cur);
            const char *m = json_string_value(json_object_get(cur, "modality"));
            int seen = 0;
            for (size_t q = 0; m && q < json_array_size(mods); q++)
                seen |= !strcmp(json_string_value(json_array_get(mods, q)), m);
            if (m && !seen && m[0])
                json_array_append_new(mods, json_string(m));
        }
        json_array_append_new(json_object_get(cur, "instances"), ii[j].json);
        if (ii[j].image && out->images)
            memcpy(out->images[out->n_images++], ii[j].sop, sizeof ii[j].sop);
    }
    free(ii);
    json_decref(series_meta);
    json_object_set_new(st, "modalities", mods);
    json_t *j = json_pack("{s:s,s:o,s:o,s:o,s:I}", "study_uid", study, "patient", patient, "study", st, "series",
                          series, "task", (json_int_t)id);
    out->json = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!out->json || !out->images) {
        view_release(out);
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    out->len = strlen(out->json);
    out->complete = k == n;
    return 0;
}

/* The view of task id's own study. */
static int build(ws *w, uint64_t id, view *out, char *err, size_t errlen)
{
    hub_instance *list;
    size_t n;
    char study[65];
    if (ws_study_listing(w, id, &list, &n, study, err, errlen) < 0) {
        *out = (view){0};
        return 502;
    }
    int status = build_from(w, id, study, list, n, out, err, errlen);
    free(list);
    return status;
}

int ws_view_of(ws *w, uint64_t id, const char *study, const hub_instance *list, size_t n, char **json, size_t *len,
               int *complete, char *err, size_t errlen)
{
    view v;
    int status = build_from(w, id, study, list, n, &v, err, errlen);
    if (status)
        return status;
    *json = v.json;
    *len = v.len;
    *complete = v.complete;
    v.json = NULL;
    view_release(&v);
    return 0;
}

/* Keeps a complete view with its task (takes v; mu not held). */
static void keep(ws *w, uint64_t id, view *v)
{
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    if (i >= 0 && v->complete && !w->tasks[i].view) {
        ws_task *t = &w->tasks[i];
        t->view = v->json;
        t->view_len = v->len;
        t->images = v->images;
        t->n_images = v->n_images;
        t->n_ahead = 0;
        *v = (view){0};
        ws_changed(w); /* the task list now names the first image */
    }
    pthread_mutex_unlock(&w->mu);
    view_release(v);
}

int ws_view_get(ws *w, uint64_t id, char **json, size_t *len, char *err, size_t errlen)
{
    *json = NULL;
    *len = 0;
    char study[65] = "";
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    if (i >= 0) {
        snprintf(study, sizeof study, "%s", w->tasks[i].t.study_uid);
        if (w->tasks[i].view && (*json = malloc(w->tasks[i].view_len + 1)))
            memcpy(*json, w->tasks[i].view, (*len = w->tasks[i].view_len) + 1);
    }
    pthread_mutex_unlock(&w->mu);
    if (*json) {
        ws_cache_touch(w->cache, study);
        return 0;
    }
    char why[512];
    if (ws_fetch_study(w, id, why, sizeof why) < 0) {
        snprintf(err, errlen, "cannot get the study from the hub: %s", why);
        return 502;
    }
    view v;
    int status = build(w, id, &v, err, errlen);
    if (status)
        return status;
    if (!(*json = malloc(v.len + 1))) {
        view_release(&v);
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    memcpy(*json, v.json, (*len = v.len) + 1);
    keep(w, id, &v);
    ws_cache_touch(w->cache, study);
    return 0;
}

/* Which task the background works for next (mu held): a wholly cached
 * study without its view (held tasks first, then offers), else a held
 * study with images not yet decoded ahead. */
static int next_work(ws *w, int *build_view)
{
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < w->n_tasks; i++) {
            ws_task *t = &w->tasks[i];
            if (t->done || t->view || t->view_failed || !t->inst || !t->n_inst || t->n_cached < t->n_inst)
                continue;
            if (pass == 0 ? t->held : t->offered_ms != 0) {
                *build_view = 1;
                return (int)i;
            }
        }
    for (size_t i = 0; i < w->n_tasks; i++) {
        ws_task *t = &w->tasks[i];
        if (t->held && !t->done && t->view && t->n_ahead < t->n_images) {
            *build_view = 0;
            return (int)i;
        }
    }
    return -1;
}

int ws_view_step(ws *w)
{
    int build_view = 0;
    char sop[65] = "";
    pthread_mutex_lock(&w->mu);
    int i = next_work(w, &build_view);
    uint64_t id = i >= 0 ? w->tasks[i].t.id : 0;
    if (i >= 0 && !build_view)
        memcpy(sop, w->tasks[i].images[w->tasks[i].n_ahead], sizeof sop);
    pthread_mutex_unlock(&w->mu);
    if (i < 0)
        return 0;
    if (build_view) {
        view v;
        char err[512];
        int status = build(w, id, &v, err, sizeof err);
        int ok = status == 0 && v.complete;
        if (ok && v.n_images)
            ws_frame_ahead(w, v.images[0], 1); /* the image the study opens on */
        if (!ok) {
            if (status == 0)
                snprintf(err, sizeof err, "instances left the cache while it was read");
            fprintf(stderr, "dxhub workstation: study view of task %llu: %s\n", (unsigned long long)id, err);
        }
        if (status == 0)
            keep(w, id, &v);
        pthread_mutex_lock(&w->mu);
        int j = ws_task_find(w, id);
        if (j >= 0 && !ok)
            w->tasks[j].view_failed = 1; /* built on request instead */
        pthread_mutex_unlock(&w->mu);
        return 1;
    }
    int rc = ws_frame_ahead(w, sop, 1);
    pthread_mutex_lock(&w->mu);
    int j = ws_task_find(w, id);
    if (j >= 0 && w->tasks[j].images && w->tasks[j].n_ahead < w->tasks[j].n_images)
        w->tasks[j].n_ahead = rc == -ENOSPC ? w->tasks[j].n_images : w->tasks[j].n_ahead + 1; /* full: the reader's requests decode the rest */
    pthread_mutex_unlock(&w->mu);
    return 1;
}

void ws_task_release(ws_task *t)
{
    free(t->inst);
    free(t->view);
    free(t->images);
    free(t->cmp.inst);
    free(t->cmp.view);
    t->inst = NULL;
    t->view = NULL;
    t->images = NULL;
    t->cmp = (ws_compare){0};
}

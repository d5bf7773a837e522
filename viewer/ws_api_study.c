/* ws_api_study.c — GET /api/tasks/{id}/study: what the viewer needs to lay
 * out a study, read from the cached instances' headers (fetching what is
 * not cached yet): the patient (name as UTF-8 from its Specific Character
 * Set), the study, series by Series Number, instances by position along the
 * slice normal (Image Position · (row × column cosines)), else by Instance
 * Number, with the pixel attributes of the frames /frames sends. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "viewer/ws_http.h"
#include "codecs/banned.h"

typedef struct inst_info {
    char    sop[65], series[65];
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

void ws_api_study(ws_req *r, ws_resp *o)
{
    ws *w = r->w;
    int i = ws_api_task(r, o, 0);
    if (i < 0)
        return;
    uint64_t id = w->tasks[i].t.id;
    pthread_mutex_unlock(&w->mu);
    char err[512];
    if (ws_fetch_study(w, id, err, sizeof err) < 0) {
        ws_error(o, 502, "cannot get the study from the hub: %s", err);
        return;
    }
    hub_instance *list;
    size_t n;
    char study[65];
    if (ws_study_listing(w, id, &list, &n, study, err, sizeof err) < 0) {
        ws_error(o, 502, "%s", err);
        return;
    }
    ws_cache_touch(w->cache, study);
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
    free(list);
    if (!ii || !patient) {
        free(ii);
        json_decref(series_meta);
        json_decref(patient);
        json_decref(st);
        ws_error(o, ii ? 502 : 500, ii ? "no instance of the study could be read" : "out of memory");
        return;
    }
    qsort(ii, k, sizeof *ii, by_series_then_position);
    json_t *series = json_array(), *mods = json_array(), *cur = NULL;
    for (size_t j = 0; j < k; j++) {
        if (!cur || strcmp(json_string_value(json_object_get(cur, "uid")), ii[j].series)) {
            cur = json_deep_copy(json_object_get(series_meta, ii[j].series));
            json_object_set_new(cur, "instances", json_array());
            json_array_append_new(series, cur);
            const char *m = json_string_value(json_object_get(cur, "modality"));
            int seen = 0;
            for (size_t q = 0; q < json_array_size(mods); q++)
                seen |= !strcmp(json_string_value(json_array_get(mods, q)), m);
            if (!seen && m[0])
                json_array_append_new(mods, json_string(m));
        }
        json_array_append_new(json_object_get(cur, "instances"), ii[j].json);
    }
    free(ii);
    json_decref(series_meta);
    json_object_set_new(st, "modalities", mods);
    ws_json(o, 200, json_pack("{s:s,s:o,s:o,s:o,s:I}", "study_uid", study, "patient", patient, "study", st, "series",
                              series, "task", (json_int_t)id));
}

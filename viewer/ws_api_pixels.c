/* ws_api_pixels.c — what the viewer draws: one decoded frame at full bit
 * depth (GET /api/instances/{sop}/frames/{n}) and an ECG's leads in
 * microvolts with the measurements `dxhub ecg --measure --json` prints
 * (GET /api/instances/{sop}/ecg).  Both read the cached instance in place
 * (the LMDB map), decoding only what is asked; an instance not cached yet
 * is fetched with the rest of its study first. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "viewer/ws_frames.h"
#include "viewer/ws_http.h"
#include "codecs/banned.h"


/* The task held by or offered to this reader whose study lists sop (mu
 * held), or -1; *prior set when it is the prior the task compares with
 * (ws_compare.c).  Offered too: the hub answers FETCH for an offer, and the
 * page loads the best offers' first images before the reader claims one,
 * so the first open after a claim draws without waiting for the daemon. */
static int listed_task_of(ws *w, const char *sop, const char *study, int *prior)
{
    *prior = 0;
    for (size_t i = 0; i < w->n_tasks; i++) {
        ws_task *t = &w->tasks[i];
        if (!t->held && !t->offered_ms)
            continue;
        if (study && study[0] && !strcmp(t->t.study_uid, study))
            return (int)i;
        if (study && study[0] && !strcmp(t->cmp.study, study))
            return *prior = 1, (int)i;
        for (size_t k = 0; t->inst && k < t->n_inst; k++)
            if (!strcmp(t->inst[k].sop_uid, sop))
                return (int)i;
        for (size_t k = 0; t->cmp.inst && k < t->cmp.n_inst; k++)
            if (!strcmp(t->cmp.inst[k].sop_uid, sop))
                return *prior = 1, (int)i;
    }
    return -1;
}

/* The cached instance of a held or offered task's study, fetching the study when it
 * is not cached; 0 or -1 with o filled. */
static int open_instance(ws_req *r, ws_resp *o, const char *sop, ws_read **rd, const uint8_t **p, size_t *n)
{
    ws *w = r->w;
    if (!dcm_uid_valid(sop)) {
        ws_error(o, 400, "'%.80s' is not a SOP Instance UID", sop);
        return -1;
    }
    char study[65] = "";
    if (ws_cache_get(w->cache, sop, rd, p, n, study) == 0) {
        int prior;
        pthread_mutex_lock(&w->mu);
        int i = listed_task_of(w, sop, study, &prior);
        pthread_mutex_unlock(&w->mu);
        if (i >= 0) {
            ws_cache_touch(w->cache, study);
            return 0;
        }
        ws_read_end(rd);
        ws_error(o, 403, "instance %s is not of a study this reader holds or is offered", sop);
        return -1;
    }
    int prior;
    pthread_mutex_lock(&w->mu);
    int i = listed_task_of(w, sop, NULL, &prior);
    uint64_t id = i >= 0 ? w->tasks[i].t.id : 0;
    pthread_mutex_unlock(&w->mu);
    if (i < 0) {
        ws_error(o, 404, "unknown instance %s (not of a study this reader holds or is offered; open the study first)", sop);
        return -1;
    }
    char err[512];
    if ((prior ? ws_compare_fetch(w, id, err, sizeof err) : ws_fetch_study(w, id, err, sizeof err)) < 0) {
        ws_error(o, 502, "cannot get the instance from the hub: %s", err);
        return -1;
    }
    if (ws_cache_get(w->cache, sop, rd, p, n, NULL) < 0) {
        ws_error(o, 503, "the instance did not stay in the cache (it is too small for this study)");
        return -1;
    }
    return 0;
}

static uint8_t clamp8(double v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)lround(v); }

/* Colour frames as RGB bytes (PS3.3 C.7.6.3.1.2 for YBR_FULL). */
static int to_rgb(const cdc_image *img, const uint8_t *in, size_t pixels, uint8_t *out)
{
    unsigned ob = img->out_bytes;
    unsigned shift = img->bits_stored > 8 ? img->bits_stored - 8u : 0;
    for (size_t i = 0; i < pixels; i++) {
        if (img->out_photometric == CDC_PI_PALETTE) {
            uint32_t v = ob == 2 ? ((const uint16_t *)in)[i] : in[i];
            for (int c = 0; c < 3; c++) {
                const cdc_lut *l = &img->palette[c];
                if (!l->n || !l->data)
                    return -1;
                int64_t k = (int64_t)v - l->first;
                k = k < 0 ? 0 : k >= (int64_t)l->n ? (int64_t)l->n - 1 : k;
                uint16_t e = l->data[k];
                out[i * 3 + (size_t)c] = (uint8_t)(l->bits > 8 ? e >> (l->bits - 8) : e);
            }
            continue;
        }
        double s[3];
        for (int c = 0; c < 3; c++)
            s[c] = ob == 2 ? (double)(((const uint16_t *)in)[i * 3 + (size_t)c] >> shift) : in[i * 3 + (size_t)c];
        if (img->out_photometric == CDC_PI_RGB) {
            for (int c = 0; c < 3; c++)
                out[i * 3 + (size_t)c] = clamp8(s[c]);
        } else { /* YBR_FULL (422 comes upsampled) and the rest of the YBR family, full range */
            double y = s[0], cb = s[1] - 128, cr = s[2] - 128;
            out[i * 3] = clamp8(y + 1.402 * cr);
            out[i * 3 + 1] = clamp8(y - 0.344136 * cb - 0.714136 * cr);
            out[i * 3 + 2] = clamp8(y + 1.772 * cb);
        }
    }
    return 0;
}

/* The frame's bytes and headers into o (takes p). */
static void send_frame(ws_resp *o, const ws_frame_info *fi, void *p, size_t len)
{
    ws_bytes(o, 200, "application/octet-stream", p, len);
    ws_header(o, "X-Rows", "%u", fi->rows);
    ws_header(o, "X-Columns", "%u", fi->cols);
    ws_header(o, "X-Bits-Allocated", "%u", fi->bits);
    ws_header(o, "X-Samples", "%u", fi->samples);
    ws_header(o, "X-Signed", "%u", fi->is_signed);
    ws_header(o, "X-Photometric", "%s", fi->photometric);
}

/* Frame fno (1-based) of the instance bytes p/n as the viewer takes it:
 * grey at full bit depth, colour as RGB bytes.  0 with *out (malloc'd) and
 * *keep set when it is worth keeping in w->frames (decoding it again costs
 * more than a copy), or an HTTP status with the reason in msg. */
static int decode_frame(cdc_sandbox *sb, const char *sop, const uint8_t *p, size_t n, long fno, ws_frame_info *fi,
                        uint8_t **out, size_t *out_len, int *keep, char *msg, size_t msglen)
{
    dcm_file *f = NULL;
    dcm_err de = {0};
    cdc_image img = {0};
    uint8_t *raw = NULL, *rgb = NULL;
    int status = 0;
    *out = NULL;
    if (dcm_parse(p, n, NULL, &f, &de) < 0) {
        snprintf(msg, msglen, "instance %s is not readable DICOM: %s", sop, de.msg);
        status = 422;
        goto out;
    }
    int rc = cdc_image_init(&img, f, &de);
    if (rc < 0) {
        snprintf(msg, msglen, "instance %s has no frames to show: %s", sop, de.msg[0] ? de.msg : cdc_strerror(rc));
        status = rc == DCM_ENOTFOUND ? 404 : 422;
        goto out;
    }
    if (img.is_float) {
        snprintf(msg, msglen, "instance %s has floating-point pixels, which the viewer does not show", sop);
        status = 415;
        goto out;
    }
    img.sandbox = sb; /* crash-prone codecs decode in the workstation's child */
    if ((uint32_t)fno > img.frames) {
        snprintf(msg, msglen, "instance %s has %u frame(s), not %ld", sop, img.frames, fno);
        status = 404;
        goto out;
    }
    size_t size = cdc_frame_size(&img);
    raw = malloc(size ? size : 1);
    if (!raw) {
        snprintf(msg, msglen, "out of memory for a frame of %zu bytes", size);
        status = 500;
        goto out;
    }
    if ((rc = cdc_decode_frame(&img, (uint32_t)fno - 1, raw, size, &de)) < 0) {
        snprintf(msg, msglen, "frame %ld of %s does not decode: %s", fno, sop, de.msg[0] ? de.msg : cdc_strerror(rc));
        status = 422;
        goto out;
    }
    int mono = img.out_photometric == CDC_PI_MONOCHROME1 || img.out_photometric == CDC_PI_MONOCHROME2;
    size_t pixels = (size_t)img.rows * img.cols;
    *fi = (ws_frame_info){.rows = img.rows, .cols = img.cols, .bits = (uint8_t)(mono ? img.out_bytes * 8 : 8),
                          .samples = (uint8_t)(mono ? 1 : 3), .is_signed = (uint8_t)(mono && img.is_signed)};
    snprintf(fi->photometric, sizeof fi->photometric, "%s", cdc_photometric_name(img.photometric));
    *keep = img.ts && img.ts->encapsulated;
    if (mono) {
        *out = raw;
        *out_len = size;
        raw = NULL;
        goto out;
    }
    rgb = malloc(pixels * 3 + 1);
    if (!rgb || to_rgb(&img, raw, pixels, rgb) < 0) {
        snprintf(msg, msglen, "frame %ld of %s: %s", fno, sop,
                 rgb ? "a palette colour image without its palette" : "out of memory");
        status = rgb ? 422 : 500;
        goto out;
    }
    *out = rgb;
    *out_len = pixels * 3;
    rgb = NULL;
out:
    free(raw);
    free(rgb);
    cdc_image_release(&img);
    dcm_free(&f);
    return status;
}

void ws_api_frame(ws_req *r, ws_resp *o)
{
    const char *sop = r->args[0], *ns = r->args[1];
    char *end;
    errno = 0;
    long fno = strtol(ns, &end, 10);
    if (!ns[0] || *end || errno || fno < 1 || fno > INT32_MAX) {
        ws_error(o, 400, "'%.40s' is not a frame number (1, 2, ...)", ns);
        return;
    }
    ws_read *rd = NULL;
    const uint8_t *p;
    size_t n;
    if (open_instance(r, o, sop, &rd, &p, &n) < 0)
        return;
    ws_frame_info fi = {0};
    void *kept;
    size_t kept_len;
    if (ws_frames_get(r->w->frames, sop, (uint32_t)fno, &fi, &kept, &kept_len) == 0) {
        ws_read_end(&rd);
        send_frame(o, &fi, kept, kept_len);
        return;
    }
    uint8_t *px;
    size_t len;
    int keep = 0;
    char msg[600];
    int status = decode_frame(r->w->decoder, sop, p, n, fno, &fi, &px, &len, &keep, msg, sizeof msg);
    ws_read_end(&rd);
    if (status) {
        ws_error(o, status, "%s", msg);
        return;
    }
    if (keep)
        ws_frames_put(r->w->frames, sop, (uint32_t)fno, &fi, px, len);
    send_frame(o, &fi, px, len);
}

int ws_frame_ahead(ws *w, const char *sop, uint32_t n)
{
    if (ws_frames_has(w->frames, sop, n))
        return 0;
    ws_read *rd;
    const uint8_t *p;
    size_t len;
    if (ws_cache_get(w->cache, sop, &rd, &p, &len, NULL) < 0)
        return -ENOENT;
    ws_frame_info fi = {0};
    uint8_t *px;
    size_t px_len;
    int keep = 0;
    char msg[600];
    int status = decode_frame(w->decoder, sop, p, len, n, &fi, &px, &px_len, &keep, msg, sizeof msg);
    ws_read_end(&rd);
    if (status)
        return -EINVAL; /* the reader's request will say why */
    int rc = !keep ? 0 : !ws_frames_room(w->frames, px_len) ? -ENOSPC : 1;
    if (rc == 1)
        ws_frames_put(w->frames, sop, n, &fi, px, px_len);
    free(px);
    return rc;
}

void ws_api_ecg(ws_req *r, ws_resp *o)
{
    const char *sop = r->args[0];
    ws_read *rd = NULL;
    const uint8_t *p;
    size_t n;
    if (open_instance(r, o, sop, &rd, &p, &n) < 0)
        return;
    dcm_file *f = NULL;
    dcm_err de = {0};
    ecg_record *rec = NULL;
    if (dcm_parse(p, n, NULL, &f, &de) < 0) {
        ws_error(o, 422, "instance %s is not readable DICOM: %s", sop, de.msg);
        goto out;
    }
    int rc = ecg_read_dicom(f, NULL, &rec, &de);
    if (rc < 0) {
        ws_error(o, 422, "instance %s has no ECG the viewer can show: %s", sop,
                 de.msg[0] ? de.msg : ecg_strerror(rc));
        goto out;
    }
    json_t *leads = json_array();
    for (size_t l = 0; l < rec->n_leads; l++) {
        const ecg_lead *ld = &rec->leads[l];
        double k = ecg_uv_per_count(ld);
        if (k <= 0)
            continue; /* not a voltage lead */
        json_t *uv = json_array();
        for (size_t s = 0; s < rec->n_samples; s++)
            json_array_append_new(uv, json_integer((json_int_t)llround(((double)ld->samples[s] - ld->baseline) * k)));
        json_array_append_new(leads, json_pack("{s:s,s:o}", "name", ld->name, "uv", uv));
    }
    char *mj = NULL, err[256];
    json_t *meas = NULL;
    if (hub_ecg_measure_json(rec, &mj, err, sizeof err) == 0)
        meas = json_loads(mj, 0, NULL);
    free(mj);
    ws_json(o, 200, json_pack("{s:f,s:I,s:o,s:o}", "sampling_rate", rec->rate, "samples", (json_int_t)rec->n_samples,
                              "leads", leads, "measurements", meas ? meas : json_null()));
out:
    ecg_free(&rec);
    dcm_free(&f);
    ws_read_end(&rd);
}

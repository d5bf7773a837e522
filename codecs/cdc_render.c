/* cdc_render.c — the DICOM grayscale display pipeline to 8 bits, as
 * DCMTK's dcm2pnm applies it: modality LUT or rescale (PS3.3 C.11.1), VOI
 * window or VOI LUT (C.11.2), MONOCHROME1 inversion; colour images are
 * converted to RGB (YBR_* by C.7.6.3.1.2, PALETTE COLOR through its
 * tables).  The viewer uses the same functions. */
#include <math.h>
#include "codecs/cdc_private.h"

void cdc_raster_release(cdc_raster *r)
{
    if (!r)
        return;
    free(r->pixels);
    memset(r, 0, sizeof *r);
}

void cdc_frame_display_release(cdc_frame_display *d)
{
    if (!d)
        return;
    free(d->modality_lut.data);
    free(d->voi_lut.data);
    memset(d, 0, sizeof *d);
}

/* Item i of sequence tag under parent, or -1. */
static int32_t seq_item(const dcm_file *f, int32_t parent, uint32_t tag, uint32_t i)
{
    int32_t s = dcm_find(f, parent, tag);
    if (s < 0)
        return -1;
    int32_t it = dcm_at(f, s)->child;
    for (; it >= 0 && i > 0; i--)
        it = dcm_at(f, it)->next;
    return it;
}

static bool get_f64(const dcm_file *f, int32_t parent, uint32_t tag, size_t i, double *v)
{
    int32_t e = parent == -2 ? -1 : dcm_find(f, parent, tag);
    return e >= 0 && dcm_at(f, e)->value_len && dcm_get_f64(f, dcm_at(f, e), i, v) == 0;
}

/* Where a frame's functional-group macro lives: per-frame item, else
 * shared item, else the top level (-1).  -2: nowhere. */
static int32_t fg_scope(const dcm_file *f, uint32_t frame, uint32_t macro_seq, uint32_t attr)
{
    int32_t pf = seq_item(f, -1, DCM_TAG(0x5200, 0x9230), frame);
    int32_t m = pf >= 0 ? seq_item(f, pf, macro_seq, 0) : -1;
    if (m >= 0 && dcm_find(f, m, attr) >= 0)
        return m;
    int32_t sh = seq_item(f, -1, DCM_TAG(0x5200, 0x9229), 0);
    m = sh >= 0 ? seq_item(f, sh, macro_seq, 0) : -1;
    if (m >= 0 && dcm_find(f, m, attr) >= 0)
        return m;
    return dcm_find(f, -1, attr) >= 0 ? -1 : -2;
}

int cdc_frame_display_init(const cdc_image *img, uint32_t frame, cdc_frame_display *d, dcm_err *err)
{
    const dcm_file *f = img->file;
    memset(d, 0, sizeof *d);
    d->slope = 1;
    d->intercept = 0;
    int32_t sc = fg_scope(f, frame, DCM_TAG(0x0028, 0x9145), DCM_TAG(0x0028, 0x1053));
    double v;
    if (get_f64(f, sc, DCM_TAG(0x0028, 0x1053), 0, &v) && v != 0)
        d->slope = v;
    sc = fg_scope(f, frame, DCM_TAG(0x0028, 0x9145), DCM_TAG(0x0028, 0x1052));
    if (get_f64(f, sc, DCM_TAG(0x0028, 0x1052), 0, &v))
        d->intercept = v;
    sc = fg_scope(f, frame, DCM_TAG(0x0028, 0x9132), DCM_TAG(0x0028, 0x1050));
    int32_t cw = sc == -2 ? -1 : dcm_find(f, sc, DCM_TAG(0x0028, 0x1050));
    int32_t ww = sc == -2 ? -1 : dcm_find(f, sc, DCM_TAG(0x0028, 0x1051));
    if (cw >= 0 && ww >= 0) {
        size_t n = dcm_value_count(f, dcm_at(f, cw)), nw = dcm_value_count(f, dcm_at(f, ww));
        n = n < nw ? n : nw;
        for (size_t i = 0; i < n && d->n_windows < CDC_MAX_WINDOWS; i++) {
            double c, w;
            if (dcm_get_f64(f, dcm_at(f, cw), i, &c) == 0 && dcm_get_f64(f, dcm_at(f, ww), i, &w) == 0 && w >= 1) {
                d->center[d->n_windows] = c;
                d->width[d->n_windows++] = w;
            }
        }
        char fn[32];
        int32_t fi = dcm_find(f, sc, DCM_TAG(0x0028, 0x1056));
        if (fi >= 0 && dcm_get_str(f, dcm_at(f, fi), 0, fn, sizeof fn) >= 0 && !strcmp(fn, "SIGMOID"))
            d->voi_sigmoid = 1;
    }
    int32_t it = seq_item(f, -1, DCM_TAG(0x0028, 0x3000), 0);
    int rc = 0;
    if (it >= 0)
        rc = cdc_read_lut(f, it, DCM_TAG(0x0028, 0x3002), DCM_TAG(0x0028, 0x3006), 0, &d->modality_lut, err);
    it = seq_item(f, -1, DCM_TAG(0x0028, 0x3010), 0);
    if (rc == 0 && it >= 0)
        rc = cdc_read_lut(f, it, DCM_TAG(0x0028, 0x3002), DCM_TAG(0x0028, 0x3006), 0, &d->voi_lut, err);
    if (rc < 0)
        cdc_frame_display_release(d);
    return rc;
}

/* DCMTK's histogram window (DiMonoPixelTemplate::getHistogramWindow):
 * drop `thresh` of the pixels at each end of the value histogram. */
int cdc_auto_window(const double *v, size_t n, double *center, double *width)
{
    if (n == 0)
        return -1;
    double lo = v[0], hi = v[0];
    for (size_t i = 1; i < n; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    if (hi - lo < 1) {
        *center = lo + 0.5;
        *width = 1;
        return 0;
    }
    /* Integer bins of one unit (modality values of integer pixels); a huge
     * range (floats, extreme slopes) is binned to at most 2^20 buckets. */
    double span = hi - lo + 1;
    size_t nb = span > (1 << 20) ? (1 << 20) : (size_t)span;
    double scale = (double)nb / span;
    uint32_t *h = calloc(nb, sizeof *h);
    if (!h)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t b = (size_t)((v[i] - lo) * scale);
        h[b < nb ? b : nb - 1]++;
    }
    size_t thr = (size_t)(0.05 * (double)n);
    size_t t = 0, i = 0;
    while (i < nb && t < thr)
        t += h[i++];
    double minv = lo + (double)i / scale;
    t = 0;
    i = nb;
    while (i > 0 && t < thr)
        t += h[--i];
    double maxv = lo + (double)i / scale;
    free(h);
    if (minv >= maxv) {
        minv = lo;
        maxv = hi;
    }
    *center = (minv + maxv + 1) / 2;
    *width = maxv - minv + 1;
    return 0;
}

static double lut_at(const cdc_lut *l, double x)
{
    double k = x - l->first;
    size_t i = k <= 0 ? 0 : k >= l->n - 1 ? l->n - 1 : (size_t)k;
    return l->data[i];
}

/* One sample of the decoded frame as a number. */
static double sample_at(const cdc_image *img, const uint8_t *buf, size_t i)
{
    switch (img->out_bytes) {
    case 1:
        return img->is_signed ? (double)(int8_t)buf[i] : buf[i];
    case 2:
        return img->is_signed ? (double)((const int16_t *)buf)[i] : ((const uint16_t *)buf)[i];
    case 4:
        if (img->is_float)
            return ((const float *)buf)[i];
        return img->is_signed ? (double)((const int32_t *)buf)[i] : ((const uint32_t *)buf)[i];
    default:
        return ((const double *)buf)[i];
    }
}

static uint8_t to8(double v)
{
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5);
}

static uint8_t trunc8(double v)
{
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
}

static int render_colour(const cdc_image *img, const uint8_t *buf, uint8_t *out)
{
    size_t px = (size_t)img->rows * img->cols;
    cdc_photometric pi = img->out_photometric;
    unsigned shift = img->bits_stored > 8 ? img->bits_stored - 8 : 0;
    if (pi == CDC_PI_PALETTE) {
        for (size_t i = 0; i < px; i++) {
            double x = sample_at(img, buf, i);
            for (int c = 0; c < 3; c++) {
                const cdc_lut *l = &img->palette[c];
                if (!l->n)
                    return CDC_EPIXEL;
                double y = lut_at(l, x);
                out[3 * i + c] = (uint8_t)((unsigned)y >> (l->bits > 8 ? l->bits - 8 : 0));
            }
        }
        return 0;
    }
    for (size_t i = 0; i < px; i++) {
        double s[3];
        for (int c = 0; c < 3; c++)
            s[c] = (double)((unsigned)sample_at(img, buf, 3 * i + c) >> shift);
        if (pi == CDC_PI_YBR_FULL || pi == CDC_PI_YBR_FULL_422) {
            /* DCMTK's coefficients and truncation (dcm2pnm is the oracle). */
            double y = s[0], cb = s[1], cr = s[2];
            out[3 * i] = trunc8(y + 1.4020 * cr - 0.7010 * 255);
            out[3 * i + 1] = trunc8(y - 0.3441 * cb - 0.7141 * cr + 0.5291 * 255);
            out[3 * i + 2] = trunc8(y + 1.7720 * cb - 0.8859 * 255);
        } else if (pi == CDC_PI_YBR_PARTIAL_420) {
            double y = 1.1644 * (s[0] - 16), cb = s[1] - 128, cr = s[2] - 128;
            out[3 * i] = to8(y + 1.5960 * cr);
            out[3 * i + 1] = to8(y - 0.3918 * cb - 0.8130 * cr);
            out[3 * i + 2] = to8(y + 2.0172 * cb);
        } else {
            for (int c = 0; c < 3; c++)
                out[3 * i + c] = to8(s[c]);
        }
    }
    return 0;
}

/* PS3.3 C.11.2.1.2.1 (linear) and C.11.2.1.3.1 (sigmoid), to 0..255. */
static uint8_t window(double x, double c, double w, int sigmoid)
{
    if (sigmoid)
        return to8(255.0 / (1 + exp(-4 * (x - c) / w)));
    if (w <= 1)
        return x < c - 0.5 ? 0 : 255;
    double lo = c - 0.5 - (w - 1) / 2, hi = c - 0.5 + (w - 1) / 2;
    if (x <= lo)
        return 0;
    if (x > hi)
        return 255;
    /* truncated, not rounded, as DCMTK's DiMonoOutputPixelTemplate does */
    return trunc8(((x - (c - 0.5)) / (w - 1) + 0.5) * 255);
}

int cdc_render_8bit(const cdc_image *img, const cdc_render_opts *o, cdc_raster *out, dcm_err *err)
{
    memset(out, 0, sizeof *out);
    uint32_t frame = o ? o->frame : 0;
    if (frame >= img->frames)
        return dcm_fail(err, CDC_EFRAME, 0, "frame %u requested; the image has %u", frame + 1, img->frames);
    size_t fsz = cdc_frame_size(img), px = (size_t)img->rows * img->cols;
    uint8_t *buf = malloc(fsz ? fsz : 1);
    bool colour = img->samples == 3 || img->out_photometric == CDC_PI_PALETTE;
    out->pixels = malloc(px * (colour ? 3 : 1));
    double *v = colour ? NULL : malloc(px * sizeof *v);
    cdc_frame_display d = {0};
    int rc = buf && out->pixels && (colour || v) ? 0 : dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    if (rc == 0)
        rc = cdc_decode_frame(img, frame, buf, fsz, err);
    if (rc < 0)
        goto out;
    out->width = img->cols;
    out->height = img->rows;
    out->channels = colour ? 3 : 1;
    if (colour) {
        rc = render_colour(img, buf, out->pixels);
        if (rc < 0)
            dcm_fail(err, rc, 0, "PALETTE COLOR image without its lookup tables");
        goto out;
    }
    rc = cdc_frame_display_init(img, frame, &d, err);
    if (rc < 0)
        goto out;
    /* Modality LUT: the table when there is one, else the rescale. */
    for (size_t i = 0; i < px; i++) {
        double x = sample_at(img, buf, i);
        v[i] = d.modality_lut.n ? lut_at(&d.modality_lut, x) : x * d.slope + d.intercept;
    }
    bool invert = img->out_photometric == CDC_PI_MONOCHROME1;
    if (o && o->has_window) {
        for (size_t i = 0; i < px; i++)
            out->pixels[i] = window(v[i], o->center, o->width, d.voi_sigmoid);
    } else if (d.n_windows) {
        for (size_t i = 0; i < px; i++)
            out->pixels[i] = window(v[i], d.center[0], d.width[0], d.voi_sigmoid);
    } else if (d.voi_lut.n) {
        double top = (double)((1u << d.voi_lut.bits) - 1);
        for (size_t i = 0; i < px; i++)
            out->pixels[i] = to8(lut_at(&d.voi_lut, v[i]) * 255.0 / top);
    } else {
        double c, w;
        if (cdc_auto_window(v, px, &c, &w) < 0) {
            rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < px; i++)
            out->pixels[i] = window(v[i], c, w, 0);
    }
    if (invert)
        for (size_t i = 0; i < px; i++)
            out->pixels[i] = (uint8_t)(255 - out->pixels[i]);
out:
    cdc_frame_display_release(&d);
    free(buf);
    free(v);
    if (rc < 0)
        cdc_raster_release(out);
    return rc;
}

int cdc_write_jpeg(const cdc_raster *r, int quality, dcm_sink out, dcm_err *err)
{
    return cdc_jpeg_write_raster(r->pixels, r->width, r->height, r->channels,
                                 quality > 0 && quality <= 100 ? quality : 90, out, err);
}

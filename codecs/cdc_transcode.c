/* cdc_transcode.c — encode frames and rewrite whole files in another
 * transfer syntax, one frame at a time: the Part 10 writer (dcm_write)
 * copies every other element and calls back here for Pixel Data. */
#include "codecs/cdc_private.h"

static bool is_native(const dcm_ts *ts)
{
    return !ts->encapsulated;
}

int cdc_encode_plan(const cdc_image *img, const char *ts_uid, cdc_photometric *pi_out,
                    uint16_t *ba_out, dcm_err *err)
{
    const dcm_ts *ts = ts_uid ? dcm_ts_find(ts_uid, strlen(ts_uid)) : NULL;
    if (!ts)
        return dcm_fail(err, DCM_ETS, 0, "unknown transfer syntax %s", ts_uid ? ts_uid : "(none)");
    cdc_photometric pi = img->out_photometric;
    *ba_out = img->bits_allocated;
    if (img->is_float && ts->encapsulated)
        return dcm_fail(err, DCM_ETS, 0, "float pixel data cannot be %s", ts->name);
    if (is_native(ts)) {
        *pi_out = pi;
        return 0;
    }
    const cdc_codec *cd = cdc_codec_find(ts->uid);
    if (!cd || !cd->encode)
        return dcm_fail(err, DCM_ETS, 0, "no encoder for %s", ts->name);
    if (img->bits_allocated == 1 && strcmp(ts->uid, "1.2.840.10008.1.2.8.1"))
        return dcm_fail(err, DCM_ETS, 0, "1-bit pixel data cannot be %s", ts->name);
    if (!strcmp(ts->uid, "1.2.840.10008.1.2.4.50")) {
        if (img->bits_allocated != 8)
            return dcm_fail(err, DCM_ETS, 0, "JPEG Baseline holds 8-bit samples; this image has %u-bit",
                            img->bits_allocated);
        if (pi == CDC_PI_PALETTE)
            return dcm_fail(err, DCM_ETS, 0, "PALETTE COLOR indices cannot be JPEG Baseline (lossy)");
        if (img->samples == 3)
            pi = CDC_PI_YBR_FULL_422;
    } else if (cd->decode == cdc_j2k_decode || cd->decode == cdc_htj2k_decode) {
        if (img->bits_stored > 16)
            return dcm_fail(err, DCM_ETS, 0, "%s here holds up to 16 bits per sample", ts->name);
        if (pi == CDC_PI_RGB)
            pi = CDC_PI_YBR_RCT; /* reversible colour transform in the codestream */
    } else if (cd->decode == cdc_jpegls_decode) {
        if (img->bits_stored < 2 || img->bits_stored > 16)
            return dcm_fail(err, DCM_ETS, 0, "JPEG-LS holds 2 to 16 bits per sample; this image has %u",
                            img->bits_stored);
    }
    *pi_out = pi;
    return 0;
}

static void enc_fmt(const cdc_image *img, cdc_fmt *fmt)
{
    cdc_fmt_of_image(img, fmt);
    fmt->photometric = img->out_photometric; /* the colour space of the decoded frame */
    fmt->planar = 0;
}

int cdc_encode_frame(const cdc_image *img, const char *ts_uid, const cdc_encode_opts *o,
                     const void *frame, size_t frame_len, uint8_t **out, size_t *out_len, dcm_err *err)
{
    *out = NULL;
    *out_len = 0;
    cdc_photometric pi;
    uint16_t ba;
    int rc = cdc_encode_plan(img, ts_uid, &pi, &ba, err);
    if (rc < 0)
        return rc;
    const cdc_codec *cd = cdc_codec_find(ts_uid);
    if (!cd || !cd->encode)
        return dcm_fail(err, DCM_ETS, 0, "no encoder for %s", ts_uid);
    if (frame_len < cdc_frame_size(img))
        return dcm_fail(err, DCM_EBADLEN, 0, "frame of %zu bytes; the image needs %zu", frame_len, cdc_frame_size(img));
    cdc_fmt fmt;
    enc_fmt(img, &fmt);
    dcm_buf b = {0};
    rc = cd->encode(&fmt, frame, frame_len, o, cd->lossy_target, &b, err);
    if (rc < 0) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    *out_len = b.n;
    return 0;
}

/* --- the Pixel Data element, written by the codec -------------------------- */

typedef struct xctx {
    cdc_image            img;
    const dcm_ts        *target;
    const cdc_codec     *cd;     /* target codec; NULL for native targets */
    const cdc_encode_opts *o;
} xctx;

static void put16(uint8_t *p, uint16_t v, bool be)
{
    p[be ? 0 : 1] = (uint8_t)(v >> 8);
    p[be ? 1 : 0] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v, bool be)
{
    put16(p + (be ? 0 : 2), (uint16_t)(v >> 16), be);
    put16(p + (be ? 2 : 0), (uint16_t)v, be);
}

static int item(dcm_sink out, uint32_t tag, uint32_t len)
{
    uint8_t h[8];
    put16(h, DCM_GROUP(tag), false);
    put16(h + 2, DCM_ELEM(tag), false);
    put32(h + 4, len, false);
    return out.write(out.ctx, h, 8);
}

static int pixel_header(dcm_sink out, const dcm_ts *ts, const char *vr, uint32_t len)
{
    uint8_t h[12];
    bool be = ts->big_endian;
    put16(h, 0x7FE0, be);
    put16(h + 2, 0x0010, be);
    if (!ts->explicit_vr) {
        put32(h + 4, len, be);
        return out.write(out.ctx, h, 8);
    }
    h[4] = (uint8_t)vr[0];
    h[5] = (uint8_t)vr[1];
    h[6] = h[7] = 0;
    put32(h + 8, len, be);
    return out.write(out.ctx, h, 12);
}

static int write_native(xctx *x, dcm_sink out, const dcm_ts *ts, dcm_err *err)
{
    cdc_image *img = &x->img;
    cdc_fmt fmt;
    enc_fmt(img, &fmt);
    size_t fsz = cdc_frame_size(img), nb = cdc_native_frame_bytes(&fmt);
    uint64_t total = img->bits_allocated == 1 ? ((uint64_t)img->rows * img->cols * img->frames + 7) / 8
                                              : (uint64_t)nb * img->frames;
    uint64_t padded = total + (total & 1);
    if (padded > 0xFFFFFFFEu)
        return dcm_fail(err, DCM_ETOOBIG, 0, "native pixel data of %llu bytes exceeds a 32-bit length",
                        (unsigned long long)total);
    /* Bits Allocated 1 packs across frame boundaries: small, kept whole. */
    size_t hold = img->bits_allocated == 1 ? (size_t)padded : nb;
    uint8_t *frame = malloc(fsz ? fsz : 1), *packed = calloc(1, hold ? hold : 1);
    int rc = frame && packed ? 0 : dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    if (rc == 0)
        rc = pixel_header(out, ts, img->bits_allocated > 8 ? "OW" : "OB", (uint32_t)padded);
    for (uint32_t i = 0; i < img->frames && rc == 0; i++) {
        rc = cdc_decode_frame(img, i, frame, fsz, err);
        if (rc < 0)
            break;
        if (img->bits_allocated == 1) {
            cdc_native_pack(&fmt, frame, (uint64_t)i * img->rows * img->cols, false, packed);
            continue;
        }
        cdc_native_pack(&fmt, frame, 0, ts->big_endian, packed);
        rc = out.write(out.ctx, packed, nb);
    }
    if (rc == 0 && img->bits_allocated == 1)
        rc = out.write(out.ctx, packed, (size_t)total);
    if (rc == 0 && (total & 1))
        rc = out.write(out.ctx, "", 1);
    free(frame);
    free(packed);
    return rc;
}

static int write_encapsulated(xctx *x, dcm_sink out, const dcm_ts *ts, dcm_err *err)
{
    cdc_image *img = &x->img;
    cdc_fmt fmt;
    enc_fmt(img, &fmt);
    size_t fsz = cdc_frame_size(img);
    uint8_t *frame = malloc(fsz ? fsz : 1);
    dcm_buf b = {0};
    int rc = frame ? 0 : dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    /* PS3.5 A.4: an empty Basic Offset Table, then one fragment per frame. */
    if (rc == 0)
        rc = pixel_header(out, ts, "OB", DCM_UNDEFINED_LENGTH);
    if (rc == 0)
        rc = item(out, DCM_TAG_ITEM, 0);
    for (uint32_t i = 0; i < img->frames && rc == 0; i++) {
        rc = cdc_decode_frame(img, i, frame, fsz, err);
        if (rc < 0)
            break;
        b.n = 0;
        rc = x->cd->encode(&fmt, frame, fsz, x->o, x->cd->lossy_target, &b, err);
        if (rc < 0)
            break;
        if (b.n & 1)
            rc = dcm_buf_put(&b, "", 1); /* items have even length */
        if (rc == 0 && b.n > 0xFFFFFFF0u)
            rc = dcm_fail(err, DCM_ETOOBIG, 0, "frame %u encodes to %zu bytes", i, b.n);
        if (rc == 0)
            rc = item(out, DCM_TAG_ITEM, (uint32_t)b.n);
        if (rc == 0)
            rc = out.write(out.ctx, b.p, b.n);
    }
    if (rc == 0)
        rc = item(out, DCM_TAG_SEQ_DELIM, 0);
    free(b.p);
    free(frame);
    return rc;
}

static int pixel_writer(void *ctx, dcm_sink out, const dcm_ts *ts, dcm_err *err)
{
    xctx *x = ctx;
    return x->cd ? write_encapsulated(x, out, ts, err) : write_native(x, out, ts, err);
}

static int no_pixels(void *ctx, dcm_sink out, const dcm_ts *ts, dcm_err *err)
{
    (void)ctx, (void)out, (void)ts, (void)err;
    return 0;
}

/* --- whole files ------------------------------------------------------------ */

enum { MAX_EDITS = 8 };

typedef struct plan {
    xctx           x;
    dcm_edit       edits[MAX_EDITS];
    size_t         n_edits;
    uint8_t        planar0[2], bits8[2];
    const char    *pi_name;
    dcm_write_opts wo;
    int            plain; /* no pixel work: dcm_write alone */
} plan;

static int prepare(plan *pl, const dcm_file *f, const char *ts_uid, const cdc_encode_opts *o, dcm_err *err)
{
    memset(pl, 0, sizeof *pl);
    const dcm_ts *ts = dcm_ts_find(ts_uid, strlen(ts_uid));
    if (!ts)
        return dcm_fail(err, DCM_ETS, 0, "unknown transfer syntax %s", ts_uid);
    pl->wo.ts_uid = ts->uid;
    const dcm_ts *src = dcm_file_ts(f);
    int32_t pd = dcm_find(f, -1, DCM_TAG_PIXEL_DATA);
    bool src_encaps = pd >= 0 && (dcm_at(f, pd)->flags & DCM_F_ENCAPS);
    /* Native → native, or the same syntax: the writer alone (byte for byte where it can). */
    if (pd < 0 || ts == src || (!src_encaps && !ts->encapsulated)) {
        pl->plain = 1;
        if (pd < 0) /* no pixels to encode: the data set alone, in the new syntax */
            pl->wo.pixel_writer = no_pixels;
        return 0;
    }
    int rc = cdc_image_init(&pl->x.img, f, err);
    if (rc < 0)
        return rc;
    cdc_photometric pi;
    uint16_t ba;
    rc = cdc_encode_plan(&pl->x.img, ts->uid, &pi, &ba, err);
    if (rc < 0) {
        cdc_image_release(&pl->x.img);
        return rc;
    }
    pl->x.target = ts;
    pl->x.o = o;
    pl->x.cd = ts->encapsulated ? cdc_codec_find(ts->uid) : NULL;
    pl->pi_name = cdc_photometric_name(pi);
    dcm_edit *e = pl->edits;
    e[pl->n_edits++] = (dcm_edit){DCM_TAG(0x0028, 0x0004), DCM_VR_CS, (const uint8_t *)pl->pi_name, strlen(pl->pi_name), 0};
    if (pl->x.img.samples > 1)
        e[pl->n_edits++] = (dcm_edit){DCM_TAG(0x0028, 0x0006), DCM_VR_US, pl->planar0, 2, 0};
    if (ba != pl->x.img.bits_allocated) {
        pl->bits8[0] = (uint8_t)ba;
        e[pl->n_edits++] = (dcm_edit){DCM_TAG(0x0028, 0x0100), DCM_VR_US, pl->bits8, 2, 0};
    }
    /* PS3.3 C.7.6.1.1.5: once lossy, always marked lossy (the decoded
     * pixels of a lossy source stay what that compression made them). */
    const cdc_codec *src_cd = cdc_codec_find(src->uid);
    const char *method = pl->x.cd && pl->x.cd->lossy_target ? pl->x.cd->method
                         : src->lossy && src_cd && src_cd->method && dcm_find(f, -1, DCM_TAG(0x0028, 0x2114)) < 0
                             ? src_cd->method : NULL;
    if ((pl->x.cd && pl->x.cd->lossy_target) || src->lossy)
        e[pl->n_edits++] = (dcm_edit){DCM_TAG(0x0028, 0x2110), DCM_VR_CS, (const uint8_t *)"01", 2, 0};
    if (method)
        e[pl->n_edits++] = (dcm_edit){DCM_TAG(0x0028, 0x2114), DCM_VR_CS, (const uint8_t *)method, strlen(method), 0};
    /* Offset tables describe the old fragments. */
    e[pl->n_edits++] = (dcm_edit){DCM_TAG(0x7FE0, 0x0001), DCM_VR_OV, NULL, 0, 1};
    e[pl->n_edits++] = (dcm_edit){DCM_TAG(0x7FE0, 0x0002), DCM_VR_OV, NULL, 0, 1};
    pl->wo.edits = pl->edits;
    pl->wo.n_edits = pl->n_edits;
    pl->wo.pixel_writer = pixel_writer;
    pl->wo.pixel_ctx = &pl->x;
    return 0;
}

/* A multi-frame source whose codec decodes in a child (cdc_sandbox.c):
 * one child for the whole file rather than a fork per frame. */
static cdc_sandbox *child_for_file(plan *pl)
{
    cdc_sandbox *sb = NULL;
    const cdc_codec *cd = pl->plain ? NULL : cdc_codec_find(pl->x.img.ts->uid);
    if (cd && cd->isolate && pl->x.img.frames > 1 && !pl->x.img.sandbox &&
        cdc_sandbox_open(&sb, &(dcm_err){{0}, 0}) == 0)
        pl->x.img.sandbox = sb;
    return sb;
}

int cdc_transcode(const dcm_file *f, const char *ts_uid, const cdc_encode_opts *o, dcm_sink out, dcm_err *err)
{
    plan *pl = malloc(sizeof *pl);
    if (!pl)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    int rc = prepare(pl, f, ts_uid, o, err);
    cdc_sandbox *sb = rc == 0 ? child_for_file(pl) : NULL;
    if (rc == 0)
        rc = dcm_write(f, &pl->wo, out, err);
    if (!pl->plain)
        cdc_image_release(&pl->x.img);
    cdc_sandbox_close(&sb);
    free(pl);
    return rc;
}

int cdc_transcode_file(const dcm_file *f, const char *ts_uid, const cdc_encode_opts *o, const char *path,
                       dcm_err *err)
{
    plan *pl = malloc(sizeof *pl);
    if (!pl)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    int rc = prepare(pl, f, ts_uid, o, err);
    cdc_sandbox *sb = rc == 0 ? child_for_file(pl) : NULL;
    if (rc == 0)
        rc = dcm_write_file(f, &pl->wo, path, err);
    if (!pl->plain)
        cdc_image_release(&pl->x.img);
    cdc_sandbox_close(&sb);
    free(pl);
    return rc;
}

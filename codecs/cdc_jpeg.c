/* cdc_jpeg.c — 8-bit lossy JPEG (Baseline Process 1, Extended Process 2)
 * through libjpeg-turbo's TurboJPEG API (its SIMD path); other precisions
 * and the lossless processes go to DCMTK's dcmjpeg (cdc_dcmtk.cc).
 * TurboJPEG keeps libjpeg's longjmp inside itself: errors come back as
 * return codes with tjGetErrorStr2. */
#include <turbojpeg.h>
#include "codecs/cdc_private.h"

/* ITU-T T.81 B.1.1.3: walk marker segments from SOI to the frame header. */
int cdc_jpeg_scan_sof(const uint8_t *p, size_t n, cdc_jpeg_sof *sof, dcm_err *err)
{
    if (n < 4 || p[0] != 0xFF || p[1] != 0xD8)
        return dcm_fail(err, CDC_ECODEC, 0, "JPEG frame does not start with SOI");
    size_t i = 2;
    sof->jfif = sof->adobe = 0;
    while (i + 4 <= n) {
        if (p[i] != 0xFF)
            return dcm_fail(err, CDC_ECODEC, i, "JPEG marker expected at byte %zu", i);
        uint8_t m = p[i + 1];
        if (m == 0xFF) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { /* markers without length */
            i += 2;
            continue;
        }
        size_t len = (size_t)p[i + 2] << 8 | p[i + 3];
        if (len < 2 || i + 2 + len > n)
            return dcm_fail(err, CDC_ECODEC, i, "JPEG marker FF%02X length %zu overruns the frame", m, len);
        bool is_sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (is_sof) {
            if (len < 8)
                return dcm_fail(err, CDC_ECODEC, i, "JPEG frame header too short");
            sof->marker = m;
            sof->precision = p[i + 4];
            sof->rows = (uint16_t)(p[i + 5] << 8 | p[i + 6]);
            sof->cols = (uint16_t)(p[i + 7] << 8 | p[i + 8]);
            sof->components = p[i + 9];
            return 0;
        }
        if (m == 0xE0 && len >= 6 && !memcmp(p + i + 4, "JFIF", 4))
            sof->jfif = 1;
        if (m == 0xEE && len >= 7 && !memcmp(p + i + 4, "Adobe", 5))
            sof->adobe = 1;
        if (m == 0xDA)
            break;
        i += 2 + len;
    }
    return dcm_fail(err, CDC_ECODEC, 0, "JPEG frame has no frame header (SOF)");
}

int cdc_jpeg_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err)
{
    cdc_jpeg_sof sof;
    int rc = cdc_jpeg_scan_sof(src, n, &sof, err);
    if (rc < 0)
        return rc;
    /* TurboJPEG 2.1 is 8-bit DCT only: lossless and 12-bit go to DCMTK. */
    if (sof.precision != 8 || (sof.marker != 0xC0 && sof.marker != 0xC1 && sof.marker != 0xC2) || fmt->bytes != 1)
        return cdc_dcmtk_jpeg_decode(fmt, src, n, out, out_len, err);
    /* Three components with neither JFIF nor Adobe marker: libjpeg guesses
     * YCbCr from the component ids, but a data set that says RGB means the
     * samples were never transformed (DCMTK and GDCM agree); DCMTK's decoder
     * lets the Photometric Interpretation decide. */
    if (sof.components == 3 && fmt->photometric == CDC_PI_RGB && !sof.jfif && !sof.adobe)
        return cdc_dcmtk_jpeg_decode(fmt, src, n, out, out_len, err);
    /* A JPEG whose rows are 0 takes them from a DNL marker: not in DICOM. */
    rc = cdc_check_dims(fmt, sof.rows, sof.cols, sof.components, "JPEG", err);
    if (rc < 0)
        return rc;
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return dcm_fail(err, DCM_ENOMEM, 0, "TurboJPEG: %s", tjGetErrorStr2(NULL));
    int pf = fmt->samples == 1 ? TJPF_GRAY : TJPF_RGB;
    if (tjDecompress2(tj, src, (unsigned long)n, out, (int)fmt->cols, 0, (int)fmt->rows, pf, 0) < 0 &&
        tjGetErrorCode(tj) == TJERR_FATAL)
        rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    return rc;
}

/* PS3.3 C.7.6.3.1.2: YBR_FULL → RGB, for encoding a YBR native source. */
static uint8_t clamp8(double v)
{
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)(v + 0.5);
}

int cdc_jpeg_encode(const cdc_fmt *fmt, const uint8_t *frame, size_t len, const cdc_encode_opts *o,
                    int lossy, dcm_buf *out, dcm_err *err)
{
    if (fmt->bytes != 1 || fmt->bits_allocated == 1)
        return dcm_fail(err, DCM_ETS, 0, "JPEG Baseline holds 8-bit samples; this image has %u-bit", fmt->bits_allocated);
    int q = o && o->jpeg_quality > 0 && o->jpeg_quality <= 100 ? o->jpeg_quality : 90;
    const uint8_t *src = frame;
    uint8_t *conv = NULL;
    if (fmt->samples == 3 && fmt->photometric == CDC_PI_YBR_FULL) {
        size_t px = (size_t)fmt->rows * fmt->cols;
        conv = malloc(px * 3);
        if (!conv)
            return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        for (size_t i = 0; i < px; i++) {
            double y = frame[3 * i], cb = frame[3 * i + 1] - 128.0, cr = frame[3 * i + 2] - 128.0;
            conv[3 * i] = clamp8(y + 1.402 * cr);
            conv[3 * i + 1] = clamp8(y - 0.344136 * cb - 0.714136 * cr);
            conv[3 * i + 2] = clamp8(y + 1.772 * cb);
        }
        src = conv;
    }
    tjhandle tj = tjInitCompress();
    if (!tj) {
        free(conv);
        return dcm_fail(err, DCM_ENOMEM, 0, "TurboJPEG: %s", tjGetErrorStr2(NULL));
    }
    unsigned char *jbuf = NULL;
    unsigned long jlen = 0;
    int rc = 0;
    int pf = fmt->samples == 1 ? TJPF_GRAY : TJPF_RGB, ss = fmt->samples == 1 ? TJSAMP_GRAY : TJSAMP_422;
    if (tjCompress2(tj, src, (int)fmt->cols, 0, (int)fmt->rows, pf, &jbuf, &jlen, ss, q, 0) < 0)
        rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG encoding: %s", tjGetErrorStr2(tj));
    else if (dcm_buf_put(out, jbuf, jlen) < 0)
        rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    tjFree(jbuf);
    tjDestroy(tj);
    free(conv);
    (void)len;
    (void)lossy;
    return rc;
}

/* Render output: an 8-bit raster as a baseline JPEG file. */
int cdc_jpeg_write_raster(const uint8_t *px, uint32_t w, uint32_t h, uint32_t channels, int quality,
                          dcm_sink out, dcm_err *err)
{
    tjhandle tj = tjInitCompress();
    if (!tj)
        return dcm_fail(err, DCM_ENOMEM, 0, "TurboJPEG: %s", tjGetErrorStr2(NULL));
    unsigned char *jbuf = NULL;
    unsigned long jlen = 0;
    int rc = 0;
    int pf = channels == 1 ? TJPF_GRAY : TJPF_RGB, ss = channels == 1 ? TJSAMP_GRAY : TJSAMP_444;
    if (tjCompress2(tj, px, (int)w, 0, (int)h, pf, &jbuf, &jlen, ss, quality, 0) < 0)
        rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG encoding: %s", tjGetErrorStr2(tj));
    else
        rc = out.write(out.ctx, jbuf, jlen);
    tjFree(jbuf);
    tjDestroy(tj);
    return rc;
}

/* cdc_deflate.c — Deflated Image Frame Compression (1.2.840.10008.1.2.8.1,
 * PS3.5 8.2.16): each frame's native bytes deflated (RFC 1951) on their own. */
#include <zlib.h>
#include "codecs/cdc_private.h"

int cdc_deflate_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err)
{
    size_t need = cdc_native_frame_bytes(fmt);
    uint8_t *raw = malloc(need ? need : 1);
    if (!raw)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    z_stream z = {0};
    int rc = 0;
    /* Raw deflate as the standard says; a zlib header is accepted too. */
    int wbits = n >= 2 && (src[0] & 0x0F) == 8 && ((src[0] << 8) | src[1]) % 31 == 0 ? MAX_WBITS : -MAX_WBITS;
    if (inflateInit2(&z, wbits) != Z_OK) {
        free(raw);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)(n > UINT32_MAX ? UINT32_MAX : n);
    z.next_out = raw;
    z.avail_out = (uInt)need;
    int zr = inflate(&z, Z_FINISH);
    if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR && zr != Z_OK) || z.total_out < need)
        rc = dcm_fail(err, CDC_ECODEC, 0, "deflated frame inflates to %lu of %zu bytes (%s)",
                      z.total_out, need, z.msg ? z.msg : "short");
    inflateEnd(&z);
    if (rc == 0)
        cdc_native_unpack(fmt, raw, 0, false, out);
    free(raw);
    (void)out_len;
    return rc;
}

int cdc_deflate_encode(const cdc_fmt *fmt, const uint8_t *frame, size_t len, const cdc_encode_opts *o,
                       int lossy, dcm_buf *out, dcm_err *err)
{
    size_t nb = cdc_native_frame_bytes(fmt);
    cdc_fmt f2 = *fmt;
    f2.planar = 0;
    if (f2.photometric == CDC_PI_YBR_FULL_422)
        f2.photometric = CDC_PI_YBR_FULL;
    nb = cdc_native_frame_bytes(&f2);
    uint8_t *raw = calloc(1, nb ? nb : 1);
    if (!raw)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    cdc_native_pack(&f2, frame, 0, false, raw);
    uLong bound = compressBound((uLong)nb) + 64;
    size_t at = out->n;
    int rc = 0;
    if (out->n + bound > out->cap) {
        uint8_t *np = realloc(out->p, out->n + bound);
        if (!np)
            rc = DCM_ENOMEM;
        else {
            out->p = np;
            out->cap = out->n + bound;
        }
    }
    z_stream z = {0};
    if (rc == 0 && deflateInit2(&z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        rc = DCM_ENOMEM;
    if (rc == 0) {
        z.next_in = raw;
        z.avail_in = (uInt)nb;
        z.next_out = out->p + at;
        z.avail_out = (uInt)bound;
        if (deflate(&z, Z_FINISH) != Z_STREAM_END)
            rc = DCM_EIO;
        out->n = at + z.total_out;
        deflateEnd(&z);
        if (out->n & 1) /* fragments have even length */
            out->p[out->n++] = 0;
    }
    free(raw);
    (void)len;
    (void)o;
    (void)lossy;
    return rc < 0 ? dcm_fail(err, rc, 0, "deflating a frame failed") : 0;
}

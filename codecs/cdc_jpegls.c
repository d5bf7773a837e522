/* cdc_jpegls.c — JPEG-LS lossless and near-lossless (ISO 14495-1) through
 * CharLS's C API.  CharLS wants unsigned samples of Bits Stored bits:
 * signed frames are masked on the way in and sign-extended on the way out
 * (cdc_normalise), as DCMTK's dcmjpls does. */
#include <charls/charls.h>
#include "codecs/cdc_private.h"

static int ls_fail(dcm_err *err, const char *what, charls_jpegls_errc ec)
{
    return dcm_fail(err, ec == CHARLS_JPEGLS_ERRC_NOT_ENOUGH_MEMORY ? DCM_ENOMEM : CDC_ECODEC, 0,
                    "JPEG-LS %s: %s", what, charls_get_error_message(ec));
}

int cdc_jpegls_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err)
{
    /* CharLS 2.4 takes tens of seconds on a scan that ends without EOI
     * (fuzz_cdc_jpegls, crashers/): give it one.  Fragments may carry
     * trailing zero padding (PS3.5 A.4: even length). */
    size_t end = n;
    while (end > 2 && src[end - 1] == 0 && !(src[end - 2] == 0xFF && src[end - 1] == 0xD9))
        end--;
    uint8_t *with_eoi = NULL;
    if (end < 2 || src[end - 2] != 0xFF || src[end - 1] != 0xD9) {
        with_eoi = malloc(end + 2);
        if (!with_eoi)
            return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        memcpy(with_eoi, src, end);
        with_eoi[end] = 0xFF;
        with_eoi[end + 1] = 0xD9;
        src = with_eoi;
        n = end + 2;
    }
    charls_jpegls_decoder *d = charls_jpegls_decoder_create();
    if (!d) {
        free(with_eoi);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    int rc = 0;
    uint8_t *tmp = NULL;
    charls_frame_info fi;
    charls_interleave_mode ilv;
    charls_jpegls_errc ec = charls_jpegls_decoder_set_source_buffer(d, src, n);
    if (!ec)
        ec = charls_jpegls_decoder_read_header(d);
    if (!ec)
        ec = charls_jpegls_decoder_get_frame_info(d, &fi);
    if (!ec)
        ec = charls_jpegls_decoder_get_interleave_mode(d, &ilv);
    if (ec) {
        rc = ls_fail(err, "header", ec);
        goto out;
    }
    /* Shape first: CharLS allocates by the stream's own header. */
    rc = cdc_check_dims(fmt, fi.height, fi.width, (uint32_t)fi.component_count, "JPEG-LS", err);
    if (rc < 0)
        goto out;
    unsigned bps = fi.bits_per_sample <= 8 ? 1 : 2;
    if (fi.bits_per_sample < 2 || fi.bits_per_sample > 16 || bps > fmt->bytes) {
        rc = dcm_fail(err, CDC_ECODEC, 0, "JPEG-LS stream of %d bits in a %u-byte container",
                      fi.bits_per_sample, fmt->bytes);
        goto out;
    }
    size_t px = (size_t)fi.width * fi.height, ns = (size_t)fi.component_count;
    size_t need = px * ns * bps;
    bool planar = ns > 1 && ilv == CHARLS_INTERLEAVE_MODE_NONE;
    bool direct = !planar && bps == fmt->bytes;
    tmp = direct ? out : malloc(need);
    if (!tmp) {
        rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        goto out;
    }
    ec = charls_jpegls_decoder_decode_to_buffer(d, tmp, need, 0);
    if (ec) {
        rc = ls_fail(err, "decoding", ec);
        goto out;
    }
    if (!direct) {
        for (size_t i = 0; i < px; i++)
            for (size_t s = 0; s < ns; s++) {
                size_t k = planar ? s * px + i : i * ns + s;
                uint32_t v = bps == 1 ? tmp[k] : ((uint16_t *)tmp)[k];
                size_t o = i * ns + s;
                if (fmt->bytes == 1)
                    out[o] = (uint8_t)v;
                else if (fmt->bytes == 2)
                    ((uint16_t *)out)[o] = (uint16_t)v;
                else
                    ((uint32_t *)out)[o] = v;
            }
    }
    /* Unsigned samples of at most Bits Stored bits need no masking pass. */
    if (!fmt->is_signed && fi.bits_per_sample <= fmt->bits_stored)
        rc = CDC_NORMALISED;
out:
    if (tmp != out)
        free(tmp);
    charls_jpegls_decoder_destroy(d);
    free(with_eoi);
    (void)out_len;
    return rc;
}

/* Any sample with bits above Bits Stored (a negative value, sign-extended)?
 * A read-only pass: cheaper than masking a copy nobody needed. */
static bool has_high_bits(const cdc_fmt *fmt, const uint8_t *frame, size_t ns)
{
    uint32_t acc = 0, m = ~((1u << fmt->bits_stored) - 1);
    if (fmt->bytes == 1)
        for (size_t i = 0; i < ns; i++)
            acc |= frame[i];
    else
        for (size_t i = 0; i < ns; i++)
            acc |= ((const uint16_t *)frame)[i];
    return (acc & m) != 0;
}

int cdc_jpegls_encode(const cdc_fmt *fmt, const uint8_t *frame, size_t len, const cdc_encode_opts *o,
                      int lossy, dcm_buf *out, dcm_err *err)
{
    if (fmt->bits_stored < 2 || fmt->bits_stored > 16 || fmt->bytes > 2)
        return dcm_fail(err, DCM_ETS, 0, "JPEG-LS holds 2 to 16 bits per sample; this image has %u", fmt->bits_stored);
    size_t ns = (size_t)fmt->rows * fmt->cols * fmt->samples;
    const uint8_t *src = frame;
    uint8_t *masked = NULL;
    if (fmt->bits_stored < fmt->bytes * 8u && has_high_bits(fmt, frame, ns)) { /* sign-extended or stray */
        masked = malloc(ns * fmt->bytes);
        if (!masked)
            return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        uint32_t m = (1u << fmt->bits_stored) - 1;
        for (size_t i = 0; i < ns; i++) {
            if (fmt->bytes == 1)
                masked[i] = (uint8_t)(frame[i] & m);
            else
                ((uint16_t *)masked)[i] = (uint16_t)(((const uint16_t *)frame)[i] & m);
        }
        src = masked;
    }
    charls_jpegls_encoder *e = charls_jpegls_encoder_create();
    if (!e) {
        free(masked);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    charls_frame_info fi = {fmt->cols, fmt->rows, fmt->bits_stored, fmt->samples};
    int near = lossy ? (o && o->jpegls_near > 0 ? o->jpegls_near : 2) : 0;
    size_t cap = 0, written = 0;
    int rc = 0;
    charls_jpegls_errc ec = charls_jpegls_encoder_set_frame_info(e, &fi);
    if (!ec)
        ec = charls_jpegls_encoder_set_near_lossless(e, near);
    if (!ec && fmt->samples > 1)
        ec = charls_jpegls_encoder_set_interleave_mode(e, CHARLS_INTERLEAVE_MODE_SAMPLE);
    if (!ec)
        ec = charls_jpegls_encoder_get_estimated_destination_size(e, &cap);
    if (ec) {
        rc = ls_fail(err, "encoder setup", ec);
        goto out;
    }
    if (out->n + cap > out->cap) {
        uint8_t *np = realloc(out->p, out->n + cap);
        if (!np) {
            rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
            goto out;
        }
        out->p = np;
        out->cap = out->n + cap;
    }
    ec = charls_jpegls_encoder_set_destination_buffer(e, out->p + out->n, cap);
    if (!ec)
        ec = charls_jpegls_encoder_encode_from_buffer(e, src, ns * fmt->bytes, 0);
    if (!ec)
        ec = charls_jpegls_encoder_get_bytes_written(e, &written);
    if (ec)
        rc = ls_fail(err, "encoding", ec);
    else
        out->n += written;
out:
    charls_jpegls_encoder_destroy(e);
    free(masked);
    (void)len;
    return rc;
}

/* cdc_rle.c — RLE Lossless (PS3.5 Annex G): a 64-byte header of segment
 * offsets, then one PackBits byte segment per sample byte plane, most
 * significant byte first.  One fragment per frame. */
#include "codecs/cdc_private.h"

#define RLE_MAX_SEGMENTS 15

/* PS3.5 G.3.2: decode one segment into exactly n bytes. */
static int unpack_segment(const uint8_t *p, size_t len, uint8_t *out, size_t n, int seg, dcm_err *err)
{
    size_t i = 0, o = 0;
    while (o < n && i < len) {
        int8_t h = (int8_t)p[i++];
        if (h >= 0) {
            size_t cnt = (size_t)h + 1;
            if (i + cnt > len || o + cnt > n)
                break;
            memcpy(out + o, p + i, cnt);
            i += cnt;
            o += cnt;
        } else if (h != -128) {
            size_t cnt = (size_t)(1 - h);
            if (i >= len || o + cnt > n)
                break;
            memset(out + o, p[i++], cnt);
            o += cnt;
        }
    }
    if (o != n)
        return dcm_fail(err, CDC_ECODEC, 0, "RLE segment %d yields %zu of the %zu bytes a plane needs", seg, o, n);
    return 0;
}

int cdc_rle_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err)
{
    size_t px = (size_t)fmt->rows * fmt->cols;
    unsigned bpb = fmt->bits_allocated / 8, nseg_need = fmt->samples * bpb;
    if (n < 64)
        return dcm_fail(err, CDC_ECODEC, 0, "RLE frame of %zu bytes has no 64-byte header", n);
    uint32_t nseg = dcm_rd32(src, false);
    if (nseg != nseg_need || nseg > RLE_MAX_SEGMENTS)
        return dcm_fail(err, CDC_ECODEC, 0, "RLE header lists %u segments; %u samples of %u bits need %u",
                        nseg, fmt->samples, fmt->bits_allocated, nseg_need);
    uint8_t *plane = malloc(px);
    if (!plane)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    int rc = 0;
    for (uint32_t s = 0; s < nseg && rc == 0; s++) {
        uint32_t off = dcm_rd32(src + 4 + 4 * s, false);
        uint32_t end = s + 1 < nseg ? dcm_rd32(src + 8 + 4 * s, false) : (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n);
        if (off < 64 || off > n || end > n || end < off) {
            rc = dcm_fail(err, CDC_ECODEC, 0, "RLE segment %u offset %u..%u outside the %zu-byte frame", s, off, end, n);
            break;
        }
        rc = unpack_segment(src + off, end - off, plane, px, (int)s, err);
        if (rc < 0)
            break;
        unsigned sample = s / bpb, byte = bpb - 1 - s % bpb; /* MSB plane first; output little endian */
        uint8_t *o = out + sample * fmt->bytes + byte;
        size_t stride = (size_t)fmt->samples * fmt->bytes;
        for (size_t i = 0; i < px; i++)
            o[i * stride] = plane[i];
    }
    free(plane);
    (void)out_len;
    return rc;
}

/* PackBits one row: replicate runs of 2..128, literal runs up to 128. */
static int pack_row(const uint8_t *p, size_t n, dcm_buf *out)
{
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        size_t run = 1;
        while (i + run < n && run < 128 && p[i + run] == p[i])
            run++;
        if (run >= 2) {
            uint8_t h[2] = {(uint8_t)(int8_t)(1 - (int)run), p[i]};
            rc = dcm_buf_put(out, h, 2);
            i += run;
            continue;
        }
        size_t j = i;
        while (j < n && j - i < 128 && !(j + 1 < n && p[j] == p[j + 1]))
            j++;
        uint8_t h = (uint8_t)(j - i - 1);
        rc = dcm_buf_put(out, &h, 1);
        if (rc == 0)
            rc = dcm_buf_put(out, p + i, j - i);
        i = j;
    }
    return rc;
}

int cdc_rle_encode(const cdc_fmt *fmt, const uint8_t *frame, size_t len, const cdc_encode_opts *o,
                   int lossy, dcm_buf *out, dcm_err *err)
{
    size_t px = (size_t)fmt->rows * fmt->cols;
    unsigned bpb = fmt->bytes, nseg = fmt->samples * bpb;
    if (fmt->bits_allocated == 1 || nseg > RLE_MAX_SEGMENTS)
        return dcm_fail(err, DCM_ETS, 0, "RLE cannot hold %u samples of %u bits", fmt->samples, fmt->bits_allocated);
    uint8_t *row = malloc(fmt->cols);
    size_t hdr_at = out->n;
    uint8_t hdr[64] = {0};
    int rc = row ? dcm_buf_put(out, hdr, sizeof hdr) : DCM_ENOMEM;
    size_t stride = (size_t)fmt->samples * bpb;
    for (unsigned s = 0; s < nseg && rc == 0; s++) {
        unsigned sample = s / bpb, byte = bpb - 1 - s % bpb;
        uint32_t off = (uint32_t)(out->n - hdr_at);
        for (int k = 0; k < 4; k++)
            out->p[hdr_at + 4 + 4 * s + k] = (uint8_t)(off >> (8 * k));
        const uint8_t *base = frame + sample * bpb + byte;
        for (uint32_t r = 0; r < fmt->rows && rc == 0; r++) {
            for (uint32_t c = 0; c < fmt->cols; c++)
                row[c] = base[((size_t)r * fmt->cols + c) * stride];
            rc = pack_row(row, fmt->cols, out);
        }
        if (rc == 0 && ((out->n - hdr_at) & 1)) /* segments start on even offsets */
            rc = dcm_buf_put(out, "\x80", 1);
    }
    if (rc == 0)
        for (int k = 0; k < 4; k++)
            out->p[hdr_at + k] = (uint8_t)(nseg >> (8 * k));
    free(row);
    (void)len;
    (void)px;
    (void)o;
    (void)lossy;
    return rc < 0 ? dcm_fail(err, rc, 0, "RLE encoding: %s", cdc_strerror(rc)) : 0;
}

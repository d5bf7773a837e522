/* cdc_png.c — a PNG writer (PNG spec, ISO/IEC 15948): signature, IHDR,
 * one zlib stream in IDAT chunks, IEND; filter type 0 (none) per row,
 * which is what a windowed medical image compresses about as well with. */
#include <zlib.h>
#include "codecs/cdc_private.h"

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int chunk(dcm_sink out, const char type[4], const uint8_t *data, uint32_t len)
{
    uint8_t h[8];
    be32(h, len);
    memcpy(h + 4, type, 4);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    if (len)
        crc = crc32(crc, data, len);
    uint8_t c[4];
    be32(c, (uint32_t)crc);
    int rc = out.write(out.ctx, h, 8);
    if (rc == 0 && len)
        rc = out.write(out.ctx, data, len);
    if (rc == 0)
        rc = out.write(out.ctx, c, 4);
    return rc;
}

int cdc_write_png(const cdc_raster *r, dcm_sink out, dcm_err *err)
{
    if (!r->pixels || !r->width || !r->height || (r->channels != 1 && r->channels != 3))
        return dcm_fail(err, DCM_EVALUE, 0, "nothing to write as PNG");
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    uint8_t ihdr[13];
    be32(ihdr, r->width);
    be32(ihdr + 4, r->height);
    ihdr[8] = 8;                          /* bit depth */
    ihdr[9] = r->channels == 1 ? 0 : 2;   /* greyscale or truecolour */
    ihdr[10] = ihdr[11] = ihdr[12] = 0;   /* deflate, adaptive filtering, no interlace */
    int rc = out.write(out.ctx, sig, 8);
    if (rc == 0)
        rc = chunk(out, "IHDR", ihdr, 13);
    size_t stride = (size_t)r->width * r->channels;
    z_stream z = {0};
    uint8_t *obuf = malloc(1 << 16);
    if (!obuf || deflateInit(&z, 6) != Z_OK) {
        free(obuf);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    static const uint8_t filter_none = 0;
    for (uint32_t y = 0; y <= r->height && rc == 0; y++) {
        /* each row: its filter byte, then the row; y == height finishes */
        for (int part = 0; part < 2 && rc == 0; part++) {
            int flush = Z_NO_FLUSH;
            if (y == r->height) {
                if (part == 1)
                    break;
                z.next_in = NULL;
                z.avail_in = 0;
                flush = Z_FINISH;
            } else if (part == 0) {
                z.next_in = (Bytef *)&filter_none;
                z.avail_in = 1;
            } else {
                z.next_in = (Bytef *)(r->pixels + (size_t)y * stride);
                z.avail_in = (uInt)stride;
            }
            int zr;
            do {
                z.next_out = obuf;
                z.avail_out = 1 << 16;
                zr = deflate(&z, flush);
                size_t have = (1 << 16) - z.avail_out;
                if (have)
                    rc = chunk(out, "IDAT", obuf, (uint32_t)have);
            } while (rc == 0 && (z.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END)));
        }
    }
    deflateEnd(&z);
    free(obuf);
    if (rc == 0)
        rc = chunk(out, "IEND", NULL, 0);
    return rc < 0 ? dcm_fail(err, rc, 0, "writing PNG failed") : 0;
}

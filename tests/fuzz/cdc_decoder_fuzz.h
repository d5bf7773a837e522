/* cdc_decoder_fuzz.h — the harness every pixel-decoder fuzz target
 * shares.  Input: a 4-byte shape (rows-1, columns-1, flags, Bits Stored)
 * then one compressed frame.  flags: 1 three samples, 2 16-bit container,
 * 4 signed, 8 planar.  The decoder must return an error, never crash,
 * overrun or allocate past what the shape allows.  (Test code included by
 * tests/fuzz/fuzz_cdc_*.c, not a module header.) */
#ifndef DXHUB_FUZZ_CDC_DECODER_H
#define DXHUB_FUZZ_CDC_DECODER_H

#include "codecs/cdc_private.h"

typedef int (*cdc_decode_fn)(const cdc_fmt *, const uint8_t *, size_t, uint8_t *, size_t, dcm_err *);

static int fuzz_decoder(cdc_decode_fn decode, const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    cdc_fmt fmt = {0};
    fmt.rows = data[0] + 1u;
    fmt.cols = data[1] + 1u;
    fmt.samples = data[2] & 1 ? 3 : 1;
    fmt.bytes = data[2] & 2 ? 2 : 1;
    fmt.bits_allocated = (uint16_t)(fmt.bytes * 8);
    fmt.is_signed = (data[2] & 4) != 0;
    fmt.planar = (data[2] & 8) != 0;
    fmt.bits_stored = (uint16_t)(data[3] % fmt.bits_allocated + 1);
    fmt.photometric = fmt.samples == 3 ? CDC_PI_RGB : CDC_PI_MONOCHROME2;
    size_t n = cdc_fmt_frame_bytes(&fmt);
    uint8_t *out = malloc(n);
    if (!out)
        return 0;
    dcm_err err = {0};
    if (decode(&fmt, data + 4, size - 4, out, n, &err) == 0)
        cdc_normalise(&fmt, out, n / fmt.bytes);
    free(out);
    return 0;
}

#endif

/* fuzz_ecg_codec.c — the ECG stream decoder.  A CRC-32 guards every
 * stream, so random bytes would never get past it: the input is taken as
 * a stream without its CRC (magic included or not), and the right CRC is
 * appended before decoding, so the header checks and the range decoder
 * see hostile bytes.  A record that decodes must re-encode and decode to
 * itself. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "codecs/codecs.h"

static const uint8_t magic[8] = {'D', 'X', 'E', 'C', 'G', '1', '\r', '\n'};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int has_magic = size >= sizeof magic && memcmp(data, magic, sizeof magic) == 0;
    size_t n = (has_magic ? 0 : sizeof magic) + size;
    uint8_t *buf = malloc(n + 4);
    if (!buf)
        return 0;
    if (!has_magic)
        memcpy(buf, magic, sizeof magic);
    memcpy(buf + (has_magic ? 0 : sizeof magic), data, size);
    uLong crc = crc32(0L, buf, (uInt)n);
    for (int i = 0; i < 4; i++)
        buf[n + (size_t)i] = (uint8_t)(crc >> (8 * i));
    ecg_record *r = NULL;
    dcm_err err = {0};
    /* a small cap keeps the fuzzer's memory bounded */
    if (ecg_decode(buf, n + 4, 1u << 22, &r, &err) == 0) {
        uint8_t *again = NULL;
        size_t len = 0;
        ecg_record *back = NULL;
        if (ecg_encode_buf(r, &again, &len, &err) < 0 || ecg_decode(again, len, 0, &back, &err) < 0)
            abort();
        for (size_t k = 0; k < r->n_leads; k++)
            if (r->n_samples &&
                memcmp(back->leads[k].samples, r->leads[k].samples, r->n_samples * sizeof(int32_t)))
                abort();
        ecg_free(&back);
        free(again);
        ecg_free(&r);
    }
    free(buf);
    return 0;
}

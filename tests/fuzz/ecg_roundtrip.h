/* ecg_roundtrip.h — what every ECG reader's fuzz target checks on each
 * record the reader accepts: the lossless codec gives it back exactly.
 * Included by the fuzz_ecg_*.c targets (test code, not a module header). */
#ifndef DXHUB_FUZZ_ECG_ROUNDTRIP_H
#define DXHUB_FUZZ_ECG_ROUNDTRIP_H

#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"

static int discard(void *ctx, const void *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return 0;
}

/* Every record a reader accepts must survive the codec exactly. */
static void check_roundtrip(const ecg_record *r)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    dcm_err err = {0};
    if (ecg_encode_buf(r, &buf, &len, &err) < 0)
        return; /* e.g. a 32-bit sample beyond the codec range */
    ecg_record *back = NULL;
    if (ecg_decode(buf, len, 0, &back, &err) < 0)
        abort();
    if (back->n_leads != r->n_leads || back->n_samples != r->n_samples)
        abort();
    for (size_t k = 0; k < r->n_leads; k++)
        if (r->n_samples &&
            memcmp(back->leads[k].samples, r->leads[k].samples, r->n_samples * sizeof(int32_t)))
            abort();
    dcm_sink null_sink = {discard, NULL};
    ecg_summary(back, 1, null_sink, &err);
    ecg_free(&back);
    free(buf);
}

#endif

/* fuzz_ecg_scp.c — the SCP-ECG reader: section pointers, lead table,
 * default-Huffman rhythm data and difference decoding, then the codec
 * round trip. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ecg_record *r = NULL;
    dcm_err err = {0};
    if (ecg_read_scp(data, size, NULL, &r, &err) == 0) {
        check_roundtrip(r);
        ecg_free(&r);
    }
    return 0;
}

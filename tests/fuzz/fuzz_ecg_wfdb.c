/* fuzz_ecg_wfdb.c — the WFDB header parser and signal decoders: the input
 * is the header text, a NUL byte, then the bytes every signal file the
 * header names reads (no NUL: the header alone, with empty files). */
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
    const uint8_t *nul = memchr(data, 0, size);
    size_t hea_len = nul ? (size_t)(nul - data) : size;
    ecg_wfdb_file file = {NULL, nul ? nul + 1 : data + size, nul ? size - hea_len - 1 : 0};
    ecg_record *r = NULL;
    dcm_err err = {0};
    if (ecg_read_wfdb_mem((const char *)data, hea_len, &file, 1, NULL, &r, &err) == 0) {
        check_roundtrip(r);
        ecg_free(&r);
    }
    return 0;
}

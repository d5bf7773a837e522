/* fuzz_ecg_wfdb.c — the WFDB header parser and signal decoders: the input
 * is the header text, a NUL byte, then the bytes every signal file the
 * header names reads (no NUL: the header alone, with empty files). */
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "tests/fuzz/ecg_roundtrip.h"

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

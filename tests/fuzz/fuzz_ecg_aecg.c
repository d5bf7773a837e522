/* fuzz_ecg_aecg.c — the HL7 aECG reader (libxml2 underneath), each of
 * the first sequence sets, then the codec round trip. */
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "tests/fuzz/ecg_roundtrip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int g = 0; g < 3; g++) {
        ecg_read_opts ro = {.group = g};
        ecg_record *r = NULL;
        dcm_err err = {0};
        if (ecg_read_aecg(data, size, &ro, &r, &err) < 0)
            break;
        check_roundtrip(r);
        ecg_free(&r);
    }
    return 0;
}

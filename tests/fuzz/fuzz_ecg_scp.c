/* fuzz_ecg_scp.c — the SCP-ECG reader: section pointers, lead table,
 * default-Huffman rhythm data and difference decoding, then the codec
 * round trip. */
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "tests/fuzz/ecg_roundtrip.h"

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

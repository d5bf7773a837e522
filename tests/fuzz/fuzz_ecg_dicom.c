/* fuzz_ecg_dicom.c — the DICOM waveform reader over whatever the Part 10
 * parser accepts, every multiplex group, then the codec round trip. */
#include <stdlib.h>
#include <string.h>
#include "codecs/codecs.h"
#include "tests/fuzz/ecg_roundtrip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dcm_file *f = NULL;
    dcm_err err = {0};
    dcm_parse_opts o = {.max_inflated = 16u << 20};
    if (dcm_parse(data, size, &o, &f, &err) < 0)
        return 0;
    for (int g = 0; g < 4; g++) {
        ecg_read_opts ro = {.group = g};
        ecg_record *r = NULL;
        if (ecg_read_dicom(f, &ro, &r, &err) < 0)
            break;
        dcm_sink null_sink = {discard, NULL};
        ecg_summary(r, 0, null_sink, &err);
        check_roundtrip(r);
        ecg_free(&r);
    }
    dcm_free(&f);
    return 0;
}

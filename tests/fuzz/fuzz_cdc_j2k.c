/* fuzz_cdc_j2k.c — one decoder of the pixel path: JPEG 2000 through OpenJPEG.
 * Harness and input layout: cdc_decoder_fuzz.h. */
#include "tests/fuzz/cdc_decoder_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decoder(cdc_j2k_decode, data, size);
}

/* fuzz_cdc_htj2k.c — one decoder of the pixel path: HTJ2K through OpenJPH.
 * Harness and input layout: cdc_decoder_fuzz.h. */
#include "tests/fuzz/cdc_decoder_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decoder(cdc_htj2k_decode, data, size);
}

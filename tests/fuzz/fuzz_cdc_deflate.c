/* fuzz_cdc_deflate.c — one decoder of the pixel path: Deflated Image Frame Compression (zlib).
 * Harness and input layout: cdc_decoder_fuzz.h. */
#include "tests/fuzz/cdc_decoder_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decoder(cdc_deflate_decode, data, size);
}

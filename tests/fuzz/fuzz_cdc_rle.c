/* fuzz_cdc_rle.c — one decoder of the pixel path: RLE Lossless (PS3.5 Annex G) segments.
 * Harness and input layout: cdc_decoder_fuzz.h. */
#include "tests/fuzz/cdc_decoder_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decoder(cdc_rle_decode, data, size);
}

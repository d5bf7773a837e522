/* fuzz_cdc_jpeg.c — one decoder of the pixel path: 8-bit lossy JPEG through TurboJPEG (and its hand-off to DCMTK).
 * Harness and input layout: cdc_decoder_fuzz.h. */
#include "tests/fuzz/cdc_decoder_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decoder(cdc_jpeg_decode, data, size);
}

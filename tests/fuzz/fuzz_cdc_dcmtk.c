/* fuzz_cdc_dcmtk.c — one decoder of the pixel path: DCMTK dcmjpeg: lossless and 12-bit JPEG.
 * Harness and input layout: cdc_decoder_fuzz.h. */
#include "tests/fuzz/cdc_decoder_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decoder(cdc_dcmtk_jpeg_decode, data, size);
}

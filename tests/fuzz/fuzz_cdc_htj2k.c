/* fuzz_cdc_htj2k.c — one decoder of the pixel path: HTJ2K through OpenJPH,
 * called as cdc_decode_frame calls it, in a decoder child process
 * (cdc_sandbox.c): OpenJPH 0.9 aborts or overflows its stack on some
 * crafted codestreams (crashers/), which must cost the child only.  The
 * child is a fork, so libFuzzer sees no coverage inside OpenJPH; what this
 * target proves is that no input harms the caller.  Harness and input
 * layout: cdc_decoder_fuzz.h. */
#include "tests/fuzz/cdc_decoder_fuzz.h"

/* One child for the whole run, as the workstation keeps one. */
static cdc_sandbox *sandbox;

static int htj2k_in_child(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len,
                          dcm_err *err)
{
    if (!sandbox && cdc_sandbox_open(&sandbox, err) < 0)
        return CDC_ECODEC;
    return cdc_sandbox_decode(sandbox, cdc_htj2k_decode, "HTJ2K", fmt, src, n, out, out_len, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decoder(htj2k_in_child, data, size);
}

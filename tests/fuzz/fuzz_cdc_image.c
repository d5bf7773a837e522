/* fuzz_cdc_image.c — the whole pixel path from a DICOM file: image
 * attributes, fragment → frame mapping, every decoder through the
 * transfer-syntax table, Bits Stored normalisation and the display
 * pipeline (LUTs, windows, palettes). */
#include <stdlib.h>
#include "codecs/codecs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dcm_file *f = NULL;
    dcm_err err = {0};
    dcm_parse_opts o = {.max_inflated = 16u << 20};
    if (dcm_parse(data, size, &o, &f, &err) < 0)
        return 0;
    cdc_image img;
    if (cdc_image_init(&img, f, &err) == 0 && cdc_frame_size(&img) <= (16u << 20)) {
        size_t n = cdc_frame_size(&img);
        uint8_t *out = malloc(n ? n : 1);
        for (uint32_t i = 0; out && i < img.frames && i < 4; i++)
            cdc_decode_frame(&img, i, out, n, &err);
        free(out);
        cdc_raster r;
        if (cdc_render_8bit(&img, NULL, &r, &err) == 0)
            cdc_raster_release(&r);
    }
    cdc_image_release(&img);
    dcm_free(&f);
    return 0;
}

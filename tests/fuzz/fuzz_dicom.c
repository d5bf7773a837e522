/* fuzz_dicom.c — the Part 10 parser and everything that walks its tree:
 * values, character sets, JSON, dump and the writer, and the UIDs an
 * instance is filed under (whatever they are, a UID passed on is one). */
#include <stdlib.h>
#include "codecs/codecs.h"

static int discard(void *ctx, const void *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dcm_file *f = NULL;
    dcm_err err = {0};
    dcm_parse_opts o = {.max_inflated = 16u << 20};
    if (dcm_parse(data, size, &o, &f, &err) < 0)
        return 0;
    dcm_sink null_sink = {discard, NULL};
    dcm_json_write(f, NULL, null_sink, &err);
    dcm_dump_text(f, null_sink, &err);
    dcm_write(f, NULL, null_sink, &err);
    dcm_write_opts wo = {.ts_uid = DCM_TS_EXPLICIT_BE};
    dcm_write(f, &wo, null_sink, &err);
    char buf[64];
    dcm_top_str(f, DCM_TAG(0x0010, 0x0010), buf, sizeof buf);
    char sop[DCM_UID_MAX + 1], study[DCM_UID_MAX + 1], series[DCM_UID_MAX + 1];
    if (!dcm_uids_why(f, sop, study, series) &&
        (!dcm_uid_valid(sop) || !dcm_uid_valid(study) || !dcm_uid_valid(series)))
        abort();
    dcm_free(&f);
    return 0;
}

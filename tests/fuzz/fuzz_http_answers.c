/* fuzz_http_answers.c — what the HTTP API reads from a request header to
 * shape its answer, and the gzip answers it assembles from pieces: the
 * Accept-Encoding parser (api_accepts_gzip) must never read past the
 * string, and a gzip member of any head, kept body and tail must inflate
 * (zlib, as any client) to exactly their concatenation.
 *
 * Input: split at the first two "\xff\xfe" into an Accept-Encoding value
 * (also parsed alone), a head, a body and a tail (missing parts empty).
 *
 * fuzz-objects: hub/api_gzip.c hub/api_body.c hub/api_jbuf.c */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "hub/api_private.h"

static const uint8_t *cut(const uint8_t **p, size_t *n, size_t *len)
{
    const uint8_t *start = *p, *sep = memmem(*p, *n, "\xff\xfe", 2);
    *len = sep ? (size_t)(sep - *p) : *n;
    *p += sep ? *len + 2 : *n;
    *n -= sep ? *len + 2 : *n;
    return start;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t hl, bl, tl, al;
    const uint8_t *a = cut(&data, &size, &al);
    char *header = malloc(al + 1);
    if (!header)
        return 0;
    memcpy(header, a, al);
    header[al] = 0;
    (void)api_accepts_gzip(header); /* a NUL-terminated value, as libmicrohttpd hands it */
    free(header);
    const uint8_t *h = cut(&data, &size, &hl);
    const uint8_t *b = cut(&data, &size, &bl);
    const uint8_t *t = data;
    tl = size;

    jbuf head = {0}, text = {0}, tail = {0}, out = {0};
    jb_put(&head, h, hl);
    jb_put(&text, b, bl);
    jb_put(&tail, t, tl);
    api_body *body = api_body_new(&text);
    if (!body || api_gzip_answer(&out, &head, body, &tail) < 0)
        abort(); /* out of memory is not expected at these sizes */
    size_t want = hl + bl + tl;
    uint8_t *got = malloc(want + 1);
    z_stream z = {0};
    if (!got || inflateInit2(&z, 16 + 15) != Z_OK)
        abort();
    z.next_in = (Bytef *)out.p;
    z.avail_in = (uInt)out.len;
    z.next_out = got;
    z.avail_out = (uInt)(want + 1);
    if (inflate(&z, Z_FINISH) != Z_STREAM_END || z.total_out != want || z.avail_in ||
        (hl && memcmp(got, h, hl)) || (bl && memcmp(got + hl, b, bl)) || (tl && memcmp(got + hl + bl, t, tl)))
        abort(); /* not the answer it was made from */
    inflateEnd(&z);
    free(got);
    api_body_unref(body);
    jb_release(&head);
    jb_release(&tail);
    jb_release(&out);
    return 0;
}

/* api_file.c — streaming an instance's stored bytes over HTTP: a
 * libmicrohttpd callback response that copies one block at a time out of
 * the store (store_read_instance), so a 2 GiB multi-frame never sits in
 * memory; and the single-range subset of HTTP Range (RFC 9110 §14). */
#include <microhttpd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/api_file.h"
#include "codecs/banned.h"

#define FILE_BLOCK ((size_t)1024 << 10) /* per read from the store: one blob chunk, fewer wake-ups */

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

int api_parse_range(const char *hdr, uint64_t size, uint64_t *off, uint64_t *len)
{
    if (!hdr || strncmp(hdr, "bytes=", 6))
        return 0;
    const char *spec = hdr + 6;
    while (*spec == ' ')
        spec++;
    size_t n = strlen(spec);
    while (n && spec[n - 1] == ' ')
        n--;
    const char *dash = memchr(spec, '-', n);
    if (!dash || memchr(spec, ',', n))
        return 0; /* malformed, or several ranges: answer with the whole file */
    size_t a_len = (size_t)(dash - spec), b_len = n - a_len - 1;
    uint64_t a = 0, b = 0;
    if (a_len == 0) { /* suffix: the last b bytes */
        if (!parse_u64(dash + 1, b_len, &b))
            return 0;
        if (b == 0 || size == 0)
            return -1;
        *len = b < size ? b : size;
        *off = size - *len;
        return 1;
    }
    if (!parse_u64(spec, a_len, &a) || (b_len && !parse_u64(dash + 1, b_len, &b)))
        return 0;
    if (b_len && b < a)
        return 0;
    if (a >= size)
        return -1;
    uint64_t last = b_len && b < size - 1 ? b : size - 1;
    *off = a;
    *len = last - a + 1;
    return 1;
}

typedef struct file_stream {
    store         *st;
    store_instance in;
    uint64_t       off, len;
} file_stream;

static ssize_t file_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    file_stream *fs = cls;
    if (pos >= fs->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t want = fs->len - pos < max ? (size_t)(fs->len - pos) : max;
    long got = store_read_instance(fs->st, &fs->in, fs->off + pos, buf, want);
    if (got <= 0) /* the index promised these bytes: a short read is corruption */
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return (ssize_t)got;
}

static void file_free(void *cls) { free(cls); }

struct MHD_Response *api_file_response(store *st, const store_instance *in, uint64_t off, uint64_t len)
{
    file_stream *fs = malloc(sizeof *fs);
    if (!fs)
        return NULL;
    *fs = (file_stream){.st = st, .in = *in, .off = off, .len = len};
    size_t block = len < FILE_BLOCK ? (size_t)(len ? len : 1) : FILE_BLOCK; /* small files, small buffers */
    struct MHD_Response *r = MHD_create_response_from_callback(len, block, file_read, fs, file_free);
    if (!r)
        free(fs);
    return r;
}

/* api_gzip.c — gzip answers (RFC 1952) for clients that accept them.
 *
 * A lookup answer is a head and a tail made for each request around the
 * exams kept whole in the cache (api_lookups.c).  The exams are deflated
 * once per kept body (api_body_deflated: raw deflate ending in a sync
 * flush, so byte-aligned and not final), and each answer is assembled
 * from pieces without deflating them again: the head as a stored block,
 * the kept segment as it is, the tail stored or, when long, deflated as
 * the final block, then the CRC-32 of the whole combined from the pieces'
 * (crc32_combine).  A deflate stream may be cut into blocks anywhere, so
 * the result is one ordinary gzip member any client inflates. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include "hub/api_private.h"
#include "codecs/banned.h"

#define STORED_MAX   65535u /* a stored block's LEN is 16 bits */
#define TAIL_DEFLATE 1024u  /* longer tails (peers' exams) are deflated */

/* A q-value (RFC 9110 §12.4.2: "0" or "1", up to three decimals) that is
 * zero: the coding is refused. */
static bool q_is_zero(const char *v)
{
    if (v[0] != '0')
        return false;
    if (v[1] != '.')
        return true;
    size_t zeros = strspn(v + 2, "0");
    return !v[2 + zeros] || strchr(",; \t", v[2 + zeros]);
}

/* Accept-Encoding (RFC 9110 §12.5.3) lists gzip (or x-gzip, or "*" with
 * gzip not named) with a q-value above zero. */
bool api_accepts_gzip(const char *h)
{
    if (!h)
        return false;
    int gzip = -1, star = -1; /* -1 not named, 0 refused (q=0), 1 accepted */
    while (*h) {
        h += strspn(h, " \t,");
        const char *name = h;
        size_t n = strcspn(h, ";, \t");
        h += n;
        int ok = 1;
        for (h += strspn(h, " \t"); *h == ';'; h += strcspn(h, ";,")) { /* parameters: only q counts */
            h++;
            h += strspn(h, " \t");
            if ((h[0] == 'q' || h[0] == 'Q') && h[1] == '=')
                ok = !q_is_zero(h + 2);
        }
        if ((n == 4 && !strncasecmp(name, "gzip", 4)) || (n == 6 && !strncasecmp(name, "x-gzip", 6)))
            gzip = gzip == 0 ? 0 : ok;
        else if (n == 1 && name[0] == '*')
            star = ok;
        h += strcspn(h, ",");
    }
    return gzip == 1 || (gzip == -1 && star == 1);
}

/* p[0..n) as stored blocks; the last one final when `final`. */
static void put_stored(jbuf *out, const void *p, size_t n, bool final)
{
    const uint8_t *b = p ? p : (const uint8_t *)""; /* an empty piece may have no buffer */
    do {
        size_t k = n < STORED_MAX ? n : STORED_MAX;
        uint8_t hdr[5] = {final && k == n ? 1 : 0, (uint8_t)k, (uint8_t)(k >> 8), (uint8_t)~k,
                          (uint8_t)(~k >> 8)};
        jb_put(out, hdr, sizeof hdr);
        jb_put(out, b, k);
        b += k;
        n -= k;
    } while (n);
}

/* One thread's deflate state, reset for each use (initialising one
 * allocates and clears ~270 KiB), ended with its thread. */
static pthread_key_t  stream_key;
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;

static void stream_end(void *p)
{
    deflateEnd(p);
    free(p);
}

static void stream_key_make(void)
{
    pthread_key_create(&stream_key, stream_end);
}

static z_stream *stream(void)
{
    pthread_once(&stream_once, stream_key_make);
    z_stream *z = pthread_getspecific(stream_key);
    if (z)
        return deflateReset(z) == Z_OK ? z : NULL;
    if (!(z = calloc(1, sizeof *z)))
        return NULL;
    if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    if (pthread_setspecific(stream_key, z)) {
        stream_end(z);
        return NULL;
    }
    return z;
}

int api_deflate_raw(jbuf *out, const void *p, size_t n, bool final)
{
    z_stream *z = stream();
    if (!z)
        return -1;
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)n;
    int flush = final ? Z_FINISH : Z_SYNC_FLUSH, rc;
    do {
        size_t room = deflateBound(z, z->avail_in) + 16;
        if (!jb_reserve(out, room))
            return -1;
        z->next_out = (Bytef *)out->p + out->len;
        z->avail_out = (uInt)room;
        rc = deflate(z, flush);
        out->len += room - z->avail_out;
    } while (rc == Z_OK && (z->avail_in || z->avail_out == 0));
    return (final ? rc == Z_STREAM_END : rc == Z_OK || rc == Z_BUF_ERROR) ? 0 : -1;
}

int api_gzip_answer(jbuf *out, const jbuf *head, api_body *mid, const jbuf *tail)
{
    const uint8_t *z;
    size_t zlen, mlen;
    uint32_t mcrc;
    if (api_body_deflated(mid, &z, &zlen, &mcrc) < 0)
        return -1;
    api_body_data(mid, &mlen);
    static const uint8_t gz_header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}; /* deflate, no mtime, Unix */
    jb_reserve(out, sizeof gz_header + head->len + zlen + tail->len + 64);
    jb_put(out, gz_header, sizeof gz_header);
    put_stored(out, head->p, head->len, false);
    jb_put(out, z, zlen);
    if (tail->len > TAIL_DEFLATE) {
        if (api_deflate_raw(out, tail->p, tail->len, true) < 0)
            return -1;
    } else {
        put_stored(out, tail->p, tail->len, true);
    }
    uLong crc = crc32(0L, (const Bytef *)head->p, (uInt)head->len);
    crc = crc32_combine(crc, mcrc, (z_off_t)mlen);
    crc = crc32_combine(crc, crc32(0L, (const Bytef *)tail->p, (uInt)tail->len), (z_off_t)tail->len);
    uint32_t size = (uint32_t)(head->len + mlen + tail->len);
    uint8_t trailer[8] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24),
                          (uint8_t)size, (uint8_t)(size >> 8), (uint8_t)(size >> 16), (uint8_t)(size >> 24)};
    jb_put(out, trailer, sizeof trailer);
    return jb_ok(out) ? 0 : -1;
}

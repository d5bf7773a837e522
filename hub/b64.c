/* b64.c — base64 encode/decode (RFC 4648, with padding). */
#include <stdlib.h>
#include <string.h>
#include "hub/b64.h"

static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const uint8_t *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        *o++ = tbl[p[i] >> 2];
        *o++ = tbl[(p[i] & 3) << 4 | p[i + 1] >> 4];
        *o++ = tbl[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
        *o++ = tbl[p[i + 2] & 63];
    }
    if (i < n) {
        *o++ = tbl[p[i] >> 2];
        if (i + 1 < n) {
            *o++ = tbl[(p[i] & 3) << 4 | p[i + 1] >> 4];
            *o++ = tbl[(p[i + 1] & 15) << 2];
        } else {
            *o++ = tbl[(p[i] & 3) << 4];
            *o++ = '=';
        }
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int val(char c)
{
    const char *p = c ? strchr(tbl, c) : NULL;
    return p ? (int)(p - tbl) : -1;
}

int base64_decode(const char *s, size_t len, uint8_t **out, size_t *n)
{
    if (len % 4)
        return -1;
    uint8_t *buf = malloc(len / 4 * 3 + 1);
    if (!buf)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int a = val(s[i]), b = val(s[i + 1]);
        int c = s[i + 2] == '=' ? 0 : val(s[i + 2]), d = s[i + 3] == '=' ? 0 : val(s[i + 3]);

        if (a < 0 || b < 0 || c < 0 || d < 0 || (s[i + 2] == '=' && s[i + 3] != '=') ||
            ((s[i + 2] == '=' || s[i + 3] == '=') && i + 4 != len)) {
            free(buf);
            return -1;
        }
        buf[o++] = (uint8_t)(a << 2 | b >> 4);
        if (s[i + 2] != '=')
            buf[o++] = (uint8_t)((b & 15) << 4 | c >> 2);
        if (s[i + 3] != '=')
            buf[o++] = (uint8_t)((c & 3) << 6 | d);
    }
    *out = buf;
    *n = o;
    return 0;
}

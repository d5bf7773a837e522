/* api_jbuf.c — the HTTP API's growable text buffer (jbuf, api_private.h):
 * bytes, JSON strings escaped as RFC 8259 wants, numbers and times written
 * without printf. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/api_private.h"
#include "codecs/banned.h"

bool jb_reserve(jbuf *b, size_t n)
{
    if (b->failed)
        return false;
    if (n <= b->cap - b->len)
        return true;
    if (n > API_BODY_MAX - b->len) {
        b->failed = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void jb_put(jbuf *b, const void *p, size_t n)
{
    if (!n || !jb_reserve(b, n))
        return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void jb_puts(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

void jb_fit(jbuf *b)
{
    if (b->failed || !b->p || b->len == b->cap)
        return;
    char *p = realloc(b->p, b->len ? b->len : 1);
    if (p) {
        b->p = p;
        b->cap = b->len ? b->len : 1;
    }
}

void jb_printf(jbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        jb_put(b, tmp, (size_t)n);
        return;
    }
    if (!jb_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || len > n || (len == 2 && c < 0xC2) || (len == 4 && c > 0xF4))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (len == 3 && ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0)))
        return 0; /* overlong, or a UTF-16 surrogate */
    if (len == 4 && ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90)))
        return 0;
    return len;
}

/* A JSON string.  Store fields are UTF-8 by contract, but a bad byte must
 * not make the whole answer invalid JSON: it becomes U+FFFD. */
void jb_strn(jbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    jb_put(b, "\"", 1);
    size_t run = 0, i = 0;
    while (i < n) {
        unsigned char c = u[i];
        size_t sl = c >= 0x80 ? utf8_seq(u + i, n - i) : 1;
        if (sl > 1 || (sl == 1 && c >= 0x20 && c != '"' && c != '\\')) {
            i += sl;
            continue;
        }
        jb_put(b, s + run, i - run);
        if (!sl) {
            jb_puts(b, "\xEF\xBF\xBD");
        } else if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            jb_put(b, esc, 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            jb_put(b, esc, 6);
        }
        run = ++i;
    }
    jb_put(b, s + run, n - run);
    jb_put(b, "\"", 1);
}

void jb_str(jbuf *b, const char *s) { jb_strn(b, s, strlen(s)); }

void jb_uint(jbuf *b, uint64_t v)
{
    char d[20];
    size_t n = sizeof d;
    do
        d[--n] = (char)('0' + v % 10);
    while (v /= 10);
    jb_put(b, d + n, sizeof d - n);
}

/* Writes v as exactly `width` digits ending at end (v < 10^width). */
static void digits(char *end, unsigned v, int width)
{
    while (width--) {
        *--end = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Every request renders times, and glibc's gmtime_r takes its global
 * time-zone lock each call: the civil date is computed here instead
 * (days to year/month/day, H. Hinnant's "civil_from_days"). */
void jb_time(jbuf *b, int64_t ms)
{
    if (ms <= 0 || ms >= INT64_C(253402300800000)) { /* after 9999-12-31 has no 4-digit year */
        jb_puts(b, "null");
        return;
    }
    int64_t secs = ms / 1000, days = secs / 86400, sod = secs % 86400;
    days += 719468; /* from 1970-01-01 to 0000-03-01 */
    int64_t era = days / 146097;
    unsigned doe = (unsigned)(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
    unsigned year = (unsigned)(yoe + era * 400) + (month <= 2);
    char t[] = "\"0000-00-00T00:00:00.000Z\"";
    digits(t + 5, year, 4);
    digits(t + 8, month, 2);
    digits(t + 11, day, 2);
    digits(t + 14, (unsigned)(sod / 3600), 2);
    digits(t + 17, (unsigned)(sod / 60 % 60), 2);
    digits(t + 20, (unsigned)(sod % 60), 2);
    digits(t + 24, (unsigned)(ms % 1000), 3);
    jb_put(b, t, sizeof t - 1);
}

bool jb_ok(const jbuf *b) { return !b->failed; }

char *jb_detach(jbuf *b, size_t *len)
{
    char *p = b->p;
    *len = b->len;
    *b = (jbuf){0};
    return p;
}

void jb_release(jbuf *b)
{
    free(b->p);
    *b = (jbuf){0};
}


/* pn_match.c — DICOM wildcard matching of a name (pn_match.h), greedy with
 * one backtrack point: linear in practice, never exponential. */
#include <stddef.h>
#include "hub/pn_match.h"

static char fold(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* Bytes of the UTF-8 character at s (1 for a stray byte). */
static size_t char_len(const char *s)
{
    unsigned char c = (unsigned char)*s;
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    for (size_t i = 1; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            return i;
    return n;
}

bool pn_match(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = ++p;
            resume = s;
        } else if (*p == '?') {
            p++;
            s += char_len(s);
        } else if (*p && fold(*p) == fold(*s)) {
            p++;
            s++;
        } else if (star) { /* let the last '*' take one more character */
            p = star;
            resume += char_len(resume);
            s = resume;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return !*p;
}

/* person_name.c — a DICOM person name as people read it (person_name.h). */
#include <stdio.h>
#include "hub/person_name.h"
#include "codecs/banned.h"

/* The lead byte of a 3-byte UTF-8 sequence in U+2E80..U+DFFF: CJK
 * ideographs, kana, Hangul (names written without spaces). */
static int is_cjk_lead(unsigned char c)
{
    return c >= 0xE2 && c <= 0xED;
}

/* A DICOM PN for reading: components joined by spaces, except between two
 * CJK characters (张^三丰 -> 张三丰); representations (a=b=c) by " / ". */
void person_name_readable(const char *pn, char *out, size_t n)
{
    size_t k = 0;
    for (const char *p = pn; *p && k + 4 < n; p++) {
        if (*p == '^' || *p == '=') {
            while (p[1] == '^')
                p++;
            size_t last = k;
            while (last > 0 && ((unsigned char)out[last - 1] & 0xC0) == 0x80)
                last--;
            int cjk_before = last > 0 && is_cjk_lead((unsigned char)out[last - 1]);
            int cjk_after = is_cjk_lead((unsigned char)p[1]);
            if (*p == '=' && k && p[1] && p[1] != '=')
                k += (size_t)snprintf(out + k, n - k, " / ");
            else if (*p == '^' && k && p[1] && p[1] != '=' && !(cjk_before && cjk_after))
                out[k++] = ' ';
            continue;
        }
        out[k++] = *p;
    }
    out[k] = '\0';
}

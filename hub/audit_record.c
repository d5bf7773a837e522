/* audit_record.c — an audit record's JSON line, fields cut to fit: a record
 * is never refused for a long detail, it is shortened. */
#include <stdio.h>
#include "hub/audit_record.h"

/* Length of the UTF-8 sequence that lead byte c starts (1 for anything
 * else: a stray byte is copied as it is, jansson then names the record). */
static size_t utf8_len(unsigned char c) { return c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1; }

/* s escaped for a JSON string into out; cut before a character that does
 * not fit whole, so a long Chinese detail stays valid UTF-8. */
static void json_str(char *out, size_t n, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 7 < n; s++) {
        unsigned char c = (unsigned char)*s;
        size_t len = utf8_len(c);
        if (len > 1) {
            size_t k = 1;
            while (k < len && ((unsigned char)s[k] & 0xC0) == 0x80)
                k++;
            if (o + k + 7 >= n)
                break;
            for (size_t i = 0; i < k; i++)
                out[o++] = s[i];
            s += k - 1;
        } else if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, n - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

int audit_record_json(char out[AUDIT_RECORD_MAX], const audit_record *r)
{
    char w[160], a[64], st[160], p[160], d[400];
    json_str(w, sizeof w, r->who);
    json_str(a, sizeof a, r->what);
    json_str(st, sizeof st, r->study_uid);
    json_str(p, sizeof p, r->patient);
    json_str(d, sizeof d, r->detail);
    int n = snprintf(out, AUDIT_RECORD_MAX,
                     "{\"t\":%lld,\"who\":\"%s\",\"what\":\"%s\",\"study\":\"%s\"%s%s%s,\"detail\":\"%s\"}",
                     (long long)r->t_ms, w, a, st, *p ? ",\"patient\":\"" : "", p, *p ? "\"" : "", d);
    return n < AUDIT_RECORD_MAX ? n : AUDIT_RECORD_MAX - 1;
}

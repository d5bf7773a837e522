/* task_json.c — the TASK and CLAIMED headers written as text (task_json.h).
 * They are the reader link's most frequent messages, two a lease; building
 * each as a jansson tree of some twenty nodes and then dumping it was the
 * largest user-space cost of the link thread and of the committer's answers.
 * The fields and values are task_to_json's (reader_link.c); a text that is
 * not valid UTF-8 falls back to it. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/task_json.h"

typedef struct out {
    char  *p;
    size_t n, cap;
    bool   bad; /* did not fit, or a text is not UTF-8 */
} out;

static void put(out *o, const char *s, size_t len)
{
    if (o->bad || o->n + len >= o->cap) {
        o->bad = true;
        return;
    }
    memcpy(o->p + o->n, s, len);
    o->n += len;
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

static void putf(out *o, const char *fmt, long long v)
{
    char b[32];
    int k = snprintf(b, sizeof b, fmt, v);
    put(o, b, (size_t)k);
}

/* Length of the UTF-8 sequence at s (1-4), 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 2 && c < 0xC2)
        return 0; /* overlong */
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (n == 3) {
        unsigned cp = (c & 0x0Fu) << 12 | (s[1] & 0x3Fu) << 6 | (s[2] & 0x3Fu);
        if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
    } else if (n == 4) {
        unsigned cp = (c & 0x07u) << 18 | (s[1] & 0x3Fu) << 12 | (s[2] & 0x3Fu) << 6 | (s[3] & 0x3Fu);
        if (cp < 0x10000 || cp > 0x10FFFF)
            return 0;
    }
    return n;
}

/* A JSON string, escaped as jansson escapes it. */
static void str(out *o, const char *s)
{
    put(o, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    while (*u && !o->bad) {
        size_t run = 0; /* bytes that go out as they are */
        while (u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        put(o, (const char *)u, run);
        u += run;
        if (!*u)
            break;
        if (*u >= 0x80) {
            size_t n = utf8_len(u);
            if (!n) {
                o->bad = true;
                return;
            }
            put(o, (const char *)u, n);
            u += n;
            continue;
        }
        char esc[8];
        switch (*u) {
        case '"': puts_(o, "\\\""); break;
        case '\\': puts_(o, "\\\\"); break;
        case '\b': puts_(o, "\\b"); break;
        case '\f': puts_(o, "\\f"); break;
        case '\n': puts_(o, "\\n"); break;
        case '\r': puts_(o, "\\r"); break;
        case '\t': puts_(o, "\\t"); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", *u);
            puts_(o, esc);
        }
        u++;
    }
    put(o, "\"", 1);
}

static void key_str(out *o, const char *key, const char *v)
{
    puts_(o, key);
    str(o, v);
}

int task_json_header(char *buf, size_t cap, const wl_task *t, const store_study *st, int64_t lease_until,
                     const json_t *req)
{
    out o = {buf, 0, cap, false};
    putf(&o, "{\"task\":{\"id\":%lld", (long long)t->id);
    key_str(&o, ",\"study\":", t->study_uid);
    key_str(&o, ",\"kind\":", wl_kind_name((wl_kind)t->kind));
    key_str(&o, ",\"priority\":", wl_priority_name((wl_priority)t->priority));
    key_str(&o, ",\"clinic_priority\":", wl_priority_name((wl_priority)t->clinic_priority));
    key_str(&o, ",\"modality\":", t->modality);
    key_str(&o, ",\"body_part\":", t->body_part);
    key_str(&o, ",\"facility\":", t->facility);
    puts_(&o, t->referral ? ",\"referral\":true" : ",\"referral\":false");
    key_str(&o, ",\"note\":", t->note);
    key_str(&o, ",\"triage\":", t->triage);
    key_str(&o, ",\"state\":", wl_state_name((wl_state)t->state));
    putf(&o, ",\"due\":%lld", (long long)t->due_ms);
    putf(&o, ",\"arrival\":%lld", (long long)t->arrival_ms);
    putf(&o, ",\"version\":%lld", (long long)(int)t->version);
    puts_(&o, t->review ? ",\"review\":true" : ",\"review\":false");
    puts_(&o, t->escalated ? ",\"escalated\":true" : ",\"escalated\":false");
    if (t->holder[0])
        key_str(&o, ",\"holder\":", t->holder);
    if (t->drafted_by[0])
        key_str(&o, ",\"drafted_by\":", t->drafted_by);
    if (t->signed_by[0])
        key_str(&o, ",\"signed_by\":", t->signed_by);
    if (t->report_id[0])
        key_str(&o, ",\"report_id\":", t->report_id);
    if (t->supersedes)
        putf(&o, ",\"supersedes\":%lld", (long long)t->supersedes);
    if (st) {
        key_str(&o, ",\"patient_id\":", st->patient_id);
        putf(&o, ",\"instances\":%lld", (long long)st->n_instances);
        putf(&o, ",\"series\":%lld", (long long)st->n_series);
    }
    puts_(&o, "}");
    if (lease_until >= 0)
        putf(&o, ",\"lease_until\":%lld", (long long)lease_until);
    if (json_is_integer(req)) {
        putf(&o, ",\"req\":%lld", (long long)json_integer_value(req));
    } else if (req) {
        char *r = json_dumps(req, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!r)
            return -1;
        puts_(&o, ",\"req\":");
        puts_(&o, r);
        free(r);
    }
    puts_(&o, ",\"v\":1}");
    if (o.bad)
        return -1;
    buf[o.n] = '\0';
    return (int)o.n;
}

/* wl_record.c — compact task and event records (wl_record.h).
 *
 * Task, layout 2:  2 ‖ id seq arrival due holder_until supersedes (8 bytes
 *                  each, host order: an LMDB file is not portable anyway)
 *                  ‖ version events (4 each) ‖ kind priority state
 *                  clinic_priority referral escalated front review ‖ the ten
 *                  texts, each NUL-terminated.
 * Task, layout 1:  1 ‖ padding ‖ the wl_task struct (records written before).
 * Event, compact:  at (8) ‖ from to ‖ actor what note, NUL-terminated —
 *                  always shorter than the struct, which is how an event
 *                  written before (the raw struct) is told apart. */
#include <string.h>
#include "worklist/wl_record.h"

#define TASK_LAYOUT_RAW     1
#define TASK_LAYOUT_COMPACT 2
#define TASK_PAD            64

typedef struct raw_task {
    uint8_t version;
    wl_task t;
} raw_task;

_Static_assert(8 + 2 + sizeof(((wl_event *)0)->actor) + sizeof(((wl_event *)0)->what) +
                       sizeof(((wl_event *)0)->note) < sizeof(wl_event),
               "a compact event must be shorter than the raw struct");

typedef struct writer {
    uint8_t *p;
} writer;

static void put(writer *w, const void *v, size_t n)
{
    memcpy(w->p, v, n);
    w->p += n;
}

/* s (a field of size cap, NUL-terminated within it) with its NUL. */
static void put_str(writer *w, const char *s, size_t cap) { put(w, s, strnlen(s, cap - 1) + 1); }

typedef struct reader {
    const uint8_t *p, *end;
    int            bad;
} reader;

static void get(reader *r, void *v, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        memset(v, 0, n);
        return;
    }
    memcpy(v, r->p, n);
    r->p += n;
}

static void get_str(reader *r, char *s, size_t cap)
{
    s[0] = '\0';
    if (r->bad)
        return;
    const uint8_t *nul = memchr(r->p, 0, (size_t)(r->end - r->p));
    size_t n = nul ? (size_t)(nul - r->p) : 0;
    if (!nul || n >= cap) {
        r->bad = 1;
        return;
    }
    memcpy(s, r->p, n + 1);
    r->p = nul + 1;
}

#define STR(w, t, f) put_str(w, (t)->f, sizeof (t)->f)
#define GET(r, t, f) get_str(r, (t)->f, sizeof (t)->f)

size_t wl_task_encode(const wl_task *t, uint8_t *buf)
{
    writer w = {buf};
    const uint8_t layout = TASK_LAYOUT_COMPACT;
    put(&w, &layout, 1);
    put(&w, &t->id, 8);
    put(&w, &t->seq, 8);
    put(&w, &t->arrival_ms, 8);
    put(&w, &t->due_ms, 8);
    put(&w, &t->holder_until_ms, 8);
    put(&w, &t->supersedes, 8);
    put(&w, &t->version, 4);
    put(&w, &t->events, 4);
    const uint8_t flags[8] = {t->kind, t->priority, t->state, t->clinic_priority,
                              t->referral, t->escalated, t->front, t->review};
    put(&w, flags, 8);
    STR(&w, t, study_uid);
    STR(&w, t, modality);
    STR(&w, t, body_part);
    STR(&w, t, facility);
    STR(&w, t, note);
    STR(&w, t, triage);
    STR(&w, t, holder);
    STR(&w, t, drafted_by);
    STR(&w, t, signed_by);
    STR(&w, t, report_id);
    /* Padded to a multiple of TASK_PAD: a task that gains or loses a holder
     * keeps its size, so LMDB rewrites it in place; a record that changed
     * size is deleted and inserted again, and tasks updated in id order
     * then split their pages until each held two tasks. */
    size_t n = (size_t)(w.p - buf), padded = (n + TASK_PAD - 1) / TASK_PAD * TASK_PAD;
    memset(w.p, 0, padded - n);
    return padded;
}

int wl_task_decode(const void *p, size_t n, wl_task *t)
{
    memset(t, 0, sizeof *t);
    if (n < 1)
        return -1;
    const uint8_t *b = p;
    if (b[0] == TASK_LAYOUT_RAW) { /* older, shorter structs read as far as they go */
        raw_task r;
        memset(&r, 0, sizeof r);
        memcpy(&r, b, n < sizeof r ? n : sizeof r);
        *t = r.t;
        return 0;
    }
    if (b[0] != TASK_LAYOUT_COMPACT)
        return -1;
    reader r = {b + 1, b + n, 0};
    get(&r, &t->id, 8);
    get(&r, &t->seq, 8);
    get(&r, &t->arrival_ms, 8);
    get(&r, &t->due_ms, 8);
    get(&r, &t->holder_until_ms, 8);
    get(&r, &t->supersedes, 8);
    get(&r, &t->version, 4);
    get(&r, &t->events, 4);
    uint8_t f[8];
    get(&r, f, 8);
    t->kind = f[0], t->priority = f[1], t->state = f[2], t->clinic_priority = f[3];
    t->referral = f[4], t->escalated = f[5], t->front = f[6], t->review = f[7];
    GET(&r, t, study_uid);
    GET(&r, t, modality);
    GET(&r, t, body_part);
    GET(&r, t, facility);
    GET(&r, t, note);
    GET(&r, t, triage);
    GET(&r, t, holder);
    GET(&r, t, drafted_by);
    GET(&r, t, signed_by);
    GET(&r, t, report_id);
    return r.bad ? -1 : 0;
}

size_t wl_event_encode(const wl_event *e, uint8_t *buf)
{
    writer w = {buf};
    put(&w, &e->at_ms, 8);
    put(&w, &e->from, 1);
    put(&w, &e->to, 1);
    STR(&w, e, actor);
    STR(&w, e, what);
    STR(&w, e, note);
    return (size_t)(w.p - buf);
}

int wl_event_decode(const void *p, size_t n, wl_event *e)
{
    memset(e, 0, sizeof *e);
    if (n == sizeof *e) { /* written before: the raw struct */
        memcpy(e, p, n);
        return 0;
    }
    reader r = {p, (const uint8_t *)p + n, 0};
    get(&r, &e->at_ms, 8);
    get(&r, &e->from, 1);
    get(&r, &e->to, 1);
    GET(&r, e, actor);
    GET(&r, e, what);
    GET(&r, e, note);
    return r.bad ? -1 : 0;
}

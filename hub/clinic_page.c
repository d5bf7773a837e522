/* clinic_page.c — what the clinic's page shows (clinic_private.h): the
 * list (each item audited before it is shown), the stamp page.js polls,
 * one signed report once it verifies, and a person's confirmation of
 * reading an alert.  HTTP itself is clinic_http.c's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/clinic_private.h"
#include "hub/clock.h"
#include "hub/html_text.h"
#include "hub/inbox_listing.h"
#include "hub/report_export.h"
#include "codecs/banned.h"

/* ---- answers ------------------------------------------------------------ */

void clinic_answer_html(clinic_answer *a, int status, char *body, size_t len)
{
    a->status = body ? status : 500;
    a->type = "text/html; charset=utf-8";
    a->body = body; /* NULL: an empty 500 */
    a->len = body ? len : 0;
}

void clinic_message(clinic_answer *a, int status, const char *title, const char *text)
{
    size_t len = 0;
    char *b = clinic_html_message(title, text, &len);
    clinic_answer_html(a, status, b, len);
}

void clinic_go_to_list(clinic_answer *a)
{
    a->status = 303;
    snprintf(a->location, sizeof a->location, "/");
}

/* ---- the list ------------------------------------------------------------ */

/* FNV-1a over what the list shows that can change: the items, and each alert's state. */
static uint64_t stamp_add(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

typedef struct walk {
    clinic_ctx    *p;
    inbox_listing  l;
    clinic_row    *rows;
    size_t         n;
    clinic_sent    sent;
    bool           shown;  /* rows for the page; else the stamp alone (/changes, every 5 s per page) */
    uint64_t       stamp;
} walk;

/* A study's state as the list says it: what a reload is worth. */
static char sent_state(const spool_study *st)
{
    return st->acked >= st->instances ? 'd' : st->refused ? 'r' : st->sent_bytes ? 's' : 'w';
}

static int take_sent(void *ctx, const spool_study *st)
{
    clinic_sent *s = ctx;
    if (s->patient && strcmp(st->patient_id, s->patient))
        return 0;
    if (s->n < CLINIC_SENT_MAX)
        s->v[s->n++] = *st;
    else
        s->more++;
    return 0;
}

/* One "read" record per study shown, naming its patient (from the spool). */
static int audit_sent(clinic_ctx *p, const clinic_sent *s)
{
    if (!s->n)
        return 0;
    spool_audit_rec r[CLINIC_SENT_MAX];
    for (size_t i = 0; i < s->n; i++)
        r[i] = (spool_audit_rec){.t_ms = clock_wall_ms(), .who = p->who, .what = "read",
                                 .detail = "sent to the hub (clinic page)", .study_uid = s->v[i].study_uid};
    return spool_audit_many(p->sp, r, s->n);
}

/* The link's state as a person reads it: up, down, or the gateway stopped. */
static char link_kind(const spool_stats *st)
{
    const char *s = st->link_state;
    return !strcmp(s, "connected") || !strcmp(s, "acked") ? 'u' : !strcmp(s, "stopped") ? 'x' : !*s ? '?' : 'd';
}

static int gather(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data, size_t len)
{
    walk *w = ctx;
    if (!inbox_listing_chosen(&w->l, id))
        return 0;
    clinic_row *r = &w->rows[w->n];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    r->received_ms = received_ms;
    r->confirmed = spool_alert_confirmation(w->p->sp, id, &r->c) == 0;
    report_bundle b;
    if (w->shown) { /* what the stamp does not need: the item's text, and whether it holds a signed report */
        inbox_summary_read(kind, data, len, &r->sum);
        if (report_bundle_parse(data, len, &b, NULL, 0) == 0) {
            r->has_report = true;
            report_bundle_clear(&b);
        }
    }
    char state[4] = {r->confirmed ? 'c' : '-', r->c.told_hub ? 't' : '-', 0};
    w->stamp = stamp_add(stamp_add(w->stamp, id, strlen(id) + 1), state, 3);
    w->n++;
    return w->n == w->l.n; /* all gathered: stop */
}

/* The chosen items gathered into w: with audit, audited and read in full
 * to be shown; without, only what the stamp covers. */
static int gather_list(clinic_ctx *p, const char *patient, walk *w, bool audit, char *why, size_t whylen)
{
    *w = (walk){.p = p,
                .l = {.sp = p->sp, .patient = patient, .since_ms = clock_wall_ms() - p->o->days * 86400000LL},
                .sent = {.patient = patient},
                .shown = audit,
                .stamp = 1469598103934665603ULL};
    int rc = inbox_listing_choose(&w->l);
    if (rc < 0) {
        snprintf(why, whylen, "The gateway's inbox cannot be read (%s). Call IT.", strerror(-rc));
        return rc;
    }
    if (spool_get_stats(p->sp, &w->sent.link) < 0 || (rc = spool_studies(p->sp, take_sent, &w->sent)) < 0) {
        snprintf(why, whylen, "The gateway's queue cannot be read. Call IT.");
        return rc < 0 ? rc : -EIO;
    }
    char link[2] = {link_kind(&w->sent.link), 0};
    w->stamp = stamp_add(w->stamp, link, 2);
    for (size_t i = 0; i < w->sent.n; i++) {
        char state[2] = {sent_state(&w->sent.v[i]), 0};
        w->stamp = stamp_add(stamp_add(w->stamp, w->sent.v[i].study_uid, 65), state, 2);
    }
    if (audit && (rc = inbox_listing_audit(p->sp, (const char *const *)w->l.ids, w->l.n, p->who, "read",
                                           " (clinic page)")) >= 0)
        rc = audit_sent(p, &w->sent);
    if (rc < 0) {
        snprintf(why, whylen, "The gateway's audit trail cannot be written (%s), so no patient's data is shown. "
                              "Free space for the gateway, or call IT.", strerror(-rc));
        return rc;
    }
    if (w->l.n && !(w->rows = calloc(w->l.n, sizeof *w->rows))) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    if (w->l.n)
        spool_inbox_list(p->sp, gather, w);
    return 0;
}

static void walk_free(walk *w)
{
    inbox_listing_free(&w->l);
    free(w->rows);
}

void clinic_show_list(clinic_ctx *p, const char *patient, clinic_answer *a)
{
    walk w;
    char why[300];
    if (gather_list(p, patient, &w, true, why, sizeof why) < 0) {
        clinic_message(a, 503, "Not shown", why);
    } else {
        char stamp[20];
        snprintf(stamp, sizeof stamp, "%016llx", (unsigned long long)w.stamp);
        clinic_rows_sort(w.rows, w.n);
        size_t len = 0;
        char *b = clinic_html_list(w.rows, w.n, w.l.older, p->o->days, patient, &w.sent, stamp, &len);
        clinic_answer_html(a, 200, b, len);
    }
    walk_free(&w);
}

void clinic_show_changes(clinic_ctx *p, const char *patient, clinic_answer *a)
{
    walk w;
    char why[300];
    int rc = gather_list(p, patient, &w, false, why, sizeof why);
    a->status = rc < 0 ? 503 : 200;
    a->type = "text/plain; charset=utf-8";
    if (asprintf(&a->body, "%016llx\n", (unsigned long long)w.stamp) < 0)
        a->body = NULL;
    a->len = a->body ? strlen(a->body) : 0;
    walk_free(&w);
}

/* ---- one report ---------------------------------------------------------- */

typedef struct find {
    const char *id;
    void       *data;
    size_t      len;
    bool        found;
} find;

static int find_item(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data, size_t len)
{
    find *f = ctx;
    if (strcmp(id, f->id))
        return 0;
    f->found = true;
    if ((f->data = malloc(len ? len : 1)))
        memcpy(f->data, data, len);
    f->len = len;
    return 1;
}

void clinic_show_report(clinic_ctx *p, const char *id, bool pdf, clinic_answer *a)
{
    find f = {.id = id ? id : ""};
    if (f.id[0])
        spool_inbox_list(p->sp, find_item, &f);
    if (!f.found) {
        clinic_message(a, 404, "No such report", "This clinic's inbox holds no report by that name.");
        return;
    }
    char why[1200];
    report_verifier *v = NULL;
    report_verifier_config cfg = {.trust_dir = p->o->trust_dir};
    report_opened r;
    int rc = report_verifier_new(&cfg, &v, why, sizeof why);
    if (rc < 0) {
        char text[1300];
        snprintf(text, sizeof text, "The clinic's trust list cannot be read (%s). Call IT.", why);
        clinic_message(a, 503, "Report not shown", text);
    } else if (!f.data || (rc = inbox_listing_audit(p->sp, &id, 1, p->who, "read",
                                                    pdf ? " (clinic page, the report as PDF)"
                                                        : " (clinic page, the report)")) < 0) {
        clinic_message(a, 503, "Report not shown",
                       "The gateway's audit trail cannot be written, so no patient's data is shown. Free space for the "
                       "gateway, or call IT.");
    } else if ((rc = report_open_verified(v, f.data, f.len, "", &r, why, sizeof why)) != 0) {
        char text[1400];
        if (rc == 1)
            snprintf(text, sizeof text, "%s is an alert without a signed report: what it says is on the list.", id);
        else
            snprintf(text, sizeof text, "%s\n\nIts signature does not check out against the clinic's trust list, so "
                                        "it is not shown as a signed report. Call the reading centre, or refresh "
                                        "the trust list if it has expired.", why);
        clinic_message(a, rc == 1 ? 404 : 422, "Report not shown", text);
    } else if (pdf) {
        char *b = NULL;
        size_t len = 0;
        if (report_page_pdf_buf(&r.page, &b, &len, why, sizeof why) < 0) {
            char text[1300];
            snprintf(text, sizeof text, "The PDF cannot be made here (%s). Print the page instead, and call IT.", why);
            clinic_message(a, 500, "No PDF", text);
        } else {
            a->status = 200;
            a->type = "application/pdf";
            a->body = b;
            a->len = len;
            snprintf(a->disposition, sizeof a->disposition, "inline; filename=\"%s.pdf\"", r.page.info->report_id);
        }
        report_opened_clear(&r);
    } else {
        char *b = NULL, *pdf_href = NULL;
        size_t len = 0;
        char *q = html_query_dup(id); /* the PDF link names the report as the list's link does */
        if (q && asprintf(&pdf_href, "/report.pdf?id=%s", q) < 0)
            pdf_href = NULL;
        rc = report_page_html_buf(&r.page, "/", pdf_href, &b, &len);
        clinic_answer_html(a, 200, rc < 0 ? NULL : b, len);
        free(q);
        free(pdf_href);
        report_opened_clear(&r);
    }
    report_verifier_free(&v);
    free(f.data);
}

/* ---- a person confirms reading an alert ------------------------------------ */

void clinic_confirm(clinic_ctx *p, const char *id, const char *by_given, clinic_answer *a)
{
    char by[128]; /* the name without the blanks around it: "  " is no name */
    const char *s = by_given ? by_given : "";
    s += strspn(s, " \t\r\n");
    snprintf(by, sizeof by, "%s", s);
    for (size_t n = strlen(by); n > 0 && strchr(" \t\r\n", by[n - 1]); n--)
        by[n - 1] = '\0';
    if (!id || !*id || !*by) {
        clinic_message(a, 400, "Not confirmed", "Give your name: the reading centre is told who read the alert.");
        return;
    }
    spool_confirmation was;
    int rc = spool_alert_confirm(p->sp, id, by, p->who, clock_wall_ms(), &was);
    if (rc == 0 || rc == -EEXIST) {
        clinic_go_to_list(a); /* the list says who confirmed it, and when */
    } else if (rc == -ENOENT || rc == -EINVAL) {
        clinic_message(a, rc == -ENOENT ? 404 : 400, "Not confirmed",
                rc == -ENOENT ? "This clinic's inbox holds no alert by that name." : "That is a report, not an alert: "
                                                                                     "there is nothing to confirm.");
    } else {
        char text[300];
        snprintf(text, sizeof text, "It could not be recorded (%s). Try again; if it fails again, call IT and phone "
                                    "the reading centre that you read it.", strerror(-rc));
        clinic_message(a, 503, "Not confirmed", text);
    }
}

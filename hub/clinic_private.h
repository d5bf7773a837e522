/* clinic_private.h — the clinic's page inside (private to hub/clinic_*.c):
 * clinic_http.c answers HTTP and routes to what clinic_page.c shows, which
 * clinic_page_html.c writes as HTML (every text escaped, inline style, one
 * script served by the page itself). */
#ifndef DXHUB_CLINIC_PRIVATE_H
#define DXHUB_CLINIC_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hub/clinic_page.h"
#include "hub/inbox_summary.h"
#include "hub/spool.h"

/* What the handlers work with: one thread uses it. */
typedef struct clinic_ctx {
    const clinic_page_opts *o;
    spool                  *sp;
    char                    who[200]; /* the audit's "who": this page, as the account running it */
} clinic_ctx;

/* An answer to one request. */
typedef struct clinic_answer {
    int         status;
    const char *type;
    char       *body; /* malloc'd */
    size_t      len;
    char        location[64], set_cookie[256], disposition[200];
} clinic_answer;

/* An HTML answer (body malloc'd; NULL: out of memory, an empty 500). */
void clinic_answer_html(clinic_answer *a, int status, char *body, size_t len);
/* A page saying one thing, with the way back to the list. */
void clinic_message(clinic_answer *a, int status, const char *title, const char *text);
/* 303 to the list. */
void clinic_go_to_list(clinic_answer *a);

/* The routes' handlers (clinic_page.c). */
/* The list; with patient (not NULL) that patient's items only, however old. */
void clinic_show_list(clinic_ctx *c, const char *patient, clinic_answer *a);
void clinic_show_changes(clinic_ctx *c, const char *patient, clinic_answer *a);
/* A signed report once it verifies: its page, or with pdf its PDF for printing. */
void clinic_show_report(clinic_ctx *c, const char *id, bool pdf, clinic_answer *a);
void clinic_confirm(clinic_ctx *c, const char *id, const char *by, clinic_answer *a);

/* One item of the list as the nurse reads it. */
typedef struct clinic_row {
    char               id[128], kind[32];
    int64_t            received_ms;
    inbox_summary      sum;
    bool               confirmed;  /* an alert a person confirmed reading (c says who, when) */
    spool_confirmation c;
    bool               has_report; /* a signed report to open */
} clinic_row;

/* What this clinic sent: the link to the hub as the gateway last wrote
 * it, and the studies on their way, then those delivered in the last
 * week (spool_studies' order), at most CLINIC_SENT_MAX of them. */
#define CLINIC_SENT_MAX 30
typedef struct clinic_sent {
    const char *patient; /* set: this patient's studies only */
    spool_stats link;
    spool_study v[CLINIC_SENT_MAX];
    size_t      n, more; /* shown, and left out */
} clinic_sent;

/* Alerts nobody has confirmed reading first, then the newest first. */
void clinic_rows_sort(clinic_row *rows, size_t n);

/* The list page; stamp is what /changes answers while the list stays as
 * shown.  NULL when out of memory. */
char *clinic_html_list(const clinic_row *rows, size_t n, size_t older, int days, const char *patient,
                       const clinic_sent *sent, const char *stamp, size_t *len);
/* A page saying one thing (an error, or why a report does not open), with a way back to the list. */
char *clinic_html_message(const char *title, const char *text, size_t *len);

/* The page's script (/page.js): reloads the list when /changes says it changed. */
extern const char clinic_page_js[];

#endif

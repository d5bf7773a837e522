/* clinic_page_html.h — the clinic page's HTML (private to clinic_page*.c):
 * every text escaped, inline style, one script served by the page itself. */
#ifndef DXHUB_CLINIC_PAGE_HTML_H
#define DXHUB_CLINIC_PAGE_HTML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hub/inbox_summary.h"
#include "hub/spool.h"

/* One item of the list as the nurse reads it. */
typedef struct clinic_row {
    char               id[128], kind[32];
    int64_t            received_ms;
    inbox_summary      sum;
    bool               confirmed;  /* an alert a person confirmed reading (c says who, when) */
    spool_confirmation c;
    bool               has_report; /* a signed report to open */
} clinic_row;

/* Alerts nobody has confirmed reading first, then the newest first. */
void clinic_rows_sort(clinic_row *rows, size_t n);

/* The list page; stamp is what /changes answers while the list stays as
 * shown.  NULL when out of memory. */
char *clinic_html_list(const clinic_row *rows, size_t n, size_t older, int days, const char *stamp, size_t *len);
/* A page saying one thing (an error, or why a report does not open), with a way back to the list. */
char *clinic_html_message(const char *title, const char *text, size_t *len);

/* The page's script (/page.js): reloads the list when /changes says it changed. */
extern const char clinic_page_js[];

#endif

/* report_export.h — a signed report the clinic received, written out for
 * people and other programs: the three files `dxhub verify` and openssl
 * check (report.json, report.json.sig, report.json.chain.pem) and a
 * printable page (HTML, PDF).  Used by `dxhub reports --export`.
 * Hub-private.
 *
 * Only a report whose signature verifies against the clinic's trust list
 * is exported (report_export); see report_export.c for why.
 *
 * Errors: 0 or a negative REPORT_E* / PKI_E* code (report.h, pki.h) or
 * -errno, the reason in the caller's why buffer, naming the report but
 * never quoting its content.
 */
#ifndef DXHUB_REPORT_EXPORT_H
#define DXHUB_REPORT_EXPORT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "hub/pki.h"
#include "hub/report.h"

/* --- what the hub delivers ------------------------------------------------------ */

/* The patient and exam as the hub stored the study (the "exam" member of
 * a delivery): shown above the report, outside what was signed. */
typedef struct report_exam {
    int  present;
    char patient_id[65], patient_name[200], birth_date[9], sex[17];
    char accession[17], study_date[9], description[65], modalities[65];
} report_exam;

/* The hub's DELIVER payload for a report (hub/serve.c): JSON with
 * report_id, report_b64 (the exact signed bytes), signature_b64,
 * chain_pem and, optionally, exam.  Buffers are malloc'd and
 * NUL-terminated. */
typedef struct report_bundle {
    char       *report_id;
    char       *doc;   size_t doc_len;
    uint8_t    *sig;   size_t sig_len;
    char       *chain; size_t chain_len;
    report_exam exam;  /* present 0 when absent or malformed */
} report_bundle;

/* 0; 1 when the item is not a signed report (an ECG triage alert, a
 * report without signature): nothing to export; REPORT_EFORMAT when
 * malformed.  On 0 the caller clears b. */
int  report_bundle_parse(const void *data, size_t len, report_bundle *b, char *why, size_t whylen);
void report_bundle_clear(report_bundle *b);

/* --- the printable page ------------------------------------------------------------ */

/* What a page shows, in order: the same items for HTML and PDF. */
enum report_item_kind {
    RI_TITLE,   /* the page's title */
    RI_ALERT,   /* large, red: a critical value */
    RI_HEADING, /* a section's heading */
    RI_FIELD,   /* label: value */
    RI_TEXT,    /* the reader's text, a paragraph (newlines kept) */
    RI_NOTE,    /* the verification line and how to re-check */
};

typedef struct report_item {
    int         kind;
    const char *label;     /* RI_FIELD; else NULL */
    const char *text;      /* borrowed (the report's own text) or buf */
    char        buf[640];
} report_item;

#define REPORT_PAGE_ITEMS 32

typedef struct report_page {
    const report_info  *info;        /* the verified document */
    const report_exam  *exam;        /* may be NULL; shown only when its patient ID is the report's */
    const pki_identity *signer;      /* from its verified chain */
    time_t              verified_at; /* when report_verify passed */
} report_page;

/* Fills items (REPORT_PAGE_ITEMS) and returns how many. */
size_t report_page_items(const report_page *p, report_item *items);

/* A self-contained UTF-8 HTML page (inline style, nothing fetched). */
int report_page_html(const report_page *p, const char *path, char *why, size_t whylen);
/* The same page in memory, with links at its top (not printed) to back
 * and to pdf, each unless NULL: 0 with *buf (malloc'd) and *len, or
 * -ENOMEM. */
int report_page_html_buf(const report_page *p, const char *back, const char *pdf, char **buf, size_t *len);
/* An A4 PDF through pango and cairo with a CJK font (hub/report_pdf.c). */
int report_page_pdf(const report_page *p, const char *path, char *why, size_t whylen);
/* The same PDF in memory: 0 with *buf (malloc'd) and *len, or < 0 with why. */
int report_page_pdf_buf(const report_page *p, char **buf, size_t *len, char *why, size_t whylen);

/* --- a delivered report, verified ----------------------------------------------- */

/* What a verified report rests on, and its page (page.info, page.exam and
 * page.signer point inside). */
typedef struct report_opened {
    report_bundle b;
    report_doc   *doc;
    pki_identity  signer;
    report_page   page;
} report_opened;

/* Parses the hub's delivery and verifies its report against v: 0 with r
 * filled (clear it with report_opened_clear); 1 when the item is not a
 * signed report; < 0 with why ("report ID: not verified<refused>: reason"
 * or what is malformed) and r cleared. */
int  report_open_verified(report_verifier *v, const void *data, size_t len, const char *refused, report_opened *r,
                          char *why, size_t whylen);
void report_opened_clear(report_opened *r);

/* --- the export ------------------------------------------------------------------------ */

typedef struct report_export_opts {
    const char      *out_dir;  /* OUT/<report id>/ is made for each report */
    report_verifier *verifier; /* the clinic's trust list */
    int              json, html, pdf;
} report_export_opts;

/* Verifies the bundle's report and writes what o asks into
 * OUT/<report id>/: 0 exported, 1 skipped (not a signed report), < 0
 * refused or failed.  id (REPORT_ID_MAX + 1 bytes) gets the report id when
 * known; signer (may be NULL) who signed it. */
int report_export(const report_export_opts *o, const void *data, size_t len, char *id, pki_identity *signer,
                  char *why, size_t whylen);

#endif

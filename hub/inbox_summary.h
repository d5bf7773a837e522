/* inbox_summary.h — what a person at the clinic reads of an item the hub
 * sent back: whose exam, and for a critical value (危急值) or a request to
 * repeat an ECG, what it says.  For `dxhub reports` and the gateway's
 * on-alert command.  The text is the hub's and the reader's as delivered
 * over the authenticated link; printing a report for the patient's file
 * still goes through `dxhub reports --export`, which verifies its
 * signature.  Hub-private. */
#ifndef DXHUB_INBOX_SUMMARY_H
#define DXHUB_INBOX_SUMMARY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct inbox_summary {
    char study_uid[65];                     /* the study it is about; "" when it names none */
    char patient_id[65], patient_name[200]; /* "" when the item names none */
    char exam[128];                         /* "CT 2025-06-01", "accession A123", or "" */
    char text[512];                         /* the impression, or the request; "" when none */
    char supersedes[128];                   /* an addendum: the report it follows; else "" */
    bool alert;                             /* sent as an alert: ahead of everything, to act on now */
    bool critical;                          /* a critical value (危急值) */
} inbox_summary;

/* Reads a report bundle (serve's on_report) or an ECG repeat request
 * (store_triage.c) into out.  0, or -1 when data is neither (out then
 * holds only what could be read). */
int inbox_summary_read(const char *kind, const void *data, size_t len, inbox_summary *out);

#endif

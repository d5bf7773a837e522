/* cmd_verified.h — a signed report checked offline, the way `dxhub verify`
 * and `dxhub sr` both do it (hub-private; hub/cmd_verified.c). */
#ifndef DXHUB_CMD_VERIFIED_H
#define DXHUB_CMD_VERIFIED_H

#include <time.h>
#include "hub/cmd.h"
#include "hub/pki.h"
#include "hub/report.h"

typedef struct dx_verified_report {
    dx_signed_report files;    /* the document, signature and chain as read */
    report_verifier *verifier; /* from the trust folder */
    report_study    *study;    /* the study folder; NULL when none was given */
    report_doc      *doc;      /* the verified document */
    pki_identity     signer;
} dx_verified_report;

/* Reads REPORT (with sig/chain, NULL for the defaults), builds the verifier
 * from trust_dir, checks signature, chain and revocation at `at` (0: now)
 * and, when study_dir is given, every instance digest against its files.
 * Returns 0 verified; 1 not verified; 2 unreadable input or trust list —
 * after naming what and why on stderr as command cmd ("REPORT: not
 * verified<refusal>: why").  Free *out with dx_verified_report_free
 * whatever the result. */
int  dx_verify_report_files(const char *cmd, const char *report, const char *sig, const char *chain,
                            const char *trust_dir, const char *study_dir, time_t at, const char *refusal,
                            dx_verified_report *out);
void dx_verified_report_free(dx_verified_report *r);

#endif

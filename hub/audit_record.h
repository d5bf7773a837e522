/* audit_record.h — one audit record as the JSON line the hub's store and
 * the clinic gateway's spool both keep: {"t","who","what","study",
 * "patient","detail"}, the form `dxhub audit` reads from either.
 * Hub-private. */
#ifndef DXHUB_AUDIT_RECORD_H
#define DXHUB_AUDIT_RECORD_H

#include <stdint.h>

#define AUDIT_RECORD_MAX 1024

/* The strings are borrowed; NULL reads as "".  patient is left out of the
 * line when empty (a record about no study, or an unknown one). */
typedef struct audit_record {
    int64_t     t_ms;
    const char *who, *what, *study_uid, *patient, *detail;
} audit_record;

/* Writes r as one JSON line (no newline) into out; returns its length. */
int audit_record_json(char out[AUDIT_RECORD_MAX], const audit_record *r);

#endif

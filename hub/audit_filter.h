/* audit_filter.h — which audit records an auditor asked for (`dxhub
 * audit`): a time range, who, what, a study, a patient.  Pure functions
 * over a record's fields, so the rules are tested without a store.
 * Hub-private. */
#ifndef DXHUB_AUDIT_FILTER_H
#define DXHUB_AUDIT_FILTER_H

#include <stdbool.h>
#include <stdint.h>

/* One record's fields (borrowed; "" when absent). */
typedef struct audit_entry {
    uint64_t    seq;
    int64_t     t_ms;
    const char *who, *what, *study, *patient, *detail;
} audit_entry;

typedef struct audit_filter {
    int64_t     since_ms, until_ms; /* [since, until); 0: open */
    const char *who;                /* audit_who_matches; NULL: anyone */
    const char *what;               /* comma-separated actions; NULL: any */
    const char *study, *patient;    /* NULL: any */
} audit_filter;

/* "YYYY-MM-DD" (a UTC day), or "YYYY-MM-DDThh:mm[:ss]" with "Z", an offset
 * ("+08:00") or nothing (UTC), into milliseconds since the epoch; *day_only
 * says a date alone was given.  0, or -EINVAL when malformed. */
int audit_parse_time(const char *s, int64_t *ms, bool *day_only);

/* pattern names who itself, or a prefix of it ending before a ':' or a
 * '/' ("reader" matches "reader:dr-wang", "peer:county" matches
 * "peer:county/clinic-a"). */
bool audit_who_matches(const char *pattern, const char *who);

/* detail names the patient as "PatientID=<id>", followed by a space or
 * its end (a lookup's record, which is about no one study). */
bool audit_detail_names_patient(const char *detail, const char *id);

/* Whether e is asked for.  study_patient: the patient of e's study when
 * e itself names none (older records; the study index), else NULL. */
bool audit_filter_match(const audit_filter *f, const audit_entry *e, const char *study_patient);

#endif

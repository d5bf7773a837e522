/* reader_queries.h — what a reader asks about its own tasks (hub.h's
 * HELD, DRAFT, PRIORS, PRIOR): read-only questions answered at once by the
 * reader link.  Hub-private. */
#ifndef DXHUB_READER_QUERIES_H
#define DXHUB_READER_QUERIES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "codecs/codecs.h"
#include "hub/conf_lines.h"
#include "hub/proto.h"
#include "hub/reader_link.h"

typedef struct reader_answer {
    const char *cmd;       /* the answer's command */
    json_t     *hdr;       /* taken by the sender */
    char       *data;      /* one data frame (malloc'd) or NULL */
    size_t      len;
    char        why[256];  /* the NACK reason when reader_query fails */
} reader_answer;

/* Reader reader_id's read of patient data on the audit trail, through
 * cfg->audit (reader_link.h): 0, or <0 and the data must be withheld.
 * Shared with reader_link.c's STUDY and FETCH. */
int reader_audit(const reader_link_config *cfg, const char *reader_id, const char *what, const char *study,
                 const char *detail);
#define READER_AUDIT_WITHHELD "the audit trail cannot be written; data withheld"

/* Why study other is not the same patient's as the task's study cur —
 * another Patient ID, or the same one with another birth date (where both
 * give one: someone filed under a reused or mistyped ID) — or NULL when it
 * is.  The one rule for what a reader may compare (STUDY and FETCH with
 * "prior") and what PRIORS lists. */
const char *reader_other_patient(const store_study *cur, const store_study *other);

/* The prior a workstation fetches ahead to compare with held task t
 * (reader_relevant.c; PRIORS with want "relevant_prior"): the newest
 * other study of the patient here (reader_other_patient) with the task's
 * modality, no later than the task's study, wholly arrived; or a later
 * one another hub holds, from lookup (PRIORS's answer, NULL when there is
 * none), whose report's signature and images check out there.
 * {study[, hub, report_id]}, or NULL when none. */
json_t *reader_relevant_prior(store *st, const wl_task *t, const char *lookup, size_t len);

/* A hub's name or a report id (conf_name_ok's rule), and a UID
 * (dcm_uid_valid's), as a reader or another hub sends them: NULL is not. */
static inline bool reader_name_ok(const char *s, size_t max) { return s && conf_name_ok(s, max); }
static inline bool reader_uid_ok(const char *s) { return s && dcm_uid_valid(s); }

/* Shared with reader_peer_prior.c: the task named by m, held by r or
 * offered to it; the Patient ID of a task's study; a refusal with why
 * (a->why), and one for a lookup's error code.  0, or -1 refused. */
int reader_own_task(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, wl_task *t,
                    reader_answer *a);
int reader_patient_of(const reader_link_config *cfg, const wl_task *t, char pid[STORE_UID_MAX], reader_answer *a);
int reader_refuse(reader_answer *a, const char *why);
int reader_lookup_refused(reader_answer *a, int rc);

/* STUDY and FETCH with "hub" (reader_peer_prior.c): a peer hub's exam of
 * the task's patient, named by its report there, listed (the instances
 * and digests that report signed) and read through this hub, to compare
 * with the task's study.  Answered aside (reader_aside.c). */
int reader_peer_study(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a);
int reader_peer_fetch(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a);

/* Instances per STUDY answer: 200 entries stay well inside PROTO_MAX_HEADER
 * (about 250 bytes each); a reader pages with "offset" through larger
 * studies (reader_link.c, and a peer's in reader_peer_prior.c). */
#define READER_STUDY_PAGE 200

/* Is cmd one of these questions? */
bool reader_query_known(const char *cmd);
/* The answer to m from reader r: 0, or -1 with a->why for a NACK. */
int reader_query(const reader_link_config *cfg, const proto_msg *m, const wl_reader *r, reader_answer *a);

#endif

/* report.h — the report document (DESIGN.md §6) and the checks the hub
 * runs on a submitted report and `dxhub verify` runs offline.  Hub-private.
 *
 * A report is one UTF-8 JSON object, built once by report_build; from
 * then on its bytes are what is signed, stored and verified: nothing
 * re-serialises it.  Its members (keys sorted, compact, one trailing
 * newline as report_build writes it; other writers may differ, since only
 * the bytes are signed):
 *
 *   format            "dxhub-report/1"
 *   report_id         [A-Za-z0-9._-], 1..60, starting with a letter or digit (the store's key)
 *   version           1, then 2.. for addenda;  supersedes: the report id
 *                     an addendum follows, or null
 *   study_uid, patient_id, origin_facility, reading_facility
 *   reader            {"id", "role", "name"}  (name may be absent)
 *   drafted_by        absent, or {"id", "name"} (name may be absent): the
 *                     resident whose draft the signer reviewed and signed
 *                     (two-level review); the signer's signature covers it
 *   findings, impression   text;  critical: true for a critical value (危急值)
 *   instances         {"<SOP Instance UID>": "<hex SHA-256 of the data set
 *                     bytes, as hub/digest.h computes it>", ...}, at least one
 *   times             {"reported": "YYYY-MM-DDThh:mm:ssZ" (UTC), "exam": text or absent}
 *   recognition       {"exam_type", "scope" (or null), "valid_until"
 *                     ("YYYY-MM-DD" or null)}
 *
 * A signed report travels with a detached signature over exactly those
 * bytes (pki_sign: SM2/SM3 with the GM/T ID, or Ed25519) and the signer's
 * certificate chain (PEM, reader certificate first).
 *
 * Errors: 0 or a negative REPORT_E* or PKI_E* code (pki.h), with a
 * one-line reason in the caller's why buffer; the reasons never quote the
 * report's content (patient data).
 */
#ifndef DXHUB_REPORT_H
#define DXHUB_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "hub/pki.h"
#include "hub/store_tasks.h"

#define REPORT_FORMAT        "dxhub-report/1"
#define REPORT_MAX_BYTES     (8u << 20) /* a report document */
#define REPORT_MAX_INSTANCES 100000     /* instances one report may list */
#define REPORT_ID_MAX        60

enum report_error {
    REPORT_EFORMAT   = -5101, /* not a report: JSON, or a member missing or malformed */
    REPORT_EUNSIGNED = -5102, /* signing needs a signature and the signer's chain */
    REPORT_ESIGNER   = -5103, /* signer is not the reader holding the task / the reader the report names */
    REPORT_ESTUDY    = -5104, /* the report is for another study (or task version) */
    REPORT_EDIGEST   = -5105, /* instance digests do not match the stored study */
    REPORT_ELOOKUP   = -5106, /* looking up a stored digest failed */
};
/* REPORT_E* and PKI_E* codes (and -errno). */
const char *report_strerror(int code);

/* --- building and reading the document -------------------------------------- */

typedef struct report_instance {
    const char *sop;        /* SOP Instance UID */
    uint8_t     digest[32]; /* SHA-256 of its data set bytes (digest.h) */
} report_instance;

typedef struct report_fields {
    const char *report_id, *study_uid, *patient_id;
    const char *origin_facility, *reading_facility;
    const char *reader_id, *reader_role, *reader_name; /* reader_name may be NULL */
    const char *drafted_by, *drafted_by_name;          /* NULL: not a reviewed draft; name may be NULL */
    const char *findings, *impression;
    int         critical;
    unsigned    version;         /* 0 is taken as 1 */
    const char *supersedes;      /* NULL: none */
    time_t      reported;        /* when the reader reports (a parameter: tests fix it) */
    const char *exam_time;       /* NULL: absent */
    const char *exam_type;       /* the recognition block */
    const char *scope;           /* NULL: null */
    const char *valid_until;     /* "YYYY-MM-DD", NULL: null */
} report_fields;

/* The document's bytes, made once: *out (malloc'd, NUL-terminated for
 * convenience, *out_len without the NUL).  Instances are written in SOP
 * UID order; a UID twice is an error. */
int report_build(const report_fields *f, const report_instance *inst, size_t n, char **out, size_t *out_len,
                 char *err, size_t errlen);

typedef struct report_doc report_doc;

/* What a parsed report says.  Strings borrow from the report_doc. */
typedef struct report_info {
    const char *format, *report_id, *study_uid, *patient_id;
    const char *origin_facility, *reading_facility;
    const char *reader_id, *reader_role, *reader_name; /* name: "" when absent */
    const char *drafted_by, *drafted_by_name;         /* NULL when absent; name "" when absent */
    const char *reported;                             /* times.reported */
    const char *supersedes;                           /* NULL when null */
    const char *exam_type;
    unsigned    version;
    int         critical;
    size_t      n_instances;
    const char *findings, *impression;               /* the reader's text */
    const char *exam_time;                           /* times.exam, NULL when absent */
    const char *scope, *valid_until;                 /* recognition; NULL when null */
} report_info;

/* Parses and checks the members above (duplicate keys refused). */
int                report_parse(const void *bytes, size_t len, report_doc **out, char *err, size_t errlen);
void               report_free(report_doc **d); /* NULL-safe; NULLs *d */
const report_info *report_doc_info(const report_doc *d);
/* The i-th listed instance (SOP UID order); sop borrows from d. */
int                report_doc_instance(const report_doc *d, size_t i, report_instance *out);

/* --- checking digests -------------------------------------------------------- */

/* Where digests come from: 0 and out filled, -ENOENT when the instance is
 * unknown, another negative code on failure. */
typedef int (*report_digest_fn)(void *ctx, const char *sop, uint8_t out[32]);

/* Every instance the report lists against lookup: REPORT_EDIGEST with
 * "instance digests do not match <where> (k of n differ, m missing)". */
int report_check_digests(const report_doc *d, report_digest_fn lookup, void *ctx, const char *where, char *why,
                         size_t whylen);

/* A folder of DICOM files (searched to depth 8) indexed by SOP Instance
 * UID; report_study_digest is a report_digest_fn over it (a file's digest
 * is computed on first use: SHA-256 of its bytes after the File Meta group). */
typedef struct report_study report_study;
int    report_study_open(const char *dir, report_study **out, char *err, size_t errlen);
int    report_study_digest(void *ctx, const char *sop, uint8_t out[32]);
size_t report_study_count(const report_study *s);
/* The file holding that SOP Instance UID (borrowed from s), NULL if none. */
const char *report_study_path(const report_study *s, const char *sop);
void   report_study_free(report_study **s);

/* --- the verifier ------------------------------------------------------------ */

typedef struct report_verifier_config {
    const char      *trust_dir;         /* CA certificates and CRLs (pki_trust_load) */
    report_digest_fn stored_digest;     /* the hub's stored digests; NULL: not checked */
    void            *stored_digest_ctx;
    time_t           at;                /* 0: the clock at each check; else this time (tests) */
} report_verifier_config;

typedef struct report_verifier report_verifier;

/* Loads the trust list; copies cfg (and the trust_dir string). */
int  report_verifier_new(const report_verifier_config *cfg, report_verifier **out, char *err, size_t errlen);
/* Reloads the trust list from the same directory (after a new CRL or CA,
 * e.g. on SIGHUP); on error the old list stays.  Thread-safe. */
int  report_verifier_reload(report_verifier *v, char *err, size_t errlen);
void report_verifier_free(report_verifier **v); /* NULL-safe; NULLs *v */
void report_verifier_counts(report_verifier *v, size_t *cas, size_t *crls);
/* pki_trust_deadline_of for the trust list in force. */
int  report_verifier_deadline(report_verifier *v, pki_trust_deadline *out);
/* Signer chains parsed, and reused from an earlier report with the same
 * chain bytes, since the verifier was made. */
void report_verifier_chain_counts(report_verifier *v, size_t *parsed, size_t *reused);

/* A signed report on its own: the chain parses, the signature verifies
 * over exactly report[0..len) with the chain's first certificate, the chain
 * leads to the trust list and is valid at time at (0: now) and not revoked,
 * the document parses, and it names its signer (reader.id = the
 * certificate's UID, reading_facility = its O).  signer and doc (may be
 * NULL) get what was found; *doc is the caller's to free. */
int report_verify(report_verifier *v, const void *report, size_t len, const void *sig, size_t sig_len,
                  const void *chain, size_t chain_len, time_t at, pki_identity *signer, report_doc **doc, char *why,
                  size_t whylen);

/* store_submission.verify (store_tasks.h), ctx a report_verifier.  A
 * draft or return without a signature passes; anything signed, and every
 * "sign", must pass report_verify and then: the signer is the reader
 * holding the task (UID = sub->reader->id), the report's id is the
 * submission's, its study is the task's (and its version the task's), and
 * every listed instance digest matches stored_digest. */
int report_verify_submission(void *ctx, const wl_task *t, const store_submission *sub, char *why, size_t why_len);

#endif

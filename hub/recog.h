/* recog.h — mutual recognition of exam results (检查检验结果互认, DESIGN.md
 * §6): the consortium's rules, read from a small file with embedded
 * defaults, and their evaluation for one signed report.  Hub-private.
 *
 * What another facility recognises is the exam's images or waveforms
 * (the 2022 national rules exclude the diagnostic conclusion), so an exam
 * is recognised when every rule holds:
 *
 *   images_intact  every instance the report signed is stored with that
 *                  digest, and its stored bytes still hash to it
 *   quality        images decode (one frame of each); an ECG passed the
 *                  hub's signal-quality triage
 *   signature      the report's signature over its exact stored bytes,
 *                  its chain to the consortium trust list, not revoked
 *                  (checked as of when the hub accepted it)
 *   facility       the exam was made in the consortium: at this hub's
 *                  hospital (DICOM), at a clinic with an edge key here, or
 *                  at a facility the configuration lists
 *   exam_type      the modality has a validity period in the configuration
 *   validity       today is within it (from the study date, else the
 *                  report; never past the report's own valid_until)
 *
 * Configuration (`dxhub serve --recognition FILE`, default
 * DATA/recognition.conf; a missing file means the defaults), one setting
 * a line, '#' comments:
 *
 *   consortium NAME...     printed with the mark (default "dxhub consortium")
 *   mark TEXT              the recognition mark (default "HR")
 *   member FACILITY        a facility in the consortium besides the edges
 *   validity MODALITY DAYS how long an exam of that modality is recognised
 *   validity MODALITY off  not recognised
 *
 * Default validity (days): CR, DX, MG 180; CT, MR 180; US 30; ECG 30;
 * NM, PT 90; RF 90; XA, ES and others not recognised.
 *
 * Cost: verifying a signature and re-hashing a study's stored bytes is
 * done once and remembered: a report's verdict by the SHA-256 of its
 * stored bytes, signature and chain and by its index record (time and
 * version), the bytes read and hashed again when another process
 * committed to the store since, when the verdict is a day old, and
 * whenever the caller already holds them (a report being served; what
 * that bounds: ARCHITECTURE.md, "Lookup"); an instance's by its digest,
 * for a day.  recog_trust_changed forgets
 * every signature verdict (a new CRL).  Thread-safe.
 */
#ifndef DXHUB_RECOG_H
#define DXHUB_RECOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hub/report.h"
#include "hub/store.h"
#include "hub/store_lookup.h"

/* --- configuration ----------------------------------------------------------- */

typedef struct recog_config recog_config;
/* path NULL or missing: the defaults.  0, or a negative code with the
 * file and line in err. */
int  recog_config_load(const char *path, recog_config **out, char *err, size_t errlen);
void recog_config_free(recog_config **c);
const char *recog_consortium(const recog_config *c);
const char *recog_mark(const recog_config *c);
int         recog_validity_days(const recog_config *c, const char *modality); /* -1: not recognised */
bool        recog_is_member(const recog_config *c, const char *facility);

/* --- evaluation -------------------------------------------------------------- */

typedef enum recog_rule {
    RECOG_IMAGES, RECOG_QUALITY, RECOG_SIGNATURE, RECOG_FACILITY, RECOG_EXAM_TYPE, RECOG_VALIDITY, RECOG_RULES
} recog_rule;
extern const char *const recog_rule_names[RECOG_RULES];

typedef struct recog_instance {
    char    sop[STORE_UID_MAX];
    uint8_t digest[32];
} recog_instance;

enum { RECOG_MEMBER_NONE, RECOG_MEMBER_HOSPITAL, RECOG_MEMBER_LISTED, RECOG_MEMBER_EDGE };

/* What the verdicts were decided from (read by recog_explain). */
typedef struct recog_facts {
    bool        unreadable, imaging;
    size_t      n, missing, differ, broken, undecodable;
    char        first_bad[160];
    uint8_t     quality;
    char        quality_why[160];
    int         member;            /* RECOG_MEMBER_* */
    char        modality[17];
    int         days;              /* validity; -1: type not recognised */
    long        today, until;      /* day numbers */
    const char *from;              /* what the period counts from */
} recog_facts;

typedef struct recog_result {
    bool recognised;
    struct {
        bool ok;
        char detail[200];        /* "" until recog_explain */
    } rule[RECOG_RULES];
    /* Every input of the verdicts and their sentences: two results of the
     * same report with equal states read the same. */
    uint64_t    state;
    /* How much longer (ms, from the evaluation) the verdict and image
     * facts this result used are trusted without reading the stored bytes
     * and instance records again: an answer kept whole must not outlive it. */
    int64_t     trusted_ms;
    recog_facts facts;
    char facility[64];           /* where the exam was made */
    /* what the report says (filled by recog_explain) */
    char exam_type[64];          /* the report's recognition.exam_type */
    char valid_until[11];        /* YYYY-MM-DD, "" when not recognised as a type */
    char signer[128], reader_id[64], reading_facility[128], signer_alg[16];
    char reported[24];           /* times.reported as the report says */
    /* The instances the report signed (for links); borrowed until
     * recog_result_release. */
    const recog_instance *inst;
    size_t                n_inst;
    void                 *hold;
} recog_result;

typedef struct recog recog;

typedef struct recog_env {
    store           *st;
    /* The hub's trust list, which SIGHUP may load later; the slot holds
     * NULL while there is none, and nothing signed is recognised then. */
    report_verifier *_Atomic *verifier;
    /* Is facility (the F of "edge:F") one of this hub's clinics? */
    bool           (*has_edge)(void *ctx, const char *facility);
    void            *has_edge_ctx;
} recog_env;

int  recog_new(const recog_env *env, recog_config *cfg, recog **out); /* takes cfg */
void recog_free(recog **r);
/* A new configuration (SIGHUP); takes cfg. */
void recog_set_config(recog *r, recog_config *cfg);
/* The trust list was reloaded: verify signatures again. */
void recog_trust_changed(recog *r);
/* Grows whenever a rule's input outside the store changes: the trust
 * list or CRL, the rules, the allow-list (each SIGHUP), and whenever a
 * stored report's bytes are found changed under the same index record
 * (by another process or on the disk). */
uint64_t recog_generation(recog *r);
/* The consortium name and mark, copied (the configuration may change). */
void recog_names(recog *r, char *consortium, size_t cn, char *mark, size_t mn);

/* Every rule for one report as the store holds it, at now_ms: each
 * rule's ok, recognised, and state.  0, or a negative code (out of
 * memory, the store unreadable); a report that fails rules is 0 with
 * out->recognised false.  Reads v's bytes (store_report_bytes) only when
 * its verdict is not recent.
 * Release out afterwards. */
int  recog_evaluate(recog *r, store_report_view *v, int64_t now_ms, recog_result *out);
/* The sentence behind each verdict (rule[k].detail; no patient data). */
void recog_explain(recog_result *out);
void recog_result_release(recog_result *out);

/* One rendering of a result kept with the report's verdict, so that a
 * lookup of an unchanged exam copies its text instead of writing it
 * again.  key: out->state mixed with whatever else the text depends on.
 * get calls put with the text when the key matches (true), under a lock. */
bool recog_memo_get(const recog_result *out, uint64_t key, void (*put)(void *ctx, const void *p, size_t n),
                    void *ctx);
void recog_memo_set(recog_result *out, uint64_t key, const void *p, size_t n);

#endif

/* hub.h — what a reader's software needs of the hub: the reader protocol
 * and its client.  The one header of hub/ that viewer/ (the workstation)
 * and `dxhub reader` use.
 *
 * Reader protocol (ZeroMQ DEALER → hub ROUTER on --reader-port, CURVE
 * with the reader's key; the hub's allow-list gives it role reader:<id>,
 * and the hub's readers file its profile).  Framing as proto.h: COMMAND,
 * JSON header with "v":1, optional data frames.  Requests carry "req"
 * (a number the client picks); the reply carries the same "req".
 *
 *   HELLO {}                       → WELCOME {reader, seniority, modalities, max_tasks}
 *   READY {credit}                 → (later, unsolicited) TASK {task} offers, at most credit
 *   CLAIM {req, task[, ready]}     → CLAIMED {req, task, lease_until (ms since epoch)} | NACK {req, reason}
 *                                    ready: the next READY's credit, carried along (offers follow
 *                                    at once, before this CLAIM's answer, which waits for its commit)
 *   HEARTBEAT {req}                → HEARTBEAT {req, leases}       keeps every lease alive
 *   RELEASE {req, task}            → OK {req} | NACK
 *   STUDY {req, task[, offset][, prior[, prefetch]]} → STUDY {req, task, study, offset, total,
 *                                    instances:[{sop, series, size, digest, ts, number}]}
 *                                    at most 200 instances from offset (0) of total: page with offset;
 *                                    prefetch (true): a prior listed ahead, not opened (the trail says so)
 *   FETCH {req, task, sop, offset, length[, prior]} → DATA {req, sop, offset, size, eof} + bytes | NACK
 *        prior: a Study Instance UID — another study of the task's patient (the same Patient
 *        ID and, when both give one, birth date) held at this hub, listed and read to compare with the task's own (NACK when it
 *        is not here or not that patient's); audited as the reader's read of that study.
 *        With hub and report_id (STUDY and FETCH): a peer hub's exam, named by its report
 *        there, which must be the task's patient's and of that study; listed as that report
 *        signed its instances (size 0: DATA says), read through this hub from the peer
 *   SUBMIT {req, task, action, report_id[, reason]} + report bytes [+ signature] [+ certificate chain]
 *        action: "draft" (a resident's goes to review), "sign", "return" (reviewer; "reason" for
 *        the resident, at most 127 bytes kept), "addendum" (task: the signed task; the signed
 *        document has version + 1 and supersedes = the signed report's id; the ACK's task is
 *        the addendum's own, signed, task)
 *                                  → ACK {req, task, state} after it is durable | NACK {req, reason}
 *   HELD {req}                     → HELD {req, tasks:[task + {lease_until, returned?, returned_by?}]}
 *                                    the tasks the reader holds; a task a reviewer sent back carries
 *                                    the reviewer's reason (how a resident learns of a return)
 *   DRAFT {req, task}              → DRAFT {req, task, report_id, drafted_by, returned?, returned_by?}
 *                                    + the task's latest stored draft document (no frame when none)
 *   PRIORS {req, task}             → PRIORS {req, task, patient_id, studies} + one frame: the lookup
 *                                    answer for the task's patient, as GET /api/v1/reports gives it
 *                                    (this hub's signed exams and its peers'), audited as the reader;
 *                                    studies: [{study, date, modalities, description, state,
 *                                    instances}] the patient's other studies this hub holds, reported
 *                                    or not, newest first (at most 50): what STUDY "prior" may read
 *   PRIORS {req, task, want: "relevant_prior"} → PRIORS {req, task[, relevant_prior]}, no frame:
 *                                    which prior a workstation fetches ahead — {study} the patient's
 *                                    newest other study here with the task's modality, no later than
 *                                    the task's, wholly arrived; or {study, hub, report_id} a later
 *                                    one a peer hub holds, its report's signature and images good
 *                                    there (asked as PRIORS is; this hub's alone when lookups are off)
 *   PRIOR {req, task, report_id[, hub]} → PRIOR {req} + one frame: GET /api/v1/reports/{id}'s
 *                                    answer (a peer hub's when hub names one), for a prior of the
 *                                    task's patient
 *   ALERT {req, task}              → ALERT {req, task, report_id, facility, state, since}: what
 *                                    became of the report the reader signed on task, when critical
 *                                    (危急值 closed loop): state "waiting" (the clinic's gateway has
 *                                    not taken it; since: queued), "unread" (taken; since: when; no
 *                                    person there has confirmed reading it), "read", or
 *                                    "not-critical"; only the report's signer may ask
 *   malformed / not allowed        → ERROR {error, to[, req]}   (req echoed when the header had one)
 *
 * Durability: a TASK offer is a proposal, sent before its "offered" record
 * is committed; should the hub stop first, the offer is forgotten and the
 * task queued again, and a CLAIM of it is taken if the task is still
 * queued and the reader may, else refused (NACK "the task is offered to or
 * held by another reader": drop the offer).  Every other answer — CLAIMED,
 * HEARTBEAT, OK, ACK and the NACKs of those requests — leaves only once
 * what it reports is durable.
 *
 * A task object: {id, study, kind, priority, modality, body_part, facility,
 * referral, note, triage, state, due (ms since epoch), version, review,
 * patient_id, instances}.  Study data is the stored bytes (compressed as
 * received); the reader decodes.  FETCH is resumable by offset.  STUDY and
 * FETCH answer for a task held by the reader or offered to it (so a
 * workstation can prefetch what it is likely to read next).
 */
#ifndef DXHUB_HUB_H
#define DXHUB_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HUB_READER_PORT_DEFAULT 5571

enum hub_client_error {
    HUB_ETIMEDOUT = -3001, /* no answer in time: the hub is unreachable or busy */
    HUB_EREFUSED  = -3002, /* NACK or ERROR: reason in the client's last_error */
    HUB_EPROTO    = -3003, /* an answer we cannot understand */
};

typedef struct hub_client hub_client;

typedef struct hub_client_config {
    const char *endpoint;    /* tcp://HOST:PORT */
    const char *hub_public;  /* Z85 */
    const char *hub_public_next; /* the hub's next key while it changes keypairs (NULL or "": none): the
                                    other is tried when a handshake fails other than by refusing our key */
    const char *public_key;  /* ours, Z85 */
    const char *secret_key;
    int         timeout_ms;  /* per request; 0: 10000 */
} hub_client_config;

typedef struct hub_task {
    uint64_t id;
    char     study_uid[65];
    char     kind[16], priority[16], state[16];
    char     modality[17], body_part[17], facility[64];
    char     note[256], triage[256];
    char     patient_id[65];
    int64_t  due_ms;
    int      referral, review;
    uint32_t version, instances;
    char     report_id[64];   /* the latest report stored for the task (a draft under review) */
    char     drafted_by[64];  /* the resident whose draft this is */
    char     returned[128];   /* HELD: why a reviewer sent it back ("" when not returned) */
    char     returned_by[64];
    int64_t  lease_until_ms;  /* HELD: the lease's end, hub clock */
} hub_task;

typedef struct hub_instance {
    char     sop_uid[65], series_uid[65], ts_uid[65];
    char     digest[65]; /* hex SHA-256 of the data set (DESIGN.md §4) */
    uint64_t size;
    int32_t  number;
} hub_instance;

int  hub_client_open(const hub_client_config *cfg, hub_client **out, char *err, size_t errlen);
void hub_client_close(hub_client **c);
const char *hub_client_error(const hub_client *c); /* last NACK/ERROR reason */
/* The last refusal said this client's key was revoked at the hub while
 * connected (ERROR "revoked": true): nothing will work until the hub's
 * operator allows a key again. */
bool        hub_client_key_revoked(const hub_client *c);
/* Connected through the second key of hub_public_next: the hub has its
 * new keypair (the reader's configuration may drop the old key). */
bool        hub_client_on_next_key(const hub_client *c);

/* HELLO; fills our reader id as the hub knows it. */
int hub_client_hello(hub_client *c, char *reader_id, size_t n);
/* Offer capacity; offers then arrive through hub_client_next_offer. */
int hub_client_ready(hub_client *c, int credit);
/* Wait up to timeout_ms for a TASK offer (0: poll). HUB_ETIMEDOUT if none. */
int hub_client_next_offer(hub_client *c, int timeout_ms, hub_task *out);
int hub_client_claim(hub_client *c, uint64_t task, hub_task *out);
int hub_client_heartbeat(hub_client *c, int *leases);
int hub_client_release(hub_client *c, uint64_t task);
/* The instances of a held task's study; *out is malloc'd (caller frees). */
int hub_client_study(hub_client *c, uint64_t task, hub_instance **out, size_t *n);
/* The Study Instance UID of a held task (a STUDY request). */
int hub_client_study_uid(hub_client *c, uint64_t task, char *uid, size_t n);
/* Fetch one instance's stored bytes from offset, calling sink per chunk
 * (sink returns non-zero to stop).  Resumable: pass the offset reached. */
int hub_client_fetch(hub_client *c, uint64_t task, const char *sop, uint64_t offset,
                     int (*sink)(void *ctx, uint64_t offset, const void *p, size_t n), void *ctx);
/* A prior of the task's patient, to compare (STUDY and FETCH with
 * "prior"): a study this hub holds, or a peer hub's exam named by its
 * report there (its listing has the instances and digests that report
 * signed, each size 0 until fetched).  ahead: fetched before the reader
 * opened it (the hub's trail says "prefetched"). */
typedef struct hub_prior {
    const char *study;     /* Study Instance UID */
    const char *hub;       /* a peer hub's name, or NULL: this hub */
    const char *report_id; /* with hub: its report of that study */
    bool        ahead;
} hub_prior;
/* As hub_client_study and hub_client_fetch. */
int hub_client_prior_study(hub_client *c, uint64_t task, const hub_prior *prior, hub_instance **out, size_t *n);
/* The prior the hub suggests fetching ahead for task (PRIORS's
 * "relevant_prior": the patient's newest earlier exam of the task's
 * modality, there or at a peer hub): study "" when there is none.
 * Fetched ahead, its listing is asked with ahead set: the hub's trail
 * says "prefetched". */
typedef struct hub_relevant {
    char study[65], hub[64], report_id[64]; /* hub "": the hub's own */
} hub_relevant;
int hub_client_relevant_prior(hub_client *c, uint64_t task, hub_relevant *out);
int hub_client_prior_fetch(hub_client *c, uint64_t task, const hub_prior *prior, const char *sop, uint64_t offset,
                           int (*sink)(void *ctx, uint64_t offset, const void *p, size_t n), void *ctx);
/* Submit a report (the exact bytes to store) with an optional detached
 * signature and certificate chain (PEM).  state_out gets the task's new state. */
int hub_client_submit(hub_client *c, uint64_t task, const char *action, const char *report_id,
                      const void *report, size_t report_len, const void *sig, size_t sig_len,
                      const void *chain, size_t chain_len, char *state_out, size_t state_len);

/* Send a task under review back to its resident with the reason (SUBMIT
 * action "return"). */
int hub_client_return(hub_client *c, uint64_t task, const char *report_id, const char *reason, char *state_out,
                      size_t state_len);
/* The tasks the hub says we hold (HELD): *out malloc'd (caller frees). */
int hub_client_held(hub_client *c, hub_task **out, size_t *n);
/* The latest draft stored for a task we hold or are offered (DRAFT): the
 * document's bytes in *doc (malloc'd, NUL-terminated; NULL when none),
 * who drafted it, and the reviewer's reason when it was returned. */
typedef struct hub_draft {
    char  report_id[64], drafted_by[64], returned[128], returned_by[64];
    char *doc;
    size_t len;
} hub_draft;
int hub_client_draft(hub_client *c, uint64_t task, hub_draft *out);
/* ALERT: what became of the critical value the reader signed on task (the
 * 危急值 closed loop): state "waiting" (the clinic's gateway has not taken
 * it, since since_ms), "unread" (taken at since_ms, nobody there has
 * confirmed reading it yet), "read", or "not-critical".  Only the signer
 * of the task's report may ask. */
typedef struct hub_alert {
    char    state[16], facility[64], report_id[64];
    int64_t since_ms;
} hub_alert;
int hub_client_alert(hub_client *c, uint64_t task, hub_alert *out);
/* PRIORS and PRIOR: the hub's lookup JSON (malloc'd, NUL-terminated) for
 * the patient of a task we hold or are offered; hub may be NULL.  PRIORS
 * also gives, with studies non-NULL, the answer's "studies" (the patient's
 * other studies at this hub) as compact JSON in *studies (malloc'd; "[]"
 * from a hub that does not say). */
int hub_client_priors(hub_client *c, uint64_t task, char **json, size_t *len, char **studies);
int hub_client_prior(hub_client *c, uint64_t task, const char *report_id, const char *hub, char **json,
                     size_t *len);

/* What WELCOME said about us (after hub_client_hello): 0, or -1 before. */
typedef struct hub_reader_profile {
    char id[64], seniority[16], modalities[128];
    int  max_tasks;
} hub_reader_profile;
int hub_client_profile(const hub_client *c, hub_reader_profile *out);

/* Leases: while the client holds claimed tasks, every call sends a
 * HEARTBEAT first when one is due (automatic: a third of the lease the hub
 * granted; interval_ms > 0: that; < 0: never — the caller heartbeats).
 * Returns the interval now in force. */
int     hub_client_keepalive(hub_client *c, int interval_ms);
int64_t hub_client_lease_until(const hub_client *c); /* the hub's clock, ms; 0 before a claim */
int     hub_client_leases(const hub_client *c);      /* leases held, as last counted */

/* --- a reader's CURVE keys (hub_keys.c) ----------------------------------------
 * As `dxhub reader` does: our keypair DIR/NAME.key (made when missing, *made
 * set; the hub must then allow DIR/NAME.pub as reader:<id>) and the hub's
 * public key file.  The strings a hub_client_config points at. */
typedef struct hub_reader_keys {
    char hub_public[41], public_key[41], secret_key[41];
    char hub_public_next[41]; /* "" unless hub_key_file names two keys, "NOW,NEXT" */
} hub_reader_keys;
int hub_reader_keys_load(const char *keys_dir, const char *name, const char *hub_key_file, hub_reader_keys *out,
                         int *made, char *err, size_t errlen);

/* --- what a reader's software needs besides the protocol (hub_sign.c) ------
 * The report document (DESIGN.md §6) built by the same code as `dxhub
 * report`, signed by the same code as `dxhub sign`, and the instance
 * digest the hub's STUDY listing carries, so a workstation can check what
 * it fetched and name it in a report without seeing hub internals. */

enum hub_sign_error {
    HUB_EPASS  = -3004, /* no passphrase, or a wrong one */
    HUB_ESIGN  = -3005, /* the key, certificate or report was refused (reason in err) */
};

/* Who a certificate chain's first certificate names (UTF-8). */
typedef struct hub_signer_identity {
    char name[256];     /* CN */
    char reader_id[64]; /* UID: must be the reader id the hub knows */
    char role[64];      /* title */
    char facility[128]; /* O: the reading facility */
    char subject[600];  /* "CN=..., title=..., O=..., UID=..." */
    char issuer[256];   /* the issuer's CN */
    char serial[80];    /* hex */
    char alg[16];       /* "sm2-sm3", "ed25519" */
    int64_t not_after;  /* seconds since epoch */
} hub_signer_identity;

/* The identity a PEM certificate (or chain) file names (no private key needed). */
int hub_chain_identity(const char *cert_path, hub_signer_identity *out, char *err, size_t errlen);

/* A reader's signing key, decrypted once and kept in OpenSSL's locked
 * secure heap (never written anywhere), with its certificate chain.
 * hub_signer_open: HUB_EPASS for a wrong passphrase; HUB_ESIGN when the key
 * is unreadable or is not the chain's first certificate's. */
typedef struct hub_signer hub_signer;
/* cert_path: the reader's certificate, or its whole chain; chain_path
 * (may be NULL): the issuing CA certificates to send after it. */
int  hub_signer_open(const char *key_path, const char *cert_path, const char *chain_path, const char *pass,
                     hub_signer **out, char *err, size_t errlen);
void hub_signer_free(hub_signer **s); /* NULL-safe; NULLs *s */
void hub_signer_who(const hub_signer *s, hub_signer_identity *out);
/* The chain's PEM bytes, borrowed from s. */
const void *hub_signer_chain(const hub_signer *s, size_t *len);
#define HUB_SIG_MAX 128
/* A detached signature over exactly p[0..n) (SM2/SM3 with the GM/T ID, or Ed25519). */
int hub_signer_sign(const hub_signer *s, const void *p, size_t n, uint8_t sig[HUB_SIG_MAX], size_t *sig_len,
                    char *err, size_t errlen);

typedef struct hub_report_fields {
    const char *report_id, *study_uid, *patient_id;
    const char *origin_facility, *reading_facility;
    const char *reader_id, *reader_role, *reader_name; /* name may be NULL */
    const char *findings, *impression;
    int         critical;
    unsigned    version;    /* the task's version (0 taken as 1) */
    const char *supersedes; /* NULL: none */
    int64_t     reported;   /* seconds since epoch */
    const char *exam_type;  /* e.g. "CT CHEST", "ECG" */
    const char *drafted_by, *drafted_by_name; /* a reviewed resident's draft: who drafted it; else NULL */
} hub_report_fields;

typedef struct hub_report_instance {
    const char *sop;
    const char *digest; /* hex SHA-256, as the STUDY listing gives it */
} hub_report_instance;

/* The report document's bytes (malloc'd, NUL-terminated; *len without it). */
int hub_report_build(const hub_report_fields *f, const hub_report_instance *inst, size_t n, char **out,
                     size_t *len, char *err, size_t errlen);

/* hex SHA-256 of fd's bytes from offset to its end: an instance's digest
 * when offset is where its data set starts (after the File Meta group). */
int hub_digest_fd(int fd, uint64_t offset, char hex[65]);

/* `dxhub ecg --measure --json`'s object for r, as a malloc'd compact JSON
 * string (*out), or a negative ECG_E* or DCM_E* code with the reason in err. */
struct ecg_record;
int hub_ecg_measure_json(const struct ecg_record *r, char **out, char *err, size_t errlen);

#endif

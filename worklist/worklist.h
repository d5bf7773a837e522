/* worklist.h — the reading worklist: tasks, priorities and due times,
 * reader qualifications, offers, leases, two-level review, addenda.
 *
 * No sockets and no clock: time comes in as a parameter (milliseconds), so
 * tests drive it.  State lives in LMDB and every call works inside the
 * caller's write (or read) transaction, so a task and the study it belongs
 * to commit together, or not at all.
 *
 * States (PS: released, expired and returned are transitions, recorded in
 * the history, that put a task back in the queue):
 *
 *   queued ──offer──▶ offered ──claim──▶ claimed ──draft──▶ drafted ──sign──▶ signed
 *     ▲                 │ (offer timeout)   │ (release, lease lapses)   │
 *     └─────────────────┴───────────────────┘                          │ resident:
 *                                                                      ▼ to review
 *   review-queued ──offer──▶ offered ──claim──▶ claimed(review) ──sign──▶ signed
 *                                                  └──return──▶ back to the resident (claimed)
 *   signed ──addendum──▶ a new version (claimed by its author), never an edit
 *   any open state ──cancel──▶ cancelled
 *
 * Order of offers: priority (STAT, URGENT, ROUTINE), then a lapsed lease's
 * task at the front of its priority, then due time, then arrival.
 * Invariants (checked by the property tests): no task is lost; no task is
 * held by two readers; a reader never holds more than its max; every state
 * change is in the history.
 *
 * Errors: 0 or a negative WL_E* code (or -errno / LMDB codes passed
 * through as WL_ESTORE).
 */
#ifndef DXHUB_WORKLIST_H
#define DXHUB_WORKLIST_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

enum wl_error {
    WL_OK = 0,
    WL_ENOTFOUND = -2001, /* no such task */
    WL_ESTATE    = -2002, /* not allowed in the task's current state */
    WL_ENOTYOURS = -2003, /* the task is offered to / held by someone else */
    WL_EQUALIFY  = -2004, /* the reader may not read this task */
    WL_EFULL     = -2005, /* the reader holds as many tasks as allowed */
    WL_EEMPTY    = -2006, /* nothing to offer this reader */
    WL_ESTORE    = -2007, /* LMDB failure */
    WL_EINVAL    = -2008,
};
const char *wl_strerror(int code);

typedef enum wl_kind { WL_IMAGING = 0, WL_ECG = 1 } wl_kind;
typedef enum wl_priority { WL_ROUTINE = 0, WL_URGENT = 1, WL_STAT = 2 } wl_priority;
typedef enum wl_state {
    WL_QUEUED = 0, WL_OFFERED, WL_CLAIMED, WL_DRAFTED, WL_REVIEW, WL_SIGNED, WL_CANCELLED, WL_STATE_COUNT
} wl_state;
typedef enum wl_seniority { WL_RESIDENT = 0, WL_ATTENDING = 1, WL_CHIEF = 2 } wl_seniority;

const char *wl_kind_name(wl_kind k);
const char *wl_priority_name(wl_priority p);
const char *wl_state_name(wl_state s);
int         wl_priority_parse(const char *s); /* -1 unknown */
int         wl_seniority_parse(const char *s);

#define WL_ID_MAX 64

typedef struct wl_task {
    uint64_t id;
    char     study_uid[65];
    uint8_t  kind, priority, state;
    uint8_t  clinic_priority;     /* as the clinic flagged it */
    uint8_t  referral, escalated, front, review;
    char     modality[17], body_part[17], facility[WL_ID_MAX];
    char     note[256];           /* clinical note */
    char     triage[256];         /* automatic suggestions (ECG), never a diagnosis */
    int64_t  arrival_ms, due_ms;
    char     holder[WL_ID_MAX];   /* offered to / claimed by */
    int64_t  holder_until_ms;     /* offer timeout or lease end */
    char     drafted_by[WL_ID_MAX];
    char     signed_by[WL_ID_MAX];
    uint32_t version;             /* 1, then 2.. for addenda */
    uint64_t supersedes;          /* the task an addendum follows */
    char     report_id[WL_ID_MAX];
    uint64_t seq;                 /* arrival order */
    uint32_t events;              /* history entries so far */
} wl_task;

typedef struct wl_reader {
    char     id[WL_ID_MAX];
    char     modalities[128];     /* comma list, "*" any ("ECG" for ECG readers) */
    char     facilities[256];     /* comma list, "*" any */
    uint8_t  kinds;               /* bit (1 << wl_kind) */
    uint8_t  seniority;           /* wl_seniority */
    uint16_t max_tasks;
} wl_reader;

/* Due-time rules: the first matching (kind, modality or "*", priority) wins. */
typedef struct wl_rule {
    int         kind;      /* -1 any */
    const char *modality;  /* NULL or "*": any */
    int         priority;
    int64_t     due_ms;
} wl_rule;

typedef struct wl_config {
    const wl_rule *rules;   /* NULL: built-in STAT 10 min, URGENT 30 min, ROUTINE 24 h */
    size_t         n_rules;
    int64_t        lease_ms;        /* claimed task without heartbeat; 0: 60 s */
    int64_t        offer_ms;        /* offered task not claimed; 0: 30 s */
    int64_t        escalate_before; /* escalate when due within this; 0: a fifth of the allowance */
} wl_config;

typedef struct wl wl;

/* Open (creating) the worklist's databases, WL_DB_NAMES, in txn's
 * environment (it needs 7 free named databases).  Commit txn afterwards. */
#define WL_DB_NAMES "wl_task", "wl_queue", "wl_held", "wl_hist", "wl_meta", "wl_bymod", "wl_until"
int  wl_open(MDB_txn *txn, const wl_config *cfg, wl **out);
void wl_close(wl **w);

typedef struct wl_task_spec {
    const char *study_uid, *modality, *body_part, *facility, *note;
    wl_kind     kind;
    wl_priority clinic_priority;
    int         referral;   /* 转诊: at least URGENT */
} wl_task_spec;

int wl_add(wl *w, MDB_txn *txn, const wl_task_spec *spec, int64_t now, wl_task *out);
int wl_get(wl *w, MDB_txn *txn, uint64_t id, wl_task *out);

/* The best task this reader may take now: it becomes OFFERED to them. */
int wl_offer(wl *w, MDB_txn *txn, const wl_reader *r, int64_t now, wl_task *out);
/* The same choice without changing anything (a read transaction will do),
 * passing over the tasks skip->fn says are taken (offers not yet recorded):
 * 0 and the task in out as it reads once offered to r at now (what the
 * reader is sent), WL_EEMPTY, or an error.  The caller checks the
 * reader's load (wl_held_count) and records the offer with wl_offer_task. */
/* Optional (memo non-NULL, read-only transactions only): where earlier
 * picks on the same snapshot found, in each part of the queue they walked,
 * the first task fn did not pass over.  The tasks passed over are the
 * best ones (offers not yet recorded sit at the queue's front), so without
 * it every pick walks past all of them again.  It holds while the
 * snapshot (the transaction's id) and gen(ctx) are unchanged: the caller
 * bumps gen whenever a task stops being passed over, so until then every
 * task before the remembered one still is. */
#define WL_MEMO_PARTS 4
#define WL_MEMO_KEY   48
typedef struct wl_skip_memo {
    uint64_t txn_id, gen;
    struct {
        MDB_dbi dbi;
        uint8_t pl, kl; /* prefix and whole key lengths; kl 0: unused */
        uint8_t key[WL_MEMO_KEY];
    } part[WL_MEMO_PARTS];
} wl_skip_memo;
typedef struct wl_skip {
    int          (*fn)(void *ctx, uint64_t id); /* nonzero: pass over task id */
    void         *ctx;
    wl_skip_memo *memo;                         /* NULL: none */
    uint64_t     (*gen)(void *ctx);              /* with memo */
} wl_skip;
int wl_pick(wl *w, MDB_txn *txn, const wl_reader *r, const wl_skip *skip, int64_t now, wl_task *out);
/* Offer this task to r if it is still queued, r may read it and r is not
 * full (WL_ESTATE, WL_ENOTYOURS, WL_EQUALIFY, WL_EFULL otherwise). */
int wl_offer_task(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, int64_t now, wl_task *out);
/* How many tasks reader holds (offered, claimed, drafted). */
int wl_held_count(wl *w, MDB_txn *txn, const char *reader);
/* Claim a task offered to the reader (or queued and qualified): a lease. */
int wl_claim(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, int64_t now, wl_task *out);
/* Extend every lease the reader holds (a heartbeat). Returns how many. */
int wl_heartbeat(wl *w, MDB_txn *txn, const char *reader, int64_t now);
int wl_release(wl *w, MDB_txn *txn, uint64_t id, const char *reader, int64_t now);
/* Save a draft; a resident's draft goes to review (REVIEW, queued for an
 * attending); an attending's or chief's draft stays theirs (DRAFTED). */
int wl_draft(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, const char *report_id, int64_t now,
             wl_task *out);
/* Sign: the holder (attending or chief), from CLAIMED or DRAFTED. */
int wl_sign(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, const char *report_id, int64_t now,
            wl_task *out);
/* A reviewer sends the draft back to its resident (claimed by them again). */
int wl_return(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, const char *why, int64_t now);
/* After signing: a new version claimed by r; the signed one stays. */
int wl_addendum(wl *w, MDB_txn *txn, uint64_t id, const wl_reader *r, int64_t now, wl_task *out);
int wl_cancel(wl *w, MDB_txn *txn, uint64_t id, const char *actor, const char *why, int64_t now);
/* Raise priority (triage: a suggested emergency becomes STAT). */
int wl_raise(wl *w, MDB_txn *txn, uint64_t id, wl_priority p, const char *why, int64_t now);
int wl_set_triage(wl *w, MDB_txn *txn, uint64_t id, const char *text, int64_t now);

/* Expire offers and lapsed leases (back to the front of their priority)
 * and escalate tasks about to breach their due time.  Returns changes. */
int wl_tick(wl *w, MDB_txn *txn, int64_t now);

/* Walks. */
int wl_list(wl *w, MDB_txn *txn, int (*cb)(void *ctx, const wl_task *t), void *ctx);        /* all, by id */
int wl_list_queue(wl *w, MDB_txn *txn, int (*cb)(void *ctx, const wl_task *t), void *ctx);  /* offer order */
int wl_held_by(wl *w, MDB_txn *txn, const char *reader, int (*cb)(void *ctx, const wl_task *t), void *ctx);

typedef struct wl_event {
    int64_t  at_ms;
    uint8_t  from, to;     /* wl_state */
    char     actor[WL_ID_MAX];
    char     what[24];     /* "added", "offered", "claimed", "lease-lapsed", "released", ... */
    char     note[128];
} wl_event;
int wl_history(wl *w, MDB_txn *txn, uint64_t id, int (*cb)(void *ctx, const wl_event *e), void *ctx);

/* Qualification, exposed for the hub and tests. */
int wl_qualified(const wl_reader *r, const wl_task *t);

#endif

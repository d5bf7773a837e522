/* store_tasks.h — the reading worklist as the store runs it, in the hub's
 * environment (worklist.h holds the model).
 * Hub-private; used by the reader link, the HTTP API and `dxhub status`. */
#ifndef DXHUB_STORE_TASKS_H
#define DXHUB_STORE_TASKS_H

#include "hub/store.h"
#include "worklist/worklist.h"

/* Group commit: several reader requests in one write transaction, answered
 * after its one durable commit.  Each store_batch_* call is refused
 * (WL_ESTORE) once a storage error spoiled the batch; a refusal for any
 * other reason (WL_EEMPTY, WL_ENOTYOURS...) writes nothing, so the others
 * in the batch stand.  The calls below and the study reads return the task
 * (and its study when st is given, *has_st saying whether it was found) as
 * they will be once committed.  One batch at a time per thread, and no other
 * write transaction on that thread while it is open. */
typedef struct store_batch store_batch;
int  store_batch_begin(store *s, store_batch **out);
int  store_batch_commit(store_batch **b); /* durable, or an error and nothing of it kept; frees *b */
void store_batch_abort(store_batch **b);
int  store_batch_offer(store_batch *b, const wl_reader *r, int64_t now, wl_task *out, store_study *st, int *has_st);
int  store_batch_claim(store_batch *b, uint64_t id, const wl_reader *r, int64_t now, wl_task *out, store_study *st,
                       int *has_st);
int  store_batch_heartbeat(store_batch *b, const char *reader, int64_t now); /* leases kept */
int  store_batch_release(store_batch *b, uint64_t id, const char *reader, int64_t now);
int  store_batch_tick(store_batch *b, int64_t now);                        /* expiries, escalations */
/* Record an offer decided earlier on a view (wl_offer_task's refusals). */
int  store_batch_offer_task(store_batch *b, uint64_t id, const wl_reader *r, int64_t now);

/* A read snapshot of the worklist, to decide offers without the write
 * lock (so without waiting for a commit): the reader link sends an offer
 * at once and records it in a later batch.  Any thread; short-lived. */
typedef struct store_view store_view;
int  store_view_begin(store *s, store_view **out);
void store_view_end(store_view **v);
int  store_view_held(store_view *v, const char *reader); /* tasks held (wl_held_count) */
/* wl_pick, and the task's study (as store_batch_offer). */
int  store_view_pick(store_view *v, const wl_reader *r, const wl_skip *skip, int64_t now, wl_task *out, store_study *st,
                     int *has_st);
int  store_view_task(store_view *v, uint64_t id, wl_task *out);
uint64_t store_view_commit(const store_view *v); /* the last commit the snapshot shows */

/* The same, each in a transaction of its own. */
int store_task_offer(store *s, const wl_reader *r, int64_t now, wl_task *out);
int store_task_claim(store *s, uint64_t id, const wl_reader *r, int64_t now, wl_task *out);
int store_task_heartbeat(store *s, const char *reader, int64_t now);           /* leases kept */
int store_task_release(store *s, uint64_t id, const char *reader, int64_t now);
int store_task_tick(store *s, int64_t now);                                     /* expiries, escalations */
int store_task_get(store *s, uint64_t id, wl_task *out);
int store_task_walk(store *s, int queue_order, int (*cb)(void *ctx, const wl_task *t), void *ctx);
int store_task_history(store *s, uint64_t id, int (*cb)(void *ctx, const wl_event *e), void *ctx);
/* Every task by id, with the time it was last signed (its history's
 * "signed" event; 0 for a task not signed), all in one read transaction. */
int store_task_walk_signed(store *s, int (*cb)(void *ctx, const wl_task *t, int64_t signed_ms), void *ctx);

typedef struct store_submission store_submission;
struct store_submission {
    uint64_t         task;
    const wl_reader *reader;
    const char      *action;     /* draft, sign, return, addendum (task: the signed one) */
    const char      *report_id;
    const char      *reason;     /* return: why, for the resident (NULL: none) */
    const void      *report;  size_t report_len;  /* exactly the bytes signed */
    const void      *sig;     size_t sig_len;
    const void      *chain;   size_t chain_len;
    /* Checks before anything is stored (signature, chain, digests): 0 to
     * accept, else a negative code with the reason in why. */
    int (*verify)(void *ctx, const wl_task *t, const store_submission *sub, char *why, size_t why_len);
    void            *verify_ctx;
};
/* Apply the action and store the report, signature and chain with it,
 * durably, in one transaction.  why gets the reason of a refusal. */
int store_task_submit(store *s, const store_submission *sub, int64_t now, wl_task *out, char *why, size_t why_len);
/* The tasks reader holds (claimed or drafted), with the reason of the
 * last return when a reviewer sent it back (returned[0] == 0 otherwise). */
int store_task_held(store *s, const char *reader,
                    int (*cb)(void *ctx, const wl_task *t, const char *returned, const char *returned_by), void *ctx);
/* Why task id was last returned and by whom, "" when its last change was
 * not a return.  0, or a negative code. */
int store_task_returned(store *s, uint64_t id, char *why, size_t why_len, char *by, size_t by_len);
/* A stored report blob ("ID", "ID.sig", "ID.chain"): its size, copying
 * up to len bytes into buf (buf may be NULL to ask the size). */
long store_report_get(store *s, const char *key, void *buf, size_t len);

#endif

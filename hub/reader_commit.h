/* reader_commit.h — the reader link's committer: a thread that applies the
 * worklist's writes (offers already sent, CLAIM, HEARTBEAT, RELEASE, the
 * tick) in group-committed LMDB write transactions, so the fsync of each
 * commit never holds up the thread that answers READY.  It hands every
 * request back with its answer once the transaction that applied it is
 * durable (or failed: the answer then says so).  Hub-private
 * (reader_link.c). */
#ifndef DXHUB_READER_COMMIT_H
#define DXHUB_READER_COMMIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>
#include "hub/store.h"
#include "worklist/worklist.h"

typedef enum rc_kind {
    RC_OFFER,     /* record an offer the link has sent: no answer */
    RC_CLAIM,     /* answer CLAIMED (task, lease) or NACK */
    RC_HEARTBEAT, /* answer HEARTBEAT (leases kept) */
    RC_RELEASE,   /* answer OK or NACK */
    RC_TICK,      /* expiries and escalations: no answer */
} rc_kind;

typedef struct rc_op {
    rc_kind     kind;
    int         conn;     /* the reader's connection slot in the link, -1 none */
    uint64_t    task;
    int64_t     now;
    uint64_t    queued_us; /* set by reader_commit_push (monotonic): for the log line at stop */
    wl_reader   reader;
    zmq_msg_t   route;    /* whom to answer; initialised for every op */
    json_t     *req;      /* the request's "req" to echo, or NULL (owned) */
    /* Set by the committer: */
    int         rc;       /* the action's result (a count for HEARTBEAT, TICK) */
    const char *cmd;      /* the answer's command, NULL for none */
    json_t     *answer;   /* its header (owned) */
    char       *text;     /* or its header as JSON text, "req" in it (owned; CLAIMED) */
    size_t      text_len;
} rc_op;

typedef struct rc_list {
    rc_op *v;
    size_t n, cap;
} rc_list;
/* Close every op's route and free its JSON; n becomes 0. */
void rc_list_clear(rc_list *l);
void rc_list_free(rc_list *l);

typedef struct reader_commit reader_commit;

/* The thread writes 1 to wake_fd (an eventfd) whenever ops are done. */
int  reader_commit_start(store *st, int wake_fd, reader_commit **out);
/* Queue op; its route and req move to the committer (op is left without
 * them).  -ENOSPC when too many are waiting (the caller refuses the
 * request: memory stays bounded). */
int  reader_commit_push(reader_commit *c, rc_op *op);
/* Ops applied and committed since the last call, in the order pushed,
 * appended to out. */
void reader_commit_take(reader_commit *c, rc_list *out);
/* Apply and commit what is queued, end the thread, and append the ops
 * not taken yet to rest (to answer them). */
void reader_commit_stop(reader_commit **c, rc_list *rest);

#endif

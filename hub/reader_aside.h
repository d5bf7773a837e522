/* reader_aside.h — the reader link's questions that may wait on other
 * hubs (PRIORS asks each peer, PRIOR may fetch a peer's report, STUDY and
 * FETCH with "hub" read a peer's exam), answered
 * by a few threads of their own.  A peer that does not answer keeps its
 * asker waiting up to --peer-timeout-ms; on the link's thread it kept
 * every reader waiting (offers, claims, heartbeats, fetches) as long.
 * Hub-private (reader_link.c). */
#ifndef DXHUB_READER_ASIDE_H
#define DXHUB_READER_ASIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>
#include "hub/proto.h"
#include "hub/reader_link.h"
#include "hub/reader_queries.h"
#include "worklist/worklist.h"

/* Questions asked at once, waiting for an answer, at most: beyond, the
 * link refuses ("busy") rather than grow without bound. */
#define ASIDE_MAX_WAITING 256

typedef struct aside_job {
    zmq_msg_t     route;   /* whom to answer */
    json_t       *req;     /* the request's "req" to echo, or NULL (owned) */
    bool          failed;  /* NACK answer.why, else answer */
    reader_answer answer;
} aside_job;

typedef struct reader_aside reader_aside;

/* Is m one of the questions answered aside (PRIORS, PRIOR, and STUDY or
 * FETCH of a peer hub's prior)? */
bool reader_aside_wants(const proto_msg *m);
/* The threads write 1 to wake_fd (an eventfd) whenever answers are ready.
 * cfg must outlive the threads. */
int  reader_aside_start(const reader_link_config *cfg, int wake_fd, reader_aside **out);
/* Ask m on reader r's behalf; m's route and header are copied.  -ENOSPC
 * when ASIDE_MAX_WAITING are waiting, -ENOMEM. */
int  reader_aside_push(reader_aside *a, const proto_msg *m, const wl_reader *r);
/* The answered jobs, in *out (malloc'd, each freed with aside_job_free,
 * then the array with free); returns how many. */
size_t reader_aside_take(reader_aside *a, aside_job **out);
void aside_job_free(aside_job *j);
/* Let the questions being answered finish, drop those not started, end
 * the threads; the answers not taken yet are left in *rest (as
 * reader_aside_take; rest may be NULL to drop them), how many returned. */
size_t reader_aside_stop(reader_aside **a, aside_job **rest);

#endif

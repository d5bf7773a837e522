/* reader_link.h — the hub's side of the reader protocol (hub.h):
 * offers tasks to connected readers by priority and qualification, keeps
 * their leases, streams study data, takes submitted reports.  Hub-private. */
#ifndef DXHUB_READER_LINK_H
#define DXHUB_READER_LINK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "hub/metrics.h"
#include "hub/readers.h"
#include "hub/keys.h"
#include "hub/store.h"
#include "hub/store_tasks.h"

typedef struct reader_link reader_link;

typedef struct reader_link_config {
    void        *zctx;
    const char  *bind;
    uint16_t     port;         /* 0: ephemeral */
    const char  *secret_key;   /* hub's CURVE secret */
    store       *st;
    readers     *profiles;
    hub_metrics *metrics;
    /* Report verification before anything is stored (signed-report issue). */
    int        (*verify)(void *ctx, const wl_task *t, const store_submission *sub, char *why, size_t why_len);
    void        *verify_ctx;
    /* After a report is stored (to send it back to the clinic). */
    void       (*on_report)(void *ctx, const wl_task *t, const char *report_id);
    void        *on_report_ctx;
    /* A reader's priors (PRIORS, PRIOR; api_reader_priors/_report), NULL: not configured.
     * why: what the trail adds when not the reader's own look (NULL). */
    int        (*priors)(void *ctx, const char *patient, const char *who, const char *why, char **out, size_t *len);
    int        (*prior_report)(void *ctx, const char *hub, const char *id, const char *who, char **out, size_t *len);
    /* Bytes of an instance a peer hub holds (STUDY and FETCH of a peer's
     * prior; api_reader_peer_fetch): as peers_fetch.  NULL: none. */
    int        (*peer_fetch)(void *ctx, const char *hub, const char *sop, uint64_t offset, size_t len, const char *who,
                             void *buf, size_t *got, uint64_t *total, char *why, size_t whylen);
    void        *lookup_ctx;
    struct handshake_watch *handshakes; /* told of the port's failed handshakes; NULL: nobody */
    allowlist   *allow;        /* a key revoked after its handshake is refused (revoked.h); NULL: no check */
    /* A reader's read of patient data put on the audit trail before its
     * answer leaves (serve: queued with the API's reads, one fsync for
     * many): 0, or <0 and the data is withheld.  NULL: store_audit, one
     * durable commit per record. */
    int        (*audit)(void *ctx, const char *who, const char *what, const char *study, const char *detail);
    void        *audit_ctx;
} reader_link_config;

int      reader_link_start(const reader_link_config *cfg, reader_link **out, char *err, size_t errlen);
uint16_t reader_link_port(const reader_link *l);
void     reader_link_stop(reader_link **l);
/* New tasks (or tasks back in line): offer them now.  Any thread. */
void     reader_link_kick(reader_link *l);

/* A task as JSON (the reader protocol's and the HTTP API's task object). */
json_t  *task_to_json(const wl_task *t, const store_study *st);

#endif

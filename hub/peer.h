/* peer.h — lookups across the consortium's hubs (DESIGN.md §5): ZeroMQ
 * with CURVE between hubs.  Hub-private.
 *
 * Server: `dxhub serve --peer-port N` binds a ROUTER (CURVE, ZAP); only
 * keys with a role "peer:<hub>" in the allow-list are answered.  Client:
 * the hubs in DATA/peers.conf, one a line,
 *
 *     NAME tcp://HOST:PORT PUBLIC-KEY      (a Z85 key, or a .pub file; NOW,NEXT
 *                                           while that hub changes keypairs)
 *
 * reached with a DEALER per request that is kept for the next one when it
 * answered in time (our hub's own keypair is the client key, so the other
 * hub allows our hub.pub as peer:<our name>).
 *
 * Messages (proto.h framing, header JSON with "v" and a request "id"):
 *   LOOKUP  {patient, since, type, asking, link_prefix} → ANSWER + JSON
 *           ({"hub", "exams": [...]}: that hub's own exams only, links
 *           under link_prefix, so that they lead back through the asking
 *           hub)
 *   REPORT  {report, asking, link_prefix} → ANSWER + JSON (GET /reports/{id})
 *   FETCH   {sop, offset, length, asking} → DATA {size} + bytes (at most
 *           PEER_FETCH_MAX a request)
 *   PREVIEW {sop, asking}               → DATA {size} + PNG
 *   anything else, or malformed         → ERROR {error, to}; audited
 * Every answer is audited at the answering hub as who "peer:<hub>" with
 * the asking facility in the detail.
 *
 * A peer that does not answer within the timeout is reported
 * ("unreachable") and never delays the local answer beyond it; it is not
 * asked again for 15 s (peer.c, PEER_QUIET_MS), each answer meanwhile
 * saying so, and peers_reload forgets that.
 */
#ifndef DXHUB_PEER_H
#define DXHUB_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hub/keys.h"
#include "hub/metrics.h"
#include "hub/store.h"

#define PEER_NAME_MAX   64
#define PEERS_MAX       64
#define PEER_FETCH_MAX  (1u << 20)
#define PEER_ANSWER_MAX (64u << 20) /* a lookup answer from a peer */

/* One line of peers.conf. */
typedef struct peer_def {
    char name[PEER_NAME_MAX];
    char endpoint[256];
    char pub[KEY_Z85_LEN + 1];
    char pub_next[KEY_Z85_LEN + 1]; /* "" or its next key: tried when a handshake with the other fails */
} peer_def;

/* Reads peers.conf (peer_conf.c) into defs[max]: 0 with *n entries (a
 * missing file, or NULL path: none), or -EINVAL, -E2BIG, -errno with
 * "PATH:LINE: reason" in err.  A name listed twice is refused. */
int peer_conf_load(const char *path, peer_def *defs, size_t max, size_t *n, char *err, size_t errlen);

typedef struct peer_lookup_q {
    const char *patient_id, *type, *asking, *link_prefix;
    int64_t     since_ms;
} peer_lookup_q;

/* What this hub answers, provided by the HTTP API (serve.c wires them).
 * Each returns 0 with malloc'd *out (the caller frees), or a negative
 * code with why; -ENOENT for what does not exist. */
typedef struct peer_handlers {
    int (*lookup)(void *ctx, const peer_lookup_q *q, const char *who, char **out, size_t *len);
    int (*report)(void *ctx, const char *id, const char *link_prefix, const char *who, char **out, size_t *len);
    int (*preview)(void *ctx, const char *sop, const char *who, char **out, size_t *len, char *why, size_t whylen);
    /* An access to patient data the link itself serves (FETCH): 0, or
     * negative when the audit trail cannot take it (data withheld). */
    int (*audit)(void *ctx, const char *who, const char *what, const char *study, const char *detail);
    void *ctx;
} peer_handlers;

typedef struct peer_config {
    void          *zctx;
    const char    *bind;        /* NULL: 127.0.0.1 */
    int            port;        /* -1: no server; 0: ephemeral */
    const char    *public_key, *secret_key; /* this hub's CURVE keypair (Z85) */
    const char    *peers_file;  /* NULL or missing: no peers to ask */
    const char    *self_name;   /* this hub's --name, for what a refusing peer must allow; NULL: "NAME" */
    int            timeout_ms;  /* per request to a peer; 0: 2000 */
    store         *st;
    hub_metrics   *metrics;
    peer_handlers  handlers;
    struct handshake_watch *handshakes; /* told of the port's failed handshakes; NULL: nobody */
    allowlist     *allow;       /* a key revoked after its handshake is refused (revoked.h); NULL: no check */
} peer_config;

typedef struct peers peers;

int      peers_start(const peer_config *cfg, peers **out, char *err, size_t errlen);
uint16_t peers_port(const peers *p);
/* Re-read peers_file (SIGHUP); the old list stays on error. */
int      peers_reload(peers *p, char *err, size_t errlen);
size_t   peers_count(peers *p);
/* Stop answering other hubs (the server thread); asking still works. */
void     peers_quiesce(peers *p);
void     peers_stop(peers **p); /* NULL-safe; NULLs *p */

/* How each peer hub in peers.conf answered when last asked (for /metrics):
 * asked (since start or the last SIGHUP), answered (the last call got an
 * answer, "no such" included), quiet (not asked now: it gave no answer
 * less than 15 s ago), answer_ms (wall clock of its last answer; 0 none).
 * Fills out[max]; returns how many. */
typedef struct peer_state {
    char    name[PEER_NAME_MAX];
    bool    asked, answered, quiet;
    int64_t answer_ms;
} peer_state;
size_t peers_states(peers *p, peer_state *out, size_t max);

/* --- asking the other hubs ------------------------------------------------------ */

typedef struct peer_answer {
    char   name[PEER_NAME_MAX];
    int    status;       /* 0 answered; negative: see error */
    char   error[200];   /* "no connection within 2000 ms", "ERROR: ..." */
    char  *body;         /* the answer's JSON (status 0) */
    size_t len;
} peer_answer;

/* LOOKUP at every peer at once (link_prefix per peer is
 * "/api/v1/peers/<name>"); returns once each answered or timed out.
 * *out (n entries, peers.conf order) is freed with peer_answers_free. */
int  peers_lookup_all(peers *p, const peer_lookup_q *q, peer_answer **out, size_t *n);
void peer_answers_free(peer_answer *a, size_t n);

/* REPORT / PREVIEW at one peer: 0 with malloc'd *out, -ENOENT (no such
 * peer or the peer has none), -ETIMEDOUT, or -EPROTO with why. */
int peers_report(peers *p, const char *name, const char *id, const char *asking, char **out, size_t *len, char *why,
                 size_t whylen);
int peers_preview(peers *p, const char *name, const char *sop, const char *asking, char **out, size_t *len, char *why,
                  size_t whylen);
/* FETCH: up to len (<= PEER_FETCH_MAX) bytes of the instance's stored
 * file from offset into buf; *got and the file's *total size.  Codes as
 * above. */
int peers_fetch(peers *p, const char *name, const char *sop, uint64_t offset, size_t len, const char *asking,
                void *buf, size_t *got, uint64_t *total, char *why, size_t whylen);

#endif

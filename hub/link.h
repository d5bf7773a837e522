/* link.h — the edge↔hub link over ZeroMQ (DESIGN.md §5).  Hub-private.
 *
 *   edge (DEALER, CURVE client)              hub (ROUTER, CURVE server + ZAP)
 *   HELLO {facility}                    →
 *                                       ←    WELCOME {role, window}
 *   OFFER {xfer, sop, study, digest, size, priority}
 *                                       ←    HAVE {xfer}            already durable: done
 *                                       ←    SEND {xfer, offset, limit}
 *   CHUNK {xfer, offset} + bytes        →    (only below limit: the credit)
 *                                       ←    CREDIT {xfer, limit}    as chunks are written
 *   COMMIT {xfer, digest}               →
 *                                       ←    ACK {xfer, result} after the LMDB commit
 *                                       ←    NACK {xfer, reason, retry}
 *   STUDY_DONE {xfer, study, expected, priority, referral, note}
 *                                       ←    ACK {xfer}
 *                                       ←    DELIVER {id, kind} + bytes (reports, alerts)
 *   DELIVERED {id}                      →
 *   READ {id, by, at}                   →    a person at the clinic read alert id
 *                                       ←    READ_OK {id}           (told again at each PING until then)
 *   PING                                →    keep-alive, every 5 s
 *                                       ←    PONG
 *   anything malformed or not allowed   ←    ERROR {error, to}
 *   a message under a key revoked since ←    ERROR {error, to, revoked: true}
 *   the connection was made
 *
 * The hub keeps partial transfers in files named by facility and digest,
 * so a dropped link (or a restarted hub) resumes at the bytes it has.
 */
#ifndef DXHUB_LINK_H
#define DXHUB_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hub/keys.h"
#include "hub/metrics.h"
#include "hub/store.h"

#define LINK_WINDOW (4 * 256 * 1024) /* bytes of credit ahead of what the hub has written */

typedef struct link_hub link_hub;

typedef struct link_hub_config {
    void        *zctx;          /* ZeroMQ context with the ZAP handler running */
    const char  *bind;          /* address */
    uint16_t     port;          /* 0: ephemeral */
    const char  *secret_key;    /* hub's CURVE secret (Z85) */
    store       *st;
    const char  *incoming_dir;  /* partial transfers */
    hub_metrics *metrics;
    int          workers;       /* ingest threads (0: 4) */
    int          redeliver_ms;  /* outbox messages a connected edge has not acknowledged
                                   are sent again at its keep-alive after this (0: 30 s) */
    struct handshake_watch *handshakes; /* told of the port's failed handshakes; NULL: nobody */
    allowlist   *allow;         /* a key revoked after its handshake is refused (revoked.h); NULL: no check */
} link_hub_config;

int      link_hub_start(const link_hub_config *cfg, link_hub **out, char *err, size_t errlen);
uint16_t link_hub_port(const link_hub *l);
void     link_hub_stop(link_hub **l);
/* Wake the link so it delivers outbox messages for connected facilities. */
void     link_hub_kick(link_hub *l);

/* A clinic gateway as the hub knows it: heard on the edge link since the
 * hub started, or only allowed (last_seen_ms 0). */
#define LINK_HEARD_MS 20000 /* a gateway pings every 5 s: silent longer, it is not connected */
typedef struct link_clinic {
    char    facility[64];
    int64_t last_seen_ms; /* wall clock of its last message; 0: not since the hub started */
    bool    connected;    /* heard within LINK_HEARD_MS */
} link_clinic;
/* The gateways heard since the hub started, up to max, into out; returns
 * how many.  Any thread. */
int      link_hub_clinics(link_hub *l, link_clinic *out, int max);

#endif

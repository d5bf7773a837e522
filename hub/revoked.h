/* revoked.h — messages on a connection whose key was revoked after its
 * handshake.
 *
 * ZAP judges a CURVE key once, when the connection is made, and a bound
 * ROUTER socket cannot close one peer's connection: without this, a
 * workstation or gateway whose key is revoked (a stolen laptop) kept its
 * access until it next reconnected.  So each server checks every message's
 * key (proto_msg.key, from hub/zap.c's metadata) against the allow-list as
 * it stands now, and refuses one whose key no longer holds its role.  A
 * verdict is cached per key until the allow-list is reloaded.
 * Hub-private; one revoked_watch per server thread. */
#ifndef DXHUB_REVOKED_H
#define DXHUB_REVOKED_H

#include <stdbool.h>
#include <stdint.h>
#include "hub/keys.h"
#include "hub/log.h"
#include "hub/metrics.h"
#include "hub/proto.h"
#include "hub/store.h"

#define REVOKED_REASON "this key was revoked at the hub (dxhub allow --revoke): ask the hub's operator for a new one"

#define REVOKED_CACHE 64
#define REVOKED_TOLD  8

typedef struct revoked_watch {
    allowlist   *allow;  /* NULL: no check (tests without an allow-list) */
    const char  *port;   /* "readers", "link", "peer link": for the log */
    store       *st;     /* audit; NULL: none */
    hub_metrics *metrics;
    uint64_t     gen;    /* the allow-list generation the cache holds verdicts of */
    struct {
        char key[KEY_Z85_LEN + 1], role[64];
    } allowed[REVOKED_CACHE];
    log_repeat   told[REVOKED_TOLD]; /* by role: logged and audited once a minute */
} revoked_watch;

/* True when m must be refused with REVOKED_REASON: its key no longer
 * holds its role.  Counted as an auth error; logged and audited (what
 * "revoked-key") once a minute per role. */
bool revoked_refuse(revoked_watch *w, const proto_msg *m);

/* The answer to such a message on router: ERROR with REVOKED_REASON,
 * "revoked": true (a gateway then reconnects, to be refused at the
 * handshake and say so), and the request's "req" or "id" echoed. */
void revoked_answer(void *router, proto_msg *m);

#endif

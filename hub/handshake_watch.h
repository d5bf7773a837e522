/* handshake_watch.h — the hub's side of a failed CURVE handshake.
 *
 * A clinic gateway, reader or peer hub holding another hub's public key
 * (a reinstalled hub has a new one) cannot even be decrypted here, so the
 * ZAP handler never hears of it: the clinic saw "handshake failed" and the
 * hub's log said nothing.  One thread reads the monitor events of the
 * hub's ROUTER ports and logs each failed handshake with the port and the
 * client's address (once a minute per address), counts it as
 * dxhub_errors_total{kind="auth"} and audits it.  Hub-private. */
#ifndef DXHUB_HANDSHAKE_WATCH_H
#define DXHUB_HANDSHAKE_WATCH_H

#include "hub/metrics.h"
#include "hub/store.h"

typedef struct handshake_watch handshake_watch;

/* NULL on failure (the hub runs without it). */
handshake_watch *handshake_watch_new(void *zctx, hub_metrics *m, store *st);
/* Watch router (before its owner's thread uses it); port_name: "edge port". */
int  handshake_watch_add(handshake_watch *w, void *router, const char *port_name);
/* Start reading events (after every add). */
int  handshake_watch_run(handshake_watch *w);
/* Before zmq_ctx_term; NULL-safe. */
void handshake_watch_stop(handshake_watch **w);

#endif

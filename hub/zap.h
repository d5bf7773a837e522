/* zap.h — the ZeroMQ authentication handler (ZAP, RFC 27) for CURVE.
 * Every CURVE server socket of the process is authenticated here against
 * the allow-list; an accepted peer's role ("edge:clinic1") becomes the
 * ZeroMQ User-Id of each message it sends, which the protocol code reads
 * to decide what the peer may do.  Unknown keys are refused and reported
 * through on_refused (the caller audits them). */
#ifndef DXHUB_ZAP_H
#define DXHUB_ZAP_H

#include "hub/keys.h"

typedef struct zap_handler zap_handler;
typedef void (*zap_refused_fn)(void *ctx, const char *peer_address, const char *key_z85);

/* Binds inproc://zeromq.zap.01 on zctx and serves it on a thread. */
int  zap_start(void *zctx, allowlist *allow, zap_refused_fn on_refused, void *ctx, zap_handler **out);
void zap_stop(zap_handler **z);

#endif

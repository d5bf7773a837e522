/* proto.h — dxhub's ZeroMQ message framing (DESIGN.md §5).  Hub-private.
 *
 * A message is multipart: [routing id (ROUTER side only)] COMMAND
 * HEADER [DATA...].  COMMAND is 1-15 upper-case ASCII letters/underscore;
 * HEADER is a JSON object carrying "v": PROTO_VERSION; DATA frames are raw
 * bytes (chunks).  Everything is bounded: at most PROTO_MAX_FRAMES data
 * frames, a header of at most PROTO_MAX_HEADER bytes, a data frame of at
 * most PROTO_MAX_DATA bytes.  A message that breaks a rule is consumed
 * whole and reported as malformed, with the reason; the caller answers
 * ERROR and audits, never crashes.
 */
#ifndef DXHUB_PROTO_H
#define DXHUB_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define PROTO_VERSION     1
#define PROTO_MAX_FRAMES  4
#define PROTO_MAX_HEADER  (64 * 1024)
#define PROTO_MAX_DATA    (4 * 1024 * 1024)
/* A frame bigger than this is not even read: libzmq drops the peer's
 * connection (ZMQ_MAXMSGSIZE) instead of allocating it.  Twice the data
 * limit, so a frame just over it still gets an ERROR naming the limit. */
#define PROTO_MAX_WIRE_FRAME (2 * PROTO_MAX_DATA)
#define PROTO_CHUNK       (256 * 1024) /* link chunk: small enough to interleave transfers */

typedef struct proto_msg {
    zmq_msg_t route;         /* ROUTER: the peer's routing id */
    bool      has_route;
    char      cmd[16];
    json_t   *hdr;           /* owned; NULL when malformed */
    zmq_msg_t data[PROTO_MAX_FRAMES];
    size_t    n_data;
    char      role[64];      /* ZAP User-Id of the sender ("" when none) */
    char      peer[64];      /* Peer-Address */
    char      key[41];       /* the sender's CURVE public key (Z85), as ZAP approved it ("" when none) */
} proto_msg;

enum { PROTO_OK = 0, PROTO_MALFORMED = 1 };

/* Receive one message (non-blocking when flags has ZMQ_DONTWAIT).
 * Returns PROTO_OK, PROTO_MALFORMED (m->cmd may be set, err says why and the
 * routing id is kept so the caller can answer), or -errno (EAGAIN, ETERM). */
int  proto_recv(void *sock, bool router, int flags, proto_msg *m, char *err, size_t errlen);
void proto_msg_close(proto_msg *m);

/* Send COMMAND + header (its "v" is added; the reference is NOT stolen)
 * + optional data.  route may be NULL (DEALER side). */
int  proto_send(void *sock, zmq_msg_t *route, const char *cmd, json_t *hdr, const void *data, size_t len);
/* The same with the header already JSON text (it must hold "v":1). */
int  proto_send_text(void *sock, zmq_msg_t *route, const char *cmd, const char *hdr, size_t len);
/* Send ERROR {"v":1,"error":reason,"to":cmd}. */
int  proto_send_error(void *sock, zmq_msg_t *route, const char *about_cmd, const char *reason);

/* Header accessors with defaults (no aborts on missing/mistyped fields). */
const char *proto_str(const proto_msg *m, const char *key);        /* NULL when absent or not a string */
long long   proto_int(const proto_msg *m, const char *key, long long dflt);
bool        proto_is_hex(const char *s, size_t len);                /* exactly len hex digits */

/* Socket setup shared by every role: CURVE, TCP_NODELAY-equivalent
 * settings, heartbeats so a dead link is noticed in seconds. */
int  proto_curve_server(void *sock, const char *secret_z85);
int  proto_curve_client(void *sock, const char *public_z85, const char *secret_z85, const char *server_public_z85);
void proto_tune(void *sock);
/* The connection events of a client socket, read off a PAIR socket
 * (zmq_socket_monitor): the CURVE handshake's outcome above all, so a
 * refused key is told from a hub that is not there.  events: ZMQ_EVENT_*
 * bits.  NULL when the monitor cannot be set up (the caller goes on
 * without it).  proto_monitor_next: 1 and the event (value: its number,
 * the ZAP status for HANDSHAKE_FAILED_AUTH), 0 when none is waiting. */
void *proto_monitor_open(void *zctx, void *sock, int events);
/* Stops sock's monitor, then closes *mon (NULLs it; either may be NULL).
 * In this order: an event libzmq's I/O thread sends to a monitor whose
 * reader is gone blocks that thread, and with it every socket of the
 * context, for good.  Call it from the thread that owns sock, before
 * closing sock. */
void  proto_monitor_close(void *sock, void **mon);
int   proto_monitor_next(void *mon, uint16_t *event, uint32_t *value);
/* The same, with the event's endpoint: for a bound socket, the client's
 * address without the "tcp://" and its port ("10.0.0.5"); "" if none. */
int   proto_monitor_next_from(void *mon, uint16_t *event, uint32_t *value, char *addr, size_t addrlen);

/* A CURVE ROUTER for a hub port: tuned, ROUTER_MANDATORY, bound to
 * tcp://bind:port (port 0: ephemeral); *port_out gets the port bound.
 * NULL on failure, with the reason in err. */
void *proto_router_listen(void *zctx, const char *bind, uint16_t port, const char *secret_z85, uint16_t *port_out,
                          char *err, size_t errlen);

#endif

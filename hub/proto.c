/* proto.c — receiving and sending dxhub protocol messages safely. */
#include <ctype.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/proto.h"

static void drain(void *sock)
{
    int more = 1;
    while (more) {
        zmq_msg_t junk;
        zmq_msg_init(&junk);
        if (zmq_msg_recv(&junk, sock, 0) < 0) {
            zmq_msg_close(&junk);
            return;
        }
        more = zmq_msg_more(&junk);
        zmq_msg_close(&junk);
    }
}

static int fail(proto_msg *m, int more, void *sock, char *err, size_t errlen, const char *why)
{
    if (more)
        drain(sock);
    snprintf(err, errlen, "%s", why);
    if (m->hdr) {
        json_decref(m->hdr);
        m->hdr = NULL;
    }
    return PROTO_MALFORMED;
}

int proto_recv(void *sock, bool router, int flags, proto_msg *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (router) {
        zmq_msg_init(&m->route);
        if (zmq_msg_recv(&m->route, sock, flags) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&m->route);
            return -e;
        }
        m->has_route = true;
        if (!zmq_msg_more(&m->route))
            return fail(m, 0, sock, err, errlen, "empty message");
        flags &= ~ZMQ_DONTWAIT;
    }
    if (zmq_msg_recv(&f, sock, flags) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&f);
        if (m->has_route)
            zmq_msg_close(&m->route);
        m->has_route = false;
        return -e;
    }
    const char *role = zmq_msg_gets(&f, "User-Id");
    const char *peer = zmq_msg_gets(&f, "Peer-Address");
    snprintf(m->role, sizeof m->role, "%s", role ? role : "");
    snprintf(m->peer, sizeof m->peer, "%s", peer ? peer : "");
    const char *key = zmq_msg_gets(&f, "X-Key"); /* hub/zap.c's metadata */
    snprintf(m->key, sizeof m->key, "%s", key ? key : "");
    int more = zmq_msg_more(&f);
    size_t n = zmq_msg_size(&f);
    const char *d = zmq_msg_data(&f);
    bool ok = n > 0 && n < sizeof m->cmd;
    for (size_t i = 0; ok && i < n; i++)
        ok = isupper((unsigned char)d[i]) || d[i] == '_';
    if (ok) {
        memcpy(m->cmd, d, n);
        m->cmd[n] = '\0';
    }
    zmq_msg_close(&f);
    if (!ok)
        return fail(m, more, sock, err, errlen, "command frame is not 1-15 upper-case letters");
    if (!more)
        return fail(m, 0, sock, err, errlen, "header frame missing");
    zmq_msg_init(&f);
    zmq_msg_recv(&f, sock, 0);
    more = zmq_msg_more(&f);
    if (zmq_msg_size(&f) > PROTO_MAX_HEADER) {
        zmq_msg_close(&f);
        return fail(m, more, sock, err, errlen, "header frame too large");
    }
    json_error_t je;
    m->hdr = json_loadb(zmq_msg_data(&f), zmq_msg_size(&f), JSON_REJECT_DUPLICATES, &je);
    zmq_msg_close(&f);
    if (!m->hdr || !json_is_object(m->hdr))
        return fail(m, more, sock, err, errlen, "header is not a JSON object");
    json_t *v = json_object_get(m->hdr, "v");
    if (!json_is_integer(v) || json_integer_value(v) != PROTO_VERSION)
        return fail(m, more, sock, err, errlen, "unsupported protocol version (\"v\" must be 1)");
    while (more) {
        if (m->n_data == PROTO_MAX_FRAMES)
            return fail(m, more, sock, err, errlen, "too many data frames");
        zmq_msg_t *df = &m->data[m->n_data];
        zmq_msg_init(df);
        zmq_msg_recv(df, sock, 0);
        more = zmq_msg_more(df);
        m->n_data++;
        if (zmq_msg_size(df) > PROTO_MAX_DATA)
            return fail(m, more, sock, err, errlen, "data frame too large");
    }
    return PROTO_OK;
}

void proto_msg_close(proto_msg *m)
{
    if (m->has_route)
        zmq_msg_close(&m->route);
    for (size_t i = 0; i < m->n_data; i++)
        zmq_msg_close(&m->data[i]);
    if (m->hdr)
        json_decref(m->hdr);
    memset(m, 0, sizeof *m);
}

/* The ROUTER's routing frame (a copy: the caller keeps route). */
static int send_route(void *sock, zmq_msg_t *route)
{
    zmq_msg_t r;
    zmq_msg_init(&r);
    zmq_msg_copy(&r, route);
    if (zmq_msg_send(&r, sock, ZMQ_SNDMORE) < 0) {
        zmq_msg_close(&r);
        return -zmq_errno();
    }
    return 0;
}

int proto_send(void *sock, zmq_msg_t *route, const char *cmd, json_t *hdr, const void *data, size_t len)
{
    json_t *h = hdr ? hdr : json_object();
    json_object_set_new(h, "v", json_integer(PROTO_VERSION));
    char *text = json_dumps(h, JSON_COMPACT);
    if (!hdr)
        json_decref(h);
    if (!text)
        return -ENOMEM;
    int rc = 0;
    if (route)
        rc = send_route(sock, route);
    if (!rc && zmq_send(sock, cmd, strlen(cmd), ZMQ_SNDMORE) < 0)
        rc = -zmq_errno();
    if (!rc && zmq_send(sock, text, strlen(text), data ? ZMQ_SNDMORE : 0) < 0)
        rc = -zmq_errno();
    if (!rc && data && zmq_send(sock, data, len, 0) < 0)
        rc = -zmq_errno();
    free(text);
    return rc;
}

int proto_send_text(void *sock, zmq_msg_t *route, const char *cmd, const char *hdr, size_t len)
{
    int rc = route ? send_route(sock, route) : 0;
    if (rc)
        return rc;
    if (zmq_send(sock, cmd, strlen(cmd), ZMQ_SNDMORE) < 0 || zmq_send(sock, hdr, len, 0) < 0)
        return -zmq_errno();
    return 0;
}

int proto_send_error(void *sock, zmq_msg_t *route, const char *about_cmd, const char *reason)
{
    json_t *h = json_pack("{s:s,s:s}", "error", reason, "to", about_cmd ? about_cmd : "");
    int rc = proto_send(sock, route, "ERROR", h, NULL, 0);
    json_decref(h);
    return rc;
}

const char *proto_str(const proto_msg *m, const char *key)
{
    json_t *v = m->hdr ? json_object_get(m->hdr, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

long long proto_int(const proto_msg *m, const char *key, long long dflt)
{
    json_t *v = m->hdr ? json_object_get(m->hdr, key) : NULL;
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

bool proto_is_hex(const char *s, size_t len)
{
    if (!s || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

void proto_tune(void *sock)
{
    int linger = 0, hb_ivl = 2000, hb_ttl = 10000, hb_timeout = 6000, reconnect = 200, reconnect_max = 5000;
    int hwm = 1000;
    int64_t max_frame = PROTO_MAX_WIRE_FRAME; /* an authenticated peer's 2 GB frame is never allocated */
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
    zmq_setsockopt(sock, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof hb_ivl);
    zmq_setsockopt(sock, ZMQ_HEARTBEAT_TTL, &hb_ttl, sizeof hb_ttl);
    zmq_setsockopt(sock, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof hb_timeout);
    zmq_setsockopt(sock, ZMQ_RECONNECT_IVL, &reconnect, sizeof reconnect);
    zmq_setsockopt(sock, ZMQ_RECONNECT_IVL_MAX, &reconnect_max, sizeof reconnect_max);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
}

void *proto_monitor_open(void *zctx, void *sock, int events)
{
    static _Atomic unsigned long seq;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://dxhub-monitor-%lu", (unsigned long)++seq);
    if (zmq_socket_monitor(sock, ep, events) != 0)
        return NULL;
    void *mon = zmq_socket(zctx, ZMQ_PAIR);
    int linger = 0; /* events unread at close must not hold zmq_ctx_term */
    if (mon)
        zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof linger);
    if (mon && zmq_connect(mon, ep) != 0) {
        zmq_close(mon);
        mon = NULL;
    }
    if (!mon)
        zmq_socket_monitor(sock, NULL, 0);
    return mon;
}

void proto_monitor_close(void *sock, void **mon)
{
    if (sock)
        zmq_socket_monitor(sock, NULL, 0);
    if (mon && *mon)
        zmq_close(*mon);
    if (mon)
        *mon = NULL;
}

int proto_monitor_next(void *mon, uint16_t *event, uint32_t *value)
{
    return proto_monitor_next_from(mon, event, value, NULL, 0);
}

int proto_monitor_next_from(void *mon, uint16_t *event, uint32_t *value, char *addr, size_t addrlen)
{
    if (addr && addrlen)
        addr[0] = '\0';
    zmq_msg_t ev;
    zmq_msg_init(&ev);
    if (!mon || zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&ev);
        return 0;
    }
    *event = 0;
    *value = 0;
    if (zmq_msg_size(&ev) >= 6) {
        memcpy(event, zmq_msg_data(&ev), 2);
        memcpy(value, (const char *)zmq_msg_data(&ev) + 2, 4);
    }
    int more = zmq_msg_more(&ev);
    zmq_msg_close(&ev);
    while (more) { /* the endpoint frame */
        zmq_msg_t ep;
        zmq_msg_init(&ep);
        int got = zmq_msg_recv(&ep, mon, 0) >= 0;
        more = got && zmq_msg_more(&ep);
        if (got && addr && addrlen && !addr[0]) {
            size_t n = zmq_msg_size(&ep) < addrlen - 1 ? zmq_msg_size(&ep) : addrlen - 1;
            memcpy(addr, zmq_msg_data(&ep), n);
            addr[n] = '\0';
            if (!strncmp(addr, "tcp://", 6))
                memmove(addr, addr + 6, strlen(addr + 6) + 1);
            char *colon = strrchr(addr, ':');
            if (colon && colon > addr)
                *colon = '\0'; /* the client's own port says nothing */
        }
        zmq_msg_close(&ep);
    }
    return 1;
}

int proto_curve_server(void *sock, const char *secret_z85)
{
    int on = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &on, sizeof on) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_z85, 40) ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "dxhub", 5))
        return -zmq_errno();
    /* The ZAP handler (zap.c) must be bound on the context before this
     * socket binds: without one, libzmq would let any CURVE client in. */
    return 0;
}

int proto_curve_client(void *sock, const char *pub, const char *sec, const char *server_pub)
{
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_pub, 40) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, 40) || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, 40))
        return -zmq_errno();
    return 0;
}

void *proto_router_listen(void *zctx, const char *bind, uint16_t port, const char *secret_z85, uint16_t *port_out,
                          char *err, size_t errlen)
{
    void *r = zmq_socket(zctx, ZMQ_ROUTER);
    if (!r) {
        snprintf(err, errlen, "cannot create a ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    proto_tune(r);
    int mandatory = 1;
    zmq_setsockopt(r, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory);
    if (proto_curve_server(r, secret_z85) < 0) {
        snprintf(err, errlen, "CURVE setup failed: %s", zmq_strerror(zmq_errno()));
        zmq_close(r);
        return NULL;
    }
    char ep[128];
    if (port)
        snprintf(ep, sizeof ep, "tcp://%s:%u", bind, port);
    else
        snprintf(ep, sizeof ep, "tcp://%s:*", bind);
    if (zmq_bind(r, ep) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", ep, zmq_strerror(zmq_errno()));
        zmq_close(r);
        return NULL;
    }
    char last[128];
    size_t ll = sizeof last;
    zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, last, &ll);
    const char *colon = strrchr(last, ':');
    *port_out = colon ? (uint16_t)atoi(colon + 1) : port;
    return r;
}

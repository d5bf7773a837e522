/* zap.c — ZAP handler thread: CURVE client key → role, or refusal. */
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>
#include "hub/zap.h"

struct zap_handler {
    void          *sock;
    void          *zctx;
    allowlist     *allow;
    zap_refused_fn on_refused;
    void          *ctx;
    pthread_t      thread;
    volatile int   stop;
    int            wake_fd; /* eventfd: zap_stop wakes the thread at once */
};

static void send_str(void *s, const char *str, int more)
{
    zmq_send(s, str, strlen(str), more ? ZMQ_SNDMORE : 0);
}

/* RFC 27: version, request id, domain, address, identity, mechanism, credentials. */
static void handle(zap_handler *z)
{
    zmq_msg_t part[8];
    int n = 0, more = 1;
    while (more && n < 8) {
        zmq_msg_init(&part[n]);
        if (zmq_msg_recv(&part[n], z->sock, 0) < 0) {
            zmq_msg_close(&part[n]);
            break;
        }
        more = zmq_msg_more(&part[n]);
        n++;
    }
    while (more) { /* drain an oversized request */
        zmq_msg_t junk;
        zmq_msg_init(&junk);
        zmq_msg_recv(&junk, z->sock, 0);
        more = zmq_msg_more(&junk);
        zmq_msg_close(&junk);
    }
    if (n < 6)
        goto out;
    char reqid[64] = "", addr[64] = "", role[64] = "";
    size_t l = zmq_msg_size(&part[1]) < sizeof reqid - 1 ? zmq_msg_size(&part[1]) : sizeof reqid - 1;
    memcpy(reqid, zmq_msg_data(&part[1]), l);
    l = zmq_msg_size(&part[3]) < sizeof addr - 1 ? zmq_msg_size(&part[3]) : sizeof addr - 1;
    memcpy(addr, zmq_msg_data(&part[3]), l);
    int ok = 0;
    char key_z85[41] = "";
    if (n >= 7 && zmq_msg_size(&part[5]) == 5 && !memcmp(zmq_msg_data(&part[5]), "CURVE", 5) &&
        zmq_msg_size(&part[6]) == 32) {
        zmq_z85_encode(key_z85, zmq_msg_data(&part[6]), 32);
        ok = allowlist_role(z->allow, zmq_msg_data(&part[6]), role, sizeof role) == 0;
    }
    send_str(z->sock, "1.0", 1);
    zmq_send(z->sock, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
    send_str(z->sock, ok ? "200" : "400", 1);
    send_str(z->sock, ok ? "OK" : "key not in allow-list", 1);
    send_str(z->sock, ok ? role : "", 1);
    /* ZAP metadata: the key rides on every message of the connection
     * (zmq_msg_gets "X-Key"), so a key revoked later is known per message */
    uint8_t meta[64];
    size_t mlen = 0;
    if (ok) {
        static const char name[] = "X-Key";
        meta[mlen++] = (uint8_t)(sizeof name - 1);
        memcpy(meta + mlen, name, sizeof name - 1);
        mlen += sizeof name - 1;
        uint32_t vlen = KEY_Z85_LEN;
        for (int i = 3; i >= 0; i--)
            meta[mlen++] = (uint8_t)(vlen >> (8 * i));
        memcpy(meta + mlen, key_z85, KEY_Z85_LEN);
        mlen += KEY_Z85_LEN;
    }
    zmq_send(z->sock, meta, mlen, 0);
    if (!ok && z->on_refused)
        z->on_refused(z->ctx, addr, key_z85[0] ? key_z85 : "(not CURVE)");
    (void)reqid;
out:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

static void *zap_main(void *arg)
{
    zap_handler *z = arg;
    while (!z->stop) {
        zmq_pollitem_t it[2] = {{z->sock, 0, ZMQ_POLLIN, 0}, {NULL, z->wake_fd, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(it, 2, -1);
        if (rc < 0 && zmq_errno() == ETERM)
            break;
        if (rc > 0 && (it[0].revents & ZMQ_POLLIN))
            handle(z);
    }
    return NULL;
}

int zap_start(void *zctx, allowlist *allow, zap_refused_fn on_refused, void *ctx, zap_handler **out)
{
    zap_handler *z = calloc(1, sizeof *z);
    if (!z)
        return -ENOMEM;
    if ((z->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        int e = errno;
        free(z);
        return -e;
    }
    z->zctx = zctx;
    z->allow = allow;
    z->on_refused = on_refused;
    z->ctx = ctx;
    z->sock = zmq_socket(zctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (!z->sock || zmq_bind(z->sock, "inproc://zeromq.zap.01") != 0) {
        int e = zmq_errno();
        if (z->sock)
            zmq_close(z->sock);
        close(z->wake_fd);
        free(z);
        return -e;
    }
    if (pthread_create(&z->thread, NULL, zap_main, z) != 0) {
        zmq_close(z->sock);
        close(z->wake_fd);
        free(z);
        return -EAGAIN;
    }
    *out = z;
    return 0;
}

void zap_stop(zap_handler **zp)
{
    if (!zp || !*zp)
        return;
    zap_handler *z = *zp;
    z->stop = 1;
    uint64_t one = 1;
    if (write(z->wake_fd, &one, sizeof one) < 0) { /* a full counter wakes it as well */
    }
    pthread_join(z->thread, NULL);
    close(z->wake_fd);
    zmq_close(z->sock);
    free(z);
    *zp = NULL;
}

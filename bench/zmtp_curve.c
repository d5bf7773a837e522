/* zmtp_curve.c — a DEALER's side of ZMTP 3.1 with CURVE (zmtp_curve.h).
 * The wire, from the specifications (RFC 23 ZMTP 3.0, RFC 26 CurveZMQ,
 * RFC 37 ZMTP 3.1 heartbeats):
 *   greeting  64 bytes: FF, 8 padding bytes, 7F, version 3.1, "CURVE"
 *             padded to 20, as-server 0, 31 zero bytes
 *   frame     flags (1 MORE, 2 LONG, 4 COMMAND), size in 1 or 8 bytes
 *             (network order), body
 *   handshake HELLO → WELCOME → INITIATE → READY (or ERROR), commands
 *   after it  each frame's body is "\x07MESSAGE", a short nonce and
 *             Box[flags + frame](C'→S'); the flags inside say MORE (1)
 *             and COMMAND (2: PING and PONG). */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "bench/zmtp_curve.h"

#define F_MORE 1
#define F_LONG 2
#define F_COMMAND 4

/* ZMTP's sizes and CurveZMQ's nonces are in network order. */
static void put_u64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *b = realloc(*buf, n);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *cap = n;
    return 0;
}

/* Append a frame header for a body of len bytes to c->out. */
static int put_header(zc *c, uint8_t flags, size_t len)
{
    int rc = reserve(&c->out, &c->out_cap, c->out_len + 9 + len);
    if (rc)
        return rc;
    if (len > 255) {
        c->out[c->out_len++] = flags | F_LONG;
        put_u64(c->out + c->out_len, len);
        c->out_len += 8;
    } else {
        c->out[c->out_len++] = flags;
        c->out[c->out_len++] = (uint8_t)len;
    }
    return 0;
}

int zc_flush(zc *c)
{
    size_t done = 0;
    while (done < c->out_len) {
        ssize_t w = send(c->fd, c->out + done, c->out_len - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w < 0)
            return -errno;
        done += (size_t)w;
    }
    memmove(c->out, c->out + done, c->out_len - done);
    c->out_len -= done;
    return 0;
}

/* Encrypt one frame (inner flags + data) as a MESSAGE into c->out. */
static int put_message(zc *c, uint8_t inner, const void *data, size_t len)
{
    uint8_t stack[1024], *pt = len < sizeof stack ? stack : malloc(len + 1);
    if (!pt)
        return -ENOMEM;
    pt[0] = inner;
    memcpy(pt + 1, data, len);
    size_t body = 16 + crypto_box_MACBYTES + 1 + len;
    int rc = put_header(c, 0, body);
    if (!rc) {
        uint8_t nonce[crypto_box_NONCEBYTES], *p = c->out + c->out_len;
        memcpy(nonce, "CurveZMQMESSAGEC", 16);
        put_u64(nonce + 16, c->nonce++);
        memcpy(p, "\x07MESSAGE", 8);
        memcpy(p + 8, nonce + 16, 8);
        crypto_box_easy_afternm(p + 16, pt, 1 + len, nonce, c->precom);
        c->out_len += body;
    }
    if (pt != stack)
        free(pt);
    return rc;
}

int zc_send(zc *c, const struct iovec *frames, int n)
{
    for (int i = 0; i < n; i++) {
        int rc = put_message(c, i + 1 < n ? F_MORE : 0, frames[i].iov_base, frames[i].iov_len);
        if (rc)
            return rc;
    }
    return zc_flush(c);
}

/* The next whole frame in c->in: 1 (flags, body, its length, and how many
 * bytes it took), or 0 when it has not all arrived. */
static int next_frame(const zc *c, uint8_t *flags, const uint8_t **body, size_t *len, size_t *took)
{
    if (c->in_len < 2)
        return 0;
    size_t head = (c->in[0] & F_LONG) ? 9 : 2;
    if (c->in_len < head)
        return 0;
    uint64_t n = head == 9 ? get_u64(c->in + 1) : c->in[1];
    if (n > c->in_len - head)
        return 0;
    *flags = c->in[0];
    *body = c->in + head;
    *len = (size_t)n;
    *took = head + (size_t)n;
    return 1;
}

static void consume(zc *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Read what the socket has: 1 something, 0 nothing now, -errno. */
/* The kernel's software receive timestamp of what recvmsg just read (for
 * TCP: of the last segment it took), or 0. */
static int64_t rx_timestamp(struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPING) {
            struct scm_timestamping ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof ts);
            return (int64_t)ts.ts[0].tv_sec * 1000000000 + ts.ts[0].tv_nsec;
        }
    return 0;
}

static int fill(zc *c)
{
    if (reserve(&c->in, &c->in_cap, c->in_len + 65536))
        return -ENOMEM;
    for (;;) {
        struct iovec iov = {c->in + c->in_len, c->in_cap - c->in_len};
        union {
            char           buf[CMSG_SPACE(sizeof(struct scm_timestamping))];
            struct cmsghdr align;
        } ctl;
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
        ssize_t r = recvmsg(c->fd, &mh, 0);
        if (r > 0) {
            c->in_len += (size_t)r;
            c->rx_ns = rx_timestamp(&mh);
            return 1;
        }
        if (r == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    }
}

/* Decrypt one MESSAGE frame body onto the message being assembled, or
 * answer it when it is a PING; 1 when the message is now whole. */
static int take_message(zc *c, const uint8_t *body, size_t len)
{
    if (len < 16 + crypto_box_MACBYTES + 1 || memcmp(body, "\x07MESSAGE", 8))
        return -EPROTO;
    size_t pt_len = len - 16 - crypto_box_MACBYTES;
    if (reserve(&c->msg, &c->msg_cap, c->msg_len + pt_len))
        return -ENOMEM;
    uint8_t nonce[crypto_box_NONCEBYTES], *pt = c->msg + c->msg_len;
    memcpy(nonce, "CurveZMQMESSAGES", 16);
    memcpy(nonce + 16, body + 8, 8);
    if (crypto_box_open_easy_afternm(pt, body + 16, len - 16, nonce, c->precom))
        return -EPROTO;
    uint8_t inner = pt[0];
    if (inner & 2) { /* a command: the hub's heartbeat */
        /* flags, "\x04PING", a 2-byte TTL, up to 16 bytes of context to echo */
        if (pt_len >= 8 && !memcmp(pt + 1, "\x04PING", 5)) {
            uint8_t pong[5 + 16];
            size_t ctx = pt_len - 8 > 16 ? 16 : pt_len - 8;
            memcpy(pong, "\x04PONG", 5);
            memcpy(pong + 5, pt + 8, ctx);
            int rc = put_message(c, 2, pong, 5 + ctx);
            return rc ? rc : zc_flush(c);
        }
        return 0; /* a PONG, or a command a DEALER may ignore */
    }
    if (c->frames == ZC_MAX_FRAMES)
        return -EPROTO;
    memmove(pt, pt + 1, pt_len - 1);
    c->frame_off[c->frames] = c->msg_len;
    c->msg_len += pt_len - 1;
    c->frames++;
    c->frame_off[c->frames] = c->msg_len;
    return (inner & F_MORE) ? 0 : 1;
}

int zc_recv(zc *c, zc_msg *m)
{
    uint8_t flags;
    const uint8_t *body;
    size_t len, took;
    while (next_frame(c, &flags, &body, &len, &took)) {
        if (flags & F_COMMAND) /* after the handshake, commands travel inside MESSAGEs */
            return -EPROTO;
        int rc = take_message(c, body, len);
        consume(c, took);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            m->data = c->msg;
            m->off = c->frame_off;
            m->frames = c->frames;
            m->rx_ns = c->rx_ns;
            c->frames = 0; /* the next call starts a new message; this one stays readable until then */
            c->msg_len = 0;
            return 1;
        }
    }
    return 0;
}

int zc_fill(zc *c)
{
    return fill(c);
}

/* --- the handshake (blocking) ---------------------------------------------------------- */

static int wait_fd(int fd, short ev, int64_t deadline_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t left = deadline_ms - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    if (left <= 0)
        return -ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = ev};
    int r = poll(&p, 1, (int)left);
    return r > 0 ? 0 : r == 0 ? -ETIMEDOUT : -errno;
}

static int read_exact(int fd, uint8_t *buf, size_t n, int64_t deadline_ms)
{
    for (size_t got = 0; got < n;) {
        int rc = wait_fd(fd, POLLIN, deadline_ms);
        if (rc)
            return rc;
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r == 0)
            return -ECONNRESET;
        if (r < 0 && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (r > 0)
            got += (size_t)r;
    }
    return 0;
}

/* One handshake command from the server into buf (cap bytes): its length, or -errno. */
static int read_command(int fd, uint8_t *buf, size_t cap, int64_t deadline_ms)
{
    uint8_t h[9];
    int rc = read_exact(fd, h, 2, deadline_ms);
    if (rc)
        return rc;
    if (!(h[0] & F_COMMAND))
        return -EPROTO;
    uint64_t n = h[1];
    if (h[0] & F_LONG) {
        if ((rc = read_exact(fd, h + 2, 7, deadline_ms)))
            return rc;
        n = get_u64(h + 1);
    }
    if (n > cap)
        return -EPROTO;
    rc = read_exact(fd, buf, (size_t)n, deadline_ms);
    return rc ? rc : (int)n;
}

static int property(uint8_t *p, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    p[0] = (uint8_t)nl;
    memcpy(p + 1, name, nl);
    uint32_t be = htobe32((uint32_t)vl);
    memcpy(p + 1 + nl, &be, 4);
    memcpy(p + 5 + nl, value, vl);
    return (int)(5 + nl + vl);
}

static int handshake(zc *c, const uint8_t pub[32], const uint8_t sec[32], const uint8_t server[32],
                     int64_t deadline, char *err, size_t errlen)
{
    uint8_t greeting[64] = {0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1, 'C', 'U', 'R', 'V', 'E'};
    c->out_len = 0;
    if (reserve(&c->out, &c->out_cap, 4096)) /* the greeting, HELLO and INITIATE fit */
        return snprintf(err, errlen, "out of memory"), -1;
    memcpy(c->out, greeting, 64);
    c->out_len = 64;

    /* HELLO: our short-term key C', and Box[64 zeros](C'→S) proving we know S */
    uint8_t cn_pub[32], cn_sec[32];
    crypto_box_keypair(cn_pub, cn_sec);
    c->nonce = 1;
    uint8_t hello[200] = "\x05HELLO\1\0", nonce[24], zeros[64] = {0};
    memcpy(hello + 80, cn_pub, 32);
    memcpy(nonce, "CurveZMQHELLO---", 16);
    put_u64(nonce + 16, c->nonce++);
    memcpy(hello + 112, nonce + 16, 8);
    if (crypto_box_easy(hello + 120, zeros, 64, nonce, server, cn_sec))
        return snprintf(err, errlen, "the hub's key is not a CURVE key"), -1;
    put_header(c, F_COMMAND, sizeof hello);
    memcpy(c->out + c->out_len, hello, sizeof hello);
    c->out_len += sizeof hello;
    for (size_t done = 0; done < c->out_len;) {
        if (wait_fd(c->fd, POLLOUT, deadline))
            return snprintf(err, errlen, "timed out sending the greeting"), -1;
        ssize_t w = send(c->fd, c->out + done, c->out_len - done, MSG_NOSIGNAL);
        if (w < 0 && errno != EINTR && errno != EAGAIN)
            return snprintf(err, errlen, "sending the greeting: %s", strerror(errno)), -1;
        done += w > 0 ? (size_t)w : 0;
    }
    c->out_len = 0;

    uint8_t peer[64], cmd[512];
    if (read_exact(c->fd, peer, 64, deadline) || peer[0] != 0xFF || peer[9] != 0x7F || peer[10] < 3 ||
        memcmp(peer + 12, "CURVE\0", 6))
        return snprintf(err, errlen, "the peer's greeting is not ZMTP 3 with CURVE"), -1;

    /* WELCOME: Box[S' + cookie](S→C') */
    int n = read_command(c->fd, cmd, sizeof cmd, deadline);
    if (n != 168 || memcmp(cmd, "\x07WELCOME", 8))
        return snprintf(err, errlen, "no WELCOME from the hub (%d)", n), -1;
    uint8_t welcome[128];
    memcpy(nonce, "WELCOME-", 8);
    memcpy(nonce + 8, cmd + 8, 16);
    if (crypto_box_open_easy(welcome, cmd + 24, 144, nonce, server, cn_sec))
        return snprintf(err, errlen, "the WELCOME does not open with the hub's key"), -1;
    const uint8_t *s_prime = welcome, *cookie = welcome + 32;
    if (crypto_box_beforenm(c->precom, s_prime, cn_sec))
        return snprintf(err, errlen, "the hub's short-term key is not a CURVE key"), -1;

    /* INITIATE: cookie, Box[C + vouch + metadata](C'→S'), vouch = Box[C' + S](C→S') */
    uint8_t vouch_pt[64], vouch_nonce[24], pt[256];
    memcpy(vouch_pt, cn_pub, 32);
    memcpy(vouch_pt + 32, server, 32);
    memcpy(vouch_nonce, "VOUCH---", 8);
    randombytes_buf(vouch_nonce + 8, 16);
    memcpy(pt, pub, 32);
    memcpy(pt + 32, vouch_nonce + 8, 16);
    if (crypto_box_easy(pt + 48, vouch_pt, 64, vouch_nonce, s_prime, sec))
        return snprintf(err, errlen, "our key is not a CURVE key"), -1;
    size_t pl = 128;
    pl += (size_t)property(pt + pl, "Socket-Type", "DEALER");
    pl += (size_t)property(pt + pl, "Identity", "");
    uint8_t init[113 + 256 + crypto_box_MACBYTES];
    memcpy(init, "\x08INITIATE", 9);
    memcpy(init + 9, cookie, 96);
    memcpy(nonce, "CurveZMQINITIATE", 16);
    put_u64(nonce + 16, c->nonce++);
    memcpy(init + 105, nonce + 16, 8);
    crypto_box_easy_afternm(init + 113, pt, pl, nonce, c->precom);
    size_t il = 113 + pl + crypto_box_MACBYTES;
    put_header(c, F_COMMAND, il);
    memcpy(c->out + c->out_len, init, il);
    c->out_len += il;
    while (c->out_len) {
        if (wait_fd(c->fd, POLLOUT, deadline) || zc_flush(c))
            return snprintf(err, errlen, "sending INITIATE failed"), -1;
    }

    /* READY (metadata: ignored), or ERROR with the hub's reason */
    n = read_command(c->fd, cmd, sizeof cmd, deadline);
    if (n >= 7 && !memcmp(cmd, "\x05" "ERROR", 6))
        return snprintf(err, errlen, "the hub refused the handshake: %.*s", cmd[6] < n - 7 ? cmd[6] : n - 7,
                        (char *)cmd + 7), -1;
    if (n < 30 || memcmp(cmd, "\x05READY", 6))
        return snprintf(err, errlen, "no READY from the hub (%d)", n), -1;
    uint8_t ready[512];
    memcpy(nonce, "CurveZMQREADY---", 16);
    memcpy(nonce + 16, cmd + 6, 8);
    if (crypto_box_open_easy_afternm(ready, cmd + 14, (size_t)n - 14, nonce, c->precom))
        return snprintf(err, errlen, "the READY does not open"), -1;
    return 0;
}

int zc_connect(zc *c, const char *host, uint16_t port, const uint8_t pub[32], const uint8_t sec[32],
               const uint8_t server[32], int timeout_ms, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    if (sodium_init() < 0)
        return snprintf(err, errlen, "libsodium does not start"), -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return snprintf(err, errlen, "'%s' is not an IPv4 address", host), -1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        return snprintf(err, errlen, "socket: %s", strerror(errno)), -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + timeout_ms;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        return snprintf(err, errlen, "connect %s:%u: %s", host, port, strerror(errno)), zc_close(c), -1;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (wait_fd(c->fd, POLLOUT, deadline) || getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr)
        return snprintf(err, errlen, "connect %s:%u: %s", host, port, strerror(soerr ? soerr : ETIMEDOUT)),
               zc_close(c), -1;
    if (handshake(c, pub, sec, server, deadline, err, errlen) < 0)
        return zc_close(c), -1;
    /* receive times from the kernel, to tell the network's and the hub's
     * part of a latency from this host's own scheduling (no error if
     * refused: the times stay unknown) */
    int tsf = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
    setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPING, &tsf, sizeof tsf);
    return 0;
}

void zc_close(zc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->out);
    free(c->msg);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

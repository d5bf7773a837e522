/* zmtp_curve.h — a DEALER's side of ZMTP 3 with CURVE (RFC 23, RFC 26),
 * spoken straight over a TCP socket, for the worklist bench's simulated
 * readers only.
 *
 * Why not libzmq: the bench runs its 100 readers on the hub's own two
 * cores.  Through libzmq every message costs the generator a hop to its
 * I/O thread and back (eventfd, epoll_ctl, a wake-up each way): as much
 * CPU as the hub spends on the same message, taken from the hub's cores.
 * In the field readers sit on other machines.  Here one thread encrypts
 * and writes each message itself, so the machine's CPU goes to the hub.
 * The hub sees the same bytes a libzmq DEALER sends (its own libzmq
 * decrypts and authenticates them, its ZAP handler checks the key). */
#ifndef DXHUB_BENCH_ZMTP_CURVE_H
#define DXHUB_BENCH_ZMTP_CURVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define ZC_MAX_FRAMES 4

typedef struct zc {
    int      fd;
    uint8_t  precom[32]; /* crypto_box_beforenm(S', c') */
    uint64_t nonce;      /* our next short nonce */
    uint8_t *in;         /* bytes read, not yet decoded */
    size_t   in_len, in_cap;
    uint8_t *out;        /* encrypted bytes the socket did not take yet */
    size_t   out_len, out_cap;
    uint8_t *msg;        /* the message being assembled: its frames' plaintext */
    size_t   msg_len, msg_cap;
    size_t   frame_off[ZC_MAX_FRAMES + 1];
    int      frames;
    int64_t  rx_ns; /* when the kernel received the bytes zc_fill read last (CLOCK_REALTIME, SO_TIMESTAMPING); 0 unknown */
} zc;

/* A message as received: frame i is data + off[i], off[i+1] - off[i] long;
 * valid until the next zc_recv. */
typedef struct zc_msg {
    const uint8_t *data;
    const size_t  *off;
    int            frames;
    int64_t        rx_ns; /* the kernel's receive time of the read that completed it, or a later one
                           * (CLOCK_REALTIME ns; 0 unknown): when it reached this host, not this thread */
} zc_msg;

/* Connect to host:port and run the CURVE handshake as client key
 * (pub, sec) to the server key server (all 32-byte binary keys), blocking
 * up to timeout_ms; then the socket is non-blocking.  0, or -1 with err. */
int zc_connect(zc *c, const char *host, uint16_t port, const uint8_t pub[32], const uint8_t sec[32],
               const uint8_t server[32], int timeout_ms, char *err, size_t errlen);

/* Send one message of n frames (n <= ZC_MAX_FRAMES).  What the socket does
 * not take now stays queued and leaves with the next send or zc_flush.
 * 0, or -errno. */
int zc_send(zc *c, const struct iovec *frames, int n);
int zc_flush(zc *c);

/* Read what the socket has now (one recv: with level-triggered epoll the
 * rest waits for the next call, and a drain costs no extra EAGAIN): 1 read
 * something, 0 nothing there, -errno (ECONNRESET: the hub closed). */
int zc_fill(zc *c);

/* The next whole message among the bytes read: 1, 0 when none is whole
 * yet, or -errno (EPROTO: not ZMTP, or a frame that does not decrypt).
 * Answers the hub's heartbeat PINGs by itself. */
int zc_recv(zc *c, zc_msg *m);

void zc_close(zc *c);

#endif

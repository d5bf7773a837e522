/* http_client.c — one HTTP/1.0 GET (http_client.h): connect with a
 * deadline, TLS (OpenSSL) for https://, send, read until the server
 * closes, split status and body. */
#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "hub/http_client.h"
#include "hub/errbuf.h"
#include "codecs/banned.h"

int http_url_parse(const char *s, http_url *u)
{
    bool tls = !strncmp(s, "https://", 8);
    if (tls)
        s += 8;
    else if (!strncmp(s, "http://", 7))
        s += 7;
    else if (strstr(s, "://"))
        return -1; /* other schemes: not spoken here */
    size_t n = strcspn(s, "/");
    const char *host = s, *colon;
    size_t hl;
    if (*s == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return -1;
        host = s + 1;
        hl = (size_t)(close - host);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(s, ':', n);
        hl = colon ? (size_t)(colon - s) : n;
    }
    const char *port = colon ? colon + 1 : "8410";
    size_t pl = colon ? n - (size_t)(port - s) : 4;
    if (!hl || hl >= sizeof u->host || !pl || pl >= sizeof u->port || strspn(port, "0123456789") < pl)
        return -1;
    snprintf(u->host, sizeof u->host, "%.*s", (int)hl, host);
    snprintf(u->port, sizeof u->port, "%.*s", (int)pl, port);
    u->tls = tls;
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
    int64_t left = deadline - mono_ms();
    if (left <= 0)
        return -ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)left);
    return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

static int connect_to(const http_url *u, int64_t deadline, int *fd_out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    if (getaddrinfo(u->host, u->port, &hints, &res))
        return -EHOSTUNREACH;
    int err = -ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int c = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : -errno;
        if (c == -EINPROGRESS && (c = wait_fd(fd, POLLOUT, deadline)) == 0) {
            int e = 0;
            socklen_t l = sizeof e;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
            c = -e;
        }
        if (c == 0) {
            freeaddrinfo(res);
            *fd_out = fd;
            return 0;
        }
        err = c;
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

/* Status line and the start of the body in the reply bytes. */
static int split_reply(char *buf, size_t got, http_reply *out)
{
    int status;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -EPROTO;
    char *body = strstr(buf, "\r\n\r\n");
    if (!body)
        return -EPROTO;
    body += 4;
    size_t bl = got - (size_t)(body - buf);
    memmove(buf, body, bl);
    buf[bl] = 0;
    out->status = status;
    out->body = buf;
    out->body_len = bl;
    return 0;
}

/* One connection: the socket, and its TLS session for https://. */
typedef struct conn {
    int      fd;
    SSL_CTX *ctx;
    SSL     *ssl;
    int64_t  deadline;
} conn;

/* Waits for what OpenSSL asked for; 0 when the call may be retried. */
static int tls_wait(conn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return wait_fd(c->fd, POLLIN, c->deadline);
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_fd(c->fd, POLLOUT, c->deadline);
    return -EPROTO;
}

/* The handshake, the hub's certificate checked against ca_file (else the
 * system's CAs) and against the host asked for (its name or IP address). */
static int tls_start(conn *c, const http_url *u, const char *ca_file, char *why, size_t whylen)
{
    if (!(c->ctx = SSL_CTX_new(TLS_client_method())) || !SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION))
        return errbuf_fail(-ENOMEM, why, whylen, "cannot set up TLS");
    if (ca_file ? SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL) != 1
                : SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        ERR_clear_error();
        return errbuf_fail(-EINVAL, why, whylen, "cannot read the CA certificates in %s",
                           ca_file ? ca_file : "the system's store");
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (!(c->ssl = SSL_new(c->ctx)) || SSL_set_fd(c->ssl, c->fd) != 1)
        return errbuf_fail(-ENOMEM, why, whylen, "cannot set up TLS");
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, u->host, ip) == 1 || inet_pton(AF_INET6, u->host, ip) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (literal ? X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) != 1
                : SSL_set_tlsext_host_name(c->ssl, u->host) != 1 || SSL_set1_host(c->ssl, u->host) != 1)
        return errbuf_fail(-EINVAL, why, whylen, "cannot check the certificate against host '%s'", u->host);
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK) {
            ERR_clear_error();
            return errbuf_fail(-EKEYREJECTED, why, whylen, "the hub's certificate is not trusted: %s%s",
                        X509_verify_cert_error_string(v),
                        ca_file ? "" : " (give the CA that issued it with --ca FILE)");
        }
        int w = tls_wait(c, r);
        if (w == -EPROTO) {
            unsigned long e = ERR_get_error();
            ERR_clear_error();
            return errbuf_fail(-EPROTO, why, whylen, "TLS handshake failed: %s (is it an https:// address?)",
                        e ? ERR_reason_error_string(e) : "the connection closed");
        }
        if (w < 0)
            return errbuf_fail(w, why, whylen, "TLS handshake: %s", strerror(-w));
    }
}

static void conn_close(conn *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    ERR_clear_error();
}

/* Sends all of p; 0 or a negative errno. */
static int conn_send(conn *c, const char *p, size_t n)
{
    size_t sent = 0;
    while (sent < n) {
        if (c->ssl) {
            size_t w;
            int r = SSL_write_ex(c->ssl, p + sent, n - sent, &w);
            if (r == 1)
                sent += w;
            else if ((r = tls_wait(c, r)) < 0)
                return r;
            continue;
        }
        ssize_t w = send(c->fd, p + sent, n - sent, MSG_NOSIGNAL);
        int rc = 0;
        if (w > 0)
            sent += (size_t)w;
        else if (w < 0 && errno == EAGAIN)
            rc = wait_fd(c->fd, POLLOUT, c->deadline);
        else
            rc = -errno;
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads into p: bytes read, 0 at the end, or a negative errno.  Over
 * TLS the end is the server's close_notify; a connection cut before it
 * is an error, so a truncated answer is never taken for a whole one. */
static ssize_t conn_recv(conn *c, char *p, size_t n)
{
    for (;;) {
        if (c->ssl) {
            size_t got;
            int r = SSL_read_ex(c->ssl, p, n, &got);
            if (r == 1)
                return (ssize_t)got;
            if (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN)
                return 0;
            int w = tls_wait(c, r);
            if (w < 0)
                return w;
            continue;
        }
        ssize_t r = recv(c->fd, p, n, 0);
        if (r >= 0)
            return r;
        if (errno != EAGAIN)
            return -errno;
        int w = wait_fd(c->fd, POLLIN, c->deadline);
        if (w < 0)
            return w;
    }
}

int http_get_json(const http_url *u, const char *path, const char *token, const char *ca_file, int timeout_ms,
                  size_t max_bytes, http_reply *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (why && whylen)
        *why = 0;
    conn c = {.fd = -1, .deadline = mono_ms() + timeout_ms};
    int rc = connect_to(u, c.deadline, &c.fd);
    if (rc < 0)
        return errbuf_fail(rc, why, whylen, "%s", strerror(-rc));
    /* OpenSSL writes with plain send(): a hub that closes mid-request
     * would end this command with SIGPIPE instead of an error. */
    if (u->tls)
        signal(SIGPIPE, SIG_IGN);
    if (u->tls && (rc = tls_start(&c, u, ca_file, why, whylen)) < 0) {
        conn_close(&c);
        return rc;
    }
    char auth[160] = "";
    if (token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %.100s\r\n", token);
    char req[4096];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s:%s\r\nAccept: application/json\r\n%s\r\n", path,
                     u->host, u->port, auth);
    if (n < 0 || (size_t)n >= sizeof req) {
        conn_close(&c);
        return errbuf_fail(-E2BIG, why, whylen, "request too long");
    }
    size_t cap = 64 << 10, got = 0;
    char *buf = malloc(cap + 1);
    rc = buf ? conn_send(&c, req, (size_t)n) : -ENOMEM;
    while (rc == 0) {
        if (got == cap) {
            if (cap >= max_bytes) {
                rc = -EMSGSIZE;
                break;
            }
            cap = cap * 2 < max_bytes ? cap * 2 : max_bytes;
            char *q = realloc(buf, cap + 1);
            if (!q) {
                rc = -ENOMEM;
                break;
            }
            buf = q;
        }
        ssize_t r = conn_recv(&c, buf + got, cap - got);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0)
            break;
        else
            rc = (int)r;
    }
    conn_close(&c);
    if (rc == 0 && got == 0)
        rc = errbuf_fail(-EPROTO, why, whylen, "the connection was closed without an answer%s",
                  u->tls ? "" : " (is it an https:// address?)");
    if (rc == 0) {
        buf[got] = 0;
        rc = split_reply(buf, got, out);
    }
    if (rc < 0) {
        free(buf);
        if (why && whylen && !*why)
            errbuf_fail(rc, why, whylen, "%s",
                        rc == -EPROTO ? "the answer is not HTTP, or was cut short" : strerror(-rc));
    }
    return rc;
}

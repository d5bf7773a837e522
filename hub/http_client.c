/* http_client.c — one HTTP/1.0 GET (http_client.h): connect with a
 * deadline, send, read until the server closes, split status and body. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "hub/http_client.h"
#include "codecs/banned.h"

int http_url_parse(const char *s, http_url *u)
{
    if (!strncmp(s, "http://", 7))
        s += 7;
    else if (strstr(s, "://"))
        return -1; /* https and others: not spoken here */
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

int http_get_json(const http_url *u, const char *path, const char *token, int timeout_ms, size_t max_bytes,
                  http_reply *out)
{
    memset(out, 0, sizeof *out);
    int64_t deadline = mono_ms() + timeout_ms;
    int fd = -1, rc = connect_to(u, deadline, &fd);
    if (rc < 0)
        return rc;
    char auth[160] = "";
    if (token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %.100s\r\n", token);
    char req[4096];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s:%s\r\nAccept: application/json\r\n%s\r\n", path,
                     u->host, u->port, auth);
    if (n < 0 || (size_t)n >= sizeof req) {
        close(fd);
        return -E2BIG;
    }
    size_t cap = 64 << 10, got = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        rc = -ENOMEM;
    for (int sent = 0; rc == 0 && sent < n;) {
        ssize_t w = send(fd, req + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (w > 0)
            sent += (int)w;
        else if (w < 0 && errno == EAGAIN)
            rc = wait_fd(fd, POLLOUT, deadline);
        else
            rc = -errno;
    }
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
        ssize_t r = recv(fd, buf + got, cap - got, 0);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0)
            break;
        else if (errno == EAGAIN)
            rc = wait_fd(fd, POLLIN, deadline);
        else
            rc = -errno;
    }
    close(fd);
    if (rc == 0) {
        buf[got] = 0;
        rc = split_reply(buf, got, out);
    }
    if (rc < 0)
        free(buf);
    return rc;
}

/* http_client.h — one HTTP/1.0 GET over a plain socket, for the commands
 * that ask a running hub (`dxhub lookup`).  No TLS: the hub's API is
 * bound to 127.0.0.1 or put behind the site's TLS proxy.  Hub-private. */
#ifndef DXHUB_HTTP_CLIENT_H
#define DXHUB_HTTP_CLIENT_H

#include <stddef.h>

typedef struct http_url {
    char host[256], port[8];
} http_url;

/* "http://HOST[:PORT][/]" or "HOST[:PORT]" (IPv6 literals in brackets);
 * default port 8410.  0, or -1 when malformed. */
int http_url_parse(const char *s, http_url *u);

typedef struct http_reply {
    int    status;      /* 200, 404, ... */
    char  *body;        /* malloc'd, NUL-terminated */
    size_t body_len;
} http_reply;

/* GET path with an optional "Authorization: Bearer TOKEN" (token may be
 * NULL), within timeout_ms, a reply of at most max_bytes.  0 with *out
 * filled (free out->body), or a negative errno (-ETIMEDOUT, -ECONNREFUSED,
 * -EMSGSIZE, -EPROTO). */
int http_get_json(const http_url *u, const char *path, const char *token, int timeout_ms, size_t max_bytes,
                  http_reply *out);

#endif

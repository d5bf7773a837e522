/* http_client.h — one HTTP/1.0 GET, plain or over TLS (OpenSSL), for
 * the commands that ask a running hub (`dxhub lookup`, `dxhub status`).
 * Hub-private. */
#ifndef DXHUB_HTTP_CLIENT_H
#define DXHUB_HTTP_CLIENT_H

#include <stddef.h>

typedef struct http_url {
    char host[256], port[8];
    int  tls; /* https:// */
} http_url;

/* "http://HOST[:PORT][/]", "https://..." or "HOST[:PORT]" (IPv6 literals
 * in brackets); default port 8410.  0, or -1 when malformed. */
int http_url_parse(const char *s, http_url *u);

typedef struct http_reply {
    int    status;      /* 200, 404, ... */
    char  *body;        /* malloc'd, NUL-terminated */
    size_t body_len;
} http_reply;

/* GET path with an optional "Authorization: Bearer TOKEN" (token may be
 * NULL), within timeout_ms, a reply of at most max_bytes.  Over https://
 * the hub's certificate must chain to a CA in ca_file (NULL: the
 * system's) and name the host (DNS name or IP address), TLS 1.2 at
 * least.  0 with *out filled (free out->body), or a negative errno
 * (-ETIMEDOUT, -ECONNREFUSED, -EMSGSIZE, -EPROTO, -EKEYREJECTED: the
 * certificate is not trusted) with the reason in why.  Over TLS the
 * process ignores SIGPIPE from then on. */
int http_get_json(const http_url *u, const char *path, const char *token, const char *ca_file, int timeout_ms,
                  size_t max_bytes, http_reply *out, char *why, size_t whylen);

#endif

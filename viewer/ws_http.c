/* ws_http.c — the workstation's HTTP server on libmicrohttpd: one thread
 * per connection (the event stream blocks in its own), bound to
 * 127.0.0.1 unless configured, every /api/ request checked against the
 * random token (X-Dxhub-Token), bodies collected up to WS_BODY_MAX, the
 * web UI's static files served from --web without any token, and an audit
 * line for every API request (who, what, which task or instance; never a
 * patient's name). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "viewer/ws_http.h"
#include "codecs/banned.h"

#define STATIC_PATH_MAX 200

struct ws_http {
    struct MHD_Daemon *d;
    ws                *w;
    char               bind[64];
    int                port;
    char               web_dir[4096];
    FILE              *audit;
    pthread_mutex_t    audit_mu;
};

typedef struct conn_state {
    char  *body;
    size_t len, cap;
    int    too_big;
} conn_state;

/* ---- what handlers call --------------------------------------------------------- */

const char *ws_req_query(const ws_req *r, const char *name)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
    return v ? v : "";
}

void ws_bytes(ws_resp *o, int status, const char *type, void *p, size_t n)
{
    free(o->body);
    o->status = status;
    o->type = type;
    o->body = p;
    o->len = n;
}

void ws_json(ws_resp *o, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) {
        ws_error(o, 500, "out of memory");
        return;
    }
    ws_bytes(o, status, "application/json; charset=utf-8", s, strlen(s));
}

void ws_error(ws_resp *o, int status, const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:s}", "error", why);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        s = strdup("{\"error\":\"out of memory\"}");
    ws_bytes(o, status, "application/json; charset=utf-8", s, s ? strlen(s) : 0);
}

void ws_header(ws_resp *o, const char *name, const char *fmt, ...)
{
    if (o->n_headers >= WS_MAX_HEADERS)
        return;
    snprintf(o->headers[o->n_headers][0], sizeof o->headers[0][0], "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->headers[o->n_headers][1], sizeof o->headers[0][1], fmt, ap);
    va_end(ap);
    o->n_headers++;
}

json_t *ws_body_json(const ws_req *r, ws_resp *o)
{
    json_error_t je;
    json_t *j = r->body_len ? json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!j) {
        ws_error(o, 400, "the body is not JSON%s%s", r->body_len ? ": " : " (empty)", r->body_len ? je.text : "");
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        ws_error(o, 400, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ---- static files ---------------------------------------------------------------- */

static const char *content_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".json", "application/json"}, {".svg", "image/svg+xml"}, {".png", "image/png"},
        {".ico", "image/x-icon"}, {".woff2", "font/woff2"}, {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

/* A path under the web folder: letters, digits, '-', '_', '.', '/'; no
 * segment that starts with a dot (no "..", no hidden files), no "//". */
static int static_path_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > STATIC_PATH_MAX || p[0] != '/')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                 ch == '_' || ch == '.' || ch == '/';
        if (!ok)
            return 0;
        if (ch == '/' && (p[i + 1] == '.' || p[i + 1] == '/'))
            return 0;
    }
    return 1;
}

static void serve_static(ws_http *h, const char *path, ws_resp *o, int *fd_out)
{
    *fd_out = -1;
    if (!strcmp(path, "/"))
        path = "/index.html";
    if (!static_path_ok(path)) {
        ws_error(o, 400, "not a file name the web UI has (letters, digits, '-', '_', '.', '/'; no '..')");
        return;
    }
    char full[4400];
    snprintf(full, sizeof full, "%s%s", h->web_dir, path);
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        ws_error(o, 404, "no such file in the web UI: %.200s", path);
        return;
    }
    o->status = 200;
    o->type = content_type(path);
    o->len = (size_t)st.st_size;
    *fd_out = fd;
}

/* ---- the request handler -------------------------------------------------------- */

/* The Host header names us: the bound address or localhost (any port the
 * browser shows; a missing Host is an HTTP/1.0 client, not a browser). */
static int host_ok(const ws_http *h, const char *host)
{
    if (!host)
        return 1;
    size_t n = strlen(host);
    const char *colon = strrchr(host, ':');
    if (colon && !strchr(colon, ']'))
        n = (size_t)(colon - host);
    static const char *const local[] = {"127.0.0.1", "localhost", "[::1]"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        if (strlen(local[i]) == n && !strncasecmp(host, local[i], n))
            return 1;
    return strlen(h->bind) == n && !strncmp(host, h->bind, n);
}

static int token_ok(const ws *w, const char *got)
{
    if (!got || strlen(got) != strlen(w->token))
        return 0;
    unsigned diff = 0;
    for (size_t i = 0; got[i]; i++)
        diff |= (unsigned)(got[i] ^ w->token[i]);
    return diff == 0;
}

static void audit(ws_http *h, const char *method, const char *url, int status)
{
    if (!h->audit)
        return;
    char line[700];
    json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:i}", "t", (json_int_t)ws_now_ms(), "reader", h->w->reader_id,
                          "method", method, "url", url, "status", status);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        return;
    snprintf(line, sizeof line, "%s\n", s);
    free(s);
    pthread_mutex_lock(&h->audit_mu);
    fputs(line, h->audit);
    fflush(h->audit);
    pthread_mutex_unlock(&h->audit_mu);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    ws_resp *o = cls;
    long n = o->stream(o->stream_ctx, buf, max);
    return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

static void stream_free(void *cls)
{
    ws_resp *o = cls;
    if (o->stream_free)
        o->stream_free(o->stream_ctx);
    free(o);
}

static enum MHD_Result answer(struct MHD_Connection *c, ws_resp *o, int fd)
{
    struct MHD_Response *resp;
    ws_resp *keep = NULL;
    if (o->stream) {
        keep = malloc(sizeof *keep);
        if (!keep)
            return MHD_NO;
        *keep = *o;
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, keep, stream_free);
        if (!resp) {
            stream_free(keep);
            return MHD_NO;
        }
    } else if (fd >= 0) {
        resp = MHD_create_response_from_fd(o->len, fd);
        if (!resp)
            close(fd);
    } else {
        resp = MHD_create_response_from_buffer(o->len, o->body ? o->body : (void *)"",
                                               o->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (resp)
            o->body = NULL;
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, o->type ? o->type : "application/octet-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (int i = 0; i < o->n_headers; i++)
        MHD_add_response_header(resp, o->headers[i][0], o->headers[i][1]);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)o->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    ws_http *h = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs)
            return MHD_NO;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (!cs->too_big && cs->len + *upload_size <= WS_BODY_MAX) {
            if (cs->len + *upload_size + 1 > cs->cap) {
                size_t cap = cs->cap ? cs->cap : 4096;
                while (cap < cs->len + *upload_size + 1)
                    cap *= 2;
                char *p = realloc(cs->body, cap);
                if (!p)
                    return MHD_NO;
                cs->body = p;
                cs->cap = cap;
            }
            memcpy(cs->body + cs->len, upload, *upload_size);
            cs->len += *upload_size;
            cs->body[cs->len] = '\0';
        } else {
            cs->too_big = 1;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    ws_resp o = {.status = 500};
    int fd = -1;
    int api = !strncmp(url, "/api/", 5) || !strcmp(url, "/api");
    const char *token = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Dxhub-Token");
    if (!token && !strcmp(url, "/api/events")) /* EventSource cannot set headers */
        token = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
    if (!host_ok(h, MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))) {
        /* DNS rebinding: a page from elsewhere whose name now points here */
        ws_error(&o, 421, "this server answers to %s:%d or localhost only", h->bind, h->port);
    } else if (!api) {
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
            ws_error(&o, 405, "only GET for the web UI's files");
        else
            serve_static(h, url, &o, &fd);
    } else if (!token_ok(h->w, token)) {
        ws_error(&o, 401, "missing or wrong X-Dxhub-Token (the token is in the URL the workstation printed)");
    } else if (cs->too_big) {
        ws_error(&o, 413, "request body over %u bytes", WS_BODY_MAX);
    } else {
        ws_req r = {.w = h->w, .method = method, .path = url, .body = cs->body ? cs->body : "",
                    .body_len = cs->len, .conn = c};
        ws_api_route(&r, &o);
    }
    if (api)
        audit(h, method, url, o.status);
    enum MHD_Result ok = answer(c, &o, fd);
    free(o.body);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    conn_state *cs = *con_cls;
    if (cs) {
        if (cs->body) /* it may have held a passphrase */
            explicit_bzero(cs->body, cs->cap);
        free(cs->body);
        free(cs);
        *con_cls = NULL;
    }
}

int ws_http_bind_check(const char *bind_addr, char *err, size_t errlen)
{
    struct in_addr a;
    if (inet_pton(AF_INET, bind_addr, &a) != 1) {
        snprintf(err, errlen, "--bind %s: not an IPv4 address", bind_addr);
        return -EINVAL;
    }
    /* Plain HTTP carrying the patient's images, the report and the
     * passphrase that unlocks the reader's signing key: this machine only. */
    if ((ntohl(a.s_addr) >> 24) != 127) {
        snprintf(err, errlen, "--bind %s: the viewer serves patient images and takes the signing passphrase over "
                              "plain HTTP, so it listens on a 127.x.x.x address only (the reader's browser runs "
                              "on this PC)", bind_addr);
        return -EPERM;
    }
    return 0;
}

int ws_http_start(ws *w, const char *bind_addr, int port, const char *web_dir, ws_http **out, int *port_out,
                  char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int rc = ws_http_bind_check(bind_addr, err, errlen);
    if (rc < 0)
        return rc;
    inet_pton(AF_INET, bind_addr, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", bind_addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    ws_http *h = calloc(1, sizeof *h);
    if (!h) {
        close(fd);
        return -ENOMEM;
    }
    h->w = w;
    snprintf(h->bind, sizeof h->bind, "%s", bind_addr);
    snprintf(h->web_dir, sizeof h->web_dir, "%s", web_dir);
    pthread_mutex_init(&h->audit_mu, NULL);
    char path[4400];
    snprintf(path, sizeof path, "%s/audit.log", w->cfg.cache_dir);
    int afd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600); /* who read which study: the reader's eyes only */
    h->audit = afd >= 0 ? fdopen(afd, "a") : NULL;
    if (!h->audit && afd >= 0)
        close(afd);
    h->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                            on_request, h, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "libmicrohttpd could not start on %s:%d", bind_addr, port);
        close(fd);
        if (h->audit)
            fclose(h->audit);
        free(h);
        return -EIO;
    }
    *port_out = h->port = ntohs(sa.sin_port);
    *out = h;
    return 0;
}

void ws_http_stop(ws_http **hp)
{
    if (!hp || !*hp)
        return;
    ws_http *h = *hp;
    MHD_stop_daemon(h->d);
    if (h->audit)
        fclose(h->audit);
    pthread_mutex_destroy(&h->audit_mu);
    free(h);
    *hp = NULL;
}

/* clinic_http.c — the clinic's page on libmicrohttpd (clinic_page.h):
 * listening, who may ask (the link's token, then a same-site cookie), form
 * bodies, and the routes to what clinic_page.c shows.
 *
 *   GET  /?token=T   sets the cookie and goes to the list
 *   GET  /           the list (each item shown is audited first); ?patient=ID
 *                    that patient's items only, however old
 *   GET  /changes    an opaque stamp of the list, for page.js; no patient data
 *   GET  /report?id= the signed report, once it verifies (audited)
 *   GET  /report.pdf?id= the same as a PDF for printing (audited)
 *   POST /ack        id, by: a person confirms reading an alert
 *   GET  /page.js    the page's script */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hub/clinic_page.h"
#include "hub/clinic_private.h"
#include "hub/cmd.h"
#include "hub/main_signals.h"
#include "codecs/banned.h"

#define TOKEN_HEX   64
#define FIELD_MAX   127  /* a form field: an id (≤120) or a name (≤127, as --ack --by) */
#define COOKIE_DAYS 30   /* a bookmarked page keeps working for a month of shifts */

typedef struct page {
    clinic_ctx ctx;
    char       token[TOKEN_HEX + 1];
    char       cookie[32]; /* its name: one per port, two gateways' pages on one PC apart */
    int        port;
} page;

/* ---- who may ask ------------------------------------------------------ */

/* The token kept in the gateway's folder, made once: a bookmarked link
 * keeps working when the page is started again. */
static int load_token(page *p, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/clinic-page.token", p->ctx.o->edge_data);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, p->token, TOKEN_HEX);
        close(fd);
        p->token[n > 0 ? n : 0] = '\0';
        if (n == TOKEN_HEX && strspn(p->token, "0123456789abcdef") == TOKEN_HEX)
            return 0;
        snprintf(err, errlen, "%.400s: not a token this page wrote (remove it, and a new one is made)", path);
        return -EINVAL;
    }
    unsigned char r[TOKEN_HEX / 2];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        return -EIO;
    }
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(p->token + 2 * i, 3, "%02x", r[i]);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); /* the key to patients' reports */
    if (fd < 0 || write(fd, p->token, TOKEN_HEX) != TOKEN_HEX || fsync(fd) < 0) {
        snprintf(err, errlen, "cannot write %.400s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -EIO;
    }
    close(fd);
    return 0;
}

static bool token_ok(const page *p, const char *got)
{
    if (!got || strlen(got) != TOKEN_HEX)
        return false;
    unsigned diff = 0;
    for (size_t i = 0; i < TOKEN_HEX; i++)
        diff |= (unsigned)(got[i] ^ p->token[i]);
    return diff == 0;
}

/* DNS rebinding: a page from elsewhere whose name now points here. */
static bool host_ok(const page *p, const char *host)
{
    if (!host)
        return true;
    size_t n = strlen(host);
    const char *colon = strrchr(host, ':');
    if (colon)
        n = (size_t)(colon - host);
    const char *bind_addr = p->ctx.o->bind;
    return (n == 9 && !strncasecmp(host, "localhost", 9)) || (n == strlen(bind_addr) && !strncmp(host, bind_addr, n));
}

/* ---- the server ------------------------------------------------------------ */

typedef struct form {
    struct MHD_PostProcessor *pp;
    char  id[FIELD_MAX + 1], by[FIELD_MAX + 1];
    bool  too_long;
} form;

static enum MHD_Result form_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                  const char *type, const char *enc, const char *data, uint64_t off, size_t size)
{
    form *f = cls;
    char *to = !strcmp(key, "id") ? f->id : !strcmp(key, "by") ? f->by : NULL;
    if (!to)
        return MHD_YES;
    if (off + size > FIELD_MAX) {
        f->too_long = true;
        return MHD_YES;
    }
    memcpy(to + off, data, size);
    to[off + size] = '\0';
    return MHD_YES;
}

static enum MHD_Result send_answer(struct MHD_Connection *c, clinic_answer *a)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(a->len, a->body ? a->body : (void *)"",
                                                                a->body ? MHD_RESPMEM_MUST_FREE
                                                                        : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(a->body);
        return MHD_NO;
    }
    if (a->type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (a->type && !strncmp(a->type, "text/html", 9)) /* a PDF is left to the browser's own viewer */
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    if (a->disposition[0])
        MHD_add_response_header(resp, "Content-Disposition", a->disposition);
    if (a->location[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, a->location);
    if (a->set_cookie[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, a->set_cookie);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)a->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static void route(page *p, struct MHD_Connection *c, const char *url, const char *method, form *f, clinic_answer *a)
{
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    const char *link = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    char own[300];
    snprintf(own, sizeof own, "http://%s", host ? host : "");
    if (!host_ok(p, host)) {
        clinic_message(a, 421, "Wrong address", "Open this page at the address the gateway printed.");
    } else if (get && !strcmp(url, "/page.js")) {
        a->status = 200;
        a->type = "text/javascript; charset=utf-8";
        a->body = strdup(clinic_page_js);
        a->len = a->body ? strlen(a->body) : 0;
    } else if (get && !strcmp(url, "/") && link) {
        if (!token_ok(p, link)) {
            clinic_message(a, 401, "This link does not open the page", "Ask IT for the clinic page's link.");
        } else { /* the token leaves the address bar and the history; the cookie carries it */
            clinic_go_to_list(a);
            snprintf(a->set_cookie, sizeof a->set_cookie, "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d",
                     p->cookie, p->token, COOKIE_DAYS * 86400);
        }
    } else if (!token_ok(p, MHD_lookup_connection_value(c, MHD_COOKIE_KIND, p->cookie))) {
        clinic_message(a, 401, "Open the clinic page's link",
                "This browser has not opened the page's link yet, or opened it more than 30 days ago. Ask IT "
                "for the link (dxhub reports --serve prints it).");
    } else if (origin && strcmp(origin, own)) { /* a form posted from another site */
        clinic_message(a, 403, "Refused", "This page takes requests from itself only.");
    } else if (get && (!strcmp(url, "/") || !strcmp(url, "/changes"))) {
        const char *patient = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "patient");
        if (patient && (!*patient || strlen(patient) > 64))
            patient = NULL; /* an empty search is the whole list; a Patient ID is at most 64 bytes */
        if (!strcmp(url, "/"))
            clinic_show_list(&p->ctx, patient, a);
        else
            clinic_show_changes(&p->ctx, patient, a);
    } else if (get && (!strcmp(url, "/report") || !strcmp(url, "/report.pdf"))) {
        clinic_show_report(&p->ctx, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "id"),
                           !strcmp(url, "/report.pdf"), a);
    } else if (!strcmp(method, "POST") && !strcmp(url, "/ack")) {
        if (f->too_long)
            clinic_message(a, 400, "Not confirmed", "A name of at most 127 bytes, please.");
        else
            clinic_confirm(&p->ctx, f->id, f->by, a);
    } else {
        clinic_message(a, 404, "Not here", "This page has the list of reports and alerts only.");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    page *p = cls;
    form *f = *con_cls;
    if (!f) {
        if (!(f = calloc(1, sizeof *f)))
            return MHD_NO;
        if (!strcmp(method, "POST"))
            f->pp = MHD_create_post_processor(c, 4096, form_field, f); /* NULL for a body not a form: no fields */
        *con_cls = f;
        return MHD_YES;
    }
    if (*upload_size) {
        if (f->pp && MHD_post_process(f->pp, upload, *upload_size) != MHD_YES)
            f->too_long = true;
        *upload_size = 0;
        return MHD_YES;
    }
    clinic_answer a = {.status = 500};
    route(p, c, url, method, f, &a);
    return send_answer(c, &a);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    form *f = *con_cls;
    if (f) {
        if (f->pp)
            MHD_destroy_post_processor(f->pp);
        free(f);
        *con_cls = NULL;
    }
}

static int listen_on(const clinic_page_opts *o, int *port, char *err, size_t errlen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->bind, &sa.sin_addr) != 1 || (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        snprintf(err, errlen, "--bind %s: the page carries patients' reports over plain HTTP, so it listens on a "
                              "127.x.x.x address only (open it in a browser on the gateway's PC)", o->bind);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", o->bind, o->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return fd;
}

int clinic_page_serve(const clinic_page_opts *o)
{
    page p = {.ctx.o = o};
    char err[600], mdb[4200], me[160];
    struct stat st;
    snprintf(mdb, sizeof mdb, "%s/data.mdb", o->edge_data);
    if (stat(mdb, &st) < 0) { /* never made afresh: an empty page would hide the real inbox's alert */
        dx_errorf("reports", "no clinic gateway data in %s (is --edge-data the gateway's --data?)", o->edge_data);
        return 1;
    }
    sigset_t sigs;
    main_signals_block(&sigs); /* before the server's thread starts */
    int fd = -1;
    if (load_token(&p, err, sizeof err) < 0 || (fd = listen_on(o, &p.port, err, sizeof err)) < 0 ||
        spool_open(o->edge_data, 0, &p.ctx.sp, err, sizeof err) < 0) {
        dx_errorf("reports", "%s", err);
        if (fd >= 0)
            close(fd);
        return 1;
    }
    dx_local_user(me, sizeof me);
    snprintf(p.ctx.who, sizeof p.ctx.who, "clinic-page:%s", strchr(me, ':') ? strchr(me, ':') + 1 : me);
    snprintf(p.cookie, sizeof p.cookie, "dxhub_clinic_%d", p.port);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, &p,
                                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_NOTIFY_COMPLETED,
                                            on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)32, MHD_OPTION_END);
    if (!d) {
        dx_errorf("reports", "libmicrohttpd could not start on %s:%d", o->bind, p.port);
        close(fd);
        spool_close(&p.ctx.sp);
        return 1;
    }
    printf("clinic page: http://%s:%d/?token=%s\n", o->bind, p.port, p.token);
    printf("(open it once in the browser on this PC, and bookmark the list it opens; Ctrl-C stops the page)\n");
    fflush(stdout);
    int sig;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
        ; /* nothing to reload: the trust list is read for each report */
    MHD_stop_daemon(d); /* closes fd */
    spool_close(&p.ctx.sp);
    return 0;
}

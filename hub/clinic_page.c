/* clinic_page.c — the clinic's page on libmicrohttpd (clinic_page.h):
 * listening, who may ask (the link's token, then a same-site cookie), the
 * routes, and the audit of what is shown.
 *
 *   GET  /?token=T   sets the cookie and goes to the list
 *   GET  /           the list (each item shown is audited first)
 *   GET  /changes    an opaque stamp of the list, for page.js; no patient data
 *   GET  /report?id= the signed report, once it verifies (audited)
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
#include "hub/clinic_page_html.h"
#include "hub/clock.h"
#include "hub/cmd.h"
#include "hub/inbox_listing.h"
#include "hub/main_signals.h"
#include "hub/report_export.h"
#include "codecs/banned.h"

#define TOKEN_HEX   64
#define FIELD_MAX   128  /* a form field: an id (≤120) or a name (≤127) */
#define COOKIE_DAYS 30   /* a bookmarked page keeps working for a month of shifts */

typedef struct page {
    const clinic_page_opts *o;
    spool                  *sp;
    char                    token[TOKEN_HEX + 1];
    char                    cookie[32]; /* its name: one per port, two gateways' pages on one PC apart */
    char                    who[200];   /* the audit's "who": this page, as the account running it */
    int                     port;
} page;

typedef struct answer {
    int         status;
    const char *type;
    char       *body; /* malloc'd */
    size_t      len;
    char        location[64], set_cookie[256];
} answer;

/* ---- who may ask ------------------------------------------------------ */

/* The token kept in the gateway's folder, made once: a bookmarked link
 * keeps working when the page is started again. */
static int load_token(page *p, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/clinic-page.token", p->o->edge_data);
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
    return (n == 9 && !strncasecmp(host, "localhost", 9)) || (n == strlen(p->o->bind) && !strncmp(host, p->o->bind, n));
}

/* ---- answers ------------------------------------------------------------ */

static void html(answer *a, int status, char *body, size_t len)
{
    a->status = body ? status : 500;
    a->type = "text/html; charset=utf-8";
    a->body = body ? body : strdup("out of memory");
    a->len = body ? len : strlen(a->body);
}

static void message(answer *a, int status, const char *title, const char *text)
{
    size_t len = 0;
    char *b = clinic_html_message(title, text, &len);
    html(a, status, b, len);
}

static void go_to_list(answer *a)
{
    a->status = 303;
    snprintf(a->location, sizeof a->location, "/");
}

/* ---- the list ------------------------------------------------------------ */

/* FNV-1a over what the list shows that can change: the items, and each alert's state. */
static uint64_t stamp_add(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

typedef struct walk {
    page          *p;
    inbox_listing  l;
    clinic_row    *rows;
    size_t         n;
    uint64_t       stamp;
} walk;

static int gather(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data, size_t len)
{
    walk *w = ctx;
    if (!inbox_listing_chosen(&w->l, id))
        return 0;
    clinic_row *r = &w->rows[w->n];
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    r->received_ms = received_ms;
    inbox_summary_read(kind, data, len, &r->sum);
    r->confirmed = spool_alert_confirmation(w->p->sp, id, &r->c) == 0;
    report_bundle b;
    if (report_bundle_parse(data, len, &b, NULL, 0) == 0) {
        r->has_report = true;
        report_bundle_clear(&b);
    }
    char state[4] = {r->confirmed ? 'c' : '-', r->c.told_hub ? 't' : '-', 0};
    w->stamp = stamp_add(stamp_add(w->stamp, id, strlen(id) + 1), state, 3);
    w->n++;
    return w->n == w->l.n; /* all gathered: stop */
}

/* The chosen items (audited as shown when audit is true) gathered into w. */
static int gather_list(page *p, walk *w, bool audit, char *why, size_t whylen)
{
    *w = (walk){.p = p, .l = {.sp = p->sp, .since_ms = clock_wall_ms() - p->o->days * 86400000LL},
                .stamp = 1469598103934665603ULL};
    int rc = inbox_listing_choose(&w->l);
    if (rc >= 0 && audit)
        rc = inbox_listing_audit(p->sp, (const char *const *)w->l.ids, w->l.n, p->who, "read", " (clinic page)");
    if (rc < 0) {
        snprintf(why, whylen, "The gateway's audit trail cannot be written (%s), so no patient's data is shown. "
                              "Free space for the gateway, or call IT.", strerror(-rc));
        return rc;
    }
    if (w->l.n && !(w->rows = calloc(w->l.n, sizeof *w->rows))) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    if (w->l.n)
        spool_inbox_list(p->sp, gather, w);
    return 0;
}

static void walk_free(walk *w)
{
    inbox_listing_free(&w->l);
    free(w->rows);
}

static void show_list(page *p, answer *a)
{
    walk w;
    char why[300];
    if (gather_list(p, &w, true, why, sizeof why) < 0) {
        message(a, 503, "Not shown", why);
    } else {
        char stamp[20];
        snprintf(stamp, sizeof stamp, "%016llx", (unsigned long long)w.stamp);
        clinic_rows_sort(w.rows, w.n);
        size_t len = 0;
        char *b = clinic_html_list(w.rows, w.n, w.l.older, p->o->days, stamp, &len);
        html(a, 200, b, len);
    }
    walk_free(&w);
}

static void show_changes(page *p, answer *a)
{
    walk w;
    char why[300];
    int rc = gather_list(p, &w, false, why, sizeof why);
    a->status = rc < 0 ? 503 : 200;
    a->type = "text/plain; charset=utf-8";
    if (asprintf(&a->body, "%016llx\n", (unsigned long long)w.stamp) < 0)
        a->body = NULL;
    a->len = a->body ? strlen(a->body) : 0;
    walk_free(&w);
}

/* ---- one report ---------------------------------------------------------- */

typedef struct find {
    const char *id;
    void       *data;
    size_t      len;
    bool        found;
} find;

static int find_item(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data, size_t len)
{
    find *f = ctx;
    if (strcmp(id, f->id))
        return 0;
    f->found = true;
    if ((f->data = malloc(len ? len : 1)))
        memcpy(f->data, data, len);
    f->len = len;
    return 1;
}

static void show_report(page *p, const char *id, answer *a)
{
    find f = {.id = id ? id : ""};
    if (f.id[0])
        spool_inbox_list(p->sp, find_item, &f);
    if (!f.found) {
        message(a, 404, "No such report", "This clinic's inbox holds no report by that name.");
        return;
    }
    char why[1200];
    report_verifier *v = NULL;
    report_verifier_config cfg = {.trust_dir = p->o->trust_dir};
    report_opened r;
    int rc = report_verifier_new(&cfg, &v, why, sizeof why);
    if (rc < 0) {
        char text[1300];
        snprintf(text, sizeof text, "The clinic's trust list cannot be read (%s). Call IT.", why);
        message(a, 503, "Report not shown", text);
    } else if (!f.data || (rc = inbox_listing_audit(p->sp, &id, 1, p->who, "read", " (clinic page, the report)")) < 0) {
        message(a, 503, "Report not shown", "The gateway's audit trail cannot be written, so no patient's data is "
                                            "shown. Free space for the gateway, or call IT.");
    } else if ((rc = report_open_verified(v, f.data, f.len, "", &r, why, sizeof why)) != 0) {
        char text[1400];
        if (rc == 1)
            snprintf(text, sizeof text, "%s is an alert without a signed report: what it says is on the list.", id);
        else
            snprintf(text, sizeof text, "%s\n\nIts signature does not check out against the clinic's trust list, so "
                                        "it is not shown as a signed report. Call the reading centre, or refresh "
                                        "the trust list if it has expired.", why);
        message(a, rc == 1 ? 404 : 422, "Report not shown", text);
    } else {
        char *b = NULL;
        size_t len = 0;
        rc = report_page_html_buf(&r.page, "/", &b, &len);
        html(a, 200, rc < 0 ? NULL : b, len);
        report_opened_clear(&r);
    }
    report_verifier_free(&v);
    free(f.data);
}

/* ---- a person confirms reading an alert ------------------------------------ */

static void confirm(page *p, const char *id, const char *by, answer *a)
{
    if (!id || !*id || !by || !*by) {
        message(a, 400, "Not confirmed", "Give your name: the reading centre is told who read the alert.");
        return;
    }
    spool_confirmation was;
    int rc = spool_alert_confirm(p->sp, id, by, p->who, clock_wall_ms(), &was);
    if (rc == 0 || rc == -EEXIST) {
        go_to_list(a); /* the list says who confirmed it, and when */
    } else if (rc == -ENOENT || rc == -EINVAL) {
        message(a, rc == -ENOENT ? 404 : 400, "Not confirmed",
                rc == -ENOENT ? "This clinic's inbox holds no alert by that name." : "That is a report, not an alert: "
                                                                                     "there is nothing to confirm.");
    } else {
        char text[300];
        snprintf(text, sizeof text, "It could not be recorded (%s). Try again; if it fails again, call IT and phone "
                                    "the reading centre that you read it.", strerror(-rc));
        message(a, 503, "Not confirmed", text);
    }
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

static enum MHD_Result send_answer(struct MHD_Connection *c, answer *a)
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
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
                            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    if (a->location[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, a->location);
    if (a->set_cookie[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, a->set_cookie);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)a->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static void route(page *p, struct MHD_Connection *c, const char *url, const char *method, form *f, answer *a)
{
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    const char *link = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    char own[300];
    snprintf(own, sizeof own, "http://%s", host ? host : "");
    if (!host_ok(p, host)) {
        message(a, 421, "Wrong address", "Open this page at the address the gateway printed.");
    } else if (get && !strcmp(url, "/page.js")) {
        a->status = 200;
        a->type = "text/javascript; charset=utf-8";
        a->body = strdup(clinic_page_js);
        a->len = a->body ? strlen(a->body) : 0;
    } else if (get && !strcmp(url, "/") && link) {
        if (!token_ok(p, link)) {
            message(a, 401, "This link does not open the page", "Ask IT for the clinic page's link.");
        } else { /* the token leaves the address bar and the history; the cookie carries it */
            go_to_list(a);
            snprintf(a->set_cookie, sizeof a->set_cookie, "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d",
                     p->cookie, p->token, COOKIE_DAYS * 86400);
        }
    } else if (!token_ok(p, MHD_lookup_connection_value(c, MHD_COOKIE_KIND, p->cookie))) {
        message(a, 401, "Open the clinic page's link",
                "This browser has not opened the page's link yet, or opened it more than 30 days ago. Ask IT "
                "for the link (dxhub reports --serve prints it).");
    } else if (origin && strcmp(origin, own)) { /* a form posted from another site */
        message(a, 403, "Refused", "This page takes requests from itself only.");
    } else if (get && !strcmp(url, "/")) {
        show_list(p, a);
    } else if (get && !strcmp(url, "/changes")) {
        show_changes(p, a);
    } else if (get && !strcmp(url, "/report")) {
        show_report(p, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "id"), a);
    } else if (!strcmp(method, "POST") && !strcmp(url, "/ack")) {
        if (f->too_long)
            message(a, 400, "Not confirmed", "A name of at most 127 bytes, please.");
        else
            confirm(p, f->id, f->by, a);
    } else {
        message(a, 404, "Not here", "This page has the list of reports and alerts only.");
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
    answer a = {.status = 500};
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
    page p = {.o = o};
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
        spool_open(o->edge_data, 0, &p.sp, err, sizeof err) < 0) {
        dx_errorf("reports", "%s", err);
        if (fd >= 0)
            close(fd);
        return 1;
    }
    dx_local_user(me, sizeof me);
    snprintf(p.who, sizeof p.who, "clinic-page:%s", strchr(me, ':') ? strchr(me, ':') + 1 : me);
    snprintf(p.cookie, sizeof p.cookie, "dxhub_clinic_%d", p.port);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, &p,
                                            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_NOTIFY_COMPLETED,
                                            on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)32, MHD_OPTION_END);
    if (!d) {
        dx_errorf("reports", "libmicrohttpd could not start on %s:%d", o->bind, p.port);
        close(fd);
        spool_close(&p.sp);
        return 1;
    }
    printf("clinic page: http://%s:%d/?token=%s\n", o->bind, p.port, p.token);
    printf("(open it once in the browser on this PC, and bookmark the list it opens; Ctrl-C stops the page)\n");
    fflush(stdout);
    int sig;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
        ; /* nothing to reload: the trust list is read for each report */
    MHD_stop_daemon(d); /* closes fd */
    spool_close(&p.sp);
    return 0;
}

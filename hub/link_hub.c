/* link_hub.c — the hub's side of the edge link (protocol in link.h).
 *
 * One thread owns the ROUTER socket: it answers offers, writes chunks to
 * partial files and hands complete transfers to ingest workers, which
 * verify the digest and commit through the store (group commit), then
 * queue the result back; the link thread sends ACK/NACK.  Workers and
 * other threads wake the link thread through an eventfd, never by
 * touching its socket (ZeroMQ sockets are not thread-safe). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "hub/clock.h"
#include "hub/digest.h"
#include "hub/disk.h"
#include "hub/handshake_watch.h"
#include "hub/link.h"
#include "hub/log.h"
#include "hub/proto.h"
#include "hub/revoked.h"

#define MAX_XFERS 4096
#define LINK_MAX_CLINICS 512 /* gateways remembered as heard; more are served, just not listed */
#define XFER_IDLE_MS (10 * 60 * 1000)

typedef struct xfer {
    bool     used, committing;
    char     role[64];
    uint64_t id;
    char     sop[65], study[65];
    uint8_t  digest[32];
    uint64_t size, received;
    int      fd;
    char     path[4096];
    int64_t  last_ms;
} xfer;

typedef struct job {
    struct job *next;
    bool        marker;
    char        role[64];
    uint64_t    xfer;
    /* instance */
    char        path[4096];
    uint8_t     digest[32];
    /* marker */
    char        study[65];
    store_marker m;
    char        note[256];
    /* result */
    store_result result;
    char        reason[256];
    int         rc;
} job;

typedef struct routed {
    char      role[64];
    zmq_msg_t route;
    bool      set;
    int64_t   offered_ms; /* when its outbox was last sent (monotonic) */
} routed;

struct link_hub {
    link_hub_config cfg;
    revoked_watch   revoked;
    char            incoming[4096];
    void           *router;
    uint16_t        port;
    int             evfd;
    pthread_t       thread;
    pthread_t      *workers;
    int             n_workers;
    volatile int    stop;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    job            *todo_head, *todo_tail, *done_head;
    xfer           *xf;
    routed         *routes;
    size_t          n_routes;
    /* when each gateway was last heard (wall ms), for the operator's view */
    pthread_mutex_t seen_mu;
    link_clinic     seen[LINK_MAX_CLINICS];
    int             n_seen;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(link_hub *l)
{
    uint64_t one = 1;
    ssize_t r = write(l->evfd, &one, sizeof one);
    (void)r;
}

void link_hub_kick(link_hub *l) { wake(l); }

/* --- ingest workers ----------------------------------------------------- */

static void *worker_main(void *arg)
{
    link_hub *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->todo_head && !l->stop)
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop && !l->todo_head)
            break;
        job *j = l->todo_head;
        l->todo_head = j->next;
        if (!l->todo_head)
            l->todo_tail = NULL;
        pthread_mutex_unlock(&l->mu);
        if (j->marker) {
            j->m.note = j->note;
            j->rc = store_study_marker(l->cfg.st, j->study, &j->m, now_ms());
            bool disk_full = j->rc && disk_full_error(store_dir(l->cfg.st), -j->rc, 0);
            j->result = j->rc == 0 ? STORE_STORED : j->rc == -ENOSPC || disk_full ? STORE_FULL : STORE_FAILED;
            if (disk_full)
                disk_full_reason(store_dir(l->cfg.st), j->reason, sizeof j->reason);
            else if (j->rc)
                snprintf(j->reason, sizeof j->reason, "marker not stored: %s", strerror(-j->rc));
        } else {
            store_put_result res;
            j->rc = store_put_file_expect(l->cfg.st, j->path, j->role, now_ms(), j->digest, &res);
            j->result = res.result;
            snprintf(j->reason, sizeof j->reason, "%s", res.reason);
        }
        pthread_mutex_lock(&l->mu);
        j->next = l->done_head;
        l->done_head = j;
        wake(l);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void submit(link_hub *l, job *j)
{
    pthread_mutex_lock(&l->mu);
    j->next = NULL;
    if (l->todo_tail)
        l->todo_tail->next = j;
    else
        l->todo_head = j;
    l->todo_tail = j;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* --- transfers ------------------------------------------------------------ */

static xfer *find_xfer(link_hub *l, const char *role, uint64_t id)
{
    for (size_t i = 0; i < MAX_XFERS; i++)
        if (l->xf[i].used && l->xf[i].id == id && !strcmp(l->xf[i].role, role))
            return &l->xf[i];
    return NULL;
}

static void drop_xfer(xfer *x, bool unlink_part)
{
    if (x->fd >= 0)
        close(x->fd);
    if (unlink_part)
        unlink(x->path);
    memset(x, 0, sizeof *x);
    x->fd = -1;
}

static xfer *new_xfer(link_hub *l)
{
    xfer *oldest = NULL;
    for (size_t i = 0; i < MAX_XFERS; i++) {
        if (!l->xf[i].used)
            return &l->xf[i];
        if (!l->xf[i].committing && (!oldest || l->xf[i].last_ms < oldest->last_ms))
            oldest = &l->xf[i];
    }
    if (oldest)
        drop_xfer(oldest, false); /* its part file stays: the edge resumes */
    return oldest;
}

static void remember_route(link_hub *l, const proto_msg *m)
{
    for (size_t i = 0; i < l->n_routes; i++)
        if (!strcmp(l->routes[i].role, m->role)) {
            zmq_msg_close(&l->routes[i].route);
            zmq_msg_init(&l->routes[i].route);
            zmq_msg_copy(&l->routes[i].route, (zmq_msg_t *)&m->route);
            return;
        }
    routed *r = realloc(l->routes, (l->n_routes + 1) * sizeof *r);
    if (!r)
        return;
    l->routes = r;
    routed *e = &l->routes[l->n_routes++];
    snprintf(e->role, sizeof e->role, "%s", m->role);
    zmq_msg_init(&e->route);
    zmq_msg_copy(&e->route, (zmq_msg_t *)&m->route);
    e->set = true;
    e->offered_ms = 0; /* never: its first keep-alive sends the outbox */
}

static routed *routed_of(link_hub *l, const char *role)
{
    for (size_t i = 0; i < l->n_routes; i++)
        if (!strcmp(l->routes[i].role, role))
            return &l->routes[i];
    return NULL;
}

static zmq_msg_t *route_of(link_hub *l, const char *role)
{
    routed *r = routed_of(l, role);
    return r ? &r->route : NULL;
}

static void refuse(link_hub *l, proto_msg *m, const char *why)
{
    hub_count_error(l->cfg.metrics, HUB_ERR_PROTOCOL);
    char detail[320];
    snprintf(detail, sizeof detail, "%s: %s", m->cmd[0] ? m->cmd : "(no command)", why);
    store_audit(l->cfg.st, now_ms(), m->role[0] ? m->role : m->peer, "protocol-error", "", detail);
    log_warn("link: refused a message from %s: %s", m->role[0] ? m->role : m->peer, detail);
    if (m->has_route)
        proto_send_error(l->router, &m->route, m->cmd, why);
}

static void send_credit(link_hub *l, zmq_msg_t *route, const xfer *x, const char *cmd)
{
    json_t *h = json_pack("{s:I,s:I,s:I}", "xfer", (json_int_t)x->id, "offset", (json_int_t)x->received,
                          "limit", (json_int_t)(x->received + LINK_WINDOW));
    proto_send(l->router, route, cmd, h, NULL, 0);
    json_decref(h);
}

static void on_offer(link_hub *l, proto_msg *m)
{
    const char *sop = proto_str(m, "sop"), *study = proto_str(m, "study"), *dg = proto_str(m, "digest");
    long long id = proto_int(m, "xfer", -1), size = proto_int(m, "size", -1);
    if (!sop || !study || strlen(sop) > 64 || strlen(study) > 64 || !proto_is_hex(dg, 64) || id < 0 || size <= 0 ||
        size > (1LL << 40)) {
        refuse(l, m, "OFFER needs xfer, sop, study, digest (64 hex), size");
        return;
    }
    uint8_t digest[32];
    digest_from_hex(dg, digest);
    store_instance have;
    if (store_get_instance(l->cfg.st, sop, &have) == 0 && !memcmp(have.digest, digest, 32)) {
        json_t *h = json_pack("{s:I}", "xfer", (json_int_t)id);
        proto_send(l->router, &m->route, "HAVE", h, NULL, 0);
        json_decref(h);
        return;
    }
    xfer *x = find_xfer(l, m->role, (uint64_t)id);
    if (x && x->committing)
        return; /* the ACK is on its way */
    if (!x) {
        x = new_xfer(l);
        if (!x) {
            refuse(l, m, "too many transfers in progress");
            return;
        }
        x->used = true;
        x->fd = -1;
        snprintf(x->role, sizeof x->role, "%s", m->role);
        x->id = (uint64_t)id;
        snprintf(x->sop, sizeof x->sop, "%s", sop);
        snprintf(x->study, sizeof x->study, "%s", study);
        memcpy(x->digest, digest, 32);
        x->size = (uint64_t)size;
        snprintf(x->path, sizeof x->path, "%.3900s/%.64s-%.64s.part", l->incoming, m->role + 5, dg);
        x->fd = open(x->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (x->fd < 0) {
            log_error("link: cannot open %s: %s", x->path, strerror(errno));
            drop_xfer(x, false);
            refuse(l, m, "hub cannot write incoming data");
            return;
        }
        struct stat st;
        fstat(x->fd, &st);
        x->received = (uint64_t)st.st_size > x->size ? 0 : (uint64_t)st.st_size;
        if ((uint64_t)st.st_size > x->size && ftruncate(x->fd, 0) < 0)
            x->received = 0;
    }
    x->last_ms = clock_mono_ms(); /* idle limit: an interval */
    send_credit(l, &m->route, x, "SEND");
}

/* A chunk that could not be written: the part file goes (its space back),
 * and the edge is told why and to try again later, as after a full store. */
static void chunk_not_written(link_hub *l, proto_msg *m, xfer *x, int err)
{
    const char *dir = store_dir(l->cfg.st);
    char why[256];
    bool full = disk_full_error(dir, err, x->size - x->received);
    if (full)
        disk_full_reason(dir, why, sizeof why);
    else
        snprintf(why, sizeof why, "cannot write the transfer: %s", strerror(err));
    if (full)
        store_count_refused_full(l->cfg.st);
    hub_count_error(l->cfg.metrics, full ? HUB_ERR_STORE_FULL : HUB_ERR_STORE_FAILED);
    log_error("link: %s transfer %llu refused: %s", m->role, (unsigned long long)x->id, why);
    json_t *h = json_pack("{s:I,s:s,s:b}", "xfer", (json_int_t)x->id, "reason", why, "retry", 1);
    proto_send(l->router, &m->route, "NACK", h, NULL, 0);
    json_decref(h);
    drop_xfer(x, true);
}

static void on_chunk(link_hub *l, proto_msg *m)
{
    long long id = proto_int(m, "xfer", -1), off = proto_int(m, "offset", -1);
    xfer *x = id >= 0 ? find_xfer(l, m->role, (uint64_t)id) : NULL;
    if (m->n_data != 1 || off < 0) {
        refuse(l, m, "CHUNK needs xfer, offset and one data frame");
        return;
    }
    if (!x || x->committing)
        return; /* stale chunk of a finished or forgotten transfer */
    size_t n = zmq_msg_size(&m->data[0]);
    if ((uint64_t)off != x->received) {
        if ((uint64_t)off > x->received)
            send_credit(l, &m->route, x, "SEND"); /* a gap: resume where we are */
        return;
    }
    if ((uint64_t)off + n > x->size || (uint64_t)off + n > x->received + LINK_WINDOW) {
        refuse(l, m, "CHUNK beyond the offered size or the granted credit");
        return;
    }
    ssize_t w = pwrite(x->fd, zmq_msg_data(&m->data[0]), n, (off_t)off);
    if (w != (ssize_t)n) {
        chunk_not_written(l, m, x, w < 0 ? errno : ENOSPC); /* short: the disk filled part way */
        return;
    }
    x->received += n;
    x->last_ms = clock_mono_ms(); /* idle limit: an interval */
    send_credit(l, &m->route, x, "CREDIT");
}

static void on_commit(link_hub *l, proto_msg *m)
{
    long long id = proto_int(m, "xfer", -1);
    xfer *x = id >= 0 ? find_xfer(l, m->role, (uint64_t)id) : NULL;
    if (!x) {
        /* unknown: make the edge offer again */
        json_t *h = json_pack("{s:I,s:s,s:b}", "xfer", (json_int_t)id, "reason", "unknown transfer: offer again",
                              "retry", 1);
        proto_send(l->router, &m->route, "NACK", h, NULL, 0);
        json_decref(h);
        return;
    }
    if (x->committing)
        return;
    if (x->received < x->size) {
        send_credit(l, &m->route, x, "SEND");
        return;
    }
    job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    x->committing = true;
    snprintf(j->role, sizeof j->role, "%s", x->role);
    j->xfer = x->id;
    snprintf(j->path, sizeof j->path, "%s", x->path);
    memcpy(j->digest, x->digest, 32);
    submit(l, j);
}

static void on_study_done(link_hub *l, proto_msg *m)
{
    const char *study = proto_str(m, "study"), *note = proto_str(m, "note");
    long long id = proto_int(m, "xfer", -1), expected = proto_int(m, "expected", -1);
    long long prio = proto_int(m, "priority", 0), referral = proto_int(m, "referral", 0);
    if (!study || strlen(study) > 64 || id < 0 || expected < 0 || expected > 1000000 || prio < 0 || prio > 2) {
        refuse(l, m, "STUDY_DONE needs xfer, study, expected, priority 0-2");
        return;
    }
    job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->marker = true;
    snprintf(j->role, sizeof j->role, "%s", m->role);
    j->xfer = (uint64_t)id;
    snprintf(j->study, sizeof j->study, "%s", study);
    snprintf(j->note, sizeof j->note, "%s", note ? note : "");
    j->m.expected = (uint32_t)expected;
    j->m.priority = (uint8_t)prio;
    j->m.referral = referral != 0;
    submit(l, j);
}

typedef struct deliver_ctx {
    link_hub  *l;
    zmq_msg_t *route;
} deliver_ctx;

static int deliver_one(void *ctx, const char *id, const char *kind, const void *data, size_t len)
{
    deliver_ctx *d = ctx;
    json_t *h = json_pack("{s:s,s:s}", "id", id, "kind", kind);
    proto_send(d->l->router, d->route, "DELIVER", h, data, len);
    json_decref(h);
    return 0;
}

static void heard(link_hub *l, const char *facility)
{
    int64_t t = now_ms();
    pthread_mutex_lock(&l->seen_mu);
    int i = 0;
    while (i < l->n_seen && strcmp(l->seen[i].facility, facility))
        i++;
    if (i == l->n_seen && l->n_seen < LINK_MAX_CLINICS)
        snprintf(l->seen[l->n_seen++].facility, sizeof l->seen[0].facility, "%s", facility);
    if (i < l->n_seen)
        l->seen[i].last_seen_ms = t;
    pthread_mutex_unlock(&l->seen_mu);
}

int link_hub_clinics(link_hub *l, link_clinic *out, int max)
{
    int64_t t = now_ms();
    pthread_mutex_lock(&l->seen_mu);
    int n = l->n_seen < max ? l->n_seen : max;
    for (int i = 0; i < n; i++) {
        out[i] = l->seen[i];
        out[i].connected = t - out[i].last_seen_ms < LINK_HEARD_MS;
    }
    pthread_mutex_unlock(&l->seen_mu);
    return n;
}

/* Everything in the facility's outbox (what it acknowledges leaves it). */
static void deliver_outbox(link_hub *l, routed *r)
{
    deliver_ctx d = {l, &r->route};
    r->offered_ms = clock_mono_ms();
    store_outbox_list(l->cfg.st, r->role + 5, deliver_one, &d);
}

/* A person at the clinic confirmed reading an alert: no longer unread
 * (the audit names who and when).  READ_OK either way, so the gateway
 * stops telling; a store that cannot write now gets no answer, and the
 * gateway tells again at its next keep-alive. */
static void on_read(link_hub *l, proto_msg *m)
{
    const char *id = proto_str(m, "id"), *by = proto_str(m, "by");
    long long at = proto_int(m, "at", 0);
    if (!id || !by || !*id || strlen(id) > 200 || strlen(by) > 127 || at <= 0) {
        refuse(l, m, "READ needs id, by (at most 127 bytes) and at");
        return;
    }
    int rc = store_alert_read(l->cfg.st, m->role + 5, id, by, (int64_t)at, now_ms());
    if (rc < 0) {
        log_error("link: %s read alert %s, not recorded: %s (it tells again)", m->role, id, strerror(-rc));
        return;
    }
    if (rc == 1)
        log_info("link: %s confirmed alert %s read", m->role, id); /* the name is in the audit trail */
    json_t *h = json_pack("{s:s}", "id", id);
    proto_send(l->router, &m->route, "READ_OK", h, NULL, 0);
    json_decref(h);
}

static void on_message(link_hub *l, proto_msg *m)
{
    if (revoked_refuse(&l->revoked, m)) {
        revoked_answer(l->router, m);
        return;
    }
    if (strncmp(m->role, "edge:", 5)) {
        hub_count_error(l->cfg.metrics, HUB_ERR_AUTH);
        refuse(l, m, "this key's role may not send studies (edge:<facility> required)");
        return;
    }
    remember_route(l, m);
    heard(l, m->role + 5);
    if (!strcmp(m->cmd, "HELLO")) {
        json_t *h = json_pack("{s:s,s:i}", "role", m->role, "window", LINK_WINDOW);
        proto_send(l->router, &m->route, "WELCOME", h, NULL, 0);
        json_decref(h);
        routed *r = routed_of(l, m->role);
        if (r)
            deliver_outbox(l, r);
    } else if (!strcmp(m->cmd, "READ")) {
        on_read(l, m);
    } else if (!strcmp(m->cmd, "OFFER")) {
        on_offer(l, m);
    } else if (!strcmp(m->cmd, "CHUNK")) {
        on_chunk(l, m);
    } else if (!strcmp(m->cmd, "COMMIT")) {
        on_commit(l, m);
    } else if (!strcmp(m->cmd, "STUDY_DONE")) {
        on_study_done(l, m);
    } else if (!strcmp(m->cmd, "DELIVERED")) {
        const char *id = proto_str(m, "id");
        if (!id)
            refuse(l, m, "DELIVERED needs id");
        else if (store_outbox_ack(l->cfg.st, m->role + 5, id, now_ms()) == 0)
            log_info("link: %s acknowledged delivery %s", m->role, id);
    } else if (!strcmp(m->cmd, "PING")) {
        proto_send(l->router, &m->route, "PONG", NULL, NULL, 0);
        /* What the edge has not acknowledged goes again: a DELIVER it could
         * not keep (its disk full) or that never reached it would otherwise
         * wait for the next report or reconnection — a critical value too. */
        routed *r = routed_of(l, m->role);
        int every = l->cfg.redeliver_ms > 0 ? l->cfg.redeliver_ms : 30000;
        if (r && clock_mono_ms() - r->offered_ms >= every)
            deliver_outbox(l, r);
    } else {
        refuse(l, m, "unknown command");
    }
}

static void finish_jobs(link_hub *l)
{
    pthread_mutex_lock(&l->mu);
    job *done = l->done_head;
    l->done_head = NULL;
    pthread_mutex_unlock(&l->mu);
    while (done) {
        job *j = done;
        done = j->next;
        zmq_msg_t *route = route_of(l, j->role);
        xfer *x = j->marker ? NULL : find_xfer(l, j->role, j->xfer);
        bool ok = j->result == STORE_STORED || j->result == STORE_DUPLICATE || j->result == STORE_CONFLICT;
        static const char *const names[] = {"stored", "duplicate", "conflict", "full", "invalid", "failed"};
        if (route) {
            json_t *h = ok ? json_pack("{s:I,s:s}", "xfer", (json_int_t)j->xfer, "result", names[j->result])
                           : json_pack("{s:I,s:s,s:b}", "xfer", (json_int_t)j->xfer, "reason", j->reason, "retry",
                                       j->result != STORE_INVALID || strstr(j->reason, "digest mismatch"));
            proto_send(l->router, route, ok ? "ACK" : "NACK", h, NULL, 0);
            json_decref(h);
        }
        if (!ok)
            log_warn("link: %s transfer %llu refused: %s", j->role, (unsigned long long)j->xfer, j->reason);
        if (x) /* the part file goes once stored, or when its bytes are wrong */
            drop_xfer(x, ok || j->result == STORE_INVALID);
        free(j);
    }
}

static void expire_idle(link_hub *l)
{
    int64_t t = clock_mono_ms();
    for (size_t i = 0; i < MAX_XFERS; i++)
        if (l->xf[i].used && !l->xf[i].committing && t - l->xf[i].last_ms > XFER_IDLE_MS)
            drop_xfer(&l->xf[i], false);
}

static void *link_main(void *arg)
{
    link_hub *l = arg;
    int64_t last_expire = clock_mono_ms();
    while (!l->stop) {
        zmq_pollitem_t items[2] = {{l->router, 0, ZMQ_POLLIN, 0}, {NULL, l->evfd, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, 500) < 0 && zmq_errno() == ETERM)
            break;
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t v;
            ssize_t r = read(l->evfd, &v, sizeof v);
            (void)r;
            finish_jobs(l);
            for (size_t i = 0; i < l->n_routes; i++)
                deliver_outbox(l, &l->routes[i]);
        }
        for (int burst = 0; burst < 256 && (items[0].revents & ZMQ_POLLIN); burst++) {
            proto_msg m;
            char err[160];
            int rc = proto_recv(l->router, true, ZMQ_DONTWAIT, &m, err, sizeof err);
            if (rc == -EAGAIN)
                break;
            if (rc == PROTO_MALFORMED)
                refuse(l, &m, err);
            else if (rc == PROTO_OK)
                on_message(l, &m);
            proto_msg_close(&m);
            if (rc < 0)
                break;
        }
        if (clock_mono_ms() - last_expire > 60000) {
            expire_idle(l);
            last_expire = clock_mono_ms();
        }
    }
    return NULL;
}

/* Workers leave once the jobs queued are done; the link thread at its next wake. */
static void ask_to_stop(link_hub *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

int link_hub_start(const link_hub_config *cfg, link_hub **out, char *err, size_t errlen)
{
    link_hub *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->cfg = *cfg;
    l->revoked = (revoked_watch){.allow = cfg->allow, .port = "link", .st = cfg->st, .metrics = cfg->metrics};
    l->xf = calloc(MAX_XFERS, sizeof *l->xf);
    snprintf(l->incoming, sizeof l->incoming, "%s", cfg->incoming_dir);
    mkdir(l->incoming, 0700);
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->seen_mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!l->xf || l->evfd < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < MAX_XFERS; i++)
        l->xf[i].fd = -1;
    l->router = proto_router_listen(cfg->zctx, cfg->bind, cfg->port, cfg->secret_key, &l->port, err, errlen);
    if (l->router && cfg->handshakes)
        handshake_watch_add(cfg->handshakes, l->router, "edge port");
    if (!l->router)
        goto fail;
    l->n_workers = cfg->workers > 0 ? cfg->workers : 4;
    l->workers = calloc((size_t)l->n_workers, sizeof *l->workers);
    if (!l->workers) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* A thread that cannot start (a process or memory limit) fails the
     * start: a hub that says ready must be taking the edges' data. */
    int started = 0, trc = 0;
    while (started < l->n_workers && !(trc = pthread_create(&l->workers[started], NULL, worker_main, l)))
        started++;
    if (!trc && !(trc = pthread_create(&l->thread, NULL, link_main, l))) {
        *out = l;
        return 0;
    }
    snprintf(err, errlen, "cannot start the edge link's threads: %s", strerror(trc));
    ask_to_stop(l);
    for (int i = 0; i < started; i++)
        pthread_join(l->workers[i], NULL);
fail:
    if (l->router)
        zmq_close(l->router);
    if (l->evfd >= 0)
        close(l->evfd);
    free(l->workers);
    free(l->xf);
    free(l);
    return -EIO;
}

uint16_t link_hub_port(const link_hub *l) { return l->port; }

void link_hub_stop(link_hub **lp)
{
    if (!lp || !*lp)
        return;
    link_hub *l = *lp;
    ask_to_stop(l);
    wake(l);
    pthread_join(l->thread, NULL);
    for (int i = 0; i < l->n_workers; i++)
        pthread_join(l->workers[i], NULL);
    finish_jobs(l); /* frees results nobody will send */
    for (size_t i = 0; i < MAX_XFERS; i++)
        if (l->xf[i].used)
            drop_xfer(&l->xf[i], false);
    for (size_t i = 0; i < l->n_routes; i++)
        zmq_msg_close(&l->routes[i].route);
    free(l->routes);
    zmq_close(l->router);
    close(l->evfd);
    free(l->workers);
    free(l->xf);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->seen_mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    *lp = NULL;
}

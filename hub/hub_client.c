/* hub_client.c — the reader protocol's client (protocol in hub.h): one
 * ZeroMQ DEALER with CURVE to the hub's reader port.
 *
 * Requests are synchronous: each carries "req" (a counter) and the client
 * waits for the answer with the same "req"; anything else that arrives
 * meanwhile is either a TASK offer (kept, in order, for
 * hub_client_next_offer) or a late answer to an earlier request that timed
 * out (dropped).  NACK and ERROR become HUB_EREFUSED with their reason kept
 * for hub_client_error(); no answer in time is HUB_ETIMEDOUT.
 *
 * A socket monitor watches the CURVE handshake, so a key the hub refuses
 * (not in its allow-list) or a wrong hub key is reported as such at once
 * rather than as a silent timeout.
 *
 * Leases: while the client holds claimed tasks it sends HEARTBEAT on its
 * own, from inside any call, at a third of the lease the hub granted
 * (hub_client_keepalive changes or disables that).
 *
 * A client is not thread-safe: one per thread.  The clients of a process
 * share one ZeroMQ context, made with the first and ended with the last. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <zmq.h>
#include "hub/hub.h"
#include "hub/proto.h"

#define DEFAULT_TIMEOUT_MS 10000
#define FETCH_CHUNK        (1u << 20) /* the hub answers at most 1 MiB per FETCH */
#define MAX_MESSAGE        (PROTO_MAX_DATA + PROTO_MAX_HEADER + 4096)

struct hub_client {
    void    *sock, *mon;
    int      timeout_ms;
    uint64_t req;          /* last request number used */
    uint64_t ready_req;    /* the last READY's number (an ERROR may answer it) */
    char     error[512];
    bool     key_revoked; /* the last ERROR said our key was revoked */
    /* TASK offers received and not yet handed out (FIFO) */
    hub_task *offers;
    size_t    n_offers, cap_offers;
    /* handshake as the monitor saw it */
    int      handshake_failed, connected, connect_retries;
    bool     handshake_refused;  /* the failure was ZAP refusing our key (not a wrong hub key) */
    char     handshake_why[200];
    /* the hub's key, and its next while it changes keypairs: the other is
     * tried when a handshake fails other than by refusing our key */
    char     hub_keys[2][41];
    int      n_hub_keys, key_at;
    char     endpoint[256];
    /* leases and keep-alive */
    int      leases;
    int64_t  lease_until_ms, lease_span_ms, last_hb_ms;
    int      keepalive_ms; /* <0 off, 0 automatic, >0 fixed */
    int      busy;         /* inside a keep-alive: no nesting */
    hub_reader_profile profile;
};

/* --- the shared context -------------------------------------------------------- */

static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static void           *ctx_shared;
static int             ctx_users;

static void *ctx_acquire(void)
{
    pthread_mutex_lock(&ctx_mu);
    if (!ctx_shared)
        ctx_shared = zmq_ctx_new();
    void *ctx = ctx_shared;
    if (ctx)
        ctx_users++;
    pthread_mutex_unlock(&ctx_mu);
    return ctx;
}

static void ctx_release(void)
{
    pthread_mutex_lock(&ctx_mu);
    if (--ctx_users == 0 && ctx_shared) {
        zmq_ctx_term(ctx_shared);
        ctx_shared = NULL;
    }
    pthread_mutex_unlock(&ctx_mu);
}

/* --- small helpers -------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(hub_client *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(hub_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return code;
}

static void copy_str(json_t *o, const char *key, char *dst, size_t n)
{
    json_t *v = json_object_get(o, key);
    snprintf(dst, n, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static long long get_int(json_t *o, const char *key, long long dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static int get_bool(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0);
}

static int parse_task(json_t *j, hub_task *t)
{
    memset(t, 0, sizeof *t);
    if (!json_is_object(j) || get_int(j, "id", -1) < 0)
        return -1;
    t->id = (uint64_t)get_int(j, "id", 0);
    copy_str(j, "study", t->study_uid, sizeof t->study_uid);
    copy_str(j, "kind", t->kind, sizeof t->kind);
    copy_str(j, "priority", t->priority, sizeof t->priority);
    copy_str(j, "state", t->state, sizeof t->state);
    copy_str(j, "modality", t->modality, sizeof t->modality);
    copy_str(j, "body_part", t->body_part, sizeof t->body_part);
    copy_str(j, "facility", t->facility, sizeof t->facility);
    copy_str(j, "note", t->note, sizeof t->note);
    copy_str(j, "triage", t->triage, sizeof t->triage);
    copy_str(j, "patient_id", t->patient_id, sizeof t->patient_id);
    t->due_ms = get_int(j, "due", 0);
    t->referral = get_bool(j, "referral");
    t->review = get_bool(j, "review");
    t->version = (uint32_t)get_int(j, "version", 1);
    t->instances = (uint32_t)get_int(j, "instances", 0);
    copy_str(j, "report_id", t->report_id, sizeof t->report_id);
    copy_str(j, "drafted_by", t->drafted_by, sizeof t->drafted_by);
    copy_str(j, "returned", t->returned, sizeof t->returned);
    copy_str(j, "returned_by", t->returned_by, sizeof t->returned_by);
    t->lease_until_ms = get_int(j, "lease_until", 0);
    return 0;
}

static void push_offer(hub_client *c, const hub_task *t)
{
    if (c->n_offers == c->cap_offers) {
        size_t cap = c->cap_offers ? c->cap_offers * 2 : 8;
        hub_task *q = realloc(c->offers, cap * sizeof *q);
        if (!q)
            return; /* the offer expires at the hub and comes back */
        c->offers = q;
        c->cap_offers = cap;
    }
    c->offers[c->n_offers++] = *t;
}

static void pop_offer(hub_client *c, hub_task *out)
{
    *out = c->offers[0];
    memmove(c->offers, c->offers + 1, (c->n_offers - 1) * sizeof *c->offers);
    c->n_offers--;
}

/* --- the handshake monitor ---------------------------------------------------- */

static void drain_monitor(hub_client *c)
{
    uint16_t id;
    uint32_t value;
    while (proto_monitor_next(c->mon, &id, &value)) {
        if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            c->handshake_failed = 0;
            c->connected = 1;
        } else if (id == ZMQ_EVENT_DISCONNECTED) {
            c->connected = 0;
        } else if (id == ZMQ_EVENT_CONNECT_RETRIED) {
            c->connect_retries++;
        } else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            c->handshake_failed = 1;
            c->handshake_refused = true;
            snprintf(c->handshake_why, sizeof c->handshake_why,
                     "the hub refused our key (ZAP status %u): it is not in the hub's allow-list "
                     "(dxhub allow --role reader:ID, then SIGHUP the hub)", value);
        } else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || id == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            c->handshake_failed = 1;
            c->handshake_refused = false;
            snprintf(c->handshake_why, sizeof c->handshake_why, "%s",
                     c->n_hub_keys > 1 ? "the CURVE handshake with the hub failed with both keys of --hub-key "
                                         "(is either the hub's hub.pub?)"
                                       : "the CURVE handshake with the hub failed (is --hub-key the hub's hub.pub?)");
        }
    }
}

/* --- sending and receiving --------------------------------------------------- */

/* COMMAND, header (with "v"), data frames. */
static int send_msg(hub_client *c, const char *cmd, json_t *h, const struct iovec *frames, int n)
{
    json_object_set_new(h, "v", json_integer(PROTO_VERSION));
    char *text = json_dumps(h, JSON_COMPACT);
    if (!text)
        return fail(c, HUB_EPROTO, "out of memory");
    int rc = zmq_send(c->sock, cmd, strlen(cmd), ZMQ_SNDMORE);
    if (rc >= 0)
        rc = zmq_send(c->sock, text, strlen(text), n > 0 ? ZMQ_SNDMORE : 0);
    for (int i = 0; rc >= 0 && i < n; i++)
        rc = zmq_send(c->sock, frames[i].iov_base ? frames[i].iov_base : "", frames[i].iov_len,
                      i + 1 < n ? ZMQ_SNDMORE : 0);
    free(text);
    if (rc < 0) {
        int e = zmq_errno();
        if (e == EAGAIN)
            return fail(c, HUB_ETIMEDOUT, "%s: cannot send to the hub within %d ms (not connected?)", cmd,
                        c->timeout_ms);
        return fail(c, HUB_EPROTO, "%s: send failed: %s", cmd, zmq_strerror(e));
    }
    return 0;
}

static uint64_t msg_req(const proto_msg *m, int *present)
{
    json_t *r = m->hdr ? json_object_get(m->hdr, "req") : NULL;
    *present = json_is_integer(r);
    return *present ? (uint64_t)json_integer_value(r) : 0;
}

/* Wait until the answer to request `req` (for command cmd) arrives in *m
 * (returns 0; the caller closes *m), or — with req 0 — until a TASK offer
 * has been buffered.  TASKs are buffered whatever we wait for; stale
 * answers are dropped. */
static int wait_for(hub_client *c, uint64_t req, const char *cmd, int timeout_ms, proto_msg *m)
{
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        drain_monitor(c);
        if (c->handshake_failed)
            return fail(c, HUB_EREFUSED, "%s", c->handshake_why);
        for (;;) {
            char err[160];
            int rc = proto_recv(c->sock, false, ZMQ_DONTWAIT, m, err, sizeof err);
            if (rc < 0)
                break; /* EAGAIN: nothing more now */
            if (rc == PROTO_MALFORMED) {
                snprintf(c->error, sizeof c->error, "dropped a malformed message from the hub: %s", err);
                proto_msg_close(m);
                continue;
            }
            if (!strcmp(m->cmd, "TASK")) {
                hub_task t;
                if (parse_task(json_object_get(m->hdr, "task"), &t) == 0)
                    push_offer(c, &t);
                proto_msg_close(m);
                if (!req)
                    return 0;
                continue;
            }
            int has_req;
            uint64_t r = msg_req(m, &has_req);
            if (!strcmp(m->cmd, "ERROR")) {
                const char *to = proto_str(m, "to"), *why = proto_str(m, "error");
                /* Ours: it names our request, or (hubs that do not echo
                 * "req" in ERROR) the command we are waiting on. */
                bool ours = has_req ? (req ? r == req : r == c->ready_req)
                                    : (to && ((req && !strcmp(to, cmd)) || (!req && !strcmp(to, "READY"))));
                if (ours) {
                    c->key_revoked = json_is_true(json_object_get(m->hdr, "revoked"));
                    int code = fail(c, HUB_EREFUSED, "%s", why ? why : "refused by the hub");
                    proto_msg_close(m);
                    return code;
                }
                proto_msg_close(m);
                continue;
            }
            if (req && has_req && r == req) {
                if (!strcmp(m->cmd, "NACK")) {
                    const char *why = proto_str(m, "reason");
                    int code = fail(c, HUB_EREFUSED, "%s", why ? why : "refused by the hub");
                    proto_msg_close(m);
                    return code;
                }
                return 0;
            }
            proto_msg_close(m); /* a late answer to a request we gave up on */
        }
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            break;
        zmq_pollitem_t items[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, (long)left) < 0 && zmq_errno() != EINTR)
            return fail(c, HUB_EPROTO, "poll failed: %s", zmq_strerror(zmq_errno()));
    }
    drain_monitor(c);
    if (req && !c->connected)
        return fail(c, HUB_ETIMEDOUT, "%s: cannot reach the hub at %s within %d ms (%s)", cmd, c->endpoint, timeout_ms,
                    c->connect_retries ? "connection refused: is it running, is the port right?" : "no connection");
    if (req)
        return fail(c, HUB_ETIMEDOUT, "%s: no answer from the hub within %d ms", cmd, timeout_ms);
    return fail(c, HUB_ETIMEDOUT, "no task offered within %d ms", timeout_ms);
}

static void keepalive(hub_client *c);

/* After a refused handshake libzmq does not try again on its own: start a
 * fresh connection, so a key allowed meanwhile (dxhub allow, SIGHUP) works
 * without a new client. */
static void retry_refused(hub_client *c)
{
    drain_monitor(c);
    if (!c->handshake_failed)
        return;
    /* Not our key refused: while the hub changes keypairs it may answer
     * to the other key of --hub-key (a socket option read at connect). */
    if (!c->handshake_refused && c->n_hub_keys > 1) {
        c->key_at = !c->key_at;
        zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, c->hub_keys[c->key_at], 40);
    }
    c->handshake_failed = 0;
    c->connect_retries = 0;
    zmq_disconnect(c->sock, c->endpoint);
    zmq_connect(c->sock, c->endpoint);
}

/* Send cmd with header h (stolen) and frames; wait for an answer named
 * expect into *m (closed by the caller on success). */
static int request(hub_client *c, const char *cmd, json_t *h, const struct iovec *frames, int n, const char *expect,
                   proto_msg *m)
{
    if (strcmp(cmd, "HEARTBEAT"))
        keepalive(c);
    if (!h)
        return fail(c, HUB_EPROTO, "out of memory");
    retry_refused(c);
    int rc;
    for (int attempt = 0;; attempt++) {
        uint64_t req = ++c->req;
        json_object_set_new(h, "req", json_integer((json_int_t)req));
        if ((rc = send_msg(c, cmd, h, frames, n)) == 0)
            rc = wait_for(c, req, cmd, c->timeout_ms, m);
        /* the handshake failed with one key of two: once more, with the other */
        if (rc != HUB_EREFUSED || !c->handshake_failed || c->handshake_refused || c->n_hub_keys < 2 || attempt)
            break;
        retry_refused(c);
    }
    json_decref(h);
    if (rc)
        return rc;
    if (strcmp(m->cmd, expect)) {
        rc = fail(c, HUB_EPROTO, "%s: unexpected answer %s from the hub", cmd, m->cmd);
        proto_msg_close(m);
        return rc;
    }
    return 0;
}

/* --- keep-alive ----------------------------------------------------------------- */

static int keepalive_interval(const hub_client *c)
{
    if (c->keepalive_ms > 0)
        return c->keepalive_ms;
    int64_t span = c->lease_span_ms > 0 ? c->lease_span_ms : 60000;
    int64_t iv = span / 3;
    return (int)(iv < 100 ? 100 : iv > 20000 ? 20000 : iv);
}

static void keepalive(hub_client *c)
{
    if (c->busy || c->keepalive_ms < 0 || c->leases <= 0)
        return;
    if (mono_ms() - c->last_hb_ms < keepalive_interval(c))
        return;
    char saved[sizeof c->error];
    memcpy(saved, c->error, sizeof saved);
    c->busy = 1;
    int n;
    hub_client_heartbeat(c, &n);
    c->busy = 0;
    memcpy(c->error, saved, sizeof saved); /* the caller's error is about the caller's request */
}

/* --- the API --------------------------------------------------------------------- */

int hub_client_open(const hub_client_config *cfg, hub_client **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg || !cfg->endpoint || !cfg->hub_public || !cfg->public_key || !cfg->secret_key) {
        snprintf(err, errlen, "endpoint, hub key and our keypair are required");
        return -EINVAL;
    }
    if (strlen(cfg->hub_public) != 40 || strlen(cfg->public_key) != 40 || strlen(cfg->secret_key) != 40) {
        snprintf(err, errlen, "CURVE keys must be 40 Z85 characters");
        return -EINVAL;
    }
    hub_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    void *ctx = ctx_acquire();
    if (!ctx) {
        free(c);
        snprintf(err, errlen, "cannot create a ZeroMQ context");
        return -EIO;
    }
    c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    snprintf(c->endpoint, sizeof c->endpoint, "%s", cfg->endpoint);
    c->sock = zmq_socket(ctx, ZMQ_DEALER);
    int rc = -EIO;
    if (!c->sock) {
        snprintf(err, errlen, "cannot create a ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    proto_tune(c->sock);
    int64_t maxmsg = MAX_MESSAGE;
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &c->timeout_ms, sizeof c->timeout_ms);
    snprintf(c->hub_keys[0], sizeof c->hub_keys[0], "%s", cfg->hub_public);
    c->n_hub_keys = 1;
    if (cfg->hub_public_next && cfg->hub_public_next[0] && strlen(cfg->hub_public_next) == 40)
        snprintf(c->hub_keys[c->n_hub_keys++], sizeof c->hub_keys[1], "%s", cfg->hub_public_next);
    if (proto_curve_client(c->sock, cfg->public_key, cfg->secret_key, cfg->hub_public) < 0) {
        snprintf(err, errlen, "CURVE setup failed (bad key?): %s", zmq_strerror(zmq_errno()));
        rc = -EINVAL;
        goto fail;
    }
    if (!(c->mon = proto_monitor_open(ctx, c->sock,
                                      ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                          ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CONNECT_RETRIED |
                                          ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))) {
        snprintf(err, errlen, "cannot monitor the connection: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (zmq_connect(c->sock, cfg->endpoint) != 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", cfg->endpoint, zmq_strerror(zmq_errno()));
        rc = -EINVAL;
        goto fail;
    }
    *out = c;
    return 0;
fail:
    proto_monitor_close(c->sock, &c->mon);
    if (c->sock)
        zmq_close(c->sock);
    ctx_release();
    free(c);
    return rc;
}

void hub_client_close(hub_client **cp)
{
    if (!cp || !*cp)
        return;
    hub_client *c = *cp;
    proto_monitor_close(c->sock, &c->mon);
    zmq_close(c->sock);
    ctx_release();
    free(c->offers);
    free(c);
    *cp = NULL;
}

const char *hub_client_error(const hub_client *c) { return c ? c->error : "no client"; }
bool        hub_client_on_next_key(const hub_client *c) { return c && c->connected && c->key_at == 1; }
bool        hub_client_key_revoked(const hub_client *c) { return c && c->key_revoked; }

int hub_client_hello(hub_client *c, char *reader_id, size_t n)
{
    proto_msg m;
    int rc = request(c, "HELLO", json_object(), NULL, 0, "WELCOME", &m);
    if (rc)
        return rc;
    hub_reader_profile *p = &c->profile;
    copy_str(m.hdr, "reader", p->id, sizeof p->id);
    copy_str(m.hdr, "seniority", p->seniority, sizeof p->seniority);
    copy_str(m.hdr, "modalities", p->modalities, sizeof p->modalities);
    p->max_tasks = (int)get_int(m.hdr, "max_tasks", 0);
    proto_msg_close(&m);
    if (reader_id && n)
        snprintf(reader_id, n, "%s", p->id);
    return 0;
}

int hub_client_profile(const hub_client *c, hub_reader_profile *out)
{
    if (!c->profile.id[0])
        return -1;
    *out = c->profile;
    return 0;
}

int hub_client_ready(hub_client *c, int credit)
{
    keepalive(c);
    retry_refused(c);
    json_t *h = json_pack("{s:i,s:I}", "credit", credit < 0 ? 0 : credit, "req", (json_int_t)(++c->req));
    if (!h)
        return fail(c, HUB_EPROTO, "out of memory");
    c->ready_req = c->req;
    int rc = send_msg(c, "READY", h, NULL, 0);
    json_decref(h);
    return rc;
}

int hub_client_next_offer(hub_client *c, int timeout_ms, hub_task *out)
{
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        if (c->n_offers) {
            pop_offer(c, out);
            return 0;
        }
        keepalive(c); /* may buffer offers that arrive meanwhile */
        if (c->n_offers)
            continue;
        int64_t left = deadline - mono_ms();
        if (left < 0)
            left = 0;
        int64_t slice = left;
        if (c->leases > 0 && c->keepalive_ms >= 0) {
            int64_t next_hb = c->last_hb_ms + keepalive_interval(c) - mono_ms();
            if (next_hb < slice)
                slice = next_hb < 1 ? 1 : next_hb;
        }
        proto_msg m;
        int rc = wait_for(c, 0, "READY", (int)slice, &m);
        if (rc == 0)
            continue; /* an offer is buffered */
        if (rc != HUB_ETIMEDOUT)
            return rc;
        if (mono_ms() >= deadline) {
            if (c->n_offers)
                continue;
            return fail(c, HUB_ETIMEDOUT, "no task offered within %d ms", timeout_ms);
        }
    }
}

int hub_client_claim(hub_client *c, uint64_t task, hub_task *out)
{
    proto_msg m;
    int rc = request(c, "CLAIM", json_pack("{s:I}", "task", (json_int_t)task), NULL, 0, "CLAIMED", &m);
    if (rc)
        return rc;
    hub_task t;
    if (parse_task(json_object_get(m.hdr, "task"), &t) < 0) {
        proto_msg_close(&m);
        return fail(c, HUB_EPROTO, "CLAIM: the answer carries no task");
    }
    int64_t until = get_int(m.hdr, "lease_until", 0);
    long long lease_ms = get_int(m.hdr, "lease_ms", 0); /* hub.h's name, should a hub send it */
    proto_msg_close(&m);
    int64_t t_now = now_ms();
    if (until <= 0 && lease_ms > 0)
        until = t_now + lease_ms;
    if (until > 0) {
        c->lease_until_ms = until;
        int64_t span = until - t_now;
        c->lease_span_ms = span < 300 ? 300 : span;
    }
    if (c->leases == 0)
        c->last_hb_ms = mono_ms(); /* the claim itself started the lease */
    c->leases++;
    if (out)
        *out = t;
    return 0;
}

int hub_client_heartbeat(hub_client *c, int *leases)
{
    proto_msg m;
    int64_t sent = now_ms();
    int rc = request(c, "HEARTBEAT", json_object(), NULL, 0, "HEARTBEAT", &m);
    if (rc)
        return rc;
    int n = (int)get_int(m.hdr, "leases", 0);
    proto_msg_close(&m);
    c->leases = n;
    c->last_hb_ms = mono_ms();
    if (n > 0 && c->lease_span_ms > 0)
        c->lease_until_ms = sent + c->lease_span_ms;
    if (leases)
        *leases = n;
    return 0;
}

int hub_client_release(hub_client *c, uint64_t task)
{
    proto_msg m;
    int rc = request(c, "RELEASE", json_pack("{s:I}", "task", (json_int_t)task), NULL, 0, "OK", &m);
    if (rc)
        return rc;
    proto_msg_close(&m);
    if (c->leases > 0)
        c->leases--; /* (an offer released was no lease: the next heartbeat corrects the count) */
    return 0;
}

/* One page of a study listing from offset: appended to *v (grown). */
/* What names a prior in STUDY and FETCH: the study, and a peer hub's
 * report when it is that hub's. */
static void name_prior(json_t *h, const hub_prior *p)
{
    if (!p)
        return;
    json_object_set_new(h, "prior", json_string(p->study));
    if (p->hub && p->hub[0]) {
        json_object_set_new(h, "hub", json_string(p->hub));
        json_object_set_new(h, "report_id", json_string(p->report_id ? p->report_id : ""));
    }
    if (p->ahead)
        json_object_set_new(h, "prefetch", json_true()); /* the hub's trail says so */
}

static int study_page(hub_client *c, uint64_t task, const hub_prior *prior, size_t offset, hub_instance **v,
                      size_t *n, size_t *total)
{
    proto_msg m;
    json_t *h = json_pack("{s:I,s:I}", "task", (json_int_t)task, "offset", (json_int_t)offset);
    name_prior(h, prior);
    int rc = request(c, "STUDY", h, NULL, 0, "STUDY", &m);
    if (rc)
        return rc;
    json_t *list = json_object_get(m.hdr, "instances");
    if (!json_is_array(list)) {
        proto_msg_close(&m);
        return fail(c, HUB_EPROTO, "STUDY: the answer carries no instance list");
    }
    size_t k = json_array_size(list);
    long long t = get_int(m.hdr, "total", -1);
    /* a hub that does not page lists everything at once */
    *total = t < 0 ? offset + k : (size_t)t;
    if (*total > 1000000 || (k == 0 && offset < *total)) {
        proto_msg_close(&m);
        return fail(c, HUB_EPROTO, "STUDY: a listing of %zu instances that does not advance", *total);
    }
    hub_instance *grown = realloc(*v, (*n + k + 1) * sizeof **v);
    if (!grown) {
        proto_msg_close(&m);
        return fail(c, HUB_EPROTO, "out of memory");
    }
    *v = grown;
    for (size_t i = 0; i < k; i++) {
        json_t *o = json_array_get(list, i);
        hub_instance *in = &grown[*n + i];
        memset(in, 0, sizeof *in);
        copy_str(o, "sop", in->sop_uid, sizeof in->sop_uid);
        copy_str(o, "series", in->series_uid, sizeof in->series_uid);
        copy_str(o, "ts", in->ts_uid, sizeof in->ts_uid);
        copy_str(o, "digest", in->digest, sizeof in->digest);
        long long size = get_int(o, "size", -1);
        in->size = size < 0 ? 0 : (uint64_t)size;
        in->number = (int32_t)get_int(o, "number", 0);
        if (!in->sop_uid[0] || size < 0) {
            proto_msg_close(&m);
            return fail(c, HUB_EPROTO, "STUDY: instance %zu lacks its UID or size", offset + i);
        }
    }
    *n += k;
    proto_msg_close(&m);
    return 0;
}

static int study_of(hub_client *c, uint64_t task, const hub_prior *prior, hub_instance **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    hub_instance *v = NULL;
    size_t got = 0, total = 0;
    do {
        int rc = study_page(c, task, prior, got, &v, &got, &total);
        if (rc) {
            free(v);
            return rc;
        }
    } while (got < total);
    if (!v && !(v = calloc(1, sizeof *v)))
        return fail(c, HUB_EPROTO, "out of memory");
    *out = v;
    *n = got;
    return 0;
}

int hub_client_study(hub_client *c, uint64_t task, hub_instance **out, size_t *n)
{
    return study_of(c, task, NULL, out, n);
}

int hub_client_prior_study(hub_client *c, uint64_t task, const hub_prior *prior, hub_instance **out, size_t *n)
{
    if (!prior || !prior->study || !prior->study[0])
        return fail(c, HUB_EPROTO, "STUDY: no prior study named");
    return study_of(c, task, prior, out, n);
}

int hub_client_study_uid(hub_client *c, uint64_t task, char *uid, size_t n)
{
    proto_msg m;
    int rc = request(c, "STUDY", json_pack("{s:I}", "task", (json_int_t)task), NULL, 0, "STUDY", &m);
    if (rc)
        return rc;
    const char *s = proto_str(&m, "study");
    if (!s || !s[0]) {
        proto_msg_close(&m);
        return fail(c, HUB_EPROTO, "STUDY: the hub's answer names no study");
    }
    snprintf(uid, n, "%s", s);
    proto_msg_close(&m);
    return 0;
}

int hub_client_alert(hub_client *c, uint64_t task, hub_alert *out)
{
    *out = (hub_alert){0};
    proto_msg m;
    int rc = request(c, "ALERT", json_pack("{s:I}", "task", (json_int_t)task), NULL, 0, "ALERT", &m);
    if (rc)
        return rc;
    const char *state = proto_str(&m, "state"), *facility = proto_str(&m, "facility");
    const char *report = proto_str(&m, "report_id");
    if (!state || strlen(state) >= sizeof out->state || !facility || strlen(facility) >= sizeof out->facility ||
        !report || strlen(report) >= sizeof out->report_id) {
        proto_msg_close(&m);
        return fail(c, HUB_EPROTO, "ALERT: the hub's answer lacks its state, clinic or report");
    }
    snprintf(out->state, sizeof out->state, "%s", state);
    snprintf(out->facility, sizeof out->facility, "%s", facility);
    snprintf(out->report_id, sizeof out->report_id, "%s", report);
    out->since_ms = (int64_t)proto_int(&m, "since", 0);
    proto_msg_close(&m);
    return 0;
}

int hub_client_relevant_prior(hub_client *c, uint64_t task, hub_relevant *out)
{
    *out = (hub_relevant){0};
    proto_msg m;
    int rc = request(c, "PRIORS", json_pack("{s:I,s:s}", "task", (json_int_t)task, "want", "relevant_prior"), NULL,
                     0, "PRIORS", &m);
    if (rc)
        return rc;
    json_t *p = json_object_get(m.hdr, "relevant_prior");
    const char *study = json_string_value(json_object_get(p, "study"));
    const char *hub = json_string_value(json_object_get(p, "hub"));
    const char *report = json_string_value(json_object_get(p, "report_id"));
    if (p && (!study || strlen(study) >= sizeof out->study || (hub && (strlen(hub) >= sizeof out->hub || !report ||
                                                                         strlen(report) >= sizeof out->report_id)))) {
        proto_msg_close(&m);
        return fail(c, HUB_EPROTO, "PRIORS: the hub's relevant_prior is malformed");
    }
    if (study) {
        snprintf(out->study, sizeof out->study, "%s", study);
        snprintf(out->hub, sizeof out->hub, "%s", hub ? hub : "");
        snprintf(out->report_id, sizeof out->report_id, "%s", hub ? report : "");
    }
    proto_msg_close(&m);
    return 0;
}

static int fetch_of(hub_client *c, uint64_t task, const hub_prior *prior, const char *sop, uint64_t offset,
                    int (*sink)(void *ctx, uint64_t offset, const void *p, size_t n), void *ctx)
{
    for (;;) {
        proto_msg m;
        json_t *h = json_pack("{s:I,s:s,s:I,s:I}", "task", (json_int_t)task, "sop", sop, "offset", (json_int_t)offset,
                              "length", (json_int_t)FETCH_CHUNK);
        name_prior(h, prior);
        int rc = request(c, "FETCH", h, NULL, 0, "DATA", &m);
        if (rc)
            return rc;
        long long at = get_int(m.hdr, "offset", -1), size = get_int(m.hdr, "size", -1);
        int eof = get_bool(m.hdr, "eof");
        const void *p = m.n_data ? zmq_msg_data(&m.data[0]) : NULL;
        size_t n = m.n_data ? zmq_msg_size(&m.data[0]) : 0;
        if (at != (long long)offset || size < 0 || offset + n > (uint64_t)size) {
            proto_msg_close(&m);
            return fail(c, HUB_EPROTO, "FETCH %s: the hub answered offset %lld (size %lld) for offset %llu", sop, at,
                        size, (unsigned long long)offset);
        }
        if (n && sink && sink(ctx, offset, p, n)) {
            proto_msg_close(&m);
            return fail(c, HUB_EREFUSED, "FETCH %s: stopped by the caller at offset %llu", sop,
                        (unsigned long long)offset);
        }
        proto_msg_close(&m);
        offset += n;
        if (eof)
            return 0;
        if (!n)
            return fail(c, HUB_EPROTO, "FETCH %s: no data and no end at offset %llu", sop, (unsigned long long)offset);
    }
}

int hub_client_fetch(hub_client *c, uint64_t task, const char *sop, uint64_t offset,
                     int (*sink)(void *ctx, uint64_t offset, const void *p, size_t n), void *ctx)
{
    return fetch_of(c, task, NULL, sop, offset, sink, ctx);
}

int hub_client_prior_fetch(hub_client *c, uint64_t task, const hub_prior *prior, const char *sop, uint64_t offset,
                           int (*sink)(void *ctx, uint64_t offset, const void *p, size_t n), void *ctx)
{
    if (!prior || !prior->study || !prior->study[0])
        return fail(c, HUB_EPROTO, "FETCH: no prior study named");
    return fetch_of(c, task, prior, sop, offset, sink, ctx);
}

int hub_client_submit(hub_client *c, uint64_t task, const char *action, const char *report_id, const void *report,
                      size_t report_len, const void *sig, size_t sig_len, const void *chain, size_t chain_len,
                      char *state_out, size_t state_len)
{
    if (!action || !report_id)
        return fail(c, HUB_EPROTO, "SUBMIT needs an action and a report id");
    struct iovec f[3];
    int n = 0;
    if (report_len || sig_len || chain_len)
        f[n++] = (struct iovec){(void *)report, report_len};
    if (sig_len || chain_len)
        f[n++] = (struct iovec){(void *)sig, sig_len};
    if (chain_len)
        f[n++] = (struct iovec){(void *)chain, chain_len};
    proto_msg m;
    json_t *h = json_pack("{s:I,s:s,s:s}", "task", (json_int_t)task, "action", action, "report_id", report_id);
    int rc = request(c, "SUBMIT", h, f, n, "ACK", &m);
    if (rc)
        return rc;
    char state[16];
    copy_str(m.hdr, "state", state, sizeof state);
    proto_msg_close(&m);
    /* Still ours while claimed or drafted; review and signed are not. */
    if (strcmp(state, "claimed") && strcmp(state, "drafted") && c->leases > 0)
        c->leases--;
    if (state_out && state_len)
        snprintf(state_out, state_len, "%s", state);
    return 0;
}

int hub_client_keepalive(hub_client *c, int interval_ms)
{
    c->keepalive_ms = interval_ms < 0 ? -1 : interval_ms;
    return keepalive_interval(c);
}

int64_t hub_client_lease_until(const hub_client *c) { return c->lease_until_ms; }

int hub_client_leases(const hub_client *c) { return c->leases; }

/* --- a reader's questions about its tasks: HELD, DRAFT, PRIORS, PRIOR ---------- */

int hub_client_return(hub_client *c, uint64_t task, const char *report_id, const char *reason, char *state_out,
                      size_t state_len)
{
    proto_msg m;
    json_t *h = json_pack("{s:I,s:s,s:s,s:s}", "task", (json_int_t)task, "action", "return", "report_id",
                          report_id ? report_id : "return", "reason", reason ? reason : "");
    int rc = request(c, "SUBMIT", h, NULL, 0, "ACK", &m);
    if (rc)
        return rc;
    char state[16];
    copy_str(m.hdr, "state", state, sizeof state);
    proto_msg_close(&m);
    if (strcmp(state, "claimed") && strcmp(state, "drafted") && c->leases > 0)
        c->leases--; /* the task went back to its resident */
    if (state_out && state_len)
        snprintf(state_out, state_len, "%s", state);
    return 0;
}

int hub_client_held(hub_client *c, hub_task **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    proto_msg m;
    int rc = request(c, "HELD", json_object(), NULL, 0, "HELD", &m);
    if (rc)
        return rc;
    json_t *list = json_object_get(m.hdr, "tasks");
    size_t k = json_array_size(list);
    hub_task *v = calloc(k ? k : 1, sizeof *v);
    if (!v) {
        proto_msg_close(&m);
        return fail(c, HUB_EPROTO, "out of memory");
    }
    for (size_t i = 0; i < k; i++)
        if (parse_task(json_array_get(list, i), &v[*n]) == 0)
            (*n)++;
    proto_msg_close(&m);
    *out = v;
    return 0;
}

/* The first data frame of m as a malloc'd NUL-terminated copy (NULL, 0 when none). */
static int frame_copy(hub_client *c, proto_msg *m, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!m->n_data)
        return 0;
    size_t n = zmq_msg_size(&m->data[0]);
    char *p = malloc(n + 1);
    if (!p)
        return fail(c, HUB_EPROTO, "out of memory");
    memcpy(p, zmq_msg_data(&m->data[0]), n);
    p[n] = '\0';
    *out = p;
    *len = n;
    return 0;
}

int hub_client_draft(hub_client *c, uint64_t task, hub_draft *out)
{
    memset(out, 0, sizeof *out);
    proto_msg m;
    int rc = request(c, "DRAFT", json_pack("{s:I}", "task", (json_int_t)task), NULL, 0, "DRAFT", &m);
    if (rc)
        return rc;
    copy_str(m.hdr, "report_id", out->report_id, sizeof out->report_id);
    copy_str(m.hdr, "drafted_by", out->drafted_by, sizeof out->drafted_by);
    copy_str(m.hdr, "returned", out->returned, sizeof out->returned);
    copy_str(m.hdr, "returned_by", out->returned_by, sizeof out->returned_by);
    rc = frame_copy(c, &m, &out->doc, &out->len);
    proto_msg_close(&m);
    return rc;
}

/* A question whose answer is one JSON frame (PRIORS, PRIOR): the frame
 * into *json; missing names what the answer lacked. */
/* The answer's one frame into *json; with field non-NULL, also the
 * header's field as compact JSON into *field_json ("[]" when absent). */
static int ask_for_frame(hub_client *c, const char *cmd, json_t *hdr, const char *missing, char **json, size_t *len,
                         const char *field, char **field_json)
{
    proto_msg m;
    int rc = request(c, cmd, hdr, NULL, 0, cmd, &m);
    if (rc)
        return rc;
    rc = frame_copy(c, &m, json, len);
    if (!rc && field_json) {
        json_t *f = json_object_get(m.hdr, field);
        *field_json = f ? json_dumps(f, JSON_COMPACT) : strdup("[]");
        if (!*field_json) {
            free(*json);
            *json = NULL;
            rc = fail(c, HUB_EPROTO, "out of memory");
        }
    }
    proto_msg_close(&m);
    if (!rc && !*json)
        return fail(c, HUB_EPROTO, "%s: the hub's answer has no %s", cmd, missing);
    return rc;
}

int hub_client_priors(hub_client *c, uint64_t task, char **json, size_t *len, char **studies)
{
    if (studies)
        *studies = NULL;
    return ask_for_frame(c, "PRIORS", json_pack("{s:I}", "task", (json_int_t)task), "lookup", json, len, "studies",
                         studies);
}

int hub_client_prior(hub_client *c, uint64_t task, const char *report_id, const char *hub, char **json, size_t *len)
{
    json_t *h = json_pack("{s:I,s:s}", "task", (json_int_t)task, "report_id", report_id ? report_id : "");
    if (h && hub && hub[0])
        json_object_set_new(h, "hub", json_string(hub));
    return ask_for_frame(c, "PRIOR", h, "report", json, len, NULL, NULL);
}

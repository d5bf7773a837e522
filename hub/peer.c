/* peer.c — the consortium's hubs asking each other (peer.h).
 *
 * Server: one thread owns the ROUTER; each request is answered before the
 * next is read (lookups are index scans; FETCH pieces are bounded).
 * Client: any HTTP thread may ask; a DEALER socket is taken from a small
 * pool (or made: CURVE handshake) for one request and given back when the
 * answer came in time.  A socket whose answer is late is closed, so a late
 * answer can never be read as the answer to a later question. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "hub/handshake_watch.h"
#include "hub/keys.h"
#include "hub/log.h"
#include "hub/peer.h"
#include "hub/revoked.h"
#include "hub/proto.h"
#include "codecs/banned.h"

_Static_assert(PEER_FETCH_MAX <= PROTO_MAX_DATA, "a FETCH piece must fit a data frame");

#define POOL_MAX      32 /* idle sockets kept, over all peers */

typedef struct pooled {
    peer_def def;
    int      key;        /* 0: def.pub, 1: def.pub_next */
    void    *sock, *mon; /* mon: its connection events (proto_monitor_open), or NULL */
} pooled;

/* What this hub remembers of a peer between calls, under peers.lock. */
typedef struct peer_mem {
    char    name[PEER_NAME_MAX];  /* "" a free slot */
    int     key;                  /* the key a peer with two last answered to (peer_def.pub_next) */
    char    told_why[200];        /* the last failure logged (told_operator), and when */
    int64_t told_ms;
    char    quiet_why[200];       /* it gave no answer at quiet_ms: not asked for PEER_QUIET_MS */
    int64_t quiet_ms;
    bool    asked, answered;      /* its last call (peers_states, for /metrics) */
    int64_t answer_ms;            /* wall clock of its last answer; 0 none */
} peer_mem;

struct peers {
    peer_config      cfg;
    revoked_watch    revoked;
    char            *bind, *pub, *sec, *peers_file;
    char             self_name[PEER_NAME_MAX];
    void            *router;
    uint16_t         port;
    pthread_t        thread;
    bool             running;
    volatile int     stop;
    int              wake_fd; /* eventfd: peers_quiesce wakes the server thread at once */
    pthread_mutex_t  lock; /* defs and pool */
    peer_def         defs[PEERS_MAX];
    size_t           n;
    pooled           pool[POOL_MAX];
    size_t           npool;
    peer_mem         mem[PEERS_MAX]; /* what this hub remembers of each peer (mem_of) */
    _Atomic uint64_t next_id;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int peers_reload(peers *p, char *err, size_t errlen)
{
    peer_def *defs = calloc(PEERS_MAX, sizeof *defs);
    if (!defs)
        return -ENOMEM;
    size_t n;
    int rc = peer_conf_load(p->peers_file, defs, PEERS_MAX, &n, err, errlen);
    if (rc == 0) {
        pthread_mutex_lock(&p->lock);
        memcpy(p->defs, defs, n * sizeof *defs);
        p->n = n;
        for (size_t i = 0; i < PEERS_MAX; i++) { /* the operator may have mended it: ask at once */
            p->mem[i].quiet_ms = 0;
            p->mem[i].asked = p->mem[i].answered = false;
        }
        pthread_mutex_unlock(&p->lock);
    }
    free(defs);
    return rc < 0 ? rc : (int)n;
}

size_t peers_count(peers *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->n;
    pthread_mutex_unlock(&p->lock);
    return n;
}

static bool find_def(peers *p, const char *name, peer_def *out)
{
    bool found = false;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n && !found; i++)
        if (!strcmp(p->defs[i].name, name)) {
            *out = p->defs[i];
            found = true;
        }
    pthread_mutex_unlock(&p->lock);
    return found;
}

/* --- client sockets ------------------------------------------------------------ */

/* The memory of peer name (lock held), made when add and there is room;
 * NULL when there is none. */
static peer_mem *mem_of(peers *p, const char *name, bool add)
{
    peer_mem *free_slot = NULL;
    for (size_t i = 0; i < PEERS_MAX; i++) {
        if (!strcmp(p->mem[i].name, name))
            return &p->mem[i];
        if (!p->mem[i].name[0] && !free_slot)
            free_slot = &p->mem[i];
    }
    if (add && free_slot)
        snprintf(free_slot->name, sizeof free_slot->name, "%s", name);
    return add ? free_slot : NULL;
}

/* Which of a peer's two keys to try first: the one it last answered to. */
static int key_get(peers *p, const peer_def *d)
{
    if (!d->pub_next[0])
        return 0;
    pthread_mutex_lock(&p->lock);
    peer_mem *m = mem_of(p, d->name, false);
    int key = m ? m->key : 0;
    pthread_mutex_unlock(&p->lock);
    return key;
}

static void key_set(peers *p, const char *name, int key)
{
    pthread_mutex_lock(&p->lock);
    peer_mem *m = mem_of(p, name, true);
    if (m)
        m->key = key;
    pthread_mutex_unlock(&p->lock);
}

static void sock_close(void **sock, void **mon)
{
    proto_monitor_close(*sock, mon);
    if (*sock)
        zmq_close(*sock);
    *sock = NULL;
}

/* A socket to d from the pool, or a fresh one (its handshake under way). */
static void *sock_get(peers *p, const peer_def *d, int key, void **mon)
{
    void *s = NULL;
    *mon = NULL;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->npool; i++)
        if (!memcmp(&p->pool[i].def, d, sizeof *d) && p->pool[i].key == key) {
            s = p->pool[i].sock;
            *mon = p->pool[i].mon;
            p->pool[i] = p->pool[--p->npool];
            break;
        }
    pthread_mutex_unlock(&p->lock);
    if (s) {
        uint16_t event;
        uint32_t value;
        while (proto_monitor_next(*mon, &event, &value))
            ; /* what it saw while idle: only this request's events count */
        return s;
    }
    if (!(s = zmq_socket(p->cfg.zctx, ZMQ_DEALER)))
        return NULL;
    *mon = proto_monitor_open(p->cfg.zctx, s,
                              ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                  ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    proto_tune(s);
    if (proto_curve_client(s, p->pub, p->sec, key ? d->pub_next : d->pub) < 0 || zmq_connect(s, d->endpoint) != 0) {
        sock_close(&s, mon);
        return NULL;
    }
    return s;
}

static void sock_put(peers *p, const peer_def *d, int key, void *s, void *mon)
{
    pthread_mutex_lock(&p->lock);
    if (p->npool < POOL_MAX) {
        p->pool[p->npool++] = (pooled){.def = *d, .key = key, .sock = s, .mon = mon};
        s = mon = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    sock_close(&s, &mon);
}

/* One request in flight to one peer. */
typedef struct call {
    peer_def    def;
    void       *sock, *mon;
    uint64_t    id;
    bool        done;
    int         status;
    char        error[200];
    proto_msg   reply;
    /* a peer with two keys (changing keypairs): the request, to send it
     * again with the other key when the handshake with this one fails */
    int         key;
    bool        switched;
    const char *cmd;
    json_t     *hdr;
    bool        connected, shook; /* what its monitor said, read while waiting */
    bool        quiet;            /* not asked: it gave no answer a moment ago (quiet_skip) */
    int         failed;           /* 1: our key refused; 2: the handshake failed */
    uint32_t    zap;
} call;

/* A peer that gave no answer is not asked again for PEER_QUIET_MS: every
 * question meanwhile would wait the whole timeout for it, holding one of
 * the HTTP API's few threads (two lookups at once held all of them here:
 * no health check, no DICOMweb) or a reader's PRIORS.  It is named in the
 * answer as unreachable, with when and why; SIGHUP forgets it. */
#define PEER_QUIET_MS 15000

/* c's peer is quiet: c is done, unreachable, saying since when. */
static bool quiet_skip(peers *p, call *c)
{
    int64_t now = mono_ms();
    pthread_mutex_lock(&p->lock);
    peer_mem *m = mem_of(p, c->def.name, false);
    bool skip = m && m->quiet_ms && now - m->quiet_ms < PEER_QUIET_MS;
    if (skip)
        snprintf(c->error, sizeof c->error, "not asked: it gave no answer %lld s ago (%.100s); asked again in %lld s",
                 (long long)((now - m->quiet_ms) / 1000), m->quiet_why,
                 (long long)((PEER_QUIET_MS - (now - m->quiet_ms) + 999) / 1000));
    pthread_mutex_unlock(&p->lock);
    if (skip) {
        c->done = c->quiet = true;
        c->status = -ETIMEDOUT;
    }
    return skip;
}

size_t peers_states(peers *p, peer_state *out, size_t max)
{
    int64_t now = mono_ms();
    size_t n = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t d = 0; d < p->n && n < max; d++) {
        peer_state *o = &out[n++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", p->defs[d].name);
        const peer_mem *m = mem_of(p, o->name, false);
        if (m) {
            o->asked = m->asked;
            o->answered = m->answered;
            o->answer_ms = m->answer_ms;
            o->quiet = m->quiet_ms && now - m->quiet_ms < PEER_QUIET_MS;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* After a call (not a quiet one): how it went, for peers_states; a peer
 * silent till the timeout goes quiet, one that answered (or said it has
 * no such thing) is asked as usual.  An error (a refused key, a wrong
 * one) is neither: it is the operator's to mend, and told. */
static void call_note(peers *p, const call *c)
{
    bool answered = c->status == 0 || c->status == -ENOENT, silent = c->status == -ETIMEDOUT;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&p->lock);
    peer_mem *m = mem_of(p, c->def.name, true);
    if (m) {
        m->asked = true;
        m->answered = answered;
        if (answered)
            m->answer_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (silent) {
            snprintf(m->quiet_why, sizeof m->quiet_why, "%s", c->error);
            m->quiet_ms = mono_ms();
        } else if (answered) {
            m->quiet_ms = 0;
        }
    }
    pthread_mutex_unlock(&p->lock);
}

static int call_send(peers *p, call *c, const char *cmd, json_t *hdr)
{
    if (!c->switched && quiet_skip(p, c))
        return 0; /* answered already: unreachable */
    if (c->def.pub_next[0] && !c->hdr) { /* kept to send again (call_other_key) */
        c->key = key_get(p, &c->def);
        c->cmd = cmd;
        c->hdr = json_incref(hdr);
    }
    c->sock = sock_get(p, &c->def, c->key, &c->mon);
    if (!c->sock) {
        c->done = true;
        c->status = -EIO;
        snprintf(c->error, sizeof c->error, "cannot connect to %.120s", c->def.endpoint);
        return c->status;
    }
    c->id = atomic_fetch_add(&p->next_id, 1) + 1;
    json_object_set_new(hdr, "id", json_integer((json_int_t)c->id));
    if (proto_send(c->sock, NULL, cmd, hdr, NULL, 0) < 0) {
        sock_close(&c->sock, &c->mon);
        c->done = true;
        c->status = -EIO;
        snprintf(c->error, sizeof c->error, "cannot send to %.120s", c->def.endpoint);
        return c->status;
    }
    return 0;
}

/* Read c's answer (it is ready). */
static void call_read(peers *p, call *c)
{
    char err[160];
    int rc = proto_recv(c->sock, false, ZMQ_DONTWAIT, &c->reply, err, sizeof err);
    if (rc == -EAGAIN)
        return; /* a heartbeat woke us, not a message */
    c->done = true;
    if (rc != PROTO_OK) {
        c->status = -EPROTO;
        snprintf(c->error, sizeof c->error, "malformed answer: %.120s", rc < 0 ? zmq_strerror(-rc) : err);
    } else if (proto_int(&c->reply, "id", -1) != (long long)c->id) {
        c->status = -EPROTO;
        snprintf(c->error, sizeof c->error, "answer to another request");
    } else if (!strcmp(c->reply.cmd, "ERROR")) {
        const char *e = proto_str(&c->reply, "error");
        /* "missing" is a JSON true (not_found): the peer has no such thing */
        c->status = json_is_true(json_object_get(c->reply.hdr, "missing")) ? -ENOENT : -EPROTO;
        snprintf(c->error, sizeof c->error, "%.150s", e ? e : "error");
    } else {
        c->status = 0;
    }
    if (c->status == 0 || c->status == -ENOENT) {
        sock_put(p, &c->def, c->key, c->sock, c->mon); /* in step: reusable */
        c->sock = c->mon = NULL;
    } else {
        sock_close(&c->sock, &c->mon);
    }
}

/* A peer that did not answer in time: what its socket saw says why. A
 * refused key or a wrong peers.conf key is an error to mend, not a peer
 * that is down (which stays "unreachable", -ETIMEDOUT). */
/* The connection events of c's socket since the last look, into c. */
static void read_events(call *c)
{
    uint32_t value;
    uint16_t event;
    while (c->mon && proto_monitor_next(c->mon, &event, &value)) {
        c->connected |= event == ZMQ_EVENT_CONNECTED;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            c->shook = true;
            c->failed = 0;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            c->failed = 1;
            c->zap = value;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            c->failed = c->failed ? c->failed : 2;
        }
    }
}

/* The handshake with one of a peer's two keys failed (not by refusing
 * ours): the same request again on a fresh socket with the other key,
 * once, and that key first from now on. */
static void call_other_key(peers *p, call *c)
{
    sock_close(&c->sock, &c->mon);
    c->key = !c->key;
    c->switched = true;
    c->connected = c->shook = false;
    c->failed = 0;
    key_set(p, c->def.name, c->key);
    log_info("peers: %s did not take the handshake with its %s key in peers.conf; trying the %s", c->def.name,
             c->key ? "first" : "second", c->key ? "second" : "first");
    if (call_send(p, c, c->cmd, c->hdr) < 0)
        c->done = true;
}

static void why_silent(const peers *p, call *c, int timeout)
{
    read_events(c);
    bool connected = c->connected, shook = c->shook;
    int failed = c->failed;
    uint32_t zap = c->zap;
    c->status = failed ? -EACCES : -ETIMEDOUT;
    if (failed == 1)
        snprintf(c->error, sizeof c->error,
                 "it refused this hub's key (ZAP status %u): on %.32s, dxhub allow --role peer:%.32s this hub's "
                 "hub.pub, then SIGHUP",
                 zap, c->def.name, p->self_name);
    else if (failed == 2)
        snprintf(c->error, sizeof c->error,
                 "the encrypted handshake failed: is %.32s's key in peers.conf its own hub.pub?", c->def.name);
    else if (c->mon && !connected && !shook)
        snprintf(c->error, sizeof c->error, "no connection within %d ms (is it running, its peer port open?)",
                 timeout);
    else
        snprintf(c->error, sizeof c->error, "no answer within %d ms", timeout);
}

/* A failed call, for the operator: logged when its reason changes, and
 * at most every TOLD_EVERY_MS while it lasts (a clinic may look up every
 * few seconds). */
#define TOLD_EVERY_MS 60000
static void told_operator(peers *p, const call *c)
{
    if (c->status == 0 || c->status == -ENOENT)
        return;
    int64_t t = mono_ms();
    bool say = false;
    pthread_mutex_lock(&p->lock);
    peer_mem *m = mem_of(p, c->def.name, true);
    if (m && (strcmp(m->told_why, c->error) || t - m->told_ms >= TOLD_EVERY_MS)) {
        snprintf(m->told_why, sizeof m->told_why, "%s", c->error);
        m->told_ms = t;
        say = true;
    }
    pthread_mutex_unlock(&p->lock);
    if (say)
        log_warn("peers: %s: %s", c->def.name, c->error);
}

/* Wait for every call's answer until the timeout; late ones fail. */
static void call_wait(peers *p, call *calls, size_t n)
{
    int timeout = p->cfg.timeout_ms > 0 ? p->cfg.timeout_ms : 2000;
    int64_t deadline = mono_ms() + timeout;
    for (;;) {
        zmq_pollitem_t items[2 * PEERS_MAX];
        size_t idx[2 * PEERS_MAX], k = 0;
        for (size_t i = 0; i < n; i++)
            if (!calls[i].done) {
                items[k] = (zmq_pollitem_t){calls[i].sock, 0, ZMQ_POLLIN, 0};
                idx[k++] = i;
                if (calls[i].hdr && !calls[i].switched && calls[i].mon) { /* its handshake, to try the other key */
                    items[k] = (zmq_pollitem_t){calls[i].mon, 0, ZMQ_POLLIN, 0};
                    idx[k++] = i;
                }
            }
        int64_t left = deadline - mono_ms();
        if (!k || left <= 0)
            break;
        if (zmq_poll(items, (int)k, (long)left) < 0 && zmq_errno() != EINTR)
            break;
        for (size_t j = 0; j < k; j++) {
            call *c = &calls[idx[j]];
            if (!(items[j].revents & ZMQ_POLLIN) || c->done)
                continue;
            if (items[j].socket == c->sock) {
                call_read(p, c);
            } else if (items[j].socket == c->mon) {
                read_events(c);
                if (c->failed == 2)
                    call_other_key(p, c);
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!calls[i].done) {
            calls[i].done = true;
            why_silent(p, &calls[i], timeout);
            sock_close(&calls[i].sock, &calls[i].mon); /* a late answer must not meet the next request */
        }
    for (size_t i = 0; i < n; i++) {
        if (!calls[i].quiet) { /* a quiet one was said when it went quiet */
            call_note(p, &calls[i]);
            told_operator(p, &calls[i]);
        }
        if (calls[i].switched && calls[i].status == 0 && calls[i].key == 1) /* said once: later calls start there */
            log_info("peers: %s answers to its second key in peers.conf: give that key alone once its change "
                     "is over", calls[i].def.name);
        json_decref(calls[i].hdr);
        calls[i].hdr = NULL;
    }
}

int peers_lookup_all(peers *p, const peer_lookup_q *q, peer_answer **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    call *calls = calloc(PEERS_MAX, sizeof *calls);
    if (!calls)
        return -ENOMEM;
    pthread_mutex_lock(&p->lock);
    size_t n = p->n;
    for (size_t i = 0; i < n; i++)
        calls[i].def = p->defs[i];
    pthread_mutex_unlock(&p->lock);
    peer_answer *a = calloc(n ? n : 1, sizeof *a);
    if (!a) {
        free(calls);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, "/api/v1/peers/%s", calls[i].def.name);
        json_t *h = json_pack("{s:s,s:I,s:s,s:s}", "patient", q->patient_id, "since", (json_int_t)q->since_ms,
                              "asking", q->asking ? q->asking : "", "link_prefix", prefix);
        if (q->type)
            json_object_set_new(h, "type", json_string(q->type));
        call_send(p, &calls[i], "LOOKUP", h);
        json_decref(h);
    }
    call_wait(p, calls, n);
    for (size_t i = 0; i < n; i++) {
        call *c = &calls[i];
        snprintf(a[i].name, sizeof a[i].name, "%s", c->def.name);
        a[i].status = c->status;
        snprintf(a[i].error, sizeof a[i].error, "%s", c->error);
        if (c->status == 0 && c->reply.n_data == 1 && strcmp(c->reply.cmd, "ANSWER") == 0) {
            size_t len = zmq_msg_size(&c->reply.data[0]);
            if ((a[i].body = malloc(len + 1))) {
                memcpy(a[i].body, zmq_msg_data(&c->reply.data[0]), len);
                a[i].body[len] = 0;
                a[i].len = len;
            }
        } else if (c->status == 0) {
            a[i].status = -EPROTO;
            snprintf(a[i].error, sizeof a[i].error, "unexpected answer %s", c->reply.cmd);
        }
        proto_msg_close(&c->reply);
    }
    free(calls);
    *out = a;
    *nout = n;
    return 0;
}

void peer_answers_free(peer_answer *a, size_t n)
{
    for (size_t i = 0; a && i < n; i++)
        free(a[i].body);
    free(a);
}

/* One request to one named peer; on success c->reply holds the answer. */
static int ask_one(peers *p, const char *name, const char *cmd, json_t *hdr, call *c, char *why, size_t whylen)
{
    memset(c, 0, sizeof *c);
    if (!find_def(p, name, &c->def)) {
        snprintf(why, whylen, "no peer hub named %s in peers.conf", name);
        return -ENOENT;
    }
    if (call_send(p, c, cmd, hdr) == 0)
        call_wait(p, c, 1);
    if (c->status < 0) {
        snprintf(why, whylen, "%s", c->error);
        proto_msg_close(&c->reply);
    }
    return c->status;
}

/* The answer's one data frame, copied; -EPROTO without one. */
static int take_data(call *c, const char *want, char **out, size_t *len, char *why, size_t whylen)
{
    if (strcmp(c->reply.cmd, want) || c->reply.n_data != 1) {
        snprintf(why, whylen, "unexpected answer %s", c->reply.cmd);
        proto_msg_close(&c->reply);
        return -EPROTO;
    }
    size_t n = zmq_msg_size(&c->reply.data[0]);
    char *b = malloc(n + 1);
    if (b) {
        memcpy(b, zmq_msg_data(&c->reply.data[0]), n);
        b[n] = 0;
    }
    proto_msg_close(&c->reply);
    if (!b)
        return -ENOMEM;
    *out = b;
    *len = n;
    return 0;
}

int peers_report(peers *p, const char *name, const char *id, const char *asking, char **out, size_t *len, char *why,
                 size_t whylen)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "/api/v1/peers/%s", name);
    json_t *h = json_pack("{s:s,s:s,s:s}", "report", id, "asking", asking ? asking : "", "link_prefix", prefix);
    call c;
    int rc = ask_one(p, name, "REPORT", h, &c, why, whylen);
    json_decref(h);
    return rc < 0 ? rc : take_data(&c, "ANSWER", out, len, why, whylen);
}

int peers_preview(peers *p, const char *name, const char *sop, const char *asking, char **out, size_t *len, char *why,
                  size_t whylen)
{
    json_t *h = json_pack("{s:s,s:s}", "sop", sop, "asking", asking ? asking : "");
    call c;
    int rc = ask_one(p, name, "PREVIEW", h, &c, why, whylen);
    json_decref(h);
    return rc < 0 ? rc : take_data(&c, "DATA", out, len, why, whylen);
}

int peers_fetch(peers *p, const char *name, const char *sop, uint64_t offset, size_t len, const char *asking,
                void *buf, size_t *got, uint64_t *total, char *why, size_t whylen)
{
    if (len > PEER_FETCH_MAX)
        len = PEER_FETCH_MAX;
    json_t *h = json_pack("{s:s,s:I,s:I,s:s}", "sop", sop, "offset", (json_int_t)offset, "length", (json_int_t)len,
                          "asking", asking ? asking : "");
    call c;
    int rc = ask_one(p, name, "FETCH", h, &c, why, whylen);
    json_decref(h);
    if (rc < 0)
        return rc;
    long long size = proto_int(&c.reply, "size", -1);
    size_t n = c.reply.n_data == 1 ? zmq_msg_size(&c.reply.data[0]) : 0;
    if (strcmp(c.reply.cmd, "DATA") || c.reply.n_data != 1 || size < 0 || n > len) {
        snprintf(why, whylen, "unexpected answer %s", c.reply.cmd);
        proto_msg_close(&c.reply);
        return -EPROTO;
    }
    memcpy(buf, zmq_msg_data(&c.reply.data[0]), n);
    *got = n;
    *total = (uint64_t)size;
    proto_msg_close(&c.reply);
    return 0;
}

/* --- server ------------------------------------------------------------------------ */

static void refuse(peers *p, proto_msg *m, const char *why)
{
    hub_count_error(p->cfg.metrics, HUB_ERR_PROTOCOL);
    const char *who = m->role[0] ? m->role : m->peer;
    store_audit(p->cfg.st, wall_ms(), who, "protocol-error", "", why);
    log_warn("peer link: refused a message from %s: %s", who, why);
    json_t *h = json_pack("{s:s,s:s}", "error", why, "to", m->cmd);
    json_t *id = m->hdr ? json_object_get(m->hdr, "id") : NULL;
    if (json_is_integer(id))
        json_object_set(h, "id", id);
    proto_send(p->router, m->has_route ? &m->route : NULL, "ERROR", h, NULL, 0);
    json_decref(h);
}

static void answer(peers *p, proto_msg *m, const char *cmd, json_t *h, const void *data, size_t len)
{
    json_t *id = json_object_get(m->hdr, "id");
    if (json_is_integer(id))
        json_object_set(h, "id", id);
    proto_send(p->router, &m->route, cmd, h, data, len);
    json_decref(h);
}

static void not_found(peers *p, proto_msg *m, const char *why)
{
    answer(p, m, "ERROR", json_pack("{s:s,s:s,s:b}", "error", why, "to", m->cmd, "missing", 1), NULL, 0);
}

/* "peer:B for facility X" is who asked; the audit names both. */
static void who_of(const proto_msg *m, char *out, size_t n)
{
    const char *asking = proto_str(m, "asking");
    if (asking && asking[0])
        snprintf(out, n, "%.40s/%.30s", m->role, asking);
    else
        snprintf(out, n, "%.70s", m->role);
}

static void serve_lookup(peers *p, proto_msg *m, const char *who)
{
    const char *patient = proto_str(m, "patient");
    if (!patient) {
        refuse(p, m, "LOOKUP needs a patient");
        return;
    }
    peer_lookup_q q = {.patient_id = patient, .type = proto_str(m, "type"), .asking = proto_str(m, "asking"),
                       .link_prefix = proto_str(m, "link_prefix"), .since_ms = proto_int(m, "since", 0)};
    if (q.link_prefix && (strncmp(q.link_prefix, "/api/v1/", 8) || strlen(q.link_prefix) > 120 ||
                          strpbrk(q.link_prefix, "\"\\?#"))) {
        refuse(p, m, "link_prefix must be a path under /api/v1/");
        return;
    }
    char *out = NULL;
    size_t len = 0;
    int rc = p->cfg.handlers.lookup(p->cfg.handlers.ctx, &q, who, &out, &len);
    if (rc < 0)
        refuse(p, m, rc == -EINVAL ? "LOOKUP: bad patient, type or since" : "LOOKUP failed at this hub");
    else if (len > PROTO_MAX_DATA)
        refuse(p, m, "the answer is too large for one message; narrow it with since or type");
    else
        answer(p, m, "ANSWER", json_object(), out, len);
    free(out);
}

static void serve_report(peers *p, proto_msg *m, const char *who)
{
    const char *id = proto_str(m, "report"), *prefix = proto_str(m, "link_prefix");
    if (!id || (prefix && (strncmp(prefix, "/api/v1/", 8) || strlen(prefix) > 120 || strpbrk(prefix, "\"\\?#")))) {
        refuse(p, m, "REPORT needs a report id (and a link_prefix under /api/v1/)");
        return;
    }
    char *out = NULL;
    size_t len = 0;
    int rc = p->cfg.handlers.report(p->cfg.handlers.ctx, id, prefix, who, &out, &len);
    if (rc == -ENOENT)
        not_found(p, m, "no such report");
    else if (rc < 0 || len > PROTO_MAX_DATA)
        refuse(p, m, rc == -EINVAL ? "REPORT: not a report id" : "REPORT failed at this hub");
    else
        answer(p, m, "ANSWER", json_object(), out, len);
    free(out);
}

static void serve_preview(peers *p, proto_msg *m, const char *who)
{
    const char *sop = proto_str(m, "sop");
    char *out = NULL, why[200] = "";
    size_t len = 0;
    int rc = sop ? p->cfg.handlers.preview(p->cfg.handlers.ctx, sop, who, &out, &len, why, sizeof why) : -EINVAL;
    if (rc == -ENOENT)
        not_found(p, m, "no such instance");
    else if (rc < 0 || len > PROTO_MAX_DATA)
        refuse(p, m, why[0] ? why : "PREVIEW needs a sop");
    else
        answer(p, m, "DATA", json_pack("{s:I}", "size", (json_int_t)len), out ? out : "", len);
    free(out);
}

static void serve_fetch(peers *p, proto_msg *m, const char *who, uint8_t *buf)
{
    const char *sop = proto_str(m, "sop");
    long long off = proto_int(m, "offset", -1), len = proto_int(m, "length", -1);
    if (!sop || off < 0 || len < 0 || len > PEER_FETCH_MAX) {
        refuse(p, m, "FETCH needs sop, offset and length (at most 1 MiB)");
        return;
    }
    store_instance in;
    if (store_get_instance(p->cfg.st, sop, &in) != 0) {
        not_found(p, m, "no such instance");
        return;
    }
    char detail[160];
    snprintf(detail, sizeof detail, "%.64s", sop);
    if (p->cfg.handlers.audit(p->cfg.handlers.ctx, who, "read-instance", in.study_uid, detail) < 0) {
        refuse(p, m, "audit trail cannot be written; data withheld");
        return;
    }
    long k = (uint64_t)off >= in.size ? 0 : store_read_instance(p->cfg.st, &in, (uint64_t)off, buf, (size_t)len);
    if (k < 0) {
        refuse(p, m, "stored bytes unreadable");
        return;
    }
    answer(p, m, "DATA", json_pack("{s:I,s:I}", "size", (json_int_t)in.size, "offset", (json_int_t)off), buf,
           (size_t)k);
}

static void serve_one(peers *p, uint8_t *buf)
{
    proto_msg m;
    char err[200];
    int rc = proto_recv(p->router, true, ZMQ_DONTWAIT, &m, err, sizeof err);
    if (rc < 0)
        return;
    if (rc == PROTO_MALFORMED) {
        refuse(p, &m, err);
    } else if (revoked_refuse(&p->revoked, &m)) {
        revoked_answer(p->router, &m);
    } else if (strncmp(m.role, "peer:", 5)) {
        char why[128];
        snprintf(why, sizeof why, "role %.60s may not use the peer link", m.role[0] ? m.role : "(none)");
        hub_count_error(p->cfg.metrics, HUB_ERR_AUTH);
        refuse(p, &m, why);
    } else {
        char who[80];
        who_of(&m, who, sizeof who);
        if (!strcmp(m.cmd, "LOOKUP"))
            serve_lookup(p, &m, who);
        else if (!strcmp(m.cmd, "REPORT"))
            serve_report(p, &m, who);
        else if (!strcmp(m.cmd, "FETCH"))
            serve_fetch(p, &m, who, buf);
        else if (!strcmp(m.cmd, "PREVIEW"))
            serve_preview(p, &m, who);
        else
            refuse(p, &m, "unknown command (LOOKUP, REPORT, FETCH, PREVIEW)");
    }
    proto_msg_close(&m);
}

static void *server_main(void *arg)
{
    peers *p = arg;
    uint8_t *buf = malloc(PEER_FETCH_MAX);
    while (buf && !p->stop) {
        zmq_pollitem_t it[2] = {{p->router, 0, ZMQ_POLLIN, 0}, {NULL, p->wake_fd, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(it, 2, -1);
        if (rc < 0 && zmq_errno() == ETERM)
            break;
        if (rc > 0 && (it[0].revents & ZMQ_POLLIN))
            serve_one(p, buf);
    }
    free(buf);
    return NULL;
}

/* --- life cycle --------------------------------------------------------------------- */

int peers_start(const peer_config *cfg, peers **out, char *err, size_t errlen)
{
    *out = NULL;
    peers *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->cfg = *cfg;
    p->revoked = (revoked_watch){.allow = cfg->allow, .port = "peer link", .st = cfg->st, .metrics = cfg->metrics};
    pthread_mutex_init(&p->lock, NULL);
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->bind = strdup(cfg->bind ? cfg->bind : "127.0.0.1");
    p->pub = strdup(cfg->public_key ? cfg->public_key : "");
    p->sec = strdup(cfg->secret_key ? cfg->secret_key : "");
    p->peers_file = cfg->peers_file ? strdup(cfg->peers_file) : NULL;
    snprintf(p->self_name, sizeof p->self_name, "%s", cfg->self_name ? cfg->self_name : "NAME");
    int rc = 0;
    if (!p->bind || !p->pub || !p->sec || (cfg->peers_file && !p->peers_file) || p->wake_fd < 0) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = peers_reload(p, err, errlen)) < 0)
        goto fail;
    if (cfg->port >= 0) {
        p->router = proto_router_listen(cfg->zctx, p->bind, (uint16_t)cfg->port, p->sec, &p->port, err, errlen);
        if (p->router && cfg->handshakes)
            handshake_watch_add(cfg->handshakes, p->router, "peer port");
        if (!p->router) {
            rc = -EIO;
            goto fail;
        }
        int trc = pthread_create(&p->thread, NULL, server_main, p);
        if (trc != 0) {
            snprintf(err, errlen, "cannot start the peer link thread: %s", strerror(trc));
            rc = -EAGAIN;
            goto fail;
        }
        p->running = true;
    }
    *out = p;
    return 0;
fail:
    peers_stop(&p);
    return rc;
}

uint16_t peers_port(const peers *p) { return p ? p->port : 0; }

void peers_quiesce(peers *p)
{
    if (!p)
        return;
    p->stop = 1;
    uint64_t one = 1;
    if (p->wake_fd >= 0 && write(p->wake_fd, &one, sizeof one) < 0) { /* a full counter wakes it as well */
    }
    if (p->running)
        pthread_join(p->thread, NULL);
    p->running = false;
}

void peers_stop(peers **pp)
{
    if (!pp || !*pp)
        return;
    peers *p = *pp;
    peers_quiesce(p);
    if (p->router)
        zmq_close(p->router);
    for (size_t i = 0; i < p->npool; i++)
        sock_close(&p->pool[i].sock, &p->pool[i].mon);
    pthread_mutex_destroy(&p->lock);
    if (p->wake_fd >= 0)
        close(p->wake_fd);
    free(p->bind);
    free(p->pub);
    free(p->sec);
    free(p->peers_file);
    free(p);
    *pp = NULL;
}

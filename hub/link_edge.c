/* link_edge.c — the edge's forwarding loop (protocol in link.h).
 *
 * Offers queued items best first, sends chunks within the credit the hub
 * grants — always for the most urgent transfer that has credit, so a STAT
 * study overtakes routine ones already on the wire — and removes an item
 * only on the hub's ACK (or HAVE).  A silent hub or a dropped connection
 * is met with exponential backoff with jitter, and transfers resume at the
 * offset the hub reports. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "hub/clock.h"
#include "hub/digest.h"
#include "hub/edge.h"
#include "hub/link.h"
#include "hub/log.h"
#include "hub/proto.h"

#define MAX_SLOTS 16
#define HUB_SILENCE_MS 15000
#define OFFER_RETRY_MS 20000
#define LIST_EVERY_MS 500
/* The edge's chunks are smaller than the PROTO_CHUNK the hub accepts: the
 * hub confirms (CREDIT) a chunk once all of it is written, so a 256 KiB
 * chunk left up to a quarter MiB on the line unconfirmed, and a STAT
 * chunk queued behind a whole one. */
#define LINK_CHUNK (64 * 1024)
/* Bytes on their way, not yet confirmed written by the hub.  It must cover
 * the round trip plus a loss's retransmission timeout (>= 200 ms) at the
 * line rate, or the line idles after each timeout: at 10 Mbit/s, 40 ms RTT
 * and 1% loss 512 KiB of 256 KiB chunks left it idle ~3% of the time
 * (bench/link.sh).  768 KiB of 64 KiB chunks covers 10 Mbit/s with 300 ms
 * of loss recovery; a STAT chunk waits behind at most 0.6 s of it there. */
#define LINK_AHEAD (768 * 1024)

typedef struct slot {
    bool       used;
    spool_item it;
    uint64_t   next_off, limit;
    uint64_t   hub_off;    /* what the hub last said it has written */
    bool       granted, committed;
    int64_t    last_ms;
    unsigned   hello_gen;  /* the HELLO this transfer was last offered behind */
} slot;

struct edge_link {
    edge_link_config cfg;
    void            *dealer;
    void            *monitor;    /* PAIR: the dealer's connection events */
    pthread_t        thread;
    volatile int     stop;
    slot             slots[MAX_SLOTS];
    bool             connected;
    bool             refill;     /* a slot came free: offer the next item now */
    int64_t          last_rx_ms, last_hello_ms, last_list_ms, socket_ms;
    unsigned         hello_gen;  /* HELLOs sent */
    uint8_t         *chunk;
    char             link_state[32];
    unsigned         rng;
    log_repeat       handshake_told; /* the last handshake failure logged; zeroed once connected */
    int              key_at;         /* the key the next socket uses: 0 hub_pub, 1 hub_pub_next */
    int              socket_key;     /* the key the current socket uses */
    unsigned         keys_failed;    /* bit per key whose handshake failed since the hub last answered */
    bool             next_key_said;  /* logged that the hub answers to its next key */
};

#define HANDSHAKE_LOG_MS 60000 /* a handshake failure that lasts is logged again this often */

static void set_state(edge_link *l, const char *state, const char *error)
{
    if (!strcmp(l->link_state, state) && !error)
        return;
    snprintf(l->link_state, sizeof l->link_state, "%s", state);
    spool_set_link(l->cfg.sp, state, error, clock_wall_ms());
}

static int send_msg(edge_link *l, const char *cmd, json_t *h, const void *data, size_t len)
{
    /* ZMQ_IMMEDIATE: nothing queues for a hub we are not connected to. */
    json_object_set_new(h, "v", json_integer(PROTO_VERSION));
    char *text = json_dumps(h, JSON_COMPACT);
    int rc = -ENOMEM;
    if (text) {
        rc = zmq_send(l->dealer, cmd, strlen(cmd), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ? -zmq_errno() : 0;
        if (!rc && zmq_send(l->dealer, text, strlen(text), (data ? ZMQ_SNDMORE : 0)) < 0)
            rc = -zmq_errno();
        if (!rc && data && zmq_send(l->dealer, data, len, 0) < 0)
            rc = -zmq_errno();
        free(text);
    }
    json_decref(h);
    return rc;
}

static slot *slot_of(edge_link *l, long long xfer)
{
    for (int i = 0; i < MAX_SLOTS; i++)
        if (l->slots[i].used && (long long)l->slots[i].it.seq == xfer)
            return &l->slots[i];
    return NULL;
}

static void offer(edge_link *l, slot *s)
{
    s->last_ms = clock_mono_ms();
    s->granted = s->committed = false;
    s->hello_gen = l->hello_gen;
    if (s->it.kind == SPOOL_MARKER) {
        send_msg(l, "STUDY_DONE",
                 json_pack("{s:I,s:s,s:i,s:i,s:i,s:s}", "xfer", (json_int_t)s->it.seq, "study", s->it.study_uid,
                           "expected", (int)s->it.expected, "priority", s->it.priority, "referral",
                           s->it.referral, "note", s->it.note),
                 NULL, 0);
        return;
    }
    char hex[65];
    digest_hex(s->it.digest, hex);
    send_msg(l, "OFFER",
             json_pack("{s:I,s:s,s:s,s:s,s:I,s:i}", "xfer", (json_int_t)s->it.seq, "sop", s->it.sop_uid, "study",
                       s->it.study_uid, "digest", hex, "size", (json_int_t)s->it.size, "priority", s->it.priority),
             NULL, 0);
}

/* The longest wait between tries of an item (exponential backoff's cap). */
#define BACKOFF_MAX_MS 300000

static void backoff(edge_link *l, slot *s, const char *why, bool permanent)
{
    spool_item it = s->it;
    it.attempts++;
    snprintf(it.last_error, sizeof it.last_error, "%s", why);
    if (permanent) {
        it.failed = 1;
        log_error("link: the hub refused item %llu for good: %s (kept in the spool)", (unsigned long long)it.seq, why);
    } else {
        /* exponential backoff with jitter: 1 s, 2 s, 4 s ... capped at 5 min */
        int64_t base = 1000LL << (it.attempts < 9 ? it.attempts : 9);
        if (base > BACKOFF_MAX_MS)
            base = BACKOFF_MAX_MS;
        it.next_try_ms = clock_wall_ms() + base / 2 + (int64_t)(rand_r(&l->rng) % (unsigned)(base / 2 + 1));
        log_warn("link: item %llu will be retried: %s", (unsigned long long)it.seq, why);
    }
    spool_update(l->cfg.sp, &it);
    s->used = false;
    l->refill = true;
    set_state(l, l->connected ? "connected" : "down", why);
}

/* A person at the clinic confirmed reading an alert: the hub keeps it
 * "unread" (and its operator told to phone) until it hears this. */
static int tell_read(void *ctx, const char *id, const spool_confirmation *c)
{
    send_msg(ctx, "READ", json_pack("{s:s,s:s,s:I}", "id", id, "by", c->by, "at", (json_int_t)c->at_ms), NULL, 0);
    return 0;
}

static void on_message(edge_link *l, proto_msg *m)
{
    l->last_rx_ms = clock_mono_ms();
    long long xfer = proto_int(m, "xfer", -1);
    slot *s = slot_of(l, xfer);
    if (!strcmp(m->cmd, "WELCOME")) {
        if (!l->connected)
            log_info("link: connected to the hub as %s", proto_str(m, "role") ? proto_str(m, "role") : "?");
        l->handshake_told = (log_repeat){0};
        l->keys_failed = 0;
        if (l->key_at && !l->next_key_said) {
            log_warn("link: the hub answers to the second key of --hub-key (%s): it has its new keypair; "
                     "give that key alone once the change is over", l->cfg.hub_pub_next);
            l->next_key_said = true;
        }
        l->connected = true;
        set_state(l, "connected", NULL);
        for (int i = 0; i < MAX_SLOTS; i++) /* what went out behind this HELLO needs no second offer */
            if (l->slots[i].used && l->slots[i].hello_gen != l->hello_gen)
                offer(l, &l->slots[i]);
    } else if ((!strcmp(m->cmd, "SEND") || !strcmp(m->cmd, "CREDIT")) && s) {
        long long off = proto_int(m, "offset", -1), limit = proto_int(m, "limit", -1);
        if (off < 0 || limit < off || (uint64_t)off > s->it.size)
            return;
        if (!strcmp(m->cmd, "SEND") || !s->granted) {
            s->next_off = (uint64_t)off; /* the hub says where it is: resume there */
            s->committed = false;
        }
        if (!strcmp(m->cmd, "SEND") || (uint64_t)off > s->hub_off)
            s->hub_off = (uint64_t)off;
        if (!s->granted || (uint64_t)limit > s->limit)
            s->limit = (uint64_t)limit;
        s->granted = true;
        s->last_ms = clock_mono_ms();
        if (s->it.acked_bytes + LINK_WINDOW * 8 < (uint64_t)off) {
            s->it.acked_bytes = (uint64_t)off; /* progress for --status, written now and then */
            spool_update(l->cfg.sp, &s->it);
        }
    } else if ((!strcmp(m->cmd, "ACK") || !strcmp(m->cmd, "HAVE")) && s) {
        spool_remove(l->cfg.sp, s->it.seq);
        set_state(l, "acked", "");
        log_info("link: item %llu (%s) is durable at the hub (%s)", (unsigned long long)s->it.seq,
                 s->it.kind == SPOOL_MARKER ? "study marker" : "instance",
                 !strcmp(m->cmd, "HAVE") ? "already there" : proto_str(m, "result") ? proto_str(m, "result") : "ok");
        s->used = false;
        l->refill = true;
    } else if (!strcmp(m->cmd, "NACK") && s) {
        const char *why = proto_str(m, "reason");
        json_t *retry = json_object_get(m->hdr, "retry");
        backoff(l, s, why ? why : "refused by the hub", json_is_false(retry));
    } else if (!strcmp(m->cmd, "DELIVER")) {
        const char *id = proto_str(m, "id"), *kind = proto_str(m, "kind");
        if (!id || !kind || m->n_data != 1 || strlen(id) > 120)
            return;
        int rc = spool_inbox_put(l->cfg.sp, id, kind, zmq_msg_data(&m->data[0]), zmq_msg_size(&m->data[0]),
                                 clock_wall_ms());
        if (rc >= 0) { /* durable here: acknowledge */
            send_msg(l, "DELIVERED", json_pack("{s:s}", "id", id), NULL, 0);
            if (rc == 1 && !strcmp(kind, "alert")) {
                log_error("ALERT from the hub (%s): a critical value or a request to repeat the exam — see 'dxhub reports'", id);
                if (l->cfg.on_alert)
                    l->cfg.on_alert(l->cfg.on_alert_ctx);
            }
            else if (rc == 1)
                log_info("link: received %s %s from the hub", kind, id);
        } else {
            log_error("link: cannot keep %s %s from the hub: %s (not acknowledged: the hub sends it again)", kind, id,
                      strerror(-rc));
        }
    } else if (!strcmp(m->cmd, "READ_OK")) {
        const char *id = proto_str(m, "id");
        if (id)
            spool_alert_told(l->cfg.sp, id);
    } else if (!strcmp(m->cmd, "ERROR")) {
        const char *e = proto_str(m, "error");
        if (json_is_true(json_object_get(m->hdr, "revoked"))) {
            /* this gateway's key was revoked while connected: a fresh
             * connection is refused at its handshake, which handshake_failed
             * says the way the clinic reads it (and not once per message) */
            l->connected = false;
            l->socket_ms = 0;
            set_state(l, "down", "the hub refused this gateway's key");
            return;
        }
        log_warn("link: the hub answered ERROR: %s", e ? e : "?");
        set_state(l, l->connected ? "connected" : "down", e);
    }
}

typedef struct fill_ctx {
    edge_link *l;
    int64_t    now;
    int        free_slots, min_prio_inflight;
} fill_ctx;

static int fill_one(void *ctx, const spool_item *it)
{
    fill_ctx *f = ctx;
    edge_link *l = f->l;
    /* A retry further ahead than any backoff was set before the wall clock
     * went back (an NTP step, a corrected date): it is due now, or a STAT
     * study would wait as long as the clock went back. */
    bool waiting = it->next_try_ms > f->now && it->next_try_ms <= f->now + BACKOFF_MAX_MS;
    if (slot_of(l, (long long)it->seq) || waiting)
        return 0;
    /* Over the in-flight limit only to let a more urgent item overtake. */
    if (f->free_slots <= 0 && !(it->priority > f->min_prio_inflight && f->free_slots > -2))
        return 1;
    for (int i = 0; i < MAX_SLOTS; i++) {
        if (l->slots[i].used)
            continue;
        memset(&l->slots[i], 0, sizeof l->slots[i]);
        l->slots[i].used = true;
        l->slots[i].it = *it;
        offer(l, &l->slots[i]);
        f->free_slots--;
        return 0;
    }
    return 1;
}

static void fill(edge_link *l)
{
    fill_ctx f = {.l = l, .now = clock_wall_ms(), .free_slots = l->cfg.max_inflight, .min_prio_inflight = 3};
    for (int i = 0; i < MAX_SLOTS; i++)
        if (l->slots[i].used) {
            f.free_slots--;
            if (l->slots[i].it.priority < f.min_prio_inflight)
                f.min_prio_inflight = l->slots[i].it.priority;
        }
    spool_list(l->cfg.sp, 0, fill_one, &f);
}

/* Bytes sent that the hub has not yet reported written, over all transfers. */
static uint64_t unconfirmed(const edge_link *l)
{
    uint64_t n = 0;
    for (int i = 0; i < MAX_SLOTS; i++) {
        const slot *s = &l->slots[i];
        if (s->used && s->it.kind == SPOOL_INSTANCE && s->granted && s->next_off > s->hub_off)
            n += s->next_off - s->hub_off;
    }
    return n;
}

/* Send chunks for the most urgent transfer with credit; a bounded burst. */
static void pump(edge_link *l)
{
    for (int burst = 0; burst < 64; burst++) {
        slot *best = NULL;
        for (int i = 0; i < MAX_SLOTS; i++) {
            slot *s = &l->slots[i];
            if (!s->used || s->it.kind != SPOOL_INSTANCE || !s->granted || s->committed)
                continue;
            bool can_send = s->next_off < s->it.size && s->next_off < s->limit;
            bool done = s->next_off >= s->it.size;
            if (!can_send && !done)
                continue;
            if (!best || s->it.priority > best->it.priority ||
                (s->it.priority == best->it.priority && s->it.seq < best->it.seq))
                best = s;
        }
        if (!best)
            return;
        if (best->next_off >= best->it.size) {
            char hex[65];
            digest_hex(best->it.digest, hex);
            if (send_msg(l, "COMMIT", json_pack("{s:I,s:s}", "xfer", (json_int_t)best->it.seq, "digest", hex), NULL,
                         0) == 0)
                best->committed = true;
            best->last_ms = clock_mono_ms();
            continue;
        }
        /* Keep what is on its way short (LINK_AHEAD): everything sent queues
         * in one FIFO (socket buffers, the line), and an OFFER, a COMMIT or
         * a STAT study's chunk sent now waits behind all of it.  Unbounded,
         * the whole credit of every transfer (max_inflight x LINK_WINDOW,
         * seconds on a clinic line) could sit in that queue: the next
         * transfers were offered only once it had drained, so the line
         * idled a round trip per batch, and a STAT study waited behind
         * seconds of routine data.  Sending resumes as the hub's CREDIT
         * messages confirm what it has written. */
        if (unconfirmed(l) >= LINK_AHEAD)
            return;
        uint64_t end = best->limit < best->it.size ? best->limit : best->it.size;
        size_t n = end - best->next_off < LINK_CHUNK ? (size_t)(end - best->next_off) : LINK_CHUNK;
        long got = spool_read(l->cfg.sp, &best->it, best->next_off, l->chunk, n);
        if (got <= 0) {
            backoff(l, best, "cannot read the item from the spool", false);
            continue;
        }
        int rc = send_msg(l, "CHUNK", json_pack("{s:I,s:I}", "xfer", (json_int_t)best->it.seq, "offset",
                                                (json_int_t)best->next_off),
                          l->chunk, (size_t)got);
        if (rc < 0)
            return; /* socket full or no connection: later */
        best->next_off += (uint64_t)got;
        best->last_ms = clock_mono_ms();
    }
}

/* A fresh DEALER: libzmq stops retrying after a refused CURVE handshake
 * (say, before the hub's operator allowed our key), so a link down for a
 * while gets a new socket rather than waiting forever. */
static int open_socket(edge_link *l, char *err, size_t errlen)
{
    proto_monitor_close(l->dealer, &l->monitor);
    if (l->dealer)
        zmq_close(l->dealer);
    l->dealer = zmq_socket(l->cfg.zctx, ZMQ_DEALER);
    if (!l->dealer) {
        snprintf(err, errlen, "cannot create the link socket");
        return -EIO;
    }
    /* Watch the connection: ZeroMQ reconnects by itself after a drop (or
     * to a restarted hub), silently losing what was in flight; without
     * being told, the transfers waited OFFER_RETRY_MS (20 s) to be offered
     * again.  Each (re)connection now starts with HELLO, and WELCOME
     * re-offers every transfer, resuming at the offset the hub has. */
    l->monitor = proto_monitor_open(l->cfg.zctx, l->dealer,
                                    ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                        ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                        ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    proto_tune(l->dealer);
    int immediate = 1;
    zmq_setsockopt(l->dealer, ZMQ_IMMEDIATE, &immediate, sizeof immediate);
    l->socket_key = l->key_at;
    if (proto_curve_client(l->dealer, l->cfg.kp->pub, l->cfg.kp->sec, l->key_at ? l->cfg.hub_pub_next : l->cfg.hub_pub) < 0) {
        snprintf(err, errlen, "CURVE setup failed: %s", zmq_strerror(zmq_errno()));
        return -EIO;
    }
    if (zmq_connect(l->dealer, l->cfg.hub) != 0) {
        snprintf(err, errlen, "bad hub endpoint '%s': %s", l->cfg.hub, zmq_strerror(zmq_errno()));
        return -EINVAL;
    }
    l->socket_ms = clock_mono_ms();
    return 0;
}

static bool has_next_key(const edge_link *l) { return l->cfg.hub_pub_next && l->cfg.hub_pub_next[0]; }

/* The hub answered, but not as the hub this gateway may talk to: without
 * this the clinic read "hub unreachable" and looked at the network, while
 * the hub refused its key (not in the allow-list) or the gateway held
 * another hub's key.  Said in --status at once and in the log when it
 * changes, and every HANDSHAKE_LOG_MS while it lasts. */
static void handshake_failed(edge_link *l, bool refused, uint32_t status)
{
    /* --status keeps 159 characters: the short why there, the key in the log. */
    const char *why = refused ? "the hub refused this gateway's key: not in the hub's allow-list (on the hub: "
                                "dxhub allow --role edge:FACILITY keys/edge.pub, then SIGHUP)"
                      : has_next_key(l) ? "the encrypted handshake with the hub failed with both keys of --hub-key: "
                                          "is either the hub's own hub.pub?"
                                        : "the encrypted handshake with the hub failed: is --hub-key the hub's own "
                                          "hub.pub? (a reinstalled hub has a new one)";
    set_state(l, "down", why);
    if (log_repeat_due(&l->handshake_told, why, HANDSHAKE_LOG_MS)) {
        if (refused)
            log_error("link: %s; this gateway's key is %s (ZAP status %u)", why, l->cfg.kp->pub, status);
        else
            log_error("link: %s", why);
    }
}

/* Connection events since the last look: any drop or new handshake means
 * the hub may have lost what was in flight (or be a new process). */
static void watch_connection(edge_link *l)
{
    uint16_t event;
    uint32_t value;
    bool other_key = false;
    while (proto_monitor_next(l->monitor, &event, &value)) {
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
            event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            bool refused = event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
            /* Not our key refused but the handshake failed: while the hub
             * changes keypairs, the other key of --hub-key may be its own. */
            if (!refused && has_next_key(l)) {
                int k = l->socket_key;
                l->keys_failed |= 1u << k;
                if (!(l->keys_failed & (1u << !k))) {
                    l->key_at = !k;
                    other_key = true;
                    continue;
                }
            }
            handshake_failed(l, refused, value);
            continue;
        }
        if (l->connected && (event == ZMQ_EVENT_DISCONNECTED || event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)) {
            l->connected = false;
            l->last_hello_ms = 0; /* say HELLO as soon as the link takes it */
            log_warn("link: connection to the hub %s; will resume after HELLO",
                     event == ZMQ_EVENT_DISCONNECTED ? "dropped" : "renewed");
            set_state(l, "down", "connection dropped");
        }
    }
    if (other_key) { /* at once, on a fresh socket: libzmq would retry the same key */
        log_info("link: the hub did not take the handshake with the %s key of --hub-key; trying the %s",
                 l->key_at ? "first" : "second", l->key_at ? "second" : "first");
        char err[160];
        if (open_socket(l, err, sizeof err) < 0)
            log_error("link: %s", err);
    }
}

static void *link_main(void *arg)
{
    edge_link *l = arg;
    while (!l->stop) {
        watch_connection(l);
        zmq_pollitem_t it = {l->dealer, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 50);
        for (int burst = 0; burst < 64; burst++) {
            proto_msg m;
            char err[160];
            int rc = proto_recv(l->dealer, false, ZMQ_DONTWAIT, &m, err, sizeof err);
            if (rc == PROTO_OK)
                on_message(l, &m);
            else if (rc == PROTO_MALFORMED)
                log_warn("link: malformed message from the hub ignored: %s", err);
            proto_msg_close(&m);
            if (rc < 0)
                break;
        }
        int64_t t = clock_mono_ms();
        if (l->connected && t - l->last_rx_ms > HUB_SILENCE_MS) {
            l->connected = false;
            log_warn("link: the hub is silent; will reconnect and resume");
            set_state(l, "down", "hub not answering");
        }
        if (!l->connected && t - l->socket_ms > 10000) {
            if (l->keys_failed == 3) /* neither key took: try them in turn, the hub may go back */
                l->key_at = !l->socket_key;
            char err[160];
            if (open_socket(l, err, sizeof err) < 0)
                log_error("link: %s", err);
        }
        if (!l->connected && t - l->last_hello_ms > 2000) {
            /* With ZMQ_IMMEDIATE a HELLO is refused locally until the TCP
             * and CURVE handshakes are done; only a HELLO ZeroMQ took starts
             * the 2 s wait for WELCOME, so a fresh (re)connection says HELLO
             * within one loop turn instead of up to 2 s later. */
            if (send_msg(l, "HELLO", json_object(), NULL, 0) == 0) {
                l->last_hello_ms = t;
                l->hello_gen++;
                /* Offer in the same flight, not a round trip later on
                 * WELCOME: the hub reads the HELLO first, and a transfer
                 * starts a round trip sooner on every (re)connection. */
                for (int i = 0; i < MAX_SLOTS; i++)
                    if (l->slots[i].used)
                        offer(l, &l->slots[i]);
                l->last_list_ms = t;
                fill(l);
            } else if (strcmp(l->link_state, "down"))
                set_state(l, "down", "hub unreachable");
            continue;
        }
        if (!l->connected)
            continue;
        if (t - l->last_hello_ms > 5000) { /* keep-alive: the answer proves the hub is there */
            l->last_hello_ms = t;
            send_msg(l, "PING", json_object(), NULL, 0);
            spool_alert_untold(l->cfg.sp, tell_read, l); /* until the hub says READ_OK */
        }
        /* Refill as soon as a transfer ends, not only on the timer: waiting
         * up to LIST_EVERY_MS per freed slot capped a backlog of small
         * instances at max_inflight per half second (8/s with 4 slots),
         * far below what even a slow clinic link carries. */
        if (l->refill || t - l->last_list_ms > LIST_EVERY_MS) {
            l->refill = false;
            l->last_list_ms = t;
            fill(l);
        }
        for (int i = 0; i < MAX_SLOTS; i++)
            if (l->slots[i].used && t - l->slots[i].last_ms > OFFER_RETRY_MS)
                offer(l, &l->slots[i]);
        pump(l);
    }
    return NULL;
}

int edge_link_start(const edge_link_config *cfg, edge_link **out, char *err, size_t errlen)
{
    edge_link *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->cfg = *cfg;
    if (l->cfg.max_inflight <= 0)
        l->cfg.max_inflight = EDGE_INFLIGHT_DEFAULT;
    if (l->cfg.max_inflight > MAX_SLOTS - 2)
        l->cfg.max_inflight = MAX_SLOTS - 2;
    l->rng = (unsigned)getpid() ^ (unsigned)clock_wall_ms();
    l->chunk = malloc(LINK_CHUNK);
    if (!l->chunk || open_socket(l, err, errlen) < 0)
        goto fail;
    snprintf(l->link_state, sizeof l->link_state, "starting");
    spool_set_link(l->cfg.sp, "connecting", NULL, clock_wall_ms());
    int trc = pthread_create(&l->thread, NULL, link_main, l);
    if (trc) {
        snprintf(err, errlen, "cannot start the link thread: %s", strerror(trc));
        goto fail;
    }
    *out = l;
    return 0;
fail:
    proto_monitor_close(l->dealer, &l->monitor);
    if (l->dealer)
        zmq_close(l->dealer);
    free(l->chunk);
    free(l);
    return -EIO;
}

void edge_link_stop(edge_link **lp)
{
    if (!lp || !*lp)
        return;
    edge_link *l = *lp;
    l->stop = 1;
    pthread_join(l->thread, NULL);
    proto_monitor_close(l->dealer, &l->monitor);
    zmq_close(l->dealer);
    spool_set_link(l->cfg.sp, "stopped", NULL, clock_wall_ms());
    free(l->chunk);
    free(l);
    *lp = NULL;
}

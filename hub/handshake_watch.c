/* handshake_watch.c — see handshake_watch.h. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "hub/clock.h"
#include "hub/handshake_watch.h"
#include "hub/log.h"
#include "hub/proto.h"
#include "codecs/banned.h"

#define WATCH_PORTS   4
#define TOLD_SLOTS    64
#define TOLD_EVERY_MS 60000

struct handshake_watch {
    void        *zctx;
    hub_metrics *metrics;
    store       *st;
    void        *mon[WATCH_PORTS];
    char         name[WATCH_PORTS][32];
    int          n;
    pthread_t    thread;
    bool         running;
    volatile int stop;
    int          wake_fd; /* eventfd: stop wakes the thread at once (hubs stop often in tests and restarts) */
    struct {
        char    who[96]; /* port and address */
        int64_t at_ms;
    } told[TOLD_SLOTS];
    unsigned next_slot;
};

handshake_watch *handshake_watch_new(void *zctx, hub_metrics *m, store *st)
{
    handshake_watch *w = calloc(1, sizeof *w);
    if (w && (w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        free(w);
        return NULL;
    }
    if (w) {
        w->zctx = zctx;
        w->metrics = m;
        w->st = st;
    }
    return w;
}

int handshake_watch_add(handshake_watch *w, void *router, const char *port_name)
{
    if (!w || w->running || w->n == WATCH_PORTS)
        return -EINVAL;
    void *mon = proto_monitor_open(w->zctx, router,
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    if (!mon)
        return -EIO;
    snprintf(w->name[w->n], sizeof w->name[w->n], "%s", port_name);
    w->mon[w->n++] = mon;
    return 0;
}

/* Said already within the minute (per port and address)? */
static bool told_lately(handshake_watch *w, const char *who)
{
    int64_t t = clock_mono_ms();
    for (unsigned i = 0; i < TOLD_SLOTS; i++)
        if (!strcmp(w->told[i].who, who)) {
            if (t - w->told[i].at_ms < TOLD_EVERY_MS)
                return true;
            w->told[i].at_ms = t;
            return false;
        }
    unsigned i = w->next_slot++ % TOLD_SLOTS; /* the oldest entry made way */
    snprintf(w->told[i].who, sizeof w->told[i].who, "%s", who);
    w->told[i].at_ms = t;
    return false;
}

static const char *why_of(uint32_t code)
{
    switch (code) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "its handshake cannot be decrypted with this hub's key: it holds another hub's public key "
               "(a reinstalled hub has a new one: give it this hub's hub.pub)";
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "it does not use CURVE encryption (not a dxhub client, or one set up without keys)";
    default:
        return "it broke the ZeroMQ handshake (not a dxhub client?)";
    }
}

static void said(handshake_watch *w, int port, uint32_t code, const char *addr)
{
    hub_count_error(w->metrics, HUB_ERR_AUTH);
    char who[96];
    snprintf(who, sizeof who, "%s %s", w->name[port], addr);
    if (told_lately(w, who))
        return;
    char detail[320];
    snprintf(detail, sizeof detail, "%s: %s (ZMTP code 0x%08x)", w->name[port], why_of(code), code);
    if (w->st)
        store_audit(w->st, clock_wall_ms(), addr, "handshake-failed", "", detail);
    log_warn("a client at %s failed the encrypted handshake on the %s: %s (ZMTP code 0x%08x; said once a minute "
             "per address)", addr, w->name[port], why_of(code), code);
}

static void *watch_main(void *arg)
{
    handshake_watch *w = arg;
    while (!w->stop) {
        zmq_pollitem_t items[WATCH_PORTS + 1];
        for (int i = 0; i < w->n; i++)
            items[i] = (zmq_pollitem_t){w->mon[i], 0, ZMQ_POLLIN, 0};
        items[w->n] = (zmq_pollitem_t){NULL, w->wake_fd, ZMQ_POLLIN, 0};
        if (zmq_poll(items, w->n + 1, -1) <= 0)
            continue;
        for (int i = 0; i < w->n; i++) {
            uint16_t event;
            uint32_t code;
            char host[80];
            while ((items[i].revents & ZMQ_POLLIN) && proto_monitor_next_from(w->mon[i], &event, &code, host,
                                                                               sizeof host))
                said(w, i, code, host);
        }
    }
    return NULL;
}

int handshake_watch_run(handshake_watch *w)
{
    if (!w || !w->n)
        return 0;
    int rc = pthread_create(&w->thread, NULL, watch_main, w);
    if (rc)
        return -rc;
    w->running = true;
    return 0;
}

void handshake_watch_stop(handshake_watch **wp)
{
    handshake_watch *w = wp ? *wp : NULL;
    if (!w)
        return;
    w->stop = 1;
    uint64_t one = 1;
    if (write(w->wake_fd, &one, sizeof one) < 0) { /* a full counter wakes it as well */
    }
    if (w->running)
        pthread_join(w->thread, NULL);
    close(w->wake_fd);
    for (int i = 0; i < w->n; i++)
        zmq_close(w->mon[i]);
    free(w);
    *wp = NULL;
}

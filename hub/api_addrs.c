/* api_addrs.c — the HTTP connections each client address holds open, so
 * that one client (a script gone wrong, or one trickling a byte now and
 * then to keep each connection alive) cannot take every connection the
 * API has: http-max-per-address.  libmicrohttpd's own per-IP limit refuses
 * without telling anyone; this one is counted and logged.  A handful of
 * addresses hold connections at a time, so a short array searched in
 * order does. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "hub/api_private.h"

typedef struct held {
    uint8_t len, ip[16];
    int     n;
} held;

struct api_addrs {
    pthread_mutex_t mu;
    int             limit;
    held           *v;
    size_t          n, cap;
};

api_addrs *api_addrs_new(int limit)
{
    api_addrs *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->limit = limit;
    return t;
}

void api_addrs_free(api_addrs **tp)
{
    if (!tp || !*tp)
        return;
    pthread_mutex_destroy(&(*tp)->mu);
    free((*tp)->v);
    free(*tp);
    *tp = NULL;
}

/* The address's bytes (IPv4 or IPv6); 0 for another family. */
static uint8_t ip_of(const struct sockaddr *sa, uint8_t ip[16])
{
    if (sa && sa->sa_family == AF_INET) {
        memcpy(ip, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa && sa->sa_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

static held *find(api_addrs *t, const uint8_t *ip, uint8_t len)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].len == len && !memcmp(t->v[i].ip, ip, len))
            return &t->v[i];
    return NULL;
}

bool api_addrs_full(api_addrs *t, const struct sockaddr *sa)
{
    uint8_t ip[16], len = ip_of(sa, ip);
    if (!t || !len)
        return false;
    pthread_mutex_lock(&t->mu);
    held *h = find(t, ip, len);
    bool full = h && h->n >= t->limit;
    pthread_mutex_unlock(&t->mu);
    return full;
}

void api_addrs_add(api_addrs *t, const struct sockaddr *sa, int delta)
{
    uint8_t ip[16], len = ip_of(sa, ip);
    if (!t || !len)
        return;
    pthread_mutex_lock(&t->mu);
    held *h = find(t, ip, len);
    if (!h && delta > 0) {
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 16;
            held *v = realloc(t->v, cap * sizeof *v);
            if (!v) { /* not counted: the limit is a safeguard, not a gate */
                pthread_mutex_unlock(&t->mu);
                return;
            }
            t->v = v;
            t->cap = cap;
        }
        h = &t->v[t->n++];
        *h = (held){.len = len};
        memcpy(h->ip, ip, len);
    }
    if (h) {
        h->n += delta;
        if (h->n <= 0) /* forgotten: the array holds only addresses with connections */
            *h = t->v[--t->n];
    }
    pthread_mutex_unlock(&t->mu);
}

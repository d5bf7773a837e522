/* cmd_status.c — `dxhub status [--hub http://HOST:PORT] [--json]`: asks a
 * running hub for GET /api/v1/health over a plain HTTP/1.0 socket (no
 * HTTP library needed for one request) and prints it for a person:
 * uptime, store use, instances, studies by state.  Exit 0 when the hub
 * answers "ok", 1 when it cannot be reached or is unhealthy, 2 on usage. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "hub/cmd.h"
#include "codecs/banned.h"

#define STATUS_TIMEOUT_MS 5000
#define STATUS_MAX_REPLY  (256u << 10)

typedef struct hub_url {
    char host[256], port[8];
} hub_url;

/* "http://HOST[:PORT][/]" or "HOST[:PORT]"; IPv6 literals in brackets. */
static int parse_hub_url(const char *s, hub_url *u)
{
    if (!strncmp(s, "http://", 7))
        s += 7;
    else if (strstr(s, "://"))
        return -1; /* https and others: not spoken here */
    size_t n = strcspn(s, "/");
    const char *host = s, *colon;
    size_t hl;
    if (*s == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return -1;
        host = s + 1;
        hl = (size_t)(close - host);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(s, ':', n);
        hl = colon ? (size_t)(colon - s) : n;
    }
    const char *port = colon ? colon + 1 : "8410";
    size_t pl = colon ? n - (size_t)(port - s) : 4;
    if (!hl || hl >= sizeof u->host || !pl || pl >= sizeof u->port || strspn(port, "0123456789") < pl)
        return -1;
    snprintf(u->host, sizeof u->host, "%.*s", (int)hl, host);
    snprintf(u->port, sizeof u->port, "%.*s", (int)pl, port);
    return 0;
}

/* Wait until fd is ready for events; -ETIMEDOUT after the deadline. */
static int wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, STATUS_TIMEOUT_MS);
    return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

static int connect_to(const hub_url *u, int *fd_out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc)
        return -EHOSTUNREACH;
    int err = -ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int c = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : -errno;
        if (c == -EINPROGRESS && (c = wait_fd(fd, POLLOUT)) == 0) {
            int e = 0;
            socklen_t l = sizeof e;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
            c = -e;
        }
        if (c == 0) {
            freeaddrinfo(res);
            *fd_out = fd;
            return 0;
        }
        err = c;
        close(fd);
    }
    freeaddrinfo(res);
    return err;
}

/* One HTTP/1.0 exchange: the reply (headers and body) in *out, NUL-terminated. */
static int http_get(const hub_url *u, const char *path, char **out, size_t *len)
{
    int fd = -1, rc = connect_to(u, &fd);
    if (rc < 0)
        return rc;
    /* A hub with facility API keys wants one for the worklist. */
    const char *key = getenv("DXHUB_API_KEY");
    char auth[160] = "";
    if (key && *key)
        snprintf(auth, sizeof auth, "Authorization: Bearer %.100s\r\n", key);
    char req[640];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s:%s\r\nAccept: application/json\r\n%s\r\n", path,
                     u->host, u->port, auth);
    char *buf = malloc(STATUS_MAX_REPLY + 1);
    size_t got = 0;
    if (!buf)
        rc = -ENOMEM;
    for (int sent = 0; rc == 0 && sent < n;) {
        ssize_t w = send(fd, req + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (w > 0)
            sent += (int)w;
        else if (w < 0 && errno == EAGAIN)
            rc = wait_fd(fd, POLLOUT);
        else
            rc = -errno;
    }
    while (rc == 0 && got < STATUS_MAX_REPLY) {
        ssize_t r = recv(fd, buf + got, STATUS_MAX_REPLY - got, 0);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0)
            break;
        else if (errno == EAGAIN)
            rc = wait_fd(fd, POLLIN);
        else
            rc = -errno;
    }
    close(fd);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[got] = 0;
    *out = buf;
    *len = got;
    return 0;
}

static void human_bytes(double v, char *out, size_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void human_uptime(long long s, char *out, size_t n)
{
    if (s >= 86400)
        snprintf(out, n, "%lldd %lldh %lldm", s / 86400, s % 86400 / 3600, s % 3600 / 60);
    else if (s >= 3600)
        snprintf(out, n, "%lldh %lldm", s / 3600, s % 3600 / 60);
    else
        snprintf(out, n, "%lldm %llds", s / 60, s % 60);
}

static long long num(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

/* The worklist part: counts, what is urgent, who holds what. */
static void print_worklist(const hub_url *u)
{
    char *reply;
    size_t len;
    if (http_get(u, "/api/v1/tasks", &reply, &len) < 0)
        return;
    int code = 0;
    if (sscanf(reply, "HTTP/1.%*d %d", &code) == 1 && (code == 401 || code == 403)) {
        printf("worklist   (the hub wants an API key: set DXHUB_API_KEY, see dxhub keygen --api-key)\n");
        free(reply);
        return;
    }
    char *body = strstr(reply, "\r\n\r\n");
    json_error_t je;
    json_t *t = body ? json_loads(body + 4, 0, &je) : NULL;
    if (t && json_is_object(t)) {
        json_t *c = json_object_get(t, "counts"), *p = json_object_get(t, "open_by_priority");
        printf("worklist   waiting %lld (review %lld), offered %lld, being read %lld, drafted %lld, signed %lld\n",
               (long long)json_integer_value(json_object_get(c, "queued")),
               (long long)json_integer_value(json_object_get(c, "review")),
               (long long)json_integer_value(json_object_get(c, "offered")),
               (long long)json_integer_value(json_object_get(c, "claimed")),
               (long long)json_integer_value(json_object_get(c, "drafted")),
               (long long)json_integer_value(json_object_get(c, "signed")));
        printf("  open     stat %lld, urgent %lld, routine %lld; due within 30 min %lld, overdue %lld\n",
               (long long)json_integer_value(json_object_get(p, "stat")),
               (long long)json_integer_value(json_object_get(p, "urgent")),
               (long long)json_integer_value(json_object_get(p, "routine")),
               (long long)json_integer_value(json_object_get(t, "due_within_30_min")),
               (long long)json_integer_value(json_object_get(t, "overdue")));
        json_t *old = json_object_get(t, "oldest_waiting_s");
        if (json_is_integer(old))
            printf("  oldest   waiting for %lld s\n", (long long)json_integer_value(old));
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(t, "readers"), k, v)
            printf("  reader   %-16s holds %lld\n", k, (long long)json_integer_value(v));
        json_t *ta = json_object_get(t, "turnaround_s");
        if (json_is_object(ta))
            printf("  turnaround (signed %lld): median %.0f s, p90 %.0f s\n",
                   (long long)json_integer_value(json_object_get(ta, "signed")),
                   json_number_value(json_object_get(ta, "median")), json_number_value(json_object_get(ta, "p90")));
    }
    json_decref(t);
    free(reply);
}

static void print_health(const char *hub, const json_t *h)
{
    char up[48], used[32], size[32];
    human_uptime(num(h, "uptime_s"), up, sizeof up);
    human_bytes((double)num(h, "map_used_bytes"), used, sizeof used);
    human_bytes((double)num(h, "map_size_bytes"), size, sizeof size);
    const char *status = json_string_value(json_object_get(h, "status"));
    const char *store = json_string_value(json_object_get(h, "store"));
    bool full = store && !strcmp(store, "full");
    printf("hub        %s: %s, up %s\n", hub, status ? status : "?", up);
    printf("store      %s of %s used (%.1f%%)%s\n", used, size,
           100.0 * json_number_value(json_object_get(h, "map_used_ratio")),
           full ? " -- FULL: new data is refused" : "");
    printf("instances  %lld", num(h, "instances"));
    long long conflicts = num(h, "conflicts");
    if (conflicts)
        printf(" (+%lld conflicting copies kept apart)", conflicts);
    const json_t *st = json_object_get(h, "studies");
    long long total = 0;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)st, k, v) total += (long long)json_integer_value(v);
    printf("\nstudies    %lld\n", total);
    json_object_foreach((json_t *)st, k, v) printf("  %-10s %6lld\n", k, (long long)json_integer_value(v));
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: dxhub status [--hub http://HOST:PORT] [--json]\n"
                "  asks a running hub (default http://127.0.0.1:8410) for its health\n"
                "  --json   print the hub's answer as it came\n");
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"hub", required_argument, NULL, 'H'}, {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {0}};
    const char *hub = "http://127.0.0.1:8410";
    int raw = 0, c;
    optind = 1;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 'H') {
            hub = optarg;
        } else if (c == 'j') {
            raw = 1;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            dx_errorf("status", c == ':' ? "option '%s' needs a value" : "bad option '%s'; 'dxhub status --help' lists them",
                      argv[optind - 1]);
            return 2;
        }
    }
    hub_url u;
    if (optind < argc || parse_hub_url(hub, &u) < 0) {
        dx_errorf("status", optind < argc ? "unexpected argument '%s'" : "'%s' is not an http://HOST:PORT address",
                  optind < argc ? argv[optind] : hub);
        return 2;
    }
    char *reply;
    size_t len;
    int rc = http_get(&u, "/api/v1/health", &reply, &len);
    if (rc < 0) {
        dx_errorf("status", "cannot reach the hub at %s: %s (is 'dxhub serve' running there?)", hub, strerror(-rc));
        return 1;
    }
    int code = 0;
    char *body = strstr(reply, "\r\n\r\n");
    if (sscanf(reply, "HTTP/%*s %d", &code) != 1 || !body) {
        dx_errorf("status", "%s answered something that is not HTTP", hub);
        free(reply);
        return 1;
    }
    body += 4;
    json_error_t je;
    json_t *h = json_loads(body, 0, &je);
    if (!h || !json_is_object(h)) {
        dx_errorf("status", "%s answered HTTP %d without a health report (%s)", hub, code,
                  h ? "not an object" : je.text);
        json_decref(h);
        free(reply);
        return 1;
    }
    if (raw)
        printf("%s\n", body);
    else {
        print_health(hub, h);
        print_worklist(&u);
    }
    const char *status = json_string_value(json_object_get(h, "status"));
    int ok = code == 200 && status && !strcmp(status, "ok");
    if (!ok)
        dx_errorf("status", "the hub at %s is not healthy (HTTP %d)", hub, code);
    json_decref(h);
    free(reply);
    return ok ? 0 : 1;
}

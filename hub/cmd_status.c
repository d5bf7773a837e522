/* cmd_status.c — `dxhub status [--hub URL] [--ca FILE] [--json]`: asks a
 * running hub for GET /api/v1/health over HTTP/1.0 (http_client.h, TLS for
 * an https:// hub) and prints it for a person:
 * uptime, store use, instances, studies by state.  Exit 0 when the hub
 * answers "ok", 1 when it cannot be reached or is unhealthy, 2 on usage. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/cmd.h"
#include "hub/http_client.h"
#include "codecs/banned.h"

#define STATUS_TIMEOUT_MS 5000
#define STATUS_MAX_REPLY  (256u << 10)

/* One GET to the hub; a hub with facility API keys wants one for the
 * worklist (DXHUB_API_KEY). */
static int hub_get(const http_url *u, const char *ca_file, const char *path, http_reply *out, char *why,
                   size_t whylen)
{
    const char *key = getenv("DXHUB_API_KEY");
    return http_get_json(u, path, key && *key ? key : NULL, ca_file, STATUS_TIMEOUT_MS, STATUS_MAX_REPLY, out, why,
                         whylen);
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
static void print_worklist(const http_url *u, const char *ca_file)
{
    http_reply reply;
    char why[512];
    if (hub_get(u, ca_file, "/api/v1/tasks", &reply, why, sizeof why) < 0)
        return;
    if (reply.status == 401 || reply.status == 403) {
        printf("worklist   (the hub wants an API key: set DXHUB_API_KEY, see dxhub keygen --api-key)\n");
        free(reply.body);
        return;
    }
    json_error_t je;
    json_t *t = json_loads(reply.body, 0, &je);
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
    free(reply.body);
}

/* The clinics: which gateways are connected, and what waits for which
 * (a critical-value alert a clinic has not taken is for a phone call). */
static void print_clinics(const http_url *u, const char *ca_file)
{
    http_reply reply;
    char why[512];
    if (hub_get(u, ca_file, "/api/v1/clinics", &reply, why, sizeof why) < 0)
        return;
    json_t *t = reply.status == 200 ? json_loads(reply.body, 0, NULL) : NULL;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(t, "clinics"), i, c) {
        const char *name = json_string_value(json_object_get(c, "facility"));
        const char *seen = json_string_value(json_object_get(c, "last_seen"));
        json_t *w = json_object_get(c, "waiting");
        long long alerts = num(w, "alerts"), reports = num(w, "reports");
        printf("clinic     %-16s %s", name ? name : "?",
               json_is_true(json_object_get(c, "connected")) ? "connected"
               : seen                                         ? "NOT CONNECTED, last heard"
                                                              : "not heard since the hub started");
        if (seen && !json_is_true(json_object_get(c, "connected")))
            printf(" %s", seen);
        if (reports)
            printf("; %lld report%s waiting", reports, reports == 1 ? "" : "s");
        const char *first = json_string_value(json_object_get(w, "oldest_alert_id"));
        if (alerts)
            printf("; %lld CRITICAL-VALUE ALERT%s NOT TAKEN for %lld min (the oldest: %s): phone the clinic", alerts,
                   alerts == 1 ? "" : "S", num(w, "oldest_alert_seconds") / 60, first ? first : "?");
        long long unread = num(w, "unread_alerts");
        first = json_string_value(json_object_get(w, "oldest_unread_alert_id"));
        if (unread)
            printf("; %lld ALERT%s NOT CONFIRMED READ for %lld min (the oldest: %s): phone the clinic", unread,
                   unread == 1 ? "" : "S", num(w, "oldest_unread_seconds") / 60, first ? first : "?");
        putchar('\n');
    }
    json_decref(t);
    free(reply.body);
}

/* The other hubs of the consortium: which answer (a hub that does not is
 * missing from every lookup). */
static void print_peers(const json_t *h)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(h, "peers"), i, p) {
        const char *name = json_string_value(json_object_get(p, "hub"));
        const char *last = json_string_value(json_object_get(p, "last_answer"));
        json_t *up = json_object_get(p, "up");
        printf("peer hub   %-16s %s", name ? name : "?",
               json_is_true(up) ? "answering" : json_is_false(up) ? "NOT ANSWERING" : "not asked since the hub started");
        if (last)
            printf("%s last answer %s", json_is_true(up) ? "," : ";", last);
        else if (json_is_false(up))
            printf("; no answer since the hub started");
        if (json_is_true(json_object_get(p, "quiet")))
            printf(" (not asked again for a few seconds: lookups leave it out)");
        putchar('\n');
    }
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
    if (json_is_integer(json_object_get(h, "disk_size_bytes")) && num(h, "disk_size_bytes") > 0) {
        char dfree[32], dsize[32];
        human_bytes((double)num(h, "disk_free_bytes"), dfree, sizeof dfree);
        human_bytes((double)num(h, "disk_size_bytes"), dsize, sizeof dsize);
        printf("disk       %s free of %s (the data folder's file system)\n", dfree, dsize);
    }
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
    const json_t *profiles = json_object_get(h, "reader_profiles");
    if (json_is_null(profiles))
        printf("readers    NO PROFILES: readers.conf is missing or was refused (the hub's log says why); "
               "nobody can take a task\n");
    else if (json_is_integer(profiles))
        printf("readers    %lld profiles\n", (long long)json_integer_value(profiles));
    const json_t *tls_left = json_object_get(h, "tls_certificate_expires_s");
    if (json_is_integer(tls_left)) {
        long long days = (long long)json_integer_value(tls_left) / 86400;
        printf("https      certificate valid %lld more day%s%s\n", days, days == 1 ? "" : "s",
               days < 30 ? " -- RENEW IT, then restart the hub" : "");
    }
    const json_t *trust_left = json_object_get(h, "trust_deadline_s");
    if (json_is_integer(trust_left)) {
        long long s = (long long)json_integer_value(trust_left);
        if (s <= 0)
            printf("trust      A CA'S REVOCATION LIST IS OUT OF DATE (or missing): reports signed under it are "
                   "refused; the hub's log says which and what to do\n");
        else
            printf("trust      revocation lists and CAs good for %lld more day%s%s\n", s / 86400,
                   s / 86400 == 1 ? "" : "s",
                   s < 7 * 86400 ? " -- RE-SIGN the CRL (dxhub keygen --crl) and copy it to the trust list" : "");
    } else if (json_is_null(profiles) || json_is_integer(profiles)) {
        printf("trust      NO TRUST LIST: signed reports are refused\n");
    }
    const json_t *dicom_left = json_object_get(h, "dicom_tls_certificate_expires_s");
    if (json_is_integer(dicom_left)) {
        long long days = (long long)json_integer_value(dicom_left) / 86400;
        printf("dicom tls  certificate valid %lld more day%s%s\n", days, days == 1 ? "" : "s",
               days < 30 ? " -- RENEW IT, then restart the hub (modalities cannot send after it)" : "");
    }
    long long failures = num(h, "config_reload_failures");
    if (failures)
        printf("config     %lld reload(s) refused since the start, the settings before them kept "
               "(the hub's log names the file and line)\n", failures);
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: dxhub status [--hub URL] [--ca FILE] [--json]\n"
                "  asks a running hub (default http://127.0.0.1:8410) for its health\n"
                "  --ca     the CAs an https:// hub's certificate must chain to (default: the system's)\n"
                "  --json   print the hub's answer as it came\n");
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"hub", required_argument, NULL, 'H'}, {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
        {"ca", required_argument, NULL, 'c'},  {0}};
    const char *hub = "http://127.0.0.1:8410", *ca_file = NULL;
    int raw = 0, c;
    optind = 1;
    opterr = 0; /* one line of our own instead of getopt's */
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 'H') {
            hub = optarg;
        } else if (c == 'c') {
            ca_file = optarg;
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
    http_url u;
    if (optind < argc || http_url_parse(hub, &u) < 0) {
        dx_errorf("status", optind < argc ? "unexpected argument '%s'" : "'%s' is not an http:// or https://HOST:PORT address",
                  optind < argc ? argv[optind] : hub);
        return 2;
    }
    http_reply reply;
    char why[512];
    int rc = hub_get(&u, ca_file, "/api/v1/health", &reply, why, sizeof why);
    if (rc == -EPROTO) {
        dx_errorf("status", "no health report from %s: %s", hub, why);
        return 1;
    }
    if (rc < 0) {
        dx_errorf("status", "cannot reach the hub at %s: %s%s", hub, why,
                  rc == -ECONNREFUSED || rc == -ETIMEDOUT ? " (is 'dxhub serve' running there?)" : "");
        return 1;
    }
    int code = reply.status;
    const char *body = reply.body;
    json_error_t je;
    json_t *h = json_loads(body, 0, &je);
    if (!h || !json_is_object(h)) {
        dx_errorf("status", "%s answered HTTP %d without a health report (%s)", hub, code,
                  h ? "not an object" : je.text);
        json_decref(h);
        free(reply.body);
        return 1;
    }
    if (raw)
        printf("%s\n", body);
    else {
        print_health(hub, h);
        print_worklist(&u, ca_file);
        print_clinics(&u, ca_file);
        print_peers(h);
    }
    const char *status = json_string_value(json_object_get(h, "status"));
    int ok = code == 200 && status && !strcmp(status, "ok");
    if (!ok)
        dx_errorf("status", "the hub at %s is not healthy (HTTP %d)", hub, code);
    json_decref(h);
    free(reply.body);
    return ok ? 0 : 1;
}

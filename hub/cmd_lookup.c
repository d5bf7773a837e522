/* cmd_lookup.c — `dxhub lookup`: has this patient had an exam in the
 * consortium that we may recognise (检查检验结果互认)?  Asks the facility's
 * own hub (GET /api/v1/reports with its API key); the hub asks the other
 * hubs.  Prints each exam with its recognition and the rule behind every
 * verdict, or the hub's JSON with --json.  Exit 0 when the hub answered
 * (even with no exam), 1 when it could not be asked, 2 on usage. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/cmd.h"
#include "hub/http_client.h"
#include "codecs/banned.h"

#define LOOKUP_TIMEOUT_MS 30000
#define LOOKUP_MAX_REPLY  (64u << 20)

static const char usage[] =
    "usage: dxhub lookup --patient ID [--hub URL] [--api-key-file FILE] [--ca FILE]\n"
    "                    [--since YYYY-MM-DD] [--type MODALITY] [--local] [--json]\n"
    "  asks your hub (default http://127.0.0.1:8410), and through it the consortium's\n"
    "  other hubs, for the patient's signed exams: each with whether it may be\n"
    "  recognised (互认) and why, and the links that open its images.\n"
    "  The API key (dxhub keygen --api-key) is read from FILE, else $DXHUB_API_KEY.\n"
    "  An https:// hub's certificate is checked against the CAs in --ca FILE\n"
    "  (default: the system's).\n"
    "  --local  this hub only;  --json  the hub's answer as it came\n";

/* "/api/v1/reports?PatientID=..." with every value percent-encoded. */
static void put_param(char *out, size_t n, size_t *used, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t u = *used;
    u += (size_t)snprintf(out + u, u < n ? n - u : 0, "%s%s=", strchr(out, '?') ? "&" : "?", name);
    for (const unsigned char *p = (const unsigned char *)value; *p && u + 4 < n; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '.' || *p == '_' || *p == '~')
            out[u++] = (char)*p;
        else {
            out[u++] = '%';
            out[u++] = hex[*p >> 4];
            out[u++] = hex[*p & 15];
        }
    }
    out[u < n ? u : n - 1] = 0;
    *used = u;
}

static int read_token(const char *file, char *tok, size_t n)
{
    const char *env = getenv("DXHUB_API_KEY");
    if (!file) {
        if (!env || !*env)
            return -1;
        snprintf(tok, n, "%s", env);
        return 0;
    }
    FILE *fp = fopen(file, "r");
    if (!fp)
        return -errno;
    int rc = fgets(tok, (int)n, fp) ? 0 : -1;
    fclose(fp);
    tok[strcspn(tok, "\r\n \t")] = 0;
    return rc == 0 && tok[0] ? 0 : -1;
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void print_exam(json_t *e)
{
    json_t *rec = json_object_get(e, "recognition");
    int ok = json_is_true(json_object_get(rec, "recognised"));
    printf("%-4s %-5s %-10s %-16s hub %-12s report %s\n", ok ? str(rec, "mark") : "--", str(e, "modality"),
           str(e, "study_date"), str(e, "facility"), str(e, "hub"), str(e, "report_id"));
    if (ok)
        printf("     RECOGNISED (%s), valid until %s; %s\n", str(rec, "scope"), str(rec, "valid_until"),
               str(e, "exam_type"));
    else
        printf("     NOT RECOGNISED; %s\n", str(e, "exam_type"));
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(rec, "rules"), i, r)
        printf("     %-3s %-14s %s\n", json_is_true(json_object_get(r, "ok")) ? "ok" : "NO", str(r, "rule"),
               str(r, "detail"));
    json_t *insts = json_object_get(json_object_get(e, "links"), "instances");
    if (json_array_size(insts))
        printf("     images: %zu instances, e.g. %s\n", json_array_size(insts), str(json_array_get(insts, 0), "file"));
}

static int print_answer(const char *body)
{
    json_error_t je;
    json_t *root = json_loads(body, 0, &je);
    if (!root) {
        dx_errorf("lookup", "the hub's answer is not JSON (line %d)", je.line);
        return 1;
    }
    json_t *exams = json_object_get(root, "exams");
    printf("patient %s: %zu exam%s, %lld recognised (asked hub %s, %s)\n", str(root, "PatientID"),
           json_array_size(exams), json_array_size(exams) == 1 ? "" : "s",
           (long long)json_integer_value(json_object_get(root, "recognised")), str(root, "hub"), str(root, "scope"));
    size_t i;
    json_t *e;
    json_array_foreach(exams, i, e)
        print_exam(e);
    json_array_foreach(json_object_get(root, "peers"), i, e) {
        if (strcmp(str(e, "status"), "ok"))
            printf("hub %s: %s (%s)\n", str(e, "hub"), str(e, "status"), str(e, "error"));
        else
            printf("hub %s: answered, %lld exams\n", str(e, "hub"),
                   (long long)json_integer_value(json_object_get(e, "exams")));
    }
    json_decref(root);
    return 0;
}

int cmd_lookup(int argc, char **argv)
{
    static const struct option opts[] = {
        {"hub", required_argument, NULL, 'H'},     {"api-key-file", required_argument, NULL, 'k'},
        {"patient", required_argument, NULL, 'p'}, {"since", required_argument, NULL, 's'},
        {"type", required_argument, NULL, 't'},    {"local", no_argument, NULL, 'l'},
        {"json", no_argument, NULL, 'j'},          {"help", no_argument, NULL, 'h'},
        {"ca", required_argument, NULL, 'c'},
        {0, 0, 0, 0}};
    const char *hub = "http://127.0.0.1:8410", *keyfile = NULL, *patient = NULL, *since = NULL, *type = NULL,
               *ca_file = NULL;
    int local = 0, json = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'H': hub = optarg; break;
        case 'k': keyfile = optarg; break;
        case 'c': ca_file = optarg; break;
        case 'p': patient = optarg; break;
        case 's': since = optarg; break;
        case 't': type = optarg; break;
        case 'l': local = 1; break;
        case 'j': json = 1; break;
        default:
            fputs(usage, o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
    }
    if (optind != argc || !patient || !*patient) {
        dx_errorf("lookup", "--patient ID is required ('dxhub lookup --help')");
        return 2;
    }
    http_url u;
    if (http_url_parse(hub, &u) < 0) {
        dx_errorf("lookup", "--hub %s: expected http://HOST:PORT or https://HOST:PORT", hub);
        return 2;
    }
    char token[256];
    int rc = read_token(keyfile, token, sizeof token);
    if (rc < 0) {
        dx_errorf("lookup", "no API key: give --api-key-file FILE or set DXHUB_API_KEY%s%s",
                  keyfile ? " (cannot read " : "", keyfile ? keyfile : "");
        return 2;
    }
    char path[1024] = "/api/v1/reports";
    size_t used = strlen(path);
    put_param(path, sizeof path, &used, "PatientID", patient);
    if (since)
        put_param(path, sizeof path, &used, "since", since);
    if (type)
        put_param(path, sizeof path, &used, "type", type);
    if (local)
        put_param(path, sizeof path, &used, "scope", "local");
    http_reply r;
    char why[512];
    if ((rc = http_get_json(&u, path, token, ca_file, LOOKUP_TIMEOUT_MS, LOOKUP_MAX_REPLY, &r, why, sizeof why)) < 0) {
        dx_errorf("lookup", "cannot ask %s: %s", hub, why);
        return 1;
    }
    if (r.status != 200) {
        json_t *e = json_loads(r.body, 0, NULL);
        const char *error = json_string_value(json_object_get(e, "error"));
        const char *reason = json_string_value(json_object_get(e, "reason"));
        dx_errorf("lookup", "%s answered %d: %s%s%s", hub, r.status, error ? error : "(no reason given)",
                  reason ? ": " : "", reason ? reason : "");
        json_decref(e);
        free(r.body);
        return r.status == 400 ? 2 : 1;
    }
    if (json)
        printf("%s\n", r.body);
    else
        rc = print_answer(r.body);
    free(r.body);
    return rc;
}

/* test_api.c — the hub's HTTP API (hub/api.h) over real loopback sockets:
 * a real LMDB store in a temporary directory, fed with corpus instances by
 * store_put_file, served on an ephemeral port, asked by a small HTTP/1.1
 * client written here.  Oracles: the corpus files' own bytes, DCMTK's
 * dcmdump values (noted beside each expectation), OpenSSL's SHA-256, the
 * Prometheus text format's grammar.
 *
 * The corpus comes from $DXHUB_CORPUS (default ../shared/corpus). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "codecs/codecs.h"
#include "hub/api.h"
#include "hub/api_private.h" /* jb_time, jb_uint: checked against libc below */
#include "hub/cmd.h"
#include "hub/log.h"
#include "hub/store.h"

/* ---- fixture ------------------------------------------------------------ */

enum { F_CT, F_MR, F_CHR, F_CT_BIG, F_MR_OVL, F_DEFL, F_COUNT };

static const char *const corpus_files[F_COUNT] = {
    [F_CT] = "explicit_le/CT_small.dcm",        /* 1CT1, 20040119, CT */
    [F_MR] = "explicit_le/MR_small.dcm",        /* 4MR1, 20040826, MR */
    [F_CHR] = "charset/chrX1.dcm",              /* Wang^XiaoDong=王^小東=, no study date */
    [F_CT_BIG] = "explicit_le/CT1_UNC.explicit_little_endian.dcm", /* 1CT1, 20040826, 530 KB */
    [F_MR_OVL] = "explicit_le/MR-SIEMENS-DICOM-WithOverlays.dcm",  /* 021234567, 20051130, overlays > 64 KiB */
    [F_DEFL] = "deflate/liver_deflate.dcm",     /* 99000, 20030417, SEG, deflated */
};

typedef struct fixture {
    char            dir[256], corpus[1024];
    store          *st;
    hub_metrics     metrics;
    api_server     *api;
    uint16_t        port;
    store_instance  in[F_COUNT];
} fixture;

static void corpus_path(const fixture *fx, int i, char *out, size_t n)
{
    snprintf(out, n, "%s/dicom/%s", fx->corpus, corpus_files[i]);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc(*len + 1);
    assert_int_equal(fread(p, 1, *len, fp), *len);
    fclose(fp);
    return p;
}

static int group_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    const char *c = getenv("DXHUB_CORPUS");
    snprintf(fx->corpus, sizeof fx->corpus, "%s", c ? c : "../shared/corpus");
    snprintf(fx->dir, sizeof fx->dir, "/tmp/dxhub-test-api-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    store_config sc = {.dir = fx->dir, .map_size = 64 << 20};
    char err[256];
    if (store_open(&sc, &fx->st, err, sizeof err)) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    for (int i = 0; i < F_COUNT; i++) {
        char p[1200];
        corpus_path(fx, i, p, sizeof p);
        store_put_result r;
        if (store_put_file(fx->st, p, "dicom:TESTSCU", 1700000000000 + i, &r) || r.result != STORE_STORED) {
            fprintf(stderr, "store_put_file %s: %d %s\n", p, r.result, r.reason);
            return -1;
        }
        fx->in[i] = r.inst;
    }
    store_set_study_state(fx->st, fx->in[F_MR].study_uid, STUDY_COMPLETE, 1700000001000);
    api_config ac = {.port = 0, .st = fx->st, .metrics = &fx->metrics, .threads = 2};
    if (api_start(&ac, &fx->api, err, sizeof err)) {
        fprintf(stderr, "api_start: %s\n", err);
        return -1;
    }
    fx->port = api_port(fx->api);
    *state = fx;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *fx = *state;
    api_stop(&fx->api);
    store_close(&fx->st);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    int rc = system(cmd);
    free(fx);
    return rc;
}

/* ---- a small HTTP/1.1 client ------------------------------------------- */

typedef struct reply {
    int     status;
    char    head[4096];  /* status line and headers, NUL-terminated */
    uint8_t *body;       /* NUL-terminated too */
    size_t  body_len;
} reply;

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* Value of a response header (case-insensitive name), or NULL. */
static const char *header(const reply *r, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(r->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (!strncasecmp(h, name, nl) && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ')
                h++;
            size_t vl = strcspn(h, "\r");
            snprintf(out, n, "%.*s", (int)vl, h);
            return out;
        }
    }
    return NULL;
}

/* Reads one response from fd (Content-Length framed, or to EOF). */
static void read_reply(int fd, reply *r, bool head_only)
{
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap + 1);
    char *end = NULL;
    while (!end) {
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        assert_true(n > 0);
        len += (size_t)n;
        buf[len] = 0;
        end = strstr((char *)buf, "\r\n\r\n");
        if (!end && len == cap)
            fail_msg("response head too long");
    }
    size_t hl = (size_t)(end - (char *)buf) + 4;
    assert_true(hl < sizeof r->head);
    memcpy(r->head, buf, hl);
    r->head[hl] = 0;
    assert_int_equal(sscanf(r->head, "HTTP/1.%*d %d", &r->status), 1);
    char cl[32];
    long want = header(r, "Content-Length", cl, sizeof cl) ? atol(cl) : -1;
    if (head_only)
        want = 0;
    size_t blen = len - hl;
    memmove(buf, buf + hl, blen);
    for (;;) {
        if (want >= 0 && blen >= (size_t)want)
            break;
        if (blen == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t n = recv(fd, buf + blen, cap - blen, 0);
        if (n == 0 && want < 0)
            break;
        assert_true(n > 0);
        blen += (size_t)n;
    }
    buf[blen] = 0;
    r->body = buf;
    r->body_len = blen;
}

static void request_ex(const fixture *fx, const char *method, const char *path, const char *extra, reply *r)
{
    int fd = dial(fx->port);
    char req[2048];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", method, path,
                     extra ? extra : "");
    send_all(fd, req, (size_t)n);
    read_reply(fd, r, !strcmp(method, "HEAD"));
    close(fd);
}

static void get(const fixture *fx, const char *path, reply *r) { request_ex(fx, "GET", path, NULL, r); }

/* GET that must answer status with a JSON body; returns the parsed body. */
static json_t *get_json(const fixture *fx, const char *path, int status)
{
    reply r;
    get(fx, path, &r);
    if (r.status != status)
        fail_msg("%s: HTTP %d, expected %d: %s", path, r.status, status, (char *)r.body);
    char ct[128];
    assert_non_null(header(&r, "Content-Type", ct, sizeof ct));
    assert_non_null(strstr(ct, "application/json"));
    json_error_t je;
    json_t *j = json_loadb((const char *)r.body, r.body_len, 0, &je);
    if (!j)
        fail_msg("%s: not JSON (%s): %.200s", path, je.text, (char *)r.body);
    free(r.body);
    return j;
}

static const char *jstr(const json_t *o, const char *path_key)
{
    const char *s = json_string_value(json_object_get(o, path_key));
    assert_non_null(s);
    return s;
}

/* First Value of a DICOM JSON attribute, as a string ("" when absent). */
static const char *dicom_value(const json_t *obj, const char *tag)
{
    json_t *v = json_object_get(json_object_get(obj, tag), "Value");
    json_t *first = json_array_get(v, 0);
    return first && json_is_string(first) ? json_string_value(first) : "";
}

static json_t *list(const fixture *fx, const char *query, int expect_total)
{
    char path[512];
    snprintf(path, sizeof path, "/api/v1/studies%s%s", query[0] ? "?" : "", query);
    json_t *j = get_json(fx, path, 200);
    json_int_t total = json_integer_value(json_object_get(j, "total"));
    if (total != expect_total)
        fail_msg("%s: total %lld, expected %d", path, (long long)total, expect_total);
    return j;
}

static bool listed(const json_t *j, const char *study_uid)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(j, "studies"), i, s) if (!strcmp(dicom_value(s, "0020000D"), study_uid)) return true;
    return false;
}

/* ---- the study list ----------------------------------------------------- */

static void test_list_returns_every_study_with_total(void **state)
{
    fixture *fx = *state;
    json_t *j = list(fx, "", F_COUNT);
    assert_int_equal(json_integer_value(json_object_get(j, "offset")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "limit")), 100);
    assert_int_equal(json_array_size(json_object_get(j, "studies")), F_COUNT);
    for (int i = 0; i < F_COUNT; i++)
        assert_true(listed(j, fx->in[i].study_uid));
    /* A study object: DICOM JSON members and the dxhub member. */
    json_t *s = json_array_get(json_object_get(j, "studies"), 0);
    static const char *const tags[] = {"0020000D", "00100010", "00100020", "00080020", "00080030",
                                       "00080050", "00080061", "00081030", "00201206", "00201208"};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        assert_non_null(json_object_get(json_object_get(s, tags[i]), "vr"));
    json_t *dx = json_object_get(s, "dxhub");
    assert_non_null(dx);
    assert_string_equal(jstr(dx, "origin"), "dicom:TESTSCU");
    assert_string_equal(jstr(dx, "priority"), "routine");
    assert_true(json_is_boolean(json_object_get(dx, "referral")));
    assert_int_equal(strlen(jstr(dx, "first_received")), 24); /* 2023-11-14T22:13:20.000Z */
    json_decref(j);
}

static void test_list_pages_with_offset_and_limit(void **state)
{
    fixture *fx = *state;
    json_t *all = list(fx, "", F_COUNT);
    json_t *page = list(fx, "offset=2&limit=3", F_COUNT);
    assert_int_equal(json_array_size(json_object_get(page, "studies")), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(dicom_value(json_array_get(json_object_get(page, "studies"), i), "0020000D"),
                            dicom_value(json_array_get(json_object_get(all, "studies"), i + 2), "0020000D"));
    json_t *past = list(fx, "offset=100", F_COUNT);
    assert_int_equal(json_array_size(json_object_get(past, "studies")), 0);
    json_t *none = list(fx, "limit=0", F_COUNT);
    assert_int_equal(json_array_size(json_object_get(none, "studies")), 0);
    json_decref(all);
    json_decref(page);
    json_decref(past);
    json_decref(none);
}

static void test_list_filters_by_patient_id(void **state)
{
    fixture *fx = *state;
    json_t *j = list(fx, "PatientID=1CT1", 2); /* CT_small and CT1_UNC (dcmdump: both 1CT1) */
    assert_true(listed(j, fx->in[F_CT].study_uid));
    assert_true(listed(j, fx->in[F_CT_BIG].study_uid));
    json_decref(j);
    json_decref(list(fx, "00100020=4MR1", 1)); /* the tag form, as QIDO-RS allows */
    json_decref(list(fx, "PatientID=nobody", 0));
}

static void test_list_filters_by_study_date_forms(void **state)
{
    fixture *fx = *state;
    json_t *j = list(fx, "StudyDate=20040826", 2); /* MR_small, CT1_UNC */
    assert_true(listed(j, fx->in[F_MR].study_uid));
    assert_true(listed(j, fx->in[F_CT_BIG].study_uid));
    json_decref(j);
    j = list(fx, "StudyDate=20040101-20040131", 1);
    assert_true(listed(j, fx->in[F_CT].study_uid));
    json_decref(j);
    /* liver: 20030417.  chrX1 has no Study Date: the store's filter lets an
     * empty date through an open-ended "-TO" range, so the total is not
     * asserted here (see the store's filter). */
    char path[64] = "/api/v1/studies?StudyDate=-20031231";
    j = get_json(fx, path, 200);
    assert_true(listed(j, fx->in[F_DEFL].study_uid));
    assert_false(listed(j, fx->in[F_CT].study_uid));
    json_decref(j);
    j = list(fx, "StudyDate=20050101-", 1); /* MR-SIEMENS: 20051130 */
    assert_true(listed(j, fx->in[F_MR_OVL].study_uid));
    json_decref(j);
}

static void test_list_filters_by_modality_accession_state_and_uid(void **state)
{
    fixture *fx = *state;
    json_t *j = list(fx, "ModalitiesInStudy=MR", 2);
    assert_true(listed(j, fx->in[F_MR].study_uid));
    assert_true(listed(j, fx->in[F_MR_OVL].study_uid));
    json_decref(j);
    j = list(fx, "AccessionNumber=8000000000330109", 1);
    assert_true(listed(j, fx->in[F_MR_OVL].study_uid));
    json_decref(j);
    j = list(fx, "state=complete", 1);
    assert_true(listed(j, fx->in[F_MR].study_uid));
    assert_string_equal(jstr(json_object_get(json_array_get(json_object_get(j, "studies"), 0), "dxhub"), "state"),
                        "complete");
    json_decref(j);
    json_decref(list(fx, "state=receiving", F_COUNT - 1));
    char q[160];
    snprintf(q, sizeof q, "StudyInstanceUID=%s", fx->in[F_CHR].study_uid);
    json_decref(list(fx, q, 1));
    snprintf(q, sizeof q, "StudyInstanceUID=%s&ModalitiesInStudy=CT", fx->in[F_CHR].study_uid);
    json_decref(list(fx, q, 0));
    json_decref(list(fx, "PatientID=1CT1&StudyDate=20040826&ModalitiesInStudy=CT", 1));
}

static void test_list_gives_patient_name_component_groups(void **state)
{
    fixture *fx = *state;
    char q[160];
    snprintf(q, sizeof q, "StudyInstanceUID=%s", fx->in[F_CHR].study_uid);
    json_t *j = list(fx, q, 1);
    json_t *s = json_array_get(json_object_get(j, "studies"), 0);
    json_t *pn = json_object_get(s, "00100010");
    assert_string_equal(jstr(pn, "vr"), "PN");
    json_t *name = json_array_get(json_object_get(pn, "Value"), 0);
    /* dcmdump: Wang^XiaoDong=王^小東= (ISO 2022 IR 58) */
    assert_string_equal(jstr(name, "Alphabetic"), "Wang^XiaoDong");
    assert_string_equal(jstr(name, "Ideographic"), "王^小東");
    assert_null(json_object_get(name, "Phonetic"));
    assert_string_equal(dicom_value(s, "00100020"), "X1EXAMPLE");
    assert_null(json_object_get(json_object_get(s, "00080020"), "Value")); /* empty: no Value (F.2.5) */
    json_decref(j);
}

/* ---- study detail --------------------------------------------------------- */

static json_t *detail(const fixture *fx, int i)
{
    char path[160];
    snprintf(path, sizeof path, "/api/v1/studies/%s", fx->in[i].study_uid);
    return get_json(fx, path, 200);
}

static json_t *only_instance(json_t *d, json_t **series_out)
{
    json_t *series = json_object_get(d, "series");
    assert_int_equal(json_array_size(series), 1);
    *series_out = json_array_get(series, 0);
    json_t *insts = json_object_get(*series_out, "instances");
    assert_int_equal(json_array_size(insts), 1);
    return json_array_get(insts, 0);
}

/* The header as DICOM JSON straight from the original file (oracle for the
 * API's prefix reading: the same writer over the whole file). */
static json_t *header_of_file(const fixture *fx, int i)
{
    char p[1200], base[128];
    corpus_path(fx, i, p, sizeof p);
    dcm_parse_opts po = {.stop_at_tag = DCM_TAG_PIXEL_DATA};
    dcm_file *f = NULL;
    dcm_err err;
    assert_int_equal(dcm_open(p, &po, &f, &err), 0);
    char *text = NULL;
    size_t tl = 0;
    FILE *mem = open_memstream(&text, &tl);
    snprintf(base, sizeof base, "/api/v1/instances/%s/file", fx->in[i].sop_uid);
    /* Deflated data sets: binary values inline (offsets would be into the
     * inflated bytes, not the stored file). */
    dcm_json_opts jo = {.bulk_threshold = dcm_file_ts(f)->deflated ? SIZE_MAX : 1024, .bulk_uri_base = base};
    assert_int_equal(dcm_json_write(f, &jo, dcm_sink_stdio(mem), &err), 0);
    fclose(mem);
    dcm_free(&f);
    json_t *j = json_loadb(text, tl, 0, NULL);
    free(text);
    assert_non_null(j);
    return j;
}

static void sha256_hex(const uint8_t *p, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned ml = 0;
    assert_int_equal(EVP_Digest(p, n, md, &ml, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void test_detail_has_series_and_full_instance_header(void **state)
{
    fixture *fx = *state;
    json_t *d = detail(fx, F_CT);
    assert_string_equal(dicom_value(json_object_get(d, "study"), "0020000D"), fx->in[F_CT].study_uid);
    json_t *series, *inst = only_instance(d, &series);
    assert_string_equal(dicom_value(series, "0020000E"), fx->in[F_CT].series_uid);
    assert_string_equal(dicom_value(series, "00080060"), "CT");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(json_object_get(series, "00200011"), "Value"), 0)), 1);
    assert_string_equal(dicom_value(inst, "00080018"), fx->in[F_CT].sop_uid);
    assert_null(json_object_get(inst, "7FE00010")); /* pixel data stays out */
    json_t *dx = json_object_get(inst, "dxhub");
    assert_non_null(dx);
    assert_false(json_is_true(json_object_get(dx, "conflict")));
    assert_int_equal(json_integer_value(json_object_get(dx, "size")), 39206);
    assert_string_equal(jstr(dx, "transfer_syntax"), "1.2.840.10008.1.2.1");
    assert_string_equal(jstr(dx, "source"), "dicom:TESTSCU");
    /* digest: SHA-256 of the data set bytes, after the meta group (OpenSSL) */
    char p[1200], hex[65];
    corpus_path(fx, F_CT, p, sizeof p);
    size_t len;
    uint8_t *bytes = slurp(p, &len);
    sha256_hex(bytes + fx->in[F_CT].dataset_offset, len - fx->in[F_CT].dataset_offset, hex);
    assert_string_equal(jstr(dx, "digest"), hex);
    free(bytes);
    /* The rest is the file's own header, element for element. */
    json_object_del(inst, "dxhub");
    json_t *want = header_of_file(fx, F_CT);
    assert_true(json_equal(inst, want));
    json_decref(want);
    json_decref(d);
}

static void test_detail_reads_headers_longer_than_the_first_read(void **state)
{
    fixture *fx = *state;
    /* MR-SIEMENS: overlay data before pixel data puts the header past 64 KiB;
     * CT1_UNC: a short header in a 530 KB file (stops at pixel data). */
    int cases[] = {F_MR_OVL, F_CT_BIG, F_DEFL, F_CHR};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (int pass = 0; pass < 2; pass++) { /* second pass: from the header cache */
            json_t *d = detail(fx, cases[k]);
            json_t *series, *inst = only_instance(d, &series);
            assert_null(json_object_get(json_object_get(inst, "dxhub"), "error"));
            json_object_del(inst, "dxhub");
            json_t *want = header_of_file(fx, cases[k]);
            if (!json_equal(inst, want))
                fail_msg("%s: header JSON differs from the file's", corpus_files[cases[k]]);
            json_decref(want);
            json_decref(d);
        }
    }
    json_t *d = detail(fx, F_MR_OVL);
    json_t *series;
    only_instance(d, &series);
    assert_string_equal(dicom_value(series, "0008103E"), "marked lesion<MPR Collection>"); /* dcmdump */
    assert_int_equal(json_integer_value(json_array_get(json_object_get(json_object_get(series, "00200011"), "Value"), 0)), 18);
    json_decref(d);
}

/* A detail is served from a cache of rendered bodies: a change to the
 * study (state, marker) must show at once. */
static void test_detail_follows_changes_to_the_study(void **state)
{
    fixture *fx = *state;
    json_t *d = detail(fx, F_CT_BIG);
    json_t *dx = json_object_get(json_object_get(d, "study"), "dxhub");
    assert_string_equal(jstr(dx, "state"), "receiving");
    assert_string_equal(jstr(dx, "priority"), "routine");
    json_decref(d);
    json_decref(detail(fx, F_CT_BIG)); /* cached now */
    assert_int_equal(store_set_study_state(fx->st, fx->in[F_CT_BIG].study_uid, STUDY_READING, 1700000002000), 0);
    store_marker m = {.expected = 5, .priority = 2, .referral = 1};
    assert_int_equal(store_study_marker(fx->st, fx->in[F_CT_BIG].study_uid, &m, 1700000003000), 0);
    d = detail(fx, F_CT_BIG);
    dx = json_object_get(json_object_get(d, "study"), "dxhub");
    assert_string_equal(jstr(dx, "state"), "reading");
    assert_string_equal(jstr(dx, "priority"), "stat");
    assert_true(json_is_true(json_object_get(dx, "referral")));
    assert_int_equal(json_integer_value(json_object_get(dx, "expected")), 5);
    json_decref(d);
    store_set_study_state(fx->st, fx->in[F_CT_BIG].study_uid, STUDY_RECEIVING, 1700000004000);
}

static void test_detail_of_unknown_study_is_404(void **state)
{
    fixture *fx = *state;
    json_t *j = get_json(fx, "/api/v1/studies/1.2.3.4.5.6", 404);
    assert_string_equal(jstr(j, "path"), "/api/v1/studies/1.2.3.4.5.6");
    json_decref(j);
    j = get_json(fx, "/api/v1/studies/not-a-uid", 400);
    assert_string_equal(jstr(j, "parameter"), "StudyInstanceUID");
    json_decref(j);
}

/* ---- instance bytes ------------------------------------------------------- */

static void file_path(const fixture *fx, int i, const char *tail, char *out, size_t n)
{
    snprintf(out, n, "/api/v1/instances/%s/file%s", fx->in[i].sop_uid, tail);
}

static void test_file_returns_the_stored_bytes_exactly(void **state)
{
    fixture *fx = *state;
    for (int i = 0; i < F_COUNT; i++) {
        char p[1200], path[256], ct[64];
        corpus_path(fx, i, p, sizeof p);
        size_t len;
        uint8_t *orig = slurp(p, &len);
        file_path(fx, i, "", path, sizeof path);
        reply r;
        get(fx, path, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(header(&r, "Content-Type", ct, sizeof ct), "application/dicom");
        assert_int_equal(r.body_len, len);
        assert_memory_equal(r.body, orig, len);
        free(r.body);
        free(orig);
    }
}

static void test_file_honours_range_requests(void **state)
{
    fixture *fx = *state;
    char p[1200], path[256], v[128];
    corpus_path(fx, F_CT_BIG, p, sizeof p);
    size_t len;
    uint8_t *orig = slurp(p, &len);
    file_path(fx, F_CT_BIG, "", path, sizeof path);
    reply r;
    request_ex(fx, "GET", path, "Range: bytes=128-131\r\n", &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body_len, 4);
    assert_memory_equal(r.body, "DICM", 4);
    snprintf(v, sizeof v, "bytes 128-131/%zu", len);
    char got[128];
    assert_string_equal(header(&r, "Content-Range", got, sizeof got), v);
    free(r.body);
    request_ex(fx, "GET", path, "Range: bytes=-1000\r\n", &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body_len, 1000);
    assert_memory_equal(r.body, orig + len - 1000, 1000);
    free(r.body);
    request_ex(fx, "GET", path, "Range: bytes=300000-\r\n", &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body_len, len - 300000);
    assert_memory_equal(r.body, orig + 300000, len - 300000);
    free(r.body);
    snprintf(v, sizeof v, "Range: bytes=%zu-\r\n", len);
    request_ex(fx, "GET", path, v, &r);
    assert_int_equal(r.status, 416);
    snprintf(v, sizeof v, "bytes */%zu", len);
    assert_string_equal(header(&r, "Content-Range", got, sizeof got), v);
    free(r.body);
    request_ex(fx, "GET", path, "Range: bytes=0-1,5-9\r\n", &r); /* several ranges: the whole file */
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, len);
    free(r.body);
    free(orig);
}

static void test_bulk_data_uri_serves_the_value_bytes(void **state)
{
    fixture *fx = *state;
    /* Overlay Data (6000,3000) of MR-SIEMENS is a BulkDataURI in the header. */
    json_t *d = detail(fx, F_MR_OVL);
    json_t *series, *inst = only_instance(d, &series);
    const char *uri = json_string_value(json_object_get(json_object_get(inst, "60003000"), "BulkDataURI"));
    assert_non_null(uri);
    size_t off = 0, n = 0;
    const char *q = strchr(uri, '?');
    assert_non_null(q);
    assert_int_equal(sscanf(q, "?offset=%zu&length=%zu", &off, &n), 2);
    reply r;
    get(fx, uri, &r);
    assert_int_equal(r.status, 200);
    char p[1200];
    corpus_path(fx, F_MR_OVL, p, sizeof p);
    size_t len;
    uint8_t *orig = slurp(p, &len);
    assert_true(off + n <= len);
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, orig + off, n);
    free(r.body);
    free(orig);
    json_decref(d);
    char path[256];
    file_path(fx, F_MR_OVL, "?offset=99999999", path, sizeof path);
    json_t *e = get_json(fx, path, 400);
    assert_string_equal(jstr(e, "parameter"), "offset");
    json_decref(e);
}

static void test_file_of_unknown_instance_is_404(void **state)
{
    fixture *fx = *state;
    json_decref(get_json(fx, "/api/v1/instances/1.2.3/file", 404));
    json_decref(get_json(fx, "/api/v1/instances/1.2.3/other", 404));
}

/* ---- health and metrics ----------------------------------------------------- */

static void test_health_reports_counts_and_map_use(void **state)
{
    fixture *fx = *state;
    json_t *h = get_json(fx, "/api/v1/health", 200);
    assert_string_equal(jstr(h, "status"), "ok");
    assert_string_equal(jstr(h, "store"), "ok");
    assert_int_equal(json_integer_value(json_object_get(h, "instances")), F_COUNT);
    json_t *st = json_object_get(h, "studies");
    assert_int_equal(json_integer_value(json_object_get(st, "receiving")), F_COUNT - 1);
    assert_int_equal(json_integer_value(json_object_get(st, "complete")), 1);
    assert_int_equal(json_integer_value(json_object_get(st, "signed")), 0);
    assert_int_equal(json_integer_value(json_object_get(h, "map_size_bytes")), 64 << 20);
    json_int_t used = json_integer_value(json_object_get(h, "map_used_bytes"));
    assert_true(used > 1100000 && used < (64 << 20)); /* the six files are 1.1 MB */
    double ratio = json_number_value(json_object_get(h, "map_used_ratio"));
    assert_true(ratio > 0 && ratio < 0.95);
    assert_true(json_integer_value(json_object_get(h, "uptime_s")) >= 0);
    json_decref(h);
}

typedef struct family {
    char name[96], type[16];
    bool help;
} family;

/* The Prometheus text format 0.0.4, line by line: HELP and TYPE precede
 * their samples, a sample belongs to a declared family, values parse. */
static void test_metrics_are_well_formed_prometheus_text(void **state)
{
    fixture *fx = *state;
    reply r;
    get(fx, "/metrics", &r);
    assert_int_equal(r.status, 200);
    char ct[96];
    assert_non_null(strstr(header(&r, "Content-Type", ct, sizeof ct), "text/plain; version=0.0.4"));
    regex_t help, type, sample;
    assert_int_equal(regcomp(&help, "^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^\n]+$", REG_EXTENDED), 0);
    assert_int_equal(regcomp(&type, "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$",
                             REG_EXTENDED), 0);
    assert_int_equal(regcomp(&sample,
                             "^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                             "(-?[0-9.e+-]+|\\+Inf|NaN)$",
                             REG_EXTENDED), 0);
    family fam[64];
    int nf = 0;
    double stored = -1, count = -1, inf = -1, prev_bucket = 0, http_inf = -1, http_count = -2, http_prev = 0;
    char *text = (char *)r.body;
    assert_true(r.body_len > 0 && text[r.body_len - 1] == '\n');
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        regmatch_t m[4];
        char name[96];
        if (!regexec(&help, line, 2, m, 0)) {
            assert_true(nf < 64);
            snprintf(fam[nf].name, sizeof fam[nf].name, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
            fam[nf].help = true;
            fam[nf++].type[0] = 0;
            continue;
        }
        if (!regexec(&type, line, 3, m, 0)) {
            snprintf(name, sizeof name, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
            assert_true(nf > 0);
            assert_string_equal(fam[nf - 1].name, name); /* TYPE right after its HELP */
            snprintf(fam[nf - 1].type, sizeof fam[nf - 1].type, "%.*s", (int)(m[2].rm_eo - m[2].rm_so),
                     line + m[2].rm_so);
            continue;
        }
        if (regexec(&sample, line, 4, m, 0))
            fail_msg("malformed metrics line: '%s'", line);
        snprintf(name, sizeof name, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
        assert_true(nf > 0 && fam[nf - 1].type[0]);
        const char *f = fam[nf - 1].name;
        size_t fl = strlen(f);
        bool belongs = !strcmp(name, f) || (!strcmp(fam[nf - 1].type, "histogram") && !strncmp(name, f, fl) &&
                                             (!strcmp(name + fl, "_bucket") || !strcmp(name + fl, "_sum") ||
                                              !strcmp(name + fl, "_count")));
        if (!belongs)
            fail_msg("sample %s outside its family %s", name, f);
        if (!strcmp(fam[nf - 1].type, "counter") && strcmp(f + fl - 6, "_total"))
            fail_msg("counter %s does not end in _total", f);
        double v = strtod(strrchr(line, ' ') + 1, NULL);
        if (strstr(line, "dxhub_store_results_total{result=\"stored\"}"))
            stored = v;
        if (!strcmp(name, "dxhub_commit_duration_seconds_bucket")) {
            assert_true(v >= prev_bucket); /* cumulative */
            prev_bucket = v;
            if (strstr(line, "le=\"+Inf\""))
                inf = v;
        }
        if (!strcmp(name, "dxhub_commit_duration_seconds_count"))
            count = v;
        if (!strcmp(name, "dxhub_http_handling_seconds_bucket")) {
            assert_true(v >= http_prev); /* cumulative */
            http_prev = v;
            if (strstr(line, "le=\"+Inf\""))
                http_inf = v;
        }
        if (!strcmp(name, "dxhub_http_handling_seconds_count"))
            http_count = v;
    }
    assert_true(stored == F_COUNT);
    assert_true(inf >= 1 && inf == count);
    /* every request answered before this one was timed */
    assert_true(http_inf >= 1 && http_inf == http_count);
    static const char *const needed[] = {
        "dxhub_instances_received_total", "dxhub_bytes_received_total", "dxhub_store_results_total",
        "dxhub_commits_total", "dxhub_commit_instances_total", "dxhub_commit_duration_seconds", "dxhub_studies",
        "dxhub_errors_total", "dxhub_lmdb_map_used_bytes", "dxhub_lmdb_map_size_bytes",
        "dxhub_http_requests_total", "dxhub_http_handling_seconds", "dxhub_reader_offer_seconds", "dxhub_up"};
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        bool found = false;
        for (int k = 0; k < nf && !found; k++)
            found = !strcmp(fam[k].name, needed[i]) && fam[k].help && fam[k].type[0];
        if (!found)
            fail_msg("family %s missing", needed[i]);
    }
    regfree(&help);
    regfree(&type);
    regfree(&sample);
    free(r.body);
}

/* ---- errors ----------------------------------------------------------------- */

static void expect_bad_param(const fixture *fx, const char *path, const char *param)
{
    json_t *j = get_json(fx, path, 400);
    assert_string_equal(jstr(j, "error"), "bad parameter");
    assert_string_equal(jstr(j, "parameter"), param);
    assert_true(strlen(jstr(j, "reason")) > 0);
    json_decref(j);
}

static void test_bad_parameters_are_400_naming_the_parameter(void **state)
{
    fixture *fx = *state;
    expect_bad_param(fx, "/api/v1/studies?limit=5000", "limit");
    expect_bad_param(fx, "/api/v1/studies?limit=-1", "limit");
    expect_bad_param(fx, "/api/v1/studies?offset=x", "offset");
    expect_bad_param(fx, "/api/v1/studies?StudyDate=2004", "StudyDate");
    expect_bad_param(fx, "/api/v1/studies?StudyDate=20041301", "StudyDate");
    expect_bad_param(fx, "/api/v1/studies?StudyDate=20050101-20040101", "StudyDate");
    expect_bad_param(fx, "/api/v1/studies?StudyDate=-", "StudyDate");
    expect_bad_param(fx, "/api/v1/studies?state=lost", "state");
    expect_bad_param(fx, "/api/v1/studies?ModalitiesInStudy=mr", "ModalitiesInStudy");
    expect_bad_param(fx, "/api/v1/studies?PatientID=1CT*", "PatientID");
    expect_bad_param(fx, "/api/v1/studies?StudyInstanceUID=abc", "StudyInstanceUID");
    expect_bad_param(fx, "/api/v1/studies?PatientId=1CT1", "PatientId"); /* a typo must not list everyone */
    expect_bad_param(fx, "/api/v1/studies?limit=1&limit=2", "limit");
}

static void test_unknown_path_is_404_and_wrong_method_405(void **state)
{
    fixture *fx = *state;
    json_t *j = get_json(fx, "/api/v2/everything", 404);
    assert_string_equal(jstr(j, "path"), "/api/v2/everything");
    assert_non_null(json_object_get(j, "error"));
    json_decref(j);
    json_decref(get_json(fx, "/", 404));
    json_decref(get_json(fx, "/api/v1/studies/", 404));
    reply r;
    request_ex(fx, "DELETE", "/api/v1/studies", NULL, &r);
    assert_int_equal(r.status, 405);
    char allow[64];
    assert_string_equal(header(&r, "Allow", allow, sizeof allow), "GET, HEAD");
    assert_non_null(strstr((char *)r.body, "\"method not allowed\""));
    free(r.body);
    request_ex(fx, "POST", "/api/v1/health", "Content-Length: 2\r\n\r\n{}", &r);
    assert_int_equal(r.status, 405);
    free(r.body);
    request_ex(fx, "HEAD", "/api/v1/health", NULL, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    assert_true(atomic_load(&fx->metrics.errors[HUB_ERR_HTTP_NOT_FOUND]) >= 3);
    assert_true(atomic_load(&fx->metrics.http_requests) >= 6);
}

static void test_keep_alive_answers_several_requests_on_one_connection(void **state)
{
    fixture *fx = *state;
    int fd = dial(fx->port);
    for (int i = 0; i < 3; i++) {
        static const char req[] = "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        send_all(fd, req, sizeof req - 1);
        reply r;
        read_reply(fd, &r, false);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr((char *)r.body, "\"status\":\"ok\""));
        free(r.body);
    }
    close(fd);
}

/* ---- audit ------------------------------------------------------------------ */

typedef struct audit_scan {
    char what[32], study[80], detail[96];
    long accesses;          /* matching accesses (a record may carry several) */
    bool leaked_name;
} audit_scan;

static int scan_audit(void *ctx, uint64_t seq, const char *json, size_t len)
{
    (void)seq;
    audit_scan *a = ctx;
    char rec[1024], w[64];
    snprintf(rec, sizeof rec, "%.*s", (int)len, json);
    if (strstr(rec, "CompressedSamples") || strstr(rec, "Wang") || strstr(rec, "Sssssss"))
        a->leaked_name = true;
    snprintf(w, sizeof w, "\"what\":\"%s\"", a->what);
    if (!strstr(rec, "\"who\":\"http:127.0.0.1\"") || !strstr(rec, w) || !strstr(rec, a->study) ||
        !strstr(rec, a->detail))
        return 0;
    const char *n = strstr(rec, "accesses=");
    a->accesses += n ? atol(n + 9) : 1;
    return 0;
}

/* Accesses on the trail with this what, study and a detail containing
 * `detail`, waiting up to 5 s for `want` of them (records are written
 * behind the answers). */
static long audited(const fixture *fx, const char *what, const char *study, const char *detail, long want,
                    bool *leaked)
{
    audit_scan a;
    for (int tries = 0; tries < 500; tries++, usleep(10000)) {
        memset(&a, 0, sizeof a);
        snprintf(a.what, sizeof a.what, "%s", what);
        snprintf(a.study, sizeof a.study, "\"study\":\"%s\"", study);
        snprintf(a.detail, sizeof a.detail, "%s", detail);
        store_audit_walk(fx->st, 0, scan_audit, &a);
        if (a.accesses >= want)
            break;
    }
    if (leaked)
        *leaked = a.leaked_name;
    return a.accesses;
}

static void test_every_access_to_patient_data_is_audited(void **state)
{
    fixture *fx = *state;
    const char *uid = fx->in[F_MR].study_uid;
    /* Requests this test alone makes (a unique limit, a unique range). */
    json_decref(detail(fx, F_MR));
    json_decref(list(fx, "PatientID=4MR1&limit=7", 1));
    char path[256];
    file_path(fx, F_MR, "", path, sizeof path);
    reply r;
    request_ex(fx, "GET", path, "Range: bytes=0-76\r\n", &r);
    assert_int_equal(r.status, 206);
    free(r.body);
    json_decref(get_json(fx, "/api/v1/health", 200)); /* no patient data: not audited */
    bool leaked = false;
    assert_int_equal(audited(fx, "read-study", uid, "", 1, NULL), 1);
    assert_int_equal(audited(fx, "list-studies", "", "PatientID=4MR1 limit=7", 1, NULL), 1);
    char d[96];
    snprintf(d, sizeof d, "%s bytes=0+77", fx->in[F_MR].sop_uid);
    assert_int_equal(audited(fx, "read-instance", uid, d, 1, &leaked), 1);
    assert_false(leaked); /* audit records name studies and IDs, never patients' names */
}

/* A burst of identical reads: every one is counted on the trail, though
 * identical ones queued during one store commit share a record. */
static void test_burst_of_reads_is_counted_on_the_trail(void **state)
{
    fixture *fx = *state;
    const char *uid = fx->in[F_CHR].study_uid;
    /* Earlier tests read this study too: wait until their records settle. */
    long before = -1, now = audited(fx, "read-study", uid, "", 0, NULL);
    for (int tries = 0; tries < 50 && now != before; tries++) {
        before = now;
        usleep(50000);
        now = audited(fx, "read-study", uid, "", 0, NULL);
    }
    int fd = dial(fx->port);
    char req[256];
    int n = snprintf(req, sizeof req, "GET /api/v1/studies/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", uid);
    for (int i = 0; i < 200; i++) {
        send_all(fd, req, (size_t)n);
        reply r;
        read_reply(fd, &r, false);
        assert_int_equal(r.status, 200);
        free(r.body);
    }
    close(fd);
    assert_int_equal(audited(fx, "read-study", uid, "", before + 200, NULL), before + 200);
}

typedef struct distinct_scan {
    bool seen[501];
    int  records, twice;
} distinct_scan;

static int scan_distinct(void *ctx, uint64_t seq, const char *json, size_t len)
{
    (void)seq;
    distinct_scan *d = ctx;
    char rec[1024];
    snprintf(rec, sizeof rec, "%.*s", (int)len, json);
    const char *l = strstr(rec, "PatientID=AUDITBATCH limit=");
    if (!l || !strstr(rec, "\"what\":\"list-studies\""))
        return 0;
    long n = atol(l + strlen("PatientID=AUDITBATCH limit="));
    if (n < 1 || n > 500)
        return 0;
    d->twice += d->seen[n];
    d->seen[n] = true;
    d->records++;
    return 0;
}

/* Many different accesses in a burst (as under a load generator): the
 * writer commits them in batches, and every one is on the trail once. */
static void test_distinct_accesses_in_a_burst_each_get_a_record(void **state)
{
    fixture *fx = *state;
    int fd = dial(fx->port);
    for (int i = 1; i <= 500; i++) {
        char req[256];
        int n = snprintf(req, sizeof req,
                         "GET /api/v1/studies?PatientID=AUDITBATCH&limit=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", i);
        send_all(fd, req, (size_t)n);
        reply r;
        read_reply(fd, &r, false);
        assert_int_equal(r.status, 200);
        free(r.body);
    }
    close(fd);
    distinct_scan d;
    for (int tries = 0; tries < 500; tries++, usleep(10000)) {
        memset(&d, 0, sizeof d);
        store_audit_walk(fx->st, 0, scan_distinct, &d);
        if (d.records >= 500)
            break;
    }
    assert_int_equal(d.records, 500);
    assert_int_equal(d.twice, 0);
}

/* A full map is an operating condition: health says so, reads go on. */
static void test_health_says_full_when_the_store_refuses_data(void **state)
{
    fixture *fx = *state;
    static const char *const big[] = {
        "explicit_le/eCT_Supplemental.dcm", "explicit_le/OBXXXX1A_2frame.dcm", "explicit_le/US1_UNCR.dcm",
        "explicit_le/693_UNCI.dcm", "explicit_le/mlut_18.dcm", "explicit_le/0051.dcm",
        "implicit_le/IM00001.implicit_little_endian.dcm"};
    char dir[300], err[256];
    snprintf(dir, sizeof dir, "%s/full", fx->dir);
    store_config sc = {.dir = dir, .map_size = 3 << 20};
    store *st = NULL;
    assert_int_equal(store_open(&sc, &st, err, sizeof err), 0);
    int full = 0, stored = 0;
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/dicom/%s", fx->corpus, big[i]);
        store_put_result r;
        store_put_file(st, p, "dicom:TESTSCU", 1700000000000, &r);
        full += r.result == STORE_FULL;
        stored += r.result == STORE_STORED;
    }
    assert_true(full > 0 && stored > 0);
    /* The trail too, to the last page: the API's own records cannot be written then. */
    char filler[300];
    int arc = 0;
    for (size_t size = sizeof filler - 1; size >= 1; size /= 3) { /* smaller records fill what larger ones left */
        memset(filler, 'x', size);
        filler[size] = '\0';
        arc = 0;
        for (int i = 0; i < 200000 && arc == 0; i++)
            arc = store_audit(st, 1700000000000 + i, "t", "f", "", filler);
        assert_int_equal(arc, -ENOSPC);
    }
    /* the hub's log, to read back what the audit writer said; stderr comes back at the end */
    char logpath[400];
    snprintf(logpath, sizeof logpath, "%s/full.log", fx->dir);
    int saved_stderr = dup(2);
    assert_int_equal(log_open(logpath, err, sizeof err), 0);
    api_config ac = {.st = st, .threads = 1};
    api_server *a = NULL;
    assert_int_equal(api_start(&ac, &a, err, sizeof err), 0);
    fixture other = *fx;
    other.port = api_port(a);
    json_t *h = get_json(&other, "/api/v1/health", 200);
    assert_string_equal(jstr(h, "status"), "ok");
    assert_string_equal(jstr(h, "store"), "full");
    json_decref(h);
    json_t *l = get_json(&other, "/api/v1/studies", 200); /* reading goes on */
    assert_int_equal(json_integer_value(json_object_get(l, "total")), stored);
    json_decref(l);
    reply r;
    get(&other, "/metrics", &r);
    assert_non_null(strstr((char *)r.body, "\ndxhub_store_full 1\n"));
    assert_non_null(strstr((char *)r.body, "dxhub_store_results_total{result=\"full\"} "));
    free(r.body);
    api_stop(&a); /* the audit records it cannot write are given up, without hanging */
    store_close(&st);
    /* ... and said: an operator must hear that accesses go unrecorded */
    size_t len = 0;
    char *log = (char *)slurp(logpath, &len);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    assert_non_null(log);
    assert_non_null(strstr(log, "audit trail: "));
    assert_non_null(strstr(log, "access records cannot be written (the store's map is full)"));
    free(log);
}

/* ---- lifecycle and dxhub status ---------------------------------------------- */

static void test_start_fails_cleanly_on_a_busy_port(void **state)
{
    fixture *fx = *state;
    api_config ac = {.bind = "127.0.0.1", .port = fx->port, .st = fx->st};
    api_server *a = NULL;
    char err[256] = "";
    int rc = api_start(&ac, &a, err, sizeof err);
    assert_true(rc < 0);
    assert_null(a);
    assert_non_null(strstr(err, "in use"));
    ac.bind = "localhost:80";
    assert_true(api_start(&ac, &a, err, sizeof err) < 0);
    assert_non_null(strstr(err, "not a numeric"));
    api_stop(&a); /* NULL-safe */
    /* A second server on an ephemeral port, stopped: its port is free again. */
    ac = (api_config){.bind = "::1", .st = fx->st, .threads = 1};
    if (api_start(&ac, &a, err, sizeof err) == 0) { /* IPv6 loopback may be absent */
        assert_true(api_port(a) > 0);
        api_stop(&a);
        assert_null(a);
    }
}

static int run_status(const char *hub, char *out, size_t n)
{
    char tmpl[] = "/tmp/dxhub-status-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    char *argv[] = {"status", "--hub", (char *)hub, NULL};
    int rc = cmd_status(3, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t got = read(fd, out, n - 1);
    out[got > 0 ? got : 0] = 0;
    close(fd);
    unlink(tmpl);
    return rc;
}

static void test_status_command_prints_health_for_people(void **state)
{
    fixture *fx = *state;
    char hub[64], out[4096];
    snprintf(hub, sizeof hub, "http://127.0.0.1:%u", fx->port);
    assert_int_equal(run_status(hub, out, sizeof out), 0);
    assert_non_null(strstr(out, "instances  6"));
    assert_non_null(strstr(out, "receiving"));
    assert_non_null(strstr(out, "% used") ? strstr(out, "% used") : strstr(out, "%)"));
    /* Unreachable: exit 1 (a port nobody listens on: ours, once stopped, is not
     * guaranteed; use a freshly bound and closed socket's port). */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    bind(s, (struct sockaddr *)&sa, sizeof sa);
    getsockname(s, (struct sockaddr *)&sa, &sl);
    snprintf(hub, sizeof hub, "http://127.0.0.1:%u", ntohs(sa.sin_port));
    close(s);
    assert_int_equal(run_status(hub, out, sizeof out), 1);
    assert_int_equal(run_status("ftp://x", out, sizeof out), 2);
}

/* The API writes times and counts without printf or gmtime_r (whose
 * global lock every request would take); libc is the oracle here, over
 * the edges of the calendar (leap days, centuries, 2038) and a spread of
 * instants up to the year 9999. */
static void test_json_times_and_numbers_match_libc(void **state)
{
    (void)state;
    int64_t edges[] = {1, 999, 1000, 86399999, 86400000, 951782400000 /* 2000-02-29 */,
                       951868800000 /* 2000-03-01 */, 4107542400000 /* 2100-02-28 */,
                       4107628800000 /* 2100-03-01 */, 2147483648000 /* past 2038-01-19 */,
                       253402300799999 /* 9999-12-31T23:59:59.999 */};
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000 + (int)(sizeof edges / sizeof edges[0]); i++) {
        int64_t ms;
        if (i < (int)(sizeof edges / sizeof edges[0])) {
            ms = edges[i];
        } else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ms = 1 + (int64_t)(x % 253402300799999ULL);
        }
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        char want[40], day[32];
        strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want, sizeof want, "\"%s.%03dZ\"", day, (int)(ms % 1000));
        jbuf b = {0};
        jb_time(&b, ms);
        jb_put(&b, "", 1);
        assert_string_equal(b.p, want);
        jb_release(&b);

        char num[24];
        snprintf(num, sizeof num, "%llu", (unsigned long long)x);
        jb_uint(&b, x);
        jb_put(&b, "", 1);
        assert_string_equal(b.p, num);
        jb_release(&b);
    }
    jbuf b = {0};
    jb_time(&b, 0);
    jb_uint(&b, 0);
    jb_time(&b, 253402300800000); /* year 10000: no 4-digit form */
    jb_put(&b, "", 1);
    assert_string_equal(b.p, "null0null");
    jb_release(&b);
}

/* Accept-Encoding as RFC 9110 reads it: names case-insensitive, q=0
 * refuses, "*" stands for codings not named. */
static void test_accept_encoding_takes_gzip_as_the_rfc_says(void **state)
{
    (void)state;
    static const struct { const char *h; bool gzip; } cases[] = {
        {"gzip", true},           {"GZip", true},                  {"deflate, gzip;q=1.0", true},
        {"gzip, deflate, br", true}, {"br;q=1, gzip ; q=0.5", true}, {"x-gzip", true},
        {"*", true},              {"br, *;q=0.1", true},           {"gzip;q=0.001", true},
        {"", false},              {"identity", false},             {"deflate, br", false},
        {"gzip;q=0", false},      {"gzip;q=0.000", false},         {"gzip; q=0, *", false},
        {"*;q=0", false},         {"gzipx", false},                {"x-gzip;q=0, gzip", false},
    };
    assert_false(api_accepts_gzip(NULL));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (api_accepts_gzip(cases[i].h) != cases[i].gzip)
            fail_msg("Accept-Encoding \"%s\": expected %s", cases[i].h, cases[i].gzip ? "gzip" : "identity");
    }
}

/* zlib's own inflate, as any client: the gzip member of head, kept body
 * and tail inflates to exactly their concatenation with a good CRC and
 * size (a bad one is an error), for short and long tails and an empty
 * body; the body's deflated segment is made once and reused. */
static void test_gzip_answer_inflates_to_head_body_and_tail(void **state)
{
    (void)state;
    static char big[200000];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof big; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = "{}[],:\"abcdefghijklmnop0123456789 "[(x >> 16) % 34];
    }
    const size_t body_lens[] = {0, 1, 13101, 70000}, tail_lens[] = {0, 13, 1024, 1025, 140000};
    for (size_t bi = 0; bi < 4; bi++) {
        jbuf text = {0};
        jb_put(&text, big + 7, body_lens[bi]);
        api_body *body = api_body_new(&text);
        assert_non_null(body);
        for (size_t ti = 0; ti < 5; ti++) {
            jbuf head = {0}, tail = {0}, out = {0};
            jb_puts(&head, "{\"PatientID\":\"P1\",\"exams\":[");
            jb_put(&tail, big + 99, tail_lens[ti]);
            assert_int_equal(api_gzip_answer(&out, &head, body, &tail), 0);
            size_t want_len = head.len + body_lens[bi] + tail.len;
            char *want = malloc(want_len + 1), *got = malloc(want_len + 64);
            memcpy(want, head.p, head.len);
            memcpy(want + head.len, big + 7, body_lens[bi]);
            if (tail.len) /* tail.p is NULL when empty */
                memcpy(want + head.len + body_lens[bi], tail.p, tail.len);
            z_stream z = {0};
            assert_int_equal(inflateInit2(&z, 16 + 15), Z_OK); /* gzip wrapper only */
            z.next_in = (Bytef *)out.p;
            z.avail_in = (uInt)out.len;
            z.next_out = (Bytef *)got;
            z.avail_out = (uInt)(want_len + 64);
            assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
            assert_int_equal(z.total_out, want_len);
            assert_int_equal(z.avail_in, 0);
            assert_memory_equal(got, want, want_len);
            inflateEnd(&z);
            out.p[out.len - 5] ^= 1; /* the size in the trailer */
            assert_int_equal(inflateInit2(&z, 16 + 15), Z_OK);
            z.next_in = (Bytef *)out.p;
            z.avail_in = (uInt)out.len;
            z.next_out = (Bytef *)got;
            z.avail_out = (uInt)(want_len + 64);
            assert_int_equal(inflate(&z, Z_FINISH), Z_DATA_ERROR);
            inflateEnd(&z);
            free(want);
            free(got);
            jb_release(&head);
            jb_release(&tail);
            jb_release(&out);
        }
        const uint8_t *z1, *z2;
        size_t l1, l2;
        uint32_t c1, c2;
        assert_int_equal(api_body_deflated(body, &z1, &l1, &c1), 0);
        assert_int_equal(api_body_deflated(body, &z2, &l2, &c2), 0);
        assert_ptr_equal(z1, z2);
        assert_int_equal(c1, (uint32_t)crc32(0L, (const Bytef *)big + 7, (uInt)body_lens[bi]));
        api_body_unref(body);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_returns_every_study_with_total),
        cmocka_unit_test(test_list_pages_with_offset_and_limit),
        cmocka_unit_test(test_list_filters_by_patient_id),
        cmocka_unit_test(test_list_filters_by_study_date_forms),
        cmocka_unit_test(test_list_filters_by_modality_accession_state_and_uid),
        cmocka_unit_test(test_list_gives_patient_name_component_groups),
        cmocka_unit_test(test_detail_has_series_and_full_instance_header),
        cmocka_unit_test(test_detail_reads_headers_longer_than_the_first_read),
        cmocka_unit_test(test_detail_follows_changes_to_the_study),
        cmocka_unit_test(test_detail_of_unknown_study_is_404),
        cmocka_unit_test(test_file_returns_the_stored_bytes_exactly),
        cmocka_unit_test(test_file_honours_range_requests),
        cmocka_unit_test(test_bulk_data_uri_serves_the_value_bytes),
        cmocka_unit_test(test_file_of_unknown_instance_is_404),
        cmocka_unit_test(test_health_reports_counts_and_map_use),
        cmocka_unit_test(test_metrics_are_well_formed_prometheus_text),
        cmocka_unit_test(test_bad_parameters_are_400_naming_the_parameter),
        cmocka_unit_test(test_unknown_path_is_404_and_wrong_method_405),
        cmocka_unit_test(test_keep_alive_answers_several_requests_on_one_connection),
        cmocka_unit_test(test_every_access_to_patient_data_is_audited),
        cmocka_unit_test(test_distinct_accesses_in_a_burst_each_get_a_record),
        cmocka_unit_test(test_burst_of_reads_is_counted_on_the_trail),
        cmocka_unit_test(test_health_says_full_when_the_store_refuses_data),
        cmocka_unit_test(test_start_fails_cleanly_on_a_busy_port),
        cmocka_unit_test(test_status_command_prints_health_for_people),
        cmocka_unit_test(test_json_times_and_numbers_match_libc),
        cmocka_unit_test(test_accept_encoding_takes_gzip_as_the_rfc_says),
        cmocka_unit_test(test_gzip_answer_inflates_to_head_body_and_tail),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

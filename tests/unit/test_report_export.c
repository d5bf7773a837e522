/* test_report_export.c — the clinic's export of received reports
 * (report_export.h) on real files: a facility CA and reader made with
 * pki.h, a report signed with SM2/SM3 and wrapped as the hub delivers it;
 * then what is written, what is refused, malformed and mutated deliveries
 * (none may crash or export), and the PDF's paging and missing glyphs. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "hub/b64.h"
#include "hub/person_name.h"
#include "hub/pki.h"
#include "hub/report.h"
#include "hub/report_export.h"

#define PASS     "correct horse battery staple"
#define FACILITY "县医院影像中心"
#define FINDINGS "右肺上叶见团片状高密度影。<script>x</script> & \"引号\""

static char tmpdir[256];
static char *bundle;          /* a valid delivery */
static char *doc;             /* its report's bytes */
static size_t doc_len;

static const char *at(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *at(const char *fmt, ...)
{
    static char bufs[8][1024];
    static int k;
    char *b = bufs[k++ & 7];
    int n = snprintf(b, sizeof bufs[0], "%s/", tmpdir);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, sizeof bufs[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *p = malloc(*len + 1);
    assert_int_equal(fread(p, 1, *len, fp), *len);
    p[*len] = '\0';
    fclose(fp);
    return p;
}

/* The hub's DELIVER payload, as hub/serve.c makes it. */
static char *make_bundle_id(const char *id, const char *report, size_t len, const uint8_t *sig, size_t sig_len,
                            const char *chain)
{
    char *rb = base64_encode((const uint8_t *)report, len), *sb = base64_encode(sig, sig_len);
    json_t *j = json_pack("{s:s,s:i,s:s,s:b,s:s,s:s,s:s}", "report_id", id, "task", 7, "study", "1.2.3",
                          "critical", 1, "chain_pem", chain, "report_b64", rb, "signature_b64", sb);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    free(rb);
    free(sb);
    return text;
}

static char *make_bundle(const char *report, size_t len, const uint8_t *sig, size_t sig_len, const char *chain)
{
    return make_bundle_id("rpt-x1", report, len, sig, sig_len, chain);
}

/* A report with this id, signed by the reader, as the hub delivers it; *report gets its bytes. */
/* As signed_bundle, but the signed bytes say report_id `forged_id` (same
 * length as id): what a reader's own key could sign outside report_build. */
static char *signed_bundle_as(const char *id, const char *forged_id, char **report, size_t *report_len);

static char *signed_bundle(const char *id, char **report, size_t *report_len)
{
    return signed_bundle_as(id, NULL, report, report_len);
}

static char *signed_bundle_as(const char *id, const char *forged_id, char **report, size_t *report_len)
{
    char err[512];
    report_instance inst = {.sop = "1.2.3.4"};
    report_fields f = {.report_id = id, .study_uid = "1.2.3", .patient_id = "P0001",
                       .origin_facility = "clinic1", .reading_facility = FACILITY, .reader_id = "wangwei",
                       .reader_role = "attending", .reader_name = "王伟", .findings = FINDINGS,
                       .impression = "肺炎。", .critical = 1, .version = 1, .reported = time(NULL) - 60,
                       .exam_type = "CT chest"};
    if (report_build(&f, &inst, 1, report, report_len, err, sizeof err))
        fail_msg("report_build: %s", err);
    if (forged_id) {
        char want[96];
        snprintf(want, sizeof want, "\"report_id\":\"%s\"", id);
        char *at_id = strstr(*report, want);
        assert_non_null(at_id);
        assert_int_equal(strlen(forged_id), strlen(id));
        memcpy(at_id + strlen("\"report_id\":\""), forged_id, strlen(id));
        id = forged_id;
    }
    pki_key *k = NULL;
    pki_pass_src src = {.literal = PASS};
    if (pki_key_load(at("rd/wangwei.key"), &src, &k, err, sizeof err))
        fail_msg("key: %s", err);
    uint8_t sig[PKI_SIG_MAX];
    size_t sig_len;
    assert_int_equal(pki_sign(k, *report, *report_len, sig, &sig_len, err, sizeof err), 0);
    pki_key_free(&k);
    size_t cl;
    char *chain = slurp(at("rd/wangwei.chain.pem"), &cl);
    char *b = make_bundle_id(id, *report, *report_len, sig, sig_len, chain);
    free(chain);
    return b;
}

static report_verifier *verifier(const char *trust)
{
    report_verifier_config cfg = {.trust_dir = trust};
    report_verifier *v = NULL;
    char err[512];
    if (report_verifier_new(&cfg, &v, err, sizeof err))
        fail_msg("verifier: %s", err);
    return v;
}

static int export_to(const char *data, size_t len, const char *out, int json, int html, int pdf, char *why,
                     size_t whylen)
{
    report_verifier *v = verifier(at("ca"));
    report_export_opts o = {.out_dir = out, .verifier = v, .json = json, .html = html, .pdf = pdf};
    char id[REPORT_ID_MAX + 1];
    pki_identity who;
    int rc = report_export(&o, data, len, id, &who, why, whylen);
    report_verifier_free(&v);
    return rc;
}

static void test_export_writes_the_signed_bytes_and_both_pages(void **state)
{
    (void)state;
    char why[768] = "";
    int rc = export_to(bundle, strlen(bundle), at("out"), 1, 1, 1, why, sizeof why);
    if (rc)
        fail_msg("export: %s", why);
    size_t n;
    char *p = slurp(at("out/rpt-x1/report.json"), &n);
    assert_non_null(p);
    assert_int_equal(n, doc_len);
    assert_memory_equal(p, doc, n);
    free(p);
    p = slurp(at("out/rpt-x1/report.html"), &n);
    assert_non_null(p);
    assert_non_null(strstr(p, "&lt;script&gt;x&lt;/script&gt; &amp; &quot;引号&quot;"));
    assert_null(strstr(p, "<script>"));
    assert_non_null(strstr(p, "危急值 CRITICAL VALUE"));
    assert_non_null(strstr(p, "王伟"));
    free(p);
    p = slurp(at("out/rpt-x1/report.pdf"), &n);
    assert_non_null(p);
    assert_true(n > 1000 && !memcmp(p, "%PDF-", 5));
    free(p);
}

static void test_export_refused_when_the_trust_list_lacks_the_signer(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(pki_ca_init(at("other"), PKI_SM2, "elsewhere", time(NULL) - 60, time(NULL) + 86400, 30, NULL,
                                 0, err, sizeof err), 0);
    report_verifier *v = verifier(at("other"));
    report_export_opts o = {.out_dir = at("refused"), .verifier = v, .json = 1, .html = 1, .pdf = 1};
    char id[REPORT_ID_MAX + 1], why[768];
    int rc = report_export(&o, bundle, strlen(bundle), id, NULL, why, sizeof why);
    report_verifier_free(&v);
    assert_int_equal(rc, PKI_EUNTRUSTED);
    assert_string_equal(id, "rpt-x1");
    assert_non_null(strstr(why, "rpt-x1: not verified, not exported"));
    struct stat sb;
    assert_int_equal(stat(at("refused"), &sb), -1); /* nothing written, not even the folder */
}

static void test_malformed_deliveries_refused_or_skipped(void **state)
{
    (void)state;
    static const struct {
        const char *data;
        int         rc; /* 1 skipped, REPORT_EFORMAT refused */
    } cases[] = {
        {"", REPORT_EFORMAT},
        {"not json", REPORT_EFORMAT},
        {"[1,2]", REPORT_EFORMAT},
        {"{\"a\":1,\"a\":2}", REPORT_EFORMAT},
        {"{\"kind\":\"ecg\",\"findings\":\"flat lead\"}", 1}, /* an ECG triage alert */
        {"{\"report_id\":\"r\",\"report_b64\":\"e30K\",\"signature_b64\":\"\",\"chain_pem\":\"x\"}", 1},
        {"{\"report_id\":\"r\",\"report_b64\":\"e30K\",\"signature_b64\":\"AAAA\",\"chain_pem\":\"\"}", 1},
        {"{\"report_id\":\"r\",\"report_b64\":\"!!!!\",\"signature_b64\":\"AAAA\",\"chain_pem\":\"x\"}",
         REPORT_EFORMAT},
        {"{\"report_id\":\"r\",\"report_b64\":\"\",\"signature_b64\":\"AAAA\",\"chain_pem\":\"x\"}", REPORT_EFORMAT},
        {"{\"report_id\":7,\"report_b64\":\"e30K\",\"signature_b64\":\"AAAA\",\"chain_pem\":\"x\"}", 1},
        {"{\"report_id\":\"r\",\"report_b64\":5,\"signature_b64\":\"AAAA\",\"chain_pem\":\"x\"}", REPORT_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        report_bundle b;
        char why[256] = "";
        int rc = report_bundle_parse(cases[i].data, strlen(cases[i].data), &b, why, sizeof why);
        if (rc != cases[i].rc)
            fail_msg("case %zu: %d, expected %d (%s)", i, rc, cases[i].rc, why);
        if (rc == REPORT_EFORMAT)
            assert_true(why[0] != '\0');
        if (rc == 0)
            report_bundle_clear(&b);
    }
    /* a signature larger than any SM2/Ed25519 signature */
    uint8_t big[PKI_SIG_MAX + 1] = {0};
    char *text = make_bundle(doc, doc_len, big, sizeof big, "x");
    report_bundle b;
    char why[256];
    assert_int_equal(report_bundle_parse(text, strlen(text), &b, why, sizeof why), REPORT_EFORMAT);
    free(text);
    /* well-formed delivery, report not JSON: not verified */
    uint8_t sig[4] = {1, 2, 3, 4};
    size_t cl;
    char *chain = slurp(at("rd/wangwei.chain.pem"), &cl);
    text = make_bundle("{\"x\":1}\n", 8, sig, sizeof sig, chain);
    assert_true(export_to(text, strlen(text), at("junk"), 1, 0, 0, why, sizeof why) < 0);
    assert_non_null(strstr(why, "not verified"));
    free(text);
    free(chain);
}

/* Random byte changes, insertions and cuts of a valid delivery: each is
 * refused, skipped or (when the change missed the signed parts) exported —
 * never a crash, and never an export of bytes that are not the signed ones. */
static void test_mutated_deliveries_never_crash_or_export_other_bytes(void **state)
{
    (void)state;
    size_t n = strlen(bundle);
    char *m = malloc(n + 16);
    srand(7);
    int exported = 0, refused = 0;
    for (int round = 0; round < 1500; round++) {
        memcpy(m, bundle, n + 1);
        size_t len = n;
        int edits = 1 + rand() % 4;
        for (int e = 0; e < edits; e++) {
            size_t at_ = (size_t)rand() % len;
            switch (rand() % 3) {
            case 0: m[at_] = (char)(rand() & 0xff); break;
            case 1: m[at_] ^= (char)(1 << (rand() % 8)); break;
            case 2: len = at_ + 1; break;
            }
        }
        char why[768];
        int rc = export_to(m, len, at("mut"), 1, 0, 0, why, sizeof why);
        if (rc == 0) {
            size_t k;
            char *p = slurp(at("mut/rpt-x1/report.json"), &k);
            assert_non_null(p);
            assert_int_equal(k, doc_len);
            assert_memory_equal(p, doc, k);
            free(p);
            unlink(at("mut/rpt-x1/report.json"));
            exported++;
        } else if (rc < 0) {
            assert_true(why[0] != '\0');
            refused++;
        }
    }
    free(m);
    assert_true(refused > 500);
    (void)exported;
}

static void test_report_id_dot_dot_never_names_a_folder(void **state)
{
    (void)state;
    char *r;
    size_t rl;
    /* report_build refuses such an id; a signature over hand-made bytes
     * must not get one past the export either. */
    char *b = signed_bundle_as("zz", "..", &r, &rl);
    char why[768];
    assert_int_equal(mkdir(at("dots"), 0755), 0);
    assert_int_equal(mkdir(at("dots/out"), 0755), 0);
    assert_int_equal(export_to(b, strlen(b), at("dots/out"), 1, 1, 0, why, sizeof why), REPORT_EFORMAT);
    assert_true(why[0] != '\0');
    struct stat sb;
    assert_int_equal(stat(at("dots/report.json"), &sb), -1);
    assert_int_equal(stat(at("dots/report.html"), &sb), -1);
    free(b);
    free(r);
}

static report_info page_info(const char *findings)
{
    report_info in = {.format = REPORT_FORMAT, .report_id = "rpt-page", .study_uid = "1.2.3", .patient_id = "P1",
                      .origin_facility = "clinic1", .reading_facility = FACILITY, .reader_id = "wangwei",
                      .reader_role = "attending", .reader_name = "王伟", .reported = "2025-06-01T08:30:00Z",
                      .exam_type = "CT", .version = 1, .n_instances = 1, .findings = findings,
                      .impression = "印象"};
    return in;
}

static void test_page_shows_the_hubs_patient_record_only_for_the_reports_patient(void **state)
{
    (void)state;
    report_info in = page_info("所见");
    pki_identity who = {.name = "王伟", .reader_id = "wangwei", .facility = FACILITY, .issuer = "CA", .serial = "0A",
                        .alg = "sm2-sm3"};
    report_exam x = {.present = 1, .patient_id = "P1", .patient_name = "Wang^XiaoDong=王^小東=", .sex = "M",
                     .birth_date = "19700102", .accession = "A77", .study_date = "20250601", .modalities = "CT"};
    report_page page = {.info = &in, .exam = &x, .signer = &who, .verified_at = time(NULL)};
    char why[256];
    assert_int_equal(report_page_html(&page, at("exam.html"), why, sizeof why), 0);
    size_t n;
    char *h = slurp(at("exam.html"), &n);
    assert_non_null(strstr(h, "Wang XiaoDong / 王小東 (M, 1970-01-02)"));
    assert_non_null(strstr(h, "2025-06-01, accession A77, CT"));
    assert_non_null(strstr(h, "from the hub&#39;s study record"));
    free(h);
    /* another patient's record is never printed above this report */
    snprintf(x.patient_id, sizeof x.patient_id, "P2");
    assert_int_equal(report_page_html(&page, at("other.html"), why, sizeof why), 0);
    h = slurp(at("other.html"), &n);
    assert_null(strstr(h, "XiaoDong"));
    assert_null(strstr(h, "study record"));
    free(h);
}

static int count_pages(const char *pdf, size_t n)
{
    int pages = 0;
    for (const char *p = pdf; (p = memmem(p, n - (size_t)(p - pdf), "/Type /Page", 11)) != NULL; p += 11)
        if (p[11] != 's')
            pages++;
    return pages;
}

static void test_pdf_runs_long_findings_onto_more_pages_and_refuses_missing_glyphs(void **state)
{
    (void)state;
    size_t k = 0, cap = 40000;
    char *long_text = malloc(cap);
    for (int i = 0; i < 600; i++)
        k += (size_t)snprintf(long_text + k, cap - k, "第%d行：双肺纹理清晰，心影不大。\n", i);
    report_info in = page_info(long_text);
    pki_identity who = {.name = "王伟", .reader_id = "wangwei", .role = "attending", .facility = FACILITY,
                        .issuer = FACILITY " reader CA", .serial = "0A1B", .alg = "sm2-sm3"};
    report_page page = {.info = &in, .signer = &who, .verified_at = time(NULL)};
    char why[512] = "";
    int rc = report_page_pdf(&page, at("long.pdf"), why, sizeof why);
    if (rc)
        fail_msg("pdf: %s", why);
    size_t n;
    char *pdf = slurp(at("long.pdf"), &n);
    assert_true(count_pages(pdf, n) >= 5);
    free(pdf);
    free(long_text);

    /* U+10FFFD (private use, plane 16): no installed font has it */
    report_info bad = page_info("正常 \xF4\x8F\xBF\xBD 文字");
    page.info = &bad;
    rc = report_page_pdf(&page, at("bad.pdf"), why, sizeof why);
    assert_int_equal(rc, -ENOENT);
    assert_non_null(strstr(why, "no glyph"));
    struct stat sb;
    assert_int_equal(stat(at("bad.pdf"), &sb), -1);
}

static int setup(void **state)
{
    (void)state;
    time_t now = time(NULL);
    snprintf(tmpdir, sizeof tmpdir, "%s/dxhub-test-export-XXXXXX", P_tmpdir);
    assert_non_null(mkdtemp(tmpdir));
    char err[512];
    if (pki_ca_init(at("ca"), PKI_SM2, FACILITY, now - 300, now + 3650 * 86400L, 30, NULL, 0, err, sizeof err))
        fail_msg("ca: %s", err);
    char cap[1024], dp[1024];
    snprintf(cap, sizeof cap, "%s", at("ca"));
    snprintf(dp, sizeof dp, "%s", at("rd"));
    pki_reader_spec spec = {.reader_id = "wangwei", .name = "王伟", .role = "attending", .alg = PKI_SM2,
                            .not_before = now - 300, .not_after = now + 365 * 86400L};
    if (pki_ca_issue(cap, NULL, &spec, dp, PASS, strlen(PASS), NULL, err, sizeof err))
        fail_msg("issue: %s", err);
    bundle = signed_bundle("rpt-x1", &doc, &doc_len);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(bundle);
    free(doc);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

/* A person's name as the page and the clinic's list print it. */
static void test_person_names_read_as_people_write_them(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"张^三丰", "张三丰"},                       /* no space between CJK components */
        {"Zhang^San=张^三", "Zhang San / 张三"},     /* representations apart */
        {"WANG^XIAOMING^^^", "WANG XIAOMING"},       /* empty components left out */
        {"=张^三", "张三"},                          /* no alphabetic one */
        {"", ""},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        person_name_readable(cases[i][0], out, sizeof out);
        assert_string_equal(out, cases[i][1]);
    }
    person_name_readable("ABCDEFGHIJKLMNOP^QRSTUVWXYZ", out, 8); /* cut short, terminated */
    assert_true(strlen(out) < 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_writes_the_signed_bytes_and_both_pages),
        cmocka_unit_test(test_export_refused_when_the_trust_list_lacks_the_signer),
        cmocka_unit_test(test_malformed_deliveries_refused_or_skipped),
        cmocka_unit_test(test_mutated_deliveries_never_crash_or_export_other_bytes),
        cmocka_unit_test(test_report_id_dot_dot_never_names_a_folder),
        cmocka_unit_test(test_page_shows_the_hubs_patient_record_only_for_the_reports_patient),
        cmocka_unit_test(test_pdf_runs_long_findings_onto_more_pages_and_refuses_missing_glyphs),
        cmocka_unit_test(test_person_names_read_as_people_write_them),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_pki.c — X.509 and signed reports (pki.h, report.h) on real files in
 * a temporary directory: facility CAs and readers for SM2/SM3 and
 * Ed25519, report signatures, and every refusal the hub and `dxhub
 * verify` must make.  OpenSSL's own `openssl ca` is the outside oracle
 * for CRLs signed the GM/T way. */
#include <errno.h>
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
#include "hub/pki.h"
#include "hub/report.h"

#define PASS     "correct horse 马 battery"
#define STUDY    "1.2.826.0.1.3680043.8.498.1"
#define FACILITY "县医院影像中心"

static char tmpdir[256];
static time_t now;

static const char *const algs_dir[2] = {"sm2", "ed25519"};

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

/* A name relative to tmpdir, formatted (rotating buffers, like at). */
static const char *nm(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *nm(const char *fmt, ...)
{
    static char bufs[8][256];
    static int k;
    char *b = bufs[k++ & 7];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof bufs[0], fmt, ap);
    va_end(ap);
    return b;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *p = malloc(*len + 1);
    assert_int_equal(fread(p, 1, *len, fp), *len);
    p[*len] = '\0';
    fclose(fp);
    return p;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    fclose(fp);
}

/* CA and reader directories are named relative to tmpdir. */
static void make_ca(const char *name, pki_alg alg, const char *facility)
{
    char err[512];
    int rc = pki_ca_init(at("%s", name), alg, facility, now - 300, now + 3650 * 86400L, 30, NULL, 0, err, sizeof err);
    if (rc)
        fail_msg("pki_ca_init %s: %s", name, err);
}

static void make_reader(const char *ca, const char *dir, const char *id, pki_alg alg, time_t nb, time_t na)
{
    char err[512], cap[1024], dp[1024];
    snprintf(cap, sizeof cap, "%s", at("%s", ca));
    snprintf(dp, sizeof dp, "%s", at("%s", dir));
    pki_reader_spec spec = {.reader_id = id, .name = "王伟 Wang Wei", .role = "attending", .alg = alg,
                            .not_before = nb, .not_after = na};
    int rc = pki_ca_issue(cap, NULL, &spec, dp, PASS, strlen(PASS), NULL, err, sizeof err);
    if (rc)
        fail_msg("pki_ca_issue %s: %s", id, err);
}

/* The hub's stored digests for the three instances the reports list. */
static const char *const sops[3] = {"1.2.826.0.1.3680043.8.498.1.1", "1.2.826.0.1.3680043.8.498.1.2",
                                    "1.2.826.0.1.3680043.8.498.1.3"};
typedef struct stored {
    int corrupt; /* 1: one digest differs, 2: one instance not stored */
} stored;

static void digest_of(int i, uint8_t out[32])
{
    for (int j = 0; j < 32; j++)
        out[j] = (uint8_t)(i * 37 + j);
}

static int stored_digest(void *ctx, const char *sop, uint8_t out[32])
{
    stored *s = ctx;
    for (int i = 0; i < 3; i++)
        if (!strcmp(sop, sops[i])) {
            if (i == 1 && s && s->corrupt == 2)
                return -ENOENT;
            digest_of(i, out);
            if (i == 2 && s && s->corrupt == 1)
                out[31] ^= 1;
            return 0;
        }
    return -ENOENT;
}

typedef struct signed_report {
    char   *report;
    size_t  len;
    uint8_t sig[PKI_SIG_MAX];
    size_t  sig_len;
    char   *chain;
    size_t  chain_len;
} signed_report;

static void build_report(const char *reader, const char *facility, const char *study, char **out, size_t *len)
{
    report_instance inst[3];
    for (int i = 0; i < 3; i++) {
        inst[2 - i].sop = sops[i]; /* given out of order: report_build sorts */
        digest_of(i, inst[2 - i].digest);
    }
    report_fields f = {.report_id = "rpt-1", .study_uid = study, .patient_id = "P0001", .origin_facility = "乡镇卫生院",
                       .reading_facility = facility, .reader_id = reader, .reader_role = "attending",
                       .reader_name = "王伟", .findings = "双肺纹理清晰，心影不大。", .impression = "胸部未见异常。",
                       .version = 1, .reported = 1750000000, .exam_type = "DX chest PA", .scope = "HR",
                       .valid_until = "2026-06-15"};
    char err[256];
    int rc = report_build(&f, inst, 3, out, len, err, sizeof err);
    if (rc)
        fail_msg("report_build: %s", err);
}

static void sign_study(const char *dir, const char *reader, const char *facility, const char *study,
                       signed_report *sr)
{
    memset(sr, 0, sizeof *sr);
    build_report(reader, facility, study, &sr->report, &sr->len);
    pki_key *k = NULL;
    char err[512];
    pki_pass_src src = {.literal = PASS};
    int rc = pki_key_load(at("%s/%s.key", dir, reader), &src, &k, err, sizeof err);
    if (rc)
        fail_msg("pki_key_load: %s", err);
    assert_int_equal(pki_sign(k, sr->report, sr->len, sr->sig, &sr->sig_len, err, sizeof err), 0);
    pki_key_free(&k);
    assert_null(k);
    sr->chain = slurp(at("%s/%s.chain.pem", dir, reader), &sr->chain_len);
}

static void sign_report(const char *dir, const char *reader, signed_report *sr)
{
    sign_study(dir, reader, FACILITY, STUDY, sr);
}

static void free_report(signed_report *sr)
{
    free(sr->report);
    free(sr->chain);
}

static report_verifier *verifier(const char *trust, stored *s)
{
    report_verifier_config cfg = {.trust_dir = at("%s", trust), .stored_digest = stored_digest,
                                  .stored_digest_ctx = s};
    report_verifier *v = NULL;
    char err[512];
    int rc = report_verifier_new(&cfg, &v, err, sizeof err);
    if (rc)
        fail_msg("report_verifier_new: %s", err);
    return v;
}

static int verify(report_verifier *v, const signed_report *sr, char *why, size_t n)
{
    return report_verify(v, sr->report, sr->len, sr->sig, sr->sig_len, sr->chain, sr->chain_len, 0, NULL, NULL, why,
                         n);
}

/* A SUBMIT of sr ("sign" unless action says otherwise) for the task on
 * study held by holder. */
static int submit(report_verifier *v, const signed_report *sr, const char *holder, const char *action,
                  const char *study, char *why, size_t n)
{
    wl_reader r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", holder);
    wl_task t;
    memset(&t, 0, sizeof t);
    snprintf(t.study_uid, sizeof t.study_uid, "%s", study);
    t.version = 1;
    store_submission sub = {.task = 1, .reader = &r, .action = action, .report_id = "rpt-1", .report = sr->report,
                            .report_len = sr->len, .sig = sr->sig, .sig_len = sr->sig_len, .chain = sr->chain,
                            .chain_len = sr->chain_len};
    why[0] = '\0';
    return report_verify_submission(v, &t, &sub, why, n);
}

/* --- the good path ---------------------------------------------------------- */

static void test_both_algorithms_sign_and_verify_with_signer_named(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++) {
        signed_report sr;
        sign_report(nm("rd-%s", algs_dir[a]), "wangwei", &sr);
        if (a == PKI_ED25519)
            assert_int_equal(sr.sig_len, 64);
        else
            assert_true(sr.sig_len >= 64 && sr.sig_len <= 72); /* DER (r, s) */
        report_verifier *v = verifier(nm("ca-%s", algs_dir[a]), NULL);
        pki_identity id;
        report_doc *doc = NULL;
        char why[512] = "";
        int rc = report_verify(v, sr.report, sr.len, sr.sig, sr.sig_len, sr.chain, sr.chain_len, 0, &id, &doc, why,
                               sizeof why);
        if (rc)
            fail_msg("%s: %s", algs_dir[a], why);
        assert_string_equal(id.name, "王伟 Wang Wei");
        assert_string_equal(id.reader_id, "wangwei");
        assert_string_equal(id.role, "attending");
        assert_string_equal(id.facility, FACILITY);
        assert_string_equal(id.alg, a == PKI_SM2 ? "sm2-sm3" : "ed25519");
        const report_info *in = report_doc_info(doc);
        assert_string_equal(in->study_uid, STUDY);
        assert_int_equal(in->n_instances, 3);
        report_free(&doc);
        /* and the hub's hook accepts it for the reader holding the task */
        stored s = {0};
        report_verifier_free(&v);
        v = verifier(nm("ca-%s", algs_dir[a]), &s);
        assert_int_equal(submit(v, &sr, "wangwei", "sign", STUDY, why, sizeof why), 0);
        report_verifier_free(&v);
        assert_null(v);
        free_report(&sr);
    }
}

static void test_report_build_writes_utf8_sorted_once(void **state)
{
    (void)state;
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    build_report("wangwei", FACILITY, STUDY, &a, &la);
    build_report("wangwei", FACILITY, STUDY, &b, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la); /* same fields, same bytes */
    assert_int_equal(a[la - 1], '\n');
    assert_non_null(strstr(a, "双肺纹理清晰")); /* UTF-8 as is, no \u escapes */
    assert_null(strstr(a, "\\u"));
    const char *p1 = strstr(a, sops[0]), *p2 = strstr(a, sops[1]), *p3 = strstr(a, sops[2]);
    assert_true(p1 && p2 && p3 && p1 < p2 && p2 < p3);
    report_doc *d = NULL;
    char err[256];
    assert_int_equal(report_parse(a, la, &d, err, sizeof err), 0);
    report_instance ri;
    assert_int_equal(report_doc_instance(d, 1, &ri), 0);
    uint8_t want[32];
    digest_of(1, want);
    assert_string_equal(ri.sop, sops[1]);
    assert_memory_equal(ri.digest, want, 32);
    assert_string_equal(report_doc_info(d)->reader_name, "王伟");
    report_free(&d);
    free(a);
    free(b);
}

/* Report ids name files at the clinic and in exports. */
static void test_report_id_cannot_be_a_path_component(void **state)
{
    (void)state;
    report_instance inst = {.sop = sops[0]};
    digest_of(0, inst.digest);
    static const char *bad[] = {".", "..", ".hidden", "-rf", "a/b", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        report_fields f = {.report_id = bad[i], .study_uid = STUDY, .patient_id = "P0001", .origin_facility = "c",
                           .reading_facility = FACILITY, .reader_id = "wangwei", .reader_role = "attending",
                           .findings = "f", .impression = "i", .version = 1, .reported = 1750000000,
                           .exam_type = "DX", .scope = "HR"};
        char *out = NULL, err[256] = "";
        size_t len = 0;
        assert_int_equal(report_build(&f, &inst, 1, &out, &len, err, sizeof err), REPORT_EFORMAT);
        assert_non_null(strstr(err, "report_id"));
        assert_null(out);
    }
}

static void test_report_parse_refuses_duplicates_and_missing_members(void **state)
{
    (void)state;
    char *a = NULL;
    size_t la = 0;
    build_report("wangwei", FACILITY, STUDY, &a, &la);
    report_doc *d = NULL;
    char err[256];
    /* a second "study_uid" in front: which one would a reader believe? */
    char *dup = malloc(la + 64);
    int n = snprintf(dup, la + 64, "{\"study_uid\":\"9.9\",%s", a + 1);
    assert_int_equal(report_parse(dup, (size_t)n, &d, err, sizeof err), REPORT_EFORMAT);
    const char *bad[] = {"", "[]", "{}", "{\"format\":\"dxhub-report/1\"}", "not json"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_true(report_parse(bad[i], strlen(bad[i]), &d, err, sizeof err) < 0);
    /* a digest that is not 64 hex digits */
    char *hex = strstr(a, sops[0]) + strlen(sops[0]) + 3;
    hex[10] = 'Z';
    assert_int_equal(report_parse(a, la, &d, err, sizeof err), REPORT_EFORMAT);
    assert_null(d);
    free(dup);
    free(a);
}

/* --- refusals -------------------------------------------------------------- */

static void test_revoked_certificate_refused_after_reload(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++) {
        char ca[64], rd[64];
        snprintf(ca, sizeof ca, "ca-rev-%s", algs_dir[a]);
        snprintf(rd, sizeof rd, "rd-rev-%s", algs_dir[a]);
        make_ca(ca, (pki_alg)a, FACILITY);
        make_reader(ca, rd, "liming", (pki_alg)a, now - 300, now + 86400);
        signed_report sr;
        sign_report(rd, "liming", &sr);
        report_verifier *v = verifier(ca, NULL);
        char why[512], err[512];
        assert_int_equal(verify(v, &sr, why, sizeof why), 0);
        char cap[1024];
        snprintf(cap, sizeof cap, "%s", at("%s", ca));
        assert_int_equal(pki_ca_revoke(cap, NULL, at("%s/liming.pem", rd), now, 30, err, sizeof err), 0);
        /* the list loaded before the revocation still accepts it ... */
        assert_int_equal(verify(v, &sr, why, sizeof why), 0);
        /* ... the reloaded one does not */
        assert_int_equal(report_verifier_reload(v, err, sizeof err), 0);
        assert_int_equal(verify(v, &sr, why, sizeof why), PKI_EREVOKED);
        assert_string_equal(why, "certificate revoked");
        /* the chain was parsed once and reused: trust is checked on every call */
        size_t parsed, reused;
        report_verifier_chain_counts(v, &parsed, &reused);
        assert_int_equal(parsed, 1);
        assert_int_equal(reused, 2);
        assert_int_equal(pki_ca_revoke(cap, NULL, at("%s/liming.pem", rd), now, 30, err, sizeof err), 1);
        report_verifier_free(&v);
        free_report(&sr);
    }
}

/* A kept chain is found by its exact bytes: another signer's chain, or the
 * same chain with one byte changed, is parsed on its own (and the damaged
 * one refused), never answered from the kept one. */
static void test_signer_chain_kept_by_its_bytes(void **state)
{
    (void)state;
    signed_report a, b;
    sign_report(nm("rd-%s", algs_dir[PKI_ED25519]), "wangwei", &a);
    make_reader(nm("ca-%s", algs_dir[PKI_ED25519]), "rd-keep", "sunli", PKI_ED25519, now - 300, now + 86400);
    sign_report("rd-keep", "sunli", &b);
    report_verifier *v = verifier(nm("ca-%s", algs_dir[PKI_ED25519]), NULL);
    char why[512];
    size_t parsed, reused;
    assert_int_equal(verify(v, &a, why, sizeof why), 0);
    assert_int_equal(verify(v, &a, why, sizeof why), 0);
    assert_int_equal(verify(v, &b, why, sizeof why), 0);
    report_verifier_chain_counts(v, &parsed, &reused);
    assert_int_equal(parsed, 2);
    assert_int_equal(reused, 1);
    /* one base64 character of the leaf certificate changed */
    char *p = memchr(a.chain, '\n', a.chain_len);
    assert_non_null(p);
    p += 40;
    *p = *p == 'A' ? 'B' : 'A';
    assert_int_not_equal(verify(v, &a, why, sizeof why), 0);
    report_verifier_chain_counts(v, &parsed, &reused);
    assert_int_equal(reused, 1);
    report_verifier_free(&v);
    free_report(&a);
    free_report(&b);
}

static void test_expired_certificate_refused_with_its_own_reason(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++) {
        char rd[64];
        snprintf(rd, sizeof rd, "rd-old-%s", algs_dir[a]);
        make_reader(nm("ca-%s", algs_dir[a]), rd, "zhaolei", (pki_alg)a, now - 10 * 86400,
                    now - 86400);
        signed_report sr;
        sign_report(rd, "zhaolei", &sr);
        report_verifier *v = verifier(nm("ca-%s", algs_dir[a]), NULL);
        char why[512];
        assert_int_equal(verify(v, &sr, why, sizeof why), PKI_EEXPIRED);
        assert_string_equal(why, "certificate expired");
        report_verifier_free(&v);
        free_report(&sr);
    }
}

static void test_ca_outside_the_trust_list_refused(void **state)
{
    (void)state;
    /* Same facility name, another key: a look-alike CA. */
    make_ca("ca-rogue", PKI_SM2, FACILITY);
    make_reader("ca-rogue", "rd-rogue", "wangwei", PKI_SM2, now - 300, now + 86400);
    signed_report sr;
    sign_report("rd-rogue", "wangwei", &sr);
    report_verifier *v = verifier("ca-sm2", NULL);
    char why[512];
    assert_int_equal(verify(v, &sr, why, sizeof why), PKI_EUNTRUSTED);
    assert_string_equal(why, "issuer not in the consortium trust list");
    /* the same report is fine where the rogue CA is trusted */
    report_verifier *v2 = verifier("ca-rogue", NULL);
    assert_int_equal(verify(v2, &sr, why, sizeof why), 0);
    report_verifier_free(&v);
    report_verifier_free(&v2);
    free_report(&sr);
}

static void test_trust_list_of_several_cas_and_a_reader_cert_lying_there(void **state)
{
    (void)state;
    /* trust/ with both CAs in subfolders, plus a reader certificate at the
     * top that must not become an anchor. */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/trust/a' '%s/trust/b' && cp '%s/ca-sm2/ca.pem' '%s/ca-sm2/crl.pem' '%s/trust/a/' && "
             "cp '%s/ca-ed25519/ca.pem' '%s/trust/b/hosp.crt' && cp '%s/ca-ed25519/crl.pem' '%s/trust/b/hosp.crl' && "
             "cp '%s/rd-rogue/wangwei.pem' '%s/trust/'",
             tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir);
    assert_int_equal(system(cmd), 0);
    report_verifier *v = verifier("trust", NULL);
    size_t cas = 0, crls = 0;
    report_verifier_counts(v, &cas, &crls);
    assert_int_equal(cas, 2);
    assert_int_equal(crls, 2);
    char why[512];
    for (int a = 0; a < 2; a++) {
        signed_report sr;
        sign_report(nm("rd-%s", algs_dir[a]), "wangwei", &sr);
        assert_int_equal(verify(v, &sr, why, sizeof why), 0);
        free_report(&sr);
    }
    signed_report rogue;
    sign_report("rd-rogue", "wangwei", &rogue);
    assert_int_equal(verify(v, &rogue, why, sizeof why), PKI_EUNTRUSTED);
    free_report(&rogue);
    report_verifier_free(&v);
}

static void test_wrong_reader_refused(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++) {
        signed_report sr;
        sign_report(nm("rd-%s", algs_dir[a]), "wangwei", &sr);
        report_verifier *v = verifier(nm("ca-%s", algs_dir[a]), NULL);
        char why[512];
        assert_int_equal(submit(v, &sr, "liming", "sign", STUDY, why, sizeof why), REPORT_ESIGNER);
        assert_string_equal(why, "signer is not the reader holding the task");
        report_verifier_free(&v);
        free_report(&sr);
    }
}

static void test_report_naming_another_reader_than_its_signer_refused(void **state)
{
    (void)state;
    signed_report sr;
    /* wangwei's key signs a report that says liming read it */
    memset(&sr, 0, sizeof sr);
    build_report("liming", FACILITY, STUDY, &sr.report, &sr.len);
    pki_key *k = NULL;
    char err[512];
    pki_pass_src src = {.literal = PASS};
    assert_int_equal(pki_key_load(at("rd-sm2/wangwei.key"), &src, &k, err, sizeof err), 0);
    assert_int_equal(pki_sign(k, sr.report, sr.len, sr.sig, &sr.sig_len, err, sizeof err), 0);
    pki_key_free(&k);
    sr.chain = slurp(at("rd-sm2/wangwei.chain.pem"), &sr.chain_len);
    report_verifier *v = verifier("ca-sm2", NULL);
    assert_int_equal(verify(v, &sr, err, sizeof err), REPORT_ESIGNER);
    report_verifier_free(&v);
    free_report(&sr);
}

static void test_digest_mismatch_and_missing_instance_refused(void **state)
{
    (void)state;
    signed_report sr;
    sign_report("rd-sm2", "wangwei", &sr);
    stored s = {.corrupt = 1};
    report_verifier *v = verifier("ca-sm2", &s);
    char why[512];
    assert_int_equal(submit(v, &sr, "wangwei", "sign", STUDY, why, sizeof why), REPORT_EDIGEST);
    assert_string_equal(why, "instance digests do not match the stored study (1 of 3 differ, 0 missing)");
    s.corrupt = 2;
    assert_int_equal(submit(v, &sr, "wangwei", "sign", STUDY, why, sizeof why), REPORT_EDIGEST);
    assert_string_equal(why, "instance digests do not match the stored study (0 of 3 differ, 1 missing)");
    s.corrupt = 0;
    assert_int_equal(submit(v, &sr, "wangwei", "sign", STUDY, why, sizeof why), 0);
    report_verifier_free(&v);
    free_report(&sr);
}

static void test_report_for_another_study_refused(void **state)
{
    (void)state;
    signed_report sr;
    sign_report("rd-ed25519", "wangwei", &sr);
    report_verifier *v = verifier("ca-ed25519", NULL);
    char why[512];
    assert_int_equal(submit(v, &sr, "wangwei", "sign", "1.2.3.4.5", why, sizeof why), REPORT_ESTUDY);
    assert_string_equal(why, "the report is for another study");
    report_verifier_free(&v);
    free_report(&sr);
}

static void test_unsigned_draft_passes_but_signing_needs_a_signature(void **state)
{
    (void)state;
    signed_report sr;
    sign_report("rd-sm2", "wangwei", &sr);
    report_verifier *v = verifier("ca-sm2", NULL);
    char why[512];
    signed_report bare = sr;
    bare.sig_len = 0;
    bare.chain_len = 0;
    assert_int_equal(submit(v, &bare, "wangwei", "draft", STUDY, why, sizeof why), 0);
    assert_int_equal(submit(v, &bare, "wangwei", "sign", STUDY, why, sizeof why), REPORT_EUNSIGNED);
    /* a signed draft is checked like a signature */
    sr.sig[5] ^= 0x40;
    assert_int_equal(submit(v, &sr, "wangwei", "draft", STUDY, why, sizeof why), PKI_ESIG);
    assert_string_equal(why, "signature does not verify");
    report_verifier_free(&v);
    free_report(&sr);
}

static void test_addendum_must_follow_the_signed_report_with_the_next_version(void **state)
{
    (void)state;
    signed_report sr; /* version 1, supersedes null: not an addendum of anything */
    sign_report("rd-ed25519", "wangwei", &sr);
    report_verifier *v = verifier("ca-ed25519", NULL);
    wl_reader r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "wangwei");
    wl_task t;
    memset(&t, 0, sizeof t);
    snprintf(t.study_uid, sizeof t.study_uid, "%s", STUDY);
    snprintf(t.report_id, sizeof t.report_id, "rpt-0");
    t.version = 1;
    t.state = WL_CLAIMED;
    store_submission sub = {.task = 1, .reader = &r, .action = "addendum", .report_id = "rpt-1", .report = sr.report,
                            .report_len = sr.len, .sig = sr.sig, .sig_len = sr.sig_len, .chain = sr.chain,
                            .chain_len = sr.chain_len};
    char why[512];
    assert_int_equal(report_verify_submission(v, &t, &sub, why, sizeof why), REPORT_ESTUDY);
    assert_non_null(strstr(why, "not signed"));
    t.state = WL_SIGNED;
    assert_int_equal(report_verify_submission(v, &t, &sub, why, sizeof why), REPORT_ESTUDY);
    assert_non_null(strstr(why, "supersedes: rpt-0"));
    sub.sig_len = 0; /* an addendum is signed, always */
    assert_int_equal(report_verify_submission(v, &t, &sub, why, sizeof why), REPORT_EUNSIGNED);
    report_verifier_free(&v);
    free_report(&sr);
}

static void test_report_names_the_reviewed_resident_and_reads_back(void **state)
{
    (void)state;
    report_instance inst = {.sop = sops[0]};
    digest_of(0, inst.digest);
    report_fields f = {.report_id = "rpt-2", .study_uid = STUDY, .patient_id = "P0001", .origin_facility = "乡镇卫生院",
                       .reading_facility = FACILITY, .reader_id = "wangwei", .reader_role = "attending",
                       .drafted_by = "lina", .drafted_by_name = "李娜", .findings = "f", .impression = "i",
                       .version = 2, .supersedes = "rpt-1", .reported = 1750000000, .exam_type = "DX"};
    char *doc = NULL, err[256];
    size_t len = 0;
    assert_int_equal(report_build(&f, &inst, 1, &doc, &len, err, sizeof err), 0);
    assert_non_null(strstr(doc, "\"drafted_by\":{\"id\":\"lina\",\"name\":\"李娜\"}"));
    report_doc *d = NULL;
    assert_int_equal(report_parse(doc, len, &d, err, sizeof err), 0);
    const report_info *in = report_doc_info(d);
    assert_string_equal(in->drafted_by, "lina");
    assert_string_equal(in->drafted_by_name, "李娜");
    assert_string_equal(in->supersedes, "rpt-1");
    assert_int_equal(in->version, 2);
    report_free(&d);
    free(doc);
    f.drafted_by = ""; /* naming nobody is an error, not an empty member */
    assert_int_equal(report_build(&f, &inst, 1, &doc, &len, err, sizeof err), REPORT_EFORMAT);
}

static void test_every_report_byte_flipped_refused(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++) {
        signed_report sr;
        sign_report(nm("rd-%s", algs_dir[a]), "wangwei", &sr);
        report_verifier *v = verifier(nm("ca-%s", algs_dir[a]), NULL);
        char why[512];
        assert_int_equal(verify(v, &sr, why, sizeof why), 0);
        for (size_t i = 0; i < sr.len; i++) {
            sr.report[i] ^= 0x01;
            int rc = verify(v, &sr, why, sizeof why);
            if (rc != PKI_ESIG)
                fail_msg("%s: byte %zu of %zu flipped: %d %s", algs_dir[a], i, sr.len, rc, why);
            sr.report[i] ^= 0x01;
        }
        /* one byte more or less */
        sr.len--;
        assert_int_equal(verify(v, &sr, why, sizeof why), PKI_ESIG);
        assert_int_equal(verify(v, &sr, why, sizeof why), PKI_ESIG);
        sr.len++;
        assert_int_equal(verify(v, &sr, why, sizeof why), 0);
        report_verifier_free(&v);
        free_report(&sr);
    }
}

static void test_every_signature_byte_flipped_refused(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++) {
        signed_report sr;
        sign_report(nm("rd-%s", algs_dir[a]), "wangwei", &sr);
        report_verifier *v = verifier(nm("ca-%s", algs_dir[a]), NULL);
        char why[512];
        for (size_t i = 0; i < sr.sig_len; i++)
            for (int bit = 0; bit < 8; bit += 7) { /* the lowest and the highest bit */
                sr.sig[i] ^= (uint8_t)(1u << bit);
                int rc = verify(v, &sr, why, sizeof why);
                if (rc != PKI_ESIG)
                    fail_msg("%s: signature byte %zu bit %d flipped: %d %s", algs_dir[a], i, bit, rc, why);
                sr.sig[i] ^= (uint8_t)(1u << bit);
            }
        size_t n = sr.sig_len;
        sr.sig_len = n - 1;
        assert_int_equal(verify(v, &sr, why, sizeof why), PKI_ESIG);
        sr.sig_len = n;
        assert_int_equal(verify(v, &sr, why, sizeof why), 0);
        report_verifier_free(&v);
        free_report(&sr);
    }
}

static void test_stale_or_missing_crl_refused(void **state)
{
    (void)state;
    signed_report sr;
    sign_report("rd-sm2", "wangwei", &sr);
    /* 40 days on, the 30-day CRL is past nextUpdate (the certificate is not) */
    report_verifier_config cfg = {.trust_dir = at("ca-sm2"), .at = now + 40 * 86400L};
    report_verifier *v = NULL;
    char why[512];
    assert_int_equal(report_verifier_new(&cfg, &v, why, sizeof why), 0);
    assert_int_equal(verify(v, &sr, why, sizeof why), PKI_ESTALECRL);
    report_verifier_free(&v);
    /* no CRL at all for the issuer */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/nocrl' && cp '%s/ca-sm2/ca.pem' '%s/nocrl/'", tmpdir, tmpdir, tmpdir);
    assert_int_equal(system(cmd), 0);
    v = verifier("nocrl", NULL);
    assert_int_equal(verify(v, &sr, why, sizeof why), PKI_ENOCRL);
    assert_string_equal(why, "no revocation list for the issuer in the trust list");
    report_verifier_free(&v);
    free_report(&sr);
}

/* OpenSSL's own CA tool revokes and signs the CRL — once with the GM/T
 * distinguishing ID (what GM/T 0009 tools do) and once without (what
 * OpenSSL 3.0 verifies): both are honoured. */
static void test_crl_from_openssl_ca_honoured_with_or_without_sm2_id(void **state)
{
    (void)state;
    make_ca("ca-ossl", PKI_SM2, FACILITY);
    make_reader("ca-ossl", "rd-ossl", "sunli", PKI_SM2, now - 300, now + 86400);
    signed_report sr;
    sign_report("rd-ossl", "sunli", &sr);
    FILE *fp = fopen(at("ca-ossl/ossl.cnf"), "w");
    assert_non_null(fp);
    fprintf(fp, "[ca]\ndefault_ca = c\n[c]\ndatabase = %s/ca-ossl/index.txt\ncrlnumber = %s/ca-ossl/crlnumber\n"
                "default_md = sm3\ndefault_crl_days = 7\n",
            tmpdir, tmpdir);
    fclose(fp);
    spit(at("ca-ossl/index.txt"), "", 0);
    spit(at("ca-ossl/crlnumber"), "10\n", 3);
    const char *d = at("ca-ossl");
    char cmd[4096];
    for (int with_id = 0; with_id < 2; with_id++) {
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && openssl ca -config ossl.cnf -gencrl -keyfile ca.key -cert ca.pem %s -out crl.pem "
                 ">/dev/null 2>&1",
                 d, with_id ? "-sigopt distid:1234567812345678" : "");
        assert_int_equal(system(cmd), 0);
        report_verifier *v = verifier("ca-ossl", NULL);
        size_t cas, crls;
        report_verifier_counts(v, &cas, &crls);
        assert_int_equal(crls, 1);
        char why[512];
        assert_int_equal(verify(v, &sr, why, sizeof why), 0);
        report_verifier_free(&v);
    }
    snprintf(cmd, sizeof cmd,
             "cd '%s' && openssl ca -config ossl.cnf -revoke ../rd-ossl/sunli.pem -keyfile ca.key -cert ca.pem "
             ">/dev/null 2>&1",
             d);
    assert_int_equal(system(cmd), 0);
    for (int with_id = 0; with_id < 2; with_id++) {
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && openssl ca -config ossl.cnf -gencrl -keyfile ca.key -cert ca.pem %s -out crl.pem "
                 ">/dev/null 2>&1",
                 d, with_id ? "-sigopt distid:1234567812345678" : "");
        assert_int_equal(system(cmd), 0);
        report_verifier *v = verifier("ca-ossl", NULL);
        char why[512];
        assert_int_equal(verify(v, &sr, why, sizeof why), PKI_EREVOKED);
        report_verifier_free(&v);
    }
    free_report(&sr);
}

static void test_keys_are_0600_encrypted_and_need_the_right_passphrase(void **state)
{
    (void)state;
    struct stat sb;
    assert_int_equal(stat(at("rd-sm2/wangwei.key"), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(stat(at("ca-sm2/ca.key"), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    size_t n;
    char *pem = slurp(at("rd-sm2/wangwei.key"), &n);
    assert_non_null(strstr(pem, "BEGIN ENCRYPTED PRIVATE KEY"));
    free(pem);
    pki_key *k = NULL;
    char err[512];
    pki_pass_src wrong = {.literal = "wrong"};
    assert_int_equal(pki_key_load(at("rd-sm2/wangwei.key"), &wrong, &k, err, sizeof err), PKI_EPASS);
    assert_null(strstr(err, "wrong\"")); /* the passphrase is never echoed */
    assert_int_equal(pki_key_load(at("rd-sm2/wangwei.key"), NULL, &k, err, sizeof err), PKI_EPASS);
    /* a passphrase file, its first line only */
    spit(at("pass.txt"), PASS "\nsecond line\n", strlen(PASS) + 13);
    pki_pass_src file = {.file = at("pass.txt")};
    assert_int_equal(pki_key_load(at("rd-sm2/wangwei.key"), &file, &k, err, sizeof err), 0);
    assert_int_equal(pki_key_alg(k), PKI_SM2);
    pki_chain *c = NULL;
    assert_int_equal(pki_chain_load(at("rd-sm2/wangwei.chain.pem"), &c, err, sizeof err), 0);
    assert_true(pki_chain_matches_key(c, k));
    pki_chain_free(&c);
    assert_int_equal(pki_chain_load(at("rd-ed25519/wangwei.chain.pem"), &c, err, sizeof err), 0);
    assert_false(pki_chain_matches_key(c, k));
    pki_chain_free(&c);
    pki_key_free(&k);
    /* refusing to replace an existing key */
    char ca[1024], rd[1024];
    snprintf(ca, sizeof ca, "%s", at("ca-sm2"));
    snprintf(rd, sizeof rd, "%s", at("rd-sm2"));
    pki_reader_spec spec = {.reader_id = "wangwei", .name = "x", .role = "attending", .not_before = now,
                            .not_after = now + 10};
    assert_int_equal(pki_ca_issue(ca, NULL, &spec, rd, PASS, strlen(PASS), NULL, err, sizeof err), PKI_EEXIST);
    assert_int_equal(pki_ca_init(ca, PKI_SM2, "X", now, now + 10, 30, NULL, 0, err, sizeof err), PKI_EEXIST);
    /* a reader key is never written in clear */
    spec.reader_id = "nopass";
    assert_int_equal(pki_ca_issue(ca, NULL, &spec, rd, NULL, 0, NULL, err, sizeof err), PKI_EPASS);
    /* an id that could escape the folder */
    spec.reader_id = "../x";
    assert_int_equal(pki_ca_issue(ca, NULL, &spec, rd, PASS, strlen(PASS), NULL, err, sizeof err), PKI_EINVAL);
}

static void test_encrypted_ca_key_needs_its_passphrase_to_issue(void **state)
{
    (void)state;
    char ca[1024], rd[1024], err[512];
    snprintf(ca, sizeof ca, "%s", at("ca-enc"));
    snprintf(rd, sizeof rd, "%s", at("rd-enc"));
    assert_int_equal(pki_ca_init(ca, PKI_ED25519, "HOSP", now - 300, now + 86400, 30, "ca pass", 7, err, sizeof err),
                     0);
    pki_reader_spec spec = {.reader_id = "chen", .name = "陈", .role = "chief", .alg = PKI_SM2,
                            .not_before = now - 300, .not_after = now + 3600};
    assert_int_equal(pki_ca_issue(ca, NULL, &spec, rd, PASS, strlen(PASS), NULL, err, sizeof err), PKI_EPASS);
    pki_pass_src bad = {.literal = "nope"}, good = {.literal = "ca pass"};
    assert_int_equal(pki_ca_issue(ca, &bad, &spec, rd, PASS, strlen(PASS), NULL, err, sizeof err), PKI_EPASS);
    spec.facility = "OTHER";
    assert_int_equal(pki_ca_issue(ca, &good, &spec, rd, PASS, strlen(PASS), NULL, err, sizeof err), PKI_EINVAL);
    spec.facility = NULL;
    char serial[80];
    assert_int_equal(pki_ca_issue(ca, &good, &spec, rd, PASS, strlen(PASS), serial, err, sizeof err), 0);
    assert_true(strlen(serial) >= 30);
    /* an SM2 reader under an Ed25519 CA verifies */
    signed_report sr;
    sign_study("rd-enc", "chen", "HOSP", STUDY, &sr);
    report_verifier *v = verifier("ca-enc", NULL);
    char why[512];
    assert_int_equal(verify(v, &sr, why, sizeof why), 0);
    report_verifier_free(&v);
    free_report(&sr);
}

static int setup(void **state)
{
    (void)state;
    now = time(NULL);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dxhub-test-pki-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    for (int a = 0; a < 2; a++) {
        char ca[32], rd[32];
        snprintf(ca, sizeof ca, "ca-%s", algs_dir[a]);
        snprintf(rd, sizeof rd, "rd-%s", algs_dir[a]);
        make_ca(ca, (pki_alg)a, FACILITY);
        make_reader(ca, rd, "wangwei", (pki_alg)a, now - 300, now + 365 * 86400L);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_algorithms_sign_and_verify_with_signer_named),
        cmocka_unit_test(test_report_build_writes_utf8_sorted_once),
        cmocka_unit_test(test_report_id_cannot_be_a_path_component),
        cmocka_unit_test(test_report_parse_refuses_duplicates_and_missing_members),
        cmocka_unit_test(test_addendum_must_follow_the_signed_report_with_the_next_version),
        cmocka_unit_test(test_report_names_the_reviewed_resident_and_reads_back),
        cmocka_unit_test(test_revoked_certificate_refused_after_reload),
        cmocka_unit_test(test_signer_chain_kept_by_its_bytes),
        cmocka_unit_test(test_expired_certificate_refused_with_its_own_reason),
        cmocka_unit_test(test_ca_outside_the_trust_list_refused),
        cmocka_unit_test(test_trust_list_of_several_cas_and_a_reader_cert_lying_there),
        cmocka_unit_test(test_wrong_reader_refused),
        cmocka_unit_test(test_report_naming_another_reader_than_its_signer_refused),
        cmocka_unit_test(test_digest_mismatch_and_missing_instance_refused),
        cmocka_unit_test(test_report_for_another_study_refused),
        cmocka_unit_test(test_unsigned_draft_passes_but_signing_needs_a_signature),
        cmocka_unit_test(test_every_report_byte_flipped_refused),
        cmocka_unit_test(test_every_signature_byte_flipped_refused),
        cmocka_unit_test(test_stale_or_missing_crl_refused),
        cmocka_unit_test(test_crl_from_openssl_ca_honoured_with_or_without_sm2_id),
        cmocka_unit_test(test_keys_are_0600_encrypted_and_need_the_right_passphrase),
        cmocka_unit_test(test_encrypted_ca_key_needs_its_passphrase_to_issue),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

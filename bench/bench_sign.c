/* bench_sign.c — report signatures per second through dxhub's pki and
 * report code, for bench/sign.sh to print beside `openssl speed`.
 *
 *   bench_sign [--seconds S] [--instances N]
 *
 * For SM2/SM3 (with the GM/T ID) and Ed25519, in a temporary directory: a
 * CA and a reader (pki_ca_init, pki_ca_issue), then, single-threaded as
 * `openssl speed` runs by default, each for S seconds of CPU time (default 2):
 *   sign      pki_sign over a one-instance report (about 700 bytes, as
 *             small as `openssl speed` signs)
 *   verify    pki_chain_verify_data: the signature only, same report
 *   sign_big / verify_big   the same over a report listing N instances
 *             (default 300, a CT series: about 40 KB, so hashing shows)
 *   check     report_verify of the N-instance report: signature, chain to
 *             the trust list (the CA's signature on the certificate),
 *             revocation, validity, parsing — what the hub runs per SUBMIT
 * One line each: "ALG OP OPS_PER_SECOND REPORT_BYTES". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/pki.h"
#include "hub/report.h"

#define PASS "bench passphrase"

/* CPU time of this thread: `openssl speed` counts its process's user
 * time, so both sides are measured alike on a busy machine. */
static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *p = n > 0 ? malloc((size_t)n) : NULL;
    if (p && fread(p, 1, (size_t)n, fp) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(fp);
    *len = p ? (size_t)n : 0;
    return p;
}

static int build(size_t n, char **out, size_t *len)
{
    report_instance *inst = calloc(n, sizeof *inst);
    char (*uids)[64] = calloc(n, 64);
    if (!inst || !uids)
        return -1;
    for (size_t i = 0; i < n; i++) {
        snprintf(uids[i], 64, "1.2.826.0.1.3680043.8.498.%zu.%zu", (size_t)20250601, i + 1);
        inst[i].sop = uids[i];
        for (int j = 0; j < 32; j++)
            inst[i].digest[j] = (uint8_t)(i * 31 + (size_t)j);
    }
    report_fields f = {.report_id = "bench-1", .study_uid = "1.2.826.0.1.3680043.8.498.20250601",
                       .patient_id = "P0001", .origin_facility = "乡镇卫生院", .reading_facility = "HOSP",
                       .reader_id = "bench", .reader_role = "attending", .reader_name = "王伟",
                       .findings = "双肺纹理清晰，心影不大，膈面光整，肋膈角锐利。", .impression = "胸部未见明显异常。",
                       .version = 1, .reported = 1750000000, .exam_type = "CT chest", .scope = "HR",
                       .valid_until = "2025-12-01"};
    char err[256];
    int rc = report_build(&f, inst, n, out, len, err, sizeof err);
    if (rc)
        fprintf(stderr, "bench_sign: report_build: %s\n", err);
    free(inst);
    free(uids);
    return rc;
}

typedef struct ctx {
    pki_key         *key;
    pki_chain       *chain;
    report_verifier *v;
    const char      *doc;
    size_t           len;
    uint8_t          sig[PKI_SIG_MAX];
    size_t           sig_len;
    char            *chain_pem;
    size_t           chain_len;
} ctx;

static int op_sign(ctx *c)
{
    char err[256];
    return pki_sign(c->key, c->doc, c->len, c->sig, &c->sig_len, err, sizeof err);
}

static int op_verify(ctx *c)
{
    char err[256];
    return pki_chain_verify_data(c->chain, c->doc, c->len, c->sig, c->sig_len, err, sizeof err);
}

static int op_check(ctx *c)
{
    char why[256];
    int rc = report_verify(c->v, c->doc, c->len, c->sig, c->sig_len, c->chain_pem, c->chain_len, 0, NULL, NULL, why,
                           sizeof why);
    if (rc)
        fprintf(stderr, "bench_sign: report_verify: %s\n", why);
    return rc;
}

static double rate(int (*op)(ctx *), ctx *c, double seconds)
{
    if (op(c)) /* warm up and check once */
        return -1;
    long n = 0;
    double t0 = mono(), t;
    do {
        for (int i = 0; i < 16; i++)
            if (op(c))
                return -1;
        n += 16;
        t = mono();
    } while (t - t0 < seconds);
    return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
    double seconds = 2;
    size_t big = 300;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--instances"))
            big = (size_t)atol(argv[i + 1]);
    }
    char tmp[] = "/tmp/dxhub-bench-sign-XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    char *small_doc = NULL, *big_doc = NULL;
    size_t small_len = 0, big_len = 0;
    if (build(1, &small_doc, &small_len) || build(big, &big_doc, &big_len))
        return 1;
    int status = 0;
    time_t now = time(NULL);
    for (int a = 0; a < 2 && !status; a++) {
        const char *an = a == PKI_SM2 ? "sm2" : "ed25519";
        char cadir[256], rddir[256], err[512], path[512];
        snprintf(cadir, sizeof cadir, "%s/ca-%s", tmp, an);
        snprintf(rddir, sizeof rddir, "%s/rd-%s", tmp, an);
        pki_reader_spec spec = {.reader_id = "bench", .name = "王伟", .role = "attending", .alg = (pki_alg)a,
                                .not_before = now - 300, .not_after = now + 86400};
        ctx c;
        memset(&c, 0, sizeof c);
        pki_pass_src src = {.literal = PASS};
        if (pki_ca_init(cadir, (pki_alg)a, "HOSP", now - 300, now + 86400, 30, NULL, 0, err, sizeof err) ||
            pki_ca_issue(cadir, NULL, &spec, rddir, PASS, strlen(PASS), NULL, err, sizeof err)) {
            fprintf(stderr, "bench_sign: %s\n", err);
            status = 1;
            break;
        }
        snprintf(path, sizeof path, "%s/bench.key", rddir);
        int rc = pki_key_load(path, &src, &c.key, err, sizeof err);
        snprintf(path, sizeof path, "%s/bench.chain.pem", rddir);
        if (!rc)
            rc = pki_chain_load(path, &c.chain, err, sizeof err);
        c.chain_pem = slurp(path, &c.chain_len);
        report_verifier_config cfg = {.trust_dir = cadir};
        if (!rc)
            rc = report_verifier_new(&cfg, &c.v, err, sizeof err);
        if (rc || !c.chain_pem) {
            fprintf(stderr, "bench_sign: %s\n", err);
            status = 1;
            break;
        }
        struct {
            const char *name;
            int (*op)(ctx *);
            const char *doc;
            size_t len;
        } runs[] = {
            {"sign", op_sign, small_doc, small_len},         {"verify", op_verify, small_doc, small_len},
            {"sign_big", op_sign, big_doc, big_len},         {"verify_big", op_verify, big_doc, big_len},
            {"check", op_check, big_doc, big_len},
        };
        for (size_t r = 0; r < sizeof runs / sizeof runs[0] && !status; r++) {
            c.doc = runs[r].doc;
            c.len = runs[r].len;
            if (runs[r].op != op_sign && op_sign(&c)) /* a signature over this document */
                status = 1;
            double ops = status ? -1 : rate(runs[r].op, &c, seconds);
            if (ops < 0) {
                fprintf(stderr, "bench_sign: %s %s failed\n", an, runs[r].name);
                status = 1;
                break;
            }
            printf("%s %s %.1f %zu\n", an, runs[r].name, ops, runs[r].len);
            fflush(stdout);
        }
        pki_key_free(&c.key);
        pki_chain_free(&c.chain);
        report_verifier_free(&c.v);
        free(c.chain_pem);
    }
    free(small_doc);
    free(big_doc);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_sign: could not remove %s\n", tmp);
    return status;
}

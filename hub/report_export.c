/* report_export.c — a received report written out: the hub's bundle
 * unpacked, the signature verified against the clinic's trust list, then
 * the three verifiable files and the printable pages in OUT/<report id>/.
 *
 * A report whose signature does not verify is refused, not exported with
 * a "NOT VERIFIED" mark.  A printed report is what the patient carries to
 * the next facility for mutual recognition, and a sheet of paper loses its
 * warnings: a banner can be cut off or photocopied away, and the page
 * would still look like a signed reading of record.  The clinic instead
 * gets the reason on the command line (stale CRL, revoked reader, altered
 * bytes) and acts on it: refreshes its trust list or calls the reading
 * centre.  The report stays in the inbox, so a later export can succeed. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "hub/b64.h"
#include "hub/cmd.h"
#include "hub/report_export.h"
#include "hub/errbuf.h"
#include "codecs/banned.h"

void report_bundle_clear(report_bundle *b)
{
    if (!b)
        return;
    free(b->report_id);
    free(b->doc);
    free(b->sig);
    free(b->chain);
    memset(b, 0, sizeof *b);
}

/* base64 member -> NUL-terminated malloc'd bytes; -1 malformed. */
static int member_b64(json_t *o, const char *key, size_t max, uint8_t **out, size_t *n)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || !*s)
        return -1;
    size_t sl = strlen(s);
    if (sl / 4 * 3 > max + 3)
        return -1;
    uint8_t *p = NULL;
    size_t k = 0;
    if (base64_decode(s, sl, &p, &k) < 0 || k == 0 || k > max) {
        free(p);
        return -1;
    }
    uint8_t *z = realloc(p, k + 1);
    if (!z) {
        free(p);
        return -1;
    }
    z[k] = 0;
    *out = z;
    *n = k;
    return 0;
}

/* A string member into out; a value cut short is cut at a UTF-8 character boundary. */
static void copy_member(json_t *o, const char *key, char *out, size_t n)
{
    const char *v = json_string_value(json_object_get(o, key));
    snprintf(out, n, "%s", v ? v : "");
    size_t len = strlen(out);
    if (!v || len == strlen(v))
        return;
    size_t start = len;
    while (start > 0 && ((unsigned char)out[start - 1] & 0xC0) == 0x80)
        start--; /* back over continuation bytes to the lead byte */
    if (start > 0) {
        unsigned char lead = (unsigned char)out[start - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (len - (start - 1) < need)
            out[start - 1] = '\0';
    }
}

/* The optional "exam" member: strings only, cut to the hub's own field sizes. */
static void parse_exam(json_t *e, report_exam *x)
{
    if (!json_is_object(e))
        return;
    copy_member(e, "patient_id", x->patient_id, sizeof x->patient_id);
    copy_member(e, "patient_name", x->patient_name, sizeof x->patient_name);
    copy_member(e, "birth_date", x->birth_date, sizeof x->birth_date);
    copy_member(e, "sex", x->sex, sizeof x->sex);
    copy_member(e, "accession", x->accession, sizeof x->accession);
    copy_member(e, "study_date", x->study_date, sizeof x->study_date);
    copy_member(e, "description", x->description, sizeof x->description);
    copy_member(e, "modalities", x->modalities, sizeof x->modalities);
    x->present = x->patient_id[0] != '\0';
}

int report_bundle_parse(const void *data, size_t len, report_bundle *b, char *why, size_t whylen)
{
    memset(b, 0, sizeof *b);
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return errbuf_fail(REPORT_EFORMAT, why, whylen, "not a delivery from the hub (JSON line %d)", je.line);
    }
    json_t *doc = json_object_get(root, "report_b64"), *sig = json_object_get(root, "signature_b64");
    const char *id = json_string_value(json_object_get(root, "report_id"));
    const char *chain = json_string_value(json_object_get(root, "chain_pem"));
    int rc = 0;
    if (!doc || !sig || !id || !chain || !*chain || !*json_string_value(sig)) {
        rc = 1; /* an ECG triage alert, or a report delivered without signature */
    } else if (strlen(chain) > PKI_PEM_MAX || !(b->report_id = strdup(id)) || !(b->chain = strdup(chain)) ||
               member_b64(root, "report_b64", REPORT_MAX_BYTES, (uint8_t **)&b->doc, &b->doc_len) < 0 ||
               member_b64(root, "signature_b64", PKI_SIG_MAX, &b->sig, &b->sig_len) < 0) {
        report_bundle_clear(b);
        rc = errbuf_fail(REPORT_EFORMAT, why, whylen, "delivery of report %.60s: report, signature or chain malformed",
                  id);
    } else {
        b->chain_len = strlen(chain);
        parse_exam(json_object_get(root, "exam"), &b->exam);
    }
    json_decref(root);
    return rc;
}

static int write_in(const char *dir, const char *name, const void *p, size_t n, char *why, size_t whylen)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = dx_write_file(path, p, n);
    return rc < 0 ? errbuf_fail(rc, why, whylen, "writing %s: %s", path, strerror(-rc)) : 0;
}

static int make_dir(const char *path, char *why, size_t whylen)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return errbuf_fail(-errno, why, whylen, "cannot make %s: %s", path, strerror(errno));
    return 0;
}

void report_opened_clear(report_opened *r)
{
    if (!r)
        return;
    report_free(&r->doc);
    report_bundle_clear(&r->b);
    memset(r, 0, sizeof *r);
}

int report_open_verified(report_verifier *v, const void *data, size_t len, const char *refused, report_opened *r,
                         char *why, size_t whylen)
{
    memset(r, 0, sizeof *r);
    int rc = report_bundle_parse(data, len, &r->b, why, whylen);
    if (rc != 0)
        return rc;
    const char *id = r->b.report_id;
    char reason[512];
    rc = report_verify(v, r->b.doc, r->b.doc_len, r->b.sig, r->b.sig_len, r->b.chain, r->b.chain_len, 0, &r->signer,
                       &r->doc, reason, sizeof reason);
    if (rc < 0) {
        errbuf_fail(rc, why, whylen, "report %.60s: not verified%s: %s", id, refused, reason);
        report_opened_clear(r);
        return rc;
    }
    const report_info *in = report_doc_info(r->doc);
    if (strcmp(in->report_id, id)) {
        rc = errbuf_fail(REPORT_EFORMAT, why, whylen,
                         "report %.60s: the delivery names another report than the document", id);
        report_opened_clear(r);
        return rc;
    }
    r->page = (report_page){.info = in, .exam = &r->b.exam, .signer = &r->signer, .verified_at = time(NULL)};
    return 0;
}

int report_export(const report_export_opts *o, const void *data, size_t len, char *id, pki_identity *signer,
                  char *why, size_t whylen)
{
    report_opened r;
    id[0] = '\0';
    int rc = report_open_verified(o->verifier, data, len, ", not exported", &r, why, whylen);
    if (rc == 1)
        return 1;
    if (rc < 0) {
        report_bundle b; /* the id, to name what was refused */
        if (report_bundle_parse(data, len, &b, NULL, 0) == 0) {
            snprintf(id, REPORT_ID_MAX + 1, "%s", b.report_id);
            report_bundle_clear(&b);
        }
        return rc;
    }
    const report_info *in = r.page.info;
    snprintf(id, REPORT_ID_MAX + 1, "%s", in->report_id);
    /* The id names a folder: report_parse allows [A-Za-z0-9._-], so "." and ".." must be kept out here. */
    if (in->report_id[0] == '.') {
        rc = errbuf_fail(REPORT_EFORMAT, why, whylen, "report %.60s: an id starting with '.' cannot name a folder", id);
        goto out;
    }
    if (signer)
        *signer = r.signer;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", o->out_dir, in->report_id);
    if ((rc = make_dir(o->out_dir, why, whylen)) < 0 || (rc = make_dir(dir, why, whylen)) < 0)
        goto out;
    if (o->json && ((rc = write_in(dir, "report.json", r.b.doc, r.b.doc_len, why, whylen)) < 0 ||
                    (rc = write_in(dir, "report.json.sig", r.b.sig, r.b.sig_len, why, whylen)) < 0 ||
                    (rc = write_in(dir, "report.json.chain.pem", r.b.chain, r.b.chain_len, why, whylen)) < 0))
        goto out;
    char path[4400];
    snprintf(path, sizeof path, "%s/report.html", dir);
    if (o->html && (rc = report_page_html(&r.page, path, why, whylen)) < 0)
        goto out;
    snprintf(path, sizeof path, "%s/report.pdf", dir);
    if (o->pdf && (rc = report_page_pdf(&r.page, path, why, whylen)) < 0)
        goto out;
    rc = 0;
out:
    report_opened_clear(&r);
    return rc;
}

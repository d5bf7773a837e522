/* report_page.c — what a printed report shows, once for every format:
 * the patient and exam header, findings, impression, the critical-value
 * flag, the signer and certificate, and the verification line that says
 * when and against what the signature was checked and how to re-check it.
 * Labels are Chinese and English: the page is read at a township clinic
 * and may travel to any facility of the consortium. */
#include <stdio.h>
#include <string.h>
#include "hub/cmd.h"
#include "hub/person_name.h"
#include "hub/report_export.h"
#include "codecs/banned.h"

static report_item *add(report_item *items, size_t *n, int kind, const char *label)
{
    report_item *it = &items[(*n)++];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    it->label = label;
    it->text = it->buf;
    return it;
}

static void add_text(report_item *items, size_t *n, int kind, const char *label, const char *text)
{
    add(items, n, kind, label)->text = text && *text ? text : "—";
}

/* DA "YYYYMMDD" as "YYYY-MM-DD"; anything else as it is. */
static const char *da_date(const char *da, char out[16])
{
    if (strlen(da) == 8)
        snprintf(out, 16, "%.4s-%.2s-%.2s", da, da + 4, da + 6);
    else
        snprintf(out, 16, "%.15s", da);
    return out;
}

size_t report_page_items(const report_page *p, report_item *items)
{
    const report_info *in = p->info;
    const pki_identity *s = p->signer;
    size_t n = 0;
    report_item *it;
    add_text(items, &n, RI_TITLE, NULL, "检查报告 Examination Report");
    if (in->critical)
        add_text(items, &n, RI_ALERT, NULL, "危急值 CRITICAL VALUE — act on this report now");

    add_text(items, &n, RI_HEADING, NULL, "患者与检查 Patient and examination");
    add_text(items, &n, RI_FIELD, "患者ID Patient ID", in->patient_id);
    const report_exam *x = p->exam && p->exam->present && !strcmp(p->exam->patient_id, in->patient_id) ? p->exam
                                                                                                     : NULL;
    if (x) {
        it = add(items, &n, RI_FIELD, "姓名 Name");
        person_name_readable(x->patient_name, it->buf, sizeof it->buf);
        size_t k = strlen(it->buf);
        if (x->sex[0] || x->birth_date[0])
            snprintf(it->buf + k, sizeof it->buf - k, " (%s%s%s)", x->sex, x->sex[0] && x->birth_date[0] ? ", " : "",
                     da_date(x->birth_date, (char[16]){0}));
        it = add(items, &n, RI_FIELD, "检查日期 Exam date");
        snprintf(it->buf, sizeof it->buf, "%s%s%.16s%s%.64s%s%.64s", da_date(x->study_date, (char[16]){0}),
                 x->accession[0] ? ", accession " : "", x->accession, x->modalities[0] ? ", " : "", x->modalities,
                 x->description[0] ? ", " : "", x->description);
    }
    it = add(items, &n, RI_FIELD, "检查 Examination");
    snprintf(it->buf, sizeof it->buf, "%.200s%s%.200s", in->exam_type, in->exam_time ? ", " : "",
             in->exam_time ? in->exam_time : "");
    add_text(items, &n, RI_FIELD, "送检机构 Requesting facility", in->origin_facility);
    add_text(items, &n, RI_FIELD, "检查UID Study Instance UID", in->study_uid);
    it = add(items, &n, RI_FIELD, "报告 Report");
    snprintf(it->buf, sizeof it->buf, "%.60s, version %u%s%.60s, %zu instance(s) read", in->report_id, in->version,
             in->supersedes ? ", supersedes " : "", in->supersedes ? in->supersedes : "", in->n_instances);
    if (in->scope || in->valid_until) {
        it = add(items, &n, RI_FIELD, "互认 Mutual recognition");
        snprintf(it->buf, sizeof it->buf, "%.200s%s%.20s", in->scope ? in->scope : "",
                 in->valid_until ? (in->scope ? ", valid until " : "valid until ") : "",
                 in->valid_until ? in->valid_until : "");
    }

    add_text(items, &n, RI_HEADING, NULL, "所见 Findings");
    add_text(items, &n, RI_TEXT, NULL, in->findings);
    add_text(items, &n, RI_HEADING, NULL, "印象 Impression");
    add_text(items, &n, RI_TEXT, NULL, in->impression);
    add_text(items, &n, RI_FIELD, "危急值 Critical value", in->critical ? "YES 是" : "no 否");

    add_text(items, &n, RI_HEADING, NULL, "签名 Signature");
    add_text(items, &n, RI_FIELD, "报告医师 Signed by", s->name);
    it = add(items, &n, RI_FIELD, "医师编号 Reader ID");
    snprintf(it->buf, sizeof it->buf, "%.63s (%.63s)", s->reader_id, s->role[0] ? s->role : in->reader_role);
    add_text(items, &n, RI_FIELD, "诊断机构 Facility", s->facility);
    add_text(items, &n, RI_FIELD, "签名时间 Signed at", in->reported);
    it = add(items, &n, RI_FIELD, "证书 Certificate");
    snprintf(it->buf, sizeof it->buf, "serial %.80s, issued by %.250s, %.16s", s->serial, s->issuer, s->alg);

    char when[32];
    dx_fmt_time(p->verified_at, when, sizeof when);
    it = add(items, &n, RI_NOTE, NULL);
    snprintf(it->buf, sizeof it->buf,
             "签名已验证 Signature verified at export, %s: the signature over the report's exact bytes, "
             "the signer's certificate chained to %.200s in this clinic's trust list, valid and not revoked.",
             when, s->issuer);
    if (x)
        add_text(items, &n, RI_NOTE, NULL,
                 "姓名、性别、出生日期与检查日期来自枢纽的检查记录，不在签名范围内。 Name, sex, birth date, exam date and "
                 "accession are from the hub's study record; the signature covers the report, which names the patient "
                 "by ID.");
    add_text(items, &n, RI_NOTE, NULL,
             "复核 To re-verify: dxhub verify report.json --trust <trust list>  (report.json, report.json.sig and "
             "report.json.chain.pem are exported beside this page); or with openssl alone, as "
             "docs/verify-with-openssl.md in dxhub describes.");
    return n;
}

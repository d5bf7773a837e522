/* fuzz_clinic_page.c — the clinic page's HTML from what the hub sent back
 * (clinic_html_list over inbox_summary_read) and what the gateway wrote
 * (a link's last error, a study's patient ID): whatever those bytes hold,
 * none of it becomes markup.
 *
 * The check: the page is rendered twice, once from the fuzzed strings and
 * once from the same strings with every byte but a newline (which the
 * page turns into <br>) replaced by 'x'.  Both pages must hold the same
 * number of '<', '>' and '"': a byte of the input that opened a tag or
 * closed an attribute would change the count.
 *
 * Input: byte 0 chooses the row's kind and state (bit 0 alert, bit 1 a
 * confirmation, bit 2 a signed report to link, bits 3-4 the link state,
 * bit 5 the study delivered, bit 6 the list searched for the patient ID,
 * bit 7 no rows at all, as a search that found nothing);
 * the rest is split at "\xff\xfe" into the inbox item's bytes, the row's
 * id, the link's last error, the sent study's patient ID and the
 * confirmer's name.
 *
 * fuzz-objects: hub/clinic_page_html.c hub/html_text.c hub/inbox_summary.c hub/person_name.c hub/b64.c
 * fuzz-objects: hub/cmd_util.c hub/spool.c hub/spool_audit.c hub/audit_record.c hub/lmdb_stamp.c hub/errbuf.c */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/clinic_private.h"

#define PARTS 5

static void field(char *out, size_t n, const uint8_t *p, size_t len)
{
    size_t k = len < n - 1 ? len : n - 1;
    memcpy(out, p, k);
    out[k] = '\0';
}

static void blank(char *s)
{
    for (; *s; s++)
        if (*s != '\n')
            *s = 'x';
}

static void count(const char *page, size_t len, size_t c[3])
{
    c[0] = c[1] = c[2] = 0;
    for (size_t i = 0; i < len; i++) {
        c[0] += page[i] == '<';
        c[1] += page[i] == '>';
        c[2] += page[i] == '"';
    }
}

static char *render(clinic_row *row, size_t n, const char *patient, clinic_sent *sent, size_t *len)
{
    clinic_rows_sort(n ? row : NULL, n);
    return clinic_html_list(row, n, 0, 7, patient, sent, "0123456789abcdef", len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t how = data[0];
    const uint8_t *part[PARTS] = {0};
    size_t plen[PARTS] = {0};
    const uint8_t *p = data + 1, *end = data + size;
    for (int i = 0; i < PARTS; i++) {
        const uint8_t *cut = p;
        while (cut + 1 < end && !(cut[0] == 0xff && cut[1] == 0xfe))
            cut++;
        if (cut + 1 >= end)
            cut = end;
        part[i] = p;
        plen[i] = (size_t)(cut - p);
        p = cut < end ? cut + 2 : end;
    }
    clinic_row *row = calloc(1, sizeof *row);
    clinic_sent *sent = calloc(1, sizeof *sent);
    if (!row || !sent)
        goto out;
    const char *kind = how & 1 ? "alert" : "report";
    inbox_summary_read(kind, part[0], plen[0], &row->sum);
    field(row->id, sizeof row->id, part[1], plen[1]);
    snprintf(row->kind, sizeof row->kind, "%s", kind);
    row->received_ms = 1795600000000;
    row->confirmed = how & 2;
    row->c.at_ms = 1795600001000;
    field(row->c.by, sizeof row->c.by, part[4], plen[4]);
    row->has_report = how & 4;
    static const char *const states[] = {"acked", "down", "stopped", ""};
    snprintf(sent->link.link_state, sizeof sent->link.link_state, "%s", states[(how >> 3) & 3]);
    field(sent->link.last_error, sizeof sent->link.last_error, part[2], plen[2]);
    sent->n = 1;
    field(sent->v[0].patient_id, sizeof sent->v[0].patient_id, part[3], plen[3]);
    sent->v[0].instances = 3;
    sent->v[0].acked = how & 0x20 ? 3 : 1;

    size_t len1 = 0, len2 = 0, c1[3], c2[3];
    char patient[65];
    field(patient, sizeof patient, part[3], plen[3]);
    const char *find = how & 0x40 ? patient : NULL; /* a patient searched for */
    size_t n = how & 0x80 ? 0 : 1; /* a search that found nothing: no rows */
    char *page1 = render(row, n, find, sent, &len1);
    if (!page1)
        goto out;
    count(page1, len1, c1);
    inbox_summary *s = &row->sum;
    char *strings[] = {s->study_uid, s->patient_id, s->patient_name, s->exam, s->text, s->supersedes, row->id,
                       row->c.by, sent->link.last_error, sent->v[0].patient_id, patient};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        blank(strings[i]);
    char *page2 = render(row, n, find, sent, &len2);
    if (page2) {
        count(page2, len2, c2);
        if (memcmp(c1, c2, sizeof c1)) {
            fprintf(stderr, "markup from the input: < > \" %zu %zu %zu, blanked %zu %zu %zu\n%s\n", c1[0], c1[1], c1[2],
                    c2[0], c2[1], c2[2], page1);
            abort();
        }
    }
    free(page1);
    free(page2);
out:
    free(row);
    free(sent);
    return 0;
}

/* report_html.c — the printable report as one self-contained UTF-8 HTML
 * page: inline style, no scripts, nothing fetched, every text escaped
 * (the reader's text is data, never markup). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/cmd.h"
#include "hub/html_text.h"
#include "hub/report_export.h"
#include "codecs/banned.h"

static const char style[] =
    "body{font-family:\"Noto Sans CJK SC\",\"WenQuanYi Micro Hei\",\"Microsoft YaHei\",sans-serif;"
    "max-width:46em;margin:2em auto;color:#111;line-height:1.5}"
    "h1{font-size:1.6em;border-bottom:2px solid #111;padding-bottom:.2em}"
    "h2{font-size:1.1em;margin-top:1.4em;border-bottom:1px solid #999}"
    ".alert{font-size:2em;font-weight:bold;color:#fff;background:#c00;padding:.3em .5em;margin:.5em 0}"
    "table{border-collapse:collapse;width:100%}th{text-align:left;width:14em;vertical-align:top;"
    "font-weight:normal;color:#444;padding:.15em .5em .15em 0}td{padding:.15em 0;word-break:break-all}"
    ".text{white-space:normal;margin:.4em 0 .8em}.note{font-size:.85em;color:#333;border-top:1px solid #999;"
    "margin-top:1.2em;padding-top:.4em}@media print{body{margin:0}.back{display:none}}";

int report_page_html_buf(const report_page *p, const char *back, const char *pdf, char **out, size_t *out_len)
{
    report_item items[REPORT_PAGE_ITEMS];
    size_t n = report_page_items(p, items);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -ENOMEM;
    fputs("<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
    html_put(f, p->info->report_id, false);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n", style);
    if (back || pdf) {
        fputs("<p class=\"back\">", f);
        if (back) {
            fputs("<a href=\"", f);
            html_put(f, back, false);
            fputs("\">&larr; back to the list</a>", f);
        }
        if (pdf) {
            fputs(back ? " &middot; <a class=\"pdf\" href=\"" : "<a class=\"pdf\" href=\"", f);
            html_put(f, pdf, false);
            fputs("\">PDF for printing 打印</a>", f);
        }
        fputs("</p>\n", f);
    }
    int in_table = 0;
    for (size_t i = 0; i < n; i++) {
        const report_item *it = &items[i];
        if (in_table && it->kind != RI_FIELD) {
            fputs("</table>\n", f);
            in_table = 0;
        }
        switch (it->kind) {
        case RI_TITLE: fputs("<h1>", f); html_put(f, it->text, false); fputs("</h1>\n", f); break;
        case RI_ALERT: fputs("<div class=\"alert\">", f); html_put(f, it->text, false); fputs("</div>\n", f); break;
        case RI_HEADING: fputs("<h2>", f); html_put(f, it->text, false); fputs("</h2>\n", f); break;
        case RI_TEXT: fputs("<p class=\"text\">", f); html_put(f, it->text, true); fputs("</p>\n", f); break;
        case RI_NOTE: fputs("<p class=\"note\">", f); html_put(f, it->text, true); fputs("</p>\n", f); break;
        case RI_FIELD:
            if (!in_table)
                fputs("<table>\n", f);
            in_table = 1;
            fputs("<tr><th>", f);
            html_put(f, it->label, false);
            fputs("</th><td>", f);
            html_put(f, it->text, false);
            fputs("</td></tr>\n", f);
            break;
        }
    }
    if (in_table)
        fputs("</table>\n", f);
    fputs("</body>\n</html>\n", f);
    if (fclose(f) != 0 || !buf) {
        free(buf);
        return -ENOMEM;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int report_page_html(const report_page *p, const char *path, char *why, size_t whylen)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = report_page_html_buf(p, NULL, NULL, &buf, &len);
    if (rc < 0) {
        snprintf(why, whylen, "out of memory");
        return rc;
    }
    rc = dx_write_file(path, buf, len);
    free(buf);
    if (rc < 0)
        snprintf(why, whylen, "writing %s: %s", path, strerror(-rc));
    return rc;
}

/* clinic_page_html.c — the clinic page's list and messages as HTML
 * (clinic_private.h).  At the top, whether the gateway reaches the hub;
 * then unread alerts, each large and red with the form that confirms
 * reading it; the rest of what came back as a table, newest first; last,
 * the exams sent and where each has got.  Nothing is fetched from
 * elsewhere: the style is inline and the one script comes from the page
 * itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/clinic_private.h"
#include "hub/clock.h"
#include "hub/cmd.h"
#include "hub/html_text.h"
#include "codecs/banned.h"

static int row_order(const void *a, const void *b)
{
    const clinic_row *x = a, *y = b;
    bool ux = x->sum.alert && !x->confirmed, uy = y->sum.alert && !y->confirmed;
    if (ux != uy)
        return ux ? -1 : 1;
    if (x->received_ms != y->received_ms)
        return x->received_ms > y->received_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

void clinic_rows_sort(clinic_row *rows, size_t n)
{
    if (n) /* no rows: no array, and qsort of NULL is undefined */
        qsort(rows, n, sizeof *rows, row_order);
}

static const char style[] =
    "body{font-family:\"Noto Sans CJK SC\",\"WenQuanYi Micro Hei\",\"Microsoft YaHei\",sans-serif;"
    "max-width:60em;margin:1.5em auto;padding:0 1em;color:#111;line-height:1.45}"
    "h1{font-size:1.5em;margin:.2em 0}.sub{color:#555;margin-top:0}"
    ".alert{border:4px solid #c00;background:#fee;padding:.6em 1em;margin:1em 0}"
    ".alert h2{color:#c00;margin:.1em 0 .3em;font-size:1.4em}.alert .text{font-size:1.3em;font-weight:bold}"
    ".alert form{margin-top:.6em}.alert input{font-size:1.1em;padding:.2em}"
    ".alert button{font-size:1.1em;padding:.25em .8em;background:#c00;color:#fff;border:0;border-radius:3px}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35em .5em;"
    "border-bottom:1px solid #ccc;vertical-align:top}th{color:#444;font-weight:normal}"
    ".read{color:#060}.none{color:#555;font-style:italic}.msg{font-size:1.2em}"
    ".link{padding:.3em .6em;border-left:6px solid}.link.up{border-color:#060}"
    ".link.down{border-color:#c00;background:#fee;font-weight:bold}h2{font-size:1.15em;margin-top:1.4em}"
    ".find{margin:.4em 0}.find input{padding:.15em}"
    ".stale{position:sticky;top:0;background:#c00;color:#fff;font-weight:bold;padding:.5em 1em;margin:0}";

/* The clinic's own clock time: the gateway's PC is at the clinic. */
static void local_time(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!localtime_r(&t, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M", &tm))
        snprintf(out, n, "?");
}

static void put_when(FILE *f, int64_t ms)
{
    char when[32], age[32];
    local_time(ms, when, sizeof when);
    dx_human_age(clock_wall_ms() - ms, age, sizeof age);
    fprintf(f, "%s (%s ago)", when, age);
}

static void put_patient(FILE *f, const inbox_summary *s)
{
    if (s->patient_id[0]) {
        fputs("patient ", f);
        html_put(f, s->patient_id, false);
        if (s->patient_name[0]) {
            fputc(' ', f);
            html_put(f, s->patient_name, false);
        }
    }
    if (s->patient_id[0] && s->exam[0])
        fputs(" · ", f);
    html_put(f, s->exam, false);
}

static void put_report_link(FILE *f, const clinic_row *r, const char *label)
{
    if (!r->has_report)
        return;
    fputs("<a href=\"/report?id=", f);
    html_put_query(f, r->id);
    fprintf(f, "\">%s</a>", label);
}

static void put_unread_alert(FILE *f, const clinic_row *r)
{
    fputs("<section class=\"alert\" id=\"", f);
    html_put(f, r->id, false);
    fprintf(f, "\">\n<h2>%s · ", r->sum.critical ? "CRITICAL VALUE 危急值" : "REQUEST FROM THE READING CENTRE 上级医院要求");
    put_patient(f, &r->sum);
    fputs("</h2>\n<p class=\"text\">", f);
    html_put(f, r->sum.text, true);
    fputs("</p>\n<p>received ", f);
    put_when(f, r->received_ms);
    fputs(" · ", f);
    html_put(f, r->id, false);
    fputs(" ", f);
    put_report_link(f, r, "open the signed report 查看报告");
    fputs("</p>\n<form method=\"post\" action=\"/ack\"><input type=\"hidden\" name=\"id\" value=\"", f);
    html_put(f, r->id, false);
    fputs("\"><label>Your name 您的姓名 <input name=\"by\" required maxlength=\"127\" autocomplete=\"name\"></label> "
          "<button type=\"submit\">I have read it and acted on it 已阅读并处理</button></form>\n</section>\n",
          f);
}

static void put_row(FILE *f, const clinic_row *r)
{
    fputs("<tr id=\"", f);
    html_put(f, r->id, false);
    fputs("\"><td>", f);
    html_put(f, r->sum.alert ? (r->sum.critical ? "critical value" : "request") : r->kind, false);
    fputs("<br><small>", f);
    html_put(f, r->id, false);
    if (r->sum.supersedes[0]) {
        fputs(", addendum to ", f);
        html_put(f, r->sum.supersedes, false);
    }
    fputs("</small></td><td>", f);
    put_patient(f, &r->sum);
    if (r->sum.alert && r->sum.text[0]) {
        fputs("<br>", f);
        html_put(f, r->sum.text, true);
    }
    fputs("</td><td>", f);
    put_when(f, r->received_ms);
    fputs("</td><td>", f);
    if (r->confirmed) {
        char when[32];
        local_time(r->c.at_ms, when, sizeof when);
        fputs("<span class=\"read\">read by ", f);
        html_put(f, r->c.by, false);
        fprintf(f, " at %s%s</span> ", when, r->c.told_hub ? "" : " (the hub not told yet)");
    }
    put_report_link(f, r, "open the signed report 查看报告");
    fputs("</td></tr>\n", f);
}

/* The link to the hub, as the gateway last wrote it: whether what the
 * clinic sends is on its way. */
static void put_link(FILE *f, const spool_stats *st)
{
    const char *s = st->link_state;
    char when[32];
    local_time(st->link_since_ms, when, sizeof when);
    if (!strcmp(s, "connected") || !strcmp(s, "acked")) {
        fputs("<p class=\"link up\">Connected to the reading centre. 已连接上级诊断中心。", f);
        if (st->depth)
            fprintf(f, " %llu image(s) or recording(s) on their way.", (unsigned long long)st->depth);
    } else if (!strcmp(s, "stopped")) {
        fprintf(f, "<p class=\"link down\">The gateway is stopped (since %s): exams are not being sent. Call IT. "
                   "网关已停止，检查未发送，请联系信息科。",
                when);
    } else if (!*s) {
        fputs("<p class=\"link down\">The gateway has not connected to the reading centre yet. 尚未连接上级诊断中心。", f);
    } else {
        fprintf(f, "<p class=\"link down\">NOT CONNECTED to the reading centre since %s", when);
        if (st->last_error[0]) {
            fputs(" (", f);
            html_put(f, st->last_error, false);
            fputc(')', f);
        }
        fputs(". Exams wait here and go when it is back; for an urgent one, phone the reading centre. "
              "未连接上级诊断中心：检查在此等待，恢复后自动发送；急诊请电话联系。", f);
    }
    if (st->failed)
        fprintf(f, " <strong>%llu refused by the reading centre: call IT.</strong>", (unsigned long long)st->failed);
    fputs("</p>\n", f);
}

/* What the clinic sent: whose exam, how urgent, and where it has got. */
static void put_sent(FILE *f, const clinic_sent *sent)
{
    if (!sent->n)
        return;
    fputs("<h2>Sent to the reading centre 已发送检查</h2>\n<table class=\"sent\">\n"
          "<tr><th>whose exam</th><th>priority</th><th>queued</th><th>where it has got</th></tr>\n", f);
    for (size_t i = 0; i < sent->n; i++) {
        const spool_study *st = &sent->v[i];
        char when[32];
        fputs("<tr><td>", f);
        if (st->patient_id[0]) {
            fputs("patient ", f);
            html_put(f, st->patient_id, false);
        } else {
            fputs("<span class=\"none\">unknown patient</span>", f);
        }
        fprintf(f, "</td><td>%s%s</td><td>", spool_priority_name(st->priority), st->referral ? ", referral" : "");
        put_when(f, st->first_ms);
        fputs("</td><td>", f);
        if (st->acked >= st->instances) {
            local_time(st->last_ack_ms, when, sizeof when);
            fprintf(f, "<span class=\"read\">at the reading centre</span> since %s (%u file%s)", when, st->instances,
                    st->instances == 1 ? "" : "s");
        } else if (st->refused) {
            fprintf(f, "<strong>%u of %u REFUSED by the reading centre: call IT</strong>", st->refused, st->instances);
        } else {
            int pct = st->bytes ? (int)(100 * (st->sent_bytes < st->bytes ? st->sent_bytes : st->bytes) / st->bytes)
                                : 0;
            fprintf(f, "%s: %u of %u files there (%d%% sent)", st->sent_bytes ? "sending" : "waiting", st->acked,
                    st->instances, pct);
        }
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
    if (sent->more)
        fprintf(f, "<p class=\"none\">and %zu more (dxhub edge --status)</p>\n", sent->more);
}

static void put_head(FILE *f, const char *title, bool script)
{
    fputs("<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
    html_put(f, title, false);
    fprintf(f, "</title>\n<style>%s</style>\n%s</head>\n", style,
            script ? "<script src=\"/page.js\" defer></script>\n" : "");
}

/* The page's bytes: open_memstream sets buf and sz at fclose. */
static char *finish(FILE *f, char **buf, const size_t *sz, size_t *len)
{
    if (fclose(f) != 0 || !*buf) {
        free(*buf);
        return NULL;
    }
    *len = *sz;
    return *buf;
}

char *clinic_html_list(const clinic_row *rows, size_t n, size_t older, int days, const char *patient,
                       const clinic_sent *sent, const char *stamp, size_t *len)
{
    char *buf = NULL;
    size_t sz = 0;
    FILE *f = open_memstream(&buf, &sz);
    if (!f)
        return NULL;
    size_t unread = 0;
    while (unread < n && rows[unread].sum.alert && !rows[unread].confirmed)
        unread++;
    char title[96];
    if (unread)
        snprintf(title, sizeof title, "(%zu ALERT%s) Reports and alerts", unread, unread > 1 ? "S" : "");
    else
        snprintf(title, sizeof title, "Reports and alerts");
    put_head(f, title, true);
    fputs("<body data-stamp=\"", f);
    html_put(f, stamp, false);
    fputs("\">\n<p id=\"stale\" class=\"stale\" role=\"alert\" hidden></p>\n"
          "<h1>Reports and alerts from the reading centre 诊断报告与危急值</h1>\n<p class=\"sub\">", f);
    if (patient) {
        fputs("everything about patient ", f);
        html_put(f, patient, false);
        fputs(", however old; <a href=\"/\">back to the recent list</a></p>\n", f);
    } else {
        fprintf(f, "what arrived in the last %d day%s, and every alert nobody has confirmed reading; this page "
                   "updates itself when something arrives</p>\n",
                days, days > 1 ? "s" : "");
    }
    fputs("<form class=\"find\" method=\"get\" action=\"/\"><label>Patient ID 患者ID <input name=\"patient\" "
          "maxlength=\"64\" value=\"", f);
    html_put(f, patient ? patient : "", false);
    fputs("\"></label> <button type=\"submit\">Find 查找</button></form>\n", f);
    put_link(f, &sent->link);
    for (size_t i = 0; i < unread; i++)
        put_unread_alert(f, &rows[i]);
    if (n > unread) {
        fputs("<table>\n<tr><th>what</th><th>whose exam</th><th>received</th><th></th></tr>\n", f);
        for (size_t i = unread; i < n; i++)
            put_row(f, &rows[i]);
        fputs("</table>\n", f);
    } else if (!n) {
        fputs("<p class=\"none\">no reports or alerts</p>\n", f);
    }
    if (older)
        fprintf(f, "<p class=\"none\">%zu older item(s) not shown (received more than %d day(s) ago): "
                   "dxhub reports --all</p>\n",
                older, days);
    put_sent(f, sent);
    fputs("</body>\n</html>\n", f);
    return finish(f, &buf, &sz, len);
}

char *clinic_html_message(const char *title, const char *text, size_t *len)
{
    char *buf = NULL;
    size_t sz = 0;
    FILE *f = open_memstream(&buf, &sz);
    if (!f)
        return NULL;
    put_head(f, title, false);
    fputs("<body>\n<h1>", f);
    html_put(f, title, false);
    fputs("</h1>\n<p class=\"msg\">", f);
    html_put(f, text, true);
    fputs("</p>\n<p><a href=\"/\">&larr; the list of reports and alerts</a></p>\n</body>\n</html>\n", f);
    return finish(f, &buf, &sz, len);
}

/* Asks every 5 s whether the list changed; reloads when it did, so a new
 * alert shows without anyone pressing anything.  A page being typed into
 * (a name for the confirmation, a patient to find) is not reloaded from
 * under the nurse.  A
 * page that cannot ask says so in red at its top: a list that silently
 * stopped updating would hide the next critical value. */
const char clinic_page_js[] =
    "'use strict';\n"
    "(function () {\n"
    "  const shown = document.body.dataset.stamp;\n"
    "  const stale = document.getElementById('stale');\n"
    "  if (!shown || !stale) return;\n"
    "  let since = null;\n"
    "  const lost = (why) => {\n"
    "    if (!since) since = new Date();\n"
    "    stale.textContent = `NOT UPDATING since ${since.toLocaleTimeString()}: ${why}. ` +\n"
    "      'New alerts do not show here until it answers again. 页面未更新：新的危急值不会显示。';\n"
    "    stale.hidden = false;\n"
    "  };\n"
    "  setInterval(async () => {\n"
    "    const a = document.activeElement;\n"
    "    if (a && a.tagName === 'INPUT' && a.value) return;\n"
    "    try {\n"
    "      const r = await fetch('/changes' + location.search, {cache: 'no-store'});\n"
    "      if (r.status === 401) return lost('this browser is no longer let in (open the page\\'s link again)');\n"
    "      if (!r.ok) return lost(`the page's server answered ${r.status}`);\n"
    "      if ((await r.text()).trim() !== shown || since) location.reload();\n"
    "    } catch (e) {\n"
    "      lost(\"the page's server does not answer (is 'dxhub reports --serve' running?)\");\n"
    "    }\n"
    "  }, 5000);\n"
    "})();\n";

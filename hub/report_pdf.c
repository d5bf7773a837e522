/* report_pdf.c — the printable report as an A4 PDF, the only file that
 * includes pango and cairo.  Pango shapes the text (Chinese line breaking,
 * font fallback through fontconfig) and cairo embeds the font subsets
 * with their Unicode maps, so the PDF's text can be searched and
 * extracted.  A glyph no installed font has is an error, never a box on
 * the page: a report whose name prints as boxes must not leave the clinic. */
#include <cairo-pdf.h>
#include <cairo.h>
#include <errno.h>
#include <pango/pangocairo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/cmd.h"
#include "hub/report_export.h"
#include "codecs/banned.h"

#define PAGE_W   595.28 /* A4 in points */
#define PAGE_H   841.89
#define MARGIN   56.0
#define LABEL_W  150.0
#define BOTTOM   (PAGE_H - MARGIN)
/* Debian's CJK fonts first (fonts-wqy-microhei, fonts-noto-cjk), then whatever fontconfig has. */
#define FONTS    "WenQuanYi Micro Hei,Noto Sans CJK SC,Noto Sans CJK,Droid Sans Fallback,sans-serif"

typedef struct pdf {
    cairo_t    *cr;
    double      y;
    int         page;
    const char *report_id, *patient_id; /* on every page: a loose sheet still names its patient */
    int         missing; /* glyphs no font has */
    FILE       *out;     /* the PDF's bytes, collected in memory */
} pdf;

static cairo_status_t collect(void *closure, const unsigned char *data, unsigned int length)
{
    return fwrite(data, 1, length, closure) == length ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static PangoLayout *layout(pdf *d, const char *text, double size, int bold, double width)
{
    PangoLayout *l = pango_cairo_create_layout(d->cr);
    PangoFontDescription *fd = pango_font_description_from_string(FONTS);
    pango_font_description_set_absolute_size(fd, size * PANGO_SCALE);
    if (bold)
        pango_font_description_set_weight(fd, PANGO_WEIGHT_BOLD);
    pango_layout_set_font_description(l, fd);
    pango_font_description_free(fd);
    pango_layout_set_width(l, (int)(width * PANGO_SCALE));
    pango_layout_set_wrap(l, PANGO_WRAP_WORD_CHAR);
    pango_layout_set_text(l, text, -1);
    d->missing += pango_layout_get_unknown_glyphs_count(l);
    return l;
}

static void footer(pdf *d)
{
    char s[256];
    snprintf(s, sizeof s, "%.60s · 患者ID Patient ID %.64s — 第 %d 页 page %d", d->report_id, d->patient_id, d->page,
             d->page);
    PangoLayout *l = layout(d, s, 8, 0, PAGE_W - 2 * MARGIN);
    cairo_set_source_rgb(d->cr, 0.4, 0.4, 0.4);
    cairo_move_to(d->cr, MARGIN, PAGE_H - MARGIN + 14);
    pango_cairo_show_layout(d->cr, l);
    g_object_unref(l);
}

static void new_page(pdf *d)
{
    footer(d);
    cairo_show_page(d->cr);
    d->page++;
    d->y = MARGIN;
}

static double height(PangoLayout *l)
{
    int w, h;
    pango_layout_get_size(l, &w, &h);
    return (double)h / PANGO_SCALE;
}

/* A paragraph line by line, so long findings run on to the next page. */
static void show_lines(pdf *d, PangoLayout *l, double x)
{
    PangoLayoutIter *it = pango_layout_get_iter(l);
    double top = d->y;
    int first = 1;
    do {
        PangoRectangle r;
        pango_layout_iter_get_line_extents(it, NULL, &r);
        double lh = (double)r.height / PANGO_SCALE, ly = (double)r.y / PANGO_SCALE;
        if (top + ly + lh > BOTTOM && !(first && d->y == MARGIN)) {
            new_page(d);
            top = MARGIN - ly;
        }
        first = 0;
        double base = (double)pango_layout_iter_get_baseline(it) / PANGO_SCALE;
        cairo_move_to(d->cr, x, top + base);
        pango_cairo_show_layout_line(d->cr, pango_layout_iter_get_line_readonly(it));
        d->y = top + ly + lh;
    } while (pango_layout_iter_next_line(it));
    pango_layout_iter_free(it);
}

static void draw_item(pdf *d, const report_item *it)
{
    const double w = PAGE_W - 2 * MARGIN;
    cairo_t *cr = d->cr;
    PangoLayout *l, *v;
    cairo_set_source_rgb(cr, 0, 0, 0);
    switch (it->kind) {
    case RI_TITLE:
        l = layout(d, it->text, 18, 1, w);
        show_lines(d, l, MARGIN);
        g_object_unref(l);
        cairo_set_line_width(cr, 1.2);
        cairo_move_to(cr, MARGIN, d->y + 3);
        cairo_line_to(cr, PAGE_W - MARGIN, d->y + 3);
        cairo_stroke(cr);
        d->y += 10;
        break;
    case RI_ALERT:
        l = layout(d, it->text, 20, 1, w - 16);
        if (d->y + height(l) + 12 > BOTTOM)
            new_page(d);
        cairo_set_source_rgb(cr, 0.8, 0, 0);
        cairo_rectangle(cr, MARGIN, d->y, w, height(l) + 12);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_move_to(cr, MARGIN + 8, d->y + 6);
        pango_cairo_show_layout(cr, l);
        d->y += height(l) + 20;
        g_object_unref(l);
        break;
    case RI_HEADING:
        l = layout(d, it->text, 12, 1, w);
        if (d->y + height(l) + 30 > BOTTOM) /* a heading never ends a page */
            new_page(d);
        d->y += 8;
        show_lines(d, l, MARGIN);
        g_object_unref(l);
        cairo_set_line_width(cr, 0.5);
        cairo_move_to(cr, MARGIN, d->y + 1);
        cairo_line_to(cr, PAGE_W - MARGIN, d->y + 1);
        cairo_stroke(cr);
        d->y += 5;
        break;
    case RI_FIELD:
        l = layout(d, it->label, 9.5, 0, LABEL_W - 8);
        v = layout(d, it->text, 10, 0, w - LABEL_W);
        double h = height(l) > height(v) ? height(l) : height(v);
        if (d->y + h > BOTTOM)
            new_page(d);
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        cairo_move_to(cr, MARGIN, d->y);
        pango_cairo_show_layout(cr, l);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, MARGIN + LABEL_W, d->y);
        pango_cairo_show_layout(cr, v);
        d->y += h + 2;
        g_object_unref(l);
        g_object_unref(v);
        break;
    case RI_TEXT:
        l = layout(d, it->text, 11, 0, w);
        d->y += 3;
        show_lines(d, l, MARGIN);
        d->y += 6;
        g_object_unref(l);
        break;
    case RI_NOTE:
        l = layout(d, it->text, 8.5, 0, w);
        d->y += 6;
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        show_lines(d, l, MARGIN);
        g_object_unref(l);
        break;
    }
}

int report_page_pdf_buf(const report_page *p, char **out, size_t *out_len, char *why, size_t whylen)
{
    report_item items[REPORT_PAGE_ITEMS];
    size_t n = report_page_items(p, items);
    char *buf = NULL;
    size_t len = 0;
    pdf d = {.y = MARGIN, .page = 1, .report_id = p->info->report_id,
             .patient_id = p->info->patient_id, .out = open_memstream(&buf, &len)};
    if (!d.out) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    cairo_surface_t *s = cairo_pdf_surface_create_for_stream(collect, d.out, PAGE_W, PAGE_H);
    cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_TITLE, p->info->report_id);
    cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_CREATOR, "dxhub");
    d.cr = cairo_create(s);
    for (size_t i = 0; i < n; i++)
        draw_item(&d, &items[i]);
    footer(&d);
    cairo_show_page(d.cr);
    cairo_destroy(d.cr);
    cairo_surface_finish(s);
    cairo_status_t st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    int closed = fclose(d.out);
    int rc = 0;
    if (st != CAIRO_STATUS_SUCCESS || closed != 0 || !buf) {
        snprintf(why, whylen, "cairo could not make the PDF: %s", cairo_status_to_string(st));
        rc = -EIO;
    } else if (d.missing) {
        snprintf(why, whylen, "%d character(s) have no glyph in any installed font (install fonts-wqy-microhei "
                 "or fonts-noto-cjk)", d.missing);
        rc = -ENOENT;
    }
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int report_page_pdf(const report_page *p, const char *path, char *why, size_t whylen)
{
    char *buf = NULL, inner[400];
    size_t len = 0;
    int rc = report_page_pdf_buf(p, &buf, &len, inner, sizeof inner);
    if (rc < 0)
        snprintf(why, whylen, "%s: %s", path, inner);
    else if ((rc = dx_write_file(path, buf, len)) < 0)
        snprintf(why, whylen, "writing %s: %s", path, strerror(-rc));
    free(buf);
    return rc;
}

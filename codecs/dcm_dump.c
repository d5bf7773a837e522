/* dcm_dump.c — a dcmdump-like text listing: one line per element,
 * "(gggg,eeee) VR value  # length, multiplicity Keyword", items indented. */
#include "codecs/dcm_private.h"

#define MAX_SHOWN 64 /* characters of a value shown before "..." */

typedef struct dctx {
    const dcm_file *f;
    dcm_buf         line;
    dcm_sink        out;
    dcm_err        *err;
    int             rc;
} dctx;

static void add(dctx *d, const char *s, size_t n)
{
    if (d->rc == 0 && dcm_buf_put(&d->line, s, n) < 0)
        d->rc = DCM_ENOMEM;
}
static void adds(dctx *d, const char *s) { add(d, s, strlen(s)); }

static void addf(dctx *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void addf(dctx *d, const char *fmt, ...)
{
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        add(d, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void flush_line(dctx *d)
{
    add(d, "\n", 1);
    if (d->rc == 0)
        d->rc = d->out.write(d->out.ctx, d->line.p, d->line.n);
    d->line.n = 0;
}

static void indent(dctx *d, unsigned depth)
{
    for (unsigned i = 0; i < depth; i++)
        add(d, "  ", 2);
}

/* Pad the value column so the comment lines up, as dcmdump does. */
static void comment(dctx *d, size_t line_start, const dcm_elem *e, size_t vm, const char *name)
{
    size_t used = d->line.n - line_start;
    for (; used < 56; used++)
        add(d, " ", 1);
    if (e->length == DCM_UNDEFINED_LENGTH)
        addf(d, " # u/l, %zu %s", vm, name);
    else
        addf(d, " # %3u, %zu %s", e->length, vm, name);
}

static const char *keyword(uint32_t tag)
{
    if (tag == DCM_TAG_ITEM)
        return "Item";
    const dcm_dict_entry *de = dcm_dict_find(tag);
    if (de && de->keyword && de->keyword[0])
        return de->keyword;
    if ((DCM_GROUP(tag) & 1) && DCM_ELEM(tag) >= 0x10 && DCM_ELEM(tag) <= 0xFF)
        return "PrivateCreator";
    return (DCM_GROUP(tag) & 1) ? "PrivateTag" : "Unknown Tag & Data";
}

static void value_text(dctx *d, const dcm_elem *e, dcm_vr vr)
{
    char *u = NULL;
    size_t n = 0;
    if (dcm_get_utf8_as(d->f, e, vr, &u, &n, d->err) < 0) {
        adds(d, "(unreadable text)");
        return;
    }
    while (n > 0 && (u[n - 1] == ' ' || u[n - 1] == '\0'))
        n--;
    if (n == 0) {
        adds(d, "(no value available)");
    } else {
        add(d, "[", 1);
        size_t shown = n > MAX_SHOWN * 4 ? MAX_SHOWN * 4 : n; /* UTF-8: bytes, generously */
        for (size_t i = 0; i < shown; i++)
            add(d, (u[i] == '\n' || u[i] == '\r') ? "." : u + i, 1);
        add(d, shown < n ? "...]" : "]", shown < n ? 4 : 1);
    }
    free(u);
}

static void value_numbers(dctx *d, const dcm_elem *e, dcm_vr vr, size_t vm)
{
    if (vm == 0) {
        adds(d, "(no value available)");
        return;
    }
    size_t shown = vm > 16 ? 16 : vm;
    for (size_t i = 0; i < shown; i++) {
        if (i)
            add(d, "\\", 1);
        double v;
        if (vr == DCM_VR_AT) {
            const uint8_t *p = e->value + 4 * i;
            bool be = dcm_is_big_endian_node(e);
            addf(d, "(%04x,%04x)", dcm_rd16(p, be), dcm_rd16(p + 2, be));
        } else if (dcm_get_f64_as(d->f, e, vr, i, &v) == 0) {
            addf(d, "%.*g", vr == DCM_VR_FL ? 9 : 17, v);
        }
    }
    if (shown < vm)
        adds(d, "...");
}

static void value_bytes(dctx *d, const dcm_elem *e, dcm_vr vr)
{
    if (!e->value || e->value_len == 0) {
        adds(d, "(no value available)");
        return;
    }
    size_t word = vr == DCM_VR_OW ? 2 : vr == DCM_VR_OF || vr == DCM_VR_OL ? 4 : vr == DCM_VR_OD || vr == DCM_VR_OV ? 8 : 1;
    size_t n = e->value_len / word, shown = n > 8 ? 8 : n;
    bool be = dcm_is_big_endian_node(e);
    for (size_t i = 0; i < shown; i++) {
        const uint8_t *p = e->value + i * word;
        if (i)
            add(d, "\\", 1);
        if (word == 1)
            addf(d, "%02x", p[0]);
        else if (word == 2)
            addf(d, "%04x", dcm_rd16(p, be));
        else if (word == 4)
            addf(d, "%08x", dcm_rd32(p, be));
        else
            addf(d, "%016llx", (unsigned long long)dcm_rd64(p, be));
    }
    if (shown < n)
        adds(d, "...");
}

static void dump_nodes(dctx *d, int32_t first)
{
    for (int32_t i = first; i >= 0 && d->rc == 0; i = d->f->nodes[i].next) {
        const dcm_elem *e = &d->f->nodes[i];
        size_t start = d->line.n;
        indent(d, e->depth);
        addf(d, "(%04x,%04x) ", DCM_GROUP(e->tag), DCM_ELEM(e->tag));
        if (e->tag == DCM_TAG_ITEM) {
            bool fragment = e->parent >= 0 && (d->f->nodes[e->parent].flags & DCM_F_ENCAPS);
            if (fragment) {
                addf(d, "pi ");
                value_bytes(d, e, DCM_VR_OB);
                comment(d, start, e, 1, "Item");
                flush_line(d);
                continue;
            }
            adds(d, e->length == DCM_UNDEFINED_LENGTH ? "na (Item with undefined length)"
                                                       : "na (Item with explicit length)");
            comment(d, start, e, 1, "Item");
            flush_line(d);
            dump_nodes(d, e->child);
            continue;
        }
        dcm_vr vr = dcm_effective_vr(d->f, e);
        const dcm_vr_info *vi = dcm_vr_info_of(vr);
        addf(d, "%s ", vi->name);
        size_t vm = dcm_value_count(d->f, e);
        if (vi->klass == DCM_VRC_SEQUENCE) {
            size_t items = 0;
            for (int32_t c = e->child; c >= 0; c = d->f->nodes[c].next)
                items++;
            addf(d, "(Sequence with %s length #=%zu)",
                 e->length == DCM_UNDEFINED_LENGTH ? "undefined" : "explicit", items);
            comment(d, start, e, 1, keyword(e->tag));
            flush_line(d);
            dump_nodes(d, e->child);
            continue;
        }
        if (e->flags & DCM_F_ENCAPS) {
            adds(d, "(PixelSequence)");
            comment(d, start, e, 1, keyword(e->tag));
            flush_line(d);
            dump_nodes(d, e->child);
            continue;
        }
        if (vi->klass == DCM_VRC_NUMBER)
            value_numbers(d, e, vr, vm);
        else if (vi->klass == DCM_VRC_BYTES)
            value_bytes(d, e, vr), vm = e->value_len ? 1 : 0;
        else
            value_text(d, e, vr);
        comment(d, start, e, vm, keyword(e->tag));
        flush_line(d);
    }
}

int dcm_dump_text(const dcm_file *f, dcm_sink out, dcm_err *err)
{
    dctx d = {.f = f, .out = out, .err = err};
    const dcm_ts *ts = dcm_file_ts(f);
    addf(&d, "# %s, %s, transfer syntax %s", dcm_has_preamble(f) ? "preamble" : "no preamble",
         dcm_has_meta(f) ? "file meta" : "no file meta", ts ? ts->name : "unknown");
    flush_line(&d);
    dump_nodes(&d, dcm_first(f));
    free(d.line.p);
    return d.rc;
}

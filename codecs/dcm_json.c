/* dcm_json.c — the DICOM JSON Model (PS3.18 Annex F).
 *
 * Values follow F.2: numbers for IS/DS and binary numeric VRs, strings for
 * other text VRs, PN as component-group objects, AT as hex strings, binary
 * VRs as base64 InlineBinary (little endian, F.2.7) or, past the bulk
 * threshold, a BulkDataURI naming where the bytes lie. */
#include <math.h>
#include "codecs/dcm_private.h"

typedef struct jctx {
    const dcm_file      *f;
    const dcm_json_opts *o;
    dcm_buf              out;
    dcm_err             *err;
    int                  rc;
} jctx;

static void put(jctx *j, const void *p, size_t n)
{
    if (j->rc == 0 && dcm_buf_put(&j->out, p, n) < 0)
        j->rc = DCM_ENOMEM;
}
static void puts_(jctx *j, const char *s) { put(j, s, strlen(s)); }

static void put_json_string(jctx *j, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    put(j, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(j, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            put(j, esc, 2);
        } else if (c == '\n') {
            put(j, "\\n", 2);
        } else if (c == '\r') {
            put(j, "\\r", 2);
        } else if (c == '\t') {
            put(j, "\\t", 2);
        } else {
            put(j, esc, 6);
        }
    }
    put(j, s + run, n - run);
    put(j, "\"", 1);
}

/* Shortest decimal that reads back as the same double. */
static void put_double(jctx *j, double v)
{
    char buf[40];
    if (!isfinite(v)) {
        puts_(j, "null");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, sizeof buf, "%.1f", v);
        puts_(j, buf);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    puts_(j, buf);
}

static void put_base64(jctx *j, const uint8_t *p, size_t n, size_t word, bool swap)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    uint8_t in[3];
    size_t i = 0;
    /* F.2.7: InlineBinary is little endian; swap big endian words.  A
     * malformed odd-length value leaves a partial last word: copy it as is
     * rather than reach past the value. */
    size_t whole = swap && word > 1 ? n / word * word : 0;
    #define BYTE(k) ((k) < whole ? p[((k) / word) * word + (word - 1 - (k) % word)] : p[k])
    put(j, "\"", 1);
    for (; i + 3 <= n; i += 3) {
        in[0] = BYTE(i); in[1] = BYTE(i + 1); in[2] = BYTE(i + 2);
        q[0] = tbl[in[0] >> 2];
        q[1] = tbl[(in[0] & 3) << 4 | in[1] >> 4];
        q[2] = tbl[(in[1] & 15) << 2 | in[2] >> 6];
        q[3] = tbl[in[2] & 63];
        put(j, q, 4);
    }
    if (i < n) {
        in[0] = BYTE(i);
        in[1] = i + 1 < n ? BYTE(i + 1) : 0;
        q[0] = tbl[in[0] >> 2];
        q[1] = tbl[(in[0] & 3) << 4 | in[1] >> 4];
        q[2] = i + 1 < n ? tbl[(in[1] & 15) << 2] : '=';
        q[3] = '=';
        put(j, q, 4);
    }
    #undef BYTE
    put(j, "\"", 1);
}

static void put_tag_key(jctx *j, uint32_t tag)
{
    char k[16];
    snprintf(k, sizeof k, "\"%08X\":", tag);
    puts_(j, k);
}

static void put_vr(jctx *j, dcm_vr vr)
{
    char k[16];
    snprintf(k, sizeof k, "{\"vr\":\"%s\"", dcm_vr_info_of(vr)->name);
    puts_(j, k);
}

static void write_dataset(jctx *j, int32_t first);

static void write_binary_numbers(jctx *j, const dcm_elem *e, dcm_vr vr)
{
    size_t n = dcm_value_count(j->f, e);
    if (n == 0)
        return;
    puts_(j, ",\"Value\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            puts_(j, ",");
        if (vr == DCM_VR_AT) {
            const uint8_t *p = e->value + 4 * i;
            bool be = dcm_is_big_endian_node(e);
            char buf[16];
            snprintf(buf, sizeof buf, "\"%04X%04X\"", dcm_rd16(p, be), dcm_rd16(p + 2, be));
            puts_(j, buf);
            continue;
        }
        double d;
        if (dcm_get_f64_as(j->f, e, vr, i, &d) < 0) {
            puts_(j, "null");
            continue;
        }
        if (vr == DCM_VR_FL || vr == DCM_VR_FD) {
            put_double(j, d);
        } else {
            char buf[32];
            if (vr == DCM_VR_UV)
                snprintf(buf, sizeof buf, "%llu", (unsigned long long)dcm_rd64(e->value + 8 * i, dcm_is_big_endian_node(e)));
            else if (vr == DCM_VR_SV)
                snprintf(buf, sizeof buf, "%lld", (long long)dcm_rd64(e->value + 8 * i, dcm_is_big_endian_node(e)));
            else
                snprintf(buf, sizeof buf, "%.0f", d);
            puts_(j, buf);
        }
    }
    puts_(j, "]");
}

/* IS and DS: JSON numbers (F.2.3.1); a value that is no number stays a string. */
static void put_decimal(jctx *j, const char *s, size_t n, dcm_vr vr)
{
    char buf[80];
    if (n == 0) {
        puts_(j, "null");
        return;
    }
    if (n >= sizeof buf) {
        put_json_string(j, s, n);
        return;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    double d = strtod(buf, &end);
    while (*end == ' ')
        end++;
    if (*end || end == buf || !isfinite(d)) {
        put_json_string(j, s, n);
        return;
    }
    if (vr == DCM_VR_IS && d == floor(d) && fabs(d) < 9.2e18) {
        snprintf(buf, sizeof buf, "%.0f", d);
        puts_(j, buf);
        return;
    }
    put_double(j, d);
}

/* PS3.18 F.2.2: component groups as members; trailing empty groups are
 * left out (as pydicom and DCMTK's dcm2json do). */
static void put_pn(jctx *j, const char *s, size_t n)
{
    static const char *const groups[] = {"Alphabetic", "Ideographic", "Phonetic"};
    size_t from[3] = {0}, to[3] = {0};
    int last = 0;
    size_t a = 0;
    for (int g = 0; g < 3; g++) {
        size_t b = a;
        while (b < n && s[b] != '=')
            b++;
        from[g] = a;
        to[g] = b;
        if (b > a || g == 0)
            last = g;
        if (b >= n)
            break;
        a = b + 1;
    }
    puts_(j, "{");
    for (int g = 0; g <= last; g++) {
        if (g)
            puts_(j, ",");
        put_json_string(j, groups[g], strlen(groups[g]));
        puts_(j, ":");
        put_json_string(j, s + from[g], to[g] - from[g]);
    }
    puts_(j, "}");
}

static void write_text(jctx *j, const dcm_elem *e, dcm_vr vr)
{
    if (!e->value || e->value_len == 0)
        return;
    char *u = NULL;
    size_t ulen = 0;
    int rc = dcm_get_utf8_as(j->f, e, vr, &u, &ulen, j->err);
    if (rc < 0) {
        j->rc = rc;
        return;
    }
    /* Trim as the VR says (PS3.5 §6.2): trailing spaces and NULs. */
    const dcm_vr_info *vi = dcm_vr_info_of(vr);
    bool single = vi->klass == DCM_VRC_TEXT1;
    size_t count = 0;
    const char *vals[1];
    (void)vals;
    /* Split on backslash unless single-valued VR. */
    size_t a = 0;
    bool any = false;
    for (size_t i = 0; i <= ulen; i++) {
        if (i < ulen && (single || u[i] != '\\'))
            continue;
        size_t x = a, y = i;
        while (y > x && (u[y - 1] == ' ' || u[y - 1] == '\0'))
            y--;
        if (!vi->charset && vi->klass == DCM_VRC_TEXT)
            while (x < y && u[x] == ' ')
                x++;
        if (count == 0 && i == ulen && x == y)
            break; /* whole value empty: VM 0, no "Value" */
        puts_(j, count == 0 ? ",\"Value\":[" : ",");
        any = true;
        if (vr == DCM_VR_PN)
            put_pn(j, u + x, y - x);
        else if (vr == DCM_VR_IS || vr == DCM_VR_DS)
            put_decimal(j, u + x, y - x, vr);
        else
            put_json_string(j, u + x, y - x);
        count++;
        a = i + 1;
    }
    if (any)
        puts_(j, "]");
    free(u);
}

static void element_path(const dcm_file *f, const dcm_elem *e, char *out, size_t n)
{
    /* Walk up to the top, then print top-down: ?element=GGGGEEEE/item/GGGGEEEE */
    int32_t chain[2 * DCM_MAX_DEPTH + 2];
    int depth = 0;
    for (int32_t i = (int32_t)(e - f->nodes); i >= 0 && depth < (int)(sizeof chain / sizeof chain[0]);
         i = f->nodes[i].parent)
        chain[depth++] = i;
    size_t o = (size_t)snprintf(out, n, "?element=");
    for (int d = depth - 1; d >= 0 && o < n; d--) {
        const dcm_elem *x = &f->nodes[chain[d]];
        if (x->tag == DCM_TAG_ITEM) {
            int idx = 0;
            for (int32_t c = f->nodes[x->parent].child; c >= 0 && c != chain[d]; c = f->nodes[c].next)
                idx++;
            o += (size_t)snprintf(out + o, n - o, "/%d/", idx);
        } else {
            o += (size_t)snprintf(out + o, n - o, "%08X", x->tag);
        }
    }
}

static void write_bulk(jctx *j, const dcm_elem *e, dcm_vr vr)
{
    const uint8_t *v = e->value;
    size_t n = e->value_len;
    if (e->flags & DCM_F_ENCAPS) {
        /* The encapsulated items, without the sequence delimiter (as pydicom). */
        n = e->value_len >= 8 ? e->value_len - 8 : 0;
    }
    if (!v || n == 0)
        return;
    size_t threshold = j->o && j->o->bulk_threshold ? j->o->bulk_threshold : 1024;
    if (n > threshold) {
        const char *base = j->o && j->o->bulk_uri_base ? j->o->bulk_uri_base : "file:";
        char tail[600];
        if (j->f->owned) {
            /* A deflated data set: offsets into the file mean nothing, so
             * name the element by its path (tag/item/tag...). */
            element_path(j->f, e, tail, sizeof tail);
        } else {
            snprintf(tail, sizeof tail, "?offset=%zu&length=%zu", (size_t)(v - j->f->buf), n);
        }
        puts_(j, ",\"BulkDataURI\":");
        size_t bl = strlen(base), tl = strlen(tail);
        char *uri = malloc(bl + tl + 1);
        if (!uri) {
            j->rc = DCM_ENOMEM;
            return;
        }
        memcpy(uri, base, bl);
        memcpy(uri + bl, tail, tl + 1);
        put_json_string(j, uri, bl + tl);
        free(uri);
        return;
    }
    puts_(j, ",\"InlineBinary\":");
    put_base64(j, v, n, dcm_vr_info_of(vr)->word, dcm_is_big_endian_node(e) && !(e->flags & DCM_F_ENCAPS));
}

static void write_element(jctx *j, int32_t i)
{
    const dcm_elem *e = dcm_at(j->f, i);
    dcm_vr vr = dcm_effective_vr(j->f, e);
    put_tag_key(j, e->tag);
    put_vr(j, vr);
    switch (dcm_vr_info_of(vr)->klass) {
    case DCM_VRC_SEQUENCE:
        puts_(j, ",\"Value\":[");
        for (int32_t it = e->child; it >= 0; it = j->f->nodes[it].next) {
            if (it != e->child)
                puts_(j, ",");
            write_dataset(j, j->f->nodes[it].child);
        }
        puts_(j, "]");
        break;
    case DCM_VRC_NUMBER:
        write_binary_numbers(j, e, vr);
        break;
    case DCM_VRC_BYTES:
        write_bulk(j, e, vr);
        break;
    default:
        write_text(j, e, vr);
        break;
    }
    puts_(j, "}");
}

static void write_dataset(jctx *j, int32_t first)
{
    puts_(j, "{");
    bool any = false;
    for (int32_t i = first; i >= 0 && j->rc == 0; i = j->f->nodes[i].next) {
        const dcm_elem *e = &j->f->nodes[i];
        if ((e->flags & DCM_F_META) && !(j->o && j->o->include_meta))
            continue;
        if (any)
            puts_(j, ",");
        write_element(j, i);
        any = true;
    }
    puts_(j, "}");
}

int dcm_json_write(const dcm_file *f, const dcm_json_opts *opts, dcm_sink out, dcm_err *err)
{
    jctx j = {.f = f, .o = opts, .err = err};
    write_dataset(&j, dcm_first(f));
    int rc = j.rc;
    if (rc == 0)
        rc = out.write(out.ctx, j.out.p, j.out.n);
    free(j.out.p);
    if (rc < 0 && err && !err->msg[0])
        dcm_fail(err, rc, 0, "JSON output failed: %s", dcm_strerror(rc));
    return rc;
}

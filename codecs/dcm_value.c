/* dcm_value.c — typed access to element values: numbers in either byte
 * order, trimmed strings, UTF-8 through the Specific Character Set, and the
 * resolution of the dictionary's ambiguous VRs. */
#include <math.h>
#include "codecs/dcm_private.h"

/* Nearest data set (item, or top level = -1) that holds node i. */
static int32_t enclosing_item(const dcm_file *f, int32_t i)
{
    if (i < 0)
        return -1;
    int32_t p = f->nodes[i].parent;
    while (p >= 0 && f->nodes[p].tag != DCM_TAG_ITEM)
        p = f->nodes[p].parent;
    return p;
}

/* Look tag up in the data set holding node i, then in its ancestors. */
static int32_t find_in_scope(const dcm_file *f, int32_t i, uint32_t tag)
{
    for (int32_t item = enclosing_item(f, i);; item = enclosing_item(f, item)) {
        int32_t hit = dcm_find(f, item, tag);
        if (hit >= 0 || item < 0)
            return hit;
    }
}

/* e must be one of f's nodes; anything else is scoped at top level. */
static int32_t index_of(const dcm_file *f, const dcm_elem *e)
{
    if (e < f->nodes || e >= f->nodes + f->n)
        return -1;
    return (int32_t)(e - f->nodes);
}

static long scoped_uint(const dcm_file *f, const dcm_elem *e, uint32_t tag, long dflt)
{
    int32_t i = find_in_scope(f, index_of(f, e), tag);
    uint32_t v;
    if (i < 0 || dcm_get_u32(f, &f->nodes[i], 0, &v) < 0)
        return dflt;
    return (long)v;
}

dcm_vr dcm_effective_vr(const dcm_file *f, const dcm_elem *e)
{
    dcm_vr vr = (dcm_vr)e->vr;
    switch (vr) {
    case DCM_VR_US_SS: {
        long pr = scoped_uint(f, e, DCM_TAG(0x0028, 0x0103), 0);
        return pr == 0 ? DCM_VR_US : DCM_VR_SS;
    }
    case DCM_VR_OB_OW:
        if (e->flags & DCM_F_ENCAPS)
            return DCM_VR_OB;
        if (!f->ts->explicit_vr)
            return DCM_VR_OW;
        if (e->tag == DCM_TAG_PIXEL_DATA)
            return scoped_uint(f, e, DCM_TAG(0x0028, 0x0100), 16) > 8 ? DCM_VR_OW : DCM_VR_OB;
        return scoped_uint(f, e, DCM_TAG(0x5400, 0x1004), 16) > 8 ? DCM_VR_OW : DCM_VR_OB;
    case DCM_VR_US_OW:
    case DCM_VR_US_SS_OW:
        return DCM_VR_OW;
    default:
        return vr;
    }
}

size_t dcm_value_count(const dcm_file *f, const dcm_elem *e)
{
    (void)f;
    const dcm_vr_info *vi = dcm_vr_info_of((dcm_vr)e->vr);
    if (!e->value || e->value_len == 0)
        return 0;
    if (vi->klass == DCM_VRC_NUMBER)
        return e->value_len / (e->vr == DCM_VR_AT ? 4 : vi->word);
    if (vi->klass == DCM_VRC_TEXT) {
        size_t n = 1;
        for (size_t i = 0; i < e->value_len; i++)
            n += e->value[i] == '\\';
        return n;
    }
    return 1;
}

/* Bounds of text value number idx (-1: whole), trimmed as PS3.5 §6.2
 * says for the VR: trailing spaces/NULs always, leading spaces except
 * for text VRs where they are significant. */
static int text_span(const dcm_elem *e, int idx, size_t *from, size_t *to)
{
    size_t a = 0, b = e->value_len;
    if (idx >= 0) {
        int k = 0;
        for (a = 0; k < idx && a < e->value_len; a++)
            if (e->value[a] == '\\')
                k++;
        if (k < idx)
            return DCM_ENOTFOUND;
        for (b = a; b < e->value_len && e->value[b] != '\\'; b++)
            ;
    }
    while (b > a && (e->value[b - 1] == ' ' || e->value[b - 1] == '\0'))
        b--;
    const dcm_vr_info *vi = dcm_vr_info_of((dcm_vr)e->vr);
    if (vi->klass == DCM_VRC_TEXT && !vi->charset)
        while (a < b && e->value[a] == ' ')
            a++;
    *from = a;
    *to = b;
    return 0;
}

int dcm_get_str(const dcm_file *f, const dcm_elem *e, int idx, char *buf, size_t n)
{
    (void)f;
    if (n == 0)
        return DCM_EBADLEN;
    buf[0] = '\0';
    if (!e->value)
        return e->vr == DCM_VR_SQ ? DCM_EVALUE : 0;
    size_t a, b;
    int rc = text_span(e, idx, &a, &b);
    if (rc < 0)
        return rc;
    size_t len = b - a < n - 1 ? b - a : n - 1;
    memcpy(buf, e->value + a, len);
    buf[len] = '\0';
    return (int)len;
}

int dcm_top_str(const dcm_file *f, uint32_t tag, char *buf, size_t n)
{
    int32_t i = dcm_find(f, -1, tag);
    if (i < 0) {
        if (n)
            buf[0] = '\0';
        return DCM_ENOTFOUND;
    }
    return dcm_get_str(f, &f->nodes[i], -1, buf, n);
}

bool dcm_uid_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DCM_UID_MAX || s[0] == '.' || s[n - 1] == '.' || strspn(s, "0123456789.") != n)
        return false;
    return !strstr(s, "..");
}

int dcm_top_uid(const dcm_file *f, uint32_t tag, char *out)
{
    char buf[DCM_UID_MAX + 2]; /* one more than a UID: a longer value shows */
    int  n = dcm_top_str(f, tag, buf, sizeof buf);
    out[0] = '\0';
    if (n == DCM_ENOTFOUND || n == 0)
        return DCM_ENOTFOUND;
    if (n < 0 || (size_t)n != strlen(buf) || !dcm_uid_valid(buf))
        return DCM_EVALUE;
    memcpy(out, buf, (size_t)n + 1);
    return 0;
}

const char *dcm_uids_why(const dcm_file *f, char *sop, char *study, char *series)
{
    static const struct {
        uint32_t    tag;
        const char *missing, *invalid;
    } ids[3] = {
        {DCM_TAG(0x0008, 0x0018), "missing SOP Instance UID (0008,0018)",
         "SOP Instance UID (0008,0018) is not a valid UID (digits and dots, at most 64: PS3.5 9.1)"},
        {DCM_TAG(0x0020, 0x000D), "missing Study Instance UID (0020,000D)",
         "Study Instance UID (0020,000D) is not a valid UID (digits and dots, at most 64: PS3.5 9.1)"},
        {DCM_TAG(0x0020, 0x000E), "missing Series Instance UID (0020,000E)",
         "Series Instance UID (0020,000E) is not a valid UID (digits and dots, at most 64: PS3.5 9.1)"},
    };
    char *out[3] = {sop, study, series};
    for (int i = 0; i < 3; i++) {
        int rc = dcm_top_uid(f, ids[i].tag, out[i]);
        if (rc < 0)
            return rc == DCM_ENOTFOUND ? ids[i].missing : ids[i].invalid;
    }
    return NULL;
}

static int binary_number(const dcm_elem *e, dcm_vr vr, size_t i, double *d, uint64_t *u, bool *is_signed)
{
    const dcm_vr_info *vi = dcm_vr_info_of(vr);
    size_t w = vi->word;
    if (vr == DCM_VR_AT)
        w = 4;
    if (w == 0 || e->value_len / w <= i)
        return DCM_ENOTFOUND;
    const uint8_t *p = e->value + i * w;
    bool be = dcm_is_big_endian_node(e);
    *is_signed = false;
    switch (vr) {
    case DCM_VR_US: *u = dcm_rd16(p, be); *d = (double)*u; return 0;
    case DCM_VR_UL: *u = dcm_rd32(p, be); *d = (double)*u; return 0;
    case DCM_VR_UV: *u = dcm_rd64(p, be); *d = (double)*u; return 0;
    case DCM_VR_AT: *u = (uint64_t)dcm_rd16(p, be) << 16 | dcm_rd16(p + 2, be); *d = (double)*u; return 0;
    case DCM_VR_SS: *d = (int16_t)dcm_rd16(p, be); break;
    case DCM_VR_SL: *d = (int32_t)dcm_rd32(p, be); break;
    case DCM_VR_SV: *d = (double)(int64_t)dcm_rd64(p, be); break;
    case DCM_VR_FL: { uint32_t b = dcm_rd32(p, be); float fl; memcpy(&fl, &b, 4); *d = fl; break; }
    case DCM_VR_FD: { uint64_t b = dcm_rd64(p, be); double db; memcpy(&db, &b, 8); *d = db; break; }
    default: return DCM_EVALUE;
    }
    *is_signed = true;
    /* NaN, infinities and huge floats have no integer value (converting them is UB). */
    *u = isfinite(*d) && *d > -9.2e18 && *d < 9.2e18 ? (uint64_t)(int64_t)*d : 0;
    return 0;
}

int dcm_get_f64(const dcm_file *f, const dcm_elem *e, size_t i, double *out)
{
    return dcm_get_f64_as(f, e, dcm_effective_vr(f, e), i, out);
}

int dcm_get_f64_as(const dcm_file *f, const dcm_elem *e, dcm_vr vr, size_t i, double *out)
{
    if (!e->value)
        return DCM_ENOTFOUND;
    if (vr == DCM_VR_DS || vr == DCM_VR_IS) {
        char buf[72];
        if (dcm_get_str(f, e, (int)i, buf, sizeof buf) <= 0)
            return DCM_ENOTFOUND;
        char *end;
        double v = strtod(buf, &end);
        while (*end == ' ')
            end++;
        if (*end || !isfinite(v))
            return DCM_EVALUE;
        *out = v;
        return 0;
    }
    uint64_t u;
    bool s;
    return binary_number(e, vr, i, out, &u, &s);
}

int dcm_get_u32(const dcm_file *f, const dcm_elem *e, size_t i, uint32_t *out)
{
    double d;
    int rc = dcm_get_f64(f, e, i, &d);
    if (rc < 0)
        return rc;
    if (!isfinite(d) || d < (double)INT32_MIN || d > (double)UINT32_MAX)
        return DCM_EVALUE;
    *out = d < 0 ? (uint32_t)(int32_t)d : (uint32_t)d;
    return 0;
}

const uint8_t *dcm_charset_for(const dcm_file *f, const dcm_elem *e, size_t *len)
{
    int32_t i = find_in_scope(f, index_of(f, e), DCM_TAG_SPECIFIC_CHARSET);
    if (i < 0 || !f->nodes[i].value) {
        *len = 0;
        return (const uint8_t *)"";
    }
    *len = f->nodes[i].value_len;
    return f->nodes[i].value;
}

int dcm_get_utf8(const dcm_file *f, const dcm_elem *e, char **out, size_t *outlen, dcm_err *err)
{
    return dcm_get_utf8_as(f, e, dcm_effective_vr(f, e), out, outlen, err);
}

int dcm_get_utf8_as(const dcm_file *f, const dcm_elem *e, dcm_vr vr, char **out, size_t *outlen, dcm_err *err)
{
    size_t cslen;
    const uint8_t *cs = dcm_charset_for(f, e, &cslen);
    size_t len = e->value ? e->value_len : 0;
    if (!dcm_vr_info_of(vr)->charset)
        cslen = 0; /* default repertoire VRs ignore (0008,0005) */
    return dcm_charset_to_utf8((const char *)cs, cslen, vr, e->value ? e->value : (const uint8_t *)"",
                               len, out, outlen, err);
}

/* --- growing buffer sink --------------------------------------------- */

int dcm_buf_put(dcm_buf *b, const void *p, size_t n)
{
    if (n > SIZE_MAX - b->n)
        return DCM_ENOMEM;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q)
            return DCM_ENOMEM;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

static int buf_write(void *ctx, const void *p, size_t n) { return dcm_buf_put(ctx, p, n); }

dcm_sink dcm_sink_buf(dcm_buf *b) { return (dcm_sink){buf_write, b}; }

static int stdio_write(void *ctx, const void *p, size_t n)
{
    return fwrite(p, 1, n, ctx) == n ? 0 : DCM_EIO;
}

dcm_sink dcm_sink_stdio(FILE *fp) { return (dcm_sink){stdio_write, fp}; }

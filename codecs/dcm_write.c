/* dcm_write.c — Part 10 writer (PS3.10 §7.1, PS3.5 §7).
 *
 * Elements whose encoding does not change are copied byte for byte (a
 * read→write round trip keeps defined/undefined lengths as they were);
 * anything re-encoded — another byte order or VR convention, an odd length
 * to pad — is written afresh, sequences and items with undefined length so
 * no pre-pass over nested lengths is needed.  Output streams through a
 * sink, deflated when the target syntax says so. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include "codecs/dcm_private.h"

typedef struct wctx {
    const dcm_file *f;
    const dcm_ts   *ts;       /* target */
    dcm_sink        out;
    dcm_err        *err;
    bool            explicit_vr, big_endian; /* target */
    bool            src_explicit, src_be;    /* source data set */
    bool            same_encoding;
    int             rc;
} wctx;

static void emit(wctx *w, const void *p, size_t n)
{
    if (w->rc == 0 && n)
        w->rc = w->out.write(w->out.ctx, p, n);
}

static void wr16(uint8_t *p, uint16_t v, bool be)
{
    p[be ? 0 : 1] = (uint8_t)(v >> 8);
    p[be ? 1 : 0] = (uint8_t)v;
}
static void wr32(uint8_t *p, uint32_t v, bool be)
{
    wr16(p + (be ? 0 : 2), (uint16_t)(v >> 16), be);
    wr16(p + (be ? 2 : 0), (uint16_t)v, be);
}

static void emit_tag_len(wctx *w, uint32_t tag, uint32_t len, bool be)
{
    uint8_t h[8];
    wr16(h, DCM_GROUP(tag), be);
    wr16(h + 2, DCM_ELEM(tag), be);
    wr32(h + 4, len, be);
    emit(w, h, 8);
}

static void emit_header(wctx *w, uint32_t tag, dcm_vr vr, uint32_t len, bool explicit_vr, bool be)
{
    uint8_t h[12];
    wr16(h, DCM_GROUP(tag), be);
    wr16(h + 2, DCM_ELEM(tag), be);
    if (!explicit_vr) {
        wr32(h + 4, len, be);
        emit(w, h, 8);
        return;
    }
    const dcm_vr_info *vi = dcm_vr_info_of(vr);
    h[4] = (uint8_t)vi->name[0];
    h[5] = (uint8_t)vi->name[1];
    if (vi->long_header) {
        h[6] = h[7] = 0;
        wr32(h + 8, len, be);
        emit(w, h, 12);
        return;
    }
    if (len > 0xFFFF) {
        w->rc = dcm_fail(w->err, DCM_EBADLEN, 0,
                         "element (%04X,%04X): %u bytes do not fit VR %s in explicit VR",
                         DCM_GROUP(tag), DCM_ELEM(tag), len, vi->name);
        return;
    }
    wr16(h + 6, (uint16_t)len, be);
    emit(w, h, 8);
}

/* Value bytes, swapped per word when the byte order changes. */
static void emit_value(wctx *w, const uint8_t *v, size_t n, dcm_vr vr, bool src_be, bool dst_be)
{
    size_t word = dcm_vr_info_of(vr)->word;
    if (vr == DCM_VR_AT)
        word = 2;
    if (src_be == dst_be || word < 2) {
        emit(w, v, n);
        return;
    }
    uint8_t buf[4096];
    size_t whole = n - n % word;
    for (size_t off = 0; off < whole && w->rc == 0;) {
        size_t chunk = whole - off < sizeof buf ? whole - off : sizeof buf;
        chunk -= chunk % word;
        for (size_t i = 0; i < chunk; i += word)
            for (size_t k = 0; k < word; k++)
                buf[i + k] = v[off + i + word - 1 - k];
        emit(w, buf, chunk);
        off += chunk;
    }
    emit(w, v + whole, n - whole);
}

static bool subtree_needs_reencoding(const dcm_file *f, int32_t i)
{
    const dcm_elem *e = &f->nodes[i];
    if (e->value && (e->value_len & 1) && !(e->flags & DCM_F_ENCAPS) && e->tag != DCM_TAG_ITEM)
        return true;
    if (e->vr == DCM_VR_SQ && (e->flags & DCM_F_VR_GUESSED))
        return true; /* UN re-read as a sequence: write it as the SQ it is */
    for (int32_t c = e->child; c >= 0; c = f->nodes[c].next)
        if (subtree_needs_reencoding(f, c))
            return true;
    return false;
}

static size_t header_len(const dcm_file *f, const dcm_elem *e)
{
    /* Recover the header size from where the value starts. */
    if (e->value)
        return (size_t)(e->value - f->buf) - e->offset;
    if (e->child >= 0)
        return f->nodes[e->child].offset - e->offset;
    /* An empty sequence or item: 8 bytes, or 12 for an explicit VR long header. */
    if (e->tag == DCM_TAG_ITEM || (e->flags & DCM_F_IMPLICIT))
        return 8;
    return dcm_vr_info_of((dcm_vr)e->vr)->long_header ? 12 : 8;
}

static void write_nodes(wctx *w, int32_t first, bool top);

static void write_encoded(wctx *w, int32_t i)
{
    const dcm_file *f = w->f;
    const dcm_elem *e = &f->nodes[i];
    dcm_vr vr = dcm_effective_vr(f, e);
    bool be = w->big_endian;
    if (vr == DCM_VR_SQ) {
        /* CP-246: the items of a sequence sent as UN are implicit VR little
         * endian whatever the data set is: never copy them byte for byte. */
        bool saved = w->same_encoding;
        if ((e->flags & DCM_F_VR_GUESSED) && w->src_explicit)
            w->same_encoding = false;
        emit_header(w, e->tag, DCM_VR_SQ, DCM_UNDEFINED_LENGTH, w->explicit_vr, be);
        for (int32_t it = e->child; it >= 0 && w->rc == 0; it = f->nodes[it].next) {
            emit_tag_len(w, DCM_TAG_ITEM, DCM_UNDEFINED_LENGTH, be);
            write_nodes(w, f->nodes[it].child, false);
            emit_tag_len(w, DCM_TAG_ITEM_DELIM, 0, be);
        }
        emit_tag_len(w, DCM_TAG_SEQ_DELIM, 0, be);
        w->same_encoding = saved;
        return;
    }
    if (e->flags & DCM_F_ENCAPS) {
        /* PS3.5 A.4: fragments are little endian items whatever the syntax. */
        emit_header(w, e->tag, DCM_VR_OB, DCM_UNDEFINED_LENGTH, w->explicit_vr, false);
        for (int32_t fr = e->child; fr >= 0 && w->rc == 0; fr = f->nodes[fr].next) {
            emit_tag_len(w, DCM_TAG_ITEM, (uint32_t)f->nodes[fr].value_len, false);
            emit(w, f->nodes[fr].value, f->nodes[fr].value_len);
        }
        emit_tag_len(w, DCM_TAG_SEQ_DELIM, 0, false);
        return;
    }
    size_t n = e->value ? e->value_len : 0;
    bool pad = n & 1;
    emit_header(w, e->tag, vr, (uint32_t)(n + pad), w->explicit_vr, be);
    emit_value(w, e->value, n, vr, dcm_is_big_endian_node(e), be);
    if (pad) {
        char c = dcm_vr_info_of(vr)->pad;
        emit(w, &c, 1);
    }
}

static void write_nodes(wctx *w, int32_t first, bool top)
{
    const dcm_file *f = w->f;
    for (int32_t i = first; i >= 0 && w->rc == 0; i = f->nodes[i].next) {
        const dcm_elem *e = &f->nodes[i];
        if (e->flags & DCM_F_META)
            continue;
        if (top && DCM_ELEM(e->tag) == 0 && !w->same_encoding)
            continue; /* group lengths are retired and would be wrong re-encoded */
        if (w->same_encoding && !subtree_needs_reencoding(f, i)) {
            size_t end = e->value ? (size_t)(e->value - f->buf) + e->value_len
                                  : e->offset + header_len(f, e) + e->value_len;
            emit(w, f->buf + e->offset, end - e->offset);
            continue;
        }
        write_encoded(w, i);
    }
}

/* --- edits: merged into the top level in tag order -------------------- */

static const dcm_edit *edit_for(const dcm_write_opts *o, uint32_t tag)
{
    for (size_t k = 0; o && k < o->n_edits; k++)
        if (o->edits[k].tag == tag)
            return &o->edits[k];
    return NULL;
}

static void write_edit(wctx *w, const dcm_edit *ed)
{
    if (ed->remove)
        return;
    bool pad = ed->len & 1;
    emit_header(w, ed->tag, ed->vr, (uint32_t)(ed->len + pad), w->explicit_vr, w->big_endian);
    emit_value(w, ed->value, ed->len, ed->vr, false, w->big_endian);
    if (pad) {
        char c = dcm_vr_info_of(ed->vr)->pad;
        emit(w, &c, 1);
    }
}

static void write_top(wctx *w, const dcm_write_opts *o)
{
    const dcm_file *f = w->f;
    size_t n_edits = o ? o->n_edits : 0;
    /* Edits whose tag is not in the data set are inserted in order. */
    uint32_t done_upto = 0;
    for (int32_t i = dcm_first(f); i >= 0 && w->rc == 0; i = f->nodes[i].next) {
        const dcm_elem *e = &f->nodes[i];
        if (e->flags & DCM_F_META)
            continue;
        for (size_t k = 0; k < n_edits; k++) {
            const dcm_edit *ed = &o->edits[k];
            if (ed->tag > done_upto && ed->tag < e->tag && dcm_find(f, -1, ed->tag) < 0)
                write_edit(w, ed);
        }
        done_upto = e->tag;
        if (o && o->pixel_writer && e->tag == DCM_TAG_PIXEL_DATA) {
            /* A pixel codec supplies the element (cdc_transcode). */
            if (w->rc == 0)
                w->rc = o->pixel_writer(o->pixel_ctx, w->out, w->ts, w->err);
            continue;
        }
        const dcm_edit *ed = edit_for(o, e->tag);
        if (ed) {
            write_edit(w, ed);
            continue;
        }
        int32_t saved = f->nodes[i].next;
        ((dcm_elem *)e)->next = -1; /* write this one node (restored below) */
        write_nodes(w, i, true);
        ((dcm_elem *)e)->next = saved;
    }
    for (size_t k = 0; k < n_edits; k++) {
        const dcm_edit *ed = &o->edits[k];
        if (ed->tag > done_upto && dcm_find(f, -1, ed->tag) < 0)
            write_edit(w, ed);
    }
}

/* --- meta group --------------------------------------------------------- */

/* The data set's SOP Class/Instance UID wins over a stale meta copy (as
 * dcmconv does); the meta one serves when the data set lacks it. */
static int meta_string(const dcm_file *f, uint32_t meta_tag, uint32_t ds_tag, char *buf, size_t n)
{
    if (dcm_top_str(f, ds_tag, buf, n) > 0)
        return 0;
    return dcm_top_str(f, meta_tag, buf, n) > 0 ? 0 : DCM_ENOTFOUND;
}

static int put_meta_elem(dcm_buf *b, uint32_t tag, dcm_vr vr, const void *v, size_t n)
{
    uint8_t h[12];
    const dcm_vr_info *vi = dcm_vr_info_of(vr);
    size_t padded = n + (n & 1);
    wr16(h, DCM_GROUP(tag), false);
    wr16(h + 2, DCM_ELEM(tag), false);
    h[4] = (uint8_t)vi->name[0];
    h[5] = (uint8_t)vi->name[1];
    size_t hl = 8;
    if (vi->long_header) {
        h[6] = h[7] = 0;
        wr32(h + 8, (uint32_t)padded, false);
        hl = 12;
    } else {
        wr16(h + 6, (uint16_t)padded, false);
    }
    int rc = dcm_buf_put(b, h, hl);
    if (rc == 0)
        rc = dcm_buf_put(b, v, n);
    if (rc == 0 && (n & 1))
        rc = dcm_buf_put(b, &vi->pad, 1);
    return rc;
}

static int build_meta(const dcm_file *f, const dcm_ts *ts, dcm_buf *meta, dcm_err *err)
{
    char sop_class[72], sop_inst[72];
    if (meta_string(f, DCM_TAG(0x0002, 0x0002), DCM_TAG(0x0008, 0x0016), sop_class, sizeof sop_class) < 0 ||
        meta_string(f, DCM_TAG(0x0002, 0x0003), DCM_TAG(0x0008, 0x0018), sop_inst, sizeof sop_inst) < 0)
        return dcm_fail(err, DCM_EMETA, 0, "no SOP Class/Instance UID to put in the file meta information");
    dcm_buf body = {0};
    static const uint8_t version[2] = {0, 1};
    int rc = put_meta_elem(&body, DCM_TAG(0x0002, 0x0001), DCM_VR_OB, version, 2);
    if (!rc) rc = put_meta_elem(&body, DCM_TAG(0x0002, 0x0002), DCM_VR_UI, sop_class, strlen(sop_class));
    if (!rc) rc = put_meta_elem(&body, DCM_TAG(0x0002, 0x0003), DCM_VR_UI, sop_inst, strlen(sop_inst));
    if (!rc) rc = put_meta_elem(&body, DCM_TAG(0x0002, 0x0010), DCM_VR_UI, ts->uid, strlen(ts->uid));
    if (!rc) rc = put_meta_elem(&body, DCM_TAG(0x0002, 0x0012), DCM_VR_UI, DXHUB_IMPLEMENTATION_CLASS_UID,
                                strlen(DXHUB_IMPLEMENTATION_CLASS_UID));
    if (!rc) rc = put_meta_elem(&body, DCM_TAG(0x0002, 0x0013), DCM_VR_SH, DXHUB_IMPLEMENTATION_VERSION,
                                strlen(DXHUB_IMPLEMENTATION_VERSION));
    /* Keep the source's other meta elements (source AE, private info). */
    for (int32_t i = dcm_first(f); !rc && i >= 0; i = f->nodes[i].next) {
        const dcm_elem *e = &f->nodes[i];
        if (!(e->flags & DCM_F_META) || DCM_ELEM(e->tag) <= 0x0003 || e->tag == DCM_TAG(0x0002, 0x0010) ||
            e->tag == DCM_TAG(0x0002, 0x0012) || e->tag == DCM_TAG(0x0002, 0x0013))
            continue;
        rc = put_meta_elem(&body, e->tag, (dcm_vr)e->vr, e->value, e->value_len);
    }
    uint32_t glen = (uint32_t)body.n;
    uint8_t gl[4];
    wr32(gl, glen, false);
    if (!rc) rc = put_meta_elem(meta, DCM_TAG(0x0002, 0x0000), DCM_VR_UL, gl, 4);
    if (!rc) rc = dcm_buf_put(meta, body.p, body.n);
    free(body.p);
    return rc < 0 ? dcm_fail(err, rc, 0, "building file meta information: %s", dcm_strerror(rc)) : 0;
}

/* --- deflate sink --------------------------------------------------------- */

typedef struct zsink {
    z_stream z;
    dcm_sink down;
    uint8_t  buf[65536];
} zsink;

static int zsink_pump(zsink *zs, int flush)
{
    int zr;
    do {
        zs->z.next_out = zs->buf;
        zs->z.avail_out = sizeof zs->buf;
        zr = deflate(&zs->z, flush);
        if (zr == Z_STREAM_ERROR)
            return DCM_EIO;
        size_t have = sizeof zs->buf - zs->z.avail_out;
        if (have) {
            int rc = zs->down.write(zs->down.ctx, zs->buf, have);
            if (rc < 0)
                return rc;
        }
    } while (zs->z.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
    return 0;
}

static int zsink_write(void *ctx, const void *p, size_t n)
{
    zsink *zs = ctx;
    while (n) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        zs->z.next_in = (Bytef *)p;
        zs->z.avail_in = chunk;
        int rc = zsink_pump(zs, Z_NO_FLUSH);
        if (rc < 0)
            return rc;
        p = (const uint8_t *)p + chunk;
        n -= chunk;
    }
    return 0;
}

int dcm_write(const dcm_file *f, const dcm_write_opts *o, dcm_sink out, dcm_err *err)
{
    const dcm_ts *src = dcm_file_ts(f);
    const dcm_ts *ts = src;
    if (o && o->ts_uid) {
        ts = dcm_ts_find(o->ts_uid, strlen(o->ts_uid));
        if (!ts)
            return dcm_fail(err, DCM_ETS, 0, "unknown transfer syntax %s", o->ts_uid);
    }
    bool src_encaps = dcm_find(f, -1, DCM_TAG_PIXEL_DATA) >= 0 &&
                      (f->nodes[dcm_find(f, -1, DCM_TAG_PIXEL_DATA)].flags & DCM_F_ENCAPS);
    if (ts != src && (ts->encapsulated || src_encaps) && !(o && o->pixel_writer))
        return dcm_fail(err, DCM_ETS, 0, "cannot write %s pixel data as %s without a pixel codec",
                        src->name, ts->name);
    /* A DICOMDIR's records point at byte offsets in its own file: any
     * rewrite that changes sizes breaks them, so refuse rather than
     * produce a directory that no longer reads. */
    char sop_class[72];
    if (dcm_top_str(f, DCM_TAG(0x0008, 0x0016), sop_class, sizeof sop_class) > 0 &&
        !strcmp(sop_class, "1.2.840.10008.1.3.10"))
        return dcm_fail(err, DCM_ETS, 0, "a DICOMDIR cannot be rewritten: its record offsets would no longer hold");
    if (dcm_top_str(f, DCM_TAG(0x0002, 0x0002), sop_class, sizeof sop_class) > 0 &&
        !strcmp(sop_class, "1.2.840.10008.1.3.10"))
        return dcm_fail(err, DCM_ETS, 0, "a DICOMDIR cannot be rewritten: its record offsets would no longer hold");
    dcm_buf meta = {0};
    int rc = build_meta(f, ts, &meta, err);
    if (rc < 0)
        return rc;
    wctx w = {.f = f, .ts = ts, .out = out, .err = err, .explicit_vr = ts->explicit_vr, .big_endian = ts->big_endian};
    /* The source encoding as parsed (a meta/data mismatch was corrected then). */
    int32_t first_ds = -1;
    for (int32_t i = dcm_first(f); i >= 0; i = f->nodes[i].next)
        if (!(f->nodes[i].flags & DCM_F_META)) {
            first_ds = i;
            break;
        }
    w.src_be = src->big_endian;
    w.src_explicit = src->explicit_vr;
    if (first_ds >= 0) {
        const dcm_elem *e = &f->nodes[first_ds];
        const uint8_t *h = f->buf + e->offset;
        w.src_explicit = dcm_vr_from_chars(h[4], h[5]) != DCM_VR_NONE && !(e->flags & DCM_F_VR_GUESSED);
    }
    w.same_encoding = w.src_explicit == w.explicit_vr && w.src_be == w.big_endian;
    if (!(o && o->no_preamble)) {
        uint8_t pre[132] = {0};
        memcpy(pre + 128, "DICM", 4);
        emit(&w, pre, sizeof pre);
    }
    emit(&w, meta.p, meta.n);
    free(meta.p);
    zsink *zs = NULL;
    if (ts->deflated && w.rc == 0) {
        zs = calloc(1, sizeof *zs);
        if (!zs || deflateInit2(&zs->z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(zs);
            return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        }
        zs->down = out;
        w.out = (dcm_sink){zsink_write, zs};
    }
    write_top(&w, o);
    if (zs) {
        if (w.rc == 0)
            w.rc = zsink_pump(zs, Z_FINISH);
        deflateEnd(&zs->z);
        free(zs);
    }
    if (w.rc < 0 && err && !err->msg[0])
        dcm_fail(err, w.rc, 0, "writing failed: %s", dcm_strerror(w.rc));
    return w.rc;
}

/* A file sink with a small buffer: the writer emits many small headers,
 * and a 2 GiB value must stream, never sit whole in memory. */
typedef struct fdsink {
    int     fd;
    size_t  n;
    uint8_t buf[1 << 16];
} fdsink;

static int fd_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int fd_write(void *ctx, const void *p, size_t n)
{
    fdsink *s = ctx;
    if (s->n + n > sizeof s->buf) {
        int rc = fd_write_all(s->fd, s->buf, s->n);
        s->n = 0;
        if (rc < 0)
            return rc;
        if (n >= sizeof s->buf)
            return fd_write_all(s->fd, p, n);
    }
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    return 0;
}

int dcm_write_file(const dcm_file *f, const dcm_write_opts *o, const char *path, dcm_err *err)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    fdsink *s = malloc(sizeof *s);
    if (!tmp || !s) {
        free(tmp);
        free(s);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    snprintf(tmp, pl + 16, "%s.tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        free(s);
        return dcm_fail(err, -e, 0, "cannot create output: %s", strerror(e));
    }
    s->fd = fd;
    s->n = 0;
    int rc = dcm_write(f, o, (dcm_sink){fd_write, s}, err);
    if (rc == 0)
        rc = fd_write_all(fd, s->buf, s->n);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        if (err && !err->msg[0])
            dcm_fail(err, rc, 0, "writing output failed: %s", strerror(-rc));
    }
    free(tmp);
    free(s);
    return rc;
}

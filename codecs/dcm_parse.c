/* dcm_parse.c — DICOM Part 10 reader (PS3.10 §7, PS3.5 §7).
 *
 * Builds a flat tree of dcm_elem nodes whose values point into the input
 * (zero-copy).  Every length read from the input is checked against the
 * bytes left before it is used; nesting is bounded by max_depth.  Real-world
 * deviations are handled as DCMTK and pydicom handle them: missing preamble
 * or meta, meta without a transfer syntax, UN with undefined length (CP-246),
 * undefined-length elements in implicit VR, odd value lengths, stray
 * delimiters. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "codecs/dcm_private.h"

typedef struct enc {
    bool explicit_vr;
    bool big_endian;
} enc;

typedef struct parser {
    dcm_file      *f;
    const uint8_t *b;
    size_t         len;
    dcm_err       *err;
    unsigned       max_depth;
    uint32_t       stop_at;
    bool           stopped;
} parser;

static int parse_dataset(parser *p, size_t *pos, size_t end, int32_t parent,
                         unsigned depth, enc e, bool until_delim);

static const char *tag_str(uint32_t tag, char buf[12])
{
    snprintf(buf, 12, "(%04X,%04X)", DCM_GROUP(tag), DCM_ELEM(tag));
    return buf;
}

/* Append a node as the last child of parent (*last tracks that child). */
static int32_t add_node(parser *p, int32_t parent, int32_t *last, const dcm_elem *proto)
{
    dcm_file *f = p->f;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        dcm_elem *nodes = realloc(f->nodes, cap * sizeof *nodes);
        if (!nodes)
            return -1;
        f->nodes = nodes;
        f->cap = cap;
    }
    int32_t i = (int32_t)f->n++;
    f->nodes[i] = *proto;
    f->nodes[i].parent = parent;
    f->nodes[i].child = -1;
    f->nodes[i].next = -1;
    if (*last >= 0)
        f->nodes[*last].next = i;
    else if (parent >= 0)
        f->nodes[parent].child = i;
    *last = i;
    return i;
}

static int nomem(parser *p, size_t at)
{
    return dcm_fail(p->err, DCM_ENOMEM, at, "offset %zu: out of memory", at);
}

/* Items of a sequence: (FFFE,E000) items until the value ends (defined
 * length) or a Sequence Delimitation Item (undefined length). */
static int parse_sequence(parser *p, size_t *pos, size_t end, bool undefined,
                          int32_t sq, unsigned depth, enc e)
{
    int32_t last = -1;
    char t[12];
    while (*pos < end) {
        size_t at = *pos;
        if (end - at < 8)
            return dcm_fail(p->err, DCM_ETRUNC, at,
                            "offset %zu: item header needs 8 bytes, %zu left", at, end - at);
        uint32_t tag = (uint32_t)dcm_rd16(p->b + at, e.big_endian) << 16 | dcm_rd16(p->b + at + 2, e.big_endian);
        uint32_t len = dcm_rd32(p->b + at + 4, e.big_endian);
        if (tag == DCM_TAG_SEQ_DELIM) {
            *pos = at + 8;
            if (undefined)
                return 0;
            continue; /* stray delimiter inside a defined-length sequence: skip, as DCMTK does */
        }
        if (tag == DCM_TAG_ITEM_DELIM && len == 0) {
            *pos = at + 8; /* stray item delimiter between items: skip */
            continue;
        }
        if (tag != DCM_TAG_ITEM)
            return dcm_fail(p->err, DCM_EORDER, at,
                            "offset %zu: expected an item in sequence %s, found tag %s", at,
                            tag_str(p->f->nodes[sq].tag, (char[12]){0}), tag_str(tag, t));
        dcm_elem proto = {.tag = DCM_TAG_ITEM, .vr = DCM_VR_NONE, .length = len,
                          .offset = at, .depth = (uint16_t)(depth + 1)};
        if (len == DCM_UNDEFINED_LENGTH)
            proto.flags |= DCM_F_UNDEF_LEN;
        else if (len > end - at - 8)
            return dcm_fail(p->err, DCM_ETRUNC, at,
                            "offset %zu: item length %u exceeds the %zu bytes left", at, len, end - at - 8);
        int32_t item = add_node(p, sq, &last, &proto);
        if (item < 0)
            return nomem(p, at);
        size_t ipos = at + 8;
        size_t iend = len == DCM_UNDEFINED_LENGTH ? end : at + 8 + len;
        int rc = parse_dataset(p, &ipos, iend, item, depth + 2, e, len == DCM_UNDEFINED_LENGTH);
        if (rc < 0)
            return rc;
        p->f->nodes[item].value_len = ipos - (at + 8);
        *pos = ipos;
    }
    if (undefined)
        return dcm_fail(p->err, DCM_ETRUNC, *pos,
                        "offset %zu: sequence %s has no delimitation item before the data ends",
                        *pos, tag_str(p->f->nodes[sq].tag, t));
    return 0;
}

/* Encapsulated pixel data (PS3.5 A.4): items (offset table, then
 * fragments) until the Sequence Delimitation Item. */
static int parse_fragments(parser *p, size_t *pos, size_t end, int32_t px, unsigned depth, enc e)
{
    int32_t last = -1;
    while (*pos < end) {
        size_t at = *pos;
        if (end - at < 8)
            return dcm_fail(p->err, DCM_ETRUNC, at,
                            "offset %zu: fragment header needs 8 bytes, %zu left", at, end - at);
        uint32_t tag = (uint32_t)dcm_rd16(p->b + at, e.big_endian) << 16 | dcm_rd16(p->b + at + 2, e.big_endian);
        uint32_t len = dcm_rd32(p->b + at + 4, e.big_endian);
        if (tag == DCM_TAG_SEQ_DELIM) {
            *pos = at + 8;
            return 0;
        }
        if (tag != DCM_TAG_ITEM)
            return dcm_fail(p->err, DCM_EORDER, at,
                            "offset %zu: expected a pixel data fragment item, found another tag", at);
        if (len == DCM_UNDEFINED_LENGTH || len > end - at - 8)
            return dcm_fail(p->err, DCM_ETRUNC, at,
                            "offset %zu: fragment length %u exceeds the %zu bytes left", at, len, end - at - 8);
        dcm_elem proto = {.tag = DCM_TAG_ITEM, .vr = DCM_VR_NONE, .length = len, .offset = at,
                          .depth = (uint16_t)(depth + 1), .value = p->b + at + 8, .value_len = len};
        if (add_node(p, px, &last, &proto) < 0)
            return nomem(p, at);
        *pos = at + 8 + len;
    }
    return dcm_fail(p->err, DCM_ETRUNC, *pos,
                    "offset %zu: encapsulated pixel data has no sequence delimiter before the data ends", *pos);
}

/* Read one element header at at.  Sets *vr, *vl, *hdr. */
static int read_header(parser *p, size_t at, size_t end, uint32_t tag, enc e,
                       dcm_vr *vr, uint32_t *vl, size_t *hdr, uint8_t *flags)
{
    char t[12];
    const uint8_t *h = p->b + at;
    if (!e.explicit_vr || DCM_GROUP(tag) == 0xFFFE) {
        *vl = dcm_rd32(h + 4, e.big_endian);
        *hdr = 8;
        const dcm_dict_entry *d = dcm_dict_find(tag);
        *vr = d ? (dcm_vr)d->vr : DCM_VR_UN;
        if (!d)
            *flags |= DCM_F_VR_GUESSED;
        return 0;
    }
    *vr = dcm_vr_from_chars(h[4], h[5]);
    if (*vr == DCM_VR_NONE) {
        /* Not a VR.  DCMTK then reads the element as implicit VR
         * (4-byte length) with the dictionary's VR; so do we. */
        const dcm_dict_entry *d = dcm_dict_find(tag);
        if (end - at < 8)
            return dcm_fail(p->err, DCM_ETRUNC, at, "offset %zu: element header truncated", at);
        uint32_t implicit_len = dcm_rd32(h + 4, e.big_endian);
        if (implicit_len != DCM_UNDEFINED_LENGTH && implicit_len > end - at - 8)
            return dcm_fail(p->err, DCM_EBADVR, at,
                            "offset %zu: element %s has invalid VR bytes 0x%02X 0x%02X", at,
                            tag_str(tag, t), h[4], h[5]);
        *vr = d ? (dcm_vr)d->vr : DCM_VR_UN;
        *vl = implicit_len;
        *hdr = 8;
        *flags |= DCM_F_VR_GUESSED;
        return 0;
    }
    if (dcm_vr_info_of(*vr)->long_header) {
        if (end - at < 12)
            return dcm_fail(p->err, DCM_ETRUNC, at,
                            "offset %zu: element %s header needs 12 bytes, %zu left", at,
                            tag_str(tag, t), end - at);
        *vl = dcm_rd32(h + 8, e.big_endian);
        *hdr = 12;
    } else {
        *vl = dcm_rd16(h + 6, e.big_endian);
        *hdr = 8;
    }
    return 0;
}

/* A UN element with defined length that the dictionary says is a sequence:
 * pydicom and DCMTK re-read it as implicit VR little endian (PS3.5 §6.2.2).
 * Try it; on failure keep the bytes as UN. */
static void try_un_as_sequence(parser *p, int32_t node, unsigned depth)
{
    dcm_file *f = p->f;
    dcm_elem *el = &f->nodes[node];
    const dcm_dict_entry *d = dcm_dict_find(el->tag);
    if (!d || d->vr != DCM_VR_SQ || DCM_GROUP(el->tag) & 1)
        return;
    size_t saved_n = f->n;
    dcm_err scratch;
    dcm_err *saved_err = p->err;
    p->err = &scratch;
    size_t pos = (size_t)(el->value - p->b), end = pos + el->value_len;
    int rc = parse_sequence(p, &pos, end, false, node, depth, (enc){false, false});
    p->err = saved_err;
    el = &f->nodes[node];
    if (rc < 0) {
        f->n = saved_n;
        el->child = -1;
        return;
    }
    el->vr = DCM_VR_SQ;
    el->value = NULL;
    el->flags |= DCM_F_VR_GUESSED;
}

static int parse_dataset(parser *p, size_t *pos, size_t end, int32_t parent,
                         unsigned depth, enc e, bool until_delim)
{
    int32_t last = -1;
    char t[12];
    if (depth / 2 > p->max_depth)
        return dcm_fail(p->err, DCM_EDEPTH, *pos,
                        "offset %zu: sequences nested deeper than %u levels", *pos, p->max_depth);
    while (*pos < end) {
        size_t at = *pos;
        if (end - at < 8) {
            bool zeros = true;
            for (size_t k = at; k < end; k++)
                zeros &= p->b[k] == 0;
            if (depth == 0 && !until_delim && zeros) {
                /* A few zero bytes after the last element (padding some
                 * writers add): nothing is lost by ignoring them.  Anything
                 * else is a header cut short: the file is truncated. */
                *pos = end;
                return 0;
            }
            return dcm_fail(p->err, DCM_ETRUNC, at,
                            "offset %zu: element header needs 8 bytes, %zu left", at, end - at);
        }
        uint32_t tag = (uint32_t)dcm_rd16(p->b + at, e.big_endian) << 16 | dcm_rd16(p->b + at + 2, e.big_endian);
        if (tag == DCM_TAG_ITEM_DELIM) {
            *pos = at + 8;
            if (until_delim)
                return 0;
            continue; /* stray: skip */
        }
        if (tag == DCM_TAG_SEQ_DELIM) {
            *pos = at + 8;
            if (until_delim) /* item ended by its sequence's delimiter: PS3.5 violation DCMTK tolerates */
                return dcm_fail(p->err, DCM_EORDER, at,
                                "offset %zu: sequence delimiter inside an item", at);
            continue;
        }
        if (depth == 0 && p->stop_at && tag >= p->stop_at) {
            p->stopped = true;
            return 0;
        }
        if (tag == DCM_TAG_ITEM)
            return dcm_fail(p->err, DCM_EORDER, at, "offset %zu: item tag outside a sequence", at);
        dcm_vr vr;
        uint32_t vl;
        size_t hdr;
        uint8_t flags = (e.big_endian ? DCM_F_SWAPPED : 0) | (e.explicit_vr ? 0 : DCM_F_IMPLICIT);
        int rc = read_header(p, at, end, tag, e, &vr, &vl, &hdr, &flags);
        if (rc < 0)
            return rc;
        dcm_elem proto = {.tag = tag, .vr = (uint8_t)vr, .flags = flags, .depth = (uint16_t)depth,
                          .length = vl, .offset = at};
        size_t vstart = at + hdr;
        if (vl == DCM_UNDEFINED_LENGTH) {
            proto.flags |= DCM_F_UNDEF_LEN;
            bool encaps = tag == DCM_TAG_PIXEL_DATA ||
                          (vr != DCM_VR_SQ && vr != DCM_VR_UN && e.explicit_vr &&
                           dcm_vr_info_of(vr)->klass == DCM_VRC_BYTES);
            if (encaps) {
                proto.flags |= DCM_F_ENCAPS;
                proto.vr = DCM_VR_OB;
                proto.value = p->b + vstart; /* items and delimiter, as encoded */
                int32_t px = add_node(p, parent, &last, &proto);
                if (px < 0)
                    return nomem(p, at);
                *pos = vstart;
                if ((rc = parse_fragments(p, pos, end, px, depth, e)) < 0)
                    return rc;
                p->f->nodes[px].value_len = *pos - vstart;
                continue;
            }
            /* SQ, UN (CP-246: content is implicit VR LE), or an
             * undefined-length element in implicit VR: a sequence. */
            enc inner = e;
            if (vr == DCM_VR_UN) {
                inner = (enc){false, false};
                proto.flags |= DCM_F_VR_GUESSED;
            }
            proto.vr = DCM_VR_SQ;
            int32_t sq = add_node(p, parent, &last, &proto);
            if (sq < 0)
                return nomem(p, at);
            *pos = vstart;
            if ((rc = parse_sequence(p, pos, end, true, sq, depth, inner)) < 0)
                return rc;
            p->f->nodes[sq].value_len = *pos - vstart;
            continue;
        }
        if (vl > end - vstart)
            return dcm_fail(p->err, DCM_ETRUNC, at,
                            "offset %zu: element %s length %u exceeds the %zu bytes left",
                            at, tag_str(tag, t), vl, end - vstart);
        if (vr == DCM_VR_SQ) {
            int32_t sq = add_node(p, parent, &last, &proto);
            if (sq < 0)
                return nomem(p, at);
            size_t spos = vstart;
            if ((rc = parse_sequence(p, &spos, vstart + vl, false, sq, depth, e)) < 0)
                return rc;
            p->f->nodes[sq].value_len = vl;
            *pos = vstart + vl;
            continue;
        }
        proto.value = p->b + vstart;
        proto.value_len = vl;
        int32_t node = add_node(p, parent, &last, &proto);
        if (node < 0)
            return nomem(p, at);
        if (vr == DCM_VR_UN && vl > 0)
            try_un_as_sequence(p, node, depth);
        *pos = vstart + vl;
    }
    if (until_delim && depth > 0)
        return dcm_fail(p->err, DCM_ETRUNC, *pos,
                        "offset %zu: item has no delimitation item before the data ends", *pos);
    return 0;
}

/* --- start of file: preamble, meta group, transfer syntax --------------- */

static bool plausible_first_tag(uint32_t tag)
{
    /* A raw data set (no meta) starts with a low group; DCMTK and pydicom
     * guess the same way.  A known tag or a group length is required so
     * random bytes are not taken for DICOM. */
    if (DCM_GROUP(tag) < 0x0002 || DCM_GROUP(tag) > 0x7FE0)
        return false;
    return DCM_ELEM(tag) == 0 || dcm_dict_find(tag) != NULL;
}

/* Guess the encoding of a data set without meta, as DCMTK does: look at
 * the first element in each byte order and see if a VR follows. */
static int guess_encoding(const uint8_t *b, size_t len, enc *e)
{
    if (len < 8)
        return -1;
    uint32_t le_tag = (uint32_t)dcm_rd16(b, false) << 16 | dcm_rd16(b + 2, false);
    uint32_t be_tag = (uint32_t)dcm_rd16(b, true) << 16 | dcm_rd16(b + 2, true);
    bool vr_follows = dcm_vr_from_chars(b[4], b[5]) != DCM_VR_NONE;
    if (plausible_first_tag(le_tag)) {
        *e = (enc){vr_follows, false};
        return 0;
    }
    if (plausible_first_tag(be_tag) && vr_follows) {
        *e = (enc){true, true};
        return 0;
    }
    return -1;
}

static const dcm_ts *ts_for(enc e)
{
    return dcm_ts_find(e.big_endian ? DCM_TS_EXPLICIT_BE : e.explicit_vr ? DCM_TS_EXPLICIT_LE : DCM_TS_IMPLICIT_LE,
                       e.big_endian ? strlen(DCM_TS_EXPLICIT_BE) : e.explicit_vr ? strlen(DCM_TS_EXPLICIT_LE) : strlen(DCM_TS_IMPLICIT_LE));
}

/* Meta group: explicit VR little endian always (PS3.10 §7.1); read while
 * the group is 0002 (group length is advisory: files lie about it). */
static int parse_meta(parser *p, size_t *pos)
{
    int32_t last = -1;
    enc e = {true, false};
    while (p->len - *pos >= 8 && dcm_rd16(p->b + *pos, false) == 0x0002) {
        size_t at = *pos;
        uint32_t tag = (uint32_t)0x0002 << 16 | dcm_rd16(p->b + at + 2, false);
        dcm_vr vr;
        uint32_t vl;
        size_t hdr;
        uint8_t flags = DCM_F_META;
        /* A few writers put the meta group in implicit VR. */
        e.explicit_vr = dcm_vr_from_chars(p->b[at + 4], p->b[at + 5]) != DCM_VR_NONE;
        int rc = read_header(p, at, p->len, tag, e, &vr, &vl, &hdr, &flags);
        if (rc < 0)
            return rc;
        if (vl == DCM_UNDEFINED_LENGTH || vl > p->len - at - hdr)
            return dcm_fail(p->err, DCM_EMETA, at,
                            "offset %zu: meta element (0002,%04X) length %u exceeds the %zu bytes left",
                            at, DCM_ELEM(tag), vl, p->len - at - hdr);
        dcm_elem proto = {.tag = tag, .vr = (uint8_t)vr, .flags = flags, .length = vl,
                          .offset = at, .value = p->b + at + hdr, .value_len = vl};
        if (add_node(p, -1, &last, &proto) < 0)
            return nomem(p, at);
        *pos = at + hdr + vl;
    }
    return 0;
}

static int inflate_dataset(parser *p, size_t start, size_t cap)
{
    z_stream z = {0};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK)
        return nomem(p, start);
    size_t outcap = (p->len - start) * 4 + 4096 + start, outlen = start;
    uint8_t *out = malloc(outcap);
    if (!out) {
        inflateEnd(&z);
        return nomem(p, start);
    }
    memcpy(out, p->b, start);
    z.next_in = (Bytef *)(p->b + start);
    z.avail_in = (uInt)(p->len - start > UINT32_MAX ? UINT32_MAX : p->len - start);
    int zr;
    do {
        if (outlen == outcap) {
            if (outcap - start >= cap) {
                free(out);
                inflateEnd(&z);
                return dcm_fail(p->err, DCM_ETOOBIG, start,
                                "offset %zu: deflated data set inflates beyond %zu bytes", start, cap);
            }
            size_t ncap = outcap * 2;
            uint8_t *n = realloc(out, ncap);
            if (!n) {
                free(out);
                inflateEnd(&z);
                return nomem(p, start);
            }
            out = n;
            outcap = ncap;
        }
        z.next_out = out + outlen;
        z.avail_out = (uInt)(outcap - outlen > UINT32_MAX ? UINT32_MAX : outcap - outlen);
        zr = inflate(&z, Z_NO_FLUSH);
        outlen = (size_t)(z.next_out - out);
        if (zr == Z_BUF_ERROR && z.avail_in == 0)
            break; /* input ended without stream end: keep what inflated (DCMTK does) */
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
            free(out);
            inflateEnd(&z);
            return dcm_fail(p->err, DCM_EINFLATE, start,
                            "offset %zu: deflated data set is corrupt (zlib %d)", start, zr);
        }
    } while (zr != Z_STREAM_END);
    inflateEnd(&z);
    p->f->owned = out;
    p->f->buf = p->b = out;
    p->f->len = p->len = outlen;
    return 0;
}

int dcm_parse(const uint8_t *buf, size_t len, const dcm_parse_opts *opts,
              dcm_file **out, dcm_err *err)
{
    *out = NULL;
    dcm_file *f = calloc(1, sizeof *f);
    if (!f)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    f->buf = buf;
    f->len = len;
    parser p = {.f = f, .b = buf, .len = len, .err = err,
                .max_depth = opts && opts->max_depth ? opts->max_depth : DCM_MAX_DEPTH,
                .stop_at = opts ? opts->stop_at_tag : 0};
    size_t cap = opts && opts->max_inflated ? opts->max_inflated : (size_t)1 << 30;
    size_t pos = 0;
    int rc;
    if (len >= 132 && memcmp(buf + 128, "DICM", 4) == 0) {
        f->preamble = true;
        pos = 132;
    } else if (len >= 4 && memcmp(buf, "DICM", 4) == 0) {
        pos = 4;
    }
    if ((rc = parse_meta(&p, &pos)) < 0)
        goto fail;
    f->meta = f->n > 0;
    enc e;
    const dcm_ts *ts = NULL;
    int32_t tsi = dcm_find(f, -1, DCM_TAG(0x0002, 0x0010));
    if (tsi >= 0) {
        ts = dcm_ts_find((const char *)f->nodes[tsi].value, f->nodes[tsi].value_len);
        if (!ts) {
            char uid[65] = {0};
            size_t n = f->nodes[tsi].value_len < 64 ? f->nodes[tsi].value_len : 64;
            for (size_t i = 0; i < n; i++) {
                char c = (char)f->nodes[tsi].value[i];
                uid[i] = (c >= '0' && c <= '9') || c == '.' ? c : '?';
            }
            rc = dcm_fail(err, DCM_ETS, f->nodes[tsi].offset,
                          "offset %zu: unknown transfer syntax %s", f->nodes[tsi].offset, uid);
            goto fail;
        }
        e = (enc){ts->explicit_vr, ts->big_endian};
    }
    f->dataset_offset = pos;
    if (ts && ts->deflated) {
        if ((rc = inflate_dataset(&p, pos, cap)) < 0)
            goto fail;
        for (size_t i = 0; i < f->n; i++) /* meta nodes now point into the copy */
            f->nodes[i].value = f->buf + (f->nodes[i].value - buf);
    }
    if (!ts) {
        if (pos == len && f->meta) {
            ts = ts_for((enc){true, false}); /* meta only: nothing follows the meta group */
            e = (enc){true, false};
        } else if (f->meta && p.len - pos >= 8) {
            /* Meta without a transfer syntax: DCMTK assumes implicit VR
             * little endian unless a VR follows the first tag. */
            e = (enc){dcm_vr_from_chars(p.b[pos + 4], p.b[pos + 5]) != DCM_VR_NONE, false};
            ts = ts_for(e);
        } else if (guess_encoding(p.b + pos, p.len - pos, &e) < 0) {
            rc = dcm_fail(err, DCM_ENOTDICOM, pos,
                          "offset %zu: no DICOM data set found (no preamble/meta and no plausible first element)", pos);
            goto fail;
        } else {
            ts = ts_for(e);
        }
    } else if (p.len - pos >= 8 && !ts->big_endian) {
        /* Meta says explicit but the data set is implicit (or the reverse):
         * trust the bytes, as pydicom and DCMTK do. */
        bool vr_follows = dcm_vr_from_chars(p.b[pos + 4], p.b[pos + 5]) != DCM_VR_NONE;
        if (e.explicit_vr != vr_follows && !ts->deflated && !ts->encapsulated)
            e.explicit_vr = vr_follows;
    }
    f->ts = ts;
    if ((rc = parse_dataset(&p, &pos, p.len, -1, 0, e, false)) < 0)
        goto fail;
    if (p.stopped)
        f->stopped_at = pos;
    /* Top-level nodes chain: meta nodes first then the data set. */
    int32_t prev = -1;
    for (size_t i = 0; i < f->n; i++) {
        if (f->nodes[i].parent != -1)
            continue;
        if (prev >= 0)
            f->nodes[prev].next = (int32_t)i;
        prev = (int32_t)i;
    }
    *out = f;
    return 0;
fail:
    dcm_free(&f);
    return rc;
}

#define DCM_PROBE_BYTES (8u << 10)
#define DCM_HEAD_BYTES  (64u << 10)
#define DCM_MAP_FROM    (256u << 10) /* listing: map files from this size when all must be read */

static int read_range(int fd, uint8_t *buf, size_t from, size_t to)
{
    while (from < to) {
        ssize_t k = pread(fd, buf + from, to - from, (off_t)from);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            return -1;
        }
        from += (size_t)k;
    }
    return 0;
}

/* For listing tools: where native Pixel Data's value lies, so it need not
 * be read.  Parses the head up to Pixel Data: the first 8 KiB (most
 * headers: a listing of a CT series then copies 8 KiB a slice, not 64),
 * else the first 64 KiB; any doubt (deflated, big endian, encapsulated, a
 * header past the head) means "read it all".  *head: bytes of buf read. */
static void find_native_pixels(int fd, uint8_t *buf, size_t size, size_t *head, size_t *from, size_t *to)
{
    static const size_t tries[] = {DCM_PROBE_BYTES, DCM_HEAD_BYTES};
    size_t at = 0;
    *head = 0;
    for (size_t i = 0; i < 2 && !at; i++) {
        size_t n = tries[i] < size ? tries[i] : size;
        if (read_range(fd, buf, *head, n) < 0)
            return;
        *head = n;
        dcm_file *h = NULL;
        dcm_err scratch;
        dcm_parse_opts ho = {.stop_at_tag = DCM_TAG_PIXEL_DATA, .max_inflated = 1};
        if (dcm_parse(buf, n, &ho, &h, &scratch) < 0)
            continue; /* the header goes on past this head */
        if (!h->stopped_at && n < size) { /* ended at an element boundary before Pixel Data */
            dcm_free(&h);
            continue;
        }
        bool plain = h->stopped_at && !h->ts->deflated && !h->ts->big_endian;
        at = plain && h->stopped_at + 12 <= n ? h->stopped_at : 0;
        dcm_free(&h);
        if (!plain)
            return;
    }
    if (!at || dcm_rd16(buf + at, false) != 0x7FE0 || dcm_rd16(buf + at + 2, false) != 0x0010)
        return;
    bool explicit_vr = (buf[at + 4] == 'O' && (buf[at + 5] == 'B' || buf[at + 5] == 'W'));
    size_t hdr = explicit_vr ? 12 : 8;
    uint32_t vl = dcm_rd32(buf + at + (explicit_vr ? 8 : 4), false);
    if (vl == DCM_UNDEFINED_LENGTH || vl < DCM_HEAD_BYTES || at + hdr + vl > size)
        return;
    *from = at + hdr;
    *to = at + hdr + vl;
}

int dcm_open(const char *path, const dcm_parse_opts *opts, dcm_file **out, dcm_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dcm_fail(err, -errno, 0, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = errno ? errno : EINVAL;
        close(fd);
        return dcm_fail(err, -e, 0, "not a regular file");
    }
    if (st.st_size == 0) {
        close(fd);
        return dcm_fail(err, DCM_ENOTDICOM, 0, "offset 0: empty file");
    }
    size_t size = (size_t)st.st_size;
    if (size <= DCM_READ_LIMIT) {
        /* Small files: one read is cheaper than mapping (munmap's TLB
         * shootdown dominates a batch of small files). */
        uint8_t *buf = malloc(size);
        size_t head = 0, skip_from = 0, skip_to = 0;
        if (buf && opts && opts->skip_pixels && size > DCM_HEAD_BYTES)
            find_native_pixels(fd, buf, size, &head, &skip_from, &skip_to);
        int ok;
        if (buf && !skip_to && head && size > DCM_MAP_FROM) {
            /* A listing of a big file whose values cannot be skipped
             * (compressed frames...): map it, so that only the pages it
             * looks at are read, and nothing is copied. */
            free(buf);
            goto map;
        }
        if (!buf)
            ok = 0;
        else if (skip_to) /* the head is read; then up to 256 bytes into the pixels, then what follows them */
            ok = (head >= skip_from + 256 || read_range(fd, buf, head, skip_from + 256) == 0) &&
                 read_range(fd, buf, skip_to, size) == 0;
        else
            ok = read_range(fd, buf, head, size) == 0;
        close(fd);
        if (!ok) {
            free(buf);
            return dcm_fail(err, buf ? DCM_EIO : DCM_ENOMEM, 0, "cannot read the file");
        }
        int rc = dcm_parse(buf, size, opts, out, err);
        if (rc == 0 && skip_to) {
            int32_t px = dcm_find(*out, -1, DCM_TAG_PIXEL_DATA);
            if (px >= 0)
                (*out)->nodes[px].flags |= DCM_F_UNREAD;
        }
        if (rc < 0) {
            free(buf);
            return rc;
        }
        (*out)->heap_input = buf;
        return 0;
    }
map:;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return dcm_fail(err, -errno, 0, "cannot map: %s", strerror(errno));
    int rc = dcm_parse(map, size, opts, out, err);
    if (rc < 0) {
        munmap(map, size);
        return rc;
    }
    (*out)->map = map;
    (*out)->map_len = size;
    return 0;
}

void dcm_free(dcm_file **fp)
{
    if (!fp || !*fp)
        return;
    dcm_file *f = *fp;
    free(f->nodes);
    free(f->owned);
    free(f->heap_input);
    if (f->map)
        munmap(f->map, f->map_len);
    free(f);
    *fp = NULL;
}

size_t dcm_count(const dcm_file *f) { return f->n; }

const dcm_elem *dcm_at(const dcm_file *f, int32_t i)
{
    return i >= 0 && (size_t)i < f->n ? &f->nodes[i] : NULL;
}

int32_t dcm_first(const dcm_file *f) { return f->n ? 0 : -1; }

int32_t dcm_find(const dcm_file *f, int32_t parent, uint32_t tag)
{
    int32_t i = parent < 0 ? (f->n ? 0 : -1) : f->nodes[parent].child;
    for (; i >= 0; i = f->nodes[i].next) {
        if (f->nodes[i].tag == tag)
            return i;
        /* top-level chain is only complete after parsing; during meta parsing walk by index */
        if (parent < 0 && f->nodes[i].next < 0) {
            for (size_t j = (size_t)i + 1; j < f->n; j++)
                if (f->nodes[j].parent == -1 && f->nodes[j].tag == tag)
                    return (int32_t)j;
            break;
        }
    }
    return -1;
}

const dcm_ts *dcm_file_ts(const dcm_file *f) { return f->ts; }
int dcm_has_preamble(const dcm_file *f) { return f->preamble; }
int dcm_has_meta(const dcm_file *f) { return f->meta; }
size_t dcm_dataset_offset(const dcm_file *f) { return f->dataset_offset; }

const uint8_t *dcm_buffer(const dcm_file *f, size_t *len)
{
    if (len)
        *len = f->len;
    return f->buf;
}

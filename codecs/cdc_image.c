/* cdc_image.c — the pixel attributes of an image, the transfer-syntax →
 * codec table, fragment → frame mapping (PS3.5 A.4) and frame decoding
 * (native syntaxes here, compressed ones through the codec table). */
#include <limits.h>
#include "codecs/cdc_private.h"

/* --- the transfer syntax → codec table --------------------------------- */

/* isolate: the library can crash on crafted data (OpenJPH 0.9 asserts on
 * some HTJ2K packet headers), so frames decode in a child (cdc_sandbox.c). */
/*  uid                          decode                 encode                 marker         norm lossy method  isolate */
static const cdc_codec codecs[] = {
    {"1.2.840.10008.1.2.5",      cdc_rle_decode,        cdc_rle_encode,        CDC_MARK_NONE, 1, 0, NULL, 0},
    {"1.2.840.10008.1.2.4.50",   cdc_jpeg_decode,       cdc_jpeg_encode,       CDC_MARK_JPEG, 1, 1, "ISO_10918_1", 0},
    {"1.2.840.10008.1.2.4.51",   cdc_jpeg_decode,       NULL,                  CDC_MARK_JPEG, 1, 1, "ISO_10918_1", 0},
    {"1.2.840.10008.1.2.4.57",   cdc_dcmtk_jpeg_decode, NULL,                  CDC_MARK_JPEG, 1, 0, NULL, 0},
    {"1.2.840.10008.1.2.4.70",   cdc_dcmtk_jpeg_decode, NULL,                  CDC_MARK_JPEG, 1, 0, NULL, 0},
    {"1.2.840.10008.1.2.4.80",   cdc_jpegls_decode,     cdc_jpegls_encode,     CDC_MARK_JPEG, 1, 0, NULL, 0},
    {"1.2.840.10008.1.2.4.81",   cdc_jpegls_decode,     cdc_jpegls_encode,     CDC_MARK_JPEG, 1, 1, "ISO_14495_1", 0},
    {"1.2.840.10008.1.2.4.90",   cdc_j2k_decode,        cdc_j2k_encode,        CDC_MARK_J2K,  0, 0, NULL, 0},
    {"1.2.840.10008.1.2.4.91",   cdc_j2k_decode,        NULL,                  CDC_MARK_J2K,  0, 1, "ISO_15444_1", 0},
    {"1.2.840.10008.1.2.4.201",  cdc_htj2k_decode,      cdc_htj2k_encode,      CDC_MARK_J2K,  0, 0, NULL, 1},
    {"1.2.840.10008.1.2.4.202",  cdc_htj2k_decode,      cdc_htj2k_rpcl_encode, CDC_MARK_J2K,  0, 0, NULL, 1},
    {"1.2.840.10008.1.2.4.203",  cdc_htj2k_decode,      NULL,                  CDC_MARK_J2K,  0, 1, "ISO_15444_15", 1},
    {"1.2.840.10008.1.2.8.1",    cdc_deflate_decode,    cdc_deflate_encode,    CDC_MARK_NONE, 1, 0, NULL, 0},
};

const cdc_codec *cdc_codec_find(const char *uid)
{
    for (size_t i = 0; uid && i < sizeof codecs / sizeof codecs[0]; i++)
        if (!strcmp(codecs[i].ts_uid, uid))
            return &codecs[i];
    return NULL;
}

static const struct {
    int         code;
    const char *text;
} cdc_errors[] = {
    {CDC_ECODEC, "compressed pixel data rejected by its codec"},
    {CDC_EFRAME, "frame not found in the pixel data"},
    {CDC_EPIXEL, "image pixel attributes missing or inconsistent"},
};

const char *cdc_strerror(int code)
{
    for (size_t i = 0; i < sizeof cdc_errors / sizeof cdc_errors[0]; i++)
        if (cdc_errors[i].code == code)
            return cdc_errors[i].text;
    return dcm_strerror(code);
}

static const char *const pi_names[] = {
    [CDC_PI_UNKNOWN] = "",
    [CDC_PI_MONOCHROME1] = "MONOCHROME1",
    [CDC_PI_MONOCHROME2] = "MONOCHROME2",
    [CDC_PI_PALETTE] = "PALETTE COLOR",
    [CDC_PI_RGB] = "RGB",
    [CDC_PI_YBR_FULL] = "YBR_FULL",
    [CDC_PI_YBR_FULL_422] = "YBR_FULL_422",
    [CDC_PI_YBR_PARTIAL_420] = "YBR_PARTIAL_420",
    [CDC_PI_YBR_ICT] = "YBR_ICT",
    [CDC_PI_YBR_RCT] = "YBR_RCT",
};

const char *cdc_photometric_name(cdc_photometric pi)
{
    return (unsigned)pi < sizeof pi_names / sizeof pi_names[0] ? pi_names[pi] : "";
}

static cdc_photometric photometric_from(const char *s)
{
    for (size_t i = 1; i < sizeof pi_names / sizeof pi_names[0]; i++)
        if (!strcmp(pi_names[i], s))
            return (cdc_photometric)i;
    return CDC_PI_UNKNOWN;
}

/* --- shared helpers ------------------------------------------------------ */

int cdc_check_dims(const cdc_fmt *fmt, uint32_t rows, uint32_t cols, uint32_t comps,
                   const char *what, dcm_err *err)
{
    if (rows != fmt->rows || cols != fmt->cols || comps != fmt->samples)
        return dcm_fail(err, CDC_ECODEC, 0,
                        "%s codestream is %ux%u with %u components; the data set says %ux%u with %u",
                        what, cols, rows, comps, fmt->cols, fmt->rows, fmt->samples);
    return 0;
}

void cdc_normalise(const cdc_fmt *fmt, uint8_t *buf, size_t n)
{
    unsigned bits = fmt->bits_stored, width = fmt->bytes * 8u;
    if (bits == 0 || bits >= width || fmt->bits_allocated == 1)
        return;
    uint32_t mask = (1u << bits) - 1, sign = 1u << (bits - 1);
    if (fmt->bytes == 1) {
        for (size_t i = 0; i < n; i++) {
            uint32_t v = buf[i] & mask;
            buf[i] = (uint8_t)(fmt->is_signed ? (v ^ sign) - sign : v);
        }
    } else if (fmt->bytes == 2) {
        uint16_t *p = (uint16_t *)buf;
        for (size_t i = 0; i < n; i++) {
            uint32_t v = p[i] & mask;
            p[i] = (uint16_t)(fmt->is_signed ? (v ^ sign) - sign : v);
        }
    } else {
        uint32_t *p = (uint32_t *)buf;
        for (size_t i = 0; i < n; i++) {
            uint32_t v = p[i] & mask;
            p[i] = fmt->is_signed ? (v ^ sign) - sign : v;
        }
    }
}

static bool is_bad_dim(uint32_t v)
{
    return v == 0 || v > 65535; /* US in the data set */
}

static int top_uint(const dcm_file *f, uint32_t tag, uint32_t dflt, uint32_t *out)
{
    int32_t i = dcm_find(f, -1, tag);
    if (i < 0 || !dcm_at(f, i)->value_len) {
        *out = dflt;
        return 1;
    }
    return dcm_get_u32(f, dcm_at(f, i), 0, out);
}

/* --- lookup tables (palette here; modality / VOI in cdc_render.c) -------- */

/* PS3.3 C.7.9.2: segmented palette data (discrete, linear, indirect). */
static int expand_segmented(const uint16_t *seg, size_t nseg, cdc_lut *lut, dcm_err *err)
{
    size_t out = 0, i = 0;
    while (i + 1 < nseg) {
        uint16_t op = seg[i], len = seg[i + 1];
        if (op == 0) { /* discrete */
            if (i + 2 + len > nseg || out + len > lut->n)
                goto bad;
            for (size_t k = 0; k < len; k++)
                lut->data[out++] = seg[i + 2 + k];
            i += 2 + len;
        } else if (op == 1) { /* linear from the previous value */
            if (i + 2 >= nseg || out == 0 || out + len > lut->n)
                goto bad;
            double y0 = lut->data[out - 1], y1 = seg[i + 2];
            for (size_t k = 1; k <= len; k++)
                lut->data[out++] = (uint16_t)(y0 + (y1 - y0) * (double)k / len + 0.5);
            i += 3;
        } else {
            /* opcode 2 (indirect) copies earlier segments; no known file uses it. */
            return dcm_fail(err, CDC_EPIXEL, 0, "segmented palette: opcode %u not supported", op);
        }
    }
    for (; out < lut->n && out > 0; out++) /* a short table repeats its last value */
        lut->data[out] = lut->data[out - 1];
    return 0;
bad:
    return dcm_fail(err, CDC_EPIXEL, 0, "segmented palette: segment %zu overruns the table", i);
}

/* Read a LUT: descriptor (3 values) and data (OW/US words, or bytes when
 * the data has one byte per entry), or segmented data. */
int cdc_read_lut(const dcm_file *f, int32_t parent, uint32_t desc_tag, uint32_t data_tag,
                 uint32_t seg_tag, cdc_lut *lut, dcm_err *err)
{
    memset(lut, 0, sizeof *lut);
    int32_t di = dcm_find(f, parent, desc_tag);
    if (di < 0)
        return 0;
    const dcm_elem *d = dcm_at(f, di);
    uint32_t n, bits;
    double first;
    if (d->value_len < 6 || dcm_get_u32(f, d, 0, &n) < 0 || dcm_get_f64(f, d, 1, &first) < 0 ||
        dcm_get_u32(f, d, 2, &bits) < 0)
        return dcm_fail(err, CDC_EPIXEL, d->offset, "LUT descriptor (%04X,%04X) unreadable",
                        DCM_GROUP(desc_tag), DCM_ELEM(desc_tag));
    n &= 0xFFFF;
    if (n == 0)
        n = 65536; /* PS3.3 C.11.1.1.1 */
    if (bits == 0 || bits > 16)
        bits = 16;
    /* The first mapped value is US or SS as the image is unsigned or signed;
     * read as US, a signed image's negative start comes back >= 32768. */
    int32_t first_i = (int32_t)first;
    int32_t xi = dcm_find(f, parent, data_tag), si = seg_tag ? dcm_find(f, parent, seg_tag) : -1;
    const dcm_elem *x = xi >= 0 ? dcm_at(f, xi) : si >= 0 ? dcm_at(f, si) : NULL;
    if (!x || !x->value)
        return dcm_fail(err, CDC_EPIXEL, d->offset, "LUT (%04X,%04X) has a descriptor but no data",
                        DCM_GROUP(desc_tag), DCM_ELEM(desc_tag));
    lut->data = calloc(n, sizeof *lut->data);
    if (!lut->data)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    lut->n = n;
    lut->first = first_i;
    lut->bits = (uint8_t)bits;
    bool be = dcm_is_big_endian_node(x);
    if (x == dcm_at(f, si)) {
        size_t nseg = x->value_len / 2;
        uint16_t *seg = malloc(nseg * 2 + 2);
        if (!seg)
            return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        for (size_t k = 0; k < nseg; k++)
            seg[k] = dcm_rd16(x->value + 2 * k, be);
        int rc = expand_segmented(seg, nseg, lut, err);
        free(seg);
        return rc;
    }
    if (x->value_len >= (size_t)n * 2) {
        for (size_t k = 0; k < n; k++)
            lut->data[k] = dcm_rd16(x->value + 2 * k, be);
    } else if (x->value_len >= n && bits <= 8) {
        for (size_t k = 0; k < n; k++)
            lut->data[k] = x->value[k];
    } else {
        return dcm_fail(err, CDC_EPIXEL, x->offset, "LUT data (%04X,%04X): %zu bytes for %u entries",
                        DCM_GROUP(data_tag), DCM_ELEM(data_tag), x->value_len, n);
    }
    return 0;
}

/* --- fragments → frames (PS3.5 A.4) -------------------------------------- */

static bool frag_starts_frame(const dcm_elem *fr, int marker)
{
    const uint8_t *p = fr->value;
    if (fr->value_len < 4)
        return false;
    if (marker == CDC_MARK_JPEG)
        return p[0] == 0xFF && p[1] == 0xD8;
    if (marker == CDC_MARK_J2K) /* codestream SOC, or a JP2 signature box */
        return (p[0] == 0xFF && p[1] == 0x4F) || (p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 0x0C);
    return false;
}

static int map_frames(cdc_image *img, dcm_err *err)
{
    const dcm_file *f = img->file;
    const dcm_elem *pd = dcm_at(f, img->pixel_elem);
    int32_t bot = pd->child;
    if (bot < 0 || dcm_at(f, bot)->tag != DCM_TAG_ITEM)
        return dcm_fail(err, CDC_EFRAME, pd->offset, "encapsulated pixel data without an offset table item");
    /* Fragments into a temporary index array. */
    size_t nfrag = 0;
    for (int32_t c = dcm_at(f, bot)->next; c >= 0; c = dcm_at(f, c)->next)
        nfrag++;
    if (nfrag == 0)
        return dcm_fail(err, CDC_EFRAME, pd->offset, "encapsulated pixel data has no fragments");
    if (img->frames > nfrag)
        return dcm_fail(err, CDC_EFRAME, pd->offset, "%u frames claimed but only %zu fragments present",
                        img->frames, nfrag);
    int32_t *frag = malloc(nfrag * sizeof *frag);
    img->frag_first = malloc(img->frames * sizeof *img->frag_first);
    img->frag_count = calloc(img->frames, sizeof *img->frag_count);
    img->frag_bytes = calloc(img->frames, sizeof *img->frag_bytes);
    if (!frag || !img->frag_first || !img->frag_count || !img->frag_bytes) {
        free(frag);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    size_t k = 0;
    for (int32_t c = dcm_at(f, bot)->next; c >= 0; c = dcm_at(f, c)->next)
        frag[k++] = c;
    size_t base = dcm_at(f, frag[0])->offset;
    const cdc_codec *cd = cdc_codec_find(img->ts->uid);
    int marker = cd ? cd->marker : CDC_MARK_NONE;
    uint32_t nf = img->frames;
    int rc = 0;

    /* Offsets of each frame's first fragment, relative to the first fragment's item. */
    uint64_t *offs = NULL;
    size_t noffs = 0;
    int32_t eot = dcm_find(f, -1, DCM_TAG(0x7FE0, 0x0001));
    const dcm_elem *bote = dcm_at(f, bot);
    if (eot >= 0 && dcm_at(f, eot)->value_len == (size_t)nf * 8) {
        const dcm_elem *e = dcm_at(f, eot);
        noffs = nf;
        offs = malloc(nf * sizeof *offs);
        for (size_t i = 0; offs && i < nf; i++)
            offs[i] = dcm_rd64(e->value + 8 * i, dcm_is_big_endian_node(e));
    } else if (bote->value_len == (size_t)nf * 4 && nf > 0) {
        noffs = nf;
        offs = malloc(nf * sizeof *offs);
        for (size_t i = 0; offs && i < nf; i++)
            offs[i] = dcm_rd32(bote->value + 4 * i, false);
    }
    if (noffs && !offs) {
        free(frag);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    bool mapped = false;
    if (offs) {
        /* Each offset must land exactly on a fragment item, ascending. */
        size_t j = 0;
        mapped = true;
        for (uint32_t i = 0; i < nf && mapped; i++) {
            while (j < nfrag && dcm_at(f, frag[j])->offset - base < offs[i])
                j++;
            if (j >= nfrag || dcm_at(f, frag[j])->offset - base != offs[i])
                mapped = false;
            else
                img->frag_first[i] = (int32_t)j; /* fragment position for now */
        }
        for (uint32_t i = 0; mapped && i + 1 < nf; i++)
            if (img->frag_first[i] >= img->frag_first[i + 1])
                mapped = false;
        free(offs);
    }
    if (!mapped && nfrag == nf) {
        for (uint32_t i = 0; i < nf; i++)
            img->frag_first[i] = (int32_t)i;
        mapped = true;
    }
    if (!mapped && nf == 1) {
        img->frag_first[0] = 0;
        mapped = true;
    }
    if (!mapped && marker != CDC_MARK_NONE) {
        uint32_t i = 0;
        for (size_t j = 0; j < nfrag; j++)
            if (frag_starts_frame(dcm_at(f, frag[j]), marker)) {
                if (i < nf)
                    img->frag_first[i] = (int32_t)j;
                i++;
            }
        mapped = i == nf && img->frag_first[0] == 0;
    }
    if (!mapped) {
        rc = dcm_fail(err, CDC_EFRAME, pd->offset,
                      "%zu fragments cannot be mapped to %u frames (no usable offset table)", nfrag, nf);
        goto out;
    }
    /* Positions → node indices, counts and byte totals. */
    for (uint32_t i = 0; i < nf; i++) {
        size_t a = (size_t)img->frag_first[i], b = i + 1 < nf ? (size_t)img->frag_first[i + 1] : nfrag;
        img->frag_count[i] = (uint32_t)(b - a);
        for (size_t j = a; j < b; j++)
            img->frag_bytes[i] += dcm_at(f, frag[j])->value_len;
        img->frag_first[i] = frag[a];
    }
out:
    free(frag);
    return rc;
}

/* --- cdc_image ----------------------------------------------------------- */

void cdc_image_release(cdc_image *img)
{
    if (!img)
        return;
    for (int i = 0; i < 3; i++)
        free(img->palette[i].data);
    free(img->frag_first);
    free(img->frag_count);
    free(img->frag_bytes);
    memset(img, 0, sizeof *img);
}

size_t cdc_frame_size(const cdc_image *img)
{
    return (size_t)img->rows * img->cols * img->samples * img->out_bytes;
}

/* Bytes (bits for Bits Allocated 1) one frame occupies in native pixel data. */
static uint64_t native_frame_bits(const cdc_image *img)
{
    uint64_t px = (uint64_t)img->rows * img->cols;
    if (img->photometric == CDC_PI_YBR_FULL_422 && img->samples == 3 && img->bits_allocated == 8)
        return px * 2 * 8; /* two luminance, one pair of chrominance samples per two pixels */
    return px * img->samples * img->bits_allocated;
}

static cdc_photometric decoded_photometric(const cdc_image *img)
{
    cdc_photometric pi = img->photometric;
    if (img->samples != 3)
        return pi;
    if (!img->ts->encapsulated || !strcmp(img->ts->uid, "1.2.840.10008.1.2.5") ||
        !strcmp(img->ts->uid, "1.2.840.10008.1.2.8.1"))
        return pi == CDC_PI_YBR_FULL_422 ? CDC_PI_YBR_FULL : pi;
    if (!strcmp(img->ts->uid, "1.2.840.10008.1.2.4.50") || !strcmp(img->ts->uid, "1.2.840.10008.1.2.4.51"))
        return CDC_PI_RGB; /* libjpeg's colour conversion */
    if (pi == CDC_PI_YBR_RCT || pi == CDC_PI_YBR_ICT)
        return CDC_PI_RGB; /* J2K / HTJ2K inverse component transform */
    return pi == CDC_PI_YBR_FULL_422 ? CDC_PI_YBR_FULL : pi;
}

int cdc_image_init(cdc_image *img, const dcm_file *f, dcm_err *err)
{
    memset(img, 0, sizeof *img);
    img->file = f;
    img->ts = dcm_file_ts(f);
    img->pixel_elem = dcm_find(f, -1, DCM_TAG_PIXEL_DATA);
    if (img->pixel_elem < 0) {
        img->pixel_elem = dcm_find(f, -1, DCM_TAG(0x7FE0, 0x0008));
        if (img->pixel_elem < 0)
            img->pixel_elem = dcm_find(f, -1, DCM_TAG(0x7FE0, 0x0009));
        if (img->pixel_elem < 0)
            return dcm_fail(err, DCM_ENOTFOUND, 0, "no pixel data");
        img->is_float = 1;
    }
    const dcm_elem *pd = dcm_at(f, img->pixel_elem);
    uint32_t rows, cols, samples, ba, bs, hb, pr, planar, frames = 1;
    char pi[32], nfr[24];
    if (top_uint(f, DCM_TAG(0x0028, 0x0010), 0, &rows) < 0 || top_uint(f, DCM_TAG(0x0028, 0x0011), 0, &cols) < 0 ||
        top_uint(f, DCM_TAG(0x0028, 0x0002), 1, &samples) < 0 ||
        top_uint(f, DCM_TAG(0x0028, 0x0100), img->is_float ? (pd->tag == DCM_TAG(0x7FE0, 0x0009) ? 64 : 32) : 0, &ba) < 0 ||
        top_uint(f, DCM_TAG(0x0028, 0x0101), ba, &bs) < 0 || top_uint(f, DCM_TAG(0x0028, 0x0102), bs ? bs - 1 : 0, &hb) < 0 ||
        top_uint(f, DCM_TAG(0x0028, 0x0103), 0, &pr) < 0 || top_uint(f, DCM_TAG(0x0028, 0x0006), 0, &planar) < 0)
        return dcm_fail(err, CDC_EPIXEL, 0, "an image pixel attribute (0028,xxxx) is unreadable");
    if (dcm_top_str(f, DCM_TAG(0x0028, 0x0008), nfr, sizeof nfr) > 0) {
        char *end;
        long v = strtol(nfr, &end, 10);
        if (v < 1 || v > INT32_MAX)
            return dcm_fail(err, CDC_EPIXEL, 0, "Number of Frames '%s' is not a positive count", nfr);
        frames = (uint32_t)v;
    }
    if (is_bad_dim(rows) || is_bad_dim(cols))
        return dcm_fail(err, CDC_EPIXEL, 0, "Rows %u / Columns %u: not an image size", rows, cols);
    if (samples != 1 && samples != 3)
        return dcm_fail(err, CDC_EPIXEL, 0, "Samples per Pixel %u not supported (1 or 3)", samples);
    if (ba != 1 && ba != 8 && ba != 16 && ba != 32 && !(img->is_float && ba == 64))
        return dcm_fail(err, CDC_EPIXEL, 0, "Bits Allocated %u not supported (1, 8, 16, 32)", ba);
    if (bs == 0 || bs > ba)
        bs = ba;
    img->rows = rows;
    img->cols = cols;
    img->frames = frames;
    img->samples = (uint16_t)samples;
    img->bits_allocated = (uint16_t)ba;
    img->bits_stored = (uint16_t)bs;
    img->high_bit = (uint16_t)hb;
    img->is_signed = pr == 1;
    img->planar = planar == 1;
    dcm_top_str(f, DCM_TAG(0x0028, 0x0004), pi, sizeof pi);
    img->photometric = photometric_from(pi);
    if (img->photometric == CDC_PI_UNKNOWN)
        img->photometric = samples == 1 ? CDC_PI_MONOCHROME2 : CDC_PI_RGB;
    if ((samples == 1) != (img->photometric <= CDC_PI_PALETTE))
        return dcm_fail(err, CDC_EPIXEL, 0, "Photometric Interpretation %s with %u samples per pixel",
                        pi, samples);
    img->out_bytes = (uint8_t)(ba <= 8 ? 1 : ba / 8);
    img->out_photometric = decoded_photometric(img);

    uint64_t fsz = (uint64_t)rows * cols * samples * img->out_bytes;
    if (fsz > CDC_MAX_FRAME_BYTES)
        return dcm_fail(err, DCM_ETOOBIG, 0, "one frame of %ux%ux%u at %u bits is %llu bytes, over the %zu limit",
                        cols, rows, samples, ba, (unsigned long long)fsz, CDC_MAX_FRAME_BYTES);

    if (img->photometric == CDC_PI_PALETTE) {
        static const uint32_t desc[3] = {0x00281101, 0x00281102, 0x00281103};
        for (int c = 0; c < 3; c++) {
            int rc = cdc_read_lut(f, -1, desc[c], desc[c] + 0x100, desc[c] + 0x120, &img->palette[c], err);
            if (rc < 0) {
                cdc_image_release(img);
                return rc;
            }
        }
    }

    if (pd->flags & DCM_F_ENCAPS) {
        if (!cdc_codec_find(img->ts->uid)) {
            int rc = dcm_fail(err, DCM_ETS, 0, "no decoder for %s", img->ts->name);
            cdc_image_release(img);
            return rc;
        }
        bool rle = !strcmp(img->ts->uid, "1.2.840.10008.1.2.5"), dfl = !strcmp(img->ts->uid, "1.2.840.10008.1.2.8.1");
        if (img->is_float || (ba != 8 && ba != 16 && !(ba == 32 && (rle || dfl)) && !(ba == 1 && dfl))) {
            int rc = dcm_fail(err, CDC_EPIXEL, 0, "Bits Allocated %u cannot be %s", ba, img->ts->name);
            cdc_image_release(img);
            return rc;
        }
        int rc = map_frames(img, err);
        if (rc < 0)
            cdc_image_release(img);
        return rc;
    }
    /* Native: the frames must be there (never allocate for what is absent). */
    uint64_t need_bits = native_frame_bits(img) * frames;
    uint64_t need = (need_bits + 7) / 8;
    if (pd->value_len < need) {
        int rc = dcm_fail(err, DCM_ETRUNC, pd->offset,
                          "pixel data holds %zu bytes; %u frame(s) of %ux%ux%u at %u bits need %llu",
                          pd->value_len, frames, cols, rows, samples, ba, (unsigned long long)need);
        cdc_image_release(img);
        return rc;
    }
    return 0;
}

/* --- frames ---------------------------------------------------------------- */

int cdc_frame_bytes(const cdc_image *img, uint32_t frame, const uint8_t **p, size_t *n,
                    uint8_t **owned, dcm_err *err)
{
    *owned = NULL;
    if (!img->frag_first || frame >= img->frames)
        return dcm_fail(err, CDC_EFRAME, 0, "frame %u of %u: not in encapsulated pixel data", frame, img->frames);
    const dcm_file *f = img->file;
    int32_t c = img->frag_first[frame];
    if (img->frag_count[frame] == 1) {
        *p = dcm_at(f, c)->value;
        *n = dcm_at(f, c)->value_len;
        return 0;
    }
    uint8_t *buf = malloc(img->frag_bytes[frame] ? img->frag_bytes[frame] : 1);
    if (!buf)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    size_t off = 0;
    for (uint32_t k = 0; k < img->frag_count[frame]; k++, c = dcm_at(f, c)->next) {
        memcpy(buf + off, dcm_at(f, c)->value, dcm_at(f, c)->value_len);
        off += dcm_at(f, c)->value_len;
    }
    *p = *owned = buf;
    *n = off;
    return 0;
}

static void fmt_of(const cdc_image *img, cdc_fmt *fmt)
{
    memset(fmt, 0, sizeof *fmt);
    fmt->rows = img->rows;
    fmt->cols = img->cols;
    fmt->samples = img->samples;
    fmt->bits_stored = img->bits_stored;
    fmt->bits_allocated = img->bits_allocated;
    fmt->bytes = img->out_bytes;
    fmt->is_signed = img->is_signed;
    fmt->planar = img->planar;
    fmt->lossy = img->ts->lossy;
    fmt->photometric = img->photometric;
}

void cdc_fmt_of_image(const cdc_image *img, cdc_fmt *fmt);
void cdc_fmt_of_image(const cdc_image *img, cdc_fmt *fmt)
{
    fmt_of(img, fmt);
}

/* Native samples → decoded layout: byte order, planar → interleaved,
 * YBR_FULL_422 upsampling, 1-bit unpacking from bit offset bit0
 * (PS3.5 8.1.1, 8.2.1; PS3.3 C.7.6.3.1.2).  src holds at least the frame. */
void cdc_native_unpack(const cdc_fmt *fmt, const uint8_t *src, uint64_t bit0, bool be, uint8_t *out)
{
    size_t px = (size_t)fmt->rows * fmt->cols, ns = fmt->samples;
    if (fmt->bits_allocated == 1) {
        for (size_t i = 0; i < px; i++) {
            uint64_t b = bit0 + i;
            out[i] = (src[b >> 3] >> (b & 7)) & 1;
        }
        return;
    }
    src += bit0 / 8;
    if (fmt->photometric == CDC_PI_YBR_FULL_422 && ns == 3 && fmt->bits_allocated == 8) {
        /* Y1 Y2 Cb Cr per pair of pixels along a row. */
        for (size_t i = 0; i < px; i++) {
            size_t pair = i / 2;
            uint8_t *o = out + 3 * i;
            o[0] = src[4 * pair + (i & 1)];
            o[1] = src[4 * pair + 2];
            o[2] = src[4 * pair + 3];
        }
        return;
    }
    size_t w = fmt->bytes;
    if (!fmt->planar && (!be || w == 1)) {
        memcpy(out, src, px * ns * w);
        return;
    }
    for (size_t i = 0; i < px; i++)
        for (size_t s = 0; s < ns; s++) {
            size_t in_idx = fmt->planar ? s * px + i : i * ns + s;
            const uint8_t *q = src + in_idx * w;
            uint8_t *o = out + (i * ns + s) * w;
            if (!be || w == 1)
                memcpy(o, q, w);
            else
                for (size_t k = 0; k < w; k++)
                    o[k] = q[w - 1 - k];
        }
}

/* Decoded layout → native interleaved samples (Planar Configuration 0),
 * little or big endian.  Bits Allocated 1 packs from bit offset bit0 of
 * dst (the caller carries partial bytes between frames). */
void cdc_native_pack(const cdc_fmt *fmt, const uint8_t *frame, uint64_t bit0, bool be, uint8_t *dst)
{
    size_t px = (size_t)fmt->rows * fmt->cols, ns = fmt->samples, w = fmt->bytes;
    if (fmt->bits_allocated == 1) {
        for (size_t i = 0; i < px; i++) {
            uint64_t b = bit0 + i;
            if (frame[i])
                dst[b >> 3] |= (uint8_t)(1u << (b & 7));
            else
                dst[b >> 3] &= (uint8_t)~(1u << (b & 7));
        }
        return;
    }
    if (!be || w == 1) {
        memcpy(dst, frame, px * ns * w);
        return;
    }
    for (size_t i = 0; i < px * ns; i++)
        for (size_t k = 0; k < w; k++)
            dst[i * w + k] = frame[i * w + w - 1 - k];
}

static int decode_native(const cdc_image *img, uint32_t frame, uint8_t *out, dcm_err *err)
{
    const dcm_elem *pd = dcm_at(img->file, img->pixel_elem);
    cdc_fmt fmt;
    fmt_of(img, &fmt);
    cdc_native_unpack(&fmt, pd->value, native_frame_bits(img) * frame, dcm_is_big_endian_node(pd), out);
    (void)err;
    return 0;
}

int cdc_decode_frame(const cdc_image *img, uint32_t frame, void *out, size_t out_len, dcm_err *err)
{
    size_t need = cdc_frame_size(img);
    if (frame >= img->frames)
        return dcm_fail(err, CDC_EFRAME, 0, "frame %u requested; the image has %u", frame, img->frames);
    if (out_len < need)
        return dcm_fail(err, DCM_EBADLEN, 0, "output buffer of %zu bytes; the frame needs %zu", out_len, need);
    cdc_fmt fmt;
    fmt_of(img, &fmt);
    const dcm_elem *pd = dcm_at(img->file, img->pixel_elem);
    if (!(pd->flags & DCM_F_ENCAPS)) {
        int rc = decode_native(img, frame, out, err);
        if (rc == 0 && !img->is_float)
            cdc_normalise(&fmt, out, need / img->out_bytes);
        return rc;
    }
    const cdc_codec *cd = cdc_codec_find(img->ts->uid);
    if (!cd)
        return dcm_fail(err, DCM_ETS, 0, "no decoder for %s", img->ts->name);
    const uint8_t *p;
    size_t n;
    uint8_t *owned;
    int rc = cdc_frame_bytes(img, frame, &p, &n, &owned, err);
    if (rc < 0)
        return rc;
    if (cd->isolate)
        rc = cdc_sandbox_decode(img->sandbox, cd->decode, img->ts->name, &fmt, p, n, out, need, err);
    else
        rc = cd->decode(&fmt, p, n, out, need, err);
    free(owned);
    if (rc == CDC_NORMALISED) /* the codec knows its samples fit Bits Stored */
        rc = 0;
    else if (rc == 0 && cd->normalise)
        cdc_normalise(&fmt, out, need / img->out_bytes);
    if (rc < 0 && err && !err->msg[0])
        dcm_fail(err, rc, 0, "frame %u: %s", frame, cdc_strerror(rc));
    return rc;
}

size_t cdc_native_frame_bytes(const cdc_fmt *fmt)
{
    size_t px = (size_t)fmt->rows * fmt->cols;
    if (fmt->bits_allocated == 1)
        return (px + 7) / 8;
    if (fmt->photometric == CDC_PI_YBR_FULL_422 && fmt->samples == 3 && fmt->bits_allocated == 8)
        return px * 2;
    return px * fmt->samples * fmt->bytes;
}

/* ecg_scp.c — SCP-ECG (EN 1064 / ISO 11073-91064) rhythm data.
 *
 *   file:     CRC (2), total length (4), sections
 *   section:  CRC (2), id (2), length (4, header included), section
 *             version (1), protocol version (1), reserved (6), body
 *   section 0: pointers — id (2), length (4), 1-based byte index (4)
 *   section 2: Huffman tables (19999: the standard's default table)
 *   section 3: leads — count (1), flags (1), per lead: first sample (4),
 *              last sample (4), lead code (1, the SCP/MDC lead numbers)
 *   section 6: rhythm — AVM in nV (2), sample interval in us (2),
 *              difference order (1), bimodal (1), per lead the byte
 *              length (2) of its Huffman-coded data, then the data
 *
 * Read: the default Huffman table, first or second differences, all
 * leads over the same samples.  Refused with ECG_EUNSUPPORTED and a
 * reason: reference-beat subtraction (section 4/5 added back), bimodal
 * compression, custom Huffman tables. */
#include "codecs/ecg_private.h"

#define SCP_DEFAULT_TABLE 19999
#define SCP_MAX_SECTION   32 /* pointers past this id are ignored */

typedef struct scp_section {
    size_t body, end; /* body start and end offsets in the file; 0,0 when absent */
} scp_section;

static int scp_sections(const uint8_t *p, size_t len, scp_section *sec, dcm_err *err)
{
    memset(sec, 0, SCP_MAX_SECTION * sizeof *sec);
    if (len < 6 + 16)
        return dcm_fail(err, DCM_ETRUNC, len, "offset %zu: SCP-ECG file too short", len);
    uint32_t total = dcm_rd32(p + 2, false);
    if (total > len || total < 6 + 16)
        return dcm_fail(err, DCM_ETRUNC, 2, "offset 2: SCP-ECG length %u, the file has %zu bytes", total, len);
    len = total;
    uint32_t len0 = dcm_rd32(p + 6 + 4, false);
    if (dcm_rd16(p + 6 + 2, false) != 0 || len0 < 16 || len0 > len - 6)
        return dcm_fail(err, DCM_EVALUE, 6, "offset 6: SCP-ECG section 0 unusable");
    for (size_t at = 6 + 16; at + 10 <= 6 + (size_t)len0; at += 10) {
        uint16_t id = dcm_rd16(p + at, false);
        uint32_t slen = dcm_rd32(p + at + 2, false), index = dcm_rd32(p + at + 6, false);
        if (id >= SCP_MAX_SECTION || slen == 0)
            continue;
        if (index == 0 || slen < 16 || index - 1 > len || slen > len - (index - 1))
            return dcm_fail(err, DCM_EVALUE, at, "offset %zu: SCP-ECG section %u lies outside the file", at, id);
        sec[id].body = index - 1 + 16;
        sec[id].end = index - 1 + slen;
    }
    return 0;
}

/* MSB-first bit reader over one lead's bytes. */
typedef struct bits {
    const uint8_t *p;
    size_t         n, pos; /* in bits */
} bits;

static int get_bits(bits *b, int count, uint32_t *out)
{
    if (b->pos + (size_t)count > b->n * 8)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < count; i++, b->pos++)
        v = (v << 1) | ((b->p[b->pos >> 3] >> (7 - (b->pos & 7))) & 1u);
    *out = v;
    return 0;
}

/* The default table (EN 1064 Annex, Table "default Huffman"): 0 is "0";
 * +-k (k = 1..8) is k ones, a zero, a sign bit; nine ones and a zero
 * escape an 8-bit value, ten ones a 16-bit value (two's complement). */
static int default_huffman(bits *b, int32_t *out)
{
    int ones = 0;
    uint32_t bit;
    while (ones < 10) {
        if (get_bits(b, 1, &bit) < 0)
            return -1;
        if (!bit)
            break;
        ones++;
    }
    if (ones == 0) {
        *out = 0;
    } else if (ones <= 8) {
        if (get_bits(b, 1, &bit) < 0)
            return -1;
        *out = bit ? -ones : ones;
    } else {
        uint32_t v;
        if (get_bits(b, ones == 9 ? 8 : 16, &v) < 0)
            return -1;
        *out = ones == 9 ? (int8_t)v : (int16_t)v;
    }
    return 0;
}

int ecg_read_scp(const uint8_t *p, size_t len, const ecg_read_opts *opts, ecg_record **out, dcm_err *err)
{
    *out = NULL;
    if (opts && opts->group != 0)
        return dcm_fail(err, DCM_ENOTFOUND, 0, "group %d asked for, SCP-ECG rhythm data is one group", opts->group);
    scp_section sec[SCP_MAX_SECTION];
    int rc = scp_sections(p, len, sec, err);
    if (rc < 0)
        return rc;
    const scp_section *s3 = &sec[3], *s6 = &sec[6], *s2 = &sec[2];
    if (!s3->body || s3->end < s3->body + 2)
        return dcm_fail(err, ECG_ENOTECG, 0, "SCP-ECG file without lead definitions (section 3)");
    if (!s6->body)
        return dcm_fail(err, ECG_EUNSUPPORTED, 0, "SCP-ECG file without rhythm data (section 6) is not supported");
    if (s2->body && (s2->end < s2->body + 2 || dcm_rd16(p + s2->body, false) != SCP_DEFAULT_TABLE))
        return dcm_fail(err, ECG_EUNSUPPORTED, s2->body,
                        "offset %zu: SCP-ECG custom Huffman tables are not supported (the default table is)",
                        s2->body);
    size_t n_leads = p[s3->body];
    uint8_t flags = p[s3->body + 1];
    if (flags & 1)
        return dcm_fail(err, ECG_EUNSUPPORTED, s3->body,
                        "offset %zu: SCP-ECG reference-beat subtraction is not supported", s3->body);
    if (n_leads == 0 || s3->end < s3->body + 2 + 9 * n_leads)
        return dcm_fail(err, DCM_EVALUE, s3->body, "offset %zu: SCP-ECG lead table unusable", s3->body);
    if ((rc = ecg_check_size(n_leads, 0, 0, err)) < 0)
        return rc;
    uint32_t first = dcm_rd32(p + s3->body + 2, false), last = dcm_rd32(p + s3->body + 6, false);
    for (size_t k = 1; k < n_leads; k++)
        if (dcm_rd32(p + s3->body + 2 + 9 * k, false) != first || dcm_rd32(p + s3->body + 6 + 9 * k, false) != last)
            return dcm_fail(err, ECG_EUNSUPPORTED, s3->body,
                            "offset %zu: SCP-ECG leads over different samples are not supported", s3->body);
    if (first == 0 || last < first)
        return dcm_fail(err, DCM_EVALUE, s3->body, "offset %zu: SCP-ECG sample range %u..%u impossible",
                        s3->body, first, last);
    size_t n = (size_t)last - first + 1;

    size_t b6 = s6->body;
    if (s6->end < b6 + 6 + 2 * n_leads)
        return dcm_fail(err, DCM_ETRUNC, b6, "offset %zu: SCP-ECG section 6 too short", b6);
    uint16_t avm = dcm_rd16(p + b6, false), interval = dcm_rd16(p + b6 + 2, false);
    uint8_t diff = p[b6 + 4], bimodal = p[b6 + 5];
    if (avm == 0 || interval == 0 || diff > 2)
        return dcm_fail(err, DCM_EVALUE, b6, "offset %zu: SCP-ECG amplitude %u nV, interval %u us or "
                        "difference order %u impossible", b6, avm, interval, diff);
    if (bimodal)
        return dcm_fail(err, ECG_EUNSUPPORTED, b6, "offset %zu: SCP-ECG bimodal compression is not supported", b6);
    size_t data = b6 + 6 + 2 * n_leads, total = 0;
    for (size_t k = 0; k < n_leads; k++)
        total += dcm_rd16(p + b6 + 6 + 2 * k, false);
    if (total > s6->end - data)
        return dcm_fail(err, DCM_ETRUNC, data, "offset %zu: SCP-ECG lead data (%zu bytes) exceeds section 6",
                        data, total);
    /* every sample takes at least one bit: bound the count before allocating */
    if (n > (total + 1) * 8)
        return dcm_fail(err, DCM_ETRUNC, data, "offset %zu: %zu samples cannot fit in %zu bytes", data, n, total);
    if ((rc = ecg_check_size(n_leads, n, 0, err)) < 0)
        return rc;
    ecg_record *r = ecg_new(n_leads, n, 1e6 / interval);
    if (!r)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    r->source = ECG_SRC_SCP;
    for (size_t k = 0, at = data; k < n_leads; k++) {
        ecg_lead *l = &r->leads[k];
        size_t nbytes = dcm_rd16(p + b6 + 6 + 2 * k, false);
        const char *name = ecg_lead_from_code(p[s3->body + 2 + 9 * k + 8]);
        if (name)
            snprintf(l->name, sizeof l->name, "%s", name);
        snprintf(l->unit, sizeof l->unit, "uV");
        l->scale = avm / 1000.0;
        bits b = {p + at, nbytes, 0};
        int64_t x1 = 0, x2 = 0; /* the two previous samples */
        for (size_t t = 0; t < n; t++) {
            int32_t d;
            if (default_huffman(&b, &d) < 0) {
                ecg_free(&r);
                return dcm_fail(err, DCM_ETRUNC, at, "offset %zu: SCP-ECG lead %zu ends after %zu of %zu samples",
                                at, k + 1, t, n);
            }
            /* the first `diff` values are samples, the rest differences */
            int64_t v = (diff == 0 || t < diff) ? d : diff == 1 ? d + x1 : d + 2 * x1 - x2;
            if (v > INT32_MAX || v < INT32_MIN) {
                ecg_free(&r);
                return dcm_fail(err, DCM_EVALUE, at, "offset %zu: SCP-ECG lead %zu leaves the 32-bit range", at, k + 1);
            }
            l->samples[t] = (int32_t)v;
            x2 = x1;
            x1 = v;
        }
        at += nbytes;
    }
    for (size_t k = 0; k < n_leads; k++) {
        int32_t lo, hi;
        ecg_lead_range(r, k, &lo, &hi);
        uint8_t bitsneeded = 16;
        while (bitsneeded < 32 && (hi >= (1ll << (bitsneeded - 1)) || lo < -(1ll << (bitsneeded - 1))))
            bitsneeded++;
        r->leads[k].bits = bitsneeded;
    }
    *out = r;
    return 0;
}

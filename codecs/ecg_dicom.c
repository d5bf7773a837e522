/* ecg_dicom.c — ECG records from DICOM Waveform IODs (PS3.3 C.10.9):
 * 12-lead, General ECG, Ambulatory, Hemodynamic ... Waveform Storage.
 * One item of the Waveform Sequence is one multiplex group: its channels
 * share the sampling frequency and sample count, and Waveform Data holds
 * them interleaved (C1S1 C2S1 ... CnS1 C1S2 ...). */
#include <math.h>
#include "codecs/ecg_private.h"

#define T_WAVEFORM_SEQ      DCM_TAG(0x5400, 0x0100)
#define T_BITS_ALLOCATED    DCM_TAG(0x5400, 0x1004)
#define T_INTERPRETATION    DCM_TAG(0x5400, 0x1006)
#define T_WAVEFORM_DATA     DCM_TAG(0x5400, 0x1010)
#define T_N_CHANNELS        DCM_TAG(0x003A, 0x0005)
#define T_N_SAMPLES         DCM_TAG(0x003A, 0x0010)
#define T_FREQUENCY         DCM_TAG(0x003A, 0x001A)
#define T_GROUP_LABEL       DCM_TAG(0x003A, 0x0020)
#define T_CHANNEL_DEF_SEQ   DCM_TAG(0x003A, 0x0200)
#define T_CHANNEL_LABEL     DCM_TAG(0x003A, 0x0203)
#define T_CHANNEL_SOURCE    DCM_TAG(0x003A, 0x0208)
#define T_SENSITIVITY       DCM_TAG(0x003A, 0x0210)
#define T_SENS_UNITS        DCM_TAG(0x003A, 0x0211)
#define T_CORRECTION        DCM_TAG(0x003A, 0x0212)
#define T_BASELINE          DCM_TAG(0x003A, 0x0213)
#define T_BITS_STORED       DCM_TAG(0x003A, 0x021A)
#define T_CODE_VALUE        DCM_TAG(0x0008, 0x0100)
#define T_CODING_SCHEME     DCM_TAG(0x0008, 0x0102)
#define T_CODE_MEANING      DCM_TAG(0x0008, 0x0104)

/* Waveform Sample Interpretation (PS3.3 C.10.9.1.5) -> how to read one sample. */
typedef struct sample_kind {
    const char *name;
    uint8_t     bits;
    uint8_t     is_signed;
} sample_kind;
static const sample_kind sample_kinds[] = {
    {"SB", 8, 1}, {"UB", 8, 0}, {"SS", 16, 1}, {"US", 16, 0}, {"SL", 32, 1}, {"UL", 32, 0},
};

/* The n-th item of sequence element seq, or -1. */
static int32_t nth_item(const dcm_file *f, int32_t seq, int n)
{
    const dcm_elem *e = dcm_at(f, seq);
    int32_t it = e ? e->child : -1;
    for (int i = 0; it >= 0 && i < n; i++)
        it = dcm_at(f, it)->next;
    return it;
}

static int count_items(const dcm_file *f, int32_t seq)
{
    int n = 0;
    const dcm_elem *e = dcm_at(f, seq);
    for (int32_t it = e ? e->child : -1; it >= 0; it = dcm_at(f, it)->next)
        n++;
    return n;
}

static const dcm_elem *child(const dcm_file *f, int32_t parent, uint32_t tag)
{
    int32_t i = dcm_find(f, parent, tag);
    return i >= 0 ? dcm_at(f, i) : NULL;
}

static int get_f64(const dcm_file *f, int32_t parent, uint32_t tag, double *out)
{
    const dcm_elem *e = child(f, parent, tag);
    return e ? dcm_get_f64(f, e, 0, out) : DCM_ENOTFOUND;
}

static int get_str(const dcm_file *f, int32_t parent, uint32_t tag, char *buf, size_t n)
{
    buf[0] = '\0';
    const dcm_elem *e = child(f, parent, tag);
    return e ? dcm_get_str(f, e, -1, buf, n) : DCM_ENOTFOUND;
}

/* Lead number from a Channel Source code: SCPECG "5.6.3-9-<n>", MDC
 * "2:<n>" or its 32-bit form (2 << 16 | n).  0 when not a lead code. */
static unsigned lead_code(const char *scheme, const char *value)
{
    const char *num = NULL;
    if (!strcmp(scheme, "SCPECG") && !strncmp(value, "5.6.3-9-", 8))
        num = value + 8;
    else if (!strcmp(scheme, "MDC") && !strncmp(value, "2:", 2))
        num = value + 2;
    else if (!strcmp(scheme, "MDC")) {
        char *end;
        unsigned long v = strtoul(value, &end, 10);
        return (*end == '\0' && (v >> 16) == 2) ? (unsigned)(v & 0xFFFF) : 0;
    }
    if (!num || !*num)
        return 0;
    char *end;
    unsigned long v = strtoul(num, &end, 10);
    return *end == '\0' && v < 256 ? (unsigned)v : 0;
}

static void channel_name(const dcm_file *f, int32_t def, ecg_lead *l)
{
    char value[72], scheme[72], text[72];
    int32_t src_seq = dcm_find(f, def, T_CHANNEL_SOURCE);
    int32_t src = src_seq >= 0 ? nth_item(f, src_seq, 0) : -1;
    if (src >= 0) {
        get_str(f, src, T_CODE_VALUE, value, sizeof value);
        get_str(f, src, T_CODING_SCHEME, scheme, sizeof scheme);
        const char *name = ecg_lead_from_code(lead_code(scheme, value));
        if (name) {
            snprintf(l->name, sizeof l->name, "%s", name);
            return;
        }
    }
    if (get_str(f, def, T_CHANNEL_LABEL, text, sizeof text) > 0 ||
        (src >= 0 && get_str(f, src, T_CODE_MEANING, text, sizeof text) > 0))
        ecg_set_name(l, text, strlen(text));
}

static void channel_scale(const dcm_file *f, int32_t def, ecg_lead *l)
{
    double sens = 1, corr = 1, base = 0;
    if (get_f64(f, def, T_SENSITIVITY, &sens) == 0 && isfinite(sens) && sens > 0) {
        int32_t us = dcm_find(f, def, T_SENS_UNITS);
        int32_t item = us >= 0 ? nth_item(f, us, 0) : -1;
        char unit[72];
        if (item >= 0 && get_str(f, item, T_CODE_VALUE, unit, sizeof unit) > 0)
            ecg_copy_trim(l->unit, sizeof l->unit, unit, strlen(unit));
    } else {
        sens = 1;
    }
    if (get_f64(f, def, T_CORRECTION, &corr) < 0 || !isfinite(corr) || corr <= 0)
        corr = 1;
    l->scale = sens * corr;
    if (!isfinite(l->scale) || l->scale <= 0)
        l->scale = 1;
    /* PS3.3 C.10.9.1.4.3: the baseline is the physical value of count 0. */
    if (get_f64(f, def, T_BASELINE, &base) == 0 && isfinite(base))
        l->baseline = base != 0 ? -base / l->scale : 0;
    uint32_t bits;
    const dcm_elem *e = child(f, def, T_BITS_STORED);
    if (e && dcm_get_u32(f, e, 0, &bits) == 0 && bits >= 1 && bits <= 32)
        l->bits = (uint8_t)bits;
}

static int32_t read_sample(const uint8_t *p, const sample_kind *k, bool be)
{
    switch (k->bits) {
    case 8:
        return k->is_signed ? (int8_t)p[0] : p[0];
    case 16:
        return k->is_signed ? (int16_t)dcm_rd16(p, be) : dcm_rd16(p, be);
    default:
        return (int32_t)dcm_rd32(p, be);
    }
}

int ecg_read_dicom(const dcm_file *f, const ecg_read_opts *opts, ecg_record **out, dcm_err *err)
{
    *out = NULL;
    int want = opts ? opts->group : 0;
    int32_t ws = dcm_find(f, -1, T_WAVEFORM_SEQ);
    if (ws < 0)
        return dcm_fail(err, ECG_ENOTECG, 0, "no Waveform Sequence (5400,0100): not a waveform object");
    int groups = count_items(f, ws);
    if (groups == 0)
        return dcm_fail(err, ECG_ENOTECG, 0, "the Waveform Sequence (5400,0100) is empty");
    if (want < 0 || want >= groups)
        return dcm_fail(err, DCM_ENOTFOUND, 0, "multiplex group %d asked for, the file has %d", want, groups);
    int32_t item = nth_item(f, ws, want);
    size_t at = dcm_at(f, item)->offset;

    uint32_t n_ch = 0, n_samp = 0, bits_alloc = 0;
    double rate = 0;
    const dcm_elem *e;
    if (!(e = child(f, item, T_N_CHANNELS)) || dcm_get_u32(f, e, 0, &n_ch) < 0 ||
        !(e = child(f, item, T_N_SAMPLES)) || dcm_get_u32(f, e, 0, &n_samp) < 0 ||
        !(e = child(f, item, T_BITS_ALLOCATED)) || dcm_get_u32(f, e, 0, &bits_alloc) < 0 ||
        get_f64(f, item, T_FREQUENCY, &rate) < 0)
        return dcm_fail(err, DCM_EVALUE, at,
                        "offset %zu: multiplex group %d lacks channels, samples, bits allocated or frequency",
                        at, want);
    if (!isfinite(rate) || rate <= 0 || rate > 1e6)
        return dcm_fail(err, DCM_EVALUE, at, "offset %zu: sampling frequency %g is impossible", at, rate);
    char interp[16];
    get_str(f, item, T_INTERPRETATION, interp, sizeof interp);
    const sample_kind *kind = NULL;
    for (size_t i = 0; i < sizeof sample_kinds / sizeof sample_kinds[0]; i++)
        if (!strcmp(interp, sample_kinds[i].name) && sample_kinds[i].bits == bits_alloc)
            kind = &sample_kinds[i];
    if (!kind)
        return dcm_fail(err, ECG_EUNSUPPORTED, at,
                        "offset %zu: waveform samples '%.4s' with %u bits allocated are not supported "
                        "(SB/UB 8, SS/US 16, SL/UL 32 are)", at, interp, bits_alloc);
    int rc = ecg_check_size(n_ch, n_samp, 0, err);
    if (rc < 0)
        return rc;
    const dcm_elem *data = child(f, item, T_WAVEFORM_DATA);
    size_t need = (size_t)n_ch * n_samp * (kind->bits / 8);
    if (!data || !data->value)
        return dcm_fail(err, DCM_ENOTFOUND, at, "offset %zu: multiplex group %d has no Waveform Data", at, want);
    if (data->value_len < need)
        return dcm_fail(err, DCM_ETRUNC, data->offset,
                        "offset %zu: Waveform Data holds %zu bytes, %u channels x %u samples need %zu",
                        data->offset, data->value_len, n_ch, n_samp, need);

    ecg_record *r = ecg_new(n_ch, n_samp, rate);
    if (!r)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    r->source = ECG_SRC_DICOM;
    r->group = want;
    r->n_groups = groups;
    char label[72];
    if (get_str(f, item, T_GROUP_LABEL, label, sizeof label) > 0)
        ecg_copy_trim(r->label, sizeof r->label, label, strlen(label));

    int32_t defs = dcm_find(f, item, T_CHANNEL_DEF_SEQ);
    int32_t def = defs >= 0 ? dcm_at(f, defs)->child : -1;
    for (size_t c = 0; c < n_ch; c++) {
        ecg_lead *l = &r->leads[c];
        l->bits = kind->bits;
        if (def >= 0) { /* a missing definition leaves "chN", scale 1 */
            channel_name(f, def, l);
            channel_scale(f, def, l);
            def = dcm_at(f, def)->next;
        }
    }
    bool be = dcm_is_big_endian_node(data);
    size_t step = kind->bits / 8;
    const uint8_t *p = data->value;
    for (size_t s = 0; s < n_samp; s++)
        for (size_t c = 0; c < n_ch; c++, p += step)
            r->leads[c].samples[s] = read_sample(p, kind, be);
    *out = r;
    return 0;
}

/* test_ecg_readers.c — the ECG model and its readers: lead names, DICOM
 * waveform groups built by hand, WFDB headers and formats from memory,
 * HL7 aECG documents, format detection; each reader's refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "codecs/codecs.h"

/* ---- names and the model ------------------------------------------------- */

static void check_name(const char *label, const char *want, int standard)
{
    char out[ECG_NAME_MAX];
    assert_int_equal(ecg_normalise_lead(label, strlen(label), out, sizeof out), standard);
    assert_string_equal(out, want);
}

static void test_lead_names_normalise_to_standard_spelling(void **state)
{
    (void)state;
    check_name("i", "I", 1);
    check_name("ii", "II", 1);
    check_name("avr", "aVR", 1);
    check_name("AVL", "aVL", 1);
    check_name("v6", "V6", 1);
    check_name("MDC_ECG_LEAD_AVF", "aVF", 1);
    check_name("Lead I (Einthoven)", "I", 1);
    check_name("Lead aVR", "aVR", 1);
    check_name(" ECG III ", "III", 1);
    check_name("MLII", "MLII", 0); /* modified lead II is not lead II */
    check_name("vx", "vx", 0);
    check_name("Pressure  ", "Pressure", 0);
}

static void test_new_record_defaults_and_free_nulls(void **state)
{
    (void)state;
    ecg_record *r = ecg_new(3, 10, 500);
    assert_non_null(r);
    assert_string_equal(r->leads[2].name, "ch3");
    assert_true(r->leads[0].scale == 1.0);
    assert_int_equal(r->n_groups, 1);
    assert_ptr_equal(r->leads[1].samples, r->leads[0].samples + 10);
    ecg_free(&r);
    assert_null(r);
    ecg_free(&r);
    assert_null(ecg_new(0, 10, 500));
    assert_null(ecg_new(ECG_MAX_LEADS + 1, 10, 500));
    assert_null(ecg_new(2, ECG_MAX_TOTAL, 500));
}

static void test_uv_per_count_folds_units(void **state)
{
    (void)state;
    ecg_lead l = {.scale = 0.005};
    snprintf(l.unit, sizeof l.unit, "mV");
    assert_true(ecg_uv_per_count(&l) > 4.999 && ecg_uv_per_count(&l) < 5.001);
    snprintf(l.unit, sizeof l.unit, "uV");
    assert_true(ecg_uv_per_count(&l) == 0.005);
    snprintf(l.unit, sizeof l.unit, "mmHg");
    assert_true(ecg_uv_per_count(&l) == 0);
}

/* ---- DICOM, built by hand (explicit VR little endian, no meta) ---------- */

typedef struct wbuf {
    uint8_t p[8192];
    size_t  n;
} wbuf;

static void put(wbuf *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof b->p);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void tag(wbuf *b, uint16_t g, uint16_t e)
{
    uint8_t t[4] = {(uint8_t)g, (uint8_t)(g >> 8), (uint8_t)e, (uint8_t)(e >> 8)};
    put(b, t, 4);
}
static void elem(wbuf *b, uint16_t g, uint16_t e, const char *vr, const void *v, size_t n)
{
    tag(b, g, e);
    put(b, vr, 2);
    int is_long = !strcmp(vr, "OW") || !strcmp(vr, "OB") || !strcmp(vr, "SQ");
    if (is_long) {
        uint8_t l[6] = {0, 0, (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
        put(b, l, 6);
    } else {
        uint8_t l[2] = {(uint8_t)n, (uint8_t)(n >> 8)};
        put(b, l, 2);
    }
    put(b, v, n);
}
static void str(wbuf *b, uint16_t g, uint16_t e, const char *vr, const char *s)
{
    char tmp[128];
    size_t n = strlen(s);
    memcpy(tmp, s, n);
    if (n & 1)
        tmp[n++] = ' ';
    elem(b, g, e, vr, tmp, n);
}
static void us(wbuf *b, uint16_t g, uint16_t e, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    elem(b, g, e, "US", x, 2);
}
static void ul(wbuf *b, uint16_t g, uint16_t e, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    elem(b, g, e, "UL", x, 4);
}
static void sq_start(wbuf *b, uint16_t g, uint16_t e)
{
    elem(b, g, e, "SQ", "", 0);
    b->n -= 4;
    uint8_t und[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    put(b, und, 4);
}
static void item_start(wbuf *b)
{
    tag(b, 0xFFFE, 0xE000);
    uint8_t und[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    put(b, und, 4);
}
static void item_end(wbuf *b)
{
    tag(b, 0xFFFE, 0xE00D);
    uint8_t z[4] = {0};
    put(b, z, 4);
}
static void sq_end(wbuf *b)
{
    tag(b, 0xFFFE, 0xE0DD);
    uint8_t z[4] = {0};
    put(b, z, 4);
}

static void channel(wbuf *b, const char *scheme, const char *code, const char *meaning, const char *sens,
                    const char *unit, const char *baseline)
{
    item_start(b);
    sq_start(b, 0x003A, 0x0208);
    item_start(b);
    str(b, 0x0008, 0x0100, "SH", code);
    str(b, 0x0008, 0x0102, "SH", scheme);
    str(b, 0x0008, 0x0104, "LO", meaning);
    item_end(b);
    sq_end(b);
    str(b, 0x003A, 0x0210, "DS", sens);
    sq_start(b, 0x003A, 0x0211);
    item_start(b);
    str(b, 0x0008, 0x0100, "SH", unit);
    str(b, 0x0008, 0x0102, "SH", "UCUM");
    item_end(b);
    sq_end(b);
    str(b, 0x003A, 0x0212, "DS", "1");
    str(b, 0x003A, 0x0213, "DS", baseline);
    us(b, 0x003A, 0x021A, 12);
    item_end(b);
}

/* Two groups: a 3-channel SS group at 500 Hz and a 1-channel SB group. */
static size_t build_waveform(wbuf *b, const char *interp, size_t data_bytes)
{
    b->n = 0;
    str(b, 0x0008, 0x0060, "CS", "ECG");
    sq_start(b, 0x5400, 0x0100);
    item_start(b);
    us(b, 0x003A, 0x0005, 3);
    ul(b, 0x003A, 0x0010, 4);
    str(b, 0x003A, 0x001A, "DS", "500");
    str(b, 0x003A, 0x0020, "SH", "RHYTHM");
    sq_start(b, 0x003A, 0x0200);
    channel(b, "SCPECG", "5.6.3-9-62", "Lead aVR", "2.5", "uV", "0");
    channel(b, "MDC", "2:1", "Lead I", "0.005", "mV", "0.1");
    channel(b, "XYZ", "99", "Lead V3 (chest)", "1", "uV", "0");
    sq_end(b);
    us(b, 0x5400, 0x1004, 16);
    str(b, 0x5400, 0x1006, "CS", interp);
    int16_t v[12] = {1, -2, 3, 100, -200, 300, -32768, 32767, 0, 5, 6, 7};
    uint8_t bytes[24];
    for (int i = 0; i < 12; i++) {
        bytes[2 * i] = (uint8_t)v[i];
        bytes[2 * i + 1] = (uint8_t)((uint16_t)v[i] >> 8);
    }
    elem(b, 0x5400, 0x1010, "OW", bytes, data_bytes);
    item_end(b);
    item_start(b);
    us(b, 0x003A, 0x0005, 1);
    ul(b, 0x003A, 0x0010, 2);
    str(b, 0x003A, 0x001A, "DS", "100");
    us(b, 0x5400, 0x1004, 8);
    str(b, 0x5400, 0x1006, "CS", "SB");
    uint8_t sb[2] = {0xFF, 0x05};
    elem(b, 0x5400, 0x1010, "OB", sb, 2);
    item_end(b);
    sq_end(b);
    return b->n;
}

static int read_dicom(const wbuf *b, int group, ecg_record **r, dcm_err *err)
{
    dcm_file *f = NULL;
    int rc = dcm_parse(b->p, b->n, NULL, &f, err);
    if (rc)
        return rc;
    ecg_read_opts o = {.group = group};
    rc = ecg_read_dicom(f, &o, r, err);
    dcm_free(&f);
    return rc;
}

static void test_dicom_demultiplexes_channels_with_sensitivity_and_baseline(void **state)
{
    (void)state;
    wbuf b;
    build_waveform(&b, "SS", 24);
    ecg_record *r = NULL;
    dcm_err err = {0};
    int rc = read_dicom(&b, 0, &r, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_int_equal(r->n_leads, 3);
    assert_int_equal(r->n_samples, 4);
    assert_true(r->rate == 500);
    assert_int_equal(r->n_groups, 2);
    assert_string_equal(r->label, "RHYTHM");
    assert_int_equal(r->source, ECG_SRC_DICOM);
    assert_string_equal(r->leads[0].name, "aVR"); /* SCPECG code */
    assert_string_equal(r->leads[1].name, "I");   /* MDC code */
    assert_string_equal(r->leads[2].name, "V3");  /* unknown scheme: code meaning */
    assert_string_equal(r->leads[0].unit, "uV");
    assert_string_equal(r->leads[1].unit, "mV");
    assert_true(r->leads[0].scale == 2.5);
    /* baseline 0.1 mV at 0.005 mV/count: count -20 is physical zero */
    assert_true(r->leads[1].baseline > -20.0001 && r->leads[1].baseline < -19.9999);
    assert_int_equal(r->leads[1].bits, 12);
    int32_t want0[4] = {1, 100, -32768, 5}, want2[4] = {3, 300, 0, 7};
    assert_memory_equal(r->leads[0].samples, want0, sizeof want0);
    assert_memory_equal(r->leads[2].samples, want2, sizeof want2);
    ecg_free(&r);
}

static void test_dicom_reads_unsigned_and_8_bit_groups(void **state)
{
    (void)state;
    wbuf b;
    build_waveform(&b, "US", 24);
    ecg_record *r = NULL;
    dcm_err err = {0};
    assert_int_equal(read_dicom(&b, 0, &r, &err), 0);
    assert_int_equal(r->leads[0].samples[2], 32768);
    ecg_free(&r);
    assert_int_equal(read_dicom(&b, 1, &r, &err), 0);
    assert_int_equal(r->n_leads, 1);
    assert_int_equal(r->leads[0].samples[0], -1);
    assert_int_equal(r->leads[0].samples[1], 5);
    assert_string_equal(r->leads[0].name, "ch1");
    ecg_free(&r);
}

static void test_dicom_refuses_short_data_missing_group_and_mulaw(void **state)
{
    (void)state;
    wbuf b;
    ecg_record *r = NULL;
    dcm_err err = {0};
    build_waveform(&b, "SS", 22);
    assert_int_equal(read_dicom(&b, 0, &r, &err), DCM_ETRUNC);
    assert_non_null(strstr(err.msg, "Waveform Data holds 22 bytes"));
    build_waveform(&b, "SS", 24);
    assert_int_equal(read_dicom(&b, 2, &r, &err), DCM_ENOTFOUND);
    build_waveform(&b, "MB", 24);
    assert_int_equal(read_dicom(&b, 0, &r, &err), ECG_EUNSUPPORTED);
    assert_null(r);
    /* a data set without waveforms */
    b.n = 0;
    str(&b, 0x0008, 0x0060, "CS", "CT");
    assert_int_equal(read_dicom(&b, 0, &r, &err), ECG_ENOTECG);
}

/* ---- WFDB ---------------------------------------------------------------- */

static int wfdb(const char *hea, const uint8_t *data, size_t len, ecg_record **r, dcm_err *err)
{
    ecg_wfdb_file f = {NULL, data, len};
    return ecg_read_wfdb_mem(hea, strlen(hea), &f, 1, NULL, r, err);
}

static void test_wfdb_format_212_packs_two_samples_in_three_bytes(void **state)
{
    (void)state;
    /* samples (a0,b0,a1,b1): 0x123, -1 (0xFFF), -2048 (0x800), 2047 (0x7FF) */
    const uint8_t d[6] = {0x23, 0xF1, 0xFF, 0x00, 0x78, 0xFF};
    const char *hea = "# comment\nrec 2 360 2\nrec.dat 212 200(1024)/mV 11 1024 291 -1757 0 MLII\n"
                      "rec.dat 212 0 11 0 -1 2046 0 V5\n";
    ecg_record *r = NULL;
    dcm_err err = {0};
    int rc = wfdb(hea, d, sizeof d, &r, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_true(r->rate == 360);
    assert_int_equal(r->leads[0].samples[0], 0x123);
    assert_int_equal(r->leads[1].samples[0], -1);
    assert_int_equal(r->leads[0].samples[1], -2048);
    assert_int_equal(r->leads[1].samples[1], 2047);
    assert_true(r->leads[0].scale == 1.0 / 200);
    assert_true(r->leads[0].baseline == 1024);
    assert_true(r->leads[1].scale == 1.0 / 200); /* gain 0: WFDB's default 200 */
    assert_true(r->leads[1].baseline == 0);      /* no baseline: adczero */
    assert_string_equal(r->leads[0].name, "MLII");
    assert_string_equal(r->leads[0].unit, "mV");
    assert_int_equal(r->leads[0].bits, 11);
    ecg_free(&r);
}

static void test_wfdb_formats_16_61_80_160_24_32_and_8(void **state)
{
    (void)state;
    static const struct { const char *fmt; uint8_t data[12]; size_t len; int32_t want[2]; } cases[] = {
        {"16", {0x01, 0x80, 0xFF, 0x7F}, 4, {-32767, 32767}},
        {"61", {0x80, 0x01, 0x7F, 0xFF}, 4, {-32767, 32767}},
        {"80", {0x00, 0xFF}, 2, {-128, 127}},
        {"160", {0x00, 0x00, 0xFF, 0xFF}, 4, {-32768, 32767}},
        {"24", {0x00, 0x00, 0x80, 0xFF, 0xFF, 0x7F}, 6, {-8388608, 8388607}},
        {"32", {0x01, 0x00, 0x00, 0x80, 0xFF, 0xFF, 0xFF, 0x7F}, 8, {-2147483647, 2147483647}},
        {"8", {0x05, 0xFE}, 2, {15, 13}}, /* differences from initval 10 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char hea[256];
        int16_t sum = (int16_t)(uint16_t)((uint32_t)cases[i].want[0] + (uint32_t)cases[i].want[1]);
        snprintf(hea, sizeof hea, "r 1 250 2\nr.dat %s 100 12 0 10 %d 0 ii\n", cases[i].fmt, sum);
        ecg_record *r = NULL;
        dcm_err err = {0};
        int rc = wfdb(hea, cases[i].data, cases[i].len, &r, &err);
        if (rc)
            fail_msg("format %s: %s", cases[i].fmt, err.msg);
        assert_int_equal(r->leads[0].samples[0], cases[i].want[0]);
        assert_int_equal(r->leads[0].samples[1], cases[i].want[1]);
        assert_string_equal(r->leads[0].name, "II");
        ecg_free(&r);
    }
}

static void test_wfdb_byte_offset_and_length_from_file(void **state)
{
    (void)state;
    const uint8_t d[7] = {0xAA, 1, 0, 2, 0, 3, 0};
    ecg_record *r = NULL;
    dcm_err err = {0};
    assert_int_equal(wfdb("r 1\nr.dat 16+1\n", d, sizeof d, &r, &err), 0);
    assert_int_equal(r->n_samples, 3);
    assert_true(r->rate == 250); /* WFDB's default frequency */
    assert_int_equal(r->leads[0].samples[2], 3);
    ecg_free(&r);
}

static void test_wfdb_refusals(void **state)
{
    (void)state;
    const uint8_t d[8] = {1, 0, 2, 0, 3, 0, 4, 0};
    static const struct { const char *hea; int rc; const char *msg; } cases[] = {
        {"r 1 250 4\nr.dat 16 200 16 0 0 99 0 I\n", DCM_EVALUE, "checksum"},
        {"r 1 250 5\nr.dat 16\n", DCM_ETRUNC, "holds 4 samples"},
        {"r/2 1 250 5\nr.dat 16\n", ECG_EUNSUPPORTED, "multi-segment"},
        {"r 1 250 4\nr.dat 310\n", ECG_EUNSUPPORTED, "format 310"},
        {"r 1 250 4\nr.dat 16x2\n", ECG_EUNSUPPORTED, "samples per frame"},
        {"r 1 250 4\n../r.dat 16\n", DCM_EVALUE, "refused"},
        {"r 2 250 4\nr.dat 16\n", DCM_ETRUNC, "1 of 2 signal lines"},
        {"r 65 250 4\n", DCM_ETOOBIG, "65 signals"},
        {"r x 250\n", DCM_EVALUE, "number of signals"},
        {"r 1 -5\nr.dat 16\n", DCM_EVALUE, "sampling frequency"},
        {"# only comments\n", ECG_ENOTECG, "no record line"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ecg_record *r = NULL;
        dcm_err err = {0};
        int rc = wfdb(cases[i].hea, d, sizeof d, &r, &err);
        if (rc != cases[i].rc || !strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: rc %d, message '%s'", i, rc, err.msg);
        assert_null(r);
    }
}

static void test_wfdb_missing_signal_file_is_named(void **state)
{
    (void)state;
    ecg_wfdb_file f = {"other.dat", (const uint8_t *)"\0\0", 2};
    ecg_record *r = NULL;
    dcm_err err = {0};
    const char *hea = "r 1 250\nr.dat 16\n";
    assert_int_equal(ecg_read_wfdb_mem(hea, strlen(hea), &f, 1, NULL, &r, &err), DCM_ENOTFOUND);
    assert_non_null(strstr(err.msg, "r.dat"));
}

/* ---- HL7 aECG ------------------------------------------------------------ */

static const char aecg_head[] =
    "<?xml version=\"1.0\"?>\n<AnnotatedECG xmlns=\"urn:hl7-org:v3\" "
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n"
    "<component><series><code code=\"RHYTHM\"/><component><sequenceSet>\n"
    "<component><sequence><code code=\"TIME_ABSOLUTE\"/><value xsi:type=\"GLIST_TS\">"
    "<head value=\"20020101\"/><increment value=\"%s\" unit=\"%s\"/></value></sequence></component>\n";

static int aecg(const char *incr, const char *unit, const char *leads, ecg_record **r, dcm_err *err)
{
    char doc[4096];
    int n = snprintf(doc, sizeof doc, aecg_head, incr, unit);
    n += snprintf(doc + n, sizeof doc - (size_t)n, "%s</sequenceSet></component></series></component>"
                  "</AnnotatedECG>\n", leads);
    return ecg_read_aecg((const uint8_t *)doc, (size_t)n, NULL, r, err);
}

#define LEAD(code, origin, ounit, scale, digits)                                                   \
    "<component><sequence><code code=\"" code "\"/><value xsi:type=\"SLIST_PQ\"><origin value=\"" \
    origin "\" unit=\"" ounit "\"/><scale value=\"" scale "\" unit=\"uV\"/><digits>" digits        \
    "</digits></value></sequence></component>\n"

static void test_aecg_reads_origin_scale_digits_and_rate(void **state)
{
    (void)state;
    ecg_record *r = NULL;
    dcm_err err = {0};
    int rc = aecg("2", "ms", LEAD("MDC_ECG_LEAD_AVR", "10", "uV", "2.5", " 1 -2\n 3 ")
                               LEAD("MDC_ECG_LEAD_V2", "0.005", "mV", "5", "4 5 -6"), &r, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_true(r->rate > 499.999 && r->rate < 500.001);
    assert_int_equal(r->n_leads, 2);
    assert_int_equal(r->n_samples, 3);
    assert_string_equal(r->leads[0].name, "aVR");
    assert_string_equal(r->leads[1].name, "V2");
    assert_string_equal(r->label, "RHYTHM");
    assert_int_equal(r->leads[0].samples[1], -2);
    assert_int_equal(r->leads[1].samples[2], -6);
    /* origin 10 uV at 2.5 uV/count: count -4 is physical zero */
    assert_true(r->leads[0].baseline == -4);
    /* origin 0.005 mV = 5 uV at 5 uV/count: count -1 */
    assert_true(r->leads[1].baseline > -1.0001 && r->leads[1].baseline < -0.9999);
    ecg_free(&r);
}

static void test_aecg_refusals(void **state)
{
    (void)state;
    ecg_record *r = NULL;
    dcm_err err = {0};
    assert_int_equal(aecg("0.002", "s", LEAD("MDC_ECG_LEAD_I", "0", "uV", "1", "1 2.5 3"), &r, &err), DCM_EVALUE);
    assert_non_null(strstr(err.msg, "digit 2"));
    assert_int_equal(aecg("0.002", "s", LEAD("MDC_ECG_LEAD_I", "0", "uV", "1", "1 2 3")
                                        LEAD("MDC_ECG_LEAD_II", "0", "uV", "1", "1 2"), &r, &err),
                     ECG_EUNSUPPORTED);
    assert_int_equal(aecg("0.002", "furlong", LEAD("MDC_ECG_LEAD_I", "0", "uV", "1", "1"), &r, &err),
                     ECG_EUNSUPPORTED);
    assert_int_equal(aecg("0.002", "s", "", &r, &err), ECG_ENOTECG);
    assert_int_equal(aecg("0.002", "s", LEAD("MDC_ECG_LEAD_I", "3", "mmHg", "1", "1 2"), &r, &err),
                     ECG_EUNSUPPORTED); /* found by fuzz_ecg_aecg: the message read a freed lead */
    assert_non_null(strstr(err.msg, "'mmHg' differs from scale unit 'uV'"));
    assert_int_equal(aecg("0.002", "s", LEAD("MDC_ECG_LEAD_I", "0", "uV", "-1", "1"), &r, &err), DCM_EVALUE);
    const char *other = "<html><body/></html>";
    assert_int_equal(ecg_read_aecg((const uint8_t *)other, strlen(other), NULL, &r, &err), ECG_ENOTECG);
    const char *broken = "<AnnotatedECG><component>";
    assert_int_equal(ecg_read_aecg((const uint8_t *)broken, strlen(broken), NULL, &r, &err), ECG_ENOTECG);
    assert_null(r);
}

static void test_aecg_does_not_expand_external_entities(void **state)
{
    (void)state;
    const char *xxe = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                      "<AnnotatedECG><component><series><component><sequenceSet>"
                      "<component><sequence><value><increment value=\"1\" unit=\"s\"/></value></sequence></component>"
                      "<component><sequence><value><digits>&x;</digits></value></sequence></component>"
                      "</sequenceSet></component></series></component></AnnotatedECG>";
    ecg_record *r = NULL;
    dcm_err err = {0};
    int rc = ecg_read_aecg((const uint8_t *)xxe, strlen(xxe), NULL, &r, &err);
    /* the entity stays unexpanded: no digits, or no document at all */
    if (rc == 0) {
        assert_int_equal(r->n_samples, 0);
        ecg_free(&r);
    }
}

static uint32_t dcm_rd32_test(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- the corpus and detection -------------------------------------------- */

static const char *corpus(void)
{
    const char *c = getenv("DXHUB_CORPUS");
    return c && *c ? c : "../shared/corpus";
}

static void test_mitdb_100_first_samples_match_header_initial_values(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/ecg/wfdb/mitdb/100.dat", corpus());
    ecg_record *r = NULL;
    dcm_err err = {0};
    int src = 0;
    int rc = ecg_open(path, NULL, &r, &src, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_int_equal(src, ECG_SRC_WFDB);
    assert_int_equal(r->n_samples, 650000);
    assert_int_equal(r->leads[0].samples[0], 995); /* the header's initial values */
    assert_int_equal(r->leads[1].samples[0], 1011);
    assert_string_equal(r->leads[1].name, "V5");
    ecg_free(&r);
}

static void test_open_reads_scp_ecg_example(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/ecg/scp/Example.scp", corpus());
    ecg_record *r = NULL;
    dcm_err err = {0};
    int src = 0;
    int rc = ecg_open(path, NULL, &r, &src, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_int_equal(src, ECG_SRC_SCP);
    assert_int_equal(r->n_leads, 12);
    assert_int_equal(r->n_samples, 5000);
    assert_true(r->rate == 500);
    assert_string_equal(r->leads[8].name, "III");
    assert_true(r->leads[0].scale == 2.5);
    ecg_free(&r);
}

/* A synthetic SCP-ECG file: sections 0, 2 (default table), 3, 6. */
typedef struct scp_buf {
    uint8_t p[1024];
    size_t  n;
} scp_buf;

static void le16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void le32(uint8_t *p, uint32_t v) { le16(p, v & 0xFFFF); le16(p + 2, v >> 16); }

static size_t scp_section(scp_buf *b, unsigned id, const uint8_t *body, size_t n)
{
    size_t at = b->n;
    memset(b->p + at, 0, 16);
    le16(b->p + at + 2, id);
    le32(b->p + at + 4, (uint32_t)(16 + n));
    b->p[at + 8] = b->p[at + 9] = 20;
    memcpy(b->p + at + 10, "SCPECG", 6);
    memcpy(b->p + at + 16, body, n);
    b->n += 16 + n;
    return at;
}

/* Two leads (I, aVR) of 4 samples, second differences: lead I codes
 * 10, 12 (8-bit escapes: the first two are samples), +1, -2, giving
 * 10 12 15 16; lead aVR codes -100 (escape), 0, 0, 0, giving -100 0 100 200. */
static void build_scp(scp_buf *b, uint8_t flags3, uint8_t bimodal, unsigned table)
{
    b->n = 6;
    uint8_t ptrs[3 * 10] = {0};
    size_t s0 = scp_section(b, 0, ptrs, sizeof ptrs); /* filled below */
    uint8_t s2[2];
    le16(s2, table);
    size_t at2 = scp_section(b, 2, s2, 2);
    uint8_t s3[2 + 18] = {2, flags3};
    le32(s3 + 2, 1), le32(s3 + 6, 4), s3[10] = 1;
    le32(s3 + 11, 1), le32(s3 + 15, 4), s3[19] = 62;
    size_t at3 = scp_section(b, 3, s3, sizeof s3);
    /* lead I: 10 = escape 8-bit (1111111110 00001010), 12 = escape (..00001100),
     * +1 = 100, -2 = 11011 -> bits, packed MSB first */
    const char *bits1 = "1111111110" "00001010" "1111111110" "00001100" "100" "11011";
    const char *bits2 = "1111111110" "10011100" "0" "0" "0";
    uint8_t d[32] = {0};
    size_t nb1 = (strlen(bits1) + 7) / 8, nb2 = (strlen(bits2) + 7) / 8;
    for (size_t i = 0; bits1[i]; i++)
        d[i / 8] |= (uint8_t)((bits1[i] - '0') << (7 - i % 8));
    for (size_t i = 0; bits2[i]; i++)
        d[nb1 + i / 8] |= (uint8_t)((bits2[i] - '0') << (7 - i % 8));
    uint8_t s6[6 + 4 + 32] = {0};
    le16(s6, 5000);       /* AVM 5000 nV */
    le16(s6 + 2, 4000);   /* 250 Hz */
    s6[4] = 2;
    s6[5] = bimodal;
    le16(s6 + 6, (unsigned)nb1);
    le16(s6 + 8, (unsigned)nb2);
    memcpy(s6 + 10, d, nb1 + nb2);
    size_t at6 = scp_section(b, 6, s6, 10 + nb1 + nb2);
    size_t ats[3] = {at2, at3, at6};
    unsigned ids[3] = {2, 3, 6};
    for (int i = 0; i < 3; i++) {
        uint8_t *e = b->p + s0 + 16 + 10 * (size_t)i;
        le16(e, ids[i]);
        le32(e + 2, (uint32_t)dcm_rd32_test(b->p + ats[i] + 4));
        le32(e + 6, (uint32_t)(ats[i] + 1));
    }
    le32(b->p + 2, (uint32_t)b->n);
}

static void test_scp_default_huffman_and_second_differences(void **state)
{
    (void)state;
    scp_buf b;
    build_scp(&b, 0x14, 0, 19999);
    ecg_record *r = NULL;
    dcm_err err = {0};
    int rc = ecg_read_scp(b.p, b.n, NULL, &r, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_true(r->rate == 250);
    assert_string_equal(r->leads[0].name, "I");
    assert_string_equal(r->leads[1].name, "aVR");
    assert_true(r->leads[0].scale == 5.0);
    int32_t want1[4] = {10, 12, 15, 16}, want2[4] = {-100, 0, 100, 200};
    assert_memory_equal(r->leads[0].samples, want1, sizeof want1);
    assert_memory_equal(r->leads[1].samples, want2, sizeof want2);
    ecg_free(&r);
}

static void test_scp_refusals_name_the_reason(void **state)
{
    (void)state;
    scp_buf b;
    ecg_record *r = NULL;
    dcm_err err = {0};
    build_scp(&b, 0x15, 0, 19999);
    assert_int_equal(ecg_read_scp(b.p, b.n, NULL, &r, &err), ECG_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "reference-beat"));
    build_scp(&b, 0x14, 1, 19999);
    assert_int_equal(ecg_read_scp(b.p, b.n, NULL, &r, &err), ECG_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "bimodal"));
    build_scp(&b, 0x14, 0, 1);
    assert_int_equal(ecg_read_scp(b.p, b.n, NULL, &r, &err), ECG_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "Huffman"));
    build_scp(&b, 0x14, 0, 19999);
    for (size_t n = 0; n < b.n; n++) /* every truncation fails cleanly */
        assert_true(ecg_read_scp(b.p, n, NULL, &r, &err) < 0);
    assert_null(r);
}

static void test_open_refuses_non_ecg_files(void **state)
{
    (void)state;
    char path[] = "/tmp/dxhub_ecg_testXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char junk[] = "this is not an ECG at all, just some text of no known format....";
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    ecg_record *r = NULL;
    dcm_err err = {0};
    assert_int_equal(ecg_open(path, NULL, &r, NULL, &err), ECG_ENOTECG);
    unlink(path);
    assert_true(ecg_open("/nonexistent/dxhub/x.dcm", NULL, &r, NULL, &err) < 0);
    assert_null(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lead_names_normalise_to_standard_spelling),
        cmocka_unit_test(test_new_record_defaults_and_free_nulls),
        cmocka_unit_test(test_uv_per_count_folds_units),
        cmocka_unit_test(test_dicom_demultiplexes_channels_with_sensitivity_and_baseline),
        cmocka_unit_test(test_dicom_reads_unsigned_and_8_bit_groups),
        cmocka_unit_test(test_dicom_refuses_short_data_missing_group_and_mulaw),
        cmocka_unit_test(test_wfdb_format_212_packs_two_samples_in_three_bytes),
        cmocka_unit_test(test_wfdb_formats_16_61_80_160_24_32_and_8),
        cmocka_unit_test(test_wfdb_byte_offset_and_length_from_file),
        cmocka_unit_test(test_wfdb_refusals),
        cmocka_unit_test(test_wfdb_missing_signal_file_is_named),
        cmocka_unit_test(test_aecg_reads_origin_scale_digits_and_rate),
        cmocka_unit_test(test_aecg_refusals),
        cmocka_unit_test(test_aecg_does_not_expand_external_entities),
        cmocka_unit_test(test_mitdb_100_first_samples_match_header_initial_values),
        cmocka_unit_test(test_open_reads_scp_ecg_example),
        cmocka_unit_test(test_scp_default_huffman_and_second_differences),
        cmocka_unit_test(test_scp_refusals_name_the_reason),
        cmocka_unit_test(test_open_refuses_non_ecg_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

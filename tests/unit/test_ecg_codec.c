/* test_ecg_codec.c — the lossless ECG codec: exact round trips of
 * synthetic and real records, and a decoder that refuses damaged or
 * hostile streams without allocating what they ask for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zlib.h>
#include "codecs/codecs.h"

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

static void assert_same(const ecg_record *a, const ecg_record *b)
{
    assert_int_equal(a->n_leads, b->n_leads);
    assert_int_equal(a->n_samples, b->n_samples);
    assert_true(a->rate == b->rate);
    assert_int_equal(a->source, b->source);
    assert_int_equal(a->group, b->group);
    assert_int_equal(a->n_groups, b->n_groups);
    assert_string_equal(a->label, b->label);
    for (size_t k = 0; k < a->n_leads; k++) {
        const ecg_lead *x = &a->leads[k], *y = &b->leads[k];
        assert_string_equal(x->name, y->name);
        assert_string_equal(x->unit, y->unit);
        assert_true(x->scale == y->scale);
        assert_true(x->baseline == y->baseline);
        assert_int_equal(x->bits, y->bits);
        if (a->n_samples)
            assert_memory_equal(x->samples, y->samples, a->n_samples * sizeof(int32_t));
    }
}

/* Encode, decode, compare; returns the coded size. */
static size_t roundtrip(const ecg_record *r)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    dcm_err err = {0};
    int rc = ecg_encode_buf(r, &buf, &len, &err);
    if (rc)
        fail_msg("encode: %s", err.msg);
    assert_true(ecg_is_stream(buf, len));
    ecg_record *back = NULL;
    rc = ecg_decode(buf, len, 0, &back, &err);
    if (rc)
        fail_msg("decode: %s", err.msg);
    assert_same(r, back);
    ecg_free(&back);
    assert_null(back);
    free(buf);
    return len;
}

/* A plausible 12-lead ECG: I, II independent; III, aVR, aVL, aVF derived
 * the way a cart computes them (integer division toward zero); V1..V6
 * independent with shared noise. */
static ecg_record *synthetic_12lead(size_t n, int exact)
{
    static const char *const names[] = {"I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"};
    ecg_record *r = ecg_new(12, n, 500);
    assert_non_null(r);
    for (size_t k = 0; k < 12; k++) {
        snprintf(r->leads[k].name, sizeof r->leads[k].name, "%s", names[k]);
        snprintf(r->leads[k].unit, sizeof r->leads[k].unit, "uV");
        r->leads[k].scale = 4.88;
    }
    for (size_t t = 0; t < n; t++) {
        double ph = (double)(t % 400) / 400.0;
        int32_t qrs = (ph > 0.3 && ph < 0.34) ? (int32_t)(800 * (1 - 50 * (ph - 0.32) * (ph - 0.32) * 50)) : 0;
        int32_t noise = (int32_t)(rnd() % 9) - 4;
        int32_t i = qrs / 2 + noise + (int32_t)(rnd() % 3), ii = qrs + noise;
        r->leads[0].samples[t] = i;
        r->leads[1].samples[t] = ii;
        r->leads[2].samples[t] = ii - i + (exact ? 0 : (int32_t)(rnd() % 41) - 20);
        r->leads[3].samples[t] = -(i + ii) / 2;
        r->leads[4].samples[t] = i - ii / 2;
        r->leads[5].samples[t] = ii - i / 2;
        for (size_t k = 6; k < 12; k++)
            r->leads[k].samples[t] = qrs * (int32_t)(k - 5) / 4 + noise + (int32_t)(rnd() % 5);
    }
    return r;
}

static void test_roundtrip_synthetic_12lead(void **state)
{
    (void)state;
    ecg_record *r = synthetic_12lead(5000, 1);
    size_t len = roundtrip(r);
    /* derived leads cost next to nothing: well under 16 bits a sample */
    assert_true(len < 12 * 5000 * 2 / 3);
    ecg_free(&r);
}

static void test_roundtrip_when_named_lead_is_not_derived(void **state)
{
    (void)state;
    ecg_record *r = synthetic_12lead(3000, 0); /* III carries its own noise */
    roundtrip(r);
    ecg_free(&r);
}

static void test_roundtrip_extremes(void **state)
{
    (void)state;
    ecg_record *r = ecg_new(3, 4000, 1000);
    for (size_t t = 0; t < 4000; t++) {
        int32_t big = ECG_CODEC_MAX_ABS - 1;
        r->leads[0].samples[t] = (t & 1) ? big : -big;               /* full-scale square */
        r->leads[1].samples[t] = (int32_t)(rnd() % (2u * (uint32_t)big)) - big; /* white noise */
        r->leads[2].samples[t] = 7;                                   /* constant */
    }
    roundtrip(r);
    ecg_free(&r);
}

static void test_roundtrip_empty_and_tiny(void **state)
{
    (void)state;
    ecg_record *r = ecg_new(1, 0, 250);
    roundtrip(r);
    ecg_free(&r);
    r = ecg_new(1, 1, 250);
    r->leads[0].samples[0] = -3;
    roundtrip(r);
    ecg_free(&r);
}

static void test_roundtrip_max_leads_and_metadata(void **state)
{
    (void)state;
    ecg_record *r = ecg_new(ECG_MAX_LEADS, 300, 128.5);
    r->source = ECG_SRC_AECG;
    r->group = 1;
    r->n_groups = 3;
    snprintf(r->label, sizeof r->label, "MEDIAN BEAT");
    for (size_t k = 0; k < r->n_leads; k++) {
        r->leads[k].scale = 0.001 * (double)(k + 1);
        r->leads[k].baseline = (double)k - 20.5;
        r->leads[k].bits = (uint8_t)(8 + k % 20);
        snprintf(r->leads[k].unit, sizeof r->leads[k].unit, "mmHg");
        for (size_t t = 0; t < r->n_samples; t++)
            r->leads[k].samples[t] = (int32_t)((t * (k + 1)) % 2001) - 1000;
    }
    roundtrip(r);
    ecg_free(&r);
}

static void test_encode_rejects_out_of_range_sample(void **state)
{
    (void)state;
    ecg_record *r = ecg_new(2, 10, 500);
    r->leads[1].samples[5] = ECG_CODEC_MAX_ABS;
    uint8_t *buf = NULL;
    size_t len = 0;
    dcm_err err = {0};
    assert_int_equal(ecg_encode_buf(r, &buf, &len, &err), ECG_ERANGE);
    assert_null(buf);
    assert_non_null(strstr(err.msg, "lead 2"));
    ecg_free(&r);
}

static uint8_t *encode_small(size_t *len)
{
    ecg_record *r = synthetic_12lead(200, 1);
    uint8_t *buf = NULL;
    dcm_err err = {0};
    assert_int_equal(ecg_encode_buf(r, &buf, len, &err), 0);
    ecg_free(&r);
    return buf;
}

static void test_decode_rejects_every_truncation(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = encode_small(&len);
    for (size_t n = 0; n < len; n++) {
        ecg_record *r = NULL;
        dcm_err err = {0};
        int rc = ecg_decode(buf, n, 0, &r, &err);
        assert_true(rc < 0);
        assert_null(r);
        assert_true(err.msg[0] != '\0');
    }
    free(buf);
}

static void test_decode_rejects_flipped_bits_by_crc(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = encode_small(&len);
    for (size_t i = 8; i < len; i += 7) {
        buf[i] ^= 0x10;
        ecg_record *r = NULL;
        dcm_err err = {0};
        assert_int_equal(ecg_decode(buf, len, 0, &r, &err), ECG_ECORRUPT);
        assert_null(r);
        buf[i] ^= 0x10;
    }
    free(buf);
}

/* A header that asks for a huge record, with a valid CRC: refused by the
 * size check before any allocation. */
static void test_decode_bounds_counts_before_allocating(void **state)
{
    (void)state;
    uint8_t s[64] = {'D', 'X', 'E', 'C', 'G', '1', '\r', '\n', 1, 0};
    size_t n = 10;
    s[n++] = 64;                                 /* leads */
    const uint8_t huge[] = {0xFF, 0xFF, 0xFF, 0x7F}; /* 2^28-1 samples */
    memcpy(s + n, huge, sizeof huge);
    n += sizeof huge;
    for (int i = 0; i < 12; i++)
        s[n++] = 0;
    uLong crc = crc32(0, s, (uInt)n);
    for (int i = 0; i < 4; i++)
        s[n++] = (uint8_t)(crc >> (8 * i));
    ecg_record *r = NULL;
    dcm_err err = {0};
    assert_int_equal(ecg_decode(s, n, 0, &r, &err), DCM_ETOOBIG);
    assert_null(r);
    /* the caller's cap is honoured too */
    size_t len;
    uint8_t *buf = encode_small(&len);
    assert_int_equal(ecg_decode(buf, len, 100, &r, &err), DCM_ETOOBIG);
    free(buf);
}

static void test_decode_rejects_other_version(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = encode_small(&len);
    buf[8] = 2;
    uLong crc = crc32(0, buf, (uInt)(len - 4));
    for (int i = 0; i < 4; i++)
        buf[len - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
    ecg_record *r = NULL;
    dcm_err err = {0};
    assert_int_equal(ecg_decode(buf, len, 0, &r, &err), ECG_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "version"));
    free(buf);
}

/* Random payload bytes under a valid header and CRC: whatever the range
 * decoder makes of them, the decoder returns (an error or a record)
 * without crashing — the sanitizer build proves the "without". */
static void test_decode_survives_random_payloads(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = encode_small(&len);
    size_t payload_end = len - 4;
    for (int round = 0; round < 200; round++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, buf, len);
        for (size_t i = payload_end > 60 ? payload_end - 60 : 0; i < payload_end; i++)
            copy[i] = (uint8_t)rnd();
        uLong crc = crc32(0, copy, (uInt)payload_end);
        for (int i = 0; i < 4; i++)
            copy[payload_end + (size_t)i] = (uint8_t)(crc >> (8 * i));
        ecg_record *r = NULL;
        dcm_err err = {0};
        int rc = ecg_decode(copy, len, 0, &r, &err);
        assert_true(rc == 0 || rc == ECG_ECORRUPT);
        ecg_free(&r);
        free(copy);
    }
    free(buf);
}

/* ---- the corpus ---------------------------------------------------------- */

static const char *corpus(void)
{
    const char *c = getenv("DXHUB_CORPUS");
    return c && *c ? c : "../shared/corpus";
}

static void corpus_roundtrip(const char *rel, size_t leads, double rate)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/ecg/%s", corpus(), rel);
    ecg_record *r = NULL;
    dcm_err err = {0};
    int rc = ecg_open(path, NULL, &r, NULL, &err);
    if (rc)
        fail_msg("%s: %s", rel, err.msg);
    assert_int_equal(r->n_leads, leads);
    assert_true(r->rate == rate);
    size_t len = roundtrip(r);
    /* never larger than the 16-bit samples it carries */
    assert_true(len < r->n_leads * r->n_samples * 2 + 512);
    ecg_free(&r);
}

static void test_roundtrip_corpus_dicom_12lead(void **s) { (void)s; corpus_roundtrip("dicom/waveform_ecg.dcm", 12, 1000); }
static void test_roundtrip_corpus_dicom_deflated(void **s) { (void)s; corpus_roundtrip("dicom/wave_dfl", 12, 240); }
static void test_roundtrip_corpus_mitdb_100(void **s) { (void)s; corpus_roundtrip("wfdb/mitdb/100", 2, 360); }
static void test_roundtrip_corpus_ptbdb(void **s) { (void)s; corpus_roundtrip("wfdb/ptbdb/s0010_re.hea", 15, 1000); }
static void test_roundtrip_corpus_aecg(void **s) { (void)s; corpus_roundtrip("hl7aecg/subject1_0.xml", 12, 500); }
static void test_roundtrip_corpus_aecg_minimal(void **s) { (void)s; corpus_roundtrip("hl7aecg/minimum_aecg.xml", 1, 500); }
static void test_roundtrip_corpus_scp(void **s) { (void)s; corpus_roundtrip("scp/Example.scp", 12, 500); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_synthetic_12lead),
        cmocka_unit_test(test_roundtrip_when_named_lead_is_not_derived),
        cmocka_unit_test(test_roundtrip_extremes),
        cmocka_unit_test(test_roundtrip_empty_and_tiny),
        cmocka_unit_test(test_roundtrip_max_leads_and_metadata),
        cmocka_unit_test(test_encode_rejects_out_of_range_sample),
        cmocka_unit_test(test_decode_rejects_every_truncation),
        cmocka_unit_test(test_decode_rejects_flipped_bits_by_crc),
        cmocka_unit_test(test_decode_bounds_counts_before_allocating),
        cmocka_unit_test(test_decode_rejects_other_version),
        cmocka_unit_test(test_decode_survives_random_payloads),
        cmocka_unit_test(test_roundtrip_corpus_dicom_12lead),
        cmocka_unit_test(test_roundtrip_corpus_dicom_deflated),
        cmocka_unit_test(test_roundtrip_corpus_mitdb_100),
        cmocka_unit_test(test_roundtrip_corpus_ptbdb),
        cmocka_unit_test(test_roundtrip_corpus_aecg),
        cmocka_unit_test(test_roundtrip_corpus_aecg_minimal),
        cmocka_unit_test(test_roundtrip_corpus_scp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

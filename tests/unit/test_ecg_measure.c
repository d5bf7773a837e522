/* test_ecg_measure.c — ECG measurements (codecs/ecg_measure.c) and the
 * triage rules (hub/triage.c).
 *
 * The detector is scored the ANSI/AAMI EC57 way against the reference beat
 * annotations of MIT-BIH record 100 (PhysioNet; the .atr file is read
 * here, MIT format), the rest on records built here with known beats, and
 * the rules on measurement sets written by hand.  Interval accuracy on
 * complete synthetic 12-lead ECGs is tests/e2e/test_ecg_measure.py. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "codecs/codecs.h"
#include "hub/triage.h"

static const char *corpus(void)
{
    const char *c = getenv("DXHUB_CORPUS");
    return c && *c ? c : "../shared/corpus";
}

static uint32_t rng_state = 2024;
static double noise(void) /* uniform -1..1 */
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (double)(rng_state >> 8) / (double)(1u << 23) - 1.0;
}

/* ---- a WFDB annotation file (MIT format: 16-bit little-endian words,
 * 6-bit type code and 10-bit time difference; SKIP carries a 32-bit
 * interval, NUM/SUB/CHN modify the previous annotation, AUX carries bytes). */

enum { ANN_SKIP = 59, ANN_NUM = 60, ANN_SUB = 61, ANN_CHN = 62, ANN_AUX = 63 };

static int is_beat(unsigned code) /* WFDB's isqrs(): the beat annotation codes */
{
    static const unsigned char beats[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 25, 30, 34, 35, 38, 41};
    for (size_t i = 0; i < sizeof beats; i++)
        if (beats[i] == code)
            return 1;
    return 0;
}

static size_t read_beats(const char *path, long *out, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("%s: cannot open", path);
    unsigned char b[4];
    long t = 0;
    size_t n = 0;
    while (fread(b, 1, 2, fp) == 2) {
        unsigned w = b[0] | (unsigned)b[1] << 8, code = w >> 10, dt = w & 0x3FF;
        if (code == 0 && dt == 0)
            break;
        if (code == ANN_SKIP) {
            if (fread(b, 1, 4, fp) != 4)
                break;
            uint32_t v = (uint32_t)(b[0] | b[1] << 8) << 16 | (uint32_t)(b[2] | b[3] << 8);
            t += (int32_t)v;
        } else if (code == ANN_AUX) {
            fseek(fp, (long)(dt + (dt & 1)), SEEK_CUR);
        } else if (code != ANN_NUM && code != ANN_SUB && code != ANN_CHN) {
            t += dt;
            if (is_beat(code) && n < cap)
                out[n++] = t;
        }
    }
    fclose(fp);
    return n;
}

/* EC57 beat-by-beat: a detection within 150 ms of a reference beat (the
 * nearest one not yet matched) is a true positive. */
static void score(const long *ref, size_t nr, const uint32_t *det, size_t nd, double fs, size_t *tp, size_t *fn,
                  size_t *fp)
{
    long win = (long)(0.150 * fs);
    char *used = calloc(nd ? nd : 1, 1);
    assert_non_null(used);
    size_t j = 0;
    *tp = *fn = 0;
    for (size_t i = 0; i < nr; i++) {
        while (j < nd && (long)det[j] < ref[i] - win)
            j++;
        long best = -1;
        for (size_t k = j; k < nd && (long)det[k] <= ref[i] + win; k++)
            if (!used[k] && (best < 0 || labs((long)det[k] - ref[i]) < labs((long)det[best] - ref[i])))
                best = (long)k;
        if (best < 0) {
            ++*fn;
        } else {
            used[best] = 1;
            ++*tp;
        }
    }
    *fp = nd - *tp;
    free(used);
}

static void test_mitdb_100_detection_meets_the_ec57_target(void **state)
{
    (void)state;
    char hea[4096], atr[4096];
    snprintf(hea, sizeof hea, "%s/ecg/wfdb/mitdb/100.hea", corpus());
    snprintf(atr, sizeof atr, "%s/ecg/wfdb/mitdb/100.atr", corpus());
    static long ref[4000];
    size_t nr = read_beats(atr, ref, 4000);
    assert_int_equal(nr, 2273); /* 2239 N, 33 A, 1 V (the record's published beat table) */
    ecg_record *r = NULL;
    dcm_err err = {0};
    if (ecg_open(hea, NULL, &r, NULL, &err))
        fail_msg("%s: %s", hea, err.msg);
    ecg_measurements m;
    ecg_measure_opts o = {.rhythm_only = 1};
    assert_int_equal(ecg_measure(r, &o, &m, &err), 0);
    size_t tp, fn, fp;
    score(ref, nr, m.beats, m.n_beats, r->rate, &tp, &fn, &fp);
    double se = 100.0 * (double)tp / (double)(tp + fn), ppv = 100.0 * (double)tp / (double)(tp + fp);
    print_message("mitdb/100: %zu reference beats, %zu detected: TP %zu FN %zu FP %zu, Se %.2f%% +P %.2f%%\n", nr,
                  m.n_beats, tp, fn, fp, se, ppv);
    assert_true(se >= 99.5);
    assert_true(ppv >= 99.5);
    ecg_measure_release(&m);
    ecg_free(&r);
}

/* ---- records built here -------------------------------------------------------- */

/* A beat on every lead: a narrow R (sigma 10 ms), a small S, a T 280 ms
 * later; lead k scaled by gain[k] (uV of the R wave). */
static void add_beat(ecg_record *r, const double *gain, double at_s)
{
    for (size_t k = 0; k < r->n_leads; k++)
        for (size_t t = 0; t < r->n_samples; t++) {
            double s = (double)t / r->rate - at_s;
            if (s < -0.2 || s > 0.6)
                continue;
            double v = gain[k] * (exp(-s * s / (2 * 0.010 * 0.010)) - 0.25 * exp(-(s - 0.025) * (s - 0.025) /
                                                                                    (2 * 0.008 * 0.008)) +
                                  0.25 * exp(-(s - 0.28) * (s - 0.28) / (2 * 0.045 * 0.045)));
            r->leads[k].samples[t] += (int32_t)lround(v);
        }
}

/* n leads in uV (scale 1), rate, seconds, beats at the given times, white
 * noise of the given amplitude on every lead. */
static ecg_record *make_record(size_t n, double rate, double seconds, const double *beats, size_t nb, double noise_uv)
{
    ecg_record *r = ecg_new(n, (size_t)(rate * seconds), rate);
    assert_non_null(r);
    double gain[ECG_MAX_LEADS];
    for (size_t k = 0; k < n; k++) {
        snprintf(r->leads[k].unit, sizeof r->leads[k].unit, "uV");
        gain[k] = (k % 2 ? -1.0 : 1.0) * (600.0 + 150.0 * (double)k);
        for (size_t t = 0; t < r->n_samples; t++)
            r->leads[k].samples[t] = (int32_t)lround(noise_uv * noise());
    }
    for (size_t i = 0; i < nb; i++)
        add_beat(r, gain, beats[i]);
    return r;
}

static size_t regular_beats(double *out, size_t cap, double seconds, double bpm)
{
    size_t n = 0;
    for (double t = 0.4; t < seconds - 0.4 && n < cap; t += 60.0 / bpm)
        out[n++] = t;
    return n;
}

static void test_detects_every_beat_at_any_rate_and_sampling(void **state)
{
    (void)state;
    static const double rates[] = {200, 250, 360, 500, 1000};
    static const double bpm[] = {36, 72, 120, 170};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
        for (size_t j = 0; j < sizeof bpm / sizeof bpm[0]; j++) {
            double beats[64];
            size_t nb = regular_beats(beats, 64, 10.0, bpm[j]);
            ecg_record *r = make_record(3, rates[i], 10.0, beats, nb, 10.0);
            ecg_measurements m;
            dcm_err err = {0};
            assert_int_equal(ecg_measure(r, NULL, &m, &err), 0);
            if (m.n_beats != nb)
                fail_msg("%g Hz, %g/min: %zu beats found, %zu made", rates[i], bpm[j], m.n_beats, nb);
            for (size_t b = 0; b < nb; b++) {
                double at = (double)m.beats[b] / rates[i];
                if (fabs(at - beats[b]) > 0.02)
                    fail_msg("%g Hz, %g/min: beat %zu at %.3f s, made at %.3f s", rates[i], bpm[j], b, at, beats[b]);
            }
            assert_true(fabs(m.hr_bpm - bpm[j]) < 0.02 * bpm[j]);
            assert_true(m.rr_sdnn_ms < 5.0);
            assert_int_equal(m.detect_leads, 3);
            ecg_measure_release(&m);
            ecg_free(&r);
        }
}

static void test_flat_lead_is_reported_and_left_out(void **state)
{
    (void)state;
    double beats[32];
    size_t nb = regular_beats(beats, 32, 10.0, 75);
    ecg_record *r = make_record(4, 500, 10.0, beats, nb, 5.0);
    for (size_t t = 0; t < r->n_samples; t++)
        r->leads[2].samples[t] = -32768; /* a lead off, at the rail */
    ecg_measurements m;
    dcm_err err = {0};
    assert_int_equal(ecg_measure(r, NULL, &m, &err), 0);
    assert_int_equal(m.leads[2].quality, ECG_LQ_FLAT);
    assert_string_equal(ecg_lead_quality_name(m.leads[2].quality), "flat");
    assert_int_equal(m.leads[0].quality, ECG_LQ_OK);
    assert_int_equal(m.detect_leads, 3);
    assert_int_equal(m.n_beats, nb);
    ecg_measure_release(&m);
    ecg_free(&r);
}

static void test_noisy_lead_is_reported_and_beats_still_found(void **state)
{
    (void)state;
    double beats[32];
    size_t nb = regular_beats(beats, 32, 10.0, 80);
    ecg_record *r = make_record(3, 500, 10.0, beats, nb, 5.0);
    for (size_t t = 0; t < r->n_samples; t++)
        r->leads[1].samples[t] += (int32_t)lround(250.0 * noise()); /* muscle tremor, ~145 uV RMS */
    ecg_measurements m;
    dcm_err err = {0};
    assert_int_equal(ecg_measure(r, NULL, &m, &err), 0);
    assert_int_equal(m.leads[1].quality, ECG_LQ_NOISY);
    assert_true(m.leads[1].noise_uv > ECG_NOISE_UV);
    assert_true(m.leads[0].noise_uv < 10.0);
    assert_int_equal(m.detect_leads, 2); /* detection again without it */
    assert_int_equal(m.n_beats, nb);
    ecg_measure_release(&m);
    ecg_free(&r);
}

static void test_record_without_signal_measures_nothing_and_says_why(void **state)
{
    (void)state;
    ecg_record *r = make_record(2, 500, 5.0, NULL, 0, 3.0);
    ecg_measurements m;
    dcm_err err = {0};
    assert_int_equal(ecg_measure(r, NULL, &m, &err), 0);
    assert_int_equal(m.detect_leads, 0);
    assert_int_equal(m.n_beats, 0);
    assert_null(m.beats);
    assert_int_equal(m.leads[0].quality, ECG_LQ_FLAT);
    assert_true(isnan(m.hr_bpm) && isnan(m.qrs_ms) && isnan(m.longest_pause_ms));
    ecg_measure_release(&m);
    ecg_free(&r);
}

static void test_pause_is_the_longest_time_without_qrs(void **state)
{
    (void)state;
    double beats[] = {0.5, 1.3, 2.1, 5.6, 6.4, 7.2, 8.0, 8.8, 9.6};
    ecg_record *r = make_record(2, 360, 10.0, beats, 9, 5.0);
    ecg_measurements m;
    dcm_err err = {0};
    assert_int_equal(ecg_measure(r, NULL, &m, &err), 0);
    assert_int_equal(m.n_beats, 9);
    assert_true(fabs(m.longest_pause_ms - 3500.0) < 10.0);
    assert_true(fabs(m.rr_max_ms - 3500.0) < 10.0);
    assert_true(fabs(m.rr_min_ms - 800.0) < 10.0);
    ecg_measure_release(&m);
    ecg_free(&r);
    /* one beat at the start: the rest of the record is the pause */
    double one[] = {0.6};
    r = make_record(2, 500, 6.0, one, 1, 5.0);
    assert_int_equal(ecg_measure(r, NULL, &m, &err), 0);
    assert_int_equal(m.n_beats, 1);
    assert_true(isnan(m.hr_bpm));
    assert_true(m.longest_pause_ms > 5300.0);
    ecg_measure_release(&m);
    ecg_free(&r);
}

static void test_non_voltage_lead_is_not_analysed(void **state)
{
    (void)state;
    double beats[16];
    size_t nb = regular_beats(beats, 16, 8.0, 70);
    ecg_record *r = make_record(2, 250, 8.0, beats, nb, 5.0);
    snprintf(r->leads[1].unit, sizeof r->leads[1].unit, "mmHg");
    ecg_measurements m;
    dcm_err err = {0};
    assert_int_equal(ecg_measure(r, NULL, &m, &err), 0);
    assert_int_equal(m.leads[1].quality, ECG_LQ_NOTECG);
    assert_int_equal(m.detect_leads, 1);
    assert_int_equal(m.n_beats, nb);
    ecg_measure_release(&m);
    ecg_free(&r);
}

static void test_refuses_what_it_cannot_measure(void **state)
{
    (void)state;
    ecg_measurements m;
    dcm_err err = {0};
    ecg_record *r = ecg_new(1, 500, 50);
    assert_int_equal(ecg_measure(r, NULL, &m, &err), ECG_EUNSUPPORTED); /* 50 Hz */
    assert_non_null(strstr(err.msg, "50 Hz"));
    ecg_measure_release(&m);
    ecg_free(&r);
    r = ecg_new(2, 250, 500); /* half a second */
    assert_int_equal(ecg_measure(r, NULL, &m, &err), ECG_EUNSUPPORTED);
    ecg_measure_release(&m);
    ecg_free(&r);
    r = ecg_new(1, ECG_MEASURE_MAX_SAMPLES + 1, 500);
    assert_non_null(r);
    assert_int_equal(ecg_measure(r, NULL, &m, &err), DCM_ETOOBIG);
    ecg_measure_release(&m);
    ecg_free(&r);
    assert_int_equal(ecg_measure(NULL, NULL, &m, &err), DCM_EVALUE);
    ecg_measure_release(NULL);
}

static void test_corpus_records_are_measured(void **state)
{
    (void)state;
    static const char *const files[] = {"dicom/waveform_ecg.dcm", "dicom/wave_dfl", "wfdb/ptbdb/s0010_re.hea",
                                        "hl7aecg/subject1_0.xml", "scp/Example.scp"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/ecg/%s", corpus(), files[i]);
        ecg_record *r = NULL;
        dcm_err err = {0};
        if (ecg_open(path, NULL, &r, NULL, &err))
            fail_msg("%s: %s", files[i], err.msg);
        ecg_measurements m;
        assert_int_equal(ecg_measure(r, NULL, &m, &err), 0);
        /* resting ECGs of adults: a plausible rhythm and intervals */
        if (!(m.hr_bpm > 50 && m.hr_bpm < 100 && m.qrs_ms > 60 && m.qrs_ms < 150 && m.qt_ms > 320 &&
              m.qt_ms < 480 && m.pr_ms > 120 && m.pr_ms < 220 && m.median_beats >= 8))
            fail_msg("%s: rate %.0f, PR %.0f, QRS %.0f, QT %.0f ms, %zu beats in the median", files[i], m.hr_bpm,
                     m.pr_ms, m.qrs_ms, m.qt_ms, m.median_beats);
        for (size_t b = 1; b < m.n_beats; b++)
            assert_true(m.beats[b] > m.beats[b - 1] && m.beats[b] < r->n_samples);
        ecg_measure_release(&m);
        ecg_free(&r);
    }
}

/* ---- triage rules ----------------------------------------------------------- */

static const char *const twelve[] = {"I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"};

static ecg_measurements normal_measurements(void)
{
    ecg_measurements m;
    memset(&m, 0, sizeof m);
    m.rate = 500;
    m.duration_ms = 10000;
    m.detect_leads = 12;
    m.n_beats = 12;
    m.hr_bpm = 72;
    m.rr_mean_ms = 833;
    m.longest_pause_ms = 900;
    m.pr_ms = 160;
    m.qrs_ms = 92;
    m.qt_ms = 384;
    m.n_leads = 12;
    for (size_t k = 0; k < 12; k++) {
        snprintf(m.leads[k].name, sizeof m.leads[k].name, "%s", twelve[k]);
        m.leads[k].quality = ECG_LQ_OK;
        m.leads[k].st_j_uv = m.leads[k].st_uv = 20;
    }
    return m;
}

static void set_st(ecg_measurements *m, const char *lead, double uv)
{
    for (size_t k = 0; k < m->n_leads; k++)
        if (!strcmp(m->leads[k].name, lead))
            m->leads[k].st_j_uv = m->leads[k].st_uv = uv;
}

static void test_triage_normal_ecg_has_nothing_to_say(void **state)
{
    (void)state;
    ecg_measurements m = normal_measurements();
    triage_result t;
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, 0);
    assert_string_equal(t.text, "");
}

static void test_triage_rate_pause_and_wide_tachycardia(void **state)
{
    (void)state;
    ecg_measurements m = normal_measurements();
    triage_result t;
    m.hr_bpm = 38;
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, TRIAGE_RATE_LOW_F);
    assert_non_null(strstr(t.text, "not a diagnosis"));
    assert_non_null(strstr(t.text, "bradycardia 38/min"));
    m.hr_bpm = 40; /* the rule is "below 40" */
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, 0);
    m.hr_bpm = 155;
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, TRIAGE_RATE_HIGH_F);
    m.hr_bpm = 130;
    m.qrs_ms = 140;
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, TRIAGE_WCT_F);
    m.hr_bpm = 72;
    m.longest_pause_ms = 3200;
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, TRIAGE_PAUSE_F);
    assert_non_null(strstr(t.text, "pause 3.2 s"));
}

static void test_triage_stemi_needs_two_contiguous_leads(void **state)
{
    (void)state;
    ecg_measurements m = normal_measurements();
    triage_result t;
    set_st(&m, "II", 250);
    set_st(&m, "aVL", 250); /* not next to II in the Cabrera order */
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, 0);
    set_st(&m, "aVF", 180); /* II and aVF are */
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, TRIAGE_STEMI_F);
    assert_string_equal(t.st_leads, "II,aVF");
    assert_non_null(strstr(t.text, "suspected STEMI pattern"));
    /* -aVR sits between I and II: aVR depressed + II elevated are contiguous */
    m = normal_measurements();
    set_st(&m, "aVR", -150);
    set_st(&m, "II", 150);
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, TRIAGE_STEMI_F);
    assert_string_equal(t.st_leads, "-aVR,II");
    /* an elevation at J that has gone by J+60 (a J notch) does not count */
    m = normal_measurements();
    set_st(&m, "V4", 200);
    set_st(&m, "V5", 200);
    m.leads[10].st_uv = 40;
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, 0);
    /* a lead of poor quality does not count (and asks for a repeat) */
    m = normal_measurements();
    set_st(&m, "V4", 200);
    set_st(&m, "V5", 200);
    m.leads[10].quality = ECG_LQ_NOISY;
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, TRIAGE_NOISY_F);
}

static void test_triage_v2_v3_thresholds_follow_sex_and_age(void **state)
{
    (void)state;
    ecg_measurements m = normal_measurements();
    set_st(&m, "V2", 170);
    set_st(&m, "V3", 170);
    triage_result t;
    triage_patient woman = {'F', 60}, man = {'M', 60}, young = {'M', 30};
    triage_ecg(&m, &woman, &t);
    assert_int_equal(t.flags, TRIAGE_STEMI_F); /* >= 0.15 mV */
    triage_ecg(&m, &man, &t);
    assert_int_equal(t.flags, 0); /* < 0.2 mV */
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, 0); /* unknown: as a man of 40 or more */
    set_st(&m, "V2", 220);
    set_st(&m, "V3", 220);
    triage_ecg(&m, &man, &t);
    assert_int_equal(t.flags, TRIAGE_STEMI_F);
    triage_ecg(&m, &young, &t);
    assert_int_equal(t.flags, 0); /* < 0.25 mV */
}

static void test_triage_wide_qrs_suspends_the_st_rule(void **state)
{
    (void)state;
    ecg_measurements m = normal_measurements();
    set_st(&m, "V1", 300);
    set_st(&m, "V2", 300);
    m.qrs_ms = 150; /* bundle branch block at 72/min */
    triage_result t;
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, 0);
}

static void test_triage_signal_problems_ask_for_a_repeat(void **state)
{
    (void)state;
    ecg_measurements m = normal_measurements();
    m.leads[8].quality = ECG_LQ_FLAT;
    m.leads[3].quality = ECG_LQ_WANDER;
    triage_result t;
    triage_ecg(&m, NULL, &t);
    assert_int_equal(t.flags, TRIAGE_FLAT_F | TRIAGE_WANDER_F);
    assert_true((t.flags & TRIAGE_REPEAT) && !(t.flags & TRIAGE_EMERGENCY));
    assert_non_null(strstr(t.repeat, "V3 flat"));
    assert_non_null(strstr(t.repeat, "aVR unstable baseline"));
    assert_non_null(strstr(t.text, "repeat requested"));
    /* nothing usable at all: only the repeat, no rhythm finding */
    m = normal_measurements();
    m.detect_leads = 0;
    m.n_beats = 0;
    m.hr_bpm = NAN;
    m.longest_pause_ms = NAN;
    for (size_t k = 0; k < 12; k++)
        m.leads[k].quality = ECG_LQ_FLAT;
    triage_ecg(&m, NULL, &t);
    assert_true(t.flags & TRIAGE_NOSIGNAL_F);
    assert_int_equal(t.flags & TRIAGE_EMERGENCY, 0);
    assert_true(strlen(t.text) < sizeof t.text);
    assert_string_equal(triage_flag_name(TRIAGE_NOSIGNAL_F), "no-signal");
    assert_null(triage_flag_name(1u << 20));
}

static void test_triage_age_from_dicom_dates(void **state)
{
    (void)state;
    assert_int_equal(triage_age("19660512", "20240301"), 57);
    assert_int_equal(triage_age("19660301", "20240301"), 58);
    assert_int_equal(triage_age("", "20240301"), -1);
    assert_int_equal(triage_age("1966", "20240301"), -1);
    assert_int_equal(triage_age("19xx0512", "20240301"), -1);
    assert_int_equal(triage_age("20250101", "20240301"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mitdb_100_detection_meets_the_ec57_target),
        cmocka_unit_test(test_detects_every_beat_at_any_rate_and_sampling),
        cmocka_unit_test(test_flat_lead_is_reported_and_left_out),
        cmocka_unit_test(test_noisy_lead_is_reported_and_beats_still_found),
        cmocka_unit_test(test_record_without_signal_measures_nothing_and_says_why),
        cmocka_unit_test(test_pause_is_the_longest_time_without_qrs),
        cmocka_unit_test(test_non_voltage_lead_is_not_analysed),
        cmocka_unit_test(test_refuses_what_it_cannot_measure),
        cmocka_unit_test(test_corpus_records_are_measured),
        cmocka_unit_test(test_triage_normal_ecg_has_nothing_to_say),
        cmocka_unit_test(test_triage_rate_pause_and_wide_tachycardia),
        cmocka_unit_test(test_triage_stemi_needs_two_contiguous_leads),
        cmocka_unit_test(test_triage_v2_v3_thresholds_follow_sex_and_age),
        cmocka_unit_test(test_triage_wide_qrs_suspends_the_st_rule),
        cmocka_unit_test(test_triage_signal_problems_ask_for_a_repeat),
        cmocka_unit_test(test_triage_age_from_dicom_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

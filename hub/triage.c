/* triage.c — ECG triage rules: measurements in, suggestions out (see
 * triage.h for the rules and where they come from).  No I/O, no state. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/triage.h"

static const struct {
    unsigned    flag;
    const char *name;
} flag_names[] = {
    {TRIAGE_RATE_LOW_F, "rate-low"},   {TRIAGE_RATE_HIGH_F, "rate-high"}, {TRIAGE_PAUSE_F, "pause"},
    {TRIAGE_WCT_F, "wide-complex-tachycardia"}, {TRIAGE_STEMI_F, "stemi"}, {TRIAGE_FLAT_F, "lead-flat"},
    {TRIAGE_NOISY_F, "lead-noisy"},    {TRIAGE_WANDER_F, "lead-wander"},  {TRIAGE_NOSIGNAL_F, "no-signal"},
};

const char *triage_flag_name(unsigned flag)
{
    for (size_t i = 0; i < sizeof flag_names / sizeof flag_names[0]; i++)
        if (flag_names[i].flag == flag)
            return flag_names[i].name;
    return NULL;
}

/* Contiguous leads, in anatomical order (Cabrera for the limb leads;
 * "-aVR" is aVR inverted). */
static const char *const limb_order[] = {"aVL", "I", "-aVR", "II", "aVF", "III"};
static const char *const chest_order[] = {"V1", "V2", "V3", "V4", "V5", "V6"};

/* Bounded appending to a fixed buffer: text past the end is dropped. */
typedef struct outbuf {
    char  *p;
    size_t n, used;
} outbuf;

static void put(outbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(outbuf *b, const char *fmt, ...)
{
    if (b->used + 1 >= b->n)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->used, b->n - b->used, fmt, ap);
    va_end(ap);
    if (k > 0)
        b->used = b->used + (size_t)k < b->n ? b->used + (size_t)k : b->n - 1;
}

/* The ST elevation of a lead named name ("-aVR" inverts aVR): the lower
 * of its levels at J (the Universal Definition's point) and at J+60 ms
 * (the elevation must last: a J notch or the T wave's upslope alone does
 * not count).  NaN when the lead is absent or not of good quality. */
static double st_of(const ecg_measurements *m, const char *name)
{
    int invert = name[0] == '-';
    const char *n = invert ? name + 1 : name;
    for (size_t k = 0; k < m->n_leads; k++) {
        const ecg_lead_measure *l = &m->leads[k];
        if (strcmp(l->name, n))
            continue;
        if (l->quality != ECG_LQ_OK)
            return NAN;
        double j = invert ? -l->st_j_uv : l->st_j_uv, j60 = invert ? -l->st_uv : l->st_uv;
        return j < j60 ? j : j60;
    }
    return NAN;
}

static double st_threshold(const char *lead, const triage_patient *p)
{
    if (strcmp(lead, "V2") && strcmp(lead, "V3"))
        return 100.0;
    if (p && p->sex == 'F')
        return 150.0;
    if (p && p->sex == 'M' && p->age >= 0 && p->age < 40)
        return 250.0;
    return 200.0;
}

/* Leads meeting their threshold in at least one contiguous pair. */
static void st_elevation(const ecg_measurements *m, const triage_patient *p, triage_result *r)
{
    const char *const *orders[2] = {limb_order, chest_order};
    size_t lens[2] = {6, 6};
    outbuf b = {r->st_leads, sizeof r->st_leads, 0};
    r->st_leads[0] = '\0';
    r->st_max_uv = 0;
    for (int o = 0; o < 2; o++) {
        const char *const *seq = orders[o];
        int elevated[6] = {0};
        for (size_t i = 0; i < lens[o]; i++) {
            double st = st_of(m, seq[i]);
            elevated[i] = !isnan(st) && st >= st_threshold(seq[i], p);
        }
        for (size_t i = 0; i < lens[o]; i++) {
            int paired = (i > 0 && elevated[i - 1]) || (i + 1 < lens[o] && elevated[i + 1]);
            if (!elevated[i] || !paired)
                continue;
            double st = st_of(m, seq[i]);
            r->flags |= TRIAGE_STEMI_F;
            if (st > r->st_max_uv)
                r->st_max_uv = st;
            put(&b, "%s%s", b.used ? "," : "", seq[i]);
        }
    }
}

static void quality_rules(const ecg_measurements *m, triage_result *r, outbuf *why)
{
    if (m->detect_leads == 0) {
        r->flags |= TRIAGE_NOSIGNAL_F;
        put(why, "no usable ECG signal in any lead");
        return;
    }
    static const struct { int q; unsigned flag; const char *say; } kinds[] = {
        {ECG_LQ_FLAT, TRIAGE_FLAT_F, "flat (electrode off or lead disconnected?)"},
        {ECG_LQ_NOISY, TRIAGE_NOISY_F, "noisy (muscle tremor or mains interference?)"},
        {ECG_LQ_WANDER, TRIAGE_WANDER_F, "unstable baseline (electrode contact, movement?)"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = 0;
        for (size_t k = 0; k < m->n_leads; k++) {
            if (m->leads[k].quality != kinds[i].q)
                continue;
            r->flags |= kinds[i].flag;
            put(why, "%s%s", n ? "," : why->used ? "; " : "", m->leads[k].name);
            n++;
        }
        if (n)
            put(why, " %s", kinds[i].say);
    }
}

void triage_ecg(const ecg_measurements *m, const triage_patient *patient, triage_result *out)
{
    memset(out, 0, sizeof *out);
    outbuf rep = {out->repeat, sizeof out->repeat, 0};
    quality_rules(m, out, &rep);
    char items[6][128];
    size_t ni = 0;
    if (!(out->flags & TRIAGE_NOSIGNAL_F)) {
        if (!isnan(m->hr_bpm) && m->hr_bpm < TRIAGE_RATE_LOW) {
            out->flags |= TRIAGE_RATE_LOW_F;
            snprintf(items[ni++], sizeof items[0], "extreme bradycardia %.0f/min", m->hr_bpm);
        }
        if (!isnan(m->hr_bpm) && m->hr_bpm > TRIAGE_RATE_HIGH) {
            out->flags |= TRIAGE_RATE_HIGH_F;
            snprintf(items[ni++], sizeof items[0], "extreme tachycardia %.0f/min", m->hr_bpm);
        }
        if (!isnan(m->longest_pause_ms) && m->longest_pause_ms > TRIAGE_PAUSE_MS) {
            out->flags |= TRIAGE_PAUSE_F;
            snprintf(items[ni++], sizeof items[0], "pause %.1f s without QRS", m->longest_pause_ms / 1000.0);
        }
        if (!isnan(m->hr_bpm) && m->hr_bpm > TRIAGE_WCT_RATE && !isnan(m->qrs_ms) && m->qrs_ms >= TRIAGE_WCT_QRS) {
            out->flags |= TRIAGE_WCT_F;
            snprintf(items[ni++], sizeof items[0], "wide-complex tachycardia %.0f/min, QRS %.0f ms", m->hr_bpm,
                     m->qrs_ms);
        }
        /* A wide QRS (bundle branch block, paced, ventricular) moves the
         * ST segment by itself: the contiguous-lead rule does not apply. */
        if (isnan(m->qrs_ms) || m->qrs_ms < TRIAGE_WCT_QRS)
            st_elevation(m, patient, out);
        if (out->flags & TRIAGE_STEMI_F)
            snprintf(items[ni++], sizeof items[0], "suspected STEMI pattern: ST elevation %s (max %.2f mV)",
                     out->st_leads, out->st_max_uv / 1000.0);
    }
    if (!ni && !(out->flags & TRIAGE_REPEAT))
        return;
    outbuf b = {out->text, sizeof out->text, 0};
    put(&b, "AUTO-TRIAGE (suggestion, not a diagnosis): ");
    for (size_t i = 0; i < ni; i++)
        put(&b, "%s%s", i ? "; " : "", items[i]);
    if (out->flags & TRIAGE_REPEAT)
        put(&b, "%spoor signal: %s - " TRIAGE_REPEAT_WORDS, ni ? "; " : "", out->repeat);
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int triage_age(const char *birth, const char *on)
{
    int by, bm, bd, y, mo, d;
    if (!birth || !on || strlen(birth) < 8 || strlen(on) < 8 || digits(birth, 4, &by) || digits(birth + 4, 2, &bm) ||
        digits(birth + 6, 2, &bd) || digits(on, 4, &y) || digits(on + 4, 2, &mo) || digits(on + 6, 2, &d))
        return -1;
    int age = y - by - (mo < bm || (mo == bm && d < bd));
    return age >= 0 && age < 150 ? age : -1;
}

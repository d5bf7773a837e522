/* ecg_measure.c — QRS detection, rhythm, global intervals, frontal axis,
 * ST level and lead quality of an ecg_record (codecs.h, "ECG
 * measurements").
 *
 * The pipeline, each step one pass over the samples (O(leads x samples),
 * memory bounded by the ECG_MEASURE_MAX_* caps):
 *   1. leads to physical microvolts (float), mean removed; flat leads out
 *   2. detector feature (Pan & Tompkins 1985): per lead a zero-phase
 *      5-15 Hz band-pass, the five-point derivative squared and divided
 *      by the lead's typical beat, summed over the leads; 150 ms moving
 *      window integration (centred: zero-phase, so no delay to undo)
 *   3. Pan-Tompkins classification of the integrated feature's peaks:
 *      SPKI/NPKI levels, THRESHOLD I1/I2, 200 ms refractory period,
 *      T-wave test within 360 ms, search-back past 166 % of RR AVERAGE2
 *   4. fiducial point: the peak of the leads' summed band-pass amplitude
 *   5. noise (> 40 Hz, outside the QRS complexes) and wander (< 0.7 Hz)
 *      per lead; detection again without the noisy leads if clean remain
 *   6. median beat: beats aligned by cross-correlation, the dominant
 *      morphology kept, baseline removed by linear interpolation between
 *      PR-segment knots, the median per sample; delineated globally
 *      (spatial velocity for the QRS, trapezium area — Zhang et al. 2006 —
 *      on the leads' RMS curve for T end and P onset).
 */
#include <math.h>
#include "codecs/ecg_private.h"
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Detector (Pan & Tompkins 1985, scaled from their 200 Hz to any rate). */
#define BP_LOW_HZ        5.0
#define BP_HIGH_HZ       15.0
#define MWI_MS           150.0
#define REFRACTORY_MS    200.0
#define TWAVE_MS         360.0
#define MISSED_RR        1.66  /* search back when no QRS for 166 % of RR AVERAGE2 */
#define LEVEL_WINDOW_S   2.5   /* a lead's typical beat: median of per-window maxima */
#define FIDUCIAL_MS      100.0 /* the QRS peak is searched this far around the MWI peak */
#define DETECT_RATE      250.0 /* the detector runs at fs / floor(fs / 250): its band is 5-15 Hz */
#define QUANTILE_SAMPLES 1024  /* percentiles of a lead's samples from at most this many */
#define WANDER_RATE      25.0  /* the baseline is followed at about this rate */
/* Quality. */
#define NOISE_HP_HZ      40.0
#define WANDER_LP_HZ     0.7
#define QRS_ZONE_MS      100.0 /* excluded around each beat when measuring noise */
/* Median beat and delineation. */
#define ALIGN_MS         10.0  /* cross-correlation shifts tried */
#define QRS_REGION_MS    60.0  /* around the fiducial: alignment and morphology */
#define DOMINANT_CORR    0.8
#define KNOT_BEFORE_MS   20.0  /* PR knot centre before the QRS onset */
#define KNOT_HALF_MS     10.0  /* averaged over +-10 ms: one 50 Hz period */
#define DELIN_LP_HZ      100.0 /* QRS delineation: the median is quiet, keep the corners */
#define WAVE_LP_HZ       40.0  /* T end and P onset */
#define QRS_THR_FRAC     0.05  /* of the peak spatial velocity */
#define QRS_THR_FLOOR    4.0   /* times the quiet spatial velocity */
#define QUIET_MS         8.0   /* a boundary needs this much quiet beyond it */
#define ST_AFTER_J_MS    60.0
#define P_MIN_UV         20.0

typedef struct biquad {
    double b0, b1, b2, a1, a2, dc; /* dc: gain at 0 Hz (1 low-pass, 0 high-pass) */
} biquad;

/* Second-order Butterworth by the bilinear transform (prewarped). */
static biquad butter2(double fs, double fc, int highpass)
{
    if (fc > 0.45 * fs)
        fc = 0.45 * fs;
    double k = tan(M_PI * fc / fs), k2 = k * k, q = sqrt(2.0);
    double norm = 1.0 / (1.0 + q * k + k2);
    biquad f;
    if (highpass) {
        f.b0 = norm;
        f.b1 = -2.0 * norm;
        f.b2 = norm;
        f.dc = 0;
    } else {
        f.b0 = k2 * norm;
        f.b1 = 2.0 * f.b0;
        f.b2 = f.b0;
        f.dc = 1;
    }
    f.a1 = 2.0 * (k2 - 1.0) * norm;
    f.a2 = (1.0 - q * k + k2) * norm;
    return f;
}

/* One direction in place (transposed direct form II), started in the
 * steady state of its first input so the record's edge makes no step. */
static void biquad_run(const biquad *f, float *x, size_t n, int backward)
{
    if (!n)
        return;
    double x0 = x[backward ? n - 1 : 0];
    double z1 = (f->dc - f->b0) * x0, z2 = (f->b2 - f->a2 * f->dc) * x0;
    for (size_t k = 0; k < n; k++) {
        size_t i = backward ? n - 1 - k : k;
        double in = x[i], y = f->b0 * in + z1;
        z1 = f->b1 * in - f->a1 * y + z2;
        z2 = f->b2 * in - f->a2 * y;
        x[i] = (float)y;
    }
}

/* Forward and backward: zero phase, the magnitude response squared. */
static void filtfilt(float *x, size_t n, double fs, double fc, int highpass)
{
    biquad f = butter2(fs, fc, highpass);
    biquad_run(&f, x, n, 0);
    biquad_run(&f, x, n, 1);
}

static void swapf(float *a, float *b)
{
    float t = *a;
    *a = *b;
    *b = t;
}

/* The k-th smallest of a[0..n) (reorders a): Hoare's selection. */
static float select_kth(float *a, size_t n, size_t k)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
    while (lo < hi) {
        ptrdiff_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo])
            swapf(&a[mid], &a[lo]);
        if (a[hi] < a[lo])
            swapf(&a[hi], &a[lo]);
        if (a[hi] < a[mid])
            swapf(&a[hi], &a[mid]);
        float p = a[mid];
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p)
                i++;
            while (a[j] > p)
                j--;
            if (i <= j) {
                swapf(&a[i], &a[j]);
                i++;
                j--;
            }
        }
        if (kk <= j)
            hi = j;
        else if (kk >= i)
            lo = i;
        else
            return a[kk];
    }
    return a[kk];
}

static float percentile(float *a, size_t n, double p) /* reorders a */
{
    return n ? select_kth(a, n, (size_t)(p * (double)(n - 1) + 0.5)) : 0.0f;
}

static float median_of(float *a, size_t n) /* reorders a; n >= 1 */
{
    float hi = select_kth(a, n, n / 2);
    if (n % 2)
        return hi;
    float lo = a[0];
    for (size_t i = 1; i < n / 2; i++) /* after selection a[0..n/2) holds the lower half */
        if (a[i] > lo)
            lo = a[i];
    return 0.5f * (lo + hi);
}

/* ---- state ---------------------------------------------------------------- */

typedef struct cand { /* a peak of the integrated feature */
    uint32_t t;
    float    v, slope;
} cand;

typedef struct meas {
    const ecg_record *r;
    ecg_measurements *m;
    double  fs;
    size_t  n, nl;
    size_t  dec, nd;               /* the detector's decimation and length: nd = n / dec */
    double  fsd;                   /* its rate */
    float  *x;                     /* nl x n: microvolts, mean removed, later baseline-corrected */
    float  *t1, *t2;               /* n each */
    float  *feat, *amp, *mwi;      /* nd each: the detector's feature */
    float  *win;                   /* per-window maxima */
    size_t  n_win;
    int     analysed[ECG_MAX_LEADS]; /* a voltage lead with a signal (not flat, not other) */
    int     use[ECG_MAX_LEADS];      /* the detector uses it */
    int     good[ECG_MAX_LEADS];     /* quality OK: median beat, delineation */
    cand   *c;
    size_t  nc, cc;
    uint32_t *beats;
    size_t  nb, cb;
} meas;

static size_t ms_to_n(const meas *w, double ms)
{
    double v = ms * w->fs / 1000.0;
    return v <= 0 ? 0 : (size_t)(v + 0.5);
}

static size_t ms_to_nd(const meas *w, double ms) /* at the detector's rate */
{
    double v = ms * w->fsd / 1000.0;
    return v <= 0 ? 0 : (size_t)(v + 0.5);
}

/* Block means: out[i] = mean of x[i*d .. i*d+d), i < n / d (a boxcar
 * anti-alias filter, enough below a fifth of the new rate). */
static size_t decimate(const float *x, size_t n, size_t d, float *out)
{
    size_t m = n / d;
    for (size_t i = 0; i < m; i++) {
        float s = 0;
        for (size_t j = 0; j < d; j++)
            s += x[i * d + j];
        out[i] = s / (float)d;
    }
    return m;
}

/* The p_lo and p_hi quantiles of x from at most QUANTILE_SAMPLES evenly
 * spaced samples (scratch: w->t2). */
static void quantiles(meas *w, const float *x, size_t n, double p_lo, double p_hi, float *lo, float *hi)
{
    size_t step = (n + QUANTILE_SAMPLES - 1) / QUANTILE_SAMPLES, m = 0;
    for (size_t t = 0; t < n; t += step)
        w->t2[m++] = x[t];
    *hi = percentile(w->t2, m, p_hi);
    *lo = percentile(w->t2, m, p_lo);
}

static float *lead(const meas *w, size_t k) { return w->x + k * w->n; }

/* ---- 1. leads ------------------------------------------------------------- */

static void load_leads(meas *w)
{
    for (size_t k = 0; k < w->nl; k++) {
        const ecg_lead *l = &w->r->leads[k];
        ecg_lead_measure *lm = &w->m->leads[k];
        snprintf(lm->name, sizeof lm->name, "%s", l->name);
        lm->range_uv = lm->noise_uv = lm->wander_uv = lm->qrs_uv = lm->st_j_uv = lm->st_uv = NAN;
        double uv = ecg_uv_per_count(l);
        if (uv <= 0) {
            if (l->unit[0]) { /* pressure, respiration, ...: not ours to measure */
                lm->quality = ECG_LQ_NOTECG;
                continue;
            }
            uv = l->scale; /* unit unknown: take the counts' scale as microvolts */
        }
        float *xk = lead(w, k);
        double sum = 0;
        for (size_t t = 0; t < w->n; t++) {
            double v = ((double)l->samples[t] - l->baseline) * uv;
            xk[t] = (float)v;
            sum += v;
        }
        float mean = (float)(sum / (double)w->n);
        for (size_t t = 0; t < w->n; t++)
            xk[t] -= mean;
        float hi, lo;
        quantiles(w, xk, w->n, 0.005, 0.995, &lo, &hi);
        lm->range_uv = (double)hi - lo;
        if (lm->range_uv < ECG_FLAT_UV) {
            lm->quality = ECG_LQ_FLAT;
            continue;
        }
        lm->quality = ECG_LQ_OK;
        w->analysed[k] = w->use[k] = 1;
    }
}

/* ---- 2. detector feature -------------------------------------------------- */

/* Median over fixed windows of each window's maximum of v[0..n). */
static float typical_peak(meas *w, const float *v, int absolute)
{
    size_t len = w->nd / w->n_win;
    for (size_t i = 0; i < w->n_win; i++) {
        float mx = 0;
        size_t end = i + 1 == w->n_win ? w->nd : (i + 1) * len;
        for (size_t t = i * len; t < end; t++) {
            float a = absolute ? fabsf(v[t]) : v[t];
            if (a > mx)
                mx = a;
        }
        w->win[i] = mx;
    }
    return median_of(w->win, w->n_win);
}

/* The summed normalised squared slope (feat), the summed normalised
 * band-pass amplitude (amp) and the moving-window integral (mwi).
 * Returns the number of leads that contributed. */
static size_t build_feature(meas *w)
{
    size_t n = w->nd, used = 0;
    memset(w->feat, 0, n * sizeof *w->feat);
    memset(w->amp, 0, n * sizeof *w->amp);
    for (size_t k = 0; k < w->nl; k++) {
        if (!w->use[k])
            continue;
        float *bp = w->t1, *d = w->t2;
        decimate(lead(w, k), w->n, w->dec, bp);
        filtfilt(bp, n, w->fsd, BP_LOW_HZ, 1);
        filtfilt(bp, n, w->fsd, BP_HIGH_HZ, 0);
        /* Five-point derivative (Pan & Tompkins), centred. */
        d[0] = d[1] = 0;
        if (n > 1)
            d[n - 1] = d[n - 2] = 0;
        for (size_t t = 2; t + 2 < n; t++)
            d[t] = (2 * bp[t + 2] + bp[t + 1] - bp[t - 1] - 2 * bp[t - 2]) * (float)(w->fsd / 8.0);
        for (size_t t = 0; t < n; t++)
            d[t] *= d[t];
        float level = typical_peak(w, d, 0), ampl = typical_peak(w, bp, 1);
        if (!(level > 0) || !(ampl > 0))
            continue;
        float il = 1.0f / level, ia = 1.0f / ampl;
        for (size_t t = 0; t < n; t++) {
            w->feat[t] += d[t] * il;
            w->amp[t] += fabsf(bp[t]) * ia;
        }
        used++;
    }
    /* Centred moving-window integration. */
    size_t half = ms_to_nd(w, MWI_MS) / 2, width = 2 * half + 1;
    double run = 0;
    for (size_t t = 0; t < half && t < n; t++)
        run += w->feat[t];
    for (size_t t = 0; t < n; t++) {
        if (t + half < n)
            run += w->feat[t + half];
        if (t > half)
            run -= w->feat[t - half - 1];
        w->mwi[t] = (float)(run / (double)width);
    }
    return used;
}

/* ---- 3. Pan-Tompkins classification ---------------------------------------- */

static int push_cand(meas *w, cand c)
{
    if (w->nc == w->cc) {
        size_t nc = w->cc ? 2 * w->cc : 256;
        cand *p = realloc(w->c, nc * sizeof *p);
        if (!p)
            return DCM_ENOMEM;
        w->c = p;
        w->cc = nc;
    }
    w->c[w->nc++] = c;
    return 0;
}

static int push_beat(meas *w, uint32_t t)
{
    if (w->nb == w->cb) {
        size_t nc = w->cb ? 2 * w->cb : 64;
        uint32_t *p = realloc(w->beats, nc * sizeof *p);
        if (!p)
            return DCM_ENOMEM;
        w->beats = p;
        w->cb = nc;
    }
    w->beats[w->nb++] = t;
    return 0;
}

/* Local maxima of the integrated feature, each with the largest squared
 * slope around it (for the T-wave test). */
static int find_candidates(meas *w)
{
    size_t half = ms_to_nd(w, MWI_MS) / 2;
    w->nc = 0;
    for (size_t t = 1; t + 1 < w->nd; t++) {
        if (!(w->mwi[t] > w->mwi[t - 1] && w->mwi[t] >= w->mwi[t + 1]))
            continue;
        float s = 0;
        size_t a = t > half ? t - half : 0, b = t + half < w->nd ? t + half : w->nd - 1;
        for (size_t i = a; i <= b; i++)
            if (w->feat[i] > s)
                s = w->feat[i];
        int rc = push_cand(w, (cand){(uint32_t)t, w->mwi[t], s});
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct pt_state {
    double spki, npki, thr1, thr2;
    double rr1[8], rr2[8], avg1, avg2;
    size_t n1, n2, out_of_range;
    int    irregular;
    long   last;        /* index into candidates of the last QRS, -1 none */
    double refr, twave; /* samples */
} pt_state;

static void pt_thresholds(pt_state *s)
{
    s->thr1 = s->npki + 0.25 * (s->spki - s->npki);
    if (s->irregular)
        s->thr1 *= 0.5; /* Pan & Tompkins: irregular heart rate halves the thresholds */
    s->thr2 = 0.5 * s->thr1;
}

static double ring_mean(const double *r, size_t n)
{
    double s = 0;
    size_t k = n < 8 ? n : 8;
    for (size_t i = 0; i < k; i++)
        s += r[i];
    return k ? s / (double)k : 0;
}

/* Accept candidate i as a QRS complex. */
static int pt_accept(meas *w, pt_state *s, long i, double weight)
{
    const cand *c = &w->c[i];
    s->spki = weight * c->v + (1 - weight) * s->spki;
    if (s->last >= 0) {
        double rr = (double)c->t - w->c[s->last].t;
        s->rr1[s->n1++ % 8] = rr;
        s->avg1 = ring_mean(s->rr1, s->n1);
        int regular = s->n2 == 0 || (rr > 0.92 * s->avg2 && rr < 1.16 * s->avg2);
        if (regular) {
            s->rr2[s->n2++ % 8] = rr;
            s->avg2 = ring_mean(s->rr2, s->n2);
            s->out_of_range = 0;
        } else if (++s->out_of_range >= 8) {
            /* The rhythm changed for good: take the recent average as regular. */
            memcpy(s->rr2, s->rr1, sizeof s->rr2);
            s->n2 = s->n1 < 8 ? s->n1 : 8;
            s->avg2 = s->avg1;
            s->out_of_range = 0;
        }
        s->irregular = !regular;
    }
    s->last = i;
    pt_thresholds(s);
    return push_beat(w, c->t);
}

static int is_twave(const meas *w, const pt_state *s, const cand *c)
{
    return s->last >= 0 && (double)c->t - w->c[s->last].t < s->twave &&
           c->slope < 0.25f * w->c[s->last].slope; /* slope below half (squared: a quarter) */
}

/* Search back: while no QRS for 166 % of RR AVERAGE2 before time `upto`,
 * take the largest candidate above THRESHOLD I2 since the last QRS. */
static int pt_searchback(meas *w, pt_state *s, long upto_i, double upto_t)
{
    while (s->last >= 0 && s->avg2 > 0 && upto_t - w->c[s->last].t > MISSED_RR * s->avg2) {
        long best = -1;
        for (long j = s->last + 1; j < upto_i; j++) {
            const cand *c = &w->c[j];
            if ((double)c->t - w->c[s->last].t < s->refr || c->v <= s->thr2 || is_twave(w, s, c))
                continue;
            if (best < 0 || c->v > w->c[best].v)
                best = j;
        }
        if (best < 0)
            return 0;
        int rc = pt_accept(w, s, best, 0.25);
        if (rc)
            return rc;
    }
    return 0;
}

static int detect(meas *w)
{
    w->nb = 0;
    int rc = find_candidates(w);
    if (rc || w->nc == 0)
        return rc;
    pt_state s = {.last = -1, .refr = REFRACTORY_MS * w->fsd / 1000.0, .twave = TWAVE_MS * w->fsd / 1000.0};
    /* Learning (offline: from the whole record): the signal level is the
     * typical window maximum, the noise level half the mean. */
    s.spki = typical_peak(w, w->mwi, 0);
    double sum = 0;
    for (size_t t = 0; t < w->nd; t++)
        sum += w->mwi[t];
    s.npki = 0.5 * sum / (double)w->nd;
    pt_thresholds(&s);
    for (long i = 0; i < (long)w->nc; i++) {
        const cand *c = &w->c[i];
        if ((rc = pt_searchback(w, &s, i, c->t)))
            return rc;
        if (s.last >= 0 && (double)c->t - w->c[s.last].t < s.refr) {
            /* The same complex: keep its larger peak. */
            if (c->v > w->c[s.last].v && c->v > s.thr1) {
                w->beats[w->nb - 1] = c->t;
                s.last = i;
            }
            continue;
        }
        if (c->v > s.thr1 && !is_twave(w, &s, c)) {
            if ((rc = pt_accept(w, &s, i, 0.125)))
                return rc;
        } else {
            s.npki = 0.125 * c->v + 0.875 * s.npki;
            pt_thresholds(&s);
        }
    }
    if ((rc = pt_searchback(w, &s, (long)w->nc, (double)w->nd)))
        return rc;
    /* Search back did not look before the first QRS: do it with the final
     * levels (a beat missed while the thresholds settled). */
    if (w->nb && s.avg2 > 0) {
        uint32_t first = w->beats[0];
        for (long i = 0; i < (long)w->nc && w->c[i].t + s.refr < first; i++) {
            const cand *c = &w->c[i];
            if (c->v > s.thr1 && (double)first - c->t > 0.5 * s.avg2) {
                if ((rc = push_beat(w, c->t)))
                    return rc;
                first = c->t; /* keeps order below: re-sorted after */
            }
        }
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- 4. fiducial points -------------------------------------------------- */

static void fiducials(meas *w)
{
    qsort(w->beats, w->nb, sizeof *w->beats, cmp_u32);
    size_t reach = ms_to_nd(w, FIDUCIAL_MS), refr = ms_to_nd(w, REFRACTORY_MS), out = 0;
    for (size_t i = 0; i < w->nb; i++) {
        size_t t = w->beats[i];
        size_t a = t > reach ? t - reach : 0, b = t + reach < w->nd ? t + reach : w->nd - 1, best = t;
        for (size_t j = a; j <= b; j++)
            if (w->amp[j] > w->amp[best])
                best = j;
        if (out && best < (size_t)w->beats[out - 1] + refr) {
            /* Two detections on one complex: keep the stronger. */
            if (w->mwi[best] > w->mwi[w->beats[out - 1]])
                w->beats[out - 1] = (uint32_t)best;
            continue;
        }
        w->beats[out++] = (uint32_t)best;
    }
    w->nb = out;
    /* To the record's rate: the middle of the detector's sample. */
    for (size_t i = 0; i < w->nb; i++) {
        size_t t = w->beats[i] * w->dec + w->dec / 2;
        w->beats[i] = (uint32_t)(t < w->n ? t : w->n - 1);
    }
}

/* ---- 5. rhythm and quality -------------------------------------------------- */

static void rhythm(meas *w)
{
    ecg_measurements *m = w->m;
    double to_ms = 1000.0 / w->fs;
    if (w->nb == 0) {
        m->longest_pause_ms = m->duration_ms;
        return;
    }
    double pause = w->beats[0] * to_ms, tail = (double)(w->n - 1 - w->beats[w->nb - 1]) * to_ms;
    if (tail > pause)
        pause = tail;
    if (w->nb >= 2) {
        size_t k = w->nb - 1;
        double sum = 0, sq = 0, dsq = 0, mn = INFINITY, mx = 0, prev = 0;
        for (size_t i = 0; i < k; i++) {
            double rr = (double)(w->beats[i + 1] - w->beats[i]) * to_ms;
            sum += rr;
            mn = rr < mn ? rr : mn;
            mx = rr > mx ? rr : mx;
            if (i)
                dsq += (rr - prev) * (rr - prev);
            prev = rr;
        }
        double mean = sum / (double)k;
        for (size_t i = 0; i < k; i++) {
            double rr = (double)(w->beats[i + 1] - w->beats[i]) * to_ms;
            sq += (rr - mean) * (rr - mean);
        }
        m->rr_mean_ms = mean;
        m->rr_min_ms = mn;
        m->rr_max_ms = mx;
        m->rr_sdnn_ms = k > 1 ? sqrt(sq / (double)(k - 1)) : 0;
        m->rr_rmssd_ms = k > 1 ? sqrt(dsq / (double)(k - 1)) : NAN;
        m->hr_bpm = 60000.0 / mean;
        if (mx > pause)
            pause = mx;
    }
    m->longest_pause_ms = pause;
}

/* Noise above 40 Hz outside the QRS complexes, and baseline wander. */
static void quality(meas *w)
{
    size_t zone = ms_to_n(w, QRS_ZONE_MS);
    for (size_t k = 0; k < w->nl; k++) {
        ecg_lead_measure *lm = &w->m->leads[k];
        if (!w->analysed[k])
            continue;
        float *h = w->t1;
        memcpy(h, lead(w, k), w->n * sizeof *h);
        biquad hp = butter2(w->fs, NOISE_HP_HZ, 1);
        biquad_run(&hp, h, w->n, 0); /* one direction: the RMS does not care about phase */
        double sq = 0;
        size_t cnt = 0, bi = 0;
        for (size_t t = 0; t < w->n; t++) {
            while (bi < w->nb && w->beats[bi] + zone < t)
                bi++;
            if (bi < w->nb && w->beats[bi] <= t + zone)
                continue;
            sq += (double)h[t] * h[t];
            cnt++;
        }
        if (!cnt) /* nothing but QRS complexes: measure everything */
            for (size_t t = 0; t < w->n; t++, cnt++)
                sq += (double)h[t] * h[t];
        lm->noise_uv = sqrt(sq / (double)cnt);
        size_t dw = w->fs > WANDER_RATE ? (size_t)(w->fs / WANDER_RATE) : 1;
        size_t nw = decimate(lead(w, k), w->n, dw, h);
        filtfilt(h, nw, w->fs / (double)dw, WANDER_LP_HZ, 0);
        float hi, lo;
        quantiles(w, h, nw, 0.01, 0.99, &lo, &hi);
        lm->wander_uv = (double)hi - lo;
        lm->quality = lm->noise_uv > ECG_NOISE_UV     ? ECG_LQ_NOISY
                      : lm->wander_uv > ECG_WANDER_UV ? ECG_LQ_WANDER
                                                      : ECG_LQ_OK;
        w->good[k] = lm->quality == ECG_LQ_OK;
    }
}

/* ---- 6. median beat ------------------------------------------------------------ */

typedef struct beatwin {
    size_t pre, post, len; /* samples before / after the fiducial; len = pre + post + 1 */
    size_t shift;          /* alignment shifts tried each way */
    double rr;             /* median RR, samples */
} beatwin;

typedef struct delin { /* indices into the median beat; -1: not found */
    long on, off, tend, pon;
} delin;

/* Leads the median beat is made of and delineated on: the good ones, or
 * when none is good, every analysed one. */
static int beat_lead(const meas *w, size_t k, int any_good)
{
    return any_good ? w->good[k] : w->analysed[k];
}

/* Mean over beats at positions pos[0..np) of every analysed lead, for the
 * window's samples [t0, t1): the template that aligns the beats and picks
 * the dominant ones (the median is kept for the beat that is measured). */
static void make_mean(const meas *w, const beatwin *bw, const size_t *pos, size_t np, size_t t0, size_t t1,
                      float *out)
{
    for (size_t k = 0; k < w->nl; k++) {
        if (!w->analysed[k])
            continue;
        const float *xk = lead(w, k);
        float *o = out + k * bw->len;
        for (size_t t = t0; t < t1; t++)
            o[t] = 0;
        for (size_t i = 0; i < np; i++) {
            const float *b = xk + pos[i] - bw->pre;
            for (size_t t = t0; t < t1; t++)
                o[t] += b[t];
        }
        for (size_t t = t0; t < t1; t++)
            o[t] /= (float)np;
    }
}

/* Median over beats at positions pos[0..np) of every analysed lead, for
 * the whole window.  Blocks of MEDIAN_BLOCK samples are sorted across the
 * beats by an odd-even transposition network: branch-free compare-exchange
 * of whole rows (vector min/max). */
#define MEDIAN_BLOCK 64

/* a[t], b[t] = min, max (SSE2 when there, the same results without). */
static void compare_exchange(float *a, float *b, size_t n)
{
    size_t t = 0;
#ifdef __SSE2__
    for (; t + 4 <= n; t += 4) {
        __m128 x = _mm_loadu_ps(a + t), y = _mm_loadu_ps(b + t);
        _mm_storeu_ps(a + t, _mm_min_ps(x, y));
        _mm_storeu_ps(b + t, _mm_max_ps(x, y));
    }
#endif
    for (; t < n; t++) {
        float x = a[t], y = b[t];
        a[t] = x < y ? x : y;
        b[t] = x < y ? y : x;
    }
}

static void make_median(const meas *w, const beatwin *bw, const size_t *pos, size_t np, float *out)
{
    float v[ECG_MEASURE_MEDIAN_BEATS][MEDIAN_BLOCK];
    for (size_t k = 0; k < w->nl; k++) {
        if (!w->analysed[k])
            continue;
        const float *xk = lead(w, k);
        float *o = out + k * bw->len;
        for (size_t t0 = 0; t0 < bw->len; t0 += MEDIAN_BLOCK) {
            size_t bl = bw->len - t0 < MEDIAN_BLOCK ? bw->len - t0 : MEDIAN_BLOCK;
            for (size_t i = 0; i < np; i++)
                memcpy(v[i], xk + pos[i] - bw->pre + t0, bl * sizeof(float));
            for (size_t r = 0; r < np; r++)
                for (size_t i = r % 2; i + 1 < np; i += 2)
                    compare_exchange(v[i], v[i + 1], bl);
            for (size_t t = 0; t < bl; t++)
                o[t0 + t] = np % 2 ? v[np / 2][t] : 0.5f * (v[np / 2 - 1][t] + v[np / 2][t]);
        }
    }
}

/* Cosine similarity of the beat at p with the template, QRS region, per-lead mean removed. */
static double beat_corr(const meas *w, const beatwin *bw, const float *tmpl, size_t p, int any_good, size_t q)
{
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t k = 0; k < w->nl; k++) {
        if (!beat_lead(w, k, any_good))
            continue;
        const float *xk = lead(w, k) + p - q, *tk = tmpl + k * bw->len + bw->pre - q;
        double mx = 0, mt = 0;
        for (size_t t = 0; t <= 2 * q; t++) {
            mx += xk[t];
            mt += tk[t];
        }
        mx /= (double)(2 * q + 1);
        mt /= (double)(2 * q + 1);
        for (size_t t = 0; t <= 2 * q; t++) {
            double a = xk[t] - mx, b = tk[t] - mt;
            sxy += a * b;
            sxx += a * a;
            syy += b * b;
        }
    }
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0;
}

/* The shift of the beat at p that best matches the template. */
static size_t align(const meas *w, const beatwin *bw, const float *tmpl, size_t p, int any_good, size_t q)
{
    double best = -INFINITY;
    size_t bp = p;
    for (size_t s = p - bw->shift; s <= p + bw->shift; s++) {
        double acc = 0;
        for (size_t k = 0; k < w->nl; k++) {
            if (!beat_lead(w, k, any_good))
                continue;
            const float *xk = lead(w, k) + s - q, *tk = tmpl + k * bw->len + bw->pre - q;
            for (size_t t = 0; t <= 2 * q; t++)
                acc += (double)xk[t] * tk[t];
        }
        if (acc > best) {
            best = acc;
            bp = s;
        }
    }
    return bp;
}

/* Low-pass every median-beat lead into out. */
static void lowpass_beats(const meas *w, const beatwin *bw, const float *med, float *out, double hz)
{
    for (size_t k = 0; k < w->nl; k++) {
        if (!w->analysed[k])
            continue;
        memcpy(out + k * bw->len, med + k * bw->len, bw->len * sizeof *out);
        filtfilt(out + k * bw->len, bw->len, w->fs, hz, 0);
    }
}

/* QRS onset and offset: where the spatial velocity (the length of the
 * leads' joint slope vector) leaves and returns to its quiet level.
 * sv is a work array of bw->len. */
static void delineate_qrs(const meas *w, const beatwin *bw, const float *lp, float *sv, int any_good, delin *d)
{
    size_t len = bw->len;
    sv[0] = sv[len - 1] = 0;
    for (size_t t = 1; t + 1 < len; t++) {
        double s = 0;
        for (size_t k = 0; k < w->nl; k++) {
            if (!beat_lead(w, k, any_good))
                continue;
            const float *b = lp + k * len;
            double dv = (double)b[t + 1] - b[t - 1];
            s += dv * dv;
        }
        sv[t] = (float)sqrt(s);
    }
    size_t q = ms_to_n(w, QRS_REGION_MS), lo = bw->pre > q ? bw->pre - q : 1, hi = bw->pre + q;
    if (hi > len - 2)
        hi = len - 2;
    size_t peak = lo;
    for (size_t t = lo; t <= hi; t++)
        if (sv[t] > sv[peak])
            peak = t;
    float svmax = sv[peak];
    memcpy(w->t2, sv, len * sizeof *sv);
    float quiet = percentile(w->t2, len, 0.10);
    float thr = (float)fmax(QRS_THR_FRAC * svmax, QRS_THR_FLOOR * quiet);
    size_t run = ms_to_n(w, QUIET_MS);
    if (run < 2)
        run = 2;
    d->on = d->off = -1;
    if (!(svmax > 0) || svmax < thr)
        return; /* nothing rises above the quiet level: no QRS to delineate */
    /* Backwards to the first quiet run. */
    for (size_t t = peak; t > run; t--) {
        if (sv[t] >= thr)
            continue;
        size_t j = 0;
        while (j < run && sv[t - j] < thr)
            j++;
        if (j == run) {
            d->on = (long)t + 1; /* the first sample of the active span */
            break;
        }
    }
    for (size_t t = peak; t + run < len; t++) {
        if (sv[t] >= thr)
            continue;
        size_t j = 0;
        while (j < run && sv[t + j] < thr)
            j++;
        if (j == run) {
            d->off = (long)t - 1; /* its last sample */
            break;
        }
    }
    if (d->on < 0 || d->off <= d->on)
        d->on = d->off = -1;
}

/* Trapezium area (Zhang et al. 2006): the corner where a limb of u meets
 * its quiet level.  From the steepest point xm towards a reference point
 * xr beyond the corner, the t maximising the trapezium's area. */
static long trapezium(const float *u, long xm, long xr)
{
    long best = xm, step = xr > xm ? 1 : -1;
    double amax = -1;
    for (long t = xm; t != xr + step; t += step) {
        double a = 0.5 * ((double)u[xm] - u[t]) * (double)labs(2 * xr - t - xm);
        if (a > amax) {
            amax = a;
            best = t;
        }
    }
    return best;
}

/* T end and P onset on the RMS curve of the leads (baseline at the PR knot). */
static void delineate_waves(const meas *w, const beatwin *bw, const float *lp, float *u, int any_good, double noise,
                            delin *d)
{
    size_t len = bw->len, cnt = 0;
    long on = d->on, off = d->off;
    double iso[ECG_MAX_LEADS] = {0};
    long ia = on - (long)ms_to_n(w, 30), ib = on - (long)ms_to_n(w, 10);
    if (ia < 0)
        ia = 0;
    if (ib < ia)
        ib = ia;
    for (size_t k = 0; k < w->nl; k++) {
        if (!beat_lead(w, k, any_good))
            continue;
        for (long t = ia; t <= ib; t++)
            iso[k] += lp[k * len + (size_t)t];
        iso[k] /= (double)(ib - ia + 1);
        cnt++;
    }
    for (size_t t = 0; t < len; t++) {
        double s = 0;
        for (size_t k = 0; k < w->nl; k++) {
            if (!beat_lead(w, k, any_good))
                continue;
            double v = lp[k * len + t] - iso[k];
            s += v * v;
        }
        u[t] = (float)sqrt(s / (double)cnt);
    }
    /* T: peak after the J point, steepest descent, corner. */
    long rr = (long)bw->rr, lim = (long)len - 1;
    if (on + rr - (long)ms_to_n(w, 40) < lim)
        lim = on + rr - (long)ms_to_n(w, 40);
    long a = off + (long)ms_to_n(w, 40);
    d->tend = -1;
    if (a + 2 < lim) {
        long tp = a;
        for (long t = a; t <= lim; t++)
            if (u[t] > u[tp])
                tp = t;
        /* The steepest point of the descending limb: between the peak and
         * where the curve is down to a fifth of its height. */
        float low = u[tp];
        for (long t = tp; t <= lim; t++)
            low = u[t] < low ? u[t] : low;
        long tq = tp;
        while (tq < lim && u[tq] - low > 0.2f * (u[tp] - low))
            tq++;
        long xm = tp;
        double steep = 0;
        for (long t = tp; t < tq; t++)
            if ((double)u[t + 1] - u[t] < steep) {
                steep = (double)u[t + 1] - u[t];
                xm = t;
            }
        long reach = 2 * (xm - tp), minr = (long)ms_to_n(w, 120);
        long xr = xm + (reach > minr ? reach : minr);
        if (xr > lim)
            xr = lim;
        if (xm < xr && steep < 0)
            d->tend = trapezium(u, xm, xr);
    }
    /* P: between the previous beat's T end and the QRS onset. */
    d->pon = -1;
    long plo = on - (long)ms_to_n(w, 350), phi = on - (long)ms_to_n(w, 10);
    if (d->tend >= 0 && d->tend - rr + (long)ms_to_n(w, 20) > plo)
        plo = d->tend - rr + (long)ms_to_n(w, 20);
    if (plo < 1)
        plo = 1;
    if (phi - plo < (long)ms_to_n(w, 40))
        return;
    long pp = plo;
    for (long t = plo; t <= phi; t++)
        if (u[t] > u[pp])
            pp = t;
    float before = u[pp], after = u[pp];
    for (long t = plo; t <= pp; t++)
        before = u[t] < before ? u[t] : before;
    for (long t = pp; t <= phi; t++)
        after = u[t] < after ? u[t] : after;
    float prom = u[pp] - before;
    if (pp <= plo || prom < P_MIN_UV || prom < 3 * noise || u[pp] - after < 0.5f * prom)
        return;
    long tq = pp; /* the rising limb: from a fifth of the height to the peak */
    while (tq > plo && u[tq] - before > 0.2f * prom)
        tq--;
    long xm = pp;
    double steep = 0;
    for (long t = tq; t < pp; t++)
        if ((double)u[t + 1] - u[t] > steep) {
            steep = (double)u[t + 1] - u[t];
            xm = t + 1;
        }
    long reach = 2 * (pp - xm), minr = (long)ms_to_n(w, 80);
    long xr = xm - (reach > minr ? reach : minr);
    if (xr < plo)
        xr = plo;
    if (xr < xm)
        d->pon = trapezium(u, xm, xr);
}

/* Net QRS area of the limb leads -> frontal axis by least squares over
 * the leads' directions in the hexaxial frame (Einthoven, Goldberger). */
static double frontal_axis(const meas *w, const beatwin *bw, const float *med, const delin *d)
{
    static const struct { const char *name; double x, y; } hex[] = {
        {"I", 1.0, 0.0},     {"II", 0.5, 0.8660254}, {"III", -0.5, 0.8660254},
        {"aVR", -0.75, -0.4330127}, {"aVL", 0.75, -0.4330127}, {"aVF", 0.0, 0.8660254},
    };
    double sxx = 0, sxy = 0, syy = 0, bx = 0, by = 0;
    for (size_t i = 0; i < sizeof hex / sizeof hex[0]; i++) {
        int k = ecg_lead_index(w->r, hex[i].name);
        if (k < 0 || !w->good[k])
            continue;
        const float *b = med + (size_t)k * bw->len;
        double area = 0;
        for (long t = d->on; t <= d->off; t++)
            area += b[t] - b[d->on];
        sxx += hex[i].x * hex[i].x;
        sxy += hex[i].x * hex[i].y;
        syy += hex[i].y * hex[i].y;
        bx += hex[i].x * area;
        by += hex[i].y * area;
    }
    double det = sxx * syy - sxy * sxy;
    if (det < 0.1)
        return NAN; /* fewer than two independent limb leads */
    double hx = (syy * bx - sxy * by) / det, hy = (sxx * by - sxy * bx) / det;
    if (hx == 0 && hy == 0)
        return NAN;
    double deg = atan2(hy, hx) * 180.0 / M_PI;
    return deg <= -180.0 ? deg + 360.0 : deg;
}

/* Subtract, lead by lead, the baseline through the PR knots (linear
 * interpolation; constant before the first and after the last). */
static void remove_baseline(meas *w, const size_t *knots, size_t nk)
{
    size_t half = ms_to_n(w, KNOT_HALF_MS);
    for (size_t k = 0; k < w->nl; k++) {
        if (!w->analysed[k] || nk == 0)
            continue;
        float *xk = lead(w, k);
        double prev_lvl = 0;
        size_t prev_t = 0;
        for (size_t i = 0; i <= nk; i++) {
            double lvl = prev_lvl;
            size_t kt = i < nk ? knots[i] : w->n;
            if (i < nk) {
                double s = 0;
                for (size_t t = kt - half; t <= kt + half; t++)
                    s += xk[t];
                lvl = s / (double)(2 * half + 1);
            }
            if (i == 0)
                prev_lvl = lvl;
            /* samples [prev_t, kt): from prev_lvl to lvl */
            for (size_t t = prev_t; t < kt && t < w->n; t++) {
                double f = i == 0 || i == nk || kt == prev_t ? 0 : (double)(t - prev_t) / (double)(kt - prev_t);
                xk[t] -= (float)(prev_lvl + f * (lvl - prev_lvl));
            }
            prev_lvl = lvl;
            prev_t = kt;
        }
    }
}

static int median_beat(meas *w)
{
    ecg_measurements *m = w->m;
    int any_good = 0;
    for (size_t k = 0; k < w->nl; k++)
        any_good |= w->good[k];
    beatwin bw;
    bw.rr = w->nb >= 2 ? m->rr_mean_ms * w->fs / 1000.0 : w->fs;
    if (w->nb >= 3) { /* the median RR: robust to one ectopic */
        size_t k = w->nb - 1 < 256 ? w->nb - 1 : 256;
        float rr[256];
        for (size_t i = 0; i < k; i++)
            rr[i] = (float)(w->beats[i + 1] - w->beats[i]);
        bw.rr = median_of(rr, k);
    }
    double pre = fmin(fmax(0.6 * bw.rr, 0.2 * w->fs), 0.45 * w->fs);
    double post = fmin(fmax(0.85 * bw.rr, 0.3 * w->fs), 0.7 * w->fs);
    bw.pre = (size_t)pre;
    bw.post = (size_t)post;
    bw.len = bw.pre + bw.post + 1;
    bw.shift = ms_to_n(w, ALIGN_MS);
    size_t q = ms_to_n(w, QRS_REGION_MS);
    size_t margin = bw.shift + (q > bw.pre ? q : bw.pre), margin_post = bw.shift + bw.post;
    /* Beats whose window fits, evenly spread, at most ECG_MEASURE_MEDIAN_BEATS. */
    size_t eligible = 0;
    for (size_t i = 0; i < w->nb; i++)
        eligible += w->beats[i] >= margin && w->beats[i] + margin_post < w->n;
    if (eligible == 0) {
        /* A short record (a cart's median beat, one or two complexes):
         * the window shrinks to what the beat with most room has. */
        size_t best = 0, room = 0;
        for (size_t i = 0; i < w->nb; i++) {
            size_t b = w->beats[i], before = b, after = w->n - 1 - b;
            size_t r = before < after ? before : after;
            if (r > room) {
                room = r;
                best = b;
            }
        }
        size_t before = best, after = w->n - 1 - best, extra = bw.shift + 1;
        if (before <= extra + q || after <= extra)
            return 0;
        bw.pre = bw.pre < before - extra ? bw.pre : before - extra;
        bw.post = bw.post < after - extra ? bw.post : after - extra;
        if (bw.pre < ms_to_n(w, 200) || bw.post < ms_to_n(w, 300))
            return 0;
        bw.len = bw.pre + bw.post + 1;
        margin = bw.shift + (q > bw.pre ? q : bw.pre);
        margin_post = bw.shift + bw.post;
        for (size_t i = 0; i < w->nb; i++)
            eligible += w->beats[i] >= margin && w->beats[i] + margin_post < w->n;
    }
    size_t pos[ECG_MEASURE_MEDIAN_BEATS], np = 0, e = 0;
    size_t want = eligible < ECG_MEASURE_MEDIAN_BEATS ? eligible : ECG_MEASURE_MEDIAN_BEATS;
    for (size_t i = 0; i < w->nb && np < want; i++) {
        if (!(w->beats[i] >= margin && w->beats[i] + margin_post < w->n))
            continue;
        if (want == eligible || e * (want - 1) >= np * (eligible - 1))
            pos[np++] = w->beats[i];
        e++;
    }
    int rc = 0;
    float *med = calloc(w->nl * bw.len, sizeof *med), *lp = calloc(w->nl * bw.len, sizeof *lp);
    float *u = calloc(bw.len, sizeof *u);
    size_t *knots = malloc((w->nb ? w->nb : 1) * sizeof *knots);
    if (!med || !lp || !u || !knots) {
        rc = DCM_ENOMEM;
        goto out;
    }
    /* Pass A: a mean template, alignment, the dominant beats, their mean
     * and its QRS onset — only the QRS and 200 ms either side are needed. */
    size_t near = ms_to_n(w, 200), a0 = bw.pre > near ? bw.pre - near : 0;
    size_t a1 = bw.pre + (bw.post > near ? near : bw.post) + 1;
    make_mean(w, &bw, pos, np, a0, a1, med);
    size_t dom[ECG_MEASURE_MEDIAN_BEATS], nd = 0;
    for (size_t i = 0; i < np; i++) {
        size_t p = align(w, &bw, med, pos[i], any_good, q);
        if (beat_corr(w, &bw, med, p, any_good, q) >= DOMINANT_CORR)
            dom[nd++] = p;
    }
    if (nd == 0) {
        memcpy(dom, pos, np * sizeof *pos);
        nd = np;
    }
    make_mean(w, &bw, dom, nd, a0, a1, med);
    lowpass_beats(w, &bw, med, lp, DELIN_LP_HZ);
    delin d;
    delineate_qrs(w, &bw, lp, u, any_good, &d);
    if (d.on < 0 || d.off < 0)
        goto out;
    /* Baseline: PR knots of every beat of the dominant morphology. */
    long on_rel = d.on - (long)bw.pre - (long)ms_to_n(w, KNOT_BEFORE_MS);
    size_t half = ms_to_n(w, KNOT_HALF_MS), nk = 0;
    for (size_t i = 0; i < w->nb; i++) {
        long kt = (long)w->beats[i] + on_rel;
        if (kt < (long)half || kt + (long)half >= (long)w->n || w->beats[i] < q || w->beats[i] + q >= w->n)
            continue;
        if (beat_corr(w, &bw, med, w->beats[i], any_good, q) >= DOMINANT_CORR)
            knots[nk++] = (size_t)kt;
    }
    remove_baseline(w, knots, nk);
    /* Pass B: the median beat of the corrected leads, delineated. */
    make_median(w, &bw, dom, nd, med);
    m->median_beats = nd;
    lowpass_beats(w, &bw, med, lp, DELIN_LP_HZ);
    delineate_qrs(w, &bw, lp, u, any_good, &d);
    if (d.on < 0 || d.off < 0)
        goto out;
    double to_ms = 1000.0 / w->fs;
    m->qrs_onset_ms = ((double)d.on - (double)bw.pre) * to_ms;
    m->qrs_offset_ms = ((double)d.off - (double)bw.pre) * to_ms;
    m->qrs_ms = (double)(d.off - d.on) * to_ms;
    for (size_t k = 0; k < w->nl; k++) {
        if (!w->analysed[k])
            continue;
        const float *b = lp + k * bw.len;
        double iso = 0;
        long ia = d.on - (long)ms_to_n(w, 30), ib = d.on - (long)ms_to_n(w, 10);
        ia = ia < 0 ? 0 : ia;
        ib = ib < ia ? ia : ib;
        for (long t = ia; t <= ib; t++)
            iso += b[t];
        iso /= (double)(ib - ia + 1);
        float mn = b[d.on], mx = b[d.on];
        for (long t = d.on; t <= d.off; t++) {
            mn = b[t] < mn ? b[t] : mn;
            mx = b[t] > mx ? b[t] : mx;
        }
        ecg_lead_measure *lm = &m->leads[k];
        lm->qrs_uv = (double)mx - mn;
        lm->st_j_uv = b[d.off] - iso;
        size_t j60 = (size_t)d.off + ms_to_n(w, ST_AFTER_J_MS);
        if (j60 < bw.len)
            lm->st_uv = b[j60] - iso;
    }
    m->axis_deg = frontal_axis(w, &bw, med, &d);
    lowpass_beats(w, &bw, med, lp, WAVE_LP_HZ);
    /* The median's residual noise: the leads' noise over the square root of the beats. */
    double noise = 0;
    size_t nn = 0;
    for (size_t k = 0; k < w->nl; k++)
        if (beat_lead(w, k, any_good) && !isnan(m->leads[k].noise_uv)) {
            noise += m->leads[k].noise_uv;
            nn++;
        }
    noise = nn ? noise / (double)nn / sqrt((double)nd) : 0;
    delineate_waves(w, &bw, lp, u, any_good, noise, &d);
    if (d.tend > d.off) {
        m->t_end_ms = ((double)d.tend - (double)bw.pre) * to_ms;
        m->qt_ms = (double)(d.tend - d.on) * to_ms;
        if (m->rr_mean_ms > 0) {
            double rr_s = m->rr_mean_ms / 1000.0;
            m->qtc_bazett_ms = m->qt_ms / sqrt(rr_s);
            m->qtc_fridericia_ms = m->qt_ms / cbrt(rr_s);
        }
    }
    if (d.pon >= 0) {
        m->p_wave = 1;
        m->p_onset_ms = ((double)d.pon - (double)bw.pre) * to_ms;
        m->pr_ms = (double)(d.on - d.pon) * to_ms;
    }
out:
    free(med);
    free(lp);
    free(u);
    free(knots);
    return rc;
}

/* ---- entry points ------------------------------------------------------------ */

const char *ecg_lead_quality_name(int q)
{
    static const char *const names[] = {"ok", "flat", "noisy", "wander", "not-ecg"};
    return q >= 0 && q < (int)(sizeof names / sizeof names[0]) ? names[q] : "?";
}

void ecg_measure_release(ecg_measurements *m)
{
    if (!m)
        return;
    free(m->beats);
    memset(m, 0, sizeof *m);
}

static void init_result(ecg_measurements *m, const ecg_record *r)
{
    memset(m, 0, sizeof *m);
    m->rate = r->rate;
    m->duration_ms = (double)r->n_samples * 1000.0 / r->rate;
    m->n_leads = r->n_leads;
    m->hr_bpm = m->rr_mean_ms = m->rr_min_ms = m->rr_max_ms = m->rr_sdnn_ms = m->rr_rmssd_ms = NAN;
    m->longest_pause_ms = NAN;
    m->pr_ms = m->qrs_ms = m->qt_ms = m->qtc_bazett_ms = m->qtc_fridericia_ms = m->axis_deg = NAN;
    m->p_onset_ms = m->qrs_onset_ms = m->qrs_offset_ms = m->t_end_ms = NAN;
}

static void free_work(meas *w)
{
    free(w->x);
    free(w->feat);
    free(w->amp);
    free(w->mwi);
    free(w->t1);
    free(w->t2);
    free(w->win);
    free(w->c);
    free(w->beats);
}

int ecg_measure(const ecg_record *r, const ecg_measure_opts *opts, ecg_measurements *m, dcm_err *err)
{
    memset(m, 0, sizeof *m);
    if (!r || !r->n_leads || r->n_leads > ECG_MAX_LEADS || !r->leads)
        return dcm_fail(err, DCM_EVALUE, 0, "not an ECG record");
    if (!(r->rate >= ECG_MEASURE_MIN_RATE) || r->rate > 1e5)
        return dcm_fail(err, ECG_EUNSUPPORTED, 0, "sampling rate %g Hz: measurements need %g to 100000 Hz",
                        r->rate, ECG_MEASURE_MIN_RATE);
    if ((double)r->n_samples < r->rate)
        return dcm_fail(err, ECG_EUNSUPPORTED, 0, "%zu samples at %g Hz: measurements need at least one second",
                        r->n_samples, r->rate);
    if (r->n_samples > ECG_MEASURE_MAX_SAMPLES || r->n_leads * r->n_samples > ECG_MEASURE_MAX_TOTAL)
        return dcm_fail(err, DCM_ETOOBIG, 0, "%zu leads x %zu samples: more than measurements take (%u per lead, "
                        "%u in all)", r->n_leads, r->n_samples, ECG_MEASURE_MAX_SAMPLES, ECG_MEASURE_MAX_TOTAL);
    init_result(m, r);
    meas w = {.r = r, .m = m, .fs = r->rate, .n = r->n_samples, .nl = r->n_leads};
    w.dec = w.fs >= 2 * DETECT_RATE ? (size_t)(w.fs / DETECT_RATE) : 1;
    w.nd = w.n / w.dec;
    w.fsd = w.fs / (double)w.dec;
    w.n_win = (size_t)((double)w.nd / (LEVEL_WINDOW_S * w.fsd));
    if (w.n_win < 1)
        w.n_win = 1;
    w.x = malloc(w.nl * w.n * sizeof *w.x);
    w.feat = malloc(w.nd * sizeof *w.feat);
    w.amp = malloc(w.nd * sizeof *w.amp);
    w.mwi = malloc(w.nd * sizeof *w.mwi);
    w.t1 = malloc(w.n * sizeof *w.t1);
    w.t2 = malloc(w.n * sizeof *w.t2);
    w.win = malloc(w.n_win * sizeof *w.win);
    int rc = 0;
    if (!w.x || !w.feat || !w.amp || !w.mwi || !w.t1 || !w.t2 || !w.win) {
        rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        goto out;
    }
    load_leads(&w);
    m->detect_leads = build_feature(&w);
    if (m->detect_leads == 0) { /* no usable signal: the leads say why */
        m->longest_pause_ms = NAN;
        goto out;
    }
    if ((rc = detect(&w)) < 0)
        goto fail;
    fiducials(&w);
    quality(&w);
    /* Noisy leads out of the detector when clean ones remain. */
    size_t noisy = 0, clean = 0;
    for (size_t k = 0; k < w.nl; k++) {
        noisy += w.use[k] && m->leads[k].quality == ECG_LQ_NOISY;
        clean += w.use[k] && m->leads[k].quality != ECG_LQ_NOISY;
    }
    if (noisy && clean) {
        for (size_t k = 0; k < w.nl; k++)
            w.use[k] = w.use[k] && m->leads[k].quality != ECG_LQ_NOISY;
        m->detect_leads = build_feature(&w);
        if ((rc = detect(&w)) < 0)
            goto fail;
        fiducials(&w);
        quality(&w); /* the QRS zones moved: measure again */
    }
    rhythm(&w);
    if (!(opts && opts->rhythm_only) && w.nb > 0 && (rc = median_beat(&w)) < 0)
        goto fail;
    m->n_beats = w.nb;
    m->beats = w.beats;
    w.beats = NULL;
    goto out;
fail:
    if (rc == DCM_ENOMEM)
        rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
out:
    free_work(&w);
    return rc;
}

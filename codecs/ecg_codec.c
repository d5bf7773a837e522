/* ecg_codec.c — dxhub's lossless ECG codec (stream version 1).
 *
 * Layout (all integers little endian, "varint" = LEB128, at most 10 bytes):
 *   "DXECG1\r\n"  version u8 (1)  flags u8 (0)
 *   varint leads, varint samples, f64 rate, u8 source, varint group,
 *   varint groups, str label
 *   per lead: str name, str unit, f64 scale, f64 baseline, u8 bits, u8 mode
 *             mode 1 (derived): u8 shift, u8 refs (1..2), per ref:
 *                               varint lead, zigzag varint coefficient
 *   varint payload length, payload (range coder), u32 CRC-32 of all before
 *   (str = u8 length + bytes)
 *
 * Samples are coded in blocks of 256 instants, lead by lead within a
 * block, so a lead may be predicted from the samples of the leads before
 * it at the same instants.
 *
 * Independent leads: d = x[t] - x[t-1]; a 16-tap sign-sign LMS on d's
 * history (Monkey's Audio's NN filter: int16 taps, step scaled by how the
 * input compares with its running average) leaves e1; a 2-tap sign-sign
 * LMS predicts e1 from the e1 of the two previous independent leads at the
 * same instant (common-mode noise, neighbouring chest leads) and leaves
 * e2, which is coded.
 *
 * Derived leads (III, aVR, aVL, aVF when the recording computed them
 * from I and II): e = x - floor(sum(c_j x_j) / 2^shift), coded with the
 * fraction the floor dropped as part of the context — a device that
 * rounds -(I+II)/2 makes aVR's residual a function of that fraction.
 *
 * Residuals: an LZMA-style binary range coder with 15-bit adaptive
 * probabilities.  A residual's bit length b is coded against the length
 * k0 its context expects ("b == k0?", "above?", then one step at a time),
 * then the two bits below the leading one (modelled), the rest raw, and
 * the sign (modelled on the previous sign).  The context is a running
 * mean of the lead's recent |residual| on a half-octave scale.
 *
 * All arithmetic is integer and defined (wrapping done in unsigned), so
 * encoder and decoder agree on every platform; the SSE2 and portable
 * filter paths compute identical values. */
#include <math.h>
#include <zlib.h>
#include "codecs/ecg_private.h"
#ifdef __SSE2__
#include <emmintrin.h>
#endif

_Static_assert((-1 >> 1) == -1, "the predictors need arithmetic right shifts");

static const uint8_t MAGIC[8] = {'D', 'X', 'E', 'C', 'G', '1', '\r', '\n'};
#define VERSION     1
#define NN_ORDER    16
#define NN_SHIFT    11
#define NN_WIN      512      /* history ring: NN_ORDER values slide through it */
#define BLOCK       256      /* instants coded lead by lead */
#define S2_TAPS     2
#define S2_SHIFT    10
#define S2_STEP     16
#define S2_WMAX     (1 << 16)
#define PRED_MAX    (1 << 26) /* predictions are clamped to +-this */
#define NCTX        40
#define MAX_BITLEN  28        /* |residual| < 2^28 by construction */
#define MAX_SHIFT   6
#define MAX_COEF    64
#define PBITS       15
#define PONE        (1u << PBITS)

/* ---- range coder ------------------------------------------------------- */

/* Probability of a 0 bit, in 1/2^15.  The update moves it 1/32 of the
 * way toward 32 or 2^15-32 (not 0 or 2^15), so it stays in
 * [32, 2^15-32] by construction: no symbol ever gets a zero-width
 * interval, whatever a damaged stream says, and no clamp is needed. */
typedef uint16_t prob;
#define P_LO 32
#define P_HI (PONE - 32)

static void prob_init(prob *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = PONE / 2;
}

static inline uint32_t prob_p0(const prob *p)
{
    return *p;
}

/* Branch-free: the bit is unpredictable, a branch on it would
 * mispredict half the time. */
static inline void prob_update(prob *p, int bit)
{
    int32_t target = bit ? P_LO : (int32_t)P_HI;
    *p = (uint16_t)(*p + ((target - (int32_t)*p) >> 5));
}

typedef struct rc_enc {
    uint64_t low;
    uint32_t range;
    uint8_t  cache;
    uint64_t pending;
    dcm_buf *out;
    int      failed;
} rc_enc;

static void rce_shift(rc_enc *r)
{
    if ((uint32_t)r->low < 0xFF000000u || (r->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(r->low >> 32), t = r->cache;
        do {
            uint8_t b = (uint8_t)(t + carry);
            if (dcm_buf_put(r->out, &b, 1) < 0)
                r->failed = 1;
            t = 0xFF;
        } while (--r->pending);
        r->cache = (uint8_t)(r->low >> 24);
    }
    r->pending++;
    r->low = (r->low & 0x00FFFFFFu) << 8;
}

static inline void rce_bit(rc_enc *r, prob *p, int bit)
{
    uint32_t bound = (r->range >> PBITS) * prob_p0(p);
    uint32_t mask = 0u - (uint32_t)(bit != 0);
    r->low += bound & mask;
    r->range = (bound & ~mask) | ((r->range - bound) & mask);
    prob_update(p, bit);
    while (r->range < (1u << 24)) {
        r->range <<= 8;
        rce_shift(r);
    }
}

static inline void rce_direct(rc_enc *r, uint32_t v, int nbits)
{
    while (nbits--) {
        r->range >>= 1;
        if ((v >> nbits) & 1)
            r->low += r->range;
        while (r->range < (1u << 24)) {
            r->range <<= 8;
            rce_shift(r);
        }
    }
}

static void rce_flush(rc_enc *r)
{
    for (int i = 0; i < 5; i++)
        rce_shift(r);
}

typedef struct rc_dec {
    const uint8_t *p, *end;
    uint32_t range, code;
    size_t   overrun; /* bytes asked for past the end: corrupt input */
} rc_dec;

static inline uint8_t rcd_byte(rc_dec *r)
{
    if (r->p < r->end)
        return *r->p++;
    r->overrun++;
    return 0;
}

static void rcd_init(rc_dec *r, const uint8_t *p, size_t n)
{
    r->p = p;
    r->end = p + n;
    r->range = 0xFFFFFFFFu;
    r->code = 0;
    r->overrun = 0;
    for (int i = 0; i < 5; i++)
        r->code = (r->code << 8) | rcd_byte(r);
}

static inline int rcd_bit(rc_dec *r, prob *p)
{
    uint32_t bound = (r->range >> PBITS) * prob_p0(p);
    uint32_t mask = 0u - (uint32_t)(r->code >= bound);
    r->code -= bound & mask;
    r->range = (bound & ~mask) | ((r->range - bound) & mask);
    int bit = (int)(mask & 1);
    prob_update(p, bit);
    while (r->range < (1u << 24)) {
        r->range <<= 8;
        r->code = (r->code << 8) | rcd_byte(r);
    }
    return bit;
}

static inline uint32_t rcd_direct(rc_dec *r, int nbits)
{
    uint32_t v = 0;
    while (nbits--) {
        r->range >>= 1;
        int bit = r->code >= r->range;
        if (bit)
            r->code -= r->range;
        v = (v << 1) | (uint32_t)bit;
        while (r->range < (1u << 24)) {
            r->range <<= 8;
            r->code = (r->code << 8) | rcd_byte(r);
        }
    }
    return v;
}

/* ---- residual model ----------------------------------------------------- */

/* The probabilities one context uses sit together (a few cache lines):
 * leads are coded interleaved, so a model must stay small to stay in L1. */
#define NEAR 8 /* bit lengths modelled around the expected one */
typedef struct ctx_probs {
    prob eq, up;           /* b == k0? ; b > k0? */
    prob above[NEAR];      /* b == k0+1+i? (the last one shared beyond) */
    prob below[NEAR];      /* b == k0-1-i? */
    prob mant[NEAR][2];    /* two bits below the leading one, by b - k0 */
    prob sign[3];          /* by the previous residual's sign */
} ctx_probs;

typedef struct model {
    ctx_probs c[NCTX];
    uint32_t  energy;      /* ~16 x recent mean |residual| */
    uint8_t   last_sign;   /* 0 zero, 1 negative, 2 positive */
} model;

static void model_init(model *m)
{
    prob_init((prob *)m->c, sizeof m->c / (sizeof(prob)));
    m->energy = 16 * 4;
    m->last_sign = 0;
}

static inline int bitlen(uint32_t v)
{
    return v ? 32 - __builtin_clz(v) : 0;
}

/* Context: the running mean on a half-octave scale; k0: the bit length
 * expected under it. */
static inline ctx_probs *model_ctx(model *m, int *k0)
{
    int b = bitlen(m->energy);
    int k = 2 * b + (b >= 2 ? (int)((m->energy >> (b - 2)) & 1) : 0);
    *k0 = bitlen(m->energy >> 4);
    return &m->c[k < NCTX ? k : NCTX - 1];
}

static inline void model_update(model *m, uint32_t mag, int neg)
{
    uint32_t a = mag > 1000000 ? 1000000 : mag;
    m->energy = ((a << 4) + m->energy * 3) >> 2;
    m->last_sign = mag ? (uint8_t)(neg ? 1 : 2) : 0;
}

static inline int near_index(int d)
{
    return d < 0 ? 0 : d >= NEAR ? NEAR - 1 : d;
}

static inline __attribute__((always_inline)) void put_residual(rc_enc *r, model *m, int32_t e)
{
    int k0;
    ctx_probs *c = model_ctx(m, &k0);
    uint32_t mag = e < 0 ? (uint32_t)0 - (uint32_t)e : (uint32_t)e;
    int b = bitlen(mag);
    rce_bit(r, &c->eq, b != k0);
    if (b != k0) {
        rce_bit(r, &c->up, b > k0);
        if (b > k0) {
            for (int j = k0 + 1; j < MAX_BITLEN; j++) {
                rce_bit(r, &c->above[near_index(j - k0 - 1)], b != j);
                if (b == j)
                    break;
            }
        } else {
            for (int j = k0 - 1; j > 0; j--) {
                rce_bit(r, &c->below[near_index(k0 - 1 - j)], b != j);
                if (b == j)
                    break;
            }
        }
    }
    if (b >= 2) {
        int nm = b - 1; /* bits below the leading one */
        prob *mp = c->mant[near_index(b - k0 + NEAR / 2)];
        rce_bit(r, &mp[0], (mag >> (nm - 1)) & 1);
        if (nm >= 2)
            rce_bit(r, &mp[1], (mag >> (nm - 2)) & 1);
        if (nm >= 3)
            rce_direct(r, mag & ((1u << (nm - 2)) - 1), nm - 2);
    }
    if (mag)
        rce_bit(r, &c->sign[m->last_sign], e < 0);
    model_update(m, mag, e < 0);
}

/* Returns 0, or -1 when the stream encodes an impossible residual. */
static inline __attribute__((always_inline)) int get_residual(rc_dec *r, model *m, int32_t *e)
{
    int k0;
    ctx_probs *c = model_ctx(m, &k0);
    int b = k0;
    if (rcd_bit(r, &c->eq)) {
        if (rcd_bit(r, &c->up)) {
            for (b = k0 + 1; b < MAX_BITLEN && rcd_bit(r, &c->above[near_index(b - k0 - 1)]); b++)
                ;
        } else {
            if (k0 == 0)
                return -1;
            for (b = k0 - 1; b > 0 && rcd_bit(r, &c->below[near_index(k0 - 1 - b)]); b--)
                ;
        }
    }
    if (b > MAX_BITLEN)
        return -1;
    uint32_t mag = b ? 1u : 0u;
    if (b >= 2) {
        int nm = b - 1;
        prob *mp = c->mant[near_index(b - k0 + NEAR / 2)];
        mag = (mag << 1) | (uint32_t)rcd_bit(r, &mp[0]);
        if (nm >= 2)
            mag = (mag << 1) | (uint32_t)rcd_bit(r, &mp[1]);
        if (nm >= 3)
            mag = (mag << (nm - 2)) | rcd_direct(r, nm - 2);
    }
    int neg = mag ? rcd_bit(r, &c->sign[m->last_sign]) : 0;
    model_update(m, mag, neg);
    *e = neg ? -(int32_t)mag : (int32_t)mag;
    return 0;
}

/* ---- predictors ---------------------------------------------------------- */

static inline int16_t sat16(int32_t v)
{
    return (int16_t)(v > 32767 ? 32767 : v < -32767 ? -32767 : v);
}

static inline int32_t clamp_pred(int64_t v)
{
    return (int32_t)(v > PRED_MAX ? PRED_MAX : v < -PRED_MAX ? -PRED_MAX : v);
}

/* Monkey's Audio NN filter (order 16): int16 history and taps, so that
 * the dot product is SIMD-friendly; the sum wraps as 32-bit lanes do. */
typedef struct nn_filter {
    int16_t w[NN_ORDER];
    int16_t hist[NN_WIN];
    int16_t delta[NN_WIN];
    int     pos;       /* window is hist[pos .. pos+NN_ORDER) */
    int32_t avg;       /* running mean |input| */
} nn_filter;

static inline int32_t nn_dot(const nn_filter *f)
{
    const int16_t *h = f->hist + f->pos;
#ifdef __SSE2__
    __m128i a = _mm_madd_epi16(_mm_loadu_si128((const __m128i *)h), _mm_loadu_si128((const __m128i *)f->w));
    __m128i b = _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(h + 8)),
                               _mm_loadu_si128((const __m128i *)(f->w + 8)));
    __m128i s = _mm_add_epi32(a, b);
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
#else
    uint32_t acc = 0; /* products < 2^30 (taps and history within +-32767) */
    for (int i = 0; i < NN_ORDER; i++)
        acc += (uint32_t)((int32_t)h[i] * f->w[i]);
    return (int32_t)acc;
#endif
}

static inline void nn_adapt(nn_filter *f, int32_t err)
{
    const int16_t *d = f->delta + f->pos;
#ifdef __SSE2__
    __m128i w0 = _mm_loadu_si128((const __m128i *)f->w), w1 = _mm_loadu_si128((const __m128i *)(f->w + 8));
    __m128i d0 = _mm_loadu_si128((const __m128i *)d), d1 = _mm_loadu_si128((const __m128i *)(d + 8));
    if (err > 0) {
        w0 = _mm_subs_epi16(w0, d0);
        w1 = _mm_subs_epi16(w1, d1);
    } else {
        w0 = _mm_adds_epi16(w0, d0);
        w1 = _mm_adds_epi16(w1, d1);
    }
    /* keep taps within +-32767 like the portable path */
    __m128i lo = _mm_set1_epi16(-32767);
    _mm_storeu_si128((__m128i *)f->w, _mm_max_epi16(w0, lo));
    _mm_storeu_si128((__m128i *)(f->w + 8), _mm_max_epi16(w1, lo));
#else
    for (int i = 0; i < NN_ORDER; i++)
        f->w[i] = sat16(err > 0 ? f->w[i] - d[i] : f->w[i] + d[i]);
#endif
}

/* Predict-and-update in one: returns in - prediction (encoder), or with
 * decode set, takes the residual in `in` and returns the value. */
static inline __attribute__((always_inline)) int32_t nn_step(nn_filter *f, int32_t in, int decode)
{
    int32_t dot = nn_dot(f);
    int32_t pred = clamp_pred(((int64_t)dot + (1 << (NN_SHIFT - 1))) >> NN_SHIFT);
    int32_t value, out;
    if (decode) {
        out = in;
        value = (int32_t)((int64_t)in + pred);
    } else {
        value = in;
        out = (int32_t)((int64_t)in - pred);
    }
    if (out != 0)
        nn_adapt(f, out);
    int32_t a = value < 0 ? -value : value, step;
    int sgn = value < 0;
    if ((int64_t)a > (int64_t)f->avg * 3)
        step = 32;
    else if ((int64_t)a > ((int64_t)f->avg * 4) / 3)
        step = 16;
    else
        step = a > 0 ? 8 : 0;
    f->avg += (a - f->avg) / 16;
    int16_t *d = f->delta + f->pos;
    d[NN_ORDER - 1] >>= 1;
    d[NN_ORDER - 2] >>= 1;
    d[NN_ORDER - 8] >>= 1;
    if (++f->pos + NN_ORDER > NN_WIN) {
        memmove(f->hist, f->hist + f->pos, NN_ORDER * sizeof f->hist[0]);
        memmove(f->delta, f->delta + f->pos, NN_ORDER * sizeof f->delta[0]);
        f->pos = 0;
    }
    f->hist[f->pos + NN_ORDER - 1] = sat16(value);
    f->delta[f->pos + NN_ORDER - 1] = (int16_t)(sgn ? step : -step);
    return decode ? value : out;
}

typedef struct lead_state {
    int      derived;
    int      shift, nref;
    int      ref[2];
    int32_t  coef[2];
    int32_t  last;           /* x[t-1] */
    nn_filter nn;
    int32_t  s2w[S2_TAPS];
    model   *models;         /* 1 (independent) or 4 (derived: by fraction) */
} lead_state;

static inline int sgn32(int32_t v)
{
    return (v > 0) - (v < 0);
}

/* Stage 2: e1 of this lead from e1 of the two previous independent
 * leads.  Returns the prediction; stage2_update adapts. */
static inline int32_t stage2_pred(const lead_state *s, const int32_t in[S2_TAPS])
{
    int64_t dot = 0;
    for (int i = 0; i < S2_TAPS; i++)
        dot += (int64_t)in[i] * s->s2w[i];
    return clamp_pred((dot + (1 << (S2_SHIFT - 1))) >> S2_SHIFT);
}

static inline void stage2_update(lead_state *s, const int32_t in[S2_TAPS], int32_t e2)
{
    int se = sgn32(e2);
    for (int i = 0; i < S2_TAPS; i++) {
        int32_t w = s->s2w[i] + se * sgn32(in[i]) * S2_STEP;
        s->s2w[i] = w > S2_WMAX ? S2_WMAX : w < -S2_WMAX ? -S2_WMAX : w;
    }
}

static inline int64_t derived_num(const lead_state *s, const ecg_record *r, size_t t)
{
    int64_t num = 0;
    for (int j = 0; j < s->nref; j++)
        num += (int64_t)s->coef[j] * r->leads[s->ref[j]].samples[t];
    return num;
}

static inline int frac_bucket(const lead_state *s, int64_t num)
{
    if (s->shift == 0)
        return 0;
    uint32_t frac = (uint32_t)(num & ((1 << s->shift) - 1));
    return (int)(s->shift > 2 ? frac >> (s->shift - 2) : frac);
}

/* ---- coding setup (shared) ----------------------------------------------- */

typedef struct codec {
    size_t      n_leads;
    lead_state *ls;
} codec;

static void codec_free(codec *c)
{
    for (size_t i = 0; c->ls && i < c->n_leads; i++)
        free(c->ls[i].models);
    free(c->ls);
    c->ls = NULL;
}

static int codec_init(codec *c, size_t n_leads)
{
    c->n_leads = n_leads;
    c->ls = calloc(n_leads, sizeof *c->ls);
    if (!c->ls)
        return DCM_ENOMEM;
    return 0;
}

static int codec_models(lead_state *s)
{
    int n = s->derived ? 4 : 1;
    s->models = malloc((size_t)n * sizeof *s->models);
    if (!s->models)
        return DCM_ENOMEM;
    for (int i = 0; i < n; i++)
        model_init(&s->models[i]);
    return 0;
}

/* ---- the standard limb-lead relations ------------------------------------ */

/* Einthoven and Goldberger: III = II - I, aVR = -(I+II)/2,
 * aVL = I - II/2, aVF = II - I/2 (numerators over 2^shift). */
static const struct { const char *lead; int shift; int32_t c_i, c_ii; } limb_relations[] = {
    {"III", 0, -1, 1}, {"aVR", 1, -1, -1}, {"aVL", 1, 2, -1}, {"aVF", 1, -1, 2},
};

/* Choose derived coding where the relation holds better than the lead's
 * own first difference would code (sum of |residual| under half of
 * sum |x[t]-x[t-1]|). */
static void choose_modes(const ecg_record *r, codec *c)
{
    int li = ecg_lead_index(r, "I"), lii = ecg_lead_index(r, "II");
    if (li < 0 || lii < 0)
        return;
    for (size_t k = 0; k < r->n_leads; k++) {
        for (size_t j = 0; j < sizeof limb_relations / sizeof limb_relations[0]; j++) {
            if (strcmp(r->leads[k].name, limb_relations[j].lead) || (size_t)li >= k || (size_t)lii >= k)
                continue;
            lead_state *s = &c->ls[k];
            s->shift = limb_relations[j].shift;
            s->nref = 2;
            s->ref[0] = li;
            s->ref[1] = lii;
            s->coef[0] = limb_relations[j].c_i;
            s->coef[1] = limb_relations[j].c_ii;
            const int32_t *x = r->leads[k].samples, *a = r->leads[li].samples, *b = r->leads[lii].samples;
            uint64_t cost_d = 0, cost_i = 0;
            for (size_t t = 0; t < r->n_samples; t++) {
                int64_t num = (int64_t)s->coef[0] * a[t] + (int64_t)s->coef[1] * b[t];
                int64_t e = (int64_t)x[t] - (num >> s->shift);
                cost_d += (uint64_t)(e < 0 ? -e : e);
                if (t) {
                    int64_t d = (int64_t)x[t] - x[t - 1];
                    cost_i += (uint64_t)(d < 0 ? -d : d);
                }
            }
            s->derived = cost_d * 2 < cost_i;
        }
    }
}

/* ---- byte helpers -------------------------------------------------------- */

static int put_varint(dcm_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    int n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    return dcm_buf_put(b, tmp, (size_t)n);
}

static int put_f64(dcm_buf *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    uint8_t tmp[8];
    for (int i = 0; i < 8; i++)
        tmp[i] = (uint8_t)(u >> (8 * i));
    return dcm_buf_put(b, tmp, 8);
}

static int put_str(dcm_buf *b, const char *s, size_t max)
{
    size_t n = strnlen(s, max - 1);
    uint8_t len = (uint8_t)n;
    int rc = dcm_buf_put(b, &len, 1);
    return rc ? rc : dcm_buf_put(b, s, n);
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

typedef struct reader {
    const uint8_t *p;
    size_t         n, pos;
    int            bad;
} reader;

static uint64_t get_varint(reader *rd)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (rd->pos >= rd->n) {
            rd->bad = 1;
            return 0;
        }
        uint8_t byte = rd->p[rd->pos++];
        v |= (uint64_t)(byte & 0x7F) << (7 * i);
        if (!(byte & 0x80))
            return v;
    }
    rd->bad = 1;
    return 0;
}

static uint8_t get_u8(reader *rd)
{
    if (rd->pos >= rd->n) {
        rd->bad = 1;
        return 0;
    }
    return rd->p[rd->pos++];
}

static double get_f64(reader *rd)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)get_u8(rd) << (8 * i);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static void get_str(reader *rd, char *out, size_t n)
{
    size_t len = get_u8(rd);
    out[0] = '\0';
    if (len >= n || len > rd->n - rd->pos) {
        rd->bad = 1;
        return;
    }
    ecg_copy_trim(out, n, (const char *)rd->p + rd->pos, len);
    rd->pos += len;
}

/* ---- encoder ------------------------------------------------------------- */

/* Blocks of BLOCK instants, lead by lead within a block: each lead's
 * filter and model stay hot while it is coded, and a lead still sees the
 * samples (derived) and residuals (stage 2) of the leads before it at the
 * same instants.  e1 of the two previous independent leads is kept for
 * the block in prev1/prev2. */
typedef struct block_bufs {
    int32_t a[BLOCK], b[BLOCK], c[BLOCK];
    int32_t *cur, *prev1, *prev2;
} block_bufs;

static void block_start(block_bufs *bb)
{
    memset(bb->b, 0, sizeof bb->b);
    memset(bb->c, 0, sizeof bb->c);
    bb->cur = bb->a;
    bb->prev1 = bb->b;
    bb->prev2 = bb->c;
}

static void block_next_lead(block_bufs *bb)
{
    int32_t *old = bb->prev2;
    bb->prev2 = bb->prev1;
    bb->prev1 = bb->cur;
    bb->cur = old;
}

static int encode_payload(const ecg_record *r, codec *c, dcm_buf *out)
{
    rc_enc rc = {.range = 0xFFFFFFFFu, .pending = 1, .out = out};
    block_bufs *bb = malloc(sizeof *bb);
    if (!bb)
        return DCM_ENOMEM;
    for (size_t t0 = 0; t0 < r->n_samples && !rc.failed; t0 += BLOCK) {
        size_t nb = r->n_samples - t0 < BLOCK ? r->n_samples - t0 : BLOCK;
        block_start(bb);
        for (size_t k = 0; k < r->n_leads; k++) {
            lead_state *s = &c->ls[k];
            const int32_t *x = r->leads[k].samples + t0;
            if (s->derived) {
                for (size_t i = 0; i < nb; i++) {
                    int64_t num = derived_num(s, r, t0 + i);
                    int32_t p = clamp_pred(num >> s->shift);
                    put_residual(&rc, &s->models[frac_bucket(s, num)], x[i] - p);
                }
                continue;
            }
            for (size_t i = 0; i < nb; i++) {
                int32_t e1 = nn_step(&s->nn, x[i] - s->last, 0);
                s->last = x[i];
                int32_t in[S2_TAPS] = {bb->prev1[i], bb->prev2[i]};
                int32_t e2 = (int32_t)((int64_t)e1 - stage2_pred(s, in));
                stage2_update(s, in, e2);
                bb->cur[i] = e1;
                put_residual(&rc, &s->models[0], e2);
            }
            block_next_lead(bb);
        }
    }
    free(bb);
    rce_flush(&rc);
    return rc.failed ? DCM_ENOMEM : 0;
}

static int write_header(const ecg_record *r, const codec *c, dcm_buf *h)
{
    uint8_t vf[2] = {VERSION, 0};
    int rc = dcm_buf_put(h, MAGIC, sizeof MAGIC);
    if (!rc) rc = dcm_buf_put(h, vf, 2);
    if (!rc) rc = put_varint(h, r->n_leads);
    if (!rc) rc = put_varint(h, r->n_samples);
    if (!rc) rc = put_f64(h, r->rate);
    uint8_t src = (uint8_t)(r->source >= 0 && r->source < 256 ? r->source : 0);
    if (!rc) rc = dcm_buf_put(h, &src, 1);
    if (!rc) rc = put_varint(h, (uint64_t)(r->group > 0 ? r->group : 0));
    if (!rc) rc = put_varint(h, (uint64_t)(r->n_groups > 0 ? r->n_groups : 1));
    if (!rc) rc = put_str(h, r->label, sizeof r->label);
    for (size_t k = 0; !rc && k < r->n_leads; k++) {
        const ecg_lead *l = &r->leads[k];
        const lead_state *s = &c->ls[k];
        uint8_t tail[2] = {l->bits, (uint8_t)(s->derived ? 1 : 0)};
        rc = put_str(h, l->name, sizeof l->name);
        if (!rc) rc = put_str(h, l->unit, sizeof l->unit);
        if (!rc) rc = put_f64(h, l->scale);
        if (!rc) rc = put_f64(h, l->baseline);
        if (!rc) rc = dcm_buf_put(h, tail, 2);
        if (!rc && s->derived) {
            uint8_t d[2] = {(uint8_t)s->shift, (uint8_t)s->nref};
            rc = dcm_buf_put(h, d, 2);
            for (int j = 0; !rc && j < s->nref; j++) {
                rc = put_varint(h, (uint64_t)s->ref[j]);
                if (!rc) rc = put_varint(h, zigzag(s->coef[j]));
            }
        }
    }
    return rc;
}

static int check_record(const ecg_record *r, dcm_err *err)
{
    if (!r || !r->leads)
        return dcm_fail(err, DCM_EVALUE, 0, "no record");
    int rc = ecg_check_size(r->n_leads, r->n_samples, 0, err);
    if (rc < 0)
        return rc;
    if (!isfinite(r->rate) || r->rate <= 0)
        return dcm_fail(err, DCM_EVALUE, 0, "sampling rate %g is impossible", r->rate);
    for (size_t k = 0; k < r->n_leads; k++) {
        const ecg_lead *l = &r->leads[k];
        if (!isfinite(l->scale) || l->scale <= 0 || !isfinite(l->baseline))
            return dcm_fail(err, DCM_EVALUE, 0, "lead %zu: scale or baseline impossible", k + 1);
        for (size_t t = 0; t < r->n_samples; t++)
            if (l->samples[t] >= ECG_CODEC_MAX_ABS || l->samples[t] <= -ECG_CODEC_MAX_ABS)
                return dcm_fail(err, ECG_ERANGE, 0, "lead %zu, sample %zu: %d is outside +-%d", k + 1, t,
                                l->samples[t], ECG_CODEC_MAX_ABS);
    }
    return 0;
}

int ecg_encode_buf(const ecg_record *r, uint8_t **out, size_t *out_len, dcm_err *err)
{
    *out = NULL;
    *out_len = 0;
    int rc = check_record(r, err);
    if (rc < 0)
        return rc;
    codec c;
    if (codec_init(&c, r->n_leads) < 0)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    choose_modes(r, &c);
    for (size_t k = 0; rc == 0 && k < r->n_leads; k++)
        rc = codec_models(&c.ls[k]);
    dcm_buf payload = {0}, all = {0};
    if (rc == 0)
        rc = encode_payload(r, &c, &payload);
    if (rc == 0)
        rc = write_header(r, &c, &all);
    if (rc == 0)
        rc = put_varint(&all, payload.n);
    if (rc == 0)
        rc = dcm_buf_put(&all, payload.p, payload.n);
    if (rc == 0) {
        uLong crc = crc32(0L, Z_NULL, 0);
        for (size_t off = 0; off < all.n;) { /* zlib takes uInt lengths */
            uInt chunk = (uInt)(all.n - off > (1u << 30) ? (1u << 30) : all.n - off);
            crc = crc32(crc, all.p + off, chunk);
            off += chunk;
        }
        uint8_t tail[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24)};
        rc = dcm_buf_put(&all, tail, 4);
    }
    free(payload.p);
    codec_free(&c);
    if (rc < 0) {
        free(all.p);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    *out = all.p;
    *out_len = all.n;
    return 0;
}

int ecg_encode(const ecg_record *r, dcm_sink out, dcm_err *err)
{
    uint8_t *p;
    size_t n;
    int rc = ecg_encode_buf(r, &p, &n, err);
    if (rc < 0)
        return rc;
    rc = out.write(out.ctx, p, n);
    free(p);
    return rc < 0 ? dcm_fail(err, rc, 0, "writing the ECG stream failed") : 0;
}

/* ---- decoder ------------------------------------------------------------- */

int ecg_is_stream(const uint8_t *p, size_t len)
{
    return len >= sizeof MAGIC && memcmp(p, MAGIC, sizeof MAGIC) == 0;
}

static int corrupt(dcm_err *err, size_t at, const char *what)
{
    return dcm_fail(err, ECG_ECORRUPT, at, "offset %zu: %s", at, what);
}

static int decode_payload(ecg_record *r, codec *c, const uint8_t *p, size_t n, size_t at, dcm_err *err)
{
    rc_dec rc;
    rcd_init(&rc, p, n);
    block_bufs *bb = malloc(sizeof *bb);
    if (!bb)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    int status = 0;
    for (size_t t0 = 0; t0 < r->n_samples && status == 0; t0 += BLOCK) {
        size_t nb = r->n_samples - t0 < BLOCK ? r->n_samples - t0 : BLOCK;
        block_start(bb);
        for (size_t k = 0; k < r->n_leads && status == 0; k++) {
            lead_state *s = &c->ls[k];
            int32_t *x = r->leads[k].samples + t0;
            for (size_t i = 0; i < nb; i++) {
                int32_t e;
                int64_t v;
                if (s->derived) {
                    int64_t num = derived_num(s, r, t0 + i);
                    if (get_residual(&rc, &s->models[frac_bucket(s, num)], &e) < 0) {
                        status = corrupt(err, at, "impossible residual");
                        break;
                    }
                    v = (int64_t)clamp_pred(num >> s->shift) + e;
                } else {
                    if (get_residual(&rc, &s->models[0], &e) < 0) {
                        status = corrupt(err, at, "impossible residual");
                        break;
                    }
                    int32_t in[S2_TAPS] = {bb->prev1[i], bb->prev2[i]};
                    int32_t e1 = (int32_t)((int64_t)e + stage2_pred(s, in));
                    stage2_update(s, in, e);
                    bb->cur[i] = e1;
                    v = (int64_t)s->last + nn_step(&s->nn, e1, 1);
                }
                if (v >= ECG_CODEC_MAX_ABS || v <= -ECG_CODEC_MAX_ABS) {
                    status = corrupt(err, at, "decoded sample out of range");
                    break;
                }
                x[i] = s->last = (int32_t)v;
            }
            if (!s->derived)
                block_next_lead(bb);
            if (status == 0 && rc.overrun > 8)
                status = corrupt(err, at, "payload ends early");
        }
    }
    free(bb);
    if (status == 0 && rc.overrun)
        status = corrupt(err, at, "payload ends early");
    return status;
}

int ecg_decode(const uint8_t *p, size_t len, size_t max_total, ecg_record **out, dcm_err *err)
{
    *out = NULL;
    if (!ecg_is_stream(p, len))
        return dcm_fail(err, ECG_ECORRUPT, 0, "offset 0: not a dxhub ECG stream");
    if (len < sizeof MAGIC + 2 + 4)
        return corrupt(err, len, "stream truncated");
    uint32_t want = dcm_rd32(p + len - 4, false);
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t off = 0; off < len - 4;) {
        uInt chunk = (uInt)(len - 4 - off > (1u << 30) ? (1u << 30) : len - 4 - off);
        crc = crc32(crc, p + off, chunk);
        off += chunk;
    }
    if ((uint32_t)crc != want)
        return corrupt(err, len - 4, "CRC-32 mismatch (damaged in transit or storage)");
    reader rd = {p, len - 4, sizeof MAGIC, 0};
    uint8_t version = get_u8(&rd), flags = get_u8(&rd);
    if (version != VERSION)
        return dcm_fail(err, ECG_EUNSUPPORTED, sizeof MAGIC, "offset %zu: stream version %u (this build reads %d)",
                        sizeof MAGIC, version, VERSION);
    if (flags != 0)
        return corrupt(err, sizeof MAGIC + 1, "unknown flags");
    uint64_t n_leads = get_varint(&rd), n_samples = get_varint(&rd);
    if (rd.bad)
        return corrupt(err, rd.pos, "header truncated");
    if (n_leads > ECG_MAX_LEADS || n_samples > ECG_MAX_TOTAL)
        return dcm_fail(err, DCM_ETOOBIG, rd.pos, "offset %zu: %llu leads x %llu samples exceed the limits",
                        rd.pos, (unsigned long long)n_leads, (unsigned long long)n_samples);
    int rc = ecg_check_size((size_t)n_leads, (size_t)n_samples, max_total, err);
    if (rc < 0)
        return rc;
    double rate = get_f64(&rd);
    uint8_t source = get_u8(&rd);
    uint64_t group = get_varint(&rd), groups = get_varint(&rd);
    if (rd.bad || !isfinite(rate) || rate <= 0 || rate > 1e9 || group > 65535 || groups > 65536 || group >= groups)
        return corrupt(err, rd.pos, "rate or group fields impossible");
    ecg_record *r = ecg_new((size_t)n_leads, (size_t)n_samples, rate);
    codec c = {0};
    if (!r || codec_init(&c, r->n_leads) < 0) {
        ecg_free(&r);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    r->source = source;
    r->group = (int)group;
    r->n_groups = (int)groups;
    get_str(&rd, r->label, sizeof r->label);
    for (size_t k = 0; k < r->n_leads && !rd.bad && rc == 0; k++) {
        ecg_lead *l = &r->leads[k];
        lead_state *s = &c.ls[k];
        get_str(&rd, l->name, sizeof l->name);
        get_str(&rd, l->unit, sizeof l->unit);
        if (!l->name[0])
            snprintf(l->name, sizeof l->name, "ch%u", (unsigned)(k + 1));
        l->scale = get_f64(&rd);
        l->baseline = get_f64(&rd);
        l->bits = get_u8(&rd);
        uint8_t mode = get_u8(&rd);
        if (!isfinite(l->scale) || l->scale <= 0 || !isfinite(l->baseline) || mode > 1) {
            rc = corrupt(err, rd.pos, "lead scale, baseline or mode impossible");
            break;
        }
        if (mode == 1) {
            s->derived = 1;
            s->shift = get_u8(&rd);
            s->nref = get_u8(&rd);
            if (s->shift > MAX_SHIFT || s->nref < 1 || s->nref > 2) {
                rc = corrupt(err, rd.pos, "derived lead parameters impossible");
                break;
            }
            for (int j = 0; j < s->nref; j++) {
                uint64_t ref = get_varint(&rd), zz = get_varint(&rd);
                int64_t coef = (int64_t)(zz >> 1) ^ -(int64_t)(zz & 1);
                if (ref >= k || c.ls[ref].derived || coef > MAX_COEF || coef < -MAX_COEF) {
                    rc = corrupt(err, rd.pos, "derived lead reference impossible");
                    break;
                }
                s->ref[j] = (int)ref;
                s->coef[j] = (int32_t)coef;
            }
        }
        if (rc == 0 && codec_models(s) < 0)
            rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    uint64_t plen = rc == 0 ? get_varint(&rd) : 0;
    if (rc == 0 && (rd.bad || plen != rd.n - rd.pos))
        rc = corrupt(err, rd.pos, "header truncated or payload length wrong");
    if (rc == 0)
        rc = decode_payload(r, &c, p + rd.pos, (size_t)plen, rd.pos, err);
    codec_free(&c);
    if (rc < 0) {
        ecg_free(&r);
        return rc;
    }
    *out = r;
    return 0;
}

/* ecg_wfdb.c — PhysioNet WFDB records: a text header (".hea") naming
 * one or more signal files, each holding its signals interleaved frame by
 * frame in one of the WFDB storage formats.  Reference: the WFDB
 * Programmer's Guide, header(5) and signal(5) man pages.
 *
 *   record line:  name[/nseg] nsig [fs[/counterfreq][(base)]] [nsamp] [time] [date]
 *   signal line:  file format[xspf][:skew][+offset] [gain[(baseline)][/units]]
 *                 [adcres] [adczero] [initval] [checksum] [blocksize] [description]
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include "codecs/ecg_private.h"

#define WFDB_DEFGAIN 200.0 /* adu per physical unit when the header says 0 */
#define WFDB_DEFFREQ 250.0
#define WFDB_TOKEN   256

typedef struct wfdb_sig {
    char     file[WFDB_TOKEN];
    int      fmt;
    long     spf, skew;
    uint64_t offset;
    double   gain;
    long     baseline;
    bool     has_baseline;
    char     units[ECG_UNIT_MAX];
    long     adcres, adczero, initval;
    bool     has_initval;
    long     checksum;
    bool     has_checksum;
    char     desc[WFDB_TOKEN];
} wfdb_sig;

typedef struct wfdb_hdr {
    int       nsig;
    double    fs;
    uint64_t  nsamp;
    bool      has_nsamp;
    wfdb_sig *sig;
} wfdb_hdr;

/* Storage formats (signal(5)): bits per sample and the ADC resolution
 * assumed when the header gives none. */
typedef struct wfdb_format {
    int     fmt;
    uint8_t bits; /* per sample in the file (212: 12) */
    uint8_t res;
} wfdb_format;
static const wfdb_format formats[] = {
    {8, 8, 10}, {16, 16, 16}, {24, 24, 24}, {32, 32, 32}, {61, 16, 16}, {80, 8, 8}, {160, 16, 16}, {212, 12, 12},
};

static const wfdb_format *format_of(int fmt)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (formats[i].fmt == fmt)
            return &formats[i];
    return NULL;
}

/* ---- header -------------------------------------------------------------- */

typedef struct line_iter {
    const char *p, *end;
    size_t      lineno;
} line_iter;

/* Next non-blank, non-comment line into buf (NUL-terminated, '\r' removed). */
static bool next_line(line_iter *it, char *buf, size_t n)
{
    while (it->p < it->end) {
        const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
        const char *stop = nl ? nl : it->end;
        size_t len = (size_t)(stop - it->p);
        const char *s = it->p;
        it->p = nl ? nl + 1 : it->end;
        it->lineno++;
        while (len && isspace((unsigned char)*s)) {
            s++;
            len--;
        }
        while (len && isspace((unsigned char)s[len - 1]))
            len--;
        if (len == 0 || *s == '#')
            continue;
        if (len >= n)
            len = n - 1;
        memcpy(buf, s, len);
        buf[len] = '\0';
        for (size_t i = 0; i < len; i++)
            if (buf[i] == '\0' || buf[i] == '\t')
                buf[i] = ' ';
        return true;
    }
    return false;
}

/* Next space-separated token of *s into tok; false at the end. */
static bool next_token(const char **s, char *tok, size_t n)
{
    const char *p = *s;
    while (*p == ' ')
        p++;
    if (!*p)
        return false;
    size_t len = 0;
    while (p[len] && p[len] != ' ')
        len++;
    if (len >= n)
        len = n - 1;
    memcpy(tok, p, len);
    tok[len] = '\0';
    while (p[len] && p[len] != ' ')
        len++;
    *s = p + len;
    return true;
}

static bool parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno)
        return false;
    *out = v;
    return true;
}

static int bad(dcm_err *err, size_t line, const char *what, const char *tok)
{
    return dcm_fail(err, DCM_EVALUE, 0, "header line %zu: %s '%.40s' is not valid", line, what, tok);
}

static int parse_record_line(const char *s, size_t lineno, wfdb_hdr *h, dcm_err *err)
{
    char tok[WFDB_TOKEN];
    if (!next_token(&s, tok, sizeof tok))
        return dcm_fail(err, DCM_EVALUE, 0, "header has no record line");
    if (strchr(tok, '/'))
        return dcm_fail(err, ECG_EUNSUPPORTED, 0,
                        "header line %zu: multi-segment WFDB records are not supported", lineno);
    long nsig;
    if (!next_token(&s, tok, sizeof tok) || !parse_long(tok, &nsig) || nsig < 0)
        return bad(err, lineno, "number of signals", tok);
    if (nsig == 0)
        return dcm_fail(err, ECG_ENOTECG, 0, "header line %zu: the record has no signals", lineno);
    if (nsig > ECG_MAX_LEADS)
        return dcm_fail(err, DCM_ETOOBIG, 0, "header line %zu: %ld signals exceed the limit of %d",
                        lineno, nsig, ECG_MAX_LEADS);
    h->nsig = (int)nsig;
    h->fs = WFDB_DEFFREQ;
    if (next_token(&s, tok, sizeof tok)) {
        char *end;
        double fs = strtod(tok, &end); /* "360", "360/...(...)" */
        if (end == tok || !isfinite(fs) || fs <= 0 || fs > 1e6 || (*end && *end != '/' && *end != '('))
            return bad(err, lineno, "sampling frequency", tok);
        h->fs = fs;
        if (next_token(&s, tok, sizeof tok)) {
            long n;
            if (!parse_long(tok, &n) || n < 0)
                return bad(err, lineno, "number of samples", tok);
            h->nsamp = (uint64_t)n;
            h->has_nsamp = n > 0; /* 0: unknown, use the file's length */
        }
    }
    return 0;
}

static int parse_signal_line(const char *s, size_t lineno, wfdb_sig *g, dcm_err *err)
{
    char tok[WFDB_TOKEN];
    if (!next_token(&s, g->file, sizeof g->file))
        return dcm_fail(err, DCM_EVALUE, 0, "header line %zu: signal line is empty", lineno);
    if (!next_token(&s, tok, sizeof tok))
        return dcm_fail(err, DCM_EVALUE, 0, "header line %zu: no signal format", lineno);
    /* format[xspf][:skew][+offset] */
    char *p = tok;
    long v = strtol(p, &p, 10);
    g->fmt = (int)(v < 0 || v > 100000 ? -1 : v);
    g->spf = 1;
    if (*p == 'x')
        g->spf = strtol(p + 1, &p, 10);
    if (*p == ':')
        g->skew = strtol(p + 1, &p, 10);
    if (*p == '+') {
        long off = strtol(p + 1, &p, 10);
        if (off < 0)
            return bad(err, lineno, "byte offset", tok);
        g->offset = (uint64_t)off;
    }
    if (*p)
        return bad(err, lineno, "signal format", tok);
    g->gain = 0;
    snprintf(g->units, sizeof g->units, "mV");
    if (next_token(&s, tok, sizeof tok)) { /* gain[(baseline)][/units] */
        char *q;
        g->gain = strtod(tok, &q);
        if (q == tok || !isfinite(g->gain) || g->gain < 0)
            return bad(err, lineno, "gain", tok);
        if (*q == '(') {
            g->baseline = strtol(q + 1, &q, 10);
            if (*q != ')')
                return bad(err, lineno, "baseline", tok);
            g->has_baseline = true;
            q++;
        }
        if (*q == '/')
            ecg_copy_trim(g->units, sizeof g->units, q + 1, strlen(q + 1));
        else if (*q)
            return bad(err, lineno, "gain", tok);
        long *fields[] = {&g->adcres, &g->adczero, &g->initval, &g->checksum, NULL};
        for (int i = 0; i < 4; i++) {
            if (!next_token(&s, tok, sizeof tok))
                goto done;
            if (!parse_long(tok, fields[i]))
                return bad(err, lineno, "number", tok);
            if (i == 2)
                g->has_initval = true;
            if (i == 3)
                g->has_checksum = true;
        }
        if (!next_token(&s, tok, sizeof tok)) /* block size: unused for files */
            goto done;
        while (*s == ' ')
            s++;
        ecg_copy_trim(g->desc, sizeof g->desc, s, strlen(s));
    }
done:
    if (g->gain == 0)
        g->gain = WFDB_DEFGAIN;
    if (!g->has_baseline)
        g->baseline = g->adczero;
    return 0;
}

static int parse_header(const char *text, size_t len, wfdb_hdr *h, dcm_err *err)
{
    memset(h, 0, sizeof *h);
    if (len > ECG_MAX_HEADER)
        return dcm_fail(err, DCM_ETOOBIG, 0, "header of %zu bytes exceeds the limit of %u", len, ECG_MAX_HEADER);
    line_iter it = {text, text + len, 0};
    char line[1024];
    if (!next_line(&it, line, sizeof line))
        return dcm_fail(err, ECG_ENOTECG, 0, "header has no record line");
    int rc = parse_record_line(line, it.lineno, h, err);
    if (rc < 0)
        return rc;
    h->sig = calloc((size_t)h->nsig, sizeof *h->sig);
    if (!h->sig)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    for (int i = 0; i < h->nsig; i++) {
        if (!next_line(&it, line, sizeof line))
            return dcm_fail(err, DCM_ETRUNC, 0, "header ends after %d of %d signal lines", i, h->nsig);
        if ((rc = parse_signal_line(line, it.lineno, &h->sig[i], err)) < 0)
            return rc;
        const wfdb_sig *g = &h->sig[i];
        if (!format_of(g->fmt))
            return dcm_fail(err, ECG_EUNSUPPORTED, 0,
                            "signal %d: WFDB format %d is not supported (8, 16, 24, 32, 61, 80, 160, 212 are)",
                            i + 1, g->fmt);
        if (g->spf != 1)
            return dcm_fail(err, ECG_EUNSUPPORTED, 0,
                            "signal %d: %ld samples per frame (multi-frequency records) not supported", i + 1, g->spf);
        if (g->skew != 0)
            return dcm_fail(err, ECG_EUNSUPPORTED, 0, "signal %d: skewed signals are not supported", i + 1);
        if (!strcmp(g->file, "-") || strchr(g->file, '/') || !strcmp(g->file, "..") || g->file[0] == '.')
            return dcm_fail(err, DCM_EVALUE, 0, "signal %d: signal file name '%.40s' refused "
                            "(must name a file beside the header)", i + 1, g->file);
    }
    return 0;
}

/* ---- signal files -------------------------------------------------------- */

/* Samples in a file of len bytes for a format (a 212 pair is 3 bytes). */
static uint64_t stream_samples(const wfdb_format *f, size_t len)
{
    if (f->fmt == 212)
        return (uint64_t)(len / 3) * 2 + (len % 3 == 2 ? 1 : 0);
    return len / (f->bits / 8);
}

static int32_t sample_at(int fmt, const uint8_t *d, uint64_t i)
{
    switch (fmt) {
    case 16:  return (int16_t)dcm_rd16(d + 2 * i, false);
    case 61:  return (int16_t)dcm_rd16(d + 2 * i, true);
    case 80:  return (int32_t)d[i] - 128;
    case 160: return (int32_t)dcm_rd16(d + 2 * i, false) - 32768;
    case 24: {
        const uint8_t *p = d + 3 * i;
        int32_t v = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16);
        return v >= (1 << 23) ? v - (1 << 24) : v;
    }
    case 32:  return (int32_t)dcm_rd32(d + 4 * i, false);
    case 8:   return (int8_t)d[i]; /* a first difference; integrated by the caller */
    default: { /* 212: two 12-bit samples in three bytes */
        const uint8_t *p = d + 3 * (i / 2);
        int32_t v = (i & 1) ? (int32_t)(p[2] | (p[1] & 0xF0) << 4) : (int32_t)(p[0] | (p[1] & 0x0F) << 8);
        return v >= 2048 ? v - 4096 : v;
    }
    }
}

static const ecg_wfdb_file *find_file(const ecg_wfdb_file *files, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!files[i].name || !strcmp(files[i].name, name))
            return &files[i];
    return NULL;
}

/* Signals of one file are consecutive in the header; [first, first+count). */
typedef struct wfdb_group {
    int                  first, count;
    const wfdb_format   *fmt;
    const uint8_t       *data;
    size_t               len;
    uint64_t             frames;
} wfdb_group;

static int decode(const wfdb_hdr *h, const ecg_wfdb_file *files, size_t n_files, ecg_record **out, dcm_err *err)
{
    wfdb_group groups[ECG_MAX_LEADS];
    int ng = 0;
    for (int i = 0; i < h->nsig; i++) {
        const wfdb_sig *g = &h->sig[i];
        if (ng > 0 && !strcmp(h->sig[groups[ng - 1].first].file, g->file)) {
            if (g->fmt != groups[ng - 1].fmt->fmt || g->offset != h->sig[groups[ng - 1].first].offset)
                return dcm_fail(err, DCM_EVALUE, 0, "signal %d: format or offset differs from the other "
                                "signals of its file", i + 1);
            groups[ng - 1].count++;
            continue;
        }
        for (int j = 0; j < ng; j++)
            if (!strcmp(h->sig[groups[j].first].file, g->file))
                return dcm_fail(err, DCM_EVALUE, 0, "signal %d: the signals of a file must be consecutive", i + 1);
        const ecg_wfdb_file *f = find_file(files, n_files, g->file);
        if (!f)
            return dcm_fail(err, DCM_ENOTFOUND, 0, "signal file '%.60s' missing", g->file);
        if (g->offset > f->len)
            return dcm_fail(err, DCM_ETRUNC, 0, "signal file '%.60s': byte offset %llu beyond its %zu bytes",
                            g->file, (unsigned long long)g->offset, f->len);
        groups[ng++] = (wfdb_group){i, 1, format_of(g->fmt), f->data + g->offset, f->len - (size_t)g->offset, 0};
    }
    uint64_t n = UINT64_MAX;
    for (int j = 0; j < ng; j++) {
        wfdb_group *gr = &groups[j];
        gr->frames = stream_samples(gr->fmt, gr->len) / (uint64_t)gr->count;
        if (h->has_nsamp && gr->frames < h->nsamp)
            return dcm_fail(err, DCM_ETRUNC, 0, "signal file '%.60s' holds %llu samples per signal, "
                            "the header says %llu", h->sig[gr->first].file,
                            (unsigned long long)gr->frames, (unsigned long long)h->nsamp);
        if (gr->frames < n)
            n = gr->frames;
    }
    if (h->has_nsamp)
        n = h->nsamp;
    if (n > ECG_MAX_TOTAL)
        return dcm_fail(err, DCM_ETOOBIG, 0, "%llu samples per signal exceed the limit", (unsigned long long)n);
    int rc = ecg_check_size((size_t)h->nsig, (size_t)n, 0, err);
    if (rc < 0)
        return rc;
    ecg_record *r = ecg_new((size_t)h->nsig, (size_t)n, h->fs);
    if (!r)
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    r->source = ECG_SRC_WFDB;
    for (int j = 0; j < ng; j++) {
        const wfdb_group *gr = &groups[j];
        int fmt = gr->fmt->fmt;
        for (int c = 0; c < gr->count; c++) {
            int s = gr->first + c;
            const wfdb_sig *g = &h->sig[s];
            int32_t *dst = r->leads[s].samples;
            int64_t acc = g->has_initval ? g->initval : g->adczero;
            for (uint64_t t = 0; t < n; t++) {
                int32_t v = sample_at(fmt, gr->data, t * (uint64_t)gr->count + (uint64_t)c);
                if (fmt == 8) { /* format 8: 8-bit first differences from initval */
                    acc += v;
                    v = (int32_t)acc;
                }
                dst[t] = v;
            }
        }
    }
    for (int s = 0; s < h->nsig; s++) {
        const wfdb_sig *g = &h->sig[s];
        ecg_lead *l = &r->leads[s];
        l->scale = 1.0 / g->gain;
        l->baseline = (double)g->baseline;
        snprintf(l->unit, sizeof l->unit, "%s", g->units);
        l->bits = (uint8_t)(g->adcres > 0 && g->adcres <= 32 ? g->adcres : format_of(g->fmt)->res);
        if (g->desc[0])
            ecg_set_name(l, g->desc, strlen(g->desc));
        if (g->has_checksum) { /* signal(5): 16-bit sum of the signal's samples */
            uint16_t sum = 0;
            for (size_t t = 0; t < r->n_samples; t++)
                sum = (uint16_t)(sum + (uint16_t)l->samples[t]);
            if ((int16_t)sum != (int16_t)(uint16_t)g->checksum) {
                ecg_free(&r);
                return dcm_fail(err, DCM_EVALUE, 0, "signal %d: checksum %d does not match the samples' %d",
                                s + 1, (int)(int16_t)(uint16_t)g->checksum, (int)(int16_t)sum);
            }
        }
    }
    *out = r;
    return 0;
}

int ecg_read_wfdb_mem(const char *hea, size_t hea_len, const ecg_wfdb_file *files, size_t n_files,
                      const ecg_read_opts *opts, ecg_record **out, dcm_err *err)
{
    *out = NULL;
    if (opts && opts->group != 0)
        return dcm_fail(err, DCM_ENOTFOUND, 0, "group %d asked for, a WFDB record has one", opts->group);
    wfdb_hdr h;
    int rc = parse_header(hea, hea_len, &h, err);
    if (rc == 0)
        rc = decode(&h, files, n_files, out, err);
    free(h.sig);
    return rc;
}

int ecg_read_wfdb(const char *hea_path, const ecg_read_opts *opts, ecg_record **out, dcm_err *err)
{
    *out = NULL;
    if (opts && opts->group != 0)
        return dcm_fail(err, DCM_ENOTFOUND, 0, "group %d asked for, a WFDB record has one", opts->group);
    uint8_t *text;
    size_t len;
    int rc = ecg_slurp(hea_path, ECG_MAX_HEADER, &text, &len, err);
    if (rc < 0)
        return rc;
    wfdb_hdr h;
    rc = parse_header((const char *)text, len, &h, err);
    free(text);
    ecg_wfdb_file files[ECG_MAX_LEADS];
    size_t nf = 0;
    const char *slash = strrchr(hea_path, '/');
    int dirlen = slash ? (int)(slash - hea_path + 1) : 0;
    for (int i = 0; rc == 0 && i < h.nsig; i++) {
        if (find_file(files, nf, h.sig[i].file))
            continue;
        size_t plen = (size_t)dirlen + strlen(h.sig[i].file) + 1;
        char *path = malloc(plen);
        if (!path) {
            rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
            break;
        }
        snprintf(path, plen, "%.*s%s", dirlen, hea_path, h.sig[i].file);
        uint8_t *data;
        size_t dlen;
        rc = ecg_slurp(path, ECG_MAX_FILE, &data, &dlen, err);
        free(path);
        if (rc < 0) {
            char reason[sizeof err->msg];
            snprintf(reason, sizeof reason, "%s", err ? err->msg : "");
            rc = dcm_fail(err, rc, 0, "signal file %.60s: %s", h.sig[i].file, reason);
            break;
        }
        files[nf++] = (ecg_wfdb_file){h.sig[i].file, data, dlen};
    }
    if (rc == 0)
        rc = decode(&h, files, nf, out, err);
    for (size_t i = 0; i < nf; i++)
        free((void *)files[i].data);
    free(h.sig);
    return rc;
}

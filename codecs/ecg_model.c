/* ecg_model.c — the ECG record every reader fills and the codec carries:
 * allocation, lead names, units, the summary `dxhub ecg` prints, and
 * ecg_open, which tells the formats apart by content. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>
#include "codecs/ecg_private.h"

/* ---- errors -------------------------------------------------------------- */

static const struct { int code; const char *text; } ecg_errors[] = {
    {ECG_ENOTECG,      "not an ECG waveform"},
    {ECG_EUNSUPPORTED, "unsupported ECG variant"},
    {ECG_ECORRUPT,     "corrupt ECG stream"},
    {ECG_ERANGE,       "sample out of codec range"},
};

const char *ecg_strerror(int code)
{
    for (size_t i = 0; i < sizeof ecg_errors / sizeof ecg_errors[0]; i++)
        if (ecg_errors[i].code == code)
            return ecg_errors[i].text;
    return dcm_strerror(code);
}

static const char *const source_names[] = {"unknown", "DICOM", "WFDB", "HL7 aECG", "SCP-ECG", "dxhub ECG stream"};

const char *ecg_source_name(int source)
{
    if (source < 0 || (size_t)source >= sizeof source_names / sizeof source_names[0])
        return source_names[0];
    return source_names[source];
}

/* ---- records ------------------------------------------------------------- */

int ecg_check_size(size_t n_leads, size_t n_samples, size_t max_total, dcm_err *err)
{
    if (max_total == 0 || max_total > ECG_MAX_TOTAL)
        max_total = ECG_MAX_TOTAL;
    if (n_leads == 0)
        return dcm_fail(err, ECG_ENOTECG, 0, "no leads");
    if (n_leads > ECG_MAX_LEADS)
        return dcm_fail(err, DCM_ETOOBIG, 0, "%zu leads exceed the limit of %d", n_leads, ECG_MAX_LEADS);
    if (n_samples > max_total / n_leads)
        return dcm_fail(err, DCM_ETOOBIG, 0, "%zu leads x %zu samples exceed the limit of %zu samples",
                        n_leads, n_samples, max_total);
    return 0;
}

ecg_record *ecg_new(size_t n_leads, size_t n_samples, double rate)
{
    if (ecg_check_size(n_leads, n_samples, 0, NULL) < 0)
        return NULL;
    ecg_record *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->leads = calloc(n_leads, sizeof *r->leads);
    int32_t *data = calloc(n_samples ? n_leads * n_samples : 1, sizeof *data);
    if (!r->leads || !data) {
        free(r->leads);
        free(data);
        free(r);
        return NULL;
    }
    r->n_leads = n_leads;
    r->n_samples = n_samples;
    r->rate = rate;
    r->n_groups = 1;
    for (size_t i = 0; i < n_leads; i++) {
        ecg_lead *l = &r->leads[i];
        l->samples = data + i * n_samples;
        l->scale = 1.0;
        l->bits = 16;
        snprintf(l->name, sizeof l->name, "ch%u", (unsigned)(i + 1));
    }
    return r;
}

void ecg_free(ecg_record **rp)
{
    if (!rp || !*rp)
        return;
    ecg_record *r = *rp;
    if (r->leads)
        free(r->leads[0].samples); /* the one allocation all leads share */
    free(r->leads);
    free(r);
    *rp = NULL;
}

void ecg_lead_range(const ecg_record *r, size_t lead, int32_t *min, int32_t *max)
{
    int32_t lo = 0, hi = 0;
    if (r && lead < r->n_leads && r->n_samples) {
        const int32_t *s = r->leads[lead].samples;
        lo = hi = s[0];
        for (size_t i = 1; i < r->n_samples; i++) {
            if (s[i] < lo)
                lo = s[i];
            if (s[i] > hi)
                hi = s[i];
        }
    }
    if (min)
        *min = lo;
    if (max)
        *max = hi;
}

/* ---- units --------------------------------------------------------------- */

static const struct { const char *unit; double uv; } volt_units[] = {
    {"uV", 1.0}, {"mV", 1000.0}, {"V", 1e6}, {"nV", 1e-3},
};

double ecg_uv_per_count(const ecg_lead *l)
{
    for (size_t i = 0; i < sizeof volt_units / sizeof volt_units[0]; i++)
        if (!strcmp(l->unit, volt_units[i].unit))
            return l->scale * volt_units[i].uv;
    return 0;
}

/* ---- lead names ---------------------------------------------------------- */

/* SCP-ECG lead numbers (EN 1064 Table 4); MDC's ECG lead codes
 * (ISO/IEEE 11073-10101, "2:n" / MDC_ECG_LEAD_*) use the same numbers. */
static const struct { uint8_t code; const char *name; } lead_table[] = {
    {1, "I"},    {2, "II"},   {3, "V1"},   {4, "V2"},   {5, "V3"},   {6, "V4"},
    {7, "V5"},   {8, "V6"},   {9, "V7"},   {10, "V2R"}, {11, "V3R"}, {12, "V4R"},
    {13, "V5R"}, {14, "V6R"}, {15, "V7R"}, {16, "X"},   {17, "Y"},   {18, "Z"},
    {19, "CC5"}, {20, "CM5"}, {21, "LA"},  {22, "RA"},  {23, "LL"},  {61, "III"},
    {62, "aVR"}, {63, "aVL"}, {64, "aVF"}, {65, "-aVR"}, {66, "V8"},  {67, "V9"},
    {68, "V8R"}, {69, "V9R"},
};

const char *ecg_lead_from_code(unsigned code)
{
    for (size_t i = 0; i < sizeof lead_table / sizeof lead_table[0]; i++)
        if (lead_table[i].code == code)
            return lead_table[i].name;
    return NULL;
}

void ecg_copy_trim(char *out, size_t n, const char *s, size_t len)
{
    while (len && (isspace((unsigned char)*s) || *s == '\0')) {
        s++;
        len--;
    }
    while (len && (isspace((unsigned char)s[len - 1]) || s[len - 1] == '\0'))
        len--;
    if (n == 0)
        return;
    if (len >= n)
        len = n - 1;
    for (size_t i = 0; i < len; i++)
        out[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    out[len] = '\0';
}

static bool has_prefix_ci(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0;
}

int ecg_normalise_lead(const char *label, size_t len, char *out, size_t n)
{
    const char *s = label;
    while (len && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    /* "MDC_ECG_LEAD_AVR", "Lead aVR (Goldberger)", "ECG I" */
    static const char *const prefixes[] = {"MDC_ECG_LEAD_", "lead ", "ecg "};
    const char *core = s;
    size_t core_len = len;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (has_prefix_ci(core, core_len, prefixes[i])) {
            core += strlen(prefixes[i]);
            core_len -= strlen(prefixes[i]);
            break;
        }
    size_t word = 0;
    while (word < core_len && core[word] != ' ' && core[word] != '(' && core[word] != '\0')
        word++;
    for (size_t i = 0; i < sizeof lead_table / sizeof lead_table[0]; i++) {
        const char *name = lead_table[i].name;
        if (strlen(name) == word && strncasecmp(name, core, word) == 0) {
            snprintf(out, n, "%s", name);
            return 1;
        }
    }
    ecg_copy_trim(out, n, s, len);
    return 0;
}

void ecg_set_name(ecg_lead *l, const char *label, size_t len)
{
    char tmp[ECG_NAME_MAX];
    ecg_normalise_lead(label, len, tmp, sizeof tmp);
    if (tmp[0])
        memcpy(l->name, tmp, sizeof tmp);
}

int ecg_lead_index(const ecg_record *r, const char *name)
{
    for (size_t i = 0; r && i < r->n_leads; i++)
        if (!strcmp(r->leads[i].name, name))
            return (int)i;
    return -1;
}

/* ---- files --------------------------------------------------------------- */

int ecg_slurp(const char *path, size_t max, uint8_t **out, size_t *len, dcm_err *err)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dcm_fail(err, -errno, 0, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dcm_fail(err, DCM_EIO, 0, "not a regular file");
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return dcm_fail(err, DCM_ETOOBIG, 0, "file of %lld bytes exceeds the limit of %zu",
                        (long long)st.st_size, max);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
    }
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return dcm_fail(err, -e, got, "read failed: %s", strerror(e));
        }
        got += (size_t)k;
    }
    close(fd);
    *out = buf;
    *len = n;
    return 0;
}

/* ---- format detection ---------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* EN 1064 §5.2: CRC, total length, then section 0's header whose reserved
 * bytes spell "SCPECG". */
static bool looks_scp(const uint8_t *p, size_t len)
{
    if (len < 22)
        return false;
    uint32_t total = dcm_rd32(p + 2, false);
    return total <= len && total >= 22 && dcm_rd16(p + 8, false) == 0 && memcmp(p + 16, "SCPECG", 6) == 0;
}

static bool looks_xml(const uint8_t *p, size_t len)
{
    size_t i = 0;
    if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
        i = 3;
    while (i < len && isspace(p[i]))
        i++;
    return i < len && p[i] == '<';
}

/* WFDB: header path for path, or "" when path is no WFDB record. */
static void wfdb_header_for(const char *path, char *hea, size_t n)
{
    hea[0] = '\0';
    if (ends_with(path, ".hea")) {
        snprintf(hea, n, "%s", path);
        return;
    }
    if (!is_file(path)) {
        snprintf(hea, n, "%s.hea", path);
        if (!is_file(hea))
            hea[0] = '\0';
        return;
    }
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash) && (strcmp(dot, ".dat") == 0 || strcmp(dot, ".xyz") == 0)) {
        snprintf(hea, n, "%.*s.hea", (int)(dot - path), path);
        if (!is_file(hea))
            hea[0] = '\0';
    }
}

int ecg_open(const char *path, const ecg_read_opts *opts, ecg_record **out, int *source_out, dcm_err *err)
{
    *out = NULL;
    if (source_out)
        *source_out = ECG_SRC_UNKNOWN;
    char hea[4096];
    wfdb_header_for(path, hea, sizeof hea);
    if (hea[0]) {
        if (source_out)
            *source_out = ECG_SRC_WFDB;
        return ecg_read_wfdb(hea, opts, out, err);
    }
    uint8_t *buf;
    size_t len;
    int rc = ecg_slurp(path, ECG_MAX_FILE, &buf, &len, err);
    if (rc < 0)
        return rc;
    int src = ECG_SRC_UNKNOWN;
    if (ecg_is_stream(buf, len)) {
        src = ECG_SRC_CODEC;
        rc = ecg_decode(buf, len, 0, out, err);
    } else if (len >= 132 && memcmp(buf + 128, "DICM", 4) == 0) {
        src = ECG_SRC_DICOM;
    } else if (looks_scp(buf, len)) {
        src = ECG_SRC_SCP;
        rc = ecg_read_scp(buf, len, opts, out, err);
    } else if (looks_xml(buf, len)) {
        src = ECG_SRC_AECG;
        rc = ecg_read_aecg(buf, len, opts, out, err);
    } else {
        src = ECG_SRC_DICOM; /* last resort: a raw data set without preamble */
    }
    if (src == ECG_SRC_DICOM) {
        dcm_file *f = NULL;
        rc = dcm_parse(buf, len, NULL, &f, err);
        if (rc < 0 && !(len >= 132 && memcmp(buf + 128, "DICM", 4) == 0)) {
            src = ECG_SRC_UNKNOWN;
            rc = dcm_fail(err, ECG_ENOTECG, 0,
                          "not DICOM, WFDB, HL7 aECG, SCP-ECG or a dxhub ECG stream");
        } else if (rc == 0) {
            rc = ecg_read_dicom(f, opts, out, err);
        }
        dcm_free(&f);
    }
    free(buf);
    if (source_out)
        *source_out = src;
    return rc;
}

/* ---- summary ------------------------------------------------------------- */

static int put(dcm_sink out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put(dcm_sink out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return DCM_EVALUE;
    return out.write(out.ctx, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* JSON string body: our names and units are printable ASCII already
 * (ecg_copy_trim), but quotes and backslashes still need escaping. */
static void json_str(char *dst, size_t n, const char *s)
{
    size_t j = 0;
    for (; *s && j + 3 < n; s++) {
        if (*s == '"' || *s == '\\')
            dst[j++] = '\\';
        dst[j++] = *s;
    }
    dst[j] = '\0';
}

static double phys(const ecg_lead *l, int32_t v)
{
    return ((double)v - l->baseline) * l->scale;
}

int ecg_summary(const ecg_record *r, int json, dcm_sink out, dcm_err *err)
{
    double duration = r->rate > 0 ? (double)r->n_samples / r->rate : 0;
    int rc;
    char name[2 * ECG_NAME_MAX], unit[2 * ECG_UNIT_MAX], label[2 * ECG_LABEL_MAX];
    json_str(label, sizeof label, r->label);
    if (json)
        rc = put(out, "{\"source\":\"%s\",\"group\":%d,\"groups\":%d,\"label\":\"%s\",\"rate\":%.15g,"
                      "\"samples\":%zu,\"duration\":%.15g,\"leads\":[",
                 ecg_source_name(r->source), r->group, r->n_groups, label, r->rate, r->n_samples, duration);
    else
        rc = put(out, "%s, group %d of %d%s%s%s: %zu leads, %.15g Hz, %zu samples, %.3f s\n"
                      "%-6s %-5s %12s %10s %5s %8s %8s %12s %12s\n",
                 ecg_source_name(r->source), r->group + 1, r->n_groups, r->label[0] ? " (" : "", r->label,
                 r->label[0] ? ")" : "", r->n_leads, r->rate, r->n_samples, duration,
                 "lead", "unit", "scale", "baseline", "bits", "min", "max", "min_phys", "max_phys");
    for (size_t i = 0; rc == 0 && i < r->n_leads; i++) {
        const ecg_lead *l = &r->leads[i];
        int32_t lo, hi;
        ecg_lead_range(r, i, &lo, &hi);
        if (json) {
            json_str(name, sizeof name, l->name);
            json_str(unit, sizeof unit, l->unit);
            rc = put(out, "%s{\"name\":\"%s\",\"unit\":\"%s\",\"scale\":%.15g,\"baseline\":%.15g,\"bits\":%u,"
                          "\"min\":%d,\"max\":%d,\"min_physical\":%.15g,\"max_physical\":%.15g}",
                     i ? "," : "", name, unit, l->scale, l->baseline, l->bits, lo, hi, phys(l, lo), phys(l, hi));
        } else {
            rc = put(out, "%-6s %-5s %12.6g %10.6g %5u %8d %8d %12.6g %12.6g\n", l->name,
                     l->unit[0] ? l->unit : "-", l->scale, l->baseline, l->bits, lo, hi, phys(l, lo), phys(l, hi));
        }
    }
    if (rc == 0 && json)
        rc = put(out, "]}\n");
    return rc < 0 ? dcm_fail(err, rc, 0, "writing the summary failed") : 0;
}

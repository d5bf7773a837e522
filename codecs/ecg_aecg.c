/* ecg_aecg.c — HL7 v3 annotated ECG (aECG, the FDA's ECG format) through
 * libxml2, the only file that includes it.
 *
 *   AnnotatedECG / component / series / component / sequenceSet /
 *       component / sequence: code (TIME_ABSOLUTE | MDC_ECG_LEAD_*),
 *                             value (GLIST_TS/PQ: head, increment |
 *                                    SLIST_PQ: origin, scale, digits)
 *
 * physical = origin + scale * digit.  Series come before their
 * derivedSeries in the document; each sequenceSet is one group. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include "codecs/ecg_private.h"

#define XSI_NS "http://www.w3.org/2001/XMLSchema-instance"

static bool is_elem(const xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)name) == 0;
}

static xmlNode *first_child(const xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (is_elem(c, name))
            return c;
    return NULL;
}

/* Attribute into buf ("" when absent). */
static void attr(const xmlNode *n, const char *name, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!n)
        return;
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    if (v) {
        ecg_copy_trim(buf, len, (const char *)v, strlen((const char *)v));
        xmlFree(v);
    }
}

static bool attr_double(const xmlNode *n, const char *name, double *out)
{
    char buf[64], *end;
    attr(n, name, buf, sizeof buf);
    if (!buf[0])
        return false;
    double v = strtod(buf, &end);
    if (*end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* Depth-first walk collecting sequenceSet elements in document order.
 * The walk is iterative: libxml2 bounds the tree depth it builds (256
 * without XML_PARSE_HUGE), and we do not recurse at all. */
static xmlNode *nth_sequence_set(xmlNode *root, int want, int *count)
{
    xmlNode *found = NULL, *n = root;
    *count = 0;
    while (n) {
        if (is_elem(n, "sequenceSet")) {
            if (*count == want)
                found = n;
            (*count)++;
        } else if (n->children && n->type == XML_ELEMENT_NODE) {
            n = n->children;
            continue;
        }
        while (n && !n->next && n != root)
            n = n->parent;
        if (!n || n == root)
            break;
        n = n->next;
    }
    return found;
}

static const struct { const char *unit; double uv; } volts[] = {{"uV", 1}, {"mV", 1e3}, {"V", 1e6}, {"nV", 1e-3}};

static double volt_factor(const char *unit)
{
    for (size_t i = 0; i < sizeof volts / sizeof volts[0]; i++)
        if (!strcmp(unit, volts[i].unit))
            return volts[i].uv;
    return 0;
}

/* Count the integers of a digits list; false if any token is not one. */
static bool count_digits(const char *s, size_t *n, size_t *bad_at)
{
    size_t k = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\n' && *end != '\r' && *end != '\t')) {
            *bad_at = k;
            return false;
        }
        k++;
        p = end;
    }
    *n = k;
    return true;
}

static void parse_digits(const char *p, int32_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *end;
        dst[i] = (int32_t)strtoll(p, &end, 10);
        p = end;
    }
}

typedef struct aecg_lead {
    xmlNode *seq;
    xmlChar *digits;
    size_t   n;
} aecg_lead;

static int read_set(xmlNode *set, ecg_record **out, dcm_err *err)
{
    aecg_lead leads[ECG_MAX_LEADS];
    size_t nl = 0, n_samples = 0;
    double rate = 0;
    int rc = 0;
    for (xmlNode *comp = set->children; comp; comp = comp->next) {
        xmlNode *seq = is_elem(comp, "component") ? first_child(comp, "sequence") : NULL;
        xmlNode *value = first_child(seq, "value");
        if (!value)
            continue;
        xmlNode *inc = first_child(value, "increment"), *dig = first_child(value, "digits");
        if (inc) {
            double step;
            char unit[16];
            attr(inc, "unit", unit, sizeof unit);
            if (!attr_double(inc, "value", &step) || step <= 0)
                return dcm_fail(err, DCM_EVALUE, (size_t)xmlGetLineNo(inc), "line %ld: time increment unusable",
                                xmlGetLineNo(inc));
            double per_s = !strcmp(unit, "s") ? 1 : !strcmp(unit, "ms") ? 1e-3 : !strcmp(unit, "us") ? 1e-6 : 0;
            if (per_s == 0)
                return dcm_fail(err, ECG_EUNSUPPORTED, 0, "line %ld: time increment unit '%s' not supported",
                                xmlGetLineNo(inc), unit);
            rate = 1.0 / (step * per_s);
            continue;
        }
        if (!dig)
            continue;
        if (nl == ECG_MAX_LEADS) {
            rc = dcm_fail(err, DCM_ETOOBIG, 0, "more than %d leads in a sequence set", ECG_MAX_LEADS);
            goto out;
        }
        aecg_lead *l = &leads[nl];
        l->seq = seq;
        l->digits = xmlNodeGetContent(dig);
        if (!l->digits) {
            rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
            goto out;
        }
        nl++;
        size_t bad_at = 0;
        if (!count_digits((const char *)l->digits, &l->n, &bad_at)) {
            rc = dcm_fail(err, DCM_EVALUE, 0, "line %ld: digit %zu is not a 32-bit integer",
                          xmlGetLineNo(dig), bad_at + 1);
            goto out;
        }
        if (nl > 1 && l->n != n_samples) {
            rc = dcm_fail(err, ECG_EUNSUPPORTED, 0, "line %ld: leads of %zu and %zu samples in one sequence set",
                          xmlGetLineNo(dig), n_samples, l->n);
            goto out;
        }
        n_samples = l->n;
    }
    if (nl == 0) {
        rc = dcm_fail(err, ECG_ENOTECG, 0, "line %ld: the sequence set has no lead digits", xmlGetLineNo(set));
        goto out;
    }
    if (!isfinite(rate) || rate <= 0 || rate > 1e6) {
        rc = dcm_fail(err, DCM_EVALUE, 0, "line %ld: the sequence set has no usable time increment",
                      xmlGetLineNo(set));
        goto out;
    }
    if ((rc = ecg_check_size(nl, n_samples, 0, err)) < 0)
        goto out;
    ecg_record *r = ecg_new(nl, n_samples, rate);
    if (!r) {
        rc = dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        goto out;
    }
    r->source = ECG_SRC_AECG;
    for (size_t i = 0; i < nl; i++) {
        ecg_lead *l = &r->leads[i];
        xmlNode *value = first_child(leads[i].seq, "value");
        xmlNode *origin = first_child(value, "origin"), *scale = first_child(value, "scale");
        char code[64], ounit[ECG_UNIT_MAX];
        attr(first_child(leads[i].seq, "code"), "code", code, sizeof code);
        if (code[0])
            ecg_set_name(l, code, strlen(code));
        double o = 0, s = 1;
        if (scale && (!attr_double(scale, "value", &s) || !(s > 0))) {
            ecg_free(&r);
            rc = dcm_fail(err, DCM_EVALUE, 0, "line %ld: scale unusable", xmlGetLineNo(scale));
            goto out;
        }
        attr(scale, "unit", l->unit, sizeof l->unit);
        if (origin && !attr_double(origin, "value", &o))
            o = 0;
        attr(origin, "unit", ounit, sizeof ounit);
        if (ounit[0] && strcmp(ounit, l->unit)) { /* origin in mV, scale in uV ... */
            double a = volt_factor(ounit), b = volt_factor(l->unit);
            if (a == 0 || b == 0) {
                rc = dcm_fail(err, ECG_EUNSUPPORTED, 0, "line %ld: origin unit '%s' differs from scale unit '%s'",
                              xmlGetLineNo(origin), ounit, l->unit);
                ecg_free(&r); /* after the message: l points into r */
                goto out;
            }
            o = o * a / b;
        }
        l->scale = s;
        l->baseline = o != 0 ? -o / s : 0;
        l->bits = 16;
        parse_digits((const char *)leads[i].digits, l->samples, n_samples);
        int32_t lo, hi;
        ecg_lead_range(r, i, &lo, &hi);
        while (l->bits < 32 && (hi >= (1ll << (l->bits - 1)) || lo < -(1ll << (l->bits - 1))))
            l->bits++;
    }
    *out = r;
out:
    for (size_t i = 0; i < nl; i++)
        xmlFree(leads[i].digits);
    return rc;
}

/* The code of the series (or derivedSeries) a sequence set belongs to. */
static void series_code(xmlNode *set, char *buf, size_t n)
{
    buf[0] = '\0';
    for (xmlNode *p = set->parent; p; p = p->parent)
        if (is_elem(p, "series") || is_elem(p, "derivedSeries")) {
            attr(first_child(p, "code"), "code", buf, n);
            return;
        }
}

/* libxml2 wants its globals set up once before threads use it. */
static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
static void xml_init(void)
{
    xmlInitParser();
}

int ecg_read_aecg(const uint8_t *xml, size_t len, const ecg_read_opts *opts, ecg_record **out, dcm_err *err)
{
    *out = NULL;
    pthread_once(&xml_once, xml_init);
    if (len > ECG_MAX_FILE || len > INT_MAX)
        return dcm_fail(err, DCM_ETOOBIG, 0, "XML of %zu bytes exceeds the limit", len);
    /* No network, no entity substitution (XXE), no DTD loading; libxml2's
     * default limits on depth and entity expansion stay on. */
    xmlDoc *doc = xmlReadMemory((const char *)xml, (int)len, "aecg.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) {
        const xmlError *e = xmlGetLastError();
        int line = e ? e->line : 0;
        xmlResetLastError();
        return dcm_fail(err, ECG_ENOTECG, 0, "XML does not parse (line %d)", line);
    }
    int rc = 0;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!is_elem(root, "AnnotatedECG")) {
        rc = dcm_fail(err, ECG_ENOTECG, 0, "XML root is not an HL7 AnnotatedECG");
        goto done;
    }
    int want = opts ? opts->group : 0, count = 0;
    xmlNode *set = nth_sequence_set(root, want < 0 ? 0 : want, &count);
    if (count == 0) {
        rc = dcm_fail(err, ECG_ENOTECG, 0, "the AnnotatedECG has no sequenceSet");
        goto done;
    }
    if (want < 0 || !set) {
        rc = dcm_fail(err, DCM_ENOTFOUND, 0, "sequence set %d asked for, the file has %d", want, count);
        goto done;
    }
    ecg_record *r = NULL;
    rc = read_set(set, &r, err);
    if (rc == 0) {
        r->group = want;
        r->n_groups = count;
        series_code(set, r->label, sizeof r->label);
        *out = r;
    }
done:
    xmlFreeDoc(doc);
    return rc;
}

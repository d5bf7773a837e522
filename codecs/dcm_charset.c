/* dcm_charset.c — string values under a Specific Character Set (0008,0005)
 * to UTF-8: PS3.3 C.12.1.1.2 (defined terms), PS3.5 §6.1 (code extension
 * techniques, ISO 2022) and the examples of PS3.5 Annexes H, I, J, K.
 *
 * How it works.  The decoder keeps the ISO 2022 state the standard uses:
 * what G0 (bytes 0x21-0x7E) and G1 (bytes 0xA0-0xFF) currently hold.
 * Value 1 of (0008,0005) gives the initial state; each escape sequence
 * redesignates G0 or G1; the delimiters of PS3.5 §6.1.2.5.3 put the
 * initial state back.  The input is cut into runs of bytes that one
 * converter decodes (a "converter" knows G0 and G1 together: ISO-8859-7
 * decodes ASCII too), and each run is converted in one go, with glibc
 * iconv for everything but Latin-1, UTF-8 and the JIS X 0201 part of
 * Shift_JIS.  Stand-alone character sets (ISO_IR 192, GB18030, GBK) allow
 * no code extensions, so their whole value is one run.
 *
 * Choices (the oracle is pydicom 2.3.1, which dxhub's tests compare with):
 *  - Undecodable bytes never fail the call: each becomes U+FFFD and
 *    decoding goes on (UTF-8: one U+FFFD per maximal ill-formed subpart,
 *    as Python does).  pydicom also substitutes and warns; a clinic's
 *    study must stay readable.
 *  - The default repertoire ("" / ISO_IR 6) decodes bytes >= 0x80 as
 *    ISO 8859-1, as pydicom does, so a mislabelled Latin-1 file reads.
 *  - Unknown defined terms fall back to that default; the separator typos
 *    pydicom repairs ("ISO IR 100", "ISO-2022-IR-87") are repaired too.
 *  - Known escape sequences are honoured even when their character set is
 *    not declared in (0008,0005) (pydicom would decode the fragment with
 *    value 1, escape bytes included).  A well-formed but unknown escape
 *    sequence becomes one U+FFFD; a lone ESC also becomes U+FFFD, so no
 *    terminal control sequence survives into the UTF-8.
 *  - JIS X 0201 Romaji (ISO IR 14, ESC ( J, G0 of ISO_IR 13) is decoded as
 *    ASCII, as pydicom does: 0x5C is '\' (DICOM's value delimiter), not ¥.
 *  - Where pydicom splits a value at a delimiter byte that is really part
 *    of a two-byte character (a JIS X 0208 kanji containing 0x3D or 0x5C,
 *    a GB18030 trail byte 0x5C), we follow the standard: delimiters only
 *    count while G0 is a single-byte set, and stand-alone sets never
 *    reset.  pydicom 2.3.1 also leaves the escape sequence of ISO 2022
 *    IR 58 in its output; we do not.
 *  - ISO_IR 203 (ISO 8859-15, ESC - b) is supported although pydicom 2.3.1
 *    does not know it.
 *  - VRs outside SH LO UC ST LT UT PN are in the default repertoire
 *    whatever (0008,0005) says (PS3.5 §6.1.2.3); non-string VRs are
 *    refused with DCM_EVALUE.
 */
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include "codecs/dcm_private.h"

/* Output cap: text values may be 4 GiB (UT); their UTF-8 must fit memory. */
#define CS_MAX_OUT   ((size_t)1 << 30)
#define CS_TERM_MAX  32  /* longest defined term we compare (with slack) */
#define ESC          0x1B

/* Converters: each decodes a byte run under one G0/G1 combination. */
enum cs_conv {
    CV_LATIN1,   /* builtin: byte = code point (default repertoire, ISO_IR 100) */
    CV_UTF8,     /* builtin: validating copy */
    CV_SJIS,     /* builtin ASCII + JIS X 0201 katakana; Shift_JIS kanji via iconv */
    CV_JIS0208,  /* 7-bit byte pairs re-encoded to EUC-JP for iconv */
    CV_JIS0212,  /* idem, with the EUC-JP 0x8F prefix */
    CV_8859_2, CV_8859_3, CV_8859_4, CV_8859_5, CV_8859_6, CV_8859_7,
    CV_8859_8, CV_8859_9, CV_8859_15, CV_TIS620, /* single-byte: keep together */
    CV_EUCKR, CV_GB2312, CV_GBK, CV_GB18030,
    CV_COUNT
};

/* iconv source encoding of each converter; NULL: no iconv needed. */
static const char *const cs_iconv_name[CV_COUNT] = {
    [CV_SJIS] = "SHIFT_JIS", [CV_JIS0208] = "EUC-JP", [CV_JIS0212] = "EUC-JP",
    [CV_8859_2] = "ISO-8859-2", [CV_8859_3] = "ISO-8859-3",
    [CV_8859_4] = "ISO-8859-4", [CV_8859_5] = "ISO-8859-5",
    [CV_8859_6] = "ISO-8859-6", [CV_8859_7] = "ISO-8859-7",
    [CV_8859_8] = "ISO-8859-8", [CV_8859_9] = "ISO-8859-9",
    [CV_8859_15] = "ISO-8859-15", [CV_TIS620] = "TIS-620",
    [CV_EUCKR] = "EUC-KR", [CV_GB2312] = "EUC-CN", [CV_GBK] = "GBK",
    [CV_GB18030] = "GB18030",
};

/* What G0 holds.  ISO IR 6 and ISO IR 14 decode alike (see above). */
enum cs_g0 { G0_ASCII, G0_JIS0208, G0_JIS0212 };

enum cs_term_flags {
    TF_STANDALONE = 1, /* PS3.3 Table C.12-5: no code extensions */
};

/* PS3.3 C.12.1.1.2 defined terms: the initial G1 (G0 is always ASCII or
 * its JIS X 0201 twin).  Terms naming a G0-only set (IR 87, IR 159) are
 * extensions; as value 1 they leave the default in place. */
typedef struct cs_term {
    const char *name;
    uint8_t     g1;    /* enum cs_conv decoding bytes >= 0x80 (and ASCII) */
    uint8_t     flags;
} cs_term;

static const cs_term cs_terms[] = {
    {"ISO_IR 6", CV_LATIN1, 0},         {"ISO 2022 IR 6", CV_LATIN1, 0},
    {"ISO_IR 100", CV_LATIN1, 0},       {"ISO 2022 IR 100", CV_LATIN1, 0},
    {"ISO_IR 101", CV_8859_2, 0},       {"ISO 2022 IR 101", CV_8859_2, 0},
    {"ISO_IR 109", CV_8859_3, 0},       {"ISO 2022 IR 109", CV_8859_3, 0},
    {"ISO_IR 110", CV_8859_4, 0},       {"ISO 2022 IR 110", CV_8859_4, 0},
    {"ISO_IR 144", CV_8859_5, 0},       {"ISO 2022 IR 144", CV_8859_5, 0},
    {"ISO_IR 127", CV_8859_6, 0},       {"ISO 2022 IR 127", CV_8859_6, 0},
    {"ISO_IR 126", CV_8859_7, 0},       {"ISO 2022 IR 126", CV_8859_7, 0},
    {"ISO_IR 138", CV_8859_8, 0},       {"ISO 2022 IR 138", CV_8859_8, 0},
    {"ISO_IR 148", CV_8859_9, 0},       {"ISO 2022 IR 148", CV_8859_9, 0},
    {"ISO_IR 203", CV_8859_15, 0},      {"ISO 2022 IR 203", CV_8859_15, 0},
    {"ISO_IR 166", CV_TIS620, 0},       {"ISO 2022 IR 166", CV_TIS620, 0},
    {"ISO_IR 13", CV_SJIS, 0},          {"ISO 2022 IR 13", CV_SJIS, 0},
    {"ISO 2022 IR 87", CV_LATIN1, 0},   {"ISO 2022 IR 159", CV_LATIN1, 0},
    /* Value 1 IR 149 / IR 58 without escapes: raw EUC-KR / EUC-CN, as
     * pydicom (euc_kr, gb2312) decodes it. */
    {"ISO 2022 IR 149", CV_EUCKR, 0},   {"ISO 2022 IR 58", CV_GB2312, 0},
    {"ISO 2022 58", CV_GB2312, 0},      {"ISO 2022 GBK", CV_GBK, 0}, /* CP 1234 spellings */
    {"ISO_IR 192", CV_UTF8, TF_STANDALONE},
    {"GB18030", CV_GB18030, TF_STANDALONE},
    {"GBK", CV_GBK, TF_STANDALONE},
};

/* Escape sequences of PS3.3 Tables C.12-3 and C.12-4 (bytes after ESC). */
typedef struct cs_escape {
    char    seq[4];
    uint8_t len;
    uint8_t g;     /* 0: designates G0 (value enum cs_g0); 1: G1 (enum cs_conv) */
    uint8_t set;
} cs_escape;

static const cs_escape cs_escapes[] = {
    {"(B", 2, 0, G0_ASCII},   /* ISO IR 6 */
    {"(J", 2, 0, G0_ASCII},   /* ISO IR 14, JIS X 0201 Romaji */
    {"$B", 2, 0, G0_JIS0208}, /* ISO IR 87 */
    {"$(D", 3, 0, G0_JIS0212},/* ISO IR 159 */
    {"-A", 2, 1, CV_LATIN1},  {"-B", 2, 1, CV_8859_2}, {"-C", 2, 1, CV_8859_3},
    {"-D", 2, 1, CV_8859_4},  {"-L", 2, 1, CV_8859_5}, {"-G", 2, 1, CV_8859_6},
    {"-F", 2, 1, CV_8859_7},  {"-H", 2, 1, CV_8859_8}, {"-M", 2, 1, CV_8859_9},
    {"-b", 2, 1, CV_8859_15}, {"-T", 2, 1, CV_TIS620},
    {")I", 2, 1, CV_SJIS},    /* ISO IR 13, JIS X 0201 Katakana */
    {"$)C", 3, 1, CV_EUCKR},  /* ISO IR 149, KS X 1001 */
    {"$)A", 3, 1, CV_GB2312}, /* ISO IR 58, GB 2312 */
};

/* Which bytes reset to the initial state (PS3.5 §6.1.2.5.3), by VR. */
enum cs_vr_kind {
    VK_NOT_STRING = 0, /* binary, SQ: refused */
    VK_DEFAULT,        /* string VR in the default repertoire only */
    VK_MULTI,          /* SH LO UC: '\\' separates values */
    VK_TEXT,           /* ST LT UT: one value, lines */
    VK_PN,             /* '^' '=' '\\' */
};

static const uint8_t cs_vr_kind[DCM_VR_COUNT] = {
    [DCM_VR_AE] = VK_DEFAULT, [DCM_VR_AS] = VK_DEFAULT, [DCM_VR_CS] = VK_DEFAULT,
    [DCM_VR_DA] = VK_DEFAULT, [DCM_VR_DS] = VK_DEFAULT, [DCM_VR_DT] = VK_DEFAULT,
    [DCM_VR_IS] = VK_DEFAULT, [DCM_VR_TM] = VK_DEFAULT, [DCM_VR_UI] = VK_DEFAULT,
    [DCM_VR_UR] = VK_DEFAULT,
    [DCM_VR_SH] = VK_MULTI, [DCM_VR_LO] = VK_MULTI, [DCM_VR_UC] = VK_MULTI,
    [DCM_VR_ST] = VK_TEXT, [DCM_VR_LT] = VK_TEXT, [DCM_VR_UT] = VK_TEXT,
    [DCM_VR_PN] = VK_PN,
};

typedef struct cs_state {
    uint8_t g0; /* enum cs_g0 */
    uint8_t g1; /* enum cs_conv */
} cs_state;

typedef struct cs_ctx {
    char    *out;
    size_t   n, cap;
    iconv_t  cd[CV_COUNT]; /* opened on first use, closed by cs_ctx_release */
    dcm_err *err;
} cs_ctx;

static int cs_fail(dcm_err *err, int code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int cs_fail(dcm_err *err, int code, size_t offset, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->offset = offset;
    }
    return code;
}

/* ---- output buffer ---------------------------------------------- */

/* Make room for more bytes plus the final NUL. */
static int out_reserve(cs_ctx *c, size_t more)
{
    if (more >= CS_MAX_OUT || c->n >= CS_MAX_OUT - more)
        return cs_fail(c->err, DCM_ETOOBIG, 0,
                       "converted text exceeds %zu bytes", CS_MAX_OUT);
    size_t need = c->n + more + 1;
    if (need <= c->cap)
        return 0;
    size_t cap = c->cap ? c->cap : 64;
    while (cap < need)
        cap = cap > CS_MAX_OUT / 2 ? CS_MAX_OUT : cap * 2;
    char *p = realloc(c->out, cap);
    if (!p)
        return cs_fail(c->err, DCM_ENOMEM, 0, "out of memory converting text");
    c->out = p;
    c->cap = cap;
    return 0;
}

static int out_bytes(cs_ctx *c, const void *p, size_t n)
{
    int rc = out_reserve(c, n);
    if (rc)
        return rc;
    memcpy(c->out + c->n, p, n);
    c->n += n;
    return 0;
}

static int out_cp(cs_ctx *c, uint32_t cp) /* cp < 0x10000 here */
{
    uint8_t b[3];
    size_t  n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xC0 | cp >> 6);
        b[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else {
        b[0] = (uint8_t)(0xE0 | cp >> 12);
        b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    }
    return out_bytes(c, b, n);
}

#define REPLACEMENT 0xFFFDu

/* ---- converters ------------------------------------------------- */

static int cs_cd(cs_ctx *c, enum cs_conv cv, size_t offset, iconv_t *cd)
{
    if (c->cd[cv] == (iconv_t)-1) {
        c->cd[cv] = iconv_open("UTF-8", cs_iconv_name[cv]);
        if (c->cd[cv] == (iconv_t)-1)
            return cs_fail(c->err, DCM_ECHARSET, offset,
                           "iconv cannot convert from %s (errno %d)",
                           cs_iconv_name[cv], errno);
    }
    *cd = c->cd[cv];
    return 0;
}

/* Convert in[0..len) with iconv; an undecodable byte becomes U+FFFD and
 * conversion resumes after it (also for a character cut at the end). */
static int conv_iconv(cs_ctx *c, enum cs_conv cv, const uint8_t *in, size_t len,
                      size_t offset)
{
    iconv_t cd = (iconv_t)-1;
    int rc = cs_cd(c, cv, offset, &cd);
    if (rc)
        return rc;
    iconv(cd, NULL, NULL, NULL, NULL);
    char  *ip = (char *)(uintptr_t)in; /* iconv's prototype is not const */
    size_t ileft = len;
    size_t room = len < (1u << 20) ? len + len / 2 + 8 : 1u << 20;
    while (ileft > 0) {
        rc = out_reserve(c, room);
        if (rc)
            return rc;
        char  *op = c->out + c->n;
        size_t oleft = c->cap - c->n - 1;
        size_t r = iconv(cd, &ip, &ileft, &op, &oleft);
        c->n = (size_t)(op - c->out);
        if (r != (size_t)-1)
            break;
        if (errno == E2BIG) {
            room *= 2;
            continue;
        }
        /* EILSEQ, or EINVAL (incomplete character at the end).  C1
         * controls pass in the single-byte sets (glibc's TIS-620 lacks
         * them; Python's, and every ISO 8859 part, has them). */
        uint8_t b = (uint8_t)*ip;
        bool c1 = cv >= CV_8859_2 && cv <= CV_TIS620 && b >= 0x80 && b <= 0x9F;
        rc = out_cp(c, c1 ? b : REPLACEMENT);
        if (rc)
            return rc;
        ip++;
        ileft--;
        iconv(cd, NULL, NULL, NULL, NULL);
    }
    return 0;
}

static int conv_latin1(cs_ctx *c, const uint8_t *in, size_t len)
{
    int rc = out_reserve(c, 2 * len);
    if (rc)
        return rc;
    for (size_t i = 0; i < len; i++) {
        if (in[i] < 0x80) {
            c->out[c->n++] = (char)in[i];
        } else {
            c->out[c->n++] = (char)(0xC0 | in[i] >> 6);
            c->out[c->n++] = (char)(0x80 | (in[i] & 0x3F));
        }
    }
    return 0;
}

/* Length of the well-formed UTF-8 sequence at p (Unicode Table 3-7), or
 * 0 with *bad set to the length of the maximal ill-formed subpart. */
static size_t utf8_seq(const uint8_t *p, size_t left, size_t *bad)
{
    uint8_t b = p[0], lo = 0x80, hi = 0xBF;
    size_t  n;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 4;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t k = 1; k < n; k++) {
        uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (k >= left || p[k] < l || p[k] > h) {
            *bad = k;
            return 0;
        }
    }
    return n;
}

static int conv_utf8(cs_ctx *c, const uint8_t *in, size_t len)
{
    int rc = out_reserve(c, len);
    if (rc)
        return rc;
    size_t i = 0;
    while (i < len) {
        size_t bad = 0, n = utf8_seq(in + i, len - i, &bad);
        if (n) {
            rc = out_bytes(c, in + i, n);
            i += n;
        } else {
            rc = out_cp(c, REPLACEMENT);
            i += bad;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Decode exactly one character p[0..n) with iconv.  *ok false (and
 * nothing written) when iconv does not take it whole. */
static int iconv_char(cs_ctx *c, enum cs_conv cv, const uint8_t *p, size_t n,
                      size_t offset, bool *ok)
{
    iconv_t cd = (iconv_t)-1;
    int rc = cs_cd(c, cv, offset, &cd);
    if (!rc)
        rc = out_reserve(c, 8);
    if (rc)
        return rc;
    iconv(cd, NULL, NULL, NULL, NULL);
    char  *ip = (char *)(uintptr_t)p;
    size_t ileft = n;
    char  *op = c->out + c->n;
    size_t oleft = c->cap - c->n - 1;
    *ok = iconv(cd, &ip, &ileft, &op, &oleft) != (size_t)-1 && ileft == 0;
    if (*ok)
        c->n = (size_t)(op - c->out);
    return 0;
}

/* ISO IR 13 / ISO IR 14: JIS X 0201 in Shift_JIS clothing, as pydicom's
 * shift_jis: ASCII, half-width katakana at 0xA1-0xDF, and two-byte
 * Shift_JIS kanji (not DICOM, but written by real modalities). */
static int conv_sjis(cs_ctx *c, const uint8_t *in, size_t len, size_t offset)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = in[i];
        bool    ok = false;
        int     rc = 0;
        if (b < 0x80) {
            rc = out_bytes(c, &b, 1);
            ok = true;
            i++;
        } else if (b >= 0xA1 && b <= 0xDF) {
            rc = out_cp(c, 0xFF61u + (uint32_t)(b - 0xA1));
            ok = true;
            i++;
        } else if (((b >= 0x81 && b <= 0x9F) || (b >= 0xE0 && b <= 0xFC)) &&
                   i + 1 < len) {
            rc = iconv_char(c, CV_SJIS, in + i, 2, offset + i, &ok);
            if (ok)
                i += 2;
        }
        if (!rc && !ok) { /* the trail byte, if any, is looked at again */
            rc = out_cp(c, REPLACEMENT);
            i++;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* JIS X 0208 / 0212 in G0: bytes 0x21-0x7E in pairs (PS3.5 Annex H),
 * which are EUC-JP with the high bits set (and 0x8F before JIS X 0212). */
static int conv_jis(cs_ctx *c, enum cs_conv cv, const uint8_t *in, size_t len,
                    size_t offset)
{
    for (size_t i = 0; i < len; i += 2) {
        bool ok = false;
        int  rc = 0;
        if (i + 1 < len) {
            uint8_t euc[3];
            size_t  n = 0;
            if (cv == CV_JIS0212)
                euc[n++] = 0x8F;
            euc[n++] = (uint8_t)(in[i] | 0x80);
            euc[n++] = (uint8_t)(in[i + 1] | 0x80);
            if (cv == CV_JIS0212 && in[i] == 0x22 && in[i + 1] == 0x37) {
                /* JIS X 0212 TILDE: U+007E in Unicode's JIS0212.TXT and in
                 * Python; glibc says U+FF5E */
                rc = out_cp(c, '~');
                ok = true;
            } else {
                rc = iconv_char(c, cv, euc, n, offset + i, &ok);
            }
        }
        if (!rc && !ok) /* an unmapped pair, or half of one at the end */
            rc = out_cp(c, REPLACEMENT);
        if (rc)
            return rc;
    }
    return 0;
}

static int conv_run(cs_ctx *c, enum cs_conv cv, const uint8_t *in, size_t len,
                    size_t offset)
{
    if (len == 0)
        return 0;
    switch (cv) { /* the builtins; the rest is iconv's */
    case CV_LATIN1:  return conv_latin1(c, in, len);
    case CV_UTF8:    return conv_utf8(c, in, len);
    case CV_SJIS:    return conv_sjis(c, in, len, offset);
    case CV_JIS0208:
    case CV_JIS0212: return conv_jis(c, cv, in, len, offset);
    default:         return conv_iconv(c, cv, in, len, offset);
    }
}

/* ---- Specific Character Set -------------------------------------- */

static bool is_pad(uint8_t ch)
{
    return ch == ' ' || ch == '\0';
}

/* Look one defined term up, repairing the separator typos pydicom repairs
 * ("ISO IR 100" -> "ISO_IR 100", "ISO-2022-IR-87" -> "ISO 2022 IR 87"). */
static const cs_term *cs_term_find(const char *t, size_t n)
{
    char fix[CS_TERM_MAX];
    if (n >= sizeof fix)
        return NULL;
    memcpy(fix, t, n);
    fix[n] = '\0';
    if (n >= 6 && memcmp(fix, "ISO", 3) == 0 && fix[3] != '_' &&
        memcmp(fix + 4, "IR", 2) == 0)
        fix[3] = '_';
    else if (n >= 12 && memcmp(fix, "ISO", 3) == 0 &&
             memcmp(fix + 4, "2022", 4) == 0 && memcmp(fix + 9, "IR", 2) == 0)
        fix[3] = fix[8] = fix[11] = ' ';
    for (size_t k = 0; k < sizeof cs_terms / sizeof cs_terms[0]; k++)
        if (strcmp(cs_terms[k].name, fix) == 0)
            return &cs_terms[k];
    return NULL;
}

/* The initial state from value 1 of (0008,0005).  Later values only
 * declare the escape sequences to expect; we honour every known one. */
static cs_state cs_initial(const char *charset, size_t len, bool *standalone)
{
    cs_state st = {G0_ASCII, CV_LATIN1};
    *standalone = false;
    if (!charset)
        return st;
    size_t end = 0;
    while (end < len && charset[end] != '\\')
        end++;
    size_t b = 0;
    while (b < end && is_pad((uint8_t)charset[b]))
        b++;
    while (end > b && is_pad((uint8_t)charset[end - 1]))
        end--;
    if (b == end) /* value 1 empty: default repertoire */
        return st;
    const cs_term *t = cs_term_find(charset + b, end - b);
    if (!t) /* unknown: the default, as pydicom */
        return st;
    st.g1 = t->g1;
    *standalone = (t->flags & TF_STANDALONE) != 0;
    return st;
}

/* Parse the escape sequence at in[0] == ESC: ESC, intermediates 0x20-0x2F,
 * a final byte 0x30-0x7E (ISO 2022 §13).  Returns its length (0: not
 * well-formed) and the matching table row, or NULL when unknown. */
static size_t cs_escape_at(const uint8_t *in, size_t len, const cs_escape **found)
{
    size_t k = 1;
    *found = NULL;
    while (k < len && k < 5 && in[k] >= 0x20 && in[k] <= 0x2F)
        k++;
    if (k == 1 || k >= len || in[k] < 0x30 || in[k] > 0x7E)
        return 0;
    size_t n = k; /* bytes after ESC */
    for (size_t e = 0; e < sizeof cs_escapes / sizeof cs_escapes[0]; e++)
        if (cs_escapes[e].len == n && memcmp(cs_escapes[e].seq, in + 1, n) == 0)
            *found = &cs_escapes[e];
    return n + 1;
}

/* Does byte b put the initial character set back (PS3.5 §6.1.2.5.3)?
 * Line ends and TAB always; the value and PN delimiters only while G0 is a
 * single-byte set (in a JIS X 0208 pair, 0x5C and 0x3D are kanji bytes). */
static bool cs_resets(uint8_t b, enum cs_vr_kind k, enum cs_g0 g0)
{
    if (b == '\r' || b == '\n' || b == '\f' || b == '\t')
        return true;
    if (g0 != G0_ASCII)
        return false;
    if (b == '\\')
        return k == VK_MULTI || k == VK_PN;
    return k == VK_PN && (b == '^' || b == '=');
}

/* The converter for byte b in state st. */
static enum cs_conv cs_conv_for(cs_state st, uint8_t b)
{
    if (b >= 0x21 && b <= 0x7E && st.g0 != G0_ASCII)
        return st.g0 == G0_JIS0208 ? CV_JIS0208 : CV_JIS0212;
    return (enum cs_conv)st.g1;
}

static int cs_decode_2022(cs_ctx *c, cs_state init, enum cs_vr_kind kind,
                          const uint8_t *in, size_t len)
{
    cs_state st = init;
    size_t   start = 0; /* of the pending run */
    enum cs_conv cv = (enum cs_conv)init.g1;
    int rc;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = in[i];
        if (b == ESC) {
            if ((rc = conv_run(c, cv, in + start, i - start, start)))
                return rc;
            const cs_escape *e;
            size_t n = cs_escape_at(in + i, len - i, &e);
            if (e && e->g == 0)
                st.g0 = e->set;
            else if (e)
                st.g1 = e->set;
            else if ((rc = out_cp(c, REPLACEMENT)))
                return rc;
            i += n ? n - 1 : 0; /* a lone ESC: just the U+FFFD */
            start = i + 1;     /* the next byte picks the converter */
            continue;
        }
        if (cs_resets(b, kind, (enum cs_g0)st.g0) &&
            (st.g0 != init.g0 || st.g1 != init.g1)) {
            if ((rc = conv_run(c, cv, in + start, i - start, start)))
                return rc;
            st = init;
            start = i;
            cv = cs_conv_for(st, b);
            continue;
        }
        enum cs_conv want = cs_conv_for(st, b);
        if (want != cv) {
            if ((rc = conv_run(c, cv, in + start, i - start, start)))
                return rc;
            start = i;
            cv = want;
        }
    }
    return conv_run(c, cv, in + start, len - start, start);
}

static void cs_ctx_release(cs_ctx *c)
{
    for (int k = 0; k < CV_COUNT; k++)
        if (c->cd[k] != (iconv_t)-1)
            iconv_close(c->cd[k]);
    free(c->out);
    c->out = NULL;
}

int dcm_charset_to_utf8(const char *charset, size_t charset_len, dcm_vr vr,
                        const uint8_t *in, size_t inlen,
                        char **out, size_t *outlen, dcm_err *err)
{
    if (!out || !outlen || (!in && inlen))
        return cs_fail(err, DCM_EVALUE, 0, "dcm_charset_to_utf8: NULL argument");
    *out = NULL;
    *outlen = 0;
    enum cs_vr_kind kind = (unsigned)vr < DCM_VR_COUNT ? cs_vr_kind[vr] : VK_NOT_STRING;
    if (kind == VK_NOT_STRING)
        return cs_fail(err, DCM_EVALUE, 0, "VR %d is not a character string", (int)vr);

    cs_ctx c = {.err = err};
    for (int k = 0; k < CV_COUNT; k++)
        c.cd[k] = (iconv_t)-1;

    bool     standalone = false;
    cs_state init = {G0_ASCII, CV_LATIN1};
    if (kind != VK_DEFAULT)
        init = cs_initial(charset, charset_len, &standalone);

    int rc = out_reserve(&c, inlen < CS_MAX_OUT / 2 ? inlen + inlen / 2 : 0);
    if (!rc) {
        if (kind == VK_DEFAULT || standalone)
            rc = conv_run(&c, (enum cs_conv)init.g1, in, inlen, 0);
        else
            rc = cs_decode_2022(&c, init, kind, in, inlen);
    }
    if (!rc)
        rc = out_reserve(&c, 0);
    if (rc) {
        cs_ctx_release(&c);
        return rc;
    }
    c.out[c.n] = '\0';
    *out = c.out;
    *outlen = c.n;
    c.out = NULL;
    cs_ctx_release(&c);
    return 0;
}

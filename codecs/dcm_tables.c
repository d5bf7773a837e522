/* dcm_tables.c — the VR and transfer syntax tables (PS3.5 §6.2, PS3.6 Annex A)
 * and the error table.  Adding a syntax is a row here plus, for compressed
 * ones, a codec. */
#include "codecs/dcm_private.h"

#define T DCM_VRC_TEXT
#define T1 DCM_VRC_TEXT1
#define N DCM_VRC_NUMBER
#define B DCM_VRC_BYTES
/*                         name  class long word charset pad */
static const dcm_vr_info vr_table[DCM_VR_COUNT] = {
    [DCM_VR_NONE]  = {"--", DCM_VRC_NONE, 0, 0, 0, 0},
    [DCM_VR_AE]    = {"AE", T,  0, 0, 0, ' '},
    [DCM_VR_AS]    = {"AS", T,  0, 0, 0, ' '},
    [DCM_VR_AT]    = {"AT", N,  0, 2, 0, 0},   /* pairs of 16-bit words */
    [DCM_VR_CS]    = {"CS", T,  0, 0, 0, ' '},
    [DCM_VR_DA]    = {"DA", T,  0, 0, 0, ' '},
    [DCM_VR_DS]    = {"DS", T,  0, 0, 0, ' '},
    [DCM_VR_DT]    = {"DT", T,  0, 0, 0, ' '},
    [DCM_VR_FD]    = {"FD", N,  0, 8, 0, 0},
    [DCM_VR_FL]    = {"FL", N,  0, 4, 0, 0},
    [DCM_VR_IS]    = {"IS", T,  0, 0, 0, ' '},
    [DCM_VR_LO]    = {"LO", T,  0, 0, 1, ' '},
    [DCM_VR_LT]    = {"LT", T1, 0, 0, 1, ' '},
    [DCM_VR_OB]    = {"OB", B,  1, 1, 0, 0},
    [DCM_VR_OD]    = {"OD", B,  1, 8, 0, 0},
    [DCM_VR_OF]    = {"OF", B,  1, 4, 0, 0},
    [DCM_VR_OL]    = {"OL", B,  1, 4, 0, 0},
    [DCM_VR_OV]    = {"OV", B,  1, 8, 0, 0},
    [DCM_VR_OW]    = {"OW", B,  1, 2, 0, 0},
    [DCM_VR_PN]    = {"PN", T,  0, 0, 1, ' '},
    [DCM_VR_SH]    = {"SH", T,  0, 0, 1, ' '},
    [DCM_VR_SL]    = {"SL", N,  0, 4, 0, 0},
    [DCM_VR_SQ]    = {"SQ", DCM_VRC_SEQUENCE, 1, 0, 0, 0},
    [DCM_VR_SS]    = {"SS", N,  0, 2, 0, 0},
    [DCM_VR_ST]    = {"ST", T1, 0, 0, 1, ' '},
    [DCM_VR_SV]    = {"SV", N,  1, 8, 0, 0},
    [DCM_VR_TM]    = {"TM", T,  0, 0, 0, ' '},
    [DCM_VR_UC]    = {"UC", T,  1, 0, 1, ' '},
    [DCM_VR_UI]    = {"UI", T,  0, 0, 0, '\0'},
    [DCM_VR_UL]    = {"UL", N,  0, 4, 0, 0},
    [DCM_VR_UN]    = {"UN", B,  1, 1, 0, 0},
    [DCM_VR_UR]    = {"UR", T1, 1, 0, 0, ' '},
    [DCM_VR_US]    = {"US", N,  0, 2, 0, 0},
    [DCM_VR_UT]    = {"UT", T1, 1, 0, 1, ' '},
    [DCM_VR_UV]    = {"UV", N,  1, 8, 0, 0},
    /* Ambiguous dictionary VRs; resolved before use (dcm_resolve_vr). */
    [DCM_VR_US_SS]    = {"US", N, 0, 2, 0, 0},
    [DCM_VR_OB_OW]    = {"OW", B, 1, 2, 0, 0},
    [DCM_VR_US_OW]    = {"OW", B, 1, 2, 0, 0},
    [DCM_VR_US_SS_OW] = {"OW", B, 1, 2, 0, 0},
};
#undef T
#undef T1
#undef N
#undef B

const dcm_vr_info *dcm_vr_info_of(dcm_vr vr)
{
    if ((unsigned)vr >= DCM_VR_COUNT)
        vr = DCM_VR_NONE;
    return &vr_table[vr];
}

dcm_vr dcm_vr_from_chars(uint8_t a, uint8_t b)
{
    for (int i = DCM_VR_AE; i <= DCM_VR_UV; i++)
        if (vr_table[i].name[0] == a && vr_table[i].name[1] == b)
            return (dcm_vr)i;
    return DCM_VR_NONE;
}

/*                 uid                        name                          expl be  defl encap lossy */
static const dcm_ts ts_table[] = {
    {"1.2.840.10008.1.2",         "Implicit VR Little Endian",          0, 0, 0, 0, 0},
    {"1.2.840.10008.1.2.1",       "Explicit VR Little Endian",          1, 0, 0, 0, 0},
    {"1.2.840.10008.1.2.1.99",    "Deflated Explicit VR Little Endian", 1, 0, 1, 0, 0},
    {"1.2.840.10008.1.2.2",       "Explicit VR Big Endian",             1, 1, 0, 0, 0},
    {"1.2.840.10008.1.2.4.50",    "JPEG Baseline (Process 1)",          1, 0, 0, 1, 1},
    {"1.2.840.10008.1.2.4.51",    "JPEG Extended (Process 2 & 4)",      1, 0, 0, 1, 1},
    {"1.2.840.10008.1.2.4.57",    "JPEG Lossless (Process 14)",         1, 0, 0, 1, 0},
    {"1.2.840.10008.1.2.4.70",    "JPEG Lossless SV1",                  1, 0, 0, 1, 0},
    {"1.2.840.10008.1.2.4.80",    "JPEG-LS Lossless",                   1, 0, 0, 1, 0},
    {"1.2.840.10008.1.2.4.81",    "JPEG-LS Near-Lossless",              1, 0, 0, 1, 1},
    {"1.2.840.10008.1.2.4.90",    "JPEG 2000 Lossless",                 1, 0, 0, 1, 0},
    {"1.2.840.10008.1.2.4.91",    "JPEG 2000",                          1, 0, 0, 1, 1},
    {"1.2.840.10008.1.2.4.201",   "HTJ2K Lossless",                     1, 0, 0, 1, 0},
    {"1.2.840.10008.1.2.4.202",   "HTJ2K Lossless RPCL",                1, 0, 0, 1, 0},
    {"1.2.840.10008.1.2.4.203",   "HTJ2K",                              1, 0, 0, 1, 1},
    {"1.2.840.10008.1.2.5",       "RLE Lossless",                       1, 0, 0, 1, 0},
    {"1.2.840.10008.1.2.8.1",     "Deflated Image Frame Compression",   1, 0, 0, 1, 0},
    {"1.2.840.10008.1.2.4.100",   "MPEG2 Main Profile",                 1, 0, 0, 1, 1},
    {"1.2.840.10008.1.2.4.102",   "MPEG-4 AVC/H.264 High Profile",      1, 0, 0, 1, 1},
    {"1.2.840.10008.1.2.4.103",   "MPEG-4 AVC/H.264 BD-compatible",     1, 0, 0, 1, 1},
};

const dcm_ts *dcm_ts_at(size_t i)
{
    return i < sizeof ts_table / sizeof ts_table[0] ? &ts_table[i] : NULL;
}

const dcm_ts *dcm_ts_find(const char *uid, size_t len)
{
    while (len > 0 && (uid[len - 1] == '\0' || uid[len - 1] == ' '))
        len--;
    for (size_t i = 0; i < sizeof ts_table / sizeof ts_table[0]; i++)
        if (strlen(ts_table[i].uid) == len && memcmp(ts_table[i].uid, uid, len) == 0)
            return &ts_table[i];
    return NULL;
}

static const struct { int code; const char *text; } error_table[] = {
    {DCM_OK,        "success"},
    {DCM_ETRUNC,    "truncated data"},
    {DCM_EBADLEN,   "impossible length"},
    {DCM_EDEPTH,    "sequences nested too deep"},
    {DCM_EBADVR,    "invalid value representation"},
    {DCM_ENOTDICOM, "not a DICOM file"},
    {DCM_EMETA,     "unusable file meta information"},
    {DCM_ENOMEM,    "out of memory"},
    {DCM_ETS,       "unsupported transfer syntax"},
    {DCM_EINFLATE,  "deflated data set does not inflate"},
    {DCM_ECHARSET,  "character set conversion failed"},
    {DCM_ETOOBIG,   "size exceeds limit"},
    {DCM_EIO,       "input/output error"},
    {DCM_EORDER,    "broken data set structure"},
    {DCM_ENOTFOUND, "element not found"},
    {DCM_EVALUE,    "invalid element value"},
};

const char *dcm_strerror(int code)
{
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if (error_table[i].code == code)
            return error_table[i].text;
    if (code < 0 && code > -1000)
        return strerror(-code);
    return "unknown error";
}

int dcm_fail(dcm_err *err, int code, size_t offset, const char *fmt, ...)
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

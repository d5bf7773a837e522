/* test_charset.c — dcm_charset_to_utf8: Specific Character Set (0008,0005)
 * to UTF-8.  Oracles from outside our code: the examples of PS3.5 Annexes
 * H (Japanese), I (Korean), J (Chinese, UTF-8 / GB18030) and K (Chinese,
 * GB 2312); pydicom 2.3.1's decoding of its charset test files (read by
 * hand with pydicom, copied below with file and element named); the test
 * vectors of pydicom's own tests/test_charset.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "codecs/codecs.h"

#define ESC "\x1b"
#define FFFD "\xef\xbf\xbd"

/* Convert and compare with the expected UTF-8 exactly. */
static void expect_conv(const char *charset, dcm_vr vr, const char *in, size_t n,
                        const char *want)
{
    char   *out = (char *)0x1;
    size_t  outlen = 12345;
    dcm_err err = {{0}, 0};
    int rc = dcm_charset_to_utf8(charset, strlen(charset), vr, (const uint8_t *)in, n,
                                 &out, &outlen, &err);
    if (rc)
        fail_msg("charset '%s': rc %d: %s", charset, rc, err.msg);
    assert_non_null(out);
    assert_int_equal(out[outlen], '\0');
    if (outlen != strlen(want) || memcmp(out, want, outlen) != 0)
        fail_msg("charset '%s': got '%s' want '%s'", charset, out, want);
    free(out);
}

#define EXPECT(cs, vr, lit, want) expect_conv(cs, vr, lit, sizeof lit - 1, want)

/* ------------------------------------------------------------------ */
/* pydicom's decoding of its charset files                             */
/* ------------------------------------------------------------------ */

/* Every PN/SH/LO/ST/LT/UT/UC value with a non-ASCII byte or an escape in
 * pydicom 2.3.1's data/charset_files (chr*.dcm; the three of
 * shared/corpus/dicom/charset are among them), deduplicated: the raw
 * value (trailing padding trimmed), the (0008,0005) in force for it (the
 * item's own in chrSQEncoding), and pydicom's decoded value.  For PN,
 * pydicom's component groups are joined with '=' and multiple values
 * with '\\'. */
typedef struct oracle_row {
    const char *where;   /* file and tag (item path for nested ones) */
    dcm_vr      vr;
    const char *charset;
    const char *raw;
    size_t      rawlen;
    const char *pydicom; /* UTF-8 */
} oracle_row;

static const oracle_row pydicom_rows[] = {
    {"chrArab.dcm 00100010", DCM_VR_PN, "ISO_IR 127", "\xe2\xc8\xc7\xe6\xea^\xe4\xe6\xd2\xc7\xd1", 11,
     "\xd9\x82\xd8\xa8\xd8\xa7\xd9\x86\xd9\x8a^\xd9\x84\xd9\x86\xd8\xb2\xd8\xa7\xd8\xb1"},
    {"chrFren.dcm 00100010", DCM_VR_PN, "ISO_IR 100", "Buc^J\xe9r\xf4me", 10,
     "Buc^J\xc3\xa9r\xc3\xb4me"},
    {"chrFrenMulti.dcm 00101001", DCM_VR_PN, "ISO_IR 100", "Buc^J\xe9r\xf4me\x5c" "Buc^J\xe9r\xf4me", 21,
     "Buc^J\xc3\xa9r\xc3\xb4me\x5c" "Buc^J\xc3\xa9r\xc3\xb4me"},
    {"chrGerm.dcm 00100010", DCM_VR_PN, "ISO_IR 100", "\xc4neas^R\xfc" "diger", 13,
     "\xc3\x84neas^R\xc3\xbc" "diger"},
    {"chrGreek.dcm 00100010", DCM_VR_PN, "ISO_IR 126", "\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2", 9,
     "\xce\x94\xce\xb9\xce\xbf\xce\xbd\xcf\x85\xcf\x83\xce\xb9\xce\xbf\xcf\x82"},
    {"chrH31.dcm 00100010", DCM_VR_PN, "\x5cISO 2022 IR 87", "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$\x3f$m$&\x1b(B", 60,
     "Yamada^Tarou=\xe5\xb1\xb1\xe7\x94\xb0^\xe5\xa4\xaa\xe9\x83\x8e=\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"},
    {"chrH32.dcm 00100010", DCM_VR_PN, "ISO 2022 IR 13\x5cISO 2022 IR 87", "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$\x3f$m$&\x1b(J", 56,
     "\xef\xbe\x94\xef\xbe\x8f\xef\xbe\x80\xef\xbe\x9e^\xef\xbe\x80\xef\xbe\x9b\xef\xbd\xb3=\xe5\xb1\xb1\xe7\x94\xb0^\xe5\xa4\xaa\xe9\x83\x8e=\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"},
    {"chrHbrw.dcm 00100010", DCM_VR_PN, "ISO_IR 138", "\xf9\xf8\xe5\xef^\xe3\xe1\xe5\xf8\xe4", 10,
     "\xd7\xa9\xd7\xa8\xd7\x95\xd7\x9f^\xd7\x93\xd7\x91\xd7\x95\xd7\xa8\xd7\x94"},
    {"chrI2.dcm 00100010", DCM_VR_PN, "\x5cISO 2022 IR 149", "Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf", 44,
     "Hong^Gildong=\xe6\xb4\xaa^\xe5\x90\x89\xe6\xb4\x9e=\xed\x99\x8d^\xea\xb8\xb8\xeb\x8f\x99"},
    {"chrJapMulti.dcm 00100010", DCM_VR_PN, "\x5cISO 2022 IR 87", "\x1b$B$d$^$@\x1b(B^\x1b$B$\x3f$m$&\x1b(B", 25,
     "\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"},
    {"chrJapMulti.dcm 00101001", DCM_VR_PN, "\x5cISO 2022 IR 87", "\x1b$B$d$^$@\x1b(B^\x1b$B$\x3f$m$&\x1b(B\x5c\x1b$B$d$^$@\x1b(B^\x1b$B$\x3f$m$&\x1b(B", 51,
     "\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86\x5c\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"},
    {"chrJapMulti.dcm 001021B0", DCM_VR_LT, "\x5cISO 2022 IR 87", "\x1b$B$\x3f$m$&\x1b(B", 12,
     "\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"},
    {"chrJapMultiExplicitIR6.dcm 00100010", DCM_VR_PN, "ISO 2022 IR 6\x5cISO 2022 IR 87", "\x1b$B$d$^$@\x1b(B^\x1b$B$\x3f$m$&\x1b(B", 25,
     "\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"},
    {"chrJapMultiExplicitIR6.dcm 00101001", DCM_VR_PN, "ISO 2022 IR 6\x5cISO 2022 IR 87", "\x1b$B$d$^$@\x1b(B^\x1b$B$\x3f$m$&\x1b(B\x5c\x1b$B$d$^$@\x1b(B^\x1b$B$\x3f$m$&\x1b(B", 51,
     "\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86\x5c\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"},
    {"chrJapMultiExplicitIR6.dcm 001021B0", DCM_VR_LT, "ISO 2022 IR 6\x5cISO 2022 IR 87", "\x1b$B$\x3f$m$&\x1b(B", 12,
     "\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"},
    {"chrKoreanMulti.dcm 00081070", DCM_VR_PN, "\x5cISO 2022 IR 149", "\x1b$)C\xb1\xe8\xc8\xf1\xc1\xdf\x1b(B", 13,
     "\xea\xb9\x80\xed\x9d\xac\xec\xa4\x91"},
    {"chrKoreanMulti.dcm 00101001", DCM_VR_PN, "\x5cISO 2022 IR 149", "\x1b$)C\xb1\xe8\xc8\xf1\xc1\xdf\x1b(B\x5c\x1b$)C\xb1\xe8\xc8\xf1\xc1\xdf\x1b(B", 27,
     "\xea\xb9\x80\xed\x9d\xac\xec\xa4\x91\x5c\xea\xb9\x80\xed\x9d\xac\xec\xa4\x91"},
    {"chrKoreanMulti.dcm 001021B0", DCM_VR_LT, "\x5cISO 2022 IR 149", "\x1b$)C\xb1\xe8\xc8\xf1\xc1\xdf\x1b(B", 13,
     "\xea\xb9\x80\xed\x9d\xac\xec\xa4\x91"},
    {"chrRuss.dcm 00100010", DCM_VR_PN, "ISO_IR 144", "\xbb\xee\xda" "ce\xdc\xd1yp\xd3", 10,
     "\xd0\x9b\xd1\x8e\xd0\xba" "ce\xd0\xbc\xd0\xb1yp\xd0\xb3"},
    {"chrSQEncoding.dcm 00321064[0].00100010", DCM_VR_PN, "ISO 2022 IR 13\x5cISO 2022 IR 87", "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$\x3f$m$&\x1b(B", 56,
     "\xef\xbe\x94\xef\xbe\x8f\xef\xbe\x80\xef\xbe\x9e^\xef\xbe\x80\xef\xbe\x9b\xef\xbd\xb3=\xe5\xb1\xb1\xe7\x94\xb0^\xe5\xa4\xaa\xe9\x83\x8e=\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"},
    {"chrX1.dcm 00100010", DCM_VR_PN, "ISO_IR 192", "Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1=", 25,
     "Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1"},
    {"chrX2.dcm 00100010", DCM_VR_PN, "GB18030", "Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=", 22,
     "Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe4\xb8\x9c"},
};

static void test_charset_files_decode_as_pydicom_decodes_them(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pydicom_rows / sizeof pydicom_rows[0]; i++) {
        const oracle_row *r = &pydicom_rows[i];
        char   *out = NULL;
        size_t  n = 0;
        dcm_err err = {{0}, 0};
        int rc = dcm_charset_to_utf8(r->charset, strlen(r->charset), r->vr,
                                     (const uint8_t *)r->raw, r->rawlen, &out, &n, &err);
        if (rc)
            fail_msg("%s: rc %d: %s", r->where, rc, err.msg);
        /* pydicom drops empty trailing PN component groups ("...=王^小東=") */
        while (r->vr == DCM_VR_PN && n > 0 && out[n - 1] == '=')
            n--;
        if (n != strlen(r->pydicom) || memcmp(out, r->pydicom, n) != 0)
            fail_msg("%s: got '%.*s' want '%s'", r->where, (int)n, out, r->pydicom);
        free(out);
    }
}

/* ------------------------------------------------------------------ */
/* The standard's examples                                             */
/* ------------------------------------------------------------------ */

static void test_annex_h_japanese_pn_switches_jis_x_0208_in_and_out(void **state)
{
    (void)state; /* PS3.5 H.3.1 */
    EXPECT("\\ISO 2022 IR 87", DCM_VR_PN,
           "Yamada^Tarou=" ESC "$B;3ED" ESC "(B^" ESC "$BB@O:" ESC "(B="
           ESC "$B$d$^$@" ESC "(B^" ESC "$B$?$m$&" ESC "(B",
           "Yamada^Tarou=山田^太郎=やまだ^たろう");
}

static void test_annex_h_japanese_pn_mixes_katakana_g1_and_kanji_g0(void **state)
{
    (void)state; /* PS3.5 H.3.2: value 1 ISO 2022 IR 13, back to G0 with ESC ( J */
    EXPECT("ISO 2022 IR 13\\ISO 2022 IR 87", DCM_VR_PN,
           "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=" ESC "$B;3ED" ESC "(J^" ESC "$BB@O:" ESC "(J="
           ESC "$B$d$^$@" ESC "(J^" ESC "$B$?$m$&" ESC "(J",
           "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう");
}

static void test_jis_x_0212_supplementary_kanji_decode(void **state)
{
    (void)state; /* pydicom test_charset.py, "Mori^Ogai=森^鷗外=もり^おうがい" */
    EXPECT("ISO 2022 IR 6\\ISO 2022 IR 87\\ISO 2022 IR 159", DCM_VR_PN,
           "Mori^Ogai=" ESC "$B?9" ESC "(B^" ESC "$(Dl?" ESC "$B30" ESC "(B="
           ESC "$B$b$j" ESC "(B^" ESC "$B$*$&$,$$" ESC "(B",
           "Mori^Ogai=森^鷗外=もり^おうがい");
}

static void test_annex_i_korean_pn_designates_ks_x_1001_per_component(void **state)
{
    (void)state; /* PS3.5 I.2 */
    EXPECT("\\ISO 2022 IR 149", DCM_VR_PN,
           "Hong^Gildong=" ESC "$)C\xfb\xf3^" ESC "$)C\xd1\xce\xd4\xd7="
           ESC "$)C\xc8\xab^" ESC "$)C\xb1\xe6\xb5\xbf",
           "Hong^Gildong=洪^吉洞=홍^길동");
}

static void test_korean_text_keeps_g1_until_the_line_ends(void **state)
{
    (void)state; /* PS3.5 I.3-style LT: one designation per line */
    EXPECT("\\ISO 2022 IR 149", DCM_VR_LT,
           "The 1st line includes " ESC "$)C\xc7\xd1\xb1\xb9\xbe\xee.\r\n"
           "The 2nd line includes " ESC "$)C\xc7\xd1\xb1\xb9\xbe\xee, too.\r\n"
           "The 3rd line.",
           "The 1st line includes 한국어.\r\nThe 2nd line includes 한국어, too.\r\n"
           "The 3rd line.");
}

static void test_annex_j_utf8_pn_passes_through(void **state)
{
    (void)state; /* PS3.5 J.1 (chrX1) */
    EXPECT("ISO_IR 192", DCM_VR_PN,
           "Wang^XiaoDong=\xe7\x8e\x8b^\xe5\xb0\x8f\xe6\x9d\xb1=",
           "Wang^XiaoDong=王^小東=");
}

static void test_annex_j_gb18030_pn_decodes(void **state)
{
    (void)state; /* PS3.5 J.2 (chrX2) */
    EXPECT("GB18030", DCM_VR_PN, "Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=",
           "Wang^XiaoDong=王^小东=");
}

static void test_annex_j_gb18030_text_keeps_line_ends(void **state)
{
    (void)state; /* PS3.5 J.3-style LT */
    EXPECT("GB18030", DCM_VR_LT,
           "1.\xb5\xda\xd2\xbb\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n"
           "2.\xb5\xda\xb6\xfe\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n"
           "3.\xb5\xda\xc8\xfd\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n",
           "1.第一行文字。\r\n2.第二行文字。\r\n3.第三行文字。\r\n");
}

static void test_annex_k_gb2312_pn_with_escapes_drops_them(void **state)
{
    (void)state; /* PS3.5 K.1; pydicom 2.3.1 keeps "\x1b$)A" in its output here */
    EXPECT("\\ISO 2022 IR 58", DCM_VR_PN,
           "Zhang^XiaoDong=" ESC "$)A\xd5\xc5^" ESC "$)A\xd0\xa1\xb6\xab=",
           "Zhang^XiaoDong=张^小东=");
}

static void test_annex_k_gb2312_text_redesignates_after_each_line(void **state)
{
    (void)state; /* PS3.5 K.2-style LT */
    EXPECT("\\ISO 2022 IR 58", DCM_VR_LT,
           "1." ESC "$)A\xb5\xda\xd2\xbb\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n"
           "2." ESC "$)A\xb5\xda\xb6\xfe\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n"
           "3." ESC "$)A\xb5\xda\xc8\xfd\xd0\xd0\xce\xc4\xd7\xd6\xa1\xa3\r\n",
           "1.第一行文字。\r\n2.第二行文字。\r\n3.第三行文字。\r\n");
}

/* pydicom test_charset.py ENCODED_NAMES: each single-byte set as a code
 * extension after an ASCII part, value 1 empty. */
static void test_single_byte_code_extensions_decode(void **state)
{
    (void)state;
    static const struct {
        const char *charset, *raw, *want;
    } v[] = {
        {"\\ISO 2022 IR 13", ESC ")I\xd4\xcf\xc0\xde^" ESC ")I\xc0\xdb\xb3", "ﾔﾏﾀﾞ^ﾀﾛｳ"},
        {"\\ISO 2022 IR 100", ESC "-ABuc^" ESC "-AJ\xe9r\xf4me", "Buc^Jérôme"},
        {"\\ISO 2022 IR 101", ESC "-BWa\xb3\xeasa", "Wałęsa"},
        {"\\ISO 2022 IR 109", ESC "-Canta\xfdnomo", "antaŭnomo"},
        {"\\ISO 2022 IR 110", ESC "-Dv\xe0rds", "vārds"},
        {"\\ISO 2022 IR 127", ESC "-G\xe2\xc8\xc7\xe6\xea^" ESC "-G\xe4\xe6\xd2\xc7\xd1",
         "قباني^لنزار"},
        {"\\ISO 2022 IR 126", ESC "-F\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2", "Διονυσιος"},
        {"\\ISO 2022 IR 138", ESC "-H\xf9\xf8\xe5\xef^" ESC "-H\xe3\xe1\xe5\xf8\xe4",
         "שרון^דבורה"},
        {"\\ISO 2022 IR 144", ESC "-L\xbb\xee\xda" "ce\xdc\xd1yp\xd3", "Люкceмбypг"},
        {"\\ISO 2022 IR 148", ESC "-M\xc7" "avu\xfeo\xf0lu", "Çavuşoğlu"},
        {"\\ISO 2022 IR 166", ESC "-T\xb9\xd2\xc1\xca\xa1\xd8\xc5", "นามสกุล"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char in[64], want[96];
        int  n = snprintf(in, sizeof in, "ASCII+%s", v[i].raw);
        snprintf(want, sizeof want, "ASCII+%s", v[i].want);
        expect_conv(v[i].charset, DCM_VR_PN, in, (size_t)n, want);
    }
}

/* ------------------------------------------------------------------ */
/* Delimiters (PS3.5 §6.1.2.5.3)                                       */
/* ------------------------------------------------------------------ */

static void test_pn_caret_resets_to_value_1(void **state)
{
    (void)state; /* pydicom test_missing_escape_for_single_byte_code_extensions */
    EXPECT("\\ISO 2022 IR 13", DCM_VR_PN,
           "ASCII+" ESC ")I\xd4\xcf\xc0\xde^\xc0\xdb\xb3", "ASCII+ﾔﾏﾀﾞ^ÀÛ³");
}

static void test_pn_equals_and_backslash_reset_to_value_1(void **state)
{
    (void)state;
    EXPECT("\\ISO 2022 IR 126", DCM_VR_PN, ESC "-F\xc4=\xc4", "Δ=Ä");
    EXPECT("\\ISO 2022 IR 126", DCM_VR_PN, ESC "-F\xc4\\\xc4", "Δ\\Ä");
}

static void test_lo_resets_at_backslash_but_not_at_caret(void **state)
{
    (void)state;
    EXPECT("\\ISO 2022 IR 126", DCM_VR_LO, ESC "-F\xc4^\xc4\\\xc4", "Δ^Δ\\Ä");
}

static void test_lt_resets_at_line_ends_and_tab_but_not_at_backslash(void **state)
{
    (void)state;
    EXPECT("\\ISO 2022 IR 126", DCM_VR_LT, ESC "-F\xc4\\\xc4\r\n\xc4", "Δ\\Δ\r\nÄ");
    EXPECT("\\ISO 2022 IR 126", DCM_VR_UT, ESC "-F\xc4\t\xc4", "Δ\tÄ");
    EXPECT("\\ISO 2022 IR 126", DCM_VR_ST, ESC "-F\xc4\f\xc4", "Δ\fÄ");
}

static void test_text_line_end_resets_a_multibyte_g1(void **state)
{
    (void)state;
    EXPECT("\\ISO 2022 IR 58", DCM_VR_LT, ESC "$)A\xb5\xda\r\n\xb5\xda", "第\r\nµÚ");
}

static void test_values_of_a_multivalued_element_each_use_their_own_set(void **state)
{
    (void)state; /* pydicom test_single_byte_multi_charset_text */
    static const char raw[] = "Buc^J\xe9r\xf4me\\" ESC "-F\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2\\"
                              ESC "-L\xbb\xee\xda" "ce\xdc\xd1yp\xd3";
    EXPECT("ISO 2022 IR 100\\ISO 2022 IR 144\\ISO 2022 IR 126", DCM_VR_LO, raw,
           "Buc^Jérôme\\Διονυσιος\\Люкceмбypг");
    EXPECT("ISO 2022 IR 100\\ISO 2022 IR 144\\ISO 2022 IR 126", DCM_VR_PN, raw,
           "Buc^Jérôme\\Διονυσιος\\Люкceмбypг");
}

static void test_kanji_bytes_equal_to_delimiters_do_not_reset(void **state)
{
    (void)state; /* 0x3D3D 十 and 0x5C5C 樛: '=' and '\\' inside a JIS X 0208 pair */
    EXPECT("\\ISO 2022 IR 87", DCM_VR_PN, ESC "$B==\\\\" ESC "(B^x", "十樛^x");
}

static void test_gb18030_trail_byte_5c_is_not_a_value_delimiter(void **state)
{
    (void)state;
    EXPECT("GB18030", DCM_VR_LO, "\x81\x5c\\a", "乗\\a");
}

/* ------------------------------------------------------------------ */
/* Choosing the character set                                          */
/* ------------------------------------------------------------------ */

static void test_default_repertoire_reads_high_bytes_as_latin1(void **state)
{
    (void)state; /* as pydicom ("iso8859") */
    EXPECT("", DCM_VR_PN, "J\xe9r\xf4me", "Jérôme");
    EXPECT("ISO_IR 6", DCM_VR_LO, "J\xe9r\xf4me", "Jérôme");
    EXPECT("  ", DCM_VR_LO, "abc", "abc");
}

static void test_unknown_charset_falls_back_to_the_default(void **state)
{
    (void)state;
    EXPECT("ISO_IR 999", DCM_VR_PN, "J\xe9r\xf4me", "Jérôme");
    EXPECT("KOI8-R", DCM_VR_LO, "\xc1", "Á");
    EXPECT("A DEFINED TERM FAR LONGER THAN ANY REAL ONE", DCM_VR_LO, "\xc1", "Á");
}

static void test_misspelled_defined_terms_are_repaired_as_pydicom_does(void **state)
{
    (void)state;
    EXPECT("ISO IR 144", DCM_VR_PN, "\xbb\xee\xda", "Люк");
    EXPECT("ISO-IR 192", DCM_VR_PN, "\xc3\xa9", "é");
    /* pydicom test_patched_code_extension_charset */
    EXPECT("ISO_2022-IR 100\\ISO_2022_IR+126", DCM_VR_PN,
           "Dionysios=" ESC "-F\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2", "Dionysios=Διονυσιος");
}

static void test_charset_values_are_trimmed_of_padding(void **state)
{
    (void)state;
    static const char cs[] = " ISO_IR 100 \0";
    char *out = NULL;
    size_t n = 0;
    assert_int_equal(dcm_charset_to_utf8(cs, sizeof cs - 1, DCM_VR_PN,
                                         (const uint8_t *)"\xe9", 1, &out, &n, NULL), 0);
    assert_string_equal(out, "é");
    free(out);
}

static void test_standalone_charset_ignores_code_extensions(void **state)
{
    (void)state; /* PS3.3 Table C.12-5: ISO_IR 192 allows none */
    EXPECT("ISO_IR 192\\ISO 2022 IR 87", DCM_VR_PN, "\xe7\x8e\x8b" ESC "$B;3",
           "王" ESC "$B;3");
}

static void test_known_escape_is_honoured_even_when_undeclared(void **state)
{
    (void)state; /* pydicom would keep the escape bytes and read Latin-1 */
    EXPECT("ISO_IR 100", DCM_VR_PN, ESC "-F\xc4", "Δ");
}

static void test_iso_ir_13_reads_katakana_and_shift_jis_kanji(void **state)
{
    (void)state; /* pydicom maps ISO_IR 13 to Python's shift_jis */
    EXPECT("ISO_IR 13", DCM_VR_PN, "\xd4\xcf^\x8e\x52\\~", "ﾔﾏ^山\\~");
}

static void test_iso_ir_203_is_latin_9(void **state)
{
    (void)state;
    EXPECT("ISO_IR 203", DCM_VR_LO, "\xa4", "€");
    EXPECT("\\ISO 2022 IR 203", DCM_VR_LO, ESC "-b\xa4", "€");
}

static void test_ir_149_as_value_1_reads_raw_euc_kr(void **state)
{
    (void)state; /* no escapes at all, as some modalities write it */
    EXPECT("ISO 2022 IR 149", DCM_VR_PN, "\xc7\xd1\xb1\xb9\xbe\xee", "한국어");
}

static void test_non_charset_string_vrs_use_the_default_repertoire(void **state)
{
    (void)state; /* PS3.5 §6.1.2.3: only SH LO UC ST LT UT PN follow (0008,0005) */
    EXPECT("GB18030", DCM_VR_CS, "ABC\xcd", "ABCÍ");
    EXPECT("\\ISO 2022 IR 87", DCM_VR_UI, "1.2.3", "1.2.3");
}

/* ------------------------------------------------------------------ */
/* Bad bytes never fail                                                */
/* ------------------------------------------------------------------ */

static void test_invalid_utf8_becomes_replacement_characters(void **state)
{
    (void)state; /* one U+FFFD per maximal ill-formed subpart, as Python */
    EXPECT("ISO_IR 192", DCM_VR_PN, "Buc^J\xc3", "Buc^J" FFFD);
    EXPECT("ISO_IR 192", DCM_VR_LO, "\xe7\x8e" "A\xff" "B", FFFD "A" FFFD "B");
    EXPECT("ISO_IR 192", DCM_VR_LO, "\xed\xa0\x80", FFFD FFFD FFFD); /* surrogate */
    EXPECT("ISO_IR 192", DCM_VR_LO, "\xf0\x9f\x98\x80", "😀");
}

static void test_unassigned_single_byte_becomes_replacement(void **state)
{
    (void)state;
    EXPECT("ISO_IR 109", DCM_VR_LO, "a\xa5" "b", "a" FFFD "b"); /* hole in ISO 8859-3 */
    EXPECT("ISO_IR 127", DCM_VR_LO, "\xa1", FFFD);
}

static void test_truncated_multibyte_characters_become_replacement(void **state)
{
    (void)state;
    EXPECT("GB18030", DCM_VR_LO, "a\x81", "a" FFFD);
    EXPECT("\\ISO 2022 IR 87", DCM_VR_PN, ESC "$B;" ESC "(Ba", FFFD "a");
    EXPECT("\\ISO 2022 IR 149", DCM_VR_PN, ESC "$)C\xc7" "a", FFFD "a");
    EXPECT("\\ISO 2022 IR 87", DCM_VR_PN, ESC "$B\x22\x2f" ESC "(B", FFFD); /* unassigned */
}

static void test_unknown_escape_sequence_becomes_one_replacement(void **state)
{
    (void)state;
    EXPECT("\\ISO 2022 IR 87", DCM_VR_LO, "a" ESC "$@b", "a" FFFD "b");
    EXPECT("\\ISO 2022 IR 87", DCM_VR_LO, "a" ESC, "a" FFFD);
    EXPECT("\\ISO 2022 IR 87", DCM_VR_LO, "a" ESC "$", "a" FFFD "$");
}

/* ------------------------------------------------------------------ */
/* Interface                                                           */
/* ------------------------------------------------------------------ */

static void test_empty_value_gives_empty_string(void **state)
{
    (void)state;
    char  *out = NULL;
    size_t n = 99;
    assert_int_equal(dcm_charset_to_utf8("GB18030", 7, DCM_VR_LO, NULL, 0, &out, &n, NULL), 0);
    assert_non_null(out);
    assert_int_equal(n, 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_null_charset_means_the_default(void **state)
{
    (void)state;
    char  *out = NULL;
    size_t n = 0;
    assert_int_equal(dcm_charset_to_utf8(NULL, 0, DCM_VR_PN, (const uint8_t *)"\xe9", 1,
                                         &out, &n, NULL), 0);
    assert_string_equal(out, "é");
    free(out);
}

static void test_non_string_vr_is_refused_without_echoing_the_value(void **state)
{
    (void)state;
    static const dcm_vr bad[] = {DCM_VR_OB, DCM_VR_SQ, DCM_VR_NONE, DCM_VR_US,
                                 DCM_VR_US_SS, (dcm_vr)200};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char   *out = (char *)0x1;
        size_t  n = 5;
        dcm_err err = {{0}, 7};
        int rc = dcm_charset_to_utf8("", 0, bad[i], (const uint8_t *)"Doe^John", 8,
                                     &out, &n, &err);
        assert_int_equal(rc, DCM_EVALUE);
        assert_null(out);
        assert_int_equal(n, 0);
        assert_true(err.msg[0] != '\0');
        assert_null(strstr(err.msg, "Doe"));
    }
}

static void test_missing_output_pointers_are_refused(void **state)
{
    (void)state;
    size_t n;
    char  *out;
    assert_int_equal(dcm_charset_to_utf8("", 0, DCM_VR_LO, (const uint8_t *)"a", 1,
                                         NULL, &n, NULL), DCM_EVALUE);
    assert_int_equal(dcm_charset_to_utf8("", 0, DCM_VR_LO, (const uint8_t *)"a", 1,
                                         &out, NULL, NULL), DCM_EVALUE);
    assert_int_equal(dcm_charset_to_utf8("", 0, DCM_VR_LO, NULL, 1, &out, &n, NULL),
                     DCM_EVALUE);
}

static void test_long_value_with_four_byte_characters_grows_the_output(void **state)
{
    (void)state; /* U+1F600 is 4 bytes in GB18030 and in UTF-8; mixed with ASCII */
    enum { N = 100000 };
    uint8_t *in = malloc(5 * N);
    assert_non_null(in);
    for (size_t i = 0; i < N; i++)
        memcpy(in + 5 * i, "\x94\x39\xfc\x36" "a", 5);
    char  *out = NULL;
    size_t n = 0;
    assert_int_equal(dcm_charset_to_utf8("GB18030", 7, DCM_VR_UT, in, 5 * N, &out, &n, NULL), 0);
    assert_int_equal(n, 5 * N);
    for (size_t i = 0; i < N; i++)
        assert_memory_equal(out + 5 * i, "\xf0\x9f\x98\x80" "a", 5);
    free(out);
    free(in);
}

static void test_long_latin1_value_converts_whole(void **state)
{
    (void)state; /* every byte doubles: exercises growth past the first guess */
    enum { N = 300000 };
    uint8_t *in = malloc(N);
    assert_non_null(in);
    memset(in, 0xE9, N);
    char  *out = NULL;
    size_t n = 0;
    assert_int_equal(dcm_charset_to_utf8("ISO_IR 100", 10, DCM_VR_UT, in, N, &out, &n, NULL), 0);
    assert_int_equal(n, 2 * N);
    assert_memory_equal(out + 2 * N - 2, "é", 2);
    free(out);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_charset_files_decode_as_pydicom_decodes_them),
        cmocka_unit_test(test_annex_h_japanese_pn_switches_jis_x_0208_in_and_out),
        cmocka_unit_test(test_annex_h_japanese_pn_mixes_katakana_g1_and_kanji_g0),
        cmocka_unit_test(test_jis_x_0212_supplementary_kanji_decode),
        cmocka_unit_test(test_annex_i_korean_pn_designates_ks_x_1001_per_component),
        cmocka_unit_test(test_korean_text_keeps_g1_until_the_line_ends),
        cmocka_unit_test(test_annex_j_utf8_pn_passes_through),
        cmocka_unit_test(test_annex_j_gb18030_pn_decodes),
        cmocka_unit_test(test_annex_j_gb18030_text_keeps_line_ends),
        cmocka_unit_test(test_annex_k_gb2312_pn_with_escapes_drops_them),
        cmocka_unit_test(test_annex_k_gb2312_text_redesignates_after_each_line),
        cmocka_unit_test(test_single_byte_code_extensions_decode),
        cmocka_unit_test(test_pn_caret_resets_to_value_1),
        cmocka_unit_test(test_pn_equals_and_backslash_reset_to_value_1),
        cmocka_unit_test(test_lo_resets_at_backslash_but_not_at_caret),
        cmocka_unit_test(test_lt_resets_at_line_ends_and_tab_but_not_at_backslash),
        cmocka_unit_test(test_text_line_end_resets_a_multibyte_g1),
        cmocka_unit_test(test_values_of_a_multivalued_element_each_use_their_own_set),
        cmocka_unit_test(test_kanji_bytes_equal_to_delimiters_do_not_reset),
        cmocka_unit_test(test_gb18030_trail_byte_5c_is_not_a_value_delimiter),
        cmocka_unit_test(test_default_repertoire_reads_high_bytes_as_latin1),
        cmocka_unit_test(test_unknown_charset_falls_back_to_the_default),
        cmocka_unit_test(test_misspelled_defined_terms_are_repaired_as_pydicom_does),
        cmocka_unit_test(test_charset_values_are_trimmed_of_padding),
        cmocka_unit_test(test_standalone_charset_ignores_code_extensions),
        cmocka_unit_test(test_known_escape_is_honoured_even_when_undeclared),
        cmocka_unit_test(test_iso_ir_13_reads_katakana_and_shift_jis_kanji),
        cmocka_unit_test(test_iso_ir_203_is_latin_9),
        cmocka_unit_test(test_ir_149_as_value_1_reads_raw_euc_kr),
        cmocka_unit_test(test_non_charset_string_vrs_use_the_default_repertoire),
        cmocka_unit_test(test_invalid_utf8_becomes_replacement_characters),
        cmocka_unit_test(test_unassigned_single_byte_becomes_replacement),
        cmocka_unit_test(test_truncated_multibyte_characters_become_replacement),
        cmocka_unit_test(test_unknown_escape_sequence_becomes_one_replacement),
        cmocka_unit_test(test_empty_value_gives_empty_string),
        cmocka_unit_test(test_null_charset_means_the_default),
        cmocka_unit_test(test_non_string_vr_is_refused_without_echoing_the_value),
        cmocka_unit_test(test_missing_output_pointers_are_refused),
        cmocka_unit_test(test_long_value_with_four_byte_characters_grows_the_output),
        cmocka_unit_test(test_long_latin1_value_converts_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

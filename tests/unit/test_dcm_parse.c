/* test_dcm_parse.c — the Part 10 reader and writer on hand-built byte
 * streams whose every byte the test controls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "codecs/codecs.h"

/* --- a tiny byte builder --------------------------------------------- */
typedef struct bb {
    uint8_t p[1 << 16];
    size_t  n;
    int     be;
} bb;

static void u8s(bb *b, const void *p, size_t n) { memcpy(b->p + b->n, p, n); b->n += n; }
static void u16(bb *b, uint16_t v)
{
    uint8_t x[2] = {b->be ? v >> 8 : v & 0xFF, b->be ? v & 0xFF : v >> 8};
    u8s(b, x, 2);
}
static void u32(bb *b, uint32_t v)
{
    if (b->be) { u16(b, v >> 16); u16(b, v & 0xFFFF); }
    else { u16(b, v & 0xFFFF); u16(b, v >> 16); }
}
static void tag(bb *b, uint16_t g, uint16_t e) { u16(b, g); u16(b, e); }
/* explicit VR element with short header */
static void ex(bb *b, uint16_t g, uint16_t e, const char *vr, const char *val, size_t n)
{
    tag(b, g, e);
    u8s(b, vr, 2);
    int long_hdr = !strcmp(vr, "OB") || !strcmp(vr, "OW") || !strcmp(vr, "SQ") || !strcmp(vr, "UN") ||
                   !strcmp(vr, "UT") || !strcmp(vr, "UC") || !strcmp(vr, "UR") || !strcmp(vr, "OV") ||
                   !strcmp(vr, "SV") || !strcmp(vr, "UV") || !strcmp(vr, "OF") || !strcmp(vr, "OD") ||
                   !strcmp(vr, "OL");
    if (long_hdr) { u16(b, 0); u32(b, (uint32_t)n); }
    else u16(b, (uint16_t)n);
    if (n != 0xFFFFFFFF)
        u8s(b, val, n);
}
static void im(bb *b, uint16_t g, uint16_t e, const char *val, size_t n)
{
    tag(b, g, e);
    u32(b, (uint32_t)n);
    u8s(b, val, n);
}
static void meta(bb *b, const char *ts)
{
    memset(b->p, 0, 128);
    b->n = 128;
    u8s(b, "DICM", 4);
    int be = b->be;
    b->be = 0;
    size_t tl = strlen(ts) + (strlen(ts) & 1);
    char t[80] = {0};
    memcpy(t, ts, strlen(ts));
    ex(b, 0x0002, 0x0000, "UL", "\0\0\0\0", 4);
    size_t gl_at = b->n - 4, start = b->n;
    ex(b, 0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.7", 26);
    ex(b, 0x0002, 0x0003, "UI", "1.2.3.4", 8);
    ex(b, 0x0002, 0x0010, "UI", t, tl);
    uint32_t gl = (uint32_t)(b->n - start);
    memcpy(b->p + gl_at, &gl, 4);
    b->be = be;
}

static dcm_file *parse_ok(bb *b)
{
    dcm_file *f = NULL;
    dcm_err err = {0};
    int rc = dcm_parse(b->p, b->n, NULL, &f, &err);
    if (rc != 0)
        fail_msg("parse failed: %s", err.msg);
    return f;
}

static int parse_code(bb *b, dcm_err *err)
{
    dcm_file *f = NULL;
    int rc = dcm_parse(b->p, b->n, NULL, &f, err);
    dcm_free(&f);
    return rc;
}

/* --- tests --------------------------------------------------------- */

static void test_explicit_le_values_point_into_input(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, DCM_TS_EXPLICIT_LE);
    ex(&b, 0x0010, 0x0010, "PN", "Doe^John", 8);
    ex(&b, 0x0028, 0x0010, "US", "\x00\x02", 2);
    dcm_file *f = parse_ok(&b);
    int32_t i = dcm_find(f, -1, DCM_TAG(0x0010, 0x0010));
    assert_true(i >= 0);
    const dcm_elem *e = dcm_at(f, i);
    assert_true(e->value >= b.p && e->value < b.p + b.n); /* zero-copy */
    char name[32];
    assert_int_equal(dcm_top_str(f, DCM_TAG(0x0010, 0x0010), name, sizeof name), 8);
    assert_string_equal(name, "Doe^John");
    uint32_t rows;
    assert_int_equal(dcm_get_u32(f, dcm_at(f, dcm_find(f, -1, DCM_TAG(0x0028, 0x0010))), 0, &rows), 0);
    assert_int_equal(rows, 512);
    assert_true(dcm_has_preamble(f));
    assert_string_equal(dcm_file_ts(f)->uid, DCM_TS_EXPLICIT_LE);
    dcm_free(&f);
    assert_null(f);
}

static void test_big_endian_numbers_are_swapped_on_read(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 1;
    meta(&b, DCM_TS_EXPLICIT_BE);
    ex(&b, 0x0028, 0x0010, "US", "\x02\x00", 2);
    ex(&b, 0x0028, 0x1052, "DS", "-1024 ", 6);
    dcm_file *f = parse_ok(&b);
    uint32_t rows;
    assert_int_equal(dcm_get_u32(f, dcm_at(f, dcm_find(f, -1, DCM_TAG(0x0028, 0x0010))), 0, &rows), 0);
    assert_int_equal(rows, 512);
    double icpt;
    assert_int_equal(dcm_get_f64(f, dcm_at(f, dcm_find(f, -1, DCM_TAG(0x0028, 0x1052))), 0, &icpt), 0);
    assert_true(icpt == -1024.0);
    dcm_free(&f);
}

static void test_implicit_vr_takes_vr_from_dictionary(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, DCM_TS_IMPLICIT_LE);
    im(&b, 0x0010, 0x0020, "ID42", 4);
    im(&b, 0x0028, 0x0011, "\x00\x01", 2);
    dcm_file *f = parse_ok(&b);
    const dcm_elem *e = dcm_at(f, dcm_find(f, -1, DCM_TAG(0x0028, 0x0011)));
    assert_non_null(e);
    assert_int_equal(e->vr, DCM_VR_US);
    uint32_t cols;
    assert_int_equal(dcm_get_u32(f, e, 0, &cols), 0);
    assert_int_equal(cols, 256);
    dcm_free(&f);
}

static void test_undefined_length_sequence_builds_tree(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, DCM_TS_EXPLICIT_LE);
    ex(&b, 0x0008, 0x1115, "SQ", NULL, 0xFFFFFFFF);
    tag(&b, 0xFFFE, 0xE000); u32(&b, 0xFFFFFFFF);
    ex(&b, 0x0020, 0x000E, "UI", "1.2.3.4", 8);
    tag(&b, 0xFFFE, 0xE00D); u32(&b, 0);
    tag(&b, 0xFFFE, 0xE000); u32(&b, 16); /* defined-length item */
    ex(&b, 0x0020, 0x000E, "UI", "1.2.3.5", 8);
    tag(&b, 0xFFFE, 0xE0DD); u32(&b, 0);
    ex(&b, 0x0010, 0x0010, "PN", "A^B ", 4);
    dcm_file *f = parse_ok(&b);
    int32_t sq = dcm_find(f, -1, DCM_TAG(0x0008, 0x1115));
    assert_true(sq >= 0);
    int32_t item1 = dcm_at(f, sq)->child;
    assert_int_equal(dcm_at(f, item1)->tag, DCM_TAG_ITEM);
    int32_t item2 = dcm_at(f, item1)->next;
    assert_true(item2 >= 0);
    int32_t uid2 = dcm_find(f, item2, DCM_TAG(0x0020, 0x000E));
    char buf[16];
    dcm_get_str(f, dcm_at(f, uid2), -1, buf, sizeof buf);
    assert_string_equal(buf, "1.2.3.5");
    assert_true(dcm_find(f, -1, DCM_TAG(0x0010, 0x0010)) >= 0); /* parsing resumed after the sequence */
    dcm_free(&f);
}

static void test_encapsulated_pixel_data_lists_fragments(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, "1.2.840.10008.1.2.4.50");
    ex(&b, 0x7FE0, 0x0010, "OB", NULL, 0xFFFFFFFF);
    tag(&b, 0xFFFE, 0xE000); u32(&b, 4); u32(&b, 0);       /* basic offset table */
    tag(&b, 0xFFFE, 0xE000); u32(&b, 6); u8s(&b, "\xFF\xD8\x01\x02\xFF\xD9", 6);
    tag(&b, 0xFFFE, 0xE0DD); u32(&b, 0);
    dcm_file *f = parse_ok(&b);
    const dcm_elem *px = dcm_at(f, dcm_find(f, -1, DCM_TAG_PIXEL_DATA));
    assert_true(px->flags & DCM_F_ENCAPS);
    const dcm_elem *bot = dcm_at(f, px->child);
    assert_int_equal(bot->value_len, 4);
    const dcm_elem *frag = dcm_at(f, bot->next);
    assert_int_equal(frag->value_len, 6);
    assert_memory_equal(frag->value, "\xFF\xD8", 2);
    dcm_free(&f);
}

static void test_parse_rejects_value_longer_than_file(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, DCM_TS_EXPLICIT_LE);
    size_t at = b.n;
    ex(&b, 0x0010, 0x0010, "PN", "Doe^John", 8);
    b.n -= 3; /* cut inside the value */
    dcm_err err = {0};
    assert_int_equal(parse_code(&b, &err), DCM_ETRUNC);
    assert_int_equal(err.offset, at);
    assert_non_null(strstr(err.msg, "offset"));
    assert_non_null(strstr(err.msg, "(0010,0010)"));
}

static void test_parse_rejects_absurd_item_length(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, DCM_TS_EXPLICIT_LE);
    ex(&b, 0x0008, 0x1115, "SQ", NULL, 0xFFFFFFFF);
    tag(&b, 0xFFFE, 0xE000); u32(&b, 0xFFFFFFF0);
    dcm_err err = {0};
    assert_int_equal(parse_code(&b, &err), DCM_ETRUNC);
    assert_non_null(strstr(err.msg, "item length 4294967280"));
}

static void test_parse_fails_cleanly_on_deep_nesting(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, DCM_TS_EXPLICIT_LE);
    for (int i = 0; i < 2000 && b.n + 40 < sizeof b.p; i++) {
        ex(&b, 0x0008, 0x1115, "SQ", NULL, 0xFFFFFFFF);
        tag(&b, 0xFFFE, 0xE000); u32(&b, 0xFFFFFFFF);
    }
    dcm_err err = {0};
    assert_int_equal(parse_code(&b, &err), DCM_EDEPTH);
}

static void test_parse_rejects_garbage_after_preamble(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    memset(b.p, 0, 128);
    b.n = 128;
    u8s(&b, "DICM", 4);
    for (int i = 0; i < 64; i++)
        b.p[b.n++] = (uint8_t)(0x9B + i * 37);
    dcm_err err = {0};
    int rc = parse_code(&b, &err);
    assert_true(rc < 0);
    assert_non_null(strstr(err.msg, "offset"));
}

static void test_stop_at_tag_skips_pixel_data(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, DCM_TS_EXPLICIT_LE);
    ex(&b, 0x0010, 0x0020, "LO", "ID", 2);
    ex(&b, 0x7FE0, 0x0010, "OW", "\1\2\3\4", 4);
    b.n -= 2; /* truncated pixel data never read */
    dcm_parse_opts o = {.stop_at_tag = DCM_TAG_PIXEL_DATA};
    dcm_file *f = NULL;
    dcm_err err = {0};
    assert_int_equal(dcm_parse(b.p, b.n, &o, &f, &err), 0);
    assert_true(dcm_find(f, -1, DCM_TAG(0x0010, 0x0020)) >= 0);
    assert_int_equal(dcm_find(f, -1, DCM_TAG_PIXEL_DATA), -1);
    dcm_free(&f);
}

static void test_raw_dataset_without_meta_is_guessed(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    im(&b, 0x0008, 0x0016, "1.2.840.10008.5.1.4.1.1.7", 26);
    im(&b, 0x0008, 0x0018, "1.2.3", 6);
    dcm_file *f = parse_ok(&b);
    assert_false(dcm_has_meta(f));
    assert_string_equal(dcm_file_ts(f)->uid, DCM_TS_IMPLICIT_LE);
    dcm_free(&f);
}

/* writer */
typedef struct mem { uint8_t *p; size_t n, cap; } mem;
static int mem_write(void *ctx, const void *p, size_t n)
{
    mem *m = ctx;
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, p, n);
    m->n += n;
    return 0;
}

static void test_write_changes_byte_order_and_reads_back_equal(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, DCM_TS_EXPLICIT_LE);
    ex(&b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7", 26);
    ex(&b, 0x0008, 0x0018, "UI", "1.2.3.4", 8);
    ex(&b, 0x0028, 0x0010, "US", "\x34\x12", 2);
    ex(&b, 0x7FE0, 0x0010, "OW", "\x01\x02\x03\x04", 4);
    dcm_file *f = parse_ok(&b);
    const char *targets[] = {DCM_TS_EXPLICIT_BE, DCM_TS_IMPLICIT_LE, DCM_TS_DEFLATED_LE, DCM_TS_EXPLICIT_LE};
    for (size_t t = 0; t < 4; t++) {
        mem m = {0};
        dcm_err err = {0};
        dcm_write_opts o = {.ts_uid = targets[t]};
        assert_int_equal(dcm_write(f, &o, (dcm_sink){mem_write, &m}, &err), 0);
        dcm_file *g = NULL;
        assert_int_equal(dcm_parse(m.p, m.n, NULL, &g, &err), 0);
        assert_string_equal(dcm_file_ts(g)->uid, targets[t]);
        uint32_t rows;
        assert_int_equal(dcm_get_u32(g, dcm_at(g, dcm_find(g, -1, DCM_TAG(0x0028, 0x0010))), 0, &rows), 0);
        assert_int_equal(rows, 0x1234);
        const dcm_elem *px = dcm_at(g, dcm_find(g, -1, DCM_TAG_PIXEL_DATA));
        if (!strcmp(targets[t], DCM_TS_EXPLICIT_BE))
            assert_memory_equal(px->value, "\x02\x01\x04\x03", 4); /* OW words swapped */
        else
            assert_memory_equal(px->value, "\x01\x02\x03\x04", 4);
        char impl[80];
        dcm_top_str(g, DCM_TAG(0x0002, 0x0012), impl, sizeof impl);
        assert_string_equal(impl, DXHUB_IMPLEMENTATION_CLASS_UID);
        dcm_free(&g);
        free(m.p);
    }
    dcm_free(&f);
}

static void test_write_applies_edits_in_tag_order(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 0;
    meta(&b, DCM_TS_EXPLICIT_LE);
    ex(&b, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7", 26);
    ex(&b, 0x0008, 0x0018, "UI", "1.2.3.4", 8);
    ex(&b, 0x0010, 0x0010, "PN", "Old^Name", 8);
    ex(&b, 0x0010, 0x0040, "CS", "M ", 2);
    dcm_file *f = parse_ok(&b);
    dcm_edit edits[] = {
        {.tag = DCM_TAG(0x0010, 0x0010), .vr = DCM_VR_PN, .value = (const uint8_t *)"New^Name", .len = 8},
        {.tag = DCM_TAG(0x0010, 0x0040), .remove = 1},
        {.tag = DCM_TAG(0x0010, 0x0020), .vr = DCM_VR_LO, .value = (const uint8_t *)"P1", .len = 2},
    };
    dcm_write_opts o = {.edits = edits, .n_edits = 3};
    mem m = {0};
    dcm_err err = {0};
    assert_int_equal(dcm_write(f, &o, (dcm_sink){mem_write, &m}, &err), 0);
    dcm_file *g = NULL;
    assert_int_equal(dcm_parse(m.p, m.n, NULL, &g, &err), 0);
    char buf[32];
    dcm_top_str(g, DCM_TAG(0x0010, 0x0010), buf, sizeof buf);
    assert_string_equal(buf, "New^Name");
    assert_int_equal(dcm_find(g, -1, DCM_TAG(0x0010, 0x0040)), -1);
    int32_t pid = dcm_find(g, -1, DCM_TAG(0x0010, 0x0020));
    assert_true(pid >= 0);
    assert_true(dcm_at(g, pid)->offset > dcm_at(g, dcm_find(g, -1, DCM_TAG(0x0010, 0x0010)))->offset);
    dcm_free(&g);
    dcm_free(&f);
    free(m.p);
}

/* F.2.7 wants InlineBinary little endian, so big endian OW words are
 * swapped; a malformed odd length leaves a half word that must be copied,
 * not read past (found by fuzzing). */
static void test_json_inline_binary_swaps_whole_words_only(void **s)
{
    (void)s;
    static bb b;
    b.n = 0; b.be = 1;
    meta(&b, DCM_TS_EXPLICIT_BE);
    ex(&b, 0x0028, 0x1201, "OW", "\x01\x02\x03\x04\x05\x06\x07", 7);
    dcm_file *f = parse_ok(&b);
    mem m = {0};
    dcm_err err = {0};
    assert_int_equal(dcm_json_write(f, NULL, (dcm_sink){mem_write, &m}, &err), 0);
    const char *want = "\"InlineBinary\":\"AgEEAwYFBw==\"";
    assert_non_null(memmem(m.p, m.n, want, strlen(want)));
    dcm_free(&f);
    free(m.p);
}

/* The UIDs an instance is filed under: what the API, the reader and the
 * workstation accept (digits and dots, at most 64), judged on the whole
 * value, not a copy cut to fit or ending at an embedded NUL. */
static void test_uids_are_judged_on_the_whole_value(void **s)
{
    (void)s;
    assert_true(dcm_uid_valid("1.2.840.10008.1.2"));
    assert_true(dcm_uid_valid("1.2.840.0113654.2")); /* a leading zero: common in the field */
    static const char *const bad[] = {"", ".1.2", "1.2.", "1..2", "..", "1.2.a", "1.2/3", "1.2 3", "1.2.\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dcm_uid_valid(bad[i]))
            fail_msg("\"%s\" taken for a UID", bad[i]);
    char uid65[66];
    memset(uid65, '1', 65);
    uid65[65] = '\0';
    assert_false(dcm_uid_valid(uid65));
    assert_true(dcm_uid_valid(uid65 + 1));

    static const struct {
        const char *val;
        size_t      n;
        int         rc;
    } cases[] = {
        {"1.2.3\0", 6, 0},                    /* NUL padding */
        {"1.2.3\0" "99", 8, DCM_EVALUE},       /* an embedded NUL: not "1.2.3" */
        {"11111111111111111111111111111111111111111111111111111111111111111111", 68, DCM_EVALUE},
        {"1.2.\xff", 6, DCM_EVALUE},
        {"", 0, DCM_ENOTFOUND},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        static bb b;
        b.n = 0; b.be = 0;
        meta(&b, DCM_TS_EXPLICIT_LE);
        ex(&b, 0x0008, 0x0018, "UI", cases[i].val, cases[i].n);
        ex(&b, 0x0020, 0x000D, "UI", "1.2.4", 6);
        dcm_file *f = parse_ok(&b);
        char out[DCM_UID_MAX + 1] = "x", study[DCM_UID_MAX + 1], series[DCM_UID_MAX + 1];
        int  rc = dcm_top_uid(f, DCM_TAG(0x0008, 0x0018), out);
        if (rc != cases[i].rc)
            fail_msg("case %zu: %d, wanted %d", i, rc, cases[i].rc);
        assert_true(rc == 0 ? !strcmp(out, "1.2.3") : !out[0]);
        const char *why = dcm_uids_why(f, out, study, series);
        assert_non_null(why); /* no series UID in any of them */
        assert_string_equal(why, rc == DCM_EVALUE ? "SOP Instance UID (0008,0018) is not a valid UID (digits and "
                                                    "dots, at most 64: PS3.5 9.1)"
                                 : rc == DCM_ENOTFOUND ? "missing SOP Instance UID (0008,0018)"
                                                       : "missing Series Instance UID (0020,000E)");
        dcm_free(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explicit_le_values_point_into_input),
        cmocka_unit_test(test_big_endian_numbers_are_swapped_on_read),
        cmocka_unit_test(test_implicit_vr_takes_vr_from_dictionary),
        cmocka_unit_test(test_undefined_length_sequence_builds_tree),
        cmocka_unit_test(test_encapsulated_pixel_data_lists_fragments),
        cmocka_unit_test(test_parse_rejects_value_longer_than_file),
        cmocka_unit_test(test_parse_rejects_absurd_item_length),
        cmocka_unit_test(test_parse_fails_cleanly_on_deep_nesting),
        cmocka_unit_test(test_parse_rejects_garbage_after_preamble),
        cmocka_unit_test(test_stop_at_tag_skips_pixel_data),
        cmocka_unit_test(test_raw_dataset_without_meta_is_guessed),
        cmocka_unit_test(test_write_changes_byte_order_and_reads_back_equal),
        cmocka_unit_test(test_write_applies_edits_in_tag_order),
        cmocka_unit_test(test_json_inline_binary_swaps_whole_words_only),
        cmocka_unit_test(test_uids_are_judged_on_the_whole_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

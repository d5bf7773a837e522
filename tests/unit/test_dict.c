/* test_dict.c — dcm_dict_find: the generated data dictionary and the rules
 * around it (group lengths, private creators, repeating groups).
 * Expected VRs and keywords are pydicom 2.3.1's (PS3.6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "codecs/codecs.h"

/* The generated tables (dcm_dict_table.c), to check their invariants. */
extern const dcm_dict_entry dcm_dict_exact[];
extern const size_t         dcm_dict_exact_count;
extern const dcm_dict_entry dcm_dict_repeat[];
extern const size_t         dcm_dict_repeat_count;

static void expect_entry(uint32_t tag, dcm_vr vr, const char *keyword)
{
    const dcm_dict_entry *e = dcm_dict_find(tag);
    if (!e)
        fail_msg("(%04X,%04X) not found", DCM_GROUP(tag), DCM_ELEM(tag));
    assert_int_equal(e->vr, vr);
    assert_string_equal(e->keyword, keyword);
}

static void test_dict_finds_patient_name_as_pn(void **state)
{
    (void)state;
    expect_entry(DCM_TAG(0x0010, 0x0010), DCM_VR_PN, "PatientName");
    expect_entry(DCM_TAG(0x0008, 0x0005), DCM_VR_CS, "SpecificCharacterSet");
    expect_entry(DCM_TAG(0x0008, 0x1150), DCM_VR_UI, "ReferencedSOPClassUID");
}

static void test_dict_finds_first_and_last_entries_of_the_table(void **state)
{
    (void)state;
    expect_entry(DCM_TAG(0x0000, 0x0000), DCM_VR_UL, "CommandGroupLength");
    expect_entry(DCM_TAG(0xFFFE, 0xE0DD), DCM_VR_NONE, "SequenceDelimitationItem");
}

static void test_dict_gives_items_and_delimiters_vr_none(void **state)
{
    (void)state;
    expect_entry(DCM_TAG_ITEM, DCM_VR_NONE, "Item");
    expect_entry(DCM_TAG_ITEM_DELIM, DCM_VR_NONE, "ItemDelimitationItem");
    expect_entry(DCM_TAG_SEQ_DELIM, DCM_VR_NONE, "SequenceDelimitationItem");
}

static void test_dict_keeps_ambiguous_vrs_for_the_parser_to_resolve(void **state)
{
    (void)state;
    expect_entry(DCM_TAG(0x0028, 0x0106), DCM_VR_US_SS, "SmallestImagePixelValue");
    expect_entry(DCM_TAG_PIXEL_DATA, DCM_VR_OB_OW, "PixelData");
    expect_entry(DCM_TAG(0x0028, 0x3006), DCM_VR_US_OW, "LUTData");
    expect_entry(DCM_TAG(0x0028, 0x1200), DCM_VR_US_SS_OW, "GrayLookupTableData");
}

static void test_dict_includes_retired_entries(void **state)
{
    (void)state;
    expect_entry(DCM_TAG(0x0008, 0x0010), DCM_VR_SH, "RecognitionCode");
    expect_entry(DCM_TAG(0x0008, 0x0001), DCM_VR_UL, "LengthToEnd");
    /* retired and blank in PS3.6: the VR is known, the keyword empty */
    expect_entry(DCM_TAG(0x0028, 0x0020), DCM_VR_OB, "");
}

static void test_dict_matches_overlay_repeating_group_60xx(void **state)
{
    (void)state;
    expect_entry(DCM_TAG(0x6000, 0x3000), DCM_VR_OB_OW, "OverlayData");
    expect_entry(DCM_TAG(0x6002, 0x0010), DCM_VR_US, "OverlayRows");
    expect_entry(DCM_TAG(0x601E, 0x0040), DCM_VR_CS, "OverlayType");
    const dcm_dict_entry *e = dcm_dict_find(DCM_TAG(0x6010, 0x3000));
    assert_non_null(e);
    assert_int_equal(e->mask, 0xFF00FFFFu);
    assert_int_equal(e->tag, 0x60003000u);
}

static void test_dict_matches_curve_group_50xx(void **state)
{
    (void)state;
    expect_entry(DCM_TAG(0x5004, 0x3000), DCM_VR_OB_OW, "CurveData");
    expect_entry(DCM_TAG(0x5000, 0x0005), DCM_VR_US, "CurveDimensions");
}

static void test_dict_matches_element_repeaters(void **state)
{
    (void)state;
    expect_entry(DCM_TAG(0x0020, 0x3105), DCM_VR_CS, "SourceImageIDs");
    expect_entry(DCM_TAG(0x1000, 0x0120), DCM_VR_US, "EscapeTriplet");
    expect_entry(DCM_TAG(0x1000, 0x0121), DCM_VR_US, "RunLengthTriplet");
    expect_entry(DCM_TAG(0x1010, 0x1234), DCM_VR_US, "ZonalMap");
    expect_entry(DCM_TAG(0x7F02, 0x0010), DCM_VR_OB_OW, "VariablePixelData");
}

static void test_dict_gives_every_group_length_ul(void **state)
{
    (void)state;
    expect_entry(DCM_TAG(0x0002, 0x0000), DCM_VR_UL, "FileMetaInformationGroupLength");
    expect_entry(DCM_TAG(0x0008, 0x0000), DCM_VR_UL, "GroupLength");
    expect_entry(DCM_TAG(0x0029, 0x0000), DCM_VR_UL, "GroupLength"); /* private group */
    /* PS3.5 §7.2 beats the 1000xxx0 / 1010xxxx repeaters (pydicom picks
     * EscapeTriplet / ZonalMap here) */
    expect_entry(DCM_TAG(0x1000, 0x0000), DCM_VR_UL, "GroupLength");
    expect_entry(DCM_TAG(0x1010, 0x0000), DCM_VR_UL, "GroupLength");
}

static void test_dict_gives_private_creators_lo(void **state)
{
    (void)state;
    expect_entry(DCM_TAG(0x0009, 0x0010), DCM_VR_LO, "PrivateCreator");
    expect_entry(DCM_TAG(0x0029, 0x00FF), DCM_VR_LO, "PrivateCreator");
    expect_entry(DCM_TAG(0xFFFD, 0x0010), DCM_VR_LO, "PrivateCreator");
}

static void test_dict_returns_null_for_other_private_elements(void **state)
{
    (void)state;
    assert_null(dcm_dict_find(DCM_TAG(0x0029, 0x1010)));
    assert_null(dcm_dict_find(DCM_TAG(0x0029, 0x0100)));
    assert_null(dcm_dict_find(DCM_TAG(0x0029, 0x000F)));
    assert_null(dcm_dict_find(DCM_TAG(0x0009, 0x0001)));
}

static void test_dict_treats_odd_6001_as_private_not_overlay(void **state)
{
    (void)state;
    assert_null(dcm_dict_find(DCM_TAG(0x6001, 0x3000)));
    expect_entry(DCM_TAG(0x6001, 0x0010), DCM_VR_LO, "PrivateCreator");
}

static void test_dict_reserved_odd_groups_have_no_private_creators(void **state)
{
    (void)state;
    /* PS3.5 §7.8.1: 0001, 0003, 0005, 0007 and FFFF are not private groups */
    assert_null(dcm_dict_find(DCM_TAG(0x0001, 0x0010)));
    assert_null(dcm_dict_find(DCM_TAG(0x0007, 0x0010)));
    assert_null(dcm_dict_find(DCM_TAG(0xFFFF, 0x0010)));
}

static void test_dict_returns_null_for_unknown_standard_tags(void **state)
{
    (void)state;
    assert_null(dcm_dict_find(DCM_TAG(0x0010, 0x0011)));
    assert_null(dcm_dict_find(DCM_TAG(0x6000, 0x9999)));
    assert_null(dcm_dict_find(DCM_TAG(0xFFFE, 0xE001)));
    assert_null(dcm_dict_find(0xFFFFFFFFu));
}

static void test_dict_exact_table_is_sorted_and_every_entry_is_found(void **state)
{
    (void)state;
    assert_true(dcm_dict_exact_count > 4000);
    for (size_t i = 0; i < dcm_dict_exact_count; i++) {
        const dcm_dict_entry *e = &dcm_dict_exact[i];
        if (i > 0 && dcm_dict_exact[i - 1].tag >= e->tag)
            fail_msg("entry %zu out of order", i);
        assert_int_equal(e->mask, 0xFFFFFFFFu);
        assert_true(e->vr < DCM_VR_COUNT);
        assert_non_null(e->keyword);
        assert_ptr_equal(dcm_dict_find(e->tag), e);
    }
}

static void test_dict_repeating_entries_match_themselves_and_do_not_overlap(void **state)
{
    (void)state;
    assert_true(dcm_dict_repeat_count > 0);
    for (size_t i = 0; i < dcm_dict_repeat_count; i++) {
        const dcm_dict_entry *a = &dcm_dict_repeat[i];
        assert_int_not_equal(a->mask, 0xFFFFFFFFu);
        assert_int_equal(a->tag & ~a->mask, 0);
        assert_int_equal(DCM_GROUP(a->tag) & 1, 0);
        for (size_t j = i + 1; j < dcm_dict_repeat_count; j++) {
            const dcm_dict_entry *b = &dcm_dict_repeat[j];
            uint32_t both = a->mask & b->mask;
            if ((a->tag & both) == (b->tag & both))
                fail_msg("repeaters %zu and %zu overlap", i, j);
        }
        /* the pattern with non-zero x digits resolves to this entry */
        uint32_t probe = a->tag | (~a->mask & 0x00120010u);
        if (DCM_ELEM(probe) != 0)
            assert_ptr_equal(dcm_dict_find(probe), a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dict_finds_patient_name_as_pn),
        cmocka_unit_test(test_dict_finds_first_and_last_entries_of_the_table),
        cmocka_unit_test(test_dict_gives_items_and_delimiters_vr_none),
        cmocka_unit_test(test_dict_keeps_ambiguous_vrs_for_the_parser_to_resolve),
        cmocka_unit_test(test_dict_includes_retired_entries),
        cmocka_unit_test(test_dict_matches_overlay_repeating_group_60xx),
        cmocka_unit_test(test_dict_matches_curve_group_50xx),
        cmocka_unit_test(test_dict_matches_element_repeaters),
        cmocka_unit_test(test_dict_gives_every_group_length_ul),
        cmocka_unit_test(test_dict_gives_private_creators_lo),
        cmocka_unit_test(test_dict_returns_null_for_other_private_elements),
        cmocka_unit_test(test_dict_treats_odd_6001_as_private_not_overlay),
        cmocka_unit_test(test_dict_reserved_odd_groups_have_no_private_creators),
        cmocka_unit_test(test_dict_returns_null_for_unknown_standard_tags),
        cmocka_unit_test(test_dict_exact_table_is_sorted_and_every_entry_is_found),
        cmocka_unit_test(test_dict_repeating_entries_match_themselves_and_do_not_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* dcm_dict.c — the data dictionary: VR and keyword of a tag (PS3.6).
 *
 * The tables are generated (dcm_dict_table.c, by gen_dict.py from
 * pydicom's dictionary).  dcm_dict_find answers, in this order:
 *  1. an exact standard tag, by binary search: retired tags included;
 *     (FFFE,E000/E00D/E0DD) are there with DCM_VR_NONE and their keywords
 *     (Item, ItemDelimitationItem, SequenceDelimitationItem);
 *  2. any other group length (gggg,0000): UL (PS3.5 §7.2), keyword
 *     "GroupLength" — for odd (private) groups too;
 *  3. odd groups are private (PS3.5 §7.8.1): a private creator
 *     (gggg,0010-00FF) is LO, keyword "PrivateCreator"; any other private
 *     element is unknown (NULL), since its VR is the creator's business.
 *     Groups 0001, 0003, 0005, 0007 and FFFF are not private groups but
 *     reserved: NULL there too;
 *  4. the repeating groups ((50xx,xxxx), (60xx,xxxx), (0020,31xx), ...) by
 *     mask, in even groups only, as pydicom does.
 * The returned entry is constant and lives forever.  For 2-4 its tag and
 * mask describe the pattern matched, not the tag asked about; the mask of
 * the private creator entry cannot express 0x0010-0x00FF and says only
 * "odd group, element 00xx".
 */
#include "codecs/dcm_private.h"

/* Defined in the generated dcm_dict_table.c. */
extern const dcm_dict_entry dcm_dict_exact[];
extern const size_t         dcm_dict_exact_count;
extern const dcm_dict_entry dcm_dict_repeat[];
extern const size_t         dcm_dict_repeat_count;

static const dcm_dict_entry dict_group_length = {
    0x00000000u, 0x0000FFFFu, DCM_VR_UL, "GroupLength"};
static const dcm_dict_entry dict_private_creator = {
    0x00010000u, 0x0001FF00u, DCM_VR_LO, "PrivateCreator"};

static const dcm_dict_entry *dict_exact(uint32_t tag)
{
    size_t lo = 0, hi = dcm_dict_exact_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t t = dcm_dict_exact[mid].tag;
        if (t == tag)
            return &dcm_dict_exact[mid];
        if (t < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool is_private_group(uint16_t g)
{
    /* PS3.5 §7.8.1: odd groups except 0001, 0003, 0005, 0007 and FFFF */
    return (g & 1) && g > 0x0007 && g != 0xFFFF;
}

const dcm_dict_entry *dcm_dict_find(uint32_t tag)
{
    const dcm_dict_entry *e = dict_exact(tag);
    if (e)
        return e;
    uint16_t g = DCM_GROUP(tag), el = DCM_ELEM(tag);
    if (el == 0x0000)
        return &dict_group_length;
    if (g & 1) {
        if (is_private_group(g) && el >= 0x0010 && el <= 0x00FF)
            return &dict_private_creator;
        return NULL;
    }
    /* The generator checked that no two patterns overlap. */
    for (size_t i = 0; i < dcm_dict_repeat_count; i++)
        if ((tag & dcm_dict_repeat[i].mask) == dcm_dict_repeat[i].tag)
            return &dcm_dict_repeat[i];
    return NULL;
}

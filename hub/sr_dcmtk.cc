// sr_dcmtk.cc — the DCMTK dcmsr adapter behind hub/sr.h: a signed report
// as a Basic Text SR.  No C++ type leaves this file; every entry point
// catches all exceptions.  dcmsr's logger is quietened once, under
// pthread_once: what matters comes back as the returned reason.
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <new>
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/dsrdoc.h"
#include "dcmtk/oflog/oflog.h"
#include "hub/sr.h"

namespace {

pthread_once_t sr_once = PTHREAD_ONCE_INIT;

void sr_setup()
{
    OFLog::getLogger("dcmtk.dcmsr").setLogLevel(OFLogger::FATAL_LOG_LEVEL);
    OFLog::getLogger("dcmtk.dcmdata").setLogLevel(OFLogger::FATAL_LOG_LEVEL);
}

int fail(char *err, size_t errlen, int code, const char *what, const OFCondition &c)
{
    snprintf(err, errlen, "%s: %s", what, c.text());
    return code;
}

// The study's identifiers of one file, read up to (not into) Pixel Data.
struct evidence {
    OFString study, series, sop_class, sop;
};

OFCondition load_head(const char *path, DcmFileFormat &ff)
{
    return ff.loadFileUntilTag(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect, DCM_PixelData);
}

int read_evidence(const char *path, evidence &e, char *err, size_t errlen)
{
    DcmFileFormat ff;
    OFCondition c = load_head(path, ff);
    if (c.bad())
        return fail(err, errlen, SR_EINPUT, path, c);
    DcmDataset *ds = ff.getDataset();
    ds->findAndGetOFString(DCM_StudyInstanceUID, e.study);
    ds->findAndGetOFString(DCM_SeriesInstanceUID, e.series);
    ds->findAndGetOFString(DCM_SOPClassUID, e.sop_class);
    ds->findAndGetOFString(DCM_SOPInstanceUID, e.sop);
    if (e.study.empty() || e.series.empty() || e.sop_class.empty() || e.sop.empty()) {
        snprintf(err, errlen, "%s: lacks a Study, Series, SOP Class or SOP Instance UID", path);
        return SR_EINPUT;
    }
    return 0;
}

// DT "YYYYMMDDhhmmss+0000" -> DA "YYYYMMDD", TM "hhmmss".
void split_dt(const char *dt, OFString &da, OFString &tm)
{
    OFString s(dt ? dt : "");
    da = s.substr(0, 8);
    tm = s.length() >= 14 ? s.substr(8, 6) : OFString("000000");
}

int build(const sr_spec *s, const char *out_path, char *err, size_t errlen)
{
    if (!s || !s->n_files || !s->files || !s->study_uid || !s->findings || !s->impression || !s->observer_name ||
        !s->organisation || !s->verified_at || !s->sop_uid || !s->series_uid) {
        snprintf(err, errlen, "the SR needs study files, findings, impression, signer, time and UIDs");
        return SR_EINPUT;
    }
    DSRDocument doc(DSRTypes::DT_BasicTextSR);
    OFCondition c;

    // Patient and General Study modules from the study's first file, in UTF-8.
    DcmFileFormat first;
    if ((c = load_head(s->files[0], first)).bad())
        return fail(err, errlen, SR_EINPUT, s->files[0], c);
    if ((c = first.getDataset()->convertToUTF8()).bad())
        return fail(err, errlen, SR_EINPUT, "converting the study's character set to UTF-8", c);
    if ((c = doc.readStudyData(*first.getDataset())).bad())
        return fail(err, errlen, SR_EINPUT, "reading the study's patient and study modules", c);
    if ((c = doc.createNewSeriesInStudy(s->study_uid)).bad())
        return fail(err, errlen, SR_EINPUT, "Study Instance UID", c);
    doc.setSpecificCharacterSetType(DSRTypes::CS_UTF8);
    doc.setManufacturer("dxhub");
    doc.setSeriesNumber("9901");
    doc.setInstanceNumber("1");
    if (s->series_description)
        doc.setSeriesDescription(s->series_description, OFFalse);
    OFString da, tm;
    split_dt(s->verified_at, da, tm);
    doc.setContentDate(da);
    doc.setContentTime(tm);

    // The evidence: every instance the report's digests cover.
    DSRSOPInstanceReferenceList &ev = doc.getCurrentRequestedProcedureEvidence();
    for (size_t i = 0; i < s->n_files; i++) {
        evidence e;
        int rc = read_evidence(s->files[i], e, err, errlen);
        if (rc < 0)
            return rc;
        if (e.study != s->study_uid) {
            snprintf(err, errlen, "%s belongs to another study than the report's", s->files[i]);
            return SR_EINPUT;
        }
        if ((c = ev.addItem(e.study, e.series, e.sop_class, e.sop)).bad())
            return fail(err, errlen, SR_EINPUT, s->files[i], c);
    }

    // The content tree (TID 2000): findings and impression as TEXT items.
    DSRDocumentTree &t = doc.getTree();
    if (!t.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container) ||
        t.getCurrentContentItem().setConceptName(DSRCodedEntryValue("18748-4", "LN", "Diagnostic Imaging Report"))
            .bad() ||
        t.addChildContentItem(DSRTypes::RT_contains, DSRTypes::VT_Container,
                              DSRCodedEntryValue("121070", "DCM", "Findings")).bad() ||
        t.addChildContentItem(DSRTypes::RT_contains, DSRTypes::VT_Text,
                              DSRCodedEntryValue("121071", "DCM", "Finding")).bad() ||
        t.getCurrentContentItem().setStringValue(s->findings, OFFalse).bad() || !t.goUp() ||
        t.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Container,
                         DSRCodedEntryValue("121072", "DCM", "Impressions")).bad() ||
        t.addChildContentItem(DSRTypes::RT_contains, DSRTypes::VT_Text,
                              DSRCodedEntryValue("121073", "DCM", "Impression")).bad() ||
        t.getCurrentContentItem().setStringValue(s->impression, OFFalse).bad()) {
        snprintf(err, errlen, "dcmsr refused the content tree of a Basic Text SR");
        return SR_EDCMTK;
    }

    // Signed means complete and verified by the signer, at the signing time.
    if ((c = doc.completeDocument()).bad())
        return fail(err, errlen, SR_EDCMTK, "completing the SR", c);
    if ((c = doc.verifyDocument(s->observer_name, s->organisation, s->verified_at, OFFalse)).bad())
        return fail(err, errlen, SR_EDCMTK, "Verifying Observer", c);

    DcmFileFormat ff;
    DcmDataset *ds = ff.getDataset();
    if ((c = doc.write(*ds)).bad())
        return fail(err, errlen, SR_EDCMTK, "writing the SR data set", c);
    // The report's own UIDs and times instead of fresh ones: exporting the
    // same report again gives the same instance, never a second copy.
    if ((c = ds->putAndInsertString(DCM_SOPInstanceUID, s->sop_uid)).bad() ||
        (c = ds->putAndInsertString(DCM_SeriesInstanceUID, s->series_uid)).bad() ||
        (c = ds->putAndInsertString(DCM_InstanceCreationDate, da.c_str())).bad() ||
        (c = ds->putAndInsertString(DCM_InstanceCreationTime, tm.c_str())).bad())
        return fail(err, errlen, SR_EDCMTK, "setting the SR's UIDs", c);
    if ((c = ff.saveFile(out_path, EXS_LittleEndianExplicit, EET_ExplicitLength, EGL_recalcGL, EPD_withoutPadding))
            .bad())
        return fail(err, errlen, SR_EDCMTK, out_path, c);
    return 0;
}

} // namespace

extern "C" int sr_write_basic_text(const sr_spec *s, const char *out_path, char *err, size_t errlen)
{
    pthread_once(&sr_once, sr_setup);
    try {
        return build(s, out_path, err, errlen);
    } catch (const std::bad_alloc &) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    } catch (...) {
        snprintf(err, errlen, "dcmsr failed unexpectedly");
        return SR_EDCMTK;
    }
}

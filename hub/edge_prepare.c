/* edge_prepare.c — turns a received or pushed DICOM file into what the
 * edge queues for the link: uncompressed pixel data compressed losslessly
 * (JPEG-LS by default: the best ratio of the lossless codecs measured on
 * CT/CR, see ARCHITECTURE.md), everything else deflated, already
 * compressed pixel data sent as it is; plus the identifiers and digest the
 * spool record needs. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "codecs/codecs.h"
#include "hub/digest.h"
#include "hub/edge.h"

/* Fill meta from the prepared file at path (UIDs, size, digest), and
 * patient_id (for the audit trail only: it stays at the clinic). */
static int describe(const char *path, spool_item *meta, char patient_id[65], char *err, size_t errlen)
{
    dcm_file *f = NULL;
    dcm_err de = {0};
    int rc = dcm_open(path, NULL, &f, &de);
    if (rc < 0) {
        snprintf(err, errlen, "%s", de.msg[0] ? de.msg : dcm_strerror(rc));
        return rc;
    }
    char        series[DCM_UID_MAX + 1];
    const char *why = dcm_uids_why(f, meta->sop_uid, meta->study_uid, series); /* what the hub would refuse */
    snprintf(meta->ts_uid, sizeof meta->ts_uid, "%s", dcm_file_ts(f)->uid);
    meta->dataset_offset = dcm_dataset_offset(f);
    if (dcm_top_str(f, DCM_TAG(0x0010, 0x0020), patient_id, 65) < 0)
        patient_id[0] = '\0';
    dcm_free(&f);
    if (why) {
        snprintf(err, errlen, "%s", why);
        return DCM_EVALUE;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -errno;
    }
    struct stat st;
    fstat(fd, &st);
    meta->size = (uint64_t)st.st_size;
    rc = digest_fd(fd, meta->dataset_offset, meta->digest);
    close(fd);
    if (rc < 0)
        snprintf(err, errlen, "digest: %s", strerror(-rc));
    return rc;
}

int edge_prepare(const char *in, const char *tmp_dir, const char *link_ts, char *out_path, size_t out_len,
                 spool_item *meta, char patient_id[65], char *err, size_t errlen)
{
    dcm_file *f = NULL;
    dcm_err de = {0};
    int rc = dcm_open(in, NULL, &f, &de);
    if (rc < 0) {
        snprintf(err, errlen, "%s", de.msg[0] ? de.msg : dcm_strerror(rc));
        return rc;
    }
    static unsigned counter;
    snprintf(out_path, out_len, "%s/prep-%d-%u.dcm", tmp_dir, (int)getpid(), __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
    int32_t px = dcm_find(f, -1, DCM_TAG_PIXEL_DATA);
    bool encapsulated = px >= 0 && (dcm_at(f, px)->flags & DCM_F_ENCAPS);
    rc = -1;
    if (!encapsulated && px >= 0 && link_ts && link_ts[0]) {
        rc = cdc_transcode_file(f, link_ts, NULL, out_path, &de);
        if (rc < 0)
            unlink(out_path); /* shape the codec cannot take: deflate instead */
    }
    if (rc < 0 && !encapsulated) {
        dcm_write_opts wo = {.ts_uid = DCM_TS_DEFLATED_LE};
        memset(&de, 0, sizeof de);
        rc = dcm_write_file(f, &wo, out_path, &de);
        if (rc < 0)
            unlink(out_path);
    }
    if (rc < 0) {
        /* Already compressed, or nothing else worked: the file as it is. */
        dcm_write_opts wo = {0};
        memset(&de, 0, sizeof de);
        rc = dcm_write_file(f, &wo, out_path, &de);
    }
    dcm_free(&f);
    if (rc < 0) {
        snprintf(err, errlen, "preparing for the link: %s", de.msg[0] ? de.msg : dcm_strerror(rc));
        unlink(out_path);
        return rc;
    }
    rc = describe(out_path, meta, patient_id, err, errlen);
    if (rc < 0)
        unlink(out_path);
    return rc;
}

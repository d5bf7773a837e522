/* report_study.c — a folder of DICOM files as a source of instance
 * digests, for `dxhub verify --study-dir`: indexed by SOP Instance UID
 * (parsing stops before anything after (0008,0018)); a file's digest —
 * SHA-256 of its bytes after the File Meta group, as the store computes
 * it (digest.h) — is read only when a report asks for that instance. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "codecs/codecs.h"
#include "hub/digest.h"
#include "hub/report.h"
#include "codecs/banned.h"

#define STUDY_DEPTH_MAX 8
#define STUDY_FILES_MAX 200000

typedef struct study_file {
    char    *sop;
    char    *path;
    uint64_t offset;   /* data set start */
    int      digested; /* 0 not yet, 1 digest valid, -errno failed */
    uint8_t  digest[32];
} study_file;

struct report_study {
    study_file *files;
    size_t      n, cap;
};

static int add_file(report_study *s, const char *path)
{
    dcm_parse_opts o = {.stop_at_tag = DCM_TAG(0x0008, 0x0019)};
    dcm_file *f = NULL;
    dcm_err de;
    memset(&de, 0, sizeof de);
    if (dcm_open(path, &o, &f, &de) < 0)
        return 0; /* not DICOM: not part of the study */
    char sop[65];
    dcm_top_str(f, DCM_TAG(0x0008, 0x0018), sop, sizeof sop);
    uint64_t off = dcm_dataset_offset(f);
    dcm_free(&f);
    if (!sop[0])
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        study_file *p = realloc(s->files, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        s->files = p;
        s->cap = cap;
    }
    study_file *sf = &s->files[s->n];
    memset(sf, 0, sizeof *sf);
    sf->sop = strdup(sop);
    sf->path = strdup(path);
    sf->offset = off;
    if (!sf->sop || !sf->path) {
        free(sf->sop);
        free(sf->path);
        return -ENOMEM;
    }
    s->n++;
    return 0;
}

static int walk(report_study *s, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[4200];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        struct stat sb;
        if (lstat(path, &sb) < 0) /* symlinks not followed: no loops */
            continue;
        if (S_ISDIR(sb.st_mode) && depth < STUDY_DEPTH_MAX)
            rc = walk(s, path, depth + 1);
        else if (S_ISREG(sb.st_mode))
            rc = s->n < STUDY_FILES_MAX ? add_file(s, path) : -E2BIG;
    }
    closedir(d);
    return rc;
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const study_file *)a)->sop, ((const study_file *)b)->sop);
}

int report_study_open(const char *dir, report_study **out, char *err, size_t errlen)
{
    report_study *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = walk(s, dir, 0);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", dir, rc == -E2BIG ? "more files than a study may have" : strerror(-rc));
        report_study_free(&s);
        return rc;
    }
    /* A SOP UID in two files: one of them answers (a study folder should not hold copies). */
    qsort(s->files, s->n, sizeof *s->files, cmp_file);
    *out = s;
    return 0;
}

int report_study_digest(void *ctx, const char *sop, uint8_t out[32])
{
    report_study *s = ctx;
    study_file key = {.sop = (char *)sop};
    study_file *f = s->n ? bsearch(&key, s->files, s->n, sizeof *s->files, cmp_file) : NULL;
    if (!f)
        return -ENOENT;
    if (f->digested == 0) {
        int fd = open(f->path, O_RDONLY | O_CLOEXEC);
        int rc = fd < 0 ? -errno : digest_fd(fd, f->offset, f->digest);
        if (fd >= 0)
            close(fd);
        f->digested = rc < 0 ? rc : 1;
    }
    if (f->digested < 0)
        return f->digested == -ENOENT ? -EIO : f->digested;
    memcpy(out, f->digest, 32);
    return 0;
}

const char *report_study_path(const report_study *s, const char *sop)
{
    study_file key = {.sop = (char *)sop};
    const study_file *f = s && s->n ? bsearch(&key, s->files, s->n, sizeof *s->files, cmp_file) : NULL;
    return f ? f->path : NULL;
}

size_t report_study_count(const report_study *s)
{
    return s ? s->n : 0;
}

void report_study_free(report_study **sp)
{
    if (!sp || !*sp)
        return;
    for (size_t i = 0; i < (*sp)->n; i++) {
        free((*sp)->files[i].sop);
        free((*sp)->files[i].path);
    }
    free((*sp)->files);
    free(*sp);
    *sp = NULL;
}

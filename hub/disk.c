/* disk.c — see disk.h. */
#include <errno.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include "hub/disk.h"
#include "codecs/banned.h"

int disk_room(const char *path, uint64_t *free_bytes, uint64_t *size_bytes)
{
    struct statvfs v;
    if (statvfs(path, &v) != 0)
        return -errno;
    if (free_bytes)
        *free_bytes = (uint64_t)v.f_bavail * v.f_frsize; /* f_bfree counts root's reserve too */
    if (size_bytes)
        *size_bytes = (uint64_t)v.f_blocks * v.f_frsize;
    return 0;
}

bool disk_full_error(const char *path, int err, uint64_t need)
{
    if (err == ENOSPC || err == EDQUOT)
        return true;
    if (err != EIO && err != EFBIG)
        return false;
    uint64_t room;
    return disk_room(path, &room, NULL) == 0 && room < need + DISK_MARGIN;
}

void disk_full_reason(const char *path, char *buf, size_t len)
{
    uint64_t room;
    if (disk_room(path, &room, NULL) == 0)
        snprintf(buf, len, "disk full: %llu MiB free on the file system holding %s", (unsigned long long)(room >> 20),
                 path);
    else
        snprintf(buf, len, "disk full on the file system holding %s", path);
}

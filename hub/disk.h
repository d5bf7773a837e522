/* disk.h — is a failed write the disk's being full?
 *
 * A full disk is an operating condition, like a full LMDB map: the sender
 * is told to try again later (DICOM 0xA700), nothing is given up, and the
 * operator reads "disk full" with the folder and what is free, not a bare
 * "Input/output error".  The errno alone does not tell: LMDB reports a
 * short write (the disk filled part way through) as EIO, and a file that
 * failed is deleted before anyone asks, giving its space back.  So a
 * failed write counts as a full disk when its errno says so (ENOSPC,
 * EDQUOT), or when the file system has less room than the write needed
 * plus a margin.  Hub-private. */
#ifndef DXHUB_DISK_H
#define DXHUB_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DISK_MARGIN ((uint64_t)64 << 20) /* room a write may need beyond its bytes (metadata, LMDB's pages) */

/* Bytes an unprivileged writer may still use on the file system holding
 * path, and its size; -errno when it cannot be asked. */
int disk_room(const char *path, uint64_t *free_bytes, uint64_t *size_bytes);

/* err: the failed write's errno (positive; LMDB's errors are errno values
 * or its own codes, which never mean a full disk); need: the bytes it was
 * writing (0: unknown).  True when it failed for want of room on the file
 * system holding path. */
bool disk_full_error(const char *path, int err, uint64_t need);

/* "disk full: 3 MiB free on the file system holding DIR" into buf. */
void disk_full_reason(const char *path, char *buf, size_t len);

#endif

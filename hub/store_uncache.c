/* store_uncache.c — instance bytes leave the page cache once durable.
 *
 * A stored instance's bytes are written once and rarely read back soon,
 * yet each commit's pwrite fills page-cache pages: tens of MB per second
 * of ingest that push hotter pages (the B-tree, studies being read) out,
 * and whose first touch can cost far more than the copy itself (on this
 * project's virtual test machine, 0.1-2.6 ms per MiB depending on what
 * the memory held before: the kernel's copy into the page cache was 6-7%
 * of the hub's CPU in one DX ingest run and 23-32% in another).  So the
 * committer notes the page runs holding the instance bytes it wrote
 * (only those: the B-tree's pages stay) and, after the commit's flush,
 * drops them; the next commit's pages are the ones just freed.  Pages a
 * reader has mapped are kept by the kernel.  Durability is untouched:
 * only clean pages of committed data are dropped, and a failure to drop
 * is harmless. */
#include <fcntl.h>
#include "hub/store_private.h"

/* LMDB's page header, part of its on-disk format: the page number, two
 * bytes of padding, the flags; a value larger than half a page lives in
 * a run of overflow pages that this header opens. */
#define LMDB_PAGE_HEADER 16
#define LMDB_P_OVERFLOW  0x04

void store_uncache_begin(store *s)
{
    s->uncache_n = 0;
}

void store_uncache_note(store *s, const void *value, size_t len)
{
    if (!s->page_size || len < s->page_size) /* small values share a leaf page */
        return;
    const uint8_t *hdr = (const uint8_t *)value - LMDB_PAGE_HEADER;
    uint64_t pgno;
    uint16_t flags;
    memcpy(&pgno, hdr, sizeof pgno);
    memcpy(&flags, hdr + 10, sizeof flags);
    if (!(flags & LMDB_P_OVERFLOW) || pgno == 0 || pgno >= s->map_size / s->page_size)
        return; /* not the layout expected: keep the pages */
    uint64_t off = pgno * s->page_size;
    uint64_t n = (LMDB_PAGE_HEADER + len + s->page_size - 1) / s->page_size * s->page_size;
    struct store_uncache_run *last = s->uncache_n ? &s->uncache[s->uncache_n - 1] : NULL;
    if (last && last->off + last->len == off) {
        last->len += n; /* an instance's chunks usually follow each other */
        return;
    }
    if (s->uncache_n < sizeof s->uncache / sizeof s->uncache[0])
        s->uncache[s->uncache_n++] = (struct store_uncache_run){off, n};
}

void store_uncache_committed(store *s)
{
    for (unsigned i = 0; i < s->uncache_n; i++)
        posix_fadvise(s->fd, (off_t)s->uncache[i].off, (off_t)s->uncache[i].len, POSIX_FADV_DONTNEED);
    s->uncache_n = 0;
}

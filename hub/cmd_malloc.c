/* cmd_malloc.c — the allocator settings of the roles that store (serve,
 * edge). */
#include <malloc.h>
#include "hub/cmd.h"

void dx_tune_malloc_for_store(void)
{
    /* LMDB takes each written blob chunk's pages from malloc (1 MiB runs):
     * glibc's defaults map and unmap such runs, or trim them off the heap,
     * every transaction, so every page of every instance faulted in anew
     * (a third of a 10 MB radiograph's ingest).  Keep runs up to 32 MiB in
     * the heap and up to 128 MiB of freed heap for the next transaction:
     * bounded, and reused at once. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
}

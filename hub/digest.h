/* digest.h — the content digest of an instance: SHA-256 of the bytes of
 * its data set as stored (everything after the File Meta group, still
 * deflated for the deflated syntax).  The edge computes it before sending,
 * the hub before storing; the meta header each side writes does not count. */
#ifndef DXHUB_DIGEST_H
#define DXHUB_DIGEST_H

#include <stddef.h>
#include <stdint.h>

/* Incremental digest for bytes that arrive in pieces. */
typedef struct digest_ctx digest_ctx;
digest_ctx *digest_new(void);                       /* NULL on allocation failure */
void        digest_update(digest_ctx *d, const void *p, size_t n);
void        digest_final(digest_ctx **d, uint8_t out[32]); /* frees, NULLs *d */

/* Digest of fd's bytes from offset to end of file.  digest_own_fd maps
 * the file instead of copying it: only for files no other process can
 * truncate meanwhile (the hub's own spool files). */
int  digest_fd(int fd, uint64_t offset, uint8_t out[32]);
int  digest_own_fd(int fd, uint64_t offset, uint8_t out[32]);
void digest_hex(const uint8_t d[32], char out[65]);
int  digest_from_hex(const char *hex, uint8_t out[32]); /* 0 or -1 */

#endif

/* lmdb_stamp.h — what an LMDB environment of dxhub holds, stamped in it.
 *
 * A hub's store, an edge's spool and a workstation's cache are all LMDB
 * environments, and their records are C structs written as they are.
 * Pointed at the wrong folder (`dxhub serve --data` on an edge's spool),
 * or run by a dxhub whose records are laid out differently, a program
 * would add its databases beside the others' and read their records as
 * its own.  So each environment carries, in a database of its own
 * (dxhub-format), which kind it is and a fingerprint of the record
 * layouts it was written with;
 * an environment of another kind or layout is refused before anything in
 * it is read or written. */
#ifndef DXHUB_LMDB_STAMP_H
#define DXHUB_LMDB_STAMP_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lmdb_stamp {
    const char        *kind;   /* "hub store", "edge spool", "workstation cache" */
    uint32_t           layout; /* lmdb_stamp_layout of the kind's record sizes and version */
    const char *const *dbs;    /* every named database the kind makes, NULL-ended */
} lmdb_stamp;

/* A fingerprint of the sizes (and record version) a kind's records have:
 * a field added or widened changes it even if nobody bumps the version. */
uint32_t lmdb_stamp_layout(const size_t *sizes, size_t n);

/* In a write transaction, before the kind's databases are opened: 0 when
 * the environment is of this kind and layout (stamping a new one, or one
 * made before stamps that holds only this kind's databases); -EINVAL
 * (another kind, or databases this kind does not make) or -EPROTO
 * (another layout) with the reason naming dir in err; or an LMDB error. */
int lmdb_stamp_check(MDB_txn *txn, const lmdb_stamp *want, const char *dir, char *err, size_t errlen);

#endif

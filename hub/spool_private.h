/* spool_private.h — what the spool's files share (the LMDB handles, the
 * inbox record's header, the audit trail's writer).  Only hub/spool*.c
 * include it. */
#ifndef DXHUB_SPOOL_PRIVATE_H
#define DXHUB_SPOOL_PRIVATE_H

#include <lmdb.h>
#include <stdint.h>
#include "hub/spool.h"

struct spool {
    char    *dir;
    MDB_env *env;
    MDB_dbi  item, data, inbox, state, study, alerts, /* alerts: alert id → what became of it here (JSON) */
             patient, /* study UID → its patient's ID, as long as `study` keeps the study */
             audit;   /* sequence (8 bytes BE) → one audit record's JSON line (audit_record.h) */
};

/* An inbox record: this header, then the bytes the hub sent. */
typedef struct inbox_hdr {
    char    kind[16];
    int64_t received_ms;
} inbox_hdr;

/* An LMDB code as a negative errno (-ENOBUFS: the spool's map is full). */
int  spool_lerr(int rc);
void spool_seq_key(uint8_t k[8], uint64_t seq);
uint64_t spool_seq_of(const MDB_val *k);  /* 0 for a key that is not a sequence */
uint64_t spool_last_seq(MDB_cursor *c);  /* the last key of c's database, 0 when empty */
/* fn(ctx, key, value) for each record of dbi in key order, from the first
 * key at or after from (NULL: the first), in one read transaction, until fn
 * returns non-zero.  0, or a negative errno (spool_lerr). */
int spool_each(spool *s, MDB_dbi dbi, const MDB_val *from,
               int (*fn)(void *ctx, const MDB_val *k, const MDB_val *v), void *ctx);

/* Appends r to the audit trail in txn (spool_audit.c).  A record that
 * names no patient takes its study's, when the spool knows it.  An LMDB
 * code: the caller's transaction fails with it, so nothing happens
 * unrecorded. */
int spool_txn_audit(spool *s, MDB_txn *txn, const spool_audit_rec *r);
/* The patient of study_uid as txn sees the spool, into out[65] ("" if unknown). */
void spool_txn_patient(spool *s, MDB_txn *txn, const char *study_uid, char out[65]);

#endif

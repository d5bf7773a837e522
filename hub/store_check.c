/* store_check.c — `dxhub check`: every stored instance's bytes hashed
 * again and compared with the digest recorded when it arrived. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/digest.h"
#include "hub/store_private.h"

typedef struct sop_list {
    store_instance *in;
    size_t          n, cap;
} sop_list;

static int collect(MDB_txn *txn, MDB_dbi dbi, sop_list *l)
{
    MDB_cursor *c;
    if (mdb_cursor_open(txn, dbi, &c))
        return -EIO;
    MDB_val k, v;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 256;
            store_instance *q = realloc(l->in, l->cap * sizeof *q);
            if (!q) {
                mdb_cursor_close(c);
                return -ENOMEM;
            }
            l->in = q;
        }
        inst_rec r;
        memset(&r, 0, sizeof r);
        memcpy(&r, v.mv_data, v.mv_size < sizeof r ? v.mv_size : sizeof r);
        l->in[l->n++] = r.in;
    }
    mdb_cursor_close(c);
    return 0;
}

int store_check(store *s, int (*cb)(void *ctx, const store_instance *in, int ok, const char *why), void *ctx)
{
    MDB_txn *txn;
    int rc = store_lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (rc)
        return rc;
    sop_list l = {0};
    rc = collect(txn, s->inst, &l);
    if (!rc)
        rc = collect(txn, s->conflict, &l);
    mdb_txn_abort(txn);
    if (rc) {
        free(l.in);
        return rc;
    }
    uint8_t *buf = malloc(STORE_CHUNK);
    int bad = 0;
    for (size_t i = 0; buf && i < l.n; i++) {
        const store_instance *in = &l.in[i];
        digest_ctx *d = digest_new();
        uint64_t off = in->dataset_offset;
        long k = 0;
        while (d && (k = store_read_instance(s, in, off, buf, STORE_CHUNK)) > 0) {
            digest_update(d, buf, (size_t)k);
            off += (uint64_t)k;
        }
        uint8_t got[32] = {0};
        if (d)
            digest_final(&d, got);
        const char *why = k < 0 ? "stored bytes missing or unreadable"
                          : off != in->size ? "stored bytes shorter than recorded"
                          : memcmp(got, in->digest, 32) ? "digest does not match" : NULL;
        bad += why != NULL;
        if (cb && cb(ctx, in, why == NULL, why))
            break;
    }
    free(buf);
    free(l.in);
    return bad;
}

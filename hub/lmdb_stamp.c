/* lmdb_stamp.c — the kind and record layout stamped in an environment's
 * main database (lmdb_stamp.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "hub/errbuf.h"
#include "hub/lmdb_stamp.h"

/* A named database of its own (not a key of the main database), so that
 * mdb_dump -a and mdb_load carry it along with the rest. */
#define STAMP_DB  "dxhub-format"
#define STAMP_KEY "stamp"

uint32_t lmdb_stamp_layout(const size_t *sizes, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a over the sizes, 8 bytes each, little end first */
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 8; b++) {
            h ^= (uint8_t)((uint64_t)sizes[i] >> (8 * b));
            h *= 16777619u;
        }
    return h;
}

static bool listed(const char *const *dbs, const MDB_val *name)
{
    if (name->mv_size == sizeof STAMP_DB - 1 && !memcmp(name->mv_data, STAMP_DB, name->mv_size))
        return true;
    for (; dbs && *dbs; dbs++)
        if (strlen(*dbs) == name->mv_size && !memcmp(*dbs, name->mv_data, name->mv_size))
            return true;
    return false;
}

/* Appends name (printable bytes only) to list, comma-separated, while it fits. */
static void add_name(char *list, size_t cap, const MDB_val *name)
{
    size_t at = strlen(list);
    if (at + name->mv_size + 3 >= cap)
        return;
    if (at)
        list[at++] = ',', list[at++] = ' ';
    for (size_t i = 0; i < name->mv_size; i++) {
        char ch = ((const char *)name->mv_data)[i];
        list[at++] = ch >= 0x20 && ch < 0x7f ? ch : '?';
    }
    list[at] = '\0';
}

static int refuse_stamped(const lmdb_stamp *want, const MDB_val *v, const char *dir, char *err, size_t errlen)
{
    char have[128];
    size_t n = v->mv_size < sizeof have - 1 ? v->mv_size : sizeof have - 1;
    for (size_t i = 0; i < n; i++) {
        char ch = ((const char *)v->mv_data)[i];
        have[i] = ch >= 0x20 && ch < 0x7f ? ch : '?';
    }
    have[n] = '\0';
    char *layout = strstr(have, " layout ");
    size_t kl = strlen(want->kind);
    if (!have[0])
        return errbuf_fail(-EINVAL, err, errlen, "%s has an empty dxhub-format stamp: not opened", dir);
    if (!layout || (size_t)(layout - have) != kl || memcmp(have, want->kind, kl)) {
        if (layout)
            *layout = '\0';
        return errbuf_fail(-EINVAL, err, errlen, "%s holds dxhub's %s, not its %s: is it the right folder?", dir, have,
                           want->kind);
    }
    return errbuf_fail(-EPROTO, err, errlen,
                       "%s was written by a dxhub whose %s records are laid out differently (%s, this dxhub's is "
                       "%08x): it is not opened rather than misread; run the dxhub that wrote it",
                       dir, want->kind, layout + 1, want->layout);
}

int lmdb_stamp_check(MDB_txn *txn, const lmdb_stamp *want, const char *dir, char *err, size_t errlen)
{
    char stamp[128];
    int n = snprintf(stamp, sizeof stamp, "%s layout %08x", want->kind, want->layout);
    MDB_val k = {sizeof STAMP_KEY - 1, STAMP_KEY}, v;
    MDB_dbi stamp_db, main_db;
    int rc = mdb_dbi_open(txn, STAMP_DB, 0, &stamp_db);
    if (rc == 0) {
        if ((rc = mdb_get(txn, stamp_db, &k, &v)) == MDB_NOTFOUND)
            v = (MDB_val){0, ""};
        else if (rc)
            return rc;
        return v.mv_size == (size_t)n && !memcmp(v.mv_data, stamp, (size_t)n)
                   ? 0
                   : refuse_stamped(want, &v, dir, err, errlen);
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = mdb_dbi_open(txn, NULL, 0, &main_db)))
        return rc;
    /* Unstamped: new, or made before stamps.  Its named databases are the
     * main database's keys; any this kind does not make means it is not
     * this kind's. */
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, main_db, &cur)))
        return rc;
    char foreign[160] = "";
    MDB_val name, val;
    for (rc = mdb_cursor_get(cur, &name, &val, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &name, &val, MDB_NEXT))
        if (!listed(want->dbs, &name))
            add_name(foreign, sizeof foreign, &name);
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return rc;
    if (foreign[0])
        return errbuf_fail(-EINVAL, err, errlen,
                           "%s holds LMDB databases a dxhub %s does not make (%s): it is another kind's folder or "
                           "another program's, and is left as it is",
                           dir, want->kind, foreign);
    MDB_val sv = {(size_t)n, stamp};
    if ((rc = mdb_dbi_open(txn, STAMP_DB, MDB_CREATE, &stamp_db)))
        return rc;
    return mdb_put(txn, stamp_db, &k, &sv, 0);
}

/* store_outside.c — telling commits by other processes from this one's.
 *
 * A lookup trusts what it verified of a stored report (its signature
 * verdict, its instance records) until something could have changed it.
 * This hub's own writes are seen through the caches' keys; a commit by
 * another process writing the same LMDB environment (an administrator's
 * tool, a second program pointed at the data folder) is seen here.  Every
 * write transaction of this process commits through store_txn_commit,
 * which records its id; a commit id up to the environment's last that is
 * not recorded is someone else's.  Each time one is seen outside_gen
 * grows, and store_instance_gen and the report views carry it, so every
 * verdict and kept answer is made again from the bytes.
 *
 * This process's commit is visible in the environment a moment before its
 * id is recorded (LMDB lets go of its writer lock inside mdb_txn_commit,
 * and another of its threads may begin and commit meanwhile), so an id
 * with a commit of this process under way (`flying`, counted per id) is
 * this process's too: no other process can take that id while the commit
 * holds the lock, nor write and sync a commit of its own in the moment
 * between LMDB letting go and the count going down. */
#include "hub/store_private.h"
#include "codecs/banned.h"

static uint64_t last_txnid(store *s)
{
    MDB_envinfo info;
    return mdb_env_info(s->env, &info) ? 0 : (uint64_t)info.me_last_txnid;
}

void store_outside_init(store *s)
{
    atomic_store(&s->own_last, last_txnid(s));
}

int store_txn_commit(store *s, MDB_txn *txn)
{
    /* A write transaction's id is one past the last commit (it holds the
     * writer lock: nobody commits meanwhile); a read transaction's is the
     * snapshot's, and ending one records nothing. */
    uint64_t id = (uint64_t)mdb_txn_id(txn);
    if (id <= last_txnid(s))
        return mdb_txn_commit(txn);
    _Atomic unsigned *flying = &s->own_flying[id % STORE_OWN_IDS];
    atomic_fetch_add(flying, 1);
    int rc = mdb_txn_commit(txn);
    /* A transaction that wrote nothing commits without taking its id (the
     * next one, anyone's, gets it): recorded only when the id was taken. */
    if (rc == 0 && last_txnid(s) >= id) {
        atomic_store(&s->own_ids[id % STORE_OWN_IDS], id);
        uint64_t before = id - 1; /* the usual case: every earlier commit judged */
        atomic_compare_exchange_strong(&s->own_last, &before, id);
    }
    atomic_fetch_sub(flying, 1);
    return rc;
}

uint64_t store_outside_gen(store *s)
{
    uint64_t last = last_txnid(s);
    if (last <= atomic_load(&s->own_last))
        return atomic_load(&s->outside_gen);
    pthread_mutex_lock(&s->outside_mu);
    uint64_t from = atomic_load(&s->own_last);
    /* read after `last`: a commit of ours up to it is recorded, or its
     * count is still up (the record is made before the count goes down) */
    bool others = last > from && last - from > STORE_OWN_IDS; /* too many to tell: counted as others' */
    for (uint64_t id = from + 1; id <= last && !others; id++)
        others = atomic_load(&s->own_flying[id % STORE_OWN_IDS]) == 0 &&
                 atomic_load(&s->own_ids[id % STORE_OWN_IDS]) != id;
    if (others)
        atomic_fetch_add(&s->outside_gen, 1);
    while (from < last && !atomic_compare_exchange_weak(&s->own_last, &from, last))
        ;
    pthread_mutex_unlock(&s->outside_mu);
    return atomic_load(&s->outside_gen);
}

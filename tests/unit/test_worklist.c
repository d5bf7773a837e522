/* test_worklist.c — the worklist on a real LMDB environment: scripted
 * scenarios, then property tests over thousands of random interleavings
 * of arrivals, offers, claims, heartbeats, lapsed leases, releases,
 * drafts, reviews, returns, signatures, addenda, cancellations and
 * restarts, checking the invariants after every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "worklist/worklist.h"

typedef struct env {
    char     dir[64];
    MDB_env *env;
    wl      *w;
} env;

static void env_open(env *e)
{
    assert_int_equal(mdb_env_create(&e->env), 0);
    mdb_env_set_maxdbs(e->env, 8);
    mdb_env_set_mapsize(e->env, 256u << 20);
    assert_int_equal(mdb_env_open(e->env, e->dir, MDB_NOSYNC, 0600), 0); /* tests: durability is LMDB's job */
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    wl_config cfg = {.lease_ms = 60000, .offer_ms = 30000};
    assert_int_equal(wl_open(txn, &cfg, &e->w), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

static void env_close(env *e)
{
    wl_close(&e->w);
    mdb_env_close(e->env);
}

static void env_new(env *e)
{
    snprintf(e->dir, sizeof e->dir, "/tmp/dxhub-wl-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    env_open(e);
}

static void env_destroy(env *e)
{
    env_close(e);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
}

static MDB_txn *begin(env *e)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    return txn;
}

static const wl_reader resident = {"res1", "CT,DX,CR", "*", 1 << WL_IMAGING, WL_RESIDENT, 3};
static const wl_reader attending = {"att1", "*", "*", (1 << WL_IMAGING) | (1 << WL_ECG), WL_ATTENDING, 3};

static wl_task add(env *e, MDB_txn *txn, const char *study, wl_kind kind, const char *mod, wl_priority p,
                   int referral, int64_t now)
{
    wl_task_spec s = {.study_uid = study, .modality = mod, .facility = "clinic1", .kind = kind,
                      .clinic_priority = p, .referral = referral};
    wl_task t;
    assert_int_equal(wl_add(e->w, txn, &s, now, &t), 0);
    return t;
}

static void test_stat_ecg_is_offered_before_routine_ct_backlog(void **state)
{
    (void)state;
    env e;
    env_new(&e);
    MDB_txn *txn = begin(&e);
    char uid[64];
    for (int i = 0; i < 200; i++) {
        snprintf(uid, sizeof uid, "1.2.3.%d", i);
        add(&e, txn, uid, WL_IMAGING, "CT", WL_ROUTINE, 0, 1000 + i);
    }
    wl_task stat = add(&e, txn, "9.9.9", WL_ECG, "ECG", WL_STAT, 0, 5000);
    wl_task t;
    assert_int_equal(wl_offer(e.w, txn, &attending, 6000, &t), 0);
    assert_int_equal(t.id, stat.id);
    assert_int_equal(t.state, WL_OFFERED);
    mdb_txn_commit(txn);
    env_destroy(&e);
}

/* The wall clock went back an hour after a task was claimed and another
 * offered (an NTP step): the reader whose workstation died must not hold
 * the claimed task for an hour more, nor the offer outlive its 30 s. */
static void test_holds_set_before_the_clock_went_back_keep_only_their_length(void **state)
{
    (void)state;
    env e;
    env_new(&e);
    MDB_txn *txn = begin(&e);
    const int64_t before = 10 * 3600 * 1000LL, back = 3600 * 1000LL;
    wl_task a = add(&e, txn, "1.1", WL_IMAGING, "CT", WL_STAT, 0, before);
    wl_task b = add(&e, txn, "1.2", WL_IMAGING, "CT", WL_ROUTINE, 0, before);
    wl_task t;
    assert_int_equal(wl_claim(e.w, txn, a.id, &attending, before, &t), 0);
    assert_int_equal(t.holder_until_ms, before + 60000);
    assert_int_equal(wl_offer(e.w, txn, &attending, before, &t), 0);
    assert_int_equal(t.id, b.id);
    /* an hour earlier by the clock, and a tick */
    int64_t now = before - back + 1000;
    assert_int_equal(wl_tick(e.w, txn, now), 0);
    assert_int_equal(wl_get(e.w, txn, a.id, &t), 0);
    assert_int_equal(t.state, WL_CLAIMED); /* still the reader's: its lease is not cut short */
    assert_int_equal(t.holder_until_ms, now + 60000);
    assert_int_equal(wl_get(e.w, txn, b.id, &t), 0);
    assert_int_equal(t.state, WL_OFFERED);
    assert_int_equal(t.holder_until_ms, now + 30000);
    /* the history says why */
    assert_true(t.events >= 2);
    /* no heartbeat: both come back within their length, not an hour later */
    assert_true(wl_tick(e.w, txn, now + 60001) >= 2);
    assert_int_equal(wl_get(e.w, txn, a.id, &t), 0);
    assert_int_equal(t.state, WL_QUEUED);
    assert_int_equal(wl_get(e.w, txn, b.id, &t), 0);
    assert_int_equal(t.state, WL_QUEUED);
    /* a lease within its length is left alone */
    assert_int_equal(wl_claim(e.w, txn, a.id, &attending, now + 70000, &t), 0);
    assert_int_equal(wl_tick(e.w, txn, now + 70000 + 5000), 0);
    assert_int_equal(wl_get(e.w, txn, a.id, &t), 0);
    assert_int_equal(t.holder_until_ms, now + 70000 + 60000);
    mdb_txn_commit(txn);
    env_destroy(&e);
}

static void test_referral_comes_before_routine_and_due_times_follow_priority(void **state)
{
    (void)state;
    env e;
    env_new(&e);
    MDB_txn *txn = begin(&e);
    wl_task a = add(&e, txn, "1.1", WL_IMAGING, "DX", WL_ROUTINE, 0, 1000);
    wl_task b = add(&e, txn, "1.2", WL_IMAGING, "DX", WL_ROUTINE, 1, 2000);
    assert_int_equal(b.priority, WL_URGENT);
    assert_int_equal(b.due_ms, 2000 + 30 * 60 * 1000);
    assert_int_equal(a.due_ms, 1000 + 24 * 3600 * 1000LL);
    wl_task t;
    assert_int_equal(wl_offer(e.w, txn, &resident, 3000, &t), 0);
    assert_int_equal(t.id, b.id);
    mdb_txn_commit(txn);
    env_destroy(&e);
}

static void test_lapsed_lease_returns_task_to_front_for_another_reader(void **state)
{
    (void)state;
    env e;
    env_new(&e);
    MDB_txn *txn = begin(&e);
    wl_task a = add(&e, txn, "1.1", WL_IMAGING, "CT", WL_ROUTINE, 0, 1000);
    add(&e, txn, "1.2", WL_IMAGING, "CT", WL_ROUTINE, 0, 1001);
    wl_task t;
    assert_int_equal(wl_claim(e.w, txn, a.id, &attending, 2000, &t), 0);
    /* another reader cannot take it */
    wl_reader other = attending;
    snprintf(other.id, sizeof other.id, "att2");
    assert_int_equal(wl_claim(e.w, txn, a.id, &other, 2100, &t), WL_ENOTYOURS);
    assert_int_equal(wl_heartbeat(e.w, txn, "att1", 50000), 1);
    assert_int_equal(wl_tick(e.w, txn, 100000), 0); /* lease extended to 110000 */
    assert_true(wl_tick(e.w, txn, 120000) >= 1);
    assert_int_equal(wl_get(e.w, txn, a.id, &t), 0);
    assert_int_equal(t.state, WL_QUEUED);
    assert_int_equal(t.front, 1);
    assert_int_equal(wl_offer(e.w, txn, &other, 120001, &t), 0);
    assert_int_equal(t.id, a.id); /* front of its priority, ahead of 1.2 */
    mdb_txn_commit(txn);
    env_destroy(&e);
}

static void test_resident_draft_goes_to_attending_review_and_can_return(void **state)
{
    (void)state;
    env e;
    env_new(&e);
    MDB_txn *txn = begin(&e);
    wl_task a = add(&e, txn, "1.1", WL_IMAGING, "DX", WL_ROUTINE, 0, 1000);
    wl_task t;
    assert_int_equal(wl_claim(e.w, txn, a.id, &resident, 2000, &t), 0);
    assert_int_equal(wl_sign(e.w, txn, a.id, &resident, "r1", 2500, &t), WL_EQUALIFY);
    assert_int_equal(wl_draft(e.w, txn, a.id, &resident, "r1", 3000, &t), 0);
    assert_int_equal(t.state, WL_REVIEW);
    /* the resident is never offered his own review */
    assert_int_equal(wl_offer(e.w, txn, &resident, 3100, &t), WL_EEMPTY);
    assert_int_equal(wl_offer(e.w, txn, &attending, 3200, &t), 0);
    assert_int_equal(t.id, a.id);
    assert_int_equal(wl_claim(e.w, txn, a.id, &attending, 3300, &t), 0);
    assert_int_equal(wl_return(e.w, txn, a.id, &attending, "impression unclear", 3400), 0);
    assert_int_equal(wl_get(e.w, txn, a.id, &t), 0);
    assert_int_equal(t.state, WL_CLAIMED);
    assert_string_equal(t.holder, "res1");
    assert_int_equal(wl_draft(e.w, txn, a.id, &resident, "r2", 3500, &t), 0);
    assert_int_equal(wl_claim(e.w, txn, a.id, &attending, 3600, &t), 0);
    assert_int_equal(wl_sign(e.w, txn, a.id, &attending, "r2", 3700, &t), 0);
    assert_int_equal(t.state, WL_SIGNED);
    /* addendum: a new version, the signed one unchanged */
    wl_task add2;
    assert_int_equal(wl_addendum(e.w, txn, a.id, &attending, 4000, &add2), 0);
    assert_int_equal(add2.version, 2);
    assert_int_equal(add2.supersedes, a.id);
    assert_int_equal(wl_get(e.w, txn, a.id, &t), 0);
    assert_int_equal(t.state, WL_SIGNED);
    assert_true(wl_history(e.w, txn, a.id, NULL, NULL) >= 8);
    mdb_txn_commit(txn);
    env_destroy(&e);
}

static void test_routine_task_near_due_time_is_escalated(void **state)
{
    (void)state;
    env e;
    env_new(&e);
    MDB_txn *txn = begin(&e);
    wl_task a = add(&e, txn, "1.1", WL_IMAGING, "DX", WL_ROUTINE, 0, 0);
    assert_int_equal(wl_tick(e.w, txn, 3600 * 1000), 0);
    assert_int_equal(wl_tick(e.w, txn, 20 * 3600 * 1000LL), 1); /* within the last fifth */
    wl_task t;
    wl_get(e.w, txn, a.id, &t);
    assert_int_equal(t.priority, WL_URGENT);
    assert_int_equal(t.escalated, 1);
    mdb_txn_commit(txn);
    env_destroy(&e);
}

/* --- property tests ----------------------------------------------------------- */

#define N_READERS 6
static wl_reader readers[N_READERS];

static void make_readers(void)
{
    readers[0] = (wl_reader){"res1", "CT,DX,CR", "*", 1 << WL_IMAGING, WL_RESIDENT, 2};
    readers[1] = (wl_reader){"res2", "US,DX", "clinic1,clinic2", 1 << WL_IMAGING, WL_RESIDENT, 1};
    readers[2] = (wl_reader){"att1", "*", "*", (1 << WL_IMAGING) | (1 << WL_ECG), WL_ATTENDING, 3};
    readers[3] = (wl_reader){"att2", "CT,MR", "*", 1 << WL_IMAGING, WL_ATTENDING, 2};
    readers[4] = (wl_reader){"ecg1", "ECG", "*", 1 << WL_ECG, WL_ATTENDING, 2};
    readers[5] = (wl_reader){"chief", "*", "clinic3", (1 << WL_IMAGING) | (1 << WL_ECG), WL_CHIEF, 1};
}

typedef struct check_ctx {
    env     *e;
    MDB_txn *txn;
    uint64_t n;
    int      held_per_reader[N_READERS];
} check_ctx;

static int reader_index(const char *id)
{
    for (int i = 0; i < N_READERS; i++)
        if (!strcmp(readers[i].id, id))
            return i;
    return -1;
}

typedef struct hist_ctx {
    uint8_t last_to;
    int     n;
} hist_ctx;

static int hist_cb(void *ctx, const wl_event *ev)
{
    hist_ctx *h = ctx;
    h->last_to = ev->to;
    h->n++;
    return 0;
}

static int check_task(void *ctx, const wl_task *t)
{
    check_ctx *c = ctx;
    c->n++;
    bool held = t->state == WL_OFFERED || t->state == WL_CLAIMED || t->state == WL_DRAFTED;
    if (held) {
        int r = reader_index(t->holder);
        assert_true(r >= 0);
        c->held_per_reader[r]++;
    } else {
        assert_string_equal(t->holder, "");
    }
    hist_ctx h = {0};
    wl_history(c->e->w, c->txn, t->id, hist_cb, &h);
    assert_int_equal(h.n, (int)t->events); /* every state change recorded */
    assert_true(h.n >= 1);
    assert_int_equal(h.last_to, t->state);
    return 0;
}

static int count_cb(void *ctx, const wl_task *t)
{
    (void)t;
    (*(int *)ctx)++;
    return 0;
}

static int queue_state_cb(void *ctx, const wl_task *t)
{
    if (t->state == WL_QUEUED || t->state == WL_REVIEW)
        (*(int *)ctx)++;
    return 0;
}

/* The worklist's own count of a reader's held tasks (wl_meta "held:ID"). */
static int held_counter(MDB_txn *txn, const char *reader)
{
    MDB_dbi meta;
    assert_int_equal(mdb_dbi_open(txn, "wl_meta", 0, &meta), 0);
    char key[WL_ID_MAX + 8];
    int kl = snprintf(key, sizeof key, "held:%s", reader);
    MDB_val k = {(size_t)kl, key}, v;
    uint32_t n = 0;
    if (mdb_get(txn, meta, &k, &v) == 0) {
        assert_int_equal(v.mv_size, sizeof n);
        memcpy(&n, v.mv_data, sizeof n);
    }
    return (int)n;
}

static void check_invariants(env *e, MDB_txn *txn, uint64_t created)
{
    check_ctx c = {.e = e, .txn = txn};
    wl_list(e->w, txn, check_task, &c);
    assert_int_equal(c.n, created); /* no task lost */
    for (int r = 0; r < N_READERS; r++) {
        int held = 0;
        wl_held_by(e->w, txn, readers[r].id, count_cb, &held);
        assert_int_equal(held, c.held_per_reader[r]); /* index agrees: none held twice */
        assert_int_equal(held, held_counter(txn, readers[r].id)); /* the count offers trust agrees too */
        assert_true(held <= readers[r].max_tasks);
    }
    int queued = 0, waiting = 0;
    wl_list_queue(e->w, txn, count_cb, &queued);
    wl_list(e->w, txn, queue_state_cb, &waiting);
    assert_int_equal(queued, waiting); /* every waiting task is in line exactly once */
}

typedef struct first_ctx {
    const wl_reader *r;
    uint64_t         id;
} first_ctx;

/* The best waiting task for f->r computed from the records alone (not
 * from the queue index the worklist uses): priority, a lapsed lease first,
 * due time, arrival. */
static int better(const wl_task *a, const wl_task *b)
{
    if (a->priority != b->priority)
        return a->priority > b->priority;
    if (a->front != b->front)
        return a->front > b->front;
    if (a->due_ms != b->due_ms)
        return a->due_ms < b->due_ms;
    return a->seq < b->seq;
}

static wl_task best_task;

static int first_qualified(void *ctx, const wl_task *t)
{
    first_ctx *f = ctx;
    if ((t->state == WL_QUEUED || t->state == WL_REVIEW) && wl_qualified(f->r, t) &&
        (!f->id || better(t, &best_task))) {
        f->id = t->id;
        best_task = *t;
    }
    return 0;
}

typedef struct pick_ctx {
    uint64_t ids[512];
    int      n;
    int      want_state;
    const char *holder;
} pick_ctx;

static int pick_cb(void *ctx, const wl_task *t)
{
    pick_ctx *p = ctx;
    if ((p->want_state < 0 || t->state == p->want_state) && (!p->holder || !strcmp(t->holder, p->holder)) &&
        p->n < 512)
        p->ids[p->n++] = t->id;
    return 0;
}

static uint64_t pick(env *e, MDB_txn *txn, int state, const char *holder, unsigned *rng)
{
    pick_ctx p = {.want_state = state, .holder = holder};
    wl_list(e->w, txn, pick_cb, &p);
    return p.n ? p.ids[rand_r(rng) % (unsigned)p.n] : 0;
}

typedef struct tick_ctx {
    int64_t now;
} tick_ctx;

/* After a tick: no offer or lease past its end is still held, and no
 * waiting task due within its escalation window (a fifth of the default
 * allowance: URGENT 30 min, ROUTINE 24 h) is left unescalated. */
static int after_tick(void *ctx, const wl_task *t)
{
    const tick_ctx *c = ctx;
    if (t->state == WL_OFFERED || t->state == WL_CLAIMED || t->state == WL_DRAFTED)
        assert_true(t->holder_until_ms > c->now);
    if ((t->state == WL_QUEUED || t->state == WL_REVIEW) && t->priority < WL_STAT && !t->escalated) {
        int64_t window = (t->priority == WL_URGENT ? 30 * 60000LL : 24 * 3600000LL) / 5;
        assert_true(t->due_ms - c->now > window);
    }
    return 0;
}

static void run_random(unsigned seed, int steps)
{
    env e;
    env_new(&e);
    unsigned rng = seed;
    int64_t now = 1000;
    uint64_t created = 0;
    static const char *mods[] = {"CT", "DX", "CR", "US", "MR", "ECG"};
    static const char *facs[] = {"clinic1", "clinic2", "clinic3"};
    for (int step = 0; step < steps; step++) {
        MDB_txn *txn = begin(&e);
        const wl_reader *r = &readers[rand_r(&rng) % N_READERS];
        int op = (int)(rand_r(&rng) % 100);
        wl_task t;
        if (op < 18) {
            int m = (int)(rand_r(&rng) % 6);
            char uid[32];
            snprintf(uid, sizeof uid, "1.2.%u.%d", seed, step);
            wl_task_spec s = {.study_uid = uid, .modality = mods[m], .facility = facs[rand_r(&rng) % 3],
                              .kind = m == 5 ? WL_ECG : WL_IMAGING,
                              .clinic_priority = (wl_priority)(rand_r(&rng) % 3),
                              .referral = rand_r(&rng) % 4 == 0};
            assert_int_equal(wl_add(e.w, txn, &s, now, NULL), 0);
            created++;
        } else if (op < 35) {
            first_ctx f = {.r = r};
            wl_list(e.w, txn, first_qualified, &f); /* what the rules say should come */
            int rc = wl_offer(e.w, txn, r, now, &t);
            if (rc == 0)
                assert_int_equal(t.id, f.id); /* priority order respected */
            else
                assert_true(rc == WL_EEMPTY || rc == WL_EFULL);
            if (rc == WL_EEMPTY)
                assert_int_equal(f.id, 0);
        } else if (op < 50) {
            uint64_t id = pick(&e, txn, WL_OFFERED, r->id, &rng);
            if (!id)
                id = pick(&e, txn, -1, NULL, &rng);
            if (id) {
                int rc = wl_claim(e.w, txn, id, r, now, &t);
                assert_true(rc == 0 || rc == WL_ENOTYOURS || rc == WL_ESTATE || rc == WL_EQUALIFY || rc == WL_EFULL);
            }
        } else if (op < 60) {
            wl_heartbeat(e.w, txn, r->id, now);
        } else if (op < 68) {
            now += (int64_t)(rand_r(&rng) % 90000);
            assert_true(wl_tick(e.w, txn, now) >= 0);
            tick_ctx tc = {now};
            wl_list(e.w, txn, after_tick, &tc); /* from the records, not the indexes the tick uses */
        } else if (op < 73) {
            uint64_t id = pick(&e, txn, -1, r->id, &rng);
            if (id)
                assert_int_equal(wl_release(e.w, txn, id, r->id, now), 0);
        } else if (op < 82) {
            uint64_t id = pick(&e, txn, WL_CLAIMED, r->id, &rng);
            if (id)
                assert_int_equal(wl_draft(e.w, txn, id, r, "draft", now, &t), 0);
        } else if (op < 90) {
            uint64_t id = pick(&e, txn, -1, r->id, &rng);
            if (id) {
                int rc = wl_sign(e.w, txn, id, r, "rep", now, &t);
                assert_true(rc == 0 || rc == WL_EQUALIFY || rc == WL_ESTATE);
            }
        } else if (op < 93) {
            uint64_t id = pick(&e, txn, WL_CLAIMED, r->id, &rng);
            if (id) {
                int rc = wl_return(e.w, txn, id, r, "revise", now);
                assert_true(rc == 0 || rc == WL_ESTATE);
                /* the author gets the draft back even when full: release to keep the bound */
                if (rc == 0 && wl_get(e.w, txn, id, &t) == 0) {
                    const wl_reader *author = &readers[reader_index(t.holder)];
                    if (wl_held_by(e.w, txn, author->id, NULL, NULL) > author->max_tasks)
                        assert_int_equal(wl_release(e.w, txn, id, author->id, now), 0);
                }
            }
        } else if (op < 95) {
            uint64_t id = pick(&e, txn, WL_SIGNED, NULL, &rng);
            if (id) {
                int rc = wl_addendum(e.w, txn, id, r, now, &t);
                if (rc == 0) {
                    created++;
                    /* the holder may now exceed max by one addendum: release to keep the bound */
                    if (wl_held_by(e.w, txn, r->id, NULL, NULL) > r->max_tasks)
                        wl_release(e.w, txn, t.id, r->id, now);
                }
            }
        } else if (op < 97) {
            uint64_t id = pick(&e, txn, -1, NULL, &rng);
            if (id) {
                int rc = wl_cancel(e.w, txn, id, "hub", "test", now);
                assert_true(rc == 0 || rc == WL_ESTATE);
            }
        } else {
            /* restart: everything must come back from LMDB */
            assert_int_equal(mdb_txn_commit(txn), 0);
            env_close(&e);
            env_open(&e);
            txn = begin(&e);
        }
        check_invariants(&e, txn, created);
        assert_int_equal(mdb_txn_commit(txn), 0);
    }
    env_destroy(&e);
}

/* A pick's memo (wl_skip_memo) only saves walking: over a growing and
 * sometimes shrinking set of tasks passed over, on one snapshot and then
 * on a newer one, every pick with it gives what the same pick without it
 * gives — for a reader of every modality (the whole queue) and for one
 * of three (three parts of the by-modality index). */
typedef struct taken {
    bool     by_id[1024];
    uint64_t gen;
} taken;

static int taken_fn(void *ctx, uint64_t id) { return id < 1024 && ((taken *)ctx)->by_id[id]; }
static uint64_t taken_gen(void *ctx) { return ((taken *)ctx)->gen; }

static void test_pick_memo_changes_no_pick(void **state)
{
    (void)state;
    env e;
    env_new(&e);
    MDB_txn *txn = begin(&e);
    static const char *const mods[] = {"CT", "DX", "MR", "CR"};
    unsigned rng = 7;
    char uid[64];
    for (int i = 0; i < 300; i++) {
        snprintf(uid, sizeof uid, "1.2.%d", i);
        wl_priority p = rand_r(&rng) % 10 == 0 ? WL_STAT : WL_ROUTINE;
        add(&e, txn, uid, WL_IMAGING, mods[rand_r(&rng) % 4], p, rand_r(&rng) % 7 == 0, 1000 + i);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);

    taken tk = {0};
    wl_skip_memo memo;
    memset(&memo, 0, sizeof memo);
    wl_skip plain = {taken_fn, &tk, NULL, NULL}, memoized = {taken_fn, &tk, &memo, taken_gen};
    int picks = 0, empty = 0;
    for (int round = 0; round < 2; round++) {
        MDB_txn *rd;
        assert_int_equal(mdb_txn_begin(e.env, NULL, MDB_RDONLY, &rd), 0);
        for (int step = 0; step < 150; step++) {
            const wl_reader *r = rand_r(&rng) % 2 ? &attending : &resident;
            wl_task a, b;
            int ra = wl_pick(e.w, rd, r, &plain, 5000, &a), rb = wl_pick(e.w, rd, r, &memoized, 5000, &b);
            assert_int_equal(ra, rb);
            if (ra == WL_EEMPTY) {
                empty++;
            } else {
                assert_int_equal(ra, 0);
                assert_int_equal(a.id, b.id);
                picks++;
                tk.by_id[a.id] = true; /* offered: passed over from now on */
            }
            if (rand_r(&rng) % 8 == 0) { /* an offer that failed: its task is back */
                uint64_t id = 1 + rand_r(&rng) % 300;
                if (tk.by_id[id]) {
                    tk.by_id[id] = false;
                    tk.gen++;
                }
            }
        }
        /* the memo now remembers a place past the STAT tasks' part of the queue */
        wl_task last;
        assert_int_equal(wl_pick(e.w, rd, &attending, &memoized, 5000, &last), 0);
        assert_true(last.priority != WL_STAT);
        mdb_txn_abort(rd);
        /* a newer snapshot: a STAT task near the front, the memo must not hide it */
        txn = begin(&e);
        wl_task stat = add(&e, txn, "9.9.9", WL_IMAGING, "CT", WL_STAT, 0, 6000 + round);
        assert_int_equal(mdb_txn_commit(txn), 0);
        assert_int_equal(mdb_txn_begin(e.env, NULL, MDB_RDONLY, &rd), 0);
        wl_task a;
        assert_int_equal(wl_pick(e.w, rd, &attending, &memoized, 7000, &a), 0);
        assert_int_equal(a.id, stat.id);
        tk.by_id[a.id] = true;
        mdb_txn_abort(rd);
    }
    assert_true(picks > 250); /* most of the queue, with tasks coming back */

    /* then until nothing is left: both say so */
    MDB_txn *rd;
    assert_int_equal(mdb_txn_begin(e.env, NULL, MDB_RDONLY, &rd), 0);
    for (int step = 0; step < 400; step++) {
        wl_task a, b;
        int ra = wl_pick(e.w, rd, &resident, &plain, 5000, &a), rb = wl_pick(e.w, rd, &resident, &memoized, 5000, &b);
        assert_int_equal(ra, rb);
        if (ra == WL_EEMPTY) {
            empty++;
            break;
        }
        assert_int_equal(a.id, b.id);
        tk.by_id[a.id] = true;
    }
    mdb_txn_abort(rd);
    assert_int_equal(empty, 1);
    env_destroy(&e);
}

static void test_invariants_hold_over_random_interleavings(void **state)
{
    (void)state;
    make_readers();
    const char *s = getenv("WL_PROPERTY_SEEDS");
    int seeds = s ? atoi(s) : 12;
    for (int seed = 1; seed <= seeds; seed++)
        run_random((unsigned)seed * 7919u, 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stat_ecg_is_offered_before_routine_ct_backlog),
        cmocka_unit_test(test_referral_comes_before_routine_and_due_times_follow_priority),
        cmocka_unit_test(test_lapsed_lease_returns_task_to_front_for_another_reader),
        cmocka_unit_test(test_holds_set_before_the_clock_went_back_keep_only_their_length),
        cmocka_unit_test(test_resident_draft_goes_to_attending_review_and_can_return),
        cmocka_unit_test(test_routine_task_near_due_time_is_escalated),
        cmocka_unit_test(test_pick_memo_changes_no_pick),
        cmocka_unit_test(test_invariants_hold_over_random_interleavings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

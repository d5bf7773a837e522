/* ws_hub.c — the workstation's side of the reader protocol: the offers the
 * hub makes (kept as the reader's worklist), credit, claims and releases.
 *
 * The hub keeps an unclaimed offer for 30 s and then gives it to someone
 * else; we release ours a little before that and ask again (READY), so
 * the list the reader sees is never older than OFFER_KEEP_MS and the task
 * is not held away from other readers for long.  Leases of held tasks are
 * kept alive by the client's own heartbeats (hub.h) from every poll. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "viewer/ws.h"
#include "codecs/banned.h"

#define OFFER_KEEP_MS 25000 /* below the hub's 30 s offer timeout */
#define READY_EVERY_MS 10000
#define PROBE_EVERY_MS 5000  /* a heartbeat to know the hub is there */
/* HELD: a draft a reviewer returned shows within a second.  The hub answers
 * it at once from a read snapshot of the reader's held index (no commit,
 * no walk of the queue), so asking every second costs it little. */
#define HELD_EVERY_MS 1000
#define MAX_DRAIN     64

int64_t ws_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ws_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ws_task_find(ws *w, uint64_t id)
{
    for (size_t i = 0; i < w->n_tasks; i++)
        if (w->tasks[i].t.id == id)
            return (int)i;
    return -1;
}

void ws_changed(ws *w)
{
    w->gen++;
    pthread_cond_broadcast(&w->changed);
}

static void drop_task(ws *w, size_t i)
{
    ws_task_release(&w->tasks[i]);
    w->tasks[i] = w->tasks[--w->n_tasks];
    memset(&w->tasks[w->n_tasks], 0, sizeof w->tasks[0]);
}

static int study_pinned(ws *w, const char *study, int offers_too)
{
    int pinned = 0;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_tasks && !pinned; i++)
        pinned = (!strcmp(w->tasks[i].t.study_uid, study) || !strcmp(w->tasks[i].cmp.study, study)) &&
                 (w->tasks[i].held || (offers_too && w->tasks[i].offered_ms));
    pthread_mutex_unlock(&w->mu);
    return pinned;
}

int ws_study_held(void *w, const char *study) { return study_pinned(w, study, 0); }

int ws_study_listed(void *w, const char *study) { return study_pinned(w, study, 1); }

/* A request's outcome for the page's hub pill.  revoked and why are taken
 * under hub_mu by the caller (hub_client_key_revoked, hub_client_error):
 * the client is hub_mu's. */
static void set_connected(ws *w, int rc, int revoked, const char *why)
{
    int up = rc != HUB_ETIMEDOUT;
    /* revoked: the hub answers, and refuses everything until IT allows a key */
    revoked = revoked && rc == HUB_EREFUSED;
    pthread_mutex_lock(&w->mu);
    if (revoked && !w->key_revoked)
        fprintf(stderr, "dxhub workstation: the hub refused this workstation's key: %s\n", why);
    if (w->connected != up || (rc != HUB_ETIMEDOUT && w->key_revoked != revoked)) {
        w->connected = up;
        if (rc != HUB_ETIMEDOUT)
            w->key_revoked = revoked;
        ws_changed(w);
    }
    pthread_mutex_unlock(&w->mu);
}

static void add_offers(ws *w, const hub_task *got, size_t n)
{
    if (!n)
        return;
    pthread_mutex_lock(&w->mu);
    int64_t now = ws_mono_ms();
    for (size_t k = 0; k < n; k++) {
        int i = ws_task_find(w, got[k].id);
        if (i < 0) {
            if (w->n_tasks == WS_MAX_TASKS)
                continue; /* released below: the hub gets it back when it times out */
            i = (int)w->n_tasks++;
            memset(&w->tasks[i], 0, sizeof w->tasks[i]);
        }
        ws_task *t = &w->tasks[i];
        t->t = got[k];
        t->held = 0;
        t->offered_ms = now;
    }
    ws_changed(w);
    pthread_mutex_unlock(&w->mu);
}

/* hub_mu held: when the hub counts fewer leases than we hold tasks (the
 * hub was away longer than a lease, say), which of ours it no longer
 * answers for; their ids into lost. */
static size_t lapsed(ws *w, int leases, uint64_t lost[WS_MAX_TASKS])
{
    uint64_t held[WS_MAX_TASKS];
    size_t n = 0, k = 0;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_tasks; i++)
        if (w->tasks[i].held)
            held[n++] = w->tasks[i].t.id;
    pthread_mutex_unlock(&w->mu);
    if ((size_t)(leases < 0 ? 0 : leases) >= n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char study[65];
        if (hub_client_study_uid(w->hc, held[i], study, sizeof study) == HUB_EREFUSED)
            lost[k++] = held[i];
    }
    return k;
}

void ws_hub_poll(ws *w)
{
    hub_task got[MAX_DRAIN];
    size_t n = 0;
    int rc = 0;
    pthread_mutex_lock(&w->hub_mu);
    while (n < MAX_DRAIN && (rc = hub_client_next_offer(w->hc, 0, &got[n])) == 0)
        n++;
    pthread_mutex_unlock(&w->hub_mu);
    add_offers(w, got, n);

    /* offers about to time out at the hub: give them back, ask again */
    uint64_t expired[WS_MAX_TASKS];
    size_t n_exp = 0;
    int offers = 0;
    int64_t now = ws_mono_ms();
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_tasks;) {
        ws_task *t = &w->tasks[i];
        if (t->offered_ms && now - t->offered_ms > OFFER_KEEP_MS) {
            expired[n_exp++] = t->t.id;
            drop_task(w, i);
            ws_changed(w);
            continue;
        }
        offers += t->offered_ms != 0;
        i++;
    }
    int want = w->cfg.offers - offers;
    if (want < 0)
        want = 0;
    int send_ready = want != w->credit_sent || now - w->ready_ms > READY_EVERY_MS;
    int probe = now - w->ready_ms > PROBE_EVERY_MS || !w->connected;
    pthread_mutex_unlock(&w->mu);

    uint64_t lost[WS_MAX_TASKS];
    size_t n_lost = 0;
    pthread_mutex_lock(&w->hub_mu);
    for (size_t i = 0; i < n_exp; i++)
        hub_client_release(w->hc, expired[i]);
    if (send_ready || probe) {
        int leases;
        rc = hub_client_heartbeat(w->hc, &leases); /* the hub is there (and leases stay alive) */
        if (rc == 0)
            n_lost = lapsed(w, leases, lost);
        if (rc == 0 && send_ready)
            rc = hub_client_ready(w->hc, want);
        if (rc == 0 || rc == HUB_EREFUSED) {
            pthread_mutex_lock(&w->mu);
            w->credit_sent = want;
            w->ready_ms = now;
            pthread_mutex_unlock(&w->mu);
        }
    }
    int revoked = hub_client_key_revoked(w->hc);
    char why[512];
    snprintf(why, sizeof why, "%s", hub_client_error(w->hc));
    pthread_mutex_unlock(&w->hub_mu);
    if (send_ready || probe)
        set_connected(w, rc, revoked, why);
    for (size_t k = 0; k < n_lost; k++) {
        fprintf(stderr, "dxhub workstation: task %llu is no longer ours (its lease lapsed)\n",
                (unsigned long long)lost[k]);
        ws_forget(w, lost[k]);
        pthread_mutex_lock(&w->mu);
        int i = ws_task_find(w, lost[k]);
        if (i >= 0)
            drop_task(w, (size_t)i);
        ws_changed(w);
        pthread_mutex_unlock(&w->mu);
    }
    /* after the lapsed ones are dropped: a task returned to us meanwhile is taken up again */
    pthread_mutex_lock(&w->mu);
    int ask_held = w->connected && now - w->held_ms >= HELD_EVERY_MS;
    if (ask_held)
        w->held_ms = now;
    pthread_mutex_unlock(&w->mu);
    if (ask_held)
        ws_sync_held(w);
}

/* --- held tasks across restarts ---------------------------------------------------
 * A claimed task is written to the cache ("held"); a workstation started
 * again while its leases last takes its tasks up again (the hub answers
 * STUDY for them: still ours) and keeps the leases alive from then on. */

static void task_key(uint64_t id, char key[32]) { snprintf(key, 32, "%llu", (unsigned long long)id); }

static void remember(ws *w, const hub_task *t, int64_t lease_ms)
{
    json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:b,s:b,s:i,s:i,s:I}", "id",
                          (json_int_t)t->id, "study", t->study_uid, "kind", t->kind, "priority", t->priority, "state",
                          t->state, "modality", t->modality, "body_part", t->body_part, "facility", t->facility,
                          "note", t->note, "triage", t->triage, "patient_id", t->patient_id, "due",
                          (json_int_t)t->due_ms, "referral", t->referral, "review", t->review, "version",
                          (int)t->version, "instances", (int)t->instances, "lease_ms", (json_int_t)lease_ms);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    char key[32];
    task_key(t->id, key);
    if (s)
        ws_cache_kv_put(w->cache, "held", key, s, strlen(s));
    free(s);
}

void ws_forget(ws *w, uint64_t id)
{
    char key[32];
    task_key(id, key);
    ws_cache_kv_del(w->cache, "held", key);
}

static void str_of(json_t *j, const char *k, char *out, size_t n)
{
    const char *v = json_string_value(json_object_get(j, k));
    snprintf(out, n, "%s", v ? v : "");
}

typedef struct adopt_ctx {
    ws     *w;
    int64_t lease_ms;
    int     adopted;
} adopt_ctx;

static int adopt_one(void *ctx, const char *key, const char *v, size_t n)
{
    adopt_ctx *a = ctx;
    ws *w = a->w;
    json_t *j = json_loadb(v, n, 0, NULL);
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    char study[65];
    if (!j || id <= 0 || w->n_tasks == WS_MAX_TASKS ||
        hub_client_study_uid(w->hc, (uint64_t)id, study, sizeof study) != 0) {
        ws_cache_kv_del(w->cache, "held", key); /* lapsed, taken by another, or done */
        json_decref(j);
        return 0;
    }
    ws_task *t = &w->tasks[w->n_tasks++];
    memset(t, 0, sizeof *t);
    t->t.id = (uint64_t)id;
    snprintf(t->t.study_uid, sizeof t->t.study_uid, "%s", study);
    str_of(j, "kind", t->t.kind, sizeof t->t.kind);
    str_of(j, "priority", t->t.priority, sizeof t->t.priority);
    str_of(j, "state", t->t.state, sizeof t->t.state);
    str_of(j, "modality", t->t.modality, sizeof t->t.modality);
    str_of(j, "body_part", t->t.body_part, sizeof t->t.body_part);
    str_of(j, "facility", t->t.facility, sizeof t->t.facility);
    str_of(j, "note", t->t.note, sizeof t->t.note);
    str_of(j, "triage", t->t.triage, sizeof t->t.triage);
    str_of(j, "patient_id", t->t.patient_id, sizeof t->t.patient_id);
    t->t.due_ms = json_integer_value(json_object_get(j, "due"));
    t->t.referral = json_is_true(json_object_get(j, "referral"));
    t->t.review = json_is_true(json_object_get(j, "review"));
    t->t.version = (uint32_t)json_integer_value(json_object_get(j, "version"));
    t->t.instances = (uint32_t)json_integer_value(json_object_get(j, "instances"));
    t->held = 1;
    int64_t lease = json_integer_value(json_object_get(j, "lease_ms"));
    if (lease > 0 && (a->lease_ms == 0 || lease < a->lease_ms))
        a->lease_ms = lease;
    a->adopted++;
    json_decref(j);
    return 0;
}

int ws_adopt(ws *w)
{
    adopt_ctx a = {w, 0, 0};
    ws_cache_kv_each(w->cache, "held", adopt_one, &a);
    if (a.adopted) {
        /* the client counts no lease it did not claim: heartbeat at a third of
         * the lease the hub granted then (60 s when unknown) */
        hub_client_keepalive(w->hc, (int)((a.lease_ms > 0 ? a.lease_ms : 60000) / 3));
        int leases;
        hub_client_heartbeat(w->hc, &leases);
    }
    return a.adopted;
}

int ws_hub_claim(ws *w, uint64_t id, char *err, size_t errlen)
{
    hub_task t;
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_claim(w->hc, id, &t);
    int64_t lease_ms = rc ? 0 : hub_client_lease_until(w->hc) - ws_now_ms();
    if (rc)
        snprintf(err, errlen, "%s", hub_client_error(w->hc));
    int revoked = hub_client_key_revoked(w->hc);
    pthread_mutex_unlock(&w->hub_mu);
    if (rc == 0)
        remember(w, &t, lease_ms);
    set_connected(w, rc, revoked, err);
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    if (rc == 0) {
        if (i < 0 && w->n_tasks < WS_MAX_TASKS) {
            i = (int)w->n_tasks++;
            memset(&w->tasks[i], 0, sizeof w->tasks[i]);
        }
        if (i >= 0) {
            int review = w->tasks[i].t.review;
            w->tasks[i].t = t;
            w->tasks[i].t.review = t.review || review;
            w->tasks[i].held = 1;
            w->tasks[i].offered_ms = 0;
        }
    } else if (i >= 0 && rc == HUB_EREFUSED && !w->tasks[i].held) {
        drop_task(w, (size_t)i); /* offered to us no longer */
    }
    ws_changed(w);
    pthread_mutex_unlock(&w->mu);
    return rc ? -1 : 0;
}

int ws_hub_release(ws *w, uint64_t id, char *err, size_t errlen)
{
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_release(w->hc, id);
    if (rc)
        snprintf(err, errlen, "%s", hub_client_error(w->hc));
    int revoked = hub_client_key_revoked(w->hc);
    pthread_mutex_unlock(&w->hub_mu);
    set_connected(w, rc, revoked, err);
    if (rc)
        return -1;
    ws_forget(w, id);
    pthread_mutex_lock(&w->mu);
    int i = ws_task_find(w, id);
    if (i >= 0)
        drop_task(w, (size_t)i);
    ws_changed(w);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int ws_priority_rank(const char *p)
{
    if (!strcasecmp(p, "stat"))
        return 2;
    if (!strcasecmp(p, "urgent"))
        return 1;
    return 0;
}

/* --- tasks given to us: a draft returned for revision ------------------------------
 * A reviewer's "return" makes the task the resident's again, claimed, with
 * the reviewer's reason.  The hub says so in its HELD answer, asked every
 * HELD_EVERY_MS: a held task we do not hold (or submitted and let go) is taken up,
 * remembered across restarts and kept alive like any claim. */

static void update_held(ws *w, const hub_task *got, size_t n, int64_t *lease_ms)
{
    pthread_mutex_lock(&w->mu);
    int changed = 0;
    for (size_t k = 0; k < n; k++) {
        const hub_task *g = &got[k];
        int i = ws_task_find(w, g->id);
        if (i >= 0 && w->tasks[i].held) {
            /* ours already: only the return's reason may have changed */
            if (strcmp(w->tasks[i].t.returned, g->returned) || strcmp(w->tasks[i].t.returned_by, g->returned_by)) {
                snprintf(w->tasks[i].t.returned, sizeof w->tasks[i].t.returned, "%s", g->returned);
                snprintf(w->tasks[i].t.returned_by, sizeof w->tasks[i].t.returned_by, "%s", g->returned_by);
                changed = 1;
            }
            continue;
        }
        if (!g->returned_by[0])
            continue; /* held but unknown and not returned: a claim still on its way */
        if (i < 0) {
            if (w->n_tasks == WS_MAX_TASKS)
                continue;
            i = (int)w->n_tasks++;
            memset(&w->tasks[i], 0, sizeof w->tasks[i]);
        }
        ws_task *t = &w->tasks[i];
        t->t = *g;
        t->held = 1;
        t->done = 0;
        t->offered_ms = 0;
        int64_t left = g->lease_until_ms - ws_now_ms();
        if (left > 0 && (*lease_ms == 0 || left < *lease_ms))
            *lease_ms = left;
        changed = 1;
    }
    if (changed)
        ws_changed(w);
    pthread_mutex_unlock(&w->mu);
}

void ws_sync_held(ws *w)
{
    hub_task *got = NULL;
    size_t n = 0;
    pthread_mutex_lock(&w->hub_mu);
    int rc = hub_client_held(w->hc, &got, &n);
    pthread_mutex_unlock(&w->hub_mu);
    if (rc) {
        free(got);
        return; /* a hub without HELD, or away: asked again at the next probe */
    }
    int64_t lease_ms = 0;
    update_held(w, got, n, &lease_ms);
    for (size_t k = 0; k < n; k++)
        if (got[k].returned_by[0])
            remember(w, &got[k], got[k].lease_until_ms - ws_now_ms());
    if (lease_ms > 0) {
        /* the client counts no lease it did not claim: heartbeat at a third of it */
        pthread_mutex_lock(&w->hub_mu);
        hub_client_keepalive(w->hc, (int)(lease_ms / 3 > 300 ? lease_ms / 3 : 300));
        pthread_mutex_unlock(&w->hub_mu);
    }
    free(got);
}

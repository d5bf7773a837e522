/* reader_link.c — the hub's reader protocol server (protocol in hub.h).
 * One thread owns the ROUTER socket and never waits for a disk.
 *  - READY: it picks each offer on a read snapshot of the worklist
 *    (store_view), passing over tasks offered but not yet recorded (the
 *    offer_set), and sends the TASK at once — ahead of the durable
 *    answers taken in the same turn.  An offer acknowledges nothing the
 *    reader sent: it is a proposal, recorded afterwards.
 *  - The writes — recording those offers, CLAIM, HEARTBEAT, RELEASE, the
 *    tick — go to the committer thread (reader_commit.c), which applies
 *    everything that arrived together in one write transaction, commits
 *    it durably, and hands back the answers; this thread sends them.  So
 *    a lease is announced only once it is durable, and a CLAIM of an
 *    offer is applied after the offer's record (the same queue, in
 *    order), in the commit that covers both.
 *  - If the hub stops before an offer is recorded, the reader's CLAIM
 *    finds the task still queued (and takes it if it may) or taken by
 *    someone else (a NACK); offers are made again after a restart.
 *  - Other requests (STUDY, FETCH, SUBMIT...) are answered at once; the
 *    client matches answers by "req".
 * Other threads wake the loop through an eventfd when tasks appear, and it
 * offers them at once. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "hub/clock.h"
#include "hub/digest.h"
#include "hub/handshake_watch.h"
#include "hub/log.h"
#include "hub/offer_set.h"
#include "hub/proto.h"
#include "hub/reader_commit.h"
#include "hub/reader_link.h"
#include "hub/reader_aside.h"
#include "hub/reader_queries.h"
#include "hub/revoked.h"
#include "hub/task_json.h"

#define MAX_READERS 1024
#define FETCH_MAX (1u << 20)
/* Offers sent and not yet recorded, at most (then the link waits for a commit). */
#define MAX_UNRECORDED 8192

typedef struct conn {
    bool      used;
    char      id[WL_ID_MAX];
    zmq_msg_t route;
    int       credit;
    int64_t   last_ms;
    uint64_t  empty_gen; /* the queue generation at which nothing fitted this reader */
    int       unrecorded; /* offers sent to it whose record is not committed yet */
    int64_t   credit_us;  /* its READY's arrival, until the TASK it asked for leaves (0: none timed) */
    bool      waited;     /* nothing fitted it since: its next offer is timed from the change that brings it */
    int64_t   empty_ms;     /* when nothing fitted it (monotonic) */
    uint64_t  empty_commit; /* the last commit the snapshot that had nothing for it showed */
} conn;

struct reader_link {
    reader_link_config cfg;
    revoked_watch      revoked;
    void              *router;
    uint16_t           port;
    int                evfd;
    pthread_t          thread;
    volatile int       stop;
    conn              *conns;
    uint8_t           *buf;
    /* Fix (performance): bumped whenever tasks may have become available
     * (new tasks, lapsed leases and offers, releases, submissions).  A
     * reader with credit for whom nothing fitted is not offered again until
     * it changes: each such offer walks the whole queue (100,000 queued CT
     * tasks and one waiting ECG reader made every event cost ~1 s). */
    uint64_t           gen;
    bool               want_offer; /* offer to readers with credit at the end of this turn */
    int64_t            changed_us; /* the last queue_changed: when tasks may have come for a waiting reader */
    wl_skip_memo       pick_memo;  /* where picks on the current snapshot may start */
    reader_commit     *committer;
    int                done_fd;    /* the committer's "answers ready" */
    reader_aside      *aside;      /* PRIORS and PRIOR, which may wait on other hubs */
    int                aside_fd;   /* its "answers ready" */
    rc_list            done;
    offer_set         *unrecorded; /* offers sent, record not committed */
    bool               tick_queued;
    bool               offer_failed; /* a snapshot or a pick failed: offer again at the next tick */
    bool               rescanning;   /* this turn's offers include the periodic look (rescan_waiting) */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void reader_link_kick(reader_link *l)
{
    uint64_t one = 1;
    ssize_t r = write(l->evfd, &one, sizeof one);
    (void)r;
}

json_t *task_to_json(const wl_task *t, const store_study *st)
{
    json_t *j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:s,s:I,s:I,s:i,s:b,s:b}", "id",
                          (json_int_t)t->id, "study", t->study_uid, "kind", wl_kind_name((wl_kind)t->kind), "priority",
                          wl_priority_name((wl_priority)t->priority), "clinic_priority",
                          wl_priority_name((wl_priority)t->clinic_priority), "modality", t->modality, "body_part",
                          t->body_part, "facility", t->facility, "referral", t->referral, "note", t->note, "triage",
                          t->triage, "state", wl_state_name((wl_state)t->state), "due", (json_int_t)t->due_ms,
                          "arrival", (json_int_t)t->arrival_ms, "version", (int)t->version, "review", t->review,
                          "escalated", t->escalated);
    if (t->holder[0])
        json_object_set_new(j, "holder", json_string(t->holder));
    if (t->drafted_by[0])
        json_object_set_new(j, "drafted_by", json_string(t->drafted_by));
    if (t->signed_by[0])
        json_object_set_new(j, "signed_by", json_string(t->signed_by));
    if (t->report_id[0])
        json_object_set_new(j, "report_id", json_string(t->report_id));
    if (t->supersedes)
        json_object_set_new(j, "supersedes", json_integer((json_int_t)t->supersedes));
    if (st) {
        json_object_set_new(j, "patient_id", json_string(st->patient_id));
        json_object_set_new(j, "instances", json_integer(st->n_instances));
        json_object_set_new(j, "series", json_integer(st->n_series));
    }
    return j;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void queue_changed(reader_link *l)
{
    l->gen++;
    l->changed_us = mono_us();
    l->rescanning = false; /* this turn's offers may come from the change: not a missed wake-up */
}

/* Queue a write for the committer; route (when given) and the request's
 * "req" are copied into it.  -1 when the committer is full. */
static int commit_later(reader_link *l, rc_kind kind, int conn_index, const wl_reader *r, uint64_t task,
                        zmq_msg_t *route, const proto_msg *m)
{
    rc_op op = {.kind = kind, .conn = conn_index, .task = task, .now = now_ms()};
    if (r)
        op.reader = *r;
    zmq_msg_init(&op.route);
    if (route)
        zmq_msg_copy(&op.route, route);
    json_t *req = m && m->hdr ? json_object_get(m->hdr, "req") : NULL;
    op.req = req ? json_deep_copy(req) : NULL; /* the committer's thread sets it in the answer */
    if (reader_commit_push(l->committer, &op) == 0)
        return 0;
    zmq_msg_close(&op.route);
    json_decref(op.req);
    return -1;
}

static void send_answer(reader_link *l, rc_op *op)
{
    if (op->text)
        proto_send_text(l->router, &op->route, op->cmd, op->text, op->text_len);
    else if (op->cmd)
        proto_send(l->router, &op->route, op->cmd, op->answer, NULL, 0);
}

/* Take what the committer has made durable and note what it changed (the
 * offers now recorded, tasks freed); the answers wait in l->done for
 * send_done.  Never waits. */
static void take_done(reader_link *l)
{
    size_t from = l->done.n;
    reader_commit_take(l->committer, &l->done);
    for (size_t i = from; i < l->done.n; i++) {
        rc_op *op = &l->done.v[i];
        if (op->rc == WL_ESTORE)
            hub_count_error(l->cfg.metrics, HUB_ERR_STORE_FAILED);
        if (op->kind == RC_OFFER) {
            offer_set_remove(l->unrecorded, op->task);
            if (op->conn >= 0 && l->conns[op->conn].unrecorded > 0)
                l->conns[op->conn].unrecorded--;
            if (op->rc) {
                /* The task changed before its offer was recorded (claimed
                 * by another, cancelled), or the commit failed: the
                 * reader's CLAIM will be refused; the reader may be
                 * offered another task. */
                log_info("readers: an offer of task %llu could not be recorded: %s",
                         (unsigned long long)op->task, wl_strerror(op->rc));
                queue_changed(l);
            }
            l->want_offer = true; /* room for more offers */
        } else if (op->kind == RC_TICK) {
            l->tick_queued = false;
            if (op->rc > 0)
                queue_changed(l);
            l->want_offer = true;
        } else if (op->kind == RC_RELEASE) {
            queue_changed(l);
            l->want_offer = true;
        }
    }
}

/* Send the durable answers taken (CLAIMED, HEARTBEAT, OK, NACK). */
static void send_done(reader_link *l)
{
    for (size_t i = 0; i < l->done.n; i++)
        send_answer(l, &l->done.v[i]);
    rc_list_clear(&l->done);
}

/* Take and answer what the committer has made durable: before an answer
 * given at once, so a reader's answers keep their order. */
static void flush(reader_link *l)
{
    take_done(l);
    send_done(l);
}

static conn *conn_of(reader_link *l, const char *id, const proto_msg *m)
{
    conn *free_slot = NULL;
    for (int i = 0; i < MAX_READERS; i++) {
        conn *c = &l->conns[i];
        if (c->used && !strcmp(c->id, id)) {
            if (m) { /* a reconnect gets a new routing id */
                zmq_msg_close(&c->route);
                zmq_msg_init(&c->route);
                zmq_msg_copy(&c->route, (zmq_msg_t *)&m->route);
            }
            return c;
        }
        if (!c->used && !free_slot)
            free_slot = c;
    }
    if (!free_slot || !m)
        return NULL;
    free_slot->used = true;
    snprintf(free_slot->id, sizeof free_slot->id, "%s", id);
    zmq_msg_init(&free_slot->route);
    zmq_msg_copy(&free_slot->route, (zmq_msg_t *)&m->route);
    free_slot->credit = 0;
    return free_slot;
}

static void refuse(reader_link *l, proto_msg *m, const char *why)
{
    flush(l); /* the audit below is a transaction of its own */
    hub_count_error(l->cfg.metrics, HUB_ERR_PROTOCOL);
    char detail[320];
    snprintf(detail, sizeof detail, "%s: %s", m->cmd[0] ? m->cmd : "(no command)", why);
    store_audit(l->cfg.st, now_ms(), m->role[0] ? m->role : m->peer, "protocol-error", "", detail);
    log_warn("readers: refused a message from %s: %s", m->role[0] ? m->role : m->peer, detail);
    if (m->has_route) {
        /* Fix (hub_client): echo the request's "req" when the header had
         * one, so a client waiting on that request knows this ERROR is its
         * answer (proto_send_error cannot carry it). */
        json_t *req = m->hdr ? json_object_get(m->hdr, "req") : NULL;
        json_t *h = json_pack("{s:s,s:s}", "error", why, "to", m->cmd);
        if (h && json_is_integer(req))
            json_object_set(h, "req", req);
        if (h)
            proto_send(l->router, &m->route, "ERROR", h, NULL, 0);
        json_decref(h);
    }
}

static void reply(reader_link *l, proto_msg *m, const char *cmd, json_t *h, const void *data, size_t len)
{
    json_t *req = json_object_get(m->hdr, "req");
    if (req)
        json_object_set(h, "req", req);
    proto_send(l->router, &m->route, cmd, h, data, len);
    json_decref(h);
}

static void nack(reader_link *l, proto_msg *m, const char *why)
{
    reply(l, m, "NACK", json_pack("{s:s}", "reason", why), NULL, 0);
}

/* TASK: the header written as text (task_json.c), or built with jansson
 * when a text is not UTF-8 (which then says so). */
static int send_offer(reader_link *l, conn *c, const wl_task *task, const store_study *st)
{
    char text[TASK_JSON_MAX];
    int len = task_json_header(text, sizeof text, task, st, -1, NULL);
    if (len >= 0)
        return proto_send_text(l->router, &c->route, "TASK", text, (size_t)len);
    json_t *h = json_object();
    json_object_set_new(h, "task", task_to_json(task, st));
    int sent = proto_send(l->router, &c->route, "TASK", h, NULL, 0);
    json_decref(h);
    return sent;
}

static int unrecorded_offer(void *ctx, uint64_t id) { return offer_set_conn(ctx, id) >= 0; }
static uint64_t unrecorded_gen(void *ctx) { return offer_set_removals(ctx); }

/* Offer tasks to every reader with credit: picked on a snapshot taken now
 * (after the answers of the last commits were taken, so it shows them),
 * sent at once, recorded by the committer. */
static void offer_all(reader_link *l)
{
    store_view *v = NULL;
    /* The memo lets each pick start past the offers not yet recorded (the
     * queue's front) instead of walking them again: with ~50 of them in
     * flight at 10,000 assignments/s that walk was most of a pick. */
    wl_skip skip = {unrecorded_offer, l->unrecorded, &l->pick_memo, unrecorded_gen};
    for (int i = 0; i < MAX_READERS; i++) {
        conn *c = &l->conns[i];
        if (!c->used || c->credit <= 0 || c->empty_gen == l->gen)
            continue;
        wl_reader r;
        if (readers_find(l->cfg.profiles, c->id, &r) < 0)
            continue;
        if (!v && store_view_begin(l->cfg.st, &v) < 0) {
            log_warn("readers: cannot read the worklist: offers wait for the next tick");
            l->offer_failed = true;
            l->rescanning = false;
            return;
        }
        int held = store_view_held(v, r.id);
        while (c->credit > 0 && held >= 0 && held + c->unrecorded < r.max_tasks) {
            wl_task task;
            store_study st;
            int has_st = 0;
            int rc = store_view_pick(v, &r, &skip, now_ms(), &task, &st, &has_st);
            if (rc == WL_EEMPTY) {
                c->empty_gen = l->gen;
                c->empty_ms = clock_mono_ms();
                c->empty_commit = store_view_commit(v);
                c->credit_us = 0; /* its offer, when one comes, is timed from the change that brings it */
                c->waited = true;
            }
            if (rc < 0 && rc != WL_EEMPTY) {
                log_warn("readers: cannot pick a task for %s: %s (again at the next tick)", r.id, wl_strerror(rc));
                l->offer_failed = true;
            }
            if (rc != 0 || offer_set_add(l->unrecorded, task.id, i) < 0)
                break; /* nothing, or too many unrecorded: again after the next commit */
            int sent = send_offer(l, c, &task, has_st ? &st : NULL);
            if (sent < 0) {
                /* Fix: the reader is gone (killed, disconnected) or not
                 * reading.  Nothing was recorded; stop offering to it
                 * until it says READY again. */
                offer_set_remove(l->unrecorded, task.id);
                c->credit = 0;
                break;
            }
            c->credit--;
            if (l->rescanning && c->waited)
                log_warn("readers: task %llu offered to %s by the periodic look: no wake-up came for it",
                         (unsigned long long)task.id, r.id);
            /* the first TASK of a credit is timed (the rest leave in the same turn) */
            int64_t from = c->credit_us ? c->credit_us : c->waited ? l->changed_us : 0;
            if (from)
                hub_count_offer(l->cfg.metrics, (uint64_t)(mono_us() - from));
            c->credit_us = 0;
            c->waited = false;
            if (commit_later(l, RC_OFFER, i, &r, task.id, NULL, NULL) < 0) {
                offer_set_remove(l->unrecorded, task.id); /* a CLAIM may still take it while queued */
                break;
            }
            c->unrecorded++;
        }
    }
    store_view_end(&v);
    l->rescanning = false;
}

/* A reader with credit for whom nothing fitted waits for the next change
 * (gen), which the threads that commit tasks announce through the eventfd.
 * Were one announcement ever missed, the reader would wait for the next
 * unrelated change: at night, for hours, with a STAT ECG queued.  So a
 * reader that has waited RESCAN_MS while commits landed is looked at
 * again; an offer found that way is logged, as it means a missed wake-up. */
#define RESCAN_MS 2000
static void rescan_waiting(reader_link *l)
{
    int64_t now = clock_mono_ms();
    uint64_t last = store_last_commit(l->cfg.st);
    bool due = false;
    for (int i = 0; i < MAX_READERS && !due; i++) {
        const conn *c = &l->conns[i];
        due = c->used && c->credit > 0 && c->empty_gen == l->gen && now - c->empty_ms >= RESCAN_MS &&
              last > c->empty_commit;
    }
    if (!due)
        return;
    uint64_t v;
    if (read(l->evfd, &v, sizeof v) == (ssize_t)sizeof v) {
        queue_changed(l); /* the announcement was on its way */
    } else {
        l->gen++;
        l->rescanning = true;
    }
    l->want_offer = true;
}

/* The task must be one this reader holds (claimed, drafted) or, to read
 * its study (STUDY, FETCH), one offered to it: a workstation prefetches the
 * studies it is likely to be given before the reader claims them — maybe
 * before the offer's record is committed. */
static int held_task(reader_link *l, proto_msg *m, const char *reader, wl_task *t, bool offered_ok)
{
    long long id = proto_int(m, "task", -1);
    if (id < 0 || store_task_get(l->cfg.st, (uint64_t)id, t) != 0) {
        nack(l, m, "no such task");
        return -1;
    }
    int to = offer_set_conn(l->unrecorded, (uint64_t)id);
    if (offered_ok && to >= 0 && !strcmp(l->conns[to].id, reader))
        return 0;
    if (strcmp(t->holder, reader) ||
        (t->state != WL_CLAIMED && t->state != WL_DRAFTED && !(offered_ok && t->state == WL_OFFERED))) {
        nack(l, m, "task not yours (claim it first, or your lease lapsed)");
        return -1;
    }
    return 0;
}

/* The study STUDY and FETCH read (uid): the task's own, or with "prior"
 * another study of the task's patient held here, which the reader opens
 * beside it to compare.  Only the same patient's (reader_other_patient):
 * a reader reads no other patient's images this way.  0, or -1 NACKed. */
static int study_to_read(reader_link *l, proto_msg *m, const wl_task *t, char uid[STORE_UID_MAX])
{
    const char *prior = proto_str(m, "prior");
    if (!prior) {
        snprintf(uid, STORE_UID_MAX, "%s", t->study_uid);
        return 0;
    }
    store_study cur, old;
    if (!prior[0] || strlen(prior) >= STORE_UID_MAX) {
        nack(l, m, "prior: not a Study Instance UID");
        return -1;
    }
    if (store_get_study(l->cfg.st, t->study_uid, &cur) != 0 || !cur.patient_id[0]) {
        nack(l, m, "the task's study names no patient: no prior can be compared");
        return -1;
    }
    if (store_get_study(l->cfg.st, prior, &old) != 0) {
        nack(l, m, "that prior study is not held at this hub (a peer hub's prior: its report only)");
        return -1;
    }
    const char *why = reader_other_patient(&cur, &old);
    if (why) {
        nack(l, m, why);
        return -1;
    }
    snprintf(uid, STORE_UID_MAX, "%s", prior);
    return 0;
}


typedef struct study_ctx {
    json_t *list;
    size_t  skip, seen, total;
} study_ctx;

static int add_instance(void *ctx, const store_instance *in)
{
    study_ctx *s = ctx;
    s->total++;
    if (s->seen++ < s->skip || json_array_size(s->list) >= READER_STUDY_PAGE)
        return 0; /* counted, not listed: the total is what tells the reader to page */
    char hex[65];
    digest_hex(in->digest, hex);
    json_array_append_new(s->list, json_pack("{s:s,s:s,s:I,s:s,s:s,s:i}", "sop", in->sop_uid, "series", in->series_uid,
                                             "size", (json_int_t)in->size, "digest", hex, "ts", in->ts_uid, "number",
                                             (int)in->instance_number));
    return 0;
}

static void on_submit(reader_link *l, proto_msg *m, const wl_reader *r)
{
    long long id = proto_int(m, "task", -1);
    const char *action = proto_str(m, "action"), *rid = proto_str(m, "report_id");
    if (id < 0 || !action) {
        refuse(l, m, "SUBMIT needs task and action");
        return;
    }
    store_submission sub = {.task = (uint64_t)id, .reader = r, .action = action, .report_id = rid,
                            .reason = proto_str(m, "reason"), .verify = l->cfg.verify,
                            .verify_ctx = l->cfg.verify_ctx};
    if (m->n_data > 0) {
        sub.report = zmq_msg_data(&m->data[0]);
        sub.report_len = zmq_msg_size(&m->data[0]);
    }
    if (m->n_data > 1) {
        sub.sig = zmq_msg_data(&m->data[1]);
        sub.sig_len = zmq_msg_size(&m->data[1]);
    }
    if (m->n_data > 2) {
        sub.chain = zmq_msg_data(&m->data[2]);
        sub.chain_len = zmq_msg_size(&m->data[2]);
    }
    if (strcmp(action, "return") && !sub.report_len) {
        nack(l, m, "a report is required");
        return;
    }
    wl_task t;
    char why[256] = "";
    int rc = store_task_submit(l->cfg.st, &sub, now_ms(), &t, why, sizeof why);
    if (rc) {
        log_warn("readers: %s's %s of task %lld refused: %s", r->id, action, id, why);
        nack(l, m, why[0] ? why : wl_strerror(rc));
        return;
    }
    log_info("readers: %s: task %lld %s, now %s", r->id, id, action, wl_state_name((wl_state)t.state));
    /* A returned task is claimed again, but by its resident: to the reviewer it is "returned". */
    const char *state = !strcmp(action, "return") ? "returned" : wl_state_name((wl_state)t.state);
    reply(l, m, "ACK", json_pack("{s:I,s:s}", "task", (json_int_t)t.id, "state", state), NULL, 0);
    if (t.state == WL_SIGNED && l->cfg.on_report)
        l->cfg.on_report(l->cfg.on_report_ctx, &t, t.report_id);
}

/* HELD, DRAFT (reader_queries.c): read-only, answered at once; PRIORS,
 * PRIOR and a peer hub's prior, which may wait on another hub, answered
 * aside (reader_aside.c). */
static void on_query(reader_link *l, proto_msg *m, const wl_reader *r)
{
    if (reader_aside_wants(m)) {
        int rc = reader_aside_push(l->aside, m, r);
        if (rc < 0)
            nack(l, m, rc == -ENOSPC ? "the hub is busy with other lookups: try again" : "out of memory");
        return;
    }
    reader_answer a;
    if (reader_query(&l->cfg, m, r, &a) < 0) {
        nack(l, m, a.why);
        return;
    }
    reply(l, m, a.cmd, a.hdr, a.data, a.len);
    free(a.data);
}

/* Answers from reader_aside.c: sent and freed, with the array. */
static void send_aside_jobs(reader_link *l, aside_job *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        aside_job *j = &v[i];
        json_t *h = j->failed ? json_pack("{s:s}", "reason", j->answer.why) : json_incref(j->answer.hdr);
        if (h && j->req)
            json_object_set(h, "req", j->req);
        if (h)
            proto_send(l->router, &j->route, j->failed ? "NACK" : j->answer.cmd, h, j->answer.data, j->answer.len);
        json_decref(h);
        aside_job_free(j);
    }
    free(v);
}

static void send_aside(reader_link *l)
{
    aside_job *v;
    size_t n = reader_aside_take(l->aside, &v);
    send_aside_jobs(l, v, n);
}

/* CLAIM, HEARTBEAT, RELEASE: applied by the committer, answered once durable. */
static void on_batched(reader_link *l, proto_msg *m, int conn_index, const wl_reader *r)
{
    rc_kind kind = !strcmp(m->cmd, "CLAIM") ? RC_CLAIM : !strcmp(m->cmd, "HEARTBEAT") ? RC_HEARTBEAT : RC_RELEASE;
    long long tid = proto_int(m, "task", -1);
    if (kind != RC_HEARTBEAT && tid < 0) {
        nack(l, m, wl_strerror(WL_EINVAL));
        return;
    }
    if (commit_later(l, kind, conn_index, r, tid < 0 ? 0 : (uint64_t)tid, &m->route, m) < 0) {
        nack(l, m, "the hub is busy: try again");
        return;
    }
    /* A CLAIM may carry the next READY ("ready": credit): one message less
     * a round, and the next offer leaves now instead of after this claim's
     * commit.  It is an offer like any other (this task is already held or
     * offered to the reader, so it is never the one offered). */
    long long ready = kind == RC_CLAIM ? proto_int(m, "ready", -1) : -1;
    if (ready >= 0) {
        l->conns[conn_index].credit = ready > 100 ? 100 : (int)ready;
        l->conns[conn_index].credit_us = mono_us();
        l->conns[conn_index].waited = false;
        l->want_offer = true;
    }
}

static void on_message(reader_link *l, proto_msg *m)
{
    if (revoked_refuse(&l->revoked, m)) {
        revoked_answer(l->router, m);
        return;
    }
    if (strncmp(m->role, "reader:", 7)) {
        hub_count_error(l->cfg.metrics, HUB_ERR_AUTH);
        refuse(l, m, "this key's role may not read (reader:<id> required)");
        return;
    }
    const char *id = m->role + 7;
    wl_reader r;
    if (readers_find(l->cfg.profiles, id, &r) < 0) {
        refuse(l, m, "no reader profile for this reader on the hub");
        return;
    }
    conn *c = conn_of(l, id, m);
    if (!c) {
        refuse(l, m, "too many readers connected");
        return;
    }
    c->last_ms = now_ms();
    wl_task t;
    if (!strcmp(m->cmd, "READY")) {
        long long credit = proto_int(m, "credit", 1);
        c->credit = credit < 0 ? 0 : credit > 100 ? 100 : (int)credit;
        c->credit_us = mono_us();
        c->waited = false;
        l->want_offer = true; /* offered at the end of this turn */
        return;
    }
    if (!strcmp(m->cmd, "CLAIM") || !strcmp(m->cmd, "HEARTBEAT") || !strcmp(m->cmd, "RELEASE")) {
        on_batched(l, m, (int)(c - l->conns), &r);
        return;
    }
    flush(l); /* answers already durable go first */
    if (reader_aside_wants(m)) { /* a peer hub's prior too (STUDY, FETCH with "hub") */
        on_query(l, m, &r);
    } else if (!strcmp(m->cmd, "HELLO")) {
        static const char *const sen[] = {"resident", "attending", "chief"};
        c->credit = 0; /* Fix: a new session (maybe a new process under the same id) starts without the old credit */
        c->empty_gen = 0;
        reply(l, m, "WELCOME", json_pack("{s:s,s:s,s:s,s:i}", "reader", r.id, "seniority", sen[r.seniority % 3],
                                         "modalities", r.modalities, "max_tasks", r.max_tasks),
              NULL, 0);
    } else if (!strcmp(m->cmd, "STUDY")) {
        char uid[STORE_UID_MAX];
        if (held_task(l, m, r.id, &t, true) < 0 || study_to_read(l, m, &t, uid) < 0)
            return;
        long long off = proto_int(m, "offset", 0);
        study_ctx s = {json_array(), off < 0 ? 0 : (size_t)off, 0, 0};
        store_list_instances(l->cfg.st, uid, add_instance, &s);
        json_t *h = json_object();
        json_object_set_new(h, "offset", json_integer((json_int_t)s.skip));
        json_object_set_new(h, "total", json_integer((json_int_t)s.total));
        json_object_set_new(h, "task", json_integer((json_int_t)t.id));
        /* Added (hub_client): the study's UID, so a reader that holds a task
         * from an earlier session knows where its files belong. */
        json_object_set_new(h, "study", json_string(uid));
        json_object_set_new(h, "instances", s.list);
        char detail[64] = "study listing";
        if (strcmp(uid, t.study_uid))
            snprintf(detail, sizeof detail, "prior, %s task %llu",
                     json_is_true(json_object_get(m->hdr, "prefetch")) ? "prefetched for" : "compared in", (unsigned long long)t.id);
        if (reader_audit(&l->cfg, r.id, "read-study", uid, detail) < 0) {
            json_decref(h);
            nack(l, m, READER_AUDIT_WITHHELD);
            return;
        }
        reply(l, m, "STUDY", h, NULL, 0);
    } else if (!strcmp(m->cmd, "FETCH")) {
        char uid[STORE_UID_MAX];
        if (held_task(l, m, r.id, &t, true) < 0 || study_to_read(l, m, &t, uid) < 0)
            return;
        const char *sop = proto_str(m, "sop");
        long long off = proto_int(m, "offset", 0), len = proto_int(m, "length", FETCH_MAX);
        store_instance in;
        if (!sop || off < 0 || len <= 0 || store_get_instance(l->cfg.st, sop, &in) != 0 ||
            strcmp(in.study_uid, uid)) {
            nack(l, m, strcmp(uid, t.study_uid) ? "no such instance in that prior study"
                                                : "no such instance in this task's study");
            return;
        }
        size_t want = len > FETCH_MAX ? FETCH_MAX : (size_t)len;
        long got = store_read_instance(l->cfg.st, &in, (uint64_t)off, l->buf, want);
        if (got < 0) {
            nack(l, m, "cannot read the instance");
            return;
        }
        /* an instance's first chunk is its read; the rest are the same read */
        if (off == 0 && reader_audit(&l->cfg, r.id, "read-instance", uid, sop) < 0) {
            nack(l, m, READER_AUDIT_WITHHELD);
            return;
        }
        bool eof = (uint64_t)off + (uint64_t)got >= in.size;
        reply(l, m, "DATA", json_pack("{s:s,s:I,s:I,s:b}", "sop", sop, "offset", (json_int_t)off, "size",
                                      (json_int_t)in.size, "eof", eof),
              l->buf, (size_t)got);
    } else if (!strcmp(m->cmd, "SUBMIT")) {
        on_submit(l, m, &r);
        queue_changed(l); /* a draft queued for review, a return, a lease freed */
        l->want_offer = true;
    } else if (reader_query_known(m->cmd)) {
        on_query(l, m, &r);
    } else {
        refuse(l, m, "unknown command");
    }
}

static void *link_main(void *arg)
{
    reader_link *l = arg;
    int64_t last_tick = 0, last_rescan = 0;
    while (!l->stop) {
        zmq_pollitem_t items[4] = {{l->router, 0, ZMQ_POLLIN, 0}, {NULL, l->evfd, ZMQ_POLLIN, 0},
                                   {NULL, l->done_fd, ZMQ_POLLIN, 0}, {NULL, l->aside_fd, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 4, 200) < 0 && zmq_errno() == ETERM)
            break;
        if (items[3].revents & ZMQ_POLLIN) {
            uint64_t v;
            ssize_t r = read(l->aside_fd, &v, sizeof v);
            (void)r;
            send_aside(l);
        }
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t v;
            ssize_t r = read(l->evfd, &v, sizeof v);
            (void)r;
            queue_changed(l); /* new tasks, or a reload of the readers file */
            l->want_offer = true;
        }
        if (items[2].revents & ZMQ_POLLIN) {
            uint64_t v;
            ssize_t r = read(l->done_fd, &v, sizeof v);
            (void)r;
            flush(l);
        }
        for (int burst = 0; burst < 256 && (items[0].revents & ZMQ_POLLIN); burst++) {
            proto_msg m;
            char err[160];
            int rc = proto_recv(l->router, true, ZMQ_DONTWAIT, &m, err, sizeof err);
            if (rc == PROTO_MALFORMED)
                refuse(l, &m, err);
            else if (rc == PROTO_OK)
                on_message(l, &m);
            proto_msg_close(&m);
            if (rc < 0)
                break;
        }
        /* Expiries and escalations: index range scans, cheap enough for
         * every turn, but twice a second is as fine as leases need. */
        int64_t t = clock_mono_ms(); /* intervals (clock.h) */
        if (t - last_tick >= 500 && !l->tick_queued) {
            last_tick = t;
            l->tick_queued = commit_later(l, RC_TICK, -1, NULL, 0, NULL, NULL) == 0;
            if (l->offer_failed) {
                l->offer_failed = false;
                l->want_offer = true;
            }
        }
        if (t - last_rescan >= RESCAN_MS) {
            last_rescan = t;
            rescan_waiting(l);
        }
        /* Offers before the durable answers: the snapshot the offers are
         * picked on is taken after the commits taken here, and a TASK does
         * not queue behind a commit's worth of CLAIMED (~65 at a time
         * under load) on this thread and the I/O thread. */
        take_done(l);
        if (l->want_offer) {
            l->want_offer = false;
            offer_all(l);
        }
        send_done(l);
    }
    return NULL;
}

int reader_link_start(const reader_link_config *cfg, reader_link **out, char *err, size_t errlen)
{
    reader_link *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->cfg = *cfg;
    l->revoked = (revoked_watch){.allow = cfg->allow, .port = "readers", .st = cfg->st, .metrics = cfg->metrics};
    l->gen = 1;
    l->conns = calloc(MAX_READERS, sizeof *l->conns);
    l->buf = malloc(FETCH_MAX);
    l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    l->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    l->aside_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    l->unrecorded = offer_set_new(MAX_UNRECORDED);
    if (!l->conns || !l->buf || l->evfd < 0 || l->done_fd < 0 || l->aside_fd < 0 || !l->unrecorded) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    int arc = reader_aside_start(&l->cfg, l->aside_fd, &l->aside);
    if (arc < 0) {
        snprintf(err, errlen, "cannot start the threads for priors: %s", strerror(-arc));
        goto fail;
    }
    int crc = reader_commit_start(cfg->st, l->done_fd, &l->committer);
    if (crc < 0) {
        snprintf(err, errlen, "cannot start the worklist's commit thread: %s", strerror(-crc));
        goto fail;
    }
    l->router = proto_router_listen(cfg->zctx, cfg->bind, cfg->port, cfg->secret_key, &l->port, err, errlen);
    if (l->router && cfg->handshakes)
        handshake_watch_add(cfg->handshakes, l->router, "reader port");
    if (!l->router)
        goto fail;
    /* With ROUTER_MANDATORY a reader whose pipe is full (it sends FETCH
     * after FETCH and never reads) would block this thread, and every
     * reader with it, in zmq_send; give up on that reader after a second. */
    int sndtimeo = 1000;
    zmq_setsockopt(l->router, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    int trc = pthread_create(&l->thread, NULL, link_main, l);
    if (trc) {
        snprintf(err, errlen, "cannot start the readers' thread: %s", strerror(trc));
        goto fail;
    }
    pthread_setname_np(l->thread, "dxhub-readers"); /* per-thread CPU in top, perf and the worklist bench */
    *out = l;
    return 0;
fail:
    if (l->router)
        zmq_close(l->router);
    reader_commit_stop(&l->committer, &l->done);
    reader_aside_stop(&l->aside, NULL);
    rc_list_free(&l->done);
    offer_set_free(&l->unrecorded);
    if (l->evfd >= 0)
        close(l->evfd);
    if (l->done_fd >= 0)
        close(l->done_fd);
    if (l->aside_fd >= 0)
        close(l->aside_fd);
    free(l->conns);
    free(l->buf);
    free(l);
    return -EIO;
}

uint16_t reader_link_port(const reader_link *l) { return l->port; }

void reader_link_stop(reader_link **lp)
{
    if (!lp || !*lp)
        return;
    reader_link *l = *lp;
    l->stop = 1;
    reader_link_kick(l);
    pthread_join(l->thread, NULL);
    /* What the readers asked for is committed before the hub stops; the
     * answers go out if the readers are still there. */
    reader_commit_stop(&l->committer, &l->done);
    for (size_t i = 0; i < l->done.n; i++)
        send_answer(l, &l->done.v[i]);
    aside_job *rest;
    size_t n_rest = reader_aside_stop(&l->aside, &rest); /* the questions under way finish */
    send_aside_jobs(l, rest, n_rest);
    rc_list_free(&l->done);
    offer_set_free(&l->unrecorded);
    for (int i = 0; i < MAX_READERS; i++)
        if (l->conns[i].used)
            zmq_msg_close(&l->conns[i].route);
    zmq_close(l->router);
    close(l->evfd);
    close(l->done_fd);
    close(l->aside_fd);
    free(l->conns);
    free(l->buf);
    free(l);
    *lp = NULL;
}

/* test_link.c — the edge↔hub link in one process, with real parts: a real
 * store (LMDB in a temporary directory), the ZAP handler with a real
 * allow-list, link_hub on 127.0.0.1 with CURVE keys made by keys_generate,
 * and on a second ZeroMQ context (as a separate process would have) a real
 * spool and edge_link.
 *
 *  - instances queued with edge_queue travel, the spool empties, the store
 *    holds each with exactly the digest the edge computed, and the study
 *    marker (stat, referral, note) completes the study;
 *  - the same file queued again is answered HAVE: the spool empties, the
 *    store still has one copy;
 *  - a report and a critical-value alert put in the hub's outbox for the
 *    facility reach the edge's inbox, the alert first, and the outbox
 *    empties once the edge said DELIVERED.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <fcntl.h>
#include <zmq.h>
#include "hub/digest.h"
#include "hub/edge.h"
#include "hub/keys.h"
#include "hub/link.h"
#include "hub/metrics.h"
#include "hub/proto.h"
#include "hub/spool.h"
#include "hub/store.h"
#include "hub/zap.h"

#define FACILITY "clinic1"

#define AUDIT_LINE 1024

typedef struct trail {
    char     lines[64][AUDIT_LINE]; /* the first 64 walked */
    int      n;
    uint64_t last;                  /* the last sequence number walked */
} trail;

static int on_trail(void *ctx, uint64_t seq, const char *json, size_t len)
{
    trail *t = ctx;
    if (t->n < 64)
        snprintf(t->lines[t->n++], AUDIT_LINE, "%.*s", (int)len, json);
    t->last = seq;
    return 0;
}

static char corpus[1024];
static char tmpdir[256];

typedef struct world {
    store       *st;
    void        *hub_ctx, *edge_ctx;
    allowlist   *allow;
    zap_handler *zap;
    link_hub    *hub;
    hub_metrics  metrics;
    spool       *sp;
    edge_link   *edge;
    keypair      hub_kp, edge_kp;
    char         hub_ep[64]; /* the edge link keeps a pointer to it: it must outlive the link */
} world;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sub(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static void start_edge(world *w)
{
    char err[512];
    snprintf(w->hub_ep, sizeof w->hub_ep, "tcp://127.0.0.1:%u", link_hub_port(w->hub));
    edge_link_config ec = {.zctx = w->edge_ctx, .hub = w->hub_ep, .kp = &w->edge_kp, .hub_pub = w->hub_kp.pub,
                           .sp = w->sp, .max_inflight = 4};
    assert_int_equal(edge_link_start(&ec, &w->edge, err, sizeof err), 0);
}

static int setup(void **state)
{
    const char *c = getenv("DXHUB_CORPUS");
    snprintf(corpus, sizeof corpus, "%s", c ? c : "../shared/corpus");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dxhub-test-link-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));

    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    char err[512], dir[400], keys[400];
    sub(dir, sizeof dir, "hub");
    store_config sc = {.dir = dir};
    assert_int_equal(store_open(&sc, &w->st, err, sizeof err), 0);

    /* keys: the hub's pair, the edge's pair, the edge allowed as edge:clinic1 */
    sub(keys, sizeof keys, "keys");
    assert_int_equal(keys_generate(keys, "hub", &w->hub_kp, err, sizeof err), 0);
    assert_int_equal(keys_generate(keys, "edge", &w->edge_kp, err, sizeof err), 0);
    assert_int_equal(allowlist_edit(keys, w->edge_kp.pub, "edge:" FACILITY, 0, err, sizeof err), 0);
    w->allow = allowlist_new();
    assert_int_equal(allowlist_load(w->allow, keys, err, sizeof err), 1);

    /* the hub: ZAP before the CURVE server socket binds */
    w->hub_ctx = zmq_ctx_new();
    assert_int_equal(zap_start(w->hub_ctx, w->allow, NULL, NULL, &w->zap), 0);
    char incoming[400];
    sub(incoming, sizeof incoming, "hub/incoming");
    link_hub_config lc = {.zctx = w->hub_ctx, .bind = "127.0.0.1", .port = 0, .secret_key = w->hub_kp.sec,
                          .st = w->st, .incoming_dir = incoming, .metrics = &w->metrics, .workers = 2,
                          .redeliver_ms = 1500};
    assert_int_equal(link_hub_start(&lc, &w->hub, err, sizeof err), 0);
    assert_true(link_hub_port(w->hub) > 0);

    /* the edge, on a context of its own */
    sub(dir, sizeof dir, "edge");
    assert_int_equal(spool_open(dir, 256u << 20, &w->sp, err, sizeof err), 0);
    w->edge_ctx = zmq_ctx_new();
    start_edge(w);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    edge_link_stop(&w->edge);
    zmq_ctx_term(w->edge_ctx);
    spool_close(&w->sp);
    link_hub_stop(&w->hub);
    zap_stop(&w->zap);
    zmq_ctx_term(w->hub_ctx);
    allowlist_free(&w->allow);
    store_close(&w->st);
    free(w);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

/* Poll cond(w) every 20 ms for up to 20 s. */
static int wait_until(world *w, int (*cond)(world *))
{
    for (int i = 0; i < 1000; i++) {
        if (cond(w))
            return 1;
        usleep(20000);
    }
    return cond(w);
}

static int spool_empty(world *w)
{
    spool_stats s;
    return spool_get_stats(w->sp, &s) == 0 && s.depth == 0 && s.markers == 0 && s.failed == 0;
}

typedef struct queued {
    spool_item it[8];
    int        n;
} queued;

static void remember(void *ctx, const char *path, const spool_item *it, edge_outcome outcome, const char *error)
{
    queued *q = ctx;
    if (!it || outcome != EDGE_QUEUED)
        fail_msg("edge_queue refused %s: %s", path, error);
    else if (q->n < 8)
        q->it[q->n++] = *it;
}

static const char *const FILES[] = {"dicom/explicit_le/CT_small.dcm", "dicom/explicit_le/MR-SIEMENS-DICOM-WithOverlays.dcm",
                                    "dicom/jpeg_baseline_50/SC_rgb_dcmtk_+eb+cy+np.dcm"};
#define N_FILES (sizeof FILES / sizeof FILES[0])

static void queue_files(world *w, queued *q, int priority, int referral, const char *note)
{
    char paths[N_FILES][1400];
    const char *pp[N_FILES];
    for (size_t i = 0; i < N_FILES; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", corpus, FILES[i]);
        pp[i] = paths[i];
    }
    memset(q, 0, sizeof *q);
    assert_int_equal(edge_queue(w->sp, pp, N_FILES, priority, referral, note, "push", EDGE_LINK_TS_DEFAULT, 1,
                                remember, NULL, q),
                     (int)N_FILES);
    assert_int_equal(q->n, (int)N_FILES);
}

static void test_instances_travel_and_arrive_with_the_edges_digest(void **state)
{
    world *w = *state;
    queued q;
    queue_files(w, &q, PRIO_STAT, 1, "chest pain");
    assert_true(wait_until(w, spool_empty));

    for (int i = 0; i < q.n; i++) {
        store_instance in;
        assert_int_equal(store_get_instance(w->st, q.it[i].sop_uid, &in), 0);
        assert_memory_equal(in.digest, q.it[i].digest, 32); /* what the edge offered is what is durable */
        assert_string_equal(in.ts_uid, q.it[i].ts_uid);
        assert_int_equal(in.size, q.it[i].size);
        assert_string_equal(in.source, "edge:" FACILITY);
        assert_int_equal(in.conflict, 0);
        /* and the bytes the hub serves hash to it */
        uint8_t *buf = malloc(in.size);
        assert_non_null(buf);
        for (uint64_t off = 0; off < in.size;) {
            long got = store_read_instance(w->st, &in, off, buf + off, in.size - off);
            assert_true(got > 0);
            off += (uint64_t)got;
        }
        assert_memory_equal(buf + 128, "DICM", 4);
        char path[400];
        sub(path, sizeof path, "served.dcm");
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(buf, 1, in.size, fp), in.size);
        fclose(fp);
        free(buf);
        int fd = open(path, O_RDONLY);
        uint8_t dg[32];
        assert_int_equal(digest_fd(fd, in.dataset_offset, dg), 0);
        close(fd);
        assert_memory_equal(dg, q.it[i].digest, 32);
    }
    /* the CT went JPEG-LS for the link; the JPEG baseline travelled as it was */
    assert_string_equal(q.it[0].ts_uid, "1.2.840.10008.1.2.4.80");
    assert_string_equal(q.it[2].ts_uid, "1.2.840.10008.1.2.4.50");

    /* each file is its own study here: every marker completed its study at once */
    for (int i = 0; i < q.n; i++) {
        store_study st;
        assert_int_equal(store_get_study(w->st, q.it[i].study_uid, &st), 0);
        assert_int_equal(st.expected, 1);
        assert_int_equal(st.n_instances, 1);
        assert_int_equal(st.priority, PRIO_STAT);
        assert_int_equal(st.referral, 1);
        assert_string_equal(st.note, "chest pain");
        assert_true(st.completed_ms > 0);
    }
    spool_stats s;
    assert_int_equal(spool_get_stats(w->sp, &s), 0);
    assert_int_equal(s.delivered, N_FILES);
}

static void test_the_same_instance_again_is_answered_have(void **state)
{
    world *w = *state;
    queued q;
    queue_files(w, &q, PRIO_ROUTINE, 0, NULL);
    assert_true(wait_until(w, spool_empty));
    store_stats ss;
    assert_int_equal(store_get_stats(w->st, &ss), 0);
    assert_int_equal(ss.instances, N_FILES); /* stored once, acknowledged twice */
    assert_int_equal(ss.conflicts, 0);
}

typedef struct inbox_seen {
    char    ids[4][64];
    char    kinds[4][16];
    int64_t when[4];
    size_t  len[4];
    int     n;
} inbox_seen;

static int on_inbox(void *ctx, const char *id, const char *kind, int64_t received_ms, const void *data, size_t len)
{
    inbox_seen *s = ctx;
    (void)data;
    if (s->n < 4) {
        snprintf(s->ids[s->n], sizeof s->ids[0], "%s", id);
        snprintf(s->kinds[s->n], sizeof s->kinds[0], "%s", kind);
        s->when[s->n] = received_ms;
        s->len[s->n] = len;
        s->n++;
    }
    return 0;
}

static int count_cb(void *ctx, const char *id, const char *kind, const void *data, size_t len)
{
    (void)id;
    (void)data;
    (void)len;
    char(*order)[16] = ctx;
    for (int i = 0; i < 4; i++)
        if (!order[i][0]) {
            snprintf(order[i], 16, "%s", kind);
            break;
        }
    return 0;
}

static int inbox_has_two(world *w)
{
    inbox_seen s = {0};
    return spool_inbox_list(w->sp, on_inbox, &s) == 2;
}

static int outbox_empty(world *w)
{
    char order[4][16] = {{0}};
    return store_outbox_list(w->st, FACILITY, count_cb, order) == 0 && !order[0][0];
}

static int count_untold(void *ctx, const char *id, const spool_confirmation *c)
{
    (void)id, (void)c;
    ++*(int *)ctx;
    return 0;
}

static int first_waiting(void *ctx, const store_outbox_waiting *w)
{
    *(store_outbox_waiting *)ctx = *w;
    return 1;
}

static void test_reports_and_alerts_come_back_alert_first(void **state)
{
    world *w = *state;
    static const char report[] = "{\"report\":\"no acute findings\"}";
    static const char alert[] = "{\"critical\":\"STEMI\"}";
    /* the report is put first; the alert must still travel first */
    assert_int_equal(store_outbox_put(w->st, FACILITY, "rpt-0001", "report", report, sizeof report - 1, now_ms()), 0);
    assert_int_equal(store_outbox_put(w->st, FACILITY, "alert-0001", "alert", alert, sizeof alert - 1, now_ms()), 0);
    char order[4][16] = {{0}};
    store_outbox_list(w->st, FACILITY, count_cb, order);
    assert_string_equal(order[0], "alert");
    assert_string_equal(order[1], "report");
    link_hub_kick(w->hub);

    assert_true(wait_until(w, inbox_has_two));
    inbox_seen s = {0};
    assert_int_equal(spool_inbox_list(w->sp, on_inbox, &s), 2);
    int a = !strcmp(s.kinds[0], "alert") ? 0 : 1, r = 1 - a;
    assert_string_equal(s.ids[a], "alert-0001");
    assert_string_equal(s.kinds[r], "report");
    assert_string_equal(s.ids[r], "rpt-0001");
    assert_int_equal(s.len[a], sizeof alert - 1);
    assert_int_equal(s.len[r], sizeof report - 1);
    assert_true(s.when[a] <= s.when[r]); /* the alert arrived first (or in the same millisecond) */

    /* DELIVERED empties the hub's outbox */
    assert_true(wait_until(w, outbox_empty));
    spool_stats ss;
    assert_int_equal(spool_get_stats(w->sp, &ss), 0);
    assert_int_equal(ss.inbox, 2);

    /* what became of the alert here: announced, then read by a person;
     * one record keeps both (the link stopped: its keep-alive would tell
     * the hub meanwhile) */
    edge_link_stop(&w->edge);
    int64_t when = 0;
    assert_int_equal(spool_alert_announced(w->sp, "alert-0001", &when), -ENOENT);
    assert_int_equal(spool_alert_set_announced(w->sp, "alert-0001", 1234), 0);
    assert_int_equal(spool_alert_announced(w->sp, "alert-0001", &when), 0);
    assert_int_equal(when, 1234);
    spool_confirmation c;
    assert_int_equal(spool_alert_confirmation(w->sp, "alert-0001", &c), -ENOENT);
    assert_int_equal(spool_alert_confirm(w->sp, "rpt-0001", "nurse Li", "local:nurse", 2000, &c), -EINVAL); /* a report */
    assert_int_equal(spool_alert_confirm(w->sp, "nosuch", "nurse Li", "local:nurse", 2000, &c), -ENOENT);
    assert_int_equal(spool_alert_confirm(w->sp, "alert-0001", "nurse Li", "local:nurse", 2000, &c), 0);
    assert_int_equal(spool_alert_confirm(w->sp, "alert-0001", "nurse Wu", "local:nurse", 3000, &c), -EEXIST);
    assert_string_equal(c.by, "nurse Li");
    assert_int_equal(c.at_ms, 2000);
    assert_int_equal(spool_alert_announced(w->sp, "alert-0001", &when), 0); /* kept beside the confirmation */
    assert_int_equal(when, 1234);
    int untold = 0;
    assert_int_equal(spool_alert_untold(w->sp, count_untold, &untold), 1);
    assert_int_equal(spool_alert_told(w->sp, "alert-0001"), 0);
    assert_int_equal(spool_alert_untold(w->sp, count_untold, &untold), 0);
    assert_int_equal(spool_alert_confirmation(w->sp, "alert-0001", &c), 0);
    assert_true(c.told_hub);
    assert_string_equal(c.by, "nurse Li");
    /* the clinic's trail: both arrivals, the announcement and the one
     * confirmation (not the refused ones), in that order */
    trail t = {0};
    assert_true(spool_audit_walk(w->sp, 1, on_trail, &t) >= 4);
    const char *want[] = {"\"what\":\"alert-received\"", "\"what\":\"report-received\"",
                          "\"what\":\"alert-announced\"", "\"what\":\"alert-read\""};
    int at = 0;
    for (int i = 0; i < t.n && at < 4; i++)
        if (strstr(t.lines[i], want[at]) || (at < 2 && strstr(t.lines[i], want[1 - at])))
            at++;
    assert_int_equal(at, 4);
    assert_non_null(strstr(t.lines[t.n - 1], "\"who\":\"local:nurse\""));
    assert_non_null(strstr(t.lines[t.n - 1], "\"detail\":\"id=alert-0001 by=nurse Li\""));
    assert_non_null(strstr(t.lines[t.n - 2], "\"t\":1234,\"who\":\"on-alert\",\"what\":\"alert-announced\""));
    /* the hub: the alert the gateway took is unread until then */
    store_outbox_waiting unread = {0};
    store_outbox_summary(w->st, first_waiting, &unread);
    assert_string_equal(unread.facility, FACILITY);
    assert_int_equal(unread.unread_alerts, 1);
    start_edge(w);
}

typedef struct leftovers {
    uint64_t seq[256];
    int      n;
} leftovers;

static int on_leftover(void *ctx, const spool_item *it)
{
    leftovers *l = ctx;
    if (l->n < (int)(sizeof l->seq / sizeof l->seq[0]))
        l->seq[l->n++] = it->seq;
    return 0;
}

/* The clinic's trail: a study received (who pushed it, its patient), an
 * item the hub refused for good, and the study delivered once its last
 * instance is acknowledged. */
static void test_the_clinics_trail_follows_a_study_received_refused_and_delivered(void **state)
{
    world *w = *state;
    edge_link_stop(&w->edge); /* nothing leaves until the test says */
    /* Earlier tests' copies of these studies out of the way first: a study
     * is "delivered" once none of its items is left, and theirs may still
     * be on their way, or waiting out a retry's backoff. */
    leftovers left = {0};
    spool_list(w->sp, 1, on_leftover, &left);
    for (int i = 0; i < left.n; i++)
        spool_remove(w->sp, left.seq[i]);
    trail before = {0};
    spool_audit_walk(w->sp, 1, on_trail, &before);
    uint64_t from = before.last + 1; /* what this test adds */
    queued q;
    queue_files(w, &q, PRIO_ROUTINE, 0, "");
    trail t = {0};
    spool_audit_walk(w->sp, from, on_trail, &t);
    int received = 0;
    for (int i = 0; i < t.n; i++)
        received += strstr(t.lines[i], "\"who\":\"push\",\"what\":\"received\"") != NULL;
    assert_true(received >= 1 && received == t.n); /* one per study of the batch, and nothing else */
    spool_item it = q.it[0];
    it.failed = 1;
    snprintf(it.last_error, sizeof it.last_error, "not a DICOM object the hub can store");
    assert_int_equal(spool_update(w->sp, &it), 0);
    assert_int_equal(spool_update(w->sp, &it), 0); /* still refused: said once */
    memset(&t, 0, sizeof t);
    spool_audit_walk(w->sp, from, on_trail, &t);
    assert_int_equal(t.n, received + 1);
    const char *last = t.lines[t.n - 1];
    assert_non_null(strstr(last, "\"who\":\"hub\",\"what\":\"refused\""));
    assert_non_null(strstr(last, it.sop_uid));
    assert_non_null(strstr(last, "not a DICOM object the hub can store"));
    for (int i = 0; i < q.n; i++)
        spool_remove(w->sp, q.it[i].seq);
    memset(&t, 0, sizeof t);
    spool_audit_walk(w->sp, from, on_trail, &t);
    int delivered = 0;
    for (int i = 0; i < t.n; i++)
        delivered += strstr(t.lines[i], "\"who\":\"hub\",\"what\":\"delivered\"") && strstr(t.lines[i], q.it[1].study_uid);
    assert_int_equal(delivered, 1);
    start_edge(w);
}

/* The retries were set (a backoff of at most 5 min) before the wall clock
 * went back an hour: they are due now, not in an hour. */
static void test_retries_set_before_the_clock_went_back_are_not_waited_out(void **state)
{
    world *w = *state;
    edge_link_stop(&w->edge); /* nothing leaves while the retries are set */
    queued q;
    queue_files(w, &q, PRIO_STAT, 0, "");
    for (int i = 0; i < q.n; i++) {
        spool_item it = q.it[i];
        it.attempts = 3;
        it.next_try_ms = now_ms() + 3600 * 1000LL;
        assert_int_equal(spool_update(w->sp, &it), 0);
    }
    start_edge(w);
    assert_true(wait_until(w, spool_empty)); /* 20 s at most */
    /* a retry within the backoff's length still waits */
    edge_link_stop(&w->edge);
    queue_files(w, &q, PRIO_ROUTINE, 0, "");
    spool_item it = q.it[0];
    it.attempts = 3;
    it.next_try_ms = now_ms() + 120 * 1000LL;
    assert_int_equal(spool_update(w->sp, &it), 0);
    start_edge(w);
    usleep(3000 * 1000);
    spool_stats s;
    assert_int_equal(spool_get_stats(w->sp, &s), 0);
    assert_int_equal(s.depth, 1);
}

/* DELIVERs of one id seen on a clinic's socket within ms, sending PING
 * (the edge's keep-alive) every 250 ms. */
static int delivers_seen(void *s, const char *id, int ms)
{
    int seen = 0;
    for (int64_t stop = now_ms() + ms; now_ms() < stop;) {
        proto_send(s, NULL, "PING", NULL, NULL, 0);
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        int64_t end = now_ms() + 250;
        while (now_ms() < end) {
            if (zmq_poll(&it, 1, 50) <= 0)
                continue;
            proto_msg m;
            char err[160];
            if (proto_recv(s, false, ZMQ_DONTWAIT, &m, err, sizeof err) == PROTO_OK && !strcmp(m.cmd, "DELIVER") &&
                proto_str(&m, "id") && !strcmp(proto_str(&m, "id"), id))
                seen++;
            proto_msg_close(&m);
        }
    }
    return seen;
}

/* A critical value reaches a clinic whose edge cannot keep it (its disk
 * full): not acknowledged, it is sent again at the edge's keep-alives
 * until it is, not only at the next report or reconnection. */
static void test_an_unacknowledged_delivery_is_sent_again(void **state)
{
    world *w = *state;
    edge_link_stop(&w->edge);
    static const char alert[] = "{\"critical\":\"K+ 7.1 mmol/L\"}";
    assert_int_equal(store_outbox_put(w->st, FACILITY, "alert-0002", "alert", alert, sizeof alert - 1, now_ms()), 0);
    void *ctx = zmq_ctx_new(); /* its own: a failed assertion leaves it open without hanging teardown */
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    proto_tune(s);
    assert_int_equal(proto_curve_client(s, w->edge_kp.pub, w->edge_kp.sec, w->hub_kp.pub), 0);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%u", link_hub_port(w->hub));
    assert_int_equal(zmq_connect(s, ep), 0);
    assert_int_equal(proto_send(s, NULL, "HELLO", NULL, NULL, 0), 0);
    assert_true(delivers_seen(s, "alert-0002", 5000) >= 3); /* at HELLO, then every 1.5 s */
    json_t *ack = json_pack("{s:s}", "id", "alert-0002");
    assert_int_equal(proto_send(s, NULL, "DELIVERED", ack, NULL, 0), 0);
    json_decref(ack);
    usleep(300 * 1000);
    assert_int_equal(delivers_seen(s, "alert-0002", 3000), 0); /* acknowledged: gone from the outbox */
    zmq_close(s);
    zmq_ctx_term(ctx);
    start_edge(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_instances_travel_and_arrive_with_the_edges_digest),
        cmocka_unit_test(test_the_same_instance_again_is_answered_have),
        cmocka_unit_test(test_reports_and_alerts_come_back_alert_first),
        cmocka_unit_test(test_retries_set_before_the_clock_went_back_are_not_waited_out),
        cmocka_unit_test(test_the_clinics_trail_follows_a_study_received_refused_and_delivered),
        cmocka_unit_test(test_an_unacknowledged_delivery_is_sent_again),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_hub_client.c — the reader protocol's client (hub/hub_client.c)
 * against a scripted hub: a real ROUTER socket with CURVE on 127.0.0.1 in a
 * thread, answering as the scenario needs — late answers to old requests,
 * offers arriving in the middle of a request, NACK, ERROR with and without
 * "req", silence, chunked FETCH, SUBMIT frames, lease keep-alive — and a
 * ZAP handler with an empty allow-list for a refused key. */
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
#include <jansson.h>
#include <pthread.h>
#include <zmq.h>
#include "hub/hub.h"
#include "hub/keys.h"
#include "hub/proto.h"
#include "hub/zap.h"

#define BLOB_SIZE (2u * 1024 * 1024 + 12345)

typedef struct fake_hub {
    void           *ctx, *router;
    pthread_t       thread;
    volatile int    stop;
    char            endpoint[64];
    char            pub[41], sec[41];
    uint8_t        *blob;
    /* what it saw */
    volatile int    heartbeats, fetches;
    size_t          submit_frames, submit_sizes[4];
    char            submit_action[16];
} fake_hub;

static char client_pub[41], client_sec[41];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_to(fake_hub *h, proto_msg *m, const char *cmd, json_t *hdr, const void *data, size_t n)
{
    proto_send(h->router, &m->route, cmd, hdr, data, n);
    json_decref(hdr);
}

static json_t *task_obj(long long id, const char *prio, int review)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:s,s:s,s:I,s:i,s:b,s:s,s:i}", "id", (json_int_t)id,
                     "study", "1.2.3.4", "kind", "imaging", "priority", prio, "modality", "CT", "body_part", "CHEST",
                     "facility", "clinic1", "referral", 0, "note", "cough", "triage", "", "state", "offered", "due",
                     (json_int_t)1234, "version", 1, "review", review, "patient_id", "P1", "instances", 3);
}

static void handle(fake_hub *h, proto_msg *m)
{
    json_t *req = json_object_get(m->hdr, "req");
    json_int_t r = json_is_integer(req) ? json_integer_value(req) : -1;
    if (!strcmp(m->cmd, "HELLO")) {
        send_to(h, m, "WELCOME",
                json_pack("{s:I,s:s,s:s,s:s,s:i}", "req", r, "reader", "dr-test", "seniority", "attending",
                          "modalities", "CT,MR", "max_tasks", 3),
                NULL, 0);
    } else if (!strcmp(m->cmd, "READY")) {
        long long credit = proto_int(m, "credit", 0);
        if (credit == 7) { /* a hub refusing READY answers ERROR with the req */
            send_to(h, m, "ERROR", json_pack("{s:s,s:s,s:I}", "error", "no reader profile", "to", "READY", "req", r),
                    NULL, 0);
            return;
        }
        for (long long i = 0; i < credit && i < 2; i++)
            send_to(h, m, "TASK", json_pack("{s:o}", "task", task_obj(10 + i, i ? "routine" : "stat", 0)), NULL, 0);
    } else if (!strcmp(m->cmd, "CLAIM")) {
        long long id = proto_int(m, "task", -1);
        if (id == 66) {
            send_to(h, m, "NACK", json_pack("{s:I,s:s}", "req", r, "reason", "the task is offered to someone else"),
                    NULL, 0);
            return;
        }
        /* a late answer to some old request, an offer, then ours */
        send_to(h, m, "CLAIMED", json_pack("{s:I,s:o}", "req", r + 1000, "task", task_obj(999, "stat", 0)), NULL, 0);
        send_to(h, m, "TASK", json_pack("{s:o}", "task", task_obj(77, "urgent", 1)), NULL, 0);
        send_to(h, m, "CLAIMED",
                json_pack("{s:I,s:o,s:I}", "req", r, "task", task_obj(id, "stat", id == 11), "lease_until",
                          (json_int_t)(now_ms() + 600)),
                NULL, 0);
    } else if (!strcmp(m->cmd, "HEARTBEAT")) {
        h->heartbeats++;
        send_to(h, m, "HEARTBEAT", json_pack("{s:I,s:i}", "req", r, "leases", 1), NULL, 0);
    } else if (!strcmp(m->cmd, "RELEASE")) {
        long long id = proto_int(m, "task", -1);
        if (id == 98) /* an ERROR that does not echo req, naming the command */
            send_to(h, m, "ERROR", json_pack("{s:s,s:s}", "error", "RELEASE needs task", "to", "RELEASE"), NULL, 0);
        else if (id == 97)
            ; /* silence */
        else
            send_to(h, m, "OK", json_pack("{s:I}", "req", r), NULL, 0);
    } else if (!strcmp(m->cmd, "STUDY")) {
        json_t *list = json_array();
        json_array_append_new(list, json_pack("{s:s,s:s,s:I,s:s,s:s,s:i}", "sop", "1.2.3.4.5", "series", "1.2.3.4.1",
                                              "size", (json_int_t)BLOB_SIZE, "digest",
                                              "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "ts",
                                              "1.2.840.10008.1.2.1", "number", 1));
        send_to(h, m, "STUDY", json_pack("{s:I,s:I,s:s,s:o}", "req", r, "task", (json_int_t)proto_int(m, "task", 0),
                                         "study", "1.2.3.4", "instances", list),
                NULL, 0);
    } else if (!strcmp(m->cmd, "FETCH")) {
        h->fetches++;
        long long off = proto_int(m, "offset", 0), len = proto_int(m, "length", 1 << 20);
        if (len > (1 << 20))
            len = 1 << 20;
        if (off > BLOB_SIZE)
            off = BLOB_SIZE;
        size_t n = (size_t)(off + len > BLOB_SIZE ? BLOB_SIZE - off : len);
        send_to(h, m, "DATA",
                json_pack("{s:I,s:s,s:I,s:I,s:b}", "req", r, "sop", proto_str(m, "sop"), "offset", (json_int_t)off,
                          "size", (json_int_t)BLOB_SIZE, "eof", (size_t)off + n >= BLOB_SIZE),
                h->blob + off, n);
    } else if (!strcmp(m->cmd, "SUBMIT")) {
        h->submit_frames = m->n_data;
        for (size_t i = 0; i < m->n_data && i < 4; i++)
            h->submit_sizes[i] = zmq_msg_size(&m->data[i]);
        snprintf(h->submit_action, sizeof h->submit_action, "%s", proto_str(m, "action") ? proto_str(m, "action") : "");
        send_to(h, m, "ACK", json_pack("{s:I,s:I,s:s}", "req", r, "task", (json_int_t)proto_int(m, "task", 0), "state",
                                       "review"),
                NULL, 0);
    } else if (!strcmp(m->cmd, "SLOW")) {
        ; /* never answered */
    }
}

static void *hub_main(void *arg)
{
    fake_hub *h = arg;
    while (!h->stop) {
        zmq_pollitem_t it = {h->router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        proto_msg m;
        char err[128];
        int rc = proto_recv(h->router, true, ZMQ_DONTWAIT, &m, err, sizeof err);
        if (rc == PROTO_OK)
            handle(h, &m);
        proto_msg_close(&m);
    }
    return NULL;
}

static fake_hub *hub_start(allowlist *zap_allow, zap_handler **zap)
{
    fake_hub *h = calloc(1, sizeof *h);
    h->ctx = zmq_ctx_new();
    if (zap_allow)
        assert_int_equal(zap_start(h->ctx, zap_allow, NULL, NULL, zap), 0);
    assert_int_equal(zmq_curve_keypair(h->pub, h->sec), 0);
    h->router = zmq_socket(h->ctx, ZMQ_ROUTER);
    proto_tune(h->router);
    assert_int_equal(proto_curve_server(h->router, h->sec), 0);
    assert_int_equal(zmq_bind(h->router, "tcp://127.0.0.1:*"), 0);
    size_t l = sizeof h->endpoint;
    zmq_getsockopt(h->router, ZMQ_LAST_ENDPOINT, h->endpoint, &l);
    h->blob = malloc(BLOB_SIZE);
    for (size_t i = 0; i < BLOB_SIZE; i++)
        h->blob[i] = (uint8_t)(i * 2654435761u >> 24);
    pthread_create(&h->thread, NULL, hub_main, h);
    return h;
}

static void hub_stop(fake_hub *h, zap_handler **zap)
{
    h->stop = 1;
    pthread_join(h->thread, NULL);
    zmq_close(h->router);
    if (zap)
        zap_stop(zap);
    zmq_ctx_term(h->ctx);
    free(h->blob);
    free(h);
}

static hub_client *connect_to(fake_hub *h, int timeout_ms)
{
    hub_client_config cfg = {.endpoint = h->endpoint, .hub_public = h->pub, .public_key = client_pub,
                             .secret_key = client_sec, .timeout_ms = timeout_ms};
    hub_client *c = NULL;
    char err[256];
    assert_int_equal(hub_client_open(&cfg, &c, err, sizeof err), 0);
    return c;
}

static int setup(void **state)
{
    (void)state;
    return zmq_curve_keypair(client_pub, client_sec);
}

/* --- tests ----------------------------------------------------------------------- */

static void test_hello_ready_offers_in_order(void **state)
{
    (void)state;
    fake_hub *h = hub_start(NULL, NULL);
    hub_client *c = connect_to(h, 3000);
    char id[64];
    assert_int_equal(hub_client_hello(c, id, sizeof id), 0);
    assert_string_equal(id, "dr-test");
    hub_reader_profile p;
    assert_int_equal(hub_client_profile(c, &p), 0);
    assert_string_equal(p.seniority, "attending");
    assert_int_equal(p.max_tasks, 3);
    assert_int_equal(hub_client_ready(c, 2), 0);
    hub_task t;
    assert_int_equal(hub_client_next_offer(c, 3000, &t), 0);
    assert_int_equal(t.id, 10);
    assert_string_equal(t.priority, "stat");
    assert_string_equal(t.study_uid, "1.2.3.4");
    assert_string_equal(t.facility, "clinic1");
    assert_string_equal(t.note, "cough");
    assert_int_equal(t.instances, 3);
    assert_int_equal(t.due_ms, 1234);
    assert_int_equal(hub_client_next_offer(c, 3000, &t), 0);
    assert_int_equal(t.id, 11);
    assert_int_equal(hub_client_next_offer(c, 0, &t), HUB_ETIMEDOUT);
    hub_client_close(&c);
    assert_null(c);
    hub_stop(h, NULL);
}

static void test_claim_matches_req_and_buffers_offers(void **state)
{
    (void)state;
    fake_hub *h = hub_start(NULL, NULL);
    hub_client *c = connect_to(h, 3000);
    hub_client_keepalive(c, -1);
    hub_task t;
    /* the stale CLAIMED (task 999) is dropped, the TASK (77) kept */
    assert_int_equal(hub_client_claim(c, 11, &t), 0);
    assert_int_equal(t.id, 11);
    assert_int_equal(t.review, 1);
    assert_true(hub_client_lease_until(c) > now_ms());
    assert_int_equal(hub_client_leases(c), 1);
    assert_int_equal(hub_client_next_offer(c, 0, &t), 0);
    assert_int_equal(t.id, 77);
    assert_string_equal(t.priority, "urgent");
    assert_int_equal(hub_client_next_offer(c, 0, &t), HUB_ETIMEDOUT);
    hub_client_close(&c);
    hub_stop(h, NULL);
}

static void test_refusals_and_timeouts(void **state)
{
    (void)state;
    fake_hub *h = hub_start(NULL, NULL);
    hub_client *c = connect_to(h, 400);
    hub_task t;
    assert_int_equal(hub_client_claim(c, 66, &t), HUB_EREFUSED);
    assert_string_equal(hub_client_error(c), "the task is offered to someone else");
    assert_int_equal(hub_client_release(c, 98), HUB_EREFUSED);
    assert_string_equal(hub_client_error(c), "RELEASE needs task");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(hub_client_release(c, 97), HUB_ETIMEDOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double waited = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(waited >= 0.35 && waited < 2.0);
    assert_non_null(strstr(hub_client_error(c), "no answer"));
    /* the client still works after a timeout */
    assert_int_equal(hub_client_release(c, 5), 0);
    /* a READY the hub refuses shows up while waiting for offers */
    assert_int_equal(hub_client_ready(c, 7), 0);
    assert_int_equal(hub_client_next_offer(c, 2000, &t), HUB_EREFUSED);
    assert_string_equal(hub_client_error(c), "no reader profile");
    hub_client_close(&c);
    hub_stop(h, NULL);
}

typedef struct collect {
    uint8_t *buf;
    uint64_t next, calls;
} collect;

static int collect_sink(void *ctx, uint64_t offset, const void *p, size_t n)
{
    collect *k = ctx;
    if (offset != k->next)
        return 1;
    memcpy(k->buf + offset, p, n);
    k->next = offset + n;
    k->calls++;
    return 0;
}

static void test_study_fetch_resume(void **state)
{
    (void)state;
    fake_hub *h = hub_start(NULL, NULL);
    hub_client *c = connect_to(h, 3000);
    hub_instance *list;
    size_t n;
    assert_int_equal(hub_client_study(c, 5, &list, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].sop_uid, "1.2.3.4.5");
    assert_int_equal(list[0].size, BLOB_SIZE);
    assert_int_equal(strlen(list[0].digest), 64);
    free(list);
    char uid[65];
    assert_int_equal(hub_client_study_uid(c, 5, uid, sizeof uid), 0);
    assert_string_equal(uid, "1.2.3.4");
    collect k = {calloc(1, BLOB_SIZE), 0, 0};
    assert_int_equal(hub_client_fetch(c, 5, "1.2.3.4.5", 0, collect_sink, &k), 0);
    assert_int_equal(k.next, BLOB_SIZE);
    assert_int_equal(k.calls, 3);
    assert_memory_equal(k.buf, h->blob, BLOB_SIZE);
    /* resumed from an offset: only the rest comes */
    memset(k.buf, 0, BLOB_SIZE);
    k.next = 2000000;
    k.calls = 0;
    assert_int_equal(hub_client_fetch(c, 5, "1.2.3.4.5", 2000000, collect_sink, &k), 0);
    assert_int_equal(k.next, BLOB_SIZE);
    assert_memory_equal(k.buf + 2000000, h->blob + 2000000, BLOB_SIZE - 2000000);
    free(k.buf);
    hub_client_close(&c);
    hub_stop(h, NULL);
}

static void test_submit_frames(void **state)
{
    (void)state;
    fake_hub *h = hub_start(NULL, NULL);
    hub_client *c = connect_to(h, 3000);
    char st[16];
    const char rep[] = "{\"impression\":\"normal\"}";
    assert_int_equal(hub_client_submit(c, 5, "draft", "r1", rep, sizeof rep - 1, NULL, 0, NULL, 0, st, sizeof st), 0);
    assert_string_equal(st, "review");
    assert_int_equal(h->submit_frames, 1);
    assert_int_equal(h->submit_sizes[0], sizeof rep - 1);
    assert_string_equal(h->submit_action, "draft");
    assert_int_equal(hub_client_submit(c, 5, "sign", "r2", rep, sizeof rep - 1, "SIG", 3, "PEM!", 4, st, sizeof st), 0);
    assert_int_equal(h->submit_frames, 3);
    assert_int_equal(h->submit_sizes[1], 3);
    assert_int_equal(h->submit_sizes[2], 4);
    assert_int_equal(hub_client_submit(c, 5, "return", "r3", NULL, 0, NULL, 0, NULL, 0, st, sizeof st), 0);
    assert_int_equal(h->submit_frames, 0);
    hub_client_close(&c);
    hub_stop(h, NULL);
}

static void test_keepalive_heartbeats_while_waiting(void **state)
{
    (void)state;
    fake_hub *h = hub_start(NULL, NULL);
    hub_client *c = connect_to(h, 3000);
    hub_task t;
    assert_int_equal(hub_client_claim(c, 12, &t), 0); /* lease: 600 ms → heartbeat every ~200 ms */
    while (hub_client_next_offer(c, 0, &t) == 0)
        ;
    assert_int_equal(hub_client_next_offer(c, 1100, &t), HUB_ETIMEDOUT);
    assert_true(h->heartbeats >= 3 && h->heartbeats <= 8);
    int before = h->heartbeats;
    hub_client_keepalive(c, -1);
    assert_int_equal(hub_client_next_offer(c, 600, &t), HUB_ETIMEDOUT);
    assert_int_equal(h->heartbeats, before);
    hub_client_close(&c);
    hub_stop(h, NULL);
}

static void test_refused_key_is_reported(void **state)
{
    (void)state;
    allowlist *empty = allowlist_new();
    zap_handler *zap = NULL;
    fake_hub *h = hub_start(empty, &zap);
    hub_client *c = connect_to(h, 3000);
    char id[64];
    assert_int_equal(hub_client_hello(c, id, sizeof id), HUB_EREFUSED);
    assert_non_null(strstr(hub_client_error(c), "refused our key"));
    /* the operator allows the key (dxhub allow, SIGHUP): the same client gets in */
    char dir[] = "/tmp/dxhub-test-client-XXXXXX", err[256];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(allowlist_edit(dir, client_pub, "reader:dr-test", 0, err, sizeof err), 0);
    assert_true(allowlist_load(empty, dir, err, sizeof err) >= 1);
    assert_int_equal(hub_client_hello(c, id, sizeof id), 0);
    assert_string_equal(id, "dr-test");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    hub_client_close(&c);
    hub_stop(h, &zap);
    allowlist_free(&empty);
}

static void test_bad_config(void **state)
{
    (void)state;
    hub_client *c = NULL;
    char err[128];
    hub_client_config cfg = {.endpoint = "tcp://127.0.0.1:1", .hub_public = "short", .public_key = client_pub,
                             .secret_key = client_sec};
    assert_true(hub_client_open(&cfg, &c, err, sizeof err) < 0);
    assert_null(c);
    cfg.hub_public = client_pub;
    cfg.endpoint = "nonsense";
    assert_true(hub_client_open(&cfg, &c, err, sizeof err) < 0);
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_ready_offers_in_order),
        cmocka_unit_test(test_claim_matches_req_and_buffers_offers),
        cmocka_unit_test(test_refusals_and_timeouts),
        cmocka_unit_test(test_study_fetch_resume),
        cmocka_unit_test(test_submit_frames),
        cmocka_unit_test(test_keepalive_heartbeats_while_waiting),
        cmocka_unit_test(test_refused_key_is_reported),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

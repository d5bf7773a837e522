/* test_proto_monitor.c — sockets watched by a monitor (proto_monitor_open)
 * closed and opened again, as the clinic gateway's link does on every
 * reconnection, leave their ZeroMQ context working.
 *
 * Closing a monitor's reader while its socket lived let libzmq's I/O
 * thread block for good on the next event (the monitor's PAIR had no peer
 * left): the gateway then never connected again and its studies waited
 * until someone restarted it.  proto_monitor_close stops the monitor
 * first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <zmq.h>
#include "hub/proto.h"

static void set_int(void *sock, int opt, int v) { zmq_setsockopt(sock, opt, &v, sizeof v); }

static void test_monitored_sockets_closed_over_and_over_leave_the_context_working(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    set_int(router, ZMQ_LINGER, 0);
    set_int(router, ZMQ_RCVTIMEO, 5000); /* a stuck I/O thread: a failure, not a hang */
    assert_int_equal(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t len = sizeof ep;
    assert_int_equal(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &len), 0);

    for (int i = 0; i < 200; i++) {
        /* a monitored socket closed while its handshake may be under way
         * (a link stopped or reopened at once), events read or not */
        void *watched = zmq_socket(ctx, ZMQ_DEALER);
        set_int(watched, ZMQ_LINGER, 0);
        void *mon = proto_monitor_open(ctx, watched, ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
        assert_non_null(mon);
        assert_int_equal(zmq_connect(watched, ep), 0);
        if (i % 2) {
            uint16_t ev;
            uint32_t v;
            while (proto_monitor_next(mon, &ev, &v) == 1) {
            }
        }
        proto_monitor_close(watched, &mon);
        assert_null(mon);
        zmq_close(watched);
        /* the context still carries a message */
        void *probe = zmq_socket(ctx, ZMQ_DEALER);
        set_int(probe, ZMQ_LINGER, 0);
        assert_int_equal(zmq_connect(probe, ep), 0);
        assert_int_equal(zmq_send(probe, "x", 1, 0), 1);
        char id[256], body[8];
        if (zmq_recv(router, id, sizeof id, 0) < 0)
            fail_msg("round %d: nothing reached the router in 5 s: the context's I/O thread is stuck", i);
        assert_int_equal(zmq_recv(router, body, sizeof body, 0), 1);
        zmq_close(probe);
    }
    zmq_close(router);
    assert_int_equal(zmq_ctx_term(ctx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monitored_sockets_closed_over_and_over_leave_the_context_working),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

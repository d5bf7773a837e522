/* test_offer_set.c — the reader link's table of offers not yet recorded
 * (hub/offer_set.h), against a plain array as the model: thousands of
 * random adds and removes on ids that collide in the table (small table,
 * clustered ids), after each step every id the model holds is found with
 * its connection and no other id is; the table refuses more than it was
 * sized for, and ids already present. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "hub/offer_set.h"

#define MAX 64
#define IDS 200 /* ids drawn from 1..IDS: many collisions, long runs to shift back */

static void test_random_adds_and_removes_match_a_plain_array(void **state)
{
    (void)state;
    offer_set *s = offer_set_new(MAX);
    assert_non_null(s);
    int model[IDS + 1]; /* conn, or -1 absent */
    for (int i = 0; i <= IDS; i++)
        model[i] = -1;
    size_t count = 0;
    srand(6);
    for (int step = 0; step < 20000; step++) {
        uint64_t id = 1 + (uint64_t)(rand() % IDS);
        if (rand() % 2) {
            int conn = rand() % 1000;
            int rc = offer_set_add(s, id, conn);
            if (model[id] >= 0 || count >= MAX) {
                assert_int_equal(rc, -1);
            } else {
                assert_int_equal(rc, 0);
                model[id] = conn;
                count++;
            }
        } else {
            offer_set_remove(s, id);
            if (model[id] >= 0)
                count--;
            model[id] = -1;
        }
        assert_int_equal(offer_set_count(s), count);
        for (uint64_t k = 1; k <= IDS; k++)
            assert_int_equal(offer_set_conn(s, k), model[k]);
    }
    assert_int_equal(offer_set_add(s, 0, 1), -1); /* 0 marks an empty slot */
    offer_set_free(&s);
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_adds_and_removes_match_a_plain_array),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

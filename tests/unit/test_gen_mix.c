/* test_gen_mix.c — cache keys folded from generation counters
 * (hub/gen_mix.h) change whenever any counter does.
 *
 * The lookup answers' key once XORed the instance generation with the
 * count of verdict changes: an outside commit seen and the verdict it
 * changed moved both by one, and when both were even the key came back to
 * its old value, so a lookup served the answer kept from before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "hub/gen_mix.h"

static int by_value(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every pair of two counters in 0..N-1, and the same pairs on the next
 * day, fold to distinct keys: counters moving together never cancel. */
static void test_keys_of_counters_moving_together_differ(void **state)
{
    (void)state;
    enum { N = 600 };
    uint64_t *keys = malloc(sizeof *keys * N * N * 2);
    assert_non_null(keys);
    size_t k = 0;
    for (uint64_t day = 20000; day < 20002; day++)
        for (uint64_t inst = 0; inst < N; inst++)
            for (uint64_t changed = 0; changed < N; changed++)
                keys[k++] = gen_fold(gen_fold(gen_fold(0, inst), changed), day);
    qsort(keys, k, sizeof *keys, by_value);
    size_t same = 0;
    for (size_t i = 1; i < k; i++)
        same += keys[i] == keys[i - 1];
    free(keys);
    assert_int_equal(same, 0);
    /* the case that was served stale: both counters one up from even values */
    assert_true(gen_fold(gen_fold(0, 4), 6) != gen_fold(gen_fold(0, 5), 7));
    /* the order of the counters matters (instance 1, change 2 is not instance 2, change 1) */
    assert_true(gen_fold(gen_fold(0, 1), 2) != gen_fold(gen_fold(0, 2), 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_keys_of_counters_moving_together_differ)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

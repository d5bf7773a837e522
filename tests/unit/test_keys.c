/* test_keys.c — reading a public key (hub/keys.h):
 *  - a .pub file whose path is exactly 40 characters long (the length of
 *    a Z85 key, and '/', '.', '-' are Z85 characters, '_' is not) is read as a file,
 *    not taken for the key itself;
 *  - a bare Z85 key is still taken as it is;
 *  - a missing file is refused naming it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "hub/keys.h"

static char dir[64];

static void test_forty_character_path_is_read_as_a_file(void **state)
{
    (void)state;
    /* dir + "/" + sub + "/k.pub" padded to exactly KEY_Z85_LEN characters */
    char sub[64], path[128], err[256];
    size_t fixed = strlen(dir) + strlen("//k.pub");
    assert_true(fixed < KEY_Z85_LEN);
    memset(sub, 'a', KEY_Z85_LEN - fixed);
    sub[KEY_Z85_LEN - fixed] = '\0';
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    assert_int_equal(mkdir(path, 0700), 0);
    keypair kp;
    assert_int_equal(keys_generate(path, "k", &kp, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/%s/k.pub", dir, sub);
    assert_int_equal(strlen(path), KEY_Z85_LEN);
    char got[KEY_Z85_LEN + 1];
    assert_int_equal(keys_read_public(path, got, err, sizeof err), 0);
    assert_string_equal(got, kp.pub);
    /* the bare key is taken as it is */
    assert_int_equal(keys_read_public(kp.pub, got, err, sizeof err), 0);
    assert_string_equal(got, kp.pub);
}

static void test_missing_file_is_refused_naming_it(void **state)
{
    (void)state;
    char got[KEY_Z85_LEN + 1], err[256], path[128];
    snprintf(path, sizeof path, "%s/none.pub", dir);
    assert_true(keys_read_public(path, got, err, sizeof err) < 0);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "no such file"));
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/tk-XXXXXX", P_tmpdir);
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forty_character_path_is_read_as_a_file),
        cmocka_unit_test(test_missing_file_is_refused_naming_it),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

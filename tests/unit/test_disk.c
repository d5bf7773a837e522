/* test_disk.c — when a failed write counts as a full disk (hub/disk.c):
 * ENOSPC and EDQUOT always; EIO and EFBIG (LMDB's short write) only when
 * the file system lacks room for what was being written; anything else
 * never.  The full disks themselves are in tests/e2e/test_disk_full.py. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "hub/disk.h"

static void test_errno_that_says_so_is_a_full_disk(void **state)
{
    (void)state;
    assert_true(disk_full_error("/tmp", ENOSPC, 0));
    assert_true(disk_full_error("/tmp", EDQUOT, 0));
}

static void test_other_errors_are_not(void **state)
{
    (void)state;
    assert_false(disk_full_error("/tmp", EACCES, UINT64_MAX / 2));
    assert_false(disk_full_error("/tmp", EROFS, UINT64_MAX / 2));
    assert_false(disk_full_error("/tmp", 0, UINT64_MAX / 2));
    assert_false(disk_full_error("/tmp", -30792 /* MDB_MAP_FULL */, UINT64_MAX / 2));
}

static void test_short_write_is_a_full_disk_only_without_room(void **state)
{
    (void)state;
    uint64_t room, size;
    assert_int_equal(disk_room("/tmp", &room, &size), 0);
    assert_true(size > 0 && room <= size);
    /* More than the file system holds: no room for it. */
    assert_true(disk_full_error("/tmp", EIO, size + 1));
    assert_true(disk_full_error("/tmp", EFBIG, size + 1));
    if (room > 2 * DISK_MARGIN) /* a real I/O error on a disk with room stays one */
        assert_false(disk_full_error("/tmp", EIO, 0));
    /* Cannot be asked: not a full disk (the caller's own error stands). */
    assert_false(disk_full_error("/nonexistent/dxhub", EIO, UINT64_MAX / 2));
    assert_int_equal(disk_room("/nonexistent/dxhub", &room, NULL), -ENOENT);
}

static void test_reason_names_the_folder_and_what_is_free(void **state)
{
    (void)state;
    char buf[200];
    disk_full_reason("/tmp", buf, sizeof buf);
    unsigned long long mib;
    char dir[64];
    assert_int_equal(sscanf(buf, "disk full: %llu MiB free on the file system holding %63s", &mib, dir), 2);
    assert_string_equal(dir, "/tmp");
    disk_full_reason("/nonexistent/dxhub", buf, sizeof buf);
    assert_string_equal(buf, "disk full on the file system holding /nonexistent/dxhub");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errno_that_says_so_is_a_full_disk),
        cmocka_unit_test(test_other_errors_are_not),
        cmocka_unit_test(test_short_write_is_a_full_disk_only_without_room),
        cmocka_unit_test(test_reason_names_the_folder_and_what_is_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

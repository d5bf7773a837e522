/* test_log.c — hub/log.c: one line per event, the level filter, and
 * log_open/log_reopen as logrotate uses them (move the file, reopen:
 * later lines go to a new file, none to the moved one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "hub/log.h"

static char dir[128];

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_lines_levels_and_reopen(void **state)
{
    char path[256], moved[256], err[256];
    snprintf(path, sizeof path, "%s/x.log", dir);
    snprintf(moved, sizeof moved, "%s/x.log.1", dir);
    assert_int_equal(log_reopen(err, sizeof err), 1); /* stderr: nothing to reopen */
    int saved = dup(STDERR_FILENO);                   /* cmocka reports there */
    assert_int_equal(log_open(path, err, sizeof err), 0);
    log_set_role("test");
    log_set_level(LOG_INFO);
    log_info("first\nsecond\r line");
    log_debug("hidden at info");
    log_warn("a warning");
    char *a = slurp(path);
    assert_int_equal(count_lines(a), 2);
    assert_non_null(strstr(a, " info test: first second  line\n"));
    assert_non_null(strstr(a, " warn test: a warning\n"));
    assert_null(strstr(a, "hidden"));
    free(a);
    assert_int_equal(rename(path, moved), 0);
    assert_int_equal(log_reopen(err, sizeof err), 0);
    log_error("after the move");
    char *b = slurp(path), *c = slurp(moved);
    assert_non_null(strstr(b, " error test: after the move\n"));
    assert_int_equal(count_lines(b), 1);
    assert_null(strstr(c, "after the move"));
    free(b);
    free(c);
    dup2(saved, STDERR_FILENO);
    close(saved);
    snprintf(path, sizeof path, "%s/no/such/dir/x.log", dir);
    assert_int_equal(log_open(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "no/such/dir/x.log"));
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "%s/test_log_XXXXXX", P_tmpdir);
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_lines_levels_and_reopen)};
    return cmocka_run_group_tests(tests, setup, teardown);
}

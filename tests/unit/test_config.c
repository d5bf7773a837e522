/* test_config.c — the table that drives a role's options (hub/config.h):
 *  - embedded defaults fill every field; a file overrides them; the
 *    command line overrides the file;
 *  - a bad file is refused with its name, the line, the key and why:
 *    unknown key, key in the wrong section, bad value, syntax, a line too
 *    long for libinih's buffer;
 *  - --print-config's INI reads back to the same settings;
 *  - every real role's table (serve, edge, workstation) has valid defaults and no name
 *    twice.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "hub/cmd.h"
#include "hub/config.h"

typedef struct demo_settings {
    const char *data, *name, *optional;
    int         count, flag, level, days;
    uint16_t    port;
    uint64_t    size, spare;
    int         action;
} demo_settings;

#define D(f) offsetof(demo_settings, f)
static const cfg_option demo_opts[] = {
    {"main", "data", CFG_STRING, D(data), "./var/demo", 1, 0, NULL, "DIR", "data directory"},
    {"main", "name", CFG_STRING, D(name), "DEMO", 1, 16, NULL, "AET", "a name"},
    {"main", "optional", CFG_STRING, D(optional), NULL, 0, 0, NULL, "FILE", "unset unless given"},
    {"main", "level", CFG_CHOICE, D(level), "info", 0, 0, "error|warn|info|debug", "LEVEL", "level"},
    {"net", "port", CFG_PORT, D(port), "11112", 0, 0, NULL, "N", "a port"},
    {"net", "count", CFG_INT, D(count), "16", 1, 100, NULL, "N", "a count"},
    {"net", "open", CFG_FLAG, D(flag), NULL, 0, 0, NULL, NULL, "a flag"},
    {"store", "days", CFG_INT, D(days), NULL, 0, 1000, NULL, "N", "days, or unset"},
    {"store", "size", CFG_SIZE, D(size), "16G", 1, 0, NULL, "BYTES", "a size"},
    {"store", "spare", CFG_SIZE, D(spare), "0", 0, 0, NULL, "BYTES", "a size that may be none"},
    {NULL, "action", CFG_FLAG, D(action), NULL, 0, 0, NULL, NULL, "command line only"},
};
static const cfg_role demo = {"demo", "usage: dxhub demo\n", demo_opts, sizeof demo_opts / sizeof demo_opts[0]};

static char tmpdir[128];

static const char *write_file(const char *name, const char *text)
{
    static char path[400];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int run_parse(demo_settings *s, cfg_strings *own, char **args)
{
    int argc = 0;
    while (args[argc])
        argc++;
    return cfg_parse(&demo, s, argc, args, own);
}

static void test_defaults_fill_every_field(void **state)
{
    demo_settings s;
    memset(&s, 0x5a, sizeof s);
    char err[256];
    assert_int_equal(cfg_defaults(&demo, &s, err, sizeof err), 0);
    assert_string_equal(s.data, "./var/demo");
    assert_string_equal(s.name, "DEMO");
    assert_null(s.optional);
    assert_int_equal(s.level, 2);
    assert_int_equal(s.port, 11112);
    assert_int_equal(s.count, 16);
    assert_int_equal(s.flag, 0);
    assert_int_equal(s.days, -1);
    assert_true(s.size == (uint64_t)16 << 30);
    assert_int_equal(s.action, 0);
}

static void test_command_line_overrides_file_overrides_defaults(void **state)
{
    const char *path = write_file("a.ini", "; a comment\n[main]\nname = FILE\nlevel = debug\noptional = x.txt\n"
                                           "[net]\nport = 2000\ncount = 7   ; inline comment\nopen = yes\n"
                                           "[store]\ndays = 30\nsize = 512M\n");
    demo_settings s = {0};
    cfg_strings own = {0};
    char *args[] = {"demo", "--config", (char *)path, "--port", "3000", "--name", "CLI", "--action", NULL};
    assert_int_equal(run_parse(&s, &own, args), CFG_RUN);
    assert_string_equal(s.name, "CLI");      /* command line over file */
    assert_int_equal(s.port, 3000);
    assert_int_equal(s.count, 7);            /* file over default */
    assert_int_equal(s.level, 3);
    assert_string_equal(s.optional, "x.txt");
    assert_int_equal(s.flag, 1);
    assert_int_equal(s.days, 30);
    assert_true(s.size == (uint64_t)512 << 20);
    assert_string_equal(s.data, "./var/demo"); /* default where neither says */
    assert_int_equal(s.action, 1);
    cfg_release(&own);
}

static void expect_file_error(const char *text, const char *want)
{
    const char *path = write_file("bad.ini", text);
    demo_settings s = {0};
    cfg_strings own = {0};
    char err[512] = "";
    assert_int_equal(cfg_defaults(&demo, &s, err, sizeof err), 0);
    assert_int_equal(cfg_load_file(&demo, &s, path, &own, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
    assert_non_null(strstr(err, "bad.ini:"));
    cfg_release(&own);
}

static void test_bad_files_are_refused_with_file_line_key_and_why(void **state)
{
    expect_file_error("[main]\nname = A\n\n[net]\nprot = 1\n", "bad.ini:5: [net] prot: unknown key");
    expect_file_error("[main]\nport = 1\n", "bad.ini:2: [main] port: belongs in section [net]");
    expect_file_error("[net]\nport = 65536\n", "bad.ini:2: [net] port: '65536' is not a port");
    expect_file_error("[net]\ncount = 101\n", "[net] count: '101' is not a whole number from 1 to 100");
    expect_file_error("[net]\ncount = 5x\n", "[net] count: '5x' is not a whole number");
    expect_file_error("[net]\nopen = maybe\n", "[net] open: 'maybe' is not true or false");
    expect_file_error("[main]\nlevel = loud\n", "[main] level: 'loud' is not one of error|warn|info|debug");
    expect_file_error("[main]\nname = SEVENTEEN_CHARS_X\n", "[main] name: 'SEVENTEEN_CHARS_X' must be 1 to 16");
    expect_file_error("[main]\ndata =\n", "[main] data: must not be empty");
    expect_file_error("[store]\nsize = 12Q\n", "[store] size: '12Q' is not a size");
    expect_file_error("[store]\nsize = 0\n", "[store] size: '0' is less than 1 bytes");
    expect_file_error("[store]\nspare = -1M\n", "[store] spare: '-1M' is not a size");
    expect_file_error("[main]\njust words\n", "bad.ini:2: not 'key = value'");
    expect_file_error("[main]\naction = true\n", "[main] action: unknown key");
    char long_line[400];
    memset(long_line, 'a', sizeof long_line);
    memcpy(long_line, "[main]\ndata = ", 14);
    memcpy(long_line + sizeof long_line - 2, "\n", 2);
    expect_file_error(long_line, "bad.ini:2: line longer than");
}

static void test_bad_option_and_missing_file_are_usage_errors(void **state)
{
    demo_settings s = {0};
    cfg_strings own = {0};
    char *a1[] = {"demo", "--port", "http", NULL};
    assert_int_equal(run_parse(&s, &own, a1), CFG_USAGE);
    char *a2[] = {"demo", "--config", "/nonexistent/x.ini", NULL};
    assert_int_equal(run_parse(&s, &own, a2), CFG_USAGE);
    char *a4[] = {"demo", "--config", tmpdir, NULL}; /* a directory */
    assert_int_equal(run_parse(&s, &own, a4), CFG_USAGE);
    char *a3[] = {"demo", "stray", NULL};
    assert_int_equal(run_parse(&s, &own, a3), CFG_USAGE);
    cfg_release(&own);
}

static void test_written_ini_reads_back_to_the_same_settings(void **state)
{
    const char *path = write_file("b.ini", "[main]\nname = X\nlevel = warn\n[net]\nport = 0\nopen = true\n"
                                           "[store]\nsize = 3000\nspare = 0\n");
    demo_settings a = {0}, b = {0};
    cfg_strings own = {0};
    char err[512];
    assert_int_equal(cfg_defaults(&demo, &a, err, sizeof err), 0);
    assert_int_equal(cfg_load_file(&demo, &a, path, &own, err, sizeof err), 0);
    char out[400];
    snprintf(out, sizeof out, "%s/out.ini", tmpdir);
    FILE *f = fopen(out, "w");
    cfg_write_ini(&demo, &a, f);
    fclose(f);
    assert_int_equal(cfg_defaults(&demo, &b, err, sizeof err), 0);
    b.name = "changed";
    b.days = 9;
    if (cfg_load_file(&demo, &b, out, &own, err, sizeof err) < 0)
        fail_msg("%s", err);
    assert_string_equal(b.data, a.data);
    assert_string_equal(b.name, "X");
    assert_null(b.optional);
    assert_int_equal(b.level, 1);
    assert_int_equal(b.port, 0);
    assert_int_equal(b.flag, 1);
    assert_int_equal(b.count, a.count);
    assert_int_equal(b.days, 9); /* an unset key is written commented out: it does not reset */
    assert_true(b.size == 3000);
    assert_true(b.spare == 0);
    cfg_release(&own);
}

static void check_role(const cfg_role *r)
{
    /* Big enough for any role's settings struct. */
    static char conf[4096] __attribute__((aligned(16)));
    char err[256];
    if (cfg_defaults(r, conf, err, sizeof err) < 0)
        fail_msg("dxhub %s: %s", r->name, err);
    for (size_t i = 0; i < r->n_opts; i++) {
        assert_true(r->opts[i].offset < sizeof conf - 8);
        assert_non_null(r->opts[i].help);
        for (size_t j = i + 1; j < r->n_opts; j++)
            if (!strcmp(r->opts[i].name, r->opts[j].name))
                fail_msg("dxhub %s: option %s twice", r->name, r->opts[i].name);
        if (!strcmp(r->opts[i].name, "config") || !strcmp(r->opts[i].name, "print-config"))
            fail_msg("dxhub %s: %s is reserved", r->name, r->opts[i].name);
    }
}

static void test_every_role_table_has_valid_defaults(void **state)
{
    check_role(&serve_role);
    check_role(&edge_role);
    check_role(&workstation_role);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/test_config_XXXXXX", P_tmpdir);
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_fill_every_field),
        cmocka_unit_test(test_command_line_overrides_file_overrides_defaults),
        cmocka_unit_test(test_bad_files_are_refused_with_file_line_key_and_why),
        cmocka_unit_test(test_bad_option_and_missing_file_are_usage_errors),
        cmocka_unit_test(test_written_ini_reads_back_to_the_same_settings),
        cmocka_unit_test(test_every_role_table_has_valid_defaults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

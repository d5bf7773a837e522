/* test_conf_files.c — the files an operator edits by hand (conf_lines.h):
 * readers.conf, allow.txt, peers.conf, recognition.conf.
 *  - a file saved on Windows (CR LF, blank lines "\r\n") reads as the
 *    same file with LF;
 *  - whole-line comments and indented lines are fine; a '#' inside a Z85
 *    key is part of the key;
 *  - a line too long, a NUL byte, a field too many, a reader, key or hub
 *    listed twice: refused with the file, the line and the reason, and a
 *    reload keeps what was loaded before.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>
#include <cmocka.h>
#include "hub/conf_lines.h"
#include "hub/keys.h"
#include "hub/peer.h"
#include "hub/readers.h"
#include "hub/recog.h"

static char dir[64];
static char key_a[KEY_Z85_LEN + 1], key_b[KEY_Z85_LEN + 1], key_hash[KEY_Z85_LEN + 1];

static const char *file_with(const char *name, const void *text, size_t len)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    fclose(fp);
    return path;
}

static const char *file(const char *name, const char *text) { return file_with(name, text, strlen(text)); }

static void test_lines_skip_comments_and_blanks_and_strip_crlf(void **state)
{
    (void)state;
    const char *path = file("lines", "# a comment\r\n\r\n  \t\r\n   indented  \r\n\t# indented comment\nlast");
    conf_lines cl;
    char err[256], *line;
    assert_int_equal(conf_lines_open(&cl, path, err, sizeof err), 0);
    assert_int_equal(conf_lines_next(&cl, &line, err, sizeof err), 1);
    assert_string_equal(line, "indented");
    assert_int_equal(cl.lineno, 4);
    assert_int_equal(conf_lines_next(&cl, &line, err, sizeof err), 1);
    assert_string_equal(line, "last");
    assert_int_equal(cl.lineno, 6);
    assert_int_equal(conf_lines_next(&cl, &line, err, sizeof err), 0);
    conf_lines_close(&cl);
    conf_lines_close(&cl);
}

static void test_long_line_and_nul_are_refused_with_their_line(void **state)
{
    (void)state;
    char *text = malloc(CONF_LINE_MAX + 32);
    assert_non_null(text);
    int n = snprintf(text, 32, "ok\n");
    memset(text + n, 'x', CONF_LINE_MAX + 1);
    text[n + CONF_LINE_MAX + 1] = '\n';
    const char *path = file_with("long", text, (size_t)n + CONF_LINE_MAX + 2);
    free(text);
    conf_lines cl;
    char err[256], *line;
    assert_int_equal(conf_lines_open(&cl, path, err, sizeof err), 0);
    assert_int_equal(conf_lines_next(&cl, &line, err, sizeof err), 1);
    assert_int_equal(conf_lines_next(&cl, &line, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, ":2: line longer than 4096 bytes"));
    conf_lines_close(&cl);

    path = file_with("nul", "a b\nc\0d\n", 8);
    assert_int_equal(conf_lines_open(&cl, path, err, sizeof err), 0);
    assert_int_equal(conf_lines_next(&cl, &line, err, sizeof err), 1);
    assert_int_equal(conf_lines_next(&cl, &line, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, ":2: a NUL byte"));
    conf_lines_close(&cl);

    assert_int_equal(conf_lines_open(&cl, "/nonexistent/x", err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/x"));
}

static void test_fields_split_at_blank_runs(void **state)
{
    (void)state;
    char  line[] = "a  b\tc";
    char *f[3];
    assert_int_equal(conf_fields(line, f, 3), 3);
    assert_string_equal(f[0], "a");
    assert_string_equal(f[2], "c");
    char line2[] = "a b c d";
    assert_int_equal(conf_fields(line2, f, 3), 4);
    char line3[] = "";
    assert_int_equal(conf_fields(line3, f, 3), 0);
}

static void test_readers_from_windows_and_errors_named(void **state)
{
    (void)state;
    readers *rs = readers_new();
    char     err[256];
    const char *path = file("readers.conf", "# id seniority modalities kinds facilities max\r\n"
                                            "\r\n"
                                            "dr-wang  attending  CT,MR  imaging  *  3\r\n"
                                            "dr-li    resident   ECG    ecg      clinic1  2\r\n");
    assert_int_equal(readers_load(rs, path, err, sizeof err), 2);
    wl_reader r;
    assert_int_equal(readers_find(rs, "dr-li", &r), 0);
    assert_string_equal(r.facilities, "clinic1");
    assert_int_equal(r.max_tasks, 2);

    static const struct {
        const char *text, *why;
    } bad[] = {
        {"dr-wang attending CT imaging * 3\ndr-wang chief MR imaging * 1\n",
         ":2: reader dr-wang is listed twice (first on line 1)"},
        {"dr-wang attending CT imaging * 3 # on leave\n", ":1: expected 6 fields"},
        {"dr-wang attending CT imaging *\n", ":1: expected 6 fields"},
        {"dr-wang boss CT imaging * 3\n", ":1: seniority is resident, attending or chief"},
        {"dr-wang attending CT xray * 3\n", ":1: kinds is imaging, ecg"},
        {"dr-wang attending CT imaging * 3x\n", ":1: max (tasks held at once)"},
        {"dr-wang attending CT imaging * 0\n", ":1: max (tasks held at once)"},
        {"dr/wang attending CT imaging * 3\n", ":1: the reader id takes letters"},
        {"dr-wang attending ct,mr imaging * 3\n", ":1: modalities are DICOM codes in capitals"},
        {"dr-wang attending CT;MR imaging * 3\n", ":1: modalities are DICOM codes in capitals"},
        {"dr-wang attending CT,,MR imaging * 3\n", ":1: modalities are DICOM codes in capitals"},
        {"dr-wang attending CT, MR imaging * 3\n", ":1: expected 6 fields"},
        {"dr-wang attending CT imaging clinic1;clinic2 3\n", ":1: facilities are names"},
        {"dr-wang attending CT imaging clinic1, 3\n", ":1: facilities are names"},
        {"dr-wangxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx attending CT imaging * 3\n",
         ":1: the reader id is longer than 63 bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = file("readers.conf", bad[i].text);
        assert_int_equal(readers_load(rs, path, err, sizeof err), -EINVAL);
        if (!strstr(err, bad[i].why))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].why);
        assert_int_equal(readers_count(rs), 2); /* the old profiles stay */
    }
    readers_free(&rs);
}

static void test_allow_list_from_windows_keys_with_hash_and_duplicates(void **state)
{
    (void)state;
    allowlist *a = allowlist_new();
    char       text[512], err[256], role[64];
    snprintf(text, sizeof text, "# dxhub allow-list\r\n\r\n%s reader:dr-wang\r\n  %s edge:clinic1\r\n", key_a, key_hash);
    file("allow.txt", text);
    assert_int_equal(allowlist_load(a, dir, err, sizeof err), 2);
    unsigned char bin[32];
    assert_non_null(zmq_z85_decode(bin, key_hash));
    assert_int_equal(allowlist_role(a, bin, role, sizeof role), 0);
    assert_string_equal(role, "edge:clinic1");

    snprintf(text, sizeof text, "%s reader:dr-wang\n%s reader:dr-wang\n%s edge:clinic1\n", key_a, key_b, key_a);
    file("allow.txt", text);
    assert_int_equal(allowlist_load(a, dir, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "allow.txt:3: the same key is listed twice (first on line 1, as reader:dr-wang)"));
    snprintf(text, sizeof text, "%s reader:dr-wang extra\n", key_a);
    file("allow.txt", text);
    assert_int_equal(allowlist_load(a, dir, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "allow.txt:1: expected"));
    snprintf(text, sizeof text, "%.39s reader:dr-wang\n", key_a);
    file("allow.txt", text);
    assert_int_equal(allowlist_load(a, dir, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "allow.txt:1: the public key is not 40 characters of Z85"));
    snprintf(text, sizeof text, "%s doctor:dr-wang\n", key_a);
    file("allow.txt", text);
    assert_int_equal(allowlist_load(a, dir, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "allow.txt:1: the role is edge:<facility>"));
    /* the old list stays */
    assert_int_equal(allowlist_role(a, bin, role, sizeof role), 0);
    assert_string_equal(role, "edge:clinic1");
    allowlist_free(&a);
}

static void test_peers_from_windows_and_duplicates(void **state)
{
    (void)state;
    char     text[512], err[256];
    peer_def defs[4];
    size_t   n = 99;
    snprintf(text, sizeof text, "# hubs\r\n\r\ncounty tcp://127.0.0.1:18671 %s\r\nlead tcp://127.0.0.1:18571 %s\r\n",
             key_hash, key_b);
    const char *path = file("peers.conf", text);
    assert_int_equal(peer_conf_load(path, defs, 4, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(defs[0].pub, key_hash);
    assert_string_equal(defs[1].endpoint, "tcp://127.0.0.1:18571");

    snprintf(text, sizeof text, "county tcp://127.0.0.1:1 %s\ncounty tcp://127.0.0.1:2 %s\n", key_a, key_b);
    path = file("peers.conf", text);
    assert_int_equal(peer_conf_load(path, defs, 4, &n, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "peers.conf:2: hub county is listed twice (first on line 1)"));
    snprintf(text, sizeof text, "a tcp://h:1 %s\nb tcp://h:1 %s\nc tcp://h:1 %s\n", key_a, key_b, key_hash);
    path = file("peers.conf", text);
    assert_int_equal(peer_conf_load(path, defs, 2, &n, err, sizeof err), -E2BIG);
    assert_non_null(strstr(err, "peers.conf:3: more than 2 peers"));
    path = file("peers.conf", "county http://127.0.0.1:1 x\n");
    assert_int_equal(peer_conf_load(path, defs, 4, &n, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "peers.conf:1: the endpoint is tcp://HOST:PORT"));
    snprintf(text, sizeof text, "%s/none.conf", dir);
    assert_int_equal(peer_conf_load(text, defs, 4, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
}

static void test_recognition_from_windows_and_long_line(void **state)
{
    (void)state;
    char          err[256];
    recog_config *c = NULL;
    const char   *path = file("recognition.conf", "# rules\r\n\r\nconsortium 示范县医共体\r\nmark HR\r\n"
                                                  "member clinic1 # a township clinic\r\nvalidity CR 180\r\n");
    assert_int_equal(recog_config_load(path, &c, err, sizeof err), 0);
    assert_string_equal(recog_consortium(c), "示范县医共体");
    assert_true(recog_is_member(c, "clinic1"));
    assert_int_equal(recog_validity_days(c, "CR"), 180);
    recog_config_free(&c);

    /* a long comment is a comment (before, the bytes past 511 were read
     * as a line of their own: "unknown setting") */
    char text[1200];
    int  n = snprintf(text, sizeof text, "# ");
    memset(text + n, 'x', 1000);
    snprintf(text + n + 1000, sizeof text - (size_t)n - 1000, " mark XX\nmark HR\n");
    path = file("recognition.conf", text);
    assert_int_equal(recog_config_load(path, &c, err, sizeof err), 0);
    assert_string_equal(recog_mark(c), "HR");
    recog_config_free(&c);
    path = file("recognition.conf", "mark HR\nmember clinic 1\n");
    assert_int_equal(recog_config_load(path, &c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "recognition.conf:2: member takes a facility name"));
    assert_null(c);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/tcf-XXXXXX", P_tmpdir);
    if (!mkdtemp(dir))
        return -1;
    /* keys a and b, and one with a '#' inside (Z85 has it; never first:
     * a first character encodes at most 2^32 / 85^4 < 83, and '#' is 84) */
    for (int i = 0; !key_a[0] || !key_b[0] || !key_hash[0]; i++) {
        char pub[KEY_Z85_LEN + 1], sec[KEY_Z85_LEN + 1];
        if (i > 100000 || zmq_curve_keypair(pub, sec) != 0)
            return -1;
        char *slot = strchr(pub, '#') ? key_hash : !key_a[0] ? key_a : key_b;
        memcpy(slot, pub, sizeof pub);
    }
    return 0;
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
        cmocka_unit_test(test_lines_skip_comments_and_blanks_and_strip_crlf),
        cmocka_unit_test(test_long_line_and_nul_are_refused_with_their_line),
        cmocka_unit_test(test_fields_split_at_blank_runs),
        cmocka_unit_test(test_readers_from_windows_and_errors_named),
        cmocka_unit_test(test_allow_list_from_windows_keys_with_hash_and_duplicates),
        cmocka_unit_test(test_peers_from_windows_and_duplicates),
        cmocka_unit_test(test_recognition_from_windows_and_long_line),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_lookup.c — the parts of cross-facility lookup that need no running
 * hub: facility API keys on disk (only hashes kept, revocation), and the
 * recognition settings (embedded defaults, a file's overrides, errors that
 * name the line). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "hub/apikeys.h"
#include "hub/recog.h"

static char *tmpdir(void)
{
    char *d = strdup("/tmp/dxhub-test-lookup-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    return buf;
}

static void test_api_key_maps_to_its_facility_and_only_its_hash_is_stored(void **state)
{
    (void)state;
    char *d = tmpdir(), err[256], path[512];
    snprintf(path, sizeof path, "%s/keys", d); /* made by issue, with parents */
    char t1[APIKEY_TOKEN_LEN + 1], t2[APIKEY_TOKEN_LEN + 1], t3[APIKEY_TOKEN_LEN + 1];
    assert_int_equal(apikeys_issue(path, "county", t1, err, sizeof err), 0);
    assert_int_equal(apikeys_issue(path, "clinic-2", t2, err, sizeof err), 0);
    assert_int_equal(apikeys_issue(path, "county", t3, err, sizeof err), 0); /* rotation: two at once */
    assert_int_equal(strlen(t1), APIKEY_TOKEN_LEN);
    assert_memory_equal(t1, APIKEY_PREFIX, strlen(APIKEY_PREFIX));
    assert_string_not_equal(t1, t3);
    char file[600];
    snprintf(file, sizeof file, "%s/%s", path, APIKEYS_FILE);
    struct stat sb;
    assert_int_equal(stat(file, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    const char *text = slurp(file);
    assert_null(strstr(text, t1 + 4)); /* the secret part never reaches the disk */
    assert_null(strstr(text, t2 + 4));

    apikeys *k = apikeys_new();
    assert_int_equal(apikeys_load(k, path, err, sizeof err), 3);
    char fac[APIKEY_FACILITY_MAX];
    assert_int_equal(apikeys_check(k, t1, strlen(t1), fac), 0);
    assert_string_equal(fac, "county");
    assert_int_equal(apikeys_check(k, t3, strlen(t3), fac), 0);
    assert_string_equal(fac, "county");
    assert_int_equal(apikeys_check(k, t2, strlen(t2), fac), 0);
    assert_string_equal(fac, "clinic-2");
    char wrong[APIKEY_TOKEN_LEN + 1];
    memcpy(wrong, t1, sizeof wrong);
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    assert_int_equal(apikeys_check(k, wrong, strlen(wrong), fac), -ENOENT);
    assert_int_equal(apikeys_check(k, t1, strlen(t1) - 1, fac), -ENOENT);
    assert_int_equal(apikeys_check(k, "", 0, fac), -ENOENT);

    /* revoking a facility removes all its keys; a reload applies it */
    assert_int_equal(apikeys_revoke(path, "county", err, sizeof err), 2);
    assert_int_equal(apikeys_revoke(path, "county", err, sizeof err), -ENOENT);
    assert_int_equal(apikeys_load(k, path, err, sizeof err), 1);
    assert_int_equal(apikeys_check(k, t1, strlen(t1), fac), -ENOENT);
    assert_int_equal(apikeys_check(k, t2, strlen(t2), fac), 0);

    /* a damaged file is refused by line, and the keys in force stay */
    FILE *fp = fopen(file, "a");
    fputs("county not-a-hash\n", fp);
    fclose(fp);
    assert_true(apikeys_load(k, path, err, sizeof err) < 0);
    assert_non_null(strstr(err, APIKEYS_FILE ":3:"));
    assert_int_equal(apikeys_count(k), 1);
    assert_int_equal(apikeys_check(k, t2, strlen(t2), fac), 0);

    assert_true(apikeys_issue(path, "../etc", t1, err, sizeof err) < 0);
    assert_false(apikeys_facility_valid("a b"));
    assert_false(apikeys_facility_valid(""));
    assert_true(apikeys_facility_valid("county.hospital_2-a"));
    apikeys_free(&k);
    assert_null(k);
    unlink(file);
    rmdir(path);
    rmdir(d);
    free(d);
}

static void test_recognition_defaults_and_file_overrides(void **state)
{
    (void)state;
    char err[256];
    recog_config *c = NULL;
    assert_int_equal(recog_config_load(NULL, &c, err, sizeof err), 0);
    assert_int_equal(recog_validity_days(c, "DX"), 180);
    assert_int_equal(recog_validity_days(c, "US"), 30);
    assert_int_equal(recog_validity_days(c, "ECG"), 30);
    assert_int_equal(recog_validity_days(c, "XA"), -1);
    assert_string_equal(recog_mark(c), "HR");
    assert_false(recog_is_member(c, "clinic1"));
    recog_config_free(&c);
    assert_null(c);

    char *d = tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/recognition.conf", d);
    assert_int_equal(recog_config_load(path, &c, err, sizeof err), 0); /* missing file: defaults */
    assert_int_equal(recog_validity_days(c, "CT"), 180);
    recog_config_free(&c);
    FILE *fp = fopen(path, "w");
    fputs("# rules\nconsortium 示范县医共体  \nmark HR-1\nmember clinic7 # a comment\n"
          "validity XA 60\nvalidity DX off\nvalidity US 0\n",
          fp);
    fclose(fp);
    assert_int_equal(recog_config_load(path, &c, err, sizeof err), 0);
    assert_string_equal(recog_consortium(c), "示范县医共体");
    assert_string_equal(recog_mark(c), "HR-1");
    assert_true(recog_is_member(c, "clinic7"));
    assert_int_equal(recog_validity_days(c, "XA"), 60);
    assert_int_equal(recog_validity_days(c, "DX"), -1);
    assert_int_equal(recog_validity_days(c, "US"), 0);
    assert_int_equal(recog_validity_days(c, "CT"), 180); /* untouched default */
    recog_config_free(&c);

    static const char *const bad[] = {"validity DX\n", "validity DX -3\n", "validity DX 9 9\n", "colour blue\n",
                                      "member two words\n", "mark\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fp = fopen(path, "w");
        fprintf(fp, "mark HR\n%s", bad[i]);
        fclose(fp);
        assert_true(recog_config_load(path, &c, err, sizeof err) < 0);
        assert_null(c);
        assert_non_null(strstr(err, "recognition.conf:2:"));
    }
    unlink(path);
    rmdir(d);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_key_maps_to_its_facility_and_only_its_hash_is_stored),
        cmocka_unit_test(test_recognition_defaults_and_file_overrides),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

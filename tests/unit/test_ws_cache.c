/* test_ws_cache.c — the workstation's LMDB cache (viewer/ws_cache.h) in a
 * temporary directory: instances stream in from a file descriptor and read
 * back byte for byte; the size bound evicts whole studies, least recently
 * used first, never a pinned one; nothing fits when everything is pinned;
 * the accounting survives a reopen; drafts are kept.  Also the decoded
 * frame LRU (viewer/ws_frames.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "viewer/ws_cache.h"
#include "viewer/ws_frames.h"

#define KB 1024u

static char dir[64];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/ws_cache_XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A temporary file of n bytes, byte i = (i * 7 + seed) & 0xff. */
static int bytes_fd(size_t n, int seed)
{
    char path[96];
    snprintf(path, sizeof path, "%s/src-XXXXXX", dir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 7 + (size_t)seed) & 0xff);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    free(p);
    return fd;
}

static const char *pinned_study;
static int pin_one(void *ctx, const char *study) { return pinned_study && !strcmp(study, pinned_study); }
static int pin_all(void *ctx, const char *study) { return 1; }

static void put(ws_cache *c, const char *study, const char *sop, size_t n, int seed, ws_pinned_fn pin, int want)
{
    char err[256] = "";
    int fd = bytes_fd(n, seed);
    int rc = ws_cache_put_fd(c, study, sop, fd, n, pin, NULL, err, sizeof err);
    close(fd);
    if (rc != want)
        fail_msg("put %s: %d (%s), expected %d", sop, rc, err, want);
}

static void test_instances_read_back_byte_for_byte(void **state)
{
    ws_cache *c;
    char err[256];
    assert_int_equal(ws_cache_open(dir, 4096 * KB, &c, err, sizeof err), 0);
    put(c, "1.2.1", "1.2.1.1", 300 * KB + 5, 3, NULL, 0);
    assert_int_equal(ws_cache_has(c, "1.2.1.1"), 1);
    assert_int_equal(ws_cache_has(c, "1.2.1.2"), 0);
    ws_read *r;
    const uint8_t *p;
    size_t n;
    char study[65];
    assert_int_equal(ws_cache_get(c, "1.2.1.1", &r, &p, &n, study), 0);
    assert_int_equal(n, 300 * KB + 5);
    assert_string_equal(study, "1.2.1");
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)((i * 7 + 3) & 0xff))
            fail_msg("byte %zu differs", i);
    ws_read_end(&r);
    assert_null(r);
    assert_int_equal(ws_cache_get(c, "9.9", &r, &p, &n, NULL), -ENOENT);
    ws_cache_close(&c);
    assert_null(c);
}

static void test_bound_evicts_least_recently_used_unpinned_study(void **state)
{
    ws_cache *c;
    char err[256];
    assert_int_equal(ws_cache_open(dir, 1024 * KB, &c, err, sizeof err), 0);
    put(c, "1.1", "1.1.1", 200 * KB, 1, NULL, 0);
    put(c, "1.1", "1.1.2", 200 * KB, 2, NULL, 0); /* study 1.1: 400 KiB */
    usleep(2000);
    put(c, "1.2", "1.2.1", 300 * KB, 3, NULL, 0);
    usleep(2000);
    put(c, "1.3", "1.3.1", 300 * KB, 4, NULL, 0); /* 1000 KiB + page rounding: just fits */
    ws_cache_stats s;
    ws_cache_stats_get(c, &s);
    assert_int_equal(s.studies, 3);
    assert_true(s.bytes <= s.limit);
    /* 1.1 is the least recently used, but pinned: 1.2 goes */
    pinned_study = "1.1";
    put(c, "1.4", "1.4.1", 100 * KB, 5, pin_one, 0);
    assert_int_equal(ws_cache_has(c, "1.1.1"), 1);
    assert_int_equal(ws_cache_has(c, "1.2.1"), 0);
    assert_int_equal(ws_cache_has(c, "1.3.1"), 1);
    assert_int_equal(ws_cache_study_count(c, "1.1"), 2);
    assert_int_equal(ws_cache_study_count(c, "1.2"), 0);
    ws_cache_stats_get(c, &s);
    assert_int_equal(s.evicted_studies, 1);
    assert_true(s.bytes <= s.limit);
    /* everything pinned: no room, nothing changes */
    assert_int_equal(ws_cache_room(c, 600 * KB, pin_all, NULL), 0);
    put(c, "1.5", "1.5.1", 600 * KB, 6, pin_all, -ENOSPC);
    assert_int_equal(ws_cache_has(c, "1.5.1"), 0);
    assert_int_equal(ws_cache_has(c, "1.3.1"), 1);
    /* larger than the whole cache: refused before anything is evicted */
    put(c, "1.6", "1.6.1", 2048 * KB, 7, NULL, -ENOSPC);
    ws_cache_stats before;
    ws_cache_stats_get(c, &before);
    ws_cache_close(&c);
    /* the accounting is rebuilt on open */
    assert_int_equal(ws_cache_open(dir, 1024 * KB, &c, err, sizeof err), 0);
    ws_cache_stats_get(c, &s);
    assert_int_equal(s.bytes, before.bytes);
    assert_int_equal(s.studies, before.studies);
    assert_int_equal(s.instances, before.instances);
    ws_cache_close(&c);
}

static void test_drafts_kept(void **state)
{
    ws_cache *c;
    char err[256], *p;
    size_t n;
    assert_int_equal(ws_cache_open(dir, 1024 * KB, &c, err, sizeof err), 0);
    assert_int_equal(ws_cache_kv_get(c, "draft", "7", &p, &n), -ENOENT);
    const char *d = "{\"findings\":\"未见异常\"}";
    assert_int_equal(ws_cache_kv_put(c, "draft", "7", d, strlen(d)), 0);
    ws_cache_close(&c);
    assert_int_equal(ws_cache_open(dir, 1024 * KB, &c, err, sizeof err), 0);
    assert_int_equal(ws_cache_kv_get(c, "draft", "7", &p, &n), 0);
    assert_int_equal(n, strlen(d));
    assert_string_equal(p, d);
    free(p);
    assert_int_equal(ws_cache_kv_put(c, "nosuch", "7", d, 1), -EINVAL);
    ws_cache_close(&c);
}

static void test_frame_lru_keeps_the_recent_within_its_bound(void **state)
{
    ws_frames *f = ws_frames_new(4000);
    ws_frame_info in = {.rows = 10, .cols = 50, .bits = 16, .samples = 1}, out;
    char buf[1000];
    void *p;
    size_t n;
    for (int i = 0; i < 5; i++) {
        memset(buf, 'a' + i, sizeof buf);
        ws_frames_put(f, "1.2", (uint32_t)i + 1, &in, buf, sizeof buf);
        if (i == 2) /* frame 1 used again: frame 2 is now the oldest */
            assert_int_equal(ws_frames_get(f, "1.2", 1, &out, &p, &n), 0), free(p);
    }
    assert_int_equal(ws_frames_get(f, "1.2", 2, &out, &p, &n), -1);
    assert_int_equal(ws_frames_get(f, "1.2", 1, &out, &p, &n), 0);
    assert_int_equal(n, 1000);
    assert_int_equal(((char *)p)[999], 'a');
    assert_int_equal(out.cols, 50);
    free(p);
    /* what decoding ahead asks: kept or not, and room without evicting (neither counts as a use) */
    assert_true(ws_frames_has(f, "1.2", 1));
    assert_false(ws_frames_has(f, "1.2", 2));
    assert_false(ws_frames_room(f, 1000)); /* four frames of 1000 fill the 4000 */
    assert_true(ws_frames_room(f, 0));
    uint64_t hits, misses;
    size_t bytes;
    ws_frames_stats(f, &hits, &misses, &bytes);
    assert_true(bytes <= 4000);
    assert_int_equal(hits, 2);
    assert_int_equal(misses, 1);
    char *big = calloc(1, 1001 * 4);
    ws_frames_put(f, "1.3", 1, &in, big, 1001 * 4); /* more than a quarter of the room: not kept */
    free(big);
    assert_int_equal(ws_frames_get(f, "1.3", 1, &out, &p, &n), -1);
    ws_frames_free(&f);
    assert_null(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_instances_read_back_byte_for_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_evicts_least_recently_used_unpinned_study, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drafts_kept, setup, teardown),
        cmocka_unit_test(test_frame_lru_keeps_the_recent_within_its_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

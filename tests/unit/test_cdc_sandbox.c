/* test_cdc_sandbox.c — decoding in a child process (codecs/cdc_sandbox.c):
 * a decoder that aborts, dereferences NULL or allocates without bound
 * costs its child only; the caller gets CDC_ECODEC naming the signal, and
 * the next frame decodes in a new child.  The decode functions here stand
 * for a codec library's crash on crafted data (OpenJPH 0.9 asserts). */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "codecs/cdc_private.h"

/* Writes the input's first byte + i into each output byte. */
static int fill_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len, dcm_err *err)
{
    (void)fmt, (void)err;
    for (size_t i = 0; i < out_len; i++)
        out[i] = (uint8_t)(src[0] + i);
    return n > 1 ? CDC_NORMALISED : 0;
}

static int abort_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len,
                        dcm_err *err)
{
    (void)fmt, (void)src, (void)n, (void)out, (void)out_len, (void)err;
    abort();
}

static int segv_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len,
                       dcm_err *err)
{
    (void)fmt, (void)src, (void)out, (void)out_len, (void)err;
    volatile uint8_t *volatile p = NULL;
    p[n] = 1;
    return 0;
}

static int reject_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len,
                         dcm_err *err)
{
    (void)fmt, (void)src, (void)out, (void)out_len;
    return dcm_fail(err, CDC_ECODEC, 7, "test codec: %zu bytes is not a frame", n);
}

static const cdc_fmt shape = {.rows = 4, .cols = 8, .samples = 1, .bits_stored = 8, .bits_allocated = 8, .bytes = 1};

static void expect_filled(const uint8_t *out, uint8_t first)
{
    for (size_t i = 0; i < 32; i++)
        assert_int_equal(out[i], (uint8_t)(first + i));
}

static void test_crash_in_the_child_is_an_error_and_the_next_frame_decodes(void **st)
{
    (void)st;
    cdc_sandbox *sb;
    dcm_err err = {0};
    assert_int_equal(cdc_sandbox_open(&sb, &err), 0);
    int first = cdc_sandbox_pid(sb); /* the child starts with the sandbox, while the caller is small */
    assert_true(first > 0);
    uint8_t in[3] = {10, 0, 0}, out[32];
    assert_int_equal(cdc_sandbox_decode(sb, fill_decode, "test", &shape, in, 3, out, sizeof out, &err),
                     CDC_NORMALISED);
    expect_filled(out, 10);
    assert_int_equal(cdc_sandbox_pid(sb), first);

    /* The library aborts: an error naming the codec and the signal. */
    memset(&err, 0, sizeof err);
    assert_int_equal(cdc_sandbox_decode(sb, abort_decode, "HTJ2K", &shape, in, 3, out, sizeof out, &err),
                     CDC_ECODEC);
    assert_non_null(strstr(err.msg, "HTJ2K decoder crashed"));
    char sig[32];
    snprintf(sig, sizeof sig, "signal %d", SIGABRT);
    assert_non_null(strstr(err.msg, sig));
    assert_int_equal(cdc_sandbox_pid(sb), 0);

    /* A wild write: the same, and the caller's memory is untouched. */
    memset(out, 0xEE, sizeof out);
    assert_int_equal(cdc_sandbox_decode(sb, segv_decode, "HTJ2K", &shape, in, 3, out, sizeof out, &err),
                     CDC_ECODEC);
    snprintf(sig, sizeof sig, "signal %d", SIGSEGV);
    assert_non_null(strstr(err.msg, sig));
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], 0xEE);

    /* A new child serves the next frame. */
    in[0] = 40;
    assert_int_equal(cdc_sandbox_decode(sb, fill_decode, "test", &shape, in, 1, out, sizeof out, &err), 0);
    expect_filled(out, 40);
    assert_true(cdc_sandbox_pid(sb) > 0 && cdc_sandbox_pid(sb) != first);

    /* A codec's own error comes back as it is, offset included. */
    memset(&err, 0, sizeof err);
    assert_int_equal(cdc_sandbox_decode(sb, reject_decode, "test", &shape, in, 3, out, sizeof out, &err),
                     CDC_ECODEC);
    assert_string_equal(err.msg, "test codec: 3 bytes is not a frame");
    assert_int_equal(err.offset, 7);
    cdc_sandbox_close(&sb);
    assert_null(sb);
}

/* Frames larger than the shared memory so far grow it; data survives. */
static void test_large_frames_grow_the_shared_memory(void **st)
{
    (void)st;
    cdc_sandbox *sb;
    dcm_err err = {0};
    assert_int_equal(cdc_sandbox_open(&sb, &err), 0);
    size_t n = (size_t)3 << 20, len = (size_t)5 << 20;
    uint8_t *in = calloc(1, n), *out = malloc(len);
    assert_non_null(in);
    assert_non_null(out);
    in[0] = 200;
    assert_int_equal(cdc_sandbox_decode(sb, fill_decode, "test", &shape, in, n, out, len, &err), CDC_NORMALISED);
    for (size_t i = 0; i < len; i += 4099)
        assert_int_equal(out[i], (uint8_t)(200 + i));
    free(in);
    free(out);
    cdc_sandbox_close(&sb);
}

/* A frame decoded into the sandbox's shared frame buffer is written there
 * by the child; the buffer may grow after the child started (the child
 * maps the new size), and a crash while decoding into it is the same
 * clear error, after which a new child writes into the same buffer. */
static void test_the_shared_frame_buffer_takes_the_frame_from_the_child(void **st)
{
    (void)st;
    cdc_sandbox *sb;
    dcm_err err = {0};
    assert_int_equal(cdc_sandbox_open(&sb, &err), 0);
    uint8_t in[1] = {7}, mine[32];
    assert_int_equal(cdc_sandbox_decode(sb, fill_decode, "test", &shape, in, 1, mine, sizeof mine, &err), 0);
    int first = cdc_sandbox_pid(sb);
    uint8_t *fb = cdc_sandbox_frame_buffer(sb, 32, &err);
    assert_non_null(fb);
    assert_int_equal(cdc_sandbox_decode(sb, fill_decode, "test", &shape, in, 1, fb, 32, &err), 0);
    expect_filled(fb, 7);
    assert_int_equal(cdc_sandbox_pid(sb), first);

    size_t len = (size_t)3 << 20; /* past the first mapping: it moves */
    fb = cdc_sandbox_frame_buffer(sb, len, &err);
    assert_non_null(fb);
    in[0] = 90;
    assert_int_equal(cdc_sandbox_decode(sb, fill_decode, "test", &shape, in, 1, fb, len, &err), 0);
    for (size_t i = 0; i < len; i += 4099)
        assert_int_equal(fb[i], (uint8_t)(90 + i));
    assert_int_equal(cdc_sandbox_pid(sb), first);

    assert_int_equal(cdc_sandbox_decode(sb, abort_decode, "HTJ2K", &shape, in, 1, fb, len, &err), CDC_ECODEC);
    assert_non_null(strstr(err.msg, "HTJ2K decoder crashed"));
    in[0] = 3;
    assert_int_equal(cdc_sandbox_decode(sb, fill_decode, "test", &shape, in, 1, fb, 32, &err), 0);
    expect_filled(fb, 3);
    assert_true(cdc_sandbox_pid(sb) > 0 && cdc_sandbox_pid(sb) != first);
    cdc_sandbox_close(&sb);
}

/* Allocates and touches 48 MB in four blocks, as a codec's working
 * memory, and frees it. */
static int hungry_decode(const cdc_fmt *fmt, const uint8_t *src, size_t n, uint8_t *out, size_t out_len,
                         dcm_err *err)
{
    size_t len = (size_t)12 << 20;
    uint8_t *work[4];
    for (int i = 0; i < 4; i++) {
        if (!(work[i] = malloc(len)))
            return dcm_fail(err, DCM_ENOMEM, 0, "out of memory");
        memset(work[i], src[0], len);
    }
    int rc = fill_decode(fmt, src, n, out, out_len, err);
    for (int i = 0; i < 4; i++) {
        out[0] = (uint8_t)(out[0] + work[i][len - 1] - src[0]);
        free(work[i]);
    }
    return rc;
}

/* Resident kB of process pid (/proc/PID/statm, second field). */
static long resident_kb(int pid)
{
    char path[64];
    long size = 0, rss = -1;
    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = -1;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* The child keeps a frame's working memory for the next frame of a series,
 * and gives it back once no frame has come for a while. */
static void test_an_idle_child_gives_its_working_memory_back(void **st)
{
    (void)st;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan's allocator replaces glibc's: malloc_trim has nothing to give back */
#endif
    cdc_sandbox *sb;
    dcm_err err = {0};
    assert_int_equal(cdc_sandbox_open(&sb, &err), 0);
    uint8_t in[1] = {4}, out[32];
    assert_int_equal(cdc_sandbox_decode(sb, hungry_decode, "test", &shape, in, 1, out, sizeof out, &err), 0);
    int pid = cdc_sandbox_pid(sb);
    long busy = resident_kb(pid);
    assert_true(busy > 40 * 1024); /* kept: the next frame reuses it */
    for (int i = 0; i < 30 && resident_kb(pid) > busy - 40 * 1024; i++)
        usleep(100 * 1000);
    assert_true(resident_kb(pid) < busy - 40 * 1024);
    assert_int_equal(cdc_sandbox_decode(sb, hungry_decode, "test", &shape, in, 1, out, sizeof out, &err), 0);
    expect_filled(out, 4);
    assert_int_equal(cdc_sandbox_pid(sb), pid);
    cdc_sandbox_close(&sb);
}

/* Without a sandbox of the caller's, each frame has a child of its own. */
static void test_without_a_sandbox_each_frame_forks(void **st)
{
    (void)st;
    dcm_err err = {0};
    uint8_t in[1] = {5}, out[32];
    assert_int_equal(cdc_sandbox_decode(NULL, abort_decode, "HTJ2K", &shape, in, 1, out, sizeof out, &err),
                     CDC_ECODEC);
    assert_non_null(strstr(err.msg, "crashed"));
    assert_int_equal(cdc_sandbox_decode(NULL, fill_decode, "test", &shape, in, 1, out, sizeof out, &err), 0);
    expect_filled(out, 5);
}

/* A codestream fuzz_cdc_htj2k found: it passes the adapter's header checks
 * and then, depending on what memory OpenJPH 0.9 leaves uninitialised,
 * fails an assertion in param_qcd::irrev_get_delta (abort) or throws.
 * Either way the caller gets one clear error naming the codec, and the
 * sandbox decodes the next frame. */
#define CRASHER "tests/fuzz/crashers/fuzz_cdc_htj2k/crash-a67a9b93f4758de47ff230ef93250253b64cf4a7"

static void test_openjph_crasher_gives_a_clean_error(void **st)
{
    (void)st;
    uint8_t data[512];
    FILE *fp = fopen(CRASHER, "rb"); /* tests run from the repository's root */
    assert_non_null(fp);
    size_t size = fread(data, 1, sizeof data, fp);
    fclose(fp);
    assert_true(size > 4 && size < sizeof data);
    /* the fuzz harness's shape bytes (cdc_decoder_fuzz.h) */
    cdc_fmt fmt = {.rows = data[0] + 1u, .cols = data[1] + 1u, .samples = data[2] & 1 ? 3 : 1,
                   .bytes = data[2] & 2 ? 2 : 1};
    fmt.bits_allocated = (uint16_t)(fmt.bytes * 8);
    fmt.bits_stored = (uint16_t)(data[3] % fmt.bits_allocated + 1);
    fmt.photometric = fmt.samples == 3 ? CDC_PI_RGB : CDC_PI_MONOCHROME2;
    uint8_t out[256 * 256 * 3 * 2];
    size_t out_len = cdc_fmt_frame_bytes(&fmt);
    assert_true(out_len <= sizeof out);
    cdc_sandbox *sb;
    dcm_err err = {0};
    assert_int_equal(cdc_sandbox_open(&sb, &err), 0);
    assert_int_equal(cdc_sandbox_decode(sb, cdc_htj2k_decode, "HTJ2K", &fmt, data + 4, size - 4, out, out_len, &err),
                     CDC_ECODEC);
    assert_true(!strncmp(err.msg, "HTJ2K: ", 7) || strstr(err.msg, "HTJ2K decoder crashed on this frame (signal"));
    uint8_t in[1] = {9};
    assert_int_equal(cdc_sandbox_decode(sb, fill_decode, "test", &shape, in, 1, out, 32, &err), 0);
    expect_filled(out, 9);
    cdc_sandbox_close(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_in_the_child_is_an_error_and_the_next_frame_decodes),
        cmocka_unit_test(test_large_frames_grow_the_shared_memory),
        cmocka_unit_test(test_the_shared_frame_buffer_takes_the_frame_from_the_child),
        cmocka_unit_test(test_an_idle_child_gives_its_working_memory_back),
        cmocka_unit_test(test_without_a_sandbox_each_frame_forks),
        cmocka_unit_test(test_openjph_crasher_gives_a_clean_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

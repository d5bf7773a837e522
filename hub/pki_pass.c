/* pki_pass.c — passphrases: from memory, a file's first line, an
 * environment variable, or the terminal without echo.  Every buffer that
 * held one is wiped with OPENSSL_cleanse (a plain memset may be optimised
 * away). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include "hub/pki_private.h"
#include "codecs/banned.h"

void pki_pass_wipe(void *buf, size_t n)
{
    if (buf && n)
        OPENSSL_cleanse(buf, n);
}

/* Copies the first line of p[0..len) (without its \r\n) into buf. */
static int first_line(const char *p, size_t len, char *buf, size_t n, char *err, size_t errlen, const char *what)
{
    size_t k = 0;
    while (k < len && p[k] != '\n' && p[k] != '\r')
        k++;
    if (k == 0)
        return pki_fail(PKI_EPASS, err, errlen, "%s: empty passphrase", what);
    if (k >= n)
        return pki_fail(PKI_EPASS, err, errlen, "%s: passphrase longer than %zu bytes", what, n - 1);
    memcpy(buf, p, k);
    buf[k] = '\0';
    return (int)k;
}

/* One line from the terminal, echo off; -errno or the length. */
static int ask_tty(const char *prompt, char *buf, size_t n)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -ENOTTY;
    struct termios old, quiet;
    int have_termios = tcgetattr(fd, &old) == 0;
    if (have_termios) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0 || write(fd, ": ", 2) < 0) {
        /* the prompt is a courtesy; read anyway */
    }
    size_t k = 0;
    int rc = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || c == '\n' || c == '\r')
            break;
        if (k + 1 < n)
            buf[k++] = c;
        else
            rc = -E2BIG;
    }
    buf[k] = '\0';
    if (have_termios)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* as above */
    }
    close(fd);
    if (rc < 0) {
        pki_pass_wipe(buf, n);
        return rc;
    }
    return (int)k;
}

int pki_pass_get(const pki_pass_src *src, char *buf, size_t n, char *err, size_t errlen)
{
    if (!src || !buf || n < 2)
        return pki_fail(PKI_EINVAL, err, errlen, "no passphrase source");
    if (src->literal)
        return first_line(src->literal, strlen(src->literal), buf, n, err, errlen, "passphrase");
    if (src->file) {
        char *p = NULL;
        size_t len = 0;
        int rc = pki_read_file(src->file, &p, &len);
        if (rc < 0)
            return pki_fail(rc, err, errlen, "%s: %s", src->file, strerror(-rc));
        rc = first_line(p, len, buf, n, err, errlen, src->file);
        pki_pass_wipe(p, len);
        free(p);
        return rc;
    }
    const char *env = src->env ? getenv(src->env) : NULL;
    if (env && env[0])
        return first_line(env, strlen(env), buf, n, err, errlen, src->env);
    if (!src->prompt || !isatty(STDIN_FILENO))
        return pki_fail(PKI_EPASS, err, errlen, "a passphrase is needed: give --passphrase-file FILE%s%s",
                        src->env ? " or set " : "", src->env ? src->env : "");
    int k = ask_tty(src->prompt, buf, n);
    if (k < 0)
        return pki_fail(PKI_EPASS, err, errlen, "reading the passphrase from the terminal failed: %s", strerror(-k));
    if (k == 0)
        return pki_fail(PKI_EPASS, err, errlen, "empty passphrase");
    if (src->confirm) {
        char again[PKI_PASS_MAX + 1];
        int k2 = ask_tty("again", again, sizeof again);
        int same = k2 == k && !CRYPTO_memcmp(buf, again, (size_t)k);
        pki_pass_wipe(again, sizeof again);
        if (!same) {
            pki_pass_wipe(buf, n);
            return pki_fail(PKI_EPASS, err, errlen, "the two passphrases differ");
        }
    }
    return k;
}

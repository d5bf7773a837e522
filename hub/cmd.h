/* cmd.h — the subcommands of the dxhub executable (hub-private).
 * Each takes argc/argv after the command name and returns the process
 * exit status: 0 success, 1 operation failed, 2 bad input or usage. */
#ifndef DXHUB_CMD_H
#define DXHUB_CMD_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

int cmd_dump(int argc, char **argv);
int cmd_transcode(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_ecg(int argc, char **argv);
/* `dxhub ecg --measure`: print r's measurements and triage (hub/cmd_ecg_measure.c). */
struct ecg_record;
int cmd_ecg_measure(const struct ecg_record *r, int json);
int cmd_serve(int argc, char **argv);
int cmd_edge(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_reports(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_allow(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_reader(int argc, char **argv);
int cmd_sr(int argc, char **argv);
int cmd_lookup(int argc, char **argv);
int cmd_audit(int argc, char **argv);

/* A whole regular file of at most max bytes into *out (malloc'd, NUL
 * appended, *len without it): 0, -errno, -EFBIG when larger (hub/cmd_file.c). */
int dx_read_file(const char *path, size_t max, char **out, size_t *len);
/* A signed report as `dxhub sign` leaves it: the document, its signature
 * (default REPORT.sig) and the signer's chain (default REPORT.chain.pem). */
typedef struct dx_signed_report {
    char  *doc, *sig, *chain;
    size_t doc_len, sig_len, chain_len;
} dx_signed_report;
/* 0, or -1 after naming the unreadable file on stderr as command cmd;
 * sig and chain may be NULL for the defaults. */
int  dx_read_signed_report(const char *cmd, const char *report, const char *sig, const char *chain,
                           dx_signed_report *out);
void dx_signed_report_free(dx_signed_report *r);
/* Writes path atomically (a temporary file, fsync, rename): 0 or -errno. */
int dx_write_file(const char *path, const void *p, size_t n);
/* A duration for people: "42 s", "17 min", "5 h", "3 days". */
void   dx_human_age(int64_t ms, char *out, size_t n);
/* Who runs this command, for an audit record: "local:<account>" (with
 * "/sudo:<person>" when root's shell came from sudo). */
void   dx_local_user(char *out, size_t n);
/* t as "YYYY-MM-DDThh:mm:ssZ" (UTC), "?" for 0. */
void   dx_fmt_time(time_t t, char *out, size_t n);
/* "YYYY-MM-DD" or "YYYY-MM-DDThh:mm:ssZ" (UTC); 0 when malformed. */
time_t dx_parse_time(const char *s);
/* The reading workstation daemon (viewer/ws_main.c): the one call from hub/ into viewer/. */
int cmd_workstation(int argc, char **argv);

/* The roles' settings tables (hub/config.h), in their cmd_*.c files. */
struct cfg_role;
extern const struct cfg_role serve_role, edge_role, workstation_role; /* workstation_role: viewer/ws_main.c */

/* "16G", "512M", "100K" or bytes; -1 when malformed. */
int parse_size(const char *s, uint64_t *out);

/* "dxhub CMD: " + message on stderr, one line. */
void dx_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Allocator settings for a role that writes large values into LMDB. */
void dx_tune_malloc_for_store(void);

#endif

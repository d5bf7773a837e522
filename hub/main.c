/* main.c — the dxhub executable: one binary, subcommands as git has.
 * The command table is the one place that knows every role. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "hub/cmd.h"

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

static const dx_command commands[] = {
    {"serve",     cmd_serve,     "the hub: DICOM ingest into LMDB, study completeness, HTTP API"},
    {"edge",      cmd_edge,      "the clinic gateway: DICOM listener, watch folder, store-and-forward to the hub"},
    {"push",      cmd_push,      "queue DICOM files at the clinic gateway (stat/urgent/routine, referral, note)"},
    {"reports",   cmd_reports,   "list the reports and alerts the clinic received"},
    {"reader",    cmd_reader,    "a headless reader: take offered tasks, fetch their studies, submit reports"},
    {"report",    cmd_report,    "write the report document for a fetched study (then sign and submit it)"},
    {"keygen",    cmd_keygen,    "make a CURVE keypair for a role, or X.509 CAs, reader certificates, revocations"},
    {"allow",     cmd_allow,     "add (or revoke) a public key in the hub's allow-list"},
    {"sign",      cmd_sign,      "sign a report's exact bytes with a reader's key (SM2/SM3 or Ed25519)"},
    {"sr",        cmd_sr,        "export a verified signed report as a DICOM Basic Text SR for a PACS"},
    {"verify",    cmd_verify,    "verify a signed report offline: signature, chain, revocation, digests"},
    {"lookup",    cmd_lookup,    "a patient's exams across the consortium, each with whether it may be recognised (互认)"},
    {"backup",    cmd_backup,    "consistent online copy of the hub's store"},
    {"check",     cmd_check,     "verify every stored instance against its digest"},
    {"dump",      cmd_dump,      "print DICOM files like dcmdump, or as DICOM JSON (--json)"},
    {"transcode", cmd_transcode, "rewrite a DICOM file, optionally in another transfer syntax (--ts UID)"},
    {"render",    cmd_render,    "render a frame to PNG or JPEG through the DICOM display pipeline"},
    {"status",    cmd_status,    "print a running hub's health: studies by state, instances, store use, uptime"},
    {"ecg",       cmd_ecg,       "print an ECG's leads, rate, duration and ranges (DICOM, WFDB, HL7 aECG, SCP-ECG)"},
    {"help",      cmd_help,      "list the commands"},
    {"version",   cmd_version,   "print the version"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

void dx_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "dxhub %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("usage: dxhub COMMAND [OPTIONS] [ARGS]\n\n"
           "dxhub carries township clinics' DICOM studies and ECGs to the lead hospital's\n"
           "reading centre and the signed reports back.\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        printf("  %-11s %s\n", commands[i].name, commands[i].summary);
    printf("\n'dxhub COMMAND --help' describes a command's options.\n");
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("dxhub 0.1\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cmd_help(0, NULL);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h"))
        name = "help";
    if (!strcmp(name, "--version"))
        name = "version";
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "dxhub: '%s' is not a command; 'dxhub help' lists them\n", argv[1]);
    return 2;
}

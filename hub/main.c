/* main.c — the dxhub executable: one binary, subcommands as git has.
 * The command table is the one place that knows every role.
 *
 * Start-up: the file tool people run on many files (dump) is linked into
 * the executable itself, which needs only libc and zlib.  The pixel and
 * waveform tools (transcode, render, ecg), also run file after file, live
 * in dxhub-pixels.so: the codecs and their libraries only (~10 ms to load).
 * Every other command lives in dxhub-roles.so, loaded when one of them
 * runs: the ~100 libraries the roles need (DCMTK's network and SR, ZeroMQ
 * and its TLS/Kerberos, libmicrohttpd, OpenSSL, pango and cairo, the
 * codecs) take ~40 ms to load, longer than a dump or a small transcode. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "hub/cmd.h"

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

/* run: linked in; else sym names the function in the library lib. */
typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *sym, *summary, *lib;
} command;

#define ROLES_LIB  "dxhub-roles.so"
#define PIXELS_LIB "dxhub-pixels.so"
#define ROLE(name, fn, summary)  {name, NULL, #fn, summary, ROLES_LIB}
#define PIXEL(name, fn, summary) {name, NULL, #fn, summary, PIXELS_LIB}
#define HERE(name, fn, summary)  {name, fn, #fn, summary, NULL}

static const command commands[] = {
    ROLE("serve",     cmd_serve,     "the hub: DICOM ingest into LMDB, study completeness, HTTP API"),
    ROLE("edge",      cmd_edge,      "the clinic gateway: DICOM listener, watch folder, store-and-forward to the hub"),
    ROLE("push",      cmd_push,      "queue DICOM files at the clinic gateway (stat/urgent/routine, referral, note)"),
    ROLE("reports",   cmd_reports,   "list the reports and alerts the clinic received"),
    ROLE("reader",    cmd_reader,    "a headless reader: take offered tasks, fetch their studies, submit reports"),
    ROLE("workstation", cmd_workstation, "the reading workstation: worklist, prefetch cache, viewer UI on 127.0.0.1, signing"),
    ROLE("report",    cmd_report,    "write the report document for a fetched study (then sign and submit it)"),
    ROLE("keygen",    cmd_keygen,    "make a CURVE keypair for a role, or X.509 CAs, reader certificates, revocations"),
    ROLE("allow",     cmd_allow,     "add (or revoke) a public key in the hub's allow-list"),
    ROLE("sign",      cmd_sign,      "sign a report's exact bytes with a reader's key (SM2/SM3 or Ed25519)"),
    ROLE("sr",        cmd_sr,        "export a verified signed report as a DICOM Basic Text SR for a PACS"),
    ROLE("verify",    cmd_verify,    "verify a signed report offline: signature, chain, revocation, digests"),
    ROLE("lookup",    cmd_lookup,    "a patient's exams across the consortium, each with whether it may be recognised (互认)"),
    ROLE("audit",     cmd_audit,     "the hub's or a clinic gateway's audit trail: who read or changed what, when"),
    ROLE("backup",    cmd_backup,    "consistent online copy of the hub's store"),
    ROLE("check",     cmd_check,     "verify every stored instance against its digest"),
    HERE("dump",      cmd_dump,      "print DICOM files like dcmdump, or as DICOM JSON (--json)"),
    PIXEL("transcode", cmd_transcode, "rewrite a DICOM file, optionally in another transfer syntax (--ts UID)"),
    PIXEL("render",   cmd_render,    "render a frame to PNG or JPEG through the DICOM display pipeline"),
    ROLE("status",    cmd_status,    "print a running hub's health: studies by state, instances, store use, uptime"),
    PIXEL("ecg",      cmd_ecg,       "print an ECG's leads, rate, duration and ranges (DICOM, WFDB, HL7 aECG, SCP-ECG)"),
    HERE("help",      cmd_help,      "list the commands"),
    HERE("version",   cmd_version,   "print the version"),
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* lib: beside this executable (the build tree), else in ../lib/dxhub/
 * from it (make install). */
static void *load_lib(const char *lib)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 64);
    if (n <= 0)
        return NULL;
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash + 1 - path) : 0;
    void *h = NULL;
    for (int i = 0; i < 2 && !h; i++) {
        snprintf(path + dir, sizeof path - dir, "%s%s", i ? "../lib/dxhub/" : "", lib);
        if (access(path, F_OK) == 0 || i == 1)
            h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    return h;
}

/* Run a command of its library. */
static int run_role(const command *c, int argc, char **argv)
{
    void *h = load_lib(c->lib);
    int (*fn)(int, char **) = NULL;
    if (h)
        *(void **)&fn = dlsym(h, c->sym);
    if (!fn) {
        const char *why = dlerror();
        fprintf(stderr, "dxhub: cannot load the '%s' command: %s\n", c->name,
                why ? why : "its library is neither beside dxhub nor in ../lib/dxhub/");
        return 1;
    }
    return fn(argc, argv); /* the library stays loaded until exit */
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
            return commands[i].run ? commands[i].run(argc - 1, argv + 1) : run_role(&commands[i], argc - 1, argv + 1);
    fprintf(stderr, "dxhub: '%s' is not a command; 'dxhub help' lists them\n", argv[1]);
    return 2;
}

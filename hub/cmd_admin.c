/* cmd_admin.c — the operator's `dxhub backup` (a consistent online copy
 * of the hub's LMDB environment, taken while it serves) and `dxhub check`
 * (every stored digest verified). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "hub/cmd.h"
#include "hub/digest.h"
#include "hub/store.h"

static int open_existing(const char *cmd, const char *dir, store **st)
{
    struct stat sb;
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &sb) < 0) {
        dx_errorf(cmd, "%s holds no hub data (no data.mdb)", dir);
        return 2;
    }
    store_config cfg = {.dir = dir, .attach = true}; /* the hub may be serving it */
    char err[512];
    if (store_open(&cfg, st, err, sizeof err) < 0) {
        dx_errorf(cmd, "%s", err);
        return 1;
    }
    return 0;
}

int cmd_backup(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    const char *data = "./var/hub";
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'd')
            data = optarg;
        else {
            printf("usage: dxhub backup [--data DIR] DEST\n"
                   "  a consistent copy of the hub's store into DEST (LMDB's own copy, compacted),\n"
                   "  taken while the hub keeps serving; restore by starting the hub with --data DEST\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (optind != argc - 1) {
        dx_errorf("backup", "need one DEST directory (usage: dxhub backup [--data DIR] DEST)");
        return 2;
    }
    store *st = NULL;
    int rc = open_existing("backup", data, &st);
    if (rc)
        return rc;
    char err[512];
    rc = store_backup(st, argv[optind], err, sizeof err);
    store_close(&st);
    if (rc < 0) {
        dx_errorf("backup", "%s", err);
        return 1;
    }
    printf("backup of %s written to %s (check it with: dxhub check --data %s)\n", data, argv[optind], argv[optind]);
    return 0;
}

typedef struct check_ctx {
    unsigned long ok, bad;
    int           verbose;
} check_ctx;

static int check_one(void *ctx, const store_instance *in, int ok, const char *why)
{
    check_ctx *c = ctx;
    char hex[65];
    digest_hex(in->digest, hex);
    if (ok)
        c->ok++;
    else
        c->bad++;
    if (!ok || c->verbose)
        printf("%s %s%s %s%s%s\n", ok ? "ok " : "BAD", in->sop_uid, in->conflict ? " (conflict copy)" : "", hex,
               ok ? "" : ": ", ok ? "" : why);
    return 0;
}

int cmd_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},       {0, 0, 0, 0}};
    const char *data = "./var/hub";
    check_ctx c = {0};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        if (o == 'd')
            data = optarg;
        else if (o == 'v')
            c.verbose = 1;
        else {
            printf("usage: dxhub check [--data DIR] [--verbose]\n"
                   "  re-hashes every stored instance and compares with its recorded digest\n");
            return o == 'h' ? 0 : 2;
        }
    }
    store *st = NULL;
    int rc = open_existing("check", data, &st);
    if (rc)
        return rc;
    rc = store_check(st, check_one, &c);
    store_close(&st);
    if (rc < 0) {
        dx_errorf("check", "cannot read the store in %s", data);
        return 1;
    }
    printf("%lu instances verified, %lu damaged\n", c.ok, c.bad);
    return c.bad ? 1 : 0;
}

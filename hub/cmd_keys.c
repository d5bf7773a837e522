/* cmd_keys.c — `dxhub keygen` (CURVE keypairs) and `dxhub allow` (the
 * hub's allow-list of public keys and their roles). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "hub/cmd.h"
#include "hub/keys.h"

int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"keys", required_argument, NULL, 'k'}, {"name", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},       {0, 0, 0, 0}};
    const char *dir = NULL, *name = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'k')
            dir = optarg;
        else if (o == 'n')
            name = optarg;
        else {
            printf("usage: dxhub keygen --keys DIR --name NAME\n"
                   "  writes a CURVE keypair: DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (!dir || !name || strchr(name, '/') || !name[0]) {
        dx_errorf("keygen", "--keys DIR and --name NAME are required (NAME without '/')");
        return 2;
    }
    keypair kp;
    char err[512];
    if (keys_generate(dir, name, &kp, err, sizeof err) < 0) {
        dx_errorf("keygen", "%s", err);
        return 1;
    }
    printf("%s/%s.key (secret: keep it on this machine)\n%s/%s.pub %s\n", dir, name, dir, name, kp.pub);
    return 0;
}

int cmd_allow(int argc, char **argv)
{
    static const struct option opts[] = {
        {"keys", required_argument, NULL, 'k'}, {"role", required_argument, NULL, 'r'},
        {"revoke", no_argument, NULL, 'x'},     {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}};
    const char *dir = NULL, *role = NULL;
    int revoke = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'k')
            dir = optarg;
        else if (o == 'r')
            role = optarg;
        else if (o == 'x')
            revoke = 1;
        else {
            printf("usage: dxhub allow --keys DIR --role ROLE PUBFILE\n"
                   "       dxhub allow --keys DIR --revoke PUBFILE\n"
                   "  adds a public key to the hub's allow-list (DIR/allow.txt) with a role:\n"
                   "  edge:<facility>, reader:<id> or peer:<hub>; the hub reloads it on SIGHUP\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (!dir || optind != argc - 1 || (!revoke && !role)) {
        dx_errorf("allow", "usage: dxhub allow --keys DIR --role ROLE PUBFILE (or --revoke PUBFILE)");
        return 2;
    }
    char pub[KEY_Z85_LEN + 1], err[512];
    if (keys_read_public(argv[optind], pub, err, sizeof err) < 0) {
        dx_errorf("allow", "%s", err);
        return 2;
    }
    if (allowlist_edit(dir, pub, role, revoke, err, sizeof err) < 0) {
        dx_errorf("allow", "%s", err);
        return 2;
    }
    printf("%s %s %s in %s/allow.txt\n", pub, revoke ? "revoked" : "allowed as", revoke ? "" : role, dir);
    return 0;
}

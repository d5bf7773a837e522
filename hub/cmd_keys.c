/* cmd_keys.c — `dxhub keygen` (CURVE keypairs; with --ca, --reader,
 * --revoke, --crl or --facility the X.509 material of signed reports:
 * pki.h) and `dxhub allow` (the hub's allow-list of public keys and
 * their roles). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hub/apikeys.h"
#include "hub/cmd.h"
#include "hub/keys.h"
#include "hub/pki.h"

static const char keygen_usage[] =
    "usage: dxhub keygen --keys DIR --name NAME\n"
    "  writes a CURVE keypair: DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub\n"
    "\n"
    "X.509 for signed reports (SM2/SM3 by default, --alg ed25519 the alternative):\n"
    "  dxhub keygen --ca --facility HOSP --keys CADIR [--alg A] [--days N] [--crl-days N]\n"
    "               [--passphrase-file F]\n"
    "      a facility CA: CADIR/ca.key (0600; encrypted with F's passphrase or\n"
    "      $DXHUB_CA_PASSPHRASE when given), CADIR/ca.pem, CADIR/crl.pem (empty CRL)\n"
    "  dxhub keygen --reader ID --name \"Dr Wang Wei\" --role attending --ca CADIR --keys OUTDIR\n"
    "               [--facility HOSP] [--alg A] [--days N] [--passphrase-file F]\n"
    "               [--ca-passphrase-file F]\n"
    "      a reader: OUTDIR/ID.key (PKCS#8, AES-256, the passphrase from F, else\n"
    "      $DXHUB_PASSPHRASE, else asked twice on the terminal), OUTDIR/ID.pem,\n"
    "      OUTDIR/ID.chain.pem; --alg defaults to the CA's; a negative --days makes an\n"
    "      already expired certificate (tests)\n"
    "  dxhub keygen --revoke CERT.pem --ca CADIR [--crl-days N] [--ca-passphrase-file F]\n"
    "      adds CERT to CADIR/crl.pem and re-signs it (nextUpdate now + N days, default 30)\n"
    "  dxhub keygen --crl --ca CADIR [--crl-days N]\n"
    "      re-signs CADIR/crl.pem unchanged (publish a fresh CRL before nextUpdate)\n"
    "  The CA key's passphrase, when it has one: --ca-passphrase-file, else\n"
    "  $DXHUB_CA_PASSPHRASE, else asked on the terminal.\n"
    "\n"
    "API keys for the hub's HTTP API (another facility's lookups):\n"
    "  dxhub keygen --api-key FACILITY --keys HUBKEYS\n"
    "      prints a new token once (give it to the facility: Authorization: Bearer\n"
    "      TOKEN); HUBKEYS/api-keys.txt keeps only its SHA-256; kill -HUP the hub\n"
    "  dxhub keygen --revoke-api-key FACILITY --keys HUBKEYS\n"
    "      removes every key of FACILITY\n";

typedef struct keygen_opts {
    const char *keys, *name, *facility, *reader, *role, *revoke, *cadir, *alg, *passf, *ca_passf;
    const char *api_key, *revoke_api_key;
    int         ca, crl, days_set, days, crl_days;
} keygen_opts;

static int parse_int(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < -36500 || v > 36500)
        return -1;
    *out = (int)v;
    return 0;
}

/* notBefore/notAfter for --days: a negative count gives a certificate that
 * expired |days| days ago (valid for a day before that). */
static void validity(int days, time_t now, time_t *nb, time_t *na)
{
    if (days > 0) {
        *nb = now - 300; /* five minutes of clock skew between machines */
        *na = now + (time_t)days * 86400;
    } else {
        *na = now + (time_t)days * 86400;
        *nb = *na - 86400;
    }
}

static int keygen_ca(const keygen_opts *o)
{
    int alg = o->alg ? pki_alg_parse(o->alg) : PKI_SM2;
    if (!o->keys || !o->facility || alg < 0) {
        dx_errorf("keygen", "--ca needs --keys CADIR and --facility ID (--alg sm2 or ed25519)");
        return 2;
    }
    char pass[PKI_PASS_MAX + 1], err[512];
    int plen = 0;
    if (o->passf || getenv("DXHUB_CA_PASSPHRASE")) {
        pki_pass_src src = {.file = o->passf, .env = "DXHUB_CA_PASSPHRASE"};
        if ((plen = pki_pass_get(&src, pass, sizeof pass, err, sizeof err)) < 0) {
            dx_errorf("keygen", "%s", err);
            return 2;
        }
    }
    time_t now = time(NULL), nb, na;
    validity(o->days_set ? o->days : 3650, now, &nb, &na);
    int rc = pki_ca_init(o->keys, (pki_alg)alg, o->facility, nb, na, o->crl_days, plen > 0 ? pass : NULL,
                         plen > 0 ? (size_t)plen : 0, err, sizeof err);
    pki_pass_wipe(pass, sizeof pass);
    if (rc < 0) {
        dx_errorf("keygen", "%s", err);
        return rc == PKI_EEXIST || rc == PKI_EINVAL ? 2 : 1;
    }
    printf("%s/ca.key (the CA's private key, %s; keep it offline)\n%s/ca.pem (%s reader CA, %s)\n"
           "%s/crl.pem (empty CRL, re-sign within %d days: dxhub keygen --crl --ca %s)\n",
           o->keys, plen > 0 ? "encrypted" : "NOT encrypted: give --passphrase-file to encrypt it", o->keys,
           o->facility, pki_alg_name((pki_alg)alg), o->keys, o->crl_days, o->keys);
    return 0;
}

static int keygen_reader(const keygen_opts *o)
{
    if (!o->cadir || !o->keys || !o->name || !o->role) {
        dx_errorf("keygen", "--reader ID needs --name NAME, --role ROLE, --ca CADIR and --keys OUTDIR");
        return 2;
    }
    int alg = -1;
    if (o->alg && (alg = pki_alg_parse(o->alg)) < 0) {
        dx_errorf("keygen", "--alg %s: sm2 or ed25519", o->alg);
        return 2;
    }
    if (alg < 0) { /* the CA's algorithm */
        char p[4200], err[512];
        pki_chain *ca = NULL;
        snprintf(p, sizeof p, "%s/ca.pem", o->cadir);
        if (pki_chain_load(p, &ca, err, sizeof err) < 0) {
            dx_errorf("keygen", "%s", err);
            return 2;
        }
        pki_identity id;
        pki_chain_identity(ca, &id);
        pki_chain_free(&ca);
        alg = pki_alg_parse(id.alg);
        alg = alg < 0 ? PKI_SM2 : alg;
    }
    char pass[PKI_PASS_MAX + 1], err[512], serial[80] = "", prompt[200];
    snprintf(prompt, sizeof prompt, "new passphrase for %s's key", o->reader);
    pki_pass_src src = {.file = o->passf, .env = "DXHUB_PASSPHRASE", .prompt = prompt, .confirm = 1};
    int plen = pki_pass_get(&src, pass, sizeof pass, err, sizeof err);
    if (plen < 0) {
        dx_errorf("keygen", "%s", err);
        return 2;
    }
    char ca_prompt[4300];
    snprintf(ca_prompt, sizeof ca_prompt, "passphrase of %s/ca.key", o->cadir);
    pki_pass_src ca_src = {.file = o->ca_passf, .env = "DXHUB_CA_PASSPHRASE", .prompt = ca_prompt};
    time_t now = time(NULL);
    pki_reader_spec spec = {.reader_id = o->reader, .name = o->name, .role = o->role, .facility = o->facility,
                            .alg = (pki_alg)alg};
    validity(o->days_set ? o->days : 365, now, &spec.not_before, &spec.not_after);
    int rc = pki_ca_issue(o->cadir, &ca_src, &spec, o->keys, pass, (size_t)plen, serial, err, sizeof err);
    pki_pass_wipe(pass, sizeof pass);
    if (rc < 0) {
        dx_errorf("keygen", "%s", err);
        return rc == PKI_ECRYPTO || rc == PKI_EPASS ? 1 : 2;
    }
    printf("%s/%s.key (the reader's private key, encrypted: it stays on this machine)\n"
           "%s/%s.pem (certificate, serial %s, %s)\n%s/%s.chain.pem (certificate + CA: give it with signed reports)\n",
           o->keys, o->reader, o->keys, o->reader, serial, pki_alg_name((pki_alg)alg), o->keys, o->reader);
    return 0;
}

static int keygen_revoke(const keygen_opts *o)
{
    if (!o->cadir) {
        dx_errorf("keygen", "--revoke CERT and --crl need --ca CADIR");
        return 2;
    }
    char ca_prompt[4300], err[512];
    snprintf(ca_prompt, sizeof ca_prompt, "passphrase of %s/ca.key", o->cadir);
    pki_pass_src ca_src = {.file = o->ca_passf, .env = "DXHUB_CA_PASSPHRASE", .prompt = ca_prompt};
    int rc = pki_ca_revoke(o->cadir, &ca_src, o->revoke, time(NULL), o->crl_days, err, sizeof err);
    if (rc < 0) {
        dx_errorf("keygen", "%s", err);
        return rc == PKI_ECRYPTO || rc == PKI_EPASS ? 1 : 2;
    }
    if (o->revoke)
        printf("%s %s in %s/crl.pem (valid %d days); copy it to the trust lists\n", o->revoke,
               rc == 1 ? "was already revoked" : "revoked", o->cadir, o->crl_days);
    else
        printf("%s/crl.pem re-signed (valid %d days); copy it to the trust lists\n", o->cadir, o->crl_days);
    return 0;
}

/* A facility's API key: printed once, only its hash kept (apikeys.h). */
static int keygen_api_key(const keygen_opts *o)
{
    const char *facility = o->api_key ? o->api_key : o->revoke_api_key;
    if (!o->keys) {
        dx_errorf("keygen", "--keys HUBKEYS is required (the hub's keys folder, DATA/keys)");
        return 2;
    }
    if (!apikeys_facility_valid(facility)) {
        dx_errorf("keygen", "facility '%s': letters, digits, '.', '_' and '-', 1 to 63", facility);
        return 2;
    }
    char err[512];
    if (o->revoke_api_key) {
        int n = apikeys_revoke(o->keys, facility, err, sizeof err);
        if (n < 0) {
            dx_errorf("keygen", "%s", err);
            return n == -ENOENT ? 2 : 1;
        }
        printf("%d API key%s of %s revoked in %s/%s; kill -HUP the hub\n", n, n == 1 ? "" : "s", facility, o->keys,
               APIKEYS_FILE);
        return 0;
    }
    char token[APIKEY_TOKEN_LEN + 1];
    if (apikeys_issue(o->keys, facility, token, err, sizeof err) < 0) {
        dx_errorf("keygen", "%s", err);
        return 1;
    }
    printf("%s\n", token);
    fprintf(stderr, "API key for %s: shown once above (only its hash is in %s/%s); kill -HUP the hub to use it\n",
            facility, o->keys, APIKEYS_FILE);
    return 0;
}

int cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"keys", required_argument, NULL, 'k'},       {"name", required_argument, NULL, 'n'},
        {"ca", optional_argument, NULL, 'C'},         {"reader", required_argument, NULL, 'r'},
        {"role", required_argument, NULL, 'R'},       {"facility", required_argument, NULL, 'f'},
        {"revoke", required_argument, NULL, 'x'},     {"crl", no_argument, NULL, 'L'},
        {"alg", required_argument, NULL, 'a'},        {"days", required_argument, NULL, 'd'},
        {"crl-days", required_argument, NULL, 'D'},   {"passphrase-file", required_argument, NULL, 'p'},
        {"ca-passphrase-file", required_argument, NULL, 'P'},
        {"api-key", required_argument, NULL, 'A'},    {"revoke-api-key", required_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},             {0, 0, 0, 0}};
    keygen_opts k = {.crl_days = 30};
    int o, x509 = 0;
    optind = 1;
    /* '+': no reordering, so "--ca CADIR" can take the next word by hand
     * while a bare "--ca" (make a CA) stays a flag. */
    while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (o) {
        case 'k': k.keys = optarg; break;
        case 'n': k.name = optarg; break;
        case 'C':
            x509 = 1;
            if (!optarg && optind < argc && argv[optind][0] != '-')
                optarg = argv[optind++];
            if (optarg)
                k.cadir = optarg;
            else
                k.ca = 1;
            break;
        case 'r': k.reader = optarg; x509 = 1; break;
        case 'R': k.role = optarg; break;
        case 'f': k.facility = optarg; x509 = 1; break;
        case 'x': k.revoke = optarg; x509 = 1; break;
        case 'L': k.crl = 1; x509 = 1; break;
        case 'a': k.alg = optarg; break;
        case 'p': k.passf = optarg; break;
        case 'P': k.ca_passf = optarg; break;
        case 'A': k.api_key = optarg; break;
        case 'V': k.revoke_api_key = optarg; break;
        case 'd':
        case 'D':
            if (parse_int(optarg, o == 'd' ? &k.days : &k.crl_days) < 0 || (o == 'D' && k.crl_days <= 0) ||
                (o == 'd' && k.days == 0)) {
                dx_errorf("keygen", "--%s %s: a whole number of days (not 0)", o == 'd' ? "days" : "crl-days", optarg);
                return 2;
            }
            k.days_set |= o == 'd';
            break;
        default:
            fputs(keygen_usage, o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
    }
    if (optind != argc) {
        dx_errorf("keygen", "unexpected argument '%s' ('dxhub keygen --help')", argv[optind]);
        return 2;
    }
    if (k.api_key || k.revoke_api_key) {
        if (x509 || k.name || (k.api_key && k.revoke_api_key))
            dx_errorf("keygen", "--api-key and --revoke-api-key take --keys only");
        else
            return keygen_api_key(&k);
        return 2;
    }
    if (x509) {
        if (k.ca && k.days_set && k.days < 0) {
            dx_errorf("keygen", "a CA's --days must be positive");
            return 2;
        }
        if ((k.reader != NULL) + (k.revoke != NULL || k.crl) + k.ca != 1) {
            dx_errorf("keygen", "give one of --ca (make a CA), --reader ID, --revoke CERT or --crl");
            return 2;
        }
        return k.ca ? keygen_ca(&k) : k.reader ? keygen_reader(&k) : keygen_revoke(&k);
    }
    const char *dir = k.keys, *name = k.name;
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

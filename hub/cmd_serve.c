/* cmd_serve.c — `dxhub serve`: options (DESIGN.md §9) into serve_config. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hub/cmd.h"
#include "hub/serve.h"

static const char usage[] =
    "usage: dxhub serve [OPTIONS]\n"
    "  the hub: receives DICOM (C-STORE), stores it durably in LMDB, decides when\n"
    "  studies are complete, serves the HTTP API\n"
    "  --data DIR            data directory (default ./var/hub)\n"
    "  --bind ADDR           address to listen on (default 127.0.0.1)\n"
    "  --dicom-port N        DICOM port (default 11112)\n"
    "  --aet AET             our AE title (default DXHUB)\n"
    "  --allow-ae A,B,...    calling AE titles accepted (others are rejected)\n"
    "  --open-dicom          accept any calling AE title\n"
    "  --http-port N         HTTP API port (default 8410)\n"
    "  --stable-seconds N    quiet time after which a study is complete (default 60)\n"
    "  --retain-days N       evict completed studies older than N days (signed first)\n"
    "  --map-size BYTES      LMDB map size (default 16G; K/M/G suffixes)\n"
    "  --max-associations N  concurrent DICOM associations (default 16)\n"
    "  --edge-port N         ZeroMQ port for clinic edges (default 5570)\n"
    "  --keys DIR            hub.key/hub.pub and allow.txt (default DATA/keys)\n"
    "  --reader-port N       ZeroMQ port for reading workstations (default 5571)\n"
    "  --readers FILE        reader profiles (default DATA/readers.conf)\n"
    "  --lease-seconds N     a claimed task returns to the queue without heartbeats (default 60)\n"
    "  --name NAME           this hub's name in lookup answers (default hub)\n"
    "  --peer-port N         ZeroMQ port for the consortium's other hubs (default 5572)\n"
    "  --peers FILE          the other hubs to ask: NAME tcp://HOST:PORT PUBKEY (default DATA/peers.conf)\n"
    "  --peer-timeout-ms N   how long a lookup waits for another hub (default 2000)\n"
    "  --recognition FILE    recognition rules: consortium, mark, members, validity (default\n"
    "                        DATA/recognition.conf; embedded defaults without it)\n"
    "  API keys for other facilities: dxhub keygen --api-key FACILITY --keys DATA/keys\n";

static int parse_port(const char *s, uint16_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

int parse_size(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1 << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1 << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1 << 30, end++;
    if (*end || v <= 0)
        return -1;
    *out = (uint64_t)(v * (double)mul);
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    enum { O_DATA = 1, O_BIND, O_DPORT, O_AET, O_ALLOW, O_OPEN, O_HPORT, O_STABLE, O_RETAIN, O_MAP, O_ASSOC, O_EPORT, O_KEYS, O_RPORT, O_READERS, O_LEASE, O_NAME, O_PPORT, O_PEERS, O_PTIMEOUT, O_RECOG };
    static const struct option opts[] = {
        {"data", required_argument, NULL, O_DATA},          {"bind", required_argument, NULL, O_BIND},
        {"dicom-port", required_argument, NULL, O_DPORT},   {"aet", required_argument, NULL, O_AET},
        {"allow-ae", required_argument, NULL, O_ALLOW},     {"open-dicom", no_argument, NULL, O_OPEN},
        {"http-port", required_argument, NULL, O_HPORT},    {"stable-seconds", required_argument, NULL, O_STABLE},
        {"retain-days", required_argument, NULL, O_RETAIN}, {"map-size", required_argument, NULL, O_MAP},
        {"max-associations", required_argument, NULL, O_ASSOC}, {"help", no_argument, NULL, 'h'},
        {"edge-port", required_argument, NULL, O_EPORT},    {"keys", required_argument, NULL, O_KEYS},
        {"reader-port", required_argument, NULL, O_RPORT},  {"readers", required_argument, NULL, O_READERS},
        {"lease-seconds", required_argument, NULL, O_LEASE},
        {"name", required_argument, NULL, O_NAME},          {"peer-port", required_argument, NULL, O_PPORT},
        {"peers", required_argument, NULL, O_PEERS},        {"peer-timeout-ms", required_argument, NULL, O_PTIMEOUT},
        {"recognition", required_argument, NULL, O_RECOG},
        {0, 0, 0, 0}};
    serve_config c = {.data_dir = "./var/hub", .bind = "127.0.0.1", .aet = "DXHUB", .allow_ae = "",
                      .dicom_port = 11112, .http_port = 8410, .stable_seconds = 60, .retain_days = -1,
                      .max_assocs = 16, .edge_port = 5570,
                      .reader_port = 5571, .lease_seconds = 60, .peer_port = 5572, .peer_timeout_ms = 2000,
                      .name = "hub"};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (o) {
        case O_DATA: c.data_dir = optarg; break;
        case O_BIND: c.bind = optarg; break;
        case O_AET: c.aet = optarg; break;
        case O_ALLOW: c.allow_ae = optarg; break;
        case O_OPEN: c.open_dicom = 1; break;
        case O_KEYS: c.keys_dir = optarg; break;
        case O_READERS: c.readers_file = optarg; break;
        case O_NAME: c.name = optarg; break;
        case O_PEERS: c.peers_file = optarg; break;
        case O_RECOG: c.recognition = optarg; break;
        case O_PPORT: {
            uint16_t pp;
            if (parse_port(optarg, &pp) < 0) {
                dx_errorf("serve", "bad port '%s' for --peer-port", optarg);
                return 2;
            }
            c.peer_port = pp;
            break;
        }
        case O_PTIMEOUT: {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 10 || v > 600000) {
                dx_errorf("serve", "bad number '%s' for --peer-timeout-ms (10..600000)", optarg);
                return 2;
            }
            c.peer_timeout_ms = (int)v;
            break;
        }
        case O_RPORT:
            if (parse_port(optarg, &c.reader_port) < 0) {
                dx_errorf("serve", "bad port '%s' for --reader-port", optarg);
                return 2;
            }
            break;
        case O_LEASE: {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 86400) {
                dx_errorf("serve", "bad number '%s' for --lease-seconds", optarg);
                return 2;
            }
            c.lease_seconds = (int)v;
            break;
        }
        case O_DPORT:
        case O_HPORT:
        case O_EPORT:
            if (parse_port(optarg, o == O_DPORT ? &c.dicom_port : o == O_HPORT ? &c.http_port : &c.edge_port) < 0) {
                dx_errorf("serve", "bad port '%s' for --%s", optarg,
                          o == O_DPORT ? "dicom-port" : o == O_HPORT ? "http-port" : "edge-port");
                return 2;
            }
            break;
        case O_STABLE:
        case O_RETAIN:
        case O_ASSOC: {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 1000000) {
                dx_errorf("serve", "bad number '%s' for --%s", optarg,
                          o == O_STABLE ? "stable-seconds" : o == O_RETAIN ? "retain-days" : "max-associations");
                return 2;
            }
            if (o == O_STABLE)
                c.stable_seconds = (int)v;
            else if (o == O_RETAIN)
                c.retain_days = (int)v;
            else
                c.max_assocs = (int)v;
            break;
        }
        case O_MAP:
            if (parse_size(optarg, &c.map_size) < 0) {
                dx_errorf("serve", "bad size '%s' for --map-size", optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        dx_errorf("serve", "unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (strlen(c.aet) == 0 || strlen(c.aet) > 16) {
        dx_errorf("serve", "--aet must be 1 to 16 characters");
        return 2;
    }
    char readers_file[4200];
    if (!c.readers_file) {
        snprintf(readers_file, sizeof readers_file, "%s/readers.conf", c.data_dir);
        c.readers_file = readers_file;
    }
    size_t nl = strlen(c.name);
    if (!nl || nl > 63 || strspn(c.name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != nl) {
        dx_errorf("serve", "--name: letters, digits, '.', '_', '-', 1 to 63");
        return 2;
    }
    char peers_file[4200], recognition[4200];
    if (!c.peers_file) {
        snprintf(peers_file, sizeof peers_file, "%s/peers.conf", c.data_dir);
        c.peers_file = peers_file;
    }
    if (!c.recognition) {
        snprintf(recognition, sizeof recognition, "%s/recognition.conf", c.data_dir);
        c.recognition = recognition;
    }
    char keys[4200];
    if (!c.keys_dir) {
        snprintf(keys, sizeof keys, "%s/keys", c.data_dir);
        c.keys_dir = keys;
    }
    return serve_run(&c);
}

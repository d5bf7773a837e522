#!/usr/bin/env bash
# sign.sh — the signed-report section of `make bench`: report signatures
# and verifications per second through dxhub's pki/report code
# (bench/bench_sign.c, linking libdxhub.a) beside OpenSSL's own figures for
# the same algorithms (`openssl speed sm2`, `openssl speed ed25519`), one
# core each, CPU time on both sides (openssl speed counts user time).
#
# Rows, per algorithm (SM2 with SM3 and the GM/T ID; Ed25519):
#   sign, verify          a one-instance report (~700 bytes) vs openssl
#                         speed's sign/s and verify/s (it signs 20 bytes):
#                         the ratio is dxhub's overhead per operation
#   sign_300, verify_300  a report listing 300 instances (~33 KB, a CT
#                         series), so the document's hashing shows
#   check_300             report_verify, what the hub runs per SUBMIT and
#                         `dxhub verify` offline: the report's signature,
#                         the CA's signature on the certificate, revocation,
#                         validity, parsing the chain and the JSON; beside
#                         openssl's bare verify/s
# Prints a table and writes build/bench/sign.json as a list of
# {"metric", "value", "unit", "peer", "peer_value", "ratio"} (ratio =
# value / peer_value; above 1 is faster).  SIGN_BENCH_SECONDS (default 2)
# per measurement.  Targets are printed, never asserted.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
SECS=${SIGN_BENCH_SECONDS:-2}
command -v openssl >/dev/null || { echo "bench sign: openssl missing (Debian package openssl; make deps)" >&2; exit 1; }
[ -x "$BUILD/bench/bench_sign" ] || make --no-print-directory "$BUILD/bench/bench_sign" >/dev/null
mkdir -p "$BUILD/bench"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dxhub-bench-sign-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

"$BUILD/bench/bench_sign" --seconds "$SECS" --instances 300 >"$tmp/ours.txt"
for alg in sm2 ed25519; do
    openssl speed -seconds "$SECS" "$alg" >"$tmp/openssl-$alg.txt" 2>/dev/null
done
openssl version >"$tmp/version.txt"

"$PY" - "$tmp" "$BUILD/bench/sign.json" <<'EOF'
import json, os, re, sys

tmp, out = sys.argv[1], sys.argv[2]
version = open(os.path.join(tmp, "version.txt")).read().split()[1]
ours = {}
for line in open(os.path.join(tmp, "ours.txt")):
    alg, op, rate, size = line.split()
    ours[(alg, op)] = (float(rate), int(size))

def speed(alg):
    """(sign/s, verify/s) from the last line of openssl speed's table."""
    want = "SM2" if alg == "sm2" else "Ed25519"
    for line in open(os.path.join(tmp, f"openssl-{alg}.txt")):
        if want in line and re.search(r"\d+\.\d+\s+\d+\.\d+\s*$", line):
            s, v = line.split()[-2:]
            return float(s), float(v)
    sys.exit(f"bench sign: no {want} line in openssl speed's output")

names = {"sm2": "SM2/SM3", "ed25519": "Ed25519"}
rows, metrics = [], []
for alg in ("sm2", "ed25519"):
    ps, pv = speed(alg)
    peer = f"openssl speed {alg} ({version})"
    for op, metric, peer_op, pval, what in (
        ("sign", "sign_per_s", "sign", ps, "sign, 1-instance report"),
        ("verify", "verify_per_s", "verify", pv, "verify, 1-instance report"),
        ("sign_big", "sign_per_s_300", "sign", ps, "sign, 300-instance report"),
        ("verify_big", "verify_per_s_300", "verify", pv, "verify, 300-instance report"),
        ("check", "report_check_per_s_300", "verify", pv, "full report check (chain, CRL, JSON)"),
    ):
        rate, size = ours[(alg, op)]
        rows.append((names[alg], what, size, rate, peer_op, pval, rate / pval))
        metrics.append({"metric": f"{metric}/{alg}", "value": round(rate, 1), "unit": "operations/s (one core, CPU time)",
                        "peer": f"{peer} {peer_op}", "peer_value": round(pval, 1), "ratio": round(rate / pval, 3)})

print(f"report signatures: dxhub (libdxhub.a) vs openssl speed, OpenSSL {version}, one core, CPU time")
print("%-8s %-38s %6s %9s %10s %-6s %6s" % ("alg", "operation", "bytes", "dxhub/s", "openssl/s", "(op)", "ratio"))
for alg, what, size, rate, peer_op, pval, ratio in rows:
    print("%-8s %-38s %6d %9.0f %10.0f %-6s %6.2f" % (alg, what, size, rate, pval, peer_op, ratio))
with open(out, "w") as f:
    json.dump(metrics, f, indent=1)
    f.write("\n")
print(f"written {out}")
EOF

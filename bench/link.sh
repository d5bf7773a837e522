#!/usr/bin/env bash
# link.sh — the clinic→hub link: dxhub's edge→hub transfer over an emulated
# clinic link, side by side in one run with Orthanc sending the same study to
# a second Orthanc over the same link (details in bench/link_run.py).
#
# Link: LINK_BENCH_MBIT (10) Mbit/s by tbf on a veth pair between two network
# namespaces this script makes (198.18.0.1 / 198.18.0.2, never another
# address), 40 ms RTT and 1% loss by tests/fault/faultproxy.py (this kernel
# has no netem).  Data: the synthetic CT series (samples/gen_ct_series.py,
# LINK_BENCH_SLICES slices, default 300; the shared one of bench/run-all when
# it has that many) and the CR/DX batch (samples/gen_dx_images.py: three
# 2500x2048 radiographs), made once and cached in $BUILD/bench/link-data.
#
# Prints a table and writes $BUILD/bench/link.json (a list of {"metric",
# "value", "unit", "peer", "peer_value", "ratio"}).  Targets, printed and not
# asserted: >= 2x faster than Orthanc over the same link, and >= 90% of what
# the link allows for the bytes dxhub actually sends.
#
# Needs root (namespaces, tbf).  Orthanc is the Debian package `orthanc`:
# installed here when missing (and said so); without it, dxhub figures only.
#
# Usage: bench/link.sh   (BUILD=build, PY=/usr/bin/python3, DXHUB=$BUILD/dxhub;
#        LINK_BENCH_SLICES=300, LINK_BENCH_MBIT=10)
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
export DXHUB=${DXHUB:-$PWD/$BUILD/dxhub}
export DXHUB_CORPUS=${DXHUB_CORPUS:-$(cd .. && pwd)/shared/corpus}
export TCP_NODELAY=1 # DCMTK's tools stall on Nagle's algorithm without it
SLICES=${LINK_BENCH_SLICES:-300}
OUT="$BUILD/bench/link.json"
DATA="$BUILD/bench/link-data"

die() { echo "bench/link.sh: $*" >&2; exit 1; }
[ -x "$DXHUB" ] || die "$DXHUB missing: run make first"
"$DXHUB" help | grep -q '^  edge ' || die "$DXHUB has no 'edge' command"
if [ "$(id -u)" != 0 ]; then
    echo "bench/link.sh: skipped: network namespaces and tbf need root (CI and make bench run as root)"
    exit 0
fi
command -v ip >/dev/null && command -v tc >/dev/null || die "ip/tc missing (Debian package iproute2)"
command -v storescu >/dev/null || die "storescu missing (Debian package dcmtk; make deps)"
NO_ORTHANC=()
if ! command -v Orthanc >/dev/null; then
    echo "bench/link.sh: Orthanc missing: installing the Debian package orthanc"
    # its maintainer scripts may try to start the system service: not here
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc >/dev/null 2>&1; }
    [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    if command -v Orthanc >/dev/null; then
        echo "bench/link.sh: installed orthanc $(dpkg-query -W -f='${Version}' orthanc)"
    else
        echo "bench/link.sh: orthanc could not be installed: dxhub figures only" >&2
        NO_ORTHANC=(--no-orthanc)
    fi
fi
# a system Orthanc service (if the package started one) is left alone: ours
# run in their own namespaces, with their own ports and storage

# ---- data (cached while the generators are unchanged) -------------------------
mkdir -p "$DATA"
stamp="$SLICES-$(cat samples/gen_ct_series.py samples/gen_dx_images.py | sha256sum | cut -c1-16)"
CT="$DATA/ct"
if [ "$SLICES" = 300 ] && [ -n "${DXHUB_BENCH_CT:-}" ] && [ -f "$DXHUB_BENCH_CT/.complete" ]; then
    CT=$DXHUB_BENCH_CT # the series bench/run-all made
elif [ "$(cat "$DATA/stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "generating the CT series ($SLICES slices) and the CR/DX images into $DATA ..."
    rm -rf "$DATA/ct" "$DATA/dx"
    "$PY" samples/gen_ct_series.py --slices "$SLICES" --out "$DATA/ct" >/dev/null || die "gen_ct_series.py failed"
    "$PY" samples/gen_dx_images.py --out "$DATA/dx" >/dev/null || die "gen_dx_images.py failed"
    echo "$stamp" >"$DATA/stamp"
fi
if [ ! -d "$DATA/dx" ]; then
    "$PY" samples/gen_dx_images.py --out "$DATA/dx" >/dev/null || die "gen_dx_images.py failed"
fi

exec "$PY" bench/link_run.py --ct "$CT" --dx "$DATA/dx" --out "$OUT" "${NO_ORTHANC[@]}"

#!/usr/bin/env bash
# ingest.sh — C-STORE ingest into the hub, side by side with Orthanc and
# DCMTK's storescp, on loopback.
#
# Data: the synthetic 300-slice CT (samples/gen_ct_series.py, 512x512x16)
# and 10 large radiographs (samples/gen_dx_images.py, 2500x2048x16, copied
# under distinct UIDs by bench/ingest_dx.py); generated once into
# $BUILD/bench/ingest-data and reused while the generators are unchanged;
# storescu sends them from a copy in memory (/dev/shm, ingest_run.py says
# why), so its reads never share the disk under test.
# Each run sends the CT series and the DX images with storescu (one
# association each, TCP_NODELAY=1) to
#   - dxhub serve (fresh data directory; acknowledged after its fsync'd
#     LMDB group commit),
#   - Orthanc (Debian package `orthanc`; SyncStorageArea true, its default:
#     the same durability),
#   - storescp writing the received bytes to files, no sync (the ceiling
#     of storescu + DIMSE on this machine, not durable),
# INGEST_BENCH_RUNS times (default 4); medians.  A send is timed from
# storescu's association request to its release (its dated log); the
# whole storescu process, its own start included, is printed beside it.  The data directories'
# filesystem's synchronous write bandwidth (dd 1000 MiB conv=fdatasync) is
# measured as a fourth step of every run, median.  Each run's order is a
# row of a balanced design (over 4 runs every step goes first once and
# right after each other step once), and every timed step starts from the
# same settled state, untimed: the previous step's files deleted, sync,
# the disk idle for half a second (ingest_run.py says why: a step's speed
# depended on which step ran right before it).  Prints a table and writes
# $BUILD/bench/ingest.json: a list of {"metric","value","unit","peer",
# "peer_value","ratio"} (ratio = dxhub / peer; rates: above 1 is better;
# the receiver process's CPU per instance, load-independent: below 1 is
# better).
# Targets, printed and not asserted: CT instances/s >= 2x Orthanc's, and
# MB/s >= 80% of the disk's synchronous write bandwidth; beside them the
# ceiling of any receiver that answers each instance once it is durable
# (storescp's transfer plus one dd oflag=dsync write of the instance, in
# series) and dxhub's fraction of it.
#
# Usage: bench/ingest.sh   (BUILD=build, PY=/usr/bin/python3, DXHUB=$BUILD/dxhub;
#        INGEST_BENCH_RUNS=4, INGEST_BENCH_DIR=work directory on the disk to
#        measure, default $BUILD/bench/ingest-work; INGEST_BENCH_DD_MB=1000)
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
DX=${DXHUB:-$PWD/$BUILD/dxhub}
RUNS=${INGEST_BENCH_RUNS:-4}
DD_MB=${INGEST_BENCH_DD_MB:-1000}
OUT="$BUILD/bench/ingest.json"
DATA="$BUILD/bench/ingest-data"
export TCP_NODELAY=1 # DCMTK's storescu stalls on Nagle's algorithm without it

die() { echo "bench/ingest.sh: $*" >&2; exit 1; }
[ -x "$DX" ] || die "$DX missing: run make first"
"$DX" help | grep -q '^  serve ' || die "$DX has no 'serve' command"
command -v storescu >/dev/null && command -v storescp >/dev/null || die "storescu/storescp missing (Debian package dcmtk; make deps)"
NO_ORTHANC=()
if ! command -v Orthanc >/dev/null; then
    echo "bench/ingest.sh: Orthanc missing (Debian package orthanc): dxhub and storescp figures only" >&2
    NO_ORTHANC=(--no-orthanc)
fi

# ---- data (cached while the generators are unchanged) ------------------------
stamp=$(cat samples/gen_ct_series.py samples/gen_dx_images.py bench/ingest_dx.py | sha256sum | cut -c1-16)
if [ "$(cat "$DATA/stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "generating the CT series and DX images into $DATA ..."
    rm -rf "$DATA" && mkdir -p "$DATA"
    "$PY" samples/gen_ct_series.py --slices 300 --out "$DATA/ct" >/dev/null || die "gen_ct_series.py failed"
    "$PY" samples/gen_dx_images.py --out "$DATA/dx3" >/dev/null || die "gen_dx_images.py failed"
    "$PY" bench/ingest_dx.py --from "$DATA/dx3" --count 10 --out "$DATA/dx" >/dev/null || die "ingest_dx.py failed"
    echo "$stamp" >"$DATA/stamp"
fi

# ---- the runs -----------------------------------------------------------------
WORK=${INGEST_BENCH_DIR:-$BUILD/bench/ingest-work}
mkdir -p "$WORK" || die "cannot create $WORK"
WORK=$(mktemp -d "$WORK/run-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$PY" bench/ingest_run.py --dxhub "$DX" --ct "$DATA/ct" --dx "$DATA/dx" --work "$WORK" --out "$OUT" \
    --runs "$RUNS" --dd-mb "$DD_MB" "${NO_ORTHANC[@]}"

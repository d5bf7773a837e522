#!/usr/bin/env bash
# api.sh — the hub's HTTP API side by side with Orthanc, on loopback.
#
# Starts `dxhub serve` and Orthanc (Debian package `orthanc`) each with its
# own data in a temporary directory, loads the same synthetic 300-slice CT
# series into both with DCMTK's storescu, then measures with wrk:
#   - study lookup by UID: dxhub GET /api/v1/studies?StudyInstanceUID=UID
#     vs Orthanc GET /studies/{id} (both: the study's main attributes),
#     at least API_BENCH_REQUESTS requests (default 50000; wrk runs for a
#     duration computed from a 2 s calibration run);
#   - study metadata, all 300 instances' headers: dxhub GET
#     /api/v1/studies/{UID} vs Orthanc GET /studies/{id}/instances-tags,
#     for API_BENCH_DETAIL_SECONDS (default 12: Orthanc takes seconds per answer);
#   - one instance's stored file (512 KiB): /api/v1/instances/{UID}/file
#     vs Orthanc /instances/{id}/file, for API_BENCH_SECONDS (default 5);
#   - loading the series by C-STORE (storescu, one association);
#   - the study lookup again at API_BENCH_CURVE connections ("1 4 16 64"),
#     API_BENCH_CURVE_SECONDS (3) a point: how throughput and p50/p99 move
#     with concurrency, so a p99 always names its number of connections.
# wrk -t API_BENCH_THREADS (one per CPU wrk has) -c API_BENCH_CONNECTIONS
# (16); every round is repeated API_BENCH_REPEAT times (3), dxhub and
# Orthanc alternating, and the medians are reported.  wrk runs on a CPU of
# its own and the servers on the others (bench/http_pin.sh; BENCH_PIN=0
# turns that off), as a load generator on another machine would.
# API_BENCH_DXHUB_ARGS: more options for `dxhub serve` (e.g. --http-threads 1).
# Beside wrk's figures: each server's CPU time per request and the time its
# threads waited for a CPU (run queue) per request (both from /proc), the
# p99 of dxhub's own handling time (its dxhub_http_handling_seconds
# histogram, scraped around each run) and the load average, since other
# work on the machine still takes CPU from both sides.
# Prints a table and writes build/bench/api.json: a list of
# {"metric","value","unit","peer","peer_value","ratio"}, ratio = value /
# peer_value (below 1 is better for times and latencies, above 1 for rates).
#
# Usage: bench/api.sh   (BUILD=build, PY=/usr/bin/python3; make bench runs it)
set -u
cd "$(dirname "$0")/.."
. bench/http_pin.sh
pin_init
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
DX="$PWD/$BUILD/dxhub"
N=${API_BENCH_REQUESTS:-50000}
THREADS=${API_BENCH_THREADS:-$CLIENT_NCPUS}
CONNS=${API_BENCH_CONNECTIONS:-16}
SECS=${API_BENCH_SECONDS:-5}
DETAIL_SECS=${API_BENCH_DETAIL_SECONDS:-12}
CURVE=${API_BENCH_CURVE:-1 4 16 64}
CURVE_SECS=${API_BENCH_CURVE_SECONDS:-3}
REPEAT=${API_BENCH_REPEAT:-3}
LUA="$PWD/bench/api_wrk.lua"
OUT="$BUILD/bench/api.json"
export TCP_NODELAY=1 # DCMTK's storescu stalls on Nagle's algorithm without it

die() { echo "bench/api.sh: $*" >&2; exit 1; }
[ -x "$DX" ] || die "$DX missing: run make first"
"$DX" help | grep -q '^  serve ' || die "$DX has no 'serve' command yet"
command -v wrk >/dev/null || die "wrk missing (Debian package wrk; make deps)"
command -v storescu >/dev/null || die "storescu missing (Debian package dcmtk; make deps)"
HAVE_ORTHANC=1 PEER="Orthanc"
command -v Orthanc >/dev/null || { HAVE_ORTHANC=0; echo "bench/api.sh: Orthanc missing (Debian package orthanc): dxhub figures only" >&2; }
[ $HAVE_ORTHANC = 1 ] && PEER="Orthanc $(Orthanc --version 2>/dev/null | awk 'NR == 1 {print $2}')"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dxhub-bench-api-XXXXXX")
PIDS=()
cleanup() {
    resume "${PIDS[@]}"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL: up to 30 s
    for _ in $(seq 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
    return 1
}
ms_now() { echo $(($(date +%s%N) / 1000000)); }
json_get() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---- the series -------------------------------------------------------------
SERIES="$TMP/ct"
if ! "$PY" samples/gen_ct_series.py --slices 300 --out "$SERIES" >/dev/null 2>"$TMP/gen.err"; then
    echo "bench/api.sh: gen_ct_series.py failed ($(tail -1 "$TMP/gen.err")); using corpus files" >&2
    CORPUS=${DXHUB_CORPUS:-../shared/corpus}
    mkdir -p "$SERIES" && cp "$CORPUS"/dicom/explicit_le/*.dcm "$SERIES"/
fi
FILES=("$SERIES"/*.dcm)
NFILES=${#FILES[@]}

# ---- dxhub ------------------------------------------------------------------
DX_HTTP=$(free_port) DX_DICOM=$(free_port) DX_EDGE=$(free_port)
on_server "$DX" serve --data "$TMP/dxhub" --http-port "$DX_HTTP" --dicom-port "$DX_DICOM" --edge-port "$DX_EDGE" \
    --reader-port 0 --peer-port 0 \
    --open-dicom --map-size 4G ${API_BENCH_DXHUB_ARGS:-} >"$TMP/dxhub.log" 2>&1 &
PIDS+=($!)
DX_PID=$!
wait_http "http://127.0.0.1:$DX_HTTP/api/v1/health" || { cat "$TMP/dxhub.log"; die "dxhub serve did not start"; }
t0=$(ms_now)
on_client storescu -aec DXHUB 127.0.0.1 "$DX_DICOM" "${FILES[@]}" >"$TMP/storescu-dx.log" 2>&1 || die "storescu to dxhub failed"
DX_LOAD=$(($(ms_now) - t0))
DX_BASE="http://127.0.0.1:$DX_HTTP"
# The study with the most instances is the one under test.
STUDY=$(curl -sf "$DX_BASE/api/v1/studies?limit=1000" |
    json_get 'max(d["studies"], key=lambda s: s["00201208"]["Value"][0])["0020000D"]["Value"][0]')
SOP=$(curl -sf "$DX_BASE/api/v1/studies/$STUDY" | json_get 'd["series"][0]["instances"][0]["00080018"]["Value"][0]')
[ -n "$STUDY" ] && [ -n "$SOP" ] || die "dxhub does not list the loaded study"

# ---- Orthanc ----------------------------------------------------------------
if [ $HAVE_ORTHANC = 1 ]; then
    OR_HTTP=$(free_port) OR_DICOM=$(free_port)
    mkdir -p "$TMP/orthanc"
    cat >"$TMP/orthanc/config.json" <<EOF
{
  "Name": "dxhub-bench",
  "StorageDirectory": "$TMP/orthanc/storage",
  "IndexDirectory": "$TMP/orthanc/index",
  "HttpPort": $OR_HTTP,
  "DicomPort": $OR_DICOM,
  "DicomAet": "ORTHANC",
  "DicomCheckCalledAet": false,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "KeepAlive": true,
  "StorageCompression": false,
  "Plugins": []
}
EOF
    on_server Orthanc "$TMP/orthanc/config.json" >"$TMP/orthanc/log" 2>&1 &
    PIDS+=($!)
    OR_PID=$!
    wait_http "http://127.0.0.1:$OR_HTTP/system" || { tail "$TMP/orthanc/log"; die "Orthanc did not start"; }
    t0=$(ms_now)
    on_client storescu -aec ORTHANC 127.0.0.1 "$OR_DICOM" "${FILES[@]}" >"$TMP/storescu-or.log" 2>&1 || die "storescu to Orthanc failed"
    OR_LOAD=$(($(ms_now) - t0))
    OR_BASE="http://127.0.0.1:$OR_HTTP"
    OR_STUDY=$(curl -sf -X POST "$OR_BASE/tools/lookup" -d "$STUDY" | json_get 'd[0]["ID"]')
    OR_SOP=$(curl -sf -X POST "$OR_BASE/tools/lookup" -d "$SOP" | json_get 'd[0]["ID"]')
    [ -n "$OR_STUDY" ] && [ -n "$OR_SOP" ] || die "Orthanc does not find the loaded study"
fi

# ---- measurements -----------------------------------------------------------
# run_wrk NAME URL MODE PID [CONNS].  wrk runs for a duration, so MODE
# "count" first measures the rate for 2 s and then runs long enough for at
# least N requests (the count made is reported); otherwise MODE is the
# seconds.  Each run's line in the results: wrk's RESULT, the server's CPU
# time and run-queue wait over the run (from /proc), the load average and,
# for dxhub, its own handling time.
run_wrk() { # NAME URL MODE PID [CONNS]
    local name=$1 url=$2 mode=$3 dur=$3 pid=$4 conns=${5:-$CONNS} line run
    local threads=$((THREADS < conns ? THREADS : conns))
    curl -sf -o /dev/null "$url" || die "$url does not answer 200"
    if [ "$mode" = count ]; then
        on_client wrk -t"$threads" -c"$conns" -d2s -s "$LUA" "$url" >"$TMP/wrk-$name.cal" 2>&1
        line=$(grep '^RESULT' "$TMP/wrk-$name.cal") || { cat "$TMP/wrk-$name.cal"; die "wrk $name gave no result"; }
        dur=$("$PY" -c "import sys,math; r=dict(w.split('=') for w in sys.argv[1].split()[1:]); \
rate=float(r['requests'])/(float(r['duration_us'])/1e6); print(min(300, max(3, math.ceil(1.15*$N/max(rate,1)))))" "$line")
    fi
    local srv= base=${url%%/api/v1/*}
    [ "$pid" = "$DX_PID" ] && curl -sf "$base/metrics" -o "$TMP/metrics.before"
    run=$(measure "$pid" "$TMP/wrk-$name.out" wrk -t"$threads" -c"$conns" -d"${dur}s" --timeout 30s -s "$LUA" "$url")
    [ "$pid" = "$DX_PID" ] && curl -sf "$base/metrics" -o "$TMP/metrics.after" &&
        srv=$("$PY" bench/http_handling.py "$TMP/metrics.before" "$TMP/metrics.after")
    line=$(grep '^RESULT' "$TMP/wrk-$name.out") || { cat "$TMP/wrk-$name.out"; die "wrk $name gave no result"; }
    echo "$name $line conns=$conns $run load=$(cut -d' ' -f1 /proc/loadavg) $srv" >>"$TMP/results"
}
: >"$TMP/results"
BENCH_SERVERS=("$DX_PID" ${OR_PID:-})
# Each dxhub run is followed by its Orthanc run, so that both see the
# same machine (other load drifts over minutes, not seconds), and the whole
# round is repeated REPEAT times: the table shows each figure's median.
for _ in $(seq "$REPEAT"); do
    run_wrk dx_lookup "$DX_BASE/api/v1/studies?StudyInstanceUID=$STUDY" count "$DX_PID"
    [ $HAVE_ORTHANC = 1 ] && run_wrk or_lookup "$OR_BASE/studies/$OR_STUDY" count "$OR_PID"
    run_wrk dx_detail "$DX_BASE/api/v1/studies/$STUDY" "$DETAIL_SECS" "$DX_PID"
    [ $HAVE_ORTHANC = 1 ] && run_wrk or_detail "$OR_BASE/studies/$OR_STUDY/instances-tags" "$DETAIL_SECS" "$OR_PID"
    run_wrk dx_file "$DX_BASE/api/v1/instances/$SOP/file" "$SECS" "$DX_PID"
    [ $HAVE_ORTHANC = 1 ] && run_wrk or_file "$OR_BASE/instances/$OR_SOP/file" "$SECS" "$OR_PID"
    for c in $CURVE; do
        run_wrk "dx_curve$c" "$DX_BASE/api/v1/studies?StudyInstanceUID=$STUDY" "$CURVE_SECS" "$DX_PID" "$c"
        [ $HAVE_ORTHANC = 1 ] && run_wrk "or_curve$c" "$OR_BASE/studies/$OR_STUDY" "$CURVE_SECS" "$OR_PID" "$c"
    done
done
echo "loads dx=$DX_LOAD or=${OR_LOAD:-} files=$NFILES" >>"$TMP/results"
curl -sf "$DX_BASE/api/v1/studies/$STUDY" -o "$TMP/dx_detail.json"
[ $HAVE_ORTHANC = 1 ] && curl -sf "$OR_BASE/studies/$OR_STUDY/instances-tags" -o "$TMP/or_detail.json"

# ---- table and JSON ---------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
"$PY" - "$TMP/results" "$OUT" "$N" "$CONNS" "$THREADS" "$PEER" "$(nproc)" "$PIN_NOTE" "$CURVE_SECS" <<'EOF'
import json, statistics, sys
res, out, n, conns, threads, peer_name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
cores, pin_note, curve_secs = sys.argv[7], sys.argv[8], sys.argv[9]
reps, loads = {}, {}
for line in open(res):
    words = line.split()
    kv = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    if words[0] == "loads":
        loads = kv
    else:
        reps.setdefault(words[0], []).append({k: float(v) for k, v in kv.items()})
# Per figure, the median over the repetitions (the rate of each run first).
for rs in reps.values():
    for r in rs:
        r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
        r["cpu_us"] = r["cpu_s"] * 1e6 / max(r["requests"], 1)
        r["wait_us"] = r["wait_s"] * 1e6 / max(r["requests"], 1)
runs = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} | {"errors": sum(r["errors"] for r in rs)}
        for name, rs in reps.items()}
nrep = max(len(rs) for rs in reps.values())

rows = []
def row(metric, value, unit, peer_value, peer=peer_name):
    ratio = round(value / peer_value, 4) if peer_value else None
    rows.append({"metric": metric, "value": round(value, 3), "unit": unit,
                 "peer": peer if peer_value is not None else None,
                 "peer_value": round(peer_value, 3) if peer_value is not None else None, "ratio": ratio})

def rps(r): return r["rate"]
for key, what in (("lookup", "study lookup by UID"), ("detail", "study metadata, 300 instances"),
                  ("file", "instance file (Part 10 bytes)")):
    d, o = runs.get("dx_" + key), runs.get("or_" + key)
    if not d:
        continue
    for r in (d, o):
        if r and r["errors"]:
            sys.exit("bench/api.sh: %s: %d failed requests" % (key, r["errors"]))
    row(what + ": p50", d["p50_us"] / 1000, "ms", o and o["p50_us"] / 1000)
    row(what + ": p99", d["p99_us"] / 1000, "ms", o and o["p99_us"] / 1000)
    if d.get("srv_p99_us"):
        row(what + ": p99 of dxhub's own handling", d["srv_p99_us"] / 1000, "ms", None)
    row(what + ": throughput", rps(d), "req/s", o and rps(o))
    row(what + ": server CPU per request", d["cpu_us"], "us", o and o["cpu_us"])
    row(what + ": wait for a CPU per request", d["wait_us"], "us", o and o["wait_us"])
    if key == "lookup":
        row(what + ": requests per run", d["requests"], "requests", o and o["requests"])
if loads.get("dx"):
    row("C-STORE of %s files (storescu, 1 association)" % loads["files"], float(loads["dx"]) / 1000, "s",
        float(loads["or"]) / 1000 if loads.get("or") else None)
# The curve: the study lookup at each number of connections.
curve = sorted(int(k[len("dx_curve"):]) for k in runs if k.startswith("dx_curve"))
for c in curve:
    d, o = runs["dx_curve%d" % c], runs.get("or_curve%d" % c)
    if d["errors"] or (o and o["errors"]):
        sys.exit("bench/api.sh: study lookup at %d connections: failed requests" % c)
    what = "study lookup by UID, %d connection%s" % (c, "" if c == 1 else "s")
    row(what + ": throughput", rps(d), "req/s", o and rps(o))
    row(what + ": p50", d["p50_us"] / 1000, "ms", o and o["p50_us"] / 1000)
    row(what + ": p99", d["p99_us"] / 1000, "ms", o and o["p99_us"] / 1000)
json.dump(rows, open(out, "w"), indent=1)
print("\nHTTP API on loopback, wrk -t%s -c%s, median of %d runs (lookup: at least %d requests a run; others: fixed duration)"
      % (threads, conns, nrep, n))
loads = [r["load"] for rs in reps.values() for r in rs]
print("%s.\nThe machine's %s CPUs are shared with other work (load average %.1f to %.1f during the runs): a server's"
      " wait for a CPU is time its answers spent behind other programs." % (pin_note, cores, min(loads), max(loads)))
print("%-60s %12s %12s %9s  %s" % ("metric", "dxhub", peer_name.split()[0], "ratio", "unit"))
first_curve = curve and "study lookup by UID, %d connection" % curve[0]
for r in rows:
    if first_curve and r["metric"].startswith(first_curve + ("" if curve[0] == 1 else "s")) and r["metric"].endswith("throughput"):
        print("latency by concurrency, the study lookup (%s s a point):" % curve_secs)
    pv = "%12.3f" % r["peer_value"] if r["peer_value"] is not None else "%12s" % "-"
    ra = "%9.3f" % r["ratio"] if r["ratio"] is not None else "%9s" % "-"
    print("%-60s %12.3f %s %s  %s" % (r["metric"], r["value"], pv, ra, r["unit"]))
print("(ratio = dxhub / Orthanc)  written to %s" % out)
EOF
rc=$?
echo "detail bodies: dxhub $(stat -c %s "$TMP/dx_detail.json") bytes$([ $HAVE_ORTHANC = 1 ] && echo ", Orthanc $(stat -c %s "$TMP/or_detail.json") bytes")"
exit $rc

#!/usr/bin/env bash
# ecg.sh — the ECG section of `make bench`: dxhub's lossless ECG codec
# beside FLAC (Debian's `flac`, -8, leads as channels at 16 bits, at most 8
# channels per file as FLAC allows) on the corpus ECGs.  Prints a table and
# writes build/bench/ecg.json as a list of
# {"metric", "value", "unit", "peer", "peer_value", "ratio"}.
#
# Sizes: both sides compress the same integer samples, as dxhub reads them
# (bench_ecg writes them raw for flac); FLAC gets --no-padding and
# --no-seektable so its container adds no slack.  Speeds: CPU time of the
# coding (ours: in-process, best of several runs; flac: the child's CPU
# time, best of three, process start included), as multiples of the
# record's duration.
#
# Goals (the issue): ratio >= FLAC's on every record, > 1000x real time.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
CORPUS=${DXHUB_CORPUS:-$(cd .. && pwd)/shared/corpus}
if ! command -v flac >/dev/null; then
    echo "bench ecg: flac is not installed (apt-get install flac; it is in make deps)" >&2
    exit 1
fi
[ -x "$BUILD/bench/bench_ecg" ] || make --no-print-directory "$BUILD/bench/bench_ecg" >/dev/null
mkdir -p "$BUILD/bench"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

records=(dicom/waveform_ecg.dcm dicom/wave_dfl wfdb/mitdb/100.hea wfdb/ptbdb/s0010_re.hea hl7aecg/subject1_0.xml
         scp/Example.scp)
paths=()
for r in "${records[@]}"; do paths+=("$CORPUS/ecg/$r"); done
"$BUILD/bench/bench_ecg" --raw-dir "$tmp" "${paths[@]}" >"$tmp/ours.txt"

"$PY" - "$tmp" "$BUILD/bench/ecg.json" <<'EOF'
import glob, json, os, resource, subprocess, sys

tmp, out = sys.argv[1], sys.argv[2]

def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime

def flac_run(args):
    best = 1e30
    for _ in range(3):
        t0 = child_cpu()
        subprocess.run(["flac", "-s", "-f", *args], check=True)
        best = min(best, child_cpu() - t0)
    return best

metrics, rows, ok = [], [], True
for line in open(os.path.join(tmp, "ours.txt")):
    _, name, leads, samples, rate, raw, coded, enc_x, dec_x, rt = line.split()
    leads, samples, rate, raw, coded = int(leads), int(samples), float(rate), int(raw), int(coded)
    seconds = samples / rate
    fl_size, fl_enc, fl_dec = 0, 0.0, 0.0
    for chunk in sorted(glob.glob(os.path.join(tmp, f"{name}.*.raw"))):
        ch = os.path.getsize(chunk) // (2 * samples)
        fl = chunk + ".flac"
        fl_enc += flac_run(["-8", "--no-padding", "--no-seektable", "--force-raw-format", "--endian=little",
                            "--sign=signed", f"--channels={ch}", "--bps=16", f"--sample-rate={int(rate)}",
                            "-o", fl, chunk])
        fl_dec += flac_run(["-d", "--force-raw-format", "--endian=little", "--sign=signed",
                            "-o", chunk + ".back", fl])
        if open(chunk + ".back", "rb").read() != open(chunk, "rb").read():
            sys.exit(f"bench ecg: flac did not round-trip {chunk}")
        fl_size += os.path.getsize(fl)
    ours_ratio, fl_ratio = raw / coded, raw / fl_size
    fl_enc_x, fl_dec_x = seconds / fl_enc if fl_enc else float("inf"), seconds / fl_dec if fl_dec else float("inf")
    enc_x, dec_x = float(enc_x), float(dec_x)
    good = rt == "ok" and ours_ratio >= fl_ratio and enc_x > 1000 and dec_x > 1000
    ok &= good
    rows.append((name, leads, rate, seconds, coded, fl_size, ours_ratio, fl_ratio, enc_x, dec_x, fl_enc_x,
                 fl_dec_x, rt, good))
    metrics += [
        {"metric": f"ecg_ratio/{name}", "value": round(ours_ratio, 4), "unit": "x (16-bit samples / coded)",
         "peer": "flac -8", "peer_value": round(fl_ratio, 4), "ratio": round(ours_ratio / fl_ratio, 4)},
        {"metric": f"ecg_encode_speed/{name}", "value": round(enc_x, 1), "unit": "x real time",
         "peer": "flac -8", "peer_value": round(fl_enc_x, 1), "ratio": round(enc_x / fl_enc_x, 3)},
        {"metric": f"ecg_decode_speed/{name}", "value": round(dec_x, 1), "unit": "x real time",
         "peer": "flac -d", "peer_value": round(fl_dec_x, 1), "ratio": round(dec_x / fl_dec_x, 3)},
    ]

hdr = ("record", "leads", "Hz", "sec", "dxecg B", "flac B", "ratio", "flac", "enc xRT", "dec xRT",
       "flac enc", "flac dec", "exact", "goal")
print("ECG codec vs FLAC (-8, leads as channels)")
print("%-14s %5s %6s %7s %9s %9s %6s %6s %9s %9s %9s %9s %5s %4s" % hdr)
for r in rows:
    print("%-14s %5d %6g %7.1f %9d %9d %6.3f %6.3f %9.0f %9.0f %9.0f %9.0f %5s %4s"
          % (*r[:13], "ok" if r[13] else "MISS"))
print("goal: ratio >= flac's and > 1000x real time both ways: %s" % ("met" if ok else "NOT MET"))
with open(out, "w") as f:
    json.dump(metrics, f, indent=1)
    f.write("\n")
EOF

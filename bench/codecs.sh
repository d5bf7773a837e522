#!/usr/bin/env bash
# codecs.sh — `make bench`, pixel codecs section: encode/decode megapixels
# per second and compression ratio per transfer syntax, side by side in one
# run, single thread:
#   dxhub in process          build/bench/bench_codecs (cdc_encode_frame, cdc_decode_frame)
#   the raw library alone     TurboJPEG, CharLS, OpenJPEG, OpenJPH (the ceiling)
#   whole-process tools       dcmcjpls dcmdjpls dcmcjpeg dcmdjpeg (DCMTK), gdcmconv (GDCM),
#                             and `dxhub transcode`, one process per file over a batch
# Inputs: the corpus's images, a generated CT series (512x512x16 bit) and
# generated CR/DX radiographs (2500x2048x12 bit).  Times are CPU time (the
# bench thread's, or the children's), so other load on the machine does not
# skew the ratios; decoder child processes (HTJ2K) are counted too.  Both
# sides run one thread: OpenJPEG (ours and gdcmconv's) uses one unless
# OPJ_NUM_THREADS is set, and the script unsets it.  Prints a table;
# writes build/bench/codecs.json as a list of
# {"metric","value","unit","peer","peer_value","ratio"}.
#   BENCH_SECONDS  minimum CPU seconds per in-process measurement (default 0.3)
#   BENCH_CT       CT slices in the batch (default 20)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
CORPUS=${DXHUB_CORPUS:-$(cd .. && pwd)/shared/corpus}
SECS=${BENCH_SECONDS:-0.3}
NCT=${BENCH_CT:-20}
out="$BUILD/bench"
data="$out/codecs-data"
mkdir -p "$out" "$data"
unset OPJ_NUM_THREADS
echo "codecs.sh: single thread on both sides (OPJ_NUM_THREADS unset); CPU time; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

make -s "$BUILD/dxhub" "$BUILD/bench/bench_codecs" >&2 || { echo "codecs.sh: build failed" >&2; exit 1; }
[ -d "$data/ct" ] || $PY samples/gen_ct_series.py --slices "$NCT" --out "$data/ct" >&2
[ -d "$data/dx" ] || $PY samples/gen_dx_images.py --out "$data/dx" >&2

mapfile -t corpus_files < <(find "$CORPUS/dicom" -type f | sort)
mapfile -t batch < <(find "$data/ct" -type f | sort | head -n "$NCT"; find "$data/dx" -type f | sort)

echo "codecs.sh: in process, corpus (${#corpus_files[@]} files)" >&2
"$BUILD/bench/bench_codecs" --seconds "$SECS" "${corpus_files[@]}" >"$out/codecs-corpus.jsonl" 2>"$out/codecs-corpus.log"
echo "codecs.sh: in process, CT + CR/DX batch (${#batch[@]} files)" >&2
"$BUILD/bench/bench_codecs" --seconds "$SECS" "${batch[@]}" >"$out/codecs-batch.jsonl" 2>"$out/codecs-batch.log"

echo "codecs.sh: whole-process tools over the batch" >&2
DXHUB="$BUILD/dxhub" CORPUS="$CORPUS" OUT="$out" DATA="$data" $PY - "${batch[@]}" <<'EOF'
import json, os, resource, shutil, subprocess, sys, tempfile

out, data, dxhub, corpus = os.environ["OUT"], os.environ["DATA"], os.environ["DXHUB"], os.environ["CORPUS"]
batch = sys.argv[1:]
JLS, J2K, HTJ2K, JPEG, RLE, EXPL = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
                                    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.50",
                                    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1")
work = tempfile.mkdtemp(prefix="codecs-", dir=out)


def mpix(path):
    """Megapixels of a native Explicit VR LE file (rows x cols x frames)."""
    import pydicom
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1) / 1e6


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmds):
    """CPU seconds of running each command (one process each), in order."""
    t0 = cpu_children()
    for c in cmds:
        r = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode:
            raise SystemExit(f"codecs.sh: {' '.join(map(str, c))}: {r.stderr.decode()[:200]}")
    return cpu_children() - t0


def stage(name, files, make):
    d = os.path.join(work, name)
    os.makedirs(d)
    outs = [os.path.join(d, f"{i}.dcm") for i in range(len(files))]
    return outs, [make(s, o) for s, o in zip(files, outs)]


# 8-bit batch for the JPEG Baseline tools: the corpus's 8-bit grey and RGB images.
eight = [f"{corpus}/dicom/{p}" for p in ("explicit_le/US1_UNCR.dcm", "implicit_le/IM00001.implicit_little_endian.dcm",
                                          "jpeg_lossless_sv1_70/JPGLosslessP14SV1_1s_1f_8b.dcm",
                                          "deflate/image_dfl.dcm", "explicit_le/SC_ybr_full_uncompressed.dcm")]
native8, cmds = stage("native8", eight, lambda s, o: [dxhub, "transcode", "--ts", EXPL, s, o])
timed(cmds)
mp_batch = sum(mpix(p) for p in batch)
mp_8 = sum(mpix(p) for p in native8)
res = {"mp_batch": mp_batch, "mp_8": mp_8, "tools": {}}


def tool(key, files, make, mp):
    outs, cmds = stage(key, files, make)
    t = timed(cmds)
    res["tools"][key] = {"mpix_s": mp / t, "seconds": t, "files": len(files)}
    return outs


jls_dcmtk = tool("dcmcjpls", batch, lambda s, o: ["dcmcjpls", s, o], mp_batch)
tool("dcmdjpls", jls_dcmtk, lambda s, o: ["dcmdjpls", s, o], mp_batch)
jls_dx = tool("dxhub transcode JPEG-LS", batch, lambda s, o: [dxhub, "transcode", "--ts", JLS, s, o], mp_batch)
tool("dxhub transcode JPEG-LS decode", jls_dx, lambda s, o: [dxhub, "transcode", "--ts", EXPL, s, o], mp_batch)
if shutil.which("gdcmconv"):
    g_jls = tool("gdcmconv --jpegls", batch, lambda s, o: ["gdcmconv", "--jpegls", s, o], mp_batch)
    tool("gdcmconv --raw (JPEG-LS)", g_jls, lambda s, o: ["gdcmconv", "--raw", s, o], mp_batch)
    g_j2k = tool("gdcmconv --j2k", batch, lambda s, o: ["gdcmconv", "--j2k", s, o], mp_batch)
    tool("gdcmconv --raw (J2K)", g_j2k, lambda s, o: ["gdcmconv", "--raw", s, o], mp_batch)
j8 = tool("dcmcjpeg", native8, lambda s, o: ["dcmcjpeg", s, o], mp_8)
tool("dcmdjpeg", j8, lambda s, o: ["dcmdjpeg", s, o], mp_8)
j8x = tool("dxhub transcode JPEG", native8, lambda s, o: [dxhub, "transcode", "--ts", JPEG, s, o], mp_8)
tool("dxhub transcode JPEG decode", j8x, lambda s, o: [dxhub, "transcode", "--ts", EXPL, s, o], mp_8)
# dxhub in process over the 8-bit batch, for the JPEG rows
r = subprocess.run([os.path.join(os.path.dirname(dxhub), "bench", "bench_codecs"), "--seconds", "0.3", *native8],
                   capture_output=True, check=True)
open(os.path.join(out, "codecs-8bit.jsonl"), "wb").write(r.stdout)
json.dump(res, open(os.path.join(out, "codecs-tools.json"), "w"))
shutil.rmtree(work)
EOF

$PY - "$out" <<'EOF'
import json, os, sys

out = sys.argv[1]


def load(name):
    rows = [json.loads(l) for l in open(os.path.join(out, name)) if l.strip()]
    return {(r["syntax"], r["op"], r["who"]): r for r in rows}


corpus, batch, eight = load("codecs-corpus.jsonl"), load("codecs-batch.jsonl"), load("codecs-8bit.jsonl")
tools = json.load(open(os.path.join(out, "codecs-tools.json")))["tools"]
metrics = []


def m(metric, value, unit, peer=None, peer_value=None):
    ratio = value / peer_value if peer_value else None
    metrics.append({"metric": metric, "value": round(value, 3), "unit": unit, "peer": peer,
                    "peer_value": round(peer_value, 3) if peer_value is not None else None,
                    "ratio": round(ratio, 3) if ratio is not None else None})


RAW = {"JPEG-LS Lossless": "CharLS alone", "JPEG-LS Near-Lossless (NEAR 2)": "CharLS alone",
       "JPEG 2000 Lossless (OpenJPEG)": "OpenJPEG alone",
       "HTJ2K Lossless (OpenJPH)": "OpenJPH alone", "JPEG Baseline q90 (8-bit)": "TurboJPEG alone"}
print(f"\n{'pixel codecs, single thread, CPU time':<46} {'corpus':>24} {'CT + CR/DX batch':>26}")
print(f"{'syntax':<34}{'op':>12} {'MP/s':>9} {'raw lib':>8} {'ratio':>6} {'MP/s':>10} {'raw lib':>8} {'ratio':>6}")
syntaxes = sorted({k[0] for k in corpus}, key=lambda s: list(k[0] for k in corpus).index(s))
for sx in syntaxes:
    for op in ("encode", "decode"):
        row = []
        for name, tab in (("corpus", corpus), ("batch", batch)):
            d, r = tab.get((sx, op, "dxhub")), tab.get((sx, op, "raw"))
            if d:
                m(f"{sx} {op} ({name}, dxhub in process)", d["mpix_s"], "MP/s",
                  RAW.get(sx) if r else None, r["mpix_s"] if r else None)
                row.append(f"{d['mpix_s']:9.1f} {(r['mpix_s'] if r else float('nan')):8.1f} {d['ratio']:6.2f}")
            else:
                row.append(f"{'-':>9} {'-':>8} {'-':>6}")
        print(f"{sx:<34}{op:>12} {row[0]} {row[1]:>26}")
for name, tab in (("corpus", corpus), ("batch", batch)):
    for sx in syntaxes:
        d = tab.get((sx, "encode", "dxhub"))
        if d:
            m(f"{sx} compression ratio ({name})", d["ratio"], "x")

print(f"\n{'batch, one process per file (CPU time)':<52} {'MP/s':>8} {'dxhub in process':>17} {'x':>6}")
PAIRS = [("dcmcjpls", "JPEG-LS Lossless", "encode", batch), ("dcmdjpls", "JPEG-LS Lossless", "decode", batch),
         ("gdcmconv --jpegls", "JPEG-LS Lossless", "encode", batch),
         ("gdcmconv --raw (JPEG-LS)", "JPEG-LS Lossless", "decode", batch),
         ("gdcmconv --j2k", "JPEG 2000 Lossless (OpenJPEG)", "encode", batch),
         ("gdcmconv --raw (J2K)", "JPEG 2000 Lossless (OpenJPEG)", "decode", batch),
         ("dxhub transcode JPEG-LS", "JPEG-LS Lossless", "encode", batch),
         ("dxhub transcode JPEG-LS decode", "JPEG-LS Lossless", "decode", batch),
         ("dcmcjpeg", "JPEG Baseline q90 (8-bit)", "encode", eight), ("dcmdjpeg", "JPEG Baseline q90 (8-bit)", "decode", eight),
         ("dxhub transcode JPEG", "JPEG Baseline q90 (8-bit)", "encode", eight),
         ("dxhub transcode JPEG decode", "JPEG Baseline q90 (8-bit)", "decode", eight)]
for t, sx, op, tab in PAIRS:
    if t not in tools or (sx, op, "dxhub") not in tab:
        continue
    mine, theirs = tab[(sx, op, "dxhub")]["mpix_s"], tools[t]["mpix_s"]
    m(f"{sx} {op} batch (dxhub in process)", mine, "MP/s", t + " (per file)", theirs)
    print(f"{t:<52} {theirs:8.1f} {mine:17.1f} {mine / theirs:6.1f}")

# HTJ2K frames decode in a child process (codecs/cdc_sandbox.c): what that
# costs, with the child's CPU time counted.
print("\nHTJ2K decode, where it runs (MP/s)       corpus    batch")
for who, what in (("dxhub", "kept decoder child (workstation)"), ("dxhub-fork", "a child per frame (no sandbox)"),
                  ("dxhub-inproc", "in process (no isolation)"), ("raw", "OpenJPH alone")):
    c, b = corpus.get(("HTJ2K Lossless (OpenJPH)", "decode", who)), batch.get(("HTJ2K Lossless (OpenJPH)", "decode", who))
    if c and b:
        print(f"  {what:<38} {c['mpix_s']:8.1f} {b['mpix_s']:8.1f}")
        if who != "dxhub":
            m(f"HTJ2K Lossless decode (batch, {what})", b["mpix_s"], "MP/s")

ht, j2 = batch.get(("HTJ2K Lossless (OpenJPH)", "decode", "dxhub")), batch.get(("JPEG 2000 Lossless (OpenJPEG)", "decode", "dxhub"))
if ht and j2:
    m("HTJ2K lossless decode (batch)", ht["mpix_s"], "MP/s", "JPEG 2000 lossless decode, OpenJPEG (batch)", j2["mpix_s"])
    print(f"\nHTJ2K lossless decode {ht['mpix_s']:.1f} MP/s vs JPEG 2000 (OpenJPEG) {j2['mpix_s']:.1f}: "
          f"{ht['mpix_s'] / j2['mpix_s']:.1f}x")

# The choices.  Link (clinic -> hub, 10 Mbit/s): lossless only; bytes decide,
# so the smallest files over both sets (geometric mean of the corpus and the
# CT + CR/DX batch ratios), provided encoding outruns the link.  Display
# (workstation): the fastest lossless decode among syntaxes whose ratio is
# within 15% of the best.
LINK_MBYTE_S = 10e6 / 8 / 1e6
lossless = [s for s in syntaxes if "Near" not in s and "Baseline" not in s]
def ratio(s):
    return (corpus[(s, "encode", "dxhub")]["ratio"] * batch[(s, "encode", "dxhub")]["ratio"]) ** 0.5
def link_mp_s(s):  # pixels/s the link carries, 16-bit grey
    return LINK_MBYTE_S * batch[(s, "encode", "dxhub")]["ratio"] / 2.0
fast_enough = [s for s in lossless if batch[(s, "encode", "dxhub")]["mpix_s"] > 2 * link_mp_s(s)]
best_link = max(fast_enough, key=ratio)
best_ratio = max(ratio(s) for s in lossless)
display_ok = [s for s in lossless if ratio(s) >= 0.85 * best_ratio]
best_display = max(display_ok, key=lambda s: batch[(s, "decode", "dxhub")]["mpix_s"])
print("\nlossless, for the choices     ratio(corpus, batch, mean)  link MP/s  encode MP/s  decode MP/s")
for s in lossless:
    e, d = batch[(s, "encode", "dxhub")], batch[(s, "decode", "dxhub")]
    c = corpus[(s, "encode", "dxhub")]
    print(f"  {s:<30} {c['ratio']:5.2f} {e['ratio']:5.2f} {ratio(s):5.2f} {link_mp_s(s):14.2f} {e['mpix_s']:11.1f} {d['mpix_s']:12.1f}")
    m(f"{s} pixels through a 10 Mbit/s link (batch)", min(e["mpix_s"], link_mp_s(s)), "MP/s")
print(f"link codec: {best_link}; display codec: {best_display}")
json.dump(metrics, open(os.path.join(out, "codecs.json"), "w"), indent=1)
print(f"wrote {os.path.join(out, 'codecs.json')} ({len(metrics)} metrics)")
EOF

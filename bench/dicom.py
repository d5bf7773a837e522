#!/usr/bin/python3
"""dicom.py — the DICOM file tools side by side with DCMTK, in one run.

Inputs: every DICOM file of the corpus plus the synthetic 300-slice CT
series (bench/run-all makes it once into $BUILD/bench/ct).  Measured:

  - `dxhub dump --json` vs `dcmdump` (and `dxhub dump` text vs `dcmdump`):
      batch     one process given all the files;
      per file  one process per file, in a loop (start-up cost included;
                a sample of the CT slices keeps this under a minute);
    also `dxhub dump --json` vs DCMTK's `dcm2json`, per file (dcm2json takes
    one file); files/s and MB/s of input, the median of alternating runs;
  - in-process parsing (bench_parse: files read into memory once, dcm_parse
    again and again): GB/s and files/s on the CT series and on the corpus.

Prints a table and writes $BUILD/bench/dicom.json: a list of
{"metric","value","unit","peer","peer_value","ratio"} (ratio = value /
peer_value, above 1 is better: every metric here is a rate).  Targets are
printed beside, never asserted.

Environment: BUILD (build), DXHUB_CORPUS (../shared/corpus), DXHUB_BENCH_CT
(the CT series directory), DICOM_BENCH_RUNS (5, batch), DICOM_BENCH_RUNS_PER_FILE
(3), DICOM_BENCH_CT_SAMPLE (every Nth CT slice in the per-file loops, 6).
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.chdir(REPO)
BUILD = Path(os.environ.get("BUILD", "build"))
DXHUB = os.environ.get("DXHUB") or str((BUILD / "dxhub").resolve())
BENCH_PARSE = os.environ.get("DXHUB_BENCH_PARSE") or str((BUILD / "bench" / "bench_parse").resolve())
CORPUS = Path(os.environ.get("DXHUB_CORPUS") or REPO.parent / "shared" / "corpus")
CT = Path(os.environ.get("DXHUB_BENCH_CT") or BUILD / "bench" / "ct")
OUT = BUILD / "bench" / "dicom.json"
RUNS = int(os.environ.get("DICOM_BENCH_RUNS", "5"))
RUNS_PER_FILE = int(os.environ.get("DICOM_BENCH_RUNS_PER_FILE", "3"))
CT_SAMPLE = int(os.environ.get("DICOM_BENCH_CT_SAMPLE", "6"))
os.environ.setdefault("TCP_NODELAY", "1")


def corpus_files():
    files = sorted(p for p in (CORPUS / "dicom").rglob("*") if p.is_file())
    files += sorted(p for p in (CORPUS / "ecg" / "dicom").glob("*") if p.is_file())
    return [str(p) for p in files]


def timed(args):
    t = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def timed_loop(cmd, files):
    t = time.perf_counter()
    for f in files:
        subprocess.run(cmd + [f], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def alternate(fns, runs):
    """Median seconds of each function, run alternately (A B A B ...) so
    both see the same machine state."""
    times = [[] for _ in fns]
    for _ in range(runs):
        for k, fn in enumerate(fns):
            times[k].append(fn())
    return [statistics.median(t) for t in times]


def mb(files):
    return sum(os.path.getsize(f) for f in files) / 1e6


results, rows = [], []


def add(metric, value, unit, peer=None, peer_value=None, target=""):
    ratio = value / peer_value if peer_value else None
    results.append({"metric": metric, "value": round(value, 3), "unit": unit, "peer": peer,
                    "peer_value": round(peer_value, 3) if peer_value is not None else None,
                    "ratio": round(ratio, 3) if ratio is not None else None})
    rows.append((metric, value, unit, peer or "", peer_value, ratio, target))


def compare_tools(label, files, ours, peer_name, peer, runs, per_file, target_ratio=None):
    n, size = len(files), mb(files)
    if per_file:
        t_ours, t_peer = alternate([lambda: timed_loop(ours, files), lambda: timed_loop(peer, files)], runs)
    else:
        t_ours, t_peer = alternate([lambda: timed(ours + files), lambda: timed(peer + files)], runs)
    tgt = ""
    if target_ratio:
        met = (n / t_ours) / (n / t_peer) >= target_ratio
        tgt = f">= {target_ratio:g}x ({'met' if met else 'NOT met'})"
    add(f"{label}: files/s", n / t_ours, "files/s", peer_name, n / t_peer, tgt)
    add(f"{label}: MB/s", size / t_ours, "MB/s", peer_name, size / t_peer)


def bench_parse(label, files, target_gbs=None):
    r = subprocess.run([BENCH_PARSE, "--seconds", "1"] + files, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        print(f"bench/dicom.py: bench_parse failed on {label}: {r.stderr.decode(errors='replace').strip()}",
              file=sys.stderr)
        return False
    s = json.loads(r.stdout.decode().splitlines()[-1])
    tgt = ""
    if target_gbs:
        tgt = f">= {target_gbs:g} GB/s ({'met' if s['gb_per_s'] >= target_gbs else 'NOT met'})"
    add(f"parse in-process, {label}: GB/s", s["gb_per_s"], "GB/s", target=tgt)
    add(f"parse in-process, {label}: files/s", s["files_per_s"], "files/s")
    add(f"parse in-process, {label}: elements/s", s["elements_per_s"] / 1e6, "M elements/s")
    return True


def fmt(v):
    if v is None:
        return ""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def main():
    for need in (DXHUB, BENCH_PARSE):
        if not os.access(need, os.X_OK):
            print(f"bench/dicom.py: {need} missing (make bench builds it)", file=sys.stderr)
            return 1
    ct = sorted(str(p) for p in CT.glob("*.dcm"))
    if not ct:
        print(f"bench/dicom.py: no CT series in {CT} (bench/run-all makes it)", file=sys.stderr)
        return 1
    corpus = corpus_files()
    batch = corpus + ct
    sample = corpus + ct[::CT_SAMPLE]
    print(f"inputs: {len(corpus)} corpus files ({mb(corpus):.1f} MB) + {len(ct)} CT slices "
          f"({mb(ct):.1f} MB); per-file loops: corpus + {len(ct[::CT_SAMPLE])} slices; "
          f"medians of {RUNS} (batch) / {RUNS_PER_FILE} (per file) alternating runs", flush=True)

    compare_tools("dump --json, batch (corpus + CT)", batch, [DXHUB, "dump", "--json"],
                  "dcmdump", ["dcmdump"], RUNS, False, target_ratio=5)
    compare_tools("dump text, batch (corpus + CT)", batch, [DXHUB, "dump"], "dcmdump", ["dcmdump"], RUNS, False)
    compare_tools("dump --json, batch (CT series)", ct, [DXHUB, "dump", "--json"],
                  "dcmdump", ["dcmdump"], RUNS, False, target_ratio=5)
    compare_tools("dump --json, per file (corpus + CT sample)", sample, [DXHUB, "dump", "--json"],
                  "dcmdump", ["dcmdump"], RUNS_PER_FILE, True)
    compare_tools("dump --json vs dcm2json, per file (corpus + CT sample)", sample, [DXHUB, "dump", "--json"],
                  "dcm2json", ["dcm2json"], RUNS_PER_FILE, True)
    # Process start-up alone: what every per-file invocation pays.
    def starts(cmd, k=20):
        return sum(timed(cmd) for _ in range(k))

    t_ours, t_peer = alternate([lambda: starts([DXHUB, "version"]), lambda: starts(["dcmdump", "--version"])],
                               RUNS_PER_FILE)
    add("process start-up (version): starts/s", 20 / t_ours, "starts/s", "dcmdump --version", 20 / t_peer)

    ok = bench_parse("CT series (uncompressed 512x512)", ct, target_gbs=1)
    readable = [f for f in corpus
                if subprocess.run([BENCH_PARSE, "--seconds", "0.001", f], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode == 0]
    ok = bench_parse(f"corpus ({len(readable)} readable files)", readable) and ok

    w = max(len(r[0]) for r in rows)
    print(f"\n{'metric':<{w}}  {'dxhub':>12} {'unit':<13} {'peer':<18} {'peer value':>12} {'ratio':>7}  target")
    for metric, value, unit, peer, pv, ratio, target in rows:
        print(f"{metric:<{w}}  {fmt(value):>12} {unit:<13} {peer:<18} {fmt(pv):>12} "
              f"{(f'{ratio:.2f}x' if ratio else ''):>7}  {target}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {OUT}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

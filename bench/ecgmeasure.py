#!/usr/bin/python3
"""ecgmeasure.py — the ECG measurement section of `make bench`.

1. QRS detection scored the ANSI/AAMI EC57 way: beat by beat against the
   reference annotations of every PhysioNet record in
   $DXHUB_CORPUS/ecg/wfdb that has a .atr file (the corpus has MIT-BIH
   record 100), a detection within 150 ms of a reference beat being a true
   positive (each reference matched once, to the nearest detection).  Beat
   annotations are WFDB's QRS codes (isqrs: N L R B A a J S V r F e j n E
   / f Q ?); rhythm, noise and other non-beat annotations are skipped.  The
   whole record is scored (EC57 lets a detector learn for the first 5
   minutes; this one is not given that).  Sensitivity and positive
   predictivity per record and overall (gross), beside the published
   Pan-Tompkins figure (99.3 % of QRS complexes detected on the MIT-BIH
   database; Pan & Tompkins, IEEE TBME 32(3), 1985).  Target: >= 99.5 %.
2. Interval accuracy on the synthetic ECGs of samples/gen_ecg.py (exact
   truth): the largest error of PR, QRS (target 10 ms) and QT (20 ms).
3. Analysis time of a 10 s 12-lead ECG (bench_ecg_measure, CPU time of
   ecg_measure alone, best of many runs): the synthetic 500 Hz one and the
   corpus' 1000 Hz Mortara record.  Target: under 5 ms.

Prints a table and writes build/bench/ecgmeasure.json (everything) and
build/bench/ecg_qrs.json (the QRS detection rows), each a list of
{"metric", "value", "unit", "peer", "peer_value", "ratio"}.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("BUILD", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
DXHUB = os.environ.get("DXHUB") or str(BUILD / "dxhub")
CORPUS = Path(os.environ.get("DXHUB_CORPUS") or REPO.parent / "shared" / "corpus")
PY = os.environ.get("PY", "/usr/bin/python3")

PT_PUBLISHED = 99.3  # % of QRS complexes detected, Pan & Tompkins 1985 (MIT-BIH)
BEAT_CODES = set(range(1, 14)) | {25, 30, 34, 35, 38, 41}  # WFDB isqrs()
SKIP, NUM, SUB, CHN, AUX = 59, 60, 61, 62, 63


def read_annotations(path):
    """[(sample, code)] of a WFDB annotation file in MIT format: 16-bit
    little-endian words, the top 6 bits a code, the low 10 a time step;
    SKIP is followed by a 32-bit step (high word first), AUX by its bytes,
    NUM/SUB/CHN modify the annotation before them; 0 0 ends the file."""
    b = Path(path).read_bytes()
    i, t, out = 0, 0, []
    while i + 1 < len(b):
        w = b[i] | b[i + 1] << 8
        i += 2
        code, step = w >> 10, w & 0x3FF
        if code == 0 and step == 0:
            break
        if code == SKIP:
            v = (b[i] | b[i + 1] << 8) << 16 | (b[i + 2] | b[i + 3] << 8)
            t += v - (1 << 32) if v >= 1 << 31 else v
            i += 4
        elif code == AUX:
            i += step + (step & 1)
        elif code in (NUM, SUB, CHN):
            continue
        else:
            t += step
            out.append((t, code))
    return out


def score(refs, dets, fs):
    """EC57 beat-by-beat matching: (TP, FN, FP)."""
    win = int(0.150 * fs)
    used = [False] * len(dets)
    tp = fn = j = 0
    for r in refs:
        while j < len(dets) and dets[j] < r - win:
            j += 1
        best, k = None, j
        while k < len(dets) and dets[k] <= r + win:
            if not used[k] and (best is None or abs(dets[k] - r) < abs(dets[best] - r)):
                best = k
            k += 1
        if best is None:
            fn += 1
        else:
            used[best] = True
            tp += 1
    return tp, fn, len(dets) - tp


def measure(path):
    r = subprocess.run([DXHUB, "ecg", "--measure", "--json", str(path)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f"bench ecgmeasure: dxhub ecg --measure {path}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def row(metric, value, unit, peer, peer_value):
    ratio = round(value / peer_value, 4) if peer_value else None
    return {"metric": metric, "value": round(value, 3), "unit": unit, "peer": peer, "peer_value": peer_value,
            "ratio": ratio}


def qrs_section():
    rows, table, tot = [], [], [0, 0, 0]
    for atr in sorted((CORPUS / "ecg" / "wfdb").rglob("*.atr")):
        hea = atr.with_suffix(".hea")
        if not hea.exists():
            continue
        name = f"{atr.parent.name}-{atr.stem}"
        refs = [t for t, code in read_annotations(atr) if code in BEAT_CODES]
        m = measure(hea)
        tp, fn, fp = score(refs, m["beats"], m["rate"])
        tot = [tot[0] + tp, tot[1] + fn, tot[2] + fp]
        se, ppv = 100.0 * tp / (tp + fn), 100.0 * tp / (tp + fp)
        table.append((name, len(refs), len(m["beats"]), tp, fn, fp, se, ppv))
        rows += [row(f"qrs_sensitivity/{name}", se, "%", "Pan-Tompkins 1985 (published, MIT-BIH)", PT_PUBLISHED),
                 row(f"qrs_positive_predictivity/{name}", ppv, "%", "Pan-Tompkins 1985 (published, MIT-BIH)",
                     PT_PUBLISHED)]
    if not table:
        sys.exit(f"bench ecgmeasure: no annotated WFDB record under {CORPUS}/ecg/wfdb")
    se, ppv = 100.0 * tot[0] / (tot[0] + tot[1]), 100.0 * tot[0] / (tot[0] + tot[2])
    rows += [row("qrs_sensitivity/overall", se, "%", "Pan-Tompkins 1985 (published, MIT-BIH)", PT_PUBLISHED),
             row("qrs_positive_predictivity/overall", ppv, "%", "Pan-Tompkins 1985 (published, MIT-BIH)",
                 PT_PUBLISHED)]
    print("QRS detection, ANSI/AAMI EC57 beat by beat (150 ms window), whole records")
    print("%-12s %6s %6s %6s %4s %4s %8s %8s" % ("record", "ref", "det", "TP", "FN", "FP", "Se %", "+P %"))
    for t in table:
        print("%-12s %6d %6d %6d %4d %4d %8.2f %8.2f" % t)
    print("%-12s %6s %6s %6d %4d %4d %8.2f %8.2f" % ("overall", "", "", *tot, se, ppv))
    print("peer: Pan-Tompkins, published %.1f %%; target >= 99.5 %%: %s" %
          (PT_PUBLISHED, "met" if se >= 99.5 and ppv >= 99.5 else "NOT MET"))
    return rows


def synth_set():
    out = BUILD / "bench" / "ecg-synth"
    stamp = hashlib.sha256((REPO / "samples" / "gen_ecg.py").read_bytes()).hexdigest()[:16]
    if (out / ".complete").exists() and (out / ".complete").read_text() == stamp:
        return out
    subprocess.run([PY, str(REPO / "samples" / "gen_ecg.py"), "--out", str(out)], check=True, timeout=300)
    (out / ".complete").write_text(stamp)
    return out


def interval_section(synth):
    errs = {"pr_ms": [], "qrs_ms": [], "qt_ms": []}
    for truth_path in sorted(synth.glob("*.json")):
        truth = json.loads(truth_path.read_text())
        m = measure(truth_path.with_suffix(".dcm"))
        for k in errs:
            if truth[k] is not None and m[k] is not None:
                errs[k].append(m[k] - truth[k])
    rows = []
    print()
    print("Intervals on %d synthetic 12-lead ECGs (samples/gen_ecg.py), measured - true" % len(list(synth.glob("*.json"))))
    print("%-6s %6s %10s %10s %8s" % ("", "n", "mean ms", "max |ms|", "target"))
    for k, target in (("pr_ms", 10), ("qrs_ms", 10), ("qt_ms", 20)):
        e = errs[k]
        worst = max(abs(x) for x in e)
        print("%-6s %6d %+10.1f %10.1f %8d" % (k[:-3].upper(), len(e), sum(e) / len(e), worst, target))
        rows.append(row(f"ecg_{k[:-3]}_error_max/synthetic", worst, "ms", "target", target))
    return rows


def timing_section(synth):
    files = [synth / "normal.dcm", CORPUS / "ecg" / "dicom" / "waveform_ecg.dcm"]
    r = subprocess.run([str(BUILD / "bench" / "bench_ecg_measure"), "--seconds", "1", *map(str, files)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        sys.exit(f"bench ecgmeasure: bench_ecg_measure: {r.stderr.strip()}")
    rows = []
    print()
    print("Analysis time of one ECG (ecg_measure, CPU ms, best of N)")
    print("%-18s %5s %7s %6s %5s %8s %8s" % ("file", "leads", "samples", "Hz", "runs", "best", "median"))
    for line in r.stdout.splitlines():
        _, name, leads, samples, rate, runs, best, med, _beats = line.split()
        print("%-18s %5s %7s %6s %5s %8s %8s" % (name, leads, samples, rate, runs, best, med))
        rows.append(row(f"ecg_measure_ms/{name}", float(best), "ms (%s leads, %.0f s)" % (leads, int(samples) /
                                                                                       float(rate)), "target", 5))
    print("target: a 10 s 12-lead ECG under 5 ms: %s" % ("met" if all(x["value"] < 5 for x in rows) else "NOT MET"))
    return rows


def main():
    if not Path(DXHUB).exists():
        sys.exit(f"bench ecgmeasure: {DXHUB} is missing (make)")
    if not (BUILD / "bench" / "bench_ecg_measure").exists():
        subprocess.run(["make", "--no-print-directory", str(BUILD.relative_to(REPO) / "bench" / "bench_ecg_measure")],
                       cwd=REPO, check=True)
    (BUILD / "bench").mkdir(parents=True, exist_ok=True)
    qrs = qrs_section()
    synth = synth_set()
    rows = qrs + interval_section(synth) + timing_section(synth)
    for name, data in (("ecg_qrs.json", qrs), ("ecgmeasure.json", rows)):
        with open(BUILD / "bench" / name, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

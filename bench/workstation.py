#!/usr/bin/python3
"""workstation.py — the reading workstation daemon's section of `make bench`
(the browser's own figures are the viewer section's).

A hub on loopback gets the synthetic 300-slice 512x512 CT series
($DXHUB_BENCH_CT, made by bench/run-all) with storescu; `dxhub workstation`
is offered it and prefetches it; then, over HTTP on loopback:

1. prefetch: the whole series from the hub into the cache LMDB (MB/s),
   beside `dxhub reader --fetch-to` writing the same series into files;
2. "open a prefetched study": claim + GET /api/tasks/{id}/study + the first
   frame (ms, median of WS_BENCH_REPEAT), the daemon's share of the time
   from a click to the first image (target: the whole under 100 ms);
   beside pydicom reading the 300 headers and the first image from files;
3. scrolling: all 300 frames one after another on one keep-alive
   connection (frames/s; the UI's target is 30), beside pydicom decoding
   them from files.

Prints a table and writes build/bench/workstation.json, a list of
{"metric", "value", "unit", "peer", "peer_value", "ratio"} (ratio = value /
peer_value).
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
BUILD = Path(os.environ.get("BUILD", "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
os.environ.setdefault("DXHUB", str(BUILD / "dxhub"))
REPEAT = int(os.environ.get("WS_BENCH_REPEAT", "5"))

import pydicom  # noqa: E402

from edgeutil import dxhub_bin, run, wait_for  # noqa: E402
from wsutil import World  # noqa: E402


def row(metric, value, unit, peer, peer_value):
    ratio = round(value / peer_value, 3) if peer_value else None
    return {"metric": metric, "value": round(value, 3), "unit": unit, "peer": peer,
            "peer_value": round(peer_value, 3) if peer_value is not None else None, "ratio": ratio}


def main():
    ct = Path(os.environ.get("DXHUB_BENCH_CT") or BUILD / "bench" / "ct")
    files = sorted(p for p in ct.glob("*.dcm"))
    if len(files) < 10:
        print(f"bench/workstation.py: no CT series in {ct} (bench/run-all makes it)", file=sys.stderr)
        return 1
    total = sum(p.stat().st_size for p in files)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dxhub-bench-ws-") as tmp:
        world = World(Path(tmp), {"bench-a": ("CT", "imaging", "Bench A"), "bench-b": ("CT", "imaging", "Bench B")})
        try:
            world.start()
            study = str(pydicom.dcmread(str(files[0]), stop_before_pixels=True).StudyInstanceUID)
            world.send(files)
            wait_for(lambda: world.studies().get(study) == "queued", 60, interval=0.2, what="the CT queued")

            # 1. prefetch, and the headless reader fetching into files
            t0 = time.monotonic()
            ws = world.workstation("bench-a", "--offers", 1, "--prefetch", 1, "--cache-mb", 1024)
            wait_for(lambda: ws.tasks() and ws.tasks()[0]["prefetched"] == 1, 120, interval=0.05,
                     what="the series prefetched")
            t_pre = time.monotonic() - t0
            ws.proc.stop()
            t0 = time.monotonic()
            r = run([dxhub_bin(), "reader", "--hub", world.reader_ep, "--hub-key", world.hub_key, "--keys",
                     world.rkeys, "--name", "bench-b", "--take", "1", "--wait", "60", "--fetch-to",
                     Path(tmp) / "fetched", "--release"], timeout=300)
            t_files = time.monotonic() - t0
            if r.returncode != 0:
                print(r.stderr.decode(), file=sys.stderr)
                return 1
            rows.append(row("prefetch 300-slice CT into the cache", total / t_pre / 1e6, "MB/s",
                            "dxhub reader --fetch-to (files)", total / t_files / 1e6))

            # 2. open the prefetched study: claim, study JSON, first frame
            ws = world.workstation("bench-a", "--offers", 1, "--prefetch", 1, "--cache-mb", 1024,
                                   name="bench-a-2", cache=ws.cache)
            task = wait_for(lambda: ws.tasks() and ws.tasks()[0]["prefetched"] == 1 and ws.tasks()[0], 60,
                            interval=0.05, what="the series offered again (already in the cache)")
            ws.json("POST", f"/api/tasks/{task['id']}/claim")
            c = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=60)
            hdr = {"X-Dxhub-Token": ws.token}

            def get(path):
                c.request("GET", path, headers=hdr)
                resp = c.getresponse()
                body = resp.read()
                assert resp.status == 200, (path, resp.status, body[:200])
                return body

            opens, sops = [], []
            for _ in range(REPEAT):
                t0 = time.perf_counter()
                j = json.loads(get(f"/api/tasks/{task['id']}/study"))
                sops = [i["sop"] for s in j["series"] for i in s["instances"]]
                get(f"/api/instances/{sops[0]}/frames/1")
                opens.append((time.perf_counter() - t0) * 1000)
            peer = []
            for _ in range(REPEAT):
                t0 = time.perf_counter()
                hs = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in files]
                pydicom.dcmread(str(files[0])).pixel_array
                peer.append((time.perf_counter() - t0) * 1000)
                del hs
            rows.append(row("open a prefetched 300-slice CT: study JSON + first frame", statistics.median(opens),
                            "ms", "pydicom: 300 headers + first image from files", statistics.median(peer)))

            # 3. scrolling through every frame
            t0 = time.perf_counter()
            for sop in sops:
                get(f"/api/instances/{sop}/frames/1")
            fps = len(sops) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for p in files:
                pydicom.dcmread(str(p)).pixel_array
            peer_fps = len(files) / (time.perf_counter() - t0)
            c.close()
            rows.append(row("frames served while scrolling (512x512 16-bit)", fps, "frames/s",
                            "pydicom pixel_array from files", peer_fps))
        finally:
            world.close()
    out = BUILD / "bench" / "workstation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{'metric':58} {'dxhub':>10} {'peer':>10}  ratio  unit / peer")
    for r in rows:
        print(f"{r['metric']:58} {r['value']:>10} {r['peer_value']:>10}  {r['ratio']:<5}  {r['unit']} / {r['peer']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

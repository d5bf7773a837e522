#!/usr/bin/python3
"""tls.py — what TLS costs: dxhub with TLS side by side with dxhub without.

An operator who opens the hub to the LAN turns TLS on (the HTTP API must;
DICOM TLS where the modalities speak it).  Measured on 127.0.0.1, each
pair alternating, medians over TLS_BENCH_RUNS (3):

  - DICOM ingest of the synthetic 300-slice CT series ($DXHUB_BENCH_CT) by
    storescu in one association, into a fresh hub each run: plain DICOM
    vs DICOM TLS with the modality's certificate checked (instances/s);
  - the study lookup by UID (GET /api/v1/studies?StudyInstanceUID=) with
    wrk, 16 keep-alive connections for TLS_BENCH_SECONDS (5): HTTP vs
    HTTPS, requests/s and p99.

Peer: the same dxhub without TLS.  Prints a table and writes
$BUILD/bench/tls.json ({"metric","value","unit","peer","peer_value",
"ratio"}, ratio = value / peer_value).  No target: the figures say what
turning TLS on costs.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from side_by_side import SideBySide

REPO = Path(__file__).resolve().parents[1]
os.chdir(REPO)
BUILD = Path(os.environ.get("BUILD", "build"))
DXHUB = os.environ.get("DXHUB") or str((BUILD / "dxhub").resolve())
CT = Path(os.environ.get("DXHUB_BENCH_CT") or BUILD / "bench" / "ct")
OUT = BUILD / "bench" / "tls.json"
RUNS = int(os.environ.get("TLS_BENCH_RUNS", "3"))
SECONDS = int(os.environ.get("TLS_BENCH_SECONDS", "5"))
os.environ.setdefault("TCP_NODELAY", "1")
PEER = "dxhub without TLS"
results = SideBySide(PEER, OUT)


sys.path.insert(0, str(REPO / "tests" / "e2e"))
from tlsutil import Pki  # noqa: E402  (the tests' CA: the same certificates the TLS tests use)


class Certs:
    """A CA, the hub's certificate (127.0.0.1) and a modality's."""

    def __init__(self, d):
        pki = Pki(d)
        self.ca = pki.ca
        self.hub, self.hub_key = pki.server("hub", san="IP:127.0.0.1")
        self.ct, self.ct_key = pki.server("ct", san="DNS:ct.example")

    def modality(self):
        """storescu's options: the modality's certificate, trusting the CA."""
        return ["+tls", str(self.ct_key), str(self.ct), "+cf", str(self.ca)]


class Hub:
    def __init__(self, data, certs=None):
        self.args = [DXHUB, "serve", "--data", str(data), "--dicom-port", "0", "--http-port", "0", "--edge-port", "0",
                     "--reader-port", "0", "--peer-port", "0", "--open-dicom", "--map-size", "4G"]
        if certs:
            c = certs
            self.args += ["--tls-cert", str(c.hub), "--tls-key", str(c.hub_key), "--dicom-tls-cert", str(c.hub),
                          "--dicom-tls-key", str(c.hub_key), "--dicom-tls-ca", str(c.ca)]
        self.log = open(Path(data).parent / f"{Path(data).name}.log", "wb")
        self.p = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        line = self.p.stdout.readline().decode()
        m = re.search(r"dicom=[0-9.]+:(\d+) .*http=[0-9.]+:(\d+)", line)
        if not m:
            self.stop()
            sys.exit(f"bench/tls.py: the hub did not start: {line!r}")
        self.dicom, self.http = int(m.group(1)), int(m.group(2))

    def stop(self):
        self.p.terminate()
        self.p.wait(60)
        self.log.close()


def store(hub, files, certs):
    """storescu in one association; its seconds."""
    args = ["storescu", "-aec", "DXHUB"] + (certs.modality() if certs else [])
    t = time.perf_counter()
    r = subprocess.run(args + ["127.0.0.1", str(hub.dicom)] + files, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode:
        sys.exit(f"bench/tls.py: storescu failed: {r.stderr.decode()[-300:]}")
    return time.perf_counter() - t


def ingest(work, certs, files, n):
    """Instances/s of one storescu association into a fresh hub."""
    data = work / f"ingest-{'tls' if certs else 'plain'}-{n}"
    hub = Hub(data, certs)
    try:
        return len(files) / store(hub, files, certs)
    finally:
        hub.stop()
        shutil.rmtree(data, ignore_errors=True)


def wrk_lookup(url):
    """(requests/s, p99 ms) of wrk on url."""
    r = subprocess.run(["wrk", "-t", "1", "-c", "16", "-d", f"{SECONDS}s", "--latency", url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=SECONDS + 60)
    out = r.stdout.decode()
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    p99 = re.search(r"99%\s+([0-9.]+)(us|ms|s)\b", out)
    if r.returncode or not rate or not p99:
        sys.exit(f"bench/tls.py: wrk failed on {url}: {out[-400:]}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return float(rate.group(1)), float(p99.group(1)) * scale



def main():
    for tool in ("storescu", "wrk", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"bench/tls.py: {tool} missing (make deps)")
    files = sorted(str(p) for p in CT.glob("*.dcm"))
    if not files:
        sys.exit(f"bench/tls.py: no CT series in {CT} (bench/run-all makes it)")
    work = Path(tempfile.mkdtemp(prefix="dxhub-bench-tls-"))
    try:
        certs = Certs(work / "pki")
        plain, tls = [], []
        for n in range(RUNS):
            plain.append(ingest(work, None, files, n))
            tls.append(ingest(work, certs, files, n))
        results.add("CT ingest, DICOM TLS", statistics.median(tls), "instances/s", statistics.median(plain))

        # one hub of each kind with the series, then the lookup alternating
        hubs = {"plain": Hub(work / "lookup-plain"), "tls": Hub(work / "lookup-tls", certs)}
        try:
            for kind, hub in hubs.items():
                store(hub, files, certs if kind == "tls" else None)
            study = subprocess.run(["dcmdump", "-s", "+P", "0020,000d", files[0]], stdout=subprocess.PIPE,
                                   check=True).stdout.decode()
            uid = re.search(r"\[([0-9.]+)\]", study).group(1)
            path = f"/api/v1/studies?StudyInstanceUID={uid}"
            rates = {"plain": [], "tls": []}
            for _ in range(RUNS):
                rates["plain"].append(wrk_lookup(f"http://127.0.0.1:{hubs['plain'].http}{path}"))
                rates["tls"].append(wrk_lookup(f"https://127.0.0.1:{hubs['tls'].http}{path}"))
        finally:
            for hub in hubs.values():
                hub.stop()
        med = {k: (statistics.median(r for r, _ in v), statistics.median(p for _, p in v)) for k, v in rates.items()}
        results.add("study lookup over HTTPS, 16 connections", med["tls"][0], "requests/s", med["plain"][0])
        results.add("study lookup over HTTPS, 16 connections, p99", med["tls"][1], "ms", med["plain"][1])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results.report('with TLS', 'without', 48)


if __name__ == "__main__":
    main()

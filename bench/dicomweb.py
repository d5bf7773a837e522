#!/usr/bin/python3
"""dicomweb.py — what a PACS or a DICOMweb viewer waits for at the hub,
side by side with Orthanc's DICOMweb plugin (Debian orthanc-dicomweb)
serving the same study, on 127.0.0.1, alternating, medians over
DICOMWEB_BENCH_RUNS (5):

  - WADO-RS retrieval of the whole synthetic 300-slice CT study
    ($DXHUB_BENCH_CT) as multipart/related application/dicom: MB/s and
    instances/s, the body read to its end;
  - WADO-RS metadata of that study (every instance's header as DICOM
    JSON): ms, the second of two requests (the first fills either server's
    caches);
  - QIDO-RS search for the study by PatientID: ms;
  - WADO-RS rendered of the middle slice as JPEG (a thumbnail): ms.

Both servers hold the study as storescu sent it (uncompressed), so both
answer with the stored bytes.  Prints a table and writes
$BUILD/bench/dicomweb.json ({"metric","value","unit","peer","peer_value",
"ratio"}).  No target: the figures say how the hub compares.
"""
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from side_by_side import SideBySide

REPO = Path(__file__).resolve().parents[1]
os.chdir(REPO)
BUILD = Path(os.environ.get("BUILD", "build"))
DXHUB = os.environ.get("DXHUB") or str((BUILD / "dxhub").resolve())
CT = Path(os.environ.get("DXHUB_BENCH_CT") or BUILD / "bench" / "ct")
OUT = BUILD / "bench" / "dicomweb.json"
RUNS = int(os.environ.get("DICOMWEB_BENCH_RUNS", "5"))
ORTHANC = "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
PEER = "Orthanc DICOMweb plugin"
ACCEPT = 'multipart/related; type="application/dicom"'
os.environ.setdefault("TCP_NODELAY", "1")
results = SideBySide(PEER, OUT)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, accept=None):
    """(seconds, bytes) of a GET read to its end."""
    req = urllib.request.Request(url)
    if accept:
        req.add_header("Accept", accept)
    t = time.perf_counter()
    n = 0
    with urllib.request.urlopen(req, timeout=300) as r:
        if r.status != 200:
            sys.exit(f"bench/dicomweb.py: {url}: HTTP {r.status}")
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
    return time.perf_counter() - t, n


def wait_http(url, proc, what):
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench/dicomweb.py: {what} did not start")
            time.sleep(0.2)


def storescu(port, aec, files):
    r = subprocess.run(["storescu", "-aec", aec, "127.0.0.1", str(port)] + files, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode:
        sys.exit(f"bench/dicomweb.py: storescu to {aec} failed: {r.stderr.decode()[-300:]}")



def main():
    for tool in ("storescu", ORTHANC, PLUGIN):
        if not shutil.which(tool) and not Path(tool).exists():
            sys.exit(f"bench/dicomweb.py: {tool} missing (make deps)")
    files = sorted(str(p) for p in CT.glob("*.dcm"))
    if not files:
        sys.exit(f"bench/dicomweb.py: no CT series in {CT} (bench/run-all makes it)")
    head = subprocess.run(["dcmdump", "-s", "+P", "0020,000d", "+P", "0010,0020", files[0]], stdout=subprocess.PIPE,
                          check=True).stdout.decode()
    study = re.search(r"\(0020,000d\) UI \[([0-9.]+)\]", head).group(1)
    patient = re.search(r"\(0010,0020\) LO \[([^\]]*)\]", head).group(1)
    mid = subprocess.run(["dcmdump", "-s", "+P", "0020,000e", "+P", "0008,0018", files[len(files) // 2]],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    series = re.search(r"\(0020,000e\) UI \[([0-9.]+)\]", mid).group(1)
    sop = re.search(r"\(0008,0018\) UI \[([0-9.]+)\]", mid).group(1)
    work = Path(tempfile.mkdtemp(prefix="dxhub-bench-dicomweb-"))
    procs, logs = [], []
    try:
        log = open(work / "hub.log", "wb")
        logs.append(log)
        hub = subprocess.Popen([DXHUB, "serve", "--data", str(work / "hub"), "--dicom-port", "0", "--http-port", "0",
                                "--edge-port", "0", "--reader-port", "0", "--peer-port", "0", "--open-dicom",
                                "--map-size", "4G", "--stable-seconds", "600"],
                               stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        procs.append(hub)
        m = re.search(r"dicom=[0-9.]+:(\d+) .*http=[0-9.]+:(\d+)", hub.stdout.readline().decode())
        if not m:
            sys.exit("bench/dicomweb.py: the hub did not start")
        hub_dicom, hub_http = int(m.group(1)), int(m.group(2))
        o_http, o_dicom = free_port(), free_port()
        conf = {"Name": "bench", "StorageDirectory": str(work / "orthanc"), "IndexDirectory": str(work / "orthanc"),
                "HttpPort": o_http, "DicomPort": o_dicom, "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False, "Plugins": [PLUGIN],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        (work / "orthanc.json").write_text(json.dumps(conf))
        log = open(work / "orthanc.log", "wb")
        logs.append(log)
        orthanc = subprocess.Popen([ORTHANC, str(work / "orthanc.json")], stdout=log, stderr=log)
        procs.append(orthanc)
        wait_http(f"http://127.0.0.1:{o_http}/system", orthanc, "Orthanc")
        storescu(hub_dicom, "DXHUB", files)
        storescu(o_dicom, "ORTHANC", files)
        bases = {"dxhub": f"http://127.0.0.1:{hub_http}/dicom-web",
                 "peer": f"http://127.0.0.1:{o_http}/dicom-web"}
        times = {k: {"retrieve": [], "bytes": 0, "metadata": [], "qido": [], "rendered": []} for k in bases}
        rendered = f"/studies/{study}/series/{series}/instances/{sop}/rendered"
        for _ in range(RUNS):
            for k, base in bases.items():
                secs, n = get(f"{base}/studies/{study}", ACCEPT)
                times[k]["retrieve"].append(secs)
                times[k]["bytes"] = n
                get(f"{base}/studies/{study}/metadata", "application/dicom+json")
                times[k]["metadata"].append(get(f"{base}/studies/{study}/metadata", "application/dicom+json")[0])
                times[k]["qido"].append(get(f"{base}/studies?PatientID={patient}", "application/dicom+json")[0])
                secs, n = get(base + rendered, "image/jpeg")
                if n < 1000:
                    sys.exit(f"bench/dicomweb.py: {k} answered {n} bytes for a rendered slice")
                times[k]["rendered"].append(secs)
        med = {k: {m: statistics.median(v[m]) for m in ("retrieve", "metadata", "qido", "rendered")} |
               {"bytes": v["bytes"]}
               for k, v in times.items()}
        for k in med:
            if med[k]["bytes"] < sum(os.path.getsize(f) for f in files) * 0.9:
                sys.exit(f"bench/dicomweb.py: {k} answered {med[k]['bytes']} bytes for the study")
        mb = {k: med[k]["bytes"] / med[k]["retrieve"] / 1e6 for k in med}
        results.add("WADO-RS retrieve, 300-slice CT study", mb["dxhub"], "MB/s", mb["peer"])
        results.add("WADO-RS retrieve, instances per second", len(files) / med["dxhub"]["retrieve"], "instances/s",
            len(files) / med["peer"]["retrieve"])
        results.add("WADO-RS metadata of the study", med["dxhub"]["metadata"] * 1000, "ms", med["peer"]["metadata"] * 1000)
        results.add("QIDO-RS search by PatientID", med["dxhub"]["qido"] * 1000, "ms", med["peer"]["qido"] * 1000)
        results.add("WADO-RS rendered slice (JPEG)", med["dxhub"]["rendered"] * 1000, "ms", med["peer"]["rendered"] * 1000)
    finally:
        for p in procs:  # only what this section started, by PID
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
        shutil.rmtree(work, ignore_errors=True)

    results.report('dxhub', 'Orthanc', 44)


if __name__ == "__main__":
    main()

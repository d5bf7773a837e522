#!/usr/bin/python3
"""link_run.py — the edge→hub link over an emulated clinic link, side by
side with Orthanc sending the same study to a second Orthanc over the same
link (bench/link.sh starts it; root: namespaces and tbf).

The emulated link (this kernel has no netem):
  - two network namespaces, "clinic" (198.18.0.1) and "hub" (198.18.0.2),
    joined by a veth pair shaped by tbf to LINK_BENCH_MBIT (10) Mbit/s in
    each direction: the bottleneck, where the bytes are counted;
  - in the hub namespace, behind the bottleneck, tests/fault/faultproxy.py
    adds 20 ms each way (40 ms RTT) and 1% loss (each lost 1448-byte segment
    holds the stream back one round trip, one in ten a retransmission
    timeout: the head-of-line cost of a loss with SACK; the congestion
    window's reaction to loss is NOT emulated, for either side).
  One proxy per service, with the same settings: the edge connects to
  198.18.0.2:5571 → hub on 127.0.0.1:5570; Orthanc A to 198.18.0.2:4243 →
  Orthanc B on 127.0.0.1:4242.

What is timed, for each data set (the 300-slice CT series and the CR/DX
batch):
  dxhub    the study is already in the edge's spool (`dxhub push`, which
           compresses it with JPEG-LS for the link, as the edge does when a
           modality sends it); the clock runs from starting the edge until
           the hub's API shows the study complete (every instance durable,
           study marker in).
  Orthanc  the study is already in Orthanc A (loaded by storescu inside the
           clinic namespace, untimed); the clock runs around
           POST /modalities/peer/store {"Synchronous": true} (C-STORE, one
           association, as Orthanc sends by default: the stored syntax),
           and B is checked to hold every instance.
Bytes on the link: the clinic-side veth's tx_bytes (every header and
retransmission included), sampled every 2 ms inside the clinic namespace.
Link utilisation = bytes × 8 / (link rate × transfer period), the period
running from the first byte on the wire to the last instance durable at the
receiver: for dxhub the edge's own log time of the hub's last instance ACK,
for Orthanc the return of its synchronous store.  End-to-end utilisation
divides every byte sent by the whole delivery time instead (for dxhub that
adds the edge's start-up, its study marker and the 50 ms status polling).

Prints a table and writes BUILD/bench/link.json (a list of {"metric",
"value", "unit", "peer", "peer_value", "ratio"}; ratio = dxhub / peer).
Targets, printed and not asserted: ≥ 2× faster than Orthanc over the same
link; ≥ 90% utilisation for the bytes dxhub actually sends.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from edgeutil import (Edge, FaultProxy, Hub, NetPair, allow, kill_ns_processes, run,  # noqa: E402
                      storescu, wait_for)

ORTHANC_HTTP = 8042


def log(*a):
    print(*a, flush=True)


def curl(ns, method, url, data=None, timeout=1200):
    args = ["curl", "-sf", "-m", str(timeout), "-X", method, url]
    if data is not None:
        args += ["-d", data]
    r = run(args, ns=ns, timeout=timeout + 10)
    if r.returncode != 0:
        raise RuntimeError(f"{method} {url} failed ({r.returncode}): {r.stderr.decode()[-300:]}")
    return json.loads(r.stdout) if r.stdout.strip() else None


class Orthanc:
    """An Orthanc of its own (temporary storage, no plugins) inside a
    namespace; its REST API on 127.0.0.1 there, reached with curl inside it."""

    def __init__(self, name, aet, ns, work, dicom_port, modalities=None):
        self.ns, self.aet, self.dicom_port = ns, aet, dicom_port
        d = work / name
        d.mkdir()
        cfg = {"Name": name, "StorageDirectory": str(d / "storage"), "IndexDirectory": str(d / "index"),
               "HttpPort": ORTHANC_HTTP, "DicomPort": dicom_port, "DicomAet": aet, "DicomCheckCalledAet": False,
               "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "StorageCompression": False,
               "DicomModalities": modalities or {}, "Plugins": [], "DicomScuTimeout": 60}
        self.config = d / "config.json"
        self.config.write_text(json.dumps(cfg, indent=1))
        self.log_path = work / f"orthanc-{name}.log"
        self.p = None
        self.base = f"http://127.0.0.1:{ORTHANC_HTTP}"

    def start(self):
        with open(self.log_path, "ab") as log_f:
            self.p = subprocess.Popen(["ip", "netns", "exec", self.ns, "Orthanc", str(self.config)], stdout=log_f,
                                      stderr=log_f, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: self.get("/system"), 60, interval=0.3, what=f"Orthanc {self.aet} to start")

    def get(self, path):
        try:
            return curl(self.ns, "GET", self.base + path, timeout=30)
        except RuntimeError:
            return None

    def post(self, path, body):
        return curl(self.ns, "POST", self.base + path, body if isinstance(body, str) else json.dumps(body))

    def stop(self):
        if self.p and self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(10)


def tx(net):
    return net.tx_bytes("clinic")


# Runs inside the clinic namespace (its own /sys): the clinic veth's tx_bytes
# every 2 ms, one "wall-clock-seconds bytes" line whenever it changed.
SAMPLER = r"""
import signal, sys, time
f = open(f"/sys/class/net/{sys.argv[1]}/statistics/tx_bytes", "rb")
out, last, stop = [], -1, []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print("ready", flush=True)
while not stop:
    f.seek(0)
    b = int(f.read())
    if b != last:
        out.append(f"{time.time():.4f} {b}")
        last = b
    time.sleep(0.002)
sys.stdout.write("\n".join(out) + "\n")
"""


class Wire:
    """What crossed the clinic end of the bottleneck, and when: samples of
    its tx_bytes taken inside the namespace (wall clock, to line up with the
    roles' log timestamps)."""

    def __init__(self, net):
        self.p = subprocess.Popen(["ip", "netns", "exec", net.clinic, sys.executable, "-c", SAMPLER, net.vc],
                                  stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.p.stdout.readline().strip() == b"ready"
        self.samples = []

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        out = self.p.communicate(timeout=30)[0].decode()
        self.samples = [(float(t), int(b)) for t, b in (ln.split() for ln in out.splitlines() if ln.strip())]
        return self

    def first_after(self, t0):
        """(time, bytes before it) of the first change at or after wall time t0."""
        prev = None
        for t, b in self.samples:
            if t >= t0 and prev is not None and b > prev:
                return t, prev
            prev = b
        return None

    def bytes_at(self, t):
        b = self.samples[0][1]
        for ts, bs in self.samples:
            if ts > t:
                break
            b = bs
        return b

    def idle(self, t0, t1, step=0.05, rate=None):
        """Step-long windows within [t0, t1] (their start, relative to t0)
        where the wire moved less than half of what the link allows."""
        out, t = [], t0
        while t < t1:
            if (self.bytes_at(min(t + step, t1)) - self.bytes_at(t)) < 0.5 * rate * (min(t + step, t1) - t):
                out.append(round(t - t0, 2))
            t += step
        return out


def log_time(line):
    """Wall-clock seconds of a role's log line (2026-11-23T15:07:56.123Z ...)."""
    import datetime
    ts = line.split(" ", 1)[0]
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def study_uid(path):
    import pydicom
    return str(pydicom.dcmread(str(path), stop_before_pixels=True).StudyInstanceUID)


def run_dxhub(net, work, name, files, proxy_opts, mbit):
    """Returns (seconds, link bytes, application bytes, the transfer period:
    {"start", "secs", "bytes", "idle"})."""
    d = work / f"dx-{name}"
    d.mkdir()
    hub = Hub(d / "hub", d, stable_seconds=600, ns=net.hub, bind="127.0.0.1")
    (hub.data / "keys").mkdir(parents=True)
    proxy = FaultProxy(f"{NetPair.HUB_IP}:5571", f"127.0.0.1:{hub.edge_port}", d, ns=net.hub, name="proxy-dxhub",
                       **proxy_opts)
    edge = Edge(d / "edge", f"tcp://{NetPair.HUB_IP}:5571", hub.key_file, d, ns=net.clinic,
                extra=os.environ.get("LINK_BENCH_EDGE_ARGS", "").split())
    allow(hub.keys_dir, "edge:bench", edge.make_key())
    uid = study_uid(files[0])
    try:
        hub.start()
        proxy.start()
        t0 = time.monotonic()
        rc, queued, out = edge.push(files, priority="routine", timeout=1800)
        assert rc == 0 and len(queued) == len(files), out[-2000:]
        prep = time.monotonic() - t0
        b0 = tx(net)
        wire = Wire(net)
        t0 = time.monotonic()
        w0 = time.time()
        edge.start()

        def done():
            s = hub.study(uid)
            return s if s and s["study"]["dxhub"]["completed"] else None
        s = wait_for(done, 3600, interval=0.05, what=f"dxhub: {name} complete at the hub")
        secs = time.monotonic() - t0
        b1 = tx(net)
        wire.stop()
        acks = [log_time(ln) for ln in edge.proc.log_path.read_text().splitlines()
                if "(instance) is durable at the hub" in ln]
        first = wire.first_after(w0)
        assert len(acks) == len(files) and first, (len(acks), first)
        t_first, bytes_before = first
        t_last = max(acks)
        link = {"start": t_first - w0, "secs": t_last - t_first,
                "bytes": wire.bytes_at(t_last) - bytes_before,
                "idle": wire.idle(t_first, t_last, rate=mbit * 1e6 / 8)}
        if os.environ.get("LINK_BENCH_DEBUG"):
            log(f"  idle 50 ms windows at {link['idle']}; instances durable at "
                f"{[round(a - t_first, 2) for a in sorted(acks)]}")
        log(f"  dxhub   {name}: first byte on the wire {link['start']:.2f} s after starting the edge; "
            f"last instance durable {link['secs']:.2f} s later ({link['bytes'] / 1e6:.2f} MB on the wire, "
            f"{0.05 * len(link['idle']):.2f} s of it idle)")
        n = s["study"]["00201208"]["Value"][0]
        assert n == len(files), (n, len(files))
        app_bytes = s["study"]["dxhub"]["bytes"]
        log(f"  dxhub   {name}: {len(files)} instances, {app_bytes / 1e6:.1f} MB (JPEG-LS for the link; "
            f"prepared in {prep:.1f} s), delivered in {secs:.1f} s")
        return secs, b1 - b0, app_bytes, link
    finally:
        edge.stop()
        proxy.stop()
        hub.stop()


def run_orthanc(net, work, name, files, proxy_opts, mbit):
    d = work / f"or-{name}"
    d.mkdir()
    b = Orthanc("B", "ORTHANCB", net.hub, d, 4242)
    a = Orthanc("A", "ORTHANCA", net.clinic, d, 4242,
                modalities={"peer": ["ORTHANCB", NetPair.HUB_IP, 4243]})
    proxy = FaultProxy(f"{NetPair.HUB_IP}:4243", "127.0.0.1:4242", d, ns=net.hub, name="proxy-orthanc", **proxy_opts)
    uid = study_uid(files[0])
    try:
        b.start()
        a.start()
        proxy.start()
        ok, r = storescu("127.0.0.1", 4242, files, ns=net.clinic, aec="ORTHANCA", required=False)
        assert all(ok.values()), r.stderr.decode()[-2000:]
        found = a.post("/tools/lookup", uid)
        sid = next(x["ID"] for x in found if x["Type"] == "Study")
        b0 = tx(net)
        wire = Wire(net)
        t0 = time.monotonic()
        w0 = time.time()
        a.post("/modalities/peer/store", {"Resources": [sid], "Synchronous": True})
        secs = time.monotonic() - t0
        w1 = time.time()
        b1 = tx(net)
        wire.stop()
        first = wire.first_after(w0)
        assert first
        link = {"start": first[0] - w0, "secs": w1 - first[0], "bytes": wire.bytes_at(w1) - first[1],
                "idle": wire.idle(first[0], w1, rate=mbit * 1e6 / 8)}
        st = b.get(f"/studies/{sid}/statistics")
        n = int(st["CountInstances"])
        assert n == len(files), f"Orthanc B has {n} of {len(files)} instances"
        size = int(st["DiskSize"])
        log(f"  Orthanc {name}: {len(files)} instances, {size / 1e6:.1f} MB as stored, delivered in {secs:.1f} s; "
            f"first byte on the wire after {link['start']:.2f} s, then {link['secs']:.2f} s "
            f"({link['bytes'] / 1e6:.2f} MB on the wire, {0.05 * len(link['idle']):.2f} s of it idle)")
        return secs, b1 - b0, size, link
    finally:
        proxy.stop()
        a.stop()
        b.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ct", required=True, help="directory of the CT series")
    ap.add_argument("--dx", required=True, help="directory of the CR/DX images")
    ap.add_argument("--out", required=True, help="JSON results")
    ap.add_argument("--mbit", type=float, default=float(os.environ.get("LINK_BENCH_MBIT", 10)))
    ap.add_argument("--delay", type=float, default=20.0, help="one-way ms (RTT = 2x)")
    ap.add_argument("--loss", type=float, default=0.01)
    ap.add_argument("--no-orthanc", action="store_true")
    ap.add_argument("--only", default="", help="CT or DX: that data set only")
    a = ap.parse_args()
    ct = sorted(Path(a.ct).glob("*.dcm"))
    dx = sorted(Path(a.dx).glob("*.dcm"))
    assert ct and dx, "no input files"
    orthanc_version = ""
    if not a.no_orthanc:
        r = run(["Orthanc", "--version"])
        orthanc_version = r.stdout.decode().split("\n")[0].replace("Orthanc ", "").strip()
    peer = f"Orthanc {orthanc_version} (C-STORE to a second Orthanc)"
    proxy_opts = dict(delay=a.delay, loss=a.loss, seed=1453)
    # SIGTERM/SIGINT end the run through the cleanup below (namespaces deleted)
    def leave(sig, frame):
        raise SystemExit(f"bench/link_run.py: signal {sig}")
    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)
    work = Path(tempfile.mkdtemp(prefix="dxhub-bench-link-"))
    net = NetPair()
    results = []
    try:
        net.create(rate_mbit=a.mbit, burst="16kb", latency="50ms")
        log(f"link: {a.mbit:g} Mbit/s (tbf on a veth pair between two namespaces), "
            f"RTT {2 * a.delay:g} ms and {a.loss * 100:g}% loss (tests/fault/faultproxy.py)")
        rate = a.mbit * 1e6 / 8
        for name, files in (("CT", ct), ("DX", dx)):
            if a.only and a.only != name:
                continue
            dsecs, dbytes, dapp, dlink = run_dxhub(net, work, name, files, proxy_opts, a.mbit)
            if a.no_orthanc:
                osecs = obytes = oapp = olink = None
            else:
                osecs, obytes, oapp, olink = run_orthanc(net, work, name, files, proxy_opts, a.mbit)
            label = f"{len(files)}-slice CT series" if name == "CT" else f"{len(files)} CR/DX images"
            # the link's use: bytes on the wire over the transfer period (first
            # byte on the wire to the last instance durable at the receiver);
            # end to end: every byte sent over the whole delivery time
            results.append({"name": name, "label": label, "n": len(files), "dx_s": dsecs, "dx_bytes": dbytes,
                            "dx_app": dapp, "dx_util": dlink["bytes"] / (rate * dlink["secs"]),
                            "dx_e2e": dbytes / (rate * dsecs), "dx_link_s": dlink["secs"],
                            "or_s": osecs, "or_bytes": obytes, "or_app": oapp,
                            "or_util": olink["bytes"] / (rate * olink["secs"]) if olink else None,
                            "or_e2e": obytes / (rate * osecs) if osecs else None,
                            "or_link_s": olink["secs"] if olink else None})
    finally:
        for ns in (net.clinic, net.hub):
            kill_ns_processes(ns)
        net.delete()
        if os.environ.get("LINK_BENCH_KEEP"):
            log(f"(work directory kept: {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows, js = [], []

    def add(metric, unit, v, pv):
        ratio = (v / pv) if (pv not in (None, 0) and v is not None) else None
        js.append({"metric": metric, "value": round(v, 4) if v is not None else None, "unit": unit,
                   "peer": peer if pv is not None else None, "peer_value": round(pv, 4) if pv is not None else None,
                   "ratio": round(ratio, 4) if ratio is not None else None})
        rows.append((metric, unit, v, pv, ratio))

    for r in results:
        k = r["name"].lower()
        add(f"{k}_delivery_time", "s", r["dx_s"], r["or_s"])
        add(f"{k}_link_bytes", "MB", r["dx_bytes"] / 1e6, r["or_bytes"] / 1e6 if r["or_bytes"] else None)
        add(f"{k}_transfer_period", "s", r["dx_link_s"], r["or_link_s"])
        add(f"{k}_link_utilisation", "fraction", r["dx_util"], r["or_util"])
        add(f"{k}_end_to_end_utilisation", "fraction", r["dx_e2e"], r["or_e2e"])
        add(f"{k}_speedup_vs_peer", "x", (r["or_s"] / r["dx_s"]) if r["or_s"] else None, 1.0 if r["or_s"] else None)
    Path(a.out).write_text(json.dumps(js, indent=1) + "\n")

    log("")
    log(f"{'metric':<28} {'unit':<9} {'dxhub':>10} {'Orthanc':>10} {'ratio':>7}")
    for m, u, v, pv, ratio in rows:
        f = (lambda x: f"{x:10.3f}" if x is not None else f"{'-':>10}")
        log(f"{m:<28} {u:<9} {f(v)} {f(pv)} {(f'{ratio:7.3f}' if ratio is not None else '      -')}")
    log("")
    for r in results:
        if r["or_s"]:
            sp = r["or_s"] / r["dx_s"]
            log(f"target {r['label']}: >= 2x faster than Orthanc over the same link: {sp:.2f}x "
                f"({'met' if sp >= 2 else 'MISSED'})")
        log(f"target {r['label']}: >= 90% of the link for the bytes dxhub sends: {r['dx_util'] * 100:.1f}% "
            f"over the transfer period ({'met' if r['dx_util'] >= 0.9 else 'MISSED'}); "
            f"{r['dx_e2e'] * 100:.1f}% end to end, edge start-up and study marker included")
    log(f"results in {a.out}")


if __name__ == "__main__":
    main()

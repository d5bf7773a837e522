"""The edge↔hub link under faults: nothing acknowledged is lost, nothing
is stored twice, every byte is what a clean link delivers.

Two topologies, each a short run here (make test) and a long one in the
soak (tests/fault/soak_link.sh sets DXHUB_SOAK_SECONDS; those tests are
skipped otherwise):

  proxy   edge → tests/fault/faultproxy.py on 127.0.0.1 (20 ms each way,
          jitter, a connection reset every ~3 s, 1-3 s stalls every ~5 s)
          → hub.
  netns   the edge and its modality in one network namespace, the hub in
          another, joined by a veth pair shaped by tbf (20 Mbit/s); the link
          is cut (ip link set down) for seconds at a time.  Root only; the
          namespaces are always deleted.

Meanwhile, at random moments, the edge and the hub are each killed with
SIGKILL and restarted (each at least once, repeatedly in the soak), the
proxy freezes all forwarding for 1-4 s (SIGUSR1) or resets every
connection at once (SIGUSR2), and in namespaces the link is cut; storescu
and `dxhub push` keep sending, spread over the faults (a batch the edge did
not acknowledge is sent again later, as a modality would; acknowledged
files are sent again too, as a modality that missed the answer would).  Afterwards, with the faults still on (the proxy) or the link
restored (netns):

  - every instance the edge acknowledged to its sender (storescu Success,
    push "queued") is at the hub exactly once (one record per SOP Instance
    UID, no conflicting copy);
  - its digest at the hub is the one a clean, fault-free run of the same
    files gives (the same link-compressed bytes: nothing torn, nothing
    resumed at the wrong offset), the bytes the hub serves hash to it, and
    its pixels decode to the original's;
  - the spool is empty: `dxhub edge --status` shows 0 waiting, no marker,
    nothing refused.
"""
import collections
import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import threading
import time
import warnings

import numpy as np
import pydicom
import pytest

from edgeutil import (PY, REPO, Edge, FaultProxy, Hub, NetPair, allow, corpus_root, free_port, kill_ns_processes,
                      storescu, study_instances, wait_for)

warnings.filterwarnings("ignore")

SOAK = float(os.environ.get("DXHUB_SOAK_SECONDS", "0") or 0)
SEED = int(os.environ.get("DXHUB_FAULT_SEED", "0") or 0) or random.randrange(1 << 30)

# corpus files with SOP Instance UIDs of their own, in several syntaxes
CORPUS = ["dicom/explicit_le/CT_small.dcm", "dicom/jpeg_baseline_50/SC_rgb_dcmtk_+eb+cy+np.dcm",
          "dicom/rle_5/SC_rgb_rle_16bit.dcm", "dicom/j2k_lossless_90/US1_J2KR.dcm",
          "dicom/explicit_le/US1_UNCR.dcm", "dicom/implicit_le/gdcm-US-ALOKA-16.dcm"]


def dataset_offset(raw):
    (glen,) = struct.unpack("<I", raw[140:144])
    return 144 + glen


# --------------------------------------------------------------------------
# the data: synthetic CT series (distinct UIDs) plus corpus files

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("faultdata")
    files = []
    n_series, slices = (4, 30) if SOAK else (2, 16)
    for k in range(n_series):
        out = d / f"ct{k}"
        subprocess.run([PY, REPO / "samples" / "gen_ct_series.py", "--slices", str(slices), "--out", out,
                        "--name", f"fault{k}", "--seed", str(100 + k)], check=True, capture_output=True)
        files += sorted(out.glob("*.dcm"))
    root = corpus_root()
    files += [root / c for c in CORPUS]
    sop = {}
    for f in files:
        ds = pydicom.dcmread(str(f), stop_before_pixels=True, force=True)
        sop[f] = str(ds.SOPInstanceUID)
    assert len(set(sop.values())) == len(files)
    return files, sop


NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def split_methods(files, rng):
    """Each file goes by storescu or by push (fixed per file, so the
    reference run can use the same path); compressed ones by push (storescu
    would need a presentation context per syntax: test_edge_e2e covers it)."""
    return {f: "push" if not is_native(f) or rng.random() < 0.35 else "storescu" for f in files}


def is_native(f):
    return str(pydicom.dcmread(str(f), stop_before_pixels=True).file_meta.TransferSyntaxUID) in NATIVE


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """Digests of a clean run: a hub and an edge on 127.0.0.1, no faults;
    each file sent both ways (storescu and push) to two hubs."""
    files, sop = dataset
    d = tmp_path_factory.mktemp("faultref")
    out, errors = {}, []

    def one(how):
        try:
            out[how] = reference_run(d, how, files, sop)
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)
    threads = [threading.Thread(target=one, args=(how,)) for how in ("storescu", "push")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def reference_run(d, how, files, sop):
    hub = Hub(d / f"hub-{how}", d, stable_seconds=600)
    (hub.data / "keys").mkdir(parents=True)
    edge = Edge(d / f"edge-{how}", hub.endpoint, hub.key_file, d)
    allow(hub.keys_dir, "edge:ref", edge.make_key())
    try:
        hub.start()
        edge.start()
        if how == "storescu":
            native = [f for f in files if is_native(f)]
            ok, r = storescu("127.0.0.1", edge.dicom_port, native)
            assert all(ok.values()), r.stderr.decode()[-2000:]
            rest = [f for f in files if f not in native]  # compressed: always pushed (split_methods)
            rc, queued, text = edge.push(rest)
            assert len(queued) == len(rest), text
        else:
            rc, queued, text = edge.push(files)
            assert len(queued) == len(files), text
        wait_for(edge.drained, 60, what="the reference run's spool to empty")
        digests = hub_digests(hub)
    finally:
        edge.stop()
        hub.stop()
    return {f: digests[sop[f]] for f in files}


def hub_digests(hub):
    """{sop: digest} of every instance at the hub, asserting exactly once
    and no conflicting copy."""
    seen = collections.Counter()
    dg = {}
    for st in hub.studies():
        uid = st["0020000D"]["Value"][0]
        for sop, d in study_instances(hub.study(uid)):
            seen[sop] += 1
            assert not d.get("conflict"), f"conflicting copy of {sop}"
            dg[sop] = d["digest"]
    dup = [s for s, n in seen.items() if n > 1]
    assert not dup, f"stored more than once: {dup}"
    return dg


# --------------------------------------------------------------------------
# the scenario

class Scenario:
    def __init__(self, base, files, sop, methods, rng, duration, net=None, proxy_opts=None):
        self.base, self.files, self.sop, self.methods, self.rng = base, files, sop, methods, rng
        self.duration = duration
        self.net = net
        self.acked = {}  # file → how it was acknowledged
        self.resent = 0
        self.log = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        if net:
            self.hub = Hub(base / "hub", base, stable_seconds=600, ns=net.hub, bind=NetPair.HUB_IP)
            hub_ep = self.hub.endpoint
            self.proxy = None
        else:
            self.hub = Hub(base / "hub", base, stable_seconds=600)
            pport = free_port()
            self.proxy = FaultProxy(f"127.0.0.1:{pport}", f"127.0.0.1:{self.hub.edge_port}", base,
                                    stats=str(base / "proxy.json"), seed=rng.randrange(1 << 30),
                                    **(proxy_opts or {}))
            hub_ep = f"tcp://127.0.0.1:{pport}"
        (self.hub.data / "keys").mkdir(parents=True)
        self.edge = Edge(base / "edge", hub_ep, self.hub.key_file, base, ns=net.clinic if net else None)
        allow(self.hub.keys_dir, "edge:faultclinic", self.edge.make_key())

    def note(self, what):
        self.log.append(f"{time.monotonic() - self.t0:7.2f} {what}")

    def start(self):
        self.t0 = time.monotonic()
        self.chaos_end = self.t0 + self.duration
        self.hub.start()
        if self.proxy:
            self.proxy.start()
        self.edge.start()

    def restart(self, role):
        proc = self.hub if role == "hub" else self.edge
        for attempt in range(20):
            try:
                proc.start()
                return
            except RuntimeError:
                time.sleep(0.5)  # the port may still be held for a moment
        raise RuntimeError(f"{role} would not restart:\n{proc.proc.log_tail()}")

    # modalities and clinic staff: keep sending what is not acknowledged yet,
    # spread over the faults; then send acknowledged files again (a modality
    # that never saw the answer does that) until the faults end
    def sender(self):
        pending = list(self.files)
        self.rng.shuffle(pending)
        pace = self.duration * 0.6 / max(1, (len(pending) + 7) // 8)
        while not self.stop.is_set() and time.monotonic() < self.chaos_end + 60:
            if not pending:
                if time.monotonic() > self.chaos_end or not self.acked:
                    break
                with self.lock:
                    pending = self.rng.sample(sorted(self.acked), min(4, len(self.acked)))
                self.resent += len(pending)
            batch, pending = pending[:8], pending[8:]
            by = collections.defaultdict(list)
            for f in batch:
                by[self.methods[f]].append(f)
            again = []
            if by["storescu"]:
                try:
                    ok, _ = storescu("127.0.0.1", self.edge.dicom_port, by["storescu"], ns=self.edge.ns, timeout=120)
                except subprocess.TimeoutExpired:
                    ok = {}
                for f in by["storescu"]:
                    if ok.get(str(f)):
                        with self.lock:
                            self.acked[f] = "storescu"
                    else:
                        again.append(f)
            if by["push"]:
                rc, queued, _ = self.edge.push(by["push"], priority=self.rng.choice(["routine", "urgent", "stat"]))
                q = set(queued)
                for f in by["push"]:
                    if str(f) in q:
                        with self.lock:
                            self.acked[f] = "push"
                    else:
                        again.append(f)
            pending += again
            time.sleep(pace if time.monotonic() < self.chaos_end else 0.3 if again else 0)
        return [f for f in pending if f not in self.acked]

    def chaos(self):
        """Until the duration is over (and each kind of fault happened once):
        SIGKILL and restart the edge or the hub, stall or reset the proxy, or
        cut the link in namespaces, at random moments."""
        kinds = ["edge", "hub", "link"] if self.net else ["edge", "hub", "stall", "reset"]
        first = self.rng.sample(kinds, len(kinds))  # each fault at least once, in random order
        while first or time.monotonic() < self.chaos_end:
            time.sleep(self.rng.uniform(1.0, 3.0))
            what = first.pop() if first else self.rng.choice(kinds)
            if what == "link":
                self.net.cut()
                self.note("link down")
                time.sleep(self.rng.uniform(1.0, 4.0))
                self.net.restore()
                self.note("link up")
            elif what == "stall":  # the proxy forwards nothing for a while (SIGUSR1 toggles)
                self.proxy.signal(signal.SIGUSR1)
                self.note("proxy stalled")
                time.sleep(self.rng.uniform(1.0, 4.0))
                self.proxy.signal(signal.SIGUSR1)
                self.note("proxy flowing")
            elif what == "reset":  # every connection through the proxy reset at once
                self.proxy.signal(signal.SIGUSR2)
                self.note("proxy reset the connections")
            else:
                proc = self.hub if what == "hub" else self.edge
                proc.kill()
                self.note(f"SIGKILL {what}")
                time.sleep(self.rng.uniform(0.2, 1.5))
                self.restart(what)
                self.note(f"restarted {what}")

    def run(self):
        self.start()
        send_left = []
        t = threading.Thread(target=lambda: send_left.extend(self.sender()), daemon=True)
        t.start()
        try:
            self.chaos()
        finally:
            # the chaos is over: every process up; send what is still unacknowledged
            for role, proc in (("hub", self.hub), ("edge", self.edge)):
                if not proc.proc.alive():
                    self.restart(role)
            t.join(120)
            self.stop.set()
        if self.net:
            self.net.restore()
        left = list(send_left)
        if left:
            self.note(f"resending {len(left)} unacknowledged files")
            for f in left:
                if self.methods[f] == "storescu":
                    ok, _ = storescu("127.0.0.1", self.edge.dicom_port, [f], ns=self.edge.ns, timeout=120)
                    if ok.get(str(f)):
                        self.acked[f] = "storescu"
                else:
                    _, queued, _ = self.edge.push([f])
                    if queued:
                        self.acked[f] = "push"

    def close(self):
        for p in (self.edge, self.hub):
            p.stop()
        if self.proxy:
            self.proxy.stop()


def verify(sc, reference, tmp, drain_timeout):
    """The invariants, after the faults."""
    report = "\n".join(sc.log)
    wait_for(sc.edge.drained, drain_timeout,
             what=f"the spool to empty after the faults\n{report}\n{sc.edge.status_text()}")
    st = sc.edge.status()
    assert st["waiting"] == 0 and st["refused"] == 0 and not st["markers"], st["text"]
    digests = hub_digests(sc.hub)  # exactly once, no conflicts
    assert len(sc.acked) >= len(sc.files) * 0.9, f"only {len(sc.acked)} of {len(sc.files)} acknowledged\n{report}"
    missing = [str(f) for f in sc.acked if sc.sop[f] not in digests]
    assert not missing, f"acknowledged but not at the hub: {missing}\n{report}"
    for f, how in sc.acked.items():
        sop = sc.sop[f]
        assert digests[sop] == reference[how][f], f"{f} ({how}): not the bytes a clean link delivers\n{report}"
    # the bytes served hash to the digest, and decode to the original pixels
    for f in sc.acked:
        sop = sc.sop[f]
        raw = sc.hub.instance_file(sop)
        assert raw and hashlib.sha256(raw[dataset_offset(raw):]).hexdigest() == digests[sop], f
        if f.parent.name.startswith("ct"):
            got = tmp / "hub.dcm"
            got.write_bytes(raw)
            a = pydicom.dcmread(str(f)).pixel_array
            b = pydicom.dcmread(str(got)).pixel_array
            assert np.array_equal(a, b), f"{f}: pixels differ"
    return digests


def kills(sc, role):
    return sum(1 for l in sc.log if f"SIGKILL {role}" in l)


# --------------------------------------------------------------------------
# (a) the fault proxy on 127.0.0.1

PROXY_FAULTS = dict(delay=20, jitter=5, drop_every=3, stall_every=5, stall_for="1:3")


def run_proxy(dataset, reference, tmp, duration, rng):
    files, sop = dataset
    sc = Scenario(tmp, files, sop, split_methods(files, rng), rng, duration, proxy_opts=PROXY_FAULTS)
    try:
        sc.run()
        verify(sc, reference, tmp, drain_timeout=120)
        stats = json.loads((tmp / "proxy.json").read_text())
        sc.note(f"proxy: {stats}")
        assert stats["drops"] >= 1, stats
        assert kills(sc, "edge") >= 1 and kills(sc, "hub") >= 1, sc.log
        assert any("proxy stalled" in l for l in sc.log), sc.log
    except BaseException:
        print(f"seed {SEED}\n" + "\n".join(sc.log))
        raise
    finally:
        sc.close()


def test_proxy_faults_and_kills_lose_nothing(dataset, reference, tmp_path):
    run_proxy(dataset, reference, tmp_path, 12, random.Random(SEED))


@pytest.mark.skipif(not SOAK, reason="soak: tests/fault/soak_link.sh (DXHUB_SOAK_SECONDS)")
def test_soak_proxy(dataset, reference, tmp_path):
    run_proxy(dataset, reference, tmp_path, SOAK, random.Random(SEED + 1))


# --------------------------------------------------------------------------
# (b) network namespaces: veth + tbf, link cuts

def run_netns(dataset, reference, tmp, duration, rng):
    files, sop = dataset
    net = NetPair()
    sc = None
    try:
        net.create(rate_mbit=20)
        sc = Scenario(tmp, files, sop, split_methods(files, rng), rng, duration, net=net)
        sc.run()
        verify(sc, reference, tmp, drain_timeout=120)
        assert kills(sc, "edge") >= 1 and kills(sc, "hub") >= 1, sc.log
        assert any("link down" in l for l in sc.log), sc.log
    except BaseException:
        print(f"seed {SEED}\n" + ("\n".join(sc.log) if sc else ""))
        raise
    finally:
        if sc:
            sc.close()
        for ns in (net.clinic, net.hub):
            kill_ns_processes(ns)
        net.delete()
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        assert net.clinic not in r.stdout and net.hub not in r.stdout, "namespaces left behind"


needs_netns = pytest.mark.skipif(not NetPair.available(), reason="network namespaces need root (CI runs as root)")


@needs_netns
def test_netns_link_cuts_and_kills_lose_nothing(dataset, reference, tmp_path):
    run_netns(dataset, reference, tmp_path, 10, random.Random(SEED + 2))


@needs_netns
@pytest.mark.skipif(not SOAK, reason="soak: tests/fault/soak_link.sh (DXHUB_SOAK_SECONDS)")
def test_soak_netns(dataset, reference, tmp_path):
    run_netns(dataset, reference, tmp_path, SOAK, random.Random(SEED + 3))

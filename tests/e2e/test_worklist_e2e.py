"""The reading worklist end to end, every part a real process: `dxhub serve`
(--lease-seconds 3), two clinic gateways (`dxhub edge`, fed by `dxhub push`)
and headless readers (`dxhub reader --json`), each with its own CURVE key
allowed as reader:<id> and a line in the hub's readers file.

What this proves:

(a) priority and qualification: 200 routine CT studies are queued at the
    hub first; then a STAT ECG is pushed at a clinic.  A CT-only reader is
    never offered the ECG (it gets a CT); the ECG-capable attending, who may
    read CT too, is offered the STAT ECG before any of the 200 CTs.
(b) leases: a reader that claimed a task (`--take 1 --hold 60`, sending
    heartbeats) is killed with SIGKILL; its lease lapses (3 s) and the same
    task — same id — is offered to the next qualified reader.
(c) two-level review (审核): a resident's draft goes to review; an attending
    is offered it with review:true, reads it and signs it — a report whose
    exact bytes carry an SM2/SM3 signature by the attending's certificate
    from the facility CA the hub trusts (state signed; an unsigned "sign"
    is refused) — or returns it: back to the resident, who holds it again
    and re-drafts.

Readers are kept apart by modality (CT/ECG for (a), MR for (b), NM for
(c)) so the scenarios share one hub without taking each other's tasks.
"""
import copy
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from edgeutil import Edge, Proc, allow, corpus_root, dxhub_bin, keygen, run, wait_for

N_CT = 200
LEASE_SECONDS = 3
FACILITY = "县医院影像中心"
PASS = "correct horse battery staple"

READERS = """\
# id      seniority  modalities  kinds        facilities  max
ct-only   attending  CT          imaging      *           5
att-ecg   attending  CT,ECG      imaging,ecg  *           5
mr-a      attending  MR          imaging      *           2
mr-b      attending  MR          imaging      *           2
res-nm    resident   NM          imaging      *           4
att-nm    attending  NM          imaging      *           4
"""


def reader_ids():
    return [l.split()[0] for l in READERS.splitlines() if l.strip() and not l.startswith("#")]


class WorklistHub:
    """`dxhub serve` on ephemeral ports with its keys, readers file and a
    short lease; the ports come from its ready line."""

    READY = (r"dxhub serve: ready .*http=[0-9.]+:(\d+) edge=(tcp://[0-9.]+:\d+) "
             r"readers=(tcp://[0-9.]+:\d+) .*key=(\S+)")

    def __init__(self, base):
        self.base = Path(base)
        self.keys = self.base / "hubkeys"
        self.keys.mkdir(parents=True, exist_ok=True)
        self.readers_file = self.base / "readers.conf"
        self.readers_file.write_text(READERS)
        self.proc = Proc([dxhub_bin(), "serve", "--data", self.base / "hub", "--keys", self.keys,
                          "--readers", self.readers_file, "--lease-seconds", LEASE_SECONDS,
                          "--stable-seconds", 600, "--open-dicom", "--dicom-port", 0, "--http-port", 0,
                          "--edge-port", 0, "--reader-port", 0, "--peer-port", 0],
                         self.base / "hub.log", self.READY)

    def start(self):
        m = self.proc.start(30)
        self.http_port = int(m.group(1))
        self.edge_ep, self.reader_ep = m.group(2), m.group(3)
        self.key_file = self.keys / "hub.pub"
        return self

    def stop(self):
        self.proc.stop()

    def trust(self, ca_dir):
        """The consortium trust list: the facility CA's certificate and CRL."""
        (self.keys / "trust").mkdir(exist_ok=True)
        for f in ("ca.pem", "crl.pem"):
            shutil.copyfile(ca_dir / f, self.keys / "trust" / f)

    def get_json(self, path):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            return json.loads(r.read())

    def study_states(self):
        """{study uid: dxhub state} of every study (paged)."""
        out, off = {}, 0
        while True:
            j = self.get_json(f"/api/v1/studies?limit=1000&offset={off}")
            for s in j["studies"]:
                out[s["0020000D"]["Value"][0]] = s["dxhub"]["state"]
            off += len(j["studies"])
            if not j["studies"] or off >= j["total"]:
                return out


class World:
    def __init__(self, base):
        self.base = base
        self.hub = WorklistHub(base)
        self.rkeys = base / "readerkeys"
        for rid in reader_ids():
            allow(self.hub.keys, f"reader:{rid}", keygen(self.rkeys, rid))
        self.edges = []
        # the facility CA (trusted by the hub) and the attending's signing certificate
        self.pass_file = base / "pass.txt"
        self.pass_file.write_text(PASS + "\n")
        for args in (["--ca", "--facility", FACILITY, "--keys", base / "ca"],
                     ["--reader", "att-nm", "--name", "Dr Att", "--role", "attending", "--facility", FACILITY,
                      "--ca", base / "ca", "--keys", base / "pki", "--passphrase-file", self.pass_file]):
            r = run([dxhub_bin(), "keygen", *args])
            assert r.returncode == 0, r.stderr.decode()
        self.hub.trust(base / "ca")

    def allow_edge(self, facility):
        """The clinic's keypair, allowed before the hub starts (no SIGHUP needed)."""
        data = self.base / f"edge-{facility}"
        data.mkdir(parents=True, exist_ok=True)
        allow(self.hub.keys, f"edge:{facility}", keygen(data / "keys", "edge"))

    def add_edge(self, facility):
        e = Edge(self.base / f"edge-{facility}", self.hub.edge_ep, self.hub.key_file, self.base,
                 extra=("--facility", facility))
        e.make_key()
        self.edges.append(e)
        return e

    def reader(self, rid, *args, timeout=90):
        """Run `dxhub reader --json` as rid; (exit status, [JSON lines], stderr)."""
        r = run([dxhub_bin(), "reader", "--hub", self.hub.reader_ep, "--hub-key", self.hub.key_file,
                 "--keys", self.rkeys, "--name", rid, "--json", *args], timeout=timeout)
        lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
        return r.returncode, lines, r.stderr.decode("utf-8", "replace")

    def reader_popen(self, rid, *args):
        return subprocess.Popen([dxhub_bin(), "reader", "--hub", self.hub.reader_ep, "--hub-key",
                                 str(self.hub.key_file), "--keys", str(self.rkeys), "--name", rid, "--json",
                                 *[str(a) for a in args]],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def new_uids(ds, tag):
    ds.StudyInstanceUID = f"2.25.{tag}1"
    ds.SeriesInstanceUID = f"2.25.{tag}2"
    ds.SOPInstanceUID = f"2.25.{tag}3"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds.StudyInstanceUID


def make_studies(src, out_dir, n, base_tag):
    """n one-instance studies made from src with fresh UIDs; [(study uid, path)]."""
    out_dir.mkdir(parents=True, exist_ok=True)
    orig = pydicom.dcmread(str(src))
    made = []
    for i in range(n):
        ds = copy.deepcopy(orig)
        uid = new_uids(ds, f"{base_tag}{i:04d}")
        p = out_dir / f"{i:04d}.dcm"
        ds.save_as(str(p), write_like_original=True)
        made.append((uid, p))
    return made


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("worklist")
    w = World(base)
    try:
        w.allow_edge("clinic1")
        w.allow_edge("clinic2")
        w.hub.start()
        w.add_edge("clinic1").start()
        w.add_edge("clinic2").start()
        yield w
    finally:
        for e in w.edges:
            e.kill()
        w.hub.proc.kill()


def dataset_digest(path):
    """SHA-256 of the data set bytes after the File Meta group (hub/digest.h)."""
    raw = Path(path).read_bytes()
    assert raw[128:132] == b"DICM" and raw[132:136] == b"\x02\x00\x00\x00" and raw[136:138] == b"UL"
    (glen,) = struct.unpack("<I", raw[140:144])
    return hashlib.sha256(raw[144 + glen:]).hexdigest()


def signed_report(world, task, fetched_dir, out, supersedes=None):
    """A report for the task (every instance read, by digest), signed with
    `dxhub sign` — an addendum when it supersedes a signed report id;
    returns (report path, signature, chain, report id)."""
    rid = f"rpt-{task['task']}-{'addendum' if supersedes else 'signed'}"
    doc = {
        "format": "dxhub-report/1", "report_id": rid, "version": task["version"] + (1 if supersedes else 0),
        "supersedes": supersedes,
        "study_uid": task["study"], "patient_id": task["patient_id"], "origin_facility": "clinic2",
        "reading_facility": FACILITY, "reader": {"id": "att-nm", "role": "attending", "name": "Dr Att"},
        "findings": "未见异常", "impression": "normal", "critical": False,
        "instances": {p.stem: dataset_digest(p) for p in sorted(Path(fetched_dir).glob("*.dcm"))},
        "times": {"reported": "2025-06-01T08:30:00Z"},
        "recognition": {"exam_type": "NM", "scope": None, "valid_until": None},
    }
    assert doc["instances"]
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    r = run([dxhub_bin(), "sign", "--key", world.base / "pki" / "att-nm.key", "--cert",
             world.base / "pki" / "att-nm.chain.pem", "--passphrase-file", world.pass_file, out])
    assert r.returncode == 0, r.stderr.decode()
    return out, Path(f"{out}.sig"), Path(f"{out}.chain.pem"), rid


def queued(world, uids):
    states = world.hub.study_states()
    return all(states.get(u) == "queued" for u in uids) and states


# --------------------------------------------------------------------- (a)

def test_stat_ecg_is_offered_first_over_200_queued_routine_cts(world):
    root = corpus_root()
    t0 = time.monotonic()
    cts = make_studies(root / "dicom" / "explicit_le" / "CT_small.dcm", world.base / "cts", N_CT, 7001)
    edge = world.edges[0]
    rc, q, out = edge.push([p for _, p in cts], priority="routine")
    assert rc == 0 and len(q) == N_CT, out
    ct_uids = [u for u, _ in cts]
    wait_for(lambda: queued(world, ct_uids), 60, interval=0.3, what=f"{N_CT} routine CT studies queued at the hub")
    t_cts = time.monotonic() - t0

    ecg = root / "ecg" / "dicom" / "waveform_ecg.dcm"
    ecg_uid = str(pydicom.dcmread(str(ecg), stop_before_pixels=True).StudyInstanceUID)
    rc, q, out = edge.push([ecg], priority="stat")
    assert rc == 0 and len(q) == 1, out
    wait_for(lambda: queued(world, [ecg_uid]), 30, interval=0.1, what="the STAT ECG queued")

    # A CT-only reader is not qualified for the ECG: it gets a CT.
    rc, lines, err = world.reader("ct-only", "--take", "1", "--release")
    assert rc == 0, err
    assert lines[0]["modality"] == "CT" and lines[0]["priority"] == "routine" and lines[0]["study"] in ct_uids
    assert lines[1] == {"task": lines[0]["task"], "released": True}

    # The ECG-capable attending (CT too) is offered the STAT ECG before any CT.
    rc, lines, err = world.reader("att-ecg", "--take", "3", "--fetch-to", world.base / "att-ecg", "--release")
    assert rc == 0, err
    offered = [l for l in lines if "study" in l]
    assert len(offered) == 3, lines
    first = offered[0]
    assert first["study"] == ecg_uid, f"first offer was {first}, not the STAT ECG"
    assert first["priority"] == "stat" and first["kind"] == "ecg" and first["modality"] == "ECG"
    assert all(l["modality"] == "CT" and l["priority"] == "routine" for l in offered[1:])
    # its study arrived whole: the bytes the hub stored, digest checked by the reader
    f = first["fetched"]
    assert f["instances"] == 1 and f["fetched"] == 1
    got = list(Path(f["dir"]).glob("*.dcm"))
    assert len(got) == 1 and pydicom.dcmread(str(got[0])).StudyInstanceUID == ecg_uid
    # each read is on the audit trail, named by reader and patient: a listing and
    # one record per instance (not per chunk), as `dxhub audit` shows them
    ecg_patient = str(pydicom.dcmread(str(ecg), stop_before_pixels=True).PatientID)

    def reads():
        r = run([dxhub_bin(), "audit", "--data", world.base / "hub", "--json", "--who", "reader:att-ecg",
                 "--what", "read-study,read-instance", "--patient", ecg_patient])
        recs = [json.loads(line) for line in r.stdout.decode().splitlines()]
        return recs if len(recs) >= 2 else None
    recs = wait_for(reads, 10, what="the reader's reads on the audit trail")
    assert sorted(r["what"] for r in recs) == ["read-instance", "read-study"], recs
    assert all(r["study"] == ecg_uid and r["patient"] == ecg_patient for r in recs)
    print(f"{N_CT} CT studies made, pushed and queued in {t_cts:.1f} s")


# --------------------------------------------------------------------- (b)

def test_killed_reader_loses_its_lease_and_the_task_goes_to_another(world):
    root = corpus_root()
    (uid, path), = make_studies(root / "dicom" / "explicit_le" / "MR_small.dcm", world.base / "mr", 1, 7002)
    rc, q, out = world.edges[1].push([path], priority="urgent")
    assert rc == 0, out
    wait_for(lambda: queued(world, [uid]), 30, interval=0.1, what="the MR study queued")

    a = world.reader_popen("mr-a", "--take", "1", "--hold", "60")
    try:
        line = a.stdout.readline()
        assert line, a.stderr.read().decode()
        held = json.loads(line)
        assert held["study"] == uid and held["state"] == "claimed"
        time.sleep(LEASE_SECONDS + 0.5)  # heartbeats keep it: nobody else may have it meanwhile
        rc, lines, err = world.reader("mr-b", "--take", "1", "--wait", "1")
        assert rc == 1 and lines == [] and "no task offered" in err, (lines, err)
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        t_kill = time.monotonic()
        rc, lines, err = world.reader("mr-b", "--take", "1", "--wait", "20", "--release")
        waited = time.monotonic() - t_kill
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        a.stdout.close()
        a.stderr.close()
    assert rc == 0, err
    assert lines[0]["task"] == held["task"] and lines[0]["study"] == uid, lines
    assert waited < LEASE_SECONDS + 10, f"the task came back only after {waited:.1f} s"


# --------------------------------------------------------------------- (c)

def test_resident_draft_goes_to_review_then_signed_or_returned(world, tmp_path):
    root = corpus_root()
    studies = make_studies(root / "dicom" / "jpeg_extended_51" / "JPGExtended.dcm", world.base / "nm", 2, 7003)
    rc, q, out = world.edges[1].push([p for _, p in studies], priority="routine")
    assert rc == 0, out
    uids = [u for u, _ in studies]
    wait_for(lambda: queued(world, uids), 30, interval=0.1, what="the NM studies queued")
    draft = tmp_path / "draft.json"
    draft.write_bytes('{"findings":"未见异常","impression":"normal"}\n'.encode())
    final = tmp_path / "final.json"
    final.write_bytes(b'{"findings":"no abnormality","impression":"normal","signed":true}\n')

    # the resident reads both and drafts; a resident may not sign
    rc, lines, err = world.reader("res-nm", "--take", "2", "--fetch-to", tmp_path / "res")
    assert rc == 0 and len(lines) == 2, (lines, err)
    tasks = {l["task"]: l for l in lines}
    assert all(not l["review"] for l in lines)
    t1, t2 = sorted(tasks)
    rc, lines, err = world.reader("res-nm", "--task", str(t1), "--submit", final, "--action", "sign")
    assert rc == 1 and "refused" in lines[0]["error"], (lines, err)
    for t in (t1, t2):
        rc, lines, err = world.reader("res-nm", "--task", str(t), "--submit", draft, "--action", "draft")
        assert rc == 0, (lines, err)
        assert lines[0]["submitted"]["state"] == "review"

    # an attending is offered a draft for review and reads it ...
    rc, lines, err = world.reader("att-nm", "--take", "1", "--fetch-to", tmp_path / "att")
    assert rc == 0, (lines, err)
    signed = lines[0]
    assert signed["review"] is True and signed["task"] in (t1, t2) and signed["state"] == "claimed"
    tid = str(signed["task"])
    # ... "sign" without a signature is refused; with the report signed it is accepted
    rc, lines, err = world.reader("att-nm", "--task", tid, "--submit", final, "--action", "sign")
    assert rc == 1 and "signature" in lines[0]["error"], (lines, err)
    report, sig, chain, rid = signed_report(world, signed, signed["fetched"]["dir"], tmp_path / "report.json")
    before = world.hub.get_json("/api/v1/tasks")
    rc, lines, err = world.reader("att-nm", "--task", tid, "--submit", report, "--sig", sig, "--chain", chain,
                                  "--action", "sign", "--report-id", rid)
    assert rc == 0, (lines, err)
    assert lines[0]["submitted"] == {"action": "sign", "report_id": rid, "state": "signed"}
    # the coordinator's view: one more signed task, and its arrival→signature time among the turnarounds
    after = world.hub.get_json("/api/v1/tasks")
    assert after["counts"]["signed"] == before["counts"]["signed"] + 1, (before["counts"], after["counts"])
    turned = (before["turnaround_s"] or {"signed": 0})["signed"]
    assert after["turnaround_s"]["signed"] == turned + 1, after["turnaround_s"]
    assert 0 <= after["turnaround_s"]["median"] <= after["turnaround_s"]["p90"] < 3600, after["turnaround_s"]
    # ... then adds a signed addendum to it (no claim: the signed task); the resident may not
    add, asig, achain, arid = signed_report(world, signed, signed["fetched"]["dir"], tmp_path / "addendum.json",
                                            supersedes=rid)
    addendum = ["--task", tid, "--submit", add, "--sig", asig, "--chain", achain, "--action", "addendum",
                "--report-id", arid]
    rc, lines, err = world.reader("res-nm", *addendum)
    assert rc == 1 and "addendum refused" in lines[0]["error"], (lines, err)
    rc, lines, err = world.reader("att-nm", *addendum)
    assert rc == 0, (lines, err)
    assert lines[0]["submitted"] == {"action": "addendum", "report_id": arid, "state": "signed"}, lines
    # ... and returns the other to its author
    rc, lines, err = world.reader("att-nm", "--take", "1", "--action", "return", "--reason", "描述不完整")
    assert rc == 0, (lines, err)
    returned = lines[0]
    assert returned["review"] is True and returned["task"] == ({t1, t2} - {signed["task"]}).pop()
    assert returned["submitted"]["state"] == "returned"
    # back with the resident: held already (no claim needed), re-drafted into review
    rc, lines, err = world.reader("res-nm", "--task", str(returned["task"]), "--fetch-to", tmp_path / "res",
                                  "--submit", draft, "--action", "draft")
    assert rc == 0, (lines, err)
    assert lines[0]["claimed"] is False, "the returned task should have been the resident's already"
    assert (lines[0]["returned"], lines[0]["returned_by"]) == ("描述不完整", "att-nm"), lines
    assert lines[0]["fetched"]["present"] == 1  # resumed: the file from the first read is kept
    assert lines[0]["submitted"]["state"] == "review"
    states = world.hub.study_states()
    assert states[tasks[signed["task"]]["study"]] == "signed"
    assert states[tasks[returned["task"]]["study"]] == "reported"


def test_hub_names_its_reader_link_and_committer_threads(world):
    """The worklist bench (and top, perf) tell the reader link's CPU from the
    committer's by these names: a rename would silently drop them from its
    per-thread figures."""
    pid = world.hub.proc.p.pid
    names = {(Path(f"/proc/{pid}/task") / t / "comm").read_text().strip() for t in os.listdir(f"/proc/{pid}/task")}
    assert {"dxhub-readers", "dxhub-wlcommit"} <= names, names

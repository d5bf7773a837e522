"""ECG triage end to end, every part a real process: `dxhub serve`, a
clinic's `dxhub edge` fed by `dxhub push`, and a headless ECG reader
(`dxhub reader --json`).  The ECGs come from samples/gen_ecg.py.

What this proves:

(a) STAT chest-pain ECGs are read first: two normal ECGs are pushed as
    routine and queued; then an ECG with marked ST elevation in II, III,
    aVF is pushed — also as routine, as a busy clinic would.  The hub
    measures it inside the transaction that makes its reading task, raises
    the task to STAT and stores the suggestion with it: the reader is
    offered it first, priority "stat", its "triage" saying "suspected STEMI
    pattern" and "not a diagnosis".  The normal ECGs stay routine with no
    suggestion.
(b) Bad signal goes back to the clinic at once: an ECG with a disconnected
    (flat) lead produces a repeat request in the clinic's inbox — `dxhub
    reports --edge-data` lists an "alert" for its task — without anyone
    reading it, and its task tells the reader the repeat was asked for.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from edgeutil import Edge, Proc, allow, dxhub_bin, keygen, run, wait_for

PY = "/usr/bin/python3"
GEN = Path(__file__).resolve().parents[2] / "samples" / "gen_ecg.py"
READERS = "ecg-att  attending  ECG  ecg  *  8\n"


class TriageWorld:
    READY = (r"dxhub serve: ready .*http=[0-9.]+:(\d+) edge=(tcp://[0-9.]+:\d+) "
             r"readers=(tcp://[0-9.]+:\d+) .*key=(\S+)")

    def __init__(self, base):
        self.base = Path(base)
        self.keys = self.base / "hubkeys"
        self.keys.mkdir(parents=True)
        (self.base / "readers.conf").write_text(READERS)
        self.rkeys = self.base / "readerkeys"
        allow(self.keys, "reader:ecg-att", keygen(self.rkeys, "ecg-att"))
        edge_data = self.base / "edge-clinic7"
        edge_data.mkdir()
        allow(self.keys, "edge:clinic7", keygen(edge_data / "keys", "edge"))
        self.hub = Proc([dxhub_bin(), "serve", "--data", self.base / "hub", "--keys", self.keys, "--readers",
                         self.base / "readers.conf", "--stable-seconds", 600, "--open-dicom", "--dicom-port", 0,
                         "--http-port", 0, "--edge-port", 0, "--reader-port", 0, "--peer-port", 0], self.base / "hub.log", self.READY)
        self.edge = None

    def start(self):
        m = self.hub.start(30)
        self.http_port = int(m.group(1))
        self.edge_ep, self.reader_ep = m.group(2), m.group(3)
        self.hub_key = self.keys / "hub.pub"
        self.edge = Edge(self.base / "edge-clinic7", self.edge_ep, self.hub_key, self.base,
                         extra=("--facility", "clinic7"))
        self.edge.make_key()
        self.edge.start()
        return self

    def stop(self):
        if self.edge:
            self.edge.kill()
        self.hub.kill()

    def study_states(self):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/api/v1/studies?limit=100", timeout=10) as r:
            j = json.loads(r.read())
        return {s["0020000D"]["Value"][0]: s["dxhub"]["state"] for s in j["studies"]}

    def queued(self, uids):
        states = self.study_states()
        return all(states.get(u) == "queued" for u in uids)

    def reader(self, *args, timeout=60):
        r = run([dxhub_bin(), "reader", "--hub", self.reader_ep, "--hub-key", self.hub_key, "--keys", self.rkeys,
                 "--name", "ecg-att", "--json", *args], timeout=timeout)
        lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
        return r.returncode, lines, r.stderr.decode("utf-8", "replace")

    def inbox(self):
        r = run([dxhub_bin(), "reports", "--edge-data", self.edge.data], timeout=30)
        return r.stdout.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("triage")
    ecgs = base / "ecgs"
    r = subprocess.run([PY, str(GEN), "--out", str(ecgs), "--tag", f"triage-{os.getpid()}", "--only", "normal",
                        "sweep03", "stemi_inferior", "flat_lead"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    w = TriageWorld(base)
    w.ecgs = {v: (ecgs / f"{v}.dcm", json.loads((ecgs / f"{v}.json").read_text())["study_uid"])
              for v in ("normal", "sweep03", "stemi_inferior", "flat_lead")}
    try:
        w.start()
        yield w
    finally:
        w.stop()


def push(world, variant, priority="routine"):
    path, uid = world.ecgs[variant]
    rc, queued, out = world.edge.push([path], priority=priority)
    assert rc == 0 and len(queued) == 1, out
    wait_for(lambda: world.queued([uid]), 30, interval=0.1, what=f"the {variant} ECG queued at the hub")
    return uid


def test_st_elevation_pushed_as_routine_is_read_first_as_stat(world):
    normal = [push(world, "normal"), push(world, "sweep03")]
    stemi = push(world, "stemi_inferior")
    rc, lines, err = world.reader("--take", "3", "--release")
    assert rc == 0, err
    offered = [l for l in lines if "study" in l]
    assert [l["study"] for l in offered] == [stemi] + normal, offered
    first = offered[0]
    assert first["priority"] == "stat" and first["kind"] == "ecg", first
    assert "suspected STEMI pattern" in first["triage"], first["triage"]
    assert "II" in first["triage"] and "aVF" in first["triage"]
    assert "not a diagnosis" in first["triage"]
    for l in offered[1:]:
        assert l["priority"] == "routine" and l["triage"] == "", l


def test_disconnected_lead_asks_the_clinic_to_repeat(world):
    flat = push(world, "flat_lead")
    # the clinic hears at once, before anybody reads it
    text = wait_for(lambda: "ecg-repeat-" in world.inbox() and world.inbox(), 30, interval=0.2,
                    what="the repeat request in the clinic's inbox")
    lines = text.splitlines()
    alerts = [l for l in lines if l.startswith("ALERT")]
    assert len(alerts) == 1 and "ecg-repeat-" in alerts[0], text
    # what the nurse reads: which ECG, and what to do (not a critical value)
    at = lines.index(alerts[0])
    assert lines[at + 1].strip().startswith("ECG, accession "), text
    assert lines[at + 2].strip().startswith("REQUEST: Please record this ECG again") and "V3 flat" in lines[at + 2]
    rc, lines, err = world.reader("--take", "4", "--release")
    assert rc == 0, err
    task = next(l for l in lines if l.get("study") == flat)
    assert task["priority"] == "routine", task
    assert alerts[0].split()[1] == f"ecg-repeat-{task['task']}"
    assert "V3 flat" in task["triage"] and "repeat requested" in task["triage"], task["triage"]

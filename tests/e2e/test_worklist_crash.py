"""The reader link sends an offer (TASK) before its record is durable — an
offer is a proposal — and announces a lease (CLAIMED) only after the commit
that holds it.  This kills the hub with SIGKILL while two readers (pyzmq,
each its own CURVE key) claim queued CT tasks as fast as the hub answers,
restarts it on the same store, and proves:

- every lease a reader was told about exists after the restart: that reader
  may read the task's study, and its HEARTBEAT counts at least as many
  leases as it was told it holds; the other reader may not read it;
- no task was announced as claimed to two readers;
- a task offered before the crash but not yet claimed can be claimed by the
  reader it was offered to — whether or not the offer's record reached the
  disk — or is already its own (a CLAIMED lost with the hub).

crash-a's CLAIMs carry its next READY ("ready": 3) and it never says READY
again; crash-b says READY after each CLAIMED: crash-a must still be offered
more than its first three tasks, with the same guarantees.
"""
import copy
import itertools
import json
import time
from pathlib import Path

import pydicom
import pytest
import zmq

from edgeutil import allow, corpus_root, keygen
from hubutil import Hub, storescu

N_STUDIES = 24
READERS = {"crash-a": "attending CT imaging * 100", "crash-b": "attending CT imaging * 100"}


def z85(path):
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.split()[0].encode()
    raise ValueError(path)


class Reader:
    """A DEALER speaking the reader protocol (hub.h) with its own key."""

    counter = itertools.count(1)

    def __init__(self, ctx, rid, keys, hub):
        self.rid = rid
        self.s = ctx.socket(zmq.DEALER)
        self.s.linger = 0
        self.s.curve_serverkey = z85(hub.keys / "hub.pub")
        self.s.curve_publickey = z85(keys / f"{rid}.pub")
        self.s.curve_secretkey = z85(keys / f"{rid}.key")
        self.s.connect(f"tcp://127.0.0.1:{hub.ready['readers']}")

    def send(self, cmd, **kw):
        self.s.send_multipart([cmd.encode(), json.dumps(dict(kw, v=1, req=next(self.counter))).encode()])

    def recv(self, timeout):
        if not self.s.poll(int(timeout * 1000)):
            return None
        f = self.s.recv_multipart()
        return f[0].decode(), json.loads(f[1])

    def ask(self, cmd, timeout=15, **kw):
        """Send and wait for the answer (skipping offers)."""
        self.send(cmd, **kw)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            a = self.recv(deadline - time.monotonic())
            if a and a[0] != "TASK":
                return a
        raise AssertionError(f"{self.rid}: no answer to {cmd}")


@pytest.fixture(scope="module")
def crash_hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("wlcrash")
    keys, rkeys = base / "hubkeys", base / "rkeys"
    keys.mkdir()
    for rid in READERS:
        allow(keys, f"reader:{rid}", keygen(rkeys, rid))
    (base / "readers.conf").write_text("".join(f"{rid} {line}\n" for rid, line in READERS.items()))
    hub = Hub(base / "hub", stable_seconds=1,
              extra=["--keys", str(keys), "--readers", str(base / "readers.conf"), "--lease-seconds", "600"])
    hub.keys, hub.rkeys, hub.base = keys, rkeys, base
    try:
        yield hub.start(30)
    finally:
        hub.close()


def queue_ct_studies(hub, n):
    src = pydicom.dcmread(str(corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"))
    files = []
    for i in range(n):
        ds = copy.deepcopy(src)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = f"2.25.8801{i:04d}1", f"2.25.8801{i:04d}2"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"2.25.8801{i:04d}3"
        p = hub.base / f"ct{i:04d}.dcm"
        ds.save_as(str(p), write_like_original=True)
        files.append(p)
    assert storescu(hub.dicom_port, files).succeeded
    deadline = time.monotonic() + 30
    while hub.get_json("/api/v1/tasks")["counts"]["queued"] < n:
        assert time.monotonic() < deadline, "the studies were not queued as tasks"
        time.sleep(0.2)


def test_hub_killed_while_readers_claim_keeps_every_lease_it_announced(crash_hub):
    hub = crash_hub
    queue_ct_studies(hub, N_STUDIES)
    ctx = zmq.Context()
    try:
        readers = [Reader(ctx, rid, hub.rkeys, hub) for rid in READERS]
        for r in readers:
            assert r.ask("HELLO")[0] == "WELCOME"
            r.send("READY", credit=3)
        told, offered = {}, {}  # task id -> the reader told it holds it / it was offered
        claims = set()  # CLAIMs sent: half the tasks at most
        held_back = []  # offers left unclaimed on purpose when the hub dies
        poller = zmq.Poller()
        for r in readers:
            poller.register(r.s, zmq.POLLIN)
        by_sock = {r.s: r for r in readers}

        def take(r, answer, respond):
            cmd, h = answer
            if cmd == "TASK":
                offered[h["task"]["id"]] = r.rid
                if respond and len(claims) >= N_STUDIES // 2:
                    held_back.append(h["task"]["id"])
                elif respond:
                    claims.add(h["task"]["id"])
                    ready = {"ready": 3} if r.rid == "crash-a" else {}
                    r.send("CLAIM", task=h["task"]["id"], **ready)
            elif cmd == "CLAIMED":
                tid = h["task"]["id"]
                assert told.get(tid, r.rid) == r.rid, f"task {tid} announced as claimed to two readers"
                told[tid] = r.rid
                if respond and r.rid != "crash-a":
                    r.send("READY", credit=3)

        # claim half the tasks; once a quarter are announced and an offer
        # beyond that half arrived (left unclaimed), kill the hub at once,
        # the other claims still in flight
        deadline = time.monotonic() + 30
        while not held_back or len(told) < N_STUDIES // 4:
            assert time.monotonic() < deadline, f"only {len(told)} claims in 30 s"
            for s, _ in poller.poll(1000):
                r = by_sock[s]
                take(r, r.recv(0), respond=True)
        hub.kill()
        a_offers = sum(1 for who in offered.values() if who == "crash-a")
        assert a_offers > 3, f"CLAIM with ready brought crash-a no offers beyond its first READY's ({a_offers})"
        for r in readers:  # what arrived before the hub died counts as told
            while (a := r.recv(0.3)) is not None:
                take(r, a, respond=False)
        for r in readers:
            r.s.close()

        hub.start(30)
        readers = {rid: Reader(ctx, rid, hub.rkeys, hub) for rid in READERS}
        for rid, r in readers.items():
            cmd, h = r.ask("HEARTBEAT")
            mine = [t for t, who in told.items() if who == rid]
            assert cmd == "HEARTBEAT" and h["leases"] >= len(mine), (rid, h, len(mine))
            for t in mine:
                assert r.ask("STUDY", task=t)[0] == "STUDY", f"{rid} was told it holds task {t}; it does not"
        other = {"crash-a": "crash-b", "crash-b": "crash-a"}
        for t, rid in told.items():
            assert readers[other[rid]].ask("STUDY", task=t)[0] == "NACK", f"task {t} readable by two readers"
        pending = [(t, rid) for t, rid in offered.items() if t not in told]
        assert held_back and all(t in dict(pending) for t in held_back), (held_back, pending)
        for t, rid in pending:
            cmd, h = readers[rid].ask("CLAIM", task=t)
            if cmd != "CLAIMED":  # only if the claim committed and its answer died with the hub
                assert cmd == "NACK" and readers[rid].ask("STUDY", task=t)[0] == "STUDY", (t, rid, cmd, h)
        for r in readers.values():
            r.s.close()
    finally:
        ctx.destroy(linger=0)

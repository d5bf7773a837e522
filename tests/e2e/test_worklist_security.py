"""Who may do what on the hub's ZeroMQ ports (DESIGN.md §5), against a real
`dxhub serve`, with pyzmq as the hostile (or confused) peer:

- a reader's key cannot push studies: on the edge port its OFFER, CHUNK,
  COMMIT and STUDY_DONE each get ERROR, and nothing is stored;
- an edge's key cannot take tasks: on the reader port HELLO, READY and
  CLAIM get ERROR, and a queued task is never offered to it;
- a key the hub does not know gets nothing at all: the CURVE handshake is
  refused (ZAP 400), no message is answered, `dxhub reader` with such a key
  says so and exits 1;
- garbage (a bad command frame, a missing or non-JSON header, a wrong "v",
  too many frames, a frame over the size limit, an unknown command) from an
  allowed key is answered ERROR and counted (/metrics
  dxhub_errors_total{kind="protocol"}), and the hub keeps serving.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import zmq
import zmq.utils.monitor

from edgeutil import Proc, allow, corpus_root, dxhub_bin, keygen, run, wait_for

READERS = "sec-reader attending CT imaging,ecg * 4\n"
BIG = 5 * 1024 * 1024  # over the 4 MiB data-frame limit (proto.h PROTO_MAX_DATA)


def z85(path):
    """The Z85 key in a .pub/.key file (its first non-comment token)."""
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.split()[0].encode()
    raise ValueError(path)


class SecHub:
    READY = (r"dxhub serve: ready dicom=[0-9.]+:(\d+) .*http=[0-9.]+:(\d+) edge=(tcp://[0-9.]+:\d+) "
             r"readers=(tcp://[0-9.]+:\d+) peers=(tcp://[0-9.]+:\d+)")

    def __init__(self, base):
        self.base = Path(base)
        self.keys = self.base / "hubkeys"
        self.keys.mkdir(parents=True)
        (self.base / "readers.conf").write_text(READERS)
        self.proc = Proc([dxhub_bin(), "serve", "--data", self.base / "hub", "--keys", self.keys,
                          "--readers", self.base / "readers.conf", "--stable-seconds", 1, "--open-dicom",
                          "--dicom-port", 0, "--http-port", 0, "--edge-port", 0, "--reader-port", 0,
                          "--peer-port", 0],
                         self.base / "hub.log", self.READY)

    def start(self):
        m = self.proc.start(30)
        self.dicom_port, self.http_port = int(m.group(1)), int(m.group(2))
        self.edge_ep, self.reader_ep, self.peer_ep = m.group(3), m.group(4), m.group(5)
        self.pub = z85(self.keys / "hub.pub")
        return self

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def errors(self, kind):
        code, body = self.get("/metrics")
        m = re.search(r'^dxhub_errors_total\{kind="%s"\} (\S+)$' % kind, body.decode(), re.M)
        return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("wlsec")
    h = SecHub(base)
    h.reader_keys = base / "rkeys"
    allow(h.keys, "reader:sec-reader", keygen(h.reader_keys, "sec-reader"))
    allow(h.keys, "edge:clinicS", keygen(base / "ekeys", "edge"))
    h.edge_key = (z85(base / "ekeys" / "edge.pub"), z85(base / "ekeys" / "edge.key"))
    h.reader_key = (z85(h.reader_keys / "sec-reader.pub"), z85(h.reader_keys / "sec-reader.key"))
    ctx = zmq.Context()
    h.ctx = ctx
    try:
        h.start()
        yield h
    finally:
        h.proc.kill()
        ctx.destroy(linger=0)


def dealer(hub, endpoint, keys, connect=True):
    s = hub.ctx.socket(zmq.DEALER)
    s.linger = 0
    s.curve_serverkey = hub.pub
    s.curve_publickey, s.curve_secretkey = keys
    if connect:
        s.connect(endpoint)
    return s


def header(**kw):
    kw.setdefault("v", 1)
    return json.dumps(kw).encode()


def answer(sock, timeout=5.0):
    """The next message as (command, header dict, [data frames]), or None."""
    if not sock.poll(int(timeout * 1000)):
        return None
    frames = sock.recv_multipart()
    return frames[0].decode(), json.loads(frames[1]), frames[2:]


def expect_error(sock, frames, timeout=5.0):
    sock.send_multipart(frames)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = answer(sock, deadline - time.monotonic())
        assert a is not None, f"no answer to {frames[0][:20]!r}"
        if a[0] != "TASK":
            assert a[0] == "ERROR", a
            assert a[1]["v"] == 1 and a[1]["error"]
            return a[1]
    raise AssertionError(f"no ERROR for {frames[0][:20]!r}")


# ----------------------------------------------------------------------------

def test_reader_key_cannot_push_studies(hub):
    data = (corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm").read_bytes()
    sop, study = "2.25.990011", "2.25.990012"
    auth0 = hub.errors("auth")
    s = dealer(hub, hub.edge_ep, hub.reader_key)
    try:
        digest = hashlib.sha256(data[132:]).hexdigest()
        e = expect_error(s, [b"OFFER", header(xfer=1, sop=sop, study=study, digest=digest, size=len(data))])
        assert "edge" in e["error"] and e["to"] == "OFFER"
        expect_error(s, [b"CHUNK", header(xfer=1, offset=0), data])
        expect_error(s, [b"COMMIT", header(xfer=1, digest=digest)])
        expect_error(s, [b"STUDY_DONE", header(study=study, instances=1, priority="stat")])
    finally:
        s.close()
    assert hub.get(f"/api/v1/instances/{sop}/file")[0] == 404
    assert hub.get(f"/api/v1/studies/{study}")[0] == 404
    assert hub.errors("auth") >= auth0 + 4


def test_edge_key_cannot_take_tasks(hub, tmp_path):
    # a study arrives over DICOM and becomes a queued task
    r = run(["storescu", "-aec", "DXHUB", "-aet", "MODALITY", "127.0.0.1", hub.dicom_port,
             corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"], timeout=60)
    assert r.returncode == 0, r.stderr.decode()

    def queued():
        code, body = hub.get("/api/v1/studies")
        return code == 200 and any(s["dxhub"]["state"] == "queued" for s in json.loads(body)["studies"])
    wait_for(queued, 20, what="the study to be queued")
    s = dealer(hub, hub.reader_ep, hub.edge_key)
    try:
        e = expect_error(s, [b"HELLO", header(req=1)])
        assert "reader" in e["error"] and e.get("req") == 1
        expect_error(s, [b"READY", header(credit=5)])
        expect_error(s, [b"CLAIM", header(req=2, task=1)])
        assert answer(s, 1.5) is None  # and no TASK ever comes
    finally:
        s.close()
    # while the allowed reader is offered it at once
    rc = run([dxhub_bin(), "reader", "--hub", hub.reader_ep, "--hub-key", hub.keys / "hub.pub",
              "--keys", hub.reader_keys, "--name", "sec-reader", "--take", "1", "--release", "--json"])
    assert rc.returncode == 0, rc.stderr.decode()
    assert json.loads(rc.stdout.decode().splitlines()[0])["modality"] == "CT"


def test_unknown_key_gets_nothing(hub, tmp_path):
    auth0 = hub.errors("auth")
    pub, sec = zmq.curve_keypair()
    for ep in (hub.reader_ep, hub.edge_ep):
        s = dealer(hub, ep, (pub, sec), connect=False)
        # the monitor first: a refused handshake happens once (no retry)
        mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        s.connect(ep)
        try:
            try:
                # a refused handshake leaves the DEALER without a peer, where a
                # blocking send would wait for ever
                s.send_multipart([b"HELLO", header(req=1)], flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
            assert answer(s, 1.5) is None
            assert mon.poll(5000), "no handshake event"
            ev = zmq.utils.monitor.recv_monitor_message(mon)
            assert ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH and ev["value"] == 400, ev
        finally:
            s.disable_monitor()
            mon.close()
            s.close()
    assert hub.errors("auth") >= auth0 + 2
    # `dxhub reader` with a key the hub does not know: says so, exits 1
    keys = tmp_path / "k"
    keygen(keys, "stranger")
    r = run([dxhub_bin(), "reader", "--hub", hub.reader_ep, "--hub-key", hub.keys / "hub.pub",
             "--keys", keys, "--name", "stranger", "--take", "1", "--timeout", "5"], timeout=30)
    assert r.returncode == 1 and r.stdout == b""
    assert "refused our key" in r.stderr.decode(), r.stderr.decode()


GARBAGE = [
    ("lower-case command", [b"hello", b'{"v":1}']),
    ("command with a digit", [b"HELLO1", b'{"v":1}']),
    ("header missing", [b"HELLO"]),
    ("header not JSON", [b"HELLO", b"\xff\xfenot json"]),
    ("header a JSON array", [b"HELLO", b"[1,2]"]),
    ("wrong version", [b"HELLO", b'{"v":2}']),
    ("no version", [b"HELLO", b'{"req":1}']),
    ("too many frames", [b"SUBMIT", b'{"v":1}', b"a", b"b", b"c", b"d", b"e"]),
    ("huge frame", [b"SUBMIT", b'{"v":1}', b"\0" * BIG]),
    ("huge header", [b"HELLO", b'{"v":1,"x":"' + b"y" * (70 * 1024) + b'"}']),
    ("unknown command", [b"EXPLODE", b'{"v":1}']),
]


@pytest.mark.parametrize("port", ["reader", "edge"])
def test_garbage_is_refused_counted_and_the_hub_keeps_serving(hub, port):
    ep, keys = (hub.reader_ep, hub.reader_key) if port == "reader" else (hub.edge_ep, hub.edge_key)
    before = hub.errors("protocol")
    s = dealer(hub, ep, keys)
    try:
        for name, frames in GARBAGE:
            e = expect_error(s, frames)
            assert isinstance(e["error"], str) and e["error"], name
        # still serving, on the same connection
        s.send_multipart([b"HELLO", header(req=7)])
        a = answer(s)
        assert a and a[0] == "WELCOME", a
    finally:
        s.close()
    assert hub.errors("protocol") >= before + len(GARBAGE)
    assert hub.proc.alive()


def test_a_revoked_key_is_cut_off_on_its_open_connection(hub, tmp_path):
    """ZAP judges a key once, at the handshake: a workstation, a clinic
    gateway or another hub whose key is revoked (a stolen laptop) must lose
    access at the reload, not whenever it next reconnects."""
    def keyed(name, role):
        pub = keygen(tmp_path / name, name)
        allow(hub.keys, role, pub)
        return pub, (z85(pub), z85(tmp_path / name / f"{name}.key"))

    def reload():
        n = hub.proc.log_tail(100000).count("SIGHUP: allow-list reloaded")
        hub.proc.signal(signal.SIGHUP)
        wait_for(lambda: hub.proc.log_tail(100000).count("SIGHUP: allow-list reloaded") > n, 10,
                 what="the allow-list reloaded")
    reader_pub, reader_key = keyed("laptop", "reader:sec-reader")  # a second key for the same reader
    edge_pub, edge_key = keyed("gw", "edge:clinicR")
    peer_pub, peer_key = keyed("county", "peer:county")
    reload()
    r = dealer(hub, hub.reader_ep, reader_key)
    e = dealer(hub, hub.edge_ep, edge_key)
    p = dealer(hub, hub.peer_ep, peer_key)
    other = dealer(hub, hub.reader_ep, hub.reader_key)  # the reader's own key, not revoked
    lookup = [b"LOOKUP", header(id=1, patient="NOBODY")]
    try:
        r.send_multipart([b"HELLO", header(req=1)])
        assert answer(r)[0] == "WELCOME"
        e.send_multipart([b"HELLO", header()])
        assert answer(e)[0] == "WELCOME"
        p.send_multipart(lookup)
        assert answer(p)[0] == "ANSWER"
        auth_before = hub.errors("auth")

        for pub in (reader_pub, edge_pub, peer_pub):
            allow(hub.keys, None, pub, revoke=True)
        reload()

        # the same connections, still open: refused, naming why
        for sock, frames in ((r, [b"HELLO", header(req=2)]), (r, [b"STUDY", header(req=3, task=1)]),
                             (e, [b"HELLO", header()]), (p, lookup)):
            err = expect_error(sock, frames)
            assert "revoked" in err["error"], err
        assert hub.errors("auth") >= auth_before + 4
        # the key left in the list is still served
        other.send_multipart([b"HELLO", header(req=4)])
        assert answer(other)[0] == "WELCOME"
        log = hub.proc.log_tail(100000)
        for port, role in (("readers", "reader:sec-reader"), ("link", "edge:clinicR"), ("peer link", "peer:county")):
            assert f"{port}: refused" in log and f"from {role} at" in log and "was revoked after it connected" in log
        # once a minute per role, not per message: two refusals of the reader, one line
        assert log.count("from reader:sec-reader at") == 1
        # and on the audit trail, as an auditor asks for it
        trail = run([dxhub_bin(), "audit", "--data", hub.base / "hub", "--json", "--what", "revoked-key"], check=True)
        recs = [json.loads(line) for line in trail.stdout.decode().splitlines()]
        assert sorted(x["who"] for x in recs) == ["edge:clinicR", "peer:county", "reader:sec-reader"], recs
        assert all(z85(pub).decode() in x["detail"] for x, pub in zip(sorted(recs, key=lambda x: x["who"]),
                                                                      (edge_pub, peer_pub, reader_pub)))
    finally:
        for s in (r, e, p, other):
            s.close()

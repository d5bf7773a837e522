"""The hub's edge port refuses what it must, stores nothing from it, says so
(dxhub_errors_total{kind="auth"|"protocol"} and audit records), and keeps
serving.

- an edge whose key is not in the allow-list (ZAP refuses the CURVE
  handshake: kind="auth", audit "refused-key" naming the key; the edge's
  --status and log say its key was refused, not "hub unreachable");
- an edge that holds the wrong hub key (the CURVE handshake cannot even be
  decrypted by the hub; the edge says to check --hub-key);
- a key allowed as reader:dr1 used as an edge — by a real `dxhub edge` and
  by a pyzmq DEALER — is answered ERROR (kind="auth");
- garbage from a properly keyed edge (pyzmq DEALER, edge:clinic1): junk
  commands, headers that are not JSON, the wrong protocol version, too many
  or too large frames, chunks beyond the credit, a transfer of bytes that
  are not DICOM, a transfer whose bytes do not match the offered digest —
  each refused (ERROR or NACK with the reason), kind="protocol";
- raw junk bytes on the TCP port (random bytes, an HTTP request, a ZMTP
  greeting with the NULL mechanism).

After all of it the hub process is alive, the API answers, its instance
count is what it was (zero), and an allowed edge's study arrives.
"""
import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
import zmq

from edgeutil import Edge, Hub, allow, corpus_root, keygen, run, wait_for

CT = "dicom/explicit_le/CT_small.dcm"


def audit_records(hub_data):
    """The hub's audit trail, read with LMDB's own mdb_dump (a reader beside
    the running hub)."""
    r = run(["mdb_dump", "-p", "-s", "audit", hub_data])
    out = []
    for line in r.stdout.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                out.append(json.loads(line.replace("\\\\", "\\")))
            except ValueError:
                pass
    return out


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("sec")
    h = Hub(d / "hub", d, stable_seconds=600)
    (d / "hub" / "keys").mkdir(parents=True)
    h.dir = d
    h.start()
    yield h
    h.stop()


def z85(path):
    return Path(path).read_text().split()[0].encode()


def dealer(hub, pub, sec):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.curve_publickey, s.curve_secretkey = pub, sec
    s.curve_serverkey = z85(hub.key_file)
    s.rcvtimeo = 5000
    s.connect(hub.endpoint)
    return s


def allowed_dealer(hub, keys, role):
    """A pyzmq DEALER with a fresh key in keys, allowed at the hub as role."""
    pub_file = keygen(keys, "edge")
    allow(hub.keys_dir, role, pub_file)
    hub.hup()
    time.sleep(0.3)
    return dealer(hub, z85(pub_file), z85(Path(keys) / "edge.key"))


def replies(s, wait=3.0, until=None):
    """Messages received within wait seconds, or as soon as until(got)."""
    out, end = [], time.monotonic() + wait
    while time.monotonic() < end and not (until and until(out)):
        if s.poll(50):
            out.append(s.recv_multipart())
    return out


def count(cmd, n):
    return lambda got: sum(1 for f in got if f[0] == cmd) >= n


def msg(cmd, hdr=None, *data):
    h = dict(hdr or {})
    h.setdefault("v", 1)
    return [cmd.encode(), json.dumps(h).encode(), *data]


def nothing_stored(hub):
    assert hub.instance_count() == 0
    assert hub.studies() == []


def test_unknown_key_is_refused_and_audited(hub, tmp_path):
    before = hub.error_count("auth")
    e = Edge(tmp_path / "stranger", hub.endpoint, hub.key_file, tmp_path)
    pub = z85(e.make_key()).decode()
    rc, queued, out = e.push([corpus_root() / CT])
    assert queued, out
    try:
        e.start()
        wait_for(lambda: hub.error_count("auth") > before, 20, what="the hub to count the refused key")
        time.sleep(1)
        nothing_stored(hub)
        st = e.status()
        assert st["waiting"] == 1 and st["refused"] == 0, st["text"]  # kept, to retry once allowed
        # The clinic is told it is its key, not the network, and which key.
        assert "the hub refused this gateway's key: not in the hub's allow-list" in st["text"], st["text"]
        assert f"this gateway's key is {pub}" in e.proc.log_tail(100000)
    finally:
        e.stop()
    recs = [r for r in audit_records(hub.data) if r.get("what") == "refused-key"]
    assert any(pub in r.get("detail", "") for r in recs), recs[-3:]


def test_edge_with_the_wrong_hub_key_gets_nowhere(hub, tmp_path):
    before = hub.error_count("auth")
    wrong = keygen(tmp_path / "other", "hub")
    e = Edge(tmp_path / "confused", hub.endpoint, wrong, tmp_path)
    allow(hub.keys_dir, "edge:clinic7", e.make_key())
    hub.hup()
    e.push([corpus_root() / CT])
    try:
        e.start()
        time.sleep(3)
        nothing_stored(hub)
        st = e.status()
        assert st["waiting"] == 1 and st["state"] != "connected", st["text"]
        why = "the encrypted handshake with the hub failed: is --hub-key the hub's own hub.pub?"
        assert why in st["text"] and why in e.proc.log_tail(100000), st["text"]
        # The hub's operator hears of it too: which port, which address, why; counted and audited.
        said = ("a client at 127.0.0.1 failed the encrypted handshake on the edge port: its handshake cannot be "
                "decrypted with this hub's key: it holds another hub's public key")
        wait_for(lambda: said in hub.proc.log_tail(200000), 10, what="the hub's log line")
        assert hub.proc.log_tail(200000).count(said) == 1  # the edge retries; said once a minute
        assert hub.error_count("auth") > before
    finally:
        e.stop()
        allow(hub.keys_dir, None, e.key_file, revoke=True)
        hub.hup()
    recs = [r for r in audit_records(hub.data) if r.get("what") == "handshake-failed"]
    assert any(r.get("who") == "127.0.0.1" and "edge port" in r.get("detail", "") for r in recs), recs[-3:]


def test_reader_key_used_as_an_edge_is_answered_error(hub, tmp_path):
    before = hub.error_count("auth")
    # a pyzmq DEALER with a reader's key (in the file name an edge looks for) speaking the edge protocol
    rkeys = tmp_path / "reader-keys"
    s = allowed_dealer(hub, rkeys, "reader:dr1")
    try:
        s.send_multipart(msg("HELLO"))
        body = b"\0" * 1000
        s.send_multipart(msg("OFFER", {"xfer": 1, "sop": "1.2.3.4", "study": "1.2.3", "size": len(body),
                                       "digest": hashlib.sha256(body).hexdigest(), "priority": 2}))
        got = replies(s, 5, until=count(b"ERROR", 2))
    finally:
        s.close()
    assert len(got) >= 2, got
    for frames in got:
        assert frames[0] == b"ERROR", frames
        h = json.loads(frames[1])
        assert "edge:<facility> required" in h["error"], h
    # a real edge configured with that key
    e = Edge(tmp_path / "readeredge", hub.endpoint, hub.key_file, tmp_path, extra=["--keys", rkeys])
    e.data.mkdir()
    e.push([corpus_root() / CT])
    try:
        e.start()
        wait_for(lambda: "edge:<facility> required" in e.status_text(), 15,
                 what="the edge to show the hub's ERROR")
        nothing_stored(hub)
        assert e.status()["waiting"] == 1
    finally:
        e.stop()
    assert hub.error_count("auth") >= before + 2
    recs = [r for r in audit_records(hub.data) if r.get("what") == "protocol-error" and r.get("who") == "reader:dr1"]
    assert recs, "no audit record for the reader key's attempts"


def test_garbage_from_a_keyed_edge_is_refused(hub, tmp_path):
    before = hub.error_count("protocol")
    s = allowed_dealer(hub, tmp_path / "junk-keys", "edge:junkclinic")
    junk = [
        [b"\x00\xff\xfe"],                                   # not a command
        [b"hello", b"{}"],                                    # lower case
        [b"OFFER"],                                           # no header
        [b"OFFER", b"this is not json"],
        [b"OFFER", b"[1,2,3]"],                               # JSON, not an object
        [b"OFFER", b'{"v":2,"xfer":1}'],                      # wrong protocol version
        [b"OFFER", b'{"v":1,"v":1}'],                         # duplicate keys
        [b"OFFER", b"{" + b" " * (70 * 1024) + b"}"],          # header too large
        msg("OFFER", {"xfer": 1, "sop": "1.2.3", "study": "1.2", "digest": "zz", "size": 10}),  # bad digest
        msg("OFFER", {"xfer": -5, "sop": "1.2.3", "study": "1.2", "digest": "0" * 64, "size": 10}),
        msg("OFFER", {"xfer": 1, "sop": "9" * 80, "study": "1.2", "digest": "0" * 64, "size": 10}),
        msg("STUDY_DONE", {"xfer": 2, "study": "1.2", "expected": -1, "priority": 7}),
        msg("CHUNK", {"xfer": 1}),                            # no data frame
        msg("CHUNK", {"xfer": 1, "offset": 0}, b"a", b"b", b"c", b"d", b"e"),  # too many frames
        msg("DELIVERED", {}),
        msg("NOSUCHTHING", {}),
        [b"A" * 15, b'{"v":1}', os.urandom(5 * 1024 * 1024)],  # data frame too large
    ]
    try:
        for m in junk:
            s.send_multipart(m)
        got = replies(s, 5, until=count(b"ERROR", len(junk)))
        errors = [json.loads(f[1]) for f in got if f[0] == b"ERROR"]
        print("\n".join(f"{e['to']!r}: {e['error']}" for e in errors))
        assert len(errors) == len(junk), (len(errors), errors)  # each one answered, with its reason

        # the protocol followed, but the bytes are not DICOM: NACK, nothing stored
        body = os.urandom(3000)
        dg = hashlib.sha256(body[0:]).hexdigest()
        s.send_multipart(msg("OFFER", {"xfer": 10, "sop": "1.2.826.0.1.3680043.8.498.77", "study": "1.2.3",
                                       "digest": dg, "size": len(body), "priority": 0}))
        send = s.recv_multipart()
        assert send[0] == b"SEND", send
        # beyond the granted credit: refused
        lim = json.loads(send[1])["limit"]
        s.send_multipart(msg("CHUNK", {"xfer": 10, "offset": 0}, b"x" * (len(body) + 1)))
        s.send_multipart(msg("CHUNK", {"xfer": 10, "offset": 0}, body))
        s.send_multipart(msg("COMMIT", {"xfer": 10, "digest": dg}))
        got = replies(s, 5, until=count(b"NACK", 1))
        cmds = [f[0] for f in got]
        assert b"ERROR" in cmds, got  # the oversized chunk
        nack = [json.loads(f[1]) for f in got if f[0] == b"NACK"]
        assert nack and nack[0]["xfer"] == 10, got
        assert lim > 0

        # real DICOM bytes, but not the ones the digest was offered for
        raw = (corpus_root() / CT).read_bytes()
        s.send_multipart(msg("OFFER", {"xfer": 11, "sop": "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
                                       "study": "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
                                       "digest": "ab" * 32, "size": len(raw), "priority": 0}))
        assert s.recv_multipart()[0] == b"SEND"
        for off in range(0, len(raw), 65536):
            s.send_multipart(msg("CHUNK", {"xfer": 11, "offset": off}, raw[off:off + 65536]))
        s.send_multipart(msg("COMMIT", {"xfer": 11, "digest": "ab" * 32}))
        got = replies(s, 5, until=count(b"NACK", 1))
        nack = [json.loads(f[1]) for f in got if f[0] == b"NACK"]
        assert nack and "digest" in nack[0]["reason"], got
    finally:
        s.close()
    nothing_stored(hub)
    assert hub.error_count("protocol") >= before + len(junk) - 1
    recs = [r for r in audit_records(hub.data) if r.get("what") == "protocol-error" and
            r.get("who") == "edge:junkclinic"]
    assert len(recs) >= len(junk) - 1


def peak_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_a_frame_beyond_the_protocol_costs_the_hub_no_memory(hub, tmp_path):
    """A keyed edge (buggy or hostile) sends a 128 MiB frame: the hub does
    not read it into memory (its peak resident size does not grow by it),
    drops that connection, and answers the same edge once it reconnects."""
    pid = hub.proc.p.pid
    s = allowed_dealer(hub, tmp_path / "big-keys", "edge:bigclinic")
    try:
        s.send_multipart(msg("PING"))
        assert any(f[0] == b"PONG" for f in replies(s, 5, until=count(b"PONG", 1)))
        before = peak_rss_kib(pid)
        s.send_multipart(msg("CHUNK", {"xfer": 1, "offset": 0}, b"\0" * (128 << 20)))
        time.sleep(2)
        grown = peak_rss_kib(pid) - before
        assert grown < 64 * 1024, f"the hub's peak resident size grew by {grown} KiB"
        # the connection was dropped (no answer to it); the edge's socket reconnects and is served
        got = []
        for _ in range(20):
            s.send_multipart(msg("PING"))
            got += replies(s, 0.5, until=count(b"PONG", 1))
            if count(b"PONG", 1)(got):
                break
        assert count(b"PONG", 1)(got), got
        assert not any(f[0] == b"ERROR" and b"CHUNK" in f[1] for f in got), got
    finally:
        s.close()
    assert hub.proc.alive()


def test_raw_junk_on_the_tcp_port(hub):
    for payload in (os.urandom(65536), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"\xff" + b"\x00" * 8 + b"\x01\x7f" + b"\x03\x00" + b"NULL" + b"\x00" * 16 + b"\x00" * 20,
                    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f" * 1000):
        with socket.create_connection(("127.0.0.1", hub.edge_port), timeout=5) as c:
            try:
                c.sendall(payload)
                c.settimeout(1)
                c.recv(100)
            except OSError:
                pass
    # a connection that says nothing and one that stops halfway
    idle = socket.create_connection(("127.0.0.1", hub.edge_port), timeout=5)
    half = socket.create_connection(("127.0.0.1", hub.edge_port), timeout=5)
    half.sendall(b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f\x03")
    time.sleep(1)
    idle.close()
    half.close()
    assert hub.proc.alive()
    nothing_stored(hub)


def test_an_edge_whose_key_is_revoked_while_connected_is_cut_off_and_told(hub, tmp_path):
    """A revoked key keeps no access on the connection it already has, and
    the clinic reads the same 'refused this gateway's key' as at a refused
    handshake, not a line per message."""
    e = Edge(tmp_path / "revoked", hub.endpoint, hub.key_file, tmp_path)
    allow(hub.keys_dir, "edge:clinic9", e.make_key())
    hub.hup()
    try:
        e.start()
        wait_for(lambda: e.status()["state"] == "connected", 20, what="the edge connected")
        allow(hub.keys_dir, None, e.key_file, revoke=True)
        hub.hup()
        wait_for(lambda: "revoked after it connected" in hub.proc.log_tail(200000), 20,
                 what="the hub refusing the connected edge")
        e.push([corpus_root() / CT])
        why = "the hub refused this gateway's key: not in the hub's allow-list"
        wait_for(lambda: why in e.status()["text"], 20, what="the edge's status naming its key")
        time.sleep(2)
        nothing_stored(hub)
        st = e.status()
        assert st["waiting"] == 1 and st["state"] != "connected", st["text"]
        log = e.proc.log_tail(200000)
        assert log.count(why) == 1 and "the hub answered ERROR" not in log, log[-2000:]
    finally:
        e.stop()


def test_the_hub_keeps_serving_an_allowed_edge(hub, tmp_path):
    # runs last in this module (pytest keeps file order)
    assert hub.proc.alive()
    code, _ = hub.get("/api/v1/health")
    assert code == 200
    nothing_stored(hub)
    e = Edge(tmp_path / "good", hub.endpoint, hub.key_file, tmp_path)
    allow(hub.keys_dir, "edge:clinic1", e.make_key())
    hub.hup()
    e.push([corpus_root() / CT])
    try:
        e.start()
        wait_for(e.drained, 20, what="the allowed edge's spool to empty")
    finally:
        e.stop()
    assert hub.instance_count() == 1

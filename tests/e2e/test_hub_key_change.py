"""The hub changes its CURVE keypair (a disk or a backup with its secret key
was lost, or the machine is replaced) without stopping every clinic and
every reader at the same moment.

Each client is given the hub's key now and its next one ("NOW,NEXT" in
hub-key) ahead of the change.  The hub then restarts with the new pair:
a clinic gateway and a headless reader, whose handshake with the first key
fails, try the second at once, carry on, and say the change can be
finished; a client given only the old key is told its handshake failed.
Every part is a real process on 127.0.0.1."""
import json
import shutil

import pytest

from edgeutil import Edge, Proc, allow, dxhub_bin, keygen, run, wait_for
from hubutil import free_port, synth_instance, uid_root

READY = r"dxhub serve: ready .*key=(\S+)"


def hub_proc(base, keys, ports):
    dicom, http, edge, reader = ports
    return Proc([dxhub_bin(), "serve", "--data", base / "hub", "--keys", keys, "--readers", base / "readers.conf",
                 "--stable-seconds", 600, "--open-dicom", "--dicom-port", dicom, "--http-port", http,
                 "--edge-port", edge, "--reader-port", reader, "--peer-port", 0], base / "hub.log", READY)


def reader(base, reader_ep, hub_key):
    return run([dxhub_bin(), "reader", "--hub", reader_ep, "--hub-key", hub_key, "--keys", base / "rkeys",
                "--name", "dr-zhou", "--json", "--timeout", 5], timeout=60)


def push_one(base, edge, name):
    study = uid_root(f"key-change-{name}")
    src = base / f"src-{name}"
    src.mkdir()
    f = synth_instance(src / "1.dcm", study, f"{study}.1", f"{study}.1.1", 1, patient_id="P-KEY", rows=16, cols=16)
    rc, _, out = edge.push([f])
    assert rc == 0, out
    return study


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("keychange")
    keys = base / "hubkeys"
    (base / "readers.conf").write_text("dr-zhou attending CT imaging * 3\n")
    allow(keys, "reader:dr-zhou", keygen(base / "rkeys", "dr-zhou"))
    (base / "edge").mkdir()
    allow(keys, "edge:clinic1", keygen(base / "edge" / "keys", "edge"))
    ports = (free_port(), free_port(), free_port(), free_port())
    w = type("World", (), {})()
    w.base, w.keys, w.ports, w.edge = base, keys, ports, None
    w.hub = hub_proc(base, keys, ports)
    w.hub.start(30)
    try:  # the hub and the gateway started here are stopped whatever fails
        shutil.copyfile(keys / "hub.pub", base / "hub-now.pub")  # what every client was given at installation
        keygen(base / "next", "hub")  # the hub's next keypair, made ahead; its .pub sent to every client
        w.both = f"{base / 'hub-now.pub'},{base / 'next' / 'hub.pub'}"
        w.edge = Edge(base / "edge", f"tcp://127.0.0.1:{ports[2]}", w.both, base, extra=("--facility", "clinic1"))
        w.edge.start()
        w.reader_ep = f"tcp://127.0.0.1:{ports[3]}"
        yield w
    finally:
        if w.edge:
            w.edge.kill()
        w.hub.stop()


def delivered(w, study):
    r = run(["curl", "-s", "-m", "10", f"http://127.0.0.1:{w.ports[1]}/api/v1/studies/{study}"], timeout=20)
    return r.returncode == 0 and b'"0020000D"' in r.stdout


def test_before_the_change_the_first_key_is_used_and_nothing_is_said(world):
    study = push_one(world.base, world.edge, "before")
    wait_for(lambda: delivered(world, study), 30, what="the study at the hub")
    r = reader(world.base, world.reader_ep, world.both)
    assert r.returncode == 0 and json.loads(r.stdout.decode().splitlines()[-1])["reader"] == "dr-zhou", r.stderr
    assert b"second key" not in r.stderr
    assert "second key" not in world.edge.proc.log_tail(100000)


def test_the_hub_restarted_with_its_new_keypair_is_reached_with_the_second_key(world):
    world.hub.stop()
    for name in ("hub.key", "hub.pub"):  # the new pair replaces the old; allow.txt and the store stay
        shutil.copyfile(world.base / "next" / name, world.keys / name)
    world.hub = hub_proc(world.base, world.keys, world.ports)
    m = world.hub.start(30)
    assert m.group(1).endswith("hub.pub")
    study = push_one(world.base, world.edge, "after")
    wait_for(lambda: delivered(world, study), 60, what="the study delivered through the hub's new key")
    log = world.edge.proc.log_tail(200000)
    assert "the hub answers to the second key of --hub-key" in log, log[-3000:]
    assert "handshake with the hub failed with both keys" not in log
    r = reader(world.base, world.reader_ep, world.both)
    assert r.returncode == 0, r.stderr.decode()
    assert b"note: the hub answers to the second key of --hub-key" in r.stderr, r.stderr


def test_a_client_given_only_the_old_key_or_two_wrong_ones_is_told_why(world):
    r = reader(world.base, world.reader_ep, world.base / "hub-now.pub")
    assert r.returncode == 1 and b"the CURVE handshake with the hub failed (is --hub-key the hub's hub.pub?)" in \
        r.stderr, r.stderr
    stranger = keygen(world.base / "stranger", "hub")
    r = reader(world.base, world.reader_ep, f"{world.base / 'hub-now.pub'},{stranger}")
    assert r.returncode == 1 and b"failed with both keys of --hub-key" in r.stderr, r.stderr


@pytest.mark.parametrize("given, says", [
    ("{now},{next},{now}", "separated by one comma"),
    ("{now},", "separated by one comma"),
    ("{now},{now}", "the same key twice"),
    ("{now},{base}/nosuch.pub", "no such file"),
])
def test_a_malformed_pair_of_hub_keys_is_refused_naming_it(world, given, says):
    key = given.format(now=world.base / "hub-now.pub", next=world.base / "next" / "hub.pub", base=world.base)
    r = reader(world.base, world.reader_ep, key)
    assert r.returncode == 2 and says.encode() in r.stderr, r.stderr
    r = run([dxhub_bin(), "edge", "--data", world.base / "edge2", "--hub", "tcp://127.0.0.1:9", "--hub-key", key,
             "--facility", "x", "--dicom-port", 0], timeout=30)
    assert r.returncode != 0 and says.encode() in r.stderr, r.stderr

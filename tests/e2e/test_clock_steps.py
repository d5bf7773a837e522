"""The wall clock steps (NTP corrects it, an operator sets the date, a VM
resumes): nothing waits for as long as the clock went back.

Each process under test runs with libfaketime (Debian `faketime`) in its
environment, reading its offset from a file the test rewrites, so its wall
clock steps back an hour in the middle of the run while its monotonic
clock (DONT_FAKE_MONOTONIC) goes on as the kernel's does, as in a real
step.  Everything else is real: the hub, the edge, `dxhub push`,
`dxhub reader`, ZeroMQ on 127.0.0.1.

  - A clinic's edge whose clock went back still sends what a nurse pushes
    next, at once (its link's timers measured on the wall clock waited out
    the hour: nothing pushed was listed for sending).
  - A hub whose clock went back still takes a task back from a reader who
    died holding it, once its lease runs out (the lease ended an hour
    ahead of the clock, and the hub's tick, timed on the wall clock, had
    stopped for the hour).
  - A workstation whose clock went back keeps the lease on the task its
    reader is reading: its heartbeats are timed on the monotonic clock.
    (libfaketime moves a timed condition wait's wall-clock deadline with
    the offset, so the waits that used to read the wall clock — now on
    CLOCK_MONOTONIC — are not what this case could catch.)
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgeutil import Edge, Hub, Proc, allow, corpus_root, dxhub_bin, keygen, run, wait_for
from hubutil import _synth_base, synth_instance, uid_root
from wsutil import World, ct_study

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")

pytestmark = pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime (Debian faketime) not installed")


class FakeClock:
    """A wall-clock offset for the processes started with env(): '+0' now,
    step(-3600) an hour back."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.write_text("+0\n")

    def env(self):
        env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(self.path),
               "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1"}
        if os.environ.get("ASAN_OPTIONS") is not None:  # a sanitizer build: its runtime is not first then
            env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":verify_asan_link_order=0"
        return env

    def step(self, seconds):
        tmp = self.path.with_suffix(".new")
        tmp.write_text(f"{seconds:+d}\n")
        tmp.replace(self.path)


def study_files(tmp_path, name, n=2):
    study = uid_root(name)
    src = tmp_path / name
    src.mkdir()
    base = _synth_base(32, 32, "CT", "X", "20250601")
    files = [synth_instance(src / f"{k}.dcm", study, f"{study}.1", f"{study}.1.{k}", k, patient_id="P0001", rows=32,
                            cols=32, _base=base) for k in range(1, n + 1)]
    return study, files


def instances_at_hub(hub, study):
    s = hub.study(study)
    return s["study"]["00201208"]["Value"][0] if s else 0


def test_an_edge_whose_clock_went_back_still_sends_what_is_pushed(tmp_path):
    clock = FakeClock(tmp_path / "edge-clock")
    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    (hub.data / "keys").mkdir(parents=True)
    edge = Edge(tmp_path / "edge", hub.endpoint, hub.key_file, tmp_path, env=clock.env())
    allow(hub.keys_dir, "edge:clinic1", edge.make_key())
    first, first_files = study_files(tmp_path, "clock-first")
    second, second_files = study_files(tmp_path, "clock-second")
    try:
        hub.start()
        edge.start()
        rc, queued, out = edge.push(first_files)
        assert rc == 0 and len(queued) == 2, out
        wait_for(lambda: instances_at_hub(hub, first) == 2, 30, what="the first study at the hub")
        clock.step(-3600)
        time.sleep(2)  # the edge's link goes round its loop with the clock an hour back
        t0 = time.monotonic()
        rc, queued, out = edge.push(second_files)
        assert rc == 0 and len(queued) == 2, out
        wait_for(lambda: instances_at_hub(hub, second) == 2, 30, what="the study pushed after the clock went back")
        print(f"pushed after the step, at the hub {time.monotonic() - t0:.1f} s later")
        wait_for(edge.drained, 20, what="the spool to empty")
    finally:
        edge.kill()
        hub.stop()


READY = (r"dxhub serve: ready dicom=[0-9.]+:(\d+) .*http=[0-9.]+:(\d+) edge=(tcp://[0-9.]+:\d+) "
         r"readers=(tcp://[0-9.]+:\d+) .*key=(\S+)")


def test_a_hub_whose_clock_went_back_takes_a_dead_readers_task_back(tmp_path):
    clock = FakeClock(tmp_path / "hub-clock")
    keys = tmp_path / "hubkeys"
    (tmp_path / "readers.conf").write_text("dr-a attending CT imaging * 3\n")
    allow(keys, "reader:dr-a", keygen(tmp_path / "rkeys", "dr-a"))
    (tmp_path / "edge").mkdir()
    allow(keys, "edge:clinic1", keygen(tmp_path / "edge" / "keys", "edge"))
    hub = Proc([dxhub_bin(), "serve", "--data", tmp_path / "hub", "--keys", keys, "--readers",
                tmp_path / "readers.conf", "--stable-seconds", 600, "--lease-seconds", 5, "--open-dicom",
                "--dicom-port", 0, "--http-port", 0, "--edge-port", 0, "--reader-port", 0, "--peer-port", 0],
               tmp_path / "hub.log", READY, env=clock.env())
    edge = None
    holder = None
    try:
        m = hub.start(30)
        edge_ep, reader_ep = m.group(3), m.group(4)
        edge = Edge(tmp_path / "edge", edge_ep, keys / "hub.pub", tmp_path)
        edge.start()
        study, files = study_files(tmp_path, "clock-lease")
        rc, queued, out = edge.push(files, priority="stat")
        assert rc == 0, out
        reader = [dxhub_bin(), "reader", "--hub", reader_ep, "--hub-key", keys / "hub.pub", "--keys",
                  tmp_path / "rkeys", "--name", "dr-a", "--json"]
        # dr-a claims it and keeps the lease alive, then dies holding it
        holder = subprocess.Popen([str(a) for a in reader + ["--take", "1", "--wait", "30", "--hold", "600"]],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        line = holder.stdout.readline().decode()
        task = json.loads(line)
        assert task["study"] == study, task
        clock.step(-3600)
        time.sleep(1.5)  # a heartbeat or two with the hub's clock an hour back
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        t0 = time.monotonic()
        # the lease (5 s) runs out and the task is offered again
        r = run([str(a) for a in reader + ["--take", "1", "--wait", "40"]], timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        again = json.loads(r.stdout.decode().strip().splitlines()[-1])
        assert again["task"] == task["task"], again
        print(f"the dead reader's task offered again {time.monotonic() - t0:.1f} s after it died")
    finally:
        if holder and holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
        if edge:
            edge.kill()
        hub.stop()


def test_a_workstation_whose_clock_went_back_keeps_its_readers_lease(tmp_path):
    clock = FakeClock(tmp_path / "ws-clock")
    world = World(tmp_path, {"ws-clk": ("CT", "imaging", "王伟")}, lease_seconds=3)
    try:
        world.start()
        study, files = ct_study(corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm", tmp_path / "ct")
        world.send(files)
        ws = world.workstation("ws-clk", env=clock.env())
        ws.wait_tasks([study])
        task = ws.task_of(study)
        ws.json("POST", f"/api/tasks/{task['id']}/claim")
        clock.step(-3600)
        time.sleep(7)  # more than two leases of 3 s: only heartbeats keep it
        code, body = world_tasks(world)
        assert code == 200, body
        counts = json.loads(body)
        assert counts["readers"].get("ws-clk") == 1 and counts["counts"]["claimed"] == 1, counts
        assert ws.task_of(study)["mine"] is True
    finally:
        world.close()


def world_tasks(world):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{world.http_port}/api/v1/tasks",
                                 headers={"Authorization": f"Bearer {world.api_key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

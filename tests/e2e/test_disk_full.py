"""A full disk is an operating condition, not a fault (DESIGN.md §4): the
hub and the clinic gateway tell the sender to try again later (DICOM
0xA700, "out of resources"), say "disk full" with the folder and what is
free instead of "Input/output error", keep serving, lose nothing they
acknowledged, and take data again as soon as space is freed, without a
restart.  A reading workstation whose disk is full says so, not blaming
the hub, and caches again once space is freed.

The disk is a small tmpfs mounted for the test (root only, as CI runs),
filled with a filler file that is deleted to free space.  LMDB meets it as
it meets a full ext4: a write that fails with ENOSPC, or a short write,
which LMDB reports as EIO.
"""
import io
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread

import edgeutil
from hubutil import (CT_IMAGE_STORAGE, EXPLICIT_LE, Hub, RawSCU, dataset_bytes, split_part10, storescu,
                     synth_studies)
from wsutil import World, big_ot_study

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root (CI runs as root)")

MiB = 1 << 20


class SmallDisk:
    """A tmpfs of size_mib at path, filled so that about free_mib remain."""

    def __init__(self, path, size_mib, free_mib):
        self.path = Path(path)
        self.path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(self.path)],
                       check=True, capture_output=True)
        self.filler = self.path / "filler"
        with open(self.filler, "wb") as f:
            f.write(b"\xa5" * ((size_mib - free_mib) * MiB))

    def free(self):
        os.unlink(self.filler)

    def close(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    disks = []

    def make(name, size_mib, free_mib):
        disks.append(SmallDisk(tmp_path / name, size_mib, free_mib))
        return disks[-1]
    yield make
    for d in disks:
        d.close()


def hub_results(hub):
    m = hub.metrics()
    return {r: m.get(f'dxhub_store_results_total{{result="{r}"}}', 0) for r in ("stored", "full", "failed")}


def test_hub_refuses_on_a_full_disk_and_takes_again_once_freed(tmp_path, small_disk):
    disk = small_disk("disk", 64, 12)
    (study, files), = synth_studies(tmp_path / "ct", "diskfull", 1, 30, rows=512, cols=512).items()  # 15 MiB
    sops = [f"{study}.1.{k + 1}" for k in range(len(files))]
    # larger than what the listener keeps in memory: written to its spool folder as it arrives
    (big_study, big), = synth_studies(tmp_path / "big", "diskfullbig", 1, 1, rows=3000, cols=3000).items()
    hub = Hub(disk.path / "hub", log_dir=tmp_path, stable_seconds=600)
    try:
        hub.start()
        pid = hub.proc.pid
        r = storescu(hub.dicom_port, files)
        st = r.statuses()
        n_ok = st.count("Success")
        assert 3 <= n_ok < len(files), r.output
        assert st == ["Success"] * n_ok + ["Refused: OutOfResources"] * (len(files) - n_ok), st
        with RawSCU(hub.dicom_port, [(CT_IMAGE_STORAGE, EXPLICIT_LE)]) as scu:
            status, comment = scu.store(CT_IMAGE_STORAGE, sops[-1], EXPLICIT_LE, dataset_bytes(files[-1]))
        assert status == 0xA700 and "full" in comment.lower(), (hex(status), comment)
        assert storescu(hub.dicom_port, big).statuses() == ["Refused: OutOfResources"]

        # The operator reads what happened, where, and what is free; never a bare I/O error.
        log = hub.err_path.read_text()
        full_lines = [ln for ln in log.splitlines() if "disk full:" in ln]
        assert full_lines and all(f"free on the file system holding {disk.path / 'hub'}" in ln for ln in full_lines)
        assert any("C-STORE: write" in ln for ln in full_lines), "the spooled instance's refusal is not named"
        assert "Input/output error" not in log and "storage failure" not in log, log[-3000:]
        refused = len(files) - n_ok + 2
        res = hub_results(hub)
        assert res["stored"] == n_ok and res["full"] == refused and res["failed"] == 0, res
        m = hub.metrics()
        assert m['dxhub_errors_total{kind="store_full"}'] == refused and m["dxhub_store_full"] == 1
        assert m["dxhub_data_disk_free_bytes"] < 2 * MiB and 62 * MiB <= m["dxhub_data_disk_size_bytes"] <= 65 * MiB
        status, _, body = hub.health()
        assert status == 200 and b'"store":"full"' in body, body
        status_text = subprocess.run([str(hub.args[0]), "status", "--hub", f"http://127.0.0.1:{hub.http_port}"],
                                     capture_output=True, text=True, timeout=30).stdout
        assert "FULL" in status_text and re.search(r"disk\s+\S+ \S*B? ?free of", status_text), status_text

        # Reads go on; what was acknowledged is there, byte for byte.
        for k in range(n_ok):
            code, body = hub.instance_file(sops[k])
            assert code == 200 and split_part10(body)[1] == dataset_bytes(files[k])
        assert hub.instance_file(sops[n_ok])[0] == 404

        # Space freed: the senders' retries are taken, by the same process.
        disk.free()
        r = storescu(hub.dicom_port, files[n_ok:] + big)
        assert r.statuses() == ["Success"] * (len(files) - n_ok + 1), r.output
        assert hub.proc.pid == pid and hub.running()
        for k in range(len(files)):
            code, body = hub.instance_file(sops[k])
            assert code == 200 and split_part10(body)[1] == dataset_bytes(files[k])
        assert hub.instance_file(f"{big_study}.1.1")[0] == 200
    finally:
        hub.close()


def test_gateway_keeps_what_it_cannot_take_for_a_retry(tmp_path, small_disk):
    """The clinic gateway on a full disk: the modality is told to retry
    (0xA700, not 0xC000 "cannot understand", which a modality takes as
    final); `dxhub push` says "not queued: disk full" and exits 75; files in
    the watch folder stay there (not in failed/) and are taken once space
    is freed.  The hub is down meanwhile, as it may be: nothing leaves the
    spool until it is back, and then everything arrives."""
    disk = small_disk("disk", 24, 3)
    watch = tmp_path / "watch"
    watch.mkdir()
    (study, files), = synth_studies(tmp_path / "ct", "edgefull", 1, 24, rows=512, cols=512).items()
    dicom, pushed, watched = files[:12], files[12:18], files[18:]
    hub = edgeutil.Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    hub.keys_dir.mkdir(parents=True)
    edgeutil.keygen(hub.keys_dir, "hub")
    edge = edgeutil.Edge(disk.path / "edge", hub.endpoint, hub.key_file, tmp_path, watch=watch)
    edgeutil.allow(hub.keys_dir, "edge:clinic7", edge.make_key())
    try:
        edge.start()
        ok, r = edgeutil.storescu("127.0.0.1", edge.dicom_port, dicom)
        text = (r.stdout + r.stderr).decode(errors="replace")
        n_ok = sum(ok.values())
        assert 1 <= n_ok < len(dicom), text
        assert [ok[str(f)] for f in dicom] == [True] * n_ok + [False] * (len(dicom) - n_ok), text
        answers = re.findall(r"Received Store Response \((.*)\)", text)
        assert answers[n_ok:] == ["Refused: OutOfResources"] * (len(dicom) - n_ok), answers

        rc, queued, out = edge.push(pushed)
        assert rc == 75 and len(queued) < len(pushed), out  # a first one may still fit in what is left
        assert "not queued: disk full:" in out and f"on the file system holding {disk.path / 'edge'}" in out, out
        assert "not queued for now" in out, out

        for f in watched:
            (watch / f.name).write_bytes(f.read_bytes())
        edgeutil.wait_for(lambda: "it stays in the watch folder and is tried again" in edge.proc.log_tail(100000),
                          20, what="the watch folder's retry line")
        time.sleep(1)
        kept = sorted(p.name for p in watch.iterdir() if p.is_file())
        taken = sorted(p.name for p in (watch / "done").iterdir())
        assert kept and sorted(kept + taken) == sorted(f.name for f in watched), (kept, taken)
        assert not list((watch / "failed").iterdir())
        log = edge.proc.log_tail(100000)
        assert "disk full:" in log and "Input/output error" not in log and "not a DICOM file" not in log, log[-3000:]
        st = edge.status()["text"]
        assert re.search(r"disk: .* free of .* -- LOW: new studies are refused once it is full", st), st

        # Space freed: the modality and the nurse try again; the watch folder needs nobody.
        disk.free()
        ok, r = edgeutil.storescu("127.0.0.1", edge.dicom_port, dicom[n_ok:])
        assert all(ok.values()), (r.stdout + r.stderr).decode(errors="replace")
        again = [f for f in pushed if str(f) not in queued]
        rc, queued_now, out = edge.push(again)
        assert rc == 0 and len(queued_now) == len(again), out
        edgeutil.wait_for(lambda: len(list((watch / "done").iterdir())) == len(watched), 30,
                          what="the kept files to be taken from the watch folder")
        assert edge.status()["waiting"] == len(files)

        hub.start()
        edgeutil.wait_for(lambda: hub.instance_count() == len(files), 60, what="every instance at the hub")
        for k, f in enumerate(files):  # compressed losslessly for the link: the same pixels
            body = hub.instance_file(f"{study}.1.{k + 1}")
            assert body is not None, f
            assert (dcmread(io.BytesIO(body)).pixel_array == dcmread(f).pixel_array).all(), f
    finally:
        edge.stop()
        hub.stop()


def test_link_into_a_full_hub_backs_off_and_delivers_once_freed(tmp_path, small_disk):
    """The hub's disk fills while a clinic's gateway sends: each refused
    transfer is answered "disk full" (its part file deleted at once), the
    gateway keeps the item and tries again later, and once space is freed
    everything arrives, nothing twice."""
    disk = small_disk("disk", 64, 8)
    (study, files), = synth_studies(tmp_path / "ct", "linkfull", 1, 30, rows=512, cols=512).items()
    hub = edgeutil.Hub(disk.path / "hub", tmp_path, stable_seconds=600)
    hub.keys_dir.mkdir(parents=True)
    edgeutil.keygen(hub.keys_dir, "hub")
    edge = edgeutil.Edge(tmp_path / "edge", hub.endpoint, hub.key_file, tmp_path)
    edgeutil.allow(hub.keys_dir, "edge:clinic7", edge.make_key())
    try:
        hub.start()
        edge.start()
        rc, queued, out = edge.push(files)
        assert rc == 0 and len(queued) == len(files), out
        edgeutil.wait_for(lambda: "will be retried: disk full:" in edge.proc.log_tail(100000), 60,
                          what="the gateway to hear that the hub's disk is full")
        hub_log = hub.proc.log_tail(100000)
        assert re.search(r"refused: disk full: \d+ MiB free on the file system holding", hub_log), hub_log[-3000:]
        assert edge.status()["waiting"] > 0
        # once per refused transfer, its part file dropped (it was once per chunk, the part file kept)
        refused = re.findall(r"link: edge:clinic7 transfer (\d+) refused: disk full", hub.proc.log_tail(100000))
        assert refused and len(refused) == len(set(refused)), refused
        assert "link: writing" not in hub.proc.log_tail(100000)
        assert hub.metric("dxhub_errors_total", '{kind="store_full"}') > 0

        disk.free()
        edgeutil.wait_for(edge.drained, 90, what="the gateway to deliver everything once space is freed")
        assert hub.instance_count() == len(files)
        assert hub.metric("dxhub_store_results_total", '{result="stored"}') == len(files)
        for log in (hub.proc.log_tail(100000), edge.proc.log_tail(100000)):
            assert "Input/output error" not in log, log[-3000:]
    finally:
        edge.stop()
        hub.stop()


def test_a_workstation_on_a_full_disk_says_so_and_caches_once_freed(tmp_path, small_disk):
    """The reading PC's disk, where studies are cached: a study that does
    not fit is not blamed on the hub ("this workstation's disk full"), the
    session tells the page (which shows it), and prefetching goes on by
    itself once space is freed."""
    disk = small_disk("disk", 32, 4)  # once freed, room for the 8 MB study twice (fetched, then cached)
    (tmp_path / "w").mkdir()
    world = World(tmp_path / "w", {"disk-att": ("OT", "imaging", "王伟")}, lease_seconds=30)
    try:
        world.start()
        study, files = big_ot_study(tmp_path / "ot", 2000, 2000, 7)  # 8 MB
        world.send(files)
        edgeutil.wait_for(lambda: world.studies().get(study) == "queued", 30, what="the study queued")
        cache = disk.path / "cache"
        ws = world.workstation("disk-att", cache=cache)
        ws.wait_tasks([study])
        said = re.compile(r"prefetch of task \d+: this workstation's disk full: \d+ MiB free on the file system "
                          rf"holding {re.escape(str(cache))}: studies cannot be cached")
        edgeutil.wait_for(lambda: said.search(ws.proc.log_tail(100000)), 30, what="the workstation's disk-full line")
        assert ws.json("GET", "/api/session")["cache"]["disk_free"] < 64 * MiB
        assert ws.task_of(study)["prefetched"] != 1

        disk.free()
        edgeutil.wait_for(lambda: ws.task_of(study)["prefetched"] == 1, 30, what="the study cached once space is freed")
        assert ws.json("GET", "/api/session")["cache"]["disk_free"] > 16 * MiB
    finally:
        world.close()

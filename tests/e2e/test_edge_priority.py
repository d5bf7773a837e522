"""A STAT study overtakes a routine backlog already on its way.

100 routine CT slices (synthetic, ~250 KB each once JPEG-LS-compressed)
are queued at the edge, whose link to the hub goes through the fault proxy
limited to 24 Mbit/s (plus 10 ms each way): a backlog of several seconds.  Once the
routine transfers are flowing, a three-instance STAT study is pushed.  The
STAT study must be complete at the hub (all instances, by its marker) while
most of the routine backlog is still waiting; the routine study completes
afterwards, every instance there once.
"""
import subprocess
import time

import pydicom

from edgeutil import PY, REPO, Edge, FaultProxy, Hub, allow, corpus_root, free_port, wait_for

N_ROUTINE = 100
RATE_MBIT = 24


def completed(hub, uid):
    s = hub.study(uid)
    return s["study"] if s and s["study"]["dxhub"]["completed"] else None


def n_instances(hub, uid):
    s = hub.study(uid)
    return s["study"]["00201208"]["Value"][0] if s else 0


def test_stat_overtakes_a_routine_backlog(tmp_path):
    ct = tmp_path / "routine"
    subprocess.run([PY, REPO / "samples" / "gen_ct_series.py", "--slices", str(N_ROUTINE), "--out", ct,
                    "--name", "backlog"], check=True, capture_output=True)
    routine = sorted(ct.glob("*.dcm"))
    routine_study = str(pydicom.dcmread(str(routine[0]), stop_before_pixels=True).StudyInstanceUID)
    stat_study = "1.2.826.0.1.3680043.8.498.4242"
    stat = []
    for i in range(3):
        ds = pydicom.dcmread(str(corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"))
        ds.StudyInstanceUID = stat_study
        ds.SOPInstanceUID = f"{stat_study}.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        f = tmp_path / f"stat{i}.dcm"
        ds.save_as(f, write_like_original=True)
        stat.append(f)

    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    (hub.data / "keys").mkdir(parents=True)
    pport = free_port()
    proxy = FaultProxy(f"127.0.0.1:{pport}", f"127.0.0.1:{hub.edge_port}", tmp_path, rate_mbit=RATE_MBIT,
                       delay=10, buffer=256 * 1024)
    edge = Edge(tmp_path / "edge", f"tcp://127.0.0.1:{pport}", hub.key_file, tmp_path)
    allow(hub.keys_dir, "edge:clinic1", edge.make_key())
    try:
        hub.start()
        proxy.start()
        rc, queued, out = edge.push(routine, priority="routine")
        assert rc == 0 and len(queued) == N_ROUTINE, out
        edge.start()
        wait_for(lambda: n_instances(hub, routine_study) >= 3, 30, what="the routine backlog to start flowing")
        t_push = time.monotonic()
        rc, queued, out = edge.push(stat, priority="stat", note="STAT: suspected stroke")
        assert rc == 0 and len(queued) == 3, out
        st = wait_for(lambda: completed(hub, stat_study), 30, interval=0.1, what="the STAT study to complete")
        t_stat = time.monotonic() - t_push
        routine_then = n_instances(hub, routine_study)
        assert st["dxhub"]["priority"] == "stat" and st["00201208"]["Value"][0] == 3
        assert not completed(hub, routine_study)
        # most of the backlog was still waiting when the STAT study was complete
        assert routine_then <= N_ROUTINE * 0.6, (routine_then, t_stat)
        wait_for(lambda: completed(hub, routine_study), 90, what="the routine backlog to finish")
        t_routine = time.monotonic() - t_push
        assert n_instances(hub, routine_study) == N_ROUTINE
        wait_for(edge.drained, 20, what="the spool to empty")
        print(f"STAT complete {t_stat:.2f} s after its push, with {routine_then}/{N_ROUTINE} routine there; "
              f"routine backlog done after {t_routine:.2f} s")
        assert t_stat < t_routine
    finally:
        edge.stop()
        proxy.stop()
        hub.stop()

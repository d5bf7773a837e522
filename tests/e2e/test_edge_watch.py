"""The clinic gateway's watch folder: a file is taken only once its writer
has closed it (a half-written file is never taken), then moved to done/ and
delivered to the hub; something that is not DICOM goes to failed/; a
folder put there is not taken, and the log says so."""
import time

from pydicom import dcmread

from edgeutil import Edge, Hub, allow, corpus_root, wait_for


def test_watch_folder_takes_only_complete_files(tmp_path):
    watch = tmp_path / "watch"
    watch.mkdir()
    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    (tmp_path / "hub" / "keys").mkdir(parents=True)
    edge = Edge(tmp_path / "edge", hub.endpoint, hub.key_file, tmp_path, watch=watch)
    allow(hub.keys_dir, "edge:clinic7", edge.make_key())
    src = corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"
    data = src.read_bytes()
    sop = str(dcmread(src).SOPInstanceUID)
    try:
        hub.start()
        edge.start()
        # a modality writing slowly: half the file, a pause, then the rest
        target = watch / "slow.dcm"
        with open(target, "wb") as fp:
            fp.write(data[: len(data) // 2])
            fp.flush()
            time.sleep(2.5)
            assert target.exists() and not (watch / "done" / "slow.dcm").exists(), \
                "a file still being written was taken"
            fp.write(data[len(data) // 2:])
        wait_for(lambda: (watch / "done" / "slow.dcm").exists(), 20, what="the closed file to move to done/")
        assert (watch / "done" / "slow.dcm").read_bytes() == data
        wait_for(lambda: hub.get(f"/api/v1/instances/{sop}/file")[0] == 200, 30,
                 what="the watched file to reach the hub")
        # not DICOM: set aside, never sent
        (watch / "notes.txt").write_text("shift handover notes\n")
        wait_for(lambda: (watch / "failed" / "notes.txt").exists(), 20, what="the text file to move to failed/")
        wait_for(edge.drained, 20, what="the spool to empty")
        # a folder: its files are not taken, and the log says so (without its name)
        (watch / "WANG^XIAOMING").mkdir()
        (watch / "WANG^XIAOMING" / "ct.dcm").write_bytes(data)
        warning = "a folder was put in the watch folder; only files are taken"
        wait_for(lambda: warning in edge.proc.log_tail(100000), 20, what="the folder's warning")
        assert "WANG^XIAOMING" not in edge.proc.log_tail(100000)
    finally:
        edge.stop()
        hub.stop()


def test_files_there_before_start_are_taken_only_when_no_writer_has_them_open(tmp_path):
    """A modality that began writing before the gateway started (say, the
    gateway was restarted mid-transfer) keeps its file to itself until it
    closes it; a complete file left from before is taken at start."""
    watch = tmp_path / "watch"
    watch.mkdir()
    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    (tmp_path / "hub" / "keys").mkdir(parents=True)
    edge = Edge(tmp_path / "edge", hub.endpoint, hub.key_file, tmp_path, watch=watch)
    allow(hub.keys_dir, "edge:clinic7", edge.make_key())
    small = corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"
    data = small.read_bytes()
    left = corpus_root() / "dicom" / "explicit_le" / "MR_small.dcm"
    (watch / "left-over.dcm").write_bytes(left.read_bytes())
    target = watch / "open.dcm"
    fp = open(target, "wb")
    try:
        fp.write(data[: len(data) // 3])
        fp.flush()
        hub.start()
        edge.start()
        wait_for(lambda: (watch / "done" / "left-over.dcm").exists(), 20,
                 what="the complete file from before start to be taken")
        time.sleep(3)  # longer than any stability wait
        assert target.exists() and not (watch / "done" / "open.dcm").exists() \
            and not (watch / "failed" / "open.dcm").exists(), "a file its writer still has open was taken"
        fp.write(data[len(data) // 3:])
        fp.close()
        wait_for(lambda: (watch / "done" / "open.dcm").exists(), 20, what="the closed file to move to done/")
        assert (watch / "done" / "open.dcm").read_bytes() == data
        sop = str(dcmread(small).SOPInstanceUID)
        wait_for(lambda: hub.get(f"/api/v1/instances/{sop}/file")[0] == 200, 30,
                 what="the file to reach the hub")
    finally:
        if not fp.closed:
            fp.close()
        edge.stop()
        hub.stop()

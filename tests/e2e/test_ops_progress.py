"""Progress an operator can see, with real processes:

- `dxhub push` of a large study (a generated 40-slice CT series, 21 MB)
  draws a bar redrawn in place with bytes, rate and ETA when stderr is a
  terminal (a pty), and writes plain progress lines — no carriage returns,
  no terminal codes — when it is not;
- `dxhub edge --status` shows each study's progress toward the hub: with
  the hub down nothing is acknowledged and the STAT study is listed first;
  once the hub is up every instance is acknowledged and the study is
  "delivered", and the hub holds them all.
"""
import os
import pty
import re
import subprocess
from pathlib import Path

import pydicom
import pytest

from edgeutil import Edge, Hub, allow, corpus_root, dxhub_bin, keygen, run, wait_for

REPO = Path(__file__).resolve().parents[2]
SLICES = 40
PLAIN = re.compile(r"^push: +(\d+)%  ([\d.]+ [KMG]?B) of ([\d.]+ [KMG]?B) \((\d+) of (\d+) files\)  "
                   r"[\d.]+ [KMG]?B/s  (ETA|done in) \S+", re.M)


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory):
    out = tmp_path_factory.mktemp("ct") / "series"
    subprocess.run(["/usr/bin/python3", REPO / "samples" / "gen_ct_series.py", "--slices", str(SLICES),
                    "--out", out, "--name", "progress"], check=True, stdout=subprocess.DEVNULL)
    files = sorted(out.iterdir())
    assert len(files) == SLICES
    return out


def test_push_writes_plain_progress_lines_when_not_a_terminal(ct_series, tmp_path):
    r = run([dxhub_bin(), "push", "--edge-data", tmp_path / "edge", ct_series], timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    # a fresh folder: one note that a new queue was made there, then only progress
    note, err = _split_note(r.stderr.decode())
    assert "held no gateway queue" in note, note
    assert "\r" not in err and "\x1b" not in err
    lines = PLAIN.findall(err)
    assert len(lines) >= 3, err
    assert len(lines) == len(err.splitlines()), err  # nothing else on stderr
    pcts = [int(l[0]) for l in lines]
    assert pcts == sorted(pcts) and pcts[-1] == 100 and lines[-1][5] == "done in"
    assert [l[5] for l in lines[:-1]] == ["ETA"] * (len(lines) - 1)
    total = sum(f.stat().st_size for f in ct_series.iterdir())
    assert lines[-1][1] == lines[-1][2] and float(lines[-1][2].split()[0]) == pytest.approx(total / 1e6, abs=0.06)
    assert lines[-1][3] == lines[-1][4] == str(SLICES)
    assert len(re.findall(r"^queued  ", r.stdout.decode(), re.M)) == SLICES
    # --quiet: no progress at all
    r = run([dxhub_bin(), "push", "--quiet", "--edge-data", tmp_path / "edge", ct_series], timeout=120)
    assert r.returncode == 0 and r.stderr == b""


def _split_note(err):
    """(the fresh-queue note, the rest of stderr)."""
    keep, note = [], ""
    for line in err.splitlines(keepends=True):
        if "held no gateway queue" in line:
            note = line
        else:
            keep.append(line)
    return note, "".join(keep)


def test_push_draws_a_bar_with_rate_and_eta_on_a_terminal(ct_series, tmp_path):
    master, slave = pty.openpty()
    # stdout on the same terminal, as a person sees it
    p = subprocess.Popen([dxhub_bin(), "push", "--edge-data", str(tmp_path / "edge"), str(ct_series)],
                         stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    got = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the pty
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    assert p.wait(60) == 0
    text = got.decode()
    frames = text.split("\r")
    bars = [f for f in frames if re.search(r"push \[[#.]{24}\] +\d+%", f)]
    assert bars, repr(text)
    assert all(f.startswith("\x1b[K") for f in bars)  # each redraw erases the last
    assert "ETA" in text and re.search(r"[\d.]+ [KMG]?B/s", text)
    last = bars[-1]
    assert re.search(r"\[#{24}\] 100%  ([\d.]+ MB) of \1  [\d.]+ [KMG]?B/s  in \S+", last), repr(last)
    assert text.endswith("\n")
    # each "queued" line starts where the bar was erased, never after the bar's text
    assert len(re.findall(r"(?:^|\r\x1b\[K)queued  ", text, re.M)) == SLICES, repr(text[:3000])
    assert not re.search(r"\][^\r\n]*queued", text)


def study_block(status_text, study_uid):
    m = re.search(rf"^  {re.escape(study_uid)} \((\w+)(, referral)?\)\n      (\d+)/(\d+) instances acknowledged, "
                  r"(.+?) of (.+?) sent \((\d+)%\): (.+)$", status_text, re.M)
    assert m, status_text
    return {"priority": m.group(1), "acked": int(m.group(3)), "instances": int(m.group(4)), "sent": m.group(5),
            "total": m.group(6), "pct": int(m.group(7)), "state": m.group(8), "pos": m.start()}


def test_edge_status_shows_each_study_toward_the_hub_down_then_up(ct_series, tmp_path):
    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    hub.data.mkdir()
    keygen(hub.keys_dir, "hub")  # the edge needs the hub's key before the hub ever ran
    edge = Edge(tmp_path / "clinic", hub.endpoint, hub.key_file, tmp_path)
    allow(hub.keys_dir, "edge:clinic", edge.make_key())
    stat_file = corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"
    stat_study = pydicom.dcmread(stat_file, stop_before_pixels=True).StudyInstanceUID
    ct_study = pydicom.dcmread(next(ct_series.iterdir()), stop_before_pixels=True).StudyInstanceUID
    edge.start()
    try:
        rc, queued, out = edge.push([ct_series])
        assert rc == 0 and len(queued) == SLICES, out
        rc, queued, out = edge.push([stat_file], priority="stat")
        assert rc == 0 and len(queued) == 1, out
        # the hub is down: nothing acknowledged, STAT first
        text = edge.status_text()
        ct, st = study_block(text, ct_study), study_block(text, stat_study)
        assert (ct["acked"], ct["instances"], ct["state"], ct["sent"]) == (0, SLICES, "waiting", "0 B")
        assert (st["acked"], st["instances"], st["state"], st["priority"]) == (0, 1, "waiting", "stat")
        assert st["pos"] < ct["pos"]
        hub.start()
        wait_for(lambda: study_block(edge.status_text(), ct_study)["state"] == "delivered", 60,
                 what="the CT study delivered")
        text = edge.status_text()
        ct, st = study_block(text, ct_study), study_block(text, stat_study)
        assert (ct["acked"], ct["instances"], ct["pct"]) == (SLICES, SLICES, 100) and ct["sent"] == ct["total"]
        assert (st["acked"], st["state"]) == (1, "delivered")
        assert len(re.findall(r"\bsop_instance_uid\b", str(hub.study(ct_study)))) == SLICES
    finally:
        edge.stop()
        hub.stop()

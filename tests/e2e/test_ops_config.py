"""Operating dxhub from a configuration file (`--config`, `--print-config`)
and its logs on SIGHUP, with real processes:

- `--print-config` prints INI that `--config` reads back to the same
  settings, for the hub and the edge; a value changed in the file shows in
  the next `--print-config`, and a command-line option beats the file;
- a hub started from nothing but a file listens where the file says (its
  ready line names the file's AE title) and logs to the file's `log`;
- a bad file (unknown key, bad value, wrong section) stops the role with
  exit 2 and one line naming the file, the line, the key and why;
- SIGHUP reopens the log file (logrotate's move-then-HUP), reloads the
  allow-list (new lines go to a new file, none to the moved one) and loads
  a trust list that arrived after the start;
- a burst of SIGHUPs (logrotate HUPs once per file it rotates) never ends
  the hub or the edge, whatever their threads are doing meanwhile;
- readers.conf and allow.txt saved on Windows (CR LF, blank lines) load,
  and a reader or key listed twice is refused on SIGHUP naming the file
  and line, the old ones kept.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from edgeutil import Edge, Hub, Proc, allow, dxhub_bin, keygen, run, wait_for


def print_config(role, *args):
    r = run([dxhub_bin(), role, *map(str, args), "--print-config"], timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def ini_value(text, key):
    m = re.search(rf"^{re.escape(key)} = (.*)$", text, re.M)
    return m.group(1) if m else None


@pytest.mark.parametrize("role", ["serve", "edge"])
def test_print_config_round_trips_and_file_changes_show(role, tmp_path):
    first = print_config(role)
    f = tmp_path / f"{role}.ini"
    f.write_text(first)
    assert print_config(role, "--config", f) == first
    # change two settings in the file: both show, nothing else moves
    changed = first.replace("dicom-port = " + ini_value(first, "dicom-port"), "dicom-port = 4242")
    changed = changed.replace("log-level = info", "log-level = debug")
    changed = changed.replace("; watch =" if role == "edge" else "; retain-days =",
                              "watch = /srv/incoming" if role == "edge" else "retain-days = 30")
    f.write_text(changed)
    second = print_config(role, "--config", f)
    assert ini_value(second, "dicom-port") == "4242"
    assert ini_value(second, "log-level") == "debug"
    assert ini_value(second, "watch" if role == "edge" else "retain-days") == (
        "/srv/incoming" if role == "edge" else "30")
    assert second == changed.replace("\r", "")
    # the command line beats the file
    third = print_config(role, "--config", f, "--dicom-port", "5151", "--aet", "FROMCLI")
    assert ini_value(third, "dicom-port") == "5151" and ini_value(third, "aet") == "FROMCLI"
    assert ini_value(third, "log-level") == "debug"


@pytest.mark.parametrize("text,line,key,why", [
    ("[dicom]\naet = A\n\n[dicom]\ndicom-prot = 1\n", 5, "dicom-prot", "unknown key"),
    ("[hub]\nstable-seconds = soon\n", 2, "stable-seconds", "belongs in section [store]"),
    ("[store]\nstable-seconds = soon\n", 2, "stable-seconds", "'soon' is not a whole number"),
    ("[dicom]\naet = MUCH_TOO_LONG_AE_TITLE\n", 2, "aet", "must be 1 to 16 characters"),
    ("[http]\nhttp-port = 99999\n", 2, "http-port", "is not a port"),
])
def test_bad_config_file_is_refused_naming_file_line_key_and_why(text, line, key, why, tmp_path):
    f = tmp_path / "hub.ini"
    f.write_text(text)
    r = run([dxhub_bin(), "serve", "--config", f, "--data", tmp_path / "never"], timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 2
    assert len(err.splitlines()) == 1, err
    assert f"{f}:{line}:" in err and key in err and why in err, err
    assert not (tmp_path / "never").exists()  # nothing started


def test_hub_runs_from_a_file_and_sighup_reopens_its_log(tmp_path):
    data, log = tmp_path / "hub", tmp_path / "hub.log"
    cfg = tmp_path / "hub.ini"
    cfg.write_text(f"[hub]\ndata = {data}\nlog = {log}\n[dicom]\ndicom-port = 0\naet = FROMFILE\nopen-dicom = yes\n"
                   "[http]\nhttp-port = 0\n[edges]\nedge-port = 0\n[readers]\nreader-port = 0\n"
                   "[store]\nstable-seconds = 2\n")
    extra = []
    if "--peer-port" in run([dxhub_bin(), "serve", "--help"]).stdout.decode():
        extra = ["--peer-port", "0"]
    hub = Proc([dxhub_bin(), "serve", "--config", cfg] + extra, tmp_path / "hub.out",
               r"dxhub serve: ready .*aet=(\S+)")
    m = hub.start()
    try:
        assert m.group(1) == "FROMFILE"
        wait_for(lambda: "ready:" in log.read_text(), 10, what="the ready line in the log file")
        # logrotate: move the file away, then SIGHUP
        rotated = tmp_path / "hub.log.1"
        os.rename(log, rotated)
        edge_pub = keygen(tmp_path / "edgekeys", "edge")
        allow(data / "keys", "edge:clinic9", edge_pub)
        hub.signal(signal.SIGHUP)
        # the trust list is the last thing SIGHUP reloads
        wait_for(lambda: log.exists() and "SIGHUP: still no trust list" in log.read_text(), 10,
                 what="a new log file after SIGHUP")
        new = log.read_text()
        assert "log file reopened" in new
        assert re.search(r"allow-list reloaded \((\d+) keys\)", new).group(1) != "0"
        old = rotated.read_text()
        assert "ready:" in old and "SIGHUP:" not in old
        assert "trust list" in old  # started without one
        # a consortium CA arrives: SIGHUP loads the trust list without a restart
        r = run([dxhub_bin(), "keygen", "--ca", "--facility", "HOSP", "--keys", tmp_path / "ca"], timeout=60)
        assert r.returncode == 0, r.stderr.decode()
        for name in ("ca.pem", "crl.pem"):
            shutil.copy(tmp_path / "ca" / name, data / "keys" / "trust" / f"hosp-{name}")
        hub.signal(signal.SIGHUP)
        wait_for(lambda: "trust list loaded" in log.read_text(), 10, what="the trust list loaded on SIGHUP")
        hub.signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: trust list reloaded" in log.read_text(), 10, what="the trust list reloaded")
        new = log.read_text()
        # one line per event: time, level, role
        for line in (old + new).splitlines():
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) serve: \S", line), line
    finally:
        assert hub.stop() == 0
    assert "stopping" in log.read_text()


def test_readme_configuration_reference_matches_the_option_tables():
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run(["/usr/bin/python3", repo / "docs" / "config_reference.py", "--check", dxhub_bin(),
                        repo / "README.md"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, r.stdout.decode()
    text = (repo / "README.md").read_text()
    for role in ("serve", "edge", "workstation"):
        for line in print_config(role).splitlines():
            m = re.match(r"^(?:; )?([a-z-]+) =", line)
            if m:
                assert f"| `{m.group(1)}` |" in text, f"README lacks {role}'s {m.group(1)}"


def test_a_burst_of_sighups_never_ends_the_hub_or_the_edge(tmp_path):
    """Signals are the main loop's; a thread that left them unblocked took a
    SIGHUP that came while the loop was busy, with the default action."""
    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    hub.keys_dir.mkdir(parents=True)
    edge = Edge(tmp_path / "edge", hub.endpoint, hub.key_file, tmp_path)
    allow(hub.keys_dir, "edge:clinic1", edge.make_key())
    hub.start()
    edge.start()
    try:
        for proc in (hub.proc, edge.proc):
            for _ in range(3000):  # dies within the first hundred without the fix
                proc.signal(signal.SIGHUP)
                time.sleep(0.0002)
            time.sleep(0.3)
            assert proc.p.poll() is None, f"{proc.args[1]} ended on SIGHUP: {proc.p.returncode}"
        status, body = hub.get("/api/v1/health")
        assert status == 200, body
    finally:
        assert edge.stop() == 0
        assert hub.stop() == 0


def test_windows_edited_files_load_and_a_bad_one_on_sighup_is_named_and_the_old_one_kept(tmp_path):
    """Hospital IT edits readers.conf and allow.txt on a Windows PC: CR LF
    and blank lines load.  A reader or key listed twice is refused on
    SIGHUP naming the file, the line and the first one, and the hub keeps
    serving with what it had."""
    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    hub.keys_dir.mkdir(parents=True)
    pubs = [keygen(tmp_path / f"r{i}", f"dr-{i}") for i in range(2)]
    for i, pub in enumerate(pubs):
        allow(hub.keys_dir, f"reader:dr-{i}", pub)
    allow_txt = hub.keys_dir / "allow.txt"
    allow_txt.write_bytes(b"\r\n" + allow_txt.read_bytes().replace(b"\n", b"\r\n") + b"\r\n")
    readers = hub.data / "readers.conf"
    readers.write_bytes(b"# id seniority modalities kinds facilities max\r\n\r\n"
                        b"dr-0  attending  CT  imaging  *  3\r\ndr-1  resident  DX  imaging  *  2\r\n")
    hub.start()
    log = hub.proc.log_path
    try:
        text = log.read_text()
        assert "reader profiles" not in text, text  # neither missing nor refused
        hub.proc.signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: 2 reader profiles loaded" in log.read_text(), 10, what="the profiles reloaded")
        assert "SIGHUP: allow-list reloaded (2 keys)" in log.read_text()

        readers.write_text("dr-0 attending CT imaging * 3\ndr-0 chief MR imaging * 1\n")
        key0 = allow_txt.read_text().split("reader:dr-0")[0].split()[-1]
        with allow_txt.open("a") as f:
            f.write(f"{key0} edge:clinic1\n")
        hub.proc.signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: reader profiles not reloaded" in log.read_text(), 10, what="the refusal")
        text = log.read_text()
        assert f"{readers}:2: reader dr-0 is listed twice (first on line 1)" in text, text
        assert re.search(rf"allow-list not reloaded \(kept the old ones\): {re.escape(str(allow_txt))}:\d+: "
                         r"the same key is listed twice \(first on line \d+, as reader:dr-0\)", text), text
        status, body = hub.get("/api/v1/health")
        assert status == 200, body
        health = json.loads(body)
        # the old profiles stay in force, and the refusals are counted for the operator
        assert health["reader_profiles"] == 2 and health["config_reload_failures"] == 2, health
        out = run([dxhub_bin(), "status", "--hub", f"http://127.0.0.1:{hub.http_port}"]).stdout.decode()
        assert "readers    2 profiles" in out and "config     2 reload(s) refused" in out, out
    finally:
        assert hub.stop() == 0


def test_a_readers_file_refused_at_start_shows_in_health_and_status(tmp_path):
    """The hub keeps taking studies, but says loudly that nobody can read."""
    hub = Hub(tmp_path / "hub", tmp_path, stable_seconds=600)
    hub.data.mkdir(parents=True)
    (hub.data / "readers.conf").write_text("dr-0 attending ct imaging * 3\n")
    hub.start()
    try:
        text = hub.proc.log_path.read_text()
        assert re.search(r"error serve: reader profiles not loaded: \S*readers\.conf:1: modalities are DICOM codes "
                         r"in capitals", text), text
        status, body = hub.get("/api/v1/health")
        assert status == 200 and json.loads(body)["reader_profiles"] is None, body
        out = run([dxhub_bin(), "status", "--hub", f"http://127.0.0.1:{hub.http_port}"]).stdout.decode()
        assert "readers    NO PROFILES: readers.conf is missing or was refused" in out, out
        assert "dxhub_reader_profiles 0" in urllib.request.urlopen(
            f"http://127.0.0.1:{hub.http_port}/metrics", timeout=10).read().decode()
    finally:
        assert hub.stop() == 0

"""The trust list's deadline, said before it comes (hub/trust_watch.c).

A facility CA's revocation list carries a nextUpdate (30 days from
`dxhub keygen`); past it, the hub refuses every report signed under that
CA.  The hub says when that comes — on /metrics, in health and
`dxhub status`, and in its log from 7 days before (an error once passed,
or when a CA has no revocation list at all) — and a re-signed CRL copied
in and a SIGHUP move it.  Time runs 40 days ahead for one hub through
libfaketime, as in test_clock_steps.py.
"""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from hubutil import Hub, dxhub_path

FACILITY = "lead-hospital"
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def make_ca(base, crl_days=None):
    ca = base / "ca"
    args = [dxhub_path(), "keygen", "--ca", "--facility", FACILITY, "--keys", str(ca)]
    if crl_days:
        args += ["--crl-days", str(crl_days)]
    subprocess.run(args, check=True, capture_output=True)
    return ca


def trust(hub_data, ca, crl=True):
    t = hub_data / "keys" / "trust"
    t.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca / "ca.pem", t / "ca.pem")
    if crl:
        shutil.copyfile(ca / "crl.pem", t / "crl.pem")
    return t


def status_text(hub):
    r = subprocess.run([dxhub_path(), "status", "--hub", f"http://127.0.0.1:{hub.http_port}"], capture_output=True,
                       text=True, timeout=30)
    return r.stdout


def deadline(hub):
    return hub.metrics().get("dxhub_trust_deadline_timestamp_seconds")


def test_a_revocation_list_due_soon_is_said_and_a_fresh_one_moves_it(tmp_path):
    ca = make_ca(tmp_path, crl_days=3)
    trust(tmp_path / "hub", ca)
    hub = Hub(tmp_path / "hub", log_dir=tmp_path)
    try:
        hub.start()
        due = deadline(hub)
        assert due and abs(due - (time.time() + 3 * 86400)) < 600, due  # lastUpdate is set a little back
        log = hub.err_path.read_text()
        m = re.search(r"warn serve: trust list: the revocation list of CA (.+?) is due on (\S+ \S+ UTC) \(in (\d+) h\): "
                      r"reports signed under it will be refused after that; re-sign it \(dxhub keygen --crl --ca "
                      r"CADIR\), copy crl.pem into (\S+), then SIGHUP the hub", log)
        assert m and m.group(3) in ("71", "72") and m.group(4) == str(tmp_path / "hub" / "keys" / "trust"), log
        assert FACILITY in m.group(1)
        assert re.search(r"trust\s+revocation lists and CAs good for 2 more days -- RE-SIGN", status_text(hub))
        status, _, body = hub.health()
        assert b'"trust_deadline_s":' in body

        # The CA operator re-signs the CRL for 30 days and copies it in; SIGHUP.
        subprocess.run([dxhub_path(), "keygen", "--crl", "--ca", str(ca), "--crl-days", "30"], check=True,
                       capture_output=True)
        trust(tmp_path / "hub", ca)
        hub.proc.send_signal(signal.SIGHUP)
        hub.wait_for(lambda: deadline(hub) and deadline(hub) > time.time() + 29 * 86400, 10,
                     "the deadline to move with the fresh revocation list")
        text = status_text(hub)
        assert re.search(r"trust\s+revocation lists and CAs good for (29|30) more days\n", text), text
    finally:
        hub.close()


def test_a_revocation_list_out_of_date_or_missing_is_an_error(tmp_path):
    ca = make_ca(tmp_path)  # 30 days
    trust(tmp_path / "hub", ca)
    later = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "+40d", "DONT_FAKE_MONOTONIC": "1"}
    if os.environ.get("ASAN_OPTIONS") is not None:  # a sanitizer build: its runtime is not first then
        later["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":verify_asan_link_order=0"
    hub = Hub(tmp_path / "hub", log_dir=tmp_path, env=later)
    try:
        hub.start()
        log = hub.err_path.read_text()
        assert re.search(r"error serve: trust list: the revocation list of CA .+ went out of date on \S+ \S+ UTC: "
                         r"every report signed under it is refused now", log), log
        assert "A CA'S REVOCATION LIST IS OUT OF DATE" in status_text(hub)
        status, _, body = hub.health()
        assert int(re.search(rb'"trust_deadline_s":(-?\d+)', body).group(1)) < 0
    finally:
        hub.close()

    # The same CA with no revocation list at all: nothing under it is accepted.
    (tmp_path / "hub" / "keys" / "trust" / "crl.pem").unlink()
    hub = Hub(tmp_path / "hub", log_dir=tmp_path)
    try:
        hub.start()
        assert re.search(r"error serve: trust list: CA .+ has no revocation list in \S+: every report signed under "
                         r"it is refused; copy the CA's crl.pem there", hub.err_path.read_text())
        assert deadline(hub) == 1
    finally:
        hub.close()


def test_no_trust_list_is_said_by_status(tmp_path):
    hub = Hub(tmp_path / "hub", log_dir=tmp_path)
    try:
        hub.start()
        assert deadline(hub) is None
        assert "NO TRUST LIST: signed reports are refused" in status_text(hub)
    finally:
        hub.close()


def test_the_clinics_export_says_when_its_trust_list_refuses(tmp_path):
    """`dxhub reports --export` at a clinic verifies against the clinic's
    copy of the trust list: it says first that the copy is about to refuse
    (or refuses already), before a report is refused for it."""
    ca = make_ca(tmp_path, crl_days=2)
    t = tmp_path / "trust"
    t.mkdir()
    for f in ("ca.pem", "crl.pem"):
        shutil.copyfile(ca / f, t / f)
    edge = tmp_path / "edge"
    r = subprocess.run([dxhub_path(), "push", "--edge-data", str(edge), "--quiet",  # makes the gateway's spool
                        os.path.join(os.environ.get("DXHUB_CORPUS", "/nonexistent"), "dicom/explicit_le/CT_small.dcm")],
                       capture_output=True, text=True, timeout=60)
    assert (edge / "data.mdb").exists(), r.stderr
    args = [dxhub_path(), "reports", "--edge-data", str(edge), "--export", str(tmp_path / "out"), "--trust", str(t)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert re.search(r"dxhub reports: note: trust list: the revocation list of CA .+ is due on \S+ \S+ UTC \(in \d+ h\)"
                     rf": reports signed under it will be refused after that; re-sign it .+ copy crl.pem into {t}",
                     r.stderr), r.stderr
    later = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME="+3d")
    if os.environ.get("ASAN_OPTIONS") is not None:
        later["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":verify_asan_link_order=0"
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=later)
    assert re.search(r"dxhub reports: trust list: the revocation list of CA .+ went out of date on .+: every report "
                     r"signed under it is refused now", r.stderr), r.stderr

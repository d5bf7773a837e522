"""A reader's signing certificate ends on the date its facility's CA chose;
the hub refuses every report signed after it.  The workstation says so
ahead — a warning at start and `certificate` in /api/session (which the
page shows) from 30 days before — and, once it has ended, refuses to sign
with the date and what to do, before anything reaches the hub.  Real
certificates from `dxhub keygen --reader --days N` (negative: already
ended), a real hub and workstations."""
import datetime
import json
import re

import pytest

from edgeutil import corpus_root, dxhub_bin, run, wait_for
from wsutil import FACILITY, World, ct_study


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("wscert")
    w = World(base, {"cert-att": ("CT", "imaging", "王伟")}, lease_seconds=10)
    try:
        w.start()
        w.ct, files = ct_study(corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm", base / "ct")
        w.send(files)
        wait_for(lambda: w.studies().get(w.ct) == "queued", 30, interval=0.1, what="the study queued")
        yield w
    finally:
        w.close()


def certificate(world, days):
    """cert-att's key and certificate chain, valid for `days` from now."""
    out = world.base / f"pki{days}"
    r = run([dxhub_bin(), "keygen", "--reader", "cert-att", "--name", "王伟", "--role", "attending", "--facility",
             FACILITY, "--ca", world.base / "ca", "--keys", out, "--passphrase-file", world.pass_file,
             "--days", days])
    assert r.returncode == 0, r.stderr.decode()
    return out / "cert-att.key", out / "cert-att.chain.pem"


def start(world, days):
    key, chain = certificate(world, days)
    return world.workstation("cert-att", "--sign-key", key, "--cert", chain, name=f"days{days}")


def expected_end(days):
    """The certificate's last day (UTC): the day of now + days, or of a
    minute before, should the certificate have been made across midnight."""
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    return {t.strftime("%Y-%m-%d") for t in (now, now - datetime.timedelta(minutes=1))}


def test_a_certificate_ending_soon_is_said_at_start_and_in_the_session(world):
    ws = start(world, 10)
    try:
        c = ws.json("GET", "/api/session")["certificate"]
        assert c["ends"] in expected_end(10) and c["days_left"] in (9, 10) and c["warn_days"] == 30, c
        log = ws.proc.log_tail(20000)
        # whole days, rounded down: the start and the session may fall either side of a whole day
        assert re.search(rf"warning: --cert: the signing certificate ends on {c['ends']} \(UTC\), in (9|10) "
                         rf"days: ask {FACILITY}'s CA for a new one", log), log
    finally:
        ws.proc.stop()


def test_a_certificate_with_time_left_is_not_warned_about(world):
    ws = world.workstation("cert-att", name="default")  # keygen's default validity
    try:
        c = ws.json("GET", "/api/session")["certificate"]
        assert c["days_left"] >= 30, c
        assert "signing certificate" not in ws.proc.log_tail(20000)
    finally:
        ws.proc.stop()


def test_an_ended_certificate_cannot_sign_and_the_reader_is_told_why(world):
    ws = start(world, -1)
    try:
        c = ws.json("GET", "/api/session")["certificate"]
        assert c["days_left"] < 0 and c["ends"] in expected_end(-1), c
        assert f"warning: --cert: your signing certificate ended on {c['ends']}" in ws.proc.log_tail(20000)
        tid = ws.wait_tasks([world.ct])[0]["id"]
        ws.json("POST", f"/api/tasks/{tid}/claim")
        body = {"action": "sign", "findings": "双肺纹理清晰。", "impression": "未见明显异常。", "critical": False}
        status, _, data = ws.request("POST", f"/api/tasks/{tid}/submit", body)
        err = json.loads(data)["error"]
        assert status == 403 and f"your signing certificate ended on {c['ends']} (UTC)" in err, (status, err)
        assert f"ask {FACILITY}'s CA for a new one" in err, err
        assert world.reports() == {} and world.studies()[world.ct] != "signed"
        # a draft is still kept: the reading is not lost while a new certificate comes
        draft = dict(body, action="draft")
        assert ws.json("POST", f"/api/tasks/{tid}/submit", draft)["state"] == "drafted"
        ws.json("POST", f"/api/tasks/{tid}/release")
    finally:
        ws.proc.stop()

"""The clinics as the lead hospital's operator sees them, every part a real
process: a hub, a clinic's gateway (clinic1) and a second clinic allowed
but never connected (clinic2); a reader signs a critical-value report for
clinic1 while its gateway is down.

A critical-value alert (危急值) waits in the hub's outbox until the clinic's
gateway takes it, so a gateway that is down holds it back: GET
/api/v1/clinics, /metrics and `dxhub status` say which clinic has not taken
what since when, and the hub's log says "phone the clinic" once the alert
has waited --alert-warn-seconds.  When the gateway comes back, the alert
reaches it and nothing waits any more."""
import json
import os
import re
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from edgeutil import Edge, Proc, allow, dxhub_bin, keygen, run, wait_for
from hubutil import synth_instance, uid_root

READER = "dr-chen"
PASS = "correct horse battery staple"
READY = (r"dxhub serve: ready dicom=[0-9.]+:(\d+) .*http=[0-9.]+:(\d+) edge=(tcp://[0-9.]+:\d+) "
         r"readers=(tcp://[0-9.]+:\d+) .*key=(\S+)")


LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def a_week_on():
    """The environment of a command run 8 days from now (libfaketime, Debian faketime)."""
    assert LIBFAKETIME.exists(), "libfaketime (Debian faketime, installed by make deps) is missing"
    return {**os.environ, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": "+8d"}


def dx(*args, timeout=60):
    r = run([dxhub_bin(), *args], timeout=timeout)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    return r


class World:
    def get(self, path):
        r = subprocess.run(["curl", "-s", "-m", "10", f"http://127.0.0.1:{self.http_port}{path}"],
                           stdout=subprocess.PIPE, timeout=20)
        return r.stdout.decode()

    def clinics(self):
        return {c["facility"]: c for c in json.loads(self.get("/api/v1/clinics"))["clinics"]}


def push_and_take(w, name, patient, patient_name="TEST^HUB"):
    """A one-instance STAT study pushed through the clinic's gateway, and the reader's task for it."""
    study = uid_root(name)
    src = w.base / f"src-{name}"
    src.mkdir()
    f = synth_instance(src / "1.dcm", study, f"{study}.1", f"{study}.1.1", 1, patient_id=patient, rows=32, cols=32,
                       patient_name=patient_name)
    rc, _, out = w.edge.push([f], priority="stat")
    assert rc == 0, out
    r = dx("reader", "--hub", w.reader_ep, "--hub-key", w.hub_key, "--keys", w.base / "rkeys", "--name", READER,
           "--json", "--take", "1", "--wait", "30", "--fetch-to", w.base / f"fetched-{name}", timeout=90)
    task = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert task["study"] == study, task
    return task


def sign_critical(w, task, report_id, impression):
    """The reader reports a critical value on task, signs and submits it: the hub sends it to clinic1."""
    base = w.base
    report = base / f"{report_id}.json"
    dx("report", "--study-dir", task["fetched"]["dir"], "--report-id", report_id, "--reader", READER,
       "--name", "陈医生", "--origin", "clinic1", "--reading-facility", "LEAD", "--findings", "大量心包积液",
       "--impression", impression, "--critical", report)
    dx("sign", "--key", base / "pki" / f"{READER}.key", "--cert", base / "pki" / f"{READER}.chain.pem",
       "--passphrase-file", base / "pass.txt", report)
    dx("reader", "--hub", w.reader_ep, "--hub-key", w.hub_key, "--keys", base / "rkeys", "--name", READER,
       "--json", "--task", str(task["task"]), "--action", "sign", "--report-id", report_id, "--submit", report,
       "--sig", f"{report}.sig", "--chain", f"{report}.chain.pem")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("clinics")
    w = World()
    w.base = base
    keys = base / "hubkeys"
    (base / "pass.txt").write_text(PASS + "\n")
    dx("keygen", "--ca", "--facility", "LEAD", "--keys", base / "ca")
    dx("keygen", "--reader", READER, "--name", "陈医生", "--role", "attending", "--facility", "LEAD", "--ca",
       base / "ca", "--keys", base / "pki", "--passphrase-file", base / "pass.txt")
    (keys / "trust").mkdir(parents=True)
    for f in ("ca.pem", "crl.pem"):
        shutil.copyfile(base / "ca" / f, keys / "trust" / f)
    (base / "readers.conf").write_text(f"{READER} attending CT imaging * 3\n")
    allow(keys, f"reader:{READER}", keygen(base / "rkeys", READER))
    (base / "edge").mkdir()
    allow(keys, "edge:clinic1", keygen(base / "edge" / "keys", "edge"))
    allow(keys, "edge:clinic2", keygen(base / "other", "edge"))
    hub = Proc([dxhub_bin(), "serve", "--data", base / "hub", "--keys", keys, "--readers", base / "readers.conf",
                "--stable-seconds", 600, "--alert-warn-seconds", 1, "--open-dicom", "--dicom-port", 0,
                "--http-port", 0, "--edge-port", 0, "--reader-port", 0, "--peer-port", 0], base / "hub.log", READY)
    edge = None
    try:
        m = hub.start(30)
        w.http_port, edge_ep, reader_ep, hub_key = int(m.group(2)), m.group(3), m.group(4), keys / "hub.pub"
        w.hub, w.hub_url = hub, f"http://127.0.0.1:{w.http_port}"
        # the clinic's on-alert command: fails until the nurses' PC is "up" (the file ok), then
        # leaves what it was given where the test reads it
        w.announced, w.ok = base / "announced", base / "ok"
        w.announced.mkdir()
        cmd = (f'test -e {w.ok} || exit 3; echo "$DXHUB_ALERT_ID" >> {base}/runs.log; '
               f'env | grep ^DXHUB_ > {base}/env.tmp && mv {base}/env.tmp {w.announced}/"$DXHUB_ALERT_ID".env')
        w.runs = base / "runs.log"
        edge = Edge(base / "edge", edge_ep, hub_key, base, extra=("--facility", "clinic1", "--on-alert", cmd))
        w.edge = edge
        edge.start()
        w.reader_ep, w.hub_key = reader_ep, hub_key
        task = push_and_take(w, "clinics-alert", "P-CL-1")
        w.heard = w.clinics()["clinic1"]  # connected, while its gateway runs
        edge.stop()  # the clinic's gateway goes down (a power cut) before the report is signed
        sign_critical(w, task, "rpt-cl-1", "心包填塞可能，请立即处理")
        w.signed_at = time.time()
        yield w
    finally:
        if edge:
            edge.kill()
        hub.stop()


def test_a_clinic_whose_gateway_is_down_is_shown_with_the_alert_it_has_not_taken(world):
    heard = world.heard
    nothing = {"alerts": 0, "reports": 0, "oldest_alert": None, "oldest_alert_id": None, "oldest_report": None,
               "oldest_alert_seconds": 0, "unread_alerts": 0, "oldest_unread_alert": None,
               "oldest_unread_alert_id": None, "oldest_unread_seconds": 0}
    assert heard["connected"] is True and heard["waiting"] == nothing
    c = world.clinics()
    assert set(c) == {"clinic1", "clinic2"}
    one = c["clinic1"]
    seen = datetime.strptime(one["last_seen"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    assert time.time() - 120 < seen <= time.time() + 1
    assert one["waiting"]["alerts"] == 1 and one["waiting"]["reports"] == 0, one
    assert one["waiting"]["oldest_alert_id"] == "rpt-cl-1", one  # which report to phone about
    queued = datetime.strptime(one["waiting"]["oldest_alert"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(queued.replace(tzinfo=timezone.utc).timestamp() - world.signed_at) < 30
    # allowed, never connected
    assert c["clinic2"] == {"facility": "clinic2", "connected": False, "last_seen": None, "waiting": nothing}
    metrics = world.get("/metrics")
    parser = pytest.importorskip("prometheus_client.parser")
    families = {f.name: f for f in parser.text_string_to_metric_families(metrics)}
    assert families["dxhub_outbox_waiting"].type == "gauge"
    assert {s.labels["facility"] for s in families["dxhub_clinic_connected"].samples} == {"clinic1", "clinic2"}
    assert 'dxhub_outbox_waiting{facility="clinic1",kind="alert"} 1' in metrics
    assert 'dxhub_clinic_connected{facility="clinic2"} 0' in metrics
    m = re.search(r'^dxhub_outbox_oldest_timestamp_seconds\{facility="clinic1",kind="alert"\} (\d+)$', metrics, re.M)
    assert m and abs(int(m.group(1)) - world.signed_at) < 30
    # the operator is told to phone, once (not every check), and `dxhub status` says the same
    said = "clinic clinic1 has not taken 1 critical-value alert for"
    wait_for(lambda: said in world.hub.log_tail(200000), 20, what="the hub's log line")
    assert "phone the clinic" in world.hub.log_tail(200000)
    assert re.search(r"for \d+ min \(the oldest: rpt-cl-1\); its gateway", world.hub.log_tail(200000))
    time.sleep(2.5)  # a check a second (--alert-warn-seconds 1): still said once
    assert world.hub.log_tail(200000).count(said) == 1
    st = run([dxhub_bin(), "status", "--hub", world.hub_url]).stdout.decode()
    line = next(x for x in st.splitlines() if x.startswith("clinic") and "clinic1" in x)
    assert "1 CRITICAL-VALUE ALERT NOT TAKEN" in line and "(the oldest: rpt-cl-1): phone the clinic" in line, st
    assert any("clinic2" in x and "not heard since the hub started" in x for x in st.splitlines()), st


def test_the_gateway_back_takes_the_alert_and_nothing_waits(world):
    world.edge.start()
    wait_for(lambda: "rpt-cl-1" in run([dxhub_bin(), "reports", "--edge-data", world.edge.data]).stdout.decode(), 30,
             what="the alert at the clinic")
    # the nurse reads whose exam and the critical finding, not a file size
    inbox = run([dxhub_bin(), "reports", "--edge-data", world.edge.data]).stdout.decode()
    lines = inbox.splitlines()
    at = next(i for i, x in enumerate(lines) if "rpt-cl-1" in x)
    assert lines[at].startswith("ALERT"), inbox
    assert lines[at + 1].split() == ["patient", "P-CL-1", "TEST", "HUB", "·", "CT", "2024-01-01"], inbox
    assert lines[at + 2].strip() == "CRITICAL: 心包填塞可能，请立即处理", inbox
    one = wait_for(lambda: (lambda c: c if c["waiting"]["alerts"] == 0 else None)(world.clinics()["clinic1"]), 20,
                   what="the outbox emptied")
    assert one["connected"] is True and one["waiting"]["oldest_alert"] is None
    assert 'dxhub_outbox_waiting{facility="clinic1",kind="alert"} 0' in world.get("/metrics")
    assert one["waiting"]["unread_alerts"] == 1  # taken by the gateway; nobody has said they read it
    assert one["waiting"]["oldest_unread_alert_id"] == "rpt-cl-1" and one["waiting"]["oldest_alert_id"] is None
    metrics = world.get("/metrics")
    assert 'dxhub_alerts_unread{facility="clinic1"} 1' in metrics
    st = run([dxhub_bin(), "status", "--hub", world.hub_url]).stdout.decode()
    line = next(x for x in st.splitlines() if x.startswith("clinic") and "clinic1" in x)
    assert "NOT TAKEN" not in line and re.search(r"1 ALERT NOT CONFIRMED READ for \d+ min \(the oldest: rpt-cl-1\)",
                                                 line), st


def test_the_clinics_on_alert_command_tells_a_person_once_it_works_and_only_once(world):
    """The gateway back took the alert (previous test) while the clinic's
    command failed: it was logged and is tried again until it works; a
    restart does not announce it twice."""
    said = "on-alert: the command failed for alert rpt-cl-1 (exit status 3)"
    wait_for(lambda: said in world.edge.proc.log_tail(200000), 20, what="the failing command logged")
    assert list(world.announced.iterdir()) == []
    world.ok.touch()  # the nurses' PC is up again
    env_file = world.announced / "rpt-cl-1.env"
    wait_for(env_file.exists, 20, what="the command run again, and working")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert env["DXHUB_ALERT_ID"] == "rpt-cl-1" and env["DXHUB_ALERT_KIND"] == "critical", env
    assert env["DXHUB_PATIENT_ID"] == "P-CL-1" and env["DXHUB_EXAM"] == "CT 2024-01-01", env
    assert env["DXHUB_ALERT_TEXT"] == "心包填塞可能，请立即处理", env
    assert env["DXHUB_ALERT_SUMMARY"] == "CRITICAL VALUE: P-CL-1 TEST HUB · CT 2024-01-01: 心包填塞可能，请立即处理"
    # the gateway logs it once the command has exited and the spool recorded it
    log = wait_for(lambda: (lambda t: t if "announced alert rpt-cl-1" in t else None)(world.edge.proc.log_tail(200000)),
                   10, what="the announcement logged")
    assert log.count(said) == 1  # logged once, not every 5 s
    assert "P-CL-1" not in log and "TEST HUB" not in log  # the log names no patient
    world.edge.stop()
    world.edge.start()
    time.sleep(2)
    assert world.runs.read_text().split() == ["rpt-cl-1"]  # announced once, restarts or not


def test_a_person_confirms_reading_the_alert_and_the_hub_hears_it(world):
    """危急值 receipt: the gateway took the alert, but the hub's operator is
    told to phone until a person at the clinic says they read it."""
    said = "clinic clinic1 has not confirmed reading 1 critical-value alert"
    wait_for(lambda: said in world.hub.log_tail(200000), 20, what="the hub's unread-alert line")
    reports = lambda *a: run([dxhub_bin(), "reports", "--edge-data", world.edge.data, *a])  # noqa: E731
    assert "NOT CONFIRMED READ: once a person has read it, dxhub reports --ack rpt-cl-1 --by NAME" in \
        reports().stdout.decode()
    assert "ALERTS NOT CONFIRMED READ: 1" in world.edge.status_text()  # the nurse's view of the gateway
    # a week on, the list keeps to recent items, but an alert nobody has confirmed reading stays on it
    assert "rpt-cl-1" in run([dxhub_bin(), "reports", "--edge-data", world.edge.data],
                             env=a_week_on()).stdout.decode()
    r = reports("--ack", "nosuch", "--by", "x")
    assert r.returncode == 1 and b"nosuch: no such item in this clinic's inbox" in r.stderr
    r = reports("--ack", "rpt-cl-1")
    assert r.returncode == 2 and b"--ack ALERT needs --by NAME" in r.stderr
    r = reports("--ack", "rpt-cl-1", "--by", "护士 李")
    assert r.returncode == 0 and "confirmed read by 护士 李" in r.stdout.decode(), r.stderr
    # the gateway tells the hub at its next keep-alive (every 5 s)
    one = wait_for(lambda: (lambda c: c if c["waiting"]["unread_alerts"] == 0 else None)(world.clinics()["clinic1"]),
                   20, what="the hub hearing the alert read")
    assert one["waiting"]["oldest_unread_alert"] is None and one["waiting"]["oldest_unread_alert_id"] is None
    listed = wait_for(lambda: (lambda t: t if "(the hub not told yet)" not in t else None)(reports().stdout.decode()),
                      20, what="the gateway hearing READ_OK")
    assert "read by 护士 李 at " in listed and "NOT CONFIRMED" not in listed, listed
    assert "NOT CONFIRMED" not in world.edge.status_text()
    trail = run([dxhub_bin(), "audit", "--data", world.base / "hub", "--json", "--what", "alert-read"], check=True)
    recs = [json.loads(x) for x in trail.stdout.decode().splitlines()]
    assert len(recs) == 1 and recs[0]["who"] == "edge:clinic1", recs
    assert recs[0]["detail"].startswith("rpt-cl-1 read by 护士 李 at "), recs
    r = reports("--ack", "rpt-cl-1", "--by", "someone else")
    assert r.returncode == 0 and "confirmed read already, by 护士 李" in r.stdout.decode()
    st = run([dxhub_bin(), "status", "--hub", world.hub_url]).stdout.decode()
    assert "ALERT" not in st, st


def test_the_clinics_own_audit_trail_says_who_received_sent_and_read_the_patients_data(world):
    """The gateway holds patient data too.  Its trail names, for this
    patient: the account that pushed the study, its delivery to the hub,
    the alert that came back, the on-alert command that announced it, each
    `dxhub reports` that showed it (as the account that ran it), and the
    nurse's confirmation.  `dxhub audit --edge-data` reads it as the hub's."""
    def trail(*a):
        r = run([dxhub_bin(), "audit", "--edge-data", world.edge.data, "--json", *a])
        assert r.returncode == 0, r.stderr.decode()
        return [json.loads(x) for x in r.stdout.decode().splitlines()]

    import getpass
    me = getpass.getuser()
    recs = trail("--patient", "P-CL-1")
    assert all(r["patient"] == "P-CL-1" for r in recs), recs
    by_what = {}
    for r in recs:
        by_what.setdefault(r["what"], []).append(r)
    received = by_what["received"]
    assert len(received) == 1 and received[0]["who"] == f"push:{me}", recs
    assert received[0]["detail"] == "1 instance(s) queued for the hub", recs
    study = received[0]["study"]
    assert [r["who"] for r in by_what["delivered"]] == ["hub"] and by_what["delivered"][0]["study"] == study
    assert by_what["alert-received"][0]["detail"] == "id=rpt-cl-1" and by_what["alert-received"][0]["study"] == study
    assert [r["who"] for r in by_what["alert-announced"]] == ["on-alert"], recs
    shown = by_what["read"]
    assert len(shown) >= 3 and all(r["who"] == f"local:{me}" and r["detail"] == "id=rpt-cl-1 (dxhub reports)"
                                   for r in shown), shown
    acks = by_what["alert-read"]
    assert len(acks) == 1 and acks[0]["who"] == f"local:{me}" and acks[0]["detail"] == "id=rpt-cl-1 by=护士 李", acks
    seqs = [r["seq"] for r in recs]
    assert seqs == sorted(seqs) and recs[0]["what"] == "received"
    # each listing is recorded before it is shown: one more now
    before = len(trail("--what", "read"))
    out = run([dxhub_bin(), "reports", "--edge-data", world.edge.data]).stdout.decode()
    assert "rpt-cl-1" in out
    assert len(trail("--what", "read")) == before + 1
    # filters as on the hub's trail; a patient with nothing here gets nothing
    assert trail("--patient", "P-NOBODY") == []
    assert {r["what"] for r in trail("--who", "local")} == {"read", "alert-read"}
    r = run([dxhub_bin(), "audit", "--edge-data", world.base / "hub"])
    assert r.returncode == 1 and b"not its edge spool" in r.stderr, r.stderr
    r = run([dxhub_bin(), "audit", "--edge-data", world.edge.data, "--data", world.base / "hub"])
    assert r.returncode == 2 and b"one trail at a time" in r.stderr


def test_the_nurses_list_keeps_to_recent_items_and_every_unread_alert(world):
    out = run([dxhub_bin(), "reports", "--edge-data", world.edge.data], env=a_week_on()).stdout.decode()
    assert "rpt-cl-1" not in out, out  # read by now, and over 7 days old
    assert "1 older item(s) not shown (received more than 7 day(s) ago): --all, or --days N" in out, out
    assert "rpt-cl-1" in run([dxhub_bin(), "reports", "--edge-data", world.edge.data, "--days", "9"],
                             env=a_week_on()).stdout.decode()
    reports = lambda *a: run([dxhub_bin(), "reports", "--edge-data", world.edge.data, *a])  # noqa: E731
    r = reports("--days", "0")
    assert r.returncode == 2 and b"--days 0: a whole number of days" in r.stderr
    r = reports("--days", "3", "--all")
    assert r.returncode == 2 and b"one of them" in r.stderr
    # a patient come back: every item about them, however old
    out = run([dxhub_bin(), "reports", "--edge-data", world.edge.data, "--patient", "P-CL-1"],
              env=a_week_on()).stdout.decode()
    assert "rpt-cl-1" in out and "not shown" not in out, out
    assert "no reports or alerts about patient P-NOBODY" in reports("--patient", "P-NOBODY").stdout.decode()
    r = reports("--patient", "P-CL-1", "--all")
    assert r.returncode == 2 and b"one of them" in r.stderr
    assert "rpt-cl-1" in reports("--days", "1").stdout.decode()
    assert "rpt-cl-1" in reports("--all").stdout.decode()


class Browser:
    """A browser's part, as urllib does it: cookies kept, redirects followed, errors as answers."""
    def __init__(self, port):
        import http.cookiejar
        import urllib.request
        self.url = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def ask(self, path, form=None, headers=None, raw=False):
        import urllib.error
        import urllib.parse
        import urllib.request
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as r:
                body = r.read()
                return (r.status, body, r.headers) if raw else (r.status, body.decode())
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def test_the_clinic_page_raises_a_new_alert_and_a_nurse_confirms_it_there(world):
    """The nurse's browser, not a command line: `dxhub reports --serve` lists
    what came back, the unread critical value at the top in red; the signed
    report opens once it verifies; the nurse confirms reading it with her
    name, and the hub hears it.  Only a browser that opened the page's link
    is answered, and everything shown is in the clinic's audit trail."""
    trust = world.base / "hubkeys" / "trust"
    page = Proc([dxhub_bin(), "reports", "--edge-data", world.edge.data, "--serve", 0, "--trust", trust],
                world.base / "page.log", r"clinic page: http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{64})")
    other = None
    try:
        m = page.start(20)
        port, token = int(m.group(1)), m.group(2)
        stranger = Browser(port)
        status, body = stranger.ask("/")
        assert status == 401 and "Open the clinic page&#39;s link" in body, body
        assert stranger.ask("/?token=" + "0" * 64)[0] == 401
        assert stranger.ask("/changes")[0] == 401 and stranger.ask("/report?id=rpt-cl-1")[0] == 401
        nurse = Browser(port)
        status, body = nurse.ask("/?token=" + token)
        assert status == 200 and "Reports and alerts from the reading centre" in body, body
        assert "read by 护士 李" in body and "P-CL-1" in body and 'class="alert"' not in body, body
        assert nurse.ask("/", headers={"Host": "evil.example:80"})[0] == 421  # DNS rebinding
        # what the clinic sent, and whether it is on its way: the link as the gateway last wrote it
        assert '<p class="link up">Connected to the reading centre.' in body, body
        sent = body[body.index("<h2>Sent to the reading centre"):]
        assert "patient P-CL-1" in sent and "stat" in sent and "at the reading centre</span> since " in sent and "(1 file)" in sent, sent
        stamp = nurse.ask("/changes")[1]
        # the page's stamp is what /changes answers while nothing changes: else page.js would reload it forever
        assert re.search(r'data-stamp="([0-9a-f]{16})"', nurse.ask("/")[1]).group(1) == stamp.strip()
        world.edge.stop()
        assert nurse.ask("/changes")[1] != stamp  # page.js reloads
        body = nurse.ask("/")[1]
        assert '<p class="link down">The gateway is stopped (since ' in body, body
        world.edge.start()
        wait_for(lambda: '<p class="link up">' in nurse.ask("/")[1], 30, what="the page seeing the gateway back")
        stamp = nurse.ask("/changes")[1]

        # a second critical value arrives while the page is open: the list changes, the alert on top
        task = push_and_take(world, "clinics-page", "P-CL-2", "WANG^XIAOMING=WANG^XM")
        sign_critical(world, task, "rpt-cl-2", "急性心梗，请立即转诊")
        wait_for(lambda: nurse.ask("/changes")[1] != stamp, 30, what="the page's list changing")
        status, body = nurse.ask("/")
        assert status == 200 and "<title>(1 ALERT) Reports and alerts</title>" in body, body
        alert = body[body.index('<section class="alert" id="rpt-cl-2">'):body.index("</section>")]
        assert "CRITICAL VALUE" in alert and "急性心梗，请立即转诊" in alert, alert
        assert "patient P-CL-2 WANG XIAOMING / WANG XM" in alert, alert  # as the printed report writes it
        assert 'href="/report?id=rpt-cl-2"' in alert and 'name="by"' in alert, alert
        assert body.index("rpt-cl-2") < body.index("rpt-cl-1")  # unread first

        status, report = nurse.ask("/report?id=rpt-cl-2")
        assert status == 200 and "急性心梗，请立即转诊" in report and "back to the list" in report, report
        assert 'href="/report.pdf?id=rpt-cl-2"' in report, report
        status, pdf, headers = nurse.ask("/report.pdf?id=rpt-cl-2", raw=True)
        assert status == 200 and headers["Content-Type"] == "application/pdf" and pdf.startswith(b"%PDF"), headers
        (world.base / "page.pdf").write_bytes(pdf)
        text = run(["pdftotext", "-enc", "UTF-8", world.base / "page.pdf", "-"]).stdout.decode()
        assert "急性心梗，请立即转诊" in text and "rpt-cl-2" in text, text  # pdftotext: the PDF's oracle
        assert nurse.ask("/report?id=nosuch")[0] == 404

        # garbage from the network is answered, and the page keeps serving
        import socket
        for junk in (b"\x00\xff garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + b"x" * 9000 +
                     b"\r\n\r\n", b"POST /ack HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nid=r"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                s.recv(4096)
        status, body = nurse.ask("/ack", {"id": "rpt-cl-2", "by": "x" * 5000})  # a body past the field's limit
        assert status == 400, body
        req_json = nurse.ask("/ack", headers={"Content-Type": "application/json"}, form={})  # not a form: no fields
        assert req_json[0] == 400, req_json
        assert nurse.ask("/")[0] == 200

        # confirming needs a name, and a form from this page only
        for blank in ("", "  \t "):
            status, body = nurse.ask("/ack", {"id": "rpt-cl-2", "by": blank})
            assert status == 400 and "Give your name" in body, body
        status, body = nurse.ask("/ack", {"id": "rpt-cl-2", "by": "x" * 128})
        assert status == 400 and "at most 127 bytes" in body, body
        status, body = nurse.ask("/ack", {"id": "rpt-cl-2", "by": "x"}, {"Origin": "http://evil.example"})
        assert status == 403, body
        assert 'class="alert"' in nurse.ask("/")[1]
        status, body = nurse.ask("/ack", {"id": "rpt-cl-2", "by": " 护士 王 "})
        assert status == 200 and 'class="alert"' not in body and "read by 护士 王" in body, body
        assert "<title>Reports and alerts</title>" in body
        wait_for(lambda: world.clinics()["clinic1"]["waiting"]["unread_alerts"] == 0, 20,
                 what="the hub hearing the alert read on the page")

        # a patient found on the page: theirs only, what came back and what was sent
        status, found = nurse.ask("/?patient=P-CL-2")
        assert status == 200 and "rpt-cl-2" in found and "rpt-cl-1" not in found, found
        sent = found[found.index("<h2>Sent to the reading centre"):]
        assert "patient P-CL-2" in sent and "P-CL-1" not in sent, sent
        assert 'name="patient" maxlength="64" value="P-CL-2"' in found, found
        status, none = nurse.ask("/?patient=P-NOBODY")
        assert status == 200 and "no reports or alerts" in none and "<h2>Sent" not in none, none
        assert nurse.ask("/changes?patient=P-CL-2")[1] != nurse.ask("/changes")[1]

        r = run([dxhub_bin(), "audit", "--edge-data", world.edge.data, "--json", "--patient", "P-CL-2"], check=True)
        recs = [json.loads(x) for x in r.stdout.decode().splitlines()]
        import getpass
        me = f"clinic-page:{getpass.getuser()}"
        reads = [x["detail"] for x in recs if x["what"] == "read" and x["who"] == me]
        assert "id=rpt-cl-2 (clinic page)" in reads and "id=rpt-cl-2 (clinic page, the report)" in reads, recs
        assert "id=rpt-cl-2 (clinic page, the report as PDF)" in reads, recs
        assert "sent to the hub (clinic page)" in reads, recs  # the study shown as sent, naming its patient
        acks = [x for x in recs if x["what"] == "alert-read"]
        assert len(acks) == 1 and acks[0]["who"] == me and acks[0]["detail"] == "id=rpt-cl-2 by=护士 王", acks

        # a report whose signature does not check out against the trust list is not shown as signed
        dx("keygen", "--ca", "--facility", "ELSEWHERE", "--keys", world.base / "other-ca")
        wrong = world.base / "other-trust"
        wrong.mkdir()
        for f in ("ca.pem", "crl.pem"):
            shutil.copyfile(world.base / "other-ca" / f, wrong / f)
        other = Proc([dxhub_bin(), "reports", "--edge-data", world.edge.data, "--serve", 0, "--trust", wrong],
                     world.base / "page2.log", r"clinic page: http://127\.0\.0\.1:(\d+)/")
        elsewhere = Browser(int(other.start(20).group(1)))
        assert elsewhere.ask("/?token=" + token)[0] == 200  # the same gateway's token: kept in its folder
        status, body = elsewhere.ask("/report?id=rpt-cl-2")
        assert status == 422 and "not verified" in body and "急性心梗" not in body, body
        assert elsewhere.ask("/report.pdf?id=rpt-cl-2")[0] == 422  # nor printed
    finally:
        page.stop()
        if other:
            other.stop()
    r = run([dxhub_bin(), "reports", "--edge-data", world.edge.data, "--serve", "0", "--trust", trust,
             "--bind", "0.0.0.0"])
    assert r.returncode == 1 and b"127.x.x.x address only" in r.stderr, r.stderr
    r = run([dxhub_bin(), "reports", "--edge-data", world.edge.data, "--serve", "0"])
    assert r.returncode == 2 and b"needs --trust DIR" in r.stderr, r.stderr
    r = run([dxhub_bin(), "reports", "--edge-data", world.edge.data, "--serve", "0", "--trust", trust, "--patient",
             "P-CL-1"])  # the page finds a patient itself
    assert r.returncode == 2, r.stderr
    r = run([dxhub_bin(), "reports", "--edge-data", world.edge.data, "--ack", "rpt-cl-2", "--by", "x", "--serve", "0"])
    assert r.returncode == 2 and b"--ack ALERT needs --by NAME" in r.stderr, r.stderr

"""make demo's consortium, driven as a reader would: the demo starts (two
hubs, two clinic gateways, two readers' workstations), each workstation
lists the offers its reader is qualified for, one full reading goes
through the headless reader (claim, fetch, write, sign, submit), the
signed report reaches the clinic's gateway and verifies offline, the
county hospital's hub finds the exam at the lead hospital's hub and marks
it recognised, and Ctrl-C (SIGINT) stops every process the demo started."""
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DXHUB = os.environ.get("DXHUB", str(REPO / "build" / "dxhub"))


def run(args, **kw):
    return subprocess.run([DXHUB] + args, capture_output=True, text=True, timeout=60, **kw)


def demo_pids(demo_dir):
    """{pid: command line} of the processes whose command line names the demo's data directory."""
    out = subprocess.run(["pgrep", "-af", str(demo_dir)], capture_output=True, text=True).stdout
    return {int(l.split(" ", 1)[0]): l.split(" ", 1)[1] for l in out.splitlines() if " " in l}


def parent_pid(pid):
    with open(f"/proc/{pid}/stat") as f:  # "pid (comm) state ppid ...": comm may hold spaces
        return int(f.read().rsplit(")", 1)[1].split()[1])


def viewer_tasks(url):
    """The workstation's worklist, through its API with the token of its URL."""
    m = re.fullmatch(r"(http://127\.0\.0\.1:\d+)/#token=([0-9a-f]{64})", url)
    assert m, url
    req = urllib.request.Request(m.group(1) + "/api/tasks", headers={"X-Dxhub-Token": m.group(2)})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["tasks"]


def wait_tasks(url, want, seconds=20):
    tasks = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        tasks = viewer_tasks(url)
        if want(tasks):
            return tasks
        time.sleep(0.2)
    raise AssertionError(f"the workstation at {url} lists {tasks}")


def test_demo_runs_a_full_reading_and_stops_cleanly(tmp_path):
    demo_dir = tmp_path / "demo"
    base = random.randrange(10000, 19000, 1000)  # below free_port()s range (20000-32000)
    env = dict(os.environ, DEMO=str(demo_dir), DEMO_PORT_BASE=str(base))
    # Ctrl-C as at a terminal: a suite started in the background (`make test &`) inherits SIGINT
    # ignored, and a signal ignored when a shell starts cannot be trapped by it
    proc = subprocess.Popen([str(REPO / "samples" / "demo")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "Ctrl-C stops" in line:  # the last line of the page after the ready line
                break
        assert any("dxhub demo: ready" in l for l in out), "demo never got ready:\n" + "".join(out)
        started = demo_pids(demo_dir)
        # A workstation's decoder child is a fork with its parent's command line: count the roles the demo started.
        roles = sorted(re.search(r"dxhub (\w+)", c).group(1) for pid, c in started.items()
                       if "dxhub " in c and parent_pid(pid) not in started)
        assert roles == ["edge", "edge", "reports", "serve", "serve", "workstation", "workstation"], started
        text = "".join(out)

        # each reader's viewer URL, with its token; each lists what its reader reads
        urls = dict(re.findall(r"(dr-wang|dr-li) \(.*?\)\s+(http://\S+)", text))
        assert set(urls) == {"dr-wang", "dr-li"}, text
        ecgs = wait_tasks(urls["dr-li"], lambda t: len(t) == 2)
        assert [t["priority"] for t in ecgs] == ["STAT", "ROUTINE"] and {t["kind"] for t in ecgs} == {"ecg"}, ecgs
        images = wait_tasks(urls["dr-wang"], lambda t: len(t) == 2)
        assert sorted(t["modality"] for t in images) == ["CT", "US"], images

        # the headless reader reads the referred chest X-ray (URGENT), which no workstation holds
        hub = ["--hub", f"tcp://127.0.0.1:{base + 571}", "--hub-key", str(demo_dir / "hub/keys/hub.pub")]
        zhao = ["--keys", str(demo_dir / "readers/dr-zhao")]
        fetched = tmp_path / "studies"
        r = run(["reader"] + hub + zhao + ["--take", "1", "--fetch-to", str(fetched), "--json"])
        assert r.returncode == 0, r.stderr
        task = json.loads(r.stdout.strip().splitlines()[-1])
        assert task["claimed"] and task["fetched"]["fetched"] == task["instances"] > 0
        assert task["priority"] == "urgent" and task["facility"] == "clinic1", task

        report = tmp_path / "r1.json"
        r = run(["report", "--study-dir", str(fetched / task["study"]), "--report-id", "demo-r1", "--reader",
                 "dr-zhao", "--name", "赵敏", "--origin", task["facility"], "--reading-facility", "lead-hospital",
                 "--findings", "Large right pneumothorax.", "--impression", "Tension pneumothorax: treat now.",
                 "--critical", str(report)])
        assert r.returncode == 0, r.stderr
        r = run(["sign", "--key", str(demo_dir / "readers/dr-zhao/dr-zhao.key"), "--cert",
                 str(demo_dir / "readers/dr-zhao/dr-zhao.chain.pem"), "--passphrase-file",
                 str(demo_dir / "readers/passphrase"), str(report)])
        assert r.returncode == 0, r.stderr
        r = run(["reader"] + hub + zhao + ["--task", str(task["task"]), "--action", "sign", "--report-id", "demo-r1",
                                           "--submit", str(report), "--sig", f"{report}.sig", "--chain",
                                           f"{report}.chain.pem"])
        assert r.returncode == 0 and "signed" in r.stdout, r.stdout + r.stderr

        clinic = demo_dir / task["facility"]
        for _ in range(100):
            r = run(["reports", "--edge-data", str(clinic)])
            if "demo-r1" in r.stdout:
                break
            time.sleep(0.2)
        assert "demo-r1" in r.stdout, f"the report did not reach {task['facility']}: {r.stdout}"
        # a critical value: the clinic's on-alert command (the demo's: a file) announced it
        assert r.stdout.startswith("ALERT") or "\nALERT   demo-r1" in r.stdout, r.stdout
        alerts = clinic / "alerts.txt"
        for _ in range(100):
            if alerts.exists() and alerts.read_text().strip():
                break
            time.sleep(0.2)
        assert "CRITICAL VALUE: " in alerts.read_text() and "Tension pneumothorax: treat now." in alerts.read_text()
        # the nurses' page the demo prints shows it on top, to be confirmed there
        link = re.search(r"the nurses' page\s+(http://\S+)", text).group(1)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        listed = opener.open(link, timeout=30).read().decode()
        assert '<section class="alert" id="demo-r1">' in listed and "Tension pneumothorax: treat now." in listed, listed
        r = run(["verify", str(report), "--trust", str(demo_dir / "hub/keys/trust"), "--study-dir",
                 str(fetched / task["study"])])
        assert r.returncode == 0, r.stdout + r.stderr
        # what the demo suggests next: print it at the clinic, hand it to a PACS as an SR
        r = run(["reports", "--edge-data", str(clinic), "--export", str(clinic / "printed"), "--trust",
                 str(demo_dir / "hub/keys/trust")])
        assert r.returncode == 0 and (clinic / "printed/demo-r1/report.pdf").is_file(), r.stdout + r.stderr
        r = run(["sr", str(report), "--trust", str(demo_dir / "hub/keys/trust"), "--study-dir",
                 str(fetched / task["study"]), "-o", str(tmp_path / "r1-sr.dcm")])
        assert r.returncode == 0 and "Basic Text SR" in r.stdout, r.stdout + r.stderr
        # the audit trails the page names: the clinic's says who pushed, showed and printed the exam
        line = re.search(r"dxhub audit (--edge-data .*)", text).group(1).split()
        r = run(["audit"] + line + ["--json"])
        assert r.returncode == 0, r.stderr
        what = {json.loads(x)["what"] for x in r.stdout.splitlines()}
        assert {"received", "delivered", "alert-received", "alert-announced", "read", "export"} <= what, what
        # and a DICOMweb client finds the study at the lead hospital's hub
        url = re.search(r"curl -s (http://\S+/dicom-web/studies)", text).group(1)
        found = json.loads(urllib.request.urlopen(url, timeout=30).read())
        assert task["study"] in [s["0020000D"]["Value"][0] for s in found], found

        # the county hospital looks the patient up at its own hub, as the page says: found at
        # the lead hospital's hub and recognised
        lookup = re.search(r"dxhub lookup (.*)", text).group(1).split()
        assert "--api-key-file" in lookup and "--patient" in lookup, text
        for _ in range(3):  # a machine busy with other work may keep the lead hub past the peer timeout
            r = run(["lookup"] + lookup + ["--json"])
            assert r.returncode == 0, r.stdout + r.stderr
            ans = json.loads(r.stdout)
            if ans["peers"] and ans["peers"][0]["status"] == "ok":
                break
        assert ans["hub"] == "county" and ans["peers"] == [{"hub": "lead-hospital", "status": "ok", "exams": 1}], ans
        [exam] = ans["exams"]
        assert exam["report_id"] == "demo-r1" and exam["study_uid"] == task["study"], exam
        assert exam["recognition"]["recognised"] is True and exam["recognition"]["failed"] == [], exam
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)  # the demo kills a role 30 s after its SIGTERM, and says which
        except subprocess.TimeoutExpired:
            # what the demo was doing, for the report: the script's wait channel and the roles still running
            with open(f"/proc/{proc.pid}/wchan") as f:
                where = f.read()
            left = demo_pids(demo_dir)
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in left:  # the roles run in sessions of their own: not left holding ports
                os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"the demo did not stop within 90 s of Ctrl-C (script in {where}); "
                                 f"still running: {sorted(c.split()[1] for c in left.values())}")
    stopping = proc.stdout.read()
    assert proc.returncode == 0, "".join(out) + stopping
    assert "demo: stopped." in stopping and "did not stop" not in stopping, stopping
    # the demo waits for each before it exits: nothing is left, workstations and both hubs included
    assert not demo_pids(demo_dir), f"processes left running after Ctrl-C: {demo_pids(demo_dir)}"

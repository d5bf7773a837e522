"""make demo's consortium, driven as a reader would: the demo starts, one full
reading goes through (claim, fetch, write, sign, submit), the signed report
reaches the clinic's gateway and verifies offline, and Ctrl-C (SIGINT) stops
every process the demo started."""
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DXHUB = os.environ.get("DXHUB", str(REPO / "build" / "dxhub"))


def run(args, **kw):
    return subprocess.run([DXHUB] + args, capture_output=True, text=True, timeout=60, **kw)


def demo_pids(demo_dir):
    """Processes whose command line names the demo's data directory."""
    out = subprocess.run(["pgrep", "-f", str(demo_dir)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_demo_runs_a_full_reading_and_stops_cleanly(tmp_path):
    demo_dir = tmp_path / "demo"
    base = random.randrange(10000, 19000, 1000)  # below free_port()s range (20000-32000)
    env = dict(os.environ, DEMO=str(demo_dir), DEMO_PORT_BASE=str(base))
    proc = subprocess.Popen([str(REPO / "samples" / "demo")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out = []
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "dxhub demo: ready" in line:
                break
        assert any("dxhub demo: ready" in l for l in out), "demo never got ready:\n" + "".join(out)
        started = demo_pids(demo_dir)
        assert len(started) >= 3, f"hub and two gateways expected, found {started}"

        hub = ["--hub", f"tcp://127.0.0.1:{base + 571}", "--hub-key", str(demo_dir / "hub/keys/hub.pub")]
        wang = ["--keys", str(demo_dir / "readers/dr-wang")]
        fetched = tmp_path / "studies"
        r = run(["reader"] + hub + wang + ["--take", "1", "--fetch-to", str(fetched), "--json"])
        assert r.returncode == 0, r.stderr
        task = json.loads(r.stdout.strip().splitlines()[-1])
        assert task["claimed"] and task["fetched"]["fetched"] == task["instances"] > 0
        # the referred chest X-ray (URGENT) comes before the routine CT
        assert task["priority"] in ("urgent", "stat"), task

        report = tmp_path / "r1.json"
        r = run(["report", "--study-dir", str(fetched / task["study"]), "--report-id", "demo-r1", "--reader",
                 "dr-wang", "--name", "王伟", "--origin", task["facility"], "--reading-facility", "lead-hospital",
                 "--findings", "No consolidation.", "--impression", "Normal chest.", str(report)])
        assert r.returncode == 0, r.stderr
        r = run(["sign", "--key", str(demo_dir / "readers/dr-wang/dr-wang.key"), "--cert",
                 str(demo_dir / "readers/dr-wang/dr-wang.chain.pem"), "--passphrase-file",
                 str(demo_dir / "readers/passphrase"), str(report)])
        assert r.returncode == 0, r.stderr
        r = run(["reader"] + hub + wang + ["--task", str(task["task"]), "--action", "sign", "--report-id", "demo-r1",
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
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, "".join(out)
    for _ in range(50):
        if not demo_pids(demo_dir):
            break
        time.sleep(0.1)
    assert not demo_pids(demo_dir), "processes left running after Ctrl-C"

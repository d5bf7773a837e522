"""The worklist bench's simulated readers against a real `dxhub serve`.

Its readers speak ZMTP 3.1 with CURVE themselves (bench/zmtp_curve.c), so
the figures of `make bench` rest on that code: here a short run in each
transport must complete every round it started — CURVE handshake with the
hub's ZAP check, encrypted requests the hub's libzmq accepts, answers
decrypted and matched — with no claim refused and no reader timed out.
The same run through libzmq is the reference the hand-written side must
match."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench_binary():
    build = Path(os.environ.get("DXHUB_BUILD") or REPO / "build")
    return build / "bench" / "bench_worklist"


@pytest.mark.parametrize("transport", ["zmtp", "libzmq"])
def test_every_round_completes(dxhub, tmp_path, transport):
    binary = bench_binary()
    assert os.access(binary, os.X_OK), f"{binary} not built (make test builds it)"
    out = tmp_path / "worklist.json"
    r = subprocess.run([str(binary), "--dxhub", dxhub, "--dir", str(tmp_path / "data"), "--tasks", "20000",
                        "--readers", "8", "--seconds", "2", "--rate", "800", "--paced-seconds", "2",
                        "--paced-threads", "1", "--transport", transport, "--json", str(out)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    assert ("speaking ZMTP themselves" if transport == "zmtp" else "through libzmq") in r.stdout

    paced = re.search(r"\(paced: (\d+) rounds started on schedule .*?, (\d+) CLAIMED, (\d+) claims refused\)", r.stdout)
    assert paced, r.stdout[-3000:]
    rounds, claimed, refused = map(int, paced.groups())
    assert rounds >= 1000 and claimed == rounds and refused == 0, paced.group(0)

    closed = re.search(r"\(closed loop: (\d+) assignments .*?; (\d+) readers stopped on a timeout, (\d+) claims refused; "
                       r"(\d+) offers alone", r.stdout)
    assert closed, r.stdout[-3000:]
    assigned, timeouts, refused, offers = map(int, closed.groups())
    assert assigned > 500 and timeouts == 0 and refused == 0 and offers > 500, closed.group(0)

    metrics = {m["metric"]: m["value"] for m in json.loads(out.read_text())}
    # the hub's dxhub_reader_offer_seconds histogram (/metrics) timed each round's offer, once
    assert metrics["paced: offers the hub timed"] == rounds
    assert 0 < metrics["paced: the hub's own READY→TASK, p50 at most"] <= metrics["paced: the hub's own READY→TASK, p99 at most"]
    assert metrics["paced: READY→TASK from the schedule, p50"] > 0
    # the kernel's receive time of each TASK (our own ZMTP reads it; libzmq's
    # readers cannot) comes before the reader thread reads it, sample by
    # sample, so its quantiles cannot exceed those of the reads (1 us: the
    # clocks' conversion)
    arrived = [f"paced: READY sent→TASK in the reader's kernel, {q}" for q in ("p50", "p99")]
    if transport == "zmtp":
        for a, q in zip(arrived, ("p50", "p99")):
            assert 0 < metrics[a] <= metrics[f"paced: READY→TASK from the actual send, {q}"] + 0.001, metrics
    else:
        assert not any(a in metrics for a in arrived)
    assert metrics["closed loop: assignments (CLAIM+READY→TASK→CLAIMED) per second"] > 0
    # the machine's own wake-up lateness, printed beside the offers' (a 1 ms sleep is never early)
    for when in ("idle machine", "paced"):
        p99 = metrics[f"{when}: a thread sleeping 1 ms wakes late by, p99"]
        assert 0 <= p99 <= metrics[f"{when}: a thread sleeping 1 ms wakes late by, max"]

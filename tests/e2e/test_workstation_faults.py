"""The workstation when things go wrong or run full, on a hub of its own
(3 s leases):

- a workstation killed with SIGKILL: the task it held goes back to the
  queue when its lease lapses and is offered to another reader; the report
  it signed before (acknowledged by the hub) is at the hub, byte for byte,
  and still in its cache when it starts again;
- a study of more instances than one STUDY answer holds (200) is listed
  whole, page by page, by the workstation and by `dxhub reader`;
- prefetch fills the cache up to --cache-mb and no further: offered studies
  that do not fit wait; a claimed study evicts the least recently used
  offered one; the cache never holds more than its bound;
- a workstation whose key is revoked at the hub while it runs (a stolen
  laptop) is refused from the reload on, and its page says so;
- a held CT's prior (the patient's last earlier CT at the hub) is fetched
  ahead, so Compare opens it while the hub does not answer.
"""
import json
import signal
import time

import pydicom
import pytest

from edgeutil import allow, corpus_root, dxhub_bin, run, wait_for
from wsutil import PASS, World, big_ot_study, ct_study, many_instances_study, restudy

OT_ROWS, OT_COLS = 1536, 2048  # 6 MiB of 16-bit pixels per study
CACHE_MB = 16


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("wsf")
    w = World(base, {"ws-kill": ("CR", "imaging", "李娜"), "ws-next": ("CR", "imaging", "张强"),
                     "ws-cache": ("OT", "imaging", "赵敏"), "ws-big": ("NM", "imaging", "钱多"),
                     "ws-stolen": ("MG", "imaging", "孙丽"), "ws-prior": ("CT", "imaging", "周明")})
    try:
        w.start()
        yield w
    finally:
        w.close()


def test_sigkilled_workstation_loses_its_lease_and_no_signed_report(world):
    root = corpus_root()
    a, a_files = restudy([root / "dicom" / "explicit_le" / "CT_small.dcm"], world.base / "cr-a", modality="CR")
    b, b_files = restudy([root / "dicom" / "explicit_le" / "CT_small.dcm"], world.base / "cr-b", modality="CR")
    world.send(a_files + b_files)
    wait_for(lambda: all(world.studies().get(s) == "queued" for s in (a, b)), 30, interval=0.1,
             what="the CR studies queued")
    ws = world.workstation("ws-kill")
    ws.wait_tasks([a, b])
    ta, tb = ws.task_of(a)["id"], ws.task_of(b)["id"]
    for t in (ta, tb):
        ws.json("POST", f"/api/tasks/{t}/claim")
    res = ws.json("POST", f"/api/tasks/{tb}/submit",
                  {"action": "sign", "findings": "no fracture", "impression": "normal", "critical": False})
    assert res["state"] == "signed"
    status, _, signed = ws.request("GET", f"/api/tasks/{tb}/signed")
    assert status == 200
    ws.json("PUT", f"/api/tasks/{ta}/draft", {"findings": "half written", "impression": "", "critical": False})

    ws.proc.kill()  # SIGKILL: no release, no goodbye
    t_kill = time.monotonic()
    r = run([dxhub_bin(), "reader", "--hub", world.reader_ep, "--hub-key", world.hub_key, "--keys", world.rkeys,
             "--name", "ws-next", "--json", "--take", "1", "--wait", "20", "--release"], timeout=60)
    waited = time.monotonic() - t_kill
    lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
    assert r.returncode == 0, r.stderr.decode()
    assert lines[0]["task"] == ta and lines[0]["study"] == a, lines
    assert waited < 3 + 10, f"the held task came back only after {waited:.1f} s"
    # the acknowledged report is at the hub, exactly the bytes signed, and the study is signed
    assert world.reports()[res["report_id"]] == signed
    assert world.studies()[b] == "signed"
    # the restarted workstation (same cache) still shows what it signed, and the draft
    ws2 = world.workstation("ws-kill", name="ws-kill-2", cache=ws.cache)
    status, _, again = ws2.request("GET", f"/api/tasks/{tb}/signed")
    assert status == 200 and again == signed


def test_prefetch_fills_the_cache_within_its_bound_and_a_claim_evicts(world):
    made = [big_ot_study(world.base / "ot", OT_ROWS, OT_COLS, seed) for seed in (1, 2, 3)]
    studies = [s for s, _ in made]
    world.send([f for _, fs in made for f in fs])
    wait_for(lambda: all(world.studies().get(s) == "queued" for s in studies), 30, interval=0.1,
             what="the OT studies queued")
    ws = world.workstation("ws-cache", "--cache-mb", CACHE_MB, "--offers", 3, "--prefetch", 3)
    limit = CACHE_MB << 20
    ws.wait_tasks(studies)

    def settled():
        t = {x["study"]: x["prefetched"] for x in ws.tasks()}
        s = ws.json("GET", "/api/session")["cache"]
        assert s["bytes"] <= s["limit"] == limit, s
        return sorted(t.get(x, 0) for x in studies) == [0, 1, 1] and (t, s)

    t, s = wait_for(settled, 30, interval=0.1, what="two of three offered studies prefetched, the third waiting")
    assert s["studies"] == 2 and s["evicted_studies"] == 0
    # the study that did not fit: claim and open it; it evicts an offered one (never more than the bound)
    waiting = next(x for x in studies if t[x] == 0)
    tid = ws.task_of(waiting)["id"]
    ws.json("POST", f"/api/tasks/{tid}/claim")
    j = ws.json("GET", f"/api/tasks/{tid}/study")
    sop = j["series"][0]["instances"][0]["sop"]
    status, h, body = ws.request("GET", f"/api/instances/{sop}/frames/1")
    assert status == 200 and len(body) == OT_ROWS * OT_COLS * 2
    ds = pydicom.dcmread(str(next(fs for st, fs in made if st == waiting)[0]))
    assert body == ds.pixel_array.astype("<u2").tobytes()
    s = ws.json("GET", "/api/session")["cache"]
    assert s["evicted_studies"] >= 1 and s["bytes"] <= limit, s
    assert ws.task_of(waiting)["prefetched"] == 1
    assert sorted(x["prefetched"] for x in ws.tasks() if x["study"] != waiting) == [0, 1]
    # the LMDB file itself stays bounded too (the bound plus LMDB's copy-on-write headroom)
    assert (ws.cache / "data.mdb").stat().st_size <= limit * 1.5 + (64 << 20)


def test_study_larger_than_one_listing_page_arrives_whole(world, tmp_path):
    n = 201  # one more than a STUDY answer lists
    study, files = many_instances_study(world.base / "many", n)
    world.send(files)
    wait_for(lambda: world.studies().get(study) == "queued", 30, interval=0.1, what="the NM study queued")
    ws = world.workstation("ws-big")
    tid = ws.wait_tasks([study])[0]["id"]
    ws.json("POST", f"/api/tasks/{tid}/claim")
    j = ws.json("GET", f"/api/tasks/{tid}/study")
    inst = [i for s in j["series"] for i in s["instances"]]
    assert len(inst) == n and [i["number"] for i in inst] == list(range(1, n + 1))
    assert ws.task_of(study)["prefetched"] == 1
    ws.json("POST", f"/api/tasks/{tid}/release")
    ws.proc.stop()
    r = run([dxhub_bin(), "reader", "--hub", world.reader_ep, "--hub-key", world.hub_key, "--keys", world.rkeys,
             "--name", "ws-big", "--json", "--take", "1", "--wait", "40", "--fetch-to", tmp_path, "--release"],
            timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    fetched = json.loads(r.stdout.decode().splitlines()[0])["fetched"]
    assert fetched["instances"] == n and fetched["fetched"] == n


def test_a_workstation_whose_key_is_revoked_is_refused_and_told(world):
    ws = world.workstation("ws-stolen")
    wait_for(lambda: ws.json("GET", "/api/session")["hub"] == "connected", 20, what="the workstation connected")
    allow(world.keys, None, world.rkeys / "ws-stolen.pub", revoke=True)
    world.hub.signal(signal.SIGHUP)
    # its open connection is refused at the next heartbeat; the page's pill says so
    wait_for(lambda: ws.json("GET", "/api/session")["hub"] == "revoked", 30, what="the session saying revoked")
    assert "the hub refused this workstation's key: this key was revoked" in ws.proc.log_tail(100000)
    assert "reader:ws-stolen" in world.hub.log_tail(200000)
    # allowed again (a mistaken revocation): it works again without a restart
    allow(world.keys, "reader:ws-stolen", world.rkeys / "ws-stolen.pub")
    world.hub.signal(signal.SIGHUP)
    wait_for(lambda: ws.json("GET", "/api/session")["hub"] == "connected", 30, what="the session connected again")


def test_a_held_tasks_prior_is_fetched_ahead_and_compares_with_the_hub_away(world):
    """The reader claims a follow-up CT: once it is cached, the workstation
    fetches the prior the hub names for it (the patient's last CT before
    this one), and nothing else of theirs: not an older CT, not a later
    one, not another modality, not a CT under the same Patient ID with
    another birth date.  Compare then opens it from the cache, its frames
    pydicom's, while the hub is stopped (SIGSTOP); the hub's trail says
    the reads were a prefetch for that task."""
    src = corpus_root() / "dicom" / "explicit_le" / "CT_small.dcm"

    def study(tag, date, modality="CT", birth="19600202"):
        uid, files = ct_study(src, world.base / f"ahead-{tag}", pid="WSP042")
        for p in files:
            ds = pydicom.dcmread(str(p))
            ds.StudyDate, ds.Modality, ds.PatientBirthDate = date, modality, birth
            ds.save_as(str(p), write_like_original=False)
        return uid, files

    cur, cur_files = study("cur", "20240601")
    ws = world.workstation("ws-prior", "--prefetch", 0)
    world.send(cur_files)
    ws.wait_tasks([cur])
    tid = ws.task_of(cur)["id"]
    made = {tag: study(tag, *args) for tag, args in {
        "older": ("20220110",), "last": ("20240115",), "dx": ("20240301", "DX"), "later": ("20250101",),
        "reused": ("20240520", "CT", "19990909")}.items()}
    world.send([f for _, fs in made.values() for f in fs])
    wait_for(lambda: all(world.studies().get(u) == "queued" for u, _ in made.values()), 30, interval=0.1,
             what="the patient's other studies queued")
    last, last_files = made["last"]
    ws.json("POST", f"/api/tasks/{tid}/claim")
    ahead = wait_for(lambda: (lambda p: p if p and p["cached"] == p["instances"] else None)(
        ws.task_of(cur).get("prior")), 30, interval=0.1, what="the prior fetched ahead")
    assert ahead == {"study": last, "instances": len(last_files), "cached": len(last_files), "ready": True,
                     "ahead": True}

    # the hub's trail: that study alone was read, as a prefetch for this task
    by_sop = {str(d.SOPInstanceUID): d for d in (pydicom.dcmread(str(p)) for p in last_files)}
    others = {u for tag, (u, _) in made.items() if tag != "last"}
    reads = wait_for(lambda: (lambda rs: rs if {r["detail"] for r in rs} >= set(by_sop) else None)(
        [r for r in hub_audit(world, "read-instance") if r["study"] == last]), 20, interval=0.2,
        what="the prior's instance reads on the hub's trail")
    assert {r["who"] for r in reads} == {"reader:ws-prior"}
    listing = [r for r in hub_audit(world, "read-study") if r["study"] == last]
    assert [r["detail"] for r in listing] == [f"prior, prefetched for task {tid}"], listing
    assert not [r for w in ("read-study", "read-instance") for r in hub_audit(world, w) if r["study"] in others]

    world.hub.signal(signal.SIGSTOP)  # the hub does not answer: Compare needs nothing of it
    try:
        status, _, body = ws.request("GET", f"/api/tasks/{tid}/compare/{last}", timeout=30)
        assert status == 200, body[:300]
        j = json.loads(body)
        assert j["study_uid"] == last and j["task"] == tid
        assert sorted(i["sop"] for s in j["series"] for i in s["instances"]) == sorted(by_sop)
        for sop, d in by_sop.items():
            status, h, px = ws.request("GET", f"/api/instances/{sop}/frames/1", timeout=30)
            assert status == 200 and px == d.pixel_array.astype("<i2").tobytes(), sop
    finally:
        world.hub.signal(signal.SIGCONT)

    # an older CT opened by hand replaces it; the task list counts it in as it arrives
    older, older_files = made["older"]
    assert ws.request("GET", f"/api/tasks/{tid}/compare/{older}", timeout=30)[0] == 200
    assert ws.task_of(cur)["prior"] == {"study": older, "instances": len(older_files), "cached": len(older_files),
                                        "ready": True, "ahead": False}


def hub_audit(world, what):
    r = run([dxhub_bin(), "audit", "--data", world.base / "hub", "--json", "--what", what], check=True)
    return [json.loads(x) for x in r.stdout.decode().splitlines()]

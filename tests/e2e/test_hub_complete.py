"""Completeness by quiet time (DESIGN.md §4, store.h): DICOM has no end of
study, so a study whose last instance came --stable-seconds ago is
complete.  The quiet time is counted from the durable last arrival, so a
restart in between neither loses it nor restarts it; a late arrival
reopens a completed study.

"Complete" in the API: the state becomes "complete", or "queued" when the
worklist made the study's reading task in the same transaction; either way
dxhub.completed is set.
"""
import time
from datetime import datetime, timezone

from hubutil import Hub, attr, audit_records, storescu, synth_studies

STABLE = 3
COMPLETED = ("complete", "queued")


def when(iso):
    """Seconds since the epoch of the API's UTC times ("...T12:00:00.123Z")."""
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def test_quiet_time_survives_a_restart_and_late_arrivals_reopen(tmp_path):
    made = synth_studies(tmp_path / "in", "quiet", 1, 4)
    (study, files), = made.items()
    hub = Hub(tmp_path / "hub", log_dir=tmp_path, stable_seconds=STABLE)
    try:
        hub.start()
        r = storescu(hub.dicom_port, files[:3])
        assert r.statuses() == ["Success"] * 3, r.output
        st = hub.study(study)["study"]
        assert st["dxhub"]["state"] == "receiving"
        last = when(st["dxhub"]["last_received"])
        assert hub.stop() == 0  # SIGTERM within the quiet time
        stopped = time.time()
        assert stopped - last < STABLE, f"the hub took {stopped - last:.1f} s to stop: no quiet time left to test"

        hub.start()
        st = hub.study(study)["study"]
        if time.time() - last < STABLE - 0.5:  # (only meaningful if restarted in time)
            assert st["dxhub"]["state"] == "receiving", st["dxhub"]
        assert attr(st, "00201208") == 3
        st = hub.wait_for(lambda: (lambda s: s["dxhub"]["state"] in COMPLETED and s)(hub.study(study)["study"]),
                          STABLE + 10, "the study to complete after its quiet time")
        dx = st["dxhub"]
        assert dx["completed"] and when(dx["completed"]) - when(dx["last_received"]) >= STABLE - 0.01, dx
        assert dx["late_arrivals"] == 0 and attr(st, "00201208") == 3
        assert hub.studies(state="receiving") == []
        done = [a for a in audit_records(hub.data) if a["what"] == "study-complete" and a["study"] == study]
        assert len(done) == 1 and str(STABLE) in done[0]["detail"], done

        # A late arrival reopens the study ...
        r = storescu(hub.dicom_port, files[3:])
        assert r.statuses() == ["Success"], r.output
        st = hub.study(study)["study"]
        assert st["dxhub"]["state"] == "receiving", st["dxhub"]
        assert st["dxhub"]["late_arrivals"] == 1 and attr(st, "00201208") == 4
        late = [a for a in audit_records(hub.data) if a["what"] == "late-arrival"]
        assert [(a["study"], a["detail"]) for a in late] == [(study, f"{study}.1.4")]
        # ... which completes again after its own quiet time.
        st = hub.wait_for(lambda: (lambda s: s["dxhub"]["state"] in COMPLETED and s)(hub.study(study)["study"]),
                          STABLE + 10, "the reopened study to complete again")
        assert st["dxhub"]["late_arrivals"] == 1 and attr(st, "00201208") == 4
        assert when(st["dxhub"]["completed"]) - when(st["dxhub"]["last_received"]) >= STABLE - 0.01
    finally:
        hub.close()

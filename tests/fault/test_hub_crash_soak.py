"""Soak variant of tests/e2e/test_hub_crash.py, run by hand (not by
`make test`): more SIGKILL rounds, more and larger instances, more studies.

    TCP_NODELAY=1 /usr/bin/python3 -m pytest -s tests/fault

Environment: DXHUB (binary, default build/dxhub), DXHUB_SOAK_ROUNDS (30),
DXHUB_SOAK_STUDIES (6), DXHUB_SOAK_PER_STUDY (100), DXHUB_SOAK_SIZE (pixels
per side, 256: 128 KiB instances), DXHUB_CRASH_SEED (replay a run).
Each round kills the hub after a random number of store responses plus a
few random milliseconds, checks the environment with mdb_stat, restarts
the hub and checks every acknowledged instance byte for byte (see
hubutil.crash_rounds).
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from hubutil import crash_rounds  # noqa: E402


def env_int(name, default):
    return int(os.environ.get(name) or default)


def test_sigkill_soak(tmp_path):
    seed = env_int("DXHUB_CRASH_SEED", -1)
    size = env_int("DXHUB_SOAK_SIZE", 256)
    summary = crash_rounds(tmp_path, rounds=env_int("DXHUB_SOAK_ROUNDS", 30),
                           studies=env_int("DXHUB_SOAK_STUDIES", 6), per_study=env_int("DXHUB_SOAK_PER_STUDY", 100),
                           seed=None if seed < 0 else seed, stable=2, rows=size, cols=size)
    assert sum(r["new_acks"] for r in summary["rounds"]) > 0

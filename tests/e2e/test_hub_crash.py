"""Crash safety of the hub's store (DESIGN.md §4 "Nothing is acknowledged
before it is durable"): `dxhub serve` is killed with SIGKILL at random
moments while three storescu processes send 300 instances (3 studies),
five times (after a random number of store responses plus a few random
milliseconds: hubutil.crash_rounds).  After each kill: LMDB's own mdb_stat opens the environment
cleanly, and the restarted hub returns every instance that storescu saw
acknowledged with Success, byte for byte, and nothing torn.  The hub keeps
a small write-ahead space (--runway 1M), so zeros are laid ahead of the
store's end between and during the rounds.  At the end,
after the quiet time, no study is stuck in "receiving".

The kill delays come from a random seed printed with the result (set
DXHUB_CRASH_SEED to replay one).  A longer soak: tests/fault/.
"""
import os

from hubutil import crash_rounds


def test_sigkill_during_ingest_loses_nothing_acknowledged(tmp_path):
    seed = int(os.environ["DXHUB_CRASH_SEED"]) if os.environ.get("DXHUB_CRASH_SEED") else None
    # With a write-ahead space small enough that the kills land while zeros
    # are laid and while commits overwrite them.
    summary = crash_rounds(tmp_path, rounds=5, studies=3, per_study=100, seed=seed, stable=2,
                           extra=("--runway", "1M"))
    rounds = summary["rounds"]
    # The kills landed while data was moving.
    assert rounds[0]["responses_at_kill"] < rounds[0]["left"], rounds
    assert sum(r["new_acks"] for r in rounds) > 0, rounds

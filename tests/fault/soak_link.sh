#!/usr/bin/env bash
# soak_link.sh — the edge↔hub fault scenarios of tests/e2e/test_edge_faults.py,
# long: the fault proxy (delay, jitter, random connection resets, stalls) and,
# as root, network namespaces (veth + tbf, link cuts), with the edge and the
# hub SIGKILLed and restarted at random moments throughout.  Each round ends
# with the same checks as the short tests in `make test`: every instance the
# edge acknowledged is at the hub exactly once with the bytes a clean link
# delivers, and the spool is empty.
#
# Usage: tests/fault/soak_link.sh [SECONDS [ROUNDS]]
#   SECONDS  faults per scenario per round (default 300; DXHUB_SOAK_SECONDS)
#   ROUNDS   rounds, each with a fresh random seed (default 1; DXHUB_SOAK_ROUNDS)
#   DXHUB_FAULT_SEED=N replays a round's seed (printed when a round fails).
# Environment as for make test: DXHUB (build/dxhub), DXHUB_CORPUS
# (../shared/corpus).  Not part of `make test` (the soak tests skip there).
set -u
cd "$(dirname "$0")/../.."
export DXHUB=${DXHUB:-$PWD/build/dxhub}
export DXHUB_CORPUS=${DXHUB_CORPUS:-$(cd .. && pwd)/shared/corpus}
export TCP_NODELAY=1 # DCMTK's tools stall on Nagle's algorithm without it
export DXHUB_SOAK_SECONDS=${1:-${DXHUB_SOAK_SECONDS:-300}}
ROUNDS=${2:-${DXHUB_SOAK_ROUNDS:-1}}
PY=${PY:-/usr/bin/python3}
[ -x "$DXHUB" ] || { echo "soak_link.sh: $DXHUB missing: run make first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || echo "soak_link.sh: not root: the namespace scenario is skipped"

failed=0
for r in $(seq 1 "$ROUNDS"); do
    seed=${DXHUB_FAULT_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
    echo "== soak round $r/$ROUNDS: ${DXHUB_SOAK_SECONDS}s of faults per scenario, seed $seed"
    if ! DXHUB_FAULT_SEED=$seed "$PY" -m pytest -q -p no:cacheprovider -rs -k soak tests/e2e/test_edge_faults.py; then
        echo "soak round $r FAILED (replay: DXHUB_FAULT_SEED=$seed $0 $DXHUB_SOAK_SECONDS)"
        failed=$((failed + 1))
    fi
done
echo "soak: $((ROUNDS - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]

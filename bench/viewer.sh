#!/usr/bin/env bash
# viewer.sh — the reading workstation's section of `make bench`: the web
# UI's speed measured in Debian's Chromium (playwright-core) against a real
# hub, clinic gateway and `dxhub workstation` holding a 300-slice 512×512
# CT and a 10-s 12-lead ECG (tests/browser/viewer.mjs --bench):
#   open_to_first_image_ms             click on a held, prefetched CT → first slice drawn
#   open_to_first_image_ms_first_time  the same, the first time (right after the claim)
#   claim_click_to_first_image_ms      click on Claim → first slice drawn (the hub's claim included)
#   scroll_fps_300_slices              slices drawn per second scrolling the whole stack,
#                                      right after opening (frames from the daemon)
#   scroll_fps_300_slices_in_page      the same, back over frames the page holds
#   wl_drag_updates_per_s              window/level updates drawn per second, right-drag
#   wl_update_draw_ms                  one update: lookup table, 262,144 pixels, draw
#   ecg_draw_ms_3x4, ecg_draw_ms_12x1  a 10-s 12-lead ECG drawn on its grid
# There is no peer viewer to run beside it: the peer column is the target
# (issue #8), ratio > 1 means the target is met.  Writes
# build/bench/viewer.json; targets are printed, never asserted.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${PY:-/usr/bin/python3}
export BUILD PY
if ! BUILD="$BUILD" tests/browser/run --bench --slices 300 >"$BUILD/bench/viewer.log" 2>&1; then
    cat "$BUILD/bench/viewer.log"
    echo "bench viewer: the browser harness failed (log above)" >&2
    exit 1
fi
grep -E '^    ' "$BUILD/bench/viewer.log"
"$PY" - "$BUILD/bench/viewer.json" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1]))
print(f"{'metric':38} {'value':>10} {'unit':10} {'target':>8} {'ratio':>7}")
for r in rows:
    print(f"{r['metric']:38} {r['value']:10.2f} {r['unit']:10} {r['peer_value']:8.1f} {r['ratio']:7.2f}")
PYEOF

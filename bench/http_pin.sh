# http_pin.sh — sourced by bench/api.sh and bench/lookup.sh: where the
# HTTP benchmarks' processes run, how each run is timed, and how long a
# server waited for a CPU.
#
# wrk stands in for the other machines of a hospital's network, so it gets
# CPUs of its own and the server under test (dxhub and Orthanc alike) the
# others: on a machine of N CPUs, wrk the last one and the servers the
# first N-1 (taskset).  Sharing every core, wrk's own threads would take
# the server's CPU in turns and its latencies would be the two programs'
# scheduling, not the server's answers.  BENCH_PIN=0 runs everything
# unpinned; BENCH_CLIENT_CPUS (a taskset list) moves wrk.  Other work on
# the machine is not pinned and can still take either side's CPU: the
# tables give the load average and each server's run-queue wait.
#
# Sets SERVER_CPUS, CLIENT_CPUS ("" when unpinned), CLIENT_NCPUS, PIN_NOTE;
# defines on_server CMD... and on_client CMD... (exec CMD pinned) and
# sched_ns PID (prints "RUN_NS WAIT_NS": the CPU time of all its threads
# so far and the time they spent runnable, waiting for a CPU, from
# /proc/PID/task/*/schedstat); settle, pause, resume and measure (one
# timed run, below).

pin_init() {
    local n
    n=$(nproc)
    SERVER_CPUS="" CLIENT_CPUS="" CLIENT_NCPUS=$n
    PIN_NOTE="unpinned: wrk and the server share all $n CPUs"
    if [ "${BENCH_PIN:-1}" = 0 ] || [ "$n" -lt 2 ] || ! command -v taskset >/dev/null; then
        [ "$n" -lt 2 ] && PIN_NOTE="unpinned: one CPU, wrk and the server share it"
        return 0
    fi
    local all last
    all=$(taskset -pc $$ | sed 's/.*: //')
    last=$(cpu_list_expand "$all" | tail -1)
    CLIENT_CPUS=${BENCH_CLIENT_CPUS:-$last}
    SERVER_CPUS=$(cpu_list_expand "$all" | grep -vxF -f <(cpu_list_expand "$CLIENT_CPUS") | paste -sd,)
    [ -n "$SERVER_CPUS" ] || { SERVER_CPUS="" CLIENT_CPUS=""; return 0; }
    CLIENT_NCPUS=$(cpu_list_expand "$CLIENT_CPUS" | wc -l)
    PIN_NOTE="wrk on CPU $CLIENT_CPUS, the server under test on CPU $SERVER_CPUS (taskset; BENCH_PIN=0 unpins)"
}

# "0-2,5" -> one CPU number a line
cpu_list_expand() {
    local part
    for part in ${1//,/ }; do
        if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
    done
}

on_server() { if [ -n "$SERVER_CPUS" ]; then exec taskset -c "$SERVER_CPUS" "$@"; else exec "$@"; fi; }
on_client() { if [ -n "$CLIENT_CPUS" ]; then taskset -c "$CLIENT_CPUS" "$@"; else "$@"; fi; }

sched_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{r += $1; w += $2} END {printf "%.0f %.0f\n", r, w}'
}

# settle PID...: wait until every given server is idle (under 2% of a CPU
# over half a second), at most BENCH_SETTLE_SECONDS (60).  A server still
# answering the previous run's queued requests (Orthanc takes seconds per
# lookup and keeps working on them after wrk has gone), or indexing what was
# just loaded, would otherwise take the CPU the next run's server needs and
# its work would show as that server's latency tail.
settle() {
    local pid t0=() t1=() i waited=0 limit=$((${BENCH_SETTLE_SECONDS:-60} * 2)) busy
    while :; do
        for pid in "$@"; do t0+=("$(sched_ns "$pid" | cut -d' ' -f1)"); done
        sleep 0.5
        waited=$((waited + 1))
        for pid in "$@"; do t1+=("$(sched_ns "$pid" | cut -d' ' -f1)"); done
        busy=0
        for i in "${!t0[@]}"; do [ $((${t1[$i]:-0} - ${t0[$i]:-0})) -lt 10000000 ] || busy=1; done
        t0=() t1=()
        [ $busy = 0 ] && break
        [ $waited -ge $limit ] && { echo "  (a server was still busy after ${BENCH_SETTLE_SECONDS:-60} s; measuring anyway)" >&2; break; }
    done
    [ $waited -gt 4 ] && echo "  (waited $((waited / 2)) s for the servers to go idle)" >&2
    return 0
}

# pause PID... / resume PID...: the servers not under test are stopped
# (SIGSTOP) for the length of a run, so their housekeeping threads (an
# idle Orthanc holding 100,000 studies still woke on the measured server's
# CPU, within what settle calls idle) take no CPU from the one measured,
# as on a machine of its own.  A cleanup
# must resume them before asking them to stop.
pause() { local p; for p in "$@"; do [ -n "$p" ] && kill -STOP "$p" 2>/dev/null; done; return 0; }
resume() { local p; for p in "$@"; do [ -n "$p" ] && kill -CONT "$p" 2>/dev/null; done; return 0; }

# measure PID OUT CMD...: one timed run of CMD (wrk) on the client's CPUs,
# its output into OUT, the server PID under test.  Every server in
# BENCH_SERVERS (the bench's PIDs) first settles, and the others are paused
# while CMD runs.  Prints "cpu_s=S wait_s=S": PID's CPU time over the run
# and the time its threads waited for a CPU.
measure() {
    local pid=$1 out=$2 p s0 s1 others=()
    shift 2
    settle "${BENCH_SERVERS[@]}"
    for p in "${BENCH_SERVERS[@]}"; do [ "$p" = "$pid" ] || others+=("$p"); done
    pause "${others[@]}"
    s0=$(sched_ns "$pid")
    on_client "$@" >"$out" 2>&1
    s1=$(sched_ns "$pid")
    resume "${others[@]}"
    echo "$s0 $s1" | awk '{printf "cpu_s=%.6f wait_s=%.6f", ($3 - $1) / 1e9, ($4 - $2) / 1e9}'
}

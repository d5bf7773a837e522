-- api_wrk.lua — wrk script for bench/api.sh: prints one parseable summary
-- line after wrk's own report:
--   RESULT requests=N duration_us=N p50_us=N p90_us=N p99_us=N mean_us=N errors=N
-- errors counts failed connections, reads, writes, timeouts and answers
-- with a status of 400 or more.  No response() hook: wrk then never hands
-- bodies to Lua, which would slow the client on large answers.

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f errors=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.mean, e.connect + e.read + e.write + e.timeout + e.status))
end

-- api_wrk.lua — wrk script for bench/api.sh: ends the run when a thread
-- has had WRK_REQUESTS_PER_THREAD answers (0: run for wrk's -d; the other
-- threads are then within a few requests of theirs), counts non-200
-- answers, and prints one parseable summary line:
--   RESULT requests=N duration_us=N p50_us=N p90_us=N p99_us=N mean_us=N errors=N non200=N
-- With WRK_REQUESTS_PER_THREAD=0 no response() hook is installed, so wrk
-- does not hand large bodies to Lua (which would slow the client, not the server).

local limit = tonumber(os.getenv("WRK_REQUESTS_PER_THREAD") or "0") or 0
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    count = 0
    non200 = 0
end

if limit > 0 then
    function response(status, headers, body)
        count = count + 1
        if status ~= 200 then
            non200 = non200 + 1
        end
        if count == limit then
            -- wrk's main thread sleeps for -d whatever the threads do; its
            -- SIGINT handler ends the run.  The shell's parent is wrk.
            wrk.thread:stop()
            os.execute("kill -INT $PPID")
        end
    end
end

function done(summary, latency, requests)
    local bad = 0
    for _, t in ipairs(threads) do
        bad = bad + (t:get("non200") or 0)
    end
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f errors=%d non200=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.mean, e.connect + e.read + e.write + e.timeout + e.status, bad))
end

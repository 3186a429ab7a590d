-- wrk script of audrey-bench: each request is GET $BENCH_PREFIX followed by
-- a random line of the file $BENCH_IDS (known uuids, or "health" for the
-- baseline, so the baseline pays the same per-request script cost), and
-- the results are printed on one line the bench parses.

local prefix = os.getenv("BENCH_PREFIX") or "/"
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do
  if line ~= "" then ids[#ids + 1] = line end
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  math.randomseed(os.time() + 7919 * (thread_number or 0))
end

function request()
  return wrk.format("GET", prefix .. ids[math.random(#ids)])
end

function done(summary, latency, requests)
  io.write(string.format(
    "BENCH-RESULT requests=%d p50_us=%d p99_us=%d status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end

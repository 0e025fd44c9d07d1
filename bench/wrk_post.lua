-- wrk script for bench_ingest.py: POST prebuilt JSON bodies round-robin and count statuses.
--
--   wrk -t1 -c32 -d11s --latency --timeout 10s -s bench/wrk_post.lua URL -- BODIES SEND_SECONDS TOKEN
--
-- BODIES holds one JSON body a line.  Each thread stops *sending* SEND_SECONDS after it
-- starts (delay() then parks every connection) so that the requests in flight are answered
-- before wrk's own -d deadline: every request sent is then counted, and the 201s can be
-- checked against the database row for row.  done() prints one line starting COOP_WRK with
-- the counts and latency percentiles (microseconds) as JSON.
-- Written for wrk 4.1 (LuaJIT; setup/init/delay/request/response/done).

local ffi = require("ffi")
ffi.cdef([[
struct coop_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk_id, struct coop_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("struct coop_timespec")

local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path, send_seconds, token = args[1], tonumber(args[2]), args[3]
  local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
  requests = {}
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", nil, headers, line)
    end
  end
  index = (id * 7919) % #requests
  started = now()
  deadline = started + send_seconds
  last = started
  sent, received, created, other = 0, 0, 0, 0
end

-- wrk calls delay() once before every request it sends, so requests are counted here:
-- request() is also called once by wrk itself on the first thread, to probe for pipelining.
function delay()
  if now() >= deadline then
    return 3600000 -- parked until wrk stops
  end
  sent = sent + 1
  return 0
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function response(status, headers, body)
  received = received + 1
  if status == 201 then
    created = created + 1
  else
    other = other + 1
  end
  last = now()
end

function done(summary, latency, requests)
  local sent_all, received_all, created_all, other_all = 0, 0, 0, 0
  local first, final = math.huge, 0
  for _, thread in ipairs(threads) do
    sent_all = sent_all + thread:get("sent")
    received_all = received_all + thread:get("received")
    created_all = created_all + thread:get("created")
    other_all = other_all + thread:get("other")
    first = math.min(first, thread:get("started"))
    final = math.max(final, thread:get("last"))
  end
  local errors = summary.errors
  io.write(string.format(
    'COOP_WRK {"sent": %d, "received": %d, "created": %d, "other": %d, "window_s": %.6f, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    sent_all, received_all, created_all, other_all, final - first,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout
  ))
end

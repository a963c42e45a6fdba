-- Shared by the benchmark's wrk scripts (found through LUA_PATH, which
-- bench/wrk.py sets): thread numbering and the done() hook that prints the
-- run's figures as one JSON line, "BENCH_JSON {...}", for bench/wrk.py.
local M = {}

local threads = 0

-- setup() runs in wrk's main Lua state, once per thread: number the threads
-- 1..n, so that each can take its own share of sessions (global "tid").
function M.setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function M.seed()
  math.randomseed(os.time() * 7919 + (tid or 0) * 104729)
  math.random(); math.random()  -- LuaJIT's first draws are poor
end

local PERCENTILES = {50, 75, 90, 99, 99.9}

function M.done(summary, latency, requests)
  local parts = {}
  for _, p in ipairs(PERCENTILES) do
    parts[#parts + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":{%s}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(parts, ",")))
end

-- The read/write mix (mix.lua, mix_paced.lua): M.mix_init(args) takes
-- PREFIX SUFFIX COUNT FORMAT READ_SHARE BODY; then each M.mix_request()
-- picks a random session of COUNT and GETs it (READ_SHARE of them, e.g. 0.9)
-- or PATCHes one property with BODY.
local mix = {}
local patch_headers = {["Content-Type"] = "application/json"}

function M.mix_init(args)
  mix.prefix, mix.suffix = args[1], args[2]
  mix.count = M.number(args, 3, "COUNT")
  mix.fmt = args[4]
  mix.share = M.number(args, 5, "READ_SHARE")
  mix.body = args[6]
  M.seed()
end

function M.mix_request()
  local path = mix.prefix .. string.format(mix.fmt, math.random(0, mix.count - 1)) .. mix.suffix
  if math.random() < mix.share then
    return wrk.format("GET", path)
  end
  return wrk.format("PATCH", path, patch_headers, mix.body)
end

-- Reads an argument as a number, failing loudly.
function M.number(args, n, what)
  local value = tonumber(args[n])
  if value == nil then error("argument " .. n .. " (" .. what .. ") must be a number, got " .. tostring(args[n])) end
  return value
end

return M

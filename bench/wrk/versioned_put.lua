-- PUT with the right version (Emporix optimistic locking). The version moves
-- on every PUT and a 204 carries no version, so the script knows it instead
-- of reading it: thread t owns sessions (t-1)*POOL .. t*POOL-1, all created at
-- version START just before the run, and visits them round robin, so its
-- k-th request (from 0) goes to session (t-1)*POOL + k % POOL with version
-- START + k // POOL. POOL is far larger than the connections in flight, so a
-- session's previous PUT has long been answered when its next one is sent.
--   args: PREFIX FORMAT POOL START BODY_HEAD
-- The body is BODY_HEAD .. version .. "}}" (BODY_HEAD ends with
-- '"metadata":{"version":').
--
-- wrk 4 calls request() once on its first thread before the run, to check
-- the request, and never sends that one. So the first call of every thread
-- does not move the count on: where it was dropped nothing is lost, and
-- where it was sent, its twin answers one 409 and the round robin goes on.
local common = require("common")
setup, done = common.setup, common.done

local prefix, fmt, pool, start, head
local sent = 0
local primed = false
local headers = {["Content-Type"] = "application/json"}

function init(args)
  prefix, fmt = args[1], args[2]
  pool = common.number(args, 3, "POOL")
  start = common.number(args, 4, "START")
  head = args[5]
end

function request()
  local k = sent
  if primed then sent = sent + 1 else primed = true end
  local n = ((tid or 1) - 1) * pool + k % pool
  local version = start + math.floor(k / pool)
  return wrk.format("PUT", prefix .. string.format(fmt, n), headers, head .. version .. "}}")
end

-- hot.lua, paced: each connection PATCHes PATH with {"hits":N} and then
-- waits DELAY_MS after each answer, so that the hammer sends about
-- connections * 1000 / (DELAY_MS + latency) writes per second. (A script of
-- its own: wrk gives every request of a script that has delay() a timer.)
--   args: PATH DELAY_MS
local common = require("common")
setup, done = common.setup, common.done

local path
local headers = {["Content-Type"] = "application/json"}
local n = 0
local pause

function init(args)
  path = args[1]
  pause = common.number(args, 2, "DELAY_MS")
end

function request()
  n = n + 1
  return wrk.format("PATCH", path, headers, string.format('{"hits":%d}', n))
end

function delay()
  return pause
end

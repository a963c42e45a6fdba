-- mix.lua, paced: the same read/write mix, each connection waiting DELAY_MS
-- after each answer, so that the load is about connections * 1000 /
-- (DELAY_MS + latency) requests per second: a service that is busy, not
-- saturated. (A script of its own: wrk gives every request of a script that
-- has delay() a timer.)
--   args: PREFIX SUFFIX COUNT FORMAT READ_SHARE BODY DELAY_MS
local common = require("common")
setup, done = common.setup, common.done
request = common.mix_request

local pause

function init(args)
  common.mix_init(args)
  pause = common.number(args, 7, "DELAY_MS")
end

function delay()
  return pause
end

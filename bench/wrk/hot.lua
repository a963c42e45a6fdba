-- Writes to one session as fast as the connections allow: PATCH PATH with
-- {"hits":N}, N counting up, so that every request changes the session.
--   args: PATH
local common = require("common")
setup, done = common.setup, common.done

local path
local headers = {["Content-Type"] = "application/json"}
local n = 0

function init(args)
  path = args[1]
end

function request()
  n = n + 1
  return wrk.format("PATCH", path, headers, string.format('{"hits":%d}', n))
end

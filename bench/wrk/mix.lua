-- The read/write mix: each request picks a random session of COUNT; READ_SHARE
-- of them (e.g. 0.9) GET it, the others PATCH one property with BODY.
--   args: PREFIX SUFFIX COUNT FORMAT READ_SHARE BODY
local common = require("common")
setup, done = common.setup, common.done

local prefix, suffix, count, fmt, share, body
local patch_headers = {["Content-Type"] = "application/json"}

function init(args)
  prefix, suffix = args[1], args[2]
  count = common.number(args, 3, "COUNT")
  fmt = args[4]
  share = common.number(args, 5, "READ_SHARE")
  body = args[6]
  common.seed()
end

function request()
  local path = prefix .. string.format(fmt, math.random(0, count - 1)) .. suffix
  if math.random() < share then
    return wrk.format("GET", path)
  end
  return wrk.format("PATCH", path, patch_headers, body)
end

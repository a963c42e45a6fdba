-- A request to a random session of COUNT, each time:
--   args: METHOD PREFIX SUFFIX COUNT FORMAT [BODY [CONTENT_TYPE]]
-- the path is PREFIX .. string.format(FORMAT, n) .. SUFFIX, n in 0..COUNT-1.
local common = require("common")
setup, done = common.setup, common.done

local method, prefix, suffix, count, fmt, body
local headers = {}

function init(args)
  for name, value in pairs(wrk.headers) do  -- wrk -H (bench --api-key-rate: the API key)
    if name ~= "Host" then headers[name] = value end
  end
  method, prefix, suffix = args[1], args[2], args[3]
  count = common.number(args, 4, "COUNT")
  fmt = args[5]
  if args[6] ~= nil and args[6] ~= "" then
    body = args[6]
    headers["Content-Type"] = args[7] or "application/json"
  end
  common.seed()
end

function request()
  local path = prefix .. string.format(fmt, math.random(0, count - 1)) .. suffix
  return wrk.format(method, path, headers, body)
end

-- Conditional GET: each request takes a random line "PATH<TAB>ETAG" of FILE
-- (made by bench/run.py from the current ETags) and sends If-None-Match, so
-- that an unchanged session answers 304 with no body.
--   args: FILE
local common = require("common")
setup, done = common.setup, common.done

local paths, tags = {}, {}

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    local path, tag = string.match(line, "^([^\t]+)\t(.+)$")
    if path then
      paths[#paths + 1] = path
      tags[#tags + 1] = tag
    end
  end
  file:close()
  if #paths == 0 then error("no PATH<TAB>ETAG lines in " .. args[1]) end
  common.seed()
end

function request()
  local n = math.random(1, #paths)
  return wrk.format("GET", paths[n], {["If-None-Match"] = tags[n]})
end

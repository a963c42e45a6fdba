-- The read/write mix: each request picks a random session of COUNT; READ_SHARE
-- of them (e.g. 0.9) GET it, the others PATCH one property with BODY
-- (common.lua's mix_init and mix_request).
--   args: PREFIX SUFFIX COUNT FORMAT READ_SHARE BODY
local common = require("common")
setup, done = common.setup, common.done
init, request = common.mix_init, common.mix_request

-- One fixed request (wrk's fast path: no request() function); only the
-- figures hook. Used for the yardstick.
local common = require("common")
done = common.done

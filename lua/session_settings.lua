-- include: lib
-- Changes a session's settings without changing its properties or version:
-- the TTL stamped on properties written later (LivePerson's session TTL), and
-- the idle expiry (moved to now + idle TTL: a touch).
-- KEYS: 1 session hash, 2 bucket id index, 3 bucket expiry index, 4 bucket session-TTL index
-- ARGV: 1 now (ms), 2 session id, 3 stamp TTL in seconds ('' keep), 4 create when missing ('1'|'0'),
--       5 retention (ms) after the last write (0 = none),
--       6 flags: 'l' = a session this call creates was made through LivePerson (lib.lua, metadata o)
-- Returns {status, version, created}: 'ok' or 'missing'.
local key, idx, exp_index, ttl_index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[1])
local sid = ARGV[2]
local m = meta_load(key)
local created = 0
if not m then
  if ARGV[4] ~= '1' then return {'missing', 0, 0} end
  m = meta_new(now)
  if string.find(ARGV[6], 'l', 1, true) then m.o = 'l' end
  created = 1
end
prune(key, m, now)
if ARGV[3] ~= '' then
  m.t = tonumber(ARGV[3])
  if m.t > 0 then redis.call('HSET', ttl_index, sid, m.t) else redis.call('HDEL', ttl_index, sid) end
end
set_deadline(m, now, tonumber(ARGV[5]))
meta_store(key, m)
apply_expiry(key, exp_index, sid, m, redis.call('HLEN', key) - 1)
if created == 1 then redis.call('ZADD', idx, 0, sid) end
return {'ok', m.v, created}

-- include: lib
-- Deletes one session with all its properties and settings.
-- KEYS: 1 session hash, 2 bucket id index, 3 bucket expiry index,
--       4 bucket session-TTL index, 5 change-event channel
-- ARGV: 1 now (ms), 2 session id, 3 expected version ('' = any), 4 flags ('p' = SPUBLISH),
--       5 the customer the session must be tied to ('' = any; see lib.lua, metadata u)
-- Returns {status, version}: 'ok' (version is the deleted session's last one + 1),
-- 'missing', 'version' or 'untied' (tied to no customer or to another one: left as it is).
local key, idx, exp_index, ttl_index, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = tonumber(ARGV[1])
local m = meta_load(key)
if not m then return {'missing', 0} end
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= m.v then return {'version', m.v} end
if ARGV[5] ~= '' and m.u ~= ARGV[5] then return {'untied', m.v} end
prune(key, m, now)
local deleted = {}
for _, field in ipairs(redis.call('HKEYS', key)) do
  local name = field_name(field)
  if name then deleted[#deleted + 1] = json_string(name) end
end
redis.call('DEL', key)
redis.call('ZREM', idx, ARGV[2])
redis.call('ZREM', exp_index, ARGV[2])
redis.call('HDEL', ttl_index, ARGV[2])
publish_change(channel, ARGV[4], m.v + 1, {}, deleted)
return {'ok', m.v + 1}

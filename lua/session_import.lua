-- include: lib
-- Writes one whole session as an export file holds it (sessionstore import):
-- its properties with the time each has left, its version, its creation and
-- modification times and its settings, in one step. Everything the other
-- scripts keep about a session (metadata, key expiry, the bucket's indexes)
-- is made here the same way, so the session then behaves as if the service
-- had written it. A session that exists is replaced (its properties that the
-- import does not have are deleted), unless flag 's' keeps it.
-- KEYS: 1 session hash, 2 bucket id index (zset), 3 bucket expiry index (zset),
--       4 bucket session-TTL index (hash), 5 change-event channel
-- ARGV: 1 now (ms), 2 session id,
--       3 flags: 's' = keep a session that exists (answer 'exists'),
--                'p' = publish with SPUBLISH (cluster) instead of PUBLISH,
--       4 version, 5 created (ms), 6 modified (ms),
--       7 TTL (s) stamped on properties written later (LivePerson session TTL; 0 = none),
--       8 idle TTL (ms; 0 = none), 9 ms until the session expires with it (0 = a whole idle TTL),
--       10 most characters stored (0 = no limit), 11 most properties (0 = no limit),
--       12 retention (ms) after the last write (0 = none),
--       13 the customer the session is tied to ('' = none), 14 the face that made it (lib.lua, metadata o),
--       15.. three per property: field (as keys.py names it), ms until it expires (0 = never), JSON text
-- Returns {status, version}: 'ok' (written; version is the imported one),
-- 'exists' (flag 's', left as it was; its version), 'toolarge' or 'toomany' (nothing written).
local key, idx, exp_index, ttl_index, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = tonumber(ARGV[1])
local sid, flags = ARGV[2], ARGV[3]

local old = meta_load(key)
if old and string.find(flags, 's', 1, true) then return {'exists', old.v} end

local m = meta_new(now)
m.v, m.c, m.m = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
m.t, m.i = tonumber(ARGV[7]), tonumber(ARGV[8])
m.o = ARGV[14]
if ARGV[13] ~= '' then m.u = ARGV[13] end
local count, fields, changed = 0, {}, {}
for n = 15, #ARGV, 3 do
  local field, left, json = ARGV[n], tonumber(ARGV[n + 1]), ARGV[n + 2]
  local name = field_name(field)
  m.z = m.z + charlen(name) + charlen(json)
  count = count + 1
  if left > 0 then
    local at = now + left
    if m.e == 0 or at < m.e then m.e = at end
    if at > m.x then m.x = at end
  else
    m.p = m.p + 1
  end
  fields[field] = true
  changed[#changed + 1] = json_string(name)
end
local max_chars, max_props = tonumber(ARGV[10]), tonumber(ARGV[11])
if max_chars > 0 and m.z > max_chars then return {'toolarge', 0} end
if max_props > 0 and count > max_props then return {'toomany', 0} end

local deleted = {}
if old then
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local name = field_name(field)
    if name and not fields[field] then deleted[#deleted + 1] = json_string(name) end
  end
  redis.call('DEL', key)
end
for n = 15, #ARGV, 3 do
  local left = tonumber(ARGV[n + 1])
  if left > 0 then
    redis.call('HSET', key, ARGV[n], '@' .. string.format('%013d', now + left) .. ARGV[n + 2])
  else
    redis.call('HSET', key, ARGV[n], ARGV[n + 2])
  end
end
set_deadline(m, now, tonumber(ARGV[12]))
if m.i > 0 and tonumber(ARGV[9]) > 0 and now + tonumber(ARGV[9]) < m.a then m.a = now + tonumber(ARGV[9]) end
meta_store(key, m)
if m.t > 0 then redis.call('HSET', ttl_index, sid, m.t) else redis.call('HDEL', ttl_index, sid) end
apply_expiry(key, exp_index, sid, m, count)
redis.call('ZADD', idx, 0, sid)
prune_index(idx, exp_index, ttl_index, now, 16)

publish_change(channel, flags, m.v, changed, deleted)
return {'ok', m.v}

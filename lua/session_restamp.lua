-- include: lib
-- Puts the right TTL stamp on the properties one write just set, when that
-- write stamped them with a namespace TTL that had changed meanwhile (the
-- store guesses the namespace's TTL so that a write costs one round trip,
-- and checks the guess in that same round trip: service/store/core.py).
-- Nothing else changes: no new version, no event. A field is stamped again
-- only if it still has the stamp that write gave it (a later write that knew
-- the right TTL stamped its own fields right), and only in a session with no
-- session TTL of its own (which the write would have stamped instead).
--
-- KEYS: 1 session hash, 2 bucket expiry index (zset)
-- ARGV: 1 the write's now (ms), 2 session id,
--       3 the TTL (ms) the write stamped (0 = none), 4 the right TTL (ms; 0 = none),
--       5.. the fields the write set
-- Returns how many fields were stamped again.
local key, exp_index = KEYS[1], KEYS[2]
local now, sid = tonumber(ARGV[1]), ARGV[2]
local old, new = tonumber(ARGV[3]), tonumber(ARGV[4])
local m = meta_load(key)
if not m or m.t > 0 or old == new then return 0 end
local stamped, expiry, done = false, 0, 0
if old > 0 then stamped = now + old end
if new > 0 then expiry = now + new end
for n = 5, #ARGV do
  local field = ARGV[n]
  local raw = redis.call('HGET', key, field)
  if raw and (value_expiry(raw) or false) == stamped then
    local json = value_json(raw)
    done = done + 1
    if stamped then m.p = m.p + 1 end
    if expiry > 0 then
      redis.call('HSET', key, field, '@' .. string.format('%013d', expiry) .. json)
      m.p = m.p - 1
    else
      redis.call('HSET', key, field, json)
    end
  end
end
if done == 0 then return 0 end
-- the earliest and latest property expiry, read again
local all, earliest, latest = redis.call('HGETALL', key), 0, 0
for n = 1, #all, 2 do
  local at = field_name(all[n]) and value_expiry(all[n + 1])
  if at then
    if earliest == 0 or at < earliest then earliest = at end
    if at > latest then latest = at end
  end
end
m.e, m.x = earliest, latest
meta_store(key, m)
apply_expiry(key, exp_index, sid, m, #all / 2 - 1)
return done

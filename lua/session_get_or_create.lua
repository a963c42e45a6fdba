-- include: lib
-- Reads one session, creating it (empty, version 1) when it is missing, and
-- moves its idle expiry to now + idle TTL (a touch), all in one step: two
-- concurrent reads of a missing id make one session, never two. This is the
-- Genesys face's GET, which answers with a session whether one existed or not.
-- A session it creates is a change: its event ({"version":1,"changed":[],...})
-- goes out on the session's channel, as session_mutate's would.
-- KEYS: 1 session hash, 2 bucket id index (zset), 3 bucket expiry index (zset),
--       4 bucket session-TTL index (hash), 5 the session's event channel
-- ARGV: 1 now (ms), 2 session id, 3 idle TTL (ms) of the session: '' keep, '0' clear, N set,
--       4 flags: 'p' = SPUBLISH the event (Redis Cluster) instead of PUBLISH,
--       5 retention (ms) after the last write (0 = none)
-- Returns {created (0|1), {field, value, ...}}: the whole session hash after the
-- call (the metadata field ":" included, expired properties dropped), as HGETALL
-- gives it.
local key, idx, exp_index, ttl_index, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = tonumber(ARGV[1])
local sid = ARGV[2]
local m = meta_load(key)
local created = 0
if not m then
  m = meta_new(now)
  m.v = 1 -- a created session has a version, as session_mutate gives it
  created = 1
end
prune(key, m, now)
if ARGV[3] ~= '' then m.i = tonumber(ARGV[3]) end
set_deadline(m, now, tonumber(ARGV[5]))
meta_store(key, m)
apply_expiry(key, exp_index, sid, m, redis.call('HLEN', key) - 1)
if created == 1 then
  redis.call('ZADD', idx, 0, sid)
  publish_change(channel, ARGV[4], m.v, {}, {})
end
prune_index(idx, exp_index, ttl_index, now, 16)
return {created, redis.call('HGETALL', key)}
